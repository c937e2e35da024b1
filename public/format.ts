/**
 * Message formatting: a small, fixed grammar, parsed into a tree (pure) and drawn as DOM nodes
 * made one by one; no text of a message is ever parsed as HTML. A hand-written parser rather
 * than a Markdown library: the subset is seven constructs, a library would be most of the page's
 * weight and accept far more than chat needs (HTML, tables, images), and this one's every rule
 * is written below and tested (test/page-format.test.ts).
 *
 * The grammar, line by line (a message's lines are split on `\n`):
 *
 *   fence      a line of three or more backticks, optionally indented up to 3 spaces and
 *              followed by a word (a language, kept as data-lang, not shown); no backtick after
 *              them. Every line after it is code, shown as written, up to a line of at least as
 *              many backticks (and spaces), or to the end of the message if none comes (an
 *              unclosed fence is code to the end, as in CommonMark).
 *   quote      lines starting with `>` (one space after it dropped), one after another: a block
 *              quote of their inline text. Quotes do not nest.
 *   paragraph  any other lines, one after another; line breaks are kept.
 *
 * Inline, within one line (a marker never pairs across lines):
 *
 *   `code`     a run of N backticks, then anything, then the next run of exactly N backticks:
 *              code, shown as written (no formatting, links or mentions inside). An unmatched
 *              run is text.
 *   links      http(s)://… and bare www.… hosts (https), as dom.ts finds and checks them; a
 *              link is one piece: no marker pairs inside it.
 *   **strong**, *em*, _em_, ~~strike~~
 *              An opener is followed by a non-space, a closer preceded by one; `*` and `_` also
 *              do not open after a letter or digit nor close before one (snake_case, 2*3*4 stay
 *              text). An opener pairs with the nearest closer of its kind after it on the line;
 *              what is between is parsed the same way (nesting, to MAX_DEPTH). A run of three
 *              or more of one marker, `__`, and anything unpaired is text.
 *   mentions   `@name`, and the reader's own name (dom.ts), in text only.
 *
 * Work is linear in the length of a line: each marker's nearest closer is found in one pass.
 */

import { h, safeLink, shown, tokenize, trimTrailing } from "./dom.ts";

/** Nesting deeper than this is shown as text: bounds the recursion whatever a message holds. */
const MAX_DEPTH = 8;

export type Inline =
  | { t: "text"; s: string }
  | { t: "code"; s: string }
  | { t: "link"; s: string; href: string }
  | { t: "mention"; s: string; me: boolean }
  | { t: "strong" | "em" | "del"; c: Inline[] };

export type Block = { t: "p" | "quote"; lines: Inline[][] } | { t: "code"; s: string; lang: string };

const FENCE = /^ {0,3}(`{3,})\s*([^`\s]*)[^`]*$/;
const QUOTE = /^ {0,3}> ?(.*)$/;
/** A bare host starting www. with at least one more dot, up to whitespace or a character no link has. */
const WWW = /www\.[\p{L}\p{N}-]+\.[^\s<>"]+/uy;
const HTTP = /https?:\/\/[^\s<>"]+/iy;
/** Characters that end the word before a bare www. host (else "xwww.a.io" or "me@www.a.io" would link). */
const BEFORE_WWW = /[\p{L}\p{N}_.@/-]/u;
const ALNUM = /[\p{L}\p{N}]/u;
const SPACE = /\s/u;

/** The blocks of a message text (bidi controls dropped first, as everywhere); `me` is the reader's name, for mentions. */
export function parse(raw: string, me: string | null = null): Block[] {
  const lines = shown(raw).split("\n");
  const blocks: Block[] = [];
  const flow = (t: "p" | "quote", line: Inline[]) => {
    const last = blocks.at(-1);
    if (last?.t === t) last.lines.push(line);
    else blocks.push({ t, lines: [line] });
  };
  for (let i = 0; i < lines.length; i++) {
    const fence = FENCE.exec(lines[i]!);
    if (fence) {
      const ticks = fence[1]!.length;
      const code: string[] = [];
      while (++i < lines.length && !isClose(lines[i]!, ticks)) code.push(lines[i]!);
      blocks.push({ t: "code", s: code.join("\n"), lang: fence[2]! });
      continue;
    }
    const quote = QUOTE.exec(lines[i]!);
    if (quote) flow("quote", inline(quote[1]!, me));
    else flow("p", inline(lines[i]!, me));
  }
  return blocks;
}

function isClose(line: string, ticks: number): boolean {
  const m = /^ {0,3}(`+) *$/.exec(line);
  return m !== null && m[1]!.length >= ticks;
}

/** A piece of a line: text, an atom (code, link) or a marker that may open or close. */
type Piece = Inline | { t: "mark"; kind: "**" | "*" | "_" | "~~"; open: boolean; close: boolean; s: string };

/** The inline tree of one line. */
export function inline(line: string, me: string | null = null): Inline[] {
  const pieces = scan(line, me);
  // The nearest closer of each kind after each piece: one pass from the right.
  const next: Record<string, number>[] = new Array(pieces.length);
  let ahead: Record<string, number> = {};
  for (let i = pieces.length - 1; i >= 0; i--) {
    next[i] = ahead;
    const p = pieces[i]!;
    if (p.t === "mark" && p.close) ahead = { ...ahead, [p.kind]: i };
  }
  return build(pieces, next, 0, pieces.length, 0);
}

function build(pieces: Piece[], next: Record<string, number>[], from: number, to: number, depth: number): Inline[] {
  const out: Inline[] = [];
  const push = (node: Inline) => {
    const last = out.at(-1);
    if (node.t === "text" && last?.t === "text") last.s += node.s;
    else out.push(node);
  };
  for (let i = from; i < to; i++) {
    const p = pieces[i]!;
    if (p.t !== "mark") {
      push(p);
      continue;
    }
    const j = p.open && depth < MAX_DEPTH ? next[i]![p.kind] : undefined;
    if (j === undefined || j >= to || j === i + 1) {
      push({ t: "text", s: p.s });
      continue;
    }
    const t = p.kind === "**" ? "strong" : p.kind === "~~" ? "del" : "em";
    out.push({ t, c: build(pieces, next, i + 1, j, depth + 1) });
    i = j;
  }
  return out;
}

/** Cuts a line into pieces, left to right: code spans and links first (atoms), markers, text with mentions. */
function scan(line: string, me: string | null): Piece[] {
  const pieces: Piece[] = [];
  let text = "";
  const flush = () => {
    if (!text) return;
    for (const token of tokenize(text, me)) {
      pieces.push(token.kind === "mention" ? { t: "mention", s: token.text, me: token.me } : { t: "text", s: token.text });
    }
    text = "";
  };
  let i = 0;
  while (i < line.length) {
    const c = line[i]!;
    if (c === "`") {
      const run = runOf(line, i);
      const end = closingTicks(line, i + run, run);
      if (end === -1) {
        text += line.slice(i, i + run);
        i += run;
      } else {
        flush();
        pieces.push({ t: "code", s: line.slice(i + run, end) });
        i = end + run;
      }
      continue;
    }
    const link = linkAt(line, i);
    if (link) {
      flush();
      pieces.push(link.safe ?? { t: "text", s: link.raw });
      i += link.raw.length;
      continue;
    }
    if (c === "*" || c === "_" || c === "~") {
      const run = runOf(line, i);
      const kind = c === "*" ? (run === 1 ? "*" : run === 2 ? "**" : null) : c === "_" ? (run === 1 ? "_" : null) : run === 2 ? "~~" : null;
      const s = line.slice(i, i + run);
      if (kind) {
        const before = line[i - 1] ?? " ";
        const after = line[i + run] ?? " ";
        const strict = kind === "*" || kind === "_";
        flush();
        pieces.push({
          t: "mark",
          kind,
          s,
          open: !SPACE.test(after) && !(strict && ALNUM.test(before)),
          close: !SPACE.test(before) && !(strict && ALNUM.test(after)),
        });
      } else {
        text += s;
      }
      i += run;
      continue;
    }
    text += c;
    i++;
  }
  flush();
  return pieces;
}

/** How many of the character at `i` follow one another from there. */
function runOf(line: string, i: number): number {
  let n = 1;
  while (line[i + n] === line[i]) n++;
  return n;
}

/** Where the next run of exactly `n` backticks from `from` starts, or -1. */
function closingTicks(line: string, from: number, n: number): number {
  for (let at = line.indexOf("`", from); at !== -1; at = line.indexOf("`", at)) {
    const run = runOf(line, at);
    if (run === n) return at;
    at += run;
  }
  return -1;
}

/**
 * A link starting at `i`: an http(s) URL, or a bare www. host after a word's end (as https). `raw`
 * is what it takes of the line (trailing punctuation left out); `safe` is null when dom.ts's
 * checks refuse it (userinfo, not a URL), and it is then shown as text.
 */
function linkAt(line: string, i: number): { raw: string; safe: Inline | null } | null {
  // What comes before is looked at first: a regex run here, rejected after, would make a line of them quadratic.
  const c = line[i];
  const before = line[i - 1] ?? " ";
  if ((c === "h" || c === "H") && !ALNUM.test(before)) {
    HTTP.lastIndex = i;
    const http = HTTP.exec(line);
    if (!http) return null;
    const raw = trimTrailing(http[0]);
    const link = safeLink(raw);
    return { raw, safe: link && { t: "link", s: link.text, href: link.href } };
  }
  if (c !== "w" || BEFORE_WWW.test(before)) return null;
  WWW.lastIndex = i;
  const www = WWW.exec(line);
  if (!www) return null;
  const raw = trimTrailing(www[0]);
  const link = safeLink(`https://${raw}`);
  return { raw, safe: link && { t: "link", s: link.text.slice("https://".length), href: link.href } };
}

/** Whether a message text names the reader (`@me`, or `me` as a word) outside code: the page counts it as a mention. */
export function mentions(text: string, me: string): boolean {
  const named = (nodes: Inline[]): boolean => nodes.some((n) => (n.t === "mention" && n.me) || ("c" in n && named(n.c)));
  return parse(text, me).some((b) => b.t !== "code" && b.lines.some(named));
}

// ─── Drawing ─────────────────────────────────────────────────────────────────────────────────

/**
 * A message text as DOM nodes: blocks of inline nodes, each made here, never from HTML. A text
 * that is one paragraph (most are) is its inline nodes alone, with no element around them.
 */
export function formatted(text: string, me: string | null = null): Node[] {
  const blocks = parse(text, me);
  const only = blocks[0];
  return blocks.length === 1 && only?.t === "p" ? lines(only.lines) : blocks.map(drawBlock);
}

/** Inline lines, with the line breaks between them as text (the text is laid out pre-wrap). */
function lines(inlines: Inline[][]): Node[] {
  return inlines.flatMap((line, i) => [...(i ? [document.createTextNode("\n")] : []), ...line.map(drawInline)]);
}

function drawBlock(b: Block): Node {
  if (b.t === "code") return codeBlock(b.s, b.lang);
  return h(b.t === "p" ? "p" : "blockquote", {}, ...lines(b.lines));
}

function drawInline(n: Inline): Node {
  switch (n.t) {
    case "text":
      return document.createTextNode(n.s);
    case "code":
      return h("code", { text: n.s });
    case "link":
      // dir="ltr": right-to-left text around a link cannot reorder its parts.
      return h("a", { text: n.s, attrs: { href: n.href, target: "_blank", rel: "noopener noreferrer", dir: "ltr" } });
    case "mention":
      return h("mark", { class: n.me ? "mention own" : "mention", text: n.s });
    default:
      return h(n.t, {}, ...n.c.map(drawInline));
  }
}

/** A fenced block: monospace, scrolled sideways rather than wrapped (Tab reaches it, arrows scroll it), with a copy button. */
function codeBlock(code: string, lang: string): HTMLElement {
  const pre = h("pre", { attrs: { tabindex: "0", dir: "ltr" } }, h("code", { text: code }));
  if (lang) pre.dataset.lang = lang;
  const copy = h("button", { class: "copy", text: "Copy", attrs: { type: "button" } });
  copy.hidden = !navigator.clipboard;
  copy.addEventListener("click", () => {
    navigator.clipboard.writeText(code).then(
      () => (copy.textContent = "Copied"),
      () => (copy.textContent = "Not copied"),
    );
  });
  return h("div", { class: "code-block" }, pre, copy);
}
