/**
 * The single executable: `bun run build`'s script compiles server.ts with the page inside, and the
 * binary, alone in a folder without public/, serves the page and chats.
 */
import { expect, test } from "bun:test";
import { join } from "node:path";
import { bundleAssets } from "../server.ts";
import { Client, bounded, spawnServer, tempDir } from "./helpers.ts";

const BUILD = join(import.meta.dir, "..", "deploy", "build.ts");

test("the compiled binary serves the page it was built with and chats, with a database of its own", async () => {
  const dir = tempDir();
  const binary = join(dir.path, "bun-chat");
  try {
    const build = Bun.spawn([process.execPath, BUILD, "--outfile", binary], { stdout: "pipe", stderr: "pipe" });
    const [code, stdout, stderr] = await bounded(
      Promise.all([build.exited, new Response(build.stdout).text(), new Response(build.stderr).text()]),
      "the build",
      60_000,
    );
    expect({ code, stderr }).toEqual({ code: 0, stderr: "" });
    expect(stdout.trim()).toBe(binary);

    // Run where there is no public/ to bundle from: everything comes from inside the binary.
    const env = { DATABASE_PATH: join(dir.path, "data", "chat.sqlite") };
    let running = await spawnServer(env, [binary], dir.path);
    try {
      const page = await bundleAssets();
      const html = await fetch(running.url);
      expect([html.status, html.headers.get("content-security-policy")?.startsWith("default-src 'self'")]).toEqual([200, true]);
      expect(await html.text()).toBe(page.html);
      expect(await (await fetch(new URL("/app.js", running.url))).text()).toBe(page.js);
      expect(await (await fetch(new URL("/style.css", running.url))).text()).toBe(page.css);

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
