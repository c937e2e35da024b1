/**
 * The TCP door's lines (§9): cutting a byte stream into bounded input lines, rendering messages
 * and presence as output lines, the prompt that says the current room, and marking the message
 * lines that name their reader.
 */
import type { MessageFrame, ModerationFrame, PresenceFrame, RoomSettings, SettingsEvent, StoredFrame } from "../protocol/wire.ts";

/** Marks an input line that was longer than allowed; its bytes were discarded. */
export const TOO_LONG = Symbol("line too long");

/**
 * Cuts a TCP byte stream into lines. Holds at most `maxBytes` (+1 for a CR) of an unfinished line;
 * a longer line yields TOO_LONG once and the rest of it, up to its newline, is dropped unread.
 * The trailing CR of a CRLF is removed.
 */
export class LineSplitter {
  private parts: Uint8Array[] = [];
  private size = 0;
  private discarding = false;

  constructor(private readonly maxBytes: number) {}

  push(chunk: Uint8Array): (Uint8Array | typeof TOO_LONG)[] {
    const out: (Uint8Array | typeof TOO_LONG)[] = [];
    let start = 0;
    while (start <= chunk.length) {
      const nl = chunk.indexOf(10, start);
      const end = nl === -1 ? chunk.length : nl;
      const piece = chunk.subarray(start, end);
      if (this.discarding) {
        if (nl !== -1) this.discarding = false;
      } else if (this.size + piece.length > this.maxBytes + 1) {
        out.push(TOO_LONG);
        this.parts = [];
        this.size = 0;
        this.discarding = nl === -1;
      } else if (nl === -1) {
        // The caller's buffer may be reused, so keep a copy of an unfinished line.
        if (piece.length) this.parts.push(piece.slice());
        this.size += piece.length;
      } else {
        const line = this.take(piece);
        if (line.length > this.maxBytes) out.push(TOO_LONG);
        else out.push(line);
      }
      if (nl === -1) break;
      start = nl + 1;
    }
    return out;
  }

  private take(last: Uint8Array): Uint8Array {
    let line = last;
    if (this.parts.length) {
      line = new Uint8Array(this.size + last.length);
      let at = 0;
      for (const part of this.parts) {
        line.set(part, at);
        at += part.length;
      }
      line.set(last, at);
      this.parts = [];
      this.size = 0;
    }
    return line.length && line[line.length - 1] === 13 ? line.subarray(0, line.length - 1) : line;
  }
}

/** UTC HH:MM of an epoch-ms time. `hhmm(0) // => "00:00"` */
export function hhmm(ts: number): string {
  return new Date(ts).toISOString().slice(11, 16);
}

/** A message line's time, which says its zone: `clock(0) // => "00:00 UTC"`. */
export function clock(ts: number): string {
  return `${hhmm(ts)} UTC`;
}

/**
 * A user's text inside a line of the door's own (a topic, an edit): its newlines as spaces, so
 * no part of it starts a line that could pass for a message or a `* ` line.
 *   oneLine("hi\n[general] 09:05 UTC admin: psst") // => "hi [general] 09:05 UTC admin: psst"
 */
export function oneLine(text: string): string {
  return text.split("\n").join(" ");
}

/** A message as TCP lines: `[room] HH:MM UTC name: text`, one line per line of text. */
export function formatMessageLines(m: MessageFrame): string {
  const prefix = `[${m.room}] ${clock(m.ts)} ${m.user.name}: `;
  return m.text
    .split("\n")
    .map((line) => prefix + line + "\n")
    .join("");
}

/** `* bob joined general`, `* bob left general`; a rename needs the old name: `* bob is now robert in general`. */
export function formatPresenceLine(p: PresenceFrame, oldName?: string): string {
  if (p.event === "rename") return `* ${oldName} is now ${p.user.name} in ${p.room}\n`;
  return `* ${p.user.name} ${p.event === "join" ? "joined" : "left"} ${p.room}\n`;
}

/**
 * A settings change as a TCP line (§11.8). Live, with the settings `before` it, it says what
 * changed; replayed from history, what they are.
 *   `* general: topic is now "launch day"`    `* general is now private (by bob)`
 */
export function formatSettingsLine(e: SettingsEvent, before?: RoomSettings): string {
  const parts: string[] = [];
  const changed = (key: keyof RoomSettings) => !before || before[key] !== e[key];
  if (changed("topic")) parts.push(`topic is now "${oneLine(e.topic)}"`);
  if (changed("private")) parts.push(e.private ? "private" : "public");
  if (changed("readOnly")) parts.push(e.readOnly ? "read-only" : "open to everyone's messages");
  if (changed("slowModeSeconds")) parts.push(e.slowModeSeconds ? `slow mode ${e.slowModeSeconds} s` : "slow mode off");
  if (parts.length === 0) return "";
  const [first, ...rest] = parts;
  const head = first!.startsWith("topic") ? `* ${e.room}: ${first}` : `* ${e.room} is now ${first}`;
  return `${[head, ...rest.map((p) => (p.startsWith("topic") ? p : `now ${p}`))].join("; ")} (by ${e.by.name})\n`;
}

/**
 * A stored frame as TCP lines (§11.8): a message as its lines (a reply too; a deleted one as
 * nothing), an event as its `* ` line. `author` names a deleted message's author when known.
 */
export function formatStoredLines(f: StoredFrame, before?: RoomSettings, author?: string): string {
  switch (f.type) {
    case "settings":
      return formatSettingsLine(f, before);
    case "edit":
      return `* ${f.user.name} edited a message in ${f.room}: ${oneLine(f.text)}\n`;
    case "delete":
      return `* ${author ? `a message by ${author}` : "a message"} was deleted in ${f.room} by ${f.by.name}\n`;
    default:
      return f.deleted === undefined ? formatMessageLines(f) : "";
  }
}

/** A length of time in words: `duration(600_000) // => "10 min"`. */
export function duration(ms: number): string {
  const minutes = Math.round(ms / 60_000);
  if (minutes < 120) return `${Math.max(1, minutes)} min`;
  const hours = Math.round(minutes / 60);
  return hours < 48 ? `${hours} h` : `${Math.round(hours / 24)} days`;
}

/**
 * A moderation event as a TCP line (§11.8), `now` telling how long a ban or mute lasts:
 *   `* bob was kicked from general by carol: spam`   `* carol is now a moderator of general (by bob)`
 */
export function formatModerationLine(m: ModerationFrame, now: number): string {
  const where = m.room ?? "the server";
  if (m.action === "role") {
    const what = m.role === "owner" ? "now the owner" : m.role === "moderator" ? "now a moderator" : "no longer a moderator";
    return `* ${m.user.name} is ${what} of ${where} (by ${m.by.name})\n`;
  }
  const span = m.until !== undefined ? ` for ${duration(m.until - now)}` : "";
  const what = { kick: `was kicked from ${where}`, ban: `was banned from ${where}`, unban: `was unbanned in ${where}`, mute: `was muted in ${where}`, unmute: `was unmuted in ${where}` }[m.action];
  return `* ${m.user.name} ${what} by ${m.by.name}${m.action === "ban" || m.action === "mute" ? span : ""}${m.reason ? `: ${m.reason}` : ""}\n`;
}

/**
 * What the door shows while it waits for a line: the room plain lines go to, `[general]> `, or
 * `> ` in no room; before the hello, `name: `.
 *   promptFor(true, "dev") // => "[dev]> "      promptFor(false, null) // => "name: "
 */
export function promptFor(named: boolean, room: string | null): string {
  if (!named) return "name: ";
  return room === null ? "> " : `[${room}]> `;
}

/**
 * Goes before output written while a prompt is shown: back to the line's start, then erase it
 * (ANSI "erase in line", which every terminal nc runs in knows), so the line takes the prompt's
 * place and the prompt is drawn again under it.
 */
export const ERASE_PROMPT = "\r\x1b[K";

/** Rings the terminal's bell: a terminal beeps (or flashes) and prints nothing. */
export const BEL = "\x07";
/** Starts a message line that names its reader, in place of nothing: `@ [dev] 09:05 UTC ann: hi bob`. */
export const MENTION_MARK = "@ ";

/** The author of a message line (formatMessageLines), and the text after it. Names hold no `:`. */
const MESSAGE_LINE = /^\[[a-z0-9][a-z0-9_-]*\] \d\d:\d\d UTC ([^:]+): (.*)$/s;
/** Letters, marks, digits and `_`: a mention is the name as a whole word, not inside one. */
const WORD_CHARS = String.raw`\p{L}\p{M}\p{Nd}_`;

/**
 * What names `name` in a text, as the page counts mentions: `@name`, or `name` as a whole word,
 * in any case. `mentionPattern("bo").test("hi @Bo!") // => true`; `… .test("bob") // => false`.
 */
export function mentionPattern(name: string): RegExp {
  // Only syntax characters are escaped: with the u flag, `\-` is an error, and `-` outside a class is plain.
  const escaped = name.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
  return new RegExp(`(?<![${WORD_CHARS}@])@?${escaped}(?![${WORD_CHARS}])`, "iu");
}

/**
 * Marks the message lines of `text` that name their reader (`pattern`, from mentionPattern),
 * unless the reader wrote them (`reader`, its name): each starts with MENTION_MARK, and with
 * `ring` the text starts with one BEL. Null when no line names the reader, so the caller keeps
 * the text it had.
 *   markMentions("[dev] 09:05 UTC ann: hi bob\n", "bob", mentionPattern("bob"), true)
 *   // => "\x07@ [dev] 09:05 UTC ann: hi bob\n"
 */
export function markMentions(text: string, reader: string, pattern: RegExp, ring: boolean): string | null {
  let marked = false;
  const lines = text.split("\n").map((line) => {
    const parts = MESSAGE_LINE.exec(line);
    if (!parts || parts[1] === reader || !pattern.test(parts[2]!)) return line;
    marked = true;
    return MENTION_MARK + line;
  });
  if (!marked) return null;
  return (ring ? BEL : "") + lines.join("\n");
}
