//! The shard's side of live transactions: their uncommitted writes (intents) and their phase.
//!
//! A transaction's writes stay on the shard, in memory, as *intents* until it ends: one intent
//! per key, the newest value the transaction gave it. Nothing is logged for an intent — an
//! intent is not durable until the transaction prepares (two-phase commit) or commits (one
//! phase), when its intents become one WAL record like any write set. A crash forgets every
//! active transaction, which is what an abort means.
//!
//! Who sees an intent:
//! - its own transaction (read your own writes), through every read the transaction makes;
//! - READ UNCOMMITTED readers, which read the newest version of a key, intents included;
//! - nobody else: snapshot readers read committed versions from the engine.
//!
//! Invariants:
//! - at most one transaction has an intent on a key, because writing needs the key's
//!   exclusive lock and locks are held until the transaction ends;
//! - a transaction's undo log lists, in order, each intent change it made with the value it
//!   replaced, tagged with the statement number — rolling back to a savepoint pops the entries
//!   of later statements, so the intents are exactly what the kept statements wrote;
//! - a committing (one phase) or prepared transaction's intents stay visible to this table
//!   until the outcome is applied to the engine; snapshot readers whose timestamp is at or
//!   after the moment the commit began (`since`) wait for the outcome instead of guessing,
//!   because its commit timestamp is drawn after `since` and may fall below theirs. Readers
//!   that started earlier can never see the commit (its timestamp is above theirs) and do not
//!   wait. This is what keeps a snapshot from seeing half of a cross-shard transaction;
//! - an aborted (wounded) transaction keeps a tombstone entry until its coordinator ends it,
//!   so a statement of it still in flight cannot start writing again.

use crate::error::{SqlError, SqlResult, sqlstate};
use crate::rpc::RowWrite;
use crate::txn::{Isolation, TxnCtx};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::time::Instant;

/// Where a transaction is on this shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    Active,
    /// One-phase commit under way; `since` was drawn before its commit timestamp.
    Committing {
        since: u64,
    },
    /// Prepared (durable, locks kept), waiting for the coordinator's decision.
    Prepared {
        since: u64,
    },
    /// Aborted by `by` (a wound under wound-wait) while its coordinator still runs it.
    Aborted {
        by: u64,
    },
}

/// One transaction on this shard, as the `sharddb_transactions` view shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShardTxnInfo {
    pub txid: u64,
    pub isolation: Isolation,
    pub phase: Phase,
    pub intents: usize,
    pub bytes: usize,
    pub age_ms: u64,
}

struct Intent {
    txid: u64,
    value: Option<Vec<u8>>,
}

struct Undo {
    key: Vec<u8>,
    /// The transaction's own intent this one replaced (`None`: there was none).
    prev: Option<Option<Vec<u8>>>,
    seq: u32,
    /// What this change added to the transaction's byte count (given back on undo).
    size: usize,
}

struct ShardTxn {
    phase: Phase,
    isolation: Isolation,
    undo: Vec<Undo>,
    bytes: usize,
    started: Instant,
}

#[derive(Default)]
struct Inner {
    txns: HashMap<u64, ShardTxn>,
    intents: BTreeMap<Vec<u8>, Intent>,
}

pub struct TxnTable {
    inner: Mutex<Inner>,
    /// Woken whenever a committing or prepared transaction's outcome is applied.
    decided: tokio::sync::Notify,
    /// Most bytes of intents one transaction may hold on this shard.
    max_txn_bytes: usize,
}

/// The error a transaction gets once it was aborted to prevent a deadlock.
pub fn wounded_error(txid: u64, by: u64) -> SqlError {
    SqlError::new(
        sqlstate::DEADLOCK_DETECTED,
        format!(
            "deadlock prevented by wound-wait: transaction {txid} was wounded by older \
             transaction {by}"
        ),
    )
    .with_hint("The transaction was rolled back; retry it.")
}

fn ended_error(txid: u64) -> SqlError {
    SqlError::internal(format!(
        "transaction {txid} is already committing on this shard"
    ))
}

impl TxnTable {
    pub fn new(max_txn_bytes: usize) -> TxnTable {
        TxnTable {
            inner: Mutex::new(Inner::default()),
            decided: tokio::sync::Notify::new(),
            max_txn_bytes,
        }
    }

    /// Makes sure `ctx`'s transaction is known here and may still act.
    pub fn register(&self, ctx: &TxnCtx) -> SqlResult<()> {
        let mut inner = self.inner.lock();
        let t = inner.txns.entry(ctx.txid).or_insert_with(|| ShardTxn {
            phase: Phase::Active,
            isolation: ctx.isolation,
            undo: Vec::new(),
            bytes: 0,
            started: Instant::now(),
        });
        match t.phase {
            Phase::Active => Ok(()),
            Phase::Aborted { by } => Err(wounded_error(ctx.txid, by)),
            _ => Err(ended_error(ctx.txid)),
        }
    }

    /// `Err` if the transaction was aborted here meanwhile (checked after waiting for locks).
    pub fn check_active(&self, txid: u64) -> SqlResult<()> {
        match self.inner.lock().txns.get(&txid).map(|t| t.phase) {
            None | Some(Phase::Active) => Ok(()),
            Some(Phase::Aborted { by }) => Err(wounded_error(txid, by)),
            Some(_) => Err(ended_error(txid)),
        }
    }

    /// Records `ctx`'s new value for `key`. The caller holds the key's exclusive lock.
    pub fn write(&self, ctx: &TxnCtx, key: Vec<u8>, value: Option<Vec<u8>>) -> SqlResult<()> {
        let mut inner = self.inner.lock();
        let Inner { txns, intents } = &mut *inner;
        let Some(t) = txns.get_mut(&ctx.txid) else {
            return Err(SqlError::internal(
                "write by a transaction unknown to the shard",
            ));
        };
        match t.phase {
            Phase::Active => {}
            Phase::Aborted { by } => return Err(wounded_error(ctx.txid, by)),
            _ => return Err(ended_error(ctx.txid)),
        }
        let size = key.len() + value.as_ref().map_or(0, Vec::len) + 64;
        if t.bytes + size > self.max_txn_bytes {
            return Err(SqlError::new(
                sqlstate::OUT_OF_MEMORY,
                format!(
                    "transaction {} writes more than {} MiB on one shard",
                    ctx.txid,
                    self.max_txn_bytes >> 20
                ),
            )
            .with_hint(
                "Split the work into smaller transactions: uncommitted writes are held in \
                 memory until commit.",
            ));
        }
        let prev = match intents.get(&key) {
            Some(i) if i.txid == ctx.txid => Some(i.value.clone()),
            Some(i) => {
                return Err(SqlError::internal(format!(
                    "key written by transaction {} while transaction {} holds an intent on it",
                    ctx.txid, i.txid
                )));
            }
            None => None,
        };
        t.bytes += size;
        t.undo.push(Undo {
            key: key.clone(),
            prev,
            seq: ctx.seq,
            size,
        });
        intents.insert(
            key,
            Intent {
                txid: ctx.txid,
                value,
            },
        );
        Ok(())
    }

    /// `Some(value)` if `txid` has an intent on `key` (`Some(None)`: it deleted the key).
    pub fn own(&self, txid: u64, key: &[u8]) -> Option<Option<Vec<u8>>> {
        let inner = self.inner.lock();
        match inner.intents.get(key) {
            Some(i) if i.txid == txid => Some(i.value.clone()),
            _ => None,
        }
    }

    /// The newest uncommitted value of `key` by anyone (READ UNCOMMITTED).
    pub fn newest(&self, key: &[u8]) -> Option<Option<Vec<u8>>> {
        self.inner.lock().intents.get(key).map(|i| i.value.clone())
    }

    /// Intents within the range: `txid`'s own, or everyone's with `None`.
    pub fn overlay(
        &self,
        txid: Option<u64>,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
    ) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        let inner = self.inner.lock();
        if inner.intents.is_empty() || empty_range(start, end) {
            return Vec::new();
        }
        inner
            .intents
            .range::<[u8], _>((start, end))
            .filter(|(_, i)| txid.is_none_or(|t| t == i.txid))
            .map(|(k, i)| (k.clone(), i.value.clone()))
            .collect()
    }

    /// True if `txid` holds any intent here.
    pub fn has_intents(&self, txid: u64) -> bool {
        self.inner
            .lock()
            .txns
            .get(&txid)
            .is_some_and(|t| !t.undo.is_empty())
    }

    /// Waits until no transaction other than `reader` that is committing or prepared since a
    /// timestamp at or below `read_ts` has an intent within the range.
    pub async fn wait_decided(
        &self,
        reader: Option<u64>,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        read_ts: u64,
    ) {
        loop {
            let notified = self.decided.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if !self.undecided_in(reader, start, end, read_ts) {
                return;
            }
            notified.await;
        }
    }

    fn undecided_in(
        &self,
        reader: Option<u64>,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        read_ts: u64,
    ) -> bool {
        let inner = self.inner.lock();
        if inner.intents.is_empty() || empty_range(start, end) {
            return false;
        }
        // Committing/prepared transactions are few; look at them rather than every intent.
        let undecided: Vec<u64> = inner
            .txns
            .iter()
            .filter(|(id, t)| {
                Some(**id) != reader
                    && matches!(t.phase,
                        Phase::Committing { since } | Phase::Prepared { since } if since <= read_ts)
            })
            .map(|(id, _)| *id)
            .collect();
        if undecided.is_empty() {
            return false;
        }
        inner
            .intents
            .range::<[u8], _>((start, end))
            .any(|(_, i)| undecided.contains(&i.txid))
    }

    /// Moves `txid` from active to committing (`prepare` false) or prepared, and returns its
    /// write set (each key's final value). Empty if it never wrote here.
    pub fn begin_commit(&self, txid: u64, since: u64, prepare: bool) -> SqlResult<Vec<RowWrite>> {
        let mut inner = self.inner.lock();
        let Inner { txns, intents } = &mut *inner;
        let Some(t) = txns.get_mut(&txid) else {
            return Ok(Vec::new());
        };
        match t.phase {
            Phase::Active => {}
            Phase::Aborted { by } => return Err(wounded_error(txid, by)),
            _ => return Err(ended_error(txid)),
        }
        t.phase = if prepare {
            Phase::Prepared { since }
        } else {
            Phase::Committing { since }
        };
        let mut keys: Vec<&Vec<u8>> = t.undo.iter().map(|u| &u.key).collect();
        keys.sort();
        keys.dedup();
        Ok(keys
            .into_iter()
            .filter_map(|k| {
                intents.get(k).map(|i| RowWrite {
                    key: k.clone(),
                    value: i.value.clone(),
                })
            })
            .collect())
    }

    /// Back from committing/prepared to active: the commit failed before it was applied (e.g.
    /// the WAL write failed), so the transaction can still be rolled back normally.
    pub fn commit_failed(&self, txid: u64) {
        let mut inner = self.inner.lock();
        if let Some(t) = inner.txns.get_mut(&txid) {
            t.phase = Phase::Active;
        }
        drop(inner);
        self.decided.notify_waiters();
    }

    /// Forgets `txid` and its intents: its outcome is in the engine now (or it wrote nothing).
    pub fn finish(&self, txid: u64) {
        let mut inner = self.inner.lock();
        let Inner { txns, intents } = &mut *inner;
        if let Some(t) = txns.remove(&txid) {
            for u in &t.undo {
                if intents.get(&u.key).is_some_and(|i| i.txid == txid) {
                    intents.remove(&u.key);
                }
            }
        }
        drop(inner);
        self.decided.notify_waiters();
    }

    /// Discards an active transaction's intents. With `by` (a wound) the transaction stays
    /// known as aborted until its coordinator ends it; without, it is forgotten. Returns the
    /// phase it was in: a committing or prepared transaction is not touched.
    pub fn abort(&self, txid: u64, by: Option<u64>) -> Option<Phase> {
        let mut inner = self.inner.lock();
        let Inner { txns, intents } = &mut *inner;
        let Some(phase) = txns.get(&txid).map(|t| t.phase) else {
            // Wounded before its first request here: a tombstone, so a statement of it still
            // on its way cannot lock or write here (its coordinator's final abort removes it).
            if let Some(by) = by {
                txns.insert(
                    txid,
                    ShardTxn {
                        phase: Phase::Aborted { by },
                        isolation: Isolation::ReadCommitted,
                        undo: Vec::new(),
                        bytes: 0,
                        started: Instant::now(),
                    },
                );
            }
            return None;
        };
        match phase {
            Phase::Active | Phase::Aborted { .. } => {
                let t = txns.get_mut(&txid).expect("present");
                for u in t.undo.drain(..).rev() {
                    if intents.get(&u.key).is_some_and(|i| i.txid == txid) {
                        intents.remove(&u.key);
                    }
                }
                t.bytes = 0;
                match by {
                    Some(by) => t.phase = Phase::Aborted { by },
                    None => {
                        txns.remove(&txid);
                    }
                }
            }
            Phase::Committing { .. } | Phase::Prepared { .. } => {}
        }
        Some(phase)
    }

    /// Undoes what statements after `seq` wrote (ROLLBACK TO SAVEPOINT).
    pub fn rollback_to(&self, txid: u64, seq: u32) {
        let mut inner = self.inner.lock();
        let Inner { txns, intents } = &mut *inner;
        let Some(t) = txns.get_mut(&txid) else { return };
        if t.phase != Phase::Active {
            return;
        }
        while t.undo.last().is_some_and(|u| u.seq > seq) {
            let u = t.undo.pop().expect("checked");
            t.bytes = t.bytes.saturating_sub(u.size);
            match u.prev {
                Some(value) => {
                    intents.insert(u.key, Intent { txid, value });
                }
                None => {
                    intents.remove(&u.key);
                }
            }
        }
    }

    pub fn phase(&self, txid: u64) -> Option<Phase> {
        self.inner.lock().txns.get(&txid).map(|t| t.phase)
    }

    pub fn list(&self) -> Vec<ShardTxnInfo> {
        let inner = self.inner.lock();
        let mut out: Vec<ShardTxnInfo> = inner
            .txns
            .iter()
            .map(|(id, t)| {
                let mut keys: Vec<&Vec<u8>> = t.undo.iter().map(|u| &u.key).collect();
                keys.sort();
                keys.dedup();
                ShardTxnInfo {
                    txid: *id,
                    isolation: t.isolation,
                    phase: t.phase,
                    intents: keys.len(),
                    bytes: t.bytes,
                    age_ms: t.started.elapsed().as_millis() as u64,
                }
            })
            .collect();
        out.sort_by_key(|t| t.txid);
        out
    }
}

/// `BTreeMap::range` panics on a range whose start is after its end; such a range is empty.
fn empty_range(start: Bound<&[u8]>, end: Bound<&[u8]>) -> bool {
    match (start, end) {
        (Bound::Included(s), Bound::Included(e)) => s > e,
        (Bound::Included(s), Bound::Excluded(e))
        | (Bound::Excluded(s), Bound::Included(e))
        | (Bound::Excluded(s), Bound::Excluded(e)) => s >= e,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::txn::DeadlockPolicy;

    fn ctx(txid: u64, seq: u32) -> TxnCtx {
        TxnCtx {
            txid,
            isolation: Isolation::ReadCommitted,
            policy: DeadlockPolicy::WaitDie,
            lock_timeout_ms: 0,
            seq,
        }
    }

    #[test]
    fn savepoints_restore_earlier_values() {
        let t = TxnTable::new(1 << 20);
        t.register(&ctx(1, 1)).unwrap();
        t.write(&ctx(1, 1), b"a".to_vec(), Some(b"1".to_vec()))
            .unwrap();
        t.write(&ctx(1, 2), b"a".to_vec(), Some(b"2".to_vec()))
            .unwrap();
        t.write(&ctx(1, 2), b"b".to_vec(), None).unwrap();
        assert_eq!(t.own(1, b"a"), Some(Some(b"2".to_vec())));
        t.rollback_to(1, 1);
        assert_eq!(t.own(1, b"a"), Some(Some(b"1".to_vec())));
        assert_eq!(t.own(1, b"b"), None);
        let writes = t.begin_commit(1, 5, false).unwrap();
        assert_eq!(writes.len(), 1);
        t.finish(1);
        assert_eq!(t.newest(b"a"), None);
    }

    #[test]
    fn wounded_transactions_cannot_write_again() {
        let t = TxnTable::new(1 << 20);
        t.register(&ctx(1, 1)).unwrap();
        t.write(&ctx(1, 1), b"a".to_vec(), Some(b"1".to_vec()))
            .unwrap();
        assert_eq!(t.abort(1, Some(0)), Some(Phase::Active));
        assert_eq!(t.newest(b"a"), None);
        assert!(t.register(&ctx(1, 2)).is_err());
        assert!(t.write(&ctx(1, 2), b"a".to_vec(), None).is_err());
        t.abort(1, None);
        assert!(t.phase(1).is_none());
    }

    #[test]
    fn savepoint_rollback_returns_the_bytes_it_counted() {
        let t = TxnTable::new(1000);
        t.register(&ctx(1, 1)).unwrap();
        for round in 0..5 {
            let r = t.write(&ctx(1, 2), b"a".to_vec(), Some(vec![0; 400]));
            assert!(r.is_ok(), "round {round}: {r:?}");
            t.rollback_to(1, 1);
        }
    }

    #[test]
    fn a_wound_before_the_first_request_leaves_a_tombstone() {
        let t = TxnTable::new(1 << 20);
        assert_eq!(t.abort(5, Some(1)), None);
        assert!(t.register(&ctx(5, 1)).is_err());
        t.abort(5, None);
        assert!(t.register(&ctx(5, 1)).is_ok());
    }

    #[test]
    fn memory_is_bounded_per_transaction() {
        let t = TxnTable::new(1000);
        t.register(&ctx(1, 1)).unwrap();
        let e = t
            .write(&ctx(1, 1), b"a".to_vec(), Some(vec![0; 2000]))
            .unwrap_err();
        assert_eq!(e.code, sqlstate::OUT_OF_MEMORY);
    }

    #[tokio::test]
    async fn readers_wait_for_prepared_intents_at_or_after_since() {
        let t = std::sync::Arc::new(TxnTable::new(1 << 20));
        t.register(&ctx(1, 1)).unwrap();
        t.write(&ctx(1, 1), b"k".to_vec(), Some(b"v".to_vec()))
            .unwrap();
        t.begin_commit(1, 100, true).unwrap();
        // Older than the prepare: no wait.
        t.wait_decided(None, Bound::Unbounded, Bound::Unbounded, 99)
            .await;
        let t2 = t.clone();
        let waiter = tokio::spawn(async move {
            t2.wait_decided(None, Bound::Unbounded, Bound::Unbounded, 100)
                .await
        });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        t.finish(1);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap();
    }
}
