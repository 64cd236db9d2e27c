// The Socket.IO peer of the benchmark suite: the room chat of the load
// tester's chat scenario, written the way a Socket.IO 4 application would
// write it, so that the same load generator can drive both servers.
//
// It answers the load tester's setup calls (POST /v1/consultations and
// POST /v1/tokens), then speaks Socket.IO over a WebSocket:
//
//   connect  auth {token}            a token from POST /v1/tokens
//   "join"   {room}          -> ack  {room, seq}   the room's last seq
//   "chat"   {room, client_id, text} -> ack {room, seq, id, at}
//   "message" to the room:   {room, seq, id, client_id, from, kind, text, at}
//
// Each room's seq counts its messages, gapless: in memory on one node, and
// with REDIS_URL set, in Redis (INCR) with @socket.io/redis-adapter carrying
// the room's events between nodes. Nothing is stored and tokens are not
// signed; like the bare relay, this peer does less than Telehub does.
//
//   PORT=8095 node server.js
//   PORT=8095 REDIS_URL=redis://127.0.0.1:6379 NODE_ID=a node server.js
//
// PING_INTERVAL_MS and PING_TIMEOUT_MS override Socket.IO's 25 s and 20 s.

"use strict";

const http = require("node:http");
const { Server } = require("socket.io");

const port = Number(process.env.PORT || 8095);
const host = process.env.HOST || "127.0.0.1";
const nodeId = process.env.NODE_ID || "sio";
const redisUrl = process.env.REDIS_URL;
// Socket.IO's defaults; the tests shorten them to see pings answered.
const pingInterval = Number(process.env.PING_INTERVAL_MS || 25000);
const pingTimeout = Number(process.env.PING_TIMEOUT_MS || 20000);

let consultations = 0;

function readJson(req) {
  return new Promise((resolve, reject) => {
    let body = "";
    req.setEncoding("utf8");
    req.on("data", (chunk) => (body += chunk));
    req.on("end", () => {
      try {
        resolve(body ? JSON.parse(body) : {});
      } catch (err) {
        reject(err);
      }
    });
    req.on("error", reject);
  });
}

function send(res, status, value) {
  const body = JSON.stringify(value);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
  res.end(body);
}

// The setup calls of the load tester; Socket.IO handles /socket.io/ itself.
async function api(req, res) {
  try {
    if (req.method === "GET" && (req.url === "/healthz" || req.url === "/readyz")) {
      return send(res, 200, { status: "ok" });
    }
    if (req.method === "POST" && req.url === "/v1/consultations") {
      await readJson(req);
      consultations += 1;
      return send(res, 201, { id: `${nodeId}-${consultations}` });
    }
    if (req.method === "POST" && req.url === "/v1/tokens") {
      const { sub, name, role } = await readJson(req);
      if (typeof sub !== "string" || typeof role !== "string") {
        return send(res, 400, { error: { code: "bad_request", message: "sub and role are required" } });
      }
      const token = Buffer.from(JSON.stringify({ id: sub, name: name || sub, role })).toString("base64url");
      return send(res, 201, { token });
    }
    send(res, 404, { error: { code: "not_found", message: `${req.method} ${req.url}` } });
  } catch (err) {
    send(res, 400, { error: { code: "bad_request", message: String(err) } });
  }
}

async function seqStore() {
  if (!redisUrl) {
    const seqs = new Map();
    return {
      adapter: undefined,
      last: async (room) => seqs.get(room) || 0,
      next: async (room) => {
        const seq = (seqs.get(room) || 0) + 1;
        seqs.set(room, seq);
        return seq;
      },
    };
  }
  const { createClient } = require("redis");
  const { createAdapter } = require("@socket.io/redis-adapter");
  const pub = createClient({ url: redisUrl });
  const sub = pub.duplicate();
  const counters = pub.duplicate();
  for (const client of [pub, sub, counters]) client.on("error", (err) => console.error("redis:", err.message));
  await Promise.all([pub.connect(), sub.connect(), counters.connect()]);
  return {
    adapter: createAdapter(pub, sub),
    last: async (room) => Number((await counters.get(`seq:${room}`)) || 0),
    next: async (room) => counters.incr(`seq:${room}`),
  };
}

async function main() {
  const seqs = await seqStore();
  const server = http.createServer(api);
  const io = new Server(server, {
    transports: ["websocket"],
    serveClient: false,
    pingInterval,
    pingTimeout,
    adapter: seqs.adapter,
  });

  io.use((socket, next) => {
    try {
      const user = JSON.parse(Buffer.from(String(socket.handshake.auth.token), "base64url").toString("utf8"));
      if (typeof user.id !== "string" || typeof user.role !== "string") throw new Error("no id or role");
      socket.data.user = user;
      next();
    } catch {
      next(new Error("unauthorized"));
    }
  });

  io.on("connection", (socket) => {
    const from = socket.data.user;
    socket.on("join", async (frame, ack) => {
      if (typeof ack !== "function") return;
      if (!frame || typeof frame.room !== "string") return ack({ error: "bad_request" });
      socket.join(frame.room);
      ack({ room: frame.room, seq: await seqs.last(frame.room) });
    });
    socket.on("chat", async (frame, ack) => {
      if (typeof ack !== "function") return;
      if (!frame || typeof frame.room !== "string" || typeof frame.text !== "string") {
        return ack({ error: "bad_request" });
      }
      if (!socket.rooms.has(frame.room)) return ack({ error: "forbidden" });
      const seq = await seqs.next(frame.room);
      const id = `${frame.room}:${seq}`;
      const at = new Date().toISOString();
      ack({ room: frame.room, seq, id, at });
      io.to(frame.room).emit("message", {
        room: frame.room,
        seq,
        id,
        client_id: frame.client_id,
        from,
        kind: "text",
        text: frame.text,
        at,
      });
    });
  });

  // PORT=0 picks a free port; this line says which (the tests read it).
  server.listen(port, host, () => console.error(`socket.io peer ${nodeId} on http://${host}:${server.address().port}`));
  const stop = () => io.close(() => process.exit(0));
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
