/**
 * The rows of a room's log: confirmed messages in seq order, grouped by author, day separators,
 * presence lines (runs of joins and leaves folded into one), and our own pending messages (kept
 * in a separate list below the confirmed ones).
 */

import type { MessageFrame, UserRef } from "../src/protocol/wire.ts";
import { dayKey, dayLabel, h, hueOf, richText, timeEl } from "./dom.ts";

/** Messages of one user further apart than this start a new group with name and time. */
const GROUP_GAP_MS = 5 * 60_000;
/** A presence line names this many people before "and N others". */
const NAMES_SHOWN = 2;

/** A square with the user's initial in a colour of their own. */
export function avatar(name: string, userId: string): HTMLElement {
  const el = h("span", { class: "avatar", text: ([...name.trim()][0] ?? "?").toUpperCase(), attrs: { "aria-hidden": "true" } });
  // CSSOM, not a style attribute: allowed by the page's CSP.
  el.style.setProperty("--hue", String(hueOf(userId)));
  return el;
}

function row(name: string, userId: string, mine: boolean, ts: number | null, ...body: Node[]): HTMLLIElement {
  const meta = h(
    "p",
    { class: "meta" },
    h("span", { class: "author", text: name, attrs: { dir: "auto" } }),
    mine && h("span", { class: "you", text: "you" }),
  );
  if (ts !== null) meta.append(timeEl(ts));
  // A grouped row hides its meta; this copy of the time shows beside it on hover, focus or tap.
  const side = ts !== null && timeEl(ts, "side-time");
  if (side) side.setAttribute("aria-hidden", "true");
  const li = h("li", { class: mine ? "msg mine" : "msg" }, avatar(name, userId), side, h("div", { class: "body" }, meta, ...body));
  li.dataset.user = userId;
  return li;
}

/** A confirmed message; `me` (the reader's name) highlights mentions of the reader. */
export function messageRow(m: MessageFrame, mine: boolean, me: string | null): HTMLLIElement {
  const li = row(m.user.name, m.user.id, mine, m.ts, h("p", { class: "text", attrs: { dir: "auto" } }, ...richText(m.text, me)));
  li.dataset.seq = String(m.seq);
  li.dataset.id = m.id;
  li.dataset.ts = String(m.ts);
  li.tabIndex = -1;
  return li;
}

/** Our message before the server has it: its text, then `status` (what is happening, and controls). */
export function pendingRow(id: string, text: string, name: string, userId: string, status: HTMLElement): HTMLLIElement {
  const li = row(name, userId, true, null, h("p", { class: "text", attrs: { dir: "auto" } }, ...richText(text)), status);
  li.classList.add("pending");
  li.dataset.id = id;
  return li;
}

/** A line about the room (a rename, say), dated `ts`. */
export function eventRow(text: string, ts: number): HTMLLIElement {
  const li = h("li", { class: "event" }, h("span", { text }), " ", timeEl(ts));
  li.dataset.ts = String(ts);
  return li;
}

/** "alice", "alice and bob", "alice, bob and carol", "alice, bob and 12 others". */
export function listNames(names: readonly string[]): string {
  if (names.length <= 1) return names[0] ?? "";
  if (names.length === 2) return `${names[0]} and ${names[1]}`;
  if (names.length === NAMES_SHOWN + 1) return `${names.slice(0, -1).join(", ")} and ${names.at(-1)}`;
  return `${names.slice(0, NAMES_SHOWN).join(", ")} and ${names.length - NAMES_SHOWN} others`;
}

/** Each presence line's people, in order of first appearance, with what each did last. */
const presenceLines = new WeakMap<HTMLLIElement, Map<string, { name: string; event: "join" | "leave" }>>();

/**
 * Adds a join or leave to the log: to the presence line at its end when nothing was said since,
 * else on a new line. One line tells "alice, bob and 12 others joined" instead of 14 lines.
 */
export function addPresence(list: HTMLOListElement, user: UserRef, event: "join" | "leave", ts: number): void {
  let li = list.lastElementChild as HTMLLIElement | null;
  let people = li ? presenceLines.get(li) : undefined;
  if (!li || !people) {
    li = h("li", { class: "event presence" }, h("span"), " ", h("time"));
    li.dataset.ts = String(ts);
    people = new Map();
    presenceLines.set(li, people);
    list.append(li);
  }
  // Someone who comes and goes within one line is told once, with what they did last.
  people.delete(user.id);
  people.set(user.id, { name: user.name, event });
  const joined = [...people.values()].filter((p) => p.event === "join").map((p) => p.name);
  const left = [...people.values()].filter((p) => p.event === "leave").map((p) => p.name);
  const text = [joined.length && `${listNames(joined)} joined`, left.length && `${listNames(left)} left`].filter(Boolean).join("; ");
  li.firstElementChild!.textContent = text;
  li.lastElementChild!.replaceWith(timeEl(ts));
}

const isMessage = (el: Element | null): el is HTMLElement => el !== null && el.classList.contains("msg");

/**
 * Inserts a message row after the last row with a smaller seq, and after the presence lines
 * that follow that row. Live messages land at the end in one step; catch-up and older pages find
 * their place. `layout` then fixes groups and days.
 */
export function insertBySeq(list: HTMLOListElement, li: HTMLLIElement, seq: number): void {
  let anchor = list.lastElementChild;
  while (anchor && !(isMessage(anchor) && Number(anchor.dataset.seq) < seq)) anchor = anchor.previousElementSibling;
  let next = anchor ? anchor.nextElementSibling : list.firstElementChild;
  while (next && !isMessage(next)) next = next.nextElementSibling;
  list.insertBefore(li, next);
}

/**
 * One pass over a log after rows were added: a day separator before the first row of each day,
 * and a message continues the group above it (no name, no avatar) when the same user wrote it
 * on the same day, shortly after, with nothing in between.
 */
export function layout(list: HTMLOListElement): void {
  let day = "";
  let prev: HTMLElement | null = null;
  for (const el of [...list.children] as HTMLElement[]) {
    if (el.classList.contains("day")) {
      el.remove();
      continue;
    }
    const ts = Number(el.dataset.ts);
    if (el.dataset.ts !== undefined && dayKey(ts) !== day) {
      day = dayKey(ts);
      list.insertBefore(dayRow(ts), el);
      prev = null;
    }
    if (isMessage(el)) {
      el.classList.toggle(
        "cont",
        isMessage(prev) && prev.dataset.user === el.dataset.user && ts - Number(prev.dataset.ts) < GROUP_GAP_MS,
      );
    }
    prev = el;
  }
}

function dayRow(ts: number): HTMLLIElement {
  const li = h("li", { class: "day" }, h("span", { text: dayLabel(ts) }));
  li.setAttribute("role", "separator");
  return li;
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
