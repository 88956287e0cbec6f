/**
 * The queue behind `for await (const p of subscription)`.
 *
 * An iterator buffers the publications that arrive from its creation on, in
 * order, until they are taken; it ends (`done`) when its subscription ends
 * (unsubscribed, or the client closed for good) after what it holds has been
 * taken, or when the loop leaves early (`break` calls `return`). The buffer
 * has no bound: a loop that cannot keep up should listen to `publication`
 * events and drop what it does not need instead.
 */

/** An async iterator fed by `push` and ended by `end`. */
export class AsyncQueue<T> implements AsyncIterableIterator<T> {
  /** Values pushed and not yet taken. */
  private readonly items: T[] = [];
  /** Takers waiting for a value (only while `items` is empty). */
  private readonly waiting: Array<(r: IteratorResult<T>) => void> = [];
  private ended = false;

  constructor(private readonly onReturn: () => void) {}

  /** Hands `v` to a waiting taker, or keeps it. */
  push(v: T): void {
    if (this.ended) return;
    const w = this.waiting.shift();
    if (w) w({ value: v, done: false });
    else this.items.push(v);
  }

  /** No more values: waiting takers get `done`; kept values can still be taken. */
  end(): void {
    this.ended = true;
    for (const w of this.waiting.splice(0)) w({ value: undefined, done: true });
  }

  next(): Promise<IteratorResult<T>> {
    if (this.items.length > 0) return Promise.resolve({ value: this.items.shift()!, done: false });
    if (this.ended) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  return(): Promise<IteratorResult<T>> {
    this.items.length = 0;
    this.end();
    this.onReturn();
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<T> {
    return this;
  }
}
