// Tokens: refreshed before `exp` on the same connection; a function called
// again on reconnect; a plain token that expires ends the client.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { WebSocket } from 'ws';
import { Client, jwtExpiry } from '../dist/index.js';
import { startServer, publish, signJwt, nowSeconds, JWT_SECRET } from './support/server.mjs';
import { next, record } from './support/wait.mjs';

let server;
before(async () => {
  server = await startServer({ args: ['--jwt-secret', JWT_SECRET] });
});
after(async () => {
  await server.stop();
});

const fast = { minDelay: 20, maxDelay: 200 };
const shortToken = (seconds, sub = 'alice') =>
  signJwt({ sub, exp: nowSeconds() + seconds, subscribe: ['tok.*'] });

/** A token function that gives `pick(n)` at its n-th call (from 1), and counts the calls. */
function tokens(pick) {
  const t = { calls: 0, source: () => pick(++t.calls) };
  return t;
}

test('a token function: refresh before exp keeps the connection past the first token\'s exp', async () => {
  let firstExp;
  const t = tokens(() => {
    const token = shortToken(3);
    firstExp ??= jwtExpiry(token);
    return token;
  });
  const client = new Client(server.ws, { WebSocket, token: t.source });
  const disconnects = record(client, 'disconnected');
  const sub = client.subscribe('tok.refresh');
  client.connect();
  await sub.ready();
  for (let i = 0; i < 3; i++) {
    const r = await next(client, 'refreshed');
    assert.ok(r.expires > 0);
  }
  // Each refresh comes halfway to an exp at least 2 s away: three take at
  // least 3 s, so the first token (at most 3 s) has expired by now.
  assert.ok(Date.now() / 1000 >= firstExp, 'ran past the first exp');
  const live = next(sub, 'publication');
  await publish(server, 'tok.refresh', 'still here');
  assert.equal((await live).data, 'still here');
  assert.deepEqual(disconnects, [], 'one connection all along');
  assert.equal(t.calls, 4, 'once to connect, once per refresh');
  client.close();
});

test('a refreshed token that grants less: the subscriptions it does not grant end', async () => {
  const t = tokens((n) =>
    signJwt({ sub: 'alice', exp: nowSeconds() + (n === 1 ? 3 : 3600), subscribe: n === 1 ? ['tok.*'] : ['tok.keep'] }),
  );
  const client = new Client(server.ws, { WebSocket, token: t.source });
  const keep = client.subscribe('tok.keep');
  const drop = client.subscribe('tok.drop');
  client.connect();
  await Promise.all([keep.ready(), drop.ready()]);
  const ended = next(drop, 'unsubscribed');
  await next(client, 'refreshed');
  assert.match((await ended).reason, /does not grant/);
  assert.equal(drop.state, 'unsubscribed');
  assert.equal(client.getSubscription('tok.drop'), undefined);
  assert.equal(keep.state, 'subscribed');
  const live = next(keep, 'publication');
  await publish(server, 'tok.keep', 'kept');
  assert.equal((await live).data, 'kept');
  client.close();
});

test('a refused refresh: closed at exp (4002), then back with a new token from the function', async () => {
  // The refresh (2nd call) gets a token of another subject: refused.
  const t = tokens((n) => (n === 1 ? shortToken(2) : n === 2 ? shortToken(60, 'mallory') : shortToken(3600)));
  const client = new Client(server.ws, { WebSocket, backoff: fast, token: t.source });
  const errors = record(client, 'error');
  const sub = client.subscribe('tok.expire');
  client.connect();
  await sub.ready();
  const d = await next(client, 'disconnected');
  assert.equal(d.code, 4002);
  assert.equal(d.advice, 'reconnect');
  assert.equal(errors.length, 1);
  assert.match(errors[0].error.message, /another subject/);
  const back = await next(sub, 'subscribed', (e) => e.resubscribed);
  assert.equal(back.recovered, true);
  assert.equal(t.calls, 3);
  client.close();
});

test('a plain token that expires: closed for good (4002), no reconnect', async () => {
  const client = new Client(server.ws, { WebSocket, backoff: fast, token: shortToken(2) });
  const connecting = record(client, 'connecting');
  const refreshed = record(client, 'refreshed');
  client.connect();
  const c = await next(client, 'closed');
  assert.equal(c.code, 4002);
  assert.equal(client.state, 'closed');
  assert.equal(connecting.length, 1);
  assert.equal(refreshed.length, 0, 'a plain string is never refreshed');
});

test('a token the server refuses at the upgrade: retried with backoff, the function called each time', async () => {
  const wrong = () => signJwt({ sub: 'x', exp: nowSeconds() + 60 }, 'a-wrong-secret-of-at-least-32-bytes!!!');
  const t = tokens((n) => (n < 3 ? wrong() : shortToken(60)));
  const client = new Client(server.ws, { WebSocket, backoff: fast, token: t.source });
  client.connect();
  await next(client, 'connected');
  assert.equal(t.calls, 3);
  client.close();
});
