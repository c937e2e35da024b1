/**
 * Integration tests: a real server on port 0, real WebSocket clients, real SQLite files.
 * Steps are ordered by server replies; absence is proven by a marker frame that must come after
 * anything that could have arrived (a ping's pong for direct replies, an echoed message for room
 * events, since messages are published only after their commit).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import {
  Client,
  LineClient,
  WS_UPGRADE,
  type Frame,
  rawWebSocket,
  sqliteWith,
  startServer,
  tempDir,
  upgradeAttempt,
  user,
  type TestServer,
} from "./helpers.ts";

describe("chat in rooms", () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startServer({ presenceGraceMs: 60_000, rateLimitBurst: 100 });
  });
  afterAll(() => server.stop());

  test("two users chat in a room; a third in another room sees nothing", async () => {
    const alice = await user(server, "alice");
    const aliceJoined = await alice.join("lobby");
    expect(aliceJoined).toEqual({
      type: "joined",
      room: "lobby",
      seq: 0,
      oldestSeq: 0,
      members: [{ id: expect.any(String), name: "alice" }],
      messages: [],
      complete: true,
    });
    const bob = await user(server, "bob");
    const bobJoined = await bob.join("lobby");
    expect(bobJoined.members.map((m: { name: string }) => m.name)).toEqual(["alice", "bob"]);
    const bobUser = bobJoined.members[1]!;
    expect(await alice.next()).toEqual({ type: "presence", room: "lobby", event: "join", user: bobUser });
    const carol = await user(server, "carol", "elsewhere");

    const sent = await alice.say("lobby", "hello bob", "a-1");
    expect(sent).toEqual({
      type: "message",
      room: "lobby",
      seq: 1,
      id: "a-1",
      user: aliceJoined.members[0]!,
      text: "hello bob",
      ts: expect.any(Number),
    });
    expect(await bob.next()).toEqual(sent);
    const reply = await bob.say("lobby", "hi alice");
    expect(reply.seq).toBe(2);
    expect(await alice.next()).toEqual(reply);

    // Carol's own echo is published after both lobby messages: nothing from lobby came before it.
    await carol.say("elsewhere", "anyone?");
    expect(carol.frames.map((f) => f.type)).toEqual(["welcome", "joined", "message"]);
    for (const c of [alice, bob, carol]) c.close();
  });

  test("typing reaches the others only, once per throttle window", async () => {
    const dana = await user(server, "dana", "typing");
    const eve = await user(server, "eve", "typing");
    await dana.expect("presence");
    dana.send({ type: "typing", room: "typing" });
    dana.send({ type: "typing", room: "typing" }); // within TYPING_THROTTLE_MS: dropped
    await dana.say("typing", "marker");
    expect(await eve.until((f) => f.type === "message")).toEqual([
      { type: "typing", room: "typing", user: { id: expect.any(String), name: "dana" } },
      expect.objectContaining({ type: "message", text: "marker" }),
    ]);
    // The typist hears nothing of its own typing.
    expect(await dana.sync()).toEqual([]);
    dana.send({ type: "typing", room: "not-joined", ref: "t" });
    expect(await dana.next()).toMatchObject({ type: "error", code: "not_joined", ref: "t" });
    dana.close();
    eve.close();
  });

  test("leave: the leaver gets left, the others a presence leave at once", async () => {
    const fay = await user(server, "fay", "leaving");
    const gus = await user(server, "gus", "leaving");
    await fay.expect("presence");
    gus.send({ type: "leave", room: "leaving", ref: "bye" });
    expect(await gus.next()).toEqual({ type: "left", room: "leaving", ref: "bye" });
    expect(await fay.next()).toEqual({ type: "presence", room: "leaving", event: "leave", user: { id: expect.any(String), name: "gus" } });
    gus.send({ type: "leave", room: "leaving" });
    expect(await gus.next()).toMatchObject({ type: "error", code: "not_joined" });
    // Gus no longer hears the room.
    const later = await fay.say("leaving", "after you left");
    expect(await gus.sync()).toEqual([]);
    expect(later.seq).toBe(1);
    fay.close();
    gus.close();
  });

  test("re-joining a room answers joined again and changes nothing else", async () => {
    const hal = await user(server, "hal", "again");
    const ivy = await user(server, "ivy", "again");
    await hal.expect("presence");
    await hal.say("again", "one");
    await ivy.expect("message");
    ivy.send({ type: "join", room: "again", since: 0, ref: "re" });
    expect(await ivy.next()).toMatchObject({ type: "joined", ref: "re", seq: 1, messages: [{ text: "one" }], complete: true });
    await ivy.say("again", "marker");
    // Hal saw no second presence join, only the marker.
    expect((await hal.until((f) => f.type === "message")).map((f) => f.type)).toEqual(["message"]);
    hal.close();
    ivy.close();
  });

  test("a user is in at most MAX_ROOMS_PER_CONNECTION rooms", async () => {
    const jo = await user(server, "jo");
    for (let i = 0; i < 20; i++) await jo.join(`r${i}`);
    jo.send({ type: "join", room: "r20", ref: "x" });
    expect(await jo.next()).toMatchObject({ type: "error", code: "too_many_rooms", ref: "x" });
    expect((await jo.join("r3")).room).toBe("r3"); // re-joining still works
    jo.close();
  });

  test("/api/rooms lists rooms with members, counting users once", async () => {
    const kim = await user(server, "kim", "apiroom");
    await kim.say("apiroom", "x");
    const res = await server.http("/api/rooms");
    expect(res.status).toBe(200);
    const { rooms } = (await res.json()) as { rooms: { room: string; members: number; seq: number }[] };
    expect(rooms.find((r) => r.room === "apiroom")).toEqual({ room: "apiroom", members: 1, seq: 1 });
    kim.close();
  });
});

describe("presence grace", () => {
  test("a user who comes back within grace is never seen to leave or join", async () => {
    const server = await startServer({ presenceGraceMs: 60_000 });
    const alice = await user(server, "alice", "g");
    const bob = await Client.connect(server.wsUrl);
    const welcome = await bob.hello("bob");
    await bob.join("g");
    await alice.expect("presence");

    bob.close();
    await bob.closed;
    await server.logLine((l) => l.event === "close" && l.user === welcome.user.id);
    // In grace bob still counts as a member, and his name stays his.
    const carol = await user(server, "carol");
    expect((await carol.join("g")).members.map((m: { name: string }) => m.name)).toEqual(["alice", "bob", "carol"]);
    const thief = await Client.connect(server.wsUrl);
    thief.send({ type: "hello", name: "BOB" });
    expect(await thief.next()).toMatchObject({ type: "error", code: "name_taken" });

    const back = await Client.connect(server.wsUrl);
    const again = await back.hello("bob", welcome.session);
    expect(again.user).toEqual(welcome.user);
    expect(again.session).toBe(welcome.session);
    await back.join("g");
    await back.say("g", "I'm back");
    // Alice: carol's join, then bob's message; no leave, no second join.
    expect((await alice.until((f) => f.type === "message")).map((f) => `${f.type}:${(f as any).event ?? ""}`)).toEqual([
      "presence:join",
      "message:",
    ]);
    for (const c of [alice, carol, thief, back]) c.close();
    await server.stop();
  });

  test("when grace ends the others see the leave", async () => {
    const server = await startServer({ presenceGraceMs: 50 });
    const alice = await user(server, "alice", "g");
    const bob = await user(server, "bob", "g");
    await alice.expect("presence");
    bob.close();
    expect(await alice.next()).toEqual({ type: "presence", room: "g", event: "leave", user: { id: expect.any(String), name: "bob" } });
    // The name is free again once bob is gone.
    const newBob = await user(server, "Bob", "g");
    expect(await alice.next()).toMatchObject({ type: "presence", event: "join", user: { name: "Bob" } });
    alice.close();
    newBob.close();
    await server.stop();
  });

  test("with no grace the leave is immediate", async () => {
    const server = await startServer({ presenceGraceMs: 0 });
    const alice = await user(server, "alice", "g");
    const bob = await user(server, "bob", "g");
    await alice.expect("presence");
    bob.close();
    expect(await alice.next()).toMatchObject({ type: "presence", event: "leave", user: { name: "bob" } });
    alice.close();
    await server.stop();
  });

  test("one connection more than MAX_CONNECTIONS_PER_SESSION replaces the oldest (4001), without leave or join", async () => {
    const server = await startServer({ presenceGraceMs: 60_000, maxConnectionsPerSession: 1 });
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
    await server.stop();
  });

  test("an unknown session is ignored: a new user and a new token", async () => {
    const server = await startServer();
    const c = await Client.connect(server.wsUrl);
    const w = await c.hello("zed", "not-a-real-session-token");
    expect(w.session).not.toBe("not-a-real-session-token");
    expect(w.session).toMatch(/^[A-Za-z0-9_-]{43,}$/); // ≥ 256 bits, base64url
    c.close();
    await server.stop();
  });
});

describe("sessions", () => {
  /** A SQLite store that records session writes and can be told to fail them. */
  function spyingStore() {
    const saves: { userId: string; expiresAt: number }[] = [];
    let failNext = false;
    const store = sqliteWith((real) => ({
      saveSession: async (hash, userId, expiresAt) => {
        if (failNext) {
          failNext = false;
          throw new Error("disk full");
        }
        saves.push({ userId, expiresAt });
        return real.saveSession(hash, userId, expiresAt);
      },
    }));
    return { store, saves, failOnce: () => (failNext = true) };
  }

  test("written when issued, not on each reconnect; refreshed at most hourly; TCP users get none", async () => {
    let clock = Date.UTC(2026, 10, 1);
    const ttlMs = 60 * 60_000 * 24;
    const { store, saves } = spyingStore();
    const server = await startServer({ store, tcpPort: 0, now: () => clock, sessionTtlSeconds: ttlMs / 1000, presenceGraceMs: 0 });
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
    await nc.readUntil("here)\n");
    expect(saves.length).toBe(1); // nor does a TCP user
    nc.end();

    clock += 61 * 60_000;
    expect((await connect(first.session)).user).toEqual(first.user);
    expect(saves.at(-1)).toEqual({ userId: first.user.id, expiresAt: clock + ttlMs }); // slid

    clock += ttlMs; // expired: the token is ignored, a new user and token come instead
    const later = await connect(first.session);
    expect(later.user.id).not.toBe(first.user.id);
    expect(later.session).not.toBe(first.session);
    await server.stop();
  });

  test("a failed session write answers internal and leaves hello to be tried again", async () => {
    const { store, failOnce } = spyingStore();
    const server = await startServer({ store });
    const c = await Client.connect(server.wsUrl);
    failOnce();
    c.send({ type: "hello", name: "alice", ref: "1" });
    expect(await c.next()).toMatchObject({ type: "error", code: "internal", ref: "1" });
    expect((await c.hello("alice")).user.name).toBe("alice"); // the name was not left taken
    c.close();
    await server.stop();
  });
});

describe("history and resume", () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startServer({ historyOnJoin: 3, historyRetain: 8, rateLimitBurst: 100 });
  });
  afterAll(() => server.stop());

  test("join without since: the newest HISTORY_ON_JOIN, oldest first; complete only if nothing is older", async () => {
    const alice = await user(server, "alice", "h1");
    for (let i = 1; i <= 5; i++) await alice.say("h1", `m${i}`);
    const bob = await user(server, "bob");
    const joined = await bob.join("h1");
    expect(joined).toMatchObject({ seq: 5, oldestSeq: 1, complete: false });
    expect(joined.messages.map((m: { text: string }) => m.text)).toEqual(["m3", "m4", "m5"]);
    const cy = await user(server, "cy");
    cy.send({ type: "join", room: "h1-empty" });
    expect(await cy.next()).toMatchObject({ seq: 0, oldestSeq: 0, messages: [], complete: true });
    for (const c of [alice, bob, cy]) c.close();
  });

  test("join with since resumes with no gap and no duplicate, paging on with history after", async () => {
    const alice = await user(server, "alice2", "h2");
    for (let i = 1; i <= 2; i++) await alice.say("h2", `m${i}`);
    const bob = await Client.connect(server.wsUrl);
    const welcome = await bob.hello("bob2");
    const first = await bob.join("h2");
    expect(first.messages.map((m: { seq: number }) => m.seq)).toEqual([1, 2]);
    await alice.expect("presence");
    bob.close();
    await bob.closed;
    for (let i = 3; i <= 7; i++) await alice.say("h2", `m${i}`);

    const back = await Client.connect(server.wsUrl);
    await back.hello("bob2", welcome.session);
    const resumed = await back.join("h2", 2);
    expect(resumed).toMatchObject({ seq: 7, complete: false });
    const seen = resumed.messages.map((m: { seq: number }) => m.seq);
    expect(seen).toEqual([3, 4, 5]);
    back.send({ type: "history", room: "h2", after: 5, limit: 50, ref: "p" });
    const page = await back.expect("history");
    expect(page).toMatchObject({ room: "h2", complete: true, ref: "p" });
    expect([...seen, ...page.messages.map((m: { seq: number }) => m.seq)]).toEqual([3, 4, 5, 6, 7]);
    // Entries of messages are exactly message frames.
    expect(page.messages[0]).toEqual({ type: "message", room: "h2", seq: 6, id: expect.any(String), user: { id: expect.any(String), name: "alice2" }, text: "m6", ts: expect.any(Number) });
    alice.close();
    back.close();
  });

  test("since beyond the room's seq gives nothing, complete", async () => {
    const c = await user(server, "dee");
    c.send({ type: "join", room: "h1", since: 99 });
    expect(await c.next()).toMatchObject({ type: "joined", seq: 5, messages: [], complete: true });
    c.close();
  });

  test("history pages both ways and is open for rooms not joined", async () => {
    const c = await user(server, "eli");
    const page = async (q: object) => {
      c.send({ type: "history", room: "h1", ...q });
      const h = await c.expect("history");
      return [h.messages.map((m: { seq: number }) => m.seq), h.complete];
    };
    expect(await page({})).toEqual([[1, 2, 3, 4, 5], true]);
    expect(await page({ limit: 2 })).toEqual([[4, 5], false]);
    expect(await page({ before: 4, limit: 2 })).toEqual([[2, 3], false]);
    expect(await page({ before: 3, limit: 2 })).toEqual([[1, 2], true]);
    expect(await page({ after: 1, limit: 2 })).toEqual([[2, 3], false]);
    expect(await page({ after: 3, limit: 2 })).toEqual([[4, 5], true]);
    expect(await page({ after: 1, before: 4 })).toEqual([[2, 3], true]);
    expect(await page({ after: 5 })).toEqual([[], true]);
    c.send({ type: "history", room: "H1", ref: "bad" });
    expect(await c.next()).toMatchObject({ type: "error", code: "room_invalid", ref: "bad" });
    c.close();
  });

  test("only HISTORY_RETAIN messages are kept per room; seq goes on", async () => {
    const c = await user(server, "fin", "keep");
    for (let i = 1; i <= 10; i++) await c.say("keep", `k${i}`);
    const joined = await c.join("keep");
    expect(joined).toMatchObject({ seq: 10, oldestSeq: 3 });
    c.send({ type: "history", room: "keep", limit: 200 });
    expect((await c.expect("history")).messages.map((m: { seq: number }) => m.seq)).toEqual([3, 4, 5, 6, 7, 8, 9, 10]);
    c.close();
  });

  test("the same messages over HTTP", async () => {
    const res = await server.http("/api/rooms/h1/messages?after=2&limit=2");
    expect(res.status).toBe(200);
    const body = (await res.json()) as { room: string; messages: { seq: number }[]; complete: boolean };
    expect(body.room).toBe("h1");
    expect(body.messages.map((m) => m.seq)).toEqual([3, 4]);
    expect(body.complete).toBe(false);
    expect(await (await server.http("/api/rooms/never-used/messages")).json()).toEqual({ room: "never-used", messages: [], complete: true });
    for (const path of ["/api/rooms/Bad!/messages", "/api/rooms/h1/messages?limit=0", "/api/rooms/h1/messages?before=x"]) {
      const r = await server.http(path);
      expect(r.status).toBe(400);
      expect(Object.keys((await r.json()) as object)).toEqual(["error"]);
    }
  });
});

describe("delivery", () => {
  test("a retried send is stored once; only the sender gets the original again", async () => {
    const server = await startServer();
    const alice = await user(server, "alice", "d");
    const bob = await user(server, "bob", "d");
    await alice.expect("presence");
    const original = await alice.say("d", "first try", "same-id");
    expect(await bob.next()).toEqual(original);
    alice.send({ type: "send", room: "d", id: "same-id", text: "the retry's text is ignored" });
    expect(await alice.next()).toEqual(original);
    // Within one batch too: both retries answered with the original.
    alice.send({ type: "send", room: "d", id: "twice", text: "a" });
    alice.send({ type: "send", room: "d", id: "twice", text: "b" });
    const [a, b] = [await alice.next(), await alice.next()];
    expect(a).toMatchObject({ seq: 2, text: "a" });
    expect(b).toEqual(a);
    expect(await bob.next()).toEqual(a);
    const marker = await bob.say("d", "marker");
    expect(marker.seq).toBe(3);
    // Bob saw "a" once, then his marker: no retry reached him.
    expect(bob.frames.filter((f) => f.type === "message").map((f) => (f as any).seq)).toEqual([1, 2, 3]);
    alice.close();
    bob.close();
    await server.stop();
  });

  test("a failed commit answers internal to the sender only; the retry with the same id is stored once", async () => {
    let failNext = false;
    const store = sqliteWith((real) => ({
      append: async (batch) => {
        if (failNext) {
          failNext = false;
          throw new Error("disk I/O error");
        }
        return real.append(batch);
      },
    }));
    const server = await startServer({ store });
    const alice = await user(server, "alice", "d");
    const bob = await user(server, "bob", "d");
    await alice.expect("presence");
    failNext = true;
    alice.send({ type: "send", room: "d", id: "lost-1", text: "will this stick?" });
    expect(await alice.next()).toMatchObject({ type: "error", code: "internal", ref: "lost-1" });
    const stored = await alice.say("d", "will this stick?", "lost-1");
    expect(stored.seq).toBe(1);
    // Bob saw the stored message once, and nothing of the failure.
    expect(await bob.next()).toEqual(stored);
    expect(await bob.sync()).toEqual([]);
    expect(server.logs.some((l) => l.level === "error" && l.event === "storage")).toBe(true);
    alice.close();
    bob.close();
    await server.stop();
  });

  test("a restart on the same database file loses nothing and reuses no seq", async () => {
    const dir = tempDir();
    const databasePath = join(dir.path, "chat.sqlite");
    let server = await startServer({ databasePath });
    const alice = await Client.connect(server.wsUrl);
    const welcome = await alice.hello("alice");
    await alice.join("persist");
    const sent: Frame[] = [];
    for (let i = 1; i <= 3; i++) sent.push(await alice.say("persist", `before ${i}`, `p${i}`));
    await server.stop();
    expect((await alice.closed).code).toBe(1001);

    server = await startServer({ databasePath });
    const back = await Client.connect(server.wsUrl);
    const again = await back.hello("alice", welcome.session);
    expect(again.user).toEqual(welcome.user); // sessions survive restarts
    const joined = await back.join("persist", 0);
    expect(joined.messages).toEqual(sent);
    expect(joined.seq).toBe(3);
    // Dedup keys survive too.
    back.send({ type: "send", room: "persist", id: "p2", text: "retry after restart" });
    expect(await back.next()).toEqual(sent[1]!);
    expect((await back.say("persist", "after")).seq).toBe(4);
    back.close();
    await server.stop();
    dir.cleanup();
  });
});

describe("bad input", () => {
  let server: TestServer;
  let bad: Client;
  let bystander: Client;
  let peer: Client;
  beforeAll(async () => {
    server = await startServer({ rateLimitBurst: 1000, rateLimitPerSecond: 1000 });
    bad = await user(server, "mallory", "shared");
    bystander = await user(server, "bystander", "shared");
    peer = await user(server, "peer", "shared");
    await bad.until((f) => f.type === "presence" && f.user.name === "peer");
    await bystander.expect("presence");
  });
  afterAll(() => server.stop());

  const cases: [string, string, object][] = [
    ["not JSON", "{oops", { code: "bad_request" }],
    ["an array", "[1,2]", { code: "bad_request" }],
    ["a number", "42", { code: "bad_request" }],
    ["no type", '{"room":"shared"}', { code: "bad_request" }],
    ["an unknown type", '{"type":"shout","ref":"u1"}', { code: "bad_request", ref: "u1" }],
    ["a missing field", '{"type":"send","room":"shared","text":"x","ref":"m1"}', { code: "bad_request", ref: "m1" }],
    ["a field of the wrong type", '{"type":"join","room":7,"ref":"w1"}', { code: "bad_request", ref: "w1" }],
    ["an over-long id", JSON.stringify({ type: "send", room: "shared", id: "i".repeat(65), text: "x" }), { code: "bad_request" }],
    ["an over-long ref", JSON.stringify({ type: "ping", ref: "r".repeat(65) }), { code: "bad_request" }],
    ["a negative since", '{"type":"join","room":"x","since":-1}', { code: "bad_request" }],
    ["a bad room name", '{"type":"join","room":"No Spaces","ref":"r"}', { code: "room_invalid", ref: "r" }],
    ["a bad room before not_joined", '{"type":"send","room":"NOPE","id":"s1","text":"x"}', { code: "room_invalid", ref: "s1" }],
    ["a send to a room not joined", '{"type":"send","room":"other","id":"s2","text":"x"}', { code: "not_joined", ref: "s2" }],
    ["an empty text", '{"type":"send","room":"shared","id":"s3","text":"  \\n "}', { code: "text_invalid", ref: "s3" }],
    ["a control character", '{"type":"send","room":"shared","id":"s4","text":"a\\u0007b"}', { code: "text_invalid", ref: "s4" }],
    ["an over-long text", JSON.stringify({ type: "send", room: "shared", id: "s5", text: "x".repeat(2001) }), { code: "text_invalid", ref: "s5" }],
    ["a second hello", '{"type":"hello","name":"again","ref":"h"}', { code: "bad_request", ref: "h" }],
    ["a leave of a room not joined", '{"type":"leave","room":"other"}', { code: "not_joined" }],
  ];

  for (const [what, raw, expected] of cases) {
    test(`${what} → an error; the connection and the room go on`, async () => {
      bad.sendRaw(raw);
      const error = await bad.next();
      expect(error).toMatchObject({ type: "error", ...expected, message: expect.any(String) });
      if (!("ref" in expected)) expect(error.ref).toBeUndefined();
      // The bystander keeps chatting, and nothing of the bad frame reached anyone else.
      const m = await bystander.say("shared", `still fine after ${what}`);
      expect(await peer.next()).toEqual(m);
      expect(await bad.next()).toEqual(m);
    });
  }

  test("a text of exactly MAX_MESSAGE_CHARS code points is accepted", async () => {
    const text = "😀".repeat(2000);
    const m = await bad.say("shared", text);
    expect(m.text).toBe(text);
    expect(await bystander.next()).toEqual(m);
    expect(await peer.next()).toEqual(m);
  });

  test("a frame before hello gets not_ready; ping is answered; hello then works", async () => {
    const c = await Client.connect(server.wsUrl);
    c.send({ type: "join", room: "shared", ref: "early" });
    expect(await c.next()).toMatchObject({ type: "error", code: "not_ready", ref: "early" });
    c.send({ type: "join" }); // even an invalid frame of a known type
    expect(await c.next()).toMatchObject({ code: "not_ready" });
    c.send({ type: "ping", ref: "p" });
    expect(await c.next()).toEqual({ type: "pong", ref: "p" });
    c.send({ type: "hello", name: "bad name!", ref: "n" });
    expect(await c.next()).toMatchObject({ type: "error", code: "name_invalid", ref: "n" });
    c.send({ type: "hello", name: "PEER" });
    expect(await c.next()).toMatchObject({ type: "error", code: "name_taken" });
    c.send({ type: "hello", name: "x".repeat(40) });
    expect(await c.next()).toMatchObject({ type: "error", code: "name_invalid" });
    expect((await c.hello("  newcomer  ")).user.name).toBe("newcomer");
    c.close();
  });

  test("a binary frame → unsupported, then close 1003", async () => {
    const c = await user(server, "binary");
    c.sendRaw(new Uint8Array([1, 2, 3]));
    expect(await c.next()).toMatchObject({ type: "error", code: "unsupported" });
    expect(await c.closed).toEqual({ code: 1003, reason: "binary frames are not supported" });
    const m = await bystander.say("shared", "after the binary frame");
    expect(await peer.next()).toEqual(m);
    expect(await bad.next()).toEqual(m);
  });

  test("a frame over MAX_PAYLOAD_BYTES closes with 1009", async () => {
    const c = await user(server, "huge");
    c.sendRaw(JSON.stringify({ type: "send", room: "shared", id: "x", text: "x".repeat(40_000) }));
    expect((await c.closed).code).toBe(1009);
    const m = await bystander.say("shared", "after the huge frame");
    expect(await peer.next()).toEqual(m);
    expect(await bad.next()).toEqual(m);
  });
});

describe("limits", () => {
  test("a flood past the rate limit gets rate_limited, then 1008; others are unaffected", async () => {
    const frozen = Date.now();
    // A stopped clock refills nothing, so the counts below are exact.
    const server = await startServer({ now: () => frozen, rateLimitBurst: 5, rateLimitPerSecond: 1, rateLimitAbuseErrors: 3 });
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
    await server.stop();
  });

  test("no successful hello within HELLO_TIMEOUT_MS closes with 1008", async () => {
    const server = await startServer({ helloTimeoutMs: 100 });
    const c = await Client.connect(server.wsUrl);
    c.send({ type: "hello", name: "" }); // a failed attempt does not restart the clock
    expect(await c.next()).toMatchObject({ code: "name_invalid" });
    expect(await c.closed).toEqual({ code: 1008, reason: "hello timeout" });
    const ok = await Client.connect(server.wsUrl);
    await ok.hello("in time");
    expect(await ok.sync()).toEqual([]);
    ok.close();
    await server.stop();
  });

  test("a client that never reads is closed at the backpressure limit; the others keep receiving", async () => {
    const server = await startServer({
      backpressureLimitBytes: 64 * 1024,
      maxMessageChars: 100_000,
      maxPayloadBytes: 12 * 100_000 + 512,
      rateLimitBurst: 10_000,
      rateLimitPerSecond: 10_000,
      presenceGraceMs: 0,
    });
    const reader = await user(server, "reader", "flood");
    const writer = await user(server, "writer", "flood");
    const slow = await rawWebSocket(Number(server.chat.url.port));
    slow.send({ type: "hello", name: "slow" });
    slow.send({ type: "join", room: "flood" });
    slow.pause();
    await reader.until((f) => f.type === "presence" && f.user.name === "slow");
    await writer.until((f) => f.type === "presence" && f.user.name === "slow");

    // Kernel buffers take a few MB before Bun's own buffer grows; bounded at 300 × 100 KB.
    const big = "x".repeat(100_000);
    const closedSlow = server.logLine((l) => l.event === "close" && l.reason === "backpressure");
    let sent = 0;
    let slowClosed = false;
    void closedSlow.then(() => (slowClosed = true), () => {});
    while (!slowClosed && sent < 300) {
      const id = `big-${sent++}`;
      writer.send({ type: "send", room: "flood", id, text: big });
      await writer.until((f) => f.type === "message" && f.id === id);
    }
    expect(slowClosed).toBe(true);
    const closeLine = await closedSlow;
    expect(closeLine).toMatchObject({ transport: "ws", code: expect.any(Number) });

    writer.send({ type: "send", room: "flood", id: "last", text: "after the slow one is gone" });
    const last = { id: "last" };
    const got = (await reader.until((f) => f.type === "message" && f.id === last.id)).filter((f) => f.type === "message");
    expect(got.map((f) => f.id)).toEqual([...Array.from({ length: sent }, (_, i) => `big-${i}`), last.id]);
    const metrics = await (await server.http("/metrics")).text();
    expect(metrics).toContain("chat_backpressure_closes_total 1\n");
    expect(metrics).toMatch(/chat_publish_drops_total [1-9]/);
    expect(await (await server.http("/healthz")).json()).toMatchObject({ connections: 2 });
    reader.close();
    writer.close();
    await server.stop();
  });
});

describe("HTTP and upgrade checks", () => {
  let server: TestServer;
  let port: number;
  beforeAll(async () => {
    server = await startServer({ allowedOrigins: ["https://chat.example.com"] });
    port = Number(server.chat.url.port);
  });
  afterAll(() => server.stop());

  test("Origin: a foreign origin or null gets 403; none, the same host or a listed one is let in", async () => {
    for (const origin of ["https://evil.example", "null", `http://127.0.0.1:${port + 1}`, "https://chat.example.com.evil.example"]) {
      expect(await upgradeAttempt(port, { ...WS_UPGRADE, Origin: origin })).toMatchObject({ status: 403, body: { error: "origin_not_allowed" } });
    }
    for (const origin of [undefined, `http://127.0.0.1:${port}`, `https://127.0.0.1:${port}`, "https://chat.example.com"]) {
      const answer = await upgradeAttempt(port, origin ? { ...WS_UPGRADE, Origin: origin } : WS_UPGRADE);
      expect(answer.status).toBe(101);
    }
    await server.settled();
  });

  test("without Upgrade: websocket → 426", async () => {
    const res = await server.http("/ws");
    expect(res.status).toBe(426);
    expect(res.headers.get("upgrade")).toBe("websocket");
    expect(await res.json()).toEqual({ error: "upgrade_required" });
  });

  test("healthz, metrics, security headers, 404", async () => {
    const health = await server.http("/healthz");
    expect(health.status).toBe(200);
    expect(await health.json()).toEqual({ status: "ok", connections: 0, rooms: 0, uptime: expect.any(Number) });
    const page = await server.http("/");
    expect(page.status).toBe(200);
    expect(page.headers.get("content-type")).toStartWith("text/html");
    expect(page.headers.get("content-security-policy")).toBe(
      "default-src 'self'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    );
    expect(page.headers.get("x-content-type-options")).toBe("nosniff");
    for (const path of ["/app.js", "/style.css", "/favicon.svg"]) {
      const res = await server.http(path);
      expect(res.status).toBe(200);
      expect(res.headers.get("content-security-policy")).toContain("default-src 'self'");
    }
    const missing = await server.http("/nope");
    expect(missing.status).toBe(404);
    expect(missing.headers.get("content-security-policy")).toContain("default-src 'self'");
    const metrics = await server.http("/metrics");
    expect(metrics.headers.get("content-type")).toStartWith("text/plain");
    const text = await metrics.text();
    for (const name of ["chat_connections", "chat_joins_total", "chat_messages_in_total", "chat_messages_out_total", "chat_errors_total", "chat_publish_drops_total", "chat_backpressure_closes_total", "chat_storage_write_seconds_bucket"]) {
      expect(text).toContain(`\n${name}`);
    }
  });
});

describe("connection caps", () => {
  test("MAX_CONNECTIONS_PER_IP → 429, MAX_CONNECTIONS → 503; TRUST_PROXY takes the address from the proxy", async () => {
    const server = await startServer({ trustProxy: true, maxConnections: 3, maxConnectionsPerIp: 2 });
    const port = Number(server.chat.url.port);
    // The proxy next to us appends the client last to X-Forwarded-For; Fly-Client-IP is the client alone, and wins.
    const from = (ip: string, header = "X-Forwarded-For") =>
      Client.connect(server.wsUrl, header === "X-Forwarded-For" ? { [header]: `10.9.9.9, ${ip}` } : { [header]: ip, "X-Forwarded-For": "10.7.7.7" });
    const a1 = await from("10.0.0.1");
    const a2 = await from("10.0.0.1", "Fly-Client-IP");
    expect(await upgradeAttempt(port, { ...WS_UPGRADE, "X-Forwarded-For": "10.0.0.1" })).toMatchObject({
      status: 429,
      body: { error: "too_many_connections_from_ip" },
    });
    const b = await from("10.0.0.2");
    expect(await upgradeAttempt(port, { ...WS_UPGRADE, "X-Forwarded-For": "10.0.0.3" })).toMatchObject({
      status: 503,
      body: { error: "too_many_connections" },
    });
    expect(server.logs.filter((l) => l.event === "open").map((l) => l.ip)).toEqual(["10.0.0.1", "10.0.0.1", "10.0.0.2"]);
    // A closed connection frees its place.
    a1.close();
    await server.logLine((l) => l.event === "close" && l.ip === "10.0.0.1");
    const a3 = await from("10.0.0.1");
    for (const c of [a2, a3, b]) c.close();
    await server.settled();
    expect(await (await server.http("/healthz")).json()).toMatchObject({ connections: 0 });
    await server.stop();
  });

  test("without TRUST_PROXY, forwarded addresses are ignored", async () => {
    const server = await startServer({ maxConnectionsPerIp: 1 });
    const a = await Client.connect(server.wsUrl, { "X-Forwarded-For": "10.0.0.1" });
    expect(await upgradeAttempt(Number(server.chat.url.port), { ...WS_UPGRADE, "X-Forwarded-For": "10.0.0.2" })).toMatchObject({ status: 429 });
    expect(server.logs.find((l) => l.event === "open")?.ip).toBe("127.0.0.1");
    a.close();
    await server.stop();
  });
});

describe("logs and shutdown", () => {
  test("one JSON line per open and close with id, ip, duration, code and reason", async () => {
    const server = await startServer();
    const c = await user(server, "logger");
    const opened = await server.logLine((l) => l.event === "open");
    c.ws.close(1000, "done here");
    const closed = await server.logLine((l) => l.event === "close" && l.conn === opened.conn);
    expect(opened).toMatchObject({ level: "info", transport: "ws", ip: "127.0.0.1", conn: expect.any(String), ts: expect.any(String) });
    expect(closed).toMatchObject({ level: "info", ip: "127.0.0.1", durationMs: expect.any(Number), code: 1000, reason: "done here", user: expect.any(String) });
    await server.stop();
  });

  test("stop: draining answers 503, accepted messages are stored and delivered, then every client gets 1001", async () => {
    const dir = tempDir();
    const databasePath = join(dir.path, "chat.sqlite");
    // A store whose commits wait for the test holds stop() at its first step, flushing.
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const store = sqliteWith(
      (real) => ({
        append: async (batch) => {
          await gate;
          return real.append(batch);
        },
      }),
      databasePath,
    );
    const server = await startServer({ store });
    const port = Number(server.chat.url.port);
    const a = await user(server, "a", "bye");
    const b = await user(server, "b", "bye");
    await a.expect("presence");
    a.send({ type: "send", room: "bye", id: "last", text: "sent as the server stops" });
    await a.sync(); // the send was read and handed to the batcher
    const stopped = server.stop();
    const health = await server.http("/healthz");
    expect(health.status).toBe(503);
    expect(await health.json()).toEqual({ status: "draining" });
    expect(await upgradeAttempt(port, WS_UPGRADE)).toMatchObject({ status: 503, body: { error: "draining" } });
    release();
    for (const c of [a, b]) {
      expect(await c.next()).toMatchObject({ type: "message", id: "last", seq: 1 });
      expect(await c.closed).toEqual({ code: 1001, reason: "server shutting down" });
    }
    await stopped;
    const again = await startServer({ databasePath });
    const r = await again.http("/api/rooms/bye/messages");
    expect(((await r.json()) as { messages: { id: string }[] }).messages.map((m) => m.id)).toEqual(["last"]);
    await again.stop();
    dir.cleanup();
  });


});
