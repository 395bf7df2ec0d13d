//! Bad input never takes the server down: a seeded stream of broken, mutated and nonsense SQL is
//! sent through the real server, over both the simple and the extended protocol. Every statement
//! must either succeed or fail with an ErrorResponse carrying a SQLSTATE (never a dropped
//! connection, which is what a panic in the handler looks like to a client), the connection must
//! stay usable after each error, and a table the stream never names must be unchanged at the end.
//!
//! `SHARDDB_FUZZ_CASES` (default 600) and `SHARDDB_FUZZ_SEED` widen or reproduce a run.

mod common;

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};

/// Statements that are valid on the tables this test creates; mutations of them reach deep into
/// the binder and executor rather than stopping in the parser.
const SEEDS: &[&str] = &[
    "SELECT a, b FROM t WHERE a > 3 ORDER BY b DESC NULLS LAST LIMIT 5 OFFSET 1",
    "SELECT count(*), sum(a), avg(c), min(b), max(d) FROM t GROUP BY b HAVING count(*) > 1",
    "SELECT t.a, u.y FROM t LEFT JOIN u ON t.a = u.x WHERE u.y IS NULL",
    "SELECT * FROM t FULL JOIN u ON t.a = u.x ORDER BY 1, 2",
    "SELECT a FROM t WHERE a IN (SELECT x FROM u WHERE u.x = t.a) AND EXISTS (SELECT 1 FROM u)",
    "SELECT CASE WHEN a % 2 = 0 THEN 'even' ELSE 'odd' END, coalesce(b, 'none') FROM t",
    "SELECT a::numeric / 3, c * 1e10, -a, abs(c), round(c, 2) FROM t",
    "SELECT b || 'x', upper(b), substr(b, 2, 3), length(b), b LIKE 'a%' FROM t",
    "WITH w AS (SELECT a, b FROM t) SELECT * FROM w UNION SELECT x, y FROM u",
    "SELECT DISTINCT b FROM t INTERSECT SELECT y FROM u EXCEPT SELECT 'q'",
    "INSERT INTO t VALUES (100, 'z', 1.5, DATE '2024-01-01') RETURNING a, b",
    "INSERT INTO u SELECT a, b FROM t WHERE a < 3",
    "UPDATE t SET c = c + 1, b = upper(b) WHERE a BETWEEN 2 AND 4",
    "DELETE FROM u WHERE x IN (1, 2, 3)",
    "CREATE TABLE IF NOT EXISTS v (k int PRIMARY KEY, s text DEFAULT 'd' NOT NULL)",
    "CREATE VIEW tv AS SELECT a, b FROM t WHERE a > 1",
    "DROP TABLE IF EXISTS v",
    "SELECT '2024-02-29'::date + 1, '1 2'::int, 'abc'::bytea, gen_random_uuid()",
    "SELECT 9223372036854775807 + 1, 1 / 0, 2147483647::int * 2, (-32768)::smallint",
    "VALUES (1, 'a'), (2, NULL) ORDER BY 1",
];

/// Tokens spliced into statements: keywords, punctuation, odd literals and identifiers.
const TOKENS: &[&str] = &[
    "SELECT",
    "FROM",
    "WHERE",
    "(",
    ")",
    ",",
    "'",
    "\"",
    ";",
    "*",
    "::",
    "NULL",
    "t",
    "u",
    "a",
    "x",
    "JOIN",
    "ON",
    "GROUP BY",
    "ORDER BY",
    "HAVING",
    "UNION",
    "1e400",
    "-",
    "/ 0",
    "$1",
    "$99",
    "CASE",
    "END",
    "IN",
    "EXISTS",
    "(SELECT",
    "VALUES",
    "INSERT INTO",
    "DEFAULT",
    "99999999999999999999999999999999",
    "'\\x00'",
    "E'\\xff'",
    "NOT",
    "AND",
    "OR",
    "IS",
    "::int",
    "::text",
    "::numeric(3,1)",
    "::date",
    "::uuid",
    "LIMIT -1",
    "OFFSET",
    "AS",
    "DISTINCT",
    "count(",
    "sum(",
    "max(DISTINCT",
    "t.*",
    "ROW(1,2)",
    "ARRAY[1]",
    "[1]",
    "@",
    "#",
    "~~",
    "U&'\\0041'",
    "$$",
    "/*",
    "--",
    "\u{fffd}",
    "é",
    "\t",
    "\n",
];

fn mutate(rng: &mut StdRng, seed: &str) -> String {
    let mut words: Vec<String> = seed.split(' ').map(str::to_string).collect();
    for _ in 0..rng.random_range(1..4) {
        let i = rng.random_range(0..=words.len());
        match rng.random_range(0..5) {
            0 => words.insert(i, TOKENS.choose(rng).unwrap().to_string()),
            1 if i < words.len() => {
                words.remove(i);
            }
            2 if i < words.len() => words[i] = TOKENS.choose(rng).unwrap().to_string(),
            3 => words.truncate(i.max(1)),
            _ if i < words.len() => {
                let j = rng.random_range(0..words.len());
                words.swap(i, j);
            }
            _ => {}
        }
    }
    words.join(" ")
}

fn nonsense(rng: &mut StdRng) -> String {
    let n = rng.random_range(1..12);
    (0..n)
        .map(|_| *TOKENS.choose(rng).unwrap())
        .collect::<Vec<_>>()
        .join(" ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_never_breaks_the_server() {
    let cases: usize = std::env::var("SHARDDB_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(600);
    let seed: u64 = std::env::var("SHARDDB_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed_0002);
    println!("fuzz seed {seed}, {cases} cases");
    let server = common::TestServer::start(4).await;
    let client = server.connect().await;
    client
        .batch_execute(
            "CREATE TABLE t (a int PRIMARY KEY, b text, c double precision, d date);
             CREATE TABLE u (x bigint, y text);
             CREATE TABLE canary (id int PRIMARY KEY, note text NOT NULL);
             INSERT INTO t VALUES (1, 'ab', 1.5, '2024-01-01'), (2, NULL, -2, NULL),
                                  (3, 'cd', 0, '1999-12-31'), (4, 'ab', 1e-3, '2000-02-29');
             INSERT INTO u VALUES (1, 'ab'), (3, NULL), (5, 'zz');
             INSERT INTO canary VALUES (1, 'one'), (2, 'two'), (3, 'three');",
        )
        .await
        .unwrap();
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut ok, mut errors) = (0usize, 0usize);
    for case in 0..cases {
        let sql = if rng.random_bool(0.1) {
            SEEDS.choose(&mut rng).unwrap().to_string()
        } else if rng.random_bool(0.75) {
            let s = SEEDS.choose(&mut rng).unwrap();
            mutate(&mut rng, s)
        } else {
            nonsense(&mut rng)
        };
        // Alternate protocols: simple query, and Parse/Bind/Execute with no parameters.
        let result = if case % 2 == 0 {
            client.simple_query(&sql).await.map(|_| ())
        } else {
            client.query(sql.as_str(), &[]).await.map(|_| ())
        };
        match result {
            Ok(()) => ok += 1,
            // The client itself refuses some statements (a `$1` with no parameter supplied).
            Err(e) if e.as_db_error().is_none() && !e.is_closed() => errors += 1,
            Err(e) => {
                let db = e.as_db_error().unwrap_or_else(|| {
                    panic!("case {case}: {sql:?} broke the connection instead of erroring: {e}")
                });
                assert_eq!(
                    db.code().code().len(),
                    5,
                    "case {case}: {sql:?}: bad SQLSTATE"
                );
                assert_ne!(
                    db.code().code(),
                    "XX000",
                    "case {case}: {sql:?} hit an internal error: {}",
                    db.message()
                );
                errors += 1;
            }
        }
        let row = client
            .query_one("SELECT 1", &[])
            .await
            .unwrap_or_else(|e| panic!("case {case}: connection unusable after {sql:?}: {e}"));
        assert_eq!(row.get::<_, i32>(0), 1);
    }
    println!("{ok} statements succeeded, {errors} failed cleanly");
    let rows = client
        .query("SELECT id, note FROM canary ORDER BY id", &[])
        .await
        .unwrap();
    let canary: Vec<(i32, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        canary,
        vec![(1, "one".into()), (2, "two".into()), (3, "three".into())]
    );
    server.stop().await;
}

/// Garbage on the socket (before startup, and a startup packet with absurd lengths) closes that
/// connection only; the server keeps serving everyone else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_garbage_only_closes_that_connection() {
    use tokio::io::AsyncWriteExt;
    let server = common::TestServer::start(2).await;
    let addr = server.server.as_ref().unwrap().addr;
    let mut rng = StdRng::seed_from_u64(7);
    let mut packets: Vec<Vec<u8>> = vec![
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        vec![0xff; 64],
        vec![0, 0, 0, 8, 4, 210, 22, 47], // SSLRequest, then nothing
        vec![0x7f, 0xff, 0xff, 0xff, 0, 3, 0, 0], // startup claiming a 2 GiB packet
        vec![0, 0, 0, 2],                 // length shorter than its own header
    ];
    for _ in 0..20 {
        let n = rng.random_range(1..200);
        packets.push((0..n).map(|_| rng.random()).collect());
    }
    for p in packets {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let _ = s.write_all(&p).await;
        let _ = s.shutdown().await;
        drop(s);
        let client = server.connect().await;
        let row = client.query_one("SELECT 1", &[]).await.unwrap();
        assert_eq!(row.get::<_, i32>(0), 1);
    }
    server.stop().await;
}
