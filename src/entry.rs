//! The DRAM record of one key:value pair (SPEC §8.2) and its life cycle.
//!
//! One allocation holds, in this order: the replacement policy's list links
//! (only when the cache uses LRU), the fixed header ([`Entry`]) and the key
//! bytes. Keeping the links in the record saves the separate list node of
//! the original (32 bytes of DRAM and one allocation per entry), and leaving
//! them out under policy NONE means that policy costs no DRAM per entry.
//!
//! This module owns the record's layout, its reference count, the evicting
//! flag, the policy slot word and the key's locator (32 bits of the index's
//! hash of the key, computed once at creation). It never touches the index,
//! the policy's list or the heap: whoever drops the last reference gets the
//! value's [`Allocation`] back from [`Entry::destroy`] and returns it to the
//! heap. A cache creates and destroys its records through a [`Recycler`],
//! which keeps the blocks of destroyed records for the next puts.
//!
//! References: the index holds one from insertion until removal; every
//! lookup that hands an entry out of the index (get, evict by key) takes one
//! under the shard's read lock and drops it when done. The policy holds
//! none: an entry is in the policy's list only while it is indexed (the
//! evictor unlinks it before removing it from the index), so the index's
//! reference covers the list and the ring.

use std::alloc::{self, Layout};
use std::cell::UnsafeCell;
use std::mem::offset_of;
use std::ptr::{self, NonNull};
use std::sync::atomic::{fence, AtomicBool, AtomicU32, AtomicU8, Ordering};

use crate::error::{Error, Result};
use crate::heap::Allocation;
use crate::sync::Mutex;
use crate::valgrind;

/// Policy slot: the entry is not (yet) registered with the policy.
pub(crate) const SLOT_UNREGISTERED: u8 = 0;
/// Policy slot: the entry is in the LRU list and may be claimed.
pub(crate) const SLOT_IDLE: u8 = 1;
/// Policy slot: a get claimed the entry and queued it in the ring; it cannot
/// be evicted until a drain moves it to the tail and makes it idle again.
pub(crate) const SLOT_QUEUED: u8 = 2;
/// Policy slot: an evictor took the entry out of the list.
pub(crate) const SLOT_REMOVED: u8 = 3;

/// The record carries [`Links`] in front of its header.
const HAS_LINKS: u8 = 1;

/// The longest key the index can hold: its length prefix and byte positions
/// are 32-bit.
pub(crate) const MAX_KEY: usize = (u32::MAX as usize) - 64;

/// The fixed header of an entry record; the key bytes follow it.
#[repr(C)]
pub(crate) struct Entry {
    /// Number of references (index, lookups in flight).
    refs: AtomicU32,
    /// Length of the key in bytes.
    ksize: u32,
    /// Size of the value in bytes. Written before the entry is published
    /// (index insertion, a lock release) and never changed afterwards.
    vsize: usize,
    /// Where the value lives in the pool. Same publication rule as `vsize`.
    alloc: UnsafeCell<Allocation>,
    /// Replacement policy state (`SLOT_*`).
    slot: AtomicU8,
    /// Set by the thread that evicts the entry.
    evicting: AtomicBool,
    /// `HAS_LINKS` or 0; fixed at creation.
    flags: u8,
    /// The low 32 bits of the key's index hash ([`index::hash`]), which
    /// place it in the index (shard and trie); fixed at creation. The index
    /// finds the entry's trie by it without hashing the key again, and the
    /// replacement policy names the next victim's place with it. It fills
    /// what was padding: the header stays within the record sizes it had.
    ///
    /// [`index::hash`]: crate::index::hash
    locator: u32,
    /// The key bytes start here.
    key: [u8; 0],
}

/// The LRU list links of an entry, stored in front of its header. Only the
/// holder of the LRU mutex reads or writes them.
#[repr(C)]
pub(crate) struct Links {
    pub(crate) prev: UnsafeCell<*const Entry>,
    pub(crate) next: UnsafeCell<*const Entry>,
}

/// Offset of the key bytes from the start of the header.
const HEADER: usize = offset_of!(Entry, key);
const LINKS: usize = std::mem::size_of::<Links>();
const ALIGN: usize = std::mem::align_of::<Entry>();

// SAFETY: all shared mutation goes through atomics, or through fields
// written before publication (`vsize`, `alloc`), or through the links, which
// only the holder of the LRU mutex touches.
unsafe impl Send for Entry {}
unsafe impl Sync for Entry {}

/// A pointer to a live entry record. It does not own a reference by itself:
/// each place that keeps one documents which reference keeps it alive.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct EntryPtr(NonNull<Entry>);

// SAFETY: an `EntryPtr` is only dereferenced while a reference is held, and
// `Entry` is `Sync`.
unsafe impl Send for EntryPtr {}
unsafe impl Sync for EntryPtr {}

impl EntryPtr {
    /// The raw pointer.
    pub(crate) fn as_ptr(self) -> *mut Entry {
        self.0.as_ptr()
    }

    /// Rebuilds a pointer from [`EntryPtr::as_ptr`].
    ///
    /// # Safety
    /// `ptr` must come from `as_ptr` of a live entry.
    pub(crate) unsafe fn from_raw(ptr: *const Entry) -> EntryPtr {
        // SAFETY: the caller passes a pointer that came from a NonNull.
        EntryPtr(unsafe { NonNull::new_unchecked(ptr as *mut Entry) })
    }

    /// The entry.
    ///
    /// # Safety
    /// The caller holds a reference (or a lock that keeps one alive) for the
    /// whole lifetime `'a`.
    pub(crate) unsafe fn get<'a>(self) -> &'a Entry {
        // SAFETY: as the caller promises, the record is alive.
        unsafe { self.0.as_ref() }
    }
}

/// Bytes that glibc's `malloc_usable_size` reports for a request of `n`
/// bytes on 64-bit targets: the figure a program that interposes `malloc`
/// counts, and the one DRAM_SIZE_USED adds up.
pub(crate) const fn accounted_size(n: usize) -> usize {
    let chunk = (n + 8 + 15) & !15;
    let chunk = if chunk < 32 { 32 } else { chunk };
    chunk - 8
}

impl Entry {
    /// Bytes of the record: the links (if any), then the header and the
    /// key, never less than a whole `Entry` (its padding included) so that
    /// writing the header and forming `&Entry` stay inside the allocation
    /// even for keys shorter than the padding.
    fn record_size(ksize: usize, links: bool) -> usize {
        (HEADER + ksize).max(std::mem::size_of::<Entry>()) + if links { LINKS } else { 0 }
    }

    /// [`Entry::create_located`], hashing the key here (tests and
    /// benchmarks; a put has the hash already).
    #[cfg(any(test, feature = "internals"))]
    pub(crate) fn create(key: &[u8], links: bool) -> Result<EntryPtr> {
        Entry::create_located(key, crate::index::hash(key) as u32, links)
    }

    /// Allocates a record for `key` with one reference, owned by the caller.
    /// With `links`, room for the LRU list links is reserved in front.
    /// `locator` must be `index::hash(key) as u32`, which the caller has
    /// computed for its own lookup already.
    pub(crate) fn create_located(key: &[u8], locator: u32, links: bool) -> Result<EntryPtr> {
        let size = Self::checked_size(key, links)?;
        let layout = Layout::from_size_align(size, ALIGN).map_err(|_| Error::OutOfMemory)?;
        // SAFETY: the layout has a non-zero size (the header alone is).
        let base = unsafe { alloc::alloc(layout) };
        if base.is_null() {
            return Err(Error::OutOfMemory);
        }
        // SAFETY: a fresh block of the record's size.
        Ok(unsafe { Self::init(base, key, locator, links) })
    }

    /// The record size for `key`, or the error for a key too long.
    fn checked_size(key: &[u8], links: bool) -> Result<usize> {
        if key.len() > MAX_KEY {
            return Err(Error::KeyTooLong(key.len()));
        }
        Ok(Self::record_size(key.len(), links))
    }

    /// Writes a new record for `key` into `base`.
    ///
    /// # Safety
    /// `base` is a block of `record_size(key.len(), links)` bytes from the
    /// global allocator with alignment `ALIGN`, owned by the caller; what
    /// it held before is overwritten, not read.
    unsafe fn init(base: *mut u8, key: &[u8], locator: u32, links: bool) -> EntryPtr {
        debug_assert_eq!(locator, crate::index::hash(key) as u32);
        // SAFETY: `base` points to `size` writable bytes aligned to ALIGN;
        // the links (when present) occupy the first LINKS bytes, the header
        // and the key the rest. LINKS is a multiple of ALIGN, so the header
        // is aligned too.
        unsafe {
            let header = if links {
                let l = base as *mut Links;
                l.write(Links {
                    prev: UnsafeCell::new(ptr::null()),
                    next: UnsafeCell::new(ptr::null()),
                });
                base.add(LINKS) as *mut Entry
            } else {
                base as *mut Entry
            };
            header.write(Entry {
                refs: AtomicU32::new(1),
                ksize: key.len() as u32,
                vsize: 0,
                alloc: UnsafeCell::new(Allocation::EMPTY),
                slot: AtomicU8::new(SLOT_UNREGISTERED),
                evicting: AtomicBool::new(false),
                flags: if links { HAS_LINKS } else { 0 },
                locator,
                key: [],
            });
            ptr::copy_nonoverlapping(key.as_ptr(), (header as *mut u8).add(HEADER), key.len());
            // Plain atomic stores change these two words (the policy's
            // drain, a backed-out eviction): tell valgrind's thread
            // checkers they are synchronisation words, not data.
            valgrind::atomic_word(&(*header).slot);
            valgrind::atomic_word(&(*header).evicting);
            EntryPtr(NonNull::new_unchecked(header))
        }
    }

    /// Sets the value's size and storage. Only before the entry is published.
    ///
    /// # Safety
    /// No other thread may see the entry yet.
    pub(crate) unsafe fn set_value(ptr: EntryPtr, vsize: usize, alloc: Allocation) {
        // SAFETY: the caller has exclusive access.
        unsafe {
            let e = ptr.as_ptr();
            (*e).vsize = vsize;
            *(*e).alloc.get() = alloc;
        }
    }

    /// The low 32 bits of the key's index hash.
    pub(crate) fn locator(&self) -> u32 {
        self.locator
    }

    /// The key bytes.
    pub(crate) fn key(&self) -> &[u8] {
        // SAFETY: `ksize` key bytes follow the header in the same record.
        unsafe {
            std::slice::from_raw_parts(
                (self as *const Entry as *const u8).add(HEADER),
                self.ksize as usize,
            )
        }
    }

    /// The value's size in bytes.
    pub(crate) fn vsize(&self) -> usize {
        self.vsize
    }

    /// Where the value lives in the pool.
    pub(crate) fn allocation(&self) -> &Allocation {
        // SAFETY: written only before publication.
        unsafe { &*self.alloc.get() }
    }

    /// DRAM the entry holds: its record and the value's run list, as
    /// `malloc_usable_size` would count them.
    pub(crate) fn dram_size(&self) -> usize {
        accounted_size(Self::record_size(self.ksize as usize, self.has_links()))
            + self.allocation().dram_size()
    }

    /// Whether the record carries LRU links.
    pub(crate) fn has_links(&self) -> bool {
        self.flags & HAS_LINKS != 0
    }

    /// The LRU links.
    ///
    /// # Safety
    /// The record was created with links; the caller holds the LRU mutex
    /// whenever it reads or writes through them.
    pub(crate) unsafe fn links(&self) -> &Links {
        debug_assert!(self.has_links());
        // SAFETY: the links sit right in front of the header.
        unsafe { &*((self as *const Entry as *const u8).sub(LINKS) as *const Links) }
    }

    /// The replacement policy's slot word (`SLOT_*`).
    pub(crate) fn slot(&self) -> &AtomicU8 {
        &self.slot
    }

    /// Takes one more reference.
    ///
    /// The caller already holds a reference, or holds the lock of the index
    /// shard that holds one: the count cannot reach zero concurrently, so,
    /// as for `Arc::clone`, no ordering is needed for the increment itself.
    pub(crate) fn acquire(&self) {
        let old = self.refs.fetch_add(1, Ordering::Relaxed);
        if old >= u32::MAX / 2 {
            // Two billion references in flight means a leak: stop before the
            // count wraps and frees a live record.
            std::process::abort();
        }
    }

    /// Drops one reference; `true` when it was the last one, and the caller
    /// must then [`Entry::destroy`] the record.
    ///
    /// Release on the decrement makes every use of the entry by this thread
    /// happen before the destruction; the acquire fence of the last thread
    /// makes every other thread's uses visible to it (the `Arc` protocol).
    pub(crate) fn release(&self) -> bool {
        // The same edge for valgrind's thread checkers, which do not see
        // it in the atomics.
        valgrind::happens_before(&self.refs);
        if self.refs.fetch_sub(1, Ordering::Release) != 1 {
            return false;
        }
        fence(Ordering::Acquire);
        valgrind::happens_after(&self.refs);
        true
    }

    /// Current number of references (for tests and validation).
    pub(crate) fn refs(&self) -> u32 {
        self.refs.load(Ordering::Acquire)
    }

    /// Claims the entry for eviction; `false` if someone else already has.
    ///
    /// AcqRel: the winner must see the entry as its previous owner left it
    /// (an evictor that backed out), and losers need no data from it.
    pub(crate) fn try_claim(&self) -> bool {
        let won = self
            .evicting
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if won {
            // Pairs with `unclaim`, for valgrind's thread checkers.
            valgrind::happens_after(&self.evicting);
        }
        won
    }

    /// Gives up a claim taken with [`Entry::try_claim`] (eviction failed).
    pub(crate) fn unclaim(&self) {
        valgrind::happens_before(&self.evicting);
        self.evicting.store(false, Ordering::Release);
    }

    /// Whether the entry is claimed for eviction.
    #[cfg(test)]
    pub(crate) fn is_claimed(&self) -> bool {
        self.evicting.load(Ordering::Acquire)
    }

    /// Frees the record and returns the value's allocation, which the
    /// caller gives back to the heap.
    ///
    /// # Safety
    /// `ptr` is live, [`Entry::release`] returned `true` for it (or it was
    /// never published), and nothing uses it afterwards.
    pub(crate) unsafe fn destroy(ptr: EntryPtr) -> Allocation {
        // SAFETY: as the caller promises.
        let (alloc, base, size) = unsafe { Self::take_apart(ptr) };
        // SAFETY: the block came from the global allocator with this layout.
        unsafe { alloc::dealloc(base, Layout::from_size_align_unchecked(size, ALIGN)) };
        alloc
    }

    /// The value's allocation, and the record's block and its size, which
    /// the caller frees or reuses.
    ///
    /// # Safety
    /// As for [`Entry::destroy`].
    unsafe fn take_apart(ptr: EntryPtr) -> (Allocation, *mut u8, usize) {
        // SAFETY: the caller owns the record exclusively.
        unsafe {
            let e = ptr.as_ptr();
            let links = (*e).has_links();
            let size = Self::record_size((*e).ksize as usize, links);
            let alloc = ptr::read((*e).alloc.get());
            let base = if links {
                (e as *mut u8).sub(LINKS)
            } else {
                e as *mut u8
            };
            (alloc, base, size)
        }
    }
}

/// Record blocks a bin keeps at most.
const KEPT_RECORDS: usize = 16;

/// The blocks of destroyed records that a cache keeps for the records of
/// its next puts, in bins of [`KEPT_RECORDS`], one bin per home of the
/// heap (threads that share a home share its bin).
///
/// A put into a full cache destroys its victims' records and creates its
/// own. When threads evict each other's entries, freeing a record that
/// another thread allocated costs the allocator its cross-thread path
/// (glibc: the other arena's lists and lock), and a thread that took a
/// batch of victims frees more records at once than the allocator's
/// thread cache holds. Kept here, a block goes from the evictor's victim
/// straight to its next put: an uncontended lock of the thread's own bin.
///
/// Only exact sizes are reused, so a block keeps the layout it was
/// allocated with. The blocks are freed when the recycler drops, with the
/// cache: nothing outlives `vmemcache_delete` (SPEC §12 item 3). Kept
/// blocks are not records: DRAM_SIZE_USED does not count them.
pub(crate) struct Recycler {
    bins: Box<[Bin]>,
}

/// One bin; `repr(C)` and the padding keep two threads' bins off each
/// other's cache lines (without asking the allocator for alignment).
#[repr(C)]
struct Bin {
    kept: Mutex<Kept>,
    _pad: [u64; 8],
}

struct Kept {
    len: usize,
    blocks: [*mut u8; KEPT_RECORDS],
    sizes: [usize; KEPT_RECORDS],
}

// SAFETY: the blocks are plain memory owned by the bin; only the holder of
// the bin's lock touches them.
unsafe impl Send for Kept {}

impl Recycler {
    /// A recycler with `bins` bins (at least one).
    pub(crate) fn new(bins: usize) -> Result<Recycler> {
        let mut v = Vec::new();
        v.try_reserve_exact(bins.max(1))
            .map_err(|_| Error::OutOfMemory)?;
        v.resize_with(bins.max(1), || Bin {
            kept: Mutex::new(Kept {
                len: 0,
                blocks: [ptr::null_mut(); KEPT_RECORDS],
                sizes: [0; KEPT_RECORDS],
            }),
            _pad: [0; 8],
        });
        Ok(Recycler {
            bins: v.into_boxed_slice(),
        })
    }

    fn bin(&self, home: usize) -> &Bin {
        &self.bins[home % self.bins.len()]
    }

    /// [`Entry::create_located`], in a block kept in bin `home` when one
    /// of the record's size is there.
    pub(crate) fn create(
        &self,
        home: usize,
        key: &[u8],
        locator: u32,
        links: bool,
    ) -> Result<EntryPtr> {
        let size = Entry::checked_size(key, links)?;
        let block = {
            let mut kept = self.bin(home).kept.lock();
            let len = kept.len;
            match kept.sizes[..len].iter().rposition(|&s| s == size) {
                Some(at) => {
                    let block = kept.blocks[at];
                    kept.blocks[at] = kept.blocks[len - 1];
                    kept.sizes[at] = kept.sizes[len - 1];
                    kept.len = len - 1;
                    Some(block)
                }
                None => None,
            }
        };
        match block {
            Some(base) => {
                // The record's last users dropped their references before
                // its destroyer kept the block (the `Arc` protocol of
                // `Entry::release`), and the bin's lock orders that before
                // this: the checkers see only the lock, so they are told
                // the block is new.
                valgrind::fresh_memory(base, size);
                // SAFETY: a block of this size and alignment, which the bin
                // owned and now hands to us.
                Ok(unsafe { Entry::init(base, key, locator, links) })
            }
            None => Entry::create_located(key, locator, links),
        }
    }

    /// [`Entry::destroy`], keeping the record's block in bin `home` when
    /// the bin has room.
    ///
    /// # Safety
    /// As for [`Entry::destroy`].
    pub(crate) unsafe fn destroy(&self, home: usize, ptr: EntryPtr) -> Allocation {
        // SAFETY: as the caller promises.
        let (alloc, base, size) = unsafe { Entry::take_apart(ptr) };
        {
            let mut kept = self.bin(home).kept.lock();
            let len = kept.len;
            if len < KEPT_RECORDS {
                kept.blocks[len] = base;
                kept.sizes[len] = size;
                kept.len = len + 1;
                return alloc;
            }
        }
        // SAFETY: the block came from the global allocator with this layout.
        unsafe { alloc::dealloc(base, Layout::from_size_align_unchecked(size, ALIGN)) };
        alloc
    }

    /// Blocks kept in all bins (tests).
    #[cfg(test)]
    fn kept(&self) -> usize {
        self.bins.iter().map(|b| b.kept.lock().len).sum()
    }
}

impl Drop for Recycler {
    fn drop(&mut self) {
        for bin in self.bins.iter_mut() {
            let kept = bin.kept.get_mut();
            for i in 0..kept.len {
                // SAFETY: each kept block came from the global allocator
                // with this layout, and only the bin owns it.
                unsafe {
                    alloc::dealloc(
                        kept.blocks[i],
                        Layout::from_size_align_unchecked(kept.sizes[i], ALIGN),
                    )
                };
            }
            kept.len = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_keys_get_a_whole_header() {
        assert_eq!(std::mem::size_of::<Entry>(), 32);
        assert_eq!(Entry::record_size(0, false), 32);
        assert_eq!(Entry::record_size(4, true), 52);
        assert_eq!(Entry::record_size(5, false), 37);
        assert_eq!(Entry::record_size(6, false), 38);
        // glibc rounds these to the same blocks as the bare sizes would.
        assert_eq!(accounted_size(Entry::record_size(0, false)), 40);
        assert_eq!(accounted_size(Entry::record_size(4, true)), 56);
    }

    #[test]
    fn locator_is_the_index_hash() {
        for key in [&b""[..], b"k", b"a longer key than one word"] {
            let p = Entry::create(key, true).unwrap();
            // SAFETY: alive until destroyed below.
            assert_eq!(unsafe { p.get() }.locator(), crate::index::hash(key) as u32);
            // SAFETY: never published.
            unsafe { Entry::destroy(p) };
        }
    }

    #[test]
    fn header_is_compact() {
        assert_eq!(HEADER, 32);
        assert_eq!(LINKS, 16);
        // An LRU entry with an 8-byte key is one 56-byte malloc block, and
        // one with a 16-byte key a 72-byte block, as without the locator.
        assert_eq!(accounted_size(Entry::record_size(8, true)), 56);
        assert_eq!(accounted_size(Entry::record_size(8, false)), 40);
        assert_eq!(accounted_size(Entry::record_size(16, true)), 72);
    }

    #[test]
    fn accounted_size_matches_glibc() {
        // The figures of SPEC §9: 40 + ksize bytes of the original's record.
        assert_eq!(accounted_size(44), 56);
        assert_eq!(accounted_size(56), 56);
        assert_eq!(accounted_size(40), 40);
        assert_eq!(accounted_size(0), 24);
        assert_eq!(accounted_size(136), 136);
    }

    #[test]
    fn create_keeps_key_and_links() {
        for links in [false, true] {
            for key in [&b""[..], b"k", b"0123456789abcdef", &[0xffu8; 300][..]] {
                let p = Entry::create(key, links).unwrap();
                // SAFETY: we own the only reference.
                let e = unsafe { p.get() };
                assert_eq!(e.key(), key);
                assert_eq!(e.has_links(), links);
                assert_eq!(e.refs(), 1);
                assert_eq!(e.slot().load(Ordering::Relaxed), SLOT_UNREGISTERED);
                if links {
                    // SAFETY: created with links; single-threaded test.
                    unsafe {
                        assert!((*e.links().prev.get()).is_null());
                        assert!((*e.links().next.get()).is_null());
                    }
                }
                e.acquire();
                assert!(!e.release());
                assert!(e.release());
                // SAFETY: last reference dropped.
                let alloc = unsafe { Entry::destroy(p) };
                assert!(alloc.is_empty());
            }
        }
    }

    #[test]
    fn claim_is_exclusive() {
        let p = Entry::create(b"x", false).unwrap();
        // SAFETY: we own the only reference.
        let e = unsafe { p.get() };
        assert!(e.try_claim());
        assert!(!e.try_claim());
        assert!(e.is_claimed());
        e.unclaim();
        assert!(e.try_claim());
        assert!(e.release());
        // SAFETY: last reference dropped.
        unsafe { Entry::destroy(p) };
    }

    /// Creates a record through `r` (bin `home`) with a value size, marks
    /// it used in every way a cache would, and returns it.
    fn used_record(r: &Recycler, home: usize, key: &[u8], links: bool) -> EntryPtr {
        let p = r
            .create(home, key, crate::index::hash(key) as u32, links)
            .unwrap();
        // SAFETY: not published.
        unsafe { Entry::set_value(p, 77, Allocation::EMPTY) };
        // SAFETY: we own the only reference.
        let e = unsafe { p.get() };
        e.slot().store(SLOT_REMOVED, Ordering::Relaxed);
        assert!(e.try_claim());
        if links {
            // SAFETY: we own the record.
            unsafe { *e.links().next.get() = e as *const Entry };
        }
        p
    }

    #[test]
    fn a_destroyed_record_is_reused_whole_and_fresh() {
        for links in [false, true] {
            let r = Recycler::new(2).unwrap();
            let old = used_record(&r, 0, b"old key", links);
            // SAFETY: never published; ours.
            let alloc = unsafe { r.destroy(0, old) };
            assert!(alloc.is_empty());
            assert_eq!(r.kept(), 1);
            // Another size, or another bin, allocates anew.
            let hash = |k: &[u8]| crate::index::hash(k) as u32;
            let longer = r.create(0, b"old key!", hash(b"old key!"), links);
            let elsewhere = r.create(1, b"new key", hash(b"new key"), links);
            let (longer, elsewhere) = (longer.unwrap(), elsewhere.unwrap());
            assert_ne!(longer, old);
            assert_ne!(elsewhere, old);
            assert_eq!(r.kept(), 1);
            // The same size in the same bin takes the block, as new.
            let key = b"new key";
            let p = r
                .create(0, key, crate::index::hash(key) as u32, links)
                .unwrap();
            assert_eq!(p, old, "the block is reused");
            assert_eq!(r.kept(), 0);
            // SAFETY: we own the only reference.
            let e = unsafe { p.get() };
            assert_eq!(e.key(), key);
            assert_eq!(e.locator(), crate::index::hash(key) as u32);
            assert_eq!(e.vsize(), 0);
            assert!(e.allocation().is_empty());
            assert_eq!(e.refs(), 1);
            assert_eq!(e.slot().load(Ordering::Relaxed), SLOT_UNREGISTERED);
            assert!(!e.is_claimed());
            assert_eq!(e.has_links(), links);
            if links {
                // SAFETY: we own the record.
                unsafe { assert!((*e.links().next.get()).is_null()) };
            }
            for q in [p, longer, elsewhere] {
                // SAFETY: ours, never published.
                unsafe { Entry::destroy(q) };
            }
        }
    }

    #[test]
    fn a_bin_keeps_a_bounded_number_of_blocks() {
        let r = Recycler::new(1).unwrap();
        let records: Vec<EntryPtr> = (0..KEPT_RECORDS as u32 + 5)
            .map(|i| used_record(&r, 0, &i.to_le_bytes(), true))
            .collect();
        for &p in &records {
            // SAFETY: never published; ours.
            unsafe { r.destroy(0, p) };
        }
        assert_eq!(r.kept(), KEPT_RECORDS, "the rest were freed");
        // Any home maps to the only bin.
        let again: Vec<EntryPtr> = (0..KEPT_RECORDS as u32)
            .map(|i| used_record(&r, 7, &i.to_le_bytes(), true))
            .collect();
        assert_eq!(r.kept(), 0);
        assert!(again.iter().all(|p| records[..KEPT_RECORDS].contains(p)));
        for (i, &p) in again.iter().enumerate() {
            // SAFETY: ours.
            assert_eq!(unsafe { p.get() }.key(), (i as u32).to_le_bytes());
            // SAFETY: never published; ours.
            unsafe { r.destroy(0, p) };
        }
        // Dropping the recycler frees what it keeps (miri and valgrind
        // would report a leak).
        drop(r);
    }
}
