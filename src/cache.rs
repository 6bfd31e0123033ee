//! The cache engine: put, get, exists, evict, callbacks, the on-miss
//! protocol, statistics and the bench knobs (SPEC §3–§10 with the decisions
//! of §14), and the safe Rust API over them.
//!
//! This is the only module that knows every other one. It holds no lock of
//! its own: the index shards, the heap arenas and the LRU list lock
//! themselves, and none of their locks is held while a callback runs, so
//! callbacks may re-enter the cache (SPEC §7.4).

use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::config::{Config, Policy};
use crate::entry::{Entry, EntryPtr, Recycler};
use crate::error::{Error, Result};
use crate::heap::{Allocation, Heap, PendingAlloc};
use crate::index::{self, Index};
use crate::pool::Pool;
use crate::repl::{Repl, MAX_VICTIMS};
use crate::stats::Stat;

/// Most pool bytes a put evicts beyond its need when puts of several
/// threads evict in turn (never more than a 256th of the pool); see
/// [`Cache::evict_victim`].
const AHEAD_BYTES: usize = 16 << 10;

/// Callback run when an entry is evicted: receives the cache and the key.
pub type OnEvict = dyn Fn(&Cache, &[u8]) + Send + Sync;
/// Callback run when a get misses: receives the cache and the key; a put of
/// that key from inside it satisfies the get.
pub type OnMiss = dyn Fn(&Cache, &[u8]) + Send + Sync;

/// Benchmark-only switches (`vmemcache_bench_set`). They make the cache
/// skip work and so store wrong data; they never make it unsafe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum BenchConfig {
    /// Puts only index the key (value size 0, nothing stored, not
    /// registered with the policy); gets return 0 without copying.
    IndexOnly = 0,
    /// Puts index the key and register it with the policy but take no pool
    /// space and store nothing; gets report the size and copy nothing.
    NoAlloc = 1,
    /// Puts allocate pool space but copy nothing; gets report the byte
    /// count but copy nothing.
    NoMemcpy = 2,
    /// Touches one byte of every page of the pool (the value is ignored).
    Prefault = 3,
}

impl BenchConfig {
    /// The switch with the C enum value `value`.
    pub fn from_u32(value: u32) -> Option<BenchConfig> {
        match value {
            0 => Some(BenchConfig::IndexOnly),
            1 => Some(BenchConfig::NoAlloc),
            2 => Some(BenchConfig::NoMemcpy),
            3 => Some(BenchConfig::Prefault),
            _ => None,
        }
    }
}

/// What a get copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    /// Bytes copied into the caller's buffer.
    pub copied: usize,
    /// The value's full size.
    pub size: usize,
}

/// Where a get puts the bytes it copies.
pub(crate) enum Dest<'a> {
    /// Nowhere (the C API's NULL buffer, with the size it was given): a
    /// hit copies nothing and reports 0.
    Null(usize),
    /// A caller's buffer.
    Buf(&'a mut [u8]),
    /// A vector that receives the value from `offset` on.
    Vec(&'a mut Vec<u8>),
}

/// The result of the engine's get: bytes copied and, when known, the value
/// size (an INDEX_ONLY hit does not report one, SPEC §10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GetOutcome {
    pub(crate) copied: usize,
    pub(crate) size: Option<usize>,
}

/// A get waiting inside its `on_miss` callback for a put of its key.
///
/// The records form a per-thread stack through `outer` (nested gets inside
/// callbacks each keep their own, SPEC §14 #3); the thread-local below
/// points to the innermost. They live on the stack of the waiting get.
struct PendingMiss {
    key: *const u8,
    key_len: usize,
    offset: usize,
    dest: PendingDest,
    /// Set by the satisfying put: (bytes copied, value size).
    result: Cell<Option<(usize, usize)>>,
    outer: *const PendingMiss,
}

enum PendingDest {
    Null(usize),
    Buf(*mut u8, usize),
    Vec(*mut Vec<u8>),
}

thread_local! {
    // A plain pointer cell: const-initialised and without destructor, so
    // using it neither allocates nor registers anything with the thread.
    static PENDING_MISS: Cell<*const PendingMiss> = const { Cell::new(ptr::null()) };
}

/// Pops a pending record when its get returns, even by unwinding.
struct PendingGuard {
    outer: *const PendingMiss,
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        PENDING_MISS.with(|p| p.set(self.outer));
    }
}

/// Satisfies the innermost unsatisfied pending get of this thread whose key
/// is `key` with `value` (SPEC §7.2): copies from the get's offset (our fix
/// §14 #1) and records the clamped length and the value size. Runs first in
/// every put, on every cache, before any validation.
pub(crate) fn satisfy_pending_miss(key: &[u8], value: &[u8]) {
    // SAFETY: a slice's bytes are readable.
    unsafe { satisfy_pending_miss_raw(key, value.as_ptr(), value.len()) }
}

/// [`satisfy_pending_miss`] for a value given as a pointer and a length,
/// so that the C layer never forms a slice over a value it must not read
/// (one larger than the pool): only the bytes copied to the waiting get
/// are ever read.
///
/// # Safety
/// When a pending get of this thread waits for `key`, `value` must hold
/// `value_len` readable bytes.
pub(crate) unsafe fn satisfy_pending_miss_raw(key: &[u8], value: *const u8, value_len: usize) {
    let mut cur = PENDING_MISS.with(|p| p.get());
    while !cur.is_null() {
        // SAFETY: records on the stack are popped (by their guard) before
        // their frame ends, so every pointer in the chain is live.
        let pending = unsafe { &*cur };
        if pending.result.get().is_none()
            && pending.key_len == key.len()
            // SAFETY: the waiting get's key outlives its record.
            && unsafe { std::slice::from_raw_parts(pending.key, pending.key_len) } == key
        {
            let avail = value_len.saturating_sub(pending.offset);
            let copied = match pending.dest {
                // The original reports the clamped length even without a
                // buffer (kept, SPEC §14 #2).
                PendingDest::Null(len) => avail.min(len),
                PendingDest::Buf(buf, len) => {
                    let n = avail.min(len);
                    if n > 0 {
                        // SAFETY: the waiting get lent `buf` for `len`
                        // bytes and does not touch it until we return.
                        unsafe { ptr::copy_nonoverlapping(value.add(pending.offset), buf, n) };
                    }
                    n
                }
                PendingDest::Vec(vec) => {
                    // SAFETY: as above, the vector is lent to us.
                    let vec = unsafe { &mut *vec };
                    vec.clear();
                    if avail > 0 {
                        // SAFETY: `value` holds `value_len` bytes (the
                        // caller's promise); we read the last `avail`.
                        vec.extend_from_slice(unsafe {
                            std::slice::from_raw_parts(value.add(pending.offset), avail)
                        });
                    }
                    avail
                }
            };
            pending.result.set(Some((copied, value_len)));
            return;
        }
        cur = pending.outer;
    }
}

/// Builds a [`Cache`].
///
/// ```
/// use vmemcache::{CacheBuilder, Policy};
///
/// let cache = CacheBuilder::new()
///     .size(4 << 20)
///     .extent_size(512)
///     .policy(Policy::Lru)
///     .anonymous()
///     .build()?;
/// cache.put(b"key", b"value")?;
/// assert_eq!(cache.get(b"key").as_deref(), Some(&b"value"[..]));
/// # Ok::<(), vmemcache::Error>(())
/// ```
#[must_use]
pub struct CacheBuilder {
    config: Config,
    size_set: Option<usize>,
    extent_set: Option<usize>,
    backing: Backing,
    on_evict: Option<Box<OnEvict>>,
    on_miss: Option<Box<OnMiss>>,
}

enum Backing {
    Unset,
    Path(PathBuf),
    Anonymous,
}

impl Default for CacheBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl CacheBuilder {
    /// A builder with the defaults: a 1 MiB pool, 256-byte extents, LRU,
    /// and no backing chosen yet.
    pub fn new() -> CacheBuilder {
        CacheBuilder {
            config: Config::default(),
            size_set: None,
            extent_set: None,
            backing: Backing::Unset,
            on_evict: None,
            on_miss: None,
        }
    }

    /// The pool size in bytes (at least [`crate::MIN_POOL`]; rounded up to
    /// the page size when the cache is built).
    pub fn size(mut self, size: usize) -> Self {
        self.size_set = Some(size);
        self
    }

    /// The extent size in bytes (at least [`crate::MIN_EXTENT`]): the unit
    /// in which the pool is handed out to values.
    pub fn extent_size(mut self, extent_size: usize) -> Self {
        self.extent_set = Some(extent_size);
        self
    }

    /// The replacement policy.
    pub fn policy(mut self, policy: Policy) -> Self {
        self.config.policy = policy;
        self
    }

    /// Keep values in an anonymous temporary file in the directory `path`
    /// (on DAX persistent memory, tmpfs or any filesystem), or on the device
    /// DAX `path`.
    pub fn path(mut self, path: impl AsRef<Path>) -> Self {
        self.backing = Backing::Path(path.as_ref().to_path_buf());
        self
    }

    /// Keep values in anonymous memory.
    pub fn anonymous(mut self) -> Self {
        self.backing = Backing::Anonymous;
        self
    }

    /// Run `f` for every evicted entry, with the entry still readable.
    pub fn on_evict(mut self, f: impl Fn(&Cache, &[u8]) + Send + Sync + 'static) -> Self {
        self.on_evict = Some(Box::new(f));
        self
    }

    /// Run `f` when a get misses; a put of the key from inside it
    /// satisfies the get.
    pub fn on_miss(mut self, f: impl Fn(&Cache, &[u8]) + Send + Sync + 'static) -> Self {
        self.on_miss = Some(Box::new(f));
        self
    }

    /// Creates the cache: validates the configuration, maps the pool and
    /// builds the heap, the index and the policy.
    pub fn build(self) -> Result<Cache> {
        let mut config = self.config;
        if let Some(size) = self.size_set {
            Config::check_size(size)?;
            config.size = size;
        }
        if let Some(extent) = self.extent_set {
            Config::check_extent_size(extent)?;
            config.extent_size = extent;
        }
        let pool = match &self.backing {
            Backing::Unset => return Err(Error::NullPath),
            Backing::Path(path) => {
                config.check_for_add()?;
                Pool::open(path, config.size)?
            }
            Backing::Anonymous => {
                config.check_for_add()?;
                Pool::anonymous(if config.size == 0 {
                    crate::MIN_POOL
                } else {
                    config.size
                })?
            }
        };
        let mut cache = Cache::with_pool(pool, &config)?;
        cache.on_evict = self.on_evict;
        cache.on_miss = self.on_miss;
        Ok(cache)
    }
}

/// A cache whose values live in a mapped pool.
///
/// All data-path methods (`put`, `get*`, `exists`, `evict*`, `stat`) may be
/// called from many threads at once; callbacks may re-enter the cache.
pub struct Cache {
    // Field order is drop order: entries are freed (in Drop) first, then
    // the index and policy, the kept record blocks, the heap, and the pool
    // is unmapped last.
    index: Index,
    repl: Repl,
    /// Blocks of destroyed records, for the records of the next puts.
    records: Recycler,
    heap: Heap,
    pool: Pool,
    on_evict: Option<Box<OnEvict>>,
    on_miss: Option<Box<OnMiss>>,
    index_only: AtomicBool,
    no_alloc: AtomicBool,
    no_memcpy: AtomicBool,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("pool_size", &self.pool.len())
            .field("extent_size", &self.heap.extent_size())
            .field("entries", &self.stat(Stat::Entries))
            .finish_non_exhaustive()
    }
}

/// Releases extents or an entry record if a put fails or unwinds.
struct PutGuard<'a> {
    cache: &'a Cache,
    entry: Option<EntryPtr>,
    pending: Option<PendingAlloc>,
    alloc: Option<Allocation>,
}

impl Drop for PutGuard<'_> {
    fn drop(&mut self) {
        if let Some(pending) = self.pending.take() {
            self.cache.heap.release(pending);
        }
        if let Some(alloc) = self.alloc.take() {
            self.cache.free_allocation(alloc);
        }
        if let Some(entry) = self.entry.take() {
            // SAFETY: the entry was never published; we own it.
            let alloc = unsafe { self.cache.destroy(entry) };
            self.cache.free_allocation(alloc);
        }
    }
}

impl Cache {
    /// A builder (same as [`CacheBuilder::new`]).
    pub fn builder() -> CacheBuilder {
        CacheBuilder::new()
    }

    /// Builds the engine over a mapped pool. The configuration was
    /// validated by the caller.
    pub(crate) fn with_pool(pool: Pool, config: &Config) -> Result<Cache> {
        // SAFETY: the pool stays mapped for the cache's life and is dropped
        // after the heap (field order).
        let heap = unsafe { Heap::new(pool.as_ptr(), pool.len(), config.extent_size)? };
        let index = Index::for_capacity(
            index::sharding_from_env()?,
            pool.len() / config.extent_size.max(1),
        )?;
        let repl = Repl::new(config.policy)?;
        let records = Recycler::new(heap.homes())?;
        Ok(Cache {
            records,
            index,
            repl,
            heap,
            pool,
            on_evict: None,
            on_miss: None,
            index_only: AtomicBool::new(false),
            no_alloc: AtomicBool::new(false),
            no_memcpy: AtomicBool::new(false),
        })
    }

    /// The pool size in bytes.
    pub fn pool_size(&self) -> usize {
        self.pool.len()
    }

    /// The extent size in bytes actually used (the configured one, or the
    /// whole heap when the configured extent is larger).
    pub fn extent_size(&self) -> usize {
        self.heap.extent_size()
    }

    /// The largest value the empty cache can hold.
    pub fn max_value_size(&self) -> usize {
        self.heap.max_value()
    }

    /// Replaces the eviction callback (`None` removes it).
    pub fn set_on_evict(&mut self, f: Option<Box<OnEvict>>) {
        self.on_evict = f;
    }

    /// Replaces the miss callback (`None` removes it).
    pub fn set_on_miss(&mut self, f: Option<Box<OnMiss>>) {
        self.on_miss = f;
    }

    // The bench flags are read with relaxed loads: they are set while no
    // other thread operates (SPEC §8.5) and only select which work to skip.
    fn flag(flag: &AtomicBool) -> bool {
        flag.load(Ordering::Relaxed)
    }

    /// Stores `value` under `key`.
    ///
    /// Fails with [`Error::ValueTooLarge`] for a value that can never fit
    /// (nothing is evicted), [`Error::KeyExists`] when the key is present
    /// (nothing is evicted), [`Error::NoSpace`] when the pool is full and
    /// nothing can be evicted, [`Error::OutOfMemory`] when DRAM runs out.
    /// A put of a key that a get of this thread is waiting for in its
    /// `on_miss` callback satisfies that get even if the put then fails.
    pub fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        satisfy_pending_miss(key, value);
        self.put_unchecked_pending(key, value)
    }

    /// `put` without the on-miss step (the C layer runs it before its
    /// readiness checks).
    pub(crate) fn put_unchecked_pending(&self, key: &[u8], value: &[u8]) -> Result<()> {
        let len = value.len();
        let index_only = Self::flag(&self.index_only);
        let no_alloc = Self::flag(&self.no_alloc);
        let stores = !index_only && !no_alloc;
        if len > self.pool.len() || (stores && len > self.heap.max_value()) {
            return Err(Error::ValueTooLarge);
        }
        if let Some(locator) = self.repl.next_victim() {
            // In a full cache this put will evict that entry: its trie's
            // root then arrives while the existence check below waits for
            // this key's own misses.
            self.index.prefetch(locator);
        }
        // Hashed once: for the existence check, the record and (through the
        // record) the insertion.
        let locator = crate::index::hash(key) as u32;
        // The record is made while the key's trie root is on its way for
        // the existence check (and freed again if the key exists).
        self.index.prefetch(locator);
        let entry = self
            .records
            .create(self.heap.home(), key, locator, self.repl.uses_links())?;
        let mut guard = PutGuard {
            cache: self,
            entry: Some(entry),
            pending: None,
            alloc: None,
        };
        // The first allocation evicts nothing, so it may come before the
        // existence check: when it covers the value (from the thread's
        // spare or from free space), the value is copied while the key's
        // root and node are on their way. A put of a key that exists gives
        // the extents back.
        if stores && len != 0 {
            let pending = guard.pending.insert(PendingAlloc::new());
            self.heap.alloc(pending, len)?;
            if pending.capacity() >= len {
                let pending = guard.pending.take().ok_or(Error::Internal("pending"))?;
                guard.alloc = Some(self.fill(pending, value)?);
            }
        }
        if self.index.peek_at(locator, key, |_| ()).is_some() {
            return Err(Error::KeyExists);
        }
        if index_only {
            // Value size 0, nothing stored.
        } else if no_alloc || len == 0 {
            // SAFETY: the entry is not published yet.
            unsafe { Entry::set_value(entry, len, Allocation::EMPTY) };
        } else {
            let alloc = match guard.alloc.take() {
                Some(alloc) => alloc,
                None => {
                    let pending = guard.pending.as_mut().ok_or(Error::Internal("pending"))?;
                    self.make_room(pending, len)?;
                    let pending = guard.pending.take().ok_or(Error::Internal("pending"))?;
                    self.fill(pending, value)?
                }
            };
            // SAFETY: the entry is not published yet.
            unsafe { Entry::set_value(entry, len, alloc) };
        }
        // SAFETY: the entry is ours until the insertion publishes it.
        let e = unsafe { entry.get() };
        let value_at = match self.heap.first_run(e.allocation()) {
            Some((at, run)) => (at, run.min(e.vsize())),
            None => (std::ptr::null(), 0),
        };
        self.index.insert_valued(entry, value_at)?;
        // Published: the index owns the record (and its allocation) now.
        guard.entry = None;
        drop(guard);
        if !index_only {
            // SAFETY: the index holds a reference; nobody can remove the
            // entry before it is registered (removal needs the policy).
            self.repl.insert(unsafe { entry.get() });
        }
        Ok(())
    }

    /// Allocates, evicting as needed, until `pending` holds `len` bytes.
    fn make_room(&self, pending: &mut PendingAlloc, len: usize) -> Result<()> {
        loop {
            let remaining = len - len.min(pending.capacity());
            if remaining == 0 {
                return Ok(());
            }
            if self.heap.alloc(pending, remaining)? == 0 {
                match self.evict_victim(Some((&mut *pending, remaining))) {
                    Ok(()) => {}
                    // Nothing left to evict: the extents that puts of other
                    // threads kept for their next puts are the last free
                    // space there is.
                    Err(Error::NoVictim) if self.heap.return_spares() > 0 => {}
                    Err(Error::NoVictim) => return Err(Error::NoSpace),
                    Err(e) => return Err(e),
                }
            }
        }
    }

    /// Turns a put's pending allocation, which holds at least `value.len()`
    /// bytes, into its allocation, and copies the value in.
    fn fill(&self, pending: PendingAlloc, value: &[u8]) -> Result<Allocation> {
        debug_assert!(pending.capacity() >= value.len());
        let alloc = self.heap.finish(pending)?;
        if !Self::flag(&self.no_memcpy) {
            // SAFETY: the allocation is ours, holds ≥ value.len() bytes, and
            // no other thread can see it before the index insertion.
            unsafe { self.heap.write(&alloc, value) };
        }
        Ok(alloc)
    }

    /// Copies the value of `key`, from byte `offset` on, into `buf`.
    ///
    /// Returns the bytes copied (`min(buf.len(), size - offset)`, 0 when
    /// `offset` is at or past the end) and the value's size. On a miss the
    /// `on_miss` callback runs, if there is one, and a put of the key from
    /// inside it satisfies the get; otherwise [`Error::Miss`].
    pub fn get_into(&self, key: &[u8], offset: usize, buf: &mut [u8]) -> Result<Found> {
        let out = self.get_raw(key, offset, Dest::Buf(buf))?;
        Ok(Found {
            copied: out.copied,
            size: out.size.unwrap_or(0),
        })
    }

    /// The value of `key`, or `None` on a miss (after `on_miss`, if any,
    /// had its chance to put it).
    pub fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        let mut value = Vec::new();
        match self.get_raw(key, 0, Dest::Vec(&mut value)) {
            Ok(_) => Some(value),
            Err(_) => None,
        }
    }

    /// The engine's get (SPEC §5, §7.2).
    pub(crate) fn get_raw(&self, key: &[u8], offset: usize, dest: Dest<'_>) -> Result<GetOutcome> {
        let Some(ptr) = self.index.lookup(key, true) else {
            return self.get_missed(key, offset, dest);
        };
        // SAFETY: the lookup gave us a reference, dropped below.
        let entry = unsafe { ptr.get() };
        let outcome = if Self::flag(&self.index_only) {
            GetOutcome {
                copied: 0,
                size: None,
            }
        } else {
            self.repl.touch(entry);
            let size = entry.vsize();
            let avail = size.saturating_sub(offset);
            let copy = |dst: &mut [u8]| {
                if !dst.is_empty() && !entry.allocation().is_empty() && !Self::flag(&self.no_memcpy)
                {
                    // SAFETY: our reference keeps the allocation alive; the
                    // range is inside the value.
                    unsafe { self.heap.read(entry.allocation(), offset, dst) };
                }
            };
            let copied = match dest {
                Dest::Null(_) => 0,
                Dest::Buf(buf) => {
                    let n = avail.min(buf.len());
                    copy(&mut buf[..n]);
                    n
                }
                Dest::Vec(vec) => {
                    vec.clear();
                    vec.resize(avail, 0);
                    copy(&mut vec[..]);
                    avail
                }
            };
            GetOutcome {
                copied,
                size: Some(size),
            }
        };
        self.release(ptr);
        Ok(outcome)
    }

    fn get_missed(&self, key: &[u8], offset: usize, dest: Dest<'_>) -> Result<GetOutcome> {
        let Some(on_miss) = &self.on_miss else {
            return Err(Error::Miss);
        };
        let outer = PENDING_MISS.with(|p| p.get());
        let pending = PendingMiss {
            key: key.as_ptr(),
            key_len: key.len(),
            offset,
            dest: match dest {
                Dest::Null(len) => PendingDest::Null(len),
                Dest::Buf(buf) => PendingDest::Buf(buf.as_mut_ptr(), buf.len()),
                Dest::Vec(vec) => PendingDest::Vec(vec as *mut Vec<u8>),
            },
            result: Cell::new(None),
            outer,
        };
        PENDING_MISS.with(|p| p.set(&pending));
        let guard = PendingGuard { outer };
        on_miss(self, key);
        drop(guard);
        match pending.result.get() {
            Some((copied, size)) => Ok(GetOutcome {
                copied,
                size: Some(size),
            }),
            None => Err(Error::Miss),
        }
    }

    /// The size of the value of `key`, if present. Counts neither a hit nor
    /// a miss and does not mark the entry used.
    pub fn exists(&self, key: &[u8]) -> Option<usize> {
        self.index.peek(key, |e| e.vsize())
    }

    /// Evicts the entry of `key`, running `on_evict` first.
    ///
    /// Returns `Ok` also when another thread is already evicting it.
    /// Fails with [`Error::KeyNotFound`], or — after `on_evict` ran — with
    /// [`Error::Busy`] when the entry stays in use, or [`Error::LruEmpty`]
    /// when the policy's list is empty.
    pub fn evict(&self, key: &[u8]) -> Result<()> {
        let ptr = self.index.lookup(key, false).ok_or(Error::KeyNotFound)?;
        // SAFETY: the lookup gave us a reference, dropped below.
        let entry = unsafe { ptr.get() };
        if !entry.try_claim() {
            self.release(ptr);
            return Ok(());
        }
        let callback = self.run_on_evict(key);
        let result = match self.repl.remove(entry) {
            Ok(()) => {
                if self.index.remove(ptr) {
                    self.release(ptr);
                }
                Ok(())
            }
            Err(e) => {
                entry.unclaim();
                Err(e)
            }
        };
        self.release(ptr);
        if let Err(payload) = callback {
            panic::resume_unwind(payload);
        }
        result
    }

    /// Evicts the entry the replacement policy picks (the least recently
    /// used one under LRU), running `on_evict` first. Fails with
    /// [`Error::NoVictim`] when there is nothing to evict (always under
    /// [`Policy::None`]).
    pub fn evict_lru(&self) -> Result<()> {
        self.evict_victim(None)
    }

    /// Evicts the replacement policy's victim. With `into` (a put that
    /// needs `bytes` more) and no `on_evict` callback, the victims it needs,
    /// as far as their sizes tell, are taken from the policy at once
    /// ([`Repl::evict_victims`], with [`AHEAD_BYTES`] more when puts of
    /// several threads evict in turn); when an eviction drops a victim's
    /// last reference its extents go straight into the pending allocation
    /// (what is not needed to the thread's spare, for its next puts);
    /// otherwise they are freed.
    fn evict_victim(&self, into: Option<(&mut PendingAlloc, usize)>) -> Result<()> {
        let Some((pending, bytes)) = into else {
            let ptr = self.repl.evict_victim()?;
            let (done, callback) = self.finish_eviction(ptr, None);
            if let Err(payload) = callback {
                panic::resume_unwind(payload);
            }
            return done;
        };
        // With an `on_evict` callback, one victim at a time: the callback
        // may put (and evict) itself, and must not find victims of this put
        // claimed and still holding their extents.
        let (need, ahead) = if self.on_evict.is_some() {
            (0, 0)
        } else {
            (bytes, AHEAD_BYTES.min(self.pool.len() / 256))
        };
        let mut victims = [None; MAX_VICTIMS];
        let n = self
            .repl
            .evict_victims(need, ahead, self.heap.extent_size(), &mut victims)?;
        let victims = &victims[..n];
        for ptr in victims.iter().skip(1).flatten() {
            // SAFETY: claimed victims stay alive until their eviction ends.
            self.index.prefetch(unsafe { ptr.get() }.locator());
        }
        // The value's full length: `bytes` is what the pending allocation
        // still lacks.
        let value_len = pending.capacity() + bytes;
        // Every victim taken is evicted to the end, whatever an earlier one
        // ran into; the first error or panic is reported afterwards.
        let mut result = Ok(());
        let mut panicked = Ok(());
        for ptr in victims.iter().flatten() {
            let wanted = value_len.saturating_sub(pending.capacity());
            let (done, callback) = self.finish_eviction(*ptr, Some((&mut *pending, wanted)));
            if result.is_ok() {
                result = done;
            }
            if panicked.is_ok() {
                panicked = callback;
            }
        }
        if let Err(payload) = panicked {
            panic::resume_unwind(payload);
        }
        result
    }

    /// Ends the eviction of a victim taken from the policy: runs
    /// `on_evict`, removes it from the index and drops the references; the
    /// extents go to `into` as [`Cache::evict_victim`] says. Returns how
    /// that went and, apart, the callback's panic, which the caller
    /// resumes once its evictions are complete.
    fn finish_eviction(
        &self,
        ptr: EntryPtr,
        into: Option<(&mut PendingAlloc, usize)>,
    ) -> (Result<()>, std::thread::Result<()>) {
        // SAFETY: the victim is still indexed (we hold its claim, so nobody
        // else removes it); our own reference keeps it alive past removal.
        let entry = unsafe { ptr.get() };
        if let Some((pending, bytes)) = &into {
            // The rest of the value will go to the victim's first extents:
            // their lines arrive during the eviction.
            let value_len = pending.capacity() + *bytes;
            self.heap
                .prefetch_write(entry.allocation(), *bytes, value_len);
        }
        entry.acquire();
        let callback = self.run_on_evict(entry.key());
        if self.index.remove(ptr) {
            self.release(ptr);
        }
        let adopted = match into {
            // SAFETY: we give up our own reference here; when it was the
            // last, nobody else can reach the record or its extents.
            Some((pending, bytes)) if unsafe { ptr.get() }.release() => {
                // SAFETY: that was the last reference.
                let alloc = unsafe { self.destroy(ptr) };
                self.heap.adopt(pending, alloc, bytes).map(|_| ())
            }
            Some(_) => Ok(()),
            None => {
                self.release(ptr);
                Ok(())
            }
        };
        (adopted, callback)
    }

    /// Runs `on_evict`, catching a panic so the eviction can be completed
    /// before the panic goes on.
    fn run_on_evict(&self, key: &[u8]) -> std::thread::Result<()> {
        match &self.on_evict {
            Some(f) => panic::catch_unwind(AssertUnwindSafe(|| f(self, key))),
            None => Ok(()),
        }
    }

    /// Drops a reference; the last one frees the record and its extents.
    fn release(&self, ptr: EntryPtr) {
        // SAFETY: the caller holds the reference it gives up here.
        if unsafe { ptr.get() }.release() {
            // SAFETY: that was the last reference.
            let alloc = unsafe { self.destroy(ptr) };
            self.free_allocation(alloc);
        }
    }

    /// [`Entry::destroy`], keeping the record's block for this thread's
    /// next put.
    ///
    /// # Safety
    /// As for [`Entry::destroy`].
    unsafe fn destroy(&self, ptr: EntryPtr) -> Allocation {
        // SAFETY: as the caller promises.
        unsafe { self.records.destroy(self.heap.home(), ptr) }
    }

    fn free_allocation(&self, alloc: Allocation) {
        if !alloc.is_empty() {
            self.heap.free(alloc);
        }
    }

    /// The current value of a statistic (0 for every statistic when the
    /// crate is built without the `stats` feature).
    pub fn stat(&self, stat: Stat) -> u64 {
        if !cfg!(feature = "stats") {
            return 0;
        }
        let s = self.index.stats();
        match stat {
            Stat::Put => s.puts,
            Stat::Get => s.hits + s.misses,
            Stat::Hit => s.hits,
            Stat::Miss => s.misses,
            Stat::Evict => s.evictions,
            Stat::Entries => s.entries,
            Stat::DramSizeUsed => s.dram,
            Stat::PoolSizeUsed => self.heap.used_bytes(),
            Stat::HeapEntries => self.heap.free_regions(),
        }
    }

    /// Turns a benchmark switch on (`value != 0`) or off, or prefaults the
    /// pool. Unstable: for benchmarking only.
    #[doc(hidden)]
    pub fn bench_set(&self, config: BenchConfig, value: usize) {
        let on = value != 0;
        match config {
            BenchConfig::IndexOnly => self.index_only.store(on, Ordering::Relaxed),
            BenchConfig::NoAlloc => self.no_alloc.store(on, Ordering::Relaxed),
            BenchConfig::NoMemcpy => self.no_memcpy.store(on, Ordering::Relaxed),
            BenchConfig::Prefault => self.pool.prefault(),
        }
    }

    /// Checks every invariant of the heap, the index and the policy. Only
    /// meaningful while no other thread uses the cache.
    #[doc(hidden)]
    pub fn validate(&self) -> std::result::Result<(), String> {
        self.heap.validate()?;
        self.index.validate()?;
        self.repl.validate()?;
        Ok(())
    }
}

impl Drop for Cache {
    fn drop(&mut self) {
        // No callbacks: entries are simply freed (SPEC §3.8).
        self.repl.clear();
        let heap = &self.heap;
        self.index.drain(|ptr| {
            // SAFETY: the index hands us its reference; with no other user
            // left it is the last one.
            if unsafe { ptr.get() }.release() {
                // SAFETY: last reference.
                let alloc = unsafe { Entry::destroy(ptr) };
                if !alloc.is_empty() {
                    heap.free(alloc);
                }
            }
        });
    }
}
