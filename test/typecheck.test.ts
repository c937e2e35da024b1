/** `tsc --noEmit` under the strict tsconfig, as part of every test run: server, page and tests. */
import { expect, test } from "bun:test";
import { join } from "node:path";

test("tsc --noEmit passes", async () => {
  const root = join(import.meta.dir, "..");
  const tsc = Bun.spawn([join(root, "node_modules", ".bin", "tsc"), "--noEmit", "-p", root], { stdout: "pipe", stderr: "pipe" });
  const [code, out, err] = await Promise.all([tsc.exited, new Response(tsc.stdout).text(), new Response(tsc.stderr).text()]);
  expect(out + err).toBe("");
  expect(code).toBe(0);
}, 120_000);
