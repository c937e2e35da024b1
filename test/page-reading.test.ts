/**
 * Reading a room's log (issue #20), in Chromium: each message under the name it was sent with,
 * also after a reload or for a newcomer, with the rename between; presence lines that keep every
 * join and leave; formatted text (test/page-format.test.ts has the grammar); long messages
 * folded; "Jump to latest" whenever the view is away from the newest message.
 */
import { expect, test } from "bun:test";
import type { Page } from "playwright-core";
import { TEST_MS, browserSuite, events, line, live, rows, say, seen, signIn, texts } from "./page-browser.ts";

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
