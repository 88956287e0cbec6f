//! The hot path on one thread, for instruction counts under callgrind (which
//! is repeatable on a shared, noisy machine where wall time is not).
//!
//! - `hot_path N ROUNDS` (default mode `many`): `publish_many` runs of 64 to
//!   N subscribers, then each subscriber drains its ring with
//!   `recv_many`-sized batches.
//! - `hot_path N ROUNDS one`: what `benches/compare.rs` `publish/fanout/N`
//!   does: one topic publish of one message (`Hub::publish`), then every
//!   subscriber takes its copy with `try_recv`.
//!
//! ```text
//! cargo bench --bench hot_path --no-run
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out \
//!     target/release/deps/hot_path-* 10000 20 [one]
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
    let one = args.next().is_some_and(|m| m == "one");
    let hub = Hub::<u64>::builder().capacity(256).build().unwrap();
    let mut subs: Vec<_> = (0..n).map(|_| hub.subscribe().unwrap()).collect();
    let mut received = 0u64;
    let start;
    let per_round;
    if one {
        for s in &subs {
            hub.join(s.id(), "t").unwrap();
        }
        per_round = 1;
        // Per round: the publish and the drain timed apart; the minimum over
        // rounds is robust to a loaded machine (a round that was not
        // preempted), the median says what is typical.
        let mut pubs = Vec::with_capacity(rounds as usize);
        let mut drains = Vec::with_capacity(rounds as usize);
        start = Instant::now();
        for r in 0..rounds {
            let t0 = Instant::now();
            hub.publish("t", r).unwrap();
            let t1 = Instant::now();
            for s in subs.iter_mut() {
                std::hint::black_box(s.try_recv().expect("delivered"));
                received += 1;
            }
            pubs.push((t1 - t0).as_nanos() as f64 / n as f64);
            drains.push(t1.elapsed().as_nanos() as f64 / n as f64);
        }
        let stat = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            (v[0], v[v.len() / 2])
        };
        let (pmin, pmed) = stat(&mut pubs);
        let (dmin, dmed) = stat(&mut drains);
        println!(
            "per round, ns per delivery: publish min {pmin:.1} median {pmed:.1}; drain min {dmin:.1} median {dmed:.1}"
        );
    } else {
        per_round = 64;
        let mut buf = Vec::with_capacity(256);
        start = Instant::now();
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
    }
    let el = start.elapsed();
    assert_eq!(received, rounds * per_round * n as u64);
    println!(
        "{n} subscribers, {received} deliveries{}: {:.1} ns per delivery (push + pop, one thread)",
        if one { " (one message per publish)" } else { "" },
        el.as_nanos() as f64 / received as f64
    );
}
