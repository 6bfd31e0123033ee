//! The extent allocator over the pool's bytes (SPEC §8.1).
//!
//! The heap hands out the pool to values in units of extents of `E` bytes.
//! Its metadata lives in DRAM, not in the pool: a value of `v` bytes
//! occupies exactly `ceil(v / E)` extents, aligned to the extent size from
//! the pool's base, possibly in several non-contiguous runs. There are no
//! boundary tags, so no pool byte is spent on bookkeeping (the original
//! spent 32 bytes per extent).
//!
//! # Layout
//!
//! The first `pool_len - RESERVED` bytes of the pool form the heap (the
//! reserve stands for the original's two guard pages, which keeps the
//! capacity arithmetic of SPEC §12 item 1 exact). With `E = min(extent_size,
//! heap_len)` the heap holds `heap_len / E` extents.
//!
//! # Structure
//!
//! One bit per extent says whether it is free (1) or allocated (0). The
//! extents are split into *arenas*: contiguous ranges of whole 64-bit
//! bitmap words. Each arena owns its slice of the bitmap, a summary bitmap
//! (one bit per bitmap word that has a free bit, so scans skip full words 64
//! at a time) and a top bitmap over the summary (so a scan of a nearly full
//! arena skips 4096 extents at a time), a next-fit cursor (which a free
//! moves to the space it returns) and exact counts of its free extents and
//! free runs, all behind its own mutex. Lock-free mirrors of those counts
//! let threads skip an arena that cannot serve them without taking its
//! lock, and let statistics be read without locks. DRAM cost: the bitmap (1
//! bit per extent), the summary (1 bit per 64 extents), the top (1 bit per
//! 4096) and about 430 bytes per arena, half of it the arena's spare
//! (below).
//!
//! # Allocation
//!
//! An allocation first looks for one free run that holds the whole request,
//! in the calling thread's *spare* (below) and then in the arenas, scanning
//! a bounded number of runs from an arena's cursor (next fit). Only when
//! none has one does it collect pieces, longest found first, from the spare
//! and then from every arena in turn: any free extent of the arenas or of
//! the thread's spare is used before `alloc` reports exhaustion. Pieces
//! obtained by successive calls for the same put are merged when adjacent,
//! the common case when the caller evicts the neighbour of what it already
//! holds.
//!
//! A put into a full cache takes its victims' extents directly
//! ([`Heap::adopt`]); what a victim has beyond the need goes into the
//! thread's spare, a handful of runs that its next allocations look at
//! first, rather than back into the arenas. Spare extents count as free
//! for the statistics; other threads' allocations do not see them until
//! [`Heap::return_spares`] gives them back, which a put that finds nothing
//! left to evict does before it fails.
//!
//! An arena whose complete scan found no run of `L` extents remembers it
//! until its next free, so requests of `L` or more pass over an arena of
//! scraps without locking it.
//!
//! # Concurrency
//!
//! The original serialises every alloc and free on one heap mutex. Here a
//! thread allocates first in its *home* arena, then in the arenas it has
//! *claimed*, then in unclaimed arenas (claiming the one that serves it),
//! and only then in other threads' arenas. Homes are spread over the arena
//! range by a low-discrepancy sequence of per-thread tickets. While looking
//! for a whole run, an arena whose lock is busy is passed over and waited
//! for only if nothing else served. Threads that each keep their own values
//! therefore keep them in separate arenas and neither share locks nor
//! cache lines, and no arena is fragmented by two threads' interleaved
//! values (which the benchmark showed to cost far more than the locking
//! itself). Claims are advice, never exclusive: all free space stays
//! usable by every thread.
//!
//! A free locks only the arenas its runs lie in, one at a time. No
//! operation holds two locks of the heap at once, arena or spare (only
//! [`Heap::validate`] does, arenas in index order), so there is no lock
//! ordering to get wrong.

//! # Runs and their encoding
//!
//! A run is `(start extent, length)`. A *slot* packs one run in a `u64`:
//! the start in the low `start_bits` bits (enough for every extent index of
//! this heap), the length minus one above it. An [`Allocation`] keeps one
//! run in its word (tag bit 0 set, start in bits `1..=start_bits`, length
//! minus one above); otherwise the word points to a run list allocated with
//! `std::alloc::alloc`: a count followed by that many slots.
//!
//! # What this module must never do
//!
//! It never evicts, never calls back into the cache, never allocates DRAM
//! while holding an arena lock and never allocates on the free path. It
//! does not know what the bytes of a value mean: it copies them in and out
//! on request ([`Heap::write`], [`Heap::read`]) and nothing else.
#![cfg_attr(not(test), allow(dead_code))]

use std::alloc::{self, Layout};
use std::cell::Cell;
use std::ptr;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

use crate::entry::accounted_size;
use crate::error::{Error, Result};
use crate::stats::Counter;
use crate::sync::{Mutex, MutexGuard};
use crate::valgrind;

/// Runs a scan of the home arena examines before it settles for what it has
/// seen (other arenas get an eighth of it when looking for a whole run).
const RUNS_PER_SCAN: usize = 32;
/// Slots a [`PendingAlloc`] holds without DRAM of its own.
const INLINE_SLOTS: usize = 4;
/// Arenas per online CPU: enough that threads rarely share a home.
const ARENAS_PER_CPU: usize = 4;
/// Upper bound on the number of arenas.
const MAX_ARENAS: usize = 64;
// Allocation tracks arenas in 64-bit masks.
const _: () = assert!(MAX_ARENAS <= 64);
/// Runs a thread's spare holds (see [`Spare`]), as many as the victims a put
/// takes ahead of its need may bring ...
const SPARE_RUNS: usize = 16;
/// ... and pool bytes at most, so that what one thread holds back from the
/// others stays small beside the pool (a pool has at most [`MAX_ARENAS`]
/// spares, and one of 16 MiB or less has one).
const SPARE_BYTES: usize = 64 << 10;
/// No arena is smaller than this many pool bytes (large values would
/// otherwise always straddle arenas) ...
const MIN_ARENA_BYTES: usize = 16 << 20;
/// ... nor smaller than this many bitmap words (64 extents each).
const MIN_ARENA_WORDS: usize = 16;

/// Simulated DRAM exhaustion for tests: the `n`-th DRAM allocation of the
/// heap on this thread (counting from 1) fails.
#[cfg(test)]
mod fault {
    use std::cell::Cell;

    thread_local! {
        static COUNTDOWN: Cell<u32> = const { Cell::new(0) };
    }

    /// Makes the `n`-th next allocation attempt fail (0: none).
    pub(super) fn fail_nth(n: u32) {
        COUNTDOWN.with(|c| c.set(n));
    }

    /// Whether this allocation attempt is to fail.
    pub(super) fn injected() -> bool {
        COUNTDOWN.with(|c| match c.get() {
            0 => false,
            1 => {
                c.set(0);
                true
            }
            n => {
                c.set(n - 1);
                false
            }
        })
    }
}

/// Edge flags of an arena: its first extent is free.
const FIRST_FREE: u8 = 1;
/// Edge flags of an arena: its last extent is free.
const LAST_FREE: u8 = 2;

/// Where one value lives in the pool: a list of runs of whole extents, kept
/// in one machine word when the value occupies a single run.
///
/// The word is 0 (no storage), an inline run (bit 0 set), or a pointer to a
/// run list (bit 0 clear, 8-byte aligned). An `Allocation` owns its run
/// list but has no `Drop`: only [`Heap::free`] (or [`Heap::discard`]) ends
/// it, because giving the extents back needs the heap.
#[derive(Debug)]
pub(crate) struct Allocation(u64);

// The entry record stores an allocation in one word.
const _: () = assert!(std::mem::size_of::<Allocation>() == 8);

impl Allocation {
    /// No pool storage (a value of 0 bytes, or a bench mode that stores none).
    pub(crate) const EMPTY: Allocation = Allocation(0);

    /// Whether the value has no pool storage.
    pub(crate) fn is_empty(&self) -> bool {
        self.0 == 0
    }

    /// Whether the word itself holds the (single) run.
    fn is_inline(&self) -> bool {
        self.0 & 1 != 0
    }

    /// The run list, when there is one.
    fn list(&self) -> Option<*mut u64> {
        if self.0 == 0 || self.is_inline() {
            None
        } else {
            Some(self.0 as usize as *mut u64)
        }
    }

    /// The slots of the run list (empty for inline and empty allocations).
    fn list_slots(&self) -> &[u64] {
        match self.list() {
            // SAFETY: a list word is only ever made by `Heap::finish` from a
            // live allocation of `1 + count` words, and the allocation owns
            // it until `Heap::free`/`Heap::discard` consume `self`.
            Some(list) => unsafe {
                let count = *list as usize;
                std::slice::from_raw_parts(list.add(1), count)
            },
            None => &[],
        }
    }

    /// DRAM held by the run list (0 when the runs fit in the word).
    pub(crate) fn dram_size(&self) -> usize {
        match self.list() {
            Some(_) => accounted_size(list_bytes(self.list_slots().len())),
            None => 0,
        }
    }
}

/// Bytes of a run list of `slots` slots (the count word, then the slots).
fn list_bytes(slots: usize) -> usize {
    (slots + 1) * std::mem::size_of::<u64>()
}

/// The bitmap words and masks that cover bits `[start, start + len)`.
fn word_masks(start: usize, len: usize) -> impl Iterator<Item = (usize, u64)> {
    let end = start + len;
    let mut pos = start;
    std::iter::from_fn(move || {
        if pos >= end {
            return None;
        }
        let offset = pos % 64;
        let n = (64 - offset).min(end - pos);
        let mask = if n == 64 {
            !0
        } else {
            ((1u64 << n) - 1) << offset
        };
        let word = pos / 64;
        pos += n;
        Some((word, mask))
    })
}

/// Layout of `words` 64-bit words for the DRAM buffers of this module.
fn words_layout(words: usize) -> Result<Layout> {
    Layout::array::<u64>(words).map_err(|_| Error::OutOfMemory)
}

/// How runs are packed into words for one heap.
#[derive(Clone, Copy, Debug)]
struct Encoding {
    /// Bits of a start extent index (at least 1).
    start_bits: u32,
}

impl Encoding {
    fn for_extents(extents: usize) -> Encoding {
        let highest = (extents as u64).saturating_sub(1);
        Encoding {
            start_bits: (u64::BITS - highest.leading_zeros()).max(1),
        }
    }

    fn start_mask(self) -> u64 {
        (1u64 << self.start_bits) - 1
    }

    /// The longest run one slot can describe.
    fn max_slot_len(self) -> usize {
        let bits = u64::BITS - self.start_bits;
        // `bits` is at most 63 (start_bits ≥ 1); clamp for 32-bit usize.
        (1u64 << bits).min(usize::MAX as u64) as usize
    }

    fn slot(self, start: usize, len: usize) -> u64 {
        debug_assert!(len >= 1 && len <= self.max_slot_len());
        start as u64 | (((len - 1) as u64) << self.start_bits)
    }

    fn unslot(self, slot: u64) -> (usize, usize) {
        let start = (slot & self.start_mask()) as usize;
        let len = ((slot >> self.start_bits) + 1) as usize;
        (start, len)
    }

    /// The inline allocation word for a slot, if its length fits.
    fn inline(self, slot: u64) -> Option<u64> {
        let start = slot & self.start_mask();
        let len_minus_one = slot >> self.start_bits;
        // At least 15 bits, since `start_bits` is at most 48.
        let len_bits = u64::BITS - 1 - self.start_bits;
        if len_minus_one >> len_bits != 0 {
            return None;
        }
        Some(1 | (start << 1) | (len_minus_one << (self.start_bits + 1)))
    }

    /// The slot an inline allocation word describes.
    fn inline_slot(self, word: u64) -> u64 {
        let start = (word >> 1) & self.start_mask();
        let len_minus_one = word >> (self.start_bits + 1);
        start | (len_minus_one << self.start_bits)
    }
}

/// The extents obtained so far for one value being put.
///
/// Its first [`INLINE_SLOTS`] runs live in the struct; more spill into a
/// buffer from `std::alloc`, so a put that gets one run (the usual case)
/// allocates no DRAM here. Dropping it without [`Heap::finish`] or
/// [`Heap::release`] frees that buffer but leaks the extents.
pub(crate) struct PendingAlloc {
    inline: [u64; INLINE_SLOTS],
    /// Null, or a buffer of `cap` slots holding all `len` slots.
    spill: *mut u64,
    /// Slots available (`INLINE_SLOTS` while `spill` is null).
    cap: usize,
    /// Slots used.
    len: usize,
    /// Extents held.
    extents: usize,
    /// Bytes those extents hold.
    capacity: usize,
}

// SAFETY: the spill buffer is owned exclusively by the pending allocation
// and holds plain integers; moving it to another thread moves that
// ownership with it.
unsafe impl Send for PendingAlloc {}

impl PendingAlloc {
    /// Nothing obtained yet.
    pub(crate) fn new() -> PendingAlloc {
        PendingAlloc {
            inline: [0; INLINE_SLOTS],
            spill: ptr::null_mut(),
            cap: INLINE_SLOTS,
            len: 0,
            extents: 0,
            capacity: 0,
        }
    }

    /// Bytes the obtained extents can hold.
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    fn slots(&self) -> &[u64] {
        if self.spill.is_null() {
            &self.inline[..self.len]
        } else {
            // SAFETY: `spill` holds `cap ≥ len` slots, the first `len`
            // written by `push_run`.
            unsafe { std::slice::from_raw_parts(self.spill, self.len) }
        }
    }

    fn slots_mut(&mut self) -> &mut [u64] {
        if self.spill.is_null() {
            &mut self.inline[..self.len]
        } else {
            // SAFETY: as in `slots`, and `&mut self` makes it exclusive.
            unsafe { std::slice::from_raw_parts_mut(self.spill, self.len) }
        }
    }

    fn room(&self) -> usize {
        self.cap - self.len
    }

    /// Makes room for `more` slots; on failure nothing changes.
    fn reserve(&mut self, more: usize) -> Result<()> {
        if self.room() >= more {
            return Ok(());
        }
        #[cfg(test)]
        if fault::injected() {
            return Err(Error::OutOfMemory);
        }
        let want = self.len.checked_add(more).ok_or(Error::OutOfMemory)?;
        let new_cap = want.max(self.cap * 2).max(16);
        let new_layout = words_layout(new_cap)?;
        let buffer = if self.spill.is_null() {
            // SAFETY: the layout is non-zero (at least 16 words).
            let buffer = unsafe { alloc::alloc(new_layout) } as *mut u64;
            if buffer.is_null() {
                return Err(Error::OutOfMemory);
            }
            // SAFETY: the new buffer has room for `len ≤ INLINE_SLOTS`
            // slots and does not overlap the inline array.
            unsafe { ptr::copy_nonoverlapping(self.inline.as_ptr(), buffer, self.len) };
            buffer
        } else {
            let old_layout = words_layout(self.cap)?;
            // SAFETY: `spill` was allocated with `old_layout` (the layout of
            // `cap` words) and the new size is non-zero.
            let buffer =
                unsafe { alloc::realloc(self.spill as *mut u8, old_layout, new_layout.size()) }
                    as *mut u64;
            if buffer.is_null() {
                return Err(Error::OutOfMemory);
            }
            buffer
        };
        self.spill = buffer;
        self.cap = new_cap;
        Ok(())
    }

    /// Appends a run, merging it into the last one when it continues it.
    /// The caller has reserved room for `ceil(len / max_slot_len)` slots.
    fn push_run(&mut self, enc: Encoding, extent_size: usize, start: usize, len: usize) {
        self.extents += len;
        self.capacity += len * extent_size;
        let max = enc.max_slot_len();
        let (mut start, mut len) = (start, len);
        if let Some(last) = self.slots_mut().last_mut() {
            let (last_start, last_len) = enc.unslot(*last);
            if last_start + last_len == start && last_len < max {
                let merged = len.min(max - last_len);
                *last = enc.slot(last_start, last_len + merged);
                start += merged;
                len -= merged;
            }
        }
        while len > 0 {
            let piece = len.min(max);
            debug_assert!(self.room() > 0);
            let slot = enc.slot(start, piece);
            if self.spill.is_null() {
                self.inline[self.len] = slot;
            } else {
                // SAFETY: `len < cap` (room was reserved), so the write is
                // inside the spill buffer.
                unsafe { self.spill.add(self.len).write(slot) };
            }
            self.len += 1;
            start += piece;
            len -= piece;
        }
    }
}

impl Default for PendingAlloc {
    fn default() -> PendingAlloc {
        PendingAlloc::new()
    }
}

impl Drop for PendingAlloc {
    fn drop(&mut self) {
        if !self.spill.is_null() {
            if let Ok(layout) = words_layout(self.cap) {
                // SAFETY: `spill` was allocated with the layout of `cap` words.
                unsafe { alloc::dealloc(self.spill as *mut u8, layout) };
            }
            self.spill = ptr::null_mut();
        }
    }
}

/// What an arena scan found.
struct Scan {
    /// The run to take (local start, length).
    run: Option<(usize, usize)>,
    /// The arena's longest free run, when the scan found no fit and saw
    /// every free run.
    longest: Option<usize>,
}

/// The part of an arena its mutex guards.
struct ArenaState {
    /// One bit per extent of the arena, 1 = free. Bits past `len` are 0.
    bits: Box<[u64]>,
    /// Bit `w` set iff `bits[w] != 0`. Bits past the last word are 0.
    summary: Box<[u64]>,
    /// Bit `s` set iff `summary[s] != 0`, so that a scan over a nearly
    /// full arena skips 4096 allocated extents per step. Bits past the
    /// last summary word are 0.
    top: Box<[u64]>,
    /// Extents in the arena.
    len: usize,
    /// Next-fit position: where the next scan starts.
    cursor: usize,
    /// Free extents.
    free: usize,
    /// Maximal runs of free extents inside the arena.
    runs: usize,
    /// `FIRST_FREE | LAST_FREE` as they are, kept by `mark`, which changes
    /// them only when it marks the first or the last extent: computing
    /// them afresh after every change would read two bitmap words far from
    /// the change, two cache misses when another thread works there.
    edges: u8,
}

/// One independently locked part of the heap.
///
/// `repr(C)` keeps the padding last: the hot fields of two neighbouring
/// arenas in the arena array are then more than a cache line apart, so
/// threads working in different arenas do not share lines (a 64-byte
/// alignment would need an over-aligned allocation, which SPEC §12 item 3
/// rules out).
#[repr(C)]
struct Arena {
    state: Mutex<ArenaState>,
    /// Mirror of `state.runs` for HEAP_ENTRIES.
    runs: Counter,
    /// `FIRST_FREE | LAST_FREE` mirror, to count runs that cross arenas.
    edges: AtomicU8,
    _pad: [u64; 8],
}

/// The lock-free hints of every arena, kept together: an allocation reads
/// the free counts of all arenas, and when the heap is exhausted that is
/// all it reads, so they share one or two cache lines instead of costing a
/// miss per arena.
struct Hints {
    /// Mirror of each arena's `state.free`, for threads deciding whether
    /// to lock it.
    free: Box<[AtomicUsize]>,
    /// No free run of this many extents or more exists in the arena
    /// (`usize::MAX`: unknown). Set after a complete scan, reset by every
    /// free; taking extents only shortens runs, so it stays true until
    /// then. Lets a request skip an arena of scraps without its lock.
    no_run_from: Box<[AtomicUsize]>,
}

/// The runs a thread's put evicted but did not need, kept for its next
/// puts instead of being given back to their arenas.
///
/// A put into a full cache takes its victims' extents directly
/// ([`Heap::adopt`]); a victim larger than the need leaves a remainder.
/// Given back, that remainder costs its arena's lock, bitmap and hints, and
/// the next put soon collects it again as a piece, from an arena that
/// another thread's victims use as much. Kept here, both steps stay in the
/// thread's own cache lines. Spare extents are allocated in the bitmap but
/// counted as free everywhere else: in `POOL_SIZE_USED`, in
/// `HEAP_ENTRIES` and [`Heap::validate`] (which give every spare back
/// first), and by a put that finds nothing left to evict
/// ([`Heap::return_spares`]).
#[derive(Clone, Copy)]
struct SpareRuns {
    /// Runs as slots ([`Encoding::slot`]), each at most `max_slot_len`.
    slots: [u64; SPARE_RUNS],
    /// Runs held.
    len: usize,
    /// Extents held.
    extents: usize,
}

impl SpareRuns {
    fn remove(&mut self, i: usize) {
        self.len -= 1;
        self.slots[i] = self.slots[self.len];
    }
}

/// A spare with its lock-free mirror. One per home arena (threads that
/// share a home share its spare); `repr(C)` and the padding keep two
/// spares, each written by its own thread, off each other's lines.
#[repr(C)]
struct Spare {
    runs: Mutex<SpareRuns>,
    /// Extents held, for the statistics and for a quick look without the
    /// lock.
    extents: AtomicUsize,
    _pad: [u64; 8],
}

/// An arena with its hints: what the operations that change an arena
/// (and publish those changes) work on.
struct ArenaRef<'a> {
    arena: &'a Arena,
    free_hint: &'a AtomicUsize,
    no_run_from: &'a AtomicUsize,
}

impl std::ops::Deref for ArenaRef<'_> {
    type Target = Arena;

    fn deref(&self) -> &Arena {
        self.arena
    }
}

impl ArenaState {
    fn is_free(&self, i: usize) -> bool {
        self.bits[i / 64] >> (i % 64) & 1 != 0
    }

    /// First free extent at or after `pos`.
    fn next_free(&self, pos: usize) -> Option<usize> {
        if pos >= self.len {
            return None;
        }
        let word = pos / 64;
        let here = self.bits[word] & (!0u64 << (pos % 64));
        if here != 0 {
            return Some(word * 64 + here.trailing_zeros() as usize);
        }
        let w = word + 1;
        if w >= self.bits.len() {
            return None;
        }
        let first = |s: usize| {
            let found = s * 64 + self.summary[s].trailing_zeros() as usize;
            Some(found * 64 + self.bits[found].trailing_zeros() as usize)
        };
        let s = w / 64;
        let marks = self.summary[s] & (!0u64 << (w % 64));
        if marks != 0 {
            let found = s * 64 + marks.trailing_zeros() as usize;
            return Some(found * 64 + self.bits[found].trailing_zeros() as usize);
        }
        let mut t = s + 1;
        while t < self.summary.len() {
            let tw = t / 64;
            let tops = self.top[tw] & (!0u64 << (t % 64));
            if tops != 0 {
                return first(tw * 64 + tops.trailing_zeros() as usize);
            }
            t = (tw + 1) * 64;
        }
        None
    }

    /// Length of the free run starting at `start`, counted up to `cap`.
    fn free_run_len(&self, start: usize, cap: usize) -> usize {
        let mut len = 0;
        let mut pos = start;
        while len < cap && pos < self.len {
            let shift = pos % 64;
            let word = self.bits[pos / 64] >> shift;
            // The shift fills the top with zeros, so this is at most
            // `64 - shift`.
            let ones = (!word).trailing_zeros() as usize;
            len += ones;
            if ones < 64 - shift {
                break;
            }
            pos += ones;
        }
        len.min(cap)
    }

    /// A run for `need` extents: the first free run of at least `need`
    /// extents within a bounded scan from the cursor (taking `need` of it),
    /// or, unless `whole_only`, the longest run seen. When no run was long
    /// enough and the scan saw every free run of the arena, `longest` is the
    /// arena's longest free run.
    fn find(&self, need: usize, whole_only: bool, budget: usize) -> Scan {
        let origin = if self.cursor < self.len {
            self.cursor
        } else {
            0
        };
        let mut pos = origin;
        let mut wrapped = false;
        let mut best = (0, 0);
        let mut examined = 0;
        let mut complete = false;
        loop {
            let start = match self.next_free(pos) {
                Some(start) if !(wrapped && start >= origin) => start,
                _ => {
                    if wrapped || origin == 0 {
                        complete = true;
                        break;
                    }
                    wrapped = true;
                    pos = 0;
                    continue;
                }
            };
            // Counted up to `need` only: a longer run is a fit anyway.
            let len = self.free_run_len(start, need);
            if len >= need {
                return Scan {
                    run: Some((start, need)),
                    longest: None,
                };
            }
            if len > best.1 {
                best = (start, len);
            }
            examined += 1;
            if examined >= budget {
                break;
            }
            // `start + len` is allocated (or the end): resume past it.
            pos = start + len + 1;
        }
        // The run through the origin was first seen from the origin only,
        // but a complete scan saw it again from its start after wrapping.
        Scan {
            run: if whole_only || best.1 == 0 {
                None
            } else {
                Some(best)
            },
            longest: complete.then_some(best.1),
        }
    }

    /// Marks `[start, start + len)` free or allocated, keeping the summary,
    /// the free count and the run count exact.
    fn mark(&mut self, start: usize, len: usize, free: bool) {
        let left = start > 0 && self.is_free(start - 1);
        let right = start + len < self.len && self.is_free(start + len);
        for (w, mask) in word_masks(start, len) {
            if free {
                debug_assert_eq!(self.bits[w] & mask, 0, "extent freed twice");
                self.bits[w] |= mask;
                self.summary[w / 64] |= 1 << (w % 64);
                self.top[w / 4096] |= 1 << ((w / 64) % 64);
            } else {
                debug_assert_eq!(self.bits[w] & mask, mask, "extent taken twice");
                self.bits[w] &= !mask;
                if self.bits[w] == 0 {
                    self.summary[w / 64] &= !(1 << (w % 64));
                    if self.summary[w / 64] == 0 {
                        self.top[w / 4096] &= !(1 << ((w / 64) % 64));
                    }
                }
            }
        }
        if start == 0 || start + len == self.len {
            self.edges = self.computed_edges();
        }
        let neighbours = left as usize + right as usize;
        if free {
            self.free += len;
            // One new run, merged with each free neighbour.
            self.runs = self.runs + 1 - neighbours;
        } else {
            self.free -= len;
            // The run loses this part; what remains on each side stays.
            self.runs = self.runs + neighbours - 1;
        }
    }

    /// `FIRST_FREE | LAST_FREE` read from the bitmap.
    fn computed_edges(&self) -> u8 {
        if self.len == 0 {
            return 0;
        }
        let mut edges = 0;
        if self.is_free(0) {
            edges |= FIRST_FREE;
        }
        if self.is_free(self.len - 1) {
            edges |= LAST_FREE;
        }
        edges
    }
}

impl ArenaRef<'_> {
    /// Publishes the lock-free mirrors after a change of `state`.
    fn publish(&self, state: &ArenaState, runs_before: usize) {
        // Relaxed: the mirrors are hints and statistics; the bitmap itself
        // is only read under the mutex, which orders everything that
        // matters. A thread that freed extents and then (by any
        // happens-before path) allocates sees at least this value by
        // coherence, so no free extent is overlooked by a later alloc.
        self.free_hint.store(state.free, Ordering::Relaxed);
        // The arena's mutex is held by every change of `runs`.
        if state.runs >= runs_before {
            self.runs.add_locked((state.runs - runs_before) as u64);
        } else {
            self.runs.sub_locked((runs_before - state.runs) as u64);
        }
        // Relaxed: read only to compute the advisory HEAP_ENTRIES.
        self.edges.store(state.edges, Ordering::Relaxed);
    }

    /// [`ArenaState::find`], remembering what a complete scan learnt.
    fn find(
        &self,
        state: &ArenaState,
        need: usize,
        whole_only: bool,
        budget: usize,
    ) -> Option<(usize, usize)> {
        let scan = state.find(need, whole_only, budget);
        if let Some(longest) = scan.longest {
            // Relaxed: under the lock, see `give`.
            self.no_run_from.store(longest + 1, Ordering::Relaxed);
        }
        scan.run
    }

    fn take(&self, state: &mut ArenaState, start: usize, len: usize) {
        let runs_before = state.runs;
        state.mark(start, len, false);
        state.cursor = if start + len < state.len {
            start + len
        } else {
            0
        };
        self.publish(state, runs_before);
    }

    fn give(&self, state: &mut ArenaState, start: usize, len: usize) {
        // Relaxed: written under the lock; a reader that misses the reset
        // skips the arena for a whole run this once, and still finds its
        // extents when collecting pieces, which ignores the hint.
        self.no_run_from.store(usize::MAX, Ordering::Relaxed);
        let runs_before = state.runs;
        state.mark(start, len, true);
        // The next scan starts at the space just freed, as the original's
        // LIFO free list does: a put into a full cache frees a victim and
        // then allocates, and the victim's run is then found at once
        // instead of after a scan over the scraps between the cursor and it.
        state.cursor = start;
        self.publish(state, runs_before);
    }
}

thread_local! {
    /// This thread's ticket for choosing a home arena (`usize::MAX` until
    /// its first allocation). Const-initialised and without a destructor,
    /// so it never allocates or registers anything.
    static HOME_TICKET: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// Tickets handed out round-robin to threads, shared by every heap.
static NEXT_TICKET: AtomicUsize = AtomicUsize::new(0);

/// No thread has claimed the arena.
const UNCLAIMED: usize = usize::MAX;

/// This thread's ticket: its identity for arena claims and the seed of its
/// home arena.
fn thread_ticket() -> usize {
    HOME_TICKET
        .try_with(|cell| {
            let ticket = cell.get();
            if ticket != usize::MAX {
                return ticket;
            }
            // Relaxed: the ticket only spreads threads over arenas; nothing
            // is published through it.
            let ticket = NEXT_TICKET.fetch_add(1, Ordering::Relaxed) % UNCLAIMED;
            cell.set(ticket);
            ticket
        })
        // Only while the thread's locals are being destroyed: any ticket
        // does, it is a preference.
        .unwrap_or(0)
}

/// The home arena among `arenas` of the thread with `ticket`.
///
/// Tickets 0, 1, 2, 3, ... map to 0, 1/2, 1/4, 3/4, ... of the arena range
/// (the van der Corput sequence): however many threads there are, their
/// homes are spread evenly, leaving each room to grow into the next arenas
/// before it meets another thread's home.
fn home_arena(ticket: usize, arenas: usize) -> usize {
    let fraction = (ticket as u64).reverse_bits();
    ((fraction as u128 * arenas as u128) >> 64) as usize
}

/// Online CPUs (at least 1).
fn online_cpus() -> usize {
    // SAFETY: sysconf only reads system information.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    if n < 1 {
        1
    } else {
        n as usize
    }
}

/// A boxed slice of `n` words, all `value`, without `alloc_zeroed` and
/// without aborting on allocation failure.
fn filled_words(n: usize, value: u64) -> Result<Box<[u64]>> {
    let mut words = Vec::new();
    words.try_reserve_exact(n).map_err(|_| Error::OutOfMemory)?;
    words.resize(n, value);
    Ok(words.into_boxed_slice())
}

/// Checks a level of marks over `lower` (bit `w` of `upper` set iff word
/// `w` of `lower` is not zero, nothing set past the last word), as the
/// summary is over the bitmap and the top over the summary. `upper` has
/// one bit per word of `lower` exactly (checked by the caller).
fn check_marks(lower: &[u64], upper: &[u64]) -> Result<(), String> {
    for (w, &word) in lower.iter().enumerate() {
        let marked = upper[w / 64] >> (w % 64) & 1 != 0;
        if marked != (word != 0) {
            return Err(format!("bit of word {w} is {marked}"));
        }
    }
    if lower.len() % 64 != 0 {
        if let Some(last) = upper.last() {
            if last >> (lower.len() % 64) != 0 {
                return Err("bits past the end".to_string());
            }
        }
    }
    Ok(())
}

/// Atomic words holding `values`; allocation failure is reported.
fn atomic_words(values: impl ExactSizeIterator<Item = usize>) -> Result<Box<[AtomicUsize]>> {
    let mut words = Vec::new();
    words
        .try_reserve_exact(values.len())
        .map_err(|_| Error::OutOfMemory)?;
    words.extend(values.map(AtomicUsize::new));
    Ok(words.into_boxed_slice())
}

/// Values of at least this many bytes are written into the pool with
/// non-temporal stores (on x86-64). Ordinary stores read each line before
/// writing it, but the insertion's lock only waits until the lines are in
/// the cache; streaming stores skip the reads and leave the caches to the
/// index and the records, but their fence and the lock after it wait until
/// every line has reached memory. Below 8 KiB the wait costs more than the
/// reads it saves (see BENCHMARKS.md).
const STREAM_FROM: usize = 8192;

/// Most bytes of a value's place in the pool that a put asks for ahead of
/// its write: the lines beyond are left to the processor's own prefetching
/// of the copy's sequential stores.
const PREFETCH_WRITE: usize = 1024;

/// Copies `n` bytes from `src` to `dst` (not overlapping), with streaming
/// stores where the target supports them. [`stream_fence`] must follow
/// before the bytes are published to another thread.
///
/// # Safety
/// As for `ptr::copy_nonoverlapping`.
#[inline]
unsafe fn stream_copy(src: *const u8, dst: *mut u8, n: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_stream_si128};
        // Ordinary stores up to the first 16-byte boundary of the target
        // (extent sizes need not be multiples of 16).
        let head = (dst.align_offset(16)).min(n);
        // SAFETY: the caller's ranges; every access below stays inside
        // them, and the streamed targets are 16-byte aligned. SSE2 is part
        // of the x86-64 baseline.
        unsafe {
            ptr::copy_nonoverlapping(src, dst, head);
            let mut i = head;
            while i + 64 <= n {
                let s = src.add(i) as *const __m128i;
                let d = dst.add(i) as *mut __m128i;
                let (a, b) = (_mm_loadu_si128(s), _mm_loadu_si128(s.add(1)));
                let (c, e) = (_mm_loadu_si128(s.add(2)), _mm_loadu_si128(s.add(3)));
                _mm_stream_si128(d, a);
                _mm_stream_si128(d.add(1), b);
                _mm_stream_si128(d.add(2), c);
                _mm_stream_si128(d.add(3), e);
                i += 64;
            }
            while i + 16 <= n {
                _mm_stream_si128(
                    dst.add(i) as *mut __m128i,
                    _mm_loadu_si128(src.add(i) as *const __m128i),
                );
                i += 16;
            }
            ptr::copy_nonoverlapping(src.add(i), dst.add(i), n - i);
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    // SAFETY: as the caller promises.
    unsafe {
        ptr::copy_nonoverlapping(src, dst, n)
    }
}

/// Orders the streaming stores of [`stream_copy`] before every later store
/// (the entry's publication by the index insertion's lock release).
#[inline]
fn stream_fence() {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: SSE is part of the x86-64 baseline.
    unsafe {
        std::arch::x86_64::_mm_sfence()
    };
}

/// The extent allocator.
pub(crate) struct Heap {
    /// First byte of the pool (and of the heap).
    base: *mut u8,
    /// The effective extent size `E`.
    extent_size: usize,
    /// Extents in the heap.
    extents: usize,
    /// Extents per arena (a multiple of 64; the last arena may have fewer).
    arena_extents: usize,
    encoding: Encoding,
    arenas: Box<[Arena]>,
    hints: Hints,
    /// Ticket of the thread that claimed each arena, or `UNCLAIMED`. Kept
    /// apart from the arenas: read by every allocation, written rarely.
    owners: Box<[AtomicUsize]>,
    /// One spare per home arena.
    spares: Box<[Spare]>,
}

// SAFETY: `base` points into the pool mapping, which outlives the heap (the
// contract of `Heap::new`); the heap itself only touches pool bytes in
// `write` and `read`, whose callers guarantee exclusive or read-only access
// to the value. All other state is behind the arenas' mutexes or atomic.
unsafe impl Send for Heap {}
// SAFETY: as above.
unsafe impl Sync for Heap {}

impl Heap {
    /// Bytes of every pool kept out of the heap (the original's guard pages).
    pub(crate) const RESERVED: usize = 8192;

    /// A heap over `pool_len` bytes at `base`, in extents of `extent_size`.
    ///
    /// # Safety
    /// `base .. base + pool_len` is mapped read-write for the heap's life.
    pub(crate) unsafe fn new(base: *mut u8, pool_len: usize, extent_size: usize) -> Result<Heap> {
        let wanted = (online_cpus() * ARENAS_PER_CPU).clamp(1, MAX_ARENAS);
        // SAFETY: forwarded from the caller.
        unsafe { Heap::with_arenas(base, pool_len, extent_size, wanted, None) }
    }

    /// [`Heap::new`] with at most `arenas` arenas of at least
    /// `min_arena_words` bitmap words each (the default minimum when
    /// `None`). Tests and benchmarks use it to compare layouts.
    ///
    /// # Safety
    /// As for [`Heap::new`].
    pub(crate) unsafe fn with_arenas(
        base: *mut u8,
        pool_len: usize,
        extent_size: usize,
        arenas: usize,
        min_arena_words: Option<usize>,
    ) -> Result<Heap> {
        if extent_size < crate::MIN_EXTENT {
            return Err(Error::ExtentTooSmall(extent_size));
        }
        if pool_len <= Heap::RESERVED {
            return Err(Error::SizeTooSmall(pool_len));
        }
        let heap_len = pool_len - Heap::RESERVED;
        let extent_size = extent_size.min(heap_len);
        let extents = heap_len / extent_size;
        if extents as u64 >= 1 << 48 {
            return Err(Error::SizeTooLarge(pool_len));
        }
        let words = extents.div_ceil(64);
        let min_words = min_arena_words
            .unwrap_or_else(|| MIN_ARENA_WORDS.max((MIN_ARENA_BYTES / extent_size).div_ceil(64)))
            .max(1);
        let wanted = arenas.clamp(1, MAX_ARENAS).min((words / min_words).max(1));
        let arena_words = words.div_ceil(wanted);
        let count = words.div_ceil(arena_words);
        let arena_extents = arena_words * 64;

        let mut list = Vec::new();
        list.try_reserve_exact(count)
            .map_err(|_| Error::OutOfMemory)?;
        for i in 0..count {
            let first = i * arena_extents;
            let len = arena_extents.min(extents - first);
            let nwords = len.div_ceil(64);
            let mut bits = filled_words(nwords, !0)?;
            if len % 64 != 0 {
                bits[nwords - 1] = (1u64 << (len % 64)) - 1;
            }
            let mut summary = filled_words(nwords.div_ceil(64), !0)?;
            if nwords % 64 != 0 {
                let last = summary.len() - 1;
                summary[last] = (1u64 << (nwords % 64)) - 1;
            }
            let nsummary = summary.len();
            let mut top = filled_words(nsummary.div_ceil(64), !0)?;
            if nsummary % 64 != 0 {
                let last = top.len() - 1;
                top[last] = (1u64 << (nsummary % 64)) - 1;
            }
            let mut state = ArenaState {
                bits,
                summary,
                top,
                len,
                cursor: 0,
                free: len,
                runs: 1,
                edges: 0,
            };
            state.edges = state.computed_edges();
            let arena = Arena {
                runs: Counter::new(),
                edges: AtomicU8::new(state.edges),
                state: Mutex::new(state),
                _pad: [0; 8],
            };
            arena.runs.add(1);
            list.push(arena);
        }
        let mut owners = Vec::new();
        owners
            .try_reserve_exact(count)
            .map_err(|_| Error::OutOfMemory)?;
        owners.resize_with(count, || AtomicUsize::new(UNCLAIMED));
        let arenas = list.into_boxed_slice();
        let hints = Hints {
            free: atomic_words(arenas.iter().map(|arena| arena.state.lock().free))?,
            no_run_from: atomic_words(arenas.iter().map(|_| usize::MAX))?,
        };
        // Hints stored under the lock and read without it: atomics, not
        // data, for valgrind's thread checkers.
        for arena in arenas.iter() {
            valgrind::atomic_word(&arena.edges);
            arena.runs.announce_atomic();
        }
        valgrind::atomic_word(&hints.free[..]);
        valgrind::atomic_word(&hints.no_run_from[..]);
        let mut spares = Vec::new();
        spares
            .try_reserve_exact(count)
            .map_err(|_| Error::OutOfMemory)?;
        spares.resize_with(count, || Spare {
            runs: Mutex::new(SpareRuns {
                slots: [0; SPARE_RUNS],
                len: 0,
                extents: 0,
            }),
            extents: AtomicUsize::new(0),
            _pad: [0; 8],
        });
        for spare in spares.iter() {
            valgrind::atomic_word(&spare.extents);
        }
        Ok(Heap {
            spares: spares.into_boxed_slice(),
            hints,
            base,
            owners: owners.into_boxed_slice(),
            extent_size,
            extents,
            arena_extents,
            encoding: Encoding::for_extents(extents),
            arenas,
        })
    }

    /// The effective extent size.
    pub(crate) fn extent_size(&self) -> usize {
        self.extent_size
    }

    /// The largest value the empty heap can hold.
    pub(crate) fn max_value(&self) -> usize {
        self.extents * self.extent_size
    }

    /// Number of arenas.
    pub(crate) fn arena_count(&self) -> usize {
        self.arenas.len()
    }

    /// DRAM the heap's metadata occupies (bitmaps, summaries, arenas), as
    /// `malloc_usable_size` would count it.
    pub(crate) fn metadata_bytes(&self) -> usize {
        let words = |w: &[AtomicUsize]| accounted_size(std::mem::size_of_val(w));
        let arenas = accounted_size(std::mem::size_of_val::<[Arena]>(&self.arenas))
            + words(&self.owners)
            + words(&self.hints.free)
            + words(&self.hints.no_run_from)
            + accounted_size(std::mem::size_of_val::<[Spare]>(&self.spares));
        self.arenas.iter().fold(arenas, |total, arena| {
            let state = arena.state.lock();
            total
                + accounted_size(std::mem::size_of_val::<[u64]>(&state.bits))
                + accounted_size(std::mem::size_of_val::<[u64]>(&state.summary))
                + accounted_size(std::mem::size_of_val::<[u64]>(&state.top))
        })
    }

    /// Obtains extents for up to `bytes` more bytes of `pending`; returns how
    /// many of those bytes are now covered (0 when the heap is exhausted).
    pub(crate) fn alloc(&self, pending: &mut PendingAlloc, bytes: usize) -> Result<usize> {
        if bytes == 0 {
            return Ok(0);
        }
        let want = bytes.div_ceil(self.extent_size).min(self.extents);
        let len_before = pending.len;
        let last_before = pending.slots().last().copied();
        match self.obtain(pending, want) {
            Ok(got) => Ok(bytes.min(got * self.extent_size)),
            Err(err) => {
                self.roll_back(pending, len_before, last_before);
                Err(err)
            }
        }
    }

    /// The calling thread's home, below [`Heap::homes`]: the arena it
    /// allocates from first, whose spare it keeps extents in.
    pub(crate) fn home(&self) -> usize {
        home_arena(thread_ticket(), self.spares.len())
    }

    /// How many homes threads are spread over.
    pub(crate) fn homes(&self) -> usize {
        self.spares.len()
    }

    /// Takes up to `want` extents into `pending`; returns how many.
    fn obtain(&self, pending: &mut PendingAlloc, want: usize) -> Result<usize> {
        let n = self.arenas.len();
        let me = thread_ticket();
        let home = home_arena(me, n);
        let max_slot = self.encoding.max_slot_len();
        self.claim(home, me);
        pending.reserve(want.div_ceil(max_slot))?;

        // This thread's spare first: a lock that only threads sharing this
        // home take. Relaxed: a hint; `take_spare` looks under the lock.
        let spare = &self.spares[home];
        let spared = spare.extents.load(Ordering::Relaxed) > 0;
        if spared && self.take_spare(spare, pending, want, true) == want {
            return Ok(want);
        }

        // One run for the whole request, if some arena has one, looking in
        // this thread's arenas first, then in unclaimed ones, then in the
        // others: threads whose values are kept apart do not share locks
        // or cache lines, and no arena is fragmented by two threads'
        // interleaved values. Rounds 0 to 2 pass over arenas whose lock is
        // busy (another thread working there is a reason to look
        // elsewhere); round 3 waits for those.
        // Every arena's free count, read once (relaxed: hints, see
        // `ArenaRef::publish`, rechecked under the lock). When the heap is
        // exhausted, as it is before most puts into a full cache, this is
        // the whole cost of finding that out.
        let mut free = [0usize; MAX_ARENAS];
        let mut total = 0usize;
        for (hint, seen) in self.hints.free.iter().zip(free.iter_mut()) {
            *seen = hint.load(Ordering::Relaxed);
            total = total.saturating_add(*seen);
        }
        if total == 0 {
            return Ok(if spared {
                self.take_spare(spare, pending, want, false)
            } else {
                0
            });
        }
        let mut visited = 0u64;
        let mut busy = 0u64;
        for round in 0..4 {
            let mut next = home;
            for _ in 0..n {
                let index = next;
                next = if next + 1 == n { 0 } else { next + 1 };
                let bit = 1u64 << index;
                if round == 3 {
                    if busy & bit == 0 {
                        continue;
                    }
                } else if visited & bit != 0 {
                    continue;
                }
                let preference = self.preference(index, home, me);
                if round < 3 && preference > round {
                    continue;
                }
                visited |= bit;
                let arena = self.arena(index);
                // Relaxed: a hint, as above.
                if free[index] < want || arena.no_run_from.load(Ordering::Relaxed) <= want {
                    continue;
                }
                let mut state = if round == 3 {
                    arena.state.lock()
                } else {
                    match arena.state.try_lock() {
                        Some(state) => state,
                        None => {
                            busy |= bit;
                            continue;
                        }
                    }
                };
                // A full scan in this thread's arenas; a glance elsewhere,
                // so that a fragmented heap does not cost a full scan of
                // every arena.
                let budget = if preference == 0 {
                    RUNS_PER_SCAN
                } else {
                    RUNS_PER_SCAN / 8
                };
                if let Some((start, len)) = arena.find(&state, want, true, budget) {
                    arena.take(&mut state, start, len);
                    drop(state);
                    if preference == 1 {
                        self.claim(index, me);
                    }
                    pending.push_run(
                        self.encoding,
                        self.extent_size,
                        self.global(index, start),
                        len,
                    );
                    return Ok(want);
                }
            }
        }

        // Pieces: the spare's first, then from wherever they are, home
        // first.
        let mut got = if spared {
            self.take_spare(spare, pending, want, false)
        } else {
            0
        };
        if got == want {
            return Ok(got);
        }
        let mut next = home;
        for _ in 0..n {
            let index = next;
            next = if next + 1 == n { 0 } else { next + 1 };
            let arena = self.arena(index);
            let mut hint = free[index];
            while got < want && hint > 0 {
                // Never allocate DRAM under the lock: make room first, and
                // come back for more room if the pieces outnumber it.
                pending.reserve(INLINE_SLOTS)?;
                let mut out_of_room = false;
                let mut state = arena.state.lock();
                while got < want && state.free > 0 {
                    if pending.room() == 0 {
                        out_of_room = true;
                        break;
                    }
                    let cap = (want - got).min(pending.room().saturating_mul(max_slot));
                    let Some((start, len)) = arena.find(&state, cap, false, RUNS_PER_SCAN) else {
                        break;
                    };
                    arena.take(&mut state, start, len);
                    pending.push_run(
                        self.encoding,
                        self.extent_size,
                        self.global(index, start),
                        len,
                    );
                    got += len;
                }
                drop(state);
                if !out_of_room {
                    break;
                }
                // Relaxed: as above.
                hint = arena.free_hint.load(Ordering::Relaxed);
            }
            if got == want {
                break;
            }
        }
        Ok(got)
    }

    /// Takes up to `want` extents from `spare` into `pending`; returns how
    /// many. With `whole_only`, one run of `want` from the shortest run
    /// that is long enough, or nothing; otherwise pieces, longest first,
    /// while `pending` has room (each spare run fills at most one slot).
    fn take_spare(
        &self,
        spare: &Spare,
        pending: &mut PendingAlloc,
        want: usize,
        whole_only: bool,
    ) -> usize {
        let enc = self.encoding;
        let mut runs = spare.runs.lock();
        let mut got = 0;
        while got < want && pending.room() > 0 {
            let need = want - got;
            let mut pick: Option<(usize, usize)> = None;
            for (i, &slot) in runs.slots[..runs.len].iter().enumerate() {
                let (_, len) = enc.unslot(slot);
                let better = match pick {
                    None => !whole_only || len >= need,
                    Some((_, best)) if whole_only => len >= need && len < best,
                    Some((_, best)) => len > best,
                };
                if better {
                    pick = Some((i, len));
                }
            }
            let Some((i, len)) = pick else { break };
            let (start, _) = enc.unslot(runs.slots[i]);
            let take = len.min(need);
            pending.push_run(enc, self.extent_size, start, take);
            if take < len {
                runs.slots[i] = enc.slot(start + take, len - take);
            } else {
                runs.remove(i);
            }
            runs.extents -= take;
            got += take;
        }
        // Relaxed: a mirror, written under the lock.
        spare.extents.store(runs.extents, Ordering::Relaxed);
        got
    }

    /// Keeps `[start, start + len)` (global extents, at most one slot's
    /// worth) in the calling thread's spare, joined to a run it continues
    /// when there is one; gives it back to its arena when the spare has no
    /// room for it (in runs or in [`SPARE_BYTES`]).
    fn keep_spare(&self, start: usize, len: usize) {
        let enc = self.encoding;
        let max = enc.max_slot_len();
        let spare = &self.spares[home_arena(thread_ticket(), self.spares.len())];
        let kept = {
            let mut runs = spare.runs.lock();
            let mut kept = false;
            let room = (SPARE_BYTES / self.extent_size).saturating_sub(runs.extents);
            if len <= room {
                for i in 0..runs.len {
                    let (s, l) = enc.unslot(runs.slots[i]);
                    if l + len > max {
                        continue;
                    }
                    if s + l == start {
                        runs.slots[i] = enc.slot(s, l + len);
                    } else if start + len == s {
                        runs.slots[i] = enc.slot(start, l + len);
                    } else {
                        continue;
                    }
                    kept = true;
                    break;
                }
                if !kept && runs.len < SPARE_RUNS {
                    let at = runs.len;
                    runs.slots[at] = enc.slot(start, len);
                    runs.len += 1;
                    kept = true;
                }
            }
            if kept {
                runs.extents += len;
                // Relaxed: as in `take_spare`.
                spare.extents.store(runs.extents, Ordering::Relaxed);
            }
            kept
        };
        if kept {
            self.prefetch_spare(start, len);
        } else {
            // No spare lock is held here: a thread holds one lock at a time.
            self.give_back(&mut None, start, len);
        }
    }

    /// Gives every thread's spare back to the arenas; returns how many
    /// extents that was. A put that finds nothing left to evict calls it
    /// before it gives up, so that extents kept for other threads' next
    /// puts never make a value fail that the pool can hold; the statistics
    /// of free regions and [`Heap::validate`] call it to see the heap
    /// whole.
    pub(crate) fn return_spares(&self) -> usize {
        let mut returned = 0;
        for spare in self.spares.iter() {
            // Relaxed: a spare that another thread fills just now is that
            // thread's to use; one it filled before the caller's view of it
            // (by any happens-before path) shows here by coherence.
            if spare.extents.load(Ordering::Relaxed) == 0 {
                continue;
            }
            let taken = {
                let mut runs = spare.runs.lock();
                let taken = *runs;
                runs.len = 0;
                runs.extents = 0;
                spare.extents.store(0, Ordering::Relaxed);
                taken
            };
            self.give_back_slots(&taken.slots[..taken.len]);
            returned += taken.extents;
        }
        returned
    }

    /// Gives back what `pending` obtained since it had `len_before` slots,
    /// the last of which was `last_before`.
    fn roll_back(&self, pending: &mut PendingAlloc, len_before: usize, last_before: Option<u64>) {
        let enc = self.encoding;
        let mut returned = 0;
        let mut guard = None;
        for &slot in &pending.slots()[len_before..] {
            let (start, len) = enc.unslot(slot);
            self.give_back(&mut guard, start, len);
            returned += len;
        }
        pending.len = len_before;
        if let Some(old) = last_before {
            if let Some(last) = pending.slots_mut().last_mut() {
                if *last != old {
                    // A merge extended the last run: give the extension back.
                    let (start, old_len) = enc.unslot(old);
                    let (_, new_len) = enc.unslot(*last);
                    *last = old;
                    self.give_back(&mut guard, start + old_len, new_len - old_len);
                    returned += new_len - old_len;
                }
            }
        }
        drop(guard);
        pending.extents -= returned;
        pending.capacity -= returned * self.extent_size;
    }

    /// How much thread `me` (at home in `home`) prefers arena `index`: 0 for
    /// its own arenas, 1 for unclaimed ones, 2 for other threads' arenas.
    fn preference(&self, index: usize, home: usize, me: usize) -> usize {
        if index == home {
            return 0;
        }
        // Relaxed: claims are advice about where to look first; no data is
        // published through them.
        match self.owners[index].load(Ordering::Relaxed) {
            owner if owner == me => 0,
            UNCLAIMED => 1,
            _ => 2,
        }
    }

    /// Claims arena `index` for thread `me` if nobody has yet. Claims are
    /// never given up (a thread's end cannot be observed without a
    /// thread-local destructor); a claimed arena stays usable by everyone,
    /// it is only searched later by others.
    fn claim(&self, index: usize, me: usize) {
        let owner = &self.owners[index];
        // Relaxed: see `preference`.
        if owner.load(Ordering::Relaxed) == UNCLAIMED {
            let _ = owner.compare_exchange(UNCLAIMED, me, Ordering::Relaxed, Ordering::Relaxed);
        }
    }

    /// Global index of local extent `start` of arena `index`.
    fn global(&self, index: usize, start: usize) -> usize {
        index * self.arena_extents + start
    }

    /// Arena `index` with its hints.
    fn arena(&self, index: usize) -> ArenaRef<'_> {
        ArenaRef {
            arena: &self.arenas[index],
            free_hint: &self.hints.free[index],
            no_run_from: &self.hints.no_run_from[index],
        }
    }

    /// Frees `[start, start + len)` (global extents), which may cross arena
    /// boundaries. `guard` carries a held arena lock from one call to the
    /// next, so consecutive runs in one arena take its lock once.
    fn give_back<'a>(
        &'a self,
        guard: &mut Option<(usize, MutexGuard<'a, ArenaState>)>,
        start: usize,
        len: usize,
    ) {
        let (mut start, mut len) = (start, len);
        while len > 0 {
            let index = start / self.arena_extents;
            let local = start - index * self.arena_extents;
            let piece = len.min(self.arena_extents - local);
            if index >= self.arenas.len() {
                debug_assert!(false, "run outside the heap");
                return;
            }
            let arena = self.arena(index);
            if guard.as_ref().map(|(held, _)| *held) != Some(index) {
                // Release the previous lock before taking the next: no
                // thread ever holds two arena locks at once.
                *guard = None;
                *guard = Some((index, arena.arena.state.lock()));
            }
            if let Some((_, state)) = guard.as_mut() {
                arena.give(state, local, piece);
            }
            start += piece;
            len -= piece;
        }
    }

    /// Turns the extents obtained into the value's allocation. On failure
    /// the extents are given back.
    pub(crate) fn finish(&self, pending: PendingAlloc) -> Result<Allocation> {
        let count = match pending.slots() {
            [] => return Ok(Allocation::EMPTY),
            [only] => match self.encoding.inline(*only) {
                Some(word) => return Ok(Allocation(word)),
                None => 1,
            },
            slots => slots.len(),
        };
        let list = self.new_list(count);
        if list.is_null() {
            self.release(pending);
            return Err(Error::OutOfMemory);
        }
        // SAFETY: `list` has room for the count and `count` slots and does
        // not overlap the pending allocation's buffers.
        unsafe {
            list.write(count as u64);
            ptr::copy_nonoverlapping(pending.slots().as_ptr(), list.add(1), count);
        }
        Ok(Allocation(list as usize as u64))
    }

    /// A run list buffer for `slots` slots, or null.
    fn new_list(&self, slots: usize) -> *mut u64 {
        #[cfg(test)]
        if fault::injected() {
            return ptr::null_mut();
        }
        match words_layout(slots + 1) {
            // SAFETY: the layout is non-zero. `alloc` returns memory aligned
            // to 8, so bit 0 of the pointer is clear, as the tag requires.
            Ok(layout) => unsafe { alloc::alloc(layout) as *mut u64 },
            Err(_) => ptr::null_mut(),
        }
    }

    /// Gives back extents obtained for a put that failed.
    pub(crate) fn release(&self, pending: PendingAlloc) {
        self.give_back_slots(pending.slots());
    }

    /// Gives back the runs `slots` hold, taking each arena's lock once for
    /// consecutive runs in it.
    fn give_back_slots(&self, slots: &[u64]) {
        let mut guard = None;
        for &slot in slots {
            let (start, len) = self.encoding.unslot(slot);
            self.give_back(&mut guard, start, len);
        }
    }

    /// Moves the extents of a value that is going away into `pending`, up
    /// to `bytes` worth, and keeps the rest in the calling thread's spare:
    /// a put that evicted to make room takes its victim's space directly,
    /// without returning it to the bitmap and searching the arenas (and
    /// their locks) for it again, and so does its thread's next put with
    /// what is left over.
    /// Returns the bytes added to `pending`. When `pending` cannot grow
    /// (no DRAM), the extents are all given back and the error returned.
    pub(crate) fn adopt(
        &self,
        pending: &mut PendingAlloc,
        alloc: Allocation,
        bytes: usize,
    ) -> Result<usize> {
        if alloc.is_empty() {
            return Ok(0);
        }
        let mut scratch = [0];
        let slots = self.slots_of(&alloc, &mut scratch);
        // Every victim slot is at most `max_slot_len` long, so each adds at
        // most one slot to `pending` (see `push_run`).
        if let Err(err) = pending.reserve(slots.len()) {
            self.free(alloc);
            return Err(err);
        }
        let want = bytes.div_ceil(self.extent_size).min(self.extents);
        let mut got = 0;
        for &slot in slots {
            let (start, len) = self.encoding.unslot(slot);
            let take = len.min(want - got);
            if take > 0 {
                pending.push_run(self.encoding, self.extent_size, start, take);
                got += take;
            }
            if take < len {
                self.keep_spare(start + take, len - take);
            }
        }
        self.discard(alloc);
        Ok(bytes.min(got * self.extent_size))
    }

    /// Gives back a value's extents.
    pub(crate) fn free(&self, alloc: Allocation) {
        let mut scratch = [0];
        self.give_back_slots(self.slots_of(&alloc, &mut scratch));
        self.discard(alloc);
    }

    /// Frees an allocation's run list without giving its extents back: for
    /// tearing down a cache whose heap goes away with it.
    pub(crate) fn discard(&self, alloc: Allocation) {
        if let Some(list) = alloc.list() {
            let slots = alloc.list_slots().len();
            if let Ok(layout) = words_layout(slots + 1) {
                // SAFETY: the list was allocated by `new_list` with the
                // layout of `slots + 1` words, and `alloc` (consumed here)
                // was its only owner.
                unsafe { alloc::dealloc(list as *mut u8, layout) };
            }
        }
    }

    /// The runs of `alloc` as slots; `scratch` holds an inline run.
    fn slots_of<'a>(&self, alloc: &'a Allocation, scratch: &'a mut [u64; 1]) -> &'a [u64] {
        if alloc.is_empty() {
            &[]
        } else if alloc.is_inline() {
            scratch[0] = self.encoding.inline_slot(alloc.0);
            &scratch[..]
        } else {
            alloc.list_slots()
        }
    }

    /// Where the value of `alloc` starts in the pool, and the bytes of its
    /// first run; `None` without storage.
    pub(crate) fn first_run(&self, alloc: &Allocation) -> Option<(*const u8, usize)> {
        let mut scratch = [0];
        let &slot = self.slots_of(alloc, &mut scratch).first()?;
        let (start, len) = self.encoding.unslot(slot);
        let at = self.base.wrapping_add(start * self.extent_size) as *const u8;
        Some((at, len * self.extent_size))
    }

    /// Asks for the pool lines that a write of `bytes` bytes into `alloc`
    /// (from its first byte) will store to ([`crate::hint::prefetch_for_write`]),
    /// at most [`PREFETCH_WRITE`] bytes' worth, as part of a value of
    /// `value_len` bytes. A put that takes a victim's extents calls it as
    /// soon as it knows them: the lines, cold, then arrive while the
    /// eviction waits for its own misses, instead of holding up the
    /// insertion's lock, which waits for the copy's stores.
    /// Values that [`Heap::write`] streams are left alone.
    pub(crate) fn prefetch_write(&self, alloc: &Allocation, bytes: usize, value_len: usize) {
        if value_len < STREAM_FROM {
            self.each_line(
                alloc,
                bytes.min(PREFETCH_WRITE),
                crate::hint::prefetch_for_write,
            );
        }
    }

    /// Asks for the lines of the first [`PREFETCH_WRITE`] bytes of the run
    /// `[start, start + len)`, which a put has just kept in its spare: its
    /// thread's next put most likely writes the beginning of its value
    /// there.
    fn prefetch_spare(&self, start: usize, len: usize) {
        let bytes = (len * self.extent_size).min(PREFETCH_WRITE);
        self.run_lines(start, bytes, crate::hint::prefetch_for_write);
    }

    /// Calls `f` with an address in each 64-byte line that the first
    /// `bytes` bytes of `alloc` (at most all of it) occupy: runs start on
    /// line boundaries when extents are multiples of 64 bytes, and at worst
    /// a line at a run's end is left out.
    fn each_line(&self, alloc: &Allocation, bytes: usize, mut f: impl FnMut(*const u8)) {
        let mut scratch = [0];
        let mut left = bytes;
        for &slot in self.slots_of(alloc, &mut scratch) {
            if left == 0 {
                break;
            }
            let (start, len) = self.encoding.unslot(slot);
            let n = (len * self.extent_size).min(left);
            self.run_lines(start, n, &mut f);
            left -= n;
        }
    }

    /// Calls `f` with an address in each 64-byte line of the first `bytes`
    /// bytes from extent `start` on.
    fn run_lines(&self, start: usize, bytes: usize, mut f: impl FnMut(*const u8)) {
        let first = self.base.wrapping_add(start * self.extent_size);
        for line in (0..bytes).step_by(64) {
            f(first.wrapping_add(line));
        }
    }

    /// Copies `src` into the allocation, from its first byte.
    ///
    /// # Safety
    /// `alloc` came from this heap, is not freed, and holds ≥ `src.len()`
    /// bytes; no other thread reads it until the entry is published.
    pub(crate) unsafe fn write(&self, alloc: &Allocation, src: &[u8]) {
        let mut scratch = [0];
        let mut done = 0;
        let stream = src.len() >= STREAM_FROM;
        for &slot in self.slots_of(alloc, &mut scratch) {
            if done == src.len() {
                break;
            }
            let (start, len) = self.encoding.unslot(slot);
            let n = (len * self.extent_size).min(src.len() - done);
            // SAFETY: the run lies inside the heap (it came from this heap),
            // which the caller keeps mapped; the allocation is exclusively
            // the caller's until published; `done + n ≤ src.len()`.
            unsafe {
                let (from, to) = (
                    src.as_ptr().add(done),
                    self.base.add(start * self.extent_size),
                );
                if stream {
                    stream_copy(from, to, n);
                } else {
                    ptr::copy_nonoverlapping(from, to, n);
                }
            }
            done += n;
        }
        if stream {
            stream_fence();
        }
        debug_assert_eq!(done, src.len(), "value larger than its allocation");
    }

    /// Copies `dst.len()` bytes of the value, starting at byte `offset`.
    ///
    /// # Safety
    /// `alloc` came from this heap and is not freed; `offset + dst.len()`
    /// is within the value.
    pub(crate) unsafe fn read(&self, alloc: &Allocation, offset: usize, dst: &mut [u8]) {
        let mut scratch = [0];
        let mut skip = offset;
        let mut done = 0;
        for &slot in self.slots_of(alloc, &mut scratch) {
            if done == dst.len() {
                break;
            }
            let (start, len) = self.encoding.unslot(slot);
            let bytes = len * self.extent_size;
            if skip >= bytes {
                skip -= bytes;
                continue;
            }
            let n = (bytes - skip).min(dst.len() - done);
            // SAFETY: the run lies inside the mapped heap; the allocation is
            // live (the caller holds a reference) and written before it was
            // published; `skip + n ≤ bytes` and `done + n ≤ dst.len()`.
            unsafe {
                ptr::copy_nonoverlapping(
                    self.base.add(start * self.extent_size + skip),
                    dst.as_mut_ptr().add(done),
                    n,
                );
            }
            skip = 0;
            done += n;
        }
        debug_assert_eq!(done, dst.len(), "read past the value");
    }

    /// POOL_SIZE_USED: pool bytes allocated to values.
    pub(crate) fn used_bytes(&self) -> u64 {
        if !cfg!(feature = "stats") {
            return 0;
        }
        let free: usize = self
            .hints
            .free
            .iter()
            // Relaxed: an advisory statistic (SPEC §14 #24); each mirror is
            // at most its arena's size, so the total never exceeds the heap.
            .map(|hint| hint.load(Ordering::Relaxed))
            .sum();
        // Relaxed: as above; spare extents count as free.
        let spare: usize = self
            .spares
            .iter()
            .map(|spare| spare.extents.load(Ordering::Relaxed))
            .sum();
        (self.extents.saturating_sub(free + spare) * self.extent_size) as u64
    }

    /// HEAP_ENTRIES: separate free regions. The spares are given back
    /// first, so that a run kept in one counts with the free run next to
    /// it as the one region it is.
    pub(crate) fn free_regions(&self) -> u64 {
        if !cfg!(feature = "stats") {
            return 0;
        }
        self.return_spares();
        let runs = crate::stats::sum_clamped(self.arenas.iter().map(|arena| arena.runs.get()));
        // A run that crosses from one arena into the next is counted by both.
        let crossing = self
            .arenas
            .windows(2)
            .filter(|pair| {
                // Relaxed: advisory, as above.
                let left = pair[0].edges.load(Ordering::Relaxed);
                let right = pair[1].edges.load(Ordering::Relaxed);
                left & LAST_FREE != 0 && right & FIRST_FREE != 0
            })
            .count() as u64;
        runs.saturating_sub(crossing)
    }

    /// Checks every invariant.
    pub(crate) fn validate(&self) -> Result<(), String> {
        self.check(None)
    }

    /// Checks every invariant, and that the allocated extents are exactly
    /// those of `live`, each owned once.
    pub(crate) fn validate_with(&self, live: &[&Allocation]) -> Result<(), String> {
        self.check(Some(live))
    }

    fn check(&self, live: Option<&[&Allocation]>) -> Result<(), String> {
        // Spare extents are free: in the bitmap too, for the checks below.
        self.return_spares();
        // Every arena locked, in index order, so the picture is consistent.
        let states: Vec<MutexGuard<'_, ArenaState>> =
            self.arenas.iter().map(|arena| arena.state.lock()).collect();
        let mut total_free = 0;
        let mut total_runs = 0;
        let mut previous_free = false;
        // Arenas cover whole words, so their bitmaps laid end to end are
        // the heap's.
        let mut global_free: Vec<u64> = Vec::new();
        for (index, (arena, state)) in self.arenas.iter().zip(&states).enumerate() {
            let expected_len = self
                .arena_extents
                .min(self.extents - index * self.arena_extents);
            if state.len != expected_len {
                return Err(format!(
                    "arena {index}: {} extents, expected {expected_len}",
                    state.len
                ));
            }
            if state.bits.len() != state.len.div_ceil(64) {
                return Err(format!(
                    "arena {index}: bitmap of {} words",
                    state.bits.len()
                ));
            }
            if state.summary.len() != state.bits.len().div_ceil(64) {
                return Err(format!(
                    "arena {index}: summary of {} words",
                    state.summary.len()
                ));
            }
            if state.cursor >= state.len && state.cursor != 0 {
                return Err(format!(
                    "arena {index}: cursor {} out of range",
                    state.cursor
                ));
            }
            if state.len % 64 != 0 {
                let last = state.bits[state.bits.len() - 1];
                if last >> (state.len % 64) != 0 {
                    return Err(format!("arena {index}: free bits past the end"));
                }
            }
            check_marks(&state.bits, &state.summary)
                .map_err(|e| format!("arena {index}: summary {e}"))?;
            if state.top.len() != state.summary.len().div_ceil(64) {
                return Err(format!("arena {index}: top of {} words", state.top.len()));
            }
            check_marks(&state.summary, &state.top)
                .map_err(|e| format!("arena {index}: top {e}"))?;
            // Runs start where a free bit follows an allocated one; the
            // carry is the bit before the word (locally: none before the
            // arena; globally: the previous arena's last extent).
            let mut free = 0;
            let mut runs = 0;
            let mut local_carry = 0;
            for &word in state.bits.iter() {
                free += word.count_ones() as usize;
                runs += (word & !((word << 1) | local_carry)).count_ones() as usize;
                local_carry = word >> 63;
            }
            if let Some(&first) = state.bits.first() {
                total_runs += runs;
                if previous_free && first & 1 != 0 {
                    total_runs -= 1;
                }
            }
            previous_free = state.len > 0 && state.is_free(state.len - 1);
            global_free.extend_from_slice(&state.bits);
            if free != state.free {
                return Err(format!(
                    "arena {index}: {} free recorded, {free} counted",
                    state.free
                ));
            }
            if runs != state.runs {
                return Err(format!(
                    "arena {index}: {} runs recorded, {runs} counted",
                    state.runs
                ));
            }
            // Relaxed: all arenas are locked, so the mirrors are settled.
            let hint = self.hints.free[index].load(Ordering::Relaxed);
            if hint != free {
                return Err(format!("arena {index}: free mirror {hint}, {free} counted"));
            }
            let edges = arena.edges.load(Ordering::Relaxed);
            if state.edges != state.computed_edges() {
                return Err(format!(
                    "arena {index}: edges {} recorded, {} actual",
                    state.edges,
                    state.computed_edges()
                ));
            }
            if edges != state.edges {
                return Err(format!(
                    "arena {index}: edge mirror {edges}, {} actual",
                    state.edges
                ));
            }
            let no_run_from = self.hints.no_run_from[index].load(Ordering::Relaxed);
            if no_run_from != usize::MAX {
                let mut pos = 0;
                while let Some(start) = state.next_free(pos) {
                    let len = state.free_run_len(start, usize::MAX);
                    if len >= no_run_from {
                        return Err(format!(
                            "arena {index}: run {start}+{len} but none of {no_run_from} recorded"
                        ));
                    }
                    pos = start + len;
                }
            }
            if cfg!(feature = "stats") && arena.runs.get() != runs as i64 {
                return Err(format!(
                    "arena {index}: run counter {}, {runs} counted",
                    arena.runs.get()
                ));
            }
            total_free += free;
        }
        if cfg!(feature = "stats") {
            let used = ((self.extents - total_free) * self.extent_size) as u64;
            if self.used_bytes() != used {
                return Err(format!(
                    "used_bytes {} but {used} allocated",
                    self.used_bytes()
                ));
            }
            if self.free_regions() != total_runs as u64 {
                return Err(format!(
                    "free_regions {} but {total_runs} counted",
                    self.free_regions()
                ));
            }
        } else if self.used_bytes() != 0 || self.free_regions() != 0 {
            return Err("statistics read non-zero without the stats feature".into());
        }

        let Some(live) = live else {
            return Ok(());
        };
        // Validation is not on a traced path: a zeroed allocation is fine.
        let mut owned = vec![0u64; self.extents.div_ceil(64)];
        let mut owned_count = 0;
        for (n, alloc) in live.iter().enumerate() {
            if alloc.list().is_some() && alloc.list_slots().is_empty() {
                return Err(format!("allocation {n}: empty run list"));
            }
            let mut scratch = [0];
            for &slot in self.slots_of(alloc, &mut scratch) {
                let (start, len) = self.encoding.unslot(slot);
                if start + len > self.extents {
                    return Err(format!(
                        "allocation {n}: run {start}+{len} outside the heap"
                    ));
                }
                for (word, mask) in word_masks(start, len) {
                    if owned[word] & mask != 0 {
                        return Err(format!("allocation {n}: run {start}+{len} owned twice"));
                    }
                    owned[word] |= mask;
                    if global_free[word] & mask != 0 {
                        return Err(format!("allocation {n}: run {start}+{len} is partly free"));
                    }
                }
                owned_count += len;
            }
        }
        if owned_count != self.extents - total_free {
            return Err(format!(
                "{} extents allocated but {owned_count} owned by live allocations",
                self.extents - total_free
            ));
        }
        Ok(())
    }
}

/// Figures of the allocator: alloc+free throughput for several threads and
/// layouts, and data density under churn (`cargo bench --features internals
/// --bench heap`).
#[cfg(feature = "internals")]
pub mod bench {
    use std::collections::VecDeque;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Barrier;
    use std::time::{Duration, Instant};

    use super::{Allocation, Heap, PendingAlloc};

    const MIB: usize = 1024 * 1024;

    /// xorshift64*: cheap and good enough to pick sizes.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn between(&mut self, low: usize, high: usize) -> usize {
            low + (self.next() % (high - low + 1) as u64) as usize
        }
    }

    /// An anonymous pool and a heap over it.
    struct Bed {
        heap: Heap,
        _map: memmap2::MmapMut,
    }

    impl Bed {
        fn new(pool: usize, extent: usize, arenas: Option<usize>) -> Bed {
            let mut map = memmap2::MmapMut::map_anon(pool).expect("anonymous pool");
            let base = map.as_mut_ptr();
            // SAFETY: the mapping lives in the bed, dropped after the heap.
            let heap = unsafe {
                match arenas {
                    Some(n) => Heap::with_arenas(base, pool, extent, n, None),
                    None => Heap::new(base, pool, extent),
                }
            }
            .expect("heap");
            Bed { heap, _map: map }
        }
    }

    /// Allocates `bytes`, freeing the oldest values of `fifo` while the heap
    /// is exhausted (what the cache does with LRU and no gets).
    fn put(
        heap: &Heap,
        fifo: &mut VecDeque<(Allocation, usize)>,
        bytes: usize,
    ) -> Option<Allocation> {
        let mut pending = PendingAlloc::new();
        let mut remaining = bytes;
        while remaining > 0 {
            let got = heap.alloc(&mut pending, remaining).ok()?;
            remaining -= got;
            if got == 0 {
                match fifo.pop_front() {
                    Some((oldest, _)) => heap.free(oldest),
                    None => {
                        heap.release(pending);
                        return None;
                    }
                }
            }
        }
        heap.finish(pending).ok()
    }

    fn machine() -> String {
        let model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|text| {
                text.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split(':').nth(1))
                    .map(|m| m.trim().to_string())
            })
            .unwrap_or_else(|| "unknown CPU".into());
        format!("{model}, {} online CPUs", super::online_cpus())
    }

    /// alloc+free pairs per second with `threads` threads, each keeping a
    /// FIFO of its values so that the heap stays about 90 % full.
    fn throughput(threads: usize, arenas: Option<usize>, run: Duration) -> (f64, usize) {
        let pool = 1024 * MIB;
        let bed = Bed::new(pool, 256, arenas);
        let heap = &bed.heap;
        let share = heap.max_value() / 10 * 9 / threads;
        let barrier = Barrier::new(threads + 1);
        let stop = AtomicBool::new(false);
        let pairs = AtomicU64::new(0);
        let mut elapsed = Duration::ZERO;
        std::thread::scope(|scope| {
            for t in 0..threads {
                let (barrier, stop, pairs) = (&barrier, &stop, &pairs);
                scope.spawn(move || {
                    let mut rng = Rng(0x1234_5678 + t as u64);
                    let mut fifo = VecDeque::new();
                    let mut held = 0;
                    while held < share {
                        let size = rng.between(256, 1024);
                        let Some(alloc) = put(heap, &mut fifo, size) else {
                            break;
                        };
                        held += size.div_ceil(256) * 256;
                        fifo.push_back((alloc, size));
                    }
                    barrier.wait();
                    let mut done = 0u64;
                    // Relaxed: a stop signal; nothing is published with it.
                    while !stop.load(Ordering::Relaxed) {
                        for _ in 0..64 {
                            if let Some((oldest, _)) = fifo.pop_front() {
                                heap.free(oldest);
                            }
                            let size = rng.between(256, 1024);
                            if let Some(alloc) = put(heap, &mut fifo, size) {
                                fifo.push_back((alloc, size));
                            }
                        }
                        done += 64;
                    }
                    // Relaxed: read after the threads are joined.
                    pairs.fetch_add(done, Ordering::Relaxed);
                    barrier.wait();
                    for (alloc, _) in fifo {
                        heap.free(alloc);
                    }
                });
            }
            barrier.wait();
            let start = Instant::now();
            std::thread::sleep(run);
            // Relaxed: see above.
            stop.store(true, Ordering::Relaxed);
            barrier.wait();
            elapsed = start.elapsed();
        });
        let arena_count = heap.arena_count();
        // Relaxed: the threads are joined.
        (
            pairs.load(Ordering::Relaxed) as f64 / elapsed.as_secs_f64(),
            arena_count,
        )
    }

    /// Runs of an allocation (inline: one).
    fn runs(heap: &Heap, alloc: &Allocation) -> usize {
        let mut scratch = [0];
        heap.slots_of(alloc, &mut scratch).len()
    }

    /// Fills a 64 MiB pool with values from `size`, then churns; prints
    /// density figures.
    fn density(name: &str, mut size: impl FnMut(&mut Rng) -> usize, churn: usize) {
        let pool = 64 * MIB;
        let bed = Bed::new(pool, 256, None);
        let heap = &bed.heap;
        let mut rng = Rng(42);
        let mut fifo: VecDeque<(Allocation, usize)> = VecDeque::new();
        let mut live_bytes = 0usize;
        let mut evicted = false;
        let (mut puts, mut sum_live, mut sum_used, mut min_live, mut min_used) =
            (0, 0.0, 0.0, 1.0f64, 1.0f64);
        let (mut sum_runs, mut list_dram) = (0usize, 0usize);
        while puts < churn {
            let bytes = size(&mut rng);
            let before = fifo.len();
            let mut freed = 0;
            let mut pending = PendingAlloc::new();
            let mut remaining = bytes;
            while remaining > 0 {
                let got = heap.alloc(&mut pending, remaining).expect("DRAM");
                remaining -= got;
                if got == 0 {
                    let (oldest, len) = fifo.pop_front().expect("value larger than the pool");
                    freed += len;
                    heap.free(oldest);
                }
            }
            let alloc = heap.finish(pending).expect("DRAM");
            live_bytes = live_bytes + bytes - freed;
            if fifo.len() < before {
                evicted = true;
            }
            if evicted {
                puts += 1;
                let live = live_bytes as f64 / pool as f64;
                let used = heap.used_bytes() as f64 / pool as f64;
                sum_live += live;
                sum_used += used;
                min_live = min_live.min(live);
                min_used = min_used.min(used);
                sum_runs += runs(heap, &alloc);
                list_dram += alloc.dram_size();
            }
            fifo.push_back((alloc, bytes));
        }
        let live_runs: usize = fifo.iter().map(|(a, _)| runs(heap, a)).sum();
        println!(
            "  {name:<22} live/pool {:6.2} % (min {:6.2} %), POOL_SIZE_USED/pool {:6.2} % (min {:6.2} %), \
             runs/value {:.3} (live at end: {:.3}), run-list DRAM {:.1} B/value, free regions {}",
            100.0 * sum_live / puts as f64,
            100.0 * min_live,
            100.0 * sum_used / puts as f64,
            100.0 * min_used,
            sum_runs as f64 / puts as f64,
            live_runs as f64 / fifo.len() as f64,
            list_dram as f64 / puts as f64,
            heap.free_regions(),
        );
        for (alloc, _) in fifo {
            heap.free(alloc);
        }
    }

    /// Entry point of `benches/heap.rs`. Arguments: `--quick` (shorter
    /// runs), `throughput` or `density` (only that part), `--threads=N` and
    /// `--arenas=N` (only that throughput configuration), `--skip-tickets=N`
    /// (draw N thread tickets first, which moves the threads' homes).
    pub fn main(args: &[String]) {
        let flag = |name: &str| args.iter().any(|a| a == name);
        let number = |name: &str| {
            args.iter().find_map(|a| {
                a.strip_prefix(name)?
                    .strip_prefix('=')?
                    .parse::<usize>()
                    .ok()
            })
        };
        let quick = flag("--quick");
        // Threads draw home tickets in order: burning some first shows how
        // other home placements behave.
        for _ in 0..number("--skip-tickets").unwrap_or(0) {
            std::thread::spawn(super::thread_ticket).join().ok();
        }
        let all = !flag("throughput") && !flag("density");
        let run = Duration::from_millis(if quick { 300 } else { 1500 });
        println!("heap benchmark on {}", machine());
        if all || flag("throughput") {
            println!(
                "metadata: 1 GiB pool, 256 B extents: {} B (bitmap {} B); 64 MiB pool: {} B",
                Bed::new(1024 * MIB, 256, None).heap.metadata_bytes(),
                (1024 * MIB - Heap::RESERVED) / 256 / 8,
                Bed::new(64 * MIB, 256, None).heap.metadata_bytes(),
            );
            println!(
                "alloc+free pairs, 1 GiB pool, 256 B extents, values 256 B - 1 KiB, ~90 % full:"
            );
            let layouts = match number("--arenas") {
                Some(n) => vec![("chosen arenas", Some(n))],
                None => vec![("default arenas", None), ("one arena (one lock)", Some(1))],
            };
            let thread_counts = match number("--threads") {
                Some(n) => vec![n.max(1)],
                None => vec![1, 2, 4],
            };
            for (label, arenas) in layouts {
                for &threads in &thread_counts {
                    let (rate, count) = throughput(threads, arenas, run);
                    println!(
                        "  {label:<21} ({count:>2} arenas) {threads} thread(s): {:8.2} M pairs/s",
                        rate / 1e6
                    );
                }
            }
        }
        if all || flag("density") {
            let churn = if quick { 20_000 } else { 200_000 };
            println!("density, 64 MiB pool, 256 B extents, FIFO eviction, {churn} puts after the first eviction:");
            density("1 KiB values", |_| 1024, churn);
            density("4 KiB values", |_| 4096, churn);
            density(
                "256 B - 64 KiB values",
                |r| r.between(256, 64 * 1024),
                churn,
            );
            density("1 - 70 x 256 B values", |r| r.between(1, 70) * 256, churn);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use memmap2::MmapMut;
    use proptest::prelude::*;
    use std::collections::VecDeque;
    use std::sync::Arc;

    const KIB: usize = 1024;
    const MIB: usize = 1024 * 1024;

    /// A heap over an anonymous mapping that outlives it.
    struct Fixture {
        heap: Heap,
        _map: MmapMut,
    }

    impl Fixture {
        fn new(pool: usize, extent: usize) -> Fixture {
            let mut map = MmapMut::map_anon(pool).unwrap();
            // SAFETY: the mapping is `pool` bytes and lives in the fixture,
            // dropped after the heap.
            let heap = unsafe { Heap::new(map.as_mut_ptr(), pool, extent) }.unwrap();
            Fixture { heap, _map: map }
        }

        /// A heap split into up to `arenas` arenas of at least one word.
        fn split(pool: usize, extent: usize, arenas: usize) -> Fixture {
            let mut map = MmapMut::map_anon(pool).unwrap();
            // SAFETY: as in `new`.
            let heap =
                unsafe { Heap::with_arenas(map.as_mut_ptr(), pool, extent, arenas, Some(1)) }
                    .unwrap();
            Fixture { heap, _map: map }
        }
    }

    impl std::ops::Deref for Fixture {
        type Target = Heap;
        fn deref(&self) -> &Heap {
            &self.heap
        }
    }

    /// Allocates `bytes` the way the cache does when it cannot evict:
    /// `None` when the heap cannot cover them (and nothing is kept).
    fn alloc_value(heap: &Heap, bytes: usize) -> Option<Allocation> {
        let mut pending = PendingAlloc::new();
        let mut remaining = bytes;
        while remaining > 0 {
            let got = heap.alloc(&mut pending, remaining).unwrap();
            if got == 0 {
                break;
            }
            remaining -= got;
        }
        if remaining > 0 {
            heap.release(pending);
            return None;
        }
        assert!(pending.capacity() >= bytes);
        Some(heap.finish(pending).unwrap())
    }

    /// Pool bytes allocated and free regions, counted from the bitmap
    /// (independent of the statistics feature).
    fn recount(heap: &Heap) -> (usize, usize) {
        // Spare extents are free; the bitmap shows them so once given back.
        heap.return_spares();
        let mut free = 0;
        let mut regions = 0;
        let mut previous = false;
        for arena in heap.arenas.iter() {
            let state = arena.state.lock();
            for i in 0..state.len {
                let is_free = state.is_free(i);
                if is_free {
                    free += 1;
                    if !previous {
                        regions += 1;
                    }
                }
                previous = is_free;
            }
        }
        ((heap.extents - free) * heap.extent_size, regions)
    }

    /// Checks POOL_SIZE_USED and HEAP_ENTRIES, through the statistics when
    /// they are compiled in and through the structure always.
    fn assert_stats(heap: &Heap, used: usize, regions: usize) {
        assert_eq!(recount(heap), (used, regions));
        if cfg!(feature = "stats") {
            assert_eq!(heap.used_bytes(), used as u64);
            assert_eq!(heap.free_regions(), regions as u64);
        } else {
            assert_eq!(heap.used_bytes(), 0);
            assert_eq!(heap.free_regions(), 0);
        }
    }

    fn runs_of(heap: &Heap, alloc: &Allocation) -> Vec<(usize, usize)> {
        let mut scratch = [0];
        heap.slots_of(alloc, &mut scratch)
            .iter()
            .map(|&slot| heap.encoding.unslot(slot))
            .collect()
    }

    /// A deterministic generator (xorshift64*).
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// Random bytes that test values are cut from.
    fn noise() -> &'static [u8] {
        static NOISE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
        NOISE.get_or_init(|| {
            let mut rng = Rng(0x5eed);
            (0..(4 * MIB + 64) / 8)
                .flat_map(|_| rng.next().to_le_bytes())
                .collect()
        })
    }

    /// `len` (≤ 4 MiB) bytes determined by `seed`: values with different
    /// seeds differ, so one overwriting another is detected.
    fn pattern(seed: u64, len: usize) -> Vec<u8> {
        let noise = noise();
        let offset = (Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1).next() as usize)
            % (noise.len() - len);
        noise[offset..offset + len].to_vec()
    }

    fn write_value(heap: &Heap, alloc: &Allocation, data: &[u8]) {
        // SAFETY: the allocation is live, ours alone, and holds `data`.
        unsafe { heap.write(alloc, data) };
    }

    fn read_value(heap: &Heap, alloc: &Allocation, offset: usize, len: usize) -> Vec<u8> {
        let mut out = vec![0xa5; len];
        // SAFETY: the allocation is live and `offset + len` is within it.
        unsafe { heap.read(alloc, offset, &mut out) };
        out
    }

    fn free_all(heap: &Heap, values: impl IntoIterator<Item = Allocation>) {
        for alloc in values {
            heap.free(alloc);
        }
    }

    #[test]
    fn the_lines_a_write_will_store_to_are_the_values_first_bytes() {
        let f = Fixture::new(MIB, 256);
        // A value of four separate runs, as in the test below.
        let mut small = Vec::new();
        while let Some(a) = alloc_value(&f, 256) {
            small.push(a);
        }
        for a in small.drain(..16).step_by(2) {
            f.free(a);
        }
        let listed = alloc_value(&f, 4 * 256).unwrap();
        let inline = small.pop().unwrap();
        for (alloc, size) in [(&listed, 4 * 256), (&inline, 256)] {
            let runs = runs_of(&f, alloc);
            for bytes in [0, 1, 64, 65, 300, size, size + 1000] {
                let mut lines = Vec::new();
                f.each_line(alloc, bytes, |p| lines.push(p as usize - f.base as usize));
                // Every 64 bytes of the value's first `bytes`, run by run.
                let mut want = Vec::new();
                let mut left = bytes;
                for &(start, len) in &runs {
                    let n = (len * 256).min(left);
                    want.extend((0..n).step_by(64).map(|i| start * 256 + i));
                    left -= n;
                }
                assert_eq!(lines, want, "{bytes} bytes of {runs:?}");
                assert_eq!(lines.len(), bytes.min(size).div_ceil(64));
            }
            // A hint only: the value reads back as written.
            let data = pattern(7, size);
            f.prefetch_write(alloc, size, size);
            write_value(&f, alloc, &data);
            assert_eq!(read_value(&f, alloc, 0, size), data);
        }
        f.free(listed);
        free_all(&f, small);
        f.free(inline);
    }

    /// The runs in the calling thread's spare.
    fn my_spare(heap: &Heap) -> Vec<(usize, usize)> {
        let spare = &heap.spares[home_arena(thread_ticket(), heap.spares.len())];
        let runs = spare.runs.lock();
        runs.slots[..runs.len]
            .iter()
            .map(|&slot| heap.encoding.unslot(slot))
            .collect()
    }

    /// Free extents in the arenas' bitmaps, spares not given back.
    fn arena_free(heap: &Heap) -> usize {
        heap.arenas
            .iter()
            .map(|arena| arena.state.lock().free)
            .sum()
    }

    /// A full heap of one-extent values except for one value of `extents`
    /// extents; returns the small values and the large one.
    fn full_but_one(f: &Heap, extents: usize) -> (Vec<Allocation>, Allocation) {
        let large = alloc_value(f, extents * 256).unwrap();
        let mut small = Vec::new();
        while let Some(a) = alloc_value(f, 256) {
            small.push(a);
        }
        (small, large)
    }

    #[test]
    fn a_victims_remainder_is_kept_for_the_next_allocation() {
        let f = Fixture::new(MIB, 256);
        let (small, large) = full_but_one(&f, 6);
        let (start, len) = runs_of(&f, &large)[0];
        assert_eq!(len, 6);

        // Adopting two extents' worth keeps the other four in this
        // thread's spare, not in the bitmap, and they count as free.
        let mut pending = PendingAlloc::new();
        assert_eq!(f.adopt(&mut pending, large, 2 * 256).unwrap(), 2 * 256);
        let first = f.finish(pending).unwrap();
        assert_eq!(runs_of(&f, &first), vec![(start, 2)]);
        assert_eq!(my_spare(&f), vec![(start + 2, 4)]);
        assert_eq!(arena_free(&f), 0);
        if cfg!(feature = "stats") {
            assert_eq!(f.used_bytes(), ((f.extents - 4) * 256) as u64);
        }

        // A request the spare can serve whole takes the shortest run that
        // fits, without the arenas; the rest of the run stays.
        let second = alloc_value(&f, 3 * 256).unwrap();
        assert_eq!(runs_of(&f, &second), vec![(start + 2, 3)]);
        assert_eq!(my_spare(&f), vec![(start + 5, 1)]);
        assert_eq!(arena_free(&f), 0);

        // A request larger than the spare takes it as a piece and finds
        // the heap otherwise exhausted.
        let mut pending = PendingAlloc::new();
        assert_eq!(f.alloc(&mut pending, 2 * 256).unwrap(), 256);
        assert_eq!(f.alloc(&mut pending, 256).unwrap(), 0);
        assert!(my_spare(&f).is_empty());
        let third = f.finish(pending).unwrap();
        assert_eq!(runs_of(&f, &third), vec![(start + 5, 1)]);

        let mut live: Vec<&Allocation> = small.iter().collect();
        live.extend([&first, &second, &third]);
        f.validate_with(&live).unwrap();
        for a in small.into_iter().chain([first, second, third]) {
            f.free(a);
        }
        assert_stats(&f, 0, 1);
    }

    #[test]
    fn kept_runs_join_their_neighbours_and_overflow_to_the_arenas() {
        let f = Fixture::new(MIB, 256);
        // Values of two extents side by side, each adopted for one extent:
        // the second halves are not adjacent, so each takes a spare run
        // until the spare is full, and the next one goes to its arena.
        let mut pairs = Vec::new();
        for _ in 0..SPARE_RUNS + 1 {
            pairs.push(alloc_value(&f, 2 * 256).unwrap());
        }
        let mut rest = Vec::new();
        while let Some(a) = alloc_value(&f, 256) {
            rest.push(a);
        }
        let mut adopted = Vec::new();
        let mut kept = Vec::new();
        for pair in pairs {
            let (start, _) = runs_of(&f, &pair)[0];
            kept.push((start + 1, 1));
            let mut pending = PendingAlloc::new();
            f.adopt(&mut pending, pair, 256).unwrap();
            adopted.push(f.finish(pending).unwrap());
        }
        let mut spare = my_spare(&f);
        spare.sort_unstable();
        assert_eq!(spare, kept[..SPARE_RUNS].to_vec());
        assert_eq!(arena_free(&f), 1);
        if cfg!(feature = "stats") {
            assert_eq!(f.used_bytes(), ((f.extents - SPARE_RUNS - 1) * 256) as u64);
        }

        // Adopting a one-extent value for nothing joins it to the spare run
        // it continues, though the spare is full.
        let (s0, _) = kept[0];
        let neighbour = adopted.remove(1);
        assert_eq!(runs_of(&f, &neighbour), vec![(s0 + 1, 1)]);
        let mut pending = PendingAlloc::new();
        assert_eq!(f.adopt(&mut pending, neighbour, 0).unwrap(), 0);
        f.release(pending);
        let mut spare = my_spare(&f);
        spare.sort_unstable();
        assert_eq!(spare.len(), SPARE_RUNS);
        assert_eq!(spare[0], (s0, 2));
        assert_eq!(arena_free(&f), 1);

        // Statistics and validation see spare extents as free, joined with
        // the free space around them: s0 to s0 + 3 is one region (the next
        // spare run begins at s0 + 2).
        let mut live: Vec<&Allocation> = rest.iter().collect();
        live.extend(adopted.iter());
        f.validate_with(&live).unwrap();
        assert!(my_spare(&f).is_empty());
        let free_now = SPARE_RUNS + 1 + 1;
        assert_stats(&f, (f.extents - free_now) * 256, SPARE_RUNS);
        for a in rest.into_iter().chain(adopted) {
            f.free(a);
        }
        assert_stats(&f, 0, 1);
    }

    #[test]
    fn a_spare_holds_back_at_most_its_bytes() {
        let f = Fixture::new(MIB, 256);
        let cap = SPARE_BYTES / 256;
        let over = alloc_value(&f, (cap + 2) * 256).unwrap();
        let exact = alloc_value(&f, (cap + 1) * 256).unwrap();
        let (rest, last) = full_but_one(&f, 1);
        let mut adopted = Vec::new();
        // One extent over the cap: the remainder goes back to its arena.
        let mut pending = PendingAlloc::new();
        f.adopt(&mut pending, over, 256).unwrap();
        adopted.push(f.finish(pending).unwrap());
        assert!(my_spare(&f).is_empty());
        assert_eq!(arena_free(&f), cap + 1);
        // Exactly the cap: kept; then nothing more fits beside it.
        let mut pending = PendingAlloc::new();
        f.adopt(&mut pending, exact, 256).unwrap();
        adopted.push(f.finish(pending).unwrap());
        assert_eq!(my_spare(&f).len(), 1);
        assert_eq!(arena_free(&f), cap + 1);
        let (start, _) = runs_of(&f, &last)[0];
        let mut pending = PendingAlloc::new();
        f.adopt(&mut pending, last, 0).unwrap();
        f.release(pending);
        assert_eq!(my_spare(&f).len(), 1);
        assert_eq!(arena_free(&f), cap + 2);
        assert!(f.arenas[0].state.lock().is_free(start));

        let live: Vec<&Allocation> = rest.iter().chain(adopted.iter()).collect();
        f.validate_with(&live).unwrap();
        for a in rest.into_iter().chain(adopted) {
            f.free(a);
        }
        assert_stats(&f, 0, 1);
    }

    #[test]
    fn another_threads_spare_is_found_only_when_given_back() {
        let f = Arc::new(Fixture::split(MIB, 256, 4));
        assert_eq!(f.spares.len(), 4);
        let mine = home_arena(thread_ticket(), f.spares.len());
        let (small, large) = full_but_one(&f, 4);
        let (start, _) = runs_of(&f, &large)[0];
        // A thread with another home adopts one extent of the value; the
        // other three stay in its spare.
        let mut large = Some(large);
        let mut adopted = None;
        for _ in 0..64 {
            let (heap, victim) = (Arc::clone(&f), large.take().unwrap());
            let (back, result) = std::thread::spawn(move || {
                if home_arena(thread_ticket(), heap.spares.len()) == mine {
                    return (Some(victim), None);
                }
                let mut pending = PendingAlloc::new();
                heap.adopt(&mut pending, victim, 256).unwrap();
                (None, Some(heap.finish(pending).unwrap()))
            })
            .join()
            .unwrap();
            large = back;
            adopted = result;
            if adopted.is_some() {
                break;
            }
        }
        let adopted = adopted.expect("no thread got another home");
        assert!(my_spare(&f).is_empty());

        // This thread sees an exhausted heap, though three extents are free,
        // until the spares are given back.
        let mut pending = PendingAlloc::new();
        assert_eq!(f.alloc(&mut pending, 256).unwrap(), 0);
        if cfg!(feature = "stats") {
            assert_eq!(f.used_bytes(), ((f.extents - 3) * 256) as u64);
        }
        assert_eq!(f.return_spares(), 3);
        assert_eq!(f.return_spares(), 0);
        assert_eq!(f.alloc(&mut pending, 3 * 256).unwrap(), 3 * 256);
        let got = f.finish(pending).unwrap();
        assert_eq!(runs_of(&f, &got), vec![(start + 1, 3)]);

        let mut live: Vec<&Allocation> = small.iter().collect();
        live.extend([&adopted, &got]);
        f.validate_with(&live).unwrap();
        for a in small.into_iter().chain([adopted, got]) {
            f.free(a);
        }
        assert_stats(&f, 0, 1);
    }

    #[test]
    fn adopt_moves_a_victims_extents_and_frees_the_rest() {
        let f = Fixture::new(MIB, 256);
        let total = f.used_bytes();
        // Fill with one-extent values, then free every other one, so that a
        // four-extent value is made of four separate runs (a run list).
        let mut small = Vec::new();
        while let Some(a) = alloc_value(&f, 256) {
            small.push(a);
        }
        let mut kept = Vec::new();
        for (i, a) in small.into_iter().enumerate() {
            if i % 2 == 0 && i < 16 {
                f.free(a);
            } else {
                kept.push(a);
            }
        }
        let listed = alloc_value(&f, 4 * 256).unwrap();
        assert!(!listed.is_inline() && listed.list_slots().len() == 4);
        let used = f.used_bytes();

        // Adopting for three extents' worth: three come over, one goes back.
        let mut pending = PendingAlloc::new();
        assert_eq!(
            f.adopt(&mut pending, listed, 3 * 256 - 10).unwrap(),
            3 * 256 - 10
        );
        assert_eq!(pending.capacity(), 3 * 256);
        if cfg!(feature = "stats") {
            assert_eq!(f.used_bytes(), used - 256);
        }
        // An inline victim larger than needed, then one smaller.
        let inline = kept.pop().unwrap();
        assert!(inline.is_inline());
        assert_eq!(f.adopt(&mut pending, inline, 100).unwrap(), 100);
        assert_eq!(pending.capacity(), 4 * 256);
        assert_eq!(f.adopt(&mut pending, Allocation::EMPTY, 100).unwrap(), 0);
        let adopted = f.finish(pending).unwrap();
        let mut live: Vec<&Allocation> = kept.iter().collect();
        live.push(&adopted);
        f.validate_with(&live).unwrap();

        // Everything back: the heap is as it was.
        f.free(adopted);
        for a in kept {
            f.free(a);
        }
        f.validate_with(&[]).unwrap();
        if cfg!(feature = "stats") {
            assert_eq!(f.used_bytes(), total);
            assert_eq!(f.free_regions(), 1);
        }
    }

    #[test]
    fn allocation_is_one_shareable_word() {
        fn shareable<T: Send + Sync>() {}
        shareable::<Allocation>();
        shareable::<Heap>();
        assert_eq!(std::mem::size_of::<Allocation>(), 8);
        assert!(Allocation::EMPTY.is_empty());
        assert_eq!(Allocation::EMPTY.dram_size(), 0);
    }

    #[test]
    fn geometry_is_checked() {
        let mut map = MmapMut::map_anon(MIB).unwrap();
        // SAFETY: the mapping outlives every heap made here.
        unsafe {
            assert_eq!(
                Heap::new(map.as_mut_ptr(), MIB, 255).err(),
                Some(Error::ExtentTooSmall(255))
            );
            assert_eq!(
                Heap::new(map.as_mut_ptr(), Heap::RESERVED, 256).err(),
                Some(Error::SizeTooSmall(Heap::RESERVED))
            );
            // The smallest heap there is: one extent of 256 bytes.
            let tiny = Heap::new(map.as_mut_ptr(), Heap::RESERVED + 256, 256).unwrap();
            assert_eq!(tiny.max_value(), 256);
            // Less than an extent: the extent shrinks to the heap.
            let tinier = Heap::new(map.as_mut_ptr(), Heap::RESERVED + 100, 256).unwrap();
            assert_eq!((tinier.extent_size(), tinier.max_value()), (100, 100));
        }
    }

    #[test]
    fn max_value_figures() {
        for (pool, extent, max) in [
            (MIB, 256, 1_040_384),
            (MIB, 1000, 1_040_000),
            (MIB, 300, 1_040_100),
            (MIB, 4096, 1_040_384),
            (MIB, 65536, 983_040),
            (MIB, 2 * MIB, 1_040_384),
            (10 * MIB, 256, 10_477_568),
            (MIB + 1, 256, 1_040_384),
        ] {
            let f = Fixture::new(pool, extent);
            assert_eq!(f.max_value(), max, "pool {pool}, extent {extent}");
            assert_eq!(f.extent_size(), extent.min(pool - Heap::RESERVED));
            assert_stats(&f, 0, 1);
            f.validate().unwrap();
        }
    }

    /// SPEC §12 item 1, with the default layout and with many arenas (a
    /// value may span them).
    #[test]
    fn half_megabyte_values() {
        for (pool, fits) in [(MIB, 1), (10 * MIB, 19)] {
            for (f, split) in [
                (Fixture::new(pool, 256), false),
                (Fixture::split(pool, 256, 7), true),
            ] {
                let mut live = Vec::new();
                while let Some(alloc) = alloc_value(&f, 512 * KIB) {
                    live.push(alloc);
                }
                assert_eq!(live.len(), fits, "pool {pool}");
                // One arena keeps the rest in one piece; with seven, values
                // straddle arenas and the rest may be split.
                let regions = recount(&f).1;
                assert!(regions == 1 || split && regions <= 7, "{regions} regions");
                assert_stats(&f, fits * 512 * KIB, regions);
                f.validate_with(&live.iter().collect::<Vec<_>>()).unwrap();
                free_all(&f, live);
                assert_stats(&f, 0, 1);
                f.validate_with(&[]).unwrap();
            }
        }
    }

    #[test]
    fn one_extent_values_fill_the_pool() {
        for f in [Fixture::new(MIB, 256), Fixture::split(MIB, 256, 5)] {
            let mut live = Vec::new();
            for i in 0.. {
                match alloc_value(&f, i % 256 + 1) {
                    Some(alloc) => live.push(alloc),
                    None => break,
                }
            }
            assert_eq!(live.len(), 4064);
            assert_stats(&f, 1_040_384, 0);
            let mut pending = PendingAlloc::new();
            assert_eq!(f.alloc(&mut pending, 1).unwrap(), 0);
            f.release(pending);
            f.validate_with(&live.iter().collect::<Vec<_>>()).unwrap();
            // Free in a scrambled order: the free space must coalesce fully.
            let mut rng = Rng(7);
            while !live.is_empty() {
                let victim = live.swap_remove(rng.below(live.len()));
                f.free(victim);
            }
            assert_stats(&f, 0, 1);
            f.validate_with(&[]).unwrap();
        }
    }

    #[test]
    fn odd_extent_sizes() {
        for (extent, value, fits) in [(1000, 1000, 1040), (300, 300, 3467), (300, 301, 1733)] {
            let f = Fixture::new(MIB, extent);
            let mut live = Vec::new();
            while let Some(alloc) = alloc_value(&f, value) {
                live.push(alloc);
            }
            assert_eq!(live.len(), fits, "extent {extent}, value {value}");
            f.validate_with(&live.iter().collect::<Vec<_>>()).unwrap();
            free_all(&f, live);
            assert_stats(&f, 0, 1);
        }
    }

    #[test]
    fn extent_larger_than_the_heap() {
        let f = Fixture::new(MIB, 2 * MIB);
        assert_eq!(f.extent_size(), 1_040_384);
        assert_eq!(f.max_value(), 1_040_384);
        let one = alloc_value(&f, 1).unwrap();
        assert_stats(&f, 1_040_384, 0);
        assert!(alloc_value(&f, 1).is_none());
        f.free(one);
        let whole = alloc_value(&f, 1_040_384).unwrap();
        f.free(whole);
        assert!(alloc_value(&f, 1_040_385).is_none());
        assert_stats(&f, 0, 1);
        f.validate_with(&[]).unwrap();
    }

    #[test]
    fn pool_size_used_per_value() {
        for (extent, value, used) in [
            (256, 6, 256),
            (256, 224, 256),
            (256, 256, 256),
            (256, 257, 512),
            (256, 1000, 1024),
            (4096, 1000, 4096),
            (1000, 1000, 1000),
            (300, 1000, 1200),
        ] {
            let f = Fixture::new(MIB, extent);
            let alloc = alloc_value(&f, value).unwrap();
            assert_stats(&f, used, 1);
            assert_eq!(runs_of(&f, &alloc).len(), 1);
            f.free(alloc);
            assert_stats(&f, 0, 1);
        }
    }

    #[test]
    fn heap_entries_count_free_regions() {
        let f = Fixture::split(MIB, 256, 3);
        let mut live: Vec<Option<Allocation>> = Vec::new();
        while let Some(alloc) = alloc_value(&f, 256) {
            live.push(Some(alloc));
        }
        assert_stats(&f, 1_040_384, 0);
        // Free every other value: 2032 separate one-extent regions, some of
        // them at arena boundaries.
        for slot in live.iter_mut().step_by(2) {
            f.free(slot.take().unwrap());
        }
        assert_stats(&f, 2032 * 256, 2032);
        f.validate().unwrap();
        // Free the rest: everything merges back into one region.
        for slot in live.iter_mut() {
            if let Some(alloc) = slot.take() {
                f.free(alloc);
            }
        }
        assert_stats(&f, 0, 1);
        f.validate_with(&[]).unwrap();
    }

    #[test]
    fn one_run_needs_no_dram() {
        let f = Fixture::new(10 * MIB, 256);
        for size in [1, 256, 4096, 64 * KIB, 8 * MIB] {
            let mut pending = PendingAlloc::new();
            assert_eq!(f.alloc(&mut pending, size).unwrap(), size);
            assert!(pending.spill.is_null());
            assert_eq!(pending.capacity(), size.div_ceil(256) * 256);
            let alloc = f.finish(pending).unwrap();
            assert!(alloc.is_inline(), "size {size}");
            assert_eq!(alloc.dram_size(), 0);
            f.free(alloc);
        }
        assert_stats(&f, 0, 1);
    }

    /// Leaves only every other extent of the first `2 * holes` free.
    fn checkerboard(f: &Heap, holes: usize) -> Vec<Allocation> {
        let mut all = Vec::new();
        while let Some(alloc) = alloc_value(f, 1) {
            all.push(alloc);
        }
        let mut kept = Vec::new();
        for (i, alloc) in all.into_iter().enumerate() {
            if i < 2 * holes && i % 2 == 0 {
                f.free(alloc);
            } else {
                kept.push(alloc);
            }
        }
        kept
    }

    #[test]
    fn scattered_value_uses_a_run_list() {
        let f = Fixture::new(MIB, 256);
        let kept = checkerboard(&f, 10);
        assert_stats(&f, (4064 - 10) * 256, 10);
        let alloc = alloc_value(&f, 700).unwrap();
        assert_eq!(runs_of(&f, &alloc).len(), 3);
        // A count word and three slots: a 32-byte malloc request.
        assert_eq!(alloc.dram_size(), 40);
        let data = pattern(3, 700);
        write_value(&f, &alloc, &data);
        for (offset, len) in [
            (0, 700),
            (0, 1),
            (255, 2),
            (256, 256),
            (300, 400),
            (699, 1),
            (700, 0),
        ] {
            assert_eq!(
                read_value(&f, &alloc, offset, len),
                &data[offset..offset + len]
            );
        }
        let mut live: Vec<&Allocation> = kept.iter().collect();
        live.push(&alloc);
        f.validate_with(&live).unwrap();
        f.free(alloc);
        assert_stats(&f, (4064 - 10) * 256, 10);
        free_all(&f, kept);
        assert_stats(&f, 0, 1);
    }

    #[test]
    fn values_read_back_on_both_sides_of_the_streaming_size() {
        // Extents of 300 bytes: runs start off 16-byte boundaries, so the
        // streamed copy's unaligned head and tail are used too.
        let f = Fixture::new(MIB, 300);
        let kept = checkerboard(&f, 120);
        for (seed, size) in [
            (1, STREAM_FROM - 1),
            (2, STREAM_FROM),
            (3, STREAM_FROM + 17),
            (4, 3 * STREAM_FROM + 5),
        ] {
            let alloc = alloc_value(&f, size).unwrap();
            let data = pattern(seed, size);
            write_value(&f, &alloc, &data);
            assert_eq!(read_value(&f, &alloc, 0, size), data, "{size} bytes");
            assert_eq!(
                read_value(&f, &alloc, 299, size - 299),
                &data[299..],
                "{size} bytes"
            );
            f.free(alloc);
        }
        free_all(&f, kept);
        assert_stats(&f, 0, 1);
    }

    #[test]
    fn many_pieces_spill_and_list() {
        let f = Fixture::split(2 * MIB, 256, 4);
        let kept = checkerboard(&f, 500);
        let alloc = alloc_value(&f, 300 * 256).unwrap();
        assert_eq!(runs_of(&f, &alloc).len(), 300);
        assert_eq!(alloc.dram_size(), accounted_size(8 * 301));
        let data = pattern(11, 300 * 256);
        write_value(&f, &alloc, &data);
        assert_eq!(read_value(&f, &alloc, 0, data.len()), data);
        assert_eq!(read_value(&f, &alloc, 1000, 5000), &data[1000..6000]);
        let mut live: Vec<&Allocation> = kept.iter().collect();
        live.push(&alloc);
        f.validate_with(&live).unwrap();
        f.free(alloc);
        free_all(&f, kept);
        assert_stats(&f, 0, 1);
        f.validate_with(&[]).unwrap();
    }

    /// The cache asks again after evicting: pieces that continue the last
    /// run merge into it.
    #[test]
    fn adjacent_pieces_merge() {
        let f = Fixture::new(MIB, 256);
        let mut all = Vec::new();
        while let Some(alloc) = alloc_value(&f, 256) {
            all.push(Some(alloc));
        }
        f.free(all[100].take().unwrap());
        let mut pending = PendingAlloc::new();
        assert_eq!(f.alloc(&mut pending, 512).unwrap(), 256);
        assert_eq!(f.alloc(&mut pending, 256).unwrap(), 0);
        f.free(all[101].take().unwrap());
        assert_eq!(f.alloc(&mut pending, 256).unwrap(), 256);
        assert_eq!(pending.slots().len(), 1);
        let alloc = f.finish(pending).unwrap();
        assert_eq!(runs_of(&f, &alloc), vec![(100, 2)]);
        assert!(alloc.is_inline());
        f.free(alloc);
        free_all(&f, all.into_iter().flatten());
        assert_stats(&f, 0, 1);
    }

    #[test]
    fn failed_growth_gives_back_this_call() {
        let f = Fixture::new(MIB, 256);
        let kept = checkerboard(&f, 40);
        // Four pieces fit in the pending allocation itself.
        let mut pending = PendingAlloc::new();
        assert_eq!(f.alloc(&mut pending, 4 * 256).unwrap(), 4 * 256);
        assert!(pending.spill.is_null());
        let before = (pending.capacity(), pending.slots().to_vec());
        let used = recount(&f);
        // A fifth needs DRAM, which fails: nothing changes.
        fault::fail_nth(1);
        assert_eq!(f.alloc(&mut pending, 10 * 256), Err(Error::OutOfMemory));
        assert_eq!((pending.capacity(), pending.slots().to_vec()), before);
        assert_eq!(recount(&f), used);
        f.validate().unwrap();
        // Growth succeeds once, then fails in a later round of the same
        // call, after pieces (one merged into the last run) were taken.
        {
            let state = &mut f.arenas[0].state.lock();
            state.cursor = 0;
        }
        let slot = pending.slots()[3];
        let (start, len) = f.encoding.unslot(slot);
        let neighbour = start + len;
        // Free the neighbour of the last run so that it merges.
        let victim = kept
            .iter()
            .position(|a| runs_of(&f, a) == vec![(neighbour, 1)])
            .unwrap();
        let mut kept = kept;
        f.free(kept.swap_remove(victim));
        let used = recount(&f);
        fault::fail_nth(2);
        assert_eq!(f.alloc(&mut pending, 40 * 256), Err(Error::OutOfMemory));
        assert_eq!((pending.capacity(), pending.slots().to_vec()), before);
        assert_eq!(recount(&f), used);
        f.validate().unwrap();
        // Without the fault the same request succeeds.
        assert_eq!(f.alloc(&mut pending, 20 * 256).unwrap(), 20 * 256);
        assert!(!pending.spill.is_null());
        f.release(pending);
        free_all(&f, kept);
        assert_stats(&f, 0, 1);
        f.validate_with(&[]).unwrap();
    }

    #[test]
    fn failed_finish_gives_back() {
        let f = Fixture::new(MIB, 256);
        let kept = checkerboard(&f, 10);
        let used = recount(&f);
        let mut pending = PendingAlloc::new();
        assert_eq!(f.alloc(&mut pending, 3 * 256).unwrap(), 3 * 256);
        fault::fail_nth(1);
        assert_eq!(f.finish(pending).err(), Some(Error::OutOfMemory));
        assert_eq!(recount(&f), used);
        f.validate_with(&kept.iter().collect::<Vec<_>>()).unwrap();
        free_all(&f, kept);
        assert_stats(&f, 0, 1);
    }

    #[test]
    fn empty_pending_and_zero_bytes() {
        let f = Fixture::new(MIB, 256);
        let mut pending = PendingAlloc::new();
        assert_eq!(f.alloc(&mut pending, 0).unwrap(), 0);
        assert_eq!(pending.capacity(), 0);
        let alloc = f.finish(pending).unwrap();
        assert!(alloc.is_empty());
        f.free(alloc);
        f.release(PendingAlloc::new());
        // A request larger than the heap takes what there is.
        let mut pending = PendingAlloc::new();
        assert_eq!(f.alloc(&mut pending, 2 * MIB).unwrap(), 1_040_384);
        f.release(pending);
        assert_stats(&f, 0, 1);
    }

    #[test]
    fn encoding_round_trips() {
        for extents in [1, 2, 4064, 1 << 20, (1 << 31) + 5, (1 << 48) - 1] {
            let enc = Encoding::for_extents(extents);
            for (start, len) in [
                (0, 1),
                (extents - 1, 1),
                (0, extents.min(enc.max_slot_len())),
            ] {
                let slot = enc.slot(start, len);
                assert_eq!(enc.unslot(slot), (start, len));
                if let Some(word) = enc.inline(slot) {
                    assert_eq!(word & 1, 1);
                    assert_eq!(enc.inline_slot(word), slot);
                } else {
                    assert!(len > 1 << 15);
                }
            }
        }
    }

    /// The cache's loop: when the heap is exhausted, evict (here: free a
    /// live value after checking it) and ask again.
    struct Model {
        fixture: Fixture,
        live: Vec<(Allocation, Vec<u8>)>,
        rng: Rng,
    }

    impl Model {
        fn new(fixture: Fixture, seed: u64) -> Model {
            Model {
                fixture,
                live: Vec::new(),
                rng: Rng(seed | 1),
            }
        }

        fn check_all(&self) {
            let live: Vec<&Allocation> = self.live.iter().map(|(a, _)| a).collect();
            self.fixture.validate_with(&live).unwrap();
        }

        fn evict(&mut self, pick: usize) {
            let (alloc, data) = self.live.swap_remove(pick % self.live.len());
            assert_eq!(read_value(&self.fixture, &alloc, 0, data.len()), data);
            self.fixture.free(alloc);
        }

        fn put(&mut self, size: usize, seed: u64) {
            let mut pending = PendingAlloc::new();
            let mut remaining = size;
            while remaining > 0 {
                let got = self.fixture.alloc(&mut pending, remaining).unwrap();
                remaining -= got;
                if got == 0 {
                    if self.live.is_empty() {
                        break;
                    }
                    let pick = self.rng.below(self.live.len());
                    self.evict(pick);
                }
            }
            if remaining > 0 {
                // Nothing left to evict: only a value larger than the heap
                // can fail.
                assert!(
                    size > self.fixture.max_value(),
                    "{size} did not fit an empty heap"
                );
                self.fixture.release(pending);
                return;
            }
            let alloc = self.fixture.finish(pending).unwrap();
            let data = pattern(seed, size);
            write_value(&self.fixture, &alloc, &data);
            self.live.push((alloc, data));
        }

        fn read(&mut self, pick: usize, at: u64) {
            if self.live.is_empty() {
                return;
            }
            let (alloc, data) = &self.live[pick % self.live.len()];
            let offset = (at % (data.len() as u64 + 1)) as usize;
            let len = ((at >> 32) as usize % 5000).min(data.len() - offset);
            assert_eq!(
                read_value(&self.fixture, alloc, offset, len),
                &data[offset..offset + len]
            );
        }

        fn drain(mut self) {
            while !self.live.is_empty() {
                self.evict(0);
            }
            assert_stats(&self.fixture, 0, 1);
            self.fixture.validate_with(&[]).unwrap();
        }
    }

    fn value_size(class: u8, raw: u32) -> usize {
        let raw = raw as usize;
        match class % 8 {
            0 => 0,
            1..=3 => raw % 2048,
            4 | 5 => raw % (32 * KIB),
            6 => raw % (256 * KIB),
            _ => raw % (2 * MIB + 1),
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Put(u8, u32),
        Free(usize),
        Read(usize, u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (any::<u8>(), any::<u32>()).prop_map(|(c, r)| Op::Put(c, r)),
            2 => any::<usize>().prop_map(Op::Free),
            2 => (any::<usize>(), any::<u64>()).prop_map(|(p, a)| Op::Read(p, a)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

        #[test]
        fn random_sequences_keep_every_invariant(
            pool in prop::sample::select(vec![MIB, 3 * MIB / 2, 3 * MIB]),
            extent in prop::sample::select(vec![256usize, 300, 1000, 4096, 65536]),
            arenas in prop::sample::select(vec![1usize, 3, 8]),
            ops in prop::collection::vec(op(), 1..120),
        ) {
            let mut model = Model::new(Fixture::split(pool, extent, arenas), pool as u64);
            for (step, op) in ops.into_iter().enumerate() {
                match op {
                    Op::Put(class, raw) => model.put(value_size(class, raw), step as u64),
                    Op::Free(pick) => {
                        if !model.live.is_empty() {
                            model.evict(pick);
                        }
                    }
                    Op::Read(pick, at) => model.read(pick, at),
                }
                model.check_all();
            }
            model.drain();
        }
    }

    #[test]
    fn long_deterministic_run() {
        for (pool, extent, arenas, steps) in [
            (MIB, 256, 1, 8000),
            (2 * MIB, 300, 3, 8000),
            (4 * MIB, 1000, 8, 6000),
            (10 * MIB, 4096, 4, 4000),
        ] {
            let mut model = Model::new(Fixture::split(pool, extent, arenas), 99);
            let mut rng = Rng(12345 + pool as u64);
            for step in 0..steps {
                match rng.below(10) {
                    0..=5 => {
                        let size = value_size(rng.next() as u8, rng.next() as u32);
                        model.put(size, step);
                    }
                    6 | 7 => {
                        if !model.live.is_empty() {
                            let pick = rng.below(model.live.len());
                            model.evict(pick);
                        }
                    }
                    _ => {
                        let (pick, at) = (rng.below(1 << 20), rng.next());
                        model.read(pick, at);
                    }
                }
                model.check_all();
            }
            model.drain();
        }
    }

    /// Threads put and free values with self-checking contents; a share of
    /// the values is freed by another thread than the one that made it.
    /// Returns how many times a thread found the heap exhausted. With
    /// values of 32 KiB on average, `per_thread` values of one thread alone
    /// should overfill the pool, so that exhaustion is certain.
    fn concurrent_churn(fixture: Fixture, threads: usize, ops: usize, per_thread: usize) -> usize {
        let heap = Arc::new(fixture);
        let exhausted = AtomicUsize::new(0);
        let handoff: Arc<Mutex<Vec<(Allocation, u64, usize)>>> = Arc::new(Mutex::new(Vec::new()));
        let check_and_free = |heap: &Heap, (alloc, seed, len): (Allocation, u64, usize)| {
            assert_eq!(read_value(heap, &alloc, 0, len), pattern(seed, len));
            heap.free(alloc);
        };
        std::thread::scope(|scope| {
            for t in 0..threads {
                let heap = Arc::clone(&heap);
                let handoff = Arc::clone(&handoff);
                let exhausted = &exhausted;
                scope.spawn(move || {
                    let mut rng = Rng(0x9e37_79b9 * (t as u64 + 1));
                    let mut fifo: VecDeque<(Allocation, u64, usize)> = VecDeque::new();
                    for i in 0..ops {
                        let size = 256 + rng.below(64 * KIB - 256);
                        let seed = ((t as u64) << 32) | i as u64;
                        let mut pending = PendingAlloc::new();
                        let mut remaining = size;
                        while remaining > 0 {
                            let got = heap.alloc(&mut pending, remaining).unwrap();
                            remaining -= got;
                            if got > 0 {
                                continue;
                            }
                            // Relaxed: a tally read after the threads joined.
                            exhausted.fetch_add(1, Ordering::Relaxed);
                            match fifo.pop_front() {
                                Some(oldest) => check_and_free(&heap, oldest),
                                None => {
                                    // Others hold the space: back off.
                                    heap.release(pending);
                                    pending = PendingAlloc::new();
                                    remaining = size;
                                    std::thread::yield_now();
                                }
                            }
                        }
                        let alloc = heap.finish(pending).unwrap();
                        let data = pattern(seed, size);
                        write_value(&heap, &alloc, &data);
                        fifo.push_back((alloc, seed, size));
                        if fifo.len() > per_thread {
                            let oldest = fifo.pop_front().unwrap();
                            if rng.below(3) == 0 {
                                // Hand it over; free someone else's instead.
                                let other = {
                                    let mut shared = handoff.lock();
                                    shared.push(oldest);
                                    let pick = rng.below(shared.len());
                                    shared.swap_remove(pick)
                                };
                                check_and_free(&heap, other);
                            } else {
                                check_and_free(&heap, oldest);
                            }
                        }
                    }
                    for value in fifo {
                        check_and_free(&heap, value);
                    }
                });
            }
        });
        for value in std::mem::take(&mut *handoff.lock()) {
            check_and_free(&heap, value);
        }
        assert_stats(&heap, 0, 1);
        heap.validate_with(&[]).unwrap();
        exhausted.into_inner()
    }

    #[test]
    fn two_threads_default_layout() {
        let f = Fixture::new(32 * MIB, 256);
        // Arenas of at least 16 MiB: two, however many CPUs there are.
        assert_eq!(f.arena_count(), 2);
        assert!(concurrent_churn(f, 2, 4000, 1200) > 0);
    }

    #[test]
    fn two_threads_many_arenas() {
        let f = Fixture::split(4 * MIB, 300, 6);
        assert_eq!(f.arena_count(), 6);
        assert!(concurrent_churn(f, 2, 4000, 150) > 0);
    }

    #[test]
    fn eight_threads_many_arenas() {
        let f = Fixture::split(8 * MIB, 256, 8);
        assert_eq!(f.arena_count(), 8);
        assert!(concurrent_churn(f, 8, 1500, 300) > 0);
    }

    #[test]
    fn homes_spread_evenly() {
        let homes: Vec<usize> = (0..8).map(|t| home_arena(t, 8)).collect();
        assert_eq!(homes, [0, 4, 2, 6, 1, 5, 3, 7]);
        assert_eq!(
            (0..3).map(|t| home_arena(t, 3)).collect::<Vec<_>>(),
            [0, 1, 0]
        );
        for t in 0..100 {
            assert_eq!(home_arena(t, 1), 0);
            assert!(home_arena(t, 7) < 7);
        }
    }

    /// A thread claims its home, then the unclaimed arenas that serve it;
    /// another thread searches its own arenas before those.
    #[test]
    fn threads_claim_arenas() {
        let f = Fixture::split(MIB, 256, 4);
        let arena_len = f.arena_extents;
        let (first, second) = std::thread::scope(|scope| {
            let first = scope
                .spawn(|| {
                    let me = thread_ticket();
                    let home = home_arena(me, 4);
                    // One arena and a bit: the next arena is claimed too.
                    // (The last arena is shorter than the others.)
                    let home_len = f.arenas[home].state.lock().len;
                    let a = alloc_value(&f, home_len * 256).unwrap();
                    let b = alloc_value(&f, 256).unwrap();
                    assert_eq!(runs_of(&f, &a), vec![(home * arena_len, home_len)]);
                    let claimed: Vec<usize> = (0..4)
                        .filter(|&i| f.owners[i].load(Ordering::Relaxed) == me)
                        .collect();
                    assert_eq!(claimed.len(), 2, "{claimed:?}");
                    assert!(claimed.contains(&home));
                    (me, a, b)
                })
                .join()
                .unwrap();
            let second = scope
                .spawn(|| {
                    let me = thread_ticket();
                    let c = alloc_value(&f, 256).unwrap();
                    let (start, _) = runs_of(&f, &c)[0];
                    let arena = start / arena_len;
                    // Not in the first thread's arenas, unless its home is.
                    let owner = f.owners[arena].load(Ordering::Relaxed);
                    assert!(owner == me || arena == home_arena(me, 4), "{owner} {me}");
                    (me, c)
                })
                .join()
                .unwrap();
            (first, second)
        });
        assert_ne!(first.0, second.0);
        f.validate_with(&[&first.1, &first.2, &second.1]).unwrap();
        free_all(&f, [first.1, first.2, second.1]);
        assert_stats(&f, 0, 1);
    }

    #[test]
    fn validation_sees_broken_marks() {
        let f = Fixture::new(MIB, 256);
        f.validate().unwrap();
        type Breakage = (fn(&mut ArenaState), &'static str);
        let cases: [Breakage; 4] = [
            (|s| s.summary[0] ^= 1, "summary bit of word 0"),
            (|s| s.top[0] ^= 1, "top bit of word 0"),
            (
                |s| *s.top.last_mut().unwrap() |= 1 << 63,
                "top bits past the end",
            ),
            (|s| s.edges ^= FIRST_FREE, "edges"),
        ];
        for (break_it, expected) in cases {
            let mut state = f.arenas[0].state.lock();
            let saved = (state.summary.clone(), state.top.clone(), state.edges);
            break_it(&mut state);
            drop(state);
            let err = f.validate().unwrap_err();
            assert!(err.contains(expected), "{err}");
            let mut state = f.arenas[0].state.lock();
            (state.summary, state.top, state.edges) = saved;
            drop(state);
            f.validate().unwrap();
        }
    }

    #[test]
    fn scraps_are_remembered_until_a_free() {
        let f = Fixture::new(MIB, 256);
        let kept = checkerboard(&f, 8);
        let arena = f.arena(0);
        assert_eq!(arena.no_run_from.load(Ordering::Relaxed), usize::MAX);
        // No run of 2: the complete scan records that the longest is 1,
        // and the request is served in pieces all the same.
        let mut pending = PendingAlloc::new();
        assert_eq!(f.alloc(&mut pending, 512).unwrap(), 512);
        assert_eq!(arena.no_run_from.load(Ordering::Relaxed), 2);
        assert_eq!(pending.slots().len(), 2);
        f.validate().unwrap();
        f.release(pending);
        assert_eq!(arena.no_run_from.load(Ordering::Relaxed), usize::MAX);
        free_all(&f, kept);
        assert_stats(&f, 0, 1);
    }

    #[test]
    fn arena_size() {
        // The figure the module documentation gives (with the stats feature).
        let per_arena = std::mem::size_of::<Arena>()
            + 3 * std::mem::size_of::<AtomicUsize>()
            + std::mem::size_of::<Spare>();
        assert!(per_arena <= 430, "{per_arena}");
    }

    #[test]
    fn metadata_is_small() {
        let f = Fixture::new(64 * MIB, 256);
        // 1 bit per extent plus, per arena, its summary and top words, its
        // lock and counts, its hints and its spare.
        let bitmap = (64 * MIB - Heap::RESERVED) / 256 / 8;
        assert_eq!(f.arena_count(), 4);
        assert!(
            f.metadata_bytes() < bitmap + 4 * 700,
            "{}",
            f.metadata_bytes()
        );
    }
}
