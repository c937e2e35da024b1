/**
 * The Redis engine's storage: history, seq, dedup keys, sessions and the room directory, shared
 * by every instance. Each append runs the append script, which also publishes the message to
 * the room's channel: that publish is how it reaches sockets, on every instance alike (see
 * RedisRelay). Durability is Redis's: with `appendonly yes` and `appendfsync always` a message
 * is on disk before anyone sees it; `everysec` may lose the last second on a crash.
 */
import { randomId } from "../core/random.ts";
import { ageCutoff, newHookId, pageRows, toPage } from "../engine.ts";
import { holds } from "../engine.ts";
import type {
  Appended,
  AuditEntry,
  BotRecord,
  HistoryBounds,
  HookEvent,
  NewEntry,
  Outbox,
  OutboxBounds,
  Page,
  PageQuery,
  RecentRoom,
  Restriction,
  RoleHolder,
  RoomAuth,
  SessionRecord,
  Store,
} from "../engine.ts";
import { DEFAULT_SETTINGS, type Role, type StoredFrame, type UserRef } from "../protocol/wire.ts";
import { RedisOutbox } from "./hooks.ts";
import {
  ACTIVE_KEY,
  AUDIT_ID_KEY,
  BOTS_KEY,
  botTokenKey,
  HOOK_KEYS,
  HELD_KEY,
  HELD_NEWEST_KEY,
  LAPSING_KEY,
  addressBanKey,
  auditKey,
  bannedAddressesKey,
  userBanKey,
  PRIVATE_KEY,
  RECENT_KEY,
  ROOM_KEY_PREFIX,
  authKeys,
  decodeMember,
  encodeMember,
  inviteKey,
  reservedKey,
  restrictionMember,
  roomKeys,
  sessionKey,
} from "./keys.ts";
import { indexHeld, indexRestrictions } from "./indexes.ts";
import { redisHash, type RedisLink } from "./link.ts";
import { SCRIPTS } from "./scripts.ts";

/** Bytes of randomness in a room's epoch. */
const EPOCH_BYTES = 9;
/** Bounds the rooms Redis remembers for the room directory (`/api/rooms?recent=1`). */
const RECENT_ROOMS_KEPT = 1000;
/** Bounds the aged rooms one read of the sweep takes (it reads again until none are left). */
const SWEEP_ROOMS = 1000;
/** The room directory and the private rooms are read from Redis at most this often, however often they are asked for. */
const DIRECTORY_CACHE_MS = 1000;

/** Bounds the idle rooms looked at to reclaim one (idle longest first). */
const RECLAIM_CANDIDATES = 500;

/** Bounds the lapsed room bans and mutes one run of the sweep's script drops (it runs again until fewer are left). */
const LAPSED_PER_RUN = 1000;

/** Bounds the audit log of every room together (each room's keeps HISTORY_RETAIN). */
const AUDIT_ALL_KEPT = 10_000;

/** A message's field in its room's dedup hash (append.lua's ARGV[1]): user ids hold no newline, so the id cannot blur it. */
const dedupField = (userId: string, id: string) => `${userId}\n${id}`;

/** What session-save.lua answers for a refresh of a session that is gone (revoked meanwhile). */
const SESSION_GONE = -1;

/** A hash of restrictions (userId → JSON) as a Map. */
function restrictions(reply: Record<string, string> | string[] | null): Map<string, Restriction> {
  const map = new Map<string, Restriction>();
  for (const [userId, json] of redisHash(reply)) map.set(userId, JSON.parse(json) as Restriction);
  return map;
}

/** A session as Redis holds it: short fields, and `ks`, the reserved name keys' Redis keys. */
interface SessionJson {
  u: string;
  e: number;
  k: SessionRecord["kind"];
  n: string;
  /** The name's look-alike keys. */
  nk: string[];
  ks: string[];
  a: boolean;
  r: string[];
  /** The name's version (SessionRecord.nameVersion). */
  v?: number;
}

export class RedisStore implements Store {
  /** The last read of the directory, and until when it stands. */
  private recent: { until: number; limit: number; rooms: Promise<RecentRoom[]> } | null = null;
  /** The last read of the private rooms, and until when it stands. */
  private privates: { until: number; rooms: Promise<Set<string>> } | null = null;
  /** The webhook outbox, once opened (webhooks on): each append then queues its event. */
  private outbox: RedisOutbox | null = null;
  /** The restrictions written before their index existed, put in it (once: a failure tries again). */
  private lapsingIndexed: Promise<void> | null = null;

  constructor(
    private readonly link: RedisLink,
    private readonly bounds: HistoryBounds,
    /** The hub's clock: a session's expiry, given in its time, becomes the key's TTL. */
    private readonly now: () => number,
    /** This instance's id (the outbox's consumer name). */
    private readonly instance = "",
  ) {}

  openOutbox(bounds: OutboxBounds): Outbox {
    return (this.outbox ??= new RedisOutbox(this.link, this.instance, bounds, newHookId));
  }

  /**
   * A repeat found by our own resend means the first send ran, and published: it is news to
   * everyone, the sender included, through the relay; so it is not reported as a duplicate.
   */
  private async appendOne(m: NewEntry, cutoff: number | null): Promise<Appended> {
    const keys = roomKeys(m.room);
    let resent = false;
    const hooks = this.outbox?.appendArgs(m) ?? ["", "", "", ""];
    const [outcome, member, dropped]: [number, string?, number?] = await this.link.run(
      SCRIPTS.append,
      [keys.seq, keys.log, keys.ids, RECENT_KEY, HELD_KEY, authKeys(m.room).settings, PRIVATE_KEY, keys.epoch,
        HOOK_KEYS.stream, HOOK_KEYS.data, HOOK_KEYS.retry, HOOK_KEYS.tries, HELD_NEWEST_KEY],
      [
        dedupField(m.user.id, m.id), encodeMember(m), String(this.bounds.retain), keys.channel, String(m.ts), m.room,
        String(RECENT_ROOMS_KEPT), String(this.bounds.maxRooms), cutoff === null ? "" : String(cutoff),
        m.type === "settings" ? JSON.stringify(m.settings) : "",
        m.type === "edit" || m.type === "delete" ? JSON.stringify({ type: m.type, target: m.target, text: m.type === "edit" ? m.text : "", ts: m.ts }) : "",
        randomId(EPOCH_BYTES),
        ...hooks,
      ],
      () => (resent = true),
    );
    if (outcome === 2) return { refused: "room_limit" };
    if (outcome === 3) return { refused: "not_found" };
    if (outcome === 0 && hooks[0]) this.outbox!.appended(Number(dropped ?? 0));
    return { message: decodeMember(member!), duplicate: outcome === 1 && !resent };
  }

  /** Sent together (one pipelined write; Redis runs them in order), answered together. */
  append(batch: readonly NewEntry[]): Promise<Appended[]> {
    const cutoff = ageCutoff(batch, this.bounds);
    return Promise.all(batch.map((m) => this.appendOne(m, cutoff)));
  }

  async roomInfo(room: string) {
    const keys = roomKeys(room);
    const [seq, oldest, epoch] = await Promise.all([
      this.link.send("GET", [keys.seq]),
      this.link.send("ZRANGE", [keys.log, "0", "0"]),
      this.link.send("GET", [keys.epoch]) as Promise<string | null>,
    ]);
    return { seq: Number(seq ?? 0), oldestSeq: oldest?.[0] ? decodeMember(oldest[0]).seq : 0, epoch: epoch ?? null };
  }

  /** The dedup hash names the seq; the entry is read only when there is one. */
  async original(room: string, userId: string, id: string): Promise<StoredFrame | null> {
    const seq: string | null = await this.link.send("HGET", [roomKeys(room).ids, dedupField(userId, id)]);
    return seq === null ? null : this.entry(room, Number(seq));
  }

  /** Both reads leave in one pipelined write: one round trip. */
  async roomPage(room: string, query: PageQuery) {
    const [info, page] = await Promise.all([this.roomInfo(room), this.page(room, query)]);
    return { info, page };
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

  async findSession(tokenHash: string, now: number): Promise<SessionRecord | null> {
    const value: string | null = await this.link.send("GET", [sessionKey(tokenHash)]);
    if (!value) return null;
    let session: SessionRecord;
    if (value.startsWith("{")) {
      const j = JSON.parse(value) as SessionJson;
      session = { userId: j.u, expiresAt: j.e, kind: j.k, name: j.n, keys: j.nk, admin: j.a, rooms: j.r, ...(j.v ? { nameVersion: j.v } : {}) };
    } else {
      // Written by an instance before v1.2 (a rolling deploy): "expiresAt userId", a guest.
      const at = value.indexOf(" ");
      session = { userId: value.slice(at + 1), expiresAt: Number(value.slice(0, at)), kind: "guest", name: "", keys: [], admin: false, rooms: [] };
    }
    return session.expiresAt > now ? session : null;
  }

  /**
   * Redis forgets it when it expires (a new session a day after it was made, until it is used
   * again); the expiry stored with it is what counts, on the hub's clock. The name it reserves
   * expires with it.
   */
  async saveSession(tokenHash: string, session: SessionRecord, refresh = false) {
    const ttlMs = Math.max(1, session.expiresAt - this.now());
    const json: SessionJson = {
      u: session.userId,
      e: session.expiresAt,
      k: session.kind,
      n: session.name,
      nk: session.keys,
      ks: session.keys.map(reservedKey),
      a: session.admin,
      r: session.rooms,
      ...(session.nameVersion ? { v: session.nameVersion } : {}),
    };
    const args = [JSON.stringify(json), String(ttlMs), session.userId, refresh ? "1" : "0"];
    return (await this.link.run(SCRIPTS.sessionSave, [sessionKey(tokenHash)], args)) !== SESSION_GONE;
  }

  async revokeSession(tokenHash: string) {
    await this.link.run(SCRIPTS.sessionRevoke, [sessionKey(tokenHash)], []);
  }

  async nameReservedBy(keys: readonly string[], _now: number): Promise<string | null> {
    if (!keys.length) return null;
    const holders: (string | null)[] = await this.link.send("MGET", keys.map(reservedKey));
    return holders.find((h) => h !== null) ?? null;
  }

  async roomAuth(room: string): Promise<RoomAuth> {
    const keys = authKeys(room);
    const [roles, settings, bans, mutes] = await Promise.all(
      [keys.roles, keys.settings, keys.bans, keys.mutes].map((key) => this.link.send("HGETALL", [key])),
    );
    const held = new Map<string, RoleHolder>();
    for (const [userId, entry] of redisHash(roles)) held.set(userId, JSON.parse(entry) as RoleHolder);
    const t = redisHash(settings);
    return {
      roles: held,
      settings: t.size
        ? { topic: t.get("topic") ?? "", private: t.get("private") === "true", readOnly: t.get("readOnly") === "true", slowModeSeconds: Number(t.get("slowModeSeconds") ?? 0) }
        : { ...DEFAULT_SETTINGS },
      bans: restrictions(bans),
      mutes: restrictions(mutes),
    };
  }

  async entry(room: string, seq: number): Promise<StoredFrame | null> {
    const found: string[] = await this.link.send("ZRANGEBYSCORE", [roomKeys(room).log, String(seq), String(seq)]);
    return found[0] ? decodeMember(found[0]) : null;
  }

  /** Writes, and the webhook events that tell of them in the same step (§11.7) if there are any. */
  private async told(writes: string[][], hooks: readonly HookEvent[] | undefined): Promise<void> {
    if (hooks?.length && this.outbox) return this.outbox.addWith(writes, hooks);
    for (const [command, ...args] of writes) await this.link.send(command!, args);
  }

  /**
   * A timed one is indexed by when it lapses (LAPSING_KEY), for the sweep. The index is written
   * first and forgotten last: the sweep checks the hash, so a step lost between the two leaves
   * the index only wrong where that is harmless.
   */
  async restrict(kind: "ban" | "mute", room: string, userId: string, restriction: Restriction | null, hooks?: readonly HookEvent[]) {
    const key = kind === "ban" ? authKeys(room).bans : authKeys(room).mutes;
    const member = restrictionMember(key, userId);
    const writes = !restriction
      ? [["HDEL", key, userId], ["ZREM", LAPSING_KEY, member]]
      : restriction.until === null
        ? [["HSET", key, userId, JSON.stringify(restriction)], ["ZREM", LAPSING_KEY, member]]
        : [["ZADD", LAPSING_KEY, String(restriction.until), member], ["HSET", key, userId, JSON.stringify(restriction)]];
    await this.told(writes, hooks);
  }

  /** One script (server-ban.lua): a lift leaves an address another user's later ban took over. */
  async banServer(userId: string, restriction: Restriction | null, ip?: string, hooks?: readonly HookEvent[]) {
    const outbox = hooks?.length ? this.outbox : null;
    const ban = restriction ? [JSON.stringify(restriction), restriction.until === null ? "" : String(restriction.until)] : ["", ""];
    const address = restriction && ip !== undefined ? [ip, JSON.stringify({ ...restriction, userId })] : ["", ""];
    const dropped = await this.link.run(
      SCRIPTS.serverBan,
      [userBanKey(userId), bannedAddressesKey(userId), ...(outbox?.keys ?? [])],
      [userId, addressBanKey(""), ...ban, ...address, ...(outbox?.queueArgs(hooks!) ?? [])],
    );
    outbox?.appended(Number(dropped));
  }

  async serverBan(userId: string | null, ip: string, now: number): Promise<Restriction | null> {
    const [byUser, byAddress]: (string | null)[] = await this.link.send("MGET", [userId === null ? addressBanKey(ip) : userBanKey(userId), addressBanKey(ip)]);
    for (const found of [byUser, byAddress]) {
      const ban = found ? (JSON.parse(found) as Restriction) : undefined;
      if (holds(ban, now)) return ban;
    }
    return null;
  }

  async createBot(bot: BotRecord, tokenHash: string) {
    const { id, ...fields } = bot;
    await this.link.send("HSET", [BOTS_KEY, id, JSON.stringify(fields)]);
    await this.link.send("SET", [botTokenKey(tokenHash), id]);
  }

  async bots(): Promise<BotRecord[]> {
    const all = [...redisHash(await this.link.send("HGETALL", [BOTS_KEY]))].map(([id, json]) => ({ id, ...(JSON.parse(json) as Omit<BotRecord, "id">) }));
    return all.sort((a, b) => a.createdAt - b.createdAt || a.id.localeCompare(b.id));
  }

  async botByToken(tokenHash: string): Promise<BotRecord | null> {
    const id: string | null = await this.link.send("GET", [botTokenKey(tokenHash)]);
    if (!id) return null;
    const json: string | null = await this.link.send("HGET", [BOTS_KEY, id]);
    const bot = json ? { id, ...(JSON.parse(json) as Omit<BotRecord, "id">) } : null;
    return bot && !bot.revoked ? bot : null;
  }

  async revokeBot(id: string) {
    const json: string | null = await this.link.send("HGET", [BOTS_KEY, id]);
    if (!json) return false;
    await this.link.send("HSET", [BOTS_KEY, id, JSON.stringify({ ...JSON.parse(json), revoked: true })]);
    return true;
  }

  async audit(entry: AuditEntry) {
    const id = Number(await this.link.send("INCR", [AUDIT_ID_KEY]));
    const member = `${id}:${JSON.stringify(entry)}`;
    for (const [key, keep] of [[auditKey(entry.room ?? ""), this.bounds.retain], [auditKey(null), AUDIT_ALL_KEPT]] as const) {
      await this.link.send("ZADD", [key, String(id), member]);
      await this.link.send("ZREMRANGEBYRANK", [key, "0", String(-1 - keep)]);
    }
  }

  async auditPage(room: string | null, before: number | undefined, limit: number) {
    const members: string[] = await this.link.send("ZREVRANGEBYSCORE", [
      auditKey(room), before === undefined ? "+inf" : `(${before}`, "-inf", "LIMIT", "0", String(limit + 1),
    ]);
    const entries = members.slice(0, limit).map((m) => {
      const at = m.indexOf(":");
      return { ...(JSON.parse(m.slice(at + 1)) as AuditEntry), id: Number(m.slice(0, at)) };
    });
    return { entries, complete: members.length <= limit };
  }

  async claimOwner(room: string, user: UserRef) {
    const keys = authKeys(room);
    const entry = JSON.stringify({ role: "owner", name: user.name });
    return (await this.link.run(SCRIPTS.ownerClaim, [keys.owner, keys.roles, roomKeys(room).log], [user.id, entry])) === 1;
  }

  async setRole(room: string, user: UserRef, role: Role, hooks?: readonly HookEvent[]) {
    const keys = authKeys(room);
    const outbox = hooks?.length ? this.outbox : null;
    const dropped = await this.link.run(
      SCRIPTS.roleSet,
      [keys.owner, keys.roles, ...(outbox?.keys ?? [])],
      [user.id, role, user.name, ...(outbox?.queueArgs(hooks!) ?? [])],
    );
    outbox?.appended(Number(dropped));
  }

  async isListed(room: string, userId: string) {
    return (await this.link.send("SISMEMBER", [authKeys(room).list, userId])) === 1;
  }

  async addListed(room: string, userIds: readonly string[]) {
    if (userIds.length) await this.link.send("SADD", [authKeys(room).list, ...userIds]);
  }

  async removeListed(room: string, userId: string, hooks?: readonly HookEvent[]) {
    await this.told([["SREM", authKeys(room).list, userId]], hooks);
  }

  async createInvite(codeHash: string, room: string, expiresAt: number, maxUses: number | null, now: number, max: number) {
    const args = [codeHash, room, String(expiresAt), maxUses === null ? "" : String(maxUses), String(now), String(max)];
    return (await this.link.run(SCRIPTS.inviteCreate, [inviteKey(codeHash), authKeys(room).invites], args)) === 1;
  }

  async useInvite(codeHash: string, room: string, now: number) {
    return (await this.link.run(SCRIPTS.inviteUse, [inviteKey(codeHash), authKeys(room).invites], [room, String(now), codeHash])) === 1;
  }

  privateRooms(): Promise<Set<string>> {
    const now = this.now();
    if (this.privates && this.privates.until > now) return this.privates.rooms;
    const rooms = this.link.send("SMEMBERS", [PRIVATE_KEY]).then((members: string[]) => new Set(members));
    const entry = { until: now + DIRECTORY_CACHE_MS, rooms };
    this.privates = entry;
    rooms.catch(() => this.privates === entry && (this.privates = null));
    return rooms;
  }

  /**
   * Redis expires sessions, invites and server bans by itself; lapsed room bans and mutes are
   * dropped here, LAPSED_PER_RUN at a time.
   */
  async sweepSessions(now: number) {
    await (this.lapsingIndexed ??= indexRestrictions(this.link).catch((error) => {
      this.lapsingIndexed = null;
      throw error;
    }));
    let taken: number;
    do taken = Number(await this.link.run(SCRIPTS.restrictionsSweep, [LAPSING_KEY], [String(now), String(LAPSED_PER_RUN)]));
    while (taken === LAPSED_PER_RUN);
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
          return this.link.run(SCRIPTS.trim, [keys.log, keys.ids, HELD_KEY, HELD_NEWEST_KEY], [room, String(cutoff)]);
        }),
      );
      for (const n of counts) trimmed += Number(n);
    }
    return trimmed;
  }

  /**
   * One script for every instance: whoever is in a room anywhere shows in chat:active (`occupied`
   * adds nothing). Rooms that hold history but are missing from HELD_NEWEST_KEY (an older
   * instance's) are put in it first, or reclaim.lua would never see them.
   */
  async reclaimIdle(before: number, _occupied: (room: string) => boolean): Promise<string | null> {
    const [held, indexed] = await Promise.all([this.link.send("ZCARD", [HELD_KEY]), this.link.send("ZCARD", [HELD_NEWEST_KEY])]);
    if (Number(held) > Number(indexed)) await indexHeld(this.link);
    const room = await this.link.run(SCRIPTS.reclaim, [HELD_KEY, ACTIVE_KEY, RECENT_KEY, HELD_NEWEST_KEY], [String(before), String(RECLAIM_CANDIDATES), ROOM_KEY_PREFIX]);
    if (typeof room !== "string") return null;
    this.recent = null;
    return room;
  }

  /** Redis's own failures show as the link being down (Relay.health). */
  failure(): null {
    return null;
  }

  async close() {
    this.link.close();
  }
}
