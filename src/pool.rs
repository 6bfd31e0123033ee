//! The mapped backing medium (SPEC §3.5–§3.7, §14 #14–#16).
//!
//! This module owns the memory that holds values: it decides what kind of
//! medium a path names, creates it, maps it shared and read-write, and
//! unmaps it when the [`Pool`] is dropped. Three media exist:
//!
//! * a **directory**: an anonymous temporary file inside it, created with
//!   `O_TMPFILE` so it never has a name, or, where the filesystem or kernel
//!   lacks `O_TMPFILE`, with `mkstemp` and an immediate `unlink`. Its space
//!   is reserved with `posix_fallocate` before mapping, so a full
//!   filesystem fails cleanly here instead of raising `SIGBUS` on a later
//!   write. The file never outlives the process. On **tmpfs**, when the
//!   kernel gives transparent huge pages on request and the tmpfs has room
//!   for the pool, the pool is private anonymous memory instead and the
//!   file, never reserved, goes away: tmpfs holds its files in the same
//!   memory, but in 4 KiB pages unless mounted with `huge=`, and with one
//!   TLB entry per 4 KiB page nearly every value a get or put touches in a
//!   large pool costs a page walk. That memory is advised for huge pages,
//!   left out of core dumps (as a shared file mapping is) and populated at
//!   once (as a reservation allocates a tmpfs file's pages), so running
//!   out of memory is still an error of `add`. Where the tmpfs lacks the
//!   room, or the memory cannot be had, the file is reserved and mapped as
//!   anywhere else, and fails, if it does, with the original's errors;
//! * a **device DAX** character device: the whole device is mapped (only
//!   the first [`Pool::len`] bytes are used) and exactly that mapping is
//!   unmapped again (SPEC §14 #14: the original unmapped only the used
//!   part);
//! * **anonymous memory**, for tests and tools that cannot map files.
//!
//! Failures carry the context strings and errno values of SPEC §2.3, with
//! the system's `strerror` text added by [`Error`]'s `Display`.
//!
//! What this module must never do: interpret the bytes of the pool (that
//! is the heap's business), leave a file behind, keep a file descriptor
//! open after mapping, or validate the configuration (the cache does that,
//! including the NULL path, before calling [`Pool::open`]).
//!
//! The original maps at an address hint aligned to 4 MiB (2 MiB or 1 GiB
//! for device DAX) so that huge pages can back the pool. The kernel already
//! aligns mappings that huge pages can serve (DAX filesystems and devices,
//! and tmpfs, choose such addresses themselves), so this module lets
//! `mmap` pick the address and the hint is not reproduced.

use std::ffi::{CStr, CString, OsStr};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

use memmap2::{MmapOptions, MmapRaw};

use crate::config::MIN_POOL;
use crate::error::{last_errno, Error, Result};

/// `FS_NOCOW_FL` from `linux/fs.h`: no copy-on-write for this file (btrfs).
const FS_NOCOW_FL: libc::c_int = 0x0080_0000;

/// Bytes of the device's sysfs size file that are read (as the original).
const SIZE_TEXT_MAX: usize = 64;

/// The kind of medium behind a pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(dead_code)] // queried by the cache and by tests
pub(crate) enum PoolKind {
    /// An unnamed temporary file in a directory.
    TempFile,
    /// A device DAX, mapped whole.
    DeviceDax,
    /// Anonymous memory.
    Anonymous,
    /// Anonymous memory in place of a temporary file on tmpfs.
    TmpfsMemory,
}

/// A mapped pool: `len()` bytes at `as_ptr()`, readable and writable,
/// page aligned, valid until the pool is dropped.
///
/// The memory is reached only through raw pointers (a [`MmapRaw`], never a
/// `&mut [u8]`), so many threads may read and write disjoint parts of it
/// at once; keeping their accesses disjoint is the heap's job.
#[derive(Debug)]
pub(crate) struct Pool {
    /// The whole mapping; dropping it unmaps exactly what was mapped.
    map: MmapRaw,
    /// The part of the mapping the cache uses (`<= map.len()`).
    len: usize,
    kind: PoolKind,
}

/// How the directory branch creates its temporary file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TempFileMethod {
    /// `O_TMPFILE`, falling back to `mkstemp` where it is not supported.
    Tmpfile,
    /// `mkstemp` + `unlink` straight away (the fallback, forced).
    #[allow(dead_code)] // forced by the tests and the benchmark only
    Mkstemp,
}

/// What `open`'s path names (SPEC §3.5 steps 4–5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Medium {
    /// A directory, or anything that is neither missing-with-an-error nor
    /// a character device: the temporary file's `open` sorts it out.
    Directory,
    /// A device DAX with this device number.
    DeviceDax { major: u32, minor: u32 },
}

#[allow(dead_code)] // the cache module is the caller
impl Pool {
    /// Creates the pool for `path` (directory or device DAX); `size` 0 means
    /// the default.
    ///
    /// For a directory the default is [`MIN_POOL`]; other sizes are rounded
    /// up to the page size. For a device DAX the default is the whole
    /// device; other sizes are rounded up to the page size and capped at
    /// the device's size, and a size above the device's fails.
    pub(crate) fn open(path: &Path, size: usize) -> Result<Pool> {
        Pool::open_with(path, size, TempFileMethod::Tmpfile)
    }

    /// [`Pool::open`] with a chosen way of creating the temporary file.
    fn open_with(path: &Path, size: usize, method: TempFileMethod) -> Result<Pool> {
        // A path with a NUL byte cannot reach the system at all; report it
        // from the first call the original would make with it.
        let bytes = path.as_os_str().as_bytes();
        if bytes.contains(&0) {
            return Err(os_access_error(path, libc::EINVAL));
        }
        // `CString::new` would abort the process when memory has run out;
        // the room for the path and its NUL is reserved fallibly instead.
        let mut c_bytes = Vec::new();
        c_bytes
            .try_reserve_exact(bytes.len() + 1)
            .map_err(|_| Error::OutOfMemory)?;
        c_bytes.extend_from_slice(bytes);
        // SAFETY: no NUL inside (checked above); the terminator fits in
        // the capacity reserved.
        let c_path = unsafe { CString::from_vec_unchecked(c_bytes) };
        match classify(path, &c_path)? {
            Medium::Directory => open_in_directory(&c_path, size, method),
            Medium::DeviceDax { major, minor } => {
                open_device_dax(path, &c_path, major, minor, size)
            }
        }
    }

    /// A pool in anonymous memory.
    ///
    /// `size` is rounded up to the page size, and is at least one page.
    pub(crate) fn anonymous(size: usize) -> Result<Pool> {
        let len = round_up_to_page(size.max(1)).ok_or_else(|| mmap_error(size, libc::ENOMEM))?;
        let map = MmapOptions::new()
            .len(len)
            .map_anon()
            .map_err(|e| mmap_error(len, io_errno(&e)))?;
        // Best effort: without huge pages the pool works all the same.
        // SAFETY: advice on a mapping this function owns.
        let _ = unsafe { libc::madvise(map.as_ptr() as *mut _, len, libc::MADV_HUGEPAGE) };
        Ok(Pool {
            map: MmapRaw::from(map),
            len,
            kind: PoolKind::Anonymous,
        })
    }

    /// First byte.
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.map.as_mut_ptr()
    }

    /// Size in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Bytes mapped: [`Pool::len`], except for a device DAX, which is
    /// mapped whole.
    pub(crate) fn mapped_len(&self) -> usize {
        self.map.len()
    }

    /// What kind of medium backs the pool.
    pub(crate) fn kind(&self) -> PoolKind {
        self.kind
    }

    /// Whether the pool is a device DAX.
    pub(crate) fn is_device_dax(&self) -> bool {
        self.kind == PoolKind::DeviceDax
    }

    /// Touches one byte per page so that later accesses do not fault.
    ///
    /// Each touch reads a byte and writes the same value back, as the
    /// original's benchmark knob does. The write is a compare-and-swap of
    /// the value just read, so it faults the page in for writing (x86
    /// writes the destination of `lock cmpxchg` even when the comparison
    /// fails) and the compiler cannot drop it, yet it never overwrites a
    /// byte stored in between; the original's plain read and write can
    /// lose such a byte.
    ///
    /// Callers run it while no other thread writes the pool with plain
    /// stores (before values are stored, or with puts excluded): a plain
    /// store racing with these atomic accesses is a data race in Rust's
    /// memory model, even though no byte is lost on the hardware.
    pub(crate) fn prefault(&self) {
        let base = self.as_ptr();
        let step = page_size();
        let mut offset = 0;
        while offset < self.len {
            // SAFETY: `offset < len <= map.len()`, so the byte lies inside
            // the live read-write mapping owned by `self`; `AtomicU8` has
            // alignment 1; the reference ends with this iteration, and the
            // caller contract above rules out racing non-atomic accesses.
            let byte = unsafe { AtomicU8::from_ptr(base.add(offset)) };
            // Relaxed: only the page fault matters; nothing is published
            // or observed through these bytes.
            let seen = byte.load(Ordering::Relaxed);
            // Relaxed: as above; a failed exchange means someone else wrote
            // the byte, which has faulted the page in already.
            let _ = byte.compare_exchange(seen, seen, Ordering::Relaxed, Ordering::Relaxed);
            offset += step;
        }
    }
}

/// The page size (`sysconf(_SC_PAGESIZE)`), asked once.
pub(crate) fn page_size() -> usize {
    static PAGE_SIZE: AtomicUsize = AtomicUsize::new(0);
    // Relaxed: the value is the same whoever computes it; two racing first
    // calls merely both ask the system.
    let cached = PAGE_SIZE.load(Ordering::Relaxed);
    if cached != 0 {
        return cached;
    }
    // SAFETY: sysconf has no preconditions.
    let queried = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let size = usize::try_from(queried)
        .ok()
        .filter(|s| s.is_power_of_two())
        .unwrap_or(4096);
    // Relaxed: see the load above.
    PAGE_SIZE.store(size, Ordering::Relaxed);
    size
}

/// `n` rounded up to a multiple of the page size, `None` on overflow.
fn round_up_to_page(n: usize) -> Option<usize> {
    let mask = page_size() - 1;
    n.checked_add(mask).map(|v| v & !mask)
}

/// The path as the messages show it.
fn shown(path: &Path) -> String {
    String::from_utf8_lossy(path.as_os_str().as_bytes()).into_owned()
}

fn sys(context: impl Into<String>, errno: i32) -> Error {
    Error::Sys {
        context: context.into(),
        errno,
    }
}

fn io_errno(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(match e.kind() {
        // memmap2 refuses lengths beyond isize::MAX itself.
        io::ErrorKind::InvalidData | io::ErrorKind::OutOfMemory => libc::ENOMEM,
        _ => libc::EIO,
    })
}

fn os_access_error(path: &Path, errno: i32) -> Error {
    sys(format!("os_access \"{}\"", shown(path)), errno)
}

fn mmap_error(len: impl std::fmt::Display, errno: i32) -> Error {
    sys(format!("mmap {} bytes", len), errno)
}

/// `/sys/dev/char/<major>:<minor>/<leaf>`.
fn sysfs_char_path(major: u32, minor: u32, leaf: &str) -> PathBuf {
    PathBuf::from(format!("/sys/dev/char/{}:{}/{}", major, minor, leaf))
}

/// Decides what `path` names (SPEC §3.5 steps 4–5).
fn classify(path: &Path, c_path: &CStr) -> Result<Medium> {
    // SAFETY: `c_path` is a NUL-terminated string that outlives the call.
    if unsafe { libc::access(c_path.as_ptr(), libc::F_OK) } != 0 {
        let errno = last_errno();
        if errno == libc::ENOENT {
            // Kept from the original (SPEC §14 #15): the temporary file's
            // open then reports the missing directory.
            return Ok(Medium::Directory);
        }
        return Err(os_access_error(path, errno));
    }
    let meta = std::fs::metadata(path).map_err(|e| sys("stat", io_errno(&e)))?;
    if !meta.file_type().is_char_device() {
        return Ok(Medium::Directory);
    }
    let rdev = meta.rdev();
    let (major, minor) = (libc::major(rdev), libc::minor(rdev));
    let subsystem = sysfs_char_path(major, minor, "subsystem");
    let resolved = std::fs::canonicalize(&subsystem)
        .map_err(|e| sys(format!("realpath \"{}\"", shown(&subsystem)), io_errno(&e)))?;
    if resolved.file_name() == Some(OsStr::new("dax")) {
        Ok(Medium::DeviceDax { major, minor })
    } else {
        Err(Error::NotDeviceDax)
    }
}

/// The size of a pool in a directory: the default for 0, else `size`
/// rounded up to the page size; it must fit a file offset.
fn directory_pool_size(size: usize) -> Result<usize> {
    let wanted = if size == 0 { MIN_POOL } else { size };
    let len = round_up_to_page(wanted).ok_or(Error::InvalidFileSize(size))?;
    if libc::off_t::try_from(len).is_err() {
        return Err(Error::InvalidFileSize(len));
    }
    Ok(len)
}

/// The directory branch (SPEC §3.7).
fn open_in_directory(dir: &CStr, size: usize, method: TempFileMethod) -> Result<Pool> {
    let len = directory_pool_size(size)?;
    let file = create_temp_file(dir, method)?;
    if fits_in_tmpfs(&file, len) && huge_pages_on_request() {
        if let Some(pool) = tmpfs_memory(len) {
            return Ok(pool);
        }
    }
    set_no_cow(&file);
    reserve(&file, len)?;
    let map = MmapOptions::new()
        .len(len)
        .map_raw(file.as_raw_fd())
        .map_err(|e| mmap_error(len, io_errno(&e)))?;
    // The mapping keeps the file alive; the descriptor is not needed.
    drop(file);
    Ok(Pool {
        map,
        len,
        kind: PoolKind::TempFile,
    })
}

/// An unnamed read-write file in `dir`.
fn create_temp_file(dir: &CStr, method: TempFileMethod) -> Result<OwnedFd> {
    if method == TempFileMethod::Tmpfile {
        let flags = libc::O_TMPFILE | libc::O_RDWR | libc::O_EXCL | libc::O_CLOEXEC;
        // SAFETY: `dir` is NUL-terminated; the mode argument is what
        // O_TMPFILE requires.
        let fd = unsafe { libc::open(dir.as_ptr(), flags, 0o600 as libc::c_uint) };
        if fd >= 0 {
            // SAFETY: `fd` was just opened and is owned by nobody else.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        let errno = last_errno();
        // EOPNOTSUPP: the filesystem lacks O_TMPFILE; EISDIR and EINVAL:
        // kernels that predate it (SPEC §14 #16). Anything else is about
        // the directory itself and final.
        if !matches!(errno, libc::EOPNOTSUPP | libc::EISDIR | libc::EINVAL) {
            return Err(sys("open", errno));
        }
    }
    mkstemp_unlinked(dir)
}

/// `mkstemp("<dir>/vmem.XXXXXX")` and `unlink` at once.
///
/// All signals stay blocked from before the file exists until its name is
/// gone, so no handler can end the process with the file still visible;
/// the umask keeps the file private to its owner meanwhile.
fn mkstemp_unlinked(dir: &CStr) -> Result<OwnedFd> {
    let mut template = dir.to_bytes().to_vec();
    template.extend_from_slice(b"/vmem.XXXXXX\0");

    let _signals = SignalsBlocked::new();
    let fd = {
        let _umask = UmaskSet::new(0o077);
        // SAFETY: `template` is NUL-terminated, writable and ends in the
        // six X's mkostemp replaces in place.
        unsafe { libc::mkostemp(template.as_mut_ptr().cast(), libc::O_CLOEXEC) }
    };
    if fd < 0 {
        return Err(sys("mkstemp", last_errno()));
    }
    // SAFETY: `fd` was just opened and is owned by nobody else.
    let file = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: mkostemp left the created file's NUL-terminated name in
    // `template`.
    if unsafe { libc::unlink(template.as_ptr().cast()) } != 0 {
        // The original ignores this; a pool whose file would outlive the
        // process is refused instead.
        return Err(sys("unlink", last_errno()));
    }
    Ok(file)
}

/// Blocks every signal of the calling thread until dropped.
struct SignalsBlocked {
    previous: Option<libc::sigset_t>,
}

impl SignalsBlocked {
    fn new() -> SignalsBlocked {
        // SAFETY: sigset_t is plain data; sigfillset initialises `all`, and
        // pthread_sigmask writes the previous mask into `previous` (only
        // read back when the call succeeded).
        unsafe {
            let mut all: libc::sigset_t = std::mem::zeroed();
            let mut previous: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            let ok = libc::pthread_sigmask(libc::SIG_BLOCK, &all, &mut previous) == 0;
            SignalsBlocked {
                previous: ok.then_some(previous),
            }
        }
    }
}

impl Drop for SignalsBlocked {
    fn drop(&mut self) {
        if let Some(previous) = &self.previous {
            // SAFETY: `previous` is the mask pthread_sigmask reported.
            unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, previous, std::ptr::null_mut()) };
        }
    }
}

/// Sets the process umask until dropped.
struct UmaskSet {
    previous: libc::mode_t,
}

impl UmaskSet {
    fn new(mask: libc::mode_t) -> UmaskSet {
        // SAFETY: umask cannot fail and touches nothing but the mask.
        UmaskSet {
            previous: unsafe { libc::umask(mask) },
        }
    }
}

impl Drop for UmaskSet {
    fn drop(&mut self) {
        // SAFETY: as in `new`.
        unsafe { libc::umask(self.previous) };
    }
}

/// Asks the filesystem not to copy-on-write the file (btrfs), best effort:
/// most filesystems do not know the flag, and the pool works without it.
fn set_no_cow(file: &OwnedFd) {
    let mut flags: libc::c_int = 0;
    // SAFETY: FS_IOC_GETFLAGS writes one int (the kernel's type, despite
    // the request's encoding) to the pointer, which is valid for it.
    if unsafe { libc::ioctl(file.as_raw_fd(), libc::FS_IOC_GETFLAGS, &mut flags) } != 0 {
        return;
    }
    if flags & FS_NOCOW_FL != 0 {
        return;
    }
    flags |= FS_NOCOW_FL;
    // SAFETY: FS_IOC_SETFLAGS reads one int from the pointer.
    let _ = unsafe { libc::ioctl(file.as_raw_fd(), libc::FS_IOC_SETFLAGS, &flags) };
}

/// Whether the file lies on a tmpfs with room for `len` more bytes: its
/// free space, which is what the tmpfs's `posix_fallocate` checks against
/// (a tmpfs without a size limit reports none and always has room).
fn fits_in_tmpfs(file: &OwnedFd, len: usize) -> bool {
    // SAFETY: statfs is plain data; fstatfs fills it in (read only when
    // the call succeeded).
    let st = unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        if libc::fstatfs(file.as_raw_fd(), &mut st) != 0 {
            return false;
        }
        st
    };
    let free = u128::from(st.f_bavail) * st.f_bsize as u128;
    tmpfs_magic(&st) && (st.f_blocks == 0 || free >= len as u128)
}

/// Whether `st` describes a tmpfs.
// The two sides' types differ between targets (c_long, c_uint, ...).
#[allow(clippy::unnecessary_cast)]
fn tmpfs_magic(st: &libc::statfs) -> bool {
    st.f_type as i64 == libc::TMPFS_MAGIC as i64
}

/// Whether anonymous memory advised with `MADV_HUGEPAGE` gets transparent
/// huge pages: the kernel's setting is `always` or `madvise`.
fn huge_pages_on_request() -> bool {
    std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
        .is_ok_and(|setting| thp_setting_allows_advice(&setting))
}

/// Whether `setting` (the text of the kernel's THP `enabled` file, the
/// chosen mode in brackets) gives huge pages to advised memory.
fn thp_setting_allows_advice(setting: &str) -> bool {
    setting.contains("[always]") || setting.contains("[madvise]")
}

/// Allocates every page of the `len` bytes at `addr` now, with
/// `MADV_POPULATE_WRITE`. False when the memory cannot be had; true on a
/// kernel older than the request (5.14, `EINVAL`) too, where the pages
/// come on first touch.
///
/// # Safety
/// The range lies in a private anonymous mapping of the caller's; its
/// pages are zero-filled and nothing is overwritten.
pub(crate) unsafe fn populate(addr: *mut libc::c_void, len: usize) -> bool {
    // SAFETY: as the caller promises.
    let done = unsafe { libc::madvise(addr, len, libc::MADV_POPULATE_WRITE) } == 0;
    done || last_errno() == libc::EINVAL
}

/// The pool of a tmpfs directory as private anonymous memory: advised for
/// huge pages, left out of core dumps, populated. `None` when the memory
/// cannot be mapped or populated.
fn tmpfs_memory(len: usize) -> Option<Pool> {
    let map = MmapOptions::new().len(len).map_anon().ok()?;
    let addr = map.as_ptr() as *mut libc::c_void;
    // SAFETY: advice on a mapping this function owns; the first two are
    // best effort (a kernel without them maps the pool all the same).
    unsafe {
        libc::madvise(addr, len, libc::MADV_HUGEPAGE);
        libc::madvise(addr, len, libc::MADV_DONTDUMP);
    }
    // Every page allocated now, as the file's reservation did: a later
    // shortage of memory cannot then strike in the middle of a put.
    // SAFETY: the mapping is this function's.
    if !unsafe { populate(addr, len) } {
        return None;
    }
    Some(Pool {
        map: MmapRaw::from(map),
        len,
        kind: PoolKind::TmpfsMemory,
    })
}

/// Reserves `len` bytes of the file (`len` fits `off_t`, checked earlier).
fn reserve(file: &OwnedFd, len: usize) -> Result<()> {
    let len = libc::off_t::try_from(len).map_err(|_| Error::InvalidFileSize(len))?;
    loop {
        // SAFETY: plain system call on a descriptor we own.
        match unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) } {
            0 => return Ok(()),
            // A signal cut a long reservation short; what was reserved
            // stays, so asking again finishes it.
            libc::EINTR => continue,
            errno => return Err(sys("posix_fallocate", errno)),
        }
    }
}

/// The device DAX branch (SPEC §3.6).
fn open_device_dax(
    path: &Path,
    c_path: &CStr,
    major: u32,
    minor: u32,
    size: usize,
) -> Result<Pool> {
    let device = read_device_size(&sysfs_char_path(major, minor, "size"))?;
    let len = device_pool_size(size, device)?;
    let device_len = usize::try_from(device).map_err(|_| mmap_error(device, libc::ENOMEM))?;
    // SAFETY: `c_path` is NUL-terminated.
    let fd = unsafe { libc::open(c_path.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(sys(format!("open \"{}\"", shown(path)), last_errno()));
    }
    // SAFETY: `fd` was just opened and is owned by nobody else.
    let device_file = unsafe { OwnedFd::from_raw_fd(fd) };
    map_whole_device(&device_file, device_len, len)
}

/// Maps all `device_len` bytes of the device shared read-write; the pool
/// uses the first `len` of them.
fn map_whole_device(device: &OwnedFd, device_len: usize, len: usize) -> Result<Pool> {
    if device_len == 0 {
        // mmap refuses empty mappings; memmap2 would quietly map a byte.
        return Err(mmap_error(0, libc::EINVAL));
    }
    let map = MmapOptions::new()
        .len(device_len)
        .map_raw(device.as_raw_fd())
        .map_err(|e| mmap_error(device_len, io_errno(&e)))?;
    Ok(Pool {
        map,
        len: len.min(device_len),
        kind: PoolKind::DeviceDax,
    })
}

/// The pool size on a device of `device` bytes for a requested `size`.
fn device_pool_size(size: usize, device: u64) -> Result<usize> {
    if size == 0 {
        return usize::try_from(device).map_err(|_| mmap_error(device, libc::ENOMEM));
    }
    if size as u64 > device {
        return Err(Error::DeviceTooSmall { size, device });
    }
    // `size <= device`, so capping at the device keeps the result a usize.
    let rounded = round_up_to_page(size).map_or(device, |r| (r as u64).min(device));
    Ok(rounded as usize)
}

/// Reads and parses a device's sysfs size file.
fn read_device_size(sysfs_path: &Path) -> Result<u64> {
    let mut file = File::open(sysfs_path)
        .map_err(|e| sys(format!("open \"{}\"", shown(sysfs_path)), io_errno(&e)))?;
    let mut text = [0u8; SIZE_TEXT_MAX];
    let read = loop {
        match file.read(&mut text) {
            Ok(n) => break n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(sys("read", io_errno(&e))),
        }
    };
    parse_device_size(&text[..read])
}

/// Parses the text of a size file as the original does: `strtoll(text,
/// &end, 0)` must convert something and stop at a newline, without
/// overflow. A negative number is no size either.
fn parse_device_size(raw: &[u8]) -> Result<u64> {
    // The original handles the text as a C string.
    let text = raw.split(|&b| b == 0).next().unwrap_or_default();
    let invalid = |errno| Error::InvalidDeviceSize {
        text: String::from_utf8_lossy(text).into_owned(),
        errno,
    };
    let Some(parsed) = strtoll(text) else {
        return Err(invalid(0));
    };
    if parsed.overflowed {
        return Err(invalid(libc::ERANGE));
    }
    if text.get(parsed.end) != Some(&b'\n') {
        return Err(invalid(0));
    }
    u64::try_from(parsed.value).map_err(|_| invalid(0))
}

/// What [`strtoll`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ParsedInteger {
    /// The value, clamped to the `i64` range on overflow.
    value: i64,
    /// Index of the first byte after the number.
    end: usize,
    /// Whether the number was out of range (C's `ERANGE`).
    overflowed: bool,
}

/// C's `strtoll(text, &end, 0)`: leading white space, an optional sign,
/// then hexadecimal after `0x`/`0X`, octal after a leading `0`, else
/// decimal. `None` when no digit was converted (C's `end == text`).
fn strtoll(text: &[u8]) -> Option<ParsedInteger> {
    let mut i = 0;
    while text
        .get(i)
        .is_some_and(|&c| matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r'))
    {
        i += 1;
    }
    let negative = match text.get(i) {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let mut radix = 10;
    if text.get(i) == Some(&b'0') {
        // "0x" counts as a prefix only when a hex digit follows; otherwise
        // the 0 is converted alone and the x ends the number.
        if matches!(text.get(i + 1), Some(b'x' | b'X'))
            && text.get(i + 2).is_some_and(|c| c.is_ascii_hexdigit())
        {
            radix = 16;
            i += 2;
        } else {
            radix = 8;
        }
    }
    let first_digit = i;
    let mut magnitude: u64 = 0;
    let mut overflowed = false;
    while let Some(digit) = text.get(i).and_then(|&c| char::from(c).to_digit(radix)) {
        match magnitude
            .checked_mul(u64::from(radix))
            .and_then(|m| m.checked_add(u64::from(digit)))
        {
            Some(m) => magnitude = m,
            None => overflowed = true,
        }
        i += 1;
    }
    if i == first_digit {
        return None;
    }
    let limit = if negative {
        i64::MIN.unsigned_abs()
    } else {
        i64::MAX.unsigned_abs()
    };
    overflowed |= magnitude > limit;
    let value = match (overflowed, negative) {
        (true, true) => i64::MIN,
        (true, false) => i64::MAX,
        // Two's complement: the negation of a magnitude <= 2^63 fits.
        (false, true) => 0u64.wrapping_sub(magnitude) as i64,
        (false, false) => magnitude as i64,
    };
    Some(ParsedInteger {
        value,
        end: i,
        overflowed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::ffi::OsString;
    use std::os::unix::fs::PermissionsExt;
    use std::sync::atomic::AtomicU32;

    /// A fresh directory under the system's temporary directory, removed
    /// with its contents when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> TempDir {
            static NEXT: AtomicU32 = AtomicU32::new(0);
            // Relaxed: only uniqueness of the number matters.
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let path = std::env::temp_dir().join(format!(
                "vmemcache-pool-{}-{}-{}",
                std::process::id(),
                tag,
                n
            ));
            std::fs::create_dir(&path).expect("create a test directory");
            TempDir(path)
        }

        fn path(&self) -> &Path {
            &self.0
        }

        /// Names in the directory.
        fn entries(&self) -> Vec<OsString> {
            std::fs::read_dir(&self.0)
                .expect("list the test directory")
                .map(|e| e.expect("directory entry").file_name())
                .collect()
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::set_permissions(&self.0, std::fs::Permissions::from_mode(0o700));
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// The line of /proc/self/maps for the mapping that starts at `addr`.
    fn maps_line(addr: *mut u8) -> String {
        let start = format!("{:x}-", addr as usize);
        std::fs::read_to_string("/proc/self/maps")
            .expect("read /proc/self/maps")
            .lines()
            .find(|l| l.starts_with(&start))
            .unwrap_or_default()
            .to_owned()
    }

    fn sys_err(context: &str, errno: i32) -> Error {
        Error::Sys {
            context: context.to_owned(),
            errno,
        }
    }

    /// Writes a pattern over the whole pool and checks it reads back.
    fn check_read_write(pool: &Pool) {
        let base = pool.as_ptr();
        let step = 997;
        let mut offset = 0;
        while offset < pool.len() {
            // SAFETY: `offset < len`, inside the mapping; no other thread
            // touches this pool.
            unsafe { base.add(offset).write(offset as u8 ^ 0x5a) };
            offset += step;
        }
        // SAFETY: as above.
        unsafe { base.add(pool.len() - 1).write(0xa5) };
        let mut offset = 0;
        while offset < pool.len() {
            // SAFETY: as above.
            assert_eq!(unsafe { base.add(offset).read() }, offset as u8 ^ 0x5a);
            offset += step;
        }
        // SAFETY: as above.
        assert_eq!(unsafe { base.add(pool.len() - 1).read() }, 0xa5);
    }

    #[test]
    fn page_size_is_a_power_of_two() {
        let page = page_size();
        assert!(page.is_power_of_two());
        assert!(page >= 4096);
        assert_eq!(page_size(), page);
        assert_eq!(round_up_to_page(0), Some(0));
        assert_eq!(round_up_to_page(1), Some(page));
        assert_eq!(round_up_to_page(page), Some(page));
        assert_eq!(round_up_to_page(page + 1), Some(2 * page));
        assert_eq!(round_up_to_page(usize::MAX), None);
    }

    #[test]
    fn pool_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Pool>();
    }

    #[test]
    fn directory_pool_default_size_and_nothing_visible() {
        let dir = TempDir::new("default");
        let pool = Pool::open(dir.path(), 0).expect("pool in a directory");
        assert_eq!(pool.len(), MIN_POOL);
        assert_eq!(pool.mapped_len(), MIN_POOL);
        assert_eq!(pool.kind(), PoolKind::TempFile);
        assert!(!pool.is_device_dax());
        assert_eq!(pool.as_ptr() as usize % page_size(), 0);
        assert!(dir.entries().is_empty(), "the file has no name");
        let line = maps_line(pool.as_ptr());
        assert!(line.contains(" rw-s "), "shared read-write: {line}");
        assert!(line.ends_with("(deleted)"), "unnamed file: {line}");
        check_read_write(&pool);
        drop(pool);
        assert!(dir.entries().is_empty());
    }

    #[test]
    fn directory_pool_size_is_rounded_to_pages() {
        let dir = TempDir::new("rounding");
        let page = page_size();
        let pool = Pool::open(dir.path(), MIN_POOL + 1).expect("pool");
        assert_eq!(pool.len(), MIN_POOL + page);
        check_read_write(&pool);
        drop(pool);
        let pool = Pool::open(dir.path(), 3 * MIN_POOL).expect("pool");
        assert_eq!(pool.len(), 3 * MIN_POOL);
        drop(pool);
        assert!(dir.entries().is_empty());
        assert_eq!(directory_pool_size(0), Ok(MIN_POOL));
        assert_eq!(directory_pool_size(1), Ok(page));
    }

    #[test]
    fn two_pools_in_one_directory_are_separate() {
        let dir = TempDir::new("two");
        let a = Pool::open(dir.path(), 0).expect("first pool");
        let b = Pool::open(dir.path(), 0).expect("second pool");
        // SAFETY: both pools are at least one byte long and private to
        // this test.
        unsafe {
            a.as_ptr().write(1);
            b.as_ptr().write(2);
            assert_eq!(a.as_ptr().read(), 1);
        }
        drop((a, b));
        assert!(dir.entries().is_empty());
    }

    #[test]
    fn forced_mkstemp_fallback_leaves_nothing_behind() {
        let dir = TempDir::new("mkstemp");
        let pool = Pool::open_with(dir.path(), MIN_POOL + 1, TempFileMethod::Mkstemp)
            .expect("pool through mkstemp");
        assert_eq!(pool.len(), MIN_POOL + page_size());
        assert!(dir.entries().is_empty(), "unlinked at once");
        let line = maps_line(pool.as_ptr());
        assert!(line.contains("/vmem."), "made by mkstemp: {line}");
        assert!(line.ends_with("(deleted)"), "unlinked: {line}");
        check_read_write(&pool);
        drop(pool);
        assert!(dir.entries().is_empty());
    }

    #[test]
    fn forced_mkstemp_fallback_reports_mkstemp() {
        let dir = TempDir::new("mkstemp-missing");
        let missing = dir.path().join("missing");
        let err = Pool::open_with(&missing, 0, TempFileMethod::Mkstemp).unwrap_err();
        assert_eq!(err, sys_err("mkstemp", libc::ENOENT));
        assert_eq!(err.to_string(), "mkstemp: No such file or directory");
    }

    #[test]
    fn missing_path_fails_at_open() {
        let dir = TempDir::new("missing");
        let err = Pool::open(&dir.path().join("nonexistent"), 0).unwrap_err();
        assert_eq!(err.errno(), libc::ENOENT);
        assert_eq!(err.to_string(), "open: No such file or directory");
    }

    #[test]
    fn regular_file_fails_at_open() {
        let dir = TempDir::new("file");
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").expect("create a file");
        let err = Pool::open(&file, 0).unwrap_err();
        assert_eq!(err, sys_err("open", libc::ENOTDIR));
        assert_eq!(err.to_string(), "open: Not a directory");
        assert_eq!(dir.entries(), vec![OsString::from("file")]);
    }

    #[test]
    fn path_through_a_file_fails_at_access() {
        let dir = TempDir::new("through");
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").expect("create a file");
        let path = file.join("x").join("y");
        let err = Pool::open(&path, 0).unwrap_err();
        assert_eq!(err.errno(), libc::ENOTDIR);
        assert_eq!(
            err.to_string(),
            format!("os_access \"{}\": Not a directory", path.display())
        );
    }

    #[test]
    fn path_with_nul_fails_at_access() {
        let err = Pool::open(Path::new(OsStr::from_bytes(b"/tmp/a\0b")), 0).unwrap_err();
        assert_eq!(err, sys_err("os_access \"/tmp/a\0b\"", libc::EINVAL));
    }

    #[test]
    fn dev_null_is_not_device_dax() {
        if !Path::new("/dev/null").exists() || !Path::new("/sys/dev/char").exists() {
            eprintln!("skipped: no /dev/null or no sysfs");
            return;
        }
        assert_eq!(
            Pool::open(Path::new("/dev/null"), 0).unwrap_err(),
            Error::NotDeviceDax
        );
    }

    #[test]
    fn char_device_unknown_to_sysfs_fails_at_realpath() {
        let dir = TempDir::new("mknod");
        let node = dir.path().join("node");
        let c_node = CString::new(node.as_os_str().as_bytes()).expect("no NUL");
        // A device number no driver registers, so sysfs has no entry.
        let (major, minor) = (4000, 54321);
        // SAFETY: `c_node` is NUL-terminated; mknod creates a node only.
        let made = unsafe {
            libc::mknod(
                c_node.as_ptr(),
                libc::S_IFCHR | 0o600,
                libc::makedev(major, minor),
            )
        };
        if made != 0 {
            let errno = last_errno();
            eprintln!(
                "skipped: cannot make a character device node: {}",
                crate::error::strerror(errno)
            );
            return;
        }
        if sysfs_char_path(major, minor, "").exists() {
            eprintln!("skipped: {major}:{minor} is a registered device here");
            return;
        }
        let err = Pool::open(&node, 0).unwrap_err();
        assert_eq!(
            err,
            sys_err(
                "realpath \"/sys/dev/char/4000:54321/subsystem\"",
                libc::ENOENT
            )
        );
    }

    #[test]
    fn size_beyond_a_file_offset_is_efbig() {
        let dir = TempDir::new("efbig");
        let err = Pool::open(dir.path(), usize::MAX).unwrap_err();
        assert_eq!(err, Error::InvalidFileSize(usize::MAX));
        assert_eq!(err.errno(), libc::EFBIG);
        let too_big = 1usize << 63;
        let err = Pool::open(dir.path(), too_big).unwrap_err();
        assert_eq!(err, Error::InvalidFileSize(too_big));
        assert_eq!(
            err.to_string(),
            format!("invalid size ({}) for os_off_t", too_big)
        );
        assert!(dir.entries().is_empty());
    }

    /// Env var that turns the test below into its unprivileged child.
    const EACCES_CHILD: &str = "VMEMCACHE_POOL_TEST_EACCES_DIR";

    fn expect_eacces(dir: &Path) {
        let err = Pool::open(dir, 0).unwrap_err();
        assert_eq!(err, sys_err("open", libc::EACCES));
        assert_eq!(err.to_string(), "open: Permission denied");
        let err = Pool::open_with(dir, 0, TempFileMethod::Mkstemp).unwrap_err();
        assert_eq!(err, sys_err("mkstemp", libc::EACCES));
    }

    #[test]
    fn unwritable_directory_fails_with_eacces() {
        if let Some(dir) = std::env::var_os(EACCES_CHILD) {
            // SAFETY: geteuid has no preconditions.
            assert_eq!(unsafe { libc::geteuid() }, 65534, "runs unprivileged");
            expect_eacces(Path::new(&dir));
            return;
        }
        let dir = TempDir::new("eacces");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o555))
            .expect("make the directory read-only");
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            expect_eacces(dir.path());
            return;
        }
        // Root ignores permission bits: check in a copy of this test
        // binary that runs as nobody.
        use std::os::unix::process::CommandExt;
        let exe = match std::env::current_exe() {
            Ok(exe) => exe,
            Err(e) => {
                eprintln!("skipped: cannot find the test binary: {e}");
                return;
            }
        };
        let name = "pool::tests::unwritable_directory_fails_with_eacces";
        let output = std::process::Command::new(exe)
            .args(["--exact", name, "--nocapture", "--test-threads=1"])
            .env(EACCES_CHILD, dir.path())
            .uid(65534)
            .gid(65534)
            .output();
        let output = match output {
            Ok(output) => output,
            Err(e) => {
                eprintln!("skipped: cannot run the check as uid 65534: {e}");
                return;
            }
        };
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success() && stdout.contains(&format!("test {name} ... ok")),
            "unprivileged check failed: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
            output.status
        );
    }

    /// A tmpfs mounted over a directory until dropped.
    struct TmpfsMount(CString);

    impl TmpfsMount {
        fn new(at: &Path, options: &str) -> std::result::Result<TmpfsMount, i32> {
            let target = CString::new(at.as_os_str().as_bytes()).map_err(|_| libc::EINVAL)?;
            let data = CString::new(options).map_err(|_| libc::EINVAL)?;
            // SAFETY: every string is NUL-terminated and outlives the call.
            let rc = unsafe {
                libc::mount(
                    c"tmpfs".as_ptr(),
                    target.as_ptr(),
                    c"tmpfs".as_ptr(),
                    0,
                    data.as_ptr().cast(),
                )
            };
            if rc != 0 {
                return Err(last_errno());
            }
            Ok(TmpfsMount(target))
        }

        /// (free, total) blocks.
        fn blocks(&self) -> (u64, u64) {
            // SAFETY: statvfs is plain data, filled in by the call.
            unsafe {
                let mut st: libc::statvfs = std::mem::zeroed();
                assert_eq!(libc::statvfs(self.0.as_ptr(), &mut st), 0);
                (st.f_bfree, st.f_blocks)
            }
        }
    }

    impl Drop for TmpfsMount {
        fn drop(&mut self) {
            // SAFETY: the target is NUL-terminated; MNT_DETACH still
            // unmounts should something hold the filesystem.
            unsafe {
                if libc::umount2(self.0.as_ptr(), 0) != 0 {
                    libc::umount2(self.0.as_ptr(), libc::MNT_DETACH);
                }
            }
        }
    }

    #[test]
    fn full_filesystem_fails_with_enospc() {
        let dir = TempDir::new("enospc");
        let mount = match TmpfsMount::new(dir.path(), "size=64k,mode=0700") {
            Ok(mount) => mount,
            Err(errno) => {
                eprintln!(
                    "skipped: cannot mount a tmpfs: {}",
                    crate::error::strerror(errno)
                );
                return;
            }
        };
        for method in [TempFileMethod::Tmpfile, TempFileMethod::Mkstemp] {
            let err = Pool::open_with(dir.path(), MIN_POOL, method).unwrap_err();
            assert_eq!(err, sys_err("posix_fallocate", libc::ENOSPC), "{method:?}");
            assert_eq!(err.to_string(), "posix_fallocate: No space left on device");
            assert!(dir.entries().is_empty(), "{method:?} left a file");
            let (free, total) = mount.blocks();
            assert_eq!(free, total, "{method:?}: the reserved space came back");
        }
        // A pool that fits still works there: memory when huge pages come
        // on request, which takes none of the tmpfs's space.
        let pool = Pool::open_with(dir.path(), 8 * page_size(), TempFileMethod::Tmpfile)
            .expect("small pool on the tiny tmpfs");
        check_read_write(&pool);
        let (free, total) = mount.blocks();
        if huge_pages_on_request() {
            assert_eq!(pool.kind(), PoolKind::TmpfsMemory);
            assert_eq!(free, total, "the pool takes no space there");
        } else {
            assert_eq!(pool.kind(), PoolKind::TempFile);
            assert!(free < total, "the file holds its space");
        }
        drop(pool);
        assert!(dir.entries().is_empty());
        drop(mount);
    }

    /// The VmFlags of the mapping that starts at `addr` (/proc/self/smaps).
    fn vm_flags(addr: *mut u8) -> Vec<String> {
        let start = format!("{:x}-", addr as usize);
        let smaps = std::fs::read_to_string("/proc/self/smaps").expect("read /proc/self/smaps");
        smaps
            .lines()
            .skip_while(|l| !l.starts_with(&start))
            .find_map(|l| l.strip_prefix("VmFlags:"))
            .map(|flags| flags.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default()
    }

    /// A fresh directory on a writable tmpfs, if the system has one.
    fn tmpfs_dir(tag: &str) -> Option<TempDir> {
        for base in ["/dev/shm", "/run", "/tmp"] {
            let path = Path::new(base).join(format!("vmemcache-pool-{}-{tag}", std::process::id()));
            if std::fs::create_dir(&path).is_err() {
                continue;
            }
            let dir = TempDir(path);
            let c_path = CString::new(dir.path().as_os_str().as_bytes()).expect("no NUL");
            // SAFETY: statfs is plain data, filled in by the call.
            let tmpfs = unsafe {
                let mut st: libc::statfs = std::mem::zeroed();
                libc::statfs(c_path.as_ptr(), &mut st) == 0 && tmpfs_magic(&st)
            };
            if tmpfs {
                return Some(dir);
            }
        }
        None
    }

    #[test]
    fn a_tmpfs_pool_is_memory_with_huge_pages_when_the_kernel_gives_them() {
        let Some(dir) = tmpfs_dir("memory") else {
            eprintln!("skipped: no writable tmpfs among /dev/shm, /run, /tmp");
            return;
        };
        let len = 8 << 20;
        let pool = Pool::open(dir.path(), len).expect("pool on tmpfs");
        assert_eq!(pool.len(), len);
        assert!(dir.entries().is_empty(), "the file has no name");
        check_read_write(&pool);
        let line = maps_line(pool.as_ptr());
        let flags = vm_flags(pool.as_ptr());
        if huge_pages_on_request() {
            assert_eq!(pool.kind(), PoolKind::TmpfsMemory);
            assert!(line.contains(" rw-p "), "private read-write: {line}");
            assert!(!line.contains("(deleted)"), "no file: {line}");
            for flag in ["hg", "dd"] {
                assert!(flags.iter().any(|f| f == flag), "{flag} in {flags:?}");
            }
        } else {
            assert_eq!(pool.kind(), PoolKind::TempFile);
            assert!(line.ends_with("(deleted)"), "unnamed file: {line}");
        }
        // The bytes are private to each pool, zero before the first write.
        let other = Pool::open(dir.path(), len).expect("second pool");
        // SAFETY: inside the pools, which only this test touches.
        unsafe {
            assert_eq!(other.as_ptr().add(len - 1).read(), 0);
            other.as_ptr().write(7);
            assert_eq!(pool.as_ptr().read(), 0x5a);
        }
        drop((pool, other));
        assert!(dir.entries().is_empty());
    }

    #[test]
    fn the_kernels_huge_page_setting_is_read_from_its_brackets() {
        assert!(thp_setting_allows_advice("always [madvise] never\n"));
        assert!(thp_setting_allows_advice("[always] madvise never\n"));
        assert!(!thp_setting_allows_advice("always madvise [never]\n"));
        assert!(!thp_setting_allows_advice(""));
    }

    #[test]
    fn sysfs_paths() {
        assert_eq!(
            sysfs_char_path(251, 0, "size"),
            Path::new("/sys/dev/char/251:0/size")
        );
        assert_eq!(
            sysfs_char_path(4095, 1_048_575, "subsystem"),
            Path::new("/sys/dev/char/4095:1048575/subsystem")
        );
    }

    fn invalid(text: &str, errno: i32) -> Error {
        Error::InvalidDeviceSize {
            text: text.to_owned(),
            errno,
        }
    }

    #[test]
    fn device_size_text() {
        assert_eq!(parse_device_size(b"0\n"), Ok(0));
        assert_eq!(parse_device_size(b"8589934592\n"), Ok(8 << 30));
        assert_eq!(parse_device_size(b"0x200000\n"), Ok(2 << 20));
        assert_eq!(parse_device_size(b"0X1F\n"), Ok(31));
        assert_eq!(parse_device_size(b"0777\n"), Ok(0o777));
        assert_eq!(parse_device_size(b"  +42\nrest"), Ok(42));
        assert_eq!(parse_device_size(b"\n7\n"), Ok(7), "leading space");
        assert_eq!(
            parse_device_size(b"9223372036854775807\n"),
            Ok(i64::MAX as u64)
        );
        // Missing or wrong terminator.
        assert_eq!(parse_device_size(b"4096"), Err(invalid("4096", 0)));
        assert_eq!(parse_device_size(b"4096 \n"), Err(invalid("4096 \n", 0)));
        assert_eq!(parse_device_size(b"4096\0\n"), Err(invalid("4096", 0)));
        assert_eq!(parse_device_size(b"0x\n"), Err(invalid("0x\n", 0)));
        assert_eq!(parse_device_size(b"09\n"), Err(invalid("09\n", 0)));
        // No number.
        assert_eq!(parse_device_size(b""), Err(invalid("", 0)));
        assert_eq!(parse_device_size(b"\n"), Err(invalid("\n", 0)));
        assert_eq!(parse_device_size(b"size\n"), Err(invalid("size\n", 0)));
        assert_eq!(parse_device_size(b"-\n"), Err(invalid("-\n", 0)));
        // Out of range, whatever follows.
        assert_eq!(
            parse_device_size(b"9223372036854775808\n"),
            Err(invalid("9223372036854775808\n", libc::ERANGE))
        );
        assert_eq!(
            parse_device_size(b"0x10000000000000000\n"),
            Err(invalid("0x10000000000000000\n", libc::ERANGE))
        );
        assert_eq!(
            parse_device_size(b"99999999999999999999"),
            Err(invalid("99999999999999999999", libc::ERANGE))
        );
        // Negative sizes are no sizes.
        assert_eq!(parse_device_size(b"-4096\n"), Err(invalid("-4096\n", 0)));
        assert_eq!(parse_device_size(b"-0\n"), Ok(0));
        let err = parse_device_size(b"abc").unwrap_err();
        assert_eq!(err.to_string(), "invalid device size abc");
        assert_eq!(err.errno(), 0);
    }

    #[test]
    fn strtoll_edges() {
        let parsed = |value, end, overflowed| {
            Some(ParsedInteger {
                value,
                end,
                overflowed,
            })
        };
        assert_eq!(strtoll(b""), None);
        assert_eq!(strtoll(b"  "), None);
        assert_eq!(strtoll(b"+"), None);
        assert_eq!(strtoll(b"12ab"), parsed(12, 2, false));
        assert_eq!(strtoll(b"0x1g"), parsed(1, 3, false));
        assert_eq!(strtoll(b"0xg"), parsed(0, 1, false));
        assert_eq!(strtoll(b"0"), parsed(0, 1, false));
        assert_eq!(strtoll(b"-0x10"), parsed(-16, 5, false));
        assert_eq!(
            strtoll(b"-9223372036854775808"),
            parsed(i64::MIN, 20, false)
        );
        assert_eq!(strtoll(b"-9223372036854775809"), parsed(i64::MIN, 20, true));
        assert_eq!(
            strtoll(b"0777777777777777777777"),
            parsed(i64::MAX, 22, false)
        );
        assert_eq!(
            strtoll(b"01777777777777777777777"),
            parsed(i64::MAX, 23, true)
        );
        assert_eq!(
            strtoll(b"123456789012345678901234567890x"),
            parsed(i64::MAX, 30, true)
        );
    }

    #[test]
    fn device_size_file_errors() {
        let dir = TempDir::new("sizefile");
        let file = dir.path().join("size");
        std::fs::write(&file, b"0x40000000\n").expect("write a size file");
        assert_eq!(read_device_size(&file), Ok(1 << 30));
        std::fs::write(&file, [b'1'; 100]).expect("write a size file");
        assert_eq!(
            read_device_size(&file),
            Err(invalid(&"1".repeat(SIZE_TEXT_MAX), libc::ERANGE)),
            "reads at most 64 bytes"
        );
        let missing = dir.path().join("missing");
        let err = read_device_size(&missing).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("open \"{}\": No such file or directory", missing.display())
        );
        let err = read_device_size(dir.path()).unwrap_err();
        assert_eq!(err, sys_err("read", libc::EISDIR));
    }

    #[test]
    fn device_pool_sizes() {
        let page = page_size();
        let device = 64 * page as u64;
        assert_eq!(device_pool_size(0, device), Ok(64 * page));
        assert_eq!(device_pool_size(1, device), Ok(page));
        assert_eq!(device_pool_size(page + 1, device), Ok(2 * page));
        assert_eq!(device_pool_size(64 * page, device), Ok(64 * page));
        assert_eq!(
            device_pool_size(64 * page + 1, device),
            Err(Error::DeviceTooSmall {
                size: 64 * page + 1,
                device
            })
        );
        // A device that is not a page multiple caps the rounding.
        let odd = 10 * page as u64 + 100;
        assert_eq!(device_pool_size(10 * page + 1, odd), Ok(10 * page + 100));
        assert_eq!(device_pool_size(9 * page + 1, odd), Ok(10 * page));
        assert_eq!(device_pool_size(0, odd), Ok(10 * page + 100));
        let err = device_pool_size(5 << 20, 4 << 20).unwrap_err();
        assert_eq!(
            err.to_string(),
            "error: maximum cache size (5242880) is bigger than the size of the DAX device (4194304)"
        );
        assert_eq!(err.errno(), libc::EINVAL);
    }

    #[test]
    fn whole_device_is_mapped_and_the_pool_is_its_head() {
        // A regular file stands in for the device: the mapping code is the
        // same.
        let dir = TempDir::new("devdax");
        let page = page_size();
        let path = dir.path().join("device");
        let file = File::create(&path).expect("create the stand-in");
        file.set_len(4 * page as u64).expect("size the stand-in");
        drop(file);
        let device = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .expect("open the stand-in");
        let device = OwnedFd::from(device);
        let pool = map_whole_device(&device, 4 * page, page).expect("map");
        drop(device);
        assert_eq!(pool.len(), page);
        assert_eq!(pool.mapped_len(), 4 * page);
        assert!(pool.is_device_dax());
        check_read_write(&pool);
        // The tail is mapped too and shared with the file.
        // SAFETY: offset 4 * page - 1 is inside the whole mapping.
        unsafe { pool.as_ptr().add(4 * page - 1).write(0x77) };
        let line = maps_line(pool.as_ptr());
        let range = line.split(' ').next().unwrap_or_default().to_owned();
        drop(pool);
        let contents = std::fs::read(&path).expect("read the stand-in back");
        assert_eq!(contents[4 * page - 1], 0x77);
        assert_eq!(contents[page - 1], 0xa5);
        // Unmapped whole: nothing of it is left in the address space.
        let maps = std::fs::read_to_string("/proc/self/maps").expect("maps");
        assert!(
            !maps.lines().any(|l| l.contains(&*path.to_string_lossy())),
            "{range}"
        );

        let empty = OwnedFd::from(File::open(&path).expect("open"));
        assert_eq!(
            map_whole_device(&empty, 0, 0).unwrap_err(),
            sys_err("mmap 0 bytes", libc::EINVAL)
        );
    }

    #[test]
    fn anonymous_pools() {
        let page = page_size();
        for (asked, got) in [(0, page), (1, page), (page, page), (page + 1, 2 * page)] {
            let pool = Pool::anonymous(asked).expect("anonymous pool");
            assert_eq!(pool.len(), got);
            assert_eq!(pool.mapped_len(), got);
            assert_eq!(pool.kind(), PoolKind::Anonymous);
            assert_eq!(pool.as_ptr() as usize % page, 0);
            check_read_write(&pool);
            if huge_pages_on_request() {
                assert!(vm_flags(pool.as_ptr()).iter().any(|f| f == "hg"));
            }
        }
        let err = Pool::anonymous(usize::MAX).unwrap_err();
        assert_eq!(err.errno(), libc::ENOMEM);
        let err = Pool::anonymous(1 << 62).unwrap_err();
        assert_eq!(err.errno(), libc::ENOMEM);
        assert_eq!(
            err.to_string(),
            format!("mmap {} bytes: Cannot allocate memory", 1usize << 62)
        );
    }

    #[test]
    fn prefault_keeps_the_contents() {
        let dir = TempDir::new("prefault");
        let pools = [
            Pool::anonymous(MIN_POOL).expect("anonymous pool"),
            Pool::open(dir.path(), MIN_POOL).expect("file pool"),
        ];
        for pool in &pools {
            check_read_write(pool);
            pool.prefault();
            let base = pool.as_ptr();
            let mut offset = 0;
            while offset < pool.len() {
                // SAFETY: inside the mapping, private to this test.
                assert_eq!(unsafe { base.add(offset).read() }, offset as u8 ^ 0x5a);
                offset += 997;
            }
            pool.prefault();
        }
        // A fresh pool reads as zeros after prefaulting.
        let pool = Pool::open(dir.path(), 0).expect("file pool");
        pool.prefault();
        // SAFETY: `len` bytes are mapped and private to this test.
        let bytes = unsafe { std::slice::from_raw_parts(pool.as_ptr(), pool.len()) };
        assert!(bytes.iter().all(|&b| b == 0));
    }

    #[test]
    fn prefault_runs_beside_writers_without_losing_bytes() {
        let pool = Pool::anonymous(64 * page_size()).expect("anonymous pool");
        let page = page_size();
        let base = pool.as_ptr() as usize;
        std::thread::scope(|s| {
            s.spawn(|| {
                for _ in 0..20 {
                    pool.prefault();
                }
            });
            s.spawn(|| {
                for round in 1..=50u8 {
                    for p in 0..64 {
                        // SAFETY: inside the mapping. The byte is written
                        // atomically, as prefault touches it.
                        let byte = unsafe { AtomicU8::from_ptr((base + p * page) as *mut u8) };
                        // Relaxed: only the byte itself is checked.
                        byte.store(round, Ordering::Relaxed);
                    }
                }
            });
        });
        for p in 0..64 {
            // SAFETY: inside the mapping; the threads have ended.
            assert_eq!(unsafe { pool.as_ptr().add(p * page).read() }, 50);
        }
    }
}

/// Figures of pool creation and prefaulting.
///
/// `cargo bench --features internals --bench pool [-- <directory>...]`:
/// directories default to the system's temporary directory and, when it
/// exists, `/dev/shm`.
#[cfg(feature = "internals")]
pub mod bench {
    use std::path::{Path, PathBuf};
    use std::time::{Duration, Instant};

    use super::{page_size, Pool, TempFileMethod};

    const MIB: usize = 1 << 20;

    /// Runs the benchmark; `args` are the program's arguments.
    pub fn main(args: &[String]) {
        let mut dirs: Vec<PathBuf> = args
            .iter()
            .skip(1)
            .filter(|a| !a.starts_with('-'))
            .map(PathBuf::from)
            .collect();
        if dirs.is_empty() {
            dirs.push(std::env::temp_dir());
            if Path::new("/dev/shm").is_dir() {
                dirs.push(PathBuf::from("/dev/shm"));
            }
        }
        print_machine();
        for dir in &dirs {
            let work = dir.join(format!("vmemcache-pool-bench-{}", std::process::id()));
            if let Err(e) = std::fs::create_dir(&work) {
                println!("{}: cannot create a directory: {e}", work.display());
                continue;
            }
            bench_directory(&work);
            let _ = std::fs::remove_dir_all(&work);
        }
        bench_anonymous();
    }

    fn print_machine() {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split(':').nth(1))
                    .map(|m| m.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown CPU".to_owned());
        let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .unwrap_or_default();
        println!(
            "machine: {cpu}, {cores} cores, Linux {kernel}, page {} bytes",
            page_size()
        );
    }

    fn filesystem(dir: &Path) -> String {
        let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") else {
            return "?".to_owned();
        };
        let Ok(dir) = std::fs::canonicalize(dir) else {
            return "?".to_owned();
        };
        mounts
            .lines()
            .filter_map(|l| {
                let mut fields = l.split(' ');
                let _device = fields.next()?;
                let point = fields.next()?;
                let kind = fields.next()?;
                dir.starts_with(point)
                    .then(|| (point.len(), kind.to_owned()))
            })
            .max()
            .map_or_else(|| "?".to_owned(), |(_, kind)| kind)
    }

    /// Mean time of `runs` calls of `f`.
    fn mean(runs: u32, mut f: impl FnMut()) -> Duration {
        let start = Instant::now();
        for _ in 0..runs {
            f();
        }
        start.elapsed() / runs
    }

    fn rate(bytes: usize, took: Duration) -> String {
        let secs = took.as_secs_f64();
        if secs == 0.0 {
            return "-".to_owned();
        }
        format!("{:.0} MiB/s", bytes as f64 / MIB as f64 / secs)
    }

    fn per_page(bytes: usize, took: Duration) -> String {
        let pages = (bytes / page_size()).max(1);
        format!("{:.0} ns/page", took.as_nanos() as f64 / pages as f64)
    }

    fn bench_directory(dir: &Path) {
        println!("\n{} ({}):", dir.display(), filesystem(dir));
        for (size, runs) in [(MIB, 200), (64 * MIB, 20), (256 * MIB, 5)] {
            for (method, name) in [
                (TempFileMethod::Tmpfile, "O_TMPFILE"),
                (TempFileMethod::Mkstemp, "mkstemp"),
            ] {
                let mut failed = None;
                let took = mean(runs, || {
                    if let Err(e) = Pool::open_with(dir, size, method) {
                        failed = Some(e);
                    }
                });
                match failed {
                    Some(e) => println!("  open+drop {:>4} MiB via {name:9}: {e}", size / MIB),
                    None => println!(
                        "  open+drop {:>4} MiB via {name:9}: {:>9.1} us",
                        size / MIB,
                        took.as_secs_f64() * 1e6
                    ),
                }
            }
        }
        let size = 256 * MIB;
        match Pool::open(dir, size) {
            Ok(pool) => touch_figures(&pool),
            Err(e) => println!("  {} MiB pool: {e}", size / MIB),
        }
        match Pool::open(dir, size) {
            Ok(pool) => first_write_figures(&pool),
            Err(e) => println!("  {} MiB pool: {e}", size / MIB),
        }
    }

    fn bench_anonymous() {
        println!("\nanonymous memory:");
        for (size, runs) in [(MIB, 500), (256 * MIB, 20)] {
            let took = mean(runs, || {
                let _ = Pool::anonymous(size);
            });
            println!(
                "  create+drop {:>4} MiB: {:>9.1} us",
                size / MIB,
                took.as_secs_f64() * 1e6
            );
        }
        match Pool::anonymous(256 * MIB) {
            Ok(pool) => touch_figures(&pool),
            Err(e) => println!("  anonymous pool: {e}"),
        }
        match Pool::anonymous(256 * MIB) {
            Ok(pool) => first_write_figures(&pool),
            Err(e) => println!("  anonymous pool: {e}"),
        }
    }

    /// Prefault of a fresh pool, then of a faulted one, then a full write.
    fn touch_figures(pool: &Pool) {
        let len = pool.len();
        let start = Instant::now();
        pool.prefault();
        let cold = start.elapsed();
        let start = Instant::now();
        pool.prefault();
        let warm = start.elapsed();
        let start = Instant::now();
        // SAFETY: `len` bytes are mapped read-write and nothing else uses
        // this pool.
        unsafe { std::ptr::write_bytes(pool.as_ptr(), 0x5a, len) };
        let fill = start.elapsed();
        println!(
            "  prefault {} MiB, fresh:   {:>8.2} ms ({}, {})",
            len / MIB,
            cold.as_secs_f64() * 1e3,
            per_page(len, cold),
            rate(len, cold)
        );
        println!(
            "  prefault {} MiB, faulted: {:>8.2} ms ({})",
            len / MIB,
            warm.as_secs_f64() * 1e3,
            per_page(len, warm)
        );
        println!(
            "  fill {} MiB after prefault: {:>6.2} ms ({})",
            len / MIB,
            fill.as_secs_f64() * 1e3,
            rate(len, fill)
        );
    }

    /// A full write of a fresh pool that was not prefaulted.
    fn first_write_figures(pool: &Pool) {
        let len = pool.len();
        let start = Instant::now();
        // SAFETY: as in `touch_figures`.
        unsafe { std::ptr::write_bytes(pool.as_ptr(), 0x5a, len) };
        let fill = start.elapsed();
        println!(
            "  fill {} MiB without prefault: {:>4.2} ms ({})",
            len / MIB,
            fill.as_secs_f64() * 1e3,
            rate(len, fill)
        );
    }
}
