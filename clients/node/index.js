// relay-hub AI jobs from Node: enqueue, and workers that stream their answers, over the job
// queue's Redis functions (docs/jobs.md, "The worker protocol"), which every hub loads.
import { randomUUID } from 'node:crypto';
import os from 'node:os';

const NAME = /^[A-Za-z0-9:_.-]{1,128}$/;
const DAY_MS = 24 * 3600 * 1000;
/** Ms between a worker's cancellation checks (one call for all its running jobs). */
export const CHECK_EVERY_MS = 50;

/** The job was cancelled: stop, record nothing. */
export class JobCancelled extends Error {}
/** Another worker took the job over: stop, record nothing. */
export class LeaseLost extends Error {}
/** A handler failure; `permanent` ones are dead-lettered without retries. */
export class JobError extends Error {
  constructor(message, { permanent = false } = {}) {
    super(message);
    this.permanent = permanent;
  }
}

export class Queue {
  /** @param redis an ioredis client (Redis or Cluster); prefix `{jobs}` on a cluster. */
  constructor(redis, { prefix = 'jobs', stateTtlMs = DAY_MS } = {}) {
    this.redis = redis;
    this.prefix = prefix;
    this.stateTtlMs = stateTtlMs;
  }

  /** `FCALL fn 1 <prefix> ...args`. */
  call(fn, ...args) {
    return this.redis.call('FCALL', fn, 1, this.prefix, ...args.map(String));
  }

  async enqueue(type, userId, payload, { id = randomUUID(), priority = 'normal', waitForWorker = false, ...extra } = {}) {
    if (payload === undefined || payload === null) throw new TypeError('payload is required');
    if (!NAME.test(id) || !NAME.test(type)) throw new TypeError('ids and types are 1-128 characters of A-Z a-z 0-9 : _ . -');
    if (!['high', 'normal', 'low'].includes(priority)) throw new TypeError('priority must be high, normal or low');
    const job = { timestamp: Date.now(), ...extra, id, type, userId, payload, priority };
    const reply = await this.call('relay_job_enqueue', id, type, JSON.stringify(userId), priority,
      JSON.stringify(job), this.stateTtlMs, 30000, waitForWorker ? 0 : DAY_MS);
    if (reply[0] === 'unknown') {
      throw new Error(`no worker handles job type \`${type}\` (known types: ${reply.slice(1).join(', ') || 'none'})`);
    }
    return reply[0] === 'duplicate'
      ? { status: 'queued', id, duplicate: true }
      : { status: 'queued', id, workerLive: reply[2] === '1' };
  }

  /** `cancelled`, `finished`, `unknown` or `forbidden` (with `user`, not theirs). */
  async cancel(id, user = '') {
    return (await this.call('relay_job_cancel', id, user))[0];
  }

  /** The job's state hash, or null. */
  async status(id) {
    const h = await this.redis.hgetall(`${this.prefix}:job:${id}`);
    return Object.keys(h).length ? h : null;
  }

  async advertise(types) {
    await this.call('relay_job_advertise', DAY_MS, ...types);
  }
}

/** A claimed job, as its handler sees it. */
export class Job {
  constructor(queue, reply) {
    const body = JSON.parse(reply[3]);
    Object.assign(this, {
      id: reply[7], type: reply[8], userId: body.userId, payload: body.payload,
      priority: reply[1], attempt: Number(reply[4]), job: body, lease: reply[5],
    });
    this.queue = queue;
    this.controller = new AbortController();
  }

  /** Aborted when the job is cancelled (or taken over). */
  get signal() {
    return this.controller.signal;
  }

  /** Streams a chunk to the user; resolves to its seq. */
  async emit(delta) {
    const seq = Number(await this.queue.call('relay_job_chunk', this.id, this.lease, delta));
    if (seq === -1) {
      this.controller.abort(new JobCancelled(this.id));
      throw new JobCancelled(this.id);
    }
    if (seq === 0) throw new LeaseLost(this.id);
    return seq;
  }
}

const sleep = (ms, signal) => new Promise((resolve) => {
  const wake = () => { clearTimeout(t); resolve(); };
  const t = setTimeout(() => { signal?.removeEventListener('abort', wake); resolve(); }, ms);
  signal?.addEventListener('abort', wake, { once: true });
});

export class Worker {
  constructor(queue, { consumer = `node-${os.hostname()}-${process.pid}`, concurrency = 4, visibilityMs = 30000,
    maxAttempts = 3, retryBackoffMs = 1000 } = {}) {
    Object.assign(this, { queue, consumer, concurrency: Math.max(1, concurrency),
      visibilityMs: Math.max(30, visibilityMs), maxAttempts: Math.max(1, maxAttempts), retryBackoffMs });
    this.handlers = new Map();
    this.running = new Map();
    this.stopping = new AbortController();
  }

  /** A handler: `async (job) => result`, or `async function* (job)` yielding text chunks. */
  handle(type, handler) {
    this.handlers.set(type, handler);
    return this;
  }

  /** Claims nothing more; running jobs are released (given back, not counted). */
  stop() {
    this.stopping.abort();
  }

  async run() {
    const types = [...this.handlers.keys()].sort();
    const waiter = this.queue.redis.duplicate();
    const stop = this.stopping.signal;
    const tasks = new Set();
    const advertise = async () => {
      while (!stop.aborted) {
        await this.queue.advertise(types).catch((e) => console.warn(`worker ${this.consumer}: ${e}`));
        await sleep(5000, stop);
      }
    };
    const watch = async () => {
      while (!stop.aborted) {
        await sleep(CHECK_EVERY_MS, stop);
        const jobs = [...this.running.values()];
        if (!jobs.length) continue;
        const args = jobs.flatMap((j) => [j.id, j.lease]);
        const states = await this.queue.redis.call('FCALL_RO', 'relay_job_check', 1, this.queue.prefix, ...args)
          .catch(() => []);
        states.forEach((s, i) => { if (s !== 'running') jobs[i].controller.abort(new JobCancelled(jobs[i].id)); });
      }
    };
    const background = [advertise(), watch()];
    try {
      while (!stop.aborted) {
        while (tasks.size >= this.concurrency && !stop.aborted) await Promise.race([...tasks, sleep(1000, stop)]);
        if (stop.aborted) break;
        const reply = await this.queue.call('relay_job_claim', this.consumer, this.visibilityMs, this.maxAttempts,
          this.queue.stateTtlMs, 10000, ...types);
        if (reply[0] === 'job') {
          const task = this.attempt(new Job(this.queue, reply)).finally(() => tasks.delete(task));
          tasks.add(task);
          continue;
        }
        const p = this.queue.prefix;
        await Promise.race([
          waiter.xread('COUNT', 1, 'BLOCK', 1000, 'STREAMS', `${p}:stream:high`, `${p}:stream:normal`,
            `${p}:stream:low`, ...reply.slice(1, 4)),
          sleep(1100, stop),
        ]);
      }
    } finally {
      for (const job of this.running.values()) {
        job.controller.abort(new Error('released'));
        await this.queue.call('relay_job_release', job.id, job.lease, this.visibilityMs, this.queue.stateTtlMs);
      }
      await Promise.allSettled([...tasks, ...background]);
      await this.queue.call('relay_job_retire', this.consumer);
      waiter.disconnect();
    }
  }

  async attempt(job) {
    const q = this.queue;
    this.running.set(job.id, job);
    const started = Date.now();
    const renew = setInterval(async () => {
      const s = await q.call('relay_job_renew', job.id, job.lease, q.stateTtlMs).catch(() => 'ok');
      if (s !== 'ok') job.controller.abort(new JobCancelled(job.id));
    }, this.visibilityMs / 3);
    try {
      const aborted = new Promise((resolve) => job.signal.addEventListener('abort', () => resolve(ABORTED), { once: true }));
      const result = await Promise.race([this.call(job), aborted]);
      if (result === ABORTED || job.signal.aborted) return;
      await q.call('relay_job_complete', job.id, job.lease, JSON.stringify(result ?? null), Date.now() - started, q.stateTtlMs);
    } catch (err) {
      if (err instanceof JobCancelled || err instanceof LeaseLost || job.signal.aborted) return;
      const permanent = err instanceof JobError && err.permanent;
      const backoff = Math.min(this.retryBackoffMs * 2 ** (job.attempt - 1), this.visibilityMs);
      await q.call('relay_job_fail', job.id, job.lease, String(err?.message ?? err), permanent ? 1 : 0,
        this.maxAttempts, this.visibilityMs, backoff, q.stateTtlMs);
    } finally {
      clearInterval(renew);
      this.running.delete(job.id);
    }
  }

  async call(job) {
    const handler = this.handlers.get(job.type);
    if (!handler) throw new JobError(`no handler for job type \`${job.type}\``);
    const out = handler(job);
    if (out && typeof out[Symbol.asyncIterator] === 'function') {
      let text = '';
      for await (const delta of out) {
        if (job.signal.aborted) return ABORTED;
        await job.emit(delta);
        text += delta;
      }
      return { text };
    }
    return await out;
  }
}

const ABORTED = Symbol('aborted');
