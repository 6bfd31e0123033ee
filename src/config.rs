//! Cache configuration and its validation (SPEC §3.1–§3.5, §14 #7, #23).
//!
//! This module owns the defaults and the rules each setting must obey, in
//! the order the original checks them. It knows nothing of pools or
//! indexes: it only validates, the cache builds.

use crate::error::{Error, Result};

/// The smallest pool (`VMEMCACHE_MIN_POOL`): 1 MiB.
pub const MIN_POOL: usize = 1024 * 1024;
/// The smallest extent (`VMEMCACHE_MIN_EXTENT`): 256 bytes.
pub const MIN_EXTENT: usize = 256;
/// Pool sizes from this one up are rejected as implausible (2^56).
pub const MAX_POOL: usize = 1 << 56;
/// The default extent size.
pub const DEFAULT_EXTENT: usize = MIN_EXTENT;

/// Which entry to evict when the pool is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u32)]
pub enum Policy {
    /// Never evict by itself: a put into a full cache fails with `ENOSPC`
    /// and evicting "the least recently used" fails with `ESRCH`.
    None = 0,
    /// Evict the least recently used entry (buffered LRU: recency is
    /// applied lazily, see the crate documentation).
    #[default]
    Lru = 1,
}

impl Policy {
    /// The policy with the C enum value `value` (`EINVAL` for others).
    pub fn from_u32(value: u32) -> Result<Policy> {
        match value {
            0 => Ok(Policy::None),
            1 => Ok(Policy::Lru),
            other => Err(Error::InvalidPolicy(other)),
        }
    }
}

/// The settings of a cache before it is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Config {
    /// Requested pool size; 0 means "the default at creation".
    pub(crate) size: usize,
    pub(crate) extent_size: usize,
    pub(crate) policy: Policy,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            size: 0,
            extent_size: DEFAULT_EXTENT,
            policy: Policy::Lru,
        }
    }
}

impl Config {
    /// Checks a pool size as `vmemcache_set_size` does.
    pub(crate) fn check_size(size: usize) -> Result<()> {
        if size < MIN_POOL {
            return Err(Error::SizeTooSmall(size));
        }
        if size >= MAX_POOL {
            return Err(Error::SizeTooLarge(size));
        }
        Ok(())
    }

    /// Checks an extent size as `vmemcache_set_extent_size` does (no upper
    /// bound; non-multiples of 64 are accepted).
    pub(crate) fn check_extent_size(extent_size: usize) -> Result<()> {
        if extent_size < MIN_EXTENT {
            return Err(Error::ExtentTooSmall(extent_size));
        }
        Ok(())
    }

    /// The checks `vmemcache_add` makes before it looks at the path: an
    /// extent larger than an explicitly set size (skipped when no size was
    /// set, SPEC §14 #23).
    pub(crate) fn check_for_add(&self) -> Result<()> {
        if self.size != 0 && self.extent_size > self.size {
            return Err(Error::ExtentLargerThanCache {
                extent: self.extent_size,
                size: self.size,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let c = Config::default();
        assert_eq!(c.size, 0);
        assert_eq!(c.extent_size, 256);
        assert_eq!(c.policy, Policy::Lru);
    }

    #[test]
    fn size_bounds() {
        assert_eq!(Config::check_size(0), Err(Error::SizeTooSmall(0)));
        assert_eq!(
            Config::check_size(MIN_POOL - 1),
            Err(Error::SizeTooSmall(MIN_POOL - 1))
        );
        assert_eq!(Config::check_size(MIN_POOL), Ok(()));
        assert_eq!(Config::check_size(MAX_POOL - 1), Ok(()));
        assert_eq!(
            Config::check_size(MAX_POOL),
            Err(Error::SizeTooLarge(MAX_POOL))
        );
        assert_eq!(
            Config::check_size(usize::MAX),
            Err(Error::SizeTooLarge(usize::MAX))
        );
    }

    #[test]
    fn extent_bounds() {
        assert_eq!(
            Config::check_extent_size(255),
            Err(Error::ExtentTooSmall(255))
        );
        assert_eq!(Config::check_extent_size(256), Ok(()));
        assert_eq!(Config::check_extent_size(300), Ok(()));
        assert_eq!(Config::check_extent_size(usize::MAX), Ok(()));
    }

    #[test]
    fn extent_against_size() {
        let mut c = Config {
            extent_size: 2 * MIN_POOL,
            ..Config::default()
        };
        assert_eq!(c.check_for_add(), Ok(()), "no size set: not checked");
        c.size = MIN_POOL;
        assert_eq!(
            c.check_for_add(),
            Err(Error::ExtentLargerThanCache {
                extent: 2 * MIN_POOL,
                size: MIN_POOL
            })
        );
    }

    #[test]
    fn policies() {
        assert_eq!(Policy::from_u32(0), Ok(Policy::None));
        assert_eq!(Policy::from_u32(1), Ok(Policy::Lru));
        assert_eq!(Policy::from_u32(2), Err(Error::InvalidPolicy(2)));
        assert_eq!(
            Policy::from_u32(u32::MAX),
            Err(Error::InvalidPolicy(u32::MAX))
        );
    }
}
