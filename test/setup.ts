/** Preloaded by bunfig.toml: a per-test bound that suits real sockets on a loaded 2-core machine. */
import { setDefaultTimeout } from "bun:test";

setDefaultTimeout(30_000);
