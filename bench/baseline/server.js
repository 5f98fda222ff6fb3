// The baseline for `make bench`: the original Node design the hub replaces — socket.io 4 +
// ioredis, one process, the same Redis channels and event names as the hub (docs/protocol.md), and
// no more than that design had. hub-bench drives it through the Socket.IO protocol over
// WebSocket (/socket.io/?EIO=4&transport=websocket), with dev-mode identities (?userId=).
//
// Environment: PORT (default 3000), REDIS_URL (default redis://127.0.0.1:6379).
'use strict';

const http = require('http');
const { Server } = require('socket.io');
const Redis = require('ioredis');

const port = Number(process.env.PORT || 3000);
const redisUrl = process.env.REDIS_URL || 'redis://127.0.0.1:6379';

// The original design had no health endpoint; this one exists only so that the benchmark can
// wait for readiness and count connections. It deliberately does not count Redis reconnects:
// the original design did not notice them (ioredis reconnects and resubscribes silently).
const stats = { connected: false };

const httpServer = http.createServer((req, res) => {
  if (req.url === '/health') {
    const body = JSON.stringify({
      status: stats.connected ? 'ok' : 'degraded',
      websocket: { connections: io.engine.clientsCount },
      redis: { connected: stats.connected },
    });
    res.writeHead(stats.connected ? 200 : 503, {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(body),
    });
    res.end(body);
    return;
  }
  res.writeHead(404, { 'content-length': 0 });
  res.end();
});

const io = new Server(httpServer, {
  transports: ['websocket'],
  serveClient: false,
  cors: { origin: '*' },
});

// One connection for pub/sub (as in the original design: pattern subscriptions for the
// per-user and per-room channels), one for publishing chat messages.
const sub = new Redis(redisUrl);
const pub = new Redis(redisUrl);

sub.on('ready', () => {
  stats.connected = true;
});
sub.on('close', () => {
  stats.connected = false;
});
sub.on('error', () => {}); // ioredis reconnects by itself; 'close' records the outage

sub.psubscribe('user:notifications:*', 'chat:room:*');
sub.subscribe('ai:results', 'cache:invalidate', 'analytics:events');

const USER_PREFIX = 'user:notifications:';
const ROOM_PREFIX = 'chat:room:';

sub.on('pmessage', (_pattern, channel, message) => {
  let data;
  try {
    data = JSON.parse(message);
  } catch {
    return;
  }
  if (channel.startsWith(USER_PREFIX)) {
    io.to(`user:${channel.slice(USER_PREFIX.length)}`).emit('notification', data);
  } else if (channel.startsWith(ROOM_PREFIX)) {
    io.to(`room:${channel.slice(ROOM_PREFIX.length)}`).emit('chat-message', data);
  }
});

sub.on('message', (channel, message) => {
  let data;
  try {
    data = JSON.parse(message);
  } catch {
    return;
  }
  if (channel === 'ai:results' && data.userId !== undefined) {
    io.to(`user:${data.userId}`).emit('ai-result', data);
  } else if (channel === 'cache:invalidate') {
    io.to('topic:cache').emit('cache-invalidate', data);
  } else if (channel === 'analytics:events') {
    io.to('topic:analytics').emit('analytics', data);
  }
});

io.on('connection', (socket) => {
  const userId = String(socket.handshake.query.userId || '');
  if (!userId) {
    socket.disconnect(true);
    return;
  }
  const username = String(socket.handshake.query.name || userId);
  socket.join(`user:${userId}`);
  socket.emit('connected', { sessionId: socket.id, userId });

  const roomOf = (arg) => (typeof arg === 'string' ? arg : arg && arg.room);

  socket.on('ping', () => socket.emit('pong', { timestamp: Date.now() }));

  socket.on('join-room', (arg) => {
    const room = roomOf(arg);
    if (!room) return socket.emit('error', { code: 'bad_request', message: 'room required' });
    socket.join(`room:${room}`);
    socket.emit('joined', { room, history: [], members: [] });
  });

  socket.on('leave-room', (arg) => {
    const room = roomOf(arg);
    socket.leave(`room:${room}`);
    socket.emit('left', { room });
  });

  socket.on('chat-message', (arg) => {
    const room = arg && arg.room;
    if (!room || !socket.rooms.has(`room:${room}`)) {
      return socket.emit('error', { code: 'not_in_room', message: 'join the room first' });
    }
    const payload = {
      roomId: room,
      userId,
      username,
      message: String(arg.message || ''),
      timestamp: Date.now(),
    };
    pub.publish(`chat:room:${room}`, JSON.stringify(payload)).catch(() => {});
  });

  socket.on('subscribe', (arg) => {
    const topic = typeof arg === 'string' ? arg : arg && arg.topic;
    socket.join(`topic:${topic}`);
    socket.emit('subscribed', { topic });
  });
});

httpServer.listen(port, '127.0.0.1', () => {
  console.log(`socket.io baseline listening on 127.0.0.1:${port}`);
});

const stop = () => {
  io.close();
  sub.disconnect();
  pub.disconnect();
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
