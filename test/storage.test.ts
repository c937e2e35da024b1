/**
 * Storage: its bounds (§10 and issue #9: MAX_ROOMS, HISTORY_MAX_AGE_DAYS, no per-room memory in
 * the engine), what survives a restart on the same file, and durability: a message is published
 * only after the fsync of its commit, and a failed fsync stops the engine. The bounds run on both
 * engines and across instances; the file and fsync tests on SQLite. Clocks are injected.
 */
import type { Database } from "bun:sqlite";
import { describe, expect, test } from "bun:test";
import { fsync } from "node:fs";
import { join } from "node:path";
import { SqliteStore, type NewMessage } from "../server.ts";
import type { SessionRecord } from "../src/engine.ts";
import { Client, ENGINES, engineServers, redisForSuite, startServer, tempDir, user, type Frame } from "./helpers.ts";

const DAY_MS = 86_400_000;

for (const engine of ENGINES) {
  describe(engine, () => {
    const { startServer } = engineServers(engine);

    test("MAX_ROOMS: a send that would start one more room with history gets room_limit, and nothing is stored or published", async () => {
      await using server = await startServer({ maxRooms: 2 });
      const alice = await user(server, "alice", "one", "two", "three");
      const bob = await user(server, "bob", "three");
      await alice.until((f) => f.type === "presence" && f.room === "three");
      await alice.say("one", "first room");
      await alice.say("two", "second room");
      alice.send({ type: "send", room: "three", id: "over", text: "one room too many" });
      expect(await alice.next()).toMatchObject({ type: "error", code: "room_limit", ref: "over" });
      // Rooms that already hold history still take messages; the refused one spent no seq.
      expect((await alice.say("one", "still fine")).seq).toBe(2);
      expect(await bob.sync()).toEqual([]);
      const again = await Client.connect(server.wsUrl);
      await again.hello("carol");
      expect(await again.join("three")).toMatchObject({ seq: 0, oldestSeq: 0, messages: [] });
      const metrics = await (await server.http("/metrics")).text();
      expect(metrics).toContain('chat_errors_total{code="room_limit"} 1');
      for (const c of [alice, bob, again]) c.close();
    });

    test("ROOM_STARTS_PER_HOUR and _PER_IP: one new room past a user's or an address's starts is rate_limited; rooms that exist are joined as ever", async () => {
      let t = 1_700_000_000_000;
      await using server = await startServer({ now: () => t, roomStartsPerHour: 2, roomStartsPerHourPerIp: 3 });
      const alice = await user(server, "alice", "a1", "a2");
      alice.send({ type: "join", room: "a3", ref: "a3" });
      // Two an hour: the next one in half an hour.
      expect(await alice.next()).toEqual({ type: "error", code: "rate_limited", message: expect.any(String), retryAfterMs: 1_800_000, ref: "a3" });
      const bob = await user(server, "bob", "b1");
      // Bob is in b1: it exists, and joining it starts nothing.
      expect((await alice.join("b1")).room).toBe("b1");
      // The address started three (a1, a2, b1): a new user from it starts none either.
      const carol = await user(server, "carol");
      carol.send({ type: "join", room: "c1", ref: "c1" });
      expect(await carol.next()).toMatchObject({ type: "error", code: "rate_limited", retryAfterMs: 1_200_000, ref: "c1" });
      expect(await carol.join("a1")).toMatchObject({ room: "a1" });
      expect(await alice.expect("presence")).toMatchObject({ room: "a1", event: "join" });
      // Just past the half hour: bucket-take.lua's arithmetic and TokenBucket's may round apart at it.
      t += 1_800_001;
      expect((await alice.join("a3")).role).toBe("owner");
      for (const c of [alice, bob, carol]) c.close();
    });

    test("a full MAX_ROOMS takes the place of the room idle longest (nobody in it, nothing said for ROOM_RECLAIM_DAYS): its history goes, its seq stays", async () => {
      let t = 1_700_000_000_000;
      await using server = await startServer({ now: () => t, maxRooms: 2, roomReclaimDays: 1, presenceGraceMs: 0 });
      const alice = await user(server, "alice", "older", "old");
      await alice.say("older", "said first");
      t += 1000;
      const kept = await alice.say("old", "said later");
      for (const room of ["older", "old"]) {
        alice.send({ type: "leave", room });
        await alice.expect("left");
      }
      // Bob sits in the room idle longest but one: a room with someone in it is never taken.
      const bob = await user(server, "bob", "old");
      t += DAY_MS + 1000;
      await alice.join("newer");
      const fresh = await alice.say("newer", "a room of its own");
      expect(fresh.seq).toBe(1);
      expect(await server.logLine((l) => l.event === "room_reclaimed")).toMatchObject({ room: "older", for: "newer" });
      // Both left are in use (bob in old, alice in newer): one more room is refused, as ever.
      const carol = await user(server, "carol", "third");
      carol.send({ type: "send", room: "third", id: "over", text: "no place" });
      expect(await carol.next()).toMatchObject({ type: "error", code: "room_limit", ref: "over" });
      const history = async (room: string) => ((await (await server.http(`/api/rooms/${room}/messages`)).json()) as { messages: Frame[] }).messages;
      expect(await history("older")).toEqual([]);
      expect(await history("old")).toEqual([kept]);
      expect(await carol.join("older")).toMatchObject({ seq: 1, oldestSeq: 0, messages: [] });
      for (const c of [alice, bob, carol]) c.close();
    });

    test("HISTORY_MAX_AGE_DAYS: a commit trims its room's messages older than the limit", async () => {
      let t = 1_700_000_000_000;
      await using server = await startServer({ now: () => t, historyMaxAgeDays: 1 });
      const alice = await user(server, "alice", "aging");
      // A stored event among them (a settings change) is trimmed as the messages are.
      alice.send({ type: "room_settings", room: "aging", topic: "old topic", ref: "t" });
      await alice.until((f) => f.type === "ok" && f.ref === "t");
      await alice.say("aging", "old news");
      await alice.say("aging", "still old");
      t += DAY_MS - 1;
      await alice.say("aging", "a day later");
      t += 2;
      // The first three are now more than a day old; the fourth is exactly a day old and stays.
      await alice.say("aging", "fresh");
      const reader = await user(server, "reader");
      const joined = await reader.join("aging");
      expect(joined).toMatchObject({ seq: 5, oldestSeq: 4, complete: true });
      expect(joined.messages.map((m: { text: string }) => m.text)).toEqual(["a day later", "fresh"]);
      alice.close();
      reader.close();
    });
  });
}

// On SQLite only: these are about its file, its store and its fsyncs.
test("HISTORY_MAX_AGE_DAYS: quiet rooms are trimmed at start, keep their seq, and stop counting toward MAX_ROOMS", async () => {
  using dir = tempDir();
  const databasePath = join(dir.path, "chat.sqlite");
  let t = 1_700_000_000_000;
  const options = { now: () => t, databasePath, historyMaxAgeDays: 1, maxRooms: 2 };
  let server = await startServer(options);
  try {
    let alice = await user(server, "alice", "a", "b", "c");
    await alice.say("a", "in a");
    await alice.say("b", "in b");
    alice.send({ type: "send", room: "c", id: "c1", text: "in c" });
    expect(await alice.next()).toMatchObject({ type: "error", code: "room_limit", ref: "c1" });
    alice.close();
    await server.stop();

    t += 2 * DAY_MS;
    server = await startServer(options);
    alice = await user(server, "alice");
    expect(await alice.join("a")).toMatchObject({ seq: 1, oldestSeq: 0, messages: [], complete: true });
    await alice.join("c");
    expect((await alice.say("c", "room for c now")).seq).toBe(1);
    // The emptied room's seq goes on where it was: a seq is never reused.
    expect((await alice.say("a", "back in a")).seq).toBe(2);
    alice.close();
  } finally {
    await server.stop();
  }
});

test("the engine keeps no room's seq in memory: each commit reads it, so a second writer on the file is never overwritten", async () => {
  using dir = tempDir();
  const path = join(dir.path, "chat.sqlite");
  const first = new SqliteStore(path, 1000);
  const second = new SqliteStore(path, 1000);
  const message = (id: string): NewMessage => ({ room: "shared", user: { id: "u1", name: "u" }, id, text: id, ts: 1 });
  // Rooms that are only read (joined, left) leave nothing behind in the engine either.
  for (let i = 0; i < 100; i++) await first.roomInfo(`visited-${i}`);
  const seqs = [];
  for (const [store, id] of [[first, "m1"], [second, "m2"], [first, "m3"], [second, "m4"]] as const) {
    const [result] = await store.append([message(id)]);
    seqs.push(result && "message" in result ? result.message.seq : result);
  }
  expect(seqs).toEqual([1, 2, 3, 4]);
  await first.close();
  await second.close();
});

test("roomPage, the join's one read, answers what roomInfo and page answer, newest and after, in a room with and without messages", async () => {
  using dir = tempDir();
  const store = new SqliteStore(join(dir.path, "chat.sqlite"), 4);
  try {
    const message = (id: string): NewMessage => ({ room: "r", user: { id: "u1", name: "u" }, id, text: id, ts: 1 });
    const queries = [{ limit: 2 }, { limit: 10 }, { before: 4, limit: 1 }, { after: 0, limit: 2 }, { after: 3, limit: 10 }, { after: 2, before: 6, limit: 1 }];
    const same = async (room: string) => {
      for (const query of queries) {
        expect(await store.roomPage(room, query)).toEqual({ info: await store.roomInfo(room), page: await store.page(room, query) });
      }
    };
    await same("r");
    // Six sent, four kept: the oldest retained is 3.
    for (let i = 1; i <= 6; i++) await store.append([message(`m${i}`)]);
    expect((await store.roomPage("r", { limit: 10 })).info).toMatchObject({ seq: 6, oldestSeq: 3 });
    expect((await store.roomPage("r", { limit: 2 })).page.messages.map((m) => m.seq)).toEqual([5, 6]);
    await same("r");
    await same("never");
  } finally {
    await store.close();
  }
});

test("a restart on the same database file loses nothing and reuses no seq", async () => {
  using dir = tempDir();
  const databasePath = join(dir.path, "chat.sqlite");
  let server = await startServer({ databasePath });
  try {
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
  } finally {
    await server.stop();
  }
});

/**
 * An fsync the test can hold: while `hold` is on, each call parks until released. `returned`
 * counts the calls that have come back from the real fsync.
 */
function heldSync() {
  const real = (fd: number) => new Promise<void>((resolve, reject) => fsync(fd, (e) => (e ? reject(e) : resolve())));
  const parked: (() => void)[] = [];
  const watchers: (() => void)[] = [];
  const changed = () => {
    for (const w of watchers.splice(0)) w();
  };
  /** Resolves once `ready()` holds. */
  const until = (ready: () => boolean) =>
    new Promise<void>((resolve) => {
      const check = () => (ready() ? resolve() : watchers.push(check));
      check();
    });
  const io = {
    hold: false,
    calls: 0,
    returned: 0,
    async sync(fd: number): Promise<void> {
      io.calls++;
      if (io.hold) {
        const released = new Promise<void>((resolve) => parked.push(resolve));
        changed();
        await released;
      }
      await real(fd);
      io.returned++;
      changed();
    },
    /** Resolves once `n` fsyncs are parked. */
    waiting: (n = 1) => until(() => parked.length >= n),
    /** Resolves once `n` fsyncs have returned. */
    synced: (n: number) => until(() => io.returned >= n),
    release(): void {
      io.hold = false;
      for (const resolve of parked.splice(0)) resolve();
    },
    /** Lets the most recently parked fsync go on; the others stay parked. */
    releaseNewest(): void {
      parked.pop()!();
    },
  };
  return io;
}

test("a file from before the outbox's message index: its queued events are indexed at open, and a deletion still blanks them", async () => {
  using dir = tempDir();
  const path = join(dir.path, "chat.sqlite");
  const types = { types: new Set(["message.created", "message.edited"] as const), maxPending: 100 };
  const ann = { id: "g_ann", name: "ann" };
  const before = new SqliteStore(path, 100);
  before.openOutbox(types);
  await before.append([{ room: "r", user: ann, id: "m", text: "REGRETTED", ts: 1 }]);
  await before.append([{ type: "edit", room: "r", user: ann, id: "e", ts: 2, target: 1, text: "REGRETTED-EDIT" }]);
  // As version 6 left it: no index, no column (nor the invites' index of version 8).
  const db = (before as unknown as { db: Database }).db;
  db.exec("DROP INDEX hooks_text_of; ALTER TABLE hooks DROP COLUMN text_of; DROP INDEX invites_room; PRAGMA user_version = 6;");
  await before.close();
  const after = new SqliteStore(path, 100);
  try {
    const outbox = after.openOutbox(types);
    await after.append([{ type: "delete", room: "r", user: ann, id: "d", ts: 3, target: 1 }]);
    const queued = await outbox.take(10, 3);
    expect(queued.map((h) => [h.type, (h.data as { text: string }).text])).toEqual([
      ["message.created", ""],
      ["message.edited", ""],
    ]);
  } finally {
    await after.close();
  }
});

test("a message is published only once the fsync of its commit has returned", async () => {
  using dir = tempDir();
  const io = heldSync();
  const store = new SqliteStore(join(dir.path, "chat.sqlite"), 1000, {}, io.sync);
  await using server = await startServer({ store });
  const alice = await user(server, "alice", "durable");
  const bob = await user(server, "bob", "durable");
  await alice.until((f) => f.type === "presence");
  io.hold = true;
  alice.send({ type: "send", room: "durable", id: "m1", text: "on disk first" });
  await io.waiting();
  // Committed, not yet synced: nobody hears of it, the sender included.
  expect(await alice.sync()).toEqual([]);
  expect(await bob.sync()).toEqual([]);
  io.release();
  expect((await alice.expect("message")).id).toBe("m1");
  expect((await bob.expect("message")).id).toBe("m1");
  alice.close();
  bob.close();
});

test("a read that sees a commit not yet on disk answers once it is: history tells of nothing a crash could take back", async () => {
  using dir = tempDir();
  const io = heldSync();
  const store = new SqliteStore(join(dir.path, "chat.sqlite"), 1000, {}, io.sync);
  io.hold = true;
  const message: NewMessage = { room: "r", user: { id: "u1", name: "one" }, id: "m1", text: "not yet on disk", ts: 1 };
  const appended = store.append([message]);
  await io.waiting();
  // Committed, not synced. A read that had answered would win the race against one settled after it.
  const WAITING = "waiting";
  const history = store.page("r", { limit: 50 });
  const info = store.roomInfo("r");
  const newest = store.roomPage("r", { limit: 50 });
  for (const read of [history, info, newest]) expect(await Promise.race([read, Promise.resolve(WAITING)])).toBe(WAITING);
  // A join's read below the seq delivered (here, before anything) does not wait.
  expect(await Promise.race([store.roomPage("r", { before: 1, limit: 50 }), Promise.resolve(WAITING)])).not.toBe(WAITING);
  io.release();
  await appended;
  expect((await history).messages.map((m) => m.seq)).toEqual([1]);
  expect((await info).seq).toBe(1);
  expect((await newest).page.messages.map((m) => m.seq)).toEqual([1]);
  await store.close();
});

/** A guest's session record, as the hub stores one. */
const guestSession = (userId: string, expiresAt: number): SessionRecord => ({ userId, expiresAt, kind: "guest", name: userId, keys: [userId], admin: false, rooms: [] });

test("writes that come while every fsync slot is busy commit together and share the next one", async () => {
  using dir = tempDir();
  const io = heldSync();
  const store = new SqliteStore(join(dir.path, "chat.sqlite"), 1000, {}, io.sync);
  io.hold = true;
  // A commit that lands while an fsync runs starts its own at once: two in flight.
  const first = [store.saveSession("h0", guestSession("u0", Date.now() + 60_000)), store.saveSession("h1", guestSession("u1", Date.now() + 60_000))];
  await io.waiting(2);
  const message: NewMessage = { room: "r", user: { id: "u1", name: "one" }, id: "m1", text: "hi", ts: 1 };
  const rest = [...[2, 3, 4, 5, 6].map((i) => store.saveSession(`h${i}`, guestSession(`u${i}`, Date.now() + 60_000))), store.append([message])];
  expect(io.calls).toBe(2);
  io.release();
  await Promise.all(first);
  const [, , , , , appended] = await Promise.all(rest);
  // Five sessions and a message: one transaction, one more fsync.
  expect(io.calls).toBe(3);
  expect(appended).toEqual([{ message: { type: "message", seq: 1, ...message }, duplicate: false }]);
  expect(await store.findSession("h6", Date.now())).toMatchObject({ userId: "u6" });
  await store.close();
});

test("a commit whose fsync returns first still waits for the fsync of the commit before it", async () => {
  using dir = tempDir();
  const io = heldSync();
  const store = new SqliteStore(join(dir.path, "chat.sqlite"), 1000, {}, io.sync);
  const message = (id: string): NewMessage => ({ room: "r", user: { id: "u1", name: "one" }, id, text: id, ts: 1 });
  const stored: string[] = [];
  io.hold = true;
  const first = store.append([message("m1")]).then(([r]) => stored.push(`${"message" in r! && r.message.seq}`));
  await io.waiting(1);
  const second = store.append([message("m2")]).then(([r]) => stored.push(`${"message" in r! && r.message.seq}`));
  await io.waiting(2);
  io.releaseNewest();
  await io.synced(1);
  // A loop turn for the store to act on that fsync: seq 2 must not be told before seq 1.
  await new Promise((resolve) => setImmediate(resolve));
  expect(stored).toEqual([]);
  io.release();
  await Promise.all([first, second]);
  expect(stored).toEqual(["1", "2"]);
  await store.close();
});

test("an fsync that fails stops the engine: nothing more is taken or published, /healthz says so; a restart reads back the disk", async () => {
  using dir = tempDir();
  const path = join(dir.path, "chat.sqlite");
  const io = heldSync();
  let failing = false;
  const store = new SqliteStore(path, 1000, {}, (fd) => (failing ? Promise.reject(new Error("EIO")) : io.sync(fd)));
  await using server = await startServer({ store });
  const alice = await user(server, "alice", "r");
  const bob = await user(server, "bob", "r");
  await alice.until((f) => f.type === "presence");
  const synced = await alice.say("r", "synced");
  expect(await bob.next()).toEqual(synced);
  failing = true;
  alice.send({ type: "send", room: "r", id: "unsynced", text: "committed, never synced" });
  expect(await alice.next()).toMatchObject({ type: "error", code: "internal", ref: "unsynced" });
  // The disk answers again: the engine must not trust it, or "after" would be published past a
  // seq nobody ever saw.
  failing = false;
  alice.send({ type: "send", room: "r", id: "after", text: "after the failure" });
  expect(await alice.next()).toMatchObject({ type: "error", code: "internal", ref: "after" });
  expect(await bob.sync()).toEqual([]);
  const health = await server.http("/healthz");
  expect([health.status, await health.json()]).toEqual([503, { status: "unavailable", storage: "failed" }]);
  alice.close();
  bob.close();
  await server.stop();
  // After a restart, a client resuming with since gets what the disk holds; the retry is deduped.
  await using again = await startServer({ databasePath: path });
  const back = await Client.connect(again.wsUrl);
  await back.hello("alice", alice.frames[0]!.session);
  const joined = await back.join("r", synced.seq);
  expect(joined.messages.map((m: { id: string }) => m.id)).toEqual(["unsynced"]);
  back.send({ type: "send", room: "r", id: "unsynced", text: "retry" });
  expect(await back.next()).toEqual(joined.messages[0]);
  back.close();
});

test("a full disk: sends answer internal and /healthz says storage full until a write succeeds again; nothing acknowledged is lost", async () => {
  using dir = tempDir();
  const path = join(dir.path, "chat.sqlite");
  const store = new SqliteStore(path, 1000);
  // SQLite's cap on the file's pages fails a write with SQLITE_FULL, "database or disk is full",
  // exactly as a full disk does, and can be lifted again: the store's own connection sets it.
  const db = (store as unknown as { db: Database }).db;
  await using server = await startServer({ store });
  const alice = await user(server, "alice", "disk");
  const acknowledged = [await alice.say("disk", "before the disk filled up")];
  const pages = db.query<{ page_count: number }, []>("PRAGMA page_count").get()!.page_count;
  db.exec(`PRAGMA max_page_count = ${pages}`);
  // Big messages until one needs a page the file may not have.
  let refused: string | null = null;
  for (let i = 0; i < 20 && refused === null; i++) {
    alice.send({ type: "send", room: "disk", id: `big-${i}`, text: `${i} ${"x".repeat(1900)}` });
    const answer = await alice.next();
    if (answer.type === "message") acknowledged.push(answer);
    else {
      expect(answer).toMatchObject({ type: "error", code: "internal", ref: `big-${i}` });
      refused = answer.ref;
    }
  }
  expect(refused).not.toBeNull();
  const full = await server.http("/healthz");
  expect([full.status, await full.json()]).toEqual([503, { status: "unavailable", storage: "full" }]);
  // Space again: the refused send, sent again, is stored, and health is back with the write.
  db.exec("PRAGMA max_page_count = 1073741823");
  const retried = await alice.say("disk", "sent again", refused!);
  expect(retried.seq).toBe(acknowledged.length + 1);
  expect((await server.http("/healthz")).status).toBe(200);
  alice.close();
  await server.stop();
  await using again = await startServer({ databasePath: path });
  const page = (await (await again.http("/api/rooms/disk/messages?limit=200")).json()) as { messages: Frame[] };
  expect(page.messages).toEqual([...acknowledged, retried]);
});

describe("storage bounds across instances (redis)", () => {
  const redis = redisForSuite();

  test("a trimmed event's dedup key goes with it, as a message's does: the room's dedup hash holds only what it keeps", async () => {
    const db = redis.freshDb();
    await using server = await startServer({ redisUrl: redis.url(db), historyRetain: 3 });
    const olga = await user(server, "olga", "r");
    olga.send({ type: "room_settings", room: "r", topic: "soon trimmed", ref: "t" });
    const live = (await olga.until((f) => f.type === "ok" && f.ref === "t")).find((f) => f.type === "settings")!;
    // An event's stored id is not part of its frame, live or read back.
    expect(live).not.toHaveProperty("id");
    olga.send({ type: "history", room: "r", limit: 10 });
    expect((await olga.expect("history")).messages).toEqual([live]);
    // Seq 1 is the settings event; three messages push it out.
    for (const text of ["one", "two", "three"]) await olga.say("r", text, text);
    expect(await redis.commandIn(db, "HKEYS", "chat:room:r:ids")).toEqual(expect.arrayContaining(["one", "two", "three"].map((id) => expect.stringContaining(`\n${id}`))));
    expect(await redis.commandIn(db, "HLEN", "chat:room:r:ids")).toBe(3);
    olga.close();
  });

  test("MAX_ROOMS counts every instance's rooms: a room started on A counts on B, and one too many is refused on both", async () => {
    const db = redis.freshDb();
    const instance = () => startServer({ redisUrl: redis.url(db), maxRooms: 2 });
    await using a = await instance();
    await using b = await instance();
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
    expect(await redis.commandIn(db, "GET", "chat:room:three:seq")).toBeNull();
    expect(await redis.commandIn(db, "EXISTS", "chat:room:three:log")).toBe(0);
    expect((await alice.say("one", "still fine")).seq).toBe(2);
    expect(await bob.sync()).toEqual([]);
    expect(await alice.sync()).toEqual([]);
    alice.close();
    bob.close();
  });

  test("HISTORY_MAX_AGE_DAYS: an instance's sweep trims quiet rooms and their dedup keys; they keep their seq and stop counting toward MAX_ROOMS", async () => {
    const db = redis.freshDb();
    let t = 1_700_000_000_000;
    const options = { redisUrl: redis.url(db), now: () => t, historyMaxAgeDays: 1, maxRooms: 2 };
    await using a = await startServer(options);
    const alice = await user(a, "alice", "a", "b", "c");
    await alice.say("a", "in a", "a1");
    await alice.say("b", "in b");
    alice.send({ type: "send", room: "c", id: "c1", text: "in c" });
    expect(await alice.next()).toMatchObject({ type: "error", code: "room_limit", ref: "c1" });
    expect(await redis.commandIn(db, "EXISTS", "chat:room:a:ids")).toBe(1);
    alice.close();

    // Two days on, B starts and sweeps: every room is quiet and too old.
    t += 2 * DAY_MS;
    await using b = await startServer(options);
    expect(await redis.commandIn(db, "EXISTS", "chat:room:a:ids", "chat:room:b:ids")).toBe(0);
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
  });
});
