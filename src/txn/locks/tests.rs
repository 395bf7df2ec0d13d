use super::*;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};

use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

const S: LockMode = LockMode::Shared;
const X: LockMode = LockMode::Exclusive;

#[derive(Default)]
struct RecordingSink {
    calls: Mutex<Vec<(u64, u64)>>,
}

impl WoundSink for RecordingSink {
    fn wound(&self, victim: u64, by: u64) {
        self.calls.lock().push((victim, by));
    }
}

fn manager() -> (Arc<LockManager>, Arc<RecordingSink>) {
    let sink = Arc::new(RecordingSink::default());
    let m = Arc::new(LockManager::new(sink.clone()));
    m.set_paranoid(true);
    (m, sink)
}

fn wd(txid: u64) -> LockOwner {
    LockOwner {
        txid,
        policy: DeadlockPolicy::WaitDie,
    }
}

fn ww(txid: u64) -> LockOwner {
    LockOwner {
        txid,
        policy: DeadlockPolicy::WoundWait,
    }
}

fn key(k: &[u8]) -> LockTarget {
    LockTarget::key(LockSpace::Rows, k)
}

fn bound(b: Bound<&[u8]>) -> Bound<Vec<u8>> {
    b.map(<[u8]>::to_vec)
}

fn range(start: Bound<&[u8]>, end: Bound<&[u8]>) -> LockTarget {
    LockTarget::range(LockSpace::Rows, bound(start), bound(end))
}

use std::ops::Bound::{Excluded as Ex, Included as In, Unbounded as Un};

/// Asks without waiting: a request that would wait reports `Timeout` instead.
async fn try_lock(
    m: &LockManager,
    owner: LockOwner,
    target: LockTarget,
    mode: LockMode,
) -> Result<(), LockError> {
    m.lock(owner, target, mode, Some(Duration::ZERO)).await
}

fn spawn_lock(
    m: &Arc<LockManager>,
    owner: LockOwner,
    target: LockTarget,
    mode: LockMode,
) -> tokio::task::JoinHandle<Result<(), LockError>> {
    let m = Arc::clone(m);
    tokio::spawn(async move { m.lock(owner, target, mode, None).await })
}

async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..2000 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("never happened: {what}");
}

fn waiting(m: &LockManager, txid: u64) -> Option<LockInfo> {
    m.snapshot()
        .into_iter()
        .find(|l| l.txid == txid && !l.granted)
}

fn granted(m: &LockManager) -> Vec<(u64, String, LockMode)> {
    m.snapshot()
        .into_iter()
        .filter(|l| l.granted)
        .map(|l| (l.txid, l.target, l.mode))
        .collect()
}

fn timeout(txid: u64, holder: u64) -> Result<(), LockError> {
    Err(LockError::Timeout { txid, holder })
}

#[test]
fn mode_table() {
    assert!(!S.conflicts_with(S));
    assert!(S.conflicts_with(X));
    assert!(X.conflicts_with(S));
    assert!(X.conflicts_with(X));
    assert!(X.covers(S) && X.covers(X) && S.covers(S) && !S.covers(X));
}

#[tokio::test]
async fn compatibility_matrix() {
    // Wound-wait holders make a younger conflicting requester wait, which try_lock turns into
    // Timeout: so the result tells "conflicts" from "compatible" without anyone dying.
    for (held, asked, compatible) in [(S, S, true), (S, X, false), (X, S, false), (X, X, false)] {
        let (m, sink) = manager();
        try_lock(&m, ww(1), key(b"a"), held).await.unwrap();
        let got = try_lock(&m, ww(2), key(b"a"), asked).await;
        assert_eq!(
            got.is_ok(),
            compatible,
            "{held} held, {asked} asked: {got:?}"
        );
        if !compatible {
            assert_eq!(got, timeout(2, 1));
        }
        // Other keys and other spaces never conflict; a transaction never conflicts with itself.
        try_lock(&m, ww(2), key(b"b"), X).await.unwrap();
        let other_space = LockTarget::key(LockSpace::Index(1), b"a".to_vec());
        try_lock(&m, ww(2), other_space, X).await.unwrap();
        try_lock(&m, ww(1), key(b"a"), S).await.unwrap();
        assert!(sink.calls.lock().is_empty());
        m.release_all(1);
        m.release_all(2);
        assert!(m.is_idle());
    }
}

#[test]
fn overlap_edge_cases() {
    let a: &[u8] = b"a";
    let b: &[u8] = b"b";
    let c: &[u8] = b"c";
    let a0: &[u8] = b"a\0";
    let cases: Vec<(LockTarget, LockTarget, bool)> = vec![
        (key(a), key(a), true),
        (key(a), key(b), false),
        (key(a), LockTarget::key(LockSpace::Index(0), a), false),
        (
            LockTarget::key(LockSpace::Index(1), a),
            LockTarget::key(LockSpace::Index(2), a),
            false,
        ),
        // key vs range, at each kind of bound
        (key(b), range(In(a), Ex(b)), false),
        (key(b), range(In(a), In(b)), true),
        (key(b), range(Ex(b), In(c)), false),
        (key(b), range(In(b), Ex(c)), true),
        (key(b), range(Un, Ex(b)), false),
        (key(b), range(Un, Un), true),
        (key(b"b\0"), range(Ex(b), Un), true),
        (key(b""), range(Un, Ex(a)), true),
        (key(b""), range(Ex(b""), Un), false),
        // (a, a ++ [0]) holds no key at all
        (key(a), range(Ex(a), Ex(a0)), false),
        (key(a0), range(Ex(a), Ex(a0)), false),
        (range(Ex(a), Ex(a0)), range(Un, Un), false),
        (range(Ex(a), In(a0)), range(Un, Un), true),
        // empty and inverted ranges
        (range(In(a), Ex(a)), range(Un, Un), false),
        (range(In(a), In(a)), key(a), true),
        (range(In(b), In(a)), range(Un, Un), false),
        // range vs range at touching ends
        (range(In(a), Ex(b)), range(In(b), Ex(c)), false),
        (range(In(a), In(b)), range(In(b), Ex(c)), true),
        (range(In(a), In(b)), range(Ex(b), Ex(c)), false),
        (range(Un, In(b)), range(In(b), Un), true),
        (range(Un, Ex(b)), range(In(b), Un), false),
        (range(Ex(a), Un), range(Un, In(a)), false),
        (range(Ex(a), Un), range(Un, In(a0)), true),
        (range(In(a), In(c)), range(In(b), In(b)), true),
        (
            range(In(a), In(c)),
            LockTarget::range(LockSpace::Index(3), bound(In(a)), bound(In(c))),
            false,
        ),
    ];
    for (x, y, want) in cases {
        assert_eq!(x.overlaps(&y), want, "{x} vs {y}");
        assert_eq!(y.overlaps(&x), want, "{y} vs {x}");
    }
}

// Brute force over a finite key domain. Endpoints have at most 2 bytes from {0, 1, 2}; every
// non-empty intersection of such intervals then contains a string of at most 3 bytes from
// {0, 1, 2} (an included endpoint, an excluded one followed by 0, or the empty string), so the
// domain below decides overlap, emptiness and containment exactly.
fn domain() -> Vec<Vec<u8>> {
    let mut all = vec![Vec::new()];
    let mut last = vec![Vec::new()];
    for _ in 0..3 {
        last = last
            .iter()
            .flat_map(|k: &Vec<u8>| {
                (0..3u8).map(move |b| {
                    let mut k = k.clone();
                    k.push(b);
                    k
                })
            })
            .collect();
        all.extend(last.iter().cloned());
    }
    all
}

fn brute_holds(t: &LockTarget, k: &[u8]) -> bool {
    use std::ops::RangeBounds;
    match t {
        LockTarget::Key { key, .. } => key == k,
        LockTarget::Range { start, end, .. } => (start.clone(), end.clone()).contains(&k.to_vec()),
    }
}

fn small_key() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(0u8..3, 0..=2)
}

fn small_bound() -> impl Strategy<Value = Bound<Vec<u8>>> {
    prop_oneof![
        1 => Just(Bound::Unbounded),
        3 => small_key().prop_map(Bound::Included),
        3 => small_key().prop_map(Bound::Excluded),
    ]
}

fn small_target() -> impl Strategy<Value = LockTarget> {
    let space = prop_oneof![4 => Just(LockSpace::Rows), 1 => Just(LockSpace::Index(1))];
    prop_oneof![
        (space.clone(), small_key()).prop_map(|(space, key)| LockTarget::Key { space, key }),
        (space, small_bound(), small_bound()).prop_map(|(space, start, end)| LockTarget::Range {
            space,
            start,
            end
        }),
    ]
}

fn small_mode() -> impl Strategy<Value = LockMode> {
    prop_oneof![Just(S), Just(X)]
}

fn brute_overlaps(a: &LockTarget, b: &LockTarget) -> bool {
    a.space() == b.space()
        && domain()
            .iter()
            .any(|k| brute_holds(a, k) && brute_holds(b, k))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn overlap_matches_brute_force(a in small_target(), b in small_target()) {
        prop_assert_eq!(a.overlaps(&b), brute_overlaps(&a, &b), "{} vs {}", a, b);
    }

    #[test]
    fn span_matches_brute_force(a in small_target(), b in small_target()) {
        let keys = domain();
        let (sa, sb) = (Span::of(&a), Span::of(&b));
        prop_assert_eq!(sa.is_empty(), !keys.iter().any(|k| brute_holds(&a, k)), "{}", a);
        for k in &keys {
            let key = Span::of(&LockTarget::key(LockSpace::Rows, k.clone()));
            prop_assert_eq!(sa.overlaps(&key), brute_holds(&a, k), "{} holds {:?}", a, k);
            prop_assert_eq!(sa.contains(&key), brute_holds(&a, k), "{} contains {:?}", a, k);
        }
        let contains = keys.iter().all(|k| !brute_holds(&b, k) || brute_holds(&a, k));
        prop_assert_eq!(sa.contains(&sb), contains, "{} contains {}", a, b);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// The manager's search structures (key map range queries, range scan, coverage) against
    /// the brute-force model: holders 1..=n (wound-wait, so a younger conflicting requester
    /// waits and try_lock reports Timeout naming the oldest conflicting holder).
    #[test]
    fn grants_match_brute_force(
        requests in prop::collection::vec((1u64..6, small_target(), small_mode()), 1..12),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        rt.block_on(async {
            let (m, _) = manager();
            let mut held: Vec<(u64, LockTarget, LockMode)> = Vec::new();
            for (txid, target, mode) in requests {
                let requester = 10 - txid;
                let blockers: Vec<u64> = held
                    .iter()
                    .filter(|(h, t, hm)| {
                        *h != requester && hm.conflicts_with(mode) && brute_overlaps(t, &target)
                    })
                    .map(|(h, ..)| *h)
                    .collect();
                let got = try_lock(&m, ww(requester), target.clone(), mode).await;
                // Younger requesters wait for wound-wait holders; older ones wound and wait.
                match blockers.iter().min() {
                    None => {
                        prop_assert_eq!(got, Ok(()), "{} {}", target, mode);
                        held.push((requester, target, mode));
                    }
                    Some(&oldest) => {
                        prop_assert_eq!(got, timeout(requester, oldest), "{} {}", target, mode)
                    }
                }
                prop_assert!(m.snapshot().iter().all(|l| l.granted));
            }
            for txid in 1..10 {
                m.release_all(txid);
            }
            prop_assert!(m.is_idle());
            Ok(())
        })?;
    }
}

#[tokio::test]
async fn rerequest_and_upgrade() {
    let (m, _) = manager();
    try_lock(&m, ww(1), key(b"a"), S).await.unwrap();
    try_lock(&m, ww(1), key(b"a"), S).await.unwrap();
    assert_eq!(granted(&m), vec![(1, "rows key 61".to_string(), S)]);
    // Alone on the key: the upgrade is immediate and replaces the shared lock.
    try_lock(&m, ww(1), key(b"a"), X).await.unwrap();
    try_lock(&m, ww(1), key(b"a"), S).await.unwrap();
    assert_eq!(granted(&m), vec![(1, "rows key 61".to_string(), X)]);

    // A key inside a range already held, at most as strong, is covered: nothing new recorded.
    try_lock(&m, ww(1), range(In(b"b"), In(b"d")), S)
        .await
        .unwrap();
    try_lock(&m, ww(1), key(b"c"), S).await.unwrap();
    try_lock(&m, ww(1), range(Ex(b"b"), Ex(b"d")), S)
        .await
        .unwrap();
    assert_eq!(granted(&m).len(), 2);
    // Same range again, stronger: upgraded in place.
    try_lock(&m, ww(1), range(In(b"b"), In(b"d")), X)
        .await
        .unwrap();
    assert_eq!(
        granted(&m),
        vec![
            (1, "rows key 61".to_string(), X),
            (1, "rows range [62, 64]".to_string(), X)
        ]
    );
    m.release_all(1);

    // An upgrade conflicts with the other holders only.
    try_lock(&m, ww(1), key(b"k"), S).await.unwrap();
    try_lock(&m, ww(2), key(b"k"), S).await.unwrap();
    assert_eq!(try_lock(&m, ww(2), key(b"k"), X).await, timeout(2, 1));
    m.release_all(1);
    try_lock(&m, ww(2), key(b"k"), X).await.unwrap();
    assert_eq!(granted(&m), vec![(2, "rows key 6b".to_string(), X)]);
    m.release_all(2);
    assert!(m.is_idle());
}

#[tokio::test]
async fn wait_die_younger_requester_dies() {
    let (m, sink) = manager();
    try_lock(&m, wd(1), key(b"a"), X).await.unwrap();
    let err = m.lock(wd(2), key(b"a"), S, None).await.unwrap_err();
    assert_eq!(err, LockError::Die { txid: 2, holder: 1 });
    assert_eq!(
        err.to_string(),
        "deadlock prevented by wait-die: transaction 2 is younger than transaction 1, which holds a conflicting lock"
    );
    assert_eq!(err.sqlstate(), "40P01");
    assert_eq!(
        m.snapshot().len(),
        1,
        "the dead request left nothing behind"
    );
    assert!(sink.calls.lock().is_empty());
}

#[tokio::test]
async fn wait_die_older_requester_waits_then_gets_lock() {
    let (m, sink) = manager();
    try_lock(&m, wd(2), key(b"a"), X).await.unwrap();
    let older = spawn_lock(&m, wd(1), key(b"a"), X);
    eventually("1 waits", || waiting(&m, 1).is_some()).await;
    let w = waiting(&m, 1).unwrap();
    assert_eq!(w.waiting_for, Some(2));
    assert_eq!((w.mode, w.policy), (X, DeadlockPolicy::WaitDie));
    assert!(!older.is_finished());
    m.release_all(2);
    older.await.unwrap().unwrap();
    assert_eq!(granted(&m), vec![(1, "rows key 61".to_string(), X)]);
    assert!(sink.calls.lock().is_empty());
}

#[tokio::test]
async fn wound_wait_older_requester_wounds_younger() {
    let (m, sink) = manager();
    try_lock(&m, ww(2), key(b"a"), X).await.unwrap();
    let older = spawn_lock(&m, ww(1), key(b"a"), X);
    eventually("2 wounded", || !sink.calls.lock().is_empty()).await;
    assert_eq!(*sink.calls.lock(), vec![(2, 1)]);
    assert_eq!(waiting(&m, 1).unwrap().waiting_for, Some(2));
    assert!(!older.is_finished());

    // The victim's owner aborts it: from then on it cannot lock anything here.
    m.abort(2, 1);
    let err = try_lock(&m, ww(2), key(b"z"), S).await.unwrap_err();
    assert_eq!(err, LockError::Wounded { txid: 2, by: 1 });
    assert_eq!(
        err.to_string(),
        "deadlock prevented by wound-wait: transaction 2 was wounded by older transaction 1"
    );
    assert_eq!(err.sqlstate(), "40P01");
    assert!(!older.is_finished());
    m.release_all(2);
    older.await.unwrap().unwrap();
    assert_eq!(granted(&m), vec![(1, "rows key 61".to_string(), X)]);
    assert_eq!(sink.calls.lock().len(), 1, "wounded once");
    // release_all forgot the abort mark.
    try_lock(&m, ww(2), key(b"z"), S).await.unwrap();
}

#[tokio::test]
async fn wound_wait_younger_requester_waits() {
    let (m, sink) = manager();
    try_lock(&m, ww(1), key(b"a"), X).await.unwrap();
    let younger = spawn_lock(&m, ww(2), key(b"a"), S);
    eventually("2 waits", || waiting(&m, 2).is_some()).await;
    assert_eq!(waiting(&m, 2).unwrap().waiting_for, Some(1));
    m.release_all(1);
    younger.await.unwrap().unwrap();
    assert_eq!(granted(&m), vec![(2, "rows key 61".to_string(), S)]);
    assert!(sink.calls.lock().is_empty());
}

#[tokio::test]
async fn mixed_policies_follow_the_table() {
    // Younger requester: the holder's policy decides.
    let (m, sink) = manager();
    try_lock(&m, ww(1), key(b"a"), X).await.unwrap();
    assert_eq!(try_lock(&m, wd(2), key(b"a"), X).await, timeout(2, 1));
    try_lock(&m, wd(3), key(b"b"), X).await.unwrap();
    assert_eq!(
        try_lock(&m, ww(4), key(b"b"), X).await,
        Err(LockError::Die { txid: 4, holder: 3 })
    );
    // Older requester: its own policy decides.
    try_lock(&m, ww(10), key(b"c"), X).await.unwrap();
    assert_eq!(try_lock(&m, wd(5), key(b"c"), X).await, timeout(5, 10));
    try_lock(&m, wd(11), key(b"d"), X).await.unwrap();
    assert!(sink.calls.lock().is_empty());
    assert_eq!(try_lock(&m, ww(6), key(b"d"), X).await, timeout(6, 11));
    assert_eq!(*sink.calls.lock(), vec![(11, 6)]);
    assert!(m.snapshot().iter().all(|l| l.granted));
}

#[tokio::test]
async fn older_requester_wounds_every_younger_holder_once() {
    let (m, sink) = manager();
    try_lock(&m, ww(2), key(b"a"), S).await.unwrap();
    try_lock(&m, ww(3), range(In(b"a"), Un), S).await.unwrap();
    try_lock(&m, ww(4), key(b"b"), S).await.unwrap();
    let older = spawn_lock(&m, ww(1), key(b"a"), X);
    eventually("wounds", || sink.calls.lock().len() == 2).await;
    assert_eq!(*sink.calls.lock(), vec![(2, 1), (3, 1)]);
    // Releasing one victim re-evaluates the waiter, which must not wound the other again.
    m.abort(2, 1);
    m.release_all(2);
    eventually("re-evaluated", || {
        waiting(&m, 1).unwrap().waiting_for == Some(3)
    })
    .await;
    assert_eq!(sink.calls.lock().len(), 2);
    m.abort(3, 1);
    m.release_all(3);
    older.await.unwrap().unwrap();
    assert_eq!(sink.calls.lock().len(), 2);
}

#[tokio::test]
async fn aborted_holder_is_waited_for_not_died_for() {
    let (m, sink) = manager();
    try_lock(&m, wd(1), key(b"a"), X).await.unwrap();
    m.abort(1, 0);
    // Wait-die would kill the younger requester, but the holder is leaving anyway.
    let younger = spawn_lock(&m, wd(2), key(b"a"), X);
    eventually("2 waits", || waiting(&m, 2).is_some()).await;
    m.release_all(1);
    younger.await.unwrap().unwrap();
    assert!(sink.calls.lock().is_empty());
}

#[tokio::test]
async fn waiter_reevaluated_when_an_older_holder_appears() {
    let (m, _) = manager();
    try_lock(&m, wd(10), key(b"a"), S).await.unwrap();
    let writer = spawn_lock(&m, wd(5), key(b"a"), X);
    eventually("5 waits", || waiting(&m, 5).is_some()).await;
    // A compatible reader passes the waiting writer; it is older than the writer, so under
    // wait-die the writer may no longer wait and dies.
    try_lock(&m, wd(3), key(b"a"), S).await.unwrap();
    assert_eq!(
        writer.await.unwrap(),
        Err(LockError::Die { txid: 5, holder: 3 })
    );
    assert!(waiting(&m, 5).is_none());
    assert_eq!(granted(&m).len(), 2);
}

#[tokio::test]
async fn timeout_removes_the_request() {
    let (m, _) = manager();
    try_lock(&m, wd(2), key(b"a"), X).await.unwrap();
    let started = std::time::Instant::now();
    let err = m
        .lock(wd(1), key(b"a"), S, Some(Duration::from_millis(30)))
        .await
        .unwrap_err();
    assert!(started.elapsed() >= Duration::from_millis(30));
    assert_eq!(err, LockError::Timeout { txid: 1, holder: 2 });
    assert_eq!(err.to_string(), "canceling statement due to lock timeout");
    assert_eq!(
        err.detail().unwrap(),
        "Transaction 1 was waiting for a lock held by transaction 2."
    );
    assert_eq!(err.sqlstate(), "55P03");
    assert_eq!(m.snapshot().len(), 1);
    m.release_all(2);
    assert!(m.is_idle());
}

#[tokio::test]
async fn timeout_spans_the_whole_wait() {
    // Re-evaluations (holders coming and going) do not restart the clock.
    let (m, _) = manager();
    try_lock(&m, wd(5), key(b"a"), S).await.unwrap();
    let m2 = Arc::clone(&m);
    let waiter = tokio::spawn(async move {
        let started = std::time::Instant::now();
        let got = m2
            .lock(wd(1), key(b"a"), X, Some(Duration::from_millis(60)))
            .await;
        (got, started.elapsed())
    });
    for txid in 6..46 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        try_lock(&m, wd(txid), key(b"a"), S).await.unwrap();
        m.release_all(txid - 1);
    }
    let (got, elapsed) = waiter.await.unwrap();
    assert!(
        matches!(got, Err(LockError::Timeout { txid: 1, holder }) if holder > 5),
        "{got:?}"
    );
    assert!(
        elapsed >= Duration::from_millis(60) && elapsed < Duration::from_millis(300),
        "{elapsed:?}"
    );
}

#[tokio::test]
async fn abort_fails_a_waiter_and_later_requests() {
    let (m, _) = manager();
    try_lock(&m, wd(2), key(b"a"), X).await.unwrap();
    let waiter = spawn_lock(&m, wd(1), key(b"a"), X);
    eventually("1 waits", || waiting(&m, 1).is_some()).await;
    m.abort(1, 99);
    assert_eq!(
        waiter.await.unwrap(),
        Err(LockError::Wounded { txid: 1, by: 99 })
    );
    assert!(waiting(&m, 1).is_none());
    assert_eq!(
        try_lock(&m, wd(1), key(b"b"), S).await,
        Err(LockError::Wounded { txid: 1, by: 99 })
    );
    m.release_all(1);
    try_lock(&m, wd(1), key(b"b"), S).await.unwrap();
}

#[tokio::test]
async fn release_all_fails_the_transactions_own_pending_wait() {
    let (m, _) = manager();
    try_lock(&m, wd(2), key(b"a"), X).await.unwrap();
    try_lock(&m, wd(1), key(b"b"), X).await.unwrap();
    let waiter = spawn_lock(&m, wd(1), key(b"a"), X);
    eventually("1 waits", || waiting(&m, 1).is_some()).await;
    m.release_all(1);
    // Even once the holder goes, the released transaction must not end up holding "a".
    m.release_all(2);
    let err = waiter.await.unwrap().unwrap_err();
    assert_eq!(err, LockError::Wounded { txid: 1, by: 1 });
    assert_eq!(
        err.to_string(),
        "transaction 1 was aborted while it waited for a lock"
    );
    assert!(m.is_idle());
}

#[tokio::test]
async fn cancelled_wait_leaves_no_trace() {
    let (m, _) = manager();
    try_lock(&m, wd(2), key(b"a"), X).await.unwrap();

    // Cancelled by aborting the task...
    let waiter = spawn_lock(&m, wd(1), key(b"a"), X);
    eventually("1 waits", || waiting(&m, 1).is_some()).await;
    waiter.abort();
    assert!(waiter.await.unwrap_err().is_cancelled());
    assert!(waiting(&m, 1).is_none());

    // ...and by dropping the future (an outer timeout), including after the holder released
    // but before the waiter ran again: the lock was never granted behind its back.
    let fut = m.lock(wd(1), key(b"a"), X, None);
    assert!(
        tokio::time::timeout(Duration::from_millis(10), fut)
            .await
            .is_err()
    );
    assert!(waiting(&m, 1).is_none());
    {
        let mut fut = std::pin::pin!(m.lock(wd(1), key(b"a"), X, None));
        assert!(futures::poll!(fut.as_mut()).is_pending());
        assert!(waiting(&m, 1).is_some());
        m.release_all(2);
    }
    assert!(m.snapshot().is_empty(), "{:?}", m.snapshot());
    assert!(!m.holds_any(1));
    assert!(m.is_idle());
}

#[tokio::test]
async fn range_lock_blocks_phantoms_inside_only() {
    let (m, _) = manager();
    try_lock(&m, ww(1), range(In(b"b"), Ex(b"d")), S)
        .await
        .unwrap();
    assert_eq!(try_lock(&m, ww(2), key(b"c"), X).await, timeout(2, 1));
    assert_eq!(try_lock(&m, ww(2), key(b"b"), X).await, timeout(2, 1));
    assert_eq!(try_lock(&m, ww(2), key(b"c\xff"), X).await, timeout(2, 1));
    try_lock(&m, ww(2), key(b"d"), X).await.unwrap();
    try_lock(&m, ww(2), key(b"a"), X).await.unwrap();
    try_lock(&m, ww(2), key(b"c"), S).await.unwrap();
    let index = LockTarget::key(LockSpace::Index(1), b"c".to_vec());
    try_lock(&m, ww(2), index, X).await.unwrap();
    assert_eq!(
        try_lock(&m, ww(3), range(In(b"c"), Un), X).await,
        timeout(3, 1)
    );

    // And the other way round: a range request finds conflicting keys with a range query.
    let (m, _) = manager();
    try_lock(&m, ww(1), key(b"m"), X).await.unwrap();
    assert_eq!(
        try_lock(&m, ww(2), range(Ex(b"a"), In(b"m")), S).await,
        timeout(2, 1)
    );
    try_lock(&m, ww(2), range(Ex(b"a"), Ex(b"m")), S)
        .await
        .unwrap();
    try_lock(&m, ww(2), range(Ex(b"m"), Un), X).await.unwrap();
}

#[tokio::test]
async fn many_keys() {
    let (m, _) = manager();
    m.set_paranoid(false);
    let k = |i: u32| i.to_be_bytes().to_vec();
    for i in 0..5000 {
        try_lock(&m, ww(1), key(&k(i * 2)), X).await.unwrap();
    }
    assert!(m.holds_any(1));
    assert_eq!(
        try_lock(&m, ww(2), range(Ex(&k(4000)[..]), Ex(&k(4002)[..])), S).await,
        Ok(()),
        "only the odd key 4001 is inside"
    );
    assert_eq!(
        try_lock(&m, ww(2), range(Ex(&k(4000)[..]), In(&k(4002)[..])), S).await,
        timeout(2, 1)
    );
    try_lock(&m, ww(2), range(In(&k(10_000)[..]), Un), X)
        .await
        .unwrap();
    m.release_all(1);
    assert!(!m.holds_any(1));
    assert_eq!(m.snapshot().len(), 2);
    m.release_all(2);
    assert!(m.is_idle());
}

#[tokio::test]
async fn snapshot_describes_locks() {
    let (m, _) = manager();
    try_lock(&m, ww(7), key(&[0x0a, 0x1b]), X).await.unwrap();
    let index = LockTarget::range(
        LockSpace::Index(7),
        Bound::Included(vec![0x0a]),
        Bound::Unbounded,
    );
    try_lock(&m, ww(7), index, S).await.unwrap();
    let long = LockTarget::range(
        LockSpace::Rows,
        Bound::Unbounded,
        Bound::Excluded(vec![1; 40]),
    );
    try_lock(&m, ww(8), long, S).await.unwrap();
    let waiter = spawn_lock(&m, ww(9), key(&[0x0a, 0x1b]), S);
    eventually("9 waits", || waiting(&m, 9).is_some()).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    let snap = m.snapshot();
    let rows: Vec<_> = snap
        .iter()
        .map(|l| (l.txid, l.target.as_str(), l.mode, l.granted, l.waiting_for))
        .collect();
    let long = format!("rows range (-inf, {}..)", "01".repeat(32));
    assert_eq!(
        rows,
        vec![
            (7, "rows key 0a1b", X, true, None),
            (8, long.as_str(), S, true, None),
            (7, "index 7 range [0a, +inf)", S, true, None),
            (9, "rows key 0a1b", S, false, Some(7)),
        ]
    );
    assert!(snap.iter().all(|l| l.policy == DeadlockPolicy::WoundWait));
    assert!(snap.iter().all(|l| l.age_ms >= 5), "{snap:?}");
    m.release_all(7);
    waiter.await.unwrap().unwrap();
}

#[test]
fn policy_parse_and_display() {
    for (s, p) in [
        ("wait_die", DeadlockPolicy::WaitDie),
        ("WAIT-DIE", DeadlockPolicy::WaitDie),
        ("Wound_Wait", DeadlockPolicy::WoundWait),
        ("wound-wait", DeadlockPolicy::WoundWait),
    ] {
        assert_eq!(s.parse::<DeadlockPolicy>(), Ok(p));
    }
    assert_eq!(DeadlockPolicy::WaitDie.to_string(), "wait_die");
    assert_eq!(DeadlockPolicy::WoundWait.to_string(), "wound_wait");
    assert_eq!(DeadlockPolicy::default(), DeadlockPolicy::WaitDie);
    let err = "detect".parse::<DeadlockPolicy>().unwrap_err();
    assert!(err.contains("detect") && err.contains("wait_die"), "{err}");
}

/// The owner side of wounds in the stress test: marks the victim (which its task checks), then
/// aborts and releases it from another task, as a session would.
struct Owners {
    wounded: Mutex<HashSet<u64>>,
    tx: tokio::sync::mpsc::UnboundedSender<(u64, u64)>,
    sent: AtomicUsize,
}

impl WoundSink for Owners {
    fn wound(&self, victim: u64, by: u64) {
        assert!(by < victim, "{by} wounded older {victim}");
        self.wounded.lock().insert(victim);
        self.sent.fetch_add(1, Ordering::SeqCst);
        self.tx.send((victim, by)).unwrap();
    }
}

#[derive(Debug, Default)]
struct Tally {
    granted: usize,
    died: usize,
    wounded: usize,
    finished: usize,
}

fn random_target(rng: &mut StdRng) -> LockTarget {
    let space = if rng.random_bool(0.8) {
        LockSpace::Rows
    } else {
        LockSpace::Index(1)
    };
    let bound = |rng: &mut StdRng| match rng.random_range(0..10) {
        0 => Bound::Unbounded,
        1..=5 => Bound::Included(vec![rng.random_range(0..12u8)]),
        _ => Bound::Excluded(vec![rng.random_range(0..12u8)]),
    };
    if rng.random_bool(0.7) {
        LockTarget::Key {
            space,
            key: vec![rng.random_range(0..12u8)],
        }
    } else {
        let (start, end) = (bound(rng), bound(rng));
        LockTarget::Range { space, start, end }
    }
}

async fn stress_round(seed: u64, tally: &Mutex<Tally>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let owners = Arc::new(Owners {
        wounded: Mutex::new(HashSet::new()),
        tx,
        sent: AtomicUsize::new(0),
    });
    let m = Arc::new(LockManager::new(owners.clone()));
    m.set_paranoid(true);
    let handled = Arc::new(AtomicUsize::new(0));
    let owner_task = {
        let (m, handled) = (Arc::clone(&m), Arc::clone(&handled));
        tokio::spawn(async move {
            while let Some((victim, by)) = rx.recv().await {
                m.abort(victim, by);
                tokio::task::yield_now().await;
                m.release_all(victim);
                handled.fetch_add(1, Ordering::SeqCst);
            }
        })
    };

    let n = 16;
    let mut txids: Vec<u64> = (1..=n).map(|i| 1000 + i * 3).collect();
    txids.shuffle(&mut rng);
    let mix = seed % 3;
    let mut tasks = Vec::new();
    for txid in txids {
        let policy = match mix {
            0 => DeadlockPolicy::WaitDie,
            1 => DeadlockPolicy::WoundWait,
            _ if rng.random_bool(0.5) => DeadlockPolicy::WaitDie,
            _ => DeadlockPolicy::WoundWait,
        };
        let owner = LockOwner { txid, policy };
        let plan: Vec<(LockTarget, LockMode)> = (0..rng.random_range(1..=8))
            .map(|_| {
                let mode = if rng.random_bool(0.6) { S } else { X };
                (random_target(&mut rng), mode)
            })
            .collect();
        let pause: Vec<u64> = plan.iter().map(|_| rng.random_range(0..3)).collect();
        let (m, owners) = (Arc::clone(&m), Arc::clone(&owners));
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            for ((target, mode), pause) in plan.into_iter().zip(pause) {
                if owners.wounded.lock().contains(&txid) {
                    break;
                }
                match m.lock(owner, target, mode, None).await {
                    Ok(()) => tally.granted += 1,
                    Err(LockError::Die { txid: t, holder }) => {
                        assert!(t == txid && holder < txid, "died for younger {holder}");
                        tally.died += 1;
                        break;
                    }
                    Err(LockError::Wounded { txid: t, by }) => {
                        assert_eq!(t, txid);
                        assert!(owners.wounded.lock().contains(&txid), "aborted by {by}");
                        tally.wounded += 1;
                        break;
                    }
                    Err(e @ LockError::Timeout { .. }) => panic!("no timeout was asked: {e}"),
                }
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
            m.release_all(txid);
            tally.finished += 1;
            tally
        }));
    }
    for task in tasks {
        let t = task.await.expect("transaction task panicked");
        let mut total = tally.lock();
        total.granted += t.granted;
        total.died += t.died;
        total.wounded += t.wounded;
        total.finished += t.finished;
    }
    // Wounds still in flight settle; then nothing at all may be left.
    eventually("wounds handled", || {
        handled.load(Ordering::SeqCst) == owners.sent.load(Ordering::SeqCst)
    })
    .await;
    assert!(m.is_idle(), "seed {seed}: left behind {:?}", m.snapshot());
    owner_task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stress_random_transactions_never_deadlock() {
    let tally = Mutex::new(Tally::default());
    let rounds = 60;
    let all = async {
        for seed in 0..rounds {
            stress_round(seed, &tally).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), all)
        .await
        .expect("deadlock: the stress test did not finish in 30 s");
    let tally = tally.into_inner();
    eprintln!("{tally:?}");
    assert_eq!(tally.finished, 16 * rounds as usize);
    assert!(
        tally.granted > 0 && tally.died > 0 && tally.wounded > 0,
        "{tally:?}"
    );
}
