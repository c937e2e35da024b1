/**
 * Every setting an operator can make, as one table: each row gives its environment variable,
 * default, what it accepts and what it sets. The Config type, DEFAULTS, the validation of the
 * environment and of createServer's options, and the README's settings table all follow from it.
 *
 *   bun run src/config.ts     prints the README's table (a test checks the README holds it)
 */
import { z } from "zod";
import { RESERVED_NAMES, checkName } from "./protocol/rules.ts";
import { WEBHOOK_EVENTS, type WebhookEvent } from "./protocol/wire.ts";
import { IPV4 } from "./core/address.ts";

export const LOG_LEVELS = ["debug", "info", "warn", "error"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** One setting: its variable, default, what it accepts and its parsers. */
interface Setting<T> {
  env: string;
  default: T;
  /** The default as the README shows it, when the value alone would not say it (unset, empty). */
  shown?: string;
  /** What it accepts, said back on a bad value. */
  allowed: string;
  /** What it accepts, short, for the README's table. */
  range: string;
  /** What it sets, for the README's table. */
  doc: string;
  /** Validates a value handed to createServer. */
  value: z.ZodType<T>;
  /** Parses the environment's text. */
  parse: z.ZodType<T, string>;
  /** How an error says a value back, when not as written: a secret is named, never echoed (hidden). */
  echo?: (text: string) => string;
}

/** What an error says in place of a value it must not echo. */
const HIDDEN = "(hidden)";
/** A secret's echo. */
const hidden = () => HIDDEN;

/**
 * A URL fit for a log line or an error: as written without a password, else with it as `***`;
 * hidden when it does not parse, or when an `@` is left outside its user part (a password with a
 * character that was not percent-encoded, read as host, path or fragment, would show).
 *   redactedUrl("redis://:pw@db:6379") // => "redis://:***@db:6379"
 *   redactedUrl("redis://u:12#pw@db") // => "(hidden)"
 */
export function redactedUrl(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return HIDDEN;
  }
  const password = parsed.password;
  parsed.username = parsed.password = "";
  if (parsed.href.includes("@")) return HIDDEN;
  if (!password) return url;
  const shown = new URL(url);
  shown.password = "***";
  return shown.href;
}

/** A row of the table, typed by its value. */
const row = <T>(s: Setting<T>): Setting<T> => s;

/** An integer setting from `min` to `max`. */
function integer(env: string, min: number, max: number, fallback: number, doc: string, range?: string): Setting<number> {
  const value = z.int().min(min).max(max);
  return {
    env,
    default: fallback,
    allowed: `an integer from ${min} to ${max}`,
    range: range ?? `${min}–${max}`,
    doc,
    value,
    parse: z.string().regex(/^\d{1,16}$/).transform(Number).pipe(value),
  };
}

/**
 * A `scheme://host[:port]` in the form browsers send it in Origin: lowercase, punycode, no
 * default port; null if it is not one (a path, user, query or fragment; a scheme with no origin).
 * `originKey("https://Chat.Example.com:443") // => "https://chat.example.com"`
 */
export function originKey(s: string): string | null {
  if (!/^[a-z][a-z0-9+.-]*:\/\/[^/?#@\\\s]+$/i.test(s)) return null;
  try {
    const url = new URL(s);
    return url.origin !== "null" && url.href === `${url.origin}/` ? url.origin : null;
  } catch {
    return null;
  }
}

/** Origins as originKey() writes them, so that a browser's Origin is compared as is. */
const originList = z.array(z.string().refine((o) => originKey(o) === o));

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

/**
 * Whether `s` is an IP address, as node:net's isIP says: IPv4 here, IPv6 by node:net, required
 * only for a string with a colon (it costs ~8 ms of start to load, and HOST is read at start).
 *   isIP("10.0.0.1") // => true;  isIP("::1") // => true;  isIP("01.2.3.4") // => false
 */
export function isIP(s: string): boolean {
  if (IPV4.test(s)) return true;
  return s.includes(":") && (require("node:net") as typeof import("node:net")).isIP(s) === 6;
}

/**
 * An address to listen on: an IP address, or a DNS name whose last label is not all digits
 * (so `999.1.1.1`, no address and no name, is refused here rather than by listen()).
 *   isListenHost("::1") // => true;  isListenHost("999.1.1.1") // => false
 */
export function isListenHost(s: string): boolean {
  if (isIP(s)) return true;
  const label = "[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?";
  return s.length <= 253 && new RegExp(`^(?:${label}\\.)*${label}$`, "i").test(s) && !/(?:^|\.)\d+$/.test(s);
}

/** Host names as hostKey() writes them, so that a request's Host is compared as is. */
const hostList = z.array(z.string().refine((h) => hostKey(h) === h));
/** Bounds METRICS_TOKEN, in characters. */
const METRICS_TOKEN_MAX_CHARS = 1024;
/** A bearer token as RFC 6750 writes it (token68). */
const METRICS_TOKEN_PATTERN = new RegExp(`^[A-Za-z0-9\\-._~+/]{1,${METRICS_TOKEN_MAX_CHARS}}=*$`);

/** Bounds AUTH_JWT_SECRET from below, in bytes (§11.9: HS256 wants a key as long as its hash). */
const JWT_SECRET_MIN_BYTES = 32;
/** Bounds ADMIN_TOKEN from below, in characters (§11.9). */
const ADMIN_TOKEN_MIN_CHARS = 24;
/** Bounds the free-text settings (issuer, audience, tokens), in characters. */
const TEXT_SETTING_MAX_CHARS = 4096;

/**
 * The JWS algorithm a PEM public key verifies, by its type (§11.1): RSA → RS256, P-256 → ES256,
 * Ed25519 → EdDSA; null for anything else, or a PEM that does not parse. `\n` in the variable
 * stands for a newline, for platforms that take one line per secret.
 */
export function publicKeyAlgorithm(pem: string): "RS256" | "ES256" | "EdDSA" | null {
  try {
    // Required here, not imported: node:crypto costs ~12 ms of start, and only a PEM needs it.
    const { createPublicKey } = require("node:crypto") as typeof import("node:crypto");
    const key = createPublicKey(pemText(pem));
    if (key.asymmetricKeyType === "rsa") return "RS256";
    if (key.asymmetricKeyType === "ed25519") return "EdDSA";
    if (key.asymmetricKeyType === "ec" && key.asymmetricKeyDetails?.namedCurve === "prime256v1") return "ES256";
    return null;
  } catch {
    return null;
  }
}

/** A PEM as the variable holds it, `\\n` standing for newlines, as a PEM. */
export const pemText = (pem: string) => pem.replace(/\\n/g, "\n");

/** An http:// or https:// URL. */
function isHttpUrl(s: string): boolean {
  try {
    const url = new URL(s);
    return (url.protocol === "http:" || url.protocol === "https:") && url.hostname !== "";
  } catch {
    return false;
  }
}

/** Bounds a webhook secret's key from below, in bytes (§11.7: `whsec_` + base64 of at least 24 bytes). */
const WEBHOOK_SECRET_MIN_BYTES = 24;
/** Bounds the secrets WEBHOOK_SECRET may list at once (rotation needs two; a few more are harmless). */
const WEBHOOK_SECRETS_MAX = 8;

/**
 * The HMAC keys of WEBHOOK_SECRET (§11.7): one or more space-separated `whsec_` + base64 (padding
 * optional) of at least 24 bytes each, several while a secret is rotated; null when any is not.
 *   webhookKeys("whsec_" + "A".repeat(32)) // => [24 zero bytes]
 *   webhookKeys("whsec_short") // => null
 */
export function webhookKeys(text: string): Uint8Array[] | null {
  const parts = text.trim().split(/\s+/);
  if (parts.length > WEBHOOK_SECRETS_MAX) return null;
  const keys: Uint8Array[] = [];
  for (const part of parts) {
    const b64 = /^whsec_([A-Za-z0-9+/]+)(={0,2})$/.exec(part)?.[1];
    if (!b64 || b64.length % 4 === 1) return null;
    const key = Buffer.from(b64, "base64");
    // Canonical base64 only: Buffer drops what it cannot read, and a key must be what was meant.
    if (key.length < WEBHOOK_SECRET_MIN_BYTES || key.toString("base64").replace(/=+$/, "") !== b64) return null;
    keys.push(new Uint8Array(key));
  }
  return keys;
}

/** WEBHOOK_EVENTS: comma-separated event types, each at most once. */
const webhookEventList = z
  .array(z.enum(WEBHOOK_EVENTS))
  .min(1)
  .refine((types) => new Set(types).size === types.length);

/** A text setting that is unset (null) by default. */
function text(env: string, allowed: string, range: string, doc: string, check: z.ZodType<string, string>): Setting<string | null> {
  return { env, default: null, shown: "(none)", allowed, range, doc, value: check.nullable(), parse: check };
}

/** A comma-separated list, trimmed, empty entries dropped. */
const commaList = (s: string) => s.split(",").map((item) => item.trim()).filter(Boolean);

/** The table. Each limit carries its unit in its name. */
const SETTINGS = {
  port: integer("PORT", 0, 65535, 3000, "HTTP and WebSocket port (0: any free port)"),
  host: row<string>({
    env: "HOST",
    default: "0.0.0.0",
    allowed: "an IP address or a host name to listen on",
    range: "IP address or host name",
    doc: "listen address, for HTTP and TCP",
    value: z.string().refine(isListenHost),
    parse: z.string().refine(isListenHost),
  }),
  databasePath: row<string>({
    env: "DATABASE_PATH",
    default: "./data/chat.sqlite",
    allowed: "a file path or :memory:",
    range: "path or `:memory:`",
    doc: "SQLite file for history and sessions; its folder is created; one server per file (a second one exits 1, naming the first's process)",
    value: z.string().min(1),
    parse: z.string().min(1),
  }),
  redisUrl: row<string | null>({
    env: "REDIS_URL",
    default: null,
    shown: "(unset: SQLite)",
    allowed: "a redis:// or rediss:// URL, e.g. redis://127.0.0.1:6379",
    range: "`redis://` or `rediss://` URL",
    doc: "history, seq, sessions and room events live in Redis, shared by several instances ([Several instances](#several-instances-redis)); unreachable at start: exit 1",
    value: redisUrl.nullable(),
    parse: redisUrl,
    echo: redactedUrl,
  }),
  instanceTimeoutMs: integer(
    "INSTANCE_TIMEOUT_MS",
    1000,
    600000,
    10000,
    "with Redis: an instance that stops renewing its key this long is taken for dead; within 1.5 × this a survivor takes its members over, in grace",
  ),
  redisTimeoutMs: integer(
    "REDIS_TIMEOUT_MS",
    50,
    60000,
    2000,
    "with Redis: a command not answered in this long is given up (its frame gets `internal`), and `/healthz` answers 503 until Redis answers in time again",
  ),
  allowedOrigins: row<string[]>({
    env: "ALLOWED_ORIGINS",
    default: [],
    shown: "(none)",
    allowed: "comma-separated scheme://host[:port] origins",
    range: "`scheme://host[:port]`, comma-separated",
    doc: "page origins allowed to open `/ws` besides the server's own host",
    value: originList,
    parse: z
      .string()
      .transform((s) => commaList(s).map((o) => originKey(o) ?? o))
      .pipe(originList),
  }),
  trustProxy: row<boolean>({
    env: "TRUST_PROXY",
    default: false,
    allowed: "true, false, 1 or 0",
    range: "true, false, 1, 0",
    doc: "take the client address from `Fly-Client-IP`, else the rightmost `X-Forwarded-For` entry (values that are not IP addresses are ignored)",
    value: z.boolean(),
    parse: z.enum(["true", "false", "1", "0"]).transform((s) => s === "true" || s === "1"),
  }),
  publicHosts: row<string[]>({
    env: "PUBLIC_HOSTS",
    default: [],
    shown: "(any)",
    allowed: "comma-separated host[:port] names",
    range: "`host[:port]`, comma-separated",
    doc: "the `Host` names this server answers; any other gets 421 (stops DNS rebinding)",
    value: hostList,
    parse: z
      .string()
      .transform((s) => commaList(s).map((h) => hostKey(h) ?? h))
      .pipe(hostList),
  }),
  metricsToken: row<string | null>({
    env: "METRICS_TOKEN",
    default: null,
    shown: "(none)",
    allowed: `a bearer token: 1 to ${METRICS_TOKEN_MAX_CHARS} of A-Z a-z 0-9 - . _ ~ + /, then optional =`,
    range: `a bearer token (A-Z a-z 0-9 - . _ ~ + /, up to ${METRICS_TOKEN_MAX_CHARS})`,
    doc: "`/metrics` then needs `Authorization: Bearer <token>`, else 401",
    value: z.string().regex(METRICS_TOKEN_PATTERN).nullable(),
    parse: z.string().regex(METRICS_TOKEN_PATTERN),
    echo: hidden,
  }),
  maxMessageChars: integer("MAX_MESSAGE_CHARS", 1, 100000, 2000, "message length, in code points"),
  maxPayloadBytes: integer(
    "MAX_PAYLOAD_BYTES",
    1024,
    16777216,
    32768,
    "largest WebSocket frame; larger closes with 1009",
    "1024–16777216, ≥ 12 × MAX_MESSAGE_CHARS + 512",
  ),
  // Bun's WebSocket timer works in steps of 8 s, up to 960 s.
  idleTimeoutSeconds: integer(
    "IDLE_TIMEOUT_SECONDS",
    8,
    960,
    120,
    "a WebSocket that answers nothing, not even pings, is closed; TCP keepalive delay",
  ),
  backpressureLimitBytes: integer(
    "BACKPRESSURE_LIMIT_BYTES",
    1024,
    1073741824,
    1048576,
    "unsent bytes before a WebSocket that does not read is closed",
  ),
  rateLimitBurst: integer(
    "RATE_LIMIT_BURST",
    1,
    10000,
    10,
    "frames a user may send at once, all its connections together (also each connection's own bucket for pings and frames before hello)",
  ),
  rateLimitPerSecond: integer("RATE_LIMIT_PER_SECOND", 1, 10000, 5, "sustained frames per second per user; reconnecting refills nothing"),
  rateLimitAbuseErrors: integer("RATE_LIMIT_ABUSE_ERRORS", 1, 100000, 50, "consecutive `rate_limited` answers before close 1008"),
  maxRoomsPerConnection: integer("MAX_ROOMS_PER_CONNECTION", 1, 1000, 20, "rooms one connection may be in"),
  maxConnections: integer("MAX_CONNECTIONS", 1, 1000000, 10000, "WebSocket + TCP connections in all (503 past it)"),
  maxConnectionsPerIp: integer("MAX_CONNECTIONS_PER_IP", 1, 1000000, 50, "WebSocket + TCP connections per address (429 past it)"),
  maxConnectionsPerSession: integer(
    "MAX_CONNECTIONS_PER_SESSION",
    1,
    1000,
    5,
    "live connections (tabs, devices) of one session; one more replaces the oldest (4001)",
  ),
  helloRatePerMinute: integer(
    "HELLO_RATE_PER_MINUTE",
    1,
    1000000,
    30,
    "hellos per minute from one address, WebSocket and TCP together (past it: `rate_limited`, close 1008)",
  ),
  historyOnJoin: integer("HISTORY_ON_JOIN", 0, 200, 50, "messages sent with `joined`"),
  historyRetain: integer("HISTORY_RETAIN", 1, 10000000, 1000, "messages kept per room"),
  maxRooms: integer(
    "MAX_ROOMS",
    1,
    10000000,
    10000,
    "rooms holding history (a retained message); a send that would start one more gets `room_limit`",
  ),
  roomStartsPerHour: integer(
    "ROOM_STARTS_PER_HOUR",
    1,
    1000000,
    20,
    "new rooms (nobody in it, nothing kept, no owner) one user may start per hour, on every instance together (past it: `rate_limited`)",
  ),
  roomStartsPerHourPerIp: integer(
    "ROOM_STARTS_PER_HOUR_PER_IP",
    1,
    1000000,
    60,
    "new rooms the users of one address may start per hour, on every instance together",
  ),
  roomReclaimDays: integer(
    "ROOM_RECLAIM_DAYS",
    0,
    36500,
    30,
    "with `MAX_ROOMS` rooms holding history, a send that starts one more takes the place of the room idle longest (nobody in it, newest message this many days old), whose history goes (0: `room_limit` instead)",
  ),
  historyMaxAgeDays: integer(
    "HISTORY_MAX_AGE_DAYS",
    0,
    36500,
    0,
    "messages older than this many days are trimmed (0: kept until `HISTORY_RETAIN` pushes them out)",
  ),
  presenceGraceMs: integer(
    "PRESENCE_GRACE_MS",
    0,
    600000,
    5000,
    "how long a dropped user stays in its rooms before others see it leave",
  ),
  typingThrottleMs: integer("TYPING_THROTTLE_MS", 0, 600000, 1000, "at most one typing notice per user and room this often"),
  helloTimeoutMs: integer("HELLO_TIMEOUT_MS", 1, 600000, 10000, "time from connect to a successful hello (else close 1008)"),
  sessionTtlSeconds: integer(
    "SESSION_TTL_SECONDS",
    60,
    315360000,
    2592000,
    "a session token restores its user this long after its last use (recorded hourly at most, or every half of it if shorter)",
  ),
  drainTimeoutMs: integer("DRAIN_TIMEOUT_MS", 0, 600000, 3000, "longest wait for clients to go at shutdown"),
  logLevel: row<LogLevel>({
    env: "LOG_LEVEL",
    default: "info",
    allowed: LOG_LEVELS.join(", "),
    range: LOG_LEVELS.join(", "),
    doc: "least severe log line written",
    value: z.enum(LOG_LEVELS),
    parse: z.enum(LOG_LEVELS),
  }),
  tcpPort: row<number | null>({
    ...integer("TCP_PORT", 0, 65535, 0, "opens the plain-TCP door on this port"),
    default: null,
    shown: "(off)",
    value: z.int().min(0).max(65535).nullable(),
  }),
  tcpMaxLineBytes: integer("TCP_MAX_LINE_BYTES", 64, 1048576, 4096, "longest TCP input line, not counting its newline"),
  guestAccess: row<boolean | null>({
    env: "GUEST_ACCESS",
    default: null,
    shown: "true (false when an `AUTH_*` key is set)",
    allowed: "true, false, 1 or 0",
    range: "true, false, 1, 0",
    doc: "whether people may chat as guests, with a name of their choice; else only members (JWT) and bots, others get `auth_required`",
    value: z.boolean().nullable(),
    parse: z.enum(["true", "false", "1", "0"]).transform((s) => s === "true" || s === "1"),
  }),
  authJwtSecret: {
    ...text(
      "AUTH_JWT_SECRET",
      `a secret of at least ${JWT_SECRET_MIN_BYTES} bytes`,
      `≥ ${JWT_SECRET_MIN_BYTES} bytes`,
      "members sign in with a JWT signed HS256 with this secret ([Embed in your app](docs/embed.md))",
      z.string().refine((s) => Buffer.byteLength(s) >= JWT_SECRET_MIN_BYTES && s.length <= TEXT_SETTING_MAX_CHARS),
    ),
    echo: hidden,
  },
  authJwtPublicKey: text(
    "AUTH_JWT_PUBLIC_KEY",
    "a PEM public key: RSA (RS256), P-256 (ES256) or Ed25519 (EdDSA)",
    "PEM (RSA, P-256, Ed25519)",
    "members sign in with a JWT signed by the matching private key",
    z.string().refine((s) => publicKeyAlgorithm(s) !== null),
  ),
  authJwksUrl: {
    ...text(
      "AUTH_JWKS_URL",
      "an http:// or https:// URL of a JWKS",
      "`http://` or `https://` URL",
      "members sign in with a JWT signed by a key of this JWKS (cached; fetched again for an unknown `kid` at most every 30 s)",
      z.string().refine(isHttpUrl),
    ),
    echo: redactedUrl,
  },
  authJwtIssuer: text(
    "AUTH_JWT_ISSUER",
    `1 to ${TEXT_SETTING_MAX_CHARS} characters`,
    "text",
    "a member's token must have this `iss`",
    z.string().min(1).max(TEXT_SETTING_MAX_CHARS),
  ),
  authJwtAudience: text(
    "AUTH_JWT_AUDIENCE",
    `1 to ${TEXT_SETTING_MAX_CHARS} characters`,
    "text",
    "a member's token's `aud` must contain this",
    z.string().min(1).max(TEXT_SETTING_MAX_CHARS),
  ),
  adminToken: {
    ...text(
      "ADMIN_TOKEN",
      `a secret of ${ADMIN_TOKEN_MIN_CHARS} to ${TEXT_SETTING_MAX_CHARS} printable characters`,
      `≥ ${ADMIN_TOKEN_MIN_CHARS} characters`,
      "makes a hello with `adminToken` an admin's, and is the HTTP API's admin bearer",
      z.string().regex(new RegExp(`^[\\x21-\\x7e]{${ADMIN_TOKEN_MIN_CHARS},${TEXT_SETTING_MAX_CHARS}}$`)),
    ),
    echo: hidden,
  },
  roomCreation: row<"anyone" | "members" | "admins">({
    env: "ROOM_CREATION",
    default: "anyone",
    allowed: "anyone, members or admins",
    range: "anyone, members, admins",
    doc: "who may start a room (its first joiner becomes its owner): anyone; members and bots (guests join only rooms with an owner or history); admins",
    value: z.enum(["anyone", "members", "admins"]),
    parse: z.enum(["anyone", "members", "admins"]),
  }),
  editWindowSeconds: integer(
    "EDIT_WINDOW_SECONDS",
    0,
    315360000,
    86400,
    "how long after sending its author may edit a message (0: any time)",
  ),
  inviteTtlSeconds: integer("INVITE_TTL_SECONDS", 60, 31536000, 604800, "how long an invite code works when its maker names no `ttlSeconds`"),
  reservedNames: row<string[]>({
    env: "RESERVED_NAMES",
    default: [],
    shown: "(none)",
    allowed: "comma-separated names, each a valid name",
    range: "names, comma-separated",
    doc: `names guests may not take, nor their look-alikes, besides ${RESERVED_NAMES.join(", ")} (members and bots may)`,
    value: z.array(z.string().refine((n) => checkName(n) === n)),
    parse: z
      .string()
      .transform((s) => commaList(s).map((n) => checkName(n) ?? n))
      .pipe(z.array(z.string().refine((n) => checkName(n) === n))),
  }),
  tcpMaxPendingBytes: integer(
    "TCP_MAX_PENDING_BYTES",
    1024,
    1073741824,
    1048576,
    "unwritten output before a TCP client that does not read is closed",
  ),
  webhookUrl: {
    ...text(
      "WEBHOOK_URL",
      "an http:// or https:// URL",
      "`http://` or `https://` URL",
      "every event of WEBHOOK_EVENTS is POSTed here, signed, at least once ([Webhooks](docs/protocol.md#webhooks)); needs WEBHOOK_SECRET",
      z.string().max(TEXT_SETTING_MAX_CHARS).refine(isHttpUrl),
    ),
    echo: redactedUrl,
  },
  webhookSecret: {
    ...text(
      "WEBHOOK_SECRET",
      `whsec_ followed by the base64 of at least ${WEBHOOK_SECRET_MIN_BYTES} bytes; several, space-separated, while rotating (at most ${WEBHOOK_SECRETS_MAX})`,
      `\`whsec_\` + base64 of ≥ ${WEBHOOK_SECRET_MIN_BYTES} bytes, space-separated`,
      "signs each webhook (Standard Webhooks' `webhook-signature`), with every secret listed",
      z.string().max(TEXT_SETTING_MAX_CHARS).refine((s) => webhookKeys(s) !== null),
    ),
    echo: hidden,
  },
  webhookEvents: row<WebhookEvent[]>({
    env: "WEBHOOK_EVENTS",
    default: [...WEBHOOK_EVENTS],
    shown: "(all)",
    allowed: `comma-separated, each at most once: ${WEBHOOK_EVENTS.join(", ")}`,
    range: WEBHOOK_EVENTS.map((t) => `\`${t}\``).join(", "),
    doc: "the events sent to WEBHOOK_URL",
    value: webhookEventList,
    parse: z.string().transform(commaList).pipe(webhookEventList),
  }),
  webhookMaxAgeHours: integer(
    "WEBHOOK_MAX_AGE_HOURS",
    1,
    720,
    24,
    "a webhook not delivered this long after its event is dropped (and counted)",
  ),
  webhookMaxPending: integer(
    "WEBHOOK_MAX_PENDING",
    100,
    10000000,
    100000,
    "webhooks queued at most; past it the oldest are dropped (and counted)",
  ),
};

type Settings = typeof SETTINGS;
/** Everything an operator can set, as createServer takes it. */
export type Config = { -readonly [K in keyof Settings]: Settings[K]["default"] };

const KEYS = Object.keys(SETTINGS) as (keyof Config)[];
const setting = (key: keyof Config) => SETTINGS[key] as Setting<unknown>;

export const DEFAULTS: Config = Object.fromEntries(KEYS.map((key) => [key, setting(key).default])) as Config;

/** Every environment variable the server reads; the README's table must list each. */
export const SETTING_NAMES: readonly string[] = KEYS.map((key) => setting(key).env);

/** A setting's value as an error says it back (its `echo`): `text` is the value as written. */
const said = (key: keyof Config, text: string) => setting(key).echo?.(text) ?? text;

/** A frame carries at most this many JSON bytes per text code point: an astral character may be
 * written as two `\uXXXX` escapes (Python's json.dumps does), 12 bytes for one code point. */
const PAYLOAD_BYTES_PER_CHAR = 12;
/** Room in a frame for everything but its text. */
const PAYLOAD_OVERHEAD_BYTES = 512;

function crossCheck(config: Config, name: (key: keyof Config) => string): string[] {
  const errors: string[] = [];
  const need = PAYLOAD_BYTES_PER_CHAR * config.maxMessageChars + PAYLOAD_OVERHEAD_BYTES;
  if (config.maxPayloadBytes < need) {
    errors.push(
      `${name("maxPayloadBytes")}=${config.maxPayloadBytes}: must be at least ${PAYLOAD_BYTES_PER_CHAR} × ` +
        `${name("maxMessageChars")} + ${PAYLOAD_OVERHEAD_BYTES} = ${need} (${name("maxMessageChars")}=${config.maxMessageChars})`,
    );
  }
  if (config.tcpPort !== null && config.tcpPort !== 0 && config.tcpPort === config.port) {
    errors.push(`${name("tcpPort")}=${config.tcpPort}: must differ from ${name("port")}, which the HTTP door listens on`);
  }
  const keys = (["authJwtSecret", "authJwtPublicKey", "authJwksUrl"] as const).filter((key) => config[key] !== null);
  if (keys.length > 1) errors.push(`${keys.map(name).join(", ")}: set one way to verify members' tokens, not ${keys.length}`);
  if (config.webhookUrl !== null && config.webhookSecret === null) {
    errors.push(`${name("webhookUrl")}=${said("webhookUrl", config.webhookUrl)}: needs ${name("webhookSecret")} to sign what it sends`);
  }
  return errors;
}

/** Whether guests may chat (GUEST_ACCESS): as set, else only when no AUTH_* key is. */
export function guestsAllowed(config: Config): boolean {
  return config.guestAccess ?? (config.authJwtSecret === null && config.authJwtPublicKey === null && config.authJwksUrl === null);
}

export type ConfigResult = { ok: true; config: Config } | { ok: false; errors: string[] };

/** Reads the configuration from environment variables; an empty variable counts as unset. */
export function loadConfig(env: Record<string, string | undefined>): ConfigResult {
  const config: Record<string, unknown> = { ...DEFAULTS };
  const errors: string[] = [];
  for (const key of KEYS) {
    const { env: name, parse, allowed } = setting(key);
    const raw = env[name];
    if (raw === undefined || raw.trim() === "") continue;
    const parsed = parse.safeParse(raw.trim());
    if (parsed.success) config[key] = parsed.data;
    else errors.push(`${name}=${said(key, raw)}: ${allowed}`);
  }
  if (errors.length) return { ok: false, errors };
  const checked = crossCheck(config as Config, (key) => setting(key).env);
  return checked.length ? { ok: false, errors: checked } : { ok: true, config: config as Config };
}

/** Fills in defaults and validates options given in code; throws naming every bad field. */
export function resolveConfig(options: Partial<Config>): Config {
  const config = { ...DEFAULTS, ...options };
  const errors: string[] = [];
  for (const key of KEYS) {
    const value = config[key];
    const { value: check, allowed, echo } = setting(key);
    if (!check.safeParse(value).success) errors.push(`${key}=${echo ? echo(String(value)) : JSON.stringify(value)}: ${allowed}`);
  }
  errors.push(...crossCheck(config, (key) => key));
  if (errors.length) throw new Error(`invalid configuration: ${errors.join("; ")}`);
  return config;
}

/** The README's settings table, in markdown. */
export function settingsTable(): string {
  const rows = KEYS.map((key) => {
    const s = setting(key);
    return `| \`${s.env}\` | ${s.shown ?? String(s.default)} | ${s.range} | ${s.doc} |`;
  });
  return ["| variable | default | allowed | what it sets |", "|---|---|---|---|", ...rows].join("\n") + "\n";
}

if (import.meta.main) process.stdout.write(settingsTable());
