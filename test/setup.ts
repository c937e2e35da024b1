/** Preloaded by bunfig.toml for every `bun test` run. */
import { setDefaultTimeout } from "bun:test";
import { mkdirSync } from "node:fs";

// A per-test bound that suits real sockets and a real browser on a loaded 2-core machine.
setDefaultTimeout(30_000);
// bunfig.toml's JUnit reporter writes here, but does not create the folder.
mkdirSync(new URL("../test-results/", import.meta.url), { recursive: true });
