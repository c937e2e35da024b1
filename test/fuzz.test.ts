/**
 * Protocol fuzzing: random and mutated frames from a welcomed client and from one that never
 * says hello, against a real server. Seeded and bounded, so a failure is reproducible:
 * FUZZ_SEED=<seed> bun test test/fuzz.test.ts. Every answer must be a documented frame with a
 * documented error code, the fuzzer's connection must stay open, and observers in the room must
 * see nothing but well-formed frames.
 */
import { describe, expect, test } from "bun:test";
import { Client, type Frame, startServer, user } from "./helpers.ts";

const SEED = Number(process.env.FUZZ_SEED ?? 20261123);
/** Bounds the frames each fuzzing client sends. */
const FRAMES = 1500;
const PRE_HELLO_FRAMES = 200;

/** mulberry32: a small seeded PRNG, so every run with one seed sends the same frames. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const JUNK = ["", " ", "fuzz", "FUZZ", "a".repeat(70), "\u0000", "\u202e", "\ud800", "😀", "\u3164", "../x", "<b>", "%00", "null", "-1"];
const TYPES = ["hello", "join", "leave", "send", "typing", "history", "ping", "welcome", "HELLO", "", "message"];

function generator(random: () => number) {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;
  const int = (n: number) => Math.floor(random() * n);
  const value = (depth = 0): unknown =>
    pick([
      () => pick(JUNK),
      () => int(1000) - 10,
      () => random() * 1e20,
      () => random() < 0.5,
      () => null,
      () => (depth < 2 ? [value(depth + 1)] : []),
      () => (depth < 2 ? { k: value(depth + 1) } : {}),
      () => pick(["fuzz", "other", "r-" + int(5)]),
      () => 2 ** 53 + int(10),
    ])();
  const valid = (): Record<string, unknown> =>
    pick([
      () => ({ type: "join", room: pick(["fuzz", "other", "r-" + int(3)]), ...(random() < 0.5 ? { since: int(20) } : {}) }),
      () => ({ type: "leave", room: pick(["fuzz", "other", "nowhere"]) }),
      () => ({ type: "send", room: pick(["fuzz", "other"]), id: `id-${int(50)}`, text: pick(["hi", " spaced ", "multi\r\nline", "😀", "x".repeat(int(300)), " ", "bell\u0007", "lone\ud800", "x".repeat(2001)]) }),
      () => ({ type: "typing", room: "fuzz" }),
      () => ({ type: "history", room: "fuzz", ...(random() < 0.5 ? { after: int(10) } : { before: int(30) }), limit: 1 + int(200) }),
      () => ({ type: "ping" }),
      () => ({ type: "hello", name: "again" }),
    ])();
  /** A valid frame with one thing changed, or something else entirely. */
  return (): string => {
    const frame = valid();
    if (random() < 0.3) frame.ref = random() < 0.8 ? `r${int(100)}` : value();
    switch (int(8)) {
      case 0:
        return JSON.stringify(frame);
      case 1: {
        const keys = Object.keys(frame).filter((k) => k !== "type");
        if (keys.length) delete frame[pick(keys)];
        return JSON.stringify(frame);
      }
      case 2:
        frame[pick(Object.keys(frame))] = value();
        return JSON.stringify(frame);
      case 3:
        frame.type = pick(TYPES);
        return JSON.stringify(frame);
      case 4: {
        const text = JSON.stringify(frame);
        return text.slice(0, int(text.length));
      }
      case 5:
        return JSON.stringify(value());
      case 6: {
        const text = JSON.stringify(frame);
        const at = int(text.length);
        return text.slice(0, at) + pick(JUNK) + text.slice(at);
      }
      default:
        frame[pick(["extra", "__proto__", "constructor", "type"])] = value();
        return JSON.stringify(frame);
    }
  };
}

/** Error codes docs/protocol.md documents, read from its error code list. */
async function documentedCodes(): Promise<Set<string>> {
  const doc = await Bun.file(new URL("../docs/protocol.md", import.meta.url)).text();
  return new Set([...doc.matchAll(/`([a-z_]+)`/g)].map((m) => m[1]!));
}

/** A user object (§11.1): `{id, name}`, with `kind` for a member or bot. */
const isUser = (u: any) =>
  u && typeof u.id === "string" && typeof u.name === "string" && Object.keys(u).length === (u.kind === undefined ? 2 : 3) && [undefined, "member", "bot"].includes(u.kind);
/** A member as `joined` lists it: a user, with its role when it is not "member" (§11.2). */
const isMember = (m: any) => {
  if (m?.role === undefined) return isUser(m);
  const { role, ...user } = m;
  return ["owner", "moderator"].includes(role) && isUser(user);
};
const isSettings = (t: any) =>
  t && typeof t.topic === "string" && typeof t.private === "boolean" && typeof t.readOnly === "boolean" && Number.isInteger(t.slowModeSeconds);
/** What a room's sequence holds (§11.4): messages, and settings events (nothing else is sent here). */
const isStored = (m: any) => isMessage(m) || (m.type === "settings" && isSettings(m) && isUser(m.by) && Number.isInteger(m.seq));
const isMessage = (m: any) =>
  m.type === "message" &&
  typeof m.room === "string" &&
  Number.isInteger(m.seq) &&
  m.seq > 0 &&
  typeof m.id === "string" &&
  isUser(m.user) &&
  typeof m.text === "string" &&
  m.text.length > 0 &&
  m.text === m.text.trim() &&
  m.text.isWellFormed() &&
  !/[\u0000-\u0008\u000b-\u001f\u007f-\u009f\r]/.test(m.text) &&
  typeof m.ts === "number";

/** Whether a frame is one the contract describes, with exactly its fields. */
function wellFormed(f: Frame, codes: Set<string>): boolean {
  switch (f.type) {
    case "message":
      return isMessage(f) && Object.keys(f).length === 7;
    case "settings":
      return isStored(f);
    case "presence":
      return ["join", "leave", "rename"].includes(f.event) && isUser(f.user) && typeof f.room === "string";
    case "typing":
      return isUser(f.user) && typeof f.room === "string";
    case "joined":
      return (
        Number.isInteger(f.seq) && Array.isArray(f.members) && f.members.every(isMember) && f.messages.every(isStored) &&
        ["owner", "moderator", "member"].includes(f.role) && isSettings(f.settings)
      );
    case "history":
      return typeof f.complete === "boolean" && f.messages.every(isStored);
    case "left":
    case "pong":
    case "welcome":
      return true;
    case "error":
      return codes.has(f.code) && f.code !== "internal" && typeof f.message === "string";
    default:
      return false;
  }
}

describe("protocol fuzzing", () => {
  test(`random and mutated frames get documented answers; observers see nothing wrong (seed ${SEED})`, async () => {
    const codes = await documentedCodes();
    await using server = await startServer({ rateLimitBurst: 10_000, rateLimitPerSecond: 10_000, rateLimitAbuseErrors: 100_000 });
    const observer = await user(server, "observer", "fuzz");
    const closer = await user(server, "closer", "fuzz");
    const fuzzer = await user(server, "fuzzer", "fuzz");
    const early = await Client.connect(server.wsUrl);
    const next = generator(prng(SEED));
    for (let i = 0; i < PRE_HELLO_FRAMES; i++) {
      const frame = next();
      if (!frame.includes('"hello"')) early.sendRaw(frame);
    }
    for (let i = 0; i < FRAMES; i++) fuzzer.sendRaw(next());
    await early.sync("early-done");
    await fuzzer.sync("fuzz-done");
    // A marker from a bystander: everything the fuzzer caused in the room came before it.
    closer.send({ type: "send", room: "fuzz", id: "marker", text: "marker" });
    await closer.until((f) => f.id === "marker");
    await observer.until((f) => f.id === "marker");

    const bad = (frames: Frame[]) => frames.filter((f) => !wellFormed(f, codes));
    expect(bad(fuzzer.frames)).toEqual([]);
    expect(bad(early.frames)).toEqual([]);
    expect(bad(observer.frames)).toEqual([]);
    expect(early.frames.some((f) => f.type === "error" && f.code === "not_ready")).toBe(true);
    for (const c of [fuzzer, early, observer, closer]) expect(c.closeEvent).toBeNull();
    expect((await server.http("/healthz")).status).toBe(200);
    for (const c of [fuzzer, early, observer, closer]) c.close();
  });
});
