// @ts-check
/**
 * The connection state machine: `disconnected` -> `connecting` -> `connected`, back to
 * `connecting` when the connection drops, and to `disconnected` when the app disconnects or
 * the hub ends the client for good. Kept pure so that its table can be tested on its own.
 */

/** @typedef {'disconnected' | 'connecting' | 'connected'} State */
/** @typedef {'connect' | 'open' | 'drop' | 'close'} Transition */

/** Every state, in the order a connection goes through them. */
export const STATES = /** @type {const} */ (['disconnected', 'connecting', 'connected']);

/** @type {Record<State, Partial<Record<Transition, State>>>} */
const TABLE = {
  disconnected: { connect: 'connecting' },
  connecting: { open: 'connected', drop: 'connecting', close: 'disconnected' },
  connected: { drop: 'connecting', close: 'disconnected' },
};

/**
 * The state after `transition`, or `null` when it does not apply in `state` (e.g. `open`
 * while disconnected: a late frame of a connection the app already closed).
 * @param {State} state
 * @param {Transition} transition
 * @returns {State | null}
 */
export function nextState(state, transition) {
  return TABLE[state][transition] ?? null;
}

/**
 * What the client does after its WebSocket closed with `code` (a close the app did not ask
 * for): `reconnect`, `refresh` (get a fresh token, then reconnect) or `stop`.
 * - Every 1xxx code reconnects: a network drop (1006), the hub shutting down (1001), an idle
 *   timeout (1000), a slow-consumer kick (1013), an internal error (1011).
 * - 4001 (token refused) and 4002 (token expired) reconnect with a fresh token when there is
 *   a token callback to ask; with a fixed token they stop.
 * - Any other code is the hub ending this client on purpose (for instance its session taken
 *   over by a resume elsewhere): the client stops and does not fight it.
 * @param {number} code
 * @param {boolean} canRefresh the client has a `getToken` callback
 * @returns {'reconnect' | 'refresh' | 'stop'}
 */
export function afterClose(code, canRefresh) {
  if (code >= 1000 && code < 2000) return 'reconnect';
  if (code === 4001 || code === 4002) return canRefresh ? 'refresh' : 'stop';
  return 'stop';
}
