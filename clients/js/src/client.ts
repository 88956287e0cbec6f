/**
 * The connection to a fanout server: connect, reconnect, calls, routing.
 *
 * # Life cycle
 *
 * ```text
 * disconnected --connect()--> connecting --open--> connected
 *      ^                          |                    |
 *      +---- backoff timer <------+---- close ---------+
 * any state --close() or a "stop" close code--> closed
 * ```
 *
 * Every attempt gets a token first (a function is called each time), then
 * opens a WebSocket with it in the URL. When a connection ends, its close
 * code decides (`close.ts`): reconnect after a backoff with jitter
 * (`backoff.ts`), reconnect after a long one, or stop (`closed`, for good).
 * A connection closed for an expired token (4002) comes back only if the
 * token is a function (a plain string cannot be renewed).
 *
 * # After a reconnect
 *
 * Every subscription subscribes again with `since` its last position, so the
 * server replays what it missed or says it cannot (`subscription.ts`).
 *
 * # Tokens
 *
 * With a token function, the client reads the token's `exp` and, some time
 * before it (`refreshMargin`), gets a new token and sends `refresh`, so the
 * connection is not closed at `exp`. The new token's permissions replace the
 * old ones: a subscription it does not grant ends (`unsubscribed`). A refused
 * refresh is reported as an `error` event; the server then closes at `exp`
 * (4002) and the client comes back with a new token.
 *
 * # Calls
 *
 * `publish`, `history` and `call` return promises that settle with the
 * answer, or reject after `timeout` ms (`TimeoutError`), when the connection
 * ends first (`DisconnectedError`), or when the client closes (`ClosedError`).
 * A call made while the connection is down waits for it (within its timeout).
 * A `ping` every `pingInterval` notices a connection that died silently.
 */

import { Backoff, type BackoffOptions } from './backoff.js';
import { adviceFor, CloseCodes, type Advice } from './close.js';
import { Emitter } from './emitter.js';
import { ClosedError, DisconnectedError, RpcError, TimeoutError } from './errors.js';
import { parseBinary, parseText, type Publication } from './push.js';
import {
  historyOf,
  Subscription,
  type HistoryPage,
  type PublishResult,
  type SubscribeOptions,
  type SubscriptionHost,
} from './subscription.js';
import { jwtExpiry, refreshDelay, resolveToken, withToken, type TokenSource } from './token.js';

/** The part of the WebSocket API the client uses (the browser's, Node's global, or the `ws` package's). */
export interface WebSocketLike {
  binaryType: string;
  readonly readyState: number;
  onopen: ((ev: unknown) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

/** A WebSocket constructor: `globalThis.WebSocket`, or `WebSocket` from the `ws` package. */
export type WebSocketConstructor = new (url: string) => WebSocketLike;

/** Options of a `Client`. */
export interface ClientOptions {
  /** A token, or a function that returns one (called before each connection and each refresh). */
  token?: TokenSource;
  /** The WebSocket implementation (default: `globalThis.WebSocket`; in Node 20, pass the `ws` package's). */
  WebSocket?: WebSocketConstructor;
  /** Timeout of calls and of opening a connection, ms (default 10,000). */
  timeout?: number;
  /** Reconnect delays. */
  backoff?: BackoffOptions;
  /** A `ping` call this often while connected, ms; 0: none (default 25,000). */
  pingInterval?: number;
  /** Refresh the token this long before its `exp`, ms (default 30,000; halfway for shorter-lived tokens). */
  refreshMargin?: number;
}

/** The state of a `Client`. */
export type ClientState = 'disconnected' | 'connecting' | 'connected' | 'closed';

/** `disconnected` event: a connection ended and the client will try again. */
export interface DisconnectedEvent {
  code: number;
  reason: string;
  advice: Advice;
  /** Milliseconds until the next attempt. */
  reconnectIn: number;
}

/** Events of a `Client`. */
export interface ClientEvents {
  state: ClientState;
  connecting: { attempt: number };
  connected: { attempt: number };
  disconnected: DisconnectedEvent;
  /** The client stopped for good (`close()`, or a close code that forbids reconnecting). */
  closed: { code: number; reason: string };
  /** A new token was accepted by `refresh`. */
  refreshed: { expires: number | null };
  /** Something went wrong that the client handles itself (a token function that threw, a refused refresh). */
  error: { error: Error };
  /** A message sent to this connection alone (`topic` null). */
  message: Publication;
  /** A lag notice the client cannot place on one topic (the connection has several). */
  lagged: { count: number; topic: string | null };
}

interface Pending {
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
  timer: ReturnType<typeof setTimeout>;
}

/**
 * A client of fanout-server.
 *
 * ```ts
 * const client = new Client('wss://example.com/ws', { token: () => fetchToken() });
 * const sub = client.subscribe('news');
 * sub.on('publication', (p) => console.log(p.seq, p.data));
 * sub.on('gap', () => reloadNews());
 * client.connect();
 * ```
 */
export class Client extends Emitter<ClientEvents> {
  /** The WebSocket URL (`ws://host:port/ws`). */
  readonly url: string;
  private readonly opts: Required<Omit<ClientOptions, 'token' | 'WebSocket' | 'backoff'>>;
  private readonly tokenSource: TokenSource | undefined;
  private readonly WS: WebSocketConstructor;
  private readonly backoff: Backoff;
  private stateNow: ClientState = 'disconnected';
  private ws: WebSocketLike | null = null;
  /** Connection attempts so far. */
  private attempts = 0;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private readonly subs = new Map<string, Subscription<never>>();
  /** Callers waiting for the connection (a call made while it is down). */
  private readonly waiters = new Set<{ ok: () => void; fail: (e: Error) => void }>();
  private reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  private connectTimer: ReturnType<typeof setTimeout> | undefined;
  private pingTimer: ReturnType<typeof setInterval> | undefined;
  private refreshTimer: ReturnType<typeof setTimeout> | undefined;
  /** The token of the current connection (or the last refreshed one). */
  private token: string | undefined;
  private readonly host: SubscriptionHost;

  constructor(url: string, options: ClientOptions = {}) {
    super();
    this.url = url;
    this.tokenSource = options.token;
    const WS = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (!WS) {
      throw new TypeError(
        'no WebSocket implementation: pass { WebSocket } (in Node 20, `import { WebSocket } from "ws"`, ' +
          'or run node with --experimental-websocket)',
      );
    }
    this.WS = WS;
    this.backoff = new Backoff(options.backoff);
    this.opts = {
      timeout: options.timeout ?? 10_000,
      pingInterval: options.pingInterval ?? 25_000,
      refreshMargin: options.refreshMargin ?? 30_000,
    };
    this.host = {
      call: (m, p, t) => this.call(m, p, { timeout: t }),
      connected: () => this.stateNow === 'connected',
      forget: (s) => {
        if ((this.subs.get(s.topic) as unknown) === s) this.subs.delete(s.topic);
      },
      lost: (e) => this.drop(4000, `no answer: ${e.message}`),
    };
  }

  /** `disconnected`, `connecting`, `connected` or `closed`. */
  get state(): ClientState {
    return this.stateNow;
  }

  /** Starts connecting (and reconnecting, until `close()`). */
  connect(): void {
    if (this.stateNow === 'closed') throw new ClosedError('the client is closed; make a new one');
    if (this.stateNow !== 'disconnected' || this.reconnectTimer !== undefined) return;
    void this.attempt();
  }

  /** Closes the connection for good: pending calls reject, subscriptions end. */
  close(): void {
    if (this.stateNow === 'closed') return;
    const ws = this.ws;
    this.teardown(new ClosedError('the client was closed'));
    if (ws) ws.close(1000, 'client closed');
    this.finish(1000, 'client closed');
  }

  /** A subscription to `topic` (the existing one if there is one); it joins once connected. */
  subscribe<T = unknown>(topic: string, opts: SubscribeOptions = {}): Subscription<T> {
    if (this.stateNow === 'closed') throw new ClosedError('the client is closed');
    const existing = this.subs.get(topic);
    if (existing) return existing as unknown as Subscription<T>;
    const sub = new Subscription<T>(this.host, topic, opts);
    this.subs.set(topic, sub as unknown as Subscription<never>);
    if (this.stateNow === 'connected') sub._subscribe();
    return sub;
  }

  /** The subscription to `topic`, if any. */
  getSubscription<T = unknown>(topic: string): Subscription<T> | undefined {
    return this.subs.get(topic) as unknown as Subscription<T> | undefined;
  }

  /** Every subscription. */
  subscriptions(): Subscription[] {
    return [...this.subs.values()] as unknown as Subscription[];
  }

  /** Publishes `data` (any JSON value) to `topic`; the token must allow it. */
  publish(topic: string, data: unknown, opts: { timeout?: number } = {}): Promise<PublishResult> {
    return this.call('publish', { topic, payload: data }, opts) as Promise<PublishResult>;
  }

  /** The kept messages of `topic`, oldest first. */
  history<T = unknown>(
    topic: string,
    opts: { limit?: number; since?: number; timeout?: number } = {},
  ): Promise<HistoryPage<T>> {
    return historyOf<T>(this.host, topic, opts);
  }

  /** Any JSON-RPC method: resolves with its `result`, rejects with an `RpcError` for its `error`. */
  async call(method: string, params?: unknown, opts: { timeout?: number | undefined } = {}): Promise<unknown> {
    const timeout = opts.timeout ?? this.opts.timeout;
    const deadline = Date.now() + timeout;
    if (this.stateNow !== 'connected') await this.whenConnected(timeout, method);
    const ws = this.ws;
    if (!ws || this.stateNow !== 'connected') throw new DisconnectedError(`${method}: not connected`);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => {
          this.pending.delete(id);
          reject(new TimeoutError(`${method}: no answer within ${timeout} ms`));
        },
        Math.max(0, deadline - Date.now()),
      );
      this.pending.set(id, { resolve, reject, timer });
      const req: Record<string, unknown> = { jsonrpc: '2.0', id, method };
      if (params !== undefined) req.params = params;
      ws.send(JSON.stringify(req));
    });
  }

  private whenConnected(timeout: number, what: string): Promise<void> {
    if (this.stateNow === 'closed') return Promise.reject(new ClosedError(`${what}: the client is closed`));
    return new Promise((resolve, reject) => {
      const w = {
        ok: () => {
          clearTimeout(timer);
          this.waiters.delete(w);
          resolve();
        },
        fail: (e: Error) => {
          clearTimeout(timer);
          this.waiters.delete(w);
          reject(e);
        },
      };
      const timer = setTimeout(
        () => w.fail(new TimeoutError(`${what}: not connected within ${timeout} ms`)),
        timeout,
      );
      this.waiters.add(w);
    });
  }

  private setState(s: ClientState): void {
    if (this.stateNow === s) return;
    this.stateNow = s;
    this.emit('state', s);
  }

  private async attempt(): Promise<void> {
    this.reconnectTimer = undefined;
    if (this.stateNow === 'closed') return;
    const attempt = ++this.attempts;
    this.setState('connecting');
    this.emit('connecting', { attempt });
    let token: string | undefined;
    if (this.tokenSource !== undefined) {
      try {
        token = await resolveToken(this.tokenSource);
      } catch (e) {
        if ((this.stateNow as ClientState) === 'closed') return;
        this.emit('error', { error: asError(e, 'token function') });
        this.retry(1006, 'no token', 'reconnect');
        return;
      }
      if ((this.stateNow as ClientState) === 'closed') return;
    }
    this.token = token;
    let ws: WebSocketLike;
    try {
      ws = new this.WS(withToken(this.url, token));
    } catch (e) {
      // A malformed URL: no attempt will do better.
      this.emit('error', { error: asError(e, 'WebSocket') });
      this.teardown(new ClosedError('bad URL'));
      this.finish(1006, `cannot open ${this.url}: ${(e as Error).message}`);
      return;
    }
    this.ws = ws;
    ws.binaryType = 'arraybuffer';
    this.connectTimer = setTimeout(() => {
      if (this.ws === ws && this.stateNow === 'connecting') this.drop(1006, 'connect timeout');
    }, this.opts.timeout);
    ws.onopen = () => {
      if (this.ws !== ws) return;
      clearTimeout(this.connectTimer);
      this.backoff.reset();
      this.setState('connected');
      this.emit('connected', { attempt });
      for (const w of [...this.waiters]) w.ok();
      this.planRefresh();
      if (this.opts.pingInterval > 0) {
        this.pingTimer = setInterval(() => {
          this.call('ping').catch((e: Error) => {
            if (e.name === 'TimeoutError' && this.ws === ws) this.drop(4000, 'ping timeout');
          });
        }, this.opts.pingInterval);
      }
      for (const s of this.subs.values()) s._subscribe();
    };
    ws.onmessage = (ev) => {
      if (this.ws === ws) this.receive(ev.data);
    };
    ws.onerror = () => {
      // A close event follows with the code.
    };
    ws.onclose = (ev) => {
      if (this.ws === ws) this.closed(ev.code, ev.reason);
    };
  }

  private receive(data: unknown): void {
    if (typeof data !== 'string') {
      const p = data instanceof ArrayBuffer ? parseBinary(data) : undefined;
      if (p) this.route(p);
      return;
    }
    let items;
    try {
      items = parseText(data);
    } catch {
      return; // not JSON: nothing the protocol sends
    }
    for (const m of items) {
      if (m.kind === 'publication') this.route(m.publication);
      else if (m.kind === 'lagged') {
        const sub = m.topic !== null ? this.subs.get(m.topic) : undefined;
        if (sub) sub._lagged(m.count);
        else this.emit('lagged', { count: m.count, topic: m.topic });
      } else {
        const r = m.response;
        const p = typeof r.id === 'number' ? this.pending.get(r.id) : undefined;
        if (!p) continue;
        this.pending.delete(r.id as number);
        clearTimeout(p.timer);
        if (r.error) p.reject(new RpcError(r.error.code, r.error.message, r.error.data));
        else p.resolve(r.result);
      }
    }
  }

  private route(p: Publication): void {
    if (p.topic === null) {
      this.emit('message', p);
      return;
    }
    this.subs.get(p.topic)?._deliver(p as Publication<never>);
  }

  /** Ends the current connection at once, as if it had closed with `code`. */
  private drop(code: number, reason: string): void {
    const ws = this.ws;
    if (!ws) return;
    this.ws = null;
    try {
      ws.close(4000, reason.slice(0, 100));
    } catch {
      // already closing
    }
    this.closedWith(ws, code, reason);
  }

  private closed(code: number, reason: string): void {
    const ws = this.ws;
    if (!ws) return;
    this.ws = null;
    this.closedWith(ws, code, reason);
  }

  private closedWith(ws: WebSocketLike, code: number, reason: string): void {
    detach(ws);
    this.clearTimers();
    const err = new DisconnectedError(`connection closed (${code}${reason ? ` ${reason}` : ''})`);
    this.rejectPending(err);
    for (const s of this.subs.values()) s._disconnected();
    let advice = adviceFor(code);
    if (code === CloseCodes.TOKEN_EXPIRED && typeof this.tokenSource !== 'function') {
      // A plain string token cannot be renewed: it would be refused again.
      advice = 'stop';
    }
    if (advice === 'stop') {
      this.teardown(new ClosedError(`closed by the server (${code} ${reason})`));
      this.finish(code, reason);
      return;
    }
    this.retry(code, reason, advice);
  }

  private retry(code: number, reason: string, advice: Advice): void {
    const delay = this.backoff.next(advice === 'reconnect-later');
    this.setState('disconnected');
    this.emit('disconnected', { code, reason, advice, reconnectIn: delay });
    if ((this.stateNow as ClientState) !== 'disconnected') return; // a listener closed the client
    this.reconnectTimer = setTimeout(() => void this.attempt(), delay);
  }

  private planRefresh(): void {
    if (typeof this.tokenSource !== 'function' || this.token === undefined) return;
    const exp = jwtExpiry(this.token);
    if (exp === undefined) return;
    const ws = this.ws;
    this.refreshTimer = setTimeout(() => void this.refresh(ws), refreshDelay(exp, Date.now(), this.opts.refreshMargin));
  }

  private async refresh(ws: WebSocketLike | null): Promise<void> {
    if (this.ws !== ws || this.stateNow !== 'connected') return;
    try {
      const token = await resolveToken(this.tokenSource!);
      if (this.ws !== ws) return;
      const r = (await this.call('refresh', { token })) as { expires: number | null; left?: string[] };
      if (this.ws !== ws) return;
      this.token = token;
      // Topics the new token no longer grants: the server left them.
      for (const topic of r.left ?? []) {
        const sub = this.subs.get(topic);
        this.subs.delete(topic);
        sub?._end('the refreshed token does not grant this topic');
      }
      this.emit('refreshed', { expires: r.expires ?? null });
      this.planRefresh();
    } catch (e) {
      if (this.ws !== ws) return;
      // Refused: the server closes at `exp` (4002) and the client comes back with a new token.
      this.emit('error', { error: asError(e, 'refresh') });
    }
  }

  private clearTimers(): void {
    clearTimeout(this.connectTimer);
    clearInterval(this.pingTimer);
    clearTimeout(this.refreshTimer);
    this.connectTimer = this.pingTimer = this.refreshTimer = undefined;
  }

  private rejectPending(err: Error): void {
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(err);
    }
    this.pending.clear();
  }

  /** Stops everything (timers, calls, waiters); the socket is the caller's. */
  private teardown(err: Error): void {
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    this.clearTimers();
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      detach(ws);
    }
    this.rejectPending(err);
    for (const w of [...this.waiters]) w.fail(err);
  }

  /** The client is closed for good: subscriptions end, `closed` is emitted. */
  private finish(code: number, reason: string): void {
    this.setState('closed');
    const subs = [...this.subs.values()];
    this.subs.clear();
    for (const s of subs) s._end(`client closed (${code})`);
    this.emit('closed', { code, reason });
  }
}

function asError(e: unknown, what: string): Error {
  const err = e instanceof Error ? e : new Error(String(e));
  err.message = `${what}: ${err.message}`;
  return err;
}

/** Detaches the client from `ws`. Its `onerror` stays a no-op: the `ws` package throws an `error` event nobody listens to. */
function detach(ws: WebSocketLike): void {
  ws.onopen = ws.onmessage = ws.onclose = null;
  ws.onerror = () => {};
}
