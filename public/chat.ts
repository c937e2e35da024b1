/**
 * The conversation with the server, for this tab: hello and welcome, frames routed to the rooms
 * and to what answers them (moderation, the header, message edits), sends through the outbox,
 * errors answered (retried, reported or undone), the composer's state, and who we are — signing
 * in (by name, login ticket or admin token), renaming, signing out, following the other tabs.
 */

import { CLOSE, CLOSE_REASON, codePoints, type ErrorCode, type ErrorFrame, type HelloFrame, type OkFrame, type RenamedFrame, type ServerFrame, type UserRef, type WelcomeFrame } from "../src/protocol/wire.ts";
import type { Banner } from "./banner.ts";
import type { Connection, Status } from "./connection.ts";
import type { Directory } from "./directory.ts";
import { TIMER_MAX_MS, h, randomId } from "./dom.ts";
import type { Ui } from "./elements.ts";
import { duration } from "./events.ts";
import type { Header } from "./header.ts";
import type { Change, Identity, Self } from "./identity.ts";
import type { Ask } from "./menu.ts";
import type { Messages } from "./messages.ts";
import type { Moderation } from "./moderation.ts";
import { PASSING, type Outbox } from "./outbox.ts";
import type { PendingRows } from "./pending.ts";
import { parseHash } from "./hash.ts";
import type { Room } from "./room.ts";
import type { Rooms } from "./rooms.ts";
import type { SignIn } from "./signin.ts";
import { parseRef, refFor } from "./sync.ts";

/** Wait before redoing a request the server refused for a passing reason (rate_limited, internal) without saying how long. */
const RETRY_DELAY_MS = 1_000;
/**
 * A join refused for longer than this (too many new rooms started this hour) is told to the
 * reader, and the room waits out of the way, not busy joining, until then.
 */
const LONG_WAIT_MS = 10_000;
/** The character counter appears once a text uses this share of maxTextChars. */
const COUNTER_FROM = 0.8;
/** The longest text accepted before the server has told us its limit. */
const FALLBACK_MAX_CHARS = 2_000;

/** How long a sign-out waits for the server to close the session's connections before forgetting it anyway. */
const SIGNOUT_WAIT_MS = 5_000;

const NAME_REFUSED: Partial<Record<ErrorCode, string>> = {
  name_invalid: "Use 1 to 32 letters, digits, spaces, _ - or .",
  name_taken: "That name is taken (someone online, or a guest who keeps it). Try another.",
};

/** What a refused join tells the reader (the room is then left). */
const JOIN_REFUSED: Partial<Record<ErrorCode, (room: string) => string>> = {
  too_many_rooms: (room) => `You are in too many rooms to join #${room}.`,
  forbidden: (room) => `#${room} is private (or new rooms are not yours to start): you need an invite link to join it.`,
  invite_invalid: (room) => `That invite link to #${room} does not work any more: it was used up or expired. Ask for a new one.`,
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
  signin: SignIn;
  moderation: Moderation;
  header: Header;
  messages: Messages;
  ask: Ask;
}

export type Chat = ReturnType<typeof createChat>;

export function createChat(deps: ChatDeps) {
  const { ui, link, self, identity, rooms, outbox, pending, directory, banner, signin, moderation, header, messages, ask } = deps;
  /** While a new name is being asked for: the name to fall back to if it is refused. */
  let renamingFrom: string | null = null;
  /** A login ticket from the address (`#token=…`), for the next hello only; never stored. */
  let ticket: string | null = null;
  /** An admin token from the sign-in screen, for the next hello only; never stored. */
  let adminToken: string | null = null;
  /** Already signed in, reconnecting with an admin token: a wrong one keeps us as we were. */
  let elevating = false;
  /** The Send button's countdown. */
  let countdown = 0;
  /** A sign-out was sent: the server's close (1000 "signed out") completes it. */
  let signingOut = false;
  /** Counts welcomes, so a retry scheduled on one connection does nothing on the next. */
  let generation = 0;
  let lastTypingSent = 0;

  // ─── Connection events ─────────────────────────────────────────────────────────────────────

  /**
   * The hello of a new socket: a login ticket if one came in the address (a member's token names
   * them), else our name; our session if this browser has one; an admin token given at sign-in.
   */
  function hello(): HelloFrame {
    const session = identity.session;
    return {
      type: "hello",
      ...(ticket ? { token: ticket } : self.name ? { name: self.name } : {}),
      ...(session ? { session } : {}),
      ...(adminToken ? { adminToken } : {}),
      ref: "hello",
    };
  }

  function welcome(f: WelcomeFrame): void {
    generation++;
    ticket = adminToken = null;
    elevating = false;
    self.me = f.user;
    self.admin = f.admin === true;
    self.limits = f.limits;
    self.name = f.user.name;
    // A rename is a new hello: rows of ours not yet sent show the name they will be sent with.
    pending.rename(f.user.name);
    identity.remember(f.session, f.user.name);
    rooms.save();
    if (renamingFrom !== null) {
      renamingFrom = null;
      showRename(false);
    }
    showApp();
    ui.meName.textContent = f.user.name;
    // A member's name is its app's: only guests rename here.
    ui.renameButton.hidden = f.user.kind !== undefined;
    signin.drawMe(f.user, self.admin);
    ui.adminSignIn.hidden = self.admin;
    rooms.joinAll();
    rooms.renderMembers();
    const room = rooms.currentRoom();
    if (room) header.draw(room);
    updateCounter();
    void directory.refresh();
  }

  /**
   * The server closed the socket. Banned from the chat (4003): stay closed and say why. Signed out
   * (by another tab or device of this session): forget it here too. A hello too big to read (1009
   * before any welcome, from what this browser stored): forget it, and ask for a name.
   */
  function ended(code: number, reason: string, welcomed: boolean): Status | null {
    if (code === CLOSE.banned) return { state: "offline", note: moderation.serverBanned(), canRetry: false };
    if (code === CLOSE.normal && reason === CLOSE_REASON.signedOut) {
      forgetHere();
      return { state: "offline", note: "Signed out.", canRetry: false };
    }
    if (code === CLOSE.tooBig && !welcomed) {
      ticket = adminToken = null;
      forgetHere("What this browser kept of you could not be used. Pick a name to start again.");
      return { state: "offline", note: "Choose a name to join.", canRetry: false };
    }
    return null;
  }

  function lost(): void {
    rooms.lost();
    outbox.lost();
    messages.lost();
    header.lost();
  }

  function status(status: Status): void {
    banner.status(status);
    pending.drawAll(outbox.values());
  }

  function frame(f: ServerFrame): void {
    switch (f.type) {
      case "joined":
        moderation.joined(f.room);
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
        return moderation.onLeft(f);
      case "moderation":
        return moderation.onModeration(f);
      case "invite":
        return header.inviteArrived(f);
      case "ok":
        return done(f);
      case "renamed":
        return renamedByServer(f);
      case "welcome":
      case "pong":
        return;
    }
  }

  /** A command was carried out: close what waited for it. */
  function done(f: OkFrame): void {
    // The session is over: the server has closed its connections, this one included (its close
    // reaches the browser a moment later).
    if (f.for === "signout" && signingOut) return forgetHere();
    const ref = parseRef(f.ref);
    const room = ref && rooms.get(ref.room);
    if (!ref || !room) return;
    if (ref.kind === "settings") header.settingsSaved(room.name);
    else if (ref.kind === "edit") messages.edited(room, Number(ref.about));
    else if (ref.kind === "serverban") banner.notice(`${ref.about} is banned from this chat.`);
  }

  // ─── Sending ───────────────────────────────────────────────────────────────────────────────

  function submit(): void {
    const room = rooms.currentRoom();
    // What the server will store: CRLF as LF, trimmed.
    const text = ui.text.value.replace(/\r\n/g, "\n").trim();
    const state = moderation.writeState(room);
    const over = codePoints(text) - maxChars();
    // Enter past the limit says why, where a screen reader hears it (the Send button is greyed out).
    if (over > 0) return tooLong(over);
    if (!room || !text || state.blocked || state.waitMs > 0) return;
    const replyTo = messages.replyTo(room.name);
    outbox.add({ id: randomId(), room: room.name, text, ...(replyTo === undefined ? {} : { replyTo }) });
    messages.cancelReply();
    ui.text.value = "";
    updateCounter();
    rooms.wrote(room);
    outbox.flush(room.name);
  }

  /** The text is `over` characters past the limit: the composer says so, and by how much. */
  function tooLong(over: number): void {
    const max = maxChars();
    ui.composerError.textContent = `Too long to send: ${(max + over).toLocaleString()} characters, ${over.toLocaleString()} over the limit of ${max.toLocaleString()}.`;
    ui.text.setAttribute("aria-invalid", "true");
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

  /**
   * The composer for the room shown: the character counter; a note when writing is closed (muted,
   * read-only, out of the room) or slowed; Send disabled, with a countdown in slow mode.
   */
  function updateCounter(): void {
    const used = codePoints(ui.text.value.replace(/\r\n/g, "\n").trim());
    const max = maxChars();
    const show = used >= max * COUNTER_FROM;
    // Shown as "1900 / 2000", read out as "1900 of 2000 characters" (it is a polite live region).
    ui.counter.replaceChildren(
      ...(show ? [h("span", { text: `${used} / ${max}`, attrs: { "aria-hidden": "true" } }), h("span", { class: "visually-hidden", text: `${used} of ${max} characters` })] : []),
    );
    ui.counter.classList.toggle("over", used > max);
    if (used <= max) {
      ui.composerError.textContent = "";
      ui.text.removeAttribute("aria-invalid");
    }
    const state = moderation.writeState(rooms.currentRoom());
    const wait = Math.ceil(state.waitMs / 1000);
    ui.send.disabled = used > max || state.blocked || wait > 0;
    ui.send.textContent = wait > 0 ? `Send (${wait} s)` : "Send";
    ui.text.disabled = state.blocked;
    ui.composerNote.textContent = state.note;
    ui.composerNote.hidden = !state.note;
    // Drawn again when it changes by itself: each second of the countdown, the end of a mute.
    window.clearTimeout(countdown);
    if (state.changesInMs > 0) countdown = window.setTimeout(updateCounter, Math.min(state.changesInMs, TIMER_MAX_MS));
  }

  function maxChars(): number {
    return self.limits?.maxTextChars ?? FALLBACK_MAX_CHARS;
  }

  // ─── Errors ────────────────────────────────────────────────────────────────────────────────

  function error(f: ErrorFrame): void {
    const ref = f.ref ?? "";
    if (ref === "hello") return helloRefused(f);
    if (ref === "signout") {
      banner.notice(`The server could not end the session (${f.message}); this browser forgets it anyway.`);
      return forgetHere();
    }
    const item = outbox.get(ref);
    const refusal = outbox.refused(ref, f);
    if (item && refusal) {
      const room = rooms.get(item.room);
      if (room) moderation.sendRefused(room, f);
      if (room && refusal === "rejoin") rooms.join(room);
      else if (room && refusal === "later") later(() => outbox.flush(room.name), f.retryAfterMs);
      return;
    }
    const parsed = parseRef(ref);
    const room = parsed ? rooms.get(parsed.room) : undefined;
    switch (parsed?.kind) {
      case "typing":
      case "leave":
        return; // nothing to redo: typing is best effort, and a refused leave means we are out
      case "join":
        if (!room) return;
        if (PASSING.includes(f.code)) return joinLater(room, f.retryAfterMs);
        if (moderation.joinRefused(room, f)) return;
        banner.notice(JOIN_REFUSED[f.code]?.(room.name) ?? `Could not join #${room.name}: ${f.message}.`);
        return rooms.leave(room.name, false);
      case "forward":
        if (room) later(() => rooms.retry(room, "forward"), f.retryAfterMs);
        return;
      case "older":
        if (room) rooms.olderFailed(room);
        return banner.notice(`Could not load older messages: ${f.message}.`);
      case "settings":
        return header.settingsRefused(parsed.room, f);
      case "invite":
        return header.inviteRefused(parsed.room, f);
      case "edit":
        return room ? messages.editRefused(room, Number(parsed.about), f) : undefined;
      case "delete":
        return banner.notice(`Could not delete the message: ${f.message}.`);
      case "moderate":
      case "serverban":
        return banner.notice(`Not done: ${f.message}.`);
      default:
        banner.notice(f.message);
    }
  }

  function helloRefused(f: ErrorFrame): void {
    // Passing trouble: the connection tries again when the socket is given up (by the server's
    // close, or the connect timeout), not before the server's retryAfterMs (the hello rate).
    if (PASSING.includes(f.code)) {
      if (f.retryAfterMs !== undefined) link.holdOff(f.retryAfterMs);
      return;
    }
    if (f.code === "auth_required" || f.code === "auth_invalid") return signInRefused(f);
    // A hello with a session and no name (none stored that could be one) found the session gone: just ask.
    const why = !self.name && f.code === "name_invalid" ? "" : (NAME_REFUSED[f.code] ?? f.message);
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

  /**
   * A hello without a valid sign-in: guests are not taken (the screen says members only), a login
   * ticket did not check out, or an admin token was wrong. Nothing is retried with it.
   */
  function signInRefused(f: ErrorFrame): void {
    if (elevating && f.code === "auth_invalid" && adminToken !== null) {
      // Signed in already: say so, and say hello again as we were.
      elevating = false;
      adminToken = null;
      banner.notice("That admin token is not right: nothing changed.");
      if (!link.helloAgain()) link.retryNow();
      return;
    }
    const why =
      f.code === "auth_required" ? "" : ticket ? `Your sign-in link did not work (${f.message}). Ask your app for a new one.` : adminToken ? "That admin token is not right." : f.message;
    const wrongAdmin = f.code === "auth_invalid" && !ticket && adminToken !== null;
    ticket = adminToken = null;
    if (f.code === "auth_required") signin.membersOnly();
    link.stop({ state: "offline", note: f.code === "auth_required" ? "This chat takes members only." : "Not signed in.", canRetry: false });
    renamingFrom = null;
    showLogin(self.me ? "" : self.name, why);
    if (wrongAdmin) signin.adminRefused(why);
  }

  /**
   * A join refused for a while is asked again when the server says (`retryAfterMs`). A long wait
   * is said, in the room (out of it, with "Join again") and, for a room not shown, in a notice;
   * the room is joined again by itself when the wait is over.
   */
  function joinLater(room: Room, ms = RETRY_DELAY_MS): void {
    if (ms <= LONG_WAIT_MS) return later(() => rooms.retry(room, "join"), ms);
    const text = `Too many new rooms started: try #${room.name} again in ${duration(Math.ceil(ms / 60_000) * 60)}.`;
    if (rooms.currentRoom() !== room) banner.notice(text);
    rooms.shut(room, text, true);
    if (ms > TIMER_MAX_MS) return;
    window.setTimeout(() => {
      // Still out for this reason, and still on the list: not joined by hand, left or refused otherwise meanwhile.
      if (room.out?.text === text && rooms.get(room.name) === room) rooms.rejoin(room);
    }, ms);
  }

  /** Runs `fn` after `ms` (RETRY_DELAY_MS by default), unless the connection was replaced meanwhile. */
  function later(fn: () => unknown, ms = RETRY_DELAY_MS): void {
    const asked = generation;
    window.setTimeout(() => {
      if (link.ready && asked === generation) fn();
    }, ms);
  }

  // ─── Who we are: sign in, rename, sign out, other tabs ─────────────────────────────────────

  /** The login form: connect as `name`, as an admin when `admin` (a token) is given. */
  function signIn(name: string, admin = ""): void {
    self.name = name;
    adminToken = admin || null;
    ui.loginError.textContent = "";
    ui.loginName.setAttribute("aria-invalid", "false");
    ui.loginSubmit.disabled = true;
    link.start();
  }

  /** Signed in already, as a guest or member: reconnect with an admin token, kept for that hello only (§11.1). */
  async function becomeAdmin(): Promise<void> {
    const answer = await ask({
      title: "Sign in as an admin",
      text: "The page reconnects with the token; your name and rooms stay. This browser does not keep the token.",
      ok: "Sign in",
      secret: "Admin token",
    });
    if (!answer?.secret) return;
    adminToken = answer.secret;
    elevating = true;
    link.retryNow();
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
   * The server gave us another name: after it lost its data (Redis), someone who held ours first
   * kept it. The rooms hear it as a rename; we say why, in the notice and in the room shown.
   */
  function renamedByServer(f: RenamedFrame): void {
    adoptName(f.user);
    const text = `Someone else had your name after a server reset; you are now ${f.user.name}. Change it with “Change name” in the sidebar.`;
    banner.notice(text);
    const room = rooms.currentRoom();
    if (room) rooms.line(room, text);
  }

  /** A login ticket came in the address (`#token=…`): sign in with it, once. */
  function signInWithTicket(token: string): void {
    ticket = token;
    showApp();
    link.retryNow();
  }

  /**
   * "Sign out", asked first: the server ends the session (`signout`): its name is free, every
   * connection of it closes, and it leaves every room at once (others see us go now, not after
   * the presence grace). This browser forgets us in every tab.
   */
  async function signOut(): Promise<void> {
    if (!(await signin.confirmSignOut(self.me, link.ready))) return;
    // The server closes every connection of the session, this one included, and they leave their
    // rooms at once. Closing this one ourselves first would be a drop: its rooms would keep us
    // (and our name) for the presence grace.
    if (link.ready && link.send({ type: "signout", ref: "signout" })) {
      signingOut = true;
      window.setTimeout(() => signingOut && forgetHere(), SIGNOUT_WAIT_MS);
      return;
    }
    forgetHere();
  }

  /** Forgets who we are in this tab (and, through localStorage, in the others), with `error` on the sign-in screen. */
  function forgetHere(error = ""): void {
    signingOut = false;
    identity.forget();
    link.finish({ state: "offline", note: "Signed out.", canRetry: false });
    self.me = null;
    self.admin = false;
    self.name = "";
    renamingFrom = null;
    outbox.clear();
    rooms.clear();
    messages.cancelReply();
    rooms.goTo(parseHash(location.hash));
    rooms.renderMembers();
    showRename(false);
    rooms.drawer(false);
    showLogin("", error);
  }

  /** Another tab changed what we share: follow it. */
  function followOtherTab(change: Change): void {
    if (change.kind === "session") {
      // Signed out in another tab: this one too, even if it is still connecting (its hello would
      // otherwise make a new user with the old name).
      if (!identity.session && ui.login.hidden) return forgetHere();
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
    signin.show(name, error);
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

  return {
    hello, welcome, ended, lost, status, frame, submit, retry, typed, updateCounter,
    signIn, signInWithTicket, becomeAdmin, showRename, rename, adoptName, signOut, followOtherTab, showLogin, showApp,
  };
}

