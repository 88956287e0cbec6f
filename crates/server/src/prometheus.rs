//! `/metrics` in the Prometheus text format, and the `$sys.stats` payload.

use std::fmt::Write;

use fanout_core::Engine;
use fanout_ws::{Frame, Gateway, Histogram};

fn head(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn one(out: &mut String, name: &str, kind: &str, help: &str, v: impl std::fmt::Display) {
    head(out, name, kind, help);
    let _ = writeln!(out, "{name} {v}");
}

fn labelled(out: &mut String, name: &str, kind: &str, help: &str, label: &str, vs: &[(&str, u64)]) {
    head(out, name, kind, help);
    for (l, v) in vs {
        let _ = writeln!(out, "{name}{{{label}=\"{l}\"}} {v}");
    }
}

fn histogram(out: &mut String, name: &str, help: &str, h: &Histogram) {
    head(out, name, "histogram", help);
    for (le, c) in &h.buckets {
        if le.is_infinite() {
            let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {c}");
        } else {
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {c}");
        }
    }
    let _ = writeln!(out, "{name}_sum {}\n{name}_count {}", h.sum, h.count);
}

/// The whole exposition.
pub(crate) fn render<E: Engine<Frame>>(gw: &Gateway<E>) -> String {
    let st = gw.engine().stats();
    let m = gw.metrics();
    let mut o = String::with_capacity(4096);
    head(&mut o, "fanout_info", "gauge", "Engine behind the server.");
    let _ = writeln!(o, "fanout_info{{engine=\"{}\"}} 1", gw.engine().name());
    one(&mut o, "fanout_connections", "gauge", "WebSocket connections open.", m.connections);
    one(
        &mut o,
        "fanout_connections_accepted_total",
        "counter",
        "WebSocket connections accepted.",
        m.accepted,
    );
    let rej: Vec<_> = m.rejected.iter().map(|(r, v)| (r.as_str(), *v)).collect();
    labelled(
        &mut o,
        "fanout_upgrades_rejected_total",
        "counter",
        "Upgrades refused, by reason.",
        "reason",
        &rej,
    );
    let closed: Vec<_> = m.closed.iter().map(|(c, v)| (c.as_str(), *v)).collect();
    labelled(
        &mut o,
        "fanout_connections_closed_total",
        "counter",
        "Connections ended, by reason.",
        "reason",
        &closed,
    );
    one(&mut o, "fanout_subscribers", "gauge", "Engine subscribers open.", st.subscribers);
    one(
        &mut o,
        "fanout_subscriptions",
        "gauge",
        "Client subscriptions open (one per connection and topic).",
        gw.subscriptions(),
    );
    one(&mut o, "fanout_topics", "gauge", "Topics that exist.", st.topics);
    one(&mut o, "fanout_published_total", "counter", "Messages published.", st.published);
    one(&mut o, "fanout_delivered_total", "counter", "Deliveries queued.", st.delivered);
    labelled(
        &mut o,
        "fanout_dropped_total",
        "counter",
        "Deliveries not queued, by reason.",
        "reason",
        &[("high_water", st.dropped.high_water), ("full", st.dropped.full), ("evicted", st.dropped.evicted)],
    );
    one(
        &mut o,
        "fanout_displaced_total",
        "counter",
        "Queued messages displaced by newer ones.",
        st.displaced,
    );
    labelled(
        &mut o,
        "fanout_evicted_total",
        "counter",
        "Engine subscribers closed, by reason.",
        "reason",
        &[
            ("shutdown", st.evicted.shutdown),
            ("slow_consumer", st.evicted.slow_consumer),
            ("kicked", st.evicted.kicked),
            ("unsubscribed", st.evicted.unsubscribed),
        ],
    );
    one(&mut o, "fanout_frames_in_total", "counter", "Data frames received from clients.", m.frames_in);
    one(&mut o, "fanout_frames_out_total", "counter", "Frames sent to clients.", m.frames_out);
    one(&mut o, "fanout_bytes_out_total", "counter", "Payload bytes sent to clients.", m.bytes_out);
    one(&mut o, "fanout_lag_notices_total", "counter", "Lag notices sent.", m.lag_notices);
    one(
        &mut o,
        "fanout_lagged_messages_total",
        "counter",
        "Messages reported lost to clients.",
        m.lagged_messages,
    );
    one(
        &mut o,
        "fanout_repaired_messages_total",
        "counter",
        "Lost messages pushed again from a topic's history (gap repair).",
        m.repaired_messages,
    );
    one(
        &mut o,
        "fanout_conflated_messages_total",
        "counter",
        "Missed messages left out for a newer one with the same key.",
        m.conflated_messages,
    );
    one(&mut o, "fanout_rpc_errors_total", "counter", "JSON-RPC error responses.", m.rpc_errors);
    histogram(
        &mut o,
        "fanout_write_batch_size",
        "Messages per write batch (one flush each).",
        &m.write_batch,
    );
    histogram(
        &mut o,
        "fanout_publish_duration_seconds",
        "Time per publish call (encode once, queue to every recipient); a batch's run of topic messages is one call.",
        &m.publish_latency,
    );
    // A cluster node's broker metrics (round trip, lag, messages in/out).
    if let Some(node) = (gw.engine() as &dyn std::any::Any).downcast_ref::<fanout_cluster::Cluster>() {
        o.push_str(&node.metrics_text());
    }
    o
}

/// The `$sys.stats` payload: the figures of `/metrics` that the dashboard
/// draws, each under the name of its metric without `fanout_` and `_total`
/// (so that a test can hold one to the other).
pub(crate) fn stats_json<E: Engine<Frame>>(gw: &Gateway<E>) -> serde_json::Value {
    let st = gw.engine().stats();
    let m = gw.metrics();
    let closed: serde_json::Map<String, serde_json::Value> =
        m.closed.iter().map(|(c, v)| (c.as_str().to_string(), (*v).into())).collect();
    serde_json::json!({
        "engine": gw.engine().name(),
        "connections": m.connections,
        "connections_accepted": m.accepted,
        "connections_closed": closed,
        "subscriptions": gw.subscriptions(),
        "subscribers": st.subscribers,
        "topics": st.topics,
        "published": st.published,
        "delivered": st.delivered,
        "dropped": {
            "high_water": st.dropped.high_water,
            "full": st.dropped.full,
            "evicted": st.dropped.evicted,
        },
        "displaced": st.displaced,
        "evicted": {
            "slow_consumer": st.evicted.slow_consumer,
            "kicked": st.evicted.kicked,
            "shutdown": st.evicted.shutdown,
            "unsubscribed": st.evicted.unsubscribed,
        },
        "frames_out": m.frames_out,
        "bytes_out": m.bytes_out,
        "lag_notices": m.lag_notices,
        "lagged_messages": m.lagged_messages,
        "repaired_messages": m.repaired_messages,
        "conflated_messages": m.conflated_messages,
    })
}
