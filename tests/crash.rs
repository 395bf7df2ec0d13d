//! Durability by killing: a real `sharddb` process takes writes from several connections and is
//! killed with SIGKILL at a random moment; after a restart every acknowledged statement must be
//! there, and every statement that was in flight must be all there or not there at all (multi-row
//! INSERTs span shards, so this exercises two-phase commit recovery).
//!
//! `SHARDDB_CRASH_ITERATIONS` (default 3) sets how many kill/restart cycles run.

mod common;

use rand::Rng;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
struct Ledger {
    /// Statement id → the row ids it inserted; acknowledged or not.
    acked: HashMap<u64, Vec<i64>>,
    in_flight: HashMap<u64, Vec<i64>>,
    /// Writer → (acknowledged increments, increments possibly in flight)
    counters: HashMap<i64, (i64, i64)>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_no_acknowledged_commit() {
    let iterations: usize = std::env::var("SHARDDB_CRASH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let dir = tempfile::tempdir().unwrap();
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let mut next_row: i64 = 0;
    let mut next_stmt: u64 = 0;
    let writers = 4i64;

    let mut proc = common::spawn_server(dir.path(), &[]);
    {
        let c = common::connect(&format!("host=127.0.0.1 port={} user=t", proc.port)).await;
        c.batch_execute(
            "CREATE TABLE items (id bigint PRIMARY KEY, writer int NOT NULL, payload text);
             CREATE TABLE counters (w int PRIMARY KEY, n bigint NOT NULL)",
        )
        .await
        .unwrap();
        for w in 0..writers {
            c.execute("INSERT INTO counters VALUES ($1, 0)", &[&(w as i32)])
                .await
                .unwrap();
            ledger.lock().unwrap().counters.insert(w, (0, 0));
        }
    }

    for iteration in 0..iterations {
        let url = format!("host=127.0.0.1 port={} user=t", proc.port);
        let mut tasks = Vec::new();
        for w in 0..writers {
            let url = url.clone();
            let ledger = ledger.clone();
            let base_row = next_row + w * 1_000_000;
            let base_stmt = next_stmt + (w as u64) * 1_000_000;
            tasks.push(tokio::spawn(async move {
                let Ok((client, conn)) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await
                else {
                    return;
                };
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                for k in 0.. {
                    let stmt_id = base_stmt + k as u64;
                    if k % 5 == 4 {
                        ledger.lock().unwrap().counters.get_mut(&w).unwrap().1 += 1;
                        let r = client
                            .execute("UPDATE counters SET n = n + 1 WHERE w = $1", &[&(w as i32)])
                            .await;
                        let mut l = ledger.lock().unwrap();
                        let e = l.counters.get_mut(&w).unwrap();
                        match r {
                            Ok(_) => {
                                e.0 += 1;
                                e.1 -= 1;
                            }
                            Err(_) => return,
                        }
                        continue;
                    }
                    // 1 to 5 rows per statement: multi-row statements touch several shards.
                    let n = 1 + (k % 5);
                    let ids: Vec<i64> = (0..n).map(|j| base_row + k * 10 + j).collect();
                    let values: Vec<String> = ids
                        .iter()
                        .map(|id| format!("({id}, {w}, 'stmt {stmt_id}')"))
                        .collect();
                    let sql = format!("INSERT INTO items VALUES {}", values.join(", "));
                    ledger
                        .lock()
                        .unwrap()
                        .in_flight
                        .insert(stmt_id, ids.clone());
                    let r = client.batch_execute(&sql).await;
                    let mut l = ledger.lock().unwrap();
                    match r {
                        Ok(()) => {
                            l.in_flight.remove(&stmt_id);
                            l.acked.insert(stmt_id, ids);
                        }
                        Err(_) => return,
                    }
                }
            }));
        }
        let delay = rand::rng().random_range(300..1200);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        proc.child.kill().expect("kill -9");
        let _ = proc.child.wait();
        for t in tasks {
            let _ = t.await;
        }
        next_row += writers * 1_000_000;
        next_stmt += (writers as u64) * 1_000_000;

        proc = common::spawn_server(dir.path(), &[]);
        let c = common::connect(&format!("host=127.0.0.1 port={} user=t", proc.port)).await;
        let present: HashSet<i64> = c
            .query("SELECT id FROM items", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let counter_rows = c.query("SELECT w, n FROM counters", &[]).await.unwrap();
        let mut l = ledger.lock().unwrap();
        let mut expected_total = 0usize;
        for (stmt, ids) in &l.acked {
            for id in ids {
                assert!(
                    present.contains(id),
                    "iteration {iteration}: acknowledged row {id} of statement {stmt} lost"
                );
            }
            expected_total += ids.len();
        }
        // In-flight statements: all or nothing. Those that made it count as acknowledged now.
        let in_flight: Vec<(u64, Vec<i64>)> = l.in_flight.drain().collect();
        for (stmt, ids) in in_flight {
            let there = ids.iter().filter(|id| present.contains(id)).count();
            assert!(
                there == 0 || there == ids.len(),
                "iteration {iteration}: statement {stmt} half applied ({there} of {})",
                ids.len()
            );
            if there == ids.len() {
                expected_total += ids.len();
                l.acked.insert(stmt, ids);
            }
        }
        assert_eq!(
            present.len(),
            expected_total,
            "iteration {iteration}: rows that were never written appeared"
        );
        for row in counter_rows {
            let w: i32 = row.get(0);
            let n: i64 = row.get(1);
            let (acked, maybe) = l.counters[&(w as i64)];
            assert!(
                n >= acked && n <= acked + maybe,
                "iteration {iteration}: counter {w} is {n}, acknowledged {acked}, in flight {maybe}"
            );
            l.counters.insert(w as i64, (n, 0));
        }
        println!(
            "iteration {iteration}: killed after {delay} ms, {} rows verified",
            present.len()
        );
    }
    let _ = proc.child.kill();
    let _ = proc.child.wait();
}
