/**
 * The TCP door's lines (§9): cutting a byte stream into bounded input lines, and rendering
 * messages and presence as output lines.
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

/** A message as TCP lines: `[room] HH:MM name: text`, one line per line of text. */
export function formatMessageLines(m: MessageFrame): string {
  const prefix = `[${m.room}] ${hhmm(m.ts)} ${m.user.name}: `;
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
  if (changed("topic")) parts.push(`topic is now "${e.topic}"`);
  if (changed("private")) parts.push(e.private ? "private" : "public");
  if (changed("readOnly")) parts.push(e.readOnly ? "read-only" : "open to everyone's messages");
  if (changed("slowModeSeconds")) parts.push(e.slowModeSeconds ? `slow mode ${e.slowModeSeconds} s` : "slow mode off");
  if (parts.length === 0) return "";
  const [first, ...rest] = parts;
  const head = first!.startsWith("topic") ? `* ${e.room}: ${first}` : `* ${e.room} is now ${first}`;
  return `${[head, ...rest.map((p) => (p.startsWith("topic") ? p : `now ${p}`))].join("; ")} (by ${e.by.name})\n`;
}

/** A stored frame as TCP lines: a message as its lines, an event as its `* ` line. */
export function formatStoredLines(f: StoredFrame, before?: RoomSettings): string {
  return f.type === "settings" ? formatSettingsLine(f, before) : formatMessageLines(f);
}

/** A moderation event as a TCP line (§11.8): `* carol is now a moderator of general (by bob)`. */
export function formatModerationLine(m: ModerationFrame): string {
  const where = m.room ?? "the server";
  if (m.action === "role") {
    const what = m.role === "owner" ? "now the owner" : m.role === "moderator" ? "now a moderator" : "no longer a moderator";
    return `* ${m.user.name} is ${what} of ${where} (by ${m.by.name})\n`;
  }
  return `* ${m.user.name}: ${m.action} in ${where} by ${m.by.name}${m.reason ? `: ${m.reason}` : ""}\n`;
}
