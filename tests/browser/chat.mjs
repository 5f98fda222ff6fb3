// End-to-end test of the demo page in headless Chromium (Debian's /usr/bin/chromium, driven
// by playwright-core). Run by tests/browser.rs:
//
//   node tests/browser/chat.mjs <hubUrl> <outDir> <balancerPort>
//
// Alice's page comes through a TCP balancer (balancer.mjs) on <balancerPort> (the hub allows
// that origin), so that the test can reset her connection at the socket.
// Prints one JSON line ({"ok":true,"checks":[...],"screenshots":[...]} or {"ok":false,
// "error":...}) and exits 0 only when every check passed. Screenshots go to <outDir>.

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { startBalancer } from './balancer.mjs';
import { metric as hubMetric, until } from './harness.mjs';

const [hubUrl, outDir, balancerPort] = process.argv.slice(2);
if (!hubUrl || !outDir || !balancerPort) {
  console.error('usage: node chat.mjs <hubUrl> <outDir> <balancerPort>');
  process.exit(2);
}
mkdirSync(outDir, { recursive: true });

const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const WAIT = 10_000;
const ROOM = 'lobby';
const checks = [];
const screenshots = [];
const pageErrors = [];

function check(name, ok, detail) {
  checks.push({ name, ok: !!ok, ...(detail === undefined ? {} : { detail }) });
  if (!ok) throw new Error(`check failed: ${name}${detail === undefined ? '' : ` (${JSON.stringify(detail)})`}`);
}

async function shot(page, name, { fullPage = true } = {}) {
  const path = join(outDir, name);
  await page.screenshot({ path, fullPage });
  screenshots.push(path);
}

async function openUser(browser, userId, name, viewport = { width: 1280, height: 800 }, origin = hubUrl) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  page.on('pageerror', (err) => pageErrors.push(`${name}: ${err.message}`));
  page.on('console', (msg) => { if (msg.type() === 'error') pageErrors.push(`${name} console: ${msg.text()}`); });
  await page.goto(origin + '/');
  await page.fill('#user-id', userId);
  await page.fill('#user-name', name);
  await page.click('#connect');
  await page.waitForSelector('#status[data-state="connected"]', { timeout: WAIT });
  await page.fill('#room-input', ROOM);
  await page.press('#room-input', 'Enter');
  await page.waitForFunction(
    (room) => window.demo.chat.rooms.get(room)?.joined === true, ROOM, { timeout: WAIT });
  return page;
}

async function say(page, text) {
  await page.waitForSelector('#message-input:not([disabled])', { timeout: WAIT });
  await page.fill('#message-input', text);
  await page.press('#message-input', 'Enter');
}

/** Texts of the chat messages shown, in order. */
const shown = (page) => page.$$eval('#messages .msg .text', (els) => els.map((e) => e.textContent));

async function waitForText(page, text) {
  await page.waitForFunction(
    (t) => [...document.querySelectorAll('#messages .msg .text')].some((e) => e.textContent === t),
    text, { timeout: WAIT });
}

async function waitForMembers(page, names) {
  await page.waitForFunction((want) => {
    const have = [...document.querySelectorAll('#members li')].map((li) => li.firstChild.textContent).sort();
    return JSON.stringify(have) === JSON.stringify([...want].sort());
  }, names, { timeout: WAIT });
}

const count = (list, text) => list.filter((t) => t === text).length;

async function main() {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-background-networking', '--disable-dev-shm-usage', '--disable-gpu'],
  });
  const balancer = await startBalancer(new URL(hubUrl).port, Number(balancerPort));
  let alice;
  try {
    alice = await openUser(browser, '1', 'Alice', undefined, `http://127.0.0.1:${balancer.port}`);
    const bob = await openUser(browser, '2', 'Bob');

    // Both see each other in the members panel.
    await waitForMembers(alice, ['Alice', 'Bob']);
    await waitForMembers(bob, ['Alice', 'Bob']);
    check('both pages list both members', true);

    // They exchange messages; both see both.
    await say(alice, 'Hello from Alice');
    await waitForText(bob, 'Hello from Alice');
    await say(bob, 'Hi Alice, Bob here');
    await waitForText(alice, 'Hi Alice, Bob here');
    for (const [who, page] of [['alice', alice], ['bob', bob]]) {
      check(`${who} sees both messages in order`,
        JSON.stringify(await shown(page)) === JSON.stringify(['Hello from Alice', 'Hi Alice, Bob here']),
        await shown(page));
    }

    // Alice goes offline (her socket is closed); Bob sends three messages meanwhile.
    await alice.click('#offline-toggle');
    await alice.waitForSelector('#status[data-state="offline"]', { timeout: WAIT });
    await waitForMembers(bob, ['Bob']);
    check("Bob's members panel drops Alice while she is offline", true);
    const missed = ['missed one', 'missed two', 'missed three'];
    for (const text of missed) {
      await say(bob, text);
      await waitForText(bob, text);
    }
    check('Alice got nothing while offline', (await shown(alice)).length === 2, await shown(alice));

    // Alice comes back: the three arrive once each, from the history, before anything new.
    await alice.click('#offline-toggle');
    await alice.waitForSelector('#status[data-state="connected"]', { timeout: WAIT });
    await waitForText(alice, 'missed three');
    await waitForMembers(bob, ['Alice', 'Bob']);
    const afterRecovery = await shown(alice);
    check('Alice shows the missed messages exactly once, in order',
      JSON.stringify(afterRecovery) === JSON.stringify(['Hello from Alice', 'Hi Alice, Bob here', ...missed]),
      afterRecovery);
    const join = await alice.evaluate((room) => window.demo.chat.joins.filter((j) => j.room === room).at(-1), ROOM);
    check('the re-join asked with since and was recovered from history',
      join && join.rejoin && join.recovered === true && join.missed === 3, join);
    check('Alice sees the recovery notice',
      /Recovered 3 missed messages/.test(await alice.textContent('#notice')), await alice.textContent('#notice'));

    // An unplanned drop: Alice's connection is reset at the socket (no close frame). Her page
    // is held back until the hub kept her session; Bob speaks meanwhile; she resumes by herself
    // and shows every message once.
    const saves = () => metric('hub_sio_recovery_saves_total{result="saved"}');
    const savedBefore = await saves();
    const connectsBefore = await alice.evaluate(() => window.demo.stats.connects);
    balancer.hold();
    const cutCount = balancer.cut();
    check("Alice's connection reset at the socket", cutCount === 1, { cutCount });
    await alice.waitForSelector('#status[data-state="reconnecting"]', { timeout: WAIT });
    await until('the hub to keep her session', async () => (await saves()) > savedBefore);
    await say(bob, 'during the drop');
    await waitForText(bob, 'during the drop');
    balancer.release();
    await alice.waitForFunction((n) => window.demo.stats.connects > n, connectsBefore, { timeout: WAIT });
    await alice.waitForSelector('#status[data-state="connected"]', { timeout: WAIT });
    await waitForText(alice, 'during the drop');
    await say(bob, 'after the drop');
    await waitForText(alice, 'after the drop');
    const afterDrop = await shown(alice);
    check('after an automatic reconnect every message is shown once',
      ['during the drop', 'after the drop', ...missed].every((t) => count(afterDrop, t) === 1) && afterDrop.length === 7,
      afterDrop);

    await shot(alice, 'chat-alice.png');
    await shot(bob, 'chat-bob.png');

    // Phone width: a third user; the page must fit without horizontal scrolling.
    const carol = await openUser(browser, '3', 'Carol', { width: 390, height: 844 });
    await waitForMembers(alice, ['Alice', 'Bob', 'Carol']);
    await waitForText(carol, 'after the drop');
    const overflow = await carol.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    check('the page fits a 390 px wide screen', overflow <= 0, { overflow });
    const history = await shown(carol);
    check('a new member gets the history on join', history.length === 7, history);
    await shot(carol, 'chat-phone.png');

    // A notification reaches Carol's phone as a toast on screen (the Events panel is far below
    // the fold there) and in the Events panel, tagged in plain text (no emoji).
    const notify = await fetch(`${hubUrl}/api/notify`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ userId: 3, type: 'info', title: 'Report ready', message: 'Your weekly report is ready' }),
    });
    check('the hub took the notification', notify.status === 202, notify.status);
    await carol.waitForSelector('#toasts .toast', { timeout: WAIT });
    const toast = await carol.$eval('#toasts .toast', (t) => {
      const r = t.getBoundingClientRect();
      return { top: r.top, bottom: r.bottom, left: r.left, right: r.right, text: t.textContent };
    });
    check('the notification shows as a toast within the phone screen',
      toast.top >= 0 && toast.bottom <= 844 && toast.left >= 0 && toast.right <= 390
        && toast.text.includes('Report ready') && toast.text.includes('Your weekly report is ready'), toast);
    const logged = await carol.textContent('#events li');
    check('the notification is in the Events panel too, tagged in plain text',
      logged === 'notificationReport ready: Your weekly report is ready', logged);
    await carol.waitForFunction(() => document.getAnimations().every((a) => a.playState === 'finished'),
      null, { timeout: WAIT });
    await shot(carol, 'chat-phone-toast.png', { fullPage: false });

    check('no script errors in the pages', pageErrors.length === 0, pageErrors);
  } catch (err) {
    if (alice) await shot(alice, 'failure-alice.png').catch(() => {});
    throw err;
  } finally {
    balancer.close();
    await browser.close();
  }
}

/** The value of one sample of the hub's /metrics (0 when absent). */
const metric = (sample) => hubMetric(hubUrl, sample);

main().then(
  () => {
    console.log(JSON.stringify({ ok: true, checks, screenshots }));
    process.exit(0);
  },
  (err) => {
    console.log(JSON.stringify({ ok: false, error: String(err && err.message || err), checks, screenshots, pageErrors }));
    process.exit(1);
  },
);
