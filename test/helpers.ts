/**
 * Test helpers: a real server on port 0 and real clients that read frames strictly in order.
 *
 * No sleeps anywhere: every wait is for a frame, a close or a log line, and every wait has a
 * safety bound (WAIT_MS) that fails the test with what did arrive instead of hanging it.
 */
import { RedisClient } from "bun";
import { Webhook } from "standardwebhooks";
import { afterAll, beforeAll } from "bun:test";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SqliteStore, createServer, type ChatServer, type ServerFrame, type ServerOptions, type Store } from "../server.ts";

/** Bounds any single wait in a test, a page's in Chromium included; generous for a loaded 2-core machine. */
export const WAIT_MS = 15_000;

/**
 * A real SQLite store with some of its methods replaced, to make a commit wait or fail:
 *   sqliteWith((real) => ({ append: async (batch) => { await gate; return real.append(batch); } }))
 */
export function sqliteWith(overrides: (real: SqliteStore) => Partial<Store>, path = ":memory:"): Store {
  const real = new SqliteStore(path, 1000);
  return Object.assign(Object.create(real) as SqliteStore, overrides(real));
}

/**
 * One held call, for a store method a test replaces: once `arm()`ed, the next `pass()` says it is
 * `waiting` and waits until `release()`; every other `pass()` goes straight on.
 *   const held = heldOnce(); sqliteWith((real) => ({ roomPage: async (r, q) => (await held.pass(), real.roomPage(r, q)) }))
 */
export function heldOnce() {
  let armed = false;
  let reached!: () => void;
  let release!: () => void;
  const waiting = new Promise<void>((resolve) => (reached = resolve));
  const gate = new Promise<void>((resolve) => (release = resolve));
  return {
    waiting,
    arm: () => void (armed = true),
    release: () => release(),
    async pass(): Promise<void> {
      if (!armed) return;
      armed = false;
      reached();
      await gate;
    },
  };
}

/** A fresh temporary folder, removed by `cleanup` (or at the end of a `using` block). */
export function tempDir(): { path: string; cleanup: () => void } & Disposable {
  const path = mkdtempSync(join(tmpdir(), "bun-chat-test-"));
  const cleanup = () => rmSync(path, { recursive: true, force: true });
  return { path, cleanup, [Symbol.dispose]: cleanup };
}

/**
 * A server of a test's. `await using server = await startServer(…)` stops it when the block ends,
 * passed or failed; stopping twice is harmless.
 */
export interface TestServer extends AsyncDisposable {
  chat: ChatServer;
  /** http://127.0.0.1:PORT/ */
  url: URL;
  /** ws://127.0.0.1:PORT/ws */
  wsUrl: string;
  http: (path: string, init?: RequestInit) => Promise<Response>;
  /** Every log line, parsed. */
  logs: Record<string, unknown>[];
  /** Resolves with the first log line (already written or yet to come) that matches. */
  logLine: (match: (line: Record<string, unknown>) => boolean) => Promise<Record<string, unknown>>;
  /** Resolves once every connection opened so far has closed (by their log lines). */
  settled: () => Promise<unknown>;
  stop: () => Promise<void>;
}

export async function startServer(options: ServerOptions = {}): Promise<TestServer> {
  const logs: Record<string, unknown>[] = [];
  const waiters: { match: (l: Record<string, unknown>) => boolean; resolve: (l: Record<string, unknown>) => void }[] = [];
  const chat = await createServer({
    port: 0,
    host: "127.0.0.1",
    databasePath: ":memory:",
    logLevel: "debug",
    ...options,
    log: (text) => {
      const line = JSON.parse(text) as Record<string, unknown>;
      logs.push(line);
      for (const w of [...waiters]) {
        if (w.match(line)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(line);
        }
      }
    },
  });
  const base = chat.url;
  const waitLog = (match: (line: Record<string, unknown>) => boolean) => {
    const found = logs.find(match);
    if (found) return Promise.resolve(found);
    return bounded(new Promise<Record<string, unknown>>((resolve) => waiters.push({ match, resolve })), "log line");
  };
  return {
    chat,
    url: base,
    wsUrl: `ws://127.0.0.1:${base.port}/ws`,
    http: (path, init) => fetch(new URL(path, base), init),
    logs,
    logLine: waitLog,
    settled: () => {
      const count = (event: string) => logs.filter((l) => l.event === event).length;
      return waitLog(() => count("open") === count("close"));
    },
    stop: () => chat.stop(),
    [Symbol.asyncDispose]: () => chat.stop(),
  };
}

/** The address the server counted for the n-th connection it opened (0-based), from its `open` log line. */
export async function openedIp(server: TestServer, n: number): Promise<unknown> {
  const opens = () => server.logs.filter((l) => l.event === "open");
  await server.logLine(() => opens().length > n);
  return opens()[n]!.ip;
}

/** The server as a process, configured by its environment; `await using` kills it (SIGKILL) if it still runs. */
export interface Running extends AsyncDisposable {
  proc: Bun.Subprocess<"ignore", "pipe", "pipe">;
  url: URL;
  wsUrl: string;
  /** Every stdout line so far. */
  lines: string[];
  /** Resolves with stdout and stderr once the process has exited. */
  output: Promise<{ stdout: string; stderr: string }>;
}

/** `bun server.ts`; a compiled binary is started the same way, by its path. */
export const SERVER_COMMAND = [process.execPath, join(import.meta.dir, "..", "server.ts")];

/** Starts the server (`command`, in `cwd`) on a free port and waits for its "listening" log line. */
export async function spawnServer(env: Record<string, string>, command = SERVER_COMMAND, cwd?: string): Promise<Running> {
  const proc = Bun.spawn(command, {
    ...(cwd ? { cwd } : {}),
    env: { ...process.env, PORT: "0", HOST: "127.0.0.1", LOG_LEVEL: "info", ...env },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  const lines: string[] = [];
  let resolveListening!: (url: URL) => void;
  const listening = new Promise<URL>((resolve) => (resolveListening = resolve));
  const stdout = (async () => {
    let buffer = "";
    const decoder = new TextDecoder();
    for await (const chunk of proc.stdout) {
      buffer += decoder.decode(chunk, { stream: true });
      let nl;
      while ((nl = buffer.indexOf("\n")) !== -1) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        lines.push(line);
        const entry = JSON.parse(line);
        if (entry.event === "listening") resolveListening(new URL(entry.url));
      }
    }
    return lines.join("\n");
  })();
  const output = Promise.all([stdout, new Response(proc.stderr).text(), proc.exited]).then(([stdout, stderr]) => ({ stdout, stderr }));
  const url = await bounded(Promise.race([listening, output.then((o) => Promise.reject(new Error(`exited: ${o.stderr}`)))]), "listening").catch(
    (error) => {
      proc.kill("SIGKILL");
      throw error;
    },
  );
  return {
    proc,
    url,
    wsUrl: `ws://127.0.0.1:${url.port}/ws`,
    lines,
    output,
    [Symbol.asyncDispose]: async () => {
      proc.kill("SIGKILL");
      await proc.exited;
    },
  };
}

/** Runs a command to its end (bounded by `ms`) and returns its exit code and output. */
export async function run(
  command: string[],
  options: { env?: Record<string, string>; cwd?: string; ms?: number } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const proc = Bun.spawn(command, {
    ...(options.env ? { env: { ...process.env, ...options.env } } : {}),
    ...(options.cwd ? { cwd: options.cwd } : {}),
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  try {
    const [code, stdout, stderr] = await bounded(
      Promise.all([proc.exited, new Response(proc.stdout).text(), new Response(proc.stderr).text()]),
      `${command.join(" ")} to exit`,
      options.ms,
    );
    return { code, stdout, stderr };
  } finally {
    proc.kill("SIGKILL");
  }
}

/** Races `promise` against WAIT_MS; the timer never outlives the promise. */
export function bounded<T>(promise: Promise<T>, what: string, ms = WAIT_MS): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Lets a reader wait for its source's next event: the source calls `poke()` on every event; the
 * reader waits `until()` its condition holds, failing at once on `failure()` or after WAIT_MS.
 */
export class Waker {
  private wake: (() => void) | null = null;

  poke(): void {
    this.wake?.();
  }

  async until(done: () => boolean, failure: () => string | null, what: () => string): Promise<void> {
    const deadline = Date.now() + WAIT_MS;
    while (!done()) {
      const why = failure();
      if (why) throw new Error(`${why} while waiting for ${what()}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no ${what()} within ${WAIT_MS} ms`);
      await bounded(new Promise<void>((resolve) => (this.wake = resolve)), what(), left);
      this.wake = null;
    }
  }
}

/** A received frame: its type, and any fields (tests assert on exact values). */
export type Frame = { type: ServerFrame["type"]; [field: string]: any };

/**
 * A WebSocket client that queues every frame it receives. `next()` takes frames strictly in
 * order; a close before the awaited frame rejects, so a dropped connection fails the test.
 */
export class Client {
  readonly frames: Frame[] = [];
  private read = 0;
  private readonly waker = new Waker();
  closeEvent: { code: number; reason: string } | null = null;
  readonly closed: Promise<{ code: number; reason: string }>;

  private constructor(readonly ws: WebSocket) {
    ws.onmessage = (e) => {
      this.frames.push(JSON.parse(String(e.data)));
      this.waker.poke();
    };
    this.closed = new Promise((resolve) => {
      ws.onclose = (e) => {
        this.closeEvent = { code: e.code, reason: e.reason };
        resolve(this.closeEvent);
        this.waker.poke();
      };
    });
  }

  static async connect(url: string, headers?: Record<string, string>): Promise<Client> {
    // Bun's WebSocket takes { headers }; tsconfig's DOM lib (for public/) types only protocols.
    const ws = new WebSocket(url, (headers ? { headers } : undefined) as unknown as string[]);
    const client = new Client(ws);
    await bounded(
      new Promise<void>((resolve, reject) => {
        ws.onopen = () => resolve();
        ws.onerror = () => reject(new Error(`could not connect to ${url}`));
      }),
      "open",
    );
    return client;
  }

  send(frame: object): void {
    this.ws.send(JSON.stringify(frame));
  }

  sendRaw(data: string | Uint8Array<ArrayBuffer>): void {
    this.ws.send(data);
  }

  /** The next frame not yet read. */
  async next(): Promise<Frame> {
    await this.waker.until(
      () => this.read < this.frames.length,
      () => this.closeEvent && `closed (${this.closeEvent.code} ${this.closeEvent.reason})`,
      () => `a frame (had: ${this.history()})`,
    );
    return this.frames[this.read++]!;
  }

  /** The next frame, which must be of `type`. */
  async expect(type: Frame["type"]): Promise<Frame> {
    const frame = await this.next();
    if (frame.type !== type) throw new Error(`expected ${type}, got ${JSON.stringify(frame)}`);
    return frame;
  }

  /** Frames up to and including the first that matches; asserting on the list proves absence. */
  async until(match: (f: Frame) => boolean): Promise<Frame[]> {
    const seen: Frame[] = [];
    for (;;) {
      const frame = await this.next();
      seen.push(frame);
      if (match(frame)) return seen;
    }
  }

  /** Sends a ping and returns every frame that arrived before its pong. */
  async sync(ref = `sync-${Math.random()}`): Promise<Frame[]> {
    this.send({ type: "ping", ref });
    const seen = await this.until((f) => f.type === "pong" && f.ref === ref);
    return seen.slice(0, -1);
  }

  async hello(name: string, session?: string): Promise<Frame> {
    this.send({ type: "hello", name, ...(session ? { session } : {}) });
    return this.expect("welcome");
  }

  async join(room: string, since?: number): Promise<Frame> {
    this.send({ type: "join", room, ...(since === undefined ? {} : { since }) });
    return this.expect("joined");
  }

  /** Sends a message and waits for its own echo (skipping nothing: it must come next). */
  async say(room: string, text: string, id: string = crypto.randomUUID()): Promise<Frame> {
    this.send({ type: "send", room, id, text });
    const echo = await this.expect("message");
    if (echo.id !== id) throw new Error(`expected the echo of ${id}, got ${JSON.stringify(echo)}`);
    return echo;
  }

  close(): void {
    this.ws.close();
  }

  private history(): string {
    return JSON.stringify(this.frames.slice(Math.max(0, this.read - 3))).slice(0, 600);
  }
}

/** The consecutive numbers from..to. */
export const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

/** The message frames among `frames`. */
export const messages = (frames: Frame[]) => frames.filter((f) => f.type === "message");

/** A clock for `now`: stopped at the moment it is made, so a bucket refills nothing and counts are exact. */
export function frozenClock(): () => number {
  const t = Date.now();
  return () => t;
}

/** Sends each [id, text] to `room` at once, without waiting for any echo. */
function sendAll(client: Client, room: string, sends: [id: string, text: string][]): void {
  for (const [id, text] of sends) client.send({ type: "send", room, id, text });
}

/** Sends `count` messages without waiting, ids `m<from>`, `m<from+1>`, … (texts `message <n>`). */
export function burst(client: Client, room: string, count: number, from = 0): void {
  sendAll(client, room, range(from, from + count - 1).map((i) => [`m${i}`, `message ${i}`]));
}

/** Sends `texts` in order without waiting for each echo, then waits for the last one (skipping other frames). */
export async function sayAll(client: Client, room: string, texts: readonly string[]): Promise<void> {
  const ids = texts.map(() => crypto.randomUUID());
  sendAll(client, room, texts.map((text, i) => [ids[i]!, text]));
  await client.until((f) => f.type === "message" && f.id === ids.at(-1));
}

/** Joins `room` with `since` and pages on, as a reconnecting client does; returns every message after `since`. */
export async function catchUp(client: Client, room: string, since: number): Promise<Frame[]> {
  const messages: Frame[] = [];
  for (;;) {
    const joined = await client.join(room, since);
    messages.push(...joined.messages);
    if (joined.complete) return messages;
    since = joined.messages.at(-1)!.seq;
  }
}

/** Connects and says hello; optionally joins rooms (consuming the joined frames). */
export async function user(server: TestServer, name: string, ...rooms: string[]): Promise<Client> {
  const client = await Client.connect(server.wsUrl);
  await client.hello(name);
  for (const room of rooms) await client.join(room);
  return client;
}

/** A raw TCP line client for the plain-TCP door. */
export class LineClient {
  /** What is on the screen, as a script reads it: the chat prompt and its erasing taken out (see `raw`). */
  private buffer = "";
  /** Everything received, prompts and all. */
  raw = "";
  readonly waker = new Waker();
  isClosed = false;
  socket!: Awaited<ReturnType<typeof Bun.connect>>;

  static async connect(port: number): Promise<LineClient> {
    const c = new LineClient();
    c.socket = await Bun.connect({
      hostname: "127.0.0.1",
      port,
      socket: {
        data: (_s, data) => {
          const text = new TextDecoder().decode(data);
          c.raw += text;
          // A prompt is on the last line only: what came before the last newline is clean already.
          const done = c.buffer.lastIndexOf("\n") + 1;
          c.buffer = c.buffer.slice(0, done) + withoutPrompts(c.buffer.slice(done) + text);
          c.waker.poke();
        },
        close: () => {
          c.isClosed = true;
          c.waker.poke();
        },
        error: () => {
          c.isClosed = true;
          c.waker.poke();
        },
      },
    });
    return c;
  }

  write(text: string | Uint8Array): void {
    this.socket.write(text);
  }

  /** Waits until the received text contains `marker`; returns everything up to and including it. */
  async readUntil(marker: string): Promise<string> {
    await this.waker.until(
      () => this.buffer.includes(marker),
      () => (this.isClosed ? "closed" : null),
      () => `${JSON.stringify(marker)} (had ${JSON.stringify(this.buffer)})`,
    );
    const end = this.buffer.indexOf(marker) + marker.length;
    const out = this.buffer.slice(0, end);
    this.buffer = this.buffer.slice(end);
    return out;
  }

  /** Reads the next whole line (without its newline). */
  async line(): Promise<string> {
    return (await this.readUntil("\n")).slice(0, -1);
  }

  /** Waits for the server to close the connection; returns what was left unread. */
  async untilClosed(): Promise<string> {
    await this.waker.until(
      () => this.isClosed,
      () => null,
      () => `a close (had ${JSON.stringify(this.buffer)})`,
    );
    const rest = this.buffer;
    this.buffer = "";
    return rest;
  }

  end(): void {
    this.socket.end();
  }
}

/**
 * The TCP door's chat prompt (`[general]> `, `> ` in no room) and what erases it when a line
 * comes (CR, ANSI erase in line), taken out of `text`: what a script reading lines keeps. The
 * `name: ` prompt stays.
 */
export function withoutPrompts(text: string): string {
  // Line by line, not one regular expression over it all: a line of 100 kB scanned from each of its characters would take minutes.
  return text
    .split("\n")
    .map((line) => {
      const erased = line.lastIndexOf(ERASE_PROMPT);
      const rest = erased === -1 ? line : line.slice(erased + ERASE_PROMPT.length);
      return rest.replace(/^(?:\[[a-z0-9][a-z0-9_-]*\]> |> )/, "");
    })
    .join("\n");
}

/** What the door writes before a line that comes while its prompt is shown: CR, then ANSI erase in line. */
const ERASE_PROMPT = "\r\x1b[K";

/** A user of the TCP door: connects, answers the name prompt, and reads up to the "now in general" line. */
export async function tcpUser(server: TestServer, name: string): Promise<{ client: LineClient; joinedText: string }> {
  const client = await LineClient.connect(server.chat.tcpPort!);
  await client.readUntil("name: ");
  client.write(`${name}\n`);
  const joinedText = await client.readUntil("what you type goes to general\n");
  return { client, joinedText };
}

/** A client-to-server WebSocket text frame (masked, as RFC 6455 requires of clients). */
export function maskedTextFrame(text: string): Uint8Array {
  const payload = new TextEncoder().encode(text);
  const mask = crypto.getRandomValues(new Uint8Array(4));
  const n = payload.length;
  const header = n < 126 ? [0x81, 0x80 | n] : n < 65536 ? [0x81, 0x80 | 126, n >> 8, n & 255] : [0x81, 0x80 | 127, 0, 0, 0, 0, (n >>> 24) & 255, (n >>> 16) & 255, (n >>> 8) & 255, n & 255];
  const frame = new Uint8Array(header.length + 4 + n);
  frame.set(header, 0);
  frame.set(mask, header.length);
  for (let i = 0; i < n; i++) frame[header.length + 4 + i] = payload[i]! ^ mask[i % 4]!;
  return frame;
}

/**
 * A WebSocket client on a bare TCP socket, for a peer that stops reading: `pause()` leaves
 * everything the server sends in the kernel's buffers, as a stuck client would.
 */
export async function rawWebSocket(port: number): Promise<{ send: (frame: object) => void; pause: () => void; close: () => void }> {
  const socket = await Bun.connect({ hostname: "127.0.0.1", port, socket: { data() {} } });
  socket.write(
    `GET /ws HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
  );
  return {
    send: (frame) => socket.write(maskedTextFrame(JSON.stringify(frame))),
    pause: () => socket.pause(),
    close: () => socket.terminate(),
  };
}

export interface AttemptOptions {
  /** The local address to connect from (all of 127.0.0.0/8 is loopback): another client's address. */
  from?: string;
  /** Keeps an upgraded socket open until `close()`, so that it holds its place in the caps. */
  hold?: boolean;
}

/** Sends a raw HTTP/1.1 request for /ws and returns the status and the parsed JSON body. */
export async function upgradeAttempt(
  port: number,
  headers: Record<string, string>,
  options: AttemptOptions = {},
): Promise<{ status: number; body: unknown; raw: string; close: () => void }> {
  let text = "";
  let done: () => void;
  const finished = new Promise<void>((resolve) => (done = resolve));
  const socket = connect({ host: "127.0.0.1", port, ...(options.from ? { localAddress: options.from } : {}) });
  socket.on("data", (data) => {
    text += data.toString("utf8");
    const end = text.indexOf("\r\n\r\n");
    const length = /content-length: (\d+)/i.exec(text)?.[1];
    if (end !== -1 && (text.startsWith("HTTP/1.1 101") || (length && text.length >= end + 4 + Number(length)))) done();
  });
  socket.on("close", () => done());
  socket.on("error", () => done());
  const lines = Object.entries({ Host: `127.0.0.1:${port}`, ...headers }).map(([k, v]) => `${k}: ${v}\r\n`);
  socket.write(`GET /ws HTTP/1.1\r\n${lines.join("")}\r\n`);
  await bounded(finished, "an HTTP answer");
  const close = () => void socket.destroy();
  const status = Number(text.slice(9, 12));
  if (!(options.hold && status === 101)) close();
  const body = text.slice(text.indexOf("\r\n\r\n") + 4);
  return { status, body: status === 101 ? null : JSON.parse(body), raw: text, close };
}

export const WS_UPGRADE = {
  Upgrade: "websocket",
  Connection: "Upgrade",
  "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
  "Sec-WebSocket-Version": "13",
};

/** Redis databases a test redis-server offers: one per test server that wants a clean slate. */
const REDIS_DATABASES = 4096;

/** A real redis-server on a free loopback port, with its data (AOF, fsync always) in a temp dir. */
export interface TestRedis extends AsyncDisposable {
  port: number;
  /** The URL of database `db` (each test server may take its own, for a clean slate). */
  url: (db?: number) => string;
  /** A database no test has taken yet (1, 2, …; 0 is where `command` runs). */
  freshDb: () => number;
  /** Stops it (SIGTERM: it writes its AOF and exits) or kills it (SIGKILL). */
  stop: (signal?: "SIGTERM" | "SIGKILL") => Promise<void>;
  /** Starts it again on the same port and data; resolves when it accepts connections. */
  start: () => Promise<void>;
  /** Throws its data away (while it is stopped): it starts again empty, as after losing its disk. */
  wipe: () => void;
  /** Runs one command on a fresh connection, in database 0. */
  command: (cmd: string, ...args: string[]) => Promise<any>;
  /** Runs one command on a fresh connection, in database `db`. */
  commandIn: (db: number, cmd: string, ...args: string[]) => Promise<any>;
  /** Stops it and removes its data (also what `await using` does). */
  cleanup: () => Promise<void>;
}

/** A free loopback port, held until `release()` (for a process that cannot report a port it picked). */
export function reservePort(): { port: number; release: () => void } {
  const listener = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  return { port: listener.port, release: () => listener.stop(true) };
}

/** A port nobody listens on right now (the OS picks it; it is free again once we let it go). */
export function freePort(): number {
  const { port, release } = reservePort();
  release();
  return port;
}

/** A real redis-server, on a free port and in a temp dir of its own once started. */
export async function startRedis(): Promise<TestRedis> {
  const redis = unstartedRedis();
  await redis.start();
  return redis;
}

/**
 * A real redis-server for the `describe` block (or file) this is called in: started before its
 * first test, killed and its data removed after its last.
 */
export function redisForSuite(): TestRedis {
  const redis = unstartedRedis();
  beforeAll(() => redis.start());
  afterAll(() => redis.cleanup());
  return redis;
}

/** A TestRedis that takes its port and folder at its first start. */
function unstartedRedis(): TestRedis {
  let dir: ReturnType<typeof tempDir> | null = null;
  let port: number | null = null;
  let proc: Bun.Subprocess<"ignore", "pipe", "pipe"> | null = null;
  const started = () => {
    if (port === null || dir === null) throw new Error("redis-server has not been started");
    return { port, dir };
  };
  const start = async () => {
    dir ??= tempDir();
    port ??= freePort();
    const p = Bun.spawn(
      ["/usr/bin/redis-server", "--port", String(port), "--bind", "127.0.0.1", "--dir", dir.path, "--save", "",
        "--appendonly", "yes", "--appendfsync", "always", "--databases", String(REDIS_DATABASES)],
      { stdin: "ignore", stdout: "pipe", stderr: "pipe" },
    );
    proc = p;
    // Ready once it says so (after loading its AOF), never by waiting a while.
    let seen = "";
    const decoder = new TextDecoder();
    const ready = (async () => {
      for await (const chunk of p.stdout) {
        seen += decoder.decode(chunk, { stream: true });
        if (seen.includes("Ready to accept connections")) return;
      }
      throw new Error(`redis-server exited: ${seen}`);
    })();
    await bounded(ready, "redis-server to start");
    // Keep reading so its log never blocks it.
    void (async () => {
      for await (const _ of p.stdout);
    })();
  };
  const url = (db = 0) => `redis://127.0.0.1:${started().port}/${db}`;
  let lastDb = 0;
  const commandIn = async (db: number, cmd: string, ...args: string[]) => {
    const client = new RedisClient(url(db));
    try {
      return await client.send(cmd, args);
    } finally {
      client.close();
    }
  };
  const cleanup = async () => {
    if (proc && proc.exitCode === null && proc.signalCode === null) {
      proc.kill("SIGKILL");
      await proc.exited;
    }
    dir?.cleanup();
  };
  return {
    get port() {
      return started().port;
    },
    url,
    freshDb: () => {
      if (++lastDb >= REDIS_DATABASES) throw new Error(`more than ${REDIS_DATABASES - 1} databases taken`);
      return lastDb;
    },
    start,
    wipe: () => {
      const { path } = started().dir;
      for (const name of readdirSync(path)) rmSync(join(path, name), { recursive: true, force: true });
    },
    stop: async (signal = "SIGTERM") => {
      proc?.kill(signal);
      await bounded(proc!.exited, "redis-server to stop");
    },
    command: (cmd, ...args) => commandIn(0, cmd, ...args),
    commandIn,
    cleanup,
    [Symbol.asyncDispose]: cleanup,
  };
}

/** `n` servers sharing database `db`; `await using` stops them all. */
export type Instances<N extends number> = Tuple<TestServer, N> & AsyncDisposable & { db: number };
type Tuple<T, N extends number, R extends T[] = []> = R["length"] extends N ? R : Tuple<T, N, [...R, T]>;

/**
 * `n` instances of the Redis engine sharing a fresh database of `redis`, with room for bursts
 * (rate limit 1000 / s unless `options` say otherwise).
 */
export async function instances<N extends number>(redis: TestRedis, n: N, options: ServerOptions = {}): Promise<Instances<N>> {
  const db = redis.freshDb();
  const redisUrl = redis.url(db);
  const started = await Promise.allSettled(
    Array.from({ length: n }, () => startServer({ redisUrl, rateLimitBurst: 1000, rateLimitPerSecond: 1000, ...options })),
  );
  const servers = started.flatMap((s) => (s.status === "fulfilled" ? [s.value] : []));
  const stop = async () => {
    await Promise.all(servers.map((s) => s.stop()));
  };
  const failed = started.find((s) => s.status === "rejected");
  if (failed) {
    await stop();
    throw failed.reason;
  }
  return Object.assign(servers as unknown as Tuple<TestServer, N>, { db, [Symbol.asyncDispose]: stop });
}

/**
 * The engines a suite of the hub's rules runs on: SQLite (the default: `:memory:`) and Redis
 * (REDIS_URL, a real redis-server). A suite says so at its top:
 *
 *   for (const engine of ENGINES) describe(engine, () => { const { startServer } = engineServers(engine); … });
 */
export const ENGINES = ["sqlite", "redis"] as const;
export type Engine = (typeof ENGINES)[number];

/**
 * `startServer` on `engine`, for the `describe` block this is called in. On "redis" the block gets
 * one real redis-server (started before its first test, removed after its last), and each server
 * a database of its own in it: a clean slate, as `:memory:` is. A server that brings its own store
 * or SQLite file is about that store or file: on "redis" it is refused, not quietly run on SQLite.
 */
export function engineServers(engine: Engine): { startServer: (options?: ServerOptions) => Promise<TestServer> } {
  if (engine === "sqlite") return { startServer };
  const redis = redisForSuite();
  return {
    startServer: (options = {}) => {
      if (options.store || options.redisUrl || (options.databasePath ?? ":memory:") !== ":memory:") {
        throw new Error("a server on the redis engine brings no store, REDIS_URL or SQLite file of its own");
      }
      return startServer({ ...options, redisUrl: redis.url(redis.freshDb()) });
    },
  };
}

/** A webhook secret for tests (§11.7: `whsec_` + base64 of 32 bytes). */
export const TEST_WEBHOOK_SECRET = `whsec_${Buffer.from("bun-chat test webhook secret 32b").toString("base64")}`;

/** One webhook POST a test receiver got, its signature verified with the `standardwebhooks` package. */
export interface Delivery {
  path: string;
  /** webhook-id */
  id: string;
  /** webhook-timestamp: the attempt's Unix seconds. */
  seconds: number;
  type: string;
  /** The body's ISO 8601 timestamp. */
  timestamp: string;
  data: Frame;
  /** What the receiver answered. */
  answer: number | "hang";
}

/** A local webhook receiver (`Bun.serve` on port 0); `await using` stops it. */
export interface Receiver extends AsyncDisposable {
  /** Its URL at `path`; the path tells a test which server delivered (each may be given its own). */
  url: (path?: string) => string;
  /** Every verified POST, in arrival order, repeats included. */
  deliveries: Delivery[];
  /** Requests whose signature or headers did not verify (a test expects none). */
  forged: string[];
  /** Any other request (a redirect followed, say). */
  strays: string[];
  /** Decides each answer: a status (a 3xx goes with `Location: /elsewhere`), or "hang": held until `release()`. */
  answer: (d: Delivery) => number | "hang";
  /** Resolves with the deliveries once `done` holds of them (checked at every request); bounded by WAIT_MS. */
  until: (done: (deliveries: Delivery[]) => boolean, what: string) => Promise<Delivery[]>;
  /** Answers 200 to every request held so far (its sender may be gone). */
  release: () => void;
  stop: () => Promise<void>;
}

export function webhookReceiver(secret = TEST_WEBHOOK_SECRET): Receiver {
  const verifier = new Webhook(secret);
  const waker = new Waker();
  const held: (() => void)[] = [];
  const receiver: Receiver = {
    url: (path = "/hooks") => `http://127.0.0.1:${server.port}${path}`,
    deliveries: [],
    forged: [],
    strays: [],
    answer: () => 200,
    until: async (done, what) => {
      await waker.until(() => done(receiver.deliveries), () => null, () => `${what} (had: ${JSON.stringify(receiver.deliveries.map((d) => [d.type, d.id, d.answer]))})`);
      return receiver.deliveries;
    },
    release: () => {
      for (const answer of held.splice(0)) answer();
    },
    stop: async () => {
      receiver.release();
      await server.stop(true);
    },
    [Symbol.asyncDispose]: () => receiver.stop(),
  };
  const server = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    async fetch(req) {
      const path = new URL(req.url).pathname;
      const body = await req.text();
      if (req.method !== "POST" || path === "/elsewhere") {
        receiver.strays.push(`${req.method} ${path}`);
        return new Response("stray", { status: 200 });
      }
      const headers = Object.fromEntries(req.headers);
      let payload: { type: string; timestamp: string; data: Frame };
      try {
        payload = verifier.verify(body, headers) as typeof payload;
        if (headers["content-type"] !== "application/json") throw new Error(`content-type ${headers["content-type"]}`);
      } catch (error) {
        receiver.forged.push(`${String(error)}: ${body.slice(0, 200)}`);
        waker.poke();
        return new Response("forged", { status: 401 });
      }
      const delivery: Delivery = {
        path,
        id: headers["webhook-id"]!,
        seconds: Number(headers["webhook-timestamp"]),
        type: payload.type,
        timestamp: payload.timestamp,
        data: payload.data,
        answer: 200,
      };
      delivery.answer = receiver.answer(delivery);
      receiver.deliveries.push(delivery);
      waker.poke();
      if (delivery.answer === "hang") {
        await new Promise<void>((resolve) => held.push(resolve));
        return new Response("late");
      }
      const status = delivery.answer;
      return new Response(null, { status, headers: status >= 300 && status < 400 ? { location: "/elsewhere" } : {} });
    },
  });
  return receiver;
}
