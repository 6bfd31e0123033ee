//! Statistics (SPEC §9): the list of statistics and the counter type the
//! other modules keep them in.
//!
//! Counters live where the events happen (index shards, heap arenas) so that
//! no get writes a cache line shared by every thread; reading a statistic
//! sums them without locks. Without the `stats` feature a [`Counter`] is an
//! empty type whose updates compile to nothing and which always reads 0.

#[cfg(feature = "stats")]
use std::sync::atomic::{AtomicU64, Ordering};

/// The statistics `get_stat` reports, with the C enum's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Stat {
    /// Successful puts (index insertions).
    Put = 0,
    /// Gets: hits plus misses.
    Get = 1,
    /// Gets that found their key.
    Hit = 2,
    /// Gets that did not find their key (even when `on_miss` then put it).
    Miss = 3,
    /// Entries removed from the index (explicit, LRU, or to make room).
    Evict = 4,
    /// Entries currently in the cache.
    Entries = 5,
    /// DRAM held for entries: records, index nodes, run lists.
    DramSizeUsed = 6,
    /// Pool bytes currently allocated to values.
    PoolSizeUsed = 7,
    /// Separate free regions of the pool (1 when empty, 0 when full).
    HeapEntries = 8,
}

impl Stat {
    /// Number of statistics (`VMEMCACHE_STATS_NUM`).
    pub const COUNT: u32 = 9;

    /// All statistics, in the order of their values.
    pub const ALL: [Stat; 9] = [
        Stat::Put,
        Stat::Get,
        Stat::Hit,
        Stat::Miss,
        Stat::Evict,
        Stat::Entries,
        Stat::DramSizeUsed,
        Stat::PoolSizeUsed,
        Stat::HeapEntries,
    ];

    /// The statistic with the C enum value `value`, if there is one.
    pub fn from_u32(value: u32) -> Option<Stat> {
        Self::ALL.get(value as usize).copied()
    }
}

/// A statistics counter. Updates are relaxed atomic operations: values are
/// advisory (SPEC §14 #24), but a read is never torn. Counters that can go
/// down are only decremented after the matching increment, by the same
/// lock holder or after a happens-before edge, so they never read negative
/// once summed; `get` saturates at zero for robustness all the same.
#[derive(Debug, Default)]
pub struct Counter {
    #[cfg(feature = "stats")]
    value: AtomicU64,
}

impl Counter {
    /// A counter at zero.
    pub const fn new() -> Counter {
        Counter {
            #[cfg(feature = "stats")]
            value: AtomicU64::new(0),
        }
    }

    /// Adds `n`.
    #[inline]
    pub fn add(&self, n: u64) {
        #[cfg(feature = "stats")]
        self.value.fetch_add(n, Ordering::Relaxed);
        #[cfg(not(feature = "stats"))]
        let _ = n;
    }

    /// Subtracts `n`.
    #[inline]
    pub fn sub(&self, n: u64) {
        #[cfg(feature = "stats")]
        self.value.fetch_sub(n, Ordering::Relaxed);
        #[cfg(not(feature = "stats"))]
        let _ = n;
    }

    /// Adds `n` to a counter that only the holder of one lock changes,
    /// which the caller holds: a plain load and store instead of a
    /// read-modify-write, whose locked instruction would wait for every
    /// store before it. Readers still never see a torn value.
    #[inline]
    pub(crate) fn add_locked(&self, n: u64) {
        #[cfg(feature = "stats")]
        self.value.store(
            self.value.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
        #[cfg(not(feature = "stats"))]
        let _ = n;
    }

    /// Subtracts `n`, as [`Counter::add_locked`] adds.
    #[inline]
    pub(crate) fn sub_locked(&self, n: u64) {
        #[cfg(feature = "stats")]
        self.value.store(
            self.value.load(Ordering::Relaxed).wrapping_sub(n),
            Ordering::Relaxed,
        );
        #[cfg(not(feature = "stats"))]
        let _ = n;
    }

    /// Tells valgrind's thread checkers that the counter is a
    /// synchronisation word, as [`Counter::add_locked`] stores to it
    /// without a read-modify-write while others read it without the lock
    /// (see `valgrind::atomic_word`). Call it where the counter stays.
    pub(crate) fn announce_atomic(&self) {
        #[cfg(feature = "stats")]
        crate::valgrind::atomic_word(&self.value);
    }

    /// The current value as a signed number (a sum of per-shard counters
    /// may be momentarily negative in one part and positive in another).
    #[inline]
    pub fn get(&self) -> i64 {
        #[cfg(feature = "stats")]
        {
            self.value.load(Ordering::Relaxed) as i64
        }
        #[cfg(not(feature = "stats"))]
        {
            0
        }
    }
}

/// Sums signed counter readings, clamping the total at zero.
pub fn sum_clamped(values: impl IntoIterator<Item = i64>) -> u64 {
    let total: i64 = values.into_iter().sum();
    total.max(0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_values_match_the_c_enum() {
        for (i, s) in Stat::ALL.iter().enumerate() {
            assert_eq!(*s as u32, i as u32);
            assert_eq!(Stat::from_u32(i as u32), Some(*s));
        }
        assert_eq!(Stat::from_u32(Stat::COUNT), None);
    }

    #[test]
    fn counter_counts_when_enabled() {
        let c = Counter::new();
        c.add(5);
        c.sub(2);
        // The lock holder's updates count the same.
        c.add_locked(10);
        c.sub_locked(4);
        c.announce_atomic();
        if cfg!(feature = "stats") {
            assert_eq!(c.get(), 9);
        } else {
            assert_eq!(c.get(), 0);
        }
        assert_eq!(sum_clamped([3, -5]), 0);
        assert_eq!(sum_clamped([3, 5]), 8);
    }
}
