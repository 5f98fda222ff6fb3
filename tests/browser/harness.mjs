// What the browser scenarios share: Chromium, checks and the report, asks to the Rust test
// that drives them (it restarts hubs), and the hub's HTTP API.
//
// Protocol with the Rust side (tests/common/browser.rs): the scenario prints one JSON line per
// ask, {"ask": "...", ...}, and reads the answer as one JSON line on stdin; at the end it prints
// its report, {"ok": true, "checks": [...]} or {"ok": false, "error": ...}.
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
export const checks = [];
export const pageErrors = [];

/** Records a check; throws when it failed. */
export function check(name, ok, detail) {
  checks.push({ name, ok: !!ok, ...(detail === undefined ? {} : { detail }) });
  if (!ok) throw new Error(`check failed: ${name}${detail === undefined ? '' : ` (${JSON.stringify(detail)})`}`);
}

const answers = createInterface({ input: process.stdin })[Symbol.asyncIterator]();

/** Asks the Rust side to do something (`{ask: 'restart', ...}`); resolves with its answer. */
export async function ask(request) {
  process.stdout.write(JSON.stringify(request) + '\n');
  const { value, done } = await answers.next();
  if (done) throw new Error(`no answer to ${JSON.stringify(request)}`);
  return JSON.parse(value);
}

export function launch() {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-background-networking', '--disable-dev-shm-usage', '--disable-gpu'],
  });
}

/**
 * Collects a page's script errors into `pageErrors`; Chromium's own line for a WebSocket that
 * could not connect (a hub the scenario stopped) is not one.
 */
export function watchErrors(page, name) {
  page.on('pageerror', (err) => pageErrors.push(`${name}: ${err.message}`));
  page.on('console', (msg) => {
    if (msg.type() !== 'error' || /^WebSocket connection to .* failed/.test(msg.text())) return;
    pageErrors.push(`${name} console: ${msg.text()}`);
  });
}

/** POSTs JSON to a hub's API; returns the parsed answer (throws on a non-2xx status). */
export async function post(hubUrl, path, body) {
  const res = await fetch(hubUrl + path, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`POST ${path} answered ${res.status}: ${text}`);
  return JSON.parse(text);
}

/** The value of one sample of a hub's /metrics (0 when absent). */
export async function metric(hubUrl, sample) {
  const text = await (await fetch(hubUrl + '/metrics')).text();
  for (const line of text.split('\n')) {
    const at = line.lastIndexOf(' ');
    if (!line.startsWith('#') && line.slice(0, at) === sample) return Number(line.slice(at + 1));
  }
  return 0;
}

/** Polls `probe` until it returns something truthy (an HTTP-side condition, not a page's). */
export async function until(what, probe, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Runs `main`, prints the report and exits (0 only when every check passed). */
export function run(main) {
  main().then(
    () => {
      console.log(JSON.stringify({ ok: true, checks }));
      process.exit(0);
    },
    (err) => {
      console.log(JSON.stringify({ ok: false, error: String((err && err.stack) || err), checks, pageErrors }));
      process.exit(1);
    },
  );
}
