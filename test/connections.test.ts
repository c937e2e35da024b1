/**
 * Who gets in, and for how long without a hello: connection caps (per address, in all, TCP and
 * WebSocket together), the client address a proxy passes (TRUST_PROXY), the Host (PUBLIC_HOSTS),
 * the Origin of an upgrade, HELLO_TIMEOUT_MS, and the key an address counts under (an IPv6 /64).
 * Addresses are read back from the server's `open` log line. Origins, caps and hello timeouts run
 * on both engines; TRUST_PROXY and PUBLIC_HOSTS on SQLite.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { loadConfig } from "../src/config.ts";
import { addressKey } from "../src/core/address.ts";
import { originAllowed } from "../src/http.ts";
import { Client, ENGINES, LineClient, WS_UPGRADE, engineServers, openedIp, startServer, upgradeAttempt, type TestServer } from "./helpers.ts";

describe("origins", () => {
  test("origin: absent, listed or same host:port pass; null, others and garbage fail", () => {
    const allowed = ["https://chat.example.com"];
    expect(originAllowed(null, "localhost:3000", allowed)).toBe(true);
    expect(originAllowed("https://chat.example.com", "internal:3000", allowed)).toBe(true);
    expect(originAllowed("http://localhost:3000", "localhost:3000", allowed)).toBe(true);
    expect(originAllowed("https://app.fly.dev", "app.fly.dev", allowed)).toBe(true);
    expect(originAllowed("https://APP.fly.dev", "app.fly.dev", [])).toBe(true);
    expect(originAllowed("http://localhost:3001", "localhost:3000", allowed)).toBe(false);
    expect(originAllowed("https://evil.example", "localhost:3000", allowed)).toBe(false);
    expect(originAllowed("https://chat.example.com.evil.example", "x", allowed)).toBe(false);
    expect(originAllowed("null", "localhost:3000", allowed)).toBe(false);
    expect(originAllowed("not a url", "localhost:3000", allowed)).toBe(false);
    expect(originAllowed("http://localhost:3000", null, [])).toBe(false);
  });

  test("ALLOWED_ORIGINS written with capitals, which start accepts, lets that page's WebSocket in", async () => {
    const loaded = loadConfig({ ALLOWED_ORIGINS: "https://Chat.Example.com" });
    if (!loaded.ok) throw new Error(loaded.errors.join("\n"));
    await using server = await startServer({ allowedOrigins: loaded.config.allowedOrigins });
    // Browsers always send the origin's host in lowercase.
    const r = await upgradeAttempt(Number(server.url.port), { ...WS_UPGRADE, Origin: "https://chat.example.com" });
    expect(r.status).toBe(101);
  });
});

for (const engine of ENGINES) {
  describe(engine, () => {
    const { startServer } = engineServers(engine);

    describe("HTTP and upgrade checks", () => {
      let server: TestServer;
      let port: number;
      beforeAll(async () => {
        server = await startServer({ allowedOrigins: ["https://chat.example.com"] });
        port = Number(server.chat.url.port);
      });
      afterAll(() => server.stop());

      test("Origin: a foreign origin or null gets 403; none, the same host or a listed one is let in", async () => {
        for (const origin of ["https://evil.example", "null", `http://127.0.0.1:${port + 1}`, "https://chat.example.com.evil.example"]) {
          expect(await upgradeAttempt(port, { ...WS_UPGRADE, Origin: origin })).toMatchObject({ status: 403, body: { error: "origin_not_allowed" } });
        }
        for (const origin of [undefined, `http://127.0.0.1:${port}`, `https://127.0.0.1:${port}`, "https://chat.example.com"]) {
          const answer = await upgradeAttempt(port, origin ? { ...WS_UPGRADE, Origin: origin } : WS_UPGRADE);
          expect(answer.status).toBe(101);
        }
        await server.settled();
      });

      test("without Upgrade: websocket → 426", async () => {
        const res = await server.http("/ws");
        expect(res.status).toBe(426);
        expect(res.headers.get("upgrade")).toBe("websocket");
        expect(await res.json()).toEqual({ error: "upgrade_required" });
      });
    });

    describe("connection caps", () => {
      test("MAX_CONNECTIONS_PER_IP → 429, MAX_CONNECTIONS → 503; TRUST_PROXY takes the address from the proxy", async () => {
        await using server = await startServer({ trustProxy: true, maxConnections: 3, maxConnectionsPerIp: 2 });
        const port = Number(server.chat.url.port);
        // The proxy next to us appends the client last to X-Forwarded-For; Fly-Client-IP is the client alone, and wins.
        const from = (ip: string, header = "X-Forwarded-For") =>
          Client.connect(server.wsUrl, header === "X-Forwarded-For" ? { [header]: `10.9.9.9, ${ip}` } : { [header]: ip, "X-Forwarded-For": "10.7.7.7" });
        const a1 = await from("10.0.0.1");
        const a2 = await from("10.0.0.1", "Fly-Client-IP");
        expect(await upgradeAttempt(port, { ...WS_UPGRADE, "X-Forwarded-For": "10.0.0.1" })).toMatchObject({
          status: 429,
          body: { error: "too_many_connections_from_ip" },
        });
        const b = await from("10.0.0.2");
        expect(await upgradeAttempt(port, { ...WS_UPGRADE, "X-Forwarded-For": "10.0.0.3" })).toMatchObject({
          status: 503,
          body: { error: "too_many_connections" },
        });
        expect(server.logs.filter((l) => l.event === "open").map((l) => l.ip)).toEqual(["10.0.0.1", "10.0.0.1", "10.0.0.2"]);
        // A closed connection frees its place.
        a1.close();
        await server.logLine((l) => l.event === "close" && l.ip === "10.0.0.1");
        const a3 = await from("10.0.0.1");
        for (const c of [a2, a3, b]) c.close();
        await server.settled();
        expect(await (await server.http("/healthz")).json()).toMatchObject({ connections: 0 });
      });

      test("an IPv6 client is counted by its /64, an IPv4-mapped one by its IPv4: moving within them buys no place", async () => {
        await using server = await startServer({ trustProxy: true, maxConnectionsPerIp: 2 });
        const port = Number(server.chat.url.port);
        const from = (ip: string) => Client.connect(server.wsUrl, { "X-Forwarded-For": ip });
        const refused = { status: 429, body: { error: "too_many_connections_from_ip" } };
        const open = [await from("2001:db8:1:2::1"), await from("2001:db8:1:2::2")];
        for (let i = 3; i < 8; i++) {
          expect(await upgradeAttempt(port, { ...WS_UPGRADE, "X-Forwarded-For": `2001:db8:1:2::${i}` })).toMatchObject(refused);
        }
        // The next /64 is another client.
        open.push(await from("2001:db8:1:3::1"));
        open.push(await from("192.0.2.7"));
        open.push(await from("::ffff:192.0.2.7"));
        expect(await upgradeAttempt(port, { ...WS_UPGRADE, "X-Forwarded-For": "::ffff:c000:207" })).toMatchObject(refused);
        expect(server.logs.filter((l) => l.event === "open").map((l) => l.ip)).toEqual([
          "2001:db8:1:2::/64",
          "2001:db8:1:2::/64",
          "2001:db8:1:3::/64",
          "192.0.2.7",
          "192.0.2.7",
        ]);
        for (const c of open) c.close();
        await server.settled();
      });

      test("without TRUST_PROXY, forwarded addresses are ignored", async () => {
        await using server = await startServer({ maxConnectionsPerIp: 1 });
        const a = await Client.connect(server.wsUrl, { "X-Forwarded-For": "10.0.0.1" });
        expect(await upgradeAttempt(Number(server.chat.url.port), { ...WS_UPGRADE, "X-Forwarded-For": "10.0.0.2" })).toMatchObject({ status: 429 });
        expect(server.logs.find((l) => l.event === "open")?.ip).toBe("127.0.0.1");
        a.close();
      });

      test("connection caps count TCP and WebSocket together", async () => {
        await using server = await startServer({ tcpPort: 0, maxConnectionsPerIp: 2 });
        const ws = await Client.connect(server.wsUrl);
        const nc = await LineClient.connect(server.chat.tcpPort!);
        await nc.readUntil("name: ");
        const refused = await LineClient.connect(server.chat.tcpPort!);
        expect(await refused.untilClosed()).toBe("! too_many_connections_from_ip: try again later\n");
        expect(await upgradeAttempt(Number(server.chat.url.port), WS_UPGRADE)).toMatchObject({ status: 429 });
        expect(await (await server.http("/healthz")).json()).toMatchObject({ connections: 2 });
        ws.close();
        nc.end();
      });
    });

    describe("HELLO_TIMEOUT_MS", () => {
      test("no successful hello within HELLO_TIMEOUT_MS closes with 1008", async () => {
        await using server = await startServer({ helloTimeoutMs: 100 });
        const c = await Client.connect(server.wsUrl);
        c.send({ type: "hello", name: "" }); // a failed attempt does not restart the clock
        expect(await c.next()).toMatchObject({ code: "name_invalid" });
        expect(await c.closed).toEqual({ code: 1008, reason: "hello timeout" });
        const ok = await Client.connect(server.wsUrl);
        await ok.hello("in time");
        expect(await ok.sync()).toEqual([]);
        ok.close();
      });

      test("no name within HELLO_TIMEOUT_MS: '! hello timeout', then closed", async () => {
        await using server = await startServer({ tcpPort: 0, helloTimeoutMs: 100 });
        const nc = await LineClient.connect(server.chat.tcpPort!);
        await nc.readUntil("name: ");
        nc.write("not valid!\n");
        expect(await nc.untilClosed()).toMatch(/^! name_invalid: [^\n]+\nname: ! hello timeout\n$/);
      });
    });
  });
}

// The rest run on SQLite, the default engine, only.
describe("TRUST_PROXY", () => {
  test("the rightmost X-Forwarded-For entry is the client: what a client writes to its left spoofs nothing", async () => {
    await using server = await startServer({ trustProxy: true, maxConnectionsPerIp: 1 });
    const port = Number(server.chat.url.port);
    // An appending proxy at 10.0.0.9's side: the client sent "10.0.0.1", the proxy added 10.0.0.9.
    const first = await Client.connect(server.wsUrl, { "X-Forwarded-For": "10.0.0.1, 10.0.0.9" });
    expect(await openedIp(server, 0)).toBe("10.0.0.9");
    // A fresh made-up address on the left does not buy a fresh place under the per-IP cap.
    for (const claimed of ["10.0.0.2", "10.0.0.3, 10.0.0.4"]) {
      expect(await upgradeAttempt(port, { ...WS_UPGRADE, "X-Forwarded-For": `${claimed}, 10.0.0.9` })).toMatchObject({
        status: 429,
        body: { error: "too_many_connections_from_ip" },
      });
    }
    // The cap counts the rightmost entry: another proxied client still gets in.
    const other = await upgradeAttempt(port, { ...WS_UPGRADE, "X-Forwarded-For": "10.0.0.1, 10.0.0.8" }, { hold: true });
    expect(other.status).toBe(101);
    expect(await openedIp(server, 1)).toBe("10.0.0.8");
    first.close();
    other.close();
    await server.settled();
  });

  test("Fly-Client-IP wins; a value that is not an IP address is ignored", async () => {
    await using server = await startServer({ trustProxy: true });
    const cases: [Record<string, string>, string][] = [
      [{ "Fly-Client-IP": "10.1.1.1", "X-Forwarded-For": "10.2.2.2" }, "10.1.1.1"],
      [{ "Fly-Client-IP": "2001:db8::7", "X-Forwarded-For": "10.2.2.2" }, "2001:db8::/64"],
      // Not addresses: the next source is used, and at the end the socket's own address.
      [{ "Fly-Client-IP": "unknown", "X-Forwarded-For": "10.2.2.2" }, "10.2.2.2"],
      [{ "X-Forwarded-For": "10.2.2.2, not-an-ip" }, "127.0.0.1"],
      [{ "X-Forwarded-For": "10.2.2.2, 10.0.0.999" }, "127.0.0.1"],
      [{ "X-Forwarded-For": "10.2.2.2, " }, "127.0.0.1"],
      [{ "X-Forwarded-For": "10.2.2.2, 10.3.3.3:4711" }, "127.0.0.1"],
      [{ "Fly-Client-IP": "", "X-Forwarded-For": "2001:db8::1, ::ffff:10.4.4.4" }, "10.4.4.4"],
    ];
    for (const [i, [headers, ip]] of cases.entries()) {
      const client = await Client.connect(server.wsUrl, headers);
      expect({ headers, ip: await openedIp(server, i) }).toEqual({ headers, ip });
      client.close();
    }
    await server.settled();
  });
});

describe("addressKey: the address every per-address rule counts (§10)", () => {
  test("IPv4 as it is; IPv4-mapped IPv6 as its IPv4; other IPv6 as its /64; anything else as it is", () => {
    const cases: [string, string][] = [
      ["192.0.2.7", "192.0.2.7"],
      ["127.0.0.1", "127.0.0.1"],
      ["::ffff:192.0.2.7", "192.0.2.7"],
      ["::FFFF:c000:0207", "192.0.2.7"],
      ["0:0:0:0:0:ffff:10.4.4.4", "10.4.4.4"],
      ["2001:db8:1:2::1", "2001:db8:1:2::/64"],
      ["2001:DB8:0001:0002:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::/64"],
      ["2001:db8::1", "2001:db8::/64"],
      ["2001:db8:0:0:1::", "2001:db8::/64"],
      ["2001:0:0:5::9", "2001:0:0:5::/64"],
      ["0:0:1:0:ffff::1", "0:0:1::/64"],
      ["1:2:3:4:5:6:1.2.3.4", "1:2:3:4::/64"],
      ["fe80::1%eth0", "fe80::/64"],
      ["::1", "::/64"],
      ["::", "::/64"],
      ["64:ff9b::192.0.2.7", "64:ff9b::/64"],
      // Not addresses: the key is the text, as before.
      ["unknown", "unknown"],
      ["2001:db8::1::2", "2001:db8::1::2"],
      ["1:2:3:4:5:6:7", "1:2:3:4:5:6:7"],
      ["1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7:8:9"],
      ["1:2:3:4:5:6:7::8", "1:2:3:4:5:6:7::8"],
      ["12345::1", "12345::1"],
      ["::ffff:999.1.1.1", "::ffff:999.1.1.1"],
      ["1.2.3.4::", "1.2.3.4::"],
    ];
    expect(cases.map(([ip]) => [ip, addressKey(ip)])).toEqual(cases);
  });
});

describe("PUBLIC_HOSTS", () => {
  // A rebinding attacker's page: its own name, resolved to our address, so Host and Origin agree.
  const rebound = (port: number) => ({ Host: `evil.example:${port}`, Origin: `http://evil.example:${port}` });

  test("a Host that is not listed gets 421 on every route, /ws and / included", async () => {
    await using server = await startServer({ publicHosts: ["chat.example.com", "localhost:8080"] });
    const port = Number(server.chat.url.port);
    expect(await upgradeAttempt(port, { ...WS_UPGRADE, ...rebound(port) })).toMatchObject({ status: 421, body: { error: "misdirected" } });
    for (const path of ["/", "/app.js", "/healthz", "/metrics", "/api/rooms", "/api/rooms/general/messages", "/no-such-page"]) {
      const res = await server.http(path, { headers: rebound(port) });
      expect({ path, status: res.status, body: await res.json() }).toEqual({ path, status: 421, body: { error: "misdirected" } });
      expect(res.headers.get("content-security-policy")).toStartWith("default-src 'self'");
    }
    // The server's own address is no exception when it is not listed.
    expect((await server.http("/healthz")).status).toBe(421);
    expect(server.logs.filter((l) => l.event === "open")).toEqual([]);
  });

  test("a listed Host passes, in any case and with the default port", async () => {
    await using server = await startServer({ publicHosts: ["chat.example.com", "localhost:8080"] });
    const port = Number(server.chat.url.port);
    for (const host of ["chat.example.com", "Chat.Example.COM", "chat.example.com:80", "localhost:8080"]) {
      const page = await server.http("/", { headers: { Host: host } });
      expect({ host, status: page.status }).toEqual({ host, status: 200 });
      expect(await page.text()).toContain("<!doctype html>");
    }
    const upgraded = await upgradeAttempt(port, { ...WS_UPGRADE, Host: "chat.example.com", Origin: "https://chat.example.com" });
    expect(upgraded.status).toBe(101);
    expect((await server.http("/", { headers: { Host: "localhost:8081" } })).status).toBe(421);
    await server.settled();
  });

  test("unset, any Host is answered", async () => {
    await using server = await startServer();
    const port = Number(server.chat.url.port);
    expect((await server.http("/healthz", { headers: rebound(port) })).status).toBe(200);
  });
});
