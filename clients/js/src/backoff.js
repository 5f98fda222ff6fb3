// @ts-check
/**
 * Reconnect delays: exponential backoff with full jitter ("Exponential Backoff And Jitter",
 * AWS Architecture Blog): attempt n waits a random time between 0 and
 * min(maxDelay, minDelay * 2^n), so clients that lost the same hub at the same moment do not
 * come back at the same moment.
 */

/**
 * The delay before reconnect attempt `attempt` (0 for the first retry), in ms.
 * @param {number} attempt
 * @param {{minDelay: number, maxDelay: number}} bounds
 * @param {() => number} [random] a source in [0, 1), `Math.random` by default
 * @returns {number}
 */
export function backoffDelay(attempt, { minDelay, maxDelay }, random = Math.random) {
  const cap = Math.min(maxDelay, minDelay * 2 ** Math.min(Math.max(attempt, 0), 30));
  return Math.floor(random() * cap);
}
