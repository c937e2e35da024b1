/**
 * How the SQLite engine writes a room's entries as rows of `messages` and reads them back: the
 * columns every entry has, and `data`, JSON of the rest (the user's kind, a reply, an edit's
 * target, the settings), null for a guest's plain message.
 */
import { DEFAULT_SETTINGS, type RoomSettings, type StoredFrame, type UserKind, type UserRef } from "../protocol/wire.ts";

export interface MessageRow {
  room: string;
  seq: number;
  type: string;
  user_id: string;
  user_name: string;
  client_id: string;
  text: string;
  ts: number;
  data: string | null;
}

/** A row of `room_settings`. */
export interface SettingsRow {
  topic: string;
  private: number;
  read_only: number;
  slow_mode_seconds: number;
}

/** A room's settings as its row holds them; the defaults for a room nobody set up (no row). */
export function settingsOf(row: SettingsRow | null | undefined): RoomSettings {
  if (!row) return { ...DEFAULT_SETTINGS };
  return { topic: row.topic, private: row.private === 1, readOnly: row.read_only === 1, slowModeSeconds: row.slow_mode_seconds };
}

/** What `data` may hold. */
interface RowData extends Partial<RoomSettings> {
  kind?: UserKind;
  replyTo?: number;
  edited?: number;
  deleted?: number;
  target?: number;
}

/** The columns of `messages`, in the order the statements take them. */
export const COLUMNS = "room, seq, type, user_id, user_name, client_id, text, ts, data";

export function rowToFrame(r: MessageRow): StoredFrame {
  const data = r.data === null ? null : (JSON.parse(r.data) as RowData);
  const user: UserRef = data?.kind ? { id: r.user_id, name: r.user_name, kind: data.kind } : { id: r.user_id, name: r.user_name };
  const base = { room: r.room, seq: r.seq, ts: r.ts };
  switch (r.type) {
    case "settings": {
      const { topic = "", private: isPrivate = false, readOnly = false, slowModeSeconds = 0 } = data!;
      return { type: "settings", ...base, topic, private: isPrivate, readOnly, slowModeSeconds, by: user };
    }
    case "edit":
      return { type: "edit", room: r.room, seq: r.seq, target: data!.target!, text: r.text, user, ts: r.ts, edited: data!.edited ?? r.ts };
    case "delete":
      return { type: "delete", room: r.room, seq: r.seq, target: data!.target!, by: user, ts: r.ts };
    default: {
      const m: StoredFrame = { type: "message", room: r.room, seq: r.seq, id: r.client_id, user, text: r.text, ts: r.ts };
      if (data?.replyTo !== undefined) m.replyTo = data.replyTo;
      if (data?.edited !== undefined) m.edited = data.edited;
      if (data?.deleted !== undefined) m.deleted = data.deleted;
      return m;
    }
  }
}

/** A stored frame's `data` column: what its columns do not hold; null when nothing. */
export function dataOf(f: StoredFrame): string | null {
  // Most rows are a guest's plain message: nothing to write.
  if (f.type === "message" && !f.user.kind && f.replyTo === undefined && f.edited === undefined && f.deleted === undefined) return null;
  const user = f.type === "settings" || f.type === "delete" ? f.by : f.user;
  const data: RowData = user.kind ? { kind: user.kind } : {};
  switch (f.type) {
    case "settings":
      Object.assign(data, { topic: f.topic, private: f.private, readOnly: f.readOnly, slowModeSeconds: f.slowModeSeconds });
      break;
    case "edit":
      Object.assign(data, { target: f.target, edited: f.edited });
      break;
    case "delete":
      data.target = f.target;
      break;
    default:
      if (f.replyTo !== undefined) data.replyTo = f.replyTo;
      if (f.edited !== undefined) data.edited = f.edited;
      if (f.deleted !== undefined) data.deleted = f.deleted;
  }
  return Object.keys(data).length ? JSON.stringify(data) : null;
}

/** The row values of a stored frame, in COLUMNS order; `id` is the entry's client id. */
export function rowOf(f: StoredFrame, id: string): [string, number, string, string, string, string, string, number, string | null] {
  const user = f.type === "settings" || f.type === "delete" ? f.by : f.user;
  const text = f.type === "message" || f.type === "edit" ? f.text : "";
  return [f.room, f.seq, f.type, user.id, user.name, id, text, f.ts, dataOf(f)];
}
