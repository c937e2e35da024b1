/**
 * The single executable: `bun run build`'s script compiles server.ts with src/ and the page
 * inside, and the binary, alone in a folder without public/, serves the page and chats. The build
 * runs in a folder holding only what the Dockerfile's build stage copies, so a module the image
 * would lack fails here (no Docker engine runs on this machine).
 */
import { expect, test } from "bun:test";
import { cpSync, mkdirSync, readFileSync, symlinkSync } from "node:fs";
import { dirname, join } from "node:path";
import { bundleAssets } from "../server.ts";
import { Client, bounded, run, spawnServer, tempDir } from "./helpers.ts";

const ROOT = join(import.meta.dir, "..");

/**
 * A copy of the Dockerfile's build stage: the paths its COPY lines name, into `dir`, and the
 * installed packages where its `bun install --production` puts them. Returns the folder.
 */
function dockerBuildStage(dir: string): string {
  const dockerfile = readFileSync(join(ROOT, "Dockerfile"), "utf8");
  const build = dockerfile.split(/^FROM /m)[1]!;
  const src = join(dir, "src-stage");
  mkdirSync(src);
  for (const [, args] of build.matchAll(/^COPY (?!--)(.+)$/gm)) {
    const parts = args!.trim().split(/\s+/);
    const target = parts.pop()!;
    for (const from of parts) {
      const to = target.endsWith("/") ? join(src, target, from.split("/").at(-1)!) : join(src, target);
      mkdirSync(dirname(to), { recursive: true });
      cpSync(join(ROOT, from), to, { recursive: true });
    }
  }
  symlinkSync(join(ROOT, "node_modules"), join(src, "node_modules"));
  return src;
}

test("the compiled binary serves the page it was built with and chats, with a database of its own", async () => {
  const dir = tempDir();
  const binary = join(dir.path, "bun-chat");
  try {
    const stage = dockerBuildStage(dir.path);
    const { code, stdout, stderr } = await run([process.execPath, "deploy/build.ts", "--outfile", binary], { cwd: stage, ms: 60_000 });
    expect({ code, stderr }).toEqual({ code: 0, stderr: "" });
    expect(stdout.trim()).toBe(binary);

    // Run where there is no public/ to bundle from: everything comes from inside the binary.
    const env = { DATABASE_PATH: join(dir.path, "data", "chat.sqlite") };
    let running = await spawnServer(env, [binary], dir.path);
    try {
      const page = await bundleAssets();
      const html = await fetch(running.url);
      expect([html.status, html.headers.get("content-security-policy")?.startsWith("default-src 'self'")]).toEqual([200, true]);
      // Every file as bundled here, in each encoding, with the same ETags: compressed at build time,
      // and answered 304 when the client has it.
      for (const [path, file] of Object.entries(page.files)) {
        const url = new URL(path, running.url);
        const plain = await fetch(url, { headers: { "accept-encoding": "identity" } });
        expect({ path, body: new Uint8Array(await plain.arrayBuffer()), etag: plain.headers.get("etag") }).toEqual({ path, body: file.body, etag: file.etag });
        for (const [encoding, bytes, etag] of [["br", file.br, file.etagBr], ["gzip", file.gzip, file.etagGzip]] as const) {
          const res = await fetch(url, { headers: { "accept-encoding": encoding }, decompress: false });
          expect({ path, encoding: res.headers.get("content-encoding"), etag: res.headers.get("etag"), body: new Uint8Array(await res.arrayBuffer()) }).toEqual({ path, encoding, etag, body: bytes });
          const again = await fetch(url, { headers: { "accept-encoding": encoding, "if-none-match": etag } });
          expect({ path, status: again.status }).toEqual({ path, status: 304 });
        }
      }

      const alice = await Client.connect(running.wsUrl);
      const bob = await Client.connect(running.wsUrl);
      await alice.hello("alice");
      await bob.hello("bob");
      await alice.join("binary");
      await bob.join("binary");
      await alice.expect("presence");
      const sent = await bob.say("binary", "one file to copy");
      expect(await alice.expect("message")).toEqual(sent);
      running.proc.kill("SIGTERM");
      expect((await alice.closed).code).toBe(1001);
      expect(await bounded(running.proc.exited, "exit")).toBe(0);

      // History lives in the database it was given: a restarted binary still has the message.
      running = await spawnServer(env, [binary], dir.path);
      const back = await Client.connect(running.wsUrl);
      await back.hello("carol");
      expect((await back.join("binary")).messages).toEqual([sent]);
      running.proc.kill("SIGTERM");
      expect(await bounded(running.proc.exited, "exit")).toBe(0);
    } finally {
      running.proc.kill("SIGKILL");
    }
  } finally {
    dir.cleanup();
  }
}, 90_000);
