/**
 * Where the Redis engine keeps things, and how messages and events are written there. Room
 * names match ROOM_PATTERN, so these keys hold no separator of their own.
 */
import { storedFrame, type NewEntry, type RoomEvent } from "../engine.ts";
import type { StoredFrame } from "../protocol/wire.ts";

/** The prefix of a room's keys, for a script that builds them from the room (reclaim.lua, held-index.lua). */
export const ROOM_KEY_PREFIX = "chat:room:";

/** A room's history and the channel it is published on. */
export const roomKeys = (room: string) => ({
  // reclaim.lua builds log and ids from "chat:room:" and the room too, held-index.lua log.
  /** The room's seq counter: never decreases, so a seq is never reused. */
  seq: `chat:room:${room}:seq`,
  /** A sorted set scored by seq, members "seq:json" (encodeMember). */
  log: `chat:room:${room}:log`,
  /** "userId\nclientId" → seq: the dedup keys, dropped with the message each points at. */
  ids: `chat:room:${room}:ids`,
  /**
   * The room's epoch: a random id the append script makes with the room's sequence (when it finds
   * none), published with every message. Lost with the seq (Redis without its data), it is made
   * anew, so a reset shows at once, whatever the seq.
   */
  epoch: `chat:room:${room}:epoch`,
  /** Messages (and presence and typing events) of the room, for every instance. */
  channel: `chat:room:${room}`,
});

/** Server events (bans, signouts) for every instance. */
export const SERVER_CHANNEL = "chat:server";

/** A room's authority (§11.2). */
export const authKeys = (room: string) => ({
  /** The owner's user id. */
  owner: `chat:room:${room}:owner`,
  /** userId → {role, name}: owner and moderators. */
  roles: `chat:room:${room}:roles`,
  /** topic, private, readOnly, slowModeSeconds. */
  settings: `chat:room:${room}:settings`,
  /** The room's list of members (private rooms): user ids. */
  list: `chat:room:${room}:list`,
  /** The room's live invites: code hashes by expiresAt (invite-create.lua counts them). */
  invites: `chat:room:${room}:invites`,
  /** userId → a ban (JSON: until, reason, by). */
  bans: `chat:room:${room}:bans`,
  /** userId → a mute (JSON). */
  mutes: `chat:room:${room}:mutes`,
});
/**
 * The timed room bans and mutes by when they lapse, for the sweep (restrictions-sweep.lua):
 * members restrictionMember(…), the room's hash key and the user id. The hashes say what holds;
 * this only says where to look.
 */
export const LAPSING_KEY = "chat:restrictions:lapsing";
export const restrictionMember = (hashKey: string, userId: string) => `${hashKey}\n${userId}`;
/** Set once the restrictions written before LAPSING_KEY existed are in it (indexes.ts). */
export const LAPSING_INDEXED_KEY = "chat:restrictions:indexed";
/** A server-wide ban of a user (JSON), expiring with it. */
export const userBanKey = (userId: string) => `chat:ban:user:${userId}`;
/** A ban of an address (JSON, with the user whose ban made it), expiring with it. */
export const addressBanKey = (ip: string) => `chat:ban:ip:${ip}`;
/** The addresses a user's bans made: unbanning the user lifts them. */
export const bannedAddressesKey = (userId: string) => `chat:ban:ips:${userId}`;
/** Every bot: id → JSON {name, createdAt, revoked}. */
export const BOTS_KEY = "chat:bots";
/** A bot token's hash → the bot's id. */
export const botTokenKey = (tokenHash: string) => `chat:bot:token:${tokenHash}`;
/** The audit log of a room ("" for server-wide actions), and of everything; scored by AUDIT_ID_KEY's count. */
export const auditKey = (room: string | null) => (room === null ? "chat:audit:*" : `chat:audit:room:${room}`);
export const AUDIT_ID_KEY = "chat:audit:id";
/** The rooms whose settings say private. */
export const PRIVATE_KEY = "chat:private";
/** An invite, by its code's hash: room, expiresAt, maxUses, uses. */
export const inviteKey = (codeHash: string) => `chat:invite:${codeHash}`;
/** A guest name reserved by a session (§11.1), by one of its look-alike keys: the user id. */
export const reservedKey = (key: string) => `chat:reserved:${key}`;

/** Where presence lives: per room, who is here on which instance and how many instances each user is on. */
export const rosterKeys = (room: string) => ({
  /**
   * "instanceId|userId" → a user's membership through one instance: "1" live, "g" in grace (none
   * of its connections there is in the room; an explicit leave elsewhere ends it: roster-remove.lua).
   */
  here: `chat:room:${room}:here`,
  /** userId → the number of instances it is a member through. */
  users: `chat:room:${room}:users`,
  /** userId → its name, while it is a member. */
  names: `chat:room:${room}:names`,
});

/** Where an instance's rooms are (instanceKeys(id).rooms), for a script that finds the instance by a roster field. */
export const INSTANCE_ROOMS = { prefix: "chat:instance:", suffix: ":rooms" } as const;

export const instanceKeys = (id: string) => ({
  /** Exists while the instance is alive (it sets it again every third of INSTANCE_TIMEOUT_MS). */
  alive: `chat:instance:${id}`,
  /** room → how many of the room's members are here through it: what a survivor takes over. */
  rooms: `${INSTANCE_ROOMS.prefix}${id}${INSTANCE_ROOMS.suffix}`,
  /** The survivor taking it over, for INSTANCE_TIMEOUT_MS; another may finish once that lapses. */
  takeover: `chat:instance:${id}:takeover`,
  /** The users it holds as server admins (adminKey): what a survivor's takeover lets go of. */
  admins: `chat:instance:${id}:admins`,
});

/** The instances that hold a user as a server admin (admin-hold.lua): online or in grace there as one. */
export const adminKey = (userId: string) => `chat:admin:${userId}`;

/** The webhook outbox (§11.7); hooks-lib.lua says how its keys work together. */
export const HOOK_KEYS = {
  /** Every queued event, oldest first: entries {k: its field in `data`}. */
  stream: "chat:hooks",
  /** field → the event: "webhook-id\ntype\nts\n" + a room log member ("seq:json") or a live frame's JSON. */
  data: "chat:hooks:data",
  /** stream id → when it is due again (ms): retries, and events handed back. */
  retry: "chat:hooks:retry",
  /** stream id → how many attempts failed. */
  tries: "chat:hooks:tries",
} as const;
/** The consumer group of the outbox stream: each instance is a consumer, named by its instance id. */
export const HOOK_GROUP = "deliverers";

/** The room directory: rooms scored by their latest message's time. */
export const RECENT_KEY = "chat:recent";
/**
 * The rooms that hold history (MAX_ROOMS counts them: ZCARD), scored by their oldest retained
 * message's time (HISTORY_MAX_AGE_DAYS finds the aged ones: ZRANGEBYSCORE). Only the scripts
 * move it, in the same step as the history, so it is right on every instance and, with AOF,
 * after a restart.
 */
export const HELD_KEY = "chat:held";
/**
 * The same rooms scored by their newest entry's time: reclaim.lua takes the room idle longest
 * from its start. Moved by the scripts with chat:held; an older instance's data lacks it, and
 * RedisStore.reclaimIdle puts the rooms it lacks in (indexes.ts).
 */
export const HELD_NEWEST_KEY = "chat:held:newest";
/**
 * A random mark of Redis's data, made by the first instance that looks: an instance that finds it
 * gone or another knows Redis lost its data (a restart without persistence, a flush) and
 * registers again what it holds (RedisRoster.recover).
 */
export const GENERATION_KEY = "chat:generation";
/** Every instance that registered and was not taken over yet. */
export const INSTANCES_KEY = "chat:instances";
/** room → its distinct members on every instance (for /api/rooms). */
export const ACTIVE_KEY = "chat:active";

export const sessionKey = (tokenHash: string) => `chat:session:${tokenHash}`;
/** A name held, by its nameKey: "instanceId|userId" → since (when the user took it). */
export const nameKey = (key: string) => `chat:name:${key}`;
/** What a user is called on every instance (name-claim.lua): name, its keys' keys, and its version. */
export const NAME_RECORD = { prefix: "chat:user:", suffix: ":name" } as const;
export const nameRecordKey = (userId: string) => `${NAME_RECORD.prefix}${userId}${NAME_RECORD.suffix}`;
/** An address's hello bucket. */
export const helloKey = (ip: string) => `chat:hello:${ip}`;
/** The buckets of new rooms a user, and an address, may start (ROOM_STARTS_PER_HOUR, …_PER_IP). */
export const roomStartKeys = (userId: string, ip: string) => ({ user: `chat:starts:user:${userId}`, ip: `chat:starts:ip:${ip}` });
/** A once-script call's answer, kept a while for a resend of the call (link.ts: `once`). */
export const onceKey = (token: string) => `chat:once:${token}`;
/** A user's frame bucket; not at `chat:bucket:`, where older instances keep a string (a rolling deploy runs both). */
export const rateKey = (userId: string) => `chat:rate:${userId}`;
/**
 * When a user last sent in a slow-mode room (slow-take.lua); not at `chat:slow:`, where older
 * instances keep when its next send is due (a rolling deploy runs both).
 */
export const slowKey = (room: string, userId: string) => `chat:slowsent:${room}:${userId}`;

/**
 * A stored entry as Redis holds and publishes it: `seq:json`, its frame as JSON without `seq`. A
 * message leaves out its `type` too, so it reads `{room, id, user, text, ts}` as it always did
 * (and `replyTo`, `edited`, `deleted` when it has them, and `edits`, the seqs of its edit events,
 * whose text goes when it is trimmed); an event keeps its `type`, and its dedup id: trimming an
 * entry drops its dedup key by it. No frame shows `edits` or an event's id (decodeMember drops
 * them). The scripts change a member in place (an edit, a deletion) by the same fields.
 */
export function encodeMember(e: NewEntry): string {
  const { seq: _seq, type, ...rest } = storedFrame(e, 0);
  return JSON.stringify(type === "message" ? rest : { type, ...rest, id: e.id });
}

/** A message as append.lua publishes it: its member (`seq:json`) and its sequence's epoch. */
export interface Published {
  epoch: string;
  m: string;
}

export function decodeMember(member: string): StoredFrame {
  const at = member.indexOf(":");
  const fields = JSON.parse(member.slice(at + 1));
  if (fields.type !== undefined) delete fields.id;
  else delete fields.edits;
  return { type: "message", ...fields, seq: Number(member.slice(0, at)) };
}

/**
 * The JSON a room event crosses instances as. A message crosses as JSON too, `{"epoch","m"}`
 * (Published), which has no `frame`; before epochs it was `seq:json`, which a `{` tells apart.
 */
export function encodeEvent(instance: string, event: RoomEvent): string {
  return JSON.stringify({ instance, ...event });
}
