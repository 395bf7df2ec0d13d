//! The join algorithm, shared by the coordinator (joins of gathered inputs) and the shards
//! (co-located joins: two hash-placed tables joined on their shard keys have every matching
//! pair on one shard, so each shard joins its own rows; broadcast joins: each shard joins its
//! rows of the large input with the whole small input, shipped to it).
//!
//! A hash join on the equi-join keys when there are any (NULL keys never match), a nested loop
//! otherwise; `on` (the full condition) decides every candidate pair; LEFT/RIGHT/FULL add the
//! unmatched rows padded with NULLs. One input (the build side, [`Build`]) is held and indexed;
//! the other is streamed past it in any number of batches ([`Build::probe`]), so a shard joins
//! a small input with a large one while holding only the small one and the output. Output
//! order: probe rows in input order, each followed by its matches in build input order (or by
//! its padding), then the build side's unmatched rows when the kind keeps them.

use crate::error::SqlResult;
use crate::sql::aggregate::row_bytes;
use crate::sql::expr::{EvalContext, Expr};
use crate::sql::join_strategy::Side;
use crate::sql::plan::JoinKind;
use crate::types::{DataType, Row, Value, compare};
use std::collections::HashMap;
use std::hash::Hasher;

pub struct JoinSpec<'a> {
    pub kind: JoinKind,
    pub on: Option<&'a Expr>,
    pub left_width: usize,
    pub right_width: usize,
    /// (left expression over the left row, right expression over the right row, type).
    pub equi: &'a [(Expr, Expr, DataType)],
}

fn hash_values(vals: &[Value]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for v in vals {
        compare::hash_value(v, &mut h);
    }
    h.finish()
}

/// Joins `left` and `right` (holding `right`); `charge` is told the bytes of each joined row
/// (memory limits).
pub fn hash_join(
    left: &[Row],
    right: &[Row],
    spec: &JoinSpec<'_>,
    ctx: &EvalContext<'_>,
    charge: &mut dyn FnMut(usize) -> SqlResult<()>,
) -> SqlResult<Vec<Row>> {
    let mut build = Build::new(right, Side::Right, spec, ctx)?;
    let mut rows = Vec::new();
    build.probe(left, spec, ctx, charge, &mut rows)?;
    build.finish(spec, charge, &mut rows)?;
    Ok(rows)
}

fn preserves(kind: JoinKind, side: Side) -> bool {
    matches!(
        (kind, side),
        (JoinKind::Left | JoinKind::Full, Side::Left)
            | (JoinKind::Right | JoinKind::Full, Side::Right)
    )
}

/// The held input of a hash join: its rows, indexed by their join-key hash, and which of them
/// have matched so far.
pub struct Build<'a> {
    rows: &'a [Row],
    /// Which input of the join the held rows are.
    side: Side,
    /// `None`: no equi keys, every pair is a candidate (nested loop).
    table: Option<HashMap<u64, Vec<usize>>>,
    matched: Vec<bool>,
}

impl<'a> Build<'a> {
    /// Indexes `rows`, the `side` input of the join `spec`.
    pub fn new(
        rows: &'a [Row],
        side: Side,
        spec: &JoinSpec<'_>,
        ctx: &EvalContext<'_>,
    ) -> SqlResult<Build<'a>> {
        let table = if spec.equi.is_empty() {
            None
        } else {
            let mut t: HashMap<u64, Vec<usize>> = HashMap::new();
            for (i, r) in rows.iter().enumerate() {
                let vals = spec
                    .equi
                    .iter()
                    .map(|(le, re, _)| match side {
                        Side::Left => le.eval(r, ctx),
                        Side::Right => re.eval(r, ctx),
                    })
                    .collect::<SqlResult<Vec<_>>>()?;
                if vals.iter().any(Value::is_null) {
                    continue;
                }
                t.entry(hash_values(&vals)).or_default().push(i);
            }
            Some(t)
        };
        Ok(Build {
            rows,
            side,
            table,
            matched: vec![false; rows.len()],
        })
    }

    /// Joins a batch of the other input's rows with the held ones, appending to `out` (and
    /// padding the batch's unmatched rows when the kind keeps them). Returns which rows of the
    /// batch matched.
    pub fn probe(
        &mut self,
        batch: &[Row],
        spec: &JoinSpec<'_>,
        ctx: &EvalContext<'_>,
        charge: &mut dyn FnMut(usize) -> SqlResult<()>,
        out: &mut Vec<Row>,
    ) -> SqlResult<Vec<bool>> {
        let width = spec.left_width + spec.right_width;
        let probe_side = match self.side {
            Side::Left => Side::Right,
            Side::Right => Side::Left,
        };
        let pad_probe = preserves(spec.kind, probe_side);
        let all: Vec<usize> = if self.table.is_none() {
            (0..self.rows.len()).collect()
        } else {
            Vec::new()
        };
        let mut batch_matched = vec![false; batch.len()];
        for (pi, p) in batch.iter().enumerate() {
            let candidates: &[usize] = match &self.table {
                None => &all,
                Some(t) => {
                    let vals = spec
                        .equi
                        .iter()
                        .map(|(le, re, _)| match probe_side {
                            Side::Left => le.eval(p, ctx),
                            Side::Right => re.eval(p, ctx),
                        })
                        .collect::<SqlResult<Vec<_>>>()?;
                    if vals.iter().any(Value::is_null) {
                        &[]
                    } else {
                        t.get(&hash_values(&vals)).map(Vec::as_slice).unwrap_or(&[])
                    }
                }
            };
            let mut matched = false;
            for &bi in candidates {
                let b = &self.rows[bi];
                let mut row = Vec::with_capacity(width);
                match self.side {
                    Side::Right => {
                        row.extend_from_slice(p);
                        row.extend_from_slice(b);
                    }
                    Side::Left => {
                        row.extend_from_slice(b);
                        row.extend_from_slice(p);
                    }
                }
                let ok = match spec.on {
                    Some(e) => e.eval(&row, ctx)? == Value::Bool(true),
                    None => true,
                };
                if ok {
                    matched = true;
                    self.matched[bi] = true;
                    charge(row_bytes(&row))?;
                    out.push(row);
                }
            }
            batch_matched[pi] = matched;
            if !matched && pad_probe {
                let row = pad_row(p, probe_side, spec.left_width, spec.right_width);
                charge(row_bytes(&row))?;
                out.push(row);
            }
        }
        Ok(batch_matched)
    }

    /// After the last batch: pads the held rows that never matched when the kind keeps them,
    /// and returns which held rows matched.
    pub fn finish(
        self,
        spec: &JoinSpec<'_>,
        charge: &mut dyn FnMut(usize) -> SqlResult<()>,
        out: &mut Vec<Row>,
    ) -> SqlResult<Vec<bool>> {
        if preserves(spec.kind, self.side) {
            for (r, m) in self.rows.iter().zip(&self.matched) {
                if !m {
                    let row = pad_row(r, self.side, spec.left_width, spec.right_width);
                    charge(row_bytes(&row))?;
                    out.push(row);
                }
            }
        }
        Ok(self.matched)
    }
}

/// `row`, an input row of `side`, with NULLs for the other input's columns.
pub fn pad_row(row: &[Value], side: Side, left_width: usize, right_width: usize) -> Row {
    match side {
        Side::Left => {
            let mut r = row.to_vec();
            r.resize(left_width + right_width, Value::Null);
            r
        }
        Side::Right => {
            let mut r = vec![Value::Null; left_width];
            r.extend_from_slice(row);
            r
        }
    }
}
