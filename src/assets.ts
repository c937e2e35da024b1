/**
 * The page's files as they are served: public/ read, public/app.ts and public/sw.ts bundled for
 * the browser, each file with a strong ETag and its gzip and brotli forms, all made once per
 * process; or, in the compiled binary, the copy deploy/build.ts made at build time.
 */

type Bytes = Uint8Array<ArrayBuffer>;

/** One file of the page: its bytes, its type, and its compressed forms, each with its own ETag. */
export interface PageFile {
  type: string;
  /** The file as it is (identity), then gzip, then brotli: each a representation of its own. */
  body: Bytes;
  gzip: Bytes;
  br: Bytes;
  /** Strong ETags of the three, in quotes: `"<hash>"`, `"<hash>.gz"`, `"<hash>.br"`. */
  etag: string;
  etagGzip: string;
  etagBr: string;
}

/** The page: its files by the path they are served at, and its version (the hash of what the service worker caches). */
export interface Assets {
  version: string;
  files: Record<string, PageFile>;
}

/** The files the service worker keeps for the offline shell, by path, with the file each serves and its type. */
const SHELL: Record<string, [file: string, type: string]> = {
  "/": ["index.html", "text/html; charset=utf-8"],
  "/app.js": ["app.js", "text/javascript; charset=utf-8"],
  "/style.css": ["style.css", "text/css; charset=utf-8"],
  "/favicon.svg": ["favicon.svg", "image/svg+xml"],
  "/icon-maskable.svg": ["icon-maskable.svg", "image/svg+xml"],
  "/manifest.webmanifest": ["manifest.webmanifest", "application/manifest+json"],
};
/** The service worker itself: never cached by itself (the browser checks it on each visit). */
const WORKER_PATH = "/sw.js";
/** Every path the page is served at: what the HTTP door routes. */
export const PAGE_PATHS: readonly string[] = [...Object.keys(SHELL), WORKER_PATH];

/** Characters of a content hash kept in ETags and the version: 96 bits. */
const HASH_CHARS = 16;
/** Compression levels: the most, since it is done once (gzip 9; brotli 11, told it is text). */
const GZIP_LEVEL = 9;

/**
 * The page as `bun run build` packed it into a compiled binary (deploy/build.ts defines it);
 * undefined under `bun run server.ts`, which bundles public/ once per process instead.
 */
declare const BUN_CHAT_PAGE: PackedAssets | undefined;

const PUBLIC_DIR = new URL("../public/", import.meta.url);
const encoder = new TextEncoder();

/** One bundle per process, shared by every createServer (a test run starts hundreds). */
let bundled: Promise<Assets> | null = null;

export function loadAssets(): Promise<Assets> {
  if (typeof BUN_CHAT_PAGE !== "undefined") return Promise.resolve(unpack(BUN_CHAT_PAGE));
  return (bundled ??= bundleAssets());
}

/** A content hash: the first HASH_CHARS of its SHA-256, base64url. */
function hashOf(...parts: Bytes[]): string {
  const hasher = new Bun.CryptoHasher("sha256");
  for (const part of parts) hasher.update(part);
  return hasher.digest("base64url").slice(0, HASH_CHARS);
}

/**
 * A file with its compressed forms and ETags, made once. Compressed by zlib's async forms, which
 * run on the thread pool: at maximum quality the page's files take ~130 ms of CPU, which would
 * otherwise hold the event loop just after start, while reconnecting clients come back.
 */
export async function pageFile(body: Bytes, type: string): Promise<PageFile> {
  const hash = hashOf(body);
  // Loaded here, not at start: the binary, which compressed at build, never loads node:zlib (~6 ms);
  // and its callbacks are wrapped by hand, as node:util costs ~5 ms of start to load.
  const { brotliCompress, constants: zlib, gzip } = await import("node:zlib");
  const brotli = { params: { [zlib.BROTLI_PARAM_QUALITY]: zlib.BROTLI_MAX_QUALITY, [zlib.BROTLI_PARAM_MODE]: zlib.BROTLI_MODE_TEXT } };
  const [gzipped, br] = await Promise.all([
    new Promise<Buffer>((resolve, reject) => gzip(body, { level: GZIP_LEVEL }, (error, out) => (error ? reject(error) : resolve(out)))),
    new Promise<Buffer>((resolve, reject) => brotliCompress(body, brotli, (error, out) => (error ? reject(error) : resolve(out)))),
  ]);
  return {
    type,
    body,
    gzip: new Uint8Array(gzipped),
    br: new Uint8Array(br),
    etag: `"${hash}"`,
    etagGzip: `"${hash}.gz"`,
    etagBr: `"${hash}.br"`,
  };
}

/**
 * Bundles a browser entry of public/, with `define`s; its build log is the error if it fails. A
 * classic script (`iife`: a service worker is one) or a module (the page's `<script type=module>`).
 */
async function bundle(entry: string, format: "esm" | "iife", define: Record<string, string> = {}): Promise<string> {
  const build = await Bun.build({ entrypoints: [Bun.fileURLToPath(new URL(entry, PUBLIC_DIR))], target: "browser", format, minify: true, define });
  const output = build.outputs[0];
  if (!build.success || !output) throw new AggregateError(build.logs, `public/${entry} did not build`);
  return output.text();
}

/**
 * Reads public/, bundles public/app.ts, then public/sw.ts with the version (the hash of every
 * file it keeps) and their paths, and compresses each file; deploy/build.ts packs the result.
 */
export async function bundleAssets(): Promise<Assets> {
  const app = await bundle("app.ts", "esm");
  const bodies = await Promise.all(
    Object.values(SHELL).map(async ([file]) => (file === "app.js" ? encoder.encode(app) : new Uint8Array(await Bun.file(new URL(file, PUBLIC_DIR)).arrayBuffer()))),
  );
  const version = hashOf(...bodies);
  const paths = Object.keys(SHELL);
  const worker = await bundle("sw.ts", "iife", { PAGE_VERSION: JSON.stringify(version), PAGE_FILES: JSON.stringify(paths) });
  const made = await Promise.all([
    ...paths.map((path, i) => pageFile(bodies[i]!, SHELL[path]![1])),
    pageFile(encoder.encode(worker), "text/javascript; charset=utf-8"),
  ]);
  const files: Record<string, PageFile> = {};
  paths.forEach((path, i) => (files[path] = made[i]!));
  files[WORKER_PATH] = made.at(-1)!;
  return { version, files };
}

/**
 * A response's encoding for an Accept-Encoding header: brotli, else gzip, else none, skipping
 * what the client refuses with `q=0`.
 *   chooseEncoding("gzip, deflate, br") // => "br"      chooseEncoding("br;q=0, gzip") // => "gzip"
 *   chooseEncoding(null) // => "identity"
 */
export function chooseEncoding(header: string | null): "br" | "gzip" | "identity" {
  const accepted = new Map<string, number>();
  for (const part of (header ?? "").toLowerCase().split(",")) {
    const [name = "", ...params] = part.split(";").map((s) => s.trim());
    const q = params.find((p) => p.startsWith("q="));
    accepted.set(name, q === undefined ? 1 : Number(q.slice(2)) || 0);
  }
  const wants = (name: string) => (accepted.get(name) ?? accepted.get("*") ?? 0) > 0;
  return wants("br") ? "br" : wants("gzip") ? "gzip" : "identity";
}

/** Whether an If-None-Match header names `etag` (or is `*`); weak forms compare equal, as RFC 9110 says for GET. */
export function matches(ifNoneMatch: string | null, etag: string): boolean {
  if (ifNoneMatch === null) return false;
  return ifNoneMatch.split(",").some((tag) => {
    const t = tag.trim();
    return t === "*" || t.replace(/^W\//, "") === etag;
  });
}

/**
 * The answer to a GET (or HEAD) of a page file: the form the client accepts best, with its ETag;
 * 304 with no body when If-None-Match names it. `no-cache`: kept, but asked again each time
 * (cheap: a 304), so a new version shows on the next load.
 */
export function pageResponse(file: PageFile, req: Request): Response {
  const encoding = chooseEncoding(req.headers.get("accept-encoding"));
  const [body, etag] = encoding === "br" ? [file.br, file.etagBr] : encoding === "gzip" ? [file.gzip, file.etagGzip] : [file.body, file.etag];
  const headers: Record<string, string> = { "content-type": file.type, "cache-control": "no-cache", etag, vary: "Accept-Encoding" };
  if (matches(req.headers.get("if-none-match"), etag)) return new Response(null, { status: 304, headers });
  if (encoding !== "identity") headers["content-encoding"] = encoding;
  return new Response(body, { headers });
}

/** The page as JSON can carry it (bytes as base64): what deploy/build.ts defines as BUN_CHAT_PAGE. */
export interface PackedAssets {
  version: string;
  files: Record<string, Record<keyof PageFile, string>>;
}

const base64 = (bytes: Bytes) => Buffer.from(bytes).toString("base64");
const bytes = (text: string): Bytes => new Uint8Array(Buffer.from(text, "base64"));

export function pack(assets: Assets): PackedAssets {
  const files: PackedAssets["files"] = {};
  for (const [path, f] of Object.entries(assets.files)) files[path] = { ...f, body: base64(f.body), gzip: base64(f.gzip), br: base64(f.br) };
  return { version: assets.version, files };
}

export function unpack(packed: PackedAssets): Assets {
  const files: Assets["files"] = {};
  for (const [path, f] of Object.entries(packed.files)) files[path] = { ...f, body: bytes(f.body), gzip: bytes(f.gzip), br: bytes(f.br) };
  return { version: packed.version, files };
}
