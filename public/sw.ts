/**
 * The page's service worker: the offline shell. It keeps the page's own files (the HTML, app.js,
 * style.css, the icons and the manifest) in a cache named by their content hash, and answers
 * them from there, so a reload without network still shows the page, the messages not yet sent
 * and "No network". Nothing else is touched: /api, /ws and every other request take the
 * browser's own way to the network, never a cache.
 *
 * Updates: a new server version has new files, so a new hash, so a different sw.js (the hash is
 * in it). The browser checks sw.js on every visit; the new worker caches the new files beside the
 * old ones, takes over and deletes the old cache; the visit after shows the new page.
 *
 * src/assets.ts bundles this file with PAGE_VERSION and PAGE_FILES defined. Importing it anywhere
 * but a service worker does nothing (the page's modules do no work at import).
 */

/** The content hash of the page's files, and their paths: defined at bundle time. */
declare const PAGE_VERSION: string;
declare const PAGE_FILES: readonly string[];

/** Every cache of this worker is named so; the others' are left alone. */
export const CACHE_PREFIX = "chat-page-";

/** The cache of one version of the page. `cacheName("abc") // => "chat-page-abc"` */
export function cacheName(version: string): string {
  return CACHE_PREFIX + version;
}

/**
 * Whether the worker answers `url` from its cache: a GET of one of the page's own files, on this
 * origin, without a query. Everything else, /api and /ws above all, goes to the network.
 *   answersFromCache(new URL("https://c.example/app.js"), "https://c.example", ["/app.js"], "GET") // => true
 *   answersFromCache(new URL("https://c.example/api/info"), …) // => false
 */
export function answersFromCache(url: URL, origin: string, files: readonly string[], method: string): boolean {
  return method === "GET" && url.origin === origin && url.search === "" && files.includes(url.pathname);
}

/** The caches whose time is over: this worker's, of other versions. */
export function staleCaches(names: readonly string[], version: string): string[] {
  return names.filter((name) => name.startsWith(CACHE_PREFIX) && name !== cacheName(version));
}

/** What the worker needs of an event that can be waited on (install, activate, fetch). */
interface Extendable extends Event {
  waitUntil(promise: Promise<unknown>): void;
}
interface Fetching extends Extendable {
  readonly request: Request;
  respondWith(response: Promise<Response>): void;
}
/** What the worker needs of its global scope (ServiceWorkerGlobalScope). */
interface WorkerScope {
  readonly location: { readonly origin: string };
  readonly caches: CacheStorage;
  readonly clients: { claim(): Promise<void> };
  skipWaiting(): Promise<void>;
  addEventListener(type: "install" | "activate", listener: (event: Extendable) => void): void;
  addEventListener(type: "fetch", listener: (event: Fetching) => void): void;
}

/** Caches `files` at install, drops older versions' caches at activation, and answers those files. */
export function startWorker(scope: WorkerScope, version: string, files: readonly string[]): void {
  const name = cacheName(version);
  scope.addEventListener("install", (event) => {
    // no-cache: the files as the server has them now (revalidated), not an older copy of the HTTP cache.
    const requests = files.map((path) => new Request(path, { cache: "no-cache" }));
    event.waitUntil(
      scope.caches
        .open(name)
        .then((cache) => cache.addAll(requests))
        .then(() => scope.skipWaiting()),
    );
  });
  scope.addEventListener("activate", (event) => {
    event.waitUntil(
      scope.caches
        .keys()
        .then((names) => Promise.all(staleCaches(names, version).map((old) => scope.caches.delete(old))))
        .then(() => scope.clients.claim()),
    );
  });
  scope.addEventListener("fetch", (event) => {
    const url = new URL(event.request.url);
    if (!answersFromCache(url, scope.location.origin, files, event.request.method)) return;
    event.respondWith(
      scope.caches
        .open(name)
        .then((cache) => cache.match(url.pathname))
        .then((hit) => hit ?? fetch(event.request)),
    );
  });
}

// The one statement that runs at load, as main() is app.ts's: only where this is a service worker.
const global = globalThis as { ServiceWorkerGlobalScope?: abstract new () => unknown };
if (typeof global.ServiceWorkerGlobalScope === "function" && globalThis instanceof global.ServiceWorkerGlobalScope) {
  startWorker(globalThis as unknown as WorkerScope, PAGE_VERSION, PAGE_FILES);
}
