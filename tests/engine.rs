//! Behaviour of the cache engine through the safe Rust API (SPEC §3–§10,
//! §12, with the decisions of §14).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use vmemcache::{BenchConfig, Cache, CacheBuilder, Error, Policy, Stat, MIN_POOL};

fn anon(size: usize, extent: usize, policy: Policy) -> Cache {
    CacheBuilder::new()
        .size(size)
        .extent_size(extent)
        .policy(policy)
        .anonymous()
        .build()
        .expect("cache")
}

fn small() -> Cache {
    anon(MIN_POOL, 256, Policy::Lru)
}

fn drain(cache: &Cache) -> usize {
    let mut n = 0;
    while cache.evict_lru().is_ok() {
        n += 1;
    }
    n
}

fn assert_empty(cache: &Cache) {
    if cfg!(feature = "stats") {
        assert_eq!(cache.stat(Stat::Entries), 0);
        assert_eq!(cache.stat(Stat::DramSizeUsed), 0);
        assert_eq!(cache.stat(Stat::PoolSizeUsed), 0);
        assert_eq!(cache.stat(Stat::HeapEntries), 1);
    }
    cache.validate().unwrap();
}

#[test]
fn configuration_is_validated_in_order() {
    let err = CacheBuilder::new().size(0).anonymous().build().unwrap_err();
    assert_eq!(err, Error::SizeTooSmall(0));
    assert_eq!(err.errno(), libc::EINVAL);
    assert_eq!(err.to_string(), "size 0 smaller than 1048576");
    let err = CacheBuilder::new()
        .size(1 << 56)
        .anonymous()
        .build()
        .unwrap_err();
    assert_eq!(err, Error::SizeTooLarge(1 << 56));
    let err = CacheBuilder::new()
        .extent_size(255)
        .anonymous()
        .build()
        .unwrap_err();
    assert_eq!(err, Error::ExtentTooSmall(255));
    let err = CacheBuilder::new()
        .size(MIN_POOL)
        .extent_size(2 * MIN_POOL)
        .anonymous()
        .build()
        .unwrap_err();
    assert_eq!(err.errno(), libc::EINVAL);
    assert_eq!(
        err.to_string(),
        "extent size 2097152 larger than cache size: 1048576 bytes"
    );
    let err = CacheBuilder::new().build().unwrap_err();
    assert_eq!(err, Error::NullPath);
    assert_eq!(err.to_string(), "invalid (NULL) path");
}

#[test]
fn defaults_and_size_rounding() {
    let cache = CacheBuilder::new().anonymous().build().unwrap();
    assert_eq!(cache.pool_size(), MIN_POOL);
    assert_eq!(cache.extent_size(), 256);
    let cache = CacheBuilder::new()
        .size(MIN_POOL + 1)
        .anonymous()
        .build()
        .unwrap();
    assert_eq!(cache.pool_size(), MIN_POOL + 4096);
}

#[test]
fn failed_creation_can_be_retried() {
    let dir = std::env::temp_dir().join(format!("vmemcache-retry-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let file = dir.with_extension("file");
    std::fs::write(&file, b"x").unwrap();
    let err = CacheBuilder::new().path(&file).build().unwrap_err();
    assert_eq!(err.errno(), libc::ENOTDIR);
    assert_eq!(err.to_string(), "open: Not a directory");
    let err = CacheBuilder::new().path(&dir).build().unwrap_err();
    assert_eq!(err.errno(), libc::ENOENT);
    assert_eq!(err.to_string(), "open: No such file or directory");
    std::fs::create_dir(&dir).unwrap();
    let cache = CacheBuilder::new().path(&dir).build().unwrap();
    cache.put(b"k", b"v").unwrap();
    assert_eq!(cache.get(b"k").unwrap(), b"v");
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        0,
        "pool file is invisible"
    );
    drop(cache);
    std::fs::remove_dir(&dir).unwrap();
    std::fs::remove_file(&file).unwrap();
}

#[test]
fn offset_and_length_table() {
    let cache = small();
    let value: Vec<u8> = (0..32u8).collect();
    cache.put(b"k", &value).unwrap();
    let table: &[(usize, &[(usize, usize)])] = &[
        (32, &[(0, 32), (2, 30), (31, 1), (32, 0), (33, 0)]),
        (64, &[(0, 32), (4, 28), (31, 1), (32, 0), (33, 0)]),
        (
            16,
            &[(0, 16), (2, 16), (16, 16), (18, 14), (32, 0), (33, 0)],
        ),
    ];
    for (bufsize, rows) in table {
        for &(offset, expect) in rows.iter() {
            let mut buf = vec![0xAAu8; *bufsize];
            let found = cache.get_into(b"k", offset, &mut buf).unwrap();
            assert_eq!(found.copied, expect, "bufsize {bufsize} offset {offset}");
            assert_eq!(found.size, 32);
            assert_eq!(
                &buf[..expect],
                value.get(offset..offset + expect).unwrap_or(&[])
            );
            assert!(buf[expect..].iter().all(|&b| b == 0xAA));
        }
    }
    let found = cache.get_into(b"k", 0, &mut []).unwrap();
    assert_eq!((found.copied, found.size), (0, 32));
}

#[test]
fn zero_length_values_and_keys() {
    let cache = anon(MIN_POOL, 256, Policy::None);
    cache.put(b"", b"empty key").unwrap();
    cache.put(b"empty value", b"").unwrap();
    assert_eq!(cache.get(b"").unwrap(), b"empty key");
    assert_eq!(cache.get(b"empty value").unwrap(), b"");
    assert_eq!(cache.exists(b"empty value"), Some(0));
    if cfg!(feature = "stats") {
        // Only the 9-byte value takes pool space.
        assert_eq!(cache.stat(Stat::PoolSizeUsed), 256);
    }
    // Zero-length values never need room: many fit in a full pool.
    let big = vec![7u8; cache.max_value_size()];
    cache.put(b"big", &big).unwrap_err();
    cache.evict(b"").unwrap();
    cache.put(b"big", &big).unwrap();
    for i in 0..1000u32 {
        cache.put(&i.to_le_bytes(), b"").unwrap();
    }
    assert_eq!(cache.get(b"big").unwrap(), big);
}

#[test]
fn duplicate_key_fails_without_eviction() {
    let cache = small();
    let v = vec![1u8; 200 * 1024];
    for i in 0..5u8 {
        cache.put(&[i], &v).unwrap();
    }
    let err = cache.put(&[0], &v).unwrap_err();
    assert_eq!(err, Error::KeyExists);
    assert_eq!(err.errno(), libc::EEXIST);
    assert_eq!(err.to_string(), "inserting to the index failed");
    for i in 0..5u8 {
        assert!(cache.exists(&[i]).is_some(), "entry {i} survived");
    }
    // With room for the new value, which is then copied before the key is
    // found: the stored value and the statistics stay as they were.
    cache.evict(&[4]).unwrap();
    let stats =
        |c: &Cache| [Stat::PoolSizeUsed, Stat::HeapEntries, Stat::Entries].map(|s| c.stat(s));
    let before = stats(&cache);
    let err = cache.put(&[1], &vec![2u8; 1000]).unwrap_err();
    assert_eq!(err, Error::KeyExists);
    assert_eq!(stats(&cache), before);
    assert_eq!(cache.get(&[1]).unwrap(), v);
    cache.put(&[9], &vec![3u8; 1000]).unwrap();
    assert_eq!(cache.get(&[9]).unwrap(), vec![3u8; 1000]);
    cache.validate().unwrap();
}

#[test]
fn value_that_can_never_fit_evicts_nothing() {
    let cache = small();
    cache.put(b"a", b"1").unwrap();
    let err = cache.put(b"huge", &vec![0u8; MIN_POOL + 1]).unwrap_err();
    assert_eq!(err, Error::ValueTooLarge);
    assert_eq!(err.errno(), libc::ENOSPC);
    assert_eq!(err.to_string(), "value larger than entire cache");
    let too_big = vec![0u8; cache.max_value_size() + 1];
    assert_eq!(
        cache.put(b"huge", &too_big).unwrap_err(),
        Error::ValueTooLarge
    );
    assert!(cache.exists(b"a").is_some());
    // The largest value does fit (evicting what is there).
    let largest = vec![3u8; cache.max_value_size()];
    cache.put(b"largest", &largest).unwrap();
    assert_eq!(cache.get(b"largest").unwrap(), largest);
    assert!(cache.exists(b"a").is_none());
    if cfg!(feature = "stats") {
        assert_eq!(cache.stat(Stat::HeapEntries), 0);
    }
}

#[test]
fn capacity_arithmetic() {
    // SPEC §12 item 1.
    let half = vec![5u8; 512 * 1024];
    for (size, expect) in [(MIN_POOL, 1), (10 * MIN_POOL, 19)] {
        let cache = anon(size, 256, Policy::None);
        let mut n = 0;
        while cache.put(&(n as u32).to_le_bytes(), &half).is_ok() {
            n += 1;
        }
        assert_eq!(n, expect, "pool of {size} bytes");
        let evictions = Arc::new(AtomicUsize::new(0));
        let counter = evictions.clone();
        let cache = CacheBuilder::new()
            .size(size)
            .anonymous()
            .on_evict(move |_, _| {
                counter.fetch_add(1, Ordering::Relaxed);
            })
            .build()
            .unwrap();
        for i in 0..expect + 1 {
            cache.put(&(i as u32).to_le_bytes(), &half).unwrap();
        }
        assert_eq!(evictions.load(Ordering::Relaxed), 1);
    }
    // At least the original's capacity for small values.
    let cache = anon(MIN_POOL, 256, Policy::None);
    let mut n = 0u32;
    while cache.put(&n.to_le_bytes(), &[1u8; 32]).is_ok() {
        n += 1;
    }
    assert!(n >= 4064, "{n} values of 32 bytes");
    let cache = anon(MIN_POOL, 256, Policy::None);
    let mut n = 0u32;
    while cache.put(&n.to_le_bytes(), &[1u8; 1000]).is_ok() {
        n += 1;
    }
    assert!(n >= 812, "{n} values of 1000 bytes");
}

#[test]
fn extent_larger_than_the_default_pool_holds_one_entry() {
    let cache = CacheBuilder::new()
        .extent_size(2 * MIN_POOL)
        .anonymous()
        .build()
        .unwrap();
    cache.put(b"a", b"x").unwrap();
    cache.put(b"b", b"y").unwrap();
    assert!(cache.exists(b"a").is_none());
    assert!(cache.exists(b"b").is_some());
    assert!(cache.stat(Stat::PoolSizeUsed) <= MIN_POOL as u64);
}

#[test]
fn utilisation_stays_high_under_eviction() {
    // SPEC §12 item 2: values of {1..70} × 256 bytes under decimal keys.
    let cache = small();
    let mut rng = 0x2545F4914F6CDD1Du64;
    let mut evicted = false;
    let mut min_ratio = 1.0f64;
    let counter = Arc::new(AtomicUsize::new(0));
    let c2 = counter.clone();
    let mut cache = cache;
    cache.set_on_evict(Some(Box::new(move |_, _| {
        c2.fetch_add(1, Ordering::Relaxed);
    })));
    for i in 0..20000u32 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let len = 256 * (1 + (rng % 70) as usize);
        cache
            .put(i.to_string().as_bytes(), &vec![1u8; len])
            .unwrap();
        if counter.load(Ordering::Relaxed) > 0 {
            evicted = true;
        }
        if evicted && cfg!(feature = "stats") {
            let ratio = cache.stat(Stat::PoolSizeUsed) as f64 / cache.pool_size() as f64;
            min_ratio = min_ratio.min(ratio);
        }
    }
    assert!(evicted);
    if cfg!(feature = "stats") {
        eprintln!("minimum utilisation after the first eviction: {min_ratio:.4}");
        assert!(min_ratio >= 0.87, "utilisation fell to {min_ratio}");
    }
    cache.validate().unwrap();
}

#[test]
fn draining_empties_and_coalesces() {
    // SPEC §12 item 5.
    let cache = small();
    for i in 0..100u32 {
        let v = vec![i as u8; 100 + 97 * i as usize];
        cache.put(&i.to_le_bytes(), &v).unwrap();
    }
    for i in (0..100u32).step_by(3) {
        cache.get(&i.to_le_bytes()).unwrap();
    }
    assert_eq!(drain(&cache), 100);
    assert_eq!(cache.evict_lru().unwrap_err(), Error::NoVictim);
    assert_empty(&cache);
}

#[test]
fn space_that_other_threads_kept_is_found_when_nothing_is_left_to_evict() {
    // A put that evicts a larger victim keeps the rest of its extents for
    // its thread's next puts. Once everything is evicted, a value as large
    // as the pool holds must still fit, whichever threads kept what.
    let cache = Arc::new(anon(64 << 20, 256, Policy::Lru));
    // 64 Mi / 1 Ki values fill the pool; some more evict.
    let key = 70_000u64;
    for k in 0..key {
        cache.put(&k.to_le_bytes(), &[1u8; 1024]).unwrap();
    }
    if cfg!(feature = "stats") {
        assert!(cache.stat(Stat::Evict) > 0);
    }
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            let cache = Arc::clone(&cache);
            let key = key + t;
            std::thread::spawn(move || cache.put(&key.to_le_bytes(), &[2u8; 256]).unwrap())
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert!(drain(&cache) > 0);
    if cfg!(feature = "stats") {
        // Kept extents are free for the statistics too.
        assert_eq!(cache.stat(Stat::Entries), 0);
        assert_eq!(cache.stat(Stat::PoolSizeUsed), 0);
    }
    let largest = vec![3u8; cache.max_value_size()];
    cache.put(b"largest", &largest).unwrap();
    assert_eq!(cache.get(b"largest").unwrap(), largest);
    assert_eq!(drain(&cache), 1);
    assert_empty(&cache);
}

#[test]
fn recency_order() {
    // SPEC §12 item 6.
    let evicted = Arc::new(Mutex::new(Vec::new()));
    let log = evicted.clone();
    let cache = CacheBuilder::new()
        .anonymous()
        .on_evict(move |_, key| log.lock().unwrap().push(key.to_vec()))
        .build()
        .unwrap();
    for i in 0..10u8 {
        cache.put(&[i], &[i; 10]).unwrap();
    }
    cache.evict(&[5]).unwrap();
    cache.evict_lru().unwrap();
    assert_eq!(evicted.lock().unwrap().last().unwrap(), &vec![0u8]);
    cache.get(&[1]).unwrap();
    cache.evict_lru().unwrap();
    assert_eq!(evicted.lock().unwrap().last().unwrap(), &vec![2u8]);
}

#[test]
fn a_put_evicts_the_oldest_entries_it_needs_and_no_more() {
    // A put that needs several victims takes them from the head of the
    // list in one go (without an `on_evict` callback): the same ones, in
    // the same order, as one eviction after another would.
    let cache = small();
    let extents = cache.max_value_size() / 256;
    for i in 0..extents as u32 {
        cache.put(&i.to_le_bytes(), &[i as u8; 256]).unwrap();
    }
    let present = |i: u32| cache.exists(&i.to_le_bytes()).is_some();
    assert!((0..extents as u32).all(present), "the pool holds them all");
    let big = 1_000_000u32;
    cache.put(&big.to_le_bytes(), &[7; 4 * 256]).unwrap();
    assert_eq!(
        (0..6).map(present).collect::<Vec<_>>(),
        [false, false, false, false, true, true]
    );
    // Nine extents: more victims than one batch takes, and an entry in use
    // at the head (5), which moves behind the others.
    cache.get(&5u32.to_le_bytes()).unwrap();
    cache
        .put(&(big + 1).to_le_bytes(), &[8; 8 * 256 + 1])
        .unwrap();
    let gone: Vec<u32> = (0..extents as u32).filter(|&i| !present(i)).collect();
    assert_eq!(gone, [0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 12, 13]);
    if cfg!(feature = "stats") {
        assert_eq!(cache.stat(Stat::Evict), 13);
        assert_eq!(
            cache.stat(Stat::PoolSizeUsed),
            cache.max_value_size() as u64
        );
    }
    assert_eq!(
        cache.get(&(big + 1).to_le_bytes()).unwrap(),
        vec![8; 8 * 256 + 1]
    );
    assert_eq!(cache.get(&big.to_le_bytes()).unwrap(), vec![7; 4 * 256]);
    cache.validate().unwrap();
    drain(&cache);
    assert_empty(&cache);
}

#[test]
fn puts_of_threads_in_turn_evict_ahead_and_lose_nothing() {
    // A put that evicts right after another thread's put did takes, if its
    // own thread evicted recently, victims ahead of its need (SPEC §4:
    // under concurrency a put may evict more than necessary) and keeps
    // their extents for its next puts. A thread evicting alone, or taking
    // over, takes only what it needs.
    let cache = small();
    let extents = cache.max_value_size() / 256;
    let n = extents as u32;
    for i in 0..n {
        cache.put(&i.to_le_bytes(), &[i as u8; 256]).unwrap();
    }
    let present = |i: u32| cache.exists(&i.to_le_bytes()).is_some();
    let gone = || (0..n).filter(|&i| !present(i)).collect::<Vec<u32>>();
    cache.put(&n.to_le_bytes(), &[1; 256]).unwrap();
    assert_eq!(gone(), [0], "alone: exactly what the put needs");
    std::thread::scope(|s| {
        s.spawn(|| cache.put(&(n + 1).to_le_bytes(), &[2; 256]).unwrap());
    });
    assert_eq!(gone(), [0, 1], "a new thread takes over: exactly");
    cache.put(&(n + 2).to_le_bytes(), &[3; 256]).unwrap();
    let ahead = gone();
    assert!(ahead.len() > 3, "{ahead:?}");
    assert_eq!(
        ahead,
        (0..ahead.len() as u32).collect::<Vec<_>>(),
        "LRU order"
    );
    let evictions = cache.stat(Stat::Evict);
    // The next puts of this thread need no eviction: the extents ahead
    // were kept for them, and count as free meanwhile.
    if cfg!(feature = "stats") {
        assert_eq!(evictions, ahead.len() as u64);
        let entries = u64::from(n) + 3 - evictions;
        assert_eq!(cache.stat(Stat::Entries), entries);
        assert_eq!(cache.stat(Stat::PoolSizeUsed), entries * 256);
    }
    cache.put(&(n + 3).to_le_bytes(), &[4; 256]).unwrap();
    assert_eq!(cache.stat(Stat::Evict), evictions);
    assert_eq!(gone(), ahead);
    for i in ahead.len() as u32..n {
        assert_eq!(cache.get(&i.to_le_bytes()).unwrap(), vec![i as u8; 256]);
    }
    for (k, v) in [(n, 1), (n + 1, 2), (n + 2, 3), (n + 3, 4)] {
        assert_eq!(cache.get(&k.to_le_bytes()).unwrap(), vec![v; 256]);
    }
    cache.validate().unwrap();
    drain(&cache);
    assert_empty(&cache);
}

#[test]
fn approximate_lru_orders_by_first_use() {
    let evicted = Arc::new(Mutex::new(Vec::new()));
    let log = evicted.clone();
    let cache = CacheBuilder::new()
        .anonymous()
        .on_evict(move |_, key| log.lock().unwrap().push(key.to_vec()))
        .build()
        .unwrap();
    for k in [b"A", b"B", b"C"] {
        cache.put(k, b"v").unwrap();
    }
    for k in [b"A", b"B", b"A"] {
        cache.get(k).unwrap();
    }
    for _ in 0..3 {
        cache.evict_lru().unwrap();
    }
    assert_eq!(
        *evicted.lock().unwrap(),
        vec![b"C".to_vec(), b"A".to_vec(), b"B".to_vec()]
    );
}

#[test]
fn evict_errors() {
    let cache = small();
    let err = cache.evict(b"nope").unwrap_err();
    assert_eq!(err, Error::KeyNotFound);
    assert_eq!(err.errno(), libc::ENOENT);
    assert_eq!(
        err.to_string(),
        "vmemcache_evict: cannot find an element with the given key"
    );
    let err = cache.evict_lru().unwrap_err();
    assert_eq!(err.errno(), libc::ESRCH);
    assert_eq!(err.to_string(), "no element to evict");
}

#[test]
fn policy_none_never_evicts() {
    let cache = anon(MIN_POOL, 256, Policy::None);
    let v = vec![9u8; 100 * 1024];
    let mut n = 0u32;
    let err = loop {
        match cache.put(&n.to_le_bytes(), &v) {
            Ok(()) => n += 1,
            Err(e) => break e,
        }
    };
    assert_eq!(err, Error::NoSpace);
    assert_eq!(err.errno(), libc::ENOSPC);
    assert_eq!(err.to_string(), "no element to evict");
    assert_eq!(cache.evict_lru().unwrap_err().errno(), libc::ESRCH);
    for i in 0..n {
        assert_eq!(cache.get(&i.to_le_bytes()).unwrap(), v);
        cache.evict(&i.to_le_bytes()).unwrap();
    }
    assert_empty(&cache);
    if cfg!(feature = "stats") {
        // No DRAM per entry for the policy: an 8-byte key's record is 40.
        cache.put(b"12345678", b"x").unwrap();
        assert!(cache.stat(Stat::DramSizeUsed) <= 40 + 24);
    }
}

#[test]
fn statistics_after_a_known_sequence() {
    if !cfg!(feature = "stats") {
        let cache = small();
        cache.put(b"k", b"v").unwrap();
        for s in Stat::ALL {
            assert_eq!(cache.stat(s), 0);
        }
        return;
    }
    let cache = small();
    for i in 0..10u8 {
        cache.put(&[i], &[i; 50]).unwrap();
    }
    for i in 0..11u8 {
        let _ = cache.get(&[i % 10]);
    }
    assert!(cache.get(b"missing-1").is_none());
    assert!(cache.get(b"missing-2").is_none());
    assert!(cache.exists(&[0]).is_some());
    assert_eq!(cache.stat(Stat::Put), 10);
    assert_eq!(cache.stat(Stat::Get), 13);
    assert_eq!(cache.stat(Stat::Hit), 11);
    assert_eq!(cache.stat(Stat::Miss), 2);
    assert_eq!(cache.stat(Stat::Entries), 10);
    assert_eq!(cache.stat(Stat::PoolSizeUsed), 10 * 256);
    assert!(cache.stat(Stat::DramSizeUsed) > 0);
    assert_eq!(drain(&cache), 10);
    assert_eq!(cache.stat(Stat::Evict), 10);
    assert_empty(&cache);
}

#[test]
fn one_entry_statistics() {
    if !cfg!(feature = "stats") {
        return;
    }
    let cache = small();
    cache.put(b"abcd", b"12345678").unwrap();
    assert_eq!(cache.stat(Stat::PoolSizeUsed), 256);
    assert_eq!(cache.stat(Stat::HeapEntries), 1);
    assert_eq!(cache.stat(Stat::Entries), 1);
    let dram = cache.stat(Stat::DramSizeUsed);
    assert!(dram > 0 && dram <= 88, "DRAM of one entry: {dram}");
}

#[test]
fn on_miss_put_satisfies_the_get() {
    let cache = CacheBuilder::new()
        .anonymous()
        .on_miss(|cache, key| {
            let _ = cache.put(key, b"0123456789");
        })
        .build()
        .unwrap();
    let mut buf = [0u8; 4];
    let found = cache.get_into(b"k", 3, &mut buf).unwrap();
    // Copied from the requested offset (our fix of the original's bug).
    assert_eq!(found.copied, 4);
    assert_eq!(found.size, 10);
    assert_eq!(&buf, b"3456");
    // The put went in: now a hit.
    let found = cache.get_into(b"k", 3, &mut buf).unwrap();
    assert_eq!((found.copied, &buf), (4, b"3456"));
    assert_eq!(cache.get(b"other").unwrap(), b"0123456789");
    if cfg!(feature = "stats") {
        assert_eq!(cache.stat(Stat::Miss), 2);
        assert_eq!(cache.stat(Stat::Hit), 1);
        assert_eq!(cache.stat(Stat::Put), 2);
    }
}

#[test]
fn on_miss_satisfies_even_when_the_value_does_not_fit() {
    let cache = CacheBuilder::new()
        .anonymous()
        .on_miss(|cache, key| {
            let value: Vec<u8> = (0..3 * MIN_POOL).map(|i| i as u8).collect();
            assert_eq!(cache.put(key, &value).unwrap_err(), Error::ValueTooLarge);
        })
        .build()
        .unwrap();
    let mut buf = [0u8; 8];
    let found = cache.get_into(b"big", 5, &mut buf).unwrap();
    assert_eq!(found.copied, 8);
    assert_eq!(found.size, 3 * MIN_POOL);
    assert_eq!(buf, [5, 6, 7, 8, 9, 10, 11, 12]);
    assert!(cache.exists(b"big").is_none());
    let v = cache.get(b"big").unwrap();
    assert_eq!(v.len(), 3 * MIN_POOL);
}

#[test]
fn on_miss_without_a_put_is_a_miss() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let cache = CacheBuilder::new()
        .anonymous()
        .on_miss(move |cache, _| {
            c.fetch_add(1, Ordering::Relaxed);
            let _ = cache.put(b"some other key", b"x");
        })
        .build()
        .unwrap();
    let mut buf = [0u8; 4];
    assert_eq!(cache.get_into(b"k", 0, &mut buf).unwrap_err(), Error::Miss);
    assert_eq!(calls.load(Ordering::Relaxed), 1);
    assert_eq!(Error::Miss.errno(), libc::ENOENT);
}

#[test]
fn nested_misses_keep_their_own_requests() {
    // The outer get misses "outer"; its callback does a get of "inner" that
    // misses too; the inner callback puts "inner" only. The outer get must
    // not be taken as satisfied, and a later put of "outer" inside the
    // outer callback satisfies it.
    let c = CacheBuilder::new()
        .anonymous()
        .on_miss(|cache, key| {
            if key == b"outer" {
                let mut buf = [0u8; 3];
                let found = cache.get_into(b"inner", 0, &mut buf).unwrap();
                assert_eq!((found.copied, &buf), (3, b"INN"));
                // Nothing has satisfied the outer request yet: put it now.
                cache.put(b"outer", b"OUTER").unwrap();
            } else if key == b"inner" {
                cache.put(b"inner", b"INNER").unwrap();
            }
        })
        .build()
        .unwrap();
    let mut buf = [0u8; 16];
    let found = c.get_into(b"outer", 0, &mut buf).unwrap();
    assert_eq!(found.copied, 5);
    assert_eq!(&buf[..5], b"OUTER");
}

#[test]
fn put_into_another_cache_satisfies_too() {
    let other = Arc::new(CacheBuilder::new().anonymous().build().unwrap());
    let o = other.clone();
    let cache = CacheBuilder::new()
        .anonymous()
        .on_miss(move |_, key| o.put(key, b"from L2").unwrap())
        .build()
        .unwrap();
    assert_eq!(cache.get(b"k").unwrap(), b"from L2");
    assert!(cache.exists(b"k").is_none());
    assert!(other.exists(b"k").is_some());
}

#[test]
fn on_evict_sees_a_readable_entry_and_may_reenter() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let cache = CacheBuilder::new()
        .anonymous()
        .on_evict(move |cache, key| {
            // Still readable, and a hit.
            let value = cache.get(key).expect("readable during on_evict");
            // Evicting it again is a no-op that succeeds.
            cache.evict(key).unwrap();
            // A put of the same key fails: it is still indexed.
            assert_eq!(cache.put(key, b"again").unwrap_err(), Error::KeyExists);
            s.lock().unwrap().push((key.to_vec(), value));
        })
        .build()
        .unwrap();
    cache.put(b"a", b"value a").unwrap();
    cache.put(b"b", b"value b").unwrap();
    cache.evict(b"a").unwrap();
    cache.evict_lru().unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        vec![
            (b"a".to_vec(), b"value a".to_vec()),
            (b"b".to_vec(), b"value b".to_vec())
        ]
    );
    assert!(cache.exists(b"a").is_none() && cache.exists(b"b").is_none());
    if cfg!(feature = "stats") {
        assert_eq!(cache.stat(Stat::Hit), 2);
        assert_eq!(cache.stat(Stat::Evict), 2);
    }
    assert_empty(&cache);
}

#[test]
fn puts_inside_on_evict_recurse_500_levels() {
    // SPEC §12 item 9: an eviction's callback puts another value (128 B to
    // 64 KiB), which finds the pool full and evicts again, whose callback
    // puts again: 500 puts nested inside one another. Each level holds its
    // victim until its callback returns, so the pool is filled with small
    // values first (500 victims must fit in it together); every value,
    // the big ones included, is checked afterwards.
    const PUTS: usize = 500;
    let depth = Arc::new(AtomicUsize::new(0));
    let max_depth = Arc::new(AtomicUsize::new(0));
    let puts = Arc::new(AtomicUsize::new(0));
    let (d, m, p) = (depth.clone(), max_depth.clone(), puts.clone());
    let value_of = |key: usize| vec![(key % 251) as u8; 128 + (key * 7919) % (64 * 1024 - 128)];
    let handle = std::thread::Builder::new()
        // The stack a C program's main thread gets by default.
        .stack_size(8 << 20)
        .spawn(move || {
            let nested = p.clone();
            let cache = CacheBuilder::new()
                .anonymous()
                .on_evict(move |cache, _| {
                    let level = d.fetch_add(1, Ordering::SeqCst) + 1;
                    m.fetch_max(level, Ordering::SeqCst);
                    let n = p.fetch_add(1, Ordering::SeqCst);
                    if n < PUTS {
                        let key = 1_000_000 + n;
                        cache.put(&key.to_le_bytes(), &value_of(key)).unwrap();
                    }
                    d.fetch_sub(1, Ordering::SeqCst);
                })
                .build()
                .unwrap();
            let mut i = 0usize;
            while nested.load(Ordering::SeqCst) < PUTS {
                cache
                    .put(&i.to_le_bytes(), &[(i % 251) as u8; 128])
                    .unwrap();
                i += 1;
                assert!(i < 10_000, "no eviction happened");
            }
            for n in 0..PUTS {
                let key = 1_000_000 + n;
                if let Some(v) = cache.get(&key.to_le_bytes()) {
                    assert_eq!(v, value_of(key));
                }
            }
            cache.validate().unwrap();
            drain(&cache);
            assert_empty(&cache);
        })
        .unwrap();
    handle.join().unwrap();
    assert!(
        max_depth.load(Ordering::SeqCst) > PUTS,
        "callbacks nested {} deep",
        max_depth.load(Ordering::SeqCst)
    );
}

#[test]
fn bench_index_only() {
    let cache = small();
    cache.bench_set(BenchConfig::IndexOnly, 1);
    cache.put(b"k", &[1u8; 1000]).unwrap();
    let mut buf = [0u8; 8];
    let found = cache.get_into(b"k", 0, &mut buf).unwrap();
    assert_eq!(found.copied, 0);
    assert_eq!(cache.exists(b"k"), Some(0));
    assert_eq!(cache.stat(Stat::PoolSizeUsed), 0);
    cache.bench_set(BenchConfig::IndexOnly, 0);
    // Not registered with LRU: never an LRU victim; by key it is busy (or
    // the list is empty) after on_evict ran.
    assert_eq!(cache.evict_lru().unwrap_err().errno(), libc::ESRCH);
    assert_eq!(cache.evict(b"k").unwrap_err(), Error::LruEmpty);
    cache.put(b"other", b"x").unwrap();
    assert_eq!(cache.evict(b"k").unwrap_err(), Error::Busy);
    // Under NONE it can be evicted by key, safely.
    let none = anon(MIN_POOL, 256, Policy::None);
    none.bench_set(BenchConfig::IndexOnly, 1);
    none.put(b"k", b"v").unwrap();
    none.evict(b"k").unwrap();
    assert!(none.exists(b"k").is_none());
}

#[test]
fn bench_no_alloc_and_no_memcpy() {
    let cache = small();
    cache.bench_set(BenchConfig::NoAlloc, 1);
    for i in 0..10_000u32 {
        cache.put(&i.to_le_bytes(), &[0u8; 4096]).unwrap();
    }
    assert_eq!(cache.stat(Stat::PoolSizeUsed), 0);
    let mut buf = [7u8; 16];
    let found = cache.get_into(&5u32.to_le_bytes(), 0, &mut buf).unwrap();
    assert_eq!((found.copied, found.size), (16, 4096));
    assert_eq!(buf, [7u8; 16], "nothing stored, nothing copied");
    cache.bench_set(BenchConfig::NoAlloc, 0);
    // NO_ALLOC entries are evictable by LRU.
    assert!(drain(&cache) >= 10_000);
    cache.bench_set(BenchConfig::NoMemcpy, 1);
    cache.put(b"k", &[1u8; 600]).unwrap();
    if cfg!(feature = "stats") {
        assert_eq!(cache.stat(Stat::PoolSizeUsed), 768);
    }
    let found = cache.get_into(b"k", 100, &mut buf).unwrap();
    assert_eq!((found.copied, found.size), (16, 600));
    assert_eq!(buf, [7u8; 16]);
    cache.bench_set(BenchConfig::NoMemcpy, 0);
    cache.bench_set(BenchConfig::Prefault, 0);
    drain(&cache);
    assert_empty(&cache);
}

/// A value that encodes its key and length: every byte is checkable.
fn make_value(key: u64, len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len);
    let mut x = key.wrapping_mul(0x9E3779B97F4A7C15) ^ len as u64;
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes()[..(len - v.len()).min(8)]);
    }
    v
}

#[test]
fn many_threads_on_a_full_cache() {
    // SPEC §12 item 7, with self-checking values.
    let cache = Arc::new(
        CacheBuilder::new()
            .size(2 * MIN_POOL)
            .anonymous()
            .on_miss(|cache, key| {
                let k = u64::from_le_bytes(key.try_into().unwrap());
                let _ = cache.put(key, &make_value(k, (k as usize * 37) % 9000));
            })
            .build()
            .unwrap(),
    );
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let cache = cache.clone();
            std::thread::spawn(move || {
                let mut rng = 0x9E3779B97F4A7C15u64 ^ (t + 1);
                let mut buf = vec![0u8; 9000];
                for _ in 0..20_000 {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    let k = rng % 2000;
                    let key = k.to_le_bytes();
                    let len = (k as usize * 37) % 9000;
                    match rng >> 60 {
                        0..=9 => match cache.get_into(&key, 0, &mut buf) {
                            Ok(found) => {
                                assert_eq!(found.size, len);
                                assert_eq!(found.copied, len);
                                assert_eq!(&buf[..len], &make_value(k, len)[..]);
                            }
                            Err(e) => assert_eq!(e, Error::Miss),
                        },
                        10..=12 => match cache.put(&key, &make_value(k, len)) {
                            Ok(()) | Err(Error::KeyExists) => {}
                            Err(e) => panic!("put: {e}"),
                        },
                        13 => match cache.evict(&key) {
                            Ok(())
                            | Err(Error::KeyNotFound)
                            | Err(Error::Busy)
                            | Err(Error::LruEmpty) => {}
                            Err(e) => panic!("evict: {e}"),
                        },
                        14 => match cache.evict_lru() {
                            Ok(()) | Err(Error::NoVictim) => {}
                            Err(e) => panic!("evict_lru: {e}"),
                        },
                        _ => {
                            if let Some(size) = cache.exists(&key) {
                                assert_eq!(size, len);
                            }
                        }
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    cache.validate().unwrap();
    drain(&cache);
    assert_empty(&cache);
}
