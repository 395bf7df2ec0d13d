//! Memory limits through the front door: a statement that would materialize more rows than
//! `--statement-mem-mb` allows fails with 53200 and a hint, the connection stays usable, nothing
//! committed is lost, and a table far larger than the limit can still be read in pieces and
//! dropped (DROP TABLE deletes page by page).

mod common;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_memory_limit_is_an_error_not_an_outage() {
    let dir = tempfile::tempdir().unwrap();
    let config = sharddb::config::ServerConfig {
        statement_mem_mb: 1,
        ..common::config(dir.path())
    };
    let server = sharddb::server::start(&config).await.unwrap();
    let client = common::connect(&format!(
        "host=127.0.0.1 port={} user=x",
        server.addr.port()
    ))
    .await;
    client
        .batch_execute("CREATE TABLE big (id int PRIMARY KEY, pad text NOT NULL)")
        .await
        .unwrap();
    // ~3 MiB of rows, three times the limit, inserted in statements well under it.
    for chunk in 0..30 {
        let values: Vec<String> = (0..200)
            .map(|i| format!("({}, '{}')", chunk * 200 + i, "x".repeat(400)))
            .collect();
        client
            .batch_execute(&format!("INSERT INTO big VALUES {}", values.join(",")))
            .await
            .unwrap();
    }
    let err = client.query("SELECT * FROM big", &[]).await.unwrap_err();
    let db = err.as_db_error().expect("an ErrorResponse");
    assert_eq!(db.code().code(), "53200", "{db:?}");
    assert!(db.hint().unwrap_or("").contains("--statement-mem-mb"));
    // A cross join that would explode is stopped the same way.
    let err = client
        .query("SELECT count(*) FROM big a, big b WHERE a.id < 10", &[])
        .await
        .unwrap_err();
    assert_eq!(err.as_db_error().unwrap().code().code(), "53200");
    // The connection is fine, and the data can be read in pieces under the limit.
    let mut seen = 0i64;
    for lo in (0..6000).step_by(1000) {
        let row = client
            .query_one(
                "SELECT count(*) FROM big WHERE id >= $1 AND id < $1 + 1000",
                &[&lo],
            )
            .await;
        // The filter (with its parameter bound) runs on the shards, so only the 1000 matching
        // rows are materialized: about 0.5 MiB, under the limit.
        seen += row.unwrap().get::<_, i64>(0);
    }
    assert_eq!(seen, 6000);
    // Dropping a table larger than the limit works (paged deletes) and frees the name.
    client.batch_execute("DROP TABLE big").await.unwrap();
    client
        .batch_execute("CREATE TABLE big (id int PRIMARY KEY)")
        .await
        .unwrap();
    let row = client
        .query_one("SELECT count(*) FROM big", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 0);
    server.shutdown().await;
}
