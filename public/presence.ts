/**
 * Who is in each room and who is typing: presence frames (joins, leaves, renames) as lines in the
 * log and changes to the member list, typing notices as "alice is typing…". Made by rooms.ts,
 * which owns the rooms.
 */

import type { PresenceFrame, TypingNotice, UserRef } from "../src/protocol/wire.ts";
import { now } from "./dom.ts";
import type { Ui } from "./elements.ts";
import type { Self } from "./identity.ts";
import { typingText, type Room } from "./room.ts";
import { addPresence, layout, renameRow } from "./timeline.ts";

/** "alice is typing…" lasts this many of her typing periods (typingThrottleMs) after her last frame. */
const TYPING_SHOW_PERIODS = 3;
/** …and at least this long, for servers with a very short throttle. */
const TYPING_SHOW_MIN_MS = 3_000;
/** The typing line is redrawn this long after a notice would end, so that the redraw finds it over. */
const TYPING_REDRAW_LAG_MS = 50;

export interface PresenceDeps {
  ui: Ui;
  self: Self;
  get(name: string): Room | undefined;
  currentRoom(): Room | undefined;
  /** New rows at the bottom of `room`: follow them (or offer the pill). */
  follow(room: Room): void;
  renderMembers(): void;
  renderRooms(): void;
  /** Our own name changed (a rename seen in a room). */
  renamed(user: UserRef): void;
}

export function createPresence(deps: PresenceDeps) {
  const { ui, self, follow, renderMembers, renderRooms } = deps;

  function onPresence(f: PresenceFrame): void {
    const room = deps.get(f.room);
    if (!room) return;
    if (f.event === "rename") return rename(room, f.user);
    if (f.event === "join") {
      // Someone already listed, or back after our own reconnect, is not news.
      const back = (room.returning.get(f.user.id) ?? 0) > now();
      room.returning.delete(f.user.id);
      const known = room.members.has(f.user.id);
      room.members.set(f.user.id, f.user);
      if (!back && !known) addPresence(room.view.list, f.user, "join", now());
    } else {
      room.members.delete(f.user.id);
      room.typing.delete(f.user.id);
      addPresence(room.view.list, f.user, "leave", now());
    }
    layout(room.view.list);
    follow(room);
    renderMembers();
    renderRooms();
    renderTyping();
  }

  /** A member took a new name (v1.1): the list shows it, and so does a line; if it is us, so do we. */
  function rename(room: Room, user: UserRef): void {
    const before = room.members.get(user.id)?.name;
    room.members.set(user.id, user);
    if (user.id === self.me?.id) deps.renamed(user);
    if (before !== undefined && before !== user.name) {
      room.view.list.append(renameRow(user, before, now()));
      layout(room.view.list);
      follow(room);
    }
    renderMembers();
  }

  function onTyping(f: TypingNotice): void {
    const room = deps.get(f.room);
    if (!room || f.user.id === self.me?.id) return;
    const showMs = Math.max(TYPING_SHOW_MIN_MS, TYPING_SHOW_PERIODS * (self.limits?.typingThrottleMs ?? 0));
    room.typing.set(f.user.id, { name: f.user.name, until: Date.now() + showMs });
    renderTyping();
    window.setTimeout(renderTyping, showMs + TYPING_REDRAW_LAG_MS);
  }

  function renderTyping(): void {
    const room = deps.currentRoom();
    const at = Date.now();
    const names: string[] = [];
    for (const [id, t] of room?.typing ?? []) {
      if (t.until <= at) room!.typing.delete(id);
      else names.push(t.name);
    }
    ui.typing.textContent = typingText(names);
  }

  return { onPresence, onTyping, renderTyping };
}
