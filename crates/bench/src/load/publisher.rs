//! The publishers: `POST /api/publish` at a target rate, each message stamped
//! with the time it was due.
//!
//! # Pacing, over several publishers
//!
//! One schedule for the whole run: message `n` (counting from 0 over all
//! publishers) is due at `start + (n + 1) / rate`. With `P` publishers
//! (`--publishers`, default 4), publisher `p` owns the messages `n ≡ p (mod P)`
//! and has its own keep-alive connection with one request in flight, so `P`
//! requests to the same topics race at the server, as independent producers'
//! do. A publisher sleeps until its next message is due, then sends everything
//! of its own that is due in one request: one message as an object, several as
//! a JSON array (the API's batch form). So at low rates each message goes
//! alone, and at rates beyond what one request per message can carry, or when
//! the server answers slowly, messages go in batches instead of falling behind
//! (batches are capped at 1,000 messages, ~300 KB at 256-byte payloads). The
//! report compares the achieved rate with the target; a step of the capacity
//! search fails if the publishers could not keep up.
//!
//! With several nodes, publisher `p` publishes to node `p mod N` of the nodes
//! it is given (the run leaves out a node it is going to kill: whether a
//! publish in flight to a dying node was taken is unknowable, and the report
//! counts exactly what was accepted).
//!
//! # No coordinated omission
//!
//! Each payload carries the time its message was **due**, not the time its
//! request was written: `{"t":<due time, µs since the Unix epoch>,"p":"xxx…"}`,
//! padded so that the payload is `payload_size` bytes. A publisher waiting on a
//! slow answer sends its next messages late, and their latency counts the wait,
//! as a user whose message was due then would see it. (Stamping the send time
//! would hide exactly the slow periods.) The latency includes the server's HTTP
//! handling.
//!
//! Messages go round-robin over the topics, or, with `zipf > 0` (mixed
//! rates), topic `i` gets a share proportional to `1 / (i + 1)^zipf`: message
//! `n` goes to the topic where the golden-ratio sequence `frac(n · φ)` falls in
//! the cumulative shares, which spreads each topic's messages evenly in time
//! and is the same on every run; which topic message `n` goes to does not
//! depend on which publisher sends it.
//!
//! # HTTP
//!
//! A minimal HTTP/1.1 client over one keep-alive `TcpStream` (request,
//! `Content-Length` answer), enough for this API and for `GET /metrics`, and not
//! worth a client crate. The answers' `delivered` add up to the deliveries the
//! server made, which the report sets against what clients received.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::client::{now_us, topic_name};

/// One keep-alive HTTP/1.1 connection.
pub struct Http {
    addr: SocketAddr,
    stream: BufReader<TcpStream>,
}

impl Http {
    /// Connects to `addr`.
    pub async fn connect(addr: SocketAddr) -> std::io::Result<Http> {
        let s = TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        Ok(Http { addr, stream: BufReader::new(s) })
    }

    /// Sends one request and reads the answer: `(status, body)`.
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<(u16, Vec<u8>)> {
        let mut head =
            format!("{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n", self.addr, body.len());
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        let w = self.stream.get_mut();
        w.write_all(head.as_bytes()).await?;
        w.write_all(body).await?;
        let mut line = String::new();
        self.stream.read_line(&mut line).await?;
        let status: u16 =
            line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| bad(&line))?;
        let mut len = None;
        loop {
            line.clear();
            if self.stream.read_line(&mut line).await? == 0 {
                return Err(bad("eof in headers"));
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse::<usize>().ok();
                }
            }
        }
        let len = len.ok_or_else(|| bad("no content-length"))?;
        let mut body = vec![0; len];
        self.stream.read_exact(&mut body).await?;
        Ok((status, body))
    }
}

fn bad(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, format!("bad HTTP answer: {what}"))
}

/// The `http://host:port` base of a `ws://host:port/path` URL.
pub fn http_addr(ws_url: &str) -> Result<SocketAddr, String> {
    super::worker::resolve(ws_url)
}

/// What to publish.
#[derive(Clone, Debug)]
pub struct PublishPlan {
    pub rate: f64,
    pub payload_size: usize,
    pub topics: u32,
    pub api_key: String,
    /// 0: every topic at the same rate; s > 0: topic i's share ∝ 1/(i+1)^s.
    pub zipf: f64,
    /// Publish every message to this topic instead (the stall flood).
    pub only_topic: Option<String>,
    /// Publishers sharing the schedule (each its own connection).
    pub publishers: u32,
}

/// One publisher's share of the schedule.
#[derive(Clone, Copy, Debug)]
pub struct Share {
    /// This publisher's index, `0..publishers`.
    pub index: u64,
    /// Publishers sharing the schedule.
    pub publishers: u64,
    /// Messages per second over all publishers.
    pub rate: f64,
}

impl Share {
    /// The global number of this publisher's `k`-th message.
    pub fn message(&self, k: u64) -> u64 {
        self.index + k * self.publishers
    }

    /// When message `n` is due, after the start.
    pub fn due(&self, n: u64) -> Duration {
        Duration::from_secs_f64((n + 1) as f64 / self.rate)
    }

    /// How many of this publisher's messages are due `elapsed` after the start.
    pub fn due_by(&self, elapsed: Duration) -> u64 {
        // Messages 0..=m are due, m + 1 = floor(elapsed × rate); ours are n ≡ index.
        let due_all = (elapsed.as_secs_f64() * self.rate) as u64;
        if due_all <= self.index {
            0
        } else {
            (due_all - self.index).div_ceil(self.publishers)
        }
    }
}

/// Picks the topic of each message (see the module docs).
pub struct TopicPicker {
    cumulative: Vec<f64>,
}

impl TopicPicker {
    pub fn new(topics: u32, zipf: f64) -> TopicPicker {
        let w: Vec<f64> = (0..topics.max(1)).map(|i| 1.0 / ((i + 1) as f64).powf(zipf)).collect();
        let total: f64 = w.iter().sum();
        let mut acc = 0.0;
        let cumulative = w.iter().map(|x| {
            acc += x / total;
            acc
        });
        TopicPicker { cumulative: cumulative.collect() }
    }

    /// Message `n`'s topic.
    pub fn topic_of(&self, n: u64) -> u32 {
        if self.cumulative.len() == 1 {
            return 0;
        }
        const PHI: f64 = 0.618_033_988_749_894_8;
        let u = (n as f64 * PHI).fract();
        self.cumulative.partition_point(|&c| c < u).min(self.cumulative.len() - 1) as u32
    }
}

/// What the publisher did.
#[derive(Default, Debug, Clone)]
pub struct Published {
    /// Messages accepted by the server, per topic.
    pub per_topic: Vec<u64>,
    pub messages: u64,
    pub requests: u64,
    /// Sum of `delivered` in the answers.
    pub delivered: u64,
    /// Sum of `dropped`.
    pub dropped: u64,
    /// Requests that failed (status not 200, or I/O).
    pub errors: u64,
    pub first_error: Option<String>,
    pub elapsed: Duration,
}

impl Published {
    /// Adds another publisher's figures (elapsed: the longer).
    pub fn add(&mut self, o: &Published) {
        if self.per_topic.len() < o.per_topic.len() {
            self.per_topic.resize(o.per_topic.len(), 0);
        }
        for (a, b) in self.per_topic.iter_mut().zip(&o.per_topic) {
            *a += b;
        }
        self.messages += o.messages;
        self.requests += o.requests;
        self.delivered += o.delivered;
        self.dropped += o.dropped;
        self.errors += o.errors;
        if self.first_error.is_none() {
            self.first_error.clone_from(&o.first_error);
        }
        self.elapsed = self.elapsed.max(o.elapsed);
    }
}

#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    delivered: u64,
    #[serde(default)]
    dropped: u64,
}

/// A payload of `size` bytes stamped with the current time.
pub fn payload(size: usize) -> String {
    payload_at(size, now_us())
}

/// A payload of `size` bytes stamped with `t` (µs since the Unix epoch).
pub fn payload_at(size: usize, t: u64) -> String {
    let head = format!(r#"{{"t":{t},"p":""#);
    let pad = size.saturating_sub(head.len() + 2);
    let mut s = String::with_capacity(head.len() + pad + 2);
    s.push_str(&head);
    s.extend(std::iter::repeat('x').take(pad));
    s.push_str("\"}");
    s
}

/// Runs `plan.publishers` publishers on one schedule (see the module docs),
/// publisher `p` on `addrs[p mod N]`, until `stop` turns true; messages
/// accepted reach `progress` as they go.
pub async fn run_all(
    addrs: &[SocketAddr],
    plan: PublishPlan,
    stop: watch::Receiver<bool>,
    progress: Arc<AtomicU64>,
) -> Published {
    let start = Instant::now();
    let start_us = now_us();
    let n = u64::from(plan.publishers.max(1));
    let tasks: Vec<_> = (0..n)
        .map(|index| {
            let share = Share { index, publishers: n, rate: plan.rate };
            let addr = addrs[index as usize % addrs.len().max(1)];
            tokio::spawn(run(addr, plan.clone(), share, (start, start_us), stop.clone(), progress.clone()))
        })
        .collect();
    let mut out = Published { per_topic: vec![0; plan.topics.max(1) as usize], ..Default::default() };
    for t in tasks {
        match t.await {
            Ok(p) => out.add(&p),
            Err(e) => {
                out.errors += 1;
                out.first_error.get_or_insert_with(|| format!("publisher task: {e}"));
            }
        }
    }
    out
}

/// One publisher: its `share` of the schedule that began at `start` (an
/// instant, and the same moment in µs since the Unix epoch).
async fn run(
    addr: SocketAddr,
    plan: PublishPlan,
    share: Share,
    (start, start_us): (Instant, u64),
    mut stop: watch::Receiver<bool>,
    progress: Arc<AtomicU64>,
) -> Published {
    let mut out = Published { per_topic: vec![0; plan.topics.max(1) as usize], ..Default::default() };
    if plan.rate <= 0.0 {
        let _ = stop.wait_for(|s| *s).await;
        out.elapsed = start.elapsed();
        return out;
    }
    let mut http = match Http::connect(addr).await {
        Ok(h) => h,
        Err(e) => {
            out.errors += 1;
            out.first_error = Some(format!("connect {addr}: {e}"));
            return out;
        }
    };
    let auth = format!("Bearer {}", plan.api_key);
    let picker = TopicPicker::new(plan.topics, plan.zipf);
    let topic_of = |n: u64| {
        if plan.zipf > 0.0 {
            picker.topic_of(n)
        } else {
            (n % u64::from(plan.topics.max(1))) as u32
        }
    };
    // This publisher's messages sent so far.
    let mut sent = 0u64;
    loop {
        let due_at = start + share.due(share.message(sent));
        tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => break,
            _ = tokio::time::sleep_until(due_at.into()) => {}
        }
        let n = share.due_by(start.elapsed()).saturating_sub(sent).clamp(1, 1000);
        let mut body = String::new();
        let mut topics = Vec::with_capacity(n as usize);
        if n > 1 {
            body.push('[');
        }
        for i in 0..n {
            if i > 0 {
                body.push(',');
            }
            let msg = share.message(sent + i);
            let t = topic_of(msg);
            topics.push(t);
            let name = plan.only_topic.clone().unwrap_or_else(|| topic_name(t));
            let due_us = start_us + share.due(msg).as_micros() as u64;
            body.push_str(&format!(
                r#"{{"topic":"{name}","payload":{}}}"#,
                payload_at(plan.payload_size, due_us)
            ));
        }
        if n > 1 {
            body.push(']');
        }
        sent += n;
        out.requests += 1;
        let headers = [("Authorization", auth.as_str()), ("Content-Type", "application/json")];
        match http.request("POST", "/api/publish", &headers, body.as_bytes()).await {
            Ok((200, b)) => {
                out.messages += n;
                progress.fetch_add(n, Relaxed);
                for t in topics {
                    out.per_topic[t as usize] += 1;
                }
                if let Ok(a) = serde_json::from_slice::<Answer>(&b) {
                    out.delivered += a.delivered;
                    out.dropped += a.dropped;
                }
            }
            Ok((status, b)) => {
                out.errors += 1;
                out.first_error
                    .get_or_insert_with(|| format!("HTTP {status}: {}", String::from_utf8_lossy(&b)));
            }
            Err(e) => {
                out.errors += 1;
                out.first_error.get_or_insert_with(|| format!("publish: {e}"));
                match Http::connect(addr).await {
                    Ok(h) => http = h,
                    Err(_) => break,
                }
            }
        }
    }
    out.elapsed = start.elapsed();
    out
}

/// Sends one message to each topic now, in one request (the broadcast after
/// an idle hold).
pub async fn broadcast_once(addr: SocketAddr, plan: &PublishPlan) -> Published {
    let mut out = Published { per_topic: vec![0; plan.topics.max(1) as usize], ..Default::default() };
    let start = Instant::now();
    let items: Vec<String> = (0..plan.topics.max(1))
        .map(|t| format!(r#"{{"topic":"{}","payload":{}}}"#, topic_name(t), payload(plan.payload_size)))
        .collect();
    let body = format!("[{}]", items.join(","));
    let auth = format!("Bearer {}", plan.api_key);
    let headers = [("Authorization", auth.as_str()), ("Content-Type", "application/json")];
    out.requests = 1;
    let answer = match Http::connect(addr).await {
        Ok(mut h) => h.request("POST", "/api/publish", &headers, body.as_bytes()).await,
        Err(e) => Err(e),
    };
    match answer {
        Ok((200, b)) => {
            out.messages = items.len() as u64;
            out.per_topic.iter_mut().for_each(|c| *c = 1);
            if let Ok(a) = serde_json::from_slice::<Answer>(&b) {
                out.delivered = a.delivered;
                out.dropped = a.dropped;
            }
        }
        Ok((status, b)) => {
            out.errors = 1;
            out.first_error = Some(format!("HTTP {status}: {}", String::from_utf8_lossy(&b)));
        }
        Err(e) => {
            out.errors = 1;
            out.first_error = Some(format!("publish: {e}"));
        }
    }
    out.elapsed = start.elapsed();
    out
}

/// Scrapes `/metrics`: the figures the report quotes.
#[derive(Default, Debug, Clone, serde::Serialize)]
pub struct ServerMetrics {
    /// Messages per flush (`fanout_write_batch_size` sum / count).
    pub messages_per_write: Option<f64>,
    pub evicted: Option<f64>,
    pub dropped: Option<f64>,
    pub delivered: Option<f64>,
    pub lag_notices: Option<f64>,
}

/// Reads `GET /metrics` of every node that answers and picks the figures out
/// of their Prometheus text, added up over the nodes (`None`: none answered).
pub async fn scrape(addrs: &[SocketAddr]) -> Option<ServerMetrics> {
    let mut text = String::new();
    for &addr in addrs {
        let Ok(mut h) = Http::connect(addr).await else { continue };
        let answer =
            tokio::time::timeout(Duration::from_secs(5), h.request("GET", "/metrics", &[], b"")).await;
        if let Ok(Ok((200, body))) = answer {
            text.push_str(&String::from_utf8_lossy(&body));
            text.push('\n');
        }
    }
    (!text.is_empty()).then(|| parse_metrics(&text))
}

fn parse_metrics(text: &str) -> ServerMetrics {
    let sum = |name: &str| -> Option<f64> {
        let mut found = None;
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            // A blank line (between the nodes' texts) names nothing.
            let Some((k, v)) = l.rsplit_once(' ') else { continue };
            let base = k.split('{').next().unwrap_or(k);
            if base == name {
                *found.get_or_insert(0.0) += v.parse::<f64>().unwrap_or(0.0);
            }
        }
        found
    };
    let (s, c) = (sum("fanout_write_batch_size_sum"), sum("fanout_write_batch_size_count"));
    ServerMetrics {
        messages_per_write: match (s, c) {
            (Some(s), Some(c)) if c > 0.0 => Some(s / c),
            _ => None,
        },
        evicted: sum("fanout_evicted_total"),
        dropped: sum("fanout_dropped_total"),
        delivered: sum("fanout_delivered_total"),
        lag_notices: sum("fanout_lag_notices_total"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_has_the_asked_size_and_a_stamp() {
        let p = payload(256);
        assert_eq!(p.len(), 256);
        let v: serde_json::Value = serde_json::from_str(&p).unwrap();
        assert!(v["t"].as_u64().unwrap() > 1_600_000_000_000_000);
    }

    #[test]
    fn publishers_share_one_schedule() {
        let shares: Vec<Share> = (0..4).map(|index| Share { index, publishers: 4, rate: 100.0 }).collect();
        // Every message number belongs to exactly one publisher.
        let mut owned: Vec<u64> = shares.iter().flat_map(|s| (0..25).map(|k| s.message(k))).collect();
        owned.sort_unstable();
        assert_eq!(owned, (0..100).collect::<Vec<u64>>());
        // Message n is due at (n + 1) / rate, whoever sends it.
        assert_eq!(shares[2].due(shares[2].message(3)), Duration::from_millis(150));
        // After 55 ms, messages 0..=4 are due: publisher 0 owns 0 and 4, the others one each.
        let due: Vec<u64> = shares.iter().map(|s| s.due_by(Duration::from_millis(55))).collect();
        assert_eq!(due, vec![2, 1, 1, 1]);
        assert_eq!(shares[3].due_by(Duration::from_millis(35)), 0);
    }

    #[test]
    fn a_payload_carries_the_due_time_it_is_given() {
        let v: serde_json::Value = serde_json::from_str(&payload_at(128, 42)).unwrap();
        assert_eq!(v["t"], 42);
    }

    #[test]
    fn zipf_shares_fall_with_the_topic_index() {
        let p = TopicPicker::new(100, 1.0);
        let mut count = vec![0u32; 100];
        for n in 0..100_000 {
            count[p.topic_of(n) as usize] += 1;
        }
        assert!(count[0] > 5 * count[9] && count[9] > 5 * count[99] && count[99] > 0, "{count:?}");
        let u = TopicPicker::new(1, 0.0);
        assert_eq!(u.topic_of(7), 0);
    }

    #[test]
    fn reads_prometheus_text() {
        let m = parse_metrics(
            "# HELP x\nfanout_write_batch_size_sum 300\nfanout_write_batch_size_count 100\nfanout_evicted_total{reason=\"slow\"} 2\nfanout_evicted_total{reason=\"x\"} 1\n",
        );
        assert_eq!(m.messages_per_write, Some(3.0));
        assert_eq!(m.evicted, Some(3.0));
        assert_eq!(m.lag_notices, None);
    }

    #[test]
    fn adds_up_the_texts_of_several_nodes() {
        let node = "fanout_write_batch_size_sum 300\nfanout_write_batch_size_count 100\nfanout_evicted_total{reason=\"slow\"} 2\n";
        let m = parse_metrics(&format!("{node}\n{node}\n"));
        assert_eq!(m.messages_per_write, Some(3.0));
        assert_eq!(m.evicted, Some(4.0));
    }
}
