/**
 * deploy/nginx.conf and deploy/Caddyfile in front of a real server, in real nginx and real Caddy.
 *
 * Each proxy runs from the deploy file itself, with only the lines its comments mark "(tested: …)"
 * changed: a free loopback port, and the test server as upstream. Every change must match exactly
 * once, so an edit to the deploy file that the test no longer covers fails here. Each proxy runs
 * in a temp dir of its own and is killed after its test, passed or not.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { join } from "node:path";
import {
  Client,
  WAIT_MS,
  WS_UPGRADE,
  bounded,
  openedIp,
  reservePort,
  spawnServer,
  startServer,
  tempDir,
  upgradeAttempt,
  type TestServer,
} from "./helpers.ts";

const DEPLOY = join(import.meta.dir, "..", "deploy");
const NGINX = Bun.which("nginx") ?? "/usr/sbin/nginx";
const CADDY = Bun.which("caddy") ?? "/usr/bin/caddy";
/** The read timeout of the control run: the setting the deploy files get right, made short. */
const SHORT_READ_TIMEOUT = "2s";

/** Undo steps of the running test (processes, servers, temp dirs), run last-first after it. */
const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const undo of cleanups.splice(0).reverse()) await undo();
});
/** Should the test runner itself die, no proxy outlives it. */
const children = new Set<Bun.Subprocess>();
process.on("exit", () => {
  for (const child of children) child.kill("SIGKILL");
});

/** `text` with each `from` replaced; each must occur exactly once. */
function substitute(text: string, changes: [from: string, to: string][]): string {
  for (const [from, to] of changes) {
    const count = text.split(from).length - 1;
    if (count !== 1) throw new Error(`expected ${JSON.stringify(from)} once in the deploy file, found it ${count} times`);
    text = text.replace(from, () => to);
  }
  return text;
}

/** Bounds the ports tried when another process takes a free one before the proxy binds it. */
const PORT_ATTEMPTS = 3;

/** Runs `start` on `given`, or on a free port, and on another should that one be taken meanwhile. */
async function onFreePort<T>(given: number | undefined, start: (port: number) => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    const reserved = given === undefined ? reservePort() : null;
    reserved?.release();
    try {
      return await start(given ?? reserved!.port);
    } catch (error) {
      if (given !== undefined || attempt >= PORT_ATTEMPTS || !/address already in use/i.test(String(error))) throw error;
    }
  }
}

/** Starts a process and resolves once a line of its stderr matches `pattern`; it dies with the test. */
async function startProcess(command: string[], env: Record<string, string>, pattern: RegExp): Promise<{ stderr: string[] }> {
  const proc = Bun.spawn(command, { env: { ...process.env, ...env }, stdin: "ignore", stdout: "ignore", stderr: "pipe" });
  children.add(proc);
  cleanups.push(async () => {
    proc.kill("SIGKILL");
    await proc.exited;
    children.delete(proc);
  });
  // Read stderr to its end: a process writing into a closed pipe may die of SIGPIPE.
  const stderr: string[] = [];
  let ready!: () => void;
  const started = new Promise<void>((resolve) => (ready = resolve));
  const ended = (async () => {
    let buffer = "";
    for await (const chunk of proc.stderr.pipeThrough(new TextDecoderStream())) {
      buffer += chunk;
      const lines = buffer.split("\n");
      buffer = lines.pop()!;
      stderr.push(...lines);
      if (lines.some((line) => pattern.test(line))) ready();
    }
    throw new Error(`${command[0]} exited: ${[...stderr, buffer].join("\n")}`);
  })();
  await bounded(Promise.race([started, ended]), `${command[0]} to start`);
  await bounded(started, `${command[0]} to start`);
  return { stderr };
}

interface Proxy {
  port: number;
  /** http://127.0.0.1:PORT, as a browser would send it in Origin. */
  origin: string;
  wsUrl: string;
}

interface ProxyOptions {
  /** Where the proxy listens; a free port by default. */
  port?: number;
  /** Replaces the deploy file's read timeout for a WebSocket (the control run). */
  readTimeout?: string;
}

/** deploy/nginx.conf, included from http {} as Debian's nginx.conf includes conf.d/. */
function startNginx(upstreamPort: number, options: ProxyOptions = {}): Promise<Proxy> {
  return onFreePort(options.port, (port) => runNginx(port, upstreamPort, options));
}

async function runNginx(port: number, upstreamPort: number, options: ProxyOptions): Promise<Proxy> {
  const dir = tempDir();
  cleanups.push(dir.cleanup);
  const site = substitute(await Bun.file(join(DEPLOY, "nginx.conf")).text(), [
    ["server 127.0.0.1:3000;", `server 127.0.0.1:${upstreamPort};`],
    ["listen 80;", `listen 127.0.0.1:${port};`],
    ...(options.readTimeout ? ([["proxy_read_timeout 1h;", `proxy_read_timeout ${options.readTimeout};`]] as [string, string][]) : []),
  ]);
  await Bun.write(join(dir.path, "bun-chat.conf"), site);
  const temp = ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"].map((kind) => `${kind}_temp_path ${join(dir.path, kind)};`);
  await Bun.write(
    join(dir.path, "nginx.conf"),
    [
      `pid ${join(dir.path, "nginx.pid")};`,
      "error_log stderr notice;",
      "events { worker_connections 256; }",
      `http { access_log off; ${temp.join(" ")} include ${join(dir.path, "bun-chat.conf")}; }`,
    ].join("\n"),
  );
  // nginx logs its version once its listening sockets are open.
  await startProcess(
    [NGINX, "-p", dir.path, "-c", join(dir.path, "nginx.conf"), "-e", "stderr", "-g", "daemon off; master_process off;"],
    {},
    /\bnginx\/\d/,
  );
  return { port, origin: `http://127.0.0.1:${port}`, wsUrl: `ws://127.0.0.1:${port}/ws` };
}

/** deploy/Caddyfile, after global options that keep Caddy's admin API off and Caddy on loopback. */
function startCaddy(upstreamPort: number, options: ProxyOptions = {}): Promise<Proxy> {
  return onFreePort(options.port, (port) => runCaddy(port, upstreamPort, options));
}

async function runCaddy(port: number, upstreamPort: number, options: ProxyOptions): Promise<Proxy> {
  const dir = tempDir();
  cleanups.push(dir.cleanup);
  const header = "header_up -Fly-Client-IP";
  const site = substitute(await Bun.file(join(DEPLOY, "Caddyfile")).text(), [
    ["chat.example.com {", `http://127.0.0.1:${port} {`],
    ["reverse_proxy 127.0.0.1:3000 {", `reverse_proxy 127.0.0.1:${upstreamPort} {`],
    // Caddy sets no read timeout on a proxied WebSocket; the control run adds one.
    ...(options.readTimeout ? ([[header, `${header}\n\t\ttransport http {\n\t\t\tread_timeout ${options.readTimeout}\n\t\t}`]] as [string, string][]) : []),
  ]);
  const config = join(dir.path, "Caddyfile");
  await Bun.write(config, `{\n\tadmin off\n\tdefault_bind 127.0.0.1\n}\n\n${site}`);
  const home = { HOME: dir.path, XDG_CONFIG_HOME: join(dir.path, "config"), XDG_DATA_HOME: join(dir.path, "data") };
  await startProcess([CADDY, "run", "--config", config, "--adapter", "caddyfile"], home, /serving initial configuration/);
  return { port, origin: `http://127.0.0.1:${port}`, wsUrl: `ws://127.0.0.1:${port}/ws` };
}

/** A server of this test's, stopped after it. */
async function server(options: Parameters<typeof startServer>[0] = {}): Promise<TestServer> {
  const s = await startServer(options);
  cleanups.push(() => s.stop());
  return s;
}

const port = (s: TestServer) => Number(s.chat.url.port);

describe.each([
  ["nginx", startNginx],
  ["Caddy", startCaddy],
] as const)("behind %s", (_name, startProxy) => {
  test("the page loads with its security headers, and a WebSocket chat round trip works", async () => {
    // PUBLIC_HOSTS and the Origin check both see the Host the browser sent to the proxy.
    const reserved = reservePort();
    const s = await server({ publicHosts: [`127.0.0.1:${reserved.port}`] });
    reserved.release();
    const proxy = await startProxy(port(s), { port: reserved.port });
    const page = await fetch(`${proxy.origin}/`);
    expect(page.status).toBe(200);
    expect(page.headers.get("content-type")).toBe("text/html; charset=utf-8");
    expect(page.headers.get("content-security-policy")).toBe(
      "default-src 'self'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    );
    expect(page.headers.get("x-content-type-options")).toBe("nosniff");
    expect(page.headers.get("x-frame-options")).toBe("SAMEORIGIN");
    expect(await page.text()).toContain('<script type="module" src="/app.js">');
    const script = await fetch(`${proxy.origin}/app.js`);
    expect([script.status, script.headers.get("content-type")]).toEqual([200, "text/javascript; charset=utf-8"]);
    expect((await script.text()).length).toBeGreaterThan(1000);

    // As the page would: same-origin WebSocket through the proxy.
    const alice = await Client.connect(proxy.wsUrl, { Origin: proxy.origin });
    const bob = await Client.connect(proxy.wsUrl, { Origin: proxy.origin });
    await alice.hello("alice");
    await bob.hello("bob");
    await alice.join("lobby");
    await bob.join("lobby");
    expect(await alice.expect("presence")).toMatchObject({ room: "lobby", event: "join", user: { name: "bob" } });
    const sent = await bob.say("lobby", "through the proxy");
    expect(await alice.expect("message")).toEqual(sent);
    // Another site's page is still refused: the proxy passed the Host, not its own.
    expect(await upgradeAttempt(proxy.port, { ...WS_UPGRADE, Origin: "http://evil.example" })).toMatchObject({ status: 403 });
    alice.close();
    bob.close();
    await s.settled();
  });

  test("an idle WebSocket outlives a read timeout that cuts it in the control run", async () => {
    const s = await server();
    const short = await startProxy(port(s), { readTimeout: SHORT_READ_TIMEOUT });
    const recommended = await startProxy(port(s));
    // `steady` goes quiet first, so by the time the short timeout has cut `cut`, `steady` has been
    // silent at least as long, through the deploy file's own setting.
    const steady = await Client.connect(recommended.wsUrl);
    await steady.hello("steady");
    await steady.join("quiet");
    await steady.sync();
    const cut = await Client.connect(short.wsUrl);
    await cut.hello("cut");
    await cut.sync();
    expect((await bounded(cut.closed, "the short read timeout to cut the idle connection", WAIT_MS)).code).toBe(1006);
    expect(steady.closeEvent).toBeNull();
    expect(await steady.sync()).toEqual([]);
    expect((await steady.say("quiet", "still here")).text).toBe("still here");
    steady.close();
    await s.settled();
  });

  test("with TRUST_PROXY the per-IP cap counts the address the proxy passed; a client's own headers spoof nothing", async () => {
    const s = await server({ trustProxy: true, maxConnectionsPerIp: 1 });
    const proxy = await startProxy(port(s));
    // Clients on other loopback addresses than the proxy's own link to the server (127.0.0.1).
    const spoof = (n: number) => ({ ...WS_UPGRADE, "X-Forwarded-For": `10.0.0.${n}`, "Fly-Client-IP": `10.0.1.${n}` });
    const first = await upgradeAttempt(proxy.port, spoof(1), { from: "127.0.0.2", hold: true });
    expect(first.status).toBe(101);
    expect(await openedIp(s, 0)).toBe("127.0.0.2");
    expect(await upgradeAttempt(proxy.port, spoof(2), { from: "127.0.0.2" })).toMatchObject({
      status: 429,
      body: { error: "too_many_connections_from_ip" },
    });
    const other = await upgradeAttempt(proxy.port, spoof(3), { from: "127.0.0.3", hold: true });
    expect(other.status).toBe(101);
    expect(await openedIp(s, 1)).toBe("127.0.0.3");
    first.close();
    other.close();
    await s.settled();
  });

  test("SIGTERM drains through the proxy: clients get 1001 and the server exits 0", async () => {
    const dir = tempDir();
    cleanups.push(dir.cleanup);
    const running = await spawnServer({ DATABASE_PATH: join(dir.path, "chat.sqlite") });
    cleanups.push(() => running.proc.kill("SIGKILL"));
    const proxy = await startProxy(Number(running.url.port));
    const alice = await Client.connect(proxy.wsUrl);
    await alice.hello("alice");
    await alice.join("general");
    await alice.say("general", "going down soon");
    const early = await Client.connect(proxy.wsUrl); // not welcomed: closed too
    await early.sync();
    running.proc.kill("SIGTERM");
    expect(await bounded(alice.closed, "1001")).toEqual({ code: 1001, reason: "server shutting down" });
    expect(await bounded(early.closed, "1001")).toEqual({ code: 1001, reason: "server shutting down" });
    expect(await bounded(running.proc.exited, "exit")).toBe(0);
  });
});
