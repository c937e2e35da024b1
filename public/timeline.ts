/**
 * The rows of a room's log: confirmed messages in seq order, grouped by author (and by the name
 * each was sent with), day separators, renames, presence lines (runs of joins and leaves folded
 * into one), and our own pending messages (kept in a separate list below the confirmed ones).
 */

import type { MessageFrame, UserRef } from "../src/protocol/wire.ts";
import { codePoints } from "../src/protocol/wire.ts";
import { dayKey, dayLabel, h, hueOf, timeEl } from "./dom.ts";
import { formatted } from "./format.ts";

/** Messages of one user further apart than this start a new group with name and time. */
const GROUP_GAP_MS = 5 * 60_000;
/** A presence line names this many people before "and N others". */
const NAMES_SHOWN = 2;
/** A message longer than this (lines, or characters) is shown folded, with "Show more". */
const LONG_LINES = 25;
const LONG_CHARS = 1_500;

/** A square with the user's initial in a colour of their own. */
export function avatar(name: string, userId: string): HTMLElement {
  const el = h("span", { class: "avatar", text: ([...name.trim()][0] ?? "?").toUpperCase(), attrs: { "aria-hidden": "true" } });
  // CSSOM, not a style attribute: allowed by the page's CSP.
  el.style.setProperty("--hue", String(hueOf(userId)));
  return el;
}

/** "member" or "bot" beside a name: who is not a guest (§11.1). */
function kindTag(user: UserRef): HTMLElement | false {
  return user.kind !== undefined && h("span", { class: `tag ${user.kind}`, text: user.kind });
}

function row(user: UserRef, mine: boolean, ts: number | null, ...body: Node[]): HTMLLIElement {
  const li = h("li", { class: mine ? "msg mine" : "msg" }, avatar(user.name, user.id), sideTime(ts), h("div", { class: "body" }, meta(user, mine, ts), ...body));
  li.dataset.user = user.id;
  // The name it was sent with: a message keeps it after a rename, and a group ends where it changes.
  li.dataset.name = user.name;
  return li;
}

function meta(user: UserRef, mine: boolean, ts: number | null): HTMLElement {
  const meta = h(
    "p",
    { class: "meta" },
    h("span", { class: "author", text: user.name, attrs: { dir: "auto" } }),
    kindTag(user),
    mine && h("span", { class: "you", text: "you" }),
  );
  if (ts !== null) meta.append(timeEl(ts));
  return meta;
}

/** A grouped row hides its meta; this copy of the time shows beside it on hover, focus or tap. */
function sideTime(ts: number | null): HTMLElement | false {
  const side = ts !== null && timeEl(ts, "side-time");
  if (side) side.setAttribute("aria-hidden", "true");
  return side;
}

/** The quote above a reply: a button that shows the original (`quote` says what it was). */
function quoteButton(target: number, quote: string): HTMLButtonElement {
  const button = h("button", { class: "quote", attrs: { type: "button", dir: "auto", title: "Show the original" } }, h("span", { class: "quote-mark", text: "↩ ", attrs: { "aria-hidden": "true" } }), h("span", { class: "quote-text", text: quote }));
  button.dataset.target = String(target);
  return button;
}

/** What a message shows under its name: the quote it replies to, its text ("message deleted" once deleted), "edited". */
function content(m: MessageFrame, me: string | null, quote: string | null): Node[] {
  if (m.deleted) return [h("p", { class: "text gone", text: "message deleted" })];
  const nodes: Node[] = [];
  if (m.replyTo !== undefined) nodes.push(quoteButton(m.replyTo, quote ?? ""));
  nodes.push(...textOf(m.text, me));
  if (m.edited !== undefined) nodes.push(h("span", { class: "edited", text: "(edited)", attrs: { title: `Edited ${new Date(m.edited).toLocaleString()}` } }));
  return nodes;
}

/**
 * A message's text, formatted (format.ts); a long one folded to a few lines, with a button that
 * shows all of it (and folds it again).
 */
function textOf(text: string, me: string | null): Node[] {
  const body = h("div", { class: "text", attrs: { dir: "auto" } }, ...formatted(text, me));
  if (text.split("\n").length <= LONG_LINES && codePoints(text) <= LONG_CHARS) return [body];
  body.classList.add("folded");
  const more = h("button", { class: "link-button more", text: "Show more", attrs: { type: "button", "aria-expanded": "false" } });
  more.addEventListener("click", () => {
    const open = body.classList.toggle("folded") === false;
    more.textContent = open ? "Show less" : "Show more";
    more.setAttribute("aria-expanded", String(open));
  });
  return [body, more];
}

/** The ⋯ button that opens a message's menu (Reply, Edit, Delete). */
function actionsButton(author: string): HTMLButtonElement {
  return h("button", { class: "icon-button msg-actions", text: "⋯", attrs: { type: "button", "aria-haspopup": "menu", "aria-label": `Actions for this message by ${author}` } });
}

/**
 * A confirmed message; `me` (the reader's name) highlights mentions of the reader; `quote` is what
 * the quote of a reply says of its original.
 */
export function messageRow(m: MessageFrame, mine: boolean, me: string | null, quote: string | null = null): HTMLLIElement {
  const li = row(m.user, mine, m.ts, ...content(m, me, quote));
  li.dataset.seq = String(m.seq);
  li.dataset.id = m.id;
  li.dataset.ts = String(m.ts);
  li.tabIndex = -1;
  li.classList.toggle("deleted", m.deleted !== undefined);
  if (!m.deleted) li.append(actionsButton(m.user.name));
  return li;
}

/** A message changed (edited, deleted) or its quote learned its original: the row shows it, in place. */
export function redrawMessage(li: HTMLLIElement, m: MessageFrame, me: string | null, quote: string | null): void {
  const body = li.querySelector(".body")!;
  body.replaceChildren(body.querySelector(".meta")!, ...content(m, me, quote));
  li.classList.toggle("deleted", m.deleted !== undefined);
  if (m.deleted) li.querySelector(".msg-actions")?.remove();
}

/** Our message before the server has it: its text, then `status` (what is happening, and controls). */
export function pendingRow(id: string, text: string, user: UserRef, status: HTMLElement, quote: string | null = null): HTMLLIElement {
  const li = row(user, true, null, ...(quote === null ? [] : [h("p", { class: "quote", text: `↩ ${quote}` })]), ...textOf(text, null), status);
  li.classList.add("pending");
  li.dataset.id = id;
  return li;
}

/** A line about the room (a settings change with its `seq`, a moderation action), dated `ts`. */
export function eventRow(text: string, ts: number, seq?: number): HTMLLIElement {
  const li = h("li", { class: "event" }, h("span", { text, attrs: { dir: "auto" } }), " ", timeEl(ts));
  li.dataset.ts = String(ts);
  if (seq !== undefined) li.dataset.seq = String(seq);
  return li;
}

/** "bob is now robert", seen live at `ts`: layout() then knows the name changed here. */
export function renameRow(user: UserRef, before: string, ts: number): HTMLLIElement {
  const li = eventRow(renameText(before, user.name), ts);
  li.classList.add("rename");
  li.dataset.user = user.id;
  li.dataset.name = user.name;
  li.dataset.from = before;
  return li;
}

const renameText = (before: string, now: string) => `${before} is now ${now}`;

/**
 * A rename read from the messages themselves (a page loaded after it): the same line, with no
 * time (when it happened is not known, only between which messages). layout() makes these.
 */
function renamedRow(before: string, now: string): HTMLLIElement {
  return h("li", { class: "event renamed" }, h("span", { text: renameText(before, now), attrs: { dir: "auto" } }));
}

/** "alice", "alice and bob", "alice, bob and carol", "alice, bob and 12 others". */
export function listNames(names: readonly string[]): string {
  if (names.length <= 1) return names[0] ?? "";
  if (names.length === 2) return `${names[0]} and ${names[1]}`;
  if (names.length === NAMES_SHOWN + 1) return `${names.slice(0, -1).join(", ")} and ${names.at(-1)}`;
  return `${names.slice(0, NAMES_SHOWN).join(", ")} and ${names.length - NAMES_SHOWN} others`;
}

type Presence = "join" | "leave";

/** Each presence line's people, in order of first appearance, with everything each did there. */
const presenceLines = new WeakMap<HTMLLIElement, Map<string, { name: string; events: Presence[] }>>();

/**
 * What one person did within a presence line, every event told (repeats of the same one count once):
 *   didText(["join"]) // => "joined"            didText(["join", "leave"]) // => "joined and left"
 *   didText(["leave", "join"]) // => "left and came back"
 *   didText(["join", "leave", "join"]) // => "joined, left and came back"
 *   didText(["leave", "join", "leave"]) // => "left, came back and left again"
 *   didText(["join", "leave", "join", "leave"]) // => "came and went 2 times, and left"
 */
export function didText(events: readonly Presence[]): string {
  const seq = events.filter((e, i) => e !== events[i - 1]);
  const first = seq[0];
  if (seq.length === 1) return first === "join" ? "joined" : "left";
  if (seq.length === 2) return first === "join" ? "joined and left" : "left and came back";
  if (seq.length === 3) return first === "join" ? "joined, left and came back" : "left, came back and left again";
  return `came and went ${Math.floor(seq.length / 2)} times, and ${seq.at(-1) === "join" ? "is back" : "left"}`;
}

/**
 * A presence line: the people who did the same, together, in order of first appearance.
 *   presenceText([{name: "carol", events: ["join", "leave"]}, {name: "dave", events: ["join", "leave"]}, {name: "eve", events: ["join", "leave"]}])
 *   // => "carol, dave and eve joined and left"
 *   presenceText([{name: "carol", events: ["join"]}, {name: "dave", events: ["leave"]}]) // => "carol joined; dave left"
 */
export function presenceText(people: Iterable<{ name: string; events: readonly Presence[] }>): string {
  const groups = new Map<string, string[]>();
  for (const p of people) {
    const did = didText(p.events);
    groups.set(did, [...(groups.get(did) ?? []), p.name]);
  }
  return [...groups].map(([did, names]) => `${listNames(names)} ${did}`).join("; ");
}

/**
 * Adds a join or leave to the log: to the presence line at its end when nothing was said since,
 * else on a new line. One line tells "alice, bob and 12 others joined" instead of 14 lines, and
 * loses nothing: "carol joined and left; dave left".
 */
export function addPresence(list: HTMLOListElement, user: UserRef, event: Presence, ts: number): void {
  let li = list.lastElementChild as HTMLLIElement | null;
  let people = li ? presenceLines.get(li) : undefined;
  if (!li || !people) {
    li = h("li", { class: "event presence" }, h("span"), " ", h("time"));
    li.dataset.ts = String(ts);
    people = new Map();
    presenceLines.set(li, people);
    list.append(li);
  }
  const person = people.get(user.id) ?? { name: user.name, events: [] };
  person.name = user.name;
  person.events.push(event);
  people.set(user.id, person);
  li.firstElementChild!.textContent = presenceText(people.values());
  li.lastElementChild!.replaceWith(timeEl(ts));
}

const isMessage = (el: Element | null): el is HTMLElement => el !== null && el.classList.contains("msg");
/** A row of the room's sequence: a message, or the line of a stored event (a settings change). */
const hasSeq = (el: Element | null): el is HTMLElement => el instanceof HTMLElement && el.dataset.seq !== undefined;

/**
 * Inserts a row of the sequence after the last row with a smaller seq, and after the presence
 * lines that follow that row. Live messages land at the end in one step; catch-up and older pages
 * find their place. `layout` then fixes groups and days.
 */
export function insertBySeq(list: HTMLOListElement, li: HTMLLIElement, seq: number): void {
  let anchor = list.lastElementChild;
  while (anchor && !(hasSeq(anchor) && Number(anchor.dataset.seq) < seq)) anchor = anchor.previousElementSibling;
  let next = anchor ? anchor.nextElementSibling : list.firstElementChild;
  while (next && !hasSeq(next)) next = next.nextElementSibling;
  list.insertBefore(li, next);
}

/**
 * One pass over a log after rows were added: a day separator before the first row of each day;
 * a rename line where a user's messages change name (unless a live one is there already); and a
 * message continues the group above it (no name, no avatar) when the same user wrote it with the
 * same name, on the same day, shortly after, with nothing in between.
 */
export function layout(list: HTMLOListElement): void {
  let day = "";
  let prev: HTMLElement | null = null;
  /** Each user's name as the log showed it last, and the name a live rename line changed it from. */
  const names = new Map<string, { name: string; from?: string }>();
  for (const el of [...list.children] as HTMLElement[]) {
    if (el.classList.contains("day") || el.classList.contains("renamed")) {
      el.remove();
      continue;
    }
    const ts = Number(el.dataset.ts);
    if (el.dataset.ts !== undefined && dayKey(ts) !== day) {
      day = dayKey(ts);
      list.insertBefore(dayRow(ts), el);
      prev = null;
    }
    const user = el.dataset.user;
    if (el.classList.contains("rename") && user) names.set(user, { name: el.dataset.name!, from: el.dataset.from! });
    if (isMessage(el) && user) {
      const name = el.dataset.name!;
      const was = names.get(user);
      // A message sent just before a rename the page saw live may come after its line: no line back.
      const late = was?.from === name;
      if (was && was.name !== name && !late) {
        el.before(renamedRow(was.name, name));
        prev = null;
      }
      if (!late) names.set(user, { name });
      el.classList.toggle(
        "cont",
        isMessage(prev) && prev.dataset.user === user && prev.dataset.name === name && ts - Number(prev.dataset.ts) < GROUP_GAP_MS,
      );
    }
    prev = el;
  }
}

/** A day's first row comes after this line: a list item (an `ol` holds only those), not a separator. */
function dayRow(ts: number): HTMLLIElement {
  return h("li", { class: "day" }, h("span", { text: dayLabel(ts) }));
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
