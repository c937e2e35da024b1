/**
 * The rate gate (§4, §10): which bucket pays for a frame, and whether it could. Pings and frames
 * before hello spend the connection's own bucket, the rest the user's, shared by all its
 * connections; hellos spend their address's. With several instances the user's and the
 * address's buckets live in the engine (Roster), and this instance's copy stands in while the
 * engine cannot answer in time.
 */
import type { Connection, User } from "./connection.ts";
import type { Context } from "./context.ts";
import { Buckets, RateLimiter, type TokenBucket } from "./core/bucket.ts";
import type { Roster } from "./engine.ts";
import type { ClientFrameType } from "./protocol/wire.ts";

/** Bounds how long a frame waits for the user's shared rate bucket before spending this instance's copy. */
const SHARED_BUCKET_WAIT_MS = 500;

/** When `bucket` has a token again, in ms: at least one refill's time when it cannot tell (another instance spent it). */
const tokenWaitMs = (bucket: TokenBucket, now: number) => bucket.wait(now) || Math.ceil(bucket.intervalMs);

/** Whether a frame is paid from its connection's own bucket: a ping, or any frame before hello (§10). */
const paidByConnection = (conn: Connection, type: ClientFrameType | undefined) => type === "ping" || !conn.user;

/** A frame's token: taken or not, now or once the engine answers; null when nothing was asked ahead. */
export type Token = boolean | Promise<boolean>;

export class RateGate {
  /** Users' buckets, shared by their connections and kept across reconnects (§10); with Redis, the fallback. */
  readonly userBuckets: Buckets;
  /** Hellos per client address (§10 HELLO_RATE_PER_MINUTE). */
  readonly helloBuckets: Buckets;
  /** New rooms started per user and per address (ROOM_STARTS_PER_HOUR, …_PER_IP); with Redis, the fallback. */
  readonly roomBuckets: Buckets;
  readonly roomAddressBuckets: Buckets;
  /**
   * Frames one connection may have waiting for their turn, the one waiting for storage included
   * (§4): its user's burst, its connection's own (pings, frames before hello), and the
   * rate_limited answers it may get before they are abuse. A client within its rate never has
   * more; answered back to back, a longer queue ends in an abuse close anyway, so it ends in one
   * when it grows past this instead of being held in memory until its turn.
   */
  readonly maxWaitingFrames: number;
  /** The last take from the shared buckets failed; set and cleared with one log line each (once per outage). */
  private sharedDown = false;

  constructor(
    private readonly ctx: Context,
    private readonly roster: Roster,
  ) {
    const { rateLimitBurst, rateLimitPerSecond, helloRatePerMinute, rateLimitAbuseErrors } = ctx.config;
    this.maxWaitingFrames = 2 * rateLimitBurst + rateLimitAbuseErrors;
    this.userBuckets = new Buckets(rateLimitBurst, rateLimitPerSecond);
    this.helloBuckets = new Buckets(helloRatePerMinute, helloRatePerMinute / 60);
    const { roomStartsPerHour, roomStartsPerHourPerIp } = ctx.config;
    this.roomBuckets = new Buckets(roomStartsPerHour, roomStartsPerHour / 3600);
    this.roomAddressBuckets = new Buckets(roomStartsPerHourPerIp, roomStartsPerHourPerIp / 3600);
  }

  /**
   * Asks for a welcomed connection's token as its frame arrives, while frames ahead of it are
   * still being answered: with a shared bucket a burst waits one round trip, not one per frame,
   * and the answers come in the order asked. Null when the connection's own bucket pays (a ping,
   * or no user yet).
   */
  ask(conn: Connection, type: ClientFrameType | undefined): Token | null {
    const user = paidByConnection(conn, type) ? null : conn.user;
    if (!user) return null;
    const token = this.roster.takeFrame(user.ref.id, this.ctx.now(), user.bucket);
    // Marked handled now: it may fail before its frame's turn comes (take falls back then).
    if (typeof token !== "boolean") token.catch(() => {});
    return token;
  }

  /** The frame's token: the one `asked` on arrival, or asked now (the frame came before its user did). */
  take(conn: Connection, type: ClientFrameType | undefined, asked: Token | null): Token {
    const token = asked ?? this.ask(conn, type);
    if (token === null) return conn.bucket.take(this.ctx.now());
    if (typeof token === "boolean") return token;
    return this.shared(token, conn.user!.bucket);
  }

  /**
   * The token for a request of a user with no connection (the HTTP API, §11.6: a bot has its own
   * bucket): the user's bucket, shared by every instance as a connection's is.
   */
  takeFor(userId: string): Token {
    const own = this.userBuckets.get(userId, this.ctx.now());
    const token = this.roster.takeFrame(userId, this.ctx.now(), own);
    return typeof token === "boolean" ? token : this.shared(token, own);
  }

  /** When the bucket that pays for `conn`'s frame of `type` has a token again, in ms (this instance's copy of a shared one refills as fast). */
  frameRetryAfterMs(conn: Connection, type: ClientFrameType | undefined): number {
    const bucket = paidByConnection(conn, type) ? conn.bucket : conn.user!.bucket;
    return tokenWaitMs(bucket, this.ctx.now());
  }

  /** When the user's bucket has a token again, in ms (at least one refill's time when it cannot tell). */
  retryAfterMs(userId: string): number {
    const bucket = this.userBuckets.get(userId, this.ctx.now());
    return tokenWaitMs(bucket, this.ctx.now());
  }

  /**
   * Counts the frame's outcome on its connection: "ok", "limited", or "abuse" when that makes
   * RATE_LIMIT_ABUSE_ERRORS limited answers in a row.
   */
  count(conn: Connection, taken: boolean): "ok" | "limited" | "abuse" {
    if (taken && !conn.limiter) return "ok";
    const verdict = (conn.limiter ??= new RateLimiter(this.ctx.config.rateLimitAbuseErrors)).count(taken);
    // A limiter after "ok" is as good as a new one: an idle connection holds none.
    if (verdict === "ok") conn.limiter = null;
    return verdict;
  }

  /**
   * One hello from `ip`: here first (a flood stays off the network), then on every instance.
   * Resolves with 0 when it may, else the milliseconds until it may (§11.4: `retryAfterMs`). An
   * engine that cannot answer does not lock people out.
   */
  async takeHello(ip: string): Promise<number> {
    const now = this.ctx.now();
    const bucket = this.helloBuckets.get(ip, now);
    if (!bucket.take(now)) return tokenWaitMs(bucket, now);
    try {
      // Spent on another instance: one token's time.
      return (await this.roster.takeHello(ip, now)) ? 0 : Math.ceil(bucket.intervalMs);
    } catch (error) {
      this.ctx.log("warn", "storage", { error: String(error), op: "takeHello" });
      return 0;
    }
  }

  /**
   * One new room started by `userId` from `ip` (issue 21: 7): here first, then on every instance.
   * Resolves with 0 when it may, else the milliseconds until it may. An engine that cannot answer
   * does not lock people out.
   */
  async takeRoomStart(userId: string, ip: string): Promise<number> {
    const now = this.ctx.now();
    const user = this.roomBuckets.get(userId, now);
    const address = this.roomAddressBuckets.get(ip, now);
    const wait = Math.max(user.wait(now), address.wait(now));
    if (wait > 0) return wait;
    user.take(now);
    address.take(now);
    try {
      if (await this.roster.takeRoomStart(userId, ip, now)) return 0;
    } catch (error) {
      this.ctx.log("warn", "storage", { error: String(error), op: "takeRoomStart" });
      return 0;
    }
    // Spent on another instance: one token's time, at the slower of the two rates.
    return Math.max(user.intervalMs, address.intervalMs);
  }

  /** Forgets the buckets that are full again and belong to no one online. */
  sweep(now: number, online: (userId: string) => boolean): void {
    this.userBuckets.sweep(now, online);
    this.helloBuckets.sweep(now);
    this.roomBuckets.sweep(now);
    this.roomAddressBuckets.sweep(now);
  }

  /**
   * The shared bucket's answer, or, if it fails or takes longer than SHARED_BUCKET_WAIT_MS, a
   * token of this instance's copy: a frame never hangs on the engine. Logged once per outage.
   */
  private async shared(token: Promise<boolean>, own: TokenBucket): Promise<boolean> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${SHARED_BUCKET_WAIT_MS} ms`)), SHARED_BUCKET_WAIT_MS);
    });
    try {
      const taken = await Promise.race([token, late]);
      if (this.sharedDown) this.ctx.log("info", "rate_buckets_shared");
      this.sharedDown = false;
      return taken;
    } catch (error) {
      if (!this.sharedDown) this.ctx.log("warn", "rate_buckets_local", { error: String(error) });
      this.sharedDown = true;
      return own.take(this.ctx.now());
    } finally {
      clearTimeout(timer);
    }
  }
}
