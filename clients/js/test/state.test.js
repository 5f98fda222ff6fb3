import assert from 'node:assert/strict';
import { test } from 'node:test';
import { STATES, afterClose, nextState } from '../src/state.js';

test('the table: every state and transition', () => {
  const table = {};
  for (const s of STATES) {
    table[s] = {};
    for (const t of ['connect', 'open', 'drop', 'close']) table[s][t] = nextState(s, t);
  }
  assert.deepEqual(table, {
    disconnected: { connect: 'connecting', open: null, drop: null, close: null },
    connecting: { connect: null, open: 'connected', drop: 'connecting', close: 'disconnected' },
    connected: { connect: null, open: null, drop: 'connecting', close: 'disconnected' },
  });
});

test('a connection goes disconnected -> connecting -> connected -> connecting -> disconnected', () => {
  let s = 'disconnected';
  const seen = [s];
  for (const t of ['connect', 'open', 'drop', 'drop', 'open', 'close']) seen.push((s = nextState(s, t)));
  assert.deepEqual(seen, ['disconnected', 'connecting', 'connected', 'connecting', 'connecting', 'connected', 'disconnected']);
});

test('close codes: 1xxx reconnect, 4001/4002 refresh with a callback, the rest stop', () => {
  for (const code of [1000, 1001, 1005, 1006, 1008, 1011, 1012, 1013]) {
    assert.equal(afterClose(code, false), 'reconnect', `${code}`);
    assert.equal(afterClose(code, true), 'reconnect', `${code}`);
  }
  assert.equal(afterClose(4001, true), 'refresh');
  assert.equal(afterClose(4002, true), 'refresh');
  assert.equal(afterClose(4001, false), 'stop');
  assert.equal(afterClose(4002, false), 'stop');
  for (const code of [4000, 4003, 4004, 4100, 4999, 3000]) assert.equal(afterClose(code, true), 'stop', `${code}`);
});
