//! Shard-level index tests: a model-based property test of index maintenance, MVCC checks,
//! two-phase commit, garbage collection, checkpoints and crash recovery through the shard's
//! request interface, against a `BTreeMap` of rows.

use super::*;
use crate::rpc::{IndexColumn, IndexScanRequest, IndexSpec, RowWrite, UniqueProbe};
use crate::storage::SyncMode;
use crate::types::keycode::{encode_key_value, encode_key_value_desc};
use crate::types::{DataType, Value};
use proptest::prelude::*;
use std::collections::BTreeMap;

const TABLE: u32 = 1;

fn engine_opts() -> EngineOptions {
    EngineOptions {
        // Tiny memtables: flushes and WAL rotations happen, so redo outlives row replay.
        memtable_limit_bytes: 4096,
        sync: SyncMode::Fsync,
        ..EngineOptions::default()
    }
}

fn index_opts() -> IndexOptions {
    // Tiny pages make deep trees; a small pool forces eviction and checkpoints.
    IndexOptions {
        pool_bytes: 24 * 512,
        page_size: 512,
        // Builds spill sorted runs and merge them.
        build_run_bytes: 512,
    }
}

fn open(dir: &Path) -> Shard {
    Shard::open_with(0, dir, engine_opts(), index_opts(), Default::default()).unwrap()
}

fn spec_v() -> IndexSpec {
    IndexSpec {
        index_id: 10,
        table_id: TABLE,
        name: "t_v".into(),
        columns: vec![IndexColumn {
            ordinal: 1,
            ty: DataType::Int4,
            desc: false,
        }],
        unique: false,
    }
}

fn spec_tv() -> IndexSpec {
    IndexSpec {
        index_id: 11,
        table_id: TABLE,
        name: "t_t_desc_v".into(),
        columns: vec![
            IndexColumn {
                ordinal: 2,
                ty: DataType::Text,
                desc: true,
            },
            IndexColumn {
                ordinal: 1,
                ty: DataType::Int4,
                desc: false,
            },
        ],
        unique: false,
    }
}

type Model = BTreeMap<i64, (Option<i32>, String)>;

fn row_key(id: i64) -> Vec<u8> {
    let mut pk = Vec::new();
    encode_key_value(&Value::Int(id), DataType::Int8, &mut pk);
    keys::row_key(TABLE, &pk)
}

fn write(id: i64, val: Option<(Option<i32>, String)>) -> RowWrite {
    RowWrite {
        key: row_key(id),
        value: val.map(|(v, t)| {
            let mut out = Vec::new();
            row::encode_row(
                &[
                    Value::Int(id),
                    v.map_or(Value::Null, |v| Value::Int(v as i64)),
                    Value::Text(t),
                ],
                &mut out,
            );
            out
        }),
    }
}

fn v_key(v: Option<i32>) -> Vec<u8> {
    let mut out = Vec::new();
    encode_key_value(
        &v.map_or(Value::Null, |v| Value::Int(v as i64)),
        DataType::Int4,
        &mut out,
    );
    out
}

/// All rows of an index scan, paging `page` entries at a time.
fn scan_all(
    shard: &Shard,
    index_id: u32,
    start: Bound<Vec<u8>>,
    end: Bound<Vec<u8>>,
    reverse: bool,
    read_ts: u64,
    page: usize,
) -> Vec<i64> {
    let (mut start, mut end) = (start, end);
    let mut ids = Vec::new();
    loop {
        let req = ShardRequest::IndexScan(IndexScanRequest {
            index_id,
            start: start.clone(),
            end: end.clone(),
            reverse,
            read_ts,
            limit: page,
            filter: None,
            txn: None,
        });
        let ShardResponse::Rows { rows, resume_after } = shard.handle_sync(req).unwrap() else {
            panic!("rows expected");
        };
        ids.extend(rows.iter().map(|r| match r[0] {
            Value::Int(i) => i,
            ref other => panic!("id {other:?}"),
        }));
        match resume_after {
            Some(k) if reverse => end = Bound::Excluded(k),
            Some(k) => start = Bound::Excluded(k),
            None => return ids,
        }
    }
}

fn check_indexes(shard: &Shard) -> Vec<crate::rpc::IndexStats> {
    let ShardResponse::IndexChecks(stats) = shard.handle_sync(ShardRequest::CheckIndexes).unwrap()
    else {
        panic!("checks expected");
    };
    for s in &stats {
        assert_eq!(s.check_error, None, "index {} invariants", s.name);
    }
    stats
}

#[derive(Debug, Clone)]
enum Op {
    Put(i64, Option<i32>, u8),
    /// One write set of many rows (ids 100..100+n): dirties more pages than the pool holds,
    /// at run time and again when a crash makes recovery replay it.
    Bulk(u16, i32),
    Delete(i64),
    /// Two-phase: prepare a put, query (it must be invisible), then commit or abort.
    Prepared(i64, Option<i32>, u8, bool),
    Gc,
    Checkpoint,
    Crash,
    Reopen,
    Query(Option<i32>, Option<i32>, bool, usize),
}

fn op() -> impl Strategy<Value = Op> {
    let id = 0i64..48;
    let v = prop::option::weighted(0.85, 0i32..12);
    prop_oneof![
        8 => (id.clone(), v.clone(), 0u8..4).prop_map(|(i, v, t)| Op::Put(i, v, t)),
        3 => id.clone().prop_map(Op::Delete),
        1 => (100u16..400, 0i32..12).prop_map(|(n, v)| Op::Bulk(n, v)),
        2 => (id, v.clone(), 0u8..4, any::<bool>()).prop_map(|(i, v, t, c)| Op::Prepared(i, v, t, c)),
        1 => Just(Op::Gc),
        1 => Just(Op::Checkpoint),
        1 => Just(Op::Crash),
        1 => Just(Op::Reopen),
        3 => (v.clone(), v, any::<bool>(), 1usize..6).prop_map(|(a, b, r, p)| Op::Query(a, b, r, p)),
    ]
}

fn text(t: u8) -> String {
    ["", "a", "ab", "b"][t as usize].to_owned()
}

/// Checks every index answer against the model at `ts`.
fn verify(
    shard: &Shard,
    model: &Model,
    ts: u64,
    lo: Option<i32>,
    hi: Option<i32>,
    rev: bool,
    page: usize,
) {
    // Index on v: rows with lo <= v <= hi (None bounds: unbounded; NULLs sort last).
    let start = lo.map_or(Bound::Unbounded, |l| Bound::Included(v_key(Some(l))));
    let end = hi.map_or(Bound::Unbounded, |h| {
        Bound::Excluded(crate::storage::prefix_successor(&v_key(Some(h))).unwrap())
    });
    let got = scan_all(shard, 10, start, end, rev, ts, page);
    let mut want: Vec<(Vec<u8>, i64)> = model
        .iter()
        .filter(|(_, (v, _))| match v {
            None => hi.is_none(),
            Some(v) => lo.is_none_or(|l| *v >= l) && hi.is_none_or(|h| *v <= h),
        })
        .map(|(id, (v, _))| (v_key(*v), *id))
        .collect();
    want.sort();
    if rev {
        want.reverse();
    }
    let want: Vec<i64> = want.into_iter().map(|(_, id)| id).collect();
    assert_eq!(
        got, want,
        "index t_v [{lo:?}, {hi:?}] reverse={rev} page={page}"
    );

    // Composite (t DESC, v): everything, in (t desc, v asc, id) order.
    let got = scan_all(shard, 11, Bound::Unbounded, Bound::Unbounded, rev, ts, page);
    let mut want: Vec<(Vec<u8>, i64)> = model
        .iter()
        .map(|(id, (v, t))| {
            let mut k = Vec::new();
            encode_key_value_desc(&Value::Text(t.clone()), DataType::Text, &mut k);
            k.extend(v_key(*v));
            (k, *id)
        })
        .collect();
    want.sort();
    if rev {
        want.reverse();
    }
    let want: Vec<i64> = want.into_iter().map(|(_, id)| id).collect();
    assert_eq!(got, want, "index t_t_desc_v reverse={rev}");
}

fn run(ops: Vec<Op>) {
    let dir = tempfile::tempdir().unwrap();
    let mut shard = open(dir.path());
    let mut model = Model::new();
    let mut ts = 1u64;
    let mut txid = 1u64;
    // Rows before the index exists: the bulk build must pick them up.
    for id in 0..40 {
        ts += 1;
        let w = write(id, Some((Some(id as i32), text((id % 4) as u8))));
        shard
            .handle_sync(ShardRequest::Apply {
                commit_ts: ts,
                writes: vec![w],
            })
            .unwrap();
        model.insert(id, (Some(id as i32), text((id % 4) as u8)));
    }
    for spec in [spec_v(), spec_tv()] {
        shard
            .handle_sync(ShardRequest::CreateIndex { spec, read_ts: ts })
            .unwrap();
    }
    for op in ops {
        match op {
            Op::Put(id, v, t) => {
                ts += 1;
                shard
                    .handle_sync(ShardRequest::Apply {
                        commit_ts: ts,
                        writes: vec![write(id, Some((v, text(t))))],
                    })
                    .unwrap();
                model.insert(id, (v, text(t)));
            }
            Op::Bulk(n, v) => {
                ts += 1;
                let writes = (0..n as i64)
                    .map(|i| {
                        let row = (Some((v + i as i32) % 12), text((i % 4) as u8));
                        model.insert(100 + i, row.clone());
                        write(100 + i, Some(row))
                    })
                    .collect();
                shard
                    .handle_sync(ShardRequest::Apply {
                        commit_ts: ts,
                        writes,
                    })
                    .unwrap();
            }
            Op::Delete(id) => {
                ts += 1;
                shard
                    .handle_sync(ShardRequest::Apply {
                        commit_ts: ts,
                        writes: vec![write(id, None)],
                    })
                    .unwrap();
                model.remove(&id);
            }
            Op::Prepared(id, v, t, commit) => {
                txid += 1;
                shard
                    .handle_sync(ShardRequest::Prepare {
                        txid,
                        writes: vec![write(id, Some((v, text(t))))],
                    })
                    .unwrap();
                verify(&shard, &model, ts, None, None, false, 7);
                if commit {
                    ts += 1;
                    shard
                        .handle_sync(ShardRequest::Commit {
                            txid,
                            commit_ts: ts,
                        })
                        .unwrap();
                    model.insert(id, (v, text(t)));
                } else {
                    shard.handle_sync(ShardRequest::Abort { txid }).unwrap();
                }
            }
            Op::Gc => {
                shard.handle_sync(ShardRequest::GcWatermark { ts }).unwrap();
                // Every dead entry was collected, across restarts and crashes too: one
                // entry per live row.
                for s in check_indexes(&shard) {
                    assert_eq!(s.entries, model.len() as u64, "entries of {}", s.name);
                }
            }
            Op::Checkpoint => shard.indexes.checkpoint(&shard.engine).unwrap(),
            Op::Crash => {
                shard.crash();
                shard = open(dir.path());
                check_indexes(&shard);
            }
            Op::Reopen => {
                drop(shard);
                shard = open(dir.path());
                check_indexes(&shard);
            }
            Op::Query(lo, hi, rev, page) => verify(&shard, &model, ts, lo, hi, rev, page),
        }
    }
    verify(&shard, &model, ts, None, None, false, 1000);
    check_indexes(&shard);
    // Unique probes see exactly the rows holding a value.
    for v in 0..12 {
        let ShardResponse::UniqueHits(hits) = shard
            .handle_sync(ShardRequest::UniqueCheck {
                index_id: 10,
                probes: vec![UniqueProbe {
                    key: v_key(Some(v)),
                }],
                txn: None,
            })
            .unwrap()
        else {
            panic!("hits expected");
        };
        let mut got: Vec<Vec<u8>> = hits.into_iter().map(|(_, k)| k).collect();
        got.sort();
        let mut want: Vec<Vec<u8>> = model
            .iter()
            .filter(|(_, (mv, _))| *mv == Some(v))
            .map(|(id, _)| row_key(*id))
            .collect();
        want.sort();
        assert_eq!(got, want, "unique probe {v}");
    }
    // A crash right at the end, then everything again.
    shard.crash();
    let shard = open(dir.path());
    verify(&shard, &model, ts, None, None, true, 3);
    check_indexes(&shard);
}

proptest! {
    #![proptest_config(ProptestConfig {
        // PROPTEST_CASES raises it for soak runs.
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(32),
        ..ProptestConfig::default()
    })]
    #[test]
    fn indexes_match_a_model_through_writes_gc_and_crashes(ops in prop::collection::vec(op(), 1..120)) {
        run(ops);
    }
}

#[test]
fn many_writes_force_checkpoints_and_wal_trimming() {
    let dir = tempfile::tempdir().unwrap();
    let shard = open(dir.path());
    shard
        .handle_sync(ShardRequest::CreateIndex {
            spec: spec_v(),
            read_ts: 1,
        })
        .unwrap();
    let mut model = Model::new();
    for i in 0..3000i64 {
        let v = Some(((i * 7919) % 1000) as i32);
        shard
            .handle_sync(ShardRequest::Apply {
                commit_ts: i as u64 + 2,
                writes: vec![write(i % 1500, Some((v, String::new())))],
            })
            .unwrap();
        model.insert(i % 1500, (v, String::new()));
    }
    let ShardResponse::Stats(stats) = shard.handle_sync(ShardRequest::Stats).unwrap() else {
        panic!()
    };
    assert!(stats.pool.checkpoints > 0, "{:?}", stats.pool);
    assert!(stats.pool.evictions > 0, "{:?}", stats.pool);
    // The WAL does not grow without bound: checkpoints let flushed segments go.
    assert!(
        stats.storage.wal_segments < 8,
        "{} segments",
        stats.storage.wal_segments
    );
    shard.crash();
    let shard = open(dir.path());
    let got = scan_all(
        &shard,
        10,
        Bound::Unbounded,
        Bound::Unbounded,
        false,
        u64::MAX,
        100,
    );
    let mut want: Vec<(Vec<u8>, i64)> = model.iter().map(|(id, (v, _))| (v_key(*v), *id)).collect();
    want.sort();
    assert_eq!(got, want.into_iter().map(|(_, id)| id).collect::<Vec<_>>());
    check_indexes(&shard);
}

/// Creates index `t_v` on an empty table, then writes `n` rows with scattered `v` values in
/// one write set at timestamp 2.
fn index_and_bulk_write(shard: &Shard, n: i64) {
    shard
        .handle_sync(ShardRequest::CreateIndex {
            spec: spec_v(),
            read_ts: 1,
        })
        .unwrap();
    let writes: Vec<RowWrite> = (0..n)
        .map(|i| {
            write(
                i,
                Some((Some(((i * 7919) % (n + 1)) as i32), String::new())),
            )
        })
        .collect();
    shard
        .handle_sync(ShardRequest::Apply {
            commit_ts: 2,
            writes,
        })
        .unwrap();
}

/// One statement may dirty far more pages than the pool holds: it checkpoints as it goes.
#[test]
fn one_write_set_larger_than_the_pool() {
    let dir = tempfile::tempdir().unwrap();
    let shard = open(dir.path());
    index_and_bulk_write(&shard, 4000);
    let got = scan_all(
        &shard,
        10,
        Bound::Unbounded,
        Bound::Unbounded,
        false,
        2,
        500,
    );
    assert_eq!(got.len(), 4000);
    shard.crash();
    let shard = open(dir.path());
    let got = scan_all(&shard, 10, Bound::Unbounded, Bound::Unbounded, true, 2, 500);
    assert_eq!(got.len(), 4000);
    check_indexes(&shard);
}

/// A record whose changes exceed the pool at recovery (the pool was larger when it was
/// written): replay checkpoints midway instead of failing to open.
#[test]
fn recovery_replays_a_record_larger_than_a_smaller_pool() {
    let dir = tempfile::tempdir().unwrap();
    let big = IndexOptions {
        pool_bytes: 4 << 20,
        ..index_opts()
    };
    let shard = Shard::open_with(0, dir.path(), engine_opts(), big, Default::default()).unwrap();
    index_and_bulk_write(&shard, 3000);
    shard.crash();
    let shard = open(dir.path());
    let got = scan_all(
        &shard,
        10,
        Bound::Unbounded,
        Bound::Unbounded,
        false,
        2,
        700,
    );
    assert_eq!(got.len(), 3000);
    check_indexes(&shard);
}

/// Dropping the last index forgets its GC state, so a later index's recovery does not reach
/// back into WAL that was deleted meanwhile.
#[test]
fn recreated_index_recovers_after_its_predecessors_wal_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let shard = open(dir.path());
    shard
        .handle_sync(ShardRequest::CreateIndex {
            spec: spec_v(),
            read_ts: 1,
        })
        .unwrap();
    let mut ts = 1;
    // Updates make GC candidates; a clean close saves them.
    for i in 0..400i64 {
        ts += 1;
        shard
            .handle_sync(ShardRequest::Apply {
                commit_ts: ts,
                writes: vec![write(i % 20, Some((Some((i % 7) as i32), "x".repeat(40))))],
            })
            .unwrap();
    }
    drop(shard);
    let shard = open(dir.path());
    shard
        .handle_sync(ShardRequest::DropIndex { index_id: 10 })
        .unwrap();
    // Enough unindexed writes that the old WAL segments are flushed and deleted.
    for i in 0..2000i64 {
        ts += 1;
        shard
            .handle_sync(ShardRequest::Apply {
                commit_ts: ts,
                writes: vec![write(1000 + i, Some((None, "y".repeat(60))))],
            })
            .unwrap();
    }
    shard.engine.flush().unwrap();
    shard
        .handle_sync(ShardRequest::CreateIndex {
            spec: spec_tv(),
            read_ts: ts,
        })
        .unwrap();
    // A crash before anything checkpoints the new index.
    shard.crash();
    let shard = open(dir.path());
    let got = scan_all(
        &shard,
        11,
        Bound::Unbounded,
        Bound::Unbounded,
        false,
        ts,
        500,
    );
    assert_eq!(got.len(), 20 + 2000);
    check_indexes(&shard);
}
