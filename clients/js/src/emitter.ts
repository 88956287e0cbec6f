/**
 * A small typed event emitter (no dependency, the same in browsers and Node).
 *
 * Listeners run synchronously, in the order they were added, at the moment
 * the event happens: that is what keeps a topic's publications in order. A
 * listener that throws does not stop the others nor the client; its error is
 * rethrown from a microtask, where the platform reports it as uncaught
 * (`window.onerror`, Node's `uncaughtException`).
 */

/** A listener of events whose payloads are described by `Events`. */
export type Listener<T> = (value: T) => void;

/** The base of `Client` and `Subscription`: `on`, `once`, `off`. */
export class Emitter<Events extends object> {
  /** Listeners per event name; a name with none has no entry. */
  private readonly listeners = new Map<keyof Events, Set<Listener<never>>>();

  /**
   * Calls `fn` on every `event` until the returned function (or `off`) is
   * called.
   */
  on<K extends keyof Events>(event: K, fn: Listener<Events[K]>): () => void {
    let set = this.listeners.get(event);
    if (!set) {
      set = new Set();
      this.listeners.set(event, set);
    }
    set.add(fn as Listener<never>);
    return () => this.off(event, fn);
  }

  /** Calls `fn` on the next `event` only. */
  once<K extends keyof Events>(event: K, fn: Listener<Events[K]>): () => void {
    const off = this.on(event, (v) => {
      off();
      fn(v);
    });
    return off;
  }

  /** Removes a listener added with `on`. */
  off<K extends keyof Events>(event: K, fn: Listener<Events[K]>): void {
    const set = this.listeners.get(event);
    if (set && set.delete(fn as Listener<never>) && set.size === 0) {
      this.listeners.delete(event);
    }
  }

  /** Whether `event` has at least one listener. */
  protected listens(event: keyof Events): boolean {
    return this.listeners.has(event);
  }

  /** Calls every listener of `event` with `value`, now. */
  protected emit<K extends keyof Events>(event: K, value: Events[K]): void {
    const set = this.listeners.get(event);
    if (!set) return;
    for (const fn of [...set]) {
      try {
        (fn as Listener<Events[K]>)(value);
      } catch (e) {
        queueMicrotask(() => {
          throw e;
        });
      }
    }
  }
}
