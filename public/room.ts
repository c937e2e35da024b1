/**
 * One room as the page holds it: its state, its elements (the log with a "Load older" button,
 * the hint of an empty room, the messages and our pending ones; its entry in the sidebar's "Your
 * rooms"), and how the elements are drawn from the state. When the state changes is rooms.ts's job.
 */

import type { ModerationFrame, Role, RoomSettings, UserRef } from "../src/protocol/wire.ts";
import { h } from "./dom.ts";
import type { MessageLog } from "./events.ts";
import type { RoomSync } from "./sync.ts";
import { avatar } from "./timeline.ts";

export interface Room {
  name: string;
  /** Where the room stands in its sequence; its phase says whether unsent messages may go. */
  sync: RoomSync;
  /** Its messages as they are now (edits and deletions applied). */
  log: MessageLog;
  hasOlder: boolean;
  loadingOlder: boolean;
  /** A seq the reader asked to see (a reply's original): older pages load until it is shown. */
  seeking: number | null;
  members: Map<string, UserRef>;
  /** Who holds a role other than "member" here, by user id; known from `joined` and role changes. */
  roles: Map<string, Exclude<Role, "member">>;
  /** Our own role here, and the room's settings. */
  role: Role;
  settings: RoomSettings;
  /** The seq `settings` hold at: a settings event at or below it, seen while catching up, is history. */
  settingsSeq: number;
  /** The settings as of the last entry caught up with (what a settings event in a catch-up page changed). */
  pagedSettings: RoomSettings | null;
  /** An invite code (from an invite link) to send with the next join, once. */
  invite: string | null;
  /**
   * We are out of the room (kicked, banned, refused): it stays on screen saying why, and is not
   * joined again until the reader asks (`rejoin`) or, for a ban, it ends.
   */
  out: { text: string; rejoin: boolean } | null;
  /** The latest moderation frame about us here: why we were sent out, or muted. */
  action: ModerationFrame | undefined;
  /** Until when we are muted here (epoch ms; 0: not). */
  mutedUntil: number;
  /** When we last sent here while slow mode was on, as slow.ts keeps it (epoch ms; 0: never). */
  lastSent: number;
  /** Members a moderator saw muted here, until when (from live frames). */
  muted: Map<string, number>;
  /** Members before our last disconnect, and until when their return is not news. */
  returning: Map<string, number>;
  typing: Map<string, { name: string; until: number }>;
  unread: number;
  /** Unread messages that mention the reader, counted apart. */
  mentions: number;
  /** The newest seq the reader has seen in this browser (any tab); null if never here. */
  readSeq: number | null;
  /** The "new messages" line and the seq of the first message below it. */
  divider: { el: HTMLLIElement; seq: number } | null;
  /** Opened at the newest message (or the divider) once laid out: hidden rooms have no layout yet. */
  land: boolean;
  /** The view follows new messages: the user has not scrolled up. */
  stuck: boolean;
  /** New messages that came below the view while the reader was away from the bottom. */
  below: number;
  scrollTop: number;
  view: RoomView;
  /** Its entry in the sidebar's "Your rooms". */
  nav: RoomNav;
}

export interface RoomView {
  section: HTMLElement;
  log: HTMLElement;
  older: HTMLButtonElement;
  /** Shown in a room with no message yet: its link, to share. */
  empty: HTMLElement;
  list: HTMLOListElement;
  outbox: HTMLOListElement;
  /** Shown while we are out of the room: why, and a button to join again. */
  out: HTMLElement;
}

export interface RoomNav {
  item: HTMLLIElement;
  link: HTMLAnchorElement;
  badge: HTMLSpanElement;
  mentionBadge: HTMLSpanElement;
  leave: HTMLButtonElement;
}

/** A hidden room section, appended to `container`; `notice` tells of a failed copy of its link. */
export function createView(name: string, container: HTMLElement, notice: (text: string) => void): RoomView {
  const older = h("button", { class: "older", text: "Load older messages", attrs: { type: "button" } });
  older.hidden = true;
  const empty = emptyHint(name, notice);
  const list = h("ol", { class: "messages" });
  const outbox = h("ol", { class: "outbox", attrs: { "aria-label": "Not yet sent" } });
  const out = h("div", { class: "out-note", attrs: { role: "status" } }, h("p", { class: "out-text" }), h("button", { class: "rejoin", text: `Join #${name} again`, attrs: { type: "button" } }));
  out.hidden = true;
  const log = h(
    "div",
    { class: "log", attrs: { role: "log", "aria-label": `Messages in #${name}`, tabindex: "0" } },
    older,
    empty,
    list,
    outbox,
    out,
  );
  const section = h("section", { class: "room", attrs: { "aria-label": `#${name}` } }, log);
  section.dataset.room = name;
  section.dataset.sync = "idle";
  section.hidden = true;
  // Before "Jump to latest" (the container's own last child), so Tab reaches it right after the log.
  container.insertBefore(section, container.querySelector(":scope > .pill"));
  return { section, log, older, empty, list, outbox, out };
}

/** What an empty room says: nothing here yet, and the link that brings people to it. */
function emptyHint(name: string, notice: (text: string) => void): HTMLElement {
  const url = new URL(`#${name}`, location.href).href;
  const copy = h("button", { class: "link-button", text: "Copy link", attrs: { type: "button" } });
  copy.hidden = !navigator.clipboard;
  copy.addEventListener("click", () => {
    navigator.clipboard.writeText(url).then(
      () => (copy.textContent = "Copied"),
      () => notice("Could not copy the link: select it and copy it by hand."),
    );
  });
  const hint = h(
    "div",
    { class: "empty-hint" },
    h("p", { class: "empty-title", text: `No messages in #${name} yet.` }),
    h("p", { text: "Say hello, or invite people with this link:" }),
    h("p", {}, h("a", { class: "share-link", text: url, attrs: { href: url, dir: "ltr" } }), " ", copy),
  );
  hint.hidden = true;
  return hint;
}

/** A room's entry in "Your rooms", appended to `container`; its × calls `leave`. */
export function createNav(name: string, container: HTMLElement, leave: () => void): RoomNav {
  const badge = h("span", { class: "badge" });
  const mentionBadge = h("span", { class: "mentions" });
  mentionBadge.hidden = true;
  const link = h(
    "a",
    { class: "room-link", attrs: { href: `#${name}` } },
    h("span", { class: "hash", text: "#" }),
    h("span", { class: "room-name", text: name }),
    mentionBadge,
    badge,
  );
  const leaveButton = h("button", { class: "icon-button leave", text: "×", attrs: { type: "button", "aria-label": `Leave #${name}` } });
  leaveButton.addEventListener("click", leave);
  const item = h("li", {}, link, leaveButton);
  container.append(item);
  return { item, link, badge, mentionBadge, leave: leaveButton };
}

/** Draws a sidebar entry: current or not, unread and mention counts, and × unless it is the only room. */
export function drawNav(nav: RoomNav, current: boolean, unread: number, mentions: number, only: boolean): void {
  if (current) nav.link.setAttribute("aria-current", "page");
  else nav.link.removeAttribute("aria-current");
  nav.badge.hidden = unread === 0;
  nav.badge.textContent = String(unread);
  nav.badge.setAttribute("aria-label", `${unread} unread`);
  nav.mentionBadge.hidden = mentions === 0;
  nav.mentionBadge.textContent = `@${mentions}`;
  nav.mentionBadge.setAttribute("aria-label", mentions === 1 ? "1 mention" : `${mentions} mentions`);
  nav.leave.hidden = only;
}

export function drawOlder(room: Room): void {
  const older = room.view.older;
  older.hidden = !room.hasOlder;
  older.disabled = room.loadingOlder;
  older.textContent = room.loadingOlder ? "Loading…" : "Load older messages";
}

/** Exposes the catch-up state for people (aria-busy) and tests (data-sync). */
export function drawSync(room: Room): void {
  const phase = room.sync.phase;
  room.view.section.dataset.sync = phase;
  room.view.log.setAttribute("aria-busy", String(phase === "joining" || phase === "paging"));
  drawEmpty(room);
}

/** A live room with no message, nor older ones to load, shows its link to share. */
export function drawEmpty(room: Room): void {
  room.view.empty.hidden = !(room.sync.phase === "live" && room.sync.size === 0 && !room.hasOlder) || room.out !== null;
}

/** Out of the room: why, and (when it may) a button to join again; in it: nothing. */
export function drawOut(room: Room): void {
  const { out } = room.view;
  out.hidden = room.out === null;
  out.querySelector(".out-text")!.textContent = room.out?.text ?? "";
  out.querySelector<HTMLButtonElement>(".rejoin")!.hidden = !room.out?.rejoin;
  room.view.section.dataset.out = String(room.out !== null);
  drawEmpty(room);
}

/** What the member list shows of a role. */
const ROLE_TAG = { owner: "owner", moderator: "mod" } as const;

/**
 * The member list, by name: each with its kind (member, bot) and role, the reader marked; `actions`
 * is true for those the reader may act on (kick, mute, ban, roles), who get a ⋯ button.
 */
export function memberItems(members: readonly UserRef[], meId: string | undefined, roles: ReadonlyMap<string, Exclude<Role, "member">>, actions: (u: UserRef) => boolean): HTMLLIElement[] {
  return [...members]
    .sort((a, b) => a.name.localeCompare(b.name))
    .map((u) => {
      const role = roles.get(u.id);
      const acts = actions(u);
      const li = h(
        "li",
        {},
        avatar(u.name, u.id),
        h("span", { class: "name", text: u.name, attrs: { dir: "auto" } }),
        u.kind !== undefined && h("span", { class: `tag ${u.kind}`, text: u.kind }),
        role !== undefined && h("span", { class: `tag role ${role}`, text: ROLE_TAG[role], attrs: { title: role === "owner" ? "Owner of the room" : "Moderator" } }),
        u.id === meId && h("span", { class: "you", text: "you" }),
        acts && h("button", { class: "icon-button member-actions", text: "⋯", attrs: { type: "button", "aria-haspopup": "menu", "aria-label": `Actions for ${u.name}` } }),
      );
      li.dataset.user = u.id;
      // What the row shows: the same key, the same row (reconcile keeps it, and its focus).
      li.dataset.key = JSON.stringify([u.id, u.name, u.kind ?? "", role ?? "", u.id === meId, acts]);
      return li;
    });
}

/** The tab's title: "(3) #dev · Chat" for 3 unread; "(@1 · 3) #dev · Chat" for 3 unread, 1 of them naming the reader. */
export function titleOf(rooms: Iterable<Room>, current: string): string {
  let unread = 0;
  let mentioned = 0;
  for (const room of rooms) {
    unread += room.unread;
    mentioned += room.mentions;
  }
  const counts = mentioned ? `(@${mentioned} · ${unread}) ` : unread ? `(${unread}) ` : "";
  return `${counts}#${current} · Chat`;
}

/** "alice is typing…", "alice and bob are typing…", "Several people are typing…", or "". */
export function typingText(names: readonly string[]): string {
  return names.length === 0
    ? ""
    : names.length === 1
      ? `${names[0]} is typing…`
      : names.length === 2
        ? `${names[0]} and ${names[1]} are typing…`
        : "Several people are typing…";
}

/**
 * The "new messages" line goes above `li`, unless it already marks news the reader has not
 * caught up with (then it stays where that news begins).
 */
export function placeDivider(room: Room, li: HTMLLIElement, seq: number): void {
  const old = room.divider;
  if (old && old.el.isConnected && (room.readSeq === null || room.readSeq < old.seq) && old.seq <= seq) return;
  old?.el.remove();
  // A list item (an `ol` holds only those), not a separator.
  const el = h("li", { class: "divider" }, h("span", { text: "New messages" }));
  li.before(el);
  room.divider = { el, seq };
}

