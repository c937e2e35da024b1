/**
 * Who you are in this browser, remembered: the session token, the name, the rooms and how far you
 * read in each, in localStorage and so shared by every tab (each tab has its own connection, and
 * the server, protocol v1.1, counts them as one user with one presence). Tabs follow each other
 * through `storage` events: rooms joined and left, a new name, signing out. One tab's unsent
 * messages are kept apart, in sessionStorage.
 */

import { NAME_MAX_CHARS, codePoints, isRoom, type Limits, type UserRef } from "../src/protocol/wire.ts";
import type { Saved } from "./outbox.ts";

/** The storage keys; every tab of this browser reads the same ones. */
const KEY = {
  name: "chat.name",
  session: "chat.session",
  rooms: "chat.rooms",
  read: "chat.read",
  epochs: "chat.epochs",
  notify: "chat.notify",
  outbox: "chat.outbox",
  banned: "chat.banned",
} as const;

/**
 * What a stored session token may look like: base64url, as the server issues them, and short. A
 * stored value that is not (an oversized one would make every hello too big for the server, which
 * then closes with 1009, over and over) is ignored.
 */
const SESSION_PATTERN = /^[A-Za-z0-9_-]{1,512}$/;

/** A stored name, if it could be one: an oversized or blank one is ignored, and the prompt asks. */
export function usableName(name: string | null): string | null {
  const trimmed = name?.trim() ?? "";
  return trimmed && codePoints(trimmed) <= NAME_MAX_CHARS ? trimmed : null;
}

/** Who this tab is right now: the name its next hello asks for; once welcomed, the user, whether a server admin, and the server's limits. */
export interface Self {
  name: string;
  me: UserRef | null;
  admin: boolean;
  limits: Limits | null;
}

/** Storage that may be unavailable (private modes, quotas): the page then just forgets. */
export interface Store {
  read(key: string): string | null;
  write(key: string, value: string): void;
  remove(key: string): void;
}

/** The browser's localStorage or sessionStorage as a Store; nothing is touched until first used. */
export function browserStore(area: "local" | "session"): Store {
  const get = (): Storage | null => {
    try {
      return area === "local" ? window.localStorage : window.sessionStorage;
    } catch {
      return null;
    }
  };
  return {
    read(key) {
      try {
        return get()?.getItem(key) ?? null;
      } catch {
        return null;
      }
    },
    write(key, value) {
      try {
        get()?.setItem(key, value);
      } catch {
        // Not remembering is acceptable; failing to chat is not.
      }
    },
    remove(key) {
      try {
        get()?.removeItem(key);
      } catch {
        // Nothing stored, nothing to forget.
      }
    },
  };
}

/** What another tab changed in what we share. */
export type Change =
  /** Signed in or out (or storage cleared). */
  | { kind: "session" }
  | { kind: "name"; name: string | null }
  | { kind: "rooms" }
  | { kind: "read" };

export type Identity = ReturnType<typeof createIdentity>;

/** `local` is shared by the tabs of this browser; `tab` is this tab's own. */
export function createIdentity(local: Store, tab: Store) {
  /** The rooms this browser's user is in; only valid names. */
  function rooms(): string[] {
    try {
      const rooms: unknown = JSON.parse(local.read(KEY.rooms) ?? "[]");
      return Array.isArray(rooms) ? rooms.filter((r): r is string => typeof r === "string" && isRoom(r)) : [];
    } catch {
      return [];
    }
  }

  /** The newest seq read in each room, in any tab of this browser. */
  function readPositions(): Record<string, number> {
    try {
      const read: unknown = JSON.parse(local.read(KEY.read) ?? "{}");
      if (typeof read !== "object" || read === null || Array.isArray(read)) return {};
      return Object.fromEntries(Object.entries(read).filter(([room, seq]) => isRoom(room) && Number.isSafeInteger(seq) && seq >= 0));
    } catch {
      return {};
    }
  }

  return {
    get session(): string | null {
      const session = local.read(KEY.session);
      return session !== null && SESSION_PATTERN.test(session) ? session : null;
    },
    get name(): string | null {
      return usableName(local.read(KEY.name));
    },
    /** Welcomed: who we are now, for every tab and the next visit. */
    remember(session: string, name: string): void {
      local.write(KEY.session, session);
      local.write(KEY.name, name);
    },
    setName(name: string): void {
      local.write(KEY.name, name);
    },
    rooms,
    saveRooms(rooms: Iterable<string>): void {
      local.write(KEY.rooms, JSON.stringify([...rooms]));
    },
    readPositions,
    /** `room` is read up to `seq` (a position never moves back: another tab may have read further). */
    markRead(room: string, seq: number): void {
      const read = readPositions();
      read[room] = Math.max(read[room] ?? 0, seq);
      local.write(KEY.read, JSON.stringify(read));
    },
    /**
     * Read positions are seqs, and count in their room's epoch (`joined.epoch`): one kept from
     * another epoch, or from before a `reset` (the room's history was reset on the server since),
     * names another message now, and goes. True when the room's read position went.
     */
    readIn(room: string, epoch: string | undefined, reset: boolean): boolean {
      const epochs = stringsOf(local.read(KEY.epochs));
      const was = epochs[room];
      if (epoch !== undefined && epoch !== was) local.write(KEY.epochs, JSON.stringify({ ...epochs, [room]: epoch }));
      const read = readPositions();
      if (read[room] === undefined || !(reset || (was !== undefined && epoch !== undefined && was !== epoch))) return false;
      delete read[room];
      local.write(KEY.read, JSON.stringify(read));
      return true;
    },
    /** Whether mentions should notify (the browser's permission is asked apart). */
    get notify(): boolean {
      return local.read(KEY.notify) === "1";
    },
    set notify(on: boolean) {
      local.write(KEY.notify, on ? "1" : "0");
    },
    /** This tab's unsent messages, as stored (outbox.ts parses them). */
    savedOutbox(): string | null {
      return tab.read(KEY.outbox);
    },
    saveOutbox(saved: Saved[]): void {
      tab.write(KEY.outbox, JSON.stringify(saved));
    },
    /** Rooms this user was banned from, with when the ban ends (null: until unbanned); not joined until then. */
    bans(): Map<string, number | null> {
      try {
        const bans: unknown = JSON.parse(local.read(KEY.banned) ?? "{}");
        if (typeof bans !== "object" || bans === null || Array.isArray(bans)) return new Map();
        return new Map(
          Object.entries(bans)
            .filter(([room, until]) => isRoom(room) && (until === null || Number.isSafeInteger(until)))
            .map(([room, until]) => [room, until as number | null]),
        );
      } catch {
        return new Map();
      }
    },
    /** Banned from `room` until `until` (null: until unbanned), or no longer (`false`). */
    setBan(room: string, until: number | null | false): void {
      const bans = Object.fromEntries(this.bans());
      if (until === false) delete bans[room];
      else bans[room] = until;
      local.write(KEY.banned, JSON.stringify(bans));
    },
    /** Signed out: forget who we are and where, in every tab; the choice of alerts stays. */
    forget(): void {
      for (const key of [KEY.session, KEY.name, KEY.rooms, KEY.read, KEY.epochs, KEY.banned]) local.remove(key);
      tab.remove(KEY.outbox);
    },
  };
}

/** A stored object of strings by room (`{"general": "…"}`); anything else reads as empty. */
function stringsOf(stored: string | null): Record<string, string> {
  try {
    const value: unknown = JSON.parse(stored ?? "{}");
    if (typeof value !== "object" || value === null || Array.isArray(value)) return {};
    return Object.fromEntries(Object.entries(value).filter((e): e is [string, string] => isRoom(e[0]) && typeof e[1] === "string"));
  } catch {
    return {};
  }
}

/** What a `storage` event of the shared storage means; null for keys that are not ours to follow. */
export function changeOf(key: string | null, newValue: string | null): Change | null {
  if (key === KEY.session || key === null) return { kind: "session" };
  if (key === KEY.name) return { kind: "name", name: newValue };
  if (key === KEY.rooms) return { kind: "rooms" };
  if (key === KEY.read) return { kind: "read" };
  return null;
}

/** Calls `on` for each change another tab makes to what we share. */
export function watchOtherTabs(on: (change: Change) => void): void {
  window.addEventListener("storage", (event) => {
    if (event.storageArea !== window.localStorage) return;
    const change = changeOf(event.key, event.newValue);
    if (change) on(change);
  });
}
