// docs/client.md documents every option, event and member of the client: its tables are
// compared with the published types (src/relay-hub.d.ts) and with what the code exports.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { DEFAULTS, EVENTS, RelayHub } from '../src/relay-hub.js';

const read = (path) => readFileSync(new URL(path, import.meta.url), 'utf8');
const docs = read('../../../docs/client.md');
const types = read('../src/relay-hub.d.ts');

/** The first column's names (`name` or `name(...)`) of the table under `## heading`. */
function documented(heading) {
  const section = docs.split(`\n## ${heading}\n`)[1]?.split('\n## ')[0];
  assert.ok(section, `docs/client.md has a "${heading}" section`);
  const names = [];
  for (const line of section.split('\n')) {
    const cell = line.startsWith('| `') ? line.split('|')[1] : null;
    if (!cell) continue;
    for (const [, name] of cell.matchAll(/`([\w-]+)/g)) names.push(name);
    for (const [, name] of cell.matchAll(/, (\w+)(?=,|\s*$)/g)) names.push(name);
  }
  return names.sort();
}

/** The member names of `interface name` or `class name` in the types. */
function declared(kind, name) {
  const body = types.split(`${kind} ${name} `)[1]?.split('\n}')[0];
  assert.ok(body, `relay-hub.d.ts declares ${kind} ${name}`);
  const names = new Set();
  for (const line of body.split('\n').slice(1)) {
    const m = line.match(/^ {2}(?:readonly )?'?([\w-]+)'?[?<(:]/);
    if (m && m[1] !== 'constructor') names.add(m[1]);
  }
  return [...names].sort();
}

test('every option is documented, and only those', () => {
  assert.deepEqual(documented('Options'), declared('interface', 'ClientOptions'));
});

test('the documented defaults are the code\'s', () => {
  const section = docs.split('\n## Options\n')[1].split('\n## ')[0];
  for (const [option, value] of Object.entries(DEFAULTS)) {
    const row = section.split('\n').find((l) => l.startsWith(`| \`${option}\` |`));
    assert.ok(row, option);
    assert.equal(row.split('|')[2].trim(), `\`${value}\``, option);
  }
});

test('every event is documented, typed and listed in EVENTS', () => {
  const events = documented('Events');
  assert.deepEqual(events, declared('interface', 'ClientEvents'));
  assert.deepEqual(events, [...EVENTS].sort());
});

test('every method and property is documented and implemented', () => {
  const members = documented('Methods and properties');
  assert.deepEqual(members, declared('class', 'RelayHub'));
  const hub = new RelayHub('ws://127.0.0.1:1/ws');
  for (const name of members) assert.ok(name in hub, `RelayHub has ${name}`);
});
