//! `load-worker`: a process that holds a share of the clients, and its handle.
//!
//! # Why processes
//!
//! A process may hold at most 20,000 files here (see `limits.rs`), so N clients
//! may need several processes. The parent re-executes its own binary with the
//! hidden subcommand `load-worker`, gives each worker a range of client ids, and
//! drives it over the pipes described in `proto.rs`. Clients always live in
//! workers, even when one would do, so there is one code path; the parent keeps
//! only the publisher, the samplers and the report.
//!
//! # The ramp
//!
//! A worker connects its clients with at most `--concurrency` handshakes in
//! flight (the server's accept queue and the 2 cores set the pace, not us),
//! reports progress every 100 ms, and says `ready` once every client has either
//! subscribed or failed. A failed client is not retried: the report says how
//! many failed and the first errors.
//!
//! # Stopping
//!
//! On `stop` (or EOF) every client closes its connection; the worker waits for
//! them at most 3 s, sends the last interval and `done`, and exits.

use std::io::Write as _;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;

use super::client::{self, Moves, Tallies, Target};
use super::proto::Event;

/// `fanout-bench load-worker` (hidden; started by `fanout-bench load`).
#[derive(Args, Debug, Clone)]
pub struct WorkerArgs {
    /// The nodes' WebSocket URLs; client `id` starts on node `id mod N`.
    #[arg(long, value_delimiter = ',', required = true)]
    pub url: Vec<String>,
    /// First client id of this worker.
    #[arg(long)]
    pub first_id: usize,
    #[arg(long)]
    pub clients: usize,
    #[arg(long)]
    pub topics: u32,
    #[arg(long)]
    pub per_client: u32,
    #[arg(long, default_value_t = 0.0)]
    pub stalled_fraction: f64,
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
    /// Stalled clients also subscribe to the flood topic.
    #[arg(long)]
    pub flood: bool,
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub spread_sources: bool,
    /// Share of reading clients that reconnect with `since` every `reconnect_every_ms`.
    #[arg(long, default_value_t = 0.0)]
    pub reconnect_fraction: f64,
    #[arg(long, default_value_t = 5000)]
    pub reconnect_every_ms: u64,
}

/// The topics of client `id`: K consecutive topics starting at `id * K mod T`.
pub fn topics_of(id: usize, topics: u32, per_client: u32) -> Vec<u32> {
    let t = topics.max(1) as u64;
    (0..per_client.min(topics) as u64).map(|j| ((id as u64 * per_client as u64 + j) % t) as u32).collect()
}

/// Whether client `id` stalls: spread evenly, `fraction` of all ids.
pub fn is_stalled(id: usize, fraction: f64) -> bool {
    fraction > 0.0 && ((id + 1) as f64 * fraction).floor() > (id as f64 * fraction).floor()
}

/// Whether reading client `id` reconnects: about `fraction` of the ids,
/// picked by a multiplicative hash so that the choice does not line up with
/// the stalled clients' (a stalled client never reconnects).
pub fn is_reconnector(id: usize, fraction: f64, stalled_fraction: f64) -> bool {
    let bucket = (id as u64).wrapping_mul(2_654_435_761) % 10_000;
    fraction > 0.0 && !is_stalled(id, stalled_fraction) && (bucket as f64) < fraction * 10_000.0
}

fn emit(ev: &Event) {
    let mut out = std::io::stdout().lock();
    let _ = serde_json::to_writer(&mut out, ev);
    let _ = out.write_all(b"\n");
    let _ = out.flush();
}

/// Resolves `ws://host:port/path` to a socket address.
pub fn resolve(url: &str) -> Result<std::net::SocketAddr, String> {
    let rest = url.strip_prefix("ws://").ok_or_else(|| format!("{url}: only ws:// URLs are supported"))?;
    let hostport = rest.split('/').next().unwrap_or(rest);
    let hp = if hostport.contains(':') { hostport.to_string() } else { format!("{hostport}:80") };
    std::net::ToSocketAddrs::to_socket_addrs(&hp)
        .map_err(|e| format!("{hp}: {e}"))?
        .find(|a| a.is_ipv4())
        .ok_or_else(|| format!("{hp}: no IPv4 address"))
}

/// The worker process's main.
pub fn main(args: WorkerArgs) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| e.to_string())?;
    rt.block_on(run(args))
}

async fn run(args: WorkerArgs) -> Result<(), String> {
    let mut nodes = Vec::new();
    for url in &args.url {
        let addr = resolve(url)?;
        nodes.push(Target {
            url: url.clone(),
            addr,
            spread_sources: args.spread_sources && addr.ip().is_loopback(),
        });
    }
    let nodes = Arc::new(nodes);
    let tallies = Arc::new(Tallies::new());
    let (stop_tx, stop_rx) = watch::channel(false);
    let failed = Arc::new(AtomicU64::new(0));
    let mut per_topic = vec![0u64; args.topics as usize];
    let sem = Arc::new(Semaphore::new(args.concurrency.max(1)));
    // Each client reports once: the topics it reads (None if it failed or stalls).
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel::<Option<Vec<u32>>>();
    let mut set = JoinSet::new();
    for id in args.first_id..args.first_id + args.clients {
        let topics = topics_of(id, args.topics, args.per_client);
        let stalled = is_stalled(id, args.stalled_fraction);
        let flood = args.flood;
        let (reconnect_fraction, reconnect_every_ms, stalled_fraction) =
            (args.reconnect_fraction, args.reconnect_every_ms, args.stalled_fraction);
        let (nodes, tallies, stop, failed, sem, ready) =
            (nodes.clone(), tallies.clone(), stop_rx.clone(), failed.clone(), sem.clone(), ready_tx.clone());
        set.spawn(async move {
            let node = id % nodes.len();
            let permit = sem.acquire_owned().await;
            let conn = client::connect(id, &nodes[node], &topics, &[], stalled, flood).await;
            drop(permit);
            match conn {
                Ok(joined) => {
                    tallies.open.fetch_add(1, Relaxed);
                    let _ = ready.send((!stalled).then(|| topics.clone()));
                    drop(ready);
                    if stalled {
                        client::stall(joined.ws, &tallies, stop).await;
                    } else {
                        let reconnect_every = is_reconnector(id, reconnect_fraction, stalled_fraction)
                            .then(|| Duration::from_millis(reconnect_every_ms.max(1)));
                        let moves = Moves { nodes, node, reconnect_every };
                        client::read_loop(id, joined, topics, &tallies, stop, moves).await;
                    }
                }
                Err(e) => {
                    failed.fetch_add(1, Relaxed);
                    tallies.note_error(format!("client {id}: {e}"));
                    let _ = ready.send(None);
                }
            }
        });
    }
    drop(ready_tx);
    // Ramp: count clients that are done connecting, report every 100 ms.
    let mut done = 0usize;
    let mut every = tokio::time::interval(Duration::from_millis(100));
    while done < args.clients {
        tokio::select! {
            r = ready_rx.recv() => match r {
                Some(reading) => {
                    done += 1;
                    for t in reading.unwrap_or_default() {
                        per_topic[t as usize] += 1;
                    }
                }
                None => break,
            },
            _ = every.tick() => emit(&Event::Progress { connected: tallies.open.load(Relaxed), failed: failed.load(Relaxed) }),
        }
    }
    let errors = tallies.first_errors.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let (connected, nfailed) = (tallies.open.load(Relaxed), failed.load(Relaxed));
    emit(&Event::Ready { connected, failed: nfailed, subscribers_per_topic: per_topic, errors });
    // Steady: answer ticks until stop or EOF.
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        match line.trim() {
            "tick" => emit(&Event::Tick(tallies.take())),
            "stop" => break,
            _ => {}
        }
    }
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(3), async { while set.join_next().await.is_some() {} })
        .await;
    emit(&Event::Tick(tallies.take()));
    emit(&Event::Done { closed_by_server: tallies.closed_by_server.load(Relaxed) });
    Ok(())
}

/// The parent's handle on its workers.
pub struct Workers {
    children: Vec<Child>,
    stdins: Vec<ChildStdin>,
    /// Events, tagged with the worker's index.
    pub events: mpsc::UnboundedReceiver<(usize, Event)>,
}

impl Workers {
    /// Starts one worker per entry of `per_worker`, with client ids running on.
    pub fn spawn(base: &WorkerArgs, per_worker: &[usize]) -> Result<Workers, String> {
        let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
        let (tx, events) = mpsc::unbounded_channel();
        let (mut children, mut stdins) = (Vec::new(), Vec::new());
        let mut first = 0;
        for (w, &n) in per_worker.iter().enumerate() {
            let mut cmd = tokio::process::Command::new(&exe);
            cmd.arg("load-worker")
                .args(["--url", &base.url.join(",")])
                .args(["--first-id", &first.to_string()])
                .args(["--clients", &n.to_string()])
                .args(["--topics", &base.topics.to_string()])
                .args(["--per-client", &base.per_client.to_string()])
                .args(["--stalled-fraction", &base.stalled_fraction.to_string()])
                .args(["--concurrency", &base.concurrency.to_string()])
                .args(["--spread-sources", &base.spread_sources.to_string()])
                .args(["--reconnect-fraction", &base.reconnect_fraction.to_string()])
                .args(["--reconnect-every-ms", &base.reconnect_every_ms.to_string()])
                .args(if base.flood { &["--flood"][..] } else { &[][..] })
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true);
            let mut child = cmd.spawn().map_err(|e| format!("spawn {}: {e}", exe.display()))?;
            stdins.push(child.stdin.take().expect("piped stdin"));
            let stdout = child.stdout.take().expect("piped stdout");
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stdout).lines();
                while let Ok(Some(l)) = lines.next_line().await {
                    match serde_json::from_str::<Event>(&l) {
                        Ok(ev) => {
                            let _ = tx.send((w, ev));
                        }
                        Err(e) => eprintln!("load-worker {w}: bad line ({e}): {l}"),
                    }
                }
            });
            children.push(child);
            first += n;
        }
        Ok(Workers { children, stdins, events })
    }

    /// Process ids (for the load generator's CPU).
    pub fn pids(&self) -> Vec<u32> {
        self.children.iter().filter_map(|c| c.id()).collect()
    }

    /// How many workers.
    pub fn len(&self) -> usize {
        self.children.len()
    }

    /// Sends `word` to every worker.
    pub async fn tell(&mut self, word: &str) {
        for s in &mut self.stdins {
            let _ = s.write_all(format!("{word}\n").as_bytes()).await;
            let _ = s.flush().await;
        }
    }

    /// Waits for the processes to exit.
    pub async fn wait(mut self) {
        self.stdins.clear();
        for c in &mut self.children {
            let _ = tokio::time::timeout(Duration::from_secs(5), c.wait()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_are_spread_evenly() {
        let mut count = vec![0; 1000];
        for id in 0..10_000 {
            for t in topics_of(id, 1000, 1) {
                count[t as usize] += 1;
            }
        }
        assert!(count.iter().all(|&c| c == 10));
        assert_eq!(topics_of(7, 10, 3), vec![1, 2, 3]);
        assert_eq!(topics_of(0, 2, 5), vec![0, 1]);
    }

    #[test]
    fn reconnectors_are_about_the_fraction_and_never_stalled() {
        let n = (0..10_000).filter(|&i| is_reconnector(i, 0.25, 0.0)).count();
        assert!((2_000..3_000).contains(&n), "{n} of 10,000 for 0.25");
        assert_eq!((0..1000).filter(|&i| is_reconnector(i, 0.0, 0.0)).count(), 0);
        assert!((0..1000).all(|i| !(is_reconnector(i, 1.0, 0.1) && is_stalled(i, 0.1))));
    }

    #[test]
    fn stalled_fraction_is_spread() {
        let n = (0..5000).filter(|&i| is_stalled(i, 0.02)).count();
        assert_eq!(n, 100);
        assert!(!(0..100).any(|i| is_stalled(i, 0.0)));
    }

    #[test]
    fn resolves_loopback_urls() {
        assert_eq!(resolve("ws://127.0.0.1:9/ws").unwrap().port(), 9);
        assert!(resolve("http://x").is_err());
    }
}
