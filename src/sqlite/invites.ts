/**
 * Invites in the SQLite file (§11.2): a code's hash stored for its room, spent one use at a time,
 * swept once expired or used up. A new code is stored only while its room holds fewer than the
 * bound of live ones (unexpired, not used up), counted in the transaction that stores it, so two
 * creations at the bound cannot both pass.
 */
import type { Database, Statement } from "bun:sqlite";

export class SqliteInvites {
  private readonly q: {
    live: Statement<{ n: number }, [string, number]>;
    create: Statement;
    use: Statement;
    sweep: Statement;
  };

  constructor(db: Database) {
    this.q = {
      // By the invites_room index (schema v8): the room's unexpired codes, not the whole table.
      live: db.query("SELECT count(*) AS n FROM invites WHERE room = ? AND expires_at > ? AND (max_uses IS NULL OR uses < max_uses)"),
      create: db.query("INSERT INTO invites (code_hash, room, expires_at, max_uses, uses) VALUES (?, ?, ?, ?, 0)"),
      use: db.query("UPDATE invites SET uses = uses + 1 WHERE code_hash = ? AND room = ? AND expires_at > ? AND (max_uses IS NULL OR uses < max_uses)"),
      sweep: db.query("DELETE FROM invites WHERE expires_at <= ? OR uses >= max_uses"),
    };
  }

  /** Stores a code unless `room` holds `max` live ones at `now`; whether it did. Run inside the write transaction. */
  create(codeHash: string, room: string, expiresAt: number, maxUses: number | null, now: number, max: number): boolean {
    if (this.q.live.get(room, now)!.n >= max) return false;
    this.q.create.run(codeHash, room, expiresAt, maxUses);
    return true;
  }

  /** Spends one use of a code for `room`, unexpired at `now` and not used up; whether it did. */
  use(codeHash: string, room: string, now: number): boolean {
    return this.q.use.run(codeHash, room, now).changes > 0;
  }

  /** Drops the codes expired at `now` or used up. */
  sweep(now: number): void {
    this.q.sweep.run(now);
  }
}
