/**
 * The project's bench, one command: every scenario against the chat server (server.ts, durable
 * SQLite in a temp folder) and against the floor (bench/floor.ts: raw Bun pub/sub, no protocol,
 * no storage), in the same run, as one table with the ratio to the floor.
 *
 *   bun run bench/run.ts [--quick] [--repeat N] [--only fanout,writeheavy,openloop,authority,connects,cold]
 *                        [--cpu-prof DIR] [--webhooks]
 *
 * The server under test runs on core 0 and the load generator (bench/load.ts) on core 1 when
 * `taskset` exists and there are two cores or more. Throughput scenarios run `repeat` times
 * (default 3) and report the median, with the spread between runs as the noise. `--quick` runs
 * smaller loads once (a smoke test, about 30 s). A whole run takes about 10 minutes. `--webhooks`
 * adds write-heavy with webhooks on (WEBHOOK_URL: a local receiver in this process that answers
 * 204 at once), against webhooks off in the same run.
 */
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { availableParallelism, cpus, tmpdir } from "node:os";
import { join } from "node:path";
import type { LoadArgs } from "./load.ts";
import { syncLatency } from "./storage.ts";

const ROOT = join(import.meta.dir, "..");
const quick = process.argv.includes("--quick");
const repeatAt = process.argv.indexOf("--repeat");
const REPEAT = repeatAt === -1 ? (quick ? 1 : 3) : Number(process.argv[repeatAt + 1]);
const onlyAt = process.argv.indexOf("--only");
/** `--only fanout,connects` runs just those scenarios (fanout, writeheavy, editheavy, openloop, authority, connects, cold). */
const only = onlyAt === -1 ? null : process.argv[onlyAt + 1]!.split(",");
const want = (scenario: string) => only === null || only.includes(scenario);
const profAt = process.argv.indexOf("--cpu-prof");
/** `--cpu-prof DIR` writes a markdown CPU profile of every chat server run into DIR. */
const profDir = profAt === -1 ? null : process.argv[profAt + 1]!;
/** `--webhooks`: write-heavy also with webhooks on, to a healthy local receiver. */
const webhooks = process.argv.includes("--webhooks");
/** The receiver's secret (§11.7: `whsec_` + base64 of 32 bytes); it verifies nothing: it measures the server. */
const BENCH_WEBHOOK_SECRET = `whsec_${Buffer.alloc(32, 7).toString("base64")}`;
/** The local webhook receiver: counts each POST and answers 204 at once; at /hang it never answers. */
let received = 0;
const receiver =
  webhooks || want("authority")
    ? Bun.serve({
        port: 0,
        hostname: "127.0.0.1",
        fetch: (req) => (req.url.endsWith("/hang") ? new Promise<Response>(() => {}) : (received++, new Response(null, { status: 204 }))),
      })
    : null;
/** Bounds one load-generator run. */
const RUN_TIMEOUT_MS = 120_000;
/** Bounds a cold start; also how long a server may take to accept its first connection. */
const START_TIMEOUT_MS = 10_000;
/** Cold starts measured per target (the median is reported). */
const COLD_STARTS = quick ? 1 : 5;

/** The compiled binary, once the cold-start scenario has built it. */
let binary: string | null = null;

const pin = existsSync("/usr/bin/taskset") && availableParallelism() >= 2;
const pinned = (core: number, cmd: string[]) => (pin ? ["taskset", "-c", String(core), ...cmd] : cmd);

/**
 * `floor-frames`: the floor answering connects with the chat's frames (floor.ts, `frames=chat`).
 * `floor-durable`: the floor publishing a frame only once it is appended to a file and synced (`FLOOR_LOG`).
 * `floor-store`: the floor publishing a frame only once the chat's SQLite engine has stored it (`FLOOR_STORE`).
 */
type Target = "chat" | "chat-binary" | "chat-memory" | "chat-webhooks" | "chat-webhooks-hang" | "chat-rules" | "chat-authority" | "floor" | "floor-frames" | "floor-durable" | "floor-store";
const isFloor = (target: Target) => target.startsWith("floor");

interface Running {
  proc: Bun.Subprocess;
  port: number;
  stop: () => Promise<void>;
}

/** A free loopback port (bound, then released). */
function freePort(): number {
  const probe = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = probe.port;
  probe.stop(true);
  return port;
}

/** Tries to upgrade a WebSocket until one succeeds; true on the first 101. */
async function accepts(port: number): Promise<boolean> {
  try {
    const answer = await new Promise<string>((resolve, reject) => {
      let text = "";
      Bun.connect({
        hostname: "127.0.0.1",
        port,
        socket: {
          open(s) {
            s.write(
              `GET /ws HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            );
          },
          data(s, chunk) {
            text += new TextDecoder().decode(chunk);
            if (text.includes("\r\n")) {
              s.terminate();
              resolve(text);
            }
          },
          close: () => resolve(text),
          error: (_s, e) => reject(e),
        },
      }).catch(reject);
    });
    return answer.startsWith("HTTP/1.1 101");
  } catch {
    return false;
  }
}

/** Starts a target on core 0; resolves once it accepts a WebSocket, with the time that took. */
/** Starts a target on core 0; `databasePath` (a restart) instead of a new file in a new folder. */
async function start(target: Target, databasePath?: string): Promise<Running & { coldMs: number }> {
  const port = freePort();
  const dir = mkdtempSync(join(tmpdir(), "bun-chat-bench-"));
  const script = isFloor(target) ? join(import.meta.dir, "floor.ts") : join(ROOT, "server.ts");
  const began = performance.now();
  const prof = profDir && !isFloor(target) ? ["--cpu-prof-md", `--cpu-prof-dir=${profDir}`] : [];
  const cmd = target === "chat-binary" ? [binary!] : [process.execPath, ...prof, script];
  const proc = Bun.spawn(pinned(0, cmd), {
    env: {
      ...process.env,
      PORT: String(port),
      HOST: "127.0.0.1",
      DATABASE_PATH: target === "chat-memory" ? ":memory:" : (databasePath ?? join(dir, "chat.sqlite")),
      ...(target === "floor-durable" ? { FLOOR_LOG: join(dir, "floor.log") } : {}),
      ...(target === "floor-store" ? { FLOOR_STORE: join(dir, "floor.sqlite") } : {}),
      ...(target.startsWith("chat-webhooks") || target === "chat-authority"
        ? { WEBHOOK_URL: `http://127.0.0.1:${receiver!.port}/${target.endsWith("hang") ? "hang" : ""}`, WEBHOOK_SECRET: BENCH_WEBHOOK_SECRET }
        : {}),
      // The bench measures the server, not its limits: every cap out of the way, logs quiet.
      LOG_LEVEL: "warn",
      RATE_LIMIT_BURST: "10000",
      RATE_LIMIT_PER_SECOND: "10000",
      MAX_CONNECTIONS: "1000000",
      MAX_CONNECTIONS_PER_IP: "1000000",
      HELLO_RATE_PER_MINUTE: "1000000",
      ROOM_STARTS_PER_HOUR: "1000000",
      ROOM_STARTS_PER_HOUR_PER_IP: "1000000",
    },
    stdout: "ignore",
    stderr: "inherit",
  });
  const deadline = performance.now() + START_TIMEOUT_MS;
  while (!(await accepts(port))) {
    if (performance.now() > deadline || proc.exitCode !== null) throw new Error(`${target} did not start`);
    await Bun.sleep(1);
  }
  const coldMs = performance.now() - began;
  return {
    proc,
    port,
    coldMs,
    stop: async () => {
      proc.kill("SIGTERM");
      await proc.exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** One load-generator run against a fresh server. */
async function load(target: Target, args: Omit<LoadArgs, "target" | "port" | "pid">): Promise<Record<string, number>> {
  const server = await start(target);
  try {
    const full: LoadArgs = {
      ...args,
      target: isFloor(target) ? "floor" : "chat",
      chatFrames: target === "floor-frames",
      ...(target === "chat-authority" || target === "chat-rules" ? { authority: true } : {}),
      port: server.port,
      pid: server.proc.pid,
      timeoutMs: RUN_TIMEOUT_MS,
    };
    const gen = Bun.spawn(pinned(1, [process.execPath, join(import.meta.dir, "load.ts"), JSON.stringify(full)]), {
      stdout: "pipe",
      stderr: "inherit",
    });
    const timer = setTimeout(() => gen.kill("SIGKILL"), RUN_TIMEOUT_MS);
    const before = received;
    const out = await new Response(gen.stdout).text();
    clearTimeout(timer);
    if ((await gen.exited) !== 0) throw new Error(`load generator failed: ${args.scenario} on ${target}`);
    const result = JSON.parse(out.trim().split("\n").at(-1)!);
    // POSTs received while the generator ran (connects, warm-up and the measured seconds).
    return target === "chat-webhooks" ? { ...result, webhooksReceived: received - before } : result;
  } finally {
    await server.stop();
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
/** The spread of repeated runs: (max − min) / median, as a percentage. */
const spread = (xs: number[]) => (xs.length < 2 ? "—" : `±${Math.round(((Math.max(...xs) - Math.min(...xs)) / median(xs)) * 50)}%`);

interface Row {
  scenario: string;
  metric: string;
  chat: number;
  floor: number | null;
  /** How the ratio reads: higher is better (chat/floor), or lower is better. */
  better: "higher" | "lower";
  goal: string;
  noise: string;
  digits?: number;
}

const rows: Row[] = [];
/** The rows comparing the durable chat with the floor that syncs each frame before publishing it. */
const DURABLE_FLOOR = "  durable floor: raw pub/sub, each frame appended to a file and fdatasync'd before it is published";
/** The rows comparing the durable chat with the floor that stores each frame with the chat's own SQLite engine first. */
const STORE_FLOOR = "  store floor: raw pub/sub, each frame stored by the chat's SQLite engine (SqliteStore, no protocol) before it is published";
/** Lines printed under the table: what a figure depends on besides the server. */
const notes: string[] = [];

/** Runs a scenario `REPEAT` times on each target, alternating, and keeps the medians. */
async function repeated(
  scenario: LoadArgs["scenario"],
  args: Omit<LoadArgs, "target" | "port" | "pid" | "scenario">,
  targets: Target[],
): Promise<Record<Target, Record<string, number>[]>> {
  const results = { chat: [], "chat-binary": [], "chat-memory": [], "chat-webhooks": [], "chat-webhooks-hang": [], "chat-rules": [], "chat-authority": [], floor: [], "floor-frames": [], "floor-durable": [], "floor-store": [] } as Record<Target, Record<string, number>[]>;
  for (let i = 0; i < REPEAT; i++) {
    for (const target of targets) {
      // The floor sends frames as big as the chat server delivered in this round.
      const frameBytes = target === "floor" || target === "floor-durable" || target === "floor-store" ? results.chat.at(-1)?.frameBytes : undefined;
      const r = await load(target, { scenario, ...args, frameBytes });
      results[target].push(r);
      console.error(`  ${scenario} ${target}: ${JSON.stringify(r)}`);
    }
  }
  return results;
}

const pick = (rs: Record<string, number>[], key: string) => rs.map((r) => r[key]!);

console.error(`bench: ${cpus()[0]?.model ?? "cpu"} × ${availableParallelism()}, Bun ${Bun.version}, ${pin ? "server on core 0, load on core 1" : "not pinned"}, repeat ${REPEAT}`);

if (want("fanout")) {
  const r = await repeated("fanout", { clients: quick ? 200 : 500, senders: 5, window: 10, seconds: quick ? 1 : 3 }, ["chat", "floor", "floor-durable", "floor-store"]);
  const chat = pick(r.chat, "deliveriesPerSec");
  const cpu = pick(r.chat, "cpuUsPerDelivery");
  rows.push(
    { scenario: `fan-out: 1 room × ${quick ? 200 : 500}, 5 senders, ${r.chat[0]?.frameBytes} B frames`, metric: "deliveries/s", chat: median(chat), floor: median(pick(r.floor, "deliveriesPerSec")), better: "higher", goal: "≥ 0.9×", noise: spread(chat) },
    { scenario: "", metric: "server CPU µs/delivery", chat: median(cpu), floor: median(pick(r.floor, "cpuUsPerDelivery")), better: "lower", goal: "≤ 1.2×", noise: spread(cpu), digits: 3 },
    { scenario: DURABLE_FLOOR, metric: "deliveries/s", chat: median(chat), floor: median(pick(r["floor-durable"], "deliveriesPerSec")), better: "higher", goal: "(floor)", noise: spread(chat) },
    { scenario: "", metric: "server CPU µs/delivery", chat: median(cpu), floor: median(pick(r["floor-durable"], "cpuUsPerDelivery")), better: "lower", goal: "(floor)", noise: spread(cpu), digits: 3 },
    { scenario: STORE_FLOOR, metric: "deliveries/s", chat: median(chat), floor: median(pick(r["floor-store"], "deliveriesPerSec")), better: "higher", goal: "(floor)", noise: spread(chat) },
    { scenario: "", metric: "server CPU µs/delivery", chat: median(cpu), floor: median(pick(r["floor-store"], "cpuUsPerDelivery")), better: "lower", goal: "(floor)", noise: spread(cpu), digits: 3 },
  );
}
if (want("writeheavy")) {
  const n = quick ? 200 : 1000;
  const targets: Target[] = ["chat", "chat-memory", ...(webhooks ? (["chat-webhooks", "chat-webhooks-hang"] as const) : []), "floor", "floor-durable", "floor-store"];
  const r = await repeated("writeheavy", { clients: n, window: 4, seconds: quick ? 1 : 3 }, targets);
  const chat = pick(r.chat, "deliveriesPerSec");
  const floor = median(pick(r.floor, "deliveriesPerSec"));
  rows.push(
    { scenario: `write-heavy: ${n / 2} rooms × 2, all sending, durable`, metric: "deliveries/s", chat: median(chat), floor, better: "higher", goal: "≥ 0.35×", noise: spread(chat) },
    { scenario: "  same, DATABASE_PATH=:memory:", metric: "deliveries/s", chat: median(pick(r["chat-memory"], "deliveriesPerSec")), floor, better: "higher", goal: "(reference)", noise: spread(pick(r["chat-memory"], "deliveriesPerSec")) },
    { scenario: DURABLE_FLOOR, metric: "deliveries/s", chat: median(chat), floor: median(pick(r["floor-durable"], "deliveriesPerSec")), better: "higher", goal: "(floor)", noise: spread(chat) },
    { scenario: STORE_FLOOR, metric: "deliveries/s", chat: median(chat), floor: median(pick(r["floor-store"], "deliveriesPerSec")), better: "higher", goal: "(floor)", noise: spread(chat) },
  );
  if (webhooks) {
    const on = pick(r["chat-webhooks"], "deliveriesPerSec");
    const hang = pick(r["chat-webhooks-hang"], "deliveriesPerSec");
    rows.push(
      { scenario: "  same, webhooks on (a local receiver answering 204) vs off: floor column = off", metric: "deliveries/s", chat: median(on), floor: median(chat), better: "higher", goal: "≥ 0.9×", noise: spread(on) },
      { scenario: "  same, webhooks on, the receiver never answering, vs off", metric: "deliveries/s", chat: median(hang), floor: median(chat), better: "higher", goal: "≥ 0.9×", noise: spread(hang) },
    );
    notes.push(
      `write-heavy, webhooks on: the receiver got ${pick(r["chat-webhooks"], "webhooksReceived").join(", ")} POSTs while the generator ran ` +
        `(${pick(r["chat-webhooks"], "deliveriesPerSec").map((d) => Math.round(d / 2)).join(", ")} messages/s stored)`,
    );
  }
}
if (want("editheavy")) {
  // Edits (§11.4) share the message path: an event stored and delivered, and its target changed
  // in the same commit. Set against the same write-heavy load of new messages, in this run.
  const n = quick ? 200 : 1000;
  const edits = await repeated("editheavy", { clients: n, window: 4, seconds: quick ? 1 : 3 }, ["chat"]);
  const sends = await repeated("writeheavy", { clients: n, window: 4, seconds: quick ? 1 : 3 }, ["chat"]);
  const e = pick(edits.chat, "editsPerSec");
  rows.push({
    scenario: `edit-heavy: ${n / 2} rooms × 2, each editing its own message, durable (floor: the same load sending new messages)`,
    metric: "stored per second", chat: median(e), floor: median(pick(sends.chat, "messagesPerSec")), better: "higher", goal: "(reference)", noise: spread(e),
  });
}
if (want("openloop")) {
  const n = quick ? 500 : 2000;
  const r = await repeated("openloop", { clients: n, rooms: n / 10, seconds: quick ? 3 : 10 }, ["chat", "chat-memory", "floor", "floor-durable", "floor-store"]);
  // A durable message waits for an fdatasync: this disk's, timed in the same run, in the temp dir the servers use.
  const syncs = [];
  for (let i = 0; i < REPEAT; i++) syncs.push(await syncLatency(tmpdir(), { ms: quick ? 1000 : 1500 }));
  console.error(`  openloop fdatasync of a 4 KB append: ${JSON.stringify(syncs)}`);
  const [p50, p99] = [pick(r.chat, "p50Ms"), pick(r.chat, "p99Ms")];
  const [memory50, memory99] = [pick(r["chat-memory"], "p50Ms"), pick(r["chat-memory"], "p99Ms")];
  const [floor50, floor99] = [median(pick(r.floor, "p50Ms")), median(pick(r.floor, "p99Ms"))];
  // Clamped at 0: /proc/stat counts in 10 ms ticks, so "other work" on a quiet machine reads slightly below 0.
  const worst = (key: string) => Math.max(0, ...[...r.chat, ...r["chat-memory"], ...r.floor, ...r["floor-durable"]].map((x) => x[key]!));
  notes.push(
    `open loop: the load generator's loop lag p99 ${median(pick(r.floor, "loopLagP99Ms")).toFixed(2)} ms (floor runs, median); ` +
      `at worst ${(worst("stealShare") * 100).toFixed(1)}% of a core stolen by the hypervisor and ` +
      `${(worst("otherCpuShare") * 100).toFixed(0)}% of a core used by other work: a p99 is the server's only when both are near 0`,
  );
  rows.push(
    { scenario: `open loop: ${n} clients, ${n / 10} rooms × 10, 1 msg/s each`, metric: "latency p50 ms", chat: median(p50), floor: floor50, better: "lower", goal: "", noise: spread(p50), digits: 2 },
    { scenario: "", metric: "latency p99 ms", chat: median(p99), floor: floor99, better: "lower", goal: "≤ 1 ms", noise: spread(p99), digits: 2 },
    { scenario: "  same, DATABASE_PATH=:memory:", metric: "latency p50 ms", chat: median(memory50), floor: floor50, better: "lower", goal: "(reference)", noise: spread(memory50), digits: 2 },
    { scenario: "", metric: "latency p99 ms", chat: median(memory99), floor: floor99, better: "lower", goal: "(reference)", noise: spread(memory99), digits: 2 },
    { scenario: DURABLE_FLOOR, metric: "latency p50 ms", chat: median(p50), floor: median(pick(r["floor-durable"], "p50Ms")), better: "lower", goal: "(floor)", noise: spread(p50), digits: 2 },
    { scenario: "", metric: "latency p99 ms", chat: median(p99), floor: median(pick(r["floor-durable"], "p99Ms")), better: "lower", goal: "(floor)", noise: spread(p99), digits: 2 },
    { scenario: STORE_FLOOR, metric: "latency p50 ms", chat: median(p50), floor: median(pick(r["floor-store"], "p50Ms")), better: "lower", goal: "(floor)", noise: spread(p50), digits: 2 },
    { scenario: "", metric: "latency p99 ms", chat: median(p99), floor: median(pick(r["floor-store"], "p99Ms")), better: "lower", goal: "(floor)", noise: spread(p99), digits: 2 },
    { scenario: "  chat (durable) vs this disk's fdatasync of a 4 KB append", metric: "p50 ms", chat: median(p50), floor: median(syncs.map((s) => s.p50Ms)), better: "lower", goal: "(floor)", noise: spread(p50), digits: 2 },
    { scenario: "", metric: "p99 ms", chat: median(p99), floor: median(syncs.map((s) => s.p99Ms)), better: "lower", goal: "(floor)", noise: spread(p99), digits: 2 },
  );
}
if (want("authority")) {
  // The send path of rooms that use the authority features, against rooms that use none, under
  // the same open loop: each client sends every 2 s, so slow mode (1 s) refuses nothing. First
  // slow mode and a ban list alone, then with webhooks on too (to the receiver in this process,
  // answering 204 at once).
  const n = quick ? 500 : 2000;
  const seconds = quick ? 3 : 10;
  const r = await repeated("openloop", { clients: n, rooms: n / 10, seconds, periodMs: 2000 }, ["chat", "chat-rules", "chat-authority"]);
  const perMessage = (x: Record<string, number>) => (x.serverCpuShare! * 1e6) / (x.deliveries! / 10 / seconds);
  const none = median(r.chat.map(perMessage));
  const [rules, all] = [r["chat-rules"].map(perMessage), r["chat-authority"].map(perMessage)];
  rows.push(
    { scenario: `authority: open loop, ${n} clients, ${n / 10} rooms × 10, a message every 2 s each; rooms with slow mode (1 s) and a ban list of 10 (floor column: rooms with neither)`, metric: "server CPU µs/message", chat: median(rules), floor: none, better: "lower", goal: "≤ 1.1×", noise: spread(rules), digits: 1 },
    { scenario: "  same, and webhooks on", metric: "server CPU µs/message", chat: median(all), floor: none, better: "lower", goal: "≤ 1.1×", noise: spread(all), digits: 1 },
    { scenario: "", metric: "latency p99 ms", chat: median(pick(r["chat-authority"], "p99Ms")), floor: median(pick(r.chat, "p99Ms")), better: "lower", goal: "", noise: spread(pick(r["chat-authority"], "p99Ms")), digits: 2 },
  );
}
if (want("connects")) {
  const n = quick ? 2000 : 10_000;
  // Rooms of 10, and of 100: a joiner's `joined` lists the room and everyone else hears of it, O(room).
  for (const roomSize of [10, 100]) {
    const r = await repeated("connects", { clients: n, roomSize }, ["chat", "floor", "floor-frames"]);
    const rate = pick(r.chat, "connectsPerSec");
    const rss = pick(r.chat, "rssPerConnBytes");
    rows.push(
      { scenario: `connects: ${n} clients (chat: hello + join, rooms of ${roomSize}; floor: upgrade + subscribe)`, metric: "connects/s", chat: median(rate), floor: median(pick(r.floor, "connectsPerSec")), better: "higher", goal: "", noise: spread(rate) },
      { scenario: "", metric: "RSS KB per idle connection", chat: median(rss) / 1024, floor: median(pick(r.floor, "rssPerConnBytes")) / 1024, better: "lower", goal: "≤ 4 KB", noise: spread(rss), digits: 1 },
      { scenario: `  connects: floor sending the chat's frames (hello + join, welcome, joined, presence), rooms of ${roomSize}`, metric: "connects/s", chat: median(rate), floor: median(pick(r["floor-frames"], "connectsPerSec")), better: "higher", goal: "≥ 0.8×", noise: spread(rate) },
    );
  }
}
if (want("cold")) {
  // The binary `bun run build` makes: what ships (the page packed in, bytecode, nothing bundled at start).
  const binDir = mkdtempSync(join(tmpdir(), "bun-chat-bin-"));
  binary = join(binDir, "bun-chat");
  const build = Bun.spawnSync([process.execPath, join(ROOT, "deploy/build.ts"), "--outfile", binary], { stdout: "ignore", stderr: "inherit" });
  if (build.exitCode !== 0) throw new Error("the binary did not build");
  const cold: Record<"chat" | "chat-binary" | "floor", number[]> = { chat: [], "chat-binary": [], floor: [] };
  // A cold start that matters is a restart (a deploy, a crash): on a database that exists. The
  // first start of each makes it, uncounted; a new file costs more (SQLite's switch to WAL syncs).
  const databases = { chat: join(binDir, "chat.sqlite"), "chat-binary": join(binDir, "binary.sqlite") };
  for (const target of ["chat", "chat-binary"] as const) await (await start(target, databases[target])).stop();
  for (let i = 0; i < COLD_STARTS; i++) {
    for (const target of ["chat", "chat-binary", "floor"] as const) {
      const server = await start(target, target === "floor" ? undefined : databases[target]);
      cold[target].push(server.coldMs);
      await server.stop();
    }
  }
  rmSync(binDir, { recursive: true, force: true });
  rows.push(
    { scenario: "cold start: spawn to first accepted WebSocket, `bun run server.ts`, restarting on its database", metric: "ms", chat: median(cold.chat), floor: median(cold.floor), better: "lower", goal: "", noise: spread(cold.chat) },
    { scenario: "  same, the compiled binary (`bun run build`)", metric: "ms", chat: median(cold["chat-binary"]), floor: median(cold.floor), better: "lower", goal: "≤ 100 ms", noise: spread(cold["chat-binary"]) },
  );
}

const fmt = (x: number, digits = 0) => x.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
const table = [
  "| scenario | metric | chat | floor | chat / floor | goal | noise (chat) |",
  "|---|---|---:|---:|---:|---|---|",
  ...rows.map((r) => {
    const ratio = r.floor ? `${(r.chat / r.floor).toFixed(2)}×` : "—";
    return `| ${r.scenario} | ${r.metric} | ${fmt(r.chat, r.digits)} | ${r.floor === null ? "—" : fmt(r.floor, r.digits)} | ${ratio} | ${r.goal} | ${r.noise} |`;
  }),
];
console.log(`${cpus()[0]?.model ?? "cpu"} × ${availableParallelism()}, Bun ${Bun.version}, ${pin ? "server pinned to core 0, load generator to core 1" : "not pinned"}, ${REPEAT} run(s) each, medians\n`);
console.log(table.join("\n"));
if (notes.length) console.log(`\n${notes.join("\n")}`);
void receiver?.stop(true);
