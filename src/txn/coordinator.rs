//! Commit protocol for a write set spread over shards.
//!
//! ```text
//!  one shard:   Apply(commit_ts, writes)                      -- one WAL record, fsync
//!  N shards:    Prepare(txid, writes) on each                  -- durable, invisible
//!               decision log: txid -> commit_ts (fsync)        -- the commit point
//!               Commit(txid, commit_ts) on each                -- visible
//! ```
//! Presumed abort: a prepared transaction with no decision record is aborted at recovery. If any
//! prepare fails, the coordinator aborts the prepared shards and reports the error; nothing of
//! the statement becomes visible. If a commit message fails after the decision, the decision
//! stands and recovery (or a retry) finishes it — the statement was acknowledged only after the
//! decision was durable.

use crate::error::{SqlError, SqlResult};
use crate::rpc::{RowWrite, ShardClient, ShardRequest, ShardResponse};
use crate::shard::storage_error;
use crate::storage::{Engine, WriteBatch, WriteOp};
use crate::txn::clock::HybridClock;
use crate::txn::snapshots::{Registered, SnapshotRegistry};
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::runtime::Handle;

const DECISION_PREFIX: &[u8] = b"x/commit/";
/// Shards learn a new GC watermark after this many commits.
const WATERMARK_EVERY: u64 = 256;

pub struct Coordinator {
    shards: Vec<Arc<dyn ShardClient>>,
    meta: Arc<Engine>,
    clock: Arc<HybridClock>,
    next_txid: std::sync::atomic::AtomicU64,
    /// Writing statements run one at a time (read-modify-write without row locks yet).
    write_lock: parking_lot::Mutex<()>,
    snapshots: Arc<SnapshotRegistry>,
    commits: std::sync::atomic::AtomicU64,
}

fn decision_key(txid: u64) -> Vec<u8> {
    let mut k = DECISION_PREFIX.to_vec();
    k.extend_from_slice(&txid.to_be_bytes());
    k
}

impl Coordinator {
    pub fn new(
        shards: Vec<Arc<dyn ShardClient>>,
        meta: Arc<Engine>,
        clock: Arc<HybridClock>,
    ) -> Coordinator {
        let start = clock.now();
        Coordinator {
            shards,
            meta,
            clock,
            next_txid: std::sync::atomic::AtomicU64::new(start),
            write_lock: parking_lot::Mutex::new(()),
            snapshots: Arc::new(SnapshotRegistry::default()),
            commits: std::sync::atomic::AtomicU64::new(0),
        }
    }

    pub fn shards(&self) -> &[Arc<dyn ShardClient>] {
        &self.shards
    }

    pub fn clock(&self) -> &HybridClock {
        &self.clock
    }

    /// A read timestamp for one statement, registered (so garbage collection keeps what it
    /// can see) until the guard drops.
    pub fn begin_read(&self) -> Registered {
        self.snapshots.register(&self.clock)
    }

    /// Tells every shard the current GC watermark (see [`SnapshotRegistry`]).
    pub fn publish_gc_watermark(&self) {
        let ts = self.snapshots.watermark(&self.clock);
        for shard in 0..self.shards.len() {
            if let Err(e) = self.call(shard, ShardRequest::GcWatermark { ts }) {
                tracing::warn!(shard, error = %e, "could not publish the GC watermark");
            }
        }
        self.meta.set_gc_watermark(ts);
    }

    /// Held by a writing statement from its first read to its commit.
    pub fn write_guard(&self) -> parking_lot::MutexGuard<'_, ()> {
        self.write_lock.lock()
    }

    /// Calls one shard from a blocking thread.
    pub fn call(&self, shard: usize, request: ShardRequest) -> SqlResult<ShardResponse> {
        Handle::current().block_on(self.shards[shard].call(request))
    }

    /// Sends one request to each listed shard at once, each from its own thread, and returns
    /// the answers in the same order. For long requests (index builds), where the shards'
    /// work should overlap; in-process shards run a request on the calling thread.
    pub fn call_parallel(
        &self,
        requests: Vec<(usize, ShardRequest)>,
    ) -> Vec<SqlResult<ShardResponse>> {
        let handle = Handle::current();
        std::thread::scope(|s| {
            let running: Vec<_> = requests
                .into_iter()
                .map(|(shard, request)| {
                    let handle = handle.clone();
                    let client = &self.shards[shard];
                    s.spawn(move || handle.block_on(client.call(request)))
                })
                .collect();
            running
                .into_iter()
                .map(|t| {
                    t.join().unwrap_or_else(|_| {
                        Err(SqlError::internal("a shard request thread panicked"))
                    })
                })
                .collect()
        })
    }

    /// Atomically and durably commits `writes` (grouped by shard). Returns the commit timestamp.
    pub fn commit(&self, writes: BTreeMap<usize, Vec<RowWrite>>) -> SqlResult<u64> {
        let writes: Vec<(usize, Vec<RowWrite>)> =
            writes.into_iter().filter(|(_, w)| !w.is_empty()).collect();
        // Registered until the commit is applied, so no watermark passes it meanwhile.
        let registered = self.snapshots.register(&self.clock);
        let commit_ts = registered.ts();
        let result = match writes.len() {
            0 => Ok(commit_ts),
            1 => {
                let (shard, writes) = writes.into_iter().next().expect("one shard");
                self.call(shard, ShardRequest::Apply { commit_ts, writes })
                    .map(|_| commit_ts)
            }
            _ => self.two_phase(writes, commit_ts),
        };
        drop(registered);
        let n = self
            .commits
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if n % WATERMARK_EVERY == WATERMARK_EVERY - 1 {
            self.publish_gc_watermark();
        }
        result
    }

    fn two_phase(&self, writes: Vec<(usize, Vec<RowWrite>)>, commit_ts: u64) -> SqlResult<u64> {
        let txid = self
            .next_txid
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut prepared = Vec::new();
        for (shard, w) in writes {
            match self.call(shard, ShardRequest::Prepare { txid, writes: w }) {
                Ok(_) => prepared.push(shard),
                Err(e) => {
                    for s in prepared {
                        // Best effort: a shard that misses the abort resolves it at recovery
                        // (presumed abort: there is no decision record).
                        let _ = self.call(s, ShardRequest::Abort { txid });
                    }
                    return Err(e);
                }
            }
        }
        self.record_decision(txid, commit_ts)?;
        let mut first_err: Option<SqlError> = None;
        for shard in &prepared {
            if let Err(e) = self.call(*shard, ShardRequest::Commit { txid, commit_ts }) {
                tracing::error!(txid, shard, error = %e, "commit after decision failed; recovery will finish it");
                first_err.get_or_insert(e);
            }
        }
        if first_err.is_none() {
            self.forget_decision(txid);
        }
        Ok(commit_ts)
    }

    fn record_decision(&self, txid: u64, commit_ts: u64) -> SqlResult<()> {
        let ts = self.meta.max_committed_ts() + 1;
        self.meta
            .apply(&WriteBatch {
                commit_ts: ts,
                ops: vec![WriteOp {
                    key: decision_key(txid),
                    value: Some(commit_ts.to_be_bytes().to_vec()),
                }],
            })
            .map_err(storage_error)
    }

    fn forget_decision(&self, txid: u64) {
        let ts = self.meta.max_committed_ts() + 1;
        if let Err(e) = self.meta.apply(&WriteBatch {
            commit_ts: ts,
            ops: vec![WriteOp {
                key: decision_key(txid),
                value: None,
            }],
        }) {
            tracing::warn!(txid, error = %e, "could not drop decision record");
        }
    }

    /// Resolves every shard's in-doubt prepared writes from the decision log. Run at startup,
    /// before serving clients.
    pub fn recover(&self) -> SqlResult<()> {
        for shard in 0..self.shards.len() {
            if let ShardResponse::Timestamp(ts) = self.call(shard, ShardRequest::MaxCommittedTs)? {
                self.clock.observe(ts);
            }
        }
        let mut resolved = Vec::new();
        for shard in 0..self.shards.len() {
            let ShardResponse::TxIds(txids) = self.call(shard, ShardRequest::InDoubt)? else {
                continue;
            };
            for txid in txids {
                let decision = self
                    .meta
                    .get(&decision_key(txid), u64::MAX)
                    .map_err(storage_error)?;
                match decision.and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok()) {
                    Some(ts) => {
                        let commit_ts = u64::from_be_bytes(ts);
                        tracing::info!(txid, shard, "recovery: committing prepared transaction");
                        self.call(shard, ShardRequest::Commit { txid, commit_ts })?;
                        resolved.push(txid);
                    }
                    None => {
                        tracing::info!(txid, shard, "recovery: aborting prepared transaction");
                        self.call(shard, ShardRequest::Abort { txid })?;
                    }
                }
                self.next_txid
                    .fetch_max(txid + 1, std::sync::atomic::Ordering::Relaxed);
            }
        }
        for txid in resolved {
            self.forget_decision(txid);
        }
        self.next_txid
            .fetch_max(self.clock.now(), std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }
}
