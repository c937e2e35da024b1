/**
 * Rate limits (§10), all of them: the token bucket's rule (one table run against core/bucket.ts
 * and against bucket-take.lua in a real redis-server), abuse counting, a user's bucket shared by
 * its connections and instances and kept across reconnects, hellos per address per minute, the
 * TCP door, and what a frame spends while Redis is away. Time-dependent limits run on a stopped
 * clock, so counts are exact. Floods run on both engines; the cross-instance limits on Redis.
 */
import { RedisClient } from "bun";
import { Database } from "bun:sqlite";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { Buckets, RateLimiter, TokenBucket } from "../src/core/bucket.ts";
import { DEFAULTS } from "../src/config.ts";
import { openRedis } from "../src/redis/index.ts";
import bucketTakeAll from "../src/redis/lua/bucket-take-all.lua" with { type: "text" };
import bucketTake from "../src/redis/lua/bucket-take.lua" with { type: "text" };
import {
  Client,
  bounded,
  ENGINES,
  LineClient,
  WAIT_MS,
  engineServers,
  frozenClock,
  heldOnce,
  instances,
  messages,
  range,
  redisForSuite,
  sqliteWith,
  startServer,
  tcpUser,
  tempDir,
  user,
} from "./helpers.ts";

/**
 * A case of the token bucket's rule: a bucket of `burst` tokens refilled at `perSecond`, new (full)
 * at its first take, and its takes, each at a time (ms) with the answer it must get.
 */
interface BucketCase {
  burst: number;
  perSecond: number;
  takes: [at: number, taken: boolean][];
}

/**
 * The rule lives twice: core/bucket.ts's TokenBucket (one instance) and redis/lua/bucket-take.lua
 * (every instance, atomic in Redis). This one table runs against both, so neither can change the
 * rule alone. Each bucket here takes at least 1.5 s to fill again: Redis forgets a bucket after
 * that long in real time, while a case's clock is its own. The boundaries sit where the arithmetic
 * is exact: the two round differently after many partial refills (JS can hold 0.9999999999999996
 * tokens where Lua, keeping 14 digits between takes, holds 1).
 */
const BUCKET_CASES: Record<string, BucketCase> = {
  "a full burst, then nothing": {
    burst: 3,
    perSecond: 2,
    takes: [[1_000, true], [1_000, true], [1_000, true], [1_000, false]],
  },
  "one token per 1/perSecond seconds, not a moment before; a long pause refills only up to the burst": {
    burst: 3,
    perSecond: 2,
    takes: [[1_000, true], [1_000, true], [1_000, true], [1_499, false], [1_500, true], [1_500, false], [60_000, true], [60_000, true], [60_000, true], [60_000, false]],
  },
  "part-tokens add up across refused takes": {
    burst: 3,
    perSecond: 2,
    takes: [[0, true], [0, true], [0, true], [0, false], [250, false], [375, false], [500, true], [500, false]],
  },
  "a refused take spends nothing": {
    burst: 2,
    perSecond: 1,
    takes: [[0, true], [0, true], [0, false], [0, false], [0, false], [1_000, true], [1_000, false]],
  },
  "a clock that goes backwards refills nothing, and the refill goes on from the latest time": {
    burst: 2,
    perSecond: 1,
    takes: [[5_000, true], [5_000, true], [5_000, false], [4_000, false], [5_500, false], [6_000, true], [6_000, false]],
  },
  "10 at 5 a second: a token every 200 ms": {
    burst: 10,
    perSecond: 5,
    takes: [...range(1, 10).map((): [number, boolean] => [0, true]), [0, false], [100, false], [200, true], [200, false]],
  },
  "4 a minute, as a hello bucket: a token every 15 s": {
    burst: 4,
    perSecond: 4 / 60,
    takes: [[0, true], [0, true], [0, true], [0, true], [0, false], [7_500, false], [14_999, false], [15_001, true], [15_001, false]],
  },
};

/** Makes a case's takes of one implementation; resolves with each take's answer. */
type Taker = (c: BucketCase) => Promise<boolean[]>;

describe("the token bucket rule: one table, both implementations", () => {
  const redis = redisForSuite();
  let client: RedisClient;
  let sha: string;
  let shaAll: string;
  beforeAll(async () => {
    client = new RedisClient(redis.url(redis.freshDb()));
    sha = (await client.send("SCRIPT", ["LOAD", bucketTake])) as string;
    shaAll = (await client.send("SCRIPT", ["LOAD", bucketTakeAll])) as string;
  });
  afterAll(() => client?.close());

  const inProcess: Taker = async ({ burst, perSecond, takes }) => {
    const bucket = new TokenBucket(burst, perSecond, takes[0]![0]);
    return takes.map(([at]) => bucket.take(at));
  };
  /** As the Redis engine calls it (redis/roster.ts): KEYS[1] the bucket, ARGV burst, tokens per ms, now. */
  const inRedis: Taker = async ({ burst, perSecond, takes }) => {
    const key = `test:bucket:${crypto.randomUUID()}`;
    // Sent together, so they reach Redis within moments of each other, in order.
    const answers = await Promise.all(
      takes.map(([at]) => client.send("EVALSHA", [sha, "1", key, String(burst), String(perSecond / 1000), String(at)])),
    );
    return answers.map((answer) => (answer as [number, string, number])[0] === 1);
  };

  /**
   * As redis/roster.ts takes frames' tokens: the takes asked for together in one call, the key
   * once per take, at one time. A case's takes at the same time go together.
   */
  const inRedisTogether: Taker = async ({ burst, perSecond, takes }) => {
    const key = `test:bucket:${crypto.randomUUID()}`;
    const groups: number[][] = [];
    for (const [at] of takes) {
      const last = groups.at(-1);
      if (last?.[0] === at) last.push(at);
      else groups.push([at]);
    }
    const answers: boolean[] = [];
    for (const group of groups) {
      const flat = (await client.send("EVALSHA", [sha, String(group.length), ...group.map(() => key), String(burst), String(perSecond / 1000), String(group[0])])) as (number | string)[];
      expect(flat).toHaveLength(3 * group.length);
      for (let i = 0; i < group.length; i++) answers.push(flat[3 * i] === 1);
    }
    return answers;
  };

  /** As redis/roster.ts takes a room start's tokens (bucket-take-all.lua), here of one bucket: KEYS the buckets, ARGV now, then each one's burst and tokens per ms. */
  const inRedisAll: Taker = async ({ burst, perSecond, takes }) => {
    const key = `test:bucket:${crypto.randomUUID()}`;
    const answers = await Promise.all(
      takes.map(([at]) => client.send("EVALSHA", [shaAll, "1", key, String(at), String(burst), String(perSecond / 1000)])),
    );
    return answers.map((answer) => answer === 1);
  };

  for (const [implementation, take] of [
    ["TokenBucket (core/bucket.ts)", inProcess],
    ["bucket-take-all.lua in redis-server", inRedisAll],
    ["bucket-take.lua in redis-server", inRedis],
    ["bucket-take.lua, a moment's takes in one call", inRedisTogether],
  ] as const) {
    describe(implementation, () => {
      for (const [name, c] of Object.entries(BUCKET_CASES)) {
        test(name, async () => {
          const answers = await take(c);
          expect(c.takes.map(([at], i) => [at, answers[i]])).toEqual(c.takes);
        });
      }
    });
  }
});

describe("rate limiting (injected clock)", () => {
  test("a bucket: a burst, then one token per 1/perSecond seconds", () => {
    const bucket = new TokenBucket(3, 2, 1_000);
    expect([1, 2, 3, 4].map(() => bucket.take(1_000))).toEqual([true, true, true, false]);
    expect(bucket.take(1_499)).toBe(false);
    expect(bucket.take(1_500)).toBe(true);
    expect(bucket.take(1_500)).toBe(false);
    // A long pause refills only up to the burst.
    expect([1, 2, 3, 4].map(() => bucket.take(60_000))).toEqual([true, true, true, false]);
  });

  test("a clock that goes backwards refills nothing", () => {
    const bucket = new TokenBucket(1, 1000, 5_000);
    expect(bucket.take(5_000)).toBe(true);
    expect(bucket.take(4_000)).toBe(false);
  });

  test("abuse after N limited answers in a row on one connection, whichever bucket; a success resets", () => {
    const user = new TokenBucket(1, 1, 0);
    const own = new TokenBucket(1, 1, 0);
    const limiter = new RateLimiter(3);
    expect(limiter.count(user.take(0))).toBe("ok");
    expect([limiter.count(user.take(0)), limiter.count(user.take(0))]).toEqual(["limited", "limited"]);
    expect(limiter.count(own.take(0))).toBe("ok");
    expect([limiter.count(user.take(0)), limiter.count(own.take(0)), limiter.count(user.take(0))]).toEqual(["limited", "limited", "abuse"]);
  });

  test("one bucket shared by two connections limits them together", () => {
    const shared = new TokenBucket(3, 1, 0);
    const [a, b] = [new RateLimiter(100), new RateLimiter(100)];
    expect([a.count(shared.take(0)), b.count(shared.take(0)), a.count(shared.take(0)), b.count(shared.take(0))]).toEqual(["ok", "ok", "ok", "limited"]);
  });

  test("Buckets keeps a key's bucket until it is full again, or kept by the caller", () => {
    const buckets = new Buckets(2, 1);
    buckets.get("u1", 0).take(0);
    buckets.get("u2", 0).take(0);
    buckets.get("u3", 0);
    buckets.sweep(500, (key) => key === "u2");
    expect(buckets.size).toBe(2); // u3 was full; u1 has not refilled yet; u2 is kept
    expect(buckets.get("u1", 500).take(500)).toBe(true);
    expect(buckets.get("u1", 500).take(500)).toBe(false); // the same bucket, half a token left
    buckets.sweep(10_000);
    expect(buckets.size).toBe(0);
  });
});

for (const engine of ENGINES) {
  describe(engine, () => {
    const { startServer } = engineServers(engine);

    describe("floods", () => {
      test("a flood past the rate limit gets rate_limited, then 1008; others are unaffected", async () => {
        const frozen = Date.now();
        // A stopped clock refills nothing, so the counts below are exact.
        await using server = await startServer({ now: () => frozen, rateLimitBurst: 5, rateLimitPerSecond: 1, rateLimitAbuseErrors: 3 });
        const other = await user(server, "other", "r");
        const flooder = await user(server, "flooder", "r"); // join: 1 token
        await other.expect("presence");
        for (let i = 0; i < 4; i++) flooder.send({ type: "history", room: "r", ref: `h${i}` });
        flooder.send({ type: "ping", ref: "free" }); // pings cost nothing
        for (let i = 4; i < 7; i++) flooder.send({ type: "history", room: "r", ref: `h${i}` });
        const answers = [];
        for (let i = 0; i < 8; i++) answers.push(await flooder.next());
        expect(answers.map((f) => `${f.type}:${f.type === "error" ? f.code : ""}:${f.ref}`)).toEqual([
          "history::h0",
          "history::h1",
          "history::h2",
          "history::h3",
          "pong::free",
          "error:rate_limited:h4",
          "error:rate_limited:h5",
          "error:rate_limited:h6",
        ]);
        expect(await flooder.closed).toEqual({ code: 1008, reason: "rate limit exceeded" });
        const m = await other.say("r", "unaffected");
        expect(m.text).toBe("unaffected");
      });
    });

    describe("floods on the TCP door", () => {
      test("the rate limit applies: rate_limited lines, then the connection is closed", async () => {
        const frozen = Date.now();
        await using server = await startServer({ tcpPort: 0, now: () => frozen, rateLimitBurst: 3, rateLimitPerSecond: 1, rateLimitAbuseErrors: 2 });
        const alice = await user(server, "alice", "general");
        const { client: bob } = await tcpUser(server, "bob"); // the name line costs nothing
        await alice.expect("presence");
        bob.write("1\n2\n3\n4\n5\n");
        const rest = await bob.untilClosed();
        expect(rest.split("\n").filter((l) => l.startsWith("!"))).toEqual([
          "! rate_limited: too many frames; slow down",
          "! rate_limited: too many frames; slow down",
        ]);
        const texts = [];
        for (let i = 0; i < 3; i++) texts.push((await alice.expect("message")).text);
        expect(texts).toEqual(["1", "2", "3"]);
        expect(await alice.next()).toMatchObject({ type: "presence", event: "leave" });
        alice.close();
      });
    });
  });
}

// On SQLite, the default engine, only: on a stopped clock, Redis would still forget a bucket in real time.
describe("rate limits belong to users and addresses (§10)", () => {
  test("reconnecting refills nothing: a hello-join-send loop is held to the user's bucket", async () => {
    await using server = await startServer({ now: frozenClock(), rateLimitBurst: 10, presenceGraceMs: 0 });
    const watcher = await user(server, "watcher", "r");
    let session: string | undefined;
    for (let round = 0; round < 5; round++) {
      const c = await Client.connect(server.wsUrl);
      session = (await c.hello("looper", session)).session;
      c.send({ type: "join", room: "r" }); // one token
      for (let i = 0; i < 9; i++) c.send({ type: "send", room: "r", id: `${round}-${i}`, text: "spam" });
      await c.sync();
      c.close();
      await c.closed;
    }
    watcher.send({ type: "send", room: "r", id: "marker", text: "marker" });
    await watcher.until((f) => f.id === "marker");
    // Only the first round had tokens: its join and its nine sends. v1 stored 45.
    expect(messages(watcher.frames).map((m) => m.id)).toEqual([...Array.from({ length: 9 }, (_, i) => `0-${i}`), expect.any(String)]);
    watcher.close();
  });

  test("a user's connections share one bucket; pings and frames before hello spend the connection's own", async () => {
    await using server = await startServer({ now: frozenClock(), rateLimitBurst: 4, rateLimitAbuseErrors: 100 });
    const tab1 = await Client.connect(server.wsUrl);
    const w = await tab1.hello("two tabs");
    const tab2 = await Client.connect(server.wsUrl);
    await tab2.hello("two tabs", w.session);
    for (let i = 0; i < 6; i++) tab1.send({ type: "ping", ref: `p${i}` }); // the connection's bucket
    await tab1.until((f) => f.ref === "p5");
    await tab1.join("r"); // the user's: 3 left
    await tab2.join("r"); // 2 left
    for (const ref of ["h1", "h2", "h3"]) tab2.send({ type: "history", room: "r", ref });
    const answers = await tab2.until((f) => f.ref === "h3");
    expect(answers.map((f) => `${f.type}:${f.code ?? ""}`)).toEqual(["history:", "history:", "error:rate_limited"]);
    // tab1's pings: its hello took one of its own four tokens, so three pongs, then nothing left.
    expect(tab1.frames.filter((f) => f.ref?.startsWith("p")).map((f) => f.code ?? f.type)).toEqual([
      "pong",
      "pong",
      "pong",
      "rate_limited",
      "rate_limited",
      "rate_limited",
    ]);
    tab1.close();
    tab2.close();
  });

  test("a refused ping's retryAfterMs is its connection's bucket's wait, not its user's", async () => {
    let t = Date.now();
    await using server = await startServer({ now: () => t, rateLimitBurst: 2, rateLimitPerSecond: 2, rateLimitAbuseErrors: 100 });
    const c = await Client.connect(server.wsUrl);
    await c.hello("pinger"); // one of the connection's two tokens
    for (const ref of ["p1", "p2"]) c.send({ type: "ping", ref });
    expect((await c.until((f) => f.ref === "p2")).map((f) => f.retryAfterMs ?? f.type)).toEqual(["pong", 500]);
    // A quarter second later the connection's bucket holds half a token; the user's is full.
    t += 250;
    c.send({ type: "ping", ref: "p3" });
    expect(await c.next()).toMatchObject({ code: "rate_limited", ref: "p3", retryAfterMs: 250 });
    c.close();
  });

  test("a flood before hello is limited and closed; so is a ping flood", async () => {
    await using server = await startServer({ now: frozenClock(), rateLimitBurst: 3, rateLimitAbuseErrors: 2 });
    const early = await Client.connect(server.wsUrl);
    for (let i = 0; i < 6; i++) early.send({ type: "join", room: "r", ref: `j${i}`, pad: "x".repeat(8000) });
    const closed = await early.closed;
    expect(early.frames.map((f) => f.code)).toEqual(["not_ready", "not_ready", "not_ready", "rate_limited", "rate_limited"]);
    expect(closed).toEqual({ code: 1008, reason: "rate limit exceeded" });

    const pinger = await user(server, "pinger");
    for (let i = 0; i < 6; i++) pinger.send({ type: "ping" });
    expect(await pinger.closed).toEqual({ code: 1008, reason: "rate limit exceeded" });
    expect(pinger.frames.map((f) => f.code ?? f.type)).toEqual(["welcome", "pong", "pong", "rate_limited", "rate_limited"]);
  });

  test("hellos from one address are limited per minute, then 1008; TCP counts too; the sessions table stops growing", async () => {
    using dir = tempDir();
    const path = join(dir.path, "chat.sqlite");
    await using server = await startServer({ now: frozenClock(), databasePath: path, helloRatePerMinute: 4, tcpPort: 0 });
    for (let i = 0; i < 4; i++) {
      const c = await Client.connect(server.wsUrl);
      await c.hello(`churn ${i}`);
      c.close();
      await c.closed;
    }
    const fifth = await Client.connect(server.wsUrl);
    fifth.send({ type: "hello", name: "churn 4", ref: "h" });
    // The clock stands still: the next of 4 a minute comes in 15 s (§11.4: rate_limited says when).
    expect(await fifth.next()).toEqual({ type: "error", code: "rate_limited", message: expect.any(String), ref: "h", retryAfterMs: 15_000 });
    expect(await fifth.closed).toEqual({ code: 1008, reason: "rate limit exceeded" });
    const tcp = await LineClient.connect(server.chat.tcpPort!);
    await tcp.readUntil("name: ");
    tcp.write("nc user\n");
    expect(await tcp.untilClosed()).toStartWith("! rate_limited: ");
    const db = new Database(path, { readonly: true });
    expect(db.query<{ n: number }, []>("SELECT count(*) AS n FROM sessions").get()!.n).toBe(4);
    db.close();
  });
});

// An IPv6 host owns a /64 and takes a new address within it at will: each rule counts the /64.
describe("an IPv6 client's address is its /64 (§10)", () => {
  const from = (ip: string) => ({ "x-forwarded-for": ip });

  test("HELLO_RATE_PER_MINUTE: hellos from new addresses of one /64 spend its one bucket; the next /64 has its own", async () => {
    await using server = await startServer({ now: frozenClock(), trustProxy: true, helloRatePerMinute: 2 });
    for (const [i, ip] of ["2001:db8:1:2::1", "2001:db8:1:2::2"].entries()) {
      const c = await Client.connect(server.wsUrl, from(ip));
      await c.hello(`churn ${i}`);
      c.close();
    }
    const third = await Client.connect(server.wsUrl, from("2001:db8:1:2::3"));
    third.send({ type: "hello", name: "third" });
    expect(await third.next()).toMatchObject({ type: "error", code: "rate_limited" });
    expect(await third.closed).toEqual({ code: 1008, reason: "rate limit exceeded" });
    const next = await Client.connect(server.wsUrl, from("2001:db8:1:3::1"));
    expect((await next.hello("next door")).type).toBe("welcome");
    next.close();
  });

  test("ROOM_STARTS_PER_HOUR_PER_IP: rooms started from one /64, over WebSocket and the HTTP API, spend its one bucket", async () => {
    const adminToken = "admin-token-for-the-tests-0123456789";
    await using server = await startServer({ now: frozenClock(), trustProxy: true, adminToken, roomStartsPerHour: 10, roomStartsPerHourPerIp: 2 });
    const ann = await Client.connect(server.wsUrl, from("2001:db8:1:2::1"));
    await ann.hello("ann");
    await ann.join("one");
    const bob = await Client.connect(server.wsUrl, from("2001:db8:1:2::2"));
    await bob.hello("bob");
    await bob.join("two");
    bob.send({ type: "join", room: "three", ref: "three" });
    expect(await bob.next()).toMatchObject({ type: "error", code: "rate_limited", ref: "three" });
    // A bot posting from a third address of the /64 starts nothing either.
    const made = await server.http("/api/bots", {
      method: "POST",
      headers: { authorization: `Bearer ${adminToken}`, "content-type": "application/json" },
      body: JSON.stringify({ name: "poster" }),
    });
    const { token } = (await made.json()) as { token: string };
    const post = (ip: string, room: string) =>
      server.http(`/api/rooms/${room}/messages`, {
        method: "POST",
        headers: { authorization: `Bearer ${token}`, "content-type": "application/json", ...from(ip) },
        body: JSON.stringify({ text: "first" }),
      });
    expect((await post("2001:db8:1:2::3", "four")).status).toBe(429);
    expect((await post("2001:db8:1:3::1", "four")).status).toBe(201);
    for (const c of [ann, bob]) c.close();
  });
});

// On SQLite only: the frame that waits is held in a store of the test's own.
describe("frames waiting behind one that waits for storage are bounded per connection", () => {
  /** 2 × RATE_LIMIT_BURST + RATE_LIMIT_ABUSE_ERRORS frames may wait, the one waiting for storage included. */
  const LIMITS = { rateLimitBurst: 2, rateLimitAbuseErrors: 3 };
  const MAX_WAITING = 2 * LIMITS.rateLimitBurst + LIMITS.rateLimitAbuseErrors;

  test("WebSocket: one frame past the bound is answered rate_limited and the connection closed 1008 at once, while the join still waits", async () => {
    const held = heldOnce();
    await using server = await startServer({ ...LIMITS, store: sqliteWith((real) => ({ roomPage: async (r, q) => (await held.pass(), real.roomPage(r, q)) })) });
    const a = await user(server, "alice");
    held.arm();
    a.send({ type: "join", room: "x", ref: "join" });
    await held.waiting;
    // The join and MAX_WAITING - 1 frames behind it fill the queue; the next is one too many.
    const pad = "x".repeat(30_000);
    for (let i = 0; i < MAX_WAITING + 20; i++) a.send({ type: "typing", room: "x", ref: `t${i}`, pad });
    // Closed while the join is still held: the flood was not buffered until its turn.
    const closed = await bounded(a.closed, "a close while the join waits");
    held.release();
    expect({ closed, answers: a.frames.slice(1).map((f) => `${f.code}:${f.ref}`) }).toEqual({
      closed: { code: 1008, reason: "rate limit exceeded" },
      answers: [`rate_limited:t${MAX_WAITING - 1}`],
    });
    expect(await (await server.http("/metrics")).text()).toContain('chat_errors_total{code="rate_limited"} 1\n');
    expect(await server.logLine((l) => l.event === "close")).toMatchObject({ code: 1008, reason: "rate limit exceeded" });
  });

  test("TCP: lines past the bound behind a name line that waits for storage: rate_limited, then closed, while the hello still waits", async () => {
    const held = heldOnce();
    await using server = await startServer({ ...LIMITS, tcpPort: 0, store: sqliteWith((real) => ({ serverBan: async (u, ip, now) => (await held.pass(), real.serverBan(u, ip, now)) })) });
    const nc = await LineClient.connect(server.chat.tcpPort!);
    await nc.readUntil("name: ");
    held.arm();
    nc.write("bob\n");
    await held.waiting;
    nc.write("spam\n".repeat(MAX_WAITING + 20));
    const rest = await nc.untilClosed();
    held.release();
    expect(rest.split("\n").filter((l) => l.startsWith("!"))).toEqual(["! rate_limited: too many frames; slow down"]);
    expect(await server.logLine((l) => l.event === "close")).toMatchObject({ transport: "tcp", code: 1008, reason: "rate limit exceeded" });
  });
});

describe("across instances (redis)", () => {
  const redis = redisForSuite();

  /** A `leave` of a room the client is not in: it costs a token and is answered without storage. */
  const leave = (c: Client, ref: string) => c.send({ type: "leave", room: "nowhere", ref });
  const notJoined = (ref: string) => ({ type: "error" as const, code: "not_joined", message: expect.any(String), ref });
  const limited = (ref: string) => ({ type: "error" as const, code: "rate_limited", message: expect.any(String), ref, retryAfterMs: expect.any(Number) });

  test("hellos from one address are counted on every instance", async () => {
    const t = Date.now();
    await using servers = await instances(redis, 2, { now: () => t, helloRatePerMinute: 4 });
    const [a, b] = servers;
    for (let i = 0; i < 4; i++) {
      const c = await Client.connect((i % 2 ? b : a).wsUrl);
      await c.hello(`churn ${i}`);
      c.close();
    }
    const fifth = await Client.connect(a.wsUrl);
    fifth.send({ type: "hello", name: "churn 4" });
    expect(await fifth.expect("error")).toMatchObject({ code: "rate_limited", retryAfterMs: expect.any(Number) });
    expect(await fifth.closed).toEqual({ code: 1008, reason: "rate limit exceeded" });
  });

  test("one user connected to A and to B at once spends one bucket: k frames on A, N-k+1 on B, and B's last is the one refused", async () => {
    const t = Date.now();
    // A still clock: nothing refills, so the count is exact.
    const N = 6;
    const k = 2;
    await using servers = await instances(redis, 2, { now: () => t, rateLimitBurst: N, rateLimitPerSecond: 1 });
    const [a, b] = servers;
    const onA = await Client.connect(a.wsUrl);
    const welcome = await onA.hello("twin");
    const onB = await Client.connect(b.wsUrl);
    expect((await onB.hello("twin", welcome.session)).user).toEqual(welcome.user);
    for (let i = 0; i < k; i++) leave(onA, `a${i}`);
    expect(await onA.sync()).toEqual(range(0, k - 1).map((i) => notJoined(`a${i}`)));
    for (let i = 0; i <= N - k; i++) leave(onB, `b${i}`);
    expect(await onB.sync()).toEqual([...range(0, N - k - 1).map((i) => notJoined(`b${i}`)), limited(`b${N - k}`)]);
    // A's side of it is empty too.
    leave(onA, "a-last");
    expect(await onA.sync()).toEqual([limited("a-last")]);
    for (const c of [onA, onB]) c.close();
  });

  test("a user's bucket follows it: reconnecting to the other instance refills nothing", async () => {
    const t = Date.now();
    // A slow refill: Redis forgets a bucket once it would be full again, in real time (10 s here).
    await using servers = await instances(redis, 2, { now: () => t, rateLimitBurst: 10, rateLimitPerSecond: 1, presenceGraceMs: 0 });
    const [a, b] = servers;
    const watcher = await Client.connect(a.wsUrl);
    await watcher.hello("watcher");
    await watcher.join("r");
    let session: string | undefined;
    for (let round = 0; round < 4; round++) {
      const server = round % 2 ? b : a;
      const c = await Client.connect(server.wsUrl);
      const welcome = await c.hello("looper", session);
      session = welcome.session;
      c.send({ type: "join", room: "r" }); // one token
      for (let i = 0; i < 9; i++) c.send({ type: "send", room: "r", id: `${round}-${i}`, text: "spam" });
      await c.sync();
      c.close();
    }
    watcher.send({ type: "send", room: "r", id: "marker", text: "marker" });
    await watcher.until((f) => f.id === "marker");
    // Only the first round had tokens; per instance, each instance's first round would have had them.
    expect(messages(watcher.frames).map((m) => m.id)).toEqual([...range(0, 8).map((i) => `0-${i}`), "marker"]);
    watcher.close();
  });

  // Issue 21: 7, as rate.ts does it here: a room start the user's own bucket refuses spends nothing
  // of its address's, shared by everyone behind it.
  test("a room start the user's bucket refuses spends nothing of the address's shared bucket", async () => {
    const now = Date.now();
    const opened = await openRedis({ ...DEFAULTS, roomStartsPerHour: 1, roomStartsPerHourPerIp: 2 }, redis.url(redis.freshDb()), () => {}, () => now);
    try {
      const ip = "198.51.100.9";
      const first = await opened.roster.takeRoomStart("g_ann", ip, now);
      const refused = await opened.roster.takeRoomStart("g_ann", ip, now);
      const other = await opened.roster.takeRoomStart("g_bob", ip, now);
      expect([first, refused, other]).toEqual([true, false, true]);
    } finally {
      await opened.roster.close();
      await opened.relay.close();
      await opened.store.close();
    }
  });

  test("Redis stops: a user's frames spend this instance's copy of its bucket (logged once); back, the shared bucket as Redis kept it", async () => {
    const t = Date.now();
    // A still clock, and a bucket Redis keeps for 20 s (until it would be full again).
    const N = 20;
    await using servers = await instances(redis, 1, { now: () => t, rateLimitBurst: N, rateLimitPerSecond: 1 });
    const [a] = servers;
    const c = await Client.connect(a.wsUrl);
    await c.hello("steady");
    leave(c, "shared");
    leave(c, "shared too");
    expect(await c.sync()).toEqual([notJoined("shared"), notJoined("shared too")]);

    await redis.stop("SIGTERM");
    // This instance's copy was never spent: N frames, then one refused; every one answered.
    for (let i = 0; i <= N; i++) leave(c, `down ${i}`);
    expect(await c.sync()).toEqual([...range(0, N - 1).map((i) => notJoined(`down ${i}`)), limited(`down ${N}`)]);
    expect(a.logs.filter((l) => l.event === "rate_buckets_local")).toHaveLength(1);

    await redis.start();
    await a.logLine((l) => l.event === "redis_connected" && l.link === "commands");
    // The shared bucket again: the N - 2 tokens it had.
    for (let i = 0; i <= N - 2; i++) leave(c, `back ${i}`);
    expect(await c.sync()).toEqual([...range(0, N - 3).map((i) => notJoined(`back ${i}`)), limited(`back ${N - 2}`)]);
    expect(a.logs.filter((l) => l.event === "rate_buckets_local")).toHaveLength(1);
    expect(a.logs.filter((l) => l.event === "rate_buckets_shared")).toHaveLength(1);
    c.close();
  });

  test("Redis hangs (CLIENT PAUSE): a frame waits for the shared bucket only a moment, then spends this instance's copy", async () => {
    await using servers = await instances(redis, 1);
    const [a] = servers;
    const c = await Client.connect(a.wsUrl);
    await c.hello("patient");
    // Scripts wait until the pause ends, far beyond the test's bound; reads (UNPAUSE) still run.
    await redis.command("CLIENT", "PAUSE", String(3 * WAIT_MS), "WRITE");
    try {
      leave(c, "paused");
      expect(await c.sync()).toEqual([notJoined("paused")]);
      expect(a.logs.find((l) => l.event === "rate_buckets_local")?.error).toMatch(/no answer within \d+ ms/);
    } finally {
      await redis.command("CLIENT", "UNPAUSE");
    }
    c.close();
  });
});
