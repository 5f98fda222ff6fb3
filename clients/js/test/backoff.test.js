import assert from 'node:assert/strict';
import { test } from 'node:test';
import { backoffDelay } from '../src/relay-hub.js';

const bounds = { minDelay: 500, maxDelay: 20_000 };

test('the cap doubles from minDelay per attempt up to maxDelay', () => {
  const almostOne = () => 0.999999;
  const caps = [0, 1, 2, 3, 4, 5, 6, 10, 100].map((n) => backoffDelay(n, bounds, almostOne));
  assert.deepEqual(caps, [499, 999, 1999, 3999, 7999, 15999, 19999, 19999, 19999]);
});

test('full jitter: anywhere from 0 to the cap', () => {
  assert.equal(backoffDelay(5, bounds, () => 0), 0);
  assert.equal(backoffDelay(5, bounds, () => 0.5), 8000);
  for (let i = 0; i < 1000; i++) {
    const d = backoffDelay(3, bounds);
    assert.ok(d >= 0 && d < 4000, `${d} within [0, 4000)`);
  }
});

test('spreads clients out: 1000 draws of one attempt are not bunched', () => {
  const draws = Array.from({ length: 1000 }, () => backoffDelay(4, bounds));
  const quarters = [0, 0, 0, 0];
  for (const d of draws) quarters[Math.floor(d / 2000)] += 1;
  for (const q of quarters) assert.ok(q > 150, `each quarter of [0, 8000) gets a share: ${quarters}`);
});

test('a negative or huge attempt stays within the bounds', () => {
  assert.equal(backoffDelay(-3, bounds, () => 0.999999), 499);
  assert.equal(backoffDelay(1e9, bounds, () => 0.999999), 19999);
});
