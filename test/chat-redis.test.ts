/**
 * The WebSocket, TCP and storage-bound suites (chat.test.ts, tcp.test.ts, storage.test.ts) again, on the Redis engine:
 * every server they start gets REDIS_URL (its own database of one real redis-server), unless it
 * brings its own store or SQLite file.
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

// A query of its own makes each a module of its own, run again even when it ran already.
for (const suite of ["./chat.test.ts?engine=redis", "./tcp.test.ts?engine=redis", "./storage.test.ts?engine=redis"]) await import(suite);
