// An example streaming worker: answers `node_story` jobs word by word.
//   REDIS_URL=redis://127.0.0.1:6379 node examples/streaming-worker.js
import Redis from 'ioredis';
import { Queue, Worker } from '../index.js';

const WORDS = 'once upon a time a small worker streamed its answer to the browser'.split(' ');

/** Yields `payload.words` words, one every `payload.delayMs` ms, until cancelled. */
export async function* story(job) {
  const n = Number(job.payload.words ?? 10);
  const delay = Number(job.payload.delayMs ?? 0);
  for (let i = 0; i < n && !job.signal.aborted; i++) {
    yield (i ? ' ' : '') + WORDS[i % WORDS.length];
    await new Promise((r) => setTimeout(r, delay));
  }
}

export function start({ url = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', ...options } = {}) {
  const redis = new Redis(url);
  const worker = new Worker(new Queue(redis), options).handle('node_story', story);
  const done = worker.run().finally(() => redis.disconnect());
  return { worker, done };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { worker } = start({ consumer: process.env.WORKER_ID });
  for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => worker.stop());
}
