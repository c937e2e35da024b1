/**
 * One supervised connection to Redis (RedisLink): commands that survive a dropped connection,
 * scripts called by SHA, and a reconnect that Bun's client does not make by itself.
 */
import { RedisClient } from "bun";
import { randomId } from "../core/random.ts";
import type { Log } from "../metrics.ts";
import { onceKey } from "./keys.ts";

/** Bounds each attempt of a Redis command that lost its connection (then it is sent again). */
const REDIS_ATTEMPTS = 3;
/** Bounds the wait for Bun's client to reconnect before a command is sent again or fails. */
const REDIS_RECONNECT_WAIT_MS = 2000;
/** Bun's own reconnect attempts (50 ms doubling, at most 2 s apart) before it gives up and we take over. */
const REDIS_CLIENT_RETRIES = 5;
/** How often a connection Bun gave up on is connected again (Bun never does it by itself). */
const REDIS_REVIVE_INTERVAL_MS = 1000;
/** Bounds opening a Redis connection, at start and when reviving it. */
const REDIS_CONNECT_TIMEOUT_MS = 5000;
/**
 * How long Redis keeps a once-script's answer for a resend of its call (`once`): far past the last
 * resend, which comes within REDIS_ATTEMPTS reconnect waits of REDIS_RECONNECT_WAIT_MS.
 */
const REDIS_ONCE_KEEP_MS = 30_000;
/** Bytes of randomness in a once-script call's token. */
const ONCE_TOKEN_BYTES = 12;
/** The first line of a script made by `once`: how RedisLink.run knows to give its call a token. */
const ONCE_HEADER = "-- once: the call's key is the last of KEYS, its answer's life (ms) the last of ARGV\n";

const isConnectionClosed = (error: unknown) => (error as { code?: string })?.code === "ERR_REDIS_CONNECTION_CLOSED";

/** A command Redis did not answer within REDIS_TIMEOUT_MS: given up here (it may still run there). */
export class RedisTimeout extends Error {
  readonly code = "ERR_REDIS_TIMEOUT";
  constructor(command: string, ms: number) {
    super(`Redis did not answer ${command} within ${ms} ms`);
  }
}

/**
 * `script`, run at most once per call however often RedisLink sends the call again (a lost
 * connection: the first may have run, its answer lost). For a script whose second run would do
 * or answer something else than its first: spend a use or a token again, free another room, queue
 * an event twice, or answer "not this time" for what the first did. RedisLink.run gives each call
 * a random key; the first run keeps its answer there for REDIS_ONCE_KEEP_MS, and a resend of the
 * call gets that answer back instead of running again. An answer is a Lua value cjson keeps as is:
 * a number, a string, false, or a list of those.
 */
export function once(script: string): string {
  return `${ONCE_HEADER}local onceKey, onceKeepMs = table.remove(KEYS), table.remove(ARGV)
local kept = redis.call('GET', onceKey)
if kept then return cjson.decode(kept)[1] end
local answer = (function()
${script}
end)()
redis.call('SET', onceKey, cjson.encode({answer}), 'PX', onceKeepMs)
return answer
`;
}

/**
 * One connection to Redis, supervised. Bun's client reconnects by itself a few times and then
 * stays closed for good until connect() is called; this calls it again until Redis is back.
 * No offline queue: while Redis is away a command fails at once instead of piling up.
 */
export class RedisLink {
  readonly client: RedisClient;
  /** Bun gave up reconnecting; the supervisor connects again. */
  private gaveUp = false;
  private reviving: Promise<void> | null = null;
  private readonly waiters = new Set<() => void>();
  private readonly supervisor: ReturnType<typeof setInterval>;
  /** Runs on every (re)connection, after the first. */
  onreconnect: (() => void) | null = null;
  private opened = false;
  private closing = false;
  /**
   * Scripts loaded into Redis, by source: one load each, which every caller awaits, so calls made
   * together reach Redis in the order made. Forgotten at each (re)connection: Redis may have
   * restarted without them, and a NOSCRIPT retry would reorder calls made together.
   */
  private readonly shas = new Map<string, Promise<string>>();
  /** A command went unanswered past the deadline, and none has been answered since. */
  stalled = false;
  /** A PING on its way, from `probe` (one at a time). */
  private probing = false;

  constructor(
    url: string,
    private readonly name: string,
    private readonly log: Log,
    /** REDIS_TIMEOUT_MS: every command is given up after this. */
    private readonly timeoutMs: number,
    /** Sends a PING every REDIS_REVIVE_INTERVAL_MS, so that a stall shows while nothing else is sent (the commands link). */
    probe = false,
  ) {
    this.client = new RedisClient(url, {
      enableOfflineQueue: false,
      maxRetries: REDIS_CLIENT_RETRIES,
      connectionTimeout: REDIS_CONNECT_TIMEOUT_MS,
    });
    this.client.onconnect = () => {
      this.gaveUp = false;
      this.shas.clear();
      for (const wake of [...this.waiters]) wake();
      if (this.opened) {
        this.log("info", "redis_connected", { link: this.name });
        this.onreconnect?.();
      }
      this.opened = true;
    };
    this.client.onclose = (error) => {
      // Before the first connection, open() rejects and says why.
      if (this.closing || !this.opened) return;
      this.gaveUp = true;
      this.log("warn", "redis_closed", { link: this.name, error: String(error) });
    };
    this.supervisor = setInterval(() => {
      this.revive();
      if (probe) this.probe();
    }, REDIS_REVIVE_INTERVAL_MS);
  }

  /** A PING with the deadline: whether Redis answers in time shows even while nobody sends anything. */
  private probe(): void {
    if (this.probing || !this.client.connected || this.closing) return;
    this.probing = true;
    this.send("PING", [])
      .catch(() => {})
      .finally(() => (this.probing = false));
  }

  /**
   * `command`, given up with RedisTimeout after REDIS_TIMEOUT_MS. The first miss logs
   * `redis_slow` and marks the link stalled; the next answer logs `redis_answering` and clears it.
   */
  private deadline<T>(command: string, running: Promise<T>): Promise<T> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new RedisTimeout(command, this.timeoutMs)), this.timeoutMs);
    });
    return Promise.race([running, late]).then(
      (answer) => {
        clearTimeout(timer);
        this.answered();
        return answer;
      },
      (error) => {
        clearTimeout(timer);
        if (error instanceof RedisTimeout) {
          // What Redis answers later is nobody's now.
          running.catch(() => {});
          // Connected, and no answer: Redis stalls. Not connected: that shows as down already.
          if (this.client.connected) {
            if (!this.stalled) this.log("warn", "redis_slow", { link: this.name, command, timeoutMs: this.timeoutMs });
            this.stalled = true;
          }
        } else if (!isConnectionClosed(error)) {
          // An error reply is an answer too.
          this.answered();
        }
        throw error;
      },
    );
  }

  private answered(): void {
    if (!this.stalled) return;
    this.stalled = false;
    this.log("info", "redis_answering", { link: this.name });
  }

  get connected(): boolean {
    return this.client.connected;
  }

  /** The first connection; rejects when Redis cannot be reached. */
  async open(): Promise<void> {
    await this.client.connect();
  }

  private revive(): void {
    if (!this.gaveUp || this.reviving || this.closing) return;
    this.reviving = this.client
      .connect()
      .catch(() => {})
      .finally(() => (this.reviving = null));
  }

  /** Resolves when connected, or after `ms` anyway. */
  private whenConnected(ms: number): Promise<void> {
    if (this.client.connected) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.waiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.waiters.add(done);
    });
  }

  /**
   * Sends a command; one that lost its connection is sent again once the client is back (every
   * command we send may run twice: appends carry a dedup key, a script whose second run would
   * differ is made with `once`, the rest are idempotent).
   */
  async send(command: string, args: string[], resent?: () => void): Promise<any> {
    return this.deadline(command, this.retrying(() => this.client.send(command, args), resent));
  }

  /**
   * Subscribes `listener` to `channel` exactly once, once the connection is back if it was away.
   * Bun calls a listener once per subscribe, and after a reconnect it believes it is subscribed
   * while Redis has forgotten: so the channel is dropped first, whatever Bun believes.
   */
  subscribeOnce(channel: string, listener: RedisClient.StringPubSubListener): Promise<number> {
    return this.deadline("SUBSCRIBE", this.retrying(async () => {
      try {
        await this.client.unsubscribe(channel);
      } catch (error) {
        // Bun refuses at once when nothing is subscribed: then there is nothing to drop.
        if ((error as { code?: string })?.code !== "ERR_REDIS_INVALID_STATE") throw error;
      }
      return this.client.subscribe(channel, listener);
    }));
  }

  private async retrying<T>(command: () => Promise<T>, resent?: () => void): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await command();
      } catch (error) {
        if (!isConnectionClosed(error) || attempt >= REDIS_ATTEMPTS) throw error;
        await this.whenConnected(REDIS_RECONNECT_WAIT_MS);
        resent?.();
      }
    }
  }

  /**
   * Runs a script by its SHA, loading it once (and again after a Redis restart forgot it).
   * `resent` hears when it is sent again after a lost connection: the first may have run. A script
   * made with `once` gets its call's key and REDIS_ONCE_KEEP_MS, the same for every resend.
   */
  async run(script: string, keys: string[], args: string[], resent?: () => void): Promise<any> {
    if (script.startsWith(ONCE_HEADER)) {
      keys = [...keys, onceKey(randomId(ONCE_TOKEN_BYTES))];
      args = [...args, String(REDIS_ONCE_KEEP_MS)];
    }
    for (let attempt = 1; ; attempt++) {
      let loading = this.shas.get(script);
      if (!loading) {
        const loaded = this.send("SCRIPT", ["LOAD", script]).then(String);
        this.shas.set(script, (loading = loaded));
        loaded.catch(() => this.shas.get(script) === loaded && this.shas.delete(script));
      }
      const sha = await loading;
      try {
        return await this.send("EVALSHA", [sha, String(keys.length), ...keys, ...args], resent);
      } catch (error) {
        if (!String((error as Error)?.message).includes("NOSCRIPT") || attempt >= REDIS_ATTEMPTS) throw error;
        if (this.shas.get(script) === loading) this.shas.delete(script);
      }
    }
  }

  close(): void {
    this.closing = true;
    clearInterval(this.supervisor);
    for (const wake of [...this.waiters]) wake();
    this.client.close();
  }
}

/** A Redis hash reply as a Map: RESP3 sends an object, RESP2 a flat [field, value, …] list. */
export function redisHash(reply: Record<string, string> | string[] | null): Map<string, string> {
  if (!reply) return new Map();
  if (!Array.isArray(reply)) return new Map(Object.entries(reply));
  const map = new Map<string, string>();
  for (let i = 0; i + 1 < reply.length; i += 2) map.set(reply[i]!, reply[i + 1]!);
  return map;
}
