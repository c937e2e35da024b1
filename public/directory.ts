/**
 * The sidebar's room directory: rooms with recent messages, newest first, whether or not anyone
 * is in them (`GET /api/rooms?recent=1`), then rooms with people and no recent message yet
 * (`GET /api/rooms`); the page lists those it is not in.
 */

import { isRoom } from "../src/protocol/wire.ts";
import { h } from "./dom.ts";

/** Rooms listed in the directory, newest first. */
const DIRECTORY_SHOWN = 20;

/** An entry of `GET /api/rooms`: a room and how many people are in it. */
export interface DirectoryEntry {
  room: string;
  members: number;
}

/** Fetches a path and answers its JSON body; the page passes window.fetch. */
export type Fetch = (path: string) => Promise<{ ok: boolean; status: number; json(): Promise<unknown> }>;

/**
 * The recent rooms first, with the member counts of the occupied list (fresher), then the
 * occupied rooms that are not recent.
 *   merge([{room: "a", members: 0}], [{room: "b", members: 2}, {room: "a", members: 1}]) // => a (1), b (2)
 */
export function merge(recent: readonly DirectoryEntry[], occupied: readonly DirectoryEntry[]): DirectoryEntry[] {
  const members = new Map(occupied.map((r) => [r.room, r.members]));
  const listed = new Set(recent.map((r) => r.room));
  return [...recent.map((r) => ({ room: r.room, members: members.get(r.room) ?? r.members })), ...occupied.filter((r) => !listed.has(r.room))];
}

/** The valid entries of a `/api/rooms` body (one that is not an object throws, like a failed fetch). */
export function entries(body: unknown): DirectoryEntry[] {
  const rooms = (body as { rooms?: unknown }).rooms;
  return (Array.isArray(rooms) ? (rooms as Partial<DirectoryEntry>[]) : [])
    .filter((r): r is DirectoryEntry => typeof r.room === "string" && isRoom(r.room))
    .map((r) => ({ room: r.room, members: Number.isSafeInteger(r.members) ? r.members : 0 }));
}

export type Directory = ReturnType<typeof createDirectory>;

/** The directory drawn in `list`; `changed` is called when a new one arrived (the page redraws its sidebar, this list included). */
export function createDirectory(list: HTMLElement, fetch: Fetch, changed: () => void) {
  /** The last list fetched. */
  let rooms: DirectoryEntry[] = [];
  /** What the list shows, to redraw only when it changes. */
  let shown = "";

  async function refresh(): Promise<void> {
    try {
      const [recent, occupied] = await Promise.all([get("/api/rooms?recent=1"), get("/api/rooms")]);
      rooms = merge(recent, occupied);
      changed();
    } catch {
      // The list is a convenience; the connection status already tells about a dead server.
    }
  }

  /**
   * Shows the rooms we are not in. Redrawn only when the list changed: rebuilding it on every
   * message would take keyboard focus away from whoever is tabbing through it.
   */
  function render(joined: (room: string) => boolean): void {
    const others = rooms.filter((r) => !joined(r.room)).slice(0, DIRECTORY_SHOWN);
    const key = JSON.stringify(others);
    if (key === shown) return;
    shown = key;
    list.replaceChildren(
      ...(others.length
        ? others.map((r) =>
            h(
              "li",
              {},
              h(
                "a",
                { class: "room-link", attrs: { href: `#${r.room}` } },
                h("span", { class: "hash", text: "#" }),
                h("span", { class: "room-name", text: r.room }),
                r.members > 0 && h("span", { class: "count", text: String(r.members), attrs: { "aria-label": `${r.members} online` } }),
              ),
            ),
          )
        : [h("li", { class: "empty", text: "No other rooms yet: create one above." })]),
    );
  }

  async function get(path: string): Promise<DirectoryEntry[]> {
    const response = await fetch(path);
    if (!response.ok) throw new Error(`${path}: ${response.status}`);
    return entries(await response.json());
  }

  return { refresh, render };
}

