/**
 * The Redis engine's roster: presence, names and rate buckets shared by every instance, and the
 * takeover of a dead instance's members.
 */
import { randomId } from "../core/random.ts";
import type { Config } from "../config.ts";
import type { TokenBucket } from "../core/bucket.ts";
import { SLOW_MODE_KEEP_MS, takeSlot, type NameClaim, type NameHeld, type Roster, type RosterTarget, type RoomCount } from "../engine.ts";
import type { Log } from "../metrics.ts";
import type { UserRef } from "../protocol/wire.ts";
import {
  ACTIVE_KEY,
  GENERATION_KEY,
  INSTANCES_KEY,
  INSTANCE_ROOMS,
  NAME_RECORD,
  SERVER_CHANNEL,
  adminKey,
  encodeEvent,
  helloKey,
  instanceKeys,
  nameKey,
  nameRecordKey,
  rateKey,
  slowKey,
  roomKeys,
  roomStartKeys,
  rosterKeys,
} from "./keys.ts";
import { redisHash, type RedisLink } from "./link.ts";
import { SCRIPTS } from "./scripts.ts";

/** Bytes of randomness in the mark of Redis's data (GENERATION_KEY). */
const GENERATION_BYTES = 9;

/** Bounds the membership entries read per step when a dead instance is taken over. */
const REAP_SCAN_COUNT = 1000;
/** The rooms with members are read from Redis at most this often, however often /api/rooms is polled. */
const ACTIVE_CACHE_MS = 1000;
/** Bounds the frame tokens taken in one script call (the keys of one EVALSHA). */
const FRAME_TAKES_PER_CALL_MAX = 512;

/** A frame's token, asked for and not yet sent to Redis. */
interface FrameTake {
  userId: string;
  now: number;
  resolve: (taken: boolean) => void;
  reject: (error: unknown) => void;
}

/**
 * Each instance registers, keeps a key alive with a TTL (INSTANCE_TIMEOUT_MS) and checks the
 * others every half of it: a dead instance is noticed within 1.5 × INSTANCE_TIMEOUT_MS. One
 * survivor claims it (a key set with NX, for INSTANCE_TIMEOUT_MS) and takes over its memberships,
 * in grace: their leaves go out PRESENCE_GRACE_MS later, unless they came back. The dead instance
 * leaves the instance set only once all its members are moved, so a survivor that dies halfway
 * lets its claim lapse and another finishes the job.
 */
export class RedisRoster implements Roster {
  private readonly timers: ReturnType<typeof setInterval>[] = [];
  /** The name this instance holds for each of its users: held again with every heartbeat. */
  private readonly names = new Map<string, NameClaim & { version: number }>();
  /** The users this instance holds as server admins (Roster.holdAdmin): held again with every heartbeat. */
  private readonly admins = new Set<string>();
  /**
   * Each user's shared rate bucket as its last frame here left it, while the user holds a name
   * here: put back if Redis loses its data, so a reset gives nobody a fresh burst.
   */
  private readonly levels = new Map<string, { tokens: number; at: number }>();
  /** The frame tokens asked for in this turn of the event loop, sent together at its end. */
  private frameTakes: FrameTake[] = [];
  private registered = false;
  private target!: RosterTarget;
  /** The last read of the rooms with members, and until when it stands. */
  private activeRead: { until: number; rooms: Promise<RoomCount[]> } | null = null;

  /** INSTANCE_TIMEOUT_MS. */
  private readonly timeoutMs: number;
  /** The mark of Redis's data this instance registered with: another one (or none) means Redis lost it. */
  private generation: string | null = null;
  /** A recovery under way: one at a time, shared by whoever asks meanwhile. */
  private recovering: Promise<void> | null = null;
  /** A recovery was asked for while one ran: another follows it. */
  private again: { reconnected: boolean } | null = null;
  /**
   * A reconnect's recovery (the presence put back) not yet made: one that failed (Redis answered
   * an error as it came back, still loading its data, say) is made by the next recovery, a
   * heartbeat's if nothing else asks.
   */
  private owed = false;

  constructor(
    private readonly link: RedisLink,
    readonly instance: string,
    private readonly log: Log,
    private readonly config: Config,
    private readonly now: () => number,
  ) {
    this.timeoutMs = config.instanceTimeoutMs;
  }

  attach(target: RosterTarget): void {
    this.target = target;
  }

  async start(): Promise<void> {
    this.generation = await this.mark();
    await this.heartbeat();
    this.timers.push(
      setInterval(() => void this.heartbeat().catch((e) => this.log("warn", "redis_heartbeat", { error: String(e) })), this.timeoutMs / 3),
      setInterval(() => void this.reap().catch((e) => this.log("warn", "redis_reap", { error: String(e) })), this.timeoutMs / 2),
    );
  }

  /** Redis's mark of its data: made once (SET NX) by the first instance to look, lost with the data. */
  private async mark(): Promise<string> {
    await this.link.send("SET", [GENERATION_KEY, randomId(GENERATION_BYTES), "NX"]);
    return String(await this.link.send("GET", [GENERATION_KEY]));
  }

  private async heartbeat(): Promise<void> {
    await this.recover(false);
    await this.link.send("SET", [instanceKeys(this.instance).alive, "1", "PX", String(this.timeoutMs)]);
    const added = await this.link.send("SADD", [INSTANCES_KEY, this.instance]);
    if (added === 1 && this.registered) {
      this.log("warn", "instance_taken_over", { instance: this.instance });
      this.target.lost();
    }
    this.registered = true;
    await this.holdNames();
    await this.holdAdmins();
  }

  /**
   * Puts back what this instance holds (Roster.recover). Redis lost its data when its mark is
   * gone or another: then every name is held again (name-claim.lua gives a name to whoever held
   * it first), and the hub registers its sessions and presence again. After a reconnect its
   * presence is replaced wholesale: joins and leaves made while Redis was away reach the others.
   */
  recover(reconnected: boolean): Promise<void> {
    if (this.recovering) {
      this.again = { reconnected: reconnected || (this.again?.reconnected ?? false) };
      return this.recovering;
    }
    if (reconnected) this.owed = true;
    this.recovering = (async () => {
      let failed = false;
      try {
        const generation: string | null = await this.link.send("GET", [GENERATION_KEY]);
        const reset = generation !== this.generation;
        if (reset) {
          const mark = await this.mark();
          this.log("warn", "redis_reset", { instance: this.instance, names: this.names.size });
          await this.link.send("SET", [instanceKeys(this.instance).alive, "1", "PX", String(this.timeoutMs)]);
          await this.link.send("SADD", [INSTANCES_KEY, this.instance]);
          await this.holdNames();
          await this.holdAdmins();
          await this.restoreBuckets();
          // Only now: until the buckets are back, levels seen under the new mark are not kept (takeFrameBatch).
          this.generation = mark;
        }
        if (reset || this.owed) {
          this.owed = false;
          try {
            await this.target.reconcile(reset);
          } catch (error) {
            this.owed = true;
            throw error;
          }
          this.log("info", "roster_recovered", { instance: this.instance, reset });
        }
      } catch (error) {
        failed = true;
        throw error;
      } finally {
        this.recovering = null;
        const again = this.again;
        this.again = null;
        // One asked for meanwhile runs now, also when this one failed: a reconnect's recovery
        // (Redis is back) must not wait for the next heartbeat. After a failure it is not awaited.
        if (again) {
          const next = this.recover(again.reconnected);
          if (failed) next.catch((error) => this.log("warn", "redis_recover", { error: String(error) }));
          else await next;
        }
      }
    })();
    return this.recovering;
  }

  /**
   * Holds every name this instance holds again (a hold: it renames nothing). One renamed elsewhere
   * meanwhile comes back stale and its user takes the new name; one another user took first (Redis
   * lost its data meanwhile) is lost, and its user told.
   */
  private async holdNames(): Promise<void> {
    await Promise.all(
      [...this.names.values()].map(async (held) => {
        const got = await this.claimName(held);
        if (got.held || this.names.get(held.userId) !== held) return;
        this.names.delete(held.userId);
        // Its bucket is no longer this instance's to put back.
        this.levels.delete(held.userId);
        if (got.renamed) this.target.renamedElsewhere(held.userId, got.renamed.name, got.renamed.version);
        else this.target.nameLost(held.userId, held.name);
      }),
    );
  }

  /**
   * Makes this instance's holds of admins in Redis what it holds: again those a takeover (it was
   * taken for dead) or Redis losing its data let go of, and no longer one whose release was lost.
   */
  private async holdAdmins(): Promise<void> {
    const held: string[] = await this.link.send("SMEMBERS", [instanceKeys(this.instance).admins]);
    const stale = held.filter((userId) => !this.admins.has(userId));
    await Promise.all([
      ...[...this.admins].map((userId) => this.runAdminHold(this.instance, userId, true)),
      ...stale.map((userId) => this.runAdminHold(this.instance, userId, false)),
    ]);
  }

  /** admin-hold.lua: `instance` holds `userId` as an admin, or lets go of it. */
  private runAdminHold(instance: string, userId: string, hold: boolean): Promise<unknown> {
    return this.link.run(SCRIPTS.adminHold, [adminKey(userId), instanceKeys(instance).admins], [instance, userId, hold ? "1" : "0"]);
  }

  /** Puts back the shared rate bucket of each user held here, as its last frame here left it. */
  private async restoreBuckets(): Promise<void> {
    const { rateLimitBurst, rateLimitPerSecond } = this.config;
    const now = String(this.now());
    await Promise.all(
      [...this.levels].map(([userId, level]) =>
        this.link.run(SCRIPTS.bucketRestore, [rateKey(userId)], [String(rateLimitBurst), String(rateLimitPerSecond / 1000), now, String(level.tokens), String(level.at)]),
      ),
    );
  }

  /**
   * Takes over the members of every instance that stopped heartbeating. One survivor claims a dead
   * instance at a time, for INSTANCE_TIMEOUT_MS; the dead one leaves the instance set only once
   * all its members are moved. A survivor that dies halfway lets its claim lapse, and the next one
   * moves what is left (moving a member is one script, done once, whoever runs it again). Its
   * holds of admins go last: a member adopted in grace is held as one here (RosterTarget.adopt).
   */
  private async reap(): Promise<void> {
    const instances: string[] = await this.link.send("SMEMBERS", [INSTANCES_KEY]);
    for (const dead of instances) {
      if (dead === this.instance || (await this.link.send("EXISTS", [instanceKeys(dead).alive])) === 1) continue;
      const claim = instanceKeys(dead).takeover;
      if ((await this.link.send("SET", [claim, this.instance, "NX", "PX", String(this.timeoutMs)])) !== "OK") {
        this.log("debug", "takeover_claimed_elsewhere", { instance: dead });
        continue;
      }
      // Another survivor may have finished it since the list was read (it lets its claim go last).
      if ((await this.link.send("SISMEMBER", [INSTANCES_KEY, dead])) !== 1) {
        await this.link.send("DEL", [claim]);
        continue;
      }
      let members = 0;
      const admins = new Set<string>(await this.link.send("SMEMBERS", [instanceKeys(dead).admins]));
      const rooms: string[] = await this.link.send("HKEYS", [instanceKeys(dead).rooms]);
      for (const room of rooms) {
        const keys = rosterKeys(room);
        let cursor = "0";
        do {
          const [next, fields]: [string, string[]] = await this.link.send("HSCAN", [keys.here, cursor, "MATCH", `${dead}|*`, "COUNT", String(REAP_SCAN_COUNT)]);
          cursor = String(next);
          for (let i = 0; i < fields.length; i += 2) {
            const userId = fields[i]!.slice(dead.length + 1);
            const name: string | null = await this.link.send("HGET", [keys.names, userId]);
            const taken = await this.link.run(
              SCRIPTS.rosterAdopt,
              [keys.here, keys.users, instanceKeys(dead).rooms, instanceKeys(this.instance).rooms],
              [fields[i]!, `${this.instance}|${userId}`, userId, room],
            );
            members++;
            if (taken === 1) this.target.adopt(room, { id: userId, name: name ?? "" }, admins.has(userId));
          }
        } while (cursor !== "0");
      }
      for (const userId of admins) await this.runAdminHold(dead, userId, false);
      await this.link.send("DEL", [instanceKeys(dead).rooms]);
      await this.link.send("SREM", [INSTANCES_KEY, dead]);
      await this.link.send("DEL", [claim]);
      this.log("info", "instance_taken_over", { instance: dead, by: this.instance, rooms: rooms.length, members });
    }
  }

  async add(room: string, user: UserRef): Promise<boolean> {
    const keys = rosterKeys(room);
    const event = encodeEvent(this.instance, { frame: { type: "presence", room, event: "join", user } });
    const added = await this.link.run(
      SCRIPTS.rosterAdd,
      [keys.here, keys.users, keys.names, instanceKeys(this.instance).rooms, ACTIVE_KEY],
      [`${this.instance}|${user.id}`, user.id, user.name, room, roomKeys(room).channel, event],
    );
    return added === 1;
  }

  /** Marked live again (roster-add.lua), unless the entry went meanwhile: then added as new. */
  back(room: string, user: UserRef): Promise<boolean> {
    return this.add(room, user);
  }

  async graced(room: string, user: UserRef): Promise<void> {
    await this.link.run(SCRIPTS.rosterGrace, [rosterKeys(room).here], [`${this.instance}|${user.id}`]);
  }

  async remove(room: string, user: UserRef, explicit = false): Promise<boolean> {
    const keys = rosterKeys(room);
    const event = encodeEvent(this.instance, { frame: { type: "presence", room, event: "leave", user } });
    const removed = await this.link.run(
      SCRIPTS.rosterRemove,
      [keys.here, keys.users, keys.names, instanceKeys(this.instance).rooms, ACTIVE_KEY, INSTANCES_KEY],
      [`${this.instance}|${user.id}`, user.id, room, roomKeys(room).channel, event, explicit ? "1" : "0", INSTANCE_ROOMS.prefix, INSTANCE_ROOMS.suffix],
    );
    return removed === 1;
  }

  async rename(room: string, user: UserRef, oldName: string, version: number): Promise<void> {
    const keys = rosterKeys(room);
    const event = encodeEvent(this.instance, { frame: { type: "presence", room, event: "rename", user }, oldName });
    await this.link.run(SCRIPTS.rosterRename, [keys.users, keys.names, nameRecordKey(user.id)], [user.id, user.name, roomKeys(room).channel, event, String(version)]);
  }

  async others(room: string): Promise<UserRef[]> {
    const keys = rosterKeys(room);
    const [fields, names]: [string[], Record<string, string> | string[]] = await Promise.all([
      this.link.send("HKEYS", [keys.here]),
      this.link.send("HGETALL", [keys.names]),
    ]);
    const nameOf = redisHash(names);
    const mine = `${this.instance}|`;
    const ids = new Set(fields.filter((f) => !f.startsWith(mine)).map((f) => f.slice(f.indexOf("|") + 1)));
    return [...ids].filter((id) => nameOf.has(id)).map((id) => ({ id, name: nameOf.get(id)! }));
  }

  /** This instance's memberships, as Redis holds them. */
  async mine(): Promise<Map<string, UserRef[]>> {
    const mine = new Map<string, UserRef[]>();
    const rooms: string[] = await this.link.send("HKEYS", [instanceKeys(this.instance).rooms]);
    const prefix = `${this.instance}|`;
    for (const room of rooms) {
      const keys = rosterKeys(room);
      const [fields, names]: [string[], Record<string, string> | string[]] = await Promise.all([
        this.link.send("HKEYS", [keys.here]),
        this.link.send("HGETALL", [keys.names]),
      ]);
      const nameOf = redisHash(names);
      const users = fields.filter((f) => f.startsWith(prefix)).map((f) => f.slice(prefix.length));
      mine.set(room, users.map((id) => ({ id, name: nameOf.get(id) ?? "" })));
    }
    return mine;
  }

  /** Every instance's rooms from Redis (this instance's are among them), read at most once per ACTIVE_CACHE_MS. */
  active(_here: () => RoomCount[]): Promise<RoomCount[]> {
    const now = this.now();
    if (this.activeRead && this.activeRead.until > now) return this.activeRead.rooms;
    const rooms = this.link.send("HGETALL", [ACTIVE_KEY]).then((reply: Record<string, string> | string[] | null) =>
      [...redisHash(reply)].map(([room, n]) => ({ room, members: Number(n) })).filter((r) => r.members > 0),
    );
    const read = { until: now + ACTIVE_CACHE_MS, rooms };
    this.activeRead = read;
    // A failed read is not kept: the next request asks again.
    rooms.catch(() => this.activeRead === read && (this.activeRead = null));
    return rooms;
  }

  /** name-claim.lua: the claim and, for a rename, the release of the old name, in one step. */
  async claimName(claim: NameClaim): Promise<NameHeld> {
    const { name, keys, userId, exclusive, since, version } = claim;
    const [outcome, now, v]: [number, string?, number?] = await this.link.run(
      SCRIPTS.nameClaim,
      [nameRecordKey(userId), ...keys.map(nameKey)],
      [
        this.instance, userId, String(this.timeoutMs), exclusive ? "1" : "0", version === undefined ? "hello" : "hold", String(since), name,
        String(version ?? 0), SERVER_CHANNEL, NAME_RECORD.prefix, NAME_RECORD.suffix,
      ],
    );
    if (outcome === 1) {
      // Claims of one user may come back out of order: the later version stays.
      const known = this.names.get(userId);
      if (!known || known.version <= Number(v)) this.names.set(userId, { name, keys, userId, exclusive, since, version: Number(v) });
      return { held: true, version: Number(v) };
    }
    return outcome === 2 ? { held: false, renamed: { name: now!, version: Number(v) } } : { held: false };
  }

  releaseName(keys: readonly string[], userId: string): void {
    if (this.names.get(userId)?.keys.join("\n") !== keys.join("\n")) return;
    this.names.delete(userId);
    this.levels.delete(userId);
    this.link
      .run(SCRIPTS.nameRelease, keys.map(nameKey), [this.instance, userId])
      .then(() => this.log("debug", "name_released", { user: userId }))
      .catch((error) => this.log("warn", "redis_release_name", { error: String(error) }));
  }

  async nameElsewhere(userId: string): Promise<string | null> {
    return (await this.link.send("HGET", [nameRecordKey(userId), "name"])) ?? null;
  }

  holdAdmin(userId: string, admin: boolean): void {
    if (this.admins.has(userId) === admin) return;
    if (admin) this.admins.add(userId);
    else this.admins.delete(userId);
    this.runAdminHold(this.instance, userId, admin).catch((error) => this.log("warn", "redis_hold_admin", { error: String(error) }));
  }

  async adminElsewhere(userId: string): Promise<boolean> {
    const holders: string[] = await this.link.send("SMEMBERS", [adminKey(userId)]);
    return holders.some((instance) => instance !== this.instance);
  }

  takeHello(ip: string, now: number): Promise<boolean> {
    const perMinute = this.config.helloRatePerMinute;
    return this.take(helloKey(ip), perMinute, perMinute / 60, now);
  }

  /**
   * Both buckets in one step (bucket-take-all.lua): a start that either refuses spends nothing of
   * the other, as RateGate's check here; the address's is everyone's behind it.
   */
  async takeRoomStart(userId: string, ip: string, now: number): Promise<boolean> {
    const keys = roomStartKeys(userId, ip);
    const { roomStartsPerHour, roomStartsPerHourPerIp } = this.config;
    const bucket = (perHour: number) => [String(perHour), String(perHour / 3600 / 1000)];
    const taken = await this.link.run(
      SCRIPTS.bucketTakeAll,
      [keys.user, keys.ip],
      [String(now), ...bucket(roomStartsPerHour), ...bucket(roomStartsPerHourPerIp)],
    );
    return taken === 1;
  }

  /**
   * The user's bucket lives in Redis; `own` is the hub's fallback while Redis cannot answer. The
   * frames asked for in one turn of the event loop take their tokens in one call, in the order
   * asked: each still takes exactly one token of the shared count, for one script run instead of
   * one per frame (issue #22: Redis fan-out).
   */
  takeFrame(userId: string, now: number, _own: TokenBucket): Promise<boolean> {
    // Redis away: say so at once (the hub spends its own copy) rather than wait for a reconnect.
    if (!this.link.connected) return Promise.reject(new Error("not connected to Redis"));
    return new Promise((resolve, reject) => {
      if (this.frameTakes.push({ userId, now, resolve, reject }) === 1) setImmediate(() => this.takeFrames());
    });
  }

  /** Sends the frame takes asked for since the last turn, FRAME_TAKES_PER_CALL_MAX to a call. */
  private takeFrames(): void {
    const takes = this.frameTakes;
    this.frameTakes = [];
    for (let from = 0; from < takes.length; from += FRAME_TAKES_PER_CALL_MAX) void this.takeFrameBatch(takes.slice(from, from + FRAME_TAKES_PER_CALL_MAX));
  }

  /** One call for `takes`, at the latest clock among them (they were asked within one turn). */
  private async takeFrameBatch(takes: FrameTake[]): Promise<void> {
    const now = Math.max(...takes.map((t) => t.now));
    const { rateLimitBurst, rateLimitPerSecond } = this.config;
    let answers: (number | string)[];
    try {
      answers = await this.link.run(SCRIPTS.bucketTake, takes.map((t) => rateKey(t.userId)), [String(rateLimitBurst), String(rateLimitPerSecond / 1000), String(now), GENERATION_KEY]);
    } catch (error) {
      for (const t of takes) t.reject(error);
      return;
    }
    // A level taken from data Redis has lost since (not yet recovered) would overwrite the one to put back.
    const keep = answers[3 * takes.length] === this.generation;
    takes.forEach((t, i) => {
      if (keep && this.names.has(t.userId)) this.levels.set(t.userId, { tokens: Number(answers[3 * i + 1]), at: Number(answers[3 * i + 2]) });
      t.resolve(answers[3 * i] === 1);
    });
  }

  /**
   * The record lives in Redis, shared by every instance; while Redis cannot answer, this instance's
   * record stands in (as its copy of a rate bucket does), so a send is never held for slow mode.
   */
  async takeSlowMode(room: string, userId: string, ms: number, now: number, own: Map<string, number>): Promise<number> {
    try {
      if (!this.link.connected) throw new Error("not connected to Redis");
      const args = [String(now), String(ms), String(SLOW_MODE_KEEP_MS)];
      const wait = Number(await this.link.run(SCRIPTS.slowTake, [slowKey(room, userId)], args));
      if (wait === 0) own.set(`${room}\n${userId}`, now);
      return wait;
    } catch {
      return takeSlot(own, `${room}\n${userId}`, ms, now);
    }
  }

  /** One token of the shared bucket `key` (bucket-take.lua); false when it is empty. */
  private async take(key: string, burst: number, perSecond: number, now: number): Promise<boolean> {
    const [taken]: [number, string, number] = await this.link.run(SCRIPTS.bucketTake, [key], [String(burst), String(perSecond / 1000), String(now)]);
    return taken === 1;
  }

  /** Stops heartbeating and lets its key go at once: a survivor takes its members over, in grace. */
  async close(): Promise<void> {
    for (const timer of this.timers) clearInterval(timer);
    await this.link.send("DEL", [instanceKeys(this.instance).alive]).catch(() => {});
  }
}
