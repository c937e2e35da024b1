/**
 * One client, WebSocket or TCP: its state, its queue of frames, and how it is written to and
 * closed. The transport's close handler is each connection's one owner (ws.ts, tcp.ts).
 */
import type { ServerWebSocket, Socket } from "bun";
import type { Context } from "./context.ts";
import type { SessionRecord } from "./engine.ts";
import { TokenBucket, type RateLimiter } from "./core/bucket.ts";
import { ERASE_PROMPT, LineSplitter, formatModerationLine, formatStoredLines, markMentions, mentionPattern, promptFor } from "./core/lines.ts";
import { MESSAGES, withRef, type ErrorExtra, type Failure } from "./protocol/rules.ts";
import { CLOSE, CLOSE_REASON, type ErrorCode, type JoinedFrame, type LeftReason, type ModerationFrame, LINE_TOO_LONG, type ServerFrame, type StoredFrame, type UserRef } from "./protocol/wire.ts";

/** An online user: it has live connections, or is still in some room in grace. */
export interface User {
  /** The object every frame shows; a session that comes back with a new name renames it. */
  ref: UserRef;
  /** Its name's look-alike keys, by which it holds the name. */
  keys: string[];
  /** When it took its name (who took a name first keeps it), and the name's version (one more per rename, on every instance). */
  nameSince: number;
  nameVersion: number;
  /** Its live connections, oldest first (§10: tabs and devices of one session). */
  conns: Connection[];
  /**
   * Whether its latest hello here made it a server admin: its rank while it has no connection
   * here but is still in rooms (presence grace), so an admin's page reload keeps it an admin.
   */
  admin: boolean;
  /** When the user's typing was last relayed, per room; null until it first types. */
  typingAt: Map<string, number> | null;
  /**
   * Spent by all its connections here; kept after the user goes, until it is full again. With
   * Redis, only while Redis cannot answer: the bucket in Redis is the user's.
   */
  bucket: TokenBucket;
}

/** What a queued task answers (Connection.enqueue): its frame's type (a TCP door's "line") and the ref an error echoes. */
export interface Task {
  op: string;
  ref: string | undefined;
}

/**
 * A 1006 close of a socket whose unsent bytes were last seen at or above this fraction of
 * BACKPRESSURE_LIMIT_BYTES is counted as a slow-consumer close (as 1/N: 2 means half).
 */
const SLOW_CONSUMER_FRACTION = 2;

let connectionCounter = 0;

/**
 * One client, WebSocket or TCP. Its transport's close handler is its one owner: it calls
 * `hub.close` exactly once, which frees everything. Frames are handled one at a time, in order,
 * on `chain`, so a frame that waits for storage never overtakes an earlier one.
 *
 * Writing to a connection never closes it there and then: a client too slow to take its output
 * is cut off on a later turn (Bun does so for WebSocket; TcpConnection.out queues it). Bun runs
 * the close handler inside the call that closes a socket, and writes come in the middle of the
 * hub's steps: a `/join` writes its history after the room counts the joiner and before the
 * connection lists the room, so a close handler run there freed it half-way and left a ghost
 * member holding its name.
 */
export abstract class Connection {
  /** A number, not its `c…` string: one string less per idle connection (issue #8: memory). */
  private readonly serial = ++connectionCounter;
  readonly openedAt: number;
  user: User | null = null;
  /** The hash of the session this connection signed in with (null over TCP): signout ends it. */
  session: string | null = null;
  /** What that session holds, as last stored: stored again if the engine loses it (issue 21: 3). */
  sessionRecord: SessionRecord | null = null;
  /** Signed in as a server admin (§11.1), for this session. */
  admin = false;
  /** The private rooms its member token lets it join (§11.2). */
  claimRooms: readonly string[] = [];
  /** Rooms this connection joined, in join order (at most MAX_ROOMS_PER_CONNECTION). */
  readonly rooms: string[] = [];
  /** Counts rate_limited answers in a row, whichever bucket ran dry; held only during such a streak. */
  limiter: RateLimiter | null = null;
  /** Spent by frames before hello and by pings (§10); the user's own bucket pays for the rest. */
  readonly bucket: TokenBucket;
  /** "closing" once the server decided to close it: further input is ignored. */
  state: "open" | "closing" | "closed" = "open";
  /** Set when it left every room and its user (replaced, or closed). */
  released = false;
  helloTimer: ReturnType<typeof setTimeout> | null = null;
  /** Why the server closed it, for the close log line. */
  closeWhy: { code: number; reason: string } | null = null;
  /** The last task that waited, while any is unfinished; none for a connection that never waited. */
  private chain: Promise<void> | null = null;
  /** Tasks on `chain` not yet finished. */
  private waiting = 0;
  abstract readonly transport: "ws" | "tcp";

  constructor(
    protected readonly ctx: Context,
    /** The client's address as addressKey keys it (an IPv6 client's /64): caps, buckets and bans count by it, and logs show it. */
    readonly ip: string,
  ) {
    this.openedAt = ctx.now();
    this.bucket = new TokenBucket(ctx.config.rateLimitBurst, ctx.config.rateLimitPerSecond, this.openedAt);
  }

  /** For logs. */
  get id(): string {
    return `c${this.serial}`;
  }

  /**
   * Runs `task` after the ones before it. With none under way it runs at once, inside the
   * transport's handler (where Bun corks the socket's writes); most frames finish there, and
   * only one that waits (for storage) makes the next ones queue behind it. `frame` says what the
   * task answers: a task that throws is answered `internal` here, with the frame's ref (§4).
   */
  enqueue(task: () => void | Promise<void>, frame: Task): void {
    if (this.waiting > 0) return this.track(this.chain!.then(task), frame);
    let result;
    try {
      result = task();
    } catch (error) {
      return this.crashed(error, frame);
    }
    if (result) this.track(result, frame);
  }

  private track(running: Promise<void>, frame: Task): void {
    this.waiting++;
    // Let go of the last task once all are done: an idle connection holds no settled promises.
    this.chain = running.catch((error) => this.crashed(error, frame)).finally(() => {
      if (--this.waiting === 0) this.chain = null;
    });
  }

  /** Frames received and not yet answered while one of them waits (RateGate.maxWaitingFrames bounds them). */
  get queued(): number {
    return this.waiting;
  }

  /**
   * The one answer to a frame whose task threw: past the door's checks what throws is storage
   * (an engine that failed, or missed its deadline), so it is logged as storage errors are, with
   * the stack kept for the rare bug. Every frame is answered: the page matches answers by `ref`,
   * and a form waiting on one that never comes stays "Saving…".
   */
  private crashed(error: unknown, frame: Task): void {
    this.ctx.log("error", "storage", { conn: this.id, op: frame.op, error: String(error), stack: (error as Error)?.stack });
    this.fail("internal", MESSAGES.internal, frame.ref);
  }

  /** Answers a refused request; a refusal that is abuse also closes the connection. */
  refuse(failure: Failure, ref?: string): void {
    this.fail(failure.code, failure.message, ref, failure.extra);
    if (failure.close) this.close(failure.close.code, failure.close.reason);
  }

  /** One message, to this connection only (the answer to a retried send). */
  abstract deliver(message: StoredFrame): void;
  /** An error answer; counted. */
  abstract fail(code: ErrorCode | typeof LINE_TOO_LONG, message: string, ref?: string, extra?: ErrorExtra): void;
  /** A moderation event for this connection alone (a server-wide ban of its user, §11.4). */
  abstract moderated(frame: ModerationFrame): void;
  /** Takes the connection out of `room` because a moderator sent its user out (§11.4). */
  abstract removedFrom(room: string, reason: LeftReason): void;
  /** The server gave the connection's user another name: someone held `oldName` first (issue 21: 2). */
  abstract renamedByServer(user: UserRef, oldName: string): void;
  /** Closes from the server side, once; the transport's close handler follows. */
  abstract close(code: number, reason: string): void;
  /** The room's `joined` (TCP: its recent lines), sent just before the first room event can come. */
  abstract joined(frame: JoinedFrame): void;
  /** The hello deadline passed. */
  abstract helloExpired(): void;
  /** Tells the client the server is going away and closes. */
  abstract shutdown(): void;
}

export class WsConnection extends Connection {
  readonly transport = "ws";
  ws!: ServerWebSocket<WsConnection>;
  /**
   * Unsent bytes, as last seen when Bun held data back for it. Bun closes a slow consumer on a
   * later turn and reports only 1006 with its buffer already freed, so this is how its close is
   * told apart from a client that simply vanished.
   */
  backlogBytes = 0;

  send(frame: ServerFrame): void {
    this.sendJson(JSON.stringify(frame));
  }

  /** A frame already serialized (one JSON for many connections). */
  sendJson(json: string): void {
    if (this.ws.readyState !== 1) return;
    const sent = this.ws.send(json, false);
    if (sent <= 0) {
      this.backlogBytes = this.ws.getBufferedAmount();
      if (sent === 0) this.ctx.metrics.publishDrops++;
    }
  }

  /** Whether Bun's 1006 close was the backpressure limit: it had filled most of its buffer. */
  slowConsumer(): boolean {
    return this.backlogBytes * SLOW_CONSUMER_FRACTION >= this.ctx.config.backpressureLimitBytes;
  }

  joined(frame: JoinedFrame): void {
    this.send(frame);
  }

  deliver(message: StoredFrame): void {
    if (this.state === "open") this.send(message);
  }

  fail(code: ErrorCode, message: string, ref?: string, extra?: ErrorExtra): void {
    this.ctx.metrics.error(code);
    this.send(withRef({ type: "error", code, message, ...extra }, ref));
  }

  removedFrom(room: string, reason: LeftReason): void {
    this.send({ type: "left", room, reason });
  }

  renamedByServer(user: UserRef): void {
    this.send({ type: "renamed", user: { ...user }, reason: "name_taken" });
  }

  moderated(frame: ModerationFrame): void {
    this.send(frame);
  }

  close(code: number, reason: string): void {
    if (this.closeWhy || this.state === "closed") return;
    this.state = "closing";
    this.closeWhy = { code, reason };
    this.ws.close(code, reason);
  }

  helloExpired(): void {
    this.close(CLOSE.policy, CLOSE_REASON.helloTimeout);
  }

  shutdown(): void {
    this.close(CLOSE.shutdown, CLOSE_REASON.shutdown);
  }
}

export const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Bounds how long a TCP client we closed may take to take its last lines. */
const TCP_CLOSE_LINGER_MS = 5000;
/** Messages a TCP /join shows (protocol §9: "the last 10 messages"). */
const TCP_JOIN_MESSAGES = 10;
/**
 * Stored frames a TCP /join reads to find them: events (edits, deletions, settings) share the
 * room's sequence and are not messages, and a deleted message shows nothing.
 */
export const TCP_JOIN_FRAMES = 50;
/** The first byte of a message line (`[room] …`): only such lines may name their reader. */
const MESSAGE_LINE_START = "[".charCodeAt(0);
const ERASE_BYTES = encoder.encode(ERASE_PROMPT);

export class TcpConnection extends Connection {
  readonly transport = "tcp";
  readonly splitter: LineSplitter;
  /** Output the socket did not take yet, oldest first. */
  private pending: Uint8Array[] = [];
  private pendingBytes = 0;
  private ending = false;
  /** Past tcpMaxPendingBytes: nothing more is written, and the socket is cut off on a later turn. */
  private cutOff = false;
  private lingerTimer: ReturnType<typeof setTimeout> | null = null;
  /** The room plain lines go to, and the others, most recently joined last. */
  current: string | null = null;
  readonly recent: string[] = [];
  private sent = 0;
  /** Input lines read and not answered yet: the prompt waits until the last is. */
  private unanswered = 0;
  /**
   * The chat prompt is the last thing written: the client's cursor is after it. Output that
   * comes now erases it first and draws it again after (the `name: ` prompt is left alone).
   */
  private prompting = false;
  /** What names this user in a message, for the name it has now. */
  private mention: { name: string; pattern: RegExp } | null = null;

  constructor(
    ctx: Context,
    ip: string,
    readonly socket: Socket<TcpConnection>,
  ) {
    super(ctx, ip);
    this.splitter = new LineSplitter(ctx.config.tcpMaxLineBytes);
  }

  /** A fresh client-side id for a chat line (TCP users have no ids of their own). */
  nextId(): string {
    return `${this.id}-${++this.sent}`;
  }

  /**
   * Writes now what the socket takes and keeps the rest for `drain`: Bun's write() takes what
   * fits and drops the remainder. Past tcpMaxPendingBytes the client is not reading: cut it off,
   * after the step that wrote (see Connection: a write never closes).
   */
  private out(bytes: Uint8Array): void {
    if (this.state === "closed" || this.ending || this.cutOff) return;
    if (this.pending.length === 0) {
      const n = this.socket.write(bytes);
      if (n < 0) return;
      if (n === bytes.length) return;
      bytes = bytes.subarray(n);
    }
    this.pending.push(bytes);
    this.pendingBytes += bytes.length;
    if (this.pendingBytes > this.ctx.config.tcpMaxPendingBytes) {
      this.ctx.metrics.backpressureCloses++;
      this.closeWhy = { code: 0, reason: "backpressure" };
      this.state = "closing";
      this.cutOff = true;
      this.pending = [];
      this.pendingBytes = 0;
      queueMicrotask(() => {
        if (this.state !== "closed") this.socket.terminate();
      });
    }
  }

  /**
   * Whole lines for the screen: a chat prompt shown gives them its place and is drawn again below
   * them, unless they are the last (`last`: the connection closes after them).
   */
  private show(bytes: Uint8Array, last = false): void {
    if (!this.prompting) return this.out(bytes);
    const prompt = encoder.encode(last ? "" : this.promptText());
    const all = new Uint8Array(ERASE_BYTES.length + bytes.length + prompt.length);
    all.set(ERASE_BYTES);
    all.set(bytes, ERASE_BYTES.length);
    all.set(prompt, ERASE_BYTES.length + bytes.length);
    this.out(all);
  }

  /**
   * A room's event, as the fanout encoded it once for every TCP member of the room: the message
   * lines that name this user (live ones) are marked and ring the bell, and the rest pass as they are.
   */
  write(bytes: Uint8Array): void {
    this.show(this.marked(bytes, true) ?? bytes);
  }

  /** `bytes` with the message lines that name this user marked (`ring`: and a bell), or null when none does. */
  private marked(bytes: Uint8Array, ring: boolean): Uint8Array | null {
    const name = this.user?.ref.name;
    if (name === undefined || bytes[0] !== MESSAGE_LINE_START) return null;
    if (this.mention?.name !== name) this.mention = { name, pattern: mentionPattern(name) };
    const marked = markMentions(decoder.decode(bytes), name, this.mention.pattern, ring);
    return marked === null ? null : encoder.encode(marked);
  }

  /** One line of the door's own (`last`: the connection closes after it). */
  line(text: string, last = false): void {
    this.show(encoder.encode(text + "\n"), last);
  }

  /** Lines read: each is answered before the prompt comes back. The client pressed Enter, so no prompt is shown. */
  reading(lines: number): void {
    if (lines === 0) return;
    this.unanswered += lines;
    this.prompting = false;
  }

  /** A line read was answered: after the last, the prompt. */
  answered(): void {
    this.unanswered = Math.max(0, this.unanswered - 1);
    if (this.unanswered === 0) this.prompt();
  }

  /** `name: ` before the hello; then the current room's `[general]> ` (promptFor). Only while open. */
  prompt(): void {
    if (this.state !== "open" || this.prompting) return;
    this.out(encoder.encode(this.promptText()));
    this.prompting = this.user !== null;
  }

  private promptText(): string {
    return promptFor(this.user !== null, this.current);
  }

  /** Called on `drain`: writes what was kept, in order. */
  flush(): void {
    while (this.pending.length) {
      const head = this.pending[0]!;
      const n = this.socket.write(head);
      if (n < 0) return;
      this.pendingBytes -= Math.max(0, n);
      if (n < head.length) {
        this.pending[0] = head.subarray(n);
        return;
      }
      this.pending.shift();
    }
    if (this.ending) this.socket.end();
  }

  /** A message for this connection alone: history on a join (mentions marked, no bell), or a retried send's original. */
  deliver(message: StoredFrame): void {
    const text = formatStoredLines(message);
    if (this.state !== "open" || !text) return;
    const bytes = encoder.encode(text);
    this.show(this.marked(bytes, false) ?? bytes);
  }

  fail(code: ErrorCode | typeof LINE_TOO_LONG, message: string, _ref?: string, extra?: ErrorExtra): void {
    this.ctx.metrics.error(code);
    // Slow mode's wait is worth a line's words; a rate limit's is a moment.
    const wait = code === "slow_mode" && extra?.retryAfterMs !== undefined ? ` (try again in ${Math.ceil(extra.retryAfterMs / 1000)} s)` : "";
    this.line(`! ${code}: ${message}${wait}`);
  }

  moderated(frame: ModerationFrame): void {
    this.line(formatModerationLine(frame, this.ctx.now()).trimEnd());
  }

  renamedByServer(user: UserRef, oldName: string): void {
    this.line(`* someone held the name ${oldName} before you: you are now ${user.name}`);
  }

  /** Out of the room: the moderation line said why; the most recently joined room left becomes current. */
  removedFrom(room: string, _reason: LeftReason): void {
    const at = this.recent.indexOf(room);
    if (at !== -1) this.recent.splice(at, 1);
    if (this.current === room) this.current = this.recent.at(-1) ?? null;
    this.line(this.current ? `* now in ${this.current}: ${goesTo(this.current)}` : NO_ROOM);
  }

  /** The current room is left (`/leave`): the most recently joined one left becomes current; null if none. */
  leftCurrent(): string | null {
    const room = this.current;
    if (room !== null) this.recent.splice(this.recent.indexOf(room), 1);
    this.current = this.recent.at(-1) ?? null;
    return this.current;
  }

  /** Ends after the pending output is written; a client that does not take it is cut off. */
  end(): void {
    if (this.state === "closed" || this.ending) return;
    this.state = "closing";
    this.ending = true;
    if (this.pending.length === 0) this.socket.end();
    this.lingerTimer = setTimeout(() => this.socket.terminate(), TCP_CLOSE_LINGER_MS);
  }

  close(code: number, reason: string): void {
    if (this.closeWhy || this.state === "closed") return;
    this.closeWhy = { code, reason };
    this.end();
  }

  /**
   * The room's last messages as lines (as they are now: edited, or gone once deleted), then `* now in ROOM (N here): …` saying where plain lines go now,
   * and where they no longer go; the room becomes current.
   */
  joined(frame: JoinedFrame): void {
    const shown = frame.messages.filter((m) => m.type === "message" && m.deleted === undefined);
    for (const m of shown.slice(-TCP_JOIN_MESSAGES)) this.deliver(m);
    const was = this.current;
    const at = this.recent.indexOf(frame.room);
    if (at !== -1) this.recent.splice(at, 1);
    this.recent.push(frame.room);
    this.current = frame.room;
    const before = was !== null && was !== frame.room ? `, no longer to ${was}` : "";
    this.line(`* now in ${frame.room} (${frame.members.length} here): ${goesTo(frame.room)}${before}`);
  }

  helloExpired(): void {
    this.line("! hello timeout", true);
    this.close(CLOSE.policy, CLOSE_REASON.helloTimeout);
  }

  shutdown(): void {
    this.line(`* ${CLOSE_REASON.shutdown}`, true);
    this.close(CLOSE.shutdown, CLOSE_REASON.shutdown);
  }

  closed(): void {
    this.state = "closed";
    if (this.lingerTimer) clearTimeout(this.lingerTimer);
    this.pending = [];
    this.pendingBytes = 0;
  }
}

/** What a TCP user is told of its current room: `goesTo("dev") // => "what you type goes to dev"`. */
function goesTo(room: string): string {
  return `what you type goes to ${room}`;
}

/** What a TCP user in no room is told. */
const NO_ROOM = "* you are in no room; /join ROOM";
