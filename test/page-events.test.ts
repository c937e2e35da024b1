/**
 * Unit tests of the page's pure v1.2 parts, without a browser: what stored events do to a room's
 * messages and what its lines say (public/events.ts), who may do what (public/rights.ts), the
 * address (public/hash.ts), slow mode's wait (public/slow.ts), what is read back of stored
 * identity (public/identity.ts) and of `/api/info` (public/signin.ts). page-auth and
 * page-moderation cover the same in Chromium.
 */
import { describe, expect, test } from "bun:test";
import { applyChange, createMessageLog, duration, moderationLine, outLine, quoteOf, settingsLine } from "../public/events.ts";
import { parseHash } from "../public/hash.ts";
import { createIdentity, usableName, type Store } from "../public/identity.ts";
import { mayDelete, mayModerate, maySetRole, maySettings, mayTopic, mayWriteFreely, rankOf } from "../public/rights.ts";
import { readInfo } from "../public/signin.ts";
import { refused as slowRefused, sent as slowSent, waitMs as slowWaitMs } from "../public/slow.ts";
import { startServer, user, type Frame } from "./helpers.ts";
import { DEFAULT_SETTINGS, type DeleteEvent, type EditEvent, type MessageFrame, type ModerationFrame, type SettingsEvent } from "../src/protocol/wire.ts";

const ANN = { id: "u-ann", name: "ann" };
const BO = { id: "u-bo", name: "bo" };

function msg(seq: number, text = `text ${seq}`, extra: Partial<MessageFrame> = {}): MessageFrame {
  return { type: "message", room: "r", seq, id: `id-${seq}`, user: ANN, text, ts: 1_000 + seq, ...extra };
}
const edit = (seq: number, target: number, text: string, edited = 5_000 + seq): EditEvent => ({ type: "edit", room: "r", seq, target, text, user: ANN, ts: edited, edited });
const del = (seq: number, target: number): DeleteEvent => ({ type: "delete", room: "r", seq, target, by: BO, ts: 9_000 + seq });
const settings = (seq: number, s: Partial<SettingsEvent> = {}): SettingsEvent => ({ type: "settings", room: "r", seq, ...DEFAULT_SETTINGS, by: ANN, ts: 1, ...s });

describe("a room's messages under edits and deletions", () => {
  test("an edit replaces the text and marks it edited; a deletion empties it, and wins", () => {
    const edited = applyChange(msg(1, "hi"), edit(2, 1, "hello"));
    expect(edited).toEqual(msg(1, "hello", { edited: 5_002 }));
    const deleted = applyChange(edited, del(3, 1));
    expect(deleted).toEqual(msg(1, "", { edited: 5_002, deleted: 9_003 }));
    // Nothing edits a deleted message back.
    expect(applyChange(deleted, edit(4, 1, "back"))).toBe(deleted);
  });

  test("edits apply in seq order, the order storage applies them in, whatever their `edited` times say", () => {
    const log = createMessageLog();
    log.add(msg(1, "first"));
    // The server clock stepped back between the two edits: the later one has the smaller time.
    expect(log.change(edit(2, 1, "second", 9_000))?.text).toBe("second");
    expect(log.change(edit(3, 1, "third", 7_000))).toEqual(msg(1, "third", { edited: 7_000 }));
    // An older edit coming late (an older page) changes nothing.
    expect(log.change(edit(2, 1, "second", 9_000))?.text).toBe("third");
    // Edits kept for a message still on its way apply in seq order, however they came.
    log.change(edit(12, 10, "twelve", 1));
    log.change(edit(11, 10, "eleven", 2));
    expect(log.add(msg(10))?.text).toBe("twelve");
    // An edit whose message left storage (trimmed) comes without its text: the message shown keeps its own.
    expect(log.change(edit(4, 1, ""))?.text).toBe("third");
  });

  test("the page's message log shows the latest stored edit even when the server clock stepped back between edits", async () => {
    let clock = Date.now();
    await using server = await startServer({ rateLimitBurst: 1000, rateLimitPerSecond: 1000, now: () => clock });
    const ann = await user(server, "ann", "r");
    ann.send({ type: "send", room: "r", id: "m", text: "first" });
    const m = (await ann.until((f) => f.type === "message" && f.id === "m")).at(-1)!;
    ann.send({ type: "edit", room: "r", seq: m.seq, text: "second" });
    expect((await ann.until((f) => f.type === "ok" || f.type === "error")).at(-1)).toMatchObject({ type: "ok" });
    // The clock steps back (NTP, or the next edit comes through another instance whose clock is behind).
    clock -= 2000;
    ann.send({ type: "edit", room: "r", seq: m.seq, text: "third" });
    expect((await ann.until((f) => f.type === "ok" || f.type === "error")).at(-1)).toMatchObject({ type: "ok" });
    const edits = ann.frames.filter((f) => f.type === "edit");
    // The server holds "third": history says so.
    const stored = (await (await server.http("/api/rooms/r/messages")).json()).messages.find((f: Frame) => f.seq === m.seq);
    expect(stored.text).toBe("third");
    // A page that saw the message and both edits live, in seq order, applies them as rooms.ts does.
    const log = createMessageLog();
    log.add(m as never);
    for (const e of edits) log.change(e as never);
    expect(log.get(m.seq)!.text).toBe(stored.text);
    ann.close();
  });

  test("the log: a change to a message not loaded waits for it; one to a loaded message applies at once", () => {
    const log = createMessageLog();
    expect(log.add(msg(5))).toEqual(msg(5));
    expect(log.change(edit(6, 5, "five"))?.text).toBe("five");
    // An older page still in flight when its message was edited and deleted.
    expect(log.change(edit(7, 2, "two"))).toBeNull();
    expect(log.change(del(8, 2))).toBeNull();
    expect(log.add(msg(2, "as paged before the edit"))).toEqual(msg(2, "", { edited: 5_007, deleted: 9_008 }));
    expect(log.get(2)?.deleted).toBe(9_008);
    // A message paged after the change carries it already: applying it again changes nothing.
    log.change(edit(9, 3, "three"));
    expect(log.add(msg(3, "three", { edited: 5_009 }))).toEqual(msg(3, "three", { edited: 5_009 }));
    log.clear();
    expect(log.get(5)).toBeUndefined();
  });

  test("a reply's quote: author and first words on one line, or what became of it", () => {
    expect(quoteOf(msg(1, "hello\n  there"))).toBe("ann: hello there");
    expect(quoteOf(msg(1, "x".repeat(100)))).toBe(`ann: ${"x".repeat(80)}…`);
    expect(quoteOf(msg(1, "👋".repeat(81)))).toBe(`ann: ${"👋".repeat(80)}…`);
    expect(quoteOf(msg(1, "", { deleted: 1 }))).toBe("message deleted");
    expect(quoteOf(undefined)).toBe("an earlier message");
  });
});

describe("lines about the room", () => {
  test("a settings change says what changed, by whom", () => {
    expect(settingsLine(DEFAULT_SETTINGS, settings(1, { topic: "Launch" }))).toBe("ann set the topic: “Launch”");
    const before = { ...DEFAULT_SETTINGS, topic: "Launch", slowModeSeconds: 30 };
    expect(settingsLine(before, settings(2, { private: true, readOnly: true }))).toBe(
      "ann cleared the topic, made the room private, made the room read-only, turned slow mode off",
    );
    expect(settingsLine(before, settings(3, { ...before, slowModeSeconds: 300 }))).toBe("ann set slow mode to one message per 5 min");
    expect(settingsLine(before, settings(4, before))).toBe("ann changed the room settings");
    // The first event of a page: compared with a new room's settings.
    expect(settingsLine(null, settings(5, { private: true }))).toBe("ann made the room private");
  });

  test("durations", () => {
    expect([5, 60, 600, 3_600, 86_400, 172_800, 90].map(duration)).toEqual(["5 s", "1 min", "10 min", "1 h", "1 day", "2 days", "90 s"]);
  });

  test("moderation lines, and what someone sent out is told", () => {
    const time = (ms: number) => `T${ms}`;
    const f = (action: ModerationFrame["action"], extra: Partial<ModerationFrame> = {}): ModerationFrame => ({ type: "moderation", room: "r", action, user: BO, by: ANN, ...extra });
    expect(moderationLine(f("kick", { reason: "spam" }), time)).toBe("bo was removed by ann: spam");
    expect(moderationLine(f("ban", { until: 7 }), time)).toBe("bo was banned by ann until T7");
    expect(moderationLine(f("ban"), time)).toBe("bo was banned by ann");
    expect(moderationLine(f("mute", { until: 9, reason: "calm down" }), time)).toBe("bo was muted by ann until T9: calm down");
    expect(moderationLine(f("unmute"), time)).toBe("bo can write again (ann)");
    expect(moderationLine(f("unban"), time)).toBe("bo was unbanned by ann");
    expect(moderationLine(f("role", { role: "moderator" }), time)).toBe("ann made bo a moderator");
    expect(moderationLine(f("role", { role: "member" }), time)).toBe("bo is no longer a moderator (ann)");
    expect(moderationLine(f("role", { role: "owner" }), time)).toBe("ann handed the room to bo");
    expect(outLine("kicked", "dev", undefined, time)).toBe("You were removed from #dev.");
    expect(outLine("kicked", "dev", f("kick", { reason: "spam" }), time)).toBe("You were removed from #dev by ann: spam.");
    expect(outLine("banned", "dev", f("ban", { until: 3, reason: "spam" }), time)).toBe("You were banned from #dev by ann until T3: spam.");
  });
});

describe("rights, as the page offers them", () => {
  test("ranks: a role in the room, or admin everywhere", () => {
    expect(rankOf(undefined)).toBe("member");
    expect(rankOf("moderator")).toBe("moderator");
    expect(rankOf("member", true)).toBe("admin");
    expect(["member", "moderator", "owner", "admin"].map((r) => [mayTopic, maySettings, mayWriteFreely].map((may) => may(r as never)))).toEqual([
      [false, false, false],
      [true, false, true],
      [true, true, true],
      [true, true, true],
    ]);
  });

  test("acting on others: only lower ranks (admins on all), never kicking the owner; one's own messages always", () => {
    expect(mayModerate("moderator", "member")).toBe(true);
    expect(mayModerate("moderator", "moderator")).toBe(false);
    expect(mayModerate("owner", "moderator")).toBe(true);
    expect(mayModerate("admin", "owner")).toBe(false);
    expect(mayModerate("member", "member")).toBe(false);
    expect(mayDelete("member", "owner", true)).toBe(true);
    expect(mayDelete("member", "member", false)).toBe(false);
    expect(mayDelete("moderator", "member", false)).toBe(true);
    expect(mayDelete("moderator", "owner", false)).toBe(false);
    expect(mayDelete("admin", "owner", false)).toBe(true);
    expect(maySetRole("owner", "moderator")).toBe(true);
    expect(maySetRole("moderator", "member")).toBe(false);
    expect(maySetRole("admin", "owner")).toBe(false);
  });
});

describe("slow mode's wait", () => {
  const slowRoom = (slowModeSeconds: number) => ({ settings: { ...DEFAULT_SETTINGS, slowModeSeconds }, settingsSeq: 4, lastSent: 0 });

  test("from our last send with the setting now: lowered, shorter at once; raised, longer; off, none", () => {
    const room = slowRoom(60);
    expect(slowSent(room, { seq: 5, ts: 10_000 }, false, 10_200)).toBe(true);
    expect(slowWaitMs(room, false, 10_200)).toBe(59_800);
    room.settings.slowModeSeconds = 5;
    expect(slowWaitMs(room, false, 12_000)).toBe(3_000);
    expect(slowWaitMs(room, false, 16_000)).toBe(0);
    room.settings.slowModeSeconds = 30;
    expect(slowWaitMs(room, false, 16_000)).toBe(24_000);
    room.settings.slowModeSeconds = 0;
    expect(slowWaitMs(room, false, 16_000)).toBe(0);
    // Moderators and up never wait.
    room.settings.slowModeSeconds = 30;
    expect(slowWaitMs(room, true, 16_000)).toBe(0);
  });

  test("what counts: a send while it is on, not an older one (a retry's original), nor a moderator's", () => {
    const room = slowRoom(60);
    expect(slowSent(room, { seq: 6, ts: 20_000 }, false, 20_100)).toBe(true);
    // The original of a retried send comes back later: it does not start the wait again.
    expect(slowSent(room, { seq: 5, ts: 10_000 }, false, 30_000)).toBe(false);
    expect(room.lastSent).toBe(20_000);
    // Sent before the settings held now: perhaps with slow mode off, so only a refusal says.
    expect(slowSent({ ...slowRoom(60), settingsSeq: 9 }, { seq: 8, ts: 25_000 }, false, 25_100)).toBe(false);
    expect(slowSent(slowRoom(0), { seq: 5, ts: 10_000 }, false, 10_100)).toBe(false);
    expect(slowSent(slowRoom(60), { seq: 5, ts: 10_000 }, true, 10_100)).toBe(false);
    // The server's clock ahead of ours: the send was not after we saw it.
    const ahead = slowRoom(60);
    slowSent(ahead, { seq: 5, ts: 15_000 }, false, 10_000);
    expect(slowWaitMs(ahead, false, 10_000)).toBe(60_000);
  });

  test("a refusal says when the server counts from: retryAfterMs before the setting's time is up", () => {
    const room = slowRoom(30);
    slowRefused(room, 10_000, 100_000);
    expect(room.lastSent).toBe(80_000);
    expect(slowWaitMs(room, false, 100_000)).toBe(10_000);
    room.settings.slowModeSeconds = 15;
    expect(slowWaitMs(room, false, 100_000)).toBe(0);
  });
});

describe("the address", () => {
  test("a room, an invite to it, a login ticket; nothing throws", () => {
    expect(parseHash("")).toEqual({});
    expect(parseHash("#")).toEqual({});
    expect(parseHash("#dev")).toEqual({ room: "dev" });
    expect(parseHash("#%23Dev%20")).toEqual({ room: "dev" });
    expect(parseHash("#board?invite=Zm9v_-")).toEqual({ room: "board", invite: "Zm9v_-" });
    expect(parseHash("#token=eyJ.a.b")).toEqual({ token: "eyJ.a.b" });
    expect(parseHash("#dev?token=eyJ.a.b")).toEqual({ room: "dev", token: "eyJ.a.b" });
    expect(parseHash("#%")).toEqual({ invalid: "%" });
    expect(parseHash("#%E0%A4%A")).toEqual({ invalid: "%E0%A4%A" });
    expect(parseHash("#Not A Room!")).toEqual({ invalid: "Not A Room!" });
    expect(parseHash("#%?invite=x")).toEqual({ invalid: "%" });
    // Oversized codes and tickets are not taken.
    expect(parseHash(`#board?invite=${"x".repeat(300)}`)).toEqual({ room: "board" });
    expect(parseHash(`#token=${"x".repeat(9000)}`)).toEqual({});
  });
});

describe("what is read back", () => {
  function memoryStore(): Store {
    const data = new Map<string, string>();
    return { read: (key) => data.get(key) ?? null, write: (key, value) => void data.set(key, value), remove: (key) => void data.delete(key) };
  }

  test("a stored session or name that could not be one is ignored (a hello with it would be too big, or refused)", () => {
    const local = memoryStore();
    const identity = createIdentity(local, memoryStore());
    identity.remember("q7R-43_base64url", " dana ");
    expect([identity.session, identity.name]).toEqual(["q7R-43_base64url", "dana"]);
    local.write("chat.session", "x".repeat(100_000));
    local.write("chat.name", "y".repeat(100_000));
    expect([identity.session, identity.name]).toEqual([null, null]);
    local.write("chat.session", "not base64url!");
    expect(identity.session).toBeNull();
    expect(usableName("   ")).toBeNull();
    expect(usableName("😀".repeat(32))).toBe("😀".repeat(32));
    expect(usableName("😀".repeat(33))).toBeNull();
  });

  test("bans from rooms are remembered until they end, and forgotten with the user", () => {
    const local = memoryStore();
    const identity = createIdentity(local, memoryStore());
    identity.setBan("dev", 1_000);
    identity.setBan("ops", null);
    expect([...identity.bans()]).toEqual([
      ["dev", 1_000],
      ["ops", null],
    ]);
    identity.setBan("dev", false);
    expect([...identity.bans()]).toEqual([["ops", null]]);
    local.write("chat.banned", JSON.stringify({ "Bad Room": 1, ok: "soon", fine: 5 }));
    expect([...identity.bans()]).toEqual([["fine", 5]]);
    identity.forget();
    expect(identity.bans().size).toBe(0);
  });

  test("/api/info: what the sign-in screen shows; anything unreadable keeps the guest screen", () => {
    expect(readInfo({ guests: false, members: true, roomCreation: "members" })).toEqual({ guests: false, members: true, roomCreation: "members" });
    expect(readInfo({ guests: "no", roomCreation: "everyone" })).toEqual({ guests: true, members: false, roomCreation: "anyone" });
    expect(readInfo(null)).toEqual({ guests: true, members: false, roomCreation: "anyone" });
  });
});
