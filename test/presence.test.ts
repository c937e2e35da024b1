/**
 * Presence: who is in a room, the join and leave events the others see, the grace a dropped user
 * gets before it is seen to leave, and several connections of one user as one member. The pure
 * Presence (injected clock) first, then live servers; the grace suite runs on both engines.
 */
import { describe, expect, test } from "bun:test";
import { Presence } from "../src/core/presence.ts";
import { Client, ENGINES, engineServers, startServer, user } from "./helpers.ts";

describe("Presence (injected clock)", () => {
  const alice = { id: "a", name: "alice" };
  const bob = { id: "b", name: "bob" };

  test("join reports new, again and returned", () => {
    const p = new Presence<string>(1000);
    expect(p.join("general", alice, "c1")).toBe("new");
    expect(p.join("general", alice, "c1")).toBe("again");
    expect(p.join("general", bob, "c2")).toBe("new");
    expect(p.members("general")).toEqual([alice, bob]);
    expect(p.count("general")).toBe(2);
    expect(p.active()).toEqual([{ room: "general", members: 2 }]);
  });

  test("a dropped member stays in grace and leaves when it ends", () => {
    const p = new Presence<string>(1000);
    p.join("general", alice, "c1");
    p.join("dev", alice, "c1");
    p.join("general", bob, "c2");
    expect(p.drop("c1", "a", ["general", "dev"], 10_000, false)).toEqual([]);
    expect(p.members("general")).toEqual([alice, bob]);
    expect(p.isMember("a")).toBe(true);
    expect(p.nextExpiry()).toBe(11_000);
    expect(p.expire(10_999)).toEqual([]);
    expect(p.expire(11_000)).toEqual([
      { room: "general", user: alice },
      { room: "dev", user: alice },
    ]);
    expect(p.members("general")).toEqual([bob]);
    expect(p.active()).toEqual([{ room: "general", members: 1 }]);
    expect(p.isMember("a")).toBe(false);
    expect(p.nextExpiry()).toBeNull();
  });

  test("coming back within grace announces nothing and cancels the leave", () => {
    const p = new Presence<string>(1000);
    p.join("general", alice, "c1");
    p.drop("c1", "a", ["general"], 0, false);
    expect(p.join("general", alice, "c9")).toBe("returned");
    expect(p.nextExpiry()).toBeNull();
    expect(p.expire(5_000)).toEqual([]);
    expect(p.members("general")).toEqual([alice]);
    // A later drop starts a new grace; the old deadline does not end it early.
    p.drop("c9", "a", ["general"], 500, false);
    expect(p.expire(1_000)).toEqual([]);
    expect(p.expire(1_500)).toEqual([{ room: "general", user: alice }]);
  });

  test("a drop by a connection that is not the member's changes nothing", () => {
    const p = new Presence<string>(1000);
    p.join("general", alice, "new");
    expect(p.drop("old", "a", ["general"], 0, true)).toEqual([]);
    expect(p.members("general")).toEqual([alice]);
  });

  test("immediate drops and a zero grace leave at once", () => {
    const p = new Presence<string>(0);
    p.join("general", alice, "c1");
    expect(p.drop("c1", "a", ["general"], 0, false)).toEqual(["general"]);
    const q = new Presence<string>(1000);
    q.join("general", bob, "t1");
    expect(q.drop("t1", "b", ["general"], 0, true)).toEqual(["general"]);
    expect(q.count("general")).toBe(0);
  });

  test("an explicit leave is at once and only for members", () => {
    const p = new Presence<string>(1000);
    p.join("general", alice, "c1");
    expect(p.leave("general", "a", "c1")).toBe(true);
    expect(p.leave("general", "a", "c1")).toBe(false);
    expect(p.members("general")).toEqual([]);
  });

  test("ending a user's graces leaves the rooms it is in only through grace, at once; rooms with a connection stay", () => {
    const p = new Presence<string>(1000);
    p.join("general", alice, "c1");
    p.join("dev", alice, "c2");
    p.join("general", bob, "c3");
    p.drop("c1", "a", ["general"], 0, false);
    expect(p.endGraces("a")).toEqual([{ room: "general", user: alice }]);
    expect(p.members("general")).toEqual([bob]);
    expect(p.roomsOfUser("a")).toEqual(["dev"]);
    // The ended grace's deadline ends nothing later.
    expect(p.nextExpiry()).toBeNull();
    expect(p.endGraces("b")).toEqual([]);
  });

  test("a member is in grace while none of its connections is in the room; its grace in one room may end alone", () => {
    const p = new Presence<string>(1000);
    p.join("general", alice, "c1");
    p.join("dev", alice, "c1");
    expect(p.inGrace("general", "a")).toBe(false);
    p.drop("c1", "a", ["general", "dev"], 0, false);
    expect([p.inGrace("general", "a"), p.inGrace("dev", "a"), p.inGrace("general", "b")]).toEqual([true, true, false]);
    expect(p.endGraces("a", "dev")).toEqual([{ room: "dev", user: alice }]);
    expect(p.roomsOfUser("a")).toEqual(["general"]);
  });

  test("several connections of one user are one member; it leaves with the last (§10)", () => {
    const p = new Presence<string>(1000);
    expect(p.join("general", alice, "tab1")).toBe("new");
    expect(p.join("general", alice, "tab2")).toBe("again");
    expect(p.members("general")).toEqual([alice]);
    expect(p.leave("general", "a", "tab1")).toBe(false); // tab2 is still there
    expect(p.members("general")).toEqual([alice]);
    expect(p.drop("tab2", "a", ["general"], 0, false)).toEqual([]); // the last one: grace
    expect(p.nextExpiry()).toBe(1000);
    expect(p.join("general", alice, "tab3")).toBe("returned");
    p.join("general", alice, "tab4");
    expect(p.drop("tab3", "a", ["general"], 0, true)).toEqual([]); // tab4 remains: no leave even at once
    expect(p.roomsOfUser("a")).toEqual(["general"]);
    expect(p.leave("general", "a", "tab4")).toBe(true);
    expect(p.roomsOfUser("a")).toEqual([]);
  });
});

for (const engine of ENGINES) {
  describe(engine, () => {
    const { startServer } = engineServers(engine);

    describe("presence grace", () => {
      test("a user who comes back within grace is never seen to leave or join", async () => {
        await using server = await startServer({ presenceGraceMs: 60_000 });
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
      });

      test("when grace ends the others see the leave", async () => {
        await using server = await startServer({ presenceGraceMs: 50 });
        const alice = await user(server, "alice", "g");
        const bob = await user(server, "bob", "g");
        await alice.expect("presence");
        bob.close();
        expect(await alice.next()).toEqual({ type: "presence", room: "g", event: "leave", user: { id: expect.any(String), name: "bob" } });
        // Bob is gone, but his name stays his while his session is valid (§11.1): another Bob waits.
        const newBob = await Client.connect(server.wsUrl);
        newBob.send({ type: "hello", name: "Bob" });
        expect(await newBob.next()).toMatchObject({ type: "error", code: "name_taken" });
        alice.close();
        newBob.close();
      });

      test("signout ends the user's graces at once: the room hears the leave, and the name is free (§11.1)", async () => {
        await using server = await startServer({ presenceGraceMs: 60_000 });
        const tab1 = await Client.connect(server.wsUrl);
        const w = await tab1.hello("alice");
        await tab1.join("r");
        const bob = await user(server, "bob", "r");
        const tab2 = await Client.connect(server.wsUrl);
        await tab2.hello("alice", w.session);
        // tab1 drops: alice is in r only through grace.
        tab1.close();
        await server.logLine((l) => l.event === "close" && l.user === w.user.id);
        tab2.send({ type: "signout", ref: "s" });
        expect(await tab2.next()).toEqual({ type: "ok", for: "signout", ref: "s" });
        expect((await tab2.closed).code).toBe(1000);
        expect(await bob.until((f) => f.type === "presence")).toEqual([{ type: "presence", room: "r", event: "leave", user: w.user }]);
        const other = await Client.connect(server.wsUrl);
        expect((await other.hello("alice")).user.name).toBe("alice");
        expect(await bob.sync()).toEqual([]);
      });

      test("with no grace the leave is immediate", async () => {
        await using server = await startServer({ presenceGraceMs: 0 });
        const alice = await user(server, "alice", "g");
        const bob = await user(server, "bob", "g");
        await alice.expect("presence");
        bob.close();
        expect(await alice.next()).toMatchObject({ type: "presence", event: "leave", user: { name: "bob" } });
        alice.close();
      });
    });
  });
}

// The rest run on SQLite, the default engine, only.
describe("several connections per session (§10)", () => {
  test("two tabs of one session are one member; leaving one tab leaves nobody; the last one leaves", async () => {
    await using server = await startServer({ presenceGraceMs: 0 });
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
  });
});
