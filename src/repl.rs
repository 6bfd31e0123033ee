//! Replacement policies (SPEC §8.4).
//!
//! CONTRACT (to be implemented).

use crate::config::Policy;
use crate::entry::{Entry, EntryPtr};
use crate::error::Result;

/// The replacement policy of one cache.
pub(crate) struct Repl {}

impl Repl {
    /// A policy with no entries.
    pub(crate) fn new(policy: Policy) -> Result<Repl> {
        let _ = policy;
        todo!()
    }

    /// Whether entries need LRU links in their records.
    pub(crate) fn uses_links(&self) -> bool {
        todo!()
    }

    /// Registers a newly indexed entry as the most recently used.
    pub(crate) fn insert(&self, entry: &Entry) {
        let _ = entry;
        todo!()
    }

    /// Marks an entry used (a get hit).
    pub(crate) fn touch(&self, entry: &Entry) {
        let _ = entry;
        todo!()
    }

    /// Picks, claims and unlinks a victim.
    pub(crate) fn evict_victim(&self) -> Result<EntryPtr> {
        todo!()
    }

    /// Unlinks an entry that its caller already claimed.
    pub(crate) fn remove(&self, entry: &Entry) -> Result<()> {
        let _ = entry;
        todo!()
    }

    /// Unlinks everything (cache teardown).
    pub(crate) fn clear(&mut self) {
        todo!()
    }

    /// Checks every invariant at a quiescent point.
    pub(crate) fn validate(&self) -> Result<(), String> {
        todo!()
    }
}
