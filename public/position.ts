/**
 * Where the reader is in the room shown: at the newest message, following what comes; or away
 * from it, with "Jump to latest" (and how many new messages are below) until back; and where a
 * room opens (at the newest message, or at the "new messages" line). rooms.ts says when.
 */

import type { Ui } from "./elements.ts";
import type { Room } from "./room.ts";

/** Within this many px of the bottom the view counts as "at the bottom" and follows new messages. */
const STICK_PX = 48;
/** Space kept above the "new messages" divider when a room opens at it. */
const DIVIDER_MARGIN_PX = 40;

export function atBottom(log: HTMLElement): boolean {
  return log.scrollHeight - log.scrollTop - log.clientHeight < STICK_PX;
}

/** "Jump to latest", and "Jump to latest · 3 new" when messages came below while the reader was away. */
export function jumpText(below: number): string {
  return below > 0 ? `Jump to latest · ${below} new` : "Jump to latest";
}

export type Position = ReturnType<typeof createPosition>;

/** `shown` says whether a room is the one on screen; `read` marks what the reader sees as read. */
export function createPosition(ui: Ui, shown: (room: Room) => boolean, read: (room: Room) => void) {
  /** Shows or hides "Jump to latest" for the room shown: there whenever the view is away from the newest message. */
  function drawJump(room: Room): void {
    if (!shown(room)) return;
    ui.pill.hidden = room.stuck;
    ui.pill.textContent = jumpText(room.below);
  }

  function toBottom(room: Room): void {
    room.view.log.scrollTop = room.view.log.scrollHeight;
    room.stuck = true;
    room.below = 0;
    drawJump(room);
  }

  /**
   * "Jump to latest": the reader asked for the bottom, and the view must end there. A scroll
   * animation still in flight (PageUp, an arrow key, a smooth wheel) is not stopped by setting
   * scrollTop: Chromium moves its target by as much and lets it run on, so the view would end
   * that far above the bottom. A programmatic smooth scroll takes over any animation in flight,
   * and the instant one in toBottom right after ends it, at the bottom.
   */
  function jump(room: Room): void {
    const log = room.view.log;
    log.scrollTo({ top: log.scrollHeight, behavior: "smooth" });
    toBottom(room);
  }

  /** The reader scrolled: at the bottom again, or away from it. */
  function scrolled(room: Room): void {
    const log = room.view.log;
    room.stuck = atBottom(log);
    room.scrollTop = log.scrollTop;
    if (room.stuck) room.below = 0;
    drawJump(room);
    read(room);
  }

  /**
   * Shows a room as a chat app opens it: at the newest message, or, when there is news since the
   * reader was last here, at the "new messages" line, if all of it does not fit below.
   */
  function land(room: Room): void {
    room.land = false;
    const log = room.view.log;
    const divider = room.divider?.el;
    if (divider?.isConnected) {
      log.scrollTop += divider.getBoundingClientRect().top - log.getBoundingClientRect().top - DIVIDER_MARGIN_PX;
    } else {
      log.scrollTop = log.scrollHeight;
    }
    room.stuck = atBottom(log);
    room.scrollTop = log.scrollTop;
    drawJump(room);
    read(room);
  }

  /** The room is shown now: where it should open, or where the reader left it. */
  function open(room: Room): void {
    const unseen = room.divider !== null && (room.readSeq === null || room.readSeq < room.divider.seq);
    if (room.land || unseen) return land(room);
    if (room.stuck) toBottom(room);
    else room.view.log.scrollTop = room.scrollTop;
    drawJump(room);
  }

  /** New rows at the bottom (`messages` of them new messages): followed if the reader is there, else counted below. */
  function follow(room: Room, messages = 0): void {
    if (!shown(room)) return;
    if (room.stuck) toBottom(room);
    else room.below += messages;
    drawJump(room);
    read(room);
  }

  return { drawJump, toBottom, jump, scrolled, land, open, follow };
}
