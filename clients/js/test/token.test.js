import assert from 'node:assert/strict';
import { test } from 'node:test';
import { REFRESH_MARGIN_MS, refreshDelay, tokenExpiry, tokenFresh } from '../src/token.js';

const b64url = (obj) => Buffer.from(JSON.stringify(obj)).toString('base64url');
const jwt = (claims) => `${b64url({ alg: 'HS256', typ: 'JWT' })}.${b64url(claims)}.sig`;

test('reads exp from a JWT (base64url, unpadded, unicode claims)', () => {
  assert.equal(tokenExpiry(jwt({ sub: '1', exp: 1_764_520_000 })), 1_764_520_000_000);
  assert.equal(tokenExpiry(jwt({ sub: 'ü?>', name: 'Zoë ~~ ??', exp: 1_700_000_001 })), 1_700_000_001_000);
});

test('no exp, or not a JWT: null', () => {
  assert.equal(tokenExpiry(jwt({ sub: '1' })), null);
  assert.equal(tokenExpiry(jwt({ sub: '1', exp: '1764520000' })), null);
  assert.equal(tokenExpiry('not-a-token'), null);
  assert.equal(tokenExpiry('a.%%%.c'), null);
  assert.equal(tokenExpiry(''), null);
});

test('refresh: the margin before exp for long tokens, two thirds in for short ones', () => {
  const now = 1_000_000;
  assert.equal(refreshDelay(now + 3_600_000, now), 3_600_000 - REFRESH_MARGIN_MS);
  assert.equal(refreshDelay(now + 3_000, now), 2_000);
  assert.equal(refreshDelay(now + 60_000, now), 40_000);
  assert.equal(refreshDelay(now - 5_000, now), 0, 'already expired: now');
});

test('a token is presented again while it has more than a second left', () => {
  assert.ok(tokenFresh(null, 0));
  assert.ok(tokenFresh(10_000, 8_000));
  assert.ok(!tokenFresh(10_000, 9_500));
  assert.ok(!tokenFresh(10_000, 20_000));
});
