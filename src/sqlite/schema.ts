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
  [
    5,
    `
-- v1.2 (§11.7): the webhook outbox. Events wait here, in the order they were queued, until
-- delivered or dropped; a stored entry's event is written in the transaction that stores it.
CREATE TABLE hooks (
  id INTEGER PRIMARY KEY,             -- queue order, given by the store (one past the newest), never reused while it runs
  hook_id TEXT NOT NULL,              -- webhook-id
  type TEXT NOT NULL,
  ts INTEGER NOT NULL,                -- when it happened (ms)
  data TEXT NOT NULL,                 -- the frame, JSON (a deletion blanks the text of its message's)
  attempts INTEGER NOT NULL DEFAULT 0,-- failed so far
  due INTEGER NOT NULL DEFAULT 0      -- not tried again before this (ms), once failed
);
-- Only events that failed are looked up by when they are due: a new event costs no index.
CREATE INDEX hooks_retry ON hooks (due) WHERE attempts > 0;
`,
  ],
  [
    6,
    `
-- §11.4: a message that leaves history (trimmed by HISTORY_RETAIN or age, or its room's history
-- reclaimed) takes the text of its edit events with it, as a deletion does: an edit kept after
-- its message must not keep text that nobody can delete any more. The edits still holding text,
-- by target, so that finding them costs a lookup; only an edited message runs the trigger.
CREATE INDEX messages_edits ON messages (room, data ->> '$.target') WHERE type = 'edit' AND text != '';
CREATE TRIGGER messages_gone AFTER DELETE ON messages WHEN old.type = 'message' AND old.data ->> '$.edited' IS NOT NULL
BEGIN
  -- Without statistics the planner would walk the room's rows instead (and a trigger's UPDATE takes no INDEXED BY).
  UPDATE messages SET text = '' WHERE room = old.room AND seq IN
    (SELECT seq FROM messages INDEXED BY messages_edits WHERE room = old.room AND type = 'edit' AND text != '' AND data ->> '$.target' = old.seq);
END;
-- Edits whose message was trimmed before this version lose their text now.
UPDATE messages SET text = '' WHERE type = 'edit' AND text != ''
  AND NOT EXISTS (SELECT 1 FROM messages t WHERE t.room = messages.room AND t.seq = messages.data ->> '$.target');
`,
  ],
  [
    7,
    `
-- §11.4: a deletion blanks the queued events that carry its message's text (message.created of
-- it, message.edited of its edits). They are found by the message they carry text of (its room and seq),
-- not by reading every queued event's JSON: with the endpoint down, the queue holds up to
-- WEBHOOK_MAX_PENDING events, and each deletion would parse them all inside its commit.
ALTER TABLE hooks ADD COLUMN text_of TEXT;
UPDATE hooks SET text_of = (data ->> '$.room') || char(10) || (CASE type WHEN 'message.created' THEN data ->> '$.seq' ELSE data ->> '$.target' END)
  WHERE type IN ('message.created', 'message.edited');
CREATE INDEX hooks_text_of ON hooks (text_of) WHERE text_of IS NOT NULL;
`,
  ],
  [
    8,
    `
-- §11.2: a new invite is stored only while its room holds fewer than MAX_LIVE_INVITES_PER_ROOM
-- live ones, counted in its commit: by the room's unexpired codes, not by reading every invite.
CREATE INDEX invites_room ON invites (room, expires_at);
`,
  ],
];
