//! # vmemcache
//!
//! A volatile key-value cache for large-capacity memory: values live in a
//! memory-mapped pool (a temporary file on DAX persistent memory, tmpfs or
//! any filesystem, a device DAX, or anonymous memory) managed by an extent
//! allocator; keys live in DRAM in a sharded critnib index; eviction is a
//! buffered LRU whose gets take no lock.
//!
//! This crate is a drop-in replacement for libvmemcache 0.8: its C library
//! build exports the same 15 functions under the same version node, and
//! this Rust API offers the same engine safely.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod config;
pub mod error;
pub mod stats;

mod entry;
mod heap;
mod hint;
mod index;
mod pool;
mod repl;
mod sync;
mod valgrind;

pub use config::{Policy, MIN_EXTENT, MIN_POOL};
pub use error::Error;
pub use stats::Stat;

mod cache;

/// The C ABI (`libvmemcache.h`). Rust programs use [`Cache`] instead; these
/// functions are public so that tests can drive them.
#[doc(hidden)]
pub mod capi;

pub use cache::{BenchConfig, Cache, CacheBuilder, Found, OnEvict, OnMiss};

/// Fixtures of the per-layer criterion benchmarks.
#[cfg(feature = "internals")]
#[doc(hidden)]
pub mod layers;

#[cfg(feature = "internals")]
#[doc(hidden)]
pub mod internals {
    pub use crate::heap::bench as heap;
    pub use crate::index::bench as index;
    pub use crate::layers;
    pub use crate::pool::bench as pool;
    pub use crate::repl::bench as repl;
}
