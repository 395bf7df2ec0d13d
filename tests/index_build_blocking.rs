//! CREATE INDEX on a populated table blocks writers but never readers: with each shard's
//! build paused (a test-only setting), a SELECT issued during the build answers while the
//! build is still running, and an INSERT issued during it completes only after it.
//!
//! Its own test binary, because the pause setting is process-wide.

mod common;

use common::TestServer;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn index_builds_block_writers_not_readers() {
    // SAFETY: set before the server starts, in a binary with this one test.
    unsafe { std::env::set_var(sharddb::shard::indexes::BUILD_PAUSE_ENV, "1500") };
    let server = TestServer::start(4).await;
    let setup = server.connect().await;
    setup
        .batch_execute(
            "CREATE TABLE t (id int PRIMARY KEY, v int);
             INSERT INTO t VALUES (1, 10), (2, 20), (3, 30), (4, 40)",
        )
        .await
        .unwrap();
    let builder = server.connect().await;
    let build = tokio::spawn(async move {
        builder
            .batch_execute("CREATE INDEX t_v ON t (v)")
            .await
            .map(|_| builder)
    });
    // Let the build take the write lock and start its pause.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let reader = server.connect().await;
    let n: i64 = reader
        .query_one("SELECT count(*) FROM t WHERE v > 15", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 3);
    assert!(
        !build.is_finished(),
        "the read had to answer while the build was still running"
    );
    let writer = server.connect().await;
    let write =
        tokio::spawn(async move { writer.batch_execute("INSERT INTO t VALUES (5, 50)").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!write.is_finished(), "a write must wait for the build");
    build.await.unwrap().unwrap();
    write.await.unwrap().unwrap();
    // The row written after the build is in the index.
    let plan: Vec<String> = reader
        .simple_query("EXPLAIN SELECT id FROM t WHERE v = 50")
        .await
        .unwrap()
        .into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        })
        .collect();
    assert!(plan.join("\n").contains("t_v"), "{plan:?}");
    let id: i32 = reader
        .query_one("SELECT id FROM t WHERE v = 50", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(id, 5);
    server.stop().await;
}
