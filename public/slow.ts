/**
 * Slow mode as the page keeps it (pure): when this user last sent in a room while slow mode was
 * on there, from any of their tabs, and how long Send waits from then with the room's setting as
 * it is now. That is the server's measure (protocol, "Slow mode"): lowered, the wait is shorter
 * at once; raised, longer. Moderators and up are exempt: their sends do not count, and they
 * never wait.
 */

import type { Room } from "./room.ts";

/** What slow mode reads and keeps of a room. */
export type SlowRoom = Pick<Room, "settings" | "settingsSeq" | "lastSent">;

/**
 * A message of ours (`seq`, stored at `ts` by the server's clock) came live: it counts if slow
 * mode is on and was so when it was sent (it comes after the settings held: the original of a
 * retried send, resent to us alone, may be older, and counts only if the server says so by a
 * `slow_mode`). An older send than the one held moves nothing. True if the wait changed.
 *   sent({settings: {slowModeSeconds: 30…}, settingsSeq: 4, lastSent: 0}, {seq: 5, ts: 9_000}, false, 9_200) // => true, lastSent 9_000
 */
export function sent(room: SlowRoom, m: { seq: number; ts: number }, exempt: boolean, now: number): boolean {
  if (exempt || room.settings.slowModeSeconds === 0 || m.seq <= room.settingsSeq) return false;
  // The server's clock may be ahead of ours: a message was not sent after we saw it.
  const at = Math.min(m.ts, now);
  if (at <= room.lastSent) return false;
  room.lastSent = at;
  return true;
}

/**
 * A send refused with `slow_mode`: the server counts from a send `retryAfterMs` before the
 * setting's time is up, so that is when we last sent (without it: now).
 *   refused({settings: {slowModeSeconds: 30…}…}, 10_000, 100_000) // => lastSent 80_000
 */
export function refused(room: SlowRoom, retryAfterMs: number | undefined, now: number): void {
  room.lastSent = retryAfterMs === undefined ? now : now + retryAfterMs - room.settings.slowModeSeconds * 1000;
}

/** How long Send waits in `room` at `now`, in ms: 0 when it may send. */
export function waitMs(room: SlowRoom, exempt: boolean, now: number): number {
  const slow = room.settings.slowModeSeconds;
  if (!slow || exempt || room.lastSent === 0) return 0;
  return Math.max(0, room.lastSent + slow * 1000 - now);
}
