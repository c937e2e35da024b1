/**
 * Protocol §10 "Proxies" on a real server: which client address TRUST_PROXY believes, PUBLIC_HOSTS
 * against DNS rebinding, METRICS_TOKEN. Addresses are read back from the server's `open` log line.
 */
import { describe, expect, test } from "bun:test";
import { loadConfig, resolveConfig } from "../server.ts";
import { Client, WS_UPGRADE, openedIp, startServer, upgradeAttempt } from "./helpers.ts";

describe("TRUST_PROXY", () => {
  test("the rightmost X-Forwarded-For entry is the client: what a client writes to its left spoofs nothing", async () => {
    const server = await startServer({ trustProxy: true, maxConnectionsPerIp: 1 });
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
    await server.stop();
  });

  test("Fly-Client-IP wins; a value that is not an IP address is ignored", async () => {
    const server = await startServer({ trustProxy: true });
    const cases: [Record<string, string>, string][] = [
      [{ "Fly-Client-IP": "10.1.1.1", "X-Forwarded-For": "10.2.2.2" }, "10.1.1.1"],
      [{ "Fly-Client-IP": "2001:db8::7", "X-Forwarded-For": "10.2.2.2" }, "2001:db8::7"],
      // Not addresses: the next source is used, and at the end the socket's own address.
      [{ "Fly-Client-IP": "unknown", "X-Forwarded-For": "10.2.2.2" }, "10.2.2.2"],
      [{ "X-Forwarded-For": "10.2.2.2, not-an-ip" }, "127.0.0.1"],
      [{ "X-Forwarded-For": "10.2.2.2, 10.0.0.999" }, "127.0.0.1"],
      [{ "X-Forwarded-For": "10.2.2.2, " }, "127.0.0.1"],
      [{ "X-Forwarded-For": "10.2.2.2, 10.3.3.3:4711" }, "127.0.0.1"],
      [{ "Fly-Client-IP": "", "X-Forwarded-For": "2001:db8::1, ::ffff:10.4.4.4" }, "::ffff:10.4.4.4"],
    ];
    for (const [i, [headers, ip]] of cases.entries()) {
      const client = await Client.connect(server.wsUrl, headers);
      expect({ headers, ip: await openedIp(server, i) }).toEqual({ headers, ip });
      client.close();
    }
    await server.settled();
    await server.stop();
  });
});

describe("PUBLIC_HOSTS", () => {
  // A rebinding attacker's page: its own name, resolved to our address, so Host and Origin agree.
  const rebound = (port: number) => ({ Host: `evil.example:${port}`, Origin: `http://evil.example:${port}` });

  test("a Host that is not listed gets 421 on every route, /ws and / included", async () => {
    const server = await startServer({ publicHosts: ["chat.example.com", "localhost:8080"] });
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
    await server.stop();
  });

  test("a listed Host passes, in any case and with the default port", async () => {
    const server = await startServer({ publicHosts: ["chat.example.com", "localhost:8080"] });
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
    await server.stop();
  });

  test("unset, any Host is answered", async () => {
    const server = await startServer();
    const port = Number(server.chat.url.port);
    expect((await server.http("/healthz", { headers: rebound(port) })).status).toBe(200);
    await server.stop();
  });
});

describe("METRICS_TOKEN", () => {
  test("when set, /metrics needs Authorization: Bearer <token>, else 401", async () => {
    const token = "s3cret-metrics.token_~+/=";
    const server = await startServer({ metricsToken: token });
    for (const authorization of [undefined, "", "Bearer", "Bearer ", `Bearer ${token}x`, `Bearer ${token.slice(0, -1)}`, `Basic ${token}`, token, `Bearer  ${token}`, `Bearer ${token} ${token}`]) {
      const res = await server.http("/metrics", { headers: authorization === undefined ? {} : { Authorization: authorization } });
      expect({ authorization, status: res.status, body: await res.json() }).toEqual({ authorization, status: 401, body: { error: "unauthorized" } });
      expect(res.headers.get("www-authenticate")).toStartWith("Bearer");
    }
    for (const authorization of [`Bearer ${token}`, `bearer ${token}`]) {
      const res = await server.http("/metrics", { headers: { Authorization: authorization } });
      expect(res.status).toBe(200);
      expect(await res.text()).toContain("\nchat_connections ");
    }
    // Only /metrics is guarded.
    expect((await server.http("/healthz")).status).toBe(200);
    await server.stop();
  });

  test("unset, /metrics is open", async () => {
    const server = await startServer();
    expect((await server.http("/metrics")).status).toBe(200);
    await server.stop();
  });
});

describe("settings", () => {
  test("PUBLIC_HOSTS and METRICS_TOKEN are read from the environment, normalized and checked", () => {
    const r = loadConfig({ PUBLIC_HOSTS: " Chat.Example.com, localhost:3000,,[::1]:8080, example.org:80 ", METRICS_TOKEN: "abc.DEF-123" });
    if (!r.ok) throw new Error(r.errors.join("\n"));
    expect(r.config.publicHosts).toEqual(["chat.example.com", "localhost:3000", "[::1]:8080", "example.org"]);
    expect(r.config.metricsToken).toBe("abc.DEF-123");
    const unset = loadConfig({});
    expect(unset.ok && [unset.config.publicHosts, unset.config.metricsToken]).toEqual([[], null]);
    expect(loadConfig({ PUBLIC_HOSTS: "https://chat.example.com", METRICS_TOKEN: "two words" })).toEqual({
      ok: false,
      errors: [
        "PUBLIC_HOSTS=https://chat.example.com: comma-separated host[:port] names",
        "METRICS_TOKEN=two words: a bearer token: 1 to 1024 of A-Z a-z 0-9 - . _ ~ + /, then optional =",
      ],
    });
    for (const bad of ["chat.example.com/", "user@chat.example.com", "chat.example.com:99999", "chat example.com"]) {
      expect(loadConfig({ PUBLIC_HOSTS: bad }).ok).toBe(false);
    }
    expect(() => resolveConfig({ publicHosts: ["Chat.Example.com"] })).toThrow("publicHosts");
    expect(() => resolveConfig({ metricsToken: "" })).toThrow("metricsToken");
  });
});
