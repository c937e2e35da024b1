/**
 * The engine seams, and the one-process engine's relay and roster. An engine stores (Store),
 * brings stored messages and cross-instance events back (Relay), and shares presence, names and
 * rate buckets between instances (Roster). The hub talks to these interfaces only; createServer
 * alone picks SQLite (with LocalRelay and LocalRoster) or Redis.
 */
import type { Config } from "./config.ts";
import type { TokenBucket } from "./core/bucket.ts";
import type {
  ModerationAction,
  ModerationFrame,
  PresenceFrame,
  Role,
  RoomSettings,
  StoredFrame,
  TypingNotice,
  UserRef,
  WebhookEvent,
  WebhookFrame,
} from "./protocol/wire.ts";
import { DEFAULT_SETTINGS, SLOW_MODE_MAX_SECONDS } from "./protocol/wire.ts";

/** Milliseconds in a day, for HISTORY_MAX_AGE_DAYS. */
export const DAY_MS = 86_400_000;

/** A message accepted from a client, not yet stored. */
export interface NewMessage {
  type?: "message";
  room: string;
  user: UserRef;
  id: string;
  text: string;
  ts: number;
  replyTo?: number;
}

/**
 * An edit (§11.4): stored in the sequence, and in the same commit the target message takes its
 * text and `edited`; refused (`not_found`) when the target is no longer a live message.
 */
export interface NewEdit {
  type: "edit";
  room: string;
  /** The author. */
  user: UserRef;
  id: string;
  ts: number;
  target: number;
  text: string;
}

/**
 * A deletion (§11.4): stored in the sequence, and in the same commit the target's text is gone
 * (its own, and that of the edits of it), and it takes `deleted`.
 */
export interface NewDelete {
  type: "delete";
  room: string;
  /** Who deleted it. */
  user: UserRef;
  id: string;
  ts: number;
  target: number;
}

/**
 * A settings change (§11.4), stored in the room's sequence and applied to the room in the same
 * commit. It holds only the fields it sets: the engine writes them over what the room holds at
 * that commit, so two changes at once both stand, on every instance.
 */
export interface NewSettings {
  type: "settings";
  room: string;
  /** Who changed them. */
  user: UserRef;
  /** A fresh id: events have no client id, but share the messages' dedup key. */
  id: string;
  ts: number;
  settings: Partial<RoomSettings>;
}

/** What a room's sequence takes: a message, or an event stored beside them. */
export type NewEntry = NewMessage | NewSettings | NewEdit | NewDelete;

/** Which part of a room's history to read: after/before are exclusive seq bounds. */
export interface PageQuery {
  after?: number;
  before?: number;
  limit: number;
}

export interface Page {
  messages: StoredFrame[];
  /** No message exists beyond the page in the direction read (newer with `after`, else older). */
  complete: boolean;
}

/**
 * What `append` did with one message: stored it (or found it stored: `duplicate`, the original),
 * or refused it because a storage bound would break (§10 MAX_ROOMS: `room_limit`).
 */
export type Appended = { message: StoredFrame; duplicate: boolean } | { refused: "room_limit" | "not_found" };

/** The bounds an engine keeps its history in (config: HISTORY_RETAIN, MAX_ROOMS, HISTORY_MAX_AGE_DAYS). */
export interface HistoryBounds {
  /** Messages kept per room. */
  retain: number;
  /** Rooms that may hold history, i.e. have a retained message. */
  maxRooms: number;
  /** Messages older than this are trimmed; 0 keeps them. */
  maxAgeMs: number;
}

export function historyBounds(config: Config): HistoryBounds {
  return { retain: config.historyRetain, maxRooms: config.maxRooms, maxAgeMs: config.historyMaxAgeDays * DAY_MS };
}

/**
 * The time before which a batch's rooms lose their messages (HISTORY_MAX_AGE_DAYS), measured from
 * the newest message of the batch; null when messages are kept whatever their age.
 *   ageCutoff([{ts: 5_000}], { maxAgeMs: 1_000 }) // => 4000
 */
export function ageCutoff(batch: readonly NewEntry[], bounds: Pick<HistoryBounds, "maxAgeMs">): number | null {
  if (!bounds.maxAgeMs || batch.length === 0) return null;
  let newest = -Infinity;
  for (const m of batch) if (m.ts > newest) newest = m.ts;
  return newest - bounds.maxAgeMs;
}

/**
 * The frame a stored entry shows as, once it has its seq. A settings change shows its fields over
 * `current`, what the room holds when it is committed (the engine's to read, in that commit).
 */
export function storedFrame(e: NewEntry, seq: number, current: RoomSettings = DEFAULT_SETTINGS): StoredFrame {
  switch (e.type) {
    case "settings":
      return { type: "settings", room: e.room, seq, ...current, ...e.settings, by: { ...e.user }, ts: e.ts };
    case "edit":
      return { type: "edit", room: e.room, seq, target: e.target, text: e.text, user: { ...e.user }, ts: e.ts, edited: e.ts };
    case "delete":
      return { type: "delete", room: e.room, seq, target: e.target, by: { ...e.user }, ts: e.ts };
    default: {
      const m: StoredFrame = { type: "message", room: e.room, seq, id: e.id, user: { ...e.user }, text: e.text, ts: e.ts };
      if (e.replyTo !== undefined) m.replyTo = e.replyTo;
      return m;
    }
  }
}

/**
 * What a target message becomes once an edit or deletion of it at `ts` is applied (§11.4); null
 * when it cannot be: not a message, or deleted already. One rule for every engine.
 */
export function changed(target: StoredFrame, change: NewEdit | NewDelete): StoredFrame | null {
  if (target.type !== "message" || target.deleted !== undefined) return null;
  if (change.type === "edit") return { ...target, text: change.text, edited: change.ts };
  return { ...target, text: "", deleted: change.ts };
}

/**
 * The webhook event a stored entry makes (§11.7): one rule for every engine, which each applies
 * in the commit that stores the entry.
 */
export function webhookEventOf(e: NewEntry): WebhookEvent {
  switch (e.type) {
    case "settings":
      return "room.settings";
    case "edit":
      return "message.edited";
    case "delete":
      return "message.deleted";
    default:
      return "message.created";
  }
}

/** What this process's webhook-ids begin with: 96 random bits, so that no two processes share one. */
const HOOK_ID_PREFIX = `msg_${Buffer.from(crypto.getRandomValues(new Uint8Array(12))).toString("hex")}`;
let hookIds = 0;
/**
 * A fresh `webhook-id` (§11.7): unique per event (this process's random prefix and a count), kept
 * with it, the same on every attempt. `msg_` + 24 hex digits + a base-36 count.
 */
export const newHookId = () => `${HOOK_ID_PREFIX}${(++hookIds).toString(36)}`;

/** A webhook event as queued (§11.7). */
export interface HookEvent {
  /** Its `webhook-id`. */
  id: string;
  type: WebhookEvent;
  /** When it happened, epoch ms: the body's `timestamp`, and what WEBHOOK_MAX_AGE_HOURS counts from. */
  ts: number;
  /** The frame clients saw. */
  data: WebhookFrame;
}

/** A queued event handed to a deliverer: how often it failed, and where its engine keeps it. */
export interface TakenHook extends HookEvent {
  attempts: number;
  /** The engine's handle (a row, a stream entry), handed back as is. */
  ref: string;
}

/** What the outbox takes and holds (WEBHOOK_EVENTS, WEBHOOK_MAX_PENDING). */
export interface OutboxBounds {
  types: ReadonlySet<WebhookEvent>;
  /** Events held at most; past it the oldest are dropped. */
  maxPending: number;
}

export function outboxBounds(config: Config): OutboxBounds {
  return { types: new Set(config.webhookEvents), maxPending: config.webhookMaxPending };
}

/**
 * The webhook outbox (§11.7): durable, at least once. A stored entry's event is queued by the
 * commit that stores it (Store.append), and a moderation event by the commit of the change it
 * tells of (Store.restrict, banServer, setRole, removeListed), so no crash can keep one without the
 * other; the events of what is not stored (joins, leaves, a kick from a public room) by `add`, in
 * a write of their own. An event is handed to one
 * deliverer at a time, on any instance, and stays queued until it is `done`.
 */
export interface Outbox {
  /** Queues live events, durably, in one write; resolves once they are on disk. */
  add(events: readonly HookEvent[]): Promise<void>;
  /**
   * Hands this instance up to `n` events due at `now`: new ones in the order they were queued,
   * and retries whose time came. None is handed to two deliverers at once; a dead instance's are
   * handed out again.
   */
  take(n: number, now: number): Promise<TakenHook[]>;
  /** Delivered, or given up on: gone from the queue. */
  done(events: readonly TakenHook[]): Promise<void>;
  /** Failed: one attempt more, tried again from `at` (by whichever instance takes it then). */
  retry(event: TakenHook, at: number): Promise<void>;
  /** Taken but not tried (shutdown): due again at once, for any instance. */
  release(events: readonly TakenHook[]): Promise<void>;
  /** Events queued, on every instance. */
  pending(): Promise<number>;
  /** Events this instance dropped because the queue was full, since the last call. */
  takeDropped(): number;
  /** Called when events this instance queued are durable, so the deliverer takes them at once. */
  onQueued: (() => void) | null;
}

/** How many rows a page reads: one past its limit tells whether it is complete. */
export const pageRows = (query: PageQuery) => query.limit + 1;

/**
 * A page from what an engine read for `query` (pageRows of them at most): newest first when
 * `after` is unset (reading back from `before`), else oldest first. Always returned oldest first.
 *   toPage([m3, m2, m1], { limit: 2 }) // => { messages: [m2, m3], complete: false }
 */
export function toPage(rows: StoredFrame[], query: PageQuery): Page {
  const complete = rows.length <= query.limit;
  const messages = rows.length > query.limit ? rows.slice(0, query.limit) : rows;
  if (query.after === undefined) messages.reverse();
  return { messages, complete };
}

/** Where a room's sequence stands: roomInfo. */
export interface RoomInfo {
  seq: number;
  oldestSeq: number;
  epoch: string | null;
}

/** A room's entry in the directory: its latest message's seq and time. */
export interface RecentRoom {
  room: string;
  seq: number;
  ts: number;
}

/** A session as stored (§11.1): whose it is, until when, and what it brings back. */
export interface SessionRecord {
  userId: string;
  expiresAt: number;
  kind: "guest" | "member" | "bot";
  /** The name it restores (a guest's, reserved while the session is valid). */
  name: string;
  /** A guest's name's look-alike keys, by which it is reserved; none for members. */
  keys: string[];
  /** An admin's session (a token with admin:true, or ADMIN_TOKEN given in hello). */
  admin: boolean;
  /** A member's private rooms, from its token's `rooms` claim. */
  rooms: string[];
  /**
   * The version of the name (one more per rename, with several instances): a save with an older
   * one than stored leaves the stored name and its reservation, which a later rename made.
   */
  nameVersion?: number;
}

/** A bot (§11.6): a user of kind "bot", signed in by a token of its own. */
export interface BotRecord {
  /** `b:` + a random id. */
  id: string;
  name: string;
  createdAt: number;
  revoked: boolean;
}

/** A role held in a room, and the name its holder had when it was given (for lists and events). */
export interface RoleHolder {
  role: "owner" | "moderator";
  name: string;
}

/** A ban or a mute (§11.4): until when (null: until lifted), why, and by whom. */
export interface Restriction {
  until: number | null;
  reason?: string;
  by: UserRef;
  /** The restricted user's name then, to find it by (the TCP door's /unban NAME). */
  name?: string;
}

/** A room's authority as stored (§11.2, §11.4): roles, settings, and who is banned or muted there. */
export interface RoomAuth {
  roles: Map<string, RoleHolder>;
  settings: RoomSettings;
  bans: Map<string, Restriction>;
  mutes: Map<string, Restriction>;
}

/** Whether a restriction still holds at `now`. */
export const holds = (r: Restriction | undefined, now: number): r is Restriction => r !== undefined && (r.until === null || r.until > now);

/** One line of the audit log (§11.4): a moderation action or a settings change. */
export interface AuditEntry {
  /** Its place in the log, newest highest; set by the store. */
  id?: number;
  /** The room, or null for a server-wide action. */
  room: string | null;
  ts: number;
  action: ModerationAction | "settings" | "delete";
  by: UserRef;
  user?: UserRef;
  reason?: string;
  until?: number | null;
  /** What else says what happened: a role, the settings, a message's seq. */
  detail?: Record<string, unknown>;
}

/** What /healthz says of storage that takes no writes, and why. */
export interface StorageFailure {
  storage: "failed" | "full";
  error: string;
}

/** A room with members, and how many distinct users. */
export interface RoomCount {
  room: string;
  members: number;
}

/**
 * What the hub needs from a storage engine. Async so that an engine behind a network (Redis, to
 * run several instances) fits the same seam; the SQLite engine answers at once.
 */
export interface Store {
  /**
   * Stores a batch in one commit, in order. A message whose (room, user, id) is already stored,
   * or earlier in the batch, is not stored again: its result is the original, `duplicate: true`.
   * A message for a room that holds no history, while MAX_ROOMS rooms do, is refused: nothing
   * stored, no seq spent. Trims what HISTORY_RETAIN and HISTORY_MAX_AGE_DAYS push out of the rooms
   * it writes to (the age measured from the newest `ts` in the batch: ageCutoff).
   */
  append(batch: readonly NewEntry[]): Promise<Appended[]>;
  /**
   * The room's latest seq (0 if it never had a message), its oldest retained seq (0 if none), and
   * its epoch: the identity of its sequence, made with it and made anew only if storage lost it
   * (null while the room has none yet).
   */
  roomInfo(room: string): Promise<RoomInfo>;
  /**
   * The entry a dedup key (room, user id, id) stands for, as it is now; null when there is none
   * (never stored, or trimmed with its key). `append` finds repeats itself: this is for a send
   * that is refused before it gets there (§4: a repeated key still gets the original).
   */
  original(room: string, userId: string, id: string): Promise<StoredFrame | null>;
  page(room: string, query: PageQuery): Promise<Page>;
  /** roomInfo and page together, as a joiner needs them: one read (a join's cost is mostly its reads). */
  roomPage(room: string, query: PageQuery): Promise<{ info: RoomInfo; page: Page }>;
  /**
   * Trims, in every room, the messages older than HISTORY_MAX_AGE_DAYS at `now`; returns how many
   * went. A room keeps its latest seq when its last message goes, so no seq is ever reused.
   */
  sweepHistory(now: number): Promise<number>;
  /**
   * Frees a place among the MAX_ROOMS rooms that hold history (ROOM_RECLAIM_DAYS): the history of
   * the room idle longest goes, among those whose newest entry is older than `before` and that
   * nobody is in (on any instance; `occupied` says for this one). The room keeps its seq, roles
   * and settings. Resolves with the room, or null when none is idle enough.
   */
  reclaimIdle(before: number, occupied: (room: string) => boolean): Promise<string | null>;
  /** The rooms whose latest message is newest, newest first (the room directory). */
  recentRooms(limit: number): Promise<RecentRoom[]>;
  /** The session a live token hash opens; or null. */
  findSession(tokenHash: string, now: number): Promise<SessionRecord | null>;
  /**
   * Stores a session; a guest's keys reserve its name until it expires or is revoked. With
   * `refresh` (a hello that restored it), only while it is still stored: a signout that revoked it
   * meanwhile wins, and this resolves false, having written nothing.
   */
  saveSession(tokenHash: string, session: SessionRecord, refresh?: boolean): Promise<boolean>;
  /** Ends a session now (signout): its token opens nothing and its name is free. */
  revokeSession(tokenHash: string): Promise<void>;
  /** The user whose valid guest session reserves a name with one of these keys; or null. */
  nameReservedBy(keys: readonly string[], now: number): Promise<string | null>;
  sweepSessions(now: number): Promise<number>;
  /** The room's roles and settings (defaults for a room nobody set up). */
  roomAuth(room: string): Promise<RoomAuth>;
  /**
   * Makes `user` the room's owner if it has none and holds nothing (no retained message nor
   * event); false otherwise. One step, so two first joiners cannot both own the room.
   */
  claimOwner(room: string, user: UserRef): Promise<boolean>;
  /**
   * Gives `user` a role in the room; "owner" moves ownership (the old owner becomes a moderator),
   * "member" takes a role away. `hooks`, the webhook events telling of it, are queued in the same
   * commit (§11.7), as are those of removeListed, restrict and banServer.
   */
  setRole(room: string, user: UserRef, role: Role, hooks?: readonly HookEvent[]): Promise<void>;
  /** Whether the user is on the room's list of members (private rooms, §11.2). */
  isListed(room: string, userId: string): Promise<boolean>;
  addListed(room: string, userIds: readonly string[]): Promise<void>;
  /** Takes a user off the room's list (a kick from a private room, §11.4). */
  removeListed(room: string, userId: string, hooks?: readonly HookEvent[]): Promise<void>;
  /**
   * Stores an invite code's hash for the room (null maxUses: any number of uses), unless the room
   * holds `max` live invites (unexpired at `now`, not used up): counted in the step that stores
   * it, so two creations at the bound cannot both pass. Whether it was stored.
   */
  createInvite(codeHash: string, room: string, expiresAt: number, maxUses: number | null, now: number, max: number): Promise<boolean>;
  /** Spends one use of an invite to `room` if it is that room's, unexpired and not used up; false otherwise. */
  useInvite(codeHash: string, room: string, now: number): Promise<boolean>;
  /** The rooms whose settings say private. */
  privateRooms(): Promise<Set<string>>;
  /** Stores a new bot with its token's hash (the token itself is never stored). */
  createBot(bot: BotRecord, tokenHash: string): Promise<void>;
  /** Every bot, revoked ones too, oldest first. */
  bots(): Promise<BotRecord[]>;
  /** The bot a token hash signs in, unless it is revoked; or null. */
  botByToken(tokenHash: string): Promise<BotRecord | null>;
  /** Revokes a bot: its token signs in nobody from now on. False when there is no such bot. */
  revokeBot(id: string): Promise<boolean>;
  /** One stored entry of a room's sequence, as it is now; null when none has that seq. */
  entry(room: string, seq: number): Promise<StoredFrame | null>;
  /** Bans or mutes `userId` in a room (null lifts it). */
  restrict(kind: "ban" | "mute", room: string, userId: string, restriction: Restriction | null, hooks?: readonly HookEvent[]): Promise<void>;
  /** Bans a user from the whole server, and with `ip` its address too (null lifts every ban made for the user). */
  banServer(userId: string, restriction: Restriction | null, ip?: string, hooks?: readonly HookEvent[]): Promise<void>;
  /** The server-wide ban holding for this user or address at `now`, if any. */
  serverBan(userId: string | null, ip: string, now: number): Promise<Restriction | null>;
  /** Adds an entry to the audit log, which keeps HISTORY_RETAIN per room. */
  audit(entry: AuditEntry): Promise<void>;
  /** The audit log of a room (or of every room, `room` null), newest first, before id `before`. */
  auditPage(room: string | null, before: number | undefined, limit: number): Promise<{ entries: AuditEntry[]; complete: boolean }>;
  /**
   * Why the engine takes no writes: `failed` for good (its disk failed to sync), `full` until a
   * write succeeds again (the disk is full: writes are refused whole, nothing half stored); null
   * while it is well.
   */
  failure(): StorageFailure | null;
  /**
   * Starts the webhook outbox (§11.7): from now on every append queues the events `bounds` take
   * in its own commit. Never called while webhooks are off, so then nothing is queued.
   */
  openOutbox(bounds: OutboxBounds): Outbox;
  close(): Promise<void>;
}

/** A room event other than a message, as it crosses instances (messages carry their seq instead). */
export interface RoomEvent {
  frame: PresenceFrame | TypingNotice | (ModerationFrame & { room: string });
  /** A rename's old name, for the TCP line that says who it was. */
  oldName?: string;
}

/**
 * What one instance tells every other, not about one room (§11.1, §11.4): a server-wide ban (its
 * user's connections close with 4003; with `address`, so do those from its addresses, which get
 * banned too), or a session that ended (its connections close).
 */
export type ServerEvent =
  | { type: "ban"; userId: string; address: boolean; restriction: Restriction; frame: ModerationFrame }
  | { type: "signout"; userId: string; session: string }
  /** A user's name changed (name-claim.lua): its connections on every instance take it, if `version` is newer than theirs. */
  | { type: "rename"; userId: string; name: string; version: number }
  /** A user lost its name to one who held it first (name-claim.lua, after Redis lost data). */
  | { type: "name_lost"; userId: string; name: string };

/** What a relay hands what it brings to. */
export interface RelayTarget {
  /**
   * A stored message, from the engine: possibly repeated, late, or after a gap; with the epoch of
   * the sequence it was stored in, when the engine can lose its data (Redis).
   */
  receive(message: StoredFrame, epoch?: string): void;
  /** The relay may have missed messages of `room` (it reconnected; or a periodic check): read on from storage. */
  catchUp(room: string): void;
  /** A presence change or typing from another instance, for this one's members. */
  event(event: RoomEvent): void;
  /** A server event from another instance, for this one's connections. */
  server(event: ServerEvent): void;
  /**
   * The relay is hearing server events again after a while it could not (its subscription was
   * away): what it missed is not told again, so a ban made meanwhile is read from storage.
   */
  resubscribed(): void;
}

/**
 * How stored messages come back to be delivered (the relay seam). With one process what this
 * instance commits is all there is, handed back at once. With Redis every instance hears, from
 * Redis's publish, the rooms it watches; that is at most once, so the room log puts what comes
 * in order, drops repeats and fills gaps from history: once, for every engine.
 */
export interface Relay {
  attach(target: RelayTarget): void;
  /**
   * A message this instance stored (not a duplicate). Resolves once it has been handed to the
   * target here: at once with one process; with Redis, when its own publish comes back (or a
   * bounded wait passed, after which the room's catch-up delivers it).
   */
  committed(message: StoredFrame): Promise<void>;
  /** `message` was delivered here (live, or read from history to fill a gap). */
  delivered(message: StoredFrame): void;
  /** Tells the other instances of a room event this one delivered here (typing). */
  event(event: RoomEvent): void;
  /** Tells the other instances of a server event this one carried out here. */
  broadcast(event: ServerEvent): void;
  /** Starts bringing `room`; resolves once every message stored from then on will be brought. */
  watch(room: string): Promise<void>;
  unwatch(room: string): void;
  /** The engine's state for /healthz; null when there is nothing to report. */
  health(): { redis: "up" | "down" | "slow" } | null;
  close(): Promise<void>;
}

/** One process: what it commits is all there is, handed to the target at once. */
export class LocalRelay implements Relay {
  private target!: RelayTarget;

  attach(target: RelayTarget): void {
    this.target = target;
  }

  async committed(message: StoredFrame): Promise<void> {
    this.target.receive(message);
  }

  delivered(): void {}
  event(): void {}
  broadcast(): void {}
  async watch(): Promise<void> {}
  unwatch(): void {}
  health(): null {
    return null;
  }
  async close(): Promise<void> {}
}

/**
 * Who is in which room on the other instances, and the presence changes that cross them
 * (Centrifugo's PresenceManager). The hub keeps the members it serves in Presence, with their
 * grace, and tells the roster when a user becomes or stops being a member here; the roster says
 * whether that made the user new to the room, or gone from it, on every instance. The hub alone
 * decides what to announce. With one process there is nobody else: every change counts.
 */
export interface Roster {
  attach(target: RosterTarget): void;
  /** Starts taking part (heartbeats, taking over dead instances). */
  start(): Promise<void>;
  /**
   * Puts back what this instance holds, when the engine may have lost it (issue 21: 2, 3, 5):
   * after Redis lost its data, every name (who held it first keeps it), the sessions of its live
   * users and its presence; after a reconnect (`reconnected`), its presence, replaced wholesale.
   * Resolves once done (or nothing was lost).
   */
  recover(reconnected: boolean): Promise<void>;
  /** `user` is now a live member of `room` here; true when it is a member nowhere else (a join to announce). */
  add(room: string, user: UserRef): Promise<boolean>;
  /**
   * `user`, a member of `room` here, is in grace: none of its connections here is in the room.
   * An explicit leave elsewhere ends it (`remove`).
   */
  graced(room: string, user: UserRef): Promise<void>;
  /**
   * `user` is back from grace in `room` here, live again. True when an explicit leave elsewhere
   * ended its grace meanwhile and it is a member nowhere else: a join to announce.
   */
  back(room: string, user: UserRef): Promise<boolean>;
  /**
   * `user` is no longer a member of `room` here; true when it was nowhere else either (a leave to
   * announce). An `explicit` leave is the user's, at once (§10): its memberships in grace on the
   * other instances end with it, and those instances end their graces when they hear the leave.
   */
  remove(room: string, user: UserRef, explicit?: boolean): Promise<boolean>;
  /**
   * The other instances hear that `user`, a member of `room`, was called `oldName`; not when
   * `version` is no longer the name's (a later rename won: its own event says so).
   */
  rename(room: string, user: UserRef, oldName: string, version: number): Promise<void>;
  /** Members of `room` served by other instances. */
  others(room: string): Promise<UserRef[]>;
  /** The members of each room this instance is registered with in the roster (for `reconcile`). */
  mine(): Promise<Map<string, UserRef[]>>;
  /**
   * Rooms with members on any instance and their distinct users, given this instance's (`here`,
   * counted only when asked for). The same array again while nothing is known to have changed.
   */
  active(here: () => RoomCount[]): Promise<RoomCount[]>;
  /**
   * Holds a name (by its look-alike keys) for its user on every instance, and makes it the user's
   * one name there: a rename takes the new name and lets go of the old one in one step (§11.1).
   * A guest's claim is `exclusive`: a hello's is refused when another user holds a key; a hold's
   * (`version` given) goes to whoever took the name first. A member's or bot's always holds.
   */
  claimName(claim: NameClaim): Promise<NameHeld>;
  releaseName(keys: readonly string[], userId: string): void;
  /**
   * The name `userId` holds on another instance, for a user not online here; null when it holds
   * none (it is online nowhere). With Redis, the name record every instance shares, which lasts
   * while an instance holds the name and up to INSTANCE_TIMEOUT_MS after the last lets it go.
   */
  nameElsewhere(userId: string): string | null | Promise<string | null>;
  /**
   * Whether this instance holds `userId` as a server admin (§11.1): online or in grace here as
   * one (the hub says so whenever that may have changed). A dead instance's holds end with its
   * takeover: a survivor that adopts the user in grace holds it anew (RosterTarget.adopt).
   */
  holdAdmin(userId: string, admin: boolean): void;
  /** Whether another instance holds `userId` as a server admin; with one process nobody does, answered at once. */
  adminElsewhere(userId: string): boolean | Promise<boolean>;
  /** Counts one hello from `ip` against HELLO_RATE_PER_MINUTE on every instance; false past it. */
  takeHello(ip: string, now: number): Promise<boolean>;
  /** Counts one new room started by `userId` from `ip` on every instance (ROOM_STARTS_PER_HOUR, …_PER_IP); false past either. */
  takeRoomStart(userId: string, ip: string, now: number): Promise<boolean>;
  /**
   * Takes one token of the user's rate bucket, false when it is empty. `own` is this instance's
   * bucket of the user: with one process it is the user's, answered at once (nothing waits);
   * with several the bucket lives in the engine and the answer is a promise.
   */
  takeFrame(userId: string, now: number, own: TokenBucket): boolean | Promise<boolean>;
  /**
   * Slow mode (§11.2): 0 when the user may send in the room now (the send then counts), else the
   * ms to wait (slowModeWait: `ms` is the room's slow mode now).
   * `own` is this instance's record of when each "room\nuserId" last sent: with one process it is
   * the record, answered at once; with several the record lives in the engine and the answer is a
   * promise.
   */
  takeSlowMode(room: string, userId: string, ms: number, now: number, own: Map<string, number>): number | Promise<number>;
  close(): Promise<void>;
}

/**
 * How long a send counts for slow mode at most (ms): the longest slow mode, since a setting raised
 * later measures from it too. Records of sends are kept no longer (swept, or lapsing in Redis).
 */
export const SLOW_MODE_KEEP_MS = SLOW_MODE_MAX_SECONDS * 1000;

/**
 * Slow mode's rule (§11.2: at most one send per that many seconds): the ms a user waits before it
 * may send again in a room whose slow mode is `ms` now, given when it last sent there while slow
 * mode was on (`last`). Measured with the setting now, so lowering it keeps no longer wait; it
 * needs nothing but the record, so every instance and every re-read of the room agree.
 * slow-take.lua is the same rule in Redis.
 *   slowModeWait(1_000, 10_000, 4_000)     // => 7000
 *   slowModeWait(1_000, 2_000, 4_000)      // => 0 (lowered since: 2 s have passed)
 *   slowModeWait(undefined, 10_000, 0)     // => 0 (never sent)
 */
export function slowModeWait(last: number | undefined, ms: number, now: number): number {
  return last === undefined ? 0 : Math.max(0, last + ms - now);
}

/** The slow-mode rule on one record of when each key last sent (Roster.takeSlowMode): 0 and the send counted, or the ms to wait. */
export function takeSlot(record: Map<string, number>, key: string, ms: number, now: number): number {
  const wait = slowModeWait(record.get(key), ms, now);
  if (wait === 0) record.set(key, now);
  return wait;
}

/** A name claimed for a user (Roster.claimName). */
export interface NameClaim {
  name: string;
  keys: readonly string[];
  userId: string;
  /** A guest's: nobody else may hold a key. */
  exclusive: boolean;
  /** When the user took this name (epoch ms): who took a name first keeps it (issue 21: 2). */
  since: number;
  /** A hold (the name's version, as this instance knows it): keeps what it has, renames nothing; absent for a hello's claim. */
  version?: number;
}

/**
 * What a claim got: held, with the version of the user's name (one more with each rename); or
 * refused, and when the user was renamed elsewhere meanwhile (a stale hold), its name now.
 */
export type NameHeld = { held: true; version: number } | { held: false; renamed?: { name: string; version: number } };

/** What a roster tells the hub. */
export interface RosterTarget {
  /**
   * A dead instance's member of `room`, now this instance's: it stays in grace, then leaves unless
   * it is back; `admin` when the dead instance held it as a server admin (its last hello there).
   */
  adopt(room: string, user: UserRef, admin: boolean): void;
  /** Others took this instance for dead (Redis or the network was away too long): register its members again. */
  lost(): void;
  /** A user of this instance was renamed on another (a hold of its old name came back stale). */
  renamedElsewhere(userId: string, name: string, version: number): void;
  /** A user of this instance lost its name to one who held it first (issue 21: 2). */
  nameLost(userId: string, name: string): void;
  /**
   * Registers this instance's presence again, replacing what the roster holds of it wholesale;
   * with `reset` (the engine lost its data), the sessions of its live users too.
   */
  reconcile(reset: boolean): Promise<void>;
}

/** One process: its members are everyone, its names all names, its buckets the users'. */
export class LocalRoster implements Roster {
  attach(): void {}
  async start(): Promise<void> {}
  async recover(): Promise<void> {}
  async add(): Promise<boolean> {
    return true;
  }
  async graced(): Promise<void> {}
  /** Nobody else ends a grace here: a user back from it was never seen to leave. */
  async back(): Promise<boolean> {
    return false;
  }
  async remove(): Promise<boolean> {
    return true;
  }
  async rename(): Promise<void> {}
  async others(): Promise<UserRef[]> {
    return [];
  }
  async mine(): Promise<Map<string, UserRef[]>> {
    return new Map();
  }
  async active(here: () => RoomCount[]): Promise<RoomCount[]> {
    return here();
  }
  async claimName(): Promise<NameHeld> {
    return { held: true, version: 0 };
  }
  releaseName(): void {}
  /** One process: a user not online here is online nowhere. */
  nameElsewhere(): null {
    return null;
  }
  holdAdmin(): void {}
  adminElsewhere(): boolean {
    return false;
  }
  /** The hub's own bucket per address is all there is. */
  async takeHello(): Promise<boolean> {
    return true;
  }
  /** The hub's own buckets per user and address are all there is. */
  async takeRoomStart(): Promise<boolean> {
    return true;
  }
  takeFrame(_userId: string, now: number, own: TokenBucket): boolean {
    return own.take(now);
  }
  takeSlowMode(room: string, userId: string, ms: number, now: number, own: Map<string, number>): number {
    return takeSlot(own, `${room}\n${userId}`, ms, now);
  }
  async close(): Promise<void> {}
}
