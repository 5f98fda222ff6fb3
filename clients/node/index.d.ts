import type { Redis, Cluster } from 'ioredis';

export declare const CHECK_EVERY_MS: number;
export declare class JobCancelled extends Error {}
export declare class LeaseLost extends Error {}
export declare class JobError extends Error {
  constructor(message: string, options?: { permanent?: boolean });
  permanent: boolean;
}

export interface EnqueueOptions {
  id?: string;
  priority?: 'high' | 'normal' | 'low';
  /** Queue even when no worker advertised the type in the last 30 s. */
  waitForWorker?: boolean;
  [key: string]: unknown;
}

export declare class Queue {
  constructor(redis: Redis | Cluster, options?: { prefix?: string; stateTtlMs?: number });
  redis: Redis | Cluster;
  prefix: string;
  stateTtlMs: number;
  call(fn: string, ...args: Array<string | number>): Promise<any>;
  enqueue(type: string, userId: number | string, payload: unknown, options?: EnqueueOptions):
    Promise<{ status: 'queued'; id: string; workerLive?: boolean; duplicate?: true }>;
  cancel(id: string, user?: string): Promise<'cancelled' | 'finished' | 'unknown' | 'forbidden'>;
  status(id: string): Promise<Record<string, string> | null>;
  advertise(types: string[]): Promise<void>;
}

export declare class Job<P = any> {
  id: string;
  type: string;
  userId: number | string;
  payload: P;
  priority: 'high' | 'normal' | 'low';
  attempt: number;
  job: Record<string, unknown>;
  lease: string;
  /** Aborted when the job is cancelled (within 100 ms) or taken over. */
  readonly signal: AbortSignal;
  /** Streams a chunk to the user; resolves to its seq. */
  emit(delta: string): Promise<number>;
}

export type Handler<P = any> =
  | ((job: Job<P>) => Promise<unknown>)
  | ((job: Job<P>) => AsyncIterable<string>);

export interface WorkerOptions {
  consumer?: string;
  concurrency?: number;
  visibilityMs?: number;
  maxAttempts?: number;
  retryBackoffMs?: number;
}

export declare class Worker {
  constructor(queue: Queue, options?: WorkerOptions);
  handle<P = any>(type: string, handler: Handler<P>): this;
  run(): Promise<void>;
  stop(): void;
}
