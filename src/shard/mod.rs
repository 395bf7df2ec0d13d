//! A shard: one storage engine instance and the request handler in front of it.
//!
//! The shard executes [`ShardRequest`]s against its own [`Engine`]: scans with pushed-down
//! filters, point reads, and atomic write sets (one-phase, or prepare/commit for two-phase
//! commit). It knows the key layout ([`keys`]) and the row encoding, but nothing about the
//! catalog: requests are self-contained, which is what lets the same shard run behind a TCP
//! server later.

pub mod keys;

use crate::error::{SqlError, sqlstate};
use crate::rpc::{RowWrite, ScanRequest, ShardRequest, ShardResponse, ShardStats};
use crate::sql::expr::EvalContext;
use crate::storage::{Engine, EngineOptions, StorageError, WriteBatch, WriteOp};
use crate::types::{Row, Value, row};
use std::ops::Bound;
use std::path::Path;

pub struct Shard {
    id: usize,
    engine: Engine,
}

pub fn storage_error(e: StorageError) -> SqlError {
    match &e {
        StorageError::Corruption { .. } => SqlError::new(sqlstate::DATA_CORRUPTED, e.to_string()),
        _ => SqlError::new(sqlstate::IO_ERROR, e.to_string()),
    }
}

impl Shard {
    pub fn open(id: usize, dir: &Path, options: EngineOptions) -> Result<Shard, StorageError> {
        let engine = Engine::open(dir, options)?;
        Ok(Shard { id, engine })
    }

    pub fn id(&self) -> usize {
        self.id
    }

    pub fn handle(&self, request: ShardRequest) -> Result<ShardResponse, SqlError> {
        match request {
            ShardRequest::Scan(scan) => self.scan(scan),
            ShardRequest::Get { key, read_ts } => {
                let found = self.engine.get(&key, read_ts).map_err(storage_error)?;
                let row = match found {
                    Some(bytes) => Some(row::decode_row(&bytes)?),
                    None => None,
                };
                Ok(ShardResponse::Row(row))
            }
            ShardRequest::Apply { commit_ts, writes } => {
                let batch = WriteBatch {
                    commit_ts,
                    ops: to_ops(writes),
                };
                self.engine.apply(&batch).map_err(storage_error)?;
                Ok(ShardResponse::Done)
            }
            ShardRequest::Prepare { txid, writes } => {
                self.engine
                    .prepare(txid, to_ops(writes))
                    .map_err(storage_error)?;
                Ok(ShardResponse::Done)
            }
            ShardRequest::Commit { txid, commit_ts } => {
                self.engine
                    .commit_prepared(txid, commit_ts)
                    .map_err(storage_error)?;
                Ok(ShardResponse::Done)
            }
            ShardRequest::Abort { txid } => {
                self.engine.abort_prepared(txid).map_err(storage_error)?;
                Ok(ShardResponse::Done)
            }
            ShardRequest::InDoubt => Ok(ShardResponse::TxIds(self.engine.in_doubt())),
            ShardRequest::MaxCommittedTs => {
                Ok(ShardResponse::Timestamp(self.engine.max_committed_ts()))
            }
            ShardRequest::GcWatermark { ts } => {
                self.engine.set_gc_watermark(ts);
                Ok(ShardResponse::Done)
            }
            ShardRequest::Stats => Ok(ShardResponse::Stats(Box::new(ShardStats {
                shard: self.id,
                storage: self.engine.stats(),
                indexes: Vec::new(),
                pool: Default::default(),
            }))),
            ShardRequest::CreateIndex { .. }
            | ShardRequest::DropIndex { .. }
            | ShardRequest::RetainIndexes { .. }
            | ShardRequest::IndexScan(_)
            | ShardRequest::UniqueCheck { .. }
            | ShardRequest::CheckIndexes => Err(SqlError::new(
                sqlstate::FEATURE_NOT_SUPPORTED,
                "indexes are not implemented on this shard yet",
            )),
        }
    }

    fn scan(&self, scan: ScanRequest) -> Result<ShardResponse, SqlError> {
        let limit = scan.limit.max(1);
        let entries = self
            .engine
            .scan(
                as_ref_bound(&scan.start),
                as_ref_bound(&scan.end),
                scan.read_ts,
                limit,
            )
            .map_err(storage_error)?;
        let resume_after = if entries.len() >= limit {
            entries.last().map(|(k, _)| k.clone())
        } else {
            None
        };
        let ctx = EvalContext::empty();
        let mut rows: Vec<Row> = Vec::with_capacity(entries.len());
        for (_, bytes) in entries {
            let r = row::decode_row(&bytes)?;
            if let Some(filter) = &scan.filter
                && filter.eval(&r, &ctx)? != Value::Bool(true)
            {
                continue;
            }
            rows.push(r);
        }
        Ok(ShardResponse::Rows { rows, resume_after })
    }
}

fn as_ref_bound(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match b {
        Bound::Included(k) => Bound::Included(k.as_slice()),
        Bound::Excluded(k) => Bound::Excluded(k.as_slice()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

fn to_ops(writes: Vec<RowWrite>) -> Vec<WriteOp> {
    writes
        .into_iter()
        .map(|w| WriteOp {
            key: w.key,
            value: w.value,
        })
        .collect()
}
