// The client against the real fanout-server: connect, subscribe, receive in
// order, publish, history, RPCs, `for await`, and Node's own WebSocket.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { WebSocket } from 'ws';
import { Client, RpcError, ErrorCodes } from '../dist/index.js';
import { startServer, publish, signJwt, nowSeconds, JWT_SECRET } from './support/server.mjs';
import { next } from './support/wait.mjs';
import { packageRoot } from './support/paths.mjs';

let server;
before(async () => {
  server = await startServer({ args: ['--jwt-secret', JWT_SECRET] });
});
after(async () => {
  await server.stop();
});

const token = (claims = {}) =>
  signJwt({ sub: 'tester', exp: nowSeconds() + 3600, subscribe: ['*'], publish: ['*'], ...claims });

test('connects, subscribes, and receives every publication in order', async () => {
  const client = new Client(server.ws, { WebSocket, token: token() });
  const sub = client.subscribe('basics.order');
  const got = [];
  sub.on('publication', (p) => got.push(p));
  const gaps = [];
  sub.on('gap', (g) => gaps.push(g));
  client.connect();
  const joined = await sub.ready();
  assert.equal(joined.resubscribed, false);
  assert.equal(joined.recovered, undefined, 'no since, no recovery flag');
  assert.equal(client.state, 'connected');
  const all = next(sub, 'publication', (p) => p.data.i === 49);
  for (let i = 0; i < 50; i++) await publish(server, 'basics.order', { i });
  await all;
  assert.deepEqual(got.map((p) => p.data.i), [...Array(50).keys()]);
  assert.deepEqual(got.map((p) => p.seq), got.map((_, i) => joined.seq + 1 + i), 'consecutive seq');
  assert.ok(got.every((p) => p.topic === 'basics.order' && p.epoch === joined.epoch && p.ts > 0));
  assert.deepEqual(sub.position, { epoch: joined.epoch, seq: joined.seq + 50 });
  assert.deepEqual(gaps, []);
  client.close();
  assert.equal(client.state, 'closed');
  assert.equal(sub.state, 'unsubscribed');
});

test('publish, history and call are promises; errors are RpcErrors', async () => {
  const client = new Client(server.ws, { WebSocket, token: token({ publish: ['rpc.*'] }) });
  client.connect(); // calls made before the connection opens wait for it
  const r = await client.publish('rpc.a', { hello: 1 });
  assert.equal(typeof r.seq, 'number');
  assert.ok(r.seq >= 1);
  await client.publish('rpc.a', { hello: 2 });
  const page = await client.history('rpc.a', { limit: 10 });
  assert.deepEqual(page.publications.map((p) => p.data), [{ hello: 1 }, { hello: 2 }]);
  assert.equal(page.seq, r.seq + 1);
  const since = await client.history('rpc.a', { since: r.seq });
  assert.deepEqual(since.publications.map((p) => p.data), [{ hello: 2 }]);
  assert.equal(await client.call('ping'), 'pong');
  await assert.rejects(client.publish('other', 1), (e) => e instanceof RpcError && e.code === ErrorCodes.PERMISSION_DENIED);
  await assert.rejects(client.call('no.such.method'), (e) => e instanceof RpcError && e.code === ErrorCodes.METHOD_NOT_FOUND);
  // A refused subscription ends with an error.
  const denied = client.subscribe('$sys.stats');
  await assert.rejects(denied.ready(), (e) => e instanceof RpcError && e.code === ErrorCodes.PERMISSION_DENIED);
  assert.equal(denied.state, 'unsubscribed');
  assert.equal(client.getSubscription('$sys.stats'), undefined);
  client.close();
  await assert.rejects(client.publish('rpc.a', 3), { name: 'ClosedError' });
});

test('a call times out when no answer comes', async () => {
  const client = new Client('ws://127.0.0.1:9/ws', { WebSocket, token: token(), timeout: 200, backoff: { minDelay: 50, maxDelay: 100 } });
  client.connect();
  // Port 9 refuses: never connected, so the call times out waiting.
  await assert.rejects(client.call('ping'), { name: 'TimeoutError' });
  client.close();
});

test('for await iterates publications in order, and ends at unsubscribe', async () => {
  const client = new Client(server.ws, { WebSocket, token: token() });
  const sub = client.subscribe('iter.t');
  client.connect();
  await sub.ready();
  const seen = [];
  const loop = (async () => {
    for await (const p of sub) {
      seen.push(p.data);
      if (seen.length === 5) await sub.unsubscribe();
    }
  })();
  for (let i = 0; i < 5; i++) await publish(server, 'iter.t', i);
  await loop; // ends because unsubscribe ended the iterator
  assert.deepEqual(seen, [0, 1, 2, 3, 4]);
  assert.equal(sub.state, 'unsubscribed');
  client.close();
});

test('latest: the topic\'s last message first, then live ones', async () => {
  await publish(server, 'latest.t', 'old');
  await publish(server, 'latest.t', 'last');
  const client = new Client(server.ws, { WebSocket, token: token() });
  const sub = client.subscribe('latest.t', { latest: true });
  const first = next(sub, 'publication');
  client.connect();
  assert.equal((await first).data, 'last');
  client.close();
});

test('subscribing with since a saved position replays what was missed', async () => {
  const a = new Client(server.ws, { WebSocket, token: token() });
  const sub = a.subscribe('since.t');
  a.connect();
  await sub.ready();
  const one = next(sub, 'publication');
  await publish(server, 'since.t', 1);
  await one;
  const saved = sub.position;
  a.close();
  await publish(server, 'since.t', 2);
  await publish(server, 'since.t', 3);
  const b = new Client(server.ws, { WebSocket, token: token() });
  const again = b.subscribe('since.t', { since: saved });
  const got = [];
  again.on('publication', (p) => got.push(p.data));
  const rec = next(again, 'recovered');
  const last = next(again, 'publication', (p) => p.data === 3);
  b.connect();
  assert.equal((await rec).missed, 2);
  await last;
  assert.deepEqual(got, [2, 3]);
  b.close();
});

test('Node\'s global WebSocket is used when there is one (node --experimental-websocket)', async () => {
  const script = `
    import { Client } from './dist/index.js';
    const c = new Client(${JSON.stringify(server.ws)}, { token: ${JSON.stringify(token())} });
    c.connect();
    const r = await c.call('ping');
    console.log(r);
    c.close();
  `;
  const child = spawn(process.execPath, ['--experimental-websocket', '--no-warnings', '--input-type=module', '-e', script], {
    cwd: packageRoot,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  const code = await new Promise((r) => child.on('exit', r));
  assert.equal(code, 0);
  assert.equal(out.trim(), 'pong');
});

test('without a WebSocket implementation the constructor says what to pass', () => {
  if (globalThis.WebSocket) return; // Node >= 22 has one
  assert.throws(() => new Client(server.ws), /pass \{ WebSocket \}/);
});
