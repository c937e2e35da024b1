/** fly.toml, the Dockerfile and the systemd unit must agree with the server they deploy. */
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { dirname, join, posix } from "node:path";
import fly from "../fly.toml";
import { DEFAULTS, loadConfig } from "../server.ts";
import { run, startServer, tempDir } from "./helpers.ts";

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
  await using server = await startServer();
  expect((await server.http(check.path)).status).toBe(200);
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

test("the Dockerfile compiles the binary on oven/bun slim and runs it alone on distroless", async () => {
  const stages = dockerfile.split(/^FROM /m).slice(1);
  expect(stages.length).toBe(2);
  const [build, run] = stages as [string, string];
  expect(build).toMatch(/^oven\/bun:[\w.]*-?slim AS build\n/);
  expect(build).toContain("bun install --frozen-lockfile --production");
  expect(build).toMatch(/^RUN bun run build$/m);
  // The build stage has every file deploy/build.ts reads: the server and its modules, the page, the build script
  // (test/binary.test.ts builds from exactly what it copies).
  expect(build).toMatch(/^COPY .*server\.ts/m);
  expect(build).toMatch(/^COPY src /m);
  expect(build).toMatch(/^COPY public /m);
  expect(build).toMatch(/^COPY deploy\/build\.ts /m);
  const pkg = await Bun.file(new URL("../package.json", import.meta.url)).json();
  expect(pkg.scripts.build).toBe("bun deploy/build.ts");
  // The image that runs: glibc and the binary that `bun run build` writes to dist/bun-chat.
  expect(run).toStartWith("gcr.io/distroless/base-nossl-debian12\n");
  const copies = [...run.matchAll(/^COPY (.+)$/gm)].map((m) => m[1]);
  expect(copies).toEqual(["--from=build /src/dist/bun-chat /usr/local/bin/bun-chat"]);
  expect(run).not.toMatch(/^RUN /m); // distroless has no shell
  expect(last("EXPOSE")).toBe(String(DEFAULTS.port));
  expect(last("STOPSIGNAL")).toBe("SIGTERM");
  expect(last("CMD")).toBe('["/usr/local/bin/bun-chat"]');
});

describe("deploy/bun-chat.service", () => {
  const unitText = readFileSync(new URL("../deploy/bun-chat.service", import.meta.url), "utf8");
  /** Every `Key=value` of the unit, in order; keys may repeat. */
  const entries = unitText
    .split("\n")
    .filter((line) => /^[A-Z]\w*=/.test(line))
    .map((line) => [line.slice(0, line.indexOf("=")), line.slice(line.indexOf("=") + 1)] as const);
  const values = (key: string) => entries.filter(([k]) => k === key).map(([, v]) => v);
  const one = (key: string) => {
    const found = values(key);
    if (found.length !== 1) throw new Error(`${key}= appears ${found.length} times`);
    return found[0]!;
  };

  test("runs the binary with a valid environment, its database in the state directory, and drains on SIGTERM", () => {
    expect(one("ExecStart")).toBe("/usr/local/bin/bun-chat");
    const env = Object.fromEntries(values("Environment").flatMap((v) => v.split(" ")).map((kv) => kv.split("=") as [string, string]));
    const loaded = loadConfig(env);
    if (!loaded.ok) throw new Error(loaded.errors.join("\n"));
    expect(loaded.config).toMatchObject({ host: "127.0.0.1", port: DEFAULTS.port, trustProxy: true });
    expect(loaded.config.databasePath).toBe(`/var/lib/${one("StateDirectory")}/chat.sqlite`);
    expect(one("KillSignal")).toBe("SIGTERM");
    expect(seconds(one("TimeoutStopSec")) * 1000).toBeGreaterThan(DEFAULTS.drainTimeoutMs);
    expect(Number(one("LimitNOFILE"))).toBeGreaterThan(DEFAULTS.maxConnections);
  });

  test("is hardened, except MemoryDenyWriteExecute, which Bun's JIT cannot run under", () => {
    for (const [key, value] of Object.entries({
      DynamicUser: "yes",
      NoNewPrivileges: "yes",
      ProtectSystem: "strict",
      ProtectHome: "yes",
      PrivateTmp: "yes",
      PrivateDevices: "yes",
      CapabilityBoundingSet: "",
      RestrictAddressFamilies: "AF_INET AF_INET6 AF_UNIX",
    })) {
      expect([key, one(key)]).toEqual([key, value]);
    }
    expect(values("MemoryDenyWriteExecute")).toEqual([]);
    expect(unitText).toContain("# Not set: MemoryDenyWriteExecute=yes. JavaScriptCore's JIT");
  });

  test("systemd-analyze verifies it and rates its exposure OK", async () => {
    const dir = tempDir();
    try {
      // verify wants ExecStart to exist: any executable stands in for the binary.
      const unit = join(dir.path, "bun-chat.service");
      await Bun.write(unit, unitText.replace("ExecStart=/usr/local/bin/bun-chat", `ExecStart=${process.execPath}`));
      const analyze = (...args: string[]) => run(["systemd-analyze", ...args, unit]);
      expect(await analyze("verify")).toEqual({ code: 0, stdout: "", stderr: "" });
      // systemd's scale: 0 (locked down) to 10 (exposed); up to 2 is its "OK".
      const security = await analyze("security", "--offline=true", "--threshold=20");
      expect(security.code).toBe(0);
      const exposure = Number(/Overall exposure level for bun-chat\.service: (\d+\.\d)/.exec(security.stdout + security.stderr)?.[1]);
      expect(exposure).toBeLessThanOrEqual(2);
    } finally {
      dir.cleanup();
    }
  });
});
