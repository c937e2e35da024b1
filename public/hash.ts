/**
 * The page's address after `#`: the room shown, an invite to it (`#board?invite=CODE`), or a
 * login ticket from a host app (`#token=JWT`). Pure: it reads a string and never throws, whatever
 * the address holds (a malformed escape such as `#%` is just an invalid address).
 */

import { TOKEN_MAX_BYTES, isRoom } from "../src/protocol/wire.ts";

/** Bounds an invite code read from the address; the server's codes are far shorter. */
const INVITE_MAX_CHARS = 256;

/** What an address asks for; every field is absent for an empty one. */
export interface Hash {
  /** A valid room name. */
  room?: string;
  /** An invite code for `room`, to send with its first join. */
  invite?: string;
  /** A login ticket (a member's JWT), to sign in with once. */
  token?: string;
  /** The address as typed, when it names no valid room: to tell the reader. */
  invalid?: string;
}

/** What a person may type for a room: `#Dev ` means `dev`. */
export function roomName(raw: string): string {
  return raw.trim().replace(/^#/, "").toLowerCase();
}

/** Bounds a room name, as the server's pattern does (`^[a-z0-9][a-z0-9_-]{0,31}$`). */
const ROOM_MAX_CHARS = 32;

/**
 * The room name a person means when they type one: lower case, `#` dropped, runs of spaces, dots
 * and dashes as one `-`, accents dropped, anything else a room name cannot hold left out; a valid
 * name stays as typed. "" when nothing is left.
 *   slugOf("My Room") // => "my-room"      slugOf("#Design") // => "design"
 *   slugOf("  Café talk! ") // => "cafe-talk"      slugOf("!!!") // => ""
 */
export function slugOf(raw: string): string {
  // A name that is one already stays as typed ("x--y" too).
  const typed = roomName(raw);
  if (isRoom(typed)) return typed;
  const slug = raw
    .normalize("NFKD")
    .replace(/\p{M}/gu, "")
    .toLowerCase()
    .trim()
    .replace(/^#+/, "")
    .replace(/[\s.-]+/g, "-")
    .replace(/[^a-z0-9_-]/g, "")
    .replace(/^[-_]+/, "");
  return slug.slice(0, ROOM_MAX_CHARS).replace(/-+$/, "");
}

/** `decodeURIComponent`, or null for a malformed escape (`decode("%") // => null`). */
export function decode(text: string): string | null {
  try {
    return decodeURIComponent(text);
  } catch {
    return null;
  }
}

/** The address of a room: `hashFor("dev") // => "#dev"`. */
export function hashFor(room: string): string {
  return `#${room}`;
}

/**
 * Reads `location.hash`.
 *   parseHash("#dev")                // => {room: "dev"}
 *   parseHash("#board?invite=Zm9v")  // => {room: "board", invite: "Zm9v"}
 *   parseHash("#token=eyJ…")         // => {token: "eyJ…"}
 *   parseHash("#%")                  // => {invalid: "%"}
 *   parseHash("")                    // => {}
 */
export function parseHash(hash: string): Hash {
  const raw = hash.replace(/^#/, "");
  if (raw.startsWith("token=")) return ticket(new URLSearchParams(raw).get("token"));
  const at = raw.indexOf("?");
  const path = at < 0 ? raw : raw.slice(0, at);
  const query = new URLSearchParams(at < 0 ? "" : raw.slice(at + 1));
  const decoded = decode(path);
  const name = roomName(decoded ?? "");
  const out: Hash = ticket(query.get("token"));
  if (!name) return decoded === null ? { ...out, invalid: path } : out;
  if (decoded === null || !isRoom(name)) return { ...out, invalid: decoded ?? path };
  const invite = query.get("invite");
  return { ...out, room: name, ...(invite && invite.length <= INVITE_MAX_CHARS ? { invite } : {}) };
}

/** `{token}` for a plausible ticket, else nothing. */
function ticket(token: string | null): Hash {
  return token && token.length <= TOKEN_MAX_BYTES ? { token } : {};
}
