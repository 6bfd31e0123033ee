//! Client requests to valgrind's thread checkers, helgrind and drd.
//!
//! Those tools learn about synchronisation from the pthread functions they
//! intercept. This crate synchronises through atomics and parking_lot's
//! futex-based locks, which they cannot see, so without help they would
//! report every hand-over of data between threads as a race. This module
//! tells them, at the points where the crate hands data over:
//!
//! - [`happens_before`] / [`happens_after`]: everything the calling thread
//!   did before `happens_before(x)` happens before everything any thread
//!   does after a later `happens_after(x)` (helgrind's `USERSO_SEND_PRE` /
//!   `USERSO_RECV_POST`, which drd honours under the same numbers as its
//!   `ANNOTATE_HAPPENS_BEFORE` / `_AFTER`);
//! - [`atomic_word`]: a word that is only ever accessed atomically is a
//!   synchronisation variable, not data; the checkers treat a
//!   read-modify-write as a read but a plain atomic store as a write, so
//!   they would flag the word itself. Such words are excluded from race
//!   detection (helgrind: untracked; drd: suppressed) until their memory is
//!   freed.
//!
//! With the `valgrind` feature on x86-64 each request is valgrind's "special
//! instruction sequence": four rotations of `rdi` that add up to a full
//! turn, then `xchg rbx, rbx`. Run natively it changes nothing and costs a
//! few instructions; under valgrind the sequence is recognised and the
//! request delivered to the tool (tools ignore requests they do not know,
//! so the helgrind-only and drd-only ones are harmless under the other).
//! Without the feature, or on other targets, every function is empty.
//!
//! This module never changes what the program computes: the requests have
//! no effect outside valgrind and return nothing the crate uses.

#![cfg_attr(
    not(all(feature = "valgrind", target_arch = "x86_64")),
    allow(unused_variables)
)]

/// helgrind `_VG_USERREQ__HG_USERSO_SEND_PRE` = drd
/// `VG_USERREQ__DRD_ANNOTATE_HAPPENS_BEFORE` (`VG_USERREQ_TOOL_BASE('H','G')
/// + 256 + 33`).
#[cfg(all(feature = "valgrind", target_arch = "x86_64"))]
const HAPPENS_BEFORE: usize = 0x4847_0121;
/// helgrind `_VG_USERREQ__HG_USERSO_RECV_POST` = drd
/// `VG_USERREQ__DRD_ANNOTATE_HAPPENS_AFTER`.
#[cfg(all(feature = "valgrind", target_arch = "x86_64"))]
const HAPPENS_AFTER: usize = 0x4847_0122;
/// helgrind `VG_USERREQ__HG_CLEAN_MEMORY` = drd
/// `VG_USERREQ__DRD_CLEAN_MEMORY` (`VG_USERREQ_TOOL_BASE('H','G')`;
/// address, length).
#[cfg(all(feature = "valgrind", target_arch = "x86_64"))]
const CLEAN_MEMORY: usize = 0x4847_0000;
/// helgrind `_VG_USERREQ__HG_ARANGE_MAKE_UNTRACKED` (address, length).
#[cfg(all(feature = "valgrind", target_arch = "x86_64"))]
const HG_UNTRACKED: usize = 0x4847_0127;
/// drd `VG_USERREQ__DRD_START_SUPPRESSION` (address, length).
#[cfg(all(feature = "valgrind", target_arch = "x86_64"))]
const DRD_SUPPRESS: usize = 0x4452_0002;

/// Delivers a client request with two arguments to the running tool; does
/// nothing outside valgrind.
#[cfg(all(feature = "valgrind", target_arch = "x86_64"))]
#[inline(always)]
fn request(code: usize, arg1: usize, arg2: usize) {
    let args: [usize; 6] = [code, arg1, arg2, 0, 0, 0];
    // SAFETY: natively the sequence has no effect: `rdi` is rotated by 3 +
    // 13 + 61 + 51 = 128 bits, a whole number of turns, so it ends as it
    // started, and `xchg rbx, rbx` leaves `rbx` alone; only the flags
    // change, which the asm does not promise to keep. Under valgrind the
    // tool reads the six words at `rax` (live for the whole statement) and
    // writes its answer to `rdx`, declared as clobbered. No `nomem`: the
    // tool reads `args`, and the requests must stay ordered with the memory
    // accesses around them, which they annotate.
    unsafe {
        core::arch::asm!(
            "rol rdi, 3",
            "rol rdi, 13",
            "rol rdi, 61",
            "rol rdi, 51",
            "xchg rbx, rbx",
            in("rax") args.as_ptr(),
            inout("rdx") 0usize => _,
            options(nostack),
        );
    }
}

/// Everything this thread did so far happens before everything a thread
/// does after a later [`happens_after`] on the same address.
#[inline(always)]
pub(crate) fn happens_before<T: ?Sized>(tag: &T) {
    #[cfg(all(feature = "valgrind", target_arch = "x86_64"))]
    request(HAPPENS_BEFORE, tag as *const T as *const u8 as usize, 0);
}

/// See [`happens_before`].
#[inline(always)]
pub(crate) fn happens_after<T: ?Sized>(tag: &T) {
    #[cfg(all(feature = "valgrind", target_arch = "x86_64"))]
    request(HAPPENS_AFTER, tag as *const T as *const u8 as usize, 0);
}

/// `word` holds an atomic that some thread stores to without a
/// read-modify-write: keep the checkers from flagging the atomic accesses
/// themselves (the data they guard is annotated with
/// [`happens_before`] / [`happens_after`]). Both tools forget the
/// exemption when the block is freed, so memory reused for data is checked
/// again (a block freed and reallocated at the same address shows races
/// again under helgrind and drd of valgrind 3.19).
#[inline(always)]
pub(crate) fn atomic_word<T: ?Sized>(word: &T) {
    #[cfg(all(feature = "valgrind", target_arch = "x86_64"))]
    {
        let (addr, len) = (
            word as *const T as *const u8 as usize,
            std::mem::size_of_val(word),
        );
        request(HG_UNTRACKED, addr, len);
        request(DRD_SUPPRESS, addr, len);
    }
}

/// The `len` bytes at `start` are reused as if newly allocated: the
/// checkers forget the accesses of their previous life, as they do when a
/// block is freed. The caller knows, through synchronisation the checkers
/// cannot see, that those accesses happened before.
#[inline(always)]
pub(crate) fn fresh_memory(start: *const u8, len: usize) {
    #[cfg(all(feature = "valgrind", target_arch = "x86_64"))]
    request(CLEAN_MEMORY, start as usize, len);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU8, Ordering};

    /// Natively the requests must change nothing at all.
    #[test]
    fn requests_are_no_ops_outside_valgrind() {
        let word = AtomicU8::new(5);
        let mut data = [1u64, 2, 3];
        atomic_word(&word);
        happens_before(&word);
        happens_after(&word);
        happens_before(&data[..]);
        fresh_memory(data.as_ptr() as *const u8, 8);
        data[1] = 7;
        assert_eq!(word.load(Ordering::Relaxed), 5);
        assert_eq!(data, [1, 7, 3]);
    }
}
