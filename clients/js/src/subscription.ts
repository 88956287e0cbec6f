/**
 * A subscription to one topic: its events, its position, its (re)subscribe.
 *
 * # Position
 *
 * A subscription remembers the last `(epoch, seq)` it delivered (at first,
 * the topic's position when it joined). After a reconnect it subscribes again
 * with `since` that position, and the server either replays what was missed
 * (`recovered: true`: the missed publications arrive first, in order, then the
 * live ones, with no gap and no duplicate) or says it cannot (`recovered:
 * false` and a reason: the application must reload its state).
 *
 * # Order
 *
 * Publications are delivered in `seq` order, each once: one that does not
 * follow the position (a `seq` already delivered) is dropped; one that skips
 * ahead is delivered after a `gap` event that says what was lost. Pushes
 * that arrive while a `subscribe` is waiting for its answer are held and
 * delivered after it, so that nothing before the join's position leaks in.
 *
 * # Events
 *
 * | event | when |
 * | --- | --- |
 * | `subscribed` | the server confirmed the subscription (first time, and after every reconnect) |
 * | `publication` | a message, in order |
 * | `recovered` | after a reconnect, the missed messages will be replayed: nothing is lost |
 * | `gap` | messages were lost (not recovered after a reconnect, a new epoch, or a `seq` that skips): reload if you keep state |
 * | `lagged` | the server dropped messages for this connection (its queue was full); a `gap` follows at the next publication |
 * | `error` | the server refused the subscription (the subscription ends), or another call failed |
 * | `unsubscribed` | the subscription ended (`unsubscribe()`, the client closed, or refused) |
 */

import { Emitter } from './emitter.js';
import { AsyncQueue } from './queue.js';
import { fromJson, type Publication } from './push.js';

/** A topic's stream position. */
export interface Position {
  epoch: number;
  seq: number;
}

/** How to join a topic. */
export interface SubscribeOptions {
  /** Resume from this position (e.g. one saved before a page reload): recovery as after a reconnect. */
  since?: Position;
  /** Deliver the topic's latest message first (when it keeps a history). */
  latest?: boolean;
}

/** `subscribed` event. */
export interface SubscribedEvent extends Position {
  /** False the first time, true after a reconnect. */
  resubscribed: boolean;
  /** Present when the subscribe gave `since`: whether the missed messages come. */
  recovered?: boolean;
  /** Why not recovered (`epoch_changed`, `too_old`, `no_history`, …; see docs/protocol.md). */
  reason?: string;
}

/** `recovered` event. */
export interface RecoveredEvent extends Position {
  /** Messages the replay brings (published while away). */
  missed: number;
}

/** `gap` event: the stream did not continue from `from`. */
export interface GapEvent {
  /** `lost` (a seq skipped ahead), or the server's reason after a reconnect (`epoch_changed`, `too_old`, …). */
  reason: string;
  /** The last position delivered before the gap. */
  from: Position | null;
  /** The position the stream continues from. */
  to: Position;
  /** Messages lost when known (same epoch), else `undefined`. */
  missed?: number;
}

/** Events of a `Subscription`. */
export interface SubscriptionEvents<T = unknown> {
  subscribed: SubscribedEvent;
  publication: Publication<T>;
  recovered: RecoveredEvent;
  gap: GapEvent;
  lagged: { count: number };
  error: { error: Error };
  unsubscribed: { reason: string };
}

/** The state of a subscription. */
export type SubscriptionState = 'subscribing' | 'subscribed' | 'unsubscribed';

/** What a subscription needs from its client (internal). */
export interface SubscriptionHost {
  call(method: string, params: unknown, timeout?: number): Promise<unknown>;
  connected(): boolean;
  forget(sub: { readonly topic: string }): void;
  lost(error: Error): void;
}

interface SubscribeResult {
  epoch: number;
  seq: number;
  recovered?: boolean;
  reason?: string;
}

/** One topic's subscription; get it from `client.subscribe(topic)`. */
export class Subscription<T = unknown> extends Emitter<SubscriptionEvents<T>> {
  /** The topic. */
  readonly topic: string;
  private stateNow: SubscriptionState = 'subscribing';
  /** The last position delivered (or joined at); `null` before the first join. */
  private pos: Position | null;
  /** `latest` for the first join only. */
  private latest: boolean;
  /** After a join with `latest`: the latest message (whose `seq` is the join's) may come once. */
  private latestSeq: number | null = null;
  /** Joined at least once (a later join is a resubscribe). */
  private joinedOnce = false;
  /** Pushes that arrived while a `subscribe` was waiting for its answer. */
  private held: Publication<T>[] = [];
  /** Bumped by every (re)subscribe: an answer to an older one is ignored. */
  private attempt = 0;
  private readonly iterators = new Set<AsyncQueue<Publication<T>>>();
  private readyPromise: Promise<SubscribedEvent> | undefined;
  /** The first `subscribed` event, once it happened. */
  private firstJoin: SubscribedEvent | undefined;

  /** @internal use `client.subscribe` */
  constructor(
    private readonly host: SubscriptionHost,
    topic: string,
    opts: SubscribeOptions = {},
  ) {
    super();
    this.topic = topic;
    this.pos = opts.since ? { epoch: opts.since.epoch, seq: opts.since.seq } : null;
    this.latest = !!opts.latest;
    if (opts.since && opts.latest) throw new TypeError('give `since` or `latest`, not both');
  }

  /** `subscribing`, `subscribed` or `unsubscribed`. */
  get state(): SubscriptionState {
    return this.stateNow;
  }

  /** The last position delivered (save it to resume with `since` later); `null` before the first join. */
  get position(): Position | null {
    return this.pos ? { ...this.pos } : null;
  }

  /** Resolves at the first `subscribed`; rejects if the server refuses the subscription. */
  ready(): Promise<SubscribedEvent> {
    if (!this.readyPromise) {
      this.readyPromise = new Promise((resolve, reject) => {
        if (this.firstJoin) return resolve(this.firstJoin);
        if (this.stateNow === 'unsubscribed') return reject(new Error(`not subscribed to ${this.topic}`));
        const offOk = this.once('subscribed', (e) => {
          offErr();
          offEnd();
          resolve(e);
        });
        const offErr = this.once('error', ({ error }) => {
          offOk();
          offEnd();
          reject(error);
        });
        const offEnd = this.once('unsubscribed', ({ reason }) => {
          offOk();
          offErr();
          reject(new Error(`subscription to ${this.topic} ended: ${reason}`));
        });
      });
      // The caller may never await it; an unhandled rejection would be noise.
      this.readyPromise.catch(() => {});
    }
    return this.readyPromise;
  }

  /** The topic's kept messages, oldest first (`since`: after that seq; `limit`: at most, default 100). */
  history(opts: { limit?: number; since?: number; timeout?: number } = {}): Promise<HistoryPage<T>> {
    return historyOf<T>(this.host, this.topic, opts);
  }

  /** Publishes `data` to this topic (the token must allow it). */
  publish(data: unknown, opts: { timeout?: number } = {}): Promise<PublishResult> {
    return this.host.call('publish', { topic: this.topic, payload: data }, opts.timeout) as Promise<PublishResult>;
  }

  /** Leaves the topic: no more events; `for await` loops end. */
  async unsubscribe(): Promise<void> {
    if (this.stateNow === 'unsubscribed') return;
    this.end('unsubscribe');
    this.host.forget(this);
    if (this.host.connected()) {
      try {
        await this.host.call('unsubscribe', { topic: this.topic });
      } catch {
        // The connection went away: the server forgot it then.
      }
    }
  }

  /** Publications from now on, in order, until the subscription ends. */
  [Symbol.asyncIterator](): AsyncIterableIterator<Publication<T>> {
    const q: AsyncQueue<Publication<T>> = new AsyncQueue(() => this.iterators.delete(q));
    if (this.stateNow === 'unsubscribed') q.end();
    else this.iterators.add(q);
    return q;
  }

  /** @internal The connection is up: (re)subscribe, with `since` the position once joined. */
  _subscribe(): void {
    if (this.stateNow === 'unsubscribed') return;
    this.stateNow = 'subscribing';
    this.held = [];
    const attempt = ++this.attempt;
    const params: Record<string, unknown> = { topic: this.topic };
    if (this.pos) params.since = { epoch: this.pos.epoch, seq: this.pos.seq };
    else if (this.latest) params.latest = true;
    this.host.call('subscribe', params).then(
      (r) => {
        if (attempt === this.attempt && this.stateNow === 'subscribing') this.joined(r as SubscribeResult);
      },
      (e: Error) => {
        if (attempt !== this.attempt || this.stateNow !== 'subscribing') return;
        if (e.name === 'RpcError') {
          this.emit('error', { error: e });
          this.end(`refused: ${e.message}`);
          this.host.forget(this);
        } else if (e.name === 'TimeoutError') {
          // The connection does not answer: start it again.
          this.host.lost(e);
        }
        // DisconnectedError: the next connection subscribes again.
      },
    );
  }

  /** @internal The connection went away. */
  _disconnected(): void {
    if (this.stateNow !== 'unsubscribed') this.stateNow = 'subscribing';
    this.attempt++;
    this.held = [];
  }

  /** @internal A push for this topic. */
  _deliver(p: Publication<T>): void {
    if (this.stateNow === 'subscribing') this.held.push(p);
    else if (this.stateNow === 'subscribed') this.deliver(p);
  }

  /** @internal A lag notice for this topic. */
  _lagged(count: number): void {
    if (this.stateNow !== 'unsubscribed') this.emit('lagged', { count });
  }

  /** @internal The client closed for good. */
  _end(reason: string): void {
    this.end(reason);
  }

  private joined(r: SubscribeResult): void {
    const now: Position = { epoch: Number(r.epoch), seq: Number(r.seq) };
    const from = this.pos;
    const asked = from !== null;
    const resubscribed = this.joinedOnce;
    this.joinedOnce = true;
    this.latestSeq = !asked && this.latest ? now.seq : null;
    this.latest = false;
    this.stateNow = 'subscribed';
    const ev: SubscribedEvent = { ...now, resubscribed };
    if (asked) ev.recovered = r.recovered === true;
    if (r.reason !== undefined) ev.reason = r.reason;
    this.firstJoin ??= ev;
    if (asked && r.recovered === true) {
      // The replay follows: keep `pos`, the pushes carry it forward.
      this.emit('subscribed', ev);
      this.emit('recovered', { ...now, missed: Math.max(0, now.seq - from.seq) });
    } else {
      this.pos = now;
      this.emit('subscribed', ev);
      // Nothing was lost if nothing had been seen and nothing was published since.
      if (asked && r.recovered === false && !(from.seq === 0 && now.seq === 0)) {
        const gap: GapEvent = { reason: r.reason ?? 'not_recovered', from, to: now };
        if (from.epoch === now.epoch && now.seq >= from.seq) gap.missed = now.seq - from.seq;
        this.emit('gap', gap);
      }
    }
    const held = this.held;
    this.held = [];
    for (const p of held) {
      if (this.stateNow !== 'subscribed') break;
      this.deliver(p);
    }
  }

  private deliver(p: Publication<T>): void {
    const pos = this.pos;
    const latest = this.latestSeq;
    this.latestSeq = null;
    if (p.seq > 0 && pos) {
      if (p.epoch === pos.epoch) {
        if (p.seq <= pos.seq && p.seq !== latest) return; // already delivered
        if (p.seq > pos.seq + 1) {
          this.emit('gap', {
            reason: 'lost',
            from: pos,
            to: { epoch: p.epoch, seq: p.seq - 1 },
            missed: p.seq - pos.seq - 1,
          });
        }
      } else {
        this.emit('gap', { reason: 'epoch_changed', from: pos, to: { epoch: p.epoch, seq: p.seq - 1 } });
      }
    }
    if (p.seq > 0) this.pos = { epoch: p.epoch, seq: p.seq };
    this.emit('publication', p);
    for (const q of this.iterators) q.push(p);
  }

  private end(reason: string): void {
    if (this.stateNow === 'unsubscribed') return;
    this.stateNow = 'unsubscribed';
    this.attempt++;
    this.held = [];
    for (const q of this.iterators) q.end();
    this.iterators.clear();
    this.emit('unsubscribed', { reason });
  }
}

/** A page of a topic's history. */
export interface HistoryPage<T = unknown> extends Position {
  /** Oldest first. */
  publications: Publication<T>[];
}

/** What a publish did (`docs/protocol.md`, *publish*). */
export interface PublishResult {
  recipients: number;
  delivered: number;
  dropped: number;
  seq: number;
  walked: number;
}

/** `history` for `topic` through `host` (shared by the client and subscriptions). */
export async function historyOf<T>(
  host: SubscriptionHost,
  topic: string,
  opts: { limit?: number; since?: number; timeout?: number },
): Promise<HistoryPage<T>> {
  const params: Record<string, unknown> = { topic };
  if (opts.limit !== undefined) params.limit = opts.limit;
  if (opts.since !== undefined) params.since = opts.since;
  const r = (await host.call('history', params, opts.timeout)) as {
    epoch: number;
    seq: number;
    publications: Record<string, unknown>[];
  };
  return {
    epoch: Number(r.epoch),
    seq: Number(r.seq),
    publications: r.publications.map((p) => fromJson(p) as Publication<T>),
  };
}
