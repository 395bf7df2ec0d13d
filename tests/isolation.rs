//! Isolation specs, in the spirit of PostgreSQL's isolationtester: several sessions, a scripted
//! interleaving of their statements, and for every step the outcome it must have, including
//! whether it blocks. Specs are played by the anomaly lab's scenario engine
//! (`sharddb::anomalies::engine`), so blocking, deferral and transcripts work the same way here.
//!
//! Which specs, against which server:
//! - default: every `tests/isolation/*.spec` (top level only) against an embedded sharddb server
//!   started on an ephemeral port; zero specs pass (with a printed note);
//! - `SHARDDB_ISOLATION_URL=<url>` plays the specs against that server instead, and
//!   `SHARDDB_ISOLATION_DIR=<dir>` picks another directory, e.g. the PostgreSQL-valid set:
//!   `SHARDDB_ISOLATION_URL=postgres://postgres@127.0.0.1:55432/anomalies
//!    SHARDDB_ISOLATION_DIR=tests/isolation/pg cargo test --release --test isolation`.
//!
//! Spec format (line based; `#` starts a comment line; blank lines are ignored):
//!
//! ```text
//! # Optional settings, before the first step:
//! timeout_ms: 300           step timeout: no answer within it means the step blocks
//! stall_ms: 5000            how long the script may stand still before blocked steps are cancelled
//! setup: <sql>              run in order on a separate autocommit connection before the
//!                           sessions connect; each must succeed (one statement per line)
//! teardown: <sql>           run on that connection after the sessions closed; must succeed
//!
//! <session>: <sql>          a step: one statement sent on <session>'s own connection
//!                           (a session is an identifier; it exists from its first step on)
//! -> <expectation>          the step's expected outcome: exactly one, on the next line
//!
//! expectation := ["blocks then"] outcome
//! outcome     := "rows" [row {"|" row}]   rows in order, values comma-separated, NULL for null
//!                                         (so values cannot contain `,` or `|`, and the text
//!                                         NULL reads as null); "rows" alone: no rows
//!              | "tag" <tag>              a command without rows, e.g. "tag UPDATE 1"
//!              | "error" <SQLSTATE>       e.g. "error 40001"
//! ```
//!
//! A step "blocks" when it has not answered within the step timeout; while it is blocked, its
//! session's next steps are deferred and the following steps of other sessions run (see the
//! engine). A step expected not to block that does block is a mismatch, and vice versa.
//!
//! Tags are rebuilt from the statement's verb and row count (tokio-postgres does not expose the
//! server's tag): `COMMIT` of a failed transaction reads as `tag COMMIT`, not PostgreSQL's
//! `ROLLBACK`; check such a transaction's effect with a later SELECT instead.
//!
//! The runner cannot pass silently: every step must carry an expectation (a step without one is a
//! parse error), a spec without steps is an error, every step's outcome is compared, and the
//! unit tests below show that wrong expectations of each kind are reported.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use sharddb::anomalies::engine::{self, Outcome, Script, StepRecord, Timing};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Expected {
    Rows(Vec<Vec<Option<String>>>),
    Tag(String),
    Error(String),
}

#[derive(Debug, Clone)]
struct Expect {
    text: String,
    blocks: bool,
    outcome: Expected,
}

#[derive(Debug)]
struct Spec {
    setup: Vec<String>,
    teardown: Vec<String>,
    timeout: Duration,
    stall: Option<Duration>,
    script: Script,
    /// `expects[i]` belongs to `script.steps[i]`.
    expects: Vec<Expect>,
    /// Line of each step, for reports.
    lines: Vec<usize>,
}

fn parse_expectation(text: &str) -> Result<(bool, Expected), String> {
    let mut rest = text.trim();
    let mut blocks = false;
    if let Some(r) = rest.strip_prefix("blocks") {
        blocks = true;
        rest = r
            .trim_start()
            .strip_prefix("then")
            .ok_or("`blocks` must be followed by `then <outcome>`")?
            .trim_start();
    }
    let (word, arg) = match rest.split_once(char::is_whitespace) {
        Some((w, a)) => (w, a.trim()),
        None => (rest, ""),
    };
    let outcome = match word {
        "rows" if arg.is_empty() => Expected::Rows(Vec::new()),
        "rows" => Expected::Rows(
            arg.split('|')
                .map(|row| {
                    row.split(',')
                        .map(|v| match v.trim() {
                            "NULL" => None,
                            v => Some(v.to_string()),
                        })
                        .collect()
                })
                .collect(),
        ),
        "tag" if !arg.is_empty() => Expected::Tag(arg.to_string()),
        "error" if arg.len() == 5 && arg.chars().all(|c| c.is_ascii_alphanumeric()) => {
            Expected::Error(arg.to_ascii_uppercase())
        }
        "tag" | "error" => return Err(format!("`{word}` needs an argument: {text:?}")),
        _ => {
            return Err(format!(
                "unknown expectation {text:?} (rows / tag / error, optionally after `blocks then`)"
            ));
        }
    };
    Ok((blocks, outcome))
}

fn is_session_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !matches!(s, "setup" | "teardown" | "timeout_ms" | "stall_ms")
}

fn parse_spec(text: &str) -> Result<Spec, String> {
    let mut spec = Spec {
        setup: Vec::new(),
        teardown: Vec::new(),
        timeout: Duration::from_millis(300),
        stall: None,
        script: Script::new(),
        expects: Vec::new(),
        lines: Vec::new(),
    };
    let millis = |v: &str, n: usize| -> Result<Duration, String> {
        v.trim()
            .parse()
            .map(Duration::from_millis)
            .map_err(|_| format!("line {n}: not a number of milliseconds: {v:?}"))
    };
    for (idx, raw) in text.lines().enumerate() {
        let n = idx + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(e) = line.strip_prefix("->") {
            if spec.expects.len() + 1 != spec.script.steps.len() {
                return Err(format!(
                    "line {n}: expectation without a step before it (or a second one for the same step)"
                ));
            }
            let (blocks, outcome) = parse_expectation(e).map_err(|m| format!("line {n}: {m}"))?;
            spec.expects.push(Expect {
                text: e.trim().to_string(),
                blocks,
                outcome,
            });
            continue;
        }
        let Some((key, value)) = line.split_once(':') else {
            return Err(format!(
                "line {n}: expected `<session>: <sql>`, a setting or `-> ...`"
            ));
        };
        let (key, value) = (key.trim(), value.trim());
        if spec.expects.len() != spec.script.steps.len() {
            let step = spec.lines.last().copied().unwrap_or(0);
            return Err(format!(
                "line {step}: step has no `-> <expectation>` line after it"
            ));
        }
        match key {
            "setup" => spec.setup.push(value.to_string()),
            "teardown" => spec.teardown.push(value.to_string()),
            "timeout_ms" => spec.timeout = millis(value, n)?,
            "stall_ms" => spec.stall = Some(millis(value, n)?),
            k if is_session_name(k) && !value.is_empty() => {
                spec.script.step(k, value);
                spec.lines.push(n);
            }
            _ => return Err(format!("line {n}: cannot read {line:?}")),
        }
    }
    if spec.expects.len() != spec.script.steps.len() {
        let step = spec.lines.last().copied().unwrap_or(0);
        return Err(format!(
            "line {step}: step has no `-> <expectation>` line after it"
        ));
    }
    if spec.script.steps.is_empty() {
        return Err("the spec has no steps".into());
    }
    Ok(spec)
}

/// Why an observed step does not meet its expectation, if it does not.
fn mismatch(expect: &Expect, rec: &StepRecord) -> Option<String> {
    let observed_blocks = rec.blocked_for.is_some();
    let outcome_ok = match (&expect.outcome, &rec.outcome) {
        (Expected::Rows(want), Outcome::Rows { rows, .. }) => want == rows,
        (Expected::Tag(want), Outcome::Command { tag }) => want == tag,
        (Expected::Error(want), Outcome::Error { code, .. }) => want == code,
        _ => false,
    };
    if outcome_ok && observed_blocks == expect.blocks {
        return None;
    }
    let observed = match &rec.outcome {
        Outcome::Rows { rows, .. } if rows.is_empty() => "rows".to_string(),
        Outcome::Rows { rows, .. } => {
            let rows: Vec<String> = rows
                .iter()
                .map(|r| {
                    r.iter()
                        .map(|v| v.as_deref().unwrap_or("NULL"))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .collect();
            format!("rows {}", rows.join(" | "))
        }
        Outcome::Command { tag } => format!("tag {tag}"),
        Outcome::Error { code, message } => format!("error {code} ({message})"),
        other => other.to_string(),
    };
    let blocked = match (rec.blocked_for, rec.cancelled) {
        (Some(d), true) => format!("blocks then (cancelled after {} ms) ", d.as_millis()),
        (Some(d), false) => format!("blocks then (after {} ms) ", d.as_millis()),
        (None, _) => String::new(),
    };
    Some(format!(
        "expected `{}`, observed `{blocked}{observed}`",
        expect.text
    ))
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        msg.push_str(&format!(": {s}"));
        source = s.source();
    }
    msg
}

/// Runs `sql` statements one by one on a fresh autocommit connection.
async fn run_plain(
    config: &tokio_postgres::Config,
    what: &str,
    sqls: &[String],
) -> Result<(), String> {
    if sqls.is_empty() {
        return Ok(());
    }
    let (client, conn) = engine::connect(config)
        .await
        .map_err(|e| format!("{what}: cannot connect: {}", error_chain(&e)))?;
    let mut result = Ok(());
    for sql in sqls {
        if let Err(e) = client.simple_query(sql).await {
            result = Err(format!("{what} `{sql}` failed: {}", common::db_error(&e)));
            break;
        }
    }
    drop(client);
    let _ = tokio::time::timeout(Duration::from_secs(1), conn).await;
    result
}

/// Plays one spec; returns its mismatches (`Err` if it could not be played at all).
async fn run_spec(
    config: &tokio_postgres::Config,
    spec: &Spec,
) -> Result<(Vec<String>, String), String> {
    run_plain(config, "setup", &spec.setup).await?;
    let mut timing = Timing::new(spec.timeout);
    if let Some(stall) = spec.stall {
        timing.stall_limit = stall;
    }
    let run = engine::run_script(config, &spec.script, timing)
        .await
        .map_err(|e| error_chain(&e))?;
    let mut mismatches = Vec::new();
    if run.steps.len() != spec.expects.len() {
        mismatches.push(format!(
            "{} steps recorded for {} expectations",
            run.steps.len(),
            spec.expects.len()
        ));
    }
    for (i, (expect, rec)) in spec.expects.iter().zip(&run.steps).enumerate() {
        if let Some(m) = mismatch(expect, rec) {
            mismatches.push(format!(
                "line {} (`{}: {}`): {m}",
                spec.lines[i],
                run.session_name(i),
                rec.sql
            ));
        }
    }
    run_plain(config, "teardown", &spec.teardown).await?;
    Ok((mismatches, run.transcript()))
}

fn spec_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "spec"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// Plays every spec in `dir` against `url`; returns one report line per problem.
async fn run_dir(url: &str, dir: &Path) -> (usize, Vec<String>) {
    let config: tokio_postgres::Config = match url.parse() {
        Ok(c) => c,
        Err(e) => return (0, vec![format!("bad URL {url:?}: {e}")]),
    };
    let files = spec_files(dir);
    let mut problems = Vec::new();
    for file in &files {
        let name = file.display();
        let text = match std::fs::read_to_string(file) {
            Ok(t) => t,
            Err(e) => {
                problems.push(format!("{name}: cannot read: {e}"));
                continue;
            }
        };
        let spec = match parse_spec(&text) {
            Ok(s) => s,
            Err(e) => {
                problems.push(format!("{name}: {e}"));
                continue;
            }
        };
        match run_spec(&config, &spec).await {
            Ok((mismatches, transcript)) => {
                if !mismatches.is_empty() {
                    problems.extend(mismatches.iter().map(|m| format!("{name}: {m}")));
                    problems.push(format!("{name}: transcript:\n{transcript}"));
                }
                println!(
                    "{name}: {} steps, {} mismatches",
                    spec.script.steps.len(),
                    mismatches.len()
                );
            }
            Err(e) => problems.push(format!("{name}: {e}")),
        }
    }
    (files.len(), problems)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolation_specs() {
    let dir = std::env::var("SHARDDB_ISOLATION_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/isolation"));
    if spec_files(&dir).is_empty() {
        println!(
            "no *.spec files in {}: nothing to play (sharddb specs come with BEGIN support)",
            dir.display()
        );
        return;
    }
    let (server, url) = match std::env::var("SHARDDB_ISOLATION_URL") {
        Ok(url) => (None, url),
        Err(_) => {
            let server = common::TestServer::start(4).await;
            let url = server.url();
            (Some(server), url)
        }
    };
    let (count, problems) = run_dir(&url, &dir).await;
    if let Some(s) = server {
        s.stop().await;
    }
    assert!(
        problems.is_empty(),
        "{} problem(s) in {count} spec(s) from {}:\n{}",
        problems.len(),
        dir.display(),
        problems.join("\n")
    );
}

#[test]
fn parser_reads_the_documented_format() {
    let spec = parse_spec(
        "# a comment\n\
         timeout_ms: 150\n\
         setup: CREATE TABLE t (id int primary key)\n\
         s1: BEGIN\n\
         -> tag BEGIN\n\
         s2: UPDATE t SET id = 2\n\
         -> blocks then error 40001\n\
         s1: SELECT 1, NULL\n\
         -> rows 1, NULL | 2,x\n\
         s2: SELECT 1 WHERE false\n\
         -> rows\n",
    )
    .expect("parses");
    assert_eq!(spec.timeout, Duration::from_millis(150));
    assert_eq!(spec.setup.len(), 1);
    assert_eq!(spec.script.sessions, ["s1", "s2"]);
    assert_eq!(spec.lines, [4, 6, 8, 10]);
    assert!(spec.expects[1].blocks);
    assert_eq!(spec.expects[1].outcome, Expected::Error("40001".into()));
    assert_eq!(
        spec.expects[2].outcome,
        Expected::Rows(vec![
            vec![Some("1".into()), None],
            vec![Some("2".into()), Some("x".into())]
        ])
    );
    assert_eq!(spec.expects[3].outcome, Expected::Rows(vec![]));
}

#[test]
fn parser_rejects_specs_that_could_pass_silently() {
    // A step without an expectation, in the middle and at the end.
    assert!(parse_spec("s1: BEGIN\ns1: COMMIT\n-> tag COMMIT\n").is_err());
    assert!(parse_spec("s1: BEGIN\n-> tag BEGIN\ns1: COMMIT\n").is_err());
    // Two expectations for one step, an expectation before any step.
    assert!(parse_spec("s1: BEGIN\n-> tag BEGIN\n-> tag BEGIN\n").is_err());
    assert!(parse_spec("-> tag BEGIN\ns1: BEGIN\n").is_err());
    // Unknown or incomplete expectations.
    assert!(parse_spec("s1: BEGIN\n-> ok\n").is_err());
    assert!(parse_spec("s1: BEGIN\n-> blocks\n").is_err());
    assert!(parse_spec("s1: BEGIN\n-> error\n").is_err());
    assert!(parse_spec("s1: BEGIN\n-> error 4000\n").is_err());
    // No steps at all.
    assert!(parse_spec("setup: SELECT 1\n").is_err());
    assert!(parse_spec("").is_err());
}

/// Wrong expectations of every kind are reported, and the same spec with right expectations
/// passes: the comparison is neither vacuous nor always failing. Uses autocommit statements
/// only, so it runs against the embedded server as it is today.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_expectations_are_reported() {
    let server = common::TestServer::start(2).await;
    let config: tokio_postgres::Config = server.url().parse().expect("url");
    let body = |rows: &str, tag: &str, err: &str, no_block: &str, kind: &str| {
        format!(
            "setup: DROP TABLE IF EXISTS iso_self\n\
             setup: CREATE TABLE iso_self (id int PRIMARY KEY, v int)\n\
             teardown: DROP TABLE iso_self\n\
             s1: INSERT INTO iso_self VALUES (1, 10), (2, NULL)\n\
             -> {tag}\n\
             s2: SELECT id, v FROM iso_self ORDER BY id\n\
             -> {rows}\n\
             s1: SELECT * FROM iso_missing_table\n\
             -> {err}\n\
             s2: UPDATE iso_self SET v = 11 WHERE id = 1\n\
             -> {no_block}\n\
             s1: SELECT v FROM iso_self WHERE id = 1\n\
             -> {kind}\n"
        )
    };
    let right = parse_spec(&body(
        "rows 1,10 | 2,NULL",
        "tag INSERT 0 2",
        "error 42P01",
        "tag UPDATE 1",
        "rows 11",
    ))
    .expect("parses");
    let (mismatches, transcript) = run_spec(&config, &right).await.expect("runs");
    assert!(mismatches.is_empty(), "{mismatches:?}\n{transcript}");

    let wrong = parse_spec(&body(
        "rows 1,10 | 2,20",
        "tag INSERT 0 1",
        "error 42601",
        "blocks then tag UPDATE 1",
        "error 22012",
    ))
    .expect("parses");
    let (mismatches, transcript) = run_spec(&config, &wrong).await.expect("runs");
    assert_eq!(mismatches.len(), 5, "{mismatches:#?}\n{transcript}");
    for (m, line) in mismatches.iter().zip([4, 6, 8, 10, 12]) {
        assert!(m.starts_with(&format!("line {line} ")), "{m}");
    }
    assert!(
        mismatches[3].contains("observed `tag UPDATE 1`"),
        "{}",
        mismatches[3]
    );
    server.stop().await;
}
