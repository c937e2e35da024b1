/**
 * The embedded engine's webhook outbox (§11.7): the `hooks` table, written inside SqliteStore's
 * transactions (a stored entry's event in the very one that stores the entry) and read by the
 * deliverer. One process owns the file, so which rows are being delivered is kept in memory;
 * after a crash every row is simply due again. New events are handed out in id order from a
 * cursor, retries by when they are due (an index that holds failed events only): queueing an
 * event is one row appended, and for an event that carries a message's text, one entry in the
 * index a deletion of that message finds it by.
 */
import type { Database } from "bun:sqlite";
import { newHookId, webhookEventOf, type HookEvent, type NewEntry, type Outbox, type OutboxBounds, type TakenHook } from "../engine.ts";
import type { StoredFrame, WebhookEvent, WebhookFrame } from "../protocol/wire.ts";

/** A write of the outbox, run inside a SqliteStore transaction (SqliteStore.write). */
export type OutboxOp =
  | { op: "hooks"; events: readonly HookEvent[] }
  | { op: "hooksDone"; ids: readonly number[] }
  | { op: "hookRetry"; id: number; attempts: number; at: number };

interface HookRow {
  id: number;
  hook_id: string;
  type: WebhookEvent;
  ts: number;
  data: string;
  attempts: number;
}

/** The message whose text an event carries (`hooks.text_of`): a deletion of it blanks the event. */
const textOf = (room: string, seq: number) => `${room}\n${seq}`;

export class SqliteOutbox implements Outbox {
  onQueued: (() => void) | null = null;
  private readonly q;
  /** Rows held, as committed; `txCount` as the running transaction moves it. */
  private count: number;
  private txCount = 0;
  /** Rows dropped for WEBHOOK_MAX_PENDING, committed and not yet counted by the deliverer; and in the running transaction. */
  private dropped = 0;
  private txDropped = 0;
  /** Rows that failed at least once (the retry index's), committed; `txFailing` in the running transaction. */
  private failing: number;
  private txFailing = 0;
  /** The newest row's id, committed; `txNewest` as the running transaction moves it. Ids are given here, one past it. */
  private newest: number;
  private txNewest = 0;
  /** New events are handed out from here on, in id order (events up to it were taken, or had failed before). */
  private cursor: number;
  /**
   * The newest row on disk. A row is handed out only once it is: the deliverer tells nobody of
   * an event its commit might still lose, as the hub tells no client (SqliteStore's rule).
   */
  private durable: number;
  /** Rows handed to the deliverer and not yet done, retried or released. */
  private readonly leased = new Set<number>();

  constructor(
    db: Database,
    private readonly bounds: OutboxBounds,
    private readonly write: (ops: readonly OutboxOp[]) => Promise<unknown[]>,
  ) {
    this.q = {
      insert: db.query("INSERT INTO hooks (id, hook_id, type, ts, data, text_of) VALUES (?, ?, ?, ?, ?, ?)"),
      /** A deleted message's text goes from the events that carry it, too (§11.4): found by their index, not by a scan. */
      blank: db.query("UPDATE hooks INDEXED BY hooks_text_of SET data = json_set(data, '$.text', '') WHERE text_of = ?"),
      dropOldest: db.query<{ attempts: number }, [number]>("DELETE FROM hooks WHERE id IN (SELECT id FROM hooks ORDER BY id LIMIT ?) RETURNING attempts"),
      /** Says what it deleted: a row dropped meanwhile for WEBHOOK_MAX_PENDING is not counted twice. */
      done: db.query<{ attempts: number }, [string]>("DELETE FROM hooks WHERE id IN (SELECT value FROM json_each(?)) RETURNING attempts"),
      retry: db.query("UPDATE hooks SET attempts = ?, due = ? WHERE id = ?"),
      retries: db.query<HookRow, [number, number]>(
        "SELECT id, hook_id, type, ts, data, attempts FROM hooks WHERE attempts > 0 AND due <= ? ORDER BY due LIMIT ?",
      ),
      /** Never tried: a row that failed is a retry, due when it is due (after a restart, some lie past the cursor). */
      fresh: db.query<HookRow, [number, number, number]>(
        "SELECT id, hook_id, type, ts, data, attempts FROM hooks WHERE id > ? AND id <= ? AND attempts = 0 ORDER BY id LIMIT ?",
      ),
      count: db.query<{ n: number; newest: number | null }, []>("SELECT count(*) AS n, max(id) AS newest FROM hooks"),
      untried: db.query<{ first: number | null }, []>("SELECT min(id) AS first FROM hooks WHERE attempts = 0"),
      failing: db.query<{ n: number }, []>("SELECT count(*) AS n FROM hooks WHERE attempts > 0"),
    };
    this.failing = this.q.failing.get()!.n;
    const { n, newest } = this.q.count.get()!;
    this.count = n;
    this.newest = newest ?? 0;
    // What a file holds when it opens is on disk; what was never tried (or was under way at a crash) goes first.
    this.durable = this.newest;
    const first = this.q.untried.get()!.first;
    this.cursor = first === null ? this.newest : first - 1;
  }

  // In a transaction (SqliteStore.writeTx): begin, then any of these, then end.

  begin(): void {
    this.txCount = this.count;
    this.txFailing = this.failing;
    this.txDropped = 0;
    this.txNewest = this.newest;
  }

  /** Queues the event of an entry just stored as `frame`, if WEBHOOK_EVENTS takes its type. */
  stored(entry: NewEntry, frame: StoredFrame): void {
    const type = webhookEventOf(entry);
    if (!this.bounds.types.has(type)) return;
    this.insert({ id: newHookId(), type, ts: frame.ts, data: frame });
  }

  /** The text of a deleted message leaves the queued events of it and of its edits. */
  blank(room: string, target: number): void {
    if (this.txCount > 0) this.q.blank.run(textOf(room, target));
  }

  apply(op: OutboxOp): void {
    switch (op.op) {
      case "hooks":
        for (const e of op.events) this.insert(e);
        return;
      case "hooksDone": {
        const gone = this.q.done.all(JSON.stringify(op.ids));
        this.txCount -= gone.length;
        this.txFailing -= gone.filter((row) => row.attempts > 0).length;
        return;
      }
      case "hookRetry":
        if (this.q.retry.run(op.attempts, op.at, op.id).changes && op.attempts === 1) this.txFailing++;
    }
  }

  /** Ends the transaction's part: the oldest rows past WEBHOOK_MAX_PENDING go. */
  end(): void {
    const excess = this.txCount - this.bounds.maxPending;
    if (excess <= 0) return;
    // Counted by what the delete removed, as `done` is: some of them may have failed before.
    this.txFailing -= this.q.dropOldest.all(excess).filter((row) => row.attempts > 0).length;
    this.txCount -= excess;
    this.txDropped += excess;
  }

  /** The transaction committed: its counts stand. Returns the newest row it wrote (0: none), for `synced`. */
  commit(): number {
    this.count = this.txCount;
    this.failing = this.txFailing;
    this.dropped += this.txDropped;
    const wrote = this.txNewest > this.newest ? this.txNewest : 0;
    this.newest = this.txNewest;
    return wrote;
  }

  /** A commit that wrote rows up to `newest` is on disk: they may go out. */
  synced(newest: number): void {
    if (newest <= this.durable) return;
    this.durable = newest;
    this.onQueued?.();
  }

  private insert(e: HookEvent): void {
    const d = e.data as StoredFrame;
    const of = e.type === "message.created" ? textOf(d.room, d.seq) : e.type === "message.edited" && d.type === "edit" ? textOf(d.room, d.target) : null;
    this.q.insert.run(++this.txNewest, e.id, e.type, e.ts, JSON.stringify(e.data), of);
    this.txCount++;
  }

  // The deliverer's side.

  async add(events: readonly HookEvent[]): Promise<void> {
    if (events.length) await this.write([{ op: "hooks", events }]);
  }

  async take(n: number, now: number): Promise<TakenHook[]> {
    const rows: HookRow[] = [];
    // Retries being delivered are skipped here, not in SQL: they are at most a handful. With none
    // failed and nothing new on disk there is nothing to read (a deliverer's last take, usually).
    if (this.failing > 0) {
      for (const row of this.q.retries.all(now, n + this.leased.size)) {
        if (rows.length < n && !this.leased.has(row.id)) rows.push(row);
      }
    }
    if (rows.length < n && this.cursor < this.durable) {
      const fresh = this.q.fresh.all(this.cursor, this.durable, n - rows.length);
      if (fresh.length) this.cursor = fresh.at(-1)!.id;
      rows.push(...fresh);
    }
    for (const row of rows) this.leased.add(row.id);
    return rows.map((row) => ({ id: row.hook_id, type: row.type, ts: row.ts, data: JSON.parse(row.data) as WebhookFrame, attempts: row.attempts, ref: String(row.id) }));
  }

  async done(events: readonly TakenHook[]): Promise<void> {
    const ids = events.map((e) => Number(e.ref));
    // Held until the delete commits, or a take meanwhile would hand them out again.
    try {
      await this.write([{ op: "hooksDone", ids }]);
    } finally {
      for (const id of ids) this.leased.delete(id);
    }
  }

  async retry(event: TakenHook, at: number): Promise<void> {
    const id = Number(event.ref);
    try {
      await this.write([{ op: "hookRetry", id, attempts: event.attempts + 1, at }]);
    } finally {
      this.leased.delete(id);
    }
  }

  /**
   * Handed back untried (shutdown): a retry is due already; an event never tried is handed out
   * again from the first untried row when the file is next opened (this process is stopping).
   */
  async release(events: readonly TakenHook[]): Promise<void> {
    for (const e of events) this.leased.delete(Number(e.ref));
  }

  async pending(): Promise<number> {
    return this.count;
  }

  takeDropped(): number {
    const n = this.dropped;
    this.dropped = 0;
    return n;
  }
}
