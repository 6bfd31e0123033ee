//! The C ABI of libvmemcache 0.8: the 15 exported functions, errno, the
//! per-thread message buffer, callbacks bridged to C function pointers, and
//! (with the `c-malloc` feature) the allocator of the C library build.
//!
//! Each function checks its arguments, calls the engine and translates the
//! result: success leaves errno alone (SPEC §14 #18); a failure returns −1
//! (NULL, or nothing, for the functions that return those), sets errno and
//! records the message of SPEC §2.3 in the calling thread's buffer. No cache
//! logic lives here.
//!
//! Panics: the engine does not panic on any input, but should one happen
//! anyway (a bug), no unwinding crosses into C. The function then fails as
//! its documentation says (−1 with errno `EFAULT` and the message
//! `internal error: …`; `vmemcache_new` returns NULL; the `void` functions
//! return) — except inside a callback's re-entry, where the same rule
//! applies to the inner call.

#![allow(non_camel_case_types)]

use std::ffi::{c_char, c_int, c_uint, c_void, CStr, OsStr};
use std::fmt::{self, Write as _};
use std::os::unix::ffi::OsStrExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::ptr;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::cache::{satisfy_pending_miss_raw, BenchConfig, Cache, Dest, OnEvict};
use crate::config::{Config, Policy};
use crate::error::Error;
use crate::pool::Pool;
use crate::stats::Stat;

/// `VMEMCACHE_MAJOR_VERSION`.
pub const VMEMCACHE_MAJOR_VERSION: c_uint = 0;
/// `VMEMCACHE_MINOR_VERSION`.
pub const VMEMCACHE_MINOR_VERSION: c_uint = 8;

/// `enum vmemcache_repl_p`, as the C code passes it (an `int`).
pub type ReplPolicyArg = c_uint;
/// `enum vmemcache_statistic`, as the C code passes it.
pub type StatArg = c_uint;
/// `enum vmemcache_bench_cfg`, as the C code passes it.
pub type BenchCfgArg = c_uint;

/// The C enum `vmemcache_repl_p` (for the header).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum vmemcache_repl_p {
    /// No eviction.
    VMEMCACHE_REPLACEMENT_NONE = 0,
    /// Least recently used.
    VMEMCACHE_REPLACEMENT_LRU = 1,
    /// Number of policies.
    VMEMCACHE_REPLACEMENT_NUM = 2,
}

/// The C enum `vmemcache_statistic` (for the header).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum vmemcache_statistic {
    /// Puts.
    VMEMCACHE_STAT_PUT = 0,
    /// Gets.
    VMEMCACHE_STAT_GET = 1,
    /// Hits.
    VMEMCACHE_STAT_HIT = 2,
    /// Misses.
    VMEMCACHE_STAT_MISS = 3,
    /// Evictions.
    VMEMCACHE_STAT_EVICT = 4,
    /// Entries.
    VMEMCACHE_STAT_ENTRIES = 5,
    /// DRAM used.
    VMEMCACHE_STAT_DRAM_SIZE_USED = 6,
    /// Pool used.
    VMEMCACHE_STAT_POOL_SIZE_USED = 7,
    /// Free regions of the heap.
    VMEMCACHE_STAT_HEAP_ENTRIES = 8,
    /// Number of statistics.
    VMEMCACHE_STATS_NUM = 9,
}

/// The C enum `vmemcache_bench_cfg` (for the header).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum vmemcache_bench_cfg {
    /// Index only.
    VMEMCACHE_BENCH_INDEX_ONLY = 0,
    /// No pool allocation.
    VMEMCACHE_BENCH_NO_ALLOC = 1,
    /// No copying.
    VMEMCACHE_BENCH_NO_MEMCPY = 2,
    /// Prefault the pool.
    VMEMCACHE_BENCH_PREFAULT = 3,
}

/// The C function type `vmemcache_on_evict`; C passes pointers to it.
pub struct vmemcache_on_evict {
    _opaque: [u8; 0],
}

/// The C function type `vmemcache_on_miss`; C passes pointers to it.
pub struct vmemcache_on_miss {
    _opaque: [u8; 0],
}

type CallbackFn = unsafe extern "C" fn(*mut VMEMcache, *const c_void, usize, *mut c_void);

/// The opaque handle C programs hold (`VMEMcache`, i.e. `struct vmemcache`).
pub struct VMEMcache {
    config: Config,
    on_evict: Option<(CallbackFn, *mut c_void)>,
    on_miss: Option<(CallbackFn, *mut c_void)>,
    cache: Option<Cache>,
}

/// A C callback with its argument and the handle to pass it, callable from
/// any thread (the C contract: callbacks may run concurrently).
#[derive(Clone, Copy)]
struct CCallback {
    f: CallbackFn,
    arg: *mut c_void,
    handle: *mut VMEMcache,
}

// SAFETY: the pointers are only passed back to C, which owns what they
// point to and promised (by registering the callback) that calling it from
// the cache's threads is fine.
unsafe impl Send for CCallback {}
unsafe impl Sync for CCallback {}

impl CCallback {
    fn call(&self, key: &[u8]) {
        // SAFETY: a function pointer of the right type, registered by C.
        unsafe {
            (self.f)(
                self.handle,
                key.as_ptr() as *const c_void,
                key.len(),
                self.arg,
            )
        }
    }
}

// ---------------------------------------------------------------------------
// errno and the per-thread message buffer (SPEC §2.1)

/// Capacity of a thread's message buffer, NUL included.
const MSG_SIZE: usize = 8192;

/// The pthread key of the message buffers, plus one (0 = not created yet).
static MSG_KEY: AtomicUsize = AtomicUsize::new(0);

unsafe extern "C" fn free_message_buffer(buf: *mut c_void) {
    // SAFETY: the buffer was allocated with malloc by `message_buffer`.
    unsafe { libc::free(buf) };
}

fn message_key() -> Option<libc::pthread_key_t> {
    let k = MSG_KEY.load(Ordering::Acquire);
    if k != 0 {
        return Some((k - 1) as libc::pthread_key_t);
    }
    let mut key: libc::pthread_key_t = 0;
    // SAFETY: plain pthread call with a valid destructor.
    if unsafe { libc::pthread_key_create(&mut key, Some(free_message_buffer)) } != 0 {
        return None;
    }
    // AcqRel: publish the key; if another thread won the race, use its key
    // and give ours back.
    match MSG_KEY.compare_exchange(0, key as usize + 1, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => Some(key),
        Err(winner) => {
            // SAFETY: the key is ours and unused.
            unsafe { libc::pthread_key_delete(key) };
            Some((winner - 1) as libc::pthread_key_t)
        }
    }
}

/// This thread's message buffer, allocated (empty) on first use.
fn message_buffer() -> *mut c_char {
    let Some(key) = message_key() else {
        return ptr::null_mut();
    };
    // SAFETY: a valid key.
    let buf = unsafe { libc::pthread_getspecific(key) } as *mut c_char;
    if !buf.is_null() {
        return buf;
    }
    // SAFETY: plain malloc; the buffer is freed by the key's destructor at
    // thread exit (or by the library destructor for the unloading thread).
    let buf = unsafe { libc::malloc(MSG_SIZE) } as *mut c_char;
    if buf.is_null() {
        return buf;
    }
    // SAFETY: `buf` holds MSG_SIZE bytes.
    unsafe {
        *buf = 0;
        if libc::pthread_setspecific(key, buf as *const c_void) != 0 {
            libc::free(buf as *mut c_void);
            return ptr::null_mut();
        }
    }
    buf
}

/// Writes formatted text into a fixed buffer, truncating like `vsnprintf`.
struct Truncating<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl fmt::Write for Truncating<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = self.buf.len().saturating_sub(1 + self.len);
        let n = s.len().min(room);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// Records `message` as this thread's last message, without touching errno.
fn record(message: fmt::Arguments<'_>) {
    let saved = errno();
    let buf = message_buffer();
    if !buf.is_null() {
        // SAFETY: the buffer holds MSG_SIZE bytes and is this thread's.
        let bytes = unsafe { std::slice::from_raw_parts_mut(buf as *mut u8, MSG_SIZE) };
        let mut w = Truncating { buf: bytes, len: 0 };
        let _ = w.write_fmt(message);
        let end = w.len;
        bytes[end] = 0;
    }
    set_errno(saved);
}

fn errno() -> c_int {
    // SAFETY: errno is thread-local and always addressable.
    unsafe { *libc::__errno_location() }
}

fn set_errno(value: c_int) {
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = value };
}

/// Reports `err` the C way: message (if it has one), then errno.
fn fail(err: &Error) {
    // Formatted straight into the buffer: reporting ENOMEM must not need
    // memory.
    if err.records_message() {
        record(format_args!("{}", err));
    }
    set_errno(err.errno());
}

/// Runs the body of an exported function: a panic becomes `on_panic`
/// (after being reported), and when the result says the call `succeeded`,
/// errno is put back as the caller left it. The engine's system calls may
/// leave an errno behind even on success (a best-effort ioctl, a fallback
/// that worked), and callbacks may set it; the C interface promises errno
/// untouched on success (SPEC §14 #18), so this is where that is kept.
fn guarded<T>(on_panic: T, succeeded: impl FnOnce(&T) -> bool, body: impl FnOnce() -> T) -> T {
    // SAFETY: the calling thread's errno, addressable for the thread's
    // life; the body runs on this thread.
    let errno_ptr = unsafe { libc::__errno_location() };
    // SAFETY: as above.
    let saved = unsafe { *errno_ptr };
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(v) => {
            if succeeded(&v) {
                // SAFETY: as above.
                unsafe { *errno_ptr = saved };
            }
            v
        }
        Err(_) => {
            fail(&Error::Internal("unexpected panic"));
            on_panic
        }
    }
}

/// The success test of functions returning `int` or `ssize_t`.
fn nonnegative<T: Copy + PartialOrd + Default>(result: &T) -> bool {
    *result >= T::default()
}

/// The success test of functions that cannot fail.
fn always(_: &()) -> bool {
    true
}

/// `body`'s result as the C convention for `int` functions.
fn status(result: Result<(), Error>) -> c_int {
    match result {
        Ok(()) => 0,
        Err(e) => {
            fail(&e);
            -1
        }
    }
}

/// The handle behind `cache`, or `EINVAL`.
///
/// # Safety
/// `cache` is NULL or a handle from `vmemcache_new` not yet deleted.
unsafe fn handle<'a>(cache: *mut VMEMcache) -> Result<&'a mut VMEMcache, Error> {
    // SAFETY: as the caller promises.
    unsafe { cache.as_mut() }.ok_or(Error::NullArgument("cache"))
}

/// The ready cache behind `cache`, or `EINVAL`.
///
/// # Safety
/// As for [`handle`]. Data-path calls share the cache, so only a shared
/// reference is formed.
unsafe fn ready<'a>(cache: *mut VMEMcache) -> Result<&'a Cache, Error> {
    // SAFETY: as the caller promises.
    let h = unsafe { (cache as *const VMEMcache).as_ref() }.ok_or(Error::NullArgument("cache"))?;
    h.cache.as_ref().ok_or(Error::NotReady)
}

/// `len` bytes at `ptr` as a slice; NULL is allowed only for 0 bytes.
///
/// # Safety
/// A non-NULL `ptr` points to `len` readable bytes for `'a`.
unsafe fn bytes<'a>(ptr: *const c_void, len: usize, what: &'static str) -> Result<&'a [u8], Error> {
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(Error::NullArgument(what));
    }
    // SAFETY: as the caller promises.
    Ok(unsafe { std::slice::from_raw_parts(ptr as *const u8, len) })
}

fn c_callback(f: *mut c_void) -> Option<CallbackFn> {
    if f.is_null() {
        None
    } else {
        // SAFETY: C passed a pointer to a function of the callback type.
        Some(unsafe { std::mem::transmute::<*mut c_void, CallbackFn>(f) })
    }
}

/// `Box::new(value)`, but `Error::OutOfMemory` where `Box::new` would abort
/// the process because memory has run out.
fn try_box<T>(value: T) -> Result<Box<T>, Error> {
    let layout = std::alloc::Layout::new::<T>();
    if layout.size() == 0 {
        return Ok(Box::new(value));
    }
    // SAFETY: the layout is not zero-sized.
    let p = unsafe { std::alloc::alloc(layout) } as *mut T;
    if p.is_null() {
        return Err(Error::OutOfMemory);
    }
    // SAFETY: `p` is a fresh allocation of the global allocator with the
    // layout of `T`, which is what `Box::from_raw` requires.
    unsafe {
        p.write(value);
        Ok(Box::from_raw(p))
    }
}

/// The engine's form of a C callback.
fn boxed_callback(cb: CCallback) -> Result<Box<OnEvict>, Error> {
    Ok(try_box(move |_: &Cache, key: &[u8]| cb.call(key))?)
}

/// Hands the handle's callbacks to its cache (if it has one yet). On
/// failure the cache keeps the callbacks it had.
fn install_callbacks(h: &mut VMEMcache, handle: *mut VMEMcache) -> Result<(), Error> {
    let Some(cache) = h.cache.as_mut() else {
        return Ok(());
    };
    let boxed = |c: Option<(CallbackFn, *mut c_void)>| {
        c.map(|(f, arg)| boxed_callback(CCallback { f, arg, handle }))
            .transpose()
    };
    let on_evict = boxed(h.on_evict)?;
    let on_miss = boxed(h.on_miss)?;
    cache.set_on_evict(on_evict);
    cache.set_on_miss(on_miss);
    Ok(())
}

/// Sets the callback that `slot` picks out of the handle to `f` (NULL:
/// none) with `arg`, and hands the callbacks to the cache. On ENOMEM the old
/// callback stays in force.
///
/// # Safety
/// As for `vmemcache_callback_on_evict`; `f` is NULL or a function of the
/// callback type.
unsafe fn set_callback(
    cache: *mut VMEMcache,
    slot: fn(&mut VMEMcache) -> &mut Option<(CallbackFn, *mut c_void)>,
    f: *mut c_void,
    arg: *mut c_void,
) {
    guarded(
        false,
        |installed| *installed,
        || {
            // SAFETY: as the caller promises.
            let result = unsafe { handle(cache) }.and_then(|h| {
                let previous = std::mem::replace(slot(h), c_callback(f).map(|f| (f, arg)));
                install_callbacks(h, cache).inspect_err(|_| *slot(h) = previous)
            });
            match result {
                Ok(()) => true,
                Err(e) => {
                    fail(&e);
                    false
                }
            }
        },
    );
}

// ---------------------------------------------------------------------------
// The exported functions (SPEC §1.1)

/// Creates a cache handle, not usable yet: configure it with the
/// `vmemcache_set_*` functions, then create the cache with `vmemcache_add`.
/// The defaults are the LRU policy, 256-byte extents and a 1 MiB pool.
/// Returns NULL with errno ENOMEM when out of memory.
#[no_mangle]
pub extern "C" fn vmemcache_new() -> *mut VMEMcache {
    guarded(
        ptr::null_mut(),
        |p| !p.is_null(),
        || {
            let layout = std::alloc::Layout::new::<VMEMcache>();
            // SAFETY: the layout is not zero-sized.
            let p = unsafe { std::alloc::alloc(layout) } as *mut VMEMcache;
            if p.is_null() {
                fail(&Error::OutOfMemory);
                return ptr::null_mut();
            }
            // SAFETY: `p` is a fresh allocation for one handle.
            unsafe {
                p.write(VMEMcache {
                    config: Config::default(),
                    on_evict: None,
                    on_miss: None,
                    cache: None,
                })
            };
            p
        },
    )
}

/// Sets the replacement policy: `VMEMCACHE_REPLACEMENT_LRU` (the default) or
/// `VMEMCACHE_REPLACEMENT_NONE` (a full cache refuses puts). Returns 0, or
/// -1 with errno EINVAL (unknown policy) or EALREADY (after `vmemcache_add`).
///
/// # Safety
/// `cache` is NULL or a handle from `vmemcache_new`.
#[no_mangle]
pub unsafe extern "C" fn vmemcache_set_eviction_policy(
    cache: *mut VMEMcache,
    repl_p: ReplPolicyArg,
) -> c_int {
    guarded(-1, nonnegative, || {
        status((|| {
            // SAFETY: as the caller promises.
            let h = unsafe { handle(cache) }?;
            if h.cache.is_some() {
                return Err(Error::AlreadyInUse);
            }
            h.config.policy = Policy::from_u32(repl_p)?;
            Ok(())
        })())
    })
}

/// Sets the pool size in bytes: at least `VMEMCACHE_MIN_POOL`, below 2^56,
/// rounded up to the page size by `vmemcache_add`. Returns 0, or -1 with
/// errno EINVAL (out of range) or EALREADY (after `vmemcache_add`).
///
/// # Safety
/// `cache` is NULL or a handle from `vmemcache_new`.
#[no_mangle]
pub unsafe extern "C" fn vmemcache_set_size(cache: *mut VMEMcache, size: usize) -> c_int {
    guarded(-1, nonnegative, || {
        status((|| {
            // SAFETY: as the caller promises.
            let h = unsafe { handle(cache) }?;
            if h.cache.is_some() {
                return Err(Error::AlreadyInUse);
            }
            Config::check_size(size)?;
            h.config.size = size;
            Ok(())
        })())
    })
}

/// Sets the extent size, the unit in which the pool is handed out to values:
/// at least `VMEMCACHE_MIN_EXTENT`. Returns 0, or -1 with errno EINVAL (too
/// small) or EALREADY (after `vmemcache_add`).
///
/// # Safety
/// `cache` is NULL or a handle from `vmemcache_new`.
#[no_mangle]
pub unsafe extern "C" fn vmemcache_set_extent_size(
    cache: *mut VMEMcache,
    extent_size: usize,
) -> c_int {
    guarded(-1, nonnegative, || {
        status((|| {
            // SAFETY: as the caller promises.
            let h = unsafe { handle(cache) }?;
            if h.cache.is_some() {
                return Err(Error::AlreadyInUse);
            }
            Config::check_extent_size(extent_size)?;
            h.config.extent_size = extent_size;
            Ok(())
        })())
    })
}

/// Creates the cache: its pool is a temporary file in the directory `path`,
/// or the device DAX `path`. Returns 0, or -1 with errno EBUSY (created
/// already), EINVAL (extent larger than the set size, NULL path, a character
/// device that is not a device DAX, a bad `VMEMCACHE_SHARDING`), or the
/// errno of the system call that failed (ENOTDIR, ENOENT, EACCES, ENOSPC,
/// ...). A failed `vmemcache_add` may be retried.
///
/// # Safety
/// `cache` is NULL or a handle from `vmemcache_new`; `path` is NULL or a
/// NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn vmemcache_add(cache: *mut VMEMcache, path: *const c_char) -> c_int {
    guarded(-1, nonnegative, || {
        status((|| {
            // SAFETY: as the caller promises.
            let h = unsafe { handle(cache) }?;
            if h.cache.is_some() {
                return Err(Error::AlreadyInitialized);
            }
            h.config.check_for_add()?;
            if path.is_null() {
                return Err(Error::NullPath);
            }
            // SAFETY: a C string, as the caller promises.
            let path = Path::new(OsStr::from_bytes(
                unsafe { CStr::from_ptr(path) }.to_bytes(),
            ));
            let pool = Pool::open(path, h.config.size)?;
            h.cache = Some(Cache::with_pool(pool, &h.config)?);
            if let Err(e) = install_callbacks(h, cache) {
                // Not added after all: the handle stays unconfigured.
                h.cache = None;
                return Err(e);
            }
            Ok(())
        })())
    })
}

/// Frees the cache, its entries and the handle, without calling `on_evict`.
/// `vmemcache_delete(NULL)` does nothing.
///
/// # Safety
/// `cache` is NULL or a handle from `vmemcache_new` that no other thread
/// uses, and that is not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn vmemcache_delete(cache: *mut VMEMcache) {
    guarded((), always, || {
        if cache.is_null() {
            return;
        }
        // SAFETY: a live handle from `vmemcache_new`, now ours to free.
        unsafe {
            ptr::drop_in_place(cache);
            std::alloc::dealloc(cache as *mut u8, std::alloc::Layout::new::<VMEMcache>());
        }
    })
}

/// Registers `evict` (NULL: none), called with `arg` before an entry is
/// evicted, explicitly or to make room. The entry is still readable during
/// the call, and the callback may use the cache.
///
/// # Safety
/// `cache` is NULL or a handle from `vmemcache_new` that no other thread
/// uses meanwhile; `evict` is NULL or a function of the callback type.
#[no_mangle]
pub unsafe extern "C" fn vmemcache_callback_on_evict(
    cache: *mut VMEMcache,
    evict: *mut vmemcache_on_evict,
    arg: *mut c_void,
) {
    // SAFETY: as the caller promises.
    unsafe { set_callback(cache, |h| &mut h.on_evict, evict as *mut c_void, arg) };
}

/// Registers `miss` (NULL: none), called with `arg` when a get misses. A
/// `vmemcache_put` of the key from inside it (into any cache) satisfies the
/// waiting get.
///
/// # Safety
/// `cache` is NULL or a handle from `vmemcache_new` that no other thread
/// uses meanwhile; `miss` is NULL or a function of the callback type.
#[no_mangle]
pub unsafe extern "C" fn vmemcache_callback_on_miss(
    cache: *mut VMEMcache,
    miss: *mut vmemcache_on_miss,
    arg: *mut c_void,
) {
    // SAFETY: as the caller promises.
    unsafe { set_callback(cache, |h| &mut h.on_miss, miss as *mut c_void, arg) };
}

/// Copies the value of `key`, from byte `offset` on, into `vbuf`: at most
/// `vbufsize` bytes. Stores the value's size in `*vsize` (if `vsize` is not
/// NULL). Returns the number of bytes copied (0 when `vbuf` is NULL or
/// `offset` is past the end), or -1 with errno ENOENT when the key is absent
/// (no message is recorded) or EINVAL. On a miss, `on_miss` runs first and
/// may satisfy the get.
///
/// # Safety
/// `cache` is NULL or a handle from `vmemcache_new`; `key` is NULL or holds
/// `key_size` bytes; `vbuf` is NULL or holds `vbufsize` writable bytes;
/// `vsize` is NULL or points to a writable `size_t`.
#[no_mangle]
pub unsafe extern "C" fn vmemcache_get(
    cache: *mut VMEMcache,
    key: *const c_void,
    key_size: usize,
    vbuf: *mut c_void,
    vbufsize: usize,
    offset: usize,
    vsize: *mut usize,
) -> libc::ssize_t {
    guarded(-1, nonnegative, || {
        let result = (|| {
            // SAFETY: as the caller promises.
            let c = unsafe { ready(cache) }?;
            // SAFETY: as the caller promises.
            let key = unsafe { bytes(key, key_size, "key") }?;
            let dest = if vbuf.is_null() {
                Dest::Null(vbufsize)
            } else {
                // SAFETY: `vbuf` holds `vbufsize` writable bytes.
                Dest::Buf(unsafe { std::slice::from_raw_parts_mut(vbuf as *mut u8, vbufsize) })
            };
            c.get_raw(key, offset, dest)
        })();
        match result {
            Ok(out) => {
                if let (Some(size), false) = (out.size, vsize.is_null()) {
                    // SAFETY: a writable size_t, as the caller promises.
                    unsafe { *vsize = size };
                }
                out.copied.min(libc::ssize_t::MAX as usize) as libc::ssize_t
            }
            Err(Error::Miss) => {
                set_errno(libc::ENOENT);
                -1
            }
            Err(e) => {
                fail(&e);
                -1
            }
        }
    })
}

/// Returns 1 and stores the value's size in `*vsize` (if `vsize` is not
/// NULL) when `key` is present, 0 when it is not, -1 with errno EINVAL for
/// bad arguments. Counts neither a hit nor a miss.
///
/// # Safety
/// `cache` is NULL or a handle from `vmemcache_new`; `key` is NULL or holds
/// `key_size` bytes; `vsize` is NULL or points to a writable `size_t`.
#[no_mangle]
pub unsafe extern "C" fn vmemcache_exists(
    cache: *mut VMEMcache,
    key: *const c_void,
    key_size: usize,
    vsize: *mut usize,
) -> c_int {
    guarded(-1, nonnegative, || {
        let result = (|| {
            // SAFETY: as the caller promises.
            let c = unsafe { ready(cache) }?;
            // SAFETY: as the caller promises.
            let key = unsafe { bytes(key, key_size, "key") }?;
            Ok::<_, Error>(c.exists(key))
        })();
        match result {
            Ok(Some(size)) => {
                if !vsize.is_null() {
                    // SAFETY: a writable size_t, as the caller promises.
                    unsafe { *vsize = size };
                }
                1
            }
            Ok(None) => 0,
            Err(e) => {
                fail(&e);
                -1
            }
        }
    })
}

/// Stores a copy of `value` under `key`, evicting entries while the pool is
/// full (under LRU). Returns 0, or -1 with errno EEXIST (the key is
/// present), ENOSPC (the value can never fit, or nothing can be evicted),
/// ENOMEM, or EINVAL.
///
/// # Safety
/// `cache` is NULL or a handle from `vmemcache_new`; `key` is NULL or holds
/// `key_size` bytes; `value` is NULL or holds `value_size` bytes.
#[no_mangle]
pub unsafe extern "C" fn vmemcache_put(
    cache: *mut VMEMcache,
    key: *const c_void,
    key_size: usize,
    value: *const c_void,
    value_size: usize,
) -> c_int {
    guarded(-1, nonnegative, || {
        status((|| {
            if cache.is_null() {
                return Err(Error::NullArgument("cache"));
            }
            // SAFETY: as the caller promises.
            let key = unsafe { bytes(key, key_size, "key") }?;
            if value.is_null() && value_size > 0 {
                return Err(Error::NullArgument("value"));
            }
            // SAFETY: `value` holds `value_size` bytes, as the caller
            // promises; only a waiting get of this very key reads them.
            unsafe { satisfy_pending_miss_raw(key, value as *const u8, value_size) };
            // SAFETY: as the caller promises.
            let c = unsafe { ready(cache) }?;
            // A value larger than the pool is rejected before any slice is
            // formed over it: it is never read (SPEC §4 step 2).
            if value_size > c.pool_size() {
                return Err(Error::ValueTooLarge);
            }
            // SAFETY: as the caller promises.
            let value = unsafe { bytes(value, value_size, "value") }?;
            c.put_unchecked_pending(key, value)
        })())
    })
}

/// Evicts the entry of `key` or, when `key` is NULL, the one the policy
/// picks (the least recently used); `on_evict` runs first. Returns 0 (also
/// when another thread is evicting the entry), or -1 with errno ENOENT (no
/// such key), EAGAIN (the entry is in use), ESRCH (nothing to evict), or
/// EINVAL.
///
/// # Safety
/// `cache` is NULL or a handle from `vmemcache_new`; `key` is NULL or holds
/// `ksize` bytes.
#[no_mangle]
pub unsafe extern "C" fn vmemcache_evict(
    cache: *mut VMEMcache,
    key: *const c_void,
    ksize: usize,
) -> c_int {
    guarded(-1, nonnegative, || {
        status((|| {
            // SAFETY: as the caller promises.
            let c = unsafe { ready(cache) }?;
            if key.is_null() {
                return c.evict_lru();
            }
            // SAFETY: as the caller promises.
            let key = unsafe { bytes(key, ksize, "key") }?;
            c.evict(key)
        })())
    })
}

/// Stores the statistic `stat` as an `unsigned long long` at `value`;
/// `value_size` must be 8. Returns 0, or -1 with errno EINVAL (wrong size,
/// unknown statistic). Without statistics compiled in, every one reads 0.
///
/// # Safety
/// `cache` is NULL or a handle from `vmemcache_new`; `value` is NULL or
/// holds `value_size` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn vmemcache_get_stat(
    cache: *mut VMEMcache,
    stat: StatArg,
    value: *mut c_void,
    value_size: usize,
) -> c_int {
    guarded(-1, nonnegative, || {
        status((|| {
            // SAFETY: as the caller promises.
            let c = unsafe { ready(cache) }?;
            if value_size != std::mem::size_of::<u64>() {
                return Err(Error::StatSize(value_size));
            }
            let stat = Stat::from_u32(stat).ok_or(Error::UnknownStat(stat))?;
            if value.is_null() {
                return Err(Error::NullArgument("value"));
            }
            // SAFETY: 8 writable bytes, as the caller promises; C does not
            // promise alignment.
            unsafe { (value as *mut u64).write_unaligned(c.stat(stat)) };
            Ok(())
        })())
    })
}

/// The last message recorded by a failure on the calling thread ("" if
/// none), in a buffer of the thread that stays valid until it exits.
#[no_mangle]
pub extern "C" fn vmemcache_errormsg() -> *const c_char {
    guarded(
        c"".as_ptr(),
        |_| true,
        || {
            let buf = message_buffer();
            if buf.is_null() {
                c"".as_ptr()
            } else {
                buf
            }
        },
    )
}

/// UNSTABLE INTERFACE, for benchmarking only: the switches make the cache
/// skip work and so store wrong data. `INDEX_ONLY`, `NO_ALLOC` and
/// `NO_MEMCPY` are on while `val` is not 0; `PREFAULT` touches every page of
/// the pool. An unknown `cfg` records a message. Sets no errno.
///
/// # Safety
/// `cache` is NULL or a handle from `vmemcache_new`.
#[no_mangle]
pub unsafe extern "C" fn vmemcache_bench_set(cache: *mut VMEMcache, cfg: BenchCfgArg, val: usize) {
    guarded((), always, || {
        // SAFETY: as the caller promises.
        let Ok(c) = (unsafe { ready(cache) }) else {
            return;
        };
        match BenchConfig::from_u32(cfg) {
            Some(cfg) => c.bench_set(cfg, val),
            None => record(format_args!("invalid config parameter: {}", cfg)),
        }
    })
}

/// Not part of the C interface: checks every invariant of the heap, the
/// index and the policy, for the C fuzz target (`fuzz/c_api_fuzz.c`), which
/// links the static library built with the `internals` feature. Returns 0,
/// or -1 with errno EFAULT and the broken invariant as the message (EINVAL
/// for a handle that is not ready). Only meaningful while no other thread
/// uses the cache. The shared library neither has nor exports it.
///
/// # Safety
/// `cache` is NULL or a handle from `vmemcache_new`.
#[cfg(feature = "internals")]
#[no_mangle]
pub unsafe extern "C" fn vmemcache_internal_validate(cache: *mut VMEMcache) -> c_int {
    guarded(-1, nonnegative, || {
        // SAFETY: as the caller promises.
        let c = match unsafe { ready(cache) } {
            Ok(c) => c,
            Err(e) => return status(Err(e)),
        };
        match c.validate() {
            Ok(()) => 0,
            Err(broken) => {
                record(format_args!("invariant broken: {}", broken));
                set_errno(libc::EFAULT);
                -1
            }
        }
    })
}

// ---------------------------------------------------------------------------
// Library destructor: free the unloading thread's message buffer and the key
// (thread-exit destructors do not run for the thread that calls exit()).

#[cfg(feature = "c-malloc")]
#[used]
#[link_section = ".fini_array"]
static FINI: extern "C" fn() = fini;

#[cfg(feature = "c-malloc")]
extern "C" fn fini() {
    let k = MSG_KEY.swap(0, Ordering::AcqRel);
    if k == 0 {
        return;
    }
    let key = (k - 1) as libc::pthread_key_t;
    // SAFETY: the key is valid until deleted here; its value is our buffer.
    unsafe {
        let buf = libc::pthread_getspecific(key);
        if !buf.is_null() {
            libc::pthread_setspecific(key, ptr::null());
            libc::free(buf);
        }
        libc::pthread_key_delete(key);
    }
}

// ---------------------------------------------------------------------------
// The allocator of the C library build: every DRAM allocation goes through
// malloc/realloc/free, so programs that interpose those count all of it
// (SPEC §12 item 3). Zeroed memory is cleared by hand rather than taken
// from calloc, and alignments above 16 are served from malloc too.

#[cfg(feature = "c-malloc")]
mod c_malloc {
    use std::alloc::{GlobalAlloc, Layout};

    /// malloc's guaranteed alignment on 64-bit glibc.
    const MALLOC_ALIGN: usize = 16;

    /// `malloc`, called through a pointer the optimiser cannot see through.
    /// Called directly, LLVM turns a `malloc` followed by zeroing (a `Vec`
    /// filled with zeros right after `with_capacity`, or `alloc_zeroed`
    /// below) into one `calloc` call, which programs that count the library's
    /// memory by defining `malloc`, `realloc` and `free` would not see
    /// (SPEC §12 item 3).
    #[inline(always)]
    fn malloc(size: usize) -> *mut u8 {
        let f: unsafe extern "C" fn(libc::size_t) -> *mut libc::c_void =
            std::hint::black_box(libc::malloc);
        // SAFETY: plain malloc.
        unsafe { f(size) as *mut u8 }
    }

    struct Malloc;

    // SAFETY: every block comes from malloc and goes back to free; over-
    // aligned blocks keep malloc's pointer just before the aligned address.
    unsafe impl GlobalAlloc for Malloc {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            if layout.align() <= MALLOC_ALIGN {
                return malloc(layout.size());
            }
            let extra = layout.align() + std::mem::size_of::<usize>();
            let Some(total) = layout.size().checked_add(extra) else {
                return std::ptr::null_mut();
            };
            let raw = malloc(total);
            if raw.is_null() {
                return raw;
            }
            let start = raw as usize + std::mem::size_of::<usize>();
            let aligned = (start + layout.align() - 1) & !(layout.align() - 1);
            // SAFETY: `aligned - 8 >= raw`, inside the block.
            unsafe { ((aligned - std::mem::size_of::<usize>()) as *mut usize).write(raw as usize) };
            aligned as *mut u8
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            if layout.align() <= MALLOC_ALIGN {
                // SAFETY: from malloc.
                unsafe { libc::free(ptr as *mut libc::c_void) };
            } else {
                // SAFETY: `alloc` stored malloc's pointer right before.
                unsafe {
                    let raw =
                        ((ptr as usize - std::mem::size_of::<usize>()) as *const usize).read();
                    libc::free(raw as *mut libc::c_void);
                }
            }
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            // SAFETY: same contract as alloc.
            let p = unsafe { self.alloc(layout) };
            if !p.is_null() {
                // SAFETY: `p` holds `layout.size()` bytes.
                unsafe { std::ptr::write_bytes(p, 0, layout.size()) };
            }
            p
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            if layout.align() <= MALLOC_ALIGN {
                // SAFETY: from malloc.
                return unsafe { libc::realloc(ptr as *mut libc::c_void, new_size) } as *mut u8;
            }
            // SAFETY: the layout with the new size is valid (GlobalAlloc's
            // contract); copy then free the old block.
            unsafe {
                let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
                let p = self.alloc(new_layout);
                if !p.is_null() {
                    std::ptr::copy_nonoverlapping(ptr, p, layout.size().min(new_size));
                    self.dealloc(ptr, layout);
                }
                p
            }
        }
    }

    #[global_allocator]
    static GLOBAL: Malloc = Malloc;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed header: its enums and size macros are raw text in
    /// cbindgen.toml, so they are checked against the Rust side here.
    const HEADER: &str = include_str!("../include/libvmemcache.h");

    /// The enumerators of `enum name` in the header, with their values.
    fn header_enum(name: &str) -> Vec<(String, u32)> {
        let open = format!("enum {name} {{");
        let start = HEADER.find(&open).expect("enum in the header") + open.len();
        let len = HEADER[start..].find("};").expect("end of the enum");
        let mut next = 0;
        HEADER[start..start + len]
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(|e| {
                let (name, value) = match e.split_once('=') {
                    Some((n, v)) => (n.trim(), v.trim().parse().expect("a number")),
                    None => (e, next),
                };
                next = value + 1;
                (name.to_string(), value)
            })
            .collect()
    }

    fn rust_enum<T: Copy + fmt::Debug>(all: &[T], value: impl Fn(T) -> u32) -> Vec<(String, u32)> {
        all.iter().map(|&v| (format!("{v:?}"), value(v))).collect()
    }

    #[test]
    fn header_enums_match_the_rust_ones() {
        use vmemcache_bench_cfg as B;
        use vmemcache_repl_p as R;
        use vmemcache_statistic as S;
        let repl = [
            R::VMEMCACHE_REPLACEMENT_NONE,
            R::VMEMCACHE_REPLACEMENT_LRU,
            R::VMEMCACHE_REPLACEMENT_NUM,
        ];
        let stats = [
            S::VMEMCACHE_STAT_PUT,
            S::VMEMCACHE_STAT_GET,
            S::VMEMCACHE_STAT_HIT,
            S::VMEMCACHE_STAT_MISS,
            S::VMEMCACHE_STAT_EVICT,
            S::VMEMCACHE_STAT_ENTRIES,
            S::VMEMCACHE_STAT_DRAM_SIZE_USED,
            S::VMEMCACHE_STAT_POOL_SIZE_USED,
            S::VMEMCACHE_STAT_HEAP_ENTRIES,
            S::VMEMCACHE_STATS_NUM,
        ];
        let bench = [
            B::VMEMCACHE_BENCH_INDEX_ONLY,
            B::VMEMCACHE_BENCH_NO_ALLOC,
            B::VMEMCACHE_BENCH_NO_MEMCPY,
            B::VMEMCACHE_BENCH_PREFAULT,
        ];
        assert_eq!(
            header_enum("vmemcache_repl_p"),
            rust_enum(&repl, |v| v as u32)
        );
        assert_eq!(
            header_enum("vmemcache_statistic"),
            rust_enum(&stats, |v| v as u32)
        );
        assert_eq!(
            header_enum("vmemcache_bench_cfg"),
            rust_enum(&bench, |v| v as u32)
        );

        // The engine reads the same values.
        assert_eq!(
            Policy::from_u32(R::VMEMCACHE_REPLACEMENT_NONE as u32),
            Ok(Policy::None)
        );
        assert_eq!(
            Policy::from_u32(R::VMEMCACHE_REPLACEMENT_LRU as u32),
            Ok(Policy::Lru)
        );
        assert!(Policy::from_u32(R::VMEMCACHE_REPLACEMENT_NUM as u32).is_err());
        for s in &stats[..stats.len() - 1] {
            let stat = Stat::from_u32(*s as u32).expect("a statistic");
            assert_eq!(
                format!("{s:?}").replace('_', "").to_lowercase(),
                format!("vmemcachestat{stat:?}").to_lowercase()
            );
        }
        assert_eq!(Stat::from_u32(S::VMEMCACHE_STATS_NUM as u32), None);
        assert_eq!(Stat::COUNT, S::VMEMCACHE_STATS_NUM as u32);
        for b in bench {
            let cfg = BenchConfig::from_u32(b as u32).expect("a switch");
            assert_eq!(
                format!("{b:?}").replace('_', "").to_lowercase(),
                format!("vmemcachebench{cfg:?}").to_lowercase()
            );
        }
        assert_eq!(BenchConfig::from_u32(4), None);
    }

    #[test]
    fn header_macros_match_the_rust_constants() {
        let define = |name: &str, value: &str| {
            let line = format!("#define {name} {value}\n");
            assert!(HEADER.contains(&line), "the header lacks {line:?}");
        };
        define("LIBVMEMCACHE_H", "1");
        define(
            "VMEMCACHE_MAJOR_VERSION",
            &VMEMCACHE_MAJOR_VERSION.to_string(),
        );
        define(
            "VMEMCACHE_MINOR_VERSION",
            &VMEMCACHE_MINOR_VERSION.to_string(),
        );
        define("VMEMCACHE_MIN_POOL", "((size_t)(1024 * 1024))");
        assert_eq!(crate::MIN_POOL, 1024 * 1024);
        define("VMEMCACHE_MIN_EXTENT", "((size_t)256)");
        assert_eq!(crate::MIN_EXTENT, 256);
    }

    #[test]
    fn header_is_plain_c89() {
        assert!(HEADER.is_ascii());
        assert!(!HEADER.contains("//"), "C89 has no // comments");
        assert!(!HEADER.contains(",\n}"), "C89 has no trailing enum commas");
        for t in [
            "int8_t", "int16_t", "int32_t", "int64_t", "intptr_t", "stdint.h", "bool",
        ] {
            assert!(!HEADER.contains(t), "the header uses {t}");
        }
    }
}
