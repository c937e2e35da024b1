/**
 * Rooms with owners (§11.2), on both engines: the first joiner owns a new room, ROOM_CREATION,
 * roles and their hand-over, settings stored as events in the room's sequence, private rooms,
 * their lists and invites, and what survives a restart.
 */
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { SignJWT } from "jose";
import { SqliteStore, type ServerOptions } from "../server.ts";
import { MAX_LIVE_INVITES_PER_ROOM } from "../src/authority.ts";
import { Client, LineClient, ENGINES, engineServers, startServer, tempDir, user, type Frame, type TestServer } from "./helpers.ts";

const SECRET = "a-test-secret-that-is-long-enough-1234";
const ADMIN_TOKEN = "admin-token-for-the-tests-0123456789";

const memberToken = (sub: string, claims: Record<string, unknown> = {}) =>
  new SignJWT({ sub, ...claims }).setProtectedHeader({ alg: "HS256" }).setExpirationTime("1h").sign(new TextEncoder().encode(SECRET));

/** Sends a frame and returns the next frame that is not a room event: its answer. */
async function ask(c: Client, frame: object): Promise<Frame> {
  c.send(frame);
  const seen = await c.until((f) => ["ok", "error", "invite", "joined", "history", "welcome", "left"].includes(f.type));
  return seen.at(-1)!;
}

for (const engine of ENGINES) {
  describe(engine, () => {
  /** A server on this engine; with Redis, in a database of its own. */
  const { startServer: start } = engineServers(engine);

  describe(`${engine}: owners, roles and settings`, () => {
    test("the first joiner of a new room owns it; joined says role and settings; members carry their roles", async () => {
      const server = await start();
      try {
        const olga = await Client.connect(server.wsUrl);
        const o = await olga.hello("olga");
        const first = await olga.join("garden");
        expect(first).toMatchObject({ role: "owner", settings: { topic: "", private: false, readOnly: false, slowModeSeconds: 0 } });
        expect(first.members).toEqual([{ ...o.user, role: "owner" }]);
        const max = await user(server, "max");
        const second = await max.join("garden");
        expect(second.role).toBe("member");
        expect(second.members).toEqual([{ ...o.user, role: "owner" }, expect.objectContaining({ name: "max" })]);
        expect(second.members[1]).not.toHaveProperty("role");
        for (const c of [olga, max]) c.close();
      } finally {
        await server.stop();
      }
    });

    // About a SQLite file written before owners: once, with the SQLite suite.
    test.if(engine === "sqlite")("a room that holds history but has no owner (from before owners) gets none: its first joiner is a member", async () => {
      const dir = tempDir();
      const databasePath = join(dir.path, "old.sqlite");
      const old = new SqliteStore(databasePath, 1000);
      await old.append([{ room: "legacy", user: { id: "old-user", name: "elder" }, id: "m1", text: "from v1.1", ts: Date.now() }]);
      await old.close();
      const server = await startServer({ databasePath });
      try {
        const first = await user(server, "newcomer");
        expect((await first.join("legacy")).role).toBe("member");
        first.close();
      } finally {
        await server.stop();
        dir.cleanup();
      }
    });

    test("settings: the topic by a moderator, the rest by the owner; a settings event in the sequence that history and since carry", async () => {
      const server = await start({ tcpPort: 0 });
      try {
        const owner = await Client.connect(server.wsUrl);
        const ow = await owner.hello("olga");
        await owner.join("plaza");
        const mod = await user(server, "mod", "plaza");
        const plain = await user(server, "plain", "plaza");
        const tcp = await LineClient.connect(server.chat.tcpPort!);
        await tcp.readUntil("name: ");
        tcp.write("telnet\n/join plaza\n");
        await tcp.readUntil("* now in plaza");
        await owner.until((f) => f.type === "presence" && f.user.name === "telnet");
        // A plain member may change nothing.
        expect(await ask(plain, { type: "room_settings", room: "plaza", topic: "mine now", ref: "p" })).toMatchObject({ type: "error", code: "forbidden", ref: "p" });
        // The owner makes mod a moderator: everyone in the room hears it.
        expect(await ask(owner, { type: "role", room: "plaza", user: mod.frames[0]!.user.id, role: "moderator", ref: "r" })).toEqual({ type: "ok", for: "role", ref: "r" });
        const modUser = mod.frames[0]!.user;
        expect(await plain.until((f) => f.type === "moderation")).toContainEqual({
          type: "moderation", room: "plaza", action: "role", user: modUser, by: ow.user, role: "moderator",
        });
        expect(await tcp.readUntil("of plaza (by olga)")).toContain("* mod is now a moderator of plaza (by olga)");
        // The moderator sets the topic, but not the rest.
        expect(await ask(mod, { type: "room_settings", room: "plaza", readOnly: true })).toMatchObject({ code: "forbidden" });
        const topicOk = await ask(mod, { type: "room_settings", room: "plaza", topic: "  launch day  ", ref: "t" });
        expect(topicOk).toEqual({ type: "ok", for: "room_settings", ref: "t" });
        const event = mod.frames.findLast((f) => f.type === "settings")!;
        expect(event).toEqual({
          type: "settings", room: "plaza", seq: expect.any(Number), topic: "launch day", private: false, readOnly: false, slowModeSeconds: 0,
          by: { ...modUser }, ts: expect.any(Number),
        });
        expect(await plain.until((f) => f.type === "settings")).toContainEqual(event);
        expect(await tcp.readUntil("(by mod)")).toContain('* plaza: topic is now "launch day" (by mod)');
        // The owner sets slow mode; a message after it has the next seq.
        expect(await ask(owner, { type: "room_settings", room: "plaza", slowModeSeconds: 30 })).toMatchObject({ type: "ok" });
        const slow = owner.frames.findLast((f) => f.type === "settings")!;
        expect(slow).toMatchObject({ seq: event.seq + 1, topic: "launch day", slowModeSeconds: 30 });
        // Joined, history and since carry the events in their place.
        const late = await user(server, "late");
        const joined = await late.join("plaza");
        expect(joined.settings).toEqual({ topic: "launch day", private: false, readOnly: false, slowModeSeconds: 30 });
        expect(joined.messages).toEqual([event, slow]);
        const resumed = await late.join("plaza", event.seq - 1);
        expect(resumed.messages).toEqual([event, slow]);
        late.send({ type: "history", room: "plaza", ref: "h" });
        expect((await late.expect("history")).messages).toEqual([event, slow]);
        expect((await (await server.http("/api/rooms/plaza/messages")).json()).messages).toEqual([event, slow]);
        // Bad values change nothing.
        expect(await ask(owner, { type: "room_settings", room: "plaza", topic: "x".repeat(201) })).toMatchObject({ code: "text_invalid" });
        expect(await ask(owner, { type: "room_settings", room: "plaza", topic: "a\u0007b" })).toMatchObject({ code: "text_invalid" });
        expect(await ask(owner, { type: "room_settings", room: "plaza", slowModeSeconds: 3601 })).toMatchObject({ code: "bad_request" });
        expect(await ask(owner, { type: "room_settings", room: "plaza" })).toMatchObject({ code: "bad_request" });
        expect(await ask(owner, { type: "room_settings", room: "Plaza!", topic: "x" })).toMatchObject({ code: "room_invalid" });
        expect((await late.join("plaza")).settings.topic).toBe("launch day");
        for (const c of [owner, mod, plain, late]) c.close();
        tcp.end();
      } finally {
        await server.stop();
      }
    });

    test("two room_settings at once (the owner makes the room private, a moderator sets the topic): neither undoes the other", async () => {
      const server = await start();
      try {
        const owner = await user(server, "olga", "den");
        const mod = await user(server, "mod", "den");
        expect(await ask(owner, { type: "role", room: "den", user: mod.frames[0]!.user.id, role: "moderator" })).toMatchObject({ type: "ok" });
        await mod.sync();
        // Both leave before either is stored: each was read from the same settings.
        owner.send({ type: "room_settings", room: "den", private: true, ref: "p" });
        mod.send({ type: "room_settings", room: "den", topic: "hello", ref: "t" });
        await owner.until((f) => f.type === "ok" && f.ref === "p");
        await mod.until((f) => f.type === "ok" && f.ref === "t");
        await owner.sync();
        const both = { topic: "hello", private: true, readOnly: false, slowModeSeconds: 0 };
        // The later event (they come in seq order) says what the room holds after both; so does the room.
        const events = owner.frames.filter((f) => f.type === "settings");
        expect(events).toHaveLength(2);
        expect(events[1]).toMatchObject(both);
        expect((await ask(owner, { type: "join", room: "den" })).settings).toEqual(both);
        const late = await user(server, "late");
        expect(await ask(late, { type: "join", room: "den" })).toMatchObject({ type: "error", code: "forbidden" });
        for (const c of [owner, mod, late]) c.close();
      } finally {
        await server.stop();
      }
    });

    test("role: the owner hands the room over (it becomes a moderator); unknown users are not_found; nobody acts on itself or above itself", async () => {
      const server = await start();
      try {
        const owner = await Client.connect(server.wsUrl);
        const ow = await owner.hello("founder");
        await owner.join("club");
        const heir = await user(server, "heir", "club");
        const other = await user(server, "other", "club");
        const heirId = heir.frames[0]!.user.id;
        expect(await ask(owner, { type: "role", room: "club", user: "nobody-here", role: "moderator" })).toMatchObject({ code: "not_found" });
        expect(await ask(owner, { type: "role", room: "club", user: ow.user.id, role: "member" })).toMatchObject({ code: "forbidden" });
        expect(await ask(other, { type: "role", room: "club", user: heirId, role: "moderator" })).toMatchObject({ code: "forbidden" });
        expect(await ask(owner, { type: "role", room: "club", user: heirId, role: "owner" })).toMatchObject({ type: "ok" });
        const again = await user(server, "again");
        const joined = await again.join("club");
        expect(joined.members).toEqual([
          { ...ow.user, role: "moderator" },
          expect.objectContaining({ name: "heir", role: "owner" }),
          expect.objectContaining({ name: "other" }),
          expect.objectContaining({ name: "again" }),
        ]);
        // The old owner, now a moderator, may not act on the owner.
        expect(await ask(owner, { type: "role", room: "club", user: heirId, role: "member" })).toMatchObject({ code: "forbidden" });
        for (const c of [owner, heir, other, again]) c.close();
      } finally {
        await server.stop();
      }
    });

    test("ROOM_CREATION members: guests join only rooms that exist; admins: only admins start rooms; a refused start spends none of the address's", async () => {
      const server = await start({ roomCreation: "members", authJwtSecret: SECRET, guestAccess: true, roomStartsPerHourPerIp: 1 });
      try {
        const guest = await user(server, "guest");
        expect(await ask(guest, { type: "join", room: "newroom" })).toMatchObject({ type: "error", code: "forbidden" });
        expect(await ask(guest, { type: "join", room: "other" })).toMatchObject({ type: "error", code: "forbidden" });
        const member = await Client.connect(server.wsUrl);
        member.send({ type: "hello", token: await memberToken("m1") });
        await member.expect("welcome");
        expect((await member.join("newroom")).role).toBe("owner");
        expect((await guest.join("newroom")).role).toBe("member");
        for (const c of [guest, member]) c.close();
      } finally {
        await server.stop();
      }
      const strict = await start({ roomCreation: "admins", adminToken: ADMIN_TOKEN });
      try {
        const guest = await user(strict, "guest");
        expect(await ask(guest, { type: "join", room: "x" })).toMatchObject({ code: "forbidden" });
        const ops = await Client.connect(strict.wsUrl);
        ops.send({ type: "hello", name: "ops", adminToken: ADMIN_TOKEN });
        await ops.expect("welcome");
        expect((await ops.join("x")).role).toBe("owner");
        expect((await guest.join("x")).role).toBe("member");
        for (const c of [guest, ops]) c.close();
      } finally {
        await strict.stop();
      }
    });
  });

  describe(`${engine}: private rooms and invites`, () => {
    test("making a room private lists who is in it; others get forbidden, over WebSocket and HTTP; admins see it", async () => {
      const server = await start({ adminToken: ADMIN_TOKEN, presenceGraceMs: 0 });
      try {
        const owner = await user(server, "keeper", "vault");
        const inside = await user(server, "inside", "vault");
        await owner.expect("presence");
        await owner.say("vault", "secret plans");
        expect(await ask(owner, { type: "room_settings", room: "vault", private: true })).toMatchObject({ type: "ok" });
        const outsider = await user(server, "outsider");
        expect(await ask(outsider, { type: "join", room: "vault" })).toMatchObject({ code: "forbidden" });
        expect(await ask(outsider, { type: "history", room: "vault" })).toMatchObject({ code: "forbidden" });
        expect((await server.http("/api/rooms/vault/messages")).status).toBe(404);
        const admin = { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } };
        expect((await server.http("/api/rooms/vault/messages", admin)).status).toBe(200);
        const listed = async (init?: RequestInit) => ((await (await server.http("/api/rooms", init)).json()).rooms as { room: string }[]).map((r) => r.room);
        expect(await listed()).not.toContain("vault");
        expect(await listed(admin)).toContain("vault");
        const recent = async (init?: RequestInit) => ((await (await server.http("/api/rooms?recent=1", init)).json()).rooms as { room: string }[]).map((r) => r.room);
        expect(await recent()).not.toContain("vault");
        expect(await recent(admin)).toContain("vault");
        // Someone who was inside when it turned private is on its list: it comes back, resuming too.
        inside.close();
        await server.logLine((l) => l.event === "close" && l.user === inside.frames[0]!.user.id);
        const back = await Client.connect(server.wsUrl);
        await back.hello("inside", inside.frames[0]!.session);
        expect((await back.join("vault", 0)).messages.map((m: Frame) => m.type)).toEqual(["message", "settings"]);
        for (const c of [owner, outsider, back]) c.close();
      } finally {
        await server.stop();
      }
    });

    test("invites: a moderator's code lets its holder in and on the list; used up, expired or for another room is invite_invalid", async () => {
      let clock = Date.now();
      const server = await start({ now: () => clock });
      try {
        const owner = await user(server, "host", "party");
        await user(server, "host2", "other").then((c) => c.close());
        expect(await ask(owner, { type: "room_settings", room: "party", private: true })).toMatchObject({ type: "ok" });
        const guest = await user(server, "guest");
        expect(await ask(guest, { type: "invite", room: "party" })).toMatchObject({ code: "forbidden" });
        const invite = await ask(owner, { type: "invite", room: "party", maxUses: 1, ttlSeconds: 60, ref: "i" });
        expect(invite).toEqual({ type: "invite", room: "party", code: expect.stringMatching(/^[A-Za-z0-9_-]{32,}$/), expiresAt: clock + 60_000, maxUses: 1, ref: "i" });
        // For another room it is nothing.
        const wrongRoom = await ask(guest, { type: "join", room: "other", invite: invite.code });
        expect(wrongRoom.type).toBe("joined"); // a public room needs no invite
        const privateOther = await user(server, "owner2");
        await privateOther.join("hideout");
        await ask(privateOther, { type: "room_settings", room: "hideout", private: true });
        expect(await ask(guest, { type: "join", room: "hideout", invite: invite.code })).toMatchObject({ code: "invite_invalid" });
        // Used once: the guest is in, and on the list from now on.
        expect((await ask(guest, { type: "join", room: "party", invite: invite.code })).type).toBe("joined");
        guest.send({ type: "leave", room: "party" });
        await guest.until((f) => f.type === "left");
        expect((await ask(guest, { type: "join", room: "party" })).type).toBe("joined");
        // Used up.
        const third = await user(server, "third");
        expect(await ask(third, { type: "join", room: "party", invite: invite.code })).toMatchObject({ code: "invite_invalid" });
        // Expired.
        const later = await ask(owner, { type: "invite", room: "party", ttlSeconds: 60 });
        clock += 61_000;
        expect(await ask(third, { type: "join", room: "party", invite: later.code })).toMatchObject({ code: "invite_invalid" });
        expect(await ask(third, { type: "join", room: "party", invite: "made-up-code" })).toMatchObject({ code: "invite_invalid" });
        for (const c of [owner, guest, privateOther, third]) c.close();
      } finally {
        await server.stop();
      }
    });

    test("a room holds at most MAX_LIVE_INVITES_PER_ROOM live invites: one more is forbidden until one is used up or expires", async () => {
      let clock = Date.now();
      await using server = await start({ now: () => clock, rateLimitBurst: 1000, rateLimitPerSecond: 1000 });
      const owner = await user(server, "host", "party");
      expect(await ask(owner, { type: "room_settings", room: "party", private: true })).toMatchObject({ type: "ok" });
      // One for a single use that lasts; the rest, for a year or a minute.
      const once = await ask(owner, { type: "invite", room: "party", maxUses: 1, ttlSeconds: 3600 });
      for (let i = 1; i < MAX_LIVE_INVITES_PER_ROOM; i++) owner.send({ type: "invite", room: "party", ttlSeconds: i === 1 ? 31_536_000 : 60, ref: `i${i}` });
      const made = await owner.until((f) => f.ref === `i${MAX_LIVE_INVITES_PER_ROOM - 1}`);
      expect(made.filter((f) => f.type === "invite").length).toBe(MAX_LIVE_INVITES_PER_ROOM - 1);
      const refused = await ask(owner, { type: "invite", room: "party", ttlSeconds: 1, ref: "over" });
      expect(refused).toMatchObject({ type: "error", code: "forbidden", ref: "over" });
      expect(refused.message).toContain(String(MAX_LIVE_INVITES_PER_ROOM));
      // Its single use spent, the first counts no more: one more may be made, and no other.
      const guest = await user(server, "guest");
      expect(await ask(guest, { type: "join", room: "party", invite: once.code })).toMatchObject({ type: "joined" });
      expect(await ask(owner, { type: "invite", room: "party" })).toMatchObject({ type: "invite" });
      expect(await ask(owner, { type: "invite", room: "party" })).toMatchObject({ code: "forbidden" });
      // The minute's codes expired: room for them again; another room's invites are its own.
      clock += 61_000;
      expect(await ask(owner, { type: "invite", room: "party" })).toMatchObject({ type: "invite" });
      await owner.join("other");
      expect(await ask(owner, { type: "invite", room: "other" })).toMatchObject({ type: "invite" });
      for (const c of [owner, guest]) c.close();
    });

    test("a member's token rooms claim lets it in (and lists it); an admin enters any private room", async () => {
      const server = await start({ authJwtSecret: SECRET, guestAccess: true, adminToken: ADMIN_TOKEN });
      try {
        const owner = await user(server, "boss", "board");
        await ask(owner, { type: "room_settings", room: "board", private: true });
        const member = await Client.connect(server.wsUrl);
        member.send({ type: "hello", token: await memberToken("cfo", { rooms: ["board"] }) });
        await member.expect("welcome");
        expect((await member.join("board")).type).toBe("joined");
        const ops = await Client.connect(server.wsUrl);
        ops.send({ type: "hello", name: "ops", adminToken: ADMIN_TOKEN });
        await ops.expect("welcome");
        expect((await ops.join("board")).type).toBe("joined");
        for (const c of [owner, member, ops]) c.close();
      } finally {
        await server.stop();
      }
    });
  });
  });
}

describe("the TCP door in rooms with owners (§11.8)", () => {
  test("/topic shows the topic and sets it for moderators; a private room's /join is forbidden; /rooms hides it; /help says members sign in elsewhere", async () => {
    const server = await startServer({ tcpPort: 0 });
    try {
      const owner = await user(server, "olga");
      await owner.join("den");
      const tcp = await LineClient.connect(server.chat.tcpPort!);
      await tcp.readUntil("name: ");
      tcp.write("typist\n/join den\n");
      await tcp.readUntil("* now in den (2 here): what you type goes to den, no longer to general\n");
      tcp.write("/topic\n");
      expect(await tcp.line()).toBe("* den has no topic");
      tcp.write("/topic my topic\n");
      expect(await tcp.line()).toMatch(/^! forbidden: /);
      await ask(owner, { type: "role", room: "den", user: (await owner.until((f) => f.type === "presence")).at(-1)!.user.id, role: "moderator" });
      await tcp.readUntil("(by olga)\n");
      tcp.write("/topic our topic\n");
      expect(await tcp.readUntil("(by typist)\n")).toContain('* den: topic is now "our topic" (by typist)');
      tcp.write("/topic\n");
      expect(await tcp.line()).toBe('* den: topic is "our topic"');
      await owner.until((f) => f.type === "settings");
      await owner.join("secret");
      await ask(owner, { type: "room_settings", room: "secret", private: true });
      tcp.write("/join secret\n");
      expect(await tcp.line()).toMatch(/^! forbidden: secret is private/);
      tcp.write("/rooms\n");
      expect(await tcp.line()).toBe("* rooms: den (2), general (1)");
      tcp.write("/help\n");
      expect(await tcp.readUntil("said in the current room\n")).toContain("members of a site sign in on its web page");
      owner.close();
      tcp.end();
    } finally {
      await server.stop();
    }
  });
});

describe("what survives a restart (SQLite file)", () => {
  test("owners, moderators, settings, lists and reserved names come back", async () => {
    const dir = tempDir();
    const databasePath = join(dir.path, "chat.sqlite");
    let server = await startServer({ databasePath, presenceGraceMs: 0 });
    try {
      const owner = await Client.connect(server.wsUrl);
      const ow = await owner.hello("stays");
      await owner.join("lasting");
      const mod = await user(server, "modest", "lasting");
      await ask(owner, { type: "role", room: "lasting", user: mod.frames[0]!.user.id, role: "moderator" });
      await ask(owner, { type: "room_settings", room: "lasting", private: true, topic: "kept" });
      for (const c of [owner, mod]) c.close();
      await server.stop();
      server = await startServer({ databasePath });
      expect((await ask(await Client.connect(server.wsUrl), { type: "hello", name: "Stays" })).code).toBe("name_taken");
      const back = await Client.connect(server.wsUrl);
      await back.hello("stays", ow.session);
      const joined = await back.join("lasting");
      expect(joined).toMatchObject({ role: "owner", settings: { topic: "kept", private: true } });
      const outsider = await user(server, "outsider");
      expect(await ask(outsider, { type: "join", room: "lasting" })).toMatchObject({ code: "forbidden" });
      for (const c of [back, outsider]) c.close();
    } finally {
      await server.stop();
      dir.cleanup();
    }
  });
});
