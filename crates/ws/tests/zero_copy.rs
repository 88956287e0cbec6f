//! The write path copies no payload per recipient: a counting allocator
//! watches every allocation of the process while one 64 KiB broadcast reaches
//! 1,000 connections.
//!
//! The clients are raw TCP sockets that do the upgrade by hand and read the
//! frame into a small fixed buffer, so that the only allocations a payload
//! could cause are the server's. Before the vectored frame writer
//! (`crates/ws/src/writer.rs`) each connection copied the payload into
//! tungstenite's write buffer, which grew to the payload's size: ~1,000
//! allocations of ≥ 64 KiB here. Now the payload is written from the shared
//! `Bytes` behind a per-connection frame header: none. A second test counts
//! every allocation of steady broadcasts: none per delivery.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use fanout_core::Hub;
use fanout_ws::{Frame, WsConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod common;

/// Payload size of the broadcast; an allocation this large is a copy of it.
const PAYLOAD: usize = 64 * 1024;

/// Allocations (and reallocations to) at least `PAYLOAD` bytes.
static BIG: AtomicUsize = AtomicUsize::new(0);

/// Allocations and reallocations of any size.
static ALL: AtomicUsize = AtomicUsize::new(0);

/// The system allocator, counting large allocations.
struct Counting;

// SAFETY: every call is forwarded unchanged to `System`, which upholds the
// `GlobalAlloc` contract; the counter has no effect on the memory handed out.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALL.fetch_add(1, Ordering::Relaxed);
        if layout.size() >= PAYLOAD {
            BIG.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: the caller's contract for `alloc` is passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with `layout` (see `alloc`).
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALL.fetch_add(1, Ordering::Relaxed);
        if layout.size() >= PAYLOAD {
            BIG.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: the caller's contract for `alloc_zeroed` is passed on as is.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALL.fetch_add(1, Ordering::Relaxed);
        if new_size >= PAYLOAD && layout.size() < PAYLOAD {
            BIG.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: `ptr` came from `System` with `layout`; the caller's
        // contract for `realloc` is passed on as is.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// The counters are the whole process's: the tests take turns.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Opens a WebSocket by hand: nothing of tungstenite on the client side.
async fn raw_client(addr: std::net::SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut b).await.unwrap(), 1, "the server closed during the upgrade");
        head.push(b[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
    s
}

/// Reads one unmasked binary frame of `PAYLOAD` bytes, checking its header and
/// every byte, through a small buffer.
async fn read_push(mut s: TcpStream) {
    read_one(&mut s).await;
}

async fn read_one(s: &mut TcpStream) {
    let mut head = [0u8; 10];
    s.read_exact(&mut head).await.unwrap();
    assert_eq!(head[0], 0x82, "FIN + binary");
    assert_eq!(head[1], 127, "unmasked, 64-bit length");
    assert_eq!(u64::from_be_bytes(head[2..10].try_into().unwrap()), PAYLOAD as u64);
    let mut left = PAYLOAD;
    let mut buf = [0u8; 4096];
    while left > 0 {
        let n = s.read(&mut buf[..left.min(4096)]).await.unwrap();
        assert!(n > 0, "the stream ended inside the frame");
        assert!(buf[..n].iter().all(|&b| b == 0x5a));
        left -= n;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_copies_no_payload_per_connection() {
    let _serial = SERIAL.lock().await;
    const CLIENTS: usize = 1_000;
    let cfg = WsConfig { max_connections_per_ip: 0, ..WsConfig::default() };
    let srv = common::start(Hub::<Frame>::new(), cfg).await;
    let mut clients = Vec::with_capacity(CLIENTS);
    for _ in 0..CLIENTS {
        clients.push(raw_client(srv.addr).await);
    }
    // Each subscriber exists before its 101 is sent: all 1,000 are reached.
    let payload = Frame::Binary(Bytes::from(vec![0x5a; PAYLOAD]));
    let readers: Vec<_> = clients.into_iter().map(|c| tokio::spawn(read_push(c))).collect();
    BIG.store(0, Ordering::SeqCst);
    let r = srv.gw.engine().broadcast(payload).unwrap();
    assert_eq!(r.delivered, CLIENTS as u64);
    for r in readers {
        r.await.unwrap();
    }
    let big = BIG.load(Ordering::SeqCst);
    assert!(
        big < 10,
        "{big} allocations of at least {PAYLOAD} bytes for one broadcast to {CLIENTS} connections"
    );
}

/// Once a connection has carried a message, later broadcasts allocate
/// nothing per delivery on the whole path: publish, ring, writer, socket.
/// The readers were spawned before the count starts, read into fixed buffers
/// and keep their sockets until it is read (a connection's end allocates), so
/// what is counted is the server's delivery path (and the engine's one
/// envelope per publish). Each broadcast waits for the previous one to reach
/// every reader, so every delivery is a batch of one, as the warm-up was: the
/// queues' first growth is not what is measured.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steady_broadcasts_allocate_nothing_per_delivery() {
    let _serial = SERIAL.lock().await;
    const CLIENTS: usize = 1_000;
    const ROUNDS: usize = 5;
    let cfg = WsConfig { max_connections_per_ip: 0, ..WsConfig::default() };
    let srv = common::start(Hub::<Frame>::new(), cfg).await;
    let mut clients = Vec::with_capacity(CLIENTS);
    for _ in 0..CLIENTS {
        clients.push(raw_client(srv.addr).await);
    }
    let got = std::sync::Arc::new(AtomicUsize::new(0));
    let readers: Vec<_> = clients
        .into_iter()
        .map(|mut c| {
            let got = got.clone();
            tokio::spawn(async move {
                for _ in 0..=ROUNDS {
                    read_one(&mut c).await;
                    got.fetch_add(1, Ordering::SeqCst);
                }
                c
            })
        })
        .collect();
    let payload = Frame::Binary(Bytes::from(vec![0x5a; PAYLOAD]));
    let payloads: Vec<Frame> = (0..=ROUNDS).map(|_| payload.clone()).collect();
    let mut done = Vec::with_capacity(CLIENTS);
    for (round, p) in payloads.into_iter().enumerate() {
        if round == 1 {
            // The first broadcast made each connection's ring and queue.
            ALL.store(0, Ordering::SeqCst);
        }
        assert_eq!(srv.gw.engine().broadcast(p).unwrap().delivered, CLIENTS as u64);
        while got.load(Ordering::SeqCst) < CLIENTS * (round + 1) {
            tokio::task::yield_now().await;
        }
    }
    let all = ALL.load(Ordering::SeqCst);
    for r in readers {
        done.push(r.await.unwrap());
    }
    assert!(
        all < CLIENTS / 10,
        "{all} allocations for {ROUNDS} broadcasts to {CLIENTS} connections ({} deliveries)",
        ROUNDS * CLIENTS
    );
}
