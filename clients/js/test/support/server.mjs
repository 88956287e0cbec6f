// The real fanout-server for the tests: start (on a port of our choosing, so
// that a restart comes back on the same one), stop, publish, /metrics, tokens,
// and a TCP proxy that can cut every connection (a network failure).
import { spawn } from 'node:child_process';
import { createHmac } from 'node:crypto';
import net from 'node:net';
import readline from 'node:readline';
import { serverBinary } from './paths.mjs';

export const API_KEY = 'test-api-key';
export const JWT_SECRET = 'a-test-secret-of-at-least-32-bytes!!';

/** A port nobody listens on now. */
export async function freePort() {
  const srv = net.createServer();
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address();
  await new Promise((r) => srv.close(r));
  return port;
}

/**
 * Starts fanout-server on 127.0.0.1:`port` with `args`, and resolves once it
 * logged that it listens. Returns { port, http, ws, stop(), kill(), exited }.
 */
export async function startServer({ port, args = [] } = {}) {
  port ??= await freePort();
  const child = spawn(
    serverBinary(),
    ['--listen', `127.0.0.1:${port}`, '--api-key', API_KEY, '--log-format', 'json', ...args],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  const log = [];
  await new Promise((resolve, reject) => {
    const lines = readline.createInterface({ input: child.stderr });
    lines.on('line', (line) => {
      log.push(line);
      if (log.length > 200) log.shift();
      try {
        if (JSON.parse(line).fields?.message === 'listening') resolve();
      } catch {
        // not a JSON line
      }
    });
    exited.then(({ code }) => reject(new Error(`fanout-server exited (${code}) before listening:\n${log.join('\n')}`)));
  });
  const http = `http://127.0.0.1:${port}`;
  return {
    port,
    http,
    ws: `ws://127.0.0.1:${port}/ws`,
    log,
    exited,
    /** SIGTERM: the graceful drain (clients get 1001). */
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      return exited;
    },
    /** SIGKILL: the server dies (clients see the TCP connection end). */
    async kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      return exited;
    },
  };
}

/** POST /api/publish; the parsed answer. */
export async function publish(server, topic, payload) {
  const r = await fetch(`${server.http}/api/publish`, {
    method: 'POST',
    headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify({ topic, payload }),
  });
  const body = await r.json();
  if (r.status !== 200) throw new Error(`publish ${topic}: ${r.status} ${JSON.stringify(body)}`);
  return body;
}

/** GET /metrics as { name or name{labels}: value }. */
export async function metrics(server) {
  const text = await (await fetch(`${server.http}/metrics`)).text();
  const out = {};
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    out[line.slice(0, i)] = Number(line.slice(i + 1));
  }
  return out;
}

/** An HS256 JWT with `claims` signed with `secret`. */
export function signJwt(claims, secret = JWT_SECRET) {
  const b64 = (v) => Buffer.from(JSON.stringify(v)).toString('base64url');
  const head = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(claims)}`;
  const sig = createHmac('sha256', secret).update(head).digest('base64url');
  return `${head}.${sig}`;
}

/** Seconds since the Unix epoch. */
export const nowSeconds = () => Math.floor(Date.now() / 1000);

/**
 * A TCP proxy from a local port to `target` port; `cut()` ends every
 * connection through it at once (a network failure, no close frame).
 */
export async function tcpProxy(targetPort) {
  const sockets = new Set();
  let blocked = false;
  const srv = net.createServer((down) => {
    if (blocked) {
      down.destroy();
      return;
    }
    const up = net.connect(targetPort, '127.0.0.1');
    sockets.add(down);
    sockets.add(up);
    down.pipe(up);
    up.pipe(down);
    const end = () => {
      down.destroy();
      up.destroy();
      sockets.delete(down);
      sockets.delete(up);
    };
    down.on('error', end).on('close', end);
    up.on('error', end).on('close', end);
  });
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address();
  return {
    port,
    ws: `ws://127.0.0.1:${port}/ws`,
    connections: () => sockets.size / 2,
    /** Ends every connection now; with `block`, refuses new ones until `unblock()`. */
    cut({ block = false } = {}) {
      blocked = block;
      for (const s of sockets) s.resetAndDestroy ? s.resetAndDestroy() : s.destroy();
      sockets.clear();
    },
    unblock() {
      blocked = false;
    },
    close: () => new Promise((r) => { for (const s of sockets) s.destroy(); srv.close(r); }),
  };
}
