/**
 * Reconnect delays: exponential backoff with jitter.
 *
 * The n-th attempt in a row (from 0) waits a random time in
 * `[d/2, d]` where `d = min(max, min * 2^n)` ("equal jitter"): clients that
 * lost the same server at the same moment spread out instead of returning
 * together, and none waits less than half the nominal delay. A close that
 * says "reconnect later" (1013, 4100–4199) waits at least `laterDelay`. A
 * connection that opened resets the count.
 */
/** The delays of successive reconnect attempts. */
export class Backoff {
    constructor(o = {}, random = Math.random) {
        this.random = random;
        /** Failed attempts since the last connection that opened. */
        this.attempts = 0;
        this.min = Math.max(1, o.minDelay ?? 250);
        this.max = Math.max(this.min, o.maxDelay ?? 20000);
        this.later = Math.max(this.min, o.laterDelay ?? 5000);
    }
    /** The delay before the next attempt; `later`: the server said "reconnect later". */
    next(later = false) {
        // After "reconnect later" the nominal delay is at least 2 * laterDelay, so
        // that the jittered one is at least laterDelay.
        const floor = later ? 2 * this.later : 0;
        const d = Math.min(Math.max(this.max, floor), Math.max(floor, this.min * 2 ** this.attempts));
        this.attempts = Math.min(this.attempts + 1, 30);
        return Math.round(d / 2 + this.random() * (d / 2));
    }
    /** A connection opened: start again from the smallest delay. */
    reset() {
        this.attempts = 0;
    }
}
