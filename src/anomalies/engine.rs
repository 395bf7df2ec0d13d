//! The scenario engine: a script of SQL steps played over several real pgwire sessions, with
//! blocking detected from the outside, the way a person at several `psql` prompts sees it.
//!
//! ```text
//!   script:  T1: UPDATE ..   T2: UPDATE ..   T1: COMMIT   T2: COMMIT
//!              │               │ (no answer within the step timeout: *blocked*)
//!              ▼               ▼               ▼ (T1's COMMIT releases the lock)
//!   T1 conn  ──■───────────────────────────────■──────────────────────────────▶
//!   T2 conn  ──────────────────■┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄┄■ unblocked ──■ (its COMMIT) ─▶
//! ```
//!
//! Each session is one connection (one transaction at a time). A step is sent from its own task
//! and awaited for the step timeout; if the server has not answered by then the step is
//! *blocked*, the engine records that and goes on with the script. The blocked step's answer is
//! collected whenever it arrives (typically after another session commits) and the transcript
//! shows it as "…unblocked".
//!
//! Invariants:
//! - A session never has two statements in flight: while its step is blocked, its later steps are
//!   *deferred*: the script goes on with the following steps of other sessions, and the deferred
//!   ones run, in their order, as soon as the session is free again. That is what an interactive
//!   client does (it cannot type while its statement hangs) and what lets one script serve both
//!   engines that block (two-phase locking) and engines that do not (snapshots): under locking,
//!   the blocked transaction's remaining steps simply move behind the lock holder's.
//! - After every step, blocked steps of other sessions get up to the step timeout to finish
//!   before the next step runs, so a step that a COMMIT released has taken effect before the
//!   script goes on (the transcript order then matches cause and effect).
//! - If nothing can run because every remaining step waits behind a blocked session, the engine
//!   waits up to the stall limit for any of them; a stall that outlasts it (a deadlock nobody
//!   resolves) is cancelled with a cancel request and recorded as such: it is never mistaken for
//!   the server preventing anything.
//! - Whatever happens, every step of the script ends with a recorded outcome (possibly "not run"),
//!   and every session is rolled back and closed before `run_script` returns.
//!
//! Command tags: tokio-postgres reports only a statement's row count, not the server's tag, so
//! [`Outcome::Command`] carries a tag rebuilt from the statement's verb and that count
//! (`UPDATE 1`, `INSERT 0 1`, `BEGIN`). In particular a `COMMIT` of a failed transaction (which
//! PostgreSQL answers with the tag `ROLLBACK`) reads as `COMMIT`: judge commits by the errors
//! before them, as [`Run::session_failed`] does.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio_postgres::{Client, Config, NoTls, SimpleQueryMessage};

/// Why a script could not be played at all (as opposed to steps failing, which are outcomes).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot connect session {session}")]
    Connect {
        session: String,
        #[source]
        source: tokio_postgres::Error,
    },
}

/// One statement of a script, sent on one session's connection.
#[derive(Debug, Clone)]
pub struct Step {
    /// Index into [`Script::sessions`].
    pub session: usize,
    pub sql: String,
}

/// Named sessions and the order in which their statements are sent.
#[derive(Debug, Clone, Default)]
pub struct Script {
    pub sessions: Vec<String>,
    pub steps: Vec<Step>,
}

impl Script {
    pub fn new() -> Script {
        Script::default()
    }

    /// The index of session `name`, declaring it on first use.
    pub fn session(&mut self, name: &str) -> usize {
        match self.sessions.iter().position(|s| s == name) {
            Some(i) => i,
            None => {
                self.sessions.push(name.to_string());
                self.sessions.len() - 1
            }
        }
    }

    /// Appends a step for session `name` (declared on first use) and returns its index.
    pub fn step(&mut self, name: &str, sql: impl Into<String>) -> usize {
        let session = self.session(name);
        self.steps.push(Step {
            session,
            sql: sql.into(),
        });
        self.steps.len() - 1
    }
}

/// How long to wait for the server.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// A step that has not answered within this is blocked.
    pub step_timeout: Duration,
    /// How long the script may stand still (every remaining step behind a blocked one) before
    /// the blocked statements are cancelled.
    pub stall_limit: Duration,
}

impl Timing {
    /// The stall limit is generous next to the step timeout: servers that detect deadlocks
    /// (PostgreSQL: `deadlock_timeout`, 1 s by default) must get to do so first.
    pub fn new(step_timeout: Duration) -> Timing {
        Timing {
            step_timeout,
            stall_limit: (step_timeout * 20).max(Duration::from_secs(5)),
        }
    }
}

/// What the server answered to one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A statement that returns rows (possibly none); values in text format, `None` for NULL.
    Rows {
        columns: Vec<String>,
        rows: Vec<Vec<Option<String>>>,
    },
    /// A statement without a result set; `tag` is rebuilt (see the module comment).
    Command { tag: String },
    /// The server's error.
    Error { code: String, message: String },
    /// No answer from the server: the connection failed, or the statement outlasted the stall
    /// limit and even its cancellation went unanswered.
    Lost { reason: String },
    /// Never sent, because the session was lost before.
    NotRun { reason: String },
}

impl Outcome {
    /// The SQLSTATE of an error outcome.
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            Outcome::Error { code, .. } => Some(code),
            _ => None,
        }
    }

    pub fn is_success(&self) -> bool {
        matches!(self, Outcome::Rows { .. } | Outcome::Command { .. })
    }

    /// The command tag as the engine knows it (`SELECT n` for row results).
    pub fn tag(&self) -> Option<String> {
        match self {
            Outcome::Rows { rows, .. } => Some(format!("SELECT {}", rows.len())),
            Outcome::Command { tag } => Some(tag.clone()),
            _ => None,
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Rows { rows, .. } if rows.is_empty() => write!(f, "(no rows)"),
            Outcome::Rows { rows, .. } => {
                let shown: Vec<String> = rows
                    .iter()
                    .map(|r| {
                        let vals: Vec<&str> =
                            r.iter().map(|v| v.as_deref().unwrap_or("NULL")).collect();
                        format!("({})", vals.join(", "))
                    })
                    .collect();
                write!(f, "{}", shown.join(" "))
            }
            Outcome::Command { tag } => write!(f, "{tag}"),
            Outcome::Error { code, message } => write!(f, "ERROR {code}: {message}"),
            Outcome::Lost { reason } => write!(f, "LOST: {reason}"),
            Outcome::NotRun { reason } => write!(f, "not run: {reason}"),
        }
    }
}

/// The record of one step once the script is over.
#[derive(Debug, Clone)]
pub struct StepRecord {
    pub session: usize,
    pub sql: String,
    pub outcome: Outcome,
    /// `Some(total wait)` if the step was blocked (no answer within the step timeout).
    pub blocked_for: Option<Duration>,
    /// The step came up while its session was still blocked and ran later than scripted.
    pub deferred: bool,
    /// The engine cancelled the step after the stall limit.
    pub cancelled: bool,
}

/// What happened, in the order the engine saw it; the transcript is rendered from this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Step sent; it answered within the step timeout.
    Answered(usize),
    /// Step sent; no answer within the step timeout.
    Blocked(usize),
    /// A blocked step answered.
    Unblocked(usize),
    /// A step's turn came while its session was blocked; it waits for the session.
    Deferred(usize),
    /// The script stalled for the stall limit: the blocked step is being cancelled.
    Cancelling(usize),
}

/// The played script: per-step records and the event log.
#[derive(Debug, Clone)]
pub struct Run {
    pub sessions: Vec<String>,
    pub steps: Vec<StepRecord>,
    pub events: Vec<Event>,
}

impl Run {
    /// Step `i`'s session name.
    pub fn session_name(&self, i: usize) -> &str {
        &self.sessions[self.steps[i].session]
    }

    /// Whether any step of session `name` failed (error, lost, not run). A transaction whose
    /// session failed did not commit, whatever its `COMMIT` answered.
    pub fn session_failed(&self, name: &str) -> bool {
        self.steps
            .iter()
            .filter(|s| self.sessions[s.session] == name)
            .any(|s| !s.outcome.is_success())
    }

    /// The script as a transcript: each step as `T1: <sql>` with its answer, blocked steps'
    /// later answers as `…unblocked`.
    pub fn transcript(&self) -> String {
        let mut out = String::new();
        for ev in &self.events {
            let line = match *ev {
                Event::Answered(i) => format!(
                    "{}: {}\n      -> {}",
                    self.session_name(i),
                    self.steps[i].sql,
                    self.steps[i].outcome
                ),
                Event::Blocked(i) => format!(
                    "{}: {}\n      -> blocked…",
                    self.session_name(i),
                    self.steps[i].sql
                ),
                Event::Unblocked(i) => {
                    let waited = self.steps[i].blocked_for.unwrap_or_default().as_millis();
                    let how = if self.steps[i].cancelled {
                        "…cancelled by the lab"
                    } else {
                        "…unblocked"
                    };
                    format!(
                        "{}: {how} after {waited} ms: {}",
                        self.session_name(i),
                        self.steps[i].outcome
                    )
                }
                Event::Deferred(i) => format!(
                    "{}: (still blocked; its next step waits: {})",
                    self.session_name(i),
                    self.steps[i].sql
                ),
                Event::Cancelling(i) => format!(
                    "{}: (script stalled behind this blocked step; cancelling it)",
                    self.session_name(i)
                ),
            };
            out.push_str(&line);
            out.push('\n');
        }
        out
    }
}

/// Connects one client and drives its connection on a task.
pub async fn connect(config: &Config) -> Result<(Client, JoinHandle<()>), tokio_postgres::Error> {
    let (client, conn) = config.connect(NoTls).await?;
    let task = tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "connection ended with an error");
        }
    });
    Ok((client, task))
}

type StepResult = Result<Vec<SimpleQueryMessage>, tokio_postgres::Error>;

struct Pending {
    step: usize,
    handle: JoinHandle<StepResult>,
    started: Instant,
}

struct Session {
    client: Option<Arc<Client>>,
    conn: JoinHandle<()>,
    pending: Option<Pending>,
    lost: bool,
}

impl Session {
    fn busy(&self) -> bool {
        self.pending.is_some()
    }
}

struct Player<'a> {
    script: &'a Script,
    timing: Timing,
    sessions: Vec<Session>,
    records: Vec<Option<StepRecord>>,
    deferred: HashSet<usize>,
    events: Vec<Event>,
}

/// Plays `script`, one connection per session, and returns what every step answered.
pub async fn run_script(
    config: &Config,
    script: &Script,
    timing: Timing,
) -> Result<Run, EngineError> {
    let mut sessions = Vec::with_capacity(script.sessions.len());
    for name in &script.sessions {
        match connect(config).await {
            Ok((client, conn)) => sessions.push(Session {
                client: Some(Arc::new(client)),
                conn,
                pending: None,
                lost: false,
            }),
            Err(source) => {
                let mut p = Player::new(script, timing, sessions);
                p.close().await;
                return Err(EngineError::Connect {
                    session: name.clone(),
                    source,
                });
            }
        }
    }
    let mut player = Player::new(script, timing, sessions);
    player.play().await;
    player.close().await;
    let steps = player
        .records
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            r.unwrap_or_else(|| StepRecord {
                session: script.steps[i].session,
                sql: script.steps[i].sql.clone(),
                outcome: Outcome::NotRun {
                    reason: "the script ended first".into(),
                },
                blocked_for: None,
                deferred: false,
                cancelled: false,
            })
        })
        .collect();
    Ok(Run {
        sessions: script.sessions.clone(),
        steps,
        events: player.events,
    })
}

impl<'a> Player<'a> {
    fn new(script: &'a Script, timing: Timing, sessions: Vec<Session>) -> Player<'a> {
        Player {
            script,
            timing,
            sessions,
            records: vec![None; script.steps.len()],
            deferred: HashSet::new(),
            events: Vec::new(),
        }
    }

    async fn play(&mut self) {
        let mut remaining: Vec<usize> = (0..self.script.steps.len()).collect();
        while !remaining.is_empty() {
            self.collect_finished().await;
            remaining.retain(|&i| {
                let s = self.script.steps[i].session;
                if self.sessions[s].lost {
                    self.records[i] = Some(self.record(
                        i,
                        Outcome::NotRun {
                            reason: "the session was lost before".into(),
                        },
                    ));
                    false
                } else {
                    true
                }
            });
            let next = remaining
                .iter()
                .position(|&i| !self.sessions[self.script.steps[i].session].busy());
            // Steps passed over are the ones behind a blocked session.
            let passed = next.unwrap_or(remaining.len());
            let mut noted = HashSet::new();
            for &i in &remaining[..passed] {
                let s = self.script.steps[i].session;
                // The transcript names only the session's next step; the ones after it wait too.
                if self.deferred.insert(i) && noted.insert(s) {
                    self.events.push(Event::Deferred(i));
                }
                noted.insert(s);
            }
            match next {
                Some(pos) => {
                    let i = remaining.remove(pos);
                    self.execute(i).await;
                    let just = self.script.steps[i].session;
                    self.settle(Some(just)).await;
                }
                None if remaining.is_empty() => {}
                None => self.unstall().await,
            }
        }
        // Blocked steps at the end of the script still get their answer (or the stall limit).
        while self.sessions.iter().any(Session::busy) {
            self.unstall().await;
        }
    }

    fn record(&self, i: usize, outcome: Outcome) -> StepRecord {
        StepRecord {
            session: self.script.steps[i].session,
            sql: self.script.steps[i].sql.clone(),
            outcome,
            blocked_for: None,
            deferred: self.deferred.contains(&i),
            cancelled: false,
        }
    }

    async fn execute(&mut self, i: usize) {
        let step = &self.script.steps[i];
        let s = step.session;
        let Some(client) = self.sessions[s].client.clone() else {
            return;
        };
        let sql = step.sql.clone();
        tracing::debug!(session = %self.script.sessions[s], sql = %sql, "step");
        let started = Instant::now();
        let mut handle = tokio::spawn(async move { client.simple_query(&sql).await });
        match tokio::time::timeout(self.timing.step_timeout, &mut handle).await {
            Ok(joined) => {
                let outcome = to_outcome(&self.script.steps[i].sql, joined);
                if matches!(outcome, Outcome::Lost { .. }) {
                    self.sessions[s].lost = true;
                }
                self.records[i] = Some(self.record(i, outcome));
                self.events.push(Event::Answered(i));
            }
            Err(_) => {
                tracing::debug!(session = %self.script.sessions[s], "step blocked");
                self.sessions[s].pending = Some(Pending {
                    step: i,
                    handle,
                    started,
                });
                self.events.push(Event::Blocked(i));
            }
        }
    }

    /// Records the answers of blocked steps that have arrived.
    async fn collect_finished(&mut self) {
        for s in 0..self.sessions.len() {
            let done = self.sessions[s]
                .pending
                .as_ref()
                .is_some_and(|p| p.handle.is_finished());
            if done {
                self.finish_pending(s, false).await;
            }
        }
    }

    async fn finish_pending(&mut self, s: usize, cancelled: bool) {
        let Some(p) = self.sessions[s].pending.take() else {
            return;
        };
        let waited = p.started.elapsed();
        let outcome = to_outcome(&self.script.steps[p.step].sql, p.handle.await);
        if matches!(outcome, Outcome::Lost { .. }) {
            self.sessions[s].lost = true;
        }
        tracing::debug!(session = %self.script.sessions[s], ?waited, "blocked step answered");
        let mut rec = self.record(p.step, outcome);
        rec.blocked_for = Some(waited);
        rec.cancelled = cancelled;
        self.records[p.step] = Some(rec);
        self.events.push(Event::Unblocked(p.step));
    }

    /// Gives blocked steps of sessions other than `except` up to the step timeout to finish.
    async fn settle(&mut self, except: Option<usize>) {
        let deadline = Instant::now() + self.timing.step_timeout;
        loop {
            self.collect_finished().await;
            let waiting = self
                .sessions
                .iter()
                .enumerate()
                .any(|(s, sess)| Some(s) != except && sess.busy());
            if !waiting || Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Nothing can run: waits up to the stall limit for any blocked step; past it, cancels
    /// every blocked step and, if even that gets no answer, gives their sessions up.
    async fn unstall(&mut self) {
        let deadline = Instant::now() + self.timing.stall_limit;
        while Instant::now() < deadline {
            if self
                .sessions
                .iter()
                .any(|s| s.pending.as_ref().is_some_and(|p| p.handle.is_finished()))
            {
                self.collect_finished().await;
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        for s in 0..self.sessions.len() {
            let Some(step) = self.sessions[s].pending.as_ref().map(|p| p.step) else {
                continue;
            };
            tracing::warn!(
                session = %self.script.sessions[s],
                sql = %self.script.steps[step].sql,
                limit = ?self.timing.stall_limit,
                "script stalled behind a blocked step; cancelling it"
            );
            self.events.push(Event::Cancelling(step));
            if let Some(client) = &self.sessions[s].client {
                let token = client.cancel_token();
                match tokio::time::timeout(self.timing.stall_limit, token.cancel_query(NoTls)).await
                {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::warn!(error = %e, "cancel request failed"),
                    Err(_) => tracing::warn!("cancel request timed out"),
                }
            }
            let answered = match self.sessions[s].pending.as_mut() {
                Some(p) => tokio::time::timeout(self.timing.stall_limit, async {
                    while !p.handle.is_finished() {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                })
                .await
                .is_ok(),
                None => true,
            };
            if answered {
                self.finish_pending(s, true).await;
            } else if let Some(p) = self.sessions[s].pending.take() {
                p.handle.abort();
                self.sessions[s].lost = true;
                self.sessions[s].client = None;
                let mut rec = self.record(
                    p.step,
                    Outcome::Lost {
                        reason: "no answer even to a cancel request".into(),
                    },
                );
                rec.blocked_for = Some(p.started.elapsed());
                rec.cancelled = true;
                self.records[p.step] = Some(rec);
                self.events.push(Event::Unblocked(p.step));
            }
        }
    }

    /// Rolls back whatever is open and closes every connection.
    async fn close(&mut self) {
        for s in 0..self.sessions.len() {
            if let Some(p) = self.sessions[s].pending.take() {
                p.handle.abort();
            }
            if let Some(client) = self.sessions[s].client.take()
                && !self.sessions[s].lost
            {
                let _ =
                    tokio::time::timeout(self.timing.stall_limit, client.simple_query("ROLLBACK"))
                        .await;
            }
            let conn = &mut self.sessions[s].conn;
            if tokio::time::timeout(Duration::from_secs(1), &mut *conn)
                .await
                .is_err()
            {
                conn.abort();
            }
        }
    }
}

fn to_outcome(sql: &str, joined: Result<StepResult, tokio::task::JoinError>) -> Outcome {
    let result = match joined {
        Ok(r) => r,
        Err(e) => {
            return Outcome::Lost {
                reason: format!("step task failed: {e}"),
            };
        }
    };
    match result {
        Ok(messages) => {
            let mut columns: Option<Vec<String>> = None;
            let mut rows = Vec::new();
            let mut count = 0;
            for m in messages {
                match m {
                    SimpleQueryMessage::RowDescription(cols) => {
                        columns = Some(cols.iter().map(|c| c.name().to_string()).collect());
                    }
                    SimpleQueryMessage::Row(r) => {
                        if columns.is_none() {
                            columns =
                                Some(r.columns().iter().map(|c| c.name().to_string()).collect());
                        }
                        rows.push((0..r.len()).map(|k| r.get(k).map(str::to_string)).collect());
                    }
                    SimpleQueryMessage::CommandComplete(n) => count = n,
                    _ => {}
                }
            }
            match columns {
                Some(columns) => Outcome::Rows { columns, rows },
                None => Outcome::Command {
                    tag: command_tag(sql, count),
                },
            }
        }
        Err(e) => match e.as_db_error() {
            Some(db) => Outcome::Error {
                code: db.code().code().to_string(),
                message: db.message().to_string(),
            },
            None => Outcome::Lost {
                reason: e.to_string(),
            },
        },
    }
}

/// PostgreSQL's command tag for `sql`, rebuilt from its verb and the affected-row count.
pub fn command_tag(sql: &str, count: u64) -> String {
    let mut words = sql
        .split(|c: char| c.is_whitespace() || c == ';' || c == '(')
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_uppercase);
    let verb = words.next().unwrap_or_default();
    match verb.as_str() {
        "INSERT" => format!("INSERT 0 {count}"),
        "UPDATE" | "DELETE" | "MERGE" | "FETCH" | "MOVE" | "COPY" => format!("{verb} {count}"),
        "START" => "START TRANSACTION".into(),
        "ABORT" => "ROLLBACK".into(),
        "END" => "COMMIT".into(),
        "LOCK" => "LOCK TABLE".into(),
        "TRUNCATE" => "TRUNCATE TABLE".into(),
        "PREPARE" if words.next().as_deref() == Some("TRANSACTION") => "PREPARE TRANSACTION".into(),
        "COMMIT" | "ROLLBACK" if words.next().as_deref() == Some("PREPARED") => {
            format!("{verb} PREPARED")
        }
        "CREATE" | "DROP" | "ALTER" => {
            let object = words
                .find(|w| {
                    !matches!(
                        w.as_str(),
                        "UNIQUE" | "TEMP" | "TEMPORARY" | "OR" | "REPLACE"
                    )
                })
                .unwrap_or_default();
            format!("{verb} {object}")
        }
        _ => verb,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_follow_postgres() {
        assert_eq!(command_tag("update t set a = 1", 2), "UPDATE 2");
        assert_eq!(command_tag("INSERT INTO t VALUES (1)", 1), "INSERT 0 1");
        assert_eq!(
            command_tag("begin isolation level serializable", 0),
            "BEGIN"
        );
        assert_eq!(
            command_tag("CREATE UNIQUE INDEX i ON t (a)", 0),
            "CREATE INDEX"
        );
        assert_eq!(command_tag("drop table if exists t", 0), "DROP TABLE");
        assert_eq!(command_tag("  commit;", 0), "COMMIT");
        assert_eq!(
            command_tag("LOCK t IN ACCESS EXCLUSIVE MODE", 0),
            "LOCK TABLE"
        );
        assert_eq!(command_tag("COMMIT PREPARED 'x'", 0), "COMMIT PREPARED");
        assert_eq!(command_tag("ROLLBACK TO SAVEPOINT a", 0), "ROLLBACK");
    }

    #[test]
    fn script_declares_sessions_on_first_use() {
        let mut s = Script::new();
        s.step("T1", "BEGIN");
        s.step("T2", "BEGIN");
        s.step("T1", "COMMIT");
        assert_eq!(s.sessions, ["T1", "T2"]);
        assert_eq!(s.steps[2].session, 0);
    }
}
