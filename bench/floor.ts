/**
 * The floor: raw Bun pub/sub with no protocol and no storage. A client opens /ws?room=NAME and is
 * subscribed to that topic; every text frame it sends is published, as it is, to the whole topic
 * (sender included, as the chat server echoes a message to its sender). What the chat server
 * adds on top of this is what the bench measures.
 *
 * `/ws?room=NAME&frames=chat` answers a connect as the chat server does, frame for frame, without
 * its logic (no parsing, no users, no storage), so that connects can be compared at equal sends:
 * a frame starting `{"type":"hello"` gets a welcome-sized `welcome`; one starting `{"type":"join"`
 * gets a `joined` listing as many members as the room has, and the room's others get a `presence`.
 * The frames are the chat server's shapes with made-up ids, names and session.
 *
 * With `FLOOR_LOG=FILE` it is the floor for durable storage: a frame is published only after it
 * is on disk. Frames that arrive in one loop turn are appended to FILE in one write and published
 * once an `fdatasync` that began after that write has returned, in order, with up to
 * SYNCS_IN_FLIGHT syncs at once (as the chat server's storage). No database, no index, no reads:
 * the least any server that stores a message before it publishes it does.
 *
 * With `FLOOR_STORE=FILE` it is the floor for the chat's own storage: the frames of a loop turn
 * are appended, as messages of an anonymous user, to a SQLite file by the chat's engine
 * (SqliteStore: the same schema, group commit, fdatasync and checkpointer, default limits), and
 * published once it resolves. What the chat adds above this is its protocol, users and rooms;
 * what this adds above `FLOOR_LOG` is SQLite.
 *
 *   PORT=4000 bun run bench/floor.ts
 */
import { fdatasync, openSync, writeSync } from "node:fs";
import type { NewMessage } from "../src/engine.ts";

/** What the client asked for at upgrade. */
interface Client {
  room: string;
  /** Answers hello and join with the chat's frames (`frames=chat`). */
  chatFrames: boolean;
  /** Counted in `members` (joined once). */
  joined: boolean;
}

const HELLO = '{"type":"hello"';
const JOIN = '{"type":"join"';
/** The chat server's default limits, as its `welcome` carries them. */
const LIMITS = '{"maxTextChars":2000,"maxPayloadBytes":32768,"maxRooms":20,"rate":{"burst":10,"perSecond":5},"historyOnJoin":50,"typingThrottleMs":1000}';
/** A session token as long as the chat's (32 random bytes, base64url). */
const SESSION = "EU9LUge-DcKcTFklN8ZoRYmZw-_yBNFeOn1isiC18eE";
/** A member as the chat's `joined` lists it: a 12-character id and a short name. */
const MEMBER = '{"id":"4lwH0SvpsBV1","name":"u1234"}';

/** Members per room in `frames=chat` mode; a room leaves the map with its last member. */
const members = new Map<string, number>();
let users = 0;

/** `{"type":"welcome",…}` for a made-up user, e.g. id `000000000042`, name `u42`. */
function welcome(): string {
  const n = users++;
  return `{"type":"welcome","user":{"id":"${String(n).padStart(12, "0")}","name":"u${n}"},"session":"${SESSION}","limits":${LIMITS}}`;
}

/** `{"type":"joined",…}` into a room of `count` members (the joiner included), no history. */
function joined(room: string, count: number): string {
  return `{"type":"joined","room":"${room}","seq":0,"oldestSeq":0,"members":[${Array(count).fill(MEMBER).join(",")}],"messages":[],"complete":true}`;
}

/** `{"type":"presence",…}`: someone joined `room`. */
function presence(room: string): string {
  return `{"type":"presence","room":"${room}","event":"join","user":${MEMBER}}`;
}

/** The durable floor's fsyncs at once (the chat server's WAL_SYNCS_IN_FLIGHT). */
const SYNCS_IN_FLIGHT = 2;
const logFd = process.env.FLOOR_LOG ? openSync(process.env.FLOOR_LOG, "a") : null;
/** Frames of this loop turn, not yet written. */
let turn: [string, string | Buffer][] = [];
/** Written groups waiting for their sync, oldest first. */
const unsynced: { frames: [string, string | Buffer][]; synced: boolean }[] = [];
let syncs = 0;

/**
 * The chat's storage engine, when FLOOR_STORE names its file. Imported only then: the other
 * floors' cold start and memory must not carry the chat's modules.
 */
const store = process.env.FLOOR_STORE ? await openStore(process.env.FLOOR_STORE) : null;

async function openStore(path: string) {
  const [{ DEFAULTS }, { historyBounds }, { SqliteStore }] = await Promise.all([
    import("../src/config.ts"),
    import("../src/engine.ts"),
    import("../src/sqlite.ts"),
  ]);
  return new SqliteStore(path, DEFAULTS.historyRetain, historyBounds(DEFAULTS));
}
/** The one user the store floor's messages are stored as. */
const FLOOR_USER = { id: "floor0000000", name: "floor" };
let storedIds = 0;
/** Frames of this loop turn, not yet appended to the store. */
let storeTurn: [room: string, frame: string | Buffer, entry: NewMessage][] = [];

function appendTurn(): void {
  const group = storeTurn;
  storeTurn = [];
  // The store resolves appends in commit order, each once its sync has returned.
  store!.append(group.map(([, , entry]) => entry)).then(
    () => {
      for (const [room, frame] of group) server.publish(room, frame, false);
    },
    (error) => {
      throw error;
    },
  );
}

/** Publishes `message` once it is on disk (FLOOR_LOG, FLOOR_STORE), or at once. */
function publish(room: string, message: string | Buffer): void {
  if (store !== null) {
    const text = typeof message === "string" ? message : message.toString();
    storeTurn.push([room, message, { room, user: FLOOR_USER, id: String(storedIds++), text, ts: Date.now() }]);
    if (storeTurn.length === 1) setImmediate(appendTurn);
    return;
  }
  if (logFd === null) {
    server.publish(room, message, false);
    return;
  }
  turn.push([room, message]);
  if (turn.length === 1) setImmediate(writeTurn);
}

function writeTurn(): void {
  if (syncs >= SYNCS_IN_FLIGHT || !turn.length) return;
  const group = { frames: turn, synced: false };
  turn = [];
  writeSync(logFd!, group.frames.map(([, m]) => m).join("\n"));
  unsynced.push(group);
  syncs++;
  fdatasync(logFd!, (error) => {
    if (error) throw error;
    syncs--;
    group.synced = true;
    while (unsynced[0]?.synced) for (const [room, m] of unsynced.shift()!.frames) server.publish(room, m, false);
    writeTurn();
  });
}

const server = Bun.serve<Client>({
  port: Number(process.env.PORT ?? 0),
  hostname: "127.0.0.1",
  fetch(req, srv) {
    const query = new URL(req.url).searchParams;
    const data: Client = { room: query.get("room") ?? "floor", chatFrames: query.get("frames") === "chat", joined: false };
    if (srv.upgrade(req, { data })) return undefined;
    return new Response("upgrade required", { status: 426 });
  },
  websocket: {
    // The chat server's settings that matter for delivery: same limits, no compression.
    perMessageDeflate: false,
    backpressureLimit: 1048576,
    closeOnBackpressureLimit: true,
    idleTimeout: 120,
    open(ws) {
      if (!ws.data.chatFrames) ws.subscribe(ws.data.room);
    },
    message(ws, message) {
      const { room, chatFrames } = ws.data;
      if (chatFrames && typeof message === "string") {
        if (message.startsWith(HELLO)) {
          ws.send(welcome());
          return;
        }
        if (message.startsWith(JOIN)) {
          // As the chat server: `joined` to the joiner, then subscribed, then the others told.
          if (ws.data.joined) return;
          ws.data.joined = true;
          const count = (members.get(room) ?? 0) + 1;
          members.set(room, count);
          ws.send(joined(room, count));
          ws.subscribe(room);
          ws.publish(room, presence(room));
          return;
        }
      }
      publish(room, message);
    },
    close(ws) {
      if (!ws.data.joined) return;
      const left = members.get(ws.data.room)! - 1;
      if (left) members.set(ws.data.room, left);
      else members.delete(ws.data.room);
    },
  },
});
console.log(JSON.stringify({ event: "listening", url: server.url.href }));
