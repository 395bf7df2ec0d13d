//! System views: read-only relations computed from the shards' storage statistics.
//!
//! Operators need to see what each shard's storage engine is doing (memtable size, WAL growth,
//! SSTables per level, bloom filter and block cache effectiveness, amplification) without a
//! separate tool or protocol. Exposing the numbers as relations means every client that speaks
//! SQL can read them, and every SQL feature works on them for free: `WHERE`, `ORDER BY`,
//! aggregates, joins with each other or with user tables, views over them.
//!
//! A system view is a *virtual table*: the catalog resolves its name like any relation
//! ([`super::Relation::System`]), the binder plans it as a leaf ([`crate::sql::plan::Plan::SystemScan`]),
//! and at execution time the executor asks every shard for [`ShardRequest::Stats`] through the
//! normal `ShardClient` path and turns the answers into rows with [`SystemView::rows`]. From there
//! on the rows flow through the ordinary operators. Nothing is stored, so the views are always
//! current and cost nothing until queried.
//!
//! Each view's columns are declared once, together with the function that computes the column's
//! value, so the schema the client sees and the values it gets cannot drift apart.
//!
//! The names are reserved: creating a table or view with one of them fails with 42P07 (the
//! relation already exists), and writing to or dropping one fails with 42809. PostgreSQL lets a
//! user table in `public` share a name with a `pg_catalog` relation, but sharddb has no schemas
//! yet, so a shared name could only mean one of the two; reserving it keeps every statement
//! unambiguous. Lookups see system views before stored relations (as `pg_catalog` comes first in
//! PostgreSQL's search path), and a CTE of the same name shadows both, as in PostgreSQL.
//!
//! [`ShardRequest::Stats`]: crate::rpc::ShardRequest::Stats

use crate::error::{SqlError, sqlstate};
use crate::rpc::{IndexStats, ShardStats};
use crate::shard::txn::{Phase, ShardTxnInfo};
use crate::storage::LevelStats;
use crate::txn::locks::LockInfo;
use crate::types::{DataType, Row, Value};
use serde::{Deserialize, Serialize};

/// A built-in, read-only relation whose rows are computed from every shard's [`ShardStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SystemView {
    /// `sharddb_storage`: one row per shard, ordered by shard.
    Storage,
    /// `sharddb_storage_levels`: one row per shard and LSM level, ordered by shard then level.
    StorageLevels,
    /// `sharddb_indexes`: one row per shard and secondary index (B+tree shape and size, and the
    /// shard's buffer-pool counters), ordered by shard then index name.
    Indexes,
    /// `sharddb_index_check`: runs the page-invariant checker (`ShardRequest::CheckIndexes`) on
    /// every shard when read; one row per shard and index.
    IndexCheck,
    /// `sharddb_locks`: every lock held or awaited, one row per shard and lock, from each
    /// shard's lock manager (`ShardRequest::Locks`).
    Locks,
    /// `sharddb_transactions`: every live transaction the coordinator runs (explicit blocks
    /// and autocommit statements), with its phase on each shard it touched.
    Transactions,
}

/// `sharddb_locks` columns.
const LOCK_COLUMNS: &[(&str, DataType)] = &[
    ("shard", DataType::Int4),
    ("txid", DataType::Int8),
    ("mode", DataType::Text),
    ("target", DataType::Text),
    ("granted", DataType::Bool),
    ("waiting_for", DataType::Int8),
    ("deadlock_policy", DataType::Text),
    ("age_ms", DataType::Int8),
];

/// `sharddb_transactions` columns.
const TRANSACTION_COLUMNS: &[(&str, DataType)] = &[
    ("txid", DataType::Int8),
    ("isolation", DataType::Text),
    ("deadlock_policy", DataType::Text),
    ("state", DataType::Text),
    ("commit_protocol", DataType::Text),
    ("shards", DataType::Text),
    ("written_shards", DataType::Text),
    ("shard_phases", DataType::Text),
    ("wounded_by", DataType::Int8),
    ("age_ms", DataType::Int8),
];

/// A shard list as `{0,2}` (PostgreSQL's array text form).
fn shard_list(shards: &[usize]) -> Value {
    let parts: Vec<String> = shards.iter().map(usize::to_string).collect();
    text(&format!("{{{}}}", parts.join(",")))
}

/// One column of a system view: its name, SQL type, and how its value is computed.
struct Column<F> {
    name: &'static str,
    ty: DataType,
    value: F,
}

type StorageFn = fn(&ShardStats) -> Value;
type LevelFn = fn(&ShardStats, &LevelStats) -> Value;
type IndexFn = fn(&ShardStats, &IndexStats) -> Value;
type CheckFn = fn(usize, &IndexStats) -> Value;

/// An `integer` value. Counts that could exceed `i32` saturate rather than break the type's range
/// invariant (see [`crate::types`]); no real shard or level count comes near it.
fn int4(n: usize) -> Value {
    Value::Int(i64::try_from(n).map_or(i64::from(i32::MAX), |n| n.min(i64::from(i32::MAX))))
}

/// A `bigint` value from an unsigned counter, saturating at `i64::MAX`.
fn int8(n: u64) -> Value {
    Value::Int(i64::try_from(n).unwrap_or(i64::MAX))
}

/// `part / whole` as `double precision`, or NULL when `whole` is 0 (the ratio is undefined, not 0).
fn ratio(part: u64, whole: u64) -> Value {
    if whole == 0 {
        Value::Null
    } else {
        Value::Float(part as f64 / whole as f64)
    }
}

const STORAGE_COLUMNS: &[Column<StorageFn>] = &[
    Column {
        name: "shard",
        ty: DataType::Int4,
        value: |s| int4(s.shard),
    },
    Column {
        name: "memtable_bytes",
        ty: DataType::Int8,
        value: |s| int8(s.storage.memtable_bytes as u64),
    },
    Column {
        name: "immutable_memtables",
        ty: DataType::Int4,
        value: |s| int4(s.storage.immutable_memtables),
    },
    Column {
        name: "wal_bytes",
        ty: DataType::Int8,
        value: |s| int8(s.storage.wal_bytes),
    },
    Column {
        name: "wal_segments",
        ty: DataType::Int4,
        value: |s| int4(s.storage.wal_segments),
    },
    Column {
        name: "wal_records",
        ty: DataType::Int8,
        value: |s| int8(s.storage.wal_records),
    },
    Column {
        name: "wal_syncs",
        ty: DataType::Int8,
        value: |s| int8(s.storage.wal_syncs),
    },
    Column {
        name: "sstables",
        ty: DataType::Int4,
        value: |s| int4(s.storage.sstable_count),
    },
    Column {
        name: "sstable_bytes",
        ty: DataType::Int8,
        value: |s| int8(s.storage.sstable_bytes),
    },
    Column {
        name: "bloom_checks",
        ty: DataType::Int8,
        value: |s| int8(s.storage.bloom_checks),
    },
    Column {
        name: "bloom_negatives",
        ty: DataType::Int8,
        value: |s| int8(s.storage.bloom_negatives),
    },
    Column {
        name: "bloom_false_positives",
        ty: DataType::Int8,
        value: |s| int8(s.storage.bloom_false_positives),
    },
    // Not a cache-style hit rate: the fraction of filter checks answered "definitely absent",
    // i.e. where the filter saved a block read.
    Column {
        name: "bloom_hit_rate",
        ty: DataType::Float8,
        value: |s| ratio(s.storage.bloom_negatives, s.storage.bloom_checks),
    },
    Column {
        name: "cache_hits",
        ty: DataType::Int8,
        value: |s| int8(s.storage.cache_hits),
    },
    Column {
        name: "cache_misses",
        ty: DataType::Int8,
        value: |s| int8(s.storage.cache_misses),
    },
    Column {
        name: "cache_hit_rate",
        ty: DataType::Float8,
        value: |s| {
            let lookups = s.storage.cache_hits.saturating_add(s.storage.cache_misses);
            ratio(s.storage.cache_hits, lookups)
        },
    },
    Column {
        name: "cache_bytes",
        ty: DataType::Int8,
        value: |s| int8(s.storage.cache_bytes),
    },
    Column {
        name: "cache_capacity",
        ty: DataType::Int8,
        value: |s| int8(s.storage.cache_capacity),
    },
    Column {
        name: "flushes",
        ty: DataType::Int8,
        value: |s| int8(s.storage.flushes),
    },
    Column {
        name: "compactions",
        ty: DataType::Int8,
        value: |s| int8(s.storage.compactions),
    },
    Column {
        name: "write_stalls",
        ty: DataType::Int8,
        value: |s| int8(s.storage.write_stalls),
    },
    Column {
        name: "write_amplification",
        ty: DataType::Float8,
        value: |s| Value::Float(s.storage.write_amplification()),
    },
    Column {
        name: "space_amplification",
        ty: DataType::Float8,
        value: |s| Value::Float(s.storage.space_amplification()),
    },
];

const LEVEL_COLUMNS: &[Column<LevelFn>] = &[
    Column {
        name: "shard",
        ty: DataType::Int4,
        value: |s, _| int4(s.shard),
    },
    Column {
        name: "level",
        ty: DataType::Int4,
        value: |_, l| int4(l.level),
    },
    Column {
        name: "files",
        ty: DataType::Int4,
        value: |_, l| int4(l.files),
    },
    Column {
        name: "bytes",
        ty: DataType::Int8,
        value: |_, l| int8(l.bytes),
    },
];

fn text(s: &str) -> Value {
    Value::Text(s.to_string())
}

const INDEX_COLUMNS: &[Column<IndexFn>] = &[
    Column {
        name: "shard",
        ty: DataType::Int4,
        value: |s, _| int4(s.shard),
    },
    Column {
        name: "index_name",
        ty: DataType::Text,
        value: |_, i| text(&i.name),
    },
    Column {
        name: "index_id",
        ty: DataType::Int8,
        value: |_, i| int8(u64::from(i.index_id)),
    },
    Column {
        name: "table_id",
        ty: DataType::Int8,
        value: |_, i| int8(u64::from(i.table_id)),
    },
    Column {
        name: "entries",
        ty: DataType::Int8,
        value: |_, i| int8(i.entries),
    },
    Column {
        name: "height",
        ty: DataType::Int4,
        value: |_, i| int4(i.height as usize),
    },
    Column {
        name: "pages",
        ty: DataType::Int8,
        value: |_, i| int8(i.pages),
    },
    Column {
        name: "leaf_pages",
        ty: DataType::Int8,
        value: |_, i| int8(i.leaf_pages),
    },
    Column {
        name: "dirty_pages",
        ty: DataType::Int8,
        value: |_, i| int8(i.dirty_pages),
    },
    Column {
        name: "file_bytes",
        ty: DataType::Int8,
        value: |_, i| int8(i.file_bytes),
    },
    Column {
        name: "checkpoint_lsn",
        ty: DataType::Int8,
        value: |_, i| int8(i.checkpoint_lsn),
    },
    Column {
        name: "pool_capacity_pages",
        ty: DataType::Int8,
        value: |s, _| int8(s.pool.capacity_pages),
    },
    Column {
        name: "pool_resident_pages",
        ty: DataType::Int8,
        value: |s, _| int8(s.pool.resident_pages),
    },
    Column {
        name: "pool_hits",
        ty: DataType::Int8,
        value: |s, _| int8(s.pool.hits),
    },
    Column {
        name: "pool_misses",
        ty: DataType::Int8,
        value: |s, _| int8(s.pool.misses),
    },
    Column {
        name: "pool_evictions",
        ty: DataType::Int8,
        value: |s, _| int8(s.pool.evictions),
    },
    Column {
        name: "pool_hit_rate",
        ty: DataType::Float8,
        value: |s, _| ratio(s.pool.hits, s.pool.hits.saturating_add(s.pool.misses)),
    },
];

const CHECK_COLUMNS: &[Column<CheckFn>] = &[
    Column {
        name: "shard",
        ty: DataType::Int4,
        value: |shard, _| int4(shard),
    },
    Column {
        name: "index_name",
        ty: DataType::Text,
        value: |_, i| text(&i.name),
    },
    Column {
        name: "index_id",
        ty: DataType::Int8,
        value: |_, i| int8(u64::from(i.index_id)),
    },
    Column {
        name: "ok",
        ty: DataType::Bool,
        value: |_, i| Value::Bool(i.check_error.is_none()),
    },
    Column {
        name: "detail",
        ty: DataType::Text,
        value: |_, i| i.check_error.as_deref().map_or(Value::Null, text),
    },
    Column {
        name: "entries",
        ty: DataType::Int8,
        value: |_, i| int8(i.entries),
    },
];

/// What `sharddb_transactions` shows of one coordinator-side transaction.
pub struct TxnRow {
    pub txid: u64,
    pub isolation: &'static str,
    pub policy: String,
    pub state: &'static str,
    pub protocol: Option<&'static str>,
    pub shards: Vec<usize>,
    pub written: Vec<usize>,
    pub wounded_by: Option<u64>,
    pub age_ms: u64,
}

impl SystemView {
    /// Every system view, in the order documentation lists them.
    pub const ALL: [SystemView; 6] = [
        SystemView::Storage,
        SystemView::StorageLevels,
        SystemView::Indexes,
        SystemView::IndexCheck,
        SystemView::Locks,
        SystemView::Transactions,
    ];

    /// The system view called `name` (already case-folded), if any.
    pub fn lookup(name: &str) -> Option<SystemView> {
        SystemView::ALL.into_iter().find(|v| v.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            SystemView::Storage => "sharddb_storage",
            SystemView::StorageLevels => "sharddb_storage_levels",
            SystemView::Indexes => "sharddb_indexes",
            SystemView::IndexCheck => "sharddb_index_check",
            SystemView::Locks => "sharddb_locks",
            SystemView::Transactions => "sharddb_transactions",
        }
    }

    /// Column names and types, in row order.
    pub fn columns(self) -> Vec<(&'static str, DataType)> {
        match self {
            SystemView::Storage => STORAGE_COLUMNS.iter().map(|c| (c.name, c.ty)).collect(),
            SystemView::StorageLevels => LEVEL_COLUMNS.iter().map(|c| (c.name, c.ty)).collect(),
            SystemView::Indexes => INDEX_COLUMNS.iter().map(|c| (c.name, c.ty)).collect(),
            SystemView::IndexCheck => CHECK_COLUMNS.iter().map(|c| (c.name, c.ty)).collect(),
            SystemView::Locks => LOCK_COLUMNS.to_vec(),
            SystemView::Transactions => TRANSACTION_COLUMNS.to_vec(),
        }
    }

    /// The view's rows for one statistics snapshot of every shard, ordered by shard (and level).
    pub fn rows(self, stats: &[ShardStats]) -> Vec<Row> {
        let mut stats: Vec<&ShardStats> = stats.iter().collect();
        stats.sort_by_key(|s| s.shard);
        match self {
            SystemView::Storage => stats
                .into_iter()
                .map(|s| STORAGE_COLUMNS.iter().map(|c| (c.value)(s)).collect())
                .collect(),
            SystemView::StorageLevels => stats
                .into_iter()
                .flat_map(|s| {
                    let mut levels: Vec<&LevelStats> = s.storage.levels.iter().collect();
                    levels.sort_by_key(|l| l.level);
                    levels
                        .into_iter()
                        .map(move |l| LEVEL_COLUMNS.iter().map(|c| (c.value)(s, l)).collect())
                })
                .collect(),
            SystemView::Indexes => stats
                .into_iter()
                .flat_map(|s| {
                    let mut indexes: Vec<&IndexStats> = s.indexes.iter().collect();
                    indexes.sort_by(|a, b| a.name.cmp(&b.name));
                    indexes
                        .into_iter()
                        .map(move |i| INDEX_COLUMNS.iter().map(|c| (c.value)(s, i)).collect())
                })
                .collect(),
            // Built from other answers instead: see `check_rows`, `lock_rows`,
            // `transaction_rows`.
            SystemView::IndexCheck | SystemView::Locks | SystemView::Transactions => Vec::new(),
        }
    }

    /// `sharddb_locks` rows from every shard's lock table, by shard, granted first, oldest
    /// transaction first.
    pub fn lock_rows(locks: &[(usize, Vec<LockInfo>)]) -> Vec<Row> {
        let mut out = Vec::new();
        for (shard, locks) in locks {
            let mut locks: Vec<&LockInfo> = locks.iter().collect();
            locks.sort_by_key(|l| (!l.granted, l.txid));
            for l in locks {
                out.push(vec![
                    int4(*shard),
                    int8(l.txid),
                    text(&l.mode.to_string()),
                    text(&l.target),
                    Value::Bool(l.granted),
                    l.waiting_for.map_or(Value::Null, int8),
                    text(&l.policy.to_string()),
                    int8(l.age_ms),
                ]);
            }
        }
        out
    }

    /// `sharddb_transactions` rows: the coordinator's live transactions with each shard's
    /// phase for them (`shard:phase`, e.g. `0:active 2:prepared`), oldest first.
    pub fn transaction_rows(
        txns: &[TxnRow],
        shard_txns: &[(usize, Vec<ShardTxnInfo>)],
    ) -> Vec<Row> {
        txns.iter()
            .map(|t| {
                let phases: Vec<String> = shard_txns
                    .iter()
                    .filter_map(|(shard, list)| {
                        list.iter().find(|s| s.txid == t.txid).map(|s| {
                            let phase = match s.phase {
                                Phase::Active => "active",
                                Phase::Committing { .. } => "committing",
                                Phase::Prepared { .. } => "prepared",
                                Phase::Aborted { .. } => "aborted",
                            };
                            format!("{shard}:{phase}")
                        })
                    })
                    .collect();
                vec![
                    int8(t.txid),
                    text(t.isolation),
                    text(&t.policy),
                    text(t.state),
                    t.protocol.map_or(Value::Null, text),
                    shard_list(&t.shards),
                    shard_list(&t.written),
                    text(&phases.join(" ")),
                    t.wounded_by.map_or(Value::Null, int8),
                    int8(t.age_ms),
                ]
            })
            .collect()
    }

    /// `sharddb_index_check` rows from every shard's `CheckIndexes` answer (shard, results).
    pub fn check_rows(checks: &[(usize, Vec<IndexStats>)]) -> Vec<Row> {
        let mut out = Vec::new();
        for (shard, results) in checks {
            let mut results: Vec<&IndexStats> = results.iter().collect();
            results.sort_by(|a, b| a.name.cmp(&b.name));
            for i in results {
                out.push(CHECK_COLUMNS.iter().map(|c| (c.value)(*shard, i)).collect());
            }
        }
        out
    }

    /// The error for any attempt to change or drop the view (42809).
    pub fn read_only_error(self) -> SqlError {
        SqlError::new(
            sqlstate::WRONG_OBJECT_TYPE,
            format!("{} is a read-only system view", self.name()),
        )
        .with_detail("Its rows are computed from the shards' storage statistics on every read.")
    }

    /// The error for creating a relation with the view's name (42P07).
    pub fn name_taken_error(self) -> SqlError {
        SqlError::new(
            sqlstate::DUPLICATE_TABLE,
            format!("relation \"{}\" already exists", self.name()),
        )
        .with_detail(format!(
            "{} is a read-only system view; its name is reserved.",
            self.name()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::EngineStats;

    fn stats(shard: usize, storage: EngineStats) -> ShardStats {
        ShardStats {
            shard,
            storage,
            indexes: Vec::new(),
            pool: Default::default(),
        }
    }

    #[test]
    fn names_resolve_and_only_exact_names() {
        assert_eq!(
            SystemView::lookup("sharddb_storage"),
            Some(SystemView::Storage)
        );
        assert_eq!(
            SystemView::lookup("sharddb_storage_levels"),
            Some(SystemView::StorageLevels)
        );
        assert_eq!(SystemView::lookup("SHARDDB_STORAGE"), None);
        assert_eq!(SystemView::lookup("sharddb_storag"), None);
    }

    #[test]
    fn rows_match_columns_and_are_ordered_by_shard() {
        let level = |level, files, bytes| LevelStats {
            level,
            files,
            bytes,
        };
        let s1 = EngineStats {
            memtable_bytes: 10,
            bloom_checks: 4,
            bloom_negatives: 3,
            cache_hits: 1,
            cache_misses: 3,
            levels: vec![level(1, 2, 200), level(0, 1, 50)],
            ..EngineStats::default()
        };
        let input = vec![stats(1, s1), stats(0, EngineStats::default())];
        let rows = SystemView::Storage.rows(&input);
        let cols = SystemView::Storage.columns();
        assert!(rows.iter().all(|r| r.len() == cols.len()));
        let col = |name: &str| cols.iter().position(|(n, _)| *n == name).unwrap();
        assert_eq!(rows[0][col("shard")], Value::Int(0));
        assert_eq!(rows[1][col("shard")], Value::Int(1));
        assert_eq!(rows[1][col("memtable_bytes")], Value::Int(10));
        // Undefined ratios are NULL, not 0.
        assert_eq!(rows[0][col("bloom_hit_rate")], Value::Null);
        assert_eq!(rows[0][col("cache_hit_rate")], Value::Null);
        assert_eq!(rows[1][col("bloom_hit_rate")], Value::Float(0.75));
        assert_eq!(rows[1][col("cache_hit_rate")], Value::Float(0.25));

        let levels = SystemView::StorageLevels.rows(&input);
        assert_eq!(
            levels,
            vec![
                vec![Value::Int(1), Value::Int(0), Value::Int(1), Value::Int(50)],
                vec![Value::Int(1), Value::Int(1), Value::Int(2), Value::Int(200)],
            ]
        );
    }

    #[test]
    fn integers_stay_in_range() {
        assert_eq!(int4(usize::MAX), Value::Int(i64::from(i32::MAX)));
        assert_eq!(int8(u64::MAX), Value::Int(i64::MAX));
    }
}
