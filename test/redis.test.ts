/**
 * Scale-out: several instances on one Redis (REDIS_URL), with a real redis-server started here on
 * a free loopback port, its AOF in a temp dir. Instances share rooms, seq, history, dedup keys,
 * sessions, presence and names, and nothing is lost or repeated when a connection, Redis itself or
 * an instance dies. The suites of the hub's rules run on this engine too (each says so at its
 * top: `for (const engine of ENGINES)`); the rules' own cross-instance tests sit with them
 * (rate-limits, names, sessions, storage).
 */
import { RedisClient } from "bun";
import { describe, expect, test } from "bun:test";
import type { ServerOptions } from "../server.ts";
import { nameKeys } from "../src/protocol/rules.ts";
import { DEFAULTS } from "../src/config.ts";
import { DAY_MS } from "../src/engine.ts";
import { historyBytes, openRedis } from "../src/redis/index.ts";
import type { RedisLink } from "../src/redis/link.ts";
import { RedisRoster } from "../src/redis/roster.ts";
import { SCRIPTS } from "../src/redis/scripts.ts";
import {
  Client,
  bounded,
  burst,
  catchUp,
  instances,
  messages,
  range,
  redisForSuite,
  spawnServer,
  startServer,
  type Frame,
} from "./helpers.ts";

const redis = redisForSuite();

/**
 * Bounds a test that waits for Redis to go and come back, or for heartbeats, on a loaded machine.
 * Given per test: the preload's setDefaultTimeout holds only for the first file of a run (Bun 1.4.5).
 */
const REDIS_TEST_MS = 30_000;

/** The tail check's period in the test that needs it (15 s in production). */
const TAIL_CHECK_MS = 100;

/** Two instances; alice on A and bob on B in `room`, alice having heard bob come. `await using` closes and stops them. */
async function pair(room: string, options: ServerOptions = {}) {
  const servers = await instances(redis, 2, options);
  try {
    const [a, b] = servers;
    const alice = await Client.connect(a.wsUrl);
    const welcome = await alice.hello("alice");
    await alice.join(room);
    const bob = await Client.connect(b.wsUrl);
    await bob.hello("bob");
    const joined = await bob.join(room);
    await alice.expect("presence");
    const stop = async () => {
      alice.close();
      bob.close();
      await servers[Symbol.asyncDispose]();
    };
    return { a, b, alice, bob, welcome, joined, [Symbol.asyncDispose]: stop };
  } catch (error) {
    await servers[Symbol.asyncDispose]();
    throw error;
  }
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

const names = (members: { name: string }[]) => members.map((m) => m.name);

/**
 * A TCP proxy in front of redis-server that can lose a connection at the worst moment: `cutAfter`
 * arms it to forward the next command whose bytes hold `marker`, then close the client's side at
 * once, while Redis runs it; Redis's answer goes nowhere. Later connections pass untouched.
 */
async function cuttingProxy(redisPort: number) {
  let marker: string | null = null;
  let cut!: () => void;
  /** Writes all of `bytes`: Bun's socket.write takes what it can at once, the rest waits for drain. */
  const queues = new Map<Bun.Socket<unknown>, Uint8Array[]>();
  const write = (socket: Bun.Socket<unknown>, bytes: Uint8Array) => {
    const queue = queues.get(socket);
    if (queue?.length) return void queue.push(bytes);
    const n = socket.write(bytes);
    if (n < bytes.length) queues.set(socket, [bytes.subarray(Math.max(0, n))]);
  };
  const drain = (socket: Bun.Socket<unknown>) => {
    const queue = queues.get(socket) ?? [];
    while (queue.length) {
      const head = queue[0]!;
      const n = socket.write(head);
      if (n < head.length) return void (queue[0] = head.subarray(Math.max(0, n)));
      queue.shift();
    }
  };
  type Side = { peer: Bun.Socket<unknown> | null; early: Uint8Array[]; lost: boolean };
  const listener = Bun.listen<Side>({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      async open(down) {
        const side: Side = { peer: null, early: [], lost: false };
        down.data = side;
        const up = await Bun.connect<Side>({
          hostname: "127.0.0.1",
          port: redisPort,
          socket: {
            data: (_up, chunk) => {
              if (!side.lost) write(down as Bun.Socket<unknown>, chunk);
            },
            drain: (up) => drain(up as Bun.Socket<unknown>),
            close: () => {
              if (!side.lost) down.end();
            },
            error: () => void down.end(),
          },
        });
        side.peer = up as Bun.Socket<unknown>;
        for (const bytes of side.early.splice(0)) write(side.peer, bytes);
      },
      data(down, chunk) {
        const side = down.data;
        if (!side.peer) return void side.early.push(new Uint8Array(chunk));
        write(side.peer, chunk);
        if (marker !== null && Buffer.from(chunk).toString("latin1").includes(marker)) {
          marker = null;
          side.lost = true;
          down.end();
          cut();
        }
      },
      drain: (down) => drain(down as Bun.Socket<unknown>),
      close: (down) => void down.data.peer?.end(),
      error: (down) => void down.data.peer?.end(),
    },
  });
  return {
    url: (db: number) => `redis://127.0.0.1:${listener.port}/${db}`,
    /** Resolves once a command holding `text` was forwarded and its connection cut. */
    cutAfter(text: string): Promise<void> {
      marker = text;
      const done = new Promise<void>((resolve) => (cut = resolve));
      return bounded(done, `a command holding ${text} to pass the proxy`);
    },
    stop: () => listener.stop(true),
  };
}

/** A script's SHA, as EVALSHA names it. */
const shaOf = (script: string) => new Bun.CryptoHasher("sha1").update(script).digest("hex");

describe("two instances", () => {
  test("a user on A and a user on B chat both ways with one seq sequence; members and presence span both", async () => {
    await using servers = await instances(redis, 2);
    const [a, b] = servers;
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
    expect(joined.members).toEqual([bobUser, { ...first.user, role: "owner" }]); // alice started the room (§11.2)
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
  });

  test("a session made on A works on B; a send retried on B is answered with A's original, stored once", async () => {
    await using duo = await pair("dedup");
    const { b, alice, bob, welcome } = duo;
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
  });

  test("typing on A reaches the others on B, and never the typist, nor its own tab on B", async () => {
    await using duo = await pair("typing");
    const { alice, bob, b, welcome } = duo;
    const aliceOnB = await Client.connect(b.wsUrl);
    await aliceOnB.hello("alice", welcome.session);
    await aliceOnB.join("typing");
    alice.send({ type: "typing", room: "typing" });
    expect(await bob.expect("typing")).toEqual({ type: "typing", room: "typing", user: expect.objectContaining({ name: "alice" }) });
    const marker = await bob.say("typing", "marker");
    expect(await alice.until((f) => f.type === "message")).toEqual([marker]);
    expect(await aliceOnB.until((f) => f.type === "message")).toEqual([marker]);
    aliceOnB.close();
  });

  test("joins on B during a burst from A: history, then live, every message once, in order", async () => {
    await using servers = await instances(redis, 2, { historyOnJoin: 200 });
    const [a, b] = servers;
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
  });
});

describe("presence and names across instances", () => {
  test("a user on two instances is one member; it leaves when its last connection anywhere has left", async () => {
    await using servers = await instances(redis, 2, { presenceGraceMs: 60_000 });
    const [a, b] = servers;
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
  });

  test("an explicit leave by the user's last live connection is a leave at once, though an earlier one dropped on another instance (§10)", async () => {
    await using servers = await instances(redis, 2, { presenceGraceMs: 60_000 });
    const [a, b] = servers;
    const onA = await Client.connect(a.wsUrl);
    const welcome = await onA.hello("alice");
    await onA.join("r");
    const onB = await Client.connect(b.wsUrl);
    await onB.hello("alice", welcome.session);
    await onB.join("r");
    const bob = await Client.connect(b.wsUrl);
    await bob.hello("bob");
    await bob.join("r");
    const carol = await Client.connect(a.wsUrl);
    await carol.hello("carol");
    await carol.join("r");
    await bob.expect("presence");
    // Alice's tab on A drops: she is in r through A only in grace, and live through B.
    onA.close();
    await a.logLine((l) => l.event === "close" && l.user === welcome.user.id);
    onB.send({ type: "leave", room: "r" });
    await onB.until((f) => f.type === "left");
    const leave: Frame = { type: "presence", room: "r", event: "leave", user: welcome.user };
    expect(await bob.expect("presence")).toEqual(leave);
    expect(await carol.expect("presence")).toEqual(leave);
    // A ended its grace when it heard the leave (carol heard it from A): she is no member there either.
    const dave = await Client.connect(a.wsUrl);
    await dave.hello("dave");
    expect(names((await dave.join("r")).members).sort()).toEqual(["bob", "carol", "dave"]);
    for (const c of [bob, carol, dave, onB]) c.close();
  });

  test("moving from A to B within grace: nobody sees a leave or a join", async () => {
    await using duo = await pair("move", { presenceGraceMs: 60_000 });
    const { a, b, alice, bob, welcome } = duo;
    alice.close();
    await a.logLine((l) => l.event === "close" && l.user === welcome.user.id);
    const back = await Client.connect(b.wsUrl);
    await back.hello("alice", welcome.session);
    expect(names((await back.join("move")).members)).toEqual(["bob", "alice"]);
    const marker = await back.say("move", "moved");
    expect(await bob.until((f) => f.type === "message")).toEqual([marker]);
    back.close();
  });

  for (const back of [false, true]) {
    test(back
      ? "SIGKILL of A: its user comes back on B within grace, and nobody sees it leave"
      : "SIGKILL of A: one survivor takes its members over; they leave once, after grace", async () => {
      const db = redis.freshDb();
      const timeout = 1000;
      await using a = await spawnServer({ REDIS_URL: redis.url(db), INSTANCE_TIMEOUT_MS: String(timeout) });
      const survivor = () => startServer({ redisUrl: redis.url(db), instanceTimeoutMs: timeout, presenceGraceMs: back ? 60_000 : 200 });
      await using b = await survivor();
      await using c = await survivor();
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
    });
  }

  test("SIGKILL of A: its admin, in grace on the survivor, still outranks an owner on every instance; A's hold of it goes", async () => {
    const db = redis.freshDb();
    const timeout = 1000;
    const adminToken = "admin-token-for-the-tests-0123456789";
    await using a = await spawnServer({ REDIS_URL: redis.url(db), INSTANCE_TIMEOUT_MS: String(timeout), ADMIN_TOKEN: adminToken });
    const survivor = () => startServer({ redisUrl: redis.url(db), instanceTimeoutMs: timeout, presenceGraceMs: 60_000 });
    await using b = await survivor();
    await using c = await survivor();
    const owner = await Client.connect(b.wsUrl);
    await owner.hello("olga");
    await owner.join("r");
    const ops = await Client.connect(a.wsUrl);
    ops.send({ type: "hello", name: "ops", adminToken });
    const welcome = await ops.expect("welcome");
    await ops.join("r");
    await owner.expect("presence");
    const held = new RedisClient(redis.url(db));
    const holders = () => held.send("SMEMBERS", [`chat:admin:${welcome.user.id}`]) as Promise<string[]>;
    const [dead] = await holders();

    a.proc.kill("SIGKILL");
    await ops.closed;
    const takeover = await Promise.race([b, c].map((s) => s.logLine((l) => l.event === "instance_taken_over")));
    expect(takeover).toMatchObject({ instance: dead, members: 1 });
    // The survivor holds it in grace, as an admin: A's hold is gone, its own stands in.
    expect(await holders()).toEqual([String(takeover.by)]);
    owner.send({ type: "kick", room: "r", user: welcome.user.id });
    expect((await owner.until((f) => f.type === "ok" || f.type === "error")).at(-1)).toMatchObject({ type: "error", code: "forbidden" });
    held.close();
    owner.close();
  });
});

describe("renames and the room list across instances", () => {
  test("a rename on A reaches the same user's tab on B: it speaks under the new name, and the old one is free on B", async () => {
    await using duo = await pair("r", { presenceGraceMs: 0 });
    const { a, b, alice, bob, welcome } = duo;
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
  });

  test("one session renamed on A and on B at once ends with one name everywhere, the later one; the other is free for anyone", async () => {
    await using duo = await pair("r2", { presenceGraceMs: 0 });
    const { a, b, welcome } = duo;
    // Alice's tabs: one on each instance, both in the room.
    const tabs = await Promise.all([a, b].map(async (s) => {
      const tab = await Client.connect(s.wsUrl);
      await tab.hello("alice", welcome.session);
      await tab.join("r2");
      return tab;
    }));
    for (let trial = 1; trial <= 3; trial++) {
      const names = [`ann-${trial}`, `bea-${trial}`];
      // Two renames of one session at once: a new connection on each instance.
      const renamers = await Promise.all([a, b].map((s) => Client.connect(s.wsUrl)));
      renamers.forEach((c, i) => c.send({ type: "hello", name: names[i], session: welcome.session }));
      await Promise.all(renamers.map((c) => c.expect("welcome")));
      // A message from each tab whose echo comes after every rename event reached its instance
      // (the renames were published before it was stored), then one more from each: one name.
      // (The tabs hear each other, and rename events: each waits for its own echo.)
      const say = async (tab: Client, text: string) => {
        const id = crypto.randomUUID();
        tab.send({ type: "send", room: "r2", id, text });
        return (await tab.until((f) => f.type === "message" && f.id === id)).at(-1)!;
      };
      for (const tab of tabs) await say(tab, `settling ${trial}`);
      const said = [];
      for (const tab of tabs) said.push((await say(tab, `after ${trial}`)).user.name);
      const final = said[0]!;
      expect(names).toContain(final);
      expect(said).toEqual([final, final]);
      // The name that lost is anyone's again (on A, then on B): alice holds it nowhere.
      const lost = names.find((n) => n !== final)!;
      const anyone = await Client.connect([a, b][trial % 2]!.wsUrl);
      expect((await anyone.hello(lost)).user.name).toBe(lost);
      for (const c of [...renamers, anyone]) c.close();
    }
    for (const tab of tabs) tab.close();
  }, REDIS_TEST_MS);

  test("/api/rooms and the directory ask Redis at most once a second, however often they are polled", async () => {
    const t = Date.now();
    await using servers = await instances(redis, 1, { now: () => t });
    const [a] = servers;
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
  });
});

describe("an instance taken for dead", () => {
  test("cut off from Redis past INSTANCE_TIMEOUT_MS, its members leave; back, it registers them again", async () => {
    // A reaches Redis as a user of its own, so that A alone can be shut out.
    await redis.command("ACL", "SETUSER", "instance-a", "on", ">secret", "~*", "&*", "+@all");
    const url = redis.url(redis.freshDb());
    const options = { presenceGraceMs: 0, instanceTimeoutMs: 1000, rateLimitBurst: 1000, rateLimitPerSecond: 1000 };
    await using a = await startServer({ ...options, redisUrl: url.replace("redis://", "redis://instance-a:secret@") });
    await using b = await startServer({ ...options, redisUrl: url });
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
  }, REDIS_TEST_MS);

  /**
   * A (a process, to SIGKILL) and B (in this process) with INSTANCE_TIMEOUT_MS 1 s on a fresh
   * database, alice on A and bob on B in room "ghost", an admin client, and A's instance id;
   * `await using` kills A and stops B.
   */
  async function doomedPair(aEnv: Record<string, string>, bGraceMs: number) {
    const db = redis.freshDb();
    const timeout = 1000;
    const a = await spawnServer({ REDIS_URL: redis.url(db), INSTANCE_TIMEOUT_MS: String(timeout), ...aEnv });
    const b = await startServer({ redisUrl: redis.url(db), instanceTimeoutMs: timeout, presenceGraceMs: bGraceMs }).catch(async (error) => {
      await a[Symbol.asyncDispose]();
      throw error;
    });
    const admin = new RedisClient(redis.url(db));
    const stop = async () => {
      admin.close();
      await Promise.all([a[Symbol.asyncDispose](), b.stop()]);
    };
    try {
      const { alice, bob, welcome } = await meet(a, b, "ghost");
      const deadId = await instanceOf(admin, "ghost", welcome.user.id);
      return { a, b, alice, bob, welcome, admin, deadId, [Symbol.asyncDispose]: stop };
    } catch (error) {
      await stop();
      throw error;
    }
  }

  test("a dead instance's user in grace keeps its name on the survivor, and gets it back with its session", async () => {
    await using doomed = await doomedPair({}, 60_000);
    const { a, b, alice, bob, welcome, admin, deadId } = doomed;
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
  });

  test("a survivor that dies halfway through a takeover: once its claim lapses, another finishes it", async () => {
    await using doomed = await doomedPair({ PRESENCE_GRACE_MS: "0" }, 0);
    const { a, b, alice, bob, welcome, admin, deadId } = doomed;

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
  });
});

describe("slow mode across instances", () => {
  test("a user's slot is shared: sent on A, a send on B within the room's seconds gets slow_mode", async () => {
    await using servers = await instances(redis, 2);
    const [a, b] = servers;
    const olga = await Client.connect(a.wsUrl);
    await olga.hello("olga");
    expect((await olga.join("slow")).role).toBe("owner");
    const samA = await Client.connect(a.wsUrl);
    const welcome = await samA.hello("sam");
    await samA.join("slow");
    const samB = await Client.connect(b.wsUrl);
    await samB.hello("sam", welcome.session);
    await samB.join("slow");
    olga.send({ type: "room_settings", room: "slow", slowModeSeconds: 30, ref: "s" });
    expect((await olga.until((f) => f.type === "ok" || f.type === "error")).at(-1)).toMatchObject({ type: "ok", ref: "s" });
    await samB.until((f) => f.type === "settings");
    await samA.until((f) => f.type === "settings");
    expect(await samA.say("slow", "first")).toMatchObject({ type: "message", text: "first" });
    samB.send({ type: "send", room: "slow", id: "second", text: "too soon, elsewhere" });
    const refused = (await samB.until((f) => f.type === "error" || (f.type === "message" && f.id === "second"))).at(-1)!;
    expect(refused).toMatchObject({ type: "error", code: "slow_mode", ref: "second" });
    expect(refused.retryAfterMs).toBeGreaterThan(25_000);
    for (const c of [olga, samA, samB]) c.close();
  }, REDIS_TEST_MS);
});

describe("the roster's recovery (unit, a link the test answers)", () => {
  /** A roster on Redis's mark "mark" whose link answers GET with `get` (every other command: nothing), and the resets it reconciled. */
  function rosterWith(get: (n: number) => Promise<unknown>, reconcile?: (reset: boolean) => void) {
    let gets = 0;
    const link = {
      connected: true,
      send: (command: string) => (command === "GET" ? get(++gets) : Promise.resolve(null)),
      run: () => Promise.resolve(0),
    };
    const roster = new RedisRoster(link as unknown as RedisLink, "i1", () => {}, DEFAULTS, () => 0);
    Object.assign(roster, { generation: "mark" });
    const reconciled: boolean[] = [];
    roster.attach({ adopt() {}, lost() {}, renamedElsewhere() {}, nameLost() {}, reconcile: async (reset) => void (reconciled.push(reset), reconcile?.(reset)) });
    return { roster, reconciled };
  }

  test("a reconnect's recovery asked while another fails runs at once after it, not at the next heartbeat", async () => {
    let failGet: (error: Error) => void = () => {};
    let reconciled!: (reset: boolean) => void;
    const reconciledOnce = new Promise<boolean>((resolve) => (reconciled = resolve));
    // The first read of Redis's mark fails (the connection dropped under it); the next finds it unchanged.
    const { roster } = rosterWith((n) => (n === 1 ? new Promise((_, reject) => (failGet = reject)) : Promise.resolve("mark")), (reset) => reconciled(reset));
    const heartbeat = roster.recover(false);
    const reconnect = roster.recover(true);
    failGet(new Error("connection closed"));
    await Promise.allSettled([heartbeat, reconnect]);
    expect(await bounded(reconciledOnce, "the presence put back")).toBe(false);
  });

  test("a reconnect's recovery that fails (Redis answers LOADING as it comes back) is made by the next heartbeat's", async () => {
    const { roster, reconciled } = rosterWith((n) => (n === 1 ? Promise.reject(new Error("LOADING Redis is loading the dataset in memory")) : Promise.resolve("mark")));
    await expect(roster.recover(true)).rejects.toThrow("LOADING");
    await roster.recover(false);
    await roster.recover(false);
    expect(reconciled).toEqual([false]);
  });
});

describe("Redis that loses its data, or comes back", () => {
  /**
   * `n` instances whose clock is held still (what is spent stays spent), alice on the first in
   * "burst" with one of her five tokens left (the join and three history pages took four), and
   * Redis's data then flushed. `page` sends a history frame (it spends a token and stores nothing:
   * a message would start the room's new epoch) and answers its answer.
   */
  async function oneTokenThenFlush(n: 1 | 2) {
    const clock = Date.now();
    const servers = await instances(redis, n, { instanceTimeoutMs: 3000, presenceGraceMs: 60_000, rateLimitBurst: 5, rateLimitPerSecond: 1, now: () => clock });
    const alice = await Client.connect(servers[0]!.wsUrl);
    await alice.hello("alice");
    await alice.join("burst");
    const page = async (ref: string) => {
      alice.send({ type: "history", room: "burst", ref });
      return alice.next();
    };
    for (let i = 1; i <= 3; i++) expect(await page(`h${i}`)).toMatchObject({ type: "history", ref: `h${i}` });
    const admin = new RedisClient(redis.url(servers.db));
    await admin.send("FLUSHDB", []);
    admin.close();
    return { servers, alice, page };
  }

  test("a flush gives nobody a fresh burst: each instance puts back its users' shared rate buckets as their last frames left them", async () => {
    const { servers, alice, page } = await oneTokenThenFlush(2);
    await using _ = servers;
    for (const s of servers) await s.logLine((l) => l.event === "roster_recovered" && l.reset === true);
    // The join and three pages took four of the five tokens: after the flush, one more, then none.
    expect(await page("h4")).toMatchObject({ type: "history", ref: "h4" });
    expect(await page("h5")).toMatchObject({ type: "error", code: "rate_limited", ref: "h5" });
    alice.close();
  }, REDIS_TEST_MS);

  test("a flush: frames sent before the instance has noticed it do not make the bucket it puts back a fresh one", async () => {
    const { servers, alice, page } = await oneTokenThenFlush(1);
    await using _ = servers;
    const [a] = servers;
    // A frame spends from the fresh bucket before the instance's next heartbeat notices the
    // flush, and puts back what alice had left.
    let answered = 0;
    if ((await page("h4")).type === "history") answered++;
    await a.logLine((l) => l.event === "roster_recovered" && l.reset === true);
    for (let i = 5; i <= 9; i++) if ((await page(`h${i}`)).type === "history") answered++;
    // Her one token, and at most the one the fresh bucket gave before it was put back: not a new burst.
    expect(answered).toBeLessThanOrEqual(2);
    alice.close();
  }, REDIS_TEST_MS);

  test("a flush: each instance holds its names again, whoever held one first keeps it and the other is renamed and told; live users' sessions still work", async () => {
    await using servers = await instances(redis, 2, { instanceTimeoutMs: 3000, presenceGraceMs: 60_000 });
    const [a, b] = servers;
    const { alice, bob, welcome } = await meet(a, b, "lost");
    const admin = new RedisClient(redis.url(servers.db));
    await admin.send("FLUSHDB", []);
    admin.close();
    // B cannot know yet: a newcomer on B asks for alice's name.
    const newcomer = await Client.connect(b.wsUrl);
    newcomer.send({ type: "hello", name: "alice" });
    const answer = await newcomer.next();
    if (answer.type === "welcome") {
      // Alice held it first: once A holds it again, the newcomer has another name, and is told.
      const renamed = (await newcomer.until((f) => f.type === "renamed")).at(-1);
      expect(renamed).toEqual({ type: "renamed", user: { id: answer.user.id, name: expect.stringMatching(/^alice-./) }, reason: "name_taken" });
    } else {
      expect(answer).toMatchObject({ type: "error", code: "name_taken" });
    }
    for (const s of [a, b]) await s.logLine((l) => l.event === "roster_recovered" && l.reset === true);
    // Alice is herself still, her session stored again: with it, on B, she is the same user.
    const again = await Client.connect(b.wsUrl);
    expect((await again.hello("alice", welcome.session)).user).toEqual(welcome.user);
    // And the room counts everyone once, by one name each.
    const carol = await Client.connect(b.wsUrl);
    await carol.hello("carol");
    const names = (await carol.join("lost")).members.map((m: { name: string }) => m.name);
    expect(names.sort()).toEqual(["alice", "bob", "carol"]);
    for (const c of [alice, bob, newcomer, again, carol]) c.close();
  }, REDIS_TEST_MS);

  test("leaves while Redis is away reach the other instances' lists once it is back: each instance puts its presence back wholesale", async () => {
    await using servers = await instances(redis, 2, { presenceGraceMs: 0 });
    const [a, b] = servers;
    const { alice, bob, welcome } = await meet(a, b, "away");
    const carol = await Client.connect(a.wsUrl);
    const carolWelcome = await carol.hello("carol");
    await carol.join("away");
    expect(await bob.expect("presence")).toMatchObject({ event: "join", user: carolWelcome.user });
    await redis.stop("SIGTERM");
    try {
      // A leave answered `left`, and a dropped socket: neither reaches Redis now.
      carol.send({ type: "leave", room: "away" });
      await carol.expect("left");
      alice.close();
      await a.logLine((l) => l.event === "close" && l.user === welcome.user.id);
    } finally {
      // Even when it fails: every test after it needs the redis-server.
      await redis.start();
    }
    // Back, A replaces what Redis holds of its presence with what it has.
    await a.logLine((l) => l.event === "roster_recovered" && l.reset === false);
    // Everyone's list is right, on either instance. (Bob's instance may hear the leaves only if
    // it was subscribed again before A put its presence back: pub/sub keeps nothing.)
    for (const s of [a, b]) {
      const dave = await Client.connect(s.wsUrl);
      await dave.hello(`dave-${s === a ? "a" : "b"}`);
      expect((await dave.join("away")).members.map((m: { name: string }) => m.name).sort()).toEqual(["bob", `dave-${s === a ? "a" : "b"}`]);
      dave.close();
      await s.logLine((l) => l.event === "close" && l.user === dave.frames[0]!.user.id);
    }
    for (const c of [bob, carol]) c.close();
  }, REDIS_TEST_MS);
});

describe("memory", () => {
  test("at start an instance warns when Redis's maxmemory cannot hold MAX_ROOMS × HISTORY_RETAIN maximal messages, or none is set", async () => {
    expect(historyBytes({ maxRooms: 10_000, historyRetain: 1000, maxMessageChars: 2000 })).toBe(83_000_000_000);
    // The suite's redis-server has no maxmemory.
    {
      await using unbounded = await instances(redis, 1);
      expect(await unbounded[0].logLine((l) => l.event === "redis_memory")).toMatchObject({ level: "warn", maxmemory: 0, needed: 83_000_000_000 });
    }
    await redis.command("CONFIG", "SET", "maxmemory", String(2 ** 30));
    try {
      await using small = await instances(redis, 1, { maxRooms: 100, historyRetain: 100 });
      expect(small[0].logs.filter((l) => l.event === "redis_memory" || l.event === "redis_eviction")).toEqual([]);
      await using large = await instances(redis, 1, { maxRooms: 1000, historyRetain: 1000 });
      expect(await large[0].logLine((l) => l.event === "redis_memory")).toMatchObject({ maxmemory: 2 ** 30, needed: 8_300_000_000 });
    } finally {
      await redis.command("CONFIG", "SET", "maxmemory", "0");
    }
  }, REDIS_TEST_MS);
});

describe("failures", () => {
  test("CLIENT KILL of the subscribers: they subscribe again and catch up what was published meanwhile; no gap, nothing twice", async () => {
    await using duo = await pair("kill");
    const { a, b, alice, bob } = duo;
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
  });

  test("a lost tail: a message stored but never published reaches every instance through the periodic check", async () => {
    await using duo = await pair("tail", { tailCheckMs: TAIL_CHECK_MS });
    const { a, alice, bob } = duo;
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
  });

  test("a spending script whose connection is lost after it was sent is spent once: a frame's token and a slow-mode slot, the resend answered as the first run", async () => {
    const proxy = await cuttingProxy(redis.port);
    const db = redis.freshDb();
    // A still clock: nothing refills, so the bucket's level is exact.
    const t = Date.now();
    const server = await startServer({ redisUrl: proxy.url(db), now: () => t, rateLimitBurst: 6, rateLimitPerSecond: 1 });
    try {
      const olga = await Client.connect(server.wsUrl);
      await olga.hello("olga");
      expect((await olga.join("once")).role).toBe("owner");
      const sam = await Client.connect(server.wsUrl);
      const welcome = await sam.hello("sam");
      await sam.join("once"); // a token: 5 left
      const level = () => redis.commandIn(db, "HGET", `chat:rate:${welcome.user.id}`, "t");
      expect(await level()).toBe("5");
      // The token of this send is taken in Redis, whose answer is lost: the call sent again gets
      // the first run's answer (a second run would take a second token).
      const cut = proxy.cutAfter(shaOf(SCRIPTS.bucketTake));
      sam.send({ type: "send", room: "once", id: "m1", text: "spent once" });
      await cut;
      await sam.until((f) => f.type === "message" && f.id === "m1");
      expect(await level()).toBe("4");
      // The same for slow mode's slot (the owner is not held to it, sam is): taken in Redis, answer
      // lost, and the resend answered as the first run, not taken again (which would refuse the
      // send as too soon).
      olga.send({ type: "room_settings", room: "once", slowModeSeconds: 30, ref: "s" });
      expect((await olga.until((f) => f.type === "ok" || f.type === "error")).at(-1)).toMatchObject({ type: "ok", ref: "s" });
      await sam.until((f) => f.type === "settings");
      const slot = proxy.cutAfter(shaOf(SCRIPTS.slowTake));
      sam.send({ type: "send", room: "once", id: "m2", text: "slow, once" });
      await slot;
      const answer = (await sam.until((f) => (f.type === "message" && f.id === "m2") || f.type === "error")).at(-1);
      expect(answer).toMatchObject({ type: "message", id: "m2" });
      for (const c of [olga, sam]) c.close();
    } finally {
      await server.stop();
      proxy.stop();
    }
  }, REDIS_TEST_MS);

  /** The Redis engine alone (store, roster, relay) on `url`, at the clock `now`; `close` ends it all. */
  async function engineOn(url: string, now: () => number) {
    const opened = await openRedis(DEFAULTS, url, () => {}, now);
    const close = async () => {
      await opened.roster.close();
      await opened.relay.close();
      await opened.store.close();
    };
    return { ...opened, close };
  }

  // §11.2 max_uses counts uses: the resend of a use whose answer was lost must not spend a second
  // one (it would refuse the joiner, the invite gone).
  test("an invite used once, its answer lost with the connection, is spent once and accepted", async () => {
    const proxy = await cuttingProxy(redis.port);
    const now = Date.now();
    const engine = await engineOn(proxy.url(redis.freshDb()), () => now);
    try {
      await engine.store.createInvite("code1", "r", now + 60_000, 1, now, 10);
      const cut = proxy.cutAfter(shaOf(SCRIPTS.inviteUse));
      const used = engine.store.useInvite("code1", "r", now);
      await cut;
      expect(await used).toBe(true);
      // Spent: the next use is refused.
      expect(await engine.store.useInvite("code1", "r", now)).toBe(false);
    } finally {
      await engine.close();
      proxy.stop();
    }
  }, REDIS_TEST_MS);

  // §11.2: the first joiner of a new room owns it; told otherwise by a resend, it would not know it does.
  test("an owner claim whose answer is lost with the connection still makes its claimant the owner, and says so", async () => {
    const proxy = await cuttingProxy(redis.port);
    const now = Date.now();
    const engine = await engineOn(proxy.url(redis.freshDb()), () => now);
    try {
      const cut = proxy.cutAfter(shaOf(SCRIPTS.ownerClaim));
      const claimed = engine.store.claimOwner("fresh", { id: "g_ann", name: "ann" });
      await cut;
      expect(await claimed).toBe(true);
      expect(await engine.store.claimOwner("fresh", { id: "g_bob", name: "bob" })).toBe(false);
    } finally {
      await engine.close();
      proxy.stop();
    }
  }, REDIS_TEST_MS);

  // ROOM_RECLAIM_DAYS frees one room: a resent reclaim must not drop a second room's history.
  test("a reclaim whose answer is lost with the connection frees one room, not two", async () => {
    const proxy = await cuttingProxy(redis.port);
    const t0 = 1_700_000_000_000;
    const engine = await engineOn(proxy.url(redis.freshDb()), () => t0);
    try {
      const entry = (room: string, ts: number) => ({ room, user: { id: "g_a", name: "a" }, id: "1", text: "1", ts });
      await engine.store.append([entry("old1", t0)]);
      await engine.store.append([entry("old2", t0 + 1)]);
      const cut = proxy.cutAfter(shaOf(SCRIPTS.reclaim));
      const freed = engine.store.reclaimIdle(t0 + DAY_MS, () => false);
      await cut;
      expect(await freed).toBe("old1");
      expect((await engine.store.page("old2", { limit: 10 })).messages).toHaveLength(1);
    } finally {
      await engine.close();
      proxy.stop();
    }
  }, REDIS_TEST_MS);

  test("CLIENT KILL of the command connections mid-burst: sends in flight are sent again, each stored and delivered once", async () => {
    await using duo = await pair("resend");
    const { alice, bob } = duo;
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
  });

  test("Redis stops mid-chat: sends get internal, /healthz 503; it restarts (AOF): the instances recover by themselves, no loss, no seq reused", async () => {
    await using duo = await pair("outage");
    const { a, b, alice, bob } = duo;
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
  }, REDIS_TEST_MS);

  test("a stalled Redis (CLIENT PAUSE): a send gets internal within REDIS_TIMEOUT_MS and /healthz 503; answering again, health is back and the send is stored once", async () => {
    await using duo = await pair("stall", { redisTimeoutMs: 300 });
    const { a, alice, bob } = duo;
    const before = await alice.say("stall", "before the stall");
    expect(await bob.expect("message")).toEqual(before);
    // Every client of this redis-server waits, ours included, for 1.5 s.
    await redis.command("CLIENT", "PAUSE", "1500", "ALL");
    alice.send({ type: "send", room: "stall", id: "during", text: "sent into the stall" });
    expect(await alice.expect("error")).toEqual({ type: "error", code: "internal", message: expect.any(String), ref: "during" });
    await a.logLine((l) => l.event === "redis_slow");
    const slow = await a.http("/healthz");
    expect([slow.status, await slow.json()]).toEqual([503, { status: "unavailable", redis: "slow" }]);
    // The pause ends; the instance's own probe hears Redis again.
    await a.logLine((l) => l.event === "redis_answering");
    expect((await a.http("/healthz")).status).toBe(200);
    // The stalled append ran once Redis went on (it had been sent): everyone gets it, and the
    // sender's retry, as the protocol says, is answered with that original.
    const during = await bob.expect("message");
    expect(during).toMatchObject({ id: "during", seq: before.seq + 1 });
    expect(await alice.expect("message")).toEqual(during);
    expect(await alice.say("stall", "sent into the stall", "during")).toEqual(during);
    const page = (await (await a.http("/api/rooms/stall/messages")).json()) as { messages: Frame[] };
    expect(page.messages).toEqual([before, during]);
    expect(await bob.sync()).toEqual([]);
  }, REDIS_TEST_MS);

  test("Redis comes back empty: the instances go on from its seq, and a client's since beyond it tells the client to start over", async () => {
    await using duo = await pair("amnesia");
    const { a, b, alice, bob } = duo;
    for (let i = 1; i <= 3; i++) await alice.say("amnesia", `before ${i}`);
    await bob.until((f) => f.type === "message" && f.text === "before 3");
    await redis.stop("SIGTERM");
    redis.wipe();
    await redis.start();
    for (const s of [a, b]) await s.logLine((l) => l.event === "room_reset" && l.room === "amnesia");
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
  }, REDIS_TEST_MS);

  test("Redis loses its data (FLUSHDB) with a room at seq 3: the new 1–6 are known at once by their epoch; clients get 1001, resume with since and epoch, and miss none", async () => {
    await using duo = await pair("epoch", { presenceGraceMs: 0 });
    const { a, b, alice, bob } = duo;
    const before: Frame[] = [];
    for (let i = 1; i <= 3; i++) before.push(await alice.say("epoch", `before ${i}`));
    expect(messages(await bob.until((f) => f.type === "message" && f.text === "before 3"))).toEqual(before);
    // Joining again, as a client resuming would, tells the room's epoch.
    const { epoch } = await bob.join("epoch", 3);
    expect(epoch).toEqual(expect.any(String));
    const admin = new RedisClient(a.chat.config.redisUrl!);
    await admin.send("FLUSHDB", []);
    admin.close();
    // Six sends, stored as seq 1–6 under a new epoch; the first to come back says so.
    const texts = range(1, 6).map((i) => `after ${i}`);
    texts.forEach((text, i) => alice.send({ type: "send", room: "epoch", id: `after-${i + 1}`, text }));
    for (const c of [alice, bob]) expect(await bounded(c.closed, "close 1001")).toEqual({ code: 1001, reason: "room history was reset" });
    await a.logLine((l) => l.event === "room_reset" && l.room === "epoch" && l.from === epoch);
    // Alice's echoes that never came: she sends them again, with the same ids, once back.
    const echoed = new Set(messages(alice.frames).filter((m) => m.text.startsWith("after")).map((m) => m.id));
    const resumed: Record<string, Frame[]> = {};
    for (const [name, server] of [["alice", a], ["bob", b]] as const) {
      const c = await Client.connect(server.wsUrl);
      await c.hello(`${name} again`);
      c.send({ type: "join", room: "epoch", since: 3, epoch });
      const again = await c.expect("joined");
      expect(again).toMatchObject({ reset: true, epoch: expect.any(String) });
      expect(again.epoch).not.toBe(epoch);
      resumed[name] = again.messages;
      if (name === "alice") {
        for (let i = 1; i <= 6; i++) {
          const id = `after-${i}`;
          if (echoed.has(id) || again.messages.some((m: Frame) => m.id === id)) continue;
          resumed[name]!.push(await c.say("epoch", texts[i - 1]!, id));
        }
      }
      c.close();
    }
    // Every one of the six, once, seq 1–6: in the resumed page, or sent again.
    expect(resumed.alice!.map((m) => [m.seq, m.text])).toEqual(texts.map((text, i) => [i + 1, text]));
    const page = (await (await b.http("/api/rooms/epoch/messages")).json()) as { messages: Frame[] };
    expect(page.messages.map((m) => m.text)).toEqual(texts);
    expect(resumed.bob).toEqual(resumed.alice);
  }, REDIS_TEST_MS);

  test("SIGKILL of instance A mid-burst: its user resumes on B with its session and since, and gets every message once", async () => {
    const db = redis.freshDb();
    await using a = await spawnServer({ REDIS_URL: redis.url(db), RATE_LIMIT_BURST: "1000", RATE_LIMIT_PER_SECOND: "1000" });
    await using b = await startServer({ redisUrl: redis.url(db) });
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
  });
});
