/**
 * Who you are in this browser, remembered: the session token, the name, the rooms and how far you
 * read in each, in localStorage and so shared by every tab (each tab has its own connection, and
 * the server, protocol v1.1, counts them as one user with one presence). Tabs follow each other
 * through `storage` events: rooms joined and left, a new name, signing out. One tab's unsent
 * messages are kept apart, in sessionStorage.
 */

import { isRoom, type Limits, type UserRef } from "../src/protocol/wire.ts";
import type { Saved } from "./outbox.ts";

/** The storage keys; every tab of this browser reads the same ones. */
const KEY = {
  name: "chat.name",
  session: "chat.session",
  rooms: "chat.rooms",
  read: "chat.read",
  notify: "chat.notify",
  outbox: "chat.outbox",
} as const;

/** Who this tab is right now: the name its next hello asks for; once welcomed, the user and the server's limits. */
export interface Self {
  name: string;
  me: UserRef | null;
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
      return local.read(KEY.session);
    },
    get name(): string | null {
      return local.read(KEY.name);
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
    /** Signed out: forget who we are and where, in every tab; the choice of alerts stays. */
    forget(): void {
      for (const key of [KEY.session, KEY.name, KEY.rooms, KEY.read]) local.remove(key);
      tab.remove(KEY.outbox);
    },
  };
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
