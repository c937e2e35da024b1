/**
 * The SQLite file's schema: the tables of v1, and the migrations that bring an older file to the
 * current version (PRAGMA user_version), applied in order when the store opens it.
 */

export const SCHEMA = `
CREATE TABLE IF NOT EXISTS rooms (
  room TEXT PRIMARY KEY,
  last_seq INTEGER NOT NULL           -- never decreases, so a seq is never reused
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS messages (
  room TEXT NOT NULL,
  seq INTEGER NOT NULL,
  user_id TEXT NOT NULL,
  user_name TEXT NOT NULL,
  client_id TEXT NOT NULL,
  text TEXT NOT NULL,
  ts INTEGER NOT NULL,
  PRIMARY KEY (room, seq)
) WITHOUT ROWID;
-- The dedup key lives exactly as long as the message it points at.
CREATE UNIQUE INDEX IF NOT EXISTS messages_dedup ON messages (room, user_id, client_id);
-- What the file is: its epoch, the identity of every room's sequence in it (a new file, a new epoch).
CREATE TABLE IF NOT EXISTS meta (
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sessions (
  token_hash TEXT PRIMARY KEY,        -- sha256 of the token; the token itself is never stored
  user_id TEXT NOT NULL,
  expires_at INTEGER NOT NULL
) WITHOUT ROWID;
`;

/**
 * Changes to the schema, by the user_version they bring the file to. A new file runs them all;
 * an older one the ones it lacks, in one transaction each.
 */
export const MIGRATIONS: [version: number, sql: string][] = [
  [1, ""],
  [
    2,
    `
-- v1.2: stored events share the messages' sequence (type), with their fields as JSON (data).
ALTER TABLE messages ADD COLUMN type TEXT NOT NULL DEFAULT 'message';
ALTER TABLE messages ADD COLUMN data TEXT;
-- v1.2: what a session restores, and the guest name it reserves by its look-alike keys.
ALTER TABLE sessions ADD COLUMN kind TEXT NOT NULL DEFAULT 'guest';
ALTER TABLE sessions ADD COLUMN name TEXT;
ALTER TABLE sessions ADD COLUMN key1 TEXT;
ALTER TABLE sessions ADD COLUMN key2 TEXT;
ALTER TABLE sessions ADD COLUMN admin INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN rooms TEXT;
CREATE INDEX sessions_key1 ON sessions (key1) WHERE key1 IS NOT NULL;
CREATE INDEX sessions_key2 ON sessions (key2) WHERE key2 IS NOT NULL;
CREATE TABLE room_roles (
  room TEXT NOT NULL,
  user_id TEXT NOT NULL,
  role TEXT NOT NULL,                 -- owner (at most one per room) or moderator
  name TEXT NOT NULL,                 -- the holder's name when it was given
  PRIMARY KEY (room, user_id)
) WITHOUT ROWID;
CREATE UNIQUE INDEX room_owner ON room_roles (room) WHERE role = 'owner';
CREATE TABLE room_settings (
  room TEXT PRIMARY KEY,
  topic TEXT NOT NULL,
  private INTEGER NOT NULL,
  read_only INTEGER NOT NULL,
  slow_mode_seconds INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE room_list (
  room TEXT NOT NULL,
  user_id TEXT NOT NULL,
  PRIMARY KEY (room, user_id)
) WITHOUT ROWID;
CREATE TABLE invites (
  code_hash TEXT PRIMARY KEY,         -- sha256 of the code; the code itself is never stored
  room TEXT NOT NULL,
  expires_at INTEGER NOT NULL,
  max_uses INTEGER,                   -- null: any number
  uses INTEGER NOT NULL
) WITHOUT ROWID;
`,
  ],
  [
    3,
    `
-- v1.2 (§11.4): bans and mutes per room ('' for a server-wide ban of a user), until null = until lifted.
CREATE TABLE restrictions (
  room TEXT NOT NULL,
  kind TEXT NOT NULL,                 -- ban or mute
  user_id TEXT NOT NULL,
  until INTEGER,
  reason TEXT,
  by_id TEXT NOT NULL,
  by_name TEXT NOT NULL,
  PRIMARY KEY (room, kind, user_id)
) WITHOUT ROWID;
CREATE TABLE address_bans (
  ip TEXT PRIMARY KEY,
  user_id TEXT NOT NULL,              -- whose ban made it: unbanning the user lifts it
  until INTEGER NOT NULL,
  reason TEXT,
  by_id TEXT NOT NULL,
  by_name TEXT NOT NULL
) WITHOUT ROWID;
-- The audit log: moderation actions and settings changes, HISTORY_RETAIN per room ('' for the server).
CREATE TABLE audit (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  room TEXT NOT NULL,
  ts INTEGER NOT NULL,
  action TEXT NOT NULL,
  entry TEXT NOT NULL                 -- the entry as JSON
);
CREATE INDEX audit_room ON audit (room, id);
`,
  ],
  [
    4,
    `
-- v1.2 (§11.6): bots, signed in by a token whose SHA-256 alone is kept.
CREATE TABLE bots (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  token_hash TEXT NOT NULL UNIQUE,
  created_at INTEGER NOT NULL,
  revoked INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
`,
  ],
];
