//! The driver's get-or-put workload through the Rust API of vmemcache and of
//! `quick_cache` (an in-DRAM concurrent cache with byte-weighted capacity),
//! in one program: throughput at 1 and 2 threads, hit ratio, and DRAM per
//! entry, counted by the global allocator below.
//!
//! Workload (as `vmemcache-bench` with its defaults): 16-byte keys drawn
//! uniformly from 2.7 x (pool / mean value size) keys; the value of key k
//! has a size that is a function of k, log-uniform in 8 B .. 8 KiB; every op
//! gets a key (copying the value out) and puts it on a miss.
//!
//! Memory: vmemcache gets a pool of `pool` bytes (on /dev/shm) and holds its
//! index in DRAM; quick_cache is run twice: with a weight capacity of `pool`
//! (weight = key + value bytes: the same value budget), and with the weight
//! capacity scaled so its whole DRAM footprint equals vmemcache's pool plus
//! DRAM ("equal memory").
//!
//! `cargo bench --bench compare -- [pool=256M] [ops=1000000] [dir=/dev/shm]`

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use vmemcache::{Cache, Stat};

/// Counts live heap bytes, so each cache's DRAM can be read off.
#[cfg_attr(feature = "c-malloc", allow(dead_code))]
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call forwards to the system allocator with the same
// arguments; the counter is bookkeeping only.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc` is passed on as is.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            // Relaxed: a statistic read after the threads were joined.
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as for `dealloc` of the system allocator, which made it.
        unsafe { System.dealloc(ptr, layout) };
        // Relaxed: see alloc.
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `realloc` of the system allocator, which made it.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            // Relaxed: see alloc.
            LIVE.fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            );
        }
        p
    }
}

// With the feature c-malloc the crate installs its own global allocator
// (malloc for the C library); this program then cannot count, and says so.
#[cfg(not(feature = "c-malloc"))]
#[global_allocator]
static GLOBAL: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

const MIN_SIZE: f64 = 8.0;
const MAX_SIZE: f64 = 8192.0;
const KEY_SIZE: usize = 16;

fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
    z ^ (z >> 31)
}

fn rng_next(s: &mut u64) -> u64 {
    *s = s.wrapping_add(0x9e3779b97f4a7c15);
    mix64(*s)
}

fn unit(r: u64) -> f64 {
    (r >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// As the driver's log distribution with seed 1.
fn value_size(k: u64) -> usize {
    let u = unit(mix64(k ^ mix64(1 ^ 0x5a5a5a5a5a5a5a5a)));
    let s = (MIN_SIZE * ((MAX_SIZE + 1.0) / MIN_SIZE).powf(u)).floor();
    s.clamp(MIN_SIZE, MAX_SIZE) as usize
}

fn make_key(k: u64) -> [u8; KEY_SIZE] {
    let mut key = [0u8; KEY_SIZE];
    key[..8].copy_from_slice(&k.to_le_bytes());
    key[8..].copy_from_slice(&mix64(k).to_le_bytes());
    key
}

/// What both caches offer the loop.
trait Backend: Sync {
    fn get(&self, key: &[u8; KEY_SIZE], buf: &mut [u8]) -> bool;
    fn put(&self, key: [u8; KEY_SIZE], value: &[u8]);
    fn entries(&self) -> u64;
}

impl Backend for Cache {
    fn get(&self, key: &[u8; KEY_SIZE], buf: &mut [u8]) -> bool {
        self.get_into(key, 0, buf).is_ok()
    }
    fn put(&self, key: [u8; KEY_SIZE], value: &[u8]) {
        // Another thread may have put it first (KeyExists): fine.
        let _ = Cache::put(self, &key, value);
    }
    fn entries(&self) -> u64 {
        self.stat(Stat::Entries)
    }
}

#[derive(Clone)]
struct Bytes;

impl quick_cache::Weighter<[u8; KEY_SIZE], Arc<[u8]>> for Bytes {
    fn weight(&self, _key: &[u8; KEY_SIZE], val: &Arc<[u8]>) -> u64 {
        (KEY_SIZE + val.len()) as u64
    }
}

type Quick = quick_cache::sync::Cache<[u8; KEY_SIZE], Arc<[u8]>, Bytes>;

impl Backend for Quick {
    fn get(&self, key: &[u8; KEY_SIZE], buf: &mut [u8]) -> bool {
        match quick_cache::sync::Cache::get(self, key) {
            Some(v) => {
                // Copy out, as vmemcache's get does.
                buf[..v.len()].copy_from_slice(&v);
                true
            }
            None => false,
        }
    }
    fn put(&self, key: [u8; KEY_SIZE], value: &[u8]) {
        self.insert(key, Arc::from(value));
    }
    fn entries(&self) -> u64 {
        self.len() as u64
    }
}

struct Run {
    mops: f64,
    hit: f64,
}

/// `ops` operations over `threads` threads after a warm-up that puts twice
/// the pool's worth of bytes.
fn run(b: &dyn Backend, threads: u64, ops: u64, keys: u64, warm: u64, seed: u64) -> Run {
    let phase = |n: u64, salt: u64| -> u64 {
        std::thread::scope(|s| {
            let hs: Vec<_> = (0..threads)
                .map(|t| {
                    s.spawn(move || {
                        let mut rng = mix64(seed * 1_000_003 + salt * 7 + t + 1);
                        let mut buf = vec![0u8; MAX_SIZE as usize];
                        let val = vec![0xa5u8; MAX_SIZE as usize];
                        let mut hits = 0;
                        for _ in 0..n / threads {
                            let k = rng_next(&mut rng) % keys;
                            let key = make_key(k);
                            if b.get(&key, &mut buf) {
                                hits += 1;
                            } else {
                                b.put(key, &val[..value_size(k)]);
                            }
                        }
                        hits
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap_or(0)).sum()
        })
    };
    phase(warm, 1);
    let t0 = Instant::now();
    let hits = phase(ops, 2);
    let secs = t0.elapsed().as_secs_f64();
    Run {
        mops: ops as f64 / secs / 1e6,
        hit: hits as f64 / ops as f64,
    }
}

fn parse_size(v: &str) -> Option<u64> {
    let (num, mult) = match v.as_bytes().last()? {
        b'K' | b'k' => (&v[..v.len() - 1], 1u64 << 10),
        b'M' | b'm' => (&v[..v.len() - 1], 1 << 20),
        b'G' | b'g' => (&v[..v.len() - 1], 1 << 30),
        _ => (v, 1),
    };
    num.parse::<u64>().ok().map(|n| n * mult)
}

fn main() {
    if cfg!(feature = "c-malloc") {
        eprintln!(
            "compare: built with the feature c-malloc, whose allocator replaces the counting \
             one: DRAM figures would be wrong; build without it"
        );
        std::process::exit(2);
    }
    let mut pool: u64 = 256 << 20;
    let mut ops: u64 = 1_000_000;
    let mut dir = String::from("/dev/shm");
    for a in std::env::args().skip(1) {
        if let Some(v) = a.strip_prefix("pool=") {
            pool = parse_size(v).unwrap_or(pool);
        } else if let Some(v) = a.strip_prefix("ops=") {
            ops = parse_size(v).unwrap_or(ops);
        } else if let Some(v) = a.strip_prefix("dir=") {
            dir = v.to_string();
        }
    }
    let mean = (0..200_000u64)
        .map(|k| value_size(k * 7919 + 1) as f64)
        .sum::<f64>()
        / 200_000.0;
    let keys = (2.7 * pool as f64 / mean) as u64;
    let warm = (2.0 * pool as f64 / mean / 0.63) as u64;
    println!(
        "compare: pool {} MiB, {} keys, mean value {:.0} B, {} ops per run, warm-up {} ops",
        pool >> 20,
        keys,
        mean,
        ops,
        warm
    );

    // vmemcache
    let mut ours_total = 0i64;
    for threads in [1u64, 2] {
        let base = live();
        let cache = match Cache::builder()
            .size(pool as usize)
            .extent_size(256)
            .path(&dir)
            .build()
        {
            Ok(c) => c,
            Err(e) => {
                eprintln!("compare: vmemcache: {e}");
                std::process::exit(1);
            }
        };
        let r = run(&cache, threads, ops, keys, warm, threads);
        let dram = live() - base;
        let entries = cache.entries().max(1);
        ours_total = pool as i64 + dram as i64;
        println!(
            "RESULT impl=vmemcache threads={threads} mops={:.3} hit={:.4} entries={entries} \
             dram_bytes={dram} dram_per_entry={:.1} stat_dram_per_entry={:.1} total_bytes={ours_total}",
            r.mops,
            r.hit,
            dram as f64 / entries as f64,
            cache.stat(Stat::DramSizeUsed) as f64 / entries as f64,
        );
    }

    // quick_cache, same value budget, then equal total memory
    let mut capacity = pool;
    for label in ["same_budget", "equal_memory"] {
        for threads in [1u64, 2] {
            let base = live();
            let est = (pool as f64 / mean) as usize;
            let cache: Quick = Quick::with_weighter(est, capacity, Bytes);
            let r = run(&cache, threads, ops, keys, warm, threads);
            let dram = live() - base;
            let entries = cache.entries().max(1);
            let weight = cache.weight();
            println!(
                "RESULT impl=quick_cache memory={label} threads={threads} mops={:.3} hit={:.4} \
                 entries={entries} capacity={capacity} dram_bytes={dram} dram_per_entry={:.1} \
                 overhead_per_entry={:.1}",
                r.mops,
                r.hit,
                dram as f64 / entries as f64,
                (dram as f64 - weight as f64) / entries as f64 + KEY_SIZE as f64,
            );
            if label == "same_budget" && threads == 2 {
                // scale so that DRAM would equal vmemcache's pool + DRAM
                capacity = (capacity as f64 * ours_total as f64 / dram.max(1) as f64) as u64;
            }
        }
    }
}
