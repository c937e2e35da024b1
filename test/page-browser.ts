/**
 * What the Chromium suites of the page share (test/page-*.test.ts; browser.test.ts keeps its own):
 * a suite that launches Debian's chromium with playwright-core and closes every page, client and
 * server a test made after it, and the steps every such test takes (sign in, wait until a room is
 * live, say something, wait until it is shown). No sleeps: every step waits for something on the
 * page, bounded by WAIT_MS.
 */
import { afterAll, afterEach, beforeAll, expect } from "bun:test";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { SignJWT } from "jose";
import { chromium, type Browser, type BrowserContext, type BrowserContextOptions, type Page } from "playwright-core";
import type { ServerOptions } from "../server.ts";
import { Client, WAIT_MS, startServer, tempDir, type TestServer } from "./helpers.ts";

/** Bounds one test. */
export const TEST_MS = 60_000;
/** Chromium must not talk to anything but 127.0.0.1, and starts from an empty profile (as in browser.test.ts). */
export const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
  "--disable-quic",
];
const CHROMIUM_PATHS = ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"];
const DESKTOP = { width: 1280, height: 800 };
/** Every page of every test says hello from 127.0.0.1: the per-address hello limit is not under test here. */
const HELLOS_PER_MINUTE = 100_000;
/** Signs the members' tickets of these suites (HS256; at least 32 bytes). */
export const JWT_SECRET = "page-tests-secret-of-at-least-32-bytes!";
/** The servers' admin token (at least 24 characters). */
export const ADMIN_TOKEN = "page-tests-admin-token-0123456789";
/** Screenshots for people to look at; .artifacts/ is ignored by git. */
export const SCREENSHOT_DIR = join(import.meta.dir, "..", ".artifacts", "screenshots");

/** The Chromium to drive: CHROMIUM_PATH, else the first of CHROMIUM_PATHS that exists. */
export function findChromium(): string {
  const fromEnv = process.env.CHROMIUM_PATH;
  if (fromEnv) {
    if (!existsSync(fromEnv)) throw new Error(`CHROMIUM_PATH=${fromEnv}: no such file`);
    return fromEnv;
  }
  const found = CHROMIUM_PATHS.find((path) => existsSync(path));
  if (!found) {
    throw new Error(
      `The browser tests need Chromium and found none at ${CHROMIUM_PATHS.join(", ")}. ` +
        "Install it with `apt-get install -y chromium` (as .ci/run does), or set CHROMIUM_PATH to a Chromium or Chrome binary.",
    );
  }
  return found;
}

/** A member's login ticket for `sub`, as a host app would sign it. */
export function ticket(sub: string, claims: Record<string, unknown> = {}): Promise<string> {
  return new SignJWT({ name: sub, ...claims })
    .setProtectedHeader({ alg: "HS256" })
    .setSubject(sub)
    .setExpirationTime("1h")
    .sign(new TextEncoder().encode(JWT_SECRET));
}

/** The suite: one Chromium for the file; each test's pages, clients and servers closed after it. */
export function browserSuite() {
  let browser: Browser;
  let data: ReturnType<typeof tempDir>;
  const contexts: BrowserContext[] = [];
  const servers: TestServer[] = [];
  const clients: Client[] = [];
  let problems: string[] = [];

  /** User data folders of persistent contexts, removed after each test. */
  const profiles: ReturnType<typeof tempDir>[] = [];

  beforeAll(async () => {
    data = tempDir();
    browser = await chromium.launch({ executablePath: findChromium(), headless: true, args: CHROMIUM_ARGS });
  });
  afterEach(async () => {
    for (const context of contexts.splice(0)) await context.close().catch(() => {});
    for (const client of clients.splice(0)) client.close();
    for (const server of servers.splice(0)) await server.stop().catch(() => {});
    for (const profile of profiles.splice(0)) profile.cleanup();
    problems = [];
  });
  afterAll(async () => {
    await browser?.close();
    data?.cleanup();
  });

  /** Collects a page's uncaught errors and CSP refusals: each test ends by expecting none. */
  function watch(page: Page, label: string): Page {
    page.on("pageerror", (error) => problems.push(`${label}: ${error.message}`));
    page.on("console", (message) => {
      if (message.type() === "error" && /Content Security Policy/i.test(message.text())) problems.push(`${label}: ${message.text()}`);
    });
    return page;
  }

  return {
    /** A server of the test's own (with members' tickets and an admin token), stopped after it. */
    async server(file: string, options: ServerOptions = {}): Promise<TestServer> {
      const server = await startServer({
        databasePath: join(data.path, `${file}.sqlite`),
        helloRatePerMinute: HELLOS_PER_MINUTE,
        authJwtSecret: JWT_SECRET,
        guestAccess: true,
        adminToken: ADMIN_TOKEN,
        ...options,
      });
      servers.push(server);
      return server;
    },
    /** A new browser context (a new person, with its own storage) on one page. */
    async newPage(label: string, options: BrowserContextOptions = {}): Promise<Page> {
      const context = await browser.newContext({ viewport: DESKTOP, ...options });
      contexts.push(context);
      context.setDefaultTimeout(WAIT_MS);
      return watch(await context.newPage(), label);
    },
    /**
     * A page in a browser with a profile on disk, as a person's is (not incognito: Chromium says
     * whether an app is installable only there), started with `preferences` (Chromium's Default/
     * Preferences, e.g. `{webkit: {webprefs: {default_font_size: 32}}}`). Closed after the test.
     */
    async persistentPage(label: string, preferences: object = {}, options: BrowserContextOptions = {}): Promise<Page> {
      const profile = tempDir();
      profiles.push(profile);
      mkdirSync(join(profile.path, "Default"));
      writeFileSync(join(profile.path, "Default", "Preferences"), JSON.stringify(preferences));
      const context = await chromium.launchPersistentContext(profile.path, { executablePath: findChromium(), headless: true, args: CHROMIUM_ARGS, viewport: DESKTOP, ...options });
      contexts.push(context);
      context.setDefaultTimeout(WAIT_MS);
      return watch(context.pages()[0] ?? (await context.newPage()), label);
    },
    /** Another tab of the same browser as `page`. */
    async newTab(page: Page, label: string): Promise<Page> {
      return watch(await page.context().newPage(), label);
    },
    /** A WebSocket client that is not a page, closed after the test. */
    async client(server: TestServer): Promise<Client> {
      const client = await Client.connect(server.wsUrl);
      clients.push(client);
      return client;
    },
    expectNoPageProblems(): void {
      const found = problems;
      problems = [];
      expect(found).toEqual([]);
    },
  };
}

/**
 * Goes to `#room` on `server`, picks `name` in the prompt (with `adminToken`, in the sign-in
 * screen's admin section), and waits until the room is live.
 */
export async function signIn(page: Page, server: TestServer, name: string, room: string, adminToken?: string): Promise<Page> {
  await page.goto(new URL(`/#${room}`, server.url).href);
  await page.fill("#login-name", name);
  if (adminToken !== undefined) {
    await page.click("#login-admin summary");
    await page.fill("#login-admin-token", adminToken);
  }
  await page.press("#login-name", "Enter");
  await live(page, room);
  return page;
}

/** Waits until the page is connected and `room` has caught up (the client marks it live). */
export async function live(page: Page, room: string): Promise<void> {
  await page.locator(`#status[data-state="connected"]`).waitFor({ state: "attached" });
  await page.locator(`.room[data-room="${room}"][data-sync="live"]`).waitFor({ state: "attached" });
}

/** Types a message into the composer and sends it with Enter. */
export async function say(page: Page, text: string): Promise<void> {
  await page.fill("#composer-text", text);
  await page.press("#composer-text", "Enter");
}

export const rows = (room: string) => `.room[data-room="${room}"] .messages .msg`;

/** The confirmed messages shown in a room, top to bottom. */
export function texts(page: Page, room: string): Promise<string[]> {
  return page.$$eval(`${rows(room)} .text`, (els) => els.map((el) => el.textContent ?? ""));
}

/** The row of the message with exactly this text (as shown) in the room. */
export function row(page: Page, room: string, text: string) {
  return page.locator(rows(room)).filter({ has: page.locator(".text", { hasText: new RegExp(`^${text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}$`) }) });
}

/** Waits until a confirmed message with exactly this text is shown in the room. */
export async function seen(page: Page, room: string, text: string): Promise<void> {
  await page.waitForFunction(
    ([selector, want]) => [...document.querySelectorAll(selector)].some((el) => el.textContent === want),
    [`${rows(room)} .text`, text] as const,
    { timeout: WAIT_MS },
  );
}

export async function waitForText(page: Page, selector: string, text: string): Promise<void> {
  await page.waitForFunction(([s, t]) => document.querySelector(s)?.textContent === t, [selector, text] as const, { timeout: WAIT_MS });
}

/** The lines about the room (presence, settings, moderation) in its log. */
export function events(page: Page, room: string): Promise<string[]> {
  return page.$$eval(`.room[data-room="${room}"] .event > span`, (els) => els.map((el) => el.textContent ?? ""));
}

/** Waits until the room's log has a line with exactly this text. */
export async function line(page: Page, room: string, text: string): Promise<void> {
  await page.waitForFunction(
    ([selector, want]) => [...document.querySelectorAll(selector)].some((el) => el.textContent === want),
    [`.room[data-room="${room}"] .event > span`, text] as const,
    { timeout: WAIT_MS },
  );
}

/** The member list: each name with its tags (kind, role, you). */
export function memberList(page: Page): Promise<string[]> {
  return page.$$eval("#members li", (lis) =>
    lis.map((li) => [li.querySelector(".name")?.textContent, ...[...li.querySelectorAll(".tag, .you")].map((t) => t.textContent)].join(" ")),
  );
}
