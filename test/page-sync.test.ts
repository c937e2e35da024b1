/**
 * Unit tests of the page's exactly-once logic, without a browser: room sync (public/sync.ts) fed
 * the frames a server would send, and the outbox (public/outbox.ts) with a fake socket and a
 * clock the test moves. browser.test.ts covers the same paths end to end in Chromium.
 */
import { describe, expect, test } from "bun:test";
import { createOutbox, NO_ANSWER, parseSaved, SEND_TIMEOUT_MS, type Outgoing, type Saved } from "../public/outbox.ts";
import { createRoomSync, parseRef, refFor } from "../public/sync.ts";
import { DEFAULT_SETTINGS, HISTORY_PAGE_MAX, type ClientFrame, type ErrorCode, type MessageFrame, type SendFrame, type StoredFrame } from "../src/protocol/wire.ts";

const ROOM = "general";
const ME = { id: "u-me", name: "me" };
const OTHER = { id: "u-other", name: "other" };

/** A message of `ROOM` with seq `seq`, by `user`. */
function msg(seq: number, user = OTHER, id = `id-${seq}`, room = ROOM): MessageFrame {
  return { type: "message", room, seq, id, user, text: `text ${seq}`, ts: 1_000 + seq };
}

/** Messages with seqs from..to, inclusive. */
function range(from: number, to: number): MessageFrame[] {
  return Array.from({ length: to - from + 1 }, (_, i) => msg(from + i));
}

const seqs = (messages: readonly StoredFrame[]) => messages.map((m) => m.seq);

function joined(seq: number, messages: StoredFrame[], complete: boolean) {
  return {
    type: "joined" as const, room: ROOM, seq, oldestSeq: 1, members: [OTHER], messages, complete, ref: refFor("join", ROOM),
    role: "member" as const, settings: { ...DEFAULT_SETTINGS },
  };
}

function page(messages: StoredFrame[], complete: boolean, kind: "forward" | "older" = "forward") {
  return { type: "history" as const, room: ROOM, messages, complete, ref: refFor(kind, ROOM) };
}

const forward = (after: number): ClientFrame => ({ type: "history", room: ROOM, after, limit: HISTORY_PAGE_MAX, ref: refFor("forward", ROOM) });

/** A room that joined fresh and is live at `seq`, having shown `shown`. */
function liveAt(seq: number, shown: StoredFrame[] = range(1, seq)) {
  const sync = createRoomSync(ROOM);
  sync.join();
  sync.joined(joined(seq, shown, true));
  expect(sync.phase).toBe("live");
  return sync;
}

describe("room sync", () => {
  test("a first join asks for the latest messages, shows them all and is live at the room's seq", () => {
    const sync = createRoomSync(ROOM);
    expect(sync.phase).toBe("idle");
    expect(sync.join()).toEqual({ type: "join", room: ROOM, ref: "join:general" });
    expect(sync.phase).toBe("joining");
    // historyOnJoin cut the room's history short (complete: false): older pages are the reader's to ask for.
    const step = sync.joined(joined(80, range(31, 80), false));
    expect(step).toMatchObject({ reset: false, resumed: false, send: null, live: true });
    expect(seqs(step && !step.reset ? step.fresh : [])).toEqual(seqs(range(31, 80)));
    expect(sync.lastSeq).toBe(80);
    expect(sync.maxSeq).toBe(80);
    expect(sync.size).toBe(50);
  });

  test("resume with HISTORY_ON_JOIN=0: the join carries no messages, so it pages forward from where it stood", () => {
    const sync = liveAt(5);
    sync.lost();
    sync.join();
    // 6-20 came while we were away; the server sends none of them with the join.
    expect(sync.joined(joined(20, [], false))).toMatchObject({ resumed: true, send: forward(5), live: false });
    expect(sync.history(page(range(6, 20), true))).toMatchObject({ send: null, live: true });
    expect(sync.lastSeq).toBe(20);
    // Nothing came meanwhile: live at once.
    sync.lost();
    sync.join();
    expect(sync.joined(joined(20, [], true))).toMatchObject({ send: null, live: true });
  });

  test("a resent message answered with its original from long ago leaves no gap: older pages go on from the oldest loaded", () => {
    // Joined showing 151-200 of a longer history.
    const sync = createRoomSync(ROOM);
    sync.join();
    sync.joined(joined(200, range(151, 200), false));
    // The outbox resends one of ours stored as seq 100: the server answers with that original.
    expect(sync.message(msg(100, ME))).toEqual({ fresh: [msg(100, ME)], send: null, live: false });
    expect(sync.minSeq).toBe(151);
    // Older pages go on from 151; the one shown already is not shown twice.
    expect(seqs(sync.older(range(101, 150)))).toEqual(seqs(range(101, 150)));
    expect(seqs(sync.older(range(51, 100)))).toEqual(seqs(range(51, 99)));
  });

  test("resume: rejoins with since = lastSeq and pages forward with `history after` until complete", () => {
    const sync = liveAt(5);
    sync.lost();
    expect(sync.phase).toBe("idle");
    expect(sync.join()).toEqual({ type: "join", room: ROOM, since: 5, ref: "join:general" });

    // More arrived while we were away than the join carries: page forward from its last message.
    const first = sync.joined(joined(9, range(6, 7), false));
    expect(first).toMatchObject({ reset: false, resumed: true, send: forward(7), live: false });
    expect(sync.phase).toBe("paging");

    const second = sync.history(page(range(8, 8), false));
    expect(second).toEqual({ fresh: [msg(8)], send: forward(8), live: false });

    const last = sync.history(page(range(9, 9), true));
    expect(last).toEqual({ fresh: [msg(9)], send: null, live: true });
    expect(sync.phase).toBe("live");
    expect(sync.lastSeq).toBe(9);
    // Live again: the next seq continues without a request.
    expect(sync.message(msg(10))).toEqual({ fresh: [msg(10)], send: null, live: false });
    expect(sync.lastSeq).toBe(10);
  });

  test("resume with nothing new, or with all of it in the join: live at once", () => {
    const idle = liveAt(5);
    idle.lost();
    idle.join();
    expect(idle.joined(joined(5, [], true))).toMatchObject({ fresh: [], send: null, live: true, resumed: true });
    expect(idle.lastSeq).toBe(5);

    const some = liveAt(5);
    some.lost();
    some.join();
    expect(some.joined(joined(7, range(6, 7), true))).toMatchObject({ send: null, live: true, resumed: true });
    expect(some.lastSeq).toBe(7);
  });

  test("a known seq is ignored: the same live frame twice, and pages that overlap live frames", () => {
    const sync = liveAt(3);
    expect(seqs(sync.message(msg(4)).fresh)).toEqual([4]);
    expect(sync.message(msg(4)).fresh).toEqual([]);
    expect(sync.size).toBe(4);

    sync.lost();
    sync.join();
    sync.joined(joined(9, range(3, 6), false));
    // Live frames arrive while paging; the page that follows repeats them.
    expect(seqs(sync.message(msg(7)).fresh)).toEqual([7]);
    expect(seqs(sync.message(msg(8)).fresh)).toEqual([8]);
    const step = sync.history(page(range(7, 9), true));
    expect(seqs(step!.fresh)).toEqual([9]);
    expect(step!.live).toBe(true);
    expect(sync.lastSeq).toBe(9);
  });

  test("gap: a live seq that skips ahead pages forward from lastSeq; nothing doubles", () => {
    const sync = liveAt(5);
    // 6 was lost on the wire; 7 shows the gap.
    const step = sync.message(msg(7));
    expect(step).toEqual({ fresh: [msg(7)], send: forward(5), live: false });
    expect(sync.phase).toBe("paging");
    expect(sync.lastSeq).toBe(5);
    // The page brings 6, and 7 again, which is not shown twice.
    const caught = sync.history(page(range(6, 7), true));
    expect(caught).toEqual({ fresh: [msg(6)], send: null, live: true });
    expect(sync.lastSeq).toBe(7);
    // Consecutive seqs after that ask for nothing.
    expect(sync.message(msg(8)).send).toBeNull();
  });

  test("out of order: a late frame during catch-up is shown once, and the room ends live at the newest seq", () => {
    const sync = liveAt(5);
    expect(sync.message(msg(8)).send).toEqual(forward(5));
    // 7 and 6 arrive late, while paging: shown, no new request (one page is already out).
    expect(sync.message(msg(7))).toEqual({ fresh: [msg(7)], send: null, live: false });
    expect(sync.message(msg(6))).toEqual({ fresh: [msg(6)], send: null, live: false });
    const caught = sync.history(page(range(6, 8), true));
    expect(caught).toEqual({ fresh: [], send: null, live: true });
    expect(sync.lastSeq).toBe(8);
  });

  test("catch-up that ends on an empty page counts the live frames seen meanwhile: no needless page after", () => {
    const sync = liveAt(5);
    sync.message(msg(7));
    expect(sync.history(page(range(6, 7), false))?.send).toEqual(forward(7));
    // 8 comes live while the last page is out, and that page comes back empty.
    sync.message(msg(8));
    expect(sync.history(page([], true))).toEqual({ fresh: [], send: null, live: true });
    expect(sync.lastSeq).toBe(8);
    expect(sync.message(msg(9)).send).toBeNull();
  });

  test("a seq at or below lastSeq while live is no gap (only a duplicate or an older message)", () => {
    const sync = liveAt(5, range(3, 5));
    expect(sync.message(msg(2))).toEqual({ fresh: [msg(2)], send: null, live: false });
    expect(sync.message(msg(5))).toEqual({ fresh: [], send: null, live: false });
    expect(sync.lastSeq).toBe(5);
  });

  test("epochs: the room's epoch goes with since on every rejoin; a first join, and a room with none yet, send none", () => {
    const sync = createRoomSync(ROOM);
    expect(sync.join()).toEqual({ type: "join", room: ROOM, ref: "join:general" });
    sync.joined({ ...joined(5, range(1, 5), true), epoch: "e1" });
    expect(sync.epoch).toBe("e1");
    sync.lost();
    expect(sync.join()).toEqual({ type: "join", room: ROOM, since: 5, epoch: "e1", ref: "join:general" });
    // Same epoch: the server follows since.
    expect(sync.joined({ ...joined(7, range(6, 7), true), epoch: "e1" })).toMatchObject({ reset: false, resumed: true, live: true });
    sync.lost();
    expect(sync.join()).toEqual({ type: "join", room: ROOM, since: 7, epoch: "e1", ref: "join:general" });

    const empty = createRoomSync(ROOM);
    empty.join();
    empty.joined(joined(0, [], true));
    expect(empty.epoch).toBeNull();
    empty.lost();
    expect(empty.join()).toEqual({ type: "join", room: ROOM, since: 0, ref: "join:general" });
  });

  test("joined.reset: the room forgets every seq it had and shows the room from its new start, old seqs included", () => {
    const sync = createRoomSync(ROOM);
    sync.join();
    sync.joined({ ...joined(5, range(1, 5), true), epoch: "e1" });
    sync.lost();
    expect(sync.join()).toMatchObject({ since: 5, epoch: "e1" });
    // The epoch we had is gone (a flushed Redis): seqs 1-3 now name other messages.
    const fresh = [msg(1, ME, "new-1"), msg(2, OTHER, "new-2"), msg(3, ME, "new-3")];
    const step = sync.joined({ ...joined(3, fresh, true), epoch: "e2", reset: true });
    expect(step).toEqual({ fresh, send: null, live: true, reset: true, resumed: true });
    expect([sync.lastSeq, sync.size, sync.maxSeq, sync.minSeq, sync.epoch]).toEqual([3, 3, 3, 1, "e2"]);
    // Nothing of the old room is known any more; a seq of the old one, live, is news again only once.
    expect(sync.message(msg(4)).fresh).toEqual([msg(4)]);
    expect(sync.message(msg(4)).fresh).toEqual([]);
    sync.lost();
    expect(sync.join()).toEqual({ type: "join", room: ROOM, since: 4, epoch: "e2", ref: "join:general" });
  });

  test("joined.reset with more than one page: it pages forward from the new start until complete, then goes live", () => {
    const sync = createRoomSync(ROOM);
    sync.join();
    sync.joined({ ...joined(80, range(31, 80), false), epoch: "e1" });
    sync.lost();
    sync.join();
    const step = sync.joined({ ...joined(120, range(1, 50), false), epoch: "e2", reset: true });
    expect(step).toMatchObject({ reset: true, resumed: true, send: forward(50), live: false });
    expect(seqs(step!.fresh)).toEqual(seqs(range(1, 50)));
    const last = sync.history(page(range(51, 120), true));
    expect(last).toMatchObject({ send: null, live: true });
    expect(seqs(last!.fresh)).toEqual(seqs(range(51, 120)));
    expect([sync.lastSeq, sync.size, sync.epoch]).toEqual([120, 120, "e2"]);
  });

  test("reset without epochs: a room whose seq is below ours forgets it all and pages from its new start", () => {
    const sync = liveAt(50, range(41, 50));
    sync.lost();
    sync.join();
    // Our since (50) is past the room's seq: the server sent nothing.
    const step = sync.joined(joined(3, [], true));
    expect(step).toEqual({ fresh: [], send: forward(0), live: false, reset: true, resumed: true });
    expect(sync.phase).toBe("paging");
    expect(sync.size).toBe(0);
    // The new room's messages are news, though old seqs 1..3 may have been seen in the old one.
    const again = sync.history(page(range(1, 3), true));
    expect(again).toMatchObject({ send: null, live: true });
    expect(seqs(again!.fresh)).toEqual([1, 2, 3]);
    expect(sync.lastSeq).toBe(3);
  });

  test("answers that are not awaited are ignored: a late joined, a page while live", () => {
    const sync = liveAt(5);
    expect(sync.joined(joined(9, range(6, 9), true))).toBeNull();
    expect(sync.history(page(range(6, 9), true))).toBeNull();
    expect(sync.lastSeq).toBe(5);
    expect(sync.size).toBe(5);
  });

  test("older pages show only what is new, and move neither the phase nor lastSeq", () => {
    const sync = liveAt(80, range(31, 80));
    expect(seqs(sync.older(range(1, 31)))).toEqual(seqs(range(1, 30)));
    expect(sync.phase).toBe("live");
    expect(sync.lastSeq).toBe(80);
    expect(sync.size).toBe(80);
  });

  test("a refused request is asked again only while the room still waits for it", () => {
    const sync = liveAt(5);
    expect(sync.retry("join")).toBeNull();
    expect(sync.retry("forward")).toBeNull();
    sync.message(msg(9));
    expect(sync.retry("forward")).toEqual(forward(5));
    expect(sync.retry("join")).toBeNull();
    sync.lost();
    sync.join();
    expect(sync.retry("join")).toEqual({ type: "join", room: ROOM, since: 5, ref: "join:general" });
    expect(sync.retry("forward")).toBeNull();
  });
});

// ─── Outbox ──────────────────────────────────────────────────────────────────────────────────

/** A clock the test moves: timers fire only in `advance`. */
function fakeClock() {
  let now = 0;
  let next = 1;
  const timers = new Map<number, { at: number; fn: () => void }>();
  return {
    setTimer(fn: () => void, ms: number): number {
      timers.set(next, { at: now + ms, fn });
      return next++;
    },
    clearTimer(handle: number): void {
      timers.delete(handle);
    },
    advance(ms: number): void {
      now += ms;
      for (const [handle, timer] of [...timers].sort((a, b) => a[1].at - b[1].at)) {
        if (timer.at > now) continue;
        timers.delete(handle);
        timer.fn();
      }
    },
    get pending(): number {
      return timers.size;
    },
  };
}

/** An outbox on a fake socket: `wire` is what was sent, `live` which rooms may send, `stored` the last save. */
function harness(options: { queueDelayMs?: number } = {}) {
  const clock = fakeClock();
  const wire: SendFrame[] = [];
  const live = new Set<string>();
  const drawn: string[] = [];
  const gone: string[] = [];
  let connected = true;
  let stored = "[]";
  const outbox = createOutbox({
    send: (frame) => connected && (wire.push(frame), true),
    canSend: (room) => connected && live.has(room),
    queueDelayMs: () => options.queueDelayMs ?? 0,
    setTimer: clock.setTimer,
    clearTimer: clock.clearTimer,
    changed: (item) => drawn.push(`${item.id}:${item.state}`),
    removed: (item) => gone.push(item.id),
    save: (saved) => (stored = JSON.stringify(saved)),
  });
  return {
    outbox,
    clock,
    wire,
    live,
    drawn,
    gone,
    get stored() {
      return stored;
    },
    /** The connection drops (frames may or may not have arrived) or comes back. */
    setConnected(on: boolean) {
      connected = on;
      if (!on) {
        live.clear();
        outbox.lost();
      }
    },
  };
}

const state = (item: Outgoing | undefined) => item?.state;
const sentIds = (wire: readonly SendFrame[]) => wire.map((f) => f.id);
const error = (code: ErrorCode, message = `refused: ${code}`) => ({ type: "error" as const, code, message, ref: "a" });

describe("outbox", () => {
  test("a room started again from seq 1: its replies not sent yet go as plain messages; one on the wire, and other rooms', keep theirs", () => {
    const h = harness();
    const { outbox, wire, live } = h;
    live.add(ROOM);
    outbox.add({ id: "on-wire", room: ROOM, text: "sent before", replyTo: 4 });
    outbox.flush(ROOM);
    live.delete(ROOM);
    outbox.add({ id: "waiting", room: ROOM, text: "answer", replyTo: 7 });
    outbox.add({ id: "elsewhere", room: "dev", text: "other room", replyTo: 3 });
    h.drawn.length = 0;
    outbox.unanchor(ROOM);
    expect(outbox.get("waiting")?.replyTo).toBeUndefined();
    expect(outbox.get("on-wire")?.replyTo).toBe(4);
    expect(outbox.get("elsewhere")?.replyTo).toBe(3);
    expect(h.drawn).toEqual(["waiting:waiting"]);
    expect(parseSaved(h.stored)).toEqual([
      { id: "on-wire", room: ROOM, text: "sent before", replyTo: 4 },
      { id: "waiting", room: ROOM, text: "answer" },
      { id: "elsewhere", room: "dev", text: "other room", replyTo: 3 },
    ]);
    live.add(ROOM);
    outbox.flush(ROOM);
    expect(wire.at(-1)).toEqual({ type: "send", room: ROOM, id: "waiting", text: "answer" });
  });

  test("a typed message waits until its room is live, then goes once with its id, in the order typed", () => {
    const h = harness();
    const { outbox, wire, live } = h;
    outbox.add({ id: "a", room: ROOM, text: "first" });
    outbox.add({ id: "b", room: ROOM, text: "second" });
    outbox.add({ id: "c", room: "dev", text: "elsewhere" });
    expect(parseSaved(h.stored).map((s) => s.id)).toEqual(["a", "b", "c"]);
    expect(h.drawn).toEqual(["a:waiting", "b:waiting", "c:waiting"]);
    outbox.flush(ROOM);
    expect(wire).toEqual([]);
    expect(state(outbox.get("a"))).toBe("waiting");

    live.add(ROOM);
    outbox.flush(ROOM);
    expect(wire).toEqual([
      { type: "send", room: ROOM, id: "a", text: "first" },
      { type: "send", room: ROOM, id: "b", text: "second" },
    ]);
    expect(state(outbox.get("a"))).toBe("sent");
    expect(state(outbox.get("c"))).toBe("waiting");
    // A second flush (the room going live again without a disconnect) does not send twice.
    outbox.flush(ROOM);
    expect(sentIds(wire)).toEqual(["a", "b"]);
  });

  test("confirmed only by its own echo: our user, its id, its room", () => {
    const h = harness();
    h.live.add(ROOM);
    h.outbox.add({ id: "a", room: ROOM, text: "hi" });
    h.outbox.flush(ROOM);
    expect(h.outbox.echoed(msg(1, OTHER, "a"), ME.id)).toBe(false);
    expect(h.outbox.echoed(msg(1, ME, "a", "dev"), ME.id)).toBe(false);
    expect(h.outbox.echoed(msg(1, ME, "b"), ME.id)).toBe(false);
    expect(state(h.outbox.get("a"))).toBe("sent");

    expect(h.outbox.echoed(msg(1, ME, "a"), ME.id)).toBe(true);
    expect(h.outbox.get("a")).toBeUndefined();
    expect(h.gone).toEqual(["a"]);
    expect(h.stored).toBe("[]");
    // The timeout died with it: nothing fails later.
    expect(h.clock.pending).toBe(0);
  });

  test("no echo within SEND_TIMEOUT_MS (plus the rate queue's wait): failed, offering a retry with the same id", () => {
    const h = harness({ queueDelayMs: 2_000 });
    h.live.add(ROOM);
    h.outbox.add({ id: "a", room: ROOM, text: "hi" });
    h.outbox.flush(ROOM);
    h.clock.advance(SEND_TIMEOUT_MS + 1_999);
    expect(state(h.outbox.get("a"))).toBe("sent");
    h.clock.advance(1);
    expect(h.outbox.get("a")).toMatchObject({ state: "failed", error: NO_ANSWER });

    h.outbox.retry("a");
    expect(state(h.outbox.get("a"))).toBe("sent");
    expect(h.outbox.get("a")?.error).toBe("");
    expect(sentIds(h.wire)).toEqual(["a", "a"]);
    // A failed message is not resent by a flush on its own: only Retry does that.
    h.clock.advance(SEND_TIMEOUT_MS + 2_000);
    h.outbox.flush(ROOM);
    expect(sentIds(h.wire)).toEqual(["a", "a"]);
  });

  test("retry while disconnected waits for the room to be live again", () => {
    const h = harness();
    h.outbox.add({ id: "a", room: ROOM, text: "hi" });
    h.outbox.refused("a", error("bad_request"));
    h.setConnected(false);
    h.outbox.retry("a");
    expect(state(h.outbox.get("a"))).toBe("waiting");
    expect(h.wire).toEqual([]);
    h.setConnected(true);
    h.live.add(ROOM);
    h.outbox.flush(ROOM);
    expect(sentIds(h.wire)).toEqual(["a"]);
  });

  test("discard: gone for good, from the screen, the wire and storage", () => {
    const h = harness();
    h.outbox.add({ id: "a", room: ROOM, text: "keep" });
    h.outbox.add({ id: "b", room: ROOM, text: "drop" });
    h.outbox.discard("b");
    expect(h.gone).toEqual(["b"]);
    expect(parseSaved(h.stored)).toEqual([{ id: "a", room: ROOM, text: "keep" }]);
    h.live.add(ROOM);
    h.outbox.flush(ROOM);
    expect(sentIds(h.wire)).toEqual(["a"]);
  });

  test("a lost connection: what was sent goes again with the same id once the room is live; a failed one waits for the user", () => {
    const h = harness();
    h.live.add(ROOM);
    h.outbox.add({ id: "a", room: ROOM, text: "maybe arrived" });
    h.outbox.add({ id: "f", room: ROOM, text: "refused" });
    h.outbox.flush(ROOM);
    h.outbox.refused("f", error("text_invalid"));
    h.setConnected(false);
    expect(state(h.outbox.get("a"))).toBe("waiting");
    expect(state(h.outbox.get("f"))).toBe("failed");
    // Its echo timeout went with the connection.
    h.clock.advance(SEND_TIMEOUT_MS * 2);
    expect(state(h.outbox.get("a"))).toBe("waiting");

    h.setConnected(true);
    h.outbox.flush(ROOM); // welcomed, but the room is not live yet
    expect(sentIds(h.wire)).toEqual(["a", "f"]);
    h.live.add(ROOM);
    h.outbox.flush(ROOM);
    expect(sentIds(h.wire)).toEqual(["a", "f", "a"]);
    // The server deduplicates: a resend of something stored returns the original, which confirms it.
    expect(h.outbox.echoed(msg(12, ME, "a"), ME.id)).toBe(true);
    expect([...h.outbox.values()].map((i) => i.id)).toEqual(["f"]);
  });

  test("a send the connection could not take stays waiting, with no timeout running", () => {
    const clock = fakeClock();
    // canSend said yes, but the socket is gone by the time the frame is written.
    const outbox = createOutbox({
      send: () => false,
      canSend: () => true,
      queueDelayMs: () => 0,
      setTimer: clock.setTimer,
      clearTimer: clock.clearTimer,
      changed: () => {},
      removed: () => {},
      save: () => {},
    });
    outbox.add({ id: "b", room: ROOM, text: "hi" });
    outbox.flush(ROOM);
    expect(state(outbox.get("b"))).toBe("waiting");
    expect(clock.pending).toBe(0);
  });

  test("refusals: not_joined rejoins, passing codes retry later, others fail with a reason", () => {
    const h = harness();
    h.live.add(ROOM);
    for (const id of ["nj", "rl", "in", "ti", "rd"]) h.outbox.add({ id, room: ROOM, text: id });
    h.outbox.flush(ROOM);
    expect(h.clock.pending).toBe(5);
    expect(h.outbox.refused("nj", error("not_joined"))).toBe("rejoin");
    expect(h.outbox.refused("rl", error("rate_limited"))).toBe("later");
    expect(h.outbox.refused("in", error("internal"))).toBe("later");
    expect(h.outbox.refused("ti", error("text_invalid"))).toBe("failed");
    expect(h.outbox.refused("rd", error("room_invalid", "no such room"))).toBe("failed");
    expect(h.outbox.refused("unknown", error("internal"))).toBeNull();
    expect(["nj", "rl", "in"].map((id) => state(h.outbox.get(id)))).toEqual(["waiting", "waiting", "waiting"]);
    expect(h.outbox.get("ti")?.error).toBe("Not sent: the text is empty, too long or has control characters.");
    expect(h.outbox.get("rd")?.error).toBe("Not sent: no such room.");
    // No timeout is left to turn a refused message into "no answer".
    expect(h.clock.pending).toBe(0);
    // The waiting ones go again, same ids, at the next flush.
    h.outbox.flush(ROOM);
    expect(sentIds(h.wire).slice(5)).toEqual(["nj", "rl", "in"]);
  });

  test("leaving a room drops its messages; signing out drops all", () => {
    const h = harness();
    h.outbox.add({ id: "a", room: ROOM, text: "a" });
    h.outbox.add({ id: "b", room: "dev", text: "b" });
    h.outbox.add({ id: "c", room: ROOM, text: "c" });
    h.outbox.discardRoom(ROOM);
    expect(h.gone).toEqual(["a", "c"]);
    expect(parseSaved(h.stored).map((s) => s.id)).toEqual(["b"]);
    h.outbox.clear();
    expect(h.gone).toEqual(["a", "c", "b"]);
    expect(h.stored).toBe("[]");
  });

  test("persistence round trip: what is stored restores as waiting messages with the same ids, in order", () => {
    const first = harness();
    first.live.add(ROOM);
    first.outbox.add({ id: "a", room: ROOM, text: "line one\nline two" });
    first.outbox.add({ id: "b", room: "dev", text: "👋" });
    first.outbox.flush(ROOM);
    expect(state(first.outbox.get("a"))).toBe("sent");

    // A reload: a new outbox from what the last one stored.
    const second = harness();
    for (const entry of parseSaved(first.stored)) second.outbox.add(entry);
    expect([...second.outbox.values()]).toEqual([
      expect.objectContaining({ id: "a", room: ROOM, text: "line one\nline two", state: "waiting" }),
      expect.objectContaining({ id: "b", room: "dev", text: "👋", state: "waiting" }),
    ]);
    second.live.add(ROOM);
    second.outbox.flush(ROOM);
    expect(second.wire).toEqual([{ type: "send", room: ROOM, id: "a", text: "line one\nline two" }]);
  });

  test("stored data that is not an outbox restores nothing, and bad entries are skipped", () => {
    expect(parseSaved(null)).toEqual([]);
    expect(parseSaved("{not json")).toEqual([]);
    expect(parseSaved(`{"id":"a"}`)).toEqual([]);
    const good: Saved = { id: "a", room: ROOM, text: "ok" };
    const saved = JSON.stringify([good, null, { id: 1, room: ROOM, text: "x" }, { id: "b", room: "Not A Room", text: "x" }, { id: "c", room: ROOM }]);
    expect(parseSaved(saved)).toEqual([good]);
  });

  test("a reply keeps the seq it answers: sent with it, and across a reload", () => {
    const h = harness();
    h.live.add(ROOM);
    h.outbox.add({ id: "r", room: ROOM, text: "yes", replyTo: 7 });
    h.outbox.flush(ROOM);
    expect(h.wire).toEqual([{ type: "send", room: ROOM, id: "r", text: "yes", replyTo: 7 }]);
    expect(parseSaved(h.stored)).toEqual([{ id: "r", room: ROOM, text: "yes", replyTo: 7 }]);
    // A stored replyTo that is not a seq is dropped, the message kept.
    expect(parseSaved(JSON.stringify([{ id: "x", room: ROOM, text: "t", replyTo: "7" }, { id: "y", room: ROOM, text: "t", replyTo: 0 }]))).toEqual([
      { id: "x", room: ROOM, text: "t" },
      { id: "y", room: ROOM, text: "t" },
    ]);
  });

  test("v1.2 refusals: slow mode waits and goes again; muted, read-only and banned fail, saying why", () => {
    const h = harness();
    h.live.add(ROOM);
    for (const id of ["slow", "mute", "ro", "ban"]) h.outbox.add({ id, room: ROOM, text: id });
    h.outbox.flush(ROOM);
    expect(h.outbox.refused("slow", { ...error("slow_mode"), retryAfterMs: 4_000 })).toBe("later");
    expect(h.outbox.refused("mute", { ...error("muted"), until: 1 })).toBe("failed");
    expect(h.outbox.refused("ro", error("read_only"))).toBe("failed");
    expect(h.outbox.refused("ban", error("banned"))).toBe("failed");
    expect(state(h.outbox.get("slow"))).toBe("waiting");
    expect(["mute", "ro", "ban"].map((id) => h.outbox.get(id)?.error)).toEqual([
      "Not sent: you are muted in this room.",
      "Not sent: only moderators write in this room.",
      "Not sent: you are banned from this room.",
    ]);
  });
});

describe("refs", () => {
  test("name what an answer or error is about, and read back", () => {
    expect(refFor("join", "dev")).toBe("join:dev");
    expect(refFor("edit", "dev", 42)).toBe("edit:dev:42");
    expect(parseRef("edit:dev:42")).toEqual({ kind: "edit", room: "dev", about: "42" });
    expect(parseRef("join:dev")).toEqual({ kind: "join", room: "dev", about: "" });
    // A send's id has no colon; no ref at all is nothing.
    expect(parseRef("Xc8-random-id")).toBeNull();
    expect(parseRef(undefined)).toBeNull();
  });
});

describe("stored events in the sequence", () => {
  const settings = (seq: number): StoredFrame => ({ type: "settings", room: ROOM, seq, ...DEFAULT_SETTINGS, topic: "t", by: OTHER, ts: 1 });
  const edit = (seq: number, target: number): StoredFrame => ({ type: "edit", room: ROOM, seq, target, text: "new", user: OTHER, ts: 1, edited: 1 });

  test("take seqs like messages: a live event is no gap, and the oldest seq shown is where older pages start", () => {
    const sync = liveAt(3, [settings(2), msg(3)]);
    expect(sync.minSeq).toBe(2);
    expect(sync.message(edit(4, 3))).toEqual({ fresh: [edit(4, 3)], send: null, live: false });
    expect(sync.message(msg(5))).toEqual({ fresh: [msg(5)], send: null, live: false });
    expect(sync.lastSeq).toBe(5);
    // An older page moves the oldest seq, whatever it holds.
    expect(seqs(sync.older([msg(1)]))).toEqual([1]);
    expect(sync.minSeq).toBe(1);
  });
});
