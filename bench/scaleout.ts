/**
 * Scale-out: the same load on the embedded SQLite engine (one process) and on the Redis engine
 * with 1, 2 and 3 instances sharing one redis-server (AOF, `appendfsync always`, as docs/deploy.md
 * asks for), clients spread round-robin over the instances. Two shapes: everyone in one room, and
 * the same clients in `rooms` rooms. Reports deliveries/s, send → receive latency, and each
 * instance's CPU per delivery it made.
 *
 *   bun run bench/scaleout.ts [clients=120] [senders=12] [messages=50] [rooms=12]
 *
 * Every process runs on this machine: instances are pinned to a core each (taskset, when
 * present), round-robin, and share the cores with Redis and with the clients (this process).
 */
import { RedisClient } from "bun";
import { mkdtempSync, rmSync } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";

const [clients = 120, senders = 12, messages = 50, roomCount = 12] = process.argv.slice(2).map(Number);
const SERVER = join(import.meta.dir, "..", "server.ts");
const CORES = availableParallelism();
const taskset = Bun.which("taskset");
/** Bounds one scenario; a run that takes longer is reported as such. */
const SCENARIO_TIMEOUT_MS = 120_000;

const dir = mkdtempSync(join(tmpdir(), "bun-chat-scaleout-"));
const redisPort = freePort();
const redis = Bun.spawn(
  ["redis-server", "--port", String(redisPort), "--bind", "127.0.0.1", "--dir", dir, "--save", "", "--appendonly", "yes", "--appendfsync", "always", "--databases", "64",
    // Bounded as docs/deploy.md says: room for MAX_ROOMS × HISTORY_RETAIN maximal messages (below), nothing evicted.
    "--maxmemory", "1gb", "--maxmemory-policy", "noeviction"],
  { stdout: "pipe", stderr: "inherit" },
);
await lineContaining(redis.stdout, "Ready to accept connections");

interface Instance {
  proc: Bun.Subprocess;
  port: number;
  deliveries: number;
}

let db = 0;
async function startInstances(n: number, engine: "sqlite" | "redis"): Promise<Instance[]> {
  const database = ++db;
  return Promise.all(
    Array.from({ length: n }, async (_, i) => {
      const env: Record<string, string> = {
        ...(process.env as Record<string, string>),
        PORT: "0",
        HOST: "127.0.0.1",
        LOG_LEVEL: "info",
        RATE_LIMIT_BURST: "10000",
        RATE_LIMIT_PER_SECOND: "10000",
        MAX_CONNECTIONS_PER_IP: "100000",
        HELLO_RATE_PER_MINUTE: "100000",
        ROOM_STARTS_PER_HOUR: "1000000",
        ROOM_STARTS_PER_HOUR_PER_IP: "1000000",
        HISTORY_ON_JOIN: "0",
        // 100 rooms × 1000 messages of 2000 characters: about 830 MB, within the redis-server's 1 GB.
        MAX_ROOMS: "100",
        HISTORY_RETAIN: "1000",
      };
      if (engine === "redis") env.REDIS_URL = `redis://127.0.0.1:${redisPort}/${database}`;
      else env.DATABASE_PATH = join(dir, `chat-${database}.sqlite`);
      const command = [process.execPath, SERVER];
      const proc = Bun.spawn(taskset ? [taskset, "-c", String(i % CORES), ...command] : command, { env, stdout: "pipe", stderr: "inherit" });
      const port = await listeningPortOf(proc);
      return { proc, port, deliveries: 0 };
    }),
  );
}

interface Result {
  seconds: number;
  deliveries: number;
  p50: number;
  p99: number;
  cpuPerDelivery: number[];
}

async function scenario(n: number, engine: "sqlite" | "redis", rooms: number): Promise<Result> {
  const instances = await startInstances(n, engine);
  const roomOf = (i: number) => `r${i % rooms}`;
  // Each room's expected messages: from the senders in it.
  const expectedIn = new Map<string, number>();
  for (let s = 0; s < senders; s++) expectedIn.set(roomOf(s), (expectedIn.get(roomOf(s)) ?? 0) + messages);
  const sentAt = new Map<string, number>();
  const latencies: number[] = [];
  const sockets: WebSocket[] = [];
  const done: Promise<void>[] = [];
  for (let i = 0; i < clients; i++) {
    const instance = instances[i % n]!;
    const ws = new WebSocket(`ws://127.0.0.1:${instance.port}/ws`);
    const expected = expectedIn.get(roomOf(i)) ?? 0;
    let received = 0;
    let finish!: () => void;
    done.push(expected === 0 ? Promise.resolve() : new Promise((resolve) => (finish = resolve)));
    let joined!: () => void;
    const ready = new Promise<void>((resolve) => (joined = resolve));
    ws.onmessage = (e) => {
      const frame = JSON.parse(String(e.data));
      if (frame.type === "joined") joined();
      else if (frame.type === "message") {
        instance.deliveries++;
        const t = sentAt.get(frame.id);
        if (t !== undefined) latencies.push(performance.now() - t);
        if (++received === expected) finish();
      }
    };
    await new Promise((resolve) => (ws.onopen = resolve));
    ws.send(JSON.stringify({ type: "hello", name: `user${i}` }));
    ws.send(JSON.stringify({ type: "join", room: roomOf(i) }));
    await ready;
    sockets.push(ws);
  }
  const cpuBefore = await Promise.all(instances.map((i) => cpuMicros(i.proc.pid)));
  const started = performance.now();
  for (let m = 0; m < messages; m++) {
    for (let s = 0; s < senders; s++) {
      const id = `${s}-${m}`;
      sentAt.set(id, performance.now());
      sockets[s]!.send(JSON.stringify({ type: "send", room: roomOf(s), id, text: `message ${m} from sender ${s}` }));
    }
  }
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([Promise.all(done), new Promise((_, reject) => (timer = setTimeout(() => reject(new Error("scenario timed out")), SCENARIO_TIMEOUT_MS)))]);
  clearTimeout(timer);
  const seconds = (performance.now() - started) / 1000;
  const cpuAfter = await Promise.all(instances.map((i) => cpuMicros(i.proc.pid)));
  for (const ws of sockets) ws.close();
  for (const i of instances) i.proc.kill("SIGTERM");
  await Promise.all(instances.map((i) => i.proc.exited));
  latencies.sort((a, b) => a - b);
  const pct = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))]!;
  return {
    seconds,
    deliveries: instances.reduce((sum, i) => sum + i.deliveries, 0),
    p50: pct(50),
    p99: pct(99),
    cpuPerDelivery: instances.map((inst, k) => (cpuAfter[k]! - cpuBefore[k]!) / Math.max(1, inst.deliveries)),
  };
}

console.log(`${clients} clients, ${senders} senders × ${messages} messages; ${CORES} cores; instances pinned: ${taskset ? "yes" : "no"}`);
console.log("engine      instances  rooms  deliveries  deliveries/s  p50 ms  p99 ms  CPU µs/delivery per instance");
const runs: [number, "sqlite" | "redis"][] = [
  [1, "sqlite"],
  [1, "redis"],
  [2, "redis"],
  [3, "redis"],
];
try {
  for (const rooms of [1, roomCount]) {
    for (const [n, engine] of runs) {
      const r = await scenario(n, engine, rooms);
      console.log(
        `${engine.padEnd(11)} ${String(n).padStart(9)}  ${String(rooms).padStart(5)}  ${String(r.deliveries).padStart(10)}  ` +
          `${String(Math.round(r.deliveries / r.seconds)).padStart(12)}  ${r.p50.toFixed(1).padStart(6)}  ${r.p99.toFixed(1).padStart(6)}  ` +
          r.cpuPerDelivery.map((c) => c.toFixed(1)).join(" / "),
      );
    }
  }
} finally {
  const admin = new RedisClient(`redis://127.0.0.1:${redisPort}`);
  await admin.send("SHUTDOWN", ["NOSAVE"]).catch(() => {});
  admin.close();
  await redis.exited;
  rmSync(dir, { recursive: true, force: true });
}

/** User + system CPU of a process so far, in µs, from /proc (Linux). */
async function cpuMicros(pid: number): Promise<number> {
  const stat = await Bun.file(`/proc/${pid}/stat`).text();
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const ticks = Number(fields[11]) + Number(fields[12]);
  return (ticks * 1e6) / 100;
}

function freePort(): number {
  const listener = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = listener.port;
  listener.stop(true);
  return port;
}

/** Reads `stream` until a line contains `text`; keeps draining the rest. */
async function lineContaining(stream: ReadableStream<Uint8Array>, text: string): Promise<string> {
  const reader = stream.getReader();
  const decoder = new TextDecoder();
  let seen = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`exited before printing ${text}`);
    seen += decoder.decode(value, { stream: true });
    const line = seen.split("\n").find((l) => l.includes(text));
    if (line) {
      void (async () => {
        while (!(await reader.read()).done);
      })();
      return line;
    }
  }
}

/** The port a server process logged in its "listening" line. */
async function listeningPortOf(proc: Bun.Subprocess): Promise<number> {
  const line = await lineContaining(proc.stdout as ReadableStream<Uint8Array>, '"event":"listening"');
  return Number(new URL(JSON.parse(line).url).port);
}
