//! Sharded critnib index (SPEC §8.3).
//!
//! CONTRACT (to be implemented).

use crate::entry::{Entry, EntryPtr};
use crate::error::Result;

/// Counter totals of the index.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IndexStats {
    pub(crate) puts: u64,
    pub(crate) evictions: u64,
    pub(crate) entries: u64,
    pub(crate) dram: u64,
    pub(crate) hits: u64,
    pub(crate) misses: u64,
}

/// Whether `VMEMCACHE_SHARDING` asks for sharding.
pub(crate) fn sharding_from_env() -> Result<bool> {
    todo!()
}

/// The index.
pub(crate) struct Index {}

impl Index {
    /// An empty index.
    pub(crate) fn new(sharded: bool) -> Result<Index> {
        let _ = sharded;
        todo!()
    }

    /// Looks `key` up; on a hit takes a reference for the caller. With
    /// `count`, counts a hit or a miss.
    pub(crate) fn lookup(&self, key: &[u8], count: bool) -> Option<EntryPtr> {
        let _ = (key, count);
        todo!()
    }

    /// Runs `f` on the entry of `key` under the shard's read lock.
    pub(crate) fn peek<R>(&self, key: &[u8], f: impl FnOnce(&Entry) -> R) -> Option<R> {
        let _ = (key, f);
        todo!()
    }

    /// Inserts, taking over the caller's reference on success.
    pub(crate) fn insert(&self, entry: EntryPtr) -> Result<()> {
        let _ = entry;
        todo!()
    }

    /// Removes this very entry; `true` hands the index's reference to the
    /// caller.
    pub(crate) fn remove(&self, entry: EntryPtr) -> bool {
        let _ = entry;
        todo!()
    }

    /// Takes every entry out, handing each index reference to `f`.
    pub(crate) fn drain(&mut self, f: impl FnMut(EntryPtr)) {
        let _ = f;
        todo!()
    }

    /// Counter totals.
    pub(crate) fn stats(&self) -> IndexStats {
        todo!()
    }

    /// Checks every invariant.
    pub(crate) fn validate(&self) -> Result<(), String> {
        todo!()
    }
}
