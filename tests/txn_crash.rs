//! Two-phase commit survives crashes: a cross-shard transaction is all there or not there at
//! all after a restart, and which of the two follows from how far the protocol got.
//!
//! **Crash points.** For each of the coordinator's crash points (`src/txn/faults.rs`) a real
//! `sharddb` process is started with `SHARDDB_TEST_CRASH_AT=<point>` and runs one transaction
//! that updates every row of a table spread over all 4 shards, inserts rows and deletes one —
//! several shards written, so COMMIT runs two-phase commit and the process aborts at the point
//! (as `kill -9` would stop it). The client must not get an acknowledgement. After a restart
//! without the setting the table must equal exactly the state before the transaction or
//! exactly the state after it:
//!
//! - `before-prepare`, `between-prepares`, `after-prepares`: before (presumed abort — a
//!   prepared participant with no durable decision is rolled back at recovery);
//! - `after-decision`, `between-commits`, `after-commits`: after (the decision is durable, so
//!   recovery finishes the commit on the participants that missed it).
//!
//! The state before includes commits acknowledged earlier — two-phase ones made by a server
//! that was itself killed, one-phase ones made by the crashing process — so none may be lost.
//! Then the table must be fully usable (a new multi-shard transaction over the same rows
//! commits at once, re-inserting an aborted transaction's keys: recovery left no lock, intent
//! or stray version behind), and a second `kill -9` and restart must show the same state
//! (recovery's outcome is durable, not redone differently).
//!
//! **Real kill -9.** Writers run transfers between accounts spread over the shards, each also
//! inserting a row into `log` in the same transaction; the test kills the server with SIGKILL
//! at a random moment. After the restart the total is the initial total, every acknowledged
//! transfer is in the log, the log holds only transfers that were attempted (with their
//! amounts), and every balance equals its initial balance plus the effect of exactly the
//! logged transfers: the log and the balances were committed atomically.
//!
//! `SHARDDB_TXN_CRASH_ITERATIONS` (default 3) sets how many crashes each test runs (the
//! crashing transaction's isolation level cycles through READ COMMITTED, REPEATABLE READ and
//! SERIALIZABLE).

mod common;

use common::{ServerProcess, spawn_server, spawn_server_with_env};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_postgres::Client;

const ROWS: i32 = 40;
const LEVELS: &[&str] = &["READ COMMITTED", "REPEATABLE READ", "SERIALIZABLE"];

fn iterations() -> usize {
    std::env::var("SHARDDB_TXN_CRASH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
}

async fn connect(proc: &ServerProcess) -> Client {
    common::connect(&format!("host=127.0.0.1 port={} user=t", proc.port)).await
}

/// Kills the server with SIGKILL and reaps it.
fn kill_9(proc: &mut ServerProcess) {
    proc.child.kill().expect("kill -9");
    proc.child.wait().expect("reap the server");
}

/// Waits for a server that should be dying on its own (a crash point) to exit.
async fn wait_for_exit(proc: &mut ServerProcess, point: &str) -> std::process::ExitStatus {
    for _ in 0..200 {
        if let Some(status) = proc.child.try_wait().expect("try_wait") {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the server did not die at crash point {point}");
}

/// The whole table, id → v.
async fn table(c: &Client) -> BTreeMap<i32, i64> {
    let rows = c.query("SELECT id, v FROM t", &[]).await.unwrap();
    let mut out = BTreeMap::new();
    for r in rows {
        assert!(
            out.insert(r.get(0), r.get(1)).is_none(),
            "a row returned twice"
        );
    }
    out
}

/// The crashing transaction of iteration `k`: on `before`, what it would leave behind, its
/// SQL, and the ids it inserts.
fn crash_txn(k: usize, before: &BTreeMap<i32, i64>) -> (BTreeMap<i32, i64>, Vec<String>, Vec<i32>) {
    let mut after: BTreeMap<i32, i64> = before.iter().map(|(&id, &v)| (id, v + 1000)).collect();
    let mut sql = vec![
        format!("BEGIN ISOLATION LEVEL {}", LEVELS[k % LEVELS.len()]),
        "UPDATE t SET v = v + 1000".to_owned(),
    ];
    // New rows hash to several shards, too.
    let inserted: Vec<i32> = (0..4).map(|j| 10_000 + (k as i32) * 10 + j).collect();
    for &id in &inserted {
        after.insert(id, k as i64);
    }
    let values: Vec<String> = inserted.iter().map(|id| format!("({id}, {k})")).collect();
    sql.push(format!("INSERT INTO t VALUES {}", values.join(", ")));
    let victim = *before.keys().next().expect("rows left to delete");
    after.remove(&victim);
    sql.push(format!("DELETE FROM t WHERE id = {victim}"));
    (after, sql, inserted)
}

/// Runs a crash at `point` [`iterations`] times on one data directory.
async fn crash_at(point: &'static str, survives: bool) {
    let dir = tempfile::tempdir().unwrap();
    // Setup without the crash point: the multi-row INSERT and the UPDATE below are
    // two-phase commits themselves.
    let mut proc = spawn_server(dir.path(), &[]);
    {
        let c = connect(&proc).await;
        c.batch_execute("CREATE TABLE t (id int PRIMARY KEY, v bigint NOT NULL)")
            .await
            .unwrap();
        let values: Vec<String> = (0..ROWS).map(|i| format!("({i}, {i})")).collect();
        c.batch_execute(&format!("INSERT INTO t VALUES {}", values.join(", ")))
            .await
            .unwrap();
        // An acknowledged multi-shard transaction, which the kill below must not undo.
        c.batch_execute("BEGIN; UPDATE t SET v = v * 2; COMMIT")
            .await
            .unwrap();
    }
    kill_9(&mut proc);

    for k in 0..iterations() {
        let mut crashing =
            spawn_server_with_env(dir.path(), &[], &[("SHARDDB_TEST_CRASH_AT", point)]);
        let c = connect(&crashing).await;
        // One-phase commits (one shard written) and a multi-shard read-only transaction do
        // not reach the crash point; the first ones are acknowledged and must survive.
        let first = *table(&c).await.keys().next().unwrap();
        c.batch_execute(&format!("UPDATE t SET v = v + 7 WHERE id = {first}"))
            .await
            .unwrap();
        c.batch_execute(&format!(
            "BEGIN; UPDATE t SET v = v + 1 WHERE id = {first}; \
             UPDATE t SET v = v + 1 WHERE id = {first}; COMMIT"
        ))
        .await
        .unwrap();
        c.batch_execute("BEGIN ISOLATION LEVEL SERIALIZABLE; SELECT count(*) FROM t; COMMIT")
            .await
            .unwrap();
        let before = table(&c).await;
        let (after, sql, inserted) = crash_txn(k, &before);
        for s in &sql {
            c.batch_execute(s)
                .await
                .unwrap_or_else(|e| panic!("{point}: {s}: {}", common::db_error(&e)));
        }
        match c.batch_execute("COMMIT").await {
            Ok(()) => panic!("{point}: COMMIT was acknowledged; the crash point did not fire"),
            // The connection died with the server: no SQLSTATE, no acknowledgement.
            Err(e) => assert!(
                e.as_db_error().is_none(),
                "{point}: COMMIT failed with a database error instead of a crash: {}",
                common::db_error(&e)
            ),
        }
        let status = wait_for_exit(&mut crashing, point).await;
        assert!(!status.success(), "{point}: the server exited cleanly");
        drop(crashing);

        let mut proc = spawn_server(dir.path(), &[]);
        let c = connect(&proc).await;
        let got = table(&c).await;
        let expected = if survives { &after } else { &before };
        if got != *expected {
            let other = if survives { &before } else { &after };
            panic!(
                "{point}, iteration {k}: after recovery the table is {}\n got: {got:?}\n \
                 expected: {expected:?}",
                if got == *other {
                    "the wrong one of before/after"
                } else {
                    "neither the state before nor after the transaction (half applied or lost \
                     acknowledged commits)"
                }
            );
        }

        // Usable: a new transaction over every row (so any lock or intent left by the
        // in-doubt transaction would stop it) commits, and a snapshot sees it whole. If the
        // crashed transaction was aborted, its keys are free again: insert them.
        let mut next = got.clone();
        for v in next.values_mut() {
            *v += 1;
        }
        let mut fresh = vec![20_000 + k as i32];
        if !survives {
            fresh.extend(&inserted);
        }
        for &id in &fresh {
            next.insert(id, -1);
        }
        let values: Vec<String> = fresh.iter().map(|id| format!("({id}, -1)")).collect();
        let txn = format!(
            "BEGIN ISOLATION LEVEL REPEATABLE READ; UPDATE t SET v = v + 1; \
             INSERT INTO t VALUES {}; COMMIT",
            values.join(", ")
        );
        tokio::time::timeout(Duration::from_secs(10), c.batch_execute(&txn))
            .await
            .unwrap_or_else(|_| panic!("{point}: a transaction after recovery hung"))
            .unwrap_or_else(|e| panic!("{point}: after recovery: {}", common::db_error(&e)));
        assert_eq!(
            table(&c).await,
            next,
            "{point}: the transaction after recovery"
        );
        let count: i64 = c
            .query_one("SELECT count(*) FROM t", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(
            count as usize,
            next.len(),
            "{point}: count(*) after recovery"
        );

        // Recovery's outcome is durable: another crash and restart changes nothing.
        kill_9(&mut proc);
        let proc = spawn_server(dir.path(), &[]);
        let c = connect(&proc).await;
        assert_eq!(
            table(&c).await,
            next,
            "{point}, iteration {k}: the state changed across a second restart"
        );
        println!(
            "{point}, iteration {k}: {} after recovery, {} rows verified",
            if survives { "committed" } else { "aborted" },
            next.len()
        );
    }
}

macro_rules! crash_point_tests {
    ($($name:ident: $point:literal => $survives:literal,)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            tokio::time::timeout(Duration::from_secs(120), crash_at($point, $survives))
                .await
                .expect(concat!("crash test at ", $point, " hung"));
        }
    )*};
}

crash_point_tests! {
    crash_before_prepare_aborts: "before-prepare" => false,
    crash_between_prepares_aborts: "between-prepares" => false,
    crash_after_prepares_aborts: "after-prepares" => false,
    crash_after_decision_commits: "after-decision" => true,
    crash_between_commits_commits: "between-commits" => true,
    crash_after_commits_commits: "after-commits" => true,
}

/// The faults module's list and the crash tests name the same points (the data-move points
/// are tested by `tests/placement_crash.rs`).
#[test]
fn every_crash_point_is_tested() {
    let tested = [
        "before-prepare",
        "between-prepares",
        "after-prepares",
        "after-decision",
        "between-commits",
        "after-commits",
        "move-after-copy",
        "move-after-switch",
        "move-mid-cleanup",
    ];
    assert_eq!(sharddb::txn::faults::POINTS, tested);
}

const ACCOUNTS: i32 = 100;
const INITIAL: i64 = 1000;
const WRITERS: i64 = 4;

/// One transfer, as its writer planned it.
type Planned = (i32, i32, i64);

#[derive(Default, Clone)]
struct Ledger {
    /// Every transfer id ever attempted, with what it moves.
    planned: HashMap<i64, Planned>,
    /// Transfers whose COMMIT was acknowledged.
    acked: Vec<i64>,
}

/// Runs transfers until the server dies under it; retries on 40001/40P01.
async fn transfer_writer(url: String, w: i64, base: i64, ledger: Arc<Mutex<Ledger>>) {
    let Ok((c, conn)) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await else {
        return;
    };
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let level = LEVELS[w as usize % LEVELS.len()];
    let policy = if w % 2 == 0 { "wait_die" } else { "wound_wait" };
    if c.batch_execute(&format!("SET deadlock_policy = '{policy}'"))
        .await
        .is_err()
    {
        return;
    }
    let mut rng = StdRng::from_os_rng();
    for i in 0.. {
        let id = base + w * 1_000_000 + i;
        let from = rng.random_range(0..ACCOUNTS);
        let to = (from + rng.random_range(1..ACCOUNTS)) % ACCOUNTS;
        let amount = rng.random_range(1..=100i64);
        ledger
            .lock()
            .unwrap()
            .planned
            .insert(id, (from, to, amount));
        let sql = format!(
            "BEGIN ISOLATION LEVEL {level};
             UPDATE accounts SET balance = balance - {amount} WHERE id = {from};
             UPDATE accounts SET balance = balance + {amount} WHERE id = {to};
             INSERT INTO log VALUES ({id}, {from}, {to}, {amount});
             COMMIT"
        );
        loop {
            match c.batch_execute(&sql).await {
                Ok(()) => {
                    ledger.lock().unwrap().acked.push(id);
                    break;
                }
                Err(e) if e.as_db_error().is_some() => {
                    let code = e.code().unwrap().code();
                    assert!(
                        code == "40001" || code == "40P01",
                        "transfer {id} failed: {}",
                        common::db_error(&e)
                    );
                    if c.batch_execute("ROLLBACK").await.is_err() {
                        return;
                    }
                }
                // The server is gone: this transfer's outcome is for recovery to tell.
                Err(_) => return,
            }
        }
    }
}

/// Sums the balances in REPEATABLE READ snapshots until the server dies.
async fn sum_reader(url: String) {
    let Ok((c, conn)) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await else {
        return;
    };
    tokio::spawn(async move {
        let _ = conn.await;
    });
    loop {
        let r = c
            .simple_query(
                "BEGIN ISOLATION LEVEL REPEATABLE READ; \
                 SELECT sum(balance) FROM accounts; COMMIT",
            )
            .await;
        let Ok(msgs) = r else { return };
        for m in msgs {
            if let tokio_postgres::SimpleQueryMessage::Row(r) = m {
                assert_eq!(
                    r.get(0),
                    Some((INITIAL * ACCOUNTS as i64).to_string().as_str()),
                    "a snapshot saw part of a transfer"
                );
            }
        }
    }
}

/// Checks the restarted server against the ledger; returns how many transfers are logged.
async fn verify_transfers(c: &Client, ledger: &Ledger, iteration: usize) -> usize {
    let mut balance: HashMap<i32, i64> = HashMap::new();
    for r in c
        .query("SELECT id, balance FROM accounts", &[])
        .await
        .unwrap()
    {
        balance.insert(r.get(0), r.get(1));
    }
    assert_eq!(balance.len(), ACCOUNTS as usize, "iteration {iteration}");
    let total: i64 = balance.values().sum();
    assert_eq!(
        total,
        INITIAL * ACCOUNTS as i64,
        "iteration {iteration}: money was created or destroyed"
    );
    let mut expected: HashMap<i32, i64> = (0..ACCOUNTS).map(|i| (i, INITIAL)).collect();
    let mut logged: HashMap<i64, Planned> = HashMap::new();
    for r in c
        .query("SELECT id, src, dst, amount FROM log", &[])
        .await
        .unwrap()
    {
        let id: i64 = r.get(0);
        let t: Planned = (r.get(1), r.get(2), r.get(3));
        assert_eq!(
            ledger.planned.get(&id),
            Some(&t),
            "iteration {iteration}: log row {id} is not a transfer that was attempted"
        );
        *expected.get_mut(&t.0).unwrap() -= t.2;
        *expected.get_mut(&t.1).unwrap() += t.2;
        logged.insert(id, t);
    }
    for id in &ledger.acked {
        assert!(
            logged.contains_key(id),
            "iteration {iteration}: acknowledged transfer {id} is not in the log"
        );
    }
    for (account, want) in &expected {
        assert_eq!(
            balance[account], *want,
            "iteration {iteration}: account {account} does not match the logged transfers"
        );
    }
    logged.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_transfers_keeps_balances_and_log_in_step() {
    let body = async {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Arc::new(Mutex::new(Ledger::default()));
        let mut proc = spawn_server(dir.path(), &[]);
        {
            let c = connect(&proc).await;
            c.batch_execute(
                "CREATE TABLE accounts (id int PRIMARY KEY, balance bigint NOT NULL);
                 CREATE TABLE log (id bigint PRIMARY KEY, src int NOT NULL, dst int NOT NULL,
                                   amount bigint NOT NULL)",
            )
            .await
            .unwrap();
            common::insert_accounts(&c, i64::from(ACCOUNTS), INITIAL).await;
        }
        for iteration in 0..iterations().max(1) {
            let url = format!("host=127.0.0.1 port={} user=t", proc.port);
            let base = (iteration as i64) * WRITERS * 1_000_000;
            let mut tasks: Vec<_> = (0..WRITERS)
                .map(|w| tokio::spawn(transfer_writer(url.clone(), w, base, ledger.clone())))
                .collect();
            tasks.push(tokio::spawn(sum_reader(url.clone())));
            let delay = rand::rng().random_range(300..1200);
            tokio::time::sleep(Duration::from_millis(delay)).await;
            kill_9(&mut proc);
            for t in tasks {
                t.await.expect("a writer or reader panicked");
            }

            proc = spawn_server(dir.path(), &[]);
            let c = connect(&proc).await;
            let seen = ledger.lock().unwrap().clone();
            let acked = seen.acked.len();
            // Transfers in flight at the kill are in the log or not; either way the balances
            // must agree with the log.
            let logged = verify_transfers(&c, &seen, iteration).await;
            // Usable: a new cross-shard transfer commits and the books still balance.
            let id = -1 - iteration as i64;
            c.batch_execute(&format!(
                "BEGIN; UPDATE accounts SET balance = balance - 5 WHERE id = 0;
                 UPDATE accounts SET balance = balance + 5 WHERE id = 1;
                 INSERT INTO log VALUES ({id}, 0, 1, 5); COMMIT"
            ))
            .await
            .unwrap_or_else(|e| panic!("after recovery: {}", common::db_error(&e)));
            let seen = {
                let mut l = ledger.lock().unwrap();
                l.planned.insert(id, (0, 1, 5));
                l.acked.push(id);
                l.clone()
            };
            verify_transfers(&c, &seen, iteration).await;
            println!(
                "iteration {iteration}: killed after {delay} ms; {acked} transfers \
                 acknowledged so far, {logged} logged, balances match the log"
            );
        }
    };
    tokio::time::timeout(Duration::from_secs(180), body)
        .await
        .expect("the kill -9 transfer test hung");
}
