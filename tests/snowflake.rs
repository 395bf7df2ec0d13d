//! Snowflake ids through a real server: `--node-id` reaches every id the node makes (BIGSERIAL
//! defaults, `snowflake_id()`, transaction ids, all from one generator), `INSERT ... RETURNING`
//! returns the stored ids, `snowflake_timestamp` is the wall clock, and an out-of-range node id
//! is refused at startup. The SQL surface itself is `sql-tests/snowflake.slt`.

mod common;

use sharddb::id::snowflake::decode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_id_reaches_row_ids_functions_and_txids() {
    let dir = tempfile::tempdir().unwrap();
    let config = sharddb::config::ServerConfig {
        node_id: 5,
        ..common::config(dir.path())
    };
    let server = sharddb::server::start(&config).await.unwrap();
    let client = common::connect(&format!(
        "host=127.0.0.1 port={} user=x",
        server.addr.port()
    ))
    .await;
    client
        .batch_execute("CREATE TABLE t (id BIGSERIAL PRIMARY KEY, v int NOT NULL)")
        .await
        .unwrap();

    // Extended protocol, one row per statement: RETURNING gives the generated id.
    let insert = client
        .prepare("INSERT INTO t (v) VALUES ($1) RETURNING id")
        .await
        .unwrap();
    let mut returned = Vec::new();
    for v in 0..200i32 {
        returned.push(
            client
                .query_one(&insert, &[&v])
                .await
                .unwrap()
                .get::<_, i64>(0),
        );
    }
    assert!(
        returned.windows(2).all(|w| w[0] < w[1]),
        "ids not increasing"
    );
    assert!(returned.iter().all(|id| decode(*id).unwrap().node == 5));
    let stored: Vec<i64> = client
        .query("SELECT id FROM t ORDER BY v", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(stored, returned);

    // Multi-row RETURNING, in VALUES order.
    let rows = client
        .query(
            "INSERT INTO t (v) VALUES (1000), (1001), (1002) RETURNING id, v",
            &[],
        )
        .await
        .unwrap();
    let ids: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    assert!(ids[0] > *returned.last().unwrap());
    assert!(ids.windows(2).all(|w| w[0] < w[1]));

    // snowflake_id() and its decoders, against this process's clock.
    let before = chrono::Utc::now().naive_utc();
    let row = client
        .query_one(
            "SELECT snowflake_id(), snowflake_node(snowflake_id()), \
             snowflake_timestamp(snowflake_id())",
            &[],
        )
        .await
        .unwrap();
    let after = chrono::Utc::now().naive_utc();
    let id: i64 = row.get(0);
    let node: i32 = row.get(1);
    let ts: chrono::NaiveDateTime = row.get(2);
    assert_eq!(decode(id).unwrap().node, 5);
    assert_eq!(node, 5);
    // Millisecond precision: the id's time is the clock truncated to the millisecond.
    let slack = chrono::Duration::milliseconds(1);
    assert!(
        before - slack <= ts && ts <= after,
        "{before} <= {ts} <= {after}"
    );

    // Transaction ids come from the same generator: node 5, and never equal to a row id made
    // in the same millisecond (they share the sequence).
    client.batch_execute("BEGIN").await.unwrap();
    let row_id: i64 = client
        .query_one("INSERT INTO t (v) VALUES (2000) RETURNING id", &[])
        .await
        .unwrap()
        .get(0);
    let txids: Vec<i64> = client
        .query("SELECT txid FROM sharddb_transactions", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    client.batch_execute("COMMIT").await.unwrap();
    assert!(!txids.is_empty());
    for txid in txids {
        assert_eq!(decode(txid).unwrap().node, 5);
        assert!(
            txid < row_id,
            "the transaction began before its row id was made"
        );
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_id_out_of_range_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = sharddb::config::ServerConfig {
        node_id: 1024,
        ..common::config(dir.path())
    };
    let err = match sharddb::server::start(&config).await {
        Ok(_) => panic!("node id 1024 accepted"),
        Err(e) => e,
    };
    assert!(
        err.contains("--node-id must be between 0 and 1023"),
        "{err}"
    );
}

#[test]
fn node_id_flag() {
    let dir = tempfile::tempdir().unwrap();
    // Out of range on the command line: clap's range check, exit code 2.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sharddb"))
        .args(["serve", "--listen", "127.0.0.1:0", "--node-id", "1024"])
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("1024 is not in 0..=1023"), "{stderr}");

    // In range: every id the server makes carries it.
    let server = common::spawn_server(dir.path(), &["--node-id", "1023"]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = common::connect(&format!("host=127.0.0.1 port={} user=x", server.port)).await;
        let node: i32 = client
            .query_one("SELECT snowflake_node(snowflake_id())", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(node, 1023);
    });
}
