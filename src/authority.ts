/**
 * Rooms' authority (§11.2): who may enter a room and read it, who owns a new room, and the
 * commands that run a room (settings, roles, invites). Every decision asks core/rights.ts's
 * may(); every door (WebSocket, TCP, HTTP) reaches these through the hub.
 */
import { randomId } from "./core/random.ts";
import type { Batcher } from "./batcher.ts";
import type { Connection } from "./connection.ts";
import type { Context } from "./context.ts";
import { may, type Action, type Rank } from "./core/rights.ts";
import { SLOW_MODE_KEEP_MS, holds, type AuditEntry, type RoomAuth, type Roster, type Store } from "./engine.ts";
import type { Fanout } from "./fanout.ts";
import type { Membership } from "./membership.ts";
import { BOT_ID_PREFIX, MESSAGES, fail, normalizeTopic, ok, userRef, type Failure, type Result } from "./protocol/rules.ts";
import {
  isRoom,
  type InviteFrame,
  type InviteRequest,
  type ModerationFrame,
  type Role,
  type RoleFrame,
  type RoomMember,
  type RoomSettings,
  type RoomSettingsFrame,
  type SettingsEvent,
  type UserRef,
} from "./protocol/wire.ts";
import type { RoomLog } from "./roomlog.ts";
import { hashSecret, type Users } from "./users.ts";
import type { Webhooks } from "./webhooks.ts";

/** Bytes of randomness in an id of an event (it has no client id, but shares the messages' dedup key). */
export const EVENT_ID_BYTES = 9;
/** A fresh id for a stored event. */
export const eventId = () => randomId(EVENT_ID_BYTES);
/** Bytes of randomness in an invite code (192 bits; §11.2 asks at least 128). */
const INVITE_CODE_BYTES = 24;
/** Live invites (unexpired, not used up) a room holds at most: far past a real community's, short of one owner filling the disk. */
export const MAX_LIVE_INVITES_PER_ROOM = 100;

/** Who asks: a user, with its server-wide standing; a connection's user, or (HTTP) a bot or the admin bearer. */
export interface Actor {
  ref: UserRef;
  admin: boolean;
  /** Private rooms a member's token lets it join. */
  claimRooms: readonly string[];
}

/** Who the admin bearer (`Authorization: Bearer <ADMIN_TOKEN>`, §11.6) acts as over HTTP: posts show it as a bot called admin. */
export const ADMIN_BEARER: Actor = { ref: { id: "b:admin", name: "admin", kind: "bot" }, admin: true, claimRooms: [] };

/** The actor a connection's user is. */
export const actorOf = (conn: Connection): Actor => ({ ref: conn.user!.ref, admin: conn.admin, claimRooms: conn.claimRooms });

/** The role a room gives a user: owner, moderator, or member when it gives none. */
export function roleIn(auth: RoomAuth, userId: string): Role {
  return auth.roles.get(userId)?.role ?? "member";
}

/** An actor's rank in a room: an admin outranks every role. */
export function rankIn(auth: RoomAuth, actor: Actor): Rank {
  return actor.admin ? "admin" : roleIn(auth, actor.ref.id);
}

/** A room with no owner that holds nothing and has nobody in it is new (§11.2): its first joiner starts it. */
export function isNewRoom(auth: RoomAuth, retained: boolean, othersHere: number): boolean {
  return !retained && othersHere === 0 && ![...auth.roles.values()].some((h) => h.role === "owner");
}

export class Authority {
  /**
   * When each user last sent in each slow-mode room ("room\nuserId"): the record with one
   * process, this instance's copy with Redis (Roster.takeSlowMode); swept of what counts no more.
   */
  private readonly slowSent = new Map<string, number>();

  constructor(
    private readonly ctx: Context,
    private readonly store: Store,
    private readonly roster: Roster,
    private readonly log: RoomLog,
    private readonly membership: Membership,
    private readonly batcher: Batcher,
    private readonly fanout: Fanout,
    private readonly users: Users,
    /** Tells of role changes (§11.7); null while webhooks are off. */
    private readonly webhooks: Webhooks | null = null,
  ) {}

  /** A refusal unless `actor` may take `action` in a room whose authority is `auth` (on a target of rank `target`: rankOf). */
  check(auth: RoomAuth, actor: Actor, action: Action, target?: Rank): Failure | null {
    const why = may({ rank: rankIn(auth, actor) }, action, target && { rank: target });
    return why === null ? null : fail("forbidden", why);
  }

  /**
   * Whether `actor` may enter `room` (§11.2), checked at every join, a resuming one too: anyone
   * may enter a public room; a private one needs its list, the room in the member's token, an
   * invite (which puts the user on the list), or the rank of a moderator.
   */
  async mayEnter(room: string, auth: RoomAuth, actor: Actor, invite: string | undefined): Promise<Failure | null> {
    const banned = this.banned(auth, actor.ref.id);
    if (banned) return banned;
    if (!auth.settings.private || this.check(auth, actor, "room.enter") === null) return null;
    if (await this.store.isListed(room, actor.ref.id)) return null;
    if (actor.claimRooms.includes(room) || (invite !== undefined && (await this.store.useInvite(hashSecret(invite), room, this.ctx.now())))) {
      await this.store.addListed(room, [actor.ref.id]);
      return null;
    }
    if (invite !== undefined) return fail("invite_invalid", "that invite is unknown, used up, expired or for another room");
    return fail("forbidden", `${room} is private: you need an invite`);
  }

  /**
   * Whether `actor` may read `room`'s history: any room but a private one, which needs its list
   * (§11.2) and no ban. A public room's history is public (§4, as over HTTP to anyone): a ban keeps
   * its user out of the room, not from what everyone may read.
   */
  async mayRead(room: string, actor: Actor): Promise<boolean> {
    return this.reads(room, await this.log.auth(room), actor);
  }

  /**
   * Whether `actor` may change its own messages in `room` (§11.3 `edit`, `delete`): what reading
   * the room needs (mayRead), so that one taken off a private room's list (kicked, §11.4) puts
   * no more text into it through the messages it left there. Null when it may; else `forbidden`,
   * as `history` answers. A moderator's deletion of another's message is moderation: its own rule.
   */
  async mayChangeOwn(room: string, auth: RoomAuth, actor: Actor): Promise<Failure | null> {
    return (await this.reads(room, auth, actor)) ? null : fail("forbidden", `${room} is private: you are not on its list`);
  }

  /** mayRead's rule, for a room whose authority is `auth`. */
  private async reads(room: string, auth: RoomAuth, actor: Actor): Promise<boolean> {
    if (!auth.settings.private) return true;
    if (this.banned(auth, actor.ref.id)) return false;
    if (this.check(auth, actor, "room.enter") === null || actor.claimRooms.includes(room)) return true;
    return this.store.isListed(room, actor.ref.id);
  }

  /** Whether ROOM_CREATION lets `actor` start a new room (§11.2); null when it may. */
  mayStart(actor: Actor): Failure | null {
    const rule = this.ctx.config.roomCreation;
    if (rule === "admins" && !actor.admin) return fail("forbidden", "only admins may start a room here");
    if (rule === "members" && actor.ref.kind === undefined && !actor.admin) return fail("forbidden", "guests may join only rooms that exist already");
    return null;
  }

  /** Makes `actor`, who starts a new room (§11.2), its owner, unless another came first. */
  async claim(room: string, actor: Actor): Promise<void> {
    if (await this.store.claimOwner(room, actor.ref)) this.log.setRole(room, actor.ref, "owner");
  }

  /** `banned`, with until when, while a ban of the user holds in the room (§11.4). */
  banned(auth: RoomAuth, userId: string): Failure | null {
    const ban = auth.bans.get(userId);
    if (!holds(ban, this.ctx.now())) return null;
    return { ...fail("banned", "you are banned from this room"), ...(ban.until !== null ? { extra: { until: ban.until } } : {}) };
  }

  /**
   * Whether `actor` may send in the room now (§11.2, §11.4): not while banned (its connections
   * leave the room, but one whose ban was heard late may still be in it) nor muted; in a read-only
   * room, only moderators and up. Null when it may. Slow mode is asked apart (takeSlowSlot).
   */
  maySend(auth: RoomAuth, actor: Actor): Failure | null {
    const banned = this.banned(auth, actor.ref.id);
    if (banned) return banned;
    const muted = this.muted(auth, actor.ref.id);
    if (muted) return muted;
    if (auth.settings.readOnly && this.check(auth, actor, "send.readOnly")) return fail("read_only", "only moderators send in this room");
    return null;
  }

  /**
   * Slow mode (§11.2): once per its seconds (moderators and up exempt); null when the send may
   * go, and then it has counted, in one step on every instance. So it is asked last, once nothing
   * else refuses the send (a refused send is not a send); only then is the answer a promise.
   */
  takeSlowSlot(room: string, auth: RoomAuth, actor: Actor): Failure | null | Promise<Failure | null> {
    const { slowModeSeconds } = auth.settings;
    if (!slowModeSeconds || !this.check(auth, actor, "send.slowMode")) return null;
    const refusal = (wait: number): Failure | null =>
      wait > 0 ? { ...fail("slow_mode", `slow mode: one message every ${slowModeSeconds} s`), extra: { retryAfterMs: Math.ceil(wait) } } : null;
    const wait = this.roster.takeSlowMode(room, actor.ref.id, slowModeSeconds * 1000, this.ctx.now(), this.slowSent);
    return typeof wait === "number" ? refusal(wait) : wait.then(refusal);
  }

  /** `muted`, with until when, while a mute of the user holds in the room (§11.4). */
  muted(auth: RoomAuth, userId: string): Failure | null {
    const mute = auth.mutes.get(userId);
    if (!holds(mute, this.ctx.now())) return null;
    return { ...fail("muted", "you are muted in this room"), ...(mute.until !== null ? { extra: { until: mute.until } } : {}) };
  }

  /** Forgets the sends that slow mode counts no more, whatever its setting (run now and then). */
  sweep(now: number): void {
    for (const [key, sent] of this.slowSent) if (sent + SLOW_MODE_KEEP_MS <= now) this.slowSent.delete(key);
  }

  /** Members as `joined` lists them: with their role when it is not "member". */
  withRoles(members: UserRef[], auth: RoomAuth): RoomMember[] {
    if (auth.roles.size === 0) return members;
    return members.map((m) => {
      const role = auth.roles.get(m.id)?.role;
      return role ? { ...m, role } : m;
    });
  }

  /**
   * `room_settings` (§11.2): the topic by moderators and up, the rest by the owner and admins.
   * Stored as a `settings` event in the room's sequence, so every member, and everyone resuming
   * with `since`, sees it in its place. Making a room private first lists everyone in it.
   */
  async settings(actor: Actor, frame: Omit<RoomSettingsFrame, "type" | "ref">): Promise<Result<null>> {
    const { room } = frame;
    if (!isRoom(room)) return fail("room_invalid", MESSAGES.roomInvalid);
    const auth = await this.log.auth(room);
    // Only the fields asked for: storage writes them over what the room holds when it commits, so
    // a change made meanwhile (here or on another instance) is not undone from a stale copy.
    const change: Partial<RoomSettings> = {};
    if (frame.topic !== undefined) {
      const denied = this.check(auth, actor, "room.topic");
      if (denied) return denied;
      const topic = normalizeTopic(frame.topic);
      if (topic === null) return fail("text_invalid", "a topic is up to 200 characters, no control characters but tab and newline");
      change.topic = topic;
    }
    const rest = { private: frame.private, readOnly: frame.readOnly, slowModeSeconds: frame.slowModeSeconds };
    if (Object.values(rest).some((v) => v !== undefined)) {
      const denied = this.check(auth, actor, "room.settings");
      if (denied) return denied;
      for (const [key, value] of Object.entries(rest)) if (value !== undefined) Object.assign(change, { [key]: value });
    }
    if (Object.keys(change).length === 0) return fail("bad_request", "nothing to change");
    if (change.private) {
      // Everyone in it now, grace included, on every instance, stays welcome. Also when our copy
      // says it is private already: a change to public may be on its way to storage meanwhile.
      const members = await this.membership.members(room);
      await this.store.addListed(room, members.map((m) => m.id));
    }
    const stored = await this.batcher.add({ type: "settings", room, user: { ...actor.ref }, id: eventId(), ts: this.ctx.now(), settings: change });
    if ("refused" in stored) return fail("room_limit", `the server holds history for at most ${this.ctx.config.maxRooms} rooms`);
    // The settings as committed: this change over whatever the room held then.
    const { topic, private: isPrivate, readOnly, slowModeSeconds } = stored.message as SettingsEvent;
    await this.audit({ room, ts: this.ctx.now(), action: "settings", by: { ...actor.ref }, detail: { topic, private: isPrivate, readOnly, slowModeSeconds } });
    return ok(null);
  }

  /**
   * `role` (§11.3): the owner and admins give or take the moderator role, or hand the room over
   * (the old owner becomes a moderator). Everyone in the room hears it as a `moderation` event.
   */
  async role(actor: Actor, frame: Omit<RoleFrame, "type" | "ref">): Promise<Result<null>> {
    const { room, role } = frame;
    if (!isRoom(room)) return fail("room_invalid", MESSAGES.roomInvalid);
    const auth = await this.log.auth(room);
    const target = await this.known(room, auth, frame.user);
    if (!target) return fail("not_found", "no such user in this room");
    if (target.id === actor.ref.id) return fail("forbidden", "not on yourself");
    const denied = this.check(auth, actor, "room.role", await this.rankOf(auth, target.id));
    if (denied) return denied;
    if (roleIn(auth, target.id) === role) return ok(null);
    const event: ModerationFrame & { room: string } = { type: "moderation", room, action: "role", user: target, by: { ...actor.ref }, role };
    await this.store.setRole(room, target, role, this.webhooks?.eventsOf(event));
    this.log.setRole(room, target, role);
    this.fanout.moderation(event, true);
    await this.audit({ room, ts: this.ctx.now(), action: "role", by: { ...actor.ref }, user: target, detail: { role } });
    return ok(null);
  }

  /** Adds a line to the audit log; a failed write is logged, not failed: the change itself stands. */
  async audit(entry: AuditEntry): Promise<void> {
    try {
      await this.store.audit(entry);
    } catch (error) {
      this.ctx.log("error", "storage", { error: String(error), op: "audit" });
    }
  }

  /**
   * `invite` (§11.2): a moderator or better gets a code that lets its holder into the room, while
   * the room holds fewer than MAX_LIVE_INVITES_PER_ROOM live ones (else `forbidden`).
   */
  async invite(actor: Actor, frame: Omit<InviteRequest, "type" | "ref">): Promise<Result<Omit<InviteFrame, "type">>> {
    const { room } = frame;
    if (!isRoom(room)) return fail("room_invalid", MESSAGES.roomInvalid);
    const denied = this.check(await this.log.auth(room), actor, "room.invite");
    if (denied) return denied;
    const code = randomId(INVITE_CODE_BYTES);
    const now = this.ctx.now();
    const expiresAt = now + (frame.ttlSeconds ?? this.ctx.config.inviteTtlSeconds) * 1000;
    const maxUses = frame.maxUses ?? null;
    if (!(await this.store.createInvite(hashSecret(code), room, expiresAt, maxUses, now, MAX_LIVE_INVITES_PER_ROOM))) {
      return fail("forbidden", `${room} holds ${MAX_LIVE_INVITES_PER_ROOM} live invites, the most a room may: wait for one to expire or be used up`);
    }
    return ok({ room, code, expiresAt, maxUses });
  }

  /**
   * The user `userId` as the room knows it: a member here or on another instance, a holder of a
   * role there, or someone on its list who is online (on any instance: the same answer on every
   * one); null when the room does not know it.
   */
  async known(room: string, auth: RoomAuth, userId: string, anyoneOnline = false): Promise<UserRef | null> {
    const here = (await this.membership.members(room)).find((m) => m.id === userId);
    if (here) return { ...here };
    const holder = auth.roles.get(userId);
    if (holder) {
      const local = this.users.online.get(userId)?.ref;
      return local ? { ...local } : userRef(userId, holder.name);
    }
    const online = await this.online(userId);
    if (online && (anyoneOnline || (await this.store.isListed(room, userId)))) return online;
    const restricted = auth.bans.get(userId) ?? auth.mutes.get(userId);
    if (restricted && anyoneOnline) return userRef(userId, restricted.name ?? userId);
    // A bot acts without a connection (§11.6): any live bot is known to every room.
    if (userId.startsWith(BOT_ID_PREFIX)) {
      const bot = (await this.store.bots()).find((b) => b.id === userId && !b.revoked);
      if (bot) return userRef(bot.id, bot.name);
    }
    return null;
  }

  /**
   * The user as the instance that has it online calls it: this one, else another (the name it
   * holds there, Roster.nameElsewhere); null when it is online nowhere.
   */
  async online(userId: string): Promise<UserRef | null> {
    const here = this.users.online.get(userId)?.ref;
    if (here) return { ...here };
    const name = await this.roster.nameElsewhere(userId);
    return name === null ? null : userRef(userId, name);
  }

  /** The rank of `userId` in a room, as the target of an action: admin for an admin (isAdmin), else its role. */
  async rankOf(auth: RoomAuth, userId: string): Promise<Rank> {
    return (await this.isAdmin(userId)) ? "admin" : roleIn(auth, userId);
  }

  /**
   * Whether a user is a server admin, as a target: the admin bearer's posts (§11.6), and a user
   * signed in as one on any instance, through a live connection or, in presence grace with none,
   * by its latest hello (a reload does not make it outranked). Another instance's answer comes
   * from the roster, asked only when this one's does not say admin already.
   */
  async isAdmin(userId: string): Promise<boolean> {
    if (userId === ADMIN_BEARER.ref.id || this.users.isAdmin(userId)) return true;
    return this.roster.adminElsewhere(userId);
  }
}
