//! The order checker, fed synthetic streams: it must catch a reordered or
//! duplicated stream and an unexplained gap, and pass an ordered one whose gaps
//! sit where a lag was reported.

use fanout_bench::order::{OrderChecker, OrderCounts, Violation};

fn feed(c: &mut OrderChecker, events: &[Ev]) -> Vec<Violation> {
    let mut v = Vec::new();
    for e in events {
        match *e {
            Ev::Push(seq) => v.extend(c.push(seq)),
            Ev::Lag(n) => c.lagged(n),
        }
    }
    v
}

#[derive(Clone, Copy)]
enum Ev {
    Push(u64),
    Lag(u64),
}
use Ev::{Lag, Push};

#[test]
fn an_ordered_stream_passes() {
    let mut c = OrderChecker::from_start(1);
    let events: Vec<Ev> = (1..=1000).map(Push).collect();
    assert!(feed(&mut c, &events).is_empty());
    let n = c.finish();
    assert_eq!(n, OrderCounts { received: 1000, ..OrderCounts::default() });
    assert_eq!(n.violations(), 0);
}

#[test]
fn gaps_at_reported_lags_pass_and_count_as_missing() {
    let mut c = OrderChecker::from_start(1);
    // 4..=7 lost and reported there; 10..=11 lost, reported as 3 (a notice may
    // cover more than one topic's losses); the notice before 1 explains 0.
    let v = feed(&mut c, &[Push(1), Push(2), Push(3), Lag(4), Push(8), Push(9), Lag(3), Push(12), Push(13)]);
    assert!(v.is_empty(), "{v:?}");
    let n = c.finish();
    assert_eq!(n.violations(), 0);
    assert_eq!((n.gaps, n.gap_messages, n.lagged, n.missing), (2, 6, 7, 6));
}

#[test]
fn a_reordered_stream_fails() {
    let mut c = OrderChecker::from_start(1);
    // 3 is overtaken by 4: what concurrent publishers walking the subscribers
    // on their own produce.
    let v = feed(&mut c, &[Push(1), Push(2), Push(4), Push(3), Push(5)]);
    assert_eq!(
        v,
        vec![Violation::Gap { seq: 4, highest: 2, lagged: 0 }, Violation::OutOfOrder { seq: 3, highest: 4 }]
    );
    assert_eq!(c.first_violation(), Some(v[0]));
    let n = c.finish();
    assert_eq!((n.out_of_order, n.duplicates, n.unexplained_gaps, n.missing), (1, 0, 1, 0));
    assert_eq!(n.violations(), 2);
    assert!(v[1].to_string().contains("seq 3 arrived after seq 4"), "{}", v[1]);
}

#[test]
fn a_deep_reorder_is_out_of_order_not_duplicate() {
    let mut c = OrderChecker::from_start(1);
    let v = feed(&mut c, &[Push(1), Push(6), Push(3), Push(2), Push(5), Push(4), Push(7)]);
    assert_eq!(v.len(), 5);
    let n = c.finish();
    assert_eq!((n.out_of_order, n.duplicates, n.missing), (4, 0, 0));
}

#[test]
fn a_duplicate_fails() {
    let mut c = OrderChecker::from_start(1);
    let v = feed(&mut c, &[Push(1), Push(2), Push(2), Push(3), Push(1)]);
    assert_eq!(
        v,
        vec![Violation::Duplicate { seq: 2, highest: 2 }, Violation::Duplicate { seq: 1, highest: 3 }]
    );
    assert_eq!(c.finish().duplicates, 2);
}

#[test]
fn a_gap_without_a_lag_at_its_position_fails() {
    // No lag at all.
    let mut c = OrderChecker::from_start(1);
    assert_eq!(feed(&mut c, &[Push(1), Push(2), Push(5)]).len(), 1);
    // Too little lag.
    let mut c = OrderChecker::from_start(1);
    assert_eq!(feed(&mut c, &[Push(1), Lag(1), Push(4)]).len(), 1);
    // Lag reported one message too early does not carry over to the gap.
    let mut c = OrderChecker::from_start(1);
    let v = feed(&mut c, &[Push(1), Lag(3), Push(2), Push(6)]);
    assert_eq!(v, vec![Violation::Gap { seq: 6, highest: 2, lagged: 0 }]);
    // A loss before the first push of a stream with a known start.
    let mut c = OrderChecker::from_start(1);
    assert_eq!(feed(&mut c, &[Push(3)]).len(), 1);
    assert_eq!(c.finish().missing, 2);
}

#[test]
fn a_stream_without_a_known_start_begins_at_its_first_push() {
    let mut c = OrderChecker::new();
    assert!(feed(&mut c, &[Push(41), Push(42), Push(43)]).is_empty());
    assert_eq!(c.finish().violations(), 0);
}

#[test]
fn a_push_that_overtook_the_first_one_is_out_of_order() {
    let mut c = OrderChecker::new();
    // 5 came first and was taken as the start; 3 was overtaken by it, 4 never comes.
    let v = feed(&mut c, &[Push(5), Push(6), Push(3), Push(7)]);
    assert_eq!(v, vec![Violation::OutOfOrder { seq: 3, highest: 6 }]);
    let n = c.finish();
    assert_eq!((n.out_of_order, n.duplicates, n.missing), (1, 0, 1));
    // With a known start, a seq below it can only be a repeat.
    let mut c = OrderChecker::from_start(5);
    assert_eq!(feed(&mut c, &[Push(5), Push(3)]), vec![Violation::Duplicate { seq: 3, highest: 5 }]);
}

#[test]
fn counts_add_up() {
    let mut a = OrderCounts { received: 3, out_of_order: 1, ..OrderCounts::default() };
    a.add(&OrderCounts { received: 2, duplicates: 1, unexplained_gaps: 1, ..OrderCounts::default() });
    assert_eq!((a.received, a.violations()), (5, 3));
}
