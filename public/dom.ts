/**
 * Safe DOM building for the chat page. Everything a user typed reaches the page through
 * `textContent` or a text node, never through HTML parsing; links are <a> elements made here,
 * with an href only for http and https.
 */

type Child = Node | string | null | undefined | false;

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
export function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (!el) throw new Error(`index.html has no #${id}`);
  return el as T;
}

export type Token = { kind: "text"; text: string } | { kind: "link"; text: string; href: string };

/** A run that may be a link: http(s):// and everything up to whitespace or a character that cannot be in one. */
const URL_CANDIDATE = /\bhttps?:\/\/[^\s<>"]+/gi;
/** Characters that usually end the sentence around a link rather than the link itself. */
const TRAILING = ".,;:!?'\")]}";

/**
 * Splits text into plain runs and http(s) links. Trailing punctuation stays text, except a `)`
 * that closes a `(` inside the link (Wikipedia-style URLs).
 *   tokenize("see https://a.io/x.") // => [text "see ", link "https://a.io/x", text "."]
 *   tokenize("javascript:alert(1)") // => [text "javascript:alert(1)"]
 */
export function tokenize(text: string): Token[] {
  const tokens: Token[] = [];
  let at = 0;
  const pushText = (s: string) => {
    if (!s) return;
    const last = tokens.at(-1);
    if (last?.kind === "text") last.text += s;
    else tokens.push({ kind: "text", text: s });
  };
  for (const match of text.matchAll(URL_CANDIDATE)) {
    const start = match.index;
    const raw = trimTrailing(match[0]);
    const href = httpHref(raw);
    pushText(text.slice(at, start));
    if (href) tokens.push({ kind: "link", text: raw, href });
    else pushText(raw);
    at = start + raw.length;
  }
  pushText(text.slice(at));
  return tokens;
}

function trimTrailing(url: string): string {
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

/** The normalized href if `raw` parses as an http or https URL, else null. */
function httpHref(raw: string): string | null {
  try {
    const url = new URL(raw);
    return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
  } catch {
    return null;
  }
}

/** A message text as nodes: text runs and safe links. Newlines are kept by CSS (pre-wrap). */
export function richText(text: string): Node[] {
  return tokenize(text).map((t) =>
    t.kind === "text"
      ? document.createTextNode(t.text)
      : h("a", { text: t.text, attrs: { href: t.href, target: "_blank", rel: "noopener noreferrer" } }),
  );
}

/** Counts Unicode code points, the unit of every length in the protocol. */
export function codePoints(s: string): number {
  let n = 0;
  for (const _ of s) n++;
  return n;
}

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const dateTimeFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "full", timeStyle: "short" });

/** A <time> showing HH:MM, with the full date as its tooltip. */
export function timeEl(ts: number): HTMLTimeElement {
  const date = new Date(ts);
  return h("time", { text: timeFormat.format(date), attrs: { datetime: date.toISOString(), title: dateTimeFormat.format(date) } });
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
