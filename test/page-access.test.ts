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
