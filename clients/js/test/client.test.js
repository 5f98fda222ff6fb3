// The client's logic against a scripted in-memory socket (the Chromium tests in
// tests/client_browser.rs run it against real hubs): what it sends when it connects, joins and
// reconnects, what it delivers, and what each close code leads to.
import assert from 'node:assert/strict';
import { afterEach, test } from 'node:test';
import { RelayHub } from '../src/relay-hub.js';

/** A WebSocket the test plays the hub for. */
class FakeSocket {
  static all = [];
  constructor(url) {
    this.url = new URL(url);
    this.sent = [];
    this.closed = null;
    FakeSocket.all.push(this);
    queueMicrotask(() => this.onopen?.());
  }
  send(text) { this.sent.push(JSON.parse(text)); }
  close(code, reason) { this.closed = { code, reason }; }
  /** The hub sends `frame`. */
  push(frame) { this.onmessage?.({ data: JSON.stringify(frame) }); }
  /** The connection ends with `code`. */
  end(code, reason = '') { this.onclose?.({ code, reason }); }
  /** The last frame sent of `type`. */
  last(type) { return this.sent.filter((f) => f.type === type).at(-1); }
}

const tick = () => new Promise((r) => setTimeout(r, 0));
async function until(what, check) {
  for (let i = 0; i < 500; i++) {
    const v = check();
    if (v) return v;
    await new Promise((r) => setTimeout(r, 2));
  }
  throw new Error(`timed out waiting for ${what}`);
}
const nextSocket = (n) => until(`socket ${n}`, () => FakeSocket.all[n]);

/** Every client a test made: disconnected after it, so that no timer outlives the test. */
const made = [];
afterEach(() => { for (const hub of made.splice(0)) hub.disconnect(); });

/** Connects `hub` (a resumable session, token `tok`) and has it join `room` with no history. */
async function inRoom(hub, room) {
  hub.joinRoom(room);
  hub.connect();
  const ws = await nextSocket(0);
  ws.push({ type: 'connected', sessionId: 's-1', userId: 'u1', resume: 'tok' });
  ws.push({ type: 'joined', room, id: ws.last('join-room').id, history: [], members: [], memberCount: 0 });
  await tick();
  return ws;
}

function client(options = {}) {
  FakeSocket.all = [];
  const hub = new RelayHub('ws://hub.test/ws', {
    userId: 'u1', WebSocket: FakeSocket, minReconnectDelay: 1, maxReconnectDelay: 2, pingInterval: 0, ...options,
  });
  made.push(hub);
  const log = [];
  for (const e of ['state', 'connected', 'disconnected', 'joined', 'notification', 'chat-message', 'presence', 'ai-chunk', 'error']) {
    hub.on(e, (payload) => log.push([e, payload]));
  }
  return { hub, log, events: (type) => log.filter(([e]) => e === type).map(([, p]) => p) };
}

test('dev mode: userId and resume in the query; rooms joined after connected', async () => {
  const { hub, events } = client({ name: 'Alice' });
  const joined = hub.joinRoom('r1');
  hub.connect();
  const ws = await nextSocket(0);
  assert.equal(ws.url.searchParams.get('userId'), 'u1');
  assert.equal(ws.url.searchParams.get('name'), 'Alice');
  assert.equal(ws.url.searchParams.get('resume'), 'true');
  assert.equal(ws.sent.length, 0, 'nothing before connected');
  ws.push({ type: 'connected', sessionId: 's-1', userId: 'u1', resume: 'tok' });
  assert.equal(hub.state, 'connected');
  const join = ws.last('join-room');
  assert.deepEqual({ ...join, id: 0 }, { type: 'join-room', room: 'r1', id: 0 });
  ws.push({ type: 'joined', room: 'r1', id: join.id, history: [{ id: '1-0', roomId: 'r1', message: 'old' }], members: [{ userId: 'u1', username: 'u1' }], memberCount: 1 });
  await tick();
  const info = await joined;
  assert.equal(info.missed, 1);
  assert.equal(info.rejoin, false);
  assert.deepEqual(events('chat-message').map((m) => m.message), ['old']);
});

test('a drop: resumes with the token and last offset; repeats by offset and id are dropped', async () => {
  const { hub, events } = client();
  let ws = await inRoom(hub, 'r1');
  ws.push({ type: 'notification', data: { inboxId: '5-0', title: 'n1' }, offset: 1 });
  ws.push({ type: 'chat-message', data: { id: '6-0', roomId: 'r1', message: 'c1' }, offset: 2 });
  ws.end(1006);
  assert.equal(hub.state, 'connecting');
  ws = await nextSocket(1);
  assert.equal(ws.url.searchParams.get('resume'), 'tok');
  assert.equal(ws.url.searchParams.get('offset'), '2');
  assert.equal(ws.url.searchParams.get('since'), '5-0');
  ws.push({ type: 'connected', sessionId: 's-2', userId: 'u1', resume: 'tok', resumed: true });
  ws.push({ type: 'chat-message', data: { id: '6-0', roomId: 'r1', message: 'c1' }, offset: 2 }); // repeat
  ws.push({ type: 'notification', data: { inboxId: '7-0', title: 'n2' }, offset: 3 });
  const rejoin = ws.last('join-room');
  assert.equal(rejoin.since, '6-0', 'rooms are joined again with since, for the member list');
  ws.push({ type: 'joined', room: 'r1', id: rejoin.id, history: [{ id: '6-0', roomId: 'r1', message: 'c1' }], members: [], memberCount: 0, recovered: true });
  await tick();
  ws.push({ type: 'chat-message', data: { id: '8-0', roomId: 'r1', message: 'c2' }, offset: 4 });
  assert.deepEqual(events('notification').map((n) => n.title), ['n1', 'n2']);
  assert.deepEqual(events('chat-message').map((m) => m.message), ['c1', 'c2']);
  assert.deepEqual(events('connected').map((c) => c.resumed), [false, true]);
});

test('a joined with an offset moves the resume offset like an event', async () => {
  const { hub } = client();
  let ws = await inRoom(hub, 'r1');
  ws.push({ type: 'notification', data: { inboxId: '5-0', title: 'n1' }, offset: 1 });
  hub.joinRoom('r2');
  ws.push({ type: 'joined', room: 'r2', id: ws.last('join-room').id, history: [], members: [], memberCount: 0, offset: 2 });
  await tick();
  ws.end(1006);
  ws = await nextSocket(1);
  assert.equal(ws.url.searchParams.get('offset'), '2');
});

test('not resumed: falls back to since for the inbox and every room, and stays exact', async () => {
  const { hub, events } = client();
  hub.joinRoom('r1');
  hub.connect();
  let ws = await nextSocket(0);
  ws.push({ type: 'connected', sessionId: 's-1', userId: 'u1', resume: 'tok' });
  ws.push({ type: 'joined', room: 'r1', id: ws.last('join-room').id, history: [{ id: '1-0', roomId: 'r1', message: 'a' }], members: [], memberCount: 0 });
  await tick();
  ws.push({ type: 'notification', data: { inboxId: '2-0', title: 'n1' }, offset: 1 });
  ws.end(1001, 'server shutting down');
  ws = await nextSocket(1);
  ws.push({ type: 'connected', sessionId: 's-2', userId: 'u1', resume: 'new', resumed: false, recovered: true });
  ws.push({ type: 'notification', data: { inboxId: '2-0', title: 'n1' }, offset: 1 }); // the inbox replays from since: a copy
  ws.push({ type: 'notification', data: { inboxId: '3-0', title: 'n2' }, offset: 2 });
  const join = ws.last('join-room');
  assert.equal(join.since, '1-0');
  ws.push({ type: 'joined', room: 'r1', id: join.id, history: [{ id: '4-0', roomId: 'r1', message: 'b' }], members: [], memberCount: 0, recovered: true });
  await tick();
  assert.deepEqual(events('notification').map((n) => n.title), ['n1', 'n2']);
  assert.deepEqual(events('chat-message').map((m) => m.message), ['a', 'b']);
  const joins = events('joined');
  assert.deepEqual(joins.map((j) => [j.rejoin, j.missed, j.recovered]), [[false, 1, undefined], [true, 1, true]]);
});

test('a socket closed on purpose by the hub (a code outside 1xxx, 4001, 4002) is not reconnected', async () => {
  const { hub, events } = client();
  hub.connect();
  const ws = await nextSocket(0);
  ws.push({ type: 'connected', sessionId: 's-1', userId: 'u1' });
  ws.end(4003, 'replaced');
  assert.equal(hub.state, 'disconnected');
  assert.deepEqual(events('disconnected'), [{ code: 4003, reason: 'replaced' }]);
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(FakeSocket.all.length, 1, 'no second socket');
});

test('a failed attempt moves to the next URL; a drop retries the same one first', async () => {
  FakeSocket.all = [];
  const hub = new RelayHub(['ws://a.test/ws', 'ws://b.test/ws'], {
    userId: 'u1', WebSocket: FakeSocket, minReconnectDelay: 1, maxReconnectDelay: 2, pingInterval: 0,
  });
  hub.connect();
  (await nextSocket(0)).end(1006);
  const b = await nextSocket(1);
  assert.equal(b.url.host, 'b.test');
  b.push({ type: 'connected', sessionId: 's', userId: 'u1' });
  b.end(1006);
  assert.equal((await nextSocket(2)).url.host, 'b.test');
  hub.disconnect();
});

test('token mode: the token goes in the auth frame; refused (4001) -> getToken again', async () => {
  let calls = 0;
  const { hub, events } = client({ userId: undefined, getToken: async () => `t${++calls}` });
  hub.connect();
  let ws = await nextSocket(0);
  await until('auth', () => ws.last('auth'));
  assert.deepEqual(ws.last('auth'), { type: 'auth', token: 't1', resume: true });
  assert.equal(ws.url.search, '', 'nothing in the URL');
  ws.push({ type: 'error', code: 'unauthorized', message: 'invalid credentials: token expired' });
  ws.end(4001, 'invalid token');
  ws = await nextSocket(1);
  await until('auth', () => ws.last('auth'));
  assert.equal(ws.last('auth').token, 't2');
  ws.push({ type: 'connected', sessionId: 's', userId: 7 });
  assert.equal(hub.state, 'connected');
  assert.equal(events('error')[0].code, 'unauthorized');
});

test('a fixed token that is refused stops the client', async () => {
  const { hub } = client({ userId: undefined, token: 'fixed' });
  hub.connect();
  const ws = await nextSocket(0);
  await until('auth', () => ws.last('auth'));
  ws.end(4001, 'invalid token');
  assert.equal(hub.state, 'disconnected');
});

test('before expiry the token is refreshed on the live session', async () => {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const jwt = (ttlMs) => `${b64({ alg: 'HS256' })}.${b64({ sub: '1', exp: (Date.now() + ttlMs) / 1000 })}.s`;
  let calls = 0;
  const { hub } = client({ userId: undefined, getToken: () => { calls += 1; return jwt(150); } });
  const refreshed = [];
  hub.on('token-refreshed', (r) => refreshed.push(r));
  hub.connect();
  const ws = await nextSocket(0);
  await until('auth', () => ws.last('auth'));
  ws.push({ type: 'connected', sessionId: 's', userId: 1 });
  const auth = await until('a refresh', () => ws.sent.find((f) => f.type === 'auth' && f.id !== undefined));
  assert.equal(calls, 2);
  ws.push({ type: 'token-refreshed', expiresAt: 1, id: auth.id });
  await until('the event', () => refreshed.length);
  assert.equal(FakeSocket.all.length, 1, 'the same connection');
  hub.disconnect();
});

test('joins refused by the hub reject and drop the room; unavailable is retried', async () => {
  const { hub, events } = client();
  hub.connect();
  const ws = await nextSocket(0);
  ws.push({ type: 'connected', sessionId: 's', userId: 'u1' });
  const secret = hub.joinRoom('secret', { token: () => 'room-jwt' });
  await until('join', () => ws.last('join-room'));
  const join = ws.last('join-room');
  assert.equal(join.token, 'room-jwt');
  ws.push({ type: 'error', code: 'forbidden', message: 'private room', id: join.id });
  await assert.rejects(secret, (e) => e.code === 'forbidden' && e.room === 'secret');
  assert.deepEqual(hub.rooms, []);
  assert.equal(events('error')[0].code, 'forbidden');

  const busy = hub.joinRoom('busy');
  const first = await until('join', () => ws.sent.find((f) => f.room === 'busy'));
  ws.push({ type: 'error', code: 'unavailable', message: 'retry', id: first.id });
  const second = await until('retry', () => ws.sent.filter((f) => f.room === 'busy')[1]);
  ws.push({ type: 'joined', room: 'busy', id: second.id, history: [], members: [], memberCount: 0 });
  await tick();
  assert.equal((await busy).room, 'busy');
});

test('events of rooms left are not delivered; a room left while away is left after a resume', async () => {
  const { hub, events } = client();
  let ws = await inRoom(hub, 'r1');
  ws.end(1006);
  await hub.leaveRoom('r1');
  ws = await nextSocket(1);
  ws.push({ type: 'connected', sessionId: 's2', userId: 'u1', resume: 'tok', resumed: true });
  assert.deepEqual({ ...ws.last('leave-room'), id: 0 }, { type: 'leave-room', room: 'r1', id: 0 });
  ws.push({ type: 'chat-message', data: { id: '9-0', roomId: 'r1', message: 'late' }, offset: 1 });
  ws.push({ type: 'presence', room: 'r1', event: 'join', userId: 'x', username: 'x', offset: 2 });
  assert.deepEqual(events('chat-message'), []);
  assert.deepEqual(events('presence'), []);
  assert.equal(ws.last('join-room'), undefined);
});

test('ai-chunk: repeats by seq dropped; any other event type is emitted by its name', async () => {
  const { hub, events } = client();
  const other = [];
  hub.on('inbox-state', (data, frame) => other.push([data, frame.type]));
  hub.connect();
  const ws = await nextSocket(0);
  ws.push({ type: 'connected', sessionId: 's', userId: 'u1' });
  for (const seq of [1, 2, 2, 3, 1]) ws.push({ type: 'ai-chunk', data: { jobId: 'j', seq, delta: `d${seq}` } });
  ws.push({ type: 'inbox-state', data: { unread: 3 } });
  assert.deepEqual(events('ai-chunk').map((c) => c.delta), ['d1', 'd2', 'd3']);
  assert.deepEqual(other, [[{ unread: 3 }, 'inbox-state']]);
});

test('merged ai-chunk: applied whole when it follows what was seen; one that overlaps is replaced by the text after it', async () => {
  const { hub } = client();
  const text = [];
  hub.on('ai-chunk', (c) => text.push(c.delta));
  hub.connect();
  const ws = await nextSocket(0);
  ws.push({ type: 'connected', sessionId: 's', userId: 'u1' });
  await tick();
  ws.push({ type: 'ai-chunk', data: { jobId: 'j', seq: 1, delta: 'a' } });
  ws.push({ type: 'ai-chunk', data: { jobId: 'j', seq: 3, from: 2, delta: 'bc' } });
  ws.push({ type: 'ai-chunk', data: { jobId: 'j', seq: 3, from: 2, delta: 'bc' } });
  assert.deepEqual(text, ['a', 'bc'], 'a merged chunk once');
  assert.equal(ws.last('watch-job'), undefined);
  // 4 and 5 came from a `watch-job` answer; the live chunks 4..7 were merged meanwhile.
  const first = hub.watchJob('j');
  let ask = await until('watch-job sent', () => ws.last('watch-job'));
  ws.push({ type: 'job-watched', id: ask.id, jobId: 'j', state: 'running', seq: 5,
    chunks: [{ seq: 4, delta: 'd' }, { seq: 5, delta: 'e' }] });
  await first;
  ws.push({ type: 'ai-chunk', data: { jobId: 'j', seq: 7, from: 4, delta: 'defg' } });
  ask = await until('the text after 5 asked for', () => ws.sent.find((f) => f.type === 'watch-job' && f.after === 5));
  ws.push({ type: 'job-watched', id: ask.id, jobId: 'j', state: 'running', seq: 7,
    chunks: [{ seq: 6, delta: 'f' }, { seq: 7, delta: 'g' }] });
  await until('the text caught up', () => text.length === 6);
  ws.push({ type: 'ai-chunk', data: { jobId: 'j', seq: 9, from: 8, delta: 'hi' } });
  assert.equal(text.join(''), 'abcdefghi', 'the whole text, once and in order');
});

test('no pong in time: the connection counts as dropped and is replaced', async () => {
  const { hub } = client({ pingInterval: 5, requestTimeout: 20 });
  hub.connect();
  const ws = await nextSocket(0);
  ws.push({ type: 'connected', sessionId: 's', userId: 'u1' });
  await until('a ping', () => ws.last('ping'));
  await nextSocket(1);
  assert.ok(ws.closed, 'the silent socket was closed');
  hub.disconnect();
});

test('disconnect(): a goodbye close, no reconnect, waiting joins rejected', async () => {
  const { hub, events } = client();
  hub.connect();
  const ws = await nextSocket(0);
  const pending = hub.joinRoom('r1');
  hub.disconnect();
  await assert.rejects(pending, (e) => e.code === 'disconnected');
  assert.deepEqual(ws.closed, { code: 1000, reason: 'client disconnect' });
  assert.deepEqual(events('state').map((s) => s.to), ['connecting', 'disconnected']);
  await tick();
  assert.equal(FakeSocket.all.length, 1);
  assert.deepEqual(hub.rooms, ['r1'], 'kept for the next connect()');
});

test('watchJob: the text so far, then live chunks held meanwhile, each once and in order', async () => {
  const { hub, log } = client();
  hub.on('ai-chunk', (c) => log.push(`${c.seq}:${c.delta}`));
  hub.connect();
  const ws = await nextSocket(0);
  ws.push({ type: 'connected', sessionId: 's-1', userId: 'u1' });
  await tick();
  ws.push({ type: 'ai-chunk', data: { jobId: 'j', seq: 1, delta: 'a' } });
  const watched = hub.watchJob('j');
  const ask = await until('watch-job sent', () => ws.last('watch-job'));
  assert.deepEqual([ask.jobId, ask.after], ['j', 1]);
  // live chunks 3 and 4 arrive before the answer, which covers 2 and 3
  ws.push({ type: 'ai-chunk', data: { jobId: 'j', seq: 3, delta: 'c' } });
  ws.push({ type: 'ai-chunk', data: { jobId: 'j', seq: 4, delta: 'd' } });
  ws.push({ type: 'job-watched', id: ask.id, jobId: 'j', state: 'running', seq: 3,
    chunks: [{ seq: 2, delta: 'b' }, { seq: 3, delta: 'c' }] });
  assert.equal((await watched).state, 'running');
  ws.push({ type: 'ai-chunk', data: { jobId: 'j', seq: 4, delta: 'd' } });
  ws.push({ type: 'ai-chunk', data: { jobId: 'j', seq: 5, delta: 'e' } });
  assert.deepEqual(log.filter((l) => /^\d:/.test(l)), ['1:a', '2:b', '3:c', '4:d', '5:e']);
  const cancel = hub.cancelJob('j');
  const sent = await until('cancel-job sent', () => ws.last('cancel-job'));
  ws.push({ type: 'job-cancel', id: sent.id, jobId: 'j', status: 'cancelled' });
  assert.equal((await cancel).status, 'cancelled');
});
