/**
 * bun-chat: a real-time chat room server for Bun. One entry, one binary.
 *
 *   bun run server.ts      serves the chat page on http://localhost:3000, history in ./data/chat.sqlite
 *   bun test               runs every test
 *   bun run build          dist/bun-chat: one executable, the page inside (deploy/build.ts)
 *   bun run bench/run.ts   the bench: this server against raw Bun pub/sub (bench/README.md)
 *
 * WebSocket clients speak protocol v1 at /ws (docs/protocol.md); the page at / is one of them.
 * Rooms are Bun pub/sub topics, so fan-out to WebSockets runs in Bun's native code. With TCP_PORT
 * set, people can also chat from `nc host TCP_PORT`, in the same rooms, as the same kind of user.
 * Every setting is an environment variable, validated at start (src/config.ts; the README's table).
 *
 * This file picks the engine (SQLite, or Redis with REDIS_URL), wires the hub to its three doors
 * (src/ws.ts, src/tcp.ts, src/http.ts), and shuts down as §7 says. The README's "How it is built"
 * draws the map of src/.
 */

import type { Server, TCPSocketListener } from "bun";
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { loadAssets } from "./src/assets.ts";
import { openVerifier } from "./src/auth.ts";
import { createBot } from "./src/bots.ts";
import { loadConfig, redactedUrl, resolveConfig, type Config } from "./src/config.ts";
import { WsConnection, type TcpConnection } from "./src/connection.ts";
import type { Context } from "./src/context.ts";
import { LocalRelay, LocalRoster, historyBounds, type Relay, type Roster, type Store } from "./src/engine.ts";
import { Fanout } from "./src/fanout.ts";
import { apiRoutes } from "./src/api.ts";
import { admitWs, clientIp, createApp } from "./src/http.ts";
import { Hub } from "./src/hub.ts";
import { Metrics, createLogger } from "./src/metrics.ts";
import { openRedis } from "./src/redis/index.ts";
import { SqliteStore } from "./src/sqlite.ts";
import { LockedError, lockDatabase, type FileLock } from "./src/sqlite/lock.ts";
import { startTcp } from "./src/tcp.ts";
import { websocketHandlers } from "./src/ws.ts";

// What the tests, the bench and the build use.
export { bundleAssets, type Assets } from "./src/assets.ts";
export { DEFAULTS, SETTING_NAMES, loadConfig, resolveConfig, type Config } from "./src/config.ts";
export type { NewMessage, Store } from "./src/engine.ts";
export { SqliteStore } from "./src/sqlite.ts";
export * from "./src/protocol/wire.ts";

/** Bounds how often expired sessions are swept from storage. */
const SESSION_SWEEP_INTERVAL_MS = 3_600_000;
/** How often quiet rooms are trimmed of messages past HISTORY_MAX_AGE_DAYS (busy ones at each commit). */
const HISTORY_SWEEP_INTERVAL_MS = 600_000;
/** How often full rate buckets of departed users and quiet addresses are forgotten. */
const RATE_SWEEP_INTERVAL_MS = 60_000;

export interface ServerOptions extends Partial<Config> {
  /** Where log lines go, one JSON object each; console.log by default. */
  log?: (line: string) => void;
  /** The clock, in epoch ms. */
  now?: () => number;
  /** A storage engine to use instead of SQLite at databasePath. */
  store?: Store;
  /** With REDIS_URL: how often every watched room's stored seq is checked for a lost tail (tests shorten it). */
  tailCheckMs?: number;
}

export interface ChatServer {
  server: Server<WsConnection>;
  /** The HTTP base URL, e.g. http://127.0.0.1:3000/ */
  url: URL;
  /** The TCP door's port, when it is open. */
  tcpPort: number | null;
  config: Config;
  /** Shuts down as §7 says: drain, close every client, stop listening, close storage. */
  stop(): Promise<void>;
  /** Sizes of the hub's bounded memory, for tests and debugging. */
  inspect(): { users: number; roomStates: number; roomPagesKept: number; userBuckets: number; helloBuckets: number };
}

/** What SQLite's error codes mean to an operator, for DATABASE_PATH's start-up error. */
const DATABASE_PROBLEMS: Record<string, string> = {
  SQLITE_NOTADB: "not a SQLite database",
  SQLITE_CORRUPT: "the database is corrupt",
  SQLITE_READONLY: "read-only, and the server writes to it",
  SQLITE_CANTOPEN: "cannot be opened or created (a folder, or a place the server may not write?)",
  SQLITE_PERM: "the server may not open it",
};

/**
 * The SQLite file, locked for this process (one file, one server), or an error that says
 * `DATABASE_PATH=value: what is wrong`. The `bots` command opens it `unlocked`: its one short
 * write waits on SQLite's own lock beside a running server, which is what it is for.
 */
function openDatabase(config: Config, unlocked = false): { store: SqliteStore; lock: FileLock | null } {
  const path = config.databasePath;
  const open = () => new SqliteStore(path, config.historyRetain, historyBounds(config));
  if (path === ":memory:" || unlocked) return { store: open(), lock: null };
  const problem = (what: string, error: unknown) => new Error(`DATABASE_PATH=${path}: ${what} (${(error as Error).message})`);
  let lock: FileLock;
  try {
    mkdirSync(dirname(path), { recursive: true });
    lock = lockDatabase(path);
  } catch (error) {
    if (error instanceof LockedError) throw new Error(`DATABASE_PATH=${path}: ${error.message}`);
    throw problem("its folder or lock file cannot be made", error);
  }
  try {
    return { store: open(), lock };
  } catch (error) {
    lock.release();
    throw problem(DATABASE_PROBLEMS[(error as { code?: string }).code ?? ""] ?? "cannot be used", error);
  }
}

/** The engine: SQLite (or a given store) with the one-process relay and roster, or Redis. */
async function openEngine(config: Config, ctx: Context, givenStore: Store | undefined, tailCheckMs: number | undefined, unlocked = false) {
  const local = { relay: new LocalRelay() as Relay, roster: new LocalRoster() as Roster };
  if (givenStore) return { store: givenStore, ...local, lock: null };
  if (config.redisUrl === null) return { ...openDatabase(config, unlocked), ...local };
  return { ...(await openRedis(config, config.redisUrl, ctx.log, ctx.now, tailCheckMs)), lock: null };
}

/**
 * A listen(2) that failed, as `NAME=value: what is wrong`: the port (`setting`) when it is taken
 * or forbidden, else the address.
 */
function listenError(error: unknown, setting: "PORT" | "TCP_PORT", port: number, host: string): Error {
  const { code, message } = error as { code?: string; message?: string };
  if (code === "EADDRINUSE") return new Error(`${setting}=${port}: in use on ${host} by another process (${message})`);
  if (code === "EACCES") return new Error(`${setting}=${port}: this process may not listen on it (${message})`);
  return new Error(`HOST=${host}: cannot listen on this address (${message})`);
}

export async function createServer(options: ServerOptions = {}): Promise<ChatServer> {
  const { log: sink, now = Date.now, store: givenStore, tailCheckMs, ...settings } = options;
  const config = resolveConfig(settings);
  const ctx: Context = { config, now, metrics: new Metrics(), log: createLogger(config.logLevel, sink) };
  // Bundled while the server already listens: clients reconnecting after a restart need no page
  // and are accepted at once (issue #8: cold start); a request for the page waits for it.
  const assets = loadAssets();
  assets.catch((error) => ctx.log("error", "page", { error: String(error) }));
  const { store, relay, roster, lock }: { store: Store; relay: Relay; roster: Roster; lock: FileLock | null } = await openEngine(
    config,
    ctx,
    givenStore,
    tailCheckMs,
  );
  const verifier = await openVerifier(config, ctx.log, now).catch((error) => {
    lock?.release();
    throw error;
  });
  const closeEngine = () => {
    verifier?.close();
    return roster
      .close()
      .then(() => relay.close())
      .then(() => store.close())
      .finally(() => lock?.release());
  };
  const fanout = new Fanout(ctx, relay, store);
  const hub = new Hub(ctx, store, fanout, relay, roster, verifier);
  const app = createApp(hub, ctx, assets, now());
  app.route("/", apiRoutes(hub, ctx, (req, srv) => clientIp(req, srv, config.trustProxy)));
  try {
    // Trimmed before anything is read from storage, so no emptied room is listed.
    if (config.historyMaxAgeDays) await store.sweepHistory(now());
    await roster.start();
  } catch (error) {
    await closeEngine();
    throw error;
  }

  const listening = <T>(listen: () => T, setting: "PORT" | "TCP_PORT", port: number): T => {
    try {
      return listen();
    } catch (error) {
      throw listenError(error, setting, port, config.host);
    }
  };
  let server: Server<WsConnection>;
  let tcp: TCPSocketListener<TcpConnection> | null = null;
  try {
    server = listening(() => Bun.serve<WsConnection>({
      port: config.port,
      hostname: config.host,
      development: false,
      // Bun shares a port (SO_REUSEPORT) when not in development: a second server would quietly
      // take half of this one's connections instead of failing with "in use".
      reusePort: false,
      routes: {
        // The hot path of every connect, natively routed: Hono's context and headers would be
        // built for a 101 that never carries them (issue #8: connects). Bun calls `open` inside
        // upgrade(), so the caps checked in admitWs cannot be raced past. Hono answers refusals.
        "/ws": (req: Request, srv: Server<WsConnection>) => {
          const admission = admitWs(req, srv, hub, ctx);
          if ("ip" in admission && srv.upgrade(req, { data: new WsConnection(ctx, admission.ip) })) return;
          return app.fetch(req, srv);
        },
      },
      fetch: (req, srv) => app.fetch(req, srv),
      websocket: websocketHandlers(hub, ctx),
    }), "PORT", config.port);
    fanout.server = server;
    try {
      if (config.tcpPort !== null) tcp = listening(() => startTcp(hub, ctx, config.tcpPort!), "TCP_PORT", config.tcpPort);
    } catch (error) {
      await server.stop(true);
      throw error;
    }
  } catch (error) {
    await closeEngine();
    throw error;
  }

  // Once listening (and, with Redis, once this instance is alive in the roster, so it takes over only the dead's events).
  hub.webhooks?.start();
  const sweep = () =>
    store.sweepSessions(now()).catch((error) => ctx.log("error", "storage", { error: String(error), op: "sweepSessions" }));
  void sweep();
  const sweeper = setInterval(sweep, SESSION_SWEEP_INTERVAL_MS);
  const trimHistory = () =>
    store.sweepHistory(now()).catch((error) => ctx.log("error", "storage", { error: String(error), op: "sweepHistory" }));
  // Rooms written to are trimmed at each commit; this catches the quiet ones.
  const historySweeper = config.historyMaxAgeDays ? setInterval(trimHistory, HISTORY_SWEEP_INTERVAL_MS) : undefined;
  const rateSweeper = setInterval(() => hub.sweep(now()), RATE_SWEEP_INTERVAL_MS);

  let stopping: Promise<void> | null = null;
  async function stop(): Promise<void> {
    hub.conns.draining = true;
    // What was accepted is stored and delivered before anyone is told to go.
    await hub.batcher.flush();
    const empty = hub.conns.whenEmpty();
    for (const conn of hub.conns.all()) conn.shutdown();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const deadline = new Promise((resolve) => (timer = setTimeout(resolve, config.drainTimeoutMs)));
    await Promise.race([empty, deadline]);
    clearInterval(sweeper);
    clearInterval(historySweeper);
    clearInterval(rateSweeper);
    tcp?.stop(true);
    // HTTP requests under way (a bot's post being committed) are answered within the same
    // DRAIN_TIMEOUT_MS: one cut would be posted again, stored twice. New ones were refused (503).
    await Promise.race([server.stop(false), deadline]);
    clearTimeout(timer);
    await server.stop(true);
    hub.dispose();
    await hub.batcher.flush();
    await hub.membership.settled();
    await hub.webhooks?.stop();
    await closeEngine();
    ctx.log("info", "stopped");
  }

  // Listening on every address, the page is at least on localhost: say so, for the newcomer.
  const page = ["0.0.0.0", "::"].includes(config.host) ? `http://localhost:${server.port}/` : server.url.href;
  const storage = config.redisUrl === null ? { databasePath: config.databasePath } : { redisUrl: redactedUrl(config.redisUrl) };
  ctx.log("info", "listening", { url: server.url.href, page, tcpPort: tcp?.port ?? null, ...storage });
  return {
    server,
    url: server.url,
    tcpPort: tcp?.port ?? null,
    config,
    stop: () => (stopping ??= stop()),
    inspect: () => ({
      users: hub.users.online.size,
      roomStates: hub.log.size,
      roomPagesKept: hub.log.pagesKept,
      userBuckets: hub.rate.userBuckets.size,
      helloBuckets: hub.rate.helloBuckets.size,
    }),
  };
}

/**
 * `bun run server.ts bots create NAME | list | revoke ID`: bots for an operator with a shell
 * (§11.6), on the storage the environment names, whether or not the server runs (it closes a
 * revoked bot's connections within a second). Returns the exit code.
 */
async function botsCommand(config: Config, args: string[]): Promise<number> {
  const [verb, ...rest] = args;
  const usage = "usage: bun run server.ts bots create NAME | bots list | bots revoke ID";
  if (!verb || !["create", "list", "revoke"].includes(verb) || (verb !== "list" && rest.length === 0)) {
    console.error(usage);
    return 2;
  }
  const log = createLogger("warn", (line) => console.error(line));
  const engine = await openEngine(config, { config, now: Date.now, metrics: new Metrics(), log }, undefined, undefined, true);
  try {
    if (verb === "create") {
      const made = await createBot(engine.store, rest.join(" "), Date.now());
      if (!made.ok) {
        console.error(made.message);
        return 1;
      }
      console.log(`bot ${made.value.bot.id} ${made.value.bot.name}`);
      console.log(`token ${made.value.token}`);
      console.error("The token is shown this once: keep it. It signs the bot in (hello {token}) and is its API bearer.");
      return 0;
    }
    if (verb === "list") {
      for (const bot of await engine.store.bots()) {
        console.log(`${bot.id}\t${bot.name}\t${new Date(bot.createdAt).toISOString()}${bot.revoked ? "\trevoked" : ""}`);
      }
      return 0;
    }
    if (!(await engine.store.revokeBot(rest[0]!))) {
      console.error(`no bot ${rest[0]}`);
      return 1;
    }
    console.log(`revoked ${rest[0]}`);
    return 0;
  } finally {
    await engine.roster.close().then(() => engine.relay.close()).then(() => engine.store.close());
  }
}

if (import.meta.main) {
  const loaded = loadConfig(process.env);
  if (!loaded.ok) {
    for (const line of loaded.errors) console.error(line);
    process.exit(1);
  }
  if (process.argv[2] === "bots") process.exit(await botsCommand(loaded.config, process.argv.slice(3)));
  // An unreachable Redis at start is an operator's error: say it in one line, like a bad setting.
  const chat = await createServer(loaded.config).catch((error: Error) => {
    console.error(error.message);
    process.exit(1);
  });
  const shutdown = () => chat.stop().then(() => process.exit(0));
  process.on("SIGTERM", shutdown);
  process.on("SIGINT", shutdown);
}
