/**
 * The Redis engine's webhook outbox (§11.7): a stream that every instance queues to (a stored
 * entry's event by the append script that stores the entry), and a consumer group that hands
 * each event to one instance. An event failed waits among the retries until it is due, then goes
 * to whichever instance takes it; a dead instance's events are taken over by a live one
 * (hooks-takeover.lua). The scripts in lua/hooks-*.lua do the work; this only calls them.
 */
import { webhookEventOf, type HookEvent, type NewEntry, type Outbox, type OutboxBounds, type TakenHook } from "../engine.ts";
import type { WebhookEvent, WebhookFrame } from "../protocol/wire.ts";
import { HOOK_GROUP, HOOK_KEYS, decodeMember, instanceKeys } from "./keys.ts";
import type { RedisLink } from "./link.ts";
import { SCRIPTS } from "./scripts.ts";

/** How often at most an instance looks for dead instances' events (they are found within INSTANCE_TIMEOUT_MS of death, plus this). */
const TAKEOVER_INTERVAL_MS = 1000;
/** Bounds the events one look takes over (the next look takes more). */
const TAKEOVER_MAX = 1000;

const HOOK_ARGS = [HOOK_KEYS.stream, HOOK_KEYS.data, HOOK_KEYS.retry, HOOK_KEYS.tries];

/**
 * An event as the data hash holds it: "webhook-id\ntype\nts\n" + a room log member ("seq:json"),
 * or a live frame's JSON (a `{` tells them apart, as on the rooms' channels).
 */
export function encodeHook(e: HookEvent): string {
  return `${e.id}\n${e.type}\n${e.ts}\n${JSON.stringify(e.data)}`;
}

export function decodeHook(text: string): HookEvent {
  const a = text.indexOf("\n");
  const b = text.indexOf("\n", a + 1);
  const c = text.indexOf("\n", b + 1);
  const rest = text.slice(c + 1);
  const data = rest.startsWith("{") ? (JSON.parse(rest) as WebhookFrame) : decodeMember(rest);
  return { id: text.slice(0, a), type: text.slice(a + 1, b) as WebhookEvent, ts: Number(text.slice(b + 1, c)), data };
}

export class RedisOutbox implements Outbox {
  onQueued: (() => void) | null = null;
  /** Its keys, as a script that queues events takes them (role-set.lua's KEYS[3] on). */
  readonly keys = HOOK_ARGS;
  private dropped = 0;
  private lastTakeover = -Infinity;

  constructor(
    private readonly link: RedisLink,
    /** This instance's id: its name in the consumer group. */
    private readonly instance: string,
    private readonly bounds: OutboxBounds,
    private readonly newId: () => string,
  ) {}

  /** The append script's outbox arguments (ARGV[12] to ARGV[15]) for one entry. */
  appendArgs(e: NewEntry): string[] {
    const type = webhookEventOf(e);
    const head = this.bounds.types.has(type) ? `${this.newId()}\n${type}` : "";
    return [head, "1", HOOK_GROUP, String(this.bounds.maxPending)];
  }

  /** An append queued its event, dropping `dropped` old ones to make room. */
  appended(dropped: number): void {
    this.dropped += dropped;
    this.onQueued?.();
  }

  async add(events: readonly HookEvent[]): Promise<void> {
    if (events.length) await this.addWith([], events);
  }

  /** Runs `writes` (each a command and its words) and queues the events that tell of them, in one step. */
  async addWith(writes: readonly (readonly string[])[], events: readonly HookEvent[]): Promise<void> {
    const words = writes.flatMap((w) => [String(w.length), ...w]);
    const dropped = await this.link.run(SCRIPTS.hooksAdd, HOOK_ARGS, [HOOK_GROUP, String(this.bounds.maxPending), String(writes.length), ...words, ...this.pairs(events)]);
    this.appended(Number(dropped));
  }

  /** The group, WEBHOOK_MAX_PENDING and the events' pairs: what a script that queues events takes. */
  queueArgs(events: readonly HookEvent[]): string[] {
    return [HOOK_GROUP, String(this.bounds.maxPending), ...this.pairs(events)];
  }

  private pairs(events: readonly HookEvent[]): string[] {
    return events.flatMap((e) => [e.id, encodeHook(e)]);
  }

  async take(n: number, now: number): Promise<TakenHook[]> {
    if (now - this.lastTakeover >= TAKEOVER_INTERVAL_MS) {
      this.lastTakeover = now;
      await this.link.run(SCRIPTS.hooksTakeover, [HOOK_KEYS.stream, HOOK_KEYS.retry], [
        HOOK_GROUP, this.instance, String(now), instanceKeys("").alive, String(TAKEOVER_MAX),
      ]);
    }
    const flat: (string | number)[] = await this.link.run(SCRIPTS.hooksTake, HOOK_ARGS, [HOOK_GROUP, this.instance, String(now), String(n)]);
    const taken: TakenHook[] = [];
    for (let i = 0; i + 2 < flat.length; i += 3) {
      taken.push({ ...decodeHook(String(flat[i + 1])), attempts: Number(flat[i + 2]), ref: String(flat[i]) });
    }
    return taken;
  }

  async done(events: readonly TakenHook[]): Promise<void> {
    if (events.length) await this.link.run(SCRIPTS.hooksDone, HOOK_ARGS, [HOOK_GROUP, ...events.map((e) => e.ref)]);
  }

  async retry(event: TakenHook, at: number): Promise<void> {
    await this.link.run(SCRIPTS.hooksRetry, [HOOK_KEYS.stream, HOOK_KEYS.retry, HOOK_KEYS.tries], [String(at), String(event.attempts + 1), event.ref]);
  }

  /** Due at once again, for any instance; the attempts stay as they were. */
  async release(events: readonly TakenHook[]): Promise<void> {
    for (const e of events) {
      await this.link.run(SCRIPTS.hooksRetry, [HOOK_KEYS.stream, HOOK_KEYS.retry, HOOK_KEYS.tries], ["0", String(e.attempts), e.ref]);
    }
  }

  async pending(): Promise<number> {
    return Number(await this.link.send("XLEN", [HOOK_KEYS.stream]));
  }

  takeDropped(): number {
    const n = this.dropped;
    this.dropped = 0;
    return n;
  }
}
