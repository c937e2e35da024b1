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
  /** §11.4: a server-wide ban; a client must not reconnect by itself after it. */
  banned: 4003,
} as const;

/** The reasons sent with those close codes. */
export const CLOSE_REASON = {
  shutdown: "server shutting down",
  binary: "binary frames are not supported",
  helloTimeout: "hello timeout",
  abuse: "rate limit exceeded",
  replaced: "replaced",
  reset: "room history was reset",
  signedOut: "signed out",
  banned: "banned",
  /** A bot's token was revoked (§11.6): closed with 4003 too. */
  revoked: "revoked",
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
  // v1.2 (§11.5)
  "auth_required",
  "auth_invalid",
  "forbidden",
  "not_found",
  "banned",
  "muted",
  "read_only",
  "slow_mode",
  "invite_invalid",
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

/** Bounds a sign-in token (a JWT or a bot token), in bytes. */
export const TOKEN_MAX_BYTES = 8192;
/** Bounds a room's topic, in code points (§11.2). */
export const TOPIC_MAX_CHARS = 200;
/** Bounds a room's slow mode, in seconds (§11.2). */
export const SLOW_MODE_MAX_SECONDS = 3600;
/** Bounds a moderator's reason, in code points (§11.3). */
export const REASON_MAX_CHARS = 200;
/** Bounds a ban's or mute's length, in seconds: ten years (longer is "until unbanned"). */
export const RESTRICTION_MAX_SECONDS = 315_360_000;
/** An address ban without `seconds` lasts this long (§11.4). */
export const ADDRESS_BAN_DEFAULT_SECONDS = 86_400;

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

/** A guest names itself; a member or bot shows a `token`; a session brings its user back (§4, §11.1). */
export interface HelloFrame { type: "hello"; name?: string; session?: string; token?: string; adminToken?: string; ref?: string }
/** `epoch` (with `since`): the room's epoch as the client last saw it; another one means the room was reset since. */
export interface JoinFrame { type: "join"; room: string; since?: number; epoch?: string; invite?: string; ref?: string }
export interface LeaveFrame { type: "leave"; room: string; ref?: string }
export interface SendFrame { type: "send"; room: string; id: string; text: string; replyTo?: number; ref?: string }
export interface TypingFrame { type: "typing"; room: string; ref?: string }
export interface HistoryFrame { type: "history"; room: string; before?: number; after?: number; limit?: number; ref?: string }
export interface PingFrame { type: "ping"; ref?: string }
/** §11.2: topic by moderators, the rest by the owner and admins. */
export interface RoomSettingsFrame {
  type: "room_settings";
  room: string;
  topic?: string;
  private?: boolean;
  readOnly?: boolean;
  slowModeSeconds?: number;
  ref?: string;
}
/** §11.3: the owner or an admin gives `user` a role; `owner` hands the room over. */
export interface RoleFrame { type: "role"; room: string; user: string; role: Role; ref?: string }
/** §11.2: a moderator or better asks for an invite code to the room. */
export interface InviteRequest { type: "invite"; room: string; ttlSeconds?: number; maxUses?: number; ref?: string }
/** §11.1: ends this session everywhere: its name is free, its connections close. */
export interface SignoutFrame { type: "signout"; ref?: string }
/** §11.3: the author changes its message, within EDIT_WINDOW_SECONDS. */
export interface EditFrame { type: "edit"; room: string; seq: number; text: string; ref?: string }
/** §11.3: the author, or a moderator and up, deletes a message. */
export interface DeleteFrame { type: "delete"; room: string; seq: number; ref?: string }
/** §11.3: a moderator and up sends a user out of a room; it may come back (unless the room is private). */
export interface KickFrame { type: "kick"; room: string; user: string; reason?: string; ref?: string }
/** §11.3: out of a room (or, without `room`, the server; with `address`, its address too) until `seconds` pass, or until unbanned. */
export interface BanFrame { type: "ban"; room?: string; user: string; seconds?: number; reason?: string; address?: boolean; ref?: string }
export interface UnbanFrame { type: "unban"; room?: string; user: string; ref?: string }
/** §11.3: no sending in the room for `seconds`; 0 unmutes. */
export interface MuteFrame { type: "mute"; room: string; user: string; seconds: number; ref?: string }

/** Every frame a client may send, discriminated by `type`. */
export type ClientFrame =
  | HelloFrame
  | JoinFrame
  | LeaveFrame
  | SendFrame
  | TypingFrame
  | HistoryFrame
  | PingFrame
  | RoomSettingsFrame
  | RoleFrame
  | InviteRequest
  | SignoutFrame
  | EditFrame
  | DeleteFrame
  | KickFrame
  | BanFrame
  | UnbanFrame
  | MuteFrame;
export type ClientFrameType = ClientFrame["type"];

// ─── Server → client (§3) ────────────────────────────────────────────────────────────────────

/** Who signed a user in (§11.1): a guest has no kind. */
export type UserKind = "member" | "bot";
/** A user as every frame shows one: `{id, name}` for a guest, with `kind` for a member or bot. */
export interface UserRef {
  id: string;
  name: string;
  kind?: UserKind;
}
/** A role in a room (§11.2); everyone without another is a "member". */
export const ROLES = ["owner", "moderator", "member"] as const;
export type Role = (typeof ROLES)[number];
/** A room's stored settings (§11.2). */
export interface RoomSettings {
  topic: string;
  private: boolean;
  readOnly: boolean;
  slowModeSeconds: number;
}
/** The settings of a room nobody changed. */
export const DEFAULT_SETTINGS: RoomSettings = { topic: "", private: false, readOnly: false, slowModeSeconds: 0 };
/** A member as `joined` lists it: its role when it is not "member". */
export type RoomMember = UserRef & { role?: "owner" | "moderator" };
export interface MessageFrame {
  type: "message";
  room: string;
  seq: number;
  id: string;
  user: UserRef;
  text: string;
  ts: number;
  /** The seq of the message it answers, in the same room (§11.3). */
  replyTo?: number;
  /** When it was last edited (epoch ms); its `text` is the latest (§11.4). */
  edited?: number;
  /** When it was deleted (epoch ms); its `text` is then "" (§11.4). */
  deleted?: number;
}
export interface Limits {
  maxTextChars: number;
  maxPayloadBytes: number;
  maxRooms: number;
  rate: { burst: number; perSecond: number };
  historyOnJoin: number;
  typingThrottleMs: number;
}
/** `admin` (an addition to §11.1): present, true, when this session is a server admin's. */
export interface WelcomeFrame { type: "welcome"; user: UserRef; session: string; limits: Limits; admin?: true; ref?: string }
/** §11.4: a settings change, stored in the room's sequence. */
export interface SettingsEvent extends RoomSettings {
  type: "settings";
  room: string;
  seq: number;
  by: UserRef;
  ts: number;
}
/** §11.4: a message was edited; `user` is its author, `text` the new text ("" once the message is deleted). */
export interface EditEvent {
  type: "edit";
  room: string;
  seq: number;
  target: number;
  text: string;
  user: UserRef;
  ts: number;
  edited: number;
}
/** §11.4: a message was deleted, `by` its author or a moderator. */
export interface DeleteEvent {
  type: "delete";
  room: string;
  seq: number;
  target: number;
  by: UserRef;
  ts: number;
}
/** What a room's sequence holds: messages and the events stored beside them (§11.4). */
export type StoredFrame = MessageFrame | SettingsEvent | EditEvent | DeleteEvent;
export interface JoinedFrame {
  type: "joined";
  room: string;
  seq: number;
  oldestSeq: number;
  members: RoomMember[];
  messages: StoredFrame[];
  complete: boolean;
  /** The joiner's role in the room (§11.2). */
  role: Role;
  settings: RoomSettings;
  /**
   * The room's history's identity: made with its sequence, made anew when the storage lost it
   * (Redis without its data). Keep it with the room's seq; absent while the room never had one.
   */
  epoch?: string;
  /** The join's `epoch` was not the room's: its `since` was ignored and the page starts at the room's start. */
  reset?: true;
  ref?: string;
}
export interface LeftFrame { type: "left"; room: string; reason?: LeftReason; ref?: string }
export type PresenceEvent = "join" | "leave" | "rename";
/** A member came, went, or (rename) now shows as `user`. */
export interface PresenceFrame { type: "presence"; room: string; event: PresenceEvent; user: UserRef }
export interface TypingNotice { type: "typing"; room: string; user: UserRef }
export interface HistoryPage { type: "history"; room: string; messages: StoredFrame[]; complete: boolean; ref?: string }
export interface PongFrame { type: "pong"; ref?: string }
export interface ErrorFrame {
  type: "error";
  code: ErrorCode;
  message: string;
  ref?: string;
  /** With rate_limited and slow_mode: when to try again (§11.4). */
  retryAfterMs?: number;
  /** With banned and muted: when it ends, epoch ms (§11.4). */
  until?: number;
}
/** §11.3: a command was carried out (and stored). */
export interface OkFrame { type: "ok"; for: ClientFrameType; ref?: string }
/**
 * The server gave you another name (issue 21: 2): after Redis lost its data, someone else who held
 * yours first kept it. `user` is you, with your name now; your session keeps it.
 */
export interface RenamedFrame { type: "renamed"; user: UserRef; reason: "name_taken" }
/** §11.2: an invite code, shown once. `maxUses` null: any number of uses until it expires. */
export interface InviteFrame { type: "invite"; room: string; code: string; expiresAt: number; maxUses: number | null; ref?: string }
export type ModerationAction = "kick" | "ban" | "unban" | "mute" | "unmute" | "role";
/** `left` gains why, when a moderator sent the user out (§11.4). */
export type LeftReason = "kicked" | "banned";
/** §11.4: a moderation action, live (not stored), to the room (a server-wide ban: to the banned user's connections). */
export interface ModerationFrame {
  type: "moderation";
  room?: string;
  action: ModerationAction;
  user: UserRef;
  by: UserRef;
  reason?: string;
  until?: number;
  role?: Role;
}
/** Every frame the server sends. */
export type ServerFrame =
  | RenamedFrame
  | WelcomeFrame
  | JoinedFrame
  | LeftFrame
  | MessageFrame
  | PresenceFrame
  | TypingNotice
  | HistoryPage
  | PongFrame
  | ErrorFrame
  | SettingsEvent
  | EditEvent
  | DeleteEvent
  | OkFrame
  | InviteFrame
  | ModerationFrame;
