//! The hot path on one thread, for instruction counts under callgrind (which
//! is repeatable on a shared, noisy machine where wall time is not):
//! `publish_many` runs of 64 to N subscribers, then each subscriber drains
//! its ring with `recv_many`-sized batches.
//!
//! ```text
//! cargo bench --bench hot_path --no-run
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out \
//!     target/release/deps/hot_path-* 10000 20
//! callgrind_annotate /tmp/cg.out | head -40
//! ```
//!
//! Without valgrind it prints wall ns per delivery (one core, no contention).

use std::time::Instant;

use fanout::Hub;

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| !a.starts_with('-'));
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let rounds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(50);
    let hub = Hub::<u64>::builder().capacity(256).build().unwrap();
    let mut subs: Vec<_> = (0..n).map(|_| hub.subscribe().unwrap()).collect();
    let mut buf = Vec::with_capacity(256);
    let start = Instant::now();
    let mut received = 0u64;
    for r in 0..rounds {
        hub.broadcast_many(r * 64..(r + 1) * 64).unwrap();
        for s in subs.iter_mut() {
            while let Ok(k) = s.try_recv_many(&mut buf, 256) {
                if k == 0 {
                    break;
                }
            }
            received += buf.len() as u64;
            buf.clear();
        }
    }
    let el = start.elapsed();
    assert_eq!(received, rounds * 64 * n as u64);
    println!(
        "{n} subscribers, {received} deliveries: {:.1} ns per delivery (push + pop, one thread)",
        el.as_nanos() as f64 / received as f64
    );
}
