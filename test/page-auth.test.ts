/**
 * The page and who is who (issue "identity and rooms with owners"), in Chromium: the sign-in
 * screen of a members-only server, login tickets in the address, member badges, admins, the room
 * header (topic, lock), the settings dialog, invite links and the member list with roles.
 */
import { expect, test } from "bun:test";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import {
  ADMIN_TOKEN,
  SCREENSHOT_DIR,
  TEST_MS,
  browserSuite,
  line,
  live,
  memberList,
  rows,
  say,
  seen,
  signIn,
  ticket,
  waitForText,
} from "./page-browser.ts";

const suite = browserSuite();

test(
  "members only: the sign-in screen says so; a login ticket in the address signs in once and leaves the address and history; the session stays",
  async () => {
    const server = await suite.server("members-only", { guestAccess: false });
    const page = await suite.newPage("visitor");
    await page.goto(new URL("/#general", server.url).href);
    await page.locator("#login-members").waitFor();
    expect(await page.locator("#login-name").isVisible()).toBe(false);
    expect(await page.locator("#login-submit").isVisible()).toBe(false);
    mkdirSync(SCREENSHOT_DIR, { recursive: true });
    await page.screenshot({ path: join(SCREENSHOT_DIR, "members-only-desktop-light.png") });

    // A host app sends its user here with a ticket. The page signs in with it, and the address
    // (and the history entry) no longer hold it.
    const token = await ticket("ann-42", { name: "Ann" });
    const ann = await suite.newPage("ann");
    await ann.goto(new URL(`/#token=${token}`, server.url).href);
    await live(ann, "general");
    await waitForText(ann, "#me-name", "Ann");
    expect(await ann.textContent("#me-tags")).toBe("member");
    expect(ann.url()).toBe(new URL("/#general", server.url).href);
    expect(await ann.evaluate(() => history.length)).toBe(2);
    await ann.goBack();
    expect(ann.url()).toBe("about:blank");
    await ann.goForward();
    expect(ann.url()).not.toContain("token");
    await live(ann, "general");
    // Neither storage holds the ticket.
    const stored = await ann.evaluate(() => JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage }));
    expect(stored).not.toContain(token);

    // Her messages carry the member badge; the member list shows it too.
    await say(ann, "hello from the app");
    await seen(ann, "general", "hello from the app");
    expect(await ann.locator(`${rows("general")} .meta .tag`).allTextContents()).toEqual(["member"]);
    expect(await memberList(ann)).toEqual(["Ann member owner you"]);

    // A reload keeps her signed in by the session alone.
    await ann.reload();
    await live(ann, "general");
    expect(await ann.locator("#login").isHidden()).toBe(true);
    expect(await ann.locator(`${rows("general")}.mine .text`).allTextContents()).toEqual(["hello from the app"]);

    // A guest's stored name is refused by this server (auth_required): the members-only screen.
    const guest = await suite.newPage("old guest");
    await guest.goto(new URL("/", server.url).href);
    await guest.evaluate(() => localStorage.setItem("chat.name", "olaf"));
    await guest.reload();
    await guest.locator("#login-members").waitFor();
    expect(await guest.getAttribute("#status", "data-state")).toBe("offline");

    // A ticket that does not check out: the sign-in screen says the link did not work.
    const forged = await suite.newPage("forger");
    await forged.goto(new URL(`/#token=${token.slice(0, -4)}AAAA`, server.url).href);
    await forged.locator("#login").waitFor();
    await forged.waitForFunction(() => document.getElementById("login-error")!.textContent!.startsWith("Your sign-in link did not work"));
    expect(forged.url()).not.toContain("token");
    suite.expectNoPageProblems();
  },
  TEST_MS,
);

test(
  "rooms with owners: the owner's settings dialog (topic, private, read-only, slow mode); the header shows topic and lock; a moderator sets only the topic",
  async () => {
    const server = await suite.server("owners");
    const room = "board";
    const owner = await signIn(await suite.newPage("olive"), server, "olive", room);
    const mod = await signIn(await suite.newPage("milo"), server, "milo", room);
    // Only the owner has the controls; the member list says who owns the room.
    await owner.locator("#room-settings").waitFor();
    expect(await owner.locator("#room-invite").isVisible()).toBe(true);
    expect(await mod.locator("#room-settings").isVisible()).toBe(false);
    expect(await mod.locator("#room-invite").isVisible()).toBe(false);
    await mod.waitForFunction(() => document.querySelectorAll("#members li").length === 2);
    expect(await memberList(mod)).toEqual(["milo you", "olive owner"]);

    // The owner makes milo a moderator from the member list's menu, with the keyboard.
    await owner.waitForFunction(() => document.querySelectorAll("#members li").length === 2);
    await owner.locator(`#members button[aria-label="Actions for milo"]`).focus();
    await owner.keyboard.press("Enter");
    await owner.locator(`.menu[role="menu"]`).waitFor();
    expect(await owner.locator(".menu-item").allTextContents()).toEqual([
      "Remove from room…",
      "Mute for 10 min",
      "Mute for 1 h",
      "Mute for 1 day",
      "Ban…",
      "Make moderator",
    ]);
    await owner.keyboard.press("End");
    await owner.keyboard.press("Enter");
    await line(mod, room, "olive made milo a moderator");
    await mod.locator("#room-settings").waitFor();
    expect(await memberList(owner)).toEqual(["milo mod", "olive owner you"]);

    // The owner's dialog: every setting. Saved, everyone's header follows, with a line in the log.
    await owner.click("#room-settings");
    await owner.locator("#settings-dialog[open]").waitFor();
    expect(await owner.isDisabled("#settings-private")).toBe(false);
    await owner.fill("#settings-topic", "Plans for the launch");
    await owner.check("#settings-private");
    await owner.selectOption("#settings-slow", "30");
    await owner.click("#settings-save");
    await owner.locator("#settings-dialog").waitFor({ state: "hidden" });
    for (const page of [owner, mod]) {
      await waitForText(page, "#room-topic", "Plans for the launch");
      expect(await page.locator("#room-lock").isVisible()).toBe(true);
      expect(await page.textContent("#room-flags")).toBe("slow mode 30 s");
      await line(page, room, "olive set the topic: “Plans for the launch”, made the room private, set slow mode to one message per 30 s");
    }
    mkdirSync(SCREENSHOT_DIR, { recursive: true });
    await mod.screenshot({ path: join(SCREENSHOT_DIR, "room-header-desktop-light.png") });

    // A moderator's dialog: the topic only; the owner's settings are shown but cannot be changed.
    await mod.click("#room-settings");
    await mod.locator("#settings-dialog[open]").waitFor();
    expect(await mod.isDisabled("#settings-private")).toBe(true);
    expect(await mod.isDisabled("#settings-readonly")).toBe(true);
    expect(await mod.isChecked("#settings-private")).toBe(true);
    expect(await mod.locator("#settings-owner-hint").isVisible()).toBe(true);
    await mod.screenshot({ path: join(SCREENSHOT_DIR, "settings-moderator-desktop-light.png") });
    await mod.fill("#settings-topic", "Launch on Friday");
    await mod.press("#settings-topic", "Enter");
    await mod.locator("#settings-dialog").waitFor({ state: "hidden" });
    await waitForText(owner, "#room-topic", "Launch on Friday");
    await line(owner, room, "milo set the topic: “Launch on Friday”");

    // Escape closes the dialog and changes nothing; focus goes back to the button.
    await owner.click("#room-settings");
    await owner.fill("#settings-topic", "not saved");
    await owner.keyboard.press("Escape");
    await owner.locator("#settings-dialog").waitFor({ state: "hidden" });
    expect(await owner.evaluate(() => document.activeElement?.id)).toBe("room-settings");
    expect(await owner.textContent("#room-topic")).toBe("Launch on Friday");

    // The room is private now: someone not on its list, with no invite, is refused, and told why.
    const late = await signIn(await suite.newPage("lena"), server, "lena", "elsewhere");
    await late.evaluate(() => (location.hash = "board"));
    await waitForText(late, "#notice", "#board is private (or new rooms are not yours to start): you need an invite link to join it.");
    suite.expectNoPageProblems();
  },
  TEST_MS,
);

test(
  "the settings dialog sends only what the owner changed in it: a change someone else made while it was open stands",
  async () => {
    const server = await suite.server("settings-merge");
    const room = "board";
    const olive = await signIn(await suite.newPage("olive"), server, "olive", room);
    const admin = await suite.client(server);
    admin.send({ type: "hello", name: "ada", adminToken: ADMIN_TOKEN });
    await admin.expect("welcome");
    await admin.join(room);

    await olive.click("#room-settings");
    await olive.locator("#settings-dialog[open]").waitFor();
    // Meanwhile an admin turns slow mode on; the open dialog still shows it off.
    admin.send({ type: "room_settings", room, slowModeSeconds: 30, ref: "a" });
    await admin.until((f) => f.type === "ok" && f.ref === "a");
    await waitForText(olive, "#room-flags", "slow mode 30 s");
    // Olive changes the topic only: slow mode stays as the admin set it.
    await olive.fill("#settings-topic", "Plans");
    await olive.click("#settings-save");
    await olive.locator("#settings-dialog").waitFor({ state: "hidden" });
    const settings = (await admin.until((f) => f.type === "settings" && f.topic === "Plans")).at(-1)!;
    expect(settings.slowModeSeconds).toBe(30);
    await line(olive, room, "olive set the topic: “Plans”");
    expect(await olive.textContent("#room-flags")).toBe("slow mode 30 s");
    suite.expectNoPageProblems();
  },
  TEST_MS,
);

test(
  "an invite link: made by the owner, copied, opened by someone else it joins the private room once; the room stays on their list",
  async () => {
    const server = await suite.server("invites");
    const room = "secret";
    const owner = await signIn(await suite.newPage("opal", { permissions: ["clipboard-read", "clipboard-write"] }), server, "opal", room);
    await say(owner, "welcome, whoever has the link");
    await owner.click("#room-settings");
    await owner.check("#settings-private");
    await owner.click("#settings-save");
    await owner.locator("#room-lock").waitFor();

    await owner.click("#room-invite");
    await owner.locator("#invite-link").waitFor();
    const link = await owner.inputValue("#invite-link");
    expect(link).toMatch(new RegExp(`^${server.url.href.replace(/[.]/g, "\\.")}#secret\\?invite=[A-Za-z0-9_-]{20,}$`));
    expect(await owner.textContent("#invite-status")).toStartWith("Anyone with this link can join #secret until ");
    await owner.click("#invite-copy");
    await waitForText(owner, "#invite-copy", "Copied");
    expect(await owner.evaluate(() => navigator.clipboard.readText())).toBe(link);
    await owner.screenshot({ path: join(SCREENSHOT_DIR, "invite-desktop-light.png") });
    await owner.click("#invite-close");

    // Someone new opens it: prompted for a name, then in the room; the code is gone from the address.
    const guest = await suite.newPage("gus");
    await guest.goto(link);
    expect(guest.url()).toBe(new URL("/#secret", server.url).href);
    await guest.fill("#login-name", "gus");
    await guest.press("#login-name", "Enter");
    await live(guest, room);
    await seen(guest, room, "welcome, whoever has the link");
    expect(await guest.locator("#room-lock").isVisible()).toBe(true);
    // On the room's list now: a reload rejoins without the code.
    await guest.reload();
    await live(guest, room);
    expect(await guest.$$eval("#my-rooms .room-link", (as) => as.map((a) => a.getAttribute("href")))).toEqual(["#secret"]);

    // Without a code, the room stays closed to others.
    const other = await signIn(await suite.newPage("ivy"), server, "ivy", "general");
    await other.evaluate(() => (location.hash = "secret"));
    await other.locator("#notice").waitFor();
    expect(await other.$$eval("#my-rooms .room-link", (as) => as.map((a) => a.getAttribute("href")))).toEqual(["#general"]);
    // A bad code says so.
    await other.evaluate(() => (location.hash = "secret?invite=not-a-real-code-at-all"));
    await waitForText(other, "#notice", "That invite link to #secret does not work any more: it was used up or expired. Ask for a new one.");
    suite.expectNoPageProblems();
  },
  TEST_MS,
);

test(
  "admin sign-in: the token is used for one hello and kept nowhere; an admin runs any room; a wrong token is refused by its field",
  async () => {
    const server = await suite.server("admins");
    const room = "someones";
    const owner = await signIn(await suite.newPage("oscar"), server, "oscar", room);
    await say(owner, "my room");

    const wrong = await suite.newPage("mallory");
    await wrong.goto(new URL(`/#${room}`, server.url).href);
    // This server takes guests and members: the screen says how members come in.
    await wrong.locator("#login-app").waitFor();
    await wrong.fill("#login-name", "mallory");
    await wrong.click("#login-admin summary");
    await wrong.fill("#login-admin-token", "not-the-admin-token-at-all-0000");
    await wrong.press("#login-admin-token", "Enter");
    await waitForText(wrong, "#login-error", "That admin token is not right.");
    expect(await wrong.getAttribute("#login-admin-token", "aria-invalid")).toBe("true");

    const admin = await signIn(await suite.newPage("ada"), server, "ada", room, ADMIN_TOKEN);
    expect(await admin.textContent("#me-tags")).toBe("admin");
    const kept = await admin.evaluate(() => JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage }));
    expect(kept).not.toContain(ADMIN_TOKEN);
    // An admin acts as an owner anywhere: the settings, the invite link, and the owner's menu.
    await admin.locator("#room-settings").waitFor();
    expect(await admin.isDisabled("#settings-private")).toBe(false);
    expect(await admin.locator("#room-invite").isVisible()).toBe(true);
    // The session keeps the admin: a reload (no token any more) is still an admin.
    await admin.reload();
    await live(admin, room);
    await waitForText(admin, "#me-tags", "admin");
    await admin.click("#room-settings");
    await admin.fill("#settings-topic", "Run by an admin");
    await admin.click("#settings-save");
    await waitForText(owner, "#room-topic", "Run by an admin");
    expect(await admin.locator("#admin-sign-in").isHidden()).toBe(true);

    // Someone already signed in as a guest becomes an admin without signing out: a wrong token
    // changes nothing (still connected, still a guest), the right one reconnects as an admin,
    // with the same name and rooms; the token is not kept.
    const late = await signIn(await suite.newPage("lee"), server, "lee", room);
    const before = await late.evaluate(() => localStorage.getItem("chat.session"));
    const elevate = async (token: string) => {
      await late.click("#admin-sign-in");
      await late.locator("#ask-dialog[open]").waitFor();
      expect(await late.textContent("#ask-title")).toBe("Sign in as an admin");
      await late.fill("#ask-secret", token);
      await late.click("#ask-ok");
    };
    await elevate("not-the-admin-token-at-all-0000");
    await waitForText(late, "#notice", "That admin token is not right: nothing changed.");
    await live(late, room);
    expect(await late.textContent("#me-tags")).toBe("");
    await elevate(ADMIN_TOKEN);
    await waitForText(late, "#me-tags", "admin");
    await live(late, room);
    expect(await late.textContent("#me-name")).toBe("lee");
    expect(await late.locator("#admin-sign-in").isHidden()).toBe(true);
    expect(await late.evaluate(() => localStorage.getItem("chat.session"))).toBe(before);
    const keptLate = await late.evaluate(() => JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage }) + (document.getElementById("ask-secret") as HTMLInputElement).value);
    expect(keptLate).not.toContain(ADMIN_TOKEN);
    suite.expectNoPageProblems();
  },
  TEST_MS,
);

test(
  "signing out asks first and says the name will be free; then someone else may take it",
  async () => {
    const server = await suite.server("signout");
    const page = await signIn(await suite.newPage("sam"), server, "sam", "general");
    const tab = await suite.newTab(page, "sam tab");
    await tab.goto(new URL("/#general", server.url).href);
    await live(tab, "general");

    // While signed in, nobody else gets the name.
    const other = await suite.newPage("other");
    await other.goto(new URL("/#general", server.url).href);
    await other.fill("#login-name", "sam");
    await other.press("#login-name", "Enter");
    await waitForText(other, "#login-error", "That name is taken (someone online, or a guest who keeps it). Try another.");

    await page.click("#sign-out");
    await page.locator("#ask-dialog[open]").waitFor();
    expect(await page.textContent("#ask-title")).toBe("Sign out?");
    expect(await page.textContent("#ask-text")).toBe("Your name “sam” will be free for others to take. This browser forgets it, in every tab.");
    // No is no: still signed in.
    await page.click("#ask-cancel");
    await page.locator("#ask-dialog").waitFor({ state: "hidden" });
    expect(await page.locator("#login").isHidden()).toBe(true);

    await page.click("#sign-out");
    await page.click("#ask-ok");
    await page.locator("#login").waitFor();
    // The other tab was closed by the server ("signed out") and forgets too; it does not reconnect.
    await tab.locator("#login").waitFor();
    await tab.locator(`#status[data-state="offline"]`).waitFor({ state: "attached" });
    await other.press("#login-name", "Enter");
    await live(other, "general");
    await waitForText(other, "#me-name", "sam");
    suite.expectNoPageProblems();
  },
  TEST_MS,
);
