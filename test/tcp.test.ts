/**
 * The plain-TCP door (protocol §9) with real sockets: TCP and WebSocket users in the same rooms.
 * A line split across packets is forced by sending its first half together with a command and
 * waiting for that command's answer before sending the rest. The pure parts first (line framing,
 * rendering); the live suites run on both engines. Its rate limit, hello timeout and caps are in
 * rate-limits.test.ts and connections.test.ts, with those of WebSocket.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { dlopen, ptr } from "bun:ffi";
import { readFileSync, readdirSync, readlinkSync } from "node:fs";
import { LineSplitter, TOO_LONG, clock, formatMessageLines, formatPresenceLine, hhmm, markMentions, mentionPattern, promptFor } from "../src/core/lines.ts";
import { RESTRICTION_MAX_SECONDS } from "../src/protocol/wire.ts";
import { SignJWT } from "jose";
import { nameAndWords, namedOne } from "../src/tcp.ts";
import { Client, ENGINES, LineClient, engineServers, tcpUser, user, withoutPrompts, type TestServer } from "./helpers.ts";

const TIME = String.raw`\d\d:\d\d UTC`;
/** What the door writes before a line that comes while its prompt is shown: CR, then ANSI erase in line. */
const ERASE = "\r\x1b[K";

// Linux socket option numbers, for reading a live socket's keepalive settings.
const SOL_SOCKET = 1;
const SO_KEEPALIVE = 9;
const IPPROTO_TCP = 6;
const TCP_KEEPIDLE = 4;
const TCP_KEEPINTVL = 5;
const TCP_KEEPCNT = 6;
const libc = dlopen("libc.so.6", { getsockopt: { args: ["i32", "i32", "i32", "ptr", "ptr"], returns: "i32" } });

/** An integer socket option of a file descriptor of this process, through libc's getsockopt. */
function socketOption(fd: number, level: number, name: number): number {
  const value = new Int32Array(1);
  const length = new Uint32Array([4]);
  if (libc.symbols.getsockopt(fd, level, name, ptr(value), ptr(length)) !== 0) throw new Error(`getsockopt(${fd}, ${level}, ${name}) failed`);
  return value[0]!;
}

/** This process's descriptor for the server side of the IPv4 loopback connection serverPort ↔ clientPort. */
function serverSocketFd(serverPort: number, clientPort: number): number {
  const hex = (port: number) => ":" + port.toString(16).toUpperCase().padStart(4, "0");
  const row = readFileSync("/proc/net/tcp", "utf8")
    .split("\n")
    .map((line) => line.trim().split(/\s+/))
    .find((f) => f[1]?.endsWith(hex(serverPort)) && f[2]?.endsWith(hex(clientPort)));
  if (!row) throw new Error("connection not in /proc/net/tcp");
  const target = `socket:[${row[9]}]`;
  for (const fd of readdirSync("/proc/self/fd").map(Number)) {
    try {
      if (readlinkSync(`/proc/self/fd/${fd}`) === target) return fd;
    } catch {
      // The descriptor closed while we looked.
    }
  }
  throw new Error(`no descriptor for ${target}`);
}

describe("LineSplitter", () => {
  const bytes = (s: string) => new TextEncoder().encode(s);
  const text = (items: (Uint8Array | typeof TOO_LONG)[]) =>
    items.map((i) => (i === TOO_LONG ? "<TOO_LONG>" : new TextDecoder().decode(i)));

  test("reassembles lines split across chunks, also inside a UTF-8 character", () => {
    const s = new LineSplitter(100);
    const all = bytes("héllo\n");
    expect(text(s.push(all.subarray(0, 2)))).toEqual([]);
    expect(text(s.push(all.subarray(2, 3)))).toEqual([]);
    expect(text(s.push(all.subarray(3)))).toEqual(["héllo"]);
  });

  test("handles several lines in one chunk and drops a CR before LF", () => {
    const s = new LineSplitter(100);
    expect(text(s.push(bytes("one\r\ntwo\n\nthree\nfour")))).toEqual(["one", "two", "", "three"]);
    expect(text(s.push(bytes("\n")))).toEqual(["four"]);
  });

  test("a line of exactly the limit passes; one byte more is rejected once", () => {
    const s = new LineSplitter(8);
    expect(text(s.push(bytes("12345678\n123456789\nok\n")))).toEqual(["12345678", "<TOO_LONG>", "ok"]);
  });

  test("an over-long line is reported once and discarded up to its newline, across chunks", () => {
    const s = new LineSplitter(8);
    expect(text(s.push(bytes("0123456789")))).toEqual(["<TOO_LONG>"]);
    expect(text(s.push(bytes("x".repeat(10_000))))).toEqual([]);
    expect(text(s.push(bytes("yyy\nnext\n")))).toEqual(["next"]);
  });

  test("never holds more than the limit of an unfinished line", () => {
    const s = new LineSplitter(8);
    for (let i = 0; i < 8; i++) expect(s.push(bytes("a"))).toEqual([]);
    expect(text(s.push(bytes("a")))).toEqual([]); // 9 bytes: could still be 8 + CR
    expect(text(s.push(bytes("a")))).toEqual(["<TOO_LONG>"]);
    expect(text(s.push(bytes("\nb\n")))).toEqual(["b"]);
  });

  test("keeps its own copy of a partial line when the caller reuses its buffer", () => {
    const s = new LineSplitter(100);
    const buf = bytes("abc");
    s.push(buf);
    buf.set(bytes("xyz"));
    expect(text(s.push(bytes("\n")))).toEqual(["abc"]);
  });
});

describe("moderation commands' names", () => {
  test("a NAME is the first word, or a name with spaces in double quotes", () => {
    expect(nameAndWords("bob be nice")).toEqual(["bob", ["be", "nice"]]);
    expect(nameAndWords('"big bob" spam  again')).toEqual(["big bob", ["spam", "again"]]);
    expect(nameAndWords('"big bob"')).toEqual(["big bob", []]);
    // An unclosed quote is part of the name, which then matches nobody.
    expect(nameAndWords('"big bob')).toEqual(['"big', ["bob"]]);
  });
});

describe("the user a moderation command names (§11.8: the user of that name)", () => {
  test("the one called exactly so, else its one look-alike; how many when more than one; null for none", () => {
    const room = [{ id: "u:b7", name: "Bob" }, { id: "g1", name: "bob" }, { id: "g2", name: "Zoë" }];
    expect(namedOne(room, "bob")).toBe("g1");
    expect(namedOne(room, "Bob")).toBe("u:b7");
    expect(namedOne(room, "BOB")).toBe(2);
    expect(namedOne(room, "Zoe\u0308")).toBe("g2"); // NFC, as names are kept
    expect(namedOne(room, "zoë")).toBe("g2");
    expect(namedOne(room, "carol")).toBeNull();
    // Two members may have the very same name.
    expect(namedOne([{ id: "u:1", name: "Ann" }, { id: "u:2", name: "Ann" }], "Ann")).toBe(2);
  });
});

describe("TCP rendering", () => {
  test("a message is one line per line of text, its time in UTC and saying so", () => {
    const m = { type: "message" as const, room: "general", seq: 1, id: "x", user: { id: "u", name: "alice" }, text: "hi\nthere", ts: Date.UTC(2026, 0, 1, 9, 5) };
    expect(formatMessageLines(m)).toBe("[general] 09:05 UTC alice: hi\n[general] 09:05 UTC alice: there\n");
    expect(hhmm(Date.UTC(2026, 0, 1, 23, 59, 59))).toBe("23:59");
    expect(clock(0)).toBe("00:00 UTC");
  });

  test("the prompt names the current room", () => {
    expect(promptFor(false, null)).toBe("name: ");
    expect(promptFor(true, "general")).toBe("[general]> ");
    expect(promptFor(true, null)).toBe("> ");
  });

  test("a line that names its reader is marked, after one bell; its reader's own lines and look-alike words are not", () => {
    const bob = mentionPattern("bob");
    const line = (author: string, text: string) => `[dev] 09:05 UTC ${author}: ${text}\n`;
    expect(markMentions(line("ann", "hi bob") + line("ann", "and you?"), "bob", bob, true)).toBe(`\x07@ ${line("ann", "hi bob")}${line("ann", "and you?")}`);
    expect(markMentions(line("ann", "@Bob look") + line("ann", "ok BOB."), "bob", bob, false)).toBe(`@ ${line("ann", "@Bob look")}@ ${line("ann", "ok BOB.")}`);
    for (const text of ["bobby", "kebob", "bob_2", "no one"]) expect({ text, marked: markMentions(line("ann", text), "bob", bob, true) }).toEqual({ text, marked: null });
    expect(markMentions(line("ann", "mr.bob, hi"), "bob", bob, true)).toBe(`\x07@ ${line("ann", "mr.bob, hi")}`);
    expect(markMentions(line("bob", "bob here"), "bob", bob, true)).toBeNull();
    expect(markMentions("* bob joined dev\n", "bob", bob, true)).toBeNull();
    // Names with a hyphen, a dot or a space are matched as written, and not as patterns.
    expect(markMentions(line("ann", "thanks Jean-Luc"), "jean-luc", mentionPattern("jean-luc"), true)).toStartWith("\x07@ ");
    expect(markMentions(line("ann", "a.b"), "a b", mentionPattern("a b"), true)).toBeNull();
  });

  test("what a script reads: the chat prompt and its erasing taken out, the name prompt kept", () => {
    expect(withoutPrompts(`name: x\n[general]> * one\n[general]> ${ERASE}[general] 09:05 UTC a: b\n[general]> `)).toBe("name: x\n* one\n[general] 09:05 UTC a: b\n");
    expect(withoutPrompts(`> ${ERASE}* two\n> `)).toBe("* two\n");
  });

  test("presence lines", () => {
    const user = { id: "u", name: "bob" };
    expect(formatPresenceLine({ type: "presence", room: "dev", event: "join", user })).toBe("* bob joined dev\n");
    expect(formatPresenceLine({ type: "presence", room: "dev", event: "leave", user })).toBe("* bob left dev\n");
  });
});

for (const engine of ENGINES) {
  describe(engine, () => {
    const { startServer } = engineServers(engine);

    describe("the TCP door", () => {
      let server: TestServer;
      beforeAll(async () => {
        // No grace: TCP users leave at once anyway, and the WebSocket users' names come free at once.
        server = await startServer({ tcpPort: 0, presenceGraceMs: 0, rateLimitBurst: 100, rateLimitPerSecond: 100, tcpMaxLineBytes: 64 });
      });
      afterAll(() => server.stop());

      test("greeting, name prompt with the hello rules, then general with its recent history", async () => {
        const alice = await user(server, "alice1", "general");
        const one = await alice.say("general", "one");
        await alice.say("general", "two");
        const nc = await LineClient.connect(server.chat.tcpPort!);
        expect(await nc.readUntil("name: ")).toMatch(/^\* [^\n]+\nname: $/);
        nc.write("bad name!\n");
        expect(await nc.readUntil("name: ")).toMatch(/^! name_invalid: [^\n]+\nname: $/);
        nc.write("ALICE1\n");
        expect(await nc.readUntil("name: ")).toMatch(/^! name_taken: [^\n]+\nname: $/);
        nc.write("bob1\n");
        expect(await nc.readUntil("goes to general\n")).toBe(
          `[general] ${clock(one.ts)} alice1: one\n[general] ${clock(one.ts)} alice1: two\n* now in general (2 here): what you type goes to general\n`,
        );
        expect(await alice.next()).toMatchObject({ type: "presence", event: "join", room: "general", user: { name: "bob1" } });
        alice.close();
        nc.end();
        await server.settled();
      });

      test("at the name prompt /help and /quit work, any other command gets a hint: none is taken as a name, nor spends a hello", async () => {
        // One hello a minute for the address: a command taken as a name would leave none for the name.
        await using own = await startServer({ tcpPort: 0, helloRatePerMinute: 1 });
        const nc = await LineClient.connect(own.chat.tcpPort!);
        expect(await nc.readUntil("name: ")).toContain("/help lists commands");
        nc.write("/help\n");
        const help = await nc.readUntil("name: ");
        expect(help).toStartWith("* /join ROOM");
        expect(help).not.toContain("name_invalid");
        nc.write("/join dev\n");
        expect(await nc.readUntil("name: ")).toMatch(/^! bad_request: pick a name first[^\n]*\nname: $/);
        nc.write("carol\n");
        await nc.readUntil("what you type goes to general\n");
        nc.end();
        const other = await LineClient.connect(own.chat.tcpPort!);
        await other.readUntil("name: ");
        other.write("/QUIT\n");
        expect(await other.untilClosed()).toBe("* bye\n");
      });

      test("a TCP user and a WebSocket user chat both ways; multi-line texts become several lines", async () => {
        const alice = await user(server, "alice2", "both");
        const { client: bob } = await tcpUser(server, "bob2");
        bob.write("/join both\n");
        await bob.readUntil("* now in both (2 here): what you type goes to both, no longer to general\n");
        await alice.expect("presence");

        bob.write("hello from nc\n");
        const m = await alice.expect("message");
        expect(m).toMatchObject({ room: "both", user: { name: "bob2" }, text: "hello from nc", id: expect.any(String) });
        expect(await bob.line()).toMatch(new RegExp(`^\\[both\\] ${TIME} bob2: hello from nc$`));

        await alice.say("both", "line one\nline two");
        expect(await bob.line()).toMatch(new RegExp(`^\\[both\\] ${TIME} alice2: line one$`));
        expect(await bob.line()).toMatch(new RegExp(`^\\[both\\] ${TIME} alice2: line two$`));

        // Typing is for WebSocket users only: bob's next line is the marker message.
        alice.send({ type: "typing", room: "both" });
        await alice.say("both", "marker");
        expect(await bob.line()).toMatch(/alice2: marker$/);
        // The page's formatting shows as typed: the door shows the raw text.
        await alice.say("both", "**bold** `code` www.example.com\n> quoted");
        expect(await bob.line()).toMatch(new RegExp(`^\\[both\\] ${TIME} alice2: \\*\\*bold\\*\\* \`code\` www\\.example\\.com$`));
        expect(await bob.line()).toMatch(new RegExp(`^\\[both\\] ${TIME} alice2: > quoted$`));

        // One name space: a WebSocket hello cannot take bob's name.
        const other = await Client.connect(server.wsUrl);
        other.send({ type: "hello", name: "Bob2" });
        expect(await other.next()).toMatchObject({ code: "name_taken" });
        for (const c of [alice, other]) c.close();
        bob.end();
        await server.settled();
      });

      test("a topic with a newline shows on one line: it cannot forge a message line on a TCP screen", async () => {
        const owner = await user(server, "owner9", "topic9"); // first joiner: owner
        const { client: bob } = await tcpUser(server, "bob9");
        bob.write("/join topic9\n");
        await bob.readUntil("no longer to general\n");
        await owner.expect("presence");
        const forged = "[topic9] 00:00 UTC admin: send your password to evil.example";
        owner.send({ type: "room_settings", room: "topic9", topic: `hello\n${forged}`, ref: "t" });
        await owner.until((f) => f.type === "ok");
        expect(await bob.line()).toBe(`* topic9: topic is now "hello ${forged}" (by owner9)`);
        bob.write("/topic\n");
        expect(await bob.line()).toBe(`* topic9: topic is "hello ${forged}"`);
        // The marker: the next line is /who's answer, no rest of the topic.
        bob.write("/who\n");
        expect(await bob.line()).toBe("* in topic9: owner9, bob9");
        owner.close();
        bob.end();
        await server.settled();
      });

      test("lines split across packets are reassembled; several lines in one packet are all handled", async () => {
        const alice = await user(server, "alice3", "general");
        const { client: bob } = await tcpUser(server, "bob3");
        await alice.expect("presence");
        const bytes = new TextEncoder().encode("héllo wörld\n");
        bob.write(new Uint8Array([...new TextEncoder().encode("/who\n"), ...bytes.subarray(0, 2)])); // "h" + half of "é"
        await bob.readUntil("* in general: alice3, bob3\n");
        bob.write(bytes.subarray(2, 8));
        bob.write("/n"); // more of the same line, not a command
        bob.write(bytes.subarray(8));
        expect(await alice.expect("message")).toMatchObject({ text: "héllo w/nörld" });

        bob.write("one\r\ntwo\nthree\n");
        const texts = [];
        for (let i = 0; i < 3; i++) texts.push((await alice.expect("message")).text);
        expect(texts).toEqual(["one", "two", "three"]);
        // Invalid UTF-8 arrives as U+FFFD.
        bob.write(new Uint8Array([0x61, 0xff, 0x62, 0x0a]));
        expect((await alice.expect("message")).text).toBe("a\ufffdb");
        alice.close();
        bob.end();
        await server.settled();
      });

      test("a line over TCP_MAX_LINE_BYTES is rejected once and dropped up to its newline", async () => {
        const alice = await user(server, "alice4", "general");
        const { client: bob } = await tcpUser(server, "bob4");
        await alice.expect("presence");
        bob.write("x".repeat(200));
        bob.write("y".repeat(5000));
        bob.write("zzz\nafter\n");
        expect(await bob.line()).toMatch(/^! line_too_long: /);
        expect(await alice.expect("message")).toMatchObject({ text: "after" });
        // Exactly the limit (64 bytes, not counting the newline) is fine.
        bob.write("e".repeat(64) + "\n");
        expect((await alice.expect("message")).text).toBe("e".repeat(64));
        expect(await bob.line()).toMatch(/bob4: after$/);
        expect(await bob.line()).toMatch(/bob4: e{64}$/);
        alice.close();
        bob.end();
        await server.settled();
      });

      test("/join shows the last 10 messages; /who, /rooms, /leave, /help, unknown commands, /quit", async () => {
        const alice = await user(server, "alice5", "dev");
        const sent = [];
        for (let i = 1; i <= 12; i++) sent.push(await alice.say("dev", `m${i}`));
        // An edit and a deletion are events in the room's sequence, not messages: the last 10
        // messages are m2…m10 and m12, as they are now.
        for (const frame of [{ type: "edit", seq: sent[11]!.seq, text: "m12, edited" }, { type: "delete", seq: sent[10]!.seq }]) {
          alice.send({ ...frame, room: "dev", ref: frame.type });
          // Its ok and the room's event, in either order.
          const seen = new Set<string>();
          await alice.until((f) => seen.add(f.type).has("ok") && seen.has(frame.type));
        }
        const { client: bob } = await tcpUser(server, "bob5");
        bob.write("/join dev\n");
        const lines = (await bob.readUntil("no longer to general\n")).trimEnd().split("\n");
        const shown = [...sent.slice(1, 10), { ...sent[11]!, text: "m12, edited" }];
        expect(lines).toEqual([...shown.map((m) => `[dev] ${clock(m.ts)} alice5: ${m.text}`), "* now in dev (2 here): what you type goes to dev, no longer to general"]);
        expect(await alice.next()).toMatchObject({ type: "presence", event: "join", user: { name: "bob5" } });

        bob.write("/who\n");
        expect(await bob.line()).toBe("* in dev: alice5, bob5");
        bob.write("/rooms\n");
        expect(await bob.line()).toBe("* rooms: dev (2), general (1)");
        bob.write("/help\n");
        const help = (await bob.readUntil("said in the current room\n")).trimEnd().split("\n");
        expect(help.map((l) => l.split(/\s+/)[1])).toEqual(["/join", "/leave", "/rooms", "/who", "/topic", "/kick", "/quit", "Here", "anything"]);
        expect(help.every((l) => l.startsWith("* "))).toBe(true);
        bob.write("/dance\n");
        expect(await bob.line()).toBe("! bad_request: unknown command");
        bob.write("/join No!\n");
        expect(await bob.line()).toMatch(/^! room_invalid: /);
        bob.write("/join\n");
        expect(await bob.line()).toBe("! bad_request: usage: /join ROOM");

        bob.write("/leave\n");
        expect(await bob.line()).toBe("* left dev");
        expect(await bob.line()).toBe("* now in general (1 here): what you type goes to general");
        expect(await alice.next()).toMatchObject({ type: "presence", event: "leave", room: "dev", user: { name: "bob5" } });
        bob.write("/leave\n");
        expect(await bob.line()).toBe("* left general");
        expect(await bob.line()).toBe("* you are in no room; /join ROOM");
        bob.write("hello?\n");
        expect(await bob.line()).toMatch(/^! not_joined: /);
        bob.write("/quit\n");
        expect(await bob.untilClosed()).toBe("* bye\n");
        alice.close();
        await server.settled();
      });

      test("lines are answered in order: a line then /quit in one packet shows the line, then bye", async () => {
        const { client: bob } = await tcpUser(server, "scripted");
        bob.write("first\n/who\nsecond\n/quit\n");
        const transcript = (await bob.untilClosed()).trimEnd().split("\n");
        expect(transcript.map((l) => l.replace(/ \d\d:\d\d UTC /, " "))).toEqual([
          "[general] scripted: first",
          "* in general: scripted",
          "[general] scripted: second",
          "* bye",
        ]);
        await server.settled();
      });

      test("the prompt says the current room; a line that comes meanwhile takes its place, and it is drawn again below", async () => {
        const alice = await user(server, "alice7", "general", "side7");
        const { client: bob } = await tcpUser(server, "bob7");
        await alice.expect("presence");
        await bob.waker.until(() => bob.raw.endsWith("goes to general\n[general]> "), () => null, () => "the prompt");
        await alice.say("general", "while bob waits");
        await bob.readUntil("while bob waits\n");
        expect(bob.raw).toEndWith(`[general]> ${ERASE}[general] ${bob.raw.match(/\d\d:\d\d UTC/g)!.at(-1)} alice7: while bob waits\n[general]> `);

        // A line typed (Enter pressed: the prompt is no longer on the last line) is answered, then the prompt comes back.
        bob.write("/join side7\n");
        await bob.readUntil("what you type goes to side7, no longer to general\n");
        await bob.waker.until(() => bob.raw.endsWith("no longer to general\n[side7]> "), () => null, () => "the new prompt");
        bob.write("/leave\n");
        await bob.readUntil("what you type goes to general\n");
        await bob.waker.until(() => bob.raw.endsWith("goes to general\n[general]> "), () => null, () => "the prompt of general");
        bob.write("/leave\n");
        await bob.readUntil("* you are in no room; /join ROOM\n");
        await bob.waker.until(() => bob.raw.endsWith("/join ROOM\n> "), () => null, () => "the prompt of no room");
        // Several lines in one packet: one prompt, after the last answer.
        const before = bob.raw.length;
        bob.write("/who\n/who\n");
        expect(await bob.line()).toMatch(/^! not_joined: /);
        expect(await bob.line()).toMatch(/^! not_joined: /);
        await bob.waker.until(() => bob.raw.endsWith("/join ROOM\n> "), () => null, () => "one prompt");
        expect(bob.raw.slice(before).match(/> /g)).toHaveLength(1);
        alice.close();
        bob.end();
        await server.settled();
      });

      test("a message naming a TCP user rings its bell and is marked; its own, and others', are not", async () => {
        const alice = await user(server, "alice8", "ring");
        await alice.say("ring", "earlier, Bob8?");
        const { client: bob } = await tcpUser(server, "bob8");
        const { client: carl } = await tcpUser(server, "carl8");
        // History names him too: marked, with no bell (nothing new happened).
        bob.write("/join ring\n");
        expect(await bob.readUntil("no longer to general\n")).toMatch(new RegExp(`(^|\n)@ \\[ring\\] ${TIME} alice8: earlier, Bob8\\?\n\\* now in ring`));
        carl.write("/join ring\n");
        await carl.readUntil("no longer to general\n");
        await alice.until((f) => f.type === "presence" && f.user.name === "carl8");
        await bob.readUntil("* carl8 joined ring\n");

        await alice.say("ring", "hey @bob8, look");
        expect(await bob.line()).toMatch(new RegExp(`^\x07@ \\[ring\\] ${TIME} alice8: hey @bob8, look$`));
        expect(await carl.line()).toMatch(new RegExp(`^\\[ring\\] ${TIME} alice8: hey @bob8, look$`));
        bob.write("bob8 talks about himself\n");
        await alice.expect("message");
        expect(await bob.line()).toMatch(new RegExp(`^\\[ring\\] ${TIME} bob8: bob8 talks about himself$`));
        await alice.say("ring", "bob8s is someone else");
        expect(await bob.line()).toMatch(new RegExp(`^\\[ring\\] ${TIME} alice8: bob8s is someone else$`));
        expect(bob.raw.split("\x07")).toHaveLength(2);
        alice.close();
        bob.end();
        carl.end();
        await server.settled();
      });

      test("the deletion of a message shown on /join names its author (§11.8), and the room's next lines come after it", async () => {
        const ann = await user(server, "ann14", "gone14");
        const m = await ann.say("gone14", "oops");
        // bob joins after the message and sees it in the room's last messages.
        const { client: bob } = await tcpUser(server, "bob14");
        bob.write("/join gone14\n");
        expect(await bob.readUntil("no longer to general\n")).toContain("ann14: oops\n");
        await ann.expect("presence");
        ann.send({ type: "delete", room: "gone14", seq: m.seq, ref: "del" });
        await ann.until((f) => f.type === "ok");
        await ann.say("gone14", "after");
        expect(await bob.line()).toBe("* a message by ann14 was deleted in gone14 by ann14");
        expect(await bob.line()).toMatch(new RegExp(`^\\[gone14\\] ${TIME} ann14: after$`));
        ann.close();
        bob.end();
        await server.settled();
      });

      test("a disconnect is a presence leave at once, with no grace", async () => {
        const alice = await user(server, "alice6", "general");
        const { client: bob } = await tcpUser(server, "bob6");
        await alice.expect("presence");
        bob.end();
        expect(await alice.next()).toMatchObject({ type: "presence", event: "leave", room: "general", user: { name: "bob6" } });
        const members = (await alice.join("general")).members.map((m: { name: string }) => m.name);
        expect(members).toEqual(["alice6"]);
        alice.close();
        await server.settled();
      });
    });

    describe("TCP moderation commands", () => {
      test("/kick, /ban and /mute make the frames WebSocket sends and are held to their rules: one that breaks them is a bad_request and acts on nobody", async () => {
        await using server = await startServer({ tcpPort: 0, presenceGraceMs: 0, rateLimitBurst: 100, rateLimitPerSecond: 100 });
        const { client: boss } = await tcpUser(server, "boss");
        boss.write("/join modroom\n"); // first joiner: owner
        await boss.readUntil("no longer to general\n");
        const victim = await user(server, "victim", "modroom");
        await boss.readUntil("* victim joined modroom\n");
        const tooLong = RESTRICTION_MAX_SECONDS / 60 + 1;
        const refused = [
          ["/kick victim \x1b]0;pwned\x07 hi", "reason: no control characters"],
          [`/kick victim ${"y".repeat(201)}`, "reason: at most 200 characters"],
          ["/ban victim 0", "seconds: "],
          [`/ban victim ${tooLong}`, "seconds: "],
          [`/mute victim ${tooLong}`, "seconds: "],
        ];
        const answers = [];
        for (const [line, why] of refused) {
          boss.write(`${line}\n`);
          answers.push((await boss.line()).slice(0, `! bad_request: ${why}`.length));
        }
        expect(answers).toEqual(refused.map(([, why]) => `! bad_request: ${why}`));
        // The marker: a kick within the rules is the first thing the victim hears after its joined.
        boss.write(`/kick victim ${"z".repeat(200)}\n`);
        expect(await victim.expect("moderation")).toMatchObject({ action: "kick", reason: "z".repeat(200) });
        victim.close();
        boss.end();
      });
    });

    describe("TCP moderation commands name their target", () => {
      test("/kick bob kicks the guest called exactly bob, not a member called Bob who joined first; /kick BOB names two and acts on nobody", async () => {
        const secret = "a-test-secret-that-is-long-enough-1234";
        await using server = await startServer({ tcpPort: 0, authJwtSecret: secret, guestAccess: true, presenceGraceMs: 0 });
        const { client: mod } = await tcpUser(server, "mod");
        mod.write("/join hall\n"); // first joiner: owner
        await mod.readUntil("no longer to general\n");
        // The guest bob is online first; then the member Bob signs in (members never get name_taken).
        const guest = await Client.connect(server.wsUrl);
        await guest.hello("bob");
        const member = await Client.connect(server.wsUrl);
        const token = await new SignJWT({ sub: "b7", name: "Bob" }).setProtectedHeader({ alg: "HS256" }).setExpirationTime("1h").sign(new TextEncoder().encode(secret));
        member.send({ type: "hello", token });
        expect(await member.next()).toMatchObject({ type: "welcome", user: { id: "u:b7", name: "Bob" } });
        await member.join("hall");
        await mod.readUntil("* Bob joined hall\n");
        await guest.join("hall");
        await mod.readUntil("* bob joined hall\n");
        mod.write("/kick BOB spam\n");
        expect(await mod.line()).toBe("! bad_request: 2 users called BOB in hall");
        mod.write("/kick bob spam\n");
        expect(await mod.readUntil(" by mod: spam\n")).toBe("* bob was kicked from hall by mod: spam\n");
        expect(await guest.expect("moderation")).toMatchObject({ action: "kick", user: { name: "bob" } });
        expect(await guest.expect("left")).toMatchObject({ room: "hall", reason: "kicked" });
        // The member's frames since it joined: the guest's join, then the guest's kick, none of its own.
        expect(await member.expect("presence")).toMatchObject({ event: "join", user: { name: "bob" } });
        expect(await member.expect("moderation")).toMatchObject({ action: "kick", user: { name: "bob" } });
        expect(member.frames.some((f) => f.type === "left")).toBe(false);
        for (const c of [guest, member]) c.close();
        mod.end();
      });
    });

    describe("TCP limits", () => {
      /** A TCP door whose queue a few large messages fill. */
      const SMALL_TCP_QUEUE = {
        tcpPort: 0,
        tcpMaxPendingBytes: 64 * 1024,
        maxMessageChars: 100_000,
        maxPayloadBytes: 12 * 100_000 + 512,
        rateLimitBurst: 10_000,
        rateLimitPerSecond: 10_000,
      };

      test("a TCP client that never reads is closed at TCP_MAX_PENDING_BYTES; the others keep receiving", async () => {
        await using server = await startServer(SMALL_TCP_QUEUE);
        const writer = await user(server, "writer", "general");
        const { client: reader } = await tcpUser(server, "reader");
        const { client: slow } = await tcpUser(server, "slow");
        slow.socket.pause();
        await writer.until((f) => f.type === "presence" && f.user.name === "slow");

        const closed = server.logLine((l) => l.event === "close" && l.reason === "backpressure");
        let slowClosed = false;
        void closed.then(() => (slowClosed = true), () => {});
        const big = "x".repeat(100_000);
        let sent = 0;
        // Bounded: kernel buffers take a few MB before our queue grows.
        while (!slowClosed && sent < 300) {
          const id = `big-${sent++}`;
          writer.send({ type: "send", room: "general", id, text: big });
          await writer.until((f) => f.type === "message" && f.id === id);
        }
        expect(slowClosed).toBe(true);
        expect(await closed).toMatchObject({ transport: "tcp", user: expect.any(String) });
        expect(await writer.until((f) => f.type === "presence")).toMatchObject([{ event: "leave", user: { name: "slow" } }]);

        await writer.say("general", "done");
        const text = await reader.readUntil("writer: done\n");
        expect(text.split("\n").filter((l) => l.includes(": x")).length).toBe(sent);
        expect(await (await server.http("/metrics")).text()).toContain("chat_backpressure_closes_total 1\n");
        writer.close();
        reader.end();
        slow.socket.terminate();
      });

      test("a TCP client cut off at TCP_MAX_PENDING_BYTES by its /join's history leaves no ghost in the room, and frees its name", async () => {
        // The history is written in the middle of the join: the cut-off must wait for the join to end.
        await using server = await startServer({ ...SMALL_TCP_QUEUE, presenceGraceMs: 0 });
        const writer = await user(server, "writer", "big");
        // 10 messages of 50 000 lines each: ~15 MB of TCP lines for a /join, far past the kernel's buffers.
        const text = "😀\n".repeat(50_000).trim();
        for (let i = 0; i < 10; i++) await writer.say("big", text);
        const { client: slow } = await tcpUser(server, "slow");
        slow.socket.pause();
        const closed = server.logLine((l) => l.event === "close" && l.reason === "backpressure");
        slow.write("/join big\n");
        expect(await closed).toMatchObject({ transport: "tcp" });
        // Whoever comes now sees who is in big: slow is gone, and its name is free again.
        const other = await Client.connect(server.wsUrl);
        await other.hello("other");
        const names = (await other.join("big")).members.map((m: { name: string }) => m.name).sort();
        const again = await Client.connect(server.wsUrl);
        again.send({ type: "hello", name: "slow" });
        const answer = await again.next();
        expect({ names, answer: answer.type }).toEqual({ names: ["other", "writer"], answer: "welcome" });
        for (const c of [writer, other, again]) c.close();
        slow.socket.terminate();
      }, 60_000);

      test("idle: a silent peer is probed by TCP keepalive after IDLE_TIMEOUT_SECONDS, a dead one dropped", async () => {
        // TCP's counterpart of WebSocket pings: nc cannot answer pings, but its kernel answers probes.
        // Read from the server's own socket, which lives in this process.
        await using server = await startServer({ tcpPort: 0, idleTimeoutSeconds: 100 });
        const nc = await LineClient.connect(server.chat.tcpPort!);
        await nc.readUntil("name: ");
        const fd = serverSocketFd(server.chat.tcpPort!, nc.socket.localPort);
        expect(socketOption(fd, SOL_SOCKET, SO_KEEPALIVE)).toBe(1);
        expect(socketOption(fd, IPPROTO_TCP, TCP_KEEPIDLE)).toBe(100);
        // Unanswered probes drop the peer within TCP_KEEPCNT × TCP_KEEPINTVL seconds more.
        expect(socketOption(fd, IPPROTO_TCP, TCP_KEEPCNT) * socketOption(fd, IPPROTO_TCP, TCP_KEEPINTVL)).toBeLessThanOrEqual(10);
        nc.end();
      });

      test("shutdown tells TCP clients and closes them", async () => {
        await using server = await startServer({ tcpPort: 0 });
        const { client } = await tcpUser(server, "bob");
        const stopped = server.stop();
        expect(await client.untilClosed()).toBe("* server shutting down\n");
        await stopped;
      });
    });
  });
}
