/**
 * The Redis engine's indexes over data that instances before them wrote without them: each is
 * built here once from the data itself, so an upgrade needs no step of its own. Rebuilding is
 * safe beside instances at work: the scripts that read an index check what it says against the
 * data (restrictions-sweep.lua).
 */
import { LAPSING_INDEXED_KEY, LAPSING_KEY, restrictionMember } from "./keys.ts";
import { redisHash, type RedisLink } from "./link.ts";

/** Keys one SCAN step looks at (a hint to Redis: it may answer more or fewer). */
const SCAN_KEYS_PER_STEP = 1000;
/** The rooms' restriction hashes (authKeys(room).bans and .mutes) among what SCAN finds. */
const RESTRICTION_HASH = /^chat:room:.*:(bans|mutes)$/;

/**
 * Puts the timed room bans and mutes written before LAPSING_KEY existed into it (NX: one written
 * since is indexed already), once for every instance: LAPSING_INDEXED_KEY says it was done.
 */
export async function indexRestrictions(link: RedisLink): Promise<void> {
  if (await link.send("EXISTS", [LAPSING_INDEXED_KEY])) return;
  let cursor = "0";
  do {
    const [next, keys]: [string, string[]] = await link.send("SCAN", [cursor, "MATCH", "chat:room:*s", "COUNT", String(SCAN_KEYS_PER_STEP)]);
    cursor = String(next);
    for (const key of keys.filter((k) => RESTRICTION_HASH.test(k))) {
      const timed: string[] = [];
      for (const [userId, json] of redisHash(await link.send("HGETALL", [key]))) {
        const until = (JSON.parse(json) as { until: number | null }).until;
        if (until !== null) timed.push(String(until), restrictionMember(key, userId));
      }
      if (timed.length) await link.send("ZADD", [LAPSING_KEY, "NX", ...timed]);
    }
  } while (cursor !== "0");
  await link.send("SET", [LAPSING_INDEXED_KEY, "1"]);
}
