//! Topics numbered elsewhere (a cluster's broker): `publish_at`, `advance`,
//! `backfill` against what a subscriber receives and what a join replays.

use std::time::Duration;

use fanout_core::{Hub, JoinFrom, Meta, NotRecovered, Placed, Position, Priority, TryRecvError};

fn hub() -> Hub<u64> {
    Hub::builder().history(100, Duration::from_secs(60)).build().unwrap()
}

fn at(epoch: u64, seq: u64) -> Meta {
    Meta { epoch, seq }
}

#[test]
fn messages_keep_the_position_they_were_given() {
    let hub = hub();
    let mut s = hub.subscribe().unwrap();
    s.join("t").unwrap();
    let t = hub.topic("t");
    for seq in 41..=43 {
        let placed = t.publish_at(at(7, seq), Priority::Normal, |m| m.seq * 10).unwrap();
        assert!(matches!(placed, Placed::Published(r) if r.seq == seq));
    }
    let got: Vec<(u64, u64, u64)> =
        std::iter::from_fn(|| s.try_recv().ok()).map(|m| (m.epoch(), m.seq(), *m.payload())).collect();
    assert_eq!(got, [(7, 41, 410), (7, 42, 420), (7, 43, 430)]);
    assert_eq!(t.position(), Position { epoch: 7, seq: 43 });
}

#[test]
fn a_duplicate_or_an_older_message_is_ignored() {
    let hub = hub();
    let mut s = hub.subscribe().unwrap();
    s.join("t").unwrap();
    let t = hub.topic("t");
    t.publish_at(at(7, 5), Priority::Normal, |_| 5).unwrap();
    t.publish_at(at(7, 6), Priority::Normal, |_| 6).unwrap();
    assert_eq!(t.publish_at(at(7, 6), Priority::Normal, |_| 66).unwrap(), Placed::Stale);
    assert_eq!(t.publish_at(at(7, 2), Priority::Normal, |_| 2).unwrap(), Placed::Stale);
    let got: Vec<u64> = std::iter::from_fn(|| s.try_recv().ok()).map(|m| *m.payload()).collect();
    assert_eq!(got, [5, 6]);
}

#[test]
fn a_skipped_range_is_a_lag_at_its_place_and_no_replay_crosses_it() {
    let hub = hub();
    let mut s = hub.subscribe().unwrap();
    s.join("t").unwrap();
    let t = hub.topic("t");
    t.publish_at(at(7, 1), Priority::Normal, |_| 1).unwrap();
    t.publish_at(at(7, 2), Priority::Normal, |_| 2).unwrap();
    // 3..=5 never arrive.
    t.publish_at(at(7, 6), Priority::Normal, |_| 6).unwrap();
    assert_eq!(s.try_recv().unwrap().seq(), 1);
    assert_eq!(s.try_recv().unwrap().seq(), 2);
    assert_eq!(s.try_recv().unwrap_err(), TryRecvError::Lagged(3), "the gap is announced before 6");
    assert_eq!(s.try_recv().unwrap().seq(), 6);
    // A client that saw 2 cannot be replayed across the gap.
    let back = hub.subscribe().unwrap();
    let j = hub.join_from(back.id(), "t", JoinFrom::After(Position { epoch: 7, seq: 2 })).unwrap();
    assert_eq!((j.recovered, j.reason), (false, Some(NotRecovered::TooOld)));
    // One that saw 6 is.
    let back = hub.subscribe().unwrap();
    let j = hub.join_from(back.id(), "t", JoinFrom::After(Position { epoch: 7, seq: 6 })).unwrap();
    assert!(j.recovered);
}

#[test]
fn another_epoch_restarts_the_stream() {
    let hub = hub();
    let mut s = hub.subscribe().unwrap();
    s.join("t").unwrap();
    let t = hub.topic("t");
    t.publish_at(at(7, 10), Priority::Normal, |_| 10).unwrap();
    t.publish_at(at(8, 1), Priority::Normal, |_| 1).unwrap();
    let a = s.try_recv().unwrap();
    let b = s.try_recv().unwrap();
    assert_eq!((a.epoch(), a.seq(), b.epoch(), b.seq()), (7, 10, 8, 1), "no lag notice: a new stream");
    let back = hub.subscribe().unwrap();
    let j = hub.join_from(back.id(), "t", JoinFrom::After(Position { epoch: 7, seq: 9 })).unwrap();
    assert_eq!(j.reason, Some(NotRecovered::EpochChanged));
    assert_eq!(j.position, Position { epoch: 8, seq: 1 });
}

#[test]
fn a_backfill_lets_a_join_recover_from_further_back() {
    let hub = hub();
    let t = hub.topic("t");
    t.advance(Position { epoch: 7, seq: 20 });
    t.publish_at(at(7, 21), Priority::Normal, |_| 21).unwrap();
    let from = JoinFrom::After(Position { epoch: 7, seq: 17 });
    let probe = hub.subscribe().unwrap();
    assert_eq!(hub.join_from(probe.id(), "t", from).unwrap().reason, Some(NotRecovered::TooOld));
    // Messages that do not end where the history begins are refused.
    assert_eq!(t.backfill((17..=19).map(|seq| (at(7, seq), seq))), 0);
    assert_eq!(t.backfill((18..=19).map(|seq| (at(8, seq), seq))), 0, "another epoch");
    assert_eq!(t.backfill((18..=20).map(|seq| (at(7, seq), seq))), 3);
    let mut back = hub.subscribe().unwrap();
    let j = hub.join_from(back.id(), "t", from).unwrap();
    assert!(j.recovered);
    let got: Vec<u64> = std::iter::from_fn(|| back.try_recv().ok()).map(|m| m.seq()).collect();
    assert_eq!(got, [18, 19, 20, 21]);
}
