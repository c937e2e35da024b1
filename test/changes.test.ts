/**
 * Messages that change (§11.3–§11.4), on both engines: replies, edits within the window,
 * deletions by the author or a moderator, each an event in the room's sequence that joins,
 * history and `since` carry, while the message itself changes in storage. Plus, on SQLite, that a
 * deleted message's text is gone from the database file, and that a change or a history page
 * that storage fails is answered `internal` with its frame's ref.
 */
import { describe, expect, test } from "bun:test";
import { Database } from "bun:sqlite";
import { join } from "node:path";
import { Client, ENGINES, engineServers, sqliteWith, startServer, tempDir, user, type Frame } from "./helpers.ts";

const DAY_MS = 86_400_000;

/** Sends a message and waits for its echo, past whatever room events come first. */
async function say(c: Client, room: string, text: string, id: string = crypto.randomUUID()): Promise<Frame> {
  c.send({ type: "send", room, id, text });
  return (await c.until((f) => f.type === "message" && f.id === id)).at(-1)!;
}

/** Sends a frame and returns the frames up to its answer (ok, error, or another direct answer), the answer last. */
async function ask(c: Client, frame: object): Promise<Frame> {
  c.send(frame);
  return (await c.until((f) => ["ok", "error", "joined", "history"].includes(f.type))).at(-1)!;
}

for (const engine of ENGINES) {
  describe(engine, () => {
    const { startServer: start } = engineServers(engine);
    // Room for every frame a test sends at once.
    const startServer = (options = {}) => start({ rateLimitBurst: 1000, rateLimitPerSecond: 1000, ...options });

    test("a reply names a message of the room; a missing one is not_found", async () => {
      await using server = await startServer();
      const ann = await user(server, "ann", "r");
      const first = await say(ann, "r", "question?");
      ann.send({ type: "send", room: "r", id: "re-1", text: "answer", replyTo: first.seq });
      expect(await ann.expect("message")).toMatchObject({ id: "re-1", replyTo: first.seq, text: "answer" });
      ann.send({ type: "send", room: "r", id: "re-2", text: "to nothing", replyTo: 99 });
      expect(await ann.next()).toMatchObject({ type: "error", code: "not_found", ref: "re-2" });
      expect((await ann.join("r")).messages.map((m: Frame) => m.replyTo)).toEqual([undefined, first.seq]);
      ann.close();
    });

    test("a send refused for its replyTo (not_found) does not use up the slow-mode slot (§11.2)", async () => {
      await using server = await startServer();
      const owner = await user(server, "olga", "r");
      const ann = await user(server, "ann", "r");
      await owner.expect("presence");
      expect(await ask(owner, { type: "room_settings", room: "r", slowModeSeconds: 60 })).toMatchObject({ type: "ok" });
      await ann.until((f) => f.type === "settings");
      // A reply to a message the room does not hold: refused, nothing sent.
      expect(await ask(ann, { type: "send", room: "r", id: "bad-reply", text: "re", replyTo: 999 })).toMatchObject({ code: "not_found", ref: "bad-reply" });
      // Ann has sent nothing in this room: her first message goes, and takes the slot.
      ann.send({ type: "send", room: "r", id: "first", text: "my first message" });
      expect((await ann.until((f) => (f.type === "message" && f.id === "first") || f.type === "error")).at(-1)).toMatchObject({ type: "message", id: "first" });
      expect(await ask(ann, { type: "send", room: "r", id: "second", text: "again" })).toMatchObject({ code: "slow_mode", ref: "second" });
      owner.close();
      ann.close();
    });

    test("a retried reply (same id) whose original is retained but whose target was trimmed gets the original, not not_found (§4 dedup)", async () => {
      await using server = await startServer({ historyRetain: 3 });
      const ann = await user(server, "ann", "r");
      const target = await say(ann, "r", "question");
      ann.send({ type: "send", room: "r", id: "reply-1", text: "answer", replyTo: target.seq });
      const reply = await ann.expect("message");
      await say(ann, "r", "two");
      await say(ann, "r", "three");
      // The target is trimmed; the reply is still retained (retain 3).
      const page = await (await server.http("/api/rooms/r/messages")).json();
      expect(page.messages.map((m: Frame) => m.seq)).toEqual([reply.seq, reply.seq + 1, reply.seq + 2]);
      // The client did not see its echo (a reconnect, say) and sends it again; a new reply to it is refused.
      ann.send({ type: "send", room: "r", id: "reply-1", text: "answer", replyTo: target.seq });
      expect((await ann.until((f) => f.type === "message" || f.type === "error")).at(-1)).toEqual(reply);
      expect(await ask(ann, { type: "send", room: "r", id: "reply-2", text: "answer", replyTo: target.seq })).toMatchObject({ code: "not_found", ref: "reply-2" });
      ann.close();
    });

    test("edit: the author, in the window; an edit event in the sequence, the message changed in storage; the rest not_found or forbidden", async () => {
      let clock = Date.now();
      await using server = await startServer({ now: () => clock, editWindowSeconds: 60 });
      const ann = await user(server, "ann", "r");
      const bob = await user(server, "bob", "r");
      await ann.expect("presence");
      const m = await say(ann, "r", "teh typo");
      await bob.expect("message");
      expect(await ask(ann, { type: "edit", room: "r", seq: m.seq, text: " the typo ", ref: "e" })).toEqual({ type: "ok", for: "edit", ref: "e" });
      const edit = ann.frames.findLast((f) => f.type === "edit")!;
      expect(edit).toEqual({ type: "edit", room: "r", seq: m.seq + 1, target: m.seq, text: "the typo", user: m.user, ts: clock, edited: clock });
      expect(await bob.next()).toEqual(edit);
      // History shows the message as it is now, and the event after it.
      const page = await (await server.http("/api/rooms/r/messages")).json();
      expect(page.messages).toEqual([{ ...m, text: "the typo", edited: clock }, edit]);
      // Someone else's message, an event, a missing seq, a bad text, past the window: nothing changes.
      expect(await ask(bob, { type: "edit", room: "r", seq: m.seq, text: "mine now" })).toMatchObject({ code: "forbidden" });
      expect(await ask(ann, { type: "edit", room: "r", seq: edit.seq, text: "x" })).toMatchObject({ code: "not_found" });
      expect(await ask(ann, { type: "edit", room: "r", seq: 99, text: "x" })).toMatchObject({ code: "not_found" });
      expect(await ask(ann, { type: "edit", room: "other", seq: m.seq, text: "x" })).toMatchObject({ code: "not_found" });
      expect(await ask(ann, { type: "edit", room: "r", seq: m.seq, text: "  " })).toMatchObject({ code: "text_invalid" });
      clock += 61_000;
      expect(await ask(ann, { type: "edit", room: "r", seq: m.seq, text: "too late" })).toMatchObject({ code: "forbidden" });
      expect((await (await server.http("/api/rooms/r/messages")).json()).messages).toEqual(page.messages);
      ann.close();
      bob.close();
    });

    test("delete: the author, or a moderator over a member; text gone from the message and its edits; a retried send answers the message as it is now", async () => {
      await using server = await startServer();
      const owner = await user(server, "olga", "r");
      const mod = await user(server, "mod", "r");
      const ann = await user(server, "ann", "r");
      await ask(owner, { type: "role", room: "r", user: mod.frames[0]!.user.id, role: "moderator" });
      const m1 = await say(ann, "r", "regret this", "ann-1");
      await ask(ann, { type: "edit", room: "r", seq: m1.seq, text: "regret this more" });
      const m2 = await say(ann, "r", "and this");
      // A member may not delete someone else's; a moderator may not delete the owner's.
      expect(await ask(mod, { type: "delete", room: "r", seq: (await say(owner, "r", "owner's word")).seq })).toMatchObject({ code: "forbidden" });
      expect(await ask(ann, { type: "delete", room: "r", seq: owner.frames.findLast((f) => f.type === "message")!.seq })).toMatchObject({ code: "forbidden" });
      expect(await ask(ann, { type: "delete", room: "r", seq: m1.seq, ref: "d" })).toEqual({ type: "ok", for: "delete", ref: "d" });
      const deletion = ann.frames.findLast((f) => f.type === "delete")!;
      expect(deletion).toEqual({ type: "delete", room: "r", seq: expect.any(Number), target: m1.seq, by: m1.user, ts: expect.any(Number) });
      expect(await ask(mod, { type: "delete", room: "r", seq: m2.seq })).toMatchObject({ type: "ok" });
      expect(await ask(ann, { type: "delete", room: "r", seq: m1.seq })).toMatchObject({ code: "not_found" });
      expect(await ask(ann, { type: "edit", room: "r", seq: m1.seq, text: "back" })).toMatchObject({ code: "not_found" });
      const stored = (await (await server.http("/api/rooms/r/messages")).json()).messages as Frame[];
      const shown = stored.find((f) => f.seq === m1.seq)!;
      expect(shown).toMatchObject({ type: "message", text: "", deleted: expect.any(Number) });
      expect(stored.find((f) => f.type === "edit" && f.target === m1.seq)).toMatchObject({ text: "" });
      expect(JSON.stringify(stored)).not.toContain("regret this");
      // The retry of a deleted message's send: the original as it is now, to the sender alone.
      ann.send({ type: "send", room: "r", id: "ann-1", text: "regret this" });
      expect(await ann.until((f) => f.type === "message")).toContainEqual({ ...m1, text: "", deleted: shown.deleted, ...(m1.edited ? {} : {}), edited: expect.any(Number) });
      for (const c of [owner, mod, ann]) c.close();
    });

    test("one kicked from a private room (off its list) may no longer edit or delete its messages there; one on the list may", async () => {
      await using server = await startServer();
      const owner = await user(server, "olga", "club");
      expect(await ask(owner, { type: "room_settings", room: "club", private: true })).toMatchObject({ type: "ok" });
      owner.send({ type: "invite", room: "club" });
      const { code } = await owner.expect("invite");
      const [troll, ann] = [await Client.connect(server.wsUrl), await Client.connect(server.wsUrl)];
      const t = await troll.hello("troll");
      await ann.hello("ann");
      for (const c of [troll, ann]) {
        c.send({ type: "join", room: "club", invite: code });
        await c.expect("joined");
      }
      const said = await say(troll, "club", "hi all");
      const annSaid = await say(ann, "club", "hello");
      await owner.until((f) => f.seq === annSaid.seq);
      expect(await ask(owner, { type: "kick", room: "club", user: t.user.id })).toMatchObject({ type: "ok" });
      await troll.until((f) => f.type === "left");
      expect(await ask(troll, { type: "join", room: "club" })).toMatchObject({ code: "forbidden" });
      // Out and off the list: it may not read the room, so it may not put text into it either.
      expect(await ask(troll, { type: "edit", room: "club", seq: said.seq, text: "still here", ref: "e" })).toMatchObject({ code: "forbidden", ref: "e" });
      expect(await ask(troll, { type: "delete", room: "club", seq: said.seq, ref: "d" })).toMatchObject({ code: "forbidden", ref: "d" });
      // A member on the list edits and deletes its own; the owner, who saw neither of the troll's, sees those first.
      expect(await ask(ann, { type: "edit", room: "club", seq: annSaid.seq, text: "hello, all" })).toMatchObject({ type: "ok" });
      expect(await ask(ann, { type: "delete", room: "club", seq: annSaid.seq })).toMatchObject({ type: "ok" });
      const seen = await owner.until((f) => f.type === "delete");
      expect(seen.filter((f) => f.type === "edit" || f.type === "delete").map((f) => f.target)).toEqual([annSaid.seq, annSaid.seq]);
      const kept = (await ask(owner, { type: "history", room: "club" })).messages as Frame[];
      expect(kept.find((f) => f.seq === said.seq)).toMatchObject({ text: "hi all" });
      for (const c of [owner, troll, ann]) c.close();
    });

    test("a client offline during an edit and a delete resumes with since and gets both, in order", async () => {
      await using server = await startServer({ presenceGraceMs: 0 });
      const ann = await user(server, "ann", "r");
      const reader = await Client.connect(server.wsUrl);
      const w = await reader.hello("reader");
      await reader.join("r");
      const m1 = await say(ann, "r", "one");
      const m2 = await say(ann, "r", "two");
      await reader.until((f) => f.seq === m2.seq);
      reader.close();
      await server.logLine((l) => l.event === "close" && l.user === w.user.id);
      await ask(ann, { type: "edit", room: "r", seq: m1.seq, text: "one, edited" });
      await ask(ann, { type: "delete", room: "r", seq: m2.seq });
      const back = await Client.connect(server.wsUrl);
      await back.hello("reader", w.session);
      const resumed = await back.join("r", m2.seq);
      expect(resumed.messages.map((f: Frame) => [f.type, f.target, f.text])).toEqual([
        ["edit", m1.seq, "one, edited"],
        ["delete", m2.seq, undefined],
      ]);
      ann.close();
      back.close();
    });

    test("an edit kept after its message was trimmed (HISTORY_RETAIN) loses its text, which nobody could delete any more", async () => {
      await using server = await startServer({ historyRetain: 3 });
      const owner = await user(server, "olga", "r");
      const ann = await user(server, "ann", "r");
      await owner.expect("presence");
      const m = await say(ann, "r", "fine words");
      await say(ann, "r", "more");
      // Ann turns her first message into abuse; one more message trims the message itself away.
      expect(await ask(ann, { type: "edit", room: "r", seq: m.seq, text: "ABUSIVE TEXT" })).toMatchObject({ type: "ok" });
      const hello = await say(owner, "r", "hello");
      // Only messages can be deleted: the owner and the author cannot take the edit down.
      expect(await ask(owner, { type: "delete", room: "r", seq: m.seq })).toMatchObject({ code: "not_found" });
      expect(await ask(ann, { type: "delete", room: "r", seq: m.seq })).toMatchObject({ code: "not_found" });
      // The edit keeps its place in the sequence (HISTORY_RETAIN counts it), without its text.
      const page = await (await server.http("/api/rooms/r/messages")).json();
      expect(page.messages.map((f: Frame) => [f.seq, f.type, f.text])).toEqual([
        [m.seq + 1, "message", "more"],
        [m.seq + 2, "edit", ""],
        [hello.seq, "message", "hello"],
      ]);
      const joined = await owner.join("r");
      expect(JSON.stringify(joined.messages)).not.toContain("ABUSIVE TEXT");
      owner.close();
      ann.close();
    });

    test("an edit kept after its message was trimmed for its age (HISTORY_MAX_AGE_DAYS) loses its text too", async () => {
      let clock = 1_700_000_000_000;
      await using server = await startServer({ now: () => clock, historyMaxAgeDays: 1 });
      const ann = await user(server, "ann", "r");
      const m = await say(ann, "r", "fine words");
      clock += DAY_MS - 1000;
      expect(await ask(ann, { type: "edit", room: "r", seq: m.seq, text: "ABUSIVE TEXT" })).toMatchObject({ type: "ok" });
      clock += 2000;
      // The message is now more than a day old, its edit is not.
      const fresh = await say(ann, "r", "fresh");
      const page = await (await server.http("/api/rooms/r/messages")).json();
      expect(page.messages.map((f: Frame) => [f.seq, f.type, f.text])).toEqual([
        [m.seq + 1, "edit", ""],
        [fresh.seq, "message", "fresh"],
      ]);
      ann.close();
    });
  });
}

describe("a deleted message's text is nowhere in the database file (SQLite)", () => {
  test("after a checkpoint, neither the message nor its edit holds it", async () => {
    using dir = tempDir();
    const databasePath = join(dir.path, "chat.sqlite");
    const secret = "PLAINTEXT-SECRET-1234567890";
    {
      await using server = await startServer({ databasePath, rateLimitBurst: 1000, rateLimitPerSecond: 1000 });
      const ann = await user(server, "ann", "r");
      // Long enough that the row's old bytes would outlive it in the page's free space.
      const m = await say(ann, "r", `before ${secret} ${"x".repeat(300)}`);
      await ask(ann, { type: "edit", room: "r", seq: m.seq, text: `edited ${secret} ${"y".repeat(300)}` });
      for (let i = 0; i < 20; i++) await say(ann, "r", `filler ${i}`);
      // The text is in the database file itself now, not only in the WAL.
      const reader = new Database(databasePath);
      reader.exec("PRAGMA wal_checkpoint(PASSIVE)");
      reader.close();
      expect(Buffer.from(await Bun.file(databasePath).bytes()).includes(Buffer.from(secret))).toBe(true);
      expect(await ask(ann, { type: "delete", room: "r", seq: m.seq })).toMatchObject({ type: "ok" });
      ann.close();
    }
    const db = new Database(databasePath);
    db.exec("PRAGMA wal_checkpoint(TRUNCATE)");
    db.close();
    const bytes = await Bun.file(databasePath).bytes();
    expect(Buffer.from(bytes).includes(Buffer.from(secret))).toBe(false);
  });
});

describe("storage that fails (SQLite)", () => {
  test("an edit, delete or history that storage fails answers internal with the frame's ref (§4 error.ref)", async () => {
    let failing = false;
    const store = sqliteWith((real) => ({
      append: async (batch) => {
        if (failing && batch.some((e) => e.type === "edit" || e.type === "delete")) throw new Error("disk gone");
        return real.append(batch);
      },
      page: async (room, query) => {
        if (failing) throw new Error("disk gone");
        return real.page(room, query);
      },
    }));
    await using server = await startServer({ store, rateLimitBurst: 1000, rateLimitPerSecond: 1000 });
    const ann = await user(server, "ann", "r");
    const m = await say(ann, "r", "hello");
    failing = true;
    ann.send({ type: "edit", room: "r", seq: m.seq, text: "hello!", ref: "edit-1" });
    ann.send({ type: "delete", room: "r", seq: m.seq, ref: "del-1" });
    ann.send({ type: "history", room: "r", before: m.seq + 1, ref: "older-1" });
    const errors = [await ann.expect("error"), await ann.expect("error"), await ann.expect("error")];
    // The page matches answers by ref: without it an edit form stays "Saving…" and older history never loads.
    expect(errors.map((e) => [e.code, e.ref])).toEqual([["internal", "edit-1"], ["internal", "del-1"], ["internal", "older-1"]]);
    expect(server.logs.filter((l) => l.event === "storage").map((l) => l.op)).toEqual(["edit", "delete", "history"]);
    ann.close();
  });
});
