/**
 * The page against what a hostile or broken browser state does to it (issue "abuse hardening",
 * finding 12), in Chromium: an address that does not decode, and stored values too big for a
 * hello. Both broke the page before: the first threw and sent the next message to another room
 * than the one shown, the second made it reconnect forever without ever asking for a name. And
 * the server's limits on an address or a user, whose waits the page keeps as long as they say.
 */
import { expect, test } from "bun:test";
import { TEST_MS, browserSuite, live, rows, say, seen, signIn, texts, waitForText } from "./page-browser.ts";

const suite = browserSuite();

test(
  "an address that does not decode (#%) keeps the room shown, says why, and the next message goes there",
  async () => {
    const server = await suite.server("hash");
    const page = await suite.newPage("hal");
    await signIn(page, server, "hal", "general");
    await page.fill("#join-room", "dev");
    await page.press("#join-room", "Enter");
    await live(page, "dev");

    await page.evaluate(() => (location.hash = "%"));
    await waitForText(page, "#notice", `"%" is not a room name: use up to 32 of a-z 0-9 _ -, starting with a letter or digit.`);
    // The room shown, the title, the composer and the address all still say #dev.
    await page.waitForFunction(() => location.hash === "#dev");
    expect(await page.textContent("#room-title")).toBe("#dev");
    expect(await page.locator(`.room[data-room="dev"]`).isVisible()).toBe(true);
    expect(await page.locator(`.room[data-room="general"]`).isVisible()).toBe(false);
    expect(await page.getAttribute("#composer-text", "placeholder")).toBe("Message #dev");
    await say(page, "for dev");
    await seen(page, "dev", "for dev");
    expect(await texts(page, "general")).toEqual([]);
    const stored = (await (await server.http("/api/rooms/dev/messages")).json()) as { messages: { text: string }[] };
    expect(stored.messages.map((m) => m.text)).toEqual(["for dev"]);

    // Other broken addresses: a half escape, and a room name that is not one.
    await page.evaluate(() => (location.hash = "%E0%A4%A"));
    await page.waitForFunction(() => location.hash === "#dev");
    await page.evaluate(() => (location.hash = "Not A Room!"));
    await page.waitForFunction(() => location.hash === "#dev");
    expect(await page.textContent("#room-title")).toBe("#dev");
    suite.expectNoPageProblems();
  },
  TEST_MS,
);

test(
  "an oversized session or name in localStorage: the page asks for a name instead of reconnecting forever",
  async () => {
    const server = await suite.server("oversized");
    const page = await suite.newPage("olga");
    await signIn(page, server, "olga", "general");
    await say(page, "before");
    await seen(page, "general", "before");

    // Far over the server's frame limit (32 KiB): a hello carrying either was closed with 1009.
    const huge = "x".repeat(100_000);
    // A name that cannot be one is ignored: the session alone brings her back, as she was.
    await page.evaluate((value) => localStorage.setItem("chat.name", value), huge);
    await page.reload();
    await live(page, "general");
    expect(await page.locator("#login").isHidden()).toBe(true);
    expect(await page.textContent("#me-name")).toBe("olga");
    expect(await page.locator(`${rows("general")}.mine .text`).allTextContents()).toEqual(["before"]);

    // A session that cannot be one is ignored: her name is still kept by her real session, so the
    // prompt asks for another.
    await page.evaluate((value) => localStorage.setItem("chat.session", value), huge);
    await page.reload();
    await waitForText(page, "#login-error", "That name is taken (someone online, or a guest who keeps it). Try another.");
    expect(await page.inputValue("#login-name")).toBe("olga");
    await page.fill("#login-name", "olga2");
    await page.press("#login-name", "Enter");
    await live(page, "general");
    await waitForText(page, "#me-name", "olga2");
    // Nothing was ever closed with 1009.
    expect(server.logs.filter((l) => l.event === "close" && l.code === 1009)).toEqual([]);
    suite.expectNoPageProblems();
  },
  TEST_MS,
);

test(
  "a hello refused for HELLO_RATE_PER_MINUTE (retryAfterMs, then 1008): the page waits that long before it says hello again",
  async () => {
    const server = await suite.server("hello-rate", { helloRatePerMinute: 1 });
    const room = "hall";
    const first = await signIn(await suite.newPage("ann"), server, "ann", room);
    // A second tab from the same address: its hello finds the address's bucket empty.
    const second = await suite.newTab(first, "ann-2");
    const refusal = new Promise<number>((resolve) => {
      second.on("websocket", (ws) =>
        ws.on("framereceived", ({ payload }) => {
          const f = JSON.parse(String(payload));
          if (f.type === "error" && f.code === "rate_limited") resolve(f.retryAfterMs);
        }),
      );
    });
    await second.goto(new URL(`/#${room}`, server.url).href);
    const retryAfterMs = await refusal;
    expect(retryAfterMs).toBeGreaterThan(10_000);
    await second.locator(`#status[data-state="reconnecting"]`).waitFor({ state: "attached" });
    expect(Number(await second.getAttribute("#status", "data-retry-ms"))).toBeGreaterThanOrEqual(retryAfterMs - 1_000);
    await waitForText(second, "#banner-text", "Closed by the server: rate limit exceeded.");
    suite.expectNoPageProblems();
  },
  TEST_MS,
);

test(
  "a join refused for ROOM_STARTS_PER_HOUR (retryAfterMs up to an hour): the room says how long, and is not asked for again every second",
  async () => {
    const server = await suite.server("room-starts", { roomStartsPerHour: 1 });
    const bob = await suite.newPage("bob");
    const joins: string[] = [];
    let retryAfterMs = 0;
    bob.on("websocket", (ws) => {
      ws.on("framesent", ({ payload }) => {
        const f = JSON.parse(String(payload));
        if (f.type === "join") joins.push(f.room);
      });
      ws.on("framereceived", ({ payload }) => {
        const f = JSON.parse(String(payload));
        if (f.type === "error" && f.code === "rate_limited" && f.ref === "join:second") retryAfterMs = f.retryAfterMs;
      });
    });
    await signIn(bob, server, "bob", "first");
    await bob.fill("#join-room", "second");
    await bob.press("#join-room", "Enter");
    // The room is out of the way, saying when to try again: not "joining" for an hour.
    const out = bob.locator(`.room[data-room="second"] .out-note`);
    await out.waitFor();
    expect(retryAfterMs).toBeGreaterThan(59 * 60_000);
    expect(await out.locator(".out-text").textContent()).toBe("Too many new rooms started: try #second again in 1 h.");
    expect(await bob.isDisabled("#composer-text")).toBe(true);
    // Asked for again by hand, it is refused again, and says so again; the room bob is in is not touched.
    await out.getByRole("button", { name: "Join #second again" }).click();
    await bob.waitForFunction(() => document.querySelector(`.room[data-room="second"] .out-note`)?.checkVisibility());
    await live(bob, "first");
    await bob.evaluate(() => (location.hash = "first"));
    await say(bob, "still here");
    await seen(bob, "first", "still here");
    expect(joins).toEqual(["first", "second", "second"]);
    suite.expectNoPageProblems();
  },
  TEST_MS,
);
