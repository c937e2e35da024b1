/**
 * Settings: what a server reads from its environment (defaults, parsing, one line per bad
 * variable, cross-checks), the same checks on options given in code, and the README's table of
 * every variable. Pure: no server starts.
 */
import { describe, expect, test } from "bun:test";
import { isIP as nodeIsIP } from "node:net";
import { DEFAULTS, SETTING_NAMES, isIP, loadConfig, redactedUrl, resolveConfig, settingsTable } from "../src/config.ts";

describe("config", () => {
  test("an empty environment gives the contract's defaults", () => {
    const r = loadConfig({});
    expect(r).toEqual({ ok: true, config: DEFAULTS });
    expect(DEFAULTS).toMatchObject({
      port: 3000,
      host: "0.0.0.0",
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
      presenceGraceMs: 5000,
      typingThrottleMs: 1000,
      helloTimeoutMs: 10000,
      sessionTtlSeconds: 2592000,
      drainTimeoutMs: 3000,
      logLevel: "info",
      tcpPort: null,
      tcpMaxLineBytes: 4096,
      tcpMaxPendingBytes: 1048576,
      trustProxy: false,
      publicHosts: [],
      metricsToken: null,
      allowedOrigins: [],
    });
    expect(DEFAULTS.databasePath.startsWith("./data/")).toBe(true);
  });

  test("values are parsed from the environment", () => {
    const r = loadConfig({
      PORT: "8080",
      ALLOWED_ORIGINS: "https://chat.example.com, http://localhost:5173",
      TRUST_PROXY: "1",
      TCP_PORT: "4000",
      LOG_LEVEL: "warn",
      HISTORY_ON_JOIN: "0",
      PRESENCE_GRACE_MS: "0",
      DATABASE_PATH: ":memory:",
    });
    if (!r.ok) throw new Error(r.errors.join("\n"));
    expect(r.config).toMatchObject({
      port: 8080,
      allowedOrigins: ["https://chat.example.com", "http://localhost:5173"],
      trustProxy: true,
      tcpPort: 4000,
      logLevel: "warn",
      historyOnJoin: 0,
      presenceGraceMs: 0,
      databasePath: ":memory:",
    });
  });

  test("every bad variable gets one line NAME=value: what is allowed", () => {
    const r = loadConfig({
      PORT: "abc",
      MAX_CONNECTIONS: "0",
      IDLE_TIMEOUT_SECONDS: "961",
      TRUST_PROXY: "yes",
      LOG_LEVEL: "loud",
      ALLOWED_ORIGINS: "https://ok.example,https://bad.example/path",
      RATE_LIMIT_BURST: "-1",
      HISTORY_ON_JOIN: "1.5",
    });
    expect(r).toEqual({
      ok: false,
      errors: [
        "PORT=abc: an integer from 0 to 65535",
        "ALLOWED_ORIGINS=https://ok.example,https://bad.example/path: comma-separated scheme://host[:port] origins",
        "TRUST_PROXY=yes: true, false, 1 or 0",
        "IDLE_TIMEOUT_SECONDS=961: an integer from 8 to 960",
        "RATE_LIMIT_BURST=-1: an integer from 1 to 10000",
        "MAX_CONNECTIONS=0: an integer from 1 to 1000000",
        "HISTORY_ON_JOIN=1.5: an integer from 0 to 200",
        "LOG_LEVEL=loud: debug, info, warn, error",
      ],
    });
  });

  test("MAX_PAYLOAD_BYTES must fit 12 bytes per character plus 512, naming both (§10)", () => {
    const r = loadConfig({ MAX_MESSAGE_CHARS: "4000", MAX_PAYLOAD_BYTES: "48511" });
    expect(r).toEqual({
      ok: false,
      errors: [
        "MAX_PAYLOAD_BYTES=48511: must be at least 12 × MAX_MESSAGE_CHARS + 512 = 48512 (MAX_MESSAGE_CHARS=4000)",
      ],
    });
    expect(loadConfig({ MAX_MESSAGE_CHARS: "4000", MAX_PAYLOAD_BYTES: "48512" }).ok).toBe(true);
  });

  test("HOST is an IP address or a host name; TCP_PORT is not PORT (issue 21: 14)", () => {
    expect(loadConfig({ HOST: "999.1.1.1" })).toEqual({ ok: false, errors: ["HOST=999.1.1.1: an IP address or a host name to listen on"] });
    for (const host of ["::", "127.0.0.1", "localhost", "chat.example.com"]) expect(loadConfig({ HOST: host }).ok).toBe(true);
    expect(loadConfig({ PORT: "4000", TCP_PORT: "4000" })).toEqual({
      ok: false,
      errors: ["TCP_PORT=4000: must differ from PORT, which the HTTP door listens on"],
    });
    expect(loadConfig({ PORT: "0", TCP_PORT: "0" }).ok).toBe(true);
  });

  test("options given in code are validated the same way", () => {
    expect(() => resolveConfig({ rateLimitBurst: 0 })).toThrow("rateLimitBurst=0: an integer from 1 to 10000");
    expect(() => resolveConfig({ maxMessageChars: 5000 })).toThrow("maxPayloadBytes=32768: must be at least");
    expect(resolveConfig({ tcpPort: null }).tcpPort).toBeNull();
    expect(resolveConfig({ tcpPort: 0 }).tcpPort).toBe(0);
  });
});

describe("settings are documented", () => {
  test("the README's table is the one the settings table draws (bun run src/config.ts), every variable in it", async () => {
    const readme = await Bun.file(new URL("../README.md", import.meta.url)).text();
    expect(SETTING_NAMES.length).toBeGreaterThan(25);
    expect(SETTING_NAMES.filter((name) => !readme.includes(`| \`${name}\` |`))).toEqual([]);
    expect(readme).toContain(settingsTable());
  });
});

describe("REDIS_URL", () => {
  test("is validated: redis:// or rediss:// with a host; unset keeps SQLite", () => {
    expect(loadConfig({ REDIS_URL: "http://127.0.0.1:6379" })).toEqual({
      ok: false,
      errors: ["REDIS_URL=http://127.0.0.1:6379: a redis:// or rediss:// URL, e.g. redis://127.0.0.1:6379"],
    });
    expect(loadConfig({ REDIS_URL: "localhost:6379" }).ok).toBe(false);
    const ok = loadConfig({ REDIS_URL: "rediss://user:secret@redis.example.com:6380/2" });
    expect(ok.ok && ok.config.redisUrl).toBe("rediss://user:secret@redis.example.com:6380/2");
    const unset = loadConfig({});
    expect(unset.ok && unset.config.redisUrl).toBeNull();
  });
});

describe("PUBLIC_HOSTS and METRICS_TOKEN", () => {
  test("PUBLIC_HOSTS and METRICS_TOKEN are read from the environment, normalized and checked", () => {
    const r = loadConfig({ PUBLIC_HOSTS: " Chat.Example.com, localhost:3000,,[::1]:8080, example.org:80 ", METRICS_TOKEN: "abc.DEF-123" });
    if (!r.ok) throw new Error(r.errors.join("\n"));
    expect(r.config.publicHosts).toEqual(["chat.example.com", "localhost:3000", "[::1]:8080", "example.org"]);
    expect(r.config.metricsToken).toBe("abc.DEF-123");
    const unset = loadConfig({});
    expect(unset.ok && [unset.config.publicHosts, unset.config.metricsToken]).toEqual([[], null]);
    expect(loadConfig({ PUBLIC_HOSTS: "https://chat.example.com", METRICS_TOKEN: "two words" })).toEqual({
      ok: false,
      errors: [
        "PUBLIC_HOSTS=https://chat.example.com: comma-separated host[:port] names",
        "METRICS_TOKEN=(hidden): a bearer token: 1 to 1024 of A-Z a-z 0-9 - . _ ~ + /, then optional =",
      ],
    });
    for (const bad of ["chat.example.com/", "user@chat.example.com", "chat.example.com:99999", "chat example.com"]) {
      expect(loadConfig({ PUBLIC_HOSTS: bad }).ok).toBe(false);
    }
    expect(() => resolveConfig({ publicHosts: ["Chat.Example.com"] })).toThrow("publicHosts");
    expect(() => resolveConfig({ metricsToken: "" })).toThrow("metricsToken");
  });
});

describe("ALLOWED_ORIGINS", () => {
  test("ALLOWED_ORIGINS is normalized as browsers send Origin (lowercase, punycode, no default port) and checked", () => {
    const r = loadConfig({ ALLOWED_ORIGINS: "https://Chat.Example.com, HTTP://localhost:5173, https://app.example:443, https://Bücher.example" });
    if (!r.ok) throw new Error(r.errors.join("\n"));
    expect(r.config.allowedOrigins).toEqual(["https://chat.example.com", "http://localhost:5173", "https://app.example", "https://xn--bcher-kva.example"]);
    for (const bad of ["https://chat.example.com/", "https://user@chat.example.com", "https://chat.example.com?x", "chat.example.com", "foo://bar", "null"]) {
      expect(loadConfig({ ALLOWED_ORIGINS: bad }).ok).toBe(false);
    }
    expect(() => resolveConfig({ allowedOrigins: ["https://Chat.Example.com"] })).toThrow("allowedOrigins");
  });
});

describe("isIP, read without loading node:net for IPv4", () => {
  test("says what node:net's isIP says, on addresses, near misses and names", () => {
    const samples = [
      "0.0.0.0", "127.0.0.1", "10.0.0.5", "255.255.255.255", "1.2.3.4", "9.99.199.249",
      "256.1.1.1", "1.2.3", "1.2.3.4.5", "01.2.3.4", "1.02.3.4", "1.2.3.04", "00.0.0.0", "999.1.1.1", "1.2.3.-4", "1..3.4",
      " 1.2.3.4", "1.2.3.4 ", "1.2.3.4\n", "+1.2.3.4", "0x1.2.3.4", "１.２.３.４", "",
      "::", "::1", "fe80::1", "fe80::1%eth0", "2001:db8::ff00:42:8329", "::ffff:192.0.2.128", "1::2::3", ":::", "12345::", "gggg::1",
      "localhost", "example.com", "a:b", "[::1]",
    ];
    for (const s of samples) expect({ s, ip: isIP(s) }).toEqual({ s, ip: nodeIsIP(s) !== 0 });
  });
});

describe("secrets in start-up errors", () => {
  test("a bad AUTH_JWT_SECRET, ADMIN_TOKEN, METRICS_TOKEN or WEBHOOK_SECRET is named, never echoed", () => {
    const values = { AUTH_JWT_SECRET: "short-jwt-secret", ADMIN_TOKEN: "tiny-admin", METRICS_TOKEN: "two words", WEBHOOK_SECRET: "whsec_short" };
    const r = loadConfig({ ...values, WEBHOOK_URL: "http://127.0.0.1:9/" });
    if (r.ok) throw new Error("accepted");
    for (const name of Object.keys(values)) expect(r.errors.some((e) => e.startsWith(`${name}=(hidden): `))).toBe(true);
    for (const value of Object.values(values)) expect(r.errors.join("\n")).not.toContain(value);
  });

  test("a URL setting is said back without its password, (hidden) when it does not parse: REDIS_URL, AUTH_JWKS_URL, WEBHOOK_URL", () => {
    expect(loadConfig({ REDIS_URL: "http://user:redis-secret@db.internal:6379", AUTH_JWKS_URL: "ftp://jwks:jwks-secret@keys.example.com/jwks.json" })).toEqual({
      ok: false,
      errors: [
        "REDIS_URL=http://user:***@db.internal:6379/: a redis:// or rediss:// URL, e.g. redis://127.0.0.1:6379",
        "AUTH_JWKS_URL=ftp://jwks:***@keys.example.com/jwks.json: an http:// or https:// URL of a JWKS",
      ],
    });
    // A generated password with '#', not percent-encoded: the URL does not parse, or it parses
    // with the password outside its user part (as host and fragment), where it would show.
    expect(loadConfig({ REDIS_URL: "redis://default:Xk9#pQ2secret@db.internal:6379" })).toEqual({
      ok: false,
      errors: ["REDIS_URL=(hidden): a redis:// or rediss:// URL, e.g. redis://127.0.0.1:6379"],
    });
    expect(redactedUrl("redis://default:12#pQ2secret@db.internal")).toBe("(hidden)");
    expect(redactedUrl("redis://127.0.0.1:6379")).toBe("redis://127.0.0.1:6379");
    const webhook = loadConfig({ WEBHOOK_URL: "https://hook:hunter2-secret@hooks.example.com/in" });
    expect(webhook).toEqual({ ok: false, errors: ["WEBHOOK_URL=https://hook:***@hooks.example.com/in: needs WEBHOOK_SECRET to sign what it sends"] });
    expect(() => resolveConfig({ webhookUrl: "https://hook:hunter2-secret@hooks.example.com/in" })).toThrow(
      "webhookUrl=https://hook:***@hooks.example.com/in: needs webhookSecret",
    );
    expect(() => resolveConfig({ redisUrl: "http://user:redis-secret@db.internal:6379" })).toThrow("redisUrl=http://user:***@db.internal:6379/: ");
  });
});
