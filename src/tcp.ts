/**
 * The plain-TCP door (§9): people chat from `nc host TCP_PORT`, in the same rooms as the page, as
 * the same kind of user. Lines in, lines out; commands start with `/`.
 */
import type { TCPSocketListener } from "bun";
import { TCP_JOIN_FRAMES, TcpConnection } from "./connection.ts";
import type { Context } from "./context.ts";
import { addressKey } from "./core/address.ts";
import { TOO_LONG, oneLine } from "./core/lines.ts";
import { actorOf } from "./authority.ts";
import type { Hub } from "./hub.ts";
import { checkName, namesClash, readFrame } from "./protocol/rules.ts";
import { CLOSE, LINE_TOO_LONG, type ClientFrame } from "./protocol/wire.ts";

const decoder = new TextDecoder();

/** What a line's task answers, for Connection.enqueue: a line has no ref; one that fails is `! internal: …`. */
const TCP_LINE = { op: "line", ref: undefined };

/** `/ban` and `/mute` take minutes; their frames, seconds. */
const SECONDS_PER_MINUTE = 60;
/** The room a TCP user starts in. */
const TCP_FIRST_ROOM = "general";

const TCP_GREETING =
  "* Welcome to bun-chat. Pick a name (letters, digits, space, _ - .); you start in general. /help lists commands.";
const TCP_HELP = [
  "* /join ROOM   join a room and make it current (shows its last 10 messages)",
  "* /leave       leave the current room",
  "* /rooms       list active rooms",
  "* /who         list who is in the current room",
  "* /topic       show the current room's topic; /topic TEXT sets it (moderators and up)",
  "* /kick NAME [reason], /ban NAME [minutes], /unban NAME, /mute NAME minutes   moderate the current room (\"a name\" with spaces in quotes)",
  "* /quit        disconnect",
  "* Here you chat as a guest: members of a site sign in on its web page, not over TCP.",
  "* anything else is said in the current room",
];

export function startTcp(hub: Hub, ctx: Context, port: number): TCPSocketListener<TcpConnection> {
  const config = ctx.config;
  return Bun.listen<TcpConnection>({
    hostname: config.host,
    port,
    socket: {
      open(socket) {
        // Counted as every per-address rule counts it: an IPv6 client by its /64.
        const conn = new TcpConnection(ctx, addressKey(socket.remoteAddress), socket);
        socket.data = conn;
        const refusal = hub.conns.admit(conn.ip);
        if (refusal) {
          conn.line(`! ${refusal.error}: try again later`);
          conn.end();
          return;
        }
        hub.open(conn);
        // Keepalive probes are TCP's pings: a silent peer that still answers them stays.
        socket.setKeepAlive(true, config.idleTimeoutSeconds * 1000);
        conn.line(TCP_GREETING);
        conn.prompt();
      },
      data(socket, chunk) {
        const conn = socket.data;
        if (conn.state !== "open") return;
        const lines = conn.splitter.push(chunk);
        // Counted before any is answered: the prompt comes back once, after the last.
        conn.reading(lines.length);
        for (const line of lines) {
          // Past the bound the connection closes (Hub.overflows): the lines after are not read.
          if (conn.state !== "open" || hub.overflows(conn, undefined, undefined)) return;
          const asked = hub.ask(conn, undefined);
          // Decoded now: a complete line is a view of Bun's buffer, which the next read reuses.
          const text = line === TOO_LONG ? null : decoder.decode(line);
          const answer =
            text === null
              ? () => conn.fail(LINE_TOO_LONG, `lines are at most ${config.tcpMaxLineBytes} bytes; that one was dropped`)
              : () => onLine(conn, text);
          conn.enqueue(() => {
            let spent;
            try {
              spent = hub.spend({ conn, type: undefined, ref: undefined, asked, answer });
            } finally {
              if (!spent) conn.answered();
            }
            return spent?.finally(() => conn.answered());
          }, TCP_LINE);
        }
      },
      drain(socket) {
        socket.data.flush();
      },
      close(socket) {
        const conn = socket.data;
        conn.closed();
        hub.close(conn, 0, "closed");
      },
      error(socket, error) {
        ctx.log("warn", "tcp_error", { conn: socket.data?.id, error: String(error) });
      },
    },
  });

  /** One line, paid for. */
  async function onLine(conn: TcpConnection, text: string): Promise<void> {
    if (!conn.user) {
      // A name holds no `/`: a command here is not one, and spends none of the address's hellos.
      if (text.trim().startsWith("/")) return beforeName(conn, text);
      const r = await hub.hello(conn, { name: text });
      if (!r.ok) {
        // The prompt (`name: ` again) comes once the line is answered.
        return conn.refuse(r);
      }
      return join(conn, TCP_FIRST_ROOM);
    }
    if (!text.startsWith("/")) {
      if (!conn.current) return conn.fail("not_joined", "you are in no room; /join ROOM");
      const r = await hub.send(conn, conn.current, conn.nextId(), text);
      if (!r.ok) return conn.refuse(r);
      // The next line waits for this one to be published, so a pasted script reads back in
      // order and a `/quit` right after a line still shows that line.
      return hub.batcher.settled();
    }
    const [command = "", arg] = text.trim().split(/\s+/);
    switch (command.toLowerCase()) {
      case "/join":
        if (!arg) return conn.fail("bad_request", "usage: /join ROOM");
        return join(conn, arg);
      case "/leave": {
        const room = conn.current;
        if (!room) return conn.fail("not_joined", "you are in no room");
        const r = await hub.leave(conn, room);
        if (!r.ok) return conn.fail(r.code, r.message);
        const now = conn.leftCurrent();
        conn.line(`* left ${room}`);
        if (now) conn.line(`* now in ${now} (${(await hub.members(now)).length} here): what you type goes to ${now}`);
        else conn.line("* you are in no room; /join ROOM");
        return;
      }
      case "/rooms": {
        const { rooms, next } = await hub.rooms(false);
        const more = next === null ? "" : ", …";
        return conn.line(`* rooms: ${rooms.map((r) => `${r.room} (${r.members})`).join(", ") || "none"}${more}`);
      }
      case "/who": {
        if (!conn.current) return conn.fail("not_joined", "you are in no room; /join ROOM");
        const names = (await hub.members(conn.current)).map((u) => u.name);
        return conn.line(`* in ${conn.current}: ${names.join(", ")}`);
      }
      case "/topic": {
        const room = conn.current;
        if (!room) return conn.fail("not_joined", "you are in no room; /join ROOM");
        const topic = text.trim().slice(command.length).trim();
        if (!topic) {
          const { settings } = await hub.log.auth(room);
          return conn.line(settings.topic ? `* ${room}: topic is "${oneLine(settings.topic)}"` : `* ${room} has no topic`);
        }
        const r = await hub.authority.settings(actorOf(conn), { room, topic });
        if (!r.ok) return conn.fail(r.code, r.message);
        return;
      }
      case "/kick":
      case "/ban":
      case "/unban":
      case "/mute":
        return moderate(conn, command.toLowerCase(), text.trim().slice(command.length).trim());
      case "/help":
        return help(conn);
      case "/quit":
        return quit(conn);
      default:
        return conn.fail("bad_request", "unknown command");
    }
  }

  /**
   * A command at the name prompt: the greeting says /help lists commands, so /help and /quit
   * work there; any other waits for the name. Then the prompt (`name: `) again.
   */
  function beforeName(conn: TcpConnection, text: string): void {
    const [command = ""] = text.trim().split(/\s+/);
    switch (command.toLowerCase()) {
      case "/help":
        return help(conn);
      case "/quit":
        return quit(conn);
      default:
        return conn.fail("bad_request", "pick a name first; before it, /help and /quit work");
    }
  }

  function help(conn: TcpConnection): void {
    for (const line of TCP_HELP) conn.line(line);
  }

  function quit(conn: TcpConnection): void {
    conn.line("* bye");
    conn.close(CLOSE.normal, "quit");
  }

  /**
   * `/kick NAME [reason]`, `/ban NAME [minutes]`, `/unban NAME`, `/mute NAME minutes` (§11.8): on
   * the user of that name in the current room (for /unban, the banned one of that name). The
   * command becomes the frame a WebSocket client would send, read by the same schema (readFrame)
   * and carried out by the same call (Hub.command): its bounds (a reason's length and characters,
   * a ban of a minute at least, ten years at most) are not written again here.
   */
  async function moderate(conn: TcpConnection, command: string, rest: string): Promise<void> {
    const room = conn.current;
    if (!room) return conn.fail("not_joined", "you are in no room; /join ROOM");
    const [name, words] = nameAndWords(rest);
    const usage = { "/kick": "/kick NAME [reason]", "/ban": "/ban NAME [minutes]", "/unban": "/unban NAME", "/mute": "/mute NAME minutes" }[command]!;
    if (!name) return conn.fail("bad_request", `usage: ${usage}`);
    const minutes = words[0] !== undefined && /^\d{1,7}$/.test(words[0]) ? Number(words[0]) : null;
    if ((command === "/mute" && minutes === null) || (command === "/ban" && words.length > 0 && minutes === null)) {
      return conn.fail("bad_request", `usage: ${usage}`);
    }
    const named = await userNamed(room, name, command === "/unban");
    if (named === null) return conn.fail("not_found", `nobody called ${name} in ${room}`);
    // Members may share a name, or a guest's look-alike one (§11.1): the door does not pick one.
    if (typeof named === "number") return conn.fail("bad_request", `${named} users called ${name} in ${room}`);
    const userId = named;
    const fields: Record<string, unknown> = { type: command.slice(1), room, user: userId };
    if (command === "/kick" && words.length) fields.reason = words.join(" ");
    if ((command === "/ban" || command === "/mute") && minutes !== null) fields.seconds = minutes * SECONDS_PER_MINUTE;
    const parsed = readFrame(fields);
    if (!parsed.ok) return conn.fail("bad_request", `${parsed.message}; usage: ${usage}`);
    // Its type is the command's, so it is one of these: the check tells TypeScript.
    if (!isModeration(parsed.frame)) return conn.fail("bad_request", `usage: ${usage}`);
    const r = await hub.command(actorOf(conn), parsed.frame);
    if (!r.ok) return conn.refuse(r);
    if (command === "/unban") conn.line(`* ${name} may come back to ${room}`);
  }

  /** The id of the user called `name` among the room's members, or its banned (namedOne). */
  async function userNamed(room: string, name: string, banned: boolean): Promise<string | number | null> {
    if (!banned) return namedOne(await hub.members(room), name);
    const bans = [...(await hub.log.auth(room)).bans].flatMap(([id, ban]) => (ban.name === undefined ? [] : [{ id, name: ban.name }]));
    return namedOne(bans, name);
  }

  async function join(conn: TcpConnection, room: string): Promise<void> {
    const r = await hub.join(conn, { room, limit: TCP_JOIN_FRAMES });
    if (!r.ok) return conn.fail(r.code, r.message);
  }
}

/**
 * A moderation command's NAME and the words after it. Names may hold spaces (§10): such a name
 * is given in double quotes.
 *   nameAndWords('"big bob" spam again') // => ["big bob", ["spam", "again"]]
 */
export function nameAndWords(rest: string): [name: string, words: string[]] {
  const quoted = /^"([^"]+)"(?:\s+|$)/.exec(rest);
  const [name = "", ...words] = quoted ? [quoted[1]!, ...rest.slice(quoted[0].length).split(/\s+/)] : rest.split(/\s+/);
  return [name, words.filter((w) => w !== "")];
}

/**
 * The id of the one user of `users` called `name` (§11.8): the one of exactly that name (as a
 * name is kept: checkName), else the one whose name is a look-alike (§11.1); how many when
 * that is more than one (members may share a name, or a guest's look-alike one); null for none.
 *   namedOne([{ id: "u:b7", name: "Bob" }, { id: "g1", name: "bob" }], "bob") // => "g1"
 *   namedOne([{ id: "u:b7", name: "Bob" }, { id: "g1", name: "bob" }], "BOB") // => 2
 */
export function namedOne(users: readonly { id: string; name: string }[], name: string): string | number | null {
  const exact = checkName(name) ?? name.normalize("NFC");
  const same = users.filter((u) => u.name === exact);
  const found = same.length > 0 ? same : users.filter((u) => namesClash(u.name, name));
  if (found.length === 0) return null;
  return found.length === 1 ? found[0]!.id : found.length;
}

/** The frames of the TCP door's moderation commands. */
function isModeration(frame: ClientFrame): frame is Extract<ClientFrame, { type: "kick" | "ban" | "unban" | "mute" }> {
  return frame.type === "kick" || frame.type === "ban" || frame.type === "unban" || frame.type === "mute";
}
