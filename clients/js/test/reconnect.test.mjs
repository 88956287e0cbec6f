// Reconnecting: after a server restart, after the network is cut (with
// recovery of what was missed), after "reconnect later", and the close codes
// that forbid it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WebSocket } from 'ws';
import { Client } from '../dist/index.js';
import { startServer, publish, freePort, tcpProxy } from './support/server.mjs';
import { next, record } from './support/wait.mjs';

const fast = { minDelay: 20, maxDelay: 200, laterDelay: 300 };

test('after the server restarts: reconnects, resubscribes, and reports the lost stream', async () => {
  const port = await freePort();
  let server = await startServer({ port });
  const client = new Client(server.ws, { WebSocket, backoff: fast });
  const sub = client.subscribe('restart.t');
  const gaps = record(sub, 'gap');
  const subscribed = record(sub, 'subscribed');
  client.connect();
  await sub.ready();
  const first = next(sub, 'publication');
  await publish(server, 'restart.t', 'before');
  await first;

  const down = next(client, 'disconnected');
  await server.stop(); // graceful drain: close 1001
  const d = await down;
  assert.equal(d.code, 1001);
  assert.equal(d.advice, 'reconnect');

  const back = next(sub, 'subscribed', (e) => e.resubscribed);
  server = await startServer({ port });
  const again = await back;
  // A restarted server starts new streams: not recoverable, and said so.
  assert.equal(again.recovered, false);
  assert.equal(again.reason, 'epoch_changed');
  assert.equal(gaps.length, 1);
  assert.equal(gaps[0].reason, 'epoch_changed');
  assert.equal(subscribed.length, 2);

  const live = next(sub, 'publication');
  await publish(server, 'restart.t', 'after');
  const p = await live;
  assert.equal(p.data, 'after');
  assert.equal(p.epoch, again.epoch);
  client.close();
  await server.stop();
});

test('after the network is cut: resubscribes with since and recovers every missed message, in order', async () => {
  const server = await startServer();
  const proxy = await tcpProxy(server.port);
  const client = new Client(proxy.ws, { WebSocket, backoff: fast });
  const sub = client.subscribe('recover.t');
  const got = [];
  sub.on('publication', (p) => got.push(p));
  const gaps = record(sub, 'gap');
  client.connect();
  const joined = await sub.ready();
  const three = next(sub, 'publication', (p) => p.data === 3);
  for (const i of [1, 2, 3]) await publish(server, 'recover.t', i);
  await three;

  // The network fails: no close frame; the proxy refuses new connections
  // until the messages below are published, so they are missed for sure.
  const down = next(client, 'disconnected');
  proxy.cut({ block: true });
  const d = await down;
  assert.equal(d.advice, 'reconnect');
  assert.equal(d.code, 1006);
  for (const i of [4, 5, 6]) await publish(server, 'recover.t', i);

  const recovered = next(sub, 'recovered');
  const six = next(sub, 'publication', (p) => p.data === 6);
  proxy.unblock();
  const r = await recovered;
  assert.equal(r.missed, 3);
  await six;
  const live = next(sub, 'publication', (p) => p.data === 7);
  await publish(server, 'recover.t', 7);
  await live;
  assert.deepEqual(got.map((p) => p.data), [1, 2, 3, 4, 5, 6, 7]);
  assert.deepEqual(got.map((p) => p.seq), [1, 2, 3, 4, 5, 6, 7].map((i) => joined.seq + i));
  assert.deepEqual(gaps, [], 'recovered: no gap');
  client.close();
  await proxy.close();
  await server.stop();
});

test('"reconnect later" (4100 rate limit) waits the long backoff, then comes back', async () => {
  const server = await startServer({ args: ['--rate-limit', '1', '--rate-burst', '2', '--rate-strikes', '2'] });
  const client = new Client(server.ws, { WebSocket, backoff: fast, pingInterval: 0 });
  const sub = client.subscribe('later.t');
  client.connect();
  await sub.ready();
  const down = next(client, 'disconnected');
  // Past the rate limit: refused calls (-32003), then close 4100.
  for (let i = 0; i < 10; i++) client.call('ping').catch(() => {});
  const d = await down;
  assert.equal(d.code, 4100);
  assert.equal(d.advice, 'reconnect-later');
  assert.ok(d.reconnectIn >= fast.laterDelay, `waits at least laterDelay, got ${d.reconnectIn}`);
  const back = await next(sub, 'subscribed', (e) => e.resubscribed);
  assert.equal(back.recovered, true);
  client.close();
  await server.stop();
});

test('a close code that forbids reconnecting (1009 message too big) closes the client for good', async () => {
  const server = await startServer({ args: ['--max-message-size', '1024'] });
  const client = new Client(server.ws, { WebSocket, backoff: fast });
  const connecting = record(client, 'connecting');
  const sub = client.subscribe('big.t');
  const ended = next(sub, 'unsubscribed');
  client.connect();
  await sub.ready();
  const closed = next(client, 'closed');
  const call = client.call('publish', { topic: 'big.t', payload: 'x'.repeat(4096) });
  const c = await closed;
  assert.equal(c.code, 1009);
  assert.equal(client.state, 'closed');
  await assert.rejects(call);
  await ended;
  assert.equal(connecting.length, 1, 'no second attempt');
  assert.throws(() => client.connect(), { name: 'ClosedError' });
  await server.stop();
});
