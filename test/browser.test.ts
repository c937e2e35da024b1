/**
 * Browser tests: the page at / driven in real Chromium (Debian's `chromium`) by playwright-core,
 * against a real server started in-process.
 *
 * No sleeps: every step waits for something on the page (a row, a status, an attribute); each
 * wait has a safety bound (WAIT_MS) that fails the test instead of hanging it. Absence (no
 * duplicate, no script run) is proven by waiting for a later marker and then asserting the
 * exact list.
 */
import { afterAll, afterEach, beforeAll, expect, test } from "bun:test";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { chromium, type Browser, type BrowserContext, type BrowserContextOptions, type Page, type WebSocketRoute } from "playwright-core";
import type { MessageFrame, ServerOptions } from "../server.ts";
import { Client, WAIT_MS, sayAll, startServer, tempDir, user, type TestServer } from "./helpers.ts";
import { CHROMIUM_ARGS, SCREENSHOT_DIR, findChromium } from "./page-browser.ts";

/** Bounds one test. */
const TEST_MS = 60_000;
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };

let browser: Browser;
let chat: TestServer;
/** The servers' database files (a restart on one keeps its history). */
let data: ReturnType<typeof tempDir>;
const contexts: BrowserContext[] = [];
/** Servers a test started for itself (own settings, own clock), stopped after it. */
const ownServers: TestServer[] = [];
/** WebSocket clients (bots) a test opened, closed after it. */
const bots: Client[] = [];
/** Uncaught page errors and CSP refusals, from every page: each test ends by expecting none. */
let pageProblems: string[] = [];

/** Every page of every test says hello from 127.0.0.1: the per-address hello limit is not under test here. */
const HELLOS_PER_MINUTE = 100_000;

/** How far the shared server's clock runs ahead of the real one: a test moves it past a cache's second. */
let skewMs = 0;

/** A server for pages, on database file `file` (in `data`), letting every hello in. */
function pageServer(file: string, options: ServerOptions = {}): Promise<TestServer> {
  return startServer({ databasePath: join(data.path, `${file}.sqlite`), helloRatePerMinute: HELLOS_PER_MINUTE, now: () => Date.now() + skewMs, ...options });
}

/** A server of the test's own, on its own database file, stopped after the test. */
async function ownServer(file: string, options: ServerOptions = {}): Promise<TestServer> {
  const server = await pageServer(file, options);
  ownServers.push(server);
  return server;
}

/** Stops an own server (pages see 1001); the function returned starts it again on the same port and file. */
async function stopOwn(server: TestServer, file: string): Promise<() => Promise<TestServer>> {
  const port = Number(server.url.port);
  ownServers.splice(ownServers.indexOf(server), 1);
  await server.stop();
  return () => ownServer(file, { port });
}

/** A WebSocket user that is not a page, welcomed and in `rooms`; closed after the test. */
async function bot(server: TestServer, name: string, ...rooms: string[]): Promise<Client> {
  const client = await user(server, name, ...rooms);
  bots.push(client);
  return client;
}

beforeAll(async () => {
  data = tempDir();
  chat = await pageServer("chat");
  // launch() gives every run a fresh, empty temporary profile and deletes it afterwards.
  browser = await chromium.launch({ executablePath: findChromium(), headless: true, args: CHROMIUM_ARGS });
});

/** Each test's people leave with it, so names and connections do not carry over. */
afterEach(async () => {
  for (const context of contexts.splice(0)) await context.close().catch(() => {});
  for (const bot of bots.splice(0)) bot.close();
  for (const server of ownServers.splice(0)) await server.stop().catch(() => {});
  pageProblems = [];
});

afterAll(async () => {
  await browser?.close();
  await chat?.stop();
  data?.cleanup();
});

/** A new browser context (a new person, with its own storage) on one page. */
async function newPage(label: string, options: BrowserContextOptions = {}): Promise<Page> {
  const context = await browser.newContext({ viewport: DESKTOP, ...options });
  contexts.push(context);
  context.setDefaultTimeout(WAIT_MS);
  return watch(await context.newPage(), label);
}

/** Another tab of the same browser (same storage) as `page`. */
async function newTab(page: Page, label: string): Promise<Page> {
  return watch(await page.context().newPage(), label);
}

/** Collects a page's uncaught errors and CSP refusals into pageProblems. */
function watch(page: Page, label: string): Page {
  page.on("pageerror", (error) => pageProblems.push(`${label}: ${error.message}`));
  page.on("console", (message) => {
    if (message.type() === "error" && /Content Security Policy/i.test(message.text())) {
      pageProblems.push(`${label}: ${message.text()}`);
    }
  });
  return page;
}

/** Opens the page at `#room`, picks `name` in the prompt, and waits until the room is live. */
async function openAs(name: string, room: string, options: BrowserContextOptions = {}, base: URL = chat.url): Promise<Page> {
  return signIn(await newPage(name, options), name, room, base);
}

/** Goes to `#room` on a page of its own (set up by the caller), signs in as `name`, waits until live. */
async function signIn(page: Page, name: string, room: string, base: URL = chat.url): Promise<Page> {
  await page.goto(new URL(`/#${room}`, base).href);
  await page.fill("#login-name", name);
  await page.press("#login-name", "Enter");
  await live(page, room);
  return page;
}

/** Joins (or opens) a room with the sidebar's field and waits until it is live. */
async function joinRoom(page: Page, room: string): Promise<void> {
  await page.fill("#join-room", room);
  await page.press("#join-room", "Enter");
  await live(page, room);
}

/** How the room's log is scrolled: px left below the view, and the rows' count. */
function scrollState(page: Page, room: string): Promise<{ below: number; top: number }> {
  return page.$eval(`.room[data-room="${room}"] .log`, (log) => ({
    below: log.scrollHeight - log.scrollTop - log.clientHeight,
    top: log.scrollTop,
  }));
}

/** Waits until the page is connected and `room` has caught up (the client marks it live). */
async function live(page: Page, room: string): Promise<void> {
  await page.locator(`#status[data-state="connected"]`).waitFor({ state: "attached" });
  await page.locator(`.room[data-room="${room}"][data-sync="live"]`).waitFor({ state: "attached" });
}

/** Types a message into the composer and sends it with Enter. */
async function say(page: Page, text: string): Promise<void> {
  await page.fill("#composer-text", text);
  await page.press("#composer-text", "Enter");
}

const rows = (room: string) => `.room[data-room="${room}"] .messages .msg`;

/** The confirmed messages shown in a room, top to bottom. */
function texts(page: Page, room: string): Promise<string[]> {
  return page.$$eval(`${rows(room)} .text`, (els) => els.map((el) => el.textContent ?? ""));
}

/** Waits until a confirmed message with exactly this text is shown in the room. */
async function seen(page: Page, room: string, text: string): Promise<void> {
  await page.waitForFunction(
    ([selector, want]) => [...document.querySelectorAll(selector)].some((el) => el.textContent === want),
    [`${rows(room)} .text`, text] as const,
    { timeout: WAIT_MS },
  );
}

/** Waits until the room shows no pending (unconfirmed) message. */
async function outboxEmpty(page: Page, room: string): Promise<void> {
  await page.waitForFunction((selector) => document.querySelectorAll(selector).length === 0, `.room[data-room="${room}"] .outbox .msg`, {
    timeout: WAIT_MS,
  });
}

async function waitForText(page: Page, selector: string, text: string): Promise<void> {
  await page.waitForFunction(([s, t]) => document.querySelector(s)?.textContent === t, [selector, text] as const, { timeout: WAIT_MS });
}

function members(page: Page): Promise<string[]> {
  return page.$$eval("#members .name", (els) => els.map((el) => el.textContent ?? ""));
}

function events(page: Page, room: string): Promise<string[]> {
  return page.$$eval(`.room[data-room="${room}"] .event > span`, (els) => els.map((el) => el.textContent ?? ""));
}

function expectNoPageProblems(): void {
  const problems = pageProblems;
  pageProblems = [];
  expect(problems).toEqual([]);
}

/**
 * Puts a page's WebSockets through a switch the test holds: frames pass both ways until the
 * current socket is silenced (a dead link: nothing in, nothing out) or dropped; `lose` drops the
 * next server frame containing a string; while `refuse` is set, new sockets are closed at once
 * (the network is down).
 */
async function wire(page: Page) {
  let current: { route: WebSocketRoute; silent: boolean } | null = null;
  let losing: string | null = null;
  const control = {
    refuse: false,
    silence: () => void (current!.silent = true),
    /** Closes the current socket as the server would, with this code and reason. */
    drop: (code: number, reason: string) => current!.route.close({ code, reason }),
    lose: (part: string) => void (losing = part),
  };
  const lost = (frame: string | Buffer) => {
    if (losing === null || typeof frame !== "string" || !frame.includes(losing)) return false;
    losing = null;
    return true;
  };
  await page.routeWebSocket(/\/ws$/, (route) => {
    if (control.refuse) return void route.close({ code: 1011, reason: "test: network down" });
    const server = route.connectToServer();
    const link = { route, silent: false };
    current = link;
    route.onMessage((frame) => void (link.silent || server.send(frame)));
    server.onMessage((frame) => void (link.silent || lost(frame) || route.send(frame)));
  });
  return control;
}

/** Opens the page through `wire`, logs in and waits until the room is live. */
async function openWired(name: string, room: string, base: URL = chat.url) {
  const page = await newPage(name);
  const control = await wire(page);
  await page.goto(new URL(`/#${room}`, base).href);
  await page.fill("#login-name", name);
  await page.press("#login-name", "Enter");
  await live(page, room);
  return { page, control };
}

test(
  "two people chat in one room: messages, presence, typing, unread counts and a reload",
  async () => {
    const room = "duo";
    const alice = await openAs("alice", room);
    const bob = await openAs("bob", room);

    // Presence: alice sees bob arrive, both see both in the member list.
    await waitForText(alice, `.room[data-room="${room}"] .event > span`, "bob joined");
    await alice.waitForFunction(() => document.querySelectorAll("#members li").length === 2);
    expect(await members(alice)).toEqual(["alice", "bob"]);
    expect(await members(bob)).toEqual(["alice", "bob"]);

    // Typing: bob types, alice is told; his message then clears it.
    await bob.locator("#composer-text").pressSequentially("hi al");
    await waitForText(alice, "#typing", "bob is typing…");
    await bob.fill("#composer-text", "hi alice");
    await bob.press("#composer-text", "Enter");
    await seen(alice, room, "hi alice");
    expect(await alice.textContent("#typing")).toBe("");

    await say(alice, "hello bob");
    await say(alice, "how are you?");
    await seen(bob, room, "how are you?");
    await outboxEmpty(alice, room);
    const conversation = ["hi alice", "hello bob", "how are you?"];
    expect(await texts(alice, room)).toEqual(conversation);
    expect(await texts(bob, room)).toEqual(conversation);

    // Own messages are marked; alice's two in a row form one group (the second has no header).
    expect(await alice.locator(`${rows(room)}.mine .text`).allTextContents()).toEqual(["hello bob", "how are you?"]);
    expect(await bob.locator(`${rows(room)}.mine .text`).allTextContents()).toEqual(["hi alice"]);
    expect(await bob.locator(`${rows(room)}.cont .text`).allTextContents()).toEqual(["how are you?"]);

    // Unread: alice opens a second room by typing its name; bob's next message in duo is unread there.
    await alice.fill("#join-room", "side");
    await alice.press("#join-room", "Enter");
    await live(alice, "side");
    expect(alice.url()).toEndWith("#side");
    await say(bob, "are you there?");
    await waitForText(alice, `.room-link[href="#${room}"] .badge`, "1");
    expect(await alice.title()).toBe("(1) #side · Chat");
    await alice.click(`#my-rooms .room-link[href="#${room}"]`);
    await waitForText(alice, "#room-title", `#${room}`);
    expect(await alice.title()).toBe(`#${room} · Chat`);
    expect(await alice.locator(`.room-link[href="#${room}"] .badge`).isHidden()).toBe(true);

    // A reload keeps the same identity (session and name in localStorage): no prompt, his earlier
    // message is still his, and alice sees no leave/join (presence grace). The rooms the server
    // lists may be a second old (docs/protocol.md): a second passes first, so alice's #side is in.
    skewMs += 1_000;
    await bob.reload();
    await live(bob, room);
    expect(await bob.locator("#login").isHidden()).toBe(true);
    expect(await bob.locator(`${rows(room)}.mine .text`).allTextContents()).toEqual(["hi alice", "are you there?"]);
    await say(bob, "back after a reload");
    await seen(alice, room, "back after a reload");
    expect(await events(alice, room)).toEqual(["bob joined"]);

    // The directory lists rooms with people (from /api/rooms, with member counts) even before
    // anything is said in them; joining one takes one click.
    const side = `#directory .room-link[href="#side"]`;
    await bob.locator(side).waitFor();
    expect(await bob.textContent(`${side} .count`)).toBe("1");
    await alice.click(`#my-rooms .room-link[href="#side"]`);
    await waitForText(alice, "#room-title", "#side");
    expect(await members(alice)).toEqual(["alice"]);
    await bob.click(side);
    await live(bob, "side");
    await waitForText(alice, `.room[data-room="side"] .event:last-of-type > span`, "bob joined");
    expect(await members(alice)).toEqual(["alice", "bob"]);

    // Leaving is explicit, so alice sees it at once (no grace), on the same line: nothing was said between.
    await bob.click(`#my-rooms button[aria-label="Leave #side"]`);
    await waitForText(alice, `.room[data-room="side"] .event:last-of-type > span`, "bob joined and left");
    expect(await members(alice)).toEqual(["alice"]);
    expectNoPageProblems();
  },
  TEST_MS,
);

test(
  "hostile messages show as literal text and run nothing; only http(s) links become links",
  async () => {
    const room = "xss";
    const mallory = await openAs("mallory", room);
    const victim = await openAs("victim", room);
    const dialogs: string[] = [];
    for (const page of [mallory, victim]) {
      page.on("dialog", (dialog) => {
        dialogs.push(dialog.message());
        void dialog.dismiss();
      });
    }
    const payloads = [
      `<img src=x onerror="window.__pwned=1">`,
      `<script>window.__pwned=2</script>`,
      `<a href="javascript:window.__pwned=3">click</a> javascript:alert(4)`,
      `<style>body{display:none}</style><b>bold?</b>`,
      `docs at https://example.com/a?b=1&c=(2). done`,
      // Issue #9, finding 14: a right-to-left override that would show "exe.png" as "gnp.exe"…
      "invoice https://files.example/\u202Egnp.exe",
      // …a host in Cyrillic letters that reads "apple.com"…
      "login at https://\u0430pple.com/account",
      // …and userinfo that reads like the host.
      "see https://good.example@evil.example/page",
      "last one",
    ];
    // What is shown: no bidi control, the IDN host as the browser resolves it.
    const shown = payloads.map((text) => text.replace("\u202E", "").replace("\u0430pple.com", "xn--pple-43d.com"));
    for (const text of payloads) await say(mallory, text);
    await seen(victim, room, "last one");
    await outboxEmpty(mallory, room);

    for (const page of [mallory, victim]) {
      expect(await texts(page, room)).toEqual(shown);
      expect(await page.evaluate(() => (window as { __pwned?: unknown }).__pwned)).toBeUndefined();
      // Nothing of the payloads became an element.
      expect(await page.locator(".log img, .log script, .log style, .log b, .log iframe").count()).toBe(0);
      const links = await page.$$eval(`${rows(room)} .text a`, (as) =>
        as.map((a) => ({ text: a.textContent, href: a.getAttribute("href"), rel: a.getAttribute("rel"), target: a.getAttribute("target") })),
      );
      const safe = { rel: "noopener noreferrer", target: "_blank" };
      expect(links).toEqual([
        { text: "https://example.com/a?b=1&c=(2)", href: "https://example.com/a?b=1&c=(2)", ...safe },
        { text: "https://files.example/gnp.exe", href: "https://files.example/gnp.exe", ...safe },
        { text: "https://xn--pple-43d.com/account", href: "https://xn--pple-43d.com/account", ...safe },
      ]);
      // A link is laid out left to right whatever surrounds it.
      expect(await page.$$eval(`${rows(room)} .text a`, (as) => as.map((a) => getComputedStyle(a).direction))).toEqual(["ltr", "ltr", "ltr"]);
    }
    expect(dialogs).toEqual([]);
    expectNoPageProblems();
  },
  TEST_MS,
);

test(
  "a server restart while one person keeps sending: every message exactly once, in order",
  async () => {
    const room = "restart";
    const rita = await openAs("rita", room);
    const sam = await openAs("sam", room);
    const sent: string[] = [];
    const send = async (n: number) => {
      const text = `message ${n}`;
      sent.push(text);
      await say(rita, text);
    };

    for (let n = 1; n <= 4; n++) await send(n);
    await seen(sam, room, "message 4");

    // Restart on the same database and port; rita types on through it.
    const port = Number(chat.url.port);
    const stopped = chat.stop();
    for (let n = 5; n <= 7; n++) await send(n);
    await stopped;
    await rita.locator(`#status:not([data-state="connected"])`).waitFor({ state: "attached" });
    for (let n = 8; n <= 10; n++) await send(n);
    // Typed while the server is down: shown at once, as pending.
    await rita.locator(`.room[data-room="${room}"] .outbox .msg[data-id]`, { hasText: "message 10" }).waitFor();
    expect(await rita.locator("#banner").isVisible()).toBe(true);

    chat = await pageServer("chat", { port });
    for (let n = 11; n <= 13; n++) await send(n);

    await seen(rita, room, "message 13");
    await seen(sam, room, "message 13");
    await outboxEmpty(rita, room);
    expect(await texts(rita, room)).toEqual(sent);
    expect(await texts(sam, room)).toEqual(sent);
    // And the server stored each exactly once.
    const stored = (await (await fetch(new URL(`/api/rooms/${room}/messages?limit=200`, chat.url))).json()) as { messages: MessageFrame[] };
    expect(stored.messages.map((m) => m.text)).toEqual(sent);
    expectNoPageProblems();
  },
  TEST_MS,
);

test(
  "a dropped socket: resume pages forward past historyOnJoin, unsent messages go once, no presence flap, load older",
  async () => {
    // Its own server, with a tiny history on join so that both paging directions are needed.
    const small = await pageServer("paging", { historyOnJoin: 3 });
    try {
      const room = "paging";
      const ann = await openAs("ann", room, {}, small.url);
      const { page: ben, control } = await openWired("ben", room, small.url);

      const expected: string[] = [];
      for (let n = 1; n <= 2; n++) {
        expected.push(`a${n}`);
        await say(ann, `a${n}`);
      }
      await seen(ben, room, "a2");

      // Close ben's socket as a policy close (1008) would, and keep him out while ann sends more
      // than historyOnJoin. The page says why it was closed.
      control.refuse = true;
      await control.drop(1008, "rate limit exceeded");
      await waitForText(ben, "#banner-text", "Closed by the server: rate limit exceeded.");
      for (let n = 3; n <= 10; n++) {
        expected.push(`a${n}`);
        await say(ann, `a${n}`);
      }
      await seen(ann, room, "a10");
      // Ben writes offline, more than the rate limit's burst: shown as pending, with a way to retry.
      for (let n = 1; n <= 12; n++) {
        expected.push(`b${n}`);
        await say(ben, `b${n}`);
      }
      await ben.locator(`.room[data-room="${room}"] .outbox .msg`, { hasText: "b12" }).getByRole("button", { name: "Retry" }).waitFor();

      // The network comes back; "Retry now" skips the backoff wait. dispatchEvent, not click: an
      // attempt already under way may succeed and hide the button first.
      control.refuse = false;
      await ben.locator("#banner-retry").dispatchEvent("click");
      await seen(ann, room, "b12");
      await seen(ben, room, "b12");
      await outboxEmpty(ben, room);
      expect(await texts(ben, room)).toEqual(expected);
      expect(await texts(ann, room)).toEqual(expected);
      // The backlog went out paced by the client's copy of the rate limit: never refused.
      const metrics = await (await fetch(new URL("/metrics", small.url))).text();
      expect(metrics).toContain(`chat_errors_total{code="rate_limited"} 0`);
      // Ben came back within the presence grace: ann saw him join once, never leave.
      expect(await events(ann, room)).toEqual(["ben joined"]);

      // A newcomer gets the last 3 and pages back with "Load older" until there is no more.
      const cat = await openAs("cat", room, { viewport: { width: 800, height: 420 } }, small.url);
      expect(await texts(cat, room)).toEqual(expected.slice(-3));
      await cat.click(`.room[data-room="${room}"] .older`);
      await seen(cat, room, "a1");
      await cat.locator(`.room[data-room="${room}"] .older`).waitFor({ state: "hidden" });
      expect(await texts(cat, room)).toEqual(expected);

      // Scrolled up, a new message does not move the view: a "new messages" pill appears instead.
      await cat.$eval(`.room[data-room="${room}"] .log`, (log) => log.scrollTo(0, 0));
      await cat.waitForFunction(() => document.querySelector(".room:not([hidden]) .log")!.scrollTop === 0);
      await say(ann, "while cat reads");
      await seen(cat, room, "while cat reads");
      await cat.locator("#new-pill").waitFor();
      expect(await cat.$eval(`.room[data-room="${room}"] .log`, (log) => log.scrollTop)).toBe(0);
      await cat.click("#new-pill");
      await cat.locator("#new-pill").waitFor({ state: "hidden" });
      expect(
        await cat.$eval(`.room[data-room="${room}"] .log`, (log) => log.scrollHeight - log.scrollTop - log.clientHeight < 2),
      ).toBe(true);
      expectNoPageProblems();
    } finally {
      await small.stop();
    }
  },
  TEST_MS,
);

test(
  "a frame lost on the wire is fetched by its seq gap; a dead link is found by ping/pong; nothing doubles",
  async () => {
    const room = "silence";
    const ann = await openAs("ada", room);
    const { page: ben, control } = await openWired("bo", room);
    await say(ann, "before");
    await seen(ben, room, "before");

    // One message frame never reaches ben; the next one's seq shows the gap, and he fetches it
    // (getting the next one again, which must not show twice).
    control.lose('"text":"lost on the wire"');
    await say(ann, "lost on the wire");
    await say(ann, "after the loss");
    await seen(ben, room, "after the loss");
    await seen(ben, room, "lost on the wire");
    expect(await texts(ben, room)).toEqual(["before", "lost on the wire", "after the loss"]);

    control.silence();
    await say(ann, "during the silence");
    await seen(ann, room, "during the silence");
    // A page coming back into view checks its link at once (as a phone waking up would). No pong
    // comes back on a dead link, so without the watchdog ben would never see the message.
    await ben.evaluate(() => document.dispatchEvent(new Event("visibilitychange")));
    await seen(ben, room, "during the silence");
    expect(await texts(ben, room)).toEqual(["before", "lost on the wire", "after the loss", "during the silence"]);
    expect(await events(ann, room)).toEqual(["bo joined"]);
    expectNoPageProblems();
  },
  TEST_MS,
);

test(
  "keyboard only: name, join a room, Enter sends, Shift+Enter adds a newline",
  async () => {
    const page = await newPage("kim");
    await page.goto(chat.url.href);
    // The name field has focus on arrival; a bad name is refused next to it.
    await page.keyboard.type("<kim>");
    await page.keyboard.press("Enter");
    await waitForText(page, "#login-error", "Use 1 to 32 letters, digits, spaces, _ - or .");
    await page.keyboard.press("ControlOrMeta+A");
    await page.keyboard.type("kim");
    await page.keyboard.press("Enter");
    await live(page, "general");
    const focused = () => page.evaluate(() => document.activeElement?.id ?? "");
    expect(await focused()).toBe("composer-text");

    // The join field is reachable with the keyboard, and shows where focus is.
    let presses = 0;
    while ((await focused()) !== "join-room" && presses++ < 40) await page.keyboard.press("Shift+Tab");
    expect(await focused()).toBe("join-room");
    expect(await page.evaluate(() => getComputedStyle(document.activeElement!).outlineStyle)).not.toBe("none");
    await page.keyboard.type("kb-room");
    await page.keyboard.press("Enter");
    await live(page, "kb-room");
    expect(page.url()).toEndWith("#kb-room");
    expect(await focused()).toBe("composer-text");

    await page.keyboard.type("line one");
    await page.keyboard.press("Shift+Enter");
    await page.keyboard.type("line two");
    expect(await page.inputValue("#composer-text")).toBe("line one\nline two");
    await page.keyboard.press("Enter");
    await seen(page, "kb-room", "line one\nline two");
    expect(await page.inputValue("#composer-text")).toBe("");
    // The newline is kept on screen, not only in the text.
    expect(await page.locator(`${rows("kb-room")} .text`).innerText()).toBe("line one\nline two");

    // Near the limit a counter shows; past it, Enter sends nothing (and says why: page-access.test.ts).
    await page.fill("#composer-text", "x".repeat(1900));
    await waitForText(page, "#counter > [aria-hidden]", "1900 / 2000");
    await page.fill("#composer-text", "x".repeat(2001));
    await waitForText(page, "#counter > [aria-hidden]", "2001 / 2000");
    expect(await page.isDisabled("#send")).toBe(true);
    await page.keyboard.press("Enter");
    await page.fill("#composer-text", "short again");
    await page.keyboard.press("Enter");
    await seen(page, "kb-room", "short again");
    expect(await texts(page, "kb-room")).toEqual(["line one\nline two", "short again"]);
    expectNoPageProblems();
  },
  TEST_MS,
);

test(
  "one tab too many for the session (close 4001): the oldest tab stops reconnecting and says why",
  async () => {
    const room = "twice";
    const one = await ownServer("twice", { maxConnectionsPerSession: 1 });
    const first = await openAs("twin", room, {}, one.url);
    // A second tab of the same browser shares the session: over this server's limit of one
    // connection per session, it closes the first.
    const second = await newTab(first, "twin tab");
    await second.goto(new URL(`/#${room}`, one.url).href);
    await live(second, room);

    await first.locator(`#status[data-state="offline"]`).waitFor({ state: "attached" });
    expect(await first.textContent("#banner-text")).toBe("This chat is open in too many tabs or windows.");
    // Had the first tab reconnected, it would have thrown the second out with 4001 in turn.
    await say(second, "still here");
    await seen(second, room, "still here");
    await outboxEmpty(second, room);
    expect(await second.getAttribute("#status", "data-state")).toBe("connected");
    expect(await first.getAttribute("#status", "data-state")).toBe("offline");
    expectNoPageProblems();
  },
  TEST_MS,
);

test(
  "screenshots at desktop and phone sizes, light and dark; the phone layout fits 390 px",
  async () => {
    mkdirSync(SCREENSHOT_DIR, { recursive: true });
    const room = "lobby";
    const viewer = await openAs("Avery", room);
    const other = await openAs("Blake", room);
    await say(other, "Morning! Did the deploy go out?");
    await say(viewer, "It did. Notes are at https://example.com/release-notes");
    await say(viewer, "Two things to check:\n1. the login page\n2. the new rooms list");
    await say(other, "Great, I'll look at both after lunch. @Avery can you ping Casey?");
    await seen(viewer, room, "Great, I'll look at both after lunch. @Avery can you ping Casey?");
    await outboxEmpty(viewer, room);
    const third = await openAs("Casey", room);
    await third.locator("#composer-text").pressSequentially("on it");
    await waitForText(viewer, "#typing", "Casey is typing…");

    const backgrounds: string[] = [];
    for (const colorScheme of ["light", "dark"] as const) {
      await viewer.emulateMedia({ colorScheme });
      backgrounds.push(await viewer.evaluate(() => getComputedStyle(document.body).backgroundColor));
      await viewer.setViewportSize(DESKTOP);
      expect(await viewer.locator("#sidebar").isVisible()).toBe(true);
      // A grouped message under the pointer shows its time.
      await viewer.locator(`${rows(room)}.cont`).hover();
      await viewer.screenshot({ path: join(SCREENSHOT_DIR, `chat-desktop-${colorScheme}.png`) });

      await viewer.setViewportSize(PHONE);
      // On a phone the sidebar is a drawer behind the menu button, and nothing overflows sideways.
      await viewer.locator("#sidebar").waitFor({ state: "hidden" });
      expect(await viewer.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(PHONE.width);
      await viewer.screenshot({ path: join(SCREENSHOT_DIR, `chat-phone-${colorScheme}.png`) });
      await viewer.click("#menu-toggle");
      await viewer.locator("#sidebar").waitFor();
      expect(await viewer.getAttribute("#menu-toggle", "aria-expanded")).toBe("true");
      await viewer.screenshot({ path: join(SCREENSHOT_DIR, `chat-phone-${colorScheme}-rooms.png`) });
      await viewer.keyboard.press("Escape");
      await viewer.locator("#sidebar").waitFor({ state: "hidden" });
    }
    expect(backgrounds[0]).not.toBe(backgrounds[1]);

    // The name prompt, with an inline error, as a first visit shows it.
    for (const [size, viewport, colorScheme] of [
      ["desktop", DESKTOP, "light"],
      ["phone", PHONE, "dark"],
    ] as const) {
      const page = await newPage(`prompt-${size}`, { viewport, colorScheme });
      await page.goto(chat.url.href);
      await page.fill("#login-name", "blake");
      await page.press("#login-name", "Enter");
      await waitForText(page, "#login-error", "That name is taken (someone online, or a guest who keeps it). Try another.");
      expect(await page.getAttribute("#login-name", "aria-invalid")).toBe("true");
      await page.screenshot({ path: join(SCREENSHOT_DIR, `prompt-${size}-${colorScheme}.png`) });
    }
    expectNoPageProblems();
  },
  TEST_MS,
);

test(
  "one browser is one user: after a browser restart, in two tabs; a new name reaches the others; signing out leaves at once",
  async () => {
    // A long presence grace: within this test only an explicit leave can show someone leaving.
    const server = await ownServer("identity", { presenceGraceMs: 60_000 });
    const room = "ident";
    const first = await openAs("dana", room, {}, server.url);
    const eve = await openAs("eve", room, {}, server.url);
    await say(first, "before the restart");
    await seen(eve, room, "before the restart");
    await joinRoom(first, "ident-b");

    // The browser is closed and opened again: same user (her message is still "you"), same
    // rooms, no prompt. Within the grace eve sees nobody leave or join.
    const saved = await first.context().storageState();
    await first.context().close();
    const dana = await newPage("dana again", { storageState: saved });
    await dana.goto(new URL(`/#${room}`, server.url).href);
    await live(dana, room);
    await live(dana, "ident-b");
    expect(await dana.locator("#login").isHidden()).toBe(true);
    expect(await dana.textContent("#me-name")).toBe("dana");
    expect(await dana.locator(`${rows(room)}.mine .text`).allTextContents()).toEqual(["before the restart"]);

    // A second tab: the same user, name, colour and rooms; eve sees one dana and no new line.
    const tab = await newTab(dana, "dana tab");
    await tab.goto(new URL(`/#${room}`, server.url).href);
    await live(tab, room);
    await live(tab, "ident-b");
    expect(await tab.textContent("#me-name")).toBe("dana");
    const roomLinks = (page: Page) => page.$$eval("#my-rooms .room-link", (as) => as.map((a) => a.getAttribute("href")));
    expect(await roomLinks(tab)).toEqual(["#ident", "#ident-b"]);
    await say(tab, "from the second tab");
    await seen(dana, room, "from the second tab");
    await seen(eve, room, "from the second tab");
    expect(await dana.locator(`${rows(room)}.mine .text`).allTextContents()).toEqual(["before the restart", "from the second tab"]);
    const hue = (page: Page) => page.$eval(`${rows(room)}.mine .avatar`, (el) => (el as HTMLElement).style.getPropertyValue("--hue"));
    expect(await hue(tab)).toBe(await hue(dana));
    expect(await members(eve)).toEqual(["dana", "eve"]);
    expect(await events(eve, room)).toEqual([]);
    // A room joined in one tab is joined in the other.
    await joinRoom(tab, "ident-c");
    await live(dana, "ident-c");

    // A taken name is refused next to the field; she stays who she was, connected.
    await dana.click("#rename");
    await dana.fill("#rename-name", "Eve");
    await dana.press("#rename-name", "Enter");
    await waitForText(dana, "#rename-error", "That name is taken (someone online, or a guest who keeps it). Try another.");
    await dana.locator(`#status[data-state="connected"]`).waitFor({ state: "attached" });
    expect(await dana.textContent("#me-name")).toBe("dana");
    mkdirSync(SCREENSHOT_DIR, { recursive: true });
    await dana.screenshot({ path: join(SCREENSHOT_DIR, "rename-refused-desktop-light.png") });
    // A free one: eve's member list shows it, with a line saying who it was; the other tab follows.
    await dana.fill("#rename-name", "dana2");
    await dana.press("#rename-name", "Enter");
    await waitForText(dana, "#me-name", "dana2");
    await dana.locator("#rename-form").waitFor({ state: "hidden" });
    await eve.waitForFunction(() => [...document.querySelectorAll("#members .name")].some((el) => el.textContent === "dana2"));
    expect(await members(eve)).toEqual(["dana2", "eve"]);
    expect(await events(eve, room)).toEqual(["dana is now dana2"]);
    await waitForText(tab, "#me-name", "dana2");
    await say(dana, "renamed");
    await seen(eve, room, "renamed");
    expect(await eve.locator(`${rows(room)}:last-child .author`).textContent()).toBe("dana2");

    // Signing out asks first, saying her name will be free; then both tabs forget her and show the
    // prompt; eve sees her leave now, not after the grace.
    await dana.click("#sign-out");
    await dana.locator("#ask-dialog").waitFor();
    expect(await dana.textContent("#ask-text")).toContain("Your name “dana2” will be free for others to take.");
    await dana.click("#ask-ok");
    await dana.locator("#login").waitFor();
    await tab.locator("#login").waitFor();
    await waitForText(eve, `.room[data-room="${room}"] .event:last-of-type > span`, "dana2 left");
    expect(await members(eve)).toEqual(["eve"]);
    expect(await tab.evaluate(() => localStorage.getItem("chat.session"))).toBeNull();
    await dana.reload();
    await dana.locator("#login").waitFor();
    expectNoPageProblems();
  },
  TEST_MS,
);

test(
  "a room opens at its newest message, on join and after a reload; 'New messages' marks where the reader left off; scrolling up loads older",
  async () => {
    const server = await ownServer("landing", { rateLimitBurst: 500, rateLimitPerSecond: 500 });
    const room = "long";
    const poster = await bot(server, "poster", room);
    await sayAll(poster, room, Array.from({ length: 80 }, (_, i) => `m${i + 1}`));

    const reader = await openAs("reader", room, {}, server.url);
    await seen(reader, room, "m80");
    expect((await texts(reader, room)).length).toBe(50);
    expect((await scrollState(reader, room)).below).toBeLessThan(2);
    await reader.reload();
    await live(reader, room);
    await seen(reader, room, "m80");
    expect((await scrollState(reader, room)).below).toBeLessThan(2);
    expect(await reader.locator(".divider").count()).toBe(0);

    // The reader moves to another room; 30 messages arrive in this one; she comes back another day (a reload).
    await joinRoom(reader, "elsewhere");
    await sayAll(
      poster,
      room,
      Array.from({ length: 30 }, (_, i) => `n${i + 1}`),
    );
    await waitForText(reader, `.room-link[href="#${room}"] .badge`, "30");
    await reader.reload();
    await live(reader, "elsewhere");
    await live(reader, room);
    // What she has not read is unread again after the reload.
    await waitForText(reader, `.room-link[href="#${room}"] .badge`, "30");
    await reader.click(`#my-rooms .room-link[href="#${room}"]`);
    await waitForText(reader, "#room-title", `#${room}`);
    const divider = await reader.$eval(`.room[data-room="${room}"] .log`, (log) => {
      const line = log.querySelector(".divider")!;
      return {
        label: line.textContent,
        next: line.nextElementSibling?.querySelector(".text")?.textContent,
        fromTop: line.getBoundingClientRect().top - log.getBoundingClientRect().top,
      };
    });
    expect(divider.label).toBe("New messages");
    expect(divider.next).toBe("n1");
    // The view opens at the line (just below the top), not at the bottom: 30 messages do not fit.
    expect(divider.fromTop).toBeGreaterThanOrEqual(0);
    expect(divider.fromTop).toBeLessThan(100);
    expect((await scrollState(reader, room)).below).toBeGreaterThan(100);
    mkdirSync(SCREENSHOT_DIR, { recursive: true });
    await reader.screenshot({ path: join(SCREENSHOT_DIR, "new-messages-desktop-light.png") });

    // Scrolling to the top fetches older pages, without a click, until the first message.
    for (let pages = 0; pages < 5 && !(await texts(reader, room)).includes("m1"); pages++) {
      const before = (await texts(reader, room)).length;
      await reader.$eval(`.room[data-room="${room}"] .log`, (log) => log.scrollTo(0, 0));
      await reader.waitForFunction(
        ([selector, count]) => document.querySelectorAll(selector).length > count,
        [`${rows(room)} .text`, before] as const,
        { timeout: WAIT_MS },
      );
    }
    const all = await texts(reader, room);
    expect(all.length).toBe(110);
    expect(all[0]).toBe("m1");
    await reader.locator(`.room[data-room="${room}"] .older`).waitFor({ state: "hidden" });
    expectNoPageProblems();
  },
  TEST_MS,
);

test(
  "day separators across two days (injected clocks), and a time on every message: hover a grouped one",
  async () => {
    const hour = 3_600_000;
    let offset = Date.UTC(2026, 0, 14, 23, 0) - Date.now();
    const server = await ownServer("days", { now: () => Date.now() + offset });
    const room = "days";
    const poster = await bot(server, "poster", room);
    await poster.say(room, "late on the 14th");
    offset += 2 * hour;
    await poster.say(room, "early on the 15th");
    await poster.say(room, "and again");

    const reader = await newPage("reader", { timezoneId: "UTC", locale: "en-GB" });
    // The page reads its clock through one function; this one says 09:00 on the 15th.
    await reader.addInitScript((ms) => {
      (window as { __chatNow?: () => number }).__chatNow = () => Date.now() + ms;
    }, Date.UTC(2026, 0, 15, 9, 0) - Date.now());
    await signIn(reader, "reader", room, server.url);
    await seen(reader, room, "and again");
    const log = await reader.$$eval(`.room[data-room="${room}"] .messages > li`, (lis) =>
      lis.map((li) => (li.classList.contains("day") ? `— ${li.textContent} —` : (li.querySelector(".text")?.textContent ?? li.textContent))),
    );
    expect(log).toEqual(["— Yesterday —", "late on the 14th", "— Today —", "early on the 15th", "and again"]);

    // "and again" continues poster's group: no name, and its time shows beside it on hover.
    const grouped = reader.locator(`${rows(room)}.cont`);
    expect(await grouped.locator(".text").allTextContents()).toEqual(["and again"]);
    expect(await grouped.locator(".side-time").isVisible()).toBe(false);
    await grouped.hover();
    await grouped.locator(".side-time").waitFor({ state: "visible" });
    expect(await grouped.locator(".side-time").textContent()).toBe("01:00");
    expect(await grouped.locator(".side-time").getAttribute("title")).toContain("15 January 2026");
    expectNoPageProblems();
  },
  TEST_MS,
);

test(
  "joins and leaves in a row fold into one line",
  async () => {
    const server = await ownServer("crowd");
    const room = "crowd";
    const watcher = await openAs("watcher", room, {}, server.url);
    const guests: Client[] = [];
    for (let i = 1; i <= 14; i++) guests.push(await bot(server, `guest${String(i).padStart(2, "0")}`, room));
    await watcher.waitForFunction(() => document.querySelectorAll("#members li").length === 15);
    expect(await events(watcher, room)).toEqual(["guest01, guest02 and 12 others joined"]);

    await sayAll(guests[0]!, room, ["hello all"]);
    await seen(watcher, room, "hello all");
    for (const guest of guests.slice(1, 3)) {
      guest.send({ type: "leave", room });
      await guest.until((f) => f.type === "left");
    }
    await watcher.waitForFunction(() => document.querySelectorAll("#members li").length === 13);
    expect(await events(watcher, room)).toEqual(["guest01, guest02 and 12 others joined", "guest02 and guest03 left"]);
    expectNoPageProblems();
  },
  TEST_MS,
);

test(
  "a server restart adds no presence lines: people already here coming back are not news",
  async () => {
    const file = "restart-quiet";
    const server = await ownServer(file);
    const room = "quiet";
    const watcher = await openAs("wanda", room, {}, server.url);
    const { page: friend, control } = await openWired("fritz", room, server.url);
    await waitForText(watcher, `.room[data-room="${room}"] .event > span`, "fritz joined");

    // The friend stays away until the watcher is back, so that his return reaches her as a join.
    control.refuse = true;
    const restart = await stopOwn(server, file);
    await watcher.locator(`#status:not([data-state="connected"])`).waitFor({ state: "attached" });
    await restart();
    await live(watcher, room);
    control.refuse = false;
    await live(friend, room);
    await watcher.waitForFunction(() => document.querySelectorAll("#members li").length === 2);
    await say(friend, "back again");
    await seen(watcher, room, "back again");
    expect(await events(watcher, room)).toEqual(["fritz joined"]);
    expectNoPageProblems();
  },
  TEST_MS,
);

test(
  "mentions are highlighted and counted apart (badge, title); a desktop alert only when asked for and hidden; RTL text runs right to left",
  async () => {
    const room = "mentions";
    const dana = await newPage("dana");
    // A recording Notification and a visibility the test controls (headless tabs are always visible).
    await dana.addInitScript(() => {
      const w = window as unknown as { __notes: { title: string; body?: string }[]; __asked: number; __hidden: boolean; Notification: unknown };
      w.__notes = [];
      w.__asked = 0;
      w.__hidden = false;
      class RecordingNotification extends EventTarget {
        static permission = "default";
        static async requestPermission() {
          w.__asked++;
          RecordingNotification.permission = "granted";
          return "granted";
        }
        constructor(title: string, options?: { body?: string }) {
          super();
          w.__notes.push({ title, body: options?.body });
        }
        close() {}
      }
      w.Notification = RecordingNotification;
      Object.defineProperty(document, "visibilityState", { get: () => (w.__hidden ? "hidden" : "visible") });
    });
    await signIn(dana, "dana", room);
    await joinRoom(dana, "elsewhere-m");
    const eve = await openAs("eve", room);
    await say(eve, "plain");
    await say(eve, "hey @dana, look");
    await say(eve, "dana: are you there?");
    await seen(dana, room, "dana: are you there?");
    await waitForText(dana, `.room-link[href="#${room}"] .badge`, "3");
    expect(await dana.textContent(`.room-link[href="#${room}"] .mentions`)).toBe("@2");
    expect(await dana.title()).toBe("(@2 · 3) #elsewhere-m · Chat");
    const notes = () => dana.evaluate(() => (window as unknown as { __notes: unknown[] }).__notes);
    const asked = () => dana.evaluate(() => (window as unknown as { __asked: number }).__asked);
    expect(await notes()).toEqual([]);
    expect(await asked()).toBe(0);

    // Alerts are asked for by a click, and come only while the tab is hidden.
    await dana.click("#notify");
    await waitForText(dana, "#notify", "Mention alerts: on");
    expect(await asked()).toBe(1);
    await dana.evaluate(() => {
      (window as unknown as { __hidden: boolean }).__hidden = true;
      document.dispatchEvent(new Event("visibilitychange"));
    });
    await say(eve, "@dana again");
    await say(eve, "no mention here");
    await seen(dana, room, "no mention here");
    expect(await notes()).toEqual([{ title: "eve in #mentions", body: "@dana again" }]);
    await dana.evaluate(() => {
      (window as unknown as { __hidden: boolean }).__hidden = false;
      document.dispatchEvent(new Event("visibilitychange"));
    });

    await dana.click(`#my-rooms .room-link[href="#${room}"]`);
    await waitForText(dana, "#room-title", `#${room}`);
    expect(await dana.title()).toBe(`#${room} · Chat`);
    expect(await dana.locator(`.room-link[href="#${room}"] .mentions`).isHidden()).toBe(true);
    expect(await dana.locator(`${rows(room)} .mention.own`).allTextContents()).toEqual(["@dana", "dana", "@dana"]);
    expect(await dana.locator(`${rows(room)}.mentions-me .text`).allTextContents()).toEqual([
      "hey @dana, look",
      "dana: are you there?",
      "@dana again",
    ]);

    // Right-to-left: a Hebrew line and an Arabic name are laid out from the right; English from the left.
    const maryam = await bot(chat, "مريم", room);
    await maryam.say(room, "שלום, מה שלומך?");
    await seen(dana, room, "שלום, מה שלומך?");
    const layoutOf = (text: string) =>
      dana.$$eval(
        `${rows(room)} .text`,
        (els, want) => {
          const el = els.find((e) => e.textContent === want)!;
          const range = document.createRange();
          range.selectNodeContents(el);
          const box = el.getBoundingClientRect();
          const ink = range.getBoundingClientRect();
          const author = el.closest(".msg")!.querySelector(".author")!;
          return {
            direction: getComputedStyle(el).direction,
            author: getComputedStyle(author).direction,
            flushRight: Math.abs(box.right - ink.right) < 2,
            flushLeft: Math.abs(box.left - ink.left) < 2,
          };
        },
        text,
      );
    expect(await layoutOf("שלום, מה שלומך?")).toEqual({ direction: "rtl", author: "rtl", flushRight: true, flushLeft: false });
    expect(await layoutOf("plain")).toEqual({ direction: "ltr", author: "ltr", flushRight: false, flushLeft: true });
    expectNoPageProblems();
  },
  TEST_MS,
);

test(
  "offline is noticed at once, and the page comes back by itself with the network",
  async () => {
    const room = "offline";
    const page = await openAs("olga", room);
    await page.context().setOffline(true);
    // The ping watchdog alone would take 20–25 s: longer than this wait.
    await page.locator(`#status[data-state="offline"]`).waitFor({ state: "attached" });
    expect(await page.textContent("#banner-text")).toBe("No network. Waiting for it to come back…");
    await say(page, "typed offline");
    await page.locator(`.room[data-room="${room}"] .outbox .msg`, { hasText: "typed offline" }).waitFor();
    await page.context().setOffline(false);
    await seen(page, room, "typed offline");
    await outboxEmpty(page, room);
    expect(await texts(page, room)).toEqual(["typed offline"]);
    expectNoPageProblems();
  },
  TEST_MS,
);

test(
  "after a restart notice (1001) the page retries about every second, jittered, instead of backing off",
  async () => {
    const file = "restart-prompt";
    const server = await ownServer(file);
    const room = "prompt";
    const page = await openAs("remy", room, {}, server.url);
    // Every retry delay the page schedules (it shows it on #status for this).
    await page.evaluate(() => {
      const status = document.getElementById("status")!;
      const w = window as unknown as { __retries: number[] };
      w.__retries = [];
      new MutationObserver(() => {
        if (status.dataset.retryMs) w.__retries.push(Number(status.dataset.retryMs));
      }).observe(status, { attributes: true, attributeFilter: ["data-retry-ms"] });
    });
    const retries = () => page.evaluate(() => (window as unknown as { __retries: number[] }).__retries);
    const restart = await stopOwn(server, file);
    // Four failed attempts: a growing backoff would be at 2–4 s by the fourth.
    await page.waitForFunction(() => (window as unknown as { __retries: number[] }).__retries.length >= 4, undefined, { timeout: WAIT_MS });
    await restart();
    await live(page, room);
    const delays = await retries();
    expect(delays.length).toBeGreaterThanOrEqual(4);
    for (const ms of delays) {
      expect(ms).toBeGreaterThanOrEqual(500);
      expect(ms).toBeLessThanOrEqual(1500);
    }
    expect(new Set(delays).size).toBeGreaterThan(1);
    expectNoPageProblems();
  },
  TEST_MS,
);

test(
  "the room directory lists a room with history and nobody in it; an empty room shows its link to share",
  async () => {
    const ghost = await bot(chat, "ghost", "hushed");
    await ghost.say("hushed", "anyone here?");
    ghost.send({ type: "leave", room: "hushed" });
    await ghost.until((f) => f.type === "left");

    const page = await openAs("finder", "lobby-dir");
    const entry = page.locator(`#directory .room-link[href="#hushed"]`);
    await entry.waitFor();
    // Nobody is in it: no member count.
    expect(await entry.locator(".count").count()).toBe(0);
    await entry.click();
    await live(page, "hushed");
    await seen(page, "hushed", "anyone here?");

    await joinRoom(page, "brand-new-room");
    const hint = page.locator(`.room[data-room="brand-new-room"] .empty-hint`);
    await hint.waitFor();
    expect(await hint.locator(".share-link").textContent()).toBe(new URL("/#brand-new-room", chat.url).href);
    mkdirSync(SCREENSHOT_DIR, { recursive: true });
    for (const colorScheme of ["light", "dark"] as const) {
      await page.emulateMedia({ colorScheme });
      await page.screenshot({ path: join(SCREENSHOT_DIR, `empty-room-desktop-${colorScheme}.png`) });
    }
    await say(page, "first!");
    await seen(page, "brand-new-room", "first!");
    await hint.waitFor({ state: "hidden" });
    expectNoPageProblems();
  },
  TEST_MS,
);

test(
  "on a touch screen Enter adds a newline and the Send button sends",
  async () => {
    const room = "touch";
    const page = await openAs("tara", room, { viewport: PHONE, hasTouch: true, isMobile: true });
    expect(await page.evaluate(() => matchMedia("(pointer: coarse)").matches)).toBe(true);
    await page.tap("#composer-text");
    await page.keyboard.type("line one");
    await page.keyboard.press("Enter");
    await page.keyboard.type("line two");
    expect(await page.inputValue("#composer-text")).toBe("line one\nline two");
    expect(await page.locator(`.room[data-room="${room}"] .msg`).count()).toBe(0);
    await page.tap("#send");
    await seen(page, room, "line one\nline two");
    await outboxEmpty(page, room);
    expect(await texts(page, room)).toEqual(["line one\nline two"]);
    expect(await page.inputValue("#composer-text")).toBe("");
    expectNoPageProblems();
  },
  TEST_MS,
);
