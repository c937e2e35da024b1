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
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium, type Browser, type BrowserContext, type BrowserContextOptions, type Page, type WebSocketRoute } from "playwright-core";
import { createServer, type ChatServer, type MessageFrame, type ServerOptions } from "../server.ts";

/** Bounds any single wait on a page: a safety net for a loaded 2-core machine, never a pause. */
const WAIT_MS = 15_000;
/** Bounds one test. */
const TEST_MS = 60_000;
/** Chromium must not talk to anything but 127.0.0.1, and starts from an empty profile. */
const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
  "--disable-quic",
];
const CHROMIUM_PATHS = ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"];
/** Screenshots for people to look at; .artifacts/ is ignored by git. */
const SCREENSHOT_DIR = join(import.meta.dir, "..", ".artifacts", "screenshots");
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 360, height: 740 };

function findChromium(): string {
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

let browser: Browser;
let chat: ChatServer;
let dataDir: string;
const contexts: BrowserContext[] = [];
/** Uncaught page errors and CSP refusals, from every page: each test ends by expecting none. */
let pageProblems: string[] = [];

async function startChat(options: ServerOptions = {}): Promise<ChatServer> {
  return createServer({ port: 0, host: "127.0.0.1", databasePath: join(dataDir, "chat.sqlite"), log: () => {}, ...options });
}

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), "bun-chat-browser-"));
  chat = await startChat();
  // launch() gives every run a fresh, empty temporary profile and deletes it afterwards.
  browser = await chromium.launch({ executablePath: findChromium(), headless: true, args: CHROMIUM_ARGS });
});

/** Each test's people leave with it, so names and connections do not carry over. */
afterEach(async () => {
  for (const context of contexts.splice(0)) await context.close().catch(() => {});
  pageProblems = [];
});

afterAll(async () => {
  await browser?.close();
  await chat?.stop();
  rmSync(dataDir, { recursive: true, force: true });
});

/** A new browser context (a new person, with its own storage) on one page. */
async function newPage(label: string, options: BrowserContextOptions = {}): Promise<Page> {
  const context = await browser.newContext({ viewport: DESKTOP, ...options });
  contexts.push(context);
  context.setDefaultTimeout(WAIT_MS);
  const page = await context.newPage();
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
  const page = await newPage(name, options);
  await page.goto(new URL(`/#${room}`, base).href);
  await page.fill("#login-name", name);
  await page.press("#login-name", "Enter");
  await live(page, room);
  return page;
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

    // A reload keeps the same identity (session in sessionStorage, name in localStorage): no
    // prompt, his earlier message is still his, and alice sees no leave/join (presence grace).
    await bob.reload();
    await live(bob, room);
    expect(await bob.locator("#login").isHidden()).toBe(true);
    expect(await bob.locator(`${rows(room)}.mine .text`).allTextContents()).toEqual(["hi alice", "are you there?"]);
    await say(bob, "back after a reload");
    await seen(alice, room, "back after a reload");
    expect(await events(alice, room)).toEqual(["bob joined"]);

    // Active rooms come from /api/rooms with member counts; joining one takes one click.
    const side = `#active-rooms .room-link[href="#side"]`;
    await bob.locator(side).waitFor();
    expect(await bob.textContent(`${side} .count`)).toBe("1");
    await alice.click(`#my-rooms .room-link[href="#side"]`);
    await waitForText(alice, "#room-title", "#side");
    expect(await members(alice)).toEqual(["alice"]);
    await bob.click(side);
    await live(bob, "side");
    await waitForText(alice, `.room[data-room="side"] .event:last-of-type > span`, "bob joined");
    expect(await members(alice)).toEqual(["alice", "bob"]);

    // Leaving is explicit, so alice sees it at once (no grace).
    await bob.click(`#my-rooms button[aria-label="Leave #side"]`);
    await waitForText(alice, `.room[data-room="side"] .event:last-of-type > span`, "bob left");
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
      "last one",
    ];
    for (const text of payloads) await say(mallory, text);
    await seen(victim, room, "last one");
    await outboxEmpty(mallory, room);

    for (const page of [mallory, victim]) {
      expect(await texts(page, room)).toEqual(payloads);
      expect(await page.evaluate(() => (window as { __pwned?: unknown }).__pwned)).toBeUndefined();
      // Nothing of the payloads became an element.
      expect(await page.locator(".log img, .log script, .log style, .log b, .log iframe").count()).toBe(0);
      const links = await page.$$eval(`${rows(room)} .text a`, (as) =>
        as.map((a) => ({ text: a.textContent, href: a.getAttribute("href"), rel: a.getAttribute("rel"), target: a.getAttribute("target") })),
      );
      expect(links).toEqual([
        { text: "https://example.com/a?b=1&c=(2)", href: "https://example.com/a?b=1&c=(2)", rel: "noopener noreferrer", target: "_blank" },
      ]);
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

    chat = await startChat({ port });
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
    const small = await createServer({
      port: 0,
      host: "127.0.0.1",
      databasePath: join(dataDir, "paging.sqlite"),
      historyOnJoin: 3,
      log: () => {},
    });
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

    // Near the limit a counter shows; past it, Enter sends nothing.
    await page.fill("#composer-text", "x".repeat(1900));
    await waitForText(page, "#counter", "1900 / 2000");
    await page.fill("#composer-text", "x".repeat(2001));
    await waitForText(page, "#counter", "2001 / 2000");
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
  "the same session opened elsewhere (close 4001): this tab stops reconnecting and says why",
  async () => {
    const room = "twice";
    const first = await openAs("twin", room);
    const token = await first.evaluate(() => sessionStorage.getItem("chat.session"));
    expect(token).toBeTruthy();
    // A second browser with the same session and name, as a copied tab would have.
    const second = await newPage("twin-copy");
    await second.addInitScript((t) => {
      sessionStorage.setItem("chat.session", t);
      localStorage.setItem("chat.name", "twin");
    }, token!);
    await second.goto(new URL(`/#${room}`, chat.url).href);
    await live(second, room);

    await first.locator(`#status[data-state="offline"]`).waitFor({ state: "attached" });
    expect(await first.textContent("#banner-text")).toBe("This chat was opened in another tab or window.");
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
  "screenshots at desktop and phone sizes, light and dark; the phone layout fits 360 px",
  async () => {
    mkdirSync(SCREENSHOT_DIR, { recursive: true });
    const room = "lobby";
    const viewer = await openAs("Avery", room);
    const other = await openAs("Blake", room);
    await say(other, "Morning! Did the deploy go out?");
    await say(viewer, "It did. Notes are at https://example.com/release-notes");
    await say(viewer, "Two things to check:\n1. the login page\n2. the new rooms list");
    await say(other, "Great, I'll look at both after lunch.");
    await seen(viewer, room, "Great, I'll look at both after lunch.");
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
      await waitForText(page, "#login-error", "Someone online is using that name. Try another.");
      expect(await page.getAttribute("#login-name", "aria-invalid")).toBe("true");
      await page.screenshot({ path: join(SCREENSHOT_DIR, `prompt-${size}-${colorScheme}.png`) });
    }
    expectNoPageProblems();
  },
  TEST_MS,
);
