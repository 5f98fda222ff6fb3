// The demo page's streamed AI answer in headless Chromium: a job's answer appears word by
// word, survives a reload mid-stream (the text so far, then the rest, each word once), and
// the Stop button cancels a job. Run by tests/browser.rs (a `relay-hub worker` streams):
//
//   node tests/browser/stream.mjs <hubUrl> <outDir>
//
// Prints one JSON line ({"ok":true,"checks":[...]} or {"ok":false,"error":...}).

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const [hubUrl, outDir] = process.argv.slice(2);
mkdirSync(outDir, { recursive: true });
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const WAIT = 15_000;
const TEXT = 'Redis keeps jobs. Jobs stream.';
const ANSWER = 'Your text has 30 characters, 5 words and 2 sentences. Its keywords: jobs, keeps, redis, stream.';
const checks = [];
const screenshots = [];
const pageErrors = [];

function check(name, ok, detail) {
  checks.push({ name, ok: !!ok, ...(detail === undefined ? {} : { detail }) });
  if (!ok) throw new Error(`check failed: ${name}${detail === undefined ? '' : ` (${JSON.stringify(detail)})`}`);
}

async function login(page) {
  await page.fill('#user-id', '77');
  await page.fill('#user-name', 'Streamer');
  await page.click('#connect');
  await page.waitForSelector('#status[data-state="connected"]', { timeout: WAIT });
}

const answer = (page) => page.textContent('#job-answer');

async function submit(page) {
  await page.fill('#job-text', TEXT);
  await page.click('#job-form button[type="submit"]');
}

async function main() {
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  try {
    const context = await browser.newContext();
    const page = await context.newPage();
    page.on('pageerror', (err) => pageErrors.push(err.message));
    await page.goto(hubUrl + '/');
    await login(page);

    await submit(page);
    await page.waitForFunction(() => document.querySelector('#job-answer').textContent.split(' ').length >= 3,
      null, { timeout: WAIT });
    const before = await answer(page);
    check('the answer streams in word by word', before.length < ANSWER.length && ANSWER.startsWith(before), before);
    check('a Stop button shows while it streams', await page.isVisible('#job-stop'));

    await page.reload();
    await login(page);
    await page.waitForFunction((full) => document.querySelector('#job-answer').textContent === full,
      ANSWER, { timeout: WAIT }).catch(() => {});
    check('after a reload mid-stream the whole answer shows, each word once', (await answer(page)) === ANSWER,
      await answer(page));
    await page.waitForSelector('#job-stop', { state: 'hidden', timeout: WAIT });
    const shot = join(outDir, 'stream-done.png');
    await page.screenshot({ path: shot, fullPage: true });
    screenshots.push(shot);

    await submit(page);
    await page.waitForFunction(() => document.querySelector('#job-answer').textContent.split(' ').length >= 2,
      null, { timeout: WAIT });
    await page.click('#job-stop');
    await page.waitForFunction(() => [...document.querySelectorAll('#events li')].some((li) => li.textContent.includes('stopped')),
      null, { timeout: WAIT });
    const stopped = await answer(page);
    check('Stop cancels the job: the answer ends short', stopped.length < ANSWER.length, stopped);
    await page.waitForTimeout(500); // the paced words would keep coming if it ran on
    check('nothing more streams after Stop', (await answer(page)) === stopped, await answer(page));
    check('no script errors in the page', pageErrors.length === 0, pageErrors);
  } finally {
    await browser.close();
  }
}

main().then(
  () => { console.log(JSON.stringify({ ok: true, checks, screenshots })); process.exit(0); },
  (err) => { console.log(JSON.stringify({ ok: false, error: String(err && err.message || err), checks, pageErrors })); process.exit(1); },
);
