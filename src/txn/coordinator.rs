//! A transaction's life across shards, and the commit protocol.
//!
//! A transaction ([`Txn`]) gets a Snowflake id at `begin` (unique across shards and ordered by
//! start, so it doubles as the age wait-die and wound-wait compare) and a registered start
//! timestamp (its snapshot at REPEATABLE READ; it also holds back the GC watermark while the
//! transaction lives). Its reads and writes go to shards with a [`TxnCtx`]; writes become
//! intents on the shards, under exclusive locks, and nothing is durable until commit:
//!
//! ```text
//!  wrote on no shard:   ReleaseTxn on each shard it read-locked
//!  wrote on one shard:  CommitTxn                                  -- one WAL record, fsync
//!  wrote on several:    PrepareTxn on each                         -- durable, locks kept
//!                       decision log: txid -> commit_ts (fsync)    -- the commit point
//!                       Commit(txid, commit_ts) on each            -- visible, locks released
//! ```
//! Presumed abort: a prepared transaction with no decision record is aborted at recovery. If
//! any prepare fails, the coordinator aborts everywhere and reports the error. If a commit
//! message fails after the decision, the decision stands and recovery (or a retry) finishes
//! it — the client is answered only after the decision is durable. The commit timestamp is
//! drawn after every prepare answered (and past every shard's clock they report), so it is
//! above the moment each shard began making readers wait for the outcome.
//!
//! Wounds: a shard whose lock manager decides that an older transaction wounds a younger one
//! reports it here ([`Wounds`]); the coordinator marks the victim and aborts it on every shard
//! (except where it is already prepared or committing — then the older one simply waits). The
//! victim's session learns it at its next statement or at commit.
//!
//! DDL that must see no open writer (CREATE INDEX, DROP) takes the DDL gate exclusively; a
//! writing transaction holds it shared from its first write to its end.

use crate::error::{SqlError, SqlResult, sqlstate};
use crate::id::SnowflakeGenerator;
use crate::rpc::{KeyState, RowWrite, ShardClient, ShardRequest, ShardResponse, TxnWrite};
use crate::shard::storage_error;
use crate::storage::{Engine, WriteBatch, WriteOp};
use crate::txn::clock::HybridClock;
use crate::txn::locks::WoundSink;
use crate::txn::snapshots::{Registered, SnapshotRegistry};
use crate::txn::{DeadlockPolicy, Isolation, TxnCtx};
use parking_lot::Mutex;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use tokio::runtime::Handle;
use tokio::sync::{OwnedRwLockReadGuard, OwnedRwLockWriteGuard, RwLock};

const DECISION_PREFIX: &[u8] = b"x/commit/";
/// Shards learn a new GC watermark after this many commits.
const WATERMARK_EVERY: u64 = 256;

pub struct Coordinator {
    /// Indexed by shard id; grows when a shard is added (ids are never reused).
    shards: parking_lot::RwLock<Vec<Arc<dyn ShardClient>>>,
    /// The wound task's view of the shards (weak, see `new`).
    wound_targets: Arc<parking_lot::RwLock<Vec<std::sync::Weak<dyn ShardClient>>>>,
    /// While a shard-map change moves rows: the engine keys written since it began, by the
    /// shard they were written to (see `placement::rebalance`).
    move_tracker: Mutex<Option<BTreeMap<usize, BTreeSet<Vec<u8>>>>>,
    meta: Arc<Engine>,
    clock: Arc<HybridClock>,
    /// Held shared by writing transactions, exclusively by DDL that needs no open writer.
    ddl_gate: Arc<RwLock<()>>,
    snapshots: Arc<SnapshotRegistry>,
    commits: std::sync::atomic::AtomicU64,
    /// The node's one id generator (shared with row ids and `snowflake_id()`): txids come
    /// from it so they are unique across nodes and ordered by start.
    ids: Arc<SnowflakeGenerator>,
    registry: Arc<Registry>,
}

/// What the coordinator knows of each live transaction (the `sharddb_transactions` view).
pub struct TxnInfo {
    pub txid: u64,
    pub isolation: Isolation,
    pub policy: DeadlockPolicy,
    pub started: Instant,
    /// 0, or the older transaction that wounded this one.
    wounded_by: AtomicU64,
    state: Mutex<TxnState>,
}

#[derive(Debug, Clone, Default)]
pub struct TxnState {
    /// `active`, `preparing`, `committing` (decision durable), `aborting`.
    pub phase: &'static str,
    pub shards: Vec<usize>,
    pub written: Vec<usize>,
    /// `1PC` or `2PC` once the commit protocol is chosen.
    pub protocol: Option<&'static str>,
}

impl TxnInfo {
    pub fn wounded_by(&self) -> Option<u64> {
        match self.wounded_by.load(Ordering::Acquire) {
            0 => None,
            by => Some(by),
        }
    }

    pub fn state(&self) -> TxnState {
        self.state.lock().clone()
    }
}

#[derive(Default)]
pub struct Registry {
    live: Mutex<HashMap<u64, Arc<TxnInfo>>>,
}

impl Registry {
    pub fn list(&self) -> Vec<Arc<TxnInfo>> {
        let mut v: Vec<Arc<TxnInfo>> = self.live.lock().values().cloned().collect();
        v.sort_by_key(|t| t.txid);
        v
    }
}

/// The shards' way to report a wound: queued to a task that aborts the victim everywhere
/// (a lock manager must not block on it).
pub struct Wounds {
    tx: tokio::sync::mpsc::UnboundedSender<(u64, u64)>,
    rx: Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<(u64, u64)>>>,
}

impl Wounds {
    pub fn new() -> Arc<Wounds> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        Arc::new(Wounds {
            tx,
            rx: Mutex::new(Some(rx)),
        })
    }
}

impl WoundSink for Wounds {
    fn wound(&self, victim: u64, by: u64) {
        let _ = self.tx.send((victim, by));
    }
}

/// One transaction, owned by its session.
pub struct Txn {
    pub id: u64,
    pub isolation: Isolation,
    pub policy: DeadlockPolicy,
    pub lock_timeout_ms: u64,
    pub read_only: bool,
    seq: u32,
    start: Registered,
    /// Shards holding locks or intents of this transaction.
    touched: BTreeSet<usize>,
    written: BTreeSet<usize>,
    info: Arc<TxnInfo>,
    gate: Option<OwnedRwLockReadGuard<()>>,
    /// The shard-map version the current statement routed its writes with; the shards refuse
    /// them under another version.
    pub map_version: u64,
}

impl Txn {
    /// What goes to shards with this transaction's current statement.
    pub fn ctx(&self) -> TxnCtx {
        TxnCtx {
            txid: self.id,
            isolation: self.isolation,
            policy: self.policy,
            lock_timeout_ms: self.lock_timeout_ms,
            seq: self.seq,
        }
    }

    /// The transaction's start timestamp: its snapshot at REPEATABLE READ.
    pub fn start_ts(&self) -> u64 {
        self.start.ts()
    }

    /// Starts the next statement; returns its number (savepoints remember it).
    pub fn next_statement(&mut self) -> u32 {
        self.seq += 1;
        self.seq
    }

    pub fn seq(&self) -> u32 {
        self.seq
    }

    pub fn has_written(&self) -> bool {
        !self.written.is_empty()
    }

    fn set_state(&self, phase: &'static str, protocol: Option<&'static str>) {
        let mut st = self.info.state.lock();
        st.phase = phase;
        st.shards = self.touched.iter().copied().collect();
        st.written = self.written.iter().copied().collect();
        if protocol.is_some() {
            st.protocol = protocol;
        }
    }
}

fn decision_key(txid: u64) -> Vec<u8> {
    let mut k = DECISION_PREFIX.to_vec();
    k.extend_from_slice(&txid.to_be_bytes());
    k
}

impl Coordinator {
    /// `wounds` is the sink the shards were opened with; the coordinator serves it.
    pub fn new(
        shards: Vec<Arc<dyn ShardClient>>,
        meta: Arc<Engine>,
        clock: Arc<HybridClock>,
        wounds: &Wounds,
        ids: Arc<SnowflakeGenerator>,
    ) -> Coordinator {
        let registry = Arc::new(Registry::default());
        // Weak: the shards hold the sender, so strong references here would keep the
        // shards (and this task) alive forever after the database is dropped.
        let wound_targets = Arc::new(parking_lot::RwLock::new(
            shards.iter().map(Arc::downgrade).collect::<Vec<_>>(),
        ));
        if let Some(mut rx) = wounds.rx.lock().take() {
            let targets = wound_targets.clone();
            let registry = registry.clone();
            Handle::current().spawn(async move {
                while let Some((victim, by)) = rx.recv().await {
                    let shards = targets.read().clone();
                    wound(&shards, &registry, victim, by).await;
                }
            });
        }
        Coordinator {
            shards: parking_lot::RwLock::new(shards),
            wound_targets,
            move_tracker: Mutex::new(None),
            meta,
            clock,
            ddl_gate: Arc::new(RwLock::new(())),
            snapshots: Arc::new(SnapshotRegistry::default()),
            commits: std::sync::atomic::AtomicU64::new(0),
            ids,
            registry,
        }
    }

    /// The node's Snowflake id generator.
    pub fn ids(&self) -> &Arc<SnowflakeGenerator> {
        &self.ids
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Starts a transaction.
    pub fn begin(
        &self,
        isolation: Isolation,
        policy: DeadlockPolicy,
        lock_timeout_ms: u64,
        read_only: bool,
    ) -> Txn {
        let id = self.ids.next_id() as u64;
        let start = self.snapshots.register(&self.clock);
        let info = Arc::new(TxnInfo {
            txid: id,
            isolation,
            policy,
            started: Instant::now(),
            wounded_by: AtomicU64::new(0),
            state: Mutex::new(TxnState {
                phase: "active",
                ..TxnState::default()
            }),
        });
        self.registry.live.lock().insert(id, info.clone());
        Txn {
            id,
            isolation,
            policy,
            lock_timeout_ms,
            read_only,
            seq: 0,
            start,
            touched: BTreeSet::new(),
            written: BTreeSet::new(),
            info,
            gate: None,
            map_version: 0,
        }
    }

    /// 40P01 if an older transaction wounded this one (it is already aborted on the shards).
    pub fn check_wounded(&self, txn: &Txn) -> SqlResult<()> {
        match txn.info.wounded_by() {
            Some(by) => Err(crate::shard::txn::wounded_error(txn.id, by)),
            None => Ok(()),
        }
    }

    /// Sends a request of `txn` to a shard that will hold locks or intents for it.
    pub fn call_txn(
        &self,
        txn: &mut Txn,
        shard: usize,
        request: ShardRequest,
    ) -> SqlResult<ShardResponse> {
        if txn.touched.insert(shard) {
            txn.set_state("active", None);
        }
        self.call(shard, request)
    }

    /// Notes that `txn` may hold locks on every shard (its reads lock wherever they go).
    pub fn touch_all(&self, txn: &mut Txn) {
        let n = self.shard_count();
        if txn.touched.len() < n {
            txn.touched.extend(0..n);
            txn.set_state("active", None);
        }
    }

    /// Holds the DDL gate shared for the rest of the transaction (before its first write).
    pub fn enter_writing(&self, txn: &mut Txn) -> SqlResult<()> {
        if txn.gate.is_some() {
            return Ok(());
        }
        if txn.touched.is_empty() {
            txn.gate = Some(Handle::current().block_on(self.ddl_gate.clone().read_owned()));
            return Ok(());
        }
        // It holds locks already: waiting behind a DDL statement that waits for writers
        // (which may wait for these locks) is a wait no deadlock policy sees. Do not wait.
        match self.ddl_gate.clone().try_read_owned() {
            Ok(g) => {
                txn.gate = Some(g);
                Ok(())
            }
            Err(_) => Err(SqlError::new(
                sqlstate::DEADLOCK_DETECTED,
                format!(
                    "deadlock prevented: transaction {} holds locks and would wait for a DDL \
                     statement that waits for writing transactions to end",
                    txn.id
                ),
            )
            .with_hint("Retry the transaction.")),
        }
    }

    /// Exclusive locks on row keys (grouped by shard); each key's newest state, per shard in
    /// request order.
    pub fn lock_rows(
        &self,
        txn: &mut Txn,
        keys: BTreeMap<usize, Vec<Vec<u8>>>,
    ) -> SqlResult<BTreeMap<usize, Vec<KeyState>>> {
        self.enter_writing(txn)?;
        let ctx = txn.ctx();
        let mut out = BTreeMap::new();
        for (shard, keys) in keys {
            if keys.is_empty() {
                continue;
            }
            let request = ShardRequest::routed(
                txn.map_version,
                None,
                ShardRequest::LockRows { txn: ctx, keys },
            );
            match self.call_txn(txn, shard, request)? {
                ShardResponse::KeyStates(states) => {
                    out.insert(shard, states);
                }
                _ => return Err(SqlError::internal("unexpected shard response to LockRows")),
            }
        }
        Ok(out)
    }

    /// Writes as intents. Returns, per shard, the positions of refused `must_not_exist`
    /// writes (a shard with any wrote nothing of its part).
    pub fn write(
        &self,
        txn: &mut Txn,
        writes: BTreeMap<usize, Vec<TxnWrite>>,
    ) -> SqlResult<Vec<(usize, Vec<usize>)>> {
        self.enter_writing(txn)?;
        let ctx = txn.ctx();
        let mut dups = Vec::new();
        for (shard, writes) in writes {
            if writes.is_empty() {
                continue;
            }
            if txn.written.insert(shard) {
                txn.touched.insert(shard);
                txn.set_state("active", None);
            }
            if let Some(tracked) = self.move_tracker.lock().as_mut() {
                tracked
                    .entry(shard)
                    .or_default()
                    .extend(writes.iter().map(|w| w.key.clone()));
            }
            let request = ShardRequest::routed(
                txn.map_version,
                None,
                ShardRequest::Write { txn: ctx, writes },
            );
            match self.call_txn(txn, shard, request)? {
                ShardResponse::Duplicates(d) if d.is_empty() => {}
                ShardResponse::Duplicates(d) => dups.push((shard, d)),
                _ => return Err(SqlError::internal("unexpected shard response to Write")),
            }
        }
        Ok(dups)
    }

    /// Commits `txn`: one phase if it wrote on one shard, two phases if on several.
    pub fn commit_txn(&self, txn: Txn) -> SqlResult<()> {
        {
            // Atomically with the wound check (see `wound`): from here on no wound lands.
            let mut st = txn.info.state.lock();
            if let Some(by) = txn.info.wounded_by() {
                drop(st);
                let id = txn.id;
                self.rollback(txn);
                return Err(crate::shard::txn::wounded_error(id, by).with_detail(
                    "The transaction was aborted before its commit to prevent a deadlock.",
                ));
            }
            st.phase = "committing";
        }
        let written: Vec<usize> = txn.written.iter().copied().collect();
        let result = match written.len() {
            0 => Ok(()),
            1 => {
                txn.set_state("committing", Some("1PC"));
                let shard = written[0];
                match self.call(shard, ShardRequest::CommitTxn { txid: txn.id }) {
                    Ok(ShardResponse::Timestamp(ts)) => {
                        self.clock.observe(ts);
                        Ok(())
                    }
                    Ok(_) => Err(SqlError::internal("unexpected shard response to CommitTxn")),
                    Err(e) => Err(e),
                }
            }
            _ => {
                txn.set_state("preparing", Some("2PC"));
                self.two_phase_txn(&txn, &written)
            }
        };
        match result {
            Ok(()) => {
                for shard in txn.touched.iter().filter(|s| !txn.written.contains(s)) {
                    if let Err(e) = self.call(*shard, ShardRequest::ReleaseTxn { txid: txn.id }) {
                        tracing::warn!(txid = txn.id, shard, error = %e, "could not release locks");
                    }
                }
                self.finish(&txn);
                self.count_commit();
                Ok(())
            }
            Err(e) => {
                self.rollback(txn);
                Err(e)
            }
        }
    }

    fn two_phase_txn(&self, txn: &Txn, written: &[usize]) -> SqlResult<()> {
        crate::txn::faults::hit("before-prepare");
        for (i, shard) in written.iter().enumerate() {
            if i > 0 {
                crate::txn::faults::hit("between-prepares");
            }
            match self.call(*shard, ShardRequest::PrepareTxn { txid: txn.id })? {
                ShardResponse::Timestamp(ts) => self.clock.observe(ts),
                _ => {
                    return Err(SqlError::internal(
                        "unexpected shard response to PrepareTxn",
                    ));
                }
            }
        }
        crate::txn::faults::hit("after-prepares");
        // Drawn after every prepare: above each shard's `since`, so readers that did not wait
        // for this transaction cannot see it, and readers that waited see all of it.
        let commit_ts = self.clock.now();
        self.record_decision(txn.id, commit_ts)?;
        txn.set_state("committing", None);
        crate::txn::faults::hit("after-decision");
        let mut all_ok = true;
        for (i, shard) in written.iter().enumerate() {
            if i > 0 {
                crate::txn::faults::hit("between-commits");
            }
            let request = ShardRequest::Commit {
                txid: txn.id,
                commit_ts,
            };
            if let Err(e) = self.call(*shard, request) {
                tracing::error!(txid = txn.id, shard, error = %e, "commit after decision failed; recovery will finish it");
                all_ok = false;
            }
        }
        crate::txn::faults::hit("after-commits");
        if all_ok {
            self.forget_decision(txn.id);
        }
        Ok(())
    }

    /// Ends `txn` without committing: its intents are discarded and its locks released.
    pub fn rollback(&self, txn: Txn) {
        txn.set_state("aborting", None);
        // A wounded transaction may have left tombstones on shards it never reached.
        let shards: Vec<usize> = if txn.info.wounded_by().is_some() {
            (0..self.shard_count()).collect()
        } else {
            txn.touched.iter().copied().collect()
        };
        for shard in &shards {
            let request = ShardRequest::AbortTxn {
                txid: txn.id,
                wounded_by: None,
            };
            if let Err(e) = self.call(*shard, request) {
                tracing::warn!(txid = txn.id, shard, error = %e, "abort failed on a shard");
            }
        }
        self.finish(&txn);
    }

    /// ROLLBACK TO SAVEPOINT: undoes what statements after `seq` wrote.
    pub fn rollback_to(&self, txn: &mut Txn, seq: u32) -> SqlResult<()> {
        for shard in txn.touched.clone() {
            self.call(shard, ShardRequest::RollbackTo { txid: txn.id, seq })?;
        }
        Ok(())
    }

    fn finish(&self, txn: &Txn) {
        self.registry.live.lock().remove(&txn.id);
    }

    fn count_commit(&self) {
        let n = self.commits.fetch_add(1, Ordering::Relaxed);
        if n % WATERMARK_EVERY == WATERMARK_EVERY - 1 {
            self.publish_gc_watermark();
        }
    }

    /// Shard slots (live shards and any a map no longer uses).
    pub fn shard_count(&self) -> usize {
        self.shards.read().len()
    }

    /// The shard clients, indexed by shard id.
    pub fn shards(&self) -> Vec<Arc<dyn ShardClient>> {
        self.shards.read().clone()
    }

    fn client(&self, shard: usize) -> SqlResult<Arc<dyn ShardClient>> {
        self.shards
            .read()
            .get(shard)
            .cloned()
            .ok_or_else(|| SqlError::internal(format!("no shard {shard}")))
    }

    /// Adds a shard client under the next id and returns that id.
    pub fn add_shard(&self, client: Arc<dyn ShardClient>) -> usize {
        let mut shards = self.shards.write();
        self.wound_targets.write().push(Arc::downgrade(&client));
        shards.push(client);
        shards.len() - 1
    }

    /// Starts recording the keys transactions write (for a data move's catch-up).
    pub fn start_move_tracking(&self) {
        *self.move_tracker.lock() = Some(BTreeMap::new());
    }

    /// Stops recording and returns what was written since `start_move_tracking`.
    pub fn take_move_tracking(&self) -> BTreeMap<usize, BTreeSet<Vec<u8>>> {
        self.move_tracker.lock().take().unwrap_or_default()
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
        for shard in 0..self.shard_count() {
            if let Err(e) = self.call(shard, ShardRequest::GcWatermark { ts }) {
                tracing::warn!(shard, error = %e, "could not publish the GC watermark");
            }
        }
        self.meta.set_gc_watermark(ts);
    }

    /// The DDL gate, exclusively: waits until no transaction that wrote is open, and keeps
    /// new ones from writing until dropped.
    pub fn write_guard(&self) -> OwnedRwLockWriteGuard<()> {
        Handle::current().block_on(self.ddl_gate.clone().write_owned())
    }

    /// Calls one shard from a blocking thread.
    pub fn call(&self, shard: usize, request: ShardRequest) -> SqlResult<ShardResponse> {
        let client = self.client(shard)?;
        Handle::current().block_on(client.call(request))
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
                    let client = self.client(shard);
                    s.spawn(move || handle.block_on(client?.call(request)))
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

    /// Durably applies `writes` on one shard outside any transaction (no locks, no intents):
    /// for maintenance under the DDL gate, such as deleting a dropped table's rows, which no
    /// transaction can see any more. Returns the commit timestamp.
    pub fn apply_outside_txn(&self, shard: usize, writes: Vec<RowWrite>) -> SqlResult<u64> {
        // Registered until the write is applied, so no watermark passes it meanwhile.
        let registered = self.snapshots.register(&self.clock);
        let commit_ts = registered.ts();
        if !writes.is_empty() {
            self.call(shard, ShardRequest::Apply { commit_ts, writes })?;
            self.count_commit();
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
        for shard in 0..self.shard_count() {
            if let ShardResponse::Timestamp(ts) = self.call(shard, ShardRequest::MaxCommittedTs)? {
                self.clock.observe(ts);
            }
        }
        let mut resolved = Vec::new();
        for shard in 0..self.shard_count() {
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
            }
        }
        for txid in resolved {
            self.forget_decision(txid);
        }
        // Nothing is in doubt now, so every decision left is one whose participants all
        // committed before a crash kept the coordinator from dropping it: drop it now.
        loop {
            let stale = self
                .meta
                .scan_prefix(DECISION_PREFIX, u64::MAX, 1024)
                .map_err(storage_error)?;
            if stale.is_empty() {
                break;
            }
            for (key, _) in &stale {
                if let Some(id) = key
                    .strip_prefix(DECISION_PREFIX)
                    .and_then(|b| <[u8; 8]>::try_from(b).ok())
                {
                    self.forget_decision(u64::from_be_bytes(id));
                }
            }
            if stale.len() < 1024 {
                break;
            }
        }
        Ok(())
    }
}

/// Aborts a wounded transaction on every shard (where it is not already committing) and marks
/// it, so its session fails its next statement or its commit with 40P01.
async fn wound(
    shards: &[std::sync::Weak<dyn ShardClient>],
    registry: &Registry,
    victim: u64,
    by: u64,
) {
    let info = registry.live.lock().get(&victim).cloned();
    let Some(info) = info else { return };
    {
        // Under the state lock, so a commit that has begun is never wounded (its locks must
        // last until it ends) and a wound that won is seen by the commit.
        let st = info.state.lock();
        if st.phase != "active" {
            return;
        }
        // Sent again for a victim already wounded: it may have reached a new shard since.
        let _ = info
            .wounded_by
            .compare_exchange(0, by, Ordering::AcqRel, Ordering::Acquire);
    }
    tracing::debug!(victim, by, "wound-wait: aborting the younger transaction");
    for (shard, client) in shards.iter().enumerate() {
        let Some(client) = client.upgrade() else {
            return;
        };
        let request = ShardRequest::AbortTxn {
            txid: victim,
            wounded_by: Some(by),
        };
        if let Err(e) = client.call(request).await {
            tracing::warn!(victim, shard, error = %e, "could not abort a wounded transaction");
        }
    }
}

/// Whether `e` ended the transaction that got it (it was rolled back on every shard).
pub fn aborts_transaction(e: &SqlError) -> bool {
    e.code == sqlstate::DEADLOCK_DETECTED
}
