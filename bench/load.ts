/**
 * The load generator: many minimal WebSocket clients on Bun.connect in one process. It never
 * parses JSON per delivery: frames are counted from their headers, and a message is recognised
 * by a fixed-width tail at the end of its text (`#SSSSS:TTTTTTTTTT`: sender, send time in µs),
 * at a fixed distance from the end of the frame, so the load generator is not the bottleneck.
 *
 *   bun run bench/load.ts '{"scenario":"fanout","target":"chat","port":3000,"pid":1234}'
 *
 * Run by bench/run.ts, which starts the server under test and pins each to its own core. Prints
 * one JSON object with the figures.
 */
import { readFileSync } from "node:fs";

export interface LoadArgs {
  scenario: "fanout" | "writeheavy" | "editheavy" | "openloop" | "connects";
  target: "chat" | "floor";
  port: number;
  /** The server's process id, for its CPU time and RSS. */
  pid: number;
  /** Floor only: pad frames to this many bytes, the size the chat server delivers. */
  frameBytes?: number;
  /** Floor only: connect as to the chat server (hello + join, until `joined`), the floor answering with the chat's frames. */
  chatFrames?: boolean;
  clients?: number;
  rooms?: number;
  /** Connects only: members per room (10 unless given). */
  roomSize?: number;
  senders?: number;
  /** Messages a sender may have sent and not yet seen echoed. */
  window?: number;
  seconds?: number;
  /** Open loop: how often each client sends, in ms (1000 unless given). */
  periodMs?: number;
  /**
   * Open loop, chat only: every room uses the authority features: its owner (the room's first
   * joiner) turns slow mode on (1 s, below the send period) and bans BANNED_USERS users.
   */
  authority?: boolean;
  /** Bounds the wait for a phase (connect, join, drain) before the run fails. */
  timeoutMs?: number;
}

/** Time before measuring starts, so that JIT and buffers settle. */
const WARMUP_MS = 500;
/** The open loop's send tick: how often the generator looks for clients whose second is up. */
const TICK_MS = 1;
/** How long connections sit idle before the server's RSS is read. */
const IDLE_SETTLE_MS = 2000;
/** Bounds the connections being opened at once. */
const CONNECT_CONCURRENCY = 200;
/** The text's fixed-width tail: `#` + 5-digit sender + `:` + 10-digit µs. */
const TAIL_BYTES = 17;
/** What follows the text in a chat `message` frame: `","ts":` + 13 digits + `}`. */
const TRAILER_BYTES = 21;
/** The most a Redis frame adds after the ts: `,"seq":` + up to 16 digits. */
const SEQ_TRAILER_MAX_BYTES = 23;
/** Open loop with `authority`: users banned in every room (a ban list of this many). */
const BANNED_USERS = 10;
/** Open loop with `authority`: the rooms' slow mode, in seconds (below the send period). */
const AUTHORITY_SLOW_MODE_SECONDS = 1;
/** The text before the tail: about the length of a typical chat line. */
const TEXT_PAD = "a chat message of a typical length, sixty characters or so. ";

const HASH = 35;
const COLON = 58;
const QUOTE = 34;
const encoder = new TextEncoder();
const t0 = performance.now();
const micros = () => Math.round((performance.now() - t0) * 1000);

/** `#SSSSS:TTTTTTTTTT` for sender `s` now. */
function tail(s: number): string {
  return `#${String(s).padStart(5, "0")}:${String(micros()).padStart(10, "0")}`;
}

function digits(buf: Uint8Array, from: number, to: number): number {
  let n = 0;
  for (let i = from; i < to; i++) n = n * 10 + buf[i]! - 48;
  return n;
}

/**
 * Where a delivered message's tail starts in `buf`, or -1 if the frame ending at `end` is not one
 * of ours. Read its fields with `tailSender` and `tailSentUs`: no object per delivery, so the
 * generator makes no garbage of its own while it measures.
 */
function tailAt(buf: Uint8Array, end: number): number {
  const at = end - TRAILER_BYTES - TAIL_BYTES;
  if (at >= 0 && buf[at] === HASH && buf[at + 6] === COLON) return at;
  // The Redis engine's frames end in `,"seq":N` after the ts: look a little further back.
  for (let k = at - 1; k >= Math.max(0, at - SEQ_TRAILER_MAX_BYTES); k--) {
    if (buf[k] === HASH && buf[k + 6] === COLON && buf[k + TAIL_BYTES] === QUOTE) return k;
  }
  return -1;
}
const tailSender = (buf: Uint8Array, at: number) => digits(buf, at + 1, at + 6);
const tailSentUs = (buf: Uint8Array, at: number) => digits(buf, at + 7, at + TAIL_BYTES);

/** A masked client text frame (mask 0: the payload goes as is; servers accept any mask). */
function frame(payload: Uint8Array, opcode = 1): Uint8Array {
  const n = payload.length;
  const head = n < 126 ? 6 : n < 65536 ? 8 : 14;
  const out = new Uint8Array(head + n);
  out[0] = 0x80 | opcode;
  if (n < 126) out[1] = 0x80 | n;
  else if (n < 65536) {
    out[1] = 0x80 | 126;
    out[2] = n >> 8;
    out[3] = n & 255;
  } else {
    out[1] = 0x80 | 127;
    new DataView(out.buffer).setUint32(6, n);
  }
  out.set(payload, head);
  return out;
}

type OnText = (buf: Uint8Array, start: number, end: number) => void;

/** A WebSocket client that counts text frames and hands them to `onText` without decoding. */
class RawWs {
  frames = 0;
  onText: OnText | null = null;
  private socket!: Bun.Socket<RawWs>;
  private rest: Uint8Array | null = null;
  private out: Uint8Array[] = [];
  private upgraded = false;
  private opened!: () => void;
  private failed!: (e: Error) => void;
  readonly ready = new Promise<void>((resolve, reject) => {
    this.opened = resolve;
    this.failed = reject;
  });

  static async open(port: number, path: string): Promise<RawWs> {
    const ws = new RawWs();
    ws.socket = await Bun.connect<RawWs>({
      hostname: "127.0.0.1",
      port,
      data: ws,
      socket: {
        data: (s, chunk) => s.data.receive(chunk),
        drain: (s) => s.data.flush(),
        close: (s) => s.data.failed(new Error("closed")),
        error: (s, e) => s.data.failed(e),
      },
    });
    // Small frames go out at once: Nagle's wait for an ACK would add up to 40 ms to a latency.
    ws.socket.setNoDelay(true);
    ws.socket.write(
      `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    );
    await ws.ready;
    return ws;
  }

  send(text: string): void {
    this.write(frame(encoder.encode(text)));
  }

  close(): void {
    this.socket.terminate();
  }

  private write(bytes: Uint8Array): void {
    if (this.out.length) {
      this.out.push(bytes);
      return;
    }
    const n = this.socket.write(bytes);
    if (n < bytes.length) this.out.push(bytes.subarray(Math.max(0, n)));
  }

  private flush(): void {
    while (this.out.length) {
      const head = this.out[0]!;
      const n = this.socket.write(head);
      if (n < head.length) {
        this.out[0] = head.subarray(Math.max(0, n));
        return;
      }
      this.out.shift();
    }
  }

  private receive(chunk: Uint8Array): void {
    let buf = chunk;
    if (this.rest) {
      buf = new Uint8Array(this.rest.length + chunk.length);
      buf.set(this.rest);
      buf.set(chunk, this.rest.length);
      this.rest = null;
    }
    let at = 0;
    if (!this.upgraded) {
      const text = new TextDecoder().decode(buf);
      const end = text.indexOf("\r\n\r\n");
      if (end === -1) {
        this.rest = buf.slice();
        return;
      }
      if (!text.startsWith("HTTP/1.1 101")) return this.failed(new Error(text.split("\r\n")[0]));
      this.upgraded = true;
      at = end + 4;
      this.opened();
    }
    const n = buf.length;
    while (at + 2 <= n) {
      const opcode = buf[at]! & 0x0f;
      let len = buf[at + 1]! & 0x7f;
      let head = 2;
      if (len === 126) {
        if (at + 4 > n) break;
        len = (buf[at + 2]! << 8) | buf[at + 3]!;
        head = 4;
      } else if (len === 127) {
        if (at + 10 > n) break;
        len = buf[at + 6]! * 2 ** 24 + ((buf[at + 7]! << 16) | (buf[at + 8]! << 8) | buf[at + 9]!);
        head = 10;
      }
      if (at + head + len > n) break;
      if (opcode === 1) {
        this.frames++;
        this.onText?.(buf, at + head, at + head + len);
      } else if (opcode === 9) {
        this.write(frame(buf.slice(at + head, at + head + len), 10));
      }
      at += head + len;
    }
    if (at < n) this.rest = buf.slice(at);
  }
}

/** CPU time (µs) and RSS (bytes) of a process, from /proc. */
function usage(pid: number): { cpuUs: number; rss: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // utime and stime are fields 14 and 15, in clock ticks (100 per second on Linux).
  const cpuUs = (Number(fields[11]) + Number(fields[12])) * 10_000;
  const rss = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))![1]) * 1024;
  return { cpuUs, rss };
}

/**
 * This machine's CPU time (µs, summed over its cores) spent busy and stolen, from /proc/stat's
 * first line ("cpu user nice system idle iowait irq softirq steal ...", in ticks of 10 ms).
 */
function machine(): { busyUs: number; stealUs: number } {
  const f = readFileSync("/proc/stat", "utf8").split("\n", 1)[0]!.split(/\s+/).map(Number);
  return { busyUs: (f[1]! + f[2]! + f[3]! + f[6]! + f[7]!) * 10_000, stealUs: f[8]! * 10_000 };
}

/** The `p`th percentile of sorted values, e.g. percentile([1, 2, 3, 4], 50) = 3; 100 gives the max. */
function percentile(sorted: Float64Array, p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function bounded<T>(what: string, ms: number, promise: Promise<T>): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: no end within ${ms} ms`)), ms)));
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Waits until `done()` holds, checking every millisecond. */
async function until(what: string, ms: number, done: () => boolean): Promise<void> {
  const deadline = performance.now() + ms;
  while (!done()) {
    if (performance.now() > deadline) throw new Error(`${what}: not done within ${ms} ms`);
    await sleep(1);
  }
}

/** Starts with `{"type":"<type>"`: a chat frame of that type. */
function isType(buf: Uint8Array, start: number, type: string): boolean {
  const want = `{"type":"${type}"`;
  for (let i = 0; i < want.length; i++) if (buf[start + i] !== want.charCodeAt(i)) return false;
  return true;
}

/**
 * Opens `count` clients, client i in room `roomOf(i)`: for the chat server hello + join, waiting
 * for `joined`; for the floor a bare upgrade subscribed to the room, or with `chatFrames` the
 * chat's hello + join to a floor that answers them with the chat's frames.
 */
async function connectAll(args: LoadArgs, count: number, roomOf: (i: number) => string, from = 0): Promise<RawWs[]> {
  const clients: RawWs[] = new Array(count);
  let next = from;
  count += from;
  const timeout = args.timeoutMs ?? 120_000;
  async function one(i: number): Promise<void> {
    const room = roomOf(i);
    const at = i - from;
    if (args.target === "floor" && !args.chatFrames) {
      clients[at] = await RawWs.open(args.port, `/ws?room=${room}`);
      return;
    }
    const ws = await RawWs.open(args.port, args.target === "floor" ? `/ws?room=${room}&frames=chat` : "/ws");
    clients[at] = ws;
    const joined = new Promise<void>((resolve, reject) => {
      ws.onText = (buf, start) => {
        if (isType(buf, start, "joined")) resolve();
        else if (isType(buf, start, "error")) reject(new Error(new TextDecoder().decode(buf.subarray(start, start + 200))));
      };
    });
    ws.send(`{"type":"hello","name":"u${i}"}`);
    ws.send(`{"type":"join","room":"${room}"}`);
    await joined;
    ws.onText = null;
  }
  async function worker(): Promise<void> {
    while (next < count) await one(next++);
  }
  await bounded("connect", timeout, Promise.all(Array.from({ length: Math.min(CONNECT_CONCURRENCY, count - from) }, worker)));
  return clients;
}

/**
 * The open loop's clients, with `authority`: each room's first joiner first (its owner), then the
 * rest; BANNED_USERS users who join no room; then every owner sets slow mode and bans them all,
 * and the run waits for every answer.
 */
async function connectWithAuthority(args: LoadArgs, n: number, rooms: number, roomOf: (i: number) => string): Promise<RawWs[]> {
  const owners = await connectAll(args, rooms, roomOf);
  const rest = await connectAll(args, n - rooms, roomOf, rooms);
  const banned: string[] = [];
  for (let b = 0; b < BANNED_USERS; b++) {
    const ws = await RawWs.open(args.port, "/ws");
    const welcome = new Promise<string>((resolve) => {
      ws.onText = (buf, start, end) => {
        if (isType(buf, start, "welcome")) resolve(JSON.parse(new TextDecoder().decode(buf.subarray(start, end))).user.id);
      };
    });
    ws.send(`{"type":"hello","name":"banned${b}"}`);
    banned.push(await bounded("welcome", args.timeoutMs ?? 120_000, welcome));
    ws.onText = null;
  }
  await bounded(
    "authority setup",
    args.timeoutMs ?? 120_000,
    Promise.all(
      owners.map((ws, r) => {
        const room = roomOf(r);
        const commands = [`{"type":"room_settings","room":"${room}","slowModeSeconds":${AUTHORITY_SLOW_MODE_SECONDS},"ref":"s"}`, ...banned.map((id) => `{"type":"ban","room":"${room}","user":"${id}","ref":"b"}`)];
        return new Promise<void>((resolve, reject) => {
          let answered = 0;
          ws.onText = (buf, start) => {
            if (isType(buf, start, "error")) reject(new Error(new TextDecoder().decode(buf.subarray(start, start + 200))));
            else if (isType(buf, start, "ok") && ++answered === commands.length) resolve();
          };
          for (const command of commands) ws.send(command);
        });
      }),
    ),
  );
  for (const ws of owners) ws.onText = null;
  return [...owners, ...rest];
}

/** The text of sender `s`'s next message: padded so that the delivered frame is the same size on both targets. */
function messageFrame(args: LoadArgs, s: number, room: string, id: number): string {
  if (args.target === "chat") return `{"type":"send","room":"${room}","id":"${s}-${id}","text":"${TEXT_PAD}${tail(s)}"}`;
  const head = `{"type":"message","room":"${room}","text":"`;
  const end = `${tail(s)}","ts":1700000000000}`;
  const pad = Math.max(0, (args.frameBytes ?? 0) - head.length - end.length);
  return head + "x".repeat(pad) + end;
}

/**
 * Closed loop: senders `senders[k]` each keep up to `window` messages unechoed, in their rooms;
 * every client counts deliveries. Measures deliveries per second and server CPU per delivery
 * over `seconds`, after a warm-up.
 */
async function throughput(args: LoadArgs, clients: RawWs[], senders: number[], roomOf: (i: number) => string) {
  const window = args.window ?? 10;
  const seconds = args.seconds ?? 3;
  let sending = true;
  let frameBytes = 0;
  let messages = 0;
  for (const s of senders) {
    const ws = clients[s]!;
    const room = roomOf(s);
    let outstanding = 0;
    let id = 0;
    const pump = () => {
      while (sending && outstanding < window) {
        outstanding++;
        ws.send(messageFrame(args, s, room, id++));
      }
    };
    ws.onText = (buf, start, end) => {
      const at = tailAt(buf, end);
      if (at === -1 || tailSender(buf, at) !== s) return;
      frameBytes = end - start;
      messages++;
      outstanding--;
      pump();
    };
    pump();
  }
  const count = () => clients.reduce((n, c) => n + c.frames, 0);
  await sleep(WARMUP_MS);
  const [f0, u0, m0, s0, g0] = [count(), usage(args.pid), messages, performance.now(), process.cpuUsage()];
  await sleep(seconds * 1000);
  const [f1, u1, m1, s1, g1] = [count(), usage(args.pid), messages, performance.now(), process.cpuUsage(g0)];
  sending = false;
  const deliveries = f1 - f0;
  const elapsed = (s1 - s0) / 1000;
  return {
    deliveriesPerSec: deliveries / elapsed,
    messagesPerSec: (m1 - m0) / elapsed,
    cpuUsPerDelivery: (u1.cpuUs - u0.cpuUs) / deliveries,
    serverCpuShare: (u1.cpuUs - u0.cpuUs) / 1e6 / elapsed,
    // Near 1, the load generator (not the server) may be what limits the figure.
    loadCpuShare: (g1.user + g1.system) / 1e6 / elapsed,
    frameBytes,
  };
}

/**
 * Closed loop of edits (chat only): each client sends one message, then edits it again and
 * again, keeping up to `window` edits unanswered; an edit is done at its `ok`. Every edit is
 * stored (the event, and the message changed, in one commit) and delivered to both members of
 * its room. Measures edits per second and server CPU per edit over `seconds`, after a warm-up.
 */
async function edits(args: LoadArgs, clients: RawWs[], roomOf: (i: number) => string) {
  const window = args.window ?? 4;
  const seconds = args.seconds ?? 3;
  let sending = true;
  let done = 0;
  clients.forEach((ws, s) => {
    const room = roomOf(s);
    let seq = 0;
    let outstanding = 0;
    let n = 0;
    const pump = () => {
      while (sending && outstanding < window) {
        outstanding++;
        ws.send(`{"type":"edit","room":"${room}","seq":${seq},"text":"${TEXT_PAD}edit ${n++}"}`);
      }
    };
    ws.onText = (buf, start, end) => {
      if (seq === 0) {
        // Our own message's echo, once: its seq is what we edit.
        if (!isType(buf, start, "message")) return;
        const m = JSON.parse(new TextDecoder().decode(buf.subarray(start, end))) as { id: string; seq: number };
        if (m.id !== `first-${s}`) return;
        seq = m.seq;
        return pump();
      }
      if (!isType(buf, start, "ok")) return;
      done++;
      outstanding--;
      pump();
    };
    ws.send(`{"type":"send","room":"${room}","id":"first-${s}","text":"a message to edit"}`);
  });
  const count = () => clients.reduce((n, c) => n + c.frames, 0);
  await sleep(WARMUP_MS);
  const [e0, u0, s0, f0] = [done, usage(args.pid), performance.now(), count()];
  await sleep(seconds * 1000);
  const [e1, u1, s1, f1] = [done, usage(args.pid), performance.now(), count()];
  sending = false;
  const elapsed = (s1 - s0) / 1000;
  return { editsPerSec: (e1 - e0) / elapsed, deliveriesPerSec: (f1 - f0) / elapsed, cpuUsPerEdit: (u1.cpuUs - u0.cpuUs) / (e1 - e0) };
}

async function main(args: LoadArgs): Promise<Record<string, number>> {
  switch (args.scenario) {
    case "fanout": {
      // One room, every client a receiver, the first `senders` also sending.
      const n = args.clients ?? 500;
      const clients = await connectAll(args, n, () => "fan");
      const senders = Array.from({ length: args.senders ?? 5 }, (_, k) => k);
      const r = await throughput(args, clients, senders, () => "fan");
      for (const c of clients) c.close();
      return r;
    }
    case "writeheavy": {
      // Rooms of two, everyone sending: every message stored, two deliveries each.
      const n = args.clients ?? 1000;
      const rooms = args.rooms ?? n / 2;
      const roomOf = (i: number) => `w${i % rooms}`;
      const clients = await connectAll(args, n, roomOf);
      const r = await throughput(args, clients, clients.map((_, i) => i), roomOf);
      for (const c of clients) c.close();
      return r;
    }
    case "editheavy": {
      const n = args.clients ?? 1000;
      const rooms = args.rooms ?? n / 2;
      const roomOf = (i: number) => `e${i % rooms}`;
      const clients = await connectAll(args, n, roomOf);
      const r = await edits(args, clients, roomOf);
      for (const c of clients) c.close();
      return r;
    }
    case "openloop": {
      // Everyone sends once a second at its own phase, whatever comes back: latency under a steady load.
      const n = args.clients ?? 2000;
      const rooms = args.rooms ?? 200;
      const seconds = args.seconds ?? 10;
      const period = args.periodMs ?? 1000;
      const roomOf = (i: number) => `o${i % rooms}`;
      const clients = args.authority ? await connectWithAuthority(args, n, rooms, roomOf) : await connectAll(args, n, roomOf);
      const latencies = new Float64Array(Math.ceil((n / rooms) * n * (seconds + 2)));
      let count = 0;
      let measuring = false;
      const onText: OnText = (buf, _start, end) => {
        const at = tailAt(buf, end);
        if (at !== -1 && measuring && count < latencies.length) latencies[count++] = (micros() - tailSentUs(buf, at)) / 1000;
      };
      for (const c of clients) c.onText = onText;
      // Clients in the order of their phase: a tick sends the ones now due, without scanning the rest.
      const phase = clients.map(() => Math.random() * period);
      const order = clients.map((_, i) => i).sort((a, b) => phase[a]! - phase[b]!);
      const ids = clients.map(() => 0);
      const lags = new Float64Array(Math.ceil(((seconds * 1000) / TICK_MS) * 2));
      let ticks = 0;
      let next = 0;
      let round = 0;
      const start = performance.now();
      const stopAt = start + WARMUP_MS + seconds * 1000;
      const [u0, m0, g0] = [usage(args.pid), machine(), process.cpuUsage()];
      let asked = start;
      for (let now = start; now < stopAt; now = performance.now()) {
        if (measuring && ticks < lags.length) lags[ticks++] = now - asked;
        measuring = now >= start + WARMUP_MS;
        for (let i = order[next]!; start + round * period + phase[i]! <= now; i = order[next]!) {
          clients[i]!.send(messageFrame(args, i, roomOf(i), ids[i]!++));
          if (++next === n) [next, round] = [0, round + 1];
        }
        asked = performance.now() + TICK_MS;
        await sleep(TICK_MS);
      }
      await sleep(200);
      const [u1, m1, g1] = [usage(args.pid), machine(), process.cpuUsage(g0)];
      const elapsed = (performance.now() - start) / 1000;
      for (const c of clients) c.close();
      const sorted = latencies.subarray(0, count).sort();
      const lag = lags.subarray(0, ticks).sort();
      return {
        deliveries: count,
        p50Ms: percentile(sorted, 50),
        p99Ms: percentile(sorted, 99),
        maxMs: percentile(sorted, 100),
        serverCpuShare: (u1.cpuUs - u0.cpuUs) / 1e6 / elapsed,
        // How late the generator's own loop woke for a tick: a delivery arriving then waited as long.
        loopLagP50Ms: percentile(lag, 50),
        loopLagP99Ms: percentile(lag, 99),
        loopLagMaxMs: percentile(lag, 100),
        // CPU used on this machine by neither the server nor the generator (other processes, and
        // kernel work charged to no process), and time the hypervisor took this VM's cores away:
        // latency neither process caused. Read a p99 only from a run where both are near 0.
        otherCpuShare: (m1.busyUs - m0.busyUs - (u1.cpuUs - u0.cpuUs) - (g1.user + g1.system)) / 1e6 / elapsed,
        stealShare: (m1.stealUs - m0.stealUs) / 1e6 / elapsed,
      };
    }
    case "connects": {
      // Rooms of ten (as in the open-loop scenario) or `roomSize`: each join tells the room's others.
      const n = args.clients ?? 10_000;
      const size = args.roomSize ?? 10;
      const before = usage(args.pid);
      const started = performance.now();
      const clients = await connectAll(args, n, (i) => `c${i % Math.ceil(n / size)}`);
      const seconds = (performance.now() - started) / 1000;
      // Idle for a while first: RSS right after a burst still holds its garbage.
      await sleep(IDLE_SETTLE_MS);
      const after = usage(args.pid);
      for (const c of clients) c.close();
      return { connectsPerSec: n / seconds, rssPerConnBytes: (after.rss - before.rss) / n, rssBytes: after.rss };
    }
  }
}

if (import.meta.main) {
  const args = JSON.parse(process.argv[2] ?? "{}") as LoadArgs;
  const result = await main(args);
  console.log(JSON.stringify(result));
  process.exit(0);
}
