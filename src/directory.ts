/**
 * The room lists of `GET /api/rooms` and the TCP door's `/rooms`: rooms with members, busiest
 * first, and the rooms with the newest messages. Rooms watched here answer from memory; the
 * engine answers the rest (with Redis, at most once a second however often this is polled).
 */
import type { Connection } from "./connection.ts";
import type { Presence } from "./core/presence.ts";
import type { Roster, RoomCount, Store } from "./engine.ts";
import type { RoomLog } from "./roomlog.ts";

/** Bounds the room directory (`/api/rooms?recent=1`). */
const RECENT_ROOMS_MAX = 50;
/** Rooms more read for the directory, so that private rooms left out leave it full. */
const PRIVATE_ROOMS_SKIPPED_MAX = 50;
/** A room not watched here has its seq read from storage at most this often, however often the list is polled. */
const UNWATCHED_SEQ_CACHE_MS = 1000;
/** Bounds a page of the rooms with members (`/api/rooms?limit=`), and the page asked for without a limit. */
export const ROOMS_PAGE_MAX = 1000;
export const ROOMS_PAGE_DEFAULT = 100;
/**
 * The rooms with members are counted and sorted at most this often (by the server's clock),
 * however often they are asked for: a page costs its own rooms, not all of them (issue 21: 13).
 */
const ROOMS_VIEW_MS = 1000;

/** A room directory entry: members online, latest seq, and when its latest message was sent. */
export interface RoomEntry {
  room: string;
  members: number;
  seq: number;
  ts?: number;
}

/** A page of the rooms with members, and where the next one starts (null on the last). */
export interface RoomsPage {
  rooms: RoomEntry[];
  next: string | null;
}

/**
 * Where a page of the busiest rooms starts: just after the room `room` with `members` members, in
 * the list's order (most members first, then by name). Written `members.room`, which a room name
 * (no dot) keeps apart; clients pass it back as they got it.
 *   parseRoomsCursor("3.general") // => { members: 3, room: "general" }
 */
export function parseRoomsCursor(cursor: string): RoomCount | null {
  const m = /^(\d{1,9})\.([a-z0-9][a-z0-9_-]{0,31})$/.exec(cursor);
  return m ? { members: Number(m[1]), room: m[2]! } : null;
}

const cursorOf = (r: RoomCount) => `${r.members}.${r.room}`;

/** The list's order: most members first, then by name (code units: room names are ASCII). */
function busiestFirst(a: RoomCount, b: RoomCount): number {
  return b.members - a.members || (a.room < b.room ? -1 : a.room > b.room ? 1 : 0);
}

/** The index of the first entry of `sorted` that comes after `cursor` (binary search). */
function after(sorted: readonly RoomCount[], cursor: RoomCount): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (busiestFirst(sorted[mid]!, cursor) <= 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

export class Directory {
  /** Seqs of rooms not watched here, and until when each stands. */
  private readonly seqs = new Map<string, { until: number; seq: Promise<number> }>();
  /** The rooms with members on every instance, busiest first, and when they were counted. */
  private view: { at: number; source: RoomCount[]; sorted: Promise<RoomCount[]> } | null = null;

  constructor(
    private readonly now: () => number,
    private readonly store: Store,
    private readonly roster: Roster,
    private readonly presence: Presence<Connection>,
    private readonly log: RoomLog,
  ) {}

  /**
   * A page of the rooms with members on any instance, busiest first, with their latest seq; private
   * ones only `withPrivate`. `cursor` (a page's `next`) starts it after the room it names.
   */
  async rooms(withPrivate: boolean, limit = ROOMS_PAGE_DEFAULT, cursor: RoomCount | null = null): Promise<RoomsPage> {
    const [sorted, hidden] = await Promise.all([this.sorted(), this.hidden(withPrivate)]);
    const page: RoomCount[] = [];
    let at = cursor ? after(sorted, cursor) : 0;
    for (; at < sorted.length && page.length < limit; at++) if (!hidden.has(sorted[at]!.room)) page.push(sorted[at]!);
    this.forgetSeqs();
    const rooms = await Promise.all(page.map(async (r) => ({ ...r, seq: this.log.watchedSeq(r.room) ?? (await this.storedSeq(r.room)) })));
    return { rooms, next: at < sorted.length && page.length ? cursorOf(page.at(-1)!) : null };
  }

  /** The rooms with members, busiest first: counted and sorted again at most every ROOMS_VIEW_MS. */
  private sorted(): Promise<RoomCount[]> {
    const now = this.now();
    const view = this.view;
    if (view && now - view.at < ROOMS_VIEW_MS) return view.sorted;
    const sorted = this.roster.active(() => this.presence.active()).then((all) => {
      // The engine's own cache gave the same list: it is sorted already.
      if (view && all === view.source) return view.sorted;
      entry.source = all;
      return [...all].sort(busiestFirst);
    });
    const entry = { at: now, source: view?.source ?? [], sorted };
    this.view = entry;
    // A failed read is not kept: the next request asks again.
    sorted.catch(() => this.view === entry && (this.view = null));
    return sorted;
  }

  /** Rooms with the newest messages, newest first, with their members on any instance; private ones only `withPrivate`. */
  async recentRooms(withPrivate: boolean): Promise<RoomEntry[]> {
    const [recent, active, hidden] = await Promise.all([
      this.store.recentRooms(RECENT_ROOMS_MAX + (withPrivate ? 0 : PRIVATE_ROOMS_SKIPPED_MAX)),
      this.roster.active(() => this.presence.active()),
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
