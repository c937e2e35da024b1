/**
 * The whole WebSocket integration suite (chat.test.ts) again, on the Redis engine: every server
 * it starts gets REDIS_URL (its own database of one real redis-server), unless it brings its own
 * store or SQLite file.
 */
import { afterAll, beforeAll } from "bun:test";
import { startRedis, useRedisEngine } from "./helpers.ts";

const redis = await startRedis();
// Only while this file runs: test files share the helpers module.
beforeAll(() => useRedisEngine(redis));
afterAll(async () => {
  useRedisEngine(null);
  await redis.cleanup();
});

// A query of its own makes it a module of its own, run again even when chat.test.ts ran already.
const suite = "./chat.test.ts?engine=redis";
await import(suite);
