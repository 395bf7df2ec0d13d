//! The join algorithm, shared by the coordinator (joins of gathered inputs) and the shards
//! (co-located joins: two hash-placed tables joined on their shard keys have every matching
//! pair on one shard, so each shard joins its own rows; broadcast joins: each shard joins its
//! rows of the large input with the whole small input, shipped to it).
//!
//! A hash join on the equi-join keys when there are any (NULL keys never match), a nested loop
//! otherwise; `on` (the full condition) decides every candidate pair; LEFT/RIGHT/FULL add the
//! unmatched rows padded with NULLs. Output order: left rows in input order, each followed by
//! its matches in right input order, then (RIGHT/FULL) unmatched right rows.

use crate::error::SqlResult;
use crate::sql::aggregate::row_bytes;
use crate::sql::expr::{EvalContext, Expr};
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

/// Joins `left` and `right`; `charge` is told the bytes of each joined row (memory limits).
pub fn hash_join(
    left: &[Row],
    right: &[Row],
    spec: &JoinSpec<'_>,
    ctx: &EvalContext<'_>,
    charge: &mut dyn FnMut(usize) -> SqlResult<()>,
) -> SqlResult<Vec<Row>> {
    Ok(hash_join_tracked(left, right, spec, ctx, charge)?.rows)
}

/// A join's rows, and which input rows found a match (by position).
pub struct Joined {
    pub rows: Vec<Row>,
    pub left_matched: Vec<bool>,
    pub right_matched: Vec<bool>,
}

/// [`hash_join`], also telling which rows of each input matched: a broadcast join's shard sees
/// only its part of the other input, so the coordinator pads the shipped input's rows that
/// matched on no shard.
pub fn hash_join_tracked(
    left: &[Row],
    right: &[Row],
    spec: &JoinSpec<'_>,
    ctx: &EvalContext<'_>,
    charge: &mut dyn FnMut(usize) -> SqlResult<()>,
) -> SqlResult<Joined> {
    let JoinSpec {
        kind,
        on,
        left_width,
        right_width,
        equi,
    } = *spec;
    let mut out = Vec::new();
    let mut right_matched = vec![false; right.len()];
    let mut left_matched = vec![false; left.len()];
    let table: Option<HashMap<u64, Vec<usize>>> = if equi.is_empty() {
        None
    } else {
        let mut t: HashMap<u64, Vec<usize>> = HashMap::new();
        for (i, r) in right.iter().enumerate() {
            let vals = equi
                .iter()
                .map(|(_, re, _)| re.eval(r, ctx))
                .collect::<SqlResult<Vec<_>>>()?;
            if vals.iter().any(Value::is_null) {
                continue;
            }
            t.entry(hash_values(&vals)).or_default().push(i);
        }
        Some(t)
    };
    let all_right: Vec<usize> = (0..right.len()).collect();
    for (li, l) in left.iter().enumerate() {
        let candidates: &[usize] = match &table {
            None => &all_right,
            Some(t) => {
                let vals = equi
                    .iter()
                    .map(|(le, _, _)| le.eval(l, ctx))
                    .collect::<SqlResult<Vec<_>>>()?;
                if vals.iter().any(Value::is_null) {
                    &[]
                } else {
                    t.get(&hash_values(&vals)).map(Vec::as_slice).unwrap_or(&[])
                }
            }
        };
        let mut matched = false;
        for &ri in candidates {
            let mut row = Vec::with_capacity(left_width + right_width);
            row.extend_from_slice(l);
            row.extend_from_slice(&right[ri]);
            let ok = match on {
                Some(p) => p.eval(&row, ctx)? == Value::Bool(true),
                None => true,
            };
            if ok {
                matched = true;
                right_matched[ri] = true;
                charge(row_bytes(&row))?;
                out.push(row);
            }
        }
        left_matched[li] = matched;
        if !matched && matches!(kind, JoinKind::Left | JoinKind::Full) {
            let mut row = l.clone();
            row.resize(left_width + right_width, Value::Null);
            charge(row_bytes(&row))?;
            out.push(row);
        }
    }
    if matches!(kind, JoinKind::Right | JoinKind::Full) {
        for (ri, r) in right.iter().enumerate() {
            if !right_matched[ri] {
                let mut row = vec![Value::Null; left_width];
                row.extend_from_slice(r);
                charge(row_bytes(&row))?;
                out.push(row);
            }
        }
    }
    Ok(Joined {
        rows: out,
        left_matched,
        right_matched,
    })
}
