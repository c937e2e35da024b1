/**
 * Moderation (§11.3–§11.4): kick, ban, unban and mute, in a room or (admins) server-wide, and
 * what each does to its target's connections on every instance: they leave the room at once, or
 * close with 4003. Every action is checked with may() (Authority.check), stored so it survives
 * restarts and holds on every instance, announced as a live `moderation` event, and audited.
 */
import type { Actor, Authority } from "./authority.ts";
import type { Connection } from "./connection.ts";
import type { Conns } from "./conns.ts";
import type { Context } from "./context.ts";
import type { Restriction, RoomAuth, ServerEvent, Store } from "./engine.ts";
import type { Fanout } from "./fanout.ts";
import type { Membership } from "./membership.ts";
import { MESSAGES, fail, ok, type Result } from "./protocol/rules.ts";
import {
  ADDRESS_BAN_DEFAULT_SECONDS,
  CLOSE,
  CLOSE_REASON,
  isRoom,
  type BanFrame,
  type KickFrame,
  type ModerationFrame,
  type MuteFrame,
  type UnbanFrame,
  type UserRef,
} from "./protocol/wire.ts";
import type { Relay } from "./engine.ts";
import type { RoomLog } from "./roomlog.ts";
import type { Users } from "./users.ts";
import type { Webhooks } from "./webhooks.ts";

type Args<F> = Omit<F, "type" | "ref">;
/** A moderation event about a room. */
type RoomModeration = ModerationFrame & { room: string };

export class Moderation {
  constructor(
    private readonly ctx: Context,
    private readonly store: Store,
    private readonly log: RoomLog,
    private readonly authority: Authority,
    private readonly membership: Membership,
    private readonly fanout: Fanout,
    private readonly relay: Relay,
    private readonly users: Users,
    private readonly conns: Conns,
    /** Tells of moderation (§11.7); null while webhooks are off. */
    private readonly webhooks: Webhooks | null = null,
  ) {}

  /**
   * The target of an action in a room: known to the room (or, `anyoneOnline`, online here), not
   * the actor, and of a lower rank (`forbidden` otherwise; `not_found` when unknown).
   */
  private async target(room: string, actor: Actor, userId: string, anyoneOnline: boolean): Promise<Result<{ auth: RoomAuth; user: UserRef }>> {
    if (!isRoom(room)) return fail("room_invalid", MESSAGES.roomInvalid);
    const auth = await this.log.auth(room);
    const user = await this.authority.known(room, auth, userId, anyoneOnline);
    if (!user) return fail("not_found", "no such user in this room");
    if (user.id === actor.ref.id) return fail("forbidden", "not on yourself");
    const denied = this.authority.check(auth, actor, "user.moderate", await this.authority.rankOf(auth, user.id));
    return denied ?? ok({ auth, user });
  }

  /** `kick` (§11.3): out of the room at once; from a private room, off its list too. */
  async kick(actor: Actor, frame: Args<KickFrame>): Promise<Result<null>> {
    const found = await this.target(frame.room, actor, frame.user, false);
    if (!found.ok) return found;
    const { auth, user } = found.value;
    const event: RoomModeration = { type: "moderation", room: frame.room, action: "kick", user, by: { ...actor.ref }, ...reason(frame.reason) };
    // Off a private room's list, the event is queued with that change; otherwise nothing is stored.
    if (auth.settings.private) await this.store.removeListed(frame.room, user.id, this.told(event));
    else this.webhooks?.live(event);
    this.apply(event, true);
    await this.audit(frame.room, actor, "kick", user, frame.reason);
    return ok(null);
  }

  /**
   * `ban` (§11.3): in a room, out of it until `seconds` pass or it is unbanned; without a room, or
   * with `address` (admins only), every connection of the user (and from its addresses) closes
   * with 4003 and its hellos are refused.
   */
  async ban(actor: Actor, frame: Args<BanFrame>): Promise<Result<null>> {
    const now = this.ctx.now();
    const by = { ...actor.ref };
    if (frame.room === undefined || frame.address) {
      if (!actor.admin) return fail("forbidden", "only admins ban from the whole server");
      if (frame.user === actor.ref.id) return fail("forbidden", "not on yourself");
      if (await this.authority.isAdmin(frame.user)) return fail("forbidden", "not over an admin");
      const seconds = frame.seconds ?? (frame.address ? ADDRESS_BAN_DEFAULT_SECONDS : null);
      const restriction: Restriction = { until: seconds === null ? null : now + seconds * 1000, by, ...reason(frame.reason) };
      // Online on another instance, it is named as it is there; offline, by its id.
      const user = (await this.authority.online(frame.user)) ?? { id: frame.user, name: frame.user };
      const event: ModerationFrame = { type: "moderation", action: "ban", user: { ...user }, by, ...until(restriction), ...reason(frame.reason) };
      await this.store.banServer(frame.user, restriction, undefined, this.told(event));
      await this.serverBan({ type: "ban", userId: frame.user, address: frame.address === true, restriction, frame: event });
      this.relay.broadcast({ type: "ban", userId: frame.user, address: frame.address === true, restriction, frame: event });
      await this.audit(frame.room ?? null, actor, "ban", user, frame.reason, restriction.until);
      return ok(null);
    }
    const found = await this.target(frame.room, actor, frame.user, true);
    if (!found.ok) return found;
    const restriction: Restriction = { until: frame.seconds === undefined ? null : now + frame.seconds * 1000, by, name: found.value.user.name, ...reason(frame.reason) };
    const event: RoomModeration = { type: "moderation", room: frame.room, action: "ban", user: found.value.user, by, ...until(restriction), ...reason(frame.reason) };
    await this.store.restrict("ban", frame.room, found.value.user.id, restriction, this.told(event));
    this.apply(event, true, restriction);
    await this.audit(frame.room, actor, "ban", found.value.user, frame.reason, restriction.until);
    return ok(null);
  }

  /** `unban` (§11.3): in a room (as `ban`), or server-wide with its addresses (admins). */
  async unban(actor: Actor, frame: Args<UnbanFrame>): Promise<Result<null>> {
    if (frame.room === undefined) {
      if (!actor.admin) return fail("forbidden", "only admins lift a server-wide ban");
      // Nobody of it is connected to hear it (its connections were closed): the webhook still tells, as it told the ban.
      const user = (await this.authority.online(frame.user)) ?? { id: frame.user, name: frame.user };
      await this.store.banServer(frame.user, null, undefined, this.told({ type: "moderation", action: "unban", user, by: { ...actor.ref } }));
      await this.audit(null, actor, "unban", user);
      return ok(null);
    }
    const found = await this.target(frame.room, actor, frame.user, true);
    if (!found.ok) return found;
    const event: RoomModeration = { type: "moderation", room: frame.room, action: "unban", user: found.value.user, by: { ...actor.ref } };
    await this.store.restrict("ban", frame.room, found.value.user.id, null, this.told(event));
    this.apply(event, true, null);
    await this.audit(frame.room, actor, "unban", found.value.user);
    return ok(null);
  }

  /** `mute` (§11.3): no sending in the room for `seconds`; 0 unmutes. */
  async mute(actor: Actor, frame: Args<MuteFrame>): Promise<Result<null>> {
    const found = await this.target(frame.room, actor, frame.user, true);
    if (!found.ok) return found;
    const { user } = found.value;
    const restriction = frame.seconds === 0 ? null : { until: this.ctx.now() + frame.seconds * 1000, by: { ...actor.ref }, name: user.name };
    const action = restriction ? "mute" : "unmute";
    const event: RoomModeration = { type: "moderation", room: frame.room, action, user, by: { ...actor.ref }, ...(restriction ? until(restriction) : {}) };
    await this.store.restrict("mute", frame.room, user.id, restriction, this.told(event));
    this.apply(event, true, restriction);
    await this.audit(frame.room, actor, action, user, undefined, restriction?.until);
    return ok(null);
  }

  /**
   * Carries out a room's moderation event here: the room hears it (and, `local`, the other
   * instances, which carry it out for their own connections), the cached rights follow, and a
   * kicked or banned user leaves the room at once.
   */
  apply(event: RoomModeration, local: boolean, restriction?: Restriction | null): void {
    const { room, action, user } = event;
    if (action === "role" && event.role) this.log.setRole(room, user, event.role);
    if (action === "ban" || action === "unban") this.log.restrict(room, "ban", user.id, action === "ban" ? (restriction ?? restrictionOf(event)) : null);
    if (action === "mute" || action === "unmute") this.log.restrict(room, "mute", user.id, action === "mute" ? (restriction ?? restrictionOf(event)) : null);
    this.fanout.moderation(event, local);
    if (action === "kick" || action === "ban") this.membership.evict(room, user, action === "kick" ? "kicked" : "banned");
  }

  /**
   * The room's rights were read again (RoomLog: on a catch-up, after the relay may have missed
   * events): the members here who are banned now, or who are off a private room's list, leave it as
   * a live ban or kick makes them (§11.4), on every instance whatever event it missed. The bans are
   * a Map read each; a private room's list is asked (one read each, at every catch-up: a reconnect,
   * the relay's tail check) only of its members here below moderator who hold no token for it (a
   * token lets them back in, as mayEnter does).
   */
  recheck(room: string, auth: RoomAuth): void {
    const here = this.membership.list(room, []);
    const stay: UserRef[] = [];
    for (const user of here) {
      if (this.authority.banned(auth, user.id)) this.membership.evict(room, user, "banned");
      else if (auth.settings.private) stay.push(user);
    }
    const asked = stay.filter((user) => {
      const conns = this.users.online.get(user.id)?.conns ?? [];
      const actor: Actor = { ref: user, admin: this.users.isAdmin(user.id), claimRooms: conns.flatMap((c) => c.claimRooms) };
      return this.authority.check(auth, actor, "room.enter") !== null && !actor.claimRooms.includes(room);
    });
    for (const user of asked) {
      void this.store.isListed(room, user.id).then(
        (listed) => listed || this.membership.evict(room, user, "kicked"),
        (error) => this.ctx.log("error", "storage", { error: String(error), op: "recheck", room }),
      );
    }
  }

  /**
   * Carries out a server-wide ban here: the user's connections (and, with `address`, every
   * connection from their addresses, which get banned too) hear it and close with 4003.
   */
  async serverBan(event: Extract<ServerEvent, { type: "ban" }>): Promise<void> {
    const own = [...this.users.connections(event.userId)];
    const doomed = new Set<Connection>(own);
    if (event.address) {
      const ips = new Set(own.map((c) => c.ip));
      for (const ip of ips) await this.store.banServer(event.userId, event.restriction, ip);
      for (const conn of this.conns.all()) if (ips.has(conn.ip)) doomed.add(conn);
    }
    for (const conn of doomed) this.closeBanned(conn, event.frame);
    // A user only in grace here (its connection dropped before) leaves its rooms now too.
    this.membership.endGracesOf(event.userId);
  }

  /**
   * After this instance may have missed server events (Relay: resubscribed): every connection
   * here whose user, or address, a stored server-wide ban holds for closes as that ban's event
   * would have closed it. Once per reconnect; one read per user and address, sent together (the
   * Redis connection pipelines them: one round trip).
   */
  async recheckServerBans(): Promise<void> {
    const now = this.ctx.now();
    const asked = new Map<string, { userId: string; ip: string; conns: Connection[] }>();
    for (const conn of this.conns.all()) {
      if (!conn.user) continue;
      const key = `${conn.user.ref.id}\n${conn.ip}`;
      const entry = asked.get(key) ?? { userId: conn.user.ref.id, ip: conn.ip, conns: [] };
      entry.conns.push(conn);
      asked.set(key, entry);
    }
    try {
      const found = [...asked.values()];
      const bans = await Promise.all(found.map((a) => this.store.serverBan(a.userId, a.ip, now)));
      found.forEach(({ userId, conns }, i) => {
        const ban = bans[i];
        if (!ban) return;
        for (const conn of conns) {
          // One that closed meanwhile hears nothing more.
          if (conn.state !== "open" || conn.released || !conn.user) continue;
          this.closeBanned(conn, { type: "moderation", action: "ban", user: { ...conn.user.ref }, by: ban.by, ...until(ban), ...reason(ban.reason) });
        }
        this.membership.endGracesOf(userId);
      });
    } catch (error) {
      this.ctx.log("warn", "storage", { error: String(error), op: "recheck_server_bans" });
    }
  }

  /** A connection of a server-wide ban: hears it, leaves its rooms, and closes with 4003. */
  private closeBanned(conn: Connection, frame: ModerationFrame): void {
    conn.moderated(frame);
    this.membership.drop(conn, true);
    conn.close(CLOSE.banned, CLOSE_REASON.banned);
  }

  /** The webhook events of a moderation action, for the store to queue in the commit of its change (§11.7). */
  private told(event: ModerationFrame) {
    return this.webhooks?.eventsOf(event);
  }

  /** The audit log's line for a moderation action. */
  private audit(room: string | null, actor: Actor, action: ModerationFrame["action"], user: UserRef, why?: string, until?: number | null): Promise<void> {
    return this.authority.audit({
      room,
      ts: this.ctx.now(),
      action,
      by: { ...actor.ref },
      user,
      ...(why ? { reason: why } : {}),
      ...(until !== undefined ? { until } : {}),
    });
  }
}

const reason = (why: string | undefined) => (why ? { reason: why } : {});
const until = (r: Restriction) => (r.until === null ? {} : { until: r.until });
/** A restriction as another instance's event tells it. */
const restrictionOf = (e: ModerationFrame): Restriction => ({ until: e.until ?? null, by: e.by, ...reason(e.reason) });
