/**
 * Safe DOM building for the chat page. Everything a user typed reaches the page through
 * `textContent` or a text node, never through HTML parsing; links and mentions are found here
 * (an href only for http and https, checked by safeLink), and format.ts draws them.
 */

type Child = Node | string | null | undefined | false;

/** The longest delay a browser timer takes (2^31 − 1 ms, ~24.8 days; longer ones fire at once). */
export const TIMER_MAX_MS = 2 ** 31 - 1;

interface Props {
  class?: string;
  text?: string;
  attrs?: Record<string, string>;
}

/** Creates an element; string children become text nodes. `h("p", { class: "x" }, "a<b")` shows `a<b`. */
export function h<K extends keyof HTMLElementTagNameMap>(tag: K, props: Props = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  if (props.class) el.className = props.class;
  if (props.text !== undefined) el.textContent = props.text;
  for (const [name, value] of Object.entries(props.attrs ?? {})) el.setAttribute(name, value);
  for (const child of children) if (child) el.append(child);
  return el;
}

/** Looks up an element the page's HTML must contain; a missing one is a bug in index.html. */
/**
 * Makes `list`'s children `items`, keeping in place each row whose `data-key` is unchanged:
 * a focused button in it, or the one an open menu belongs to, stays (a rebuilt list would drop
 * the focus to the page). Rows that changed, came or went are replaced, added or removed.
 */
export function reconcile(list: HTMLElement, items: readonly HTMLElement[]): void {
  const old = new Map<string | undefined, HTMLElement>();
  for (const el of list.children) old.set((el as HTMLElement).dataset.key, el as HTMLElement);
  const want = items.map((item) => old.get(item.dataset.key) ?? item);
  const kept = new Set(want);
  for (const el of [...list.children]) if (!kept.has(el as HTMLElement)) el.remove();
  want.forEach((el, i) => {
    const at = list.children[i] ?? null;
    if (at !== el) list.insertBefore(el, at);
  });
}

export function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (!el) throw new Error(`index.html has no #${id}`);
  return el as T;
}

export type Token =
  | { kind: "text"; text: string }
  | { kind: "link"; text: string; href: string }
  /** `@name`, or the reader's own name; `me` when it names the reader. */
  | { kind: "mention"; text: string; me: boolean };

/** A run that may be a link: http(s):// and everything up to whitespace or a character that cannot be in one. */
const URL_CANDIDATE = /\bhttps?:\/\/[^\s<>"]+/gi;
/** Characters that usually end the sentence around a link rather than the link itself (or close `**bold**`, `~~strike~~`). */
const TRAILING = ".,;:!?'\")]}*~";
/**
 * Bidirectional formatting controls (embeddings, overrides, isolates, marks, the Arabic letter
 * mark): in a message they could show a link or a name in an order other than the real one.
 */
const BIDI_CONTROLS = /[\u202A-\u202E\u2066-\u2069\u200E\u200F\u061C]/g;
/** A character of a name that may also end one (names allow `.` and `-` inside, not at a mention's end). */
const NAME_CHAR = String.raw`[\p{L}\p{M}\p{Nd}_]`;
/** `@` and a name-like word: `@dana`, `@Zoë_2`; a name with spaces is found only as the reader's own. */
const AT_WORD = String.raw`@${NAME_CHAR}(?:[\p{L}\p{M}\p{Nd}_.-]*${NAME_CHAR})?`;

/** What is shown of a user's text: the same characters minus bidi controls. */
export function shown(text: string): string {
  return text.replace(BIDI_CONTROLS, "");
}

/**
 * Splits text into plain runs, http(s) links and mentions. Bidi controls are dropped first.
 * Trailing punctuation stays text, except a `)` that closes a `(` inside the link
 * (Wikipedia-style URLs). A link's text shows its real host: an IDN as punycode, and a URL with
 * userinfo (`https://good.com@evil.com/`) is not made a link at all.
 *   tokenize("see https://a.io/x.") // => [text "see ", link "https://a.io/x", text "."]
 *   tokenize("javascript:alert(1)") // => [text "javascript:alert(1)"]
 *   tokenize("hi @bo", "bo") // => [text "hi ", mention "@bo" (me)]
 */
export function tokenize(raw: string, me: string | null = null): Token[] {
  const text = shown(raw);
  const tokens: Token[] = [];
  let at = 0;
  const pushText = (s: string) => {
    for (const t of mentionTokens(s, me)) {
      const last = tokens.at(-1);
      if (t.kind === "text" && last?.kind === "text") last.text += t.text;
      else tokens.push(t);
    }
  };
  for (const match of text.matchAll(URL_CANDIDATE)) {
    const start = match.index;
    const candidate = trimTrailing(match[0]);
    const link = safeLink(candidate);
    pushText(text.slice(at, start));
    if (link) tokens.push({ kind: "link", ...link });
    else pushText(candidate);
    at = start + candidate.length;
  }
  pushText(text.slice(at));
  return tokens;
}

/** `url` without the punctuation that ends the sentence around it: `trimTrailing("a.io/x).") // => "a.io/x"` (a `)` closing a `(` inside stays). */
export function trimTrailing(url: string): string {
  let end = url.length;
  while (end > 0 && TRAILING.includes(url[end - 1]!)) {
    if (url[end - 1] === ")") {
      const body = url.slice(0, end);
      const opens = body.split("(").length - 1;
      const closes = body.split(")").length - 1;
      if (closes <= opens) break;
    }
    end--;
  }
  return url.slice(0, end);
}

/**
 * An http(s) link for `raw`, shown with the host the browser will really open (`URL.host`:
 * lowercase, IDNs as punycode) followed by the rest as written; null when `raw` is not an
 * http(s) URL or carries userinfo, whose `user@` part exists to pass for a host.
 */
export function safeLink(raw: string): { text: string; href: string } | null {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return null;
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") return null;
  const scheme = raw.indexOf("//") + 2;
  const authorityEnd = raw.slice(scheme).search(/[/?#\\]/);
  const authority = authorityEnd < 0 ? raw.slice(scheme) : raw.slice(scheme, scheme + authorityEnd);
  if (url.username || url.password || authority.includes("@")) return null;
  const rest = authorityEnd < 0 ? "" : raw.slice(scheme + authorityEnd);
  return { text: `${url.protocol}//${url.host}${rest}`, href: url.href };
}

/** Escapes the syntax characters only: with the u flag, `\-` is an error (a name like "jean-luc" threw). */
function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
}

/** Mentions in a plain run: the reader's own name (with or without `@`) and any `@word`. */
function mentionTokens(text: string, me: string | null): Token[] {
  if (!text.includes("@") && !me) return text ? [{ kind: "text", text }] : [];
  const own = me ? `@?${escapeRegExp(me)}(?!${NAME_CHAR})` : null;
  const pattern = new RegExp(`(?<![\\p{L}\\p{M}\\p{Nd}_@])(?:${own ? `(${own})|` : ""}${AT_WORD})`, "giu");
  const tokens: Token[] = [];
  let at = 0;
  for (const match of text.matchAll(pattern)) {
    if (match.index > at) tokens.push({ kind: "text", text: text.slice(at, match.index) });
    tokens.push({ kind: "mention", text: match[0], me: match[1] !== undefined });
    at = match.index + match[0].length;
  }
  if (at < text.length) tokens.push({ kind: "text", text: text.slice(at) });
  return tokens;
}

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const dateTimeFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "full", timeStyle: "short" });

/**
 * The page's clock: everything that shows or compares dates reads it. A test shows other days by
 * setting `window.__chatNow` before the page loads.
 */
export function now(): number {
  const fake = (globalThis as { __chatNow?: unknown }).__chatNow;
  return typeof fake === "function" ? Number(fake()) : Date.now();
}

/** The local calendar day of `ts`, as `2026-11-23`: what separates the days of a log. */
export function dayKey(ts: number): string {
  const d = new Date(ts);
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}-${String(d.getDate()).padStart(2, "0")}`;
}

const dayFormat = new Intl.DateTimeFormat(undefined, { weekday: "long", day: "numeric", month: "long" });
const dayYearFormat = new Intl.DateTimeFormat(undefined, { weekday: "long", day: "numeric", month: "long", year: "numeric" });

/** "Today", "Yesterday", or the date (with its year when not this year's). */
export function dayLabel(ts: number, today: number = now()): string {
  const key = dayKey(ts);
  if (key === dayKey(today)) return "Today";
  const yesterday = new Date(today);
  yesterday.setDate(yesterday.getDate() - 1);
  if (key === dayKey(yesterday.getTime())) return "Yesterday";
  return (new Date(ts).getFullYear() === new Date(today).getFullYear() ? dayFormat : dayYearFormat).format(ts);
}

/** A <time> showing HH:MM, with the full date as its tooltip. */
export function timeEl(ts: number, className = ""): HTMLTimeElement {
  const date = new Date(ts);
  return h("time", {
    class: className,
    text: timeFormat.format(date),
    attrs: { datetime: date.toISOString(), title: dateTimeFormat.format(date) },
  });
}

const untilTodayFormat = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const untilFormat = new Intl.DateTimeFormat(undefined, { weekday: "short", day: "numeric", month: "short", hour: "2-digit", minute: "2-digit" });

/** When something ends (a mute, a ban, an invite), as people read it: "14:05" today, "Tue 3 Mar, 14:05" otherwise. */
export function untilText(ms: number): string {
  return (dayKey(ms) === dayKey(now()) ? untilTodayFormat : untilFormat).format(ms);
}

/** A stable hue (0–359) for a user id, so each person keeps one avatar colour. */
export function hueOf(id: string): number {
  let hash = 0;
  for (let i = 0; i < id.length; i++) hash = (hash * 31 + id.charCodeAt(i)) >>> 0;
  return hash % 360;
}

/** A random id for a send: 128 bits, base64url. Works on plain http, unlike crypto.randomUUID. */
export function randomId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}
