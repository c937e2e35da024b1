/**
 * Delivers room events to this instance's members. WebSocket members get each event through
 * Bun's native pub/sub (one `server.publish`, serialized once); TCP members get one pre-encoded
 * line, written to each. With several instances, what crosses them comes in through the relay
 * and the roster; only typing is sent out from here.
 */
import type { Server } from "bun";
import { encoder, TcpConnection, WsConnection, type Connection } from "./connection.ts";
import type { Context } from "./context.ts";
import { formatModerationLine, formatPresenceLine, formatStoredLines } from "./core/lines.ts";
import { addTo, removeFrom } from "./core/list.ts";
import type { Relay, Store } from "./engine.ts";
import type { ModerationFrame, PresenceEvent, PresenceFrame, RoomSettings, StoredFrame, TypingNotice, UserRef } from "./protocol/wire.ts";

/** A room's Bun pub/sub topic. */
const roomTopic = (room: string) => `room:${room}`;

export class Fanout {
  private readonly wsMembers = new Map<string, Set<WsConnection>>();
  private readonly tcpMembers = new Map<string, Set<TcpConnection>>();
  /**
   * Per room: TCP lines waiting, in order, behind a deletion line whose author is being read
   * from storage; each goes to the TCP members the room had when it came.
   */
  private readonly tcpWaiting = new Map<string, { text: Promise<string>; to: TcpConnection[] }[]>();
  server!: Server<WsConnection>;

  constructor(
    private readonly ctx: Context,
    private readonly relay: Relay,
    private readonly store: Pick<Store, "entry">,
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

  /** A stored message or event; `before`, a settings event's previous settings, says what changed to TCP users. */
  message(m: StoredFrame, before?: RoomSettings): void {
    const tcp = this.tcpMembers.get(m.room)?.size ?? 0;
    this.ctx.metrics.messagesOut += (this.wsMembers.get(m.room)?.size ?? 0) + tcp;
    if (!tcp || m.type !== "delete") return this.publish(m.room, JSON.stringify(m), () => formatStoredLines(m, before));
    // TCP users see a deletion as whose message it was (§11.8), which the frame does not say but
    // the deleted message, still stored, does: its line waits for that read, and the room's later lines with it.
    this.publishWs(m.room, () => JSON.stringify(m));
    const text = this.store.entry(m.room, m.target).then(
      (target) => formatStoredLines(m, before, target?.type === "message" ? target.user.name : undefined),
      () => formatStoredLines(m, before),
    );
    this.tcpLater(m.room, text, [...this.tcpMembers.get(m.room)!]);
  }

  /** `text` for `to` once it is known, after every line of the room already waiting. */
  private tcpLater(room: string, text: Promise<string>, to: TcpConnection[]): void {
    const waiting = this.tcpWaiting.get(room);
    if (waiting) return void waiting.push({ text, to });
    const queue = [{ text, to }];
    this.tcpWaiting.set(room, queue);
    void (async () => {
      for (let next = queue[0]; next; queue.shift(), next = queue[0]) {
        // To those in the room when it happened, though they may have left it since (a kick's own line).
        const line = await next.text;
        if (line) this.writeTcp(line, next.to);
      }
      this.tcpWaiting.delete(room);
    })();
  }

  /** A moderation event to this instance's members of its room, and to the other instances unless it came from one. */
  moderation(frame: ModerationFrame & { room: string }, local: boolean): void {
    if (local) this.relay.event({ frame });
    this.publish(frame.room, JSON.stringify(frame), () => formatModerationLine(frame, this.ctx.now()));
  }

  /**
   * To this instance's members (the roster tells the others). `oldName` is for a rename's TCP
   * line, which says who the user was; `except`, a joiner, does not hear its own join.
   */
  presence(room: string, event: PresenceEvent, user: UserRef, oldName?: string, except?: Connection): void {
    const frame: PresenceFrame = { type: "presence", room, event, user };
    this.publish(room, JSON.stringify(frame), () => formatPresenceLine(frame, oldName), except);
  }

  /**
   * To the room's other WebSocket members, here and on the other instances (TCP users get no
   * typing); `own`, the typist's connections here, hear none: a user is one member (§10).
   */
  typing(room: string, user: UserRef, own: readonly Connection[]): void {
    const frame: TypingNotice = { type: "typing", room, user };
    this.relay.event({ frame });
    this.typingHere(frame, own);
  }

  /** Typing on another instance, for the WebSocket members here but the typist's own (`own`). */
  typed(frame: TypingNotice, own: readonly Connection[]): void {
    this.typingHere(frame, own);
  }

  private typingHere(frame: TypingNotice, own: readonly Connection[]): void {
    const ws = this.wsMembers.get(frame.room);
    if (!ws) return;
    const mine = own.filter((c) => ws.has(c as WsConnection));
    // Most typists have one tab in the room here, or none: one publish that skips it.
    if (mine.length <= 1) return this.publishWs(frame.room, () => JSON.stringify(frame), mine[0]);
    const json = JSON.stringify(frame);
    for (const conn of ws) if (!mine.includes(conn)) conn.sendJson(json);
  }

  /** The room's WebSocket members here, now (a reset room's, to send away: they come back with `since`). */
  wsIn(room: string): WsConnection[] {
    return [...(this.wsMembers.get(room) ?? [])];
  }

  /** `line` is rendered only when a TCP user is in the room. */
  private publish(room: string, json: string, line: () => string, except?: Connection): void {
    this.publishWs(room, () => json, except);
    const tcp = this.tcpMembers.get(room);
    if (!tcp?.size) return;
    if (this.tcpWaiting.has(room)) return this.tcpLater(room, Promise.resolve(line()), [...tcp].filter((c) => c !== except));
    const text = line();
    if (text) this.writeTcp(text, tcp, except);
  }

  /** One line, encoded once for every TCP connection it goes to but `except`. */
  private writeTcp(text: string, to: Iterable<TcpConnection>, except?: Connection): void {
    const bytes = encoder.encode(text);
    for (const conn of to) if (conn !== except) conn.write(bytes);
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
