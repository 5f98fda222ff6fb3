// The demo page's notification centre in headless Chromium: two tabs of one user, each on its
// own hub instance (one Redis). Run by tests/browser.rs:
//
//   node tests/browser/inbox.mjs <hubUrl0> <hubUrl1> <outDir>
//
// Notifications sent through the API ring both bells with the same count and fill both lists;
// a click on one in the first tab marks it read in both; "Mark all read" in the second clears
// both bells; a reloaded tab starts from the count and the read flags. Prints the report of
// harness.mjs; screenshots go to <outDir>.

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { check, launch, post, run, watchErrors, pageErrors } from './harness.mjs';

const [hub0, hub1, outDir] = process.argv.slice(2);
if (!hub0 || !hub1 || !outDir) {
  console.error('usage: node inbox.mjs <hubUrl0> <hubUrl1> <outDir>');
  process.exit(2);
}
mkdirSync(outDir, { recursive: true });
const WAIT = 10_000;
const USER = 'nia';

async function openTab(context, hubUrl, name) {
  const page = await context.newPage();
  watchErrors(page, name);
  await page.goto(`${hubUrl}/?userId=${USER}&name=Nia&autoconnect=1`);
  await page.waitForSelector('#status[data-state="connected"]', { timeout: WAIT });
  await page.waitForSelector('#bell:not([hidden])', { timeout: WAIT });
  return page;
}

/** Waits until the tab's badge says `count` (hidden at 0). */
async function badge(page, count) {
  await page.waitForFunction(
    (n) => {
      const b = document.getElementById('unread');
      return b.dataset.count === String(n) && b.hidden === (n === 0);
    },
    count, { timeout: WAIT });
}

/** The tab's list: [title, read] newest first. */
const listed = (page) => page.$$eval('#inbox-list li[data-inbox-id]',
  (lis) => lis.map((li) => [li.querySelector('strong').textContent, li.classList.contains('read')]));

async function waitListed(page, want) {
  await page.waitForFunction((w) => {
    const have = [...document.querySelectorAll('#inbox-list li[data-inbox-id]')]
      .map((li) => [li.querySelector('strong').textContent, li.classList.contains('read')]);
    return JSON.stringify(have) === JSON.stringify(w);
  }, want, { timeout: WAIT });
}

run(async () => {
  const browser = await launch();
  const context = await browser.newContext({ viewport: { width: 1100, height: 760 } });
  const first = await openTab(context, hub0, 'tab 1');
  const second = await openTab(context, hub1, 'tab 2');
  for (const page of [first, second]) await badge(page, 0);
  check('both bells start at 0', true);

  for (const title of ['Build done', 'Review asked', 'Deploy ready']) {
    await post(hub0, '/api/notify', { userId: USER, type: 'info', title, message: `${title}.` });
  }
  for (const page of [first, second]) await badge(page, 3);
  check('both bells count 3 after three notifications', true);
  const three = [['Deploy ready', false], ['Review asked', false], ['Build done', false]];
  for (const page of [first, second]) await waitListed(page, three);
  check('both lists show them, newest first, unread', true, await listed(second));

  await first.click('#bell');
  await first.click('#inbox-list li[data-inbox-id]:last-child');
  for (const page of [first, second]) await badge(page, 2);
  const oneRead = [['Deploy ready', false], ['Review asked', false], ['Build done', true]];
  for (const page of [first, second]) await waitListed(page, oneRead);
  check('a click in tab 1 marks it read in both tabs', true);
  await first.screenshot({ path: join(outDir, 'inbox-tab1.png') });

  await second.click('#bell');
  await second.click('#mark-all');
  for (const page of [first, second]) await badge(page, 0);
  const allRead = three.map(([t]) => [t, true]);
  for (const page of [first, second]) await waitListed(page, allRead);
  check('"Mark all read" in tab 2 clears both bells and lists', true);
  await second.screenshot({ path: join(outDir, 'inbox-tab2.png') });

  await post(hub1, '/api/notify', { userId: USER, type: 'info', title: 'Later', message: 'one more' });
  for (const page of [first, second]) await badge(page, 1);
  await first.reload();
  await first.waitForSelector('#status[data-state="connected"]', { timeout: WAIT });
  await badge(first, 1);
  await waitListed(first, [['Later', false], ...allRead]);
  check('a reloaded tab starts from the count and the read flags', true);

  check('no script errors', pageErrors.length === 0, pageErrors);
  await browser.close();
});
