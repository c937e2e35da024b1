/**
 * Engine parity ("one core, two engines"): the same Store calls against a SqliteStore on a temp
 * file and a RedisStore on a real redis-server, call by call; whatever the two answer must agree.
 */
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { SqliteStore } from "../server.ts";
import { DEFAULTS, type Config } from "../src/config.ts";
import type { NewMessage, Restriction, Store } from "../src/engine.ts";
import { DAY_MS } from "../src/engine.ts";
import { openRedis } from "../src/redis/index.ts";
import { redisForSuite, tempDir } from "./helpers.ts";

const redis = redisForSuite();

type Opened = { store: Store; close: () => Promise<void> };

/** The same Store on each engine, with `config`'s history bounds and the given clock. */
async function engines(config: Partial<Config>, now: () => number): Promise<{ sqlite: Opened; redis: Opened; db: number; dispose: () => Promise<void> }> {
  const full = { ...DEFAULTS, ...config } as Config;
  const dir = tempDir();
  const sqlite = new SqliteStore(join(dir.path, "chat.sqlite"), full.historyRetain, {
    maxRooms: full.maxRooms,
    maxAgeMs: full.historyMaxAgeDays * DAY_MS,
  });
  const db = redis.freshDb();
  const opened = await openRedis(full, redis.url(db), () => {}, now);
  const r = {
    store: opened.store as Store,
    close: async () => {
      await opened.roster.close();
      await opened.relay.close();
      await opened.store.close();
    },
  };
  const s = { store: sqlite as Store, close: () => sqlite.close() };
  return {
    sqlite: s,
    redis: r,
    db,
    dispose: async () => {
      await r.close();
      await s.close();
      dir.cleanup();
    },
  };
}

/** Runs `fn` on both stores and returns [sqlite's result, redis's result]. */
async function onBoth<T>(e: Awaited<ReturnType<typeof engines>>, fn: (store: Store) => Promise<T>): Promise<[T, T]> {
  return [await fn(e.sqlite.store), await fn(e.redis.store)];
}

const msg = (room: string, user: string, id: string, ts: number, text = id): NewMessage => ({ room, user: { id: user, name: user }, id, text, ts });

const mod = { id: "g_mod", name: "mod" };

describe("the two engines agree", () => {
  // §11.4: a mute is always timed, a ban may be; the periodic sweep (sweepSessions) drops the
  // lapsed ones, so a room's restrictions do not grow by one per user ever muted.
  test("lapsed room mutes and bans are swept on both engines; a permanent ban and a later one stay", async () => {
    const t0 = 1_700_000_000_000;
    const e = await engines({}, () => t0);
    try {
      const lapsing = (until: number, name: string): Restriction => ({ until, by: mod, name });
      await onBoth(e, async (s) => {
        await s.restrict("mute", "r", "g_ann", lapsing(t0 + 1000, "ann"));
        await s.restrict("ban", "r", "g_bob", lapsing(t0 + 2000, "bob"));
        await s.restrict("ban", "r", "g_cy", lapsing(t0 + 1000, "cy"));
        await s.restrict("ban", "r", "g_cy", { until: null, by: mod, name: "cy" });
        await s.restrict("mute", "r", "g_dee", lapsing(t0 + 1000, "dee"));
        await s.restrict("mute", "r", "g_dee", lapsing(t0 + 60_000, "dee"));
        await s.sweepSessions(t0 + 10_000);
      });
      const [sq, rd] = await onBoth(e, async (s) => {
        const auth = await s.roomAuth("r");
        return { mutes: [...auth.mutes.keys()], bans: [...auth.bans.keys()] };
      });
      expect(sq).toEqual({ mutes: ["g_dee"], bans: ["g_cy"] });
      expect(rd).toEqual(sq);
    } finally {
      await e.dispose();
    }
  });

  test("a lapsed mute an older instance wrote (before the index of lapsing ones) is swept too; a permanent ban stays", async () => {
    const t0 = 1_700_000_000_000;
    const e = await engines({}, () => t0);
    try {
      const mute: Restriction = { until: t0 + 1000, by: mod, name: "ann" };
      const ban: Restriction = { until: null, by: mod, name: "bob" };
      await e.sqlite.store.restrict("mute", "r", "g_ann", mute);
      await e.sqlite.store.restrict("ban", "r", "g_bob", ban);
      // As the Redis engine wrote them before: a plain hash entry each.
      await redis.commandIn(e.db, "HSET", "chat:room:r:mutes", "g_ann", JSON.stringify(mute));
      await redis.commandIn(e.db, "HSET", "chat:room:r:bans", "g_bob", JSON.stringify(ban));
      const [sq, rd] = await onBoth(e, async (s) => {
        await s.sweepSessions(t0 + 10_000);
        const auth = await s.roomAuth("r");
        return { mutes: [...auth.mutes.keys()], bans: [...auth.bans.keys()] };
      });
      expect(sq).toEqual({ mutes: [], bans: ["g_bob"] });
      expect(rd).toEqual(sq);
    } finally {
      await e.dispose();
    }
  });

  // §11.3/§11.4: lifting a user's server-wide ban lifts the address bans *its* bans made; an
  // address that a later ban of another user took over stays banned.
  test("unbanning one user does not lift another user's address ban on the same address", async () => {
    // Redis expires the keys by its own clock (PXAT): the test's clock is the real one.
    const t0 = Date.now();
    const e = await engines({}, () => t0);
    try {
      const [shared, own] = ["203.0.113.7", "203.0.113.8"];
      const [sq, rd] = await onBoth(e, async (s) => {
        await s.banServer("g_ann", { until: t0 + 3_600_000, by: mod }, own);
        await s.banServer("g_ann", { until: t0 + 60_000, by: mod }, shared);
        await s.banServer("g_bob", { until: t0 + 3_600_000, by: mod }, shared);
        await s.banServer("g_ann", null);
        return [(await s.serverBan(null, shared, t0 + 1000))?.until, await s.serverBan(null, own, t0 + 1000)];
      });
      expect(sq).toEqual([t0 + 3_600_000, null]);
      expect(rd).toEqual(sq);
      // Redis forgets a user's addresses with its last address ban (there is nothing left to lift).
      await e.redis.store.banServer("g_cy", { until: t0 + 3_600_000, by: mod }, own);
      await e.redis.store.banServer("g_cy", { until: t0 + 60_000, by: mod }, shared);
      const ttl = Number(await redis.commandIn(e.db, "PTTL", "chat:ban:ips:g_cy"));
      expect(ttl).toBeGreaterThan(60_000);
      expect(ttl).toBeLessThanOrEqual(3_600_000);
    } finally {
      await e.dispose();
    }
  });

  // ROOM_RECLAIM_DAYS: with MAX_ROOMS rooms holding history, the room idle longest (its newest
  // entry oldest) gives its place, however many rooms started before it and are still busy.
  test("reclaimIdle finds the idle room behind 500 older but busy rooms", async () => {
    const t0 = 1_700_000_000_000;
    const e = await engines({ maxRooms: 1_000_000 }, () => t0);
    try {
      const busy = Array.from({ length: 501 }, (_, i) => `busy${i}`);
      const [sq, rd] = await onBoth(e, async (s) => {
        await s.append(busy.map((room, i) => msg(room, "g_ann", "a", t0 + i)));
        await s.append([msg("idle", "g_bob", "b", t0 + 600)]);
        await s.append(busy.map((room) => msg(room, "g_ann", "c", t0 + 40 * DAY_MS)));
        return [await s.reclaimIdle(t0 + 30 * DAY_MS, () => false), await s.reclaimIdle(t0 + 30 * DAY_MS, () => false)];
      });
      expect(sq).toEqual(["idle", null]);
      expect(rd).toEqual(sq);
    } finally {
      await e.dispose();
    }
  });

  test("reclaimIdle on Redis data written before rooms were indexed by their newest entry finds the idle room", async () => {
    const t0 = 1_700_000_000_000;
    const e = await engines({ maxRooms: 1_000_000 }, () => t0);
    try {
      const busy = Array.from({ length: 501 }, (_, i) => `busy${i}`);
      const [sq, rd] = await onBoth(e, async (s) => {
        await s.append(busy.map((room, i) => msg(room, "g_ann", "a", t0 + i)));
        await s.append([msg("idle", "g_bob", "b", t0 + 600)]);
        await s.append(busy.map((room) => msg(room, "g_ann", "c", t0 + 40 * DAY_MS)));
        // As an older instance left it: chat:held only.
        if (s === e.redis.store) await redis.commandIn(e.db, "DEL", "chat:held:newest");
        return s.reclaimIdle(t0 + 30 * DAY_MS, () => false);
      });
      expect(sq).toBe("idle");
      expect(rd).toBe(sq);
    } finally {
      await e.dispose();
    }
  });

  test("a deletion blanks the edits of a message edited before messages listed their edits (Redis data an older instance wrote)", async () => {
    const t0 = 1_700_000_000_000;
    const e = await engines({}, () => t0);
    try {
      const edit = (id: string, target: number, text: string, ts: number) => ({ type: "edit" as const, room: "r", user: { id: "g_a", name: "g_a" }, id, ts, target, text });
      const [sq, rd] = await onBoth(e, async (s) => {
        await s.append([msg("r", "g_a", "1", t0, "REGRETTED"), msg("r", "g_a", "2", t0 + 1, "other")]);
        await s.append([edit("e1", 1, "REGRETTED-EDIT", t0 + 2), edit("e2", 2, "kept", t0 + 3)]);
        if (s === e.redis.store) {
          // As an older instance left it: the message does not list its edits.
          const [member] = (await redis.commandIn(e.db, "ZRANGEBYSCORE", "chat:room:r:log", "1", "1")) as string[];
          const at = member!.indexOf(":");
          const { edits, ...rest } = JSON.parse(member!.slice(at + 1));
          expect(edits).toEqual([3]);
          await redis.commandIn(e.db, "ZREM", "chat:room:r:log", member!);
          await redis.commandIn(e.db, "ZADD", "chat:room:r:log", "1", `1:${JSON.stringify(rest)}`);
        }
        await s.append([{ type: "delete", room: "r", user: { id: "g_a", name: "g_a" }, id: "d1", ts: t0 + 4, target: 1 }]);
        return JSON.parse(JSON.stringify(await s.page("r", { limit: 10 })));
      });
      expect(sq.messages.map((m: { seq: number; text: string }) => [m.seq, m.text])).toEqual([
        [1, ""],
        [2, "kept"],
        [3, ""],
        [4, "kept"],
        [5, undefined],
      ]);
      expect(rd).toEqual(sq);
    } finally {
      await e.dispose();
    }
  });

  test("history, trimming, dedup, edits, deletes, replies, settings read back the same", async () => {
    const t0 = 1_700_000_000_000;
    const e = await engines({ historyRetain: 7, maxRooms: 3, historyMaxAgeDays: 1 }, () => t0);
    try {
      const [sq, rd] = await onBoth(e, async (s) => {
        const out: unknown[] = [];
        const strip = (r: unknown) => JSON.parse(JSON.stringify(r));
        out.push(strip(await s.append([msg("r", "g_a", "1", t0), msg("r", "g_a", "1", t0 + 1), msg("r", "g_b", "2", t0 + 2, "hi / \u00e9 \u2028 \"q\"")])));
        out.push(strip(await s.append([{ ...msg("r", "g_b", "3", t0 + 3), replyTo: 1 }])));
        out.push(strip(await s.append([{ type: "edit", room: "r", user: { id: "g_a", name: "g_a" }, id: "e1", ts: t0 + 4, target: 1, text: "edited" }])));
        out.push(strip(await s.append([{ type: "edit", room: "r", user: { id: "g_a", name: "g_a" }, id: "e2", ts: t0 + 5, target: 1, text: "edited2" }])));
        out.push(strip(await s.append([{ type: "delete", room: "r", user: { id: "g_m", name: "g_m", kind: "member" }, id: "d1", ts: t0 + 6, target: 1 }])));
        out.push(strip(await s.append([{ type: "delete", room: "r", user: { id: "g_m", name: "g_m" }, id: "d2", ts: t0 + 7, target: 1 }])));
        out.push(strip(await s.append([{ type: "edit", room: "r", user: { id: "g_a", name: "g_a" }, id: "e3", ts: t0 + 8, target: 3, text: "x" }])));
        out.push(strip(await s.append([{ type: "settings", room: "r", user: { id: "g_o", name: "g_o" }, id: "s1", ts: t0 + 9, settings: { topic: "T", slowModeSeconds: 5 } }])));
        out.push(strip(await s.append([{ type: "settings", room: "r", user: { id: "g_o", name: "g_o" }, id: "s2", ts: t0 + 10, settings: { private: true } }])));
        out.push(strip(await s.page("r", { limit: 10 })));
        out.push(strip(await s.page("r", { after: 0, limit: 2 })));
        out.push(strip(await s.page("r", { before: 7, limit: 2 })));
        out.push(strip({ ...(await s.roomInfo("r")), epoch: null }));
        out.push(strip(await s.original("r", "g_a", "1")));
        out.push(strip(await s.original("r", "g_b", "2")));
        out.push(strip(await s.original("r", "g_b", "3")));
        out.push(strip(await s.roomAuth("r")));
        out.push([...(await s.privateRooms())]);
        // other rooms, MAX_ROOMS
        out.push(strip(await s.append([msg("r2", "g_a", "x", t0 + 11), msg("r3", "g_a", "x", t0 + 12), msg("r4", "g_a", "x", t0 + 13)])));
        // age
        out.push(strip(await s.append([msg("r2", "g_a", "y", t0 + 2 * DAY_MS)])));
        out.push(strip({ ...(await s.roomInfo("r2")), epoch: null }));
        out.push(await s.sweepHistory(t0 + 2 * DAY_MS));
        out.push(strip(await s.append([msg("r4", "g_a", "x", t0 + 2 * DAY_MS)])));
        out.push(strip({ ...(await s.roomInfo("r")), epoch: null }));
        out.push(strip(await s.recentRooms(10)));
        out.push(strip(await s.original("r2", "g_a", "x")));
        return out;
      });
      const differ = sq.flatMap((v, i) => (Bun.deepEquals(v, rd[i]) ? [] : [{ i, sqlite: v, redis: rd[i] }]));
      expect(differ).toEqual([]);
    } finally {
      await e.dispose();
    }
  });

  test("sessions, reservations, invites, roles, lists, bots, audit read back the same", async () => {
    const t0 = Date.now();
    const e = await engines({ historyRetain: 3 }, () => t0);
    try {
      const [sq, rd] = await onBoth(e, async (s) => {
        const out: unknown[] = [];
        const strip = (r: unknown) => JSON.parse(JSON.stringify(r, (_k, v) => (v instanceof Map ? Object.fromEntries(v) : v instanceof Set ? [...v] : v)));
        const guest = (name: string, keys: string[], exp = t0 + 60_000) => ({ userId: "g_" + name, expiresAt: exp, kind: "guest" as const, name, keys, admin: false, rooms: [] as string[] });
        await s.saveSession("h1", guest("ann", ["ann"]));
        out.push(strip(await s.findSession("h1", t0)));
        out.push(await s.nameReservedBy(["ann"], t0));
        await s.saveSession("h1", guest("ann", ["anna", "ann2"]));
        out.push(await s.nameReservedBy(["ann"], t0));
        out.push(await s.nameReservedBy(["x", "ann2"], t0));
        await s.saveSession("h2", guest("bob", ["bob"], t0 + 50));
        out.push(strip(await s.findSession("h2", t0 + 100)));
        await s.revokeSession("h1");
        out.push(await s.nameReservedBy(["anna"], t0));
        out.push(strip(await s.findSession("h1", t0)));
        await s.saveSession("h3", { userId: "m_x", expiresAt: t0 + 60_000, kind: "member", name: "X", keys: [], admin: true, rooms: ["p1", "p2"] });
        out.push(strip(await s.findSession("h3", t0)));
        // roles
        out.push(await s.claimOwner("r", { id: "g_o", name: "o" }));
        out.push(await s.claimOwner("r", { id: "g_p", name: "p" }));
        await s.setRole("r", { id: "g_m", name: "m" }, "moderator");
        await s.setRole("r", { id: "g_m", name: "m" }, "owner");
        out.push(strip((await s.roomAuth("r")).roles));
        await s.setRole("r", { id: "g_m", name: "m" }, "member");
        out.push(strip((await s.roomAuth("r")).roles));
        out.push(await s.claimOwner("r", { id: "g_p", name: "p" }));
        out.push(strip((await s.roomAuth("r")).roles));
        // lists and invites
        await s.addListed("r", ["a", "b"]);
        await s.removeListed("r", "a");
        out.push([await s.isListed("r", "a"), await s.isListed("r", "b")]);
        await s.createInvite("c1", "r", t0 + 1000, 2, t0, 10);
        out.push([await s.useInvite("c1", "r", t0), await s.useInvite("c1", "x", t0), await s.useInvite("c1", "r", t0), await s.useInvite("c1", "r", t0)]);
        await s.createInvite("c2", "r", t0 + 1000, null, t0, 10);
        out.push([await s.useInvite("c2", "r", t0), await s.useInvite("c2", "r", t0 + 1000)]);
        // At most `max` live invites a room: c1 is used up and counts no more, expired ones neither.
        const bounded = [];
        for (const c of ["c3", "c4", "c5"]) bounded.push(await s.createInvite(c, "r", t0 + 1000, null, t0, 3));
        bounded.push(await s.createInvite("c6", "r", t0 + 2000, null, t0 + 1000, 3), await s.createInvite("c7", "r2", t0 + 1000, 1, t0, 1));
        bounded.push(await s.createInvite("c8", "r2", t0 + 1000, 1, t0, 1), await s.useInvite("c7", "r2", t0), await s.createInvite("c8", "r2", t0 + 1000, 1, t0, 1));
        expect(bounded).toEqual([true, true, false, true, true, false, true, true]);
        out.push(bounded);
        // bots
        await s.createBot({ id: "b:1", name: "bot1", createdAt: t0, revoked: false }, "bt1");
        await s.createBot({ id: "b:2", name: "bot2", createdAt: t0 - 1, revoked: false }, "bt2");
        out.push(strip(await s.bots()));
        out.push([await s.revokeBot("b:1"), await s.revokeBot("b:9")]);
        out.push(strip([await s.botByToken("bt1"), await s.botByToken("bt2")]));
        // audit
        for (let i = 0; i < 5; i++) await s.audit({ room: "r", ts: t0 + i, action: "kick", by: mod, detail: { i } });
        await s.audit({ room: null, ts: t0, action: "ban", by: mod });
        const strip2 = (p: { entries: { id?: number }[]; complete: boolean }) => ({ ...p, entries: p.entries.map(({ id: _id, ...rest }) => rest) });
        out.push(strip(strip2(await s.auditPage("r", undefined, 2))));
        out.push(strip(strip2(await s.auditPage("r", undefined, 10))));
        // server bans
        await s.banServer("g_z", { until: null, by: mod });
        out.push(strip(await s.serverBan("g_z", "1.1.1.1", t0)));
        await s.banServer("g_z", { until: t0 + 5000, by: mod }, "1.1.1.1");
        out.push(strip(await s.serverBan(null, "1.1.1.1", t0)));
        out.push(strip(await s.serverBan("g_q", "1.1.1.1", t0)));
        await s.banServer("g_z", null);
        out.push(strip([await s.serverBan("g_z", "1.1.1.1", t0), await s.serverBan(null, "1.1.1.1", t0)]));
        return out;
      });
      const differ = sq.flatMap((v, i) => (Bun.deepEquals(v, rd[i]) ? [] : [{ i, sqlite: v, redis: rd[i] }]));
      expect(differ).toEqual([]);
    } finally {
      await e.dispose();
    }
  });

  test("the webhook outbox behaves the same", async () => {
    const t0 = Date.now();
    const e = await engines({}, () => t0);
    try {
      const [sq, rd] = await onBoth(e, async (s) => {
        const out: unknown[] = [];
        const ob = s.openOutbox({ types: new Set(["message.created", "message.edited", "message.deleted", "room.settings", "moderation"] as const), maxPending: 4 });
        const strip = (hs: { id: string; ref: string; attempts: number; type: string; data: unknown }[]) => hs.map((h) => ({ type: h.type, attempts: h.attempts, data: h.data }));
        await s.append([msg("r", "g_a", "1", t0, "secret")]);
        await s.append([{ type: "edit", room: "r", user: { id: "g_a", name: "g_a" }, id: "e1", ts: t0 + 1, target: 1, text: "secret2" }]);
        await s.append([msg("r", "g_a", "2", t0 + 2)]);
        const first = await ob.take(1, t0);
        out.push(strip(first as never));
        await s.append([{ type: "delete", room: "r", user: { id: "g_a", name: "g_a" }, id: "d1", ts: t0 + 3, target: 1 }]);
        await s.append([msg("r", "g_a", "3", t0 + 4)]);
        out.push(await ob.pending(), ob.takeDropped());
        const rest = await ob.take(10, t0);
        out.push(strip(rest as never));
        await ob.retry(rest[0]!, t0 + 100);
        await ob.done(rest.slice(1));
        out.push(await ob.pending());
        out.push(strip((await ob.take(10, t0 + 50)) as never));
        out.push(strip((await ob.take(10, t0 + 100)) as never));
        await ob.done(first);
        out.push(await ob.pending());
        return out;
      });
      const differ = sq.flatMap((v, i) => (Bun.deepEquals(v, rd[i]) ? [] : [{ i, sqlite: v, redis: rd[i] }]));
      expect(differ).toEqual([]);
    } finally {
      await e.dispose();
    }
  });
});
