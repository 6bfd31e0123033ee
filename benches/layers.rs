//! Per-layer benchmarks with criterion: the extent allocator, the index,
//! the LRU and the whole cache through the Rust API, each at 1 and 2
//! threads. Run with `cargo bench --features internals --bench layers`
//! (a criterion filter may follow `--`).
//!
//! A benchmark at `t` threads runs `t` threads that each make `iters`
//! operations; the time reported per iteration is the wall time divided by
//! `iters`, and the throughput counts the operations of all threads.

use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use vmemcache::internals::layers::{key_of, HeapFixture, IndexFixture, LruFixture};
use vmemcache::{Cache, CacheBuilder};

const THREADS: [usize; 2] = [1, 2];
const MIB: usize = 1 << 20;
/// Entries of the index and LRU fixtures: enough that they do not fit in
/// the caches, as in a real pool of small values.
const ENTRIES: usize = 1 << 20;

/// Runs `f(thread, iters)` on `threads` threads started together; the wall
/// time from the start to the last one's end.
fn parallel<F: Fn(usize, u64) + Sync>(threads: usize, iters: u64, f: F) -> Duration {
    let barrier = Barrier::new(threads + 1);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (barrier, f) = (&barrier, &f);
                s.spawn(move || {
                    barrier.wait();
                    f(t, iters);
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        for h in handles {
            h.join().expect("benchmark thread");
        }
        start.elapsed()
    })
}

/// A splitmix64 stream per thread.
struct Rng(u64);

impl Rng {
    fn new(seed: usize) -> Rng {
        Rng(seed as u64 * 0x9e37_79b9_7f4a_7c15 + 7)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

fn heap(c: &mut Criterion) {
    let mut group = c.benchmark_group("heap");
    for threads in THREADS {
        // A full 64 MiB heap of 256-byte extents; each put of 256..1024
        // bytes frees the thread's oldest values until it fits.
        let fixture = HeapFixture::new(64 * MIB, 256, threads);
        for t in 0..threads {
            for _ in 0..(64 * MIB / 640 / threads) {
                fixture.put(t, 256, 1024);
            }
        }
        group.throughput(Throughput::Elements(threads as u64));
        group.bench_function(BenchmarkId::new("alloc_free_256-1024B", threads), |b| {
            b.iter_custom(|iters| {
                parallel(threads, iters, |t, n| {
                    for _ in 0..n {
                        black_box(fixture.put(t, 256, 1024));
                    }
                })
            })
        });
    }
    group.finish();
}

fn index(c: &mut Criterion) {
    let mut group = c.benchmark_group("index");
    let fixture = IndexFixture::new(ENTRIES);
    let n = fixture.len() as u64;
    for threads in THREADS {
        group.throughput(Throughput::Elements(threads as u64));
        group.bench_function(BenchmarkId::new("lookup_hit", threads), |b| {
            b.iter_custom(|iters| {
                parallel(threads, iters, |t, k| {
                    let mut rng = Rng::new(t);
                    for _ in 0..k {
                        black_box(fixture.lookup(rng.next() % n));
                    }
                })
            })
        });
        group.bench_function(BenchmarkId::new("lookup_miss", threads), |b| {
            b.iter_custom(|iters| {
                parallel(threads, iters, |t, k| {
                    let mut rng = Rng::new(t);
                    for _ in 0..k {
                        black_box(fixture.lookup(n + rng.next() % n));
                    }
                })
            })
        });
        // Each thread removes and re-inserts entries of its own share.
        group.bench_function(BenchmarkId::new("remove_insert", threads), |b| {
            b.iter_custom(|iters| {
                parallel(threads, iters, |t, k| {
                    let mut rng = Rng::new(t);
                    let share = n / threads as u64;
                    for _ in 0..k {
                        let i = t as u64 * share + rng.next() % share;
                        fixture.remove_insert(i as usize);
                    }
                })
            })
        });
    }
    group.finish();
}

fn lru(c: &mut Criterion) {
    let mut group = c.benchmark_group("lru");
    let fixture = LruFixture::new(ENTRIES);
    let n = fixture.len() as u64;
    for threads in THREADS {
        group.throughput(Throughput::Elements(threads as u64));
        group.bench_function(BenchmarkId::new("touch", threads), |b| {
            b.iter_custom(|iters| {
                parallel(threads, iters, |t, k| {
                    let mut rng = Rng::new(t);
                    for _ in 0..k {
                        fixture.touch((rng.next() % n) as usize);
                    }
                })
            })
        });
        group.bench_function(BenchmarkId::new("evict_insert", threads), |b| {
            b.iter_custom(|iters| {
                parallel(threads, iters, |_, k| {
                    for _ in 0..k {
                        black_box(fixture.evict_insert());
                    }
                })
            })
        });
    }
    group.finish();
}

/// A full cache of `pool` bytes in anonymous memory holding values of
/// 256..1024 bytes under keys `0..keys`.
fn filled_cache(pool: usize) -> (Cache, u64) {
    let cache = CacheBuilder::new()
        .size(pool)
        .anonymous()
        .build()
        .expect("cache");
    let value = vec![0x5au8; 1024];
    let mut rng = Rng::new(99);
    let keys = (pool / 768) as u64;
    for i in 0..keys {
        let len = 256 + (rng.next() % 769) as usize;
        cache.put(&key_of(i), &value[..len]).expect("put");
    }
    (cache, keys)
}

fn cache(c: &mut Criterion) {
    let mut group = c.benchmark_group("cache");
    let (cache, keys) = filled_cache(256 * MIB);
    // The keys still present after the fill (the first ones were evicted).
    let first = (0..keys)
        .find(|&i| cache.exists(&key_of(i)).is_some())
        .unwrap_or(0);
    let present = keys - first;
    let mut next_key = [keys + (1u64 << 40), keys + (2u64 << 40)];
    for threads in THREADS {
        group.throughput(Throughput::Elements(threads as u64));
        group.bench_function(BenchmarkId::new("get_hit_256-1024B", threads), |b| {
            b.iter_custom(|iters| {
                parallel(threads, iters, |t, k| {
                    let mut rng = Rng::new(t);
                    let mut buf = [0u8; 1024];
                    for _ in 0..k {
                        let key = key_of(first + rng.next() % present);
                        black_box(cache.get_into(&key, 0, &mut buf).ok());
                    }
                })
            })
        });
    }
    // Puts of new keys into the full cache, each evicting (after the gets,
    // which need the keys of the fill).
    for threads in THREADS {
        group.throughput(Throughput::Elements(threads as u64));
        group.bench_function(BenchmarkId::new("put_evict_256-1024B", threads), |b| {
            b.iter_custom(|iters| {
                let starts = next_key;
                for s in next_key.iter_mut() {
                    *s += iters;
                }
                parallel(threads, iters, |t, k| {
                    let mut rng = Rng::new(t);
                    let value = [0xa5u8; 1024];
                    for i in 0..k {
                        let len = 256 + (rng.next() % 769) as usize;
                        black_box(cache.put(&key_of(starts[t] + i), &value[..len]).ok());
                    }
                })
            })
        });
    }
    group.finish();
}

fn config() -> Criterion {
    // Few, short samples: the whole run stays around a minute on two cores.
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
}

criterion_group! {
    name = layers;
    config = config();
    targets = heap, index, lru, cache
}
criterion_main!(layers);
