//! Secondary indexes through the front door: concurrent unique inserts, a randomized
//! differential test (index scans vs `enable_indexscan = off`), and prepared statements with
//! `$n` bounds.

mod common;

use common::{TestServer, db_error};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio_postgres::Client;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_inserts_of_one_unique_value_one_wins() {
    let server = TestServer::start(4).await;
    let setup = server.connect().await;
    setup
        .batch_execute(
            "CREATE TABLE u (id int PRIMARY KEY, email text);
             CREATE UNIQUE INDEX u_email ON u (email)",
        )
        .await
        .unwrap();
    for round in 0..20 {
        let a = server.connect().await;
        let b = server.connect().await;
        let value = format!("v{round}");
        let v = value.as_str();
        let (ia, ib): (i32, i32) = (round * 2, round * 2 + 1);
        let pa: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&ia, &v];
        let pb: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&ib, &v];
        let (ra, rb) = tokio::join!(
            a.execute("INSERT INTO u VALUES ($1, $2)", &pa),
            b.execute("INSERT INTO u VALUES ($1, $2)", &pb),
        );
        let errors: Vec<String> = [ra, rb]
            .iter()
            .filter_map(|r| r.as_ref().err().map(db_error))
            .collect();
        assert_eq!(errors.len(), 1, "round {round}: exactly one insert fails");
        // The loser either waited for the winner's value lock and then found the value
        // taken, or (wait-die, the younger of the two) was aborted instead of waiting.
        assert!(
            errors[0] == "23505: duplicate key value violates unique constraint \"u_email\""
                || errors[0].starts_with("40P01: deadlock prevented by wait-die"),
            "round {round}: {}",
            errors[0]
        );
        let n: i64 = setup
            .query_one(
                "SELECT count(*) FROM u WHERE email = $1",
                &[&value.as_str()],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 1);
    }
    server.stop().await;
}

/// An INSERT racing CREATE UNIQUE INDEX: whichever goes first, the table never ends up with
/// a unique index over duplicate values (a statement planned before the index existed is
/// re-planned once it holds the write lock).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn inserts_racing_create_unique_index_never_leave_duplicates() {
    let server = TestServer::start(4).await;
    let setup = server.connect().await;
    setup
        .batch_execute("CREATE TABLE r (id int PRIMARY KEY, u text)")
        .await
        .unwrap();
    for round in 0..20i32 {
        let a = server.connect().await;
        let b = server.connect().await;
        setup
            .batch_execute(&format!(
                "DROP INDEX IF EXISTS r_u; DELETE FROM r; INSERT INTO r VALUES ({}, 'x')",
                round * 10
            ))
            .await
            .unwrap();
        let id = round * 10 + 1;
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&id];
        let (ri, rc) = tokio::join!(
            a.execute("INSERT INTO r VALUES ($1, 'x')", &params),
            b.batch_execute("CREATE UNIQUE INDEX r_u ON r (u)"),
        );
        let dups: i64 = setup
            .query_one("SELECT count(*) FROM r WHERE u = 'x'", &[])
            .await
            .unwrap()
            .get(0);
        let indexed = !setup
            .query(
                "SELECT 1 FROM sharddb_indexes WHERE index_name = 'r_u'",
                &[],
            )
            .await
            .unwrap()
            .is_empty();
        match (ri, rc) {
            (Ok(_), Ok(())) => panic!("round {round}: both the duplicate and the unique index"),
            (Ok(_), Err(e)) => {
                assert!(db_error(&e).starts_with("23505"), "round {round}: {e}");
                assert!(!indexed && dups == 2, "round {round}");
            }
            (Err(e), Ok(())) => {
                assert!(db_error(&e).starts_with("23505"), "round {round}: {e}");
                assert!(indexed && dups == 1, "round {round}");
            }
            (Err(a), Err(b)) => panic!("round {round}: both failed: {a} / {b}"),
        }
    }
}

/// Rows of a query as text, sorted unless the query orders them itself.
async fn rows(client: &Client, sql: &str, ordered: bool) -> Vec<String> {
    let msgs = client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {}", db_error(&e)));
    let mut out: Vec<String> = msgs
        .into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(
                (0..r.len())
                    .map(|i| r.get(i).unwrap_or("NULL").to_string())
                    .collect::<Vec<_>>()
                    .join("|"),
            ),
            _ => None,
        })
        .collect();
    if !ordered {
        out.sort();
    }
    out
}

fn value(rng: &mut StdRng, col: &str) -> String {
    if rng.random_bool(0.12) {
        return "NULL".into();
    }
    match col {
        "a" => rng.random_range(-10..10).to_string(),
        "b" => format!(
            "'{}'",
            ["p", "q", "qq", "r", "", "s t"][rng.random_range(0..6)]
        ),
        "c" => rng.random_range(0..5).to_string(),
        _ => format!("{}.5", rng.random_range(-3..3)),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_queries_agree_with_full_scans() {
    let server = TestServer::start(3).await;
    let idx = server.connect().await;
    let seq = server.connect().await;
    seq.batch_execute("SET enable_indexscan = off")
        .await
        .unwrap();
    idx.batch_execute(
        "CREATE TABLE r (id int PRIMARY KEY, a int, b text, c int, d numeric);
         CREATE INDEX r_a ON r (a);
         CREATE INDEX r_b_desc ON r (b DESC);
         CREATE INDEX r_c_a ON r (c, a DESC);
         CREATE INDEX r_d ON r (d)",
    )
    .await
    .unwrap();
    let mut rng = StdRng::seed_from_u64(0x1d3e);
    let mut next_id = 0;
    let cols = ["a", "b", "c", "d"];
    for step in 0..60 {
        // Writes: inserts, updates of indexed columns (and keys), deletes.
        match rng.random_range(0..4) {
            0 | 1 => {
                let mut values = Vec::new();
                for _ in 0..rng.random_range(1..15) {
                    next_id += 1;
                    values.push(format!(
                        "({next_id}, {}, {}, {}, {})",
                        value(&mut rng, "a"),
                        value(&mut rng, "b"),
                        value(&mut rng, "c"),
                        value(&mut rng, "d")
                    ));
                }
                idx.batch_execute(&format!("INSERT INTO r VALUES {}", values.join(", ")))
                    .await
                    .unwrap();
            }
            2 => {
                let col = cols[rng.random_range(0..4)];
                let sql = format!(
                    "UPDATE r SET {col} = {}, id = id + 100000 WHERE id % {} = {}",
                    value(&mut rng, col),
                    rng.random_range(2..6),
                    rng.random_range(0..2)
                );
                idx.batch_execute(&sql).await.unwrap();
            }
            _ => {
                let sql = format!("DELETE FROM r WHERE a = {}", rng.random_range(-10..10));
                idx.batch_execute(&sql).await.unwrap();
            }
        }
        // Queries: each compared with the full-scan result.
        for _ in 0..8 {
            let col = cols[rng.random_range(0..4)];
            let v1 = value(&mut rng, col);
            let v2 = value(&mut rng, col);
            let pred = match rng.random_range(0..9) {
                0 => format!("{col} = {v1}"),
                1 => format!("{col} IN ({v1}, {v2}, {v1})"),
                2 => format!("{col} < {v1}"),
                3 => format!("{col} <= {v1}"),
                4 => format!("{col} > {v1}"),
                5 => format!("{col} >= {v1}"),
                6 => format!("{col} BETWEEN {v1} AND {v2}"),
                7 => format!("{col} IS NULL"),
                _ => format!(
                    "c = {} AND a > {}",
                    value(&mut rng, "c"),
                    value(&mut rng, "a")
                ),
            };
            let (sql, ordered) = if rng.random_bool(0.4) {
                let dir = if rng.random_bool(0.5) { "ASC" } else { "DESC" };
                let ocol = ["a", "b", "c", "d"][rng.random_range(0..4)];
                (
                    format!(
                        "SELECT * FROM r WHERE {pred} ORDER BY {ocol} {dir}, id {dir} LIMIT {} OFFSET {}",
                        rng.random_range(1..8),
                        rng.random_range(0..3)
                    ),
                    true,
                )
            } else if rng.random_bool(0.3) {
                let ocol = ["a", "b", "c", "d"][rng.random_range(0..4)];
                (
                    format!("SELECT * FROM r ORDER BY {ocol} DESC, id DESC LIMIT 5"),
                    true,
                )
            } else {
                (format!("SELECT * FROM r WHERE {pred}"), false)
            };
            let got = rows(&idx, &sql, ordered).await;
            let want = rows(&seq, &sql, ordered).await;
            assert_eq!(got, want, "step {step}: {sql}");
        }
    }
    // The indexes passed the shards' invariant checks after all that.
    let bad = rows(
        &idx,
        "SELECT shard, index_name, detail FROM sharddb_index_check WHERE NOT ok",
        false,
    )
    .await;
    assert!(bad.is_empty(), "{bad:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_statements_bind_index_bounds() {
    let server = TestServer::start(2).await;
    let c = server.connect().await;
    c.batch_execute(
        "CREATE TABLE p (id int PRIMARY KEY, k int8, s text);
         CREATE INDEX p_k ON p (k);
         CREATE UNIQUE INDEX p_s ON p (s);
",
    )
    .await
    .unwrap();
    let values: Vec<String> = (1..=200)
        .map(|g| format!("({g}, {}, 's{g}')", g % 20))
        .collect();
    c.batch_execute(&format!("INSERT INTO p VALUES {}", values.join(", ")))
        .await
        .unwrap();
    let range = c
        .prepare("SELECT count(*) FROM p WHERE k BETWEEN $1 AND $2")
        .await
        .unwrap();
    for (lo, hi, want) in [(0i64, 0i64, 10i64), (3, 5, 30), (5, 3, 0), (-5, 100, 200)] {
        let n: i64 = c.query_one(&range, &[&lo, &hi]).await.unwrap().get(0);
        assert_eq!(n, want, "k BETWEEN {lo} AND {hi}");
    }
    let eq = c.prepare("SELECT id FROM p WHERE s = $1").await.unwrap();
    let id: i32 = c.query_one(&eq, &[&"s42"]).await.unwrap().get(0);
    assert_eq!(id, 42);
    assert!(c.query(&eq, &[&"nope"]).await.unwrap().is_empty());
    let null: Option<&str> = None;
    assert!(c.query(&eq, &[&null]).await.unwrap().is_empty());
    let top = c
        .prepare("SELECT id FROM p WHERE k < $1 ORDER BY k DESC, id DESC LIMIT $2")
        .await
        .unwrap();
    let got: Vec<i32> = c
        .query(&top, &[&3i64, &4i64])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(got, vec![182, 162, 142, 122]);
    let upd = c
        .prepare("UPDATE p SET s = $1 WHERE id = $2")
        .await
        .unwrap();
    let err = c.execute(&upd, &[&"s1", &2i32]).await.unwrap_err();
    assert_eq!(
        db_error(&err),
        "23505: duplicate key value violates unique constraint \"p_s\""
    );
    assert_eq!(
        err.as_db_error().and_then(|d| d.detail()),
        Some("Key (s)=(s1) already exists.")
    );
    // Correlated subquery bounds: the outer value goes into the inner index scan.
    let n: i64 = c
        .query_one(
            "SELECT count(*) FROM p o WHERE o.id <= 20 AND \
             (SELECT count(*) FROM p i WHERE i.k = o.k) = 10",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 20);
    server.stop().await;
}
