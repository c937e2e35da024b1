/**
 * Outgoing webhooks (§11.7): which live frame makes which event, the body and its Standard
 * Webhooks signature, and the deliverer, which takes events from the engine's durable outbox and
 * POSTs them, at most MAX_IN_FLIGHT at once, each within ATTEMPT_TIMEOUT_MS, retrying on a
 * schedule with jitter until WEBHOOK_MAX_AGE_HOURS. It never waits on the message path: sends are
 * queued by the commit that stores them (Store.append), and the deliverer only reads the queue.
 */
import { webhookKeys, type Config } from "./config.ts";
import type { Context } from "./context.ts";
import { newHookId, type HookEvent, type Outbox, type TakenHook } from "./engine.ts";
import type { ModerationFrame, PresenceFrame, WebhookEvent } from "./protocol/wire.ts";

/** Bounds the deliveries under way at once (per instance). */
export const MAX_IN_FLIGHT = 4;
/**
 * Delivered events are forgotten (their rows deleted) together, this long after the first of
 * them: one durable write for the deliveries of that time, not one per delivery. A crash
 * meanwhile delivers them again (at least once, as any delivery that was under way).
 */
const DONE_BATCH_MS = 200;
/** Bounds one attempt: a 2xx answer later than this counts as a failure. */
export const ATTEMPT_TIMEOUT_MS = 10_000;
/** The waits after the 1st, 2nd, … failed attempt; after the last, RETRY_LAST_MS each time. */
export const RETRY_SCHEDULE_MS = [5_000, 30_000, 120_000, 600_000, 1_800_000] as const;
const RETRY_LAST_MS = 3_600_000;
/** A wait is its scheduled length times 1 ± this, at random, so that failed events do not come back all at once. */
export const RETRY_JITTER = 0.2;
/** How often the queue is read with nothing telling the deliverer to: retries that came due, other instances' events. */
const POLL_MS = 1000;
const HOUR_MS = 3_600_000;

/**
 * How long to wait after the `failures`-th failed attempt (1 for the first), jitter included.
 *   retryDelayMs(1, () => 0.5) // => 5000
 *   retryDelayMs(9, () => 0)   // => 2880000 (an hour, less 20%)
 */
export function retryDelayMs(failures: number, random: () => number = Math.random): number {
  const base = RETRY_SCHEDULE_MS[failures - 1] ?? RETRY_LAST_MS;
  return Math.round(base * (1 - RETRY_JITTER + 2 * RETRY_JITTER * random()));
}

/** The event a live frame makes (§11.7): a join or leave; any moderation action. Renames make none. */
export function liveEventOf(frame: PresenceFrame | ModerationFrame): WebhookEvent | null {
  if (frame.type === "moderation") return "moderation";
  return frame.event === "join" ? "member.joined" : frame.event === "leave" ? "member.left" : null;
}

/** The POST's body: `{type, timestamp (ISO 8601), data}`. The same bytes on every attempt. */
export function webhookBody(e: HookEvent): string {
  return JSON.stringify({ type: e.type, timestamp: new Date(e.ts).toISOString(), data: e.data });
}

/**
 * `webhook-signature` (Standard Webhooks): `v1,` + the base64 HMAC-SHA256 of `id.seconds.body`,
 * once per key, space-separated (a receiver accepts any one: secrets rotate without a gap).
 */
export function webhookSignature(keys: readonly Uint8Array[], id: string, seconds: number, body: string): string {
  const signed = `${id}.${seconds}.${body}`;
  return keys.map((key) => `v1,${new Bun.CryptoHasher("sha256", key).update(signed).digest("base64")}`).join(" ");
}

/** The headers of one attempt at `seconds` (Unix time). */
export function webhookHeaders(keys: readonly Uint8Array[], e: HookEvent, seconds: number, body: string): Record<string, string> {
  return {
    "content-type": "application/json",
    "webhook-id": e.id,
    "webhook-timestamp": String(seconds),
    "webhook-signature": webhookSignature(keys, e.id, seconds, body),
  };
}

/** What the deliverer is given besides the server's context; tests pass their own fetch, randomness and timeout. */
export interface WebhookOptions {
  url: string;
  /** The HMAC keys of WEBHOOK_SECRET. */
  keys: Uint8Array[];
  /** Events older than this are dropped. */
  maxAgeMs: number;
  types: ReadonlySet<WebhookEvent>;
  fetch?: (url: string, init: RequestInit) => Promise<Response>;
  random?: () => number;
  attemptTimeoutMs?: number;
  pollMs?: number;
}

/** The options WEBHOOK_* give; null when WEBHOOK_URL is unset. */
export function webhookOptions(config: Config): WebhookOptions | null {
  if (config.webhookUrl === null || config.webhookSecret === null) return null;
  return {
    url: config.webhookUrl,
    keys: webhookKeys(config.webhookSecret)!,
    maxAgeMs: config.webhookMaxAgeHours * HOUR_MS,
    types: new Set(config.webhookEvents),
  };
}

/**
 * The deliverer. It alone decides when an event is tried: it takes what is due from the outbox
 * whenever a delivery slot is free and the outbox says events were queued, or its poll comes;
 * every answer (2xx or not) or failure moves the event on (done, or back for a retry) before the
 * slot is used again. A receiver that hangs holds a slot for ATTEMPT_TIMEOUT_MS at most; nothing
 * else waits for it.
 */
export class Webhooks {
  private readonly inFlight = new Map<string, { event: TakenHook; stop: AbortController; done: Promise<void> }>();
  /** Delivered events not yet forgotten by the outbox: one write for all that end within DONE_BATCH_MS. */
  private finished: TakenHook[] = [];
  private flushing: Promise<void> | null = null;
  /** Ends the wait of the finished events being batched (stop). */
  private flushNow: (() => void) | null = null;
  private filling: Promise<void> | null = null;
  /** A kick came while the queue was being read: read again after. */
  private again = false;
  private poller: ReturnType<typeof setInterval> | null = null;
  private stopped = false;
  /**
   * Failed events whose retry could not be written (storage failed a moment): written again at
   * each poll, or they would wait in the outbox, untried, until a restart or a takeover.
   */
  private stranded: { event: TakenHook; at: number }[] = [];
  private restranding: Promise<void> | null = null;
  /** Finished events whose removal could not be written: removed again at the next poll. */
  private undone: TakenHook[] = [];
  /** Whether the last attempt failed: failures are logged when they start and when they end, not each. */
  private failing = false;
  private readonly fetch: NonNullable<WebhookOptions["fetch"]>;
  private readonly random: () => number;
  private readonly attemptTimeoutMs: number;

  constructor(
    private readonly ctx: Context,
    private readonly outbox: Outbox,
    private readonly options: WebhookOptions,
  ) {
    this.fetch = options.fetch ?? ((url, init) => fetch(url, init));
    this.random = options.random ?? Math.random;
    this.attemptTimeoutMs = options.attemptTimeoutMs ?? ATTEMPT_TIMEOUT_MS;
  }

  start(): void {
    this.outbox.onQueued = () => this.kick();
    this.poller = setInterval(() => this.tick(), this.options.pollMs ?? POLL_MS);
    this.tick();
  }

  /**
   * The events a live frame makes (none, or one: WEBHOOK_EVENTS may leave it out), for the store to
   * queue in the commit of the change they tell of (a ban, a mute, a role).
   */
  eventsOf(frame: PresenceFrame | ModerationFrame): HookEvent[] {
    const type = liveEventOf(frame);
    return type === null || !this.options.types.has(type) ? [] : [{ id: newHookId(), type, ts: this.ctx.now(), data: frame }];
  }

  /** Queues the event of a live frame that changes nothing stored (a join, a leave, a kick from a public room), in a durable write of its own. */
  live(frame: PresenceFrame | ModerationFrame): void {
    const events = this.eventsOf(frame);
    if (!events.length) return;
    this.outbox.add(events).catch((error) => this.ctx.log("error", "storage", { error: String(error), op: "webhook" }));
  }

  /** Takes more events if a slot is free; coalesces with a read under way. */
  kick(): void {
    if (this.stopped) return;
    if (this.filling) {
      this.again = true;
      return;
    }
    this.filling = this.fill().finally(() => {
      this.filling = null;
      if (this.again) {
        this.again = false;
        this.kick();
      }
    });
  }

  private tick(): void {
    this.kick();
    this.unstrand();
    this.count();
    this.outbox.pending().then(
      (n) => (this.ctx.metrics.webhookPending = n),
      () => {},
    );
  }

  /** Moves what the outbox dropped for WEBHOOK_MAX_PENDING to the counter. */
  private count(): void {
    const dropped = this.outbox.takeDropped();
    if (!dropped) return;
    this.ctx.metrics.webhooks.dropped += dropped;
    this.ctx.log("warn", "webhook_dropped", { count: dropped, why: "WEBHOOK_MAX_PENDING" });
  }

  private async fill(): Promise<void> {
    while (!this.stopped && this.inFlight.size < MAX_IN_FLIGHT) {
      const now = this.ctx.now();
      let taken: TakenHook[];
      try {
        taken = await this.outbox.take(MAX_IN_FLIGHT - this.inFlight.size, now);
      } catch (error) {
        // The next poll tries again.
        this.ctx.log("warn", "webhook_queue", { error: String(error) });
        return;
      }
      if (taken.length === 0) return;
      for (const event of taken) {
        if (this.stopped) void this.outbox.release([event]).catch(() => {});
        else if (now - event.ts > this.options.maxAgeMs) this.drop(event, "WEBHOOK_MAX_AGE_HOURS");
        else this.attempt(event);
      }
    }
  }

  private attempt(event: TakenHook): void {
    const stop = new AbortController();
    const entry = { event, stop, done: Promise.resolve() };
    this.inFlight.set(event.ref, entry);
    entry.done = this.post(event, stop.signal)
      .then(async (ok) => {
        this.inFlight.delete(event.ref);
        if (ok) {
          this.ctx.metrics.webhooks.ok++;
          this.ctx.log("debug", "webhook_delivered", { id: event.id, type: event.type, attempts: event.attempts + 1 });
          this.finish(event);
        } else if (stop.signal.aborted) {
          await this.outbox.release([event]).catch(() => {});
        } else {
          await this.failed(event);
        }
      })
      .finally(() => this.kick());
  }

  /** One POST; true on a 2xx answer within the timeout. Redirects are not followed: a 3xx is a failure. */
  private async post(event: TakenHook, stop: AbortSignal): Promise<boolean> {
    const body = webhookBody(event);
    const seconds = Math.floor(this.ctx.now() / 1000);
    try {
      const response = await this.fetch(this.options.url, {
        method: "POST",
        body,
        headers: webhookHeaders(this.options.keys, event, seconds, body),
        redirect: "manual",
        signal: AbortSignal.any([stop, AbortSignal.timeout(this.attemptTimeoutMs)]),
      });
      // The answer's body is not read: only its status counts.
      void response.body?.cancel().catch(() => {});
      const ok = response.status >= 200 && response.status < 300;
      this.health(ok, { status: response.status });
      return ok;
    } catch (error) {
      if (!stop.aborted) this.health(false, { error: (error as Error).name === "TimeoutError" ? "timeout" : String(error) });
      return false;
    }
  }

  /** Logs when deliveries start failing and when they work again (never the URL: it may hold a password). */
  private health(ok: boolean, detail: Record<string, unknown>): void {
    if (ok === !this.failing) return;
    this.failing = !ok;
    if (ok) this.ctx.log("info", "webhook_recovered");
    else this.ctx.log("warn", "webhook_failing", detail);
  }

  /** Back among the retries, or dropped when the next attempt would come past WEBHOOK_MAX_AGE_HOURS. */
  private async failed(event: TakenHook): Promise<void> {
    const at = this.ctx.now() + retryDelayMs(event.attempts + 1, this.random);
    if (at - event.ts > this.options.maxAgeMs) return this.drop(event, "WEBHOOK_MAX_AGE_HOURS");
    this.ctx.metrics.webhooks.retry++;
    try {
      await this.outbox.retry(event, at);
      this.ctx.log("debug", "webhook_retry", { id: event.id, type: event.type, attempts: event.attempts + 1, at });
    } catch (error) {
      this.stranded.push({ event, at });
      this.ctx.log("warn", "webhook_queue", { error: String(error) });
    }
  }

  /** Writes again what storage failed to take: retries (stranded), and removals (undone); what fails again waits for the next poll. */
  private unstrand(): void {
    const undone = this.undone;
    this.undone = [];
    for (const event of undone) this.finish(event);
    if (this.restranding || this.stranded.length === 0) return;
    const events = this.stranded;
    this.stranded = [];
    this.restranding = (async () => {
      for (const { event, at } of events) await this.outbox.retry(event, at).catch(() => this.stranded.push({ event, at }));
    })().finally(() => (this.restranding = null));
  }

  private drop(event: TakenHook, why: string): void {
    this.ctx.metrics.webhooks.dropped++;
    this.ctx.log("warn", "webhook_dropped", { count: 1, why, id: event.id, type: event.type });
    this.finish(event);
  }

  /** Forgets a finished event, with the others that finish within DONE_BATCH_MS (at once when stopping). */
  private finish(event: TakenHook): void {
    this.finished.push(event);
    this.flushing ??= (async () => {
      if (!this.stopped) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, DONE_BATCH_MS);
          this.flushNow = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        this.flushNow = null;
      }
      while (this.finished.length) {
        const events = this.finished;
        this.finished = [];
        try {
          await this.outbox.done(events);
        } catch (error) {
          // Still queued (delivered again if this process ends first: at least once); removed again at the next poll.
          this.undone.push(...events);
          this.ctx.log("warn", "webhook_queue", { error: String(error) });
        }
      }
      this.flushing = null;
    })();
  }

  /** Stops at shutdown: attempts under way are abandoned and handed back, due at once for whoever runs next. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.poller) clearInterval(this.poller);
    this.outbox.onQueued = null;
    await this.filling;
    const attempts = [...this.inFlight.values()];
    for (const a of attempts) a.stop.abort();
    await Promise.all(attempts.map((a) => a.done));
    // A last try for the stranded; those it cannot write are handed out again after a restart (SQLite) or a takeover (Redis).
    this.unstrand();
    await this.restranding;
    this.flushNow?.();
    await this.flushing;
    this.count();
  }
}
