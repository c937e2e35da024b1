/**
 * Outgoing webhooks (§11.7), against a local receiver that verifies every POST with the
 * `standardwebhooks` package: on both engines, every event type arrives once, its data the frame
 * clients saw; a receiver that fails (5xx, 4xx, a 3xx not followed) gets the same webhook-id
 * again; a deleted message's text leaves the events still queued; the queue's bounds drop and
 * count; a receiver that hangs or fails changes nothing for chatters (measured). With real
 * processes: an event survives a SIGKILL between its commit and its delivery; with Redis, each
 * event is delivered by exactly one of two instances, and one killed mid-delivery loses nothing.
 * Settings: a bad WEBHOOK_* value, or WEBHOOK_URL without a secret, exits 1 naming it.
 */
import { describe, expect, test } from "bun:test";
import { Database } from "bun:sqlite";
import { Webhook } from "standardwebhooks";
import { join } from "node:path";
import { DEFAULTS, loadConfig, webhookKeys } from "../src/config.ts";
import type { Context } from "../src/context.ts";
import type { Outbox } from "../src/engine.ts";
import { Metrics } from "../src/metrics.ts";
import { WEBHOOK_EVENTS } from "../src/protocol/wire.ts";
import { openRedis } from "../src/redis/index.ts";
import { SqliteStore } from "../src/sqlite.ts";
import { Webhooks, retryDelayMs, webhookBody, webhookHeaders } from "../src/webhooks.ts";
import {
  Client,
  ENGINES,
  SERVER_COMMAND,
  TEST_WEBHOOK_SECRET,
  bounded,
  engineServers,
  freePort,
  redisForSuite,
  run,
  spawnServer,
  sqliteWith,
  startServer as startOne,
  tempDir,
  user,
  Waker,
  webhookReceiver,
  type Delivery,
  type Frame,
  type TestServer,
} from "./helpers.ts";

const ADMIN_TOKEN = "admin-token-for-the-webhook-tests-0123";

const hooks = (receiver: { url: (path?: string) => string }, path?: string) => ({
  webhookUrl: receiver.url(path),
  webhookSecret: TEST_WEBHOOK_SECRET,
});

/** Sends a frame and returns the frames up to its answer (ok or error), the answer last. */
async function ask(c: Client, frame: object): Promise<Frame> {
  c.send(frame);
  return (await c.until((f) => f.type === "ok" || f.type === "error")).at(-1)!;
}

/** Sends a message and waits for its echo, past whatever room events come first. */
async function say(c: Client, room: string, text: string): Promise<Frame> {
  const id = crypto.randomUUID();
  c.send({ type: "send", room, id, text });
  return (await c.until((f) => f.type === "message" && f.id === id)).at(-1)!;
}

/** The server's webhook metrics, by name (and result). */
async function hookMetrics(server: TestServer): Promise<Record<string, number>> {
  const text = await (await server.http("/metrics")).text();
  const out: Record<string, number> = {};
  for (const m of text.matchAll(/^chat_webhook_(\w+?)(?:_total)?(?:\{result="(\w+)"\})? (\d+)$/gm)) out[m[2] ?? m[1]!] = Number(m[3]);
  return out;
}

/** Resolves once the server has counted `n` deliveries (the receiver records one before it answers). */
const countedDeliveries = (server: TestServer, n: number) =>
  server.logLine(() => server.logs.filter((l) => l.event === "webhook_delivered").length >= n);

/** Deliveries answered 2xx, by webhook-id. */
const delivered = (ds: Delivery[]) => ds.filter((d) => d.answer === 200);

/** A clock the test moves: the server's retries and ages follow it (the deliverer's poll is real time). */
function testClock() {
  let offset = 0;
  return { now: () => Date.now() + offset, advance: (ms: number) => void (offset += ms) };
}

for (const engine of ENGINES) {
  describe(engine, () => {
    const { startServer: start } = engineServers(engine);
    const startServer = (options = {}) => start({ rateLimitBurst: 1000, rateLimitPerSecond: 1000, ...options });

    test("every event type arrives once, signed, its data the frame clients saw", async () => {
      await using receiver = webhookReceiver();
      await using server = await startServer(hooks(receiver));
      const owner = await user(server, "olga", "r");
      const ann = await user(server, "ann", "r");
      const annId = ann.frames[0]!.user.id;
      await ask(owner, { type: "room_settings", room: "r", topic: "webhooks" });
      const m = await say(ann, "r", "hello hooks");
      await ask(ann, { type: "edit", room: "r", seq: m.seq, text: "hello, hooks" });
      // Delivered before the deletion: one still queued then would lose its text (the next test).
      await receiver.until((ds) => ds.some((d) => d.type === "message.edited") && ds.some((d) => d.type === "message.created"), "the message and its edit");
      await ask(ann, { type: "delete", room: "r", seq: m.seq });
      await ask(owner, { type: "role", room: "r", user: annId, role: "moderator" });
      await ask(owner, { type: "kick", room: "r", user: annId, reason: "done" });
      const expected: [string, (f: Frame) => boolean][] = [
        ["member.joined", (f) => f.type === "presence" && f.event === "join" && f.user.name === "olga"],
        ["member.joined", (f) => f.type === "presence" && f.event === "join" && f.user.name === "ann"],
        ["room.settings", (f) => f.type === "settings"],
        ["message.created", (f) => f.type === "message"],
        ["message.edited", (f) => f.type === "edit"],
        ["message.deleted", (f) => f.type === "delete"],
        ["moderation", (f) => f.type === "moderation" && f.action === "role"],
        ["moderation", (f) => f.type === "moderation" && f.action === "kick"],
        ["member.left", (f) => f.type === "presence" && f.event === "leave"],
      ];
      const ds = await receiver.until((ds) => ds.length >= expected.length, "every event");
      expect(receiver.forged).toEqual([]);
      // Each event once, under an id of its own, its data exactly the frame the room saw.
      expect(new Set(ds.map((d) => d.id)).size).toBe(ds.length);
      // The owner has read every frame the room had (a webhook may beat a WebSocket frame).
      await owner.sync();
      const seen = [{ type: "presence", room: "r", event: "join", user: owner.frames[0]!.user }, ...owner.frames];
      for (const [type, match] of expected) {
        const found = ds.filter((d) => d.type === type && match(d.data));
        expect(found.length, type).toBe(1);
        expect(seen.some((f) => Bun.deepEquals(f, found[0]!.data)), `${type}: ${JSON.stringify(found[0]!.data)}`).toBe(true);
        expect(Date.parse(found[0]!.timestamp)).toBeGreaterThan(0);
        expect(found[0]!.id).toMatch(/^msg_[0-9a-f]{24}[0-9a-z]+$/);
      }
      // Nothing more comes: every attempt succeeded at once, and nothing is left to send.
      await countedDeliveries(server, expected.length);
      expect(await hookMetrics(server)).toMatchObject({ ok: expected.length, retry: 0, dropped: 0 });
      owner.close();
      ann.close();
    });

    test("a server-wide ban and its lifting each send a moderation event", async () => {
      await using receiver = webhookReceiver();
      await using server = await startServer({ ...hooks(receiver), adminToken: ADMIN_TOKEN, webhookEvents: ["moderation"] });
      const ops = await Client.connect(server.wsUrl);
      ops.send({ type: "hello", name: "ops", adminToken: ADMIN_TOKEN });
      await ops.expect("welcome");
      const bad = await user(server, "bad");
      const badId = bad.frames[0]!.user.id;
      await ask(ops, { type: "ban", user: badId });
      expect(await bad.closed).toMatchObject({ code: 4003 });
      await ask(ops, { type: "unban", user: badId });
      const ds = await receiver.until((ds) => ds.length >= 2, "the ban and the unban");
      expect(ds.map((d) => [d.data.action, d.data.user.id]).sort()).toEqual([["ban", badId], ["unban", badId]]);
      ops.close();
    });

    test("WEBHOOK_EVENTS picks the events sent", async () => {
      await using receiver = webhookReceiver();
      await using server = await startServer({ ...hooks(receiver), webhookEvents: ["message.created", "moderation"] });
      const owner = await user(server, "olga", "r");
      const ann = await user(server, "ann", "r");
      await ask(owner, { type: "room_settings", room: "r", topic: "quiet" });
      const m = await say(ann, "r", "one");
      await ask(ann, { type: "delete", room: "r", seq: m.seq });
      await ask(owner, { type: "mute", room: "r", user: ann.frames[0]!.user.id, seconds: 60 });
      await say(owner, "r", "sentinel");
      const ds = await receiver.until((ds) => ds.some((d) => d.data.text === "sentinel"), "the sentinel");
      expect(ds.map((d) => d.type).sort()).toEqual(["message.created", "message.created", "moderation"]);
      owner.close();
      ann.close();
    });

    test("a receiver that fails (5xx, a 3xx not followed, 4xx) then recovers gets the same webhook-id, after the retry schedule", async () => {
      const clock = testClock();
      await using receiver = webhookReceiver();
      const answers = [500, 302, 404, 200];
      receiver.answer = (d) => (d.type === "message.created" ? answers[receiver.deliveries.filter((x) => x.type === d.type).length]! : 200);
      await using server = await startServer({ ...hooks(receiver), now: clock.now });
      const ann = await user(server, "ann", "r");
      await say(ann, "r", "try, try again");
      for (let attempt = 1; attempt < answers.length; attempt++) {
        const retry = await server.logLine((l) => l.event === "webhook_retry" && l.type === "message.created" && l.attempts === attempt);
        // About 5 s, 30 s, 2 min after a failure (± 20%): then the next poll tries again.
        const wait = (retry.at as number) - clock.now();
        expect(wait).toBeGreaterThan([5_000, 30_000, 120_000][attempt - 1]! * 0.8 - 1000);
        expect(wait).toBeLessThanOrEqual([5_000, 30_000, 120_000][attempt - 1]! * 1.2);
        clock.advance(wait);
      }
      const ds = (await receiver.until((ds) => delivered(ds).some((d) => d.type === "message.created"), "the 4th attempt")).filter((d) => d.type === "message.created");
      expect(ds.map((d) => d.answer)).toEqual(answers);
      expect(new Set(ds.map((d) => d.id)).size).toBe(1);
      expect(new Set(ds.map((d) => JSON.stringify(d.data))).size).toBe(1);
      // Each attempt is signed for its own time.
      expect(ds.map((d) => d.seconds)).toEqual([...ds.map((d) => d.seconds)].sort((a, b) => a - b));
      expect(ds.at(-1)!.seconds - ds[0]!.seconds).toBeGreaterThan(120);
      expect(receiver.strays).toEqual([]);
      expect(receiver.forged).toEqual([]);
      await countedDeliveries(server, 2);
      expect(await hookMetrics(server)).toMatchObject({ ok: 2, retry: 3, dropped: 0 });
      ann.close();
    });

    test("a deleted message's text leaves the events still queued", async () => {
      const clock = testClock();
      await using receiver = webhookReceiver();
      let down = true;
      receiver.answer = () => (down ? 503 : 200);
      await using server = await startServer({ ...hooks(receiver), now: clock.now, webhookEvents: ["message.created", "message.edited"] });
      const ann = await user(server, "ann", "r");
      const m = await say(ann, "r", "REGRETTED-TEXT");
      await ask(ann, { type: "edit", room: "r", seq: m.seq, text: "REGRETTED-EDIT" });
      await server.logLine((l) => l.event === "webhook_retry" && l.type === "message.edited");
      await server.logLine((l) => l.event === "webhook_retry" && l.type === "message.created");
      await ask(ann, { type: "delete", room: "r", seq: m.seq });
      down = false;
      clock.advance(10_000);
      const ds = delivered(await receiver.until((ds) => delivered(ds).length === 2, "both retries"));
      expect(ds.map((d) => [d.type, d.data.text]).sort()).toEqual([
        ["message.created", ""],
        ["message.edited", ""],
      ]);
      ann.close();
    });

    test("past WEBHOOK_MAX_PENDING the oldest are dropped, past WEBHOOK_MAX_AGE_HOURS the too old: each counted", async () => {
      const clock = testClock();
      await using receiver = webhookReceiver();
      let down = true;
      receiver.answer = () => (down ? 500 : 200);
      await using server = await startServer({ ...hooks(receiver), now: clock.now, webhookMaxPending: 100, webhookMaxAgeHours: 1, webhookEvents: ["message.created"] });
      const ann = await user(server, "ann", "r");
      const sent: number[] = [];
      for (let i = 0; i < 110; i++) ann.send({ type: "send", room: "r", id: `m${i}`, text: `m${i}` });
      for (const f of await ann.until((f) => f.type === "message" && f.id === "m109")) if (f.type === "message") sent.push(f.seq);
      const droppedLogs = () => server.logs.filter((l) => l.event === "webhook_dropped").reduce((n, l) => n + (l.count as number), 0);
      await server.logLine(() => droppedLogs() >= 10);
      down = false;
      clock.advance(10_000);
      const ds = delivered(await receiver.until((ds) => delivered(ds).length >= 100, "the newest 100"));
      expect(ds.map((d) => d.data.seq).sort((a, b) => a - b)).toEqual(sent.slice(10));
      await countedDeliveries(server, 100);
      expect(await hookMetrics(server)).toMatchObject({ ok: 100, dropped: 10 });
      // An event older than WEBHOOK_MAX_AGE_HOURS when its turn comes is dropped, not sent.
      down = true;
      await say(ann, "r", "too late");
      await server.logLine((l) => l.event === "webhook_retry" && l.attempts === 1 && l.id !== undefined && !ds.some((d) => d.id === l.id));
      clock.advance(2 * 3_600_000);
      await server.logLine((l) => l.event === "webhook_dropped" && l.why === "WEBHOOK_MAX_AGE_HOURS");
      expect(await hookMetrics(server)).toMatchObject({ ok: 100, dropped: 11 });
      ann.close();
    });

    test("a receiver that hangs or fails forever changes nothing for chatters (send → echo latency, measured)", async () => {
      await using hanging = webhookReceiver();
      hanging.answer = () => "hang";
      await using failing = webhookReceiver();
      failing.answer = () => 500;
      await using plain = await startServer();
      await using hung = await startServer(hooks(hanging));
      await using failed = await startServer(hooks(failing));
      const servers = { off: plain, hanging: hung, failing: failed };
      const latencies: Record<string, number[]> = { off: [], hanging: [], failing: [] };
      // A room each: on Redis the three share one redis-server, and channels are not per database.
      const clients = Object.fromEntries(await Promise.all(Object.entries(servers).map(async ([k, s]) => [k, await user(s, "ann", k)] as const)));
      // Interleaved, so that whatever else the machine does falls on all three alike.
      for (let round = 0; round < 200; round++) {
        for (const key of Object.keys(servers)) {
          const began = performance.now();
          await say(clients[key]!, key, `m${round}`);
          latencies[key]!.push(performance.now() - began);
        }
      }
      const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length * p)]!;
      const figures = Object.fromEntries(Object.entries(latencies).map(([k, xs]) => [k, { p50: +pct(xs, 0.5).toFixed(3), p99: +pct(xs, 0.99).toFixed(3) }]));
      console.log(`webhooks ${engine}: send → echo ms ${JSON.stringify(figures)}`);
      expect(hanging.deliveries.length).toBeGreaterThanOrEqual(4); // 4 in flight, each held (for 10 s)
      expect(failing.deliveries.length).toBeGreaterThan(0);
      for (const key of ["hanging", "failing"]) expect(figures[key]!.p50).toBeLessThan(figures.off!.p50 * 2 + 1);
      for (const c of Object.values(clients)) c.close();
    });
  });
}

describe("settings (§11.9)", () => {
  const secret2 = `whsec_${Buffer.alloc(24, 7).toString("base64")}`;

  test("WEBHOOK_URL needs WEBHOOK_SECRET; a bad secret is named, never echoed; events are checked", () => {
    expect(loadConfig({ WEBHOOK_URL: "https://hooks.example.com/chat" })).toEqual({
      ok: false,
      errors: ["WEBHOOK_URL=https://hooks.example.com/chat: needs WEBHOOK_SECRET to sign what it sends"],
    });
    for (const bad of ["secret", "whsec_", "whsec_c2hvcnQ=", `whsec_${Buffer.alloc(23).toString("base64")}`, `${TEST_WEBHOOK_SECRET}!`, `whsec_${"A".repeat(31)}`]) {
      const r = loadConfig({ WEBHOOK_URL: "https://hooks.example.com/", WEBHOOK_SECRET: bad });
      expect(r.ok, bad).toBe(false);
      if (!r.ok) expect(r.errors[0]).toStartWith("WEBHOOK_SECRET=(hidden): whsec_ followed by");
    }
    expect(loadConfig({ WEBHOOK_URL: "ftp://hooks.example.com/", WEBHOOK_SECRET: TEST_WEBHOOK_SECRET }).ok).toBe(false);
    expect(loadConfig({ WEBHOOK_EVENTS: "message.created,message.sent" }).ok).toBe(false);
    expect(loadConfig({ WEBHOOK_EVENTS: "moderation,moderation" }).ok).toBe(false);
    expect(loadConfig({ WEBHOOK_MAX_AGE_HOURS: "721" }).ok).toBe(false);
    expect(loadConfig({ WEBHOOK_MAX_PENDING: "99" }).ok).toBe(false);
    const ok = loadConfig({
      WEBHOOK_URL: "http://127.0.0.1:9/hooks",
      WEBHOOK_SECRET: ` ${TEST_WEBHOOK_SECRET}  ${secret2} `,
      WEBHOOK_EVENTS: " message.created , member.joined",
      WEBHOOK_MAX_AGE_HOURS: "720",
      WEBHOOK_MAX_PENDING: "100",
    });
    if (!ok.ok) throw new Error(ok.errors.join("\n"));
    expect(ok.config).toMatchObject({ webhookEvents: ["message.created", "member.joined"], webhookMaxAgeHours: 720, webhookMaxPending: 100 });
    expect(webhookKeys(ok.config.webhookSecret!)!.map((k) => k.length)).toEqual([32, 24]);
    // Padding may be left off, as Standard Webhooks' own secrets often are.
    expect(webhookKeys(TEST_WEBHOOK_SECRET.replace(/=+$/, ""))).not.toBeNull();
  });

  test("the server exits 1 at start naming the setting", async () => {
    const noSecret = await run(SERVER_COMMAND, { env: { PORT: "0", DATABASE_PATH: ":memory:", WEBHOOK_URL: "http://127.0.0.1:9/" } });
    expect(noSecret.code).toBe(1);
    expect(noSecret.stderr).toContain("WEBHOOK_URL=http://127.0.0.1:9/: needs WEBHOOK_SECRET");
    const badSecret = await run(SERVER_COMMAND, { env: { PORT: "0", DATABASE_PATH: ":memory:", WEBHOOK_URL: "http://127.0.0.1:9/", WEBHOOK_SECRET: "whsec_tooshort" } });
    expect(badSecret.code).toBe(1);
    expect(badSecret.stderr).toContain("WEBHOOK_SECRET=(hidden)");
    expect(badSecret.stderr).not.toContain("tooshort");
  });

  test("with several secrets (rotation) each signs: a receiver that knows either one verifies", async () => {
    await using receiver = webhookReceiver(secret2);
    await using server = await startOne({ webhookUrl: receiver.url(), webhookSecret: `${TEST_WEBHOOK_SECRET} ${secret2}` });
    const ann = await user(server, "ann", "r");
    const [d] = await receiver.until((ds) => ds.length > 0, "a delivery");
    expect(receiver.forged).toEqual([]);
    expect(d!.type).toBe("member.joined");
    ann.close();
  });
});

describe("crashes: an event survives a SIGKILL of the server between its commit and its delivery", () => {
  test("SQLite", async () => {
    using dir = tempDir();
    await using receiver = webhookReceiver();
    receiver.answer = (d) => (d.path === "/first" ? "hang" : 200);
    const env = { DATABASE_PATH: join(dir.path, "chat.sqlite"), WEBHOOK_SECRET: TEST_WEBHOOK_SECRET, WEBHOOK_EVENTS: "message.created" };
    let first: Delivery;
    {
      await using proc = await spawnServer({ ...env, WEBHOOK_URL: receiver.url("/first") });
      const ann = await Client.connect(proc.wsUrl);
      await ann.hello("ann");
      await ann.join("r");
      await ann.say("r", "kept through a crash");
      // Its delivery is under way (held by the receiver) when the process dies.
      first = (await receiver.until((ds) => ds.length === 1, "the first attempt"))[0]!;
      proc.proc.kill("SIGKILL");
      await proc.proc.exited;
      ann.close();
    }
    await using again = await spawnServer({ ...env, WEBHOOK_URL: receiver.url("/again") });
    const ds = await receiver.until((ds) => ds.some((d) => d.path === "/again"), "the delivery after the restart");
    const redelivered = ds.filter((d) => d.path === "/again");
    expect(redelivered.map((d) => [d.id, d.data])).toEqual([[first!.id, first!.data]]);
    expect(first!.data).toMatchObject({ type: "message", text: "kept through a crash" });
    expect(receiver.forged).toEqual([]);
    void again;
  });
});

describe("the outbox in storage", () => {
  const redis = redisForSuite();

  test("webhooks off, SQLite: no outbox rows", async () => {
    using dir = tempDir();
    const databasePath = join(dir.path, "chat.sqlite");
    {
      await using server = await startOne({ databasePath });
      const ann = await user(server, "ann", "r");
      await say(ann, "r", "unhooked");
      ann.close();
    }
    const db = new Database(databasePath, { readonly: true });
    expect(db.query("SELECT count(*) AS n FROM hooks").get()).toEqual({ n: 0 });
    db.close();
  });

  test("webhooks off, Redis: no outbox keys", async () => {
    const db = redis.freshDb();
    await using server = await startOne({ redisUrl: redis.url(db) });
    const ann = await user(server, "ann", "r");
    await say(ann, "r", "unhooked");
    expect(await redis.commandIn(db, "KEYS", "chat:hooks*")).toEqual([]);
    ann.close();
  });

  // §11.7: "queued in the same commit as what it reports". Each engine writes a change and the
  // events it is given in one step (one transaction, one script); the moderation test below shows
  // the server hands its events over that way rather than in a write of their own.
  for (const engine of ENGINES) {
    test(`${engine}: a ban, a mute, a role and a private list's kick queue their events with the change`, async () => {
      const now = Date.now();
      const opened = engine === "sqlite" ? null : await openRedis(DEFAULTS, redis.url(redis.freshDb()), () => {}, () => now);
      const store = opened?.store ?? new SqliteStore(":memory:", 100);
      try {
        const outbox = store.openOutbox({ types: new Set(WEBHOOK_EVENTS), maxPending: 100 });
        const by = { id: "g_mod", name: "mod" };
        const told = (action: "ban" | "mute" | "role" | "kick" | "unban", user = "g_ann") => [
          { id: `msg_${action}_${user}`, type: "moderation" as const, ts: now, data: { type: "moderation" as const, room: "r", action, user: { id: user, name: user }, by } },
        ];
        const restriction = { until: null, by };
        await store.restrict("ban", "r", "g_ann", restriction, told("ban"));
        await store.restrict("mute", "r", "g_bob", restriction, told("mute", "g_bob"));
        await store.setRole("r", { id: "g_cat", name: "cat" }, "moderator", told("role", "g_cat"));
        await store.addListed("r", ["g_dan"]);
        await store.removeListed("r", "g_dan", told("kick", "g_dan"));
        await store.banServer("g_eve", restriction, undefined, told("ban", "g_eve"));
        await store.banServer("g_eve", null, undefined, told("unban", "g_eve"));
        const auth = await store.roomAuth("r");
        expect([auth.bans.has("g_ann"), auth.mutes.has("g_bob"), auth.roles.get("g_cat")?.role, await store.isListed("r", "g_dan")]).toEqual([true, true, "moderator", false]);
        expect(await store.serverBan("g_eve", "::1", now)).toBeNull();
        const taken = await outbox.take(10, now);
        expect(taken.map((e) => e.id)).toEqual(["msg_ban_g_ann", "msg_mute_g_bob", "msg_role_g_cat", "msg_kick_g_dan", "msg_ban_g_eve", "msg_unban_g_eve"]);
        expect(taken[0]!.data).toEqual(told("ban")[0]!.data);
      } finally {
        await opened?.roster.close().then(() => opened.relay.close());
        await store.close();
      }
    });
  }

  test("moderation events ride on their change's commit: with the outbox's own writes failing, a role, mute, ban and private kick still tell", async () => {
    await using receiver = webhookReceiver();
    // Stands in for a crash between two writes: an event queued in a write of its own is lost.
    const store = sqliteWith((real) => ({
      openOutbox: (bounds) => Object.assign(real.openOutbox(bounds), { add: () => Promise.reject(new Error("disk I/O error (injected)")) }),
    }));
    await using server = await startOne({ store, ...hooks(receiver), webhookEvents: ["moderation"] });
    const owner = await user(server, "olga", "r");
    const [ann, bob, cat] = [await user(server, "ann", "r"), await user(server, "bob", "r"), await user(server, "cat", "r")];
    const id = (c: Client) => c.frames[0]!.user.id as string;
    await ask(owner, { type: "room_settings", room: "r", private: true });
    await ask(owner, { type: "role", room: "r", user: id(ann), role: "moderator" });
    await ask(owner, { type: "mute", room: "r", user: id(bob), seconds: 60 });
    await ask(owner, { type: "ban", room: "r", user: id(bob) });
    await ask(owner, { type: "kick", room: "r", user: id(cat) });
    const ds = await receiver.until((ds) => ds.length >= 4, "the four moderation events");
    expect(ds.map((d) => d.data.action).sort()).toEqual(["ban", "kick", "mute", "role"]);
    for (const c of [owner, ann, bob, cat]) c.close();
  });

  for (const engine of ENGINES) {
    test(`${engine}: what storage failed to write a moment (a retry, a removal) is written again: the event is tried again, then leaves the queue`, async () => {
      using dir = tempDir();
      let offset = 0;
      const now = () => Date.now() + offset;
      const opened = engine === "sqlite" ? null : await openRedis(DEFAULTS, redis.url(redis.freshDb()), () => {}, now);
      const store = opened?.store ?? new SqliteStore(join(dir.path, "chat.sqlite"), 1000);
      try {
        const outbox: Outbox = store.openOutbox({ types: new Set(WEBHOOK_EVENTS), maxPending: 1000 });
        // One failure each, of the write that puts the failed event among the retries and of the one that removes it once delivered.
        const failing = new Set(["retry", "done"]);
        const once = <A extends unknown[]>(name: string, real: (...args: A) => Promise<void>) => (...args: A) =>
          failing.delete(name) ? Promise.reject(new Error("disk I/O error (injected)")) : real(...args);
        outbox.retry = once("retry", outbox.retry.bind(outbox));
        outbox.done = once("done", outbox.done.bind(outbox));
        const waker = new Waker();
        let takes = 0;
        const take = outbox.take.bind(outbox);
        outbox.take = (n, at) => (takes++, waker.poke(), take(n, at));
        const calls: string[] = [];
        const fetch = async (_url: string, init: RequestInit) => {
          calls.push(String((init.headers as Record<string, string>)["webhook-id"]));
          waker.poke();
          return new Response(null, { status: calls.length === 1 ? 500 : 200 });
        };
        const logs: string[] = [];
        const ctx = { config: DEFAULTS, now, metrics: new Metrics(), log: (_l: string, e: string) => (logs.push(e), waker.poke()) } as unknown as Context;
        const hooks = new Webhooks(ctx, outbox, { url: "http://127.0.0.1:9/", keys: webhookKeys(TEST_WEBHOOK_SECRET)!, maxAgeMs: 24 * 3_600_000, types: new Set(WEBHOOK_EVENTS), fetch, pollMs: 20 });
        await outbox.add([{ id: "msg_stranded", type: "message.created", ts: now(), data: { type: "presence", room: "r", event: "join", user: { id: "u", name: "ann" } } }]);
        hooks.start();
        await waker.until(() => logs.includes("webhook_queue"), () => null, () => "the failed retry write");
        // Ten minutes on, the first retry (about 5 s) is long due: it comes within 20 polls.
        offset += 600_000;
        const from = takes;
        await waker.until(() => takes >= from + 20 || calls.length > 1, () => null, () => "20 polls");
        expect(calls).toEqual(["msg_stranded", "msg_stranded"]);
        await waker.until(() => logs.filter((e) => e === "webhook_queue").length === 2, () => null, () => "the failed removal");
        await hooks.stop();
        expect(await outbox.pending()).toBe(0);
      } finally {
        await opened?.roster.close().then(() => opened.relay.close());
        await store.close();
      }
    });
  }

  test("Redis that lost its data: the consumer group is made again and events flow", async () => {
    await using receiver = webhookReceiver();
    const db = redis.freshDb();
    await using server = await startOne({ redisUrl: redis.url(db), ...hooks(receiver), webhookEvents: ["message.created"] });
    const ann = await user(server, "ann", "r");
    await say(ann, "r", "before");
    await receiver.until((ds) => ds.length === 1, "the first event");
    await redis.commandIn(db, "FLUSHDB");
    // Another room: this one's seq went back, which is another story (its clients start it over).
    await ann.join("r2");
    await say(ann, "r2", "after");
    const ds = await receiver.until((ds) => ds.length === 2, "the event after the flush");
    expect(ds.map((d) => d.data.text)).toEqual(["before", "after"]);
    ann.close();
  });
});

describe("Redis, two instances", () => {
  const redis = redisForSuite();

  test("each event is delivered by exactly one instance", async () => {
    await using receiver = webhookReceiver();
    const redisUrl = redis.url(redis.freshDb());
    const options = { redisUrl, rateLimitBurst: 1000, rateLimitPerSecond: 1000, webhookSecret: TEST_WEBHOOK_SECRET, webhookEvents: ["message.created" as const] };
    await using a = await startOne({ ...options, webhookUrl: receiver.url("/a") });
    await using b = await startOne({ ...options, webhookUrl: receiver.url("/b") });
    const ann = await user(a, "ann", "r");
    const bob = await user(b, "bob", "r");
    const n = 100;
    for (let i = 0; i < n; i++) {
      ann.send({ type: "send", room: "r", id: `a${i}`, text: `a${i}` });
      bob.send({ type: "send", room: "r", id: `b${i}`, text: `b${i}` });
    }
    await ann.until((f) => f.type === "message" && f.id === `a${n - 1}`);
    await bob.until((f) => f.type === "message" && f.id === `b${n - 1}`);
    const ds = await receiver.until((ds) => ds.length >= 2 * n, "every message's event");
    const texts = ds.map((d) => d.data.text as string).sort();
    expect(texts).toEqual([...Array.from({ length: n }, (_, i) => `a${i}`), ...Array.from({ length: n }, (_, i) => `b${i}`)].sort());
    expect(new Set(ds.map((d) => d.id)).size).toBe(2 * n);
    await countedDeliveries(a, ds.filter((d) => d.path === "/a").length);
    await countedDeliveries(b, ds.filter((d) => d.path === "/b").length);
    const [ma, mb] = [await hookMetrics(a), await hookMetrics(b)];
    expect(ma.ok! + mb.ok!).toBe(2 * n);
    console.log(`webhooks: instance a delivered ${ma.ok}, b ${mb.ok}`);
    ann.close();
    bob.close();
  });

  test("one instance killed mid-delivery: another delivers what it held, with the same webhook-id", async () => {
    await using receiver = webhookReceiver();
    receiver.answer = (d) => (d.path === "/a" ? "hang" : 200);
    const env = { REDIS_URL: redis.url(redis.freshDb()), INSTANCE_TIMEOUT_MS: "1000", WEBHOOK_SECRET: TEST_WEBHOOK_SECRET, WEBHOOK_EVENTS: "message.created" };
    await using a = await spawnServer({ ...env, WEBHOOK_URL: receiver.url("/a") });
    await using b = await spawnServer({ ...env, WEBHOOK_URL: receiver.url("/b") });
    const ann = await Client.connect(a.wsUrl);
    await ann.hello("ann");
    await ann.join("r");
    // Until one of a's deliveries hangs (b may well take some first: it polls too).
    let held: Delivery | undefined;
    for (let i = 0; !held; i++) {
      await ann.say("r", `m${i}`);
      await receiver.until((ds) => ds.length > i, `m${i}'s delivery`);
      held = receiver.deliveries.find((d) => d.path === "/a");
    }
    a.proc.kill("SIGKILL");
    await a.proc.exited;
    const ds = await bounded(receiver.until((ds) => ds.some((d) => d.path === "/b" && d.id === held!.id), "b's delivery of a's event"), "takeover");
    expect(ds.filter((d) => d.id === held!.id).map((d) => [d.path, d.data])).toEqual([["/a", held!.data], ["/b", held!.data]]);
    // Every message's event reaches the receiver from b, once: a held them all.
    const texts = receiver.deliveries.map((d) => d.data.text as string);
    const fromB = (await receiver.until((ds) => new Set(texts).size === ds.filter((d) => d.path === "/b").length, "every event from b"))
      .filter((d) => d.path === "/b")
      .map((d) => d.data.text as string);
    expect(fromB.sort()).toEqual([...new Set(texts)].sort());
    expect(receiver.forged).toEqual([]);
    ann.close();
    void b;
  });
});

describe("the deliverer's parts (unit)", () => {
  const event = { id: "msg_1", type: "message.created" as const, ts: Date.UTC(2026, 0, 2, 3, 4, 5), data: { type: "message", room: "r", seq: 1, id: "c1", user: { id: "u", name: "ann" }, text: "hi", ts: 0 } as Frame as any };

  test("body and signature: what standardwebhooks verifies, with every secret", () => {
    const keys = webhookKeys(`${TEST_WEBHOOK_SECRET} whsec_${Buffer.alloc(24, 1).toString("base64")}`)!;
    const body = webhookBody(event);
    expect(JSON.parse(body)).toEqual({ type: "message.created", timestamp: "2026-01-02T03:04:05.000Z", data: event.data });
    const seconds = Math.floor(Date.now() / 1000);
    const headers = webhookHeaders(keys, event, seconds, body);
    expect(headers["webhook-signature"]).toMatch(/^v1,[A-Za-z0-9+/]+=* v1,[A-Za-z0-9+/]+=*$/);
    expect(new Webhook(TEST_WEBHOOK_SECRET).verify(body, headers)).toEqual(JSON.parse(body));
    expect(() => new Webhook(`whsec_${Buffer.alloc(24, 2).toString("base64")}`).verify(body, headers)).toThrow();
    expect(() => new Webhook(TEST_WEBHOOK_SECRET).verify(body.replace("hi", "ho"), headers)).toThrow();
  });

  test("the retry schedule: about 5 s, 30 s, 2 min, 10 min, 30 min, then hourly, ± 20%", () => {
    const at = (r: number) => [1, 2, 3, 4, 5, 6, 20].map((n) => retryDelayMs(n, () => r));
    expect(at(0.5)).toEqual([5_000, 30_000, 120_000, 600_000, 1_800_000, 3_600_000, 3_600_000]);
    expect(at(0)).toEqual([4_000, 24_000, 96_000, 480_000, 1_440_000, 2_880_000, 2_880_000]);
    expect(at(1)).toEqual([6_000, 36_000, 144_000, 720_000, 2_160_000, 4_320_000, 4_320_000]);
  });

  /** A deliverer on a real SQLite outbox (a file at `path`), with a fetch the test answers. */
  function harness(path: string) {
    const store = new SqliteStore(path, 1000);
    const outbox = store.openOutbox({ types: new Set(WEBHOOK_EVENTS), maxPending: 1000 });
    const metrics = new Metrics();
    const calls: { init: RequestInit; answer: (status: number) => void; fail: (e: unknown) => void }[] = [];
    const waker = new Waker();
    const changed = { poke: () => waker.poke(), until: (done: () => boolean, what: string) => waker.until(done, () => null, () => what) };
    const fetch = (_url: string, init: RequestInit) =>
      new Promise<Response>((resolve, reject) => {
        calls.push({ init, answer: (status) => resolve(new Response(null, { status })), fail: reject });
        init.signal?.addEventListener("abort", () => reject(init.signal!.reason));
        changed.poke();
      });
    const logs: string[] = [];
    const ctx = { config: DEFAULTS, now: Date.now, metrics, log: (_l: string, e: string) => (logs.push(e), changed.poke()) } as Context;
    const hooks = new Webhooks(ctx, outbox, { url: "http://127.0.0.1:9/", keys: webhookKeys(TEST_WEBHOOK_SECRET)!, maxAgeMs: 3_600_000, types: new Set(WEBHOOK_EVENTS), fetch, attemptTimeoutMs: 200 });
    return { path, store, outbox, metrics, calls, logs, hooks, changed };
  }

  test("at most 4 in flight; redirects not followed; a hung attempt times out and is retried; stop hands back what was under way", async () => {
    using dir = tempDir();
    const { path, store, outbox, metrics, calls, logs, hooks, changed } = harness(join(dir.path, "chat.sqlite"));
    await outbox.add(Array.from({ length: 10 }, (_, i) => ({ ...event, ts: Date.now(), id: `msg_${i}` })));
    hooks.start();
    await changed.until(() => calls.length >= 4, "4 attempts");
    expect(calls.length).toBe(4);
    expect(calls.every((c) => c.init.redirect === "manual" && c.init.signal instanceof AbortSignal)).toBe(true);
    // None answers: each times out, is put back for a retry, and the next ones go out, 4 at a time.
    await changed.until(() => logs.filter((e) => e === "webhook_retry").length === 4 && calls.length === 8, "4 retries, 4 more attempts");
    expect(metrics.webhooks).toEqual({ ok: 0, retry: 4, dropped: 0 });
    for (const c of calls.slice(4, 6)) c.answer(204);
    await changed.until(() => calls.length === 10, "the last 2 attempts");
    expect(metrics.webhooks.ok).toBe(2);
    await hooks.stop();
    // What was under way is handed back untried: the next start hands it out first, its attempts
    // unchanged; the retries wait their turn.
    expect(await outbox.pending()).toBe(8);
    await store.close();
    const reopened = new SqliteStore(path, 1000);
    const again = reopened.openOutbox({ types: new Set(WEBHOOK_EVENTS), maxPending: 1000 });
    expect((await again.take(10, Date.now())).map((e) => [e.id, e.attempts])).toEqual([6, 7, 8, 9].map((i) => [`msg_${i}`, 0]));
    expect((await again.take(10, Date.now() + 7_000)).map((e) => [e.id, e.attempts]).sort()).toEqual([0, 1, 2, 3].map((i) => [`msg_${i}`, 1]));
    await reopened.close();
  });
  test("after a restart, an event that had failed waits until it is due and goes once; the ones never tried go first", async () => {
    using dir = tempDir();
    const path = join(dir.path, "chat.sqlite");
    const now = Date.now();
    const store = new SqliteStore(path, 1000);
    const outbox = store.openOutbox({ types: new Set(WEBHOOK_EVENTS), maxPending: 1000 });
    await outbox.add([1, 2, 3].map((i) => ({ ...event, ts: now, id: `msg_${i}` })));
    const [first, second, third] = await outbox.take(3, now);
    // The second fails (due in a minute), the third is delivered, the first is still under way
    // when the process stops: after it, the first is the oldest untried row, the second past it.
    await outbox.retry(second!, now + 60_000);
    await outbox.done([third!]);
    expect(first!.id).toBe("msg_1");
    await store.close();
    const reopened = new SqliteStore(path, 1000);
    const again = reopened.openOutbox({ types: new Set(WEBHOOK_EVENTS), maxPending: 1000 });
    expect((await again.take(10, now)).map((e) => e.id)).toEqual(["msg_1"]);
    expect((await again.take(10, now + 60_001)).map((e) => [e.id, e.attempts])).toEqual([["msg_2", 1]]);
    // Each handed out once: both under way, nothing more to take.
    expect(await again.take(10, now + 60_001)).toEqual([]);
    await reopened.close();
  });
  test("an event dropped for WEBHOOK_MAX_PENDING while its retry was under way is not counted off twice: later retries still go", async () => {
    using dir = tempDir();
    const now = Date.now();
    const store = new SqliteStore(join(dir.path, "chat.sqlite"), 1000);
    const outbox = store.openOutbox({ types: new Set(WEBHOOK_EVENTS), maxPending: 2 });
    const e = (i: number) => ({ ...event, ts: now, id: `msg_${i}` });
    await outbox.add([e(1)]);
    await outbox.retry((await outbox.take(1, now))[0]!, now + 1);
    const retried = (await outbox.take(1, now + 2))[0]!;
    expect([retried.id, retried.attempts]).toEqual(["msg_1", 1]);
    // Two more: past WEBHOOK_MAX_PENDING, the oldest (the one being retried) goes; then it is done.
    await outbox.add([e(2), e(3)]);
    await outbox.done([retried]);
    const [second] = await outbox.take(2, now + 2);
    await outbox.retry(second!, now + 10);
    expect((await outbox.take(10, now + 11)).map((t) => [t.id, t.attempts])).toEqual([["msg_2", 1]]);
    await store.close();
  });
});

describe("docs/bot.md: the /roll bot", () => {
  test("the page holds examples/roll-bot.ts as it is", async () => {
    const [page, code] = await Promise.all([Bun.file(join(import.meta.dir, "../docs/bot.md")).text(), Bun.file(join(import.meta.dir, "../examples/roll-bot.ts")).text()]);
    expect(page).toContain("```ts\n" + code + "```");
  });

  test("it verifies the server's webhooks and answers /roll over the HTTP API, as a bot", async () => {
    const adminToken = "admin-token-for-the-roll-bot-test";
    const botPort = freePort();
    await using server = await startOne({ adminToken, webhookUrl: `http://127.0.0.1:${botPort}/`, webhookSecret: TEST_WEBHOOK_SECRET, webhookEvents: ["message.created"] });
    const made = await server.http("/api/bots", { method: "POST", headers: { authorization: `Bearer ${adminToken}`, "content-type": "application/json" }, body: JSON.stringify({ name: "dice" }) });
    expect(made.status).toBe(201);
    const { token } = (await made.json()) as { token: string };
    const bot = Bun.spawn([process.execPath, join(import.meta.dir, "../examples/roll-bot.ts")], {
      env: { ...process.env, WEBHOOK_SECRET: TEST_WEBHOOK_SECRET, BOT_TOKEN: token, CHAT_URL: server.url.href, PORT: String(botPort) },
      stdout: "pipe",
      stderr: "inherit",
    });
    await using _bot = { [Symbol.asyncDispose]: async () => void (bot.kill("SIGKILL"), await bot.exited) };
    const decoder = new TextDecoder();
    for await (const chunk of bot.stdout) if (decoder.decode(chunk).includes("listening")) break;
    const ann = await user(server, "ann", "r");
    await say(ann, "r", "hello");
    const asked = await say(ann, "r", "/roll 20");
    const answer = (await ann.until((f) => f.type === "message" && f.user.kind === "bot")).at(-1)!;
    expect(answer).toMatchObject({ room: "r", id: expect.stringMatching(/^msg_/), replyTo: asked.seq, user: { name: "dice", kind: "bot" } });
    expect(answer.text).toMatch(/^ann rolls ([1-9]|1\d|20) \(d20\)$/);
    // Only /roll is answered, once, and not the bot's own message: once the bot has answered every
    // webhook (hello, /roll, its own, bye), the room holds no other message of its.
    await say(ann, "r", "bye");
    await countedDeliveries(server, 4);
    await ann.sync();
    expect(ann.frames.filter((f) => f.type === "message" && f.user.kind === "bot")).toEqual([answer]);
    ann.close();
  });
});
