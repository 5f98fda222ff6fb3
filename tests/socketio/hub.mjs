// The original frontend code, run unmodified with the real socket.io-client against the hub.
// Usage: node hub.mjs <hub base url> <scenario> [arg]
// Talks to the Rust test (tests/socketio_hub.rs) in lines on stdout: `READY <json>` when the
// test should act (publish to Redis, restart the hub, ...), then one final JSON line with what
// the client observed. Exits 1 with the error on stderr when something times out.
import { io } from "socket.io-client";

const [, , base, scenario, arg] = process.argv;
const TIMEOUT_MS = 10_000;

const ready = (info = {}) => console.log(`READY ${JSON.stringify(info)}`);
const done = (out) => {
  console.log(JSON.stringify(out));
  process.exit(0);
};
setTimeout(() => {
  console.error(`timed out in scenario ${scenario}`);
  process.exit(1);
}, 3 * TIMEOUT_MS).unref();

// Resolves when `count` values were pushed to `list`.
function collect(list, count) {
  return new Promise((resolve) => {
    const check = setInterval(() => {
      if (list.length >= count) {
        clearInterval(check);
        resolve(list);
      }
    }, 10);
  });
}

function once(emitter, event) {
  return new Promise((resolve) => emitter.once(event, (...args) => resolve(args)));
}

function withAck(socket, event, ...args) {
  return new Promise((resolve, reject) =>
    socket.timeout(5000).emit(event, ...args, (err, ...answer) => (err ? reject(err) : resolve(answer))),
  );
}

async function snippet(transport) {
  // The page's helpers, recording what they are given.
  const seen = { toasts: [], aiResults: [], chat: [], pongs: [] };
  const toast = { success: (text) => seen.toasts.push(text) };
  const updateUI = (r) => seen.aiResults.push(r);
  const appendMessage = (m) => seen.chat.push(m);
  const currentUser = { id: 4242 };

  const options = transport === "default" ? {} : { transports: [transport] };
  // ---- the original code (only the URL and the transports option differ) ----
  const socket = io(base, { auth: { userId: currentUser.id }, ...options });
  socket.on('notification', n => toast.success(n.message));
  socket.on('ai-result', r => updateUI(r));
  socket.emit('join-room', 'room-123');
  socket.on('chat-message', m => appendMessage(m));
  const timer = setInterval(() => socket.emit('ping'), 30000);
  // ---------------------------------------------------------------------------
  socket.on("pong", (p) => seen.pongs.push(p));
  socket.io.once("open", () => {
    seen.firstTransport = socket.io.engine.transport.name;
  });
  const [joined] = await once(socket, "joined");
  if (transport === "default" && socket.io.engine.transport.name !== "websocket") {
    await once(socket.io.engine, "upgrade");
  }
  socket.emit("ping");
  await collect(seen.pongs, 1);
  ready({ joined: joined.room });
  // The seed's ChatMessage shape names the room `roomId` (the hub accepts `room` too).
  socket.emit("chat-message", { roomId: "room-123", message: `hello from socket.io over ${transport}` });
  await collect(seen.toasts, 1);
  await collect(seen.aiResults, 1);
  await collect(seen.chat, 2); // the native client's message and our own
  seen.finalTransport = socket.io.engine.transport.name;
  clearInterval(timer);
  socket.close();
  done({ joined, ...seen });
}

async function acks() {
  const socket = io(base, { auth: { userId: "acker", name: "Ack Er" }, transports: ["websocket"] });
  await once(socket, "connect");
  const out = {};
  [out.joined] = await withAck(socket, "join-room", { room: "r-ack" });
  const chat = once(socket, "chat-message"); // the live copy of our own message
  [out.published] = await withAck(socket, "chat-message", { room: "r-ack", message: "hi" });
  [out.notInRoom] = await withAck(socket, "leave-room", "elsewhere");
  [out.badRoom] = await withAck(socket, "join-room", "bad room");
  [out.pong] = await withAck(socket, "ping");
  [out.unknown] = await withAck(socket, "dance", {});
  const error = once(socket, "error");
  socket.emit("chat-message", { room: "nowhere", message: "x" });
  [out.errorEvent] = await error;
  [out.chat] = await chat;
  socket.close();
  done(out);
}

async function refused(token) {
  const socket = io(base, { auth: token ? { token } : {}, reconnection: false });
  const [err] = await once(socket, "connect_error");
  done({ message: err.message, data: err.data });
}

// arg: {"expiring": <token about to expire>, "fresh": <token for another user>}.
async function expiry(arg) {
  const { expiring, later, other } = JSON.parse(arg);
  const socket = io(base, { auth: { token: expiring }, reconnection: false });
  await once(socket, "connect");
  const error = once(socket, "error");
  const disconnect = once(socket, "disconnect");
  // A refresh with the same token is refused (it would not push the expiry back), so is one
  // for another user; one that expires later is accepted.
  const [refusedSame] = await withAck(socket, "auth", { token: expiring });
  const [refusedOther] = await withAck(socket, "auth", { token: other });
  const [refreshed] = await withAck(socket, "auth", { token: later });
  const [expired] = await error;
  const [reason] = await disconnect;
  done({ refusedSame, refreshed, refusedOther, expired, reason });
}

async function reconnect() {
  const socket = io(base, {
    auth: { userId: "phoenix" },
    transports: ["websocket"],
    reconnectionDelay: 100,
    reconnectionDelayMax: 500,
  });
  await once(socket, "connect");
  const first = socket.id;
  const reasons = [];
  socket.on("disconnect", (reason) => reasons.push(reason));
  ready({ first });
  await once(socket, "connect"); // after the hub restarted
  const [joined] = await withAck(socket, "join-room", "after-restart");
  done({ first, second: socket.id, reasons, joinedAfter: joined.room });
}

const scenarios = { snippet, acks, refused, reconnect, expiry };
scenarios[scenario](arg).catch((e) => {
  console.error(e);
  process.exit(1);
});
