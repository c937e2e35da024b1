/**
 * What the server counts and logs: Prometheus counters and the storage-write histogram
 * (GET /metrics), and one JSON object per log line.
 */
import { ERROR_CODES, LINE_TOO_LONG } from "./protocol/wire.ts";
import { LOG_LEVELS, type LogLevel } from "./config.ts";

/** Upper bounds of the storage write latency buckets, in seconds. */
const STORAGE_WRITE_BUCKETS_SECONDS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1];

export class Metrics {
  joins = 0;
  messagesIn = 0;
  messagesOut = 0;
  publishDrops = 0;
  backpressureCloses = 0;
  /** Webhook attempts by outcome (§11.7): delivered, failed and to be retried, given up (too old, or the queue full). */
  readonly webhooks = { ok: 0, retry: 0, dropped: 0 };
  /** Webhook events queued, on every instance, as last read. */
  webhookPending = 0;
  readonly errors = new Map<string, number>([...ERROR_CODES, LINE_TOO_LONG].map((code) => [code, 0]));
  private readonly writeBuckets = STORAGE_WRITE_BUCKETS_SECONDS.map(() => 0);
  private writeCount = 0;
  private writeSum = 0;

  error(code: string): void {
    this.errors.set(code, (this.errors.get(code) ?? 0) + 1);
  }

  storageWrite(seconds: number): void {
    this.writeCount++;
    this.writeSum += seconds;
    STORAGE_WRITE_BUCKETS_SECONDS.forEach((le, i) => {
      if (seconds <= le) this.writeBuckets[i]!++;
    });
  }

  /** Prometheus text exposition. */
  render(connections: number): string {
    const out: string[] = [];
    const metric = (name: string, type: string, help: string, lines: string[]) =>
      out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`, ...lines);
    metric("chat_connections", "gauge", "Open WebSocket and TCP connections.", [`chat_connections ${connections}`]);
    metric("chat_joins_total", "counter", "Rooms joined by connections.", [`chat_joins_total ${this.joins}`]);
    metric("chat_messages_in_total", "counter", "Valid send frames and TCP chat lines accepted.", [
      `chat_messages_in_total ${this.messagesIn}`,
    ]);
    metric("chat_messages_out_total", "counter", "Message deliveries, one per recipient connection.", [
      `chat_messages_out_total ${this.messagesOut}`,
    ]);
    metric(
      "chat_errors_total",
      "counter",
      "Error answers sent, by code.",
      [...this.errors].map(([code, n]) => `chat_errors_total{code="${code}"} ${n}`),
    );
    metric("chat_publish_drops_total", "counter", "Publishes or sends that Bun dropped for a subscriber.", [
      `chat_publish_drops_total ${this.publishDrops}`,
    ]);
    metric("chat_backpressure_closes_total", "counter", "Clients closed for not reading their output.", [
      `chat_backpressure_closes_total ${this.backpressureCloses}`,
    ]);
    metric(
      "chat_webhook_deliveries_total",
      "counter",
      "Webhook deliveries by result: ok (2xx), retry (failed, tried again later), dropped (too old, or the queue full).",
      Object.entries(this.webhooks).map(([result, n]) => `chat_webhook_deliveries_total{result="${result}"} ${n}`),
    );
    metric("chat_webhook_pending", "gauge", "Webhook events queued for delivery.", [`chat_webhook_pending ${this.webhookPending}`]);
    metric("chat_storage_write_seconds", "histogram", "Time to commit one batch of messages.", [
      ...STORAGE_WRITE_BUCKETS_SECONDS.map((le, i) => `chat_storage_write_seconds_bucket{le="${le}"} ${this.writeBuckets[i]}`),
      `chat_storage_write_seconds_bucket{le="+Inf"} ${this.writeCount}`,
      `chat_storage_write_seconds_sum ${this.writeSum}`,
      `chat_storage_write_seconds_count ${this.writeCount}`,
    ]);
    return out.join("\n") + "\n";
  }
}

export type Log = (level: LogLevel, event: string, fields?: Record<string, unknown>) => void;

/** One JSON object per line, at `level` or above, to `sink`. */
export function createLogger(level: LogLevel, sink: (line: string) => void = console.log): Log {
  const min = LOG_LEVELS.indexOf(level);
  return function log(at, event, fields) {
    if (LOG_LEVELS.indexOf(at) < min) return;
    sink(JSON.stringify({ ts: new Date().toISOString(), level: at, event, ...fields }));
  };
}
