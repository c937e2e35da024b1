/**
 * The conversation with the server, for this tab: hello and welcome, frames routed to the rooms,
 * sends through the outbox, errors answered (retried, reported or undone), and who we are —
 * signing in, renaming, signing out, following the other tabs of this browser.
 */

import { codePoints, type ClientFrame, type ErrorCode, type ErrorFrame, type ServerFrame, type UserRef, type WelcomeFrame } from "../src/protocol/wire.ts";
import type { Banner } from "./banner.ts";
import type { Connection, Status } from "./connection.ts";
import type { Directory } from "./directory.ts";
import { randomId } from "./dom.ts";
import type { Ui } from "./elements.ts";
import type { Change, Identity, Self } from "./identity.ts";
import { PASSING, type Outbox } from "./outbox.ts";
import type { PendingRows } from "./pending.ts";
import { DEFAULT_ROOM, type Rooms } from "./rooms.ts";
import { refFor } from "./sync.ts";

/** Wait before redoing a request the server refused for a passing reason (rate_limited, internal). */
const RETRY_DELAY_MS = 1_000;
/** The character counter appears once a text uses this share of maxTextChars. */
const COUNTER_FROM = 0.8;
/** The longest text accepted before the server has told us its limit. */
const FALLBACK_MAX_CHARS = 2_000;

const NAME_REFUSED: Partial<Record<ErrorCode, string>> = {
  name_invalid: "Use 1 to 32 letters, digits, spaces, _ - or .",
  name_taken: "Someone online is using that name. Try another.",
};

export interface ChatDeps {
  ui: Ui;
  link: Connection;
  self: Self;
  identity: Identity;
  rooms: Rooms;
  outbox: Outbox;
  pending: PendingRows;
  directory: Directory;
  banner: Banner;
}

export type Chat = ReturnType<typeof createChat>;

export function createChat(deps: ChatDeps) {
  const { ui, link, self, identity, rooms, outbox, pending, directory, banner } = deps;
  /** While a new name is being asked for: the name to fall back to if it is refused. */
  let renamingFrom: string | null = null;
  /** Counts welcomes, so a retry scheduled on one connection does nothing on the next. */
  let generation = 0;
  let lastTypingSent = 0;

  // ─── Connection events ─────────────────────────────────────────────────────────────────────

  /** The hello of a new socket: our name, and our session if this browser has one. */
  function hello(): ClientFrame {
    const token = identity.session;
    const name = self.name;
    return token ? { type: "hello", name, session: token, ref: "hello" } : { type: "hello", name, ref: "hello" };
  }

  function welcome(f: WelcomeFrame): void {
    generation++;
    self.me = f.user;
    self.limits = f.limits;
    self.name = f.user.name;
    identity.remember(f.session, f.user.name);
    rooms.save();
    if (renamingFrom !== null) {
      renamingFrom = null;
      showRename(false);
    }
    showApp();
    ui.meName.textContent = f.user.name;
    rooms.joinAll();
    updateCounter();
    void directory.refresh();
  }

  function lost(): void {
    rooms.lost();
    outbox.lost();
  }

  function status(status: Status): void {
    banner.status(status);
    pending.drawAll(outbox.values());
  }

  function frame(f: ServerFrame): void {
    switch (f.type) {
      case "joined":
        return rooms.onJoined(f);
      case "message":
      case "settings":
      case "edit":
      case "delete":
        return rooms.onMessage(f);
      case "history":
        return rooms.onHistory(f);
      case "presence":
        return rooms.onPresence(f);
      case "typing":
        return rooms.onTyping(f);
      case "error":
        return error(f);
      case "left":
      case "welcome":
      case "pong":
      case "ok":
      case "invite":
      case "moderation":
        return;
    }
  }

  // ─── Sending ───────────────────────────────────────────────────────────────────────────────

  function submit(): void {
    const room = rooms.currentRoom();
    // What the server will store: CRLF as LF, trimmed.
    const text = ui.text.value.replace(/\r\n/g, "\n").trim();
    if (!room || !text || codePoints(text) > maxChars()) return;
    outbox.add({ id: randomId(), room: room.name, text });
    ui.text.value = "";
    updateCounter();
    rooms.wrote(room);
    outbox.flush(room.name);
  }

  /** Retry on a pending message; with no connection, that means connecting now. */
  function retry(id: string): void {
    outbox.retry(id);
    if (!link.ready) link.retryNow();
  }

  /** Tells the room we are typing, at most once per the server's throttle; dropped rather than queued. */
  function typed(): void {
    const room = rooms.currentRoom();
    const throttle = self.limits?.typingThrottleMs ?? 0;
    const at = Date.now();
    if (!ui.text.value.trim() || room?.sync.phase !== "live" || at - lastTypingSent < throttle) return;
    if (link.send({ type: "typing", room: room.name, ref: refFor("typing", room.name) }, true)) lastTypingSent = at;
  }

  function updateCounter(): void {
    const used = codePoints(ui.text.value.replace(/\r\n/g, "\n").trim());
    const max = maxChars();
    const show = used >= max * COUNTER_FROM;
    ui.counter.textContent = show ? `${used} / ${max}` : "";
    ui.counter.classList.toggle("over", used > max);
    ui.send.disabled = used > max;
  }

  function maxChars(): number {
    return self.limits?.maxTextChars ?? FALLBACK_MAX_CHARS;
  }

  // ─── Errors ────────────────────────────────────────────────────────────────────────────────

  function error(f: ErrorFrame): void {
    const ref = f.ref ?? "";
    if (ref === "hello") return helloRefused(f);
    const refusal = outbox.refused(ref, f);
    if (refusal) {
      const room = rooms.get(outbox.get(ref)!.room);
      if (room && refusal === "rejoin") rooms.join(room);
      else if (room && refusal === "later") later(() => outbox.flush(room.name));
      return;
    }
    const colon = ref.indexOf(":");
    const kind = ref.slice(0, colon);
    const room = colon > 0 ? rooms.get(ref.slice(colon + 1)) : undefined;
    switch (kind) {
      case "typing":
      case "leave":
        return; // nothing to redo: typing is best effort, and a refused leave means we are out
      case "join":
        if (!room) return;
        if (PASSING.includes(f.code)) return later(() => rooms.retry(room, "join"));
        banner.notice(f.code === "too_many_rooms" ? `You are in too many rooms to join #${room.name}.` : `Could not join #${room.name}: ${f.message}.`);
        return rooms.leave(room.name, false);
      case "forward":
        if (room) later(() => rooms.retry(room, "forward"));
        return;
      case "older":
        if (room) rooms.olderFailed(room);
        return banner.notice(`Could not load older messages: ${f.message}.`);
      default:
        banner.notice(f.message);
    }
  }

  function helloRefused(f: ErrorFrame): void {
    // Passing trouble: the connect timeout gives this socket up and the connection tries again.
    if (PASSING.includes(f.code)) return;
    const why = NAME_REFUSED[f.code] ?? f.message;
    if (renamingFrom !== null) {
      // The new name is refused: say so by the rename field, and be who we were on the same socket.
      self.name = renamingFrom;
      renamingFrom = null;
      ui.renameError.textContent = why;
      ui.renameName.setAttribute("aria-invalid", "true");
      ui.renameName.focus();
      if (!link.helloAgain()) link.retryNow();
      return;
    }
    link.stop({ state: "offline", note: "Choose a name to join.", canRetry: false });
    showLogin(self.name, why);
  }

  /** Runs `fn` after RETRY_DELAY_MS, unless the connection was replaced meanwhile. */
  function later(fn: () => unknown): void {
    const asked = generation;
    window.setTimeout(() => {
      if (link.ready && asked === generation) fn();
    }, RETRY_DELAY_MS);
  }

  // ─── Who we are: sign in, rename, sign out, other tabs ─────────────────────────────────────

  /** The login form: connect as `name`. */
  function signIn(name: string): void {
    self.name = name;
    ui.loginError.textContent = "";
    ui.loginName.setAttribute("aria-invalid", "false");
    ui.loginSubmit.disabled = true;
    link.start();
  }

  function showRename(open: boolean): void {
    ui.renameForm.hidden = !open;
    ui.renameButton.setAttribute("aria-expanded", String(open));
    ui.renameError.textContent = "";
    ui.renameName.setAttribute("aria-invalid", "false");
    if (open) {
      ui.renameName.value = self.me?.name ?? self.name;
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
    if (name === self.me?.name) return showRename(false);
    renamingFrom = self.me?.name ?? self.name;
    self.name = name;
    ui.renameError.textContent = "";
    link.retryNow();
  }

  /** Our name changed (here, in another tab, or on another device). */
  function adoptName(user: UserRef): void {
    self.me = user;
    self.name = user.name;
    identity.setName(user.name);
    ui.meName.textContent = user.name;
    pending.rename(user.name);
  }

  /**
   * Forgets who we are in this browser and leaves every room at once (others see us go now, not
   * after the presence grace). Every tab does this: the one clicked, and the others when they see
   * the session gone from localStorage.
   */
  function signOut(): void {
    identity.forget();
    if (link.ready) for (const name of rooms.names()) link.send({ type: "leave", room: name, ref: refFor("leave", name) });
    link.finish({ state: "offline", note: "Signed out.", canRetry: false });
    self.me = null;
    self.name = "";
    renamingFrom = null;
    outbox.clear();
    rooms.clear();
    rooms.open(rooms.fromHash() ?? DEFAULT_ROOM);
    rooms.renderMembers();
    showRename(false);
    rooms.drawer(false);
    showLogin("");
  }

  /** Another tab changed what we share: follow it. */
  function followOtherTab(change: Change): void {
    if (change.kind === "session") {
      // Signed out in another tab: this one too, even if it is still connecting (its hello would
      // otherwise make a new user with the old name).
      if (!identity.session && ui.login.hidden) return signOut();
      // Someone signed in from another tab while this one waits at the prompt: be them here too.
      const name = identity.name;
      if (!self.me && name && !ui.login.hidden) {
        self.name = name;
        for (const room of identity.rooms()) rooms.ensure(room);
        showApp();
        link.start();
      }
      return;
    }
    if (!self.me) return;
    if (change.kind === "name") {
      if (change.name && change.name !== self.name) {
        self.name = change.name;
        adoptName({ id: self.me.id, name: change.name });
      }
    } else if (change.kind === "rooms") {
      const saved = new Set(identity.rooms());
      for (const name of saved) rooms.ensure(name);
      for (const name of rooms.names()) if (!saved.has(name) && saved.size > 0) rooms.leave(name, true);
    } else {
      rooms.readElsewhere(identity.readPositions());
    }
  }

  // ─── Screens ───────────────────────────────────────────────────────────────────────────────

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
      rooms.reveal();
      ui.text.focus();
    }
  }

  return { hello, welcome, lost, status, frame, submit, retry, typed, updateCounter, signIn, showRename, rename, adoptName, signOut, followOtherTab, showLogin, showApp };
}

