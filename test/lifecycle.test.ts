/**
 * Starting and stopping: stop() drains (503 to newcomers and to the API, accepted messages stored
 * and delivered, HTTP requests under way answered, then 1001 to every client); the server as a
 * process (`bun server.ts`) configured by its environment and stopped by signals, which loses no
 * message a client saw even to SIGKILL; and a bad environment or an unreachable Redis stops it
 * before it listens.
 */
import { describe, expect, test } from "bun:test";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createServer, type ServerOptions } from "../server.ts";
import {
  Client,
  SERVER_COMMAND,
  WS_UPGRADE,
  bounded,
  burst,
  catchUp,
  freePort,
  reservePort,
  run,
  spawnServer,
  sqliteWith,
  startServer,
  tempDir,
  upgradeAttempt,
  user,
  type Frame,
} from "./helpers.ts";

/**
 * Bounds a test that starts several server processes on a loaded machine. Given per test: the
 * preload's setDefaultTimeout holds only for the first file of a multi-file run (Bun 1.4.5).
 */
const PROCESSES_TEST_MS = 30_000;

const ADMIN_TOKEN = "admin-token-for-the-tests-0123456789";

describe("stop()", () => {
  test("stop: draining answers 503, accepted messages are stored and delivered, then every client gets 1001", async () => {
    using dir = tempDir();
    const databasePath = join(dir.path, "chat.sqlite");
    // A store whose commits wait for the test holds stop() at its first step, flushing.
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const store = sqliteWith(
      (real) => ({
        append: async (batch) => {
          await gate;
          return real.append(batch);
        },
      }),
      databasePath,
    );
    await using server = await startServer({ store });
    const port = Number(server.chat.url.port);
    const a = await user(server, "a", "bye");
    const b = await user(server, "b", "bye");
    await a.expect("presence");
    a.send({ type: "send", room: "bye", id: "last", text: "sent as the server stops" });
    await a.sync(); // the send was read and handed to the batcher
    const stopped = server.stop();
    const health = await server.http("/healthz");
    expect(health.status).toBe(503);
    expect(await health.json()).toEqual({ status: "draining" });
    expect(await upgradeAttempt(port, WS_UPGRADE)).toMatchObject({ status: 503, body: { error: "draining" } });
    release();
    for (const c of [a, b]) {
      expect(await c.next()).toMatchObject({ type: "message", id: "last", seq: 1 });
      expect(await c.closed).toEqual({ code: 1001, reason: "server shutting down" });
    }
    await stopped;
    await using again = await startServer({ databasePath });
    const r = await again.http("/api/rooms/bye/messages");
    expect(((await r.json()) as { messages: { id: string }[] }).messages.map((m) => m.id)).toEqual(["last"]);
  });

  test("stop: a bot's post being committed is answered (it is stored); a post that comes while draining is refused 503 draining", async () => {
    using dir = tempDir();
    const databasePath = join(dir.path, "chat.sqlite");
    let release!: () => void;
    let appending!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const entered = new Promise<void>((resolve) => (appending = resolve));
    const store = sqliteWith(
      (real) => ({
        append: async (batch) => {
          appending();
          await gate;
          return real.append(batch);
        },
      }),
      databasePath,
    );
    const server = await startServer({ store, adminToken: ADMIN_TOKEN });
    const made = await server.http("/api/bots", {
      method: "POST",
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/json" },
      body: JSON.stringify({ name: "poster" }),
    });
    expect(made.status).toBe(201);
    const { token } = (await made.json()) as { token: string };
    const post = (text: string) =>
      server.http("/api/rooms/news/messages", {
        method: "POST",
        headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
        body: JSON.stringify({ text }),
      });
    // No WebSocket client: the drain has nothing to wait for but this request.
    const posted = post("posted as the server stops").then(
      (r) => r.status,
      (error) => `no answer: ${error}`,
    );
    await entered;
    const stopped = server.stop();
    const late = await post("posted while draining");
    expect(late.status).toBe(503);
    expect(late.headers.get("retry-after")).toBe("1");
    expect(await late.json()).toEqual({ error: "draining", message: "the server is shutting down; try again" });
    release();
    await stopped;
    // Stored, so the bot is told so (201), not cut off to post it again.
    expect(await posted).toBe(201);
    await using again = await startServer({ databasePath });
    const stored = (await (await again.http("/api/rooms/news/messages")).json()) as { messages: { text: string }[] };
    expect(stored.messages.map((m) => m.text)).toEqual(["posted as the server stops"]);
  });
});

describe("as a process", () => {
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    test(`${signal}: clients are closed with 1001, then the process exits 0`, async () => {
      using dir = tempDir();
      await using server = await spawnServer({ DATABASE_PATH: join(dir.path, "chat.sqlite") });
      const alice = await Client.connect(server.wsUrl);
      await alice.hello("alice");
      await alice.join("general");
      await alice.say("general", "going down soon");
      const early = await Client.connect(server.wsUrl); // not welcomed: closed too
      server.proc.kill(signal);
      expect(await alice.closed).toEqual({ code: 1001, reason: "server shutting down" });
      expect(await early.closed).toEqual({ code: 1001, reason: "server shutting down" });
      expect(await bounded(server.proc.exited, "exit")).toBe(0);
      const { stdout } = await server.output;
      const events = stdout.split("\n").map((l) => JSON.parse(l).event);
      expect(events.slice(-3)).toEqual(["close", "close", "stopped"]);
    });
  }

  test("SIGKILL mid-burst loses no message a client saw and reuses no seq", async () => {
    using dir = tempDir();
    const env = { DATABASE_PATH: join(dir.path, "chat.sqlite"), RATE_LIMIT_BURST: "1000", RATE_LIMIT_PER_SECOND: "1000" };
    let server = await spawnServer(env);
    try {
      const alice = await Client.connect(server.wsUrl);
      const welcome = await alice.hello("alice");
      await alice.join("crash");
      // Fire a burst without waiting, and kill the server as soon as some of it has been seen.
      burst(alice, "crash", 200);
      const seen: Frame[] = [];
      for (let i = 0; i < 20; i++) seen.push(await alice.expect("message"));
      server.proc.kill("SIGKILL");
      await alice.closed;
      expect(await bounded(server.proc.exited, "exit")).not.toBe(0);
      // Whatever else arrived before the socket died was seen too.
      seen.push(...alice.frames.filter((f) => f.type === "message").slice(seen.length));

      server = await spawnServer(env);
      const back = await Client.connect(server.wsUrl);
      expect((await back.hello("alice", welcome.session)).user).toEqual(welcome.user);
      const stored = await catchUp(back, "crash", 0);
      // Everything seen is stored, unchanged; what is stored is a gap-free prefix of the burst.
      expect(stored.slice(0, seen.length)).toEqual(seen);
      expect(stored.map((m) => m.seq)).toEqual(stored.map((_, i) => i + 1));
      expect(stored.map((m) => m.id)).toEqual(stored.map((_, i) => `m${i}`));
      // A retry of a stored message is answered with the original; new messages go on after it.
      const lastStored = stored.at(-1)!;
      back.send({ type: "send", room: "crash", id: lastStored.id, text: "retry" });
      expect(await back.next()).toEqual(lastStored);
      expect((await back.say("crash", "after the crash")).seq).toBe(stored.length + 1);
      back.close();
      server.proc.kill("SIGTERM");
      expect(await server.proc.exited).toBe(0);
    } finally {
      server.proc.kill("SIGKILL");
    }
  });

  test("a bad environment prints NAME=value: what is allowed, and exits 1 before listening", async () => {
    const { code, stdout, stderr } = await run(SERVER_COMMAND, {
      env: { PORT: "http", MAX_MESSAGE_CHARS: "4000", MAX_PAYLOAD_BYTES: "9000", DATABASE_PATH: ":memory:" },
    });
    expect(code).toBe(1);
    expect(stdout).toBe("");
    expect(stderr).toBe("PORT=http: an integer from 0 to 65535\n");
    const cross = await run(SERVER_COMMAND, { env: { MAX_MESSAGE_CHARS: "4000", MAX_PAYLOAD_BYTES: "9000", DATABASE_PATH: ":memory:" } });
    expect(cross.code).toBe(1);
    expect(cross.stderr).toBe(
      "MAX_PAYLOAD_BYTES=9000: must be at least 12 × MAX_MESSAGE_CHARS + 512 = 48512 (MAX_MESSAGE_CHARS=4000)\n",
    );
  });

  test("a REDIS_URL that does not parse is refused without printing its password", async () => {
    // A password with '#' (common in generated ones) that was not percent-encoded.
    const { code, stderr } = await run(SERVER_COMMAND, { env: { PORT: "0", REDIS_URL: "redis://default:Xk9#pQ2secret@db.internal:6379" } });
    expect(code).toBe(1);
    expect(stderr).toBe("REDIS_URL=(hidden): a redis:// or rediss:// URL, e.g. redis://127.0.0.1:6379\n");
  });

  test("an unreachable Redis at start: one clear line, exit 1, never listening", async () => {
    const url = `redis://:secret@127.0.0.1:${freePort()}`;
    await expect(createServer({ port: 0, host: "127.0.0.1", redisUrl: url, log: () => {} })).rejects.toThrow(
      /^REDIS_URL=redis:\/\/:\*\*\*@127\.0\.0\.1:\d+: cannot reach Redis/,
    );
    const { code, stdout, stderr } = await run(SERVER_COMMAND, { env: { PORT: "0", REDIS_URL: url } });
    expect(code).toBe(1);
    expect(stdout).toBe("");
    expect(stderr).toMatch(/^REDIS_URL=redis:\/\/:\*\*\*@127\.0\.0\.1:\d+: cannot reach Redis \(.+\)\n$/);
  });

  test("start-up failures say NAME=value: what is wrong: an address, a port in use, an unusable database; as a process, that line and exit 1", async () => {
    using dir = tempDir();
    const text = join(dir.path, "notes.txt");
    writeFileSync(text, "not a database, just some text that SQLite will not take for one\n".repeat(20));
    const folder = join(dir.path, "a-folder");
    mkdirSync(folder);
    const taken = reservePort();
    try {
      const port = taken.port;
      const memory = { databasePath: ":memory:" };
      const cases: [ServerOptions, RegExp][] = [
        [{ host: "no-such-host.invalid", ...memory }, /^HOST=no-such-host\.invalid: cannot listen on this address \(.+\)$/],
        [{ port, ...memory }, new RegExp(`^PORT=${port}: in use on 127\\.0\\.0\\.1 by another process \\(.+\\)$`)],
        [{ tcpPort: port, ...memory }, new RegExp(`^TCP_PORT=${port}: in use on 127\\.0\\.0\\.1 by another process \\(.+\\)$`)],
        [{ databasePath: text }, /^DATABASE_PATH=.+notes\.txt: not a SQLite database \(file is not a database\)$/],
        [{ databasePath: join(text, "chat.sqlite") }, /^DATABASE_PATH=.+notes\.txt\/chat\.sqlite: its folder or lock file cannot be made \((EEXIST|ENOTDIR).*\)$/],
        [{ databasePath: folder }, /^DATABASE_PATH=.+a-folder: cannot be opened or created \(.+\)$/],
      ];
      for (const [options, expected] of cases) {
        const started = createServer({ port: 0, host: "127.0.0.1", log: () => {}, ...options });
        await expect(started).rejects.toThrow(expected);
      }
      // Another chat server on the port is refused too: Bun would share it (SO_REUSEPORT) unless told not to.
      await using ours = await startServer();
      const second = createServer({ port: Number(ours.url.port), host: "127.0.0.1", log: () => {}, ...memory });
      await expect(second).rejects.toThrow(new RegExp(`^PORT=${ours.url.port}: in use on 127\\.0\\.0\\.1 by another process`));
      // As a process: the line on stderr, exit 1, never listening; a setting's own check and one made at start alike.
      const runs = await Promise.all(
        [{ HOST: "999.1.1.1", DATABASE_PATH: ":memory:" }, { DATABASE_PATH: text }].map((env) => run(SERVER_COMMAND, { env: { PORT: "0", HOST: "127.0.0.1", ...env } })),
      );
      expect(runs.map((r) => [r.code, r.stdout])).toEqual([[1, ""], [1, ""]]);
      expect(runs[0]!.stderr).toBe("HOST=999.1.1.1: an IP address or a host name to listen on\n");
      expect(runs[1]!.stderr).toMatch(/^DATABASE_PATH=.+notes\.txt: not a SQLite database \(file is not a database\)\n$/);
    } finally {
      taken.release();
    }
  }, PROCESSES_TEST_MS);

  test("a second server on the same DATABASE_PATH refuses to start, naming the process that holds it; a killed holder leaves no lock", async () => {
    using dir = tempDir();
    const env = { DATABASE_PATH: join(dir.path, "chat.sqlite") };
    await using first = await spawnServer(env);
    const second = await run(SERVER_COMMAND, { env: { PORT: "0", HOST: "127.0.0.1", ...env } });
    expect(second.code).toBe(1);
    expect(second.stderr).toBe(
      `DATABASE_PATH=${env.DATABASE_PATH}: in use by process ${first.proc.pid} (${env.DATABASE_PATH}.lock is locked): one file takes one server\n`,
    );
    // The first goes on serving, alone: what it stores is there for the next one.
    const alice = await Client.connect(first.wsUrl);
    await alice.hello("alice");
    await alice.join("one-writer");
    const said = await alice.say("one-writer", "only one of us writes here");
    first.proc.kill("SIGKILL");
    await first.proc.exited;
    await using third = await spawnServer(env);
    const page = (await (await fetch(new URL("/api/rooms/one-writer/messages", third.url))).json()) as { messages: Frame[] };
    expect(page.messages).toEqual([said]);
  }, PROCESSES_TEST_MS);
});
