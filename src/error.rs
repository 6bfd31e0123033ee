//! Every failure the cache can report, with the errno and the message text
//! that the C library records for it (SPEC §2.3).
//!
//! This module owns the mapping from a failure to `(errno, message)`. It
//! never touches `errno` itself and never records a message: that is the C
//! layer's job. Messages of system-call failures use the C library's
//! `strerror` text (e.g. `open: Not a directory`), not Rust's `io::Error`
//! display.

use std::ffi::CStr;
use std::fmt;

/// A failure of a cache operation.
///
/// Each variant knows its `errno` ([`Error::errno`]) and the message the C
/// library records for it ([`Error::c_message`]); [`fmt::Display`] gives a
/// human-readable text that equals the C message whenever there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// A DRAM allocation failed (`ENOMEM`).
    OutOfMemory,
    /// The cache is already created; configuration can no longer change
    /// (`EALREADY`).
    AlreadyInUse,
    /// The requested pool size is below [`crate::MIN_POOL`] (`EINVAL`).
    SizeTooSmall(usize),
    /// The requested pool size is implausibly large (`EINVAL`).
    SizeTooLarge(usize),
    /// The requested extent size is below [`crate::MIN_EXTENT`] (`EINVAL`).
    ExtentTooSmall(usize),
    /// The replacement policy is not one of the known values (`EINVAL`).
    InvalidPolicy(u32),
    /// The cache was already created by an earlier `add` (`EBUSY`).
    AlreadyInitialized,
    /// The extent size is larger than the pool size (`EINVAL`).
    ExtentLargerThanCache {
        /// The configured extent size.
        extent: usize,
        /// The configured pool size.
        size: usize,
    },
    /// No path was given (`EINVAL`).
    NullPath,
    /// A system call failed; `context` says which (and on what), `errno`
    /// is the error it returned.
    Sys {
        /// What failed, e.g. `open` or `os_access "/some/path"`.
        context: String,
        /// The errno the call reported.
        errno: i32,
    },
    /// The path is a character device that is not a device DAX (`EINVAL`,
    /// and, as in the original, no message is recorded).
    NotDeviceDax,
    /// The device DAX's size file holds something that is not a size.
    InvalidDeviceSize {
        /// The text read from sysfs.
        text: String,
        /// `ERANGE` when the number overflowed, 0 otherwise (as the original).
        errno: i32,
    },
    /// The requested size exceeds the device DAX (`EINVAL`).
    DeviceTooSmall {
        /// The requested pool size.
        size: usize,
        /// The size of the device.
        device: u64,
    },
    /// The pool size cannot be expressed as a file offset (`EFBIG`).
    InvalidFileSize(usize),
    /// `VMEMCACHE_SHARDING` holds a value other than the accepted ones
    /// (`EINVAL`).
    InvalidSharding(String),
    /// The value is larger than the whole pool, or larger than what the
    /// empty pool can hold (`ENOSPC`); nothing was evicted.
    ValueTooLarge,
    /// The pool is full and no entry could be evicted to make room
    /// (`ENOSPC`).
    NoSpace,
    /// The key is already in the cache (`EEXIST`).
    KeyExists,
    /// A get found no entry for the key (`ENOENT`, no message: a miss must
    /// stay cheap).
    Miss,
    /// An evict found no entry for the key (`ENOENT`).
    KeyNotFound,
    /// The entry is in use and could not be evicted now (`EAGAIN`).
    Busy,
    /// The replacement policy's list is empty (`ESRCH`).
    LruEmpty,
    /// There is nothing the replacement policy could evict (`ESRCH`).
    NoVictim,
    /// `get_stat` was given a buffer of the wrong size (`EINVAL`).
    StatSize(usize),
    /// `get_stat` was given an unknown statistic (`EINVAL`).
    UnknownStat(u32),
    /// The cache has not been created yet (`EINVAL`).
    NotReady,
    /// A required pointer argument was NULL (`EINVAL`); the payload names
    /// the argument.
    NullArgument(&'static str),
    /// The key is too long for the index (`EINVAL`).
    KeyTooLong(usize),
    /// An internal invariant broke (a bug); reported instead of crashing
    /// (`EFAULT`).
    Internal(&'static str),
}

impl Error {
    /// The errno value the C library sets for this failure.
    ///
    /// A device size file that holds no number reports 0, as the original
    /// does (it zeroes errno before parsing).
    pub fn errno(&self) -> i32 {
        match self {
            Error::OutOfMemory => libc::ENOMEM,
            Error::AlreadyInUse => libc::EALREADY,
            Error::SizeTooSmall(_)
            | Error::SizeTooLarge(_)
            | Error::ExtentTooSmall(_)
            | Error::InvalidPolicy(_)
            | Error::ExtentLargerThanCache { .. }
            | Error::NullPath
            | Error::NotDeviceDax
            | Error::DeviceTooSmall { .. }
            | Error::InvalidSharding(_)
            | Error::StatSize(_)
            | Error::UnknownStat(_)
            | Error::NotReady
            | Error::NullArgument(_)
            | Error::KeyTooLong(_) => libc::EINVAL,
            Error::AlreadyInitialized => libc::EBUSY,
            Error::Sys { errno, .. } => *errno,
            Error::InvalidDeviceSize { errno, .. } => *errno,
            Error::InvalidFileSize(_) => libc::EFBIG,
            Error::ValueTooLarge | Error::NoSpace => libc::ENOSPC,
            Error::KeyExists => libc::EEXIST,
            Error::Miss | Error::KeyNotFound => libc::ENOENT,
            Error::Busy => libc::EAGAIN,
            Error::LruEmpty | Error::NoVictim => libc::ESRCH,
            Error::Internal(_) => libc::EFAULT,
        }
    }

    /// The message the C library records for this failure, or `None` when
    /// it records none (a get miss, a character device that is not DAX).
    pub fn c_message(&self) -> Option<String> {
        self.records_message().then(|| self.to_string())
    }

    /// Whether the C library records a message for this failure (the
    /// message is then its [`fmt::Display`] text, which can be written
    /// without allocating).
    pub fn records_message(&self) -> bool {
        !matches!(self, Error::Miss | Error::NotDeviceDax)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::OutOfMemory => write!(f, "Zalloc: {}", StrError(libc::ENOMEM)),
            Error::AlreadyInUse => f.write_str("cache already in use"),
            Error::SizeTooSmall(size) => {
                write!(f, "size {} smaller than {}", size, crate::MIN_POOL)
            }
            Error::SizeTooLarge(size) => write!(f, "implausible large size {}", size),
            Error::ExtentTooSmall(size) => write!(
                f,
                "extent size {} smaller than {} bytes",
                size,
                crate::MIN_EXTENT
            ),
            Error::InvalidPolicy(p) => write!(f, "invalid replacement policy: {}", p),
            Error::AlreadyInitialized => f.write_str("the cache is already initialized"),
            Error::ExtentLargerThanCache { extent, size } => write!(
                f,
                "extent size {} larger than cache size: {} bytes",
                extent, size
            ),
            Error::NullPath => f.write_str("invalid (NULL) path"),
            Error::Sys { context, errno } => write!(f, "{}: {}", context, StrError(*errno)),
            Error::NotDeviceDax => f.write_str("the character device is not a device DAX"),
            Error::InvalidDeviceSize { text, .. } => write!(f, "invalid device size {}", text),
            Error::DeviceTooSmall { size, device } => write!(
                f,
                "error: maximum cache size ({}) is bigger than the size of the DAX device ({})",
                size, device
            ),
            Error::InvalidFileSize(size) => write!(f, "invalid size ({}) for os_off_t", size),
            Error::InvalidSharding(value) => write!(
                f,
                "invalid value of VMEMCACHE_SHARDING: \"{}\" (accepted, in any case: 0, n, no to disable; 1, y, yes to enable)",
                value
            ),
            Error::ValueTooLarge => f.write_str("value larger than entire cache"),
            Error::NoSpace | Error::NoVictim => f.write_str("no element to evict"),
            Error::KeyExists => f.write_str("inserting to the index failed"),
            Error::Miss => f.write_str("no element with the given key"),
            Error::KeyNotFound => {
                f.write_str("vmemcache_evict: cannot find an element with the given key")
            }
            Error::Busy => f.write_str("entry is busy and cannot be evicted"),
            Error::LruEmpty => f.write_str("LRU queue is empty"),
            Error::StatSize(size) => write!(
                f,
                "wrong size of the value: {} (should be: {})",
                size,
                std::mem::size_of::<u64>()
            ),
            Error::UnknownStat(stat) => write!(f, "unknown value of statistic: {}", stat),
            Error::NotReady => f.write_str("the cache is not initialized (vmemcache_add has not succeeded)"),
            Error::NullArgument(what) => write!(f, "invalid (NULL) {}", what),
            Error::KeyTooLong(len) => write!(f, "key of {} bytes is too long", len),
            Error::Internal(what) => write!(f, "internal error: {}", what),
        }
    }
}

impl std::error::Error for Error {}

/// The C library's text for `errnum`, as `strerror` gives it.
pub fn strerror(errnum: i32) -> String {
    StrError(errnum).to_string()
}

/// Displays the C library's text for an errno without allocating: the
/// messages of [`Error::OutOfMemory`] and [`Error::Sys`] are formatted
/// when memory may have run out, so formatting them must not need any.
struct StrError(i32);

impl fmt::Display for StrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let errnum = self.0;
        let mut buf = [0 as libc::c_char; 256];
        #[cfg(target_env = "gnu")]
        // SAFETY: the buffer is valid for its length; the XSI variant
        // writes a NUL-terminated string into it or fails.
        let rc = unsafe {
            extern "C" {
                fn __xpg_strerror_r(
                    errnum: libc::c_int,
                    buf: *mut libc::c_char,
                    len: libc::size_t,
                ) -> libc::c_int;
            }
            __xpg_strerror_r(errnum, buf.as_mut_ptr(), buf.len())
        };
        #[cfg(not(target_env = "gnu"))]
        // SAFETY: as above.
        let rc = unsafe { libc::strerror_r(errnum, buf.as_mut_ptr(), buf.len()) };
        if rc != 0 {
            return write!(f, "Unknown error {}", errnum);
        }
        // SAFETY: strerror_r succeeded, so `buf` holds a NUL-terminated
        // string.
        match unsafe { CStr::from_ptr(buf.as_ptr()) }.to_str() {
            Ok(text) => f.write_str(text),
            Err(_) => write!(f, "Unknown error {}", errnum),
        }
    }
}

/// The calling thread's current errno.
pub(crate) fn last_errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// Convenience: the result type of cache operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strerror_matches_libc_text() {
        assert_eq!(strerror(libc::ENOTDIR), "Not a directory");
        assert_eq!(strerror(libc::ENOENT), "No such file or directory");
        assert_eq!(strerror(libc::ENOMEM), "Cannot allocate memory");
    }

    #[test]
    fn messages_of_the_catalogue() {
        let open = Error::Sys {
            context: "open".into(),
            errno: libc::ENOTDIR,
        };
        assert_eq!(open.to_string(), "open: Not a directory");
        assert_eq!(open.errno(), libc::ENOTDIR);
        assert_eq!(Error::NullPath.to_string(), "invalid (NULL) path");
        assert_eq!(
            Error::SizeTooSmall(0).to_string(),
            "size 0 smaller than 1048576"
        );
        assert_eq!(
            Error::StatSize(4).to_string(),
            "wrong size of the value: 4 (should be: 8)"
        );
        assert_eq!(Error::Miss.c_message(), None);
        assert_eq!(Error::NotDeviceDax.c_message(), None);
        assert_eq!(Error::NotDeviceDax.errno(), libc::EINVAL);
        assert_eq!(Error::NoVictim.errno(), libc::ESRCH);
        assert_eq!(Error::NoSpace.errno(), libc::ENOSPC);
    }
}
