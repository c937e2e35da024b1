/**
 * The Redis engine (REDIS_URL) with a real redis-server started here on a free loopback port,
 * its AOF in a temp dir: several instances share rooms, seq, history, dedup keys, sessions,
 * presence and names, and nothing is lost or repeated when a connection, Redis itself or an
 * instance dies. The whole WebSocket suite also runs on this engine (chat-redis.test.ts).
 */
import { RedisClient } from "bun";
import { createHash } from "node:crypto";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createServer, loadConfig, type ServerOptions } from "../server.ts";
import { nameKeys } from "../src/protocol/rules.ts";
import {
  Client,
  bounded,
  burst,
  catchUp,
  freePort,
  spawnServer,
  startRedis,
  startServer,
  type Frame,
  type TestRedis,
  type TestServer,
  user,
  WAIT_MS,
} from "./helpers.ts";

let redis: TestRedis;
beforeAll(async () => {
  redis = await startRedis();
});
afterAll(() => redis.cleanup());

/** The tail check's period in the test that needs it (15 s in production). */
const TAIL_CHECK_MS = 100;

/** Each test's instances share a database of their own. */
let lastDb = 0;
async function instances(n: number, options: ServerOptions = {}): Promise<TestServer[]> {
  const redisUrl = redis.url(++lastDb);
  return Promise.all(Array.from({ length: n }, () => startServer({ redisUrl, rateLimitBurst: 1000, rateLimitPerSecond: 1000, ...options })));
}

/** Two instances; alice on A and bob on B in `room`, alice having heard bob come. */
async function pair(room: string, options: ServerOptions = {}) {
  const [a, b] = (await instances(2, options)) as [TestServer, TestServer];
  const alice = await Client.connect(a.wsUrl);
  const welcome = await alice.hello("alice");
  await alice.join(room);
  const bob = await Client.connect(b.wsUrl);
  await bob.hello("bob");
  const joined = await bob.join(room);
  await alice.expect("presence");
  const done = async () => {
    alice.close();
    bob.close();
    await Promise.all([a.stop(), b.stop()]);
  };
  return { a, b, alice, bob, welcome, joined, done };
}

/** Bob on instance B in `room`, then alice on A; resolved once bob has heard her come. */
async function meet(a: { wsUrl: string }, b: { wsUrl: string }, room: string) {
  const bob = await Client.connect(b.wsUrl);
  await bob.hello("bob");
  await bob.join(room);
  const alice = await Client.connect(a.wsUrl);
  const welcome = await alice.hello("alice");
  await alice.join(room);
  expect(await bob.expect("presence")).toEqual({ type: "presence", room, event: "join", user: welcome.user });
  return { alice, bob, welcome };
}

/** The id of the instance through which a user is a member of `room`, read from the roster in Redis. */
async function instanceOf(admin: RedisClient, room: string, userId: string): Promise<string> {
  const here = (await admin.send("HKEYS", [`chat:room:${room}:here`])) as string[];
  return here.find((field) => field.endsWith(`|${userId}`))!.split("|")[0]!;
}

const messages = (frames: Frame[]) => frames.filter((f) => f.type === "message");
const names = (members: { name: string }[]) => members.map((m) => m.name);
/** The consecutive numbers from..to. */
const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);
/** A `leave` of a room the client is not in: it costs a token and is answered without storage. */
const leave = (c: Client, ref: string) => c.send({ type: "leave", room: "nowhere", ref });
const notJoined = (ref: string) => ({ type: "error" as const, code: "not_joined", message: expect.any(String), ref });
const limited = (ref: string) => ({ type: "error" as const, code: "rate_limited", message: expect.any(String), ref });

describe("REDIS_URL", () => {
  test("is validated: redis:// or rediss:// with a host; unset keeps SQLite", () => {
    expect(loadConfig({ REDIS_URL: "http://127.0.0.1:6379" })).toEqual({
      ok: false,
      errors: ["REDIS_URL=http://127.0.0.1:6379: a redis:// or rediss:// URL, e.g. redis://127.0.0.1:6379"],
    });
    expect(loadConfig({ REDIS_URL: "localhost:6379" }).ok).toBe(false);
    const ok = loadConfig({ REDIS_URL: "rediss://user:secret@redis.example.com:6380/2" });
    expect(ok.ok && ok.config.redisUrl).toBe("rediss://user:secret@redis.example.com:6380/2");
    const unset = loadConfig({});
    expect(unset.ok && unset.config.redisUrl).toBeNull();
  });

  test("an unreachable Redis at start: one clear line, exit 1, never listening", async () => {
    const url = `redis://:secret@127.0.0.1:${freePort()}`;
    await expect(createServer({ port: 0, host: "127.0.0.1", redisUrl: url, log: () => {} })).rejects.toThrow(
      /^REDIS_URL=redis:\/\/:\*\*\*@127\.0\.0\.1:\d+: cannot reach Redis/,
    );
    const proc = Bun.spawn([process.execPath, `${import.meta.dir}/../server.ts`], {
      env: { ...process.env, PORT: "0", REDIS_URL: url },
      stdout: "pipe",
      stderr: "pipe",
    });
    const [code, stdout, stderr] = await bounded(Promise.all([proc.exited, new Response(proc.stdout).text(), new Response(proc.stderr).text()]), "exit");
    expect(code).toBe(1);
    expect(stdout).toBe("");
    expect(stderr).toMatch(/^REDIS_URL=redis:\/\/:\*\*\*@127\.0\.0\.1:\d+: cannot reach Redis \(.+\)\n$/);
  });
});

describe("two instances", () => {
  test("a user on A and a user on B chat both ways with one seq sequence; members and presence span both", async () => {
    const [a, b] = (await instances(2)) as [TestServer, TestServer];
    const alice = await Client.connect(a.wsUrl);
    await alice.hello("alice");
    expect((await alice.join("lobby")).seq).toBe(0);
    const first = await alice.say("lobby", "before bob");
    const bob = await Client.connect(b.wsUrl);
    await bob.hello("bob");
    const joined = await bob.join("lobby");
    expect(joined.seq).toBe(1);
    expect(joined.messages).toEqual([first]);
    const bobUser = joined.members.find((m: { name: string }) => m.name === "bob");
    expect(joined.members).toEqual([bobUser, first.user]);
    expect(await alice.expect("presence")).toEqual({ type: "presence", room: "lobby", event: "join", user: bobUser });

    const hi = await alice.say("lobby", "hi bob");
    expect(await bob.expect("message")).toEqual(hi);
    const reply = await bob.say("lobby", "hi alice");
    expect(messages(await alice.until((f) => f.type === "message"))).toEqual([reply]);
    expect([first.seq, hi.seq, reply.seq]).toEqual([1, 2, 3]);
    // Both read the same history, from either instance.
    for (const s of [a, b]) {
      const page = (await (await s.http("/api/rooms/lobby/messages")).json()) as { messages: Frame[] };
      expect(page.messages).toEqual([first, hi, reply]);
    }
    alice.close();
    bob.close();
    await Promise.all([a.stop(), b.stop()]);
  });

  test("a session made on A works on B; a send retried on B is answered with A's original, stored once", async () => {
    const { b, alice, bob, welcome, done } = await pair("dedup");
    const original = await alice.say("dedup", "first try", "msg-1");
    expect(await bob.expect("message")).toEqual(original);

    // Alice's connection broke before she saw her echo, say; she retries on B.
    const again = await Client.connect(b.wsUrl);
    expect((await again.hello("alice", welcome.session)).user).toEqual(welcome.user);
    // Alice is in the room already (on A): her second connection, on B, is no news to anyone.
    expect(names((await again.join("dedup", original.seq)).members).sort()).toEqual(["alice", "bob"]);
    again.send({ type: "send", room: "dedup", id: "msg-1", text: "second try" });
    expect(await again.expect("message")).toEqual(original);
    // Nobody else hears the retry: the next thing anyone hears is the marker.
    const marker = await again.say("dedup", "marker");
    expect(marker.seq).toBe(original.seq + 1);
    expect(await bob.until((f) => f.type === "message")).toEqual([marker]);
    expect(await alice.until((f) => f.type === "message")).toEqual([marker]);
    again.close();
    await done();
  });

  test("typing on A reaches the others on B, and never the typist", async () => {
    const { alice, bob, done } = await pair("typing");
    alice.send({ type: "typing", room: "typing" });
    expect(await bob.expect("typing")).toEqual({ type: "typing", room: "typing", user: expect.objectContaining({ name: "alice" }) });
    const marker = await bob.say("typing", "marker");
    expect(await alice.until((f) => f.type === "message")).toEqual([marker]);
    await done();
  });

  test("joins on B during a burst from A: history, then live, every message once, in order", async () => {
    const [a, b] = (await instances(2, { historyOnJoin: 200 })) as [TestServer, TestServer];
    const alice = await Client.connect(a.wsUrl);
    await alice.hello("alice");
    await alice.join("busy");
    const joiners = await Promise.all(
      ["bob", "carol", "dave"].map(async (name) => {
        const c = await Client.connect(b.wsUrl);
        await c.hello(name);
        return c;
      }),
    );
    // Alice sends in chunks, each after the echo of the last; they join while that goes on.
    const CHUNK = 10;
    const BURST = 30 * CHUNK;
    let started!: () => void;
    const midway = new Promise<void>((resolve) => (started = resolve));
    const sending = (async () => {
      for (let at = 0; at < BURST; at += CHUNK) {
        burst(alice, "busy", CHUNK, at);
        await alice.until((f) => f.type === "message" && f.id === `m${at + CHUNK - 1}`);
        if (at === 2 * CHUNK) started();
      }
    })();
    await midway;
    for (const c of joiners) c.send({ type: "join", room: "busy" });
    const last = `m${BURST - 1}`;
    for (const c of joiners) {
      const joined = await c.expect("joined");
      const live = joined.messages.some((m: Frame) => m.id === last) ? [] : messages(await c.until((f) => f.type === "message" && f.id === last));
      // History up to the joined seq, then live from the next: nothing missing, nothing twice.
      expect(joined.messages.at(-1)?.seq ?? 0).toBe(joined.seq);
      const all = [...joined.messages, ...live];
      expect(all.map((m: Frame) => m.seq)).toEqual(range(all[0]!.seq, BURST));
      expect(all[0]!.seq === 1 || !joined.complete).toBe(true);
      c.close();
    }
    await sending;
    alice.close();
    await Promise.all([a.stop(), b.stop()]);
  });
});

describe("presence and names across instances", () => {
  test("a user on two instances is one member; it leaves when its last connection anywhere has left", async () => {
    const [a, b] = (await instances(2, { presenceGraceMs: 60_000 })) as [TestServer, TestServer];
    const bob = await Client.connect(b.wsUrl);
    await bob.hello("bob");
    await bob.join("both");
    const onA = await Client.connect(a.wsUrl);
    const welcome = await onA.hello("alice");
    await onA.join("both");
    expect(await bob.expect("presence")).toEqual({ type: "presence", room: "both", event: "join", user: welcome.user });
    const onB = await Client.connect(b.wsUrl);
    await onB.hello("alice", welcome.session);
    expect(names((await onB.join("both")).members)).toEqual(["bob", "alice"]);
    // Both instances count two people in the room.
    for (const s of [a, b]) {
      const rooms = (await (await s.http("/api/rooms")).json()) as { rooms: { room: string; members: number; seq: number }[] };
      expect(rooms.rooms.find((r) => r.room === "both")).toEqual({ room: "both", members: 2, seq: 0 });
    }
    // Alice leaves through A: she is still in through B, so nobody hears of it.
    onA.send({ type: "leave", room: "both" });
    await onA.expect("left");
    const marker = await bob.say("both", "still here?");
    expect(await bob.sync()).toEqual([]);
    expect(bob.frames.filter((f) => f.type === "presence")).toHaveLength(1);
    expect(await onB.until((f) => f.type === "message")).toEqual([marker]);
    // Her last connection leaves: now everyone hears it, once.
    onB.send({ type: "leave", room: "both" });
    await onB.expect("left");
    expect(await bob.expect("presence")).toEqual({ type: "presence", room: "both", event: "leave", user: welcome.user });
    for (const c of [bob, onA, onB]) c.close();
    await Promise.all([a.stop(), b.stop()]);
  });

  test("moving from A to B within grace: nobody sees a leave or a join", async () => {
    const { a, b, alice, bob, welcome, done } = await pair("move", { presenceGraceMs: 60_000 });
    alice.close();
    await a.logLine((l) => l.event === "close" && l.user === welcome.user.id);
    const back = await Client.connect(b.wsUrl);
    await back.hello("alice", welcome.session);
    expect(names((await back.join("move")).members)).toEqual(["bob", "alice"]);
    const marker = await back.say("move", "moved");
    expect(await bob.until((f) => f.type === "message")).toEqual([marker]);
    back.close();
    await done();
  });

  for (const back of [false, true]) {
    test(back
      ? "SIGKILL of A: its user comes back on B within grace, and nobody sees it leave"
      : "SIGKILL of A: one survivor takes its members over; they leave once, after grace", async () => {
      const db = ++lastDb;
      const timeout = 1000;
      const a = await spawnServer({ REDIS_URL: redis.url(db), INSTANCE_TIMEOUT_MS: String(timeout) });
      const [b, c] = (await Promise.all(
        [0, 1].map(() => startServer({ redisUrl: redis.url(db), instanceTimeoutMs: timeout, presenceGraceMs: back ? 60_000 : 200 })),
      )) as [TestServer, TestServer];
      const bob = await Client.connect(b.wsUrl);
      await bob.hello("bob");
      await bob.join("ghost");
      const carol = await Client.connect(c.wsUrl);
      await carol.hello("carol");
      await carol.join("ghost");
      await bob.expect("presence");
      const alice = await Client.connect(a.wsUrl);
      const welcome = await alice.hello("alice");
      await alice.join("ghost");
      const join: Frame = { type: "presence", room: "ghost", event: "join", user: welcome.user };
      expect(await bob.expect("presence")).toEqual(join);
      expect(await carol.expect("presence")).toEqual(join);

      a.proc.kill("SIGKILL");
      await alice.closed;
      // Noticed within 1.5 × INSTANCE_TIMEOUT_MS, by exactly one of the survivors.
      const takeover = await Promise.race([b, c].map((s) => s.logLine((l) => l.event === "instance_taken_over")));
      expect(takeover).toMatchObject({ members: 1, rooms: 1 });
      if (back) {
        const again = await Client.connect(b.wsUrl);
        expect((await again.hello("alice", welcome.session)).user).toEqual(welcome.user);
        expect(names((await again.join("ghost")).members).sort()).toEqual(["alice", "bob", "carol"]);
        const marker = await again.say("ghost", "I am back");
        expect(await bob.until((f) => f.type === "message")).toEqual([marker]);
        expect(await carol.until((f) => f.type === "message")).toEqual([marker]);
        again.close();
      } else {
        const leave: Frame = { type: "presence", room: "ghost", event: "leave", user: welcome.user };
        expect(await bob.expect("presence")).toEqual(leave);
        expect(await carol.expect("presence")).toEqual(leave);
        const marker = await bob.say("ghost", "gone?");
        expect(await carol.until((f) => f.type === "message")).toEqual([marker]);
        expect(await bob.sync()).toEqual([]);
        const rooms = (await (await b.http("/api/rooms")).json()) as { rooms: { room: string; members: number }[] };
        expect(rooms.rooms.find((r) => r.room === "ghost")?.members).toBe(2);
      }
      expect([b, c].flatMap((s) => s.logs.filter((l) => l.event === "instance_taken_over"))).toHaveLength(1);
      bob.close();
      carol.close();
      await Promise.all([b.stop(), c.stop()]);
    });
  }

  test("a name taken on A is refused on B, whatever its case or look-alike letters, until its user is gone", async () => {
    const [a, b] = (await instances(2, { presenceGraceMs: 0 })) as [TestServer, TestServer];
    const alice = await Client.connect(a.wsUrl);
    const welcome = await alice.hello("alice");
    const other = await Client.connect(b.wsUrl);
    for (const name of ["alice", "ALICE", "\u0430lice"]) {
      other.send({ type: "hello", name });
      expect(await other.expect("error")).toEqual({ type: "error", code: "name_taken", message: expect.any(String) });
    }
    // Her own session may use it on B.
    const again = await Client.connect(b.wsUrl);
    expect((await again.hello("alice", welcome.session)).user).toEqual(welcome.user);
    again.close();
    await b.logLine((l) => l.event === "name_released");
    other.send({ type: "hello", name: "Alice" });
    expect(await other.expect("error")).toEqual({ type: "error", code: "name_taken", message: expect.any(String) });
    alice.close();
    await a.logLine((l) => l.event === "name_released");
    expect((await other.hello("Alice")).user.name).toBe("Alice");
    other.close();
    await Promise.all([a.stop(), b.stop()]);
  });
});

describe("renames and the room list across instances", () => {
  test("a rename on A reaches the same user's tab on B: it speaks under the new name, and the old one is free on B", async () => {
    const { a, b, alice, bob, welcome, done } = await pair("r", { presenceGraceMs: 0 });
    const onB = await Client.connect(b.wsUrl); // alice's second tab, on the other instance
    await onB.hello("alice", welcome.session);
    await onB.join("r");
    const renamer = await Client.connect(a.wsUrl);
    const renamed = { id: welcome.user.id, name: "alicia" };
    expect((await renamer.hello("alicia", welcome.session)).user).toEqual(renamed);
    const rename: Frame = { type: "presence", room: "r", event: "rename", user: renamed };
    expect((await bob.until((f) => f.event === "rename")).at(-1)).toEqual(rename);
    expect((await onB.until((f) => f.event === "rename")).at(-1)).toEqual(rename);
    const said = await onB.say("r", "still me");
    expect(said.user).toEqual(renamed);
    expect((await alice.until((f) => f.type === "message")).at(-1)).toEqual(said);
    const newcomer = await Client.connect(b.wsUrl);
    expect((await newcomer.hello("alice")).user.name).toBe("alice");
    for (const c of [onB, renamer, newcomer]) c.close();
    await done();
  });

  test("/api/rooms and the directory ask Redis at most once a second, however often they are polled", async () => {
    const t = Date.now();
    const [a] = (await instances(1, { now: () => t })) as [TestServer];
    const c = await Client.connect(a.wsUrl);
    await c.hello("poster");
    await c.join("listed");
    await c.say("listed", "hello");
    const calls = async (command: string) => {
      const stats = String(await redis.command("INFO", "commandstats"));
      return Number(new RegExp(`cmdstat_${command}:calls=(\\d+)`).exec(stats)?.[1] ?? 0);
    };
    const [hgetall, zrevrange] = [await calls("hgetall"), await calls("zrevrange")];
    for (let i = 0; i < 20; i++) {
      const rooms = (await (await a.http("/api/rooms")).json()) as { rooms: { room: string }[] };
      expect(rooms.rooms.map((r) => r.room)).toEqual(["listed"]);
      const recent = (await (await a.http("/api/rooms?recent=1")).json()) as { rooms: { room: string; members: number; seq: number; ts: number }[] };
      expect(recent.rooms).toEqual([{ room: "listed", members: 1, seq: 1, ts: t }]);
    }
    // At most one more from a heartbeat's own look at the instances.
    expect((await calls("hgetall")) - hgetall).toBeLessThanOrEqual(2);
    expect((await calls("zrevrange")) - zrevrange).toBe(1);
    c.close();
    await a.stop();
  });
});

describe("storage bounds across instances (§10; storage.test.ts runs on this engine too, by chat-redis.test.ts)", () => {
  const DAY_MS = 86_400_000;
  /** Runs one command in database `db` of the test's redis-server. */
  async function inDb(db: number, cmd: string, ...args: string[]): Promise<any> {
    const client = new RedisClient(redis.url(db));
    try {
      return await client.send(cmd, args);
    } finally {
      client.close();
    }
  }

  test("MAX_ROOMS counts every instance's rooms: a room started on A counts on B, and one too many is refused on both", async () => {
    const db = ++lastDb;
    const [a, b] = (await Promise.all([0, 1].map(() => startServer({ redisUrl: redis.url(db), maxRooms: 2 })))) as [TestServer, TestServer];
    const alice = await user(a, "alice", "one", "three");
    const bob = await user(b, "bob", "two", "three");
    await alice.until((f) => f.type === "presence" && f.room === "three");
    await alice.say("one", "first room, on A");
    await bob.say("two", "second room, on B");
    for (const [c, id] of [[alice, "a-over"], [bob, "b-over"]] as const) {
      c.send({ type: "send", room: "three", id, text: "one room too many" });
      expect(await c.next()).toMatchObject({ type: "error", code: "room_limit", ref: id });
    }
    // Nothing of the refused ones was stored or published, no seq spent; rooms holding history still take messages.
    expect(await inDb(db, "GET", "chat:room:three:seq")).toBeNull();
    expect(await inDb(db, "EXISTS", "chat:room:three:log")).toBe(0);
    expect((await alice.say("one", "still fine")).seq).toBe(2);
    expect(await bob.sync()).toEqual([]);
    expect(await alice.sync()).toEqual([]);
    alice.close();
    bob.close();
    await Promise.all([a.stop(), b.stop()]);
  });

  test("HISTORY_MAX_AGE_DAYS: an instance's sweep trims quiet rooms and their dedup keys; they keep their seq and stop counting toward MAX_ROOMS", async () => {
    const db = ++lastDb;
    let t = 1_700_000_000_000;
    const options = { redisUrl: redis.url(db), now: () => t, historyMaxAgeDays: 1, maxRooms: 2 };
    const a = await startServer(options);
    const alice = await user(a, "alice", "a", "b", "c");
    await alice.say("a", "in a", "a1");
    await alice.say("b", "in b");
    alice.send({ type: "send", room: "c", id: "c1", text: "in c" });
    expect(await alice.next()).toMatchObject({ type: "error", code: "room_limit", ref: "c1" });
    expect(await inDb(db, "EXISTS", "chat:room:a:ids")).toBe(1);
    alice.close();

    // Two days on, B starts and sweeps: every room is quiet and too old.
    t += 2 * DAY_MS;
    const b = await startServer(options);
    expect(await inDb(db, "EXISTS", "chat:room:a:ids", "chat:room:b:ids")).toBe(0);
    const carol = await user(b, "carol");
    expect(await carol.join("a")).toMatchObject({ seq: 1, oldestSeq: 0, messages: [], complete: true });
    await carol.join("c");
    expect((await carol.say("c", "room for c now")).seq).toBe(1);
    // The dedup key went with its message: the same id is a new message, and the seq goes on.
    expect(await carol.say("a", "in a again", "a1")).toMatchObject({ seq: 2, text: "in a again" });
    expect(await carol.join("b")).toMatchObject({ seq: 1, oldestSeq: 0 });
    carol.send({ type: "send", room: "b", id: "b2", text: "a and c hold history: b is one too many" });
    expect(await carol.next()).toMatchObject({ type: "error", code: "room_limit", ref: "b2" });
    carol.close();
    await Promise.all([a.stop(), b.stop()]);
  });

  test("a new session's key lives a day in Redis; used again, it gets the full SESSION_TTL_SECONDS", async () => {
    const t = 1_700_000_000_000;
    const [s] = (await instances(1, { now: () => t })) as [TestServer];
    const db = lastDb;
    const ttl = async (token: string) => Number(await inDb(db, "PTTL", `chat:session:${createHash("sha256").update(token).digest("hex")}`));
    const once = await Client.connect(s.wsUrl);
    const onceWelcome = await once.hello("once");
    const twice = await Client.connect(s.wsUrl);
    const twiceWelcome = await twice.hello("twice");
    // Redis's own clock runs while the test does: a minute of slack, never more than the TTL.
    for (const welcome of [onceWelcome, twiceWelcome]) {
      expect(await ttl(welcome.session)).toBeLessThanOrEqual(DAY_MS);
      expect(await ttl(welcome.session)).toBeGreaterThan(DAY_MS - 60_000);
    }
    const back = await Client.connect(s.wsUrl);
    expect((await back.hello("twice again", twiceWelcome.session)).user.id).toBe(twiceWelcome.user.id);
    const full = s.chat.config.sessionTtlSeconds * 1000;
    expect(await ttl(twiceWelcome.session)).toBeGreaterThan(full - 60_000);
    expect(await ttl(twiceWelcome.session)).toBeLessThanOrEqual(full);
    expect(await ttl(onceWelcome.session)).toBeLessThanOrEqual(DAY_MS);
    for (const c of [once, twice, back]) c.close();
    await s.stop();
  });
});

describe("rate limits across instances (§10)", () => {
  test("hellos from one address are counted on every instance", async () => {
    const t = Date.now();
    const [a, b] = (await instances(2, { now: () => t, helloRatePerMinute: 4 })) as [TestServer, TestServer];
    for (let i = 0; i < 4; i++) {
      const c = await Client.connect((i % 2 ? b : a).wsUrl);
      await c.hello(`churn ${i}`);
      c.close();
    }
    const fifth = await Client.connect(a.wsUrl);
    fifth.send({ type: "hello", name: "churn 4" });
    expect(await fifth.expect("error")).toMatchObject({ code: "rate_limited" });
    expect(await fifth.closed).toEqual({ code: 1008, reason: "rate limit exceeded" });
    await Promise.all([a.stop(), b.stop()]);
  });

  test("one user connected to A and to B at once spends one bucket: k frames on A, N-k+1 on B, and B's last is the one refused", async () => {
    const t = Date.now();
    // A still clock: nothing refills, so the count is exact.
    const N = 6;
    const k = 2;
    const [a, b] = (await instances(2, { now: () => t, rateLimitBurst: N, rateLimitPerSecond: 1 })) as [TestServer, TestServer];
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
    await Promise.all([a.stop(), b.stop()]);
  });

  test("a user's bucket follows it: reconnecting to the other instance refills nothing", async () => {
    const t = Date.now();
    // A slow refill: Redis forgets a bucket once it would be full again, in real time (10 s here).
    const [a, b] = (await instances(2, { now: () => t, rateLimitBurst: 10, rateLimitPerSecond: 1, presenceGraceMs: 0 })) as [TestServer, TestServer];
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
    await Promise.all([a.stop(), b.stop()]);
  });
});

describe("an instance taken for dead", () => {
  test("cut off from Redis past INSTANCE_TIMEOUT_MS, its members leave; back, it registers them again", async () => {
    // A reaches Redis as a user of its own, so that A alone can be shut out.
    await redis.command("ACL", "SETUSER", "instance-a", "on", ">secret", "~*", "&*", "+@all");
    const url = redis.url(++lastDb);
    const options = { presenceGraceMs: 0, instanceTimeoutMs: 1000, rateLimitBurst: 1000, rateLimitPerSecond: 1000 };
    const a = await startServer({ ...options, redisUrl: url.replace("redis://", "redis://instance-a:secret@") });
    const b = await startServer({ ...options, redisUrl: url });
    const { alice, bob, welcome } = await meet(a, b, "r");

    await redis.command("ACL", "SETUSER", "instance-a", "off");
    await redis.command("CLIENT", "KILL", "USER", "instance-a");
    // B takes A for dead and its members over; with no grace, they leave at once.
    expect(await bob.expect("presence")).toEqual({ type: "presence", room: "r", event: "leave", user: welcome.user });

    await redis.command("ACL", "SETUSER", "instance-a", "on");
    // A's own notice that it was taken over (the survivor's line names itself in `by`).
    await a.logLine((l) => l.event === "instance_taken_over" && l.by === undefined);
    expect(await bob.expect("presence")).toEqual({ type: "presence", room: "r", event: "join", user: welcome.user });
    const rooms = (await (await b.http("/api/rooms")).json()) as { rooms: { room: string; members: number }[] };
    expect(rooms.rooms.find((r) => r.room === "r")?.members).toBe(2);
    // Alice's connection stayed open through it all, and is heard again.
    const back = await alice.say("r", "still here");
    expect((await bob.until((f) => f.type === "message")).at(-1)).toEqual(back);
    for (const c of [alice, bob]) c.close();
    await Promise.all([a.stop(), b.stop()]);
    await redis.command("ACL", "DELUSER", "instance-a");
  });

  /**
   * A (a process, to SIGKILL) and B (in this process) with INSTANCE_TIMEOUT_MS 1 s on a fresh
   * database, alice on A and bob on B in room "ghost", an admin client, and A's instance id.
   */
  async function doomedPair(aEnv: Record<string, string>, bGraceMs: number) {
    const db = ++lastDb;
    const timeout = 1000;
    const a = await spawnServer({ REDIS_URL: redis.url(db), INSTANCE_TIMEOUT_MS: String(timeout), ...aEnv });
    const b = await startServer({ redisUrl: redis.url(db), instanceTimeoutMs: timeout, presenceGraceMs: bGraceMs });
    const { alice, bob, welcome } = await meet(a, b, "ghost");
    const admin = new RedisClient(redis.url(db));
    const deadId = await instanceOf(admin, "ghost", welcome.user.id);
    return { a, b, alice, bob, welcome, admin, deadId };
  }

  test("a dead instance's user in grace keeps its name on the survivor, and gets it back with its session", async () => {
    const { a, b, alice, bob, welcome, admin, deadId } = await doomedPair({}, 60_000);
    a.proc.kill("SIGKILL");
    await alice.closed;
    await b.logLine((l) => l.event === "instance_taken_over");
    // A held the name, and its hold lapses with it (INSTANCE_TIMEOUT_MS): end it now rather than wait.
    for (const key of nameKeys("alice")) await admin.send("HDEL", [`chat:name:${key}`, `${deadId}|${welcome.user.id}`]);
    admin.close();
    // Alice is still online, in grace: her name is hers.
    const thief = await Client.connect(b.wsUrl);
    thief.send({ type: "hello", name: "Alice" });
    expect(await thief.expect("error")).toMatchObject({ code: "name_taken" });
    const back = await Client.connect(b.wsUrl);
    expect((await back.hello("alice", welcome.session)).user).toEqual(welcome.user);
    for (const c of [bob, thief, back]) c.close();
    await b.stop();
  });

  test("a survivor that dies halfway through a takeover: once its claim lapses, another finishes it", async () => {
    const { a, b, alice, bob, welcome, admin, deadId } = await doomedPair({ PRESENCE_GRACE_MS: "0" }, 0);

    a.proc.kill("SIGKILL");
    await alice.closed;
    // As a survivor that claimed A and died before moving anyone would leave it: claimed, A still listed.
    const claim = `chat:instance:${deadId}:takeover`;
    expect(await admin.send("SET", [claim, "a-survivor-that-died", "NX"])).toBe("OK");
    // B sees A dead and leaves it to the claim's holder, while the claim lasts…
    await b.logLine((l) => l.event === "takeover_claimed_elsewhere" && l.instance === deadId);
    expect(bob.frames.filter((f) => f.type === "presence")).toHaveLength(1);
    // …and the claim lapses, as a dead holder's does after INSTANCE_TIMEOUT_MS: B finishes the job.
    await admin.send("PEXPIRE", [claim, "1"]);
    const leave: Frame = { type: "presence", room: "ghost", event: "leave", user: welcome.user };
    expect(await bob.expect("presence")).toEqual(leave);
    expect(await b.logLine((l) => l.event === "instance_taken_over")).toMatchObject({ instance: deadId, members: 1 });
    expect(await admin.send("SISMEMBER", ["chat:instances", deadId])).toBe(0);
    admin.close();
    bob.close();
    await b.stop();
  });
});

describe("failures", () => {
  test("CLIENT KILL of the subscribers: they subscribe again and catch up what was published meanwhile; no gap, nothing twice", async () => {
    const { a, b, alice, bob, done } = await pair("kill");
    const admin = new RedisClient(a.chat.config.redisUrl!);
    const BURST = 30;
    burst(alice, "kill", BURST);
    await bob.until((f) => f.type === "message" && f.id === `m${BURST - 1}`);

    // Cut both subscribers and keep them out (no new connection is let in) while a burst is stored.
    await admin.send("CONFIG", ["SET", "maxclients", "1"]);
    try {
      expect(await admin.send("CLIENT", ["KILL", "TYPE", "pubsub"])).toBe(2);
      burst(alice, "kill", BURST, BURST);
      // A leave answers after the sender's messages are stored: none of these was heard by anyone.
      alice.send({ type: "leave", room: "kill" });
      await alice.until((f) => f.type === "left");
      expect(await admin.send("GET", ["chat:room:kill:seq"])).toBe(String(2 * BURST));
    } finally {
      // Even when it fails: a redis-server that lets nobody in would fail every test after it.
      await admin.send("CONFIG", ["SET", "maxclients", "10000"]);
    }

    await b.logLine((l) => l.event === "redis_resubscribed");
    // Bun's client alone would be connected again but subscribed to nothing.
    expect(await admin.send("PUBSUB", ["NUMSUB", "chat:room:kill"])).toEqual(["chat:room:kill", 1]);
    await bob.until((f) => f.type === "message" && f.id === `m${2 * BURST - 1}`);
    await alice.join("kill");
    burst(alice, "kill", BURST, 2 * BURST);
    await bob.until((f) => f.type === "message" && f.id === `m${3 * BURST - 1}`);
    expect(messages(bob.frames).map((m) => m.seq)).toEqual(range(1, 3 * BURST));
    expect(messages(bob.frames).map((m) => m.id)).toEqual(range(0, 3 * BURST - 1).map((i) => `m${i}`));
    admin.close();
    await done();
  });

  test("a lost tail: a message stored but never published reaches every instance through the periodic check", async () => {
    const { a, alice, bob, done } = await pair("tail", { tailCheckMs: TAIL_CHECK_MS });
    const first = await alice.say("tail", "published");
    expect(await bob.next()).toEqual(first);
    // Stored exactly as the append script stores it, but its PUBLISH lost (pub/sub is at most once).
    const admin = new RedisClient(a.chat.config.redisUrl!);
    const seq = Number(await admin.send("INCR", ["chat:room:tail:seq"]));
    const lost = { room: "tail", id: "lost", user: { id: "ghost", name: "ghost" }, text: "stored, never published", ts: first.ts };
    await admin.send("ZADD", ["chat:room:tail:log", String(seq), `${seq}:${JSON.stringify(lost)}`]);
    // No later message shows a gap: only the check against the stored seq can find it.
    const expected: Frame = { type: "message", seq, ...lost };
    expect(await bob.next()).toEqual(expected);
    expect(await alice.next()).toEqual(expected);
    admin.close();
    await done();
  });

  test("CLIENT KILL of the command connections mid-burst: sends in flight are sent again, each stored and delivered once", async () => {
    const { alice, bob, done } = await pair("resend");
    const BURST = 300;
    burst(alice, "resend", BURST);
    await bob.expect("message");
    expect(await redis.command("CLIENT", "KILL", "TYPE", "normal")).toBeGreaterThanOrEqual(2);
    for (const c of [alice, bob]) {
      await c.until((f) => f.type === "message" && f.id === `m${BURST - 1}`);
      const got = messages(c.frames);
      expect(got.map((m) => m.seq)).toEqual(range(1, BURST));
      expect(got.map((m) => m.id)).toEqual(range(0, BURST - 1).map((i) => `m${i}`));
    }
    await done();
  });

  test("Redis stops mid-chat: sends get internal, /healthz 503; it restarts (AOF): the instances recover by themselves, no loss, no seq reused", async () => {
    const { a, b, alice, bob, done } = await pair("outage");
    const before: Frame[] = [];
    for (let i = 1; i <= 3; i++) before.push(await alice.say("outage", `before ${i}`));
    expect(messages(await bob.until((f) => f.type === "message" && f.text === "before 3"))).toEqual(before);

    await redis.stop("SIGTERM");
    alice.send({ type: "send", room: "outage", id: "during", text: "while redis is down" });
    expect(await alice.expect("error")).toEqual({ type: "error", code: "internal", message: expect.any(String), ref: "during" });
    const down = await a.http("/healthz");
    expect(down.status).toBe(503);
    expect(await down.json()).toEqual({ status: "unavailable", redis: "down" });
    // The connections stay open.
    expect(await alice.sync()).toEqual([]);
    expect(await bob.sync()).toEqual([]);

    await redis.start();
    for (const s of [a, b]) await s.logLine((l) => l.event === "redis_resubscribed");
    expect((await a.http("/healthz")).status).toBe(200);
    const retried = await alice.say("outage", "while redis is down", "during");
    expect(retried.seq).toBe(4);
    expect(messages(await bob.until((f) => f.type === "message"))).toEqual([retried]);
    const page = (await (await b.http("/api/rooms/outage/messages")).json()) as { messages: Frame[] };
    expect(page.messages).toEqual([...before, retried]);
    await done();
  });

  test("Redis stops: a user's frames spend this instance's copy of its bucket (logged once); back, the shared bucket as Redis kept it", async () => {
    const t = Date.now();
    // A still clock, and a bucket Redis keeps for 20 s (until it would be full again).
    const N = 20;
    const [a] = (await instances(1, { now: () => t, rateLimitBurst: N, rateLimitPerSecond: 1 })) as [TestServer];
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
    await a.stop();
  });

  test("Redis hangs (CLIENT PAUSE): a frame waits for the shared bucket only a moment, then spends this instance's copy", async () => {
    const [a] = (await instances(1)) as [TestServer];
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
    await a.stop();
  });

  test("Redis comes back empty: the instances go on from its seq, and a client's since beyond it tells the client to start over", async () => {
    const { a, b, alice, bob, done } = await pair("amnesia");
    for (let i = 1; i <= 3; i++) await alice.say("amnesia", `before ${i}`);
    await bob.until((f) => f.type === "message" && f.text === "before 3");
    await redis.stop("SIGTERM");
    redis.wipe();
    await redis.start();
    for (const s of [a, b]) await s.logLine((l) => l.event === "seq_went_back" && l.room === "amnesia");
    // Live clients hold seqs that now name other messages: they are sent away to resume.
    for (const c of [alice, bob]) expect(await c.closed).toEqual({ code: 1001, reason: "room history was reset" });
    const talker = await Client.connect(a.wsUrl);
    await talker.hello("talker");
    await talker.join("amnesia");
    const after = await talker.say("amnesia", "after the loss");
    expect(after.seq).toBe(1);
    // A client coming back with since = 3 sees seq 1 < 3 and knows to start over.
    const carol = await Client.connect(b.wsUrl);
    await carol.hello("carol");
    const joined = await carol.join("amnesia", 3);
    expect([joined.seq, joined.messages, joined.complete]).toEqual([1, [], true]);
    for (const c of [carol, talker]) c.close();
    await done();
  });

  test("SIGKILL of instance A mid-burst: its user resumes on B with its session and since, and gets every message once", async () => {
    const db = ++lastDb;
    const a = await spawnServer({ REDIS_URL: redis.url(db), RATE_LIMIT_BURST: "1000", RATE_LIMIT_PER_SECOND: "1000" });
    const b = await startServer({ redisUrl: redis.url(db) });
    const alice = await Client.connect(a.wsUrl);
    const welcome = await alice.hello("alice");
    await alice.join("crash");
    const bob = await Client.connect(b.wsUrl);
    await bob.hello("bob");
    await bob.join("crash");
    await alice.expect("presence");
    burst(alice, "crash", 200);
    const seen: Frame[] = [];
    for (let i = 0; i < 20; i++) seen.push(await alice.expect("message"));
    a.proc.kill("SIGKILL");
    await alice.closed;
    await bounded(a.proc.exited, "exit");
    seen.push(...messages(alice.frames).slice(seen.length));

    const back = await Client.connect(b.wsUrl);
    expect((await back.hello("alice", welcome.session)).user).toEqual(welcome.user);
    // Seen before the crash, then the rest: every stored message once, in order, a prefix of the burst.
    const all = [...seen, ...(await catchUp(back, "crash", seen.at(-1)!.seq))];
    expect(all.map((m) => m.seq)).toEqual(range(1, all.length));
    expect(all.map((m) => m.id)).toEqual(range(0, all.length - 1).map((i) => `m${i}`));
    // Bob, on B, heard exactly the same, live.
    const marker = await back.say("crash", "back on B");
    expect(marker.seq).toBe(all.length + 1);
    expect(messages(await bob.until((f) => f.type === "message" && f.id === marker.id))).toEqual([...all, marker]);
    back.close();
    bob.close();
    await b.stop();
  });
});
