/**
 * The WebSocket door (§1–§4): Bun's handlers for /ws, turning each text frame into a hub call
 * and each answer into a frame. The close handler is each connection's one owner.
 */
import type { WebSocketHandler } from "bun";
import type { Config } from "./config.ts";
import type { WsConnection } from "./connection.ts";
import type { Context } from "./context.ts";
import type { Hub } from "./hub.ts";
import { actorOf } from "./authority.ts";
import { MESSAGES, parseFrame, withRef, type Parsed, type Result } from "./protocol/rules.ts";
import { CLOSE, CLOSE_REASON, HISTORY_PAGE_DEFAULT, type ClientFrameType, type Limits } from "./protocol/wire.ts";

/** What Bun reports for a socket that ended without a close frame, its own backpressure close included. */
const CLOSE_ABNORMAL = 1006;

/** The limits `welcome` tells a client. */
export function limitsOf(config: Config): Limits {
  return {
    maxTextChars: config.maxMessageChars,
    maxPayloadBytes: config.maxPayloadBytes,
    maxRooms: config.maxRoomsPerConnection,
    rate: { burst: config.rateLimitBurst, perSecond: config.rateLimitPerSecond },
    historyOnJoin: config.historyOnJoin,
    typingThrottleMs: config.typingThrottleMs,
  };
}

export function websocketHandlers(hub: Hub, ctx: Context): WebSocketHandler<WsConnection> {
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
      const type = parsed.ok ? parsed.frame.type : parsed.type;
      if (hub.overflows(conn, type, parsed.ref)) return;
      const asked = hub.ask(conn, type);
      conn.enqueue(() => hub.spend({ conn, type, ref: parsed.ref, asked, answer: () => answer(conn, parsed) }), { op: type ?? "frame", ref: parsed.ref });
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

  /** Answers one frame, paid for; a frame that waits (for storage) returns the promise its connection waits on. */
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
        return hub.hello(conn, frame).then((r) => {
          if (!r.ok) return conn.refuse(r, ref);
          const { user, session, admin } = r.value;
          conn.send(withRef({ type: "welcome", user, session: session!, limits, ...(admin ? { admin: true as const } : {}) }, ref));
        });
      case "join":
        return hub.join(conn, { room: frame.room, since: frame.since, epoch: frame.epoch, invite: frame.invite, limit: config.historyOnJoin, ref }).then((r) => {
          if (!r.ok) conn.refuse(r, ref);
        });
      case "leave":
        return hub.leave(conn, frame.room).then((r) => {
          if (!r.ok) return conn.refuse(r, ref);
          conn.send(withRef({ type: "left", room: frame.room }, ref));
        });
      case "send": {
        const r = hub.send(conn, frame.room, frame.id, frame.text, frame.replyTo);
        if (r instanceof Promise) return r.then((answer) => void (answer.ok || conn.refuse(answer, ref)));
        if (!r.ok) conn.refuse(r, ref);
        return;
      }
      case "edit":
      case "delete":
      case "kick":
      case "ban":
      case "unban":
      case "mute":
      case "room_settings":
      case "role":
        return hub.command(actorOf(conn), frame).then((r) => done(conn, r, frame.type, ref));
      case "typing": {
        const r = hub.typing(conn, frame.room);
        if (!r.ok) return conn.refuse(r, ref);
        return;
      }
      case "history": {
        const query = { after: frame.after, before: frame.before, limit: frame.limit ?? HISTORY_PAGE_DEFAULT };
        return hub.history(actorOf(conn), frame.room, query).then((r) => {
          if (!r.ok) return conn.refuse(r, ref);
          conn.send(withRef({ type: "history", room: frame.room, ...r.value }, ref));
        });
      }
      case "invite":
        return hub.authority.invite(actorOf(conn), frame).then((r) => {
          if (!r.ok) return conn.refuse(r, ref);
          conn.send(withRef({ type: "invite", ...r.value }, ref));
        });
      case "signout":
        return hub.signout(conn).then((r) => {
          done(conn, r, "signout", ref);
          if (r.ok) hub.endSession(conn);
        });
    }
  }

  /** The answer to a command that only needs saying it was done (§11.3): `ok`, or the error. */
  function done(conn: WsConnection, r: Result<unknown>, what: ClientFrameType, ref: string | undefined): void {
    if (!r.ok) return conn.refuse(r, ref);
    conn.send(withRef({ type: "ok", for: what }, ref));
  }
}


