/**
 * Messages: a send's echo and fan-out to the room, typing, a retried send stored once (dedup by
 * id), the order of joined and live messages under concurrent traffic, and slow consumers: a
 * client that does not read is closed at its limit and nobody waits for it. The live suites run
 * on both engines; the ones that hold or fail the store's commits, on SQLite.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Client, ENGINES, LineClient, engineServers, frozenClock, rawWebSocket, sqliteWith, startServer, user, type Frame, type TestServer } from "./helpers.ts";

for (const engine of ENGINES) {
  describe(engine, () => {
    const { startServer } = engineServers(engine);

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
          members: [{ id: expect.any(String), name: "alice", role: "owner" }],
          messages: [],
          complete: true,
          // §11.2: the first joiner of a new room owns it.
          role: "owner",
          settings: { topic: "", private: false, readOnly: false, slowModeSeconds: 0 },
          // The room's epoch (issue 21: 1): SQLite's is its file's; Redis makes one with a room's first message.
          ...(engine === "sqlite" ? { epoch: expect.any(String) } : {}),
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
          user: { id: aliceJoined.members[0]!.id, name: "alice" },
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

      test("typing reaches the others only, once per throttle window: not the typist's own other tab", async () => {
        const dana = await user(server, "dana", "typing");
        const eve = await user(server, "eve", "typing");
        await dana.expect("presence");
        const danaTab = await Client.connect(server.wsUrl);
        await danaTab.hello("dana", dana.frames[0]!.session);
        await danaTab.join("typing");
        dana.send({ type: "typing", room: "typing" });
        dana.send({ type: "typing", room: "typing" }); // within TYPING_THROTTLE_MS: dropped
        await dana.say("typing", "marker");
        expect(await eve.until((f) => f.type === "message")).toEqual([
          { type: "typing", room: "typing", user: { id: expect.any(String), name: "dana" } },
          expect.objectContaining({ type: "message", text: "marker" }),
        ]);
        // The typist hears nothing of its own typing, in none of its tabs (one member, §10).
        expect(await dana.sync()).toEqual([]);
        expect((await danaTab.until((f) => f.type === "message")).map((f) => f.type)).toEqual(["message"]);
        danaTab.close();
        dana.send({ type: "typing", room: "not-joined", ref: "t" });
        expect(await dana.next()).toMatchObject({ type: "error", code: "not_joined", ref: "t" });
        dana.close();
        eve.close();
      });
    });

    describe("delivery", () => {
      test("a retried send is stored once; only the sender gets the original again", async () => {
        await using server = await startServer();
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
      });

      test("a retry of a stored send that the room refuses now (slow mode, read-only, a mute) gets the original; a new id, the refusal", async () => {
        await using server = await startServer();
        const owner = await user(server, "olga", "q"); // the first joiner: the owner
        const bob = await user(server, "bob", "q");
        const bobId = bob.frames[0]!.user.id;
        await owner.expect("presence");
        const ask = async (frame: Record<string, unknown>) => {
          owner.send({ ...frame, ref: "r" });
          await owner.until((f) => f.ref === "r");
          await bob.until((f) => f.type === "settings" || f.type === "moderation");
        };
        const send = (id: string) => {
          bob.send({ type: "send", room: "q", id, text: "the retry's text is ignored" });
          return bob.next();
        };
        await ask({ type: "room_settings", room: "q", slowModeSeconds: 60 });
        const original = await bob.say("q", "once", "k1");
        expect(await send("k1")).toEqual(original);
        expect(await send("k2")).toMatchObject({ type: "error", code: "slow_mode", ref: "k2" });
        await ask({ type: "room_settings", room: "q", slowModeSeconds: 0, readOnly: true });
        expect(await send("k1")).toEqual(original);
        expect(await send("k3")).toMatchObject({ type: "error", code: "read_only", ref: "k3" });
        await ask({ type: "room_settings", room: "q", readOnly: false });
        await ask({ type: "mute", room: "q", user: bobId, seconds: 60 });
        expect(await send("k1")).toEqual(original);
        expect(await send("k4")).toMatchObject({ type: "error", code: "muted", ref: "k4" });
        // The retries stored and sent nothing: the owner saw the original once, then its own marker.
        const marker = await owner.say("q", "marker");
        expect(owner.frames.filter((f) => f.type === "message")).toEqual([original, marker]);
        owner.close();
        bob.close();
      });

      test("a retry that the room refuses while its original is still being stored gets the original, not the refusal", async () => {
        await using server = await startServer();
        const owner = await user(server, "olga", "q");
        const bob = await user(server, "bob", "q");
        await owner.expect("presence");
        owner.send({ type: "room_settings", room: "q", slowModeSeconds: 60, ref: "r" });
        await owner.until((f) => f.ref === "r");
        await bob.until((f) => f.type === "settings");
        // Both in one write: the second is read while the first waits in the batcher, unstored.
        bob.send({ type: "send", room: "q", id: "k", text: "once" });
        bob.send({ type: "send", room: "q", id: "k", text: "the retry's text is ignored" });
        const original = await bob.next();
        expect(original).toMatchObject({ type: "message", id: "k", text: "once" });
        expect(await bob.next()).toEqual(original);
        expect(await owner.next()).toEqual(original);
        const marker = await owner.say("q", "marker");
        expect(owner.frames.filter((f) => f.type === "message")).toEqual([original, marker]);
        owner.close();
        bob.close();
      });
    });

    describe("slow consumers", () => {
      test("a client that never reads is closed at the backpressure limit; the others keep receiving", async () => {
        await using server = await startServer({
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
      });
    });
  });
}

// The rest run on SQLite, the default engine, only: most bring a store of their own, to hold or fail its commits.
describe("delivery", () => {
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
    await using server = await startServer({ store });
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
  });
});

describe("history on join", () => {
  test("joins at one seq share one read of the room's page; a message, an edit, or a second later reads it again", async () => {
    let clock = Date.now();
    let reads = 0;
    const store = sqliteWith((real) => ({
      roomPage: (room, query) => {
        reads++;
        return real.roomPage(room, query);
      },
    }));
    await using server = await startServer({ store, now: () => clock, editWindowSeconds: 60 });
    const ann = await user(server, "ann", "p");
    const first = await ann.say("p", "one");
    const readsBefore = reads;
    const bob = await user(server, "bob", "p");
    const cyd = await user(server, "cyd", "p");
    // Cyd joined at the seq Bob read at: the same page, not read again.
    expect(reads).toBe(readsBefore + 1);
    expect(cyd.frames.find((f) => f.type === "joined")!.messages).toEqual([first]);
    ann.send({ type: "edit", room: "p", seq: first.seq, text: "one, edited" });
    let edit = await ann.next();
    while (edit.type !== "edit") edit = await ann.next();
    const dee = await user(server, "dee", "p");
    expect(reads).toBe(readsBefore + 2);
    expect(dee.frames.find((f) => f.type === "joined")!.messages).toEqual([{ ...first, text: "one, edited", edited: clock }, edit]);
    // The same seq a second later: read again (an age sweep takes no seq).
    clock += 1000;
    const eve = await user(server, "eve", "p");
    expect(reads).toBe(readsBefore + 3);
    expect(eve.frames.find((f) => f.type === "joined")!.messages).toEqual(dee.frames.find((f) => f.type === "joined")!.messages);
    // Pages are let go of once a second old: a room nobody joins lately holds none.
    expect(server.chat.inspect().roomPagesKept).toBe(1);
    clock += 1000;
    const fay = await user(server, "fay", "q");
    expect(server.chat.inspect().roomPagesKept).toBe(1);
    for (const c of [ann, bob, cyd, dee, eve, fay]) c.close();
  });
});

describe("ordering (§10)", () => {
  test("joined comes before any live event of its room, and every message once, under concurrent TCP and WebSocket traffic", async () => {
    await using server = await startServer({ tcpPort: 0, rateLimitBurst: 10_000, rateLimitPerSecond: 10_000, historyOnJoin: 5 });
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
      roomPage: async (room, query) => (gated && (await hold()), real.roomPage(room, query)),
    }));
    await using server = await startServer({ store });
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
  });

  test("a connection closed for abuse first receives its own accepted messages", async () => {
    let open!: () => void;
    const gate = new Promise<void>((resolve) => (open = resolve));
    const store = sqliteWith((real) => ({ append: async (batch) => (await gate, real.append(batch)) }));
    await using server = await startServer({ store, now: frozenClock(), rateLimitBurst: 4, rateLimitAbuseErrors: 2 });
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
  });
});

describe("slow consumers", () => {
  test("publishing to nobody is not a drop: a lone joiner and a lone typist count none", async () => {
    await using server = await startServer();
    const solo = await user(server, "solo", "empty-room");
    solo.send({ type: "typing", room: "empty-room" });
    expect(await solo.sync()).toEqual([]);
    expect(await (await server.http("/metrics")).text()).toContain("chat_publish_drops_total 0\n");
    solo.close();
  });

  test("a slow reader in a busy room is counted and logged as a backpressure close", async () => {
    await using server = await startServer({
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
  });
});
