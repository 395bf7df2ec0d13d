//! A shard: one storage engine instance and the request handler in front of it.
//!
//! The shard executes [`ShardRequest`]s against its own [`Engine`]: scans with pushed-down
//! filters, point reads, and atomic write sets (one-phase, or prepare/commit for two-phase
//! commit). It knows the key layout ([`keys`]) and the row encoding, but nothing about the
//! catalog: requests are self-contained, which is what lets the same shard run behind a TCP
//! server later.

mod index_build;
pub mod indexes;
pub mod keys;
#[cfg(test)]
mod tests;

use crate::error::{SqlError, sqlstate};
use crate::rpc::{ScanRequest, ShardRequest, ShardResponse, ShardStats};
use crate::sql::expr::EvalContext;
use crate::storage::{Engine, EngineOptions, StorageError};
use crate::types::{Row, Value, row};
use indexes::{IndexOptions, ShardIndexes};
use std::ops::Bound;
use std::path::Path;

pub struct Shard {
    id: usize,
    /// Cleared by tests that simulate a crash: the indexes then reopen from their last
    /// checkpoint plus the WAL, as after `kill -9`.
    checkpoint_on_drop: std::sync::atomic::AtomicBool,
    // Declared before the engine so a clean drop checkpoints the indexes while the engine's
    // WAL is still open (see `Drop`).
    indexes: ShardIndexes,
    engine: Engine,
}

impl Drop for Shard {
    fn drop(&mut self) {
        if !self
            .checkpoint_on_drop
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            return;
        }
        if let Err(e) = self.indexes.checkpoint(&self.engine) {
            tracing::warn!(shard = self.id, error = %e, "index checkpoint at shutdown failed");
        }
    }
}

pub fn storage_error(e: StorageError) -> SqlError {
    match &e {
        StorageError::Corruption { .. } => SqlError::new(sqlstate::DATA_CORRUPTED, e.to_string()),
        _ => SqlError::new(sqlstate::IO_ERROR, e.to_string()),
    }
}

impl Shard {
    pub fn open(id: usize, dir: &Path, options: EngineOptions) -> Result<Shard, SqlError> {
        Shard::open_with(id, dir, options, IndexOptions::default())
    }

    /// Opens the shard's indexes at their checkpoints, then the engine, which replays the
    /// rows and the index redo logged after the oldest checkpoint.
    pub fn open_with(
        id: usize,
        dir: &Path,
        options: EngineOptions,
        index_options: IndexOptions,
    ) -> Result<Shard, SqlError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            storage_error(StorageError::Io {
                path: dir.to_path_buf(),
                source: e,
            })
        })?;
        let (indexes, redo_after) = ShardIndexes::open(dir, index_options)?;
        let engine = Engine::open_with_redo(dir, options, redo_after, &mut |pos, blob| {
            indexes.replay(pos, blob)
        })
        .map_err(storage_error)?;
        Ok(Shard {
            id,
            checkpoint_on_drop: std::sync::atomic::AtomicBool::new(true),
            indexes,
            engine,
        })
    }

    /// Closes the shard the way a crash would for its indexes: no checkpoint (the WAL is
    /// durable either way).
    #[cfg(test)]
    pub(crate) fn crash(self) {
        self.checkpoint_on_drop
            .store(false, std::sync::atomic::Ordering::Relaxed);
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
                self.indexes.apply(&self.engine, commit_ts, writes)?;
                Ok(ShardResponse::Done)
            }
            ShardRequest::Prepare { txid, writes } => {
                self.indexes.prepare(&self.engine, txid, writes)?;
                Ok(ShardResponse::Done)
            }
            ShardRequest::Commit { txid, commit_ts } => {
                self.indexes
                    .commit_prepared(&self.engine, txid, commit_ts)?;
                Ok(ShardResponse::Done)
            }
            ShardRequest::Abort { txid } => {
                self.indexes.abort_prepared(&self.engine, txid)?;
                Ok(ShardResponse::Done)
            }
            ShardRequest::InDoubt => Ok(ShardResponse::TxIds(self.engine.in_doubt())),
            ShardRequest::MaxCommittedTs => {
                Ok(ShardResponse::Timestamp(self.engine.max_committed_ts()))
            }
            ShardRequest::GcWatermark { ts } => {
                self.engine.set_gc_watermark(ts);
                self.indexes.collect_garbage(&self.engine, ts)?;
                Ok(ShardResponse::Done)
            }
            ShardRequest::Stats => Ok(ShardResponse::Stats(Box::new(ShardStats {
                shard: self.id,
                storage: self.engine.stats(),
                indexes: self.indexes.stats(false),
                pool: self.indexes.pool_stats(),
            }))),
            ShardRequest::CreateIndex { spec, read_ts } => {
                self.indexes.create(&self.engine, spec, read_ts)?;
                Ok(ShardResponse::Done)
            }
            ShardRequest::DropIndex { index_id } => {
                self.indexes.drop_index(&self.engine, index_id)?;
                Ok(ShardResponse::Done)
            }
            ShardRequest::RetainIndexes { index_ids } => {
                self.indexes.retain(&self.engine, &index_ids)?;
                Ok(ShardResponse::Done)
            }
            ShardRequest::IndexScan(req) => {
                let (rows, resume_after) = self.indexes.scan(&self.engine, req)?;
                Ok(ShardResponse::Rows { rows, resume_after })
            }
            ShardRequest::UniqueCheck { index_id, probes } => Ok(ShardResponse::UniqueHits(
                self.indexes.unique_check(&self.engine, index_id, probes)?,
            )),
            ShardRequest::CheckIndexes => Ok(ShardResponse::IndexChecks(self.indexes.stats(true))),
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

pub(crate) fn as_ref_bound(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match b {
        Bound::Included(k) => Bound::Included(k.as_slice()),
        Bound::Excluded(k) => Bound::Excluded(k.as_slice()),
        Bound::Unbounded => Bound::Unbounded,
    }
}
