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
mod pushdown;
#[cfg(test)]
mod tests;
pub mod txn;

use crate::error::{SqlError, SqlResult, sqlstate};
use crate::rpc::{
    IndexScanRequest, KeyState, ScanRequest, ShardRequest, ShardResponse, ShardStats, TxnWrite,
};
use crate::sql::expr::EvalContext;
use crate::storage::{Engine, EngineOptions, StorageError};
use crate::txn::clock::HybridClock;
use crate::txn::locks::{LockError, LockManager, LockMode, LockSpace, LockTarget, WoundSink};
use crate::txn::{Isolation, TxnCtx};
use crate::types::{Row, Value, row};
use indexes::{IndexOptions, ShardIndexes};
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;
use txn::{Phase, TxnTable};

/// What a shard needs to take part in transactions.
#[derive(Clone)]
pub struct TxnOptions {
    /// Timestamps for one-phase commits and for the moment a commit begins. The embedded
    /// server shares one clock between the coordinator and all shards.
    pub clock: Arc<HybridClock>,
    /// Where wounds (wound-wait) are reported, so the victim's coordinator aborts it.
    pub wounds: Arc<dyn WoundSink>,
    /// Most bytes of uncommitted writes one transaction may hold on this shard.
    pub max_txn_bytes: usize,
}

/// A wound sink for a shard nobody coordinates (tests): the victim is aborted on this shard
/// only, which is all there is.
struct NoCoordinator;

impl WoundSink for NoCoordinator {
    fn wound(&self, victim: u64, by: u64) {
        tracing::debug!(victim, by, "wound without a coordinator");
    }
}

impl Default for TxnOptions {
    fn default() -> Self {
        TxnOptions {
            clock: Arc::new(HybridClock::new()),
            wounds: Arc::new(NoCoordinator),
            max_txn_bytes: 256 << 20,
        }
    }
}

/// A lock request that failed, as the client sees it.
fn lock_error(e: LockError) -> SqlError {
    match e {
        LockError::Die { .. } => SqlError::new(sqlstate::DEADLOCK_DETECTED, e.to_string())
            .with_hint("The transaction was rolled back; retry it."),
        LockError::Wounded { txid, by } => txn::wounded_error(txid, by),
        LockError::Timeout { holder, .. } => SqlError::new(
            sqlstate::LOCK_NOT_AVAILABLE,
            "canceling statement due to lock timeout",
        )
        .with_detail(format!("The lock is held by transaction {holder}.")),
    }
}

pub struct Shard {
    id: usize,
    clock: Arc<HybridClock>,
    locks: LockManager,
    txns: TxnTable,
    /// Cleared by tests that simulate a crash: the indexes then reopen from their last
    /// checkpoint plus the WAL, as after `kill -9`.
    checkpoint_on_drop: std::sync::atomic::AtomicBool,
    /// (shard-map version, its effective commit timestamp) this shard accepts routed
    /// requests under; version 0 until the coordinator installs one.
    map: parking_lot::RwLock<(u64, u64)>,
    // Declared before the engine so a clean drop checkpoints the indexes while the engine's
    // WAL is still open (see `Drop`).
    indexes: ShardIndexes,
    engine: Engine,
}

impl Shard {
    /// Refuses a request routed with another shard-map version than the one installed here,
    /// or reading older than that version's effective timestamp (rows were elsewhere then).
    fn check_map(&self, version: u64, read_ts: Option<u64>) -> Result<(), SqlError> {
        let (current, effective) = *self.map.read();
        if current == 0 {
            return Ok(());
        }
        if version != current {
            return Err(crate::error::stale_shard_map(format!(
                "routed with shard map version {version}, shard {} holds version {current}",
                self.id
            )));
        }
        if let Some(ts) = read_ts
            && ts < effective
        {
            return Err(crate::error::stale_shard_map(format!(
                "the snapshot predates shard map version {current}"
            )));
        }
        Ok(())
    }
}

impl Shard {
    /// A join of this shard's rows, co-located or with a shipped input (see
    /// `rpc::JoinRequest`).
    async fn join(&self, req: crate::rpc::JoinRequest) -> Result<ShardResponse, SqlError> {
        use crate::rpc::JoinSide;
        use crate::sql::aggregate::row_bytes;
        use crate::sql::expr::EvalContext;
        use crate::sql::join::{Build, JoinSpec};
        use crate::sql::join_strategy::Side;
        let held = std::sync::atomic::AtomicUsize::new(0);
        let max = req.max_bytes;
        let charge = |b: usize| -> Result<(), SqlError> {
            let now = held.fetch_add(b, std::sync::atomic::Ordering::Relaxed) + b;
            if now > max {
                Err(SqlError::new(
                    sqlstate::OUT_OF_MEMORY,
                    "out of memory: a join's inputs exceed the shard's join memory",
                )
                .with_hint("Add a WHERE clause that narrows the joined tables."))
            } else {
                Ok(())
            }
        };
        // The build side (held and indexed) is the shipped input, or the right one of a
        // co-located join; the other input streams past it a page at a time, so the shard
        // holds one input and the output, never both inputs.
        let (build_side, build_input, probe_input) = match (req.left, req.right) {
            (JoinSide::Local(l), right) => (Side::Right, right, JoinSide::Local(l)),
            (shipped, JoinSide::Local(r)) => (Side::Left, shipped, JoinSide::Local(r)),
            (l, r) => (Side::Right, r, l),
        };
        let build_rows: std::sync::Arc<Vec<Row>> = match build_input {
            JoinSide::Shipped(rows) => {
                charge(rows.iter().map(|r| row_bytes(r)).sum())?;
                rows
            }
            JoinSide::Local(input) => {
                let mut rows = Vec::new();
                self.for_each_source_page(
                    &input.source,
                    &input.filter,
                    req.read_ts,
                    req.txn,
                    &mut |page| {
                        charge(page.iter().map(|r| row_bytes(r)).sum())?;
                        rows.extend(page);
                        Ok(())
                    },
                )
                .await?;
                std::sync::Arc::new(rows)
            }
        };
        let spec = JoinSpec {
            kind: req.kind,
            on: req.on.as_ref(),
            left_width: req.left_width,
            right_width: req.right_width,
            equi: &req.equi,
        };
        let mut build = Build::new(&build_rows, build_side, &spec, &EvalContext::empty())?;
        let mut rows = Vec::new();
        let mut probe_matched = Vec::new();
        let mut probe = |page: Vec<Row>| -> SqlResult<()> {
            let ctx = EvalContext::empty();
            let m = build.probe(&page, &spec, &ctx, &mut |b| charge(b), &mut rows)?;
            probe_matched.extend(m);
            Ok(())
        };
        match probe_input {
            JoinSide::Local(input) => {
                self.for_each_source_page(
                    &input.source,
                    &input.filter,
                    req.read_ts,
                    req.txn,
                    &mut probe,
                )
                .await?
            }
            JoinSide::Shipped(shipped) => probe(shipped.to_vec())?,
        }
        let build_matched = build.finish(&spec, &mut |b| charge(b), &mut rows)?;
        // The shipped input, when there is one, is the build side.
        let shipped_flags = if req.shipped_matches {
            build_matched
        } else {
            Vec::new()
        };
        let shipped_matched = shipped_flags
            .iter()
            .enumerate()
            .filter(|(_, m)| **m)
            .map(|(i, _)| i as u32)
            .collect();
        Ok(ShardResponse::Joined {
            rows,
            shipped_matched,
        })
    }

    /// About how many rows of `table_id` this shard stores (no data blocks read).
    fn estimate_rows(&self, table_id: u32) -> ShardResponse {
        ShardResponse::Estimate(
            self.engine
                .estimate_keys(&keys::table_prefix(table_id), &keys::table_end(table_id)),
        )
    }
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
        Shard::open_with(
            id,
            dir,
            options,
            IndexOptions::default(),
            TxnOptions::default(),
        )
    }

    /// Opens the shard's indexes at their checkpoints, then the engine, which replays the
    /// rows and the index redo logged after the oldest checkpoint.
    pub fn open_with(
        id: usize,
        dir: &Path,
        options: EngineOptions,
        index_options: IndexOptions,
        txn_options: TxnOptions,
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
        txn_options.clock.observe(engine.max_committed_ts());
        Ok(Shard {
            id,
            clock: txn_options.clock,
            locks: LockManager::new(txn_options.wounds),
            txns: TxnTable::new(txn_options.max_txn_bytes),
            checkpoint_on_drop: std::sync::atomic::AtomicBool::new(true),
            map: parking_lot::RwLock::new((0, 0)),
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

    /// For tests of requests that never wait for a lock.
    #[cfg(test)]
    pub(crate) fn handle_sync(&self, request: ShardRequest) -> Result<ShardResponse, SqlError> {
        futures::executor::block_on(self.handle(request))
    }

    pub fn id(&self) -> usize {
        self.id
    }

    pub async fn handle(&self, request: ShardRequest) -> Result<ShardResponse, SqlError> {
        let request = match request {
            ShardRequest::Routed {
                map_version,
                read_ts,
                request,
            } => {
                self.check_map(map_version, read_ts)?;
                *request
            }
            other => other,
        };
        match request {
            ShardRequest::Routed { .. } => Err(SqlError::internal("nested routed request")),
            ShardRequest::InstallMap {
                map_version,
                effective_ts,
            } => {
                let mut map = self.map.write();
                if map_version >= map.0 {
                    *map = (map_version, effective_ts);
                }
                Ok(ShardResponse::Done)
            }
            ShardRequest::Scan(scan) => self.scan(scan).await,
            ShardRequest::Get { key, read_ts, txn } => {
                let row = match self.read_one(txn.as_ref(), &key, read_ts).await? {
                    Some(bytes) => Some(row::decode_row(&bytes)?),
                    None => None,
                };
                Ok(ShardResponse::Row(row))
            }
            ShardRequest::LockRows { txn, keys } => self.lock_rows(&txn, keys).await,
            ShardRequest::Write { txn, writes } => self.write(&txn, writes).await,
            ShardRequest::CommitTxn { txid } => self.commit_txn(txid),
            ShardRequest::PrepareTxn { txid } => self.prepare_txn(txid),
            ShardRequest::AbortTxn { txid, wounded_by } => self.abort_txn(txid, wounded_by),
            ShardRequest::ReleaseTxn { txid } => {
                self.txns.abort(txid, None);
                self.locks.release_all(txid);
                Ok(ShardResponse::Done)
            }
            ShardRequest::RollbackTo { txid, seq } => {
                self.txns.rollback_to(txid, seq);
                Ok(ShardResponse::Done)
            }
            ShardRequest::Locks => Ok(ShardResponse::Locks {
                locks: self.locks.snapshot(),
                txns: self.txns.list(),
            }),
            ShardRequest::Apply { commit_ts, writes } => {
                self.indexes.apply(&self.engine, commit_ts, writes)?;
                Ok(ShardResponse::Done)
            }
            ShardRequest::Prepare { txid, writes } => {
                self.indexes.prepare(&self.engine, txid, writes)?;
                Ok(ShardResponse::Done)
            }
            ShardRequest::Commit { txid, commit_ts } => {
                self.commit_prepared(txid, commit_ts)?;
                Ok(ShardResponse::Done)
            }
            ShardRequest::Abort { txid } => self.abort_txn(txid, None),
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
            ShardRequest::IndexScan(req) => self.index_scan(req).await,
            ShardRequest::UniqueCheck {
                index_id,
                probes,
                txn,
            } => {
                if let Some(ctx) = &txn {
                    for p in &probes {
                        let end = match crate::storage::prefix_successor(&p.key) {
                            Some(e) => Bound::Excluded(e),
                            None => Bound::Unbounded,
                        };
                        let target = LockTarget::Range {
                            space: LockSpace::Index(index_id),
                            start: Bound::Included(p.key.clone()),
                            end,
                        };
                        self.lock(ctx, target, LockMode::Exclusive).await?;
                    }
                }
                let own = txn.map(|c| c.txid);
                let read = |key: &[u8]| self.read_latest(own, key);
                let overlay = self.overlay_for(own, index_table(&self.indexes, index_id));
                Ok(ShardResponse::UniqueHits(
                    self.indexes
                        .unique_check(index_id, probes, &read, &overlay)?,
                ))
            }
            ShardRequest::CheckIndexes => Ok(ShardResponse::IndexChecks(self.indexes.stats(true))),
            ShardRequest::Pushdown(req) => self.pushdown(req).await,
            ShardRequest::Join(req) => self.join(req).await,
            ShardRequest::EstimateRows { table_id } => Ok(self.estimate_rows(table_id)),
        }
    }

    /// Takes a lock for `ctx`'s transaction, which from then on is known here.
    async fn lock(&self, ctx: &TxnCtx, target: LockTarget, mode: LockMode) -> SqlResult<()> {
        self.txns.register(ctx)?;
        self.locks
            .lock(ctx.owner(), target, mode, ctx.lock_timeout())
            .await
            .map_err(lock_error)?;
        // A wound that arrived while the lock was being granted must not leave it held.
        if let Err(e) = self.txns.check_active(ctx.txid) {
            self.locks.release_all(ctx.txid);
            return Err(e);
        }
        Ok(())
    }

    /// The value a reader sees for one key: its own intent, anyone's newest intent at READ
    /// UNCOMMITTED, else the engine's version as of `read_ts`. Snapshot readers first wait for
    /// a commit of the key that may land below their timestamp.
    async fn read_one(
        &self,
        ctx: Option<&TxnCtx>,
        key: &[u8],
        read_ts: u64,
    ) -> SqlResult<Option<Vec<u8>>> {
        let read_ts = self
            .prepare_read(
                ctx,
                Bound::Included(key),
                Bound::Included(key),
                read_ts,
                None,
            )
            .await?;
        if let Some(c) = ctx {
            let intent = if c.isolation == Isolation::ReadUncommitted {
                self.txns.newest(key)
            } else {
                self.txns.own(c.txid, key)
            };
            if let Some(v) = intent {
                return Ok(v);
            }
        }
        self.engine.get(key, read_ts).map_err(storage_error)
    }

    /// Locks what a SERIALIZABLE read covers and returns the timestamp to read at (the newest
    /// committed versions, which the locks keep still), or waits out undecided commits for a
    /// snapshot read.
    async fn prepare_read(
        &self,
        ctx: Option<&TxnCtx>,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        read_ts: u64,
        index: Option<u32>,
    ) -> SqlResult<u64> {
        match ctx {
            Some(c) if c.isolation == Isolation::Serializable => {
                let space = index.map_or(LockSpace::Rows, LockSpace::Index);
                let target = match (start, end) {
                    (Bound::Included(a), Bound::Included(b)) if a == b => LockTarget::Key {
                        space,
                        key: a.to_vec(),
                    },
                    _ => LockTarget::Range {
                        space,
                        start: start.map(<[u8]>::to_vec),
                        end: end.map(<[u8]>::to_vec),
                    },
                };
                self.lock(c, target, LockMode::Shared).await?;
                Ok(u64::MAX)
            }
            Some(c) if c.isolation == Isolation::ReadUncommitted => {
                self.txns.check_active(c.txid)?;
                self.clock.observe(read_ts);
                Ok(read_ts)
            }
            _ => {
                if let Some(c) = ctx {
                    self.txns.check_active(c.txid)?;
                }
                self.clock.observe(read_ts);
                if index.is_none() {
                    self.txns
                        .wait_decided(ctx.map(|c| c.txid), start, end, read_ts)
                        .await;
                }
                Ok(read_ts)
            }
        }
    }

    /// The reader's intents to lay over engine rows: its own, or everyone's at READ
    /// UNCOMMITTED (`None` reader: none).
    fn overlay_range(
        &self,
        ctx: Option<&TxnCtx>,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
    ) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        match ctx {
            None => Vec::new(),
            Some(c) if c.isolation == Isolation::ReadUncommitted => {
                self.txns.overlay(None, start, end)
            }
            Some(c) => self.txns.overlay(Some(c.txid), start, end),
        }
    }

    fn overlay_for(&self, own: Option<u64>, table: Option<u32>) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        match (own, table) {
            (Some(txid), Some(t)) => {
                let start = keys::table_prefix(t);
                let end = keys::table_end(t);
                self.txns
                    .overlay(Some(txid), Bound::Included(&start), Bound::Excluded(&end))
            }
            _ => Vec::new(),
        }
    }

    /// The newest committed value of `key`, or `own`'s intent on it.
    fn read_latest(&self, own: Option<u64>, key: &[u8]) -> SqlResult<Option<Vec<u8>>> {
        if let Some(t) = own
            && let Some(v) = self.txns.own(t, key)
        {
            return Ok(v);
        }
        self.engine.get(key, u64::MAX).map_err(storage_error)
    }

    async fn lock_rows(&self, ctx: &TxnCtx, keys: Vec<Vec<u8>>) -> SqlResult<ShardResponse> {
        let mut states = Vec::with_capacity(keys.len());
        for key in keys {
            let target = LockTarget::Key {
                space: LockSpace::Rows,
                key: key.clone(),
            };
            self.lock(ctx, target, LockMode::Exclusive).await?;
            if self.txns.own(ctx.txid, &key).is_some() {
                states.push(KeyState::Own);
                continue;
            }
            let state = match self
                .engine
                .get_versioned(&key, u64::MAX)
                .map_err(storage_error)?
            {
                Some((ts, v)) => KeyState::Committed {
                    ts,
                    exists: v.is_some(),
                },
                None => KeyState::Committed {
                    ts: 0,
                    exists: false,
                },
            };
            states.push(state);
        }
        Ok(ShardResponse::KeyStates(states))
    }

    async fn write(&self, ctx: &TxnCtx, writes: Vec<TxnWrite>) -> SqlResult<ShardResponse> {
        for w in &writes {
            let target = LockTarget::Key {
                space: LockSpace::Rows,
                key: w.key.clone(),
            };
            self.lock(ctx, target, LockMode::Exclusive).await?;
        }
        let mut current = Vec::with_capacity(writes.len());
        let mut duplicates = Vec::new();
        for (i, w) in writes.iter().enumerate() {
            let cur = self.read_latest(Some(ctx.txid), &w.key)?;
            if w.must_not_exist && cur.is_some() {
                duplicates.push(i);
            }
            current.push(cur);
        }
        if !duplicates.is_empty() {
            return Ok(ShardResponse::Duplicates(duplicates));
        }
        // Index entries the writes add or remove are locked too, so SERIALIZABLE index
        // range scans (which lock entry ranges) see no phantoms.
        for (w, cur) in writes.iter().zip(&current) {
            let old = self.indexes.entries_of(&w.key, cur.as_deref())?;
            let new = self.indexes.entries_of(&w.key, w.value.as_deref())?;
            // Entries in both versions are unchanged: nothing for a scan to miss.
            let changed = old
                .iter()
                .filter(|e| !new.contains(e))
                .chain(new.iter().filter(|e| !old.contains(e)));
            for (index_id, entry) in changed {
                let target = LockTarget::Key {
                    space: LockSpace::Index(*index_id),
                    key: entry.clone(),
                };
                self.lock(ctx, target, LockMode::Exclusive).await?;
            }
        }
        for w in writes {
            self.txns.write(ctx, w.key, w.value)?;
        }
        Ok(ShardResponse::Duplicates(Vec::new()))
    }

    fn commit_txn(&self, txid: u64) -> SqlResult<ShardResponse> {
        let since = self.clock.now();
        let writes = self.txns.begin_commit(txid, since, false)?;
        let commit_ts = self.clock.now();
        if !writes.is_empty()
            && let Err(e) = self.indexes.apply(&self.engine, commit_ts, writes)
        {
            self.txns.commit_failed(txid);
            return Err(e);
        }
        self.txns.finish(txid);
        self.locks.release_all(txid);
        Ok(ShardResponse::Timestamp(commit_ts))
    }

    fn prepare_txn(&self, txid: u64) -> SqlResult<ShardResponse> {
        let since = self.clock.now();
        let writes = self.txns.begin_commit(txid, since, true)?;
        if let Err(e) = self.indexes.prepare(&self.engine, txid, writes) {
            self.txns.commit_failed(txid);
            return Err(e);
        }
        Ok(ShardResponse::Timestamp(self.clock.now()))
    }

    fn commit_prepared(&self, txid: u64, commit_ts: u64) -> SqlResult<()> {
        self.clock.observe(commit_ts);
        match self.indexes.commit_prepared(&self.engine, txid, commit_ts) {
            Ok(()) => {}
            // Already committed (a retry after a lost answer): the outcome is the same.
            Err(e) if e.message.contains("not prepared") => {}
            Err(e) => return Err(e),
        }
        self.txns.finish(txid);
        self.locks.release_all(txid);
        Ok(())
    }

    fn abort_txn(&self, txid: u64, wounded_by: Option<u64>) -> SqlResult<ShardResponse> {
        match self.txns.abort(txid, wounded_by) {
            Some(Phase::Committing { .. }) => return Ok(ShardResponse::Done),
            Some(Phase::Prepared { .. }) if wounded_by.is_some() => {
                return Ok(ShardResponse::Done);
            }
            // Unknown here: a tombstone now stands for it; nothing is prepared to abort.
            None if wounded_by.is_some() => {}
            Some(Phase::Prepared { .. }) | None => {
                // A prepared transaction (live, or recovered from the WAL) is aborted in the
                // engine; one the engine does not know was never prepared here.
                match self.indexes.abort_prepared(&self.engine, txid) {
                    Ok(()) => {}
                    Err(e) if e.message.contains("not prepared") => {}
                    Err(e) => return Err(e),
                }
                self.txns.finish(txid);
            }
            Some(_) => {}
        }
        if let Some(by) = wounded_by {
            self.locks.abort(txid, by);
        }
        self.locks.release_all(txid);
        Ok(ShardResponse::Done)
    }

    async fn scan(&self, scan: ScanRequest) -> Result<ShardResponse, SqlError> {
        let limit = scan.limit.max(1);
        let ctx = scan.txn.as_ref();
        let read_ts = self
            .prepare_read(
                ctx,
                as_ref_bound(&scan.start),
                as_ref_bound(&scan.end),
                scan.read_ts,
                None,
            )
            .await?;
        let entries = self
            .engine
            .scan(
                as_ref_bound(&scan.start),
                as_ref_bound(&scan.end),
                read_ts,
                limit,
            )
            .map_err(storage_error)?;
        let resume_after = if entries.len() >= limit {
            entries.last().map(|(k, _)| k.clone())
        } else {
            None
        };
        // Intents up to where this page of engine rows ends (the next page takes the rest).
        let window_end = match &resume_after {
            Some(k) => Bound::Included(k.as_slice()),
            None => as_ref_bound(&scan.end),
        };
        let overlay = self.overlay_range(ctx, as_ref_bound(&scan.start), window_end);
        let entries: Vec<(Vec<u8>, Vec<u8>)> = if overlay.is_empty() {
            entries
        } else {
            let mut merged: std::collections::BTreeMap<Vec<u8>, Vec<u8>> =
                entries.into_iter().collect();
            for (k, v) in overlay {
                match v {
                    Some(v) => {
                        merged.insert(k, v);
                    }
                    None => {
                        merged.remove(&k);
                    }
                }
            }
            merged.into_iter().collect()
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

    async fn index_scan(&self, req: IndexScanRequest) -> Result<ShardResponse, SqlError> {
        let ctx = req.txn;
        let read_ts = self
            .prepare_read(
                ctx.as_ref(),
                as_ref_bound(&req.start),
                as_ref_bound(&req.end),
                req.read_ts,
                Some(req.index_id),
            )
            .await?;
        let table = index_table(&self.indexes, req.index_id);
        let overlay = match (ctx.as_ref(), table) {
            (Some(c), Some(t)) => {
                let start = keys::table_prefix(t);
                let end = keys::table_end(t);
                self.overlay_range(Some(c), Bound::Included(&start), Bound::Excluded(&end))
            }
            _ => Vec::new(),
        };
        let uncommitted = ctx.is_some_and(|c| c.isolation == Isolation::ReadUncommitted);
        let own = ctx.map(|c| c.txid);
        if ctx.is_some_and(|c| c.isolation == Isolation::Serializable) {
            // Lock the rows the entries point at, then read them again under those locks:
            // the entry range lock keeps the entries still, the row locks the rows.
            // Every row an entry in range points at, whether or not it passes the filter: a
            // rejected row that changes later could start passing it (a phantom).
            let read = |key: &[u8]| self.read_latest(own, key);
            let unfiltered = IndexScanRequest {
                filter: None,
                ..req.clone()
            };
            let (_, keys, _) = self.indexes.scan(&unfiltered, &read, &overlay)?;
            let c = ctx.as_ref().expect("serializable has a context");
            for key in keys {
                let target = LockTarget::Key {
                    space: LockSpace::Rows,
                    key,
                };
                self.lock(c, target, LockMode::Shared).await?;
            }
        } else if !uncommitted {
            // Which rows the entries point at is not known before the scan; wait out
            // undecided commits anywhere in the table.
            if let Some(t) = table {
                let start = keys::table_prefix(t);
                let end = keys::table_end(t);
                self.txns
                    .wait_decided(own, Bound::Included(&start), Bound::Excluded(&end), read_ts)
                    .await;
            }
        }
        let read = |key: &[u8]| -> SqlResult<Option<Vec<u8>>> {
            if uncommitted && let Some(v) = self.txns.newest(key) {
                return Ok(v);
            }
            if let Some(t) = own
                && let Some(v) = self.txns.own(t, key)
            {
                return Ok(v);
            }
            self.engine.get(key, read_ts).map_err(storage_error)
        };
        let (rows, _, resume_after) = self.indexes.scan(&req, &read, &overlay)?;
        Ok(ShardResponse::Rows { rows, resume_after })
    }
}

/// The table an index belongs to, if this shard has the index.
fn index_table(indexes: &ShardIndexes, index_id: u32) -> Option<u32> {
    indexes.table_of_index(index_id)
}

pub(crate) fn as_ref_bound(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match b {
        Bound::Included(k) => Bound::Included(k.as_slice()),
        Bound::Excluded(k) => Bound::Excluded(k.as_slice()),
        Bound::Unbounded => Bound::Unbounded,
    }
}
