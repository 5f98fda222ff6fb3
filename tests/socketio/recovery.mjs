// Connection state recovery with the real socket.io-client (tests/socketio_recovery.rs).
// Usage: node recovery.mjs <hub url> <url to reconnect to> <user>
// The client joins `room-r`, reports `READY {"phase":"joined"}`, records every notification
// and chat message (with the offset the hub appends as last argument), says `READY live` once
// the first two arrived and, when the test writes `DROP` on stdin, destroys its TCP
// connection (a transport error, not a clean disconnect: the client reconnects by itself);
// after `SHUTDOWN` it waits for the test to stop the hub instead. Its reconnection waits for `GO` (so that the
// test can publish meanwhile), goes to the second url, and the scenario ends once a
// notification titled `end` arrived, printing what it saw as one JSON line.
import { io } from "socket.io-client";
import { createInterface } from "node:readline";

const [, , base, other, user] = process.argv;

const ready = (info) => console.log(`READY ${JSON.stringify(info)}`);
setTimeout(() => {
  console.error("timed out");
  process.exit(1);
}, 30_000).unref();

const commands = createInterface({ input: process.stdin });
const waiting = new Map();
commands.on("line", (line) => waiting.get(line.trim())?.());
const command = (name) => new Promise((resolve) => waiting.set(name, resolve));

const socket = io(base, {
  auth: { userId: user },
  transports: ["websocket"],
  reconnectionDelay: 50,
  reconnectionDelayMax: 100,
});
const manager = socket.io;
// The client's own reconnection, held until the test says GO, then to the other url.
const go = command("GO");
const reconnect = manager.reconnect.bind(manager);
manager.reconnect = () => {
  go.then(() => {
    manager.uri = other;
    reconnect();
  });
  return manager;
};

const seen = [];
let ended;
const end = new Promise((resolve) => (ended = resolve));
socket.on("notification", (n, offset) => {
  seen.push({ event: "notification", title: n.title, offset });
  if (n.title === "end") ended();
});
socket.on("chat-message", (m, offset) => seen.push({ event: "chat-message", message: m.message, offset }));

const once = (emitter, event) => new Promise((resolve) => emitter.once(event, (...a) => resolve(a)));

await once(socket, "connect");
const first = { pid: socket._pid, recovered: socket.recovered };
await new Promise((resolve, reject) =>
  socket.timeout(5000).emit("join-room", "room-r", (err, joined) => (err ? reject(err) : resolve(joined))),
);
ready({ phase: "joined", pid: first.pid });
// The test publishes one notification and one chat message live.
await new Promise((resolve) => {
  const check = setInterval(() => seen.length >= 2 && (clearInterval(check), resolve()), 10);
});

const reasons = [];
socket.on("disconnect", (reason) => reasons.push(reason));
const dropped = once(socket, "disconnect");
ready({ phase: "live" });
// DROP: the test wants the connection cut; SHUTDOWN: the test stops the hub instead.
const how = await Promise.race([command("DROP").then(() => "drop"), command("SHUTDOWN").then(() => "shutdown")]);
if (how === "drop") manager.engine.transport.ws._socket.destroy();
await dropped;
ready({ phase: "dropped", offset: socket._lastOffset });

await once(socket, "connect");
const second = { pid: socket._pid, recovered: socket.recovered };
ready({ phase: "reconnected", recovered: socket.recovered });
await end;
const out = JSON.stringify({ first, second, reasons, seen });
socket.disconnect();
console.log(out);
process.exit(0);
