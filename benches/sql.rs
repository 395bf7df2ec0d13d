//! Point insert and point select through the whole SQL layer (parse, bind, plan, route,
//! shard request, storage), in process. Run: `cargo bench --bench sql`.
//! Uses `--sync none` semantics so the numbers measure the engine rather than the disk's fsync
//! latency; the end-to-end comparison with PostgreSQL lives in tools/.

use criterion::{Criterion, criterion_group, criterion_main};
use sharddb::sql::parser::parse_statements;
use sharddb::sql::session::{Database, DbOptions, Session};
use sharddb::types::{DataType, Value};

fn bench_sql(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let _guard = rt.enter();
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Database::open(&DbOptions {
        data_dir: dir.path().to_path_buf(),
        shards: 4,
        sync: false,
        memtable_limit_bytes: 32 << 20,
        block_cache_bytes: 64 << 20,
        index_pool_bytes: 64 << 20,
        statement_mem_bytes: 1 << 30,
        deadlock_policy: Default::default(),
        vnodes: sharddb::placement::hash_ring::DEFAULT_VNODES,
        range_split_rows: 0,
        node_id: 0,
    })
    .expect("open");
    let mut session = Session::new(db);
    let create = parse_statements("CREATE TABLE kv (k bigint PRIMARY KEY, v text)").unwrap();
    session.execute(&create[0], &[], &[]).expect("create");
    let insert = parse_statements("INSERT INTO kv VALUES ($1, $2)").unwrap();
    let types = [Some(DataType::Int8), Some(DataType::Text)];
    let mut next = 0i64;
    c.bench_function("sql_point_insert", |b| {
        b.iter(|| {
            next += 1;
            session
                .execute(
                    &insert[0],
                    &types,
                    &[Value::Int(next), Value::Text("value".into())],
                )
                .expect("insert");
        })
    });
    let select = parse_statements("SELECT v FROM kv WHERE k = $1").unwrap();
    let max = next.max(1);
    let mut i = 0i64;
    c.bench_function("sql_point_select", |b| {
        b.iter(|| {
            i = i % max + 1;
            session
                .execute(&select[0], &[Some(DataType::Int8)], &[Value::Int(i)])
                .expect("select");
        })
    });
}

criterion_group!(benches, bench_sql);
criterion_main!(benches);
