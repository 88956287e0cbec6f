//! `/metrics` on an address of its own (`--metrics-listen`).
//!
//! # Why
//!
//! The exposition names topics' counts, connection numbers and rejection
//! reasons: useful to an attacker sizing a flood, and nobody's business but
//! the operator's. With `--metrics-listen` it moves to a separate listener
//! (typically loopback or a private interface scraped by Prometheus), and the
//! public listener answers `/metrics` with 404.
//!
//! The listener serves `GET /metrics` only (anything else is 404), one HTTP/1
//! connection per task, each bounded by the handshake timeout for its request
//! head. It runs until the server has drained, then its task is aborted.

use std::convert::Infallible;

use bytes::Bytes;
use fanout_core::Engine;
use fanout_ws::{Frame, Gateway};
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

fn answer<E: Engine<Frame>>(gw: &Gateway<E>, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let (status, ctype, body) = match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => {
            (StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", crate::prometheus::render(gw))
        }
        _ => (StatusCode::NOT_FOUND, "text/plain; charset=utf-8", "not found\n".to_string()),
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    r
}

/// Serves `/metrics` on `listener` until the task is aborted.
pub(crate) async fn serve<E: Engine<Frame>>(listener: TcpListener, gw: Gateway<E>) {
    let head_timeout = gw.config().handshake_timeout;
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let gw = gw.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| {
                let r = answer(&gw, &req);
                async move { Ok::<_, Infallible>(r) }
            });
            let mut b = http1::Builder::new();
            b.timer(TokioTimer::new()).header_read_timeout(head_timeout);
            let _ = b.serve_connection(TokioIo::new(tcp), svc).await;
        });
    }
}
