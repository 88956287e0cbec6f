/**
 * A small typed event emitter (no dependency, the same in browsers and Node).
 *
 * Listeners run synchronously, in the order they were added, at the moment
 * the event happens: that is what keeps a topic's publications in order. A
 * listener that throws does not stop the others nor the client; its error is
 * rethrown from a microtask, where the platform reports it as uncaught
 * (`window.onerror`, Node's `uncaughtException`).
 */
/** The base of `Client` and `Subscription`: `on`, `once`, `off`. */
export class Emitter {
    constructor() {
        /** Listeners per event name; a name with none has no entry. */
        this.listeners = new Map();
    }
    /**
     * Calls `fn` on every `event` until the returned function (or `off`) is
     * called.
     */
    on(event, fn) {
        let set = this.listeners.get(event);
        if (!set) {
            set = new Set();
            this.listeners.set(event, set);
        }
        set.add(fn);
        return () => this.off(event, fn);
    }
    /** Calls `fn` on the next `event` only. */
    once(event, fn) {
        const off = this.on(event, (v) => {
            off();
            fn(v);
        });
        return off;
    }
    /** Removes a listener added with `on`. */
    off(event, fn) {
        const set = this.listeners.get(event);
        if (set && set.delete(fn) && set.size === 0) {
            this.listeners.delete(event);
        }
    }
    /** Whether `event` has at least one listener. */
    listens(event) {
        return this.listeners.has(event);
    }
    /** Calls every listener of `event` with `value`, now. */
    emit(event, value) {
        const set = this.listeners.get(event);
        if (!set)
            return;
        for (const fn of [...set]) {
            try {
                fn(value);
            }
            catch (e) {
                queueMicrotask(() => {
                    throw e;
                });
            }
        }
    }
}
