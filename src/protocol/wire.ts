/**
 * The wire: protocol v1's frames, close and error codes, room pattern and fixed limits, as types
 * and constants (docs/protocol.md). No imports at all, so the page imports it too and the two
 * sides cannot drift; the server's zod schemas (rules.ts) are checked against these types.
 */

/** WebSocket close codes the server uses (§5). */
export const CLOSE = {
  normal: 1000,
  shutdown: 1001,
  binary: 1003,
  policy: 1008,
  tooBig: 1009,
  replaced: 4001,
} as const;

/** The reasons sent with those close codes. */
export const CLOSE_REASON = {
  shutdown: "server shutting down",
  binary: "binary frames are not supported",
  helloTimeout: "hello timeout",
  abuse: "rate limit exceeded",
  replaced: "replaced",
  reset: "room history was reset",
} as const;

export const ERROR_CODES = [
  "bad_request",
  "not_ready",
  "name_invalid",
  "name_taken",
  "room_invalid",
  "not_joined",
  "text_invalid",
  "rate_limited",
  "too_many_rooms",
  "room_limit",
  "unsupported",
  "internal",
] as const;
export type ErrorCode = (typeof ERROR_CODES)[number];
/** The TCP door's own error (§9): an input line over TCP_MAX_LINE_BYTES. */
export const LINE_TOO_LONG = "line_too_long";

/** Bounds `ref` and a send's `id`, in code points. */
export const REF_MAX_CHARS = 64;
/** Bounds a user name, in code points (after NFC and trimming). */
export const NAME_MAX_CHARS = 32;
/** Bounds one `history` page. */
export const HISTORY_PAGE_MAX = 200;
/** A `history` page without `limit`. */
export const HISTORY_PAGE_DEFAULT = 50;

export const ROOM_PATTERN = /^[a-z0-9][a-z0-9_-]{0,31}$/;

/** Whether `name` is a valid room name. `isRoom("general") // => true`, `isRoom("#x") // => false` */
export function isRoom(name: string): boolean {
  return ROOM_PATTERN.test(name);
}

/** Counts Unicode code points, which is how every length in the protocol is measured. `codePoints("👋") // => 1` */
export function codePoints(s: string): number {
  let n = 0;
  for (const _ of s) n++;
  return n;
}

/**
 * The rate limit's token bucket (§4, §10): `burst` tokens, refilled at `perSecond`. Pure: callers
 * pass the time. The server keeps one per user, shared by all its connections and outliving them,
 * so reconnecting refills nothing; the page keeps one that mirrors it, so its resends never earn
 * `rate_limited`.
 *   const b = new TokenBucket(2, 1, 0); b.take(0); b.take(0); b.take(0) // => true, true, false
 */
export class TokenBucket {
  private tokens: number;
  private last: number;

  constructor(
    private readonly burst: number,
    private readonly perSecond: number,
    now: number,
  ) {
    this.tokens = burst;
    this.last = now;
  }

  take(now: number): boolean {
    this.refill(now);
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }

  /** Milliseconds between two refills of one token. */
  get intervalMs(): number {
    return 1000 / this.perSecond;
  }

  /** Milliseconds until a token is there to take (0: now). */
  wait(now: number): number {
    this.refill(now);
    return this.tokens >= 1 ? 0 : Math.ceil(((1 - this.tokens) * 1000) / this.perSecond);
  }

  /** A full bucket is the same as a new one, so it can be forgotten. */
  isFull(now: number): boolean {
    this.refill(now);
    return this.tokens >= this.burst;
  }

  private refill(now: number): void {
    if (now <= this.last) return;
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) * this.perSecond) / 1000);
    this.last = now;
  }
}

// ─── Client → server (§2) ────────────────────────────────────────────────────────────────────

export interface HelloFrame { type: "hello"; name: string; session?: string; ref?: string }
export interface JoinFrame { type: "join"; room: string; since?: number; ref?: string }
export interface LeaveFrame { type: "leave"; room: string; ref?: string }
export interface SendFrame { type: "send"; room: string; id: string; text: string; ref?: string }
export interface TypingFrame { type: "typing"; room: string; ref?: string }
export interface HistoryFrame { type: "history"; room: string; before?: number; after?: number; limit?: number; ref?: string }
export interface PingFrame { type: "ping"; ref?: string }

/** Every frame a client may send, discriminated by `type`. */
export type ClientFrame = HelloFrame | JoinFrame | LeaveFrame | SendFrame | TypingFrame | HistoryFrame | PingFrame;
export type ClientFrameType = ClientFrame["type"];

// ─── Server → client (§3) ────────────────────────────────────────────────────────────────────

/** A user as every frame shows one: exactly these two fields. */
export interface UserRef {
  id: string;
  name: string;
}
export interface MessageFrame {
  type: "message";
  room: string;
  seq: number;
  id: string;
  user: UserRef;
  text: string;
  ts: number;
}
export interface Limits {
  maxTextChars: number;
  maxPayloadBytes: number;
  maxRooms: number;
  rate: { burst: number; perSecond: number };
  historyOnJoin: number;
  typingThrottleMs: number;
}
export interface WelcomeFrame { type: "welcome"; user: UserRef; session: string; limits: Limits; ref?: string }
export interface JoinedFrame {
  type: "joined";
  room: string;
  seq: number;
  oldestSeq: number;
  members: UserRef[];
  messages: MessageFrame[];
  complete: boolean;
  ref?: string;
}
export interface LeftFrame { type: "left"; room: string; ref?: string }
export type PresenceEvent = "join" | "leave" | "rename";
/** A member came, went, or (rename) now shows as `user`. */
export interface PresenceFrame { type: "presence"; room: string; event: PresenceEvent; user: UserRef }
export interface TypingNotice { type: "typing"; room: string; user: UserRef }
export interface HistoryPage { type: "history"; room: string; messages: MessageFrame[]; complete: boolean; ref?: string }
export interface PongFrame { type: "pong"; ref?: string }
export interface ErrorFrame { type: "error"; code: ErrorCode; message: string; ref?: string }
/** Every frame the server sends. */
export type ServerFrame =
  | WelcomeFrame
  | JoinedFrame
  | LeftFrame
  | MessageFrame
  | PresenceFrame
  | TypingNotice
  | HistoryPage
  | PongFrame
  | ErrorFrame;
