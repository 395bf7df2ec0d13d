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
use sqllogictest::{AsyncDB, DBOutput, DefaultColumnType, Normalizer, QueryExpect, Record, Runner};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio_postgres::SimpleQueryMessage;

#[derive(Debug)]
struct DbError(String);

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for DbError {}

/// Column types the current record declares (`query IRT`), shared with the connection so that
/// SQLite-corpus values are printed the way the reference runner printed them.
type DeclaredTypes = Arc<Mutex<Vec<DefaultColumnType>>>;

struct Sharddb {
    client: tokio_postgres::Client,
    sqlite_mode: bool,
    declared: DeclaredTypes,
}

/// PostgreSQL text output, in the corpus's conventions: NULL → `NULL`, empty string → `(empty)`.
/// In SQLite mode a value follows its declared column type like the reference runner does:
/// `R` prints with three decimals and `I` prints the integer part (sqlite3_column_int64), so a
/// PostgreSQL `numeric` average in an `I` column reads the same as SQLite's, and a boolean in an
/// `I` column prints as SQLite's 1/0.
fn format_value(
    v: Option<&str>,
    sqlite_mode: bool,
    declared: Option<&DefaultColumnType>,
) -> String {
    let s = match v {
        None => return "NULL".to_string(),
        Some("") => return "(empty)".to_string(),
        Some(s) => s,
    };
    if !sqlite_mode {
        return s.to_string();
    }
    // SQLite has no boolean type: its truth values are the integers 1 and 0.
    if let (Some(DefaultColumnType::Integer), "t" | "f") = (declared, s) {
        return if s == "t" { "1" } else { "0" }.to_string();
    }
    match (declared, s.parse::<f64>()) {
        (Some(DefaultColumnType::FloatingPoint), Ok(f)) => format!("{f:.3}"),
        (Some(DefaultColumnType::Integer), Ok(f)) if s.contains(['.', 'e']) => {
            format!("{}", f.trunc() as i64)
        }
        (Some(DefaultColumnType::Any) | None, Ok(f)) if s.contains(['.', 'e']) => {
            format!("{f:.3}")
        }
        _ => s.to_string(),
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
                    let declared = self.declared.lock().unwrap_or_else(|p| p.into_inner());
                    rows.push(
                        (0..r.len())
                            .map(|i| format_value(r.get(i), self.sqlite_mode, declared.get(i)))
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

/// Labels this engine answers to in `onlyif`/`skipif`: it behaves as PostgreSQL does.
const LABELS: [&str; 2] = ["postgresql", "sharddb"];

/// Parses a test file. Two corpus conventions the sqllogictest crate does not follow are
/// resolved here, leaving the file itself as published:
/// - `# comments` after `skipif`/`onlyif` labels are dropped;
/// - conditions before `halt` (`onlyif mssql` / `halt`) belong to that halt: the file ends there if
///   they select this engine, and otherwise the block is removed (the crate would attach those
///   conditions to the next statement instead).
fn read_records(path: &Path) -> Result<Vec<Record<DefaultColumnType>>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("read error: {e}"))?;
    let mut out: Vec<String> = Vec::new();
    let mut conditions: Vec<(&str, &str)> = Vec::new();
    for line in text.lines() {
        let stripped = match line.find('#') {
            Some(i) if line.starts_with("skipif ") || line.starts_with("onlyif ") => {
                line[..i].trim_end()
            }
            _ => line,
        };
        let words: Vec<&str> = stripped.split_whitespace().collect();
        match words.as_slice() {
            [kind @ ("skipif" | "onlyif"), label] => {
                conditions.push((kind, label));
                continue;
            }
            ["halt"] => {
                let applies = conditions
                    .iter()
                    .all(|(kind, label)| (*kind == "onlyif") == LABELS.contains(label));
                conditions.clear();
                if applies {
                    break;
                }
                continue;
            }
            _ => {
                out.extend(conditions.drain(..).map(|(k, l)| format!("{k} {l}")));
                out.push(stripped.to_string());
            }
        }
    }
    sqllogictest::parse_with_name(&out.join("\n"), path.display().to_string())
        .map_err(|e| format!("parse error: {e}"))
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
    let declared: DeclaredTypes = Arc::default();
    let declared_db = declared.clone();
    let mut runner = Runner::new(move || {
        let url = url.clone();
        let declared = declared_db.clone();
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
                declared,
            })
        }
    });
    for label in LABELS {
        runner.add_label(label);
    }
    if sqlite_mode {
        runner.with_validator(valuewise_validator);
        // The corpus was generated by SQLite's runner with its default threshold of 8 values;
        // files without a `hash-threshold` record rely on that default.
        runner.with_hash_threshold(8);
    }
    let records = match read_records(path) {
        Ok(r) => r,
        Err(e) => {
            return FileResult {
                passed: 0,
                failed: 1,
                failures: vec![format!("{}: {e}", path.display())],
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
        if let Record::Query {
            expected: QueryExpect::Results { types, .. },
            ..
        } = &record
        {
            *declared.lock().unwrap_or_else(|p| p.into_inner()) = types.clone();
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
