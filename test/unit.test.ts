/** Unit tests of the pure parts of server.ts: no sockets, no timers, clocks passed in. */
import { describe, expect, test } from "bun:test";
import { DEFAULTS, SETTING_NAMES, loadConfig, resolveConfig, settingsTable } from "../src/config.ts";
import { Buckets, RateLimiter, TokenBucket } from "../src/core/bucket.ts";
import { LineSplitter, TOO_LONG, formatMessageLines, formatPresenceLine, hhmm } from "../src/core/lines.ts";
import { Presence } from "../src/core/presence.ts";
import { originAllowed, pageQuery } from "../src/http.ts";
import { Metrics } from "../src/metrics.ts";
import { checkName, nameKeys, namesClash, normalizeText, parseFrame } from "../src/protocol/rules.ts";
import { CLOSE, HISTORY_PAGE_MAX, ROOM_PATTERN, codePoints, isRoom } from "../src/protocol/wire.ts";

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

describe("parseFrame", () => {
  const bad = (raw: string) => {
    const r = parseFrame(raw);
    if (r.ok) throw new Error(`parsed: ${raw}`);
    return r;
  };

  test("reads every client frame", () => {
    const frames = [
      { type: "hello", name: "alice" },
      { type: "hello", name: "alice", session: "tok", ref: "r1" },
      { type: "join", room: "general" },
      { type: "join", room: "general", since: 0 },
      { type: "leave", room: "general" },
      { type: "send", room: "general", id: "m1", text: "hi" },
      { type: "typing", room: "general" },
      { type: "history", room: "general", before: 10, after: 2, limit: 200 },
      { type: "ping" },
    ];
    for (const frame of frames) expect(parseFrame(JSON.stringify(frame))).toMatchObject({ ok: true, frame });
  });

  test("unknown fields are ignored", () => {
    expect(parseFrame('{"type":"ping","extra":1}')).toEqual({ ok: true, frame: { type: "ping" }, ref: undefined });
  });

  test("not JSON, not an object, no or unknown type → bad_request without a type", () => {
    expect(bad("{nope")).toEqual({ ok: false, message: "not JSON" });
    for (const raw of ["[]", "42", '"hello"', "null", "true"]) expect(bad(raw)).toEqual({ ok: false, message: "not a JSON object" });
    expect(bad("{}")).toEqual({ ok: false, message: "missing type" });
    expect(bad('{"type":"shout","ref":"r"}')).toEqual({ ok: false, ref: "r", message: "unknown type" });
    expect(bad('{"type":7}')).toEqual({ ok: false, message: "unknown type" });
  });

  test("a missing or mistyped field fails with the frame's type and ref", () => {
    expect(bad('{"type":"join","ref":"a"}')).toMatchObject({ type: "join", ref: "a" });
    expect(bad('{"type":"join","room":5}').message).toStartWith("room:");
    expect(bad('{"type":"hello"}').message).toStartWith("name:");
    expect(bad('{"type":"hello","name":"a","session":null}').message).toStartWith("session:");
    expect(bad('{"type":"send","room":"a","id":"x"}').message).toStartWith("text:");
    expect(bad('{"type":"send","room":"a","text":"x"}').message).toStartWith("id:");
  });

  test("since, before, after are integers ≥ 0 and limit is 1..200", () => {
    for (const since of [-1, 1.5, "3", null]) expect(bad(JSON.stringify({ type: "join", room: "a", since })).type).toBe("join");
    for (const limit of [0, 201, 2.5]) expect(bad(JSON.stringify({ type: "history", room: "a", limit })).type).toBe("history");
    expect(bad(JSON.stringify({ type: "history", room: "a", before: -3 })).type).toBe("history");
  });

  test("id is 1..64 code points; ref at most 64, else not echoed", () => {
    const id64 = "😀".repeat(64); // 128 UTF-16 units, 64 code points
    expect(parseFrame(JSON.stringify({ type: "send", room: "a", id: id64, text: "x" })).ok).toBe(true);
    expect(bad(JSON.stringify({ type: "send", room: "a", id: "x".repeat(65), text: "x", ref: "r" }))).toMatchObject({
      type: "send",
      ref: "r",
    });
    expect(bad(JSON.stringify({ type: "send", room: "a", id: "", text: "x" })).type).toBe("send");
    const longRef = bad(JSON.stringify({ type: "ping", ref: "r".repeat(65) }));
    expect(longRef).toMatchObject({ type: "ping", ref: undefined });
    expect(parseFrame(JSON.stringify({ type: "ping", ref: "r".repeat(64) }))).toMatchObject({ ok: true, ref: "r".repeat(64) });
  });

  test("the ref of a send is its id, even when the send is invalid", () => {
    expect(parseFrame('{"type":"send","room":"a","id":"m9","text":"x","ref":"other"}')).toMatchObject({ ok: true, ref: "m9" });
    expect(bad('{"type":"send","room":"a","id":"m9","text":7,"ref":"other"}').ref).toBe("m9");
    expect(bad('{"type":"join","ref":5}').ref).toBeUndefined();
  });
});

describe("rules", () => {
  test("names: trimmed, 1..32 code points of letters, digits, space, _ - .", () => {
    expect(checkName("  alice  ")).toBe("alice");
    expect(checkName("Zoë_van-der.Berg 2")).toBe("Zoë_van-der.Berg 2");
    expect(checkName("李小龙")).toBe("李小龙");
    expect(checkName("مريم")).toBe("مريم");
    expect(checkName("٣")).toBe("٣"); // Arabic-Indic digit is \p{Nd}
    expect(checkName("𝒜".repeat(32))).toBe("𝒜".repeat(32)); // astral letters count once each
    expect(checkName("𝒜".repeat(33))).toBeNull();
    expect(checkName("a".repeat(32))).toBe("a".repeat(32));
    expect(checkName("a".repeat(33))).toBeNull();
    for (const name of ["", "   ", "a!", "<b>", "a\tb", "a\nb", "😀", "a@b", "x'y", "Ⅻ"]) expect(checkName(name)).toBeNull();
  });

  test("name keys fold case and canonical spellings", () => {
    expect(namesClash("Alice", "aLICE")).toBe(true);
    expect(nameKeys("Zo\u00eb")).toEqual(nameKeys("Zoe\u0308"));
  });

  test("rooms match ^[a-z0-9][a-z0-9_-]{0,31}$", () => {
    for (const room of ["general", "a", "0", "dev_ops-2", "a".repeat(32)]) expect(isRoom(room)).toBe(true);
    for (const room of ["", "General", "-a", "_a", "a b", "a".repeat(33), "é", "a.b", "a/b"]) expect(isRoom(room)).toBe(false);
  });

  test("text: CRLF → LF, trimmed, 1..max code points, no control characters but tab and newline", () => {
    expect(normalizeText("  hi\r\nthere\t ok  ", 100)).toBe("hi\nthere\t ok");
    expect(normalizeText("a\n\nb", 100)).toBe("a\n\nb");
    expect(normalizeText("😀".repeat(10), 10)).toBe("😀".repeat(10));
    expect(normalizeText("😀".repeat(11), 10)).toBeNull();
    expect(normalizeText("x".repeat(10), 10)).toBe("x".repeat(10));
    expect(normalizeText("x".repeat(11), 10)).toBeNull();
    expect(normalizeText(" x ".repeat(1) + " ".repeat(50), 10)).toBe("x");
    for (const text of ["", "   ", "\n\t", "a\u0000b", "a\u001bb", "a\u007fb", "a\u0085b", "a\u009fb", "a\rb", "a\u0008b"]) {
      expect(normalizeText(text, 100)).toBeNull();
    }
    expect(codePoints("a😀b")).toBe(3);
  });
});

describe("rate limiting (injected clock)", () => {
  test("a bucket: a burst, then one token per 1/perSecond seconds", () => {
    const bucket = new TokenBucket(3, 2, 1_000);
    expect([1, 2, 3, 4].map(() => bucket.take(1_000))).toEqual([true, true, true, false]);
    expect(bucket.take(1_499)).toBe(false);
    expect(bucket.take(1_500)).toBe(true);
    expect(bucket.take(1_500)).toBe(false);
    // A long pause refills only up to the burst.
    expect([1, 2, 3, 4].map(() => bucket.take(60_000))).toEqual([true, true, true, false]);
  });

  test("a clock that goes backwards refills nothing", () => {
    const bucket = new TokenBucket(1, 1000, 5_000);
    expect(bucket.take(5_000)).toBe(true);
    expect(bucket.take(4_000)).toBe(false);
  });

  test("abuse after N limited answers in a row on one connection, whichever bucket; a success resets", () => {
    const user = new TokenBucket(1, 1, 0);
    const own = new TokenBucket(1, 1, 0);
    const limiter = new RateLimiter(3);
    expect(limiter.count(user.take(0))).toBe("ok");
    expect([limiter.count(user.take(0)), limiter.count(user.take(0))]).toEqual(["limited", "limited"]);
    expect(limiter.count(own.take(0))).toBe("ok");
    expect([limiter.count(user.take(0)), limiter.count(own.take(0)), limiter.count(user.take(0))]).toEqual(["limited", "limited", "abuse"]);
  });

  test("one bucket shared by two connections limits them together", () => {
    const shared = new TokenBucket(3, 1, 0);
    const [a, b] = [new RateLimiter(100), new RateLimiter(100)];
    expect([a.count(shared.take(0)), b.count(shared.take(0)), a.count(shared.take(0)), b.count(shared.take(0))]).toEqual(["ok", "ok", "ok", "limited"]);
  });

  test("Buckets keeps a key's bucket until it is full again, or kept by the caller", () => {
    const buckets = new Buckets(2, 1);
    buckets.get("u1", 0).take(0);
    buckets.get("u2", 0).take(0);
    buckets.get("u3", 0);
    buckets.sweep(500, (key) => key === "u2");
    expect(buckets.size).toBe(2); // u3 was full; u1 has not refilled yet; u2 is kept
    expect(buckets.get("u1", 500).take(500)).toBe(true);
    expect(buckets.get("u1", 500).take(500)).toBe(false); // the same bucket, half a token left
    buckets.sweep(10_000);
    expect(buckets.size).toBe(0);
  });
});

describe("Presence (injected clock)", () => {
  const alice = { id: "a", name: "alice" };
  const bob = { id: "b", name: "bob" };

  test("join reports new, again and returned", () => {
    const p = new Presence<string>(1000);
    expect(p.join("general", alice, "c1")).toBe("new");
    expect(p.join("general", alice, "c1")).toBe("again");
    expect(p.join("general", bob, "c2")).toBe("new");
    expect(p.members("general")).toEqual([alice, bob]);
    expect(p.count("general")).toBe(2);
    expect(p.active()).toEqual([{ room: "general", members: 2 }]);
  });

  test("a dropped member stays in grace and leaves when it ends", () => {
    const p = new Presence<string>(1000);
    p.join("general", alice, "c1");
    p.join("dev", alice, "c1");
    p.join("general", bob, "c2");
    expect(p.drop("c1", "a", ["general", "dev"], 10_000, false)).toEqual([]);
    expect(p.members("general")).toEqual([alice, bob]);
    expect(p.isMember("a")).toBe(true);
    expect(p.nextExpiry()).toBe(11_000);
    expect(p.expire(10_999)).toEqual([]);
    expect(p.expire(11_000)).toEqual([
      { room: "general", user: alice },
      { room: "dev", user: alice },
    ]);
    expect(p.members("general")).toEqual([bob]);
    expect(p.active()).toEqual([{ room: "general", members: 1 }]);
    expect(p.isMember("a")).toBe(false);
    expect(p.nextExpiry()).toBeNull();
  });

  test("coming back within grace announces nothing and cancels the leave", () => {
    const p = new Presence<string>(1000);
    p.join("general", alice, "c1");
    p.drop("c1", "a", ["general"], 0, false);
    expect(p.join("general", alice, "c9")).toBe("returned");
    expect(p.nextExpiry()).toBeNull();
    expect(p.expire(5_000)).toEqual([]);
    expect(p.members("general")).toEqual([alice]);
    // A later drop starts a new grace; the old deadline does not end it early.
    p.drop("c9", "a", ["general"], 500, false);
    expect(p.expire(1_000)).toEqual([]);
    expect(p.expire(1_500)).toEqual([{ room: "general", user: alice }]);
  });

  test("a drop by a connection that is not the member's changes nothing", () => {
    const p = new Presence<string>(1000);
    p.join("general", alice, "new");
    expect(p.drop("old", "a", ["general"], 0, true)).toEqual([]);
    expect(p.members("general")).toEqual([alice]);
  });

  test("immediate drops and a zero grace leave at once", () => {
    const p = new Presence<string>(0);
    p.join("general", alice, "c1");
    expect(p.drop("c1", "a", ["general"], 0, false)).toEqual(["general"]);
    const q = new Presence<string>(1000);
    q.join("general", bob, "t1");
    expect(q.drop("t1", "b", ["general"], 0, true)).toEqual(["general"]);
    expect(q.count("general")).toBe(0);
  });

  test("an explicit leave is at once and only for members", () => {
    const p = new Presence<string>(1000);
    p.join("general", alice, "c1");
    expect(p.leave("general", "a", "c1")).toBe(true);
    expect(p.leave("general", "a", "c1")).toBe(false);
    expect(p.members("general")).toEqual([]);
  });

  test("several connections of one user are one member; it leaves with the last (§10)", () => {
    const p = new Presence<string>(1000);
    expect(p.join("general", alice, "tab1")).toBe("new");
    expect(p.join("general", alice, "tab2")).toBe("again");
    expect(p.members("general")).toEqual([alice]);
    expect(p.leave("general", "a", "tab1")).toBe(false); // tab2 is still there
    expect(p.members("general")).toEqual([alice]);
    expect(p.drop("tab2", "a", ["general"], 0, false)).toEqual([]); // the last one: grace
    expect(p.nextExpiry()).toBe(1000);
    expect(p.join("general", alice, "tab3")).toBe("returned");
    p.join("general", alice, "tab4");
    expect(p.drop("tab3", "a", ["general"], 0, true)).toEqual([]); // tab4 remains: no leave even at once
    expect(p.roomsOfUser("a")).toEqual(["general"]);
    expect(p.leave("general", "a", "tab4")).toBe(true);
    expect(p.roomsOfUser("a")).toEqual([]);
  });
});

describe("LineSplitter", () => {
  const bytes = (s: string) => new TextEncoder().encode(s);
  const text = (items: (Uint8Array | typeof TOO_LONG)[]) =>
    items.map((i) => (i === TOO_LONG ? "<TOO_LONG>" : new TextDecoder().decode(i)));

  test("reassembles lines split across chunks, also inside a UTF-8 character", () => {
    const s = new LineSplitter(100);
    const all = bytes("héllo\n");
    expect(text(s.push(all.subarray(0, 2)))).toEqual([]);
    expect(text(s.push(all.subarray(2, 3)))).toEqual([]);
    expect(text(s.push(all.subarray(3)))).toEqual(["héllo"]);
  });

  test("handles several lines in one chunk and drops a CR before LF", () => {
    const s = new LineSplitter(100);
    expect(text(s.push(bytes("one\r\ntwo\n\nthree\nfour")))).toEqual(["one", "two", "", "three"]);
    expect(text(s.push(bytes("\n")))).toEqual(["four"]);
  });

  test("a line of exactly the limit passes; one byte more is rejected once", () => {
    const s = new LineSplitter(8);
    expect(text(s.push(bytes("12345678\n123456789\nok\n")))).toEqual(["12345678", "<TOO_LONG>", "ok"]);
  });

  test("an over-long line is reported once and discarded up to its newline, across chunks", () => {
    const s = new LineSplitter(8);
    expect(text(s.push(bytes("0123456789")))).toEqual(["<TOO_LONG>"]);
    expect(text(s.push(bytes("x".repeat(10_000))))).toEqual([]);
    expect(text(s.push(bytes("yyy\nnext\n")))).toEqual(["next"]);
  });

  test("never holds more than the limit of an unfinished line", () => {
    const s = new LineSplitter(8);
    for (let i = 0; i < 8; i++) expect(s.push(bytes("a"))).toEqual([]);
    expect(text(s.push(bytes("a")))).toEqual([]); // 9 bytes: could still be 8 + CR
    expect(text(s.push(bytes("a")))).toEqual(["<TOO_LONG>"]);
    expect(text(s.push(bytes("\nb\n")))).toEqual(["b"]);
  });

  test("keeps its own copy of a partial line when the caller reuses its buffer", () => {
    const s = new LineSplitter(100);
    const buf = bytes("abc");
    s.push(buf);
    buf.set(bytes("xyz"));
    expect(text(s.push(bytes("\n")))).toEqual(["abc"]);
  });
});

describe("TCP rendering", () => {
  test("a message is one line per line of text, time in UTC", () => {
    const m = { type: "message" as const, room: "general", seq: 1, id: "x", user: { id: "u", name: "alice" }, text: "hi\nthere", ts: Date.UTC(2026, 0, 1, 9, 5) };
    expect(formatMessageLines(m)).toBe("[general] 09:05 alice: hi\n[general] 09:05 alice: there\n");
    expect(hhmm(Date.UTC(2026, 0, 1, 23, 59, 59))).toBe("23:59");
  });

  test("presence lines", () => {
    const user = { id: "u", name: "bob" };
    expect(formatPresenceLine({ type: "presence", room: "dev", event: "join", user })).toBe("* bob joined dev\n");
    expect(formatPresenceLine({ type: "presence", room: "dev", event: "leave", user })).toBe("* bob left dev\n");
  });
});

describe("HTTP helpers", () => {
  test("origin: absent, listed or same host:port pass; null, others and garbage fail", () => {
    const allowed = ["https://chat.example.com"];
    expect(originAllowed(null, "localhost:3000", allowed)).toBe(true);
    expect(originAllowed("https://chat.example.com", "internal:3000", allowed)).toBe(true);
    expect(originAllowed("http://localhost:3000", "localhost:3000", allowed)).toBe(true);
    expect(originAllowed("https://app.fly.dev", "app.fly.dev", allowed)).toBe(true);
    expect(originAllowed("https://APP.fly.dev", "app.fly.dev", [])).toBe(true);
    expect(originAllowed("http://localhost:3001", "localhost:3000", allowed)).toBe(false);
    expect(originAllowed("https://evil.example", "localhost:3000", allowed)).toBe(false);
    expect(originAllowed("https://chat.example.com.evil.example", "x", allowed)).toBe(false);
    expect(originAllowed("null", "localhost:3000", allowed)).toBe(false);
    expect(originAllowed("not a url", "localhost:3000", allowed)).toBe(false);
    expect(originAllowed("http://localhost:3000", null, [])).toBe(false);
  });

  test("history query parameters", () => {
    const q = (s: string) => pageQuery(new URLSearchParams(s));
    expect(q("")).toEqual({ after: undefined, before: undefined, limit: 50 });
    expect(q("after=3&before=9&limit=200")).toEqual({ after: 3, before: 9, limit: 200 });
    for (const bad of ["limit=0", "limit=201", "after=-1", "after=1.5", "before=x", "after=", "limit=1e2"]) expect(q(bad)).toBeNull();
  });

  test("metrics render every contract name, errors by code, and the histogram", () => {
    const m = new Metrics();
    m.error("rate_limited");
    m.storageWrite(0.0003);
    m.storageWrite(2);
    const text = m.render(7);
    for (const name of [
      "chat_connections 7",
      "chat_joins_total 0",
      "chat_messages_in_total 0",
      "chat_messages_out_total 0",
      'chat_errors_total{code="rate_limited"} 1',
      'chat_errors_total{code="bad_request"} 0',
      "chat_publish_drops_total 0",
      "chat_backpressure_closes_total 0",
      'chat_storage_write_seconds_bucket{le="0.00025"} 0',
      'chat_storage_write_seconds_bucket{le="0.0005"} 1',
      'chat_storage_write_seconds_bucket{le="+Inf"} 2',
      "chat_storage_write_seconds_count 2",
      "# TYPE chat_storage_write_seconds histogram",
      "# TYPE chat_connections gauge",
    ]) {
      expect(text).toContain(name + "\n");
    }
  });
});

describe("the page's copies of protocol values", () => {
  // The page cannot import values from server.ts (that would bundle bun:sqlite), so it keeps
  // copies; these must not drift from the server's.
  test("match the server's", async () => {
    const app = await Bun.file(new URL("../public/app.ts", import.meta.url)).text();
    const connection = await Bun.file(new URL("../public/connection.ts", import.meta.url)).text();
    expect(app).toContain(`const ROOM_PATTERN = ${ROOM_PATTERN};`);
    expect(app).toContain(`const HISTORY_PAGE_MAX = ${HISTORY_PAGE_MAX};`);
    expect(connection).toContain(`const CLOSE_SHUTDOWN = ${CLOSE.shutdown};`);
    expect(connection).toContain(`const CLOSE_POLICY = ${CLOSE.policy};`);
    expect(connection).toContain(`const CLOSE_REPLACED = ${CLOSE.replaced};`);
  });
});
