/**
 * The server as a real process: `bun server.ts` configured by environment variables, stopped by
 * signals. Proves the shutdown order of §7 and that a SIGKILL loses no message a client saw.
 */
import { expect, test } from "bun:test";
import { join } from "node:path";
import { Client, bounded, burst, catchUp, spawnServer, tempDir, type Frame } from "./helpers.ts";

const SERVER = join(import.meta.dir, "..", "server.ts");

for (const signal of ["SIGTERM", "SIGINT"] as const) {
  test(`${signal}: clients are closed with 1001, then the process exits 0`, async () => {
    const dir = tempDir();
    const server = await spawnServer({ DATABASE_PATH: join(dir.path, "chat.sqlite") });
    const alice = await Client.connect(server.wsUrl);
    await alice.hello("alice");
    await alice.join("general");
    await alice.say("general", "going down soon");
    const early = await Client.connect(server.wsUrl); // not welcomed: closed too
    server.proc.kill(signal);
    expect(await alice.closed).toEqual({ code: 1001, reason: "server shutting down" });
    expect(await early.closed).toEqual({ code: 1001, reason: "server shutting down" });
    expect(await bounded(server.proc.exited, "exit")).toBe(0);
    const { stdout } = await server.output;
    const events = stdout.split("\n").map((l) => JSON.parse(l).event);
    expect(events.slice(-3)).toEqual(["close", "close", "stopped"]);
    dir.cleanup();
  });
}

test("SIGKILL mid-burst loses no message a client saw and reuses no seq", async () => {
  const dir = tempDir();
  const env = { DATABASE_PATH: join(dir.path, "chat.sqlite"), RATE_LIMIT_BURST: "1000", RATE_LIMIT_PER_SECOND: "1000" };
  let server = await spawnServer(env);
  const alice = await Client.connect(server.wsUrl);
  const welcome = await alice.hello("alice");
  await alice.join("crash");
  // Fire a burst without waiting, and kill the server as soon as some of it has been seen.
  burst(alice, "crash", 200);
  const seen: Frame[] = [];
  for (let i = 0; i < 20; i++) seen.push(await alice.expect("message"));
  server.proc.kill("SIGKILL");
  await alice.closed;
  expect(await bounded(server.proc.exited, "exit")).not.toBe(0);
  // Whatever else arrived before the socket died was seen too.
  seen.push(...alice.frames.filter((f) => f.type === "message").slice(seen.length));

  server = await spawnServer(env);
  const back = await Client.connect(server.wsUrl);
  expect((await back.hello("alice", welcome.session)).user).toEqual(welcome.user);
  const stored = await catchUp(back, "crash", 0);
  // Everything seen is stored, unchanged; what is stored is a gap-free prefix of the burst.
  expect(stored.slice(0, seen.length)).toEqual(seen);
  expect(stored.map((m) => m.seq)).toEqual(stored.map((_, i) => i + 1));
  expect(stored.map((m) => m.id)).toEqual(stored.map((_, i) => `m${i}`));
  // A retry of a stored message is answered with the original; new messages go on after it.
  const lastStored = stored.at(-1)!;
  back.send({ type: "send", room: "crash", id: lastStored.id, text: "retry" });
  expect(await back.next()).toEqual(lastStored);
  expect((await back.say("crash", "after the crash")).seq).toBe(stored.length + 1);
  back.close();
  server.proc.kill("SIGTERM");
  expect(await server.proc.exited).toBe(0);
  dir.cleanup();
});

test("a bad environment prints NAME=value: what is allowed, and exits 1 before listening", async () => {
  const proc = Bun.spawn([process.execPath, SERVER], {
    env: { ...process.env, PORT: "http", MAX_MESSAGE_CHARS: "4000", MAX_PAYLOAD_BYTES: "9000", DATABASE_PATH: ":memory:" },
    stdout: "pipe",
    stderr: "pipe",
  });
  const [code, stdout, stderr] = await bounded(Promise.all([proc.exited, new Response(proc.stdout).text(), new Response(proc.stderr).text()]), "exit");
  expect(code).toBe(1);
  expect(stdout).toBe("");
  expect(stderr).toBe("PORT=http: an integer from 0 to 65535\n");
  const cross = Bun.spawn([process.execPath, SERVER], {
    env: { ...process.env, MAX_MESSAGE_CHARS: "4000", MAX_PAYLOAD_BYTES: "9000", DATABASE_PATH: ":memory:" },
    stdout: "pipe",
    stderr: "pipe",
  });
  expect(await cross.exited).toBe(1);
  expect(await new Response(cross.stderr).text()).toBe(
    "MAX_PAYLOAD_BYTES=9000: must be at least 12 × MAX_MESSAGE_CHARS + 512 = 48512 (MAX_MESSAGE_CHARS=4000)\n",
  );
});
