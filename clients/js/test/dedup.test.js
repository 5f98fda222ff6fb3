import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ChunkSeqs, RecentIds, isHistoryId } from '../src/dedup.js';
import { Position } from '../src/position.js';

test('only stream-shaped ids are history ids', () => {
  for (const id of ['1764520000123-0', '0-1', '1-18446744073709551615']) assert.ok(isHistoryId(id), id);
  for (const id of ['42', 'a-b', '1764520000123', 'uuid-like-1', 17, null, undefined, '1-2-3', ' 1-2']) {
    assert.ok(!isHistoryId(id), String(id));
  }
});

test('recent ids: a repeat is refused, the oldest is forgotten past capacity', () => {
  const ids = new RecentIds(3);
  assert.ok(ids.add('1-0'));
  assert.ok(!ids.add('1-0'));
  ids.add('2-0');
  ids.add('3-0');
  ids.add('4-0');
  assert.equal(ids.size, 3);
  assert.ok(!ids.has('1-0'));
  assert.ok(ids.add('1-0'), 'forgotten, so new again');
});

test('chunks: a seq not after the last of its job is a repeat', () => {
  const chunks = new ChunkSeqs(2);
  assert.ok(chunks.add('j1', 1));
  assert.ok(chunks.add('j1', 2));
  assert.ok(!chunks.add('j1', 2));
  assert.ok(!chunks.add('j1', 1));
  assert.ok(chunks.add('j1', 5), 'merged deltas skip seqs');
  assert.ok(chunks.add(7, 1), 'numeric job ids');
  assert.ok(chunks.add('j2', 1));
  assert.ok(chunks.add('j1', 1), 'j1 was the least recently used of three: forgotten');
});

test('merged chunks: new when none of from..seq was seen, partial when some were', () => {
  const chunks = new ChunkSeqs(8);
  assert.equal(chunks.take('j', 1, 1), 'new');
  assert.equal(chunks.take('j', 2, 5), 'new', 'chunks 2 to 5 merged');
  assert.equal(chunks.last('j'), 5);
  assert.equal(chunks.take('j', 3, 5), 'seen');
  assert.equal(chunks.take('j', 4, 9), 'partial', '4 and 5 were seen: the text cannot be split');
  assert.equal(chunks.last('j'), 5, 'a partial frame records nothing');
  assert.equal(chunks.take('j', 6, 9), 'new');
  assert.ok(!chunks.add('j', 7));
});

test('notifications: a repeated inboxId is dropped, the cursor follows; others pass', () => {
  const p = new Position();
  assert.ok(p.acceptNotification({ inboxId: '10-0' }));
  assert.ok(p.acceptNotification({ inboxId: '11-0' }));
  assert.ok(!p.acceptNotification({ inboxId: '10-0' }));
  assert.equal(p.inbox, '11-0');
  assert.ok(p.acceptNotification({}), 'a plain PUBLISH has no inboxId');
  assert.ok(p.acceptNotification({ inboxId: '42' }), 'a foreign id is never used to drop');
  assert.ok(p.acceptNotification({ inboxId: '42' }));
  assert.equal(p.inbox, '11-0');
});

test('chat: repeats dropped per room by exact id; each room has its own since', () => {
  const p = new Position();
  assert.ok(p.acceptChat('a', { id: '5-0' }));
  assert.ok(p.acceptChat('b', { id: '5-0' }), 'another room');
  assert.ok(p.acceptChat('a', { id: '6-0' }));
  assert.ok(!p.acceptChat('a', { id: '5-0' }));
  assert.ok(p.acceptChat('a', { id: 'svc-1' }) && p.acceptChat('a', { id: 'svc-1' }), 'foreign ids pass');
  assert.ok(p.acceptChat('a', {}), 'no id');
  assert.equal(p.roomSince('a'), '6-0');
  assert.equal(p.roomSince('b'), '5-0');
  p.forgetRoom('a');
  assert.equal(p.roomSince('a'), undefined);
  assert.ok(p.acceptChat('a', { id: '5-0' }), 'a room left and joined again starts over');
});

test('offsets: only within a resumable session, and only forward', () => {
  const p = new Position();
  assert.ok(p.acceptOffset(1) && p.acceptOffset(1), 'no session token yet: nothing to compare');
  assert.equal(p.connected({ resume: 'tok' }), false);
  assert.ok(p.acceptOffset(1));
  assert.ok(p.acceptOffset(2));
  assert.ok(!p.acceptOffset(2));
  assert.ok(!p.acceptOffset(1));
  assert.ok(p.acceptOffset(undefined), 'replies and frames without offsets pass');
  assert.equal(p.offset, 2);
});
