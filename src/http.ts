/**
 * The HTTP door (§6, §10): the page (compressed, with ETags), /healthz, /metrics, the room API, and the checks a /ws
 * upgrade must pass, as a Hono app. Security headers on every response.
 */
import type { Server } from "bun";
import { Hono } from "hono";
import { secureHeaders } from "hono/secure-headers";
import { PAGE_PATHS, pageResponse, type Assets } from "./assets.ts";
import { guestsAllowed, hostKey, isIP, type Config } from "./config.ts";
import { addressKey } from "./core/address.ts";
import type { WsConnection } from "./connection.ts";
import type { Context } from "./context.ts";
import { may, rankOf } from "./core/rights.ts";
import type { PageQuery } from "./engine.ts";
import { ROOMS_PAGE_DEFAULT, ROOMS_PAGE_MAX, parseRoomsCursor } from "./directory.ts";
import type { Hub } from "./hub.ts";
import { sameSecret } from "./users.ts";
import { HISTORY_PAGE_DEFAULT, HISTORY_PAGE_MAX, isRoom } from "./protocol/wire.ts";
import { MESSAGES } from "./protocol/rules.ts";

/** The page's Content-Security-Policy (protocol §6): nothing but this server, no inline code. */
const CSP = {
  defaultSrc: ["'self'"],
  connectSrc: ["'self'"],
  imgSrc: ["'self'", "data:"],
  frameAncestors: ["'none'"],
  baseUri: ["'none'"],
  formAction: ["'self'"],
};

/** What a request to the API refused while the server shuts down is told to wait, in seconds: a restart, or another instance. */
const DRAINING_RETRY_AFTER_S = 1;

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

/**
 * The address a request came from, as every per-address rule counts it (addressKey: an IPv6
 * client's /64): the proxy's word when TRUST_PROXY is on, else the socket's.
 */
export function clientIp(req: Request, server: Server<WsConnection>, trustProxy: boolean): string {
  return addressKey((trustProxy && forwardedIp(req.headers)) || (server.requestIP(req)?.address ?? "unknown"));
}

/** A request's bearer token, or null. */
function bearer(req: Request): string | null {
  return /^Bearer (\S+)$/i.exec(req.headers.get("authorization") ?? "")?.[1] ?? null;
}

/** What a history query string may hold (pageQuery), for its refusal. */
const PAGE_QUERY_RULE = `after and before are whole numbers; limit is 1 to ${HISTORY_PAGE_MAX}`;

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
export function admitWs(req: Request, server: Server<WsConnection>, hub: Hub, ctx: Context): Admission {
  if (misdirected(req, ctx.config)) return { status: 421, error: "misdirected" };
  if (!originAllowed(req.headers.get("origin"), req.headers.get("host"), ctx.config.allowedOrigins)) {
    return { status: 403, error: "origin_not_allowed" };
  }
  if (req.headers.get("upgrade")?.toLowerCase() !== "websocket") {
    return { status: 426, error: "upgrade_required", headers: { upgrade: "websocket" } };
  }
  const ip = clientIp(req, server, ctx.config.trustProxy);
  return hub.conns.admit(ip) ?? { ip };
}

export type HonoEnv = { Bindings: Server<WsConnection> };

export function createApp(hub: Hub, ctx: Context, assets: Promise<Assets>, startedAt: number): Hono<HonoEnv> {
  const app = new Hono<HonoEnv>();
  app.use(secureHeaders({ contentSecurityPolicy: CSP }));
  // DNS rebinding: a page on evil.example whose name now resolves to us sends its own Host and
  // Origin, which agree, so the Origin check passes; only our own names are answered (§10).
  const { publicHosts, metricsToken, adminToken } = ctx.config;
  if (publicHosts.length) {
    app.use(async (c, next) => {
      if (misdirected(c.req.raw, ctx.config)) return c.json({ error: "misdirected" }, 421);
      return next();
    });
  }

  // Shutting down (§7): a request to the API would start work the server may not finish (a post
  // cut before its answer is posted twice), so it is refused whole; those under way are answered.
  app.use("/api/*", async (c, next) => {
    if (!hub.conns.draining) return next();
    return c.json({ error: "draining", message: "the server is shutting down; try again" }, 503, { "retry-after": String(DRAINING_RETRY_AFTER_S) });
  });

  // The page's files, compressed once (src/assets.ts), with strong ETags: a second visit gets 304s.
  for (const path of PAGE_PATHS) app.get(path, async (c) => pageResponse((await assets).files[path]!, c.req.raw));

  app.get("/healthz", (c) => {
    if (hub.conns.draining) return c.json({ status: "draining" }, 503);
    const engine = hub.relay.health();
    // A load balancer stops sending new users to an instance that cannot reach Redis (or gets no
    // answer from it in time), or whose disk failed: it takes no more messages.
    if (engine && engine.redis !== "up") return c.json({ status: "unavailable", ...engine }, 503);
    const failed = hub.store.failure();
    if (failed) return c.json({ status: "unavailable", storage: failed.storage }, 503);
    return c.json({
      status: "ok",
      connections: hub.conns.size,
      rooms: hub.presence.roomCount,
      uptime: Math.floor((ctx.now() - startedAt) / 1000),
    });
  });

  app.get("/metrics", (c) => {
    if (metricsToken !== null) {
      const token = bearer(c.req.raw);
      if (token === null || !sameSecret(token, metricsToken)) {
        return c.json({ error: "unauthorized" }, 401, { "www-authenticate": 'Bearer realm="metrics"' });
      }
    }
    return c.text(ctx.metrics.render(hub.conns.size), 200, { "content-type": "text/plain; version=0.0.4; charset=utf-8" });
  });

  /** The admin bearer (§11.6): `Authorization: Bearer <ADMIN_TOKEN>`. */
  const isAdmin = (req: Request) => {
    const token = bearer(req);
    return token !== null && adminToken !== null && sameSecret(token, adminToken);
  };

  // What the page's sign-in screen shows before anyone says hello.
  app.get("/api/info", (c) => c.json({ guests: guestsAllowed(ctx.config), members: hub.signsInMembers, roomCreation: ctx.config.roomCreation }));

  // From memory, however many rooms there are: this endpoint is public and polled. A page costs
  // its own rooms: the sorted list of all of them is kept for a second (Directory).
  app.get("/api/rooms", async (c) => {
    const withPrivate = isAdmin(c.req.raw);
    if (c.req.query("recent") === "1") return c.json({ rooms: await hub.recentRooms(withPrivate) });
    const limitText = c.req.query("limit");
    const cursorText = c.req.query("cursor");
    const limit = limitText === undefined ? ROOMS_PAGE_DEFAULT : /^\d{1,4}$/.test(limitText) ? Number(limitText) : 0;
    const cursor = cursorText === undefined ? null : parseRoomsCursor(cursorText);
    if (limit < 1 || limit > ROOMS_PAGE_MAX || (cursorText !== undefined && !cursor)) {
      return c.json({ error: "bad_request", message: `limit is 1 to ${ROOMS_PAGE_MAX}; cursor is one a page gave` }, 400);
    }
    return c.json(await hub.rooms(withPrivate, limit, cursor));
  });

  app.get("/api/rooms/:room/messages", async (c) => {
    const room = c.req.param("room");
    // Refusals carry the server API's body (§11.6): {error, message}.
    if (!isRoom(room)) return c.json({ error: "room_invalid", message: MESSAGES.roomInvalid }, 400);
    const query = pageQuery(new URL(c.req.url).searchParams);
    if (!query) return c.json({ error: "bad_request", message: PAGE_QUERY_RULE }, 400);
    // A private room is not there for anyone but admins and bots on its list (§11.2, §11.6): 404, not 403, says nothing of it.
    // An unknown token reads as no token; a bot banned from the server is refused, as on every route of the API.
    const token = bearer(c.req.raw);
    const who = token === null ? null : await hub.bots.actorFor(token, clientIp(c.req.raw, c.env, ctx.config.trustProxy));
    if (who && !who.ok && who.code === "banned") return c.json({ error: who.code, message: who.message }, 403);
    const r = await hub.history(who?.ok ? who.value : null, room, query);
    if (!r.ok) return r.code === "forbidden" ? c.json({ error: "not_found", message: `no room ${room} to read` }, 404) : c.json({ error: r.code, message: r.message }, 400);
    return c.json({ room, ...r.value });
  });

  // The audit log (§11.4): admins only, newest first, paged back with `before`. A token we know
  // that is not the admin's (a bot's) is 403, as the API answers it (§11.6); only an unknown one is 401.
  app.get("/api/audit", async (c) => {
    const token = bearer(c.req.raw);
    if (token === null) return c.json({ error: "auth_required", message: "an admin bearer token is needed" }, 401, { "www-authenticate": 'Bearer realm="chat"' });
    const actor = await hub.bots.actorFor(token, clientIp(c.req.raw, c.env, ctx.config.trustProxy));
    if (!actor.ok) return c.json({ error: actor.code, message: actor.message }, actor.code === "banned" ? 403 : 401);
    const denied = may({ rank: rankOf("member", actor.value.admin) }, "server.admin");
    if (denied) return c.json({ error: "forbidden", message: denied }, 403);
    const room = c.req.query("room");
    if (room !== undefined && !isRoom(room)) return c.json({ error: "room_invalid", message: MESSAGES.roomInvalid }, 400);
    const query = pageQuery(new URL(c.req.url).searchParams);
    if (!query || query.after !== undefined) return c.json({ error: "bad_request", message: `before is a whole number; limit is 1 to ${HISTORY_PAGE_MAX}` }, 400);
    return c.json(await hub.store.auditPage(room ?? null, query.before, query.limit));
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
    // What fails under an /api route (here, or api.ts's mounted on this app) is storage: §11.6's 503 and body.
    if (c.req.path.startsWith("/api/")) return c.json({ error: "internal", message: "storage unavailable; try again" }, 503);
    return c.json({ error: "internal" }, 500);
  });
  return app;
}
