/**
 * The protocol's rules on one frame and its values: the zod schemas every client frame is read
 * with (parseFrame), and the name and text rules (§4, §10). Pure; the hub applies the rules that
 * need state (a name in use, a room joined).
 */
import { z } from "zod";
// As text, parsed at the first name it is needed for: evaluated as an object literal at start, the
// table took ~13 ms of the compiled binary's cold start; JSON.parse takes ~1 ms, once.
import confusablesJson from "unhomoglyph/data.json" with { type: "text" };
import {
  HISTORY_PAGE_MAX,
  NAME_MAX_CHARS,
  REASON_MAX_CHARS,
  REF_MAX_CHARS,
  RESTRICTION_MAX_SECONDS,
  ROLES,
  SLOW_MODE_MAX_SECONDS,
  TOPIC_MAX_CHARS,
  codePoints,
} from "./wire.ts";
import type { ClientFrame, ClientFrameType, ErrorCode, SendFrame as SendCommand, UserRef } from "./wire.ts";

const NAME_PATTERN = /^[\p{L}\p{M}\p{Nd} _.-]+$/u;
/** Marks, spaces and punctuation alone show no name. */
const NAME_VISIBLE = /[\p{L}\p{Nd}]/u;
/** Code points that render as nothing; the Hangul fillers are letters (Lo), so they are named too. */
const NAME_INVISIBLE = /[\p{Default_Ignorable_Code_Point}\u115f\u1160\u3164\uffa0]/u;
/**
 * Unicode's confusables.txt (UTS #39) as single code point → prototype, shipped by the `unhomoglyph`
 * package (data version 13.0.0); bundled at build time, so the compiled binary reads no file.
 * Made at its first use.
 */
let confusables: Map<string, string> | null = null;
function confusablesTable(): Map<string, string> {
  // TypeScript types a JSON import as its object; with `type: "text"` Bun gives its text.
  return (confusables ??= new Map(Object.entries(JSON.parse(confusablesJson as unknown as string) as Record<string, string>)));
}
/** Control characters a text may not hold: all of C0 and C1 but tab and newline. */
const TEXT_FORBIDDEN = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/;

/** What error answers say, for people (clients must not parse it). */
export const MESSAGES = {
  notReady: "send hello first",
  nameInvalid: `a name is 1 to ${NAME_MAX_CHARS} letters (accents included), digits, spaces, _ - or ., with no invisible characters`,
  nameTaken: "that name is in use",
  nameReserved: "that name is reserved",
  roomInvalid: "a room name is 1 to 32 of a-z 0-9 _ -, starting with a letter or digit",
  rateLimited: "too many frames; slow down",
  unsupported: "binary frames are not supported",
  internal: "internal error",
} as const;

/** An id or ref: at most REF_MAX_CHARS code points, and no lone surrogate (§10: storage would mangle it). */
const shortString = z
  .string()
  .refine((s) => codePoints(s) <= REF_MAX_CHARS, "at most 64 characters")
  .refine((s) => s.isWellFormed(), "no lone surrogates");
const ref = shortString.optional();
const seq = z.int().min(0);
const room = z.string();

/** Bounds what an invite may ask for: its life in seconds and its uses (§11.2). */
const INVITE_TTL_MAX_SECONDS = 31_536_000;
const INVITE_USES_MAX = 1_000_000;

const HelloFrame = z
  .object({
    type: z.literal("hello"),
    name: z.string().optional(),
    session: z.string().optional(),
    token: z.string().optional(),
    adminToken: z.string().optional(),
    ref,
  })
  .refine((f) => f.name !== undefined || f.token !== undefined || f.session !== undefined, {
    path: ["name"],
    message: "a hello carries a name, a token or a session",
  });
const JoinFrame = z.object({ type: z.literal("join"), room, since: seq.optional(), epoch: shortString.optional(), invite: z.string().optional(), ref });
const LeaveFrame = z.object({ type: z.literal("leave"), room, ref });
const SendFrame = z.object({
  type: z.literal("send"),
  room,
  id: z.string().min(1).pipe(shortString),
  text: z.string(),
  replyTo: z.int().min(1).optional(),
  ref,
});
const TypingFrame = z.object({ type: z.literal("typing"), room, ref });
const HistoryFrame = z.object({
  type: z.literal("history"),
  room,
  before: seq.optional(),
  after: seq.optional(),
  limit: z.int().min(1).max(HISTORY_PAGE_MAX).optional(),
  ref,
});
const PingFrame = z.object({ type: z.literal("ping"), ref });
const RoomSettingsFrame = z.object({
  type: z.literal("room_settings"),
  room,
  topic: z.string().optional(),
  private: z.boolean().optional(),
  readOnly: z.boolean().optional(),
  slowModeSeconds: z.int().min(0).max(SLOW_MODE_MAX_SECONDS).optional(),
  ref,
});
const RoleFrame = z.object({ type: z.literal("role"), room, user: z.string(), role: z.enum(ROLES), ref });
const InviteRequest = z.object({
  type: z.literal("invite"),
  room,
  ttlSeconds: z.int().min(1).max(INVITE_TTL_MAX_SECONDS).optional(),
  maxUses: z.int().min(1).max(INVITE_USES_MAX).optional(),
  ref,
});
const SignoutFrame = z.object({ type: z.literal("signout"), ref });
/** A user id, as frames name their target. */
const userId = z.string().min(1).max(REF_MAX_CHARS + 2);
/** A moderator's reason: up to REASON_MAX_CHARS code points, no control characters. */
const reason = z
  .string()
  .refine((s) => codePoints(s) <= REASON_MAX_CHARS, `at most ${REASON_MAX_CHARS} characters`)
  .refine((s) => !/[\u0000-\u001f\u007f-\u009f]/.test(s) && s.isWellFormed(), "no control characters")
  .optional();
const seconds = z.int().min(0).max(RESTRICTION_MAX_SECONDS);
const EditFrame = z.object({ type: z.literal("edit"), room, seq: z.int().min(1), text: z.string(), ref });
const DeleteFrame = z.object({ type: z.literal("delete"), room, seq: z.int().min(1), ref });
const KickFrame = z.object({ type: z.literal("kick"), room, user: userId, reason, ref });
const BanFrame = z.object({
  type: z.literal("ban"),
  room: room.optional(),
  user: userId,
  seconds: seconds.min(1).optional(),
  reason,
  address: z.boolean().optional(),
  ref,
});
const UnbanFrame = z.object({ type: z.literal("unban"), room: room.optional(), user: userId, ref });
const MuteFrame = z.object({ type: z.literal("mute"), room, user: userId, seconds, ref });

/** Every frame a client may send, discriminated by `type`. */
export const ClientFrameSchema = z.discriminatedUnion("type", [
  HelloFrame,
  JoinFrame,
  LeaveFrame,
  SendFrame,
  TypingFrame,
  HistoryFrame,
  PingFrame,
  RoomSettingsFrame,
  RoleFrame,
  InviteRequest,
  SignoutFrame,
  EditFrame,
  DeleteFrame,
  KickFrame,
  BanFrame,
  UnbanFrame,
  MuteFrame,
]);
const CLIENT_TYPES = new Set<string>(ClientFrameSchema.options.map((o) => o.shape.type.value));

/** Fails to compile when the schemas and wire.ts's frame types say different things. */
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const schemasMatchWire: Same<z.infer<typeof ClientFrameSchema>, ClientFrame> = true;
void schemasMatchWire;

/** The outcome of reading one text frame: a typed frame, or what to answer instead. */
export type Parsed =
  | { ok: true; frame: ClientFrame; ref?: string }
  | { ok: false; type?: ClientFrameType; ref?: string; message: string };

/**
 * Reads one text frame. Shape errors (not JSON, not an object, unknown type, a missing field or
 * one of the wrong JSON type, an over-long id or ref) fail here; rules on values (names, rooms,
 * text) are checked by the hub. `ref` is what an answer echoes: for `send` its `id`.
 *
 *   parseFrame('{"type":"ping","ref":"7"}')  // => { ok: true, frame: { type: "ping", ref: "7" }, ref: "7" }
 *   parseFrame('{"type":"join"}')            // => { ok: false, type: "join", message: "room: …" }
 */
export function parseFrame(raw: string): Parsed {
  let data: unknown;
  try {
    data = JSON.parse(raw);
  } catch {
    return { ok: false, message: "not JSON" };
  }
  if (typeof data !== "object" || data === null || Array.isArray(data)) {
    return { ok: false, message: "not a JSON object" };
  }
  return readFrame(data as Record<string, unknown>);
}

/**
 * Reads one frame's fields, as parseFrame does once they are JSON: also what another door builds
 * from what it was given (the TCP door's `/kick`, `/ban`, `/unban`, `/mute`), so a frame's
 * bounds are written once, here, whichever door it came through.
 *   readFrame({ type: "ban", room: "dev", user: "u1", seconds: 0 })
 *   // => { ok: false, type: "ban", message: "seconds: Too small: expected number to be >=1" }
 */
export function readFrame(fields: Record<string, unknown>): Parsed {
  const type = typeof fields.type === "string" && CLIENT_TYPES.has(fields.type) ? (fields.type as ClientFrameType) : undefined;
  const echo = echoRef(fields, type);
  if (type === "send") {
    const frame = sendFrame(fields);
    if (frame) return { ok: true, frame, ref: echo };
  }
  const parsed = ClientFrameSchema.safeParse(fields);
  if (parsed.success) return { ok: true, frame: parsed.data, ref: echo };
  if (!type) return { ok: false, ref: echo, message: fields.type === undefined ? "missing type" : "unknown type" };
  const issue = parsed.error.issues[0];
  const where = issue?.path.join(".") || "frame";
  return { ok: false, type, ref: echo, message: `${where}: ${issue?.message ?? "invalid"}` };
}

/**
 * The hot path's `send`, checked by hand: exactly what SendFrame accepts, with what it outputs
 * (unknown fields dropped), or null to let the schema say what is wrong. A test holds the two
 * together on generated frames. zod's object parse was ~6% of the server's CPU under write-heavy.
 */
export function sendFrame(f: Record<string, unknown>): ClientFrame | null {
  const { room, id, text, replyTo, ref } = f;
  if (typeof room !== "string" || typeof text !== "string" || !isShortString(id, 1) || !id.isWellFormed()) return null;
  if (replyTo !== undefined && !(Number.isSafeInteger(replyTo) && (replyTo as number) >= 1)) return null;
  if (ref !== undefined && !(isShortString(ref, 0) && ref.isWellFormed())) return null;
  const frame: SendCommand = { type: "send", room, id, text };
  if (replyTo !== undefined) frame.replyTo = replyTo as number;
  if (ref !== undefined) frame.ref = ref;
  return frame;
}

function isShortString(value: unknown, min: number): value is string {
  return typeof value === "string" && value.length >= min && codePoints(value) <= REF_MAX_CHARS;
}

function echoRef(fields: Record<string, unknown>, type: ClientFrameType | undefined): string | undefined {
  if (type === "send" && isShortString(fields.id, 1)) return fields.id;
  return isShortString(fields.ref, 0) ? fields.ref : undefined;
}

/**
 * A valid name, NFC, trimmed and with each run of spaces made one (two spaces show as one, so
 * "John  Smith" is "John Smith"); null if it breaks the name rule: letters with their marks,
 * digits, space, `_ - .`, at least one letter or digit, nothing invisible.
 *   checkName(" Zoe\u0308  van ") // => "Zoë van"
 */
export function checkName(raw: string): string | null {
  const name = raw.normalize("NFC").trim().replace(/ {2,}/g, " ");
  if (name.length === 0 || name.length > 2 * NAME_MAX_CHARS || codePoints(name) > NAME_MAX_CHARS) return null;
  return NAME_PATTERN.test(name) && NAME_VISIBLE.test(name) && !NAME_INVISIBLE.test(name) ? name : null;
}

/**
 * Look-alikes confusables.txt 13.0 lacks: the Latin small capitals, which show as capitals (ᴀ →
 * A), mapped before a skeleton is taken. Modifier letters (ᵃ, ᴬ, ʰ, ˡ) go by their compatibility
 * form instead (LOOKALIKE_MODIFIER). Letters with a stroke, hook or turn are left alone: they
 * do not pass for the plain letter.
 */
const SMALL_CAPITALS = new Map<string, string>([
  ["\u1d00", "A"], ["\u0299", "B"], ["\u1d04", "C"], ["\u1d05", "D"], ["\u1d07", "E"], ["\ua730", "F"],
  ["\u0262", "G"], ["\u029c", "H"], ["\u026a", "I"], ["\ua7ae", "I"], ["\u1d0a", "J"], ["\u1d0b", "K"],
  ["\u029f", "L"], ["\u1d0d", "M"], ["\u0274", "N"], ["\u1d0f", "O"], ["\u1d18", "P"], ["\ua7af", "Q"],
  ["\u0280", "R"], ["\ua731", "S"], ["\u1d1b", "T"], ["\u1d1c", "U"], ["\u1d20", "V"], ["\u1d21", "W"],
  ["\u028f", "Y"], ["\u1d22", "Z"], ["\u1d01", "AE"], ["\u0276", "OE"],
]);
/**
 * Letters shown as the letter their compatibility form (NFKC) names, where confusables.txt 13.0
 * lacks many of them: modifier letters (ᵃ ᴬ ʰ ˡ ₐ, a small copy of a letter); the ordinals ª º
 * (a small raised a and o); every fullwidth and halfwidth form, U+FF01–FF5E and U+FF61–FFEE
 * (<wide>, <narrow>: ｂｏｂ is bob, ＤＦ is DF, ０ is 0, ｶ is カ); the digraphs Ǆ ǅ ǆ and the
 * ligature ﬅ (DŽ Dž dž st); ẚ (aʾ); the Arabic presentation forms, U+FB50–FDFF and U+FE70–FEFF
 * (a letter as drawn at the start, middle or end of a word, or a ligature of letters). Not every
 * compatibility form, whose NFKC would join names that do not look alike: ϲ is drawn as c (so
 * confusables.txt has it) and NFKC makes it σ; ſ is drawn as f (confusables.txt) and is s only
 * by case folding (CASE_FOLDS); superscript and circled digits are no name's characters.
 */
const LOOKALIKE_COMPAT = /\p{Lm}|[\u00aa\u00ba\u01c4-\u01c6\u1e9a\ufb05\ufb50-\ufdff\ufe70-\ufeff\uff01-\uff5e\uff61-\uffee]/u;
/**
 * Where a lower case is not the case folding (CaseFolding.txt, status C) of a letter a name may
 * hold, after NFD: ſ (long s) folds to s. The lower-case key takes these, so ſam clashes with sam
 * (its folding) as well as with fam (its look, by the key as typed).
 */
const CASE_FOLDS = new Map<string, string>([["\u017f", "s"]]);

/** `name` with the look-alikes confusables.txt lacks replaced by the letters they pass for, and a run of spaces by one. */
function unconfused(name: string): string {
  let out = "";
  for (const c of name) {
    if (!LOOKALIKE_COMPAT.test(c)) out += SMALL_CAPITALS.get(c) ?? c;
    // A compatibility form may be a small capital (ᶫ is a small ʟ): mapped on as one.
    else for (const d of c.normalize("NFKC")) out += SMALL_CAPITALS.get(d) ?? d;
  }
  return out.replace(/ {2,}/g, " ");
}

/** `s` in lower case, and folded where its lower case is not its case folding (CASE_FOLDS). */
function folded(s: string): string {
  let out = "";
  for (const c of s.toLowerCase().normalize("NFD")) out += CASE_FOLDS.get(c) ?? c;
  return out;
}

/** UTS #39 skeleton: NFD, each code point replaced by its confusables.txt prototype, NFD again. */
function skeleton(s: string): string {
  const table = confusablesTable();
  let mapped = "";
  for (const c of s.normalize("NFD")) mapped += table.get(c) ?? c;
  return mapped.normalize("NFD");
}

/**
 * A name's look-alike keys (§11.1): the UTS #39 skeleton of the name as typed, and that of its
 * lower case (folded: CASE_FOLDS), both taken after the small capitals and compatibility forms
 * confusables.txt lacks are replaced (`unconfused`). Two names clash when a key of one equals a
 * key of the other, so `alice`, `Alice`, `ALICE`, `аlice` (Cyrillic а), `aIice` (capital I),
 * `ａｌｉｃｅ`, `ＡＬＩＣＥ`, `𝐚𝐥𝐢𝐜𝐞`, `ᴀʟɪᴄᴇ` and `ᵃˡⁱᶜᵉ` clash, while `ali` and `all` do not.
 * One key when both are the same.
 *   nameKeys("aIice") // => ["alice", "aiice"]
 */
export function nameKeys(name: string): string[] {
  const plain = unconfused(name);
  const typed = skeleton(plain);
  const lower = skeleton(folded(plain));
  return typed === lower ? [typed] : [typed, lower];
}

/** Names guests may not take, nor any look-alike (§11.1): they would claim authority. RESERVED_NAMES adds to them. */
export const RESERVED_NAMES = ["admin", "moderator", "system", "server", "root", "owner", "bot", "support"] as const;

/**
 * The look-alike keys of the reserved names and of `extra`: a guest's name with one of them is
 * refused. `reservedKeys([]).has(nameKeys("ADMIN").at(-1)!) // => true`
 */
export function reservedKeys(extra: readonly string[]): Set<string> {
  return new Set([...RESERVED_NAMES, ...extra].flatMap(nameKeys));
}

/** Whether two names clash: a key of one is a key of the other. `namesClash("alice", "ALICE") // => true` */
export function namesClash(a: string, b: string): boolean {
  const keys = nameKeys(a);
  return nameKeys(b).some((k) => keys.includes(k));
}

/**
 * The text to store, or null if it breaks the text rule: CRLF becomes LF, then trimmed, then
 * 1..maxChars code points with no control character but tab and newline, and no lone surrogate.
 *   normalizeText(" hi\r\nthere ", 2000) // => "hi\nthere"
 */
export function normalizeText(raw: string, maxChars: number): string | null {
  const text = raw.replace(/\r\n/g, "\n").trim();
  if (text.length === 0 || text.length > 2 * maxChars) return null;
  if (text.length > maxChars && codePoints(text) > maxChars) return null;
  return TEXT_FORBIDDEN.test(text) || !text.isWellFormed() ? null : text;
}

/**
 * A room's topic to store, or null if it breaks the rule (§11.2): the text rules of `send`, but
 * 0..TOPIC_MAX_CHARS code points (an empty topic clears it).
 *   normalizeTopic("  launch day ") // => "launch day"
 */
export function normalizeTopic(raw: string): string | null {
  const topic = raw.replace(/\r\n/g, "\n").trim();
  if (topic === "") return "";
  return normalizeText(topic, TOPIC_MAX_CHARS);
}

/** Member ids start so (`u:` + the token's sub), bot ids so (`b:` + a random id); a guest's has no `:` (§11.1). */
export const MEMBER_ID_PREFIX = "u:";
export const BOT_ID_PREFIX = "b:";

/** A user object for an id and a name, with the kind its id says. `userRef("u:42", "Ann") // => {id, name, kind: "member"}` */
export function userRef(id: string, name: string): UserRef {
  if (id.startsWith(MEMBER_ID_PREFIX)) return { id, name, kind: "member" };
  if (id.startsWith(BOT_ID_PREFIX)) return { id, name, kind: "bot" };
  return { id, name };
}

/** `frame` with `ref` when there is one to echo. */
export function withRef<F extends object>(frame: F, ref: string | undefined): F & { ref?: string } {
  return ref === undefined ? frame : { ...frame, ref };
}

/** What an error may add (§11.4): when to try again (rate_limited, slow_mode), until when it holds (banned, muted). */
export type ErrorExtra = { retryAfterMs?: number; until?: number };
/** Why a request was refused: its error code and message, what the error adds, and a close when it is abuse. */
export type Failure = { ok: false; code: ErrorCode; message: string; extra?: ErrorExtra; close?: { code: number; reason: string } };
/** What applying the rules to a request gave: a value, or a refusal. */
export type Result<T> = { ok: true; value: T } | Failure;
export const ok = <T>(value: T): Result<T> => ({ ok: true, value });
export const fail = (code: ErrorCode, message: string): Failure => ({ ok: false, code, message });
