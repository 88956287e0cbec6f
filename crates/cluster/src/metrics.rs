//! A node's broker metrics, rendered into the server's `/metrics`: broker
//! round trip, lag behind the broker, messages in and out, and every
//! repair, loss and epoch change.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Counters of one node (plain `Relaxed` counters: each is read alone).
#[derive(Debug, Default)]
pub(crate) struct ClusterMetrics {
    pub(crate) published: AtomicU64,
    pub(crate) publish_errors: AtomicU64,
    rtt_ns_sum: AtomicU64,
    rtt_count: AtomicU64,
    rtt_ns_max: AtomicU64,
    pub(crate) received: AtomicU64,
    pub(crate) applied: AtomicU64,
    pub(crate) stale: AtomicU64,
    pub(crate) repaired: AtomicU64,
    pub(crate) lost: AtomicU64,
    pub(crate) new_epochs: AtomicU64,
    pub(crate) disconnects: AtomicU64,
    pub(crate) connected: AtomicU64,
    pub(crate) join_errors: AtomicU64,
}

impl ClusterMetrics {
    pub(crate) fn round_trip(&self, d: Duration) {
        let ns = d.as_nanos() as u64;
        self.rtt_ns_sum.fetch_add(ns, Relaxed);
        self.rtt_count.fetch_add(1, Relaxed);
        self.rtt_ns_max.fetch_max(ns, Relaxed);
    }

    /// The Prometheus lines; `lag` is the node's backlog of routed messages
    /// not yet applied, `topics` its topics of interest.
    pub(crate) fn render(&self, broker: &str, lag: usize, topics: usize) -> String {
        let mut o = String::with_capacity(2048);
        let mut one = |name: &str, kind: &str, help: &str, v: u64| {
            let _ =
                writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name}{{broker=\"{broker}\"}} {v}");
        };
        let g = |a: &AtomicU64| a.load(Relaxed);
        one(
            "fanout_cluster_published_total",
            "counter",
            "Publishes the broker numbered (messages out).",
            g(&self.published),
        );
        one(
            "fanout_cluster_publish_errors_total",
            "counter",
            "Publishes the broker did not confirm (the client got an error).",
            g(&self.publish_errors),
        );
        one(
            "fanout_cluster_broker_rtt_seconds_sum_ns",
            "counter",
            "Sum of publish round trips to the broker, in nanoseconds.",
            g(&self.rtt_ns_sum),
        );
        one(
            "fanout_cluster_broker_rtt_count",
            "counter",
            "Publish calls to the broker measured (a batch's run of topic messages is one call).",
            g(&self.rtt_count),
        );
        one(
            "fanout_cluster_broker_rtt_max_ns",
            "gauge",
            "Longest publish round trip, in nanoseconds.",
            g(&self.rtt_ns_max),
        );
        one(
            "fanout_cluster_received_total",
            "counter",
            "Messages the broker routed to this node (messages in).",
            g(&self.received),
        );
        one(
            "fanout_cluster_applied_total",
            "counter",
            "Messages fanned out locally at the broker's position.",
            g(&self.applied),
        );
        one(
            "fanout_cluster_stale_total",
            "counter",
            "Routed messages already applied (duplicates, replays): ignored.",
            g(&self.stale),
        );
        one(
            "fanout_cluster_repaired_total",
            "counter",
            "Messages missed on the routing path and read back from the broker's stream.",
            g(&self.repaired),
        );
        one(
            "fanout_cluster_lost_total",
            "counter",
            "Messages missed that the broker no longer held: reported to local subscribers as lag.",
            g(&self.lost),
        );
        one(
            "fanout_cluster_epoch_changes_total",
            "counter",
            "Topics whose stream the broker lost and restarted (a new epoch).",
            g(&self.new_epochs),
        );
        one(
            "fanout_cluster_disconnects_total",
            "counter",
            "Times the routing connection to the broker was lost.",
            g(&self.disconnects),
        );
        one(
            "fanout_cluster_connected",
            "gauge",
            "1 while the routing connection to the broker is up.",
            g(&self.connected),
        );
        one(
            "fanout_cluster_join_errors_total",
            "counter",
            "Joins refused because the broker could not be reached.",
            g(&self.join_errors),
        );
        one(
            "fanout_cluster_lag_messages",
            "gauge",
            "Routed messages received and not yet applied (lag behind the broker).",
            lag as u64,
        );
        one(
            "fanout_cluster_topics",
            "gauge",
            "Topics this node is subscribed to at the broker.",
            topics as u64,
        );
        o
    }
}
