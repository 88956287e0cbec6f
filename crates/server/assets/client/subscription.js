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
import { fromJson } from './push.js';
/** One topic's subscription; get it from `client.subscribe(topic)`. */
export class Subscription extends Emitter {
    /** @internal use `client.subscribe` */
    constructor(host, topic, opts = {}) {
        super();
        this.host = host;
        this.stateNow = 'subscribing';
        /** After a join with `latest`: the latest message (whose `seq` is the join's) may come once. */
        this.latestSeq = null;
        /** Joined at least once (a later join is a resubscribe). */
        this.joinedOnce = false;
        /** Pushes that arrived while a `subscribe` was waiting for its answer. */
        this.held = [];
        /** Bumped by every (re)subscribe: an answer to an older one is ignored. */
        this.attempt = 0;
        this.iterators = new Set();
        this.topic = topic;
        this.pos = opts.since ? { epoch: opts.since.epoch, seq: opts.since.seq } : null;
        this.latest = !!opts.latest;
        if (opts.since && opts.latest)
            throw new TypeError('give `since` or `latest`, not both');
    }
    /** `subscribing`, `subscribed` or `unsubscribed`. */
    get state() {
        return this.stateNow;
    }
    /** The last position delivered (save it to resume with `since` later); `null` before the first join. */
    get position() {
        return this.pos ? { ...this.pos } : null;
    }
    /** Resolves at the first `subscribed`; rejects if the server refuses the subscription. */
    ready() {
        if (!this.readyPromise) {
            this.readyPromise = new Promise((resolve, reject) => {
                if (this.firstJoin)
                    return resolve(this.firstJoin);
                if (this.stateNow === 'unsubscribed')
                    return reject(new Error(`not subscribed to ${this.topic}`));
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
            this.readyPromise.catch(() => { });
        }
        return this.readyPromise;
    }
    /** The topic's kept messages, oldest first (`since`: after that seq; `limit`: at most, default 100). */
    history(opts = {}) {
        return historyOf(this.host, this.topic, opts);
    }
    /** Publishes `data` to this topic (the token must allow it). */
    publish(data, opts = {}) {
        return this.host.call('publish', { topic: this.topic, payload: data }, opts.timeout);
    }
    /** Leaves the topic: no more events; `for await` loops end. */
    async unsubscribe() {
        if (this.stateNow === 'unsubscribed')
            return;
        this.end('unsubscribe');
        this.host.forget(this);
        if (this.host.connected()) {
            try {
                await this.host.call('unsubscribe', { topic: this.topic });
            }
            catch {
                // The connection went away: the server forgot it then.
            }
        }
    }
    /** Publications from now on, in order, until the subscription ends. */
    [Symbol.asyncIterator]() {
        const q = new AsyncQueue(() => this.iterators.delete(q));
        if (this.stateNow === 'unsubscribed')
            q.end();
        else
            this.iterators.add(q);
        return q;
    }
    /** @internal The connection is up: (re)subscribe, with `since` the position once joined. */
    _subscribe() {
        if (this.stateNow === 'unsubscribed')
            return;
        this.stateNow = 'subscribing';
        this.held = [];
        const attempt = ++this.attempt;
        const params = { topic: this.topic };
        if (this.pos)
            params.since = { epoch: this.pos.epoch, seq: this.pos.seq };
        else if (this.latest)
            params.latest = true;
        this.host.call('subscribe', params).then((r) => {
            if (attempt === this.attempt && this.stateNow === 'subscribing')
                this.joined(r);
        }, (e) => {
            if (attempt !== this.attempt || this.stateNow !== 'subscribing')
                return;
            if (e.name === 'RpcError') {
                this.emit('error', { error: e });
                this.end(`refused: ${e.message}`);
                this.host.forget(this);
            }
            else if (e.name === 'TimeoutError') {
                // The connection does not answer: start it again.
                this.host.lost(e);
            }
            // DisconnectedError: the next connection subscribes again.
        });
    }
    /** @internal The connection went away. */
    _disconnected() {
        if (this.stateNow !== 'unsubscribed')
            this.stateNow = 'subscribing';
        this.attempt++;
        this.held = [];
    }
    /** @internal A push for this topic. */
    _deliver(p) {
        if (this.stateNow === 'subscribing')
            this.held.push(p);
        else if (this.stateNow === 'subscribed')
            this.deliver(p);
    }
    /** @internal A lag notice for this topic. */
    _lagged(count) {
        if (this.stateNow !== 'unsubscribed')
            this.emit('lagged', { count });
    }
    /** @internal The client closed for good. */
    _end(reason) {
        this.end(reason);
    }
    joined(r) {
        const now = { epoch: Number(r.epoch), seq: Number(r.seq) };
        const from = this.pos;
        const asked = from !== null;
        const resubscribed = this.joinedOnce;
        this.joinedOnce = true;
        this.latestSeq = !asked && this.latest ? now.seq : null;
        this.latest = false;
        this.stateNow = 'subscribed';
        const ev = { ...now, resubscribed };
        if (asked)
            ev.recovered = r.recovered === true;
        if (r.reason !== undefined)
            ev.reason = r.reason;
        this.firstJoin ?? (this.firstJoin = ev);
        if (asked && r.recovered === true) {
            // The replay follows: keep `pos`, the pushes carry it forward.
            this.emit('subscribed', ev);
            this.emit('recovered', { ...now, missed: Math.max(0, now.seq - from.seq) });
        }
        else {
            this.pos = now;
            this.emit('subscribed', ev);
            // Nothing was lost if nothing had been seen and nothing was published since.
            if (asked && r.recovered === false && !(from.seq === 0 && now.seq === 0)) {
                const gap = { reason: r.reason ?? 'not_recovered', from, to: now };
                if (from.epoch === now.epoch && now.seq >= from.seq)
                    gap.missed = now.seq - from.seq;
                this.emit('gap', gap);
            }
        }
        const held = this.held;
        this.held = [];
        for (const p of held) {
            if (this.stateNow !== 'subscribed')
                break;
            this.deliver(p);
        }
    }
    deliver(p) {
        const pos = this.pos;
        const latest = this.latestSeq;
        this.latestSeq = null;
        if (p.seq > 0 && pos) {
            if (p.epoch === pos.epoch) {
                if (p.seq <= pos.seq && p.seq !== latest)
                    return; // already delivered
                if (p.seq > pos.seq + 1) {
                    this.emit('gap', {
                        reason: 'lost',
                        from: pos,
                        to: { epoch: p.epoch, seq: p.seq - 1 },
                        missed: p.seq - pos.seq - 1,
                    });
                }
            }
            else {
                this.emit('gap', { reason: 'epoch_changed', from: pos, to: { epoch: p.epoch, seq: p.seq - 1 } });
            }
        }
        if (p.seq > 0)
            this.pos = { epoch: p.epoch, seq: p.seq };
        this.emit('publication', p);
        for (const q of this.iterators)
            q.push(p);
    }
    end(reason) {
        if (this.stateNow === 'unsubscribed')
            return;
        this.stateNow = 'unsubscribed';
        this.attempt++;
        this.held = [];
        for (const q of this.iterators)
            q.end();
        this.iterators.clear();
        this.emit('unsubscribed', { reason });
    }
}
/** `history` for `topic` through `host` (shared by the client and subscriptions). */
export async function historyOf(host, topic, opts) {
    const params = { topic };
    if (opts.limit !== undefined)
        params.limit = opts.limit;
    if (opts.since !== undefined)
        params.since = opts.since;
    const r = (await host.call('history', params, opts.timeout));
    return {
        epoch: Number(r.epoch),
        seq: Number(r.seq),
        publications: r.publications.map((p) => fromJson(p)),
    };
}
