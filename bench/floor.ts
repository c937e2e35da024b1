/**
 * The floor: raw Bun pub/sub with no protocol and no storage. A client opens /ws?room=NAME and is
 * subscribed to that topic; every text frame it sends is published, as it is, to the whole topic
 * (sender included, as the chat server echoes a message to its sender). What the chat server
 * adds on top of this is what the bench measures.
 *
 *   PORT=4000 bun run bench/floor.ts
 */
const server = Bun.serve<{ room: string }>({
  port: Number(process.env.PORT ?? 0),
  hostname: "127.0.0.1",
  fetch(req, srv) {
    const room = new URL(req.url).searchParams.get("room") ?? "floor";
    if (srv.upgrade(req, { data: { room } })) return undefined;
    return new Response("upgrade required", { status: 426 });
  },
  websocket: {
    // The chat server's settings that matter for delivery: same limits, no compression.
    perMessageDeflate: false,
    backpressureLimit: 1048576,
    closeOnBackpressureLimit: true,
    idleTimeout: 120,
    open(ws) {
      ws.subscribe(ws.data.room);
    },
    message(ws, message) {
      server.publish(ws.data.room, message, false);
    },
  },
});
console.log(JSON.stringify({ event: "listening", url: server.url.href }));
