/**
 * The Redis engine's indexes over data that instances before them wrote without them: each is
 * filled in here from the data itself, so an upgrade needs no step of its own. It is safe beside
 * instances at work: the scripts that read an index check what it says against the data
 * (restrictions-sweep.lua, reclaim.lua).
 */
import { HELD_KEY, HELD_NEWEST_KEY, LAPSING_INDEXED_KEY, LAPSING_KEY, ROOM_KEY_PREFIX, restrictionMember } from "./keys.ts";
import { redisHash, type RedisLink } from "./link.ts";
import { SCRIPTS } from "./scripts.ts";

/** Keys one SCAN step looks at (a hint to Redis: it may answer more or fewer). */
const SCAN_KEYS_PER_STEP = 1000;
/** Bounds the rooms one run of held-index.lua looks at. */
const HELD_INDEXED_PER_RUN = 500;
/** The rooms' restriction hashes (authKeys(room).bans and .mutes) among what SCAN finds. */
const isRestrictionHash = (key: string) => key.startsWith(ROOM_KEY_PREFIX) && (key.endsWith(":bans") || key.endsWith(":mutes"));

/**
 * Puts the timed room bans and mutes written before LAPSING_KEY existed into it (NX: one written
 * since is indexed already), once for every instance: LAPSING_INDEXED_KEY says it was done.
 */
export async function indexRestrictions(link: RedisLink): Promise<void> {
  if (await link.send("EXISTS", [LAPSING_INDEXED_KEY])) return;
  let cursor = "0";
  do {
    const [next, keys]: [string, string[]] = await link.send("SCAN", [cursor, "MATCH", `${ROOM_KEY_PREFIX}*s`, "COUNT", String(SCAN_KEYS_PER_STEP)]);
    cursor = String(next);
    for (const key of keys.filter(isRestrictionHash)) {
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

/**
 * Puts the rooms of HELD_KEY that HELD_NEWEST_KEY lacks into it, by their newest entry's time.
 * The rooms are read at once: a room that leaves or joins meanwhile shifts no other out of reach.
 */
export async function indexHeld(link: RedisLink): Promise<void> {
  const rooms: string[] = await link.send("ZRANGE", [HELD_KEY, "0", "-1"]);
  for (let at = 0; at < rooms.length; at += HELD_INDEXED_PER_RUN) {
    await link.run(SCRIPTS.heldIndex, [HELD_KEY, HELD_NEWEST_KEY], [ROOM_KEY_PREFIX, ...rooms.slice(at, at + HELD_INDEXED_PER_RUN)]);
  }
}
