/**
 * The page's copies of protocol values. Every other unit test moved to the file of its capability
 * (config, protocol, names, rate-limits, presence, tcp, rooms, connections, http).
 */
import { describe, expect, test } from "bun:test";
import { CLOSE, HISTORY_PAGE_MAX, ROOM_PATTERN } from "../src/protocol/wire.ts";

describe("the page's copies of protocol values", () => {
  // The page cannot import values from server.ts (that would bundle bun:sqlite), so it keeps
  // copies; these must not drift from the server's.
  test("match the server's", async () => {
    const app = await Bun.file(new URL("../public/app.ts", import.meta.url)).text();
    const connection = await Bun.file(new URL("../public/connection.ts", import.meta.url)).text();
    expect(app).toContain(`const ROOM_PATTERN = ${ROOM_PATTERN};`);
    expect(app).toContain(`const HISTORY_PAGE_MAX = ${HISTORY_PAGE_MAX};`);
    expect(connection).toContain(`const CLOSE_SHUTDOWN = ${CLOSE.shutdown};`);
    expect(connection).toContain(`const CLOSE_POLICY = ${CLOSE.policy};`);
    expect(connection).toContain(`const CLOSE_REPLACED = ${CLOSE.replaced};`);
  });
});
