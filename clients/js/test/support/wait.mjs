// Waiting for events, never for time: each wait has one generous overall
// timeout so that a broken feature fails the test instead of hanging it.
export const LONG = 30_000;

/** Resolves with the first `event` of `emitter` (an `on(event, fn) -> off` emitter) that passes `pred`. */
export function next(emitter, event, pred = () => true, timeout = LONG) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`no ${event} event within ${timeout} ms`));
    }, timeout);
    const off = emitter.on(event, (v) => {
      if (!pred(v)) return;
      clearTimeout(timer);
      off();
      resolve(v);
    });
  });
}

/** Collects every `event` of `emitter` into an array (for later assertions). */
export function record(emitter, event) {
  const seen = [];
  emitter.on(event, (v) => seen.push(v));
  return seen;
}

/** Resolves once `check()` (sync or async) returns a truthy value, checking it after each `event` of `emitter`. */
export function until(emitter, event, check, timeout = LONG) {
  return new Promise((resolve, reject) => {
    let done = false;
    const timer = setTimeout(() => finish(new Error(`condition not met within ${timeout} ms`)), timeout);
    const off = emitter.on(event, () => void test());
    const finish = (err, v) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      off();
      err ? reject(err) : resolve(v);
    };
    const test = async () => {
      try {
        const v = await check();
        if (v) finish(null, v);
      } catch (e) {
        finish(e);
      }
    };
    void test();
  });
}
