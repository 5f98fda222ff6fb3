import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Position } from '../src/position.js';

test('first connect asks for a resumable session, with no cursor', () => {
  const p = new Position();
  assert.deepEqual(p.connectParams(true), { resume: true });
  assert.deepEqual(p.connectParams(false), {});
});

test('after a session: its token and last offset, plus the inbox cursor as fallback', () => {
  const p = new Position();
  p.connected({ resume: 'abc' });
  p.acceptOffset(1);
  p.acceptNotification({ inboxId: '100-0' });
  p.acceptOffset(2);
  assert.deepEqual(p.connectParams(true), { resume: 'abc', offset: 2, since: '100-0' });
  assert.deepEqual(p.connectParams(false), { since: '100-0' });
});

test('resumed: same token, offsets go on', () => {
  const p = new Position();
  p.connected({ resume: 'abc' });
  p.acceptOffset(7);
  assert.equal(p.connected({ resume: 'abc', resumed: true }), true);
  assert.equal(p.offset, 7);
  assert.ok(!p.acceptOffset(7));
  assert.ok(p.acceptOffset(8));
});

test('not resumed: the new session starts its offsets again', () => {
  const p = new Position();
  p.connected({ resume: 'abc' });
  p.acceptOffset(7);
  assert.equal(p.connected({ resume: 'def', resumed: false }), false);
  assert.equal(p.offset, 0);
  assert.ok(p.acceptOffset(1), 'offset 1 of the new session is new');
  assert.deepEqual(p.connectParams(true), { resume: 'def', offset: 1 });
});

test('a hub with resume off (no token in connected): back to asking, offsets ignored', () => {
  const p = new Position();
  p.connected({ resume: 'abc' });
  p.acceptOffset(3);
  assert.equal(p.connected({}), false);
  assert.equal(p.resumeToken, null);
  assert.ok(p.acceptOffset(1) && p.acceptOffset(1));
  assert.deepEqual(p.connectParams(true), { resume: true });
});

test('resumed:true with another token is not taken for a resume', () => {
  const p = new Position();
  p.connected({ resume: 'abc' });
  p.acceptOffset(4);
  assert.equal(p.connected({ resume: 'zzz', resumed: true }), false);
  assert.equal(p.offset, 0);
});
