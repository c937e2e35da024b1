/**
 * The Redis engine's storage: history, seq, dedup keys, sessions and the room directory, shared
 * by every instance. Each append runs the append script, which also publishes the message to
 * the room's channel: that publish is how it reaches sockets, on every instance alike (see
 * RedisRelay). Durability is Redis's: with `appendonly yes` and `appendfsync always` a message
 * is on disk before anyone sees it; `everysec` may lose the last second on a crash.
 */
import { ageCutoff, pageRows, toPage } from "../engine.ts";
import type { Appended, HistoryBounds, NewMessage, Page, PageQuery, RecentRoom, Store } from "../engine.ts";
import { HELD_KEY, RECENT_KEY, decodeMember, encodeMember, roomKeys, sessionKey } from "./keys.ts";
import type { RedisLink } from "./link.ts";
import { SCRIPTS } from "./scripts.ts";

/** Bounds the rooms Redis remembers for the room directory (`/api/rooms?recent=1`). */
const RECENT_ROOMS_KEPT = 1000;
/** Bounds the aged rooms one read of the sweep takes (it reads again until none are left). */
const SWEEP_ROOMS = 1000;
/** The room directory is read from Redis at most this often, however often it is polled. */
const DIRECTORY_CACHE_MS = 1000;

export class RedisStore implements Store {
  /** The last read of the directory, and until when it stands. */
  private recent: { until: number; limit: number; rooms: Promise<RecentRoom[]> } | null = null;

  constructor(
    private readonly link: RedisLink,
    private readonly bounds: HistoryBounds,
    /** The hub's clock: a session's expiry, given in its time, becomes the key's TTL. */
    private readonly now: () => number,
  ) {}

  /**
   * A repeat found by our own resend means the first send ran, and published: it is news to
   * everyone, the sender included, through the relay; so it is not reported as a duplicate.
   */
  private async appendOne(m: NewMessage, cutoff: number | null): Promise<Appended> {
    const keys = roomKeys(m.room);
    let resent = false;
    const [outcome, member]: [number, string?] = await this.link.run(
      SCRIPTS.append,
      [keys.seq, keys.log, keys.ids, RECENT_KEY, HELD_KEY],
      [
        `${m.user.id}\n${m.id}`, encodeMember(m), String(this.bounds.retain), keys.channel, String(m.ts), m.room,
        String(RECENT_ROOMS_KEPT), String(this.bounds.maxRooms), cutoff === null ? "" : String(cutoff),
      ],
      () => (resent = true),
    );
    if (outcome === 2) return { refused: "room_limit" };
    return { message: decodeMember(member!), duplicate: outcome === 1 && !resent };
  }

  /** Sent together (one pipelined write; Redis runs them in order), answered together. */
  append(batch: readonly NewMessage[]): Promise<Appended[]> {
    const cutoff = ageCutoff(batch, this.bounds);
    return Promise.all(batch.map((m) => this.appendOne(m, cutoff)));
  }

  async roomInfo(room: string) {
    const keys = roomKeys(room);
    const [seq, oldest] = await Promise.all([this.link.send("GET", [keys.seq]), this.link.send("ZRANGE", [keys.log, "0", "0"])]);
    return { seq: Number(seq ?? 0), oldestSeq: oldest?.[0] ? decodeMember(oldest[0]).seq : 0 };
  }

  async page(room: string, query: PageQuery): Promise<Page> {
    const log = roomKeys(room).log;
    const before = query.before === undefined ? "+inf" : `(${query.before}`;
    const n = String(pageRows(query));
    const members: string[] =
      query.after === undefined
        ? await this.link.send("ZREVRANGEBYSCORE", [log, before, "-inf", "LIMIT", "0", n])
        : await this.link.send("ZRANGEBYSCORE", [log, `(${query.after}`, before, "LIMIT", "0", n]);
    return toPage(members.map(decodeMember), query);
  }

  recentRooms(limit: number): Promise<RecentRoom[]> {
    const now = this.now();
    if (this.recent && this.recent.until > now && this.recent.limit === limit) return this.recent.rooms;
    const rooms = this.readRecent(limit);
    const entry = { until: now + DIRECTORY_CACHE_MS, limit, rooms };
    this.recent = entry;
    // A failed read is not kept: the next request asks again.
    rooms.catch(() => this.recent === entry && (this.recent = null));
    return rooms;
  }

  private async readRecent(limit: number): Promise<RecentRoom[]> {
    const rooms: string[] = await this.link.send("ZREVRANGE", [RECENT_KEY, "0", String(limit - 1)]);
    const entries = await Promise.all(
      rooms.map(async (room) => {
        const newest: string[] = await this.link.send("ZRANGE", [roomKeys(room).log, "-1", "-1"]);
        return newest[0] ? decodeMember(newest[0]) : null;
      }),
    );
    return entries.filter((m) => m !== null).map((m) => ({ room: m.room, seq: m.seq, ts: m.ts }));
  }

  async findSession(tokenHash: string, now: number) {
    const value: string | null = await this.link.send("GET", [sessionKey(tokenHash)]);
    if (!value) return null;
    const at = value.indexOf(" ");
    const expiresAt = Number(value.slice(0, at));
    return expiresAt > now ? { userId: value.slice(at + 1), expiresAt } : null;
  }

  /**
   * Redis forgets it when it expires (a new session a day after it was made, until it is used
   * again); the expiry stored with it is what counts, on the hub's clock.
   */
  async saveSession(tokenHash: string, userId: string, expiresAt: number) {
    const ttlMs = Math.max(1, expiresAt - this.now());
    await this.link.send("SET", [sessionKey(tokenHash), `${expiresAt} ${userId}`, "PX", String(ttlMs)]);
  }

  /** Redis expires sessions by itself. */
  async sweepSessions(_now: number) {
    return 0;
  }

  /**
   * HELD_KEY names the rooms whose oldest message is too old; each is trimmed by its own
   * script, which moves it out of that range (or out of the index), so each read finds fewer.
   */
  async sweepHistory(now: number) {
    if (!this.bounds.maxAgeMs) return 0;
    const cutoff = now - this.bounds.maxAgeMs;
    let trimmed = 0;
    const reads = Math.ceil(Number(await this.link.send("ZCARD", [HELD_KEY])) / SWEEP_ROOMS) + 1;
    for (let read = 0; read < reads; read++) {
      const rooms: string[] = await this.link.send("ZRANGEBYSCORE", [HELD_KEY, "-inf", `(${cutoff}`, "LIMIT", "0", String(SWEEP_ROOMS)]);
      if (!rooms.length) break;
      const counts = await Promise.all(
        rooms.map((room) => {
          const keys = roomKeys(room);
          return this.link.run(SCRIPTS.trim, [keys.log, keys.ids, HELD_KEY], [room, String(cutoff)]);
        }),
      );
      for (const n of counts) trimmed += Number(n);
    }
    return trimmed;
  }

  /** Redis's own failures show as the link being down (Relay.health). */
  failure(): null {
    return null;
  }

  async close() {
    this.link.close();
  }
}
