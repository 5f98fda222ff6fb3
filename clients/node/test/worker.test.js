// The Node worker and enqueue against a private redis-server and two real hubs.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import Redis from 'ioredis';
import { Queue } from '../index.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const HUB = process.env.RELAY_HUB_BIN ?? path.join(root, 'target/debug/relay-hub');
const children = [];
after(() => children.forEach((c) => c.kill('SIGKILL')));

const freePort = () => new Promise((resolve) => {
  const s = net.createServer().listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
});
async function listening(port) {
  for (let i = 0; i < 400; i++) {
    const ok = await new Promise((r) => net.connect(port, '127.0.0.1').on('connect', function () { this.end(); r(true); }).on('error', () => r(false)));
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`nothing listens on ${port}`);
}
function run(cmd, args, env) {
  const c = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'inherit'] });
  children.push(c);
  return c;
}
async function stack() {
  const rport = await freePort();
  run('redis-server', ['--port', rport, '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no']);
  await listening(rport);
  const url = `redis://127.0.0.1:${rport}`;
  const hubs = [];
  for (let i = 0; i < 2; i++) {
    const port = await freePort();
    run(HUB, [], { PORT: port, HUB_HOST: '127.0.0.1', REDIS_URL: url, HUB_AUTH: 'dev', RUST_LOG: 'error' });
    await listening(port);
    hubs.push(port);
  }
  return { url, hubs, redis: new Redis(url) };
}
function worker(url, id) {
  const code = `import { start } from './examples/streaming-worker.js'; start({ url: '${url}', consumer: '${id}', visibilityMs: 600 });`;
  const c = spawn(process.execPath, ['--input-type=module', '-e', code], { cwd: path.dirname(fileURLToPath(import.meta.url)) + '/..', stdio: ['ignore', 'ignore', 'inherit'] });
  children.push(c);
  return c;
}
/**
 * A session over `ws` whose messages `decode` turns into frames (`{type, data}`, or null for
 * none): `next(types)` resolves the next frame of one of `types`.
 */
async function frames(ws, decode, send) {
  const queue = [];
  let wake = () => {};
  ws.onmessage = (e) => { const f = decode(e.data); if (f) { queue.push(f); wake(); } };
  await new Promise((r, j) => { ws.onopen = r; ws.onerror = j; });
  const next = async (types) => {
    for (;;) {
      const i = queue.findIndex((f) => types.includes(f.type));
      if (i >= 0) return queue.splice(0, i + 1).pop();
      await new Promise((r) => { wake = r; });
    }
  };
  return { ws, next, send };
}
/** A native WebSocket session of `user`. */
async function session(port, user) {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/ws?userId=${user}`);
  const s = await frames(ws, (data) => JSON.parse(data), (f) => ws.send(JSON.stringify(f)));
  await s.next(['connected']);
  return s;
}
/**
 * A Socket.IO session of `user` over a bare WebSocket (Engine.IO 4): each event
 * `42["name",data]` becomes the frame `{type: name, data}`, as native frames are; pings are
 * answered.
 */
async function socketIoSession(port, user) {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/socket.io/?EIO=4&transport=websocket`);
  const decode = (packet) => {
    if (packet.startsWith('0')) ws.send(`40${JSON.stringify({ userId: user })}`);
    else if (packet === '2') ws.send('3');
    else if (packet.startsWith('40')) return { type: 'connected', data: JSON.parse(packet.slice(2)) };
    else if (packet.startsWith('42')) { const [type, data] = JSON.parse(packet.slice(2)); return { type, data }; }
    return null;
  };
  const send = ({ type, ...data }) => ws.send(`42${JSON.stringify([type, data])}`);
  const s = await frames(ws, decode, send);
  await s.next(['connected']);
  return s;
}
async function advertised(redis) {
  for (let i = 0; i < 200 && (await redis.zscore('jobs:types', 'node_story')) === null; i++) {
    await new Promise((r) => setTimeout(r, 50));
  }
}
/** The job's text until its ai-result, following retries: [text, result, attempts]. */
async function textOf(s, jobId) {
  let text = '', seq = 0;
  const attempts = [];
  for (;;) {
    const f = await s.next(['ai-chunk', 'ai-result', 'job-state']);
    if (f.data.jobId !== jobId) continue;
    if (f.type === 'job-state') { if (f.data.state === 'running') { attempts.push(f.data.attempt); text = ''; seq = f.data.seq; } continue; }
    if (f.type === 'ai-result') return [text, f.data, attempts];
    assert.equal(f.data.seq, seq + 1);
    seq = f.data.seq; text += f.data.delta;
  }
}

test('the example worker streams to sessions on two hubs', async () => {
  const { url, hubs, redis } = await stack();
  worker(url, 'node-1');
  await advertised(redis);
  // A native session on one instance, a Socket.IO one on the other.
  const [one, two] = [await session(hubs[0], 'n1'), await socketIoSession(hubs[1], 'n1')];
  const queue = new Queue(redis);
  const { id } = await queue.enqueue('node_story', 'n1', { words: 12, delayMs: 5 });
  const [[t1, r1], [t2, r2]] = await Promise.all([textOf(one, id), textOf(two, id)]);
  const expected = 'once upon a time a small worker streamed its answer to the';
  assert.equal(t1, expected);
  assert.equal(t2, expected);
  assert.deepEqual(r1, r2);
  assert.deepEqual([r1.status, r1.result, r1.chunks], ['success', { text: expected }, 12]);
  assert.equal((await queue.enqueue('node_story', 'n1', {}, { id })).duplicate, true);
  one.ws.close(); two.ws.close(); redis.disconnect();
});

test("a killed worker's job finishes on another, from the start", async () => {
  const { url, hubs, redis } = await stack();
  const first = worker(url, 'node-killed');
  await advertised(redis);
  const s = await session(hubs[0], 'n2');
  const { id } = await new Queue(redis).enqueue('node_story', 'n2', { words: 30, delayMs: 20 });
  while ((await s.next(['ai-chunk'])).data.seq < 3);
  first.kill('SIGKILL');
  worker(url, 'node-second');
  const [text, result, attempts] = await textOf(s, id);
  assert.deepEqual(attempts, [2]);
  assert.equal(result.status, 'success');
  assert.equal(text.split(' ').length, 30);
  const state = await new Queue(redis).status(id);
  assert.deepEqual([state.state, state.attempts, state.worker], ['done', '2', 'node-second']);
  s.ws.close(); redis.disconnect();
});

test('cancel from the session stops the handler; enqueue refuses unserved types', async () => {
  const { url, hubs, redis } = await stack();
  worker(url, 'node-c');
  await advertised(redis);
  const s = await session(hubs[1], 'n3');
  const queue = new Queue(redis);
  const { id } = await queue.enqueue('node_story', 'n3', { words: 1000, delayMs: 20 });
  await s.next(['ai-chunk']);
  s.send({ type: 'cancel-job', jobId: id });
  const got = {};
  while (Object.keys(got).length < 2) { const f = await s.next(['job-cancel', 'ai-result']); got[f.type] = f; }
  assert.equal(got['job-cancel'].status, 'cancelled');
  assert.equal(got['ai-result'].data.status, 'cancelled');
  assert.equal(await queue.cancel(id), 'finished');
  assert.equal((await queue.status(id)).state, 'cancelled');
  await assert.rejects(queue.enqueue('nobody', 1, {}), /no worker handles job type `nobody`/);
  assert.equal((await queue.enqueue('nobody', 1, {}, { waitForWorker: true })).status, 'queued');
  s.ws.close(); redis.disconnect();
});
