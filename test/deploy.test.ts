/** fly.toml and the Dockerfile must agree with the server they deploy. */
import { expect, test } from "bun:test";
import { dirname, posix } from "node:path";
import fly from "../fly.toml";
import { DEFAULTS, loadConfig } from "../server.ts";
import { startServer } from "./helpers.ts";

const dockerfile = await Bun.file(new URL("../Dockerfile", import.meta.url)).text();
const flyText = await Bun.file(new URL("../fly.toml", import.meta.url)).text();
const seconds = (duration: string) => Number(/^(\d+)s$/.exec(duration)?.[1] ?? NaN);
/** The last value of a Dockerfile instruction, e.g. WORKDIR of the final stage. */
const last = (instruction: string) => [...dockerfile.matchAll(new RegExp(`^${instruction} (.+)$`, "gm"))].at(-1)?.[1];

test("fly.toml serves the server's default port, checks /healthz and drains on SIGTERM", async () => {
  const service = fly.http_service;
  expect(service.internal_port).toBe(DEFAULTS.port);
  expect(fly.kill_signal).toBe("SIGTERM");
  expect(seconds(fly.kill_timeout) * 1000).toBeGreaterThan(DEFAULTS.drainTimeoutMs);
  expect(service.concurrency.type).toBe("connections");
  expect(service.concurrency.soft_limit).toBeLessThanOrEqual(service.concurrency.hard_limit);
  expect(service.concurrency.hard_limit).toBeLessThanOrEqual(DEFAULTS.maxConnections);
  expect(service.auto_stop_machines).toBe("off");
  expect(fly.metrics).toEqual({ port: DEFAULTS.port, path: "/metrics" });
  const [check] = service.checks;
  expect(check).toMatchObject({ method: "GET", path: "/healthz" });
  const server = await startServer();
  expect((await server.http(check.path)).status).toBe(200);
  await server.stop();
});

test("fly.toml's environment is valid and keeps idle sockets under a 60 s proxy timeout", () => {
  const loaded = loadConfig(fly.env);
  if (!loaded.ok) throw new Error(loaded.errors.join("\n"));
  expect(loaded.config.trustProxy).toBe(true);
  expect(loaded.config.idleTimeoutSeconds).toBeLessThan(60);
  // The TCP door block tells what Fly needs for raw TCP.
  expect(flyText).toContain("fly ips allocate-v4");
  expect(flyText).toContain('TCP_PORT = "4000"');
});

test("the volume is mounted where DATABASE_PATH points inside the image", () => {
  const workdir = last("WORKDIR");
  expect(workdir).toBe("/app");
  const dataDir = posix.resolve(workdir!, dirname(DEFAULTS.databasePath));
  expect(fly.mounts).toEqual([{ source: expect.any(String), destination: dataDir }]);
  expect(fly.env.DATABASE_PATH).toBeUndefined();
});

test("the Dockerfile builds on oven/bun slim, installs what is locked and runs server.ts", () => {
  const images = [...dockerfile.matchAll(/^FROM (\S+)/gm)].map((m) => m[1]);
  expect(images.length).toBeGreaterThan(0);
  for (const image of images) expect(image).toMatch(/^oven\/bun:[\w.]*-?slim$/);
  expect(dockerfile).toContain("bun install --frozen-lockfile --production");
  expect(last("EXPOSE")).toBe(String(DEFAULTS.port));
  expect(last("CMD")).toBe('["bun", "run", "server.ts"]');
  expect(dockerfile).toMatch(/^COPY .*server\.ts/m);
  expect(dockerfile).toMatch(/^COPY public /m);
});
