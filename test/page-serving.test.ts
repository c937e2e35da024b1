/**
 * The page's files as the server sends them (issue #20): brotli or gzip as the client accepts,
 * computed once; strong ETags, one per encoding, and 304 on If-None-Match; the service worker
 * and manifest of the installable app; and the weight of a first visit. No browser: the files
 * and answers are checked as bytes (test/page-offline.test.ts runs them in Chromium).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { brotliDecompressSync } from "node:zlib";
import { PAGE_PATHS, bundleAssets, chooseEncoding, matches, pack, unpack, type Assets } from "../src/assets.ts";
import { answersFromCache, cacheName, staleCaches } from "../public/sw.ts";
import { startServer, type TestServer } from "./helpers.ts";

/** The most a first visit may download, compressed (issue #20: "under 80 KB"). */
const FIRST_VISIT_MAX_BYTES = 80 * 1024;

describe("choosing an encoding and matching validators", () => {
  test("brotli first, then gzip, then none; q=0 refuses", () => {
    expect(chooseEncoding("gzip, deflate, br, zstd")).toBe("br");
    expect(chooseEncoding("gzip, deflate")).toBe("gzip");
    expect(chooseEncoding("br;q=0, gzip;q=0.5")).toBe("gzip");
    expect(chooseEncoding("br;q=0, gzip;q=0")).toBe("identity");
    expect(chooseEncoding("*")).toBe("br");
    expect(chooseEncoding("*, br;q=0")).toBe("gzip");
    expect(chooseEncoding("identity")).toBe("identity");
    expect(chooseEncoding("")).toBe("identity");
    expect(chooseEncoding(null)).toBe("identity");
  });

  test("If-None-Match: a list, a weak form of the same tag, or *", () => {
    expect(matches('"a.br"', '"a.br"')).toBe(true);
    expect(matches('"x", W/"a.br"', '"a.br"')).toBe(true);
    expect(matches("*", '"a"')).toBe(true);
    expect(matches('"a"', '"a.br"')).toBe(false);
    expect(matches(null, '"a"')).toBe(false);
  });
});

describe("the service worker's rules", () => {
  const files = ["/", "/app.js", "/style.css"];
  const origin = "https://chat.example";
  test("it answers the page's own files only: never /api, /ws, a query or another origin", () => {
    const answers = (path: string, method = "GET", base = origin) => answersFromCache(new URL(path, base), origin, files, method);
    expect(files.map((f) => answers(f))).toEqual([true, true, true]);
    for (const path of ["/api/info", "/api/rooms?recent=1", "/ws", "/healthz", "/metrics", "/app.js?v=2", "/sw.js", "/api/rooms/dev/messages"]) {
      expect({ path, answers: answers(path) }).toEqual({ path, answers: false });
    }
    expect(answers("/", "POST")).toBe(false);
    expect(answers("/app.js", "GET", "https://cdn.example")).toBe(false);
  });

  test("one cache per version; only this worker's older caches are dropped", () => {
    expect(cacheName("v2")).toBe("chat-page-v2");
    expect(staleCaches(["chat-page-v1", "chat-page-v2", "someone-else"], "v2")).toEqual(["chat-page-v1"]);
  });
});

describe("the page's files", () => {
  let page: Assets;
  beforeAll(async () => {
    page = await bundleAssets();
  });

  test("each compressed form holds the file; the service worker names the version and every other file", () => {
    expect(Object.keys(page.files)).toEqual([...PAGE_PATHS]);
    for (const [path, file] of Object.entries(page.files)) {
      expect({ path, gzip: Bun.gunzipSync(file.gzip), br: new Uint8Array(brotliDecompressSync(file.br)) }).toEqual({ path, gzip: file.body, br: file.body });
      expect(new Set([file.etag, file.etagGzip, file.etagBr]).size).toBe(3);
    }
    const worker = new TextDecoder().decode(page.files["/sw.js"]!.body);
    expect(worker).toContain(JSON.stringify(page.version));
    for (const path of PAGE_PATHS.filter((p) => p !== "/sw.js")) expect(worker).toContain(JSON.stringify(path));
    expect(worker).not.toContain('"/api');
    // The binary's copy (deploy/build.ts) comes back byte for byte.
    expect(unpack(JSON.parse(JSON.stringify(pack(page))))).toEqual(page);
  });

  test("the version is a hash of the content: the same files make the same one (test/page-offline.test.ts changes a byte)", async () => {
    expect((await bundleAssets()).version).toBe(page.version);
    expect(page.version).toMatch(/^[A-Za-z0-9_-]{16}$/);
  });

  test("a first visit downloads less than 80 KB, compressed either way", () => {
    const total = (form: "gzip" | "br") => Object.values(page.files).reduce((n, f) => n + f[form].length, 0);
    console.log(`first visit: ${total("gzip")} bytes gzip, ${total("br")} bytes brotli, ${Object.values(page.files).reduce((n, f) => n + f.body.length, 0)} uncompressed`);
    expect(total("gzip")).toBeLessThan(FIRST_VISIT_MAX_BYTES);
    expect(total("br")).toBeLessThan(FIRST_VISIT_MAX_BYTES);
  });

  test("the manifest makes an installable app: names, start, standalone, icons, colours", () => {
    const manifest = JSON.parse(new TextDecoder().decode(page.files["/manifest.webmanifest"]!.body));
    expect(manifest).toMatchObject({ name: "Chat", short_name: "Chat", start_url: "/", scope: "/", display: "standalone" });
    expect(manifest.theme_color).toMatch(/^#[0-9a-f]{6}$/);
    expect(manifest.background_color).toMatch(/^#[0-9a-f]{6}$/);
    expect(manifest.icons.map((i: { src: string; purpose: string }) => [i.src, i.purpose])).toEqual([["/favicon.svg", "any"], ["/icon-maskable.svg", "maskable"]]);
    for (const icon of manifest.icons) expect(PAGE_PATHS).toContain(icon.src);
    // Light and dark: the page's theme colour follows the scheme.
    const html = new TextDecoder().decode(page.files["/"]!.body);
    expect(html).toContain('<meta name="theme-color" content="#ffffff" media="(prefers-color-scheme: light)">');
    expect(html).toContain('<meta name="theme-color" content="#15171c" media="(prefers-color-scheme: dark)">');
    expect(html).toContain('<link rel="manifest" href="/manifest.webmanifest">');
  });
});

describe("served", () => {
  let server: TestServer;
  let page: Assets;
  beforeAll(async () => {
    server = await startServer();
    page = await bundleAssets();
  });
  afterAll(() => server.stop());

  const get = (path: string, headers: Record<string, string> = {}, method = "GET") =>
    fetch(new URL(path, server.url), { method, headers, decompress: false });

  test("brotli or gzip as accepted, else as it is; each with its own strong ETag, Vary and no-cache", async () => {
    for (const path of PAGE_PATHS) {
      const file = page.files[path]!;
      for (const [accept, encoding, body, etag] of [
        ["gzip, deflate, br", "br", file.br, file.etagBr],
        ["gzip", "gzip", file.gzip, file.etagGzip],
        ["identity", null, file.body, file.etag],
      ] as const) {
        const res = await get(path, { "accept-encoding": accept });
        expect({
          path,
          status: res.status,
          encoding: res.headers.get("content-encoding"),
          etag: res.headers.get("etag"),
          vary: res.headers.get("vary"),
          cache: res.headers.get("cache-control"),
          type: res.headers.get("content-type"),
          csp: res.headers.get("content-security-policy")?.startsWith("default-src 'self'"),
          body: new Uint8Array(await res.arrayBuffer()),
        }).toEqual({ path, status: 200, encoding, etag, vary: "Accept-Encoding", cache: "no-cache", type: file.type, csp: true, body });
      }
    }
  });

  test("If-None-Match with the ETag of what would be sent: 304, no body, the same validators; another encoding's tag: 200", async () => {
    const file = page.files["/app.js"]!;
    const again = await get("/app.js", { "accept-encoding": "br", "if-none-match": file.etagBr });
    expect([again.status, again.headers.get("etag"), again.headers.get("vary"), await again.text()]).toEqual([304, file.etagBr, "Accept-Encoding", ""]);
    const other = await get("/app.js", { "accept-encoding": "br", "if-none-match": file.etagGzip });
    expect(other.status).toBe(200);
    const head = await get("/", { "accept-encoding": "gzip" }, "HEAD");
    expect([head.status, head.headers.get("etag"), head.headers.get("content-encoding")]).toEqual([200, page.files["/"]!.etagGzip, "gzip"]);
  });
});
