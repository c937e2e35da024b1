/**
 * The page's files: public/ read and public/app.ts bundled for the browser, once per process;
 * or, in the compiled binary, the copy deploy/build.ts embedded at build time.
 */

/** The page, read and bundled once at start. */
export interface Assets {
  html: string;
  css: string;
  js: string;
  icon: string;
}

/**
 * The page as `bun run build` bundled it into a compiled binary (deploy/build.ts defines it);
 * undefined under `bun run server.ts`, which bundles public/ once per process instead.
 */
declare const BUN_CHAT_PAGE: Assets | undefined;

const PUBLIC_DIR = new URL("../public/", import.meta.url);

/** One bundle per process, shared by every createServer (a test run starts hundreds). */
let bundled: Promise<Assets> | null = null;

export function loadAssets(): Promise<Assets> {
  if (typeof BUN_CHAT_PAGE !== "undefined") return Promise.resolve(BUN_CHAT_PAGE);
  return (bundled ??= bundleAssets());
}

/** Reads public/ and bundles public/app.ts for the browser; deploy/build.ts embeds the result. */
export async function bundleAssets(): Promise<Assets> {
  const read = (name: string) => Bun.file(new URL(name, PUBLIC_DIR)).text();
  const build = await Bun.build({
    entrypoints: [Bun.fileURLToPath(new URL("app.ts", PUBLIC_DIR))],
    target: "browser",
    minify: true,
  });
  const bundle = build.outputs[0];
  if (!build.success || !bundle) throw new AggregateError(build.logs, "public/app.ts did not build");
  const [html, css, js, icon] = await Promise.all([read("index.html"), read("style.css"), bundle.text(), read("favicon.svg")]);
  return { html, css, js, icon };
}
