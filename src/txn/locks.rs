//! The per-shard lock manager: two-phase locking with deadlock *prevention* (wait-die and
//! wound-wait) instead of deadlock detection.
//!
//! A transaction locks keys (one row or index entry) and key ranges (what a serializable scan
//! read, so that no phantom can be inserted into it) in shared or exclusive mode, and keeps them
//! until it ends, when its owner calls [`LockManager::release_all`]. Two locks of different
//! transactions conflict when their targets overlap and not both are shared.
//!
//! # Deadlock prevention
//!
//! Transaction ids are Snowflake ids, so their order is start order and is the same on every
//! shard: a smaller txid is an older transaction. When a request conflicts with a granted lock,
//! the requester R and each conflicting holder H are compared:
//!
//! ```text
//!                        | H's policy is wait-die  | H's policy is wound-wait
//!   R younger than H     | R dies (Die)            | R waits
//!   ---------------------+-------------------------+--------------------------------
//!                        | R's policy is wait-die  | R's policy is wound-wait
//!   R older than H       | R waits                 | R wounds H (WoundSink), waits
//! ```
//!
//! With one policy everywhere this is textbook wait-die (only older waits for younger) or
//! wound-wait (only younger waits for older; older preempts younger). Policies are per session,
//! so they mix, and the mix still cannot deadlock. Take any cycle of waits and its oldest
//! transaction O. The transaction waiting for O is younger than O, and a younger requester may
//! only wait for a holder whose policy is wound-wait: so O plays wound-wait. O's own wait in the
//! cycle is for someone younger, and O, being wound-wait, wounded it when that wait began (or
//! when that holder appeared, see below). A wounded transaction is aborted by its owner, and
//! an aborted transaction never waits (its pending waits fail at once and its later requests
//! fail), so its locks go away in finite time and the cycle breaks. Txids being global, this
//! holds for cycles spread over several shards, without a global waits-for graph.
//!
//! Two refinements keep that argument true:
//! - Waiters are re-evaluated whenever the holders that matter to them change: when a
//!   transaction they wait for releases its locks, and when a lock conflicting with their
//!   request is granted to someone else (only *granted* locks count, so a compatible request can
//!   pass a waiter). Re-evaluation re-applies the table, so a waiter may then die, or wound the
//!   newcomer. Every waits-for edge is therefore either checked against the table or about to be.
//! - A holder already marked aborted ([`LockManager::abort`]) is waited for without applying the
//!   table: it is leaving without waiting for anything, so neither dying nor wounding is needed.
//!
//! The wound itself is only a message ([`WoundSink::wound`], called once per victim per wait and
//! never under the internal mutex): the victim's owner aborts it everywhere, which on this shard
//! ends with `abort(victim, by)` (failing the victim's waits) and `release_all(victim)`.
//!
//! # Invariants
//!
//! - No two granted locks of different transactions conflict.
//! - A lock is granted only inside the requesting task's own evaluation, in the same critical
//!   section in which its `lock()` call decides to return `Ok`. Nobody grants on behalf of a
//!   waiter, so a cancelled (dropped) `lock()` future can never leave a lock behind that its
//!   caller did not learn about; its guard removes the waiter entry.
//! - The internal mutex is held briefly and never across an await.
//! - An aborted transaction is never granted anything until `release_all` forgets the mark;
//!   `release_all` also fails the transaction's own waits still pending, since a lock granted
//!   after the release would never be released.
//!
//! # Data structures and costs
//!
//! Per lock space, key locks live in a `BTreeMap` from key to its holders, so a range request
//! finds the keys inside it with a range query; range locks live in a map scanned linearly
//! (fine while a shard holds few range locks at a time; an interval tree would make it
//! logarithmic). Ranges are normalized to half-open byte-string intervals `[lo, hi)`: an
//! excluded lower bound `k` becomes `k ++ [0]`, the next byte string, so overlap tests never get
//! the `(k, k ++ [0])` emptiness wrong. A per-transaction index of held locks makes
//! `release_all` proportional to what the transaction holds. Waiters are few (one per blocked
//! transaction) and are scanned on every grant and release.
//!
//! # Known limits
//!
//! - No FIFO queue: a stream of compatible (shared) requests can starve an exclusive waiter
//!   (writer starvation); wound-wait limits it for older writers, which wound younger readers.
//! - Progress under wound-wait depends on wounded transactions actually being aborted by their
//!   owners; a victim that is never aborted keeps its wounder waiting (bounded by its timeout).
//! - An empty range (for example `[k, k)`) protects nothing and is granted without being
//!   recorded.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::ops::Bound;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tracing::{debug, trace};

/// SQLSTATE `lock_not_available`, which PostgreSQL reports for `lock_timeout`.
const LOCK_NOT_AVAILABLE: &str = "55P03";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LockMode {
    Shared,
    Exclusive,
}

impl LockMode {
    /// Whether locks of two different transactions in these modes on overlapping targets
    /// conflict.
    pub fn conflicts_with(self, other: LockMode) -> bool {
        self == LockMode::Exclusive || other == LockMode::Exclusive
    }

    /// Whether holding `self` makes a request for `requested` (same target) redundant.
    pub fn covers(self, requested: LockMode) -> bool {
        self == LockMode::Exclusive || requested == LockMode::Shared
    }

    fn max(self, other: LockMode) -> LockMode {
        if self.covers(other) { self } else { other }
    }
}

impl fmt::Display for LockMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LockMode::Shared => "shared",
            LockMode::Exclusive => "exclusive",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum DeadlockPolicy {
    #[default]
    WaitDie,
    WoundWait,
}

impl fmt::Display for DeadlockPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DeadlockPolicy::WaitDie => "wait_die",
            DeadlockPolicy::WoundWait => "wound_wait",
        })
    }
}

impl FromStr for DeadlockPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<DeadlockPolicy, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "wait_die" | "wait-die" => Ok(DeadlockPolicy::WaitDie),
            "wound_wait" | "wound-wait" => Ok(DeadlockPolicy::WoundWait),
            _ => Err(format!(
                "invalid value for deadlock_policy: \"{s}\" (expected wait_die or wound_wait)"
            )),
        }
    }
}

/// Which key space a lock lives in: table rows (by primary key) or the entries of one index.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum LockSpace {
    Rows,
    Index(u32),
}

impl fmt::Display for LockSpace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockSpace::Rows => f.write_str("rows"),
            LockSpace::Index(id) => write!(f, "index {id}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LockTarget {
    Key {
        space: LockSpace,
        key: Vec<u8>,
    },
    Range {
        space: LockSpace,
        start: Bound<Vec<u8>>,
        end: Bound<Vec<u8>>,
    },
}

impl LockTarget {
    pub fn key(space: LockSpace, key: impl Into<Vec<u8>>) -> LockTarget {
        LockTarget::Key {
            space,
            key: key.into(),
        }
    }

    pub fn range(space: LockSpace, start: Bound<Vec<u8>>, end: Bound<Vec<u8>>) -> LockTarget {
        LockTarget::Range { space, start, end }
    }

    pub fn space(&self) -> &LockSpace {
        match self {
            LockTarget::Key { space, .. } | LockTarget::Range { space, .. } => space,
        }
    }

    /// Whether the two targets share at least one key (the lock-conflict test, modes aside).
    pub fn overlaps(&self, other: &LockTarget) -> bool {
        self.space() == other.space() && Span::of(self).overlaps(&Span::of(other))
    }
}

impl fmt::Display for LockTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockTarget::Key { space, key } => write!(f, "{space} key {}", Hex(key)),
            LockTarget::Range { space, start, end } => {
                write!(f, "{space} range ")?;
                match start {
                    Bound::Included(k) => write!(f, "[{}", Hex(k))?,
                    Bound::Excluded(k) => write!(f, "({}", Hex(k))?,
                    Bound::Unbounded => f.write_str("(-inf")?,
                }
                f.write_str(", ")?;
                match end {
                    Bound::Included(k) => write!(f, "{}]", Hex(k)),
                    Bound::Excluded(k) => write!(f, "{})", Hex(k)),
                    Bound::Unbounded => f.write_str("+inf)"),
                }
            }
        }
    }
}

/// Keys are shown in hex, cut after 32 bytes so that a system view row stays readable.
struct Hex<'a>(&'a [u8]);

impl fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 32;
        if self.0.is_empty() {
            return f.write_str("''");
        }
        for b in self.0.iter().take(SHOWN) {
            write!(f, "{b:02x}")?;
        }
        if self.0.len() > SHOWN {
            f.write_str("..")?;
        }
        Ok(())
    }
}

/// Who asks: the transaction and the deadlock policy its session chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockOwner {
    /// Smaller is older (Snowflake-style txids are in start order).
    pub txid: u64,
    pub policy: DeadlockPolicy,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LockError {
    /// wait-die: the requester is younger than a conflicting holder and aborts.
    #[error(
        "deadlock prevented by wait-die: transaction {txid} is younger than transaction {holder}, which holds a conflicting lock"
    )]
    Die { txid: u64, holder: u64 },
    /// The requester was wounded (by an older transaction under wound-wait) or otherwise aborted
    /// while waiting / before asking. `by == txid` when it was aborted for another reason (its
    /// locks were released while it still waited).
    #[error("{}", wounded_message(*txid, *by))]
    Wounded { txid: u64, by: u64 },
    /// The wait outlived the caller's timeout; `holder` is the transaction it waited for.
    #[error("canceling statement due to lock timeout")]
    Timeout { txid: u64, holder: u64 },
}

fn wounded_message(txid: u64, by: u64) -> String {
    if txid == by {
        format!("transaction {txid} was aborted while it waited for a lock")
    } else {
        format!(
            "deadlock prevented by wound-wait: transaction {txid} was wounded by older transaction {by}"
        )
    }
}

impl LockError {
    /// The SQLSTATE a client should see: 40P01 for deadlock prevention, 55P03 for a lock timeout
    /// (as PostgreSQL reports `lock_timeout`).
    pub fn sqlstate(&self) -> &'static str {
        match self {
            LockError::Die { .. } | LockError::Wounded { .. } => {
                crate::error::sqlstate::DEADLOCK_DETECTED
            }
            LockError::Timeout { .. } => LOCK_NOT_AVAILABLE,
        }
    }

    /// A DETAIL line naming the other transaction where the message does not already.
    pub fn detail(&self) -> Option<String> {
        match self {
            LockError::Timeout { txid, holder } => Some(format!(
                "Transaction {txid} was waiting for a lock held by transaction {holder}."
            )),
            LockError::Die { .. } | LockError::Wounded { .. } => None,
        }
    }

    pub fn hint(&self) -> Option<&'static str> {
        match self {
            LockError::Die { .. } | LockError::Wounded { .. } => Some("Retry the transaction."),
            LockError::Timeout { .. } => None,
        }
    }
}

/// Told when the lock manager decides an older requester wounds a younger holder. Must not block
/// (implementations spawn or queue work). The owner of the victim then aborts it everywhere
/// (on this shard that ends with `abort(victim, by)` followed by `release_all(victim)`).
pub trait WoundSink: Send + Sync {
    fn wound(&self, victim: u64, by: u64);
}

/// One row of the `sharddb_locks` system view.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LockInfo {
    pub txid: u64,
    pub policy: DeadlockPolicy,
    /// Human-readable, e.g. `rows key 0a1b` or `index 7 range [0a, 0b)`.
    pub target: String,
    pub mode: LockMode,
    pub granted: bool,
    /// Milliseconds since the lock was granted or the wait began.
    pub age_ms: u64,
    /// For waiters: the (oldest) transaction they wait for.
    pub waiting_for: Option<u64>,
}

/// A target as the half-open interval `[lo, hi)` of byte strings it covers (`hi = None`: no
/// upper end). A key `k` is `[k, k ++ [0])`: `k ++ [0]` is the smallest byte string above `k`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Span {
    lo: Vec<u8>,
    hi: Option<Vec<u8>>,
}

fn successor(key: &[u8]) -> Vec<u8> {
    let mut next = Vec::with_capacity(key.len() + 1);
    next.extend_from_slice(key);
    next.push(0);
    next
}

impl Span {
    fn of(target: &LockTarget) -> Span {
        match target {
            LockTarget::Key { key, .. } => Span {
                lo: key.clone(),
                hi: Some(successor(key)),
            },
            LockTarget::Range { start, end, .. } => Span::of_bounds(start, end),
        }
    }

    fn of_bounds(start: &Bound<Vec<u8>>, end: &Bound<Vec<u8>>) -> Span {
        let lo = match start {
            Bound::Unbounded => Vec::new(),
            Bound::Included(k) => k.clone(),
            Bound::Excluded(k) => successor(k),
        };
        let hi = match end {
            Bound::Unbounded => None,
            Bound::Excluded(k) => Some(k.clone()),
            Bound::Included(k) => Some(successor(k)),
        };
        Span { lo, hi }
    }

    fn is_empty(&self) -> bool {
        self.hi.as_ref().is_some_and(|hi| *hi <= self.lo)
    }

    fn below_hi(&self, key: &[u8]) -> bool {
        self.hi.as_ref().is_none_or(|hi| key < hi.as_slice())
    }

    fn overlaps(&self, other: &Span) -> bool {
        !self.is_empty()
            && !other.is_empty()
            && other.below_hi(&self.lo)
            && self.below_hi(&other.lo)
    }

    /// Whether every key of `inner` is in `self`.
    fn contains(&self, inner: &Span) -> bool {
        if inner.is_empty() {
            return true;
        }
        self.lo <= inner.lo
            && match (&self.hi, &inner.hi) {
                (None, _) => true,
                (Some(_), None) => false,
                (Some(outer), Some(inner)) => inner <= outer,
            }
    }

    /// For `BTreeMap::range`, which panics on empty ranges: callers check `is_empty` first.
    fn bounds(&self) -> (Bound<&[u8]>, Bound<&[u8]>) {
        (
            Bound::Included(self.lo.as_slice()),
            self.hi
                .as_ref()
                .map_or(Bound::Unbounded, |hi| Bound::Excluded(hi.as_slice())),
        )
    }
}

/// A request, normalized once per `lock()` call.
#[derive(Debug, Clone)]
struct Request {
    target: LockTarget,
    span: Span,
}

impl Request {
    fn new(target: LockTarget) -> Request {
        let span = Span::of(&target);
        Request { target, span }
    }
}

#[derive(Debug, Clone)]
struct Hold {
    txid: u64,
    policy: DeadlockPolicy,
    mode: LockMode,
    since: Instant,
}

#[derive(Debug)]
struct RangeHold {
    hold: Hold,
    start: Bound<Vec<u8>>,
    end: Bound<Vec<u8>>,
    span: Span,
}

#[derive(Debug, Default)]
struct SpaceLocks {
    /// Holders of each locked key (several when shared).
    keys: BTreeMap<Vec<u8>, Vec<Hold>>,
    /// Range locks by lock id; scanned linearly.
    ranges: BTreeMap<u64, RangeHold>,
}

impl SpaceLocks {
    fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.ranges.is_empty()
    }
}

/// What one transaction holds here, so that `release_all` visits only that.
#[derive(Debug, Default)]
struct TxnLocks {
    keys: Vec<(LockSpace, Vec<u8>)>,
    ranges: Vec<(LockSpace, u64)>,
    aborted_by: Option<u64>,
}

#[derive(Debug)]
struct Waiter {
    owner: LockOwner,
    request: Request,
    mode: LockMode,
    since: Instant,
    /// The oldest conflicting holder at the last evaluation, for the system view and timeouts.
    waiting_for: Option<u64>,
    /// Every conflicting holder at the last evaluation: when one releases, re-evaluate.
    blockers: Vec<u64>,
    /// Victims this wait already wounded, so that re-evaluations do not wound them again.
    wounded: Vec<u64>,
    notify: Arc<Notify>,
    /// Set when the wait was failed from outside (abort, release); the waiting task reports it.
    fate: Option<LockError>,
}

enum Step {
    Granted,
    Failed(LockError),
    Wait {
        id: u64,
        notify: Arc<Notify>,
        victims: Vec<u64>,
    },
}

#[derive(Default)]
struct State {
    spaces: BTreeMap<LockSpace, SpaceLocks>,
    txns: HashMap<u64, TxnLocks>,
    waiters: BTreeMap<u64, Waiter>,
    next_id: u64,
    /// Tests turn on a full pairwise check of the granted locks after every change.
    #[cfg(test)]
    paranoid: bool,
}

pub struct LockManager {
    state: Mutex<State>,
    wounds: Arc<dyn WoundSink>,
}

/// Removes the waiter entry if the `lock()` future is dropped while waiting.
struct WaitGuard<'a> {
    manager: &'a LockManager,
    id: u64,
    armed: bool,
}

impl WaitGuard<'_> {
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for WaitGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            let mut state = self.manager.state.lock();
            if let Some(w) = state.waiters.remove(&self.id) {
                trace!(txid = w.owner.txid, target = %w.request.target, "lock wait cancelled");
            }
        }
    }
}

impl LockManager {
    pub fn new(wounds: Arc<dyn WoundSink>) -> LockManager {
        LockManager {
            state: Mutex::new(State::default()),
            wounds,
        }
    }

    /// Grants or waits (asynchronously: no thread blocks; waiting is awaiting a tokio `Notify`),
    /// applying the deadlock policy against every conflicting *granted* holder. `None` = wait
    /// forever. A lock already covered by one the transaction holds (same target, same or
    /// stronger mode; or a key inside a range it holds) returns at once.
    pub async fn lock(
        &self,
        owner: LockOwner,
        target: LockTarget,
        mode: LockMode,
        timeout: Option<Duration>,
    ) -> Result<(), LockError> {
        let request = Request::new(target);
        let deadline = timeout.and_then(|t| tokio::time::Instant::now().checked_add(t));
        let mut guard: Option<WaitGuard<'_>> = None;
        loop {
            let step = {
                let mut state = self.state.lock();
                let waiter = guard.as_ref().map(|g| g.id);
                state.evaluate(owner, &request, mode, waiter, Instant::now())
            };
            let (id, notify) = match step {
                Step::Granted => {
                    if let Some(g) = guard.take() {
                        g.disarm();
                    }
                    trace!(txid = owner.txid, target = %request.target, %mode, "lock granted");
                    return Ok(());
                }
                Step::Failed(err) => {
                    if let Some(g) = guard.take() {
                        g.disarm();
                    }
                    debug!(txid = owner.txid, target = %request.target, %mode, %err, "lock refused");
                    return Err(err);
                }
                Step::Wait {
                    id,
                    notify,
                    victims,
                } => {
                    if guard.is_none() {
                        trace!(txid = owner.txid, target = %request.target, %mode, "lock wait");
                        guard = Some(WaitGuard {
                            manager: self,
                            id,
                            armed: true,
                        });
                    }
                    for victim in victims {
                        debug!(victim, by = owner.txid, target = %request.target, "wound-wait: wounding younger holder");
                        self.wounds.wound(victim, owner.txid);
                    }
                    (id, notify)
                }
            };
            let woken = match deadline {
                None => {
                    notify.notified().await;
                    true
                }
                Some(deadline) => tokio::time::timeout_at(deadline, notify.notified())
                    .await
                    .is_ok(),
            };
            if !woken {
                let waiter = self.state.lock().waiters.remove(&id);
                if let Some(g) = guard.take() {
                    g.disarm();
                }
                let err = match waiter {
                    Some(Waiter {
                        fate: Some(fate), ..
                    }) => fate,
                    w => LockError::Timeout {
                        txid: owner.txid,
                        holder: w.and_then(|w| w.waiting_for).unwrap_or_default(),
                    },
                };
                debug!(txid = owner.txid, target = %request.target, %mode, %err, "lock wait ended");
                return Err(err);
            }
        }
    }

    /// Releases every lock of `txid` and wakes waiters that may now proceed. Also forgets any
    /// abort mark of `txid`, and fails a wait of `txid` still pending (see the module doc).
    pub fn release_all(&self, txid: u64) {
        self.state.lock().release_all(txid);
    }

    /// Marks `txid` aborted: its pending waits finish with `Err(Wounded { txid, by })` at once,
    /// and later `lock()` calls by it fail the same way until `release_all(txid)`.
    pub fn abort(&self, txid: u64, by: u64) {
        self.state.lock().abort(txid, by);
    }

    /// Every held and awaited lock, for the `sharddb_locks` system view.
    pub fn snapshot(&self) -> Vec<LockInfo> {
        let state = self.state.lock();
        let now = Instant::now();
        let age = |since: Instant| now.saturating_duration_since(since).as_millis() as u64;
        let mut out = Vec::new();
        for (space, locks) in &state.spaces {
            for (key, holds) in &locks.keys {
                let target = LockTarget::Key {
                    space: space.clone(),
                    key: key.clone(),
                }
                .to_string();
                out.extend(holds.iter().map(|h| LockInfo {
                    txid: h.txid,
                    policy: h.policy,
                    target: target.clone(),
                    mode: h.mode,
                    granted: true,
                    age_ms: age(h.since),
                    waiting_for: None,
                }));
            }
            out.extend(locks.ranges.values().map(|r| {
                LockInfo {
                    txid: r.hold.txid,
                    policy: r.hold.policy,
                    target: LockTarget::Range {
                        space: space.clone(),
                        start: r.start.clone(),
                        end: r.end.clone(),
                    }
                    .to_string(),
                    mode: r.hold.mode,
                    granted: true,
                    age_ms: age(r.hold.since),
                    waiting_for: None,
                }
            }));
        }
        out.extend(
            state
                .waiters
                .values()
                .filter(|w| w.fate.is_none())
                .map(|w| LockInfo {
                    txid: w.owner.txid,
                    policy: w.owner.policy,
                    target: w.request.target.to_string(),
                    mode: w.mode,
                    granted: false,
                    age_ms: age(w.since),
                    waiting_for: w.waiting_for,
                }),
        );
        out
    }

    pub fn holds_any(&self, txid: u64) -> bool {
        self.state
            .lock()
            .txns
            .get(&txid)
            .is_some_and(|t| !t.keys.is_empty() || !t.ranges.is_empty())
    }

    #[cfg(test)]
    fn set_paranoid(&self, on: bool) {
        self.state.lock().paranoid = on;
    }

    /// True when nothing at all is recorded: no locks, waiters or abort marks.
    #[cfg(test)]
    fn is_idle(&self) -> bool {
        let state = self.state.lock();
        state.spaces.is_empty() && state.txns.is_empty() && state.waiters.is_empty()
    }
}

impl State {
    fn aborted(&self, txid: u64) -> Option<u64> {
        self.txns.get(&txid).and_then(|t| t.aborted_by)
    }

    /// One decision for one request: grant, fail, or (keep) waiting. `waiter` is the request's
    /// waiter entry once it has waited; it is removed whenever the request ends here.
    fn evaluate(
        &mut self,
        owner: LockOwner,
        request: &Request,
        mode: LockMode,
        waiter: Option<u64>,
        now: Instant,
    ) -> Step {
        let txid = owner.txid;
        if let Some(id) = waiter
            && let Some(fate) = self.waiters.get(&id).and_then(|w| w.fate.clone())
        {
            self.waiters.remove(&id);
            return Step::Failed(fate);
        }
        let end_wait = |state: &mut State| {
            if let Some(id) = waiter {
                state.waiters.remove(&id);
            }
        };
        if let Some(by) = self.aborted(txid) {
            end_wait(self);
            return Step::Failed(LockError::Wounded { txid, by });
        }
        if request.span.is_empty() || self.covered(txid, request, mode) {
            end_wait(self);
            return Step::Granted;
        }
        let conflicts = self.conflicts(txid, request, mode);
        if conflicts.is_empty() {
            end_wait(self);
            self.grant(owner, request, mode, now);
            return Step::Granted;
        }
        // Holders already aborted are leaving without waiting for anything: just wait for them.
        let live: Vec<(u64, DeadlockPolicy)> = conflicts
            .iter()
            .copied()
            .filter(|&(h, _)| self.aborted(h).is_none())
            .collect();
        if let Some(&(holder, _)) = live
            .iter()
            .find(|&&(h, policy)| txid > h && policy == DeadlockPolicy::WaitDie)
        {
            end_wait(self);
            return Step::Failed(LockError::Die { txid, holder });
        }
        let mut victims: Vec<u64> = if owner.policy == DeadlockPolicy::WoundWait {
            live.iter().map(|&(h, _)| h).filter(|&h| txid < h).collect()
        } else {
            Vec::new()
        };
        let blockers: Vec<u64> = conflicts.iter().map(|&(h, _)| h).collect();
        let waiting_for = blockers.first().copied();
        let id = match waiter.filter(|id| self.waiters.contains_key(id)) {
            Some(id) => id,
            None => {
                let id = self.next_id;
                self.next_id += 1;
                self.waiters.insert(
                    id,
                    Waiter {
                        owner,
                        request: request.clone(),
                        mode,
                        since: now,
                        waiting_for: None,
                        blockers: Vec::new(),
                        wounded: Vec::new(),
                        notify: Arc::new(Notify::new()),
                        fate: None,
                    },
                );
                id
            }
        };
        let w = self
            .waiters
            .get_mut(&id)
            .expect("waiter entry just ensured");
        victims.retain(|v| !w.wounded.contains(v));
        w.wounded.extend_from_slice(&victims);
        w.waiting_for = waiting_for;
        w.blockers = blockers;
        Step::Wait {
            id,
            notify: Arc::clone(&w.notify),
            victims,
        }
    }

    /// Whether `txid` already holds something at least as strong that includes the request.
    fn covered(&self, txid: u64, request: &Request, mode: LockMode) -> bool {
        let (Some(locks), Some(txn)) = (
            self.spaces.get(request.target.space()),
            self.txns.get(&txid),
        ) else {
            return false;
        };
        if let LockTarget::Key { key, .. } = &request.target
            && locks
                .keys
                .get(key)
                .is_some_and(|holds| holds.iter().any(|h| h.txid == txid && h.mode.covers(mode)))
        {
            return true;
        }
        txn.ranges
            .iter()
            .filter(|(space, _)| space == request.target.space())
            .filter_map(|(_, id)| locks.ranges.get(id))
            .any(|r| r.hold.mode.covers(mode) && r.span.contains(&request.span))
    }

    /// The other transactions holding a granted lock that conflicts with the request, oldest
    /// first, one entry per transaction.
    fn conflicts(
        &self,
        txid: u64,
        request: &Request,
        mode: LockMode,
    ) -> Vec<(u64, DeadlockPolicy)> {
        let mut out = Vec::new();
        let Some(locks) = self.spaces.get(request.target.space()) else {
            return out;
        };
        if request.span.is_empty() {
            return out;
        }
        let conflicting = |h: &Hold| h.txid != txid && h.mode.conflicts_with(mode);
        for (_, holds) in locks.keys.range::<[u8], _>(request.span.bounds()) {
            out.extend(
                holds
                    .iter()
                    .filter(|h| conflicting(h))
                    .map(|h| (h.txid, h.policy)),
            );
        }
        out.extend(
            locks
                .ranges
                .values()
                .filter(|r| conflicting(&r.hold) && r.span.overlaps(&request.span))
                .map(|r| (r.hold.txid, r.hold.policy)),
        );
        out.sort_unstable_by_key(|&(h, _)| h);
        out.dedup_by_key(|&mut (h, _)| h);
        out
    }

    fn grant(&mut self, owner: LockOwner, request: &Request, mode: LockMode, now: Instant) {
        let txid = owner.txid;
        let space = request.target.space().clone();
        let locks = self.spaces.entry(space.clone()).or_default();
        let txn = self.txns.entry(txid).or_default();
        match &request.target {
            LockTarget::Key { key, .. } => {
                let holds = locks.keys.entry(key.clone()).or_default();
                if let Some(h) = holds.iter_mut().find(|h| h.txid == txid) {
                    h.mode = h.mode.max(mode);
                } else {
                    holds.push(Hold {
                        txid,
                        policy: owner.policy,
                        mode,
                        since: now,
                    });
                    txn.keys.push((space, key.clone()));
                }
            }
            LockTarget::Range { start, end, .. } => {
                let same = txn
                    .ranges
                    .iter()
                    .filter(|(s, _)| *s == space)
                    .find(|(_, id)| locks.ranges.get(id).is_some_and(|r| r.span == request.span));
                if let Some(r) = same.and_then(|(_, id)| locks.ranges.get_mut(id)) {
                    r.hold.mode = r.hold.mode.max(mode);
                } else {
                    let id = self.next_id;
                    self.next_id += 1;
                    locks.ranges.insert(
                        id,
                        RangeHold {
                            hold: Hold {
                                txid,
                                policy: owner.policy,
                                mode,
                                since: now,
                            },
                            start: start.clone(),
                            end: end.clone(),
                            span: request.span.clone(),
                        },
                    );
                    txn.ranges.push((space, id));
                }
            }
        }
        // Someone waiting for a conflicting lock now also waits for us: re-apply the policy.
        for w in self.waiters.values() {
            if w.fate.is_none()
                && w.owner.txid != txid
                && w.mode.conflicts_with(mode)
                && w.request.target.space() == request.target.space()
                && w.request.span.overlaps(&request.span)
            {
                w.notify.notify_one();
            }
        }
        #[cfg(test)]
        self.check_invariants();
    }

    fn release_all(&mut self, txid: u64) {
        if let Some(txn) = self.txns.remove(&txid) {
            for (space, key) in txn.keys {
                let Some(locks) = self.spaces.get_mut(&space) else {
                    continue;
                };
                if let Some(holds) = locks.keys.get_mut(&key) {
                    holds.retain(|h| h.txid != txid);
                    if holds.is_empty() {
                        locks.keys.remove(&key);
                    }
                }
                if locks.is_empty() {
                    self.spaces.remove(&space);
                }
            }
            for (space, id) in txn.ranges {
                if let Some(locks) = self.spaces.get_mut(&space) {
                    locks.ranges.remove(&id);
                    if locks.is_empty() {
                        self.spaces.remove(&space);
                    }
                }
            }
        }
        for w in self.waiters.values_mut() {
            if w.fate.is_some() {
                continue;
            }
            if w.owner.txid == txid {
                w.fate = Some(LockError::Wounded { txid, by: txid });
                w.notify.notify_one();
            } else if w.blockers.contains(&txid) {
                w.notify.notify_one();
            }
        }
        #[cfg(test)]
        self.check_invariants();
    }

    fn abort(&mut self, txid: u64, by: u64) {
        let txn = self.txns.entry(txid).or_default();
        let by = *txn.aborted_by.get_or_insert(by);
        for w in self.waiters.values_mut() {
            if w.owner.txid == txid && w.fate.is_none() {
                w.fate = Some(LockError::Wounded { txid, by });
                w.notify.notify_one();
            }
        }
        #[cfg(test)]
        self.check_invariants();
    }

    /// Checks, independently of the search structures, that no two granted locks of different
    /// transactions conflict and that the per-transaction index matches the locks.
    #[cfg(test)]
    fn check_invariants(&self) {
        if !self.paranoid {
            return;
        }
        let mut all: Vec<(u64, &LockSpace, Span, LockMode)> = Vec::new();
        let mut counted: HashMap<u64, usize> = HashMap::new();
        for (space, locks) in &self.spaces {
            assert!(!locks.is_empty(), "empty lock space {space} kept");
            for (key, holds) in &locks.keys {
                assert!(!holds.is_empty(), "key without holders kept");
                for h in holds {
                    let target = LockTarget::key(space.clone(), key.clone());
                    all.push((h.txid, space, Span::of(&target), h.mode));
                    *counted.entry(h.txid).or_default() += 1;
                }
            }
            for r in locks.ranges.values() {
                all.push((r.hold.txid, space, r.span.clone(), r.hold.mode));
                *counted.entry(r.hold.txid).or_default() += 1;
            }
        }
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert!(
                    a.0 == b.0 || a.1 != b.1 || !a.2.overlaps(&b.2) || !a.3.conflicts_with(b.3),
                    "conflicting locks granted: {a:?} and {b:?}"
                );
            }
        }
        for (txid, txn) in &self.txns {
            assert_eq!(
                counted.get(txid).copied().unwrap_or(0),
                txn.keys.len() + txn.ranges.len(),
                "index of transaction {txid} out of step"
            );
        }
        for txid in counted.keys() {
            assert!(self.txns.contains_key(txid), "locks of {txid} not indexed");
        }
        for w in self.waiters.values() {
            assert!(
                w.fate.is_some() || self.aborted(w.owner.txid).is_none(),
                "aborted transaction {} still waits",
                w.owner.txid
            );
        }
    }
}

#[cfg(test)]
mod tests;
