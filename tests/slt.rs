//! Runs every `sql-tests/**/*.slt` file through a real sharddb server over pgwire, and the public
//! SQLite sqllogictest corpus slice in `../shared/sqllogictest/` (when present), reporting pass
//! counts. Each file gets a fresh server (fresh data directory), so files are independent.
//!
//! Value formatting (must match `tools/slt_pg.py`, which generated the expectations from
//! PostgreSQL): NULL → `NULL`, empty string → `(empty)`, otherwise PostgreSQL's text output.
//! Errors render as `SQLSTATE: message` and `statement error <regex>` matches that string.
//! In SQLite-corpus mode, floating-point results print with three decimals as that corpus expects,
//! and results compare value by value (the corpus lists one value per line).

mod common;

use async_trait::async_trait;
use sqllogictest::{AsyncDB, DBOutput, DefaultColumnType, Normalizer, Record, Runner};
use std::path::{Path, PathBuf};
use tokio_postgres::SimpleQueryMessage;

#[derive(Debug)]
struct DbError(String);

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for DbError {}

struct Sharddb {
    client: tokio_postgres::Client,
    sqlite_mode: bool,
}

fn format_value(v: Option<&str>, sqlite_mode: bool) -> String {
    match v {
        None => "NULL".to_string(),
        Some("") => "(empty)".to_string(),
        Some(s) if sqlite_mode && s.contains(['.', 'e']) => match s.parse::<f64>() {
            Ok(f) => format!("{f:.3}"),
            Err(_) => s.to_string(),
        },
        Some(s) => s.to_string(),
    }
}

#[async_trait]
impl AsyncDB for Sharddb {
    type Error = DbError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, DbError> {
        let messages = self
            .client
            .simple_query(sql)
            .await
            .map_err(|e| DbError(common::db_error(&e)))?;
        let mut rows = Vec::new();
        let mut width: Option<usize> = None;
        let mut affected = 0;
        for m in messages {
            match m {
                SimpleQueryMessage::RowDescription(cols) => width = Some(cols.len()),
                SimpleQueryMessage::Row(r) => {
                    width = Some(r.len());
                    rows.push(
                        (0..r.len())
                            .map(|i| format_value(r.get(i), self.sqlite_mode))
                            .collect::<Vec<_>>(),
                    );
                }
                SimpleQueryMessage::CommandComplete(n) => affected = n,
                _ => {}
            }
        }
        match width {
            Some(w) => Ok(DBOutput::Rows {
                types: vec![DefaultColumnType::Any; w],
                rows,
            }),
            None => Ok(DBOutput::StatementComplete(affected)),
        }
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "sharddb"
    }

    async fn sleep(dur: std::time::Duration) {
        tokio::time::sleep(dur).await;
    }
}

/// Compares value by value, ignoring how values are grouped into lines.
fn valuewise_validator(
    normalizer: Normalizer,
    actual: &[Vec<String>],
    expected: &[String],
) -> bool {
    let a: Vec<String> = actual
        .iter()
        .flat_map(|r| r.iter().map(normalizer))
        .collect();
    let e: Vec<String> = expected
        .iter()
        .flat_map(|l| l.split_whitespace().map(str::to_string))
        .collect();
    let a: Vec<String> = a
        .iter()
        .flat_map(|v| v.split_whitespace().map(str::to_string))
        .collect();
    a == e
}

struct FileResult {
    passed: usize,
    failed: usize,
    failures: Vec<String>,
}

/// Runs one file record by record on a fresh server, counting passes and failures.
async fn run_file(path: &Path, sqlite_mode: bool) -> FileResult {
    let server = common::TestServer::start(4).await;
    let url = server.url();
    let mut runner = Runner::new(move || {
        let url = url.clone();
        async move {
            let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .map_err(|e| DbError(e.to_string()))?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            Ok(Sharddb {
                client,
                sqlite_mode,
            })
        }
    });
    runner.add_label("postgresql");
    runner.add_label("sharddb");
    if sqlite_mode {
        runner.with_validator(valuewise_validator);
    }
    let records = match sqllogictest::parse_file::<DefaultColumnType>(path) {
        Ok(r) => r,
        Err(e) => {
            return FileResult {
                passed: 0,
                failed: 1,
                failures: vec![format!("{}: parse error: {e}", path.display())],
            };
        }
    };
    let mut result = FileResult {
        passed: 0,
        failed: 0,
        failures: Vec::new(),
    };
    for record in records {
        let counts = matches!(record, Record::Statement { .. } | Record::Query { .. });
        if matches!(record, Record::Halt { .. }) {
            break;
        }
        match runner.run_async(record).await {
            Ok(out) => {
                // Skipped records (onlyif other engines) produce no output and do not count.
                if counts && !matches!(out, sqllogictest::RecordOutput::Nothing) {
                    result.passed += 1;
                }
            }
            Err(e) => {
                result.failed += 1;
                if result.failures.len() < 20 {
                    result.failures.push(format!("{e}"));
                }
            }
        }
    }
    server.stop().await;
    result
}

fn slt_files(dir: &Path, ext: &str, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            slt_files(&p, ext, out);
        } else if p.extension().and_then(|x| x.to_str()) == Some(ext) {
            out.push(p);
        }
    }
    out.sort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_tests() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("sql-tests");
    let mut files = Vec::new();
    slt_files(&root, "slt", &mut files);
    assert!(
        files.len() >= 30,
        "expected at least 30 .slt files, found {}",
        files.len()
    );
    let filter = std::env::var("SLT_FILTER").ok();
    let (mut passed, mut failed) = (0, 0);
    let mut report = Vec::new();
    for f in &files {
        let name = f.strip_prefix(&root).unwrap_or(f).display().to_string();
        if filter
            .as_ref()
            .is_some_and(|flt| !name.contains(flt.as_str()))
        {
            continue;
        }
        let r = run_file(f, false).await;
        passed += r.passed;
        failed += r.failed;
        println!("{name}: {} passed, {} failed", r.passed, r.failed);
        for msg in r.failures {
            report.push(format!("--- {name}\n{msg}"));
        }
    }
    println!("sql-tests: {passed} records passed, {failed} failed");
    assert!(failed == 0, "failures:\n{}", report.join("\n"));
}

/// The SQLite corpus slice shipped beside the repository. `select1.test` must pass completely;
/// the `evidence/` files report their pass counts (recorded in docs/conformance.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_corpus() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/sqllogictest");
    if !root.exists() {
        println!("skipping: {} not present", root.display());
        return;
    }
    let mut files = vec![root.join("select1.test")];
    slt_files(&root.join("evidence"), "test", &mut files);
    let (mut total_pass, mut total_fail) = (0, 0);
    for f in &files {
        let r = run_file(f, true).await;
        let name = f.strip_prefix(&root).unwrap_or(f).display().to_string();
        println!("{name}: {} passed, {} failed", r.passed, r.failed);
        total_pass += r.passed;
        total_fail += r.failed;
        if name == "select1.test" {
            assert_eq!(
                r.failed,
                0,
                "select1.test must pass completely:\n{}",
                r.failures.join("\n")
            );
        } else if std::env::var("SLT_VERBOSE").is_ok() {
            for msg in r.failures {
                println!("--- {name}\n{msg}");
            }
        }
    }
    println!("sqlite corpus: {total_pass} records passed, {total_fail} failed");
}
