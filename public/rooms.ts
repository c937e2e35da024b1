/**
 * The rooms of this tab and what happens in them: which room is shown, joining and catching up
 * (the sequence itself is sync.ts's), messages and the stored events beside them (settings lines,
 * edits, deletions) shown in seq order with unread counts and the "new messages" line, older
 * pages, presence lines, members and who is typing.
 */

import {
  DEFAULT_SETTINGS,
  type ClientFrame,
  type HistoryPage,
  type JoinedFrame,
  type MessageFrame,
  type RoomSettings,
  type StoredFrame,
  type UserRef,
} from "../src/protocol/wire.ts";
import type { Connection } from "./connection.ts";
import type { Directory } from "./directory.ts";
import { now, reconcile } from "./dom.ts";
import { mentions } from "./format.ts";
import type { Ui } from "./elements.ts";
import { createMessageLog, quoteOf, settingsLine, settingsOf } from "./events.ts";
import { hashFor, type Hash } from "./hash.ts";
import type { Identity, Self } from "./identity.ts";
import type { Outbox } from "./outbox.ts";
import { createPresence } from "./presence.ts";
import { createPosition } from "./position.ts";
import { mayWriteFreely, rankOf } from "./rights.ts";
import { createNav, createView, drawEmpty, drawNav, drawOlder, drawOut, drawSync, memberItems, placeDivider, titleOf, type Room } from "./room.ts";
import { sent as slowSent } from "./slow.ts";
import { createRoomSync, refFor, type Step } from "./sync.ts";
import { eventRow, insertBySeq, layout, messageRow, redrawMessage, regroupPending } from "./timeline.ts";

/** The room shown when the URL names none. */
export const DEFAULT_ROOM = "general";
/** Messages fetched per "Load older" click. */
const OLDER_PAGE = 50;
/** Scrolling up to within this many px of the top fetches the next older page. */
const OLDER_PX = 150;
/**
 * After our own reconnect, members we had before who join again within this long are old
 * company coming back (a server restart drops everyone), not news: no presence line.
 */
const RETURN_QUIET_MS = 60_000;
/** The line above a room shown again from its new start. */
const RESET_LINE = "This room's history was reset on the server: it starts again here.";

export interface RoomsDeps {
  ui: Ui;
  link: Connection;
  self: Self;
  identity: Identity;
  outbox: Outbox;
  directory: Directory;
  notice(text: string): void;
  /** A message names the reader. */
  mentioned(room: string, m: MessageFrame): void;
  /** Our own name changed (a rename seen in a room). */
  renamed(user: UserRef): void;
  /** An older page arrived: a reply's original may be shown now. */
  olderArrived(room: Room): void;
  /** The room's history was reset: a reply begun to a message of it would answer another one now. */
  restarted(room: Room): void;
  /** A room was made: whatever keeps us out of it (a ban this browser remembers) is set now. */
  made(room: Room): void;
  /** A room's role, settings or standing changed, or it is now the one shown: the page redraws what depends on them. */
  changed(room: Room): void;
  /** Whether the reader may act on `user` in the room shown (the member list offers a menu). */
  actsOn(room: Room, user: UserRef): boolean;
}

export type Rooms = ReturnType<typeof createRooms>;

/** This tab's rooms; nothing happens until the page calls in. */
export function createRooms(deps: RoomsDeps) {
  const { ui, link, self, identity, outbox, directory, notice } = deps;
  const rooms = new Map<string, Room>();
  /** The room shown. */
  let current = DEFAULT_ROOM;
  const position = createPosition(ui, (room) => room.name === current, markRead);
  const follow = position.follow;
  const presence = createPresence({ ui, self, get, currentRoom, follow, renderMembers, renderRooms, renamed: deps.renamed });
  const renderTyping = presence.renderTyping;

  function get(name: string): Room | undefined {
    return rooms.get(name);
  }

  function names(): string[] {
    return [...rooms.keys()];
  }

  function currentRoom(): Room | undefined {
    return rooms.get(current);
  }

  /** The room, made (and joined, when connected) if we were not in it; `invite` goes with its next join. */
  function ensure(name: string, invite?: string): Room {
    const existing = rooms.get(name);
    if (existing) {
      if (invite && existing.sync.phase !== "live") {
        existing.invite = invite;
        // An invite to a room we were sent out of is a reason to ask again.
        if (existing.out) rejoin(existing);
      }
      return existing;
    }
    const room: Room = {
      name,
      sync: createRoomSync(name),
      log: createMessageLog(),
      hasOlder: false,
      loadingOlder: false,
      seeking: null,
      members: new Map(),
      roles: new Map(),
      role: "member",
      settings: { ...DEFAULT_SETTINGS },
      settingsSeq: 0,
      pagedSettings: null,
      invite: invite ?? null,
      out: null,
      action: undefined,
      mutedUntil: 0,
      lastSent: 0,
      muted: new Map(),
      returning: new Map(),
      typing: new Map(),
      unread: 0,
      mentions: 0,
      readSeq: identity.readPositions()[name] ?? null,
      divider: null,
      land: false,
      stuck: true,
      below: 0,
      scrollTop: 0,
      view: createView(name, ui.rooms, notice),
      nav: createNav(name, ui.myRooms, () => {
        leave(name, true);
        currentRoom()?.nav.link.focus();
      }),
    };
    rooms.set(name, room);
    room.view.older.addEventListener("click", () => loadOlder(room));
    room.view.out.querySelector(".rejoin")!.addEventListener("click", () => rejoin(room));
    room.view.log.addEventListener(
      "scroll",
      () => {
        const log = room.view.log;
        const up = log.scrollTop < room.scrollTop;
        position.scrolled(room);
        // Only the reader's own scrolling up fetches more: a short room at rest must not page on its own.
        if (up && log.scrollTop < OLDER_PX && room.hasOlder) loadOlder(room);
      },
      { passive: true },
    );
    save();
    deps.made(room);
    drawOut(room);
    if (link.ready) {
      join(room);
      void directory.refresh();
    }
    renderRooms();
    return room;
  }

  /** Opens a room (joining it if need be, with `invite`) and shows it. */
  function open(name: string, invite?: string): void {
    ensure(name, invite);
    select(name);
  }

  /**
   * Goes where the address says: its room, with its invite. An address that names no room keeps
   * the room shown (and puts it back in the address), saying why.
   */
  function goTo(hash: Hash): void {
    if (hash.invalid !== undefined) {
      notice(`"${hash.invalid}" is not a room name: use up to 32 of a-z 0-9 _ -, starting with a letter or digit.`);
      return open(current);
    }
    open(hash.room ?? (hash.token ? current : DEFAULT_ROOM), hash.invite);
  }

  function select(name: string): void {
    const room = rooms.get(name);
    if (!room) return;
    current = name;
    // Also takes an invite code or a login ticket out of the address (and out of the history).
    if (location.hash !== hashFor(name)) history.replaceState(null, "", hashFor(name));
    for (const other of rooms.values()) other.view.section.hidden = other !== room;
    // Opening a room with news the reader has not seen starts at the "new messages" line.
    position.open(room);
    if (inView(room)) room.unread = room.mentions = 0;
    markRead(room);
    ui.roomTitle.textContent = `#${name}`;
    ui.composerLabel.textContent = `Message #${name}`;
    ui.text.placeholder = `Message #${name}`;
    drawer(false);
    renderRooms();
    renderMembers();
    renderTyping();
    deps.changed(room);
  }

  function leave(name: string, tellServer: boolean): void {
    const room = rooms.get(name);
    if (!room) return;
    if (tellServer) link.send({ type: "leave", room: name, ref: refFor("leave", name) });
    outbox.discardRoom(name);
    room.view.section.remove();
    room.nav.item.remove();
    rooms.delete(name);
    save();
    if (rooms.size === 0) ensure(DEFAULT_ROOM);
    if (current === name) select(rooms.keys().next().value ?? DEFAULT_ROOM);
    renderRooms();
    void directory.refresh();
  }

  /** Signed out: every room goes from the page, without a word to the server. */
  function clear(): void {
    for (const room of rooms.values()) {
      room.view.section.remove();
      room.nav.item.remove();
    }
    rooms.clear();
  }

  /** The rooms of this browser's user, for every tab; only once we are someone. */
  function save(): void {
    if (self.me) identity.saveRooms(rooms.keys());
  }

  /** Opens or closes the sidebar drawer (narrow screens); opening it refreshes the directory. */
  function drawer(open: boolean): void {
    ui.app.classList.toggle("nav-open", open);
    ui.menuToggle.setAttribute("aria-expanded", String(open));
    if (open && link.ready) void directory.refresh();
  }

  // ─── Join, catch up, go live ───────────────────────────────────────────────────────────────

  /** (Re)joins a room: from where it was, if it was here before; not while we are out of it. */
  function join(room: Room): void {
    if (!room.out) link.send(withInvite(room, room.sync.join()));
    drawSync(room);
  }

  /** A join carries the room's invite code until the room is joined. */
  function withInvite(room: Room, frame: ClientFrame): ClientFrame {
    return frame.type === "join" && room.invite ? { ...frame, invite: room.invite } : frame;
  }

  /** The reader asks to be back in a room it was sent out of (the server says whether it may). */
  function rejoin(room: Room): void {
    room.out = null;
    drawOut(room);
    deps.changed(room);
    if (link.ready) join(room);
  }

  /** A line about the room (a moderation action, say) at the bottom of its log; the caller may add to it. */
  function line(room: Room, text: string): HTMLLIElement {
    const row = eventRow(text, now());
    room.view.list.append(row);
    layout(room.view.list);
    follow(room);
    return row;
  }

  /** We are out of the room (kicked, banned, refused): it stays, saying `text`, and is not joined again by itself. */
  function shut(room: Room, text: string, canRejoin: boolean): void {
    room.out = { text, rejoin: canRejoin };
    room.sync.lost();
    room.members.clear();
    room.typing.clear();
    outbox.discardRoom(room.name);
    drawOut(room);
    drawSync(room);
    if (room.name === current) follow(room);
    renderMembers();
    deps.changed(room);
  }

  /** Welcomed: every room rejoins. */
  function joinAll(): void {
    for (const room of rooms.values()) join(room);
  }

  /** The connection is gone: nothing is in flight, and the people here now are old company when we return. */
  function lost(): void {
    const until = now() + RETURN_QUIET_MS;
    for (const room of rooms.values()) {
      for (const id of room.members.keys()) if (id !== self.me?.id) room.returning.set(id, until);
      room.sync.lost();
      room.loadingOlder = false;
      room.typing.clear();
      drawOlder(room);
      drawSync(room);
    }
    renderTyping();
  }

  /** Asks again what the server refused for a passing reason, unless the room has moved on. */
  function retry(room: Room, kind: "join" | "forward"): void {
    const frame = room.sync.retry(kind);
    if (!frame) return;
    link.send(withInvite(room, frame));
    drawSync(room);
  }

  function onJoined(f: JoinedFrame): void {
    const room = rooms.get(f.room);
    const step = room?.sync.joined(f);
    if (!room || !step) return;
    if (step.reset) restart(room);
    // A read position kept from the room's old sequence (a reset seen by another tab, or while this browser was away) goes too.
    if (identity.readIn(room.name, f.epoch, step.reset)) room.readSeq = null;
    room.members = new Map(f.members.map(({ role, ...u }) => [u.id, u]));
    room.roles = new Map(f.members.flatMap((u) => (u.role ? [[u.id, u.role] as const] : [])));
    room.role = f.role ?? "member";
    room.invite = null;
    // A mute of ours lifted while we were away was said live only: the server's `muted` says again if it holds.
    room.mutedUntil = 0;
    for (const id of room.members.keys()) room.returning.delete(id);
    addMessages(room, f.messages, step.fresh, step.resumed ? "news" : "join");
    // These are the room's settings now; pages still to come tell changes from where the join's messages left off.
    room.pagedSettings = room.settings;
    room.settings = { ...DEFAULT_SETTINGS, ...f.settings };
    room.settingsSeq = f.seq;
    deps.changed(room);
    if (!step.resumed) {
      room.hasOlder = !f.complete;
      drawOlder(room);
      room.land = true;
      if (room.name === current) position.land(room);
    }
    advance(room, step);
    renderMembers();
    renderRooms();
  }

  /**
   * The room's history was reset on the server (its storage lost it): what we show of it is no
   * longer its history. It goes, seen seqs with it (sync.ts), and a line says why above the room's
   * new start.
   */
  function restart(room: Room): void {
    room.settingsSeq = 0;
    room.view.list.replaceChildren();
    room.log.clear();
    room.divider = null;
    room.readSeq = null;
    room.seeking = null;
    room.unread = room.mentions = 0;
    room.hasOlder = false;
    drawOlder(room);
    line(room, RESET_LINE);
    // An edit in progress went with its row; a reply's seq now names another message.
    deps.restarted(room);
  }

  function onHistory(f: HistoryPage): void {
    const room = rooms.get(f.room);
    if (!room) return;
    if (f.ref === refFor("older", room.name)) return olderArrived(room, f);
    const step = room.sync.history(f);
    if (!step) return;
    addMessages(room, f.messages, step.fresh, "news");
    advance(room, step);
  }

  function onMessage(m: StoredFrame): void {
    const room = rooms.get(m.room);
    if (!room) return;
    const step = room.sync.message(m);
    addMessages(room, [m], step.fresh, "news");
    if (step.send) advance(room, step);
  }

  /** Sends what the room asks next; once live, its unsent messages go and what is seen is read. */
  function advance(room: Room, step: Step): void {
    if (step.send) link.send(step.send);
    drawSync(room);
    if (!step.live) return;
    outbox.flush(room.name);
    markRead(room);
  }

  /** Fetches the page before the oldest entry shown (`limit` of them). */
  function loadOlder(room: Room, limit = OLDER_PAGE): void {
    // With nothing shown (HISTORY_ON_JOIN=0), from the seq the room stood at.
    const first = room.sync.minSeq || (room.sync.lastSeq ?? 0) + 1;
    if (room.loadingOlder || !link.ready || first <= 1) return;
    room.loadingOlder = true;
    drawOlder(room);
    link.send({ type: "history", room: room.name, before: first, limit, ref: refFor("older", room.name) });
  }

  function olderFailed(room: Room): void {
    room.loadingOlder = false;
    drawOlder(room);
  }

  function olderArrived(room: Room, f: HistoryPage): void {
    const log = room.view.log;
    // Keep what the user is looking at in place while rows appear above it.
    const fromBottom = log.scrollHeight - log.scrollTop;
    room.loadingOlder = false;
    room.hasOlder = !f.complete;
    addMessages(room, f.messages, room.sync.older(f.messages), "older");
    log.scrollTop = log.scrollHeight - fromBottom;
    drawOlder(room);
    deps.olderArrived(room);
  }

  // ─── Messages, unread, reading ─────────────────────────────────────────────────────────────

  /**
   * Shows `fresh` (the messages of `messages` not shown yet) in seq order, and confirms our own
   * pending ones among `messages`. `kind` says where they come from: the first `joined` of this
   * page ("join": news only past what this browser has read), live frames and catch-up after a
   * reconnect ("news"), or "older" pages. News out of sight counts as unread (mentions of the
   * reader apart), and the "new messages" line goes above the first of it.
   */
  function addMessages(room: Room, entries: readonly StoredFrame[], freshEntries: readonly StoredFrame[], kind: "join" | "news" | "older"): void {
    const messages = entries.filter((m) => m.type === "message");
    const fresh = freshEntries.filter((m) => m.type === "message");
    const me = self.me;
    for (const m of messages) {
      outbox.echoed(m, me?.id);
      // Ours, sent from this tab or another: in slow mode, the next one waits.
      if (kind === "news" && m.user.id === me?.id && slowSent(room, m, mayWriteFreely(rankOf(room.role, self.admin)), Date.now())) deps.changed(room);
    }
    addEvents(room, freshEntries, kind);
    // Our own message means we had read what came before it, wherever we wrote it.
    let readUpTo = room.readSeq;
    if (kind === "join" && readUpTo !== null) for (const m of messages) if (m.user.id === me?.id) readUpTo = Math.max(readUpTo, m.seq);
    const seeing = kind === "news" && inView(room) && room.stuck;
    /** News from others, below the view if the reader is away from the bottom. */
    let arrived = 0;
    for (const m of fresh) {
      const mine = m.user.id === me?.id;
      const li = messageRow(room.log.add(m), mine, me?.name ?? null, m.replyTo === undefined ? null : quoteOf(room.log.get(m.replyTo)));
      const mentioned = !mine && me !== null && mentions(m.text, me.name);
      li.classList.toggle("mentions-me", mentioned);
      insertBySeq(room.view.list, li, m.seq);
      // A message just written ends its author's typing; an old one shown now says nothing of it.
      if (kind === "news") room.typing.delete(m.user.id);
      const news = kind === "news" || (kind === "join" && readUpTo !== null && m.seq > readUpTo);
      if (!news || mine) continue;
      if (kind === "news") arrived++;
      if (!inView(room)) {
        room.unread++;
        if (mentioned) room.mentions++;
      }
      if (mentioned && kind === "news") deps.mentioned(room.name, m);
      if (!seeing) placeDivider(room, li, m.seq);
    }
    for (const m of fresh) redrawQuotes(room, m.seq);
    if (fresh.length === 0) return;
    layout(room.view.list);
    regroupPending(room.view.list, room.view.outbox, me?.id);
    drawEmpty(room);
    if (kind === "news") follow(room, arrived);
    renderTyping();
    renderRooms();
  }

  /**
   * The stored events among `fresh`: a settings change is a line in the log (and, unless it comes
   * from an older page, the room's settings now); an edit or a deletion changes its message in place.
   */
  function addEvents(room: Room, fresh: readonly StoredFrame[], kind: "join" | "news" | "older"): void {
    let before: RoomSettings | null = null;
    let lines = false;
    for (const e of fresh) {
      if (e.type === "settings") {
        // Newer than the settings held, it changes them; older (a catch-up page), it is told against the catch-up's.
        const current = kind === "news" && e.seq > room.settingsSeq;
        const was = current ? room.settings : kind === "news" ? room.pagedSettings : before;
        insertBySeq(room.view.list, eventRow(settingsLine(was, e), e.ts, e.seq), e.seq);
        before = settingsOf(e);
        lines = true;
        if (current) {
          room.settings = before;
          room.settingsSeq = e.seq;
          deps.changed(room);
        } else if (kind === "news") {
          room.pagedSettings = before;
        }
      } else if (e.type === "edit" || e.type === "delete") {
        const changed = room.log.change(e);
        const li = room.view.list.querySelector<HTMLLIElement>(`.msg[data-seq="${e.target}"]`);
        if (changed && li) redrawMessage(li, changed, self.me?.name ?? null, changed.replyTo === undefined ? null : quoteOf(room.log.get(changed.replyTo)));
        redrawQuotes(room, e.target);
      }
    }
    if (!lines) return;
    layout(room.view.list);
    drawEmpty(room);
    if (kind === "news") follow(room);
  }

  /** The replies to `seq` quote it as it is now (loaded, edited or deleted). */
  function redrawQuotes(room: Room, seq: number): void {
    const quote = quoteOf(room.log.get(seq));
    for (const el of room.view.list.querySelectorAll(`.quote[data-target="${seq}"] .quote-text`)) el.textContent = quote;
  }

  /** The reader sees the bottom of the room: everything in it is read (in every tab of this browser). */
  function markRead(room: Room): void {
    if (!inView(room) || !room.stuck || room.sync.phase !== "live") return;
    const seq = room.sync.maxSeq;
    if (seq === 0 || (room.readSeq !== null && seq <= room.readSeq)) return;
    room.readSeq = seq;
    identity.markRead(room.name, seq);
  }

  /** Another tab read further: so did we. */
  function readElsewhere(read: Record<string, number>): void {
    for (const room of rooms.values()) {
      const seq = read[room.name];
      if (seq !== undefined && seq > (room.readSeq ?? 0)) room.readSeq = seq;
    }
  }

  /** The tab came into view: the room shown is read. */
  function seen(): void {
    const room = currentRoom();
    if (!room || !inView(room)) return;
    room.unread = room.mentions = 0;
    markRead(room);
    renderRooms();
  }

  /** We wrote in `room`: the reader has caught up, so the "new messages" line has done its job. */
  function wrote(room: Room): void {
    room.divider?.el.remove();
    room.divider = null;
    position.toBottom(room);
  }

  /** The app appears: the room shown opens where it should. */
  function reveal(): void {
    const room = currentRoom();
    if (room?.land) position.land(room);
    else if (room) position.toBottom(room);
  }

  /** "Jump to latest": to the bottom of the room shown. */
  function toBottom(): void {
    const room = currentRoom();
    if (room) position.jump(room);
    ui.text.focus();
  }

  /** The window changed size: rows rewrap, and a view at the bottom stays there. */
  function keepBottom(): void {
    const room = currentRoom();
    if (room?.stuck) position.toBottom(room);
  }

  function inView(room: Room): boolean {
    return room.name === current && document.visibilityState === "visible";
  }

  // ─── Drawing ───────────────────────────────────────────────────────────────────────────────

  /**
   * Updates the sidebar in place: rebuilding it on every message would take keyboard focus away
   * from whoever is tabbing through it.
   */
  function renderRooms(): void {
    for (const room of rooms.values()) drawNav(room.nav, room.name === current, room.unread, room.mentions, rooms.size === 1);
    directory.render((name) => rooms.has(name));
    document.title = titleOf(rooms.values(), current);
  }

  function renderMembers(): void {
    const room = currentRoom();
    const members = [...(room?.members.values() ?? [])];
    ui.membersTitle.textContent = `In #${current} · ${members.length}`;
    ui.roomMembers.textContent = members.length === 1 ? "1 online" : `${members.length} online`;
    reconcile(ui.members, room ? memberItems(members, self.me?.id, room.roles, (u) => deps.actsOn(room, u)) : []);
  }

  return {
    // Which rooms, which one is shown, the sidebar.
    get, names, currentRoom, ensure, open, goTo, leave, clear, save, drawer, readElsewhere, renderRooms, renderMembers,
    // The connection and the frames of the rooms.
    join, joinAll, lost, retry, onJoined, onHistory, onMessage, olderFailed, onPresence: presence.onPresence, onTyping: presence.onTyping, line, shut, rejoin, loadOlder,
    // What the reader does: looks, writes, scrolls.
    seen, wrote, reveal, toBottom, keepBottom,
  };
}
