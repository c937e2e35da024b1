/**
 * Unit tests of the page without a browser: its modules load without one, identity (public/
 * identity.ts) on in-memory storage, and the room directory's merge (public/directory.ts).
 */
import { describe, expect, test } from "bun:test";
import { readdirSync } from "node:fs";
import { entries, merge } from "../public/directory.ts";
import { changeOf, createIdentity, type Store } from "../public/identity.ts";

/** A Store in a Map, as localStorage would be for one browser. */
function memoryStore(): Store & { data: Map<string, string> } {
  const data = new Map<string, string>();
  return {
    data,
    read: (key) => data.get(key) ?? null,
    write: (key, value) => void data.set(key, value),
    remove: (key) => void data.delete(key),
  };
}

describe("page modules", () => {
  test("do no work at import: each loads where there is no window or document (app.ts, the entry, starts the page)", async () => {
    expect(typeof (globalThis as { document?: unknown }).document).toBe("undefined");
    const modules = readdirSync(new URL("../public/", import.meta.url)).filter((f) => f.endsWith(".ts") && f !== "app.ts");
    expect(modules.length).toBeGreaterThan(10);
    for (const file of modules) await import(`../public/${file}`);
  });
});

describe("identity", () => {
  test("welcomed: session and name are remembered for every tab of the browser", () => {
    const local = memoryStore();
    createIdentity(local, memoryStore()).remember("s-1", "dana");
    // Another tab reads the same storage.
    const other = createIdentity(local, memoryStore());
    expect(other.session).toBe("s-1");
    expect(other.name).toBe("dana");
  });

  test("rooms: only valid names come back", () => {
    const local = memoryStore();
    const identity = createIdentity(local, memoryStore());
    identity.saveRooms(["general", "dev"]);
    expect(identity.rooms()).toEqual(["general", "dev"]);
    local.write("chat.rooms", JSON.stringify(["general", "Not A Room", 7, "ok_2"]));
    expect(identity.rooms()).toEqual(["general", "ok_2"]);
    local.write("chat.rooms", "{broken");
    expect(identity.rooms()).toEqual([]);
  });

  test("read positions never move back: another tab may have read further", () => {
    const local = memoryStore();
    const here = createIdentity(local, memoryStore());
    const there = createIdentity(local, memoryStore());
    here.markRead("general", 10);
    there.markRead("general", 25);
    here.markRead("general", 12);
    here.markRead("dev", 3);
    expect(there.readPositions()).toEqual({ general: 25, dev: 3 });
    local.write("chat.read", JSON.stringify({ general: 5, "Bad Room": 1, dev: -1, ops: 1.5 }));
    expect(here.readPositions()).toEqual({ general: 5 });
  });

  test("read positions count in their room's epoch: one from another epoch, or from before a reset, goes", () => {
    const local = memoryStore();
    const identity = createIdentity(local, memoryStore());
    identity.markRead("general", 40);
    identity.markRead("dev", 7);
    // A position from before epochs were kept stays: nothing tells it is stale.
    expect(identity.readIn("general", "e1", false)).toBe(false);
    expect(identity.readIn("general", "e1", false)).toBe(false);
    expect(identity.readPositions()).toEqual({ general: 40, dev: 7 });
    // The room's epoch is another one now (reset while this browser was away): its position goes, alone.
    expect(identity.readIn("general", "e2", false)).toBe(true);
    expect(identity.readPositions()).toEqual({ dev: 7 });
    identity.markRead("general", 3);
    expect(identity.readIn("general", "e2", false)).toBe(false);
    // A reset said by the server (or, without epochs, seen by a seq below ours) voids it whatever the epoch.
    expect(identity.readIn("dev", undefined, true)).toBe(true);
    expect(identity.readPositions()).toEqual({ general: 3 });
    identity.forget();
    identity.markRead("general", 9);
    expect(identity.readIn("general", "e3", false)).toBe(false);
    expect(identity.readPositions()).toEqual({ general: 9 });
  });

  test("signing out forgets who and where in every tab, and this tab's outbox; mention alerts stay chosen", () => {
    const local = memoryStore();
    const tab = memoryStore();
    const identity = createIdentity(local, tab);
    identity.remember("s-1", "dana");
    identity.saveRooms(["general"]);
    identity.markRead("general", 4);
    identity.notify = true;
    identity.saveOutbox([{ id: "a", room: "general", text: "hi" }]);
    expect(identity.savedOutbox()).toBe(JSON.stringify([{ id: "a", room: "general", text: "hi" }]));
    identity.forget();
    expect([identity.session, identity.name, identity.savedOutbox()]).toEqual([null, null, null]);
    expect(identity.rooms()).toEqual([]);
    expect(identity.readPositions()).toEqual({});
    expect(identity.notify).toBe(true);
  });

  test("another tab's change: which key means what", () => {
    expect(changeOf("chat.session", null)).toEqual({ kind: "session" });
    // A cleared storage (key null) is a sign-out too.
    expect(changeOf(null, null)).toEqual({ kind: "session" });
    expect(changeOf("chat.name", "dana2")).toEqual({ kind: "name", name: "dana2" });
    expect(changeOf("chat.rooms", "[]")).toEqual({ kind: "rooms" });
    expect(changeOf("chat.read", "{}")).toEqual({ kind: "read" });
    expect(changeOf("chat.notify", "1")).toBeNull();
    expect(changeOf("someone.else", "x")).toBeNull();
  });
});

describe("directory", () => {
  test("recent rooms first with the fresher member counts, then occupied rooms not recent", () => {
    const recent = [
      { room: "b", members: 0 },
      { room: "a", members: 9 },
    ];
    const occupied = [
      { room: "a", members: 2 },
      { room: "c", members: 1 },
    ];
    expect(merge(recent, occupied)).toEqual([
      { room: "b", members: 0 },
      { room: "a", members: 2 },
      { room: "c", members: 1 },
    ]);
  });

  test("only valid entries of a response are listed", () => {
    expect(entries({ rooms: [{ room: "ok", members: 3 }, { room: "Bad!", members: 1 }, { room: "x", members: "2" }, { members: 1 }] })).toEqual([
      { room: "ok", members: 3 },
      { room: "x", members: 0 },
    ]);
    expect(entries({})).toEqual([]);
  });
});
