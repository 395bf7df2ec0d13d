//! The storage system views through the front door (tokio-postgres, extended protocol, binary
//! results): their column names and type OIDs as clients see them, values that decode as those
//! types, counters that move when rows are written, and the read-only errors.

mod common;

use tokio_postgres::Client;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::Type;

const SHARDS: usize = 4;

const STORAGE_COLUMNS: &[(&str, Type)] = &[
    ("shard", Type::INT4),
    ("memtable_bytes", Type::INT8),
    ("immutable_memtables", Type::INT4),
    ("wal_bytes", Type::INT8),
    ("wal_segments", Type::INT4),
    ("wal_records", Type::INT8),
    ("wal_syncs", Type::INT8),
    ("sstables", Type::INT4),
    ("sstable_bytes", Type::INT8),
    ("bloom_checks", Type::INT8),
    ("bloom_negatives", Type::INT8),
    ("bloom_false_positives", Type::INT8),
    ("bloom_hit_rate", Type::FLOAT8),
    ("cache_hits", Type::INT8),
    ("cache_misses", Type::INT8),
    ("cache_hit_rate", Type::FLOAT8),
    ("cache_bytes", Type::INT8),
    ("cache_capacity", Type::INT8),
    ("flushes", Type::INT8),
    ("compactions", Type::INT8),
    ("write_stalls", Type::INT8),
    ("write_amplification", Type::FLOAT8),
    ("space_amplification", Type::FLOAT8),
];

const LEVEL_COLUMNS: &[(&str, Type)] = &[
    ("shard", Type::INT4),
    ("level", Type::INT4),
    ("files", Type::INT4),
    ("bytes", Type::INT8),
];

async fn assert_columns(client: &Client, view: &str, expected: &[(&str, Type)]) {
    let stmt = client
        .prepare(&format!("SELECT * FROM {view}"))
        .await
        .unwrap();
    let actual: Vec<(String, Type)> = stmt
        .columns()
        .iter()
        .map(|c| (c.name().to_string(), c.type_().clone()))
        .collect();
    let expected: Vec<(String, Type)> = expected
        .iter()
        .map(|(n, t)| (n.to_string(), t.clone()))
        .collect();
    assert_eq!(actual, expected, "columns of {view}");
}

/// Sum of one bigint column over all shards.
async fn total(client: &Client, column: &str) -> i64 {
    let row = client
        .query_one(
            &format!("SELECT sum({column})::bigint FROM sharddb_storage"),
            &[],
        )
        .await
        .unwrap();
    row.get(0)
}

async fn insert_rows(client: &Client, from: i64, count: i64) {
    let insert = client
        .prepare("INSERT INTO kv VALUES ($1, $2)")
        .await
        .unwrap();
    for k in from..from + count {
        client
            .execute(&insert, &[&k, &format!("value {k}")])
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn columns_have_the_documented_names_and_types() {
    let server = common::TestServer::start(SHARDS).await;
    let client = server.connect().await;
    assert_columns(&client, "sharddb_storage", STORAGE_COLUMNS).await;
    assert_columns(&client, "sharddb_storage_levels", LEVEL_COLUMNS).await;

    // Every value decodes (binary format) as its column's type; rate columns may be NULL.
    let rows = client
        .query("SELECT * FROM sharddb_storage", &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), SHARDS);
    for (i, row) in rows.iter().enumerate() {
        for (idx, (name, ty)) in STORAGE_COLUMNS.iter().enumerate() {
            match *ty {
                Type::INT4 => {
                    let v: i32 = row.get(idx);
                    assert!(v >= 0, "{name} = {v}");
                }
                Type::INT8 => {
                    let v: i64 = row.get(idx);
                    assert!(v >= 0, "{name} = {v}");
                }
                _ => {
                    let v: Option<f64> = row.get(idx);
                    assert!(v.is_none_or(|v| v >= 0.0), "{name} = {v:?}");
                }
            }
        }
        assert_eq!(row.get::<_, i32>("shard"), i as i32, "ordered by shard");
    }

    // A parameter compared with `shard` is inferred as integer, like any int4 column.
    let by_shard = client
        .prepare("SELECT level, files, bytes FROM sharddb_storage_levels WHERE shard = $1")
        .await
        .unwrap();
    assert_eq!(by_shard.params(), &[Type::INT4]);
    for shard in 0..SHARDS as i32 {
        let levels = client.query(&by_shard, &[&shard]).await.unwrap();
        assert!(!levels.is_empty(), "shard {shard} reports no levels");
        let numbers: Vec<i32> = levels.iter().map(|r| r.get(0)).collect();
        assert_eq!(numbers[0], 0, "L0 is always listed first");
        assert!(numbers.windows(2).all(|w| w[0] < w[1]), "{numbers:?}");
    }

    let plan: Vec<String> = client
        .query(
            "EXPLAIN SELECT shard FROM sharddb_storage WHERE wal_bytes > 0",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        plan.iter()
            .any(|l| l.contains("System view sharddb_storage")),
        "{plan:?}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_counters_grow_after_inserts() {
    let server = common::TestServer::start(SHARDS).await;
    let client = server.connect().await;
    client
        .batch_execute("CREATE TABLE kv (k bigint PRIMARY KEY, v text)")
        .await
        .unwrap();
    let columns = ["memtable_bytes", "wal_bytes", "wal_records", "wal_syncs"];
    let mut before = Vec::new();
    for c in columns {
        before.push(total(&client, c).await);
    }
    // Single-row inserts each commit on one shard with one fsynced WAL record.
    insert_rows(&client, 0, 50).await;
    for (c, b) in columns.iter().zip(before) {
        let after = total(&client, c).await;
        assert!(after > b, "{c} {b} -> {after} after 50 single-row inserts");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_are_read_only_and_their_names_reserved() {
    let server = common::TestServer::start(SHARDS).await;
    let client = server.connect().await;
    for (sql, code, text) in [
        (
            "INSERT INTO sharddb_storage (shard) VALUES (7)",
            SqlState::WRONG_OBJECT_TYPE,
            "sharddb_storage is a read-only system view",
        ),
        (
            "DELETE FROM sharddb_storage_levels",
            SqlState::WRONG_OBJECT_TYPE,
            "sharddb_storage_levels is a read-only system view",
        ),
        (
            "DROP TABLE sharddb_storage",
            SqlState::WRONG_OBJECT_TYPE,
            "sharddb_storage is a read-only system view",
        ),
        (
            "CREATE TABLE sharddb_storage_levels (id int)",
            SqlState::DUPLICATE_TABLE,
            "relation \"sharddb_storage_levels\" already exists",
        ),
    ] {
        let err = client.batch_execute(sql).await.unwrap_err();
        let db = err.as_db_error().unwrap_or_else(|| panic!("{sql}: {err}"));
        assert_eq!(db.code(), &code, "{sql}: {}", db.message());
        assert_eq!(db.message(), text, "{sql}");
    }
    // The connection is still usable and the view unchanged.
    let n: i64 = client
        .query_one("SELECT count(*) FROM sharddb_storage", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, SHARDS as i64);
    server.stop().await;
}
