/**
 * Rooms: join, re-join and leave, the cap on rooms per connection, the room list (/api/rooms) and
 * directory, and a room's history: on join, on resume with `since`, paged with `history` and over
 * HTTP, and only HISTORY_RETAIN of it kept. Rooms and history run on both engines; what the room
 * list reads and remembers, on SQLite.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { pageQuery } from "../src/http.ts";
import { Client, ENGINES, engineServers, heldOnce, range, sqliteWith, startServer, tempDir, user, type TestServer } from "./helpers.ts";

for (const engine of ENGINES) {
  describe(engine, () => {
    const { startServer } = engineServers(engine);

    describe("chat in rooms", () => {
      let server: TestServer;
      beforeAll(async () => {
        server = await startServer({ presenceGraceMs: 60_000, rateLimitBurst: 100 });
      });
      afterAll(() => server.stop());

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

      test("stored events (settings, an edit, a deletion) count toward HISTORY_RETAIN and leave with the oldest; sends go on", async () => {
        const c = await user(server, "eve", "evkeep");
        c.send({ type: "room_settings", room: "evkeep", topic: "first topic", ref: "t" });
        await c.until((f) => f.type === "ok" && f.ref === "t");
        const m = await c.say("evkeep", "to be edited");
        c.send({ type: "edit", room: "evkeep", seq: m.seq, text: "edited", ref: "e" });
        await c.until((f) => f.type === "ok" && f.ref === "e");
        c.send({ type: "delete", room: "evkeep", seq: m.seq, ref: "d" });
        await c.until((f) => f.type === "ok" && f.ref === "d");
        // Seqs 1-4 are those; eight more push all four out, each send stored and echoed.
        for (let i = 1; i <= 8; i++) expect(await c.say("evkeep", `after ${i}`)).toMatchObject({ type: "message", seq: 4 + i });
        c.send({ type: "history", room: "evkeep", limit: 200 });
        expect((await c.expect("history")).messages.map((f: { seq: number }) => f.seq)).toEqual(range(5, 12));
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
          expect(Object.keys((await r.json()) as object)).toEqual(["error", "message"]);
        }
      });
    });
  });
}

describe("history over HTTP", () => {
  test("history query parameters", () => {
    const q = (s: string) => pageQuery(new URLSearchParams(s));
    expect(q("")).toEqual({ after: undefined, before: undefined, limit: 50 });
    expect(q("after=3&before=9&limit=200")).toEqual({ after: 3, before: 9, limit: 200 });
    for (const bad of ["limit=0", "limit=201", "after=-1", "after=1.5", "before=x", "after=", "limit=1e2"]) expect(q(bad)).toBeNull();
  });
});

/** For tests that start hundreds of rooms from one address in a moment. */
const MANY_ROOM_STARTS = { roomStartsPerHour: 10_000, roomStartsPerHourPerIp: 10_000 };

// On SQLite, the default engine, only: two of these bring a store or file of their own.
describe("messages that arrive while a join reads the room (SQLite)", () => {
  test("joined.oldestSeq is the room's oldest retained seq, whatever `since` leaves out (§3)", async () => {
    const held = heldOnce();
    // The empty room is read, then its answer waits while three messages come.
    const store = sqliteWith((real) => ({ roomPage: async (room, query) => real.roomPage(room, query).then(async (page) => (await held.pass(), page)) }));
    await using server = await startServer({ store });
    const xavier = await user(server, "xavier", "r");
    const jane = await Client.connect(server.wsUrl);
    await jane.hello("jane");
    held.arm();
    jane.send({ type: "join", room: "r", since: 2 });
    await held.waiting;
    for (const text of ["one", "two", "three"]) await xavier.say("r", text);
    held.release();
    const joined = await jane.expect("joined");
    expect({ seq: joined.seq, oldestSeq: joined.oldestSeq, messages: joined.messages.map((m: { seq: number }) => m.seq) }).toEqual({ seq: 3, oldestSeq: 1, messages: [3] });
    for (const c of [xavier, jane]) c.close();
  });
});

describe("memory and storage reads stay bounded", () => {
  test("/api/rooms answers from memory: no storage read, however many rooms are active", async () => {
    let reads = 0;
    const store = sqliteWith((real) => ({
      roomInfo: (room) => (reads++, real.roomInfo(room)),
      page: (room, query) => (reads++, real.page(room, query)),
    }));
    await using server = await startServer({ store, maxRoomsPerConnection: 750, rateLimitBurst: 10_000, ...MANY_ROOM_STARTS });
    const busy = await user(server, "busy");
    const busier = await user(server, "busier");
    for (let i = 0; i < 750; i++) busy.send({ type: "join", room: `room-${i}` });
    for (let i = 750; i < 1500; i++) busier.send({ type: "join", room: `room-${i}` });
    await busy.until((f) => f.type === "joined" && f.room === "room-749");
    await busier.until((f) => f.type === "joined" && f.room === "room-1499");
    await busy.say("room-7", "hello");
    reads = 0;
    for (let i = 0; i < 5; i++) {
      const rooms: { room: string; members: number; seq: number }[] = [];
      let cursor: string | null = null;
      do {
        const body = (await (await server.http(`/api/rooms?limit=1000${cursor ? `&cursor=${cursor}` : ""}`)).json()) as { rooms: typeof rooms; next: string | null };
        rooms.push(...body.rooms);
        cursor = body.next;
      } while (cursor);
      expect(rooms).toHaveLength(1500);
      expect(rooms.find((r) => r.room === "room-7")).toEqual({ room: "room-7", members: 1, seq: 1 });
    }
    expect(reads).toBe(0);
    busy.close();
    busier.close();
  });

  test("/api/rooms comes in pages (limit, cursor), busiest first, each room once; the sorted list is counted at most once a second", async () => {
    let t = 1_000_000;
    await using server = await startServer({ now: () => t, maxRoomsPerConnection: 300, rateLimitBurst: 10_000, ...MANY_ROOM_STARTS });
    const all = await user(server, "everywhere");
    const some = await user(server, "somewhere");
    const name = (i: number) => `r${String(i).padStart(3, "0")}`;
    for (let i = 0; i < 250; i++) all.send({ type: "join", room: name(i) });
    for (let i = 200; i < 250; i++) some.send({ type: "join", room: name(i) });
    await all.until((f) => f.type === "joined" && f.room === name(249));
    await some.until((f) => f.type === "joined" && f.room === name(249));
    type Body = { rooms: { room: string; members: number; seq: number }[]; next: string | null };
    const get = async (query: string) => (await (await server.http(`/api/rooms${query}`)).json()) as Body;
    // Two members in r200–r249, one in the rest: the busiest first, then by name.
    const expected = [...Array.from({ length: 50 }, (_, i) => ({ room: name(200 + i), members: 2, seq: 0 })), ...Array.from({ length: 200 }, (_, i) => ({ room: name(i), members: 1, seq: 0 }))];
    // Without a limit: the first 100, the shape it always had, and where the next page starts.
    const first = await get("");
    expect(first.rooms).toEqual(expected.slice(0, 100));
    expect(first.next).toBe("1.r049");
    const paged: Body["rooms"] = [];
    let cursor: string | null = null;
    do {
      const body = await get(`?limit=70${cursor ? `&cursor=${cursor}` : ""}`);
      expect(body.rooms.length).toBeLessThanOrEqual(70);
      paged.push(...body.rooms);
      cursor = body.next;
    } while (cursor);
    expect(paged).toEqual(expected);
    for (const bad of ["?limit=0", "?limit=1001", "?limit=x", "?cursor=nope", "?cursor=1.Bad"]) {
      const res = await server.http(`/api/rooms${bad}`);
      expect([bad, res.status, await res.json()]).toEqual([bad, 400, { error: "bad_request", message: expect.any(String) }]);
    }
    // The list is kept for a second of the server's clock: a room that fills now shows after it.
    const late = await user(server, "late", "zz-late");
    expect((await get("?limit=1000")).rooms.map((r) => r.room)).not.toContain("zz-late");
    t += 1000;
    expect((await get("?limit=1000")).rooms.at(-1)).toEqual({ room: "zz-late", members: 1, seq: 0 });
    for (const c of [all, some, late]) c.close();
  });

  test("rooms joined and left without a message are not remembered", async () => {
    await using server = await startServer({ rateLimitBurst: 10_000, ...MANY_ROOM_STARTS });
    const c = await user(server, "wanderer");
    const before = server.chat.inspect().roomStates;
    for (let i = 0; i < 300; i++) {
      c.send({ type: "join", room: `w-${i}` });
      c.send({ type: "leave", room: `w-${i}` });
    }
    await c.until((f) => f.type === "left" && f.room === "w-299");
    expect(server.chat.inspect().roomStates).toBe(before);
    c.close();
  });

  test("the room directory lists rooms with messages and nobody online, newest first", async () => {
    let t = 1_000_000;
    using dir = tempDir();
    const path = join(dir.path, "chat.sqlite");
    await using server = await startServer({ now: () => t, presenceGraceMs: 0, databasePath: path });
    const c = await user(server, "poster", "older", "newer", "quiet");
    await c.say("older", "one");
    t += 1000;
    await c.say("newer", "two");
    c.close();
    await server.logLine((l) => l.event === "close");
    const empty = await (await server.http("/api/rooms")).json();
    expect(empty).toEqual({ rooms: [], next: null });
    const recent = await (await server.http("/api/rooms?recent=1")).json();
    expect(recent).toEqual({
      rooms: [
        { room: "newer", members: 0, seq: 1, ts: 1_001_000 },
        { room: "older", members: 0, seq: 1, ts: 1_000_000 },
      ],
    });
    await server.stop();
    // A restart on the same file starts the directory from storage.
    await using again = await startServer({ databasePath: path });
    expect(await (await again.http("/api/rooms?recent=1")).json()).toEqual(recent);
  });
});
