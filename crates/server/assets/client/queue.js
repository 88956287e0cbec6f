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
export class AsyncQueue {
    constructor(onReturn) {
        this.onReturn = onReturn;
        /** Values pushed and not yet taken. */
        this.items = [];
        /** Takers waiting for a value (only while `items` is empty). */
        this.waiting = [];
        this.ended = false;
    }
    /** Hands `v` to a waiting taker, or keeps it. */
    push(v) {
        if (this.ended)
            return;
        const w = this.waiting.shift();
        if (w)
            w({ value: v, done: false });
        else
            this.items.push(v);
    }
    /** No more values: waiting takers get `done`; kept values can still be taken. */
    end() {
        this.ended = true;
        for (const w of this.waiting.splice(0))
            w({ value: undefined, done: true });
    }
    next() {
        if (this.items.length > 0)
            return Promise.resolve({ value: this.items.shift(), done: false });
        if (this.ended)
            return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve) => this.waiting.push(resolve));
    }
    return() {
        this.items.length = 0;
        this.end();
        this.onReturn();
        return Promise.resolve({ value: undefined, done: true });
    }
    [Symbol.asyncIterator]() {
        return this;
    }
}
