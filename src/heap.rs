//! The extent allocator over the pool's bytes (SPEC §8.1).
//!
//! CONTRACT (to be implemented): see the module plan in the task description.

use crate::error::Result;

/// Where one value lives in the pool: a list of runs of whole extents, kept
/// in one machine word when the value occupies a single run.
#[derive(Debug)]
pub(crate) struct Allocation(u64);

impl Allocation {
    /// No pool storage (a value of 0 bytes, or a bench mode that stores none).
    pub(crate) const EMPTY: Allocation = Allocation(0);

    /// Whether the value has no pool storage.
    pub(crate) fn is_empty(&self) -> bool {
        self.0 == 0
    }

    /// DRAM held by the run list (0 when the runs fit in the word).
    pub(crate) fn dram_size(&self) -> usize {
        todo!()
    }
}

/// The extents obtained so far for one value being put.
pub(crate) struct PendingAlloc {}

impl PendingAlloc {
    /// Nothing obtained yet.
    pub(crate) fn new() -> PendingAlloc {
        todo!()
    }

    /// Bytes the obtained extents can hold.
    pub(crate) fn capacity(&self) -> usize {
        todo!()
    }
}

/// The extent allocator.
pub(crate) struct Heap {}

impl Heap {
    /// Bytes of every pool kept out of the heap (the original's guard pages).
    pub(crate) const RESERVED: usize = 8192;

    /// A heap over `pool_len` bytes at `base`, in extents of `extent_size`.
    ///
    /// # Safety
    /// `base .. base + pool_len` is mapped read-write for the heap's life.
    pub(crate) unsafe fn new(base: *mut u8, pool_len: usize, extent_size: usize) -> Result<Heap> {
        let _ = (base, pool_len, extent_size);
        todo!()
    }

    /// The effective extent size.
    pub(crate) fn extent_size(&self) -> usize {
        todo!()
    }

    /// The largest value the empty heap can hold.
    pub(crate) fn max_value(&self) -> usize {
        todo!()
    }

    /// Obtains extents for up to `bytes` more bytes of `pending`; returns how
    /// many of those bytes are now covered (0 when the heap is exhausted).
    pub(crate) fn alloc(&self, pending: &mut PendingAlloc, bytes: usize) -> Result<usize> {
        let _ = (pending, bytes);
        todo!()
    }

    /// Turns the extents obtained into the value's allocation. On failure
    /// the extents are given back.
    pub(crate) fn finish(&self, pending: PendingAlloc) -> Result<Allocation> {
        let _ = pending;
        todo!()
    }

    /// Gives back extents obtained for a put that failed.
    pub(crate) fn release(&self, pending: PendingAlloc) {
        let _ = pending;
        todo!()
    }

    /// Gives back a value's extents.
    pub(crate) fn free(&self, alloc: Allocation) {
        let _ = alloc;
        todo!()
    }

    /// Copies `src` into the allocation, from its first byte.
    ///
    /// # Safety
    /// `alloc` came from this heap, is not freed, and holds ≥ `src.len()`
    /// bytes; no other thread reads it until the entry is published.
    pub(crate) unsafe fn write(&self, alloc: &Allocation, src: &[u8]) {
        let _ = (alloc, src);
        todo!()
    }

    /// Copies `dst.len()` bytes of the value, starting at byte `offset`.
    ///
    /// # Safety
    /// `alloc` came from this heap and is not freed; `offset + dst.len()`
    /// is within the value.
    pub(crate) unsafe fn read(&self, alloc: &Allocation, offset: usize, dst: &mut [u8]) {
        let _ = (alloc, offset, dst);
        todo!()
    }

    /// POOL_SIZE_USED: pool bytes allocated to values.
    pub(crate) fn used_bytes(&self) -> u64 {
        todo!()
    }

    /// HEAP_ENTRIES: separate free regions.
    pub(crate) fn free_regions(&self) -> u64 {
        todo!()
    }

    /// Checks every invariant.
    pub(crate) fn validate(&self) -> Result<(), String> {
        todo!()
    }
}
