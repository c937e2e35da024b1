/**
 * Why sends are group-committed: rows per second stored by SqliteStore.append on a real file,
 * each batch one transaction and one fsync of the WAL before it resolves, for batch sizes 1 to 1000.
 * Also what one fsync costs on this disk, with one or two in flight at once (why the server runs
 * two): `syncLatency`, which bench/run.ts also uses for the open loop's last rows.
 *
 *   bun run bench/storage.ts [messages=4000]
 */
import { closeSync, fdatasync, mkdtempSync, openSync, rmSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { NewMessage } from "../src/engine.ts";

/** What a commit appends to the WAL at the least: one 4 KB page. */
const SYNC_BLOCK_BYTES = 4096;
/** Bounds the samples (and the probe file: 4,000 × 4 KB = 16 MB) whatever the disk's speed. */
const SYNC_MAX_SAMPLES = 4000;

/**
 * Times `fdatasync` after a 4 KB append to a fresh file in `dir`, for about `ms` milliseconds (at
 * most SYNC_MAX_SAMPLES samples), as a durable commit waits for one: `inFlight` writers append and
 * sync on Bun's thread pool at once, as the server does. Returns syncs per second and each
 * append's wait p50, p99 and max in ms. The file is removed afterwards.
 */
export async function syncLatency(
  dir: string,
  { ms = 1500, inFlight = 1 } = {},
): Promise<{ samples: number; perSecond: number; p50Ms: number; p99Ms: number; maxMs: number }> {
  const probe = mkdtempSync(join(dir, "bun-chat-fsync-"));
  const fd = openSync(join(probe, "probe"), "w");
  const block = new Uint8Array(SYNC_BLOCK_BYTES).fill(120);
  const times: number[] = [];
  const started = performance.now();
  let begun = 0;
  try {
    await Promise.all(
      Array.from({ length: inFlight }, async () => {
        while (begun < SYNC_MAX_SAMPLES && performance.now() < started + ms) {
          begun++;
          const began = performance.now();
          writeSync(fd, block);
          await new Promise<void>((resolve, reject) => fdatasync(fd, (e) => (e ? reject(e) : resolve())));
          times.push(performance.now() - began);
        }
      }),
    );
  } finally {
    closeSync(fd);
    rmSync(probe, { recursive: true, force: true });
  }
  const seconds = (performance.now() - started) / 1000;
  const n = times.sort((a, b) => a - b).length;
  const at = (p: number) => times[Math.min(n - 1, Math.floor((p / 100) * n))]!;
  return { samples: n, perSecond: n / seconds, p50Ms: at(50), p99Ms: at(99), maxMs: at(100) };
}

async function main(): Promise<void> {
  const { SqliteStore } = await import("../src/sqlite.ts");
  const total = Number(process.argv[2] ?? 4000);
  const text = "a chat message of a typical length, about sixty characters...";
  const results: { batch: number; perSecond: number }[] = [];

  for (const batch of [1, 10, 100, 1000]) {
    const dir = mkdtempSync(join(tmpdir(), "bun-chat-bench-"));
    const store = new SqliteStore(join(dir, "chat.sqlite"), 1000);
    const messages: NewMessage[] = Array.from({ length: total }, (_, i) => ({
      room: `room${i % 10}`,
      user: { id: `u${i % 50}`, name: `user${i % 50}` },
      id: `m${i}`,
      text,
      ts: Date.now(),
    }));
    const started = performance.now();
    for (let i = 0; i < total; i += batch) await store.append(messages.slice(i, i + batch));
    const seconds = (performance.now() - started) / 1000;
    results.push({ batch, perSecond: total / seconds });
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }

  const base = results[0]!.perSecond;
  console.log(`SqliteStore.append, ${total} messages, WAL, one commit and one fsync per batch`);
  console.log("batch  messages/s  vs batch 1");
  for (const r of results) console.log(`${String(r.batch).padStart(5)}  ${Math.round(r.perSecond).toString().padStart(10)}  ${(r.perSecond / base).toFixed(1).padStart(9)}×`);
  for (const inFlight of [1, 2]) {
    const r = await syncLatency(tmpdir(), { inFlight });
    console.log(
      `fdatasync after a 4 KB append, ${inFlight} in flight: ${Math.round(r.perSecond)} syncs/s, each append waits ` +
        `p50 ${r.p50Ms.toFixed(2)} ms, p99 ${r.p99Ms.toFixed(2)} ms, max ${r.maxMs.toFixed(2)} ms (${r.samples} samples)`,
    );
  }
}

if (import.meta.main) await main();
