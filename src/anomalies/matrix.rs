//! The isolation matrix: levels × anomalies, the verdict in each cell, the two expected matrices
//! (sharddb's design target and PostgreSQL's known behaviour) and how a matrix is printed.
//!
//! Expectations live here and only here; verdicts come from what the scenarios observed, so the
//! two are compared, never confused: a cell's verdict is never derived from its level.

use std::fmt::Write as _;

/// The four SQL isolation levels, weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Level {
    ReadUncommitted,
    ReadCommitted,
    RepeatableRead,
    Serializable,
}

impl Level {
    pub const ALL: [Level; 4] = [
        Level::ReadUncommitted,
        Level::ReadCommitted,
        Level::RepeatableRead,
        Level::Serializable,
    ];

    /// The level as written after `ISOLATION LEVEL`.
    pub fn sql(self) -> &'static str {
        match self {
            Level::ReadUncommitted => "READ UNCOMMITTED",
            Level::ReadCommitted => "READ COMMITTED",
            Level::RepeatableRead => "REPEATABLE READ",
            Level::Serializable => "SERIALIZABLE",
        }
    }
}

/// The phenomena, in Hermitage's names and column order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Anomaly {
    G0,
    G1a,
    G1b,
    G1c,
    Otv,
    Pmp,
    P4,
    GSingle,
    G2Item,
    G2,
}

impl Anomaly {
    pub const ALL: [Anomaly; 10] = [
        Anomaly::G0,
        Anomaly::G1a,
        Anomaly::G1b,
        Anomaly::G1c,
        Anomaly::Otv,
        Anomaly::Pmp,
        Anomaly::P4,
        Anomaly::GSingle,
        Anomaly::G2Item,
        Anomaly::G2,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Anomaly::G0 => "G0",
            Anomaly::G1a => "G1a",
            Anomaly::G1b => "G1b",
            Anomaly::G1c => "G1c",
            Anomaly::Otv => "OTV",
            Anomaly::Pmp => "PMP",
            Anomaly::P4 => "P4",
            Anomaly::GSingle => "G-single",
            Anomaly::G2Item => "G2-item",
            Anomaly::G2 => "G2",
        }
    }

    /// Parses a name as printed in the matrix, case-insensitively.
    pub fn from_name(name: &str) -> Option<Anomaly> {
        Anomaly::ALL
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(name.trim()))
    }
}

/// Which behaviour a run is compared against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// DESIGN.md section 6: RU prevents G0; RC adds G1a G1b G1c OTV; RR adds PMP P4 G-single;
    /// SERIALIZABLE (strict 2PL with key-range locks) prevents everything.
    Sharddb,
    /// PostgreSQL: READ UNCOMMITTED is READ COMMITTED; REPEATABLE READ is snapshot isolation
    /// (everything but write skew, G2-item and G2); SERIALIZABLE (SSI) prevents everything.
    Postgres,
}

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Target::Sharddb => "sharddb",
            Target::Postgres => "postgres",
        }
    }

    /// Whether `anomaly` is expected to occur at `level`.
    pub fn expects_occurrence(self, level: Level, anomaly: Anomaly) -> bool {
        use Anomaly::*;
        // Each level's prevented set includes the weaker levels' (the matrices are monotone).
        let prevented: &[Anomaly] = match (self, level) {
            (Target::Sharddb, Level::ReadUncommitted) => &[G0],
            (Target::Sharddb, Level::ReadCommitted)
            | (Target::Postgres, Level::ReadUncommitted | Level::ReadCommitted) => {
                &[G0, G1a, G1b, G1c, Otv]
            }
            (_, Level::RepeatableRead) => &[G0, G1a, G1b, G1c, Otv, Pmp, P4, GSingle],
            (_, Level::Serializable) => &Anomaly::ALL,
        };
        !prevented.contains(&anomaly)
    }
}

/// A scenario's verdict at one level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Occurred,
    /// Not observed; `how` says whether a step blocked, a transaction was aborted (with which
    /// SQLSTATE), or the reads simply did not show it.
    Prevented {
        how: String,
    },
    /// The run cannot tell: a step failed for a reason that has nothing to do with concurrency
    /// (an unsupported statement, a lost connection, a stall the lab had to cancel).
    Inconclusive {
        reason: String,
    },
}

impl Verdict {
    pub fn short(&self) -> &'static str {
        match self {
            Verdict::Occurred => "occ",
            Verdict::Prevented { .. } => "prev",
            Verdict::Inconclusive { .. } => "err",
        }
    }
}

/// One cell: the verdict plus the observation that backs it.
#[derive(Debug, Clone)]
pub struct Cell {
    pub verdict: Verdict,
    /// What the reads and the final table showed.
    pub why: String,
}

/// All cells observed under one deadlock policy.
#[derive(Debug, Clone)]
pub struct Matrix {
    /// `wait_die`, `wound_wait`, or `n/a` (servers without the setting).
    pub policy: String,
    /// `cells[level][anomaly]`, in [`Level::ALL`] and [`Anomaly::ALL`] order.
    pub cells: Vec<Vec<Cell>>,
}

/// A cell whose verdict differs from the expected matrix.
#[derive(Debug, Clone)]
pub struct Difference {
    pub level: Level,
    pub anomaly: Anomaly,
    pub observed: Cell,
    pub expected_occurrence: bool,
}

impl Matrix {
    pub fn cell(&self, level: Level, anomaly: Anomaly) -> &Cell {
        let l = Level::ALL.iter().position(|&x| x == level).unwrap_or(0);
        let a = Anomaly::ALL.iter().position(|&x| x == anomaly).unwrap_or(0);
        &self.cells[l][a]
    }

    /// Cells that do not match `target`; an inconclusive cell never matches.
    pub fn differences(&self, target: Target) -> Vec<Difference> {
        let mut out = Vec::new();
        for level in Level::ALL {
            for anomaly in Anomaly::ALL {
                let cell = self.cell(level, anomaly);
                let expected = target.expects_occurrence(level, anomaly);
                let matches = match cell.verdict {
                    Verdict::Occurred => expected,
                    Verdict::Prevented { .. } => !expected,
                    Verdict::Inconclusive { .. } => false,
                };
                if !matches {
                    out.push(Difference {
                        level,
                        anomaly,
                        observed: cell.clone(),
                        expected_occurrence: expected,
                    });
                }
            }
        }
        out
    }

    /// The matrix as a table, cells that differ from `target` marked with `*`, followed by the
    /// list of differences (or a line saying there are none).
    pub fn render(&self, target: Target) -> String {
        let diffs = self.differences(target);
        let differs = |l: Level, a: Anomaly| diffs.iter().any(|d| d.level == l && d.anomaly == a);
        let mut out = String::new();
        let _ = writeln!(
            out,
            "deadlock_policy: {}   (occ = anomaly occurred, prev = prevented, err = inconclusive, * = differs from the {} expectation)",
            self.policy,
            target.name()
        );
        let first = Level::ALL.iter().map(|l| l.sql().len()).max().unwrap_or(0) + 2;
        let _ = write!(out, "{:first$}", "");
        for a in Anomaly::ALL {
            let _ = write!(out, "{:<w$}", a.name(), w = a.name().len().max(5) + 2);
        }
        out.truncate(out.trim_end().len());
        out.push('\n');
        for level in Level::ALL {
            let _ = write!(out, "{:first$}", level.sql());
            for a in Anomaly::ALL {
                let mut text = self.cell(level, a).verdict.short().to_string();
                if differs(level, a) {
                    text.push('*');
                }
                let _ = write!(out, "{:<w$}", text, w = a.name().len().max(5) + 2);
            }
            out.truncate(out.trim_end().len());
            out.push('\n');
        }
        if diffs.is_empty() {
            let _ = writeln!(
                out,
                "all {} cells match the {} expectation",
                Level::ALL.len() * Anomaly::ALL.len(),
                target.name()
            );
        } else {
            let _ = writeln!(out, "differences from the {} expectation:", target.name());
            for d in &diffs {
                let expected = if d.expected_occurrence { "occ" } else { "prev" };
                let detail = match &d.observed.verdict {
                    Verdict::Occurred => d.observed.why.clone(),
                    Verdict::Prevented { how } => format!("{how}; {}", d.observed.why),
                    Verdict::Inconclusive { reason } => reason.clone(),
                };
                let _ = writeln!(
                    out,
                    "  * {} {}: observed {}, expected {} ({})",
                    d.level.sql(),
                    d.anomaly.name(),
                    d.observed.verdict.short(),
                    expected,
                    detail
                );
            }
        }
        out
    }

    /// One line per cell: the verdict and the observation behind it.
    pub fn render_details(&self) -> String {
        let mut out = String::new();
        for level in Level::ALL {
            for a in Anomaly::ALL {
                let cell = self.cell(level, a);
                let how = match &cell.verdict {
                    Verdict::Occurred => String::new(),
                    Verdict::Prevented { how } => format!(" [{how}]"),
                    Verdict::Inconclusive { reason } => format!(" [{reason}]"),
                };
                let _ = writeln!(
                    out,
                    "  {} {}: {}{} {}",
                    level.sql(),
                    a.name(),
                    cell.verdict.short(),
                    how,
                    cell.why
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matrix_of(target: Target) -> Matrix {
        let cells = Level::ALL
            .iter()
            .map(|&l| {
                Anomaly::ALL
                    .iter()
                    .map(|&a| Cell {
                        verdict: if target.expects_occurrence(l, a) {
                            Verdict::Occurred
                        } else {
                            Verdict::Prevented {
                                how: "not observed".into(),
                            }
                        },
                        why: String::new(),
                    })
                    .collect()
            })
            .collect();
        Matrix {
            policy: "n/a".into(),
            cells,
        }
    }

    #[test]
    fn targets_differ_exactly_where_the_design_says() {
        let pg = matrix_of(Target::Postgres);
        let diffs = pg.differences(Target::Sharddb);
        let names: Vec<(Level, &str)> = diffs.iter().map(|d| (d.level, d.anomaly.name())).collect();
        assert_eq!(
            names,
            vec![
                (Level::ReadUncommitted, "G1a"),
                (Level::ReadUncommitted, "G1b"),
                (Level::ReadUncommitted, "G1c"),
                (Level::ReadUncommitted, "OTV"),
            ]
        );
        assert!(pg.differences(Target::Postgres).is_empty());
        assert!(pg.render(Target::Sharddb).contains("prev*"));
    }

    #[test]
    fn inconclusive_cells_never_match() {
        let mut m = matrix_of(Target::Postgres);
        m.cells[0][0].verdict = Verdict::Inconclusive {
            reason: "42601".into(),
        };
        assert_eq!(m.differences(Target::Postgres).len(), 1);
    }

    #[test]
    fn names_round_trip() {
        for a in Anomaly::ALL {
            assert_eq!(Anomaly::from_name(a.name()), Some(a));
        }
        assert_eq!(Anomaly::from_name("g2-ITEM"), Some(Anomaly::G2Item));
        assert_eq!(Anomaly::from_name("G3"), None);
    }
}
