/**
 * A bot that answers `/roll` (or `/roll 20`) in any room, by webhook (docs/bot.md): it verifies each
 * POST with the `standardwebhooks` package and answers over the HTTP API as a bot (§11.6).
 *   WEBHOOK_SECRET=whsec_… BOT_TOKEN=bot_… CHAT_URL=http://localhost:3000 PORT=8080 bun examples/roll-bot.ts
 */
import { Webhook } from "standardwebhooks";

const { WEBHOOK_SECRET, BOT_TOKEN, CHAT_URL = "http://localhost:3000", PORT = "8080" } = process.env;
const verifier = new Webhook(WEBHOOK_SECRET!);

const server = Bun.serve({
  port: Number(PORT),
  async fetch(req) {
    const body = await req.text();
    let event: { type: string; data: { room: string; seq: number; text: string; user: { name: string; kind?: string } } };
    try {
      event = verifier.verify(body, Object.fromEntries(req.headers)) as typeof event;
    } catch {
      return new Response("bad signature", { status: 401 });
    }
    const m = event.data;
    const roll = event.type === "message.created" && m.user.kind !== "bot" && /^\/roll(?:\s+(\d{1,6}))?\s*$/.exec(m.text);
    if (!roll) return new Response(null, { status: 204 });
    const sides = Math.max(2, Number(roll[1] ?? 6));
    const answer = await fetch(new URL(`/api/rooms/${m.room}/messages`, CHAT_URL), {
      method: "POST",
      headers: { authorization: `Bearer ${BOT_TOKEN}`, "content-type": "application/json" },
      // The webhook-id as the message id: a webhook sent again posts nothing twice (the server answers the original).
      body: JSON.stringify({ id: req.headers.get("webhook-id"), replyTo: m.seq, text: `${m.user.name} rolls ${1 + Math.floor(Math.random() * sides)} (d${sides})` }),
    });
    // Not posted: answer 503, and the server sends the webhook again later.
    return new Response(null, { status: answer.ok ? 204 : 503 });
  },
});
console.log(`roll-bot listening on port ${server.port}`);
