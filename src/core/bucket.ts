/**
 * Rate limiting, pure: a token bucket, buckets by key swept when full, and a connection's count
 * of rate_limited answers in a row. Callers pass the time. The bucket itself is the protocol's
 * rule, shared with the page: it lives in src/protocol/wire.ts.
 */
import { TokenBucket } from "../protocol/wire.ts";

export { TokenBucket };

/**
 * One connection's side of rate limiting: the count of `rate_limited` answers in a row, whichever
 * bucket ran dry. `count` hears whether a frame got its token and says "ok", "limited", or
 * "abuse" when that makes `abuseAfter` limited answers in a row.
 */
export class RateLimiter {
  private limitedInRow = 0;

  constructor(private readonly abuseAfter: number) {}

  count(taken: boolean): "ok" | "limited" | "abuse" {
    if (taken) {
      this.limitedInRow = 0;
      return "ok";
    }
    this.limitedInRow += 1;
    return this.limitedInRow >= this.abuseAfter ? "abuse" : "limited";
  }
}

/**
 * Token buckets by key (a user id, a client address), swept when full: a full bucket is the
 * same as a new one, so the map holds only keys that spent tokens lately.
 */
export class Buckets {
  private readonly map = new Map<string, TokenBucket>();

  constructor(
    private readonly burst: number,
    private readonly perSecond: number,
  ) {}

  get(key: string, now: number): TokenBucket {
    let bucket = this.map.get(key);
    if (!bucket) this.map.set(key, (bucket = new TokenBucket(this.burst, this.perSecond, now)));
    return bucket;
  }

  /** Forgets full buckets, except those `keep` names (in use right now). */
  sweep(now: number, keep: (key: string) => boolean = () => false): void {
    for (const [key, bucket] of this.map) if (!keep(key) && bucket.isFull(now)) this.map.delete(key);
  }

  get size(): number {
    return this.map.size;
  }
}
