/**
 * The room lists of `GET /api/rooms` and the TCP door's `/rooms`: rooms with members, busiest
 * first, and the rooms with the newest messages. Rooms watched here answer from memory; the
 * engine answers the rest (with Redis, at most once a second however often this is polled).
 */
import type { Connection } from "./connection.ts";
import type { Presence } from "./core/presence.ts";
import type { Roster, Store } from "./engine.ts";
import type { RoomLog } from "./roomlog.ts";

/** Bounds the room directory (`/api/rooms?recent=1`). */
const RECENT_ROOMS_MAX = 50;
/** Rooms more read for the directory, so that private rooms left out leave it full. */
const PRIVATE_ROOMS_SKIPPED_MAX = 50;
/** A room not watched here has its seq read from storage at most this often, however often the list is polled. */
const UNWATCHED_SEQ_CACHE_MS = 1000;

/** A room directory entry: members online, latest seq, and when its latest message was sent. */
export interface RoomEntry {
  room: string;
  members: number;
  seq: number;
  ts?: number;
}

export class Directory {
  /** Seqs of rooms not watched here, and until when each stands. */
  private readonly seqs = new Map<string, { until: number; seq: Promise<number> }>();

  constructor(
    private readonly now: () => number,
    private readonly store: Store,
    private readonly roster: Roster,
    private readonly presence: Presence<Connection>,
    private readonly log: RoomLog,
  ) {}

  /** Rooms with members on any instance, busiest first, with their latest seq; private ones only `withPrivate`. */
  async rooms(withPrivate: boolean): Promise<RoomEntry[]> {
    const [all, hidden] = await Promise.all([this.roster.active(this.presence.active()), this.hidden(withPrivate)]);
    const active = all.filter((r) => !hidden.has(r.room)).sort((a, b) => b.members - a.members || a.room.localeCompare(b.room));
    this.forgetSeqs();
    return Promise.all(active.map(async (r) => ({ ...r, seq: this.log.watchedSeq(r.room) ?? (await this.storedSeq(r.room)) })));
  }

  /** Rooms with the newest messages, newest first, with their members on any instance; private ones only `withPrivate`. */
  async recentRooms(withPrivate: boolean): Promise<RoomEntry[]> {
    const [recent, active, hidden] = await Promise.all([
      this.store.recentRooms(RECENT_ROOMS_MAX + (withPrivate ? 0 : PRIVATE_ROOMS_SKIPPED_MAX)),
      this.roster.active(this.presence.active()),
      this.hidden(withPrivate),
    ]);
    const members = new Map(active.map((r) => [r.room, r.members]));
    return recent
      .filter((r) => !hidden.has(r.room))
      .slice(0, RECENT_ROOMS_MAX)
      .map((r) => ({ room: r.room, members: members.get(r.room) ?? 0, seq: r.seq, ts: r.ts }));
  }

  /** The rooms a list leaves out: the private ones, unless it is an admin's. */
  private hidden(withPrivate: boolean): Promise<Set<string>> {
    return withPrivate ? Promise.resolve(new Set()) : this.store.privateRooms();
  }

  private storedSeq(room: string): Promise<number> {
    const now = this.now();
    const known = this.seqs.get(room);
    if (known && known.until > now) return known.seq;
    const seq = this.store.roomInfo(room).then((info) => info.seq);
    const entry = { until: now + UNWATCHED_SEQ_CACHE_MS, seq };
    this.seqs.set(room, entry);
    // A failed read is not kept: the next request asks again.
    seq.catch(() => this.seqs.get(room) === entry && this.seqs.delete(room));
    return seq;
  }

  /** Drops the seqs that no longer stand, so the cache holds only rooms asked about lately. */
  private forgetSeqs(): void {
    const now = this.now();
    for (const [room, entry] of this.seqs) if (entry.until <= now) this.seqs.delete(room);
  }
}
