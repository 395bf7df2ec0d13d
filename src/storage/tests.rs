//! Engine-level tests: durability and recovery scenarios, two-phase commit, compaction,
//! concurrency, and a model-based property test comparing the engine with a `BTreeMap` of
//! versions through random writes, reads, flushes, compactions and restarts.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use proptest::prelude::*;

use super::*;

fn opts(limit: usize) -> EngineOptions {
    EngineOptions {
        memtable_limit_bytes: limit,
        sync: SyncMode::Fsync,
        // Background compaction stays out of the way of tests that count tables; the model
        // test and the compaction tests below turn it on with small levels.
        l0_compaction_trigger: 1000,
        l0_slowdown_trigger: 2000,
        l0_stop_trigger: 3000,
        ..EngineOptions::default()
    }
}

fn put(engine: &Engine, ts: u64, kvs: &[(&str, Option<&str>)]) {
    let ops = kvs
        .iter()
        .map(|(k, v)| WriteOp {
            key: k.as_bytes().to_vec(),
            value: v.map(|v| v.as_bytes().to_vec()),
        })
        .collect();
    engine.apply(&WriteBatch { commit_ts: ts, ops }).unwrap();
}

fn get(engine: &Engine, key: &str, ts: u64) -> Option<String> {
    engine
        .get(key.as_bytes(), ts)
        .unwrap()
        .map(|v| String::from_utf8(v).unwrap())
}

fn scan_all(engine: &Engine, ts: u64) -> Vec<(String, String)> {
    engine
        .scan(Bound::Unbounded, Bound::Unbounded, ts, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|(k, v)| (String::from_utf8(k).unwrap(), String::from_utf8(v).unwrap()))
        .collect()
}

fn files_with(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with(prefix))
        .collect();
    v.sort();
    v
}

#[test]
fn engine_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Engine>();
}

#[test]
fn versions_tombstones_and_read_timestamps() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::open(dir.path(), opts(1 << 20)).unwrap();
    assert_eq!(e.max_committed_ts(), 0);
    put(&e, 10, &[("a", Some("a10")), ("b", Some("b10"))]);
    put(&e, 20, &[("a", Some("a20")), ("b", None)]);
    put(&e, 30, &[("b", Some("b30")), ("b", Some("b30-last"))]);
    assert_eq!(e.max_committed_ts(), 30);

    for flushed in [false, true] {
        assert_eq!(get(&e, "a", 9), None);
        assert_eq!(get(&e, "a", 10).as_deref(), Some("a10"));
        assert_eq!(get(&e, "a", 19).as_deref(), Some("a10"));
        assert_eq!(get(&e, "a", u64::MAX).as_deref(), Some("a20"));
        assert_eq!(get(&e, "b", 15).as_deref(), Some("b10"));
        assert_eq!(get(&e, "b", 25), None, "tombstone hides the key");
        assert_eq!(get(&e, "b", 30).as_deref(), Some("b30-last"));
        assert_eq!(get(&e, "c", 30), None);
        assert_eq!(scan_all(&e, 25), vec![("a".into(), "a20".into())]);
        if !flushed {
            e.flush().unwrap();
            assert_eq!(e.stats().sstable_count, 1);
            assert_eq!(e.stats().memtable_bytes, 0);
        }
    }
    // Empty flush is a no-op.
    e.flush().unwrap();
    assert_eq!(e.stats().sstable_count, 1);
}

#[test]
fn scans_respect_bounds_limits_and_paging_across_sources() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::open(dir.path(), opts(1 << 20)).unwrap();
    // Spread keys over two tables and the memtable, with overwrites and deletes.
    for (i, ts) in (0..60u64).zip(1..) {
        let k = format!("k{:02}", i % 30);
        let v = (i % 7 != 3).then(|| format!("v{i}"));
        put(&e, ts, &[(&k, v.as_deref())]);
        if i == 20 || i == 40 {
            e.flush().unwrap();
        }
    }
    let mut model: BTreeMap<String, String> = BTreeMap::new();
    for i in 0..60u64 {
        let k = format!("k{:02}", i % 30);
        if i % 7 == 3 {
            model.remove(&k);
        } else {
            model.insert(k, format!("v{i}"));
        }
    }
    let want: Vec<(String, String)> = model.clone().into_iter().collect();
    assert_eq!(scan_all(&e, u64::MAX), want);

    // Page forward by 7.
    let mut paged = Vec::new();
    let mut last: Option<Vec<u8>> = None;
    loop {
        let start = last.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
        let page = e.scan(start, Bound::Unbounded, u64::MAX, 7).unwrap();
        if page.is_empty() {
            break;
        }
        last = Some(page.last().unwrap().0.clone());
        paged.extend(page);
    }
    assert_eq!(paged.len(), want.len());
    // Page backward by 4 within [k05, k25).
    let mut rev = Vec::new();
    let mut last: Option<Vec<u8>> = None;
    loop {
        let end = last
            .as_deref()
            .map_or(Bound::Excluded(&b"k25"[..]), Bound::Excluded);
        let page = e
            .scan_rev(Bound::Included(&b"k05"[..]), end, u64::MAX, 4)
            .unwrap();
        if page.is_empty() {
            break;
        }
        last = Some(page.last().unwrap().0.clone());
        rev.extend(page);
    }
    let mut want_rev: Vec<_> = model
        .range("k05".to_string().."k25".to_string())
        .map(|(k, v)| (k.clone().into_bytes(), v.clone().into_bytes()))
        .collect();
    want_rev.reverse();
    assert_eq!(rev, want_rev);
    assert!(
        e.scan(Bound::Unbounded, Bound::Unbounded, 5, 0)
            .unwrap()
            .is_empty()
    );
    assert!(
        e.scan(
            Bound::Included(&b"k9"[..]),
            Bound::Excluded(&b"k1"[..]),
            99,
            10
        )
        .unwrap()
        .is_empty()
    );
}

#[test]
fn reopen_recovers_wal_and_tables_and_max_ts() {
    let dir = tempfile::tempdir().unwrap();
    {
        let e = Engine::open(dir.path(), opts(1 << 20)).unwrap();
        put(&e, 5, &[("a", Some("1"))]);
        e.flush().unwrap();
        put(&e, 7, &[("b", Some("2")), ("a", None)]);
        put(&e, 9, &[]);
    }
    let e = Engine::open(dir.path(), opts(1 << 20)).unwrap();
    assert_eq!(e.max_committed_ts(), 9);
    assert_eq!(get(&e, "a", 6).as_deref(), Some("1"));
    assert_eq!(get(&e, "a", 7), None);
    assert_eq!(scan_all(&e, 100), vec![("b".into(), "2".into())]);
    assert_eq!(e.stats().sstable_count, 1);
    // After a flush the WAL is gone but the timestamp high-water mark survives, even when
    // compaction garbage-collects the newest version.
    e.flush().unwrap();
    put(&e, 12, &[("b", None)]);
    e.flush().unwrap();
    e.compact(12).unwrap();
    drop(e);
    let e = Engine::open(dir.path(), opts(1 << 20)).unwrap();
    assert_eq!(e.max_committed_ts(), 12);
    assert!(scan_all(&e, 100).is_empty());
    // Everything was garbage; the high-water mark lives in the manifest, not in a table.
    assert_eq!(e.stats().sstable_count, 0);
}

#[test]
fn torn_wal_tail_is_truncated_and_writing_resumes() {
    let dir = tempfile::tempdir().unwrap();
    {
        let e = Engine::open(dir.path(), opts(1 << 20)).unwrap();
        put(&e, 1, &[("a", Some("1"))]);
        put(&e, 2, &[("b", Some("2"))]);
    }
    let wal = files_with(dir.path(), "wal-").pop().unwrap();
    let good_len = std::fs::metadata(&wal).unwrap().len();
    // Half of a record: a header promising more bytes than exist.
    let mut torn = Vec::new();
    torn.extend_from_slice(&100u32.to_le_bytes());
    torn.extend_from_slice(&[0xAA; 20]);
    let mut bytes = std::fs::read(&wal).unwrap();
    bytes.extend_from_slice(&torn);
    std::fs::write(&wal, &bytes).unwrap();

    {
        let e = Engine::open(dir.path(), opts(1 << 20)).unwrap();
        assert_eq!(std::fs::metadata(&wal).unwrap().len(), good_len);
        assert_eq!(scan_all(&e, 10).len(), 2);
        put(&e, 3, &[("c", Some("3"))]);
    }
    let e = Engine::open(dir.path(), opts(1 << 20)).unwrap();
    assert_eq!(scan_all(&e, 10).len(), 3);
    assert_eq!(e.max_committed_ts(), 3);
}

#[test]
fn mid_log_corruption_fails_open_naming_the_segment() {
    let dir = tempfile::tempdir().unwrap();
    {
        let e = Engine::open(dir.path(), opts(1 << 20)).unwrap();
        put(&e, 1, &[("a", Some("first record"))]);
        put(&e, 2, &[("b", Some("second record"))]);
    }
    let wal = files_with(dir.path(), "wal-").pop().unwrap();
    let mut bytes = std::fs::read(&wal).unwrap();
    bytes[12] ^= 0x10; // inside the first record's payload
    std::fs::write(&wal, &bytes).unwrap();
    let err = Engine::open(dir.path(), opts(1 << 20)).unwrap_err();
    match &err {
        StorageError::Corruption { path, detail } => {
            assert_eq!(path, &wal);
            assert!(detail.contains("offset 0"), "{detail}");
        }
        other => panic!("expected corruption, got {other:?}"),
    }
    assert!(
        err.to_string()
            .contains(wal.file_name().unwrap().to_str().unwrap())
    );
}

#[test]
fn corrupt_table_block_is_reported_with_its_file() {
    let dir = tempfile::tempdir().unwrap();
    {
        let e = Engine::open(dir.path(), opts(1 << 20)).unwrap();
        put(&e, 1, &[("a", Some("value-a")), ("b", Some("value-b"))]);
        e.flush().unwrap();
    }
    let sst = files_with(dir.path(), "tbl-").pop().unwrap();
    let mut bytes = std::fs::read(&sst).unwrap();
    bytes[6] ^= 0x01; // inside the first data block
    std::fs::write(&sst, &bytes).unwrap();
    let e = Engine::open(dir.path(), opts(1 << 20)).unwrap();
    for err in [
        e.get(b"a", 5).unwrap_err(),
        e.scan(Bound::Unbounded, Bound::Unbounded, 5, 10)
            .unwrap_err(),
        e.compact(0).unwrap_err(),
    ] {
        match &err {
            StorageError::Corruption { path, .. } => assert_eq!(path, &sst),
            other => panic!("expected corruption, got {other:?}"),
        }
    }
}

#[test]
fn prepare_survives_reopen_and_commits_after_it() {
    let dir = tempfile::tempdir().unwrap();
    {
        let e = Engine::open(dir.path(), opts(1 << 20)).unwrap();
        put(&e, 1, &[("a", Some("old"))]);
        e.prepare(
            42,
            vec![
                WriteOp::put("a", "new"),
                WriteOp::put("b", "bee"),
                WriteOp::delete("zz"),
            ],
        )
        .unwrap();
        e.prepare(43, vec![WriteOp::put("c", "sea")]).unwrap();
        assert_eq!(e.in_doubt(), vec![42, 43]);
        assert_eq!(get(&e, "a", 100).as_deref(), Some("old"));
        assert_eq!(get(&e, "b", 100), None);
    }
    {
        let e = Engine::open(dir.path(), opts(1 << 20)).unwrap();
        assert_eq!(e.in_doubt(), vec![42, 43]);
        assert_eq!(get(&e, "b", 100), None);
        e.commit_prepared(42, 10).unwrap();
        e.abort_prepared(43).unwrap();
        assert_eq!(e.in_doubt(), Vec::<u64>::new());
        assert_eq!(get(&e, "a", 9).as_deref(), Some("old"));
        assert_eq!(get(&e, "a", 10).as_deref(), Some("new"));
        assert_eq!(get(&e, "c", 100), None);
        assert_eq!(e.max_committed_ts(), 10);
    }
    let e = Engine::open(dir.path(), opts(1 << 20)).unwrap();
    assert!(e.in_doubt().is_empty());
    assert_eq!(
        scan_all(&e, 100),
        vec![("a".into(), "new".into()), ("b".into(), "bee".into())]
    );
}

#[test]
fn abort_drops_prepared_ops() {
    let dir = tempfile::tempdir().unwrap();
    {
        let e = Engine::open(dir.path(), opts(1 << 20)).unwrap();
        e.prepare(7, vec![WriteOp::put("x", "1")]).unwrap();
        e.abort_prepared(7).unwrap();
        assert!(e.in_doubt().is_empty());
        assert_eq!(get(&e, "x", u64::MAX), None);
        // The txid is free again once decided.
        e.prepare(7, vec![WriteOp::put("y", "2")]).unwrap();
    }
    let e = Engine::open(dir.path(), opts(1 << 20)).unwrap();
    assert_eq!(e.in_doubt(), vec![7]);
    e.abort_prepared(7).unwrap();
    drop(e);
    let e = Engine::open(dir.path(), opts(1 << 20)).unwrap();
    assert!(e.in_doubt().is_empty());
    assert!(scan_all(&e, u64::MAX).is_empty());
}

#[test]
fn two_phase_commit_misuse_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::open(dir.path(), opts(1 << 20)).unwrap();
    e.prepare(1, vec![WriteOp::put("k", "v")]).unwrap();
    assert!(matches!(
        e.prepare(1, vec![]),
        Err(StorageError::AlreadyPrepared { txid: 1 })
    ));
    assert!(matches!(
        e.commit_prepared(2, 5),
        Err(StorageError::NotPrepared { txid: 2 })
    ));
    assert!(matches!(
        e.abort_prepared(2),
        Err(StorageError::NotPrepared { txid: 2 })
    ));
    e.commit_prepared(1, 5).unwrap();
    assert!(matches!(
        e.commit_prepared(1, 6),
        Err(StorageError::NotPrepared { txid: 1 })
    ));
    assert_eq!(get(&e, "k", 5).as_deref(), Some("v"));
}

#[test]
fn prepared_ops_survive_flush_and_wal_segment_deletion() {
    let dir = tempfile::tempdir().unwrap();
    let first_wal;
    {
        let e = Engine::open(dir.path(), opts(2048)).unwrap();
        first_wal = files_with(dir.path(), "wal-")[0].clone();
        e.prepare(9, vec![WriteOp::put("p1", "one"), WriteOp::delete("a005")])
            .unwrap();
        e.prepare(10, vec![WriteOp::put("p2", "two")]).unwrap();
        let mut ts = 0;
        while e.stats().sstable_count < 3 {
            ts += 1;
            put(
                &e,
                ts,
                &[(&format!("a{ts:03}"), Some("filler-filler-filler"))],
            );
        }
        assert!(
            !first_wal.exists(),
            "the segment holding the prepares was deleted"
        );
        assert_eq!(e.in_doubt(), vec![9, 10]);
        assert_eq!(get(&e, "p1", u64::MAX), None);
        e.abort_prepared(10).unwrap();
    }
    let e = Engine::open(dir.path(), opts(2048)).unwrap();
    assert_eq!(e.in_doubt(), vec![9]);
    let commit_ts = e.max_committed_ts() + 1;
    e.commit_prepared(9, commit_ts).unwrap();
    assert_eq!(get(&e, "p1", commit_ts).as_deref(), Some("one"));
    assert_eq!(get(&e, "a005", commit_ts), None);
    assert_eq!(
        get(&e, "a005", commit_ts - 1).as_deref(),
        Some("filler-filler-filler")
    );
    assert_eq!(get(&e, "p2", u64::MAX), None);
    // The decision survives the next flush and restart too.
    e.flush().unwrap();
    drop(e);
    let e = Engine::open(dir.path(), opts(2048)).unwrap();
    assert!(e.in_doubt().is_empty());
    assert_eq!(get(&e, "p1", u64::MAX).as_deref(), Some("one"));
}

#[test]
fn out_of_order_commit_timestamps_resolve_by_timestamp() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::open(dir.path(), opts(1 << 20)).unwrap();
    e.prepare(
        1,
        vec![WriteOp::put("k", "from-2pc@15"), WriteOp::delete("gone")],
    )
    .unwrap();
    put(&e, 10, &[("gone", Some("here"))]);
    e.flush().unwrap();
    put(&e, 20, &[("k", Some("batch@20"))]);
    e.flush().unwrap();
    // Commits after newer data was written and flushed, at an older timestamp.
    e.commit_prepared(1, 15).unwrap();
    assert_eq!(e.max_committed_ts(), 20);
    for round in 0..3 {
        assert_eq!(
            get(&e, "k", 16).as_deref(),
            Some("from-2pc@15"),
            "round {round}"
        );
        assert_eq!(get(&e, "k", 25).as_deref(), Some("batch@20"));
        if round < 2 {
            // Below the watermark of the compaction that ends round 1: out of contract after.
            assert_eq!(get(&e, "gone", 12).as_deref(), Some("here"));
        }
        assert_eq!(get(&e, "gone", 16), None);
        assert_eq!(scan_all(&e, 16), vec![("k".into(), "from-2pc@15".into())]);
        let rev = e
            .scan_rev(Bound::Unbounded, Bound::Unbounded, 16, 10)
            .unwrap();
        assert_eq!(rev, vec![(b"k".to_vec(), b"from-2pc@15".to_vec())]);
        match round {
            0 => e.flush().unwrap(),
            _ => e.compact(16).unwrap(),
        }
    }
}

#[test]
fn compaction_keeps_a_tombstone_that_hides_older_memtable_data() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::open(dir.path(), opts(1 << 20)).unwrap();
    e.prepare(1, vec![WriteOp::put("k", "late@3")]).unwrap();
    put(&e, 5, &[("k", None)]);
    e.flush().unwrap();
    e.commit_prepared(1, 3).unwrap(); // older version, still in the memtable
    e.compact(10).unwrap();
    assert_eq!(get(&e, "k", 10), None);
    e.flush().unwrap();
    e.compact(10).unwrap();
    assert_eq!(get(&e, "k", 10), None);
    // With the memtable flushed, the tombstone and the version it hid both go.
    assert_eq!(e.stats().sstable_count, 0);
}

#[test]
fn compaction_collects_garbage_and_recovery_cleans_crash_leftovers() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::open(dir.path(), opts(1 << 20)).unwrap();
    for ts in 1..=40u64 {
        let k = format!("k{}", ts % 5);
        let v = (ts % 4 != 0).then(|| format!("v{ts}"));
        put(&e, ts, &[(&k, v.as_deref())]);
        if ts % 10 == 0 {
            e.flush().unwrap();
        }
    }
    assert_eq!(e.stats().sstable_count, 4);
    let before: Vec<_> = (30..=41).map(|ts| scan_all(&e, ts)).collect();
    let bytes_before = e.stats().sstable_bytes;
    let inputs: Vec<(PathBuf, Vec<u8>)> = files_with(dir.path(), "tbl-")
        .into_iter()
        .map(|p| {
            let b = std::fs::read(&p).unwrap();
            (p, b)
        })
        .collect();

    e.compact(30).unwrap();
    let st = e.stats();
    assert_eq!(st.sstable_count, 1);
    assert!(
        st.sstable_bytes < bytes_before,
        "{} vs {bytes_before}",
        st.sstable_bytes
    );
    let after: Vec<_> = (30..=41).map(|ts| scan_all(&e, ts)).collect();
    assert_eq!(before, after);
    assert_eq!(files_with(dir.path(), "tbl-").len(), 1);
    drop(e);

    // Simulate a crash after the output was renamed but before the inputs were deleted, plus a
    // half-written temporary table.
    for (p, b) in &inputs {
        std::fs::write(p, b).unwrap();
    }
    let tmp = dir.path().join("tbl-00000000000000000099.sst.tmp");
    std::fs::write(&tmp, b"partial").unwrap();
    let e = Engine::open(dir.path(), opts(1 << 20)).unwrap();
    assert_eq!(e.stats().sstable_count, 1);
    assert_eq!(files_with(dir.path(), "tbl-").len(), 1);
    assert!(!tmp.exists());
    let reopened: Vec<_> = (30..=41).map(|ts| scan_all(&e, ts)).collect();
    assert_eq!(before, reopened);
    // Compacting a single table again rewrites it in place.
    e.compact(41).unwrap();
    assert_eq!(files_with(dir.path(), "tbl-").len(), 1);
    assert_eq!(scan_all(&e, 41), before[11]);
}

#[test]
fn wal_segments_already_in_a_table_are_not_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let (seg, stale) = {
        let e = Engine::open(dir.path(), opts(1 << 20)).unwrap();
        e.prepare(5, vec![WriteOp::put("x", "1")]).unwrap();
        put(&e, 1, &[("a", Some("1"))]);
        let seg = files_with(dir.path(), "wal-").pop().unwrap();
        let stale = std::fs::read(&seg).unwrap();
        e.commit_prepared(5, 2).unwrap();
        e.flush().unwrap();
        assert!(!seg.exists());
        (seg, stale)
    };
    // A crash between the table's rename and the segment's deletion leaves this behind; its
    // prepare (without the commit) must not resurrect an in-doubt transaction.
    std::fs::write(&seg, &stale).unwrap();
    let e = Engine::open(dir.path(), opts(1 << 20)).unwrap();
    assert!(!seg.exists());
    assert!(e.in_doubt().is_empty());
    assert_eq!(get(&e, "x", 2).as_deref(), Some("1"));
    assert_eq!(e.max_committed_ts(), 2);
}

#[test]
fn restarts_without_writes_do_not_accumulate_wal_segments() {
    let dir = tempfile::tempdir().unwrap();
    for _ in 0..4 {
        drop(Engine::open(dir.path(), opts(1 << 20)).unwrap());
    }
    assert_eq!(files_with(dir.path(), "wal-").len(), 1);
    let e = Engine::open(dir.path(), opts(1 << 20)).unwrap();
    put(&e, 1, &[("k", Some("v"))]);
    drop(e);
    drop(Engine::open(dir.path(), opts(1 << 20)).unwrap());
    let e = Engine::open(dir.path(), opts(1 << 20)).unwrap();
    // Appends continue in the newest segment after a restart.
    assert_eq!(files_with(dir.path(), "wal-").len(), 1);
    assert_eq!(get(&e, "k", 1).as_deref(), Some("v"));
}

#[test]
fn directory_lock_excludes_a_second_engine() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::open(dir.path(), EngineOptions::default()).unwrap();
    assert!(matches!(
        Engine::open(dir.path(), EngineOptions::default()),
        Err(StorageError::Locked { .. })
    ));
    drop(e);
    Engine::open(dir.path(), EngineOptions::default()).unwrap();
}

#[test]
fn open_creates_missing_directories_and_stats_track_wal() {
    let dir = tempfile::tempdir().unwrap();
    let nested = dir.path().join("a/b/shard-0");
    let e = Engine::open(&nested, opts(1 << 20)).unwrap();
    let st = e.stats();
    assert_eq!(
        (
            st.wal_bytes,
            st.memtable_bytes,
            st.sstable_count,
            st.wal_records
        ),
        (0, 0, 0, 0)
    );
    assert_eq!(st.levels.len(), 7);
    put(&e, 1, &[("k", Some("v"))]);
    let st = e.stats();
    assert!(st.wal_bytes > 0 && st.memtable_bytes > 0);
    e.flush().unwrap();
    let st = e.stats();
    assert_eq!(
        (st.wal_bytes, st.memtable_bytes, st.sstable_count),
        (0, 0, 1)
    );
    assert!(st.sstable_bytes > 0);
}

#[test]
fn stats_report_bloom_filter_and_block_cache_activity() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::open(dir.path(), opts(1 << 20)).unwrap();
    let keys: Vec<String> = (0..200).map(|i| format!("key{i:04}")).collect();
    let kvs: Vec<(&str, Option<&str>)> = keys.iter().map(|k| (k.as_str(), Some("v"))).collect();
    put(&e, 1, &kvs);
    e.flush().unwrap();
    assert_eq!(get(&e, "key0100", 5).as_deref(), Some("v"));
    assert_eq!(get(&e, "key0100", 5).as_deref(), Some("v"));
    let st = e.stats();
    assert_eq!((st.cache_misses, st.cache_hits), (1, 1));
    assert!(st.cache_bytes > 0 && st.cache_bytes <= st.cache_capacity);
    assert_eq!(st.bloom_checks, 2);
    // Absent keys inside the table's key range are (almost always) answered by the filter.
    for i in 0..100 {
        assert_eq!(get(&e, &format!("key{i:04}x"), 5), None);
    }
    let st = e.stats();
    assert_eq!(st.bloom_checks, 102);
    assert_eq!(st.bloom_negatives + st.bloom_false_positives, 100);
    assert!(st.bloom_negatives >= 90, "{st:?}");
}

#[test]
fn readers_never_see_half_a_batch() {
    let dir = tempfile::tempdir().unwrap();
    let e = Arc::new(Engine::open(dir.path(), opts(4096)).unwrap());
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|r| {
            let e = Arc::clone(&e);
            let done = Arc::clone(&done);
            std::thread::spawn(move || {
                let mut last_seen = 0u64;
                let mut reads = 0u64;
                while !done.load(Ordering::Acquire) || reads < 10 {
                    let (lo, hi) = (
                        Bound::Included(&b"acct"[..]),
                        Bound::Excluded(&b"acct~"[..]),
                    );
                    let rows = if r == 0 {
                        e.scan(lo, hi, u64::MAX, 100)
                    } else {
                        e.scan_rev(lo, hi, u64::MAX, 100)
                    }
                    .unwrap();
                    let vals: Vec<u64> = rows
                        .iter()
                        .map(|(_, v)| u64::from_be_bytes(v[..8].try_into().unwrap()))
                        .collect();
                    assert!(vals.is_empty() || vals.len() == 3, "{vals:?}");
                    if let Some(&first) = vals.first() {
                        assert!(vals.iter().all(|&v| v == first), "torn batch: {vals:?}");
                        assert!(first >= last_seen, "went back in time");
                        last_seen = first;
                    }
                    reads += 1;
                }
                last_seen
            })
        })
        .collect();
    for ts in 1..=200u64 {
        let v = ts.to_be_bytes().to_vec();
        let mut ops = vec![
            WriteOp::put("acct-a", v.clone()),
            WriteOp::put("acct-b", v.clone()),
            WriteOp::put("acct-c", v.clone()),
        ];
        // Padding so the small memtable limit forces flushes mid-stream.
        ops.push(WriteOp::put(format!("pad{ts:04}"), vec![0u8; 64]));
        e.apply(&WriteBatch { commit_ts: ts, ops }).unwrap();
    }
    done.store(true, Ordering::Release);
    for r in readers {
        let seen = r.join().unwrap();
        assert!(seen <= 200);
    }
    assert!(e.stats().sstable_count > 1);
    assert_eq!(
        e.get(b"acct-b", u64::MAX).unwrap(),
        Some(200u64.to_be_bytes().to_vec())
    );
}

// ---------------------------------------------------------------------------------------------
// Model-based property test.

type Model = BTreeMap<Vec<u8>, BTreeMap<u64, Option<Vec<u8>>>>;

/// Keys with shared prefixes ("", "a", "aa", ...) to exercise bytewise ordering edges.
fn key_of(i: u8) -> Vec<u8> {
    let i = i % 13;
    if i == 0 {
        return Vec::new();
    }
    vec![b'a' + (i - 1) / 3; 1 + ((i - 1) % 3) as usize]
}

fn value_of(seed: u8) -> Vec<u8> {
    vec![seed; (seed % 48) as usize]
}

#[derive(Debug, Clone, Copy)]
enum B {
    Unbounded,
    Included(u8),
    Excluded(u8),
}

#[derive(Debug, Clone)]
enum Op {
    Apply {
        dts: u64,
        ops: Vec<(u8, Option<u8>)>,
    },
    Prepare {
        ops: Vec<(u8, Option<u8>)>,
    },
    /// Commits land `back` below the newest timestamp: 2PC commits arrive out of order.
    Decide {
        pick: u8,
        commit: bool,
        back: u64,
    },
    Get {
        key: u8,
        rts: u64,
    },
    Scan {
        start: B,
        end: B,
        rts: u64,
        limit: usize,
        rev: bool,
    },
    Flush,
    Compact {
        wm: u64,
    },
    Reopen,
}

fn bound_strategy() -> impl Strategy<Value = B> {
    prop_oneof![
        1 => Just(B::Unbounded),
        2 => any::<u8>().prop_map(B::Included),
        2 => any::<u8>().prop_map(B::Excluded),
    ]
}

fn ops_strategy() -> impl Strategy<Value = Vec<(u8, Option<u8>)>> {
    prop::collection::vec(
        (any::<u8>(), prop::option::weighted(0.75, any::<u8>())),
        0..6,
    )
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        // dts = 0 rewrites existing (key, ts) versions, which must resolve to the newest write.
        12 => (0..4u64, ops_strategy()).prop_map(|(dts, ops)| Op::Apply { dts, ops }),
        2 => ops_strategy().prop_map(|ops| Op::Prepare { ops }),
        2 => (any::<u8>(), any::<bool>(), 0..6u64)
            .prop_map(|(pick, commit, back)| Op::Decide { pick, commit, back }),
        6 => (any::<u8>(), any::<u64>()).prop_map(|(key, rts)| Op::Get { key, rts }),
        6 => (bound_strategy(), bound_strategy(), any::<u64>(), 0..8usize, any::<bool>())
            .prop_map(|(start, end, rts, limit, rev)| Op::Scan { start, end, rts, limit, rev }),
        1 => Just(Op::Flush),
        1 => any::<u64>().prop_map(|wm| Op::Compact { wm }),
        1 => Just(Op::Reopen),
    ]
}

fn to_write_ops(ops: &[(u8, Option<u8>)]) -> Vec<WriteOp> {
    ops.iter()
        .map(|&(k, v)| WriteOp {
            key: key_of(k),
            value: v.map(value_of),
        })
        .collect()
}

fn model_apply(model: &mut Model, ts: u64, ops: &[WriteOp]) {
    for op in ops {
        model
            .entry(op.key.clone())
            .or_default()
            .insert(ts, op.value.clone());
    }
}

fn model_visible(model: &Model, read_ts: u64) -> Vec<(Vec<u8>, Vec<u8>)> {
    model
        .iter()
        .filter_map(|(k, versions)| {
            let (_, v) = versions.range(..=read_ts).next_back()?;
            v.clone().map(|v| (k.clone(), v))
        })
        .collect()
}

fn to_bound(b: B) -> Bound<Vec<u8>> {
    match b {
        B::Unbounded => Bound::Unbounded,
        B::Included(i) => Bound::Included(key_of(i)),
        B::Excluded(i) => Bound::Excluded(key_of(i)),
    }
}

fn in_range(k: &[u8], start: &Bound<Vec<u8>>, end: &Bound<Vec<u8>>) -> bool {
    let after = match start {
        Bound::Included(s) => k >= s.as_slice(),
        Bound::Excluded(s) => k > s.as_slice(),
        Bound::Unbounded => true,
    };
    let before = match end {
        Bound::Included(e) => k <= e.as_slice(),
        Bound::Excluded(e) => k < e.as_slice(),
        Bound::Unbounded => true,
    };
    after && before
}

fn run_model(ops: Vec<Op>) -> std::result::Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    // Tiny everything, so a short op sequence rotates memtables, flushes in the background,
    // and compacts through several levels (with splits into several files per level).
    let options = EngineOptions {
        memtable_limit_bytes: 768,
        max_immutable_memtables: 1,
        sync: SyncMode::Fsync,
        block_cache_bytes: 4096,
        block_bytes: 96,
        target_file_bytes: 512,
        l0_compaction_trigger: 2,
        l0_slowdown_trigger: 4,
        l0_stop_trigger: 6,
        level1_target_bytes: 1024,
        level_size_ratio: 2,
        ..EngineOptions::default()
    };
    let mut engine = Some(Engine::open(dir.path(), options.clone()).unwrap());
    let mut model: Model = BTreeMap::new();
    let mut pending: BTreeMap<u64, Vec<WriteOp>> = BTreeMap::new();
    let mut next_txid = 1u64;
    let mut last_ts = 0u64;
    // Reads below the highest compaction watermark are outside the contract, and so are
    // commits at or below it once a compaction has used it.
    let mut gc_floor = 0u64;
    let mut compacted = false;
    let read_ts_of =
        |rts: u64, last_ts: u64, gc_floor: u64| gc_floor + rts % (last_ts + 3 - gc_floor);

    for op in ops {
        let e = engine.as_ref().unwrap();
        match op {
            Op::Apply { dts, ops } => {
                let ts = (last_ts + dts).max(if compacted { gc_floor + 1 } else { 0 });
                last_ts = ts;
                let ops = to_write_ops(&ops);
                e.apply(&WriteBatch {
                    commit_ts: ts,
                    ops: ops.clone(),
                })
                .unwrap();
                model_apply(&mut model, ts, &ops);
            }
            Op::Prepare { ops } => {
                let ops = to_write_ops(&ops);
                e.prepare(next_txid, ops.clone()).unwrap();
                pending.insert(next_txid, ops);
                next_txid += 1;
            }
            Op::Decide { pick, commit, back } => {
                if pending.is_empty() {
                    continue;
                }
                let txid = *pending.keys().nth(pick as usize % pending.len()).unwrap();
                let ops = pending.remove(&txid).unwrap();
                if commit {
                    let ts =
                        last_ts
                            .saturating_sub(back)
                            .max(if compacted { gc_floor + 1 } else { 0 });
                    last_ts = last_ts.max(ts);
                    e.commit_prepared(txid, ts).unwrap();
                    model_apply(&mut model, ts, &ops);
                } else {
                    e.abort_prepared(txid).unwrap();
                }
            }
            Op::Get { key, rts } => {
                let read_ts = read_ts_of(rts, last_ts, gc_floor);
                let k = key_of(key);
                let want = model
                    .get(&k)
                    .and_then(|vs| vs.range(..=read_ts).next_back())
                    .and_then(|(_, v)| v.clone());
                prop_assert_eq!(
                    e.get(&k, read_ts).unwrap(),
                    want,
                    "get {:?} @{}",
                    k,
                    read_ts
                );
            }
            Op::Scan {
                start,
                end,
                rts,
                limit,
                rev,
            } => {
                let read_ts = read_ts_of(rts, last_ts, gc_floor);
                let (s, en) = (to_bound(start), to_bound(end));
                let mut want: Vec<_> = model_visible(&model, read_ts)
                    .into_iter()
                    .filter(|(k, _)| in_range(k, &s, &en))
                    .collect();
                if rev {
                    want.reverse();
                }
                want.truncate(limit);
                let got = if rev {
                    e.scan_rev(
                        s.as_ref().map(|v| v.as_slice()),
                        en.as_ref().map(|v| v.as_slice()),
                        read_ts,
                        limit,
                    )
                } else {
                    e.scan(
                        s.as_ref().map(|v| v.as_slice()),
                        en.as_ref().map(|v| v.as_slice()),
                        read_ts,
                        limit,
                    )
                }
                .unwrap();
                prop_assert_eq!(got, want, "scan rev={} {:?}..{:?} @{}", rev, s, en, read_ts);
            }
            Op::Flush => e.flush().unwrap(),
            Op::Compact { wm } => {
                let wm = gc_floor + wm % (last_ts + 1 - gc_floor);
                e.compact(wm).unwrap();
                gc_floor = wm;
                compacted = true;
            }
            Op::Reopen => {
                drop(engine.take());
                let e = Engine::open(dir.path(), options.clone()).unwrap();
                prop_assert_eq!(e.max_committed_ts(), last_ts);
                engine = Some(e);
            }
        }
        let e = engine.as_ref().unwrap();
        prop_assert_eq!(e.in_doubt(), pending.keys().copied().collect::<Vec<_>>());
    }
    // The tree the background threads leave behind is well formed.
    let e = engine.as_ref().unwrap();
    e.wait_for_background().unwrap();
    e.verify().unwrap();
    // Final full comparison at every timestamp still in contract, after one more restart.
    drop(engine.take());
    let e = Engine::open(dir.path(), options).unwrap();
    e.verify().unwrap();
    prop_assert_eq!(e.max_committed_ts(), last_ts);
    for read_ts in gc_floor..=last_ts + 1 {
        let want = model_visible(&model, read_ts);
        let got = e
            .scan(Bound::Unbounded, Bound::Unbounded, read_ts, usize::MAX)
            .unwrap();
        prop_assert_eq!(&got, &want, "final scan @{}", read_ts);
        let mut rev = e
            .scan_rev(Bound::Unbounded, Bound::Unbounded, read_ts, usize::MAX)
            .unwrap();
        rev.reverse();
        prop_assert_eq!(rev, want, "final scan_rev @{}", read_ts);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        // PROPTEST_CASES raises it for soak runs.
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(128),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn engine_matches_btreemap_model(ops in prop::collection::vec(op_strategy(), 1..120)) {
        run_model(ops)?;
    }
}

#[test]
fn flipped_byte_in_the_manifest_fails_open_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    {
        let e = Engine::open(dir.path(), opts(1 << 20)).unwrap();
        for ts in 1..=3 {
            put(&e, ts, &[("k", Some("v"))]);
            e.flush().unwrap();
        }
    }
    let manifest = files_with(dir.path(), "MANIFEST-").pop().unwrap();
    let mut bytes = std::fs::read(&manifest).unwrap();
    // Inside the first record (the snapshot); later edits follow it.
    bytes[10] ^= 0x20;
    std::fs::write(&manifest, &bytes).unwrap();
    let err = Engine::open(dir.path(), opts(1 << 20)).unwrap_err();
    match &err {
        StorageError::Corruption { path, .. } => assert_eq!(path, &manifest),
        other => panic!("expected corruption, got {other:?}"),
    }
}

#[test]
fn a_table_named_by_the_manifest_but_missing_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    {
        let e = Engine::open(dir.path(), opts(1 << 20)).unwrap();
        put(&e, 1, &[("k", Some("v"))]);
        e.flush().unwrap();
    }
    let table = files_with(dir.path(), "tbl-").pop().unwrap();
    std::fs::remove_file(&table).unwrap();
    let err = Engine::open(dir.path(), opts(1 << 20))
        .unwrap_err()
        .to_string();
    assert!(err.contains("MANIFEST-"), "{err}");
    assert!(
        err.contains(table.file_name().unwrap().to_str().unwrap()),
        "{err}"
    );
}

#[test]
fn a_missing_wal_segment_is_reported_not_skipped() {
    let dir = tempfile::tempdir().unwrap();
    {
        let e = Engine::open(dir.path(), opts(1 << 20)).unwrap();
        put(&e, 1, &[("k", Some("v"))]);
    }
    // Nothing was flushed, so replay must start at segment 1; present only a later one.
    let wal = files_with(dir.path(), "wal-").pop().unwrap();
    std::fs::rename(&wal, super::files::wal_path(dir.path(), 2)).unwrap();
    let err = Engine::open(dir.path(), opts(1 << 20))
        .unwrap_err()
        .to_string();
    assert!(err.contains("WAL segments from 1"), "{err}");
}

#[test]
fn concurrent_committers_share_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let e = std::sync::Arc::new(Engine::open(dir.path(), opts(64 << 20)).unwrap());
    let ts = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(1));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let e = std::sync::Arc::clone(&e);
            let ts = std::sync::Arc::clone(&ts);
            std::thread::spawn(move || {
                for _ in 0..50 {
                    let t = ts.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    put(&e, t, &[(&format!("k{t}"), Some("v"))]);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let s = e.stats();
    assert_eq!(s.wal_records, 400);
    // Every commit waited for an fsync, but with 8 committers most rode on another's.
    assert!(
        s.wal_syncs < s.wal_records,
        "{} syncs for {} records",
        s.wal_syncs,
        s.wal_records
    );
    assert_eq!(scan_all(&e, u64::MAX).len(), 400);
}

#[test]
fn background_compaction_builds_levels_and_prefix_scans_cross_them() {
    let dir = tempfile::tempdir().unwrap();
    let o = EngineOptions {
        memtable_limit_bytes: 4096,
        target_file_bytes: 8192,
        l0_compaction_trigger: 2,
        level1_target_bytes: 16 * 1024,
        level_size_ratio: 4,
        block_bytes: 512,
        ..opts(4096)
    };
    let e = Engine::open(dir.path(), o.clone()).unwrap();
    for ts in 1..=3000u64 {
        let k = format!("{}/{:05}", ["a", "b", "c"][(ts % 3) as usize], ts % 997);
        put(&e, ts, &[(&k, Some(&format!("v{ts}")))]);
    }
    e.wait_for_background().unwrap();
    let s = e.stats();
    assert!(s.flushes > 5 && s.compactions > 0, "{s:?}");
    assert!(
        s.levels.iter().skip(2).any(|l| l.files > 0),
        "{:?}",
        s.levels
    );
    e.verify().unwrap();
    let b = e.scan_prefix(b"b/", u64::MAX, usize::MAX).unwrap();
    assert!(!b.is_empty() && b.iter().all(|(k, _)| k.starts_with(b"b/")));
    let all = scan_all(&e, u64::MAX);
    assert_eq!(
        b.len(),
        all.iter().filter(|(k, _)| k.starts_with("b/")).count()
    );
    // Point reads agree with the scan, through bloom filters and the block cache.
    for (k, v) in all.iter().take(200) {
        assert_eq!(get(&e, k, u64::MAX).as_deref(), Some(v.as_str()));
    }
    assert_eq!(get(&e, "zz/absent", u64::MAX), None);
    let s = e.stats();
    assert!(
        s.bloom_checks > 0 && s.cache_hits + s.cache_misses > 0,
        "{s:?}"
    );
    drop(e);
    let e = Engine::open(dir.path(), o).unwrap();
    assert_eq!(scan_all(&e, u64::MAX), all);
}

/// Redo blobs come back at open in log order with their positions, only those after the given
/// position, including from segments whose rows were flushed; those segments stay until the
/// retain position moves past them.
#[test]
fn redo_blobs_replay_after_a_position_and_pin_their_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut positions = Vec::new();
    {
        let mut sink = |_: u64, _: &[u8]| -> Result<()> { panic!("fresh engine has no redo") };
        let e = Engine::open_with_redo(dir.path(), opts(1 << 20), u64::MAX, &mut sink).unwrap();
        let start = e.redo_position();
        e.set_redo_retain(start);
        for i in 0..6u64 {
            let batch = WriteBatch {
                commit_ts: i + 1,
                ops: vec![WriteOp::put(format!("k{i}"), "v")],
            };
            let mut pos = 0;
            e.apply_with_redo(&batch, format!("redo{i}").as_bytes(), &mut |p| pos = p)
                .unwrap();
            assert!(pos > positions.last().copied().unwrap_or(start));
            positions.push(pos);
            if i == 1 {
                e.prepare_with_redo(9, vec![WriteOp::put("p", "1")], b"prep", &mut |p| {
                    positions.push(p)
                })
                .unwrap();
            }
            if i == 3 {
                e.log_redo(b"alone", &mut |p| positions.push(p)).unwrap();
            }
            // Every flush seals a segment; its rows go to a table, its redo stays pinned.
            e.flush().unwrap();
            assert_eq!(e.redo_segment(), e.redo_position() >> REDO_SEGMENT_SHIFT);
        }
        assert_eq!(e.redo_position(), e.redo_position());
        assert!(files_with(dir.path(), "wal-").len() >= 6);
    }
    let expect_names: Vec<Vec<u8>> = ["redo0", "redo1", "prep", "redo2", "redo3", "alone"]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .chain((4..6).map(|i| format!("redo{i}").into_bytes()))
        .collect();
    // From the start: everything. From after the fourth: the rest.
    for skip in [0usize, 4] {
        let after = if skip == 0 { 0 } else { positions[skip - 1] };
        let mut got = Vec::new();
        let mut sink = |p: u64, b: &[u8]| -> Result<()> {
            got.push((p, b.to_vec()));
            Ok(())
        };
        let e = Engine::open_with_redo(dir.path(), opts(1 << 20), after, &mut sink).unwrap();
        assert_eq!(e.in_doubt(), vec![9]);
        drop(e);
        let want: Vec<(u64, Vec<u8>)> = positions[skip..]
            .iter()
            .copied()
            .zip(expect_names[skip..].iter().cloned())
            .collect();
        assert_eq!(got, want, "replay after position {after}");
    }
    // Opening after position 3 let the segments before it go; moving the retain position to
    // the end lets the rest of the flushed ones go.
    let mut sink = |_: u64, _: &[u8]| -> Result<()> { Ok(()) };
    let e = Engine::open_with_redo(dir.path(), opts(1 << 20), positions[3], &mut sink).unwrap();
    e.set_redo_retain(e.redo_position());
    put(&e, 100, &[("z", Some("1"))]);
    e.flush().unwrap();
    assert!(files_with(dir.path(), "wal-").len() <= 2);
    drop(e);
    // A pinned segment that went missing is corruption, not silent index loss.
    let e = Engine::open_with_redo(
        dir.path(),
        opts(1 << 20),
        1 << REDO_SEGMENT_SHIFT,
        &mut sink,
    );
    assert!(
        matches!(e, Err(StorageError::Corruption { .. })),
        "{:?}",
        e.err()
    );
}

#[test]
fn key_estimates_track_live_keys_across_memtable_and_tables() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path(), opts(64 << 20)).unwrap();
    let key = |t: char, i: u32| format!("{t}{i:06}");
    let estimate = |e: &Engine, t: char| {
        e.estimate_keys(
            t.to_string().as_bytes(),
            (((t as u8) + 1) as char).to_string().as_bytes(),
        )
    };
    // Three "tables" a, b, c of 3000, 200 and 5000 keys, written in batches with updates.
    for (t, n) in [('a', 3000u32), ('b', 200), ('c', 5000)] {
        for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
            let ops: Vec<(String, Option<&str>)> =
                chunk.iter().map(|i| (key(t, *i), Some("value"))).collect();
            let refs: Vec<(&str, Option<&str>)> =
                ops.iter().map(|(k, v)| (k.as_str(), *v)).collect();
            put(&engine, 10, &refs);
        }
    }
    // Memtable only: exact (each key once, newest version live).
    assert_eq!(estimate(&engine, 'a'), 3000);
    assert_eq!(estimate(&engine, 'b'), 200);
    assert_eq!(estimate(&engine, 'c'), 5000);
    // Deletes in the memtable are not live keys.
    let gone: Vec<String> = (0..100).map(|i| key('b', i)).collect();
    let refs: Vec<(&str, Option<&str>)> = gone.iter().map(|k| (k.as_str(), None)).collect();
    put(&engine, 11, &refs);
    assert_eq!(estimate(&engine, 'b'), 100);
    // From one table holding all three: by the blocks each range touches, so off by up to a
    // block's worth of keys (a block holds about 200 here), and deleted keys count until
    // compaction drops them (b: 200); the magnitudes stay apart.
    engine.flush().unwrap();
    let (a, b, c) = (
        estimate(&engine, 'a'),
        estimate(&engine, 'b'),
        estimate(&engine, 'c'),
    );
    assert!(a.abs_diff(3000) <= 500, "a: estimated {a}, holds 3000");
    assert!(c.abs_diff(5000) <= 500, "c: estimated {c}, holds 5000");
    assert!(b <= 600, "b: estimated {b}, holds 100");
    assert!(b < a && a < c);
    assert_eq!(estimate(&engine, 'z'), 0);
}
