/**
 * The installable app and its offline shell (issue #20), in Chromium: the manifest and service
 * worker make the page installable (Chromium's own installability check, over CDP); the worker
 * caches the page's files and nothing of /api or /ws; a reload with no network and no server
 * shows the page, the message not sent yet and "No network", and the message goes once both
 * are back; a new server version reaches the browser on the next visit.
 */
import { expect, test } from "bun:test";
import { cpSync, mkdirSync, symlinkSync, writeFileSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { Page } from "playwright-core";
import { bundleAssets } from "../server.ts";
import { WAIT_MS, spawnServer, tempDir } from "./helpers.ts";
import { SCREENSHOT_DIR, TEST_MS, browserSuite, live, say, seen, signIn, texts, waitForText } from "./page-browser.ts";

const suite = browserSuite();
const ROOT = join(import.meta.dir, "..");

/** Waits until the service worker has taken the page over (it claims it once activated). */
async function controlled(page: Page): Promise<void> {
  await page.evaluate(() => navigator.serviceWorker.ready);
  await page.waitForFunction(() => navigator.serviceWorker.controller !== null, undefined, { timeout: WAIT_MS });
}

/** The worker's caches, and the paths each holds. */
function cached(page: Page): Promise<Record<string, string[]>> {
  return page.evaluate(async () => {
    const out: Record<string, string[]> = {};
    for (const name of await caches.keys()) out[name] = (await (await caches.open(name)).keys()).map((r) => new URL(r.url).pathname).sort();
    return out;
  });
}

test(
  "installable: Chromium finds the manifest, its icons and the worker, and reports no installability error",
  async () => {
    const server = await suite.server("install");
    // A profile on disk: Chromium does not install apps from an incognito window.
    const ivy = await suite.persistentPage("ivy");
    await signIn(ivy, server, "ivy", "general");
    await controlled(ivy);
    // Chromium's own verdict (what its install prompt uses).
    const cdp = await ivy.context().newCDPSession(ivy);
    const { installabilityErrors } = (await cdp.send("Page.getInstallabilityErrors")) as { installabilityErrors: { errorId: string }[] };
    expect(installabilityErrors).toEqual([]);
    const manifest = (await cdp.send("Page.getAppManifest")) as { url: string; errors: unknown[] };
    expect([new URL(manifest.url).pathname, manifest.errors]).toEqual(["/manifest.webmanifest", []]);
    suite.expectNoPageProblems();
  },
  TEST_MS,
);

test(
  "offline, a reload shows the page, the unsent message and 'No network'; back online it is sent once; /api is never cached",
  async () => {
    const page = await bundleAssets();
    const server = await suite.server("offline");
    const port = Number(server.url.port);
    const olga = await suite.newPage("olga");
    await signIn(olga, server, "olga", "shell");
    await say(olga, "before");
    await seen(olga, "shell", "before");
    await controlled(olga);

    // The page's files, in the cache of this version; nothing of /api, whose answers the page asked for.
    expect(await cached(olga)).toEqual({ [`chat-page-${page.version}`]: ["/", "/app.js", "/favicon.svg", "/icon-maskable.svg", "/manifest.webmanifest", "/style.css"] });

    // No network, and no server either: nothing can come from anywhere but the cache.
    await olga.context().setOffline(true);
    await olga.locator(`#status[data-state="offline"]`).waitFor({ state: "attached" });
    await server.stop();
    await say(olga, "typed offline");
    await olga.locator(`.room[data-room="shell"] .outbox .msg`, { hasText: "typed offline" }).waitFor();
    await olga.reload();
    await olga.locator(`#status[data-state="offline"]`).waitFor({ state: "attached" });
    await waitForText(olga, "#banner-text", "No network. Waiting for it to come back…");
    expect(await olga.locator("#login").isHidden()).toBe(true);
    expect(await olga.textContent("#room-title")).toBe("#shell");
    const pending = olga.locator(`.room[data-room="shell"] .outbox .msg`, { hasText: "typed offline" });
    await pending.waitFor();
    expect(await pending.locator(".state-text").textContent()).toBe("Not sent yet: it goes out when the connection is back.");
    // The stylesheet came too: the banner is laid out as the page draws it, not as bare HTML.
    expect(await olga.$eval("#banner", (el) => getComputedStyle(el).borderBottomStyle)).toBe("solid");
    mkdirSync(SCREENSHOT_DIR, { recursive: true });
    await olga.screenshot({ path: join(SCREENSHOT_DIR, "offline-reload-desktop-light.png") });

    // Back: the server on the same port and file, then the network.
    await suite.server("offline", { port });
    await olga.context().setOffline(false);
    await live(olga, "shell");
    await seen(olga, "shell", "typed offline");
    expect(await texts(olga, "shell")).toEqual(["before", "typed offline"]);
    suite.expectNoPageProblems();
  },
  TEST_MS,
);

test(
  "a new server version is taken on the next visit: the new worker caches the new files and drops the old cache",
  async () => {
    const v1 = await bundleAssets();
    const first = await suite.server("update");
    const port = Number(first.url.port);
    const page = await suite.newPage("uma");
    await signIn(page, first, "uma", "news");
    await controlled(page);
    expect(Object.keys(await cached(page))).toEqual([`chat-page-${v1.version}`]);

    // The same server with one changed byte in its stylesheet, from a copy of the repository.
    using dir = tempDir();
    for (const entry of ["server.ts", "src", "public", "package.json", "tsconfig.json"]) cpSync(join(ROOT, entry), join(dir.path, entry), { recursive: true });
    symlinkSync(join(ROOT, "node_modules"), join(dir.path, "node_modules"));
    const css = join(dir.path, "public", "style.css");
    writeFileSync(css, `${readFileSync(css, "utf8")}\n/* version two */\n`);
    await first.stop();
    await using second = await spawnServer({ PORT: String(port), DATABASE_PATH: join(dir.path, "chat.sqlite") }, [process.execPath, "server.ts"], dir.path);
    expect(second.url.port).toBe(String(port));

    // This visit still shows version one (from the cache) while the browser fetches the new worker…
    await page.reload();
    await page.waitForFunction((old) => caches.keys().then((names) => names.length === 1 && names[0] !== `chat-page-${old}`), v1.version, { timeout: WAIT_MS, polling: 100 });
    // …and the next shows version two.
    await page.reload();
    await page.waitForFunction(() => fetch("/style.css").then((r) => r.text()).then((t) => t.includes("version two")), undefined, { timeout: WAIT_MS, polling: 200 });
    suite.expectNoPageProblems();
  },
  TEST_MS,
);
