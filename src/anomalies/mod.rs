//! The anomaly lab (`sharddb anomalies`): plays each isolation phenomenon of the Hermitage
//! catalogue at each isolation level against a live server, over real pgwire sessions, and prints
//! which ones occurred.
//!
//! ```text
//!   for each deadlock policy (sharddb: wait_die, wound_wait; PostgreSQL: n/a)
//!     for each level (READ UNCOMMITTED .. SERIALIZABLE)
//!       for each scenario (G0 .. G2)
//!         fresh table ─▶ sessions: SET deadlock_policy; BEGIN ISOLATION LEVEL ─▶ script
//!         (engine) ─▶ final table ─▶ judge (scenarios) ─▶ cell: occ | prev | err
//!   matrix per policy, compared with the expected one (matrix)
//! ```
//!
//! Modules:
//! - [`engine`]: sessions, asynchronous steps, blocking detection, transcripts. Independent of
//!   anomalies; the isolation spec runner (`tests/isolation.rs`) plays its specs with it.
//! - [`scenarios`]: the ten scripts and their judges.
//! - [`matrix`]: levels, anomalies, expected matrices, rendering.
//!
//! Invariants: a cell's verdict comes only from what its run observed; a step that failed for a
//! reason unrelated to concurrency makes the cell inconclusive (`err`), never "prevented"; the
//! server kind is detected from `SHOW server_version`, never assumed.

pub mod engine;
pub mod matrix;
pub mod scenarios;

use std::fmt::Write as _;
use std::time::Duration;

use engine::{Outcome, Run, Script, Timing};
use matrix::{Anomaly, Cell, Level, Matrix, Target, Verdict};
use scenarios::{Observation, Scenario};

/// Deadlock policies to run against sharddb.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyChoice {
    WaitDie,
    WoundWait,
    Both,
}

/// Which expected matrix to compare with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectChoice {
    /// Whatever the server is.
    Auto,
    Sharddb,
    Postgres,
}

#[derive(Debug, Clone)]
pub struct LabOptions {
    /// A libpq-style URL or key=value connection string.
    pub url: String,
    pub policy: PolicyChoice,
    /// A step without an answer within this is blocked.
    pub step_timeout: Duration,
    pub expect: ExpectChoice,
    /// Keep the transcripts of this scenario.
    pub show: Option<Anomaly>,
    /// Only these scenarios (all if empty); for quick runs and tests.
    pub only: Vec<Anomaly>,
}

/// Failures that stop the lab before it can judge anything.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("invalid connection string {url:?}")]
    Url {
        url: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("cannot connect to {url}")]
    Connect {
        url: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("setup failed ({context}): `{sql}`: {detail}")]
    Setup {
        context: String,
        sql: String,
        detail: String,
    },
    #[error(transparent)]
    Engine(#[from] engine::EngineError),
}

/// Everything the lab found.
#[derive(Debug, Clone)]
pub struct LabReport {
    pub server_version: String,
    pub detected: Target,
    pub expected: Target,
    /// One per deadlock policy run.
    pub matrices: Vec<Matrix>,
    /// Transcripts of the `--show` scenario, one per level and policy.
    pub transcripts: Vec<String>,
    /// Scenarios actually run (all unless `only` was given); only their columns count.
    pub scenarios: Vec<Anomaly>,
}

impl LabReport {
    /// Cells that differ from the expectation, over every matrix.
    pub fn difference_count(&self) -> usize {
        self.matrices
            .iter()
            .map(|m| {
                m.differences(self.expected)
                    .iter()
                    .filter(|d| self.scenarios.contains(&d.anomaly))
                    .count()
            })
            .sum()
    }

    pub fn all_match(&self) -> bool {
        self.difference_count() == 0
    }

    /// Process exit code: 0 iff every cell matches, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        if self.all_match() { 0 } else { 1 }
    }

    /// Transcripts (if any), then one matrix per policy with its differences.
    pub fn render(&self, details: bool) -> String {
        let mut out = String::new();
        for t in &self.transcripts {
            out.push_str(t);
            out.push('\n');
        }
        let _ = writeln!(
            out,
            "server: {} (detected {}); expected matrix: {}",
            self.server_version,
            self.detected.name(),
            self.expected.name()
        );
        for m in &self.matrices {
            out.push('\n');
            out.push_str(&m.render(self.expected));
            if details {
                out.push_str(&m.render_details());
            }
        }
        out
    }
}

const SETUP: [&str; 3] = [
    "DROP TABLE IF EXISTS anomaly_test",
    "CREATE TABLE anomaly_test (id int PRIMARY KEY, value int)",
    "INSERT INTO anomaly_test (id, value) VALUES (1, 10), (2, 20)",
];

/// Runs the lab. Against sharddb every scenario runs under each chosen deadlock policy; against
/// PostgreSQL (which has no such setting) once, as policy `n/a`.
pub async fn run_lab(opts: &LabOptions) -> Result<LabReport, LabError> {
    let config: tokio_postgres::Config = opts.url.parse().map_err(|source| LabError::Url {
        url: opts.url.clone(),
        source,
    })?;
    let (observer, conn) = engine::connect(&config)
        .await
        .map_err(|source| LabError::Connect {
            url: opts.url.clone(),
            source,
        })?;
    let result = run_with(opts, &config, &observer).await;
    drop(observer);
    let _ = tokio::time::timeout(Duration::from_secs(1), conn).await;
    result
}

async fn run_with(
    opts: &LabOptions,
    config: &tokio_postgres::Config,
    observer: &tokio_postgres::Client,
) -> Result<LabReport, LabError> {
    let server_version = query_value(observer, "SHOW server_version").await?;
    let detected = if server_version.contains("sharddb") {
        Target::Sharddb
    } else {
        Target::Postgres
    };
    let expected = match opts.expect {
        ExpectChoice::Auto => detected,
        ExpectChoice::Sharddb => Target::Sharddb,
        ExpectChoice::Postgres => Target::Postgres,
    };
    let policies: Vec<Option<&str>> = match (detected, opts.policy) {
        (Target::Postgres, _) => vec![None],
        (Target::Sharddb, PolicyChoice::WaitDie) => vec![Some("wait_die")],
        (Target::Sharddb, PolicyChoice::WoundWait) => vec![Some("wound_wait")],
        (Target::Sharddb, PolicyChoice::Both) => vec![Some("wait_die"), Some("wound_wait")],
    };
    if detected == Target::Postgres && opts.policy != PolicyChoice::Both {
        tracing::info!("PostgreSQL has no deadlock_policy; --policy is ignored");
    }
    let timing = Timing::new(opts.step_timeout);
    let scenarios: Vec<Scenario> = scenarios::all()
        .into_iter()
        .filter(|s| opts.only.is_empty() || opts.only.contains(&s.anomaly))
        .collect();
    let mut matrices = Vec::new();
    let mut transcripts = Vec::new();
    for policy in &policies {
        let policy_name = policy.unwrap_or("n/a");
        let mut cells = Vec::new();
        for level in Level::ALL {
            tracing::info!(
                policy = policy_name,
                level = level.sql(),
                "running scenarios"
            );
            let mut row = Vec::new();
            for anomaly in Anomaly::ALL {
                let Some(scenario) = scenarios.iter().find(|s| s.anomaly == anomaly) else {
                    row.push(Cell {
                        verdict: Verdict::Inconclusive {
                            reason: "not run".into(),
                        },
                        why: String::new(),
                    });
                    continue;
                };
                let mut played =
                    play(config, observer, scenario, level, *policy, timing, None).await?;
                // Deadlock prevention aborts by age, and a script fixes the ages (T1 starts
                // first), so a policy abort may hide what the level allows. Try the other age
                // orders before calling the anomaly prevented; a verdict still only comes from
                // what the sessions observed.
                if policy.is_some() && aborted_by_policy(&played) {
                    for order in other_age_orders(scenario.sessions) {
                        let again = play(
                            config,
                            observer,
                            scenario,
                            level,
                            *policy,
                            timing,
                            Some(&order),
                        )
                        .await?;
                        if matches!(again.cell.verdict, Verdict::Occurred) {
                            played = again;
                            break;
                        }
                    }
                }
                if opts.show == Some(anomaly) {
                    transcripts.push(played.transcript(scenario, level, policy_name));
                }
                row.push(played.cell);
            }
            cells.push(row);
        }
        matrices.push(Matrix {
            policy: policy_name.to_string(),
            cells,
        });
    }
    Ok(LabReport {
        server_version,
        detected,
        expected,
        matrices,
        transcripts,
        scenarios: scenarios.iter().map(|s| s.anomaly).collect(),
    })
}

async fn query_value(client: &tokio_postgres::Client, sql: &str) -> Result<String, LabError> {
    let setup_err = |detail: String| LabError::Setup {
        context: "server detection".into(),
        sql: sql.into(),
        detail,
    };
    let messages = client
        .simple_query(sql)
        .await
        .map_err(|e| setup_err(e.to_string()))?;
    messages
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        })
        .ok_or_else(|| setup_err("no row".into()))
}

/// Whether a run was prevented with an abort by the deadlock policy (40P01).
fn aborted_by_policy(played: &Played) -> bool {
    matches!(played.cell.verdict, Verdict::Prevented { .. })
        && played
            .run
            .steps
            .iter()
            .any(|s| s.outcome.sqlstate() == Some("40P01"))
}

/// Every order of `sessions` but the script's own (the oldest first).
fn other_age_orders(sessions: &[&'static str]) -> Vec<Vec<&'static str>> {
    fn permute(
        rest: Vec<&'static str>,
        prefix: Vec<&'static str>,
        out: &mut Vec<Vec<&'static str>>,
    ) {
        if rest.is_empty() {
            out.push(prefix);
            return;
        }
        for i in 0..rest.len() {
            let mut r = rest.clone();
            let x = r.remove(i);
            let mut p = prefix.clone();
            p.push(x);
            permute(r, p, out);
        }
    }
    let mut all = Vec::new();
    permute(sessions.to_vec(), Vec::new(), &mut all);
    all.retain(|o| o.as_slice() != sessions);
    all
}

/// One scenario played at one level.
struct Played {
    run: Run,
    final_rows: Vec<(i64, i64)>,
    judgement: scenarios::Judgement,
    cell: Cell,
}

async fn play(
    config: &tokio_postgres::Config,
    observer: &tokio_postgres::Client,
    scenario: &Scenario,
    level: Level,
    policy: Option<&str>,
    timing: Timing,
    ages: Option<&[&'static str]>,
) -> Result<Played, LabError> {
    let context = format!(
        "{} at {}, policy {}{}",
        scenario.anomaly.name(),
        level.sql(),
        policy.unwrap_or("n/a"),
        ages.map(|a| format!(", ages {}", a.join(" < ")))
            .unwrap_or_default()
    );
    // Autocommit, one statement per call: the table is fresh and committed before any session
    // begins.
    for sql in SETUP {
        observer
            .simple_query(sql)
            .await
            .map_err(|e| LabError::Setup {
                context: context.clone(),
                sql: sql.into(),
                detail: error_text(&e),
            })?;
    }
    let mut script = Script::new();
    for session in scenario.sessions {
        if let Some(p) = policy {
            script.step(session, format!("SET deadlock_policy = '{p}'"));
        }
    }
    for session in scenario.sessions {
        script.step(session, format!("BEGIN ISOLATION LEVEL {}", level.sql()));
    }
    // A transaction's age is fixed by its first statement: with an age order, a trivial
    // statement in that order makes the first-named session the oldest.
    if let Some(order) = ages {
        for session in order {
            script.step(session, "SELECT 1".to_string());
        }
    }
    let preamble = script.steps.len();
    let mut labels = Vec::new();
    for &(session, label, sql) in scenario.steps {
        let i = script.step(session, sql);
        if !label.is_empty() {
            labels.push((label, i));
        }
    }
    let run = engine::run_script(config, &script, timing).await?;
    if let Some(bad) = run.steps[..preamble]
        .iter()
        .find(|s| !s.outcome.is_success())
    {
        return Err(LabError::Setup {
            context,
            sql: bad.sql.clone(),
            detail: bad.outcome.to_string(),
        });
    }
    let final_sql = "SELECT id, value FROM anomaly_test ORDER BY id";
    let final_rows = read_pairs(observer, final_sql)
        .await
        .map_err(|detail| LabError::Setup {
            context: context.clone(),
            sql: final_sql.into(),
            detail,
        })?;
    let obs = Observation {
        run: &run,
        labels,
        final_rows: final_rows.clone(),
    };
    let judgement = scenario.judge(&obs);
    let verdict = if judgement.occurred {
        Verdict::Occurred
    } else if let Some(reason) = inconclusive(&run, preamble) {
        Verdict::Inconclusive { reason }
    } else {
        Verdict::Prevented {
            how: how_prevented(&run, preamble),
        }
    };
    tracing::debug!(scenario = %context, verdict = verdict.short(), why = %judgement.why, "judged");
    let why = match ages {
        Some(order) => format!("with ages {}: {}", order.join(" < "), judgement.why),
        None => judgement.why.clone(),
    };
    let cell = Cell { verdict, why };
    Ok(Played {
        run,
        final_rows,
        judgement,
        cell,
    })
}

impl Played {
    fn transcript(&self, scenario: &Scenario, level: Level, policy: &str) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "=== {} at {} (deadlock_policy {}) ===",
            scenario.anomaly.name(),
            level.sql(),
            policy
        );
        let _ = writeln!(out, "{}", scenario.definition);
        let _ = writeln!(out, "setup: {}", SETUP.join("; "));
        out.push_str(&self.run.transcript());
        let rows: Vec<String> = self
            .final_rows
            .iter()
            .map(|(k, v)| format!("({k}, {v})"))
            .collect();
        let _ = writeln!(out, "final table: {}", rows.join(" "));
        let verdict = match &self.cell.verdict {
            Verdict::Occurred => "OCCURRED".to_string(),
            Verdict::Prevented { how } => format!("PREVENTED ({how})"),
            Verdict::Inconclusive { reason } => format!("INCONCLUSIVE ({reason})"),
        };
        let _ = writeln!(out, "verdict: {verdict}: {}", self.judgement.why);
        out
    }
}

async fn read_pairs(client: &tokio_postgres::Client, sql: &str) -> Result<Vec<(i64, i64)>, String> {
    let messages = client.simple_query(sql).await.map_err(|e| error_text(&e))?;
    messages
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(r),
            _ => None,
        })
        .map(|r| {
            let field = |k: usize| -> Result<i64, String> {
                r.get(k)
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| format!("unexpected value in column {k}: {:?}", r.get(k)))
            };
            Ok((field(0)?, field(1)?))
        })
        .collect()
}

fn error_text(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("ERROR {}: {}", db.code().code(), db.message()),
        None => e.to_string(),
    }
}

/// Concurrency outcomes: an abort by the isolation machinery (class 40: serialization failure,
/// deadlock, wound) and the "transaction is aborted" errors that follow one.
fn concurrency_error(code: &str) -> bool {
    code.starts_with("40") || code == "25P02"
}

/// The first step whose failure says nothing about isolation, if any.
fn inconclusive(run: &Run, preamble: usize) -> Option<String> {
    run.steps
        .iter()
        .enumerate()
        .skip(preamble)
        .find_map(|(i, s)| {
            let bad = match &s.outcome {
                Outcome::Error { code, .. } => s.cancelled || !concurrency_error(code),
                Outcome::Lost { .. } | Outcome::NotRun { .. } => true,
                Outcome::Rows { .. } | Outcome::Command { .. } => false,
            };
            bad.then(|| {
                let cancelled = if s.cancelled {
                    " (cancelled by the lab after the script stalled)"
                } else {
                    ""
                };
                format!(
                    "{}: `{}` -> {}{cancelled}",
                    run.session_name(i),
                    s.sql,
                    s.outcome
                )
            })
        })
}

/// How a phenomenon that did not occur was kept out: aborts (with SQLSTATE), blocked steps, or
/// neither (the reads simply did not show it).
fn how_prevented(run: &Run, preamble: usize) -> String {
    let mut facts = Vec::new();
    for (i, s) in run.steps.iter().enumerate().skip(preamble) {
        let who = run.session_name(i);
        // 25P02 only follows the abort that is reported already.
        let code = s.outcome.sqlstate().filter(|&c| c != "25P02");
        let fact = match (s.blocked_for, code) {
            (Some(waited), Some(code)) => format!(
                "{who} blocked at `{}`, then aborted with {code} after {} ms",
                s.sql,
                waited.as_millis()
            ),
            (Some(waited), None) => {
                format!("{who} blocked {} ms at `{}`", waited.as_millis(), s.sql)
            }
            (None, Some(code)) => format!("{who} aborted with {code} at `{}`", s.sql),
            (None, None) => continue,
        };
        facts.push(fact);
    }
    if facts.is_empty() {
        "not observed: no step blocked or failed".into()
    } else {
        facts.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::StepRecord;

    fn run_of(outcomes: Vec<(Outcome, Option<u64>)>) -> Run {
        let steps = outcomes
            .into_iter()
            .map(|(outcome, blocked)| StepRecord {
                session: 0,
                sql: "UPDATE anomaly_test SET value = 1".into(),
                outcome,
                blocked_for: blocked.map(Duration::from_millis),
                deferred: false,
                cancelled: false,
            })
            .collect();
        Run {
            sessions: vec!["T1".into()],
            steps,
            events: Vec::new(),
        }
    }

    fn error(code: &str) -> Outcome {
        Outcome::Error {
            code: code.into(),
            message: "m".into(),
        }
    }

    #[test]
    fn only_concurrency_errors_count_as_prevention() {
        let ok = Outcome::Command {
            tag: "UPDATE 1".into(),
        };
        let aborted = run_of(vec![
            (ok.clone(), Some(400)),
            (error("40P01"), None),
            (error("25P02"), None),
        ]);
        assert_eq!(inconclusive(&aborted, 0), None);
        let how = how_prevented(&aborted, 0);
        assert!(
            how.contains("blocked 400 ms") && how.contains("40P01"),
            "{how}"
        );
        assert!(!how.contains("25P02"), "{how}");
        // An unsupported statement proves nothing about isolation.
        let unsupported = run_of(vec![(ok.clone(), None), (error("0A000"), None)]);
        assert!(inconclusive(&unsupported, 0).is_some());
        // Neither does a stall the lab had to cancel.
        let mut stalled = run_of(vec![(error("57014"), Some(5000))]);
        stalled.steps[0].cancelled = true;
        assert!(inconclusive(&stalled, 0).is_some());
        assert_eq!(
            how_prevented(&run_of(vec![(ok, None)]), 0),
            "not observed: no step blocked or failed"
        );
    }
}
