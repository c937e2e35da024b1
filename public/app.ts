/**
 * The chat page: a protocol v1 client (src/protocol/wire.ts has the frames) with rooms in the URL
 * hash, optimistic sends and gap-free resume after any disconnect. This file only builds the
 * parts and starts them; nothing else runs when a module loads.
 *
 *   connection.ts  the one WebSocket: hello, reconnect, ping watchdog, rate pacing
 *   chat.ts        the conversation: frames routed, errors answered, sign in/rename/sign out
 *   rooms.ts       each room's state and log; sync.ts keeps it exactly once
 *   outbox.ts      unsent messages, sent exactly once; pending.ts draws them
 *   identity.ts    who you are, remembered for every tab
 *   room.ts, timeline.ts, directory.ts, mentions.ts, banner.ts, dom.ts: what is drawn
 *   input.ts       what the person does, bound to what answers it
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
import { createPendingRows } from "./pending.ts";
import { DEFAULT_ROOM, createRooms } from "./rooms.ts";

function main(): void {
  const ui = findElements();
  const identity = createIdentity(browserStore("local"), browserStore("session"));
  const self: Self = { name: identity.name ?? "", me: null, limits: null };
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
    status: (s) => chat.status(s),
  });
  const directory = createDirectory(ui.directory, (path) => fetch(path, { cache: "no-store" }), () => rooms.renderRooms());
  const pending = createPendingRows({
    lists: (room) => rooms.get(room)?.view,
    author: () => ({ name: self.me?.name ?? self.name, id: self.me?.id }),
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
  });
  const chat = createChat({ ui, link, self, identity, rooms, outbox, pending, directory, banner });

  const touch = window.matchMedia("(pointer: coarse)").matches;
  bindInput({ ui, chat, rooms, link, mentions, directory, touch });
  watchOtherTabs((change) => chat.followOtherTab(change));
  if (touch) {
    ui.text.enterKeyHint = "enter";
    ui.composerHint.textContent = "Enter adds a new line. The Send button sends.";
  }
  mentions.render();
  for (const name of identity.rooms()) rooms.ensure(name);
  rooms.open(rooms.fromHash() ?? DEFAULT_ROOM);
  // Unsent messages survive a reload of this tab; they go once their room is live.
  for (const entry of parseSaved(identity.savedOutbox())) {
    rooms.ensure(entry.room);
    outbox.add(entry);
  }
  rooms.renderMembers();
  if (self.name) {
    chat.showApp();
    link.start();
  } else {
    chat.showLogin("");
  }
}

main();
