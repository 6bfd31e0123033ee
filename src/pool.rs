//! The mapped backing medium (SPEC §3.5–§3.7).
//!
//! CONTRACT (to be implemented).

use std::path::Path;

use crate::error::Result;

/// A mapped pool.
pub(crate) struct Pool {}

impl Pool {
    /// Creates the pool for `path` (directory or device DAX); `size` 0 means
    /// the default.
    pub(crate) fn open(path: &Path, size: usize) -> Result<Pool> {
        let _ = (path, size);
        todo!()
    }

    /// A pool in anonymous memory.
    pub(crate) fn anonymous(size: usize) -> Result<Pool> {
        let _ = size;
        todo!()
    }

    /// First byte.
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        todo!()
    }

    /// Size in bytes.
    pub(crate) fn len(&self) -> usize {
        todo!()
    }

    /// Touches one byte per page.
    pub(crate) fn prefault(&self) {
        todo!()
    }
}

/// The page size.
pub(crate) fn page_size() -> usize {
    todo!()
}
