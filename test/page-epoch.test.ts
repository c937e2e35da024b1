/**
 * When the server's storage loses a room or a name (issue 21), in Chromium: the page keeps each
 * room's epoch beside its seq and resumes with both; a room whose history was reset is shown from
 * its new start, with a line that says so, nothing of the old one and nothing twice; and a page
 * whose name someone else held first after Redis lost its data takes the name it is given and
 * says so. The sequence itself is unit-tested in page-sync.test.ts.
 */
import { RedisClient } from "bun";
import { expect, test } from "bun:test";
import type { Page, WebSocketRoute } from "playwright-core";
import { CLOSE, CLOSE_REASON, type ClientFrame } from "../src/protocol/wire.ts";
import { redisForSuite } from "./helpers.ts";
import { TEST_MS, browserSuite, events, line, live, row, say, seen, signIn, texts, waitForText } from "./page-browser.ts";

const suite = browserSuite();
const redis = redisForSuite();

/**
 * The frames the page sends on its sockets; a switch that refuses new sockets (the network is
 * down) while set; `drop` closes the current socket as the server would.
 */
async function recorded(page: Page) {
  let current: WebSocketRoute | null = null;
  const control = {
    refuse: false,
    sent: [] as ClientFrame[],
    drop: (code: number, reason: string) => current!.close({ code, reason }),
  };
  await page.routeWebSocket(/\/ws$/, (route) => {
    if (control.refuse) return void route.close({ code: 1011, reason: "test: network down" });
    current = route;
    const server = route.connectToServer();
    route.onMessage((frame) => {
      if (typeof frame === "string") control.sent.push(JSON.parse(frame) as ClientFrame);
      server.send(frame);
    });
    server.onMessage((frame) => route.send(frame));
  });
  return control;
}

test(
  "a room reset on the server (a new database): the page resumes with since and epoch, and shows the room from its new start with a line, once",
  async () => {
    const room = "epoch";
    const first = await suite.server("epoch-before");
    const port = Number(first.url.port);
    const pia = await suite.newPage("pia");
    const wire = await recorded(pia);
    await signIn(pia, first, "pia", room);
    const bo = await suite.client(first);
    await bo.hello("bo");
    const { epoch } = await bo.join(room);
    for (const text of ["old 1", "old 2", "old 3"]) await bo.say(room, text);
    await seen(pia, room, "old 3");
    // Pia begins a reply to "old 2" (seq 2): after the reset seq 2 is "new 2", so the reply must go.
    await row(pia, room, "old 2").locator(".msg-actions").focus();
    await pia.keyboard.press("Enter");
    await pia.locator(`.menu[role="menu"] >> text=Reply`).click();
    await waitForText(pia, "#reply-text", "Replying to bo: old 2");
    // And leaves the menu of "old 1" open: its Reply, Edit or Delete would name "new 1" after the reset.
    await row(pia, room, "old 1").locator(".msg-actions").focus();
    await pia.keyboard.press("Enter");
    await pia.locator(`.menu[role="menu"]`).waitFor();

    // The server comes back on another database, whose room already has four messages (seqs
    // 1-4) when the page returns: a since of 3 followed would show "new 4" alone under the old ones.
    wire.refuse = true;
    await first.stop();
    await pia.locator(`#status:not([data-state="connected"])`).waitFor({ state: "attached" });
    const second = await suite.server("epoch-after", { port });
    const cy = await suite.client(second);
    await cy.hello("cy");
    const fresh = await cy.join(room);
    expect(fresh.epoch).not.toBe(epoch);
    for (const text of ["new 1", "new 2", "new 3", "new 4"]) await cy.say(room, text);
    wire.refuse = false;
    await live(pia, room);

    const joins = wire.sent.filter((f) => f.type === "join" && f.room === room);
    expect(joins.at(-1)).toMatchObject({ since: 3, epoch });
    expect(await texts(pia, room)).toEqual(["new 1", "new 2", "new 3", "new 4"]);
    await line(pia, room, "This room's history was reset on the server: it starts again here.");
    expect(await pia.locator("#reply-bar").isHidden()).toBe(true);
    expect(await pia.locator(`.menu[role="menu"]`).isVisible()).toBe(false);
    // Live from here, once each; the line stays above the new start.
    cy.send({ type: "send", room, id: "new-5", text: "new 5" });
    await seen(pia, room, "new 5");
    await say(pia, "mine after the reset");
    await seen(pia, room, "mine after the reset");
    expect(await row(pia, room, "mine after the reset").locator(".quote").count()).toBe(0);
    expect(await texts(pia, room)).toEqual(["new 1", "new 2", "new 3", "new 4", "new 5", "mine after the reset"]);
    expect((await events(pia, room)).filter((text) => text.includes("reset"))).toEqual(["This room's history was reset on the server: it starts again here."]);
    const top = await pia.$$eval(`.room[data-room="${room}"] .messages > li:not(.day)`, (lis) => lis.slice(0, 2).map((li) => li.textContent ?? ""));
    expect(top[0]).toContain("history was reset");

    // A rejoin now carries the new epoch.
    wire.refuse = true;
    await second.stop();
    await pia.locator(`#status:not([data-state="connected"])`).waitFor({ state: "attached" });
    await suite.server("epoch-after", { port });
    wire.refuse = false;
    await live(pia, room);
    expect(wire.sent.filter((f) => f.type === "join" && f.room === room).at(-1)).toMatchObject({ since: 6, epoch: fresh.epoch });
    expect(await texts(pia, room)).toEqual(["new 1", "new 2", "new 3", "new 4", "new 5", "mine after the reset"]);

    // The close a reset sends (several instances, Redis lost data) is said as what it is, not as a restart.
    // (It shows until the retry, about a second on.)
    await wire.drop(CLOSE.shutdown, CLOSE_REASON.reset);
    await waitForText(pia, "#banner-text", "A room's history was reset on the server: reloading it.");
    await live(pia, room);
    expect(await texts(pia, room)).toEqual(["new 1", "new 2", "new 3", "new 4", "new 5", "mine after the reset"]);
    suite.expectNoPageProblems();
  },
  TEST_MS,
);

test(
  "renamed: after Redis lost its data someone else had held our name first; the page takes its new name and says so",
  async () => {
    const room = "names";
    const redisUrl = redis.url(redis.freshDb());
    // Instances notice a loss at a heartbeat (every third of this) or when they reconnect to Redis: here, only the latter.
    const options = { redisUrl, instanceTimeoutMs: 600_000 };
    const [a, b] = [await suite.server("renamed-a", options), await suite.server("renamed-b", options)];
    const alice = await suite.client(a);
    await alice.hello("alice");
    await alice.join(room);
    const admin = new RedisClient(redisUrl);
    await admin.send("FLUSHDB", []);
    admin.close();

    // Instance B does not know yet: the page gets "alice" there, after the client on A took it.
    const page = await suite.newPage("alice-too");
    await signIn(page, b, "alice", room);
    await waitForText(page, "#me-name", "alice");
    // Redis comes back (its AOF holds the flush): each instance holds its names again, and the first holder keeps "alice".
    await redis.stop("SIGTERM");
    await redis.start();
    await page.waitForFunction(() => /^alice-./.test(document.querySelector("#me-name")?.textContent ?? ""), undefined, { timeout: 20_000 });
    const name = (await page.textContent("#me-name"))!;
    const told = `Someone else had your name after a server reset; you are now ${name}. Change it with “Change name” in the sidebar.`;
    await waitForText(page, "#notice", told);
    await line(page, room, told);
    // The page keeps the name: its next hello (a reload) asks for it, with its session.
    expect(await page.evaluate(() => localStorage.getItem("chat.name"))).toBe(name);
    await page.reload();
    await live(page, room);
    await waitForText(page, "#me-name", name);
    await say(page, "still here");
    await seen(page, room, "still here");
    expect(await page.locator(`.room[data-room="${room}"] .msg .author`).last().textContent()).toBe(name);
    suite.expectNoPageProblems();
  },
  TEST_MS,
);
