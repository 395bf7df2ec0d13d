//! The ten scenarios: for each of Adya's phenomena as Hermitage names them, a script that lets the
//! phenomenon happen if the engine allows it, and a judge that decides from what the script
//! observed (values read, final table, which transactions committed) whether it did.
//!
//! Every scenario starts from the same table, written fresh before each run:
//!
//! ```text
//!   anomaly_test (id int primary key, value int):   (1, 10)   (2, 20)
//!   x = row 1, y = row 2
//! ```
//!
//! Rules the scripts keep, so that one script serves every engine:
//! - Transactions begin in session order (T1 before T2 before T3), so under wait-die /
//!   wound-wait T1 is always the oldest.
//! - Writes store values that tell their writer apart (T1 writes 11/21, T2 writes 12/22 ...), so
//!   the final table says whose write survived.
//! - Reads whose result a judge needs carry a label; a judge only looks at labelled reads that
//!   succeeded, the final table, and whether a session failed anywhere (a transaction with a
//!   failed step did not commit, whatever its COMMIT answered).
//! - Scripts are written in Hermitage's interleaving for an engine that never blocks; an engine
//!   that locks blocks some step and the engine's deferral moves that transaction's remaining
//!   steps behind the lock holder (see `engine`), which is exactly how such an engine prevents
//!   the phenomenon.

use super::engine::{Outcome, Run};
use super::matrix::Anomaly;

/// The scenario table's name.
pub const TABLE: &str = "anomaly_test";

/// A labelled step: (session, label or "", SQL).
type ScriptStep = (&'static str, &'static str, &'static str);

/// One phenomenon's script and judge.
pub struct Scenario {
    pub anomaly: Anomaly,
    /// The phenomenon in one sentence, for transcripts.
    pub definition: &'static str,
    /// Sessions in the order their transactions begin.
    pub sessions: &'static [&'static str],
    pub steps: &'static [ScriptStep],
    judge: fn(&Observation) -> Judgement,
}

impl Scenario {
    pub fn judge(&self, obs: &Observation) -> Judgement {
        (self.judge)(obs)
    }
}

/// Whether the phenomenon was observed, and the observation that says so.
#[derive(Debug, Clone)]
pub struct Judgement {
    pub occurred: bool,
    pub why: String,
}

fn occurred(why: impl Into<String>) -> Judgement {
    Judgement {
        occurred: true,
        why: why.into(),
    }
}

fn not_seen(why: impl Into<String>) -> Judgement {
    Judgement {
        occurred: false,
        why: why.into(),
    }
}

/// What a played scenario showed; the only input of a judge.
pub struct Observation<'a> {
    pub run: &'a Run,
    /// Label → index of the step in `run`.
    pub labels: Vec<(&'static str, usize)>,
    /// `(id, value)` of every row after all sessions ended, by id.
    pub final_rows: Vec<(i64, i64)>,
}

impl Observation<'_> {
    /// The `(id, value)` rows a labelled read returned, if it succeeded.
    pub fn rows(&self, label: &str) -> Option<Vec<(i64, i64)>> {
        let &(_, i) = self.labels.iter().find(|(l, _)| *l == label)?;
        match &self.run.steps[i].outcome {
            Outcome::Rows { rows, .. } => rows
                .iter()
                .map(|r| {
                    let id = r.first()?.as_deref()?.parse().ok()?;
                    let value = r.get(1)?.as_deref()?.parse().ok()?;
                    Some((id, value))
                })
                .collect(),
            _ => None,
        }
    }

    /// The value of row `id` in a labelled read (None if the read failed or lacks the row).
    pub fn value(&self, label: &str, id: i64) -> Option<i64> {
        self.rows(label)?
            .into_iter()
            .find(|&(k, _)| k == id)
            .map(|(_, v)| v)
    }

    /// Whether `session`'s transaction committed: every one of its steps succeeded, COMMIT last.
    pub fn committed(&self, session: &str) -> bool {
        !self.run.session_failed(session)
    }

    pub fn final_value(&self, id: i64) -> Option<i64> {
        self.final_rows
            .iter()
            .find(|&&(k, _)| k == id)
            .map(|&(_, v)| v)
    }
}

fn show(v: Option<i64>) -> String {
    v.map_or("nothing".into(), |v| v.to_string())
}

fn show_rows(rows: &Option<Vec<(i64, i64)>>) -> String {
    match rows {
        None => "no result (the read failed)".into(),
        Some(r) if r.is_empty() => "no rows".into(),
        Some(r) => r
            .iter()
            .map(|(k, v)| format!("({k}, {v})"))
            .collect::<Vec<_>>()
            .join(" "),
    }
}

/// All scenarios, in matrix column order.
pub fn all() -> Vec<Scenario> {
    vec![
        g0(),
        g1a(),
        g1b(),
        g1c(),
        otv(),
        pmp(),
        p4(),
        g_single(),
        g2_item(),
        g2(),
    ]
}

/// The scenario for `anomaly`.
pub fn scenario(anomaly: Anomaly) -> Scenario {
    all()
        .into_iter()
        .find(|s| s.anomaly == anomaly)
        .unwrap_or_else(g0)
}

/// G0: each transaction overwrites the other's uncommitted write, in opposite orders on x and y.
/// Without write locks the final table mixes the two (x from T2, y from T1): a ww cycle. With
/// write locks the second write of each row waits, the two waits form a deadlock, and one
/// transaction must be aborted (or one waits and the other is wounded).
fn g0() -> Scenario {
    Scenario {
        anomaly: Anomaly::G0,
        definition: "write cycle: T1 and T2 overwrite each other's uncommitted writes in opposite orders on x and y",
        sessions: &["T1", "T2"],
        steps: &[
            ("T1", "", "UPDATE anomaly_test SET value = 11 WHERE id = 1"),
            ("T2", "", "UPDATE anomaly_test SET value = 22 WHERE id = 2"),
            ("T2", "", "UPDATE anomaly_test SET value = 12 WHERE id = 1"),
            ("T1", "", "UPDATE anomaly_test SET value = 21 WHERE id = 2"),
            ("T1", "", "COMMIT"),
            ("T2", "", "COMMIT"),
        ],
        judge: |o| {
            let (x, y) = (o.final_value(1), o.final_value(2));
            match (x, y) {
                (Some(12), Some(21)) | (Some(11), Some(22)) => occurred(format!(
                    "final x = {}, y = {}: the writes to x and y were ordered differently, so no serial order explains the table",
                    show(x),
                    show(y)
                )),
                _ => not_seen(format!(
                    "final x = {}, y = {}: both rows come from the same transaction (or the initial state)",
                    show(x),
                    show(y)
                )),
            }
        },
    }
}

/// G1a: T2 reads while T1's update is uncommitted; T1 then aborts. Seeing 101 at any point means
/// T2 read a write that never existed.
fn g1a() -> Scenario {
    Scenario {
        anomaly: Anomaly::G1a,
        definition: "aborted read: T2 reads a value written by T1, which later aborts",
        sessions: &["T1", "T2"],
        steps: &[
            ("T1", "", "UPDATE anomaly_test SET value = 101 WHERE id = 1"),
            ("T2", "r1", "SELECT id, value FROM anomaly_test ORDER BY id"),
            ("T1", "", "ROLLBACK"),
            ("T2", "r2", "SELECT id, value FROM anomaly_test ORDER BY id"),
            ("T2", "", "COMMIT"),
        ],
        judge: |o| {
            let (r1, r2) = (o.rows("r1"), o.rows("r2"));
            let saw = |r: &Option<Vec<(i64, i64)>>| {
                r.as_ref()
                    .is_some_and(|r| r.iter().any(|&(k, v)| k == 1 && v == 101))
            };
            let text = format!("T2 read {} then {}", show_rows(&r1), show_rows(&r2));
            if saw(&r1) || saw(&r2) {
                occurred(format!("{text}: 101 is T1's aborted write"))
            } else {
                not_seen(format!("{text}: never T1's aborted 101"))
            }
        },
    }
}

/// G1b: T1 writes 101, then 11, and commits 11; T2 reads in between. 101 was never a committed
/// state, so reading it is an intermediate read.
fn g1b() -> Scenario {
    Scenario {
        anomaly: Anomaly::G1b,
        definition: "intermediate read: T2 reads a value T1 overwrote before committing",
        sessions: &["T1", "T2"],
        steps: &[
            ("T1", "", "UPDATE anomaly_test SET value = 101 WHERE id = 1"),
            ("T2", "r1", "SELECT id, value FROM anomaly_test ORDER BY id"),
            ("T1", "", "UPDATE anomaly_test SET value = 11 WHERE id = 1"),
            ("T1", "", "COMMIT"),
            ("T2", "r2", "SELECT id, value FROM anomaly_test ORDER BY id"),
            ("T2", "", "COMMIT"),
        ],
        judge: |o| {
            let (r1, r2) = (o.rows("r1"), o.rows("r2"));
            let saw = |r: &Option<Vec<(i64, i64)>>| {
                r.as_ref()
                    .is_some_and(|r| r.iter().any(|&(k, v)| k == 1 && v == 101))
            };
            let text = format!("T2 read {} then {}", show_rows(&r1), show_rows(&r2));
            if saw(&r1) || saw(&r2) {
                occurred(format!(
                    "{text}: 101 was T1's intermediate value (it committed 11)"
                ))
            } else {
                not_seen(format!("{text}: never the intermediate 101"))
            }
        },
    }
}

/// G1c: each transaction writes one row and then reads the other's row. If each sees the other's
/// (uncommitted) write, information flowed T1 → T2 and T2 → T1: a wr cycle.
fn g1c() -> Scenario {
    Scenario {
        anomaly: Anomaly::G1c,
        definition: "circular information flow: T1 reads T2's write and T2 reads T1's write",
        sessions: &["T1", "T2"],
        steps: &[
            ("T1", "", "UPDATE anomaly_test SET value = 11 WHERE id = 1"),
            ("T2", "", "UPDATE anomaly_test SET value = 22 WHERE id = 2"),
            (
                "T1",
                "t1_y",
                "SELECT id, value FROM anomaly_test WHERE id = 2",
            ),
            (
                "T2",
                "t2_x",
                "SELECT id, value FROM anomaly_test WHERE id = 1",
            ),
            ("T1", "", "COMMIT"),
            ("T2", "", "COMMIT"),
        ],
        judge: |o| {
            let (y, x) = (o.value("t1_y", 2), o.value("t2_x", 1));
            let text = format!("T1 read y = {}, T2 read x = {}", show(y), show(x));
            if y == Some(22) && x == Some(11) {
                occurred(format!("{text}: each read the other's write"))
            } else {
                not_seen(format!(
                    "{text}: no read of each other's writes in both directions"
                ))
            }
        },
    }
}

/// OTV: T2 overwrites both of T1's writes (x = 12, y = 18) and commits. T3 reads while T2 has
/// written x but not yet y, and again after T2 committed. Once T3 has seen any of T2's writes it
/// must see all of them; seeing T2's x beside T1's y, or T2's write and later an older version,
/// means part of T2 vanished from T3's view.
fn otv() -> Scenario {
    Scenario {
        anomaly: Anomaly::Otv,
        definition: "observed transaction vanishes: T3 sees some of T2's writes but not others",
        sessions: &["T1", "T2", "T3"],
        steps: &[
            ("T1", "", "UPDATE anomaly_test SET value = 11 WHERE id = 1"),
            ("T1", "", "UPDATE anomaly_test SET value = 19 WHERE id = 2"),
            ("T2", "", "UPDATE anomaly_test SET value = 12 WHERE id = 1"),
            ("T1", "", "COMMIT"),
            ("T3", "r1", "SELECT id, value FROM anomaly_test ORDER BY id"),
            ("T2", "", "UPDATE anomaly_test SET value = 18 WHERE id = 2"),
            ("T2", "", "COMMIT"),
            ("T3", "r2", "SELECT id, value FROM anomaly_test ORDER BY id"),
            ("T3", "", "COMMIT"),
        ],
        judge: |o| {
            let reads = [o.rows("r1"), o.rows("r2")];
            let text = format!(
                "T3 read {} then {}",
                show_rows(&reads[0]),
                show_rows(&reads[1])
            );
            if !o.committed("T2") {
                return not_seen(format!(
                    "{text}; T2 did not commit, so it has no writes to observe"
                ));
            }
            let t2_value = |id: i64| match id {
                1 => Some(12),
                2 => Some(18),
                _ => None,
            };
            let mut seen_t2 = false;
            for read in reads.iter().flatten() {
                seen_t2 |= read.iter().any(|&(k, v)| t2_value(k) == Some(v));
                let missing = read
                    .iter()
                    .find(|&&(k, v)| t2_value(k).is_some_and(|t2| t2 != v));
                if let (true, Some(&(k, v))) = (seen_t2, missing) {
                    return occurred(format!(
                        "{text}: after seeing T2's writes T3 saw row {k} = {v}, not T2's {}",
                        show(t2_value(k))
                    ));
                }
            }
            not_seen(format!(
                "{text}: T2's writes appear all together or not at all"
            ))
        },
    }
}

/// PMP: T1 evaluates a predicate, T2 inserts a row matching it and commits, T1 evaluates an
/// overlapping predicate again. If the second read shows the row the first did not, T1's
/// predicate reads saw two different states.
fn pmp() -> Scenario {
    Scenario {
        anomaly: Anomaly::Pmp,
        definition: "predicate-many-preceders: T1's two predicate reads disagree about T2's insert",
        sessions: &["T1", "T2"],
        steps: &[
            (
                "T1",
                "r1",
                "SELECT id, value FROM anomaly_test WHERE value = 30",
            ),
            (
                "T2",
                "",
                "INSERT INTO anomaly_test (id, value) VALUES (3, 30)",
            ),
            ("T2", "", "COMMIT"),
            (
                "T1",
                "r2",
                "SELECT id, value FROM anomaly_test WHERE value % 3 = 0 ORDER BY id",
            ),
            ("T1", "", "COMMIT"),
        ],
        judge: |o| {
            let (r1, r2) = (o.rows("r1"), o.rows("r2"));
            let text = format!(
                "T1's predicate reads returned {} then {}",
                show_rows(&r1),
                show_rows(&r2)
            );
            let has3 = |r: &Vec<(i64, i64)>| r.iter().any(|&(k, _)| k == 3);
            match (&r1, &r2) {
                (Some(a), Some(b)) if !has3(a) && has3(b) => {
                    occurred(format!("{text}: T2's row 3 appeared between them"))
                }
                _ => not_seen(format!("{text}: both saw the same state")),
            }
        },
    }
}

/// P4: both transactions read x = 10, then each stores its own increment of what it read
/// (T1: 10 + 1, T2: 10 + 5). If both commit, one increment is gone.
fn p4() -> Scenario {
    Scenario {
        anomaly: Anomaly::P4,
        definition: "lost update: T1 and T2 both read x and write a value computed from it; both commit",
        sessions: &["T1", "T2"],
        steps: &[
            (
                "T1",
                "r1",
                "SELECT id, value FROM anomaly_test WHERE id = 1",
            ),
            (
                "T2",
                "r2",
                "SELECT id, value FROM anomaly_test WHERE id = 1",
            ),
            ("T1", "", "UPDATE anomaly_test SET value = 11 WHERE id = 1"),
            ("T2", "", "UPDATE anomaly_test SET value = 15 WHERE id = 1"),
            ("T1", "", "COMMIT"),
            ("T2", "", "COMMIT"),
        ],
        judge: |o| {
            let (a, b) = (o.value("r1", 1), o.value("r2", 1));
            let (c1, c2) = (o.committed("T1"), o.committed("T2"));
            let fin = o.final_value(1);
            let text = format!(
                "T1 read {}, T2 read {}; T1 {}, T2 {}; final x = {}",
                show(a),
                show(b),
                if c1 { "committed" } else { "did not commit" },
                if c2 { "committed" } else { "did not commit" },
                show(fin)
            );
            if a == Some(10) && b == Some(10) && c1 && c2 && fin != Some(16) {
                occurred(format!(
                    "{text}: both increments were based on 10, one of them is lost"
                ))
            } else {
                not_seen(text)
            }
        },
    }
}

/// G-single: T1 reads x, T2 changes x and y together and commits, T1 reads y. T1 seeing the old x
/// with the new y is a view no serial order gives (one anti-dependency T1 → T2, one dependency
/// T2 → T1).
fn g_single() -> Scenario {
    Scenario {
        anomaly: Anomaly::GSingle,
        definition: "read skew: T1 reads x before and y after T2's atomic change of both",
        sessions: &["T1", "T2"],
        steps: &[
            (
                "T1",
                "r1",
                "SELECT id, value FROM anomaly_test WHERE id = 1",
            ),
            ("T2", "", "SELECT id, value FROM anomaly_test WHERE id = 1"),
            ("T2", "", "SELECT id, value FROM anomaly_test WHERE id = 2"),
            ("T2", "", "UPDATE anomaly_test SET value = 12 WHERE id = 1"),
            ("T2", "", "UPDATE anomaly_test SET value = 18 WHERE id = 2"),
            ("T2", "", "COMMIT"),
            (
                "T1",
                "r2",
                "SELECT id, value FROM anomaly_test WHERE id = 2",
            ),
            ("T1", "", "COMMIT"),
        ],
        judge: |o| {
            let (x, y) = (o.value("r1", 1), o.value("r2", 2));
            let text = format!("T1 read x = {}, y = {}", show(x), show(y));
            match (x, y) {
                (Some(10), Some(18)) | (Some(12), Some(20)) => {
                    occurred(format!("{text}: one from before T2, one from after it"))
                }
                _ => not_seen(format!("{text}: a consistent pair")),
            }
        },
    }
}

/// G2-item: both read x and y, then each updates a different one of them (as if keeping a rule
/// over both, like x + y >= 30) and commits. If both commit without either having seen the
/// other's write, there is a cycle of two anti-dependencies: write skew.
fn g2_item() -> Scenario {
    Scenario {
        anomaly: Anomaly::G2Item,
        definition: "write skew: T1 and T2 read x and y, then T1 writes x and T2 writes y; both commit",
        sessions: &["T1", "T2"],
        steps: &[
            (
                "T1",
                "r1",
                "SELECT id, value FROM anomaly_test WHERE id IN (1, 2) ORDER BY id",
            ),
            (
                "T2",
                "r2",
                "SELECT id, value FROM anomaly_test WHERE id IN (1, 2) ORDER BY id",
            ),
            ("T1", "", "UPDATE anomaly_test SET value = 11 WHERE id = 1"),
            ("T2", "", "UPDATE anomaly_test SET value = 21 WHERE id = 2"),
            ("T1", "", "COMMIT"),
            ("T2", "", "COMMIT"),
        ],
        judge: |o| {
            let (r1, r2) = (o.rows("r1"), o.rows("r2"));
            let (c1, c2) = (o.committed("T1"), o.committed("T2"));
            let text = format!(
                "T1 read {}, T2 read {}; T1 {}, T2 {}",
                show_rows(&r1),
                show_rows(&r2),
                if c1 { "committed" } else { "did not commit" },
                if c2 { "committed" } else { "did not commit" },
            );
            let t1_missed_t2 = o.value("r1", 2) == Some(20);
            let t2_missed_t1 = o.value("r2", 1) == Some(10);
            if c1 && c2 && t1_missed_t2 && t2_missed_t1 {
                occurred(format!(
                    "{text}: neither saw the other's write, yet both committed"
                ))
            } else {
                not_seen(text)
            }
        },
    }
}

/// G2: like G2-item, but the reads are predicates and the writes are inserts matching them.
/// Both transactions see no row with a value divisible by 3 and each inserts one; if both commit,
/// each missed the other's row: a cycle of predicate anti-dependencies.
fn g2() -> Scenario {
    Scenario {
        anomaly: Anomaly::G2,
        definition: "predicate write skew: T1 and T2 each find no match for a predicate and insert a matching row; both commit",
        sessions: &["T1", "T2"],
        steps: &[
            (
                "T1",
                "r1",
                "SELECT id, value FROM anomaly_test WHERE value % 3 = 0 ORDER BY id",
            ),
            (
                "T2",
                "r2",
                "SELECT id, value FROM anomaly_test WHERE value % 3 = 0 ORDER BY id",
            ),
            (
                "T1",
                "",
                "INSERT INTO anomaly_test (id, value) VALUES (3, 30)",
            ),
            (
                "T2",
                "",
                "INSERT INTO anomaly_test (id, value) VALUES (4, 42)",
            ),
            ("T1", "", "COMMIT"),
            ("T2", "", "COMMIT"),
        ],
        judge: |o| {
            let (r1, r2) = (o.rows("r1"), o.rows("r2"));
            let (c1, c2) = (o.committed("T1"), o.committed("T2"));
            let text = format!(
                "T1's predicate read {}, T2's {}; T1 {}, T2 {}",
                show_rows(&r1),
                show_rows(&r2),
                if c1 { "committed" } else { "did not commit" },
                if c2 { "committed" } else { "did not commit" },
            );
            let lacks = |r: &Option<Vec<(i64, i64)>>, id: i64| {
                r.as_ref().is_some_and(|r| !r.iter().any(|&(k, _)| k == id))
            };
            if c1 && c2 && lacks(&r1, 4) && lacks(&r2, 3) {
                occurred(format!(
                    "{text}: each missed the other's matching insert, yet both committed"
                ))
            } else {
                not_seen(text)
            }
        },
    }
}

/// The judges against hand-made observations of the behaviours PostgreSQL cannot show (dirty
/// reads at READ UNCOMMITTED, two-phase locking at SERIALIZABLE), so that the `occ` side of every
/// judge is exercised even though the live validation runs against PostgreSQL.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::anomalies::engine::{Script, StepRecord, command_tag};

    /// Judges `anomaly` on a fabricated run: labelled reads return `reads`, the sessions in
    /// `failed` fail at COMMIT, every other step succeeds; the table ends as `final_rows`.
    fn judge(
        anomaly: Anomaly,
        reads: &[(&str, &[(i64, i64)])],
        failed: &[&str],
        final_rows: &[(i64, i64)],
    ) -> bool {
        let s = scenario(anomaly);
        let mut script = Script::new();
        let mut steps = Vec::new();
        let mut labels = Vec::new();
        for &(session, label, sql) in s.steps {
            let i = script.step(session, sql);
            let outcome = if let Some((_, rows)) = reads.iter().find(|(l, _)| *l == label) {
                Outcome::Rows {
                    columns: vec!["id".into(), "value".into()],
                    rows: rows
                        .iter()
                        .map(|(k, v)| vec![Some(k.to_string()), Some(v.to_string())])
                        .collect(),
                }
            } else if failed.contains(&session) && sql == "COMMIT" {
                Outcome::Error {
                    code: "40P01".into(),
                    message: "deadlock prevented".into(),
                }
            } else {
                Outcome::Command {
                    tag: command_tag(sql, 1),
                }
            };
            if !label.is_empty() {
                labels.push((label, i));
            }
            steps.push(StepRecord {
                session: script.steps[i].session,
                sql: sql.into(),
                outcome,
                blocked_for: None,
                deferred: false,
                cancelled: false,
            });
        }
        let run = Run {
            sessions: script.sessions.clone(),
            steps,
            events: Vec::new(),
        };
        let obs = Observation {
            run: &run,
            labels,
            final_rows: final_rows.to_vec(),
        };
        s.judge(&obs).occurred
    }

    const START: &[(i64, i64)] = &[(1, 10), (2, 20)];

    #[test]
    fn g0_is_a_mixed_final_table() {
        assert!(judge(Anomaly::G0, &[], &[], &[(1, 12), (2, 21)]));
        assert!(!judge(Anomaly::G0, &[], &["T2"], &[(1, 11), (2, 21)]));
        assert!(!judge(Anomaly::G0, &[], &[], &[(1, 12), (2, 22)]));
    }

    #[test]
    fn dirty_reads_are_g1a_and_g1b() {
        let dirty: &[(i64, i64)] = &[(1, 101), (2, 20)];
        assert!(judge(
            Anomaly::G1a,
            &[("r1", dirty), ("r2", START)],
            &[],
            START
        ));
        assert!(!judge(
            Anomaly::G1a,
            &[("r1", START), ("r2", START)],
            &[],
            START
        ));
        let after: &[(i64, i64)] = &[(1, 11), (2, 20)];
        assert!(judge(
            Anomaly::G1b,
            &[("r1", dirty), ("r2", after)],
            &[],
            after
        ));
        // Two-phase locking: the read waited for T1's commit and saw only its final value.
        assert!(!judge(
            Anomaly::G1b,
            &[("r1", after), ("r2", after)],
            &[],
            after
        ));
    }

    #[test]
    fn g1c_needs_both_directions() {
        let both = [("t1_y", &[(2, 22)][..]), ("t2_x", &[(1, 11)][..])];
        assert!(judge(Anomaly::G1c, &both, &[], &[(1, 11), (2, 22)]));
        let one = [("t1_y", &[(2, 22)][..]), ("t2_x", &[(1, 10)][..])];
        assert!(!judge(Anomaly::G1c, &one, &[], &[(1, 11), (2, 22)]));
    }

    #[test]
    fn otv_is_a_partial_view_of_a_committed_transaction() {
        let fin: &[(i64, i64)] = &[(1, 12), (2, 18)];
        // Dirty read of T2's x beside T1's y.
        let partial: &[(i64, i64)] = &[(1, 12), (2, 19)];
        assert!(judge(
            Anomaly::Otv,
            &[("r1", partial), ("r2", fin)],
            &[],
            fin
        ));
        // Read committed: T1's state, then T2's.
        let t1: &[(i64, i64)] = &[(1, 11), (2, 19)];
        assert!(!judge(Anomaly::Otv, &[("r1", t1), ("r2", fin)], &[], fin));
        // T2's write seen, then gone.
        assert!(judge(Anomaly::Otv, &[("r1", fin), ("r2", t1)], &[], fin));
        // An aborted T2 has nothing to vanish (that would be G1a).
        assert!(!judge(
            Anomaly::Otv,
            &[("r1", partial), ("r2", t1)],
            &["T2"],
            t1
        ));
    }

    #[test]
    fn predicate_and_item_anomalies() {
        let three: &[(i64, i64)] = &[(3, 30)];
        assert!(judge(
            Anomaly::Pmp,
            &[("r1", &[]), ("r2", three)],
            &[],
            START
        ));
        assert!(!judge(
            Anomaly::Pmp,
            &[("r1", &[]), ("r2", &[])],
            &[],
            START
        ));

        let x10: &[(i64, i64)] = &[(1, 10)];
        assert!(judge(
            Anomaly::P4,
            &[("r1", x10), ("r2", x10)],
            &[],
            &[(1, 15), (2, 20)]
        ));
        assert!(!judge(
            Anomaly::P4,
            &[("r1", x10), ("r2", x10)],
            &["T2"],
            &[(1, 11), (2, 20)]
        ));

        let y18: &[(i64, i64)] = &[(2, 18)];
        let y20: &[(i64, i64)] = &[(2, 20)];
        assert!(judge(
            Anomaly::GSingle,
            &[("r1", x10), ("r2", y18)],
            &[],
            &[(1, 12), (2, 18)]
        ));
        assert!(!judge(
            Anomaly::GSingle,
            &[("r1", x10), ("r2", y20)],
            &[],
            &[(1, 12), (2, 18)]
        ));

        let skewed: &[(i64, i64)] = &[(1, 11), (2, 21)];
        assert!(judge(
            Anomaly::G2Item,
            &[("r1", START), ("r2", START)],
            &[],
            skewed
        ));
        assert!(!judge(
            Anomaly::G2Item,
            &[("r1", START), ("r2", START)],
            &["T2"],
            &[(1, 11), (2, 20)]
        ));

        let all: &[(i64, i64)] = &[(1, 10), (2, 20), (3, 30), (4, 42)];
        assert!(judge(Anomaly::G2, &[("r1", &[]), ("r2", &[])], &[], all));
        assert!(!judge(
            Anomaly::G2,
            &[("r1", &[]), ("r2", &[])],
            &["T1"],
            &[(1, 10), (2, 20), (4, 42)]
        ));
    }
}
