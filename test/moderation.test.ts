/**
 * Moderation (§11.3–§11.5), on both engines: kick, ban, unban and mute in a room, server-wide
 * and address bans, slow mode and read-only rooms, the checks every action passes (ranks,
 * targets, bad values), the audit log, what holds across instances and restarts, and the TCP door.
 */
import { RedisClient } from "bun";
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { SignJWT } from "jose";
import { Client, ENGINES, LineClient, engineServers, heldOnce, instances, redisForSuite, sqliteWith, startServer, tcpUser, tempDir, type Frame, type TestServer } from "./helpers.ts";
import { slowModeWait, takeSlot } from "../src/engine.ts";
import { RedisRelay } from "../src/redis/relay.ts";
import { RedisStore } from "../src/redis/store.ts";

const ADMIN_TOKEN = "admin-token-for-the-tests-0123456789";
const SECRET = "a-test-secret-that-is-long-enough-1234";
const memberToken = (sub: string) =>
  new SignJWT({ sub }).setProtectedHeader({ alg: "HS256" }).setExpirationTime("1h").sign(new TextEncoder().encode(SECRET));

/** Sends a frame and returns its answer (the first ok, error or other direct answer), skipping room events. */
async function ask(c: Client, frame: object): Promise<Frame> {
  c.send(frame);
  return (await c.until((f) => ["ok", "error", "joined", "history", "welcome"].includes(f.type))).at(-1)!;
}

/** Sends a message and waits for its echo, past whatever room events come first. */
async function say(c: Client, room: string, text: string, id: string = crypto.randomUUID()): Promise<Frame> {
  c.send({ type: "send", room, id, text });
  return (await c.until((f) => f.type === "message" && f.id === id)).at(-1)!;
}

/** A welcomed guest in `rooms`, its events read up to now. */
async function guest(server: TestServer, name: string, ...rooms: string[]): Promise<Client & { id: string; session: string }> {
  const c = await Client.connect(server.wsUrl);
  const w = await c.hello(name);
  for (const room of rooms) await ask(c, { type: "join", room });
  return Object.assign(c, { id: w.user.id as string, session: w.session as string });
}

/** Another tab of the session `session`, welcomed. */
async function tab(server: TestServer, name: string, session: string): Promise<Client> {
  const c = await Client.connect(server.wsUrl);
  await c.hello(name, session);
  return c;
}

const admin = async (server: TestServer, name = "ops") => {
  const c = await Client.connect(server.wsUrl);
  c.send({ type: "hello", name, adminToken: ADMIN_TOKEN });
  const w = await c.expect("welcome");
  return Object.assign(c, { id: w.user.id as string });
};

for (const engine of ENGINES) {
  describe(engine, () => {
    const { startServer: start } = engineServers(engine);
    const startServer = (options = {}) => start({ rateLimitBurst: 1000, rateLimitPerSecond: 1000, adminToken: ADMIN_TOKEN, ...options });

    test("kick: out at once (left kicked), the room sees moderation then leave; a public room may be rejoined, a private one not", async () => {
      await using server = await startServer({ presenceGraceMs: 60_000 });
      const owner = await guest(server, "olga", "pub", "priv");
      const troll = await guest(server, "troll", "pub", "priv");
      const other = await guest(server, "other", "pub");
      await ask(owner, { type: "room_settings", room: "priv", private: true });
      await owner.sync();
      expect(await ask(owner, { type: "kick", room: "pub", user: troll.id, reason: "spam", ref: "k" })).toEqual({ type: "ok", for: "kick", ref: "k" });
      const seen = await other.until((f) => f.type === "presence" && f.event === "leave");
      expect(seen.slice(-2)).toEqual([
        { type: "moderation", room: "pub", action: "kick", user: { id: troll.id, name: "troll" }, by: { id: owner.id, name: "olga" }, reason: "spam" },
        { type: "presence", room: "pub", event: "leave", user: { id: troll.id, name: "troll" } },
      ]);
      expect(await troll.until((f) => f.type === "left")).toContainEqual({ type: "left", room: "pub", reason: "kicked" });
      // Still in its other room; may come back to the public one.
      troll.send({ type: "send", room: "priv", id: "still", text: "still here" });
      expect(await troll.until((f) => f.id === "still")).toContainEqual(expect.objectContaining({ type: "message", id: "still" }));
      expect((await ask(troll, { type: "join", room: "pub" })).type).toBe("joined");
      // From a private room, a kick takes it off the list.
      await ask(owner, { type: "kick", room: "priv", user: troll.id });
      expect(await ask(troll, { type: "join", room: "priv" })).toMatchObject({ code: "forbidden" });
      for (const c of [owner, troll, other]) c.close();
    });

    test("ranks and targets: nobody acts on itself, its equals or betters, or the owner; unknown users are not_found; bad values bad_request", async () => {
      await using server = await startServer();
      const owner = await guest(server, "olga", "r");
      const mod1 = await guest(server, "mod1", "r");
      const mod2 = await guest(server, "mod2", "r");
      const member = await guest(server, "member", "r");
      for (const m of [mod1, mod2]) await ask(owner, { type: "role", room: "r", user: m.id, role: "moderator" });
      const ops = await admin(server);
      await ask(ops, { type: "join", room: "r" });
      const cases: [Client, object, string][] = [
        [member, { type: "kick", room: "r", user: mod1.id }, "forbidden"],
        [mod1, { type: "kick", room: "r", user: mod2.id }, "forbidden"],
        [mod1, { type: "ban", room: "r", user: owner.id }, "forbidden"],
        [ops, { type: "mute", room: "r", user: owner.id, seconds: 60 }, "forbidden"],
        [mod1, { type: "kick", room: "r", user: mod1.id }, "forbidden"],
        [mod1, { type: "kick", room: "r", user: ops.id }, "forbidden"],
        [mod1, { type: "kick", room: "r", user: "nobody" }, "not_found"],
        [mod1, { type: "ban", user: member.id }, "forbidden"],
        [mod1, { type: "ban", room: "r", user: member.id, address: true }, "forbidden"],
        [mod1, { type: "mute", room: "r", user: member.id, seconds: -1 }, "bad_request"],
        [mod1, { type: "mute", room: "r", user: member.id, seconds: 10 ** 10 }, "bad_request"],
        [mod1, { type: "kick", room: "r", user: member.id, reason: "x".repeat(201) }, "bad_request"],
        [mod1, { type: "kick", room: "r", user: member.id, reason: "bell\u0007" }, "bad_request"],
      ];
      for (const [actor, frame, code] of cases) expect([frame, (await ask(actor, frame)).code]).toEqual([frame, code]);
      // Nothing happened to anyone: the member still sends.
      member.send({ type: "send", room: "r", id: "alive", text: "still here" });
      expect(await member.until((f) => f.id === "alive")).toContainEqual(expect.objectContaining({ id: "alive" }));
      for (const c of [owner, mod1, mod2, member, ops]) c.close();
    });

    test("ban in a room: out at once (left banned); every join, a resuming one too, is banned with until; unban lets it back; a ban ends by itself", async () => {
      let clock = Date.now();
      await using server = await startServer({ now: () => clock, presenceGraceMs: 0 });
      const owner = await guest(server, "olga", "r");
      const bad = await guest(server, "bad", "r");
      await say(owner, "r", "hello");
      expect(await ask(owner, { type: "ban", room: "r", user: bad.id, seconds: 600, reason: "rude" })).toMatchObject({ type: "ok" });
      expect(await bad.until((f) => f.type === "left")).toContainEqual({ type: "left", room: "r", reason: "banned" });
      const until = clock + 600_000;
      expect(await ask(bad, { type: "join", room: "r" })).toEqual({ type: "error", code: "banned", message: expect.any(String), until });
      expect(await ask(bad, { type: "join", room: "r", since: 0 })).toMatchObject({ code: "banned", until });
      // A public room's history is public (§4): the ban keeps the user out, not from reading it.
      expect(await ask(bad, { type: "history", room: "r" })).toMatchObject({ type: "history", messages: [{ text: "hello" }] });
      expect(await ask(owner, { type: "unban", room: "r", user: bad.id })).toMatchObject({ type: "ok" });
      expect((await ask(bad, { type: "join", room: "r" })).type).toBe("joined");
      await ask(owner, { type: "ban", room: "r", user: bad.id, seconds: 60 });
      clock += 61_000;
      expect((await ask(bad, { type: "join", room: "r" })).type).toBe("joined");
      for (const c of [owner, bad]) c.close();
    });

    test("mute: sends answer muted with until; 0 unmutes; the room hears both", async () => {
      const clock = Date.now();
      await using server = await startServer({ now: () => clock });
      const owner = await guest(server, "olga", "r");
      const loud = await guest(server, "loud", "r");
      await ask(owner, { type: "mute", room: "r", user: loud.id, seconds: 3600 });
      expect((await loud.until((f) => f.type === "moderation")).at(-1)).toMatchObject({ action: "mute", until: clock + 3_600_000 });
      loud.send({ type: "send", room: "r", id: "m1", text: "can you hear me" });
      expect(await loud.next()).toEqual({ type: "error", code: "muted", message: expect.any(String), ref: "m1", until: clock + 3_600_000 });
      await ask(owner, { type: "mute", room: "r", user: loud.id, seconds: 0 });
      expect((await loud.until((f) => f.type === "moderation")).at(-1)).toMatchObject({ action: "unmute" });
      loud.send({ type: "send", room: "r", id: "m2", text: "now?" });
      expect(await loud.next()).toMatchObject({ type: "message", id: "m2" });
      for (const c of [owner, loud]) c.close();
    });

    test("slow mode: one message per its seconds, slow_mode with retryAfterMs; read-only: only moderators send; moderators exempt", async () => {
      let clock = Date.now();
      await using server = await startServer({ now: () => clock });
      const owner = await guest(server, "olga", "r");
      const user = await guest(server, "user", "r");
      // A send before slow mode is on does not count: the first one after it is taken.
      expect((await say(user, "r", "before slow mode")).type).toBe("message");
      await ask(owner, { type: "room_settings", room: "r", slowModeSeconds: 30 });
      await user.sync();
      user.send({ type: "send", room: "r", id: "s1", text: "first" });
      expect(await user.next()).toMatchObject({ type: "message", id: "s1" });
      clock += 10_000;
      user.send({ type: "send", room: "r", id: "s2", text: "too soon" });
      expect(await user.next()).toEqual({ type: "error", code: "slow_mode", message: expect.any(String), ref: "s2", retryAfterMs: 20_000 });
      for (let i = 0; i < 3; i++) expect((await say(owner, "r", `owner ${i}`)).type).toBe("message");
      clock += 20_000;
      await user.sync();
      user.send({ type: "send", room: "r", id: "s3", text: "in time" });
      expect((await user.until((f) => f.id === "s3")).at(-1)).toMatchObject({ type: "message" });
      await ask(owner, { type: "room_settings", room: "r", readOnly: true, slowModeSeconds: 0 });
      await user.sync();
      user.send({ type: "send", room: "r", id: "s4", text: "hello?" });
      expect(await user.next()).toMatchObject({ type: "error", code: "read_only", ref: "s4" });
      for (const c of [owner, user]) c.close();
    });

    test("slow mode is measured from the last send made while it was on, with its setting now: lowered, raised, or turned off and on again", async () => {
      let clock = Date.now();
      await using server = await startServer({ now: () => clock });
      const owner = await guest(server, "olga", "r");
      const user = await guest(server, "user", "r");
      const set = async (slowModeSeconds: number) => {
        await ask(owner, { type: "room_settings", room: "r", slowModeSeconds });
        await user.until((f) => f.type === "settings" && f.slowModeSeconds === slowModeSeconds);
      };
      const send = async (id: string) => {
        user.send({ type: "send", room: "r", id, text: id });
        return (await user.until((f) => (f.type === "message" && f.id === id) || (f.type === "error" && f.ref === id))).at(-1)!;
      };
      const refused = (id: string, retryAfterMs: number) => ({ type: "error" as const, code: "slow_mode", message: expect.any(String), ref: id, retryAfterMs });
      await set(3600);
      expect(await send("one")).toMatchObject({ type: "message" });
      clock += 5_000;
      await set(10);
      expect(await send("two")).toEqual(refused("two", 5_000));
      clock += 5_000;
      expect(await send("three")).toMatchObject({ type: "message" });
      clock += 20_000;
      await set(60);
      expect(await send("four")).toEqual(refused("four", 40_000));
      // Off, a send that does not count, on again: "three" (20 s ago) still counts, "five" does not.
      await set(0);
      expect(await send("five")).toMatchObject({ type: "message" });
      await set(30);
      expect(await send("six")).toEqual(refused("six", 10_000));
      clock += 10_000;
      expect(await send("seven")).toMatchObject({ type: "message" });
      expect(await send("eight")).toEqual(refused("eight", 30_000));
      for (const c of [owner, user]) c.close();
    });

    test("a server-wide ban (admins): the user's connections get the event and close 4003; its hellos are refused, a member's new sessions too", async () => {
      await using server = await startServer({ authJwtSecret: SECRET, guestAccess: true });
      const ops = await admin(server);
      const member = await Client.connect(server.wsUrl);
      member.send({ type: "hello", token: await memberToken("villain") });
      await member.expect("welcome");
      await ask(member, { type: "join", room: "r" });
      const tab = await Client.connect(server.wsUrl);
      tab.send({ type: "hello", token: await memberToken("villain") });
      await tab.expect("welcome");
      expect(await ask(ops, { type: "ban", user: "u:villain", reason: "spam" })).toMatchObject({ type: "ok" });
      for (const c of [member, tab]) {
        expect(await c.until((f) => f.type === "moderation")).toContainEqual(expect.objectContaining({ type: "moderation", action: "ban", user: expect.objectContaining({ id: "u:villain" }), reason: "spam" }));
        expect(await c.closed).toEqual({ code: 4003, reason: "banned" });
      }
      const again = await Client.connect(server.wsUrl);
      again.send({ type: "hello", token: await memberToken("villain") });
      expect(await again.next()).toMatchObject({ type: "error", code: "banned" });
      expect(await again.closed).toEqual({ code: 4003, reason: "banned" });
      expect(await ask(ops, { type: "unban", user: "u:villain" })).toMatchObject({ type: "ok" });
      const back = await Client.connect(server.wsUrl);
      back.send({ type: "hello", token: await memberToken("villain") });
      expect(await back.next()).toMatchObject({ type: "welcome" });
      for (const c of [ops, back]) c.close();
    });

    test("a server-wide ban of a user only in grace ends its grace: the room hears it leave at once", async () => {
      await using server = await startServer({ presenceGraceMs: 60_000 });
      const ops = await admin(server);
      const bad = await guest(server, "bad", "r");
      const other = await guest(server, "other", "r");
      bad.close();
      await server.logLine((l) => l.event === "close" && l.user === bad.id);
      expect(await ask(ops, { type: "ban", user: bad.id })).toMatchObject({ type: "ok" });
      expect(await other.until((f) => f.type === "presence")).toEqual([{ type: "presence", room: "r", event: "leave", user: { id: bad.id, name: "bad" } }]);
      for (const c of [ops, other]) c.close();
    });

    test("an address ban closes every connection from the address and refuses its hellos until it ends", async () => {
      let clock = Date.now();
      await using server = await startServer({ now: () => clock, trustProxy: true });
      const from = (ip: string) => ({ "x-forwarded-for": ip });
      const connect = async (name: string, ip: string) => {
        const c = await Client.connect(server.wsUrl, from(ip));
        c.send({ type: "hello", name });
        return Object.assign(c, { first: await c.next() });
      };
      const ops = await admin(server);
      const bad = await connect("bad", "192.0.2.7");
      const friend = await connect("friend", "192.0.2.7");
      const bystander = await connect("bystander", "198.51.100.1");
      expect(await ask(ops, { type: "ban", user: bad.first.user.id, address: true, seconds: 60 })).toMatchObject({ type: "ok" });
      expect(await bad.closed).toEqual({ code: 4003, reason: "banned" });
      expect(await friend.closed).toEqual({ code: 4003, reason: "banned" });
      const refused = await connect("newcomer", "192.0.2.7");
      expect(refused.first).toMatchObject({ type: "error", code: "banned", until: clock + 60_000 });
      expect(await refused.closed).toEqual({ code: 4003, reason: "banned" });
      expect((await bystander.sync())).toEqual([]);
      clock += 61_000;
      expect((await connect("later", "192.0.2.7")).first.type).toBe("welcome");
      for (const c of [ops, bystander]) c.close();
    });

    test("an address ban of an IPv6 client holds for its whole /64: the next address it takes is refused, the next /64 is not", async () => {
      await using server = await startServer({ trustProxy: true });
      const connect = async (name: string, ip: string) => {
        const c = await Client.connect(server.wsUrl, { "x-forwarded-for": ip });
        c.send({ type: "hello", name });
        return Object.assign(c, { first: await c.next() });
      };
      const ops = await admin(server);
      const bad = await connect("bad", "2001:db8:1:2::1");
      // The same host under another of its addresses, connected when the ban comes.
      const twin = await connect("twin", "2001:db8:1:2:a:b:c:d");
      const neighbour = await connect("neighbour", "2001:db8:1:3::1");
      expect(await ask(ops, { type: "ban", user: bad.first.user.id, address: true, seconds: 3600 })).toMatchObject({ type: "ok" });
      expect(await bad.closed).toEqual({ code: 4003, reason: "banned" });
      expect(await twin.closed).toEqual({ code: 4003, reason: "banned" });
      // Privacy addresses change by themselves: the next one is the same client.
      const moved = await connect("bad again", "2001:DB8:1:2:0:0:0:2");
      expect(moved.first).toMatchObject({ type: "error", code: "banned" });
      expect(await moved.closed).toEqual({ code: 4003, reason: "banned" });
      expect(await neighbour.sync()).toEqual([]);
      expect((await connect("next door", "2001:db8:1:3::2")).first.type).toBe("welcome");
      for (const c of [ops, neighbour]) c.close();
    });

    test("the audit log: admins read each action and settings change, newest first, by room; others get 401", async () => {
      await using server = await startServer();
      const owner = await guest(server, "olga", "r");
      const member = await guest(server, "member", "r");
      await ask(owner, { type: "room_settings", room: "r", topic: "rules" });
      await ask(owner, { type: "mute", room: "r", user: member.id, seconds: 60 });
      await ask(owner, { type: "kick", room: "r", user: member.id, reason: "enough" });
      expect((await server.http("/api/audit")).status).toBe(401);
      expect((await server.http("/api/audit", { headers: { authorization: "Bearer wrong-token-wrong-token-wrong" } })).status).toBe(401);
      const res = await server.http("/api/audit?room=r", { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
      const body = await res.json();
      expect(body.entries.map((e: Frame) => [e.action, e.user?.name, e.reason])).toEqual([
        ["kick", "member", "enough"],
        ["mute", "member", undefined],
        ["settings", undefined, undefined],
      ]);
      // (Read before toMatchObject, which leaves its matchers in the object it checked.)
      const [newest, next] = [structuredClone(body.entries[0]), structuredClone(body.entries[1])];
      expect(body.entries[0]).toMatchObject({ room: "r", by: { id: owner.id, name: "olga" }, ts: expect.any(Number), id: expect.any(Number) });
      const older = await (await server.http(`/api/audit?room=r&before=${newest.id}&limit=1`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).json();
      expect(older).toEqual({ entries: [next], complete: false });
      for (const c of [owner, member]) c.close();
    });

    test("the TCP door: moderation and changes as * lines; /kick, /mute, /ban, /unban for moderators; a kicked TCP user leaves the room", async () => {
      await using server = await startServer({ tcpPort: 0 });
      const owner = await guest(server, "olga", "general");
      const { client: tcp } = await tcpUser(server, "terry");
      const m = await say(owner, "general", "typo hree");
      await tcp.readUntil("typo hree\n");
      await ask(owner, { type: "edit", room: "general", seq: m.seq, text: "typo here" });
      expect(await tcp.readUntil("\n")).toBe("* olga edited a message in general: typo here\n");
      await ask(owner, { type: "delete", room: "general", seq: m.seq });
      expect(await tcp.readUntil("\n")).toBe("* a message by olga was deleted in general by olga\n");
      // Terry cannot moderate; the owner can, by name.
      tcp.write("/kick olga\n");
      expect(await tcp.readUntil("\n")).toMatch(/^! forbidden: /);
      const { client: victim } = await tcpUser(server, "victim");
      await tcp.readUntil("victim joined general\n");
      const terryId = owner.frames.find((f) => f.type === "presence" && f.user.name === "terry")!.user.id;
      await ask(owner, { type: "role", room: "general", user: terryId, role: "moderator" });
      await tcp.readUntil("(by olga)\n");
      tcp.write("/mute victim 10\n");
      expect(await tcp.readUntil("\n")).toBe("* victim was muted in general by terry for 10 min\n");
      victim.write("hello?\n");
      expect(await victim.readUntil("! muted: ")).toContain("* victim was muted in general by terry for 10 min\n");
      tcp.write("/kick victim be nice\n");
      expect(await tcp.readUntil("be nice\n")).toContain("* victim was kicked from general by terry: be nice");
      expect(await victim.readUntil("no room; /join ROOM\n")).toContain("* victim was kicked from general by terry: be nice");
      expect(await tcp.readUntil("\n")).toBe("* victim left general\n");
      tcp.write("/ban victim\n");
      expect(await tcp.readUntil("\n")).toMatch(/^! not_found: /); // gone from the room: no longer there by name
      victim.write("/join general\n");
      await tcp.readUntil("victim joined general\n");
      tcp.write("/ban victim 5\n");
      expect(await tcp.readUntil("\n")).toBe("* victim was banned from general by terry for 5 min\n");
      expect(await tcp.readUntil("\n")).toBe("* victim left general\n");
      victim.write("/join general\n");
      expect(await victim.readUntil("! banned: ")).toContain("* victim was banned from general by terry for 5 min");
      tcp.write("/unban victim\n");
      expect(await tcp.readUntil("general\n")).toContain("* victim may come back to general");
      // A name with a space is given in quotes.
      const spaced = await guest(server, "big bob", "general");
      await tcp.readUntil("big bob joined general\n");
      tcp.write('/kick "big bob" spam\n');
      expect(await tcp.readUntil("\n")).toBe("* big bob was kicked from general by terry: spam\n");
      tcp.end();
      victim.end();
      owner.close();
      spaced.close();
    });
  });
}

test("slowModeWait: from the last send, with the setting now", () => {
  expect(slowModeWait(undefined, 10_000, 0)).toBe(0);
  expect(slowModeWait(1_000, 10_000, 4_000)).toBe(7_000);
  expect(slowModeWait(1_000, 2_000, 4_000)).toBe(0);
  expect(slowModeWait(1_000, 10_000, 11_000)).toBe(0);
  const record = new Map<string, number>();
  expect(takeSlot(record, "r\nu", 10_000, 1_000)).toBe(0);
  expect(takeSlot(record, "r\nu", 10_000, 4_000)).toBe(7_000);
  // A refused send does not count; the record is when the user last sent.
  expect(record).toEqual(new Map([["r\nu", 1_000]]));
});

describe("what holds across instances and restarts", () => {
  const redis = redisForSuite();

  test("slow mode answers alike on every instance, also one that read the room after it was turned off and on", async () => {
    let clock = Date.now();
    await using servers = await instances(redis, 2, { now: () => clock });
    const [a, b] = servers;
    const owner = await guest(a, "olga", "r");
    const user = await guest(a, "user", "r");
    const session = (user as unknown as { session: string }).session;
    const set = async (slowModeSeconds: number) => {
      await ask(owner, { type: "room_settings", room: "r", slowModeSeconds });
      await user.until((f) => f.type === "settings" && f.slowModeSeconds === slowModeSeconds);
    };
    const send = async (c: Client, id: string) => {
      c.send({ type: "send", room: "r", id, text: id });
      return (await c.until((f) => (f.type === "message" && f.id === id) || (f.type === "error" && f.ref === id))).at(-1)!;
    };
    await set(30);
    expect(await send(user, "one")).toMatchObject({ type: "message" });
    clock += 1_000;
    await set(0);
    await set(30);
    // The same user's tab on B, which reads the room only now.
    const tab = await Client.connect(b.wsUrl);
    await tab.hello("user", session);
    expect(await ask(tab, { type: "join", room: "r" })).toMatchObject({ type: "joined" });
    expect(await send(tab, "two")).toMatchObject({ code: "slow_mode", retryAfterMs: 29_000 });
    expect(await send(user, "three")).toMatchObject({ code: "slow_mode", retryAfterMs: 29_000 });
    for (const c of [owner, user, tab]) c.close();
  });

  test("a ban and a mute made on A hold on B; a kick on A takes the user out on B", async () => {
    await using servers = await instances(redis, 2, { adminToken: ADMIN_TOKEN });
    const [a, b] = servers;
    const owner = await guest(a, "olga", "r");
    const onB = await guest(b, "onb", "r");
    await owner.until((f) => f.type === "presence");
    await ask(owner, { type: "mute", room: "r", user: onB.id, seconds: 600 });
    onB.send({ type: "send", room: "r", id: "x", text: "hi" });
    expect((await onB.until((f) => f.type === "error")).at(-1)).toMatchObject({ code: "muted" });
    await ask(owner, { type: "kick", room: "r", user: onB.id });
    expect(await onB.until((f) => f.type === "left")).toContainEqual({ type: "left", room: "r", reason: "kicked" });
    const leave = (f: Frame) => f.type === "presence" && f.event === "leave";
    if (!owner.frames.some(leave)) await owner.until(leave);
    expect(owner.frames.find(leave)).toMatchObject({ user: { id: onB.id } });
    await ask(owner, { type: "ban", room: "r", user: onB.id });
    expect(await ask(onB, { type: "join", room: "r" })).toMatchObject({ code: "banned" });
    const ops = await admin(a);
    await ask(ops, { type: "ban", user: onB.id });
    expect(await onB.closed).toEqual({ code: 4003, reason: "banned" });
    for (const c of [owner, ops]) c.close();
  });

  test("an admin outranks everyone on every instance: an owner on B neither kicks it, changes its role nor deletes its message; an admin on B does not ban it", async () => {
    await using servers = await instances(redis, 2, { adminToken: ADMIN_TOKEN });
    const [a, b] = servers;
    const owner = await guest(b, "olga", "r");
    const ops = await admin(a);
    expect(await ask(ops, { type: "join", room: "r" })).toMatchObject({ type: "joined" });
    const posted = await say(ops, "r", "from the admin");
    await owner.until((f) => f.type === "message" && f.id === posted.id);
    const forbidden = { type: "error", code: "forbidden" };
    expect(await ask(owner, { type: "kick", room: "r", user: ops.id })).toMatchObject(forbidden);
    expect(await ask(owner, { type: "role", room: "r", user: ops.id, role: "moderator" })).toMatchObject(forbidden);
    expect(await ask(owner, { type: "delete", room: "r", seq: posted.seq })).toMatchObject(forbidden);
    const boss = await admin(b, "boss");
    expect(await ask(boss, { type: "ban", user: ops.id })).toMatchObject({ ...forbidden, message: "not over an admin" });
    for (const c of [owner, ops, boss]) c.close();
  });

  test("bans and mutes survive a restart on the same SQLite file", async () => {
    using dir = tempDir();
    const databasePath = join(dir.path, "chat.sqlite");
    let session = "";
    let id = "";
    {
      await using server = await startServer({ databasePath, adminToken: ADMIN_TOKEN });
      const owner = await guest(server, "olga", "r");
      const bad = await guest(server, "bad", "r");
      session = (bad as unknown as { session: string }).session;
      id = bad.id;
      await ask(owner, { type: "ban", room: "r", user: bad.id });
      const ops = await admin(server);
      await ask(ops, { type: "ban", user: "u:offline-troll" });
      for (const c of [owner, bad, ops]) c.close();
    }
    await using server = await startServer({ databasePath });
    const back = await Client.connect(server.wsUrl);
    expect((await back.hello("bad", session)).user.id).toBe(id);
    expect(await ask(back, { type: "join", room: "r" })).toMatchObject({ code: "banned" });
    back.close();
  });

  test("a server-wide unban lifts the user's address bans for good: after a restart its address is welcome", async () => {
    using dir = tempDir();
    const databasePath = join(dir.path, "chat.sqlite");
    const from = { "x-forwarded-for": "192.0.2.7" };
    const hello = async (server: TestServer, name: string) => {
      const c = await Client.connect(server.wsUrl, from);
      c.send({ type: "hello", name });
      return Object.assign(c, { first: await c.next() });
    };
    {
      await using server = await startServer({ databasePath, adminToken: ADMIN_TOKEN, trustProxy: true });
      const ops = await admin(server);
      const bad = await hello(server, "bad");
      expect(await ask(ops, { type: "ban", user: bad.first.user.id, address: true, seconds: 3600 })).toMatchObject({ type: "ok" });
      await bad.closed;
      expect(await ask(ops, { type: "unban", user: bad.first.user.id })).toMatchObject({ type: "ok" });
      const again = await hello(server, "again");
      expect(again.first.type).toBe("welcome");
      for (const c of [ops, again]) c.close();
    }
    await using server = await startServer({ databasePath, trustProxy: true });
    const later = await hello(server, "later");
    expect(later.first.type).toBe("welcome");
    later.close();
  });

  /** Runs `during` while every subscriber connection is cut off from Redis (as in a failover or a network blip), then lets them back in. */
  async function withoutSubscribers(server: TestServer, during: () => Promise<void>): Promise<void> {
    const redisAdmin = new RedisClient(server.chat.config.redisUrl!);
    // No new connection is let in (a subscriber stays out) until `during` is over.
    await redisAdmin.send("CONFIG", ["SET", "maxclients", "1"]);
    try {
      expect(await redisAdmin.send("CLIENT", ["KILL", "TYPE", "pubsub"])).toBe(2);
      await during();
    } finally {
      // Even when it fails: a redis-server that lets nobody in would fail every test after it.
      await redisAdmin.send("CONFIG", ["SET", "maxclients", "10000"]);
      redisAdmin.close();
    }
  }

  test("a server-wide ban made on A while B's subscriber is reconnecting still closes the user's connection on B", async () => {
    await using servers = await instances(redis, 2, { adminToken: ADMIN_TOKEN });
    const [a, b] = servers;
    const ops = await admin(a);
    const troll = await guest(b, "troll", "r");
    await withoutSubscribers(a, async () => {
      expect(await ask(ops, { type: "ban", user: troll.id, reason: "spam" })).toMatchObject({ type: "ok" });
    });
    // B reads its users' bans as its subscription comes back, before it logs so: the send below
    // reaches Redis after that read, on the same connection: the close comes before any echo.
    await b.logLine((l) => l.event === "redis_resubscribed");
    const echo = await say(troll, "r", "banned from the server, still here").catch(() => null);
    expect(echo).toBeNull();
    expect(await troll.closed).toEqual({ code: 4003, reason: "banned" });
    expect(troll.frames.find((f) => f.type === "moderation")).toMatchObject({ action: "ban", user: { id: troll.id, name: "troll" }, by: { id: ops.id }, reason: "spam" });
    ops.close();
  });

  test("a room ban (and a role on a private room) of a user online only on B, in no room, is taken on A as it is on B", async () => {
    await using servers = await instances(redis, 2, { adminToken: ADMIN_TOKEN });
    const [a, b] = servers;
    const ownerA = await guest(a, "olga", "r");
    const ownerB = await Client.connect(b.wsUrl);
    await ownerB.hello("olga", ownerA.session);
    const troll = await guest(b, "troll", "elsewhere");
    // On A the troll is in no room and not connected; on B it is connected. The same rule on both.
    expect(await ask(ownerA, { type: "ban", room: "r", user: troll.id })).toMatchObject({ type: "ok" });
    expect(await ask(ownerB, { type: "ban", room: "r", user: troll.id })).toMatchObject({ type: "ok" });
    const audit = await (await a.http("/api/audit?room=r", { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).json();
    expect(audit.entries.map((e: Frame) => [e.action, e.user])).toEqual([
      ["ban", { id: troll.id, name: "troll" }],
      ["ban", { id: troll.id, name: "troll" }],
    ]);
    expect(await ask(troll, { type: "join", room: "r" })).toMatchObject({ code: "banned" });
    // So with `role`: on a private room's list, out of the room, online only on B.
    expect(await ask(ownerA, { type: "join", room: "p" })).toMatchObject({ type: "joined" });
    expect(await ask(troll, { type: "join", room: "p" })).toMatchObject({ type: "joined" });
    expect(await ask(ownerA, { type: "room_settings", room: "p", private: true })).toMatchObject({ type: "ok" });
    troll.send({ type: "leave", room: "p" });
    await troll.until((f) => f.type === "left");
    expect(await ask(ownerA, { type: "role", room: "p", user: troll.id, role: "moderator" })).toMatchObject({ type: "ok" });
    for (const c of [ownerA, ownerB, troll]) c.close();
  });

  test("a server-wide ban made on A names its target on B by its name", async () => {
    await using servers = await instances(redis, 2, { adminToken: ADMIN_TOKEN });
    const [a, b] = servers;
    const ops = await admin(a);
    const troll = await guest(b, "troll", "r");
    expect(await ask(ops, { type: "ban", user: troll.id, reason: "spam" })).toMatchObject({ type: "ok" });
    const seen = await troll.until((f) => f.type === "moderation");
    expect(seen.at(-1)).toMatchObject({ type: "moderation", action: "ban", user: { id: troll.id, name: "troll" } });
    await troll.closed;
    const audit = await (await a.http("/api/audit", { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).json();
    expect(audit.entries.find((e: Frame) => e.action === "ban")).toMatchObject({ room: null, user: { id: troll.id, name: "troll" }, reason: "spam" });
    ops.close();
  });
});

describe("moderation on A that B hears late or not at all (Redis)", () => {
  const redis = redisForSuite();

  test("a room ban made on A while the target's join is under way on B (B not yet watching the room) keeps it out", async () => {
    await using servers = await instances(redis, 2, { adminToken: ADMIN_TOKEN });
    const [a, b] = servers;
    const owner = await guest(a, "olga", "r");
    const troll = await guest(b, "troll");
    // The troll's other tab, on A (not in the room): A knows the user.
    const other = await tab(a, "troll", troll.session);
    // Hold B's subscription to the room until the ban is committed: the window between the join's
    // rights check (read from storage: B does not watch the room) and its subscription.
    const original = RedisRelay.prototype.watch;
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    let paused!: () => void;
    const pausedAt = new Promise<void>((r) => (paused = r));
    RedisRelay.prototype.watch = async function (this: RedisRelay, room: string) {
      if (room === "r") {
        paused();
        await released;
      }
      return original.call(this, room);
    };
    try {
      troll.send({ type: "join", room: "r", ref: "j" });
      await pausedAt;
      expect(await ask(owner, { type: "ban", room: "r", user: troll.id })).toMatchObject({ type: "ok" });
      release();
      expect((await troll.until((f) => f.ref === "j")).at(-1)).toMatchObject({ type: "error", code: "banned", ref: "j" });
    } finally {
      RedisRelay.prototype.watch = original;
      for (const c of [owner, troll, other]) c.close();
    }
  });

  test("a mute made on A while B reads the room's rights (its first join there) holds on B", async () => {
    await using servers = await instances(redis, 2, { adminToken: ADMIN_TOKEN });
    const [a, b] = servers;
    const owner = await guest(a, "olga", "r");
    const troll = await guest(b, "troll");
    const other = await tab(a, "troll", troll.session);
    // A marker: a session with a tab on each instance; its signout on A closes its tab on B after
    // B has run every event A published before it.
    const marker = await guest(a, "marker");
    const markerB = await tab(b, "marker", marker.session);
    const original = RedisStore.prototype.roomAuth;
    let calls = 0;
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    let paused!: () => void;
    const pausedAt = new Promise<void>((r) => (paused = r));
    RedisStore.prototype.roomAuth = async function (this: RedisStore, room: string) {
      const auth = await original.call(this, room);
      // B's second read of r in the join: the watch's, after it subscribed.
      if (room === "r" && ++calls === 2) {
        paused();
        await released;
      }
      return auth;
    };
    try {
      troll.send({ type: "join", room: "r", ref: "j" });
      await pausedAt;
      expect(await ask(owner, { type: "mute", room: "r", user: troll.id, seconds: 600 })).toMatchObject({ type: "ok" });
      expect(await ask(marker, { type: "signout" })).toMatchObject({ type: "ok" });
      await markerB.closed;
      release();
      expect((await troll.until((f) => f.ref === "j")).at(-1)).toMatchObject({ type: "joined" });
      troll.send({ type: "send", room: "r", id: "loud", text: "muted but heard" });
      const answer = (await troll.until((f) => f.id === "loud" || f.ref === "loud")).at(-1);
      expect(answer).toMatchObject({ type: "error", code: "muted" });
    } finally {
      RedisStore.prototype.roomAuth = original;
      for (const c of [owner, troll, other, marker]) c.close();
    }
  });

  /** Runs `during` while every subscriber connection is cut off from Redis (as in a failover or a network blip), then lets them back. */
  async function withoutSubscribers(server: TestServer, during: () => Promise<void>): Promise<void> {
    const admin = new RedisClient(server.chat.config.redisUrl!);
    await admin.send("CONFIG", ["SET", "maxclients", "1"]);
    try {
      expect(await admin.send("CLIENT", ["KILL", "TYPE", "pubsub"])).toBe(2);
      await during();
    } finally {
      await admin.send("CONFIG", ["SET", "maxclients", "10000"]);
      admin.close();
    }
  }

  test("a room ban made on A while B's subscriber is reconnecting: once B has caught up, the banned user is out of the room there, and the room heard it leave", async () => {
    await using servers = await instances(redis, 2, { adminToken: ADMIN_TOKEN });
    const [a, b] = servers;
    const owner = await guest(a, "olga", "r");
    const poster = await guest(a, "poster", "r");
    const troll = await guest(b, "troll", "r");
    const witness = await guest(b, "wit", "r");
    await owner.until((f) => f.type === "presence" && f.user.name === "wit");
    await withoutSubscribers(a, async () => {
      expect(await ask(owner, { type: "ban", room: "r", user: troll.id })).toMatchObject({ type: "ok" });
      // Stored after the ban while nobody hears it: B gets it only by catching up, after the ban's rights.
      poster.send({ type: "send", room: "r", id: "during", text: "after the ban" });
      // A leave answers once the leaver's messages are stored.
      poster.send({ type: "leave", room: "r" });
      await poster.until((f) => f.type === "left");
    });
    await witness.until((f) => f.type === "message" && f.id === "during");
    troll.send({ type: "send", room: "r", id: "still", text: "banned, still talking" });
    const answer = (await troll.until((f) => f.id === "still" || f.ref === "still")).at(-1);
    expect(answer).toMatchObject({ type: "error", code: "not_joined" });
    expect(troll.frames).toContainEqual({ type: "left", room: "r", reason: "banned" });
    expect(troll.frames.some((f) => f.type === "message" && f.id === "during")).toBe(false);
    await witness.until((f) => f.type === "presence" && f.event === "leave" && f.user.id === troll.id);
    for (const c of [owner, poster, troll, witness]) c.close();
  });

  test("a kick from a private room made on A while B's subscriber is reconnecting: once B has caught up, the kicked user is out of the room there", async () => {
    await using servers = await instances(redis, 2, { adminToken: ADMIN_TOKEN });
    const [a, b] = servers;
    const owner = await guest(a, "olga", "p");
    const troll = await guest(b, "troll", "p");
    const witness = await guest(b, "wit", "p");
    await owner.until((f) => f.type === "presence" && f.user.name === "wit");
    // Private now: everyone in it is on its list.
    expect(await ask(owner, { type: "room_settings", room: "p", private: true })).toMatchObject({ type: "ok" });
    await troll.until((f) => f.type === "settings" && f.private === true);
    await withoutSubscribers(a, async () => {
      expect(await ask(owner, { type: "kick", room: "p", user: troll.id })).toMatchObject({ type: "ok" });
    });
    expect(await troll.until((f) => f.type === "left")).toContainEqual({ type: "left", room: "p", reason: "kicked" });
    troll.send({ type: "send", room: "p", id: "still", text: "kicked, still talking" });
    expect((await troll.until((f) => f.id === "still" || f.ref === "still")).at(-1)).toMatchObject({ type: "error", code: "not_joined" });
    await witness.until((f) => f.type === "presence" && f.event === "leave" && f.user.id === troll.id);
    for (const c of [owner, troll, witness]) c.close();
  });

  test("(control) a user with a tab on A and a tab on B in the room: a kick on A takes both out, the room hears one leave", async () => {
    await using servers = await instances(redis, 2, { adminToken: ADMIN_TOKEN });
    const [a, b] = servers;
    const owner = await guest(a, "olga", "r");
    const witness = await guest(b, "wit", "r");
    const t1 = await guest(a, "troll", "r");
    const t2 = await tab(b, "troll", t1.session);
    await ask(t2, { type: "join", room: "r" });
    expect(await ask(owner, { type: "kick", room: "r", user: t1.id })).toMatchObject({ type: "ok" });
    for (const t of [t1, t2]) expect(await t.until((f) => f.type === "left")).toContainEqual({ type: "left", room: "r", reason: "kicked" });
    const seen = await witness.until((f) => f.type === "presence" && f.event === "leave");
    expect(seen.filter((f) => f.type === "moderation" || f.type === "presence").map((f) => f.type + ":" + (f.action ?? f.event))).toEqual(["presence:join", "moderation:kick", "presence:leave"]);
    for (const c of [owner, witness, t1, t2]) c.close();
  });
});

describe("a kick or ban while a join waits for storage (SQLite)", () => {
  /** A server whose next history read, once `hold()` is called, waits until `release()`; `waiting` says it is waiting. */
  async function heldReads() {
    const held = heldOnce();
    const store = sqliteWith((real) => ({ roomPage: async (room, query) => (await held.pass(), real.roomPage(room, query)) }));
    const server = await startServer({ store });
    return { server, hold: held.arm, waiting: held.waiting, release: held.release };
  }

  test("banned meanwhile: the join is refused banned, and the room never hears the user come", async () => {
    const { server, hold, waiting, release } = await heldReads();
    try {
      const owner = await guest(server, "olga", "r");
      const bob = await guest(server, "bob");
      hold();
      // `since` makes the read one of its own (a join storm's page is shared).
      bob.send({ type: "join", room: "r", since: 0, ref: "j" });
      await waiting;
      expect(await ask(owner, { type: "ban", room: "r", user: bob.id, ref: "b" })).toMatchObject({ type: "ok", ref: "b" });
      release();
      expect(await bob.until((f) => f.ref === "j")).toContainEqual(expect.objectContaining({ type: "error", code: "banned", ref: "j" }));
      // A marker: had bob come in, his join would have reached the owner before it.
      await say(owner, "r", "marker");
      expect(owner.frames.filter((f) => f.type === "presence" && f.user.id === bob.id)).toEqual([]);
      for (const c of [owner, bob]) c.close();
    } finally {
      await server.stop();
    }
  });

  test("kicked from a private room meanwhile (off its list): the join is refused forbidden", async () => {
    const { server, hold, waiting, release } = await heldReads();
    try {
      const owner = await guest(server, "olga", "p");
      const bob = await guest(server, "bob", "p");
      // Private now: everyone in it is on its list, bob too; he steps out and comes back.
      expect(await ask(owner, { type: "room_settings", room: "p", private: true, ref: "s" })).toMatchObject({ type: "ok" });
      bob.send({ type: "leave", room: "p" });
      await bob.until((f) => f.type === "left" && f.room === "p");
      hold();
      bob.send({ type: "join", room: "p", since: 0, ref: "j" });
      await waiting;
      expect(await ask(owner, { type: "kick", room: "p", user: bob.id, ref: "k" })).toMatchObject({ type: "ok", ref: "k" });
      release();
      expect(await bob.until((f) => f.ref === "j")).toContainEqual(expect.objectContaining({ type: "error", code: "forbidden", ref: "j" }));
      for (const c of [owner, bob]) c.close();
    } finally {
      await server.stop();
    }
  });
});
