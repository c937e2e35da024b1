/**
 * End-to-end fan-out: the server as its own process, `receivers` clients in one room and
 * `senders` of them each firing `messages` sends without waiting. Reports deliveries per second,
 * send-to-receive latency, and the server's own CPU time per delivery.
 *
 *   bun run bench/fanout.ts [receivers=200] [senders=10] [messages=100]
 *
 * The clients share this process and its core with nothing else: on a 2-core machine the
 * figures are bounded by the clients as much as by the server.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const [receivers = 200, senders = 10, messages = 100] = process.argv.slice(2).map(Number);
const dir = mkdtempSync(join(tmpdir(), "bun-chat-bench-"));
const server = Bun.spawn([process.execPath, join(import.meta.dir, "..", "server.ts")], {
  env: {
    ...process.env,
    PORT: "0",
    HOST: "127.0.0.1",
    DATABASE_PATH: join(dir, "chat.sqlite"),
    LOG_LEVEL: "info",
    RATE_LIMIT_BURST: "10000",
    RATE_LIMIT_PER_SECOND: "10000",
    MAX_CONNECTIONS_PER_IP: "100000",
    HISTORY_ON_JOIN: "0",
  },
  stdout: "pipe",
  stderr: "inherit",
});
const port = await listeningPort(server.stdout);

type Client = { ws: WebSocket; received: number; done: Promise<void> };
const expected = senders * messages;
const sentAt = new Map<string, number>();
const latencies: number[] = [];

async function connect(name: string): Promise<Client> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`);
  const client = { ws, received: 0 } as Client;
  let resolveDone!: () => void;
  client.done = new Promise((resolve) => (resolveDone = resolve));
  let joined!: () => void;
  const ready = new Promise<void>((resolve) => (joined = resolve));
  ws.onmessage = (e) => {
    const frame = JSON.parse(String(e.data));
    if (frame.type === "joined") joined();
    else if (frame.type === "message") {
      const t = sentAt.get(frame.id);
      if (t !== undefined) latencies.push(performance.now() - t);
      if (++client.received === expected) resolveDone();
    }
  };
  await new Promise((resolve) => (ws.onopen = resolve));
  ws.send(JSON.stringify({ type: "hello", name }));
  ws.send(JSON.stringify({ type: "join", room: "bench" }));
  await ready;
  return client;
}

const clients: Client[] = [];
for (let i = 0; i < receivers; i++) clients.push(await connect(`user${i}`));
const started = performance.now();
for (let i = 0; i < messages; i++) {
  for (let s = 0; s < senders; s++) {
    const id = `${s}-${i}`;
    sentAt.set(id, performance.now());
    clients[s]!.ws.send(JSON.stringify({ type: "send", room: "bench", id, text: `message ${i} from sender ${s}` }));
  }
}
await Promise.all(clients.map((c) => c.done));
const seconds = (performance.now() - started) / 1000;
for (const c of clients) c.ws.close();
server.kill("SIGTERM");
await server.exited;
const usage = server.resourceUsage()!.cpuTime;
const cpuMicros = Number(usage.user) + Number(usage.system);
rmSync(dir, { recursive: true, force: true });

latencies.sort((a, b) => a - b);
const pct = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))]!.toFixed(1);
const deliveries = receivers * expected;
console.log(`${receivers} clients in one room, ${senders} senders × ${messages} messages = ${expected} messages, ${deliveries} deliveries`);
console.log(`elapsed ${seconds.toFixed(2)} s: ${Math.round(expected / seconds)} messages/s stored, ${Math.round(deliveries / seconds)} deliveries/s`);
console.log(`latency send → receive (ms): p50 ${pct(50)}  p90 ${pct(90)}  p99 ${pct(99)}  max ${pct(100)}`);
console.log(`server CPU ${(cpuMicros / 1e6).toFixed(2)} s in all, ${(cpuMicros / deliveries).toFixed(2)} µs per delivery (startup included)`);

/** Reads log lines until "listening" and returns its port; keeps draining the rest. */
async function listeningPort(stdout: ReadableStream<Uint8Array>): Promise<number> {
  const reader = stdout.getReader();
  const decoder = new TextDecoder();
  let text = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) throw new Error("server exited before listening");
    text += decoder.decode(value, { stream: true });
    const line = text.split("\n").find((l) => l.includes('"event":"listening"'));
    if (line) {
      void (async () => {
        while (!(await reader.read()).done);
      })();
      return Number(new URL(JSON.parse(line).url).port);
    }
  }
}
