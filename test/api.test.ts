/**
 * Bots and the HTTP server API (§11.6), on both engines: bot tokens made, listed and revoked by
 * admins (and from the command line), bots signing in and posting, every command of §11.3 over
 * HTTP with the WebSocket's rights and rate limits and §11.6's status codes, and the OpenAPI
 * document, which real answers are checked against.
 */
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { Client, ENGINES, engineServers, run, SERVER_COMMAND, spawnServer, sqliteWith, startServer, tempDir, user, type Frame, type TestServer } from "./helpers.ts";

const ADMIN_TOKEN = "admin-token-for-the-tests-0123456789";
const asAdmin = { authorization: `Bearer ${ADMIN_TOKEN}` };

/** A JSON request to the server's API. */
function api(server: TestServer, method: string, path: string, token: string | null, body?: unknown, headers: Record<string, string> = {}) {
  return server.http(path, {
    method,
    headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body !== undefined ? { "content-type": "application/json" } : {}), ...headers },
    ...(body !== undefined ? { body: typeof body === "string" ? body : JSON.stringify(body) } : {}),
  });
}

/** Makes a bot through the API; returns its user and token. */
async function makeBot(server: TestServer, name: string): Promise<{ bot: Record<string, any>; token: string }> {
  const res = await api(server, "POST", "/api/bots", ADMIN_TOKEN, { name });
  expect(res.status).toBe(201);
  return (await res.json()) as { bot: Record<string, any>; token: string };
}

/**
 * Checks `value` against the subset of JSON Schema (2020-12) that zod's toJSONSchema writes:
 * type, const, enum, properties, required, additionalProperties, items, anyOf, nullable via
 * type lists, minimum/maximum, pattern. Returns where it breaks, or null.
 */
function violation(schema: any, value: any, at = "$"): string | null {
  if (schema === true || schema === undefined || Object.keys(schema).length === 0) return null;
  if (schema.anyOf) return schema.anyOf.some((s: any) => violation(s, value, at) === null) ? null : `${at}: matches no anyOf`;
  if (schema.oneOf) return schema.oneOf.filter((s: any) => violation(s, value, at) === null).length === 1 ? null : `${at}: matches not exactly one oneOf`;
  if ("const" in schema && value !== schema.const) return `${at}: not ${JSON.stringify(schema.const)}`;
  if (schema.enum && !schema.enum.includes(value)) return `${at}: not one of ${schema.enum}`;
  const types: string[] = schema.type === undefined ? [] : [schema.type].flat();
  const kind = value === null ? "null" : Array.isArray(value) ? "array" : Number.isInteger(value) ? "integer" : typeof value;
  if (types.length && !types.includes(kind) && !(kind === "integer" && types.includes("number"))) return `${at}: ${kind}, not ${types}`;
  if (typeof value === "number" && schema.minimum !== undefined && value < schema.minimum) return `${at}: below ${schema.minimum}`;
  if (typeof value === "string" && schema.pattern && !new RegExp(schema.pattern).test(value)) return `${at}: not ${schema.pattern}`;
  if (kind === "object") {
    for (const key of schema.required ?? []) if (!(key in value)) return `${at}.${key}: missing`;
    for (const [key, v] of Object.entries(value)) {
      const sub = schema.properties?.[key] ?? schema.additionalProperties;
      if (sub === false) return `${at}.${key}: not allowed`;
      const broken = violation(sub, v, `${at}.${key}`);
      if (broken) return broken;
    }
  }
  if (kind === "array" && schema.items) for (const [i, v] of value.entries()) {
    const broken = violation(schema.items, v, `${at}[${i}]`);
    if (broken) return broken;
  }
  return null;
}

/** The schema the OpenAPI document gives an answer of `path`'s `method` with `status`. */
function responseSchema(doc: any, path: string, method: string, status: number): any {
  const answer = doc.paths[path]?.[method]?.responses?.[String(status)];
  if (!answer) throw new Error(`the document has no ${status} for ${method} ${path}`);
  return answer.content["application/json"].schema;
}

for (const engine of ENGINES) {
  describe(engine, () => {
    const { startServer: start } = engineServers(engine);
    const startServer = (options = {}) => start({ adminToken: ADMIN_TOKEN, ...options });

    test("bots: made by an admin (token shown once), listed, signed in with kind bot; a revoked token stops at once and its connections close 4003", async () => {
      await using server = await startServer();
      const { bot, token } = await makeBot(server, "Deploy Bot");
      expect(bot).toEqual({ id: expect.stringMatching(/^b:/), name: "Deploy Bot", kind: "bot" });
      expect(token).toMatch(/^bot_[A-Za-z0-9_-]{43,}$/); // 256 bits
      expect((await (await api(server, "GET", "/api/bots", ADMIN_TOKEN)).json()).bots).toEqual([{ ...bot, createdAt: expect.any(Number), revoked: false }]);
      const ws = await Client.connect(server.wsUrl);
      ws.send({ type: "hello", token });
      expect(await ws.expect("welcome")).toMatchObject({ user: bot });
      const human = await user(server, "human", "ops");
      expect((await ws.join("ops")).members).toContainEqual(bot as Frame);
      // A bot may not manage bots.
      expect((await api(server, "GET", "/api/bots", token)).status).toBe(403);
      const revoked = await api(server, "DELETE", `/api/bots/${bot.id}`, ADMIN_TOKEN);
      expect(await revoked.json()).toEqual({ bot: { ...bot, createdAt: expect.any(Number), revoked: true } });
      expect(await ws.closed).toEqual({ code: 4003, reason: "revoked" });
      expect((await api(server, "POST", "/api/rooms/ops/messages", token, { text: "still?" })).status).toBe(401);
      const again = await Client.connect(server.wsUrl);
      again.send({ type: "hello", token });
      expect(await again.next()).toMatchObject({ type: "error", code: "auth_invalid" });
      expect((await api(server, "DELETE", "/api/bots/b:nobody", ADMIN_TOKEN)).status).toBe(404);
      for (const c of [human, again]) c.close();
    });

    test("a retried id the room refuses now (slow mode, read-only) is 200 with the original; a new id, the refusal", async () => {
      await using server = await startServer();
      const { token } = await makeBot(server, "poster");
      const owner = await user(server, "olga", "slow");
      const settings = async (fields: object) => {
        owner.send({ type: "room_settings", room: "slow", ...fields, ref: "s" });
        await owner.until((f) => f.ref === "s");
      };
      await settings({ slowModeSeconds: 60 });
      const post = (id: string) => api(server, "POST", "/api/rooms/slow/messages", token, { text: "once", id });
      const first = await post("k1");
      expect(first.status).toBe(201);
      const { message } = await first.json();
      const answer = async (res: Response) => [res.status, await res.json()];
      expect(await answer(await post("k1"))).toEqual([200, { message }]);
      expect(await answer(await post("k2"))).toEqual([429, { error: "slow_mode", message: expect.any(String) }]);
      await settings({ slowModeSeconds: 0, readOnly: true });
      expect(await answer(await post("k1"))).toEqual([200, { message }]);
      expect(await answer(await post("k3"))).toEqual([403, { error: "read_only", message: expect.any(String) }]);
      owner.close();
    });

    test("a post refused for its replyTo (404) does not use up the slow-mode slot (§11.2)", async () => {
      await using server = await startServer();
      const { token } = await makeBot(server, "poster");
      const owner = await user(server, "olga", "slow");
      owner.send({ type: "room_settings", room: "slow", slowModeSeconds: 60, ref: "s" });
      await owner.until((f) => f.ref === "s");
      const post = async (body: object) => {
        const res = await api(server, "POST", "/api/rooms/slow/messages", token, body);
        return [res.status, (await res.json()).error];
      };
      expect(await post({ text: "re", id: "bad-reply", replyTo: 999 })).toEqual([404, "not_found"]);
      expect(await post({ text: "first", id: "first" })).toEqual([201, undefined]);
      expect(await post({ text: "again", id: "second" })).toEqual([429, "slow_mode"]);
      owner.close();
    });

    test("a retried reply whose target was trimmed since is 200 with the original; a new reply to it, 404", async () => {
      await using server = await startServer({ historyRetain: 2 });
      const { token } = await makeBot(server, "poster");
      const post = (body: object) => api(server, "POST", "/api/rooms/news/messages", token, body);
      const target = (await (await post({ text: "question" })).json()).message;
      const first = await post({ text: "answer", id: "reply-1", replyTo: target.seq });
      expect(first.status).toBe(201);
      const { message } = await first.json();
      expect((await post({ text: "later" })).status).toBe(201);
      // Retained: the reply and the one after it; the target is gone.
      const page = await (await server.http("/api/rooms/news/messages")).json();
      expect(page.messages.map((m: Frame) => m.seq)).toEqual([message.seq, message.seq + 1]);
      const retry = await post({ text: "answer", id: "reply-1", replyTo: target.seq });
      expect([retry.status, await retry.json()]).toEqual([200, { message }]);
      expect((await post({ text: "answer", id: "reply-2", replyTo: target.seq })).status).toBe(404);
    });

    test("a bot posts without a connection: 201 with the message, everyone sees it, a retried id is 200 with the original", async () => {
      await using server = await startServer();
      const { bot, token } = await makeBot(server, "announcer");
      const human = await user(server, "human", "news");
      const res = await api(server, "POST", "/api/rooms/news/messages", token, { text: "  deployed v2  ", id: "deploy-2", extra: "ignored" });
      expect(res.status).toBe(201);
      const { message } = await res.json();
      expect(message).toEqual({ type: "message", room: "news", seq: 1, id: "deploy-2", user: bot, text: "deployed v2", ts: expect.any(Number) });
      expect(await human.next()).toEqual(message);
      const retry = await api(server, "POST", "/api/rooms/news/messages", token, { text: "other", id: "deploy-2" });
      expect([retry.status, (await retry.json()).message]).toEqual([200, message]);
      // Without an id, each post is new.
      const fresh = await (await api(server, "POST", "/api/rooms/news/messages", token, { text: "again" })).json();
      expect(fresh.message.seq).toBe(2);
      human.close();
    });

    test("status codes: 401 without or with a bad token, 415, 413, 400, 403 private and banned, 404, 429 with Retry-After", async () => {
      await using server = await startServer({ rateLimitBurst: 3, rateLimitPerSecond: 1 });
      const { token } = await makeBot(server, "prober");
      const owner = await user(server, "olga", "vault");
      owner.send({ type: "room_settings", room: "vault", private: true });
      await owner.until((f) => f.type === "ok");
      const post = (body: unknown, t: string | null = token, headers?: Record<string, string>) => api(server, "POST", "/api/rooms/hall/messages", t, body, headers);
      const code = async (res: Response) => [res.status, (await res.json()).error];
      expect(await code(await post({ text: "x" }, null))).toEqual([401, "auth_required"]);
      expect(await code(await post({ text: "x" }, "bot_unknown"))).toEqual([401, "auth_invalid"]);
      expect(await code(await post({ text: "x" }, "malformed token"))).toEqual([401, "auth_required"]);
      expect((await post("text=x", token, { "content-type": "text/plain" })).status).toBe(415);
      expect((await post({ text: "x".repeat(70_000) })).status).toBe(413);
      expect(await code(await post("{not json"))).toEqual([400, "bad_request"]);
      expect(await code(await post({ text: 42 }))).toEqual([400, "bad_request"]);
      expect(await code(await post({ text: "  " }))).toEqual([400, "text_invalid"]);
      expect(await code(await api(server, "POST", "/api/rooms/Hall!/messages", token, { text: "x" }))).toEqual([400, "room_invalid"]);
      // Requests that got as far as a token spent one each (2 so far); the bucket holds 3: 429 with Retry-After, in seconds.
      const statuses = [];
      for (let i = 0; i < 3; i++) statuses.push((await post({ text: `x${i}` })).status);
      expect(statuses).toEqual([201, 429, 429]);
      const limited = await post({ text: "x" });
      expect([limited.status, limited.headers.get("retry-after")]).toEqual([429, expect.stringMatching(/^[1-9]\d*$/)]);
      // A fresh bot: a private room it is not on; a room it is banned from.
      const { bot: b2, token: t2 } = await makeBot(server, "second");
      expect(await code(await api(server, "POST", "/api/rooms/vault/messages", t2, { text: "let me in" }))).toEqual([403, "forbidden"]);
      expect((await api(server, "GET", "/api/rooms/vault/messages", t2)).status).toBe(404);
      // A bot acts without a connection: every room knows it, and it can be banned from one.
      expect((await api(server, "POST", "/api/ban", ADMIN_TOKEN, { room: "hall", user: b2.id })).status).toBe(200);
      expect(await code(await api(server, "POST", "/api/rooms/hall/messages", t2, { text: "after the ban" }))).toEqual([403, "banned"]);
      expect(await code(await api(server, "POST", "/api/ban", ADMIN_TOKEN, { room: "hall", user: "b:nobody" }))).toEqual([404, "not_found"]);
      owner.close();
    });

    test("a bot banned from the whole server is refused on every route, 403 banned, as its hello is; unbanned, it posts again", async () => {
      await using server = await startServer();
      const { bot, token } = await makeBot(server, "spammer");
      const human = await user(server, "human", "hall");
      const ws = await Client.connect(server.wsUrl);
      ws.send({ type: "hello", token });
      await ws.expect("welcome");
      expect((await api(server, "POST", "/api/ban", ADMIN_TOKEN, { user: bot.id })).status).toBe(200);
      expect((await ws.closed).code).toBe(4003);
      const again = await Client.connect(server.wsUrl);
      again.send({ type: "hello", token });
      expect(await again.next()).toMatchObject({ type: "error", code: "banned" });
      const answer = async (res: Response) => [res.status, await res.json()];
      const banned = [403, { error: "banned", message: expect.any(String) }];
      expect(await answer(await api(server, "POST", "/api/rooms/hall/messages", token, { text: "still here" }))).toEqual(banned);
      expect(await answer(await api(server, "POST", "/api/invite", token, { room: "hall" }))).toEqual(banned);
      expect(await answer(await api(server, "GET", "/api/rooms/hall/messages", token))).toEqual(banned);
      expect((await api(server, "POST", "/api/unban", ADMIN_TOKEN, { user: bot.id })).status).toBe(200);
      expect((await api(server, "POST", "/api/rooms/hall/messages", token, { text: "back" })).status).toBe(201);
      for (const c of [human, again]) c.close();
    });

    test("a post to a new room starts it as a join does: the poster owns it; ROOM_STARTS_PER_HOUR bounds it (429 with Retry-After)", async () => {
      await using server = await startServer({ roomStartsPerHour: 1 });
      const { token } = await makeBot(server, "starter");
      expect((await api(server, "POST", "/api/rooms/fresh/messages", token, { text: "first" })).status).toBe(201);
      // The bot owns the room it started: it may set what only an owner sets.
      expect((await api(server, "POST", "/api/room_settings", token, { room: "fresh", slowModeSeconds: 5 })).status).toBe(200);
      const guest = await user(server, "human", "fresh");
      expect(guest.frames.at(-1)).toMatchObject({ type: "joined", room: "fresh", role: "member" });
      const second = await api(server, "POST", "/api/rooms/another/messages", token, { text: "one too many" });
      expect([second.status, (await second.json()).error, second.headers.get("retry-after")]).toEqual([429, "rate_limited", expect.stringMatching(/^[1-9]\d*$/)]);
      // A room that exists takes posts as ever.
      expect((await api(server, "POST", "/api/rooms/fresh/messages", token, { text: "again", id: "2" })).status).toBe(201);
      guest.close();
    });

    test("ROOM_CREATION=admins: a bot's post does not start a room (403 forbidden); the admin bearer's does, and then the bot posts", async () => {
      await using server = await startServer({ roomCreation: "admins" });
      const { token } = await makeBot(server, "starter");
      const code = async (res: Response) => [res.status, (await res.json()).error];
      expect(await code(await api(server, "POST", "/api/rooms/brandnew/messages", token, { text: "first" }))).toEqual([403, "forbidden"]);
      expect((await (await api(server, "GET", "/api/rooms/brandnew/messages", null)).json()).messages).toEqual([]); // nothing stored
      expect((await api(server, "POST", "/api/rooms/brandnew/messages", ADMIN_TOKEN, { text: "opened" })).status).toBe(201);
      expect((await api(server, "POST", "/api/rooms/brandnew/messages", token, { text: "first" })).status).toBe(201);
    });

    test("the admin bearer's posts rank as an admin's: a room's owner may not delete them", async () => {
      await using server = await startServer();
      const owner = await user(server, "olga", "hall"); // the first joiner: the owner
      const res = await api(server, "POST", "/api/rooms/hall/messages", ADMIN_TOKEN, { text: "server maintenance at 5" });
      expect(res.status).toBe(201);
      const { message } = await res.json();
      expect(message.user).toEqual({ id: "b:admin", name: "admin", kind: "bot" });
      await owner.until((f) => f.type === "message");
      owner.send({ type: "delete", room: "hall", seq: message.seq, ref: "d" });
      expect((await owner.until((f) => f.type === "error" || f.type === "ok")).at(-1)).toMatchObject({ type: "error", code: "forbidden", ref: "d" });
      owner.close();
    });

    test("GET /api/audit: a bot's token (known, not an admin's) is 403 forbidden; an unknown one 401; the admin's 200", async () => {
      await using server = await startServer();
      const { token } = await makeBot(server, "auditor");
      const code = async (res: Response) => [res.status, (await res.json()).error];
      expect(await code(await api(server, "GET", "/api/audit", token))).toEqual([403, "forbidden"]);
      expect(await code(await api(server, "GET", "/api/audit", "bot_unknown"))).toEqual([401, "auth_invalid"]);
      expect((await api(server, "GET", "/api/audit", ADMIN_TOKEN)).status).toBe(200);
    });

    test("a private room's history over HTTP: 404 for anyone and a bot off its list, 200 for a bot on it and the admin", async () => {
      await using server = await startServer();
      const { token } = await makeBot(server, "reader");
      const { token: stranger } = await makeBot(server, "stranger");
      const owner = await user(server, "olga", "vault");
      const ws = await Client.connect(server.wsUrl);
      ws.send({ type: "hello", token });
      await ws.expect("welcome");
      await ws.join("vault");
      owner.send({ type: "room_settings", room: "vault", private: true, ref: "p" }); // lists everyone in it: the bot too
      await owner.until((f) => f.type === "ok");
      const status = async (t: string | null) => (await api(server, "GET", "/api/rooms/vault/messages", t)).status;
      expect([await status(null), await status(stranger), await status(token), await status(ADMIN_TOKEN)]).toEqual([404, 404, 200, 200]);
      for (const c of [owner, ws]) c.close();
    });

    test("every command of §11.3 over HTTP, with the WebSocket's rights: room_settings, role, invite, kick, mute, edit, delete", async () => {
      await using server = await startServer({ rateLimitBurst: 100 });
      const { bot, token } = (await makeBot(server, "modbot")) as { bot: { id: string }; token: string };
      const owner = await user(server, "olga", "club");
      const ownerId = owner.frames[0]!.user.id;
      const member = await user(server, "member", "club");
      const memberId = member.frames[0]!.user.id;
      const body = async (res: Response) => [res.status, await res.json()];
      // The bot has no rights in the room yet.
      expect(await body(await api(server, "POST", "/api/room_settings", token, { room: "club", topic: "bots rule" }))).toEqual([403, { error: "forbidden", message: expect.any(String) }]);
      // The admin makes it a moderator (the bot must be known to the room: it posts first).
      await api(server, "POST", "/api/rooms/club/messages", token, { text: "hi" });
      expect(await body(await api(server, "POST", "/api/role", ADMIN_TOKEN, { room: "club", user: bot.id, role: "moderator" }))).toEqual([200, { type: "ok", for: "role" }]);
      expect(await body(await api(server, "POST", "/api/room_settings", token, { room: "club", topic: "bots rule" }))).toEqual([200, { type: "ok", for: "room_settings" }]);
      const invite = await body(await api(server, "POST", "/api/invite", token, { room: "club", maxUses: 2 }));
      expect(invite).toEqual([200, { type: "invite", room: "club", code: expect.any(String), expiresAt: expect.any(Number), maxUses: 2 }]);
      expect(await body(await api(server, "POST", "/api/mute", token, { room: "club", user: memberId, seconds: 60 }))).toEqual([200, { type: "ok", for: "mute" }]);
      expect(await body(await api(server, "POST", "/api/kick", token, { room: "club", user: ownerId }))).toEqual([403, { error: "forbidden", message: expect.any(String) }]);
      const mine = (await (await api(server, "POST", "/api/rooms/club/messages", token, { text: "tpyo" })).json()).message;
      expect(await body(await api(server, "POST", "/api/edit", token, { room: "club", seq: mine.seq, text: "typo" }))).toEqual([200, { type: "ok", for: "edit" }]);
      expect(await body(await api(server, "POST", "/api/delete", token, { room: "club", seq: mine.seq }))).toEqual([200, { type: "ok", for: "delete" }]);
      expect(await body(await api(server, "POST", "/api/kick", token, { room: "club", user: memberId, reason: "bye" }))).toEqual([200, { type: "ok", for: "kick" }]);
      expect(await member.until((f) => f.type === "left")).toContainEqual({ type: "left", room: "club", reason: "kicked" });
      expect((await api(server, "POST", "/api/kick", token, { room: "club" })).status).toBe(400);
      for (const c of [owner, member]) c.close();
    });

    test("the OpenAPI document: served, every route of the API in it, and real answers match it", async () => {
      await using server = await startServer();
      const doc = await (await server.http("/api/openapi.json")).json();
      expect(doc.openapi).toBe("3.1.0");
      for (const path of ["/api/rooms/{room}/messages", "/api/audit", "/api/bots", "/api/bots/{id}", ...["edit", "delete", "room_settings", "role", "kick", "ban", "unban", "mute", "invite"].map((t) => `/api/${t}`)]) {
        expect(Object.keys(doc.paths)).toContain(path);
      }
      const made = await api(server, "POST", "/api/bots", ADMIN_TOKEN, { name: "schema" });
      const { token, bot } = await made.clone().json();
      const checks: [string, string, Response][] = [
        ["/api/bots", "post", made],
        ["/api/bots", "get", await api(server, "GET", "/api/bots", ADMIN_TOKEN)],
        ["/api/rooms/{room}/messages", "post", await api(server, "POST", "/api/rooms/docs/messages", token, { text: "hi", id: "x" })],
        ["/api/rooms/{room}/messages", "post", await api(server, "POST", "/api/rooms/docs/messages", token, { text: "hi", id: "x" })],
        ["/api/rooms/{room}/messages", "post", await api(server, "POST", "/api/rooms/docs/messages", token, { text: "" })],
        ["/api/rooms/{room}/messages", "post", await api(server, "POST", "/api/rooms/docs/messages", null, { text: "x" })],
        ["/api/room_settings", "post", await api(server, "POST", "/api/room_settings", token, { room: "docs", topic: "schemas" })],
        ["/api/invite", "post", await api(server, "POST", "/api/invite", token, { room: "docs" })],
        ["/api/kick", "post", await api(server, "POST", "/api/kick", token, { room: "docs", user: "nobody" })],
        ["/api/rooms/{room}/messages", "get", await api(server, "GET", "/api/rooms/docs/messages", null)],
        ["/api/rooms/{room}/messages", "get", await api(server, "GET", "/api/rooms/Bad!/messages", null)],
        ["/api/audit", "get", await api(server, "GET", "/api/audit?room=docs", ADMIN_TOKEN)],
        ["/api/audit", "get", await api(server, "GET", "/api/audit", token)],
        ["/api/bots/{id}", "delete", await api(server, "DELETE", `/api/bots/${bot.id}`, ADMIN_TOKEN)],
      ];
      for (const [path, method, res] of checks) {
        const schema = responseSchema(doc, path, method, res.status);
        expect([path, method, res.status, violation(schema, await res.json())]).toEqual([path, method, res.status, null]);
      }
      // The checker itself is not blind: a wrong answer breaks the schema.
      expect(violation(responseSchema(doc, "/api/room_settings", "post", 200), { type: "ok", for: "dance" })).not.toBeNull();
    });
  });
}

describe("bots from the command line", () => {
  test("bun run server.ts bots create / list / revoke, on the server's own file; a running server closes the revoked bot's connection", async () => {
    using dir = tempDir();
    const env = { DATABASE_PATH: join(dir.path, "chat.sqlite") };
    const created = await run([...SERVER_COMMAND, "bots", "create", "CLI", "Bot"], { env });
    expect(created.code).toBe(0);
    const [, id, ...name] = created.stdout.split("\n")[0]!.split(" ");
    const token = created.stdout.split("\n")[1]!.split(" ")[1]!;
    expect([id, name.join(" "), token]).toEqual([expect.stringMatching(/^b:/), "CLI Bot", expect.stringMatching(/^bot_/)]);
    const running = await spawnServer(env);
    try {
      const ws = await Client.connect(running.wsUrl);
      ws.send({ type: "hello", token });
      expect(await ws.expect("welcome")).toMatchObject({ user: { id, kind: "bot" } });
      const listed = await run([...SERVER_COMMAND, "bots", "list"], { env });
      expect(listed.stdout).toContain(`${id}\tCLI Bot\t`);
      const revoked = await run([...SERVER_COMMAND, "bots", "revoke", id!], { env });
      expect([revoked.code, revoked.stdout.trim()]).toEqual([0, `revoked ${id}`]);
      expect(await ws.closed).toEqual({ code: 4003, reason: "revoked" });
      expect((await run([...SERVER_COMMAND, "bots", "revoke", "b:nobody"], { env })).code).toBe(1);
      expect((await run([...SERVER_COMMAND, "bots", "dance"], { env })).code).toBe(2);
    } finally {
      running.proc.kill("SIGTERM");
      await running.output;
    }
  });
});

describe("storage that fails under the API (SQLite)", () => {
  test("a history or audit read that fails is 503 with the error body of §11.6, not a bare 500", async () => {
    const store = sqliteWith((real) => ({
      page: async () => Promise.reject(new Error("disk I/O error (injected)")),
      auditPage: async () => Promise.reject(new Error("disk I/O error (injected)")),
    }));
    await using server = await startServer({ store, adminToken: ADMIN_TOKEN });
    for (const path of ["/api/rooms/r/messages", "/api/audit"]) {
      const res = await api(server, "GET", path, ADMIN_TOKEN);
      expect([path, res.status, await res.json()]).toEqual([path, 503, { error: "internal", message: expect.any(String) }]);
    }
  });

  test("a post whose commit fails is 503 with the error body of §11.6; once storage is back, 201", async () => {
    let failing = true;
    const store = sqliteWith((real) => ({
      append: async (batch) => {
        if (failing) throw new Error("disk I/O error (injected)");
        return real.append(batch);
      },
    }));
    await using server = await startServer({ store, adminToken: ADMIN_TOKEN });
    const res = await api(server, "POST", "/api/rooms/r/messages", ADMIN_TOKEN, { text: "lost?" });
    expect(res.status).toBe(503);
    expect(await res.json()).toEqual({ error: "internal", message: expect.any(String) });
    failing = false;
    const again = await api(server, "POST", "/api/rooms/r/messages", ADMIN_TOKEN, { text: "stored" });
    expect(again.status).toBe(201);
    expect(((await again.json()) as { message: { text: string } }).message.text).toBe("stored");
  });

  test("the bot routes whose storage fails are 503 with the same body, not the bare 500: make, list, revoke", async () => {
    const disk = () => Promise.reject(new Error("disk I/O error (injected)"));
    const store = sqliteWith(() => ({ createBot: disk, bots: disk }));
    await using server = await startServer({ store, adminToken: ADMIN_TOKEN });
    const answers = [
      await api(server, "POST", "/api/bots", ADMIN_TOKEN, { name: "x" }),
      await api(server, "GET", "/api/bots", ADMIN_TOKEN),
      await api(server, "DELETE", "/api/bots/b:any", ADMIN_TOKEN),
    ];
    const internal = { error: "internal", message: expect.any(String) };
    expect(await Promise.all(answers.map(async (res) => [res.status, await res.json()]))).toEqual([[503, internal], [503, internal], [503, internal]]);
  });
});
