//! The push path's frame writer: a per-connection header plus the shared,
//! once-encoded payload, written with vectored writes.
//!
//! # What it replaces
//!
//! tungstenite writes a message by formatting header and payload into its own
//! per-connection write buffer: one copy of every push per recipient, in a
//! buffer whose capacity never shrinks (a 512 KiB publish to 2,000 clients
//! that do not read held 2,000 copies, ~1 GiB). Here a queued frame is a
//! 2–10 byte header (server frames are not masked, RFC 6455 section 5.1) and
//! a handle on the payload: the engine's [`Message`] for a push (moved out of
//! the ring, so not even a reference-count increment), or a [`Bytes`] for a
//! reply, a lag notice or a ping. A write gathers the queue's slices into one
//! `writev`, at most [`MAX_IOV`] slices (well under Linux's `IOV_MAX`, 1,024),
//! [`MAX_WRITE`] bytes and the caller's frame limit, and resumes a partly
//! written frame at the byte where the socket stopped.
//!
//! # Sharing the socket with tungstenite
//!
//! tungstenite still does the handshake, reads, answers pings (its automatic
//! pongs) and the close handshake, and it writes those frames itself, from its
//! own buffer. Two writers on one byte stream stay correct under two rules,
//! which the connection (`conn.rs`) keeps:
//!
//! - before this writer writes, tungstenite's buffer is flushed to the socket
//!   (the connection's `poll_write_step` flushes it, then calls
//!   [`Writer::poll_write`]), so a pong it had half written is finished
//!   before our next frame starts;
//! - tungstenite gets the socket (a read, which may write a pong; a close)
//!   only while this writer is not in the middle of a frame
//!   ([`Writer::mid_frame`]).
//!
//! # Accounting
//!
//! [`Writer::queued`] is the bytes not yet written, headers included: the
//! connection's share of the slow-consumer budget (`max_queued_bytes`). The
//! queue is allocated at the first frame (a connection that never receives
//! holds none); once empty it keeps at most [`KEEP_SLOTS`] entries, so a busy
//! connection does not allocate per batch and a burst's storage is returned.
//!
//! # Order
//!
//! Frames leave in the order they were queued, except a ping
//! ([`Writer::push_control`]), which goes ahead of the frames not yet started
//! so that a backlog does not delay the heartbeat (RFC 6455 section 5.4 lets
//! control frames go between the frames of a stream).

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use fanout_core::Message;
use tokio::io::AsyncWrite;

use crate::frame::Frame;

/// Most slices handed to one `writev` (Linux's `IOV_MAX` is 1,024).
pub(crate) const MAX_IOV: usize = 128;

/// Most bytes one `writev` is offered (a socket takes at most its free send
/// buffer anyway; this bounds the work of building the slice list).
pub(crate) const MAX_WRITE: usize = 256 * 1024;

/// Queue slots kept after the queue empties (a batch at the default
/// `max_batch`: 3 KiB); a larger queue, after a burst, gives its storage back.
/// Keeping a batch's worth means a busy connection does not allocate per batch.
const KEEP_SLOTS: usize = 64;

/// WebSocket opcodes of the frames this writer sends.
pub(crate) mod opcode {
    /// Text frame.
    pub const TEXT: u8 = 0x1;
    /// Binary frame.
    pub const BINARY: u8 = 0x2;
    /// Ping.
    pub const PING: u8 = 0x9;
}

/// A frame header: FIN, the opcode, no mask, and the payload length in the
/// shortest form RFC 6455 allows (7 bits, 16 bits or 64 bits).
#[derive(Clone, Copy)]
struct Header {
    bytes: [u8; 10],
    len: u8,
}

impl Header {
    fn new(opcode: u8, payload: usize) -> Header {
        let mut bytes = [0u8; 10];
        bytes[0] = 0x80 | opcode;
        let len = if payload < 126 {
            bytes[1] = payload as u8;
            2
        } else if payload <= usize::from(u16::MAX) {
            bytes[1] = 126;
            bytes[2..4].copy_from_slice(&(payload as u16).to_be_bytes());
            4
        } else {
            bytes[1] = 127;
            bytes[2..10].copy_from_slice(&(payload as u64).to_be_bytes());
            10
        };
        Header { bytes, len }
    }

    fn as_slice(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

/// The payload of a queued frame, shared, never copied.
enum Body {
    /// A push: the engine's message, whose payload is the encoded frame.
    Push(Message<Frame>),
    /// A reply, a lag notice or a ping.
    Own(Bytes),
}

impl Body {
    fn as_slice(&self) -> &[u8] {
        match self {
            Body::Push(m) => match m.payload() {
                Frame::Text(t) => t.as_bytes(),
                Frame::Binary(b) => &b[..],
            },
            Body::Own(b) => &b[..],
        }
    }
}

struct Queued {
    head: Header,
    body: Body,
}

impl Queued {
    fn len(&self) -> usize {
        usize::from(self.head.len) + self.body.as_slice().len()
    }
}

/// Frames waiting for the socket, in order. See the module docs.
#[derive(Default)]
pub(crate) struct Writer {
    queue: VecDeque<Queued>,
    /// Bytes of the front frame already written (0 when none is).
    written: usize,
    /// Bytes of every queued frame, headers included, minus `written`.
    queued: usize,
}

impl Writer {
    /// Queues a push (the engine's message, moved: no copy, no atomic).
    pub(crate) fn push(&mut self, m: Message<Frame>) {
        let (op, len) = match m.payload() {
            Frame::Text(t) => (opcode::TEXT, t.len()),
            Frame::Binary(b) => (opcode::BINARY, b.len()),
        };
        self.enqueue(Queued { head: Header::new(op, len), body: Body::Push(m) });
    }

    /// Queues a frame with its own payload (a reply, a lag notice, a ping).
    pub(crate) fn push_bytes(&mut self, op: u8, payload: Bytes) {
        self.enqueue(Queued { head: Header::new(op, payload.len()), body: Body::Own(payload) });
    }

    /// Queues a control frame (a ping) ahead of the data frames not yet
    /// started (RFC 6455 section 5.4 lets control frames go between data
    /// frames), so that a backlog does not delay the heartbeat.
    pub(crate) fn push_control(&mut self, op: u8, payload: Bytes) {
        let q = Queued { head: Header::new(op, payload.len()), body: Body::Own(payload) };
        self.queued += q.len();
        self.queue.insert(usize::from(self.mid_frame()), q);
    }

    fn enqueue(&mut self, q: Queued) {
        self.queued += q.len();
        self.queue.push_back(q);
    }

    /// Nothing left to write.
    pub(crate) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Bytes not yet written, headers included.
    pub(crate) fn queued(&self) -> usize {
        self.queued
    }

    /// Frames not yet completely written.
    pub(crate) fn frames(&self) -> usize {
        self.queue.len()
    }

    /// A frame is partly written: nothing else may write to the socket until
    /// it is finished.
    pub(crate) fn mid_frame(&self) -> bool {
        self.written > 0
    }

    /// Drops every frame not yet started (a connection being evicted does not
    /// owe them); a partly written frame stays, so that the stream can still
    /// be finished with a close frame.
    pub(crate) fn discard_unstarted(&mut self) {
        let keep = usize::from(self.mid_frame());
        while self.queue.len() > keep {
            let q = self.queue.pop_back().expect("longer than keep");
            self.queued -= q.len();
        }
        self.release_if_empty();
    }

    /// Writes frames until the queue is empty (`Ready(Ok(true))`) or the socket
    /// pushes back after accepting some bytes (`Ready(Ok(false))`: progress,
    /// for the caller's stall timer); `Pending` only when it accepted nothing.
    /// At most `max_frames` frames are offered per `writev`; `on_write` is
    /// told the frames completed and the bytes of each. The caller flushes
    /// tungstenite's buffer first (see the module docs).
    pub(crate) fn poll_write<S>(
        &mut self,
        cx: &mut Context<'_>,
        io: &mut S,
        max_frames: usize,
        mut on_write: impl FnMut(usize, usize),
    ) -> Poll<io::Result<bool>>
    where
        S: AsyncWrite + Unpin,
    {
        let mut progressed = false;
        while !self.queue.is_empty() {
            let r = {
                let mut iov = [IoSlice::new(&[]); MAX_IOV];
                let n = self.gather(&mut iov, max_frames.max(1));
                Pin::new(&mut *io).poll_write_vectored(cx, &iov[..n])
            };
            match r {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => {
                    progressed = true;
                    let done = self.advance(n);
                    on_write(done, n);
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending if progressed => return Poll::Ready(Ok(false)),
                Poll::Pending => return Poll::Pending,
            }
        }
        self.release_if_empty();
        ready!(Pin::new(io).poll_flush(cx))?;
        Poll::Ready(Ok(true))
    }

    /// Fills `iov` from the front of the queue; returns the slices used.
    fn gather<'a>(&'a self, iov: &mut [IoSlice<'a>; MAX_IOV], max_frames: usize) -> usize {
        let (mut n, mut bytes, mut skip) = (0, 0, self.written);
        for q in self.queue.iter().take(max_frames) {
            for part in [q.head.as_slice(), q.body.as_slice()] {
                if skip >= part.len() {
                    skip -= part.len();
                    continue;
                }
                let s = &part[skip..];
                skip = 0;
                iov[n] = IoSlice::new(s);
                n += 1;
                bytes += s.len();
                if n == MAX_IOV || bytes >= MAX_WRITE {
                    return n;
                }
            }
        }
        n
    }

    /// Consumes `n` written bytes; returns how many frames were completed.
    fn advance(&mut self, n: usize) -> usize {
        self.queued -= n;
        let mut left = self.written + n;
        let mut done = 0;
        while let Some(front) = self.queue.front() {
            let len = front.len();
            if left < len {
                break;
            }
            left -= len;
            self.queue.pop_front();
            done += 1;
        }
        self.written = left;
        done
    }

    fn release_if_empty(&mut self) {
        if self.queue.is_empty() && self.queue.capacity() > KEEP_SLOTS {
            self.queue = VecDeque::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::task::noop_waker_ref;

    fn header(op: u8, len: usize) -> Vec<u8> {
        Header::new(op, len).as_slice().to_vec()
    }

    /// RFC 6455 section 5.2: the three length forms, at their edges.
    #[test]
    fn headers_use_the_shortest_length_form() {
        assert_eq!(header(opcode::TEXT, 0), [0x81, 0]);
        assert_eq!(header(opcode::TEXT, 125), [0x81, 125]);
        assert_eq!(header(opcode::BINARY, 126), [0x82, 126, 0, 126]);
        assert_eq!(header(opcode::BINARY, 65_535), [0x82, 126, 0xff, 0xff]);
        assert_eq!(header(opcode::BINARY, 65_536), [0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
        assert_eq!(header(opcode::PING, 0), [0x89, 0]);
    }

    /// A socket that takes at most `take` bytes per call and `room` bytes in
    /// all (then it pushes back), records them, and counts the slices it is
    /// offered.
    struct Trickle {
        out: Vec<u8>,
        take: usize,
        room: usize,
        calls: usize,
        most_slices: usize,
    }

    impl Trickle {
        fn new(take: usize, room: usize) -> Self {
            Trickle { out: Vec::new(), take, room, calls: 0, most_slices: 0 }
        }
    }

    impl AsyncWrite for Trickle {
        fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
            self.poll_write_vectored(cx, &[IoSlice::new(b)])
        }
        fn poll_write_vectored(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let this = self.get_mut();
            if this.room == 0 {
                return Poll::Pending;
            }
            this.calls += 1;
            this.most_slices = this.most_slices.max(bufs.len());
            let can = this.take.min(this.room);
            let mut left = can;
            for b in bufs {
                let n = b.len().min(left);
                this.out.extend_from_slice(&b[..n]);
                left -= n;
                if left == 0 {
                    break;
                }
            }
            this.room -= can - left;
            Poll::Ready(Ok(can - left))
        }
        fn is_write_vectored(&self) -> bool {
            true
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// Parses unmasked frames back: (opcode, payload).
    fn parse(mut b: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let mut frames = Vec::new();
        while !b.is_empty() {
            assert_eq!(b[0] & 0xf0, 0x80, "FIN set, no RSV bits");
            assert_eq!(b[1] & 0x80, 0, "server frames are not masked");
            let (len, at) = match b[1] & 0x7f {
                126 => (usize::from(u16::from_be_bytes([b[2], b[3]])), 4),
                127 => (u64::from_be_bytes(b[2..10].try_into().unwrap()) as usize, 10),
                l => (usize::from(l), 2),
            };
            frames.push((b[0] & 0x0f, b[at..at + len].to_vec()));
            b = &b[at + len..];
        }
        frames
    }

    /// Frames written through a socket that takes 7 bytes at a time come out
    /// whole and in order: partial writes resume at the right byte, inside a
    /// header as well as inside a payload.
    #[test]
    fn partial_writes_resume_where_the_socket_stopped() {
        let mut w = Writer::default();
        let sizes = [0usize, 5, 125, 126, 300, 70_000];
        for (i, &n) in sizes.iter().enumerate() {
            w.push_bytes(opcode::BINARY, Bytes::from(vec![i as u8; n]));
        }
        let total: usize = sizes.iter().map(|&n| n + usize::from(Header::new(2, n).len)).sum();
        assert_eq!(w.queued(), total);
        let mut io = Trickle::new(7, usize::MAX);
        let mut cx = Context::from_waker(noop_waker_ref());
        let mut completed = 0;
        let r = w.poll_write(&mut cx, &mut io, usize::MAX, |done, _| completed += done);
        assert!(matches!(r, Poll::Ready(Ok(true))));
        assert!(w.is_empty() && w.queued() == 0 && !w.mid_frame());
        assert_eq!(completed, sizes.len());
        let got = parse(&io.out);
        assert_eq!(got.len(), sizes.len());
        for (i, (op, p)) in got.iter().enumerate() {
            assert_eq!(*op, opcode::BINARY);
            assert_eq!(p, &vec![i as u8; sizes[i]]);
        }
    }

    /// One `writev` carries many frames, bounded by the frame limit and by
    /// `MAX_IOV` slices.
    #[test]
    fn many_frames_per_writev_within_the_bounds() {
        let mut w = Writer::default();
        for _ in 0..1_000 {
            w.push_bytes(opcode::TEXT, Bytes::from_static(b"{\"x\":1}"));
        }
        let mut io = Trickle::new(usize::MAX, usize::MAX);
        let mut cx = Context::from_waker(noop_waker_ref());
        let mut per_write = Vec::new();
        let r = w.poll_write(&mut cx, &mut io, 100, |done, _| per_write.push(done));
        assert!(matches!(r, Poll::Ready(Ok(true))));
        // Two slices a frame: 64 frames fill MAX_IOV's 128 slices before the
        // frame limit of 100 is reached, so 1,000 frames take 16 writes.
        assert_eq!(io.most_slices, MAX_IOV);
        assert_eq!(io.calls, 1_000usize.div_ceil(MAX_IOV / 2));
        assert!(per_write.iter().all(|&d| d <= 100));
        assert_eq!(parse(&io.out).len(), 1_000);
    }

    /// A ping goes ahead of the frames not yet started, never inside the one
    /// in progress.
    #[test]
    fn a_control_frame_jumps_the_queue_between_frames() {
        let mut w = Writer::default();
        for i in 1..=3u8 {
            w.push_bytes(opcode::BINARY, Bytes::from(vec![i; 100]));
        }
        let mut io = Trickle::new(usize::MAX, 50);
        let mut cx = Context::from_waker(noop_waker_ref());
        let _ = w.poll_write(&mut cx, &mut io, usize::MAX, |_, _| {});
        assert!(w.mid_frame());
        w.push_control(opcode::PING, Bytes::new());
        io.room = usize::MAX;
        let r = w.poll_write(&mut cx, &mut io, usize::MAX, |_, _| {});
        assert!(matches!(r, Poll::Ready(Ok(true))));
        let ops: Vec<(u8, u8)> =
            parse(&io.out).iter().map(|(op, p)| (*op, p.first().copied().unwrap_or(0))).collect();
        assert_eq!(ops, [(opcode::BINARY, 1), (opcode::PING, 0), (opcode::BINARY, 2), (opcode::BINARY, 3)]);
    }

    /// Discarding on eviction keeps the frame in progress, so the stream stays
    /// well formed.
    #[test]
    fn discard_keeps_the_partly_written_frame() {
        let mut w = Writer::default();
        for _ in 0..3 {
            w.push_bytes(opcode::BINARY, Bytes::from(vec![1; 100]));
        }
        // The socket takes 50 bytes, then pushes back.
        let mut io = Trickle::new(usize::MAX, 50);
        let mut cx = Context::from_waker(noop_waker_ref());
        let r = w.poll_write(&mut cx, &mut io, usize::MAX, |_, _| {});
        assert!(matches!(r, Poll::Ready(Ok(false))), "progress, not done");
        assert!(w.mid_frame());
        w.discard_unstarted();
        assert_eq!(w.frames(), 1);
        assert_eq!(w.queued(), 102 - 50);
    }
}
