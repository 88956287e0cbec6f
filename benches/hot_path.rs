//! The hot path on one thread, for instruction counts under callgrind (which
//! is repeatable on a shared, noisy machine where wall time is not).
//!
//! - `hot_path N ROUNDS` (default mode `many`): `publish_many` runs of 64 to
//!   N subscribers, then each subscriber drains its ring with
//!   `recv_many`-sized batches.
//! - `hot_path N ROUNDS topic` / `repair`: the same runs to a topic that
//!   every subscriber joined, without and with gap repair (its receive-side
//!   cost when nothing is lost: one hash-map look-up per message).
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

use fanout::{Engine, Hub, Receiver};
use fanout_baseline::{MutexHub, TokioBroadcast};

/// What `benches/compare.rs` `publish/<engine>/N` does, through the engine
/// trait: one topic publish of one message, then every subscriber takes its
/// copy with `try_recv`. Per round, the publish and the drain are timed apart;
/// the minimum over rounds is robust to a loaded machine (a round that was
/// not preempted), the median says what is typical. Returns the deliveries.
fn one_by_one<E: Engine<u64>>(engine: E, n: usize, rounds: u64) -> u64 {
    let mut subs: Vec<E::Subscriber> = (0..n)
        .map(|_| {
            let s = engine.subscribe().expect("subscribe");
            engine.join(s.id(), "t").expect("join");
            s
        })
        .collect();
    let mut received = 0;
    let mut pubs = Vec::with_capacity(rounds as usize);
    let mut drains = Vec::with_capacity(rounds as usize);
    for r in 0..rounds {
        let t0 = Instant::now();
        engine.publish("t", r).expect("publish");
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
    let (tmin, tmed) = (pmin + dmin, pmed + dmed);
    println!(
        "{}: per round, ns per delivery: publish min {pmin:.1} median {pmed:.1}; drain min {dmin:.1} median {dmed:.1}; sum min {tmin:.1} median {tmed:.1}",
        engine.name()
    );
    drop(subs);
    engine.shutdown();
    received
}

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| !a.starts_with('-'));
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let rounds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(50);
    // `one`: fanout; `tokio`, `mutex`: the baselines, same loop. `topic`:
    // the runs go to a topic every subscriber joined; `repair`: the same,
    // with gap repair on (what it costs the receiver when nothing is lost).
    let mode = args.next();
    let one = mode.clone().filter(|m| ["one", "tokio", "mutex"].contains(&m.as_str()));
    let topic = mode.as_deref().filter(|m| ["topic", "repair"].contains(m)).is_some();
    let hub = Hub::<u64>::builder().capacity(256).repair(mode.as_deref() == Some("repair")).build().unwrap();
    let mut subs: Vec<_> =
        if one.is_some() { Vec::new() } else { (0..n).map(|_| hub.subscribe().unwrap()).collect() };
    if topic {
        for s in &subs {
            s.join("t").unwrap();
        }
    }
    let mut received = 0u64;
    let start;
    let per_round;
    if let Some(engine) = one.as_deref() {
        per_round = 1;
        start = Instant::now();
        received = match engine {
            "tokio" => one_by_one(TokioBroadcast::<u64>::topics_only(), n, rounds),
            "mutex" => one_by_one(MutexHub::<u64>::new(), n, rounds),
            _ => one_by_one(hub.clone(), n, rounds),
        };
    } else {
        per_round = 64;
        let mut buf = Vec::with_capacity(256);
        start = Instant::now();
        for r in 0..rounds {
            if topic {
                hub.publish_many("t", r * 64..(r + 1) * 64).unwrap();
            } else {
                hub.broadcast_many(r * 64..(r + 1) * 64).unwrap();
            }
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
        one.as_deref().map_or(String::new(), |e| format!(" (one message per publish, {e})")),
        el.as_nanos() as f64 / received as f64
    );
}
