// What the browser scenarios share: Chromium, checks and the report, asks to the Rust test
// that drives them (it restarts hubs), and the hub's HTTP API.
//
// Protocol with the Rust side (tests/common/browser.rs): the scenario prints one JSON line per
// ask, {"ask": "...", ...}, and reads the answer as one JSON line on stdin; at the end it prints
// its report, {"ok": true, "checks": [...]} or {"ok": false, "error": ...}.
import { request as httpRequest } from 'node:http';
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

let answers = null;

/** Asks the Rust side to do something (`{ask: 'restart', ...}`); resolves with its answer. */
export async function ask(request) {
  process.stdout.write(JSON.stringify(request) + '\n');
  answers ??= createInterface({ input: process.stdin })[Symbol.asyncIterator]();
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

/**
 * One HTTP request on a connection of its own (a kept-alive connection the hub closed while a
 * scenario waited would fail the next request); resolves with {status, body}.
 */
export function http(url, method = 'GET', body = undefined) {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method, agent: false, headers: body === undefined ? {} : { 'content-type': 'application/json' } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => { text += chunk; });
      res.on('end', () => resolve({ status: res.statusCode, body: text }));
    });
    req.on('error', reject);
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

/** POSTs JSON to a hub's API; returns the parsed answer (throws on a non-2xx status). */
export async function post(hubUrl, path, body) {
  const res = await http(hubUrl + path, 'POST', body);
  if (res.status < 200 || res.status > 299) throw new Error(`POST ${path} answered ${res.status}: ${res.body}`);
  return JSON.parse(res.body);
}

/** The value of one sample of a hub's /metrics (0 when absent). */
export async function metric(hubUrl, sample) {
  const { body } = await http(hubUrl + '/metrics');
  const line = body.split('\n').find((l) => l.startsWith(sample + ' '));
  return line ? Number(line.slice(sample.length + 1)) : 0;
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
