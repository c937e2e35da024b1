/**
 * The embedded engine's storage: history, seq, dedup keys, sessions and rooms' authority (roles,
 * settings, lists, invites) in one SQLite file (or `:memory:`), durable before anyone is told,
 * without blocking the event loop (see SqliteStore).
 */
import { Database } from "bun:sqlite";
import { closeSync, fdatasync, mkdirSync, openSync } from "node:fs";
import { randomId } from "./core/random.ts";
import { dirname } from "node:path";
import { DEFAULTS } from "./config.ts";
import { ageCutoff, changed, historyBounds, holds, pageRows, storedFrame, toPage } from "./engine.ts";
import type {
  Appended,
  AuditEntry,
  BotRecord,
  HistoryBounds,
  HookEvent,
  NewEntry,
  Outbox,
  OutboxBounds,
  Page,
  PageQuery,
  RecentRoom,
  Restriction,
  RoleHolder,
  RoomAuth,
  SessionRecord,
  Store,
  StorageFailure,
} from "./engine.ts";
import { userRef } from "./protocol/rules.ts";
import type { Role, StoredFrame, UserRef } from "./protocol/wire.ts";
import { MIGRATIONS, SCHEMA } from "./sqlite/schema.ts";
import { COLUMNS, dataOf, rowOf, rowToFrame, settingsOf, type MessageRow, type SettingsRow } from "./sqlite/rows.ts";
import { SqliteOutbox, type OutboxOp } from "./sqlite/outbox.ts";
import { SqliteInvites } from "./sqlite/invites.ts";

interface SessionRow {
  user_id: string;
  expires_at: number;
  kind: SessionRecord["kind"];
  name: string | null;
  key1: string | null;
  key2: string | null;
  admin: number;
  rooms: string | null;
}

interface RestrictionRow {
  user_id: string;
  kind: "ban" | "mute";
  until: number | null;
  reason: string | null;
  by_id: string;
  by_name: string;
}

const restrictionOf = (r: Omit<RestrictionRow, "user_id" | "kind">): Restriction => ({
  until: r.until,
  ...(r.reason !== null ? { reason: r.reason } : {}),
  by: userRef(r.by_id, r.by_name),
});

const botOf = (r: { id: string; name: string; created_at: number; revoked: number }): BotRecord => ({
  id: r.id,
  name: r.name,
  createdAt: r.created_at,
  revoked: r.revoked === 1,
});

/** A room's latest seq and oldest retained seq (null when none), as roomInfo and roomPage read them. */
const INFO_COLUMNS =
  "(SELECT last_seq FROM rooms WHERE room = ?1) AS info_seq, (SELECT seq FROM messages WHERE room = ?1 ORDER BY seq LIMIT 1) AS info_oldest";
const ROOM_INFO = `SELECT ${INFO_COLUMNS}`;
/** A row of roomPage: a message, and its room's latest and oldest seq. */
type InfoRow = MessageRow & { info_seq: number | null; info_oldest: number | null };

/** The room name the server's own rows (server bans, server audit entries) are kept under: no room has it. */
const SERVER = "";

/** One write of a transaction (SqliteStore.write): the Store's writes, as data. */
type WriteOp =
  | { op: "append"; batch: readonly NewEntry[] }
  | { op: "session"; tokenHash: string; session: SessionRecord; refresh: boolean }
  | { op: "revokeSession"; tokenHash: string }
  | { op: "sweepSessions"; now: number }
  | { op: "sweepHistory"; now: number }
  | { op: "reclaim"; before: number; occupied: (room: string) => boolean }
  | { op: "claimOwner"; room: string; user: UserRef }
  | { op: "setRole"; room: string; user: UserRef; role: Role }
  | { op: "addListed"; room: string; userIds: readonly string[] }
  | { op: "removeListed"; room: string; userId: string }
  | { op: "createInvite"; codeHash: string; room: string; expiresAt: number; maxUses: number | null; now: number; max: number }
  | { op: "useInvite"; codeHash: string; room: string; now: number }
  | { op: "restrict"; kind: "ban" | "mute"; room: string; userId: string; restriction: Restriction | null }
  | { op: "banAddress"; ip: string; userId: string; restriction: Restriction }
  | { op: "audit"; entry: AuditEntry }
  | { op: "createBot"; bot: BotRecord; tokenHash: string }
  | { op: "revokeBot"; id: string }
  | OutboxOp;

/** A change's ops and the webhook events that tell of it, in one commit (§11.7). */
const told = (ops: WriteOp[], hooks: readonly HookEvent[] | undefined): WriteOp[] => (hooks?.length ? [...ops, { op: "hooks", events: hooks }] : ops);

/**
 * fdatasync(2) on Bun's thread pool, the event loop going on meanwhile. It is what SQLite itself
 * calls to sync the WAL on Linux: the data and the file's size, without its times.
 */
function fsyncAsync(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fdatasync(fd, (error) => (error ? reject(error) : resolve())));
}

/** Bytes of randomness in the file's epoch. */
const EPOCH_BYTES = 9;

/** How often the checkpointer copies the WAL into the database file. */
const CHECKPOINT_INTERVAL_MS = 1000;
/**
 * The writer checkpoints by itself, stalling the event loop, only past this many WAL pages (40 MB):
 * when the checkpointer falls far behind. SQLite's default, restored if the checkpointer dies.
 */
const WAL_BACKSTOP_PAGES = 10_000;
const WAL_DEFAULT_CHECKPOINT_PAGES = 1000;
/**
 * Bounds the writer's page cache, in KiB (SQLite's default is 2 MiB). Each room written keeps its
 * newest pages (messages and dedup index) in memory between commits; at the default, 500 rooms
 * written at once re-read about one page per message from the file (bench: write-heavy, +9%).
 */
const SQLITE_CACHE_KIB = 16_384;
/**
 * Bounds the fsyncs of the WAL running at once. A commit that lands while one runs starts its own
 * at once instead of waiting for it to end (on the bench's disk two in flight nearly double the
 * syncs per second at the same latency); writes that land while all are busy commit together.
 */
const WAL_SYNCS_IN_FLIGHT = 2;

/**
 * The checkpointer's code: a thread with its own connection that runs a PASSIVE checkpoint every
 * interval. A checkpoint copies pages and fsyncs twice; in the writer's thread it stalled the
 * event loop after about every 4 MB written (under write-heavy load, after nearly every commit).
 * PASSIVE never blocks the writer. Plain JS in a Blob, so `bun build --compile` needs no entrypoint.
 */
const CHECKPOINTER_SOURCE = `
import { Database } from "bun:sqlite";
let db = null, timer = null;
self.onmessage = ({ data }) => {
  if (data.path) {
    db = new Database(data.path, { readwrite: true, create: false });
    // The first read opens the WAL; a checkpoint before it would find nothing to copy.
    db.exec("PRAGMA busy_timeout = 5000; PRAGMA journal_mode;");
    timer = setInterval(() => db.exec("PRAGMA wal_checkpoint(PASSIVE)"), data.intervalMs);
    return;
  }
  clearInterval(timer);
  db?.close();
  postMessage("closed");
};
`;

/** Bounds the idle rooms looked at to reclaim one: those with people in them are passed over. */
const RECLAIM_CANDIDATES = 100;

/** Bounds the rooms the directory's index keeps (`/api/rooms?recent=1` lists the newest of them). */
const RECENT_ROOMS_KEPT = 1000;

type Refable = { ref(): void; unref(): void };

function startCheckpointer(path: string, died: () => void): Worker {
  const worker = new Worker(URL.createObjectURL(new Blob([CHECKPOINTER_SOURCE], { type: "text/javascript" })));
  worker.onerror = died;
  // It must not keep a process alive whose store nobody closed. (Bun's Worker; the DOM type lacks ref.)
  (worker as Worker & Refable).unref();
  worker.postMessage({ path, intervalMs: CHECKPOINT_INTERVAL_MS });
  return worker;
}

async function stopCheckpointer(worker: Worker | null): Promise<void> {
  if (!worker) return;
  // Held by the process until it answers: at shutdown nothing else may be keeping it alive.
  (worker as Worker & Refable).ref();
  await new Promise<void>((resolve) => {
    worker.onmessage = () => resolve();
    worker.onerror = () => resolve();
    worker.postMessage({});
  });
  worker.terminate();
}

type Waiter = { ops: readonly WriteOp[]; resolve: (results: unknown[]) => void; reject: (error: unknown) => void };

/** Hands each write of a committed group its own slice of the transaction's results. */
function resolveGroup(group: readonly Waiter[], results: readonly unknown[]): void {
  let at = 0;
  for (const w of group) w.resolve(results.slice(at, (at += w.ops.length)));
}

/**
 * The embedded engine, durable without blocking the event loop. A commit is on disk before
 * anyone is told of it, so neither a killed process nor a lost machine loses what a client saw.
 *
 * SQLite's synchronous=FULL in WAL mode is synchronous=NORMAL plus one fsync of the WAL after each
 * commit, made while the event loop waits. We run NORMAL (SQLite still syncs around checkpoints
 * and when the WAL is reused) and make that fsync ourselves, on Bun's thread pool: the commit
 * writes to the page cache in microseconds, the event loop goes on parsing and publishing, and
 * a write's promise resolves only once an fsync that started after its commit has returned, and
 * every earlier commit's has too. Up to WAL_SYNCS_IN_FLIGHT fsyncs run at once; writes that land
 * while all are busy share the next one (group commit, for messages and sessions alike). Reads in
 * between may see a commit not yet on disk; the hub publishes only what its writes' promises
 * returned, so nobody is told of it before it is durable.
 */
export class SqliteStore implements Store {
  private readonly db: Database;
  /** Every room's epoch: one per file, which holds every room's sequence. */
  private readonly epoch: string;
  private readonly bounds: HistoryBounds;
  private readonly q;
  private readonly invites: SqliteInvites;
  private readonly writeTx;
  /**
   * Rooms that hold history, for MAX_ROOMS: counted at the first write, then moved by each commit
   * and sweep (null: count again). It is the engine's only per-database state in memory: seqs are
   * read inside each transaction, so nothing here grows with the rooms ever named.
   */
  private heldRooms: number | null = null;
  /** heldRooms as the running transaction moves it; kept only if it commits. */
  private held = 0;
  /** The WAL file (null for :memory:, which has nothing to sync). */
  private readonly walPath: string | null;
  /**
   * Descriptors of the WAL not in use, opened as needed: one per fsync in flight. Linux reports a
   * writeback error once to each open file, so with a shared descriptor one sync could take the
   * error of the other's pages and leave that one reporting success.
   */
  private readonly idleFds: number[] = [];
  /** The fsyncs in flight (at most WAL_SYNCS_IN_FLIGHT). */
  private readonly syncing = new Set<Promise<void>>();
  private checkpointer: Worker | null = null;
  /** Writes waiting for an fsync to end; they commit together, then share the next. */
  private waiting: Waiter[] = [];
  /** Committed groups whose fsync has not returned, oldest first; each resolves after those before it. */
  private unsynced: { group: Waiter[]; results: unknown[]; hooks: number; synced: boolean }[] = [];
  /**
   * Set when an fsync of the WAL failed. From then on what is on disk is unknown (Linux may drop
   * the failed pages and report success next time), and a later commit that did sync would be
   * published past one that never was. So the engine stops: no write is taken until a restart,
   * which reads back what the disk really holds (PostgreSQL's answer to the same failure).
   */
  private broken: Error | null = null;
  /**
   * The last write failed for want of space (SQLITE_FULL: the disk, or SQLite's page cap); the
   * next one that succeeds clears it. A failed write is rolled back whole, so nothing anyone was
   * told of is lost, and its senders may send it again.
   */
  private full: Error | null = null;
  /** Server-wide bans of users, and of addresses (with the user whose ban made each), as committed. */
  private readonly userBans = new Map<string, Restriction>();
  private readonly addressBans = new Map<string, Restriction & { userId: string }>();
  /** The rooms whose settings say private, as committed. */
  private readonly privateSet = new Set<string>();
  /** The directory's index: rooms by their latest message, oldest first (RECENT_ROOMS_KEPT at most). */
  private readonly recent = new Map<string, RecentRoom>();
  /** The webhook outbox, once opened (webhooks on); its rows are written in this store's transactions. */
  private outbox: SqliteOutbox | null = null;

  constructor(
    path: string,
    retain: number,
    bounds: Partial<Omit<HistoryBounds, "retain">> = {},
    /** Flushes a file to disk; tests pass one they can hold. */
    private readonly sync: (fd: number) => Promise<void> = fsyncAsync,
  ) {
    if (path !== ":memory:") mkdirSync(dirname(path), { recursive: true });
    this.bounds = { ...historyBounds(DEFAULTS), ...bounds, retain };
    this.db = new Database(path, { create: true, strict: true });
    this.db.exec("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000;");
    this.db.exec(`PRAGMA cache_size = -${SQLITE_CACHE_KIB}`);
    this.walPath = path === ":memory:" ? null : `${path}-wal`;
    if (this.walPath) {
      // The checkpointer folds the WAL into the database; this connection does so only as a backstop.
      this.db.exec(`PRAGMA wal_autocheckpoint = ${WAL_BACKSTOP_PAGES}`);
      this.checkpointer = startCheckpointer(path, () => {
        this.checkpointer = null;
        this.db.exec(`PRAGMA wal_autocheckpoint = ${WAL_DEFAULT_CHECKPOINT_PAGES}`);
      });
    }
    this.db.exec(SCHEMA);
    // The file's epoch, made with it (and, in a file from before epochs, at its first open since).
    this.db.query("INSERT OR IGNORE INTO meta (key, value) VALUES ('epoch', ?)").run(randomId(EPOCH_BYTES));
    this.epoch = this.db.query<{ value: string }, []>("SELECT value FROM meta WHERE key = 'epoch'").get()!.value;
    const version = this.db.query<{ user_version: number }, []>("PRAGMA user_version").get()!.user_version;
    for (const [to, sql] of MIGRATIONS) {
      if (to <= version) continue;
      this.db.transaction(() => this.db.exec(`${sql}\nPRAGMA user_version = ${to};`))();
    }
    const columns = COLUMNS;
    // A deleted message's text is overwritten where it lay, not left in the page's free space (§11.4).
    this.db.exec("PRAGMA secure_delete = FAST");
    this.invites = new SqliteInvites(this.db);
    this.q = {
      roomInfo: this.db.query<{ info_seq: number | null; info_oldest: number | null }, [string]>(ROOM_INFO),
      oldest: this.db.query<{ seq: number }, [string]>("SELECT seq FROM messages WHERE room = ? ORDER BY seq LIMIT 1"),
      /** What a commit needs of the rooms it writes to (a JSON array): latest seq, oldest message if any. */
      roomRows: this.db.query<{ room: string; last: number | null; oldest: number | null; oldestTs: number | null }, [string]>(
        "SELECT j.value AS room, r.last_seq AS last, m.seq AS oldest, m.ts AS oldestTs FROM json_each(?) j " +
          "LEFT JOIN rooms r ON r.room = j.value " +
          "LEFT JOIN messages m ON m.room = j.value AND m.seq = (SELECT seq FROM messages WHERE room = j.value ORDER BY seq LIMIT 1)",
      ),
      dedup: this.db.query<MessageRow, [string, string, string]>(
        `SELECT ${columns} FROM messages WHERE room = ? AND user_id = ? AND client_id = ?`,
      ),
      // A repeated (room, user, id) stores nothing: the caller then reads the original.
      insert: this.db.query(
        `INSERT INTO messages (${columns}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (room, user_id, client_id) DO NOTHING`,
      ),
      /** Moves every written room's last_seq at once: a JSON array of [room, seq]. */
      setSeqs: this.db.query(
        "INSERT INTO rooms (room, last_seq) SELECT value ->> 0, value ->> 1 FROM json_each(?) WHERE true " +
          "ON CONFLICT (room) DO UPDATE SET last_seq = excluded.last_seq",
      ),
      trim: this.db.query("DELETE FROM messages WHERE room = ? AND seq <= ?"),
      // A room's messages are in seq order and, the clock going forward, in ts order too: trimming
      // by age walks from its oldest to the first one young enough.
      trimAge: this.db.query(
        "DELETE FROM messages WHERE room = ?1 AND seq < coalesce(" +
          "(SELECT seq FROM messages WHERE room = ?1 AND ts >= ?2 ORDER BY seq LIMIT 1), 9007199254740991)",
      ),
      agedRooms: this.db.query<{ room: string }, [number]>(
        "SELECT room FROM rooms r WHERE (SELECT ts FROM messages m WHERE m.room = r.room ORDER BY seq LIMIT 1) < ?",
      ),
      heldRooms: this.db.query<{ n: number }, []>(
        "SELECT count(*) AS n FROM rooms r WHERE EXISTS (SELECT 1 FROM messages m WHERE m.room = r.room)",
      ),
      // A page, newest or after a seq, with the room's seq and oldest in every row (for roomPage;
      // SQLite runs those subqueries once per statement). A page with no rows reads them alone.
      newest: this.db.query<InfoRow, [string, number, number]>(
        `SELECT ${columns}, ${INFO_COLUMNS} FROM messages WHERE room = ?1 AND seq < ?2 ORDER BY seq DESC LIMIT ?3`,
      ),
      after: this.db.query<InfoRow, [string, number, number, number]>(
        `SELECT ${columns}, ${INFO_COLUMNS} FROM messages WHERE room = ?1 AND seq > ?2 AND seq < ?3 ORDER BY seq LIMIT ?4`,
      ),
      findSession: this.db.query<SessionRow, [string, number]>(
        "SELECT user_id, expires_at, kind, name, key1, key2, admin, rooms FROM sessions WHERE token_hash = ? AND expires_at > ?",
      ),
      saveSession: this.db.query( // ?10: a refresh, which writes only while the session is still there (a signout wins)
        "INSERT OR REPLACE INTO sessions (token_hash, user_id, expires_at, kind, name, key1, key2, admin, rooms) SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9 WHERE ?10 = 0 OR EXISTS (SELECT 1 FROM sessions WHERE token_hash = ?1)",
      ),
      revokeSession: this.db.query("DELETE FROM sessions WHERE token_hash = ?"),
      /** A valid guest session holding a name by one of two keys (given twice: ?1 ?2). */
      reservedBy: this.db.query<{ user_id: string }, [string, string, number]>(
        "SELECT user_id FROM sessions WHERE (key1 IN (?1, ?2) OR key2 IN (?1, ?2)) AND expires_at > ?3 LIMIT 1",
      ),
      roles: this.db.query<{ user_id: string; role: "owner" | "moderator"; name: string }, [string]>(
        "SELECT user_id, role, name FROM room_roles WHERE room = ?",
      ),
      settings: this.db.query<SettingsRow, [string]>(
        "SELECT topic, private, read_only, slow_mode_seconds FROM room_settings WHERE room = ?",
      ),
      saveSettings: this.db.query("INSERT OR REPLACE INTO room_settings (room, topic, private, read_only, slow_mode_seconds) VALUES (?, ?, ?, ?, ?)"),
      privateRooms: this.db.query<{ room: string }, []>("SELECT room FROM room_settings WHERE private = 1"),
      /** Ownership goes to a room with no owner and no retained entry. */
      claimOwner: this.db.query(
        "INSERT INTO room_roles (room, user_id, role, name) SELECT ?1, ?2, 'owner', ?3 WHERE NOT EXISTS " +
          "(SELECT 1 FROM room_roles WHERE room = ?1 AND role = 'owner') AND NOT EXISTS (SELECT 1 FROM messages WHERE room = ?1) " +
          "ON CONFLICT (room, user_id) DO UPDATE SET role = 'owner', name = excluded.name",
      ),
      demoteOwner: this.db.query("UPDATE room_roles SET role = 'moderator' WHERE room = ? AND role = 'owner'"),
      setRole: this.db.query("INSERT OR REPLACE INTO room_roles (room, user_id, role, name) VALUES (?, ?, ?, ?)"),
      dropRole: this.db.query("DELETE FROM room_roles WHERE room = ? AND user_id = ?"),
      listed: this.db.query<{ one: number }, [string, string]>("SELECT 1 AS one FROM room_list WHERE room = ? AND user_id = ?"),
      addListed: this.db.query("INSERT OR IGNORE INTO room_list (room, user_id) SELECT ?, value FROM json_each(?)"),
      removeListed: this.db.query("DELETE FROM room_list WHERE room = ? AND user_id = ?"),
      entry: this.db.query<MessageRow, [string, number]>(`SELECT ${columns} FROM messages WHERE room = ? AND seq = ?`),
      updateEntry: this.db.query("UPDATE messages SET text = ?, data = ? WHERE room = ? AND seq = ?"),
      /** A deleted message's edits lose their text too. */
      blankEdits: this.db.query("UPDATE messages INDEXED BY messages_edits SET text = '' WHERE room = ? AND type = 'edit' AND text != '' AND data ->> '$.target' = ?"),
      restrictions: this.db.query<RestrictionRow, [string]>("SELECT user_id, kind, until, reason, by_id, by_name FROM restrictions WHERE room = ?"),
      restrict: this.db.query(
        "INSERT OR REPLACE INTO restrictions (room, kind, user_id, until, reason, by_id, by_name) VALUES (?, ?, ?, ?, ?, ?, ?)",
      ),
      lift: this.db.query("DELETE FROM restrictions WHERE room = ? AND kind = ? AND user_id = ?"),
      addressBans: this.db.query<{ ip: string; user_id: string; until: number; reason: string | null; by_id: string; by_name: string }, []>(
        "SELECT ip, user_id, until, reason, by_id, by_name FROM address_bans",
      ),
      banAddress: this.db.query("INSERT OR REPLACE INTO address_bans (ip, user_id, until, reason, by_id, by_name) VALUES (?, ?, ?, ?, ?, ?)"),
      liftAddresses: this.db.query("DELETE FROM address_bans WHERE user_id = ?"),
      sweepRestrictions: this.db.query("DELETE FROM restrictions WHERE until IS NOT NULL AND until <= ?"),
      sweepAddressBans: this.db.query("DELETE FROM address_bans WHERE until <= ?"),
      createBot: this.db.query("INSERT INTO bots (id, name, token_hash, created_at) VALUES (?, ?, ?, ?)"),
      revokeBot: this.db.query("UPDATE bots SET revoked = 1 WHERE id = ?"),
      bots: this.db.query<{ id: string; name: string; created_at: number; revoked: number }, []>("SELECT id, name, created_at, revoked FROM bots ORDER BY created_at, id"),
      botByToken: this.db.query<{ id: string; name: string; created_at: number; revoked: number }, [string]>(
        "SELECT id, name, created_at, revoked FROM bots WHERE token_hash = ? AND revoked = 0",
      ),
      audit: this.db.query("INSERT INTO audit (room, ts, action, entry) VALUES (?, ?, ?, ?)"),
      /** Keeps the newest `retain` entries of a room's log. */
      trimAudit: this.db.query("DELETE FROM audit WHERE room = ?1 AND id <= (SELECT id FROM audit WHERE room = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)"),
      auditPage: this.db.query<{ id: number; entry: string }, [string | null, number, number]>(
        "SELECT id, entry FROM audit WHERE (?1 IS NULL OR room = ?1) AND id < ?2 ORDER BY id DESC LIMIT ?3",
      ),
      sweepSessions: this.db.query("DELETE FROM sessions WHERE expires_at <= ?"),
      /** Rooms holding history whose newest entry is older than ?1, idle longest first. */
      idleRooms: this.db.query<{ room: string }, [number, number]>(
        "SELECT r.room FROM rooms r JOIN messages m ON m.room = r.room AND m.seq = r.last_seq WHERE m.ts < ? ORDER BY m.ts LIMIT ?",
      ),
      dropHistory: this.db.query("DELETE FROM messages WHERE room = ?"),
      recent: this.db.query<{ room: string; seq: number; ts: number }, [number]>(
        "SELECT m.room, m.seq, m.ts FROM rooms r JOIN messages m ON m.room = r.room AND m.seq = r.last_seq ORDER BY m.ts DESC LIMIT ?",
      ),
    };
    this.loadRecent();
    for (const { room } of this.q.privateRooms.all()) this.privateSet.add(room);
    for (const r of this.q.restrictions.all(SERVER)) if (r.kind === "ban") this.userBans.set(r.user_id, restrictionOf(r));
    for (const r of this.q.addressBans.all()) this.addressBans.set(r.ip, { ...restrictionOf(r), userId: r.user_id });
    this.writeTx = this.db.transaction((ops: readonly WriteOp[]) => {
      this.held = this.heldRooms ?? this.q.heldRooms.get()!.n;
      this.outbox?.begin();
      const results = ops.map((op) => {
        switch (op.op) {
          case "append":
            return this.appendRows(op.batch);
          case "session": {
            const s = op.session;
            return this.q.saveSession.run(
              op.tokenHash, s.userId, s.expiresAt, s.kind, s.name, s.keys[0] ?? null, s.keys[1] ?? null, s.admin ? 1 : 0,
              s.rooms.length ? JSON.stringify(s.rooms) : null, op.refresh ? 1 : 0,
            ).changes > 0;
          }
          case "revokeSession":
            return void this.q.revokeSession.run(op.tokenHash);
          case "sweepSessions":
            this.invites.sweep(op.now);
            this.q.sweepRestrictions.run(op.now);
            this.q.sweepAddressBans.run(op.now);
            return this.q.sweepSessions.run(op.now).changes;
          case "claimOwner":
            return this.q.claimOwner.run(op.room, op.user.id, op.user.name).changes > 0;
          case "setRole":
            if (op.role === "owner") this.q.demoteOwner.run(op.room);
            if (op.role === "member") return void this.q.dropRole.run(op.room, op.user.id);
            return void this.q.setRole.run(op.room, op.user.id, op.role, op.user.name);
          case "addListed":
            return void this.q.addListed.run(op.room, JSON.stringify(op.userIds));
          case "removeListed":
            return void this.q.removeListed.run(op.room, op.userId);
          case "createInvite":
            return this.invites.create(op.codeHash, op.room, op.expiresAt, op.maxUses, op.now, op.max);
          case "useInvite":
            return this.invites.use(op.codeHash, op.room, op.now);
          case "restrict": {
            const r = op.restriction;
            if (!r) {
              // A server-wide unban lifts the bans on the user's addresses too (§11.3).
              if (op.room === SERVER) this.q.liftAddresses.run(op.userId);
              return void this.q.lift.run(op.room, op.kind, op.userId);
            }
            return void this.q.restrict.run(op.room, op.kind, op.userId, r.until, r.reason ?? null, r.by.id, r.by.name);
          }
          case "banAddress": {
            const r = op.restriction;
            return void this.q.banAddress.run(op.ip, op.userId, r.until!, r.reason ?? null, r.by.id, r.by.name);
          }
          case "createBot":
            return void this.q.createBot.run(op.bot.id, op.bot.name, op.tokenHash, op.bot.createdAt);
          case "revokeBot":
            return this.q.revokeBot.run(op.id).changes > 0;
          case "audit": {
            const room = op.entry.room ?? SERVER;
            this.q.audit.run(room, op.entry.ts, op.entry.action, JSON.stringify(op.entry));
            return void this.q.trimAudit.run(room, this.bounds.retain);
          }
          case "sweepHistory":
            return this.trimAged(op.now);
          case "reclaim":
            return this.reclaimRows(op.before, op.occupied);
          case "hooks":
          case "hooksDone":
          case "hookRetry":
            return void this.outbox!.apply(op);
        }
      });
      this.outbox?.end();
      return results;
    });
  }

  /**
   * Runs writes and resolves with their results, in order, once they are on disk; or rejects:
   * nothing of them was stored, or (the disk failed to sync) it is not known, and the engine
   * takes no more writes. With fewer than WAL_SYNCS_IN_FLIGHT fsyncs under way they commit at
   * once and start their own; otherwise they wait for one to end and commit in one transaction
   * with every write that came meanwhile (messages and sessions alike), then share one fsync:
   * group commit.
   */
  write(ops: readonly WriteOp[]): Promise<unknown[]> {
    if (this.broken) return Promise.reject(this.broken);
    return new Promise((resolve, reject) => {
      this.waiting.push({ ops, resolve, reject });
      this.commitWaiting();
    });
  }

  private commitWaiting(): void {
    while (this.waiting.length && this.syncing.size < WAL_SYNCS_IN_FLIGHT && !this.broken) {
      const group = this.waiting;
      this.waiting = [];
      let results: unknown[];
      let hooks = 0;
      try {
        results = this.writeTx(group.flatMap((w) => w.ops));
        this.heldRooms = this.held;
        this.full = null;
        hooks = this.outbox?.commit() ?? 0;
      } catch (error) {
        if ((error as { code?: string }).code === "SQLITE_FULL") this.full = error as Error;
        for (const w of group) w.reject(error);
        continue;
      }
      if (!this.walPath) {
        resolveGroup(group, results);
        this.outbox?.synced(hooks);
        continue;
      }
      const fd = this.idleFds.pop() ?? openSync(this.walPath, "r");
      const entry = { group, results, hooks, synced: false };
      this.unsynced.push(entry);
      // A sync flushes the file, whoever wrote it: SQLite's own handle needs no sharing. It
      // covers every commit before it started, but a group resolves only once its own sync and
      // every earlier one have returned: published in commit order, and never past a failure.
      const syncing = this.sync(fd).finally(() => {
        this.idleFds.push(fd);
        this.syncing.delete(syncing);
      });
      this.syncing.add(syncing);
      syncing.then(
        () => {
          entry.synced = true;
          while (this.unsynced[0]?.synced) {
            const done = this.unsynced.shift()!;
            resolveGroup(done.group, done.results);
            this.outbox?.synced(done.hooks);
          }
          this.commitWaiting();
        },
        (error) => this.stop(new Error(`the disk failed to sync the database: ${String(error)}`)),
      );
    }
  }

  private stop(broken: Error): void {
    if (this.broken) return;
    this.broken = broken;
    for (const w of [...this.unsynced.flatMap((u) => u.group), ...this.waiting]) w.reject(broken);
    this.unsynced = [];
    this.waiting = [];
  }

  private appendRows(batch: readonly NewEntry[]): Appended[] {
    const results: Appended[] = [];
    /** Per room written: its seq so far, whether it holds history, its oldest retained seq. */
    const rooms = new Map<string, { seq: number; held: boolean; oldest: number }>();
    const inBatch = new Map<string, StoredFrame>();
    let held = this.held;
    const cutoff = ageCutoff(batch, this.bounds) ?? -Infinity;
    // One statement reads every room of the batch, one moves their seqs: not one each per room.
    for (const row of this.q.roomRows.all(JSON.stringify([...new Set(batch.map((m) => m.room))]))) {
      let oldest = row.oldest ?? 0;
      if (row.oldestTs !== null && row.oldestTs < cutoff) {
        this.q.trimAge.run(row.room, cutoff);
        oldest = this.q.oldest.get(row.room)?.seq ?? 0;
        if (!oldest) held--;
      }
      rooms.set(row.room, { seq: row.last ?? 0, held: oldest > 0, oldest });
    }
    for (const m of batch) {
      const room = rooms.get(m.room)!;
      // Rooms and user ids hold no newline, so the id, last, cannot blur the key.
      const key = `${m.room}\n${m.user.id}\n${m.id}`;
      const earlier = inBatch.get(key);
      if (earlier) {
        results.push({ message: earlier, duplicate: true });
        continue;
      }
      if (!room.held && held >= this.bounds.maxRooms) {
        results.push({ refused: "room_limit" });
        continue;
      }
      if (m.type === "edit" || m.type === "delete") {
        // The target changes in the same commit as the event that says so, or neither happens.
        const row = this.q.entry.get(m.room, m.target);
        const now = row && changed(rowToFrame(row), m);
        if (!now) {
          results.push({ refused: "not_found" });
          continue;
        }
        this.q.updateEntry.run(now.type === "message" ? now.text : "", dataOf(now), m.room, m.target);
        if (m.type === "delete") {
          this.q.blankEdits.run(m.room, m.target);
          this.outbox?.blank(m.room, m.target);
        }
      }
      const seq = room.seq + 1;
      // A settings change writes its fields over what the room holds now: one made at once keeps its own.
      const frame = storedFrame(m, seq, m.type === "settings" ? settingsOf(this.q.settings.get(m.room)) : undefined);
      if (this.q.insert.run(...rowOf(frame, m.id)).changes === 0) {
        const original = rowToFrame(this.q.dedup.get(m.room, m.user.id, m.id)!);
        inBatch.set(key, original);
        results.push({ message: original, duplicate: true });
        continue;
      }
      if (!room.held) {
        room.held = true;
        room.oldest = seq;
        held++;
      }
      room.seq = seq;
      if (frame.type === "settings") this.q.saveSettings.run(m.room, frame.topic, frame.private ? 1 : 0, frame.readOnly ? 1 : 0, frame.slowModeSeconds);
      inBatch.set(key, frame);
      this.outbox?.stored(m, frame);
      results.push({ message: frame, duplicate: false });
    }
    const seqs: [string, number][] = [];
    for (const [name, room] of rooms) {
      if (!room.held) continue;
      seqs.push([name, room.seq]);
      // Only a room that is full has something to trim: usually one row, at its oldest end.
      if (room.oldest <= room.seq - this.bounds.retain) this.q.trim.run(name, room.seq - this.bounds.retain);
    }
    if (seqs.length) this.q.setSeqs.run(JSON.stringify(seqs));
    this.held = held;
    return results;
  }

  /** The idle room reclaimIdle frees, its messages gone (its seq stays in `rooms`); null if none. */
  private reclaimRows(before: number, occupied: (room: string) => boolean): string | null {
    for (const { room } of this.q.idleRooms.all(before, RECLAIM_CANDIDATES)) {
      if (occupied(room)) continue;
      this.q.dropHistory.run(room);
      this.held--;
      return room;
    }
    return null;
  }

  private trimAged(now: number): number {
    if (!this.bounds.maxAgeMs) return 0;
    let trimmed = 0;
    for (const { room } of this.q.agedRooms.all(now - this.bounds.maxAgeMs)) {
      trimmed += this.q.trimAge.run(room, now - this.bounds.maxAgeMs).changes;
    }
    if (trimmed) this.held = this.q.heldRooms.get()!.n;
    return trimmed;
  }

  async append(batch: readonly NewEntry[]) {
    const results = (await this.write([{ op: "append", batch }]))[0] as Appended[];
    // Listed once durable, like everything else that is told.
    for (const r of results) {
      if (!("message" in r) || r.duplicate) continue;
      this.noteRecent(r.message);
      if (r.message.type === "settings") this.privateSet[r.message.private ? "add" : "delete"](r.message.room);
    }
    return results;
  }

  /** Moves the room to the newest end of the directory's index, which keeps RECENT_ROOMS_KEPT rooms. */
  private noteRecent(m: StoredFrame): void {
    this.recent.delete(m.room);
    this.recent.set(m.room, { room: m.room, seq: m.seq, ts: m.ts });
    if (this.recent.size > RECENT_ROOMS_KEPT) this.recent.delete(this.recent.keys().next().value!);
  }

  /**
   * Resolves once every commit made so far is on disk. A read sees a commit as soon as it is made,
   * before its fsync: one that may tell of it waits for this, as a message is published only
   * after its own (a crash must not take back what anyone saw, nor give its seq to another).
   */
  private onDisk(): Promise<void> {
    const last = this.unsynced.at(-1);
    if (!last) return Promise.resolve();
    return new Promise((resolve, reject) => last.group.push({ ops: [], resolve: () => resolve(), reject }));
  }

  async roomInfo(room: string) {
    const row = this.q.roomInfo.get(room)!;
    await this.onDisk();
    return { seq: row.info_seq ?? 0, oldestSeq: row.info_oldest ?? 0, epoch: this.epoch };
  }

  async original(room: string, userId: string, id: string): Promise<StoredFrame | null> {
    const row = this.q.dedup.get(room, userId, id);
    await this.onDisk();
    return row ? rowToFrame(row) : null;
  }

  /** A page's rows, each with its room's seq and oldest (InfoRow). */
  private pageRowsOf(room: string, query: PageQuery): InfoRow[] {
    const before = query.before ?? Number.MAX_SAFE_INTEGER;
    return query.after === undefined
      ? this.q.newest.all(room, before, pageRows(query))
      : this.q.after.all(room, query.after, before, pageRows(query));
  }

  async roomPage(room: string, query: PageQuery) {
    const rows = this.pageRowsOf(room, query);
    const first = rows[0] ?? this.q.roomInfo.get(room)!;
    const info = { seq: first.info_seq ?? 0, oldestSeq: first.info_oldest ?? 0, epoch: this.epoch };
    // A watched room's join reads below the seq delivered, which is on disk: only one unbounded waits.
    if (query.before === undefined) await this.onDisk();
    return { info, page: toPage(rows.map(rowToFrame), query) };
  }

  async page(room: string, query: PageQuery): Promise<Page> {
    const rows = this.pageRowsOf(room, query);
    await this.onDisk();
    return toPage(rows.map(rowToFrame), query);
  }

  async reclaimIdle(before: number, occupied: (room: string) => boolean) {
    const room = (await this.write([{ op: "reclaim", before, occupied }]))[0] as string | null;
    if (room !== null) this.loadRecent();
    return room;
  }

  async sweepHistory(now: number) {
    const trimmed = (await this.write([{ op: "sweepHistory", now }]))[0] as number;
    // A room may have lost its last message: the index is read again, so it lists no emptied room.
    if (trimmed) this.loadRecent();
    return trimmed;
  }

  /** Reads the directory's index from the file: rooms by their latest retained message, newest last. */
  private loadRecent(): void {
    this.recent.clear();
    for (const r of this.q.recent.all(RECENT_ROOMS_KEPT).reverse()) this.recent.set(r.room, r);
  }

  /** From memory: this process is the file's one writer, so the index it keeps is the file's. */
  async recentRooms(limit: number): Promise<RecentRoom[]> {
    const newest: RecentRoom[] = [];
    for (const entry of this.recent.values()) newest.push(entry);
    return newest.reverse().slice(0, limit);
  }

  async findSession(tokenHash: string, now: number): Promise<SessionRecord | null> {
    const row = this.q.findSession.get(tokenHash, now);
    if (!row) return null;
    return {
      userId: row.user_id,
      expiresAt: row.expires_at,
      kind: row.kind,
      name: row.name ?? "",
      keys: [row.key1, row.key2].filter((k) => k !== null),
      admin: row.admin === 1,
      rooms: row.rooms ? (JSON.parse(row.rooms) as string[]) : [],
    };
  }

  async saveSession(tokenHash: string, session: SessionRecord, refresh = false) {
    return (await this.write([{ op: "session", tokenHash, session, refresh }]))[0] as boolean;
  }

  async revokeSession(tokenHash: string) {
    await this.write([{ op: "revokeSession", tokenHash }]);
  }

  async nameReservedBy(keys: readonly string[], now: number): Promise<string | null> {
    if (!keys.length) return null;
    return this.q.reservedBy.get(keys[0]!, keys[1] ?? keys[0]!, now)?.user_id ?? null;
  }

  async roomAuth(room: string): Promise<RoomAuth> {
    const roles = new Map<string, RoleHolder>(this.q.roles.all(room).map((r) => [r.user_id, { role: r.role, name: r.name }]));
    const settings = settingsOf(this.q.settings.get(room));
    const bans = new Map<string, Restriction>();
    const mutes = new Map<string, Restriction>();
    for (const r of this.q.restrictions.all(room)) (r.kind === "ban" ? bans : mutes).set(r.user_id, restrictionOf(r));
    return { roles, settings, bans, mutes };
  }

  async entry(room: string, seq: number): Promise<StoredFrame | null> {
    const row = this.q.entry.get(room, seq);
    return row ? rowToFrame(row) : null;
  }

  async restrict(kind: "ban" | "mute", room: string, userId: string, restriction: Restriction | null, hooks?: readonly HookEvent[]) {
    await this.write(told([{ op: "restrict", kind, room, userId, restriction }], hooks));
  }

  async banServer(userId: string, restriction: Restriction | null, ip?: string, hooks?: readonly HookEvent[]) {
    const ops: WriteOp[] = [{ op: "restrict", kind: "ban", room: SERVER, userId, restriction }];
    if (restriction && ip !== undefined) ops.push({ op: "banAddress", ip, userId, restriction });
    await this.write(told(ops, hooks));
    if (!restriction) {
      this.userBans.delete(userId);
      for (const [address, ban] of this.addressBans) if (ban.userId === userId) this.addressBans.delete(address);
      return;
    }
    this.userBans.set(userId, restriction);
    if (ip !== undefined) this.addressBans.set(ip, { ...restriction, userId });
  }

  /** From memory: server bans are few, and this process is the file's one writer. */
  async serverBan(userId: string | null, ip: string, now: number): Promise<Restriction | null> {
    const byUser = userId === null ? undefined : this.userBans.get(userId);
    if (holds(byUser, now)) return byUser;
    const byAddress = this.addressBans.get(ip);
    return holds(byAddress, now) ? byAddress : null;
  }

  async createBot(bot: BotRecord, tokenHash: string) {
    await this.write([{ op: "createBot", bot, tokenHash }]);
  }

  async bots(): Promise<BotRecord[]> {
    return this.q.bots.all().map(botOf);
  }

  async botByToken(tokenHash: string): Promise<BotRecord | null> {
    const row = this.q.botByToken.get(tokenHash);
    return row ? botOf(row) : null;
  }

  async revokeBot(id: string) {
    return (await this.write([{ op: "revokeBot", id }]))[0] as boolean;
  }

  async audit(entry: AuditEntry) {
    await this.write([{ op: "audit", entry }]);
  }

  async auditPage(room: string | null, before: number | undefined, limit: number) {
    const rows = this.q.auditPage.all(room, before ?? Number.MAX_SAFE_INTEGER, limit + 1);
    const entries = rows.slice(0, limit).map((r) => ({ ...(JSON.parse(r.entry) as AuditEntry), id: r.id }));
    return { entries, complete: rows.length <= limit };
  }

  async claimOwner(room: string, user: UserRef) {
    return (await this.write([{ op: "claimOwner", room, user }]))[0] as boolean;
  }

  async setRole(room: string, user: UserRef, role: Role, hooks?: readonly HookEvent[]) {
    await this.write(told([{ op: "setRole", room, user, role }], hooks));
  }

  async isListed(room: string, userId: string) {
    return this.q.listed.get(room, userId) !== null;
  }

  async addListed(room: string, userIds: readonly string[]) {
    if (userIds.length) await this.write([{ op: "addListed", room, userIds }]);
  }

  async removeListed(room: string, userId: string, hooks?: readonly HookEvent[]) {
    await this.write(told([{ op: "removeListed", room, userId }], hooks));
  }

  async createInvite(codeHash: string, room: string, expiresAt: number, maxUses: number | null, now: number, max: number) {
    return (await this.write([{ op: "createInvite", codeHash, room, expiresAt, maxUses, now, max }]))[0] as boolean;
  }

  async useInvite(codeHash: string, room: string, now: number) {
    return (await this.write([{ op: "useInvite", codeHash, room, now }]))[0] as boolean;
  }

  /** From memory: private rooms are few, and this process is the file's one writer. */
  async privateRooms() {
    return new Set(this.privateSet);
  }

  async sweepSessions(now: number) {
    return (await this.write([{ op: "sweepSessions", now }]))[0] as number;
  }

  failure(): StorageFailure | null {
    if (this.broken) return { storage: "failed", error: this.broken.message };
    return this.full ? { storage: "full", error: this.full.message } : null;
  }

  openOutbox(bounds: OutboxBounds): Outbox {
    return (this.outbox ??= new SqliteOutbox(this.db, bounds, (ops) => this.write(ops)));
  }

  async close() {
    // What was committed reaches the disk, and its writers hear so, before the file closes.
    while (this.unsynced.length && !this.broken) await this.write([]);
    await stopCheckpointer(this.checkpointer);
    this.checkpointer = null;
    this.db.close();
    // After a failure the other sync may still run on its descriptor.
    await Promise.allSettled(this.syncing);
    for (const fd of this.idleFds.splice(0)) closeSync(fd);
  }
}
