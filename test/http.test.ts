/**
 * HTTP and what an operator sees: the page's security headers, /healthz, /metrics (and
 * METRICS_TOKEN), 404, and the JSON log lines of each connection. Routes and logs run on both
 * engines; METRICS_TOKEN on SQLite.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Metrics } from "../src/metrics.ts";
import { ENGINES, engineServers, startServer, user, type TestServer } from "./helpers.ts";

describe("metrics", () => {
  test("metrics render every contract name, errors by code, and the histogram", () => {
    const m = new Metrics();
    m.error("rate_limited");
    m.storageWrite(0.0003);
    m.storageWrite(2);
    const text = m.render(7);
    for (const name of [
      "chat_connections 7",
      "chat_joins_total 0",
      "chat_messages_in_total 0",
      "chat_messages_out_total 0",
      'chat_errors_total{code="rate_limited"} 1',
      'chat_errors_total{code="bad_request"} 0',
      "chat_publish_drops_total 0",
      "chat_backpressure_closes_total 0",
      'chat_storage_write_seconds_bucket{le="0.00025"} 0',
      'chat_storage_write_seconds_bucket{le="0.0005"} 1',
      'chat_storage_write_seconds_bucket{le="+Inf"} 2',
      "chat_storage_write_seconds_count 2",
      "# TYPE chat_storage_write_seconds histogram",
      "# TYPE chat_connections gauge",
    ]) {
      expect(text).toContain(name + "\n");
    }
  });
});

for (const engine of ENGINES) {
  describe(engine, () => {
    const { startServer } = engineServers(engine);

    describe("routes", () => {
      let server: TestServer;
      beforeAll(async () => {
        server = await startServer({ allowedOrigins: ["https://chat.example.com"] });
      });
      afterAll(() => server.stop());

      test("healthz, metrics, security headers, 404", async () => {
        const health = await server.http("/healthz");
        expect(health.status).toBe(200);
        expect(await health.json()).toEqual({ status: "ok", connections: 0, rooms: 0, uptime: expect.any(Number) });
        const page = await server.http("/");
        expect(page.status).toBe(200);
        expect(page.headers.get("content-type")).toStartWith("text/html");
        expect(page.headers.get("content-security-policy")).toBe(
          "default-src 'self'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        );
        expect(page.headers.get("x-content-type-options")).toBe("nosniff");
        for (const path of ["/app.js", "/style.css", "/favicon.svg"]) {
          const res = await server.http(path);
          expect(res.status).toBe(200);
          expect(res.headers.get("content-security-policy")).toContain("default-src 'self'");
        }
        const missing = await server.http("/nope");
        expect(missing.status).toBe(404);
        expect(missing.headers.get("content-security-policy")).toContain("default-src 'self'");
        const metrics = await server.http("/metrics");
        expect(metrics.headers.get("content-type")).toStartWith("text/plain");
        const text = await metrics.text();
        for (const name of ["chat_connections", "chat_joins_total", "chat_messages_in_total", "chat_messages_out_total", "chat_errors_total", "chat_publish_drops_total", "chat_backpressure_closes_total", "chat_storage_write_seconds_bucket"]) {
          expect(text).toContain(`\n${name}`);
        }
      });
    });

    describe("logs", () => {
      test("one JSON line per open and close with id, ip, duration, code and reason", async () => {
        await using server = await startServer();
        const c = await user(server, "logger");
        const opened = await server.logLine((l) => l.event === "open");
        c.ws.close(1000, "done here");
        const closed = await server.logLine((l) => l.event === "close" && l.conn === opened.conn);
        expect(opened).toMatchObject({ level: "info", transport: "ws", ip: "127.0.0.1", conn: expect.any(String), ts: expect.any(String) });
        expect(closed).toMatchObject({ level: "info", ip: "127.0.0.1", durationMs: expect.any(Number), code: 1000, reason: "done here", user: expect.any(String) });
      });
    });
  });
}

// The rest run on SQLite, the default engine, only.
describe("METRICS_TOKEN", () => {
  test("when set, /metrics needs Authorization: Bearer <token>, else 401", async () => {
    const token = "s3cret-metrics.token_~+/=";
    await using server = await startServer({ metricsToken: token });
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
  });

  test("unset, /metrics is open", async () => {
    await using server = await startServer();
    expect((await server.http("/metrics")).status).toBe(200);
  });
});
