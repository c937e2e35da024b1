/** What every part of a running server shares: its settings, clock, counters and log. */
import type { Config } from "./config.ts";
import type { Log, Metrics } from "./metrics.ts";

export interface Context {
  config: Config;
  /** The clock, in epoch ms; tests pass their own. */
  now: () => number;
  metrics: Metrics;
  log: Log;
}
