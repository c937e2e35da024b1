/**
 * The page and messages that change (issue "moderation and messages that change"), in Chromium:
 * the message menu with the keyboard (reply, edit in place, delete after asking), quotes that jump
 * to their original, edits and deletions that arrive while away, the member menu of moderators
 * (mute, remove, ban), what a muted or banned person sees, slow mode's countdown, read-only rooms
 * and a server-wide ban (4003) that the page does not reconnect after.
 */
import { expect, test } from "bun:test";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import type { Page } from "playwright-core";
import type { Client } from "./helpers.ts";
import { ADMIN_TOKEN, SCREENSHOT_DIR, TEST_MS, browserSuite, line, live, memberList, row, rows, say, seen, signIn, texts, waitForText } from "./page-browser.ts";

const suite = browserSuite();

/** The items of the menu open on the page. */
function menuItems(page: Page): Promise<string[]> {
  return page.locator(`.menu[role="menu"] .menu-item`).allTextContents();
}

/**
 * Puts the page's sockets through `filter`, which says of each text frame the page sends whether
 * it passes, goes nowhere ("drop"), or is lost with its socket, closed as a dropped connection is ("cut").
 */
async function wired(page: Page, filter: (frame: string) => "pass" | "drop" | "cut"): Promise<void> {
  await page.routeWebSocket(/\/ws$/, (route) => {
    const upstream = route.connectToServer();
    route.onMessage((frame) => {
      const fate = typeof frame === "string" ? filter(frame) : "pass";
      if (fate === "cut") return void route.close({ code: 1011, reason: "test: connection lost" });
      if (fate === "pass") upstream.send(frame);
    });
    upstream.onMessage((frame) => route.send(frame));
  });
}

/** Opens the ⋯ menu of the message with this text, with the keyboard. */
async function messageMenu(page: Page, room: string, text: string): Promise<string[]> {
  await row(page, room, text).locator(".msg-actions").focus();
  await page.keyboard.press("Enter");
  await page.locator(`.menu[role="menu"]`).waitFor();
  return menuItems(page);
}

/** Picks an item of the open menu with the arrow keys and Enter. */
async function pick(page: Page, label: string): Promise<void> {
  const items = await menuItems(page);
  const at = items.indexOf(label);
  expect(at).toBeGreaterThanOrEqual(0);
  for (let i = 0; i < at; i++) await page.keyboard.press("ArrowDown");
  expect(await page.evaluate(() => document.activeElement?.textContent)).toBe(label);
  await page.keyboard.press("Enter");
}

/** The texts of a room with what marks them: "(edited)", a quote. */
function shown(page: Page, room: string): Promise<string[]> {
  return page.$$eval(rows(room), (lis) =>
    lis.map((li) => {
      const quote = li.querySelector(".quote-text")?.textContent;
      const edited = li.querySelector(".edited") ? " (edited)" : "";
      return `${quote ? `[${quote}] ` : ""}${li.querySelector(".text")?.textContent}${edited}`;
    }),
  );
}

/** A bot in `room`, welcomed (its id in `id`), that joined first if the room is new: its owner. */
async function botIn(client: Client, name: string, room: string, admin = false): Promise<string> {
  client.send({ type: "hello", name, ...(admin ? { adminToken: ADMIN_TOKEN } : {}) });
  const welcome = await client.expect("welcome");
  await client.join(room);
  return welcome.user.id as string;
}

test(
  "the message menu with the keyboard: reply with a quote that jumps to the original, edit in place (Escape cancels), delete after asking; a moderator deletes others'",
  async () => {
    const server = await suite.server("menu");
    const room = "talk";
    const alice = await signIn(await suite.newPage("alice"), server, "alice", room);
    const bob = await signIn(await suite.newPage("bob"), server, "bob", room);
    await say(alice, "first");
    await seen(bob, room, "first");
    await say(bob, "second");
    await seen(alice, room, "second");

    // What bob may do: his own message, everything; alice's (he is no moderator), only reply.
    expect(await messageMenu(bob, room, "first")).toEqual(["Reply"]);
    await bob.keyboard.press("Escape");
    await bob.locator(".menu").waitFor({ state: "detached" });
    expect(await bob.evaluate(() => document.activeElement?.getAttribute("aria-label"))).toBe("Actions for this message by alice");
    expect(await messageMenu(bob, room, "second")).toEqual(["Reply", "Edit", "Delete…"]);

    // Edit in place; Escape puts it back as it was.
    await pick(bob, "Edit");
    const field = row(bob, room, "second").locator("textarea");
    expect(await field.inputValue()).toBe("second");
    expect(await bob.evaluate(() => document.activeElement?.className)).toBe("edit-text");
    await bob.keyboard.type(" and more");
    await bob.keyboard.press("Escape");
    await field.waitFor({ state: "detached" });
    expect(await shown(bob, room)).toEqual(["first", "second"]);
    // Enter saves: both see the new text, marked edited.
    await messageMenu(bob, room, "second");
    await pick(bob, "Edit");
    await bob.keyboard.press("ControlOrMeta+A");
    await bob.keyboard.type("second, fixed");
    await bob.keyboard.press("Enter");
    for (const page of [alice, bob]) await seen(page, room, "second, fixed");
    expect(await shown(alice, room)).toEqual(["first", "second, fixed (edited)"]);
    expect(await shown(bob, room)).toEqual(["first", "second, fixed (edited)"]);

    // Reply: the bar above the composer says to what; the reply quotes it on both pages.
    await messageMenu(bob, room, "first");
    await pick(bob, "Reply");
    await waitForText(bob, "#reply-text", "Replying to alice: first");
    expect(await bob.evaluate(() => document.activeElement?.id)).toBe("composer-text");
    await bob.keyboard.type("an answer");
    await bob.keyboard.press("Enter");
    await seen(alice, room, "an answer");
    expect(await bob.locator("#reply-bar").isHidden()).toBe(true);
    for (const page of [alice, bob]) {
      await seen(page, room, "an answer");
      expect(await shown(page, room)).toEqual(["first", "second, fixed (edited)", "[alice: first] an answer"]);
    }
    // Escape in the composer drops a reply begun.
    await messageMenu(alice, room, "an answer");
    await pick(alice, "Reply");
    await alice.locator("#reply-bar").waitFor();
    await alice.keyboard.press("Escape");
    await alice.locator("#reply-bar").waitFor({ state: "hidden" });

    // The original changes: so does its quote.
    await messageMenu(alice, room, "first");
    await pick(alice, "Edit");
    await alice.keyboard.type("!");
    await alice.keyboard.press("Enter");
    await bob.waitForFunction(() => document.querySelector(".quote-text")?.textContent === "alice: first!");
    // The quote is a button: it shows (focuses and highlights) the original.
    await row(bob, room, "an answer").locator(".quote").click();
    await bob.waitForFunction(() => document.activeElement?.querySelector(".text")?.textContent === "first!");
    expect(await bob.evaluate(() => document.activeElement?.classList.contains("flash"))).toBe(true);

    // Delete asks first (Cancel is the safe default), then both see "message deleted" in place.
    await messageMenu(bob, room, "second, fixed");
    await pick(bob, "Delete…");
    await bob.locator("#ask-dialog[open]").waitFor();
    expect(await bob.textContent("#ask-title")).toBe("Delete this message?");
    expect(await bob.textContent("#ask-text")).toBe("Everyone in #talk will see “message deleted” in its place. This cannot be undone.");
    expect(await bob.evaluate(() => document.activeElement?.id)).toBe("ask-cancel");
    mkdirSync(SCREENSHOT_DIR, { recursive: true });
    await bob.screenshot({ path: join(SCREENSHOT_DIR, "delete-question-desktop-light.png") });
    await bob.click("#ask-ok");
    for (const page of [alice, bob]) await seen(page, room, "message deleted");
    expect(await shown(alice, room)).toEqual(["first! (edited)", "message deleted", "[alice: first!] an answer"]);
    // A deleted message has no menu any more.
    expect(await row(alice, room, "message deleted").locator(".msg-actions").count()).toBe(0);

    // alice owns the room (she came first): she may delete bob's message, but not edit it.
    expect(await messageMenu(alice, room, "an answer")).toEqual(["Reply", "Delete…"]);
    await pick(alice, "Delete…");
    expect(await alice.textContent("#ask-text")).toBe("It is by bob. Everyone in #talk will see “message deleted” in its place. This cannot be undone.");
    await alice.click("#ask-ok");
    await bob.waitForFunction(() => document.querySelectorAll(".msg.deleted").length === 2);

    // Someone arriving later sees the messages as they are now.
    const carol = await signIn(await suite.newPage("carol"), server, "carol", room);
    expect(await shown(carol, room)).toEqual(["first! (edited)", "message deleted", "message deleted"]);
    await bob.screenshot({ path: join(SCREENSHOT_DIR, "edited-and-deleted-desktop-light.png") });
    suite.expectNoPageProblems();
  },
  TEST_MS,
);

test(
  "while away: edits, deletions and settings changes arrive with the catch-up; a quote of a message not loaded pages back to it",
  async () => {
    const server = await suite.server("away", { historyOnJoin: 3, rateLimitBurst: 100, rateLimitPerSecond: 100 });
    const room = "archive";
    const poster = await suite.client(server);
    await botIn(poster, "poster", room);
    const original = await poster.say(room, "the original");
    for (let i = 1; i <= 8; i++) await poster.say(room, `filler ${i}`);
    poster.send({ type: "send", room, id: "r1", text: "a late reply", replyTo: original.seq });
    await poster.expect("message");

    // Three messages on join: the reply's original is not among them.
    const reader = await signIn(await suite.newPage("reader"), server, "reader", room);
    expect(await shown(reader, room)).toEqual(["filler 7", "filler 8", "[an earlier message] a late reply"]);
    await row(reader, room, "a late reply").locator(".quote").click();
    await reader.waitForFunction(() => document.activeElement?.querySelector(".text")?.textContent === "the original");
    expect(await reader.locator(".quote-text").textContent()).toBe("poster: the original");
    expect((await texts(reader, room)).length).toBe(10);

    // Offline, then back: the catch-up carries what changed meanwhile, in order.
    await reader.context().setOffline(true);
    await reader.locator(`#status[data-state="offline"]`).waitFor({ state: "attached" });
    poster.send({ type: "edit", room, seq: original.seq, text: "the original, revised", ref: "e" });
    await poster.until((f) => f.type === "ok");
    const filler = (await poster.sync()).length; // nothing else pending
    expect(filler).toBe(0);
    poster.send({ type: "room_settings", room, topic: "Old things", ref: "s" });
    await poster.until((f) => f.type === "ok");
    poster.send({ type: "history", room, limit: 200, ref: "h" });
    const page = await poster.until((f) => f.type === "history");
    const eight = page.at(-1)!.messages.find((m: { text: string }) => m.text === "filler 8");
    poster.send({ type: "delete", room, seq: eight.seq, ref: "d" });
    await poster.until((f) => f.type === "ok");
    await reader.context().setOffline(false);
    await live(reader, room);
    await seen(reader, room, "the original, revised");
    await waitForText(reader, "#room-topic", "Old things");
    await line(reader, room, "poster set the topic: “Old things”");
    expect((await shown(reader, room)).slice(-3)).toEqual(["filler 7", "message deleted", "[poster: the original, revised] a late reply"]);
    expect((await shown(reader, room))[0]).toBe("the original, revised (edited)");
    suite.expectNoPageProblems();
  },
  TEST_MS,
);

test(
  "the member menu of a moderator: mute (the muted person sees why and until when), unmute, remove (may come back), ban (not rejoined, not after a reload or a reconnect)",
  async () => {
    const server = await suite.server("moderate");
    const room = "hall";
    const olive = await signIn(await suite.newPage("olive"), server, "olive", room);
    const bob = await signIn(await suite.newPage("bob"), server, "bob", "lobby");
    await bob.fill("#join-room", room);
    await bob.press("#join-room", "Enter");
    await live(bob, room);
    await olive.waitForFunction(() => document.querySelectorAll("#members li").length === 2);
    expect(await memberList(bob)).toEqual(["bob you", "olive owner"]);
    // bob may act on nobody: no menus for him.
    expect(await bob.locator("#members .member-actions").count()).toBe(0);

    const menu = async (label: string) => {
      await olive.click(`#members button[aria-label="Actions for bob"]`);
      await olive.locator(`.menu[role="menu"]`).waitFor();
      await olive.locator(".menu-item", { hasText: label }).click();
    };

    await menu("Mute for 10 min");
    await bob.waitForFunction(() => /^You are muted in #hall until [0-9:]+( [AP]M)?\.$/.test(document.getElementById("composer-note")!.textContent!));
    expect(await bob.isDisabled("#composer-text")).toBe(true);
    expect(await bob.isDisabled("#send")).toBe(true);
    await olive.waitForFunction(() => [...document.querySelectorAll(".event > span")].some((s) => /^bob was muted by olive until [0-9:]+( [AP]M)?$/.test(s.textContent!)));
    mkdirSync(SCREENSHOT_DIR, { recursive: true });
    await bob.screenshot({ path: join(SCREENSHOT_DIR, "muted-desktop-light.png") });
    await menu("Unmute");
    await line(bob, room, "bob can write again (olive)");
    expect(await bob.isDisabled("#composer-text")).toBe(false);
    await say(bob, "thanks");
    await seen(olive, room, "thanks");

    await menu("Remove from room…");
    await olive.locator("#ask-dialog[open]").waitFor();
    expect(await olive.textContent("#ask-title")).toBe("Remove bob from #hall?");
    await olive.fill("#ask-reason", "take a break");
    await olive.click("#ask-ok");
    const out = bob.locator(`.room[data-room="${room}"] .out-note`);
    await out.waitFor();
    expect(await out.locator(".out-text").textContent()).toBe("You were removed from #hall by olive: take a break.");
    await line(olive, room, "bob was removed by olive: take a break");
    await olive.waitForFunction(() => document.querySelectorAll("#members li").length === 1);
    expect(await bob.isDisabled("#composer-text")).toBe(true);
    // He may come back: a public room.
    await out.getByRole("button", { name: "Join #hall again" }).click();
    await live(bob, room);
    await olive.waitForFunction(() => document.querySelectorAll("#members li").length === 2);

    await menu("Ban…");
    await olive.locator("#ask-length").waitFor();
    await olive.fill("#ask-reason", "spam");
    await olive.selectOption("#ask-length", "3600");
    await olive.screenshot({ path: join(SCREENSHOT_DIR, "ban-question-desktop-light.png") });
    await olive.click("#ask-ok");
    await out.waitFor();
    expect(await out.locator(".out-text").textContent()).toMatch(/^You were banned from #hall by olive until [0-9:]+( [AP]M)?: spam\.$/);
    await bob.screenshot({ path: join(SCREENSHOT_DIR, "banned-desktop-light.png") });

    // Not rejoined: not by a reload, not by a reconnect. The server counts every join refused as banned.
    const refusals = async () => /chat_errors_total\{code="banned"\} (\d+)/.exec(await (await server.http("/metrics")).text())?.[1] ?? "0";
    expect(await refusals()).toBe("0");
    await bob.reload();
    await live(bob, "lobby");
    await out.waitFor();
    expect(await out.locator(".out-text").textContent()).toMatch(/^You are banned from #hall until [0-9:]+( [AP]M)?\.$/);
    await bob.context().setOffline(true);
    await bob.locator(`#status[data-state="offline"]`).waitFor({ state: "attached" });
    await bob.context().setOffline(false);
    await live(bob, "lobby");
    await bob.click(`#my-rooms .room-link[href="#lobby"]`);
    await say(bob, "marker");
    await seen(bob, "lobby", "marker");
    expect(await bob.getAttribute(`.room[data-room="${room}"]`, "data-sync")).toBe("idle");
    expect(await refusals()).toBe("0");
    // Asking is his choice: the server still says no, and the page says until when.
    await bob.click(`#my-rooms .room-link[href="#${room}"]`);
    await out.getByRole("button", { name: "Join #hall again" }).click();
    await bob.waitForFunction(() => document.querySelector(".room[data-room=hall] .out-text")?.textContent?.startsWith("You are banned from #hall"));
    expect(await refusals()).toBe("1");

    // Olive lifts the ban from her line of it (a banned person is in no member list): the button
    // goes with the unban, bob may come back, and his page no longer keeps him out after a reload.
    const unban = olive.getByRole("button", { name: "Unban bob from #hall" });
    await unban.click();
    await line(olive, room, "bob was unbanned by olive");
    await unban.waitFor({ state: "detached" });
    await out.getByRole("button", { name: "Join #hall again" }).click();
    await live(bob, room);
    await olive.waitForFunction(() => document.querySelectorAll("#members li").length === 2);
    await bob.reload();
    await live(bob, room);
    expect(await out.isHidden()).toBe(true);
    expect(await refusals()).toBe("1");
    suite.expectNoPageProblems();
  },
  TEST_MS,
);

test(
  "a ban that ends while the page is open: the room is joined again by itself, and kept after a reload",
  async () => {
    const server = await suite.server("brief");
    const room = "brief";
    const owner = await suite.client(server);
    await botIn(owner, "keeper", room);
    const bob = await signIn(await suite.newPage("bob"), server, "bob", room);
    const bobId = await bob.evaluate(() => document.querySelector("#members li .you")?.closest("li")?.getAttribute("data-user"));
    owner.send({ type: "ban", room, user: bobId, seconds: 1, ref: "b" });
    await owner.until((f) => f.type === "ok");
    const out = bob.locator(`.room[data-room="${room}"] .out-note`);
    await out.waitFor();
    expect(await out.locator(".out-text").textContent()).toMatch(/^You were banned from #brief by keeper until [0-9:]+( [AP]M)?\.$/);
    // The ban's second, and the page's second of slack for the server's clock: then joined again.
    await bob.locator(`.room[data-room="${room}"][data-sync="live"]`).waitFor({ state: "attached" });
    expect(await out.isHidden()).toBe(true);
    await bob.reload();
    await live(bob, room);
    expect(await out.isHidden()).toBe(true);
    suite.expectNoPageProblems();
  },
  TEST_MS,
);

test(
  "slow mode counts down on Send; a read-only room closes the composer for members; a server-wide ban (4003) stops the page for good",
  async () => {
    const server = await suite.server("pace");
    const room = "slow";
    const owner = await suite.client(server);
    await botIn(owner, "keeper", room);
    owner.send({ type: "room_settings", room, slowModeSeconds: 30, ref: "s" });
    await owner.until((f) => f.type === "ok");

    const bob = await signIn(await suite.newPage("bob"), server, "bob", room);
    await waitForText(bob, "#composer-note", "Slow mode: one message per 30 s.");
    await say(bob, "one");
    await seen(bob, room, "one");
    await bob.waitForFunction(() => /^Send \((29|30) s\)$/.test(document.getElementById("send")!.textContent!));
    expect(await bob.isDisabled("#send")).toBe(true);
    // Enter does not send meanwhile: the text stays in the box.
    await bob.fill("#composer-text", "two");
    await bob.press("#composer-text", "Enter");
    expect(await bob.inputValue("#composer-text")).toBe("two");
    await bob.waitForFunction(() => /^Send \((2[0-8]) s\)$/.test(document.getElementById("send")!.textContent!), undefined, { timeout: 5_000 });
    mkdirSync(SCREENSHOT_DIR, { recursive: true });
    await bob.screenshot({ path: join(SCREENSHOT_DIR, "slow-mode-desktop-light.png") });

    owner.send({ type: "room_settings", room, slowModeSeconds: 0, readOnly: true, ref: "r" });
    await owner.until((f) => f.type === "ok");
    await waitForText(bob, "#composer-note", "#slow is read-only: only moderators write here.");
    expect(await bob.isDisabled("#composer-text")).toBe(true);
    expect(await bob.textContent("#send")).toBe("Send");
    expect(await bob.textContent("#room-flags")).toBe("read-only");

    // An admin, signed in on the page with the admin token, bans bob from the whole chat from
    // his menu: he is closed with 4003, the page stays closed, and the admin is told it is done.
    const admin = await signIn(await suite.newPage("ada"), server, "ada", room, ADMIN_TOKEN);
    await admin.click(`#members button[aria-label="Actions for bob"]`);
    await admin.locator(".menu-item", { hasText: "Ban from this chat…" }).click();
    await admin.locator("#ask-dialog[open]").waitFor();
    expect(await admin.textContent("#ask-title")).toBe("Ban bob from this chat?");
    await admin.fill("#ask-reason", "enough");
    await admin.click("#ask-ok");
    await waitForText(admin, "#notice", "bob is banned from this chat.");
    await bob.locator(`#status[data-state="offline"]`).waitFor({ state: "attached" });
    // The dialog's length starts at an hour, as a room ban's does.
    await bob.waitForFunction(() => /^You are banned from this chat until [0-9:]+( [AP]M)?: enough\.$/.test(document.getElementById("banner-text")!.textContent!));
    expect(await bob.locator("#banner-retry").isHidden()).toBe(true);
    expect(await bob.getAttribute("#status", "data-retry-ms")).toBeNull();
    suite.expectNoPageProblems();
  },
  TEST_MS,
);

test(
  "slow mode waits from bob's last send with the setting now: lowered, Send's countdown shortens at once; a refusal after a reload says when that send was",
  async () => {
    const server = await suite.server("slow-lowered");
    const room = "slow";
    const owner = await suite.client(server);
    await botIn(owner, "keeper", room);
    owner.send({ type: "room_settings", room, slowModeSeconds: 60, ref: "s60" });
    await owner.until((f) => f.type === "ok");
    const bob = await signIn(await suite.newPage("bob"), server, "bob", room);
    /** The owner sets slow mode; the page shows it (and Send's countdown is drawn in the same task). */
    const slowMode = async (seconds: number, ref: string) => {
      owner.send({ type: "room_settings", room, slowModeSeconds: seconds, ref });
      await owner.until((f) => f.type === "ok" && f.ref === ref);
      await waitForText(bob, "#room-flags", `slow mode ${seconds} s`);
    };
    const countdown = async () => Number(/^Send \((\d+) s\)$/.exec((await bob.textContent("#send")) ?? "")?.[1] ?? 0);
    await waitForText(bob, "#composer-note", "Slow mode: one message per 1 min.");
    await say(bob, "one");
    await seen(bob, room, "one");
    await bob.waitForFunction(() => /^Send \((59|60) s\)$/.test(document.getElementById("send")!.textContent!));

    // Lowered to 5 s, then raised to 50 s: the server lets bob send that long after "one".
    await slowMode(5, "s5");
    expect(await countdown()).toBeLessThanOrEqual(5);
    await slowMode(50, "s50");
    expect(await countdown()).toBeGreaterThan(40);

    // After a reload the page knows of no send: the server's refusal of "two" tells it when "one"
    // was, so lowering the setting shortens that wait too.
    await bob.reload();
    await live(bob, room);
    expect(await bob.textContent("#send")).toBe("Send");
    await say(bob, "two");
    await bob.waitForFunction(() => /^Send \((4\d|50) s\)$/.test(document.getElementById("send")!.textContent!));
    await slowMode(5, "s5again");
    expect(await countdown()).toBeLessThanOrEqual(5);
    suite.expectNoPageProblems();
  },
  TEST_MS,
);

test(
  "slow mode counts bob's sends from every tab: another tab of the same browser counts down too",
  async () => {
    const server = await suite.server("slow-tabs");
    const room = "slow";
    const owner = await suite.client(server);
    await botIn(owner, "keeper", room);
    owner.send({ type: "room_settings", room, slowModeSeconds: 60, ref: "s" });
    await owner.until((f) => f.type === "ok");
    const tab1 = await signIn(await suite.newPage("bob"), server, "bob", room);
    const tab2 = await suite.newTab(tab1, "bob-2");
    await tab2.goto(new URL(`/#${room}`, server.url).href);
    await live(tab2, room);
    await say(tab1, "one");
    await seen(tab2, room, "one");
    await tab1.waitForFunction(() => /^Send \((59|60) s\)$/.test(document.getElementById("send")!.textContent!));
    expect(await tab2.textContent("#send")).toMatch(/^Send \((59|60) s\)$/);
    expect(await tab2.isDisabled("#send")).toBe(true);
    suite.expectNoPageProblems();
  },
  TEST_MS,
);

test(
  "a mute lifted while the page was offline (said live only) does not keep the composer blocked after it reconnects",
  async () => {
    const server = await suite.server("unmuted-away");
    const room = "hall";
    const olive = await suite.client(server);
    await olive.hello("olive");
    await olive.join(room);
    const bob = await signIn(await suite.newPage("bob"), server, "bob", room);
    const bobId = (await olive.until((f) => f.type === "presence" && f.user.name === "bob")).at(-1)!.user.id;
    olive.send({ type: "mute", room, user: bobId, seconds: 600, ref: "m" });
    await bob.waitForFunction(() => /^You are muted in #hall until /.test(document.getElementById("composer-note")!.textContent!));
    expect(await bob.isDisabled("#composer-text")).toBe(true);
    await bob.context().setOffline(true);
    await bob.locator(`#status[data-state="offline"]`).waitFor({ state: "attached" });
    olive.send({ type: "mute", room, user: bobId, seconds: 0, ref: "u" });
    await olive.until((f) => f.type === "ok" && f.ref === "u");
    await bob.context().setOffline(false);
    await live(bob, room);
    expect(await bob.isDisabled("#composer-text")).toBe(false);
    await say(bob, "free again");
    await olive.until((f) => f.type === "message" && f.text === "free again");
    suite.expectNoPageProblems();
  },
  TEST_MS,
);

test(
  "the member list keeps the keyboard's place: people coming and going leave focus on a member's ⋯ and its open menu working",
  async () => {
    const server = await suite.server("members-focus");
    const room = "hall";
    const olive = await signIn(await suite.newPage("olive"), server, "olive", room);
    const carol = await suite.client(server);
    await carol.hello("carol");
    await carol.join(room);
    await olive.waitForFunction(() => document.querySelectorAll("#members li").length === 2);
    const actions = `#members button[aria-label="Actions for carol"]`;
    await olive.focus(actions);
    const focused = () => olive.evaluate(() => document.activeElement?.getAttribute("aria-label") ?? null);
    const dave = await suite.client(server);
    await dave.hello("dave");
    await dave.join(room);
    await olive.waitForFunction(() => document.querySelectorAll("#members li").length === 3);
    expect(await focused()).toBe("Actions for carol");
    // Her menu open, someone leaves: the menu still acts on her, and focus comes back to her ⋯.
    await olive.keyboard.press("Enter");
    await olive.locator(`.menu[role="menu"]`).waitFor();
    dave.send({ type: "leave", room });
    await olive.waitForFunction(() => document.querySelectorAll("#members li").length === 2);
    await olive.keyboard.press("Escape");
    expect(await focused()).toBe("Actions for carol");
    suite.expectNoPageProblems();
  },
  TEST_MS,
);

test(
  "an edit or a settings change whose answer is lost with the connection: its form can be saved again, and once back it is",
  async () => {
    const server = await suite.server("edit-lost");
    const room = "talk";
    const bob = await suite.newPage("bob");
    // Armed, the next edit or settings change is swallowed and its socket dropped.
    let armed = false;
    await wired(bob, (frame) => {
      if (!armed || !/"type":"(edit|room_settings)"/.test(frame)) return "pass";
      armed = false;
      return "cut";
    });
    await signIn(bob, server, "bob", room);
    await say(bob, "typo");
    await seen(bob, room, "typo");
    armed = true;
    await messageMenu(bob, room, "typo");
    await pick(bob, "Edit");
    await bob.keyboard.press("ControlOrMeta+A");
    await bob.keyboard.type("fixed");
    await bob.keyboard.press("Enter");
    const field = row(bob, room, "typo").locator("textarea");
    await bob.waitForFunction(() => document.querySelector(".edit-form .field-error")?.textContent?.startsWith("Not saved: the connection was lost"));
    expect(await field.isDisabled()).toBe(false);
    await live(bob, room);
    await field.focus();
    await bob.keyboard.press("Enter");
    await seen(bob, room, "fixed");
    expect(await shown(bob, room)).toEqual(["fixed (edited)"]);
    // The room's settings (bob owns it): Save waits for the answer, lost the same way.
    armed = true;
    await bob.click("#room-settings");
    await bob.fill("#settings-topic", "lost and found");
    await bob.click("#settings-save");
    await waitForText(bob, "#settings-error", "Not saved: the connection was lost. Save again once the chat is back.");
    expect(await bob.isDisabled("#settings-save")).toBe(false);
    await live(bob, room);
    await bob.click("#settings-save");
    await bob.locator("#settings-dialog").waitFor({ state: "hidden" });
    await line(bob, room, "bob set the topic: “lost and found”");
    suite.expectNoPageProblems();
  },
  TEST_MS,
);

test(
  "renamed with a message of ours not yet answered: its row shows the new name it will be sent with",
  async () => {
    const server = await suite.server("rename-pending");
    const room = "talk";
    const dana = await suite.newPage("dana");
    // Armed, the page's sends go nowhere: the message stays pending on the page.
    let swallow = false;
    await wired(dana, (frame) => (swallow && frame.includes(`"type":"send"`) ? "drop" : "pass"));
    await signIn(dana, server, "dana", room);
    swallow = true;
    await say(dana, "still on its way");
    const pending = dana.locator(`.room[data-room="${room}"] .msg.pending .author`);
    expect(await pending.textContent()).toBe("dana");
    await dana.click("#rename");
    await dana.fill("#rename-name", "dana2");
    await dana.press("#rename-name", "Enter");
    await waitForText(dana, "#me-name", "dana2");
    expect(await pending.textContent()).toBe("dana2");
    suite.expectNoPageProblems();
  },
  TEST_MS,
);
