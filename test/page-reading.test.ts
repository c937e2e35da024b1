/**
 * Reading a room's log (issue #20), in Chromium: each message under the name it was sent with,
 * also after a reload or for a newcomer, with the rename between; presence lines that keep every
 * join and leave; formatted text (test/page-format.test.ts has the grammar); long messages
 * folded; "Jump to latest" whenever the view is away from the newest message.
 */
import { expect, test } from "bun:test";
import type { Page } from "playwright-core";
import { TEST_MS, browserSuite, events, line, live, row, rows, say, seen, signIn, texts } from "./page-browser.ts";

const suite = browserSuite();

/** The log top to bottom: "name: text" for a message that shows its name, "  text" for one grouped under it, "— line —" for the rest. */
function logOf(page: Page, room: string): Promise<string[]> {
  return page.$$eval(`.room[data-room="${room}"] .messages > li:not(.day)`, (lis) =>
    lis.map((li) =>
      li.classList.contains("msg")
        ? li.classList.contains("cont")
          ? `  ${li.querySelector(".text")!.textContent}`
          : `${li.querySelector(".author")!.textContent}: ${li.querySelector(".text")!.textContent}`
        : `— ${li.firstElementChild!.textContent} —`,
    ),
  );
}

test(
  "after a rename, each message shows the name it was sent with: live, after a reload, and for a newcomer",
  async () => {
    const server = await suite.server("renames");
    const room = "names";
    const reader = await suite.newPage("reader");
    await signIn(reader, server, "reader", room);
    const bob = await suite.client(server);
    const { session } = await bob.hello("bob");
    await bob.join(room);
    await bob.say(room, "one as bob");
    await bob.say(room, "two as bob");
    // A rename is a new hello of the same session.
    const again = await suite.client(server);
    await again.hello("robert", session);
    await line(reader, room, "bob is now robert");
    await bob.until((f) => f.type === "presence" && f.event === "rename");
    await bob.say(room, "three as robert");
    await seen(reader, room, "three as robert");
    const expected = ["— bob joined —", "bob: one as bob", "  two as bob", "— bob is now robert —", "robert: three as robert"];
    expect(await logOf(reader, room)).toEqual(expected);

    // The live line is gone after a reload, and a newcomer never saw it: the messages tell it.
    await reader.reload();
    await live(reader, room);
    await seen(reader, room, "three as robert");
    expect(await logOf(reader, room)).toEqual(expected.slice(1));
    const newcomer = await suite.newPage("newcomer");
    await signIn(newcomer, server, "newcomer", room);
    expect(await logOf(newcomer, room)).toEqual(expected.slice(1));
    // And the group breaks there even with no line between: "three as robert" is not under "bob".
    expect(await newcomer.locator(`${rows(room)}.cont .text`).allTextContents()).toEqual(["two as bob"]);
    suite.expectNoPageProblems();
  },
  TEST_MS,
);

test(
  "the presence fold keeps every event: 'Carol, Dave and Eve joined and left', 'Fay joined; Gus left'",
  async () => {
    const server = await suite.server("folds");
    const room = "folds";
    const watcher = await suite.newPage("watcher");
    await signIn(watcher, server, "watcher", room);
    for (const name of ["Carol", "Dave", "Eve"]) {
      const c = await suite.client(server);
      await c.hello(name);
      await c.join(room);
      c.send({ type: "leave", room });
      await c.until((f) => f.type === "left");
    }
    await line(watcher, room, "Carol, Dave and Eve joined and left");
    const gus = await suite.client(server);
    await gus.hello("Gus");
    await gus.join(room);
    await line(watcher, room, "Carol, Dave and Eve joined and left; Gus joined");
    await say(watcher, "a line between");
    await seen(watcher, room, "a line between");
    const fay = await suite.client(server);
    await fay.hello("Fay");
    await fay.join(room);
    gus.send({ type: "leave", room });
    await line(watcher, room, "Fay joined; Gus left");
    expect(await events(watcher, room)).toEqual(["Carol, Dave and Eve joined and left; Gus joined", "Fay joined; Gus left"]);
    expect(await texts(watcher, room)).toEqual(["a line between"]);
    suite.expectNoPageProblems();
  },
  TEST_MS,
);

test(
  "formatting, safely: every construct drawn as elements made one by one, nothing of the text run or parsed as HTML",
  async () => {
    const server = await suite.server("format", { rateLimitBurst: 50, rateLimitPerSecond: 50 });
    const room = "fmt";
    const page = await suite.newPage("fern", { permissions: ["clipboard-read", "clipboard-write"] });
    const dialogs: string[] = [];
    page.on("dialog", (dialog) => {
      dialogs.push(dialog.message());
      void dialog.dismiss();
    });
    await signIn(page, server, "fern", room);
    const poster = await suite.client(server);
    await poster.hello("poster");
    await poster.join(room);
    const longLine = `const line = "${"x".repeat(300)}";`;
    const messages = [
      "**bold *and em* here** and ~~gone~~ and `<b>code</b>`",
      "```html\n<img src=x onerror=\"window.__pwned=1\">\n<script>window.__pwned=2</script>\n```",
      "```\nunclosed <iframe src=\"javascript:window.__pwned=3\"></iframe>\nstill code",
      "`https://example.com/in-code` is not a link, www.example.com is",
      "**<img src=x onerror=\"window.__pwned=4\">** _<svg onload=\"window.__pwned=5\"></svg>_",
      "> quoted <script>window.__pwned=6</script>\n> second line",
      "_*~~**nested**~~*_ and **unclosed *markers",
      `\`\`\`js\n${longLine}\n\`\`\``,
      "before\n```\nx\n```\nafter",
      "last one",
    ];
    for (const text of messages) await poster.say(room, text);
    await seen(page, room, "last one");

    expect(await page.evaluate(() => (window as { __pwned?: unknown }).__pwned)).toBeUndefined();
    expect(dialogs).toEqual([]);
    // Only the elements the format makes; none of the text's tags.
    const tags = await page.$$eval(`${rows(room)} .text *`, (els) => [...new Set(els.map((el) => el.tagName.toLowerCase()))].sort());
    expect(tags).toEqual(["a", "blockquote", "button", "code", "del", "div", "em", "p", "pre", "strong"]);
    // What each message shows (the copy buttons' words aside).
    const shown = await page.$$eval(`${rows(room)} .text`, (els) =>
      els.map((el) => {
        const copy = el.cloneNode(true) as HTMLElement;
        for (const b of copy.querySelectorAll("button")) b.remove();
        return copy.innerHTML.replace(/ (dir|tabindex|target|rel|data-lang)="[^"]*"/g, "");
      }),
    );
    expect(shown).toEqual([
      "<strong>bold <em>and em</em> here</strong> and <del>gone</del> and <code>&lt;b&gt;code&lt;/b&gt;</code>",
      '<div class="code-block"><pre><code>&lt;img src=x onerror="window.__pwned=1"&gt;\n&lt;script&gt;window.__pwned=2&lt;/script&gt;</code></pre></div>',
      '<div class="code-block"><pre><code>unclosed &lt;iframe src="javascript:window.__pwned=3"&gt;&lt;/iframe&gt;\nstill code</code></pre></div>',
      '<code>https://example.com/in-code</code> is not a link, <a href="https://www.example.com/">www.example.com</a> is',
      '<strong>&lt;img src=x onerror="window.__pwned=4"&gt;</strong> <em>&lt;svg onload="window.__pwned=5"&gt;&lt;/svg&gt;</em>',
      "<blockquote>quoted &lt;script&gt;window.__pwned=6&lt;/script&gt;\nsecond line</blockquote>",
      "<em><em><del><strong>nested</strong></del></em></em> and **unclosed *markers",
      `<div class="code-block"><pre><code>${longLine}</code></pre></div>`,
      "<p>before</p><div class=\"code-block\"><pre><code>x</code></pre></div><p>after</p>",
      "last one",
    ]);

    // A fenced block: monospace, on one line that scrolls sideways inside it (the page does not), reachable by Tab.
    const codeRow = page.locator(rows(room)).filter({ has: page.locator("pre", { hasText: longLine }) });
    const block = codeRow.locator("pre");
    const style = await block.evaluate((pre) => ({
      font: getComputedStyle(pre).fontFamily,
      white: getComputedStyle(pre).whiteSpace,
      scrolls: pre.scrollWidth > pre.clientWidth,
      tab: pre.tabIndex,
    }));
    expect(style).toMatchObject({ white: "pre", scrolls: true, tab: 0 });
    expect(style.font).toMatch(/mono/i);
    expect(await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth)).toBe(true);
    // Its copy button copies the code, as written.
    await block.hover();
    await codeRow.getByRole("button", { name: "Copy" }).click();
    expect(await page.evaluate(() => navigator.clipboard.readText())).toBe(longLine);
    suite.expectNoPageProblems();
  },
  TEST_MS,
);

test(
  "a long message is folded to its first lines, with 'Show more' (and 'Show less'), by keyboard too",
  async () => {
    const server = await suite.server("long");
    const room = "long";
    const page = await suite.newPage("lia", { viewport: { width: 390, height: 844 } });
    await signIn(page, server, "lia", room);
    const long = Array.from({ length: 40 }, (_, i) => `line ${i + 1} of a message that goes on and on`).join("\n");
    const wide = "word ".repeat(400).trim();
    await say(page, long);
    await say(page, wide);
    await say(page, "short");
    await seen(page, room, "short");
    for (const text of [long, wide]) {
      const msg = row(page, room, text);
      const height = () => msg.locator(".text").evaluate((el) => el.getBoundingClientRect().height);
      const folded = await height();
      expect(folded).toBeLessThan(300);
      const more = msg.getByRole("button", { name: "Show more" });
      expect(await more.getAttribute("aria-expanded")).toBe("false");
      await more.focus();
      await page.keyboard.press("Enter");
      const less = msg.getByRole("button", { name: "Show less" });
      expect(await less.getAttribute("aria-expanded")).toBe("true");
      expect(await height()).toBeGreaterThan(folded * 2);
      await less.click();
      expect(await height()).toBe(folded);
    }
    expect(await row(page, room, "short").getByRole("button", { name: "Show more" }).count()).toBe(0);
    suite.expectNoPageProblems();
  },
  TEST_MS,
);

test(
  "'Jump to latest' whenever the view is away from the newest message, with how many came since; Shift+Tab from the composer reaches it, Enter jumps",
  async () => {
    const server = await suite.server("jump", { rateLimitBurst: 500, rateLimitPerSecond: 500 });
    const room = "jump";
    const poster = await suite.client(server);
    await poster.hello("poster");
    await poster.join(room);
    for (let i = 1; i <= 120; i++) await poster.say(room, `m${i}`);
    const page = await suite.newPage("jo", { viewport: { width: 900, height: 600 } });
    await signIn(page, server, "jo", room);
    await seen(page, room, "m120");
    await poster.until((f) => f.type === "presence");
    const jump = page.locator("#new-pill");
    expect(await jump.isHidden()).toBe(true);

    // Up with the keyboard, no message new: the button is there all the same.
    await page.focus(`.room[data-room="${room}"] .log`);
    for (let i = 0; i < 3; i++) await page.keyboard.press("PageUp");
    await jump.waitFor();
    expect(await jump.textContent()).toBe("Jump to latest");
    await poster.say(room, "while away 1");
    await poster.say(room, "while away 2");
    await page.waitForFunction(() => document.getElementById("new-pill")!.textContent === "Jump to latest · 2 new", undefined, { timeout: 15_000 });
    // It comes right after the log's last message in Tab order, so Shift+Tab from the composer
    // reaches it; Enter takes the view to the bottom and the focus back to the composer.
    await page.focus("#composer-text");
    await page.keyboard.press("Shift+Tab");
    expect(await page.evaluate(() => document.activeElement?.id)).toBe("new-pill");
    await page.keyboard.press("Enter");
    await jump.waitFor({ state: "hidden" });
    expect(await page.evaluate(() => document.activeElement?.id)).toBe("composer-text");
    expect(await page.$eval(`.room[data-room="${room}"] .log`, (log) => log.scrollHeight - log.scrollTop - log.clientHeight < 2)).toBe(true);
    // Scrolling back down by hand hides it too, and the count starts over.
    await page.$eval(`.room[data-room="${room}"] .log`, (log) => log.scrollTo(0, 0));
    await jump.waitFor();
    expect(await jump.textContent()).toBe("Jump to latest");
    await page.$eval(`.room[data-room="${room}"] .log`, (log) => log.scrollTo(0, log.scrollHeight));
    await jump.waitFor({ state: "hidden" });
    // A jump while the keyboard's smooth scroll up is still under way ends at the bottom all the
    // same: the animation must not carry on from there (a frame later it would have moved the view).
    await page.focus(`.room[data-room="${room}"] .log`);
    for (let i = 0; i < 3; i++) await page.keyboard.press("PageUp");
    await jump.click();
    await page.evaluate(() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done))));
    expect(await page.$eval(`.room[data-room="${room}"] .log`, (log) => log.scrollHeight - log.scrollTop - log.clientHeight < 2)).toBe(true);
    expect(await jump.isHidden()).toBe(true);
    suite.expectNoPageProblems();
  },
  TEST_MS,
);

test(
  "HISTORY_ON_JOIN=0: a room opens with no messages and 'Load older' brings them",
  async () => {
    const server = await suite.server("no-history", { historyOnJoin: 0 });
    const room = "quiet";
    const bob = await suite.client(server);
    await bob.hello("bob");
    await bob.join(room);
    for (const text of ["first", "second", "third"]) await bob.say(room, text);
    const reader = await suite.newPage("reader");
    await signIn(reader, server, "reader", room);
    expect(await texts(reader, room)).toEqual([]);
    const older = reader.locator(`.room[data-room="${room}"] .older`);
    await older.click();
    await seen(reader, room, "first");
    expect(await texts(reader, room)).toEqual(["first", "second", "third"]);
    await older.waitFor({ state: "hidden" });
    suite.expectNoPageProblems();
  },
  TEST_MS,
);

test(
  "a topic set while the page was away, met in a catch-up page, is told as it was set, not against today's settings",
  async () => {
    const server = await suite.server("settings-away", { historyOnJoin: 2 });
    const room = "away";
    const bob = await suite.client(server);
    await bob.hello("bob");
    await bob.join(room);
    // bob hears the reader come and go: his own echo is what each send waits for.
    const speak = async (text: string) => {
      bob.send({ type: "send", room, id: text, text });
      await bob.until((f) => f.type === "message" && f.id === text);
    };
    await speak("m0");
    const reader = await suite.newPage("reader");
    await signIn(reader, server, "reader", room);
    await seen(reader, room, "m0");
    await reader.context().setOffline(true);
    await reader.locator(`#status[data-state="offline"]`).waitFor({ state: "attached" });
    for (const text of ["m1", "m2", "m3"]) await speak(text);
    bob.send({ type: "room_settings", room, topic: "B", ref: "t" });
    await bob.until((f) => f.type === "ok" && f.ref === "t");
    for (const text of ["m4", "m5"]) await speak(text);
    // Back: the join brings m1 and m2, a page after it the topic and the rest.
    await reader.context().setOffline(false);
    await live(reader, room);
    await seen(reader, room, "m5");
    expect(await events(reader, room)).toContain("bob set the topic: “B”");
    suite.expectNoPageProblems();
  },
  TEST_MS,
);
