//! Online placement changes survive crashes: for each boundary of the move protocol
//! (`move-after-copy`, `move-after-switch`, `move-mid-cleanup`, see `src/txn/faults.rs`) a real
//! server process aborts there during `ALTER CLUSTER ADD SHARD` (and during `SPLIT AT`), as
//! `kill -9` would stop it. After a restart every committed row is there exactly once, point
//! lookups find each row on its owner, the shard set is the old one (crash before the switch)
//! or the new one (after it), and a second change then runs to completion.

mod common;

use common::{ServerProcess, spawn_server, spawn_server_with_env};
use tokio_postgres::Client;

async fn connect(proc: &ServerProcess) -> Client {
    common::connect(&format!("host=127.0.0.1 port={} user=t", proc.port)).await
}

async fn contents(c: &Client, table: &str) -> Vec<(i64, i64)> {
    c.query(&format!("SELECT k, v FROM {table} ORDER BY k"), &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

async fn shards(c: &Client) -> usize {
    c.simple_query("SHOW SHARDS")
        .await
        .unwrap()
        .iter()
        .filter(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(_)))
        .count()
}

async fn check(c: &Client, want_h: &[(i64, i64)], want_r: &[(i64, i64)]) {
    assert_eq!(contents(c, "h").await, want_h);
    assert_eq!(contents(c, "r").await, want_r);
    for (k, v) in want_h.iter().step_by(7) {
        let row = c
            .query_one("SELECT v FROM h WHERE k = $1", &[k])
            .await
            .unwrap();
        assert_eq!(row.get::<_, i64>(0), *v, "h key {k}");
    }
    let n: i64 = c
        .query_one("SELECT count(*) FROM r WHERE k >= 250", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n as usize, want_r.iter().filter(|(k, _)| *k >= 250).count());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_during_placement_changes() {
    for point in ["move-after-copy", "move-after-switch", "move-mid-cleanup"] {
        for change in ["ALTER CLUSTER ADD SHARD", "ALTER TABLE r SPLIT AT (250)"] {
            let dir = tempfile::tempdir().unwrap();
            let mut proc =
                spawn_server_with_env(dir.path(), &[], &[("SHARDDB_TEST_CRASH_AT", point)]);
            let c = connect(&proc).await;
            c.batch_execute(
                "CREATE TABLE h (k bigint PRIMARY KEY, v bigint);
                 CREATE INDEX h_v ON h (v);
                 CREATE TABLE r (k bigint PRIMARY KEY, v bigint) PARTITION BY RANGE (k);",
            )
            .await
            .unwrap();
            let values: Vec<String> = (0..600).map(|k| format!("({k}, {})", k * 10)).collect();
            c.batch_execute(&format!("INSERT INTO h VALUES {}", values.join(",")))
                .await
                .unwrap();
            c.batch_execute(&format!("INSERT INTO r VALUES {}", values.join(",")))
                .await
                .unwrap();
            let want_h = contents(&c, "h").await;
            let want_r = contents(&c, "r").await;
            let before = shards(&c).await;
            let res = c.simple_query(change).await;
            assert!(
                res.is_err(),
                "{point} / {change}: the server should have aborted"
            );
            let _ = proc.child.wait();
            drop(c);
            let proc = spawn_server(dir.path(), &[]);
            let c = connect(&proc).await;
            check(&c, &want_h, &want_r).await;
            let after = shards(&c).await;
            let adding = change.contains("ADD SHARD");
            match point {
                "move-after-copy" => assert_eq!(after, before, "{point} / {change}"),
                _ if adding => assert_eq!(after, before + 1, "{point} / {change}"),
                _ => assert_eq!(after, before),
            }
            // The cluster is fully usable: another change completes, nothing is lost.
            c.simple_query("ALTER CLUSTER ADD SHARD").await.unwrap();
            c.simple_query("ALTER TABLE r SPLIT AT (100), (450)")
                .await
                .unwrap();
            c.execute("UPDATE h SET v = v + 1 WHERE k < 50", &[])
                .await
                .unwrap();
            let want_h: Vec<(i64, i64)> = want_h
                .iter()
                .map(|(k, v)| (*k, if *k < 50 { v + 1 } else { *v }))
                .collect();
            check(&c, &want_h, &want_r).await;
            // Index scans agree with the table (the new shard's index has the moved rows).
            let n: i64 = c
                .query_one("SELECT count(*) FROM h WHERE v >= 3000", &[])
                .await
                .unwrap()
                .get(0);
            assert_eq!(
                n as usize,
                want_h.iter().filter(|(_, v)| *v >= 3000).count(),
                "{point} / {change}"
            );
        }
    }
}
