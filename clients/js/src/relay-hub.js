// @ts-check
/**
 * relay-hub's browser client for the native `/ws` protocol: ESM, no dependencies, no build
 * step. Types: `relay-hub.d.ts` beside this file. Documentation: `docs/client.md`.
 *
 * Layout, one file per concept:
 * - `client.js`: `RelayHub`, the connection and everything it keeps up;
 * - `state.js`: the state machine and what each close code leads to;
 * - `backoff.js`: reconnect delays (exponential, full jitter);
 * - `position.js` and `dedup.js`: what was seen (resume offset, inbox and room cursors) and
 *   the recent ids that drop repeats;
 * - `token.js`: when a token needs refreshing;
 * - `emitter.js`: `on`/`once`/`off`.
 */

export { DEFAULTS, HubError, RelayHub } from './client.js';
export { backoffDelay } from './backoff.js';
export { STATES } from './state.js';

/** Every event a `RelayHub` emits by that name (any other event frame type is emitted too). */
export const EVENTS = Object.freeze([
  'state',
  'connecting',
  'connected',
  'disconnected',
  'error',
  'joined',
  'token-refreshed',
  'notification',
  'inbox-state',
  'ai-result',
  'chat-message',
  'presence',
  'ai-chunk',
  'job-state',
  'cache-invalidate',
  'analytics',
]);
