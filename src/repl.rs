//! Replacement policies (SPEC §8.4): NONE, and the buffered LRU.
//!
//! This module owns the LRU list (threaded through the links stored in
//! front of each entry record), the rings of "was used" and "was inserted"
//! marks in front of it, and the meaning of each entry's policy slot word.
//! It never takes or drops an entry reference, never touches the index or
//! the heap, never allocates after construction, and never calls out of
//! the crate while it holds its mutex.
//!
//! # Buffered LRU
//!
//! The list (head = least recently used) is protected by one mutex. Gets
//! and puts do not take it in the common case: they flip the entry's slot
//! word and push the entry onto a bounded lock-free ring. Whoever holds the
//! mutex *drains*: it pops at most one ring's worth of marks from each ring
//! (so nobody spins forever while others keep pushing) and, for each mark,
//! appends the entry to the list or moves it to the tail. Drains happen
//! when a push finds its ring full (that ring only), when an eviction's
//! first try fails or the list is empty, when a by-key removal needs it,
//! and at teardown (every ring). Recency is therefore applied lazily: a
//! queued entry cannot be evicted until a drain makes it idle again, and an
//! entry used again while still queued is not queued twice, so after a
//! drain it is ordered by its *first* use since the previous drain.
//!
//! There are [`RINGS`] rings of [`RING_CAPACITY`] marks (4096 in all, as
//! the original's single ring), and each thread pushes into the ring of
//! its ticket. With one shared ring every push from every thread hits the
//! same tail, and a drainer and the pushers that refill the slots it frees
//! pass cache lines back and forth for every mark; with a ring per thread
//! the pushes stay in the pusher's cache, and a thread whose ring is full
//! drains records it touched itself. The price is that marks of different
//! threads are applied in ring order rather than in time order, which only
//! changes the order among uses that were concurrent anyway: a single
//! thread's marks always apply in the order it made them. The rings are
//! [`MarkRing`]s, which, unlike a general MPMC queue, use their single
//! consumer (the mutex holder) to pop without atomic read-modify-writes;
//! see the benchmark in `bench` for the figures.
//!
//! Insertions go through the ring too (so puts from several threads do not
//! serialise on the mutex): a new entry is *pending* until a drain links it.
//! The drain applies marks in ring order, so an insertion counts as a use
//! at the moment it was made; this keeps every ordering rule of SPEC §8.4
//! and §12 item 6 (a used entry moves behind unused ones). A pending entry
//! that is used before it is linked is queued a second time
//! ([`SLOT_PENDING_USED`]) so that the use is not lost: inserting A, B, C
//! and then using A, B, A makes the next three victims C, A, B, as in the
//! original.
//!
//! # Slot states
//!
//! | slot | linked | marks in the rings | who changes it |
//! |---|---|---|---|
//! | `UNREGISTERED` | no | 0 | `insert` (CAS) |
//! | `PENDING` | no | 1 (insertion) | `touch` (CAS), the mutex holder (CAS) |
//! | `PENDING_USED` | no | 2 | the mutex holder |
//! | `IDLE` | yes | 0 | `touch` (CAS), the mutex holder (CAS) |
//! | `QUEUED` | yes | 1 | the mutex holder |
//! | `REMOVED` | no | 0 | nobody (the entry left the policy) |
//!
//! (During a drain a `PENDING_USED` entry whose first mark was applied is
//! linked and `QUEUED` with one mark left.) Only the states `PENDING` and
//! `IDLE` are ever changed by a thread that does not hold the mutex, and
//! only by compare-and-swap; so everything the mutex holder reads in any
//! other state stays put until it changes it itself.
//!
//! # References
//!
//! The policy holds no reference of its own. An entry is registered after
//! the cache indexed it, and the cache only removes it from the index after
//! the policy unlinked it ([`Repl::evict_victim`] or [`Repl::remove`]),
//! which needs the slot `IDLE` (or a mark popped from a ring). So while an
//! entry is linked or has a mark in a ring, the index's reference keeps it
//! alive, and every entry leaves the policy fully unlinked and out of the
//! rings.
//!
//! # Evicting
//!
//! A victim is claimed (`Entry::try_claim`) while the mutex is held and
//! before it is unlinked. A by-key eviction that owns the claim therefore
//! makes the LRU skip the entry and leave it linked, and when that eviction
//! then fails (busy), the entry stays evictable (SPEC §14 #12).
//!
//! A put that needs room for `n` bytes takes, under one hold of the mutex,
//! the victim and then the idle entries behind it at the head of the list,
//! as many as their values' extents need to cover `n`
//! ([`Repl::evict_victims`], at most [`MAX_VICTIMS`]). On one thread, one
//! eviction after another would take the same entries in the same order.
//! Two threads that evict at once then pass the mutex, the list's head and
//! its records between their cores once per put instead of once per
//! victim. (With an `on_evict` callback, which may put and evict itself,
//! the cache takes one victim at a time.)
//!
//! Puts of several threads that evict in turn take victims *ahead*: when
//! the thread evicting now is one of the last few that did
//! ([`RECENT_EVICTORS`]) but not the very last, its batch covers a few
//! more kilobytes than its put needs, and the cache keeps their extents in
//! the thread's spare for its next puts, which then evict nothing. Each
//! hold of the mutex, and each pass of the list's head from core to core,
//! then serves several puts (SPEC §4 allows a put under concurrency to
//! evict more than it needs). A thread that evicts alone, or takes over
//! from threads that stopped, takes exactly what it needs, as above.

use std::cell::Cell;
use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};

use crate::config::Policy;
use crate::entry::{Entry, EntryPtr, SLOT_IDLE, SLOT_QUEUED, SLOT_REMOVED, SLOT_UNREGISTERED};
use crate::error::{Error, Result};
use crate::sync::Mutex;
use crate::valgrind;

/// Policy slot: registered, waiting in a ring to be linked.
pub(crate) const SLOT_PENDING: u8 = 4;
/// Policy slot: registered and used before it was linked; it has two marks
/// in the rings (the insertion and the use).
pub(crate) const SLOT_PENDING_USED: u8 = 5;

/// Rings in front of the LRU list. Each thread pushes into one of them
/// (chosen by [`ring_ticket`]), so that threads do not contend on one
/// ring's tail, nor follow a drainer through the same cache lines.
pub(crate) const RINGS: usize = 8;

/// Slots of each ring. A ring is drained once half full, so that a thread
/// that finds the mutex taken can go on pushing into the other half rather
/// than wait.
pub(crate) const RING_CAPACITY: usize = 1024;

/// While a half-full ring cannot be drained (the mutex is taken), its
/// pusher tries again every this many pushes, not at every push, which
/// would pull the mutex's cache line away from its holder each time.
const DRAIN_RETRY: usize = 32;

/// Source of per-thread ring tickets.
static NEXT_TICKET: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's ring ticket; `usize::MAX` until first needed. A
    /// constant-initialised `Cell` has no destructor, so using it neither
    /// allocates nor registers anything with the thread.
    static RING_TICKET: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// A number that stays the same for the calling thread and differs
/// between the first threads that ask, which then use distinct rings.
fn ring_ticket() -> usize {
    // `try_with` only fails for a value already destroyed, which a
    // destructor-less `Cell` never is; ring 0 would do anyway.
    RING_TICKET
        .try_with(|ticket| {
            let mut t = ticket.get();
            if t == usize::MAX {
                // Relaxed: only uniqueness matters, which a RMW gives.
                t = NEXT_TICKET.fetch_add(1, Ordering::Relaxed) & (usize::MAX >> 1);
                ticket.set(t);
            }
            t
        })
        .unwrap_or(0)
}

/// A bounded ring of marks: any number of producers (gets and puts, lock
/// free), one consumer at a time (the holder of the LRU mutex).
///
/// A producer claims an index with a CAS on `tail`, then publishes the
/// entry in that slot; the consumer takes published entries in index
/// order, clears their slots and then advances `head`, which is what frees
/// the slots for producers. The consumer stops at a slot that is claimed
/// but not yet published (it never waits for a producer while it holds the
/// mutex); that mark is applied by a later drain.
///
/// Only 8-byte alignment is asked of the allocator (SPEC §12 item 3):
/// padding, not alignment, keeps `tail` (written by producers), `head`
/// (written by the consumer) and the neighbouring rings' words on separate
/// cache lines (`repr(C)` keeps the fields in this order).
#[repr(C)]
struct MarkRing {
    /// Next index to claim.
    tail: AtomicUsize,
    _tail_line: [usize; 15],
    /// Next index to consume; `tail - head` marks are claimed.
    head: AtomicUsize,
    /// Null when free (or claimed and not yet published).
    slots: Box<[AtomicPtr<Entry>]>,
    /// `slots.len() - 1`; the length is a power of two.
    mask: usize,
    _head_line: [usize; 12],
}

impl MarkRing {
    /// A ring of `capacity` slots, rounded up to a power of two.
    fn new(capacity: usize) -> Result<MarkRing> {
        let capacity = capacity.max(1).next_power_of_two();
        let mut slots = Vec::new();
        slots
            .try_reserve_exact(capacity)
            .map_err(|_| Error::OutOfMemory)?;
        slots.extend((0..capacity).map(|_| AtomicPtr::new(ptr::null_mut())));
        Ok(MarkRing {
            tail: AtomicUsize::new(0),
            _tail_line: [0; 15],
            head: AtomicUsize::new(0),
            slots: slots.into_boxed_slice(),
            mask: capacity - 1,
            _head_line: [0; 12],
        })
    }

    fn capacity(&self) -> usize {
        self.mask + 1
    }

    /// Marks claimed and not yet consumed (tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.tail
            .load(Ordering::Relaxed)
            .wrapping_sub(self.head.load(Ordering::Relaxed))
    }

    /// Adds a mark and says how many marks the ring held with it, as far
    /// as this push could tell (the consumer may have taken some since);
    /// gives the mark back when the ring is full.
    fn push(&self, mark: EntryPtr) -> Result<usize, EntryPtr> {
        // Relaxed: `tail` only hands out indices; the CAS makes each one
        // unique.
        let mut tail = self.tail.load(Ordering::Relaxed);
        let filled = loop {
            // Acquire: pairs with the consumer's release of `head`, so its
            // clearing of the slot we may get happens before our store.
            let head = self.head.load(Ordering::Acquire);
            let filled = tail.wrapping_sub(head);
            if filled >= self.capacity() {
                return Err(mark);
            }
            match self.tail.compare_exchange_weak(
                tail,
                tail.wrapping_add(1),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => break filled + 1,
                Err(actual) => tail = actual,
            }
        };
        chaos::point();
        // For valgrind's thread checkers, the edge of the release below,
        // on the ring as a whole: one tag per ring rather than per slot
        // keeps drd from holding on to a history for each of thousands
        // of slots.
        valgrind::happens_before(self);
        // Release: the consumer that sees the entry sees everything this
        // thread did before, the slot transition included.
        self.slots[tail & self.mask].store(mark.as_ptr(), Ordering::Release);
        Ok(filled)
    }

    /// Takes published marks in order into `out`, up to its length;
    /// returns how many.
    ///
    /// # Safety
    /// The caller holds the LRU mutex (or `&mut` of the policy): one
    /// consumer at a time.
    unsafe fn pop_into(&self, out: &mut [Option<EntryPtr>]) -> usize {
        // Relaxed: only the consumer writes `head`.
        let head = self.head.load(Ordering::Relaxed);
        let mut taken = 0;
        while taken < out.len() {
            let slot = &self.slots[head.wrapping_add(taken) & self.mask];
            // Acquire: pairs with the producer's release of the slot.
            let mark = slot.load(Ordering::Acquire);
            if mark.is_null() {
                // Empty, or claimed and not yet published.
                break;
            }
            valgrind::happens_after(self);
            // Relaxed: ordered before the producers' next use of the slot
            // by the release of `head` below.
            slot.store(ptr::null_mut(), Ordering::Relaxed);
            // SAFETY: producers only store pointers of live entries.
            out[taken] = Some(unsafe { EntryPtr::from_raw(mark) });
            taken += 1;
        }
        if taken > 0 {
            // Release: frees the slots just cleared (see `push`).
            self.head.store(head.wrapping_add(taken), Ordering::Release);
        }
        taken
    }

    /// Takes the oldest published mark.
    ///
    /// # Safety
    /// As for [`MarkRing::pop_into`].
    unsafe fn pop(&self) -> Option<EntryPtr> {
        let mut one = [None];
        // SAFETY: as the caller promises.
        unsafe { self.pop_into(&mut one) };
        one[0]
    }

    /// The published marks, oldest first, and the number of claimed slots
    /// not yet published (validation).
    ///
    /// # Safety
    /// As for [`MarkRing::pop_into`].
    unsafe fn marks(&self) -> (Vec<EntryPtr>, usize) {
        // Relaxed: the consumer's own word, and at quiescent points the
        // joins ordered every producer.
        let head = self.head.load(Ordering::Relaxed);
        let tail = self.tail.load(Ordering::Acquire);
        let mut marks = Vec::new();
        let mut unpublished = 0;
        for i in 0..tail.wrapping_sub(head) {
            let mark = self.slots[head.wrapping_add(i) & self.mask].load(Ordering::Acquire);
            if mark.is_null() {
                unpublished += 1;
            } else {
                // SAFETY: producers only store pointers of live entries.
                marks.push(unsafe { EntryPtr::from_raw(mark) });
            }
        }
        (marks, unpublished)
    }
}

/// The replacement policy of one cache.
// The cache calls every item of this contract; until it exists, the lint
// would flag them all.
#[allow(dead_code)]
pub(crate) struct Repl {
    /// `None` for policy NONE, which has no structure at all.
    lru: Option<Lru>,
}

/// The buffered LRU.
#[repr(C)]
struct Lru {
    /// Entries with a pending insertion or use. Every entry in them has a
    /// slot that says so (see the module docs), which keeps it alive.
    rings: Box<[MarkRing]>,
    /// How many marks one drain applies at most from each ring (its
    /// capacity; smaller only in tests, to reach the paths that
    /// concurrency reaches).
    drain_batch: usize,
    /// A push that leaves this many marks in its ring drains it (half the
    /// capacity).
    drain_at: usize,
    /// Keeps the fields above, which every get reads, off the mutex's
    /// cache line, which every drain writes.
    _read_mostly: [usize; 12],
    list: Mutex<List>,
    /// `NEXT_KNOWN` plus the locator of the list's head after the last
    /// eviction (0: none), written under the mutex, read without it: the
    /// next put can start fetching where that victim sits in the index.
    /// One word of its own allocation, whose address stays put when the
    /// LRU moves (valgrind's thread checkers are told it is atomic): the
    /// word at [`Lru::next_at`], which starts a cache line of the
    /// allocation that no other word in use shares, so that its readers
    /// miss only when an eviction wrote it.
    next_victim: Box<[AtomicU64]>,
    /// Index of the word of `next_victim` in use.
    next_at: usize,
}

/// Words allocated for [`Lru::next_victim`]: two cache lines, of which
/// one starts within the first line whatever the allocation's alignment.
const NEXT_WORDS: usize = 16;

/// Flag of [`Lru::next_victim`]: a locator is there.
const NEXT_KNOWN: u64 = 1 << 32;

/// The doubly-linked list through the entries' links; head = least
/// recently used. Only reachable through the LRU mutex, so `&mut List`
/// means the caller holds it, and with it the right to every link.
struct List {
    head: *const Entry,
    tail: *const Entry,
    len: usize,
    /// The ring the next drain starts with: rotating it keeps one ring's
    /// marks from always being applied after the others'.
    next_ring: usize,
    /// Ring tickets of the threads whose puts evicted last, most recent
    /// first, each once ([`NO_EVICTOR`] fills the rest); see
    /// [`List::note_evictor`].
    evictors: [usize; RECENT_EVICTORS],
}

/// Threads [`List::evictors`] remembers.
const RECENT_EVICTORS: usize = 4;

/// An empty place in [`List::evictors`]; no ticket has this value.
const NO_EVICTOR: usize = usize::MAX;

// SAFETY: the list only points to entries, which are `Sync`; it is only
// reached through the mutex, so one thread at a time uses the pointers.
unsafe impl Send for List {}

/// The entry's successor.
///
/// # Safety
/// `e` is alive and has links; the caller holds the LRU mutex.
unsafe fn next_of(e: *const Entry) -> *const Entry {
    // SAFETY: as the caller promises.
    unsafe { *(*e).links().next.get() }
}

/// The entry's predecessor.
///
/// # Safety
/// As for [`next_of`].
unsafe fn prev_of(e: *const Entry) -> *const Entry {
    // SAFETY: as the caller promises.
    unsafe { *(*e).links().prev.get() }
}

/// # Safety
/// As for [`next_of`].
unsafe fn set_next(e: *const Entry, next: *const Entry) {
    // SAFETY: as the caller promises; the mutex makes the write exclusive.
    unsafe { *(*e).links().next.get() = next }
}

/// # Safety
/// As for [`next_of`].
unsafe fn set_prev(e: *const Entry, prev: *const Entry) {
    // SAFETY: as the caller promises; the mutex makes the write exclusive.
    unsafe { *(*e).links().prev.get() = prev }
}

impl List {
    const fn new() -> List {
        List {
            head: ptr::null(),
            tail: ptr::null(),
            len: 0,
            next_ring: 0,
            evictors: [NO_EVICTOR; RECENT_EVICTORS],
        }
    }

    /// Notes that the thread of ring ticket `me` evicts now, and tells
    /// whether puts of several threads are evicting in turn: whether `me`
    /// was one of the recent evictors but not the last. A thread that
    /// evicts alone, or takes over from threads that stopped, is never
    /// told so.
    fn note_evictor(&mut self, me: usize) -> bool {
        match self.evictors.iter().position(|&t| t == me) {
            Some(0) => false,
            Some(at) => {
                self.evictors[..=at].rotate_right(1);
                true
            }
            None => {
                self.evictors.rotate_right(1);
                self.evictors[0] = me;
                false
            }
        }
    }

    /// Whether `e` is in the list (unlinked entries have null links).
    ///
    /// # Safety
    /// `e` is alive and has links.
    unsafe fn contains(&self, e: *const Entry) -> bool {
        // SAFETY: as the caller promises; `&self` comes from the mutex.
        self.head == e || !unsafe { prev_of(e) }.is_null()
    }

    /// Appends an unlinked entry at the tail.
    ///
    /// # Safety
    /// `e` is alive, has links and is not in the list.
    unsafe fn push_back(&mut self, e: *const Entry) {
        // SAFETY: `e` and the tail (a linked entry, alive by the module's
        // reference rule) have links; `&mut self` means we hold the mutex.
        unsafe {
            set_prev(e, self.tail);
            set_next(e, ptr::null());
            if self.tail.is_null() {
                self.head = e;
            } else {
                set_next(self.tail, e);
            }
        }
        self.tail = e;
        self.len += 1;
    }

    /// Takes `e` out of the list and clears its links.
    ///
    /// # Safety
    /// `e` is alive and in the list.
    unsafe fn unlink(&mut self, e: *const Entry) {
        // SAFETY: `e` and its neighbours are linked, hence alive and with
        // links; `&mut self` means we hold the mutex.
        unsafe {
            let prev = prev_of(e);
            let next = next_of(e);
            if prev.is_null() {
                self.head = next;
            } else {
                set_next(prev, next);
            }
            if next.is_null() {
                self.tail = prev;
            } else {
                set_prev(next, prev);
            }
            set_prev(e, ptr::null());
            set_next(e, ptr::null());
        }
        self.len -= 1;
    }

    /// Makes `e` the most recently used.
    ///
    /// # Safety
    /// `e` is alive and in the list.
    unsafe fn move_to_back(&mut self, e: *const Entry) {
        if self.tail == e {
            return;
        }
        // SAFETY: as the caller promises.
        unsafe {
            self.unlink(e);
            self.push_back(e);
        }
    }
}

/// Marks a drain pops before it applies them, so that the cache misses on
/// their records and neighbours overlap instead of following one another.
const PREFETCH_CHUNK: usize = 32;

/// Asks the processor to fetch the cache lines of an entry's links (in
/// front of the header) and slot word, which a drain is about to write.
/// A hint only: it never faults and changes nothing.
#[inline(always)]
fn prefetch_record(entry: &Entry) {
    let links = (entry as *const Entry as *const u8)
        .wrapping_sub(std::mem::size_of::<crate::entry::Links>());
    crate::hint::prefetch(links);
    crate::hint::prefetch(entry.slot());
}

/// Applies one mark popped from a ring, as a drain does.
///
/// # Safety
/// `p` was popped from a ring of the LRU whose list is `list` (so the
/// entry is alive and has links), and the caller holds that LRU's mutex.
unsafe fn apply_mark(list: &mut List, p: EntryPtr) {
    // SAFETY: an entry with a mark in a ring is alive (module docs).
    let entry = unsafe { p.get() };
    let e = p.as_ptr() as *const Entry;
    let slot = entry.slot();
    // Relaxed loads and stores of the slot are enough here and below: the
    // pop synchronised with the push that follows every transition into a
    // queued state, and the states the mutex holder acts on can only be
    // changed by the mutex holder, except PENDING, which `touch` may CAS;
    // the slot only arbitrates ownership, which a RMW gives at any order.
    match slot.load(Ordering::Relaxed) {
        SLOT_QUEUED => {
            // SAFETY: a QUEUED entry is linked (module docs).
            unsafe { list.move_to_back(e) };
            // Hands the entry back to `touch`; see there.
            valgrind::happens_before(slot);
            slot.store(SLOT_IDLE, Ordering::Relaxed);
        }
        SLOT_PENDING | SLOT_PENDING_USED => {
            // SAFETY: a pending entry is not linked yet; it has links
            // (`insert` refuses records without).
            unsafe {
                if list.contains(e) {
                    // The second mark of a PENDING_USED entry is handled
                    // by the QUEUED arm; this is a broken invariant, and
                    // leaving the entry where it is keeps the list sound.
                    debug_assert!(false, "pending entry already linked");
                    return;
                }
                list.push_back(e);
            }
            if slot
                .compare_exchange(
                    SLOT_PENDING,
                    SLOT_IDLE,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_err()
            {
                // PENDING_USED (only we change it): its other mark is still
                // in the ring, so it stays unevictable until that one.
                slot.store(SLOT_QUEUED, Ordering::Relaxed);
            }
        }
        other => {
            // Nothing else is ever pushed; ignoring the mark keeps the list
            // sound should that rule break.
            debug_assert!(false, "entry in the ring with slot {}", other);
        }
    }
}

/// Most victims one call of [`Repl::evict_victims`] takes.
pub(crate) const MAX_VICTIMS: usize = 16;

/// Pool bytes the value of `e` occupies, in whole extents of `extent`.
///
/// # Safety
/// `e` is alive.
unsafe fn footprint(e: *const Entry, extent: usize) -> usize {
    // SAFETY: as the caller promises; the size is fixed before publication.
    let size = unsafe { &*e }.vsize();
    size.div_ceil(extent.max(1)) * extent.max(1)
}

/// Claims a linked entry as a victim: IDLE → REMOVED, then the evicting
/// flag. On success the entry is still linked; the caller unlinks it.
///
/// # Safety
/// `e` is alive and in the list; the caller holds the LRU mutex.
unsafe fn claim_idle(e: *const Entry) -> bool {
    // SAFETY: as the caller promises.
    let entry = unsafe { &*e };
    let slot = entry.slot();
    // Relaxed: the CAS only decides who owns the entry (a racing `touch`
    // loses or wins atomically); the links are ordered by the mutex.
    if slot
        .compare_exchange(
            SLOT_IDLE,
            SLOT_REMOVED,
            Ordering::Relaxed,
            Ordering::Relaxed,
        )
        .is_err()
    {
        return false;
    }
    if entry.try_claim() {
        return true;
    }
    // A by-key eviction owns it and will remove it (or back out and leave
    // it evictable): leave it linked and idle. Relaxed: REMOVED kept every
    // other thread off the slot, so nothing was lost in between.
    slot.store(SLOT_IDLE, Ordering::Relaxed);
    false
}

impl Lru {
    /// `rings` and `capacity` are rounded up to powers of two. Failing
    /// allocations are reported, not fatal.
    fn new(rings: usize, capacity: usize, drain_batch: usize) -> Result<Lru> {
        let count = rings.max(1).next_power_of_two();
        let mut all = Vec::new();
        all.try_reserve_exact(count)
            .map_err(|_| Error::OutOfMemory)?;
        for _ in 0..count {
            all.push(MarkRing::new(capacity)?);
        }
        let rings = all.into_boxed_slice();
        for ring in rings.iter() {
            // Stored to without a read-modify-write, read by others:
            // atomics, not data, for valgrind's thread checkers (`tail`
            // only sees read-modify-writes, which they take for reads).
            valgrind::atomic_word(&ring.head);
            valgrind::atomic_word(&ring.slots[..]);
        }
        let mut next_victim = Vec::new();
        next_victim
            .try_reserve_exact(NEXT_WORDS)
            .map_err(|_| Error::OutOfMemory)?;
        next_victim.resize_with(NEXT_WORDS, || AtomicU64::new(0));
        let next_victim = next_victim.into_boxed_slice();
        let next_at = (next_victim.as_ptr() as usize).wrapping_neg() % 64 / 8;
        valgrind::atomic_word(&next_victim[..]);
        Ok(Lru {
            rings,
            drain_batch: drain_batch.max(1),
            drain_at: (capacity.max(1).next_power_of_two() / 2).max(1),
            _read_mostly: [0; 12],
            list: Mutex::new(List::new()),
            next_victim,
            next_at,
        })
    }

    /// The calling thread's ring.
    fn my_ring(&self) -> &MarkRing {
        // A power of two: a mask, not a division, on the get path.
        &self.rings[ring_ticket() & (self.rings.len() - 1)]
    }

    /// The rings in the order a drain or a steal visits them.
    fn rings_from(&self, start: usize) -> impl Iterator<Item = &MarkRing> {
        let n = self.rings.len();
        (0..n).map(move |k| &self.rings[(start + k) % n])
    }

    /// Applies at most one drain batch of marks from every ring.
    fn drain(&self, list: &mut List) {
        let start = list.next_ring;
        list.next_ring = (start + 1) % self.rings.len();
        for ring in self.rings_from(start) {
            self.drain_ring(list, ring);
        }
    }

    /// Applies at most one drain batch of marks from `ring`; returns how
    /// many.
    fn drain_ring(&self, list: &mut List, ring: &MarkRing) -> usize {
        let mut left = self.drain_batch;
        let mut applied = 0;
        let mut chunk = [None::<EntryPtr>; PREFETCH_CHUNK];
        while left > 0 {
            let want = left.min(PREFETCH_CHUNK);
            // SAFETY: `list` comes from our mutex.
            let got = unsafe { ring.pop_into(&mut chunk[..want]) };
            // Fetch the records, then their neighbours, so that the
            // misses of a whole chunk overlap.
            for p in chunk[..got].iter().flatten() {
                // SAFETY: an entry with a mark in a ring is alive.
                prefetch_record(unsafe { p.get() });
            }
            for p in chunk[..got].iter().flatten() {
                // SAFETY: popped from our ring, so alive and with links; we
                // hold the mutex, so its neighbours are linked, hence alive.
                unsafe {
                    let e = p.as_ptr() as *const Entry;
                    for neighbour in [prev_of(e), next_of(e)] {
                        if !neighbour.is_null() {
                            prefetch_record(&*neighbour);
                        }
                    }
                }
            }
            for p in chunk[..got].iter().flatten() {
                // SAFETY: popped from our ring; `list` comes from our mutex.
                unsafe { apply_mark(list, *p) };
            }
            left -= got;
            applied += got;
            if got < want {
                break;
            }
        }
        applied
    }

    /// Drains when the list is empty, so buffered insertions count.
    /// Returns whether anything is linked.
    fn any_linked(&self, list: &mut List) -> bool {
        if list.len == 0 {
            self.drain(list);
        }
        list.len != 0
    }

    /// Pushes a mark for `entry`, whose slot the caller has just moved into
    /// a queued state, onto the calling thread's ring. A push that leaves
    /// the ring half full drains it if the mutex is free; a full ring waits
    /// for the mutex and drains.
    fn enqueue(&self, entry: &Entry) {
        // SAFETY: `entry` is a live record.
        let mut mark = unsafe { EntryPtr::from_raw(entry) };
        let ring = self.my_ring();
        chaos::point();
        loop {
            match ring.push(mark) {
                Ok(filled) => {
                    if filled >= self.drain_at && (filled - self.drain_at) % DRAIN_RETRY == 0 {
                        // Half full: drain it if the mutex is free. If it
                        // is not, the other half gives its holder time to
                        // finish; try again a little later.
                        if let Some(mut list) = self.list.try_lock() {
                            self.drain_ring(&mut list, ring);
                        }
                    }
                    return;
                }
                Err(back) => mark = back,
            }
            // Completely full: wait for the mutex.
            let mut list = self.list.lock();
            if self.drain_ring(&mut list, ring) == 0 {
                // The oldest mark is claimed but not yet published by a
                // thread sharing this ring, which was interrupted between
                // the two steps: let it run.
                drop(list);
                std::thread::yield_now();
            }
        }
    }

    fn evict_victim(&self) -> Result<EntryPtr> {
        let mut list = self.list.lock();
        let victim = self.evict_locked(&mut list)?;
        self.note_next_victim(&list);
        Ok(victim)
    }

    /// [`Repl::evict_victims`].
    fn evict_victims(
        &self,
        need: usize,
        ahead: usize,
        extent: usize,
        out: &mut [Option<EntryPtr>; MAX_VICTIMS],
    ) -> Result<usize> {
        let mut list = self.list.lock();
        let need = if list.note_evictor(ring_ticket()) {
            need.saturating_add(ahead)
        } else {
            need
        };
        let first = self.evict_locked(&mut list)?;
        out[0] = Some(first);
        // SAFETY: a victim stays alive while its evictor holds its claim.
        let mut got = unsafe { footprint(first.as_ptr(), extent) };
        let mut n = 1;
        while got < need && n < MAX_VICTIMS {
            let head = list.head;
            // SAFETY: linked entries are alive and have links; we hold the
            // mutex.
            unsafe {
                if head.is_null() || !claim_idle(head) {
                    break;
                }
                list.unlink(head);
                got += footprint(head, extent);
                out[n] = Some(EntryPtr::from_raw(head));
            }
            n += 1;
        }
        self.note_next_victim(&list);
        Ok(n)
    }

    /// Picks, claims and unlinks one victim under the mutex. The caller
    /// names the next victim ([`Lru::note_next_victim`]) once it has taken
    /// all it takes.
    fn evict_locked(&self, list: &mut List) -> Result<EntryPtr> {
        if !self.any_linked(list) {
            return Err(Error::NoVictim);
        }
        // SAFETY (this block and the loop): linked entries are alive and
        // have links; we hold the mutex.
        unsafe {
            let head = list.head;
            if claim_idle(head) {
                list.unlink(head);
                return Ok(EntryPtr::from_raw(head));
            }
        }
        self.drain(list);
        // The new head, then toward the tail.
        let mut cur = list.head;
        while !cur.is_null() {
            // SAFETY: as above.
            unsafe {
                if claim_idle(cur) {
                    list.unlink(cur);
                    return Ok(EntryPtr::from_raw(cur));
                }
                cur = next_of(cur);
            }
        }
        // Everything linked is busy: take an entry straight from a ring.
        for ring in self.rings_from(list.next_ring) {
            for _ in 0..self.drain_batch {
                // SAFETY: we hold the mutex.
                let Some(p) = (unsafe { ring.pop() }) else {
                    break;
                };
                // SAFETY: popped from our ring; we hold the mutex.
                if unsafe { self.steal(list, p) } {
                    return Ok(p);
                }
            }
        }
        Err(Error::NoVictim)
    }

    /// Records where the list's head, the likely next victim, sits in the
    /// index. The unlink has just written the head's links, so its header
    /// is often in the cache already.
    fn note_next_victim(&self, list: &List) {
        let next = if list.head.is_null() {
            0
        } else {
            // SAFETY: linked entries are alive; `list` comes from our mutex.
            NEXT_KNOWN | u64::from(unsafe { (*list.head).locator() })
        };
        // Relaxed: a hint for a prefetch; nothing is published through it.
        self.next_victim[self.next_at].store(next, Ordering::Relaxed);
    }

    /// Tries to evict an entry whose mark was just popped; when it cannot
    /// (claimed by a by-key eviction, or a second mark still in the ring),
    /// applies the mark as a drain would.
    ///
    /// # Safety
    /// As for [`apply_mark`].
    unsafe fn steal(&self, list: &mut List, p: EntryPtr) -> bool {
        // SAFETY: an entry with a mark in the ring is alive.
        let entry = unsafe { p.get() };
        let e = p.as_ptr() as *const Entry;
        let slot = entry.slot();
        // Orderings as in `apply_mark`.
        match slot.load(Ordering::Relaxed) {
            // Linked, and this was its only mark.
            SLOT_QUEUED if entry.try_claim() => {
                slot.store(SLOT_REMOVED, Ordering::Relaxed);
                // SAFETY: a QUEUED entry is linked.
                unsafe { list.unlink(e) };
                true
            }
            // Not linked, and this was its only mark; `touch` may race
            // us to PENDING_USED, hence the CAS.
            SLOT_PENDING
                if slot
                    .compare_exchange(
                        SLOT_PENDING,
                        SLOT_REMOVED,
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    )
                    .is_ok() =>
            {
                if entry.try_claim() {
                    return true;
                }
                // Owned by a by-key eviction: link it so that eviction can
                // remove it (or, if it backs out, the LRU can).
                // SAFETY: not linked; has links.
                unsafe { list.push_back(e) };
                slot.store(SLOT_IDLE, Ordering::Relaxed);
                false
            }
            _ => {
                // SAFETY: as the caller promises.
                unsafe { apply_mark(list, p) };
                false
            }
        }
    }

    fn remove(&self, entry: &Entry) -> Result<()> {
        let mut list = self.list.lock();
        if !self.any_linked(&mut list) {
            return Err(Error::LruEmpty);
        }
        let e = entry as *const Entry;
        for attempt in 0..2 {
            // Relaxed: as in `claim_idle` (the caller owns the claim).
            if entry
                .slot()
                .compare_exchange(
                    SLOT_IDLE,
                    SLOT_REMOVED,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
            {
                // SAFETY: IDLE entries are linked; we hold the mutex.
                unsafe { list.unlink(e) };
                return Ok(());
            }
            if attempt == 0 {
                self.drain(&mut list);
            }
        }
        Err(Error::Busy)
    }

    fn clear(&mut self) {
        let list = self.list.get_mut();
        // `&mut self`: nobody pushes, so this ends; every pending entry
        // gets linked, every queued one idle.
        for ring in self.rings.iter() {
            // SAFETY: `&mut self`: the only consumer, and no producer.
            while let Some(p) = unsafe { ring.pop() } {
                // SAFETY: popped from our ring; `&mut` gives the list.
                unsafe { apply_mark(list, p) };
            }
        }
        let mut cur = list.head;
        while !cur.is_null() {
            // SAFETY: linked entries are alive and have links; exclusive
            // access through `&mut self`.
            unsafe {
                let next = next_of(cur);
                set_prev(cur, ptr::null());
                set_next(cur, ptr::null());
                // Relaxed: nobody else uses the policy any more.
                (*cur).slot().store(SLOT_UNREGISTERED, Ordering::Relaxed);
                cur = next;
            }
        }
        *list = List::new();
    }

    fn validate(&self) -> Result<(), String> {
        use std::collections::{HashMap, HashSet};

        let list = self.list.lock();
        let mut linked: HashSet<*const Entry> = HashSet::new();
        let mut prev: *const Entry = ptr::null();
        let mut cur = list.head;
        while !cur.is_null() {
            if !linked.insert(cur) {
                return Err(format!("cycle in the list at entry #{}", linked.len()));
            }
            if linked.len() > list.len {
                return Err(format!("more than {} entries linked", list.len));
            }
            // SAFETY: linked entries are alive; we hold the mutex.
            let entry = unsafe { &*cur };
            if !entry.has_links() {
                return Err("linked entry without links".into());
            }
            // SAFETY: as above, and the entry has links.
            let (p, n) = unsafe { (prev_of(cur), next_of(cur)) };
            if p != prev {
                return Err(format!("bad prev link at entry #{}", linked.len()));
            }
            // Relaxed: validation runs at quiescent points, after the
            // joins or locks that ordered every change.
            let s = entry.slot().load(Ordering::Relaxed);
            if s != SLOT_IDLE && s != SLOT_QUEUED {
                return Err(format!("linked entry with slot {}", s));
            }
            prev = cur;
            cur = n;
        }
        if prev != list.tail {
            return Err("tail is not the last entry".into());
        }
        if linked.len() != list.len {
            return Err(format!(
                "length {} but {} entries linked",
                list.len,
                linked.len()
            ));
        }

        let mut marks = Vec::new();
        for ring in self.rings.iter() {
            // SAFETY: we hold the mutex.
            let (published, unpublished) = unsafe { ring.marks() };
            if unpublished != 0 {
                return Err(format!("{} marks claimed but not published", unpublished));
            }
            marks.extend(published);
        }
        let mut counts: HashMap<*const Entry, usize> = HashMap::new();
        for p in &marks {
            *counts.entry(p.as_ptr() as *const Entry).or_default() += 1;
        }
        for (&e, &count) in &counts {
            // SAFETY: entries with marks are alive.
            let entry = unsafe { &*e };
            let is_linked = linked.contains(&e);
            // Relaxed: as above.
            let s = entry.slot().load(Ordering::Relaxed);
            let expected = match (s, is_linked) {
                (SLOT_QUEUED, true) | (SLOT_PENDING, false) => 1,
                (SLOT_PENDING_USED, false) => 2,
                _ => {
                    return Err(format!(
                        "entry in the ring with slot {} (linked: {})",
                        s, is_linked
                    ))
                }
            };
            if count != expected {
                return Err(format!(
                    "entry with slot {} is {} times in the ring",
                    s, count
                ));
            }
        }
        for &e in &linked {
            // SAFETY: linked entries are alive.
            let entry = unsafe { &*e };
            // Relaxed: as above.
            if entry.slot().load(Ordering::Relaxed) == SLOT_QUEUED && !counts.contains_key(&e) {
                return Err("queued entry missing from the ring".into());
            }
        }
        Ok(())
    }
}

#[allow(dead_code)]
impl Repl {
    /// A policy with no entries; `Err(OutOfMemory)` when the rings of
    /// the LRU cannot be allocated.
    pub(crate) fn new(policy: Policy) -> Result<Repl> {
        Ok(Repl {
            lru: match policy {
                Policy::None => None,
                Policy::Lru => Some(Lru::new(RINGS, RING_CAPACITY, RING_CAPACITY)?),
            },
        })
    }

    /// A buffered LRU with `rings` rings of `capacity` slots whose drains
    /// apply at most `drain_batch` marks of each (tests and benchmarks).
    pub(crate) fn with_rings(rings: usize, capacity: usize, drain_batch: usize) -> Result<Repl> {
        Ok(Repl {
            lru: Some(Lru::new(rings, capacity, drain_batch)?),
        })
    }

    /// Whether entries need LRU links in their records.
    pub(crate) fn uses_links(&self) -> bool {
        self.lru.is_some()
    }

    /// Registers a newly indexed entry as the most recently used.
    ///
    /// Under LRU it is queued and becomes evictable at the next drain. An
    /// entry that is already registered, or whose record has no links, is
    /// left alone (it then never becomes an LRU victim).
    pub(crate) fn insert(&self, entry: &Entry) {
        let Some(lru) = &self.lru else { return };
        if !entry.has_links() {
            return;
        }
        // Relaxed: the CAS only decides that this call registers the entry;
        // the ring's push/pop carries the entry to the drain.
        if entry
            .slot()
            .compare_exchange(
                SLOT_UNREGISTERED,
                SLOT_PENDING,
                Ordering::Relaxed,
                Ordering::Relaxed,
            )
            .is_ok()
        {
            lru.enqueue(entry);
        }
    }

    /// Marks an entry used (a get hit). Takes no lock unless the thread's
    /// ring is half full (and then only if it is free) or full. An entry
    /// that is queued already, being evicted or not registered is left
    /// alone.
    pub(crate) fn touch(&self, entry: &Entry) {
        let Some(lru) = &self.lru else { return };
        let slot = entry.slot();
        // Relaxed: the slot only decides which thread queues the entry
        // (RMW atomicity); the push publishes it to the drain. A plain load
        // first keeps repeated gets of a queued entry from writing its
        // cache line.
        let mut current = slot.load(Ordering::Relaxed);
        loop {
            let queued = match current {
                SLOT_IDLE => SLOT_QUEUED,
                SLOT_PENDING => SLOT_PENDING_USED,
                _ => return,
            };
            match slot.compare_exchange_weak(current, queued, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(actual) => current = actual,
            }
        }
        // The slot transition as an edge for valgrind's thread checkers,
        // from the drain that made the entry idle.
        valgrind::happens_after(slot);
        lru.enqueue(entry);
    }

    /// Picks, claims and unlinks a victim.
    ///
    /// The entry is returned claimed (`Entry::try_claim` succeeded), with
    /// the slot `REMOVED`, out of the list and the ring: the caller must
    /// not claim it again. `Err(NoVictim)` when nothing can be evicted
    /// (always, under policy NONE).
    pub(crate) fn evict_victim(&self) -> Result<EntryPtr> {
        match &self.lru {
            Some(lru) => lru.evict_victim(),
            None => Err(Error::NoVictim),
        }
    }

    /// [`Repl::evict_victim`], then, under the same hold of the LRU mutex,
    /// the idle entries at the head of the list after it, while the values
    /// taken fill fewer than `need` bytes in extents of `extent` bytes and
    /// fewer than [`MAX_VICTIMS`] are taken: the victims a put needing
    /// `need` bytes would evict one by one, in the same order. When the
    /// calling thread evicted recently and another thread's put evicted
    /// since (see the module docs), `ahead` more bytes are taken. Returns
    /// how many were put in `out`, in eviction order, each as
    /// `evict_victim` returns it.
    pub(crate) fn evict_victims(
        &self,
        need: usize,
        ahead: usize,
        extent: usize,
        out: &mut [Option<EntryPtr>; MAX_VICTIMS],
    ) -> Result<usize> {
        match &self.lru {
            Some(lru) => lru.evict_victims(need, ahead, extent, out),
            None => Err(Error::NoVictim),
        }
    }

    /// Unlinks an entry that its caller already claimed.
    ///
    /// `Err(LruEmpty)` when nothing at all is linked (buffered insertions
    /// included); `Err(Busy)` when the entry is in use even after a drain,
    /// or was never registered. Always `Ok` under policy NONE.
    pub(crate) fn remove(&self, entry: &Entry) -> Result<()> {
        match &self.lru {
            Some(lru) => lru.remove(entry),
            None => Ok(()),
        }
    }

    /// The locator of the entry the next eviction will likely take, as of
    /// the last eviction ([`Entry::locator`]); `None` before any eviction,
    /// after one that emptied the list, and under policy NONE.
    pub(crate) fn next_victim(&self) -> Option<u32> {
        let lru = self.lru.as_ref()?;
        let next = lru.next_victim[lru.next_at].load(Ordering::Relaxed);
        (next & NEXT_KNOWN != 0).then_some(next as u32)
    }

    /// Applies every buffered mark (tests and benchmarks).
    pub(crate) fn drain(&self) {
        if let Some(lru) = &self.lru {
            let mut list = lru.list.lock();
            lru.drain(&mut list);
        }
    }

    /// Number of linked entries (tests and benchmarks).
    pub(crate) fn linked(&self) -> usize {
        self.lru.as_ref().map_or(0, |lru| lru.list.lock().len)
    }

    /// Unlinks everything (cache teardown). The entries' slots go back to
    /// `UNREGISTERED`; the entries themselves belong to the cache.
    pub(crate) fn clear(&mut self) {
        if let Some(lru) = &mut self.lru {
            lru.clear();
        }
    }

    /// Checks every invariant at a quiescent point.
    pub(crate) fn validate(&self) -> Result<(), String> {
        match &self.lru {
            Some(lru) => lru.validate(),
            None => Ok(()),
        }
    }
}

/// Points where a test run may yield the processor, to widen the windows
/// between a slot transition and the push that follows it. Compiled to
/// nothing outside tests.
mod chaos {
    #[cfg(test)]
    thread_local! {
        static STATE: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    }

    /// Turns yielding on for this thread, seeded.
    #[cfg(test)]
    pub(super) fn enable(seed: u64) {
        STATE.with(|s| s.set(seed | 1));
    }

    #[cfg(test)]
    pub(super) fn point() {
        STATE.with(|s| {
            let mut x = s.get();
            if x == 0 {
                return;
            }
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            s.set(x);
            if x % 4 == 0 {
                std::thread::yield_now();
            }
        });
    }

    #[cfg(not(test))]
    #[inline(always)]
    pub(super) fn point() {}
}

/// Unit tests of every rule and error; a model of the buffered LRU on
/// plain collections, driven by random operation sequences (including
/// touches and insertions caught between their slot change and their
/// push); concurrent stress runs with validation at quiescent points; and
/// tests of the ring alone.
///
/// The concurrent tests are small enough to run under Miri, which checks
/// them for data races and undefined behaviour and emulates weak memory
/// (it fails them if, say, the ring's publishing store is made relaxed):
///
/// ```text
/// MIRIFLAGS="-Zmiri-tree-borrows -Zmiri-many-seeds=0..12" \
///     cargo +nightly miri test --lib -- repl::tests::stress repl::tests::ring_many
/// ```
///
/// (`Entry::links` steps from `&Entry` back to the links in front of it,
/// which Tree Borrows accepts and Stacked Borrows does not.) A longer
/// randomised run: `cargo test --release --lib -- --ignored repl::`.
#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::sync::atomic::{AtomicBool, AtomicUsize};

    /// Entry records for one test, destroyed when it ends. Declare it
    /// before the policy, so the policy goes first.
    struct Entries(Vec<EntryPtr>);

    impl Entries {
        fn new(n: usize) -> Entries {
            Entries(
                (0..n as u64)
                    .map(|i| Entry::create(&i.to_le_bytes(), true).unwrap())
                    .collect(),
            )
        }

        fn get(&self, i: usize) -> &Entry {
            // SAFETY: the records live until `self` drops.
            unsafe { self.0[i].get() }
        }

        fn ptr(&self, i: usize) -> EntryPtr {
            self.0[i]
        }

        fn slot(&self, i: usize) -> u8 {
            self.get(i).slot().load(Ordering::Relaxed)
        }
    }

    impl Drop for Entries {
        fn drop(&mut self) {
            for &p in &self.0 {
                // SAFETY: never published anywhere that outlives the test.
                unsafe { Entry::destroy(p) };
            }
        }
    }

    /// The number an entry was created with.
    fn id(p: EntryPtr) -> usize {
        // SAFETY: the test's entries are alive.
        let key = unsafe { p.get() }.key();
        u64::from_le_bytes(key.try_into().unwrap()) as usize
    }

    fn victim(repl: &Repl) -> Result<usize> {
        repl.evict_victim().map(id)
    }

    /// The linked entries' ids, head first.
    fn order(repl: &Repl) -> Vec<usize> {
        let lru = repl.lru.as_ref().unwrap();
        let list = lru.list.lock();
        let mut out = Vec::new();
        let mut cur = list.head;
        while !cur.is_null() {
            // SAFETY: linked entries are alive; we hold the mutex.
            unsafe {
                out.push(id(EntryPtr::from_raw(cur)));
                cur = next_of(cur);
            }
        }
        out
    }

    /// The first half of a touch or insertion: the slot transition without
    /// the push, as another thread would leave it just before pushing.
    fn begin_touch(entry: &Entry) -> bool {
        let slot = entry.slot();
        let (from, to) = match slot.load(Ordering::Relaxed) {
            SLOT_IDLE => (SLOT_IDLE, SLOT_QUEUED),
            SLOT_PENDING => (SLOT_PENDING, SLOT_PENDING_USED),
            _ => return false,
        };
        slot.compare_exchange(from, to, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }

    fn begin_insert(entry: &Entry) -> bool {
        entry
            .slot()
            .compare_exchange(
                SLOT_UNREGISTERED,
                SLOT_PENDING,
                Ordering::Relaxed,
                Ordering::Relaxed,
            )
            .is_ok()
    }

    /// The second half: the push.
    fn finish(repl: &Repl, entry: &Entry) {
        repl.lru.as_ref().unwrap().enqueue(entry);
    }

    fn lru() -> Repl {
        Repl::new(Policy::Lru).unwrap()
    }

    #[test]
    fn none_policy_does_nothing() {
        let es = Entries::new(2);
        let mut repl = Repl::new(Policy::None).unwrap();
        assert!(!repl.uses_links());
        let bare = Entry::create(b"record without links", false).unwrap();
        // SAFETY: alive until destroyed below.
        let bare_entry = unsafe { bare.get() };
        for e in [es.get(0), es.get(1), bare_entry] {
            repl.insert(e);
            repl.touch(e);
            assert_eq!(e.slot().load(Ordering::Relaxed), SLOT_UNREGISTERED);
        }
        assert_eq!(repl.evict_victim(), Err(Error::NoVictim));
        assert_eq!(Error::NoVictim.errno(), libc::ESRCH);
        assert_eq!(repl.remove(es.get(0)), Ok(()));
        assert_eq!(repl.remove(bare_entry), Ok(()));
        assert_eq!(repl.validate(), Ok(()));
        assert_eq!(repl.linked(), 0);
        repl.drain();
        repl.clear();
        assert!(!es.get(0).is_claimed());
        // SAFETY: never published.
        unsafe { Entry::destroy(bare) };
    }

    #[test]
    fn empty_lru() {
        let es = Entries::new(1);
        let repl = lru();
        assert!(repl.uses_links());
        assert_eq!(repl.evict_victim(), Err(Error::NoVictim));
        assert_eq!(repl.remove(es.get(0)), Err(Error::LruEmpty));
        assert_eq!(Error::LruEmpty.errno(), libc::ESRCH);
        assert_eq!(repl.validate(), Ok(()));
    }

    #[test]
    fn an_eviction_names_the_next_victim() {
        let es = Entries::new(3);
        let repl = lru();
        assert_eq!(repl.next_victim(), None);
        for i in 0..3 {
            repl.insert(es.get(i));
        }
        assert_eq!(victim(&repl), Ok(0));
        assert_eq!(repl.next_victim(), Some(es.get(1).locator()));
        // A use moves 1 behind 2: the next eviction takes 2 and names 1.
        repl.touch(es.get(1));
        repl.drain();
        assert_eq!(victim(&repl), Ok(2));
        assert_eq!(repl.next_victim(), Some(es.get(1).locator()));
        assert_eq!(victim(&repl), Ok(1));
        assert_eq!(repl.next_victim(), None, "the list is empty");
        assert_eq!(Repl::new(Policy::None).unwrap().next_victim(), None);
        // The word starts a cache line inside its allocation.
        let lru = repl.lru.as_ref().unwrap();
        let word = &lru.next_victim[lru.next_at] as *const AtomicU64 as usize;
        assert_eq!(word % 64, 0);
        assert!(lru.next_at + 8 <= NEXT_WORDS, "the whole line is ours");
    }

    #[test]
    fn a_batch_takes_what_a_put_of_that_size_needs_in_lru_order() {
        // Entries 8 .. 8 + MAX_VICTIMS make one full batch; 4 more follow.
        let rest = 8 + MAX_VICTIMS;
        let count = rest + 4;
        let es = Entries::new(count);
        // Value sizes; with extents of 128 bytes, 300 bytes occupy 384.
        let sizes = [100, 300, 50, 0, 256, 1, 1];
        for i in 0..count {
            let size = sizes.get(i).copied().unwrap_or(1);
            // SAFETY: not published yet.
            unsafe { Entry::set_value(es.ptr(i), size, crate::heap::Allocation::EMPTY) };
        }
        let repl = lru();
        for i in 0..count {
            repl.insert(es.get(i));
        }
        let mut out = [None; MAX_VICTIMS];
        let mut batch = |need: usize| {
            // This thread alone evicts: the bytes ahead never count.
            let n = repl.evict_victims(need, 100_000, 128, &mut out)?;
            assert!(out[n..].iter().all(Option::is_none));
            let taken: Vec<usize> = out[..n].iter().map(|p| id(p.unwrap())).collect();
            out = [None; MAX_VICTIMS];
            Ok::<_, Error>(taken)
        };
        // Always one victim, even when nothing is needed.
        assert_eq!(batch(0), Ok(vec![0]));
        // 384 + 128 bytes cover 512; 1 alone does not.
        assert_eq!(batch(512), Ok(vec![1, 2]));
        // An empty value counts nothing: 0 + 256 + 128 ≥ 257.
        assert_eq!(batch(257), Ok(vec![3, 4, 5]));
        // An entry in use at the head ends the batch; the next eviction
        // moves it behind the others, as one-by-one evictions would.
        repl.touch(es.get(7));
        assert_eq!(batch(1_000_000), Ok(vec![6]));
        assert_eq!(
            batch(1_000_000),
            Ok((8..rest).collect()),
            "at most MAX_VICTIMS"
        );
        assert_eq!(order(&repl), vec![rest, rest + 1, rest + 2, rest + 3, 7]);
        assert_eq!(repl.next_victim(), Some(es.get(rest).locator()));
        for i in [0, 1, 2, 6, 8, rest - 1] {
            assert!(es.get(i).is_claimed());
            assert_eq!(es.slot(i), SLOT_REMOVED);
        }
        assert!(!es.get(rest).is_claimed());
        assert_eq!(repl.validate(), Ok(()));
        assert_eq!(
            batch(1_000_000),
            Ok(vec![rest, rest + 1, rest + 2, rest + 3, 7])
        );
        assert_eq!(repl.next_victim(), None, "the list is empty");
        assert_eq!(batch(1), Err(Error::NoVictim));
        assert_eq!(
            Repl::new(Policy::None)
                .unwrap()
                .evict_victims(1, 0, 128, &mut out),
            Err(Error::NoVictim)
        );
    }

    /// Batches of `need` bytes (extents of 128 bytes) taken in turn by the
    /// threads named in `turns` (each a thread of its own, so a ring
    /// ticket of its own), with `ahead` bytes ahead: the ids each took.
    fn batches_in_turn(repl: &Repl, turns: &[usize], need: usize, ahead: usize) -> Vec<Vec<usize>> {
        let (orders, results) = (
            std::sync::Mutex::new(Vec::new()),
            std::sync::Mutex::new(vec![Vec::new(); turns.len()]),
        );
        let threads = turns.iter().max().map_or(0, |&t| t + 1);
        let next = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for me in 0..threads {
                let (next, results, orders) = (&next, &results, &orders);
                s.spawn(move || loop {
                    let turn = next.load(Ordering::Acquire);
                    if turn == turns.len() {
                        return;
                    }
                    if turns[turn] != me {
                        std::thread::yield_now();
                        continue;
                    }
                    let mut out = [None; MAX_VICTIMS];
                    let n = repl.evict_victims(need, ahead, 128, &mut out).unwrap();
                    let taken = out[..n].iter().map(|p| id(p.unwrap())).collect();
                    results.lock().unwrap()[turn] = taken;
                    orders.lock().unwrap().push(me);
                    next.store(turn + 1, Ordering::Release);
                });
            }
        });
        assert_eq!(orders.into_inner().unwrap(), turns.to_vec());
        results.into_inner().unwrap()
    }

    #[test]
    fn threads_evicting_in_turn_take_victims_ahead() {
        let es = Entries::new(60);
        let repl = lru();
        for i in 0..60 {
            // SAFETY: not published yet.
            unsafe { Entry::set_value(es.ptr(i), 100, crate::heap::Allocation::EMPTY) };
            repl.insert(es.get(i));
        }
        // Each victim occupies one extent: a need of 100 bytes takes one,
        // and 300 bytes ahead three more.
        let taken = batches_in_turn(&repl, &[0, 0, 1, 1, 0, 1, 0, 2, 2], 100, 300);
        let expected: Vec<Vec<usize>> = vec![
            vec![0],
            vec![1],
            // Thread 1 is new, then alone again.
            vec![2],
            vec![3],
            // Turns between threads that evicted before: four each.
            vec![4, 5, 6, 7],
            vec![8, 9, 10, 11],
            vec![12, 13, 14, 15],
            // Thread 2 takes over: one, then one.
            vec![16],
            vec![17],
        ];
        assert_eq!(taken, expected);
        // Never beyond MAX_VICTIMS.
        let taken = batches_in_turn(&repl, &[3, 4, 3], 100, 1 << 20);
        assert_eq!(taken[2], (18 + 2..18 + 2 + MAX_VICTIMS).collect::<Vec<_>>());
        assert_eq!(repl.validate(), Ok(()));
    }

    #[test]
    fn insert_then_evict() {
        let es = Entries::new(1);
        let repl = lru();
        repl.insert(es.get(0));
        // Buffered: pending until a drain links it.
        assert_eq!(es.slot(0), SLOT_PENDING);
        assert_eq!(repl.linked(), 0);
        assert_eq!(repl.validate(), Ok(()));
        let v = repl.evict_victim().unwrap();
        assert_eq!(v, es.ptr(0));
        let e = es.get(0);
        assert_eq!(e.slot().load(Ordering::Relaxed), SLOT_REMOVED);
        assert!(e.is_claimed());
        assert_eq!(e.refs(), 1, "the policy takes no reference");
        // SAFETY: single-threaded; the entry is out of the list.
        unsafe {
            assert!((*e.links().prev.get()).is_null());
            assert!((*e.links().next.get()).is_null());
        }
        assert_eq!(repl.linked(), 0);
        assert_eq!(repl.validate(), Ok(()));
        assert_eq!(repl.evict_victim(), Err(Error::NoVictim));
        // Evicted entries are not used or registered again.
        repl.touch(e);
        repl.insert(e);
        assert_eq!(e.slot().load(Ordering::Relaxed), SLOT_REMOVED);
        assert_eq!(repl.validate(), Ok(()));
    }

    #[test]
    fn insert_ignores_registered_and_linkless_entries() {
        let es = Entries::new(1);
        let repl = lru();
        repl.insert(es.get(0));
        repl.insert(es.get(0));
        repl.drain();
        repl.insert(es.get(0));
        assert_eq!(repl.validate(), Ok(()));
        assert_eq!(order(&repl), [0]);
        let bare = Entry::create(b"record without links", false).unwrap();
        // SAFETY: alive until destroyed below.
        let bare_entry = unsafe { bare.get() };
        repl.insert(bare_entry);
        repl.touch(bare_entry);
        assert_eq!(bare_entry.slot().load(Ordering::Relaxed), SLOT_UNREGISTERED);
        assert!(bare_entry.try_claim());
        assert_eq!(repl.remove(bare_entry), Err(Error::Busy));
        assert_eq!(victim(&repl), Ok(0));
        assert_eq!(repl.evict_victim(), Err(Error::NoVictim));
        // SAFETY: never published.
        unsafe { Entry::destroy(bare) };
    }

    /// SPEC §12 item 6.
    #[test]
    fn recency_of_the_compatibility_requirement() {
        let es = Entries::new(10);
        let repl = lru();
        for i in 0..10 {
            repl.insert(es.get(i));
        }
        assert!(es.get(5).try_claim());
        assert_eq!(repl.remove(es.get(5)), Ok(()));
        assert_eq!(es.slot(5), SLOT_REMOVED);
        assert_eq!(victim(&repl), Ok(0));
        repl.touch(es.get(1));
        assert_eq!(repl.validate(), Ok(()));
        assert_eq!(victim(&repl), Ok(2));
        assert_eq!(order(&repl), [3, 4, 6, 7, 8, 9, 1]);
        assert_eq!(repl.validate(), Ok(()));
    }

    /// SPEC §8.4: the first use since the last drain orders the entry.
    #[test]
    fn approximate_lru() {
        let es = Entries::new(3);
        let repl = lru();
        let (a, b, c) = (0, 1, 2);
        for i in [a, b, c] {
            repl.insert(es.get(i));
        }
        for i in [a, b, a] {
            repl.touch(es.get(i));
        }
        assert_eq!(repl.validate(), Ok(()));
        assert_eq!(victim(&repl), Ok(c));
        assert_eq!(victim(&repl), Ok(a));
        assert_eq!(victim(&repl), Ok(b));
        assert_eq!(repl.evict_victim(), Err(Error::NoVictim));

        // The same once the insertions are linked.
        let es = Entries::new(3);
        let repl = lru();
        for i in [a, b, c] {
            repl.insert(es.get(i));
        }
        repl.drain();
        for i in [a, b, a] {
            repl.touch(es.get(i));
        }
        assert_eq!(es.slot(a), SLOT_QUEUED);
        assert_eq!(repl.validate(), Ok(()), "queued once only");
        assert_eq!(victim(&repl), Ok(c));
        assert_eq!(victim(&repl), Ok(a));
        assert_eq!(victim(&repl), Ok(b));
    }

    #[test]
    fn used_entries_move_behind_unused_ones() {
        let es = Entries::new(6);
        let repl = lru();
        for i in 0..4 {
            repl.insert(es.get(i));
        }
        repl.touch(es.get(1));
        repl.insert(es.get(4));
        repl.touch(es.get(0));
        repl.insert(es.get(5));
        repl.drain();
        // Marks apply in ring order; an insertion counts as a use.
        assert_eq!(order(&repl), [2, 3, 1, 4, 0, 5]);
        assert_eq!(repl.validate(), Ok(()));
        let got: Vec<usize> = (0..6).map(|_| victim(&repl).unwrap()).collect();
        assert_eq!(got, [2, 3, 1, 4, 0, 5]);
    }

    #[test]
    fn queued_entry_is_never_chosen_over_an_idle_one() {
        let es = Entries::new(3);
        let repl = lru();
        for i in 0..3 {
            repl.insert(es.get(i));
        }
        repl.drain();
        repl.touch(es.get(0));
        // Entry 1 is being used by a get that has not pushed its mark yet.
        assert!(begin_touch(es.get(1)));
        // Head 0 is queued: drain (0 goes to the tail), then 1 is still
        // queued, so 2 is the victim.
        assert_eq!(victim(&repl), Ok(2));
        assert_eq!(order(&repl), [1, 0]);
        assert_eq!(es.slot(1), SLOT_QUEUED);
        finish(&repl, es.get(1));
        assert_eq!(repl.validate(), Ok(()));
        assert_eq!(victim(&repl), Ok(0));
        assert_eq!(victim(&repl), Ok(1));
    }

    #[test]
    fn all_busy_and_empty_ring_means_no_victim() {
        let es = Entries::new(2);
        let repl = lru();
        for i in 0..2 {
            repl.insert(es.get(i));
        }
        repl.drain();
        for i in 0..2 {
            assert!(begin_touch(es.get(i)));
        }
        assert_eq!(repl.evict_victim(), Err(Error::NoVictim));
        assert_eq!(order(&repl), [0, 1]);
        finish(&repl, es.get(1));
        finish(&repl, es.get(0));
        assert_eq!(repl.validate(), Ok(()));
        assert_eq!(victim(&repl), Ok(1));
        assert_eq!(victim(&repl), Ok(0));
    }

    /// SPEC §14 #12: an entry claimed by a by-key eviction is skipped and
    /// stays linked; if that eviction backs out, the LRU can still take it.
    #[test]
    fn entry_claimed_by_key_stays_evictable() {
        let es = Entries::new(3);
        let repl = lru();
        for i in 0..3 {
            repl.insert(es.get(i));
        }
        repl.drain();
        assert!(es.get(0).try_claim());
        assert_eq!(victim(&repl), Ok(1));
        assert_eq!(es.slot(0), SLOT_IDLE);
        assert_eq!(order(&repl), [0, 2]);
        assert_eq!(repl.validate(), Ok(()));
        // The by-key eviction backs out (say `remove` had been busy).
        es.get(0).unclaim();
        assert_eq!(victim(&repl), Ok(0));
        // Or goes ahead.
        assert!(es.get(2).try_claim());
        assert_eq!(repl.evict_victim(), Err(Error::NoVictim));
        assert_eq!(repl.remove(es.get(2)), Ok(()));
        assert_eq!(repl.linked(), 0);
        assert_eq!(repl.validate(), Ok(()));
    }

    #[test]
    fn remove_rules() {
        let es = Entries::new(6);
        let repl = lru();
        // Only buffered insertions: they count, the list is not empty.
        repl.insert(es.get(0));
        assert!(es.get(5).try_claim());
        assert_eq!(repl.remove(es.get(5)), Err(Error::Busy), "never registered");
        es.get(5).unclaim();
        assert_eq!(order(&repl), [0]);
        for i in 1..4 {
            repl.insert(es.get(i));
        }
        // Pending: the drain links it, then it goes.
        assert_eq!(repl.remove(es.get(1)), Ok(()));
        // Idle.
        assert_eq!(repl.remove(es.get(0)), Ok(()));
        // Queued: the drain makes it idle.
        repl.touch(es.get(2));
        assert_eq!(repl.remove(es.get(2)), Ok(()));
        // Queued with the mark not pushed yet: busy, and left as it was.
        assert!(begin_touch(es.get(3)));
        assert_eq!(repl.remove(es.get(3)), Err(Error::Busy));
        assert_eq!(Error::Busy.errno(), libc::EAGAIN);
        assert_eq!(order(&repl), [3]);
        finish(&repl, es.get(3));
        assert_eq!(repl.validate(), Ok(()));
        assert_eq!(repl.remove(es.get(3)), Ok(()));
        assert_eq!(es.slot(3), SLOT_REMOVED);
        // Empty now.
        assert_eq!(repl.remove(es.get(4)), Err(Error::LruEmpty));
        assert_eq!(repl.validate(), Ok(()));
    }

    #[test]
    fn evicting_in_a_loop_returns_everything() {
        const N: usize = 500;
        let es = Entries::new(N);
        let repl = lru();
        for i in 0..N {
            repl.insert(es.get(i));
            if i % 3 == 0 {
                repl.touch(es.get(i / 2));
            }
        }
        repl.drain();
        for i in (0..N).step_by(7) {
            repl.touch(es.get(i));
        }
        // One entry even has its mark still in flight: it comes out of the
        // ring once everything linked is gone... after the push lands.
        assert!(begin_touch(es.get(N - 1)));
        finish(&repl, es.get(N - 1));
        assert_eq!(repl.validate(), Ok(()));
        let mut seen = vec![false; N];
        while let Ok(v) = victim(&repl) {
            assert!(!seen[v], "entry {} evicted twice", v);
            seen[v] = true;
        }
        assert!(seen.iter().all(|&s| s));
        assert_eq!(repl.validate(), Ok(()));
    }

    #[test]
    fn a_half_full_ring_is_drained_by_its_pusher() {
        let es = Entries::new(10);
        let repl = Repl::with_rings(RINGS, 4, 4).unwrap();
        for i in 0..9 {
            repl.insert(es.get(i));
            assert_eq!(repl.validate(), Ok(()));
        }
        // A drain every second push; the ninth is still pending.
        assert_eq!(order(&repl), [0, 1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(es.slot(8), SLOT_PENDING);
        repl.insert(es.get(9));
        for i in [0, 1, 2, 3, 4] {
            repl.touch(es.get(i));
        }
        assert_eq!(repl.validate(), Ok(()));
        let got: Vec<usize> = (0..10).map(|_| victim(&repl).unwrap()).collect();
        assert_eq!(got, [5, 6, 7, 8, 9, 0, 1, 2, 3, 4]);
    }

    #[test]
    fn a_full_ring_waits_for_the_mutex() {
        let es = Entries::new(5);
        let repl = Repl::with_rings(1, 4, 4).unwrap();
        let lru = repl.lru.as_ref().unwrap();
        let locked = std::sync::Barrier::new(2);
        let pushed = std::sync::Barrier::new(2);
        std::thread::scope(|s| {
            s.spawn(|| {
                let guard = lru.list.lock();
                locked.wait();
                // Half full, then full: no drain while the mutex is taken.
                pushed.wait();
                drop(guard);
            });
            locked.wait();
            for i in 0..4 {
                repl.insert(es.get(i));
            }
            assert_eq!(lru.rings[0].len(), 4);
            pushed.wait();
            // Full: this one waits for the mutex, then drains.
            repl.insert(es.get(4));
        });
        assert_eq!(order(&repl), [0, 1, 2, 3]);
        assert_eq!(repl.validate(), Ok(()));
        let got: Vec<usize> = (0..5).map(|_| victim(&repl).unwrap()).collect();
        assert_eq!(got, [0, 1, 2, 3, 4]);
    }

    #[test]
    fn victims_taken_straight_from_the_ring() {
        // Drains of one mark leave marks in the ring, as concurrent pushes
        // during a drain would.
        let es = Entries::new(3);
        let repl = Repl::with_rings(RINGS, 8, 1).unwrap();
        for i in 0..3 {
            repl.insert(es.get(i));
        }
        assert!(es.get(0).try_claim());
        assert!(es.get(1).try_claim());
        // 0 linked by the first drain, busy; 1 linked by the second, busy;
        // 2 taken from the ring while still pending.
        assert_eq!(victim(&repl), Ok(2));
        assert_eq!(es.slot(2), SLOT_REMOVED);
        assert!(es.get(2).is_claimed());
        assert_eq!(order(&repl), [0, 1]);
        assert_eq!(repl.validate(), Ok(()));
        es.get(0).unclaim();
        es.get(1).unclaim();

        // A queued one.
        repl.touch(es.get(0));
        repl.touch(es.get(1));
        assert!(es.get(0).try_claim());
        // Head 0 queued; drain one (0 to the tail, idle but claimed);
        // walk: 1 queued, 0 claimed; the ring gives 1.
        assert_eq!(victim(&repl), Ok(1));
        assert_eq!(order(&repl), [0]);
        assert_eq!(repl.validate(), Ok(()));

        // Claimed entries taken from the ring are put back as a drain
        // would: pending ones linked, queued ones moved to the tail.
        let es = Entries::new(4);
        let repl = Repl::with_rings(RINGS, 8, 1).unwrap();
        repl.insert(es.get(0));
        repl.drain();
        repl.insert(es.get(1));
        repl.insert(es.get(2));
        repl.touch(es.get(0));
        for i in 0..3 {
            assert!(es.get(i).try_claim());
        }
        // Ring: 1, 2, 0. Head 0 queued; the drain links 1 (claimed); the
        // ring gives 2 (claimed: linked, idle) and nothing more this time.
        assert_eq!(repl.evict_victim(), Err(Error::NoVictim));
        assert_eq!(order(&repl), [0, 1, 2]);
        assert_eq!(es.slot(0), SLOT_QUEUED);
        assert_eq!(repl.validate(), Ok(()));
        // Next time the drain moves 0 to the tail.
        assert_eq!(repl.evict_victim(), Err(Error::NoVictim));
        assert_eq!(order(&repl), [1, 2, 0]);
        assert_eq!(repl.validate(), Ok(()));
        for i in 0..3 {
            assert_eq!(es.slot(i), SLOT_IDLE);
            es.get(i).unclaim();
        }
        assert_eq!(victim(&repl), Ok(1));

        // A claimed queued entry from the ring goes to the tail, idle.
        let es = Entries::new(2);
        let repl = Repl::with_rings(RINGS, 8, 1).unwrap();
        repl.insert(es.get(0));
        repl.insert(es.get(1));
        repl.drain();
        repl.drain();
        repl.touch(es.get(1));
        repl.touch(es.get(0));
        assert!(es.get(0).try_claim());
        assert!(es.get(1).try_claim());
        // Head 0 queued; the drain moves 1 to the tail (idle, claimed);
        // the ring gives 0, claimed.
        assert_eq!(repl.evict_victim(), Err(Error::NoVictim));
        assert_eq!(order(&repl), [1, 0]);
        assert_eq!(es.slot(0), SLOT_IDLE);
        assert_eq!(repl.validate(), Ok(()));
        es.get(1).unclaim();
        assert_eq!(victim(&repl), Ok(1));
        es.get(0).unclaim();
    }

    #[test]
    fn used_before_linked() {
        // A get between the insertion's slot change and its push: the use
        // mark comes first and links the entry, queued; the insertion mark
        // then makes it idle.
        let es = Entries::new(2);
        let repl = lru();
        repl.insert(es.get(0));
        assert!(begin_insert(es.get(1)));
        repl.touch(es.get(1));
        assert_eq!(es.slot(1), SLOT_PENDING_USED);
        repl.drain();
        assert_eq!(order(&repl), [0, 1]);
        assert_eq!(es.slot(1), SLOT_QUEUED);
        assert_eq!(victim(&repl), Ok(0));
        assert_eq!(repl.evict_victim(), Err(Error::NoVictim));
        finish(&repl, es.get(1));
        assert_eq!(repl.validate(), Ok(()));
        assert_eq!(victim(&repl), Ok(1));
    }

    #[test]
    fn clear_unlinks_everything() {
        let es = Entries::new(5);
        let mut repl = lru();
        for i in 0..5 {
            repl.insert(es.get(i));
        }
        repl.drain();
        repl.touch(es.get(1));
        repl.insert(es.get(4));
        repl.clear();
        assert_eq!(repl.linked(), 0);
        assert_eq!(repl.validate(), Ok(()));
        for i in 0..5 {
            assert_eq!(es.slot(i), SLOT_UNREGISTERED);
            // SAFETY: single-threaded.
            unsafe {
                assert!((*es.get(i).links().prev.get()).is_null());
                assert!((*es.get(i).links().next.get()).is_null());
            }
        }
        assert_eq!(repl.evict_victim(), Err(Error::NoVictim));
    }

    #[test]
    fn validate_reports_broken_invariants() {
        let es = Entries::new(3);
        let repl = lru();
        for i in 0..3 {
            repl.insert(es.get(i));
        }
        repl.drain();
        assert_eq!(repl.validate(), Ok(()));
        // Queued, but no mark in the ring.
        es.get(1).slot().store(SLOT_QUEUED, Ordering::Relaxed);
        assert!(repl.validate().is_err());
        // A removed entry still linked.
        es.get(1).slot().store(SLOT_REMOVED, Ordering::Relaxed);
        assert!(repl.validate().is_err());
        es.get(1).slot().store(SLOT_IDLE, Ordering::Relaxed);
        assert_eq!(repl.validate(), Ok(()));
        // A broken back link.
        // SAFETY: single-threaded; restored right after.
        unsafe {
            let p = es.ptr(2).as_ptr() as *const Entry;
            let saved = prev_of(p);
            set_prev(p, ptr::null());
            assert!(repl.validate().is_err());
            set_prev(p, saved);
        }
        assert_eq!(repl.validate(), Ok(()));
        // An idle entry in a ring.
        let lru = repl.lru.as_ref().unwrap();
        lru.my_ring().push(es.ptr(0)).unwrap();
        assert!(repl.validate().is_err());
        // SAFETY: single-threaded.
        assert_eq!(unsafe { lru.my_ring().pop() }, Some(es.ptr(0)));
        assert_eq!(repl.validate(), Ok(()));
        // A claimed slot never published.
        lru.my_ring().tail.fetch_add(1, Ordering::Relaxed);
        assert!(repl.validate().is_err());
        lru.my_ring().tail.fetch_sub(1, Ordering::Relaxed);
        assert_eq!(repl.validate(), Ok(()));
    }

    // ---- model ----

    #[derive(Clone, Copy, PartialEq, Eq, Debug)]
    enum State {
        Unregistered,
        Pending,
        PendingUsed,
        Idle,
        Queued,
        Removed,
    }

    impl State {
        fn slot(self) -> u8 {
            match self {
                State::Unregistered => SLOT_UNREGISTERED,
                State::Pending => SLOT_PENDING,
                State::PendingUsed => SLOT_PENDING_USED,
                State::Idle => SLOT_IDLE,
                State::Queued => SLOT_QUEUED,
                State::Removed => SLOT_REMOVED,
            }
        }
    }

    /// The buffered LRU on plain collections: the list, the ring in
    /// order, and each entry's state ("queued since the last drain").
    struct Model {
        capacity: usize,
        batch: usize,
        list: VecDeque<usize>,
        ring: VecDeque<usize>,
        state: Vec<State>,
        claimed: Vec<bool>,
    }

    impl Model {
        fn new(n: usize, capacity: usize, batch: usize) -> Model {
            Model {
                capacity,
                batch,
                list: VecDeque::new(),
                ring: VecDeque::new(),
                state: vec![State::Unregistered; n],
                claimed: vec![false; n],
            }
        }

        fn unlink(&mut self, i: usize) {
            let at = self.list.iter().position(|&x| x == i).unwrap();
            self.list.remove(at);
        }

        fn apply(&mut self, i: usize) {
            match self.state[i] {
                State::Queued => {
                    self.unlink(i);
                    self.list.push_back(i);
                    self.state[i] = State::Idle;
                }
                State::Pending => {
                    self.list.push_back(i);
                    self.state[i] = State::Idle;
                }
                State::PendingUsed => {
                    self.list.push_back(i);
                    self.state[i] = State::Queued;
                }
                s => panic!("model: mark of an entry in state {:?}", s),
            }
        }

        fn drain(&mut self) {
            for _ in 0..self.batch {
                let Some(i) = self.ring.pop_front() else {
                    break;
                };
                self.apply(i);
            }
        }

        /// A push: a full ring waits for a drain; a push that leaves the
        /// ring half full (or a retry interval beyond) drains it.
        fn push(&mut self, i: usize) {
            while self.ring.len() == self.capacity {
                self.drain();
            }
            self.ring.push_back(i);
            let filled = self.ring.len();
            let drain_at = (self.capacity / 2).max(1);
            if filled >= drain_at && (filled - drain_at) % DRAIN_RETRY == 0 {
                self.drain();
            }
        }

        fn begin_insert(&mut self, i: usize) -> bool {
            if self.state[i] != State::Unregistered {
                return false;
            }
            self.state[i] = State::Pending;
            true
        }

        fn begin_touch(&mut self, i: usize) -> bool {
            self.state[i] = match self.state[i] {
                State::Idle => State::Queued,
                State::Pending => State::PendingUsed,
                _ => return false,
            };
            true
        }

        fn claim_idle(&mut self, i: usize) -> bool {
            if self.state[i] != State::Idle || self.claimed[i] {
                return false;
            }
            self.claimed[i] = true;
            self.state[i] = State::Removed;
            true
        }

        fn evict(&mut self) -> Result<usize> {
            if self.list.is_empty() {
                self.drain();
                if self.list.is_empty() {
                    return Err(Error::NoVictim);
                }
            }
            let head = self.list[0];
            if self.claim_idle(head) {
                self.list.pop_front();
                return Ok(head);
            }
            self.drain();
            for at in 0..self.list.len() {
                let i = self.list[at];
                if self.claim_idle(i) {
                    self.list.remove(at);
                    return Ok(i);
                }
            }
            for _ in 0..self.batch {
                let Some(i) = self.ring.pop_front() else {
                    break;
                };
                match (self.state[i], self.claimed[i]) {
                    (State::Queued, false) => {
                        self.claimed[i] = true;
                        self.state[i] = State::Removed;
                        self.unlink(i);
                        return Ok(i);
                    }
                    (State::Pending, false) => {
                        self.claimed[i] = true;
                        self.state[i] = State::Removed;
                        return Ok(i);
                    }
                    (State::Pending, true) => {
                        self.list.push_back(i);
                        self.state[i] = State::Idle;
                    }
                    _ => self.apply(i),
                }
            }
            Err(Error::NoVictim)
        }

        /// The caller holds `i`'s claim.
        fn remove(&mut self, i: usize) -> Result<()> {
            if self.list.is_empty() {
                self.drain();
                if self.list.is_empty() {
                    return Err(Error::LruEmpty);
                }
            }
            for attempt in 0..2 {
                if self.state[i] == State::Idle {
                    self.state[i] = State::Removed;
                    self.unlink(i);
                    return Ok(());
                }
                if attempt == 0 {
                    self.drain();
                }
            }
            Err(Error::Busy)
        }
    }

    #[derive(Clone, Debug)]
    enum Op {
        Insert(usize),
        Touch(usize),
        /// The slot change of an insertion; its push comes with `Finish`.
        BeginInsert(usize),
        /// The slot change of a touch; its push comes with `Finish`.
        BeginTouch(usize),
        /// Pushes the oldest outstanding mark.
        Finish,
        Evict,
        /// A whole by-key eviction: claim, remove, back out on failure.
        EvictKey(usize),
        /// A by-key eviction that has claimed the entry and runs its
        /// callback for a while.
        Claim(usize),
        /// The rest of a `Claim`.
        Release(usize),
        Drain,
    }

    const MODEL_ENTRIES: usize = 10;

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        let i = || 0..MODEL_ENTRIES;
        prop_oneof![
            4 => i().prop_map(Op::Insert),
            6 => i().prop_map(Op::Touch),
            1 => i().prop_map(Op::BeginInsert),
            2 => i().prop_map(Op::BeginTouch),
            2 => Just(Op::Finish),
            4 => Just(Op::Evict),
            2 => i().prop_map(Op::EvictKey),
            1 => i().prop_map(Op::Claim),
            1 => i().prop_map(Op::Release),
            1 => Just(Op::Drain),
        ]
    }

    fn compare(repl: &Repl, model: &Model, es: &Entries, step: usize) {
        assert_eq!(
            order(repl),
            Vec::from(model.list.clone()),
            "list after step {}",
            step
        );
        for (i, s) in model.state.iter().enumerate() {
            assert_eq!(es.slot(i), s.slot(), "slot of {} after step {}", i, step);
            assert_eq!(es.get(i).is_claimed(), model.claimed[i], "claim of {}", i);
        }
    }

    /// `capacity` is a power of two, as ring capacities are.
    fn run_model(ops: &[Op], rings: usize, capacity: usize, batch: usize) {
        let es = Entries::new(MODEL_ENTRIES);
        let mut repl = Repl::with_rings(rings, capacity, batch).unwrap();
        let mut model = Model::new(MODEL_ENTRIES, capacity, batch);
        let mut in_flight: VecDeque<usize> = VecDeque::new();
        let mut held = [false; MODEL_ENTRIES];
        for (step, op) in ops.iter().enumerate() {
            match *op {
                Op::Insert(i) => {
                    repl.insert(es.get(i));
                    if model.begin_insert(i) {
                        model.push(i);
                    }
                }
                Op::Touch(i) => {
                    repl.touch(es.get(i));
                    if model.begin_touch(i) {
                        model.push(i);
                    }
                }
                Op::BeginInsert(i) => {
                    let done = begin_insert(es.get(i));
                    assert_eq!(done, model.begin_insert(i));
                    if done {
                        in_flight.push_back(i);
                    }
                }
                Op::BeginTouch(i) => {
                    let done = begin_touch(es.get(i));
                    assert_eq!(done, model.begin_touch(i));
                    if done {
                        in_flight.push_back(i);
                    }
                }
                Op::Finish => {
                    if let Some(i) = in_flight.pop_front() {
                        finish(&repl, es.get(i));
                        model.push(i);
                    }
                }
                Op::Evict => {
                    assert_eq!(victim(&repl), model.evict(), "victim at step {}", step);
                }
                Op::EvictKey(i) | Op::Claim(i) => {
                    if model.state[i] == State::Removed || held[i] {
                        continue;
                    }
                    let claimed = es.get(i).try_claim();
                    assert_eq!(claimed, !model.claimed[i]);
                    if !claimed {
                        continue;
                    }
                    model.claimed[i] = true;
                    held[i] = true;
                }
                Op::Release(_) => {}
                Op::Drain => {
                    repl.drain();
                    model.drain();
                }
            }
            if let Op::EvictKey(i) | Op::Release(i) = *op {
                if held[i] {
                    held[i] = false;
                    let got = repl.remove(es.get(i));
                    assert_eq!(got, model.remove(i), "remove {} at step {}", i, step);
                    if got.is_err() {
                        es.get(i).unclaim();
                        model.claimed[i] = false;
                    }
                }
            }
            compare(&repl, &model, &es, step);
            if in_flight.is_empty() {
                assert_eq!(repl.validate(), Ok(()), "after step {}", step);
            }
        }
        // Quiesce, then everything registered must come out.
        while let Some(i) = in_flight.pop_front() {
            finish(&repl, es.get(i));
            model.push(i);
        }
        for (i, &h) in held.iter().enumerate() {
            if h {
                es.get(i).unclaim();
                model.claimed[i] = false;
            }
        }
        assert_eq!(repl.validate(), Ok(()));
        loop {
            let got = victim(&repl);
            assert_eq!(got, model.evict());
            if got.is_err() {
                break;
            }
        }
        for i in 0..MODEL_ENTRIES {
            let s = model.state[i];
            assert!(
                s == State::Removed || s == State::Unregistered,
                "{} left {:?}",
                i,
                s
            );
        }
        compare(&repl, &model, &es, ops.len());
        repl.clear();
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(400))]

        #[test]
        fn matches_the_model(
            ops in proptest::collection::vec(op(), 0..160),
            capacity_log in 0u32..4,
            batch_pick in 0usize..8,
            shared in proptest::bool::ANY,
        ) {
            let capacity = 1usize << capacity_log;
            // Full drains most of the time, short ones too.
            let batch = if batch_pick >= capacity { capacity } else { batch_pick + 1 };
            let rings = if shared { 1 } else { RINGS };
            run_model(&ops, rings, capacity, batch);
        }
    }

    #[test]
    fn matches_the_model_with_the_real_ring() {
        let mut ops = Vec::new();
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let i = (x >> 32) as usize % MODEL_ENTRIES;
            ops.push(match x % 10 {
                0..=2 => Op::Insert(i),
                3..=6 => Op::Touch(i),
                7 => Op::EvictKey(i),
                _ => Op::Evict,
            });
        }
        run_model(&ops, RINGS, RING_CAPACITY, RING_CAPACITY);
    }

    // ---- concurrency ----

    fn xorshift(x: &mut u64) -> u64 {
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        *x
    }

    /// Threads inserting, touching, evicting victims and evicting by key,
    /// in rounds with validation at the quiescent points in between.
    fn stress(seed: u64, rings: usize, capacity: usize, batch: usize, entries: usize, ops: usize) {
        let es = Entries::new(entries);
        let repl = Repl::with_rings(rings, capacity, batch).unwrap();
        let evicted: Vec<AtomicBool> = (0..entries).map(|_| AtomicBool::new(false)).collect();
        let inserted = AtomicUsize::new(0);
        let evictions = AtomicUsize::new(0);
        let rounds = 4;
        let per_round = entries / rounds;
        for round in 0..rounds {
            std::thread::scope(|s| {
                let (es, repl, evicted, inserted, evictions) =
                    (&es, &repl, &evicted, &inserted, &evictions);
                // Inserter (also touches what it inserted, as gets would).
                s.spawn(move || {
                    chaos::enable(seed ^ 1);
                    let mut x = seed ^ 0x1111 ^ round as u64;
                    for i in round * per_round..(round + 1) * per_round {
                        repl.insert(es.get(i));
                        inserted.fetch_add(1, Ordering::Relaxed);
                        if xorshift(&mut x) % 2 == 0 {
                            repl.touch(es.get(i - (x >> 40) as usize % (i + 1)));
                        }
                    }
                });
                for t in 0..2u64 {
                    s.spawn(move || {
                        chaos::enable(seed ^ (t + 2));
                        let mut x = seed ^ ((t + 1) * 0x2222) ^ round as u64;
                        for _ in 0..ops {
                            let limit = (round + 1) * per_round;
                            repl.touch(es.get((xorshift(&mut x) % limit as u64) as usize));
                        }
                    });
                }
                // Victims.
                s.spawn(move || {
                    chaos::enable(seed ^ 7);
                    for _ in 0..ops / 8 {
                        if let Ok(v) = repl.evict_victim() {
                            // SAFETY: the test's entries are alive.
                            let e = unsafe { v.get() };
                            assert!(e.is_claimed());
                            assert_eq!(e.slot().load(Ordering::Relaxed), SLOT_REMOVED);
                            assert!(!evicted[id(v)].swap(true, Ordering::Relaxed));
                            evictions.fetch_add(1, Ordering::Relaxed);
                        }
                        std::thread::yield_now();
                    }
                });
                // By key.
                s.spawn(move || {
                    chaos::enable(seed ^ 9);
                    let mut x = seed ^ 0x3333 ^ round as u64;
                    for _ in 0..ops / 8 {
                        let limit = (round + 1) * per_round;
                        let i = (xorshift(&mut x) % limit as u64) as usize;
                        let e = es.get(i);
                        if !e.try_claim() {
                            continue;
                        }
                        match repl.remove(e) {
                            Ok(()) => {
                                assert_eq!(e.slot().load(Ordering::Relaxed), SLOT_REMOVED);
                                assert!(!evicted[i].swap(true, Ordering::Relaxed));
                                evictions.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(Error::Busy) | Err(Error::LruEmpty) => e.unclaim(),
                            Err(other) => panic!("remove: {:?}", other),
                        }
                    }
                });
            });
            assert_eq!(repl.validate(), Ok(()), "round {} seed {}", round, seed);
            for (i, flag) in evicted.iter().enumerate() {
                let s = es.slot(i);
                if flag.load(Ordering::Relaxed) {
                    assert_eq!(s, SLOT_REMOVED);
                } else if i < (round + 1) * per_round {
                    assert_ne!(s, SLOT_REMOVED, "entry {} lost", i);
                    assert!(!es.get(i).is_claimed());
                }
            }
        }
        // Every remaining entry comes out, once.
        while let Ok(v) = repl.evict_victim() {
            assert!(!evicted[id(v)].swap(true, Ordering::Relaxed));
            evictions.fetch_add(1, Ordering::Relaxed);
        }
        assert_eq!(
            evictions.load(Ordering::Relaxed),
            inserted.load(Ordering::Relaxed)
        );
        assert_eq!(repl.linked(), 0);
        assert_eq!(repl.validate(), Ok(()));
    }

    /// Seeds, entries and operations per thread of the stress runs: small
    /// under Miri, which checks every access for data races.
    const STRESS: (u64, usize, usize) = if cfg!(miri) {
        (1, 40, 150)
    } else {
        (6, 400, 3000)
    };

    #[test]
    fn stress_small_rings() {
        let (seeds, entries, ops) = STRESS;
        for seed in 1..=seeds {
            stress(seed * 0x9e37_79b9, RINGS, 8, 8, entries, ops);
        }
    }

    #[test]
    fn stress_one_shared_ring() {
        // Every thread on one ring: producers race for its slots, and
        // drains meet claimed slots not yet published.
        let (seeds, entries, ops) = STRESS;
        for seed in 1..=seeds {
            stress(seed * 0xc2b2_ae35, 1, 8, 8, entries, ops);
        }
    }

    #[test]
    fn stress_short_drains() {
        // Drains that leave marks behind make evictions take entries
        // straight from the rings.
        let (seeds, entries, ops) = STRESS;
        for seed in 1..=seeds {
            stress(seed * 0x85eb_ca6b, RINGS, 16, 3, entries, ops);
            stress(seed * 0x27d4_eb2f, 1, 16, 3, entries, ops);
        }
    }

    /// Many seeds of the stress test: 3 by default, as many as
    /// `VMEMCACHE_STRESS_SEEDS` says for long runs (e.g. 300 in release mode).
    #[test]
    fn stress_many_seeds() {
        let seeds: u64 = std::env::var("VMEMCACHE_STRESS_SEEDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(3);
        for seed in 1..=seeds {
            stress(seed * 0x1656_67b1, RINGS, 8, 8, 2000, 20_000);
            stress(seed * 0x9e37_79b9, 1, 8, 8, 2000, 20_000);
            stress(seed * 0x85eb_ca6b, RINGS, 16, 3, 2000, 20_000);
        }
    }

    #[test]
    #[cfg_attr(miri, ignore)]
    fn stress_real_rings() {
        stress(
            0xdead_beef,
            RINGS,
            RING_CAPACITY,
            RING_CAPACITY,
            20_000,
            40_000,
        );
    }

    // ---- the ring alone ----

    #[test]
    fn ring_order_capacity_and_wrap() {
        let es = Entries::new(5);
        let ring = MarkRing::new(3).unwrap();
        assert_eq!(ring.capacity(), 4);
        let mut out = [None; 8];
        for round in 0..3 {
            for i in 0..4 {
                assert_eq!(ring.push(es.ptr(i)), Ok(i + 1), "round {}", round);
            }
            assert_eq!(ring.push(es.ptr(4)), Err(es.ptr(4)));
            // SAFETY: single-threaded.
            unsafe {
                assert_eq!(ring.pop(), Some(es.ptr(0)));
                assert_eq!(ring.push(es.ptr(4)), Ok(4));
                assert_eq!(ring.pop_into(&mut out[..2]), 2);
                assert_eq!(&out[..2], &[Some(es.ptr(1)), Some(es.ptr(2))]);
                assert_eq!(ring.marks(), (vec![es.ptr(3), es.ptr(4)], 0));
                assert_eq!(ring.pop_into(&mut out), 2);
                assert_eq!(&out[..2], &[Some(es.ptr(3)), Some(es.ptr(4))]);
                assert_eq!(ring.pop(), None);
                assert_eq!(ring.marks(), (vec![], 0));
            }
        }
    }

    #[test]
    fn ring_consumer_stops_at_an_unpublished_slot() {
        let es = Entries::new(3);
        let ring = MarkRing::new(8).unwrap();
        ring.push(es.ptr(0)).unwrap();
        // A producer claims the next index and has not published yet.
        let claimed = ring.tail.fetch_add(1, Ordering::Relaxed);
        ring.push(es.ptr(2)).unwrap();
        // SAFETY: single-threaded.
        unsafe {
            assert_eq!(ring.marks(), (vec![es.ptr(0), es.ptr(2)], 1));
            let mut out = [None; 4];
            assert_eq!(ring.pop_into(&mut out), 1);
            assert_eq!(ring.pop(), None, "waits for the claimed slot");
            ring.slots[claimed & ring.mask].store(es.ptr(1).as_ptr(), Ordering::Release);
            assert_eq!(ring.pop(), Some(es.ptr(1)));
            assert_eq!(ring.pop(), Some(es.ptr(2)));
            assert_eq!(ring.pop(), None);
        }
    }

    #[test]
    fn ring_many_producers() {
        // Producers push distinct records; one consumer at a time (under a
        // mutex, as the drains) takes every one exactly once, each
        // producer's in order.
        const PER: usize = if cfg!(miri) { 200 } else { 20_000 };
        const PRODUCERS: usize = 3;
        let es = Entries::new(PER * PRODUCERS);
        let ring = MarkRing::new(16).unwrap();
        let consumer = Mutex::new(vec![0usize; PRODUCERS]);
        let seen: Vec<AtomicBool> = (0..PER * PRODUCERS)
            .map(|_| AtomicBool::new(false))
            .collect();
        let take = |next: &mut Vec<usize>| {
            let mut out = [None; 5];
            // SAFETY: the caller holds `consumer`.
            let n = unsafe { ring.pop_into(&mut out) };
            for p in out[..n].iter().flatten() {
                let i = id(*p);
                assert!(!seen[i].swap(true, Ordering::Relaxed), "{} twice", i);
                let (producer, k) = (i / PER, i % PER);
                assert_eq!(next[producer], k, "producer {} out of order", producer);
                next[producer] += 1;
            }
        };
        std::thread::scope(|s| {
            for t in 0..PRODUCERS {
                let (es, ring, consumer, take) = (&es, &ring, &consumer, &take);
                s.spawn(move || {
                    chaos::enable(t as u64 + 11);
                    for k in 0..PER {
                        let mut mark = es.ptr(t * PER + k);
                        while let Err(back) = ring.push(mark) {
                            mark = back;
                            take(&mut consumer.lock());
                        }
                    }
                });
            }
        });
        let mut next = consumer.lock();
        // SAFETY: we hold `consumer`.
        while !unsafe { ring.marks() }.0.is_empty() {
            take(&mut next);
        }
        assert!(seen.iter().all(|s| s.load(Ordering::Relaxed)));
        assert_eq!(*next, vec![PER; PRODUCERS]);
    }
}

#[cfg(feature = "internals")]
pub mod bench {
    //! Figures for the replacement policy: what marking an entry used
    //! costs a get hit, with the buffered LRU and with a plain mutex-held
    //! list that moves the entry to the tail on every use, on 1 and 2
    //! threads; what registering a new entry costs a put; and what picking
    //! a victim costs.
    //!
    //! Each get takes a reference on a random entry (which brings its
    //! record into the cache, as the lookup of a real get does), marks it
    //! used and drops the reference. The touch cost is the time of that
    //! loop minus the time of the same loop without the mark. Every figure
    //! is the median of several trials, the variants alternating, with the
    //! range beside it: other work on the machine moves single runs a lot.

    use super::*;
    use std::hint::black_box;
    use std::time::{Duration, Instant};

    const ENTRIES: usize = 100_000;
    const GETS: usize = 2_000_000;
    const TRIALS: usize = 5;

    /// Entry records, destroyed on drop.
    struct Records(Vec<EntryPtr>);

    impl Records {
        fn new(n: usize) -> Records {
            Records(
                (0..n as u64)
                    .map(|i| match Entry::create(&i.to_le_bytes(), true) {
                        Ok(p) => p,
                        Err(e) => panic!("cannot create entries: {}", e),
                    })
                    .collect(),
            )
        }

        fn get(&self, i: usize) -> &Entry {
            // SAFETY: alive until `self` drops.
            unsafe { self.0[i].get() }
        }

        /// Forgets every policy: unclaimed and unregistered.
        fn reset(&self) {
            for i in 0..self.0.len() {
                let e = self.get(i);
                e.unclaim();
                e.slot().store(SLOT_UNREGISTERED, Ordering::Relaxed);
            }
        }
    }

    impl Drop for Records {
        fn drop(&mut self) {
            for &p in &self.0 {
                // SAFETY: the policies that used them are gone or cleared.
                unsafe { Entry::destroy(p) };
            }
        }
    }

    /// The unbuffered alternative: one mutex, move to the tail per use.
    struct PlainLru {
        list: Mutex<List>,
    }

    impl PlainLru {
        fn new() -> PlainLru {
            PlainLru {
                list: Mutex::new(List::new()),
            }
        }

        fn insert(&self, entry: &Entry) {
            // SAFETY: the entry has links and is not linked.
            unsafe { self.list.lock().push_back(entry) };
        }

        fn touch(&self, entry: &Entry) {
            // SAFETY: the entry is linked.
            unsafe { self.list.lock().move_to_back(entry) };
        }

        fn clear(&mut self) {
            let list = self.list.get_mut();
            while !list.head.is_null() {
                let head = list.head;
                // SAFETY: linked.
                unsafe { list.unlink(head) };
            }
        }
    }

    /// Which entries the gets pick.
    #[derive(Clone, Copy)]
    enum Pattern {
        /// Every entry alike.
        Uniform,
        /// 80 % of the gets on 20 % of the entries.
        Skewed,
    }

    struct Picker(u64);

    impl Picker {
        fn new(seed: u64) -> Picker {
            Picker(seed | 1)
        }

        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn pick(&mut self, pattern: Pattern) -> usize {
            let x = self.next();
            let n = ENTRIES as u64;
            let i = match pattern {
                Pattern::Uniform => x % n,
                Pattern::Skewed if (x >> 60) < 13 => (x % (n / 5)) * 5,
                Pattern::Skewed => x % n,
            };
            i as usize
        }
    }

    /// Runs `work(thread)` on `threads` threads at once; the wall time.
    fn timed(threads: usize, work: impl Fn(usize) + Sync) -> Duration {
        let start = Instant::now();
        std::thread::scope(|s| {
            for t in 0..threads {
                let work = &work;
                s.spawn(move || work(t));
            }
        });
        start.elapsed()
    }

    /// Nanoseconds per get on each thread.
    fn gets(
        records: &Records,
        threads: usize,
        pattern: Pattern,
        touch: impl Fn(&Entry) + Sync,
    ) -> f64 {
        let elapsed = timed(threads, |t| {
            let mut picker = Picker::new(0x9e37_79b9_7f4a_7c15 ^ (t as u64 + 1));
            for _ in 0..GETS {
                let e = records.get(picker.pick(pattern));
                e.acquire();
                touch(e);
                black_box(e.release());
            }
        });
        elapsed.as_nanos() as f64 / GETS as f64
    }

    /// Median, minimum and maximum.
    fn stats(mut v: Vec<f64>) -> (f64, f64, f64) {
        v.sort_by(|a, b| a.total_cmp(b));
        (v[v.len() / 2], v[0], v[v.len() - 1])
    }

    /// Prints the figures of both policies; returns the baseline's gets
    /// per second.
    fn touch_figures(records: &Records, pattern: Pattern, threads: usize) -> f64 {
        let (mut base, mut buffered, mut plain) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..TRIALS {
            base.push(gets(records, threads, pattern, |_| {}));

            let mut repl = Repl::new(Policy::Lru).unwrap_or_else(|e| panic!("{}", e));
            for i in 0..ENTRIES {
                repl.insert(records.get(i));
            }
            repl.drain();
            buffered.push(gets(records, threads, pattern, |e| repl.touch(e)));
            repl.clear();

            let mut mutex = PlainLru::new();
            for i in 0..ENTRIES {
                mutex.insert(records.get(i));
            }
            plain.push(gets(records, threads, pattern, |e| mutex.touch(e)));
            mutex.clear();
        }
        let (b, _, _) = stats(base);
        println!(
            "  {:<13} {} thread(s):        no touch ({:>6.1} ns per get);            {:>6.2} M gets/s in all",
            "baseline",
            threads,
            b,
            threads as f64 * 1e3 / b
        );
        for (name, figures) in [("buffered LRU", buffered), ("mutex LRU", plain)] {
            let (med, min, max) = stats(figures);
            println!(
                "  {:<13} {} thread(s): {:>6.1} ns/touch ({:>6.1} ns per get, {:.1}-{:.1}); {:>6.2} M gets/s in all",
                name,
                threads,
                med - b,
                med,
                min,
                max,
                threads as f64 * 1e3 / med
            );
        }
        threads as f64 * 1e3 / b
    }

    fn insert_figures(records: &Records, threads: usize) {
        let per_thread = ENTRIES / threads;
        let (mut buffered, mut plain) = (Vec::new(), Vec::new());
        for _ in 0..TRIALS {
            records.reset();
            let mut repl = Repl::new(Policy::Lru).unwrap_or_else(|e| panic!("{}", e));
            let elapsed = timed(threads, |t| {
                for i in t * per_thread..(t + 1) * per_thread {
                    repl.insert(records.get(i));
                }
            });
            buffered.push(elapsed.as_nanos() as f64 / per_thread as f64);
            repl.clear();

            let mut mutex = PlainLru::new();
            let elapsed = timed(threads, |t| {
                for i in t * per_thread..(t + 1) * per_thread {
                    mutex.insert(records.get(i));
                }
            });
            plain.push(elapsed.as_nanos() as f64 / per_thread as f64);
            mutex.clear();
        }
        for (name, figures) in [("buffered LRU", buffered), ("mutex LRU", plain)] {
            let (med, min, max) = stats(figures);
            println!(
                "  {:<13} {} thread(s): {:>6.1} ns/insert ({:.1}-{:.1}); {:>6.2} M inserts/s in all",
                name,
                threads,
                med,
                min,
                max,
                threads as f64 * 1e3 / med
            );
        }
    }

    fn victim_figures(records: &Records) {
        let (mut idle, mut mixed) = (Vec::new(), Vec::new());
        for trial in 0..TRIALS {
            records.reset();
            let mut repl = Repl::new(Policy::Lru).unwrap_or_else(|e| panic!("{}", e));
            for i in 0..ENTRIES {
                repl.insert(records.get(i));
            }
            repl.drain();
            let start = Instant::now();
            let mut victims = 0;
            while let Ok(v) = repl.evict_victim() {
                black_box(v);
                victims += 1;
            }
            idle.push(start.elapsed().as_nanos() as f64 / victims.max(1) as f64);

            // A full cache in its steady state: each eviction follows a get
            // of a random entry, so now and then the head is queued and the
            // eviction drains first.
            records.reset();
            for i in 0..ENTRIES {
                repl.insert(records.get(i));
            }
            repl.drain();
            let mut picker = Picker::new(0x2545_f491_4f6c_dd1d ^ trial as u64);
            let rounds = ENTRIES / 2;
            let start = Instant::now();
            for _ in 0..rounds {
                repl.touch(records.get(picker.pick(Pattern::Uniform)));
                black_box(repl.evict_victim().ok());
            }
            mixed.push(start.elapsed().as_nanos() as f64 / rounds as f64);
            repl.clear();
        }
        let (med, min, max) = stats(idle);
        println!(
            "  evict_victim, idle head:          {:>6.1} ns/victim ({:.1}-{:.1})",
            med, min, max
        );
        let (med, min, max) = stats(mixed);
        println!(
            "  touch + evict_victim, random get: {:>6.1} ns/round ({:.1}-{:.1})",
            med, min, max
        );
    }

    /// The processor's name, where the system says it.
    fn machine() -> String {
        std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| {
                info.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split(':').nth(1))
                    .map(|name| name.trim().to_string())
            })
            .unwrap_or_else(|| "unknown processor".into())
    }

    /// Prints the figures. Arguments are ignored.
    pub fn main(args: &[String]) {
        let _ = args;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        println!(
            "replacement policy benchmark on {}, {} cores",
            machine(),
            cores
        );
        println!(
            "{} entries, {} gets per thread and trial; median of {} trials (min-max)",
            ENTRIES, GETS, TRIALS
        );
        let records = Records::new(ENTRIES);
        for (pattern, name) in [
            (Pattern::Uniform, "uniformly random"),
            (Pattern::Skewed, "skewed: 80 % of gets on 20 % of entries"),
        ] {
            println!("get hit, {}:", name);
            let one = touch_figures(&records, pattern, 1);
            let two = touch_figures(&records, pattern, 2);
            println!(
                "  (the baseline runs {:.2} times as fast on 2 threads: near 2 when both cores were free)",
                two / one
            );
        }
        println!("registration of new entries (put):");
        for threads in [1, 2] {
            insert_figures(&records, threads);
        }
        println!("victim selection, one thread:");
        victim_figures(&records);
        records.reset();
    }
}
