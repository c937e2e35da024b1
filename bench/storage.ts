/**
 * Why sends are group-committed: rows per second stored by SqliteStore.append on a real file,
 * each batch one transaction and one fsync of the WAL before it resolves, for batch sizes 1 to 1000.
 *
 *   bun run bench/storage.ts [messages=4000]
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SqliteStore, type NewMessage } from "../server.ts";

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
