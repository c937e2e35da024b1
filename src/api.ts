/**
 * The HTTP server API (§11.6): bots and admins post messages and run rooms over HTTP with a
 * bearer token, through the very commands the WebSocket door hands the hub, with the same zod
 * schemas, rights and rate limits; and the OpenAPI 3.1 document of every /api route, generated
 * from those schemas (GET /api/openapi.json), so the two cannot drift.
 */
import type { Server } from "bun";
import { Hono, type Context as HonoContext } from "hono";
import { z } from "zod";
import type { Actor } from "./authority.ts";
import { botRef } from "./bots.ts";
import type { WsConnection } from "./connection.ts";
import type { Context } from "./context.ts";
import type { Hub } from "./hub.ts";
import { ClientFrameSchema, type Failure, type Result } from "./protocol/rules.ts";
import { isRoom, type ClientFrameType, type ErrorCode } from "./protocol/wire.ts";

/** Bounds a request body, in bytes (§11.6: 413 past it). */
const BODY_MAX_BYTES = 65_536;

/** The commands of §11.3 the API takes at `POST /api/<type>`, with the fields of the frame. */
export const API_COMMANDS = ["edit", "delete", "room_settings", "role", "kick", "ban", "unban", "mute", "invite"] as const;

/** Each error code's HTTP status (§11.6). */
const STATUS: Partial<Record<ErrorCode, 400 | 401 | 403 | 404 | 409 | 429 | 503>> = {
  bad_request: 400,
  text_invalid: 400,
  room_invalid: 400,
  invite_invalid: 400,
  auth_required: 401,
  auth_invalid: 401,
  forbidden: 403,
  banned: 403,
  muted: 403,
  read_only: 403,
  not_found: 404,
  room_limit: 409,
  rate_limited: 429,
  slow_mode: 429,
  internal: 503,
};

/** The zod schema of a client frame, by type: the one parseFrame reads the WebSocket with. */
function frameSchema(type: ClientFrameType): z.ZodObject<z.ZodRawShape> {
  return ClientFrameSchema.options.find((o) => o.shape.type.value === type)! as unknown as z.ZodObject<z.ZodRawShape>;
}

// ─── Response shapes (the OpenAPI document's; tests check real answers against it) ───────────

const User = z.object({ id: z.string(), name: z.string(), kind: z.enum(["member", "bot"]).optional() });
const Message = z.object({
  type: z.literal("message"),
  room: z.string(),
  seq: z.int(),
  id: z.string(),
  user: User,
  text: z.string(),
  ts: z.int(),
  replyTo: z.int().optional(),
  edited: z.int().optional(),
  deleted: z.int().optional(),
});
const Ok = z.object({ type: z.literal("ok"), for: z.enum(API_COMMANDS) });
const Invite = z.object({ type: z.literal("invite"), room: z.string(), code: z.string(), expiresAt: z.int(), maxUses: z.int().nullable() });
const ApiError = z.object({ error: z.string(), message: z.string() });
const Bot = z.object({ id: z.string(), name: z.string(), kind: z.literal("bot"), createdAt: z.int().optional(), revoked: z.boolean().optional() });
const PostMessage = frameSchema("send").pick({ text: true, replyTo: true }).extend({ id: (frameSchema("send").shape.id as z.ZodString).optional() });
const CreateBot = z.object({ name: z.string() });

/** An answer of the API: its JSON, status and headers. */
type Answer = { body: unknown; status: 200 | 201 | 400 | 401 | 403 | 404 | 409 | 413 | 415 | 429 | 503; headers?: Record<string, string> };

/** The answer to a refusal (§11.6): `{error, message}` with the code's status; 429s say when to retry. */
function refused(failure: Failure): Answer {
  const status = STATUS[failure.code] ?? 400;
  const retry = failure.extra?.retryAfterMs;
  return { body: { error: failure.code, message: failure.message }, status, ...(retry !== undefined ? { headers: { "retry-after": String(Math.ceil(retry / 1000)) } } : {}) };
}

const problem = (status: Answer["status"], error: string, message: string): Answer => ({ body: { error, message }, status });

/** The HTTP door's environment: the Bun server a request came to. */
type ApiEnv = { Bindings: Server<WsConnection> };
type ApiContext = HonoContext<ApiEnv>;
/** Where a request came from, as the HTTP door reads it (behind a trusted proxy, what the proxy says). */
export type AddressOf = (req: Request, server: Server<WsConnection>) => string;

/**
 * The API's routes, as a Hono app of their own: server.ts mounts them on the HTTP door's and
 * hands over how that door reads a request's address (address bans and room starts count by it).
 */
export function apiRoutes(hub: Hub, ctx: Context, addressOf: AddressOf): Hono<ApiEnv> {
  const app = new Hono<ApiEnv>();
  /** The bearer's actor, or the answer to a missing or unknown token (401) or a banned bot (403). */
  async function bearer(c: ApiContext): Promise<Actor | Answer> {
    const token = /^Bearer (\S+)$/i.exec(c.req.header("authorization") ?? "")?.[1];
    if (!token) return problem(401, "auth_required", "send Authorization: Bearer <ADMIN_TOKEN or a bot token>");
    const actor = await hub.bots.actorFor(token, addressOf(c.req.raw, c.env));
    return actor.ok ? actor.value : refused(actor);
  }

  /** The request's JSON body as an object, or the 413/415/400 to answer. */
  async function body(c: ApiContext): Promise<Record<string, unknown> | Answer> {
    if (!/^application\/json(;|$)/i.test(c.req.header("content-type") ?? "")) return problem(415, "unsupported", "the body must be application/json");
    if (Number(c.req.header("content-length") ?? 0) > BODY_MAX_BYTES) return problem(413, "too_large", `a body is at most ${BODY_MAX_BYTES} bytes`);
    const text = await c.req.text();
    if (Buffer.byteLength(text) > BODY_MAX_BYTES) return problem(413, "too_large", `a body is at most ${BODY_MAX_BYTES} bytes`);
    try {
      const data = JSON.parse(text);
      if (typeof data === "object" && data !== null && !Array.isArray(data)) return data as Record<string, unknown>;
    } catch {}
    return problem(400, "bad_request", "the body must be a JSON object");
  }

  const isAnswer = (x: unknown): x is Answer => typeof x === "object" && x !== null && "status" in x && "body" in x;
  const send = (c: ApiContext, a: Answer) => c.json(a.body as object, a.status, a.headers);

  /**
   * Authorised, paid for (the actor's own bucket), validated by the frame's schema: then `run`.
   * Storage that throws on the way is the HTTP door's to answer, for every /api route alike: 503
   * with §11.6's body (createApp's onError), as a failed commit is `internal` over WebSocket.
   */
  async function command(c: ApiContext, type: ClientFrameType, fields: (b: Record<string, unknown>) => Record<string, unknown>, run: (actor: Actor, frame: any) => Promise<Answer>): Promise<Response> {
    const actor = await bearer(c);
    if (isAnswer(actor)) return send(c, actor);
    const data = await body(c);
    if (isAnswer(data)) return send(c, data);
    const taken = await hub.rate.takeFor(actor.ref.id);
    if (!taken) {
      const retryAfterMs = hub.rate.retryAfterMs(actor.ref.id);
      return send(c, refused({ ok: false, code: "rate_limited", message: "too many requests; slow down", extra: { retryAfterMs } }));
    }
    const parsed = frameSchema(type).safeParse({ ...fields(data), type });
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      return send(c, problem(400, "bad_request", `${issue?.path.join(".") || "body"}: ${issue?.message ?? "invalid"}`));
    }
    return send(c, await run(actor, parsed.data));
  }

  const answer = <T>(r: Result<T>, ok: (value: T) => Answer): Answer => (r.ok ? ok(r.value) : refused(r));

  app.post("/api/rooms/:room/messages", async (c) => {
    const room = c.req.param("room");
    if (!isRoom(room)) return send(c, problem(400, "room_invalid", "a room name is 1 to 32 of a-z 0-9 _ -, starting with a letter or digit"));
    return command(c, "send", (b) => ({ text: b.text, replyTo: b.replyTo, id: b.id ?? crypto.randomUUID(), room }), async (actor, frame) =>
      answer(await hub.post(actor, frame, addressOf(c.req.raw, c.env)), ({ message, duplicate }) => ({ body: { message }, status: duplicate ? 200 : 201 })),
    );
  });

  for (const type of API_COMMANDS) {
    app.post(`/api/${type}`, (c) =>
      command(c, type, (b) => b, async (actor, frame) => {
        const r = await hub.command(actor, frame);
        return answer(r, (value) => ({ body: value === null ? { type: "ok", for: type } : { type: "invite", ...value }, status: 200 }));
      }),
    );
  }

  /** Bots are the admins' to make, list and revoke. */
  async function admin(c: ApiContext): Promise<Answer | null> {
    const actor = await bearer(c);
    if (isAnswer(actor)) return actor;
    return actor.admin ? null : problem(403, "forbidden", "only admins manage bots");
  }

  app.post("/api/bots", async (c) => {
    const denied = await admin(c);
    if (denied) return send(c, denied);
    const data = await body(c);
    if (isAnswer(data)) return send(c, data);
    const parsed = CreateBot.safeParse(data);
    if (!parsed.success) return send(c, problem(400, "bad_request", "name: a string"));
    const made = await hub.bots.create(parsed.data.name);
    return send(c, answer(made, ({ bot, token }) => ({ body: { bot: botRef(bot), token }, status: 201 })));
  });

  app.get("/api/bots", async (c) => {
    const denied = await admin(c);
    if (denied) return send(c, denied);
    const bots = await hub.bots.list();
    return c.json({ bots: bots.map((b) => ({ ...botRef(b), createdAt: b.createdAt, revoked: b.revoked })) });
  });

  app.delete("/api/bots/:id", async (c) => {
    const denied = await admin(c);
    if (denied) return send(c, denied);
    const r = await hub.bots.revoke(c.req.param("id"));
    return send(c, answer(r, (bot) => ({ body: { bot: { ...botRef(bot), createdAt: bot.createdAt, revoked: true } }, status: 200 })));
  });

  // Made at the first request, not at start: converting every schema costs ~12 ms of cold start.
  let openapi: string | null = null;
  app.get("/api/openapi.json", (c) => c.body((openapi ??= JSON.stringify(openApiDocument(ctx))), 200, { "content-type": "application/json" }));
  return app;
}

/** JSON Schema of a zod schema, as OpenAPI 3.1 takes it (2020-12, no `$schema` of its own). */
function schema(s: z.ZodType, io: "input" | "output" = "output"): Record<string, unknown> {
  const { $schema: _, ...rest } = z.toJSONSchema(s, { io, unrepresentable: "any" }) as Record<string, unknown>;
  return rest;
}

/** The OpenAPI 3.1 document of the /api routes: requests from the frames' own schemas. */
export function openApiDocument(ctx: Context): Record<string, unknown> {
  const json = (s: z.ZodType) => ({ content: { "application/json": { schema: schema(s) } } });
  const errors = (...codes: number[]) =>
    Object.fromEntries(codes.map((code) => [String(code), { description: "refused: `error` is the protocol's code", ...json(ApiError) }]));
  const bearer = [{ bearer: [] }];
  const commands = Object.fromEntries(
    API_COMMANDS.map((type) => {
      const { type: _t, ref: _r, ...fields } = frameSchema(type).shape;
      return [
        `/api/${type}`,
        {
          post: {
            summary: `The ${type} command of §11.3, with the fields of its WebSocket frame`,
            security: bearer,
            requestBody: { required: true, content: { "application/json": { schema: schema(z.object(fields), "input") } } },
            responses: { "200": { description: "done", ...json(type === "invite" ? Invite : Ok) }, ...errors(400, 401, 403, 404, 413, 415, 429, 503) },
          },
        },
      ];
    }),
  );
  return {
    openapi: "3.1.0",
    info: { title: "bun-chat server API", version: "1.2", description: "Protocol v1.2 §11.6: see docs/api.md. Answers refused carry {error, message}; 429s a Retry-After." },
    components: { securitySchemes: { bearer: { type: "http", scheme: "bearer", description: "ADMIN_TOKEN, or a bot token (bot_…)" } } },
    paths: {
      "/api/rooms/{room}/messages": {
        parameters: [{ name: "room", in: "path", required: true, schema: { type: "string", pattern: "^[a-z0-9][a-z0-9_-]{0,31}$" } }],
        post: {
          summary: "Post a message (a retried id answers the original with 200)",
          security: bearer,
          requestBody: { required: true, content: { "application/json": { schema: schema(PostMessage, "input") } } },
          responses: {
            "201": { description: "stored and delivered", ...json(z.object({ message: Message })) },
            "200": { description: "the id was used already: the original", ...json(z.object({ message: Message })) },
            ...errors(400, 401, 403, 404, 409, 413, 415, 429, 503),
          },
        },
        get: {
          summary: "A page of the room's history (a private room: 404 but for admins and bots on its list)",
          parameters: ["after", "before", "limit"].map((name) => ({ name, in: "query", required: false, schema: { type: "integer", minimum: 0 } })),
          responses: { "200": { description: "the page", ...json(z.object({ room: z.string(), messages: z.array(z.record(z.string(), z.unknown())), complete: z.boolean() })) }, ...errors(400, 403, 404, 503) },
        },
      },
      "/api/audit": {
        get: {
          summary: "The audit log (admins), newest first, of one room or of all; paged back with `before` (an entry's id)",
          security: bearer,
          parameters: [
            { name: "room", in: "query", required: false, schema: { type: "string" } },
            ...["before", "limit"].map((name) => ({ name, in: "query", required: false, schema: { type: "integer", minimum: 0 } })),
          ],
          responses: { "200": { description: "the page", ...json(z.object({ entries: z.array(z.record(z.string(), z.unknown())), complete: z.boolean() })) }, ...errors(400, 401, 403, 503) },
        },
      },
      ...commands,
      "/api/bots": {
        post: {
          summary: "Make a bot (admins): its token is shown once",
          security: bearer,
          requestBody: { required: true, ...json(CreateBot) },
          responses: { "201": { description: "made", ...json(z.object({ bot: Bot, token: z.string() })) }, ...errors(400, 401, 403, 413, 415, 503) },
        },
        get: { summary: "The bots (admins)", security: bearer, responses: { "200": { description: "every bot", ...json(z.object({ bots: z.array(Bot) })) }, ...errors(401, 403, 503) } },
      },
      "/api/bots/{id}": {
        parameters: [{ name: "id", in: "path", required: true, schema: { type: "string" } }],
        delete: { summary: "Revoke a bot (admins): its connections close with 4003", security: bearer, responses: { "200": { description: "revoked", ...json(z.object({ bot: Bot })) }, ...errors(401, 403, 404, 503) } },
      },
    },
    "x-limits": { bodyMaxBytes: BODY_MAX_BYTES, maxTextChars: ctx.config.maxMessageChars },
  };
}
