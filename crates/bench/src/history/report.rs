//! `history.json` (everything, with every timed join) and `history.md` (the
//! figures against issue 13's targets), both written by the tool.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::join::{Case, JoinCost};
use super::memory::Memory;
use super::publish::{PublishCost, Side};
use super::{Part, Percentiles, Settings};
use crate::machine::Machine;
use crate::report::{dur, machine_lines};

/// The whole report.
#[derive(Serialize)]
pub struct Report {
    pub command: String,
    pub quick: bool,
    pub wall_seconds: f64,
    pub machine: Machine,
    pub settings: Settings,
    /// The parts run; the others are `null`.
    pub parts: Vec<Part>,
    pub publish_cost: Option<PublishCost>,
    pub join: Option<JoinCost>,
    pub memory: Option<Memory>,
}

/// Writes `out/history.json`, `out/history.md` and (with the joins)
/// `out/history-joins.csv`, one line per timed join.
pub fn write(out: &Path, r: &Report) -> Result<(PathBuf, PathBuf), String> {
    if let Some(j) = &r.join {
        let cp = out.join("history-joins.csv");
        std::fs::write(&cp, joins_csv(j)).map_err(|e| format!("{}: {e}", cp.display()))?;
    }
    let json = serde_json::to_string_pretty(r).map_err(|e| e.to_string())?;
    let (jp, mp) = (out.join("history.json"), out.join("history.md"));
    std::fs::write(&jp, json + "\n").map_err(|e| format!("{}: {e}", jp.display()))?;
    std::fs::write(&mp, markdown(r)).map_err(|e| format!("{}: {e}", mp.display()))?;
    Ok((jp, mp))
}

/// Every timed join: `case,ns,ns_from_due,back,replayed,recovered,reason,
/// replay_ok,publishes_overlapped,delivered_a_run`.
fn joins_csv(j: &JoinCost) -> String {
    let mut s = String::from(
        "case,ns,ns_from_due,back,replayed,recovered,reason,replay_ok,publishes_overlapped,delivered_a_run\n",
    );
    for c in &j.cases {
        for x in &c.samples {
            let _ = writeln!(
                s,
                "{},{},{},{},{},{},{},{},{},{}",
                c.name,
                x.ns,
                x.ns_from_due,
                x.back,
                x.replayed,
                x.recovered,
                x.reason.unwrap_or(""),
                x.replay_ok,
                x.publishes_overlapped,
                x.delivered_a_run
            );
        }
    }
    s
}

fn met(b: bool) -> &'static str {
    if b {
        "**met**"
    } else {
        "**missed**"
    }
}

fn pct(p: &Percentiles) -> String {
    if p.count == 0 {
        return "–".into();
    }
    format!("{} / {} / {} / {}", dur(p.p50_ns), dur(p.p90_ns), dur(p.p99_ns), dur(p.max_ns))
}

fn side_row(s: &mut String, x: &Side) {
    let rounds: Vec<String> = x.ns_per_delivery_rounds.iter().map(|v| format!("{v:.2}")).collect();
    let _ = writeln!(
        s,
        "| {} | {:.2} | {:.1} M/s | {} | {:.1} | {} / {} | {} | {} |",
        x.history,
        x.ns_per_delivery,
        x.deliveries_per_sec / 1e6,
        rounds.join(", "),
        x.deliveries_per_wake,
        dur(x.publish_p50_ns),
        dur(x.publish_p99_ns),
        x.lost,
        x.evicted
    );
}

fn case_row(s: &mut String, c: &Case) {
    let _ = writeln!(
        s,
        "| {} | {} | {}/{} ({} replays checked) | {} | {} | {} ({}) | {} ({}) | {} | {} | {} | {} |",
        c.name,
        c.rate_runs_per_s.map_or("–".to_string(), |r| format!(
            "{r:.1} asked, {:.2} done",
            c.achieved_rate_runs_per_s.unwrap_or(0.0)
        )),
        c.recovered,
        c.joins,
        c.replay_ok,
        pct(&c.join_from_due),
        pct(&c.join),
        pct(&c.join_clear),
        c.join_clear.count,
        pct(&c.join_overlapped_publish),
        c.join_overlapped_publish.count,
        pct(&c.publish_calls),
        c.publish_busy_fraction.map_or("–".to_string(), |f| format!("{:.1} %", f * 100.0)),
        c.evicted,
        c.lost
    );
}

/// The Markdown report.
pub fn markdown(r: &Report) -> String {
    let mut s = String::new();
    let st = &r.settings;
    let _ = writeln!(s, "# fanout-bench history\n");
    let _ = writeln!(s, "Command: `{}`  ", r.command);
    s.push_str(&machine_lines(&r.machine));
    let _ = writeln!(
        s,
        "History: {} messages, {} s TTL (the server's default); wall time {:.0} s{}\n",
        st.history_size,
        st.history_ttl_s,
        r.wall_seconds,
        if r.quick { "; **quick run: tiny sizes, figures mean nothing**" } else { "" }
    );

    if let Some(p) = &r.publish_cost {
        publish_section(&mut s, p);
    }
    if let Some(j) = &r.join {
        join_section(&mut s, st, j);
    }
    if let Some(m) = &r.memory {
        memory_section(&mut s, m);
    }
    s
}

fn publish_section(s: &mut String, p: &PublishCost) {
    let _ = writeln!(s, "## Publishing with history on vs off\n");
    let _ = writeln!(
        s,
        "One topic, {} subscribers each drained by a task (2-worker runtime), one publisher of runs of {} \
         (`publish_many`), paced so nobody loses a message; {} messages per subscriber per run; {} rounds, \
         both in each, in ABBA order (off, on; on, off; …). ns = wall nanoseconds per delivery, median over rounds.\n",
        p.subscribers, p.batch, p.messages_per_subscriber, p.rounds
    );
    let _ = writeln!(
        s,
        "| history | ns/delivery | deliveries/s | per round | deliveries/wake | publish call p50 / p99 | lost | evicted |"
    );
    let _ = writeln!(s, "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: |");
    side_row(s, &p.off);
    side_row(s, &p.on);
    let rr: Vec<String> = p.ratio_rounds.iter().map(|v| format!("{v:.3}")).collect();
    let _ = writeln!(
        s,
        "\nOn ÷ off: **{:.3}** ({:+.1} %); per round: {}. Target ({}): {}.\n",
        p.ratio_on_over_off,
        p.slower_percent,
        rr.join(", "),
        p.target,
        met(p.target_met)
    );
    let pr = &p.probe;
    let lo = pr.history_ns_per_run_blocks.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = pr.history_ns_per_run_blocks.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let run_ns = p.off.ns_per_delivery * p.batch as f64 * p.subscribers as f64;
    let _ = writeln!(
        s,
        "Probe, one thread (a run of 64 to one subscriber, published and drained, {} blocks of {} runs, ABBA): \
         {:.0} ns per run off, {:.0} on (medians); the history adds **{:.0} ns per run of 64** (median of the \
         paired blocks' differences, which range from {:.0} to {:.0} ns), {:.4} % of a run to {} subscribers at \
         the off side's median ({:.1} ms); the largest block difference would be {:.4} %.\n",
        pr.blocks,
        pr.runs_per_block,
        pr.off_ns_per_run,
        pr.on_ns_per_run,
        pr.history_ns_per_run,
        lo,
        hi,
        pr.implied_percent,
        p.subscribers,
        run_ns / 1e6,
        hi / run_ns * 100.0
    );
}

fn join_section(s: &mut String, st: &Settings, j: &JoinCost) {
    let _ = writeln!(s, "## Joins from a position\n");
    if st.join_now {
        let _ = writeln!(
            s,
            "**`--join-now`: these joins are `JoinFrom::Now` (no position, nothing replayed), not joins from a \
             position.**\n"
        );
    }
    let _ = writeln!(
        s,
        "One topic, {} subscribers already in it (set up in {:.1} s), each drained by a task; history full. \
         Per case, {} joins, one due every {} µs (open loop: a join held up by a walk delays the ones after \
         it, and they count from when they were due), each a fresh subscriber joining with \
         `join_from(id, topic, JoinFrom::After(position − back))`, back = {}…{} messages; \
         each call timed on its own, then checked (recovered; replay consecutive up to the hand-off). \
         `publishing R/s`: a thread publishes a run of {} every 1/R s (each once every subscriber is within 128 \
         messages). A join waits for a walk in progress, and delivers a run that became ready while it held \
         the walk, so joins are split by whether they overlapped a publish call. \
         Times: p50 / p90 / p99 / max.\n",
        j.subscribers,
        j.setup_seconds,
        st.joins_per_case,
        st.join_interval_us,
        st.join_back_min,
        st.join_back_max,
        st.batch
    );
    let _ = writeln!(
        s,
        "| case | runs of 64 per s | recovered | join, from when due | join call | call, clear of publishes (n) | call, overlapped a publish (n) | publish call (walk) | time in publish calls | evicted | lost |"
    );
    let _ = writeln!(s, "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for c in &j.cases {
        case_row(s, c);
    }
    let _ = writeln!(
        s,
        "\nTarget ({}): idle {}, publishing {}.\n",
        j.target,
        met(j.target_met_idle),
        met(j.target_met_publishing)
    );
    let fill: Vec<String> = j.fill_publish_calls_ns.iter().map(|&n| dur(n)).collect();
    let _ = writeln!(
        s,
        "A run of 64 walked to all {} subscribers with no join running (the two runs that fill the history): {}.  ",
        j.subscribers,
        fill.join(", ")
    );
    for c in j.cases.iter().filter(|c| c.publishing) {
        let _ = writeln!(
            s,
            "`{}`: {} joins waited through more than one walk; {} publish calls found the walk held by a join and left their run to it, so {} joins delivered a run of 64 to every subscriber before returning.  ",
            c.name, c.joins_through_several_walks, c.publish_calls_left_to_a_join, c.joins_that_delivered_a_run
        );
    }
    for c in &j.cases {
        if !c.not_recovered.is_empty() {
            let _ = writeln!(s, "Not recovered ({}): {:?}  ", c.name, c.not_recovered);
        }
    }
    let _ = writeln!(s);
}

fn memory_section(s: &mut String, m: &Memory) {
    let _ = writeln!(s, "## Memory per topic\n");
    let _ = writeln!(
        s,
        "{} topics, each held by a handle and given {} messages of a {}-byte payload (no subscribers); growth of \
         the live heap (bytes asked for) and of the RSS, per hub.\n",
        m.topics, m.messages_per_topic, m.payload_bytes
    );
    let _ = writeln!(s, "| history | heap per topic | RSS per topic | held in a topic's history |");
    let _ = writeln!(s, "| ---: | ---: | ---: | ---: |");
    for f in [&m.without_history, &m.with_history] {
        let _ = writeln!(
            s,
            "| {} | {:.0} B | {:.0} B | {} |",
            f.history_size, f.heap_bytes_per_topic, f.rss_bytes_per_topic, f.held_in_first_topic
        );
    }
    let _ = writeln!(
        s,
        "\nThe default history costs **{:.0} bytes of heap per topic** ({:.1} per message kept, of which {} are \
         the payload; {:.0} per topic without the payloads), {:.0} bytes of RSS per topic.",
        m.history_heap_bytes_per_topic,
        m.history_heap_bytes_per_message,
        m.payload_bytes,
        m.history_heap_bytes_per_topic_without_payload,
        m.history_rss_bytes_per_topic
    );
}
