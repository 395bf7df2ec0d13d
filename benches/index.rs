//! The B+tree on its own (`sharddb::index`), with the standard library's in-memory `BTreeSet`
//! measured in the same run as the reference: what paging (8 KiB pages behind a bounded
//! buffer pool, checksums, checkpoints) costs over a pointer-based tree that never leaves
//! memory. The end-to-end comparison with PostgreSQL's btree is `tools/index_bench.sh`.
//!
//! Run: `cargo bench --bench index`. Ids are `index/<workload>/<tree>`, tree `sharddb` or
//! `btreeset`.
//!
//! Environment: `SHARDDB_BENCH_KEYS` (default 1,000,000) keys of 18 bytes (two memcomparable
//! bigints, as an index entry `v ‖ id` is); `SHARDDB_BENCH_DIR` for the scratch files.
//!
//! Workloads:
//! - `bulk_load`: build a tree of N sorted keys (sharddb: bottom-up bulk load, written and
//!   fsynced; btreeset: collect from the sorted iterator).
//! - `lookup`: 100,000 point lookups of random present keys in the N-key tree, the pool sized
//!   at a quarter of the tree so leaves are evicted and read back (from the OS page cache).
//! - `range100`: 10,000 scans of 100 keys from random starting keys.
//! - `insert`: 100,000 random new keys into the N-key tree, checkpointing whenever half the
//!   pool is dirty (as a shard does), so the time includes page writes and their fsyncs.

use criterion::{Criterion, criterion_group, criterion_main};
use sharddb::index::{BTree, BufferPool};
use std::collections::BTreeSet;
use std::ops::Bound;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

const PAGE: usize = 8192;

fn keys() -> usize {
    std::env::var("SHARDDB_BENCH_KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

/// The i-th key: two sign-flipped big-endian 8-byte integers with tags, like an index entry.
fn key(i: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(18);
    k.push(1);
    k.extend_from_slice(&((i * 2) ^ (1 << 63)).to_be_bytes());
    k.push(1);
    k.extend_from_slice(&(i ^ (1 << 63)).to_be_bytes());
    k
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn scratch() -> tempfile::TempDir {
    match std::env::var("SHARDDB_BENCH_DIR") {
        Ok(d) => tempfile::tempdir_in(d).unwrap(),
        Err(_) => tempfile::tempdir().unwrap(),
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    path: PathBuf,
    pool: Arc<BufferPool>,
    tree: BTree,
    set: BTreeSet<Vec<u8>>,
}

fn fixture(n: usize) -> Fixture {
    let dir = scratch();
    let path = dir.path().join("bench.btree");
    // A quarter of the tree: 18-byte keys at ~90% fill are about 20 bytes each.
    let tree_bytes = n * 20 * 10 / 9;
    let pool = BufferPool::new((tree_bytes / 4).max(PAGE * 16), PAGE);
    let tree =
        BTree::bulk_load(&path, &pool, b"bench", 0, (0..n as u64).map(|i| Ok(key(i)))).unwrap();
    let set = (0..n as u64).map(key).collect();
    Fixture {
        _dir: dir,
        path,
        pool,
        tree,
        set,
    }
}

fn bench(c: &mut Criterion) {
    let n = keys();
    let mut g = c.benchmark_group("index");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_millis(500))
        .sampling_mode(criterion::SamplingMode::Flat);

    g.bench_function("bulk_load/sharddb", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let dir = scratch();
                let pool = BufferPool::new(64 << 20, PAGE);
                let t0 = std::time::Instant::now();
                let t = BTree::bulk_load(
                    &dir.path().join("b.btree"),
                    &pool,
                    b"bench",
                    0,
                    (0..n as u64).map(|i| Ok(key(i))),
                )
                .unwrap();
                total += t0.elapsed();
                drop(t);
            }
            total
        })
    });
    g.bench_function("bulk_load/btreeset", |b| {
        b.iter(|| (0..n as u64).map(key).collect::<BTreeSet<_>>())
    });

    let f = fixture(n);
    let lookups: Vec<Vec<u8>> = (0..100_000u64)
        .map(|i| key(splitmix(i) % n as u64))
        .collect();
    g.bench_function("lookup/sharddb", |b| {
        b.iter(|| {
            for k in &lookups {
                assert!(f.tree.contains(k).unwrap());
            }
        })
    });
    g.bench_function("lookup/btreeset", |b| {
        b.iter(|| {
            for k in &lookups {
                assert!(f.set.contains(k));
            }
        })
    });
    let starts: Vec<Vec<u8>> = (0..10_000u64)
        .map(|i| key(splitmix(i + 7) % n as u64))
        .collect();
    g.bench_function("range100/sharddb", |b| {
        b.iter(|| {
            for s in &starts {
                let got = f
                    .tree
                    .scan(Bound::Included(s), Bound::Unbounded, false, 100)
                    .unwrap();
                std::hint::black_box(got);
            }
        })
    });
    g.bench_function("range100/btreeset", |b| {
        b.iter(|| {
            for s in &starts {
                let got: Vec<Vec<u8>> = f
                    .set
                    .range::<[u8], _>((Bound::Included(s.as_slice()), Bound::Unbounded))
                    .take(100)
                    .cloned()
                    .collect();
                std::hint::black_box(got);
            }
        })
    });
    let Fixture {
        _dir,
        path,
        pool,
        tree,
        mut set,
    } = f;
    drop(tree);
    let tree = BTree::open(&path, &pool).unwrap();
    // New keys between the existing ones (odd second halves are never used above).
    let mut round = 0u64;
    g.bench_function("insert/sharddb", |b| {
        b.iter(|| {
            round += 1;
            for i in 0..100_000u64 {
                let mut k = key(splitmix(i ^ (round << 32)) % n as u64);
                k[17] ^= 1;
                k.push(round as u8);
                tree.insert(&k).unwrap();
                if pool.dirty_pages() * 2 > pool.capacity_pages() {
                    tree.checkpoint(round).unwrap();
                }
            }
        })
    });
    round = 0;
    g.bench_function("insert/btreeset", |b| {
        b.iter(|| {
            round += 1;
            for i in 0..100_000u64 {
                let mut k = key(splitmix(i ^ (round << 32)) % n as u64);
                k[17] ^= 1;
                k.push(round as u8);
                set.insert(k);
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
