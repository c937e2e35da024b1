/**
 * The Redis engine, for several instances: opens its two connections (commands, auto-pipelined;
 * and a subscriber) and hands back its store, relay and roster. createServer picks it when
 * REDIS_URL is set.
 */
import { randomId } from "../core/random.ts";
import { redactedUrl, type Config } from "../config.ts";
import { historyBounds } from "../engine.ts";
import type { Log } from "../metrics.ts";
import { RedisLink } from "./link.ts";
import { RedisRelay, TAIL_CHECK_INTERVAL_MS } from "./relay.ts";
import { RedisRoster } from "./roster.ts";
import { RedisStore } from "./store.ts";


/** Bytes of randomness in an instance's id. */
const INSTANCE_ID_BYTES = 9;
/**
 * What one kept message costs Redis at most, per character of MAX_MESSAGE_CHARS: 4 bytes of
 * UTF-8 each, plus its seq, JSON fields, dedup key and sorted-set entry (a maximal message of
 * 2000 characters measures about 8.3 KB).
 */
const REDIS_BYTES_PER_CHAR = 4;
const REDIS_BYTES_PER_MESSAGE = 300;

/**
 * The most memory history may take in Redis: MAX_ROOMS × HISTORY_RETAIN messages of
 * MAX_MESSAGE_CHARS (issue 21: 15). `historyBytes({maxRooms: 10000, historyRetain: 1000, maxMessageChars: 2000}) // => 83e9`
 */
export function historyBytes(config: Pick<Config, "maxRooms" | "historyRetain" | "maxMessageChars">): number {
  return config.maxRooms * config.historyRetain * (REDIS_BYTES_PER_CHAR * config.maxMessageChars + REDIS_BYTES_PER_MESSAGE);
}

/**
 * Warns at start when Redis's `maxmemory` cannot hold the history the settings allow, or none
 * is set (then Redis grows until the machine runs out); and when its eviction policy would
 * drop history. Read from INFO, which managed Redis allows where CONFIG GET is refused.
 */
async function checkMemory(commands: RedisLink, config: Config, log: Log): Promise<void> {
  const info = String(await commands.send("INFO", ["memory"]));
  const field = (name: string) => new RegExp(`^${name}:(.*)$`, "m").exec(info)?.[1]?.trim();
  const maxmemory = Number(field("maxmemory") ?? 0);
  const policy = field("maxmemory_policy");
  const needed = historyBytes(config);
  if (!maxmemory || maxmemory < needed) {
    log("warn", "redis_memory", {
      maxmemory,
      needed,
      why: maxmemory
        ? "MAX_ROOMS × HISTORY_RETAIN messages of MAX_MESSAGE_CHARS may take more than Redis's maxmemory: lower them, or raise it"
        : "Redis has no maxmemory: MAX_ROOMS × HISTORY_RETAIN messages of MAX_MESSAGE_CHARS may take this much; set maxmemory (and maxmemory-policy noeviction)",
    });
  }
  if (policy && policy !== "noeviction") log("warn", "redis_eviction", { policy, why: "history and seq counters must not be evicted: set maxmemory-policy noeviction" });
}

/** Connects the Redis engine; rejects, naming REDIS_URL, when Redis cannot be reached. */
export async function openRedis(
  config: Config,
  url: string,
  log: Log,
  now: () => number,
  tailCheckMs = TAIL_CHECK_INTERVAL_MS,
): Promise<{ store: RedisStore; relay: RedisRelay; roster: RedisRoster }> {
  const commands = new RedisLink(url, "commands", log, config.redisTimeoutMs, true);
  const sub = new RedisLink(url, "subscriber", log, config.redisTimeoutMs);
  try {
    await Promise.all([commands.open(), sub.open()]);
  } catch (error) {
    commands.close();
    sub.close();
    throw new Error(`REDIS_URL=${redactedUrl(url)}: cannot reach Redis (${(error as Error).message})`);
  }
  await checkMemory(commands, config, log).catch((error) => log("warn", "redis_memory", { error: String(error) }));
  const instance = randomId(INSTANCE_ID_BYTES);
  const roster = new RedisRoster(commands, instance, log, config, now);
  const relay = new RedisRelay(sub, commands, instance, log, tailCheckMs, () => roster.recover(true));
  const store = new RedisStore(commands, historyBounds(config), now, instance);
  return { store, relay, roster };
}
