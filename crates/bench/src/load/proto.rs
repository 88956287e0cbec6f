//! What a `load-worker` process and its parent say to each other.
//!
//! The parent starts each worker as `fanout-bench load-worker …` (the same
//! binary, a hidden subcommand) and talks to it over pipes:
//!
//! - **parent → worker, stdin:** one word per line. `tick` asks for the figures
//!   of the interval since the last tick; `stop` ends the run (the worker closes
//!   its clients, answers with a last [`Event::Tick`] and [`Event::Done`], and
//!   exits). EOF on stdin counts as `stop`, so a parent that dies takes its
//!   workers with it.
//! - **worker → parent, stdout:** one [`Event`] per line, as JSON. stderr is
//!   passed through to the user.
//!
//! Because the parent drives the ticks, every worker's interval covers the same
//! second and the parent can add them up without aligning clocks. Latencies
//! travel as the recorded buckets of each worker's interval histogram
//! (`[value_us, count]` pairs), which the parent merges exactly: percentiles of
//! a merged histogram are true percentiles, percentiles of percentiles are not.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// One line from a worker.
#[derive(Serialize, Deserialize, Debug, Clone)]
#[serde(tag = "ev", rename_all = "snake_case")]
pub enum Event {
    /// During the ramp, every 100 ms.
    Progress { connected: u64, failed: u64 },
    /// Every client connected (or failed) and subscribed.
    Ready {
        connected: u64,
        failed: u64,
        /// Reading clients subscribed to each topic (stalled clients excluded).
        subscribers_per_topic: Vec<u64>,
        /// The first connect or subscribe errors, for the report.
        errors: Vec<String>,
    },
    /// Figures of one interval.
    Tick(Interval),
    /// After `stop`: the worker is about to exit.
    Done { closed_by_server: u64 },
}

/// What the clients of one worker saw in one interval.
#[derive(Serialize, Deserialize, Debug, Clone, Default)]
pub struct Interval {
    /// Messages received by reading clients.
    pub deliveries: u64,
    /// WebSocket payload bytes received.
    pub bytes: u64,
    /// Seq discontinuities seen (one per jump).
    pub gaps: u64,
    /// Messages skipped by those jumps: lost messages.
    pub gap_messages: u64,
    /// Lag notices received (`{"lagged":n}`).
    pub lag_notices: u64,
    /// Sum of their `n`.
    pub lagged_messages: u64,
    /// Forward jumps that no lag notice just before them explains.
    pub unexplained_gaps: u64,
    /// Pushes below the highest seq seen that filled a gap (overtaken).
    pub out_of_order: u64,
    /// Pushes whose seq was received before.
    pub duplicates: u64,
    /// Seq gaps never filled, counted when a client ends.
    pub seq_missing: u64,
    /// Clients that saw their first out-of-order or duplicated push in this interval.
    pub clients_disordered: u64,
    /// Protocol surprises: unparsable frames, pushes of a topic not subscribed, read errors.
    pub errors: u64,
    /// Open connections at the end of the interval.
    pub connections: u64,
    /// Reconnections made by `--reconnect-fraction` clients.
    #[serde(default)]
    pub reconnects: u64,
    /// Reconnections to another node after a node dropped the connection
    /// (several nodes only; see `client.rs`, "Failing over").
    #[serde(default)]
    pub failovers: u64,
    /// Resubscriptions with `since` the server answered `recovered: true`.
    #[serde(default)]
    pub recovered: u64,
    /// Resubscriptions with `since` answered `recovered: false`.
    #[serde(default)]
    pub not_recovered: u64,
    /// Messages the recovered resubscriptions replayed (the server's `seq`
    /// minus the client's `since`).
    #[serde(default)]
    pub replayed: u64,
    /// Connections the server closed so far (close frame or EOF).
    pub closed_by_server: u64,
    /// Latency buckets, microseconds: `[value, count]`.
    pub latency_us: Vec<(u64, u64)>,
}

/// A latency histogram in microseconds, 1 µs to 100 s, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000, 3).expect("valid histogram bounds")
}

/// The recorded buckets of `h`.
pub fn buckets(h: &Histogram<u64>) -> Vec<(u64, u64)> {
    h.iter_recorded().map(|v| (v.value_iterated_to(), v.count_at_value())).collect()
}

/// Adds `b` (from [`buckets`]) into `h`.
pub fn merge_buckets(h: &mut Histogram<u64>, b: &[(u64, u64)]) {
    for &(v, n) in b {
        h.saturating_record_n(v, n);
    }
}

impl Interval {
    /// Adds `o` to `self` (connections and closes are levels, summed over workers).
    pub fn add(&mut self, o: &Interval) {
        self.deliveries += o.deliveries;
        self.bytes += o.bytes;
        self.gaps += o.gaps;
        self.gap_messages += o.gap_messages;
        self.lag_notices += o.lag_notices;
        self.lagged_messages += o.lagged_messages;
        self.reconnects += o.reconnects;
        self.failovers += o.failovers;
        self.recovered += o.recovered;
        self.not_recovered += o.not_recovered;
        self.replayed += o.replayed;
        self.unexplained_gaps += o.unexplained_gaps;
        self.out_of_order += o.out_of_order;
        self.duplicates += o.duplicates;
        self.seq_missing += o.seq_missing;
        self.clients_disordered += o.clients_disordered;
        self.errors += o.errors;
        self.connections += o.connections;
        self.closed_by_server += o.closed_by_server;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_round_trip_through_json() {
        let mut h = new_histogram();
        for v in [5u64, 50, 500, 5000, 5000, 123_456] {
            h.record(v).unwrap();
        }
        let line =
            serde_json::to_string(&Event::Tick(Interval { latency_us: buckets(&h), ..Default::default() }))
                .unwrap();
        let Event::Tick(i) = serde_json::from_str(&line).unwrap() else { panic!("not a tick: {line}") };
        let mut back = new_histogram();
        merge_buckets(&mut back, &i.latency_us);
        assert_eq!(back.len(), h.len());
        assert_eq!(back.value_at_quantile(0.99), h.value_at_quantile(0.99));
    }
}
