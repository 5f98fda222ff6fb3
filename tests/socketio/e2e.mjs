// End-to-end scenarios with the real socket.io-client against a Socket.IO server.
// Usage: node e2e.mjs <base url> <scenario>
// Prints one JSON object with what the client observed and exits 0, or prints the error and
// exits 1. The Rust tests (tests/socketio_client.rs) start the server and check the output.
import { io } from "socket.io-client";

const [, , base, scenario] = process.argv;
const TIMEOUT_MS = 10_000;

function once(emitter, event) {
  return new Promise((resolve) => emitter.once(event, (...args) => resolve(args)));
}

function connected(socket) {
  return new Promise((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("connect_error", reject);
  });
}

// Emits with an ack callback; resolves with every argument of the answer.
function withAck(socket, event, ...args) {
  return new Promise((resolve, reject) =>
    socket.timeout(5000).emit(event, ...args, (err, ...answer) =>
      err ? reject(err) : resolve(answer),
    ),
  );
}

// Binary values (Buffers) as arrays, so that the output is plain JSON.
function plain(value) {
  if (Buffer.isBuffer(value) || value instanceof ArrayBuffer) {
    return { binary: [...new Uint8Array(value)] };
  }
  if (Array.isArray(value)) return value.map(plain);
  if (value && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, plain(v)]));
  }
  return value;
}

// Connects, then checks the echo application: `auth`, `message` -> `message-back`,
// `message-with-ack` -> ack with the same arguments.
async function roundTrip(options, { waitUpgrade = false } = {}) {
  const socket = io(base, { reconnection: false, ...options });
  const out = {};
  // The transport the session opened on, before any upgrade.
  socket.io.once("open", () => {
    out.firstTransport = socket.io.engine.transport.name;
  });
  const auth = once(socket, "auth");
  await connected(socket);
  const engine = socket.io.engine;
  out.auth = (await auth)[0];
  if (waitUpgrade && engine.transport.name !== "websocket") {
    await once(engine, "upgrade");
  }
  const back = once(socket, "message-back");
  socket.emit("message", 1, "2", { 3: [true] });
  out.back = await back;
  out.ack = await withAck(socket, "message-with-ack", "a", { b: [1, null] });
  out.binaryAck = plain(
    await withAck(socket, "message-with-ack", Buffer.from([1, 2, 3]), {
      nested: Buffer.from([4, 5]),
    }),
  );
  const binaryBack = once(socket, "message-back");
  socket.emit("message", Buffer.from([6, 7]));
  out.binaryBack = plain(await binaryBack);
  out.transport = engine.transport.name;
  out.socketId = socket.id;
  socket.disconnect();
  return out;
}

const scenarios = {
  polling: () => roundTrip({ transports: ["polling"], auth: { token: "p" } }),
  websocket: () => roundTrip({ transports: ["websocket"], auth: { token: "w" } }),
  upgrade: () => roundTrip({ auth: { token: "u" } }, { waitUpgrade: true }),
  async custom() {
    const socket = io(`${base}/custom`, { reconnection: false, auth: { userId: 7 } });
    const auth = once(socket, "auth");
    await connected(socket);
    const out = { auth: (await auth)[0] };
    socket.disconnect();
    return out;
  },
  async refused() {
    const socket = io(`${base}/nope`, { reconnection: false, transports: ["websocket"] });
    try {
      await connected(socket);
      return { connected: true };
    } catch (err) {
      return { connectError: err.message };
    } finally {
      socket.disconnect();
    }
  },
};

const run = scenarios[scenario];
if (!run) {
  console.error(`unknown scenario ${scenario}; one of ${Object.keys(scenarios).join(", ")}`);
  process.exit(2);
}
const timer = setTimeout(() => {
  console.error(`scenario ${scenario} timed out`);
  process.exit(1);
}, TIMEOUT_MS);
try {
  const result = await run();
  clearTimeout(timer);
  console.log(JSON.stringify(result));
  process.exit(0);
} catch (err) {
  console.error(`scenario ${scenario} failed: ${err?.stack ?? err}`);
  process.exit(1);
}
