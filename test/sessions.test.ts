/**
 * Sessions and identity: the token a hello gets (its strength, when it is written, how long it
 * lives), a session on several connections and what one too many does (4001), and a rename by a
 * hello that brings a live session and a new name, and a signout that wins over a hello of its
 * session under way. Runs on both engines where the hub's rule is under test; on SQLite where a
 * test brings its own store.
 */
import { describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { RedisStore } from "../src/redis/store.ts";
import { SqliteStore } from "../src/sqlite.ts";
import { Client, ENGINES, LineClient, engineServers, heldOnce, instances, redisForSuite, sqliteWith, startServer, user, type Engine } from "./helpers.ts";

const DAY_MS = 86_400_000;

/**
 * Holds the next hello, once armed, between its session's lookup and its write (at the server-ban
 * check), on `engine`'s store, every instance of it in this process. `using` puts the store back.
 */
function heldHello(engine: Engine) {
  const held = heldOnce();
  const store = (engine === "sqlite" ? SqliteStore : RedisStore).prototype as { serverBan: RedisStore["serverBan"] };
  const real = store.serverBan;
  store.serverBan = async function (this: unknown, ...args) {
    await held.pass();
    return real.apply(this, args);
  };
  return Object.assign(held, { [Symbol.dispose]: () => void (store.serverBan = real) });
}

for (const engine of ENGINES) {
  describe(engine, () => {
    const { startServer } = engineServers(engine);

    describe("presence grace", () => {
      test("one connection more than MAX_CONNECTIONS_PER_SESSION replaces the oldest (4001), without leave or join", async () => {
        await using server = await startServer({ presenceGraceMs: 60_000, maxConnectionsPerSession: 1 });
        const alice = await user(server, "alice", "g");
        const first = await Client.connect(server.wsUrl);
        const welcome = await first.hello("bob");
        await first.join("g");
        await alice.expect("presence");
        const second = await Client.connect(server.wsUrl);
        const again = await second.hello("bobby", welcome.session); // a session may bring a new name
        expect(again.user).toEqual({ id: welcome.user.id, name: "bobby" });
        expect(await first.closed).toEqual({ code: 4001, reason: "replaced" });
        const joined = await second.join("g");
        expect(joined.members).toEqual([expect.objectContaining({ name: "alice" }), { id: welcome.user.id, name: "bobby" }]);
        await second.say("g", "new tab");
        // The rename is all alice sees: no leave, no second join.
        expect(await alice.until((f) => f.type === "message")).toEqual([
          { type: "presence", room: "g", event: "rename", user: { id: welcome.user.id, name: "bobby" } },
          expect.objectContaining({ type: "message", text: "new tab" }),
        ]);
        // The old name is free; the new one is taken.
        const other = await Client.connect(server.wsUrl);
        other.send({ type: "hello", name: "bobby" });
        expect(await other.next()).toMatchObject({ code: "name_taken" });
        expect((await other.hello("bob")).user.name).toBe("bob");
        for (const c of [alice, second, other]) c.close();
      });

      test("an unknown session is ignored: a new user and a new token", async () => {
        await using server = await startServer();
        const c = await Client.connect(server.wsUrl);
        const w = await c.hello("zed", "not-a-real-session-token");
        expect(w.session).not.toBe("not-a-real-session-token");
        expect(w.session).toMatch(/^[A-Za-z0-9_-]{43,}$/); // ≥ 256 bits, base64url
        c.close();
      });
    });

    describe("signout racing a hello of the same session (§11.1)", () => {
      /**
       * Tab a signs out while tab b's hello with the same session waits for storage: b gets what an
       * unknown session gets (a new user and a new token, §4), and the revoked token restores nobody.
       * `tabs` more tabs of the session come first (one: the session is refreshed to its full TTL,
       * and b's hello writes nothing).
       */
      async function race(engine: Engine, tabs: number) {
        await using server = await startServer();
        const a = await Client.connect(server.wsUrl);
        const welcome = await a.hello("alice");
        const more = [];
        for (let i = 0; i < tabs; i++) {
          const tab = await Client.connect(server.wsUrl);
          await tab.hello("alice", welcome.session);
          more.push(tab);
        }
        const b = await Client.connect(server.wsUrl);
        using held = heldHello(engine);
        held.arm();
        b.send({ type: "hello", name: "alice", session: welcome.session, ref: "b" });
        await held.waiting;
        a.send({ type: "signout" });
        expect((await a.next()).type).toBe("ok");
        expect(await a.closed).toEqual({ code: 1000, reason: "signed out" });
        for (const tab of more) expect(await tab.closed).toEqual({ code: 1000, reason: "signed out" });
        held.release();
        const answer = await b.next();
        const c = await Client.connect(server.wsUrl);
        const again = await c.hello("carol", welcome.session);
        expect({ b: { ref: answer.ref, type: answer.type, sameUser: answer.user?.id === welcome.user.id, sameToken: answer.session === welcome.session }, c: again.user.id === welcome.user.id }).toEqual({
          b: { ref: "b", type: "welcome", sameUser: false, sameToken: false },
          c: false,
        });
        expect(await b.sync()).toEqual([]);
        for (const x of [b, c]) x.close();
      }

      test("the hello would refresh the session: it writes nothing back, and gets a new user and token", () => race(engine, 0));
      test("the hello finds the session fresh and would write nothing: still a new user and token", () => race(engine, 1));
    });

    test("a new session expires after a day unless it is used again, which gives it the full TTL", async () => {
      let t = 1_700_000_000_000;
      await using server = await startServer({ now: () => t });
      const once = await user(server, "once");
      const twice = await user(server, "twice");
      const [onceWelcome, twiceWelcome] = [once.frames[0]!, twice.frames[0]!];
      once.close();
      twice.close();
      await server.settled();

      t += 3_600_000;
      const back = await Client.connect(server.wsUrl);
      expect((await back.hello("twice again", twiceWelcome.session)).user.id).toBe(twiceWelcome.user.id);
      back.close();
      await server.settled();

      t += DAY_MS;
      const late = await Client.connect(server.wsUrl);
      const lateWelcome = await late.hello("once again", onceWelcome.session);
      expect(lateWelcome.user.id).not.toBe(onceWelcome.user.id);
      expect(lateWelcome.session).not.toBe(onceWelcome.session);
      const kept = await Client.connect(server.wsUrl);
      expect((await kept.hello("twice later", twiceWelcome.session)).user.id).toBe(twiceWelcome.user.id);
      late.close();
      kept.close();
    });

    test("SESSION_TTL_SECONDS under an hour: a session in use is pushed back every half TTL, so it lives a TTL after its last use", async () => {
      let t = 1_700_000_000_000;
      await using server = await startServer({ sessionTtlSeconds: 120, presenceGraceMs: 0, now: () => t });
      const first = await user(server, "sam");
      const welcome = first.frames[0]!;
      first.close();
      await server.settled();
      const use = async () => {
        const c = await Client.connect(server.wsUrl);
        const id = (await c.hello("sam", welcome.session)).user.id;
        c.close();
        await server.settled();
        return id;
      };
      t += 100_000; // used again 100 s later: valid for 120 s from now
      expect(await use()).toBe(welcome.user.id);
      t += 100_000; // 100 s after its last use, 200 s after it was made
      expect(await use()).toBe(welcome.user.id);
    });
  });
}

// On SQLite, the default engine, only: "sessions" spies on a store of its own.
describe("sessions", () => {
  /** A SQLite store that records session writes and can be told to fail them. */
  function spyingStore() {
    const saves: { userId: string; expiresAt: number }[] = [];
    let failNext = false;
    const store = sqliteWith((real) => ({
      saveSession: async (hash, session, refresh) => {
        if (failNext) {
          failNext = false;
          throw new Error("disk full");
        }
        saves.push({ userId: session.userId, expiresAt: session.expiresAt });
        return real.saveSession(hash, session, refresh);
      },
    }));
    return { store, saves, failOnce: () => (failNext = true) };
  }

  test("written when issued, not on each reconnect; refreshed at most hourly; TCP users get none", async () => {
    let clock = Date.UTC(2026, 10, 1);
    const ttlMs = 60 * 60_000 * 24;
    const { store, saves } = spyingStore();
    await using server = await startServer({ store, tcpPort: 0, now: () => clock, sessionTtlSeconds: ttlMs / 1000, presenceGraceMs: 0 });
    const connect = async (session?: string) => {
      const c = await Client.connect(server.wsUrl);
      const w = await c.hello("alice", session);
      c.close();
      await server.settled();
      return w;
    };
    const first = await connect();
    expect(saves).toEqual([{ userId: first.user.id, expiresAt: clock + ttlMs }]);
    clock += 60_000;
    expect((await connect(first.session)).user).toEqual(first.user);
    expect(saves.length).toBe(1); // a reconnect a minute later writes nothing

    const nc = await LineClient.connect(server.chat.tcpPort!);
    await nc.readUntil("name: ");
    nc.write("bob\n");
    await nc.readUntil("what you type goes to general\n");
    expect(saves.length).toBe(1); // nor does a TCP user
    nc.end();

    clock += 61 * 60_000;
    expect((await connect(first.session)).user).toEqual(first.user);
    expect(saves.at(-1)).toEqual({ userId: first.user.id, expiresAt: clock + ttlMs }); // slid

    clock += ttlMs; // expired: the token is ignored, a new user and token come instead
    const later = await connect(first.session);
    expect(later.user.id).not.toBe(first.user.id);
    expect(later.session).not.toBe(first.session);
  });

  test("a failed session write answers internal and leaves hello to be tried again", async () => {
    const { store, failOnce } = spyingStore();
    await using server = await startServer({ store });
    const c = await Client.connect(server.wsUrl);
    failOnce();
    c.send({ type: "hello", name: "alice", ref: "1" });
    expect(await c.next()).toMatchObject({ type: "error", code: "internal", ref: "1" });
    expect((await c.hello("alice")).user.name).toBe("alice"); // the name was not left taken
    c.close();
  });
});

describe("several connections per session, rename (§10)", () => {
  test("one connection past MAX_CONNECTIONS_PER_SESSION closes the oldest with 4001", async () => {
    await using server = await startServer({ maxConnectionsPerSession: 3 });
    const first = await Client.connect(server.wsUrl);
    const w = await first.hello("many");
    const tabs = [first];
    for (let i = 0; i < 3; i++) {
      const tab = await Client.connect(server.wsUrl);
      await tab.hello("many", w.session);
      tabs.push(tab);
    }
    expect(await first.closed).toEqual({ code: 4001, reason: "replaced" });
    for (const tab of tabs.slice(1)) expect(await tab.sync()).toEqual([]);
    for (const tab of tabs) tab.close();
  });

  test("a hello with a live session and a new name renames the user in every room, TCP included", async () => {
    await using server = await startServer({ tcpPort: 0 });
    const bob = await user(server, "bob", "a", "b");
    const tcp = await LineClient.connect(server.chat.tcpPort!);
    await tcp.readUntil("name: ");
    tcp.write("nc\n/join a\n");
    await tcp.readUntil("* now in a");
    const first = await Client.connect(server.wsUrl);
    const w = await first.hello("alice");
    await first.join("a");
    await first.join("b");
    const renamed = { id: w.user.id, name: "alicia" };
    const second = await Client.connect(server.wsUrl);
    expect((await second.hello("alicia", w.session)).user).toEqual(renamed);
    // Her first tab hears it too: it is in both rooms.
    expect(await first.until((f) => f.type === "presence" && f.room === "b")).toEqual([
      { type: "presence", room: "a", event: "rename", user: renamed },
      { type: "presence", room: "b", event: "rename", user: renamed },
    ]);
    expect(await bob.until((f) => f.type === "presence" && f.event === "rename" && f.room === "b")).toEqual([
      expect.objectContaining({ event: "join", room: "a", user: { id: expect.any(String), name: "nc" } }),
      expect.objectContaining({ event: "join", room: "a", user: w.user }),
      expect.objectContaining({ event: "join", room: "b", user: w.user }),
      { type: "presence", room: "a", event: "rename", user: renamed },
      { type: "presence", room: "b", event: "rename", user: renamed },
    ]);
    expect(await tcp.readUntil("alicia in a\n")).toEndWith("* alice is now alicia in a\n");
    expect((await second.join("a")).members.map((u: { name: string }) => u.name)).toEqual(["bob", "nc", "alicia"]);
    // The old name is free again.
    expect((await (await Client.connect(server.wsUrl)).hello("alice")).user.name).toBe("alice");
    for (const c of [bob, first, second]) c.close();
    tcp.end();
  });
});

describe("sessions across instances (redis)", () => {
  const redis = redisForSuite();

  test("a new session's key lives a day in Redis; used again, it gets the full SESSION_TTL_SECONDS", async () => {
    const t = 1_700_000_000_000;
    await using servers = await instances(redis, 1, { now: () => t });
    const [s] = servers;
    const db = servers.db;
    const ttl = async (token: string) => Number(await redis.commandIn(db, "PTTL", `chat:session:${createHash("sha256").update(token).digest("hex")}`));
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
  });

  test("a signout on one instance wins over a hello of the same session under way on another (§11.1): a new user and token", async () => {
    await using servers = await instances(redis, 2);
    const [one, two] = servers;
    const a = await Client.connect(one.wsUrl);
    const welcome = await a.hello("alice");
    // A tab on the other instance: the session is refreshed to its full TTL, so b's hello writes nothing.
    const tab = await Client.connect(two.wsUrl);
    await tab.hello("alice", welcome.session);
    const b = await Client.connect(two.wsUrl);
    using held = heldHello("redis");
    held.arm();
    b.send({ type: "hello", name: "alice", session: welcome.session, ref: "b" });
    await held.waiting;
    a.send({ type: "signout" });
    // The tab's close says the other instance heard of the signout before b's hello goes on.
    expect(await tab.closed).toEqual({ code: 1000, reason: "signed out" });
    held.release();
    const answer = await b.next();
    expect({ ref: answer.ref, type: answer.type, sameUser: answer.user?.id === welcome.user.id }).toEqual({ ref: "b", type: "welcome", sameUser: false });
    const c = await Client.connect(one.wsUrl);
    expect((await c.hello("carol", welcome.session)).user.id).not.toBe(welcome.user.id);
    expect(await b.sync()).toEqual([]);
    for (const x of [b, c]) x.close();
  });
});
