/**
 * Exactly-once room sync: where one room stands in its message sequence, what to ask the server
 * next, and which messages (and stored events, §11.4, which take seqs too) are new. Pure: it takes server frames and returns the frame to send
 * and the messages to show; the page owns the socket, the DOM and every timer.
 *
 * How a room stays exact. The room knows every seq it has seen and `lastSeq`, the seq up to which
 * it has seen everything. On every welcome it rejoins with `since = lastSeq` and pages forward
 * with `history after` until `complete`; only then is it "live" and its unsent messages go out.
 * A message whose seq is known is ignored, so overlaps between pages and live frames are
 * harmless; a live seq that skips ahead means a gap, and the room pages forward again.
 *
 * Resets. A room's seqs count in its epoch (`joined.epoch`), kept beside `lastSeq` and sent with
 * `since`. Storage that lost the room starts it again at seq 1 under a new epoch: the server
 * then answers `reset: true` with the room from its new start. A server without epochs tells only
 * by a latest seq below ours. Either way the room forgets every seq it had, and shows the room
 * from its new start, paging forward from 0 until complete.
 */

import { HISTORY_PAGE_MAX, type ClientFrame, type HistoryPage, type JoinedFrame, type StoredFrame } from "../src/protocol/wire.ts";

/** idle (no connection) → joining → paging (catching up) → live (unsent messages may go). */
export type Phase = "idle" | "joining" | "paging" | "live";

/** What a request is about, as its ref says: the page routes answers and errors by it. */
export type RefKind =
  | "join"
  | "forward"
  | "older"
  | "leave"
  | "typing"
  // Commands of v1.2 (§11.3), answered by `ok` (or `invite`) or an error.
  | "settings"
  | "invite"
  | "edit"
  | "delete"
  | "moderate"
  // A server-wide ban (admins): its ref names the user, for the notice that it is done.
  | "serverban";

/**
 * Refs name what an answer or error is about: `join:general`, `older:dev`, `edit:dev:42` (with the
 * seq or user it is about). Ids of sends have no colon.
 */
export function refFor(kind: RefKind, room: string, about?: string | number): string {
  return about === undefined ? `${kind}:${room}` : `${kind}:${room}:${about}`;
}

/** A ref read back: `parseRef("edit:dev:42") // => {kind: "edit", room: "dev", about: "42"}`; null for a send's id. */
export function parseRef(ref: string | undefined): { kind: string; room: string; about: string } | null {
  const [kind, room, ...about] = (ref ?? "").split(":");
  return room === undefined ? null : { kind: kind!, room, about: about.join(":") };
}

/** What one frame did to the room. */
export interface Step {
  /** Messages not seen before, in the order they came: to show. */
  fresh: StoredFrame[];
  /** The request to send next (a join or a history page), or null. */
  send: ClientFrame | null;
  /** The room went live with this frame: its unsent messages may go now. */
  live: boolean;
}

/**
 * What a `joined` did: a Step; `resumed` when we came back to where we were, `reset` when the
 * room started over (the page drops what it showed of the room before showing `fresh`).
 */
export type Joined = Step & { reset: boolean; resumed: boolean };

export type RoomSync = ReturnType<typeof createRoomSync>;

/** The sync of one room, idle until its first join. */
export function createRoomSync(room: string) {
  /** Every seq up to this one has been seen: the `since` of the next join. Null before the first `joined`. */
  let lastSeq: number | null = null;
  /** The sequence `lastSeq` counts in (`joined.epoch`); null while the room has none, or before the first `joined`. */
  let epoch: string | null = null;
  let phase: Phase = "idle";
  /** The `since` the outstanding join was sent with. */
  let askedSince: number | null = null;
  /** Every seq shown, from joins, live frames and pages in both directions. */
  const seen = new Set<number>();
  /** The largest and the smallest of `seen`; 0 when empty (seqs start at 1). */
  let newest = 0;
  let oldest = 0;

  /** (Re)joins: from `lastSeq` in its epoch if we were here before, else from the room's latest messages. */
  function join(): ClientFrame {
    phase = "joining";
    askedSince = lastSeq;
    const ref = refFor("join", room);
    if (lastSeq === null) return { type: "join", room, ref };
    return epoch === null ? { type: "join", room, since: lastSeq, ref } : { type: "join", room, since: lastSeq, epoch, ref };
  }

  /** The room started over: every seq we had names another message now, or none. */
  function forget(): void {
    seen.clear();
    newest = oldest = 0;
    lastSeq = null;
  }

  function pageForward(after: number, fresh: StoredFrame[]): Step {
    phase = "paging";
    lastSeq = Math.max(lastSeq ?? 0, after);
    // The largest page: catching up after a reconnect takes as few round trips as possible.
    return { fresh, send: { type: "history", room, after: lastSeq, limit: HISTORY_PAGE_MAX, ref: refFor("forward", room) }, live: false };
  }

  /** Caught up: from here on live frames keep the room current. */
  function goLive(seq: number, fresh: StoredFrame[]): Step {
    lastSeq = Math.max(lastSeq ?? 0, seq, newest);
    phase = "live";
    return { fresh, send: null, live: true };
  }

  /** The messages of `messages` not seen before, now seen. */
  function add(messages: readonly StoredFrame[]): StoredFrame[] {
    const fresh: StoredFrame[] = [];
    for (const m of messages) {
      if (seen.has(m.seq)) continue;
      seen.add(m.seq);
      if (m.seq > newest) newest = m.seq;
      if (oldest === 0 || m.seq < oldest) oldest = m.seq;
      fresh.push(m);
    }
    return fresh;
  }

  return {
    room,
    get phase(): Phase {
      return phase;
    },
    get lastSeq(): number | null {
      return lastSeq;
    },
    /** The epoch `lastSeq` counts in; null when the server named none. */
    get epoch(): string | null {
      return epoch;
    },
    /** How many messages the room has shown. */
    get size(): number {
      return seen.size;
    },
    /** The newest seq shown, 0 for none: how far a reader at the bottom has read. */
    get maxSeq(): number {
      return newest;
    },
    /** The oldest seq shown, 0 for none: where "Load older" pages back from. */
    get minSeq(): number {
      return oldest;
    },
    join,

    /** The answer to our join; null when none was outstanding (a late answer to an older one). */
    joined(f: JoinedFrame): Joined | null {
      if (phase !== "joining") return null;
      const since = askedSince;
      // Our epoch was not the room's: the server sent the room from its new start (as since 0).
      const reset = f.reset === true || (since !== null && f.seq < since);
      if (reset) forget();
      epoch = f.epoch ?? null;
      // A server without epochs answered our since, beyond its seq, with nothing: ask from the start.
      if (reset && f.reset !== true) return { ...pageForward(0, []), reset, resumed: true };
      const resumed = since !== null;
      const fresh = add(f.messages);
      const last = f.messages.at(-1)?.seq;
      // A first join shows the latest messages and has no gap to close; older ones are paged back
      // on request. A resumed one pages on from its last message, or from where it stood when the
      // server sent none (HISTORY_ON_JOIN=0): what it missed is fetched, never skipped.
      const step = !resumed || f.complete ? goLive(f.seq, fresh) : pageForward(last ?? (reset ? 0 : since), fresh);
      return { ...step, reset, resumed };
    },

    /** A history page: ours while catching up (the page routes "older" pages to `older`); else ignored. */
    history(f: HistoryPage): Step | null {
      if (phase !== "paging") return null;
      const fresh = add(f.messages);
      const last = f.messages.at(-1)?.seq;
      return f.complete || last === undefined ? goLive(last ?? 0, fresh) : pageForward(last, fresh);
    },

    /** A live message. Seqs are gap-free: one that skips ahead means we missed something, so fetch it. */
    message(m: StoredFrame): Step {
      // Older than anything shown: the original a resent message of ours was answered with (its id
      // was stored long ago). Shown in its place, it does not move where older pages go on from,
      // or those between it and the ones shown could never be loaded.
      const before = oldest;
      const fresh = add([m]);
      if (before !== 0 && m.seq < before) oldest = before;
      if (phase !== "live" || lastSeq === null) return { fresh, send: null, live: false };
      if (m.seq > lastSeq + 1) return pageForward(lastSeq, fresh);
      lastSeq = Math.max(lastSeq, m.seq);
      return { fresh, send: null, live: false };
    },

    /** A page of older messages (asked for by the reader): only the unknown ones to show. */
    older(messages: readonly StoredFrame[]): StoredFrame[] {
      return add(messages);
    },

    /** The connection is gone: nothing is in flight, the next welcome rejoins. */
    lost(): void {
      phase = "idle";
    },

    /**
     * The request of `kind` to send again after the server refused it for a passing reason; null
     * when the room has moved on since (a new join, or live).
     */
    retry(kind: "join" | "forward"): ClientFrame | null {
      if (kind === "join") return phase === "joining" ? join() : null;
      return phase === "paging" ? pageForward(lastSeq ?? 0, []).send : null;
    },
  };
}
