/**
 * The rows of a room's log: confirmed messages in seq order, grouped by author, presence lines,
 * and our own pending messages (kept in a separate list below the confirmed ones).
 */

import type { MessageFrame } from "../server.ts";
import { h, hueOf, richText, timeEl } from "./dom.ts";

/** Messages of one user further apart than this start a new group with name and time. */
const GROUP_GAP_MS = 5 * 60_000;

/** A square with the user's initial in a colour of their own. */
export function avatar(name: string, userId: string): HTMLElement {
  const el = h("span", { class: "avatar", text: ([...name.trim()][0] ?? "?").toUpperCase(), attrs: { "aria-hidden": "true" } });
  // CSSOM, not a style attribute: allowed by the page's CSP.
  el.style.setProperty("--hue", String(hueOf(userId)));
  return el;
}

function row(name: string, userId: string, mine: boolean, ts: number | null, ...body: Node[]): HTMLLIElement {
  const meta = h("p", { class: "meta" }, h("span", { class: "author", text: name }), mine && h("span", { class: "you", text: "you" }));
  if (ts !== null) meta.append(timeEl(ts));
  const li = h("li", { class: mine ? "msg mine" : "msg" }, avatar(name, userId), h("div", { class: "body" }, meta, ...body));
  li.dataset.user = userId;
  return li;
}

export function messageRow(m: MessageFrame, mine: boolean): HTMLLIElement {
  const li = row(m.user.name, m.user.id, mine, m.ts, h("p", { class: "text" }, ...richText(m.text)));
  li.dataset.seq = String(m.seq);
  li.dataset.id = m.id;
  li.dataset.ts = String(m.ts);
  return li;
}

/** Our message before the server has it: its text, then `status` (what is happening, and controls). */
export function pendingRow(id: string, text: string, name: string, userId: string, status: HTMLElement): HTMLLIElement {
  const li = row(name, userId, true, null, h("p", { class: "text" }, ...richText(text)), status);
  li.classList.add("pending");
  li.dataset.id = id;
  return li;
}

export function eventRow(text: string, ts: number): HTMLLIElement {
  return h("li", { class: "event" }, h("span", { text }), " ", timeEl(ts));
}

const isMessage = (el: Element | null): el is HTMLElement => el !== null && el.classList.contains("msg");

/**
 * Inserts a message row after the last row with a smaller seq, and after the presence lines
 * that follow that row, then regroups it and the row after it. Live messages land at the end
 * in one step; catch-up and older pages find their place.
 */
export function insertBySeq(list: HTMLOListElement, li: HTMLLIElement, seq: number): void {
  let anchor = list.lastElementChild;
  while (anchor && !(isMessage(anchor) && Number(anchor.dataset.seq) < seq)) anchor = anchor.previousElementSibling;
  let next = anchor ? anchor.nextElementSibling : list.firstElementChild;
  while (next && !isMessage(next)) next = next.nextElementSibling;
  list.insertBefore(li, next);
  regroup(li);
  if (isMessage(li.nextElementSibling)) regroup(li.nextElementSibling);
}

/** A row continues the previous one's group when the same user wrote it shortly after. */
function regroup(li: HTMLElement): void {
  const prev = li.previousElementSibling;
  const cont =
    isMessage(prev) && prev.dataset.user === li.dataset.user && Number(li.dataset.ts) - Number(prev.dataset.ts) < GROUP_GAP_MS;
  li.classList.toggle("cont", cont);
}

/** Pending rows are all ours: each continues the one above it, the first the last confirmed one if ours. */
export function regroupPending(list: HTMLOListElement, outbox: HTMLOListElement, myId: string | undefined): void {
  const last = list.lastElementChild;
  let prevMine = isMessage(last) && last.dataset.user === myId;
  for (const li of outbox.children) {
    li.classList.toggle("cont", prevMine);
    prevMine = true;
  }
}
