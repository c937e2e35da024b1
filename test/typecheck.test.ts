/** `tsc --noEmit` under the strict tsconfig, as part of every test run: server, page and tests. */
import { expect, test } from "bun:test";
import { join } from "node:path";
import { run } from "./helpers.ts";

test("tsc --noEmit passes", async () => {
  const root = join(import.meta.dir, "..");
  const { code, stdout: out, stderr: err } = await run([join(root, "node_modules", ".bin", "tsc"), "--noEmit", "-p", root], { ms: 110_000 });
  expect(out + err).toBe("");
  expect(code).toBe(0);
}, 120_000);
