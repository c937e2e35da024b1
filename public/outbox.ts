/**
 * The outbox: messages typed here and not yet confirmed, sent exactly once. No DOM and no timers
 * of its own: the socket, the clock and the drawing come in as hooks, so tests pass their own.
 *
 * A message gets a random id when typed and shows as pending. It is (re)sent with that id
 * whenever its room goes live, until its own `message` comes back with the id; the server
 * deduplicates on (room, user, id), so a resend of something already stored only returns the
 * original to us. What is unsent survives a reload: the page stores `saved()` and restores it.
 */

import { isRoom, type ErrorCode, type ErrorFrame, type MessageFrame, type SendFrame } from "../src/protocol/wire.ts";

/** How long a sent message may wait for its echo before it offers a retry (plus its wait in the rate queue). */
export const SEND_TIMEOUT_MS = 10_000;
/** What a send that timed out says. */
export const NO_ANSWER = "No answer from the server yet.";

/** Codes that pass: the same request, with the same id, is tried again. */
export const PASSING: readonly ErrorCode[] = ["rate_limited", "internal"];
/** Codes that pass for a send, and when: slow mode says how long to wait (`retryAfterMs`). */
const SEND_PASSING: readonly ErrorCode[] = [...PASSING, "slow_mode"];

/** Why a send was refused, for the people whose message it was; others say the server's message. */
const REFUSED: Partial<Record<ErrorCode, string>> = {
  text_invalid: "the text is empty, too long or has control characters",
  muted: "you are muted in this room",
  read_only: "only moderators write in this room",
  banned: "you are banned from this room",
  not_found: "the message it answers is gone",
};

/** waiting: to be sent when the room is live · sent: on the wire · failed: needs the user (`error` says why). */
export type SendState = "waiting" | "sent" | "failed";

/** A message typed here and not yet confirmed by its own `message` frame. */
export interface Outgoing {
  readonly id: string;
  readonly room: string;
  readonly text: string;
  /** The seq of the message it answers, in the same room. */
  readonly replyTo?: number;
  state: SendState;
  error: string;
}

/** What is kept of an unsent message across a reload. */
export interface Saved {
  id: string;
  room: string;
  text: string;
  replyTo?: number;
}

/** What the server's refusal of a send means for the page: join again, flush again later, or tell the user. */
export type Refusal = "rejoin" | "later" | "failed";

export interface OutboxHooks {
  /** Puts a send on the wire; false when it could not go (no connection). */
  send(frame: SendFrame): boolean;
  /** Whether `room` is live on a welcomed connection, so its messages may go. */
  canSend(room: string): boolean;
  /** How long a frame sent now waits in the connection's rate queue, in ms. */
  queueDelayMs(): number;
  /** Runs `fn` in `ms` ms; returns a handle for `clearTimer`, never 0 (0 means no timer). */
  setTimer(fn: () => void, ms: number): number;
  clearTimer(handle: number): void;
  /** An item was added or changed state: draw it. */
  changed(item: Outgoing): void;
  /** An item is gone: confirmed, discarded, or its room left. */
  removed(item: Outgoing): void;
  /** What is unsent changed: keep `saved` for the next load. */
  save(saved: Saved[]): void;
}

interface Item extends Omit<Outgoing, "replyTo"> {
  replyTo?: number;
  /** The handle of the echo timeout while sent; 0 for none. */
  timer: number;
}

export type Outbox = ReturnType<typeof createOutbox>;

export function createOutbox(hooks: OutboxHooks) {
  /** By id, in the order typed: a room's messages go out in that order. */
  const items = new Map<string, Item>();

  function get(id: string): Outgoing | undefined {
    return items.get(id);
  }

  function values(): IterableIterator<Outgoing> {
    return items.values();
  }

  /** A message typed (or restored), waiting; it goes with the next `flush` of its room. */
  function add(entry: Saved): Outgoing {
    const item: Item = { ...savedOf(entry), state: "waiting", error: "", timer: 0 };
    items.set(item.id, item);
    hooks.changed(item);
    save();
    return item;
  }

  /** Sends every waiting message of `room`, if the room is live. */
  function flush(room: string): void {
    if (!hooks.canSend(room)) return;
    for (const item of items.values()) if (item.room === room && item.state === "waiting") transmit(item);
  }

  /**
   * A message came back: if it is ours (by user and id, in its room), its pending copy gives way
   * to it. True if one did.
   */
  function echoed(m: MessageFrame, myId: string | undefined): boolean {
    const item = m.user.id === myId ? items.get(m.id) : undefined;
    if (item?.room !== m.room) return false;
    remove(item);
    return true;
  }

  /** The server refused the send `id`: what the page must do about it (or null: not a send of ours). */
  function refused(id: string, f: ErrorFrame): Refusal | null {
    const item = items.get(id);
    if (!item) return null;
    hooks.clearTimer(item.timer);
    // not_joined: the server does not have us in the room (it restarted under us?), so the page
    // joins again and the room's going live resends it; a passing refusal (slow mode too) is
    // flushed again later.
    if (f.code === "not_joined" || SEND_PASSING.includes(f.code)) {
      item.state = "waiting";
      hooks.changed(item);
      return f.code === "not_joined" ? "rejoin" : "later";
    }
    fail(item, `Not sent: ${REFUSED[f.code] ?? f.message}.`);
    return "failed";
  }

  /** The user asks to try a failed (or waiting) message again. */
  function retry(id: string): void {
    const item = items.get(id);
    if (!item) return;
    item.state = "waiting";
    item.error = "";
    hooks.changed(item);
    flush(item.room);
  }

  /** The user gives up on a message: it is no longer pending, and will not be sent again. */
  function discard(id: string): void {
    const item = items.get(id);
    if (item) remove(item);
  }

  /** Every message of `room` goes: the room was left. */
  function discardRoom(room: string): void {
    for (const item of [...items.values()]) if (item.room === room) remove(item);
  }

  /**
   * `room` started again from seq 1 (its storage lost it): a reply not sent yet would answer
   * whatever message now has its seq, so it goes as a plain message. One already on the wire was
   * read against the numbering the server had then.
   */
  function unanchor(room: string): void {
    let changed = false;
    for (const item of items.values()) {
      if (item.room !== room || item.state === "sent" || item.replyTo === undefined) continue;
      delete item.replyTo;
      hooks.changed(item);
      changed = true;
    }
    if (changed) save();
  }

  /** Every message goes: signed out. */
  function clear(): void {
    for (const item of [...items.values()]) remove(item);
  }

  /** The connection is gone. What was sent may have arrived or not: it goes again, with the same id, once its room is live. */
  function lost(): void {
    for (const item of items.values()) {
      hooks.clearTimer(item.timer);
      if (item.state === "sent") item.state = "waiting";
      hooks.changed(item);
    }
  }

  /** What to keep for the next load of the page. */
  function saved(): Saved[] {
    return [...items.values()].map(savedOf);
  }

  function transmit(item: Item): void {
    const reply = item.replyTo === undefined ? {} : { replyTo: item.replyTo };
    if (!hooks.send({ type: "send", room: item.room, id: item.id, text: item.text, ...reply })) return;
    item.state = "sent";
    hooks.clearTimer(item.timer);
    item.timer = hooks.setTimer(() => fail(item, NO_ANSWER), SEND_TIMEOUT_MS + hooks.queueDelayMs());
    hooks.changed(item);
  }

  function fail(item: Item, why: string): void {
    item.state = "failed";
    item.error = why;
    hooks.changed(item);
  }

  function remove(item: Item): void {
    hooks.clearTimer(item.timer);
    items.delete(item.id);
    hooks.removed(item);
    save();
  }

  function save(): void {
    hooks.save(saved());
  }

  return { get, values, add, flush, echoed, refused, retry, discard, discardRoom, unanchor, clear, lost, saved };
}

/** What is kept of a message: its id, room, text and the seq it answers. */
function savedOf({ id, room, text, replyTo }: Saved): Saved {
  return replyTo === undefined ? { id, room, text } : { id, room, text, replyTo };
}

/** What a stored outbox holds, as JSON: entries that are not a message for a valid room are skipped. */
export function parseSaved(json: string | null): Saved[] {
  let saved: unknown;
  try {
    saved = JSON.parse(json ?? "[]");
  } catch {
    return [];
  }
  if (!Array.isArray(saved)) return [];
  const entries: Saved[] = [];
  for (const entry of saved as { id?: unknown; room?: unknown; text?: unknown; replyTo?: unknown }[]) {
    const { id, room, text, replyTo } = entry ?? {};
    if (typeof id !== "string" || typeof room !== "string" || typeof text !== "string" || !isRoom(room)) continue;
    entries.push(Number.isSafeInteger(replyTo) && (replyTo as number) > 0 ? { id, room, text, replyTo: replyTo as number } : { id, room, text });
  }
  return entries;
}
