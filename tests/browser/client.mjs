// The browser client (clients/js, served by the hub at /client/relay-hub.js) in headless
// Chromium against real hubs and Redis. Run by tests/client_browser.rs:
//
//   node tests/browser/client.mjs '<config JSON>'
//
// config: {scenario, hubs: [hub URLs], balancerPort?, jwtSecret?}. Scenarios:
// - socket-kill: the client's connection (through balancer.mjs) is reset at the socket, with
//   events sent meanwhile; it resumes (held back until the hub kept the session) and misses
//   nothing; a second reset that it comes back from at once, the same.
// - restart: the hub restarts (SIGTERM: the session resumes; SIGKILL: the client falls back to
//   `since`), with events sent while it is down; nothing missed, nothing twice.
// - token: JWT mode; the first token is refused (expired) and the callback is asked again; the
//   session outlives its first tokens through refreshes on the live session; when the callback
//   fails until the token runs out (close 4002), it reconnects with a fresh one.
// - two-hubs: the page's URL list holds two hubs; the first one stops, the client goes on at the
//   second with its session, and nothing is missed; then the application disconnects the user
//   (4003) and the client stays disconnected.
import { createHmac } from 'node:crypto';
import { startBalancer } from './balancer.mjs';
import { ask, check, launch, metric, pageErrors, post, run, until, watchErrors } from './harness.mjs';

const config = JSON.parse(process.argv[2] || '{}');
const [hub, second] = config.hubs || [];
const WAIT = 30_000;
const ROOM = 'lobby';
const USER = 'u1';

/** An HS256 JWT for USER that expires `ttl` seconds from now (negative: already expired). */
function mintToken(ttl) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const body = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64({ sub: USER, name: 'U One', exp: Math.floor(Date.now() / 1000) + ttl })}`;
  return `${body}.${createHmac('sha256', config.jwtSecret).update(body).digest('base64url')}`;
}

/**
 * A page on `origin` (pages/client-test.html, the hub serves it) that imports the client from
 * the hub and starts one with `urls` and
 * `options` (`tokens: true` makes its getToken ask the test's `nextToken`). Everything it
 * delivers is recorded in `window.rec`.
 */
async function clientPage(browser, origin, urls, options, before = async () => {}) {
  const context = await browser.newContext();
  const page = await context.newPage();
  watchErrors(page, 'client');
  await before(page);
  await page.goto(origin + '/client-test.html');
  await page.waitForFunction(() => window.lib, null, { timeout: WAIT });
  await page.evaluate(({ urls, options }) => {
    const rec = { log: [], tokens: 0 };
    const getToken = options.tokens ? async () => { rec.tokens += 1; return window.nextToken(); } : undefined;
    const client = new window.lib.RelayHub(urls, { ...options, tokens: undefined, getToken });
    for (const e of window.lib.EVENTS) {
      client.on(e, (payload) => rec.log.push([e, e === 'error' ? { code: payload.code, message: payload.message } : payload]));
    }
    window.client = client;
    window.rec = rec;
    client.connect();
    client.joinRoom('lobby');
  }, { urls, options });
  return page;
}

/** The recorded payloads of `event`. */
const recorded = (page, event) => page.evaluate((e) => window.rec.log.filter(([name]) => name === e).map(([, p]) => p), event);

/** Waits until `event` was recorded `n` times. */
async function awaitCount(page, event, n) {
  await page.waitForFunction(({ event, n }) => window.rec.log.filter(([e]) => e === event).length >= n,
    { event, n }, { timeout: WAIT });
}

/** Waits for the notification titled `title`. */
async function awaitNotification(page, title) {
  await page.waitForFunction((t) => window.rec.log.some(([e, p]) => e === 'notification' && p.title === t),
    title, { timeout: WAIT });
}

/** Waits for the chat message `text`. */
async function awaitChat(page, text) {
  await page.waitForFunction((t) => window.rec.log.some(([e, p]) => e === 'chat-message' && p.message === t),
    text, { timeout: WAIT });
}

const notify = (api, title) => post(api, '/api/notify', { userId: USER, type: 'info', title, message: title });
const chat = (api, message) => post(api, `/api/chat/${ROOM}`, { userId: 'bob', username: 'Bob', message });

/** Checks that the client delivered exactly `titles` and `messages`, in that order. */
async function deliveredExactly(page, what, titles, messages) {
  const notes = (await recorded(page, 'notification')).map((n) => n.title);
  const chats = (await recorded(page, 'chat-message')).map((m) => m.message);
  check(`${what}: every notification once, in order`, JSON.stringify(notes) === JSON.stringify(titles), notes);
  check(`${what}: every chat message once, in order`, JSON.stringify(chats) === JSON.stringify(messages), chats);
}

/** Connected and joined: the first `connected` and `joined`. */
async function started(page) {
  await awaitCount(page, 'connected', 1);
  await awaitCount(page, 'joined', 1);
}

/** A client of `urls` on a page of `hub`, started, that got n1 and c1 sent through `api`. */
async function startedWithFirstEvents(browser, urls, api) {
  const page = await clientPage(browser, hub, urls, { userId: USER });
  await started(page);
  await notify(api, 'n1');
  await chat(api, 'c1');
  await awaitChat(page, 'c1');
  await awaitNotification(page, 'n1');
  return page;
}

/** Stops hub 0 with `signal`, sends n{n} and c{c} through `second` while it is down. */
async function stopAndSend(signal, n, c) {
  await ask({ ask: 'stop', hub: 0, signal });
  await notify(second, `n${n}`);
  await chat(second, `c${c}`);
}

const scenarios = {
  async 'socket-kill'(browser) {
    const balancer = await startBalancer(new URL(hub).port, config.balancerPort);
    const page = await startedWithFirstEvents(browser, [`ws://127.0.0.1:${balancer.port}/ws`], hub);

    // Reset at the socket; hold the client back until the hub kept its session.
    const saved = await metric(hub, 'hub_sio_recovery_saves_total{result="saved"}');
    balancer.hold();
    check('the client had one connection through the balancer, reset without a close frame', balancer.cut() === 1);
    await until('the hub to keep the session', async () =>
      (await metric(hub, 'hub_sio_recovery_saves_total{result="saved"}')) > saved);
    await notify(hub, 'n2');
    await chat(hub, 'c2');
    await notify(hub, 'n3');
    balancer.release();
    await awaitCount(page, 'connected', 2);
    const second = (await recorded(page, 'connected'))[1];
    check('the client resumed its session after the reset', second.resumed === true, second);
    const closes = (await recorded(page, 'connecting')).filter((c) => c.attempt > 0);
    check('it saw the drop as a connection lost without a close (1006)', closes[0] && closes[0].code === 1006, closes);
    await notify(hub, 'n4');
    await chat(hub, 'c3');
    await awaitNotification(page, 'n4');
    await awaitChat(page, 'c3');
    await deliveredExactly(page, 'after a reset', ['n1', 'n2', 'n3', 'n4'], ['c1', 'c2', 'c3']);

    // A second reset it comes back from at once (before or after the hub noticed: resumed or
    // not, nothing is missed).
    check('a second reset', balancer.cut() === 1);
    await notify(hub, 'n5');
    await chat(hub, 'c4');
    await awaitCount(page, 'connected', 3);
    await notify(hub, 'n6');
    await awaitNotification(page, 'n6');
    await awaitChat(page, 'c4');
    await deliveredExactly(page, 'after a second reset', ['n1', 'n2', 'n3', 'n4', 'n5', 'n6'], ['c1', 'c2', 'c3', 'c4']);
    balancer.close();
  },

  async restart(browser) {
    // `hub` restarts; `second` (same Redis, not in the client's list) takes the API calls.
    const page = await startedWithFirstEvents(browser, [hub + '/ws'], second);
    await stopAndSend('TERM', 2, 2);
    await ask({ ask: 'start', hub: 0 });
    await awaitCount(page, 'connected', 2);
    const afterTerm = (await recorded(page, 'connected'))[1];
    check('after a graceful restart (SIGTERM) the session resumed', afterTerm.resumed === true, afterTerm);
    await notify(second, 'n3');
    await awaitNotification(page, 'n3');
    await awaitChat(page, 'c2');
    await deliveredExactly(page, 'after a graceful restart', ['n1', 'n2', 'n3'], ['c1', 'c2']);

    await stopAndSend('KILL', 4, 3);
    await ask({ ask: 'start', hub: 0 });
    await awaitCount(page, 'connected', 3);
    const afterKill = (await recorded(page, 'connected'))[2];
    check('after a crash (SIGKILL) nothing to resume: a new session, inbox recovered from since',
      afterKill.resumed === false && afterKill.recovered === true, afterKill);
    await awaitChat(page, 'c3');
    await notify(second, 'n5');
    await awaitNotification(page, 'n5');
    const rejoin = (await recorded(page, 'joined')).at(-1);
    check('the room was joined again with since and recovered', rejoin.rejoin && rejoin.recovered === true && rejoin.missed === 1, rejoin);
    await deliveredExactly(page, 'after a crash', ['n1', 'n2', 'n3', 'n4', 'n5'], ['c1', 'c2', 'c3']);
  },

  async token(browser) {
    // Tokens: the first one handed out is already expired, then each lives TTL seconds.
    const TTL = 4;
    let handed = 0;
    let failing = false;
    // The page's token callback calls back into this process.
    const page = await clientPage(browser, hub, [hub + '/ws'], { tokens: true }, (p) => p.exposeFunction('nextToken', () => {
      handed += 1;
      if (failing) throw new Error('the identity provider is down');
      return mintToken(handed === 1 ? -60 : TTL);
    }));
    await started(page);
    const errors = await recorded(page, 'error');
    check('the expired first token was refused (unauthorized) and the callback asked again',
      errors.some((e) => e.code === 'unauthorized') && handed >= 2, { errors, handed });
    const firstSession = (await recorded(page, 'connected'))[0].sessionId;
    const liveSince = Date.now();

    // Refreshed on the live session until well past the first live token's expiry (plus the
    // hub's 5 s leeway): the wait is for the token's expiry, which is a time.
    await page.waitForFunction(({ until }) => Date.now() > until && window.rec.log.filter(([e]) => e === 'token-refreshed').length >= 2,
      { until: liveSince + (TTL + 6) * 1000 }, { timeout: WAIT });
    await notify(hub, 'after-refresh');
    await awaitNotification(page, 'after-refresh');
    const connects = await recorded(page, 'connected');
    check('the session outlived its first tokens: one connection, refreshed through the callback',
      connects.length === 1 && connects[0].sessionId === firstSession, connects);
    check('the hub counted refreshes and no expiry',
      (await metric(hub, 'hub_token_refreshes_total')) >= 2 && (await metric(hub, 'hub_token_expiries_total')) === 0);

    // The callback fails until the token runs out: the hub closes with 4002, the client comes
    // back with a fresh token once the callback works again, and misses nothing.
    failing = true;
    await page.waitForFunction(() => window.rec.log.some(([e, p]) => e === 'connecting' && p.code === 4002),
      null, { timeout: WAIT });
    await notify(hub, 'while-expired');
    failing = false;
    await awaitCount(page, 'connected', 2);
    await awaitNotification(page, 'while-expired');
    await notify(hub, 'fresh');
    await awaitNotification(page, 'fresh');
    check('after an expiry (4002) the client reconnected with a fresh token and missed nothing',
      JSON.stringify((await recorded(page, 'notification')).map((n) => n.title)) === JSON.stringify(['after-refresh', 'while-expired', 'fresh']));
  },

  async 'two-hubs'(browser) {
    const page = await startedWithFirstEvents(browser, [hub + '/ws', second + '/ws'], second);
    check('the client connected to the first hub in its list', (await recorded(page, 'connected'))[0].url.includes(new URL(hub).host));
    await stopAndSend('TERM', 2, 2);
    await awaitCount(page, 'connected', 2);
    const moved = (await recorded(page, 'connected'))[1];
    check('it went on at the second hub with its session', moved.url.includes(new URL(second).host) && moved.resumed === true, moved);
    await notify(second, 'n3');
    await chat(second, 'c3');
    await awaitNotification(page, 'n3');
    await awaitChat(page, 'c3');
    await deliveredExactly(page, 'across two hubs', ['n1', 'n2', 'n3'], ['c1', 'c2', 'c3']);

    // The application disconnects the user (close 4003): the client stops and stays stopped.
    await post(second, `/api/users/${USER}/disconnect`, {});
    await awaitCount(page, 'disconnected', 1);
    const ended = await page.evaluate(() => ({ state: window.client.state, log: window.rec.log.slice(-2) }));
    check('a server disconnect (4003) stops the client: it does not fight it',
      ended.state === 'disconnected' && JSON.stringify(ended.log.at(-1)) === JSON.stringify(['disconnected', { code: 4003, reason: 'disconnected by the server' }]), ended);
  },
};

run(async () => {
  const scenario = scenarios[config.scenario];
  if (!scenario) throw new Error(`unknown scenario ${config.scenario}`);
  const browser = await launch();
  try {
    await scenario(browser);
    check('no script errors in the page', pageErrors.length === 0, pageErrors);
  } finally {
    await browser.close();
  }
});
