//! A two-level cache: a small, fast L1 whose evictions are demoted into a
//! larger L2, and whose misses are promoted back from it.
//!
//! Run with `cargo run --example two_level [directory]`; without a
//! directory both pools live in anonymous memory.

use std::sync::Arc;

use vmemcache::{Cache, CacheBuilder, Stat};

fn builder(size: usize, dir: Option<&str>) -> CacheBuilder {
    let b = CacheBuilder::new().size(size).extent_size(512);
    match dir {
        Some(d) => b.path(d),
        None => b.anonymous(),
    }
}

fn main() -> Result<(), vmemcache::Error> {
    let dir = std::env::args().nth(1);
    let l2: Arc<Cache> = Arc::new(builder(16 << 20, dir.as_deref()).build()?);

    let demote = l2.clone();
    let promote = l2.clone();
    let l1 = builder(2 << 20, dir.as_deref())
        // An entry leaving L1 is still readable here: copy it into L2.
        .on_evict(move |l1, key| {
            if let Some(value) = l1.get(key) {
                let _ = demote.put(key, &value);
            }
        })
        // A miss in L1 looks in L2; putting the value into L1 satisfies
        // the get that missed.
        .on_miss(move |l1, key| {
            if let Some(value) = promote.get(key) {
                let _ = promote.evict(key);
                let _ = l1.put(key, &value);
            }
        })
        .build()?;

    let value = |i: u32| format!("value number {i}, padded to make it longer").repeat(40);
    for i in 0..2000u32 {
        l1.put(format!("key{i}").as_bytes(), value(i).as_bytes())?;
    }
    let mut ok = 0;
    for i in 0..2000u32 {
        if l1.get(format!("key{i}").as_bytes()).as_deref() == Some(value(i).as_bytes()) {
            ok += 1;
        }
    }
    println!("read back {ok} of 2000 values through the two levels");
    for (name, cache) in [("L1", &l1), ("L2", &*l2)] {
        println!(
            "{name}: {} entries, {} hits, {} misses, {} evictions, {:.1} % of the pool in use",
            cache.stat(Stat::Entries),
            cache.stat(Stat::Hit),
            cache.stat(Stat::Miss),
            cache.stat(Stat::Evict),
            100.0 * cache.stat(Stat::PoolSizeUsed) as f64 / cache.pool_size() as f64
        );
    }
    assert_eq!(ok, 2000, "a value was lost between the levels");
    Ok(())
}
