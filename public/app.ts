/**
 * The chat page: a protocol v1 client (src/protocol/wire.ts has the frames) with rooms in the URL
 * hash, optimistic sends and gap-free resume after any disconnect. This file only builds the
 * parts and starts them; nothing else runs when a module loads.
 *
 *   connection.ts  the one WebSocket: hello, reconnect, ping watchdog, rate pacing
 *   chat.ts        the conversation: frames routed, errors answered, sign in/rename/sign out
 *   rooms.ts       each room's state and log; sync.ts keeps it exactly once
 *   outbox.ts      unsent messages, sent exactly once; pending.ts draws them
 *   identity.ts    who you are, remembered for every tab; signin.ts the sign-in screen
 *   moderation.ts  roles, kicks, bans, mutes, slow mode (slow.ts its wait, pure); header.ts the room's topic and settings
 *   messages.ts    reply, edit, delete; events.ts what stored events change (pure)
 *   room.ts, presence.ts, timeline.ts, directory.ts, mentions.ts, banner.ts, menu.ts, dom.ts: what is drawn
 *   format.ts      the message format (code, quotes, bold, …): grammar, parser, drawing
 *   position.ts    where the reader is in the room shown: following, "Jump to latest", landing
 *   hash.ts        the address: room, invite, login ticket; rights.ts who may do what (pure)
 *   input.ts       what the person does, bound to what answers it
 *   sw.ts          the service worker: the page's own files kept for a reload without network
 */

import { createBanner } from "./banner.ts";
import { createChat } from "./chat.ts";
import { Connection } from "./connection.ts";
import { createDirectory } from "./directory.ts";
import { findElements } from "./elements.ts";
import { browserStore, createIdentity, watchOtherTabs, type Self } from "./identity.ts";
import { bindInput } from "./input.ts";
import { createMentions } from "./mentions.ts";
import { createOutbox, parseSaved } from "./outbox.ts";
import { parseHash } from "./hash.ts";
import { createHeader } from "./header.ts";
import { createAsk } from "./menu.ts";
import { createMessages } from "./messages.ts";
import { createModeration } from "./moderation.ts";
import { createPendingRows } from "./pending.ts";
import { createRooms } from "./rooms.ts";
import { createSignIn } from "./signin.ts";
import type { Room } from "./room.ts";
import { quoteOf } from "./events.ts";

function main(): void {
  const ui = findElements();
  const identity = createIdentity(browserStore("local"), browserStore("session"));
  const self: Self = { name: identity.name ?? "", me: null, admin: false, limits: null };
  // Who we are shows before the first welcome too (a reload without network, say).
  ui.meName.textContent = self.name;
  const banner = createBanner(ui, () => self.me !== null);
  const notice = banner.notice;
  // The parts call each other back: an arrow below that names a part built after it runs only
  // once main() has built them all.
  const url = `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}/ws`;
  const link = new Connection(url, {
    hello: () => chat.hello(),
    welcome: (f) => chat.welcome(f),
    frame: (f) => chat.frame(f),
    lost: () => chat.lost(),
    ended: (code, reason, welcomed) => chat.ended(code, reason, welcomed),
    status: (s) => chat.status(s),
  });
  const get = (path: string) => fetch(path, { cache: "no-store" });
  const directory = createDirectory(ui.directory, get, () => rooms.renderRooms());
  const ask = createAsk(ui);
  const signin = createSignIn(ui, get, ask);
  const pending = createPendingRows({
    lists: (room) => rooms.get(room)?.view,
    author: () => self.me ?? { name: self.name, id: self.name },
    quote: (room, seq) => quoteOf(rooms.get(room)?.log.get(seq)),
    offline: () => !link.ready,
    retry: (id) => chat.retry(id),
    discard: (id) => {
      outbox.discard(id);
      ui.text.focus();
    },
  });
  const outbox = createOutbox({
    send: (frame) => link.send(frame),
    canSend: (room) => link.ready && rooms.get(room)?.sync.phase === "live",
    queueDelayMs: () => link.queueDelayMs(),
    setTimer: (fn, ms) => window.setTimeout(fn, ms),
    clearTimer: (handle) => window.clearTimeout(handle),
    changed: pending.changed,
    removed: pending.removed,
    save: identity.saveOutbox,
  });
  const mentions = createMentions(ui.notify, identity, notice, (room) => rooms.open(room));
  const rooms = createRooms({
    ui,
    link,
    self,
    identity,
    outbox,
    directory,
    notice,
    mentioned: mentions.notify,
    renamed: (user) => chat.adoptName(user),
    made: (room) => moderation.made(room),
    changed,
    actsOn: (room, user) => moderation.actsOn(room, user),
    olderArrived: (room) => messages.olderArrived(room),
    restarted: (room) => {
      messages.restarted(room);
      outbox.unanchor(room.name);
    },
  });
  const moderation = createModeration({ rooms, link, self, identity, ask, notice, changed });
  const header = createHeader({ ui, rooms, link, self, notice });
  const messages = createMessages({ ui, rooms, link, self, ask, notice, maxChars: () => self.limits?.maxTextChars ?? ui.text.maxLength });
  const chat = createChat({ ui, link, self, identity, rooms, outbox, pending, directory, banner, signin, moderation, header, messages, ask });
  /** A room's role, settings or standing changed, or it is shown now: its header and the composer follow. */
  function changed(room: Room): void {
    if (room !== rooms.currentRoom()) return;
    header.draw(room);
    messages.shown(room);
    chat.updateCounter();
  }

  const touch = window.matchMedia("(pointer: coarse)").matches;
  bindInput({ ui, chat, rooms, link, mentions, directory, moderation, messages, header, touch });
  watchOtherTabs((change) => chat.followOtherTab(change));
  if (touch) {
    ui.text.enterKeyHint = "enter";
    ui.composerHint.textContent = "Enter adds a new line. The Send button sends.";
  }
  mentions.render();
  void signin.load();
  // A login ticket in the address is read once; opening the room takes it out of the address and the history.
  const start = parseHash(location.hash);
  for (const name of identity.rooms()) rooms.ensure(name);
  rooms.goTo(start);
  // Unsent messages survive a reload of this tab; they go once their room is live.
  for (const entry of parseSaved(identity.savedOutbox())) {
    rooms.ensure(entry.room);
    outbox.add(entry);
  }
  rooms.renderMembers();
  // The offline shell (sw.ts): a reload without network shows this page, its unsent messages and
  // "No network". Without a worker (plain http on another host, a private window) the page works the same.
  navigator.serviceWorker?.register("/sw.js").catch(() => {});
  if (start.token) {
    chat.signInWithTicket(start.token);
  } else if (self.name || identity.session) {
    chat.showApp();
    link.start();
  } else {
    chat.showLogin("");
  }
}

main();
