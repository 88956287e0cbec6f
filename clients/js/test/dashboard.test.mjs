// The dashboard in headless Chromium against a server under a small load:
// the numbers move, they agree with /metrics, and the page follows the
// permissions of $sys.stats. The screenshot goes to test-results/ (and to
// $FANOUT_SCREENSHOT when set: `npm run screenshot` writes docs/dashboard.png).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { WebSocket } from 'ws';
import { Client } from '../dist/index.js';
import { startServer, metrics, signJwt, nowSeconds, JWT_SECRET, API_KEY } from './support/server.mjs';
import { launch } from './support/browser.mjs';
import { packageRoot } from './support/paths.mjs';

const LONG = { timeout: 30_000 };
const TEST = { timeout: 120_000 + 2_000 * Number(process.env.FANOUT_SCREENSHOT_SAMPLES ?? 0) };
let chrome;
before(async () => {
  chrome = await launch();
});
after(async () => {
  await chrome?.close();
});

/** Publishes batches to `topics` until `stop()`; at most `limit` batches. */
function load(server, topics, { payload = 'x'.repeat(200), every = 20, limit = 10_000 } = {}) {
  let running = true;
  const done = (async () => {
    for (let i = 0; running && i < limit; i++) {
      const batch = topics.map((topic) => ({ topic, payload: { i, pad: payload } }));
      await fetch(`${server.http}/api/publish`, {
        method: 'POST',
        headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' },
        body: JSON.stringify(batch),
      });
      await new Promise((r) => setTimeout(r, every)); // pacing of the load, not synchronisation
    }
  })();
  return async () => {
    running = false;
    await done;
  };
}

/** Waits (event-driven, with one overall timeout) for `fn(arg)` to be true in the page; fails naming `what`. */
async function waitPage(page, what, fn, arg = null, timeout = LONG.timeout) {
  try {
    await page.waitForFunction(fn, arg, { timeout });
  } catch (e) {
    throw new Error(`the page never showed ${what}: ${e.message}`);
  }
}

/** The page's figures: `data-value` of every <output data-metric>. */
const pageFigures = (page) =>
  page.evaluate(() => {
    const out = {};
    for (const el of document.querySelectorAll('output[data-metric]')) out[el.dataset.metric] = el.dataset.value;
    for (const id of ['publish-rate', 'delivery-rate', 'latency']) out[id] = document.getElementById(id).dataset.value;
    const main = document.querySelector('main');
    out.samples = Number(main.dataset.samples ?? 0);
    out.ts = Number(main.dataset.ts ?? 0);
    return out;
  });

test('under load, the dashboard\'s numbers move and agree with /metrics', TEST, async () => {
  const server = await startServer({ args: ['--max-queued-bytes', '65536', '--write-timeout', '1s'] });
  // 12 subscribers on 3 topics, and one client that stops reading.
  const clients = [];
  for (let i = 0; i < 12; i++) {
    const c = new Client(server.ws, { WebSocket });
    c.subscribe(`load.${i % 3}`);
    c.connect();
    clients.push(c);
  }
  await Promise.all(clients.map((c) => c.subscriptions()[0].ready()));
  const stalled = new WebSocket(server.ws);
  await new Promise((r) => stalled.once('open', r));
  stalled.send(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'subscribe', params: { topic: 'load.big' } }));
  await new Promise((r) => stalled.once('message', r));
  stalled._socket.pause(); // reads nothing more: a slow consumer
  const stopSmall = load(server, ['load.0', 'load.1', 'load.2']);
  const stopBig = load(server, ['load.big'], { payload: 'y'.repeat(60_000) });

  const { page, errors } = await chrome.page();
  try {
    await page.goto(server.http + '/');
    // The numbers move: deliveries per second, and the stalled client evicted.
    await waitPage(page, 'deliveries per second', () => Number(document.getElementById('delivery-rate').dataset.value) > 0);
    // The stalled client is dropped as a slow consumer: by the engine (its
    // queue overflowed), by the transport (4001), or when its socket took
    // nothing for the write timeout, whichever comes first.
    await waitPage(page, 'the slow consumer dropped', () =>
      ['evicted-slow_consumer', 'closed-slow_consumer', 'closed-write_timeout']
        .map((id) => Number(document.getElementById(id).dataset.value))
        .some((v) => v >= 1),
    );
    await stopBig();
    await waitPage(page, 'the slow consumer gone', () => document.getElementById('connections').dataset.value === '13');
    // Counters: a sample published after /metrics was read shows at least
    // its values, and at most those of /metrics read after it was shown.
    const before = await metrics(server);
    const readAt = Date.now();
    await waitPage(page, 'a sample after /metrics was read', (t) => Number(document.querySelector('main').dataset.ts) > t, readAt);
    const shown = await pageFigures(page);
    const afterM = await metrics(server);
    for (const name of [
      'fanout_published_total',
      'fanout_delivered_total',
      'fanout_connections_accepted_total',
      'fanout_dropped_total{reason="full"}',
      'fanout_lag_notices_total',
    ]) {
      const v = Number(shown[name]);
      assert.ok(before[name] <= v && v <= afterM[name], `${name}: ${before[name]} <= ${v} <= ${afterM[name]}`);
    }
    // Gauges and the eviction counts do not move any more: equal.
    for (const name of [
      'fanout_connections',
      'fanout_subscriptions',
      'fanout_topics',
      'fanout_evicted_total{reason="slow_consumer"}',
      'fanout_connections_closed_total{reason="slow_consumer"}',
      'fanout_connections_closed_total{reason="write_timeout"}',
    ]) {
      assert.equal(Number(shown[name]), afterM[name], name);
      assert.equal(before[name], afterM[name], `${name} is steady`);
    }
    // 12 load clients and the page itself; 12 + 1 subscriptions.
    assert.equal(Number(shown.fanout_connections), 13);
    assert.equal(Number(shown.fanout_subscriptions), 13);
    assert.ok(Number(shown.fanout_published_total) > 0);
    assert.ok(Number(shown['publish-rate']) > 0);
    assert.ok(Number(shown['delivery-rate']) > 0);
    const latency = Number(shown.latency);
    assert.ok(Number.isFinite(latency) && latency >= 0, `latency ${shown.latency}`);
    // A few more samples for the charts (FANOUT_SCREENSHOT_SAMPLES: more,
    // for the README's picture), then the picture.
    const more = Number(process.env.FANOUT_SCREENSHOT_SAMPLES ?? 3);
    await waitPage(page, `${more} more samples`, (n) => Number(document.querySelector('main').dataset.samples) >= n, shown.samples + more, LONG.timeout + 2_000 * more);
    const dir = path.join(packageRoot, 'test-results');
    mkdirSync(dir, { recursive: true });
    await page.screenshot({ path: path.join(dir, 'dashboard.png'), fullPage: true });
    if (process.env.FANOUT_SCREENSHOT) {
      await page.screenshot({ path: path.resolve(packageRoot, process.env.FANOUT_SCREENSHOT), fullPage: true });
    }
    assert.deepEqual(errors.map(String), []);
  } finally {
    await page.close();
    await stopSmall();
    await stopBig();
    stalled.terminate();
    for (const c of clients) c.close();
    await server.stop();
  }
});

test('the dashboard follows the permissions of $sys.stats', TEST, async () => {
  const server = await startServer({ args: ['--jwt-secret', JWT_SECRET] });
  let { page } = await chrome.page();
  try {
    await page.goto(server.http + '/');
    // No token: the page asks for one.
    await page.waitForSelector('#token-form:not([hidden])', LONG);
    // A token without $sys.stats: refused, and said so.
    const plain = signJwt({ sub: 'viewer', exp: nowSeconds() + 600, subscribe: ['*'] });
    await page.fill('#token', plain);
    await page.click('#token-form button');
    await page.waitForSelector('#status[data-state="refused"]', LONG);
    assert.match(await page.textContent('#problem'), /Not allowed to read \$sys\.stats/);
    assert.equal(await page.getAttribute('#connections', 'data-value'), null, 'no figure shown');
    // A token that grants it (given in the fragment, on a new page): figures.
    await page.close();
    ({ page } = await chrome.page());
    const ops = signJwt({ sub: 'ops', exp: nowSeconds() + 600, subscribe: ['$sys.stats'] });
    await page.goto(`${server.http}/#token=${ops}`);
    await page.waitForFunction(() => Number(document.getElementById('connections').dataset.value) >= 1, null, LONG);
    assert.equal(await page.getAttribute('#status', 'data-state'), 'connected');
    assert.equal(new URL(page.url()).hash, '', 'the token left the address bar');
  } finally {
    await page.close();
    await server.stop();
  }
});

test('--dashboard-path moves it, --no-dashboard removes it', async () => {
  const moved = await startServer({ args: ['--dashboard-path', '/ops'] });
  const off = await startServer({ args: ['--no-dashboard'] });
  try {
    const r = await fetch(`${moved.http}/ops`, { redirect: 'manual' });
    assert.equal(r.status, 308);
    assert.equal(r.headers.get('location'), '/ops/');
    const page = await fetch(`${moved.http}/ops/`);
    assert.equal(page.status, 200);
    assert.match(await page.text(), /fanout dashboard/);
    assert.equal((await fetch(`${moved.http}/ops/client/index.js`)).status, 200);
    assert.equal((await fetch(`${moved.http}/`)).status, 404);
    assert.equal((await fetch(`${off.http}/`)).status, 404);
    assert.equal((await fetch(`${off.http}/client/index.js`)).status, 404);
  } finally {
    await moved.stop();
    await off.stop();
  }
});
