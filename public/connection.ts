/**
 * The page's one WebSocket to /ws, kept alive: hello on open, reconnect with exponential
 * backoff and jitter, a ping/pong watchdog for dead links, and a client-side token bucket that
 * mirrors the server's rate limit so a burst of resends never earns `rate_limited`.
 *
 * It knows nothing of rooms: the page hears `welcome` (say what to rejoin), every other frame,
 * `lost` (redo what was in flight on the next welcome) and status changes for the banner.
 */

import { CLOSE, CLOSE_REASON, TokenBucket, type ClientFrame, type Limits, type ServerFrame, type WelcomeFrame } from "../src/protocol/wire.ts";

/** First reconnect delay; each failed attempt in a row doubles it. */
const BACKOFF_BASE_MS = 500;
/** Longest wait between two reconnect attempts. */
const BACKOFF_CAP_MS = 30_000;
/** How often a welcomed connection is checked with a ping. */
const PING_INTERVAL_MS = 20_000;
/** A ping unanswered this long (no pong, no frame at all) means the link is dead. */
const PONG_TIMEOUT_MS = 5_000;
/** A socket that has not been welcomed this long after we opened it is given up. */
const CONNECT_TIMEOUT_MS = 12_000;
/**
 * After a restart notice (1001) the server is usually back within seconds: retry about this
 * often (jittered ±50 %, so a roomful of pages does not return in step) instead of backing off.
 */
const RESTART_RETRY_MS = 1_000;
/** …for this long after the notice; then the usual backoff. */
const RESTART_WINDOW_MS = 60_000;
/** Share of the server's refill rate we use, so frames bunched up on the wire still find tokens. */
const RATE_SAFETY = 0.8;

/** The code we close with ourselves; never sent by the server (its codes are CLOSE, protocol §5). */
const CLOSE_BY_US = 4000;

export type Status =
  | { state: "connecting"; note?: string }
  | { state: "connected" }
  | { state: "reconnecting"; at: number; delayMs: number; note?: string }
  | { state: "offline"; note: string; canRetry: boolean };

export interface ConnectionEvents {
  /** The socket opened: the hello to send. */
  hello(): ClientFrame;
  welcome(frame: WelcomeFrame): void;
  frame(frame: ServerFrame): void;
  /** The socket is gone; frames sent on it may or may not have arrived. */
  lost(): void;
  /**
   * The server closed the socket with `code` (`welcomed`: after a welcome on it). A Status stops
   * the connection with it (no reconnect: a ban, a sign-out, a hello the server cannot read);
   * null reconnects as usual.
   */
  ended(code: number, reason: string, welcomed: boolean): Status | null;
  status(status: Status): void;
}

/**
 * Delay before reconnect attempt `attempt` (0-based): "equal jitter", half of the exponential
 * step fixed and half random, so clients dropped together by a restart do not return together.
 *   backoffDelay(0, () => 0) // => 250      backoffDelay(20, () => 1) // => 30000
 */
export function backoffDelay(attempt: number, random: () => number = Math.random): number {
  const step = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** attempt);
  return step / 2 + (random() * step) / 2;
}

/** Delay before a retry while a restarted server is expected back: RESTART_RETRY_MS ± 50 %. */
export function restartDelay(random: () => number = Math.random): number {
  return RESTART_RETRY_MS * (0.5 + random());
}

/** Our side of the server's bucket: one token held back, and RATE_SAFETY of its refill. */
function bucketFor(limits: Limits): TokenBucket {
  return new TokenBucket(Math.max(1, limits.rate.burst - 1), limits.rate.perSecond * RATE_SAFETY, performance.now());
}

export class Connection {
  private ws: WebSocket | null = null;
  private welcomed = false;
  /** Stopped connections do not reconnect until start(). */
  private stopped = true;
  /** Failed attempts since the last welcome. */
  private attempt = 0;
  /** Until this performance.now() time, retries follow restartDelay (the server said it restarts). */
  private restartUntil = 0;
  /** The next reconnect waits at least until this performance.now() time (the server said when: holdOff). */
  private notBefore = 0;
  private bucket: TokenBucket | null = null;
  /** Frames waiting for a rate token, oldest first; dropped with the socket. */
  private queue: ClientFrame[] = [];
  /** Set by finish(): close with this status once the queue is empty. */
  private finishing: Status | null = null;
  private timers = {
    retry: 0,
    connect: 0,
    ping: 0,
    pong: 0,
    drain: 0,
  };

  constructor(
    private readonly url: string,
    private readonly on: ConnectionEvents,
  ) {
    window.addEventListener("online", () => this.networkBack());
    window.addEventListener("offline", () => this.networkGone());
    document.addEventListener("visibilitychange", () => {
      // A phone waking up may hold a socket that died while it slept: check at once.
      if (document.visibilityState === "visible" && this.welcomed) this.ping();
    });
  }

  get ready(): boolean {
    return this.welcomed;
  }

  /** Connects now, forgetting earlier failures. */
  start(): void {
    this.stopped = false;
    this.attempt = 0;
    this.abandon();
    this.connect();
  }

  /**
   * Says hello again on a socket whose hello was refused (a name taken, say): a refused hello
   * leaves the socket open and waiting, so no new connection is needed. False if there is none.
   */
  helloAgain(): boolean {
    if (!this.ws || this.welcomed || this.ws.readyState !== WebSocket.OPEN) return false;
    this.write(this.on.hello());
    return true;
  }

  /**
   * The server refused this socket's hello for a while (too many hellos from this address, with
   * `retryAfterMs`): the next reconnect waits at least `ms`, not the backoff's first 250 ms.
   */
  holdOff(ms: number): void {
    this.notBefore = performance.now() + ms;
  }

  /** Closes and stays closed until start(); `status` says why. */
  stop(status: Status): void {
    this.stopped = true;
    this.abandon();
    this.on.status(status);
  }

  /** As stop(), once the frames waiting for rate tokens are written (a sign-out's leaves). */
  finish(status: Status): void {
    if (this.queue.length === 0 || !this.ws) return this.stop(status);
    this.stopped = true;
    this.finishing = status;
    this.on.status(status);
  }

  /**
   * Sends a frame after hello, paced by the rate limit: at once if a token is free, else queued.
   * `droppable` frames (typing) are dropped instead of queued. False if not connected: whatever
   * it was must be redone after the next welcome.
   */
  send(frame: ClientFrame, droppable = false): boolean {
    if (!this.ws || !this.welcomed || !this.bucket) return false;
    if (this.queue.length === 0 && this.bucket.take(performance.now())) {
      this.write(frame);
      return true;
    }
    if (droppable) return false;
    this.queue.push(frame);
    this.scheduleDrain();
    return true;
  }

  /** Roughly how long a frame sent now would wait in the rate queue. */
  queueDelayMs(): number {
    return this.bucket ? this.queue.length * this.bucket.intervalMs : 0;
  }

  private connect(): void {
    this.clearTimers();
    if (!navigator.onLine) return this.networkGone();
    this.on.status({ state: "connecting" });
    const ws = new WebSocket(this.url);
    this.ws = ws;
    ws.onopen = () => this.write(this.on.hello());
    ws.onmessage = (event) => this.receive(event.data);
    // An error is always followed by close, which decides what to do.
    ws.onclose = (event) => this.closed(event.code, event.reason);
    this.timers.connect = window.setTimeout(() => this.dropDead("could not connect"), CONNECT_TIMEOUT_MS);
  }

  private receive(data: unknown): void {
    if (typeof data !== "string") return;
    let frame: ServerFrame;
    try {
      frame = JSON.parse(data) as ServerFrame;
    } catch {
      return;
    }
    // Any frame proves the link is alive, not only a pong.
    window.clearTimeout(this.timers.pong);
    this.timers.pong = 0;
    if (frame.type === "welcome") {
      this.welcomed = true;
      this.attempt = 0;
      this.restartUntil = 0;
      this.bucket = bucketFor(frame.limits);
      window.clearTimeout(this.timers.connect);
      this.timers.ping = window.setInterval(() => this.ping(), PING_INTERVAL_MS);
      this.on.status({ state: "connected" });
      this.on.welcome(frame);
      return;
    }
    if (frame.type !== "pong") this.on.frame(frame);
  }

  private ping(): void {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return;
    // Pings cost no rate token, so they skip the queue.
    this.write({ type: "ping" });
    // A deadline already running stays: pinging again must not postpone it.
    if (!this.timers.pong) this.timers.pong = window.setTimeout(() => this.dropDead("no answer from the server"), PONG_TIMEOUT_MS);
  }

  private write(frame: ClientFrame): void {
    if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(frame));
  }

  private scheduleDrain(): void {
    if (this.timers.drain || !this.bucket) return;
    this.timers.drain = window.setTimeout(() => {
      this.timers.drain = 0;
      while (this.queue.length && this.bucket?.take(performance.now())) this.write(this.queue.shift()!);
      if (this.queue.length) this.scheduleDrain();
      else if (this.finishing) this.stop(this.finishing);
    }, this.bucket.wait(performance.now()));
  }

  /** The server closed the socket, or the network did. */
  private closed(code: number, reason: string): void {
    const welcomed = this.welcomed;
    this.abandon();
    if (this.stopped) return;
    const stop = this.on.ended(code, reason, welcomed);
    if (stop) return this.stop(stop);
    if (code === CLOSE.replaced) {
      // Reconnecting would throw another tab out in turn, and it would do the same to us.
      return this.stop({ state: "offline", note: "This chat is open in too many tabs or windows.", canRetry: true });
    }
    // 1001 is a restart, or a room's history reset (its storage lost it): the server is back, or
    // still there, in moments; the rooms then resume with their epochs and learn which start over.
    if (code === CLOSE.shutdown) this.restartUntil = performance.now() + RESTART_WINDOW_MS;
    const note =
      code === CLOSE.shutdown
        ? reason === CLOSE_REASON.reset
          ? "A room's history was reset on the server: reloading it."
          : "The server is restarting."
        : code === CLOSE.policy
          ? `Closed by the server: ${reason || "policy"}.`
          : undefined;
    this.retryLater(note);
  }

  /** The link looks dead: stop waiting for its close handshake and reconnect. */
  private dropDead(why: string): void {
    this.abandon();
    if (!this.stopped) this.retryLater(`Connection lost: ${why}.`);
  }

  /** Detaches and closes the current socket, if any, and tells the page it is gone. */
  private abandon(): void {
    this.clearTimers();
    const ws = this.ws;
    const hadSocket = ws !== null;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = null;
      if (ws.readyState === WebSocket.CONNECTING || ws.readyState === WebSocket.OPEN) ws.close(CLOSE_BY_US);
    }
    this.ws = null;
    this.welcomed = false;
    this.bucket = null;
    this.queue = [];
    this.finishing = null;
    if (hadSocket) this.on.lost();
  }

  private retryLater(note?: string): void {
    const now = performance.now();
    const backoff = now < this.restartUntil ? restartDelay() : backoffDelay(this.attempt++);
    const delay = Math.max(backoff, this.notBefore - now);
    this.notBefore = 0;
    this.on.status({ state: "reconnecting", at: Date.now() + delay, delayMs: delay, ...(note ? { note } : {}) });
    this.timers.retry = window.setTimeout(() => this.connect(), delay);
  }

  /** "Retry now" from the banner: skip the wait. */
  retryNow(): void {
    this.stopped = false;
    this.abandon();
    this.attempt = 0;
    this.connect();
  }

  /**
   * The browser says the network is gone: believe it at once rather than wait for the ping
   * watchdog, and stay quiet (no retries) until it says the network is back.
   */
  private networkGone(): void {
    if (this.stopped) return;
    this.abandon();
    this.on.status({ state: "offline", note: "No network. Waiting for it to come back…", canRetry: true });
  }

  private networkBack(): void {
    if (!this.stopped && !this.welcomed) this.retryNow();
  }

  private clearTimers(): void {
    window.clearTimeout(this.timers.retry);
    window.clearTimeout(this.timers.connect);
    window.clearInterval(this.timers.ping);
    window.clearTimeout(this.timers.pong);
    window.clearTimeout(this.timers.drain);
    this.timers = { retry: 0, connect: 0, ping: 0, pong: 0, drain: 0 };
  }
}
