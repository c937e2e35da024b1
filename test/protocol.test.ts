/**
 * The client's frames: parsing (parseFrame), the rules for room names and message text, and what
 * a live server answers to bad input. Every bad frame gets an error and leaves the connection and
 * the room going; a bystander's message proves nothing of the bad frame reached anyone. The
 * bad-input suite runs on both engines.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { ClientFrameSchema, normalizeText, parseFrame, sendFrame } from "../src/protocol/rules.ts";
import { codePoints, isRoom } from "../src/protocol/wire.ts";
import { Client, ENGINES, engineServers, startServer, user, type TestServer } from "./helpers.ts";

describe("parseFrame", () => {
  const bad = (raw: string) => {
    const r = parseFrame(raw);
    if (r.ok) throw new Error(`parsed: ${raw}`);
    return r;
  };

  test("reads every client frame", () => {
    const frames = [
      { type: "hello", name: "alice" },
      { type: "hello", name: "alice", session: "tok", ref: "r1" },
      { type: "join", room: "general" },
      { type: "join", room: "general", since: 0 },
      { type: "leave", room: "general" },
      { type: "send", room: "general", id: "m1", text: "hi" },
      { type: "typing", room: "general" },
      { type: "history", room: "general", before: 10, after: 2, limit: 200 },
      { type: "ping" },
    ];
    for (const frame of frames) expect(parseFrame(JSON.stringify(frame))).toMatchObject({ ok: true, frame });
  });

  test("unknown fields are ignored", () => {
    expect(parseFrame('{"type":"ping","extra":1}')).toEqual({ ok: true, frame: { type: "ping" }, ref: undefined });
  });

  test("not JSON, not an object, no or unknown type → bad_request without a type", () => {
    expect(bad("{nope")).toEqual({ ok: false, message: "not JSON" });
    for (const raw of ["[]", "42", '"hello"', "null", "true"]) expect(bad(raw)).toEqual({ ok: false, message: "not a JSON object" });
    expect(bad("{}")).toEqual({ ok: false, message: "missing type" });
    expect(bad('{"type":"shout","ref":"r"}')).toEqual({ ok: false, ref: "r", message: "unknown type" });
    expect(bad('{"type":7}')).toEqual({ ok: false, message: "unknown type" });
  });

  test("a missing or mistyped field fails with the frame's type and ref", () => {
    expect(bad('{"type":"join","ref":"a"}')).toMatchObject({ type: "join", ref: "a" });
    expect(bad('{"type":"join","room":5}').message).toStartWith("room:");
    expect(bad('{"type":"hello"}').message).toStartWith("name:");
    expect(bad('{"type":"hello","name":"a","session":null}').message).toStartWith("session:");
    expect(bad('{"type":"send","room":"a","id":"x"}').message).toStartWith("text:");
    expect(bad('{"type":"send","room":"a","text":"x"}').message).toStartWith("id:");
  });

  test("since, before, after are integers ≥ 0 and limit is 1..200", () => {
    for (const since of [-1, 1.5, "3", null]) expect(bad(JSON.stringify({ type: "join", room: "a", since })).type).toBe("join");
    for (const limit of [0, 201, 2.5]) expect(bad(JSON.stringify({ type: "history", room: "a", limit })).type).toBe("history");
    expect(bad(JSON.stringify({ type: "history", room: "a", before: -3 })).type).toBe("history");
  });

  test("id is 1..64 code points; ref at most 64, else not echoed", () => {
    const id64 = "😀".repeat(64); // 128 UTF-16 units, 64 code points
    expect(parseFrame(JSON.stringify({ type: "send", room: "a", id: id64, text: "x" })).ok).toBe(true);
    expect(bad(JSON.stringify({ type: "send", room: "a", id: "x".repeat(65), text: "x", ref: "r" }))).toMatchObject({
      type: "send",
      ref: "r",
    });
    expect(bad(JSON.stringify({ type: "send", room: "a", id: "", text: "x" })).type).toBe("send");
    const longRef = bad(JSON.stringify({ type: "ping", ref: "r".repeat(65) }));
    expect(longRef).toMatchObject({ type: "ping", ref: undefined });
    expect(parseFrame(JSON.stringify({ type: "ping", ref: "r".repeat(64) }))).toMatchObject({ ok: true, ref: "r".repeat(64) });
  });

  test("the ref of a send is its id, even when the send is invalid", () => {
    expect(parseFrame('{"type":"send","room":"a","id":"m9","text":"x","ref":"other"}')).toMatchObject({ ok: true, ref: "m9" });
    expect(bad('{"type":"send","room":"a","id":"m9","text":7,"ref":"other"}').ref).toBe("m9");
    expect(bad('{"type":"join","ref":5}').ref).toBeUndefined();
  });
});

describe("rules", () => {
  test("rooms match ^[a-z0-9][a-z0-9_-]{0,31}$", () => {
    for (const room of ["general", "a", "0", "dev_ops-2", "a".repeat(32)]) expect(isRoom(room)).toBe(true);
    for (const room of ["", "General", "-a", "_a", "a b", "a".repeat(33), "é", "a.b", "a/b"]) expect(isRoom(room)).toBe(false);
  });

  test("text: CRLF → LF, trimmed, 1..max code points, no control characters but tab and newline", () => {
    expect(normalizeText("  hi\r\nthere\t ok  ", 100)).toBe("hi\nthere\t ok");
    expect(normalizeText("a\n\nb", 100)).toBe("a\n\nb");
    expect(normalizeText("😀".repeat(10), 10)).toBe("😀".repeat(10));
    expect(normalizeText("😀".repeat(11), 10)).toBeNull();
    expect(normalizeText("x".repeat(10), 10)).toBe("x".repeat(10));
    expect(normalizeText("x".repeat(11), 10)).toBeNull();
    expect(normalizeText(" x ".repeat(1) + " ".repeat(50), 10)).toBe("x");
    for (const text of ["", "   ", "\n\t", "a\u0000b", "a\u001bb", "a\u007fb", "a\u0085b", "a\u009fb", "a\rb", "a\u0008b"]) {
      expect(normalizeText(text, 100)).toBeNull();
    }
    expect(codePoints("a😀b")).toBe(3);
  });
});

for (const engine of ENGINES) {
  describe(engine, () => {
    const { startServer } = engineServers(engine);

    describe("bad input", () => {
      let server: TestServer;
      let bad: Client;
      let bystander: Client;
      let peer: Client;
      beforeAll(async () => {
        server = await startServer({ rateLimitBurst: 1000, rateLimitPerSecond: 1000 });
        bad = await user(server, "mallory", "shared");
        bystander = await user(server, "bystander", "shared");
        peer = await user(server, "peer", "shared");
        await bad.until((f) => f.type === "presence" && f.user.name === "peer");
        await bystander.expect("presence");
      });
      afterAll(() => server.stop());

      const cases: [string, string, object][] = [
        ["not JSON", "{oops", { code: "bad_request" }],
        ["an array", "[1,2]", { code: "bad_request" }],
        ["a number", "42", { code: "bad_request" }],
        ["no type", '{"room":"shared"}', { code: "bad_request" }],
        ["an unknown type", '{"type":"shout","ref":"u1"}', { code: "bad_request", ref: "u1" }],
        ["a missing field", '{"type":"send","room":"shared","text":"x","ref":"m1"}', { code: "bad_request", ref: "m1" }],
        ["a field of the wrong type", '{"type":"join","room":7,"ref":"w1"}', { code: "bad_request", ref: "w1" }],
        ["an over-long id", JSON.stringify({ type: "send", room: "shared", id: "i".repeat(65), text: "x" }), { code: "bad_request" }],
        ["an over-long ref", JSON.stringify({ type: "ping", ref: "r".repeat(65) }), { code: "bad_request" }],
        ["a negative since", '{"type":"join","room":"x","since":-1}', { code: "bad_request" }],
        ["a bad room name", '{"type":"join","room":"No Spaces","ref":"r"}', { code: "room_invalid", ref: "r" }],
        ["a bad room before not_joined", '{"type":"send","room":"NOPE","id":"s1","text":"x"}', { code: "room_invalid", ref: "s1" }],
        ["a send to a room not joined", '{"type":"send","room":"other","id":"s2","text":"x"}', { code: "not_joined", ref: "s2" }],
        ["an empty text", '{"type":"send","room":"shared","id":"s3","text":"  \\n "}', { code: "text_invalid", ref: "s3" }],
        ["a control character", '{"type":"send","room":"shared","id":"s4","text":"a\\u0007b"}', { code: "text_invalid", ref: "s4" }],
        ["an over-long text", JSON.stringify({ type: "send", room: "shared", id: "s5", text: "x".repeat(2001) }), { code: "text_invalid", ref: "s5" }],
        ["a second hello", '{"type":"hello","name":"again","ref":"h"}', { code: "bad_request", ref: "h" }],
        ["a leave of a room not joined", '{"type":"leave","room":"other"}', { code: "not_joined" }],
      ];

      for (const [what, raw, expected] of cases) {
        test(`${what} → an error; the connection and the room go on`, async () => {
          bad.sendRaw(raw);
          const error = await bad.next();
          expect(error).toMatchObject({ type: "error", ...expected, message: expect.any(String) });
          if (!("ref" in expected)) expect(error.ref).toBeUndefined();
          // The bystander keeps chatting, and nothing of the bad frame reached anyone else.
          const m = await bystander.say("shared", `still fine after ${what}`);
          expect(await peer.next()).toEqual(m);
          expect(await bad.next()).toEqual(m);
        });
      }

      test("a text of exactly MAX_MESSAGE_CHARS code points is accepted", async () => {
        const text = "😀".repeat(2000);
        const m = await bad.say("shared", text);
        expect(m.text).toBe(text);
        expect(await bystander.next()).toEqual(m);
        expect(await peer.next()).toEqual(m);
      });

      test("a frame before hello gets not_ready; ping is answered; hello then works", async () => {
        const c = await Client.connect(server.wsUrl);
        c.send({ type: "join", room: "shared", ref: "early" });
        expect(await c.next()).toMatchObject({ type: "error", code: "not_ready", ref: "early" });
        c.send({ type: "join" }); // even an invalid frame of a known type
        expect(await c.next()).toMatchObject({ code: "not_ready" });
        c.send({ type: "ping", ref: "p" });
        expect(await c.next()).toEqual({ type: "pong", ref: "p" });
        c.send({ type: "hello", name: "bad name!", ref: "n" });
        expect(await c.next()).toMatchObject({ type: "error", code: "name_invalid", ref: "n" });
        c.send({ type: "hello", name: "PEER" });
        expect(await c.next()).toMatchObject({ type: "error", code: "name_taken" });
        c.send({ type: "hello", name: "x".repeat(40) });
        expect(await c.next()).toMatchObject({ type: "error", code: "name_invalid" });
        expect((await c.hello("  newcomer  ")).user.name).toBe("newcomer");
        c.close();
      });

      test("a binary frame → unsupported, then close 1003", async () => {
        const c = await user(server, "binary");
        c.sendRaw(new Uint8Array([1, 2, 3]));
        expect(await c.next()).toMatchObject({ type: "error", code: "unsupported" });
        expect(await c.closed).toEqual({ code: 1003, reason: "binary frames are not supported" });
        const m = await bystander.say("shared", "after the binary frame");
        expect(await peer.next()).toEqual(m);
        expect(await bad.next()).toEqual(m);
      });

      test("a frame over MAX_PAYLOAD_BYTES closes with 1009", async () => {
        const c = await user(server, "huge");
        c.sendRaw(JSON.stringify({ type: "send", room: "shared", id: "x", text: "x".repeat(40_000) }));
        expect((await c.closed).code).toBe(1009);
        const m = await bystander.say("shared", "after the huge frame");
        expect(await peer.next()).toEqual(m);
        expect(await bad.next()).toEqual(m);
      });
    });
  });
}

// The rest run on SQLite, the default engine, only.
describe("frames that were mishandled", () => {
  test("lone surrogates: text_invalid in text, bad_request in id and ref; ids no longer collide", async () => {
    await using server = await startServer();
    const a = await user(server, "a", "r");
    const b = await user(server, "b", "r");
    await a.expect("presence");
    a.sendRaw('{"type":"send","room":"r","id":"ok-1","text":"x\\ud800y"}');
    expect(await a.next()).toMatchObject({ type: "error", code: "text_invalid", ref: "ok-1" });
    a.sendRaw('{"type":"send","room":"r","id":"id\\ud800","text":"first"}');
    a.sendRaw('{"type":"send","room":"r","id":"id\\ud801","text":"second"}');
    expect((await a.next()).code).toBe("bad_request");
    expect((await a.next()).code).toBe("bad_request");
    a.sendRaw('{"type":"ping","ref":"r\\udc00"}');
    expect((await a.next()).code).toBe("bad_request");
    // A well-formed astral character is fine, live and in history alike.
    const m = await a.say("r", "ok 😀");
    expect(await b.next()).toEqual(m);
    const page = await (await server.http("/api/rooms/r/messages")).json();
    expect(page.messages).toEqual([m]);
    a.close();
    b.close();
  });

  test("a maximal message with every astral character escaped as a surrogate pair is accepted (24 KB frame)", async () => {
    await using server = await startServer();
    const c = await user(server, "python", "r");
    const escaped = "\\ud83d\\ude00".repeat(2000);
    const frame = `{"type": "send", "room": "r", "id": "json.dumps", "text": "${escaped}"}`;
    expect(frame.length).toBeGreaterThan(24_000);
    c.sendRaw(frame);
    const m = await c.expect("message");
    expect(m.text).toBe("😀".repeat(2000));
    c.close();
  });
});

describe("the hand-checked send (parseFrame's hot path)", () => {
  test("accepts exactly what the zod schema accepts, with the same output, on every combination of edge values", () => {
    const absent = Symbol("absent");
    const values = {
      room: [absent, "general", "", 7, null],
      id: [absent, "", "a", "x".repeat(64), "x".repeat(65), "😀".repeat(64), "😀".repeat(65), "a\ud800", 12, null],
      text: [absent, "hello", "", 3, null, ["x"]],
      replyTo: [absent, 1, 42, 0, -1, 2.5, "1", 2 ** 53 - 1, 2 ** 53, null, Number.NaN],
      ref: [absent, "", "r1", "y".repeat(64), "y".repeat(65), "\udc00", 5],
    } as const;
    const keys = Object.keys(values) as (keyof typeof values)[];
    let accepted = 0;
    let combos = 0;
    const walk = (i: number, frame: Record<string, unknown>) => {
      if (i === keys.length) {
        combos++;
        for (const extra of [{}, { extra: 1, user: "someone" }]) {
          const fields = { ...frame, ...extra };
          const zod = ClientFrameSchema.safeParse(fields);
          const fast = sendFrame(fields);
          expect({ fields, out: fast }).toEqual({ fields, out: zod.success ? zod.data : null });
          if (fast) accepted++;
        }
        return;
      }
      for (const v of values[keys[i]!]) walk(i + 1, v === absent ? frame : { ...frame, [keys[i]!]: v });
    };
    walk(0, { type: "send" });
    expect(combos).toBe(5 * 10 * 6 * 11 * 7);
    // Some of each: the check is not vacuous.
    expect(accepted).toBeGreaterThan(100);
    expect(accepted).toBeLessThan(combos);
  });

  test("parseFrame answers a bad send with the schema's message, as before", () => {
    expect(parseFrame(JSON.stringify({ type: "send", room: "r", id: "", text: "x" }))).toMatchObject({ ok: false, type: "send" });
    expect(parseFrame(JSON.stringify({ type: "send", room: "r", id: "i", text: "x", replyTo: 0 }))).toMatchObject({ ok: false, type: "send", ref: "i" });
    expect(parseFrame(JSON.stringify({ type: "send", room: "r", id: "i", text: "x", replyTo: 3, extra: true }))).toEqual({
      ok: true,
      frame: { type: "send", room: "r", id: "i", text: "x", replyTo: 3 },
      ref: "i",
    });
  });
});
