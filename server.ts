/**
 * bun-chat: a real-time chat room server for Bun, in one file.
 *
 *   bun run server.ts      serves the chat page on http://localhost:3000, history in ./data/chat.sqlite
 *   bun test               runs every test
 *   bun run build          dist/bun-chat: one executable, the page inside (deploy/build.ts)
 *   bun run bench/run.ts   the bench: this server against raw Bun pub/sub (bench/README.md)
 *
 * WebSocket clients speak protocol v1 at /ws (docs/protocol.md); the page at / is one of them.
 * Rooms are Bun pub/sub topics, so fan-out to WebSockets runs in Bun's native code. With TCP_PORT
 * set, people can also chat from `nc host TCP_PORT`, in the same rooms, as the same kind of user.
 *
 * Environment (all optional, validated at start; a bad value prints `NAME=value: what is allowed`
 * and exits 1 before listening). Defaults in brackets:
 *   PORT [3000]  HOST [0.0.0.0]  DATABASE_PATH [./data/chat.sqlite, or :memory:]
 *   REDIS_URL [unset]          redis:// or rediss://: several instances share rooms through Redis
 *   INSTANCE_TIMEOUT_MS [10000] with Redis: a silent instance's members are taken over after this
 *   ALLOWED_ORIGINS [none]     comma-separated scheme://host[:port] allowed to open /ws
 *   TRUST_PROXY [false]        take the client IP from Fly-Client-IP, else the rightmost X-Forwarded-For
 *   PUBLIC_HOSTS [any]         comma-separated host[:port] this server answers to; others get 421
 *   METRICS_TOKEN [none]       when set, /metrics needs `Authorization: Bearer <token>`
 *   MAX_MESSAGE_CHARS [2000]  MAX_PAYLOAD_BYTES [32768]  IDLE_TIMEOUT_SECONDS [120]
 *   BACKPRESSURE_LIMIT_BYTES [1048576]  RATE_LIMIT_BURST [10]  RATE_LIMIT_PER_SECOND [5]
 *   RATE_LIMIT_ABUSE_ERRORS [50]  MAX_ROOMS_PER_CONNECTION [20]  MAX_CONNECTIONS [10000]
 *   MAX_CONNECTIONS_PER_IP [50]  MAX_CONNECTIONS_PER_SESSION [5]  HELLO_RATE_PER_MINUTE [30]
 *   HISTORY_ON_JOIN [50]  HISTORY_RETAIN [1000]  MAX_ROOMS [10000]  HISTORY_MAX_AGE_DAYS [0 = keep]
 *   PRESENCE_GRACE_MS [5000]  TYPING_THROTTLE_MS [1000]  HELLO_TIMEOUT_MS [10000]
 *   SESSION_TTL_SECONDS [2592000]  DRAIN_TIMEOUT_MS [3000]  LOG_LEVEL [info]
 *   TCP_PORT [off]  TCP_MAX_LINE_BYTES [4096]  TCP_MAX_PENDING_BYTES [1048576]
 *
 * Sections, top to bottom: config → protocol → pure core → storage → connections and fan-out →
 * the hub → WebSocket handlers → TCP door → HTTP routes → createServer → main.
 */

import { Database } from "bun:sqlite";
import { RedisClient } from "bun";
import type { Server, ServerWebSocket, Socket, TCPSocketListener, WebSocketHandler } from "bun";
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { closeSync, fdatasync, mkdirSync, openSync } from "node:fs";
import { isIP } from "node:net";
import { dirname } from "node:path";
import { Hono } from "hono";
import { secureHeaders } from "hono/secure-headers";
import { z } from "zod";
import confusablesTxt from "unhomoglyph/data.json";

// ─── Config ──────────────────────────────────────────────────────────────────────────────────

export const LOG_LEVELS = ["debug", "info", "warn", "error"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** Everything an operator can set. Each limit carries its unit in its name. */
export interface Config {
  /** HTTP and WebSocket listen port; 0 picks a free one. */
  port: number;
  /** Listen address. */
  host: string;
  /** SQLite file (its folder is created) or ":memory:". */
  databasePath: string;
  /** redis:// or rediss:// URL: history, sessions and room events live in Redis, shared by every instance; null = SQLite. */
  redisUrl: string | null;
  /** With Redis: how long an instance may stop renewing its key before a survivor takes its members over. */
  instanceTimeoutMs: number;
  /** Origins, besides the server's own host, whose pages may open /ws. */
  allowedOrigins: string[];
  /** Trust Fly-Client-IP / the rightmost X-Forwarded-For entry for the client's address. */
  trustProxy: boolean;
  /** Host headers (host[:port], lowercase) answered; empty answers any. Stops DNS rebinding. */
  publicHosts: string[];
  /** Bearer token /metrics requires; null leaves /metrics open. */
  metricsToken: string | null;
  /** Bounds a message's text, in Unicode code points. */
  maxMessageChars: number;
  /** Bounds one inbound WebSocket frame; Bun closes with 1009 past it. */
  maxPayloadBytes: number;
  /** Closes a WebSocket that answers nothing, not even pings, for this long; TCP keepalive delay. */
  idleTimeoutSeconds: number;
  /** Bounds the unsent bytes one WebSocket may hold before the server closes it. */
  backpressureLimitBytes: number;
  /** Bounds a burst of frames per user, and per connection before hello and for pings (bucket size). */
  rateLimitBurst: number;
  /** Bounds the sustained frame rate per user (token refill per second); the same per-connection bucket refills so too. */
  rateLimitPerSecond: number;
  /** Bounds consecutive rate_limited answers before the connection is closed with 1008. */
  rateLimitAbuseErrors: number;
  /** Bounds the rooms one connection may be in. */
  maxRoomsPerConnection: number;
  /** Bounds open WebSocket + TCP connections in all. */
  maxConnections: number;
  /** Bounds open WebSocket + TCP connections from one client address. */
  maxConnectionsPerIp: number;
  /** Bounds the live connections of one session (its tabs and devices); one more replaces the oldest. */
  maxConnectionsPerSession: number;
  /** Bounds the hellos per minute from one client address. */
  helloRatePerMinute: number;
  /** Bounds the messages sent with `joined`. */
  historyOnJoin: number;
  /** Bounds the messages kept per room. */
  historyRetain: number;
  /** Bounds the rooms that hold history (retained messages); a send that would start one more is refused. */
  maxRooms: number;
  /** Bounds a message's age, in days, before it is trimmed; 0 keeps messages until HISTORY_RETAIN pushes them out. */
  historyMaxAgeDays: number;
  /** How long a dropped member stays in a room before others see it leave. */
  presenceGraceMs: number;
  /** Bounds typing relays per user and room. */
  typingThrottleMs: number;
  /** Bounds the time from open to a successful hello. */
  helloTimeoutMs: number;
  /** How long a session token restores its user after its last (recorded) use. */
  sessionTtlSeconds: number;
  /** Bounds the wait for clients to go at shutdown. */
  drainTimeoutMs: number;
  logLevel: LogLevel;
  /** Plain-TCP door port; null keeps the door shut. */
  tcpPort: number | null;
  /** Bounds one TCP input line, not counting its newline. */
  tcpMaxLineBytes: number;
  /** Bounds the output waiting for a TCP client before it is closed. */
  tcpMaxPendingBytes: number;
}

export const DEFAULTS: Config = {
  port: 3000,
  host: "0.0.0.0",
  databasePath: "./data/chat.sqlite",
  redisUrl: null,
  instanceTimeoutMs: 10000,
  allowedOrigins: [],
  trustProxy: false,
  publicHosts: [],
  metricsToken: null,
  maxMessageChars: 2000,
  maxPayloadBytes: 32768,
  idleTimeoutSeconds: 120,
  backpressureLimitBytes: 1048576,
  rateLimitBurst: 10,
  rateLimitPerSecond: 5,
  rateLimitAbuseErrors: 50,
  maxRoomsPerConnection: 20,
  maxConnections: 10000,
  maxConnectionsPerIp: 50,
  maxConnectionsPerSession: 5,
  helloRatePerMinute: 30,
  historyOnJoin: 50,
  historyRetain: 1000,
  maxRooms: 10000,
  historyMaxAgeDays: 0,
  presenceGraceMs: 5000,
  typingThrottleMs: 1000,
  helloTimeoutMs: 10000,
  sessionTtlSeconds: 2592000,
  drainTimeoutMs: 3000,
  logLevel: "info",
  tcpPort: null,
  tcpMaxLineBytes: 4096,
  tcpMaxPendingBytes: 1048576,
};

/** One setting: its variable, what it accepts (said back on a bad value) and its parsers. */
interface Setting<T> {
  env: string;
  allowed: string;
  /** Validates a value handed to createServer. */
  value: z.ZodType<T>;
  /** Parses the environment's text. */
  parse: z.ZodType<T, string>;
}

function integer(env: string, min: number, max: number): Setting<number> {
  const value = z.int().min(min).max(max);
  return {
    env,
    allowed: `an integer from ${min} to ${max}`,
    value,
    parse: z.string().regex(/^\d{1,16}$/).transform(Number).pipe(value),
  };
}

/** `scheme://host[:port]` exactly as a browser sends it in Origin. */
function isOrigin(s: string): boolean {
  try {
    const url = new URL(s);
    return url.origin !== "null" && url.origin === s.toLowerCase();
  } catch {
    return false;
  }
}

const originList = z.array(z.string().refine(isOrigin));

/** A Redis URL Bun's client takes over TCP: `redis://` or `rediss://` (TLS), with a host. */
function isRedisUrl(s: string): boolean {
  try {
    const url = new URL(s);
    return (url.protocol === "redis:" || url.protocol === "rediss:") && url.hostname !== "";
  } catch {
    return false;
  }
}

const redisUrl = z.string().refine(isRedisUrl);

/**
 * A `Host` header's host[:port] in the form browsers send it: lowercase, punycode, no default
 * port; null if it is not one. `hostKey("Chat.Example.com:80") // => "chat.example.com"`
 */
export function hostKey(host: string): string | null {
  if (/[/?#@\\\s]/.test(host)) return null;
  try {
    const url = new URL(`http://${host}`);
    return url.href === `http://${url.host}/` ? url.host : null;
  } catch {
    return null;
  }
}

/** Host names as hostKey() writes them, so that a request's Host is compared as is. */
const hostList = z.array(z.string().refine((h) => hostKey(h) === h));
/** Bounds METRICS_TOKEN, in characters. */
const METRICS_TOKEN_MAX_CHARS = 1024;
/** A bearer token as RFC 6750 writes it (token68). */
const METRICS_TOKEN_PATTERN = new RegExp(`^[A-Za-z0-9\\-._~+/]{1,${METRICS_TOKEN_MAX_CHARS}}=*$`);

const SETTINGS: { [K in keyof Config]: Setting<Config[K]> } = {
  port: integer("PORT", 0, 65535),
  host: {
    env: "HOST",
    allowed: "an address to listen on",
    value: z.string().min(1),
    parse: z.string().min(1),
  },
  databasePath: {
    env: "DATABASE_PATH",
    allowed: "a file path or :memory:",
    value: z.string().min(1),
    parse: z.string().min(1),
  },
  redisUrl: {
    env: "REDIS_URL",
    allowed: "a redis:// or rediss:// URL, e.g. redis://127.0.0.1:6379",
    value: redisUrl.nullable(),
    parse: redisUrl,
  },
  instanceTimeoutMs: integer("INSTANCE_TIMEOUT_MS", 1000, 600000),
  allowedOrigins: {
    env: "ALLOWED_ORIGINS",
    allowed: "comma-separated scheme://host[:port] origins",
    value: originList,
    parse: z.string().transform((s) => s.split(",").map((o) => o.trim()).filter(Boolean)).pipe(originList),
  },
  trustProxy: {
    env: "TRUST_PROXY",
    allowed: "true, false, 1 or 0",
    value: z.boolean(),
    parse: z.enum(["true", "false", "1", "0"]).transform((s) => s === "true" || s === "1"),
  },
  publicHosts: {
    env: "PUBLIC_HOSTS",
    allowed: "comma-separated host[:port] names",
    value: hostList,
    parse: z
      .string()
      .transform((s) => s.split(",").map((h) => h.trim()).filter(Boolean).map((h) => hostKey(h) ?? h))
      .pipe(hostList),
  },
  metricsToken: {
    env: "METRICS_TOKEN",
    allowed: `a bearer token: 1 to ${METRICS_TOKEN_MAX_CHARS} of A-Z a-z 0-9 - . _ ~ + /, then optional =`,
    value: z.string().regex(METRICS_TOKEN_PATTERN).nullable(),
    parse: z.string().regex(METRICS_TOKEN_PATTERN),
  },
  maxMessageChars: integer("MAX_MESSAGE_CHARS", 1, 100000),
  maxPayloadBytes: integer("MAX_PAYLOAD_BYTES", 1024, 16777216),
  // Bun's WebSocket timer works in steps of 8 s, up to 960 s.
  idleTimeoutSeconds: integer("IDLE_TIMEOUT_SECONDS", 8, 960),
  backpressureLimitBytes: integer("BACKPRESSURE_LIMIT_BYTES", 1024, 1073741824),
  rateLimitBurst: integer("RATE_LIMIT_BURST", 1, 10000),
  rateLimitPerSecond: integer("RATE_LIMIT_PER_SECOND", 1, 10000),
  rateLimitAbuseErrors: integer("RATE_LIMIT_ABUSE_ERRORS", 1, 100000),
  maxRoomsPerConnection: integer("MAX_ROOMS_PER_CONNECTION", 1, 1000),
  maxConnections: integer("MAX_CONNECTIONS", 1, 1000000),
  maxConnectionsPerIp: integer("MAX_CONNECTIONS_PER_IP", 1, 1000000),
  maxConnectionsPerSession: integer("MAX_CONNECTIONS_PER_SESSION", 1, 1000),
  helloRatePerMinute: integer("HELLO_RATE_PER_MINUTE", 1, 1000000),
  historyOnJoin: integer("HISTORY_ON_JOIN", 0, 200),
  historyRetain: integer("HISTORY_RETAIN", 1, 10000000),
  maxRooms: integer("MAX_ROOMS", 1, 10000000),
  historyMaxAgeDays: integer("HISTORY_MAX_AGE_DAYS", 0, 36500),
  presenceGraceMs: integer("PRESENCE_GRACE_MS", 0, 600000),
  typingThrottleMs: integer("TYPING_THROTTLE_MS", 0, 600000),
  helloTimeoutMs: integer("HELLO_TIMEOUT_MS", 1, 600000),
  sessionTtlSeconds: integer("SESSION_TTL_SECONDS", 60, 315360000),
  drainTimeoutMs: integer("DRAIN_TIMEOUT_MS", 0, 600000),
  logLevel: {
    env: "LOG_LEVEL",
    allowed: LOG_LEVELS.join(", "),
    value: z.enum(LOG_LEVELS),
    parse: z.enum(LOG_LEVELS),
  },
  tcpPort: { ...integer("TCP_PORT", 0, 65535), value: z.int().min(0).max(65535).nullable() },
  tcpMaxLineBytes: integer("TCP_MAX_LINE_BYTES", 64, 1048576),
  tcpMaxPendingBytes: integer("TCP_MAX_PENDING_BYTES", 1024, 1073741824),
};

/** Every environment variable the server reads; the README's table must list each. */
export const SETTING_NAMES: readonly string[] = Object.values(SETTINGS).map((s) => s.env);

/** A frame carries at most this many JSON bytes per text code point: an astral character may be
 * written as two `\uXXXX` escapes (Python's json.dumps does), 12 bytes for one code point. */
const PAYLOAD_BYTES_PER_CHAR = 12;
/** Room in a frame for everything but its text. */
const PAYLOAD_OVERHEAD_BYTES = 512;

function crossCheck(config: Config, name: (key: keyof Config) => string): string[] {
  const need = PAYLOAD_BYTES_PER_CHAR * config.maxMessageChars + PAYLOAD_OVERHEAD_BYTES;
  if (config.maxPayloadBytes >= need) return [];
  return [
    `${name("maxPayloadBytes")}=${config.maxPayloadBytes}: must be at least ${PAYLOAD_BYTES_PER_CHAR} × ` +
      `${name("maxMessageChars")} + ${PAYLOAD_OVERHEAD_BYTES} = ${need} (${name("maxMessageChars")}=${config.maxMessageChars})`,
  ];
}

export type ConfigResult = { ok: true; config: Config } | { ok: false; errors: string[] };

/** Reads the configuration from environment variables; an empty variable counts as unset. */
export function loadConfig(env: Record<string, string | undefined>): ConfigResult {
  const config: Record<string, unknown> = { ...DEFAULTS };
  const errors: string[] = [];
  for (const [key, setting] of Object.entries(SETTINGS) as [keyof Config, Setting<unknown>][]) {
    const raw = env[setting.env];
    if (raw === undefined || raw.trim() === "") continue;
    const parsed = setting.parse.safeParse(raw.trim());
    if (parsed.success) config[key] = parsed.data;
    else errors.push(`${setting.env}=${raw}: ${setting.allowed}`);
  }
  if (errors.length) return { ok: false, errors };
  const checked = crossCheck(config as unknown as Config, (key) => SETTINGS[key].env);
  return checked.length ? { ok: false, errors: checked } : { ok: true, config: config as unknown as Config };
}

/** Fills in defaults and validates options given in code; throws naming every bad field. */
export function resolveConfig(options: Partial<Config>): Config {
  const config = { ...DEFAULTS, ...options };
  const errors: string[] = [];
  for (const [key, setting] of Object.entries(SETTINGS) as [keyof Config, Setting<unknown>][]) {
    const value = config[key];
    if (!setting.value.safeParse(value).success) errors.push(`${key}=${JSON.stringify(value)}: ${setting.allowed}`);
  }
  errors.push(...crossCheck(config, (key) => key));
  if (errors.length) throw new Error(`invalid configuration: ${errors.join("; ")}`);
  return config;
}

// ─── Protocol v1 (docs/protocol.md) ────────────────────────────────────────────────────────────

/** WebSocket close codes the server uses. */
export const CLOSE = {
  normal: 1000,
  shutdown: 1001,
  binary: 1003,
  policy: 1008,
  tooBig: 1009,
  replaced: 4001,
} as const;
/** What Bun reports for a socket that ended without a close frame, its own backpressure close included. */
const CLOSE_ABNORMAL = 1006;

const CLOSE_REASON = {
  shutdown: "server shutting down",
  binary: "binary frames are not supported",
  helloTimeout: "hello timeout",
  abuse: "rate limit exceeded",
  replaced: "replaced",
  reset: "room history was reset",
} as const;

export const ERROR_CODES = [
  "bad_request",
  "not_ready",
  "name_invalid",
  "name_taken",
  "room_invalid",
  "not_joined",
  "text_invalid",
  "rate_limited",
  "too_many_rooms",
  "room_limit",
  "unsupported",
  "internal",
] as const;
export type ErrorCode = (typeof ERROR_CODES)[number];
/** The TCP door's own error: an input line over TCP_MAX_LINE_BYTES. */
const LINE_TOO_LONG = "line_too_long";

/** Bounds `ref` and a send's `id`, in code points. */
const REF_MAX_CHARS = 64;
/** Bounds a user name, in code points (after NFC and trimming). */
const NAME_MAX_CHARS = 32;
/** Bounds one `history` page. */
export const HISTORY_PAGE_MAX = 200;
const HISTORY_PAGE_DEFAULT = 50;

export const ROOM_PATTERN = /^[a-z0-9][a-z0-9_-]{0,31}$/;
const NAME_PATTERN = /^[\p{L}\p{M}\p{Nd} _.-]+$/u;
/** Marks, spaces and punctuation alone show no name. */
const NAME_VISIBLE = /[\p{L}\p{Nd}]/u;
/** Code points that render as nothing; the Hangul fillers are letters (Lo), so they are named too. */
const NAME_INVISIBLE = /[\p{Default_Ignorable_Code_Point}\u115f\u1160\u3164\uffa0]/u;
/**
 * Unicode's confusables.txt (UTS #39) as single code point → prototype, shipped by the `unhomoglyph`
 * package (data version 13.0.0); bundled at build time, so the compiled binary reads no file.
 */
const CONFUSABLES = new Map<string, string>(Object.entries(confusablesTxt));
/** Control characters a text may not hold: all of C0 and C1 but tab and newline. */
const TEXT_FORBIDDEN = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/;

const MESSAGES = {
  notReady: "send hello first",
  nameInvalid: `a name is 1 to ${NAME_MAX_CHARS} letters (accents included), digits, spaces, _ - or ., with no invisible characters`,
  nameTaken: "that name is in use",
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

const HelloFrame = z.object({ type: z.literal("hello"), name: z.string(), session: z.string().optional(), ref });
const JoinFrame = z.object({ type: z.literal("join"), room, since: seq.optional(), ref });
const LeaveFrame = z.object({ type: z.literal("leave"), room, ref });
const SendFrame = z.object({
  type: z.literal("send"),
  room,
  id: z.string().min(1).pipe(shortString),
  text: z.string(),
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

/** Every frame a client may send, discriminated by `type`. */
export const ClientFrameSchema = z.discriminatedUnion("type", [
  HelloFrame,
  JoinFrame,
  LeaveFrame,
  SendFrame,
  TypingFrame,
  HistoryFrame,
  PingFrame,
]);
export type ClientFrame = z.infer<typeof ClientFrameSchema>;
export type ClientFrameType = ClientFrame["type"];
const CLIENT_TYPES = new Set<string>(ClientFrameSchema.options.map((o) => o.shape.type.value));

/** A user as every frame shows one: exactly these two fields. */
export interface UserRef {
  id: string;
  name: string;
}
export interface MessageFrame {
  type: "message";
  room: string;
  seq: number;
  id: string;
  user: UserRef;
  text: string;
  ts: number;
}
export interface Limits {
  maxTextChars: number;
  maxPayloadBytes: number;
  maxRooms: number;
  rate: { burst: number; perSecond: number };
  historyOnJoin: number;
  typingThrottleMs: number;
}
export interface WelcomeFrame { type: "welcome"; user: UserRef; session: string; limits: Limits; ref?: string }
export interface JoinedFrame {
  type: "joined";
  room: string;
  seq: number;
  oldestSeq: number;
  members: UserRef[];
  messages: MessageFrame[];
  complete: boolean;
  ref?: string;
}
export interface LeftFrame { type: "left"; room: string; ref?: string }
export type PresenceEvent = "join" | "leave" | "rename";
/** A member came, went, or (rename) now shows as `user`. */
export interface PresenceFrame { type: "presence"; room: string; event: PresenceEvent; user: UserRef }
export interface TypingNotice { type: "typing"; room: string; user: UserRef }
export interface HistoryPage { type: "history"; room: string; messages: MessageFrame[]; complete: boolean; ref?: string }
export interface PongFrame { type: "pong"; ref?: string }
export interface ErrorFrame { type: "error"; code: ErrorCode; message: string; ref?: string }
/** Every frame the server sends. */
export type ServerFrame =
  | WelcomeFrame
  | JoinedFrame
  | LeftFrame
  | MessageFrame
  | PresenceFrame
  | TypingNotice
  | HistoryPage
  | PongFrame
  | ErrorFrame;

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
  const fields = data as Record<string, unknown>;
  const type = typeof fields.type === "string" && CLIENT_TYPES.has(fields.type) ? (fields.type as ClientFrameType) : undefined;
  const echo = echoRef(fields, type);
  const parsed = ClientFrameSchema.safeParse(fields);
  if (parsed.success) return { ok: true, frame: parsed.data, ref: echo };
  if (!type) return { ok: false, ref: echo, message: fields.type === undefined ? "missing type" : "unknown type" };
  const issue = parsed.error.issues[0];
  const where = issue?.path.join(".") || "frame";
  return { ok: false, type, ref: echo, message: `${where}: ${issue?.message ?? "invalid"}` };
}

function isShortString(value: unknown, min: number): value is string {
  return typeof value === "string" && value.length >= min && codePoints(value) <= REF_MAX_CHARS;
}

function echoRef(fields: Record<string, unknown>, type: ClientFrameType | undefined): string | undefined {
  if (type === "send" && isShortString(fields.id, 1)) return fields.id;
  return isShortString(fields.ref, 0) ? fields.ref : undefined;
}

/** Counts Unicode code points, which is how every length in the protocol is measured. */
export function codePoints(s: string): number {
  let n = 0;
  for (const _ of s) n++;
  return n;
}

/**
 * A valid name, NFC and trimmed; null if it breaks the name rule: letters with their marks, digits,
 * space, `_ - .`, at least one letter or digit, nothing invisible.
 *   checkName(" Zoe\u0308 ") // => "Zoë"
 */
export function checkName(raw: string): string | null {
  const name = raw.normalize("NFC").trim();
  if (name.length === 0 || name.length > 2 * NAME_MAX_CHARS || codePoints(name) > NAME_MAX_CHARS) return null;
  return NAME_PATTERN.test(name) && NAME_VISIBLE.test(name) && !NAME_INVISIBLE.test(name) ? name : null;
}

/** UTS #39 skeleton: NFD, each code point replaced by its confusables.txt prototype, NFD again. */
function skeleton(s: string): string {
  let mapped = "";
  for (const c of s.normalize("NFD")) mapped += CONFUSABLES.get(c) ?? c;
  return mapped.normalize("NFD");
}

/**
 * The uniqueness key: a confusable skeleton that ignores case. Skeletons are taken of the name as
 * written, of its upper case and of that lower case, because a look-alike hides in either case:
 * `aIice` (capital I looks like l) and `ALICE` must both meet `alice`, so i and l share a key.
 *   nameKey("aIice") === nameKey("ALICE") // and === nameKey("аlice") with a Cyrillic а
 */
export function nameKey(name: string): string {
  return skeleton(skeleton(skeleton(name).toUpperCase()).toLowerCase());
}

export function isRoom(name: string): boolean {
  return ROOM_PATTERN.test(name);
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

function withRef<F extends object>(frame: F, ref: string | undefined): F & { ref?: string } {
  return ref === undefined ? frame : { ...frame, ref };
}

// ─── Pure core: rate limit, presence, line framing, TCP rendering ───────────────────────────

/**
 * A token bucket: `burst` tokens, refilled at `perSecond`. Pure: callers pass the time. A user's
 * bucket is shared by all its connections and outlives them (§10), so reconnecting refills nothing.
 *   const b = new TokenBucket(2, 1, 0); b.take(0); b.take(0); b.take(0) // => true, true, false
 */
export class TokenBucket {
  private tokens: number;
  private last: number;

  constructor(
    private readonly burst: number,
    private readonly perSecond: number,
    now: number,
  ) {
    this.tokens = burst;
    this.last = now;
  }

  take(now: number): boolean {
    this.refill(now);
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }

  /** A full bucket is the same as a new one, so it can be forgotten. */
  isFull(now: number): boolean {
    this.refill(now);
    return this.tokens >= this.burst;
  }

  private refill(now: number): void {
    if (now <= this.last) return;
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) * this.perSecond) / 1000);
    this.last = now;
  }
}

/**
 * One connection's side of rate limiting: the count of `rate_limited` answers in a row, whichever
 * bucket ran dry. `count` hears whether a frame got its token and says "ok", "limited", or
 * "abuse" when that makes `abuseAfter` limited answers in a row.
 */
export class RateLimiter {
  private limitedInRow = 0;

  constructor(private readonly abuseAfter: number) {}

  count(taken: boolean): "ok" | "limited" | "abuse" {
    if (taken) {
      this.limitedInRow = 0;
      return "ok";
    }
    this.limitedInRow += 1;
    return this.limitedInRow >= this.abuseAfter ? "abuse" : "limited";
  }
}

/**
 * Token buckets by key (a user id, a client address), swept when full: a full bucket is the
 * same as a new one, so the map holds only keys that spent tokens lately.
 */
export class Buckets {
  private readonly map = new Map<string, TokenBucket>();

  constructor(
    private readonly burst: number,
    private readonly perSecond: number,
  ) {}

  get(key: string, now: number): TokenBucket {
    let bucket = this.map.get(key);
    if (!bucket) this.map.set(key, (bucket = new TokenBucket(this.burst, this.perSecond, now)));
    return bucket;
  }

  /** Forgets full buckets, except those `keep` names (in use right now). */
  sweep(now: number, keep: (key: string) => boolean = () => false): void {
    for (const [key, bucket] of this.map) if (!keep(key) && bucket.isFull(now)) this.map.delete(key);
  }

  get size(): number {
    return this.map.size;
  }
}

/**
 * Removes `item` from a short list (a user's connections, a connection's rooms); true if it was
 * there. Such lists are arrays, not Sets: JSC spends about 260 bytes on a Set of one and 60 on
 * an array, and every idle connection holds several (issue #8: memory per connection).
 */
function removeItem<T>(list: T[], item: T): boolean {
  const at = list.indexOf(item);
  if (at === -1) return false;
  list.splice(at, 1);
  return true;
}

interface Member<C> {
  user: UserRef;
  /** The user's live connections in the room; none while in grace. */
  conns: C[];
  /** When the grace ends (epoch ms); 0 while live. */
  graceUntil: number;
}

/**
 * Who is in which room: one entry per user, however many of its connections are in the room
 * (§10). When the user's last connection there drops, the entry stays, in grace, for `graceMs`;
 * if the user joins again in time, nobody sees it leave or come back. Pure: callers pass the
 * time and announce what the methods return.
 */
export class Presence<C> {
  private readonly rooms = new Map<string, Map<string, Member<C>>>();
  private readonly roomsOf = new Map<string, string[]>();
  /** Grace deadlines in the order they end: graceMs is fixed, so appending keeps it sorted. */
  private readonly graces: { room: string; userId: string; until: number }[] = [];
  private graceHead = 0;

  constructor(private readonly graceMs: number) {}

  /**
   * "new" → announce a join; "returned" → back from grace, announce nothing; "again" → the user
   * was already in the room through this or another live connection: no change to announce.
   */
  join(room: string, user: UserRef, conn: C): "new" | "returned" | "again" {
    const member = this.rooms.get(room)?.get(user.id);
    if (member) {
      const returned = member.conns.length === 0;
      if (!member.conns.includes(conn)) member.conns.push(conn);
      member.graceUntil = 0;
      member.user = user;
      return returned ? "returned" : "again";
    }
    this.add(room, { user, conns: [conn], graceUntil: 0 });
    return "new";
  }

  /**
   * `conn` leaves explicitly (no grace). True when that was the user's last connection in the
   * room: the user is no longer a member (announce the leave).
   */
  leave(room: string, userId: string, conn: C): boolean {
    const member = this.rooms.get(room)?.get(userId);
    if (!member || !removeItem(member.conns, conn)) return false;
    if (member.conns.length > 0) return false;
    this.remove(room, userId);
    return true;
  }

  /**
   * `conn` is gone. Where it was the user's last connection in a room, the membership enters
   * grace, or ends at once when `immediate` or graceMs is 0. Returns the rooms left at once.
   */
  drop(conn: C, userId: string, rooms: Iterable<string>, now: number, immediate: boolean): string[] {
    const left: string[] = [];
    for (const room of rooms) {
      const member = this.rooms.get(room)?.get(userId);
      if (!member || !removeItem(member.conns, conn) || member.conns.length > 0) continue;
      if (immediate || this.graceMs === 0) {
        this.remove(room, userId);
        left.push(room);
      } else {
        member.graceUntil = now + this.graceMs;
        this.graces.push({ room, userId, until: member.graceUntil });
      }
    }
    return left;
  }

  /**
   * `user` comes over from an instance that died: a member in grace here, as if its connection
   * had just dropped, unless it is a member already. "gone" when there is no grace (leave now).
   */
  adopt(room: string, user: UserRef, now: number): "grace" | "gone" | "member" {
    if (this.has(room, user.id)) return "member";
    if (this.graceMs === 0) return "gone";
    this.add(room, { user, conns: [], graceUntil: now + this.graceMs });
    this.graces.push({ room, userId: user.id, until: now + this.graceMs });
    return "grace";
  }

  /** Ends the graces due by `now`; returns the leaves to announce. */
  expire(now: number): { room: string; user: UserRef }[] {
    const ended: { room: string; user: UserRef }[] = [];
    while (this.graceHead < this.graces.length) {
      const grace = this.graces[this.graceHead]!;
      if (grace.until > now) break;
      this.graceHead++;
      const member = this.graceOf(grace);
      // A member who came back, or dropped again later, is not this grace's to end.
      if (!member) continue;
      this.remove(grace.room, grace.userId);
      ended.push({ room: grace.room, user: member.user });
    }
    if (this.graceHead > 1024 && this.graceHead * 2 > this.graces.length) {
      this.graces.splice(0, this.graceHead);
      this.graceHead = 0;
    }
    return ended;
  }

  /**
   * When the next grace ends, or null if none is running. A deadline at the head that is nobody's
   * grace any more (its user came back) can never be again, a later drop having its own: it is
   * passed for good, so a reconnect storm does not rescan it on every close.
   */
  nextExpiry(): number | null {
    for (; this.graceHead < this.graces.length; this.graceHead++) {
      const grace = this.graces[this.graceHead]!;
      if (this.graceOf(grace)) return grace.until;
    }
    return null;
  }

  /** Every member once, those in grace included. */
  members(room: string): UserRef[] {
    return [...(this.rooms.get(room)?.values() ?? [])].map((m) => m.user);
  }

  has(room: string, userId: string): boolean {
    return this.rooms.get(room)?.has(userId) ?? false;
  }

  count(room: string): number {
    return this.rooms.get(room)?.size ?? 0;
  }

  /** True while the user is in some room, live or in grace. */
  isMember(userId: string): boolean {
    return this.roomsOf.has(userId);
  }

  /** The rooms the user is in, live or in grace. */
  roomsOfUser(userId: string): string[] {
    return [...(this.roomsOf.get(userId) ?? [])];
  }

  /** Rooms with at least one member, with their member counts. */
  active(): { room: string; members: number }[] {
    return [...this.rooms].map(([room, members]) => ({ room, members: members.size }));
  }

  private graceOf(grace: { room: string; userId: string; until: number }): Member<C> | null {
    const member = this.rooms.get(grace.room)?.get(grace.userId);
    return member && member.conns.length === 0 && member.graceUntil === grace.until ? member : null;
  }

  private add(room: string, member: Member<C>): void {
    let members = this.rooms.get(room);
    if (!members) this.rooms.set(room, (members = new Map()));
    members.set(member.user.id, member);
    // Not a member of `room` until now, so the room is not in its list yet.
    const rooms = this.roomsOf.get(member.user.id);
    if (rooms) rooms.push(room);
    else this.roomsOf.set(member.user.id, [room]);
  }

  private remove(room: string, userId: string): void {
    const members = this.rooms.get(room);
    if (!members?.delete(userId)) return;
    if (members.size === 0) this.rooms.delete(room);
    const rooms = this.roomsOf.get(userId);
    if (rooms && removeItem(rooms, room) && rooms.length === 0) this.roomsOf.delete(userId);
  }
}

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

// ─── Metrics and logs ─────────────────────────────────────────────────────────────────────────

/** Upper bounds of the storage write latency buckets, in seconds. */
const STORAGE_WRITE_BUCKETS_SECONDS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1];

export class Metrics {
  joins = 0;
  messagesIn = 0;
  messagesOut = 0;
  publishDrops = 0;
  backpressureCloses = 0;
  readonly errors = new Map<string, number>([...ERROR_CODES, LINE_TOO_LONG].map((code) => [code, 0]));
  private readonly writeBuckets = STORAGE_WRITE_BUCKETS_SECONDS.map(() => 0);
  private writeCount = 0;
  private writeSum = 0;

  error(code: string): void {
    this.errors.set(code, (this.errors.get(code) ?? 0) + 1);
  }

  storageWrite(seconds: number): void {
    this.writeCount++;
    this.writeSum += seconds;
    STORAGE_WRITE_BUCKETS_SECONDS.forEach((le, i) => {
      if (seconds <= le) this.writeBuckets[i]!++;
    });
  }

  /** Prometheus text exposition. */
  render(connections: number): string {
    const out: string[] = [];
    const metric = (name: string, type: string, help: string, lines: string[]) =>
      out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`, ...lines);
    metric("chat_connections", "gauge", "Open WebSocket and TCP connections.", [`chat_connections ${connections}`]);
    metric("chat_joins_total", "counter", "Rooms joined by connections.", [`chat_joins_total ${this.joins}`]);
    metric("chat_messages_in_total", "counter", "Valid send frames and TCP chat lines accepted.", [
      `chat_messages_in_total ${this.messagesIn}`,
    ]);
    metric("chat_messages_out_total", "counter", "Message deliveries, one per recipient connection.", [
      `chat_messages_out_total ${this.messagesOut}`,
    ]);
    metric(
      "chat_errors_total",
      "counter",
      "Error answers sent, by code.",
      [...this.errors].map(([code, n]) => `chat_errors_total{code="${code}"} ${n}`),
    );
    metric("chat_publish_drops_total", "counter", "Publishes or sends that Bun dropped for a subscriber.", [
      `chat_publish_drops_total ${this.publishDrops}`,
    ]);
    metric("chat_backpressure_closes_total", "counter", "Clients closed for not reading their output.", [
      `chat_backpressure_closes_total ${this.backpressureCloses}`,
    ]);
    metric("chat_storage_write_seconds", "histogram", "Time to commit one batch of messages.", [
      ...STORAGE_WRITE_BUCKETS_SECONDS.map((le, i) => `chat_storage_write_seconds_bucket{le="${le}"} ${this.writeBuckets[i]}`),
      `chat_storage_write_seconds_bucket{le="+Inf"} ${this.writeCount}`,
      `chat_storage_write_seconds_sum ${this.writeSum}`,
      `chat_storage_write_seconds_count ${this.writeCount}`,
    ]);
    return out.join("\n") + "\n";
  }
}

export type Log = (level: LogLevel, event: string, fields?: Record<string, unknown>) => void;

/** One JSON object per line, at `level` or above, to `sink`. */
export function createLogger(level: LogLevel, sink: (line: string) => void = console.log): Log {
  const min = LOG_LEVELS.indexOf(level);
  return function log(at, event, fields) {
    if (LOG_LEVELS.indexOf(at) < min) return;
    sink(JSON.stringify({ ts: new Date().toISOString(), level: at, event, ...fields }));
  };
}

// ─── Storage ──────────────────────────────────────────────────────────────────────────────────

/** A message accepted from a client, not yet stored. */
export interface NewMessage {
  room: string;
  user: UserRef;
  id: string;
  text: string;
  ts: number;
}

/** Which part of a room's history to read: after/before are exclusive seq bounds. */
export interface PageQuery {
  after?: number;
  before?: number;
  limit: number;
}

export interface Page {
  messages: MessageFrame[];
  /** No message exists beyond the page in the direction read (newer with `after`, else older). */
  complete: boolean;
}

/**
 * What `append` did with one message: stored it (or found it stored: `duplicate`, the original),
 * or refused it because a storage bound would break (§10 MAX_ROOMS: `room_limit`).
 */
export type Appended = { message: MessageFrame; duplicate: boolean } | { refused: "room_limit" };

/** The bounds an engine keeps its history in (config: HISTORY_RETAIN, MAX_ROOMS, HISTORY_MAX_AGE_DAYS). */
export interface HistoryBounds {
  /** Messages kept per room. */
  retain: number;
  /** Rooms that may hold history, i.e. have a retained message. */
  maxRooms: number;
  /** Messages older than this are trimmed; 0 keeps them. */
  maxAgeMs: number;
}

/** Milliseconds in a day, for HISTORY_MAX_AGE_DAYS. */
const DAY_MS = 86_400_000;

export function historyBounds(config: Config): HistoryBounds {
  return { retain: config.historyRetain, maxRooms: config.maxRooms, maxAgeMs: config.historyMaxAgeDays * DAY_MS };
}

/**
 * What the hub needs from a storage engine. Async so that an engine behind a network (Redis, to
 * run several instances) fits the same seam; the SQLite engine answers at once.
 */
export interface Store {
  /**
   * Stores a batch in one commit, in order. A message whose (room, user, id) is already stored,
   * or earlier in the batch, is not stored again: its result is the original, `duplicate: true`.
   * A message for a room that holds no history, while MAX_ROOMS rooms do, is refused: nothing
   * stored, no seq spent. Trims what HISTORY_RETAIN and HISTORY_MAX_AGE_DAYS push out of the rooms
   * it writes to (the age measured from the newest `ts` in the batch).
   */
  append(batch: readonly NewMessage[]): Promise<Appended[]>;
  /** The room's latest seq (0 if it never had a message) and its oldest retained seq (0 if none). */
  roomInfo(room: string): Promise<{ seq: number; oldestSeq: number }>;
  page(room: string, query: PageQuery): Promise<Page>;
  /**
   * Trims, in every room, the messages older than HISTORY_MAX_AGE_DAYS at `now`; returns how many
   * went. A room keeps its latest seq when its last message goes, so no seq is ever reused.
   */
  sweepHistory(now: number): Promise<number>;
  /** The rooms whose latest retained message is newest, with that message's seq and time. Read once, at start. */
  recentRooms(limit: number): Promise<{ room: string; seq: number; ts: number }[]>;
  /** The user a live session token hash belongs to, and when the session expires; or null. */
  findSession(tokenHash: string, now: number): Promise<{ userId: string; expiresAt: number } | null>;
  saveSession(tokenHash: string, userId: string, expiresAt: number): Promise<void>;
  sweepSessions(now: number): Promise<number>;
  /** Why the engine takes no more writes (its disk failed to sync); null while it is well. */
  failure(): string | null;
  close(): Promise<void>;
}

interface MessageRow {
  room: string;
  seq: number;
  user_id: string;
  user_name: string;
  client_id: string;
  text: string;
  ts: number;
}

function rowToMessage(r: MessageRow): MessageFrame {
  return { type: "message", room: r.room, seq: r.seq, id: r.client_id, user: { id: r.user_id, name: r.user_name }, text: r.text, ts: r.ts };
}

/** One write of a transaction (SqliteStore.write): the Store's writes, as data. */
type WriteOp =
  | { op: "append"; batch: readonly NewMessage[] }
  | { op: "session"; tokenHash: string; userId: string; expiresAt: number }
  | { op: "sweepSessions"; now: number }
  | { op: "sweepHistory"; now: number };

const SCHEMA = `
CREATE TABLE IF NOT EXISTS rooms (
  room TEXT PRIMARY KEY,
  last_seq INTEGER NOT NULL           -- never decreases, so a seq is never reused
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS messages (
  room TEXT NOT NULL,
  seq INTEGER NOT NULL,
  user_id TEXT NOT NULL,
  user_name TEXT NOT NULL,
  client_id TEXT NOT NULL,
  text TEXT NOT NULL,
  ts INTEGER NOT NULL,
  PRIMARY KEY (room, seq)
) WITHOUT ROWID;
-- The dedup key lives exactly as long as the message it points at.
CREATE UNIQUE INDEX IF NOT EXISTS messages_dedup ON messages (room, user_id, client_id);
CREATE TABLE IF NOT EXISTS sessions (
  token_hash TEXT PRIMARY KEY,        -- sha256 of the token; the token itself is never stored
  user_id TEXT NOT NULL,
  expires_at INTEGER NOT NULL
) WITHOUT ROWID;
PRAGMA user_version = 1;
`;

/**
 * fdatasync(2) on Bun's thread pool, the event loop going on meanwhile. It is what SQLite itself
 * calls to sync the WAL on Linux: the data and the file's size, without its times.
 */
function fsyncAsync(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fdatasync(fd, (error) => (error ? reject(error) : resolve())));
}

/** How often the checkpointer copies the WAL into the database file. */
const CHECKPOINT_INTERVAL_MS = 1000;
/**
 * The writer checkpoints by itself, stalling the event loop, only past this many WAL pages (40 MB):
 * when the checkpointer falls far behind. SQLite's default, restored if the checkpointer dies.
 */
const WAL_BACKSTOP_PAGES = 10_000;
const WAL_DEFAULT_CHECKPOINT_PAGES = 1000;
/**
 * Bounds the writer's page cache, in KiB (SQLite's default is 2 MiB). Each room written keeps its
 * newest pages (messages and dedup index) in memory between commits; at the default, 500 rooms
 * written at once re-read about one page per message from the file (bench: write-heavy, +9%).
 */
const SQLITE_CACHE_KIB = 16_384;
/**
 * Bounds the fsyncs of the WAL running at once. A commit that lands while one runs starts its own
 * at once instead of waiting for it to end (on the bench's disk two in flight nearly double the
 * syncs per second at the same latency); writes that land while all are busy commit together.
 */
const WAL_SYNCS_IN_FLIGHT = 2;

/**
 * The checkpointer's code: a thread with its own connection that runs a PASSIVE checkpoint every
 * interval. A checkpoint copies pages and fsyncs twice; in the writer's thread it stalled the
 * event loop after about every 4 MB written (under write-heavy load, after nearly every commit).
 * PASSIVE never blocks the writer. Plain JS in a Blob, so `bun build --compile` needs no entrypoint.
 */
const CHECKPOINTER_SOURCE = `
import { Database } from "bun:sqlite";
let db = null, timer = null;
self.onmessage = ({ data }) => {
  if (data.path) {
    db = new Database(data.path, { readwrite: true, create: false });
    // The first read opens the WAL; a checkpoint before it would find nothing to copy.
    db.exec("PRAGMA busy_timeout = 5000; PRAGMA journal_mode;");
    timer = setInterval(() => db.exec("PRAGMA wal_checkpoint(PASSIVE)"), data.intervalMs);
    return;
  }
  clearInterval(timer);
  db?.close();
  postMessage("closed");
};
`;

type Refable = { ref(): void; unref(): void };

function startCheckpointer(path: string, died: () => void): Worker {
  const worker = new Worker(URL.createObjectURL(new Blob([CHECKPOINTER_SOURCE], { type: "text/javascript" })));
  worker.onerror = died;
  // It must not keep a process alive whose store nobody closed. (Bun's Worker; the DOM type lacks ref.)
  (worker as Worker & Refable).unref();
  worker.postMessage({ path, intervalMs: CHECKPOINT_INTERVAL_MS });
  return worker;
}

async function stopCheckpointer(worker: Worker | null): Promise<void> {
  if (!worker) return;
  // Held by the process until it answers: at shutdown nothing else may be keeping it alive.
  (worker as Worker & Refable).ref();
  await new Promise<void>((resolve) => {
    worker.onmessage = () => resolve();
    worker.onerror = () => resolve();
    worker.postMessage({});
  });
  worker.terminate();
}

type Waiter = { ops: readonly WriteOp[]; resolve: (results: unknown[]) => void; reject: (error: unknown) => void };

/** Hands each write of a committed group its own slice of the transaction's results. */
function resolveGroup(group: readonly Waiter[], results: readonly unknown[]): void {
  let at = 0;
  for (const w of group) w.resolve(results.slice(at, (at += w.ops.length)));
}

/**
 * The embedded engine, durable without blocking the event loop. A commit is on disk before
 * anyone is told of it, so neither a killed process nor a lost machine loses what a client saw.
 *
 * SQLite's synchronous=FULL in WAL mode is synchronous=NORMAL plus one fsync of the WAL after each
 * commit, made while the event loop waits. We run NORMAL (SQLite still syncs around checkpoints
 * and when the WAL is reused) and make that fsync ourselves, on Bun's thread pool: the commit
 * writes to the page cache in microseconds, the event loop goes on parsing and publishing, and
 * a write's promise resolves only once an fsync that started after its commit has returned, and
 * every earlier commit's has too. Up to WAL_SYNCS_IN_FLIGHT fsyncs run at once; writes that land
 * while all are busy share the next one (group commit, for messages and sessions alike). Reads in
 * between may see a commit not yet on disk; the hub publishes only what its writes' promises
 * returned, so nobody is told of it before it is durable.
 */
export class SqliteStore implements Store {
  private readonly db: Database;
  private readonly bounds: HistoryBounds;
  private readonly q;
  private readonly writeTx;
  /**
   * Rooms that hold history, for MAX_ROOMS: counted at the first write, then moved by each commit
   * and sweep (null: count again). It is the engine's only per-database state in memory: seqs are
   * read inside each transaction, so nothing here grows with the rooms ever named.
   */
  private heldRooms: number | null = null;
  /** heldRooms as the running transaction moves it; kept only if it commits. */
  private held = 0;
  /** The WAL file (null for :memory:, which has nothing to sync). */
  private readonly walPath: string | null;
  /**
   * Descriptors of the WAL not in use, opened as needed: one per fsync in flight. Linux reports a
   * writeback error once to each open file, so with a shared descriptor one sync could take the
   * error of the other's pages and leave that one reporting success.
   */
  private readonly idleFds: number[] = [];
  /** The fsyncs in flight (at most WAL_SYNCS_IN_FLIGHT). */
  private readonly syncing = new Set<Promise<void>>();
  private checkpointer: Worker | null = null;
  /** Writes waiting for an fsync to end; they commit together, then share the next. */
  private waiting: Waiter[] = [];
  /** Committed groups whose fsync has not returned, oldest first; each resolves after those before it. */
  private unsynced: { group: Waiter[]; results: unknown[]; synced: boolean }[] = [];
  /**
   * Set when an fsync of the WAL failed. From then on what is on disk is unknown (Linux may drop
   * the failed pages and report success next time), and a later commit that did sync would be
   * published past one that never was. So the engine stops: no write is taken until a restart,
   * which reads back what the disk really holds (PostgreSQL's answer to the same failure).
   */
  private broken: Error | null = null;

  constructor(
    path: string,
    retain: number,
    bounds: Partial<Omit<HistoryBounds, "retain">> = {},
    /** Flushes a file to disk; tests pass one they can hold. */
    private readonly sync: (fd: number) => Promise<void> = fsyncAsync,
  ) {
    if (path !== ":memory:") mkdirSync(dirname(path), { recursive: true });
    this.bounds = { ...historyBounds(DEFAULTS), ...bounds, retain };
    this.db = new Database(path, { create: true, strict: true });
    this.db.exec("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000;");
    this.db.exec(`PRAGMA cache_size = -${SQLITE_CACHE_KIB}`);
    this.walPath = path === ":memory:" ? null : `${path}-wal`;
    if (this.walPath) {
      // The checkpointer folds the WAL into the database; this connection does so only as a backstop.
      this.db.exec(`PRAGMA wal_autocheckpoint = ${WAL_BACKSTOP_PAGES}`);
      this.checkpointer = startCheckpointer(path, () => {
        this.checkpointer = null;
        this.db.exec(`PRAGMA wal_autocheckpoint = ${WAL_DEFAULT_CHECKPOINT_PAGES}`);
      });
    }
    this.db.exec(SCHEMA);
    const columns = "room, seq, user_id, user_name, client_id, text, ts";
    this.q = {
      roomInfo: this.db.query<{ seq: number | null; oldest: number | null }, [string]>(
        "SELECT (SELECT last_seq FROM rooms WHERE room = ?1) AS seq, (SELECT seq FROM messages WHERE room = ?1 ORDER BY seq LIMIT 1) AS oldest",
      ),
      oldest: this.db.query<{ seq: number }, [string]>("SELECT seq FROM messages WHERE room = ? ORDER BY seq LIMIT 1"),
      /** What a commit needs of the rooms it writes to (a JSON array): latest seq, oldest message if any. */
      roomRows: this.db.query<{ room: string; last: number | null; oldest: number | null; oldestTs: number | null }, [string]>(
        "SELECT j.value AS room, r.last_seq AS last, m.seq AS oldest, m.ts AS oldestTs FROM json_each(?) j " +
          "LEFT JOIN rooms r ON r.room = j.value " +
          "LEFT JOIN messages m ON m.room = j.value AND m.seq = (SELECT seq FROM messages WHERE room = j.value ORDER BY seq LIMIT 1)",
      ),
      dedup: this.db.query<MessageRow, [string, string, string]>(
        `SELECT ${columns} FROM messages WHERE room = ? AND user_id = ? AND client_id = ?`,
      ),
      // A repeated (room, user, id) stores nothing: the caller then reads the original.
      insert: this.db.query(
        `INSERT INTO messages (${columns}) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (room, user_id, client_id) DO NOTHING`,
      ),
      /** Moves every written room's last_seq at once: a JSON array of [room, seq]. */
      setSeqs: this.db.query(
        "INSERT INTO rooms (room, last_seq) SELECT value ->> 0, value ->> 1 FROM json_each(?) WHERE true " +
          "ON CONFLICT (room) DO UPDATE SET last_seq = excluded.last_seq",
      ),
      trim: this.db.query("DELETE FROM messages WHERE room = ? AND seq <= ?"),
      // A room's messages are in seq order and, the clock going forward, in ts order too: trimming
      // by age walks from its oldest to the first one young enough.
      trimAge: this.db.query(
        "DELETE FROM messages WHERE room = ?1 AND seq < coalesce(" +
          "(SELECT seq FROM messages WHERE room = ?1 AND ts >= ?2 ORDER BY seq LIMIT 1), 9007199254740991)",
      ),
      agedRooms: this.db.query<{ room: string }, [number]>(
        "SELECT room FROM rooms r WHERE (SELECT ts FROM messages m WHERE m.room = r.room ORDER BY seq LIMIT 1) < ?",
      ),
      heldRooms: this.db.query<{ n: number }, []>(
        "SELECT count(*) AS n FROM rooms r WHERE EXISTS (SELECT 1 FROM messages m WHERE m.room = r.room)",
      ),
      newest: this.db.query<MessageRow, [string, number, number]>(
        `SELECT ${columns} FROM messages WHERE room = ? AND seq < ? ORDER BY seq DESC LIMIT ?`,
      ),
      after: this.db.query<MessageRow, [string, number, number, number]>(
        `SELECT ${columns} FROM messages WHERE room = ? AND seq > ? AND seq < ? ORDER BY seq LIMIT ?`,
      ),
      findSession: this.db.query<{ user_id: string; expires_at: number }, [string, number]>(
        "SELECT user_id, expires_at FROM sessions WHERE token_hash = ? AND expires_at > ?",
      ),
      saveSession: this.db.query(
        "INSERT INTO sessions (token_hash, user_id, expires_at) VALUES (?, ?, ?) " +
          "ON CONFLICT (token_hash) DO UPDATE SET user_id = excluded.user_id, expires_at = excluded.expires_at",
      ),
      sweepSessions: this.db.query("DELETE FROM sessions WHERE expires_at <= ?"),
      recent: this.db.query<{ room: string; seq: number; ts: number }, [number]>(
        "SELECT m.room, m.seq, m.ts FROM rooms r JOIN messages m ON m.room = r.room AND m.seq = r.last_seq ORDER BY m.ts DESC LIMIT ?",
      ),
    };
    this.writeTx = this.db.transaction((ops: readonly WriteOp[]) => {
      this.held = this.heldRooms ?? this.q.heldRooms.get()!.n;
      return ops.map((op) => {
        switch (op.op) {
          case "append":
            return this.appendRows(op.batch);
          case "session":
            return void this.q.saveSession.run(op.tokenHash, op.userId, op.expiresAt);
          case "sweepSessions":
            return this.q.sweepSessions.run(op.now).changes;
          case "sweepHistory":
            return this.trimAged(op.now);
        }
      });
    });
  }

  /**
   * Runs writes and resolves with their results, in order, once they are on disk; or rejects:
   * nothing of them was stored, or (the disk failed to sync) it is not known, and the engine
   * takes no more writes. With fewer than WAL_SYNCS_IN_FLIGHT fsyncs under way they commit at
   * once and start their own; otherwise they wait for one to end and commit in one transaction
   * with every write that came meanwhile (messages and sessions alike), then share one fsync:
   * group commit.
   */
  write(ops: readonly WriteOp[]): Promise<unknown[]> {
    if (this.broken) return Promise.reject(this.broken);
    return new Promise((resolve, reject) => {
      this.waiting.push({ ops, resolve, reject });
      this.commitWaiting();
    });
  }

  private commitWaiting(): void {
    while (this.waiting.length && this.syncing.size < WAL_SYNCS_IN_FLIGHT && !this.broken) {
      const group = this.waiting;
      this.waiting = [];
      let results: unknown[];
      try {
        results = this.writeTx(group.flatMap((w) => w.ops));
        this.heldRooms = this.held;
      } catch (error) {
        for (const w of group) w.reject(error);
        continue;
      }
      if (!this.walPath) {
        resolveGroup(group, results);
        continue;
      }
      const fd = this.idleFds.pop() ?? openSync(this.walPath, "r");
      const entry = { group, results, synced: false };
      this.unsynced.push(entry);
      // A sync flushes the file, whoever wrote it: SQLite's own handle needs no sharing. It
      // covers every commit before it started, but a group resolves only once its own sync and
      // every earlier one have returned: published in commit order, and never past a failure.
      const syncing = this.sync(fd).finally(() => {
        this.idleFds.push(fd);
        this.syncing.delete(syncing);
      });
      this.syncing.add(syncing);
      syncing.then(
        () => {
          entry.synced = true;
          while (this.unsynced[0]?.synced) {
            const done = this.unsynced.shift()!;
            resolveGroup(done.group, done.results);
          }
          this.commitWaiting();
        },
        (error) => this.stop(new Error(`the disk failed to sync the database: ${String(error)}`)),
      );
    }
  }

  private stop(broken: Error): void {
    if (this.broken) return;
    this.broken = broken;
    for (const w of [...this.unsynced.flatMap((u) => u.group), ...this.waiting]) w.reject(broken);
    this.unsynced = [];
    this.waiting = [];
  }

  private appendRows(batch: readonly NewMessage[]): Appended[] {
    const results: Appended[] = [];
    /** Per room written: its seq so far, whether it holds history, its oldest retained seq. */
    const rooms = new Map<string, { seq: number; held: boolean; oldest: number }>();
    const inBatch = new Map<string, MessageFrame>();
    let held = this.held;
    const cutoff = this.bounds.maxAgeMs ? Math.max(...batch.map((m) => m.ts)) - this.bounds.maxAgeMs : -Infinity;
    // One statement reads every room of the batch, one moves their seqs: not one each per room.
    for (const row of this.q.roomRows.all(JSON.stringify([...new Set(batch.map((m) => m.room))]))) {
      let oldest = row.oldest ?? 0;
      if (row.oldestTs !== null && row.oldestTs < cutoff) {
        this.q.trimAge.run(row.room, cutoff);
        oldest = this.q.oldest.get(row.room)?.seq ?? 0;
        if (!oldest) held--;
      }
      rooms.set(row.room, { seq: row.last ?? 0, held: oldest > 0, oldest });
    }
    for (const m of batch) {
      const room = rooms.get(m.room)!;
      // Rooms and user ids hold no newline, so the id, last, cannot blur the key.
      const key = `${m.room}\n${m.user.id}\n${m.id}`;
      const earlier = inBatch.get(key);
      if (earlier) {
        results.push({ message: earlier, duplicate: true });
        continue;
      }
      if (!room.held && held >= this.bounds.maxRooms) {
        results.push({ refused: "room_limit" });
        continue;
      }
      const seq = room.seq + 1;
      if (this.q.insert.run(m.room, seq, m.user.id, m.user.name, m.id, m.text, m.ts).changes === 0) {
        const original = rowToMessage(this.q.dedup.get(m.room, m.user.id, m.id)!);
        inBatch.set(key, original);
        results.push({ message: original, duplicate: true });
        continue;
      }
      if (!room.held) {
        room.held = true;
        room.oldest = seq;
        held++;
      }
      room.seq = seq;
      const message: MessageFrame = { type: "message", room: m.room, seq, id: m.id, user: { ...m.user }, text: m.text, ts: m.ts };
      inBatch.set(key, message);
      results.push({ message, duplicate: false });
    }
    const seqs: [string, number][] = [];
    for (const [name, room] of rooms) {
      if (!room.held) continue;
      seqs.push([name, room.seq]);
      // Only a room that is full has something to trim: usually one row, at its oldest end.
      if (room.oldest <= room.seq - this.bounds.retain) this.q.trim.run(name, room.seq - this.bounds.retain);
    }
    if (seqs.length) this.q.setSeqs.run(JSON.stringify(seqs));
    this.held = held;
    return results;
  }

  private trimAged(now: number): number {
    if (!this.bounds.maxAgeMs) return 0;
    let trimmed = 0;
    for (const { room } of this.q.agedRooms.all(now - this.bounds.maxAgeMs)) {
      trimmed += this.q.trimAge.run(room, now - this.bounds.maxAgeMs).changes;
    }
    if (trimmed) this.held = this.q.heldRooms.get()!.n;
    return trimmed;
  }

  async append(batch: readonly NewMessage[]) {
    return (await this.write([{ op: "append", batch }]))[0] as Appended[];
  }

  async roomInfo(room: string) {
    const row = this.q.roomInfo.get(room)!;
    return { seq: row.seq ?? 0, oldestSeq: row.oldest ?? 0 };
  }

  async page(room: string, query: PageQuery): Promise<Page> {
    const before = query.before ?? Number.MAX_SAFE_INTEGER;
    // One row past the limit tells whether the page is complete.
    const rows =
      query.after === undefined
        ? this.q.newest.all(room, before, query.limit + 1)
        : this.q.after.all(room, query.after, before, query.limit + 1);
    const complete = rows.length <= query.limit;
    const page = rows.slice(0, query.limit);
    if (query.after === undefined) page.reverse();
    return { messages: page.map(rowToMessage), complete };
  }

  async sweepHistory(now: number) {
    return (await this.write([{ op: "sweepHistory", now }]))[0] as number;
  }

  async recentRooms(limit: number) {
    return this.q.recent.all(limit);
  }

  async findSession(tokenHash: string, now: number) {
    const row = this.q.findSession.get(tokenHash, now);
    return row ? { userId: row.user_id, expiresAt: row.expires_at } : null;
  }

  async saveSession(tokenHash: string, userId: string, expiresAt: number) {
    await this.write([{ op: "session", tokenHash, userId, expiresAt }]);
  }

  async sweepSessions(now: number) {
    return (await this.write([{ op: "sweepSessions", now }]))[0] as number;
  }

  failure(): string | null {
    return this.broken?.message ?? null;
  }

  async close() {
    // What was committed reaches the disk, and its writers hear so, before the file closes.
    while (this.unsynced.length && !this.broken) await this.write([]);
    await stopCheckpointer(this.checkpointer);
    this.checkpointer = null;
    this.db.close();
    // After a failure the other sync may still run on its descriptor.
    await Promise.allSettled(this.syncing);
    for (const fd of this.idleFds.splice(0)) closeSync(fd);
  }
}

/** Bounds each attempt of a Redis command that lost its connection (then it is sent again). */
const REDIS_ATTEMPTS = 3;
/** Bounds the wait for Bun's client to reconnect before a command is sent again or fails. */
const REDIS_RECONNECT_WAIT_MS = 2000;
/** Bun's own reconnect attempts (50 ms doubling, at most 2 s apart) before it gives up and we take over. */
const REDIS_CLIENT_RETRIES = 5;
/** How often a connection Bun gave up on is connected again (Bun never does it by itself). */
const REDIS_REVIVE_INTERVAL_MS = 1000;
/** Bounds opening a Redis connection, at start and when reviving it. */
const REDIS_CONNECT_TIMEOUT_MS = 5000;
/** Bounds the rooms Redis remembers for the room directory (`/api/rooms?recent=1`). */
const REDIS_RECENT_ROOMS_KEPT = 1000;
/** Bounds the messages a script decodes at once while it looks for the first one young enough. */
const REDIS_TRIM_CHUNK = 100;
/** Bounds the aged rooms one read of the sweep takes (it reads again until none are left). */
const REDIS_SWEEP_ROOMS = 1000;

/** Where a room's data lives in Redis; the room pattern keeps these keys free of separators. */
const redisKeys = (room: string) => ({
  seq: `chat:room:${room}:seq`,
  log: `chat:room:${room}:log`,
  ids: `chat:room:${room}:ids`,
  channel: `chat:room:${room}`,
});
const REDIS_RECENT_KEY = "chat:recent";
/**
 * The rooms that hold history (MAX_ROOMS counts them: ZCARD), scored by their oldest retained
 * message's time (HISTORY_MAX_AGE_DAYS finds the aged ones: ZRANGEBYSCORE). Only the scripts
 * below move it, in the same step as the history, so it is right on every instance and, with
 * AOF, after a restart.
 */
const REDIS_HELD_KEY = "chat:held";
const redisSessionKey = (tokenHash: string) => `chat:session:${tokenHash}`;

/**
 * What APPEND_SCRIPT and TRIM_SCRIPT share: keeping a room's entry in REDIS_HELD_KEY right, and
 * trimming its messages older than a cutoff (with their dedup keys). A room's messages are in
 * seq order and, the clock going forward, in ts order too: trimming walks from its oldest to the
 * first one young enough.
 */
const TRIM_LUA = `
local function decoded(member)
  return cjson.decode(string.sub(member, string.find(member, ':', 1, true) + 1))
end
local function syncHeld(log, held, room)
  local oldest = redis.call('ZRANGE', log, 0, 0)
  if oldest[1] then
    redis.call('ZADD', held, decoded(oldest[1]).ts, room)
  else
    redis.call('ZREM', held, room)
  end
end
local function trimAged(log, ids, held, room, cutoff)
  local oldestTs = redis.call('ZSCORE', held, room)
  if not oldestTs or tonumber(oldestTs) >= cutoff then return 0 end
  local n = 0
  local young = false
  repeat
    local chunk = redis.call('ZRANGE', log, n, n + ${REDIS_TRIM_CHUNK} - 1)
    for _, member in ipairs(chunk) do
      local m = decoded(member)
      if m.ts >= cutoff then young = true break end
      redis.call('HDEL', ids, m.user.id .. '\\n' .. m.id)
      n = n + 1
    end
  until young or #chunk < ${REDIS_TRIM_CHUNK}
  if n > 0 then redis.call('ZREMRANGEBYRANK', log, 0, n - 1) end
  syncHeld(log, held, room)
  return n
end
`;

/**
 * Appends one message, atomically (Redis runs a script alone and does not roll one back, so
 * every check comes before the first write of the message).
 *   KEYS[1] the room's seq counter (never decreases: with AOF it survives restarts)
 *   KEYS[2] the room's history: a sorted set scored by seq, members "seq:json"
 *   KEYS[3] the room's dedup hash: "userId\nclientId" → seq, dropped with the message it points at
 *   KEYS[4] the room directory: a sorted set of rooms scored by their latest message's time
 *   KEYS[5] REDIS_HELD_KEY
 *   ARGV[1] the dedup field   ARGV[2] the message as JSON, without its seq   ARGV[3] HISTORY_RETAIN
 *   ARGV[4] the room's channel   ARGV[5] the message's time   ARGV[6] the room   ARGV[7] rooms kept
 *   ARGV[8] MAX_ROOMS   ARGV[9] messages older than this are trimmed first ("" keeps them)
 * Returns {1, member} with the original of a repeated key; {2} when MAX_ROOMS refuses it (nothing
 * of it stored, no seq spent); else {0, member} after publishing it.
 */
const APPEND_SCRIPT = `${TRIM_LUA}
local room = ARGV[6]
local cutoff = tonumber(ARGV[9])
if cutoff then trimAged(KEYS[2], KEYS[3], KEYS[5], room, cutoff) end
local known = redis.call('HGET', KEYS[3], ARGV[1])
if known then
  local original = redis.call('ZRANGEBYSCORE', KEYS[2], known, known)
  if original[1] then return {1, original[1]} end
end
local held = redis.call('ZSCORE', KEYS[5], room)
if not held and redis.call('EXISTS', KEYS[2]) == 1 then
  -- History written before the index existed: the room counts from now on.
  syncHeld(KEYS[2], KEYS[5], room)
  held = true
end
if not held and redis.call('ZCARD', KEYS[5]) >= tonumber(ARGV[8]) then return {2} end
local retain = tonumber(ARGV[3])
local seq = redis.call('INCR', KEYS[1])
local member = seq .. ':' .. ARGV[2]
redis.call('ZADD', KEYS[2], seq, member)
redis.call('HSET', KEYS[3], ARGV[1], seq)
local excess = redis.call('ZCARD', KEYS[2]) - retain
if excess > 0 then
  for _, old in ipairs(redis.call('ZRANGE', KEYS[2], 0, excess - 1)) do
    local m = decoded(old)
    redis.call('HDEL', KEYS[3], m.user.id .. '\\n' .. m.id)
  end
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, excess - 1)
end
if not held then
  redis.call('ZADD', KEYS[5], ARGV[5], room)
elseif excess > 0 and cutoff then
  -- Without an age bound the score may lag (older than the room's oldest): the first sweep
  -- after one is set visits the room, finds nothing to trim and sets it right.
  syncHeld(KEYS[2], KEYS[5], room)
end
redis.call('ZADD', KEYS[4], ARGV[5], room)
redis.call('ZREMRANGEBYRANK', KEYS[4], 0, -1 - tonumber(ARGV[7]))
redis.call('PUBLISH', ARGV[4], member)
return {0, member}
`;

/**
 * Trims one room's messages older than a cutoff (HISTORY_MAX_AGE_DAYS, for quiet rooms).
 *   KEYS[1] the room's history   KEYS[2] its dedup hash   KEYS[3] REDIS_HELD_KEY
 *   ARGV[1] the room   ARGV[2] the cutoff
 * Returns how many messages went; the room's seq counter is left alone, so no seq is reused.
 */
const TRIM_SCRIPT = `${TRIM_LUA}
return trimAged(KEYS[1], KEYS[2], KEYS[3], ARGV[1], tonumber(ARGV[2]))
`;

/** A stored message as Redis holds and publishes it: `seq:json`, the JSON without the seq. */
function encodeMember(m: NewMessage): string {
  return JSON.stringify({ room: m.room, id: m.id, user: { id: m.user.id, name: m.user.name }, text: m.text, ts: m.ts });
}

export function decodeMember(member: string): MessageFrame {
  const at = member.indexOf(":");
  const m = JSON.parse(member.slice(at + 1));
  return { type: "message", room: m.room, seq: Number(member.slice(0, at)), id: m.id, user: { id: m.user.id, name: m.user.name }, text: m.text, ts: m.ts };
}

const isConnectionClosed = (error: unknown) => (error as { code?: string })?.code === "ERR_REDIS_CONNECTION_CLOSED";

/**
 * One connection to Redis, supervised. Bun's client reconnects by itself a few times and then
 * stays closed for good until connect() is called; this calls it again until Redis is back.
 * No offline queue: while Redis is away a command fails at once instead of piling up.
 */
class RedisLink {
  readonly client: RedisClient;
  /** Bun gave up reconnecting; the supervisor connects again. */
  private gaveUp = false;
  private reviving: Promise<void> | null = null;
  private readonly waiters = new Set<() => void>();
  private readonly supervisor: ReturnType<typeof setInterval>;
  /** Runs on every (re)connection, after the first. */
  onreconnect: (() => void) | null = null;
  private opened = false;
  private closing = false;
  /** Scripts loaded into Redis, by source. */
  private readonly shas = new Map<string, string>();

  constructor(
    url: string,
    private readonly name: string,
    private readonly log: Log,
  ) {
    this.client = new RedisClient(url, {
      enableOfflineQueue: false,
      maxRetries: REDIS_CLIENT_RETRIES,
      connectionTimeout: REDIS_CONNECT_TIMEOUT_MS,
    });
    this.client.onconnect = () => {
      this.gaveUp = false;
      for (const wake of [...this.waiters]) wake();
      if (this.opened) {
        this.log("info", "redis_connected", { link: this.name });
        this.onreconnect?.();
      }
      this.opened = true;
    };
    this.client.onclose = (error) => {
      // Before the first connection, open() rejects and says why.
      if (this.closing || !this.opened) return;
      this.gaveUp = true;
      this.log("warn", "redis_closed", { link: this.name, error: String(error) });
    };
    this.supervisor = setInterval(() => this.revive(), REDIS_REVIVE_INTERVAL_MS);
  }

  get connected(): boolean {
    return this.client.connected;
  }

  /** The first connection; rejects when Redis cannot be reached. */
  async open(): Promise<void> {
    await this.client.connect();
  }

  private revive(): void {
    if (!this.gaveUp || this.reviving || this.closing) return;
    this.reviving = this.client
      .connect()
      .catch(() => {})
      .finally(() => (this.reviving = null));
  }

  /** Resolves when connected, or after `ms` anyway. */
  private whenConnected(ms: number): Promise<void> {
    if (this.client.connected) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.waiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.waiters.add(done);
    });
  }

  /**
   * Sends a command; one that lost its connection is sent again once the client is back (every
   * command we send may run twice: appends carry a dedup key, the rest are idempotent).
   */
  async send(command: string, args: string[], resent?: () => void): Promise<any> {
    return this.retrying(() => this.client.send(command, args), resent);
  }

  /**
   * Subscribes `listener` to `channel` exactly once, once the connection is back if it was away.
   * Bun calls a listener once per subscribe, and after a reconnect it believes it is subscribed
   * while Redis has forgotten: so the channel is dropped first, whatever Bun believes.
   */
  subscribeOnce(channel: string, listener: RedisClient.StringPubSubListener): Promise<number> {
    return this.retrying(async () => {
      try {
        await this.client.unsubscribe(channel);
      } catch (error) {
        // Bun refuses at once when nothing is subscribed: then there is nothing to drop.
        if ((error as { code?: string })?.code !== "ERR_REDIS_INVALID_STATE") throw error;
      }
      return this.client.subscribe(channel, listener);
    });
  }

  private async retrying<T>(command: () => Promise<T>, resent?: () => void): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await command();
      } catch (error) {
        if (!isConnectionClosed(error) || attempt >= REDIS_ATTEMPTS) throw error;
        await this.whenConnected(REDIS_RECONNECT_WAIT_MS);
        resent?.();
      }
    }
  }

  /**
   * Runs a script by its SHA, loading it once (and again after a Redis restart forgot it).
   * `resent` hears when it is sent again after a lost connection: the first may have run.
   */
  async run(script: string, keys: string[], args: string[], resent?: () => void): Promise<any> {
    for (let attempt = 1; ; attempt++) {
      let sha = this.shas.get(script);
      if (!sha) this.shas.set(script, (sha = String(await this.send("SCRIPT", ["LOAD", script]))));
      try {
        return await this.send("EVALSHA", [sha, String(keys.length), ...keys, ...args], resent);
      } catch (error) {
        if (!String((error as Error)?.message).includes("NOSCRIPT") || attempt >= REDIS_ATTEMPTS) throw error;
        this.shas.delete(script);
      }
    }
  }

  close(): void {
    this.closing = true;
    clearInterval(this.supervisor);
    for (const wake of [...this.waiters]) wake();
    this.client.close();
  }
}

/**
 * The Redis engine's storage: history, seq, dedup keys, sessions and the room directory, shared
 * by every instance. Each append runs APPEND_SCRIPT, which also publishes the message to the
 * room's channel: that publish is the only way it reaches sockets, on every instance alike
 * (see RedisRelay). Durability is Redis's: with `appendonly yes` and `appendfsync always` a
 * message is on disk before anyone sees it; `everysec` may lose the last second on a crash.
 */
export class RedisStore implements Store {
  constructor(
    private readonly link: RedisLink,
    private readonly bounds: HistoryBounds,
    /** The hub's clock: a session's expiry, given in its time, becomes the key's TTL. */
    private readonly now: () => number,
    /** Resolves once this instance's relay has heard `seq` in `room` (or gave up waiting). */
    private readonly heard: (room: string, seq: number) => Promise<void>,
  ) {}

  /**
   * A repeat found by our own resend means the first send ran, and published: it is news to
   * everyone, the sender included, through the relay; so it is not reported as a duplicate.
   */
  private async appendOne(m: NewMessage, cutoff: number | null): Promise<Appended> {
    const keys = redisKeys(m.room);
    let resent = false;
    const [outcome, member]: [number, string?] = await this.link.run(
      APPEND_SCRIPT,
      [keys.seq, keys.log, keys.ids, REDIS_RECENT_KEY, REDIS_HELD_KEY],
      [
        `${m.user.id}\n${m.id}`, encodeMember(m), String(this.bounds.retain), keys.channel, String(m.ts), m.room,
        String(REDIS_RECENT_ROOMS_KEPT), String(this.bounds.maxRooms), cutoff === null ? "" : String(cutoff),
      ],
      () => (resent = true),
    );
    if (outcome === 2) return { refused: "room_limit" };
    return { message: decodeMember(member!), duplicate: outcome === 1 && !resent };
  }

  /**
   * Sent together (one pipelined write; Redis runs them in order), answered together. Resolves
   * after this instance's relay has heard the new messages, so "stored and published" means
   * what it means with one process: a leave that waits for it comes after them.
   */
  async append(batch: readonly NewMessage[]) {
    // As SQLite does: the age is measured from the newest message of the batch.
    const cutoff = this.bounds.maxAgeMs && batch.length ? Math.max(...batch.map((m) => m.ts)) - this.bounds.maxAgeMs : null;
    const results = await Promise.all(batch.map((m) => this.appendOne(m, cutoff)));
    const newest = new Map<string, number>();
    for (const r of results) if ("message" in r && !r.duplicate) newest.set(r.message.room, r.message.seq);
    await Promise.all([...newest].map(([room, seq]) => this.heard(room, seq)));
    return results;
  }

  async roomInfo(room: string) {
    const keys = redisKeys(room);
    const [seq, oldest] = await Promise.all([this.link.send("GET", [keys.seq]), this.link.send("ZRANGE", [keys.log, "0", "0"])]);
    return { seq: Number(seq ?? 0), oldestSeq: oldest?.[0] ? decodeMember(oldest[0]).seq : 0 };
  }

  async page(room: string, query: PageQuery): Promise<Page> {
    const log = redisKeys(room).log;
    const before = query.before === undefined ? "+inf" : `(${query.before}`;
    const n = String(query.limit + 1);
    // One past the limit tells whether the page is complete.
    const members: string[] =
      query.after === undefined
        ? await this.link.send("ZREVRANGEBYSCORE", [log, before, "-inf", "LIMIT", "0", n])
        : await this.link.send("ZRANGEBYSCORE", [log, `(${query.after}`, before, "LIMIT", "0", n]);
    const complete = members.length <= query.limit;
    const page = members.slice(0, query.limit).map(decodeMember);
    if (query.after === undefined) page.reverse();
    return { messages: page, complete };
  }

  async recentRooms(limit: number) {
    const rooms: string[] = await this.link.send("ZREVRANGE", [REDIS_RECENT_KEY, "0", String(limit - 1)]);
    const entries = await Promise.all(
      rooms.map(async (room) => {
        const newest: string[] = await this.link.send("ZRANGE", [redisKeys(room).log, "-1", "-1"]);
        return newest[0] ? decodeMember(newest[0]) : null;
      }),
    );
    return entries.filter((m) => m !== null).map((m) => ({ room: m.room, seq: m.seq, ts: m.ts }));
  }

  async findSession(tokenHash: string, now: number) {
    const value: string | null = await this.link.send("GET", [redisSessionKey(tokenHash)]);
    if (!value) return null;
    const at = value.indexOf(" ");
    const expiresAt = Number(value.slice(0, at));
    return expiresAt > now ? { userId: value.slice(at + 1), expiresAt } : null;
  }

  /**
   * Redis forgets it when it expires (a new session a day after it was made, until it is used
   * again); the expiry stored with it is what counts, on the hub's clock.
   */
  async saveSession(tokenHash: string, userId: string, expiresAt: number) {
    const ttlMs = Math.max(1, expiresAt - this.now());
    await this.link.send("SET", [redisSessionKey(tokenHash), `${expiresAt} ${userId}`, "PX", String(ttlMs)]);
  }

  /** Redis expires sessions by itself. */
  async sweepSessions(_now: number) {
    return 0;
  }

  /**
   * REDIS_HELD_KEY names the rooms whose oldest message is too old; each is trimmed by its own
   * script, which moves it out of that range (or out of the index), so each read finds fewer.
   */
  async sweepHistory(now: number) {
    if (!this.bounds.maxAgeMs) return 0;
    const cutoff = now - this.bounds.maxAgeMs;
    let trimmed = 0;
    const reads = Math.ceil(Number(await this.link.send("ZCARD", [REDIS_HELD_KEY])) / REDIS_SWEEP_ROOMS) + 1;
    for (let read = 0; read < reads; read++) {
      const rooms: string[] = await this.link.send("ZRANGEBYSCORE", [REDIS_HELD_KEY, "-inf", `(${cutoff}`, "LIMIT", "0", String(REDIS_SWEEP_ROOMS)]);
      if (!rooms.length) break;
      const counts = await Promise.all(
        rooms.map((room) => {
          const keys = redisKeys(room);
          return this.link.run(TRIM_SCRIPT, [keys.log, keys.ids, REDIS_HELD_KEY], [room, String(cutoff)]);
        }),
      );
      for (const n of counts) trimmed += Number(n);
    }
    return trimmed;
  }

  /** Redis's own failures show as the link being down (Relay.health). */
  failure(): null {
    return null;
  }

  async close() {
    this.link.close();
  }
}

/** Bounds the messages committed in one transaction, so one commit never runs long. */
const BATCH_MAX_MESSAGES = 1000;

type Queued = { message: NewMessage; from: Connection } | { settled: () => void };

/**
 * Group commit. Sends that arrive together (in one turn of the event loop, or while a commit is
 * running) are stored in one transaction; each is published only after that transaction commits,
 * in arrival order. Under light load a batch is one message and waits one setImmediate; under
 * heavy load batches grow and the per-message cost of a commit shrinks.
 */
class Batcher {
  private queue: Queued[] = [];
  private running: Promise<void> | null = null;

  constructor(
    private readonly store: Store,
    private readonly committed: (message: MessageFrame, duplicate: boolean, from: Connection, sent: NewMessage) => void,
    private readonly failed: (from: Connection, message: NewMessage, error: unknown) => void,
    /** Storage refused it for a bound (§10 room_limit): the sender alone is told. */
    private readonly refused: (from: Connection, message: NewMessage, code: "room_limit") => void,
    private readonly metrics: Metrics,
  ) {}

  add(message: NewMessage, from: Connection): void {
    this.queue.push({ message, from });
    this.running ??= this.run();
  }

  /**
   * Resolves once everything added before the call is stored and published. Room events that
   * must follow a user's messages (its leave) wait for this, so nobody sees "bob left" before
   * bob's last words.
   */
  settled(): Promise<void> {
    if (!this.running) return Promise.resolve();
    return new Promise((resolve) => this.queue.push({ settled: resolve }));
  }

  /** Resolves once the queue is empty. */
  async flush(): Promise<void> {
    while (this.running) await this.running;
  }

  private async run(): Promise<void> {
    await new Promise<void>((resolve) => setImmediate(resolve));
    while (this.queue.length) {
      const batch: { message: NewMessage; from: Connection }[] = [];
      // Taken off the queue in one splice: a shift per message moves the whole queue each time.
      let taken = 0;
      for (; taken < this.queue.length && batch.length < BATCH_MAX_MESSAGES; taken++) {
        const head = this.queue[taken]!;
        if ("settled" in head) {
          if (batch.length) break;
          head.settled();
        } else {
          batch.push(head);
        }
      }
      this.queue.splice(0, taken);
      if (batch.length) await this.commit(batch);
    }
    this.running = null;
  }

  private async commit(batch: { message: NewMessage; from: Connection }[]): Promise<void> {
    const started = performance.now();
    let results;
    try {
      results = await this.store.append(batch.map((b) => b.message));
    } catch (error) {
      for (const b of batch) this.failed(b.from, b.message, error);
      return;
    } finally {
      this.metrics.storageWrite((performance.now() - started) / 1000);
    }
    results.forEach((r, i) => {
      try {
        if ("refused" in r) this.refused(batch[i]!.from, batch[i]!.message, r.refused);
        else this.committed(r.message, r.duplicate, batch[i]!.from, batch[i]!.message);
      } catch (error) {
        // One recipient's failure must not stop the batch, nor the batcher.
        this.failed(batch[i]!.from, batch[i]!.message, error);
      }
    });
  }
}

// ─── Connections and fan-out ──────────────────────────────────────────────────────────────────

/** What every connection shares: settings, clock, counters, log. */
interface Context {
  config: Config;
  now: () => number;
  metrics: Metrics;
  log: Log;
}

/**
 * A 1006 close of a socket whose unsent bytes were last seen at or above this fraction of
 * BACKPRESSURE_LIMIT_BYTES is counted as a slow-consumer close (as 1/N: 2 means half).
 */
const SLOW_CONSUMER_FRACTION = 2;

let connectionCounter = 0;

/**
 * One client, WebSocket or TCP. Its transport's close handler is its one owner: it calls
 * `hub.close` exactly once, which frees everything. Frames are handled one at a time, in order,
 * on `chain`, so a frame that waits for storage never overtakes an earlier one.
 */
abstract class Connection {
  /** A number, not its `c…` string: one string less per idle connection (issue #8: memory). */
  private readonly serial = ++connectionCounter;
  readonly openedAt: number;
  user: User | null = null;
  /** Rooms this connection joined, in join order (at most MAX_ROOMS_PER_CONNECTION). */
  readonly rooms: string[] = [];
  /** Counts rate_limited answers in a row, whichever bucket ran dry; held only during such a streak. */
  limiter: RateLimiter | null = null;
  /** Spent by frames before hello and by pings (§10); the user's own bucket pays for the rest. */
  readonly bucket: TokenBucket;
  /** "closing" once the server decided to close it: further input is ignored. */
  state: "open" | "closing" | "closed" = "open";
  /** Set when it left every room and its user (replaced, or closed). */
  released = false;
  helloTimer: ReturnType<typeof setTimeout> | null = null;
  /** Why the server closed it, for the close log line. */
  closeWhy: { code: number; reason: string } | null = null;
  /** The last task that waited, while any is unfinished; none for a connection that never waited. */
  private chain: Promise<void> | null = null;
  /** Tasks on `chain` not yet finished. */
  private waiting = 0;
  abstract readonly transport: "ws" | "tcp";

  constructor(
    protected readonly ctx: Context,
    readonly ip: string,
  ) {
    this.openedAt = ctx.now();
    this.bucket = new TokenBucket(ctx.config.rateLimitBurst, ctx.config.rateLimitPerSecond, this.openedAt);
  }

  /** For logs. */
  get id(): string {
    return `c${this.serial}`;
  }

  /**
   * Runs `task` after the ones before it. With none under way it runs at once, inside the
   * transport's handler (where Bun corks the socket's writes); most frames finish there, and
   * only one that waits (for storage) makes the next ones queue behind it.
   */
  enqueue(task: () => void | Promise<void>): void {
    if (this.waiting > 0) return this.track(this.chain!.then(task));
    let result;
    try {
      result = task();
    } catch (error) {
      return this.crashed(error);
    }
    if (result) this.track(result);
  }

  private track(running: Promise<void>): void {
    this.waiting++;
    // Let go of the last task once all are done: an idle connection holds no settled promises.
    this.chain = running.catch((error) => this.crashed(error)).finally(() => {
      if (--this.waiting === 0) this.chain = null;
    });
  }

  private crashed(error: unknown): void {
    this.ctx.log("error", "unexpected", { conn: this.id, error: String(error), stack: (error as Error)?.stack });
    this.fail("internal", MESSAGES.internal);
  }

  /** One message, to this connection only (the answer to a retried send). */
  abstract deliver(message: MessageFrame): void;
  /** An error answer; counted. */
  abstract fail(code: ErrorCode | typeof LINE_TOO_LONG, message: string, ref?: string): void;
  /** Closes from the server side, once; the transport's close handler follows. */
  abstract close(code: number, reason: string): void;
  /** The room's `joined` (TCP: its recent lines), sent just before the first room event can come. */
  abstract joined(frame: JoinedFrame): void;
  /** The hello deadline passed. */
  abstract helloExpired(): void;
  /** Tells the client the server is going away and closes. */
  abstract shutdown(): void;
}

class WsConnection extends Connection {
  readonly transport = "ws";
  ws!: ServerWebSocket<WsConnection>;
  /**
   * Unsent bytes, as last seen when Bun held data back for it. Bun closes a slow consumer on a
   * later turn and reports only 1006 with its buffer already freed, so this is how its close is
   * told apart from a client that simply vanished.
   */
  backlogBytes = 0;

  send(frame: ServerFrame): void {
    if (this.ws.readyState !== 1) return;
    const sent = this.ws.send(JSON.stringify(frame), false);
    if (sent <= 0) {
      this.backlogBytes = this.ws.getBufferedAmount();
      if (sent === 0) this.ctx.metrics.publishDrops++;
    }
  }

  /** Whether Bun's 1006 close was the backpressure limit: it had filled most of its buffer. */
  slowConsumer(): boolean {
    return this.backlogBytes * SLOW_CONSUMER_FRACTION >= this.ctx.config.backpressureLimitBytes;
  }

  joined(frame: JoinedFrame): void {
    this.send(frame);
  }

  deliver(message: MessageFrame): void {
    if (this.state === "open") this.send(message);
  }

  fail(code: ErrorCode, message: string, ref?: string): void {
    this.ctx.metrics.error(code);
    this.send(withRef({ type: "error", code, message }, ref));
  }

  close(code: number, reason: string): void {
    if (this.closeWhy || this.state === "closed") return;
    this.state = "closing";
    this.closeWhy = { code, reason };
    this.ws.close(code, reason);
  }

  helloExpired(): void {
    this.close(CLOSE.policy, CLOSE_REASON.helloTimeout);
  }

  shutdown(): void {
    this.close(CLOSE.shutdown, CLOSE_REASON.shutdown);
  }
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Bounds how long a TCP client we closed may take to take its last lines. */
const TCP_CLOSE_LINGER_MS = 5000;
/** Messages shown on a TCP /join (protocol §9). */
const TCP_JOIN_HISTORY = 10;
/** The room a TCP user starts in. */
const TCP_FIRST_ROOM = "general";

class TcpConnection extends Connection {
  readonly transport = "tcp";
  readonly splitter: LineSplitter;
  /** Output the socket did not take yet, oldest first. */
  private pending: Uint8Array[] = [];
  private pendingBytes = 0;
  private ending = false;
  private lingerTimer: ReturnType<typeof setTimeout> | null = null;
  /** The room plain lines go to, and the others, most recently joined last. */
  current: string | null = null;
  readonly recent: string[] = [];
  private sent = 0;

  constructor(
    ctx: Context,
    ip: string,
    readonly socket: Socket<TcpConnection>,
  ) {
    super(ctx, ip);
    this.splitter = new LineSplitter(ctx.config.tcpMaxLineBytes);
  }

  /** A fresh client-side id for a chat line (TCP users have no ids of their own). */
  nextId(): string {
    return `${this.id}-${++this.sent}`;
  }

  /**
   * Writes now what the socket takes and keeps the rest for `drain`: Bun's write() takes what
   * fits and drops the remainder. Past tcpMaxPendingBytes the client is not reading: close it.
   */
  write(bytes: Uint8Array): void {
    if (this.state === "closed" || this.ending) return;
    if (this.pending.length === 0) {
      const n = this.socket.write(bytes);
      if (n < 0) return;
      if (n === bytes.length) return;
      bytes = bytes.subarray(n);
    }
    this.pending.push(bytes);
    this.pendingBytes += bytes.length;
    if (this.pendingBytes > this.ctx.config.tcpMaxPendingBytes) {
      this.ctx.metrics.backpressureCloses++;
      this.closeWhy = { code: 0, reason: "backpressure" };
      this.state = "closing";
      this.pending = [];
      this.pendingBytes = 0;
      this.socket.terminate();
    }
  }

  line(text: string): void {
    this.write(encoder.encode(text + "\n"));
  }

  prompt(): void {
    this.write(encoder.encode("name: "));
  }

  /** Called on `drain`: writes what was kept, in order. */
  flush(): void {
    while (this.pending.length) {
      const head = this.pending[0]!;
      const n = this.socket.write(head);
      if (n < 0) return;
      this.pendingBytes -= Math.max(0, n);
      if (n < head.length) {
        this.pending[0] = head.subarray(n);
        return;
      }
      this.pending.shift();
    }
    if (this.ending) this.socket.end();
  }

  deliver(message: MessageFrame): void {
    if (this.state === "open") this.write(encoder.encode(formatMessageLines(message)));
  }

  fail(code: ErrorCode | typeof LINE_TOO_LONG, message: string): void {
    this.ctx.metrics.error(code);
    this.line(`! ${code}: ${message}`);
  }

  /** Ends after the pending output is written; a client that does not take it is cut off. */
  end(): void {
    if (this.state === "closed" || this.ending) return;
    this.state = "closing";
    this.ending = true;
    if (this.pending.length === 0) this.socket.end();
    this.lingerTimer = setTimeout(() => this.socket.terminate(), TCP_CLOSE_LINGER_MS);
  }

  close(code: number, reason: string): void {
    if (this.closeWhy || this.state === "closed") return;
    this.closeWhy = { code, reason };
    this.end();
  }

  /** Recent history as lines, then `* now in ROOM (N here)`; the room becomes current. */
  joined(frame: JoinedFrame): void {
    for (const m of frame.messages) this.deliver(m);
    const at = this.recent.indexOf(frame.room);
    if (at !== -1) this.recent.splice(at, 1);
    this.recent.push(frame.room);
    this.current = frame.room;
    this.line(`* now in ${frame.room} (${frame.members.length} here)`);
  }

  helloExpired(): void {
    this.line("! hello timeout");
    this.close(CLOSE.policy, CLOSE_REASON.helloTimeout);
  }

  shutdown(): void {
    this.line(`* ${CLOSE_REASON.shutdown}`);
    this.close(CLOSE.shutdown, CLOSE_REASON.shutdown);
  }

  closed(): void {
    this.state = "closed";
    if (this.lingerTimer) clearTimeout(this.lingerTimer);
    this.pending = [];
    this.pendingBytes = 0;
  }
}

const roomTopic = (room: string) => `room:${room}`;

/**
 * Delivers room events to this instance's members. WebSocket members get each event through
 * Bun's native pub/sub (one `server.publish`, serialized once); TCP members get one pre-encoded
 * line, written to each. With several instances, what crosses them comes in through the hub
 * (messages by the Relay, presence by the Roster); only typing is sent out from here.
 */
class Fanout {
  private readonly wsMembers = new Map<string, Set<WsConnection>>();
  private readonly tcpMembers = new Map<string, Set<TcpConnection>>();
  server!: Server<WsConnection>;

  constructor(
    private readonly ctx: Context,
    private readonly relay: Relay,
  ) {}

  subscribe(conn: Connection, room: string): void {
    if (conn instanceof WsConnection) {
      conn.ws.subscribe(roomTopic(room));
      addTo(this.wsMembers, room, conn);
    } else if (conn instanceof TcpConnection) {
      addTo(this.tcpMembers, room, conn);
    }
  }

  unsubscribe(conn: Connection, room: string): void {
    if (conn instanceof WsConnection) {
      if (conn.ws.readyState === 1) conn.ws.unsubscribe(roomTopic(room));
      removeFrom(this.wsMembers, room, conn);
    } else if (conn instanceof TcpConnection) {
      removeFrom(this.tcpMembers, room, conn);
    }
  }

  message(m: MessageFrame): void {
    const recipients = (this.wsMembers.get(m.room)?.size ?? 0) + (this.tcpMembers.get(m.room)?.size ?? 0);
    this.ctx.metrics.messagesOut += recipients;
    this.publish(m.room, JSON.stringify(m), () => formatMessageLines(m));
  }

  /**
   * To this instance's members (the roster tells the others). `oldName` is for a rename's TCP
   * line, which says who the user was; `except`, a joiner, does not hear its own join.
   */
  presence(room: string, event: PresenceEvent, user: UserRef, oldName?: string, except?: Connection): void {
    const frame: PresenceFrame = { type: "presence", room, event, user };
    this.publish(room, JSON.stringify(frame), () => formatPresenceLine(frame, oldName), except);
  }

  /** To the other WebSocket members only, here and on the other instances: TCP users get no typing. */
  typing(room: string, user: UserRef, from: WsConnection): void {
    const frame: TypingNotice = { type: "typing", room, user };
    this.relay.event({ frame });
    this.publishWs(room, () => JSON.stringify(frame), from);
  }

  /** Typing on another instance, for every WebSocket member here. */
  typed(frame: TypingNotice): void {
    this.publishWs(frame.room, () => JSON.stringify(frame));
  }

  /** `line` is rendered only when a TCP user is in the room. */
  private publish(room: string, json: string, line: () => string, except?: Connection): void {
    this.publishWs(room, () => json, except);
    const tcp = this.tcpMembers.get(room);
    if (tcp?.size) {
      const bytes = encoder.encode(line());
      for (const conn of tcp) if (conn !== except) conn.write(bytes);
    }
  }

  /**
   * To the room's WebSocket members here but `except`, serialized only when someone will get it.
   * Bun's ws.publish, which skips its own socket, returns 0 when nobody else is subscribed, as it
   * does for a drop: so a room whose only member is `except` is not published to at all.
   */
  private publishWs(room: string, json: () => string, except?: Connection): void {
    const ws = this.wsMembers.get(room);
    const skip = except instanceof WsConnection && ws?.has(except) ? except : null;
    if (!ws || ws.size === (skip ? 1 : 0)) return;
    const sent = skip ? skip.ws.publish(roomTopic(room), json(), false) : this.server.publish(roomTopic(room), json(), false);
    if (sent <= 0) this.backlog(ws, sent === 0);
  }

  /**
   * Bun held a publish back for someone (-1) or dropped it (0). It closes a slow consumer on a
   * later turn, reporting only 1006 with its buffer already freed, and a publish that crosses
   * the limit may still say -1 when others took it. So note every member's backlog now, while
   * the buffers show it; the close handler reads it. Runs only while someone lags, never on the
   * normal path.
   */
  private backlog(members: Set<WsConnection>, dropped: boolean): void {
    if (dropped) this.ctx.metrics.publishDrops++;
    for (const conn of members) conn.backlogBytes = conn.ws.getBufferedAmount();
  }
}

function addTo<T>(map: Map<string, Set<T>>, key: string, value: T): void {
  let set = map.get(key);
  if (!set) map.set(key, (set = new Set()));
  set.add(value);
}

function removeFrom<T>(map: Map<string, Set<T>>, key: string, value: T): void {
  const set = map.get(key);
  if (set?.delete(value) && set.size === 0) map.delete(key);
}

/** What a relay hands stored messages to: the hub. */
interface RelayTarget {
  /** A stored message heard from the engine, possibly repeated, late, or after a gap. */
  receive(message: MessageFrame): void;
  /** The relay may have missed messages of `room` (it reconnected; or a periodic check): read on from storage. */
  catchUp(room: string): void;
  /** A presence change or typing from another instance, for this one's members. */
  event(event: RoomEvent): void;
}

/**
 * How stored messages come back to the hub to be delivered (the relay seam). With one process the
 * hub hears everything it commits, at once. With Redis every instance hears, from Redis's
 * publish, the rooms it has members in; that is at most once, so the hub puts what it hears in
 * order, drops repeats and fills gaps from history (Hub.receive): once, for every engine.
 */
interface Relay {
  /** The hub hears every room without asking: nothing is stored but what it commits itself. */
  readonly hearsAll: boolean;
  attach(target: RelayTarget): void;
  /** A message this instance stored (not a duplicate). */
  committed(message: MessageFrame): void;
  /** The hub delivered `message` here (heard live, or read from history to fill a gap). */
  delivered(message: MessageFrame): void;
  /** Tells the other instances of a room event this one delivered here (typing). */
  event(event: RoomEvent): void;
  /** Starts hearing `room`; resolves once every message stored from then on will be heard. */
  watch(room: string): Promise<void>;
  unwatch(room: string): void;
  /** The engine's state for /healthz; null when there is nothing to report. */
  health(): { redis: "up" | "down" } | null;
  close(): Promise<void>;
}

/** One process: what the hub commits is all there is, and it hears it at once. */
class LocalRelay implements Relay {
  readonly hearsAll = true;
  private target!: RelayTarget;

  attach(target: RelayTarget): void {
    this.target = target;
  }

  committed(message: MessageFrame): void {
    this.target.receive(message);
  }

  delivered(): void {}
  event(): void {}
  async watch(): Promise<void> {}
  unwatch(): void {}
  health(): null {
    return null;
  }
  async close(): Promise<void> {}
}

/** A room event other than a message, as it crosses instances (messages carry their seq instead). */
interface RoomEvent {
  frame: PresenceFrame | TypingNotice;
  /** A rename's old name, for the TCP line that says who it was. */
  oldName?: string;
}

/**
 * Who is in which room on the other instances, and the presence changes that cross them
 * (Centrifugo's PresenceManager). The hub keeps the members it serves in Presence, with their
 * grace, and tells the roster when a user becomes or stops being a member here; the roster says
 * whether that made the user new to the room, or gone from it, on every instance. The hub alone
 * decides what to announce. With one process there is nobody else: every change counts.
 */
interface Roster {
  attach(target: RosterTarget): void;
  /** Starts taking part (heartbeats, taking over dead instances). */
  start(): Promise<void>;
  /** `user` is now a member of `room` here; true when it is a member nowhere else (a join to announce). */
  add(room: string, user: UserRef): Promise<boolean>;
  /** `user` is no longer a member of `room` here; true when it was nowhere else either (a leave to announce). */
  remove(room: string, user: UserRef): Promise<boolean>;
  /** The other instances hear that `user`, a member of `room`, was called `oldName`. */
  rename(room: string, user: UserRef, oldName: string): Promise<void>;
  /** Members of `room` served by other instances. */
  others(room: string): Promise<UserRef[]>;
  /** Rooms with members on any instance and their distinct users; null when this instance's are all. */
  active(): Promise<{ room: string; members: number }[] | null>;
  /** Holds the name (by its nameKey) for `userId` on every instance; false when another user holds it. */
  claimName(key: string, userId: string): Promise<boolean>;
  releaseName(key: string, userId: string): void;
  /** Counts one hello from `ip` against HELLO_RATE_PER_MINUTE on every instance; false past it. */
  takeHello(ip: string, now: number): Promise<boolean>;
  /**
   * Takes one token of the user's rate bucket shared by every instance; false when it is empty.
   * Null when there is no shared bucket: the hub's own is the user's, and nothing waits.
   */
  takeFrame(userId: string, now: number): Promise<boolean> | null;
  close(): Promise<void>;
}

/** What a roster tells the hub. */
interface RosterTarget {
  /** A dead instance's member of `room`, now this instance's: it stays in grace, then leaves unless it is back. */
  adopt(room: string, user: UserRef): void;
  /** Others took this instance for dead (Redis or the network was away too long): register its members again. */
  lost(): void;
}

/** One process: its members are everyone, its names all names. */
class LocalRoster implements Roster {
  attach(): void {}
  async start(): Promise<void> {}
  async add(): Promise<boolean> {
    return true;
  }
  async remove(): Promise<boolean> {
    return true;
  }
  async rename(): Promise<void> {}
  async others(): Promise<UserRef[]> {
    return [];
  }
  async active(): Promise<null> {
    return null;
  }
  async claimName(): Promise<boolean> {
    return true;
  }
  releaseName(): void {}
  /** The hub's own bucket per address is all there is. */
  async takeHello(): Promise<boolean> {
    return true;
  }
  /** And its bucket per user: answered at once, so a frame waits for nothing. */
  takeFrame(): null {
    return null;
  }
  async close(): Promise<void> {}
}

/** How often every heard room's stored seq is compared with what was relayed, to catch a lost tail. */
const REDIS_TAIL_CHECK_INTERVAL_MS = 15_000;
/** Bounds how long an append waits to hear its own publish before it reports the message stored anyway. */
const REDIS_ECHO_WAIT_MS = 2000;

/**
 * Relays the rooms this instance has members in from Redis, on one subscriber connection (a
 * subscribed connection can run no other command). No patterns: in Bun 1.4.5 psubscribe takes
 * no listener, and a PSUBSCRIBE sent raw is counted by Redis but delivers nothing to JavaScript.
 * Bun's client does not subscribe again after it reconnects, so this does it, room by room, and
 * has the hub catch up from history what was published meanwhile.
 */
class RedisRelay implements Relay {
  readonly hearsAll = false;
  private target!: RelayTarget;
  /** The rooms heard, with the newest seq heard in each. */
  private readonly rooms = new Map<string, number>();
  private readonly echoes = new Map<string, { seq: number; done: () => void }[]>();
  private readonly checker: ReturnType<typeof setInterval>;
  /** The last subscription change: each waits for the one before. */
  private subscribing: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly sub: RedisLink,
    private readonly commands: RedisLink,
    private readonly instance: string,
    private readonly log: Log,
    tailCheckMs: number,
  ) {
    sub.onreconnect = () => void this.resubscribe();
    commands.onreconnect = () => this.catchUpAll();
    this.checker = setInterval(() => this.catchUpAll(), tailCheckMs);
  }

  private readonly listener = (payload: string) => {
    try {
      if (payload.startsWith("{")) {
        const { instance, ...event } = JSON.parse(payload) as RoomEvent & { instance: string };
        // This instance delivered its own events already, in their place among its frames.
        if (instance !== this.instance && this.rooms.has(event.frame.room)) this.target.event(event);
        return;
      }
      const message = decodeMember(payload);
      if (this.rooms.has(message.room)) this.target.receive(message);
    } catch (error) {
      this.log("error", "redis_bad_message", { error: String(error) });
    }
  };

  event(event: RoomEvent): void {
    this.commands
      .send("PUBLISH", [redisKeys(event.frame.room).channel, encodeEvent(this.instance, event)])
      .catch((error) => this.log("warn", "redis_publish", { error: String(error) }));
  }

  attach(target: RelayTarget): void {
    this.target = target;
  }

  /** The append script published it already: it comes back through the subscription. */
  committed(): void {}

  delivered(message: MessageFrame): void {
    const newest = this.rooms.get(message.room);
    if (newest === undefined) return;
    if (message.seq > newest) this.rooms.set(message.room, message.seq);
    const waiting = this.echoes.get(message.room);
    if (!waiting) return;
    for (const echo of waiting.filter((e) => e.seq <= message.seq)) echo.done();
  }

  async watch(room: string): Promise<void> {
    this.rooms.set(room, 0);
    try {
      await this.inLine(() => this.sub.subscribeOnce(redisKeys(room).channel, this.listener));
    } catch (error) {
      this.rooms.delete(room);
      throw error;
    }
  }

  unwatch(room: string): void {
    if (!this.rooms.delete(room)) return;
    this.inLine(() => this.sub.client.unsubscribe(redisKeys(room).channel)).catch(() => {});
  }

  /** Runs `change` after every subscription change before it: two at once could subscribe a channel twice. */
  private inLine<T>(change: () => Promise<T>): Promise<T> {
    const result = this.subscribing.then(change);
    this.subscribing = result.catch(() => {});
    return result;
  }

  /** Resolves once `seq` of `room` was delivered here, or after REDIS_ECHO_WAIT_MS (the tail check delivers it then). */
  heard(room: string, seq: number): Promise<void> {
    // Nothing comes while the subscriber is away: the catch-up after it is back delivers it.
    if ((this.rooms.get(room) ?? Infinity) >= seq || !this.sub.connected) return Promise.resolve();
    return new Promise((resolve) => {
      let waiting = this.echoes.get(room);
      if (!waiting) this.echoes.set(room, (waiting = []));
      const echo = {
        seq,
        done: () => {
          clearTimeout(timer);
          const list = this.echoes.get(room);
          list?.splice(list.indexOf(echo), 1);
          if (list?.length === 0) this.echoes.delete(room);
          resolve();
        },
      };
      const timer = setTimeout(echo.done, REDIS_ECHO_WAIT_MS);
      waiting.push(echo);
    });
  }

  /** After a reconnect: subscribe to every room again (Bun does not), then catch up from history. */
  private async resubscribe(): Promise<void> {
    const rooms = [...this.rooms.keys()];
    try {
      await this.inLine(() => Promise.all(rooms.map((room) => this.sub.subscribeOnce(redisKeys(room).channel, this.listener))));
    } catch (error) {
      // The connection went again; its next onconnect starts over.
      this.log("warn", "redis_resubscribe", { error: String(error) });
      return;
    }
    this.log("info", "redis_resubscribed", { rooms: rooms.length });
    this.catchUpAll();
  }

  private catchUpAll(): void {
    if (!this.sub.connected || !this.commands.connected) return;
    for (const room of this.rooms.keys()) this.target.catchUp(room);
  }

  health(): { redis: "up" | "down" } {
    return { redis: this.sub.connected && this.commands.connected ? "up" : "down" };
  }

  async close(): Promise<void> {
    clearInterval(this.checker);
    for (const waiting of [...this.echoes.values()]) for (const echo of [...waiting]) echo.done();
    this.sub.close();
  }
}

/** Where presence lives in Redis: per room, who is here on which instance and how many instances each user is on. */
const rosterKeys = (room: string) => ({
  /** "instanceId|userId" → 1: a user's membership through one instance. */
  here: `chat:room:${room}:here`,
  /** userId → the number of instances it is a member through. */
  users: `chat:room:${room}:users`,
  /** userId → its name, while it is a member. */
  names: `chat:room:${room}:names`,
});
const instanceKeys = (id: string) => ({
  /** Exists while the instance is alive (it sets it again every third of INSTANCE_TIMEOUT_MS). */
  alive: `chat:instance:${id}`,
  /** room → how many of the room's members are here through it: what a survivor takes over. */
  rooms: `chat:instance:${id}:rooms`,
  /** The survivor taking it over, for INSTANCE_TIMEOUT_MS; another may finish once that lapses. */
  takeover: `chat:instance:${id}:takeover`,
});
/** Every instance that registered and was not taken over yet. */
const REDIS_INSTANCES_KEY = "chat:instances";
/** room → its distinct members on every instance (for /api/rooms). */
const REDIS_ACTIVE_KEY = "chat:active";
const redisNameKey = (key: string) => `chat:name:${key}`;
/** Bytes of randomness in an instance's id. */
const INSTANCE_ID_BYTES = 9;
/** Bounds the membership entries read per step when a dead instance is taken over. */
const REAP_SCAN_COUNT = 1000;

/**
 * KEYS[1] here  KEYS[2] users  KEYS[3] names  KEYS[4] the instance's rooms  KEYS[5] active
 * ARGV[1] "instanceId|userId"  ARGV[2] userId  ARGV[3] name  ARGV[4] room  ARGV[5] channel  ARGV[6] the join event
 * Returns 1 when the user was in the room through no instance: the join is published with it,
 * in order with the room's messages.
 */
const ROSTER_ADD_SCRIPT = `
if redis.call('HSETNX', KEYS[1], ARGV[1], '1') == 0 then return 0 end
redis.call('HINCRBY', KEYS[4], ARGV[4], 1)
redis.call('HSET', KEYS[3], ARGV[2], ARGV[3])
if redis.call('HINCRBY', KEYS[2], ARGV[2], 1) > 1 then return 0 end
redis.call('HINCRBY', KEYS[5], ARGV[4], 1)
redis.call('PUBLISH', ARGV[5], ARGV[6])
return 1
`;

/**
 * KEYS and ARGV[1], ARGV[2] as ROSTER_ADD_SCRIPT; ARGV[3] room  ARGV[4] channel  ARGV[5] the leave event
 * Returns 1 when that was the user's last instance in the room: the leave is published with it.
 */
const ROSTER_REMOVE_SCRIPT = `
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
if redis.call('HINCRBY', KEYS[4], ARGV[3], -1) <= 0 then redis.call('HDEL', KEYS[4], ARGV[3]) end
if redis.call('HINCRBY', KEYS[2], ARGV[2], -1) > 0 then return 0 end
redis.call('HDEL', KEYS[2], ARGV[2])
redis.call('HDEL', KEYS[3], ARGV[2])
if redis.call('HINCRBY', KEYS[5], ARGV[3], -1) <= 0 then redis.call('HDEL', KEYS[5], ARGV[3]) end
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 1
`;

/** KEYS[1] users  KEYS[2] names; ARGV[1] userId  ARGV[2] new name  ARGV[3] channel  ARGV[4] the rename event */
const ROSTER_RENAME_SCRIPT = `
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1
`;

/**
 * A survivor takes over one membership of a dead instance.
 * KEYS[1] here  KEYS[2] users  KEYS[3] the dead instance's rooms  KEYS[4] the survivor's rooms
 * ARGV[1] the dead "instanceId|userId"  ARGV[2] the survivor's  ARGV[3] userId  ARGV[4] room
 * Returns 1 when the survivor now holds it (it keeps the user in grace), 2 when it held it already.
 */
const ROSTER_ADOPT_SCRIPT = `
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
if redis.call('HINCRBY', KEYS[3], ARGV[4], -1) <= 0 then redis.call('HDEL', KEYS[3], ARGV[4]) end
if redis.call('HSETNX', KEYS[1], ARGV[2], '1') == 1 then
  redis.call('HINCRBY', KEYS[4], ARGV[4], 1)
  return 1
end
redis.call('HINCRBY', KEYS[2], ARGV[3], -1)
return 2
`;

/**
 * A name is held per instance (field instanceId → userId), so one user on several instances
 * holds it until the last lets go; a dead instance's hold ends with the key's expiry.
 * KEYS[1] the name  ARGV[1] instanceId  ARGV[2] userId  ARGV[3] expiry (ms). Returns 0 if another user holds it.
 */
const NAME_CLAIM_SCRIPT = `
for _, holder in ipairs(redis.call('HVALS', KEYS[1])) do
  if holder ~= ARGV[2] then return 0 end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
`;

/**
 * A token bucket shared by every instance: HELLO_RATE_PER_MINUTE per address, RATE_LIMIT_BURST
 * per user. Forgotten once it would be full again, so a quiet key costs nothing. Each instance
 * passes its own clock; one behind the last taker's refills nothing, so it never goes backwards.
 *   KEYS[1] the bucket   ARGV[1] burst   ARGV[2] tokens refilled per ms   ARGV[3] now (epoch ms)
 * Returns 1 when a token was taken, else 0.
 */
const BUCKET_TAKE_SCRIPT = `
local burst, rate, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local saved = redis.call('HMGET', KEYS[1], 't', 'at')
local tokens, at = tonumber(saved[1]) or burst, tonumber(saved[2]) or now
if now > at then tokens, at = math.min(burst, tokens + (now - at) * rate), now end
local taken = 0
if tokens >= 1 then tokens, taken = tokens - 1, 1 end
redis.call('HSET', KEYS[1], 't', tostring(tokens), 'at', tostring(at))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate))
return taken
`;
const redisHelloKey = (ip: string) => `chat:hello:${ip}`;
/** A user's frame bucket; not at `chat:bucket:`, where older instances keep a string (a rolling deploy runs both). */
const redisRateKey = (userId: string) => `chat:rate:${userId}`;

/** KEYS[1] the name  ARGV[1] instanceId  ARGV[2] userId */
const NAME_RELEASE_SCRIPT = `
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then redis.call('HDEL', KEYS[1], ARGV[1]) end
return 0
`;

/** The JSON a room event crosses instances as; messages are `seq:json`, so a `{` tells them apart. */
function encodeEvent(instance: string, event: RoomEvent): string {
  return JSON.stringify({ instance, ...event });
}

/**
 * Presence and names shared through Redis. Each instance registers, keeps a key alive with a TTL
 * (INSTANCE_TIMEOUT_MS) and checks the others every half of it: a dead instance is noticed within
 * 1.5 × INSTANCE_TIMEOUT_MS, and exactly one survivor (the one whose SREM removes it) takes over
 * its memberships, in grace: their leaves go out PRESENCE_GRACE_MS later, unless they came back.
 */
class RedisRoster implements Roster {
  private readonly timers: ReturnType<typeof setInterval>[] = [];
  /** Names this instance holds: claimed again with every heartbeat. */
  private readonly names = new Map<string, string>();
  private registered = false;
  private target!: RosterTarget;

  /** INSTANCE_TIMEOUT_MS. */
  private readonly timeoutMs: number;

  constructor(
    private readonly link: RedisLink,
    readonly instance: string,
    private readonly log: Log,
    private readonly config: Config,
  ) {
    this.timeoutMs = config.instanceTimeoutMs;
  }

  attach(target: RosterTarget): void {
    this.target = target;
  }

  async start(): Promise<void> {
    await this.heartbeat();
    this.timers.push(
      setInterval(() => void this.heartbeat().catch((e) => this.log("warn", "redis_heartbeat", { error: String(e) })), this.timeoutMs / 3),
      setInterval(() => void this.reap().catch((e) => this.log("warn", "redis_reap", { error: String(e) })), this.timeoutMs / 2),
    );
  }

  private async heartbeat(): Promise<void> {
    await this.link.send("SET", [instanceKeys(this.instance).alive, "1", "PX", String(this.timeoutMs)]);
    const added = await this.link.send("SADD", [REDIS_INSTANCES_KEY, this.instance]);
    if (added === 1 && this.registered) {
      this.log("warn", "instance_taken_over", { instance: this.instance });
      this.target.lost();
    }
    this.registered = true;
    await Promise.all([...this.names].map(([key, userId]) => this.claimName(key, userId)));
  }

  /** Takes over every instance whose key expired; SREM lets exactly one survivor do it. */
  /**
   * Takes over the members of every instance that stopped heartbeating. One survivor claims a dead
   * instance at a time, for INSTANCE_TIMEOUT_MS; the dead one leaves the instance set only once
   * all its members are moved. A survivor that dies halfway lets its claim lapse, and the next one
   * moves what is left (moving a member is one script, done once, whoever runs it again).
   */
  private async reap(): Promise<void> {
    const instances: string[] = await this.link.send("SMEMBERS", [REDIS_INSTANCES_KEY]);
    for (const dead of instances) {
      if (dead === this.instance || (await this.link.send("EXISTS", [instanceKeys(dead).alive])) === 1) continue;
      const claim = instanceKeys(dead).takeover;
      if ((await this.link.send("SET", [claim, this.instance, "NX", "PX", String(this.timeoutMs)])) !== "OK") {
        this.log("debug", "takeover_claimed_elsewhere", { instance: dead });
        continue;
      }
      // Another survivor may have finished it since the list was read (it lets its claim go last).
      if ((await this.link.send("SISMEMBER", [REDIS_INSTANCES_KEY, dead])) !== 1) {
        await this.link.send("DEL", [claim]);
        continue;
      }
      let members = 0;
      const rooms: string[] = await this.link.send("HKEYS", [instanceKeys(dead).rooms]);
      for (const room of rooms) {
        const keys = rosterKeys(room);
        let cursor = "0";
        do {
          const [next, fields]: [string, string[]] = await this.link.send("HSCAN", [keys.here, cursor, "MATCH", `${dead}|*`, "COUNT", String(REAP_SCAN_COUNT)]);
          cursor = String(next);
          for (let i = 0; i < fields.length; i += 2) {
            const userId = fields[i]!.slice(dead.length + 1);
            const name: string | null = await this.link.send("HGET", [keys.names, userId]);
            const taken = await this.link.run(
              ROSTER_ADOPT_SCRIPT,
              [keys.here, keys.users, instanceKeys(dead).rooms, instanceKeys(this.instance).rooms],
              [fields[i]!, `${this.instance}|${userId}`, userId, room],
            );
            members++;
            if (taken === 1) this.target.adopt(room, { id: userId, name: name ?? "" });
          }
        } while (cursor !== "0");
      }
      await this.link.send("DEL", [instanceKeys(dead).rooms]);
      await this.link.send("SREM", [REDIS_INSTANCES_KEY, dead]);
      await this.link.send("DEL", [claim]);
      this.log("info", "instance_taken_over", { instance: dead, by: this.instance, rooms: rooms.length, members });
    }
  }

  async add(room: string, user: UserRef): Promise<boolean> {
    const keys = rosterKeys(room);
    const event = encodeEvent(this.instance, { frame: { type: "presence", room, event: "join", user } });
    const added = await this.link.run(
      ROSTER_ADD_SCRIPT,
      [keys.here, keys.users, keys.names, instanceKeys(this.instance).rooms, REDIS_ACTIVE_KEY],
      [`${this.instance}|${user.id}`, user.id, user.name, room, redisKeys(room).channel, event],
    );
    return added === 1;
  }

  async remove(room: string, user: UserRef): Promise<boolean> {
    const keys = rosterKeys(room);
    const event = encodeEvent(this.instance, { frame: { type: "presence", room, event: "leave", user } });
    const removed = await this.link.run(
      ROSTER_REMOVE_SCRIPT,
      [keys.here, keys.users, keys.names, instanceKeys(this.instance).rooms, REDIS_ACTIVE_KEY],
      [`${this.instance}|${user.id}`, user.id, room, redisKeys(room).channel, event],
    );
    return removed === 1;
  }

  async rename(room: string, user: UserRef, oldName: string): Promise<void> {
    const keys = rosterKeys(room);
    const event = encodeEvent(this.instance, { frame: { type: "presence", room, event: "rename", user }, oldName });
    await this.link.run(ROSTER_RENAME_SCRIPT, [keys.users, keys.names], [user.id, user.name, redisKeys(room).channel, event]);
  }

  async others(room: string): Promise<UserRef[]> {
    const keys = rosterKeys(room);
    const [fields, names]: [string[], Record<string, string> | string[]] = await Promise.all([
      this.link.send("HKEYS", [keys.here]),
      this.link.send("HGETALL", [keys.names]),
    ]);
    const nameOf = redisHash(names);
    const mine = `${this.instance}|`;
    const ids = new Set(fields.filter((f) => !f.startsWith(mine)).map((f) => f.slice(f.indexOf("|") + 1)));
    return [...ids].filter((id) => nameOf.has(id)).map((id) => ({ id, name: nameOf.get(id)! }));
  }

  async active(): Promise<{ room: string; members: number }[]> {
    const counts = redisHash(await this.link.send("HGETALL", [REDIS_ACTIVE_KEY]));
    return [...counts].map(([room, n]) => ({ room, members: Number(n) })).filter((r) => r.members > 0);
  }

  async claimName(key: string, userId: string): Promise<boolean> {
    const held = await this.link.run(NAME_CLAIM_SCRIPT, [redisNameKey(key)], [this.instance, userId, String(this.timeoutMs)]);
    if (held === 1) this.names.set(key, userId);
    return held === 1;
  }

  takeHello(ip: string, now: number): Promise<boolean> {
    const perMinute = this.config.helloRatePerMinute;
    return this.take(redisHelloKey(ip), perMinute, perMinute / 60, now);
  }

  takeFrame(userId: string, now: number): Promise<boolean> {
    // Redis away: say so at once (the hub spends its own copy) rather than wait for a reconnect.
    if (!this.link.connected) return Promise.reject(new Error("not connected to Redis"));
    return this.take(redisRateKey(userId), this.config.rateLimitBurst, this.config.rateLimitPerSecond, now);
  }

  /** One token of the shared bucket `key` (BUCKET_TAKE_SCRIPT); false when it is empty. */
  private async take(key: string, burst: number, perSecond: number, now: number): Promise<boolean> {
    return (await this.link.run(BUCKET_TAKE_SCRIPT, [key], [String(burst), String(perSecond / 1000), String(now)])) === 1;
  }

  releaseName(key: string, userId: string): void {
    if (this.names.get(key) !== userId) return;
    this.names.delete(key);
    this.link
      .run(NAME_RELEASE_SCRIPT, [redisNameKey(key)], [this.instance, userId])
      .then(() => this.log("debug", "name_released", { user: userId }))
      .catch((error) => this.log("warn", "redis_release_name", { error: String(error) }));
  }

  /** Stops heartbeating and lets its key go at once: a survivor takes its members over, in grace. */
  async close(): Promise<void> {
    for (const timer of this.timers) clearInterval(timer);
    await this.link.send("DEL", [instanceKeys(this.instance).alive]).catch(() => {});
  }
}

/** A Redis hash reply as a Map: RESP3 sends an object, RESP2 a flat [field, value, …] list. */
function redisHash(reply: Record<string, string> | string[] | null): Map<string, string> {
  if (!reply) return new Map();
  if (!Array.isArray(reply)) return new Map(Object.entries(reply));
  const map = new Map<string, string>();
  for (let i = 0; i + 1 < reply.length; i += 2) map.set(reply[i]!, reply[i + 1]!);
  return map;
}

/** A URL fit for a log line or an error: its password hidden. */
function redactedUrl(url: string): string {
  const parsed = new URL(url);
  if (parsed.password) parsed.password = "***";
  return parsed.href;
}

/**
 * Connects the Redis engine: one auto-pipelined command connection and one subscriber connection.
 * Rejects, naming REDIS_URL, when Redis cannot be reached.
 */
async function openRedis(
  config: Config,
  url: string,
  log: Log,
  now: () => number,
  tailCheckMs = REDIS_TAIL_CHECK_INTERVAL_MS,
): Promise<{ store: RedisStore; relay: RedisRelay; roster: RedisRoster }> {
  const commands = new RedisLink(url, "commands", log);
  const sub = new RedisLink(url, "subscriber", log);
  try {
    await Promise.all([commands.open(), sub.open()]);
  } catch (error) {
    commands.close();
    sub.close();
    throw new Error(`REDIS_URL=${redactedUrl(url)}: cannot reach Redis (${(error as Error).message})`);
  }
  const instance = randomBytes(INSTANCE_ID_BYTES).toString("base64url");
  const relay = new RedisRelay(sub, commands, instance, log, tailCheckMs);
  const store = new RedisStore(commands, historyBounds(config), now, (room, seq) => relay.heard(room, seq));
  const roster = new RedisRoster(commands, instance, log, config);
  return { store, relay, roster };
}

// ─── The hub: users, names, rooms, sessions ───────────────────────────────────────────────────

/** An online user: it has live connections, or is still in some room in grace. */
interface User {
  /** The object every frame shows; a session that comes back with a new name renames it. */
  ref: UserRef;
  /** Its live connections, oldest first (§10: tabs and devices of one session). */
  conns: Connection[];
  /** When the user's typing was last relayed, per room; null until it first types. */
  typingAt: Map<string, number> | null;
  /**
   * Spent by all its connections here; the hub keeps it after the user goes, until it is full
   * again. With Redis, only while Redis cannot answer: the bucket in Redis is the user's.
   */
  bucket: TokenBucket;
}

/**
 * What the hub knows of a room without asking storage: enough to answer /api/rooms from memory
 * and to give a joiner every message exactly once, by history or live.
 */
interface RoomState {
  /** The room's name: the one copy its members' lists hold, not one per join frame (issue #8: memory). */
  name: string;
  /** The latest seq published here; null until a join has read it from storage. */
  seq: number | null;
  /** When that message was sent (epoch ms); 0 if unknown: not among the newest at start, none since. */
  ts: number;
  /** Messages accepted for the room and not yet published or failed. */
  inflight: Set<NewMessage>;
  /** Joins reading history right now: each collects what is published meanwhile. */
  joins: Set<MessageFrame[]>;
  /** The relay brings every message of the room here, so `seq` is the room's latest. */
  heard: boolean;
  /** Starting to hear it: subscribing, then reading where the relay starts. */
  hearing: Promise<void> | null;
  /** Reading history to fill a gap in what was heard. */
  filling: boolean;
  /** Heard while hearing or filling: delivered after, in seq order. */
  backlog: MessageFrame[];
}

type Failure = { ok: false; code: ErrorCode; message: string; close?: { code: number; reason: string } };
type Result<T> = { ok: true; value: T } | Failure;
const ok = <T>(value: T): Result<T> => ({ ok: true, value });
const fail = (code: ErrorCode, message: string): Failure => ({ ok: false, code, message });

/** Why a new connection is turned away: HTTP status and error body. */
interface Refusal {
  status: 503 | 429;
  error: "draining" | "too_many_connections" | "too_many_connections_from_ip";
}

/** Bounds how often expired sessions are swept from storage. */
const SESSION_SWEEP_INTERVAL_MS = 3_600_000;
/** How often quiet rooms are trimmed of messages past HISTORY_MAX_AGE_DAYS (busy ones at each commit). */
const HISTORY_SWEEP_INTERVAL_MS = 600_000;
/** A restored session's expiry is pushed back at most this often (one write per hour at most). */
const SESSION_REFRESH_MS = 3_600_000;
/**
 * A new session lives this long (or SESSION_TTL_SECONDS, if shorter) until it is first used again;
 * that use refreshes it to the full TTL. A token nobody comes back with costs a day of disk, not 30.
 */
const NEW_SESSION_TTL_MS = DAY_MS;
/** Bytes of randomness in a session token (256 bits) and in a user id. */
const SESSION_TOKEN_BYTES = 32;
const USER_ID_BYTES = 9;
/** How often full rate buckets of departed users and quiet addresses are forgotten. */
const RATE_SWEEP_INTERVAL_MS = 60_000;
/** Bounds how long a frame waits for the user's shared rate bucket before spending this instance's copy. */
const SHARED_BUCKET_WAIT_MS = 500;
/** Bounds the rooms the hub remembers with nobody in them (for the room directory). */
const ROOM_STATES_MAX = 10_000;
/** Bounds the room directory (`/api/rooms?recent=1`). */
const RECENT_ROOMS_MAX = 50;
/** With several instances, /api/rooms asks Redis at most this often, however often it is polled. */
const SHARED_ROOMS_CACHE_MS = 1000;
/** Bounds the history pages read to fill one gap in what the relay heard. */
const FILL_PAGES_MAX = 100;

const newToken = () => randomBytes(SESSION_TOKEN_BYTES).toString("base64url");
const newUserId = () => randomBytes(USER_ID_BYTES).toString("base64url");
const hashToken = (token: string) => createHash("sha256").update(token).digest("hex");

/** The room directory's entry: members online, latest seq, and when its latest message was sent. */
export interface RoomEntry {
  room: string;
  members: number;
  seq: number;
  ts?: number;
}

/**
 * The transport-free heart: every rule of the protocol that is not about one frame's shape.
 * WebSocket and TCP adapters call it and render its results their own way; room events go out
 * through the Fanout; messages are stored through the Batcher before anyone sees them.
 */
class Hub implements RelayTarget, RosterTarget {
  readonly users = new Map<string, User>();
  /** nameKey → user id, for every online user. */
  private readonly names = new Map<string, string>();
  readonly presence: Presence<Connection>;
  readonly conns = new Set<Connection>();
  private readonly perIp = new Map<string, number>();
  /** Rooms with members or in-flight messages, and recently used ones, oldest use first. */
  readonly roomStates = new Map<string, RoomState>();
  /** Users' buckets, shared by their connections and kept across reconnects (§10); with Redis, the fallback. */
  readonly userBuckets: Buckets;
  /** The last take from the shared buckets failed; set and cleared with one log line each (once per outage). */
  private sharedBucketsDown = false;
  /** Hellos per client address (§10 HELLO_RATE_PER_MINUTE). */
  readonly helloBuckets: Buckets;
  readonly batcher: Batcher;
  draining = false;
  private graceTimer: ReturnType<typeof setTimeout> | null = null;
  private graceAt = Infinity;
  /** Roster changes of one user in one room, in the order the hub made them (room\nuserId → last). */
  private readonly rosterChains = new Map<string, Promise<unknown>>();
  /** With several instances: the room lists, each read at most once per SHARED_ROOMS_CACHE_MS. */
  private readonly cache = new Map<string, { until: number; value: Promise<RoomEntry[]> }>();
  private emptied: (() => void) | null = null;

  constructor(
    private readonly ctx: Context,
    readonly store: Store,
    readonly fanout: Fanout,
    readonly relay: Relay,
    readonly roster: Roster,
  ) {
    relay.attach(this);
    roster.attach(this);
    this.presence = new Presence(ctx.config.presenceGraceMs);
    this.userBuckets = new Buckets(ctx.config.rateLimitBurst, ctx.config.rateLimitPerSecond);
    this.helloBuckets = new Buckets(ctx.config.helloRatePerMinute, ctx.config.helloRatePerMinute / 60);
    this.batcher = new Batcher(
      store,
      (message, duplicate, from, sent) => {
        this.roomStates.get(sent.room)?.inflight.delete(sent);
        if (duplicate) from.deliver(message);
        else relay.committed(message);
      },
      (from, message, error) => {
        this.roomStates.get(message.room)?.inflight.delete(message);
        ctx.log("error", "storage", { error: String(error), room: message.room });
        if (from.state === "open") from.fail("internal", "message not stored; send it again", message.id);
      },
      (from, message, code) => {
        this.roomStates.get(message.room)?.inflight.delete(message);
        if (from.state === "open") from.fail(code, `the server holds history for at most ${ctx.config.maxRooms} rooms`, message.id);
      },
      ctx.metrics,
    );
  }

  private get config() {
    return this.ctx.config;
  }

  /** Whether one more connection from `ip` may open (§6: both caps count WebSocket and TCP). */
  admit(ip: string): Refusal | null {
    if (this.draining) return { status: 503, error: "draining" };
    if (this.conns.size >= this.config.maxConnections) return { status: 503, error: "too_many_connections" };
    if ((this.perIp.get(ip) ?? 0) >= this.config.maxConnectionsPerIp) {
      return { status: 429, error: "too_many_connections_from_ip" };
    }
    return null;
  }

  open(conn: Connection): void {
    this.conns.add(conn);
    this.perIp.set(conn.ip, (this.perIp.get(conn.ip) ?? 0) + 1);
    conn.helloTimer = setTimeout(() => conn.user === null && conn.helloExpired(), this.config.helloTimeoutMs);
    this.ctx.log("info", "open", { conn: conn.id, transport: conn.transport, ip: conn.ip });
  }

  /** The one cleanup of a closed connection; safe to call twice. */
  close(conn: Connection, code: number, reason: string): void {
    if (!this.conns.delete(conn)) return;
    this.release(conn);
    const left = (this.perIp.get(conn.ip) ?? 1) - 1;
    if (left > 0) this.perIp.set(conn.ip, left);
    else this.perIp.delete(conn.ip);
    this.ctx.log("info", "close", {
      conn: conn.id,
      transport: conn.transport,
      ip: conn.ip,
      user: conn.user?.ref.id,
      durationMs: this.ctx.now() - conn.openedAt,
      code: conn.closeWhy?.code ?? code,
      reason: conn.closeWhy?.reason ?? reason,
    });
    if (this.conns.size === 0) this.emptied?.();
  }

  /** Resolves when no connection is open. */
  whenEmpty(): Promise<void> {
    if (this.conns.size === 0) return Promise.resolve();
    return new Promise((resolve) => (this.emptied = resolve));
  }

  /**
   * Spends one token for a frame of `type` from `conn`, then runs `answer`; a connection no
   * longer open spends nothing. Pings and frames before hello spend the connection's own bucket,
   * the rest the user's (§10). With Redis, the user's bucket is one for every instance: the frame
   * waits for the token it `asked` for on arrival (or asks now: it came before its user did), and
   * spends this instance's copy if Redis fails or is slow; with one process nothing waits (no
   * promise, no tick).
   */
  spend(
    conn: Connection,
    type: ClientFrameType | undefined,
    ref: string | undefined,
    answer: () => void | Promise<void>,
    asked: Promise<boolean> | null = null,
  ): void | Promise<void> {
    if (conn.state !== "open") return;
    const now = this.ctx.now();
    const user = type === "ping" ? null : conn.user;
    const shared = asked ?? this.ask(conn, type);
    if (!shared) return this.paid(conn, (user?.bucket ?? conn.bucket).take(now), ref) ? answer() : undefined;
    return this.sharedToken(shared, user!).then(async (taken) => {
      if (conn.state === "open" && this.paid(conn, taken, ref)) await answer();
    });
  }

  /**
   * With Redis, a welcomed connection's frame asks for its token as it arrives, while frames
   * ahead of it are still being answered: a burst waits one round trip, not one per frame. The
   * answers come in the order asked, so each frame is paid for in arrival order (spend takes it).
   * Null when there is nothing to ask ahead: one process, a ping, or no user yet.
   */
  ask(conn: Connection, type: ClientFrameType | undefined): Promise<boolean> | null {
    const user = type === "ping" ? null : conn.user;
    const asked = user ? this.roster.takeFrame(user.ref.id, this.ctx.now()) : null;
    // Marked handled now: it may fail before its frame's turn comes (spend falls back then).
    asked?.catch(() => {});
    return asked;
  }

  /**
   * An empty bucket answers rate_limited; the abuse that follows closes the connection, but only
   * after the messages it had sent are out, so it sees its own accepted words as the others do
   * (§10). Meanwhile it is not read.
   */
  private paid(conn: Connection, taken: boolean, ref: string | undefined): boolean {
    const verdict = taken && !conn.limiter ? "ok" : (conn.limiter ??= new RateLimiter(this.config.rateLimitAbuseErrors)).count(taken);
    if (verdict === "ok") {
      // A limiter after "ok" is as good as a new one: an idle connection holds none.
      conn.limiter = null;
      return true;
    }
    conn.fail("rate_limited", MESSAGES.rateLimited, ref);
    if (verdict === "abuse") this.closeAfterPending(conn, CLOSE.policy, CLOSE_REASON.abuse);
    return false;
  }

  /**
   * The shared bucket's answer, or, if it fails or takes longer than SHARED_BUCKET_WAIT_MS, a
   * token of this instance's copy: a frame never hangs on Redis. Logged once per outage.
   */
  private async sharedToken(shared: Promise<boolean>, user: User): Promise<boolean> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${SHARED_BUCKET_WAIT_MS} ms`)), SHARED_BUCKET_WAIT_MS);
    });
    try {
      const taken = await Promise.race([shared, late]);
      if (this.sharedBucketsDown) this.ctx.log("info", "rate_buckets_shared");
      this.sharedBucketsDown = false;
      return taken;
    } catch (error) {
      if (!this.sharedBucketsDown) this.ctx.log("warn", "rate_buckets_local", { error: String(error) });
      this.sharedBucketsDown = true;
      return user.bucket.take(this.ctx.now());
    } finally {
      clearTimeout(timer);
    }
  }

  /** Stops reading `conn` now and closes it once what it sent is published. */
  closeAfterPending(conn: Connection, code: number, reason: string): void {
    if (conn.state !== "open") return;
    conn.state = "closing";
    void this.batcher.settled().then(() => conn.close(code, reason));
  }

  /** Forgets the rate buckets that are full again and belong to no one online. */
  sweep(now: number): void {
    this.userBuckets.sweep(now, (userId) => this.users.has(userId));
    this.helloBuckets.sweep(now);
  }

  /** Takes the connection out of its rooms (into grace) and away from its user. Idempotent. */
  private release(conn: Connection): void {
    if (conn.released) return;
    conn.released = true;
    if (conn.helloTimer) clearTimeout(conn.helloTimer);
    const user = conn.user;
    if (!user) return;
    removeItem(user.conns, conn);
    for (const room of conn.rooms) this.fanout.unsubscribe(conn, room);
    const now = this.ctx.now();
    // TCP users have no session to come back with, so their leave goes out at once (§4).
    const leftNow = this.presence.drop(conn, user.ref.id, conn.rooms, now, conn.transport === "tcp");
    for (const room of leftNow) this.announceLeave(room, user.ref);
    conn.rooms.length = 0;
    this.forgetIfOffline(user);
    this.scheduleGrace();
  }

  /**
   * A leave goes out after the messages the user sent before it, and only when the user is in
   * the room on no other instance. Ordered before anything the hub does for that user and room next.
   */
  private announceLeave(room: string, user: UserRef): void {
    this.forgetIfEmpty(room);
    const ref = { ...user };
    this.rosterOp(room, ref.id, async () => {
      await this.batcher.settled();
      return this.roster.remove(room, ref);
    })
      .then((last) => last && this.fanout.presence(room, "leave", ref))
      .catch((error) => this.ctx.log("error", "storage", { error: String(error), op: "roster.remove", room }));
  }

  /** A join goes out when the user is new to the room on every instance; the joiner does not hear it. */
  private announceJoin(room: string, user: UserRef, joiner: Connection): void {
    const ref = { ...user };
    this.rosterOp(room, ref.id, () => this.roster.add(room, ref))
      .then((fresh) => fresh && this.fanout.presence(room, "join", ref, undefined, joiner))
      .catch((error) => this.ctx.log("error", "storage", { error: String(error), op: "roster.add", room }));
  }

  /** Runs roster changes for one user and room one after another, so the roster sees them in order. */
  private rosterOp<T>(room: string, userId: string, op: () => Promise<T>): Promise<T> {
    const key = `${room}\n${userId}`;
    const result = (this.rosterChains.get(key) ?? Promise.resolve()).then(op);
    const tail = result.catch(() => {});
    this.rosterChains.set(key, tail);
    void tail.then(() => this.rosterChains.get(key) === tail && this.rosterChains.delete(key));
    return result;
  }

  /** Resolves once the roster changes under way are done (before the engine closes). */
  async rosterSettled(): Promise<void> {
    await Promise.all(this.rosterChains.values());
  }

  /** A dead instance's member of `room`, taken over by this one: in grace, then gone unless it is back. */
  adopt(room: string, user: UserRef): void {
    const verdict = this.presence.adopt(room, user, this.ctx.now());
    if (verdict === "gone") this.announceLeave(room, user);
    else if (verdict === "grace") {
      this.holdName(user);
      this.scheduleGrace();
    }
  }

  /**
   * A member in grace is online (§4), so its name stays its own; its instance, which held it, is
   * gone. Held here until the grace ends (forgetIfOffline lets it go) or the user comes back.
   */
  private holdName(user: UserRef): void {
    if (this.users.has(user.id) || !user.name) return;
    const now = this.ctx.now();
    this.users.set(user.id, { ref: user, conns: [], typingAt: null, bucket: this.userBuckets.get(user.id, now) });
    const key = nameKey(user.name);
    this.names.set(key, user.id);
    this.roster.claimName(key, user.id).catch((error) => this.ctx.log("warn", "storage", { error: String(error), op: "claimName" }));
  }

  /** The roster lost this instance's members (it was taken for dead): tell it again who is here. */
  lost(): void {
    for (const { room } of this.presence.active()) {
      for (const user of this.presence.members(room)) {
        this.rosterOp(room, user.id, () => this.roster.add(room, user)).catch((error) =>
          this.ctx.log("error", "storage", { error: String(error), op: "roster.add", room }),
        );
      }
    }
  }

  /** A presence change or typing from another instance, for the members here. */
  event(event: RoomEvent): void {
    const frame = event.frame;
    if (frame.type === "presence" && frame.event === "rename") this.renamedElsewhere(frame.user);
    if (frame.type === "presence") this.fanout.presence(frame.room, frame.event, frame.user, event.oldName);
    else this.fanout.typed(frame);
  }

  /**
   * The same user renamed itself on another instance: its connections here take the new name
   * too, for what they send from now on, and this instance's hold moves to the new name.
   */
  private renamedElsewhere(renamed: UserRef): void {
    const local = this.users.get(renamed.id);
    if (!local || local.ref.name === renamed.name) return;
    const oldKey = nameKey(local.ref.name);
    if (this.names.get(oldKey) === renamed.id) {
      this.names.delete(oldKey);
      this.roster.releaseName(oldKey, renamed.id);
    }
    const newKey = nameKey(renamed.name);
    this.names.set(newKey, renamed.id);
    this.roster
      .claimName(newKey, renamed.id)
      .catch((error) => this.ctx.log("warn", "storage", { error: String(error), op: "claimName" }));
    local.ref.name = renamed.name;
  }

  /** A room nobody is in and that never had a message is not worth remembering. */
  private forgetIfEmpty(room: string): void {
    const state = this.roomStates.get(room);
    if (state?.heard && !this.relay.hearsAll && !state.joins.size && !state.inflight.size && !this.presence.count(room)) {
      // Nobody here to deliver to: stop hearing it; `seq` is no longer the room's latest.
      this.relay.unwatch(room);
      state.heard = false;
    }
    if (!state || state.seq || state.inflight.size || state.joins.size || this.presence.count(room)) return;
    this.roomStates.delete(room);
  }

  private forgetIfOffline(user: User): void {
    if (user.conns.length > 0 || this.presence.isMember(user.ref.id)) return;
    this.users.delete(user.ref.id);
    const key = nameKey(user.ref.name);
    if (this.names.get(key) === user.ref.id) {
      this.names.delete(key);
      this.roster.releaseName(key, user.ref.id);
    }
  }

  private scheduleGrace(): void {
    const next = this.presence.nextExpiry();
    if (next === null || next >= this.graceAt) return;
    if (this.graceTimer) clearTimeout(this.graceTimer);
    this.graceAt = next;
    this.graceTimer = setTimeout(() => this.endGraces(), Math.max(1, next - this.ctx.now()));
  }

  private endGraces(): void {
    this.graceTimer = null;
    this.graceAt = Infinity;
    for (const { room, user } of this.presence.expire(this.ctx.now())) {
      this.announceLeave(room, user);
      const online = this.users.get(user.id);
      if (online) this.forgetIfOffline(online);
    }
    this.scheduleGrace();
  }

  /**
   * Welcomes `conn` as `rawName`, restoring the session's user when `session` is live. Storage
   * comes first and state changes after, so a failed hello leaves nothing half done. TCP users
   * have no way to present a token: they get none (session null).
   */
  async hello(conn: Connection, rawName: string, session?: string): Promise<Result<{ user: UserRef; session: string | null }>> {
    if (conn.user) return fail("bad_request", "already welcomed");
    const now = this.ctx.now();
    // Counted before anything else, so churning hellos from one address cost no storage (§10);
    // here first (a flood stays off the network), then on every instance.
    if (!this.helloBuckets.get(conn.ip, now).take(now) || !(await this.helloEverywhere(conn.ip, now))) {
      return { ...fail("rate_limited", "too many hellos from your address; wait a minute"), close: { code: CLOSE.policy, reason: CLOSE_REASON.abuse } };
    }
    const name = checkName(rawName);
    if (!name) return fail("name_invalid", MESSAGES.nameInvalid);
    const key = nameKey(name);
    const ttlMs = this.config.sessionTtlSeconds * 1000;
    // An unknown or expired session is not an error: the client simply becomes a new user.
    const restored = session === undefined ? null : await this.store.findSession(hashToken(session), now);
    const userId = restored?.userId ?? newUserId();
    const token = restored ? session! : conn.transport === "ws" ? newToken() : null;
    if (this.nameHolder(key, userId)) return fail("name_taken", MESSAGES.nameTaken);
    // A new token must be on disk before the client holds it; a restored one is pushed back at
    // most every SESSION_REFRESH_MS, so a reconnect storm after a deploy writes nothing.
    if (token !== null && (!restored || restored.expiresAt - now < ttlMs - SESSION_REFRESH_MS)) {
      try {
        await this.store.saveSession(hashToken(token), userId, now + (restored ? ttlMs : Math.min(ttlMs, NEW_SESSION_TTL_MS)));
      } catch (error) {
        this.ctx.log("error", "storage", { error: String(error), op: "saveSession" });
        return fail("internal", MESSAGES.internal);
      }
    }
    // Checked again: with a storage engine behind a network, others may have moved meanwhile.
    if (conn.state !== "open" || conn.user) return fail("internal", "connection closed");
    if (this.nameHolder(key, userId)) return fail("name_taken", MESSAGES.nameTaken);
    // Unique on every instance too: the roster holds the name (one process: the map above is all).
    try {
      if (!(await this.roster.claimName(key, userId))) return fail("name_taken", MESSAGES.nameTaken);
    } catch (error) {
      this.ctx.log("error", "storage", { error: String(error), op: "claimName" });
      return fail("internal", MESSAGES.internal);
    }
    if (conn.state !== "open" || conn.user || this.nameHolder(key, userId)) {
      if (this.names.get(key) !== userId) this.roster.releaseName(key, userId);
      return fail("internal", "connection closed");
    }

    const live = this.users.get(userId)?.conns;
    if (live && live.length >= this.config.maxConnectionsPerSession) {
      // One more than a session may have: its oldest connection goes, as if it had dropped (§10).
      const oldest = live[0]!;
      this.release(oldest);
      oldest.close(CLOSE.replaced, CLOSE_REASON.replaced);
    }
    let user = this.users.get(userId);
    if (!user) {
      user = { ref: { id: userId, name }, conns: [], typingAt: null, bucket: this.userBuckets.get(userId, now) };
      this.users.set(userId, user);
      this.names.set(key, userId);
    } else if (user.ref.name !== name) {
      this.rename(user, name, key);
    }
    user.conns.push(conn);
    conn.user = user;
    if (conn.helloTimer) clearTimeout(conn.helloTimer);
    conn.helloTimer = null;
    return ok({ user: { ...user.ref }, session: token });
  }

  /** HELLO_RATE_PER_MINUTE across instances; a roster that cannot answer does not lock people out. */
  private async helloEverywhere(ip: string, now: number): Promise<boolean> {
    try {
      return await this.roster.takeHello(ip, now);
    } catch (error) {
      this.ctx.log("warn", "storage", { error: String(error), op: "takeHello" });
      return true;
    }
  }

  /** Every room the user is in hears its new name, after the messages it sent under the old one. */
  private rename(user: User, name: string, key: string): void {
    const old = user.ref.name;
    const oldKey = nameKey(old);
    if (this.names.get(oldKey) === user.ref.id) {
      this.names.delete(oldKey);
      this.roster.releaseName(oldKey, user.ref.id);
    }
    this.names.set(key, user.ref.id);
    user.ref.name = name;
    const renamed = { ...user.ref };
    const rooms = this.presence.roomsOfUser(user.ref.id);
    if (rooms.length === 0) return;
    void this.batcher.settled().then(() => {
      for (const room of rooms) this.fanout.presence(room, "rename", renamed, old);
    });
    for (const room of rooms) {
      this.rosterOp(room, renamed.id, async () => {
        await this.batcher.settled();
        await this.roster.rename(room, renamed, old);
      }).catch((error) => this.ctx.log("error", "storage", { error: String(error), op: "roster.rename", room }));
    }
  }

  /** Whether another online user holds the name whose confusable skeleton is `key` (nameKey). */
  private nameHolder(key: string, userId: string): boolean {
    const holder = this.names.get(key);
    return holder !== undefined && holder !== userId;
  }

  /** The room's state, created if new, moved to the end of the use order. */
  private roomState(room: string): RoomState {
    let state = this.roomStates.get(room);
    if (state) this.roomStates.delete(room);
    else state = this.newRoomState(room, null, 0);
    this.roomStates.set(room, state);
    if (this.roomStates.size > ROOM_STATES_MAX) this.evictRoomStates();
    return state;
  }

  private newRoomState(name: string, seq: number | null, ts: number): RoomState {
    return { name, seq, ts, inflight: new Set(), joins: new Set(), heard: this.relay.hearsAll, hearing: null, filling: false, backlog: [] };
  }

  /** Forgets the least recently used rooms that nobody is in and nothing is on its way to. */
  private evictRoomStates(): void {
    for (const [room, state] of this.roomStates) {
      if (this.roomStates.size <= ROOM_STATES_MAX) return;
      if (state.inflight.size || state.joins.size || this.presence.count(room)) continue;
      if (state.hearing || (state.heard && !this.relay.hearsAll)) continue;
      this.roomStates.delete(room);
    }
  }

  /**
   * The one way a stored message reaches its room. A seq already published here is dropped (an
   * engine that relays from elsewhere may repeat one); joins reading history right now collect it.
   */
  private publish(message: MessageFrame): void {
    const state = this.roomState(message.room);
    if (state.seq !== null && message.seq <= state.seq) return;
    state.seq = message.seq;
    state.ts = message.ts;
    for (const collected of state.joins) collected.push(message);
    this.fanout.message(message);
    this.relay.delivered(message);
  }

  /**
   * A stored message, from the relay: delivered in seq order, once. A repeat is dropped (by
   * publish); after a gap, history fills it in first. What comes while the room is being heard
   * or filled waits in its backlog.
   */
  receive(message: MessageFrame): void {
    const state = this.roomStates.get(message.room);
    if (!state || (!state.heard && !state.hearing)) return;
    const gap = state.seq !== null && message.seq > state.seq + 1;
    if (state.hearing || state.filling || state.backlog.length || gap) {
      state.backlog.push(message);
      if (!state.hearing && !state.filling) void this.fill(message.room, state);
      return;
    }
    this.publish(message);
  }

  /** The relay may have missed the room's latest messages (it reconnected; a periodic check): read on. */
  catchUp(room: string): void {
    const state = this.roomStates.get(room);
    if (state?.heard && !state.hearing && !state.filling) void this.fill(room, state);
  }

  /**
   * Starts hearing a room this instance does not hear yet: subscribe first, then read the stored
   * seq, where the relay starts. Everything up to it is in storage (the join reads it there),
   * everything after it is heard; what was heard meanwhile waits in the backlog.
   */
  private hear(room: string, state: RoomState): Promise<void> {
    state.hearing ??= (async () => {
      try {
        await this.relay.watch(room);
        state.seq = (await this.store.roomInfo(room)).seq;
        state.heard = true;
      } catch (error) {
        this.relay.unwatch(room);
        state.backlog = [];
        throw error;
      } finally {
        state.hearing = null;
      }
      this.deliverBacklog(state);
    })();
    return state.hearing;
  }

  /**
   * Publishes what storage holds after the room's last published seq, up to its stored seq, then
   * the backlog. A failed read leaves the backlog for the next catch-up or message.
   */
  private async fill(room: string, state: RoomState): Promise<void> {
    state.filling = true;
    try {
      const stored = (await this.store.roomInfo(room)).seq;
      if (state.seq !== null && stored < state.seq) {
        // Storage came back with less than was published (Redis restarted without its data):
        // go on from what it holds. Clients see a seq below their `since` and start over.
        this.ctx.log("warn", "seq_went_back", { room, published: state.seq, stored });
        state.seq = stored;
        this.resetRoom(room);
      }
      for (let pages = 0; (state.seq ?? 0) < stored && pages < FILL_PAGES_MAX; pages++) {
        const page = await this.store.page(room, { after: state.seq ?? 0, before: stored + 1, limit: HISTORY_PAGE_MAX });
        if (page.messages.length === 0) break;
        for (const m of page.messages) this.publish(m);
      }
    } catch (error) {
      this.ctx.log("error", "storage", { error: String(error), op: "fill", room });
      return;
    } finally {
      state.filling = false;
    }
    this.deliverBacklog(state);
  }

  /**
   * The room's history went back (Redis lost data): its WebSocket clients here hold seqs that now
   * name other messages and would drop the new ones as repeats. Closed with 1001, they come back
   * with `since`, see the room's seq below it and start over. TCP users keep no seq: they stay.
   */
  private resetRoom(room: string): void {
    for (const conn of this.conns) {
      if (conn.transport === "ws" && conn.rooms.includes(room)) conn.close(CLOSE.shutdown, CLOSE_REASON.reset);
    }
  }

  private deliverBacklog(state: RoomState): void {
    const backlog = state.backlog.sort((a, b) => a.seq - b.seq);
    state.backlog = [];
    for (const m of backlog) this.receive(m);
  }

  /**
   * Joins `conn` to `room`. `joined` is handed to `conn` in the same step that subscribes it, so
   * it comes before any live event of the room (§10 ordering), and every message is in it or
   * live exactly once: history is read up to the seq published so far, and what is published
   * while it is read is collected and added.
   */
  async join(conn: Connection, room: string, since: number | undefined, limit: number, ref?: string): Promise<Result<null>> {
    if (!isRoom(room)) return fail("room_invalid", MESSAGES.roomInvalid);
    if (!conn.rooms.includes(room) && conn.rooms.length >= this.config.maxRoomsPerConnection) {
      return fail("too_many_rooms", `at most ${this.config.maxRoomsPerConnection} rooms per connection`);
    }
    const state = this.roomState(room);
    room = state.name;
    const collected: MessageFrame[] = [];
    state.joins.add(collected);
    if (!state.heard) {
      // Subscribe first, then read: what is published while history is read is heard, not lost.
      try {
        await this.hear(room, state);
      } catch (error) {
        state.joins.delete(collected);
        this.forgetIfEmpty(room);
        this.ctx.log("error", "storage", { error: String(error), op: "hear", room });
        return fail("internal", MESSAGES.internal);
      }
    }
    // Nothing is on its way to a room without a state (sends need a member, members a state), so
    // without a known seq, storage holds exactly what was published.
    const readUpTo = state.seq;
    const before = readUpTo === null ? undefined : readUpTo + 1;
    let info, page, others;
    try {
      [info, page, others] = await Promise.all([
        this.store.roomInfo(room),
        this.store.page(room, since === undefined ? { before, limit } : { after: since, before, limit }),
        this.roster.others(room),
      ]);
    } finally {
      state.joins.delete(collected);
    }
    const user = conn.user;
    state.seq ??= info.seq;
    if (conn.state !== "open" || conn.released || !user) {
      this.forgetIfEmpty(room);
      return fail("internal", "connection closed");
    }
    const read = readUpTo ?? info.seq;
    const fresh = collected.filter((m) => m.seq > read && (since === undefined || m.seq > since));
    let { messages, complete } = page;
    if (since === undefined) {
      messages = messages.concat(fresh);
      if (messages.length > limit) [messages, complete] = [messages.slice(messages.length - limit), false];
    } else if (complete && fresh.length) {
      messages = messages.concat(fresh);
      if (messages.length > limit) [messages, complete] = [messages.slice(0, limit), false];
    }
    const first = !conn.rooms.includes(room);
    const isNew = first && this.presence.join(room, user.ref, conn) === "new";
    const joined: JoinedFrame = {
      type: "joined",
      room,
      seq: state.seq,
      oldestSeq: info.oldestSeq || (fresh[0]?.seq ?? 0),
      members: this.membersWith(room, others),
      messages,
      complete,
    };
    conn.joined(withRef(joined, ref));
    if (first) {
      this.fanout.subscribe(conn, room);
      conn.rooms.push(room);
      this.ctx.metrics.joins++;
      if (isNew) this.announceJoin(room, user.ref, conn);
    }
    return ok(null);
  }

  /**
   * An explicit leave has no grace, and leaves only this connection: the others see the user
   * leave when its last connection has left (§10). It completes after the leaver's pending
   * messages are published, so the leaver still hears its own last words and the others hear
   * them before the leave; the leaver, unsubscribed by then, does not hear its own leave.
   */
  async leave(conn: Connection, room: string): Promise<Result<null>> {
    if (!isRoom(room)) return fail("room_invalid", MESSAGES.roomInvalid);
    const user = conn.user!;
    if (!removeItem(conn.rooms, room)) return fail("not_joined", `not in ${room}`);
    const wasLast = this.presence.leave(room, user.ref.id, conn);
    if (wasLast) user.typingAt?.delete(room);
    const ref = { ...user.ref };
    // Put in line now, so that a join of the same user that follows waits for it.
    const gone = wasLast
      ? this.rosterOp(room, ref.id, async () => {
          await this.batcher.settled();
          return this.roster.remove(room, ref);
        }).catch((error) => {
          this.ctx.log("error", "storage", { error: String(error), op: "roster.remove", room });
          return false;
        })
      : null;
    await this.batcher.settled();
    if (!conn.rooms.includes(room)) this.fanout.unsubscribe(conn, room);
    if (gone) {
      if (await gone) this.fanout.presence(room, "leave", ref);
      this.forgetIfEmpty(room);
    }
    return ok(null);
  }

  send(conn: Connection, room: string, id: string, rawText: string): Result<null> {
    if (!isRoom(room)) return fail("room_invalid", MESSAGES.roomInvalid);
    if (!conn.rooms.includes(room)) return fail("not_joined", `not in ${room}`);
    const text = normalizeText(rawText, this.config.maxMessageChars);
    if (text === null) {
      return fail("text_invalid", `text is 1 to ${this.config.maxMessageChars} characters, no control characters but tab and newline`);
    }
    this.ctx.metrics.messagesIn++;
    const user = conn.user!.ref;
    const message: NewMessage = { room, user: { id: user.id, name: user.name }, id, text, ts: this.ctx.now() };
    this.roomState(room).inflight.add(message);
    this.batcher.add(message, conn);
    return ok(null);
  }

  typing(conn: WsConnection, room: string): Result<null> {
    if (!isRoom(room)) return fail("room_invalid", MESSAGES.roomInvalid);
    if (!conn.rooms.includes(room)) return fail("not_joined", `not in ${room}`);
    const user = conn.user!;
    const now = this.ctx.now();
    const last = user.typingAt?.get(room);
    if (last !== undefined && now - last < this.config.typingThrottleMs) return ok(null);
    (user.typingAt ??= new Map()).set(room, now);
    this.fanout.typing(room, user.ref, conn);
    return ok(null);
  }

  async history(room: string, query: PageQuery): Promise<Result<Page>> {
    if (!isRoom(room)) return fail("room_invalid", MESSAGES.roomInvalid);
    return ok(await this.store.page(room, query));
  }

  /**
   * Rooms with members, busiest first, with their latest seq: from memory with one process; with
   * several, members on every instance, from the roster, and seq from storage for rooms not heard
   * here, asked at most once per SHARED_ROOMS_CACHE_MS however often this is polled.
   */
  rooms(): Promise<RoomEntry[]> {
    if (this.relay.hearsAll) return this.activeRooms();
    return this.cached("rooms", () => this.activeRooms());
  }

  /** The directory: from memory with one process; with several, from storage, cached likewise. */
  recentRooms(): Promise<RoomEntry[]> {
    if (this.relay.hearsAll) return Promise.resolve(this.recentHere());
    return this.cached("recent", async () => {
      const [recent, active] = await Promise.all([this.store.recentRooms(RECENT_ROOMS_MAX), this.roster.active()]);
      const members = new Map((active ?? this.presence.active()).map((r) => [r.room, r.members]));
      return recent.map((r) => ({ room: r.room, members: members.get(r.room) ?? 0, seq: r.seq, ts: r.ts }));
    });
  }

  private cached(key: string, load: () => Promise<RoomEntry[]>): Promise<RoomEntry[]> {
    const now = this.ctx.now();
    const hit = this.cache.get(key);
    if (hit && hit.until > now) return hit.value;
    const value = load();
    this.cache.set(key, { until: now + SHARED_ROOMS_CACHE_MS, value });
    // A failed read is not kept: the next request asks again.
    value.catch(() => this.cache.get(key)?.value === value && this.cache.delete(key));
    return value;
  }

  private async activeRooms(): Promise<RoomEntry[]> {
    const active = ((await this.roster.active()) ?? this.presence.active()).sort(
      (a, b) => b.members - a.members || a.room.localeCompare(b.room),
    );
    return Promise.all(
      active.map(async (r) => {
        const state = this.roomStates.get(r.room);
        const known = this.relay.hearsAll || state?.heard;
        return { ...r, seq: known ? (state?.seq ?? 0) : (await this.store.roomInfo(r.room)).seq };
      }),
    );
  }

  /** Every member of `room` once, on every instance. */
  async members(room: string): Promise<UserRef[]> {
    return this.membersWith(room, await this.roster.others(room));
  }

  /** The members here, then those only on other instances. */
  private membersWith(room: string, others: UserRef[]): UserRef[] {
    const here = this.presence.members(room);
    return others.length ? here.concat(others.filter((u) => !this.presence.has(room, u.id))) : here;
  }

  /** Starts the directory with what storage holds, so a restart does not empty it. */
  async loadRecentRooms(): Promise<void> {
    for (const { room, seq, ts } of await this.store.recentRooms(RECENT_ROOMS_MAX)) {
      this.roomStates.set(room, this.newRoomState(room, seq, ts));
    }
  }

  /** Rooms with messages this hub has seen, newest message first, from memory. */
  private recentHere(): RoomEntry[] {
    const recent: RoomEntry[] = [];
    // A room whose latest time is unknown was not among the newest at start, nor written since.
    for (const [room, state] of this.roomStates) {
      if (state.seq && state.ts) recent.push({ room, members: this.presence.count(room), seq: state.seq, ts: state.ts });
    }
    return recent.sort((a, b) => b.ts! - a.ts! || a.room.localeCompare(b.room)).slice(0, RECENT_ROOMS_MAX);
  }

  dispose(): void {
    if (this.graceTimer) clearTimeout(this.graceTimer);
    this.graceTimer = null;
    for (const conn of this.conns) if (conn.helloTimer) clearTimeout(conn.helloTimer);
  }
}

// ─── WebSocket handlers ───────────────────────────────────────────────────────────────────────

function limitsOf(config: Config): Limits {
  return {
    maxTextChars: config.maxMessageChars,
    maxPayloadBytes: config.maxPayloadBytes,
    maxRooms: config.maxRoomsPerConnection,
    rate: { burst: config.rateLimitBurst, perSecond: config.rateLimitPerSecond },
    historyOnJoin: config.historyOnJoin,
    typingThrottleMs: config.typingThrottleMs,
  };
}

/** Answers a refused request; a refusal that is abuse also closes the connection. */
function refuse(conn: Connection, failure: Failure, ref?: string): void {
  conn.fail(failure.code, failure.message, ref);
  if (failure.close) conn.close(failure.close.code, failure.close.reason);
}

function websocketHandlers(hub: Hub, ctx: Context): WebSocketHandler<WsConnection> {
  const config = ctx.config;
  const limits = limitsOf(config);
  return {
    idleTimeout: config.idleTimeoutSeconds,
    sendPings: true,
    maxPayloadLength: config.maxPayloadBytes,
    backpressureLimit: config.backpressureLimitBytes,
    closeOnBackpressureLimit: true,
    publishToSelf: false,
    perMessageDeflate: false,

    open(ws) {
      ws.data.ws = ws;
      hub.open(ws.data);
    },

    message(ws, raw) {
      const conn = ws.data;
      if (conn.state !== "open") return;
      if (typeof raw !== "string") {
        conn.fail("unsupported", MESSAGES.unsupported);
        conn.close(CLOSE.binary, CLOSE_REASON.binary);
        return;
      }
      const parsed = parseFrame(raw);
      const asked = hub.ask(conn, parsed.ok ? parsed.frame.type : parsed.type);
      conn.enqueue(() => handleFrame(conn, parsed, asked));
    },

    close(ws, code, reason) {
      const conn = ws.data;
      conn.state = "closed";
      if (!conn.closeWhy && code === CLOSE_ABNORMAL && conn.slowConsumer()) {
        ctx.metrics.backpressureCloses++;
        conn.closeWhy = { code, reason: "backpressure" };
      }
      hub.close(conn, code, reason);
    },

    error(error, ws) {
      ctx.log("error", "unexpected", { conn: ws.data.id, error: String(error), stack: error.stack });
    },
  };

  /** Answers one frame once it is paid for; a frame that waits (for storage, or Redis) returns the promise its connection waits on. */
  function handleFrame(conn: WsConnection, parsed: Parsed, asked: Promise<boolean> | null): void | Promise<void> {
    return hub.spend(conn, parsed.ok ? parsed.frame.type : parsed.type, parsed.ref, () => answer(conn, parsed), asked);
  }

  function answer(conn: WsConnection, parsed: Parsed): void | Promise<void> {
    const type = parsed.ok ? parsed.frame.type : parsed.type;
    const ref = parsed.ref;
    if (!conn.user && type !== undefined && type !== "hello" && type !== "ping") {
      return conn.fail("not_ready", MESSAGES.notReady, ref);
    }
    if (!parsed.ok) return conn.fail("bad_request", parsed.message, ref);
    const frame = parsed.frame;
    switch (frame.type) {
      case "ping":
        return conn.send(withRef({ type: "pong" }, ref));
      case "hello":
        return hub.hello(conn, frame.name, frame.session).then((r) => {
          if (!r.ok) return refuse(conn, r, ref);
          conn.send(withRef({ type: "welcome", user: r.value.user, session: r.value.session!, limits }, ref));
        });
      case "join":
        return hub.join(conn, frame.room, frame.since, config.historyOnJoin, ref).then((r) => {
          if (!r.ok) conn.fail(r.code, r.message, ref);
        });
      case "leave":
        return hub.leave(conn, frame.room).then((r) => {
          if (!r.ok) return conn.fail(r.code, r.message, ref);
          conn.send(withRef({ type: "left", room: frame.room }, ref));
        });
      case "send": {
        const r = hub.send(conn, frame.room, frame.id, frame.text);
        if (!r.ok) return conn.fail(r.code, r.message, ref);
        return;
      }
      case "typing": {
        const r = hub.typing(conn, frame.room);
        if (!r.ok) return conn.fail(r.code, r.message, ref);
        return;
      }
      case "history":
        return hub.history(frame.room, { after: frame.after, before: frame.before, limit: frame.limit ?? HISTORY_PAGE_DEFAULT }).then((r) => {
          if (!r.ok) return conn.fail(r.code, r.message, ref);
          conn.send(withRef({ type: "history", room: frame.room, ...r.value }, ref));
        });
    }
  }
}

// ─── The plain-TCP door (protocol §9) ─────────────────────────────────────────────────────────

const TCP_GREETING =
  "* Welcome to bun-chat. Pick a name (letters, digits, space, _ - .); you start in general. /help lists commands.";
const TCP_HELP = [
  "* /join ROOM   join a room and make it current (shows its last 10 messages)",
  "* /leave       leave the current room",
  "* /rooms       list active rooms",
  "* /who         list who is in the current room",
  "* /quit        disconnect",
  "* anything else is said in the current room",
];

function startTcp(hub: Hub, ctx: Context, port: number): TCPSocketListener<TcpConnection> {
  const config = ctx.config;
  return Bun.listen<TcpConnection>({
    hostname: config.host,
    port,
    socket: {
      open(socket) {
        const conn = new TcpConnection(ctx, socket.remoteAddress, socket);
        socket.data = conn;
        const refusal = hub.admit(conn.ip);
        if (refusal) {
          conn.line(`! ${refusal.error}: try again later`);
          conn.end();
          return;
        }
        hub.open(conn);
        // Keepalive probes are TCP's pings: a silent peer that still answers them stays.
        socket.setKeepAlive(true, config.idleTimeoutSeconds * 1000);
        conn.line(TCP_GREETING);
        conn.prompt();
      },
      data(socket, chunk) {
        const conn = socket.data;
        if (conn.state !== "open") return;
        for (const line of conn.splitter.push(chunk)) {
          const asked = hub.ask(conn, undefined);
          if (line === TOO_LONG) {
            conn.enqueue(() =>
              hub.spend(
                conn,
                undefined,
                undefined,
                () => {
                  conn.fail(LINE_TOO_LONG, `lines are at most ${config.tcpMaxLineBytes} bytes; that one was dropped`);
                  if (!conn.user) conn.prompt();
                },
                asked,
              ),
            );
          } else {
            const text = decoder.decode(line);
            conn.enqueue(() => hub.spend(conn, undefined, undefined, () => onLine(conn, text), asked));
          }
        }
      },
      drain(socket) {
        socket.data.flush();
      },
      close(socket) {
        const conn = socket.data;
        conn.closed();
        hub.close(conn, 0, "closed");
      },
      error(socket, error) {
        ctx.log("warn", "tcp_error", { conn: socket.data?.id, error: String(error) });
      },
    },
  });

  /** One line, paid for. */
  async function onLine(conn: TcpConnection, text: string): Promise<void> {
    if (!conn.user) {
      const r = await hub.hello(conn, text);
      if (!r.ok) {
        refuse(conn, r);
        return r.close ? undefined : conn.prompt();
      }
      return join(conn, TCP_FIRST_ROOM);
    }
    if (!text.startsWith("/")) {
      if (!conn.current) return conn.fail("not_joined", "you are in no room; /join ROOM");
      const r = hub.send(conn, conn.current, conn.nextId(), text);
      if (!r.ok) return conn.fail(r.code, r.message);
      // The next line waits for this one to be published, so a pasted script reads back in
      // order and a `/quit` right after a line still shows that line.
      return hub.batcher.settled();
    }
    const [command = "", arg] = text.trim().split(/\s+/);
    switch (command.toLowerCase()) {
      case "/join":
        if (!arg) return conn.fail("bad_request", "usage: /join ROOM");
        return join(conn, arg);
      case "/leave": {
        const room = conn.current;
        if (!room) return conn.fail("not_joined", "you are in no room");
        const r = await hub.leave(conn, room);
        if (!r.ok) return conn.fail(r.code, r.message);
        conn.recent.splice(conn.recent.indexOf(room), 1);
        conn.current = conn.recent.at(-1) ?? null;
        conn.line(`* left ${room}`);
        if (conn.current) conn.line(`* now in ${conn.current} (${(await hub.members(conn.current)).length} here)`);
        else conn.line("* you are in no room; /join ROOM");
        return;
      }
      case "/rooms": {
        const rooms = await hub.rooms();
        return conn.line(`* rooms: ${rooms.map((r) => `${r.room} (${r.members})`).join(", ") || "none"}`);
      }
      case "/who": {
        if (!conn.current) return conn.fail("not_joined", "you are in no room; /join ROOM");
        const names = (await hub.members(conn.current)).map((u) => u.name);
        return conn.line(`* in ${conn.current}: ${names.join(", ")}`);
      }
      case "/help":
        return TCP_HELP.forEach((line) => conn.line(line));
      case "/quit":
        conn.line("* bye");
        return conn.close(CLOSE.normal, "quit");
      default:
        return conn.fail("bad_request", "unknown command");
    }
  }

  async function join(conn: TcpConnection, room: string): Promise<void> {
    const r = await hub.join(conn, room, undefined, TCP_JOIN_HISTORY);
    if (!r.ok) return conn.fail(r.code, r.message);
  }
}

// ─── HTTP routes ──────────────────────────────────────────────────────────────────────────────

/** The page's Content-Security-Policy (protocol §6): nothing but this server, no inline code. */
const CSP = {
  defaultSrc: ["'self'"],
  connectSrc: ["'self'"],
  imgSrc: ["'self'", "data:"],
  frameAncestors: ["'none'"],
  baseUri: ["'none'"],
  formAction: ["'self'"],
};

/** The page, read and bundled once at start. */
export interface Assets {
  html: string;
  css: string;
  js: string;
  icon: string;
}

/**
 * The page as `bun run build` bundled it into a compiled binary (deploy/build.ts defines it);
 * undefined under `bun run server.ts`, which bundles public/ once per process instead.
 */
declare const BUN_CHAT_PAGE: Assets | undefined;

const PUBLIC_DIR = new URL("./public/", import.meta.url);

/** One bundle per process, shared by every createServer (a test run starts hundreds). */
let bundled: Promise<Assets> | null = null;

function loadAssets(): Promise<Assets> {
  if (typeof BUN_CHAT_PAGE !== "undefined") return Promise.resolve(BUN_CHAT_PAGE);
  return (bundled ??= bundleAssets());
}

/** Reads public/ and bundles public/app.ts for the browser; deploy/build.ts embeds the result. */
export async function bundleAssets(): Promise<Assets> {
  const read = (name: string) => Bun.file(new URL(name, PUBLIC_DIR)).text();
  const build = await Bun.build({
    entrypoints: [Bun.fileURLToPath(new URL("app.ts", PUBLIC_DIR))],
    target: "browser",
    minify: true,
  });
  const bundle = build.outputs[0];
  if (!build.success || !bundle) throw new AggregateError(build.logs, "public/app.ts did not build");
  const [html, css, js, icon] = await Promise.all([read("index.html"), read("style.css"), bundle.text(), read("favicon.svg")]);
  return { html, css, js, icon };
}

/**
 * Origin check against cross-site WebSocket hijacking (§6): no Origin (not a browser), a listed
 * origin, or an origin whose host:port is the Host asked for. Scheme is not compared, since TLS
 * usually ends at a proxy in front of us.
 */
export function originAllowed(origin: string | null, host: string | null, allowed: readonly string[]): boolean {
  if (origin === null) return true;
  let url: URL;
  try {
    url = new URL(origin);
  } catch {
    return false;
  }
  if (url.origin === "null") return false;
  if (allowed.includes(url.origin)) return true;
  return host !== null && url.host === host.toLowerCase();
}

/**
 * The client's address as a trusted proxy passed it (§10): Fly-Client-IP, else the rightmost
 * X-Forwarded-For entry, the one the proxy next to us appended; entries to its left are whatever
 * the client sent. A value that is not an IP address counts as absent.
 */
export function forwardedIp(headers: Headers): string | null {
  const fly = headers.get("fly-client-ip")?.trim();
  if (fly && isIP(fly)) return fly;
  const rightmost = headers.get("x-forwarded-for")?.split(",").at(-1)?.trim();
  return rightmost && isIP(rightmost) ? rightmost : null;
}

function clientIp(req: Request, server: Server<WsConnection>, trustProxy: boolean): string {
  return (trustProxy && forwardedIp(req.headers)) || (server.requestIP(req)?.address ?? "unknown");
}

/** Compares two secrets in time that does not depend on where they differ. */
function sameSecret(given: string, expected: string): boolean {
  const digest = (s: string) => createHash("sha256").update(s).digest();
  return timingSafeEqual(digest(given), digest(expected));
}

/** Parses `after`, `before` and `limit` of a history query string; null if one is malformed. */
export function pageQuery(params: URLSearchParams): PageQuery | null {
  const num = (name: string, min: number, max: number): number | undefined | null => {
    const raw = params.get(name);
    if (raw === null) return undefined;
    if (!/^\d{1,16}$/.test(raw)) return null;
    const n = Number(raw);
    return n >= min && n <= max ? n : null;
  };
  const after = num("after", 0, Number.MAX_SAFE_INTEGER);
  const before = num("before", 0, Number.MAX_SAFE_INTEGER);
  const limit = num("limit", 1, HISTORY_PAGE_MAX);
  if (after === null || before === null || limit === null) return null;
  return { after, before, limit: limit ?? HISTORY_PAGE_DEFAULT };
}

/** PUBLIC_HOSTS is set and the request's Host is not one of them (§10: DNS rebinding). */
function misdirected(req: Request, config: Config): boolean {
  if (!config.publicHosts.length) return false;
  const host = hostKey(req.headers.get("host") ?? "");
  return host === null || !config.publicHosts.includes(host);
}

type Admission = { ip: string } | { status: 403 | 421 | 426 | 429 | 503; error: string; headers?: Record<string, string> };

/** Whether a request to /ws may upgrade (§6, §10), and the client's address when it may. */
function admitWs(req: Request, server: Server<WsConnection>, hub: Hub, ctx: Context): Admission {
  if (misdirected(req, ctx.config)) return { status: 421, error: "misdirected" };
  if (!originAllowed(req.headers.get("origin"), req.headers.get("host"), ctx.config.allowedOrigins)) {
    return { status: 403, error: "origin_not_allowed" };
  }
  if (req.headers.get("upgrade")?.toLowerCase() !== "websocket") {
    return { status: 426, error: "upgrade_required", headers: { upgrade: "websocket" } };
  }
  const ip = clientIp(req, server, ctx.config.trustProxy);
  return hub.admit(ip) ?? { ip };
}

type HonoEnv = { Bindings: Server<WsConnection> };

function createApp(hub: Hub, ctx: Context, assets: Promise<Assets>, startedAt: number): Hono<HonoEnv> {
  const app = new Hono<HonoEnv>();
  app.use(secureHeaders({ contentSecurityPolicy: CSP }));
  // DNS rebinding: a page on evil.example whose name now resolves to us sends its own Host and
  // Origin, which agree, so the Origin check passes; only our own names are answered (§10).
  const { publicHosts, metricsToken } = ctx.config;
  if (publicHosts.length) {
    app.use(async (c, next) => {
      if (misdirected(c.req.raw, ctx.config)) return c.json({ error: "misdirected" }, 421);
      return next();
    });
  }

  const asset = (body: (page: Assets) => string, type: string) => async () =>
    new Response(body(await assets), { headers: { "content-type": type, "cache-control": "no-cache" } });
  app.get("/", asset((page) => page.html, "text/html; charset=utf-8"));
  app.get("/app.js", asset((page) => page.js, "text/javascript; charset=utf-8"));
  app.get("/style.css", asset((page) => page.css, "text/css; charset=utf-8"));
  app.get("/favicon.svg", asset((page) => page.icon, "image/svg+xml"));

  app.get("/healthz", (c) => {
    if (hub.draining) return c.json({ status: "draining" }, 503);
    const engine = hub.relay.health();
    // A load balancer stops sending new users to an instance that cannot reach Redis, or whose
    // disk failed: it takes no more messages.
    if (engine?.redis === "down") return c.json({ status: "unavailable", ...engine }, 503);
    if (hub.store.failure()) return c.json({ status: "unavailable", storage: "failed" }, 503);
    return c.json({
      status: "ok",
      connections: hub.conns.size,
      rooms: hub.presence.active().length,
      uptime: Math.floor((ctx.now() - startedAt) / 1000),
    });
  });

  app.get("/metrics", (c) => {
    if (metricsToken !== null) {
      const token = /^Bearer (\S+)$/i.exec(c.req.header("authorization") ?? "")?.[1];
      if (token === undefined || !sameSecret(token, metricsToken)) {
        return c.json({ error: "unauthorized" }, 401, { "www-authenticate": 'Bearer realm="metrics"' });
      }
    }
    return c.text(ctx.metrics.render(hub.conns.size), 200, { "content-type": "text/plain; version=0.0.4; charset=utf-8" });
  });

  // From memory, however many rooms there are: this endpoint is public and polled.
  app.get("/api/rooms", async (c) => c.json({ rooms: await (c.req.query("recent") === "1" ? hub.recentRooms() : hub.rooms()) }));

  app.get("/api/rooms/:room/messages", async (c) => {
    const room = c.req.param("room");
    if (!isRoom(room)) return c.json({ error: "room_invalid" }, 400);
    const query = pageQuery(new URL(c.req.url).searchParams);
    if (!query) return c.json({ error: "bad_request" }, 400);
    const r = await hub.history(room, query);
    if (!r.ok) return c.json({ error: r.code }, 400);
    return c.json({ room, ...r.value });
  });

  // Upgrades take Bun's native /ws route (createServer): what comes here was refused there, or
  // admitted and not a valid upgrade (Bun's upgrade() said no).
  app.get("/ws", (c) => {
    const admission = admitWs(c.req.raw, c.env, hub, ctx);
    if ("error" in admission) return c.json({ error: admission.error }, admission.status, admission.headers);
    return c.json({ error: "bad_upgrade" }, 400);
  });

  app.notFound((c) => c.json({ error: "not_found" }, 404));
  app.onError((error, c) => {
    ctx.log("error", "unexpected", { path: c.req.path, error: String(error), stack: error.stack });
    return c.json({ error: "internal" }, 500);
  });
  return app;
}

// ─── createServer ─────────────────────────────────────────────────────────────────────────────

export interface ServerOptions extends Partial<Config> {
  /** Where log lines go, one JSON object each; console.log by default. */
  log?: (line: string) => void;
  /** The clock, in epoch ms. */
  now?: () => number;
  /** A storage engine to use instead of SQLite at databasePath. */
  store?: Store;
  /** With REDIS_URL: how often every heard room's stored seq is checked for a lost tail (tests shorten it). */
  tailCheckMs?: number;
}

export interface ChatServer {
  server: Server<WsConnection>;
  /** The HTTP base URL, e.g. http://127.0.0.1:3000/ */
  url: URL;
  /** The TCP door's port, when it is open. */
  tcpPort: number | null;
  config: Config;
  /** Shuts down as §7 says: drain, close every client, stop listening, close storage. */
  stop(): Promise<void>;
  /** Sizes of the hub's bounded memory, for tests and debugging. */
  inspect(): { users: number; roomStates: number; userBuckets: number; helloBuckets: number };
}

export async function createServer(options: ServerOptions = {}): Promise<ChatServer> {
  const { log: sink, now = Date.now, store: givenStore, tailCheckMs, ...settings } = options;
  const config = resolveConfig(settings);
  const ctx: Context = { config, now, metrics: new Metrics(), log: createLogger(config.logLevel, sink) };
  // Bundled while the server already listens: clients reconnecting after a restart need no page
  // and are accepted at once (issue #8: cold start); a request for the page waits for it.
  const assets = loadAssets();
  assets.catch((error) => ctx.log("error", "page", { error: String(error) }));
  // A given store stands alone, like SQLite; REDIS_URL brings Redis's store and relay together.
  const { store, relay, roster }: { store: Store; relay: Relay; roster: Roster } =
    givenStore || config.redisUrl === null
      ? {
          store: givenStore ?? new SqliteStore(config.databasePath, config.historyRetain, historyBounds(config)),
          relay: new LocalRelay(),
          roster: new LocalRoster(),
        }
      : await openRedis(config, config.redisUrl, ctx.log, now, tailCheckMs);
  const closeEngine = () => roster.close().then(() => relay.close()).then(() => store.close());
  const fanout = new Fanout(ctx, relay);
  const hub = new Hub(ctx, store, fanout, relay, roster);
  const app = createApp(hub, ctx, assets, now());
  try {
    // Trimmed before the room directory is read from storage, so it lists no emptied room.
    if (config.historyMaxAgeDays) await store.sweepHistory(now());
    await hub.loadRecentRooms();
    await roster.start();
  } catch (error) {
    await closeEngine();
    throw error;
  }

  let server: Server<WsConnection>;
  let tcp: TCPSocketListener<TcpConnection> | null = null;
  try {
    server = Bun.serve<WsConnection>({
      port: config.port,
      hostname: config.host,
      development: false,
      routes: {
        // The hot path of every connect, natively routed: Hono's context and headers would be
        // built for a 101 that never carries them (issue #8: connects). Bun calls `open` inside
        // upgrade(), so the caps checked in admitWs cannot be raced past. Hono answers refusals.
        "/ws": (req: Request, srv: Server<WsConnection>) => {
          const admission = admitWs(req, srv, hub, ctx);
          if ("ip" in admission && srv.upgrade(req, { data: new WsConnection(ctx, admission.ip) })) return;
          return app.fetch(req, srv);
        },
      },
      fetch: (req, srv) => app.fetch(req, srv),
      websocket: websocketHandlers(hub, ctx),
    });
    fanout.server = server;
    try {
      if (config.tcpPort !== null) tcp = startTcp(hub, ctx, config.tcpPort);
    } catch (error) {
      await server.stop(true);
      throw error;
    }
  } catch (error) {
    await closeEngine();
    throw error;
  }

  const sweep = () =>
    store.sweepSessions(now()).catch((error) => ctx.log("error", "storage", { error: String(error), op: "sweepSessions" }));
  void sweep();
  const sweeper = setInterval(sweep, SESSION_SWEEP_INTERVAL_MS);
  const trimHistory = () =>
    store.sweepHistory(now()).catch((error) => ctx.log("error", "storage", { error: String(error), op: "sweepHistory" }));
  // Rooms written to are trimmed at each commit; this catches the quiet ones.
  const historySweeper = config.historyMaxAgeDays ? setInterval(trimHistory, HISTORY_SWEEP_INTERVAL_MS) : undefined;
  const rateSweeper = setInterval(() => hub.sweep(now()), RATE_SWEEP_INTERVAL_MS);

  let stopping: Promise<void> | null = null;
  async function stop(): Promise<void> {
    hub.draining = true;
    // What was accepted is stored and delivered before anyone is told to go.
    await hub.batcher.flush();
    const empty = hub.whenEmpty();
    for (const conn of [...hub.conns]) conn.shutdown();
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([empty, new Promise((resolve) => (timer = setTimeout(resolve, config.drainTimeoutMs)))]);
    clearTimeout(timer);
    clearInterval(sweeper);
    clearInterval(historySweeper);
    clearInterval(rateSweeper);
    tcp?.stop(true);
    await server.stop(true);
    hub.dispose();
    await hub.batcher.flush();
    await hub.rosterSettled();
    await closeEngine();
    ctx.log("info", "stopped");
  }

  // Listening on every address, the page is at least on localhost: say so, for the newcomer.
  const page = ["0.0.0.0", "::"].includes(config.host) ? `http://localhost:${server.port}/` : server.url.href;
  const storage = config.redisUrl === null ? { databasePath: config.databasePath } : { redisUrl: redactedUrl(config.redisUrl) };
  ctx.log("info", "listening", { url: server.url.href, page, tcpPort: tcp?.port ?? null, ...storage });
  return {
    server,
    url: server.url,
    tcpPort: tcp?.port ?? null,
    config,
    stop: () => (stopping ??= stop()),
    inspect: () => ({
      users: hub.users.size,
      roomStates: hub.roomStates.size,
      userBuckets: hub.userBuckets.size,
      helloBuckets: hub.helloBuckets.size,
    }),
  };
}

// ─── main ─────────────────────────────────────────────────────────────────────────────────────

if (import.meta.main) {
  const loaded = loadConfig(process.env);
  if (!loaded.ok) {
    for (const line of loaded.errors) console.error(line);
    process.exit(1);
  }
  // An unreachable Redis at start is an operator's error: say it in one line, like a bad setting.
  const chat = await createServer(loaded.config).catch((error: Error) => {
    console.error(error.message);
    process.exit(1);
  });
  const shutdown = () => chat.stop().then(() => process.exit(0));
  process.on("SIGTERM", shutdown);
  process.on("SIGINT", shutdown);
}
