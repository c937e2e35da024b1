/**
 * Who is in which room on this instance, with presence grace (§4, §10): one entry per user, its
 * live connections, and when a dropped user's grace ends. Pure: callers pass the time and
 * announce what the methods return.
 */
import type { UserRef } from "../protocol/wire.ts";
import { removeItem } from "./list.ts";

interface Member<C> {
  user: UserRef;
  /** The user's live connections in the room; none while in grace. */
  conns: C[];
  /** When the grace ends (epoch ms); 0 while live. */
  graceUntil: number;
}

/**
 * Who is in which room: one entry per user, however many of its connections are in the room
 * (§10). When the user's last connection there drops, the entry stays, in grace, for `graceMs`;
 * if the user joins again in time, nobody sees it leave or come back. Pure: callers pass the
 * time and announce what the methods return.
 */
export class Presence<C> {
  private readonly rooms = new Map<string, Map<string, Member<C>>>();
  private readonly roomsOf = new Map<string, string[]>();
  /** Grace deadlines in the order they end: graceMs is fixed, so appending keeps it sorted. */
  private readonly graces: { room: string; userId: string; until: number }[] = [];
  private graceHead = 0;

  constructor(private readonly graceMs: number) {}

  /**
   * "new" → announce a join; "returned" → back from grace, announce nothing; "again" → the user
   * was already in the room through this or another live connection: no change to announce.
   */
  join(room: string, user: UserRef, conn: C): "new" | "returned" | "again" {
    const member = this.rooms.get(room)?.get(user.id);
    if (member) {
      const returned = member.conns.length === 0;
      if (!member.conns.includes(conn)) member.conns.push(conn);
      member.graceUntil = 0;
      member.user = user;
      return returned ? "returned" : "again";
    }
    this.add(room, { user, conns: [conn], graceUntil: 0 });
    return "new";
  }

  /**
   * `conn` leaves explicitly (no grace). True when that was the user's last connection in the
   * room: the user is no longer a member (announce the leave).
   */
  leave(room: string, userId: string, conn: C): boolean {
    const member = this.rooms.get(room)?.get(userId);
    if (!member || !removeItem(member.conns, conn)) return false;
    if (member.conns.length > 0) return false;
    this.remove(room, userId);
    return true;
  }

  /**
   * The user is sent out of the room (kicked, banned: §11.4), live or in grace, at once. Returns
   * its connections that were in the room, or null when it was no member.
   */
  evict(room: string, userId: string): C[] | null {
    const member = this.rooms.get(room)?.get(userId);
    if (!member) return null;
    this.remove(room, userId);
    return member.conns;
  }

  /**
   * `conn` is gone. Where it was the user's last connection in a room, the membership enters
   * grace, or ends at once when `immediate` or graceMs is 0. Returns the rooms left at once.
   */
  drop(conn: C, userId: string, rooms: Iterable<string>, now: number, immediate: boolean): string[] {
    const left: string[] = [];
    for (const room of rooms) {
      const member = this.rooms.get(room)?.get(userId);
      if (!member || !removeItem(member.conns, conn) || member.conns.length > 0) continue;
      if (immediate || this.graceMs === 0) {
        this.remove(room, userId);
        left.push(room);
      } else {
        member.graceUntil = now + this.graceMs;
        this.graces.push({ room, userId, until: member.graceUntil });
      }
    }
    return left;
  }

  /**
   * The user's graces end now (in room `only`, or in every room): it will not come back to them (it
   * signed out, or is banned from the server), or it left for good elsewhere. Returns the leaves
   * to announce; rooms where a connection of the user is still in are kept.
   */
  endGraces(userId: string, only?: string): { room: string; user: UserRef }[] {
    const ended: { room: string; user: UserRef }[] = [];
    for (const room of only === undefined ? this.roomsOfUser(userId) : [only]) {
      const member = this.rooms.get(room)?.get(userId);
      if (!member || member.conns.length > 0) continue;
      this.remove(room, userId);
      ended.push({ room, user: member.user });
    }
    return ended;
  }

  /**
   * `user` comes over from an instance that died: a member in grace here, as if its connection
   * had just dropped, unless it is a member already. "gone" when there is no grace (leave now).
   */
  adopt(room: string, user: UserRef, now: number): "grace" | "gone" | "member" {
    if (this.has(room, user.id)) return "member";
    if (this.graceMs === 0) return "gone";
    this.add(room, { user, conns: [], graceUntil: now + this.graceMs });
    this.graces.push({ room, userId: user.id, until: now + this.graceMs });
    return "grace";
  }

  /** Ends the graces due by `now`; returns the leaves to announce. */
  expire(now: number): { room: string; user: UserRef }[] {
    const ended: { room: string; user: UserRef }[] = [];
    while (this.graceHead < this.graces.length) {
      const grace = this.graces[this.graceHead]!;
      if (grace.until > now) break;
      this.graceHead++;
      const member = this.graceOf(grace);
      // A member who came back, or dropped again later, is not this grace's to end.
      if (!member) continue;
      this.remove(grace.room, grace.userId);
      ended.push({ room: grace.room, user: member.user });
    }
    if (this.graceHead > 1024 && this.graceHead * 2 > this.graces.length) {
      this.graces.splice(0, this.graceHead);
      this.graceHead = 0;
    }
    return ended;
  }

  /**
   * When the next grace ends, or null if none is running. A deadline at the head that is nobody's
   * grace any more (its user came back) can never be again, a later drop having its own: it is
   * passed for good, so a reconnect storm does not rescan it on every close.
   */
  nextExpiry(): number | null {
    for (; this.graceHead < this.graces.length; this.graceHead++) {
      const grace = this.graces[this.graceHead]!;
      if (this.graceOf(grace)) return grace.until;
    }
    return null;
  }

  /** Every member once, those in grace included. */
  members(room: string): UserRef[] {
    return [...(this.rooms.get(room)?.values() ?? [])].map((m) => m.user);
  }

  /** True while the user is a member of `room` only through grace (none of its connections is in it). */
  inGrace(room: string, userId: string): boolean {
    return this.rooms.get(room)?.get(userId)?.conns.length === 0;
  }

  has(room: string, userId: string): boolean {
    return this.rooms.get(room)?.has(userId) ?? false;
  }

  count(room: string): number {
    return this.rooms.get(room)?.size ?? 0;
  }

  /** True while the user is in some room, live or in grace. */
  isMember(userId: string): boolean {
    return this.roomsOf.has(userId);
  }

  /** The rooms the user is in, live or in grace. */
  roomsOfUser(userId: string): string[] {
    return [...(this.roomsOf.get(userId) ?? [])];
  }

  /** How many rooms have at least one member (O(1), for /healthz). */
  get roomCount(): number {
    return this.rooms.size;
  }

  /** Rooms with at least one member, with their member counts. */
  active(): { room: string; members: number }[] {
    return [...this.rooms].map(([room, members]) => ({ room, members: members.size }));
  }

  private graceOf(grace: { room: string; userId: string; until: number }): Member<C> | null {
    const member = this.rooms.get(grace.room)?.get(grace.userId);
    return member && member.conns.length === 0 && member.graceUntil === grace.until ? member : null;
  }

  private add(room: string, member: Member<C>): void {
    let members = this.rooms.get(room);
    if (!members) this.rooms.set(room, (members = new Map()));
    members.set(member.user.id, member);
    // Not a member of `room` until now, so the room is not in its list yet.
    const rooms = this.roomsOf.get(member.user.id);
    if (rooms) rooms.push(room);
    else this.roomsOf.set(member.user.id, [room]);
  }

  private remove(room: string, userId: string): void {
    const members = this.rooms.get(room);
    if (!members?.delete(userId)) return;
    if (members.size === 0) this.rooms.delete(room);
    const rooms = this.roomsOf.get(userId);
    if (rooms && removeItem(rooms, room) && rooms.length === 0) this.roomsOf.delete(userId);
  }
}

