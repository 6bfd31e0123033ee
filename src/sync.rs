//! The crate's locks: parking_lot's mutex and reader-writer lock, whose
//! acquisitions and releases are announced to valgrind's thread checkers.
//!
//! parking_lot locks with atomics and futexes, which helgrind and drd do
//! not understand, so they would take every critical section of two
//! threads for a race. These wrappers add a happens-before edge from every
//! release to every later acquisition of the same lock (see
//! [`crate::valgrind`]): natively a few instructions, nothing at all
//! without the `valgrind` feature. A read lock's release announces an edge
//! too, so that what a reader read happens before a later writer's writes.
//!
//! A mutex found held is watched for a while before the thread sleeps on
//! it ([`SPIN_FOR`]); otherwise this module owns no data and only forwards
//! to parking_lot. The index shards, the heap arenas and the LRU list lock
//! through it, and nothing in the crate locks parking_lot's types directly.

use std::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

use crate::valgrind::{atomic_word, happens_after, happens_before};

/// How long a thread that finds a [`Mutex`] held watches it before it goes
/// to sleep. The crate's critical sections last a few microseconds at most
/// (a handful of cache misses), while sleeping and being woken costs two
/// system calls and, on a virtual machine, tens of microseconds before the
/// sleeper runs again; parking_lot alone gives up after well under a
/// microsecond of spinning. The bound keeps a waiter from burning its time
/// slice when the holder was preempted.
const SPIN_FOR: Duration = Duration::from_micros(20);

/// Pauses between two looks at the clock while spinning.
const SPIN_ROUND: u32 = 32;

/// A mutex (parking_lot's, announced to the thread checkers).
#[repr(transparent)]
pub(crate) struct Mutex<T>(parking_lot::Mutex<T>);

/// Holds a [`Mutex`]; releases it when dropped.
pub(crate) struct MutexGuard<'a, T> {
    inner: parking_lot::MutexGuard<'a, T>,
}

impl<T> Mutex<T> {
    pub(crate) const fn new(value: T) -> Mutex<T> {
        Mutex(parking_lot::Mutex::new(value))
    }

    /// Locks. A mutex seen free is taken with parking_lot's own fast path
    /// (which goes to its slow path if another thread took it meanwhile);
    /// one seen held is waited for as [`Mutex::lock_contended`] says.
    ///
    /// The thread checkers do not know atomics: they would report the
    /// watching loads, inlined into the crate's code where the suppressions
    /// of parking_lot's own accesses do not reach, as races with the
    /// unlocks. The lock word is therefore a synchronisation word to them
    /// ([`atomic_word`]; natively a few instructions that do nothing).
    #[inline]
    pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
        // SAFETY: only the address of parking_lot's lock word is taken; it
        // is neither locked nor unlocked through this reference.
        atomic_word(unsafe { self.0.raw() });
        let inner = if self.0.is_locked() {
            self.lock_contended()
        } else {
            self.0.lock()
        };
        happens_after(self);
        MutexGuard { inner }
    }

    /// Waits for a mutex that was found held: first by watching its word
    /// for up to [`SPIN_FOR`], then by sleeping in parking_lot's queue.
    #[cold]
    fn lock_contended(&self) -> parking_lot::MutexGuard<'_, T> {
        let start = Instant::now();
        loop {
            for _ in 0..SPIN_ROUND {
                std::hint::spin_loop();
                // A plain load while it is held: only a free mutex is
                // worth the read-for-ownership of a try.
                if !self.0.is_locked() {
                    if let Some(inner) = self.0.try_lock() {
                        return inner;
                    }
                }
            }
            if start.elapsed() >= SPIN_FOR {
                return self.0.lock();
            }
        }
    }

    #[inline]
    pub(crate) fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
        // SAFETY: as in `lock`.
        atomic_word(unsafe { self.0.raw() });
        let inner = self.0.try_lock()?;
        happens_after(self);
        Some(MutexGuard { inner })
    }

    /// The value, through exclusive access (no locking needed).
    pub(crate) fn get_mut(&mut self) -> &mut T {
        self.0.get_mut()
    }
}

impl<T> Deref for MutexGuard<'_, T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        &self.inner
    }
}

impl<T> DerefMut for MutexGuard<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        &mut self.inner
    }
}

impl<T> Drop for MutexGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        // Before `inner` is dropped, which unlocks: the edge must be
        // announced while the lock is still held. The wrapper is
        // transparent, so parking_lot's mutex has the wrapper's address.
        happens_before(parking_lot::MutexGuard::mutex(&self.inner));
    }
}

/// A reader-writer lock (parking_lot's, announced to the thread checkers).
#[repr(transparent)]
pub(crate) struct RwLock<T>(parking_lot::RwLock<T>);

/// Holds a [`RwLock`] for reading.
pub(crate) struct RwLockReadGuard<'a, T> {
    inner: parking_lot::RwLockReadGuard<'a, T>,
}

/// Holds a [`RwLock`] for writing.
pub(crate) struct RwLockWriteGuard<'a, T> {
    inner: parking_lot::RwLockWriteGuard<'a, T>,
}

impl<T> RwLock<T> {
    pub(crate) const fn new(value: T) -> RwLock<T> {
        RwLock(parking_lot::RwLock::new(value))
    }

    #[inline]
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, T> {
        let inner = self.0.read();
        happens_after(self);
        RwLockReadGuard { inner }
    }

    #[inline]
    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, T> {
        let inner = self.0.write();
        happens_after(self);
        RwLockWriteGuard { inner }
    }

    /// The value, through exclusive access (no locking needed).
    pub(crate) fn get_mut(&mut self) -> &mut T {
        self.0.get_mut()
    }
}

impl<T> Deref for RwLockReadGuard<'_, T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        &self.inner
    }
}

impl<T> Drop for RwLockReadGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        // As for the mutex: announced while still held.
        happens_before(parking_lot::RwLockReadGuard::rwlock(&self.inner));
    }
}

impl<T> Deref for RwLockWriteGuard<'_, T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        &self.inner
    }
}

impl<T> DerefMut for RwLockWriteGuard<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        &mut self.inner
    }
}

impl<T> Drop for RwLockWriteGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        happens_before(parking_lot::RwLockWriteGuard::rwlock(&self.inner));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn locks_exclude_and_share_as_parking_lot_does() {
        let m = Arc::new(Mutex::new(0u64));
        let rw = Arc::new(RwLock::new(0u64));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (m, rw) = (Arc::clone(&m), Arc::clone(&rw));
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        *m.lock() += 1;
                        *rw.write() += 1;
                        let _ = *rw.read();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(*m.lock(), 4000);
        assert_eq!(*rw.read(), 4000);
        let held = m.lock();
        assert!(m.try_lock().is_none());
        drop(held);
        assert!(m.try_lock().is_some());
        let mut m = Arc::try_unwrap(m).ok().unwrap();
        *m.get_mut() += 1;
        assert_eq!(*m.lock(), 4001);
    }

    #[test]
    fn a_waiter_gets_the_mutex_whether_it_spins_or_sleeps() {
        // Held for less than the spin, then for far longer: the waiter
        // takes the mutex while watching it, then after sleeping on it, and
        // sees the holder's writes either way.
        for hold in [Duration::from_micros(2), SPIN_FOR * 50] {
            let m = Arc::new(Mutex::new(0u64));
            let started = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let guard = m.lock();
            let waiter = {
                let (m, started) = (Arc::clone(&m), Arc::clone(&started));
                std::thread::spawn(move || {
                    started.store(true, std::sync::atomic::Ordering::Release);
                    let mut value = m.lock();
                    *value += 1;
                    *value
                })
            };
            // The hold counts from the waiter's start, so that it is
            // waiting for most of it.
            while !started.load(std::sync::atomic::Ordering::Acquire) {
                std::hint::spin_loop();
            }
            let start = Instant::now();
            while start.elapsed() < hold {
                std::hint::spin_loop();
            }
            let mut guard = guard;
            *guard = 10;
            drop(guard);
            assert_eq!(waiter.join().unwrap(), 11);
            assert_eq!(*m.lock(), 11);
        }
    }
}
