// The client's logic without a server: backoff, close-code advice, order and
// gap detection, held pushes, lag notices, binary pushes (a fake WebSocket
// plays the server).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Backoff, Client, adviceFor, jwtExpiry } from '../dist/index.js';

test('backoff doubles up to the cap, jittered within [d/2, d], and resets', () => {
  const lo = new Backoff({ minDelay: 100, maxDelay: 1000 }, () => 0);
  assert.deepEqual([1, 2, 3, 4, 5, 6].map(() => lo.next()), [50, 100, 200, 400, 500, 500]);
  const hi = new Backoff({ minDelay: 100, maxDelay: 1000 }, () => 1);
  assert.deepEqual([1, 2, 3, 4, 5].map(() => hi.next()), [100, 200, 400, 800, 1000]);
  hi.reset();
  assert.equal(hi.next(), 100);
  const later = new Backoff({ minDelay: 100, maxDelay: 1000, laterDelay: 5000 }, () => 0);
  assert.equal(later.next(true), 5000, '"reconnect later" waits at least laterDelay');
});

test('close codes: the protocol\'s three groups', () => {
  for (const c of [1001, 4000, 4001, 4002, 4099, 1006, 1000]) assert.equal(adviceFor(c), 'reconnect', String(c));
  for (const c of [1013, 4100, 4199]) assert.equal(adviceFor(c), 'reconnect-later', String(c));
  for (const c of [1002, 1007, 1009, 4200, 4999]) assert.equal(adviceFor(c), 'stop', String(c));
});

test('jwtExpiry reads exp, and nothing from what is not a JWT', () => {
  const b64 = (v) => Buffer.from(JSON.stringify(v)).toString('base64url');
  assert.equal(jwtExpiry(`${b64({ alg: 'HS256' })}.${b64({ exp: 1893456000 })}.sig`), 1893456000);
  assert.equal(jwtExpiry(`${b64({})}.${b64({ sub: 'x' })}.sig`), undefined);
  assert.equal(jwtExpiry('not a jwt'), undefined);
});

/** A WebSocket the test drives: it answers `subscribe` as told and pushes what the test sends. */
class FakeSocket {
  static last;
  constructor(url) {
    this.url = url;
    this.sent = [];
    this.readyState = 0;
    FakeSocket.last = this;
    queueMicrotask(() => {
      this.readyState = 1;
      this.onopen?.({});
    });
  }
  send(text) {
    this.sent.push(JSON.parse(text));
  }
  close() {
    this.readyState = 3;
  }
  /** The server sends `v` (an object, or raw bytes). */
  push(v) {
    this.onmessage?.({ data: v instanceof ArrayBuffer ? v : JSON.stringify(v) });
  }
  /** Answers call `id`, and waits until the client has handled the answer (a promise job). */
  reply(id, result) {
    this.push({ jsonrpc: '2.0', id, result });
    return new Promise((r) => setImmediate(r));
  }
}

const pub = (seq, data, epoch = 7, topic = 't') => ({ topic, seq, epoch, ts: 1, payload: data });

async function connected(opts = {}) {
  const client = new Client('ws://fake/ws', { WebSocket: FakeSocket, pingInterval: 0, ...opts });
  const sub = client.subscribe('t');
  const events = [];
  for (const e of ['publication', 'gap', 'lagged', 'subscribed']) sub.on(e, (v) => events.push([e, v]));
  client.connect();
  await new Promise((r) => client.once('connected', r));
  const ws = FakeSocket.last;
  const req = ws.sent.find((m) => m.method === 'subscribe');
  return { client, sub, ws, req, events };
}

test('pushes before the subscribe answer are held, then delivered past the join position', async () => {
  const { sub, ws, req, events } = await connected();
  ws.push(pub(5, 'early: before the join position'));
  ws.push(pub(6, 'early: after it'));
  await ws.reply(req.id, { topic: 't', subscribed: true, joined: true, epoch: 7, seq: 5 });
  assert.equal(sub.state, 'subscribed');
  assert.deepEqual(
    events.filter(([e]) => e === 'publication').map(([, p]) => p.data),
    ['early: after it'],
  );
  // ready() first called after the join resolves with it.
  const late = await Promise.race([
    sub.ready(),
    new Promise((_, reject) => setTimeout(() => reject(new Error('ready() never resolved')), 10_000)),
  ]);
  assert.equal(late.seq, 5);
});

test('a seq that skips ahead is a gap with its count; a repeated seq is dropped; a new epoch is a gap', async () => {
  const { ws, req, events, sub } = await connected();
  await ws.reply(req.id, { topic: 't', subscribed: true, joined: true, epoch: 7, seq: 0 });
  ws.push(pub(1, 'a'));
  ws.push(pub(1, 'a again'));
  ws.push({ lagged: 2, topic: 't' });
  ws.push(pub(4, 'd'));
  ws.push(pub(1, 'new stream', 8));
  const seen = events.filter(([e]) => e !== 'subscribed').map(([e, v]) => (e === 'publication' ? v.data : [e, v.reason ?? v.count, v.missed]));
  assert.deepEqual(seen, ['a', ['lagged', 2, undefined], ['gap', 'lost', 2], 'd', ['gap', 'epoch_changed', undefined], 'new stream']);
  assert.deepEqual(sub.position, { epoch: 8, seq: 1 });
});

test('a lag notice without a topic goes to the client; a direct message is a client event', async () => {
  const { client, ws, req } = await connected();
  await ws.reply(req.id, { topic: 't', subscribed: true, joined: true, epoch: 7, seq: 0 });
  const lag = new Promise((r) => client.once('lagged', r));
  const msg = new Promise((r) => client.once('message', r));
  ws.push({ lagged: 3, topic: null });
  ws.push({ topic: null, seq: 0, epoch: 0, ts: 1, payload: { hi: 1 } });
  assert.deepEqual(await lag, { count: 3, topic: null });
  assert.deepEqual((await msg).data, { hi: 1 });
});

test('a binary push is delivered as bytes', async () => {
  const { ws, req, events } = await connected();
  await ws.reply(req.id, { topic: 't', subscribed: true, joined: true, epoch: 7, seq: 0 });
  const payload = [0xde, 0xad];
  const buf = new ArrayBuffer(2 + 1 + 24 + payload.length);
  const v = new DataView(buf);
  v.setUint8(0, 1);
  v.setUint8(1, 1);
  v.setUint8(2, 't'.charCodeAt(0));
  v.setBigUint64(3, 1n);
  v.setBigUint64(11, 7n);
  v.setBigUint64(19, 1234n);
  new Uint8Array(buf, 27).set(payload);
  ws.push(buf);
  const [, p] = events.find(([e]) => e === 'publication');
  assert.equal(p.binary, true);
  assert.deepEqual([...p.data], payload);
  assert.equal(p.ts, 1234);
});

test('the token goes in the URL', async () => {
  const client = new Client('ws://fake/ws?x=1', { WebSocket: FakeSocket, pingInterval: 0, token: 'a b' });
  client.connect();
  await new Promise((r) => client.once('connected', r));
  assert.equal(FakeSocket.last.url, 'ws://fake/ws?x=1&token=a%20b');
  client.close();
});
