/**
 * The page audited in Chromium (issue #20, item 8), in its main states: the sign-in screen, a
 * room with messages (formatted ones too), a phone with the drawer open, dark, and offline after
 * a reload. Lighthouse is not available offline (it needs the network and its own Chrome): this is
 * the equivalent check the issue allows, in two parts:
 *
 *   accessibility   axe-core (node_modules/axe-core, the engine Lighthouse's accessibility
 *                   category runs), injected into the page under test: no serious or critical
 *                   violation in any state.
 *   best practices  what Lighthouse's best-practices category looks at and applies here: no
 *                   console error and no CSP refusal, a doctype, a charset, a lang, a title and a
 *                   description, a viewport that lets people zoom, images with alt text and their
 *                   size set, links opening a new tab with rel=noopener, text of at least 12 px.
 */
import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import type { Page } from "playwright-core";
import { TEST_MS, browserSuite, live, say, seen, signIn } from "./page-browser.ts";

const suite = browserSuite();
const AXE_SOURCE = readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");
const PHONE = { width: 390, height: 844 };
/** Lighthouse's "legible font sizes": text below this many px is flagged. */
const MIN_FONT_PX = 12;

interface AxeResult {
  violations: { id: string; impact: string | null; help: string; nodes: { target: unknown[] }[] }[];
}

/** axe-core's serious and critical violations on the page as it is now, as "rule: where". */
async function axe(page: Page): Promise<string[]> {
  // Evaluated over the DevTools protocol, which the page's CSP does not govern (no script tag is added).
  if (!(await page.evaluate(() => "axe" in window))) await page.evaluate(AXE_SOURCE);
  const result = (await page.evaluate(() => (window as unknown as { axe: { run(): Promise<unknown> } }).axe.run())) as AxeResult;
  return result.violations
    .filter((v) => v.impact === "serious" || v.impact === "critical")
    .map((v) => `${v.id} (${v.impact}): ${v.help}: ${v.nodes.map((n) => JSON.stringify(n.target)).join(", ")}`);
}

/** What Lighthouse's best-practices and SEO checks would flag on the page, as it applies here. */
function practices(page: Page): Promise<string[]> {
  return page.evaluate((minPx) => {
    const found: string[] = [];
    if (document.doctype?.name !== "html") found.push("no <!doctype html>");
    if (document.characterSet !== "UTF-8") found.push(`charset ${document.characterSet}`);
    if (!document.documentElement.lang) found.push("no lang");
    if (!document.title) found.push("no title");
    if (!document.querySelector('meta[name="description"]')?.getAttribute("content")) found.push("no description");
    const viewport = document.querySelector('meta[name="viewport"]')?.getAttribute("content") ?? "";
    if (!viewport.includes("width=device-width") || /user-scalable\s*=\s*(no|0)|maximum-scale\s*=\s*1(\.0)?\b/.test(viewport)) found.push(`viewport: ${viewport}`);
    for (const img of document.images) {
      if (!img.hasAttribute("alt")) found.push(`img without alt: ${img.src}`);
      if (!img.getAttribute("width") || !img.getAttribute("height")) found.push(`img without its size: ${img.src}`);
    }
    for (const a of document.querySelectorAll<HTMLAnchorElement>('a[target="_blank"]')) {
      if (!/\bnoopener\b/.test(a.rel)) found.push(`target=_blank without noopener: ${a.href}`);
    }
    // Text shown, in a size below minPx.
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      const el = node.parentElement!;
      if (!node.textContent?.trim() || el.closest("[hidden], .visually-hidden, [aria-hidden=true]")) continue;
      const box = el.getBoundingClientRect();
      if (box.width === 0 || box.height === 0) continue;
      const size = parseFloat(getComputedStyle(el).fontSize);
      if (size < minPx) found.push(`${size}px text: "${node.textContent.trim().slice(0, 30)}"`);
    }
    return found;
  }, MIN_FONT_PX);
}

/** Every console error of a page, kept for the test to assert on. */
function consoleErrors(page: Page): string[] {
  const errors: string[] = [];
  page.on("console", (m) => void (m.type() === "error" && errors.push(m.text())));
  page.on("pageerror", (e) => void errors.push(e.message));
  return errors;
}

test(
  "axe-core finds no serious or critical violation, and the best-practice checks nothing, on the sign-in screen and in a room, on desktop and phone, light and dark",
  async () => {
    const server = await suite.server("audit", { rateLimitBurst: 50, rateLimitPerSecond: 50 });
    const room = "audit";
    for (const colorScheme of ["light", "dark"] as const) {
      const page = await suite.newPage(`audit-${colorScheme}`, { colorScheme });
      const errors = consoleErrors(page);
      await page.goto(server.url.href);
      await page.locator("#login-name").waitFor();
      expect({ state: `login ${colorScheme}`, axe: await axe(page), practices: await practices(page) }).toEqual({ state: `login ${colorScheme}`, axe: [], practices: [] });

      const name = `ava-${colorScheme}`;
      await page.fill("#login-name", name);
      await page.press("#login-name", "Enter");
      await live(page, "general");
      await page.fill("#join-room", room);
      await page.press("#join-room", "Enter");
      await live(page, room);
      const bot = await suite.client(server);
      await bot.hello(`ben-${colorScheme}`);
      await bot.join(room);
      for (const text of [
        "Morning! Did the deploy go out?",
        "It did: notes at www.example.com/notes, and **two** things to check:\n> the login page\n> the rooms list",
        "```sh\nbun run build && ./dist/bun-chat\n```",
        `@${name} can you look at \`deploy/build.ts\`? ~~today~~ tomorrow is fine`,
      ]) {
        await bot.say(room, text);
      }
      await say(page, "On it.");
      await seen(page, room, "On it.");
      expect({ state: `room ${colorScheme}`, axe: await axe(page), practices: await practices(page) }).toEqual({ state: `room ${colorScheme}`, axe: [], practices: [] });

      // A phone: the room, then the drawer open.
      await page.setViewportSize(PHONE);
      await page.locator("#sidebar").waitFor({ state: "hidden" });
      expect({ state: `phone ${colorScheme}`, axe: await axe(page), practices: await practices(page) }).toEqual({ state: `phone ${colorScheme}`, axe: [], practices: [] });
      await page.click("#menu-toggle");
      await page.locator("#sidebar").waitFor();
      expect({ state: `phone drawer ${colorScheme}`, axe: await axe(page) }).toEqual({ state: `phone drawer ${colorScheme}`, axe: [] });
      expect(errors).toEqual([]);
    }
    suite.expectNoPageProblems();
  },
  TEST_MS,
);

test(
  "offline after a reload (the service worker's shell, a message not sent): no serious or critical violation",
  async () => {
    const server = await suite.server("audit-offline");
    const page = await suite.newPage("otto");
    await signIn(page, server, "otto", "quiet");
    await page.evaluate(() => navigator.serviceWorker.ready);
    await page.waitForFunction(() => navigator.serviceWorker.controller !== null);
    await page.context().setOffline(true);
    await page.locator(`#status[data-state="offline"]`).waitFor({ state: "attached" });
    await say(page, "later");
    await page.reload();
    await page.locator(`#status[data-state="offline"]`).waitFor({ state: "attached" });
    await page.locator(`.room[data-room="quiet"] .outbox .msg`, { hasText: "later" }).waitFor();
    for (const colorScheme of ["light", "dark"] as const) {
      await page.emulateMedia({ colorScheme });
      expect({ state: `offline ${colorScheme}`, axe: await axe(page), practices: await practices(page) }).toEqual({ state: `offline ${colorScheme}`, axe: [], practices: [] });
    }
    suite.expectNoPageProblems();
  },
  TEST_MS,
);
