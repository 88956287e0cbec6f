//! Helpers of the broker tests: the shared brokers (which must be up: a test
//! that cannot reach one fails and says so), private broker processes on
//! free ports (to stop and start), unique prefixes, and nodes.

#![allow(dead_code)]

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use fanout_cluster::{Broker, BrokerKind, BrokerSettings, Cluster, Event, NatsBroker, RedisBroker};
use fanout_core::{Engine, Hub, JoinFrom, Message, RecvError, Subscriber};
use fanout_ws::Frame;
use tokio::sync::mpsc;

/// How long a test waits for something that must happen.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// The shared Redis, checked reachable.
pub fn shared_redis() -> String {
    reachable("127.0.0.1:6379", "Redis", "redis-server");
    "redis://127.0.0.1:6379".into()
}

/// The shared NATS, checked reachable.
pub fn shared_nats() -> String {
    reachable("127.0.0.1:4222", "NATS", "nats-server -js");
    "nats://127.0.0.1:4222".into()
}

fn reachable(addr: &str, what: &str, cmd: &str) {
    if TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(2)).is_err() {
        panic!(
            "no {what} on {addr}: the broker tests need it (this project's machines and .ci/run start it; \
             by hand: `{cmd}`)"
        );
    }
}

/// A name no other test (or run) uses.
pub fn unique(tag: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("t{}{}{}", tag, std::process::id(), nanos % 1_000_000_000_000)
}

/// Removes what a test left on its broker (its stream, or its keys) when
/// dropped.
pub struct Cleanup(pub BrokerSettings);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let s = self.0.clone();
        // Its own thread and runtime: a drop cannot await.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                match s.kind() {
                    Ok(BrokerKind::Nats) => {
                        if let Ok(c) = async_nats::connect(s.url.as_str()).await {
                            let _ = async_nats::jetstream::new(c).delete_stream(&s.stream).await;
                        }
                    }
                    Ok(BrokerKind::Redis) => {
                        if let Ok(mut c) = redis::Client::open(s.url.as_str()) {
                            let keys: Vec<String> = redis::cmd("KEYS")
                                .arg(format!("{}:*", s.prefix))
                                .query(&mut c)
                                .unwrap_or_default();
                            if !keys.is_empty() {
                                let _: Result<(), _> = redis::cmd("DEL").arg(keys).query(&mut c);
                            }
                        }
                    }
                    Err(_) => {}
                }
            });
        })
        .join();
    }
}

/// Settings for a test: unique prefix and stream, short timeouts.
pub fn settings(url: &str, tag: &str) -> BrokerSettings {
    let mut s = BrokerSettings::new(url);
    s.prefix = unique(tag);
    s.stream = s.prefix.to_uppercase();
    s.ttl = Duration::from_secs(120);
    s.timeout = Duration::from_secs(2);
    s.grace = Duration::from_millis(200);
    s
}

/// A hub that keeps a history (recovery needs one).
pub fn hub() -> Hub<Frame> {
    Hub::builder().history(100, Duration::from_secs(120)).build().unwrap()
}

/// A node on the broker `settings` name.
pub async fn node(settings: &BrokerSettings) -> Cluster {
    Cluster::connect(hub(), settings.clone()).await.expect("the broker is reachable")
}

/// A node whose routed messages pass through `filter` first (to lose some,
/// as a disconnect or a slow node would).
pub async fn filtered_node(
    settings: &BrokerSettings,
    mut filter: impl FnMut(&Event) -> bool + Send + 'static,
) -> Cluster {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let broker: Arc<dyn Broker> = match settings.kind().unwrap() {
        BrokerKind::Redis => Arc::new(RedisBroker::connect(settings, tx).await.unwrap()),
        BrokerKind::Nats => Arc::new(NatsBroker::connect(settings, tx).await.unwrap()),
    };
    let (ftx, frx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(ev) = rx.recv().await {
            if filter(&ev) && ftx.send(ev).is_err() {
                return;
            }
        }
    });
    Cluster::new(hub(), broker, settings.clone(), frx)
}

/// A subscriber of `node` joined to `topic` from `from` (as the transport does).
pub async fn join(node: &Cluster, topic: &str, from: JoinFrom) -> (Subscriber<Frame>, fanout_core::Joined) {
    let sub = node.subscribe().unwrap();
    let j = node.join_from_async(sub.id(), topic, from).await.expect("joined");
    (sub, j)
}

/// What a subscriber got: a message (seq, epoch, payload) or a lag notice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Got {
    Msg { seq: u64, epoch: u64, payload: serde_json::Value },
    Lagged(u64),
}

/// The next thing `sub` gets, within [`PATIENCE`].
pub async fn next(sub: &mut Subscriber<Frame>) -> Got {
    let mut buf = Vec::new();
    match tokio::time::timeout(PATIENCE, sub.recv_many(&mut buf, 1)).await {
        Err(_) => panic!("nothing arrived within {PATIENCE:?}"),
        Ok(Err(RecvError::Lagged(n))) => Got::Lagged(n),
        Ok(Err(e)) => panic!("subscriber closed: {e}"),
        Ok(Ok(_)) => {
            let m: &Message<Frame> = &buf[0];
            let Frame::Text(t) = m.payload() else { panic!("a text push") };
            let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap();
            assert_eq!((v["seq"].as_u64(), v["epoch"].as_u64()), (Some(m.seq()), Some(m.epoch())), "{v}");
            Got::Msg { seq: m.seq(), epoch: m.epoch(), payload: v["payload"].clone() }
        }
    }
}

/// The next `n` messages (panics on a lag notice).
pub async fn messages(sub: &mut Subscriber<Frame>, n: usize) -> Vec<(u64, u64, serde_json::Value)> {
    let mut out = Vec::new();
    while out.len() < n {
        match next(sub).await {
            Got::Msg { seq, epoch, payload } => out.push((seq, epoch, payload)),
            Got::Lagged(k) => panic!("lagged {k} after {out:?}"),
        }
    }
    out
}

/// Publishes a JSON payload through the engine's async path (as the transport does).
pub async fn publish(
    node: &Cluster,
    topic: &str,
    v: serde_json::Value,
) -> Result<u64, fanout_core::PublishError> {
    let raw = serde_json::value::to_raw_value(&v).unwrap();
    let ts = fanout_ws::frame::now_ms();
    node.publish_async(topic, fanout_core::Priority::Normal, None, move |meta| {
        fanout_ws::frame::encode_json(Some(topic), meta, ts, &raw)
    })
    .await
    .map(|r| r.seq)
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A broker process of this test's own, killed on drop.
pub struct Private {
    child: Option<Child>,
    pub port: u16,
    args: Vec<String>,
    program: &'static str,
}

impl Private {
    /// A `redis-server` that keeps nothing on disk (a restart loses every stream).
    pub fn redis() -> Private {
        let port = free_port();
        let args = ["--port", &port.to_string(), "--save", "", "--appendonly", "no", "--bind", "127.0.0.1"]
            .map(String::from)
            .to_vec();
        Private::start("redis-server", port, args)
    }

    /// A `nats-server` with JetStream in a fresh directory (kept across its
    /// restarts, removed on drop).
    pub fn nats() -> Private {
        let port = free_port();
        let dir = std::env::temp_dir().join(unique("js"));
        std::fs::create_dir_all(&dir).unwrap();
        let args = ["-p", &port.to_string(), "-a", "127.0.0.1", "-js", "-sd", dir.to_str().unwrap()]
            .map(String::from)
            .to_vec();
        Private::start("nats-server", port, args)
    }

    fn start(program: &'static str, port: u16, args: Vec<String>) -> Private {
        let mut p = Private { child: None, port, args, program };
        p.up();
        p
    }

    /// Starts it (again), and waits until it accepts connections.
    pub fn up(&mut self) {
        let child = Command::new(self.program)
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {} (installed on this project's machines): {e}", self.program)
            });
        self.child = Some(child);
        let deadline = std::time::Instant::now() + PATIENCE;
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "{} did not come up", self.program);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops it (SIGKILL: no goodbye to its clients) and waits for its end.
    pub fn down(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn url(&self, scheme: &str) -> String {
        format!("{scheme}://127.0.0.1:{}", self.port)
    }
}

impl Drop for Private {
    fn drop(&mut self) {
        self.down();
        if let Some(i) = self.args.iter().position(|a| a == "-sd") {
            let _ = std::fs::remove_dir_all(&self.args[i + 1]);
        }
    }
}

/// A TCP proxy between one node and its broker, to cut that node off (a
/// partition: the broker and the other nodes go on) and let it back.
pub struct Cut {
    /// The port the node connects to.
    pub port: u16,
    off: Arc<std::sync::atomic::AtomicBool>,
    links: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Cut {
    /// A proxy to `url`'s host and port; the node's URL is [`Cut::url`].
    pub async fn to(url: &str) -> Cut {
        let target = url.split_once("://").map(|(_, a)| a.to_string()).expect("scheme://host:port");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let off = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let links = Arc::new(std::sync::Mutex::new(Vec::new()));
        let accept = tokio::spawn({
            let (off, links) = (off.clone(), links.clone());
            async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    if off.load(std::sync::atomic::Ordering::SeqCst) {
                        continue; // dropped: refused while cut off
                    }
                    let target = target.clone();
                    links.lock().unwrap().push(tokio::spawn(async move {
                        if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                            let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    }));
                }
            }
        });
        Cut { port, off, links, accept }
    }

    /// The broker URL through the proxy.
    pub fn url(&self, scheme: &str) -> String {
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// Cuts every connection through the proxy, and refuses new ones.
    pub fn cut(&self) {
        self.off.store(true, std::sync::atomic::Ordering::SeqCst);
        for l in self.links.lock().unwrap().drain(..) {
            l.abort();
        }
    }

    /// Lets connections through again.
    pub fn heal(&self) {
        self.off.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for Cut {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}
