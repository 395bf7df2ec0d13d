//! SSTable tests: round trips against a sorted-vector model, block-size extremes, the
//! incremental builder, corruption of every region, and the cache and bloom counters.

use std::ops::Bound;
use std::sync::atomic::Ordering as AtomicOrdering;

use proptest::prelude::*;

use super::super::StorageError;
use super::super::files::table_path;
use super::super::iter::tests::VecIter;
use super::*;

/// Keys k0000..k(n-1), each with versions 30, 20, 10; every third version a tombstone.
fn sample(n: usize) -> Vec<Entry> {
    let mut v = Vec::new();
    for i in 0..n {
        for ts in [30u64, 20, 10] {
            let key = format!("k{i:04}").into_bytes();
            let value = (!(i + ts as usize).is_multiple_of(3))
                .then(|| vec![b'x'; (i * 7 + ts as usize) % 90]);
            v.push(Entry { key, ts, value });
        }
    }
    v
}

fn opts(block_bytes: usize) -> TableOptions {
    TableOptions {
        block_bytes,
        ..TableOptions::default()
    }
}

struct Fixture {
    cache: Arc<BlockCache>,
    counters: Arc<ReadCounters>,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture {
            cache: Arc::new(BlockCache::new(8 << 20)),
            counters: Arc::new(ReadCounters::default()),
        }
    }

    fn open(&self, path: &Path, id: u64) -> Result<Table> {
        Table::open(
            path,
            id,
            Arc::clone(&self.cache),
            Arc::clone(&self.counters),
        )
    }

    fn build(&self, dir: &Path, entries: &[Entry], o: TableOptions) -> Arc<Table> {
        let path = table_path(dir, 12);
        let owned: Vec<Entry> = entries.to_vec();
        let size = write_table(&path, &mut VecIter(owned.into_iter()), 77, &o).unwrap();
        let t = self.open(&path, 1).unwrap();
        assert_eq!(size, t.file_size());
        assert_eq!(t.verify().unwrap(), entries.len() as u64);
        Arc::new(t)
    }
}

fn drain(it: &mut TableIter) -> Vec<Entry> {
    let mut v = Vec::new();
    while let Some(e) = it.next_entry().unwrap() {
        v.push(e);
    }
    v
}

fn try_drain(it: &mut TableIter) -> Result<Vec<Entry>> {
    std::iter::from_fn(|| it.next_entry().transpose()).collect()
}

/// What `Table::get` must return according to a sorted model.
fn model_get(entries: &[Entry], key: &[u8], read_ts: u64) -> Option<(u64, Option<Vec<u8>>)> {
    entries
        .iter()
        .find(|e| e.key == key && e.ts <= read_ts)
        .map(|e| (e.ts, e.value.clone()))
}

fn model_range(entries: &[Entry], range: &KeyRange) -> Vec<Entry> {
    entries
        .iter()
        .filter(|e| range.contains(&e.key))
        .cloned()
        .collect()
}

fn assert_corruption_names(err: &StorageError, path: &Path) {
    match err {
        StorageError::Corruption { path: p, .. } => assert_eq!(p, path, "{err}"),
        other => panic!("expected corruption of {}, got {other:?}", path.display()),
    }
}

#[test]
fn round_trip_gets_and_bounded_iteration() {
    let dir = tempfile::tempdir().unwrap();
    let f = Fixture::new();
    let entries = sample(400);
    let t = f.build(dir.path(), &entries, TableOptions::default());
    assert!(
        t.index.len() > 5,
        "expected several blocks, got {}",
        t.index.len()
    );
    let m = t.meta();
    assert_eq!(m.entry_count, entries.len() as u64);
    assert_eq!(m.distinct_keys, 400);
    assert_eq!(
        m.tombstone_count,
        entries.iter().filter(|e| e.value.is_none()).count() as u64
    );
    assert_eq!(m.min_key, b"k0000");
    assert_eq!(m.max_key, b"k0399");
    assert_eq!((m.min_ts, m.max_ts), (10, 30));
    assert_eq!(m.high_water_ts, 77);
    assert_eq!(t.id(), 1);
    assert!(!tmp_path(t.path()).exists());

    for i in [0usize, 1, 150, 399] {
        let key = format!("k{i:04}").into_bytes();
        for read_ts in [5, 10, 15, 20, 25, 30, 99] {
            assert_eq!(
                t.get(&key, read_ts).unwrap(),
                model_get(&entries, &key, read_ts),
                "key {i} at {read_ts}"
            );
        }
    }
    assert_eq!(t.get(b"k0150x", 99).unwrap(), None);
    assert_eq!(t.get(b"a", 99).unwrap(), None);
    assert_eq!(t.get(b"z", 99).unwrap(), None);

    let all = drain(&mut t.iter(KeyRange::all(), Direction::Forward));
    assert_eq!(all, entries);
    let mut rev = drain(&mut t.iter(KeyRange::all(), Direction::Reverse));
    rev.reverse();
    assert_eq!(rev, entries);

    // Every bound combination against a filter over the model.
    let keys = [
        &b"k0000"[..],
        b"k0101",
        b"k0101\0",
        b"k0250",
        b"k0399",
        b"k9",
    ];
    let bounds = |k: &'static [u8]| [Bound::Included(k), Bound::Excluded(k)];
    for s in keys {
        for e in keys {
            for (sb, eb) in bounds(s).into_iter().zip(bounds(e)).chain([
                (Bound::Unbounded, Bound::Included(e)),
                (Bound::Included(s), Bound::Unbounded),
                (Bound::Excluded(s), Bound::Included(e)),
            ]) {
                let range = KeyRange::new(sb, eb);
                let want = model_range(&entries, &range);
                let fwd = drain(&mut t.iter(range.clone(), Direction::Forward));
                assert_eq!(fwd, want, "{sb:?}..{eb:?}");
                let mut rev = drain(&mut t.iter(range, Direction::Reverse));
                rev.reverse();
                assert_eq!(rev, want, "rev {sb:?}..{eb:?}");
            }
        }
    }
}

#[test]
fn prefix_compression_shrinks_blocks_and_restarts_every_16_entries() {
    // Long shared prefixes, tiny values: many entries per block.
    let entries: Vec<Entry> = (0..2000)
        .map(|i| Entry {
            key: format!("tenant-0042/table-0007/row-{i:08}").into_bytes(),
            ts: 5,
            value: Some(vec![b'v'; 4]),
        })
        .collect();
    let raw: usize = entries.iter().map(|e| e.key.len() + 8 + 1 + 1 + 4).sum();
    let dir = tempfile::tempdir().unwrap();
    let f = Fixture::new();
    let t = f.build(dir.path(), &entries, TableOptions::default());
    assert!(
        (t.file_size() as usize) < raw * 6 / 10,
        "file {} vs raw {raw}",
        t.file_size()
    );
    let b = t.read_block(0).unwrap();
    let n = b.decode_all().unwrap().len();
    assert!(n > 100, "{n} entries in the first block");
    assert_eq!(b.restarts.len(), n.div_ceil(RESTART_INTERVAL));
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(t.get(&e.key, 5).unwrap(), Some((5, e.value.clone())), "{i}");
    }
}

#[test]
fn tiny_blocks_hold_one_or_two_entries_each() {
    let dir = tempfile::tempdir().unwrap();
    let f = Fixture::new();
    let entries = sample(300);
    let t = f.build(dir.path(), &entries, opts(64));
    assert!(
        t.index.len() > entries.len() / 3,
        "{} blocks",
        t.index.len()
    );
    assert_eq!(
        drain(&mut t.iter(KeyRange::all(), Direction::Forward)),
        entries
    );
    let mut rev = drain(&mut t.iter(KeyRange::all(), Direction::Reverse));
    rev.reverse();
    assert_eq!(rev, entries);
    for e in &entries {
        for read_ts in [e.ts - 1, e.ts, e.ts + 1] {
            assert_eq!(
                t.get(&e.key, read_ts).unwrap(),
                model_get(&entries, &e.key, read_ts)
            );
        }
    }
    // Block size 0 is allowed: one entry per block.
    let t0 = Fixture::new().build(dir.path(), &entries, opts(0));
    assert_eq!(t0.index.len(), entries.len());
}

#[test]
fn very_large_entries() {
    let dir = tempfile::tempdir().unwrap();
    let f = Fixture::new();
    let big_key = vec![b'k'; 70_000];
    let big_value: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let mut entries = vec![
        Entry {
            key: b"a".to_vec(),
            ts: 1,
            value: Some(b"small".to_vec()),
        },
        Entry {
            key: big_key.clone(),
            ts: 9,
            value: Some(big_value.clone()),
        },
        Entry {
            key: big_key.clone(),
            ts: 3,
            value: None,
        },
    ];
    let mut k2 = big_key.clone();
    k2.push(b'2');
    entries.push(Entry {
        key: k2.clone(),
        ts: 4,
        value: Some(big_value[..100_000].to_vec()),
    });
    entries.push(Entry {
        key: b"z".to_vec(),
        ts: 2,
        value: Some(Vec::new()),
    });
    let t = f.build(dir.path(), &entries, TableOptions::default());
    assert_eq!(t.get(&big_key, 100).unwrap(), Some((9, Some(big_value))));
    assert_eq!(t.get(&big_key, 5).unwrap(), Some((3, None)));
    assert_eq!(t.get(&big_key, 2).unwrap(), None);
    assert_eq!(t.get(&k2, 4).unwrap().unwrap().1.unwrap().len(), 100_000);
    assert_eq!(t.get(b"z", 2).unwrap(), Some((2, Some(Vec::new()))));
    assert_eq!(
        drain(&mut t.iter(KeyRange::all(), Direction::Forward)),
        entries
    );
    let mut rev = drain(&mut t.iter(KeyRange::all(), Direction::Reverse));
    rev.reverse();
    assert_eq!(rev, entries);
    // The 3 MB block exceeds any shard of the 8 MB cache, so it is not cached.
    assert!(f.cache.stats().bytes < 1 << 20);
}

#[test]
fn empty_table_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let f = Fixture::new();
    let t = f.build(dir.path(), &[], TableOptions::default());
    assert_eq!(t.meta().entry_count, 0);
    assert_eq!(t.meta().high_water_ts, 77);
    assert_eq!(t.get(b"a", 5).unwrap(), None);
    assert!(!t.may_contain(b""));
    assert!(drain(&mut t.iter(KeyRange::all(), Direction::Forward)).is_empty());
    assert!(drain(&mut t.iter(KeyRange::all(), Direction::Reverse)).is_empty());
    assert_eq!(t.verify().unwrap(), 0);
    assert_eq!(f.counters.bloom_checks.load(AtomicOrdering::Relaxed), 0);
}

#[test]
fn builder_works_incrementally_and_rejects_bad_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = table_path(dir.path(), 34);
    let mut b = TableBuilder::create(&path, &opts(256)).unwrap();
    assert!(tmp_path(&path).exists() && !path.exists());
    assert_eq!((b.last_key(), b.entry_count()), (None, 0));
    let mut sizes = vec![b.approx_file_size()];
    let entries = sample(100);
    for e in &entries {
        b.add(e).unwrap();
        sizes.push(b.approx_file_size());
    }
    assert!(sizes.windows(2).all(|w| w[0] <= w[1]), "{sizes:?}");
    assert_eq!(b.last_key(), Some(&b"k0099"[..]));
    assert_eq!(b.entry_count(), 300);

    // Same version again, an older key, and a newer version of the last key: all rejected,
    // and the builder is still usable.
    let last = entries.last().unwrap().clone();
    for bad in [
        last.clone(),
        entries[5].clone(),
        Entry {
            ts: last.ts + 1,
            ..last.clone()
        },
    ] {
        assert!(matches!(b.add(&bad), Err(StorageError::InvalidArgument(_))));
    }
    assert_eq!(b.entry_count(), 300);
    let approx = b.approx_file_size();
    let size = b.finish(40).unwrap();
    assert!(path.exists() && !tmp_path(&path).exists());
    assert_eq!(size, std::fs::metadata(&path).unwrap().len());
    let slack = size / 5 + 64;
    assert!(approx.abs_diff(size) < slack, "approx {approx} vs {size}");
    let t = Fixture::new().open(&path, 9).unwrap();
    assert_eq!(t.verify().unwrap(), 300);

    // Abandoning, or dropping, removes the temporary file and never creates the table.
    let path2 = table_path(dir.path(), 56);
    let mut b = TableBuilder::create(&path2, &TableOptions::default()).unwrap();
    b.add(&entries[0]).unwrap();
    b.abandon();
    assert!(!tmp_path(&path2).exists() && !path2.exists());
    let b = TableBuilder::create(&path2, &TableOptions::default()).unwrap();
    drop(b);
    assert!(!tmp_path(&path2).exists() && !path2.exists());

    // write_table cleans up after rejected input.
    let mut swapped = sample(3);
    swapped.swap(0, 1);
    let res = write_table(
        &path2,
        &mut VecIter(swapped.into_iter()),
        0,
        &TableOptions::default(),
    );
    assert!(res.is_err());
    assert!(!tmp_path(&path2).exists() && !path2.exists());
}

#[test]
fn repeated_reads_hit_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let f = Fixture::new();
    let entries = sample(400);
    let t = f.build(dir.path(), &entries, TableOptions::default());
    let before = f.cache.stats();
    assert_eq!(before.entries, 0, "verify bypasses the cache");
    assert_eq!(t.get(b"k0200", 99).unwrap().unwrap().0, 30);
    let s1 = f.cache.stats();
    assert_eq!((s1.misses - before.misses, s1.hits - before.hits), (1, 0));
    assert_eq!(s1.entries, 1);
    for _ in 0..5 {
        t.get(b"k0200", 99).unwrap();
    }
    let s2 = f.cache.stats();
    assert_eq!((s2.misses - s1.misses, s2.hits - s1.hits), (0, 5));
    // A full scan misses once per block, a second one hits every block.
    drain(&mut t.iter(KeyRange::all(), Direction::Forward));
    let s3 = f.cache.stats();
    let blocks = t.index.len() as u64;
    assert_eq!(s3.misses - s2.misses, blocks - 1);
    drain(&mut t.iter(KeyRange::all(), Direction::Reverse));
    let s4 = f.cache.stats();
    assert_eq!((s4.misses - s3.misses, s4.hits - s3.hits), (0, blocks));
    assert_eq!(s4.entries, blocks);
    assert!(s4.bytes as usize >= t.index.iter().map(|h| h.len as usize).sum::<usize>() / 2);
    // Dropping the table erases its blocks.
    drop(t);
    assert_eq!(f.cache.stats().entries, 0);
    assert_eq!(f.cache.stats().bytes, 0);
}

#[test]
fn bloom_filter_answers_most_absent_keys_without_io() {
    let dir = tempfile::tempdir().unwrap();
    let f = Fixture::new();
    // Even keys only; odd keys fall inside the key range but are absent.
    let entries: Vec<Entry> = (0..2000)
        .step_by(2)
        .flat_map(|i| {
            [3u64, 1].map(|ts| Entry {
                key: format!("key{i:06}").into_bytes(),
                ts,
                value: Some(b"v".to_vec()),
            })
        })
        .collect();
    let t = f.build(dir.path(), &entries, TableOptions::default());
    assert_eq!(t.meta().distinct_keys, 1000);
    let c = &f.counters;
    let load = |a: &AtomicU64| a.load(AtomicOrdering::Relaxed);
    // Odd keys between the first and the last key (key001999 is beyond the range).
    for i in (1..1998).step_by(2) {
        let key = format!("key{i:06}").into_bytes();
        assert_eq!(t.get(&key, 10).unwrap(), None);
    }
    let (checks, negatives, fps) = (
        load(&c.bloom_checks),
        load(&c.bloom_negatives),
        load(&c.bloom_false_positives),
    );
    assert_eq!(checks, 999);
    assert_eq!(
        negatives + fps,
        999,
        "every absent key is a negative or a false positive"
    );
    assert!(fps < 50, "{fps} false positives");
    assert!(
        f.cache.stats().misses <= fps,
        "only false positives read blocks"
    );

    // Present keys are never negatives or false positives, even when no version is visible.
    for i in (0..2000).step_by(2) {
        let key = format!("key{i:06}").into_bytes();
        assert!(t.may_contain(&key));
        assert_eq!(t.get(&key, 2).unwrap(), Some((1, Some(b"v".to_vec()))));
    }
    assert_eq!(
        t.get(b"key000000", 0).unwrap(),
        None,
        "below min_ts: no bloom check"
    );
    assert_eq!(load(&c.bloom_checks), checks + 1000);
    assert_eq!(load(&c.bloom_negatives), negatives);
    assert_eq!(load(&c.bloom_false_positives), fps);
    // Outside the key range: no bloom check at all.
    assert_eq!(t.get(b"zzz", 5).unwrap(), None);
    assert!(!t.may_contain(b"zzz") && !t.may_contain(b"a"));
    assert_eq!(load(&c.bloom_checks), checks + 1000);
}

/// Byte ranges of each region of a table file.
struct Regions {
    first_block: std::ops::Range<usize>,
    index: std::ops::Range<usize>,
    bloom: std::ops::Range<usize>,
    footer: std::ops::Range<usize>,
    trailer: std::ops::Range<usize>,
}

fn regions(bytes: &[u8]) -> Regions {
    let n = bytes.len();
    let t = n - TRAILER_LEN as usize;
    let field = |at: usize| le_u32(&bytes[t + at..t + at + 4]).unwrap() as usize;
    let (il, bl, fl) = (field(0), field(4), field(8));
    let footer = t - fl..t;
    let bloom = footer.start - bl..footer.start;
    let index = bloom.start - il..bloom.start;
    let first_len = le_u32(&bytes[index.start + 4 + 8..index.start + 16]).unwrap() as usize;
    Regions {
        first_block: 0..first_len,
        index,
        bloom,
        footer,
        trailer: t..n,
    }
}

#[test]
fn corruption_of_every_region_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let f = Fixture::new();
    let entries = sample(200);
    let t = f.build(dir.path(), &entries, TableOptions::default());
    let path = t.path().to_path_buf();
    drop(t);
    let good = std::fs::read(&path).unwrap();
    let r = regions(&good);
    let flip = |pos: usize| {
        let mut bytes = good.clone();
        bytes[pos] ^= 0x10;
        std::fs::write(&path, &bytes).unwrap();
    };

    // A data block: open works (metadata intact); reading that block fails, others work.
    for pos in [
        r.first_block.start,
        r.first_block.start + 7,
        r.first_block.end - 1,
    ] {
        flip(pos);
        let f = Fixture::new();
        let t = Arc::new(f.open(&path, 1).unwrap());
        let err = t.get(b"k0000", 99).unwrap_err();
        assert_corruption_names(&err, &path);
        assert!(err.to_string().contains("checksum"), "{err}");
        assert!(err.to_string().contains("tbl-00000000000000000012.sst"));
        assert_eq!(
            t.get(b"k0199", 99).unwrap(),
            model_get(&entries, b"k0199", 99)
        );
        let err = try_drain(&mut t.iter(KeyRange::all(), Direction::Forward)).unwrap_err();
        assert_corruption_names(&err, &path);
        let err = try_drain(&mut t.iter(KeyRange::all(), Direction::Reverse)).unwrap_err();
        assert_corruption_names(&err, &path);
        assert_corruption_names(&t.verify().unwrap_err(), &path);
    }

    // Index, bloom, footer and trailer: open fails.
    for (name, range) in [
        ("index", r.index.clone()),
        ("bloom", r.bloom.clone()),
        ("footer", r.footer.clone()),
        ("trailer", r.trailer.clone()),
    ] {
        for pos in [range.start, range.start + range.len() / 2, range.end - 1] {
            flip(pos);
            let err = Fixture::new().open(&path, 1).unwrap_err();
            assert_corruption_names(&err, &path);
            assert!(!err.to_string().is_empty(), "{name}");
        }
    }

    // Truncation, and files too short for a trailer.
    for len in [good.len() - 1, good.len() - 30, 20, 0] {
        std::fs::write(&path, &good[..len]).unwrap();
        assert_corruption_names(&Fixture::new().open(&path, 1).unwrap_err(), &path);
    }

    // A wrong version or magic says so.
    let mut bytes = good.clone();
    bytes[r.trailer.start + 16..r.trailer.start + 20].copy_from_slice(&1u32.to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    let err = Fixture::new().open(&path, 1).unwrap_err();
    assert_corruption_names(&err, &path);
    assert!(err.to_string().contains("format version 1"), "{err}");
    let mut bytes = good.clone();
    bytes[r.trailer.end - 1] = b'X';
    std::fs::write(&path, &bytes).unwrap();
    let err = Fixture::new().open(&path, 1).unwrap_err();
    assert!(err.to_string().contains("magic"), "{err}");

    std::fs::write(&path, &good).unwrap();
    assert_eq!(
        Fixture::new().open(&path, 1).unwrap().verify().unwrap(),
        600
    );
}

#[test]
fn structural_damage_under_a_valid_crc_is_corruption() {
    // A block whose CRC matches but whose entries are out of order (as a writer bug would
    // produce) is still rejected when read.
    let dir = tempfile::tempdir().unwrap();
    let f = Fixture::new();
    let entries = sample(20);
    let t = f.build(dir.path(), &entries, TableOptions::default());
    let path = t.path().to_path_buf();
    drop(t);
    let mut bytes = std::fs::read(&path).unwrap();
    let r = regions(&bytes);
    // First entry of the first block: shared 0 | unshared 5 | "k0000" | ts 30. Make it older
    // than the version of the same key that follows it, and re-seal the block's checksum.
    let ts_at = 2 + 5;
    bytes[ts_at..ts_at + 8].copy_from_slice(&1u64.to_le_bytes());
    let body_end = r.first_block.end - 4;
    let crc = crc32c::crc32c(&bytes[..body_end]);
    bytes[body_end..r.first_block.end].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    let t = Fixture::new().open(&path, 1).unwrap();
    let err = t.get(b"k0000", 99).unwrap_err();
    assert_corruption_names(&err, &path);
    assert!(err.to_string().contains("out of order"), "{err}");
}

fn entries_strategy() -> impl Strategy<Value = Vec<Entry>> {
    // Few distinct bytes so keys share prefixes and collide often.
    let key = prop::collection::vec(prop::sample::select(vec![b'a', b'b', b'c', 0u8]), 0..10);
    let value = prop::option::weighted(0.8, prop::collection::vec(any::<u8>(), 0..40));
    prop::collection::vec((key, 0u64..40, value), 0..250).prop_map(|raw| {
        let mut v: Vec<Entry> = raw
            .into_iter()
            .map(|(key, ts, value)| Entry { key, ts, value })
            .collect();
        v.sort_by(|a, b| cmp_internal(&a.key, a.ts, &b.key, b.ts));
        v.dedup_by(|a, b| a.key == b.key && a.ts == b.ts);
        v
    })
}

fn bound_strategy() -> impl Strategy<Value = Bound<Vec<u8>>> {
    let key = prop::collection::vec(prop::sample::select(vec![b'a', b'b', b'c', 0u8]), 0..4);
    prop_oneof![
        Just(Bound::Unbounded),
        key.clone().prop_map(Bound::Included),
        key.prop_map(Bound::Excluded),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn matches_a_sorted_vec_model(
        entries in entries_strategy(),
        block_bytes in prop::sample::select(vec![0usize, 64, 200, 4096]),
        bloom_bits_per_key in prop::sample::select(vec![1usize, 10]),
        gets in prop::collection::vec(
            (prop::collection::vec(prop::sample::select(vec![b'a', b'b', b'c', 0u8]), 0..10),
             0u64..45),
            1..60),
        ranges in prop::collection::vec((bound_strategy(), bound_strategy()), 1..12),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let f = Fixture::new();
        let t = f.build(dir.path(), &entries, TableOptions { block_bytes, bloom_bits_per_key });
        // Keys that exist, and arbitrary ones.
        let probes = entries.iter().map(|e| (e.key.clone(), e.ts)).chain(gets);
        for (key, read_ts) in probes {
            prop_assert_eq!(t.get(&key, read_ts).unwrap(), model_get(&entries, &key, read_ts));
            if entries.iter().any(|e| e.key == key) {
                prop_assert!(t.may_contain(&key));
            }
        }
        for (start, end) in ranges {
            let range = KeyRange { start, end };
            let want = model_range(&entries, &range);
            prop_assert_eq!(&drain(&mut t.iter(range.clone(), Direction::Forward)), &want);
            let mut rev = drain(&mut t.iter(range, Direction::Reverse));
            rev.reverse();
            prop_assert_eq!(&rev, &want);
        }
        let c = &f.counters;
        prop_assert!(
            c.bloom_negatives.load(AtomicOrdering::Relaxed)
                + c.bloom_false_positives.load(AtomicOrdering::Relaxed)
                <= c.bloom_checks.load(AtomicOrdering::Relaxed)
        );
    }

    #[test]
    fn damaged_files_never_panic_or_lie(
        entries in entries_strategy(),
        block_bytes in prop::sample::select(vec![64usize, 4096]),
        flips in prop::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..4),
        truncate in prop::option::weighted(0.15, any::<prop::sample::Index>()),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = table_path(dir.path(), 12);
        write_table(&path, &mut VecIter(entries.clone().into_iter()), 50, &opts(block_bytes))
            .unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        for (at, mask) in flips {
            let i = at.index(bytes.len());
            bytes[i] ^= mask;
        }
        if let Some(at) = truncate {
            bytes.truncate(at.index(bytes.len()));
        }
        std::fs::write(&path, &bytes).unwrap();

        let ok_or_corrupt = |err: &StorageError| match err {
            StorageError::Corruption { path: p, .. } => p == &path,
            _ => false,
        };
        let f = Fixture::new();
        let t = match f.open(&path, 1) {
            Ok(t) => Arc::new(t),
            Err(e) => {
                prop_assert!(ok_or_corrupt(&e), "{e}");
                return Ok(());
            }
        };
        // Whatever opens reads correctly or reports corruption, block by block.
        let keys: Vec<Vec<u8>> = entries.iter().map(|e| e.key.clone()).collect();
        for key in keys.iter().chain([b"ab".to_vec(), Vec::new()].iter()) {
            for read_ts in [0, 7, 20, 99] {
                match t.get(key, read_ts) {
                    Ok(got) => prop_assert_eq!(got, model_get(&entries, key, read_ts)),
                    Err(e) => prop_assert!(ok_or_corrupt(&e), "{e}"),
                }
            }
        }
        for dir in [Direction::Forward, Direction::Reverse] {
            match try_drain(&mut t.iter(KeyRange::all(), dir)) {
                Ok(mut got) => {
                    if dir == Direction::Reverse {
                        got.reverse();
                    }
                    prop_assert_eq!(&got, &entries);
                }
                Err(e) => prop_assert!(ok_or_corrupt(&e), "{e}"),
            }
        }
        match t.verify() {
            Ok(n) => prop_assert_eq!(n, entries.len() as u64),
            Err(e) => prop_assert!(ok_or_corrupt(&e), "{e}"),
        }
    }
}
