/**
 * Names (protocol §10 "Names"): NFC then trim; letters with their marks, digits, space, `_ - .`;
 * nothing invisible; unique by a case-folded UTS #39 confusable skeleton, across instances too.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { SignJWT } from "jose";
import { RESERVED_NAMES, checkName, nameKeys, namesClash, reservedKeys } from "../src/protocol/rules.ts";
import { Client, bounded, heldOnce, instances, redisForSuite, sqliteWith, startServer, user, type Frame, type TestServer } from "./helpers.ts";

const HANGUL_FILLER = "\u3164";

describe("checkName", () => {
  test("names: trimmed, 1..32 code points of letters, digits, space, _ - .", () => {
    expect(checkName("  alice  ")).toBe("alice");
    expect(checkName("Zoë_van-der.Berg 2")).toBe("Zoë_van-der.Berg 2");
    expect(checkName("李小龙")).toBe("李小龙");
    expect(checkName("مريم")).toBe("مريم");
    expect(checkName("٣")).toBe("٣"); // Arabic-Indic digit is \p{Nd}
    expect(checkName("𝒜".repeat(32))).toBe("𝒜".repeat(32)); // astral letters count once each
    expect(checkName("𝒜".repeat(33))).toBeNull();
    expect(checkName("a".repeat(32))).toBe("a".repeat(32));
    expect(checkName("a".repeat(33))).toBeNull();
    for (const name of ["", "   ", "a!", "<b>", "a\tb", "a\nb", "😀", "a@b", "x'y", "Ⅻ"]) expect(checkName(name)).toBeNull();
  });

  test.each([
    ["José in NFD", "Jose\u0301", "Jos\u00e9"],
    ["José in NFC", "Jos\u00e9", "Jos\u00e9"],
    ["Devanagari with vowel signs", "देवनागरी", "देवनागरी"],
    ["Devanagari with a virama", "अनुज", "अनुज"],
    ["vowel-marked Arabic", "مُحَمَّد", "مُحَمَّد"],
    ["Zoë", "Zo\u00eb", "Zo\u00eb"],
    ["Zoë in NFD, padded", "  Zoe\u0308 ", "Zo\u00eb"],
    ["Han", "李小龍", "李小龍"],
    ["Hangul syllables", "김민준", "김민준"],
    ["ASCII punctuation", "bob_2.0-x", "bob_2.0-x"],
  ])("accepts %s", (_, raw, stored) => {
    expect(checkName(raw)).toBe(stored);
  });

  test("a run of spaces is one space: two names that show the same are the same name", () => {
    expect(checkName("John  Smith")).toBe("John Smith");
    expect(checkName(" John \u0020 \u0020Smith ")).toBe("John Smith");
    expect(namesClash("John  Smith", "John Smith")).toBe(true);
    // 33 code points with the run, 31 once it is one space: the rule counts what is kept.
    expect(checkName(`${"a".repeat(15)}   ${"b".repeat(15)}`)).toBe(`${"a".repeat(15)} ${"b".repeat(15)}`);
  });

  test("counts 32 code points after NFC, not before", () => {
    expect(checkName("e\u0301".repeat(32))).toBe("\u00e9".repeat(32));
    expect(checkName("e\u0301".repeat(33))).toBeNull();
  });

  test.each([
    ["bob + Hangul filler U+3164", `bob${HANGUL_FILLER}`],
    ["only U+3164 fillers", HANGUL_FILLER.repeat(3)],
    ["Hangul choseong filler U+115F", "\u115fbob"],
    ["Hangul jungseong filler U+1160", "bo\u1160b"],
    ["halfwidth Hangul filler U+FFA0", "bob\uffa0"],
    ["zero width space U+200B", "bo\u200bb"],
    ["zero width non-joiner U+200C", "bo\u200cb"],
    ["zero width joiner U+200D", "bo\u200db"],
    ["word joiner U+2060", "bo\u2060b"],
    ["variation selector U+FE0F", "bob\ufe0f"],
    ["soft hyphen U+00AD", "bo\u00adb"],
    ["only combining marks", "\u0301\u0308\u0301"],
    ["marks and punctuation, no letter", "\u0301._-"],
  ])("refuses %s", (_, raw) => {
    expect(checkName(raw)).toBeNull();
  });
});

describe("nameKeys (§11.1: the skeleton as typed and of the lower case; names clash when a key is shared)", () => {
  test("name keys fold case and canonical spellings", () => {
    expect(namesClash("Alice", "aLICE")).toBe(true);
    expect(nameKeys("Zo\u00eb")).toEqual(nameKeys("Zoe\u0308"));
  });

  test.each([
    ["Alice", "Alice"],
    ["ALICE", "ALICE"],
    ["Cyrillic а", "\u0430lice"],
    ["Cyrillic е", "alic\u0435"],
    ["Cyrillic а and е", "\u0430lic\u0435"],
    ["capital I for l", "aIice"],
    ["fullwidth", "ａｌｉｃｅ"],
    ["fullwidth capitals", "ＡＬＩＣＥ"],
    ["mathematical bold", "𝐚𝐥𝐢𝐜𝐞"],
    // Not in confusables.txt 13.0: a table of its own (rules.ts: SMALL_CAPITALS, modifier letters).
    ["small capitals", "ᴀʟɪᴄᴇ"],
    ["small capitals and capitals", "ᴀLɪCᴇ"],
    ["modifier letters", "ᵃˡⁱᶜᵉ"],
    ["modifier capitals", "ᴬᴸᴵᶜᴱ"],
  ])("%s clashes with alice", (_, name) => {
    expect(checkName(name)).toBe(name); // each is a valid name: only the keys refuse it
    expect(namesClash(name, "alice")).toBe(true);
  });

  test("different names do not clash", () => {
    const names = ["alice", "bob", "José", "Jose", "Zoë", "Zoe", "देवनागरी", "अनुज", "मनुज", "李小龍", "李小龙"];
    for (const a of names) for (const b of names) if (a !== b) expect([a, b, namesClash(a, b)]).toEqual([a, b, false]);
  });

  test("canonically equal spellings share their keys", () => {
    expect(nameKeys("Jose\u0301")).toEqual(nameKeys("Jos\u00e9"));
  });

  test("every small capital and modifier letter of the Latin alphabet passes for its letter, and for nothing else", () => {
    const smallCapitals = "ᴀʙᴄᴅᴇꜰɢʜɪᴊᴋʟᴍɴᴏᴘꞯʀꜱᴛᴜᴠᴡʏᴢ".replace("y", "");
    const plain = "ABCDEFGHIJKLMNOPQRSRTUVWYZ".replace("SR", "S");
    expect([...smallCapitals]).toHaveLength(25); // no small capital X exists
    [...smallCapitals].forEach((c, i) => expect([c, namesClash(`${c}x`, `${plain[i]}x`)]).toEqual([c, true]));
    const modifiers = "ᵃᵇᶜᵈᵉᶠᵍʰⁱʲᵏˡᵐⁿᵒᵖʳˢᵗᵘᵛʷˣʸᶻ"; // no modifier small q exists
    [...modifiers].forEach((c) => expect([c, namesClash(`${c}x`, `${c.normalize("NFKC")}x`)]).toEqual([c, true]));
    expect(namesClash("ʙᴏʙ", "alice")).toBe(false);
    expect(namesClash("ᴀʟɪ", "all")).toBe(false);
  });

  test("every fullwidth and halfwidth form (U+FF01–FF5E, U+FF61–FFEE) passes for the character it is a wide or narrow copy of", () => {
    for (let cp = 0xff01; cp <= 0xff5e; cp++) {
      const wide = String.fromCodePoint(cp);
      const ascii = String.fromCodePoint(cp - 0xfee0);
      expect([wide, namesClash(`x${wide}x`, `x${ascii}x`)]).toEqual([wide, true]);
    }
    for (let cp = 0xff61; cp <= 0xffee; cp++) {
      const narrow = String.fromCodePoint(cp);
      if (narrow.normalize("NFKC") === narrow) continue; // unassigned
      expect([narrow, namesClash(`x${narrow}x`, `x${narrow.normalize("NFKC")}x`)]).toEqual([narrow, true]);
    }
    expect(namesClash("ｂｏｂ", "bob")).toBe(true);
    expect(namesClash("ＤＲＥＷ", "drew")).toBe(true);
    expect(namesClash("ａｇｅｎｔ４２", "agent42")).toBe(true);
    expect(namesClash("ｶﾞﾊﾟ", "ガパ")).toBe(true); // halfwidth katakana, voiced marks apart
    expect(namesClash("\uffa1\uffc2", "ㄱㅏ")).toBe(true); // halfwidth Hangul letters
    expect(namesClash("ｂｏｂ", "bop")).toBe(false);
  });

  test("ª º pass for a o and ſ for s (its case folding) as for f (its look); compatibility forms drawn otherwise keep their look", () => {
    expect(namesClash("ªna", "ana")).toBe(true);
    expect(namesClash("ºtto", "otto")).toBe(true);
    expect(namesClash("ſam", "sam")).toBe(true);
    expect(namesClash("ſam", "fam")).toBe(true);
    expect(namesClash("ǆemal", "džemal")).toBe(true);
    expect(namesClash("ᶫuna", "Luna")).toBe(true); // a modifier small capital: its small capital, then its capital
    // ϲ (lunate sigma) is drawn as c, not as the σ its compatibility form names.
    expect(namesClash("ϲat", "cat")).toBe(true);
    expect(namesClash("ϲat", "σat")).toBe(false);
    expect(namesClash("ali", "all")).toBe(false);
  });

  test("ali and all no longer clash: the lower case is taken, not the upper (which made every i an l)", () => {
    expect(namesClash("ali", "all")).toBe(false);
    expect(namesClash("aIi", "ali")).toBe(true);
  });
});

describe("reserved names (§11.1: names that claim authority are not a guest's)", () => {
  test("the built-in names and their look-alikes have reserved keys; RESERVED_NAMES adds more", () => {
    const reserved = reservedKeys(["Helpdesk"]);
    const fullwidth = ["ａｄｍｉｎ", "ＡＤＭＩＮ", "ｂｏｔ", "ｓｙｓｔｅｍ", "ｓｕｐｐｏｒｔ", "ｒｏｏｔ", "ｏｗｎｅｒ", "ｈｅｌｐｄｅｓｋ"];
    for (const name of [...RESERVED_NAMES, "Admin", "ADMIN", "\u0430dmin", "ᴀᴅᴍɪɴ", "R00T".replace(/0/g, "O"), "Moderator", "helpdesk", "HELPDESK", ...fullwidth]) {
      expect([name, nameKeys(name).some((k) => reserved.has(k))]).toEqual([name, true]);
    }
    for (const name of ["admins", "administrator", "bob", "rooted", "Helpdesk2"]) {
      expect([name, nameKeys(name).some((k) => reserved.has(k))]).toEqual([name, false]);
    }
  });

  test("a guest may not take a reserved name nor a look-alike (name_taken); a member may", async () => {
    const secret = "a-test-secret-that-is-long-enough-1234";
    await using server = await startServer({ authJwtSecret: secret, guestAccess: true, reservedNames: ["Helpdesk"], helloRatePerMinute: 100 });
    const c = await Client.connect(server.wsUrl);
    for (const name of ["admin", "Admin", "\u0430dmin", "ᴀᴅᴍɪɴ", "System", "support", "HELPDESK", "bot"]) {
      c.send({ type: "hello", name, ref: name });
      expect(await c.next()).toEqual({ type: "error", code: "name_taken", message: "that name is reserved", ref: name });
    }
    expect((await c.hello("administrator")).user.name).toBe("administrator");
    const jwt = await new SignJWT({ sub: "7", name: "Admin" })
      .setProtectedHeader({ alg: "HS256" })
      .setExpirationTime("1h")
      .sign(new TextEncoder().encode(secret));
    const member = await Client.connect(server.wsUrl);
    member.send({ type: "hello", token: jwt });
    expect((await member.expect("welcome")).user).toEqual({ id: "u:7", name: "Admin", kind: "member" });
    for (const client of [c, member]) client.close();
  });
});

// On SQLite, the default engine; across instances on Redis below.
describe("names on a live server", () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startServer();
  });
  afterAll(() => server.stop());

  test("a look-alike of an online name is name_taken; an invisible filler is name_invalid", async () => {
    const alice = await user(server, "alice");
    const c = await Client.connect(server.wsUrl);
    c.send({ type: "hello", name: "\u0430lice", ref: "cyrillic" });
    expect(await c.next()).toMatchObject({ type: "error", code: "name_taken", ref: "cyrillic" });
    c.send({ type: "hello", name: `bob${HANGUL_FILLER}`, ref: "filler" });
    expect(await c.next()).toMatchObject({ type: "error", code: "name_invalid", ref: "filler" });
    for (const [name, ref] of [["ᴀʟɪᴄᴇ", "small capitals"], ["ᵃˡⁱᶜᵉ", "modifier letters"]]) {
      c.send({ type: "hello", name, ref });
      expect(await c.next()).toMatchObject({ type: "error", code: "name_taken", ref });
    }
    expect((await c.hello("Jose\u0301")).user.name).toBe("Jos\u00e9");
    const john = await user(server, "John Smith");
    const twin = await Client.connect(server.wsUrl);
    twin.send({ type: "hello", name: "John  Smith", ref: "two spaces" });
    expect(await twin.next()).toMatchObject({ type: "error", code: "name_taken", ref: "two spaces" });
    expect((await twin.hello("John   Smith II")).user.name).toBe("John Smith II");
    john.close();
    c.close();
    twin.close();
    alice.close();
  });
});

describe("names that differ only by width (§11.1: ａｌｉｃｅ clashes with alice)", () => {
  test("a guest may not take the fullwidth spelling of an online name, nor of a reserved one", async () => {
    await using server = await startServer();
    const bob = await user(server, "bob");
    const answers: Record<string, unknown> = {};
    for (const name of ["ｂｏｂ", "ＢＯＢ", "ａｄｍｉｎ", "ｓｙｓｔｅｍ", "ｂｏｔ"]) {
      const c = await Client.connect(server.wsUrl);
      c.send({ type: "hello", name });
      const answer = await c.next();
      answers[name] = answer.type === "error" ? answer.code : answer.type;
      c.close();
    }
    expect(answers).toEqual({ "ｂｏｂ": "name_taken", "ＢＯＢ": "name_taken", "ａｄｍｉｎ": "name_taken", "ｓｙｓｔｅｍ": "name_taken", "ｂｏｔ": "name_taken" });
    bob.close();
  });
});

describe("the same name from many hellos at once (SQLite)", () => {
  test("one is welcomed; every other gets name_taken, never internal, also when they all wait for storage together", async () => {
    const HELLOS = 12;
    // Every session write waits until all the hellos have reached it, then they resume together:
    // each checked the name before any of them held it.
    let arrived = 0;
    let open!: () => void;
    const gate = new Promise<void>((resolve) => (open = resolve));
    const store = sqliteWith((real) => ({
      saveSession: async (hash, session) => {
        if (++arrived === HELLOS) open();
        await gate;
        return real.saveSession(hash, session);
      },
    }));
    await using server = await startServer({ store, helloRatePerMinute: 1000 });
    const clients = await Promise.all(Array.from({ length: HELLOS }, () => Client.connect(server.wsUrl)));
    for (const c of clients) c.send({ type: "hello", name: "samename" });
    const answers: Frame[] = await Promise.all(clients.map((c) => c.next()));
    expect(answers.filter((a) => a.type === "welcome")).toHaveLength(1);
    expect(answers.filter((a) => a.type !== "welcome").map((a) => [a.type, a.code])).toEqual(
      Array.from({ length: HELLOS - 1 }, () => ["error", "name_taken"]),
    );
    for (const c of clients) c.close();
    // The losers' sessions were written and handed to nobody: they reserve nothing. The winner's
    // session brings its name back, however often (a left-over one would answer name_taken).
    const welcome = answers.find((a) => a.type === "welcome")!;
    for (let i = 0; i < 3; i++) {
      const back = await Client.connect(server.wsUrl);
      expect((await back.hello("samename", welcome.session)).user).toEqual(welcome.user);
      back.close();
    }
  });

  test("a hello whose connection closes while its session is written leaves no session behind: the name is free", async () => {
    const held = heldOnce();
    held.arm();
    let revoked!: () => void;
    const undone = new Promise<void>((resolve) => (revoked = resolve));
    const store = sqliteWith((real) => ({
      saveSession: async (hash, session) => (await held.pass(), real.saveSession(hash, session)),
      revokeSession: async (hash) => {
        await real.revokeSession(hash);
        revoked();
      },
    }));
    await using server = await startServer({ store, helloRatePerMinute: 1000, presenceGraceMs: 0 });
    const gone = await Client.connect(server.wsUrl);
    gone.send({ type: "hello", name: "vanishing" });
    await held.waiting;
    gone.close();
    await server.logLine((l) => l.event === "close");
    held.release();
    await bounded(undone, "the unsent session to be revoked");
    // The same person, back before it ever got a token: the name is there for it.
    const again = await Client.connect(server.wsUrl);
    expect((await again.hello("vanishing")).user.name).toBe("vanishing");
    again.close();
  });
});

describe("names across instances (redis)", () => {
  const redis = redisForSuite();

  test("a name taken on A is refused on B, whatever its case or look-alike letters, until its user signs out (§11.1)", async () => {
    await using servers = await instances(redis, 2, { presenceGraceMs: 0 });
    const [a, b] = servers;
    const alice = await Client.connect(a.wsUrl);
    const welcome = await alice.hello("alice");
    const other = await Client.connect(b.wsUrl);
    for (const name of ["alice", "ALICE", "\u0430lice"]) {
      other.send({ type: "hello", name });
      expect(await other.expect("error")).toEqual({ type: "error", code: "name_taken", message: expect.any(String) });
    }
    // Her own session may use it on B.
    const again = await Client.connect(b.wsUrl);
    expect((await again.hello("alice", welcome.session)).user).toEqual(welcome.user);
    again.close();
    await b.logLine((l) => l.event === "name_released");
    other.send({ type: "hello", name: "Alice" });
    expect(await other.expect("error")).toEqual({ type: "error", code: "name_taken", message: expect.any(String) });
    // Gone is not enough: her session keeps the name hers. Signing out frees it.
    alice.close();
    await a.logLine((l) => l.event === "name_released");
    other.send({ type: "hello", name: "Alice" });
    expect(await other.expect("error")).toEqual({ type: "error", code: "name_taken", message: expect.any(String) });
    const back = await Client.connect(a.wsUrl);
    await back.hello("alice", welcome.session);
    back.send({ type: "signout" });
    expect(await back.closed).toEqual({ code: 1000, reason: "signed out" });
    expect((await other.hello("Alice")).user.name).toBe("Alice");
    other.close();
  });

  test("a member's connection replaced by its own (MAX_CONNECTIONS_PER_SESSION) keeps the name held on every instance", async () => {
    const secret = "a-test-secret-that-is-long-enough-1234";
    await using servers = await instances(redis, 2, { authJwtSecret: secret, guestAccess: true, maxConnectionsPerSession: 1 });
    const [a, b] = servers;
    const token = await new SignJWT({ sub: "ann" }).setProtectedHeader({ alg: "HS256" }).setExpirationTime("1h").sign(new TextEncoder().encode(secret));
    const ann = await Client.connect(a.wsUrl);
    ann.send({ type: "hello", token });
    const welcome = await ann.expect("welcome");
    // A member's name has no guest session reserving it: only its hold keeps a guest off it.
    const guest = await Client.connect(b.wsUrl);
    guest.send({ type: "hello", name: "ann" });
    expect(await guest.expect("error")).toMatchObject({ code: "name_taken" });
    const again = await Client.connect(a.wsUrl);
    again.send({ type: "hello", session: welcome.session });
    expect((await again.expect("welcome")).user).toEqual(welcome.user);
    expect(await ann.closed).toEqual({ code: 4001, reason: "replaced" });
    await a.logLine((l) => l.event === "close" && l.user === "u:ann");
    guest.send({ type: "hello", name: "ann" });
    expect(await guest.expect("error")).toMatchObject({ code: "name_taken" });
    for (const c of [guest, again]) c.close();
  });
});
