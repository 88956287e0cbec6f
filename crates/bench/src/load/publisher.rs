//! The publisher: `POST /api/publish` at a target rate, each message stamped.
//!
//! # Pacing
//!
//! Message `n` is due at `start + n / rate`. The publisher sleeps until the next
//! message is due, then sends everything that is due in one request: one message
//! as an object, several as a JSON array (the API's batch form). So at low rates
//! each message goes alone, and at rates beyond what one request per message can
//! carry, or when the server answers slowly, messages go in batches instead of
//! falling behind (batches are capped at 1,000 messages, ~300 KB at 256-byte
//! payloads). The report compares the achieved rate with the target; a step
//! of the capacity search fails if the publisher could not keep up.
//!
//! Messages go round-robin over the topics, or, with `zipf > 0` (mixed
//! rates), topic `i` gets a share proportional to `1 / (i + 1)^zipf`: message
//! `n` goes to the topic where the golden-ratio sequence `frac(n · φ)` falls in
//! the cumulative shares, which spreads each topic's messages evenly in time
//! and is the same on every run. Each payload is
//! `{"t":<send time, µs since the Unix epoch>,"p":"xxx…"}`, padded so that the
//! payload is `payload_size` bytes; `t` is taken just before the request is
//! written, so the latency includes the server's HTTP handling.
//!
//! # HTTP
//!
//! A minimal HTTP/1.1 client over one keep-alive `TcpStream` (request,
//! `Content-Length` answer), enough for this API and for `GET /metrics`, and not
//! worth a client crate. The answers' `delivered` add up to the deliveries the
//! server made, which the report sets against what clients received.

use std::net::SocketAddr;
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
}

/// Picks the topic of each message (see the module docs).
pub struct TopicPicker {
    cumulative: Vec<f64>,
    n: u64,
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
        TopicPicker { cumulative: cumulative.collect(), n: 0 }
    }

    /// The next message's topic.
    pub fn next_topic(&mut self) -> u32 {
        let t = if self.cumulative.len() == 1 {
            0
        } else {
            const PHI: f64 = 0.618_033_988_749_894_8;
            let u = (self.n as f64 * PHI).fract();
            self.cumulative.partition_point(|&c| c < u).min(self.cumulative.len() - 1)
        };
        self.n += 1;
        t as u32
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

#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    delivered: u64,
    #[serde(default)]
    dropped: u64,
}

/// A payload of `size` bytes stamped with the current time.
pub fn payload(size: usize) -> String {
    let t = now_us();
    let head = format!(r#"{{"t":{t},"p":""#);
    let pad = size.saturating_sub(head.len() + 2);
    let mut s = String::with_capacity(head.len() + pad + 2);
    s.push_str(&head);
    s.extend(std::iter::repeat('x').take(pad));
    s.push_str("\"}");
    s
}

/// Publishes per `plan` until `stop` turns true. Counts reach `progress` as it goes.
pub async fn run(
    addr: SocketAddr,
    plan: PublishPlan,
    mut stop: watch::Receiver<bool>,
    progress: watch::Sender<u64>,
) -> Published {
    let mut out = Published { per_topic: vec![0; plan.topics.max(1) as usize], ..Default::default() };
    let start = Instant::now();
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
    let mut picker = TopicPicker::new(plan.topics, plan.zipf);
    let mut next_topic = 0u32;
    let mut sent = 0u64;
    loop {
        let due_at = start + Duration::from_secs_f64((sent + 1) as f64 / plan.rate);
        tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => break,
            _ = tokio::time::sleep_until(due_at.into()) => {}
        }
        let due = (start.elapsed().as_secs_f64() * plan.rate) as u64;
        let n = due.saturating_sub(sent).clamp(1, 1000);
        let mut body = String::new();
        let mut topics = Vec::with_capacity(n as usize);
        if n > 1 {
            body.push('[');
        }
        for i in 0..n {
            if i > 0 {
                body.push(',');
            }
            let t = if plan.zipf > 0.0 {
                picker.next_topic()
            } else {
                let t = next_topic;
                next_topic = (next_topic + 1) % plan.topics.max(1);
                t
            };
            topics.push(t);
            let name = plan.only_topic.clone().unwrap_or_else(|| topic_name(t));
            body.push_str(&format!(r#"{{"topic":"{name}","payload":{}}}"#, payload(plan.payload_size)));
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
        progress.send_replace(out.messages);
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

/// Reads `GET /metrics` and picks the figures out of the Prometheus text.
pub async fn scrape(addr: SocketAddr) -> Option<ServerMetrics> {
    let mut h = Http::connect(addr).await.ok()?;
    let (status, body) = tokio::time::timeout(Duration::from_secs(5), h.request("GET", "/metrics", &[], b""))
        .await
        .ok()?
        .ok()?;
    (status == 200).then(|| parse_metrics(&String::from_utf8_lossy(&body)))
}

fn parse_metrics(text: &str) -> ServerMetrics {
    let sum = |name: &str| -> Option<f64> {
        let mut found = None;
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            let (k, v) = l.rsplit_once(' ')?;
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
    fn zipf_shares_fall_with_the_topic_index() {
        let mut p = TopicPicker::new(100, 1.0);
        let mut count = vec![0u32; 100];
        for _ in 0..100_000 {
            count[p.next_topic() as usize] += 1;
        }
        assert!(count[0] > 5 * count[9] && count[9] > 5 * count[99] && count[99] > 0, "{count:?}");
        let mut u = TopicPicker::new(1, 0.0);
        assert_eq!(u.next_topic(), 0);
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
}
