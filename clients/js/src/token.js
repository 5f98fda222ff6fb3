// @ts-check
/**
 * Tokens: when to ask the `getToken` callback for a fresh one. The client reads the `exp`
 * claim of the JWT it holds (without checking the signature: the hub does that) and asks
 * for a fresh token before it runs out, then sends it on the live session (`auth`).
 */

/** The most a refresh happens before the token's `exp`, in ms. */
export const REFRESH_MARGIN_MS = 30_000;

/**
 * The `exp` claim of a JWT, in ms since the epoch, or `null` when it has none or is not a
 * JWT.
 * @param {string} token
 * @returns {number | null}
 */
export function tokenExpiry(token) {
  const part = token.split('.')[1];
  if (!part) return null;
  try {
    const base64 = part.replace(/-/g, '+').replace(/_/g, '/');
    const padded = base64 + '='.repeat((4 - (base64.length % 4)) % 4);
    const json = new TextDecoder().decode(Uint8Array.from(atob(padded), (c) => c.charCodeAt(0)));
    const exp = JSON.parse(json).exp;
    return typeof exp === 'number' && Number.isFinite(exp) ? exp * 1000 : null;
  } catch {
    return null;
  }
}

/**
 * How long to wait, from `now`, before refreshing a token that expires at `expiresAt` (ms):
 * `REFRESH_MARGIN_MS` before it runs out, or after two thirds of what is left when that is
 * later (short-lived tokens), and never less than 0.
 * @param {number} expiresAt
 * @param {number} now
 * @returns {number}
 */
export function refreshDelay(expiresAt, now) {
  const left = expiresAt - now;
  return Math.max(0, Math.max(left - REFRESH_MARGIN_MS, Math.floor((left * 2) / 3)));
}

/** A token with less than this left is not presented again: a fresh one is asked first. */
export const MIN_LEFT_MS = 1_000;

/**
 * Whether a token that expires at `expiresAt` is still worth presenting at `now` (a token
 * about to run out is refreshed on the live session right after `connected`); a token
 * without `exp` always is.
 * @param {number | null} expiresAt
 * @param {number} now
 * @returns {boolean}
 */
export function tokenFresh(expiresAt, now) {
  return expiresAt === null || expiresAt - now > MIN_LEFT_MS;
}
