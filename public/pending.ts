/**
 * Our unsent messages on screen: one row per outbox item, below its room's confirmed messages,
 * saying what is happening to it and offering Retry and Discard when it needs the user.
 */

import type { UserRef } from "../src/protocol/wire.ts";
import { h } from "./dom.ts";
import type { Outgoing } from "./outbox.ts";
import { pendingRow, regroupPending } from "./timeline.ts";

export interface PendingDeps {
  /** The lists of `room`: its confirmed messages and its pending ones; undefined for a room not shown. */
  lists(room: string): { list: HTMLOListElement; outbox: HTMLOListElement } | undefined;
  /** Who writes: the reader (with the name as its id before the first welcome). */
  author(): UserRef;
  /** What the quote of a reply says of the message it answers. */
  quote(room: string, seq: number): string;
  /** Whether the connection is down: a waiting message then says it waits for it. */
  offline(): boolean;
  retry(id: string): void;
  discard(id: string): void;
}

export type PendingRows = ReturnType<typeof createPendingRows>;

export function createPendingRows(deps: PendingDeps) {
  const rows = new Map<string, HTMLLIElement>();

  /** An item was added or changed: its row, made on first sight, shows its state. */
  function changed(item: Outgoing): void {
    let li = rows.get(item.id);
    if (!li) {
      const lists = deps.lists(item.room);
      if (!lists) return;
      li = row(item);
      rows.set(item.id, li);
      lists.outbox.append(li);
      regroupPending(lists.list, lists.outbox, deps.author().id);
    }
    draw(li, item);
  }

  /** The item is confirmed or dropped: the pending row gives way (to the real one, if it came). */
  function removed(item: Outgoing): void {
    rows.get(item.id)?.remove();
    rows.delete(item.id);
    const lists = deps.lists(item.room);
    if (lists) regroupPending(lists.list, lists.outbox, deps.author().id);
  }

  /** Redraws every row: the connection came or went. */
  function drawAll(items: Iterable<Outgoing>): void {
    for (const item of items) changed(item);
  }

  /** We took a new name: our pending rows show it. */
  function rename(name: string): void {
    for (const li of rows.values()) li.querySelector(".author")!.textContent = name;
  }

  function row(item: Outgoing): HTMLLIElement {
    const retryButton = h("button", { class: "link-button", text: "Retry", attrs: { type: "button" } });
    const discardButton = h("button", { class: "link-button", text: "Discard", attrs: { type: "button" } });
    retryButton.addEventListener("click", () => deps.retry(item.id));
    discardButton.addEventListener("click", () => deps.discard(item.id));
    const status = h("p", { class: "send-state" }, h("span", { class: "state-text" }), " ", retryButton, " ", discardButton);
    const quote = item.replyTo === undefined ? null : deps.quote(item.room, item.replyTo);
    return pendingRow(item.id, item.text, deps.author(), status, quote);
  }

  function draw(li: HTMLLIElement, item: Outgoing): void {
    const offline = deps.offline();
    li.dataset.state = item.state;
    const text =
      item.state === "failed"
        ? item.error
        : item.state === "waiting" && offline
          ? "Not sent yet: it goes out when the connection is back."
          : "Sending…";
    li.querySelector(".state-text")!.textContent = text;
    const needsHand = item.state === "failed" || (item.state === "waiting" && offline);
    for (const button of li.querySelectorAll<HTMLButtonElement>(".send-state button")) button.hidden = !needsHand;
  }

  return { changed, removed, drawAll, rename };
}

