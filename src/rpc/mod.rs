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
use crate::sql::expr::Expr;
use crate::types::Row;
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
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ShardRequest {
    Scan(ScanRequest),
    /// Point read of one row by engine key.
    Get {
        key: Vec<u8>,
        read_ts: u64,
    },
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
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShardStats {
    pub shard: usize,
    pub storage: crate::storage::EngineStats,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ShardResponse {
    Rows {
        rows: Vec<Row>,
        /// Set when the scan stopped at `limit`: resume with `Bound::Excluded(resume_after)`.
        resume_after: Option<Vec<u8>>,
    },
    Row(Option<Row>),
    Done,
    TxIds(Vec<u64>),
    Timestamp(u64),
    Stats(ShardStats),
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
        self.shard.handle(request)
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
        });
        let text = serde_json::to_string(&req).unwrap();
        let back: ShardRequest = serde_json::from_str(&text).unwrap();
        assert!(matches!(back, ShardRequest::Scan(s) if s.limit == 10 && s.read_ts == 7));
    }
}
