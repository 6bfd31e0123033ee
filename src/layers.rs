//! Fixtures through which the criterion benchmarks (`benches/layers.rs`)
//! drive the engine's private layers one at a time: the extent allocator,
//! the index and the replacement policy. Built only with the `internals`
//! feature.
//!
//! Each fixture owns everything it creates and tears it down on drop. The
//! operations are safe to call from several threads at once as long as the
//! thread-specific ones get distinct `thread` numbers below the number of
//! threads the fixture was built for. This module must never be used by
//! the engine itself.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::atomic::Ordering;

use crate::config::Policy;
use crate::entry::{Entry, EntryPtr, SLOT_UNREGISTERED};
use crate::heap::{Allocation, Heap, PendingAlloc};
use crate::index::Index;
use crate::pool::Pool;
use crate::repl::Repl;

/// A splitmix64 step: reproducible draws without a dependency.
fn mix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The 16-byte key of number `i`: the number, then bytes derived from it
/// (as `vmemcache-bench` makes them).
pub fn key_of(i: u64) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&i.to_le_bytes());
    let mut s = i;
    key[8..].copy_from_slice(&mix(&mut s).to_le_bytes());
    key
}

/// A thread's state in [`HeapFixture`]: its live allocations, oldest first.
struct HeapThread {
    live: VecDeque<Allocation>,
    rng: u64,
}

/// An anonymous pool and the extent allocator over it, kept full: every
/// [`HeapFixture::put`] allocates a value and, while the heap is exhausted,
/// frees the calling thread's oldest one (what a put does under LRU with
/// no gets).
pub struct HeapFixture {
    threads: Vec<RefCell<HeapThread>>,
    heap: Heap,
    _pool: Pool,
}

// SAFETY: each `HeapThread` is used only by the thread whose number it
// has (the callers' contract above); the heap is `Sync`.
unsafe impl Sync for HeapFixture {}

impl HeapFixture {
    /// A heap over `pool` bytes of `extent`-byte extents, for `threads`
    /// threads.
    pub fn new(pool: usize, extent: usize, threads: usize) -> HeapFixture {
        let pool = Pool::anonymous(pool).expect("anonymous pool");
        // SAFETY: the pool outlives the heap (field order).
        let heap = unsafe { Heap::new(pool.as_ptr(), pool.len(), extent) }.expect("heap");
        HeapFixture {
            threads: (0..threads)
                .map(|t| {
                    RefCell::new(HeapThread {
                        live: VecDeque::new(),
                        rng: t as u64 + 1,
                    })
                })
                .collect(),
            heap,
            _pool: pool,
        }
    }

    /// Allocates a value of `min..=max` bytes for thread `thread`, freeing
    /// that thread's oldest values while the heap is exhausted. Returns the
    /// number of values freed.
    pub fn put(&self, thread: usize, min: usize, max: usize) -> usize {
        let mut me = self.threads[thread].borrow_mut();
        let bytes = min + (mix(&mut me.rng) % (max - min + 1) as u64) as usize;
        let mut pending = PendingAlloc::new();
        let mut freed = 0;
        let mut covered = 0;
        while covered < bytes {
            let got = self.heap.alloc(&mut pending, bytes - covered).unwrap_or(0);
            covered += got;
            if got == 0 {
                match me.live.pop_front() {
                    Some(oldest) => {
                        self.heap.free(oldest);
                        freed += 1;
                    }
                    None => {
                        // Other threads hold everything: give up this one.
                        self.heap.release(pending);
                        return freed;
                    }
                }
            }
        }
        if let Ok(alloc) = self.heap.finish(pending) {
            me.live.push_back(alloc);
        }
        freed
    }
}

impl Drop for HeapFixture {
    fn drop(&mut self) {
        for t in &self.threads {
            for alloc in t.borrow_mut().live.drain(..) {
                self.heap.free(alloc);
            }
        }
    }
}

/// Entry records with 16-byte keys (and LRU links), destroyed on drop.
struct Records(Vec<EntryPtr>);

impl Records {
    fn new(n: usize) -> Records {
        Records(
            (0..n as u64)
                .map(|i| Entry::create(&key_of(i), true).expect("entry record"))
                .collect(),
        )
    }

    fn get(&self, i: usize) -> &Entry {
        // SAFETY: every record lives until `self` is dropped.
        unsafe { self.0[i].get() }
    }
}

impl Drop for Records {
    fn drop(&mut self) {
        for &p in &self.0 {
            // SAFETY: the structures that referred to the records are gone.
            unsafe { Entry::destroy(p) };
        }
    }
}

/// The sharded index holding `n` entries with 16-byte keys, with as many
/// tries per shard as a cache of `n` one-extent values has.
pub struct IndexFixture {
    index: Index,
    records: Records,
}

impl IndexFixture {
    /// An index of `n` entries.
    pub fn new(n: usize) -> IndexFixture {
        let records = Records::new(n);
        let index = Index::for_capacity(true, n).expect("index");
        for &p in &records.0 {
            // The index takes over the records' creation reference.
            index.insert(p).expect("insert");
        }
        IndexFixture { index, records }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.records.0.len()
    }

    /// Whether the index is empty.
    pub fn is_empty(&self) -> bool {
        self.records.0.is_empty()
    }

    /// Looks key number `i` up (`i >= len()` misses), as a get does: a
    /// hit takes a reference, which is dropped again. Returns whether it hit.
    pub fn lookup(&self, i: u64) -> bool {
        match self.index.lookup(&key_of(i), true) {
            Some(p) => {
                // SAFETY: the lookup's reference; the index holds another,
                // so this never drops the last one.
                unsafe { p.get() }.release();
                true
            }
            None => false,
        }
    }

    /// Removes entry `i` and inserts it again (the index work of an
    /// eviction and a put). Threads must use distinct entries.
    pub fn remove_insert(&self, i: usize) {
        let p = self.records.0[i];
        if self.index.remove(p) {
            self.index.insert(p).expect("insert");
        }
    }
}

impl Drop for IndexFixture {
    fn drop(&mut self) {
        // The records belong to `records`: take the index's references back.
        self.index.drain(|_| {});
    }
}

/// The buffered LRU holding `n` entries.
pub struct LruFixture {
    repl: Repl,
    records: Records,
}

impl LruFixture {
    /// An LRU of `n` linked entries.
    pub fn new(n: usize) -> LruFixture {
        let records = Records::new(n);
        let repl = Repl::new(Policy::Lru).expect("policy");
        for i in 0..n {
            repl.insert(records.get(i));
        }
        repl.drain();
        LruFixture { repl, records }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.records.0.len()
    }

    /// Whether the policy holds no entry.
    pub fn is_empty(&self) -> bool {
        self.records.0.is_empty()
    }

    /// Marks entry `i` used (a get hit).
    pub fn touch(&self, i: usize) {
        self.repl.touch(self.records.get(i));
    }

    /// Evicts the least recently used entry and registers it again as a
    /// new one (the policy's work in a put into a full cache).
    pub fn evict_insert(&self) -> bool {
        let Ok(p) = self.repl.evict_victim() else {
            return false;
        };
        // SAFETY: the records live as long as the fixture.
        let e = unsafe { p.get() };
        // The victim left the policy claimed and removed: make it new.
        e.unclaim();
        e.slot().store(SLOT_UNREGISTERED, Ordering::Relaxed);
        self.repl.insert(e);
        true
    }
}

impl Drop for LruFixture {
    fn drop(&mut self) {
        self.repl.clear();
    }
}
