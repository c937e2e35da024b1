/**
 * The Redis engine's relay: brings the messages and room events of the rooms this instance
 * watches from Redis's pub/sub, on one subscriber connection (a subscribed connection can run no
 * other command). No patterns: in Bun 1.4.5 psubscribe takes no listener, and a PSUBSCRIBE sent
 * raw is counted by Redis but delivers nothing to JavaScript. Bun's client does not subscribe
 * again after it reconnects, so this does it, room by room, and has the target catch up from
 * history what was published meanwhile.
 */
import type { Relay, RelayTarget, RoomEvent, ServerEvent } from "../engine.ts";
import type { Log } from "../metrics.ts";
import type { MessageFrame } from "../protocol/wire.ts";
import { SERVER_CHANNEL, decodeMember, encodeEvent, roomKeys, type Published } from "./keys.ts";
import type { RedisLink } from "./link.ts";

/** How often every watched room's stored seq is compared with what was delivered, to catch a lost tail. */
export const TAIL_CHECK_INTERVAL_MS = 15_000;
/** Bounds how long a commit waits for its own publish to come back before it counts as delivered anyway. */
const ECHO_WAIT_MS = 2000;

export class RedisRelay implements Relay {
  private target!: RelayTarget;
  /** The rooms watched, with the newest seq delivered in each. */
  private readonly rooms = new Map<string, number>();
  /** Commits waiting for their publish to come back, per room. */
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
    /** What the roster puts back after a reconnect (RedisRoster.recover), before any room catches up: a room reset closes clients, who come back at once. */
    private readonly recover: () => Promise<void> = async () => {},
  ) {
    sub.onreconnect = () => void this.resubscribe();
    commands.onreconnect = () => void this.recovered().then(() => this.catchUpAll());
    this.checker = setInterval(() => this.catchUpAll(), tailCheckMs);
  }

  private readonly listener = (payload: string) => {
    try {
      let epoch: string | undefined;
      let member = payload;
      if (payload.startsWith("{")) {
        const parsed = JSON.parse(payload) as (RoomEvent & { instance: string }) | Published;
        if ("m" in parsed) {
          ({ epoch, m: member } = parsed);
        } else {
          const { instance, ...event } = parsed;
          // This instance delivered its own events already, in their place among its frames.
          if (instance !== this.instance && this.rooms.has(event.frame.room)) this.target.event(event);
          return;
        }
      }
      const message = decodeMember(member);
      if (this.rooms.has(message.room)) this.target.receive(message, epoch);
    } catch (error) {
      this.log("error", "redis_bad_message", { error: String(error) });
    }
  };

  /** Server events of the other instances: this instance carried out its own already. */
  private readonly serverListener = (payload: string) => {
    try {
      const { instance, ...event } = JSON.parse(payload) as ServerEvent & { instance: string };
      if (instance !== this.instance) this.target.server(event as ServerEvent);
    } catch (error) {
      this.log("error", "redis_bad_message", { error: String(error) });
    }
  };

  broadcast(event: ServerEvent): void {
    this.commands
      .send("PUBLISH", [SERVER_CHANNEL, JSON.stringify({ instance: this.instance, ...event })])
      .catch((error) => this.log("warn", "redis_publish", { error: String(error) }));
  }

  event(event: RoomEvent): void {
    this.commands
      .send("PUBLISH", [roomKeys(event.frame.room).channel, encodeEvent(this.instance, event)])
      .catch((error) => this.log("warn", "redis_publish", { error: String(error) }));
  }

  attach(target: RelayTarget): void {
    this.target = target;
    this.inLine(() => this.sub.subscribeOnce(SERVER_CHANNEL, this.serverListener)).catch((error) =>
      this.log("warn", "redis_subscribe", { error: String(error) }),
    );
  }

  /**
   * The append script published it already; it comes back through the subscription. Resolves
   * once it was delivered here, or after ECHO_WAIT_MS (the tail check delivers it then). So
   * "stored and delivered" means what it means with one process: a leave that waits for it
   * comes after it.
   */
  committed(message: MessageFrame): Promise<void> {
    const { room, seq } = message;
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
      const timer = setTimeout(echo.done, ECHO_WAIT_MS);
      waiting.push(echo);
    });
  }

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
      await this.inLine(() => this.sub.subscribeOnce(roomKeys(room).channel, this.listener));
    } catch (error) {
      this.rooms.delete(room);
      throw error;
    }
  }

  unwatch(room: string): void {
    if (!this.rooms.delete(room)) return;
    this.inLine(() => this.sub.client.unsubscribe(roomKeys(room).channel)).catch(() => {});
  }

  /** Runs `change` after every subscription change before it: two at once could subscribe a channel twice. */
  private inLine<T>(change: () => Promise<T>): Promise<T> {
    const result = this.subscribing.then(change);
    this.subscribing = result.catch(() => {});
    return result;
  }

  /** After a reconnect: subscribe to every room again (Bun does not), then catch up from history. */
  private async resubscribe(): Promise<void> {
    const rooms = [...this.rooms.keys()];
    try {
      await this.inLine(() =>
        Promise.all([
          this.sub.subscribeOnce(SERVER_CHANNEL, this.serverListener),
          ...rooms.map((room) => this.sub.subscribeOnce(roomKeys(room).channel, this.listener)),
        ]),
      );
    } catch (error) {
      // The connection went again; its next onconnect starts over.
      this.log("warn", "redis_resubscribe", { error: String(error) });
      return;
    }
    // Server events have no history to catch up from: what they would have done is read now.
    this.target.resubscribed();
    this.log("info", "redis_resubscribed", { rooms: rooms.length });
    await this.recovered();
    this.catchUpAll();
  }

  /** The roster's recovery, its failure logged: catching up goes on either way. */
  private recovered(): Promise<void> {
    return this.recover().catch((error) => this.log("warn", "redis_recover", { error: String(error) }));
  }

  private catchUpAll(): void {
    if (!this.sub.connected || !this.commands.connected) return;
    for (const room of this.rooms.keys()) this.target.catchUp(room);
  }

  /** Down while a connection is away; slow while commands go unanswered past REDIS_TIMEOUT_MS. */
  health(): { redis: "up" | "down" | "slow" } {
    if (!this.sub.connected || !this.commands.connected) return { redis: "down" };
    return { redis: this.commands.stalled || this.sub.stalled ? "slow" : "up" };
  }

  async close(): Promise<void> {
    clearInterval(this.checker);
    for (const waiting of [...this.echoes.values()]) for (const echo of [...waiting]) echo.done();
    this.sub.close();
  }
}
