//! Placement through the front door: the same statements give the same results on one shard and
//! on many (hash and range placement, pruned and scattered queries, shard-key updates), and
//! adding, removing and splitting shards online under a concurrent write workload loses and
//! duplicates nothing.

mod common;

use common::{TestServer, db_error};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio_postgres::{Client, SimpleQueryMessage};

/// Tiny deterministic generator (the corpus must be the same on every run).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> i64 {
        (self.next() % n) as i64
    }
}

async fn rows(c: &Client, sql: &str) -> Result<Vec<Vec<Option<String>>>, String> {
    let msgs = c.simple_query(sql).await.map_err(|e| db_error(&e))?;
    let mut out = Vec::new();
    for m in msgs {
        if let SimpleQueryMessage::Row(r) = m {
            out.push((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect());
        }
    }
    Ok(out)
}

const SCHEMA: &[&str] = &[
    "CREATE TABLE h (a bigint, b bigint, c text, PRIMARY KEY (a, b)) PARTITION BY HASH (a)",
    "CREATE TABLE r (k bigint PRIMARY KEY, v bigint, tag text) PARTITION BY RANGE (k)",
    "CREATE TABLE plain (id bigint PRIMARY KEY, a bigint)",
    "CREATE INDEX h_c ON h (c)",
    // Placed on the same key as h: joins on `a` are co-located.
    "CREATE TABLE h2 (a bigint, d bigint, e text, PRIMARY KEY (a, d)) PARTITION BY HASH (a)",
];

fn corpus(rng: &mut Rng) -> Vec<String> {
    let mut q = Vec::new();
    for _ in 0..60 {
        let a = rng.below(60);
        let b = rng.below(60);
        let lo = rng.below(400);
        let hi = lo + rng.below(200);
        q.push(match rng.below(26) {
            // Not co-located: broadcast (the small input shipped to the shards of the large
            // one, on either side, preserved or not) or gathered.
            20 => format!(
                "SELECT p.id, h.a, h.b FROM plain p LEFT JOIN h ON h.b = p.id AND h.a < {a} ORDER BY 1, 2, 3"
            ),
            21 => format!(
                "SELECT r.k, h2.a, h2.d FROM h2 FULL JOIN r ON r.v = h2.a * 3 AND r.k < {hi} ORDER BY 1, 2, 3"
            ),
            22 => format!(
                "SELECT h.c, x.a, x.n FROM h RIGHT JOIN (SELECT a, count(*) AS n FROM h2 GROUP BY a) x ON x.a = h.b AND h.a = {a} ORDER BY 1, 2, 3"
            ),
            23 => format!(
                "SELECT count(*), sum(h.b) FROM h JOIN plain p ON p.a = h.a + {}",
                b % 5
            ),
            24 => format!(
                "SELECT p.id, r.tag FROM r JOIN plain p ON p.a = r.k AND r.tag <> 't{}' ORDER BY 1, 2",
                a % 5
            ),
            25 => format!(
                "SELECT p.id, count(*) FROM plain p JOIN h2 ON h2.d > p.id WHERE p.id < {} GROUP BY p.id ORDER BY 1",
                a % 6
            ),
            16 => format!(
                "SELECT h.a, h.b, h2.d FROM h JOIN h2 ON h.a = h2.a WHERE h2.d < {b} ORDER BY 1, 2, 3"
            ),
            17 => format!(
                "SELECT h.a, h.b, h2.d FROM h LEFT JOIN h2 ON h2.a = h.a AND h2.e <> 'x{}' WHERE h.b = {} ORDER BY 1, 2, 3",
                a % 3,
                b % 20
            ),
            18 => "SELECT h2.a, count(h.b) FROM h2 FULL JOIN h ON h.a = h2.a GROUP BY h2.a ORDER BY 1".to_string(),
            19 => format!("SELECT h2.a, h.c FROM h2 RIGHT JOIN h ON h.a = h2.a AND h2.d = {b} WHERE h.a IN ({a}, 70) ORDER BY 1, 2"),
            0 => format!("SELECT * FROM h WHERE a = {a} ORDER BY b"),
            1 => format!("SELECT * FROM h WHERE a = {a} AND b = {b}"),
            2 => format!("SELECT a, b FROM h WHERE a IN ({a}, {b}, 7) ORDER BY a, b"),
            3 => format!("SELECT * FROM r WHERE k >= {lo} AND k < {hi} ORDER BY k"),
            4 => format!("SELECT count(*), sum(v), min(k), max(k) FROM r WHERE k > {lo}"),
            5 => format!("SELECT * FROM r WHERE k = {lo}"),
            6 => "SELECT c, count(*) FROM h GROUP BY c ORDER BY c".to_string(),
            7 => format!(
                "SELECT h.a, h.b, r.v FROM h JOIN r ON r.k = h.a * 7 WHERE h.b < {b} ORDER BY 1, 2"
            ),
            8 => format!("SELECT * FROM h WHERE c = 'c{}' ORDER BY a, b", b % 9),
            9 => format!("SELECT k FROM r WHERE k <= {hi} ORDER BY k DESC LIMIT 5"),
            10 => format!("UPDATE h SET a = a + 1000 WHERE a = {a} AND b < 10"),
            11 => format!("DELETE FROM r WHERE k >= {lo} AND k < {}", lo + 5),
            12 => format!("UPDATE r SET k = k + 1000, v = v + 1 WHERE k = {lo}"),
            13 => format!(
                "INSERT INTO h VALUES ({}, {b}, 'n'), ({}, {b}, 'n')",
                a + 2000,
                a + 3000
            ),
            14 => format!(
                "SELECT count(DISTINCT a) FROM h WHERE b BETWEEN {b} AND {}",
                b + 20
            ),
            _ => format!(
                "SELECT * FROM plain p JOIN h ON h.a = p.a WHERE p.id < {a} ORDER BY 1, 3, 4"
            ),
        });
    }
    q
}

async fn load(c: &Client, split: bool) {
    for s in SCHEMA {
        c.batch_execute(s).await.unwrap();
    }
    let mut values = Vec::new();
    for a in 0..60 {
        for b in 0..20 {
            values.push(format!("({a}, {b}, 'c{}')", (a * b) % 9));
        }
    }
    c.batch_execute(&format!("INSERT INTO h VALUES {}", values.join(",")))
        .await
        .unwrap();
    let values: Vec<String> = (0..500)
        .map(|k| format!("({k}, {}, 't{}')", k * 3, k % 5))
        .collect();
    c.batch_execute(&format!("INSERT INTO r VALUES {}", values.join(",")))
        .await
        .unwrap();
    let values: Vec<String> = (0..40).map(|i| format!("({i}, {})", i * 2)).collect();
    c.batch_execute(&format!("INSERT INTO plain VALUES {}", values.join(",")))
        .await
        .unwrap();
    // h2: keys 10..70 (some beyond h's 0..60), a few rows each.
    let values: Vec<String> = (10..70)
        .flat_map(|a| (0..3).map(move |d| format!("({a}, {}, 'x{}')", d * 7, (a + d) % 3)))
        .collect();
    c.batch_execute(&format!("INSERT INTO h2 VALUES {}", values.join(",")))
        .await
        .unwrap();
    if split {
        c.simple_query("ALTER TABLE r SPLIT AT (100), (250), (400)")
            .await
            .unwrap();
    }
}

/// The routing-equivalence differential test: 1 shard vs 4 shards (hash and range tables, with
/// split ranges), then again after adding a shard online.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_shard_and_many_shards_agree() {
    let one = TestServer::start(1).await;
    let many = TestServer::start(4).await;
    let c1 = one.connect().await;
    let cn = many.connect().await;
    load(&c1, false).await;
    load(&cn, true).await;
    // The same server, everything above the scans at the coordinator (joins gathered).
    let cg = many.connect().await;
    cg.batch_execute("SET sharddb.pushdown = off")
        .await
        .unwrap();
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let mut compared = 0;
    for round in 0..2 {
        for q in corpus(&mut rng) {
            let a = rows(&c1, &q).await;
            let b = rows(&cn, &q).await;
            assert_eq!(a, b, "round {round}: {q}");
            if q.starts_with("SELECT") {
                assert_eq!(b, rows(&cg, &q).await, "round {round}, gathered: {q}");
            }
            compared += 1;
        }
        if round == 0 {
            let added = rows(&cn, "ALTER CLUSTER ADD SHARD").await.unwrap();
            assert_eq!(added[0][0].as_deref(), Some("added shard 4"));
        }
    }
    // Full contents agree at the end.
    for t in ["h", "r", "plain"] {
        let q = format!("SELECT * FROM {t} ORDER BY 1, 2");
        assert_eq!(rows(&c1, &q).await, rows(&cn, &q).await, "{t}");
    }
    assert!(compared >= 100);
    one.stop().await;
    many.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_shows_pruned_routes() {
    let s = TestServer::start(4).await;
    let c = s.connect().await;
    load(&c, true).await;
    let plan = |sql: &str| {
        let c = &c;
        let sql = format!("EXPLAIN {sql}");
        async move {
            rows(c, &sql)
                .await
                .unwrap()
                .into_iter()
                .map(|r| r[0].clone().unwrap())
                .collect::<Vec<_>>()
                .join("\n")
        }
    };
    let p = plan("SELECT * FROM h WHERE a = 5").await;
    assert!(
        p.contains("Scan on shard ") && p.contains("(shard key)"),
        "{p}"
    );
    let p = plan("SELECT * FROM h WHERE b = 5").await;
    assert!(p.contains("Scan on all shards"), "{p}");
    let p = plan("SELECT * FROM h JOIN h2 ON h.a = h2.a").await;
    assert!(
        p.contains("(co-located: each shard joins its own rows)"),
        "{p}"
    );
    let p = plan("SELECT * FROM h JOIN h2 ON h.b = h2.a").await;
    assert!(!p.contains("co-located"), "{p}");
    // h2 (180 rows) is shipped to h's (1200 rows) 4 shards: 540 rows instead of 1200.
    assert!(
        p.contains("(broadcast: the right input, est. 180 rows, is sent to 4 shards of the left input, est. 1200 rows)"),
        "{p}"
    );
    let p = plan("ANALYZE SELECT * FROM h JOIN h2 ON h.b = h2.a").await;
    // h.b in 10..19 (60 rows each) meets h2.a in 10..69 (3 rows each).
    assert!(p.contains("Execution: 1800 rows"), "{p}");
    assert_eq!(
        p.lines()
            .filter(|l| l.contains("⋈ 180 shipped rows (broadcast)"))
            .count(),
        4,
        "{p}"
    );
    // Two large inputs: gathered.
    let p = plan("SELECT * FROM h x JOIN h y ON x.b = y.b").await;
    assert!(!p.contains("broadcast") && !p.contains("co-located"), "{p}");
    let p = plan("ANALYZE SELECT * FROM h JOIN h2 ON h.a = h2.a WHERE h.a = 12").await;
    assert!(p.contains("Execution: 60 rows"), "{p}");
    assert_eq!(
        p.lines().filter(|l| l.contains("(co-located)")).count(),
        1,
        "{p}"
    );
    let p = plan("SELECT * FROM r WHERE k >= 420").await;
    assert!(
        p.contains("(range bounds)") && p.contains("Scan on shard "),
        "{p}"
    );
    let p = plan("SELECT * FROM r WHERE k < 50").await;
    assert!(
        p.contains("Point lookup") || p.contains("Scan on shard "),
        "{p}"
    );
    // EXPLAIN ANALYZE: rows and time per shard, only on the shards the route names.
    let p = plan("ANALYZE SELECT * FROM h WHERE a = 5").await;
    assert!(p.contains("Execution: 20 rows"), "{p}");
    let visits: Vec<&str> = p.lines().filter(|l| l.contains(" <- ")).collect();
    assert_eq!(visits.len(), 1, "{p}");
    assert!(visits[0].contains("<- h: 20 rows"), "{p}");
    let p = plan("ANALYZE SELECT * FROM h WHERE b = 5").await;
    assert!(p.contains("Execution: 60 rows"), "{p}");
    let rows_per_shard: Vec<u64> = p
        .lines()
        .filter(|l| l.contains(" <- "))
        .map(|l| {
            l.split(": ")
                .nth(1)
                .unwrap()
                .split(' ')
                .next()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert_eq!(rows_per_shard.len(), 4, "{p}");
    assert_eq!(rows_per_shard.iter().sum::<u64>(), 60, "{p}");
    for q in [
        "EXPLAIN ANALYZE DELETE FROM h",
        "EXPLAIN (ANALYZE) DELETE FROM h",
    ] {
        let e = c.simple_query(q).await.unwrap_err();
        assert!(db_error(&e).starts_with("0A000"), "{q}: {}", db_error(&e));
    }
    // The PostgreSQL option form; a self-join (not on the shard key) is not co-located.
    let p = plan(
        "(ANALYZE, COSTS OFF) SELECT * FROM h x JOIN h y ON x.b = y.b WHERE x.a = 5 AND y.a = 6",
    )
    .await;
    assert!(!p.contains("co-located"), "{p}");
    // One side is read and shipped to the shard of the other, which joins it there.
    assert_eq!(
        p.lines().filter(|l| l.contains(" <- h: 20 rows")).count(),
        1,
        "{p}"
    );
    assert_eq!(
        p.lines()
            .filter(|l| l.contains(" <- h ⋈ 20 shipped rows (broadcast): 20 rows"))
            .count(),
        1,
        "{p}"
    );
    // On the shard key it is co-located: one shard joins both sides.
    let p = plan("ANALYZE SELECT * FROM h x JOIN h y ON x.a = y.a WHERE x.a = 5 AND y.a = 5").await;
    assert!(p.contains("Execution: 400 rows"), "{p}");
    assert_eq!(
        p.lines()
            .filter(|l| l.contains("(co-located): 400 rows"))
            .count(),
        1,
        "{p}"
    );
    let p = plan("INSERT INTO h VALUES (1, 1000, 'x')").await;
    assert!(p.contains("(one shard: 1PC)"), "{p}");
    // Keys 1..40 of h land on several shards of the ring.
    let values: Vec<String> = (0..40).map(|a| format!("({a}, 5000, 'x')")).collect();
    let p = plan(&format!("INSERT INTO h VALUES {}", values.join(","))).await;
    assert!(p.contains("shards: 2PC)"), "{p}");
    s.stop().await;
}

/// Writers keep going while shards are added, split and removed; the final contents equal a
/// model built from the acknowledged statements only.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn online_placement_changes_under_writes() {
    let s = TestServer::start(2).await;
    let admin = s.connect().await;
    admin
        .batch_execute(
            "CREATE TABLE kv (k bigint PRIMARY KEY, v bigint) PARTITION BY HASH (k);
             CREATE TABLE rk (k bigint PRIMARY KEY, v bigint) PARTITION BY RANGE (k);",
        )
        .await
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..3i64 {
        let c = s.connect().await;
        let stop = stop.clone();
        writers.push(tokio::spawn(async move {
            // Each writer owns keys ≡ w (mod 3): the model per writer is exact.
            let mut model: BTreeMap<(&'static str, i64), i64> = BTreeMap::new();
            let mut rng = Rng(0x1234_5678 + w as u64);
            let mut refused = 0u64;
            let mut i = 0i64;
            while !stop.load(Ordering::Relaxed) || i < 300 {
                i += 1;
                let table = if rng.below(2) == 0 { "kv" } else { "rk" };
                let k = rng.below(400) * 3 + w;
                let v = rng.below(1000);
                let present = model.contains_key(&(table, k));
                let (sql, kind) = match (rng.below(3), present) {
                    (0 | 1, false) => (
                        format!("INSERT INTO {table} VALUES ({k}, {v})"),
                        Kind::Upsert,
                    ),
                    (0 | 1, true) => (
                        format!("UPDATE {table} SET v = {v} WHERE k = {k}"),
                        Kind::Upsert,
                    ),
                    _ => (format!("DELETE FROM {table} WHERE k = {k}"), Kind::Delete),
                };
                match c.simple_query(&sql).await {
                    Ok(_) => match kind {
                        Kind::Upsert => {
                            model.insert((table, k), v);
                        }
                        Kind::Delete => {
                            model.remove(&(table, k));
                        }
                    },
                    Err(e) => {
                        let msg = db_error(&e);
                        assert!(msg.starts_with("40001"), "{sql}: {msg}");
                        refused += 1;
                    }
                }
            }
            (model, refused)
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let changes = [
        "ALTER CLUSTER ADD SHARD",
        "ALTER TABLE rk SPLIT AT (300), (800)",
        "ALTER CLUSTER ADD SHARD",
        "ALTER CLUSTER REMOVE SHARD 0",
    ];
    for change in changes {
        let r = rows(&admin, change)
            .await
            .unwrap_or_else(|e| panic!("{change}: {e}"));
        assert_eq!(r.len(), 1, "{change}");
        let moved: i64 = r[0][3].as_deref().unwrap().parse().unwrap();
        assert!(moved > 0, "{change} moved nothing: {r:?}");
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut model = BTreeMap::new();
    for w in writers {
        let (m, refused) = w.await.unwrap();
        println!(
            "writer: {} keys, {refused} statements refused with 40001",
            m.len()
        );
        model.extend(m);
    }
    for table in ["kv", "rk"] {
        let got: Vec<(i64, i64)> = admin
            .query(&format!("SELECT k, v FROM {table} ORDER BY k"), &[])
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let want: Vec<(i64, i64)> = model
            .iter()
            .filter(|((t, _), _)| *t == table)
            .map(|((_, k), v)| (*k, *v))
            .collect();
        assert_eq!(got, want, "{table}");
        // Point lookups find every row on its owner.
        for (k, v) in want.iter().step_by(17) {
            let r = admin
                .query_one(&format!("SELECT v FROM {table} WHERE k = $1"), &[k])
                .await
                .unwrap();
            assert_eq!(r.get::<_, i64>(0), *v);
        }
    }
    let shards = rows(&admin, "SHOW SHARDS").await.unwrap();
    let ids: Vec<String> = shards.iter().map(|r| r[0].clone().unwrap()).collect();
    assert_eq!(ids, vec!["1", "2", "3"]);
    s.stop().await;
}

enum Kind {
    Upsert,
    Delete,
}

/// The map survives a restart, and a range table's splits with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shard_map_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = sharddb::config::ServerConfig {
        shards: 2,
        ..common::config(dir.path())
    };
    let server = sharddb::server::start(&config).await.unwrap();
    let url = format!("host=127.0.0.1 port={} user=x dbname=x", server.addr.port());
    let c = common::connect(&url).await;
    load(&c, true).await;
    rows(&c, "ALTER CLUSTER ADD SHARD").await.unwrap();
    let before_h = rows(&c, "SELECT * FROM h ORDER BY 1, 2").await.unwrap();
    let before_r = rows(&c, "SHOW RANGES").await.unwrap();
    drop(c);
    server.shutdown().await;
    let server = sharddb::server::start(&config).await.unwrap();
    let url = format!("host=127.0.0.1 port={} user=x dbname=x", server.addr.port());
    let c = common::connect(&url).await;
    assert_eq!(
        rows(&c, "SELECT * FROM h ORDER BY 1, 2").await.unwrap(),
        before_h
    );
    assert_eq!(rows(&c, "SHOW RANGES").await.unwrap(), before_r);
    let shards = rows(&c, "SHOW SHARDS").await.unwrap();
    assert_eq!(shards.len(), 3);
    server.shutdown().await;
}

/// A range that grows past `range_split_rows` splits itself at its median, in the background,
/// and its upper half moves to another shard; no row is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_split_themselves_when_they_grow() {
    let dir = tempfile::tempdir().unwrap();
    let config = sharddb::config::ServerConfig {
        range_split_rows: 300,
        ..common::config(dir.path())
    };
    let server = sharddb::server::start(&config).await.unwrap();
    let url = format!("host=127.0.0.1 port={} user=x dbname=x", server.addr.port());
    let c = common::connect(&url).await;
    c.batch_execute("CREATE TABLE log (k bigint PRIMARY KEY, v text) PARTITION BY RANGE (k)")
        .await
        .unwrap();
    for batch in 0..10 {
        let values: Vec<String> = (0..100)
            .map(|i| format!("({}, 'v')", batch * 100 + i))
            .collect();
        c.batch_execute(&format!("INSERT INTO log VALUES {}", values.join(",")))
            .await
            .unwrap();
    }
    let mut ranges = Vec::new();
    for _ in 0..100 {
        ranges = rows(&c, "SHOW RANGES").await.unwrap();
        if ranges.len() >= 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(ranges.len() >= 2, "no automatic split: {ranges:?}");
    let owners: std::collections::BTreeSet<_> = ranges.iter().map(|r| r[3].clone()).collect();
    assert!(
        owners.len() >= 2,
        "split ranges stayed on one shard: {ranges:?}"
    );
    let n: i64 = c
        .query_one("SELECT count(*) FROM log", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1000);
    let total: i64 = ranges
        .iter()
        .map(|r| r[4].as_deref().unwrap().parse::<i64>().unwrap())
        .sum();
    assert_eq!(total, 1000, "{ranges:?}");
    server.shutdown().await;
}

/// Regressions from the review of the placement work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placement_review_regressions() {
    let s = TestServer::start(4).await;
    let c = s.connect().await;
    c.batch_execute(
        "CREATE TABLE kv (k bigint PRIMARY KEY, v bigint);
         CREATE TABLE rk (k bigint PRIMARY KEY, v bigint) PARTITION BY RANGE (k);",
    )
    .await
    .unwrap();
    let values: Vec<String> = (0..500).map(|k| format!("({k}, {k})")).collect();
    for t in ["kv", "rk"] {
        c.batch_execute(&format!("INSERT INTO {t} VALUES {}", values.join(",")))
            .await
            .unwrap();
    }
    // A snapshot older than a data move never sees moved rows twice (or not at all): it
    // either reads the right count or is told to retry.
    let rr = s.connect().await;
    rr.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT 1")
        .await
        .unwrap();
    let ser = s.connect().await;
    ser.batch_execute("BEGIN ISOLATION LEVEL SERIALIZABLE")
        .await
        .unwrap();
    let _ = ser
        .query("SELECT v FROM kv WHERE k = 7", &[])
        .await
        .unwrap();
    rows(&c, "ALTER CLUSTER ADD SHARD").await.unwrap();
    match rr.query_one("SELECT count(*) FROM kv", &[]).await {
        Ok(r) => assert_eq!(r.get::<_, i64>(0), 500),
        Err(e) => assert!(db_error(&e).starts_with("40001"), "{}", db_error(&e)),
    }
    rr.batch_execute("ROLLBACK").await.unwrap();
    // SERIALIZABLE read locks stayed on the old owner: the transaction cannot go on.
    let e = ser
        .execute("UPDATE kv SET v = 0 WHERE k = 7", &[])
        .await
        .unwrap_err();
    assert!(db_error(&e).starts_with("40001"), "{}", db_error(&e));
    ser.batch_execute("ROLLBACK").await.unwrap();
    // A range table never split lives on the first shard without a map entry: removing that
    // shard must move it, not delete it.
    rows(&c, "ALTER CLUSTER REMOVE SHARD 0").await.unwrap();
    let n: i64 = c
        .query_one("SELECT count(*) FROM rk", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 500);
    let r = c
        .query_one("SELECT v FROM rk WHERE k = 42", &[])
        .await
        .unwrap();
    assert_eq!(r.get::<_, i64>(0), 42);
    let n: i64 = c
        .query_one("SELECT count(*) FROM kv", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 500);
    // A partition-column update may move rows: EXPLAIN does not promise 1PC.
    let p = rows(&c, "EXPLAIN UPDATE kv SET k = k + 1000 WHERE k = 3")
        .await
        .unwrap();
    assert!(
        p[0][0]
            .as_deref()
            .unwrap()
            .contains("1PC if the rows are on one shard"),
        "{p:?}"
    );
    // CREATE INDEX and a unique index over moved rows see each row once.
    c.batch_execute("CREATE UNIQUE INDEX kv_v ON kv (v)")
        .await
        .unwrap();
    let n: i64 = c
        .query_one("SELECT count(*) FROM kv WHERE v >= 100", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 400);
    s.stop().await;
}

/// Joins run on the shards with values only the coordinator has: `$n` parameters and outer
/// references in the join keys (bound before shipping), and statements other than queries
/// (INSERT ... SELECT keeps co-located joins). Each answer must equal the gathered one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shard_joins_with_parameters_and_outer_references() {
    let s = TestServer::start(4).await;
    let c = s.connect().await;
    load(&c, true).await;
    let gathered = s.connect().await;
    gathered
        .batch_execute("SET sharddb.pushdown = off")
        .await
        .unwrap();
    async fn count(c: &Client, sql: &str, p: i64) -> Result<i64, String> {
        let row = c.query_one(sql, &[&p]).await.map_err(|e| db_error(&e))?;
        Ok(row.get(0))
    }
    for (sql, plan_has) in [
        // Broadcast: plain (40 rows) is shipped to h's shards; the key holds $1.
        (
            "SELECT count(*) FROM h JOIN plain p ON p.a = h.a + $1",
            "broadcast",
        ),
        // Co-located on the shard key, with a second key holding $1.
        (
            "SELECT count(*) FROM h JOIN h2 ON h.a = h2.a AND h2.d = h.b + $1",
            "co-located",
        ),
        // Outer join preserving the shipped side, $1 in the key.
        (
            "SELECT count(*) FROM plain p LEFT JOIN h ON h.b = p.id - $1",
            "broadcast",
        ),
    ] {
        let explain = rows(&c, &format!("EXPLAIN {}", sql.replace("$1", "1")))
            .await
            .unwrap();
        assert!(
            explain
                .iter()
                .any(|r| r[0].as_deref().unwrap_or("").contains(plan_has)),
            "{sql}: {explain:?}"
        );
        for p in [0i64, 1, 3] {
            let on = count(&c, sql, p).await.unwrap();
            let off = count(&gathered, sql, p).await.unwrap();
            assert_eq!(on, off, "{sql} with $1 = {p}");
            assert!(on > 0, "{sql} with $1 = {p}: the test must match rows");
        }
    }
    // An outer reference in a join key of a correlated subquery.
    let q = "SELECT p.id, (SELECT count(*) FROM h JOIN h2 ON h2.d = h.b + p.id) \
             FROM plain p WHERE p.id < 4 ORDER BY 1";
    let on = rows(&c, q).await.unwrap();
    assert_eq!(on, rows(&gathered, q).await.unwrap(), "{q}");
    assert!(on.iter().any(|r| r[1].as_deref() != Some("0")), "{on:?}");
    // A shipped input planned small (at most 45 rows) that turns out larger than the broadcast
    // cap (16 MiB) is gathered instead, with the same answer.
    c.batch_execute("CREATE TABLE wide (id bigint PRIMARY KEY, pad text)")
        .await
        .unwrap();
    let pad = "x".repeat(400_000);
    for chunk in 0..9 {
        let values: Vec<String> = (0..5)
            .map(|i| format!("({}, '{pad}')", chunk * 5 + i))
            .collect();
        c.batch_execute(&format!("INSERT INTO wide VALUES {}", values.join(",")))
            .await
            .unwrap();
    }
    let q = "SELECT count(*), sum(length(w.pad)) \
             FROM h JOIN (SELECT id, pad FROM wide LIMIT 45) w ON w.id = h.b WHERE h.a = 3";
    let plan = rows(&c, &format!("EXPLAIN ANALYZE {q}")).await.unwrap();
    let text: Vec<&str> = plan.iter().map(|r| r[0].as_deref().unwrap_or("")).collect();
    assert!(
        text.iter()
            .any(|l| l.contains("(broadcast: the right input")),
        "{text:?}"
    );
    assert!(
        text.iter()
            .any(|l| l.contains("broadcast not used: the shipped input is 45 rows")),
        "{text:?}"
    );
    let on = rows(&c, q).await.unwrap();
    assert_eq!(on, rows(&gathered, q).await.unwrap());
    assert_eq!(on[0][0].as_deref(), Some("20"), "{on:?}");
    // INSERT ... SELECT over a co-located join.
    c.batch_execute(
        "CREATE TABLE hj (a bigint, b bigint, d bigint, PRIMARY KEY (a, b, d)) PARTITION BY HASH (a);
         INSERT INTO hj SELECT h.a, h.b, h2.d FROM h JOIN h2 ON h.a = h2.a",
    )
    .await
    .unwrap();
    let q = "SELECT count(*), sum(a), sum(b), sum(d) FROM hj";
    let want = "SELECT count(*), sum(h.a), sum(h.b), sum(h2.d) FROM h JOIN h2 ON h.a = h2.a";
    assert_eq!(
        rows(&c, q).await.unwrap(),
        rows(&gathered, want).await.unwrap()
    );
    s.stop().await;
}
