//! A topic's shared log: each delivered message written once, and read by
//! every subscriber through a cursor of its own.
//!
//! # Why
//!
//! Today's walk pushes a handle to each message into every member's ring:
//! three cache lines and a locked CAS per member for a lone publisher's
//! single message. Here the writer (the topic's walker) writes a message
//! once, into one slot, and each reader takes it from there. A probe of
//! this design's fast path delivered 1.5–1.7x what the rings do with four
//! publishers on one topic and 3.1–3.5x for one publisher's single messages
//! (docs/benchmarks.md, "One log read by every subscriber"). This file is
//! that design's log, with what the probe left out: readers that join and
//! leave while it is written, a writer that never waits for a slow reader,
//! and reclaim without a lock.
//!
//! # Positions, slots and stamps
//!
//! Position `p` is written to slot `p % cap`, with the slot's stamp set to
//! `p + 1` after its pointer (`Release`); a reader that loads the stamp it
//! expects (`Acquire`) sees the pointer written with it. `head` is the next
//! position to write. The writer is one thread at a time: its exclusion is
//! the caller's (the topic's walk), which is why [`TopicLog::append`] is
//! `unsafe`.
//!
//! # References, prepaid
//!
//! A message is appended with one reference per admitted reader: the
//! walker's handle is one of them, the rest are prepaid (`shared.rs`: one
//! atomic for all of them). A reader draws its reference from the slot's
//! pointer with no atomic. Every reader counted in a message either draws
//! it, or has it given back by the writer: when it skips the reader past
//! it (lag) or when the reader left before reaching it (settle). The log
//! holds no reference of its own: a message is freed when its last reader
//! takes and drops it, as from the rings, not when its slot is reused (a
//! log would otherwise keep its last two rooms of messages alive, however
//! large). So a slot's pointer is only ever followed by someone counted in
//! its message: a reader after its claim, or the writer giving back for
//! one; a message appended with no reader is dropped at once and leaves
//! its slot's pointer null.
//!
//! # Claiming: the cursor is the lock
//!
//! A reader's `pos` (the next position it takes) is moved by the reader and,
//! when the reader falls behind, by the writer. A reader loads the stamps
//! and pointers of the positions it wants, then claims them with one CAS on
//! its `pos` (per batch, not per message); only after the CAS does it turn
//! the pointers into handles. The writer never overwrites a position a
//! reader's `pos` has not passed: before it writes position `q`, every
//! reader is at `q + 1 - cap` or later, and a reader that is not, the
//! writer moves forward with its own CAS first, giving back the references
//! it skipped. So a reader's successful CAS proves the pointers it loaded
//! were not yet replaced (a replacement would have moved `pos` first and
//! failed the CAS), and a failed CAS tells it that it lagged.
//!
//! # Lag
//!
//! The writer checks readers only when it needs room: when `head` would
//! pass the lowest cursor it last saw (`floor`) by the slot count. It then
//! looks at every reader's cursor once, and moves each reader that is more
//! than `len` (half the slots) behind to exactly `len` behind. The reader
//! keeps where it last was (`Cursor::at`): when its cursor is not there, the
//! writer moved it, and the difference is what it lost, reported as a lag
//! notice before anything after the gap. A reader within `len` of `head` never loses a message; the scan
//! happens at most once per `len` positions, so its cost per message is the
//! reader count over `len`.
//!
//! # Joining and leaving
//!
//! A reader joins by going onto the `joining` stack; the writer admits it at
//! its next append, with its cursor at `head` (it reads what is appended
//! from then on, and is counted in their prepay). A reader leaves by
//! setting the `LEFT` flag in its `pos` with a CAS (fixing where it
//! stopped) and going onto the `leaving` stack; the writer settles it (gives
//! back its references from where it stopped to `head`, and drops it from
//! the readers) at its next append, or at a settle the leaver's side asks
//! for (the hub does, at once, so that what the reader never took, `head`
//! the messages from where it stopped to `head`, is counted as discarded while the topic is
//! quiet), or when the log is dropped. Joins and leaves never wait for the
//! writer.
//!
//! # Sealing
//!
//! A reader whose subscriber closes is sealed ([`TopicLog::seal`]): its
//! `until` becomes the `head` of that moment, and it takes nothing at or
//! past it, so it drains what was appended before its close, as its ring
//! is drained, and no more. It stays a reader (counted in each message,
//! moved when it lags) until it leaves.
//!
//! # Waking
//!
//! A reader that finds nothing parks: it registers its waker, puts itself on
//! the `parked` stack once (its `queued` flag), issues a `SeqCst` fence and
//! looks again. The writer stores the stamps, issues a `SeqCst` fence, and
//! takes the whole stack, clearing each reader's `queued` with a swap
//! before waking it. The fences make a Dekker pair (either the reader sees
//! the new stamp, or the writer sees the reader on the stack); the swaps
//! make the clear read the reader's own swap, so a reader that found itself
//! still queued had its waker registered before the writer woke it. A
//! pass wakes the parked readers only, not every reader.
//!
//! # Stacks
//!
//! The three stacks are intrusive Treiber stacks of `Arc<Cursor>`: a push
//! is a CAS loop on the top, and the writer takes the whole stack with one
//! swap, so there is no pop of one entry and no ABA. A cursor is on the
//! `parked` stack at most once (its `queued` flag) and on each of the other
//! two at most once (a reader joins and leaves once), so each has a link
//! of its own per stack.

#![allow(unsafe_code)]

use std::ptr;
use std::sync::Arc;
use std::task::Waker;

use crossbeam_utils::CachePadded;

use crate::inbox::Sink;
use crate::loom::{fence, AtomicBool, AtomicPtr, AtomicU64, AtomicWaker, Ordering, UnsafeCell};
use crate::message::Message;
use crate::shared::Counted;

/// Set in a reader's `pos` when it left: it takes nothing more.
const LEFT: u64 = 1 << 63;
/// Set in a reader's `pos` until the writer admits it.
const PENDING: u64 = 1 << 62;
/// The position part of a `pos`.
const POS: u64 = PENDING - 1;
/// Most messages a reader claims with one CAS.
const CLAIM: usize = 64;
/// The least room a log is made with (small under loom, so that a model
/// wraps the log in a few appends).
const MIN_LEN: usize = if cfg!(loom) { 2 } else { CLAIM };
/// A slot's pointer for a position that is no message: a `seq` the topic
/// skipped (`TopicLog::skip`), which a reader reports as lost in its
/// place. Odd, so never a message's (those are aligned).
const HOLE: *mut () = 1 as *mut ();

struct Slot {
    /// Position + 1 of the message the slot holds; 0 before the first.
    stamp: AtomicU64,
    /// `Counted::into_raw` of that message: what its readers draw their
    /// references through (null if it had none). Not a reference of the
    /// log's (see "References").
    ptr: AtomicPtr<()>,
}

/// Which intrusive stack a link belongs to.
#[derive(Clone, Copy)]
enum Link {
    Joining = 0,
    Leaving = 1,
    Parked = 2,
}

/// One reader's place in a log (shared by the reader and the writer).
pub(crate) struct Cursor {
    /// The next position the reader takes, with `LEFT` and `PENDING`.
    pos: CachePadded<AtomicU64>,
    /// On the `parked` stack (set by the reader, cleared by the writer).
    queued: AtomicBool,
    /// The reader's waker, woken by the writer.
    waker: AtomicWaker,
    /// Links, one per stack.
    next: [AtomicPtr<Cursor>; 3],
    /// Where the writer admitted the reader: stored before `pos` leaves
    /// `PENDING` (so a reader that sees it admitted sees this too), for a
    /// reader moved before it first looked to know what it lost.
    admitted: AtomicU64,
    /// The reader's own: its position after its last take, or `PENDING`
    /// before its first (how it tells a move by the writer, a lag, from its
    /// own progress). Written and read by the reader alone (`Relaxed`).
    at: AtomicU64,
    /// The reader's index in the writer's list (the writer's alone).
    index: std::sync::atomic::AtomicUsize,
    /// The position the reader takes nothing at or past: `u64::MAX` until
    /// its subscriber closes, then the `head` when it did
    /// ([`TopicLog::seal`]), so that a closed subscriber drains what was
    /// appended before its close, as its ring is drained, and nothing after.
    until: AtomicU64,
    /// The reader's policy here is `Evict` (set once, before it joins).
    evict: AtomicBool,
    /// The writer moved this open `Evict` reader: its subscriber is to be
    /// closed as a slow consumer now, as a full ring's is (set by the
    /// writer, taken by the walk that closes it: `Cursor::take_evicted`).
    evicted: AtomicBool,
}

impl Cursor {
    pub(crate) fn new() -> Self {
        Cursor {
            pos: CachePadded::new(AtomicU64::new(PENDING)),
            admitted: AtomicU64::new(0),
            at: AtomicU64::new(PENDING),
            queued: AtomicBool::new(false),
            waker: AtomicWaker::new(),
            next: [
                AtomicPtr::new(ptr::null_mut()),
                AtomicPtr::new(ptr::null_mut()),
                AtomicPtr::new(ptr::null_mut()),
            ],
            index: std::sync::atomic::AtomicUsize::new(usize::MAX),
            until: AtomicU64::new(u64::MAX),
            evict: AtomicBool::new(false),
            evicted: AtomicBool::new(false),
        }
    }
}

impl Cursor {
    /// Marks this reader's policy here as `Evict`; call before it joins.
    pub(crate) fn set_evict(&self, evict: bool) {
        self.evict.store(evict, Ordering::Relaxed);
    }

    /// True once after the writer moved this open `Evict` reader.
    pub(crate) fn take_evicted(&self) -> bool {
        self.evicted.load(Ordering::Relaxed) && self.evicted.swap(false, Ordering::Relaxed)
    }

    /// How far the writer moved this reader since it last looked (`None`:
    /// not at all, or not admitted yet); records `raw` as where it is.
    /// Called by the reader alone.
    fn moved(&self, raw: u64) -> Option<u64> {
        if raw & (PENDING | LEFT) != 0 {
            return None;
        }
        let at = self.at.load(Ordering::Relaxed);
        let at = if at & PENDING != 0 {
            // First look since admitted: it started where the writer put it
            // (the Acquire load of `pos` that saw it admitted sees this).
            self.admitted.load(Ordering::Relaxed)
        } else {
            at
        };
        self.at.store(raw & POS, Ordering::Relaxed);
        // A sealed reader lost only what it would have taken.
        let to = (raw & POS).min(self.until.load(Ordering::Relaxed));
        (to > at).then(|| to - at)
    }

    /// Where the reader last was (see `at`).
    fn last(&self) -> u64 {
        let at = self.at.load(Ordering::Relaxed);
        if at & PENDING != 0 {
            self.admitted.load(Ordering::Relaxed)
        } else {
            at
        }
    }
}

/// An intrusive stack of cursors (see "Stacks").
struct Stack {
    top: AtomicPtr<Cursor>,
    which: Link,
}

impl Stack {
    fn new(which: Link) -> Self {
        Stack { top: AtomicPtr::new(ptr::null_mut()), which }
    }

    fn push(&self, c: Arc<Cursor>) {
        let node = Arc::into_raw(c).cast_mut();
        let mut top = self.top.load(Ordering::Relaxed);
        loop {
            // SAFETY: `node` is live (its reference moves into the stack).
            unsafe { &*node }.next[self.which as usize].store(top, Ordering::Relaxed);
            // Release: the link (and whatever the pusher did before) is seen
            // by the taker's Acquire swap.
            match self.top.compare_exchange_weak(top, node, Ordering::Release, Ordering::Relaxed) {
                Ok(_) => return,
                Err(t) => top = t,
            }
        }
    }

    /// Takes every entry (newest first).
    fn take_all(&self, mut f: impl FnMut(Arc<Cursor>)) {
        if self.top.load(Ordering::Relaxed).is_null() {
            return;
        }
        let mut p = self.top.swap(ptr::null_mut(), Ordering::Acquire);
        while !p.is_null() {
            // SAFETY: every node came from `Arc::into_raw` in `push`, and the
            // swap made this thread the only owner of the taken list.
            let c = unsafe { Arc::from_raw(p) };
            p = c.next[self.which as usize].load(Ordering::Relaxed);
            f(c);
        }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.take_all(drop);
    }
}

/// The writer's own state (see "Lag" and "Joining and leaving").
struct Writer {
    readers: Vec<Arc<Cursor>>,
    /// No reader's cursor was below this when last looked at.
    floor: u64,
}

/// A topic's shared log (see the module docs).
pub(crate) struct TopicLog<T> {
    /// `cap` slots, allocated by the first append (null before): a topic
    /// that never gets a message with a reader costs no slots. Installed
    /// by the writer before it admits any reader or writes any position,
    /// so every reader's path to a slot (an admitted cursor, a stamp)
    /// comes after the install; freed by `Drop` alone.
    slots: AtomicPtr<Slot>,
    cap: usize,
    mask: u64,
    /// Positions a reader may fall behind without losing one: half the slots.
    len: u64,
    /// The next position to write. Written by the writer alone.
    head: CachePadded<AtomicU64>,
    writer: UnsafeCell<Writer>,
    joining: Stack,
    leaving: Stack,
    parked: Stack,
    _holds: std::marker::PhantomData<Message<T>>,
}

// SAFETY: the slots and stacks are atomics; `writer` is reached only by the
// writer, one at a time (the contract of `append` and `settle`), and the
// caller's exclusion orders one writer's accesses before the next one's. The
// log holds messages, which are `Send` and `Sync` when `T` is.
unsafe impl<T: Send + Sync> Sync for TopicLog<T> {}
// SAFETY: as above; moving the log moves the messages it holds.
unsafe impl<T: Send + Sync> Send for TopicLog<T> {}

/// What an append did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Appended {
    /// Messages written.
    pub(crate) messages: u64,
    /// Readers counted in each message (its recipients).
    pub(crate) readers: u64,
    /// Parked readers woken.
    pub(crate) wakes: u64,
    /// Messages skipped for readers that lagged (summed over readers).
    pub(crate) skipped: u64,
    /// Messages readers were counted in and will never take: what the
    /// readers settled by this append left (see [`TopicLog::settle`]), and
    /// what a sealed reader was moved past beyond its seal (summed over
    /// readers).
    pub(crate) discarded: u64,
    /// Open `Evict` readers moved (lagged): their subscribers are to be
    /// closed as slow consumers (`Cursor::take_evicted` finds them).
    pub(crate) evicted: u64,
}

impl<T> TopicLog<T> {
    /// A log with `len` positions of room per reader (rounded up to a power
    /// of two, at least 64), in twice that many slots.
    pub(crate) fn new(len: usize) -> Self {
        let len = len.max(MIN_LEN).next_power_of_two() as u64;
        let cap = 2 * len;
        TopicLog {
            slots: AtomicPtr::new(ptr::null_mut()),
            cap: cap as usize,
            mask: cap - 1,
            len,
            head: CachePadded::new(AtomicU64::new(0)),
            writer: UnsafeCell::new(Writer { readers: Vec::new(), floor: 0 }),
            joining: Stack::new(Link::Joining),
            leaving: Stack::new(Link::Leaving),
            parked: Stack::new(Link::Parked),
            _holds: std::marker::PhantomData,
        }
    }

    fn slot(&self, pos: u64) -> &Slot {
        let p = self.slots.load(Ordering::Acquire);
        debug_assert!(!p.is_null(), "a slot looked at before the first append");
        // SAFETY: non-null once the first append installed the `cap` slots
        // (before any reader was admitted or any position written, so every
        // caller comes after the install), and freed only by `Drop`; the
        // index is masked to `cap`.
        unsafe { &*p.add((pos & self.mask) as usize) }
    }

    /// Allocates the slots at the first append (the writer's alone).
    fn install(&self) {
        if !self.slots.load(Ordering::Relaxed).is_null() {
            return;
        }
        let slots: Box<[Slot]> = (0..self.cap)
            .map(|_| Slot { stamp: AtomicU64::new(0), ptr: AtomicPtr::new(ptr::null_mut()) })
            .collect();
        // Release: a reader that finds the pointer finds the slots it points to.
        self.slots.store(Box::into_raw(slots).cast::<Slot>(), Ordering::Release);
    }

    /// A new reader: it reads what is appended after the writer admits it
    /// (at the writer's next append). Never waits.
    pub(crate) fn join(&self) -> Arc<Cursor> {
        let cursor = Arc::new(Cursor::new());
        self.join_cursor(cursor.clone());
        cursor
    }

    /// [`TopicLog::join`] with a cursor the caller made (and may have
    /// stored first): it must be new, and is offered to the writer once.
    pub(crate) fn join_cursor(&self, cursor: Arc<Cursor>) {
        self.joining.push(cursor);
    }

    /// The reader takes nothing more; the references it was counted in and
    /// did not draw are given back by the writer. Never waits.
    pub(crate) fn leave(&self, c: &Arc<Cursor>) {
        let mut cur = c.pos.load(Ordering::Acquire);
        loop {
            match c.pos.compare_exchange_weak(cur, cur | LEFT, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => break,
                Err(p) => cur = p,
            }
        }
        self.leaving.push(c.clone());
    }

    /// Takes up to `max` messages for `r` into `sink`, in position order.
    /// Returns how many it took, or, when the writer skipped `r` past
    /// messages since it last looked, `Err(n)` with their count and nothing
    /// taken (the lag notice comes before what follows the gap).
    pub(crate) fn take(&self, c: &Cursor, sink: &mut impl Sink<T>, max: usize) -> Result<usize, u64> {
        let mut taken = 0;
        let mut raw = c.pos.load(Ordering::Acquire);
        let until = c.until.load(Ordering::Acquire);
        if let Some(lost) = c.moved(raw) {
            // Holes right after the move are the same loss: one notice.
            let holes = self.holes_at(raw & POS, until);
            if holes > 0
                && c.pos.compare_exchange(raw, raw + holes, Ordering::AcqRel, Ordering::Acquire).is_ok()
            {
                c.at.store((raw & POS) + holes, Ordering::Relaxed);
                return Err(lost + holes);
            }
            return Err(lost);
        }
        while taken < max && raw & (LEFT | PENDING) == 0 && raw < until {
            let want = (max - taken).min(CLAIM).min((until - raw).try_into().unwrap_or(CLAIM));
            let mut ptrs = [ptr::null_mut::<()>(); CLAIM];
            let mut n = 0;
            let mut holes = 0;
            while n < want {
                let p = raw + n as u64;
                let slot = self.slot(p);
                if slot.stamp.load(Ordering::Acquire) != p + 1 {
                    break;
                }
                let ptr = slot.ptr.load(Ordering::Relaxed);
                if ptr == HOLE {
                    // Skipped numbers: reported by themselves, in their
                    // place (after what this batch took before them).
                    if n == 0 {
                        holes = self.holes_at(raw, until);
                    }
                    break;
                }
                ptrs[n] = ptr;
                n += 1;
            }
            if holes > 0 {
                if taken > 0 {
                    break;
                }
                match c.pos.compare_exchange(raw, raw + holes, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => {
                        c.at.store(raw + holes, Ordering::Relaxed);
                        return Err(holes);
                    }
                    Err(now) => {
                        if let Some(lost) = c.moved(now) {
                            return Err(lost);
                        }
                        raw = now;
                        continue;
                    }
                }
            }
            if n == 0 {
                break;
            }
            // The claim: fails if the writer moved this reader (see "Claiming").
            match c.pos.compare_exchange(raw, raw + n as u64, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    for &p in &ptrs[..n] {
                        // SAFETY: the stamp said the slot held this position,
                        // appended after this reader was admitted, with a
                        // reference prepaid for it; the CAS made this reader
                        // its one drawer, before the writer could replace
                        // the slot (which moves `pos` first).
                        sink.put(Message { inner: unsafe { Counted::from_raw(p) } });
                    }
                    taken += n;
                    raw += n as u64;
                    c.at.store(raw, Ordering::Relaxed);
                }
                Err(now) => {
                    if taken > 0 {
                        // Report the gap at the next take, after these.
                        break;
                    }
                    if let Some(lost) = c.moved(now) {
                        return Err(lost);
                    }
                    raw = now;
                }
            }
        }
        Ok(taken)
    }

    /// How many holes (`TopicLog::skip`) follow from position `raw` on,
    /// before `until`. However many: a notice is no message, so a take's
    /// `max` does not bound it.
    fn holes_at(&self, raw: u64, until: u64) -> u64 {
        if raw & (LEFT | PENDING) != 0 {
            return 0;
        }
        let mut holes = 0;
        while raw + holes < until {
            let q = raw + holes;
            let slot = self.slot(q);
            if slot.stamp.load(Ordering::Acquire) != q + 1 || slot.ptr.load(Ordering::Relaxed) != HOLE {
                break;
            }
            holes += 1;
        }
        holes
    }

    /// Whether `r` has something to take (or a gap to report).
    pub(crate) fn ready(&self, c: &Cursor) -> bool {
        let raw = c.pos.load(Ordering::Acquire);
        if raw & LEFT != 0 || raw & PENDING != 0 {
            return false;
        }
        let until = c.until.load(Ordering::Acquire);
        (raw != c.last() && c.last() < until)
            || (raw < until && self.slot(raw).stamp.load(Ordering::Acquire) == raw + 1)
    }

    /// The reader's subscriber closed: it takes nothing appended from now
    /// on (see `Cursor::until`). Any thread; idempotent (the first seal
    /// holds).
    pub(crate) fn seal(&self, c: &Cursor) {
        c.until.fetch_min(self.head.load(Ordering::SeqCst), Ordering::AcqRel);
    }

    /// What the reader has still to take (bounded by its seal); 0 before
    /// it is admitted and after it left.
    pub(crate) fn unread(&self, c: &Cursor) -> u64 {
        let raw = c.pos.load(Ordering::Acquire);
        if raw & (PENDING | LEFT) != 0 {
            return 0;
        }
        let end = self.head.load(Ordering::Acquire).min(c.until.load(Ordering::Acquire));
        end.saturating_sub(raw)
    }

    /// A receive that parked was cancelled: the log wakes no waker of it.
    pub(crate) fn unpark(&self, c: &Cursor) {
        drop(c.waker.take());
    }

    /// Registers `waker` to be woken by the next append, and answers whether
    /// something became ready meanwhile (then the caller takes again instead
    /// of waiting).
    pub(crate) fn park(&self, c: &Arc<Cursor>, waker: &Waker) -> bool {
        c.waker.register(waker);
        // A swap, not a store: the writer's clearing swap reads it (see "Waking").
        if !c.queued.swap(true, Ordering::AcqRel) {
            self.parked.push(c.clone());
        }
        fence(Ordering::SeqCst);
        self.ready(c)
    }

    /// Writes `run` at `head`, then wakes the readers that parked.
    ///
    /// # Safety
    ///
    /// One writer at a time: the caller holds an exclusion that every other
    /// call of `append` and `settle` on this log also takes (the topic's
    /// walk), and whose release and acquisition order one writer's accesses
    /// before the next one's.
    pub(crate) unsafe fn append(&self, run: impl ExactSizeIterator<Item = Message<T>>) -> Appended {
        let k = run.len() as u64;
        debug_assert!(k <= self.len, "a run longer than the log's room");
        let mut done = Appended::default();
        self.writer.with_mut(|w| {
            // SAFETY: the caller's exclusion (this function's contract).
            let w = unsafe { &mut *w };
            let head = self.prepare(w, k, true, &mut done);
            let end = head + k;
            let n = w.readers.len();
            done.readers = n as u64;
            for (i, m) in run.enumerate() {
                let pos = head + i as u64;
                let slot = self.slot(pos);
                let raw = if n == 0 {
                    drop(m);
                    ptr::null_mut()
                } else {
                    // The readers' references, drawn with `from_raw` (see
                    // "References"): the handle's own and `n - 1` prepaid.
                    if n > 1 {
                        std::mem::forget(m.inner.prepay(n - 1));
                    }
                    m.inner.into_raw()
                };
                // What the slot pointed to, `cap` positions back, is no
                // longer the log's to free: every reader's `pos` is past it
                // (`make_room`), so each counted in it drew or was given
                // back its reference.
                slot.ptr.store(raw, Ordering::Relaxed);
                slot.stamp.store(pos + 1, Ordering::Release);
            }
            self.head.store(end, Ordering::Release);
            done.messages = k;
        });
        done.wakes = self.wake_parked();
        done
    }

    /// The topic skipped `n` numbers (`numbered.rs`): `n` positions that
    /// are no message, each reported as lost by every reader, in its place
    /// (after what was appended before). Past the room, the readers are
    /// moved as by an append, and learn the loss from the move; only the
    /// last room of holes is written.
    ///
    /// # Safety
    ///
    /// As for [`TopicLog::append`].
    pub(crate) unsafe fn skip(&self, n: u64) -> Appended {
        let mut done = Appended::default();
        if n == 0 {
            return done;
        }
        self.writer.with_mut(|w| {
            // SAFETY: the caller's exclusion (this function's contract).
            let w = unsafe { &mut *w };
            // A skip is the topic's loss, not a reader's slowness: it
            // moves readers as an append does, but evicts none.
            let head = self.prepare(w, n, false, &mut done);
            let end = head + n;
            // Every reader is at `end - len` or later now (or was within the
            // room already): the holes it can reach.
            for pos in head.max(end.saturating_sub(self.len))..end {
                let slot = self.slot(pos);
                slot.ptr.store(HOLE, Ordering::Relaxed);
                slot.stamp.store(pos + 1, Ordering::Release);
            }
            self.head.store(end, Ordering::Release);
        });
        done.wakes = self.wake_parked();
        done
    }

    /// Wakes the readers that parked (after an append, or at shutdown:
    /// after the store that a parked reader must see). Returns how many.
    pub(crate) fn wake_parked(&self) -> u64 {
        fence(Ordering::SeqCst);
        let mut woken = 0;
        self.parked.take_all(|c| {
            // A swap, so that it reads the reader's (see "Waking").
            c.queued.swap(false, Ordering::AcqRel);
            c.waker.wake();
            woken += 1;
        });
        woken
    }

    /// Admits the joining readers and settles the leaving ones without
    /// appending: a leaver's settle, so that what it never took is counted
    /// now rather than at the topic's next message (and the loom models,
    /// which admit a reader before any append). Returns the messages the
    /// settled readers had been counted in and never took: from where each
    /// stopped to `head` (what the writer had skipped it past before it
    /// left was counted as skipped then; what it skipped after, as well as
    /// what it never reached, is counted here).
    ///
    /// # Safety
    ///
    /// As for [`TopicLog::append`].
    pub(crate) unsafe fn settle(&self) -> u64 {
        if !cfg!(loom) && self.slots.load(Ordering::Relaxed).is_null() {
            // Nothing appended yet: every leaver is still pending (counted
            // in nothing), and the slots wait for the first message.
            return 0;
        }
        self.writer.with_mut(|w| {
            // SAFETY: the caller's exclusion (this function's contract).
            let w = unsafe { &mut *w };
            // An admitted reader may look at a slot: the slots come first.
            self.install();
            self.admit_and_settle(w)
        })
    }

    /// Returns what the settled readers left untaken (see `settle`).
    fn admit_and_settle(&self, w: &mut Writer) -> u64 {
        let mut discarded = 0;
        let head = self.head.load(Ordering::Relaxed);
        self.joining.take_all(|c| {
            // PENDING -> head, unless it left first (then it stays not admitted).
            c.admitted.store(head, Ordering::Relaxed);
            if c.pos.compare_exchange(PENDING, head, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                c.index.store(w.readers.len(), std::sync::atomic::Ordering::Relaxed);
                w.readers.push(c);
                w.floor = w.floor.min(head);
            }
        });
        self.leaving.take_all(|c| {
            let raw = c.pos.load(Ordering::Acquire);
            if raw & PENDING != 0 {
                return; // never admitted: counted in nothing
            }
            discarded += self.give_back(raw & POS, head);
            let i = c.index.load(std::sync::atomic::Ordering::Relaxed);
            let gone = w.readers.swap_remove(i);
            debug_assert!(Arc::ptr_eq(&gone, &c));
            if let Some(moved) = w.readers.get(i) {
                moved.index.store(i, std::sync::atomic::Ordering::Relaxed);
            }
        });
        discarded
    }

    /// Gives back one reference of each message in positions `from..to`
    /// (still in their slots; holes hold none); returns how many.
    fn give_back(&self, from: u64, to: u64) -> u64 {
        let mut n = 0;
        for p in from..to {
            let raw = self.slot(p).ptr.load(Ordering::Relaxed);
            if raw == HOLE {
                continue;
            }
            debug_assert!(!raw.is_null(), "a reader counted in a message appended with none");
            // SAFETY: position `p` is in its slot (the writer has not passed
            // it by a slot count: see `make_room`) and was counted for the
            // reader given back for, which will not draw it.
            drop(unsafe { Counted::<crate::message::Envelope<T>>::from_raw(raw) });
            n += 1;
        }
        n
    }

    /// Moves every reader more than `len` behind `end` to `end - len`,
    /// giving back what it skipped (positions from `head` on are not
    /// written yet: a `skip` past them); returns the messages skipped
    /// (what the readers lost) and discarded (past a sealed reader's
    /// `until`, or of one that left: what it would never have taken).
    /// A write's first steps, for `k` positions from `head` (returned):
    /// the slots, the readers that joined and left, and room (moving the
    /// readers more than the room behind; with `evict`, flagging the open
    /// `Evict` ones as slow consumers), all counted into `done`.
    fn prepare(&self, w: &mut Writer, k: u64, evict: bool, done: &mut Appended) -> u64 {
        self.install();
        done.discarded = self.admit_and_settle(w);
        let head = self.head.load(Ordering::Relaxed);
        let end = head + k;
        if w.floor + self.mask + 1 < end {
            let (skipped, discarded, evicted) = self.make_room(w, head, end, evict);
            done.skipped = skipped;
            done.discarded += discarded;
            done.evicted = evicted;
        }
        head
    }

    fn make_room(&self, w: &mut Writer, head: u64, end: u64, evict: bool) -> (u64, u64, u64) {
        let to = end.saturating_sub(self.len);
        let mut floor = head;
        let mut skipped = 0;
        let mut discarded = 0;
        let mut evicted = 0;
        for c in &w.readers {
            let mut raw = c.pos.load(Ordering::Acquire);
            loop {
                let at = raw & POS;
                if at >= to {
                    floor = floor.min(at);
                    break;
                }
                match c.pos.compare_exchange(raw, (raw & LEFT) | to, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => {
                        let written = to.min(head);
                        let until = if raw & LEFT == 0 { c.until.load(Ordering::Acquire) } else { at };
                        let cut = until.clamp(at, written.max(at));
                        skipped += self.give_back(at, cut);
                        discarded += self.give_back(cut, written.max(cut));
                        floor = floor.min(to);
                        if evict && raw & LEFT == 0 && until == u64::MAX && c.evict.load(Ordering::Relaxed) {
                            // Open, under `Evict`: closed now, as a full ring's subscriber is.
                            c.evicted.store(true, Ordering::Relaxed);
                            evicted += 1;
                        }
                        break;
                    }
                    Err(now) => raw = now,
                }
            }
        }
        w.floor = floor;
        (skipped, discarded, evicted)
    }
}

impl<T> Drop for TopicLog<T> {
    fn drop(&mut self) {
        // Settles the leaving readers (admitting the joining ones, which
        // are then given back nothing: none was counted in a message).
        self.writer.with_mut(|w| {
            // SAFETY: `&mut self`: no other writer. (What they left is
            // not counted: the topic is gone, and the hub settles every
            // leaver when it leaves.)
            self.admit_and_settle(unsafe { &mut *w });
        });
        let head = self.head.load(Ordering::Relaxed);
        let readers = self.writer.with_mut(|w| {
            // SAFETY: `&mut self`.
            std::mem::take(&mut unsafe { &mut *w }.readers)
        });
        for c in readers {
            let at = c.pos.load(Ordering::Acquire) & POS;
            self.give_back(at, head);
        }
        let slots = self.slots.load(Ordering::Acquire);
        if slots.is_null() {
            return;
        }
        // SAFETY: `slots` came from `Box::into_raw` of `cap` slots in
        // `install`, and `&mut self` leaves nobody else looking at them.
        // Their pointers are not references of the log's (see
        // "References"): every reader's were drawn or given back above.
        drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(slots, self.cap)) });
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    //! The log with one thread: what a reader sees, and that every message
    //! is freed once (a payload that counts its drops; miri runs these too,
    //! `scripts/miri.sh`, and would see a double free or a use after it).

    use std::sync::atomic::AtomicUsize;
    use std::task::{Wake, Waker};

    use super::*;
    use crate::message::{Meta, Origin, Priority};

    struct Counted(Arc<AtomicUsize>);
    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn msgs(from: u64, n: u64, drops: &Arc<AtomicUsize>) -> Vec<Message<Counted>> {
        (from..from + n)
            .map(|s| {
                let meta = Meta { seq: s, epoch: 1 };
                Message::new(None, Origin::Broadcast, meta, Priority::Normal, Counted(drops.clone()))
            })
            .collect()
    }

    /// Appends `n` messages numbered from `from` in runs of up to 64.
    fn append(log: &TopicLog<Counted>, from: u64, n: u64, drops: &Arc<AtomicUsize>) {
        let mut at = from;
        while at < from + n {
            let k = (from + n - at).min(64);
            // SAFETY: one thread.
            unsafe { log.append(msgs(at, k, drops).into_iter()) };
            at += k;
        }
    }

    fn seqs(buf: &[Message<Counted>]) -> Vec<u64> {
        buf.iter().map(Message::seq).collect()
    }

    #[test]
    fn a_log_takes_its_slots_at_its_first_append() {
        let drops = Arc::new(AtomicUsize::new(0));
        let log = TopicLog::new(512);
        let r = log.join();
        assert!(log.slots.load(Ordering::Relaxed).is_null(), "no slots before a message");
        assert_eq!(log.take(&r, &mut Vec::new(), 8), Ok(0));
        append(&log, 1, 1, &drops);
        assert!(!log.slots.load(Ordering::Relaxed).is_null());
        assert_eq!(log.take(&r, &mut Vec::new(), 8), Ok(1));
        log.leave(&r);
        drop(log);
        assert_eq!(drops.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_reader_gets_what_was_appended_after_it_joined_in_order() {
        let drops = Arc::new(AtomicUsize::new(0));
        let log = TopicLog::new(64);
        append(&log, 1, 3, &drops);
        let r = log.join();
        let mut buf = Vec::new();
        // Not admitted before the writer's next append.
        assert_eq!(log.take(&r, &mut buf, 10), Ok(0));
        append(&log, 4, 5, &drops);
        assert_eq!(log.take(&r, &mut buf, 3), Ok(3));
        assert_eq!(log.take(&r, &mut buf, 10), Ok(2));
        assert_eq!(seqs(&buf), vec![4, 5, 6, 7, 8]);
        assert_eq!(log.take(&r, &mut buf, 10), Ok(0));
        drop(buf);
        log.leave(&r);
        drop(log);
        assert_eq!(drops.load(Ordering::Relaxed), 8, "every message freed once");
    }

    #[test]
    fn a_reader_more_than_the_room_behind_hears_the_exact_loss_then_the_newest() {
        let drops = Arc::new(AtomicUsize::new(0));
        let log = TopicLog::new(64); // room 64, 128 slots
        let r = log.join();
        let other = log.join();
        append(&log, 1, 1, &drops); // admits both at position 0
        let mut buf = Vec::new();
        assert_eq!(log.take(&r, &mut buf, 1), Ok(1));
        assert_eq!(log.take(&other, &mut Vec::new(), 1), Ok(1));
        // 300 more while `r` does not look; `other` keeps up.
        for i in 0..300 {
            append(&log, 2 + i, 1, &drops);
            let mut keep = Vec::new();
            assert_eq!(log.take(&other, &mut keep, 10), Ok(1));
            assert_eq!(keep[0].seq(), 2 + i, "a reader within the room loses nothing");
        }
        // The writer moved `r` when it needed room; `r` hears how much, first.
        let lost = log.take(&r, &mut buf, 1000).expect_err("a lag notice first");
        assert_eq!(log.take(&r, &mut buf, 1000), Ok(300 - lost as usize));
        let got = seqs(&buf[1..]);
        assert_eq!(got.first(), Some(&(2 + lost)), "taken from just after the gap");
        assert_eq!(got.last(), Some(&301));
        assert!(got.windows(2).all(|w| w[1] == w[0] + 1));
        assert!(got.len() >= 64, "at least the room's worth kept: {}", got.len());
        drop(buf);
        log.leave(&r);
        log.leave(&other);
        drop(log);
        assert_eq!(drops.load(Ordering::Relaxed), 301);
    }

    #[test]
    fn a_reader_moved_before_its_first_look_hears_the_loss_from_where_it_was_admitted() {
        let drops = Arc::new(AtomicUsize::new(0));
        let log = TopicLog::new(64);
        let r = log.join();
        append(&log, 1, 300, &drops); // admitted at 0, then moved
        let mut buf = Vec::new();
        let lost = log.take(&r, &mut buf, 1000).expect_err("the loss first");
        assert_eq!(log.take(&r, &mut buf, 1000), Ok(300 - lost as usize));
        assert_eq!(buf[0].seq(), 1 + lost, "the gap is what was reported");
        drop(buf);
        log.leave(&r);
        drop(log);
        assert_eq!(drops.load(Ordering::Relaxed), 300);
    }

    #[test]
    fn skipped_numbers_are_one_notice_in_their_place_and_hold_nothing() {
        let drops = Arc::new(AtomicUsize::new(0));
        let log = TopicLog::new(64);
        let r = log.join();
        append(&log, 1, 2, &drops);
        // SAFETY: one thread.
        unsafe { log.skip(3) };
        append(&log, 6, 1, &drops);
        let mut buf = Vec::new();
        assert_eq!(log.take(&r, &mut buf, 64), Ok(2), "what came before the gap");
        assert_eq!(log.take(&r, &mut buf, 1), Err(3), "the gap, whole, though max is 1");
        assert_eq!(log.take(&r, &mut buf, 64), Ok(1));
        assert_eq!(buf.iter().map(|m| m.seq()).collect::<Vec<_>>(), [1, 2, 6]);
        drop(buf);
        assert_eq!(drops.load(Ordering::Relaxed), 3, "holes hold no message");
        // A skip past the room moves the reader; the holes after the move
        // are the same notice.
        // SAFETY: one thread.
        unsafe { log.skip(1000) };
        assert_eq!(log.take(&r, &mut Vec::new(), 64), Err(1000));
        log.leave(&r);
        drop(log);
        assert_eq!(drops.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn a_reader_that_leaves_has_what_it_did_not_take_given_back() {
        let drops = Arc::new(AtomicUsize::new(0));
        let log = TopicLog::new(64);
        let r = log.join();
        let stays = log.join();
        let never = log.join();
        log.leave(&never); // left before it was admitted: counted in nothing
        append(&log, 1, 10, &drops);
        log.leave(&r);
        // The leave is settled by this append (and the wraps after it).
        append(&log, 11, 400, &drops);
        let mut buf = Vec::new();
        while !matches!(log.take(&stays, &mut buf, 64), Ok(0)) {
            buf.clear();
        }
        // Every message is freed once its readers are done with it: the
        // log keeps none alive (before, it held the last 128 until their
        // slots were reused or it was dropped: 282 here).
        assert_eq!(drops.load(Ordering::Relaxed), 410);
        log.leave(&stays);
        drop(log);
        assert_eq!(drops.load(Ordering::Relaxed), 410);
    }

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn a_parked_reader_is_woken_once_by_the_next_append() {
        let drops = Arc::new(AtomicUsize::new(0));
        let log = TopicLog::new(64);
        let r = log.join();
        append(&log, 1, 1, &drops);
        let mut buf = Vec::new();
        assert_eq!(log.take(&r, &mut buf, 8), Ok(1));
        let woken = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(woken.clone());
        assert!(!log.park(&r, &waker), "nothing ready");
        assert!(!log.park(&r, &waker), "parking twice queues once");
        append(&log, 2, 1, &drops);
        assert_eq!(woken.0.load(Ordering::Relaxed), 1);
        append(&log, 3, 1, &drops);
        assert_eq!(woken.0.load(Ordering::Relaxed), 1, "not parked again: not woken again");
        assert!(log.park(&r, &waker), "ready: take instead of waiting");
        assert_eq!(log.take(&r, &mut buf, 8), Ok(2));
        drop(buf);
        log.leave(&r);
    }
}
