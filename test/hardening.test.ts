/**
 * Abuse hardening and the v1.1 rules of the hub (protocol §10), each against a real server with
 * real clients. Time-dependent limits run on a stopped clock, so counts are exact; absence is
 * proven by a marker that must come after anything that could have arrived.
 */
import { Database } from "bun:sqlite";
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { Client, LineClient, type Frame, rawWebSocket, sqliteWith, startServer, tempDir, user } from "./helpers.ts";

const frozen = () => {
  const t = Date.now();
  return () => t;
};
const messagesIn = (frames: Frame[]) => frames.filter((f) => f.type === "message");

describe("rate limits belong to users and addresses (§10)", () => {
  test("reconnecting refills nothing: a hello-join-send loop is held to the user's bucket", async () => {
    const server = await startServer({ now: frozen(), rateLimitBurst: 10, presenceGraceMs: 0 });
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
    expect(messagesIn(watcher.frames).map((m) => m.id)).toEqual([...Array.from({ length: 9 }, (_, i) => `0-${i}`), expect.any(String)]);
    watcher.close();
    await server.stop();
  });

  test("a user's connections share one bucket; pings and frames before hello spend the connection's own", async () => {
    const server = await startServer({ now: frozen(), rateLimitBurst: 4, rateLimitAbuseErrors: 100 });
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
    await server.stop();
  });

  test("a flood before hello is limited and closed; so is a ping flood", async () => {
    const server = await startServer({ now: frozen(), rateLimitBurst: 3, rateLimitAbuseErrors: 2 });
    const early = await Client.connect(server.wsUrl);
    for (let i = 0; i < 6; i++) early.send({ type: "join", room: "r", ref: `j${i}`, pad: "x".repeat(8000) });
    const closed = await early.closed;
    expect(early.frames.map((f) => f.code)).toEqual(["not_ready", "not_ready", "not_ready", "rate_limited", "rate_limited"]);
    expect(closed).toEqual({ code: 1008, reason: "rate limit exceeded" });

    const pinger = await user(server, "pinger");
    for (let i = 0; i < 6; i++) pinger.send({ type: "ping" });
    expect(await pinger.closed).toEqual({ code: 1008, reason: "rate limit exceeded" });
    expect(pinger.frames.map((f) => f.code ?? f.type)).toEqual(["welcome", "pong", "pong", "rate_limited", "rate_limited"]);
    await server.stop();
  });

  test("hellos from one address are limited per minute, then 1008; TCP counts too; the sessions table stops growing", async () => {
    const dir = tempDir();
    const path = join(dir.path, "chat.sqlite");
    const server = await startServer({ now: frozen(), databasePath: path, helloRatePerMinute: 4, tcpPort: 0 });
    for (let i = 0; i < 4; i++) {
      const c = await Client.connect(server.wsUrl);
      await c.hello(`churn ${i}`);
      c.close();
      await c.closed;
    }
    const fifth = await Client.connect(server.wsUrl);
    fifth.send({ type: "hello", name: "churn 4", ref: "h" });
    expect(await fifth.next()).toEqual({ type: "error", code: "rate_limited", message: expect.any(String), ref: "h" });
    expect(await fifth.closed).toEqual({ code: 1008, reason: "rate limit exceeded" });
    const tcp = await LineClient.connect(server.chat.tcpPort!);
    await tcp.readUntil("name: ");
    tcp.write("nc user\n");
    expect(await tcp.untilClosed()).toStartWith("! rate_limited: ");
    const db = new Database(path, { readonly: true });
    expect(db.query<{ n: number }, []>("SELECT count(*) AS n FROM sessions").get()!.n).toBe(4);
    db.close();
    await server.stop();
    dir.cleanup();
  });
});

describe("memory and storage reads stay bounded", () => {
  test("/api/rooms answers from memory: no storage read, however many rooms are active", async () => {
    let reads = 0;
    const store = sqliteWith((real) => ({
      roomInfo: (room) => (reads++, real.roomInfo(room)),
      page: (room, query) => (reads++, real.page(room, query)),
    }));
    const server = await startServer({ store, maxRoomsPerConnection: 750, rateLimitBurst: 10_000 });
    const busy = await user(server, "busy");
    const busier = await user(server, "busier");
    for (let i = 0; i < 750; i++) busy.send({ type: "join", room: `room-${i}` });
    for (let i = 750; i < 1500; i++) busier.send({ type: "join", room: `room-${i}` });
    await busy.until((f) => f.type === "joined" && f.room === "room-749");
    await busier.until((f) => f.type === "joined" && f.room === "room-1499");
    await busy.say("room-7", "hello");
    reads = 0;
    for (let i = 0; i < 5; i++) {
      const body = (await (await server.http("/api/rooms")).json()) as { rooms: { room: string; members: number; seq: number }[] };
      expect(body.rooms).toHaveLength(1500);
      expect(body.rooms.find((r) => r.room === "room-7")).toEqual({ room: "room-7", members: 1, seq: 1 });
    }
    expect(reads).toBe(0);
    busy.close();
    busier.close();
    await server.stop();
  });

  test("rooms joined and left without a message are not remembered", async () => {
    const server = await startServer({ rateLimitBurst: 10_000 });
    const c = await user(server, "wanderer");
    const before = server.chat.inspect().roomStates;
    for (let i = 0; i < 300; i++) {
      c.send({ type: "join", room: `w-${i}` });
      c.send({ type: "leave", room: `w-${i}` });
    }
    await c.until((f) => f.type === "left" && f.room === "w-299");
    expect(server.chat.inspect().roomStates).toBe(before);
    c.close();
    await server.stop();
  });

  test("the room directory lists rooms with messages and nobody online, newest first", async () => {
    let t = 1_000_000;
    const dir = tempDir();
    const path = join(dir.path, "chat.sqlite");
    const server = await startServer({ now: () => t, presenceGraceMs: 0, databasePath: path });
    const c = await user(server, "poster", "older", "newer", "quiet");
    await c.say("older", "one");
    t += 1000;
    await c.say("newer", "two");
    c.close();
    await server.logLine((l) => l.event === "close");
    const empty = await (await server.http("/api/rooms")).json();
    expect(empty).toEqual({ rooms: [] });
    const recent = await (await server.http("/api/rooms?recent=1")).json();
    expect(recent).toEqual({
      rooms: [
        { room: "newer", members: 0, seq: 1, ts: 1_001_000 },
        { room: "older", members: 0, seq: 1, ts: 1_000_000 },
      ],
    });
    await server.stop();
    // A restart on the same file starts the directory from storage.
    const again = await startServer({ databasePath: path });
    expect(await (await again.http("/api/rooms?recent=1")).json()).toEqual(recent);
    await again.stop();
    dir.cleanup();
  });
});

describe("frames that were mishandled", () => {
  test("lone surrogates: text_invalid in text, bad_request in id and ref; ids no longer collide", async () => {
    const server = await startServer();
    const a = await user(server, "a", "r");
    const b = await user(server, "b", "r");
    await a.expect("presence");
    a.sendRaw('{"type":"send","room":"r","id":"ok-1","text":"x\\ud800y"}');
    expect(await a.next()).toMatchObject({ type: "error", code: "text_invalid", ref: "ok-1" });
    a.sendRaw('{"type":"send","room":"r","id":"id\\ud800","text":"first"}');
    a.sendRaw('{"type":"send","room":"r","id":"id\\ud801","text":"second"}');
    expect((await a.next()).code).toBe("bad_request");
    expect((await a.next()).code).toBe("bad_request");
    a.sendRaw('{"type":"ping","ref":"r\\udc00"}');
    expect((await a.next()).code).toBe("bad_request");
    // A well-formed astral character is fine, live and in history alike.
    const m = await a.say("r", "ok 😀");
    expect(await b.next()).toEqual(m);
    const page = await (await server.http("/api/rooms/r/messages")).json();
    expect(page.messages).toEqual([m]);
    a.close();
    b.close();
    await server.stop();
  });

  test("a maximal message with every astral character escaped as a surrogate pair is accepted (24 KB frame)", async () => {
    const server = await startServer();
    const c = await user(server, "python", "r");
    const escaped = "\\ud83d\\ude00".repeat(2000);
    const frame = `{"type": "send", "room": "r", "id": "json.dumps", "text": "${escaped}"}`;
    expect(frame.length).toBeGreaterThan(24_000);
    c.sendRaw(frame);
    const m = await c.expect("message");
    expect(m.text).toBe("😀".repeat(2000));
    c.close();
    await server.stop();
  });
});

describe("several connections per session, rename (§10)", () => {
  test("two tabs of one session are one member; leaving one tab leaves nobody; the last one leaves", async () => {
    const server = await startServer({ presenceGraceMs: 0 });
    const other = await user(server, "other", "g");
    const tab1 = await Client.connect(server.wsUrl);
    const w = await tab1.hello("dana");
    const tab2 = await Client.connect(server.wsUrl);
    expect((await tab2.hello("dana", w.session)).user).toEqual(w.user);
    await tab1.join("g");
    const joined = await tab2.join("g");
    expect(joined.members).toEqual([expect.objectContaining({ name: "other" }), w.user]);
    const m = await tab1.say("g", "from tab 1");
    expect(await tab2.next()).toEqual(m);
    tab1.send({ type: "leave", room: "g" });
    await tab1.expect("left");
    const fromTab2 = await tab2.say("g", "still here");
    expect(await other.until((f) => f.id === fromTab2.id)).toEqual([
      { type: "presence", room: "g", event: "join", user: w.user },
      m,
      fromTab2,
    ]);
    tab2.close();
    expect(await other.next()).toEqual({ type: "presence", room: "g", event: "leave", user: w.user });
    expect((await (await server.http("/api/rooms")).json()).rooms).toEqual([{ room: "g", members: 1, seq: 2 }]);
    tab1.close();
    other.close();
    await server.stop();
  });

  test("one connection past MAX_CONNECTIONS_PER_SESSION closes the oldest with 4001", async () => {
    const server = await startServer({ maxConnectionsPerSession: 3 });
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
    await server.stop();
  });

  test("a hello with a live session and a new name renames the user in every room, TCP included", async () => {
    const server = await startServer({ tcpPort: 0 });
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
    await server.stop();
  });
});

describe("ordering (§10)", () => {
  test("joined comes before any live event of its room, and every message once, under concurrent TCP and WebSocket traffic", async () => {
    const server = await startServer({ tcpPort: 0, rateLimitBurst: 10_000, rateLimitPerSecond: 10_000, historyOnJoin: 5 });
    const ws = await user(server, "ws talker", "busy");
    const tcp = await LineClient.connect(server.chat.tcpPort!);
    await tcp.readUntil("name: ");
    tcp.write("tcp talker\n/join busy\n");
    await tcp.readUntil("* now in busy");
    const hopper = await user(server, "hopper");
    const CYCLES = 150;
    let talking = true;
    const talk = async () => {
      for (let i = 0; talking && i < 5000; i++) {
        tcp.write(`line ${i}\n`);
        ws.send({ type: "send", room: "busy", id: `ws-${i}`, text: `ws ${i}` });
        await ws.until((f) => f.id === `ws-${i}`);
      }
    };
    const talkers = talk();
    for (let i = 0; i < CYCLES; i++) {
      hopper.send({ type: "join", room: "busy" });
      hopper.send({ type: "leave", room: "busy" });
    }
    await hopper.until((f) => f.type === "left" && hopper.frames.filter((x) => x.type === "left").length === CYCLES);
    talking = false;
    await talkers;

    let inRoom = false;
    let expected = 0;
    let live = 0;
    for (const f of hopper.frames.slice(1)) {
      if (f.type === "joined") {
        inRoom = true;
        expect(f.messages.at(-1)?.seq ?? 0).toBe(f.seq); // history reaches the latest seq…
        expected = f.seq + 1; // …and live delivery goes on from there, no gap, no repeat
      } else if (f.type === "left") {
        inRoom = false;
      } else {
        expect(inRoom).toBe(true);
        if (f.type === "message") {
          expect(f.seq).toBe(expected++);
          live++;
        }
      }
    }
    expect(live).toBeGreaterThan(0);
    for (const c of [ws, hopper]) c.close();
    tcp.end();
    await server.stop();
  });

  test("a message published while a join reads history is in joined or live after it, exactly once", async () => {
    // One gate holds both the joiner's history read and the commit of a message sent just
    // before: when it opens, the commit's publish lands in the middle of the join.
    let open!: () => void;
    const gate = new Promise<void>((resolve) => (open = resolve));
    let held = 0;
    let bothHeld!: () => void;
    const ready = new Promise<void>((resolve) => (bothHeld = resolve));
    const hold = async () => {
      if (++held === 2) bothHeld();
      await gate;
    };
    let gated = false;
    const store = sqliteWith((real) => ({
      append: async (batch) => (gated && (await hold()), real.append(batch)),
      page: async (room, query) => (gated && (await hold()), real.page(room, query)),
    }));
    const server = await startServer({ store });
    const talker = await user(server, "talker", "r");
    await talker.say("r", "before");
    const joiner = await user(server, "joiner");
    gated = true;
    talker.send({ type: "send", room: "r", id: "during", text: "during the join" });
    joiner.send({ type: "join", room: "r" });
    await ready;
    gated = false;
    open();
    talker.send({ type: "send", room: "r", id: "after", text: "after" });
    const marker = (await talker.until((f) => f.id === "after")).at(-1)!;
    const seen = await joiner.until((f) => f.id === marker.id);
    const joined = seen[0]!;
    expect(joined.type).toBe("joined");
    const ids = [...joined.messages, ...seen.slice(1)].map((m: Frame) => m.id);
    expect(ids.filter((id) => id === "during")).toHaveLength(1);
    expect(ids.at(-1)).toBe(marker.id);
    talker.close();
    joiner.close();
    await server.stop();
  });

  test("a connection closed for abuse first receives its own accepted messages", async () => {
    let open!: () => void;
    const gate = new Promise<void>((resolve) => (open = resolve));
    const store = sqliteWith((real) => ({ append: async (batch) => (await gate, real.append(batch)) }));
    const server = await startServer({ store, now: frozen(), rateLimitBurst: 4, rateLimitAbuseErrors: 2 });
    const other = await user(server, "other", "r");
    const abuser = await user(server, "abuser", "r"); // join: one token
    await other.expect("presence");
    for (let i = 0; i < 5; i++) abuser.send({ type: "send", room: "r", id: `m${i}`, text: `word ${i}` });
    await abuser.until((f) => f.code === "rate_limited" && f.ref === "m4");
    open(); // the three accepted messages commit only now, after the abuse verdict
    await abuser.closed;
    expect(abuser.frames.slice(2).map((f) => f.id ?? f.ref)).toEqual(["m3", "m4", "m0", "m1", "m2"]);
    expect(abuser.closeEvent).toEqual({ code: 1008, reason: "rate limit exceeded" });
    other.close();
    await server.stop();
  });
});

describe("slow consumers", () => {
  test("publishing to nobody is not a drop: a lone joiner and a lone typist count none", async () => {
    const server = await startServer();
    const solo = await user(server, "solo", "empty-room");
    solo.send({ type: "typing", room: "empty-room" });
    expect(await solo.sync()).toEqual([]);
    expect(await (await server.http("/metrics")).text()).toContain("chat_publish_drops_total 0\n");
    solo.close();
    await server.stop();
  });

  test("a slow reader in a busy room is counted and logged as a backpressure close", async () => {
    const server = await startServer({
      backpressureLimitBytes: 64 * 1024,
      rateLimitBurst: 10_000,
      rateLimitPerSecond: 10_000,
      presenceGraceMs: 0,
    });
    const writers = [await user(server, "w1", "busy"), await user(server, "w2", "busy"), await user(server, "w3", "busy")];
    const slow = await rawWebSocket(Number(server.chat.url.port));
    slow.send({ type: "hello", name: "slow" });
    slow.send({ type: "join", room: "busy" });
    slow.pause();
    for (const w of writers) await w.until((f) => f.type === "presence" && f.user.name === "slow");
    // Small frames from several senders: Bun closes the slow reader on a later turn, after
    // publishes that said -1 (others took them), not 0, with its buffer already freed at close.
    const text = "y".repeat(100);
    const closed = server.logLine((l) => l.event === "close");
    let done = false;
    void closed.then(() => (done = true), () => {});
    for (let burst = 0; !done && burst < 60; burst++) {
      for (const [n, w] of writers.entries()) {
        for (let i = 0; i < 150; i++) w.send({ type: "send", room: "busy", id: `${n}-${burst}-${i}`, text });
      }
      await Promise.all(writers.map((w, n) => w.until((f) => f.id === `${n}-${burst}-149`)));
    }
    expect(await closed).toMatchObject({ transport: "ws", code: 1006, reason: "backpressure" });
    expect(await (await server.http("/metrics")).text()).toContain("chat_backpressure_closes_total 1\n");
    for (const w of writers) w.close();
    await server.stop();
  });
});
