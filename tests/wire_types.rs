//! Extended-protocol tests with tokio-postgres: prepared statements with parameters of every
//! supported type, binary results, error codes, and the connection surviving errors.

mod common;

use chrono::{NaiveDate, NaiveDateTime};
use rust_decimal::Decimal;
use std::str::FromStr;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_statements_roundtrip_every_type() {
    let server = common::TestServer::start(4).await;
    let client = server.connect().await;
    client
        .batch_execute(
            "CREATE TABLE t (
                id bigint PRIMARY KEY, s smallint, i integer, f real, d double precision,
                n numeric(12,3), b boolean, t text, v varchar(10), c char(4), by bytea,
                dt date, ts timestamp, u uuid)",
        )
        .await
        .unwrap();
    let insert = client
        .prepare(
            "INSERT INTO t VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        )
        .await
        .unwrap();
    let date = NaiveDate::from_ymd_opt(2024, 2, 29).unwrap();
    let ts = NaiveDateTime::parse_from_str("2024-02-29 13:14:15.123456", "%Y-%m-%d %H:%M:%S%.f")
        .unwrap();
    let u = uuid::Uuid::from_str("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11").unwrap();
    let n = Decimal::from_str("12345.678").unwrap();
    for id in 0..20i64 {
        client
            .execute(
                &insert,
                &[
                    &id,
                    &(id as i16 - 10),
                    &(id as i32 * 1000),
                    &1.5f32,
                    &-2.25f64,
                    &n,
                    &(id % 2 == 0),
                    &format!("text {id}"),
                    &"short",
                    &"ab",
                    &vec![0u8, 1, 255],
                    &date,
                    &ts,
                    &u,
                ],
            )
            .await
            .unwrap();
    }
    let select = client
        .prepare("SELECT * FROM t WHERE id = $1")
        .await
        .unwrap();
    let row = client.query_one(&select, &[&7i64]).await.unwrap();
    assert_eq!(row.get::<_, i64>("id"), 7);
    assert_eq!(row.get::<_, i16>("s"), -3);
    assert_eq!(row.get::<_, i32>("i"), 7000);
    assert_eq!(row.get::<_, f32>("f"), 1.5);
    assert_eq!(row.get::<_, f64>("d"), -2.25);
    assert_eq!(row.get::<_, Decimal>("n"), n);
    assert!(!row.get::<_, bool>("b"));
    assert_eq!(row.get::<_, String>("t"), "text 7");
    assert_eq!(row.get::<_, String>("v"), "short");
    assert_eq!(row.get::<_, String>("c"), "ab  ");
    assert_eq!(row.get::<_, Vec<u8>>("by"), vec![0u8, 1, 255]);
    assert_eq!(row.get::<_, NaiveDate>("dt"), date);
    assert_eq!(row.get::<_, NaiveDateTime>("ts"), ts);
    assert_eq!(row.get::<_, uuid::Uuid>("u"), u);

    // Parameters in every position: ranges, IN lists, LIMIT, NULL.
    let rows = client
        .query(
            "SELECT id FROM t WHERE i BETWEEN $1 AND $2 AND b = $3 ORDER BY id DESC LIMIT $4",
            &[&2000i32, &12000i32, &true, &3i64],
        )
        .await
        .unwrap();
    let ids: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(ids, vec![12, 10, 8]);
    let none: Option<String> = None;
    let rows = client
        .query("SELECT count(*) FROM t WHERE t = $1", &[&none])
        .await
        .unwrap();
    assert_eq!(rows[0].get::<_, i64>(0), 0);

    // UPDATE / DELETE with parameters and RETURNING.
    let updated = client
        .query(
            "UPDATE t SET v = $1 WHERE id >= $2 RETURNING id",
            &[&"changed", &15i64],
        )
        .await
        .unwrap();
    assert_eq!(updated.len(), 5);
    let deleted = client
        .execute("DELETE FROM t WHERE v = $1", &[&"changed"])
        .await
        .unwrap();
    assert_eq!(deleted, 5);
    let count: i64 = client
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 15);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_carry_sqlstate_and_connection_survives() {
    let server = common::TestServer::start(2).await;
    let client = server.connect().await;
    client
        .batch_execute("CREATE TABLE k (id int PRIMARY KEY, name text NOT NULL)")
        .await
        .unwrap();
    client
        .execute("INSERT INTO k VALUES ($1, $2)", &[&1i32, &"a"])
        .await
        .unwrap();
    let cases: &[(&str, &str)] = &[
        ("SELEC 1", "42601"),
        ("SELECT * FROM missing", "42P01"),
        ("SELECT nope FROM k", "42703"),
        ("CREATE TABLE k (x int)", "42P07"),
        ("SELECT 1 / 0", "22012"),
        ("SELECT 2147483647 + 1", "22003"),
        ("SELECT 'abc'::int", "22P02"),
        ("INSERT INTO k VALUES (1, 'dup')", "23505"),
        ("INSERT INTO k VALUES (2, NULL)", "23502"),
        ("SELECT * FROM k WHERE 1", "42804"),
        ("CREATE TABLE u (a int CHECK (a > 0))", "0A000"),
    ];
    for (sql, code) in cases {
        let err = client.simple_query(sql).await.unwrap_err();
        let db = err.as_db_error().unwrap_or_else(|| panic!("{sql}: {err}"));
        assert_eq!(db.code().code(), *code, "{sql}: {}", db.message());
        // Still usable after every error.
        let n: i64 = client
            .query_one("SELECT count(*) FROM k", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 1);
    }
    // Syntax errors report a cursor position.
    let err = client.simple_query("SELECT * FORM k").await.unwrap_err();
    assert!(matches!(
        err.as_db_error().and_then(|d| d.position()),
        Some(tokio_postgres::error::ErrorPosition::Original(_))
    ));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_spread_over_shards_and_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = sharddb::config::ServerConfig {
        memtable_mb: 1,
        ..common::config(dir.path())
    };
    let server = sharddb::server::start(&config).await.unwrap();
    let url = format!("host=127.0.0.1 port={} user=x", server.addr.port());
    let client = common::connect(&url).await;
    client
        .batch_execute(
            "CREATE TABLE big (id int PRIMARY KEY, pad text); CREATE TABLE nokey (v int)",
        )
        .await
        .unwrap();
    let stmt = client
        .prepare("INSERT INTO big VALUES ($1, $2)")
        .await
        .unwrap();
    for i in 0..2000i32 {
        client
            .execute(&stmt, &[&i, &"x".repeat(200)])
            .await
            .unwrap();
    }
    client
        .batch_execute("INSERT INTO nokey SELECT id FROM big WHERE id < 100")
        .await
        .unwrap();
    drop(client);
    server.shutdown().await;
    // Every shard holds part of the table.
    for s in 0..4 {
        let shard_dir = dir.path().join(format!("shard-{s}"));
        let size: u64 = std::fs::read_dir(&shard_dir)
            .unwrap()
            .flatten()
            .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
            .sum();
        assert!(size > 50_000, "shard {s} holds only {size} bytes");
    }
    let server = sharddb::server::start(&config).await.unwrap();
    let url = format!("host=127.0.0.1 port={} user=x", server.addr.port());
    let client = common::connect(&url).await;
    let row = client
        .query_one("SELECT count(*), sum(id) FROM big", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 2000);
    let row = client
        .query_one("SELECT count(*) FROM nokey", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 100);
    server.shutdown().await;
}
