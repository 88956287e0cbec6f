//! Subscribes to topics on a running `fanout-server` and prints every push.
//!
//! ```text
//! cargo run -p fanout-server --release -- --api-key secret      # terminal 1
//! cargo run -p fanout-server --example subscribe -- news '$sys.stats'   # terminal 2
//! curl -s -H 'Authorization: Bearer secret' \
//!      -d '{"topic":"news","payload":{"title":"hello"}}' \
//!      http://127.0.0.1:8080/api/publish                     # terminal 3
//! ```
//!
//! Set `FANOUT_URL` to connect elsewhere (default `ws://127.0.0.1:8080/ws`), and
//! `FANOUT_TOKEN` to send a bearer token.

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("FANOUT_URL").unwrap_or_else(|_| "ws://127.0.0.1:8080/ws".into());
    let mut topics: Vec<String> = std::env::args().skip(1).collect();
    if topics.is_empty() {
        topics.push("news".into());
    }
    let mut req = url.as_str().into_client_request()?;
    if let Ok(token) = std::env::var("FANOUT_TOKEN") {
        req.headers_mut().insert("authorization", format!("Bearer {token}").parse()?);
    }
    let (mut ws, resp) = tokio_tungstenite::connect_async(req).await?;
    let id = resp.headers().get("x-fanout-client-id").and_then(|v| v.to_str().ok()).unwrap_or("?");
    eprintln!("connected to {url} as client {id}");
    for (i, t) in topics.iter().enumerate() {
        let req =
            serde_json::json!({"jsonrpc": "2.0", "id": i + 1, "method": "subscribe", "params": {"topic": t}});
        ws.send(Message::Text(req.to_string().into())).await?;
    }
    while let Some(msg) = ws.next().await {
        match msg? {
            Message::Text(t) => println!("{t}"),
            Message::Binary(b) => match fanout_ws::frame::decode_binary(&b) {
                Some(p) => println!("binary topic={} seq={} {} bytes", p.topic, p.seq, p.payload.len()),
                None => println!("binary frame, {} bytes", b.len()),
            },
            Message::Close(f) => {
                eprintln!("closed: {f:?}");
                break;
            }
            _ => {}
        }
    }
    Ok(())
}
