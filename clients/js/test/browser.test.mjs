// The client library in headless Chromium, on a page the server serves: the
// same smoke test as in Node (connect, subscribe, receive, and recovery after
// the network is cut), with the browser's own WebSocket.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, publish, tcpProxy } from './support/server.mjs';
import { launch } from './support/browser.mjs';

let server, proxy, chrome;
before(async () => {
  server = await startServer();
  // The page and its WebSocket both go through the proxy (one origin), so
  // that the test can cut the browser's connection.
  proxy = await tcpProxy(server.port);
  chrome = await launch();
});
after(async () => {
  await chrome?.close();
  await proxy?.close();
  await server?.stop();
});

test('in Chromium: connect, subscribe, receive in order, recover after the network is cut', async () => {
  const { page, errors } = await chrome.page();
  await page.goto(`http://127.0.0.1:${proxy.port}/`);
  // The client as the page gets it: the server's embedded build.
  await page.evaluate(async () => {
    const { Client } = await import('/client/index.js');
    const url = `ws://${location.host}/ws`;
    const client = new Client(url, { backoff: { minDelay: 20, maxDelay: 200 } });
    const sub = client.subscribe('browser.t');
    const log = (window.smoke = { got: [], gaps: [], recovered: [], states: [], joined: null });
    sub.on('publication', (p) => log.got.push({ seq: p.seq, data: p.data }));
    sub.on('gap', (g) => log.gaps.push(g));
    sub.on('recovered', (r) => log.recovered.push(r));
    client.on('state', (s) => log.states.push(s));
    client.connect();
    log.joined = await sub.ready();
    window.smokeClient = client;
  });
  for (const i of [1, 2, 3]) await publish(server, 'browser.t', i);
  await page.waitForFunction(() => window.smoke.got.length === 3, null, { timeout: 30_000 });

  proxy.cut({ block: true });
  await page.waitForFunction(() => window.smoke.states.includes('disconnected'), null, { timeout: 30_000 });
  for (const i of [4, 5, 6]) await publish(server, 'browser.t', i);
  proxy.unblock();
  await page.waitForFunction(() => window.smoke.got.length === 6, null, { timeout: 30_000 });

  const smoke = await page.evaluate(() => window.smoke);
  assert.deepEqual(smoke.got.map((p) => p.data), [1, 2, 3, 4, 5, 6]);
  assert.deepEqual(smoke.got.map((p) => p.seq), [1, 2, 3, 4, 5, 6].map((i) => smoke.joined.seq + i));
  assert.equal(smoke.recovered.length, 1);
  assert.equal(smoke.recovered[0].missed, 3);
  assert.deepEqual(smoke.gaps, []);
  assert.equal(smoke.states.filter((s) => s === 'connected').length, 2, 'connected, cut, connected again');
  await page.evaluate(() => window.smokeClient.close());
  assert.deepEqual(errors.map(String), [], 'no error on the page');
});
