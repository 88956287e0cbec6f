//! # fanout-server
//!
//! The `fanout-server` binary as a library, so that tests (and embedders) can
//! start it in-process on `127.0.0.1:0`.
//!
//! Routes, all on one port:
//!
//! | route | what |
//! | --- | --- |
//! | `GET /ws` | WebSocket upgrade (JSON-RPC 2.0; `docs/protocol.md`) |
//! | `POST /api/publish` | publish for backends (API key) |
//! | `GET /metrics` | Prometheus text |
//! | `GET /healthz` | `200 ok`, `503 draining` during shutdown |
//! | `GET /readyz` | `200 ready`; `503 not ready` from the start of the shutdown (before the grace period) |
//! | `GET /` | the dashboard page (`dashboard_path`; off with `--no-dashboard`) |
//!
//! A `$sys.stats` topic carries the hub's stats every `stats_interval`.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod config;
mod dashboard;
pub mod exposure;
mod http_api;
mod metrics_listener;
mod prometheus;
pub mod query;
pub mod secrets;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use fanout_core::{Engine, Hub, Overflow};
use fanout_ws::{DrainReport, Frame, Gateway};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use config::{Cli, EngineKind, LogFormat, Settings};

/// The `$sys.stats` topic.
pub const SYS_STATS: &str = "$sys.stats";

/// A running server (see [`start`]).
pub struct Server {
    addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<DrainReport>>,
}

impl Server {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address `/metrics` is served on when `metrics_listen` is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// Begins the graceful shutdown (as SIGTERM does) and waits for the drain.
    pub async fn shutdown(mut self) -> std::io::Result<DrainReport> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.task.await.map_err(std::io::Error::other)?
    }
}

/// An error that stops the server from starting.
#[derive(Debug)]
pub struct StartError(pub String);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartError {}

/// Binds `settings.listen` and runs the server in a task until
/// [`Server::shutdown`].
pub async fn start(settings: Settings) -> Result<Server, StartError> {
    check_topic_rules(&settings)?;
    let listener = TcpListener::bind(settings.listen)
        .await
        .map_err(|e| StartError(format!("bind {}: {e}", settings.listen)))?;
    let addr = listener.local_addr().map_err(|e| StartError(e.to_string()))?;
    let metrics = match settings.metrics_listen {
        Some(a) => {
            Some(TcpListener::bind(a).await.map_err(|e| StartError(format!("bind metrics {a}: {e}")))?)
        }
        None => None,
    };
    let metrics_addr = match &metrics {
        Some(l) => Some(l.local_addr().map_err(|e| StartError(e.to_string()))?),
        None => None,
    };
    let (tx, rx) = oneshot::channel::<()>();
    let shutdown = async move {
        let _ = rx.await;
    };
    let task = match (settings.engine, settings.broker.clone()) {
        (EngineKind::Fanout, Some(b)) => {
            let hub = build_hub(&settings)?;
            let url = b.url.clone();
            let node = fanout_cluster::Cluster::connect(hub, b)
                .await
                .map_err(|e| StartError(format!("--broker {url}: {e}")))?;
            tokio::spawn(run_all(node, settings, listener, metrics, shutdown))
        }
        (EngineKind::Mutex, Some(_)) => {
            return Err(StartError(
                "--broker needs the fanout engine (a cluster node is a hub fed by the broker)".into(),
            ))
        }
        (EngineKind::Fanout, None) => {
            let hub = build_hub(&settings)?;
            tokio::spawn(run_all(hub, settings, listener, metrics, shutdown))
        }
        (EngineKind::Mutex, None) => {
            let hub = fanout_baseline::MutexHub::<Frame>::new();
            tokio::spawn(run_all(hub, settings, listener, metrics, shutdown))
        }
    };
    Ok(Server { addr, metrics_addr, stop: Some(tx), task })
}

/// The `[[topics]]` patterns, against the syntax of `fanout_ws::topic`. The
/// file's rules were checked at load; settings built in code are checked
/// here, before anything is bound.
fn check_topic_rules(s: &Settings) -> Result<(), StartError> {
    for (i, r) in s.topic_rules.iter().enumerate() {
        fanout_ws::topic::validate_pattern(&r.pattern)
            .map_err(|e| StartError(format!("topics[{i}] (pattern {:?}): {e}", r.pattern)))?;
    }
    Ok(())
}

fn build_hub(s: &Settings) -> Result<Hub<Frame>, StartError> {
    let (rules, default) = (s.topic_rules.clone(), s.history);
    // Gap repair where a loss can happen without closing the connection: a
    // policy that sheds messages, for all topics or some.
    let repair = s.overflow != Overflow::Evict || rules.iter().any(|r| r.options.overflow.is_some());
    Hub::builder()
        .capacity(s.capacity)
        .overflow(s.overflow)
        .repair(repair)
        .lazy_rings(true)
        .shared_log(default.shared_log)
        .shared_log_from(default.shared_log_from)
        .history(default.history_size, default.history_ttl)
        // First matching `[[topics]]` rule, else the flags' history.
        .topic_options(move |name| {
            rules
                .iter()
                .find(|r| fanout_ws::topic::pattern_matches(&r.pattern, name))
                .map_or(default, |r| r.options)
        })
        .build()
        .map_err(|e| StartError(e.to_string()))
}

/// Runs the server on `engine` until `shutdown` resolves, then drains
/// (binding `settings.metrics_listen`, if set, for `/metrics`).
pub async fn run_with<E: Engine<Frame>>(
    engine: E,
    settings: Settings,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<DrainReport> {
    let metrics = match settings.metrics_listen {
        Some(a) => Some(TcpListener::bind(a).await?),
        None => None,
    };
    run_all(engine, settings, listener, metrics, shutdown).await
}

async fn run_all<E: Engine<Frame>>(
    engine: E,
    settings: Settings,
    listener: TcpListener,
    metrics: Option<TcpListener>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<DrainReport> {
    let gateway = Gateway::new(engine, settings.ws.clone()).map_err(std::io::Error::other)?;
    let addr = listener.local_addr()?;
    for line in exposure::open_settings(&settings) {
        tracing::warn!("{line}");
    }
    let metrics_task = match metrics {
        Some(l) => {
            tracing::info!(addr = %l.local_addr()?, "serving /metrics");
            Some(tokio::spawn(metrics_listener::serve(l, gateway.clone())))
        }
        None => None,
    };
    tracing::info!(%addr, engine = gateway.engine().name(), path = %settings.ws.path, "listening");
    if let Some(w) = config::caps_warning(&settings.ws, config::open_files_limit()) {
        tracing::warn!("{w}");
    }
    if settings.engine == EngineKind::Mutex
        && (settings.capacity != 256 || settings.overflow != Default::default())
    {
        tracing::warn!(
            "--capacity and --overflow apply to the fanout engine only; the mutex hub is fixed at 256/evict"
        );
    }
    let stats_task = (!settings.stats_interval.is_zero()).then(|| {
        let gw = gateway.clone();
        let every = settings.stats_interval;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if gw.is_draining() {
                    break;
                }
                let v = prometheus::stats_json(&gw);
                let _ = gw.publish_value(SYS_STATS, &v);
            }
        })
    });
    let ready = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let api = Arc::new(http_api::Api {
        gateway: gateway.clone(),
        settings: settings.clone(),
        ready: ready.clone(),
        dashboard: settings
            .dashboard()
            .map(|p| dashboard::Dashboard::new(p, &settings.ws, settings.stats_interval)),
    });
    let routes = move |req, peer| {
        let api = api.clone();
        async move { api.route(req, peer).await }
    };
    // The drain in the order a load balancer needs: /readyz answers 503 at
    // once; after the grace period the listener closes and the HTTP requests
    // in flight are answered (serve returns then); then the WebSocket
    // connections drain.
    let grace = settings.drain_grace;
    let shutdown = async move {
        shutdown.await;
        ready.store(false, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(grace = ?grace, "shutting down: not ready");
        tokio::time::sleep(grace).await;
    };
    fanout_ws::serve(listener, gateway.clone(), routes, shutdown).await?;
    tracing::info!(connections = gateway.connections(), timeout = ?settings.drain_timeout, "draining");
    let report = gateway.shutdown(settings.drain_timeout).await;
    if let Some(t) = stats_task {
        t.abort();
    }
    if let Some(t) = metrics_task {
        t.abort();
    }
    gateway.engine().shutdown();
    tracing::info!(graceful = report.graceful, elapsed = ?report.elapsed, "stopped");
    Ok(report)
}

/// Entry point for the HTTP publish fuzz target in `fuzz/` (hidden: not a
/// stable API).
#[doc(hidden)]
pub mod fuzzing {
    use std::sync::OnceLock;

    use fanout_core::Hub;
    use fanout_ws::{Frame, Gateway};

    use crate::http_api::Api;
    use crate::Settings;

    fn api() -> &'static Api<Hub<Frame>> {
        static API: OnceLock<Api<Hub<Frame>>> = OnceLock::new();
        API.get_or_init(|| {
            let settings = Settings { api_key: Some("fuzz".into()), ..Settings::default() };
            let gateway = Gateway::new(Hub::new(), settings.ws.clone()).expect("default settings are valid");
            Api { gateway, settings, ready: Default::default(), dashboard: None }
        })
    }

    /// Runs the body of an authorised `POST /api/publish` (`binary`: the
    /// `application/octet-stream` variant, with `query_topic` from `?topic=`).
    /// Returns the status and body; panics if the answer is not the documented
    /// shape (a status from the protocol's table, a JSON body).
    pub fn publish_body(binary: bool, query_topic: Option<String>, body: &[u8]) -> (u16, String) {
        use http_body_util::BodyExt;
        let resp = futures_now(api().publish_body(binary, query_topic, body));
        let status = resp.status().as_u16();
        assert!(matches!(status, 200 | 400 | 403 | 404 | 503), "undocumented status {status}");
        let bytes = futures_now(resp.into_body().collect()).expect("a full body").to_bytes();
        let text = String::from_utf8(bytes.to_vec()).expect("UTF-8 answer");
        let v: serde_json::Value = serde_json::from_str(&text).expect("JSON answer");
        if status != 200 {
            assert!(v.get("error").and_then(|e| e.as_str()).is_some(), "error without message: {text}");
        }
        (status, text)
    }

    /// Polls a future that is ready at once (a `Full` body).
    fn futures_now<F: std::future::Future>(f: F) -> F::Output {
        let mut f = std::pin::pin!(f);
        struct Noop;
        impl std::task::Wake for Noop {
            fn wake(self: std::sync::Arc<Self>) {}
        }
        let waker = std::task::Waker::from(std::sync::Arc::new(Noop));
        let mut cx = std::task::Context::from_waker(&waker);
        match f.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(v) => v,
            std::task::Poll::Pending => panic!("a Full body, and a publish to the hub, are ready at once"),
        }
    }
}
