//! The shard boundary: every request the coordinator makes of a shard is a serializable message.
//!
//! ```text
//!  coordinator ──ShardRequest──▶ ShardClient ──▶ shard (its own storage engine)
//!              ◀─ShardResponse──
//! ```
//!
//! Nothing above this module touches a shard's memory: the planner and the transaction
//! coordinator only build [`ShardRequest`]s and read [`ShardResponse`]s. The embedded default uses
//! [`LocalShardClient`], which calls the shard in the same process; cluster mode adds a TCP client
//! implementing the same trait, so the planner does not change.
//!
//! Requests carry engine-level keys (see [`crate::shard::keys`]) and encoded rows, and filters as
//! bound expressions ([`crate::sql::expr::Expr`], serializable, free of subqueries and parameters)
//! so that filtering runs on the shard and only matching rows cross the boundary.

use crate::error::SqlError;
use crate::shard::Shard;
use crate::sql::aggregate::AggState;
use crate::sql::expr::Expr;
use crate::sql::plan::{AggCall, SortKey};
use crate::txn::TxnCtx;
use crate::types::{DataType, Row};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::ops::Bound;
use std::sync::Arc;

/// One key's new state: `Some(row bytes)` to write, `None` to delete.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RowWrite {
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
}

/// A range scan over one table's rows on one shard.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScanRequest {
    /// Engine-key bounds (they include the table prefix).
    pub start: Bound<Vec<u8>>,
    pub end: Bound<Vec<u8>>,
    pub read_ts: u64,
    /// At most this many stored rows are examined per request; the response says where to resume.
    pub limit: usize,
    /// Rows not satisfying the filter (NULL counts as false) are not returned.
    pub filter: Option<Expr>,
    /// The transaction reading, if any: it sees its own intents (and, READ UNCOMMITTED,
    /// everyone's); SERIALIZABLE takes a shared range lock on the scanned range first.
    pub txn: Option<TxnCtx>,
}

/// One column of an index key: which row column, its type (for the key encoding) and its order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexColumn {
    /// Position of the column in the table's row.
    pub ordinal: usize,
    pub ty: DataType,
    /// DESC: the complemented key encoding, so NULLs come first (PostgreSQL's DESC default).
    pub desc: bool,
}

/// What a shard needs to maintain and use one secondary index on its part of a table. Stored
/// in the index file itself, so a shard knows its indexes without the catalog.
///
/// An index entry is `encode_key_tuple(index column values) ‖ encoded primary key` (the bytes
/// after the table prefix of the row's engine key), so entries are unique even when index
/// values repeat, and a reader finds the row from the entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexSpec {
    pub index_id: u32,
    pub table_id: u32,
    pub name: String,
    pub columns: Vec<IndexColumn>,
    pub unique: bool,
}

/// A range scan through a secondary index on one shard. The shard walks the entries within the
/// bounds in index order (descending if `reverse`), reads each entry's row at `read_ts`, keeps it
/// only if that row version still has the entry's key (so entries of other versions and of
/// uncommitted writes are skipped) and passes `filter`, and returns the rows in index order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IndexScanRequest {
    pub index_id: u32,
    /// Bounds on entry keys: memcomparable index-tuple prefixes. Because an entry continues
    /// after its index values (with the primary key), "all entries with prefix p" is
    /// `[Included(p), Excluded(prefix_successor(p)))`.
    pub start: Bound<Vec<u8>>,
    pub end: Bound<Vec<u8>>,
    pub reverse: bool,
    pub read_ts: u64,
    /// At most this many entries are examined per request; the response says where to resume.
    pub limit: usize,
    pub filter: Option<Expr>,
    /// As for [`ScanRequest::txn`]; SERIALIZABLE locks the entry range and each row read.
    pub txn: Option<TxnCtx>,
}

/// Engine-key (or index-entry) bounds of one range.
pub type KeyBounds = (Bound<Vec<u8>>, Bound<Vec<u8>>);

/// Where a pushed-down operator reads its rows on one shard.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum PushedSource {
    /// A table's rows in engine-key order within the bounds (as [`ScanRequest`]).
    Table {
        start: Bound<Vec<u8>>,
        end: Bound<Vec<u8>>,
    },
    /// Index entry ranges walked in the order given (as [`IndexScanRequest`] each).
    Index {
        index_id: u32,
        ranges: Vec<KeyBounds>,
        reverse: bool,
    },
}

/// The operator a shard runs over the rows of a [`PushdownRequest`] (see `sql/pushdown.rs`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ShardOp {
    /// Hash aggregation into partial states (`sql/aggregate.rs`), answered with `Partials`.
    Aggregate {
        group_by: Vec<Expr>,
        group_types: Vec<DataType>,
        aggs: Vec<AggCall>,
    },
    /// Drops rows equal (in their first `types.len()` columns) to an earlier one; answered
    /// with `PushedRows` in first-seen order.
    Distinct { types: Vec<DataType> },
    /// Keeps the first `n` rows by `keys`, ties kept in scan order; answered with
    /// `PushedRows` in scan order (so the coordinator's stable sort breaks ties exactly as it
    /// would over every row).
    TopN { keys: Vec<SortKey>, n: usize },
}

/// Scan-and-compute on one shard: rows of `source` at `read_ts` (through the transaction's
/// view, as plain scans read them) that pass `filter` are projected by `project` and fed to
/// `op`. The shard stops after examining `max_rows` stored rows (or index entries) or once
/// `op` holds `max_bytes`, and answers with what it has and where to resume, so neither its
/// memory nor one answer is unbounded; the caller merges the answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PushdownRequest {
    pub source: PushedSource,
    pub read_ts: u64,
    pub filter: Option<Expr>,
    pub txn: Option<TxnCtx>,
    pub project: Option<Vec<Expr>>,
    pub op: ShardOp,
    pub max_rows: usize,
    pub max_bytes: usize,
}

/// Where a [`PushdownRequest`] stopped: after engine key (or index entry) `after` in range
/// `range` of its source, or at that range's start if `after` is `None`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushedResume {
    pub range: usize,
    pub after: Option<Vec<u8>>,
}

impl PushdownRequest {
    /// Narrows the source to what follows `resume` (the next request of a paged pushdown).
    pub fn resume_from(&mut self, resume: PushedResume) {
        let Some(after) = resume.after.map(Bound::Excluded) else {
            if let PushedSource::Index { ranges, .. } = &mut self.source {
                ranges.drain(..resume.range.min(ranges.len()));
            }
            return;
        };
        match &mut self.source {
            PushedSource::Table { start, .. } => *start = after,
            PushedSource::Index {
                ranges, reverse, ..
            } => {
                ranges.drain(..resume.range.min(ranges.len()));
                if let Some((start, end)) = ranges.first_mut() {
                    if *reverse {
                        *end = after;
                    } else {
                        *start = after;
                    }
                }
            }
        }
    }
}

/// One key a transaction writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TxnWrite {
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
    /// An INSERT: the write is refused (reported as a duplicate) if the key holds a row.
    pub must_not_exist: bool,
}

/// A locked key's newest state, as a writer sees it once it holds the exclusive lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyState {
    /// The transaction itself wrote the key.
    Own,
    /// The newest committed version: its commit timestamp (0 if there is none) and whether
    /// it is a row or a deletion.
    Committed { ts: u64, exists: bool },
}

/// One value tuple to check against a unique index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UniqueProbe {
    /// The memcomparable encoding of the index columns' values (no primary-key suffix).
    pub key: Vec<u8>,
}

/// Health and size of one index on one shard.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IndexStats {
    pub index_id: u32,
    pub table_id: u32,
    pub name: String,
    pub entries: u64,
    pub height: u32,
    pub pages: u64,
    pub leaf_pages: u64,
    pub dirty_pages: u64,
    pub file_bytes: u64,
    /// WAL position of this index's last checkpoint.
    pub checkpoint_lsn: u64,
    /// Set only by `ShardRequest::CheckIndexes`: `None` if the invariant check passed,
    /// otherwise what it found.
    pub check_error: Option<String>,
}

/// The shard's buffer pool (shared by all its indexes).
pub type PoolStats = crate::index::PoolCounters;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ShardRequest {
    /// A data request routed with shard-map `map_version` (reading at `read_ts`, if it
    /// reads): the shard refuses it with [`crate::error::STALE_SHARD_MAP`] unless that is the
    /// version it holds and the read is not older than the version's effective timestamp.
    Routed {
        map_version: u64,
        read_ts: Option<u64>,
        request: Box<ShardRequest>,
    },
    /// Makes `map_version` (effective from commit timestamp `effective_ts`) the version this
    /// shard accepts requests under.
    InstallMap {
        map_version: u64,
        effective_ts: u64,
    },
    Scan(ScanRequest),
    /// Point read of one row by engine key.
    Get {
        key: Vec<u8>,
        read_ts: u64,
        txn: Option<TxnCtx>,
    },
    /// Takes exclusive locks on row keys (waiting, or failing by the deadlock policy) and
    /// reports each key's newest state, so the writer can tell whether it changed after its
    /// snapshot. Locks are held until the transaction ends.
    LockRows {
        txn: TxnCtx,
        keys: Vec<Vec<u8>>,
    },
    /// Records a transaction's writes as intents (locking each key and the index entries the
    /// write adds or removes). Answered with `Duplicates`: the positions of `must_not_exist`
    /// writes whose key holds a row — if any, nothing of the request was written.
    Write {
        txn: TxnCtx,
        writes: Vec<TxnWrite>,
    },
    /// One-phase commit of everything the transaction wrote on this shard; releases its
    /// locks. Answered with the commit timestamp.
    CommitTxn {
        txid: u64,
    },
    /// First phase of two-phase commit of the transaction's intents: durable, locks kept.
    /// Answered with the shard's clock, which the coordinator's commit timestamp must pass.
    PrepareTxn {
        txid: u64,
    },
    /// Ends a transaction here without a commit: discards its intents (or aborts it if
    /// prepared) and releases its locks. With `wounded_by`, it was wounded by that older
    /// transaction and stays known as aborted (its statements fail with 40P01) until the
    /// coordinator's own `AbortTxn`; a prepared transaction cannot be wounded.
    AbortTxn {
        txid: u64,
        wounded_by: Option<u64>,
    },
    /// A transaction that wrote nothing here is done: releases its (read) locks.
    ReleaseTxn {
        txid: u64,
    },
    /// ROLLBACK TO SAVEPOINT: undoes the intents written after statement `seq`.
    RollbackTo {
        txid: u64,
        seq: u32,
    },
    /// Every lock held or awaited here, and the transactions known here.
    Locks,
    /// One-phase commit of a set of writes, atomic on this shard.
    Apply {
        commit_ts: u64,
        writes: Vec<RowWrite>,
    },
    /// First phase of two-phase commit: durable, invisible until `Commit`.
    Prepare {
        txid: u64,
        writes: Vec<RowWrite>,
    },
    Commit {
        txid: u64,
        commit_ts: u64,
    },
    Abort {
        txid: u64,
    },
    /// Prepared transactions whose outcome this shard does not know.
    InDoubt,
    /// Highest commit timestamp this shard has applied.
    MaxCommittedTs,
    Stats,
    /// Versions no reader at or above `ts` can see may be garbage-collected; nothing will
    /// commit at or below `ts` any more (see `txn::snapshots`).
    GcWatermark {
        ts: u64,
    },
    /// Builds `spec`'s index from the table's rows visible at `read_ts` (bulk-loaded bottom
    /// up) and maintains it from then on. The caller keeps writes to the table out until the
    /// build returned. Durable when it returns.
    CreateIndex {
        spec: IndexSpec,
        read_ts: u64,
    },
    /// Forgets an index and deletes its file. Dropping an unknown index is not an error.
    DropIndex {
        index_id: u32,
    },
    /// Drops every index whose id is not listed (reconciles with the catalog at startup,
    /// after a crash between a shard-side and a catalog-side change).
    RetainIndexes {
        index_ids: Vec<u32>,
    },
    IndexScan(IndexScanRequest),
    /// For each probe, the engine keys of rows whose latest committed version has exactly
    /// those values in the (unique) index's columns. The caller ignores the rows it is
    /// writing itself and probes with NULLs never (NULLs are distinct).
    UniqueCheck {
        index_id: u32,
        probes: Vec<UniqueProbe>,
        /// The checking transaction: it takes an exclusive lock on each probed value (so a
        /// concurrent insert of the same value waits), and its own intents count.
        txn: Option<TxnCtx>,
    },
    /// Runs the page-level invariant checker on every index of this shard.
    CheckIndexes,
    /// Aggregation, deduplication or top-N over a scan, on the shard (`sql/pushdown.rs`).
    Pushdown(PushdownRequest),
    /// A join run on the shard (`sql/join.rs`): co-located (both inputs local) or broadcast
    /// (one input shipped with the request).
    Join(JoinRequest),
    /// About how many rows of a table the shard holds (`Engine::estimate_keys`), for choosing
    /// how joins run. Answered with `Estimate`.
    EstimateRows {
        table_id: u32,
    },
}

/// A table's rows on the shard that pass `filter`, read from `source`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinInput {
    pub source: PushedSource,
    pub filter: Option<Expr>,
}

/// One input of a join run on a shard.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum JoinSide {
    /// The shard's own rows of a table.
    Local(JoinInput),
    /// Rows the coordinator computed and broadcast to every shard of the other input (one
    /// copy shared by the requests to all shards).
    Shipped(std::sync::Arc<Vec<Row>>),
}

/// Joins two inputs on the shard: co-located (two tables placed on the join key with the same
/// ring, so every matching pair is on one shard) or broadcast (the coordinator ships the small
/// input to each shard of the large one). The shard holds the shipped input (or, co-located,
/// the right one) and streams the other past it a page at a time, holding at most `max_bytes`
/// of held rows and output (else 53200), and answers `Joined`. `kind` is what the shard
/// computes: the coordinator pads a shipped side's unmatched rows itself (a shard sees only
/// part of the other side), asking for `shipped_matches` when it must.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinRequest {
    pub left: JoinSide,
    pub right: JoinSide,
    pub kind: crate::sql::plan::JoinKind,
    pub on: Option<Expr>,
    pub equi: Vec<(Expr, Expr, DataType)>,
    pub left_width: usize,
    pub right_width: usize,
    pub read_ts: u64,
    pub txn: Option<TxnCtx>,
    pub max_bytes: usize,
    /// Answer which shipped rows found a match (the coordinator pads the others once).
    pub shipped_matches: bool,
}

impl ShardRequest {
    /// `request` stamped with the map version it was routed with (0: not routed, accepted
    /// under any version — maintenance that addresses shards directly).
    pub fn routed(map_version: u64, read_ts: Option<u64>, request: ShardRequest) -> ShardRequest {
        if map_version == 0 {
            return request;
        }
        ShardRequest::Routed {
            map_version,
            read_ts,
            request: Box::new(request),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShardStats {
    pub shard: usize,
    pub storage: crate::storage::EngineStats,
    pub indexes: Vec<IndexStats>,
    pub pool: PoolStats,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ShardResponse {
    /// A join's rows, and (when asked) the positions of the shipped rows that matched.
    Joined {
        rows: Vec<Row>,
        shipped_matched: Vec<u32>,
    },
    /// A row-count estimate.
    Estimate(u64),
    Rows {
        rows: Vec<Row>,
        /// Set when the scan stopped at `limit`: resume with `Bound::Excluded(resume_after)`.
        resume_after: Option<Vec<u8>>,
    },
    Row(Option<Row>),
    Done,
    TxIds(Vec<u64>),
    Timestamp(u64),
    Stats(Box<ShardStats>),
    /// `UniqueCheck`: (probe position, engine key of a row holding those values).
    UniqueHits(Vec<(usize, Vec<u8>)>),
    /// `CheckIndexes`.
    IndexChecks(Vec<IndexStats>),
    /// `LockRows`: one state per key, in request order.
    KeyStates(Vec<KeyState>),
    /// `Write`: positions of refused `must_not_exist` writes.
    Duplicates(Vec<usize>),
    /// `Pushdown` of an aggregate: each group's key values and partial states, in first-seen
    /// order.
    Partials {
        groups: Vec<(Row, Vec<AggState>)>,
        resume: Option<PushedResume>,
    },
    /// `Pushdown` of DISTINCT or top-N: the rows kept.
    PushedRows {
        rows: Vec<Row>,
        resume: Option<PushedResume>,
    },
    /// `Locks`.
    Locks {
        locks: Vec<crate::txn::locks::LockInfo>,
        txns: Vec<crate::shard::txn::ShardTxnInfo>,
    },
}

/// How the coordinator reaches one shard.
#[async_trait]
pub trait ShardClient: Send + Sync {
    async fn call(&self, request: ShardRequest) -> Result<ShardResponse, SqlError>;
}

/// In-process client: the request is handled by a shard living in this process.
///
/// The shard's work (including fsync) runs inline on the calling thread, so callers must be on a
/// thread that may block — the SQL executor runs on tokio's blocking pool for this reason.
pub struct LocalShardClient {
    shard: Arc<Shard>,
}

impl LocalShardClient {
    pub fn new(shard: Arc<Shard>) -> LocalShardClient {
        LocalShardClient { shard }
    }
}

#[async_trait]
impl ShardClient for LocalShardClient {
    async fn call(&self, request: ShardRequest) -> Result<ShardResponse, SqlError> {
        self.shard.handle(request).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_serialize() {
        let req = ShardRequest::Scan(ScanRequest {
            start: Bound::Included(vec![1, 2]),
            end: Bound::Unbounded,
            read_ts: 7,
            limit: 10,
            filter: Some(Expr::Literal(crate::types::Value::Bool(true))),
            txn: None,
        });
        let text = serde_json::to_string(&req).unwrap();
        let back: ShardRequest = serde_json::from_str(&text).unwrap();
        assert!(matches!(back, ShardRequest::Scan(s) if s.limit == 10 && s.read_ts == 7));
    }
}
