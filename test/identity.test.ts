/**
 * Who is who (§11.1), on both engines: members signed in by a host application's JWT (HS256, a
 * PEM key, a JWKS served by a local Bun.serve), every claim rule, guest access, names that stay a
 * guest's while its session is valid, signout, and admins.
 */
import { describe, expect, test } from "bun:test";
import { SignJWT, exportJWK, exportSPKI, generateKeyPair, type JWTPayload } from "jose";
import { loadConfig, type ServerOptions } from "../server.ts";
import { Client, LineClient, bounded, ENGINES, engineServers, startServer, user, type TestServer } from "./helpers.ts";

/** The HS256 secret the servers here take (≥ 32 bytes). */
const SECRET = "a-test-secret-that-is-long-enough-1234";
const ADMIN_TOKEN = "admin-token-for-the-tests-0123456789";

/** A member's JWT: HS256 with SECRET unless told otherwise; `exp` an hour ahead of `now` (seconds). */
async function token(
  claims: JWTPayload,
  { secret = SECRET, now = Date.now(), expSeconds = 3600 }: { secret?: string; now?: number; expSeconds?: number | null } = {},
): Promise<string> {
  const jwt = new SignJWT(claims).setProtectedHeader({ alg: "HS256" }).setIssuedAt(Math.floor(now / 1000));
  if (expSeconds !== null) jwt.setExpirationTime(Math.floor(now / 1000) + expSeconds);
  return jwt.sign(new TextEncoder().encode(secret));
}

/** Sends a hello and returns the first answer: a welcome or an error. */
async function helloWith(c: Client, fields: object): Promise<Record<string, any>> {
  c.send({ type: "hello", ...fields });
  return c.next();
}

for (const engine of ENGINES) {
  describe(engine, () => {
  /** A server on this engine; with Redis, in a database of its own. */
  const { startServer: start } = engineServers(engine);

  describe(`${engine}: members sign in with a JWT`, () => {
    test("a member is u:<sub> with kind member, everywhere a user shows, and its session brings it back", async () => {
      const server = await start({ authJwtSecret: SECRET, guestAccess: true, tcpPort: 0 });
      try {
        const ann = await Client.connect(server.wsUrl);
        const welcome = await helloWith(ann, { token: await token({ sub: "42", name: "Ann" }) });
        expect(welcome).toMatchObject({ type: "welcome", user: { id: "u:42", name: "Ann", kind: "member" } });
        const guest = await user(server, "guest", "hall");
        const joined = await ann.join("hall");
        expect(joined.members).toContainEqual({ id: "u:42", name: "Ann", kind: "member" });
        expect(await guest.next()).toEqual({ type: "presence", room: "hall", event: "join", user: { id: "u:42", name: "Ann", kind: "member" } });
        const said = await ann.say("hall", "hi from the app");
        expect(said.user).toEqual({ id: "u:42", name: "Ann", kind: "member" });
        expect(await guest.next()).toEqual(said);
        // TCP users see members plainly.
        const tcp = await LineClient.connect(server.chat.tcpPort!);
        await tcp.readUntil("name: ");
        tcp.write("terry\n/join hall\n");
        expect(await tcp.readUntil("* now in hall")).toContain("Ann: hi from the app");
        // The session restores the member, name and kind, without a token.
        ann.close();
        const back = await Client.connect(server.wsUrl);
        expect(await helloWith(back, { session: welcome.session })).toMatchObject({ user: { id: "u:42", name: "Ann", kind: "member" }, session: welcome.session });
        // History carries the kind too.
        const page = await (await server.http("/api/rooms/hall/messages")).json();
        expect(page.messages.at(-1).user).toEqual({ id: "u:42", name: "Ann", kind: "member" });
        for (const c of [guest, back]) c.close();
        tcp.end();
      } finally {
        await server.stop();
      }
    });

    test("every claim rule: a bad token gets auth_invalid saying why, and the connection may hello again", async () => {
      const now = Date.now();
      // Every failed hello spends a token of the connection's bucket: room for all the cases.
      const server = await start({ authJwtSecret: SECRET, authJwtAudience: "chat", authJwtIssuer: "https://app.example", rateLimitBurst: 100, helloRatePerMinute: 100 });
      try {
        const good = { sub: "7", aud: "chat", iss: "https://app.example" };
        const rsa = await generateKeyPair("RS256");
        const cases: [string, string, RegExp][] = [
          ["alg none", `${btoa(JSON.stringify({ alg: "none" })).replace(/=+$/, "")}.${btoa(JSON.stringify({ ...good, exp: now / 1000 + 60 })).replace(/=+$/, "")}.`, /malformed|algorithm/],
          ["another algorithm (RS256 for an HS256 key)", await new SignJWT(good).setProtectedHeader({ alg: "RS256" }).setExpirationTime("1h").sign(rsa.privateKey), /algorithm/],
          ["the wrong secret", await token(good, { secret: "another-secret-that-is-long-enough-xx" }), /signature/],
          ["expired beyond the 60 s of skew", await token(good, { expSeconds: -61 }), /expired/],
          ["not valid for 65 s more", await new SignJWT({ ...good, nbf: Math.floor(now / 1000) + 65 }).setProtectedHeader({ alg: "HS256" }).setExpirationTime("1h").sign(new TextEncoder().encode(SECRET)), /not valid yet/],
          ["another audience", await token({ ...good, aud: "other" }), /audience/],
          ["another issuer", await token({ ...good, iss: "https://evil.example" }), /issuer/],
          ["no exp", await token(good, { expSeconds: null }), /exp/],
          ["no sub", await token({ aud: "chat", iss: "https://app.example" }), /sub/],
          ["a sub with a space", await token({ ...good, sub: "a b" }), /sub/],
          ["a sub of 65 characters", await token({ ...good, sub: "x".repeat(65) }), /sub/],
          ["a name that breaks the name rules", await token({ ...good, name: "<script>" }), /name/],
          ["rooms that are not room names", await token({ ...good, rooms: ["General!"] }), /rooms/],
          ["admin that is not a boolean", await token({ ...good, admin: "yes" }), /admin/],
          ["a token over 8 KB", await token({ ...good, pad: "x".repeat(8200) }), /8192 bytes/],
          ["garbage", "not.a.jwt", /malformed/],
        ];
        const c = await Client.connect(server.wsUrl);
        for (const [what, jwt, why] of cases) {
          const answer = await helloWith(c, { token: jwt, ref: what });
          expect([what, answer.type, answer.code, answer.ref]).toEqual([what, "error", "auth_invalid", what]);
          expect([what, answer.message]).toEqual([what, expect.stringMatching(why)]);
        }
        // Within the skew, and with every claim right, the same connection is welcomed.
        const ok = await helloWith(c, { token: await token({ ...good, name: "Sev" }, { expSeconds: -59 }) });
        expect(ok).toMatchObject({ type: "welcome", user: { id: "u:7", name: "Sev", kind: "member" } });
        c.close();
      } finally {
        await server.stop();
      }
    });

    test("a PEM public key: ES256, EdDSA and RS256 by the key's type; the other algorithms refused", async () => {
      for (const alg of ["ES256", "EdDSA", "RS256"] as const) {
        const pair = await generateKeyPair(alg, { extractable: true });
        const server = await start({ authJwtPublicKey: await exportSPKI(pair.publicKey) });
        try {
          const c = await Client.connect(server.wsUrl);
          const signed = await new SignJWT({ sub: `pem-${alg}` }).setProtectedHeader({ alg }).setExpirationTime("1h").sign(pair.privateKey);
          expect(await helloWith(c, { token: signed })).toMatchObject({ type: "welcome", user: { id: `u:pem-${alg}` } });
          const hs = await helloWith(await Client.connect(server.wsUrl), { token: await token({ sub: "x" }) });
          expect(hs).toMatchObject({ type: "error", code: "auth_invalid" });
          c.close();
        } finally {
          await server.stop();
        }
      }
    });

    test("a JWKS: keys fetched and cached, a new kid fetched again, and while the JWKS is down the cached keys still work", async () => {
      const first = await generateKeyPair("ES256", { extractable: true });
      const second = await generateKeyPair("ES256", { extractable: true });
      let keys = [{ ...(await exportJWK(first.publicKey)), kid: "k1", alg: "ES256" }];
      let fetches = 0;
      let down = false;
      const jwks = Bun.serve({
        port: 0,
        hostname: "127.0.0.1",
        fetch: () => {
          fetches++;
          return down ? new Response("down", { status: 503 }) : Response.json({ keys });
        },
      });
      let clock = Date.now();
      const server = await start({ authJwksUrl: `http://127.0.0.1:${jwks.port}/jwks.json`, helloTimeoutMs: 3000, now: () => clock });
      try {
        const sign = (pair: typeof first, kid: string, sub: string) =>
          new SignJWT({ sub }).setProtectedHeader({ alg: "ES256", kid }).setExpirationTime(Math.floor(clock / 1000) + 3600).sign(pair.privateKey);
        expect(await helloWith(await Client.connect(server.wsUrl), { token: await sign(first, "k1", "one") })).toMatchObject({ type: "welcome" });
        const afterFirst = fetches;
        expect(await helloWith(await Client.connect(server.wsUrl), { token: await sign(first, "k1", "two") })).toMatchObject({ type: "welcome" });
        expect(fetches).toBe(afterFirst); // cached
        // Key rotation: a token with a kid the cache lacks makes it fetch again, at most once per 30 s.
        keys = [...keys, { ...(await exportJWK(second.publicKey)), kid: "k2", alg: "ES256" }];
        expect(await helloWith(await Client.connect(server.wsUrl), { token: await sign(second, "k2", "three") })).toMatchObject({ code: "auth_invalid" });
        expect(fetches).toBe(afterFirst);
        clock += 30_000;
        expect(await helloWith(await Client.connect(server.wsUrl), { token: await sign(second, "k2", "three") })).toMatchObject({ type: "welcome" });
        expect(fetches).toBe(afterFirst + 1);
        // The JWKS goes down: known keys still work; an unknown kid is refused, in time.
        down = true;
        expect(await helloWith(await Client.connect(server.wsUrl), { token: await sign(first, "k1", "four") })).toMatchObject({ type: "welcome" });
        const third = await generateKeyPair("ES256");
        clock += 30_000;
        const started = performance.now();
        const refused = await helloWith(await Client.connect(server.wsUrl), { token: await sign(third, "k3", "five") });
        expect(refused).toMatchObject({ type: "error", code: "auth_invalid" });
        expect(performance.now() - started).toBeLessThan(3000);
      } finally {
        await server.stop();
        jwks.stop(true);
      }
    });

    test("a JWKS that hangs: the hello is answered auth_invalid within HELLO_TIMEOUT_MS and the server keeps serving", async () => {
      const hanging = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: () => new Promise<Response>(() => {}) });
      const server = await start({ authJwksUrl: `http://127.0.0.1:${hanging.port}/`, guestAccess: true, helloTimeoutMs: 1000 });
      try {
        const pair = await generateKeyPair("ES256");
        const jwt = await new SignJWT({ sub: "x" }).setProtectedHeader({ alg: "ES256", kid: "k" }).setExpirationTime("1h").sign(pair.privateKey);
        const c = await Client.connect(server.wsUrl);
        expect(await bounded(helloWith(c, { token: jwt }), "an answer", 1000)).toMatchObject({ code: "auth_invalid" });
        expect((await (await user(server, "guest")).sync())).toEqual([]);
      } finally {
        await server.stop();
        hanging.stop(true);
      }
    });
  });

  describe(`${engine}: guests and their names`, () => {
    test("GUEST_ACCESS defaults to false once members can sign in: a guest gets auth_required, a member session still works", async () => {
      const server = await start({ authJwtSecret: SECRET });
      try {
        const guest = await Client.connect(server.wsUrl);
        expect(await helloWith(guest, { name: "visitor" })).toMatchObject({ type: "error", code: "auth_required" });
        const ann = await Client.connect(server.wsUrl);
        const w = await helloWith(ann, { token: await token({ sub: "ann" }) });
        const again = await helloWith(await Client.connect(server.wsUrl), { session: w.session });
        expect(again).toMatchObject({ type: "welcome", user: { id: "u:ann" } });
        expect(await (await server.http("/api/info")).json()).toEqual({ guests: false, members: true, roomCreation: "anyone" });
      } finally {
        await server.stop();
      }
      const open = await start({ authJwtSecret: SECRET, guestAccess: true });
      try {
        expect(await helloWith(await Client.connect(open.wsUrl), { name: "visitor" })).toMatchObject({ type: "welcome" });
      } finally {
        await open.stop();
      }
    });

    test("a guest's name stays its own while its session is valid, online or not; signout frees it and closes that session's connections", async () => {
      const server = await start({ presenceGraceMs: 0 });
      try {
        const sam = await Client.connect(server.wsUrl);
        const w = await sam.hello("Sam");
        const tab = await Client.connect(server.wsUrl);
        await tab.hello("Sam", w.session);
        sam.close();
        tab.close();
        await server.settled();
        // Offline, and nobody else may be Sam (nor a look-alike of Sam).
        for (const name of ["Sam", "SAM", "Ѕam"]) {
          expect([name, (await helloWith(await Client.connect(server.wsUrl), { name })).code]).toEqual([name, "name_taken"]);
        }
        // Sam comes back by its session alone, name and all.
        const back = await Client.connect(server.wsUrl);
        expect(await helloWith(back, { session: w.session })).toMatchObject({ user: { id: w.user.id, name: "Sam" } });
        const other = await Client.connect(server.wsUrl);
        await other.hello("Sam", w.session);
        back.send({ type: "signout", ref: "bye" });
        expect(await back.next()).toEqual({ type: "ok", for: "signout", ref: "bye" });
        expect(await back.closed).toEqual({ code: 1000, reason: "signed out" });
        expect(await other.closed).toEqual({ code: 1000, reason: "signed out" });
        // The session opens nothing now, and the name is free.
        const fresh = await Client.connect(server.wsUrl);
        const stranger = await helloWith(fresh, { name: "Sam", session: w.session });
        expect(stranger).toMatchObject({ type: "welcome", user: { name: "Sam" } });
        expect(stranger.user.id).not.toBe(w.user.id);
        fresh.close();
      } finally {
        await server.stop();
      }
    });

    test("a rename frees the old name and reserves the new one", async () => {
      const server = await start({ presenceGraceMs: 0 });
      try {
        const c = await Client.connect(server.wsUrl);
        const w = await c.hello("Rob");
        c.close();
        await server.settled();
        const renamed = await Client.connect(server.wsUrl);
        await renamed.hello("Robert", w.session);
        renamed.close();
        await server.settled();
        expect((await helloWith(await Client.connect(server.wsUrl), { name: "robert" })).code).toBe("name_taken");
        expect(await helloWith(await Client.connect(server.wsUrl), { name: "Rob" })).toMatchObject({ type: "welcome" });
      } finally {
        await server.stop();
      }
    });

    test("a guest may not take an online member's name; a member never gets name_taken", async () => {
      const server = await start({ authJwtSecret: SECRET, guestAccess: true });
      try {
        const ann = await Client.connect(server.wsUrl);
        await helloWith(ann, { token: await token({ sub: "a1", name: "Ann" }) });
        expect((await helloWith(await Client.connect(server.wsUrl), { name: "ANN" })).code).toBe("name_taken");
        const guest = await user(server, "Bea");
        const member = await helloWith(await Client.connect(server.wsUrl), { token: await token({ sub: "b2", name: "Bea" }) });
        expect(member).toMatchObject({ type: "welcome", user: { id: "u:b2", name: "Bea", kind: "member" } });
        guest.close();
      } finally {
        await server.stop();
      }
    });
  });

  describe(`${engine}: admins`, () => {
    test("ADMIN_TOKEN makes a hello an admin's (welcome says so); a wrong one is auth_invalid; a token's admin claim too", async () => {
      const server = await start({ adminToken: ADMIN_TOKEN, authJwtSecret: SECRET, guestAccess: true });
      try {
        const wrong = await Client.connect(server.wsUrl);
        expect(await helloWith(wrong, { name: "mallory", adminToken: "not-the-admin-token-at-all-000" })).toMatchObject({ code: "auth_invalid" });
        expect(await helloWith(wrong, { name: "mallory" })).toMatchObject({ type: "welcome" });
        expect((await wrong.sync())).toEqual([]);
        const ops = await Client.connect(server.wsUrl);
        const w = await helloWith(ops, { name: "ops", adminToken: ADMIN_TOKEN });
        expect(w).toMatchObject({ type: "welcome", admin: true });
        expect(wrong.frames.find((f) => f.type === "welcome")).not.toHaveProperty("admin");
        // The session keeps it.
        expect(await helloWith(await Client.connect(server.wsUrl), { session: w.session })).toMatchObject({ admin: true });
        const boss = await helloWith(await Client.connect(server.wsUrl), { token: await token({ sub: "boss", admin: true }) });
        expect(boss).toMatchObject({ admin: true, user: { id: "u:boss" } });
      } finally {
        await server.stop();
      }
    });

    test("an admin in presence grace (a page reload) still outranks a room's owner, and another admin: its bans are forbidden before and during the grace", async () => {
      const server = await start({ adminToken: ADMIN_TOKEN, presenceGraceMs: 60_000 });
      try {
        const owner = await user(server, "olga", "hall");
        const admin = await Client.connect(server.wsUrl);
        const welcome = await helloWith(admin, { name: "root-user", adminToken: ADMIN_TOKEN });
        expect(welcome.admin).toBe(true);
        await admin.join("hall");
        const ban = async (ref: string) => {
          owner.send({ type: "ban", room: "hall", user: welcome.user.id, ref });
          return (await owner.until((f) => f.type === "error" || f.type === "ok")).at(-1);
        };
        expect(await ban("live")).toMatchObject({ type: "error", code: "forbidden", ref: "live" });
        admin.close();
        await admin.closed;
        // Still a member of hall (grace), its reload not back yet: still an admin.
        expect(await ban("grace")).toMatchObject({ type: "error", code: "forbidden", ref: "grace" });
        // Nor may another admin ban it from the whole server meanwhile.
        const ops = await Client.connect(server.wsUrl);
        await helloWith(ops, { name: "ops", adminToken: ADMIN_TOKEN });
        ops.send({ type: "ban", user: welcome.user.id, ref: "server" });
        expect((await ops.until((f) => f.type === "error" || f.type === "ok")).at(-1)).toMatchObject({ type: "error", code: "forbidden", ref: "server" });
        ops.close();
        owner.close();
      } finally {
        await server.stop();
      }
    });
  });
  });
}

describe("configuration of sign-in", () => {
  test("a short secret, an unparseable PEM, a bad JWKS URL, a short ADMIN_TOKEN, two ways at once: each named", () => {
    const bad = (env: Record<string, string>) => {
      const r = loadConfig(env);
      return r.ok ? [] : r.errors.map((e) => e.slice(0, e.indexOf("=")));
    };
    expect(bad({ AUTH_JWT_SECRET: "short" })).toEqual(["AUTH_JWT_SECRET"]);
    expect(bad({ AUTH_JWT_PUBLIC_KEY: "-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----" })).toEqual(["AUTH_JWT_PUBLIC_KEY"]);
    expect(bad({ AUTH_JWKS_URL: "ftp://keys.example" })).toEqual(["AUTH_JWKS_URL"]);
    expect(bad({ ADMIN_TOKEN: "tooshort" })).toEqual(["ADMIN_TOKEN"]);
    expect(bad({ GUEST_ACCESS: "maybe" })).toEqual(["GUEST_ACCESS"]);
    expect(bad({ ROOM_CREATION: "everyone" })).toEqual(["ROOM_CREATION"]);
    const both = loadConfig({ AUTH_JWT_SECRET: SECRET, AUTH_JWKS_URL: "https://keys.example/jwks.json" });
    expect(both.ok ? null : both.errors).toEqual([expect.stringMatching(/^AUTH_JWT_SECRET, AUTH_JWKS_URL: /)]);
  });
});

describe("a JWKS that rotates keys, is too big, or serves garbage (§11.1)", () => {
  test("key rotation with tokens that carry no kid: a JWKS holding the old and the new key still verifies a token of the new key", async () => {
    const oldKey = await generateKeyPair("ES256", { extractable: true });
    const newKey = await generateKeyPair("ES256", { extractable: true });
    // The host app publishes both keys during rotation (no kid: RFC 7515 makes it optional).
    const keys = [await exportJWK(oldKey.publicKey), await exportJWK(newKey.publicKey)];
    const jwks = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: () => Response.json({ keys }) });
    const server = await startServer({ authJwksUrl: `http://127.0.0.1:${jwks.port}/jwks.json`, helloTimeoutMs: 3000 });
    try {
      const jwt = await new SignJWT({ sub: "rotated" }).setProtectedHeader({ alg: "ES256" }).setExpirationTime("1h").sign(newKey.privateKey);
      const answer = await helloWith(await Client.connect(server.wsUrl), { token: jwt });
      expect(answer).toMatchObject({ type: "welcome", user: { id: "u:rotated" } });
    } finally {
      await server.stop();
      jwks.stop(true);
    }
  });

  test("a JWKS body is bounded in size: a 2 MB JWKS is not read and taken", async () => {
    const pair = await generateKeyPair("ES256", { extractable: true });
    const jwk = { ...(await exportJWK(pair.publicKey)), kid: "big" };
    const body = `${" ".repeat(2 * 1024 * 1024)}${JSON.stringify({ keys: [jwk] })}`;
    let served = 0;
    const jwks = Bun.serve({
      port: 0,
      hostname: "127.0.0.1",
      fetch: () => {
        served++;
        return new Response(body, { headers: { "content-type": "application/json" } });
      },
    });
    const server = await startServer({ authJwksUrl: `http://127.0.0.1:${jwks.port}/jwks.json`, helloTimeoutMs: 9000 });
    try {
      const jwt = await new SignJWT({ sub: "big" }).setProtectedHeader({ alg: "ES256", kid: "big" }).setExpirationTime("1h").sign(pair.privateKey);
      const answer = await helloWith(await Client.connect(server.wsUrl), { token: jwt });
      expect(served).toBeGreaterThan(0);
      // A bounded fetch refuses a 2 MB key set (JWKS_MAX_BYTES), as a failed fetch: the token is not verified.
      expect(answer).toMatchObject({ type: "error", code: "auth_invalid" });
    } finally {
      await server.stop();
      jwks.stop(true);
    }
  });

  test("a JWKS refetch that returns garbage keys keeps the keys known (as a JWKS that is down does)", async () => {
    const pair = await generateKeyPair("ES256", { extractable: true });
    let body: unknown = { keys: [{ ...(await exportJWK(pair.publicKey)), kid: "k1", alg: "ES256" }] };
    const jwks = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: () => Response.json(body) });
    let clock = Date.now();
    const server = await startServer({ authJwksUrl: `http://127.0.0.1:${jwks.port}/jwks.json`, helloTimeoutMs: 3000, now: () => clock });
    try {
      const sign = (kid: string, sub: string) =>
        new SignJWT({ sub }).setProtectedHeader({ alg: "ES256", kid }).setExpirationTime(Math.floor(clock / 1000) + 3600).sign(pair.privateKey);
      expect(await helloWith(await Client.connect(server.wsUrl), { token: await sign("k1", "one") })).toMatchObject({ type: "welcome" });
      // The JWKS URL now serves garbage (objects that are no keys); an unknown kid makes the server fetch it again.
      body = { keys: [{ garbage: true }] };
      clock += 30_000;
      expect(await helloWith(await Client.connect(server.wsUrl), { token: await sign("k9", "two") })).toMatchObject({ code: "auth_invalid" });
      // The known key should still work.
      expect(await helloWith(await Client.connect(server.wsUrl), { token: await sign("k1", "three") })).toMatchObject({ type: "welcome" });
    } finally {
      await server.stop();
      jwks.stop(true);
    }
  });
});
