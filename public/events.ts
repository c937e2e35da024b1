/**
 * What a room's stored events and live moderation do to what the page shows, pure: the messages
 * of a room as they are now (an `edit` replaces a message's text and marks it edited, a `delete`
 * empties it), and the words of the system lines (a settings change, a kick, a mute). The DOM is
 * rooms.ts's and messages.ts's; times come in formatted, so the words are testable.
 */

import {
  DEFAULT_SETTINGS,
  type DeleteEvent,
  type EditEvent,
  type MessageFrame,
  type ModerationFrame,
  type RoomSettings,
  type SettingsEvent,
} from "../src/protocol/wire.ts";

/** A reply's quote shows at most this many characters of the original. */
const QUOTE_CHARS = 80;

export type Change = EditEvent | DeleteEvent;

/**
 * `m` after `e`. A deletion wins over everything; an edit applies unless the message is deleted.
 * Which of two edits is the later is the log's to say (by seq, not by `edited`).
 *   applyChange({…text: "hi"}, {type: "edit", text: "hello", edited: 5}) // => {…text: "hello", edited: 5}
 */
export function applyChange(m: MessageFrame, e: Change): MessageFrame {
  if (e.type === "delete") return m.deleted ? m : { ...m, text: "", deleted: e.ts };
  if (m.deleted) return m;
  return { ...m, text: e.text, edited: e.edited };
}

export type MessageLog = ReturnType<typeof createMessageLog>;

/**
 * A room's messages by seq, as they are now. A change to a message not here yet (older than what
 * was loaded, or on a page still in flight) is kept and applied when the message arrives. Edits
 * are ordered by their seq, the order storage applies them in: their `edited` times come from
 * server clocks, which can step back between two edits.
 */
export function createMessageLog() {
  const messages = new Map<number, MessageFrame>();
  /** Changes to messages not (yet) here, by target: applied on arrival, in seq order. */
  const early = new Map<number, Change[]>();
  /** The seq of the edit event each message shows, once one applied: an edit with a lower seq is older and changes nothing. */
  const shownEdit = new Map<number, number>();

  /**
   * `m` after `e`, unless `e` is an edit older than the one `m` shows, or one whose text storage
   * dropped (its message was deleted or trimmed since): it has nothing to show.
   */
  function apply(m: MessageFrame, e: Change): MessageFrame {
    if (e.type === "edit") {
      if (m.deleted || e.text === "" || (shownEdit.get(e.target) ?? 0) > e.seq) return m;
      shownEdit.set(e.target, e.seq);
    }
    return applyChange(m, e);
  }

  return {
    get(seq: number): MessageFrame | undefined {
      return messages.get(seq);
    },
    /** A message arrived: what to show of it, with the changes that came before it. */
    add(m: MessageFrame): MessageFrame {
      let now = m;
      for (const e of (early.get(m.seq) ?? []).sort((a, b) => a.seq - b.seq)) now = apply(now, e);
      early.delete(m.seq);
      messages.set(m.seq, now);
      return now;
    },
    /** An edit or a deletion: the target as it is now, or null when it is not here (kept for later). */
    change(e: Change): MessageFrame | null {
      const m = messages.get(e.target);
      if (!m) {
        early.set(e.target, [...(early.get(e.target) ?? []), e]);
        return null;
      }
      const now = apply(m, e);
      messages.set(e.target, now);
      return now;
    },
    /** The room starts over (a reset). */
    clear(): void {
      messages.clear();
      early.clear();
      shownEdit.clear();
    },
  };
}

/** The settings an event leaves the room with. */
export function settingsOf(e: SettingsEvent): RoomSettings {
  return { topic: e.topic, private: e.private, readOnly: e.readOnly, slowModeSeconds: e.slowModeSeconds };
}

/** "30 s", "5 min", "1 h", "1 day": a slow mode's or a mute's length. */
export function duration(seconds: number): string {
  if (seconds % 86_400 === 0) return seconds === 86_400 ? "1 day" : `${seconds / 86_400} days`;
  if (seconds % 3600 === 0) return `${seconds / 3600} h`;
  if (seconds % 60 === 0) return `${seconds / 60} min`;
  return `${seconds} s`;
}

/**
 * The line a settings change shows in the log: what changed since `before` (unknown for the first
 * event of a page: then what differs from a new room's settings), by whom.
 *   settingsLine(DEFAULT_SETTINGS, {…topic: "Launch", by: {name: "ann"}}) // => 'ann set the topic: “Launch”'
 */
export function settingsLine(before: RoomSettings | null, e: SettingsEvent): string {
  const was = before ?? DEFAULT_SETTINGS;
  const parts: string[] = [];
  if (e.topic !== was.topic) parts.push(e.topic ? `set the topic: “${e.topic}”` : "cleared the topic");
  if (e.private !== was.private) parts.push(e.private ? "made the room private" : "made the room public");
  if (e.readOnly !== was.readOnly) parts.push(e.readOnly ? "made the room read-only" : "let everyone write again");
  if (e.slowModeSeconds !== was.slowModeSeconds) {
    parts.push(e.slowModeSeconds ? `set slow mode to one message per ${duration(e.slowModeSeconds)}` : "turned slow mode off");
  }
  return `${e.by.name} ${parts.length ? parts.join(", ") : "changed the room settings"}`;
}

/**
 * The line a moderation action shows in the log. `time` formats an `until`.
 *   moderationLine({action: "kick", user: {name: "bo"}, by: {name: "ann"}, reason: "spam"}, …) // => "bo was removed by ann: spam"
 */
export function moderationLine(f: ModerationFrame, time: (ms: number) => string): string {
  const who = f.user.name;
  const by = f.by.name;
  const reason = f.reason ? `: ${f.reason}` : "";
  const until = f.until ? ` until ${time(f.until)}` : "";
  switch (f.action) {
    case "kick":
      return `${who} was removed by ${by}${reason}`;
    case "ban":
      return `${who} was banned by ${by}${until}${reason}`;
    case "unban":
      return `${who} was unbanned by ${by}`;
    case "mute":
      return `${who} was muted by ${by}${until}${reason}`;
    case "unmute":
      return `${who} can write again (${by})`;
    case "role":
      return f.role === "owner"
        ? `${by} handed the room to ${who}`
        : f.role === "moderator"
          ? `${by} made ${who} a moderator`
          : `${who} is no longer a moderator (${by})`;
  }
}

/**
 * What someone sent out of a room is told: by whom, why and until when. `action` is the
 * moderation frame about it, when one came.
 *   outLine("kicked", "dev", undefined, …) // => "You were removed from #dev."
 */
export function outLine(reason: "kicked" | "banned", room: string, action: ModerationFrame | undefined, time: (ms: number) => string): string {
  const by = action ? ` by ${action.by.name}` : "";
  const why = action?.reason ? `: ${action.reason}` : "";
  if (reason === "kicked") return `You were removed from #${room}${by}${why}.`;
  const until = action?.until ? ` until ${time(action.until)}` : "";
  return `You were banned from #${room}${by}${until}${why}.`;
}

/**
 * What a reply's quote says of the original: its author and first words, or that it is gone or
 * not loaded.
 *   quoteOf({user: {name: "ann"}, text: "hello\nthere"}) // => "ann: hello there"
 */
export function quoteOf(m: MessageFrame | undefined): string {
  if (!m) return "an earlier message";
  if (m.deleted) return "message deleted";
  const flat = m.text.replace(/\s+/g, " ").trim();
  const chars = [...flat];
  return `${m.user.name}: ${chars.length > QUOTE_CHARS ? `${chars.slice(0, QUOTE_CHARS).join("")}…` : flat}`;
}
