//! Prefetch hints: requests that a cache line be brought in ahead of its
//! use, so that misses the code knows about early overlap with other work.
//! A hint never faults, whatever the address, and changes nothing that the
//! program can observe; on targets without one it is a no-op.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::{_MM_HINT_ET0 as FOR_WRITE, _MM_HINT_T0 as FOR_READ};
#[cfg(not(target_arch = "x86_64"))]
const FOR_READ: i32 = 0;
#[cfg(not(target_arch = "x86_64"))]
const FOR_WRITE: i32 = 0;

/// Asks for the cache line holding `p`, for reading.
#[inline(always)]
pub(crate) fn prefetch<T>(p: *const T) {
    request::<FOR_READ, T>(p)
}

/// Asks for the cache line holding `p`, which is about to be written. With
/// the write prefetch in the target's features (x86-64 with `prfchw`) the
/// line comes exclusive; a baseline x86-64 build emits an ordinary
/// prefetch, and a line that no other core holds arrives exclusive anyway.
#[inline(always)]
pub(crate) fn prefetch_for_write<T>(p: *const T) {
    request::<FOR_WRITE, T>(p)
}

#[inline(always)]
fn request<const KIND: i32, T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch does not access memory architecturally.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<KIND>(p as *const i8)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fails by crashing: a hint that dereferenced its address would fault
    /// on the null and unmapped ones.
    #[test]
    fn hints_accept_any_address() {
        let x = 5u64;
        prefetch(&x);
        prefetch_for_write(&x);
        prefetch(std::ptr::null::<u8>());
        prefetch_for_write(std::ptr::null::<u8>());
        prefetch(usize::MAX as *const u8);
        prefetch_for_write(usize::MAX as *const u8);
    }
}
