/**
 * The chat page: a protocol v1 client (src/protocol/wire.ts has the frame types) with rooms in the
 * URL hash, optimistic sends and gap-free resume after any disconnect.
 *
 * How a room stays exact. Each room keeps its messages by seq and `lastSeq`, the seq up to which
 * it has seen everything. On every welcome it rejoins with `since = lastSeq` and pages forward
 * with `history after` until `complete`; only then is it "live" and its unsent messages go out.
 * A message whose seq is known is ignored, so overlaps between pages and live frames are
 * harmless; a live seq that skips ahead means a gap, and the room pages forward again.
 *
 * Who you are. The session token, the name and the list of rooms live in localStorage, shared by
 * every tab of this browser: each tab has its own connection, and the server (protocol v1.1)
 * counts them as one user with one presence. Tabs follow each other through `storage` events
 * (rooms joined and left, a new name, signing out). Renaming is a new hello with the session.
 *
 * How a send stays exactly-once. A message gets a random id when typed and shows as pending. It
 * is (re)sent with that id whenever its room goes live, until its own `message` comes back with
 * the id; the server deduplicates on (room, user, id), so a resend of something already stored
 * only returns the original to us.
 */

import {
  HISTORY_PAGE_MAX,
  codePoints,
  isRoom,
  type ClientFrame,
  type ErrorCode,
  type ErrorFrame,
  type HistoryPage,
  type JoinedFrame,
  type Limits,
  type MessageFrame,
  type PresenceFrame,
  type ServerFrame,
  type TypingNotice,
  type UserRef,
  type WelcomeFrame,
} from "../src/protocol/wire.ts";
import { Connection, type Status } from "./connection.ts";
import { byId, h, mentions, now, randomId, shown } from "./dom.ts";
import { addPresence, avatar, eventRow, insertBySeq, layout, messageRow, pendingRow, regroupPending } from "./timeline.ts";

// ─── Constants ───────────────────────────────────────────────────────────────────────────────

/** The room shown when the URL names none. */
const DEFAULT_ROOM = "general";
/** Messages fetched per "Load older" click. */
const OLDER_PAGE = 50;
/** "alice is typing…" lasts this many of her typing periods (typingThrottleMs) after her last frame. */
const TYPING_SHOW_PERIODS = 3;
/** …and at least this long, for servers with a very short throttle. */
const TYPING_SHOW_MIN_MS = 3_000;
/** How long a sent message may wait for its echo before it offers a retry (plus its wait in the rate queue). */
const SEND_TIMEOUT_MS = 10_000;
/** Wait before redoing a request the server refused for a passing reason (rate_limited, internal). */
const RETRY_DELAY_MS = 1_000;
/** How often the sidebar's room directory is refreshed while connected and visible. */
const ROOMS_REFRESH_MS = 15_000;
/** Rooms listed in the directory, newest first. */
const DIRECTORY_SHOWN = 20;
/** Within this many px of the bottom the view counts as "at the bottom" and follows new messages. */
const STICK_PX = 48;
/** Scrolling up to within this many px of the top fetches the next older page. */
const OLDER_PX = 150;
/** Space kept above the "new messages" divider when a room opens at it. */
const DIVIDER_MARGIN_PX = 40;
/**
 * After our own reconnect, members we had before who join again within this long are old
 * company coming back (a server restart drops everyone), not news: no presence line.
 */
const RETURN_QUIET_MS = 60_000;
/** Longest text of a desktop notification. */
const NOTIFY_CHARS = 200;
/** The character counter appears once a text uses this share of maxTextChars. */
const COUNTER_FROM = 0.8;
/** How long a transient notice stays up. */
const NOTICE_MS = 6_000;
/** How often the "reconnecting in N s" countdown is redrawn. */
const COUNTDOWN_TICK_MS = 1_000;
/** The longest text accepted before the server has told us its limit. */
const FALLBACK_MAX_CHARS = 2_000;

/**
 * localStorage holds who you are and where (shared by the tabs of this browser): session token,
 * name, rooms, how far you read in each, whether mentions notify. sessionStorage holds one tab's
 * unsent messages.
 */
const KEY = {
  name: "chat.name",
  session: "chat.session",
  rooms: "chat.rooms",
  read: "chat.read",
  notify: "chat.notify",
  outbox: "chat.outbox",
} as const;
/** Touch screens have no Shift+Enter: there Enter is a newline and the Send button sends. */
const TOUCH = window.matchMedia("(pointer: coarse)").matches;

// ─── State ───────────────────────────────────────────────────────────────────────────────────

interface RoomView {
  section: HTMLElement;
  log: HTMLElement;
  older: HTMLButtonElement;
  /** Shown in a room with no message yet: its link, to share. */
  empty: HTMLElement;
  list: HTMLOListElement;
  outbox: HTMLOListElement;
}

interface Room {
  name: string;
  /** Every message shown, by seq. */
  messages: Map<number, MessageFrame>;
  /** Every seq up to this one has been seen: the `since` of the next join. Null before the first `joined`. */
  lastSeq: number | null;
  /** The `since` the outstanding join was sent with. */
  askedSince: number | null;
  /** idle (no connection) → joining → paging (catching up) → live (unsent messages may go). */
  sync: "idle" | "joining" | "paging" | "live";
  hasOlder: boolean;
  loadingOlder: boolean;
  members: Map<string, UserRef>;
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
  scrollTop: number;
  view: RoomView;
  /** Its entry in the sidebar's "Your rooms". */
  nav: { item: HTMLLIElement; link: HTMLAnchorElement; badge: HTMLSpanElement; mentionBadge: HTMLSpanElement; leave: HTMLButtonElement };
}

/** A message typed here and not yet confirmed by its own `message` frame. */
interface Outgoing {
  id: string;
  room: string;
  text: string;
  /** waiting: to be sent when the room is live · sent: on the wire · failed: needs the user (`error` says why). */
  state: "waiting" | "sent" | "failed";
  error: string;
  timer: number;
  el: HTMLLIElement;
}

/** An entry of `GET /api/rooms?recent=1`: a room with recent messages, newest first. */
interface DirectoryEntry {
  room: string;
  members: number;
}

const state = {
  /** The name the next hello asks for. */
  name: "",
  me: null as UserRef | null,
  limits: null as Limits | null,
  rooms: new Map<string, Room>(),
  current: DEFAULT_ROOM,
  outbox: new Map<string, Outgoing>(),
  directory: [] as DirectoryEntry[],
  /** While a new name is being asked for: the name to fall back to if it is refused. */
  renamingFrom: null as string | null,
  /** Counts welcomes, so a retry scheduled on one connection does nothing on the next. */
  generation: 0,
  lastTypingSent: 0,
};

const ui = {
  login: byId("login"),
  loginForm: byId<HTMLFormElement>("login-form"),
  loginName: byId<HTMLInputElement>("login-name"),
  loginError: byId("login-error"),
  loginSubmit: byId<HTMLButtonElement>("login-submit"),
  loginStatus: byId("login-status"),
  app: byId("app"),
  menuToggle: byId<HTMLButtonElement>("menu-toggle"),
  sidebar: byId("sidebar"),
  myRooms: byId("my-rooms"),
  joinForm: byId<HTMLFormElement>("join-form"),
  joinRoom: byId<HTMLInputElement>("join-room"),
  joinError: byId("join-error"),
  directory: byId("directory"),
  membersTitle: byId("members-title"),
  members: byId("members"),
  meName: byId("me-name"),
  renameButton: byId<HTMLButtonElement>("rename"),
  renameForm: byId<HTMLFormElement>("rename-form"),
  renameName: byId<HTMLInputElement>("rename-name"),
  renameError: byId("rename-error"),
  renameCancel: byId<HTMLButtonElement>("rename-cancel"),
  signOut: byId<HTMLButtonElement>("sign-out"),
  notify: byId<HTMLButtonElement>("notify"),
  skip: byId<HTMLButtonElement>("skip"),
  composerHint: byId("composer-hint"),
  roomTitle: byId("room-title"),
  roomMembers: byId("room-members"),
  status: byId("status"),
  statusText: byId("status-text"),
  banner: byId("banner"),
  bannerText: byId("banner-text"),
  bannerCountdown: byId("banner-countdown"),
  bannerRetry: byId<HTMLButtonElement>("banner-retry"),
  rooms: byId("rooms"),
  pill: byId<HTMLButtonElement>("new-pill"),
  notice: byId("notice"),
  typing: byId("typing"),
  composer: byId<HTMLFormElement>("composer"),
  composerLabel: byId("composer-label"),
  text: byId<HTMLTextAreaElement>("composer-text"),
  counter: byId("counter"),
  send: byId<HTMLButtonElement>("send"),
};

/** Storage that may be unavailable (private modes, quotas): the page then just forgets. */
function store(area: "local" | "session") {
  const get = (): Storage | null => {
    try {
      return area === "local" ? window.localStorage : window.sessionStorage;
    } catch {
      return null;
    }
  };
  return {
    read(key: string): string | null {
      try {
        return get()?.getItem(key) ?? null;
      } catch {
        return null;
      }
    },
    write(key: string, value: string): void {
      try {
        get()?.setItem(key, value);
      } catch {
        // Not remembering is acceptable; failing to chat is not.
      }
    },
    remove(key: string): void {
      try {
        get()?.removeItem(key);
      } catch {
        // Nothing stored, nothing to forget.
      }
    },
  };
}
const local = store("local");
const session = store("session");

const wsUrl = `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}/ws`;
const link = new Connection(wsUrl, {
  hello: () => {
    const token = local.read(KEY.session);
    return token ? { type: "hello", name: state.name, session: token, ref: "hello" } : { type: "hello", name: state.name, ref: "hello" };
  },
  welcome: onWelcome,
  frame: onFrame,
  lost: onLost,
  status: renderStatus,
});

// ─── Connection events ───────────────────────────────────────────────────────────────────────

function onWelcome(f: WelcomeFrame): void {
  state.generation++;
  state.me = f.user;
  state.limits = f.limits;
  state.name = f.user.name;
  local.write(KEY.session, f.session);
  local.write(KEY.name, f.user.name);
  saveRooms();
  if (state.renamingFrom !== null) {
    state.renamingFrom = null;
    showRename(false);
  }
  showApp();
  ui.meName.textContent = f.user.name;
  for (const room of state.rooms.values()) sendJoin(room);
  updateCounter();
  void refreshDirectory();
}

function onLost(): void {
  const until = now() + RETURN_QUIET_MS;
  for (const room of state.rooms.values()) {
    for (const id of room.members.keys()) if (id !== state.me?.id) room.returning.set(id, until);
    room.sync = "idle";
    room.loadingOlder = false;
    room.typing.clear();
    renderOlder(room);
    renderSync(room);
  }
  for (const item of state.outbox.values()) {
    window.clearTimeout(item.timer);
    // It may have arrived or not: it goes again, with the same id, once the room is live.
    if (item.state === "sent") item.state = "waiting";
    renderOutgoing(item);
  }
  renderTyping();
}

function onFrame(f: ServerFrame): void {
  switch (f.type) {
    case "joined":
      return onJoined(f);
    case "message":
      return onMessage(f);
    case "history":
      return onHistory(f);
    case "presence":
      return onPresence(f);
    case "typing":
      return onTyping(f);
    case "error":
      return onError(f);
    case "left":
    case "welcome":
    case "pong":
      return;
  }
}

// ─── Rooms: join, catch up, go live ──────────────────────────────────────────────────────────

/** Refs name what an answer or error is about: `join:general`, `older:dev`. Ids of sends have no colon. */
const refFor = (kind: "join" | "forward" | "older" | "leave" | "typing", room: string) => `${kind}:${room}`;

function sendJoin(room: Room): void {
  room.sync = "joining";
  room.askedSince = room.lastSeq;
  const ref = refFor("join", room.name);
  const frame: ClientFrame =
    room.lastSeq === null ? { type: "join", room: room.name, ref } : { type: "join", room: room.name, since: room.lastSeq, ref };
  link.send(frame);
  renderSync(room);
}

function onJoined(f: JoinedFrame): void {
  const room = state.rooms.get(f.room);
  if (!room || room.sync !== "joining") return;
  const since = room.askedSince;
  // A room whose latest seq is below what we saw was reset (a new database): start it over.
  if (since !== null && f.seq < since) return resetRoom(room);
  room.members = new Map(f.members.map((u) => [u.id, u]));
  for (const id of room.members.keys()) room.returning.delete(id);
  const resumed = since !== null;
  addMessages(room, f.messages, resumed ? "news" : "join");
  if (!resumed) {
    room.hasOlder = !f.complete;
    renderOlder(room);
    room.land = true;
    if (room.name === state.current) land(room);
  }
  const last = f.messages.at(-1)?.seq;
  if (!resumed || f.complete || last === undefined) goLive(room, f.seq);
  else pageForward(room, last);
  renderMembers();
  renderRooms();
}

function pageForward(room: Room, after: number): void {
  room.sync = "paging";
  room.lastSeq = Math.max(room.lastSeq ?? 0, after);
  link.send({ type: "history", room: room.name, after: room.lastSeq, limit: HISTORY_PAGE_MAX, ref: refFor("forward", room.name) });
  renderSync(room);
}

function onHistory(f: HistoryPage): void {
  const room = state.rooms.get(f.room);
  if (!room) return;
  if (f.ref === refFor("older", room.name)) return olderArrived(room, f);
  if (room.sync !== "paging") return;
  addMessages(room, f.messages, "news");
  const last = f.messages.at(-1)?.seq;
  if (f.complete || last === undefined) goLive(room, last ?? 0);
  else pageForward(room, last);
}

/** Caught up: from here on live frames keep the room current, and its unsent messages go out. */
function goLive(room: Room, seq: number): void {
  room.lastSeq = Math.max(room.lastSeq ?? 0, seq, maxSeq(room));
  room.sync = "live";
  renderSync(room);
  flushOutbox(room);
  markRead(room);
}

function resetRoom(room: Room): void {
  room.messages.clear();
  room.view.list.replaceChildren();
  room.divider = null;
  room.readSeq = null;
  room.lastSeq = null;
  room.hasOlder = false;
  renderOlder(room);
  sendJoin(room);
}

function onMessage(m: MessageFrame): void {
  const room = state.rooms.get(m.room);
  if (!room) return;
  addMessages(room, [m], "news");
  if (room.sync !== "live" || room.lastSeq === null) return;
  // Seqs are gap-free: one that skips ahead means we missed something, so fetch it.
  if (m.seq > room.lastSeq + 1) pageForward(room, room.lastSeq);
  else room.lastSeq = Math.max(room.lastSeq, m.seq);
}

function maxSeq(room: Room): number {
  let max = 0;
  for (const seq of room.messages.keys()) if (seq > max) max = seq;
  return max;
}

function loadOlder(room: Room): void {
  const first = room.view.list.querySelector<HTMLElement>(".msg");
  if (room.loadingOlder || !link.ready || !first) return;
  room.loadingOlder = true;
  renderOlder(room);
  link.send({ type: "history", room: room.name, before: Number(first.dataset.seq), limit: OLDER_PAGE, ref: refFor("older", room.name) });
}

function olderArrived(room: Room, f: HistoryPage): void {
  const log = room.view.log;
  // Keep what the user is looking at in place while rows appear above it.
  const fromBottom = log.scrollHeight - log.scrollTop;
  room.loadingOlder = false;
  room.hasOlder = !f.complete;
  addMessages(room, f.messages, "older");
  log.scrollTop = log.scrollHeight - fromBottom;
  renderOlder(room);
}

/**
 * Shows messages not shown yet, in seq order, and confirms our own pending ones. `kind` says
 * where they come from: the first `joined` of this page ("join": news only past what this
 * browser has read), live frames and catch-up after a reconnect ("news"), or "older" pages.
 * News out of sight counts as unread (mentions of the reader apart), and the "new messages"
 * line goes above the first of it.
 */
function addMessages(room: Room, messages: readonly MessageFrame[], kind: "join" | "news" | "older"): void {
  let added = false;
  const me = state.me;
  // Our own message means we had read what came before it, wherever we wrote it.
  let readUpTo = room.readSeq;
  if (kind === "join" && readUpTo !== null) for (const m of messages) if (m.user.id === me?.id) readUpTo = Math.max(readUpTo, m.seq);
  const seeing = kind === "news" && inView(room) && room.stuck;
  for (const m of messages) {
    const mine = m.user.id === me?.id;
    const pending = mine ? state.outbox.get(m.id) : undefined;
    if (pending?.room === room.name) confirm(pending);
    if (room.messages.has(m.seq)) continue;
    room.messages.set(m.seq, m);
    const li = messageRow(m, mine, me?.name ?? null);
    const mentioned = !mine && me !== null && mentions(m.text, me.name);
    li.classList.toggle("mentions-me", mentioned);
    insertBySeq(room.view.list, li, m.seq);
    room.typing.delete(m.user.id);
    added = true;
    const news = kind === "news" || (kind === "join" && readUpTo !== null && m.seq > readUpTo);
    if (!news || mine) continue;
    if (!inView(room)) {
      room.unread++;
      if (mentioned) room.mentions++;
    }
    if (mentioned && kind === "news") notifyMention(room, m);
    if (!seeing) placeDivider(room, li, m.seq);
  }
  if (!added) return;
  layout(room.view.list);
  regroupPending(room.view.list, room.view.outbox, me?.id);
  renderEmpty(room);
  if (kind === "news") follow(room);
  renderTyping();
  renderRooms();
}

/**
 * The "new messages" line goes above `li`, unless it already marks news the reader has not
 * caught up with (then it stays where that news begins).
 */
function placeDivider(room: Room, li: HTMLLIElement, seq: number): void {
  const old = room.divider;
  if (old && old.el.isConnected && (room.readSeq === null || room.readSeq < old.seq) && old.seq <= seq) return;
  old?.el.remove();
  const el = h("li", { class: "divider" }, h("span", { text: "New messages" }));
  el.setAttribute("role", "separator");
  li.before(el);
  room.divider = { el, seq };
}

/** The reader sees the bottom of the room: everything in it is read (in every tab of this browser). */
function markRead(room: Room): void {
  if (!inView(room) || !room.stuck || room.sync !== "live") return;
  const seq = maxSeq(room);
  if (seq === 0 || (room.readSeq !== null && seq <= room.readSeq)) return;
  room.readSeq = seq;
  const read = readPositions();
  read[room.name] = Math.max(read[room.name] ?? 0, seq);
  local.write(KEY.read, JSON.stringify(read));
}

function readPositions(): Record<string, number> {
  try {
    const read: unknown = JSON.parse(local.read(KEY.read) ?? "{}");
    if (typeof read !== "object" || read === null || Array.isArray(read)) return {};
    return Object.fromEntries(Object.entries(read).filter(([room, seq]) => isRoom(room) && Number.isSafeInteger(seq) && seq >= 0));
  } catch {
    return {};
  }
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
  markRead(room);
}

// ─── Presence and typing ─────────────────────────────────────────────────────────────────────

function onPresence(f: PresenceFrame): void {
  const room = state.rooms.get(f.room);
  if (!room) return;
  if (f.event === "rename") return onRename(room, f.user);
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
function onRename(room: Room, user: UserRef): void {
  const before = room.members.get(user.id)?.name;
  room.members.set(user.id, user);
  if (user.id === state.me?.id) adoptName(user);
  if (before !== undefined && before !== user.name) {
    room.view.list.append(eventRow(`${before} is now ${user.name}`, now()));
    layout(room.view.list);
    follow(room);
  }
  renderMembers();
}

/** Our name changed (here, in another tab, or on another device). */
function adoptName(user: UserRef): void {
  state.me = user;
  state.name = user.name;
  local.write(KEY.name, user.name);
  ui.meName.textContent = user.name;
  for (const item of state.outbox.values()) item.el.querySelector(".author")!.textContent = user.name;
}

function typingShowMs(): number {
  return Math.max(TYPING_SHOW_MIN_MS, TYPING_SHOW_PERIODS * (state.limits?.typingThrottleMs ?? 0));
}

function onTyping(f: TypingNotice): void {
  const room = state.rooms.get(f.room);
  if (!room || f.user.id === state.me?.id) return;
  room.typing.set(f.user.id, { name: f.user.name, until: Date.now() + typingShowMs() });
  renderTyping();
  window.setTimeout(renderTyping, typingShowMs() + 50);
}

/** Tells the room we are typing, at most once per the server's throttle; dropped rather than queued. */
function typed(): void {
  const room = currentRoom();
  const throttle = state.limits?.typingThrottleMs ?? 0;
  const now = Date.now();
  if (!ui.text.value.trim() || room?.sync !== "live" || now - state.lastTypingSent < throttle) return;
  if (link.send({ type: "typing", room: room.name, ref: refFor("typing", room.name) }, true)) state.lastTypingSent = now;
}

// ─── Sending ─────────────────────────────────────────────────────────────────────────────────

function submitMessage(): void {
  const room = currentRoom();
  // What the server will store: CRLF as LF, trimmed.
  const text = ui.text.value.replace(/\r\n/g, "\n").trim();
  if (!room || !text || codePoints(text) > maxChars()) return;
  const item: Outgoing = { id: randomId(), room: room.name, text, state: "waiting", error: "", timer: 0, el: h("li") };
  addOutgoing(item);
  ui.text.value = "";
  updateCounter();
  // Writing shows the reader has caught up: the "new messages" line has done its job.
  room.divider?.el.remove();
  room.divider = null;
  room.stuck = true;
  scrollToBottom(room);
  flushOutbox(room);
}

function addOutgoing(item: Outgoing): void {
  const room = state.rooms.get(item.room);
  if (!room) return;
  item.el = outgoingEl(item);
  state.outbox.set(item.id, item);
  room.view.outbox.append(item.el);
  regroupPending(room.view.list, room.view.outbox, state.me?.id);
  renderOutgoing(item);
  saveOutbox();
}

function flushOutbox(room: Room): void {
  if (!link.ready || room.sync !== "live") return;
  for (const item of state.outbox.values()) {
    if (item.room === room.name && item.state === "waiting") transmit(item);
  }
}

function transmit(item: Outgoing): void {
  if (!link.send({ type: "send", room: item.room, id: item.id, text: item.text })) return;
  item.state = "sent";
  window.clearTimeout(item.timer);
  item.timer = window.setTimeout(() => failed(item, "No answer from the server yet."), SEND_TIMEOUT_MS + link.queueDelayMs());
  renderOutgoing(item);
}

/** Our own message came back: the pending row gives way to the real one. */
function confirm(item: Outgoing): void {
  window.clearTimeout(item.timer);
  item.el.remove();
  state.outbox.delete(item.id);
  saveOutbox();
  const room = state.rooms.get(item.room);
  if (room) regroupPending(room.view.list, room.view.outbox, state.me?.id);
}

function failed(item: Outgoing, why: string): void {
  item.state = "failed";
  item.error = why;
  renderOutgoing(item);
}

/** Codes that pass: the same send, with the same id, is tried again. */
const PASSING: readonly ErrorCode[] = ["rate_limited", "internal"];

function sendRefused(item: Outgoing, f: ErrorFrame): void {
  window.clearTimeout(item.timer);
  const room = state.rooms.get(item.room);
  if (room && f.code === "not_joined") {
    // The server does not have us in the room (it restarted under us?): join again, then resend.
    item.state = "waiting";
    sendJoin(room);
  } else if (room && PASSING.includes(f.code)) {
    item.state = "waiting";
    later(() => flushOutbox(room));
  } else {
    const why = f.code === "text_invalid" ? "the text is empty, too long or has control characters" : f.message;
    return failed(item, `Not sent: ${why}.`);
  }
  renderOutgoing(item);
}

function retry(item: Outgoing): void {
  item.state = "waiting";
  item.error = "";
  renderOutgoing(item);
  const room = state.rooms.get(item.room);
  if (!link.ready) link.retryNow();
  else if (room) flushOutbox(room);
}

function discard(item: Outgoing): void {
  confirm(item);
  ui.text.focus();
}

function outgoingEl(item: Outgoing): HTMLLIElement {
  const retryButton = h("button", { class: "link-button", text: "Retry", attrs: { type: "button" } });
  const discardButton = h("button", { class: "link-button", text: "Discard", attrs: { type: "button" } });
  retryButton.addEventListener("click", () => retry(item));
  discardButton.addEventListener("click", () => discard(item));
  const status = h("p", { class: "send-state" }, h("span", { class: "state-text" }), " ", retryButton, " ", discardButton);
  const name = state.me?.name ?? state.name;
  return pendingRow(item.id, item.text, name, state.me?.id ?? name, status);
}

function renderOutgoing(item: Outgoing): void {
  const offline = !link.ready;
  item.el.dataset.state = item.state;
  const text =
    item.state === "failed"
      ? item.error
      : item.state === "waiting" && offline
        ? "Not sent yet: it goes out when the connection is back."
        : "Sending…";
  item.el.querySelector(".state-text")!.textContent = text;
  const needsHand = item.state === "failed" || (item.state === "waiting" && offline);
  for (const button of item.el.querySelectorAll<HTMLButtonElement>(".send-state button")) button.hidden = !needsHand;
}

/** Unsent messages survive a reload of this tab. */
function saveOutbox(): void {
  session.write(KEY.outbox, JSON.stringify([...state.outbox.values()].map(({ id, room, text }) => ({ id, room, text }))));
}

function restoreOutbox(): void {
  let saved: unknown;
  try {
    saved = JSON.parse(session.read(KEY.outbox) ?? "[]");
  } catch {
    return;
  }
  if (!Array.isArray(saved)) return;
  for (const entry of saved as { id?: unknown; room?: unknown; text?: unknown }[]) {
    const { id, room, text } = entry ?? {};
    if (typeof id !== "string" || typeof room !== "string" || typeof text !== "string" || !isRoom(room)) continue;
    ensureRoom(room);
    addOutgoing({ id, room, text, state: "waiting", error: "", timer: 0, el: h("li") });
  }
}

// ─── Errors ──────────────────────────────────────────────────────────────────────────────────

function onError(f: ErrorFrame): void {
  const ref = f.ref ?? "";
  if (ref === "hello") return helloRefused(f);
  const item = state.outbox.get(ref);
  if (item) return sendRefused(item, f);
  const colon = ref.indexOf(":");
  const kind = ref.slice(0, colon);
  const room = colon > 0 ? state.rooms.get(ref.slice(colon + 1)) : undefined;
  switch (kind) {
    case "typing":
    case "leave":
      return; // nothing to redo: typing is best effort, and a refused leave means we are out
    case "join":
      if (!room) return;
      if (PASSING.includes(f.code)) return later(() => room.sync === "joining" && sendJoin(room));
      notice(f.code === "too_many_rooms" ? `You are in too many rooms to join #${room.name}.` : `Could not join #${room.name}: ${f.message}.`);
      return leaveRoom(room.name, false);
    case "forward":
      if (room) later(() => room.sync === "paging" && pageForward(room, room.lastSeq ?? 0));
      return;
    case "older":
      if (room) {
        room.loadingOlder = false;
        renderOlder(room);
      }
      return notice(`Could not load older messages: ${f.message}.`);
    default:
      notice(f.message);
  }
}

const NAME_REFUSED: Partial<Record<ErrorCode, string>> = {
  name_invalid: "Use 1 to 32 letters, digits, spaces, _ - or .",
  name_taken: "Someone online is using that name. Try another.",
};

function helloRefused(f: ErrorFrame): void {
  // Passing trouble: the connect timeout gives this socket up and the connection tries again.
  if (PASSING.includes(f.code)) return;
  const why = NAME_REFUSED[f.code] ?? f.message;
  if (state.renamingFrom !== null) {
    // The new name is refused: say so by the rename field, and be who we were on the same socket.
    state.name = state.renamingFrom;
    state.renamingFrom = null;
    ui.renameError.textContent = why;
    ui.renameName.setAttribute("aria-invalid", "true");
    ui.renameName.focus();
    if (!link.helloAgain()) link.retryNow();
    return;
  }
  link.stop({ state: "offline", note: "Choose a name to join.", canRetry: false });
  showLogin(state.name, why);
}

/** Runs `fn` after RETRY_DELAY_MS, unless the connection was replaced meanwhile. */
function later(fn: () => unknown): void {
  const generation = state.generation;
  window.setTimeout(() => {
    if (link.ready && generation === state.generation) fn();
  }, RETRY_DELAY_MS);
}

let noticeTimer = 0;
function notice(text: string): void {
  ui.notice.textContent = text;
  ui.notice.hidden = false;
  window.clearTimeout(noticeTimer);
  noticeTimer = window.setTimeout(() => (ui.notice.hidden = true), NOTICE_MS);
}

// ─── Room list, navigation ───────────────────────────────────────────────────────────────────

/** What a person may type for a room: `#Dev ` means `dev`. */
function roomName(raw: string): string {
  return raw.trim().replace(/^#/, "").toLowerCase();
}

function currentRoom(): Room | undefined {
  return state.rooms.get(state.current);
}

function inView(room: Room): boolean {
  return room.name === state.current && document.visibilityState === "visible";
}

function ensureRoom(name: string): Room {
  const existing = state.rooms.get(name);
  if (existing) return existing;
  const room: Room = {
    name,
    messages: new Map(),
    lastSeq: null,
    askedSince: null,
    sync: "idle",
    hasOlder: false,
    loadingOlder: false,
    members: new Map(),
    returning: new Map(),
    typing: new Map(),
    unread: 0,
    mentions: 0,
    readSeq: readPositions()[name] ?? null,
    divider: null,
    land: false,
    stuck: true,
    scrollTop: 0,
    view: createView(name),
    nav: createNav(name),
  };
  state.rooms.set(name, room);
  room.view.older.addEventListener("click", () => loadOlder(room));
  room.view.log.addEventListener(
    "scroll",
    () => {
      const log = room.view.log;
      const up = log.scrollTop < room.scrollTop;
      room.stuck = atBottom(log);
      room.scrollTop = log.scrollTop;
      if (room.stuck && room.name === state.current) ui.pill.hidden = true;
      markRead(room);
      // Only the reader's own scrolling up fetches more: a short room at rest must not page on its own.
      if (up && log.scrollTop < OLDER_PX && room.hasOlder) loadOlder(room);
    },
    { passive: true },
  );
  saveRooms();
  if (link.ready) {
    sendJoin(room);
    void refreshDirectory();
  }
  renderRooms();
  return room;
}

function createView(name: string): RoomView {
  const older = h("button", { class: "older", text: "Load older messages", attrs: { type: "button" } });
  older.hidden = true;
  const empty = emptyHint(name);
  const list = h("ol", { class: "messages" });
  const outbox = h("ol", { class: "outbox", attrs: { "aria-label": "Not yet sent" } });
  const log = h(
    "div",
    { class: "log", attrs: { role: "log", "aria-label": `Messages in #${name}`, tabindex: "0" } },
    older,
    empty,
    list,
    outbox,
  );
  const section = h("section", { class: "room", attrs: { "aria-label": `#${name}` } }, log);
  section.dataset.room = name;
  section.dataset.sync = "idle";
  section.hidden = true;
  ui.rooms.append(section);
  return { section, log, older, empty, list, outbox };
}

/** What an empty room says: nothing here yet, and the link that brings people to it. */
function emptyHint(name: string): HTMLElement {
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

function renderEmpty(room: Room): void {
  room.view.empty.hidden = !(room.sync === "live" && room.messages.size === 0 && !room.hasOlder);
}

/** The rooms of this browser's user, for every tab; only once we are someone. */
function saveRooms(): void {
  if (state.me) local.write(KEY.rooms, JSON.stringify([...state.rooms.keys()]));
}

function savedRooms(): string[] {
  try {
    const rooms: unknown = JSON.parse(local.read(KEY.rooms) ?? "[]");
    return Array.isArray(rooms) ? rooms.filter((r): r is string => typeof r === "string" && isRoom(r)) : [];
  } catch {
    return [];
  }
}

/** Opens a room (joining it if need be) and shows it. */
function openRoom(name: string): void {
  ensureRoom(name);
  select(name);
}

function select(name: string): void {
  const room = state.rooms.get(name);
  if (!room) return;
  state.current = name;
  if (decodeURIComponent(location.hash.slice(1)) !== name) history.replaceState(null, "", `#${name}`);
  for (const other of state.rooms.values()) other.view.section.hidden = other !== room;
  // Opening a room with news the reader has not seen starts at the "new messages" line.
  const unseen = room.divider !== null && (room.readSeq === null || room.readSeq < room.divider.seq);
  if (room.land || unseen) land(room);
  else if (room.stuck) scrollToBottom(room);
  else room.view.log.scrollTop = room.scrollTop;
  ui.pill.hidden = true;
  if (inView(room)) room.unread = room.mentions = 0;
  markRead(room);
  ui.roomTitle.textContent = `#${name}`;
  ui.composerLabel.textContent = `Message #${name}`;
  ui.text.placeholder = `Message #${name}`;
  setNav(false);
  renderRooms();
  renderMembers();
  renderTyping();
}

function leaveRoom(name: string, tellServer: boolean): void {
  const room = state.rooms.get(name);
  if (!room) return;
  if (tellServer) link.send({ type: "leave", room: name, ref: refFor("leave", name) });
  for (const item of [...state.outbox.values()]) if (item.room === name) confirm(item);
  room.view.section.remove();
  room.nav.item.remove();
  state.rooms.delete(name);
  saveRooms();
  if (state.rooms.size === 0) ensureRoom(DEFAULT_ROOM);
  if (state.current === name) select(state.rooms.keys().next().value ?? DEFAULT_ROOM);
  renderRooms();
  void refreshDirectory();
}

/** The room the URL names; null for none (or an invalid one, which is reported). */
function roomFromHash(): string | null {
  let raw = "";
  try {
    raw = decodeURIComponent(location.hash.slice(1));
  } catch {
    // A malformed escape is just an invalid name.
  }
  const name = roomName(raw);
  if (!name) return null;
  if (isRoom(name)) return name;
  notice(`"${raw}" is not a room name: use up to 32 of a-z 0-9 _ -, starting with a letter or digit.`);
  return null;
}

/**
 * The directory: rooms with recent messages, newest first, whether or not anyone is in them
 * (`?recent=1`), then rooms with people and no recent message yet (`/api/rooms`).
 */
async function refreshDirectory(): Promise<void> {
  try {
    const [recent, occupied] = await Promise.all([fetchRooms("/api/rooms?recent=1"), fetchRooms("/api/rooms")]);
    const members = new Map(occupied.map((r) => [r.room, r.members]));
    const listed = new Set(recent.map((r) => r.room));
    state.directory = [
      ...recent.map((r) => ({ room: r.room, members: members.get(r.room) ?? r.members })),
      ...occupied.filter((r) => !listed.has(r.room)),
    ];
    renderRooms();
  } catch {
    // The list is a convenience; the connection status already tells about a dead server.
  }
}

async function fetchRooms(path: string): Promise<DirectoryEntry[]> {
  const response = await fetch(path, { cache: "no-store" });
  if (!response.ok) throw new Error(`${path}: ${response.status}`);
  const body = (await response.json()) as { rooms?: unknown };
  const rooms = Array.isArray(body.rooms) ? (body.rooms as Partial<DirectoryEntry>[]) : [];
  return rooms
    .filter((r): r is DirectoryEntry => typeof r.room === "string" && isRoom(r.room))
    .map((r) => ({ room: r.room, members: Number.isSafeInteger(r.members) ? r.members : 0 }));
}

// ─── Rendering ───────────────────────────────────────────────────────────────────────────────

/**
 * Updates the sidebar in place: rebuilding it on every message would take keyboard focus away
 * from whoever is tabbing through it.
 */
function renderRooms(): void {
  for (const room of state.rooms.values()) {
    const { link, badge, mentionBadge, leave } = room.nav;
    if (room.name === state.current) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
    badge.hidden = room.unread === 0;
    badge.textContent = String(room.unread);
    badge.setAttribute("aria-label", `${room.unread} unread`);
    mentionBadge.hidden = room.mentions === 0;
    mentionBadge.textContent = `@${room.mentions}`;
    mentionBadge.setAttribute("aria-label", room.mentions === 1 ? "1 mention" : `${room.mentions} mentions`);
    leave.hidden = state.rooms.size === 1;
  }
  renderDirectory();
  renderTitle();
}

function createNav(name: string): Room["nav"] {
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
  const leave = h("button", { class: "icon-button leave", text: "×", attrs: { type: "button", "aria-label": `Leave #${name}` } });
  leave.addEventListener("click", () => {
    leaveRoom(name, true);
    currentRoom()?.nav.link.focus();
  });
  const item = h("li", {}, link, leave);
  ui.myRooms.append(item);
  return { item, link, badge, mentionBadge, leave };
}

/** Directory rooms we are not in; redrawn only when the list changed, for the same reason. */
let directoryShown = "";
function renderDirectory(): void {
  const others = state.directory.filter((r) => !state.rooms.has(r.room)).slice(0, DIRECTORY_SHOWN);
  const key = JSON.stringify(others);
  if (key === directoryShown) return;
  directoryShown = key;
  ui.directory.replaceChildren(
    ...(others.length
      ? others.map((r) =>
          h(
            "li",
            {},
            h(
              "a",
              { class: "room-link", attrs: { href: `#${r.room}` } },
              h("span", { class: "hash", text: "#" }),
              h("span", { class: "room-name", text: r.room }),
              r.members > 0 && h("span", { class: "count", text: String(r.members), attrs: { "aria-label": `${r.members} online` } }),
            ),
          ),
        )
      : [h("li", { class: "empty", text: "No other rooms yet: create one above." })]),
  );
}

function renderMembers(): void {
  const room = currentRoom();
  const members = [...(room?.members.values() ?? [])].sort((a, b) => a.name.localeCompare(b.name));
  ui.membersTitle.textContent = `In #${state.current} · ${members.length}`;
  ui.roomMembers.textContent = members.length === 1 ? "1 online" : `${members.length} online`;
  ui.members.replaceChildren(
    ...members.map((u) =>
      h(
        "li",
        {},
        avatar(u.name, u.id),
        h("span", { class: "name", text: u.name, attrs: { dir: "auto" } }),
        u.id === state.me?.id && h("span", { class: "you", text: "you" }),
      ),
    ),
  );
}

function renderTyping(): void {
  const room = currentRoom();
  const now = Date.now();
  const names: string[] = [];
  for (const [id, t] of room?.typing ?? []) {
    if (t.until <= now) room!.typing.delete(id);
    else names.push(t.name);
  }
  ui.typing.textContent =
    names.length === 0
      ? ""
      : names.length === 1
        ? `${names[0]} is typing…`
        : names.length === 2
          ? `${names[0]} and ${names[1]} are typing…`
          : "Several people are typing…";
}

function renderOlder(room: Room): void {
  room.view.older.hidden = !room.hasOlder;
  room.view.older.disabled = room.loadingOlder;
  room.view.older.textContent = room.loadingOlder ? "Loading…" : "Load older messages";
}

/** Exposes the catch-up state for people (aria-busy) and tests (data-sync). */
function renderSync(room: Room): void {
  room.view.section.dataset.sync = room.sync;
  room.view.log.setAttribute("aria-busy", String(room.sync === "joining" || room.sync === "paging"));
  renderEmpty(room);
}

/** "(3) #dev · Chat": 3 unread; "(@1 · 3) #dev · Chat": 3 unread, 1 of them names you. */
function renderTitle(): void {
  let unread = 0;
  let mentioned = 0;
  for (const room of state.rooms.values()) {
    unread += room.unread;
    mentioned += room.mentions;
  }
  const counts = mentioned ? `(@${mentioned} · ${unread}) ` : unread ? `(${unread}) ` : "";
  document.title = `${counts}#${state.current} · Chat`;
}

const STATUS_LABEL: Record<Status["state"], string> = {
  connecting: "Connecting…",
  connected: "Connected",
  reconnecting: "Reconnecting",
  offline: "Offline",
};

/** What the banner says when the connection gives no reason of its own. */
function defaultNote(kind: Status["state"]): string {
  if (kind === "connecting") return "Connecting to the chat…";
  if (kind === "reconnecting") return state.me ? "Connection lost." : "Cannot reach the chat server.";
  return kind === "offline" ? "Offline." : "";
}

let countdownTimer = 0;
function renderStatus(status: Status): void {
  ui.status.dataset.state = status.state;
  ui.statusText.textContent = STATUS_LABEL[status.state];
  window.clearInterval(countdownTimer);
  const note = status.state === "connected" ? "" : (status.note ?? defaultNote(status.state));
  // The first connect of a visit is quick and quiet; every later state change is announced.
  ui.banner.hidden = status.state === "connected" || (status.state === "connecting" && !state.me);
  ui.bannerText.textContent = note;
  ui.bannerRetry.hidden = !(status.state === "reconnecting" || (status.state === "offline" && status.canRetry));
  ui.bannerRetry.textContent = status.state === "offline" ? "Reconnect" : "Retry now";
  ui.loginStatus.textContent = status.state === "connecting" || status.state === "reconnecting" ? note : "";
  ui.bannerCountdown.textContent = "";
  // The delay of the retry under way, for tests of the backoff; absent when none is.
  if (status.state === "reconnecting") ui.status.dataset.retryMs = String(Math.round(status.delayMs));
  else delete ui.status.dataset.retryMs;
  if (status.state === "reconnecting") {
    const tick = () => {
      const seconds = Math.max(0, Math.ceil((status.at - Date.now()) / 1000));
      ui.bannerCountdown.textContent = `Reconnecting in ${seconds} s.`;
    };
    tick();
    countdownTimer = window.setInterval(tick, COUNTDOWN_TICK_MS);
  }
  for (const item of state.outbox.values()) renderOutgoing(item);
}

function maxChars(): number {
  return state.limits?.maxTextChars ?? FALLBACK_MAX_CHARS;
}

function updateCounter(): void {
  const used = codePoints(ui.text.value.replace(/\r\n/g, "\n").trim());
  const max = maxChars();
  const show = used >= max * COUNTER_FROM;
  ui.counter.textContent = show ? `${used} / ${max}` : "";
  ui.counter.classList.toggle("over", used > max);
  ui.send.disabled = used > max;
}

// ─── Scrolling ───────────────────────────────────────────────────────────────────────────────

function atBottom(log: HTMLElement): boolean {
  return log.scrollHeight - log.scrollTop - log.clientHeight < STICK_PX;
}

function scrollToBottom(room: Room): void {
  room.view.log.scrollTop = room.view.log.scrollHeight;
}

/** New rows at the bottom: follow them if the user is there, else offer the pill. */
function follow(room: Room): void {
  if (room.name !== state.current) return;
  if (room.stuck) scrollToBottom(room);
  else ui.pill.hidden = false;
  markRead(room);
}

// ─── Identity: rename, sign out, other tabs ──────────────────────────────────────────────────

function showRename(open: boolean): void {
  ui.renameForm.hidden = !open;
  ui.renameButton.setAttribute("aria-expanded", String(open));
  ui.renameError.textContent = "";
  ui.renameName.setAttribute("aria-invalid", "false");
  if (open) {
    ui.renameName.value = state.me?.name ?? state.name;
    ui.renameName.focus();
    ui.renameName.select();
  }
}

/** A new name is a new hello with our session (a second hello on a welcomed socket is refused). */
function rename(): void {
  const name = ui.renameName.value.trim();
  if (!name) {
    ui.renameError.textContent = "Enter a name.";
    ui.renameName.setAttribute("aria-invalid", "true");
    return;
  }
  if (name === state.me?.name) return showRename(false);
  state.renamingFrom = state.me?.name ?? state.name;
  state.name = name;
  ui.renameError.textContent = "";
  link.retryNow();
}

/**
 * Forgets who we are in this browser and leaves every room at once (others see us go now, not
 * after the presence grace). Every tab does this: the one clicked, and the others when they see
 * the session gone from localStorage.
 */
function signOut(): void {
  for (const key of [KEY.session, KEY.name, KEY.rooms, KEY.read]) local.remove(key);
  session.remove(KEY.outbox);
  if (link.ready) for (const name of state.rooms.keys()) link.send({ type: "leave", room: name, ref: refFor("leave", name) });
  link.finish({ state: "offline", note: "Signed out.", canRetry: false });
  state.me = null;
  state.name = "";
  state.renamingFrom = null;
  for (const item of [...state.outbox.values()]) confirm(item);
  for (const room of [...state.rooms.values()]) {
    room.view.section.remove();
    room.nav.item.remove();
  }
  state.rooms.clear();
  openRoom(roomFromHash() ?? DEFAULT_ROOM);
  renderMembers();
  showRename(false);
  setNav(false);
  showLogin("");
}

/** Another tab changed what we share: follow it. */
function onStorage(event: StorageEvent): void {
  if (event.storageArea !== window.localStorage) return;
  if (event.key === KEY.session || event.key === null) {
    // Signed out in another tab: this one too, even if it is still connecting (its hello would
    // otherwise make a new user with the old name).
    if (!local.read(KEY.session) && ui.login.hidden) return signOut();
    // Someone signed in from another tab while this one waits at the prompt: be them here too.
    const name = local.read(KEY.name);
    if (!state.me && name && !ui.login.hidden) {
      state.name = name;
      for (const room of savedRooms()) ensureRoom(room);
      showApp();
      link.start();
    }
    return;
  }
  if (!state.me) return;
  if (event.key === KEY.name && event.newValue && event.newValue !== state.name) {
    state.name = event.newValue;
    adoptName({ id: state.me.id, name: event.newValue });
  } else if (event.key === KEY.rooms) {
    const rooms = new Set(savedRooms());
    for (const name of rooms) ensureRoom(name);
    for (const name of [...state.rooms.keys()]) if (!rooms.has(name) && rooms.size > 0) leaveRoom(name, true);
  } else if (event.key === KEY.read) {
    const read = readPositions();
    for (const room of state.rooms.values()) {
      const seq = read[room.name];
      if (seq !== undefined && seq > (room.readSeq ?? 0)) room.readSeq = seq;
    }
  }
}

// ─── Mention notifications (opt-in) ──────────────────────────────────────────────────────────

function notificationsOn(): boolean {
  return "Notification" in window && Notification.permission === "granted" && local.read(KEY.notify) === "1";
}

function renderNotify(): void {
  ui.notify.hidden = !("Notification" in window);
  const on = notificationsOn();
  ui.notify.setAttribute("aria-pressed", String(on));
  ui.notify.textContent = on ? "Mention alerts: on" : "Mention alerts: off";
}

/** Asks for permission only here, on a click: browsers ignore (and users resent) asking unprompted. */
async function toggleNotify(): Promise<void> {
  if (notificationsOn()) {
    local.write(KEY.notify, "0");
    return renderNotify();
  }
  const permission = Notification.permission === "default" ? await Notification.requestPermission() : Notification.permission;
  if (permission === "granted") local.write(KEY.notify, "1");
  else notice("Notifications are blocked for this site in the browser's settings.");
  renderNotify();
}

/** A desktop notification for a mention, only while this tab is hidden. */
function notifyMention(room: Room, m: MessageFrame): void {
  if (document.visibilityState !== "hidden" || !notificationsOn()) return;
  try {
    // One tag per message: several tabs of this browser show it once.
    const n = new Notification(`${m.user.name} in #${room.name}`, { body: shown(m.text).slice(0, NOTIFY_CHARS), tag: `chat:${room.name}:${m.seq}` });
    n.addEventListener("click", () => {
      window.focus();
      openRoom(room.name);
      n.close();
    });
  } catch {
    // Some browsers allow notifications only from a service worker: then there are none.
  }
}

// ─── Screens and input ───────────────────────────────────────────────────────────────────────

function showLogin(name: string, error = ""): void {
  ui.app.hidden = true;
  ui.login.hidden = false;
  ui.loginName.value = name;
  ui.loginError.textContent = error;
  ui.loginName.setAttribute("aria-invalid", String(Boolean(error)));
  ui.loginSubmit.disabled = false;
  ui.loginName.focus();
  ui.loginName.select();
}

function showApp(): void {
  const wasHidden = ui.app.hidden;
  ui.login.hidden = true;
  ui.app.hidden = false;
  if (wasHidden) {
    const room = currentRoom();
    if (room?.land) land(room);
    else if (room) scrollToBottom(room);
    ui.text.focus();
  }
}

function setNav(open: boolean): void {
  ui.app.classList.toggle("nav-open", open);
  ui.menuToggle.setAttribute("aria-expanded", String(open));
  if (open && link.ready) void refreshDirectory();
}

function bindInput(): void {
  ui.loginForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const name = ui.loginName.value.trim();
    if (!name) {
      ui.loginError.textContent = "Enter a name.";
      ui.loginName.setAttribute("aria-invalid", "true");
      return ui.loginName.focus();
    }
    state.name = name;
    ui.loginError.textContent = "";
    ui.loginName.setAttribute("aria-invalid", "false");
    ui.loginSubmit.disabled = true;
    link.start();
  });

  ui.joinForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const name = roomName(ui.joinRoom.value);
    if (!isRoom(name)) {
      ui.joinError.textContent = "Use up to 32 of a-z 0-9 _ -, starting with a letter or digit.";
      ui.joinRoom.setAttribute("aria-invalid", "true");
      return;
    }
    ui.joinError.textContent = "";
    ui.joinRoom.setAttribute("aria-invalid", "false");
    ui.joinRoom.value = "";
    openRoom(name);
    ui.text.focus();
  });

  ui.text.addEventListener("keydown", (event) => {
    // Enter sends; Shift+Enter falls through to the textarea's newline. An IME's Enter picks a word.
    // On a touch screen Enter is always a newline: the Send button sends.
    if (TOUCH || event.key !== "Enter" || event.shiftKey || event.isComposing) return;
    event.preventDefault();
    submitMessage();
  });
  ui.text.addEventListener("input", () => {
    updateCounter();
    typed();
  });
  ui.composer.addEventListener("submit", (event) => {
    event.preventDefault();
    submitMessage();
    ui.text.focus();
  });

  ui.pill.addEventListener("click", () => {
    const room = currentRoom();
    if (room) scrollToBottom(room);
    ui.pill.hidden = true;
  });
  ui.bannerRetry.addEventListener("click", () => link.retryNow());
  ui.renameButton.addEventListener("click", () => showRename(ui.renameForm.hidden === true));
  ui.renameCancel.addEventListener("click", () => {
    showRename(false);
    ui.renameButton.focus();
  });
  ui.renameForm.addEventListener("submit", (event) => {
    event.preventDefault();
    rename();
  });
  ui.signOut.addEventListener("click", signOut);
  ui.notify.addEventListener("click", () => void toggleNotify());
  ui.skip.addEventListener("click", () => ui.text.focus());
  window.addEventListener("storage", onStorage);
  ui.menuToggle.addEventListener("click", () => setNav(!ui.app.classList.contains("nav-open")));
  // A tap beside the open drawer (on the dimmed chat) closes it, and does nothing else.
  byId("main").addEventListener(
    "click",
    (event) => {
      if (!ui.app.classList.contains("nav-open")) return;
      event.preventDefault();
      event.stopPropagation();
      setNav(false);
    },
    { capture: true },
  );
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && ui.app.classList.contains("nav-open")) {
      setNav(false);
      ui.menuToggle.focus();
    }
  });
  window.addEventListener("hashchange", () => openRoom(roomFromHash() ?? DEFAULT_ROOM));
  // Rows rewrap when the width changes; a view at the bottom stays there.
  window.addEventListener("resize", () => {
    const room = currentRoom();
    if (room?.stuck) scrollToBottom(room);
  });
  document.addEventListener("visibilitychange", () => {
    const room = currentRoom();
    if (room && inView(room)) {
      room.unread = room.mentions = 0;
      markRead(room);
      renderRooms();
    }
  });
  window.setInterval(() => {
    if (link.ready && document.visibilityState === "visible") void refreshDirectory();
  }, ROOMS_REFRESH_MS);
}

function main(): void {
  bindInput();
  if (TOUCH) {
    ui.text.enterKeyHint = "enter";
    ui.composerHint.textContent = "Enter adds a new line. The Send button sends.";
  }
  renderNotify();
  state.name = local.read(KEY.name) ?? "";
  for (const name of savedRooms()) ensureRoom(name);
  openRoom(roomFromHash() ?? DEFAULT_ROOM);
  restoreOutbox();
  renderMembers();
  if (state.name) {
    showApp();
    link.start();
  } else {
    showLogin("");
  }
}

main();
