//! Indexes survive `kill -9`: a real `sharddb` process with a tiny index buffer pool (so pages
//! are evicted and checkpoints run all the time) takes concurrent inserts, updates of indexed
//! columns and deletes from several connections, and is killed with SIGKILL at a random moment.
//! After each restart the indexes are recovered from their pages plus the WAL — not rebuilt —
//! and every query through an index must return exactly what a full scan returns, the page
//! invariant checker must pass on every shard, and no acknowledged write may be missing.
//!
//! `SHARDDB_CRASH_ITERATIONS` (default 3) sets how many kill/restart cycles run.

mod common;

use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The acknowledged state of each row id a writer touched: `Some(score)` or deleted (`None`),
/// and the write in flight when the server died (either outcome is allowed for that row).
#[derive(Default)]
struct Ledger {
    acked: HashMap<i64, Option<i64>>,
    in_flight: HashMap<i64, Option<i64>>,
}

const QUERIES: &[&str] = &[
    "SELECT id, score, tag FROM items WHERE score = 17 ORDER BY id",
    "SELECT id, score, tag FROM items WHERE score BETWEEN 100 AND 300 ORDER BY id",
    "SELECT id, score, tag FROM items WHERE score < 50 OR score IS NULL ORDER BY id",
    "SELECT id, score, tag FROM items WHERE tag = 'w1' AND score >= 500 ORDER BY id",
    "SELECT id, score, tag FROM items WHERE tag IN ('w0', 'w3') ORDER BY id",
    "SELECT id, score FROM items ORDER BY score DESC, id DESC LIMIT 25",
    "SELECT count(*) FROM items WHERE score > 900",
];

async fn rows_of(c: &tokio_postgres::Client, sql: &str) -> Vec<String> {
    c.simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(
                (0..r.len())
                    .map(|i| r.get(i).unwrap_or("NULL").to_owned())
                    .collect::<Vec<_>>()
                    .join("|"),
            ),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indexes_recover_after_kill_9_and_agree_with_full_scans() {
    let iterations: usize = std::env::var("SHARDDB_CRASH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let dir = tempfile::tempdir().unwrap();
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let writers = 4i64;

    let mut proc = common::spawn_server(dir.path(), &["--index-pool-mb", "1"]);
    {
        let c = common::connect(&format!("host=127.0.0.1 port={} user=t", proc.port)).await;
        c.batch_execute(
            "CREATE TABLE items (id bigint PRIMARY KEY, score bigint, tag text, pad text);
             INSERT INTO items VALUES (1000000000, 1, 'seed', 'x'), (1000000001, 2, 'seed', 'y');
             CREATE INDEX items_score ON items (score);
             CREATE INDEX items_tag_score ON items (tag, score DESC)",
        )
        .await
        .unwrap();
        let mut l = ledger.lock().unwrap();
        l.acked.insert(1000000000, Some(1));
        l.acked.insert(1000000001, Some(2));
    }

    for iteration in 0..iterations {
        let url = format!("host=127.0.0.1 port={} user=t", proc.port);
        let mut tasks = Vec::new();
        for w in 0..writers {
            let url = url.clone();
            let ledger = ledger.clone();
            tasks.push(tokio::spawn(async move {
                let Ok((client, conn)) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await
                else {
                    return;
                };
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                let mut rng = rand::rngs::StdRng::from_os_rng();
                loop {
                    // Each writer owns the ids congruent to it, so the ledger per row is exact.
                    let id = rng.random_range(0..400i64) * writers + w;
                    let roll = rng.random_range(0..10);
                    let score = rng.random_range(0..1000i64);
                    let pad = "p".repeat(rng.random_range(0..200));
                    let exists = ledger
                        .lock()
                        .unwrap()
                        .acked
                        .get(&id)
                        .is_some_and(Option::is_some);
                    let (sql, new) = if roll < 7 && exists {
                        (
                            format!(
                                "UPDATE items SET score = {score}, pad = '{pad}' WHERE id = {id}"
                            ),
                            Some(score),
                        )
                    } else if roll < 7 {
                        (
                            format!("INSERT INTO items VALUES ({id}, {score}, 'w{w}', '{pad}')"),
                            Some(score),
                        )
                    } else {
                        (format!("DELETE FROM items WHERE id = {id}"), None)
                    };
                    ledger.lock().unwrap().in_flight.insert(id, new);
                    let r = client.batch_execute(&sql).await;
                    let mut l = ledger.lock().unwrap();
                    l.in_flight.remove(&id);
                    match r {
                        Ok(()) => {
                            l.acked.insert(id, new);
                        }
                        Err(e) if e.code().is_some() => {
                            panic!("statement failed with a SQL error: {}: {e}", &*sql)
                        }
                        Err(_) => {
                            // The connection died with the server: outcome unknown.
                            l.in_flight.insert(id, new);
                            return;
                        }
                    }
                }
            }));
        }
        let delay = rand::rng().random_range(400..1500);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        proc.child.kill().expect("kill -9");
        let _ = proc.child.wait();
        for t in tasks {
            let _ = t.await;
        }

        proc = common::spawn_server(dir.path(), &["--index-pool-mb", "1"]);
        let c = common::connect(&format!("host=127.0.0.1 port={} user=t", proc.port)).await;
        // Every acknowledged write is there; an in-flight one is old or new.
        let present: HashMap<i64, Option<i64>> = rows_of(&c, "SELECT id, score FROM items")
            .await
            .into_iter()
            .map(|r| {
                let (id, score) = r.split_once('|').unwrap();
                (id.parse().unwrap(), score.parse().ok())
            })
            .collect();
        {
            let mut l = ledger.lock().unwrap();
            let in_flight: Vec<(i64, Option<i64>)> = l.in_flight.drain().collect();
            for (id, new) in in_flight {
                let now = present.get(&id).copied();
                let old = l.acked.get(&id).copied().flatten();
                let now_score = now.flatten();
                let ok = now_score == new || now_score == old || (now.is_none() && old.is_none());
                assert!(
                    ok,
                    "iteration {iteration}: row {id} is {now:?}, expected {old:?} or {new:?}"
                );
                match now {
                    Some(s) => l.acked.insert(id, s),
                    None => l.acked.insert(id, None),
                };
            }
            for (id, want) in &l.acked {
                let got = present.get(id).copied().flatten();
                match want {
                    Some(s) => assert_eq!(
                        got,
                        Some(*s),
                        "iteration {iteration}: acknowledged row {id} lost or stale"
                    ),
                    None => assert!(
                        !present.contains_key(id),
                        "iteration {iteration}: deleted row {id} is back"
                    ),
                }
            }
            assert_eq!(
                present.len(),
                l.acked.values().filter(|v| v.is_some()).count(),
                "iteration {iteration}: rows that were never written appeared"
            );
        }
        // Index answers equal full-scan answers.
        for q in QUERIES {
            c.batch_execute("SET enable_indexscan = on").await.unwrap();
            let plan = rows_of(&c, &format!("EXPLAIN {q}")).await.join("\n");
            let via_index = rows_of(&c, q).await;
            c.batch_execute("SET enable_indexscan = off").await.unwrap();
            let via_scan = rows_of(&c, q).await;
            assert_eq!(
                via_index, via_scan,
                "iteration {iteration}: {q}\nplan:\n{plan}"
            );
        }
        c.batch_execute("SET enable_indexscan = on").await.unwrap();
        assert!(
            rows_of(&c, "EXPLAIN SELECT * FROM items WHERE score = 5")
                .await
                .join("\n")
                .contains("items_score"),
            "the index is used"
        );
        let bad = rows_of(&c, "SELECT * FROM sharddb_index_check WHERE NOT ok").await;
        assert!(
            bad.is_empty(),
            "iteration {iteration}: invariant check: {bad:?}"
        );
        println!(
            "iteration {iteration}: killed after {delay} ms, {} rows verified through indexes",
            present.len()
        );
    }
    let _ = proc.child.kill();
    let _ = proc.child.wait();
}
