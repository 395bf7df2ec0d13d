//! Transactions through the front door, one test per way a transaction can go wrong that a
//! review of the first version found: locks that outlive their transaction (SERIALIZABLE reads,
//! a client that disconnects), self-deadlocks on the DDL gate, a wait cycle through a waiting
//! DDL statement, phantoms through filtered index scans, READ UNCOMMITTED writes based on
//! rolled-back rows, and extended-protocol errors that must fail the block.

mod common;

use std::time::Duration;

use common::TestServer;
use tokio_postgres::Client;

async fn setup(server: &TestServer) -> Client {
    let c = server.connect().await;
    c.batch_execute(
        "CREATE TABLE t (id int PRIMARY KEY, v int);
         INSERT INTO t VALUES (1, 0), (2, 0), (3, 0), (4, 0), (5, 0), (6, 0), (7, 0), (8, 0)",
    )
    .await
    .unwrap();
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serializable_read_locks_are_released_at_commit() {
    let server = TestServer::start(4).await;
    let _c = setup(&server).await;
    let a = server.connect().await;
    a.batch_execute("BEGIN ISOLATION LEVEL SERIALIZABLE")
        .await
        .unwrap();
    a.simple_query("SELECT * FROM t").await.unwrap();
    a.batch_execute("COMMIT").await.unwrap();
    let b = server.connect().await;
    b.batch_execute("SET lock_timeout = '2s'").await.unwrap();
    b.batch_execute("UPDATE t SET v = 1 WHERE id = 1")
        .await
        .unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disconnect_rolls_back_the_open_transaction() {
    let server = TestServer::start(4).await;
    let c = setup(&server).await;
    {
        let a = server.connect().await;
        a.batch_execute("BEGIN; UPDATE t SET v = 9 WHERE id = 2")
            .await
            .unwrap();
    }
    let b = server.connect().await;
    b.batch_execute("SET lock_timeout = '5s'").await.unwrap();
    b.batch_execute("UPDATE t SET v = 1 WHERE id = 2")
        .await
        .unwrap();
    let v: i32 = c
        .query_one("SELECT v FROM t WHERE id = 2", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        v, 1,
        "the disconnected transaction's write must not survive"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_view_inside_a_writing_block_does_not_hang() {
    let server = TestServer::start(4).await;
    let c = setup(&server).await;
    c.batch_execute("CREATE VIEW tv AS SELECT id FROM t")
        .await
        .unwrap();
    let a = server.connect().await;
    a.batch_execute("BEGIN; UPDATE t SET v = 1 WHERE id = 1")
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), a.batch_execute("DROP VIEW tv"))
        .await
        .expect("DROP VIEW returns")
        .unwrap();
    a.batch_execute("COMMIT").await.unwrap();
    server.stop().await;
}

/// W (older) holds the DDL gate and waits for R's read lock; CREATE INDEX waits for W; R then
/// wants to write. R must not queue behind the DDL (a wait no deadlock policy sees): it is
/// aborted instead, and W goes on long before its lock timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_wait_cycle_through_a_waiting_ddl_statement() {
    let server = TestServer::start(4).await;
    let _c = setup(&server).await;
    let w = server.connect().await;
    w.batch_execute("SET lock_timeout = '20s'; BEGIN; UPDATE t SET v = 1 WHERE id = 2")
        .await
        .unwrap();
    let r = server.connect().await;
    r.batch_execute("BEGIN ISOLATION LEVEL SERIALIZABLE; SELECT v FROM t WHERE id = 1")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let wt = tokio::spawn(async move {
        let res = w.batch_execute("UPDATE t SET v = 1 WHERE id = 1").await;
        let _ = w.batch_execute("COMMIT").await;
        (res.is_ok(), started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let d = server.connect().await;
    let dt = tokio::spawn(async move { d.batch_execute("CREATE INDEX t_v ON t (v)").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let res = r.batch_execute("UPDATE t SET v = 2 WHERE id = 3").await;
    let err = res.expect_err("the reader holding locks must not queue behind the DDL");
    assert_eq!(common::db_error(&err).get(..5), Some("40P01"));
    let _ = r.batch_execute("ROLLBACK").await;
    let (ok, waited) = wt.await.unwrap();
    assert!(ok, "W's update goes through once R is gone");
    assert!(waited < Duration::from_secs(10), "W waited {waited:?}");
    dt.await.unwrap().unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serializable_index_scan_locks_rows_its_filter_rejects() {
    let server = TestServer::start(4).await;
    let c = server.connect().await;
    c.batch_execute(
        "CREATE TABLE s (id int PRIMARY KEY, v int, w int); CREATE INDEX s_v ON s (v);
         INSERT INTO s VALUES (1, 5, 0), (2, 6, 0), (3, 7, 0)",
    )
    .await
    .unwrap();
    let t1 = server.connect().await;
    t1.batch_execute("BEGIN ISOLATION LEVEL SERIALIZABLE")
        .await
        .unwrap();
    let q = "SELECT count(*) FROM s WHERE v = 5 AND w = 1";
    let n1: i64 = t1.query_one(q, &[]).await.unwrap().get(0);
    let t2 = server.connect().await;
    t2.batch_execute("SET deadlock_policy = 'wound_wait'; SET lock_timeout = '1s'")
        .await
        .unwrap();
    let blocked = t2.batch_execute("UPDATE s SET w = 1 WHERE id = 1").await;
    assert!(blocked.is_err(), "the row the filter rejected is locked");
    let n2: i64 = t1.query_one(q, &[]).await.unwrap().get(0);
    assert_eq!(n1, n2);
    t1.batch_execute("COMMIT").await.unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_uncommitted_update_does_not_resurrect_a_rolled_back_insert() {
    let server = TestServer::start(4).await;
    let c = setup(&server).await;
    let ru = server.connect().await;
    ru.batch_execute(
        "SET deadlock_policy = 'wound_wait';
         BEGIN ISOLATION LEVEL READ UNCOMMITTED; SELECT 1 FROM t WHERE id = 1",
    )
    .await
    .unwrap();
    let ins = server.connect().await;
    ins.batch_execute(
        "SET deadlock_policy = 'wound_wait'; BEGIN; SELECT 1; INSERT INTO t VALUES (100, 0)",
    )
    .await
    .unwrap();
    // RU is older: under wound-wait it would wound the inserter, so let the inserter be older.
    let upd = tokio::spawn(async move {
        let r = ru.batch_execute("UPDATE t SET v = 7 WHERE id = 100").await;
        (ru, r)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = ins.batch_execute("ROLLBACK").await;
    let (ru, r) = upd.await.unwrap();
    if r.is_ok() {
        ru.batch_execute("COMMIT").await.unwrap();
    }
    let rows = c
        .query("SELECT id FROM t WHERE id = 100", &[])
        .await
        .unwrap();
    assert!(rows.is_empty(), "a row whose INSERT rolled back came back");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_extended_protocol_parse_error_fails_the_block() {
    let server = TestServer::start(4).await;
    let _c = setup(&server).await;
    let a = server.connect().await;
    a.batch_execute("BEGIN; INSERT INTO t VALUES (50, 0)")
        .await
        .unwrap();
    assert!(a.prepare("SELEC 1").await.is_err());
    let after = a.execute("INSERT INTO t VALUES (51, 0)", &[]).await;
    let e = after.expect_err("statements after the error fail");
    assert_eq!(common::db_error(&e).get(..5), Some("25P02"));
    a.batch_execute("COMMIT").await.unwrap();
    let rows = a
        .query("SELECT id FROM t WHERE id IN (50, 51)", &[])
        .await
        .unwrap();
    assert!(rows.is_empty(), "COMMIT of a failed block rolls back");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_transaction_isolation_as_the_first_statement_of_a_block() {
    let server = TestServer::start(4).await;
    let a = server.connect().await;
    a.batch_execute("BEGIN; SET transaction_isolation = 'serializable'")
        .await
        .unwrap();
    let level: String = a
        .query_one("SHOW transaction_isolation", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(level, "serializable");
    a.batch_execute("COMMIT").await.unwrap();
    server.stop().await;
}

/// An index built after a REPEATABLE READ snapshot lacks entries for versions that snapshot
/// sees (they were replaced before the build): the transaction must not read through it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeatable_read_ignores_an_index_built_after_its_snapshot() {
    let server = TestServer::start(4).await;
    let c = setup(&server).await;
    let rr = server.connect().await;
    rr.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        .await
        .unwrap();
    let q = "SELECT count(*) FROM t WHERE v = 0";
    let before: i64 = rr.query_one(q, &[]).await.unwrap().get(0);
    c.batch_execute("UPDATE t SET v = 1 WHERE id = 1")
        .await
        .unwrap();
    c.batch_execute("CREATE INDEX t_v ON t (v)").await.unwrap();
    let after: i64 = rr.query_one(q, &[]).await.unwrap().get(0);
    assert_eq!(before, after);
    rr.batch_execute("COMMIT").await.unwrap();
    // A new transaction uses the index, and sees the update.
    let plan = c.simple_query(&format!("EXPLAIN {q}")).await.unwrap();
    let text: Vec<String> = plan
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        })
        .collect();
    assert!(
        text.iter().any(|l| l.contains("Index Scan using t_v")),
        "{text:?}"
    );
    let now: i64 = c.query_one(q, &[]).await.unwrap().get(0);
    assert_eq!(now, before - 1);
    server.stop().await;
}
