/**
 * Who is in which room, here and on every instance, and when the others are told (§4, §10): a
 * join goes out when the user is new to the room everywhere; a leave after the user's last
 * words, when it is in the room nowhere else, at once for an explicit leave and after presence
 * grace for a drop; a rename after the messages sent under the old name.
 */
import type { Connection, User } from "./connection.ts";
import type { Context } from "./context.ts";
import { removeItem } from "./core/list.ts";
import type { Presence } from "./core/presence.ts";
import type { Roster, RoomEvent } from "./engine.ts";
import type { Fanout } from "./fanout.ts";
import type { Batcher } from "./batcher.ts";
import type { RoomLog } from "./roomlog.ts";
import type { Users } from "./users.ts";
import type { LeftReason, PresenceFrame, TypingNotice, UserRef } from "./protocol/wire.ts";
import type { Webhooks } from "./webhooks.ts";

/** A join under way (Membership.willEnter). */
export interface Entering {
  readonly userId: string;
  /** The user was kicked or banned from the room since the join checked its rights. */
  removed: boolean;
}

export class Membership {
  /** Roster changes of one user in one room, in the order they were made (room\nuserId → last). */
  private readonly chains = new Map<string, Promise<unknown>>();
  /**
   * Joins and leaves (room\nuserId) the roster did not take (the engine was away): nobody here
   * heard of them either; `reconcile` puts them in and tells.
   */
  private readonly untold = new Set<string>();
  private graceTimer: ReturnType<typeof setTimeout> | null = null;
  private graceAt = Infinity;
  /** Joins under way (rights checked, not entered yet), by room: a kick or ban meanwhile marks them. */
  private readonly entering = new Map<string, Set<Entering>>();

  constructor(
    private readonly ctx: Context,
    readonly presence: Presence<Connection>,
    private readonly roster: Roster,
    private readonly fanout: Fanout,
    private readonly batcher: Batcher,
    private readonly log: RoomLog,
    private readonly users: Users,
    /** Hears the joins and leaves this instance announces (§11.7); null while webhooks are off. */
    private readonly webhooks: Webhooks | null = null,
  ) {}

  /**
   * A join of `userId` to `room` begins: until `entered`, a kick or ban of the user there marks it
   * `removed`, so the join checks the user's rights again rather than enter on the old answer.
   */
  willEnter(room: string, userId: string): Entering {
    const entry: Entering = { userId, removed: false };
    let joins = this.entering.get(room);
    if (!joins) this.entering.set(room, (joins = new Set()));
    joins.add(entry);
    return entry;
  }

  /** The join `entry` is over (entered or not). */
  entered(room: string, entry: Entering): void {
    const joins = this.entering.get(room);
    joins?.delete(entry);
    if (joins?.size === 0) this.entering.delete(room);
  }

  /**
   * `conn` enters `room` (its `joined` is on its way): its user is "new" to the room here,
   * "returned" from grace, or in "again" through another connection (Presence.join).
   */
  enter(room: string, user: UserRef, conn: Connection): "new" | "returned" | "again" {
    return this.presence.join(room, user, conn);
  }

  /**
   * Tells the roster the user is in the room here, new or returned from grace, and announces a
   * join once that makes it new to the room on every instance; the joiner does not hear it. One
   * returned is announced only when an explicit leave elsewhere ended its grace meanwhile.
   */
  announceJoin(room: string, user: UserRef, joiner: Connection, entry: "new" | "returned"): void {
    const ref = { ...user };
    this.inOrder(room, ref.id, () => (entry === "new" ? this.roster.add(room, ref) : this.roster.back(room, ref)))
      .then((fresh) => {
        if (!fresh) return;
        this.fanout.presence(room, "join", ref, undefined, joiner);
        this.webhooks?.live({ type: "presence", room, event: "join", user: ref });
      })
      .catch((error) => {
        this.untold.add(`${room}\n${ref.id}`);
        this.ctx.log("error", "storage", { error: String(error), op: "roster.add", room });
      });
  }

  /**
   * `conn` leaves `room` explicitly: no grace, and only this connection (§10). Resolves with a
   * leave under way when that was the user's last connection in the room (see `leaveRoom`).
   */
  exit(room: string, user: User, conn: Connection): Promise<void> | null {
    if (!this.presence.leave(room, user.ref.id, conn)) return null;
    user.typingAt?.delete(room);
    return this.leaveRoom(room, user.ref, true);
  }

  /**
   * The leave sequence, the one for every way of leaving: put in line now (so a join of the same
   * user that follows waits for it), it goes out after the messages the user sent before it, and
   * only when the user is in the room on no other instance. Then the room may be forgotten. An
   * `explicit` leave (§10: at once) ends the user's graces in the room on the other instances too.
   */
  private leaveRoom(room: string, user: UserRef, explicit = false): Promise<void> {
    const ref = { ...user };
    return this.inOrder(room, ref.id, async () => {
      await this.batcher.settled();
      return this.roster.remove(room, ref, explicit);
    })
      .then(
        (last) => {
          if (!last) return;
          this.fanout.presence(room, "leave", ref);
          this.webhooks?.live({ type: "presence", room, event: "leave", user: ref });
        },
        (error) => {
          this.untold.add(`${room}\n${ref.id}`);
          this.ctx.log("error", "storage", { error: String(error), op: "roster.remove", room });
        },
      )
      .finally(() => this.log.forgetIfEmpty(room));
  }

  /**
   * Takes a closed or replaced connection out of its rooms and away from its user. Where it was
   * the user's last connection in a room, the user stays in grace; a TCP user has no session to
   * come back with, and a signed-out one will not come back, so their leaves go out at once (§4,
   * `immediate`). Idempotent.
   */
  drop(conn: Connection, immediate = false): void {
    if (conn.released) return;
    conn.released = true;
    if (conn.helloTimer) clearTimeout(conn.helloTimer);
    const user = conn.user;
    if (!user) return;
    removeItem(user.conns, conn);
    for (const room of conn.rooms) this.fanout.unsubscribe(conn, room);
    const leftNow = this.presence.drop(conn, user.ref.id, conn.rooms, this.ctx.now(), immediate || conn.transport === "tcp");
    for (const room of leftNow) void this.leaveRoom(room, user.ref);
    for (const room of conn.rooms) if (this.presence.inGrace(room, user.ref.id)) this.graced(room, user.ref);
    conn.rooms.length = 0;
    this.users.forgetIfOffline(user);
    this.scheduleGrace();
  }

  /**
   * `userId` will not come back to its graces here: it signed out (§11.1), or is banned from the
   * server (§11.4). Once it has no live connection here, the rooms it is in only through grace
   * (a connection that dropped earlier) hear it leave at once, as for an explicit leave, and it is
   * forgotten, its name freed. A user still connected here keeps them: nothing says which of its
   * sessions the grace was for.
   */
  endGracesOf(userId: string): void {
    if (this.users.connections(userId).length > 0) return;
    this.graceOver(userId);
  }

  /** The user's graces here end now (in `room`, or in every room): each a leave, then the user may be forgotten. */
  private graceOver(userId: string, room?: string): void {
    for (const ended of this.presence.endGraces(userId, room)) void this.leaveRoom(ended.room, ended.user);
    const user = this.users.online.get(userId);
    if (user) this.users.forgetIfOffline(user);
  }

  /** Marks the user's membership of `room` here as in grace, for the roster (an explicit leave elsewhere ends it). */
  private graced(room: string, user: UserRef): void {
    const ref = { ...user };
    this.inOrder(room, ref.id, () => this.roster.graced(room, ref)).catch((error) =>
      this.ctx.log("error", "storage", { error: String(error), op: "roster.graced", room }),
    );
  }

  /**
   * A moderator sent `user` out of `room` (§11.4): its connections here leave it at once, each
   * told why, and the room hears it leave at once (no grace) once it is in the room nowhere else.
   */
  evict(room: string, user: UserRef, reason: LeftReason): void {
    for (const join of this.entering.get(room) ?? []) if (join.userId === user.id) join.removed = true;
    const conns = this.presence.evict(room, user.id);
    if (!conns) return;
    for (const conn of conns) {
      removeItem(conn.rooms, room);
      this.fanout.unsubscribe(conn, room);
      conn.removedFrom(room, reason);
    }
    const online = this.users.online.get(user.id);
    online?.typingAt?.delete(room);
    void this.leaveRoom(room, user);
    if (online) this.users.forgetIfOffline(online);
  }

  /** Every room the user is in hears its new name, after the messages it sent under the old one. */
  renamed(user: User, oldName: string): void {
    const renamed = { ...user.ref };
    const version = user.nameVersion;
    const rooms = this.presence.roomsOfUser(renamed.id);
    if (rooms.length === 0) return;
    void this.batcher.settled().then(() => {
      for (const room of rooms) this.fanout.presence(room, "rename", renamed, oldName);
    });
    for (const room of rooms) {
      this.inOrder(room, renamed.id, async () => {
        await this.batcher.settled();
        await this.roster.rename(room, renamed, oldName, version);
      }).catch((error) => this.ctx.log("error", "storage", { error: String(error), op: "roster.rename", room }));
    }
  }

  /** A presence change or typing from another instance, for the members here. */
  event(event: RoomEvent & { frame: PresenceFrame | TypingNotice }): void {
    const frame = event.frame;
    if (frame.type === "typing") return this.fanout.typed(frame, this.users.online.get(frame.user.id)?.conns ?? []);
    this.fanout.presence(frame.room, frame.event, frame.user, event.oldName);
    // Gone from the room everywhere, by an explicit leave that ended its graces (roster.remove):
    // its grace here is over too, or the members here would still see it until it ended.
    if (frame.event === "leave") this.graceOver(frame.user.id, frame.room);
  }

  /** A dead instance's member of `room`, taken over by this one: in grace (with its rank), then gone unless it is back. */
  adopt(room: string, user: UserRef, admin: boolean): void {
    const verdict = this.presence.adopt(room, user, this.ctx.now());
    if (verdict === "gone") void this.leaveRoom(room, user);
    else if (verdict === "grace") {
      this.users.holdInGrace(user, admin);
      this.scheduleGrace();
    }
  }

  /** A user here was renamed on another instance: its connections here take the name (if it is the later one). */
  renamedElsewhere(userId: string, name: string, version: number): void {
    this.users.renamedElsewhere(userId, name, version);
  }

  /**
   * A user here lost its name to one who held it first (issue 21: 2): it takes another, which
   * every room it is in hears as a rename, and each of its connections is told why.
   */
  nameLost(userId: string, name: string): void {
    void this.users
      .takeFallbackName(userId, name)
      .then((taken) => {
        if (!taken) return;
        this.ctx.log("info", "name_lost", { user: userId, name, now: taken.user.ref.name });
        this.renamed(taken.user, taken.oldName);
        for (const conn of taken.user.conns) conn.renamedByServer(taken.user.ref, taken.oldName);
      })
      .catch((error) => this.ctx.log("error", "storage", { error: String(error), op: "nameLost" }));
  }

  /** The roster lost this instance's members (it was taken for dead): tell it again who is here. */
  lost(): void {
    for (const { room } of this.presence.active()) {
      for (const user of this.presence.members(room)) {
        this.inOrder(room, user.id, () => this.register(room, user)).catch((error) =>
          this.ctx.log("error", "storage", { error: String(error), op: "roster.add", room }),
        );
      }
    }
  }

  /**
   * Registers this instance's presence again, replacing what the roster holds of it (issue 21:
   * 5): every member here is added, every member the roster holds for this instance and that is
   * not here is removed. Each step is idempotent and queued behind the user's other changes in
   * the room, so it acts on presence as it is when it runs. The others hear the joins and leaves
   * they missed; the members here hear those nobody here was told of. With `reset` (the engine
   * lost its data) the sessions of the users here are stored again too (issue 21: 3).
   */
  async reconcile(reset: boolean): Promise<void> {
    const registered = await this.roster.mine();
    const users = new Map<string, UserRef[]>();
    for (const { room } of this.presence.active()) users.set(room, this.presence.members(room));
    for (const [room, refs] of registered) {
      const here = users.get(room) ?? [];
      users.set(room, here.concat(refs.filter((u) => !this.presence.has(room, u.id))));
    }
    const steps: Promise<unknown>[] = [];
    for (const [room, refs] of users) {
      for (const user of refs) {
        const key = `${room}\n${user.id}`;
        steps.push(
          this.inOrder(room, user.id, async () => {
            const here = this.presence.has(room, user.id);
            const ref = here ? this.presence.members(room).find((u) => u.id === user.id)! : user;
            const changed = here ? await this.register(room, ref) : await this.roster.remove(room, ref);
            if (changed && this.untold.has(key)) this.fanout.presence(room, here ? "join" : "leave", ref);
            this.untold.delete(key);
          }).catch((error) => this.ctx.log("error", "storage", { error: String(error), op: "reconcile", room })),
        );
      }
    }
    if (reset) steps.push(this.users.saveLiveSessions());
    await Promise.all(steps);
  }

  /** Registers a member here with the roster again, as live or, if it is, in grace; true when that is a join to announce. */
  private async register(room: string, user: UserRef): Promise<boolean> {
    const fresh = await this.roster.add(room, user);
    if (this.presence.inGrace(room, user.id)) await this.roster.graced(room, user);
    return fresh;
  }

  /** Every member of `room` once: those here, then those only on other instances. */
  list(room: string, others: UserRef[]): UserRef[] {
    const here = this.presence.members(room);
    return others.length ? here.concat(others.filter((u) => !this.presence.has(room, u.id))) : here;
  }

  /** Every member of `room` once, on every instance. */
  async members(room: string): Promise<UserRef[]> {
    return this.list(room, await this.roster.others(room));
  }

  /** Resolves once the roster changes under way are done (before the engine closes). */
  async settled(): Promise<void> {
    await Promise.all(this.chains.values());
  }

  /** Runs roster changes for one user and room one after another, so the roster sees them in order. */
  private inOrder<T>(room: string, userId: string, op: () => Promise<T>): Promise<T> {
    const key = `${room}\n${userId}`;
    const result = (this.chains.get(key) ?? Promise.resolve()).then(op);
    const tail = result.catch(() => {});
    this.chains.set(key, tail);
    void tail.then(() => this.chains.get(key) === tail && this.chains.delete(key));
    return result;
  }

  private scheduleGrace(): void {
    const next = this.presence.nextExpiry();
    if (next === null || next >= this.graceAt) return;
    if (this.graceTimer) clearTimeout(this.graceTimer);
    this.graceAt = next;
    this.graceTimer = setTimeout(() => this.endGraces(), Math.max(1, next - this.ctx.now()));
  }

  private endGraces(): void {
    this.graceTimer = null;
    this.graceAt = Infinity;
    for (const { room, user } of this.presence.expire(this.ctx.now())) {
      void this.leaveRoom(room, user);
      const online = this.users.online.get(user.id);
      if (online) this.users.forgetIfOffline(online);
    }
    this.scheduleGrace();
  }

  dispose(): void {
    if (this.graceTimer) clearTimeout(this.graceTimer);
    this.graceTimer = null;
  }
}
