/**
 * Group commit. Sends that arrive together (in one turn of the event loop, or while a commit is
 * running) are stored in one transaction; each new message is handed to the relay (which
 * delivers it here) only after that transaction commits, in arrival order, and each sender's
 * promise then says what became of its message. Under light load a batch is one message and
 * waits one setImmediate; under heavy load batches grow and the per-message cost of a commit
 * shrinks.
 */
import type { Appended, NewEntry, Relay, Store } from "./engine.ts";
import type { Metrics } from "./metrics.ts";

/** Bounds the messages committed in one transaction, so one commit never runs long. */
const BATCH_MAX_MESSAGES = 1000;

type Queued =
  | { message: NewEntry; resolve: (result: Appended) => void; reject: (error: unknown) => void }
  | { settled: () => void };
type Entry = Extract<Queued, { message: NewEntry }>;

export class Batcher {
  private queue: Queued[] = [];
  private running: Promise<void> | null = null;

  constructor(
    private readonly store: Store,
    private readonly relay: Relay,
    private readonly metrics: Metrics,
  ) {}

  /**
   * Queues a message. Resolves once it is stored and, if it is new, delivered here (so its
   * sender's own copy went out with everyone's); with the original for a repeated id; with
   * `refused` for a storage bound. Rejects when it was not stored.
   */
  add(message: NewEntry): Promise<Appended> {
    return new Promise((resolve, reject) => {
      this.queue.push({ message, resolve, reject });
      this.running ??= this.run();
    });
  }

  /**
   * Resolves once everything added before the call is stored and delivered, and its senders'
   * promises have been settled. Room events that must follow a user's messages (its leave) wait
   * for this, so nobody sees "bob left" before bob's last words.
   */
  settled(): Promise<void> {
    if (!this.running) return Promise.resolve();
    return new Promise((resolve) => this.queue.push({ settled: resolve }));
  }

  /** Resolves once the queue is empty. */
  async flush(): Promise<void> {
    while (this.running) await this.running;
  }

  private async run(): Promise<void> {
    await new Promise<void>((resolve) => setImmediate(resolve));
    while (this.queue.length) {
      const batch: Entry[] = [];
      // Taken off the queue in one splice: a shift per message moves the whole queue each time.
      let taken = 0;
      for (; taken < this.queue.length && batch.length < BATCH_MAX_MESSAGES; taken++) {
        const head = this.queue[taken]!;
        if ("settled" in head) {
          if (batch.length) break;
          head.settled();
        } else {
          batch.push(head);
        }
      }
      this.queue.splice(0, taken);
      // The senders' handlers run before the loop goes on, so before any `settled` after them.
      if (batch.length) await this.commit(batch);
    }
    this.running = null;
  }

  private async commit(batch: Entry[]): Promise<void> {
    const started = performance.now();
    let results: Appended[];
    try {
      results = await this.store.append(batch.map((b) => b.message));
    } catch (error) {
      for (const b of batch) b.reject(error);
      return;
    } finally {
      this.metrics.storageWrite((performance.now() - started) / 1000);
    }
    // A delivery that throws fails its own message, never the batch nor the batcher.
    const failures = await Promise.all(
      results.map((r) =>
        "message" in r && !r.duplicate ? this.relay.committed(r.message).then(
          () => null,
          (error: unknown) => ({ error }),
        ) : null,
      ),
    );
    results.forEach((r, i) => {
      const failure = failures[i];
      if (failure) batch[i]!.reject(failure.error);
      else batch[i]!.resolve(r);
    });
  }
}
