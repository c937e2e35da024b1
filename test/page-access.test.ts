/**
 * The page for everyone (issue #20), in Chromium: text that follows the browser's text size,
 * touch targets of at least 44 × 44 px and text fields of at least 16 px on touch screens;
 * Escape closes what is open; Enter past the limit says why; a room typed as "My Room" or
 * "#Design" becomes its name, shown before joining; "Jump to latest" whenever the view is away
 * from the newest message; and axe-core finding no serious or critical violation on the main
 * states (login, a room with messages, phone, dark, offline).
 */
import { expect, test } from "bun:test";
import type { Page } from "playwright-core";
import { TEST_MS, browserSuite, live, rows, say, seen, signIn } from "./page-browser.ts";

const suite = browserSuite();
const PHONE = { width: 390, height: 844 };
/** WCAG 2.5.5's target size, in CSS px. */
const TARGET_PX = 44;

test(
  "with the browser's default font at 32 px, the chat's text follows: sizes are rem, not px",
  async () => {
    const server = await suite.server("large");
    const room = "large";
    const page = await suite.persistentPage("lara", { webkit: { webprefs: { default_font_size: 32 } } });
    await signIn(page, server, "lara", room);
    await say(page, "big enough to read");
    await seen(page, room, "big enough to read");
    const sizes = await page.evaluate(() => {
      const px = (sel: string) => parseFloat(getComputedStyle(document.querySelector(sel)!).fontSize);
      return {
        root: px("html"),
        text: px(".msg .text"),
        author: px(".msg .author"),
        time: px(".msg .meta time"),
        composer: px("#composer-text"),
        title: px("#room-title"),
        topbar: document.querySelector(".topbar")!.getBoundingClientRect().height,
        avatar: document.querySelector(".msg .avatar")!.getBoundingClientRect().width,
      };
    });
    // Twice the default of 16 px: twice the sizes the page has at 16 (15 px text, 12 px times, a 52 px top bar)…
    expect(sizes).toEqual({ root: 32, text: 30, author: 30, time: 24, composer: 30, title: 34, topbar: 104, avatar: 60 });
    // …and the breakpoint is in em too (47.5em: 1,520 px at this size), so in 1,280 px the sidebar
    // is a drawer, as on a phone (whose 30 px avatars are the 60 above), and nothing overflows.
    expect(await page.locator("#sidebar").isVisible()).toBe(false);
    expect(await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth)).toBe(true);
    suite.expectNoPageProblems();
  },
  TEST_MS,
);

/**
 * The controls shown on the page that are smaller than TARGET_PX either way, as "what: W×H".
 * Links inside a message's text are exempt (WCAG 2.5.5: a target in a sentence); a checkbox is
 * measured with its label, which is what a finger hits.
 */
function smallTargets(page: Page): Promise<string[]> {
  return page.evaluate((min) => {
    const small: string[] = [];
    for (const el of document.querySelectorAll<HTMLElement>("button, a[href], input, select, textarea, summary, [role=menuitem]")) {
      if (el.closest(".text") && el.tagName === "A") continue;
      const target = el instanceof HTMLInputElement && el.type === "checkbox" ? (el.closest("label") ?? el) : el;
      const box = target.getBoundingClientRect();
      const style = getComputedStyle(target);
      // Not shown: hidden, clipped away (the skip link until focused, the visually hidden), or off screen.
      if (box.width === 0 || box.height === 0 || style.visibility === "hidden" || box.bottom < 0 || box.right < 0 || box.top > innerHeight || box.left > innerWidth) continue;
      if (box.width < min - 0.5 || box.height < min - 0.5) {
        const name = el.id ? `#${el.id}` : `${el.tagName.toLowerCase()}.${[...el.classList].join(".")} "${(el.textContent ?? "").trim().slice(0, 20)}"`;
        small.push(`${name}: ${Math.round(box.width)}×${Math.round(box.height)}`);
      }
    }
    return small;
  }, TARGET_PX);
}

test(
  "on a touch screen every control is at least 44 × 44 px, and the text fields at least 16 px (no zoom on tap)",
  async () => {
    const server = await suite.server("touch", { rateLimitBurst: 50, rateLimitPerSecond: 50 });
    const room = "thumbs";
    const page = await suite.newPage("tom", { viewport: PHONE, hasTouch: true, isMobile: true });
    await signIn(page, server, "tom", room);
    const other = await suite.client(server);
    await other.hello("olly");
    await other.join(room);
    const first = await other.say(room, "see www.example.com and `code`");
    other.send({ type: "send", room, id: "r1", text: "a reply with a quote", replyTo: first.seq });
    await other.expect("message");
    await other.say(room, "```\nconst x = 1;\n```");
    await other.say(room, Array.from({ length: 30 }, (_, i) => `line ${i}`).join("\n"));
    // On a touch screen Enter is a new line: the Send button sends.
    await page.fill("#composer-text", "mine too");
    await page.tap("#send");
    await seen(page, room, "mine too");
    expect(await smallTargets(page)).toEqual([]);
    const fonts = await page.$$eval("input, textarea, select", (els) => els.map((el) => parseFloat(getComputedStyle(el).fontSize)));
    expect(Math.min(...fonts)).toBeGreaterThanOrEqual(16);

    // The drawer, a message's menu, the settings dialog (tom started the room: he owns it), the rename form.
    await page.tap("#menu-toggle");
    await page.locator("#sidebar").waitFor();
    await page.tap("#rename");
    await page.locator("#rename-form").waitFor();
    expect(await smallTargets(page)).toEqual([]);
    await page.keyboard.press("Escape");
    await page.keyboard.press("Escape");
    await page.locator("#sidebar").waitFor({ state: "hidden" });
    await page.locator(`${rows(room)}`).last().locator(".msg-actions").tap();
    await page.locator(`.menu[role="menu"]`).waitFor();
    expect(await smallTargets(page)).toEqual([]);
    await page.keyboard.press("Escape");
    await page.tap("#room-settings");
    await page.locator("#settings-dialog").waitFor();
    expect(await smallTargets(page)).toEqual([]);
    suite.expectNoPageProblems();
  },
  TEST_MS,
);

test(
  "Escape closes what is open, innermost first; Enter past the limit says why; 'My Room' and '#Design' become my-room and design, said before joining",
  async () => {
    const server = await suite.server("small-things");
    const page = await suite.newPage("sam");
    await signIn(page, server, "sam", "general");
    const focused = () => page.evaluate(() => document.activeElement?.id ?? "");

    // "Change name" closes with Escape, and gives the focus back to its button.
    await page.click("#rename");
    await page.locator("#rename-form").waitFor();
    expect(await focused()).toBe("rename-name");
    await page.keyboard.press("Escape");
    await page.locator("#rename-form").waitFor({ state: "hidden" });
    expect(await focused()).toBe("rename");
    expect(await page.getAttribute("#rename", "aria-expanded")).toBe("false");

    // Past the limit, Enter says why, next to the field and to screen readers; the counter says it too.
    await page.fill("#composer-text", "x".repeat(2002));
    await page.focus("#composer-text");
    await page.keyboard.press("Enter");
    expect(await page.textContent("#composer-error")).toBe("Too long to send: 2,002 characters, 2 over the limit of 2,000.");
    expect(await page.getAttribute("#composer-error", "aria-live")).toBe("assertive");
    expect(await page.getAttribute("#composer-text", "aria-invalid")).toBe("true");
    expect(await page.getAttribute("#composer-text", "aria-describedby")).toContain("composer-error");
    expect(await page.locator("#counter").getAttribute("aria-live")).toBe("polite");
    expect(await page.locator("#counter .visually-hidden").textContent()).toBe("2002 of 2000 characters");
    expect(await page.inputValue("#composer-text")).toHaveLength(2002);
    expect(await page.locator(`${rows("general")}`).count()).toBe(0);
    // Shortened: the error goes, and Enter sends.
    await page.keyboard.press("Backspace");
    await page.keyboard.press("Backspace");
    expect(await page.textContent("#composer-error")).toBe("");
    expect(await page.getAttribute("#composer-text", "aria-invalid")).toBeNull();
    await page.keyboard.press("Enter");
    await page.locator(`${rows("general")}`).first().waitFor();

    // Room names as people type them: the name it will be is said before joining.
    await page.fill("#join-room", "My Room");
    expect(await page.textContent("#join-slug")).toBe("Joins #my-room");
    await page.press("#join-room", "Enter");
    await live(page, "my-room");
    expect(page.url()).toEndWith("#my-room");
    await page.fill("#join-room", "#Design");
    expect(await page.textContent("#join-slug")).toBe("Joins #design");
    await page.press("#join-room", "Enter");
    await live(page, "design");
    await page.fill("#join-room", "plain");
    expect(await page.textContent("#join-slug")).toBe("");
    // Escape in the field empties it first; nothing that is not a name at all is joined.
    await page.focus("#join-room");
    await page.keyboard.press("Escape");
    expect(await page.inputValue("#join-room")).toBe("");
    await page.fill("#join-room", "!!!");
    await page.press("#join-room", "Enter");
    expect(await page.textContent("#join-error")).toBe("Use letters or digits: a room's name is up to 32 of a-z 0-9 _ -.");
    expect(await page.$$eval("#my-rooms .room-name", (els) => els.map((el) => el.textContent))).toEqual(["general", "my-room", "design"]);

    // The admin token's section on the sign-in screen closes with Escape too.
    const other = await suite.newPage("other");
    await other.goto(server.url.href);
    await other.click("#login-admin summary");
    await other.locator("#login-admin-token").focus();
    await other.keyboard.press("Escape");
    expect(await other.evaluate(() => (document.getElementById("login-admin") as HTMLDetailsElement).open)).toBe(false);
    suite.expectNoPageProblems();
  },
  TEST_MS,
);
