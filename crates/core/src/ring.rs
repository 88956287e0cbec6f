//! A subscriber's bounded ring: many publishers push runs, one receiver takes
//! batches, and publishers may displace the oldest entry.
//!
//! # Layout
//!
//! Dmitry Vyukov's bounded MPMC queue (as in crossbeam's `ArrayQueue`): a
//! power-of-two array of slots, each a *stamp* and a pointer (a [`Message`] is
//! one reference-counted pointer), and two positions that only grow:
//!
//! - `tail`: the next position a publisher reserves;
//! - `head`: the next position to take.
//!
//! Position `p` lives in slot `p & mask`. The slot's stamp says what the slot
//! is waiting for: `stamp == p` means "free for position `p`" (a writer may
//! fill it), `stamp == p + 1` means "holds position `p`" (a taker may take
//! it). Taking position `p` sets the stamp to `p + size`: free for the next
//! lap. Stamps only grow, so there is no ABA and a reader can never mistake a
//! value from one lap for another. At most `capacity` positions are reserved
//! and not taken (`tail - head ≤ cap`).
//!
//! # What is different from `ArrayQueue`: runs and batches
//!
//! `ArrayQueue` moves `tail` and `head` one position per CAS. Here:
//!
//! - a publisher **reserves a run** of up to `k` positions with one CAS on
//!   `tail` (bounded by the room it computes from `head`), then fills each slot
//!   (pointer, then `Release` store of the stamp);
//! - the receiver **claims a batch**: it counts the ready slots from `head`
//!   (stamp `== p + 1`), claims them with one CAS on `head`, then takes each
//!   pointer and frees each slot.
//!
//! A run of 64 messages costs one CAS per side instead of 64. A writer whose
//! slot is still held by a taker that claimed it but has not freed it yet
//! waits for the stamp: a few instructions, never a lock.
//!
//! # Displacing the oldest (`DropOldest`, `Urgent`)
//!
//! A publisher that must make room takes the oldest position like a batch of
//! one: it checks that the slot at `head` is ready, claims it with a CAS on
//! `head`, takes the pointer and frees the slot. A receiver that counted that
//! slot sees its own CAS fail and counts again.
//!
//! # Storage, allocated on first use
//!
//! The stamps and the pointers (12 bytes a slot: 3 KiB for 256) are one
//! allocation, `size` stamps then `size` pointers, and `Ring::new` does not
//! make it: a subscriber to a quiet topic (an idle WebSocket connection) holds
//! only the `Ring` itself. `storage` is an `AtomicPtr`, null until the first
//! publisher that reserves a position installs it:
//!
//! - `reserve` loads `storage` (`Acquire`). If it is null, the publisher
//!   allocates a storage whose stamps say "free for positions 0, 1, …" and
//!   installs it with a CAS from null (`AcqRel`: its `Release` half publishes
//!   the initialised stamps). A loser of that race frees its own allocation
//!   and uses the winner's (the failed CAS's `Acquire` makes the winner's
//!   stamps visible to it).
//! - The publisher installs the storage *before* its CAS on `tail`, in program
//!   order, and that CAS is `AcqRel`: anyone who sees a reserved position
//!   through `tail` (`Acquire`: `len`, `displace`, `Drop`) sees the storage,
//!   and a stamp can only be read through the storage. Until the first install
//!   no position is reserved, so nothing is ready either: `take`, `pop`,
//!   `displace` and `Drop` treat a null storage as empty (which also makes a
//!   null read safe, never wrong, for a reader racing the install).
//! - Once installed the storage never changes until `Drop` frees it (after
//!   dropping the messages left), so one load serves a whole run or batch:
//!   `reserve` returns the storage inside the [`Run`] it reserved, and `take`
//!   loads it once per call, never per message.
//!
//! What it costs the hot path: one `Acquire` load (a plain `mov` on x86, from
//! the line that already holds `mask`) and a branch that is never taken after
//! the first push, per `reserve` and per `take`. It saves more than that: the
//! stamps, slots and mask travel in registers through a run or a batch, with
//! no bounds checks and no reloads of the two boxed slices' pointers and
//! lengths per message (callgrind, `benches/hot_path.rs` at 10k subscribers:
//! 41 → 30 instructions per delivery on the publisher's side, 41 → 33 on the
//! receiver's).
//!
//! # Two lines, and a cached `head`
//!
//! A push into one ring per subscriber (one message to 10,000 subscribers)
//! pays for every cache line it touches, once per ring. The fields are
//! therefore grouped by who reads them on every operation, each group on its
//! own cache-padded line:
//!
//! - the **publishers' line** (`PutSide`): `tail`, `head_seen`, the storage
//!   pointer and the geometry (mask, slot offset, capacity), and the owner's
//!   fields (for an inbox: state word, high-water mark, overflow policy,
//!   `parked`);
//! - the **taker's line** (`TakeSide`): `head`, a copy of the storage pointer,
//!   the geometry again, and the owner's fields (for an inbox: the position
//!   the receiver expects next, and the lag counter and its position).
//!
//! A push then touches the publishers' line, the stamp's line and the slot's
//! line; a take, the taker's line and the same two. Before, a push also read
//! `head`'s line (for the room) and the inbox's own line or two.
//!
//! `head_seen` is the publishers' cached view of `head` (as in Vyukov's and
//! LMAX's queues): a value `head` had at some point, so a lower bound, and a
//! room computed from it can only be too small. A reservation uses it while
//! it shows the ring below half the limit after the reservation; otherwise it
//! reads `head` itself (and stores what it read into `head_seen`), so every
//! decision that the limit or a full ring forces is taken on a fresh `head`,
//! exactly as before. It orders nothing: a slot is reused only once its stamp
//! says it was freed (`Run::fill` waits for that with `Acquire`).
//! [`Ring::try_push_one`] is that reservation for one message with the write
//! folded in: one load of each of `storage`, `tail`, `head_seen`, one
//! comparison, one CAS.
//!
//! # Priorities in the slots
//!
//! A displacer (a `DropOldest` message making room, an `Urgent` one always)
//! must not take out a message that outranks it: `Normal` traffic must not
//! push queued `High` or `Urgent` messages out. So the two low bits of each
//! slot's pointer hold the priority its message entered with
//! ([`Run::write_as`]; a message's allocation is aligned to 8, so the bits
//! are free). A displacer reads the head slot's pointer *value* (never what
//! it points to: the receiver may be taking that message), checks that the
//! stamp still says the slot holds position `head`, compares the priority,
//! and only then claims the position with the usual CAS on `head`, which
//! fails if anyone took it meanwhile. Takers strip the bits.
//!
//! # Limits inside the reservation
//!
//! [`Ring::reserve_within`] takes the most positions that may be in use after
//! the reservation (the high-water mark for `Normal` messages), and computes
//! the room from `head` inside the CAS loop: two publishers that both read a
//! length below the mark cannot both fill the room above it, since the second
//! CAS fails and recomputes from the first one's `tail`.
//!
//! # Sealing (a close is terminal)
//!
//! A receiver that has seen its subscriber close seals the ring
//! ([`Ring::seal`]): one `fetch_or` sets the top bit of `tail`. A publisher's
//! CAS on `tail` then fails (the value changed) and its next look sees the
//! bit: nothing can be reserved any more ([`Run::sealed`]). Every position
//! reserved before the seal lies below the sealed `tail`; the receiver drains
//! up to there ([`Ring::sealed_end`]), waiting for a slot that a publisher
//! reserved but has not written yet (a few instructions, or a preempted
//! publisher's time slice, with [`Backoff`]). So each message queued is either
//! received, displaced, or taken out by whoever drops the subscriber, and
//! nothing arrives after the receiver has reported the close.
//!
//! Positions are 64-bit (the crate refuses to build where `usize` is
//! narrower): at 2^63 positions a ring would need centuries of pushes at any
//! rate a machine can sustain before `tail` could reach the seal bit.
//!
//! # Safety
//!
//! The `unsafe` here turns a slot's pointer back into the message handle it
//! came from, and manages the storage's allocation. A pointer enters a slot
//! once (`Counted::into_raw`, before the stamp says "ready") and leaves it once
//! (after the one CAS on `head` that claims its position); a slot's pointer is
//! meaningful only while its stamp says the slot holds a position. A storage
//! is initialised before the CAS that installs it, read only through a
//! non-null `Acquire` load of `storage` (so only once initialised and visible),
//! and freed only by `Drop` (`&mut self`: no [`Storage`] view outlives the
//! borrow of the ring it came from) or by the loser of the install race, which
//! never published it. loom models the ring through the shim's atomics and
//! allocator (`loom_tests.rs`); miri runs its unit tests.

#![allow(unsafe_code)]

use std::alloc::{handle_alloc_error, Layout};
use std::marker::PhantomData;
use std::ptr;

use crossbeam_utils::CachePadded;

use crate::loom::{alloc, dealloc, AtomicPtr, AtomicU32, AtomicUsize, Backoff, Ordering};

#[cfg(not(target_pointer_width = "64"))]
compile_error!("fanout-core needs 64-bit ring positions (usize of 64 bits): see ring.rs, Sealing");

/// The bit of `tail` that says the ring is sealed (see "Sealing").
const SEALED: usize = 1 << 63;

/// The low bits of a slot's pointer that hold its message's priority (see
/// "Priorities in the slots"). A message's allocation is aligned to at least
/// 8 (it starts with its reference count, a `usize`).
const TAG: usize = 0b11;

/// `p` with `priority` in its low bits (a hole, null, stays null).
#[inline]
fn tag(p: *mut (), priority: Priority) -> *mut () {
    debug_assert_eq!(p as usize & TAG, 0, "a message pointer is aligned");
    if p.is_null() {
        return p;
    }
    // `wrapping_add`: the pointer keeps its provenance; no dereference.
    p.cast::<u8>().wrapping_add(priority as usize).cast()
}

/// The priority a slot's pointer carries.
#[inline]
fn priority_of(p: *mut ()) -> Priority {
    match p as usize & TAG {
        0 => Priority::Normal,
        1 => Priority::High,
        _ => Priority::Urgent,
    }
}

/// `p` without its tag: the pointer `Counted::into_raw` gave.
#[inline]
fn untag(p: *mut ()) -> *mut () {
    p.cast::<u8>().wrapping_sub(p as usize & TAG).cast()
}

/// A position as a stamp (see `Ring::stamps`).
#[inline]
fn stamp(pos: usize) -> u32 {
    pos as u32
}
use crate::message::{Envelope, Message, Priority};
use crate::shared::Counted;

/// A hint that the line holding `p` will be read soon (prefetch into every
/// cache level). Changes nothing the program computes; any address is fine.
/// A no-op under miri and loom, and off x86-64.
// Under loom the walk does not prefetch (`Inbox::prefetch`).
#[cfg_attr(loom, allow(dead_code))]
#[inline(always)]
pub(crate) fn prefetch(p: *const u8) {
    #[cfg(all(target_arch = "x86_64", not(miri), not(loom)))]
    // SAFETY: `prefetcht0` is only a hint: it never faults, whatever the
    // address, reads nothing into the program and writes nothing; SSE is part
    // of the x86-64 baseline.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast::<i8>());
    }
    #[cfg(not(all(target_arch = "x86_64", not(miri), not(loom))))]
    let _ = p;
}

/// A slot's pointer. Owned by the slot while its stamp (kept apart, in the
/// storage's stamps) says it holds a position; stale otherwise (never
/// cleared). Written before the stamp's `Release` store and read after its
/// `Acquire` load, so `Relaxed` suffices here.
struct Slot {
    ptr: AtomicPtr<()>,
}

/// The layout of a storage of `size` slots: `size` stamps, then `size` slots;
/// and the offset of the slots.
fn storage_layout(size: usize) -> (Layout, usize) {
    let stamps = Layout::array::<AtomicU32>(size).expect("size ≤ MAX_CAPACITY");
    let slots = Layout::array::<Slot>(size).expect("size ≤ MAX_CAPACITY");
    stamps.extend(slots).expect("size ≤ MAX_CAPACITY")
}

/// An installed storage, borrowed from its ring: where the stamps and the
/// slots are. Copied into registers once per `reserve` or `take`.
#[derive(Clone, Copy)]
struct Storage<'r> {
    stamps: *const AtomicU32,
    slots: *const Slot,
    mask: usize,
    _ring: PhantomData<&'r ()>,
}

impl<'r> Storage<'r> {
    /// The stamp of position `pos`'s slot.
    #[inline]
    fn stamp(self, pos: usize) -> &'r AtomicU32 {
        // SAFETY: `pos & mask < size`, and the storage holds `size` initialised
        // stamps (see `Ring::storage`); it lives as long as the `&'r Ring` this
        // view came from, since only `Drop` (`&mut`) frees an installed storage.
        unsafe { &*self.stamps.add(pos & self.mask) }
    }

    /// The pointer of position `pos`'s slot.
    #[inline]
    fn slot(self, pos: usize) -> &'r Slot {
        // SAFETY: as in `stamp`, for the `size` initialised slots.
        unsafe { &*self.slots.add(pos & self.mask) }
    }
}

/// What every push reads, on one cache line (see "Two lines"): `tail`, the
/// publishers' cached view of `head`, the storage and its geometry, and the
/// owner's fields `P` (an inbox's state word, high-water mark, `parked`).
#[repr(C)]
struct PutSide<P> {
    /// Next position to reserve. Only grows; moved by CAS (publishers).
    tail: AtomicUsize,
    /// A value `head` had at some point: a lower bound on it, so a room
    /// computed from it is never too large. Refreshed from `head` by a
    /// publisher whose cached view would leave it short of room or past half
    /// the limit (see "Two lines").
    head_seen: AtomicUsize,
    /// Null until the first `reserve` installs it (CAS from null), then fixed
    /// until `Drop`: one allocation of `size` stamps, then `size` slots at
    /// byte offset `slots_at`.
    ///
    /// Stamps, per slot: `p` (free for position `p`) or `p + 1` (holds
    /// position `p`), truncated to 32 bits. Kept apart from the pointers so
    /// that a run of 64 touches 4 lines of stamps and 8 of pointers instead of
    /// 16 of both, and a 256-slot ring costs 3 KiB instead of 4. Truncation is
    /// safe: stamps are only compared for equality with positions within one
    /// lap of the slot's own (a lap is at most 2^24 positions,
    /// `MAX_CAPACITY`), never 2^32 apart.
    storage: AtomicPtr<u8>,
    geo: Geometry,
    extra: P,
}

/// What every take reads, on another line: `head`, the takers' copy of the
/// storage pointer, the geometry again, and the owner's fields `R` (an
/// inbox's expected position and lag).
#[repr(C)]
struct TakeSide<R> {
    /// Next position to take; `head ≤ tail`. Only grows; moved by CAS (the
    /// receiver by a batch, displacing publishers by one).
    head: AtomicUsize,
    /// Null, or the installed storage (copied from `PutSide::storage` by the
    /// first take that found it installed).
    storage: AtomicPtr<u8>,
    geo: Geometry,
    extra: R,
}

/// A ring's fixed shape, kept on both lines.
#[derive(Clone, Copy)]
struct Geometry {
    mask: usize,
    /// Byte offset of the slots in the storage.
    slots_at: u32,
    /// Positions that may be reserved and not yet taken.
    cap: u32,
}

/// A ring, with `P` kept on its publishers' line and `R` on its taker's
/// (`()` for a sequencer's log).
#[repr(C)]
pub(crate) struct Ring<T, P = (), R = ()> {
    put: CachePadded<PutSide<P>>,
    take: CachePadded<TakeSide<R>>,
    /// The ring owns message references (as raw pointers): it is `Send` and
    /// `Sync` exactly when the handles are.
    _owns: PhantomData<Counted<Envelope<T>>>,
}

/// What [`Ring::displace_up_to`] found at the head.
pub(crate) enum Displace<T> {
    /// The oldest message, taken out.
    Taken(Message<T>),
    /// Nothing to take.
    Empty,
    /// The oldest message outranks what wanted its place: left where it is.
    Outranked,
}

/// What [`Ring::force_push_as`] did (a message not pushed is dropped).
pub(crate) enum Forced {
    /// Pushed, after displacing this many.
    In(usize),
    /// Not pushed: the ring is sealed (after displacing this many).
    Sealed(usize),
    /// Not pushed: the oldest queued message outranks it (after displacing
    /// this many of lower or equal priority).
    Outranked(usize),
}

/// Positions reserved by one CAS on `tail`, to fill with [`Run::write`]: `n`
/// of them from `pos` (`n == 0` when the ring was full, or sealed). Carries
/// the storage loaded once by `reserve`.
pub(crate) struct Run<'r, T> {
    pub(crate) pos: usize,
    pub(crate) n: usize,
    /// Positions in use (reserved, not taken) after this reservation, when it
    /// read `head` itself; 0 when the publishers' cached view of `head` showed
    /// room enough (then fewer than half the limit were in use).
    pub(crate) depth: usize,
    /// The ring is sealed: nothing will ever be reserved again (`n == 0`).
    pub(crate) sealed: bool,
    store: Storage<'r>,
    _msgs: PhantomData<fn(Message<T>)>,
}

impl<T> Run<'_, T> {
    /// Fills the run's `i`-th position (`i < n`) with `m`. Positions may be
    /// filled in any order; a taker stops at the first one not yet filled.
    /// Its slot says `Normal` (see "Priorities in the slots").
    #[inline]
    pub(crate) fn write(&self, i: usize, m: Message<T>) {
        self.write_as(i, m, Priority::Normal);
    }

    /// [`Run::write`], the slot marked with `priority`: what a displacer may
    /// take out of it (see "Priorities in the slots").
    #[inline]
    pub(crate) fn write_as(&self, i: usize, m: Message<T>, priority: Priority) {
        debug_assert!(i < self.n, "position {i} of a run of {}", self.n);
        self.fill(self.pos + i, tag(m.inner.into_raw(), priority));
    }

    /// Fills the run's `i`-th position with a hole: a position that holds no
    /// message (a sequencer's number whose publish failed while building its
    /// payload). Only a ring read with [`Ring::take_entries`] may hold one.
    pub(crate) fn write_hole(&self, i: usize) {
        debug_assert!(i < self.n, "position {i} of a run of {}", self.n);
        self.fill(self.pos + i, ptr::null_mut());
    }

    #[inline]
    fn fill(&self, pos: usize, p: *mut ()) {
        let st = self.store.stamp(pos);
        // The lap before was taken (`head` passed it), but its taker may not
        // have freed the slot yet. Acquire: pairs with the taker's Release.
        let backoff = Backoff::new();
        while st.load(Ordering::Acquire) != stamp(pos) {
            backoff.snooze();
        }
        self.store.slot(pos).ptr.store(p, Ordering::Relaxed);
        // Release: a taker that sees the stamp sees the pointer and the
        // envelope behind it.
        st.store(stamp(pos + 1), Ordering::Release);
    }
}

impl<T> Ring<T> {
    /// A ring of `cap` positions; allocates nothing beyond the struct (the
    /// storage comes with the first `reserve`).
    pub(crate) fn new(cap: usize) -> Self {
        Ring::with(cap, (), ())
    }
}

impl<T, P, R> Ring<T, P, R> {
    /// [`Ring::new`], with the owner's fields `put` on the publishers' line
    /// and `take` on the taker's.
    pub(crate) fn with(cap: usize, put: P, take: R) -> Self {
        let cap = cap.max(1);
        let size = cap.next_power_of_two();
        let slots_at = storage_layout(size).1;
        let geo = Geometry {
            mask: size - 1,
            slots_at: u32::try_from(slots_at).expect("size ≤ MAX_CAPACITY"),
            cap: u32::try_from(cap).expect("cap ≤ MAX_CAPACITY"),
        };
        Ring {
            put: CachePadded::new(PutSide {
                tail: AtomicUsize::new(0),
                head_seen: AtomicUsize::new(0),
                storage: AtomicPtr::new(ptr::null_mut()),
                geo,
                extra: put,
            }),
            take: CachePadded::new(TakeSide {
                head: AtomicUsize::new(0),
                storage: AtomicPtr::new(ptr::null_mut()),
                geo,
                extra: take,
            }),
            _owns: PhantomData,
        }
    }

    /// The owner's fields on the publishers' line.
    #[inline]
    pub(crate) fn put_extra(&self) -> &P {
        &self.put.extra
    }

    /// The owner's fields on the taker's line.
    #[inline]
    pub(crate) fn take_extra(&self) -> &R {
        &self.take.extra
    }

    /// Brings the publishers' line of this ring into the cache ahead of a
    /// push (a hint: no effect on what the program computes).
    // Under loom the walk does not prefetch (`Inbox::prefetch`).
    #[cfg_attr(loom, allow(dead_code))]
    #[inline]
    pub(crate) fn prefetch_put(&self) {
        prefetch(std::ptr::from_ref(&self.put).cast());
    }

    /// Brings the stamp and the slot of the position the next push would
    /// fill into the cache (a hint; reads `tail` and the storage `Relaxed`).
    // Under loom the walk does not prefetch (`Inbox::prefetch`).
    #[cfg_attr(loom, allow(dead_code))]
    #[inline]
    pub(crate) fn prefetch_next_slot(&self) {
        let base = self.put.storage.load(Ordering::Relaxed);
        if base.is_null() {
            return;
        }
        let store = self.view(self.put.geo, base);
        let t = self.put.tail.load(Ordering::Relaxed);
        prefetch(store.stamps.wrapping_add(t & store.mask).cast());
        prefetch(store.slots.wrapping_add(t & store.mask).cast());
    }

    pub(crate) fn capacity(&self) -> usize {
        self.put.geo.cap as usize
    }

    /// A ring whose positions start at `start` (a multiple of the size), to
    /// test stamps across the 32-bit wrap. Its storage is installed here, with
    /// stamps for the positions from `start`.
    #[cfg(all(test, not(loom)))]
    fn starting_at(cap: usize, start: usize) -> Ring<T> {
        let r = Ring::new(cap);
        assert_eq!(start & r.put.geo.mask, 0);
        r.take.head.store(start, Ordering::Relaxed);
        r.put.tail.store(start, Ordering::Relaxed);
        r.install(start);
        r
    }

    fn size(&self) -> usize {
        self.put.geo.mask + 1
    }

    /// The view of the storage at `base` (non-null, installed in this ring).
    #[inline]
    fn view(&self, geo: Geometry, base: *mut u8) -> Storage<'_> {
        Storage {
            stamps: base.cast::<AtomicU32>(),
            // `wrapping_add`: no `unsafe` for an offset that stays inside the
            // allocation (`storage_layout`).
            slots: base.wrapping_add(geo.slots_at as usize).cast::<Slot>(),
            mask: geo.mask,
            _ring: PhantomData,
        }
    }

    /// The storage, if installed, read from the publishers' line. Acquire:
    /// pairs with the installing CAS, so the stamps it was initialised with
    /// are visible.
    #[inline]
    fn storage(&self) -> Option<Storage<'_>> {
        let base = self.put.storage.load(Ordering::Acquire);
        if base.is_null() {
            None
        } else {
            Some(self.view(self.put.geo, base))
        }
    }

    /// [`Ring::storage`] for a taker, read from the taker's line (its copy).
    /// Acquire: pairs with the Release store of the copy below, which was
    /// made after an Acquire load of the installed pointer, so the
    /// initialised stamps are visible through either.
    #[inline]
    fn taker_storage(&self) -> Option<Storage<'_>> {
        let base = self.take.storage.load(Ordering::Acquire);
        if base.is_null() {
            return self.copy_storage();
        }
        Some(self.view(self.take.geo, base))
    }

    /// The taker's copy is not made yet: copy the installed pointer (if any).
    /// Every thread that copies stores the same pointer (it never changes
    /// once installed), so racing copies agree.
    #[cold]
    fn copy_storage(&self) -> Option<Storage<'_>> {
        let base = self.put.storage.load(Ordering::Acquire);
        if base.is_null() {
            return None;
        }
        self.take.storage.store(base, Ordering::Release);
        Some(self.view(self.take.geo, base))
    }

    /// Installs the storage now, if no push did yet (for a hub without
    /// `lazy_rings`: the allocation is then part of `subscribe`).
    pub(crate) fn allocate(&self) {
        if self.put.storage.load(Ordering::Acquire).is_null() {
            self.install(0);
        }
    }

    /// Allocates a storage whose stamps say "free for positions `first`,
    /// `first + 1`, …" (`first` a multiple of the size), and installs it unless
    /// another thread did first; returns the installed one either way.
    #[cold]
    #[inline(never)]
    fn install(&self, first: usize) -> Storage<'_> {
        let size = self.size();
        let (layout, slots_at) = storage_layout(size);
        // SAFETY: the layout is not zero-sized (`size ≥ 1` stamps).
        let mine = unsafe { alloc(layout) };
        if mine.is_null() {
            handle_alloc_error(layout);
        }
        for i in 0..size {
            // SAFETY: the allocation holds `size` stamps, then `size` slots at
            // `slots_at` (`storage_layout`); each is written once, before the
            // storage is shared.
            unsafe {
                mine.cast::<AtomicU32>().add(i).write(AtomicU32::new(stamp(first + i)));
                mine.add(slots_at).cast::<Slot>().add(i).write(Slot { ptr: AtomicPtr::new(ptr::null_mut()) });
            }
        }
        // Release (success): a thread whose Acquire load reads this pointer
        // sees the initialised stamps and slots. Acquire (failure): this thread
        // sees the winner's.
        match self.put.storage.compare_exchange(ptr::null_mut(), mine, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => self.view(self.put.geo, mine),
            Err(theirs) => {
                // SAFETY: `mine` was allocated above with this ring's size and
                // never published: no other thread can see it.
                unsafe { free_storage(mine, size) };
                self.view(self.put.geo, theirs)
            }
        }
    }

    /// The next position to reserve (`tail` without the seal bit): where a
    /// message that did not fit would have gone.
    pub(crate) fn tail(&self) -> usize {
        self.put.tail.load(Ordering::Acquire) & !SEALED
    }

    /// The next position to take.
    pub(crate) fn head(&self) -> usize {
        self.take.head.load(Ordering::Acquire)
    }

    /// Reserved and not yet taken (may count a message still being written).
    #[inline]
    pub(crate) fn len(&self) -> usize {
        let t = self.put.tail.load(Ordering::Acquire) & !SEALED;
        let h = self.take.head.load(Ordering::Acquire);
        t.saturating_sub(h).min(self.capacity())
    }

    /// Reserves up to `want` positions with one CAS; returns the run (`n == 0`
    /// when the ring is full or sealed). The first call installs the storage,
    /// before `tail` moves.
    #[inline]
    pub(crate) fn reserve(&self, want: usize) -> Run<'_, T> {
        self.reserve_within(self.capacity(), want)
    }

    /// [`Ring::reserve`], leaving at most `limit` positions in use (reserved
    /// and not taken) after it: the limit is checked inside the CAS loop, so
    /// racing publishers cannot overshoot it together (see "Limits inside the
    /// reservation").
    #[inline]
    pub(crate) fn reserve_within(&self, limit: usize, want: usize) -> Run<'_, T> {
        // Installed before the CAS on `tail` below (sequenced before it, and
        // that CAS is a Release): whoever sees the position sees the storage.
        let store = match self.storage() {
            Some(s) => s,
            // Nothing was ever reserved, so positions start at 0.
            None => self.install(0),
        };
        let limit = limit.min(self.capacity());
        let mut t = self.put.tail.load(Ordering::Relaxed);
        // Relaxed: `head_seen` is only a lower bound on `head`, used to
        // compute a room that can only be too small. It orders nothing: a
        // slot is reused only once its stamp says it was freed (`Run::fill`
        // waits for that with Acquire).
        let mut h = self.put.head_seen.load(Ordering::Relaxed);
        let mut fresh = false;
        loop {
            if t & SEALED != 0 {
                return Run { pos: t & !SEALED, n: 0, depth: 0, sealed: true, store, _msgs: PhantomData };
            }
            if h > t {
                // `t` is stale: others reserved and took meanwhile.
                t = self.put.tail.load(Ordering::Relaxed);
                continue;
            }
            if !fresh && (t - h).saturating_add(want) > limit / 2 {
                // The cached view is short of room, or past half the limit:
                // read `head` itself (and remember it for the next push).
                h = self.take.head.load(Ordering::Acquire);
                self.put.head_seen.store(h, Ordering::Relaxed);
                fresh = true;
                continue;
            }
            let free = limit.saturating_sub(t - h);
            if free == 0 {
                // `fresh` (the cached view never says full), and `tail` only
                // grows, so the ring was at the limit when `head` was read.
                return Run { pos: t, n: 0, depth: t - h, sealed: false, store, _msgs: PhantomData };
            }
            let n = free.min(want);
            match self.put.tail.compare_exchange_weak(t, t + n, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => {
                    let depth = if fresh { t + n - h } else { 0 };
                    return Run { pos: t, n, depth, sealed: false, store, _msgs: PhantomData };
                }
                Err(cur) => {
                    // A seal makes this fail too; the next turn sees its bit.
                    // Others reserved meanwhile: look at `head` again if the
                    // room is short now.
                    t = cur;
                    fresh = false;
                }
            }
        }
    }

    /// The single-message fast path of [`Ring::reserve_within`] followed by
    /// [`Run::write`]: pushes `make()` if the storage is installed, the ring
    /// is not sealed, the publishers' cached view of `head` shows it below
    /// half the limit after the push, and the one CAS on `tail` succeeds.
    /// False (and `make` not called) otherwise: the caller takes the general
    /// path, which decides every other case.
    #[inline]
    pub(crate) fn try_push_one(
        &self,
        limit: usize,
        priority: Priority,
        make: impl FnOnce() -> Message<T>,
    ) -> bool {
        let put = &*self.put;
        // Acquire: as in `Ring::storage`.
        let base = put.storage.load(Ordering::Acquire);
        if base.is_null() {
            return false;
        }
        let t = put.tail.load(Ordering::Relaxed);
        // Relaxed: a lower bound on `head` (see `PutSide::head_seen`).
        let h = put.head_seen.load(Ordering::Relaxed);
        // One comparison covers the sealed bit in `t` and a stale `t` below
        // `h` (both wrap to a huge difference): the general path sorts them
        // out. Otherwise `t - h + 1 ≤ limit / 2`, as `reserve_within` asks of
        // its cached view.
        if t.wrapping_sub(h) >= limit.min(put.geo.cap as usize) / 2 {
            return false;
        }
        if put.tail.compare_exchange_weak(t, t + 1, Ordering::AcqRel, Ordering::Relaxed).is_err() {
            return false;
        }
        let run = Run {
            pos: t,
            n: 1,
            depth: 0,
            sealed: false,
            store: self.view(put.geo, base),
            _msgs: PhantomData,
        };
        run.write_as(0, make(), priority);
        true
    }

    /// Seals the ring: no position can be reserved after this returns (see
    /// "Sealing"). Idempotent. Returns the end of what was reserved before.
    pub(crate) fn seal(&self) -> usize {
        // AcqRel: ordered after every reservation that precedes it in
        // `tail`'s modification order, and the storage they installed.
        self.put.tail.fetch_or(SEALED, Ordering::AcqRel) & !SEALED
    }

    /// Takes up to `max` messages of a sealed ring in order, waiting for
    /// positions reserved before the seal but not yet written; returns how
    /// many (0: nothing is left, ever).
    pub(crate) fn take_sealed(&self, max: usize, mut out: impl FnMut(Message<T>)) -> usize {
        let end = self.seal();
        let backoff = Backoff::new();
        loop {
            let n = self.take(max, &mut out);
            if n > 0 || self.take.head.load(Ordering::Acquire) >= end {
                return n;
            }
            // Reserved before the seal, not written yet.
            backoff.snooze();
        }
    }

    /// Pushes one message; hands it back when the ring is full (or sealed).
    #[cfg(test)]
    pub(crate) fn push(&self, m: Message<T>) -> Result<(), Message<T>> {
        let run = self.reserve(1);
        if run.n == 0 {
            return Err(m);
        }
        run.write(0, m);
        Ok(())
    }

    /// Takes the claimed position `pos`'s pointer out of its slot and frees
    /// the slot; the caller now owns the reference behind the pointer (or the
    /// hole, for a null one: see [`Run::write_hole`]).
    #[inline]
    fn take_claimed_raw(&self, store: Storage<'_>, pos: usize) -> *mut () {
        // A plain load: the stamp, not the pointer, says whether the slot is
        // full, and the claim made this thread its only reader.
        let p = store.slot(pos).ptr.load(Ordering::Relaxed);
        // Release: the next lap's writer, which waits for this stamp, writes
        // only after the pointer was read.
        store.stamp(pos).store(stamp(pos + self.size()), Ordering::Release);
        untag(p)
    }

    /// Takes the claimed position `pos` out of its slot and frees the slot.
    #[inline]
    fn take_claimed(&self, store: Storage<'_>, pos: usize) -> Message<T> {
        let p = self.take_claimed_raw(store, pos);
        // SAFETY: the stamp said the slot held position `pos` (a pointer from
        // `Counted::into_raw` in `Run::write`: holes are written only into a
        // sequencer's log, which is read with `take_entries`), and the CAS on
        // `head` that claimed `pos` made this thread the only one to take it.
        Message { inner: unsafe { Counted::from_raw(p) } }
    }

    /// Takes the oldest message to make room, whatever its priority. `None`
    /// when the ring is empty.
    #[cfg(test)]
    pub(crate) fn displace(&self) -> Option<Message<T>> {
        match self.displace_up_to(Priority::Urgent) {
            Displace::Taken(m) => Some(m),
            _ => None,
        }
    }

    /// Takes the oldest message to make room, if its priority is at most
    /// `max` (see "Priorities in the slots").
    pub(crate) fn displace_up_to(&self, max: Priority) -> Displace<T> {
        // No storage: nothing was ever reserved.
        let Some(store) = self.storage() else {
            return Displace::Empty;
        };
        let backoff = Backoff::new();
        loop {
            let h = self.take.head.load(Ordering::Acquire);
            if h >= self.put.tail.load(Ordering::Acquire) & !SEALED {
                return Displace::Empty;
            }
            if store.stamp(h).load(Ordering::Acquire) != stamp(h + 1) {
                // Reserved but not written yet, or already taken (then `head`
                // has moved): look again.
                backoff.snooze();
                continue;
            }
            // The slot's priority, read without taking the message: only the
            // pointer's value, never what it points to. If position `h` is
            // taken meanwhile, the CAS below fails and we look again; if it
            // succeeds, the slot still held position `h` when it was read.
            let p = store.slot(h).ptr.load(Ordering::Relaxed);
            if store.stamp(h).load(Ordering::Acquire) != stamp(h + 1) {
                continue;
            }
            if priority_of(p) > max {
                return Displace::Outranked;
            }
            if self.take.head.compare_exchange(h, h + 1, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
                return Displace::Taken(self.take_claimed(store, h));
            }
        }
    }

    /// Pushes `m` (marked `priority`), displacing the oldest messages of at
    /// most that priority until it fits.
    pub(crate) fn force_push_as(&self, m: Message<T>, priority: Priority) -> Forced {
        let mut displaced = 0;
        loop {
            let run = self.reserve(1);
            if run.n == 1 {
                run.write_as(0, m, priority);
                return Forced::In(displaced);
            }
            if run.sealed {
                return Forced::Sealed(displaced);
            }
            match self.displace_up_to(priority) {
                Displace::Taken(old) => {
                    drop(old);
                    displaced += 1;
                }
                Displace::Outranked => return Forced::Outranked(displaced),
                Displace::Empty => {}
            }
        }
    }

    /// [`Ring::force_push_as`] for an `Urgent` message, which displaces any:
    /// how many it displaced, or that count as an error when the ring is
    /// sealed.
    #[cfg(test)]
    pub(crate) fn force_push(&self, m: Message<T>) -> Result<usize, usize> {
        match self.force_push_as(m, Priority::Urgent) {
            Forced::In(n) => Ok(n),
            Forced::Sealed(n) | Forced::Outranked(n) => Err(n),
        }
    }

    /// Takes up to `max` ready messages in order, handing each to `out`;
    /// returns how many. Called by the ring's one receiver.
    #[inline]
    pub(crate) fn take(&self, max: usize, mut out: impl FnMut(Message<T>)) -> usize {
        self.take_with(max, |store, pos| out(self.take_claimed(store, pos)))
    }

    /// [`Ring::take`] for a ring that may hold holes (a sequencer's log): a
    /// hole comes out as `None`.
    pub(crate) fn take_entries(&self, max: usize, mut out: impl FnMut(Option<Message<T>>)) -> usize {
        self.take_with(max, |store, pos| {
            let p = self.take_claimed_raw(store, pos);
            out((!p.is_null()).then(|| {
                // SAFETY: a non-null pointer in a claimed slot came from
                // `Counted::into_raw` in `Run::write`, and the claim made this
                // thread its only taker.
                Message { inner: unsafe { Counted::from_raw(p) } }
            }))
        })
    }

    /// Whether the oldest position is written and not taken: what the one
    /// receiver would take next.
    pub(crate) fn has_ready(&self) -> bool {
        let Some(store) = self.taker_storage() else {
            return false;
        };
        let h = self.take.head.load(Ordering::Acquire);
        store.stamp(h).load(Ordering::Acquire) == stamp(h + 1)
    }

    /// Takes up to `max` ready messages from position `from`, none at or past
    /// `bound()` (read after the slots are seen ready: see `inbox.rs`, "Lag
    /// at its position"). `None` if `head` is no longer `from` (a displacer
    /// took the oldest). Called by the ring's one receiver.
    #[inline]
    pub(crate) fn take_from(
        &self,
        from: usize,
        max: usize,
        bound: impl FnOnce() -> usize,
        mut out: impl FnMut(Message<T>),
    ) -> Option<usize> {
        let Some(store) = self.taker_storage() else {
            return Some(0);
        };
        let max = max.min(self.capacity());
        let mut n = 0;
        // Acquire: pairs with the writer's Release of the stamp.
        while n < max && store.stamp(from + n).load(Ordering::Acquire) == stamp(from + n + 1) {
            n += 1;
        }
        n = n.min(bound().saturating_sub(from));
        if n == 0 {
            return (self.take.head.load(Ordering::Acquire) == from).then_some(0);
        }
        self.take.head.compare_exchange(from, from + n, Ordering::AcqRel, Ordering::Relaxed).ok()?;
        for pos in from..from + n {
            out(self.take_claimed(store, pos));
        }
        Some(n)
    }

    /// [`Ring::take_from`] for one message: position `from` if it is written
    /// and below `bound()` (read after its stamp), claimed with one CAS on
    /// `head`. `None` when it is not ready, not below the bound, or `head` is
    /// no longer `from`. Called by the ring's one receiver.
    #[inline]
    pub(crate) fn take_one_at(&self, from: usize, bound: impl FnOnce() -> usize) -> Option<Message<T>> {
        let store = self.taker_storage()?;
        // Acquire: pairs with the writer's Release of the stamp.
        if store.stamp(from).load(Ordering::Acquire) != stamp(from + 1) || bound() <= from {
            return None;
        }
        self.take.head.compare_exchange(from, from + 1, Ordering::AcqRel, Ordering::Relaxed).ok()?;
        Some(self.take_claimed(store, from))
    }

    /// Claims up to `max` ready positions from `head` with one CAS and hands
    /// each claimed position to `take` (which must take it out of its slot).
    #[inline]
    fn take_with(&self, max: usize, mut take: impl FnMut(Storage<'_>, usize)) -> usize {
        // No storage: nothing was ever reserved, so nothing is ready.
        let Some(store) = self.taker_storage() else {
            return 0;
        };
        let max = max.min(self.capacity());
        loop {
            let h = self.take.head.load(Ordering::Acquire);
            let mut n = 0;
            // Acquire: pairs with the writer's Release of the stamp.
            while n < max && store.stamp(h + n).load(Ordering::Acquire) == stamp(h + n + 1) {
                n += 1;
            }
            if n == 0 {
                return 0;
            }
            if self.take.head.compare_exchange(h, h + n, Ordering::AcqRel, Ordering::Relaxed).is_err() {
                // A displacer took the oldest: count again.
                continue;
            }
            for pos in h..h + n {
                take(store, pos);
            }
            return n;
        }
    }

    /// Takes one message.
    #[cfg(test)]
    pub(crate) fn pop(&self) -> Option<Message<T>> {
        let mut got = None;
        self.take(1, |m| got = Some(m));
        got
    }
}

/// Drops a storage's stamps and slots in place and frees it.
///
/// # Safety
///
/// `base` came from `Ring::install` for a ring of `size` slots, and no other
/// thread can reach it any more (never published, or the ring is being
/// dropped). The messages its slots hold are not dropped here.
unsafe fn free_storage(base: *mut u8, size: usize) {
    let (layout, slots_at) = storage_layout(size);
    // SAFETY: per the contract, the allocation holds `size` initialised stamps
    // and `size` initialised slots at `slots_at` (`storage_layout`), and no one
    // else uses them. Atomics need no drop, but dropping them in place keeps
    // this correct whatever the shim's types are.
    unsafe {
        ptr::drop_in_place(ptr::slice_from_raw_parts_mut(base.cast::<AtomicU32>(), size));
        ptr::drop_in_place(ptr::slice_from_raw_parts_mut(base.add(slots_at).cast::<Slot>(), size));
        dealloc(base, layout);
    }
}

impl<T, P, R> Drop for Ring<T, P, R> {
    fn drop(&mut self) {
        // No storage: nothing was ever reserved, nothing to free.
        let Some(store) = self.storage() else {
            return;
        };
        let head = self.take.head.load(Ordering::Acquire);
        let tail = self.put.tail.load(Ordering::Acquire) & !SEALED;
        for pos in head..tail {
            if store.stamp(pos).load(Ordering::Acquire) == stamp(pos + 1) {
                let p = untag(store.slot(pos).ptr.load(Ordering::Relaxed));
                if p.is_null() {
                    continue; // a hole
                }
                // SAFETY: `&mut self`: no other thread holds the ring, so no
                // write is in flight; the stamp says the slot holds position
                // `pos`, put there by `Run::write` and not taken since.
                drop(unsafe { Counted::<Envelope<T>>::from_raw(p) });
            }
        }
        let base = self.put.storage.load(Ordering::Relaxed);
        // SAFETY: `base` was installed by `Ring::install` for this ring's size;
        // `&mut self`: no other thread holds the ring, and no `Storage` view
        // outlives a borrow of it. The messages left were dropped above.
        unsafe { free_storage(base, self.size()) };
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    //! Single- and multi-thread checks of the ring alone; small enough for miri
    //! (`cargo +nightly miri test -p fanout-core --lib ring`).

    use super::*;
    use crate::message::{Meta, Origin, Priority};

    fn m(v: u64) -> Message<u64> {
        Message::new(None, Origin::Broadcast, Meta { seq: v, epoch: 0 }, Priority::Normal, v)
    }

    fn take_all(r: &Ring<u64>) -> Vec<u64> {
        let mut v = Vec::new();
        while r.take(usize::MAX, |x| v.push(*x.payload())) > 0 {}
        v
    }

    #[test]
    fn fifo_capacity_and_wrap() {
        for cap in [1usize, 2, 3, 4, 7, 8] {
            let r = Ring::new(cap);
            let mut next = 0;
            let mut expect = 0;
            for _round in 0..5 {
                while r.push(m(next)).is_ok() {
                    next += 1;
                }
                assert_eq!(r.len(), cap);
                for v in take_all(&r) {
                    assert_eq!(v, expect);
                    expect += 1;
                }
                assert_eq!(r.len(), 0);
            }
            assert_eq!(expect, next);
        }
    }

    #[test]
    fn stamps_survive_the_32_bit_wrap() {
        let r = Ring::<u64>::starting_at(4, (1usize << 32) - 8);
        let mut next = 0;
        let mut expect = 0;
        for _ in 0..6 {
            while r.push(m(next)).is_ok() {
                next += 1;
            }
            assert_eq!(r.force_push(m(next)).ok().unwrap(), 1);
            next += 1;
            expect += 1; // the oldest was displaced
            for v in take_all(&r) {
                assert_eq!(v, expect);
                expect += 1;
            }
        }
        assert_eq!(expect, next);
    }

    #[test]
    fn reserve_is_bounded_by_room() {
        let r = Ring::<u64>::new(5);
        let (a, b, c) = (r.reserve(3), r.reserve(3), r.reserve(3));
        assert_eq!((a.n, b.n, c.n), (3, 2, 0));
        assert_eq!((a.pos, b.pos), (0, 3));
        for run in [&a, &b] {
            for i in 0..run.n {
                run.write(i, m((run.pos + i) as u64));
            }
        }
        assert_eq!(take_all(&r), vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn displace_and_force_push_keep_the_freshest() {
        let r = Ring::new(3);
        for v in 0..3 {
            r.push(m(v)).unwrap();
        }
        assert_eq!(r.force_push(m(3)).ok().unwrap(), 1);
        assert_eq!(*r.displace().unwrap().payload(), 1);
        assert_eq!(take_all(&r), vec![2, 3]);
        assert!(r.displace().is_none());
        assert_eq!(r.force_push(m(9)).ok().unwrap(), 0);
        assert_eq!(take_all(&r), vec![9]);
    }

    #[test]
    fn a_batch_takes_what_is_ready() {
        let r = Ring::new(4);
        let run = r.reserve(4);
        assert_eq!(run.n, 4);
        run.write(0, m(0));
        run.write(2, m(2)); // position 1 reserved, not written yet
        assert_eq!(r.take(100, drop), 1, "stops at the first slot still being written");
        run.write(1, m(1));
        run.write(3, m(3));
        let mut got = Vec::new();
        assert_eq!(r.take(100, |x| got.push(*x.payload())), 3);
        assert_eq!(got, vec![1, 2, 3]);
    }

    #[test]
    fn drop_frees_what_is_left() {
        let msg = m(1);
        let r = Ring::new(4);
        r.push(msg.clone()).unwrap();
        r.push(msg.clone()).unwrap();
        drop(r);
        assert_eq!(msg.inner.count(), 1);
    }

    /// The installed storage's address (null when none).
    fn base(r: &Ring<u64>) -> *mut u8 {
        r.put.storage.load(Ordering::Relaxed)
    }

    #[test]
    fn a_new_ring_has_no_storage_until_the_first_push() {
        let r = Ring::new(256);
        assert!(base(&r).is_null());
        // Readers see an empty ring and allocate nothing.
        assert_eq!(r.len(), 0);
        assert!(r.pop().is_none());
        assert_eq!(r.take(64, drop), 0);
        assert!(r.displace().is_none());
        assert!(base(&r).is_null(), "reading does not allocate");
        r.push(m(0)).unwrap();
        let installed = base(&r);
        assert!(!installed.is_null(), "the first push installs the storage");
        let mut next = 1;
        for _lap in 0..3 {
            while r.push(m(next)).is_ok() {
                next += 1;
            }
            assert_eq!(take_all(&r).len(), 256);
            assert_eq!(base(&r), installed, "installed once, never replaced");
        }
    }

    #[test]
    fn a_lost_install_frees_its_storage_and_uses_the_winners() {
        let r = Ring::<u64>::new(4);
        let first = r.install(0).stamps;
        // A second install finds the storage installed: its CAS fails, it frees
        // its own (a leak here fails under miri) and hands back the winner's.
        let second = r.install(0).stamps;
        assert_eq!(first, second);
        assert_eq!(base(&r).cast_const().cast::<AtomicU32>(), first);
        r.push(m(1)).unwrap();
        assert_eq!(take_all(&r), vec![1]);
    }

    #[test]
    fn racing_first_pushes_install_one_storage() {
        let rounds = if cfg!(miri) { 4 } else { 200 };
        for _ in 0..rounds {
            let r = std::sync::Arc::new(Ring::new(4));
            let go = std::sync::Arc::new(std::sync::Barrier::new(2));
            let pushers: Vec<_> = (0..2u64)
                .map(|k| {
                    let (r, go) = (r.clone(), go.clone());
                    std::thread::spawn(move || {
                        go.wait();
                        r.push(m(k)).is_ok()
                    })
                })
                .collect();
            for p in pushers {
                assert!(p.join().unwrap(), "both first pushes succeed");
            }
            let mut got = take_all(&r);
            got.sort();
            assert_eq!(got, vec![0, 1], "both messages in the one storage installed");
        }
    }

    #[test]
    fn drop_of_a_never_used_ring() {
        let r = Ring::<u64>::new(4);
        assert!(base(&r).is_null());
        drop(r);
        // Used only by readers: still nothing to free.
        let r = Ring::<u64>::new(1 << 24);
        assert_eq!(r.take(usize::MAX, drop), 0);
        drop(r);
    }

    #[test]
    fn producers_displacers_and_a_receiver() {
        let n: u64 = if cfg!(miri) { 40 } else { 20_000 };
        let r = std::sync::Arc::new(Ring::new(8));
        let producers: Vec<_> = (0..2u64)
            .map(|k| {
                let r = r.clone();
                std::thread::spawn(move || {
                    let mut displaced = 0;
                    for i in 0..n {
                        let v = k << 32 | i;
                        if i % 3 == 0 {
                            displaced += r.force_push(m(v)).ok().unwrap();
                        } else {
                            while r.push(m(v)).is_err() {
                                std::thread::yield_now();
                            }
                        }
                    }
                    displaced
                })
            })
            .collect();
        let mut last = [None::<u64>; 2];
        let mut got = 0usize;
        let mut done = false;
        while !done {
            done = producers.iter().all(|p| p.is_finished());
            r.take(64, |x| {
                let v = *x.payload();
                let k = (v >> 32) as usize;
                let i = v & 0xffff_ffff;
                assert!(last[k].is_none_or(|l| i > l), "per-producer order");
                last[k] = Some(i);
                got += 1;
            });
        }
        // Join before the last take: `is_finished` orders nothing, so a
        // finished producer's last write may not be visible until the join
        // (miri found the interleaving: 79 of 80).
        let displaced: usize = producers.into_iter().map(|p| p.join().unwrap()).sum();
        got += take_all(&r).len();
        assert_eq!(got + displaced, 2 * n as usize, "every message taken or displaced, once");
    }
}
