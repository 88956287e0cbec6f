//! The dashboard: a page that shows the server live, embedded in the binary.
//!
//! # What it is
//!
//! A static page (`assets/dashboard/`: HTML, one script, one style sheet)
//! and the JavaScript client's compiled ESM build (`assets/client/`, made
//! from `clients/js` by `npm run embed` there), all compiled into the binary
//! with `include_bytes!`, so that `cargo run` shows it on a fresh clone with
//! no Node installed. The page opens a WebSocket with the client library,
//! subscribes to `$sys.stats` and draws what each push says; the server
//! sends it nothing else but a small `config.json` (where `/ws` is, whether
//! tokens are needed).
//!
//! # Who may see what
//!
//! The page itself holds no data and is public, like `/healthz`. Its numbers
//! come from `$sys.stats` over `/ws`, so they follow that topic's
//! permissions: with `--jwt-secret`, the page asks for a token whose
//! `subscribe` claim grants `$sys.stats` (kept in the tab's session storage,
//! sent as `?token=`), and without one it shows the server's refusal.
//!
//! # Where
//!
//! At `dashboard_path` (default `/`; `--no-dashboard` turns it off). Its
//! files are below the same path (`/dashboard.js`, `/client/index.js`), and
//! the page names them relatively, so it works under any path. A path other
//! than `/` is answered at `<path>/`; `<path>` redirects there.

use bytes::Bytes;
use fanout_ws::{Body, WsConfig};
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::Full;

/// One embedded file: its name below the dashboard's path, type, bytes.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $ty:expr, $file:literal) => {
        Asset { name: $name, content_type: $ty, bytes: include_bytes!($file) }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// The page, its script and style, and the client library's modules.
static ASSETS: &[Asset] = &[
    asset!("", "text/html; charset=utf-8", "../assets/dashboard/index.html"),
    asset!("dashboard.js", JS, "../assets/dashboard/dashboard.js"),
    asset!("charts.js", JS, "../assets/dashboard/charts.js"),
    asset!("dashboard.css", "text/css; charset=utf-8", "../assets/dashboard/dashboard.css"),
    asset!("client/index.js", JS, "../assets/client/index.js"),
    asset!("client/client.js", JS, "../assets/client/client.js"),
    asset!("client/subscription.js", JS, "../assets/client/subscription.js"),
    asset!("client/emitter.js", JS, "../assets/client/emitter.js"),
    asset!("client/queue.js", JS, "../assets/client/queue.js"),
    asset!("client/push.js", JS, "../assets/client/push.js"),
    asset!("client/errors.js", JS, "../assets/client/errors.js"),
    asset!("client/close.js", JS, "../assets/client/close.js"),
    asset!("client/backoff.js", JS, "../assets/client/backoff.js"),
    asset!("client/token.js", JS, "../assets/client/token.js"),
];

/// The page's own rules: its files and the WebSocket of its own origin only.
const CSP: &str = "default-src 'self'; connect-src 'self'; img-src 'self' data:; \
                   frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// Why a `dashboard_path` is refused.
pub(crate) fn check_path(path: &str, ws: &WsConfig) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("{path:?} must start with `/`"));
    }
    if path.contains(['?', '#', ' ']) {
        return Err(format!("{path:?} must be a plain path (no `?`, `#` or space)"));
    }
    let base = path.trim_end_matches('/');
    if !base.is_empty() && (base == ws.path || ws.echo_path.as_deref() == Some(base)) {
        return Err(format!("{path:?} is the WebSocket path"));
    }
    Ok(())
}

/// The dashboard's routes (see the module docs).
pub(crate) struct Dashboard {
    /// The path without its trailing `/`: `""` for the root.
    base: String,
    /// `config.json`, built once.
    config: Bytes,
}

impl Dashboard {
    /// The dashboard at `path`, for a server with `ws` and `$sys.stats` every
    /// `stats_interval`.
    pub(crate) fn new(path: &str, ws: &WsConfig, stats_interval: std::time::Duration) -> Self {
        let config = serde_json::json!({
            "ws_path": ws.path,
            "stats_topic": crate::SYS_STATS,
            "stats_interval_ms": stats_interval.as_millis() as u64,
            "tokens": ws.jwt_secret.is_some() || !ws.jwt_keys.is_empty(),
        });
        Dashboard {
            base: path.trim_end_matches('/').to_string(),
            config: Bytes::from(serde_json::to_vec(&config).expect("serialises")),
        }
    }

    /// The answer to a `GET` of `path`, if it is the dashboard's.
    pub(crate) fn answer(&self, path: &str) -> Option<Response<Body>> {
        if !self.base.is_empty() && path == self.base {
            let mut r = Response::new(Full::new(Bytes::new()));
            *r.status_mut() = StatusCode::PERMANENT_REDIRECT;
            let to = HeaderValue::from_str(&format!("{}/", self.base)).ok()?;
            r.headers_mut().insert(header::LOCATION, to);
            return Some(r);
        }
        let name = path.strip_prefix(self.base.as_str())?.strip_prefix('/')?;
        if name == "config.json" {
            return Some(file("application/json", self.config.clone()));
        }
        let asset = ASSETS.iter().find(|a| a.name == name)?;
        let mut r = file(asset.content_type, Bytes::from_static(asset.bytes));
        if name.is_empty() {
            r.headers_mut().insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
        }
        Some(r)
    }
}

fn file(content_type: &'static str, body: Bytes) -> Response<Body> {
    let mut r = Response::new(Full::new(body));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // The files change with the binary: always ask.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dash(path: &str) -> Dashboard {
        Dashboard::new(path, &WsConfig::default(), std::time::Duration::from_secs(1))
    }

    #[test]
    fn at_the_root() {
        let d = dash("/");
        let page = d.answer("/").unwrap();
        assert_eq!(page.status(), StatusCode::OK);
        assert!(page.headers()[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/html"));
        assert!(page.headers().contains_key(header::CONTENT_SECURITY_POLICY));
        assert_eq!(d.answer("/client/index.js").unwrap().headers()[header::CONTENT_TYPE], JS);
        assert!(d.answer("/nope.js").is_none());
        assert!(d.answer("/metrics").is_none());
    }

    #[test]
    fn under_a_path() {
        let d = dash("/ops/");
        let r = d.answer("/ops").unwrap();
        assert_eq!(r.status(), StatusCode::PERMANENT_REDIRECT);
        assert_eq!(r.headers()[header::LOCATION], "/ops/");
        assert_eq!(d.answer("/ops/").unwrap().status(), StatusCode::OK);
        assert!(d.answer("/ops/dashboard.css").is_some());
        assert!(d.answer("/").is_none());
        assert!(d.answer("/opsx/").is_none());
    }

    #[tokio::test]
    async fn config_says_where_the_socket_is() {
        use http_body_util::BodyExt;
        let r = dash("/").answer("/config.json").unwrap();
        let body = r.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["ws_path"], "/ws");
        assert_eq!(v["stats_topic"], "$sys.stats");
        assert_eq!(v["tokens"], false);
    }

    /// Every module of the client build in `assets/client` is served (the
    /// page imports them by name; a new module of `clients/js` must be
    /// listed in `ASSETS`).
    #[test]
    fn every_client_module_is_embedded() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/client");
        let mut n = 0;
        for e in std::fs::read_dir(dir).unwrap() {
            let name = e.unwrap().file_name().into_string().unwrap();
            if name.ends_with(".js") {
                n += 1;
                let key = format!("client/{name}");
                assert!(ASSETS.iter().any(|a| a.name == key), "{key} is not in ASSETS");
            }
        }
        assert_eq!(n, ASSETS.iter().filter(|a| a.name.starts_with("client/")).count());
    }

    #[test]
    fn paths_that_are_refused() {
        let ws = WsConfig::default();
        assert!(check_path("/", &ws).is_ok());
        assert!(check_path("/ops", &ws).is_ok());
        assert!(check_path("ops", &ws).is_err());
        assert!(check_path("/ws", &ws).is_err());
        assert!(check_path("/a?b", &ws).is_err());
    }
}
