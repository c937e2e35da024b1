/**
 * What the reader does to messages: each message's menu (Reply, Edit, Delete, as far as the
 * reader may), replying (the bar above the composer; the send carries `replyTo`), editing in
 * place (Enter saves, Escape cancels), deleting after asking, and a reply's quote that shows its
 * original. The changes come back as stored events, which rooms.ts draws.
 */

import { codePoints, type ErrorFrame, type MessageFrame } from "../src/protocol/wire.ts";
import type { Connection } from "./connection.ts";
import { h } from "./dom.ts";
import type { Ui } from "./elements.ts";
import { quoteOf } from "./events.ts";
import type { Self } from "./identity.ts";
import { closeMenu, showMenu, type Ask, type MenuItem } from "./menu.ts";
import { mayDelete, rankOf } from "./rights.ts";
import type { Room } from "./room.ts";
import type { Rooms } from "./rooms.ts";
import { refFor } from "./sync.ts";

/** Messages fetched per page while looking for a reply's original: the largest page. */
const SEEK_PAGE = 200;

export interface MessagesDeps {
  ui: Ui;
  rooms: Rooms;
  link: Connection;
  self: Self;
  ask: Ask;
  notice(text: string): void;
  /** The longest text the server takes. */
  maxChars(): number;
}

export type Messages = ReturnType<typeof createMessages>;

export function createMessages(deps: MessagesDeps) {
  const { ui, rooms, link, self, ask, notice } = deps;
  /** The message the next send answers, in the room shown. */
  let replying: { room: string; seq: number } | null = null;

  /** The room and message of an element inside a message row. */
  function target(el: Element): { room: Room; li: HTMLLIElement; m: MessageFrame } | null {
    const li = el.closest<HTMLLIElement>(".msg[data-seq]");
    const room = rooms.get(li?.closest<HTMLElement>(".room")?.dataset.room ?? "");
    const m = room?.log.get(Number(li?.dataset.seq));
    return li && room && m ? { room, li, m } : null;
  }

  /** Binds the message menus and the quotes of every room, once. */
  function bind(): void {
    ui.rooms.addEventListener("click", (event) => {
      const el = event.target as Element;
      const actions = el.closest<HTMLButtonElement>(".msg-actions");
      if (actions) return openMenu(actions);
      const quote = el.closest<HTMLElement>(".msg .quote[data-target]");
      const room = quote && target(quote)?.room;
      if (room) seek(room, Number(quote.dataset.target));
    });
    ui.replyCancel.addEventListener("click", () => {
      cancelReply();
      ui.text.focus();
    });
  }

  function openMenu(button: HTMLButtonElement): void {
    const at = target(button);
    if (!at || at.m.deleted) return closeMenu();
    const { room, li, m } = at;
    const mine = m.user.id === self.me?.id;
    const items: MenuItem[] = [];
    if (!room.out) items.push({ label: "Reply", run: () => reply(room, m) });
    if (mine && !room.out) items.push({ label: "Edit", run: () => edit(room, li, m) });
    if (!room.out && mayDelete(rankOf(room.role, self.admin), rankOf(room.roles.get(m.user.id)), mine)) {
      items.push({ label: "Delete…", danger: true, run: () => void remove(room, m) });
    }
    showMenu(button, `Message by ${m.user.name}`, items);
  }

  /** Shows the message `seq` (a reply's original): at once if it is shown, else once older pages bring it. */
  function seek(room: Room, seq: number): void {
    const li = room.view.list.querySelector<HTMLElement>(`.msg[data-seq="${seq}"]`);
    if (li) {
      room.seeking = null;
      // The scroll this causes tells the room whether it still follows new messages.
      li.scrollIntoView({ block: "center" });
      li.focus({ preventScroll: true });
      // Restarts the highlight if it is still running from a jump before.
      li.classList.remove("flash");
      void li.offsetWidth;
      li.classList.add("flash");
      return;
    }
    if (!room.hasOlder || seq >= room.sync.minSeq) {
      room.seeking = null;
      return notice("That message is no longer kept.");
    }
    room.seeking = seq;
    rooms.loadOlder(room, SEEK_PAGE);
  }

  /** An older page arrived: if it was fetched to find an original, look again. */
  function olderArrived(room: Room): void {
    if (room.seeking !== null) seek(room, room.seeking);
  }

  // ─── Reply ─────────────────────────────────────────────────────────────────────────────────

  function reply(room: Room, m: MessageFrame): void {
    replying = { room: room.name, seq: m.seq };
    ui.replyText.textContent = `Replying to ${quoteOf(m)}`;
    ui.replyBar.hidden = false;
    ui.text.focus();
  }

  function cancelReply(): void {
    replying = null;
    ui.replyBar.hidden = true;
    ui.replyText.textContent = "";
  }

  /** The seq a message sent now to `room` answers, if the reader is replying there. */
  function replyTo(room: string): number | undefined {
    return replying?.room === room ? replying.seq : undefined;
  }

  /** Another room is shown: a reply begun elsewhere is dropped. */
  function shown(room: Room): void {
    if (replying && replying.room !== room.name) cancelReply();
  }

  /**
   * The room's history was reset (rooms.ts restart): the seqs of its old messages name others now,
   * so a reply begun to one of them is dropped. An edit in progress went with its row.
   */
  function restarted(room: Room): void {
    if (replying?.room === room.name) cancelReply();
    // An open message menu holds a message of the old numbering: its Reply, Edit or Delete would name another now.
    if (room === rooms.currentRoom()) closeMenu();
  }

  // ─── Edit ──────────────────────────────────────────────────────────────────────────────────

  /** Edits in place: the text becomes a field; Enter (or Save) sends the edit, Escape puts it back. */
  function edit(room: Room, li: HTMLLIElement, m: MessageFrame): void {
    const text = li.querySelector<HTMLElement>(".body > .text");
    if (!text || li.querySelector(".edit-form")) return;
    const field = h("textarea", { class: "edit-text", attrs: { rows: "1", dir: "auto", "aria-label": "Edit your message", "aria-describedby": `edit-hint-${m.seq}` } });
    field.value = m.text;
    const error = h("p", { class: "field-error", attrs: { "aria-live": "assertive" } });
    const save = h("button", { class: "primary", text: "Save", attrs: { type: "submit" } });
    const cancel = h("button", { text: "Cancel", attrs: { type: "button" } });
    const hint = h("span", { class: "hint", text: "Enter saves · Escape cancels", attrs: { id: `edit-hint-${m.seq}` } });
    const form = h("form", { class: "edit-form", attrs: { novalidate: "" } }, field, error, h("div", { class: "edit-actions" }, save, cancel, hint));
    text.hidden = true;
    text.after(form);
    const done = () => {
      form.remove();
      text.hidden = false;
      li.querySelector<HTMLButtonElement>(".msg-actions")?.focus();
    };
    cancel.addEventListener("click", done);
    field.addEventListener("keydown", (event) => {
      if (event.key === "Escape") {
        event.preventDefault();
        event.stopPropagation();
        done();
      } else if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        form.requestSubmit();
      }
    });
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const now = field.value.replace(/\r\n/g, "\n").trim();
      if (now === m.text) return done();
      error.textContent = !now ? "A message cannot be empty: delete it instead." : codePoints(now) > deps.maxChars() ? `At most ${deps.maxChars()} characters.` : "";
      if (error.textContent) return field.focus();
      if (!link.send({ type: "edit", room: room.name, seq: m.seq, text: now, ref: refFor("edit", room.name, m.seq) })) {
        error.textContent = "Not connected: try again once the chat is back.";
        return;
      }
      // The edit comes back as an event that redraws the row (and this form goes with it).
      field.disabled = save.disabled = true;
      save.textContent = "Saving…";
    });
    field.focus();
    field.setSelectionRange(field.value.length, field.value.length);
  }

  /** The server refused an edit: the form says why and can be tried again. */
  function editRefused(room: Room, seq: number, f: ErrorFrame): void {
    const form = room.view.list.querySelector(`.msg[data-seq="${seq}"] .edit-form`);
    if (!form) return notice(`Could not edit the message: ${f.message}.`);
    unsaved(form, `Not saved: ${f.message}.`);
  }

  /** An edit form saving (`why` says what became of it) can be saved again. */
  function unsaved(form: Element, why: string): void {
    const field = form.querySelector("textarea")!;
    const save = form.querySelector<HTMLButtonElement>("button[type=submit]")!;
    field.disabled = save.disabled = false;
    save.textContent = "Save";
    form.querySelector(".field-error")!.textContent = why;
    field.focus();
  }

  /**
   * The connection is gone, and the answers to edits still saving with it: each form can be saved
   * again (an edit that was stored comes back with the catch-up, and redraws its row).
   */
  function lost(): void {
    for (const form of document.querySelectorAll(".edit-form")) {
      if (form.querySelector("textarea")?.disabled) unsaved(form, "Not saved: the connection was lost. Save again once the chat is back.");
    }
  }

  /** The edit is stored: focus goes back to its row (the form it was in is gone). */
  function edited(room: Room, seq: number): void {
    if (document.activeElement !== document.body) return;
    room.view.list.querySelector<HTMLElement>(`.msg[data-seq="${seq}"] .msg-actions`)?.focus();
  }

  // ─── Delete ────────────────────────────────────────────────────────────────────────────────

  async function remove(room: Room, m: MessageFrame): Promise<void> {
    const mine = m.user.id === self.me?.id;
    const answer = await ask({
      title: "Delete this message?",
      text: `${mine ? "" : `It is by ${m.user.name}. `}Everyone in #${room.name} will see “message deleted” in its place. This cannot be undone.`,
      ok: "Delete",
    });
    if (!answer) return;
    if (!link.send({ type: "delete", room: room.name, seq: m.seq, ref: refFor("delete", room.name, m.seq) })) {
      notice("Not connected: the message was not deleted.");
    }
  }

  return { bind, replyTo, cancelReply, shown, restarted, editRefused, edited, olderArrived, lost };
}
