/**
 * The Redis engine, for several instances: opens its two connections (commands, auto-pipelined;
 * and a subscriber) and hands back its store, relay and roster. createServer picks it when
 * REDIS_URL is set.
 */
import { randomBytes } from "node:crypto";
import type { Config } from "../config.ts";
import { historyBounds } from "../engine.ts";
import type { Log } from "../metrics.ts";
import { RedisLink, redactedUrl } from "./link.ts";
import { RedisRelay, TAIL_CHECK_INTERVAL_MS } from "./relay.ts";
import { RedisRoster } from "./roster.ts";
import { RedisStore } from "./store.ts";

export { redactedUrl };

/** Bytes of randomness in an instance's id. */
const INSTANCE_ID_BYTES = 9;

/** Connects the Redis engine; rejects, naming REDIS_URL, when Redis cannot be reached. */
export async function openRedis(
  config: Config,
  url: string,
  log: Log,
  now: () => number,
  tailCheckMs = TAIL_CHECK_INTERVAL_MS,
): Promise<{ store: RedisStore; relay: RedisRelay; roster: RedisRoster }> {
  const commands = new RedisLink(url, "commands", log);
  const sub = new RedisLink(url, "subscriber", log);
  try {
    await Promise.all([commands.open(), sub.open()]);
  } catch (error) {
    commands.close();
    sub.close();
    throw new Error(`REDIS_URL=${redactedUrl(url)}: cannot reach Redis (${(error as Error).message})`);
  }
  const instance = randomBytes(INSTANCE_ID_BYTES).toString("base64url");
  const relay = new RedisRelay(sub, commands, instance, log, tailCheckMs);
  const store = new RedisStore(commands, historyBounds(config), now, instance);
  const roster = new RedisRoster(commands, instance, log, config, now);
  return { store, relay, roster };
}
