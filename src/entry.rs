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
//! heap.
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
        debug_assert_eq!(locator, crate::index::hash(key) as u32);
        if key.len() > MAX_KEY {
            return Err(Error::KeyTooLong(key.len()));
        }
        let size = Self::record_size(key.len(), links);
        let layout = Layout::from_size_align(size, ALIGN).map_err(|_| Error::OutOfMemory)?;
        // SAFETY: the layout has a non-zero size (the header alone is).
        let base = unsafe { alloc::alloc(layout) };
        if base.is_null() {
            return Err(Error::OutOfMemory);
        }
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
            Ok(EntryPtr(NonNull::new_unchecked(header)))
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
            alloc::dealloc(base, Layout::from_size_align_unchecked(size, ALIGN));
            alloc
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
}
