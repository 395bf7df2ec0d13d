//! Index access paths: which secondary index a scan uses, with which bounds, and how those
//! bounds become memcomparable key ranges at execution.
//!
//! Planning (`choose_index`): each WHERE conjunct of the form `col op value` (`=`, `<`, `<=`,
//! `>`, `>=`, BETWEEN's two halves), `col IN (values)`, `col IS NULL`, or a bare boolean column
//! gives a bound on `col` when `value` does not depend on the row (literals, `$n`, outer
//! references, expressions of those) and has the column's key encoding after the binder's
//! coercions (the column appears bare, or under a cast that keeps the encoding: integer
//! widening, numeric typmods, varchar→text, float4→float8). An index is usable when bounds fix
//! a leading prefix of its columns (equality, IN or IS NULL) and/or bound the next one (a
//! range). Among usable indexes the heuristic is, in order: a unique index whose every column
//! is fixed, most fixed columns, a range on the next column, unique, fewer columns, name.
//! There are no statistics: an index with any usable bound is preferred over a full scan.
//! A primary-key point lookup (`Access::Point`) is decided before and always wins.
//!
//! Top-N (`apply_top_n`): `ORDER BY <index columns in index order or exactly reversed, then
//! optionally the primary key columns> LIMIT n [OFFSET m]` directly over a scan (only a
//! projection between) walks that index forwards or backwards and each shard stops after
//! `n + m` rows; the coordinator's Sort still merges the shards' results and the Limit applies.
//! Leading columns fixed to one value by the predicate may be left out of the ORDER BY.
//!
//! The whole filter always stays on the scan, so bounds only need to be a superset of the
//! matching rows.

use crate::catalog::{IndexDef, TableDef};
use crate::error::SqlResult;
use crate::rpc::IndexColumn;
use crate::sql::expr::{CmpOp, Expr};
use crate::sql::plan::{Access, EqBound, IndexAccess, Plan, RangeBound};
use crate::storage::prefix_successor;
use crate::types::format::format_text;
use crate::types::{DataType, Value, keycode};
use std::collections::HashMap;
use std::ops::Bound;
use std::sync::Arc;

/// At most this many key ranges come out of IN lists; beyond it fewer leading columns are used.
const MAX_RANGES: usize = 4096;

/// A bound one conjunct puts on one column.
#[derive(Clone)]
enum ColBound {
    Eq(Expr),
    In(Vec<Expr>),
    IsNull,
    Lower(Expr, bool),
    Upper(Expr, bool),
}

/// Whether a cast from `from` to `to` keeps every value as it is (no rounding, truncation or
/// range error) and leaves the memcomparable key encoding unchanged, so a bound on the cast
/// column is a bound on the stored column. Narrowing casts are not: `name::varchar(3) = 'abc'`
/// also matches 'abcdef', and `i8::int4 = 5` must still fail on out-of-range rows.
fn same_encoding(from: DataType, to: DataType) -> bool {
    use DataType::*;
    let int_width = |t: DataType| match t {
        Int2 => 2,
        Int4 => 4,
        _ => 8,
    };
    match (from, to) {
        (a, b) if a == b => true,
        (a, b) if a.is_integer() && b.is_integer() => int_width(a) <= int_width(b),
        (Numeric(_), Numeric(None)) => true,
        (Float4, Float8) => true,
        (Text | Varchar(_), Text | Varchar(None)) => true,
        (Varchar(Some(n)), Varchar(Some(m))) => m >= n,
        _ => false,
    }
}

/// The table column `e` reads, if `e` is that column (possibly under an encoding-preserving
/// cast).
fn column_of(e: &Expr, types: &[DataType]) -> Option<usize> {
    match e {
        Expr::Column(i) => Some(*i),
        Expr::Cast { expr, from, to, .. } => match **expr {
            Expr::Column(i) if types.get(i) == Some(from) && same_encoding(*from, *to) => Some(i),
            _ => None,
        },
        _ => None,
    }
}

/// Row-independent and evaluable before the scan.
fn is_value(e: &Expr) -> bool {
    let mut ok = true;
    e.walk(&mut |x| {
        match x {
            Expr::Column(_) | Expr::Subquery { .. } | Expr::AggRef(_) => ok = false,
            // Evaluated once for the bounds but per row in the filter: not the same value.
            Expr::Func { func, .. } if crate::sql::functions::is_volatile(*func) => ok = false,
            _ => {}
        }
    });
    ok
}

fn bounds_of(c: &Expr, types: &[DataType], out: &mut Vec<(usize, ColBound)>) {
    match c {
        Expr::Cmp { op, left, right } => {
            let (col, val, op) = match (column_of(left, types), column_of(right, types)) {
                (Some(i), _) if is_value(right) => (i, right.as_ref(), *op),
                (_, Some(i)) if is_value(left) => (
                    i,
                    left.as_ref(),
                    match op {
                        CmpOp::Lt => CmpOp::Gt,
                        CmpOp::LtEq => CmpOp::GtEq,
                        CmpOp::Gt => CmpOp::Lt,
                        CmpOp::GtEq => CmpOp::LtEq,
                        o => *o,
                    },
                ),
                _ => return,
            };
            let v = val.clone();
            out.push((
                col,
                match op {
                    CmpOp::Eq => ColBound::Eq(v),
                    CmpOp::NotEq => return,
                    CmpOp::Lt => ColBound::Upper(v, false),
                    CmpOp::LtEq => ColBound::Upper(v, true),
                    CmpOp::Gt => ColBound::Lower(v, false),
                    CmpOp::GtEq => ColBound::Lower(v, true),
                },
            ));
        }
        Expr::InList {
            expr,
            list,
            negated: false,
        } => {
            if let Some(i) = column_of(expr, types)
                && list.iter().all(is_value)
            {
                out.push((i, ColBound::In(list.clone())));
            }
        }
        Expr::IsNull {
            expr,
            negated: false,
        } => {
            if let Expr::Column(i) = **expr {
                out.push((i, ColBound::IsNull));
            }
        }
        Expr::Column(i) if types.get(*i) == Some(&DataType::Bool) => {
            out.push((*i, ColBound::Eq(Expr::Literal(Value::Bool(true)))));
        }
        Expr::Not(inner) => {
            if let Expr::Column(i) = **inner
                && types.get(i) == Some(&DataType::Bool)
            {
                out.push((i, ColBound::Eq(Expr::Literal(Value::Bool(false)))));
            }
        }
        Expr::And(items) => items.iter().for_each(|i| bounds_of(i, types, out)),
        _ => {}
    }
}

/// How well an index serves the bounds (higher is better); see the module docs.
type Score = (bool, usize, bool, bool, std::cmp::Reverse<usize>);

/// The bounds `conjuncts` put on `index`: the fixed leading columns and a range on the next.
fn index_bounds(
    index: &IndexDef,
    bounds: &[(usize, ColBound)],
) -> (Vec<EqBound>, Option<RangeBound>) {
    let mut eq = Vec::new();
    for kc in &index.columns {
        let on_col = || {
            bounds
                .iter()
                .filter(|(c, _)| *c == kc.column)
                .map(|(_, b)| b)
        };
        let fixed = on_col()
            .find_map(|b| match b {
                ColBound::Eq(v) => Some(EqBound::Values(vec![v.clone()])),
                _ => None,
            })
            .or_else(|| {
                on_col().find_map(|b| match b {
                    ColBound::In(v) => Some(EqBound::Values(v.clone())),
                    _ => None,
                })
            })
            .or_else(|| {
                on_col().find_map(|b| match b {
                    ColBound::IsNull => Some(EqBound::Null),
                    _ => None,
                })
            });
        match fixed {
            Some(f) => eq.push(f),
            None => break,
        }
    }
    let range = index.columns.get(eq.len()).and_then(|kc| {
        let mut r = RangeBound {
            lower: None,
            upper: None,
        };
        for (c, b) in bounds {
            if *c != kc.column {
                continue;
            }
            match b {
                ColBound::Lower(v, inc) if r.lower.is_none() => r.lower = Some((v.clone(), *inc)),
                ColBound::Upper(v, inc) if r.upper.is_none() => r.upper = Some((v.clone(), *inc)),
                _ => {}
            }
        }
        (r.lower.is_some() || r.upper.is_some()).then_some(r)
    });
    (eq, range)
}

fn access_for(
    table: &TableDef,
    index: &IndexDef,
    eq: Vec<EqBound>,
    range: Option<RangeBound>,
) -> IndexAccess {
    let columns: Vec<IndexColumn> = index.spec(table).columns;
    let cond = render_cond(table, index, &eq, &range);
    IndexAccess {
        index_id: index.id,
        index_name: index.name.clone(),
        columns,
        eq,
        range,
        reverse: false,
        limit: None,
        cond,
    }
}

/// The best index for a scan of `table` filtered by `conjuncts`, if any index helps.
pub fn choose_index<'e>(
    table: &TableDef,
    conjuncts: impl Iterator<Item = &'e Expr>,
) -> Option<IndexAccess> {
    let types: Vec<DataType> = table.columns.iter().map(|c| c.ty).collect();
    let mut bounds = Vec::new();
    for c in conjuncts {
        bounds_of(c, &types, &mut bounds);
    }
    if bounds.is_empty() {
        return None;
    }
    let mut best: Option<(Score, &IndexDef, Vec<EqBound>, Option<RangeBound>)> = None;
    let mut indexes: Vec<&IndexDef> = table.secondary_indexes().collect();
    indexes.sort_by(|a, b| a.name.cmp(&b.name));
    for index in indexes {
        let (eq, range) = index_bounds(index, &bounds);
        if eq.is_empty() && range.is_none() {
            continue;
        }
        let score: Score = (
            index.unique && eq.len() == index.columns.len(),
            eq.len(),
            range.is_some(),
            index.unique,
            std::cmp::Reverse(index.columns.len()),
        );
        if best.as_ref().is_none_or(|(s, ..)| score > *s) {
            best = Some((score, index, eq, range));
        }
    }
    best.map(|(_, index, eq, range)| access_for(table, index, eq, range))
}

/// Top-N through an index: see the module docs. `plan` is the result of binding a query with
/// LIMIT; it is rewritten in place when it has the shape `Limit → [Project] → Sort → Project →
/// Scan` and the sort keys follow an index.
pub fn apply_top_n(plan: &mut Plan, tables: &HashMap<u32, Arc<TableDef>>) {
    let Plan::Limit {
        input,
        limit: Some(limit),
        offset,
    } = plan
    else {
        return;
    };
    let node = match input.as_mut() {
        Plan::Project { input, .. } => input.as_mut(),
        other => other,
    };
    let Plan::Sort { input, keys } = node else {
        return;
    };
    let Plan::Project { input, exprs } = input.as_mut() else {
        return;
    };
    let Plan::Scan {
        table_id,
        access,
        filter,
        ..
    } = input.as_mut()
    else {
        return;
    };
    let Some(table) = tables.get(table_id) else {
        return;
    };
    // Sort keys as (table column, desc, nulls_first).
    let mut sort_cols = Vec::new();
    for k in keys.iter() {
        let Expr::Column(out) = k.expr else { return };
        let Some(Expr::Column(c)) = exprs.get(out) else {
            return;
        };
        sort_cols.push((*c, k.desc, k.nulls_first));
    }
    let try_index = |index: &IndexDef, eq: &[EqBound]| -> Option<bool> {
        // Effective key: index columns, then the primary key (entries end with it).
        let mut key: Vec<(usize, bool, bool)> = index
            .columns
            .iter()
            .enumerate()
            .map(|(k, c)| {
                let fixed = matches!(eq.get(k), Some(EqBound::Values(v)) if v.len() == 1)
                    || matches!(eq.get(k), Some(EqBound::Null));
                (c.column, c.desc, fixed)
            })
            .collect();
        key.extend(table.primary_key.iter().map(|c| (*c, false, false)));
        let mut reverse: Option<bool> = None;
        let mut p = 0;
        for (col, desc, nulls_first) in &sort_cols {
            while p < key.len() && key[p].2 && key[p].0 != *col {
                p += 1;
            }
            let (kcol, kdesc, fixed) = *key.get(p)?;
            if kcol != *col {
                return None;
            }
            p += 1;
            if fixed {
                continue;
            }
            let rev = *desc != kdesc;
            // The index puts NULLs last ascending, first descending; NOT NULL columns have none.
            let nullable = table.columns[kcol].nullable;
            if nullable && *nulls_first != *desc {
                return None;
            }
            if *reverse.get_or_insert(rev) != rev {
                return None;
            }
        }
        Some(reverse.unwrap_or(false))
    };
    let chosen = match access {
        Access::Point { .. } => return,
        Access::Index(ix) => {
            let Some(index) = table.secondary_indexes().find(|i| i.id == ix.index_id) else {
                return;
            };
            match try_index(index, &ix.eq) {
                Some(rev) => {
                    ix.reverse = rev;
                    ix.limit = Some((limit.clone(), offset.clone()));
                }
                None => return,
            }
            return;
        }
        Access::Full => {
            let types: Vec<DataType> = table.columns.iter().map(|c| c.ty).collect();
            let mut bounds = Vec::new();
            if let Some(f) = filter {
                bounds_of(f, &types, &mut bounds);
            }
            let mut indexes: Vec<&IndexDef> = table.secondary_indexes().collect();
            indexes.sort_by(|a, b| a.name.cmp(&b.name));
            indexes.into_iter().find_map(|index| {
                let (eq, range) = index_bounds(index, &bounds);
                try_index(index, &eq).map(|rev| (index, eq, range, rev))
            })
        }
    };
    if let Some((index, eq, range, rev)) = chosen {
        let mut ix = access_for(table, index, eq, range);
        ix.reverse = rev;
        ix.limit = Some((limit.clone(), offset.clone()));
        *access = Access::Index(Box::new(ix));
    }
}

// ------------------------------------------------------------------ execution

fn encode_col(v: &Value, c: &IndexColumn, out: &mut Vec<u8>) {
    if c.desc {
        keycode::encode_key_value_desc(v, c.ty, out);
    } else {
        keycode::encode_key_value(v, c.ty, out);
    }
}

/// One entry-key range: `[start, end)` style bounds for an `IndexScanRequest`.
pub type KeyRange = (Bound<Vec<u8>>, Bound<Vec<u8>>);

/// The entry-key ranges of `ix`, sorted and disjoint, with bound values from `eval`.
/// Empty when a bound value is NULL (`col = NULL` and `col < NULL` match nothing).
pub fn key_ranges(
    ix: &IndexAccess,
    eval: &dyn Fn(&Expr) -> SqlResult<Value>,
) -> SqlResult<Vec<KeyRange>> {
    // Prefixes from the fixed columns (cartesian product of IN lists, bounded).
    let mut prefixes: Vec<Vec<u8>> = vec![Vec::new()];
    let mut fixed_cols = 0;
    for (k, b) in ix.eq.iter().enumerate() {
        let col = &ix.columns[k];
        let mut values = Vec::new();
        match b {
            EqBound::Null => values.push(Value::Null),
            EqBound::Values(list) => {
                for e in list {
                    let v = eval(e)?;
                    if !v.is_null() {
                        values.push(v);
                    }
                }
            }
        }
        if values.is_empty() {
            return Ok(Vec::new());
        }
        if prefixes.len() * values.len() > MAX_RANGES {
            break; // a coarser superset: fewer fixed columns
        }
        let mut next = Vec::with_capacity(prefixes.len() * values.len());
        for p in &prefixes {
            for v in &values {
                let mut q = p.clone();
                encode_col(v, col, &mut q);
                next.push(q);
            }
        }
        prefixes = next;
        fixed_cols += 1;
    }
    prefixes.sort();
    prefixes.dedup();
    // The range on the next column applies only if every fixed column was used.
    let range = match (&ix.range, fixed_cols == ix.eq.len()) {
        (Some(r), true) => {
            let lower = match &r.lower {
                Some((e, inc)) => match eval(e)? {
                    Value::Null => return Ok(Vec::new()),
                    v => Some((v, *inc)),
                },
                None => None,
            };
            let upper = match &r.upper {
                Some((e, inc)) => match eval(e)? {
                    Value::Null => return Ok(Vec::new()),
                    v => Some((v, *inc)),
                },
                None => None,
            };
            Some((lower, upper))
        }
        _ => None,
    };
    let mut out = Vec::with_capacity(prefixes.len());
    for p in prefixes {
        let whole_end = || match prefix_successor(&p) {
            Some(s) => Bound::Excluded(s),
            None => Bound::Unbounded,
        };
        let whole_start = || {
            if p.is_empty() {
                Bound::Unbounded
            } else {
                Bound::Included(p.clone())
            }
        };
        let Some((lower, upper)) = &range else {
            out.push((whole_start(), whole_end()));
            continue;
        };
        let col = &ix.columns[fixed_cols];
        // `value op bound` in value order → key bounds; a DESC column swaps the sides.
        // at_least(v, inclusive): keys of values >= v (or > v) in *key* order.
        let key_of = |v: &Value| {
            let mut k = p.clone();
            encode_col(v, col, &mut k);
            k
        };
        let from_key = |v: &Value, inclusive: bool| -> Option<Bound<Vec<u8>>> {
            let k = key_of(v);
            if inclusive {
                Some(Bound::Included(k))
            } else {
                prefix_successor(&k).map(Bound::Included)
            }
        };
        let to_key = |v: &Value, inclusive: bool| -> Bound<Vec<u8>> {
            let k = key_of(v);
            if inclusive {
                match prefix_successor(&k) {
                    Some(s) => Bound::Excluded(s),
                    None => Bound::Unbounded,
                }
            } else {
                Bound::Excluded(k)
            }
        };
        // Comparisons never match NULL: keep NULL entries out of open-ended ranges.
        let null_key = key_of(&Value::Null);
        let (start, end) = if !col.desc {
            let start = match lower {
                Some((v, inc)) => match from_key(v, *inc) {
                    Some(b) => b,
                    None => continue,
                },
                None => whole_start(),
            };
            let end = match upper {
                Some((v, inc)) => to_key(v, *inc),
                None => Bound::Excluded(null_key),
            };
            (start, end)
        } else {
            let start = match upper {
                Some((v, inc)) => match from_key(v, *inc) {
                    Some(b) => b,
                    None => continue,
                },
                None => match prefix_successor(&null_key) {
                    Some(s) => Bound::Included(s),
                    None => continue,
                },
            };
            let end = match lower {
                Some((v, inc)) => to_key(v, *inc),
                None => whole_end(),
            };
            (start, end)
        };
        if range_is_empty(&start, &end) {
            continue;
        }
        out.push((start, end));
    }
    Ok(out)
}

fn range_is_empty(start: &Bound<Vec<u8>>, end: &Bound<Vec<u8>>) -> bool {
    match (start, end) {
        (Bound::Included(s), Bound::Excluded(e)) => s >= e,
        (Bound::Included(s), Bound::Included(e)) => s > e,
        _ => false,
    }
}

// ------------------------------------------------------------------ EXPLAIN

fn render_value(e: &Expr, ty: DataType) -> String {
    match e {
        Expr::Literal(Value::Null) => "NULL".to_string(),
        Expr::Literal(v) => {
            let text = format_text(v, ty).unwrap_or_default();
            if ty.is_numeric_family() {
                text
            } else if ty == DataType::Bool {
                if text == "t" { "true" } else { "false" }.to_string()
            } else {
                format!("'{}'", text.replace('\'', "''"))
            }
        }
        Expr::Param(i) => format!("${}", i + 1),
        Expr::Cast { expr, .. } => render_value(expr, ty),
        Expr::Outer { .. } => "(outer reference)".to_string(),
        _ => "(expression)".to_string(),
    }
}

fn render_cond(
    table: &TableDef,
    index: &IndexDef,
    eq: &[EqBound],
    range: &Option<RangeBound>,
) -> String {
    let mut parts = Vec::new();
    for (k, b) in eq.iter().enumerate() {
        let c = &table.columns[index.columns[k].column];
        parts.push(match b {
            EqBound::Null => format!("{} IS NULL", c.name),
            EqBound::Values(v) if v.len() == 1 => {
                format!("{} = {}", c.name, render_value(&v[0], c.ty))
            }
            EqBound::Values(v) => format!(
                "{} IN ({})",
                c.name,
                v.iter()
                    .map(|e| render_value(e, c.ty))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    }
    if let Some(r) = range {
        let c = &table.columns[index.columns[eq.len()].column];
        if let Some((e, inc)) = &r.lower {
            let op = if *inc { ">=" } else { ">" };
            parts.push(format!("{} {op} {}", c.name, render_value(e, c.ty)));
        }
        if let Some((e, inc)) = &r.upper {
            let op = if *inc { "<=" } else { "<" };
            parts.push(format!("{} {op} {}", c.name, render_value(e, c.ty)));
        }
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("({})", parts.join(" AND "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn successor() {
        assert_eq!(prefix_successor(&[1, 2]), Some(vec![1, 3]));
        assert_eq!(prefix_successor(&[1, 0xFF]), Some(vec![2]));
        assert_eq!(prefix_successor(&[0xFF, 0xFF]), None);
        assert_eq!(prefix_successor(&[]), None);
    }

    fn ix(desc: bool, eq: Vec<EqBound>, range: Option<RangeBound>) -> IndexAccess {
        IndexAccess {
            index_id: 1,
            index_name: "i".into(),
            columns: vec![
                IndexColumn {
                    ordinal: 0,
                    ty: DataType::Int4,
                    desc,
                },
                IndexColumn {
                    ordinal: 1,
                    ty: DataType::Int4,
                    desc,
                },
            ],
            eq,
            range,
            reverse: false,
            limit: None,
            cond: String::new(),
        }
    }

    fn lit(i: i64) -> Expr {
        Expr::Literal(Value::Int(i))
    }

    /// Every (a, b, pk) entry whose values satisfy `pred` lies inside one of the ranges, and
    /// entries outside the predicate's superset are excluded where the bounds promise it.
    fn check(
        desc: bool,
        eq: Vec<EqBound>,
        range: Option<RangeBound>,
        pred: &dyn Fn(Option<i64>, Option<i64>) -> bool,
    ) {
        let access = ix(desc, eq, range);
        let ranges = key_ranges(&access, &|e| match e {
            Expr::Literal(v) => Ok(v.clone()),
            _ => unreachable!(),
        })
        .unwrap();
        let vals = [None, Some(-3), Some(0), Some(1), Some(2), Some(5), Some(9)];
        for a in vals {
            for b in vals {
                let mut key = Vec::new();
                for (v, c) in [a, b].iter().zip(&access.columns) {
                    encode_col(&v.map(Value::Int).unwrap_or(Value::Null), c, &mut key);
                }
                key.extend_from_slice(&[0x01, 0x42]); // a primary-key suffix
                let inside = ranges.iter().any(|(s, e)| {
                    (match s {
                        Bound::Included(s) => key >= *s,
                        Bound::Excluded(s) => key > *s,
                        Bound::Unbounded => true,
                    }) && (match e {
                        Bound::Included(e) => key <= *e,
                        Bound::Excluded(e) => key < *e,
                        Bound::Unbounded => true,
                    })
                });
                assert_eq!(inside, pred(a, b), "desc={desc} a={a:?} b={b:?}");
            }
        }
    }

    #[test]
    fn ranges_are_exact_for_single_column_bounds() {
        for desc in [false, true] {
            check(desc, vec![EqBound::Values(vec![lit(1)])], None, &|a, _| {
                a == Some(1)
            });
            check(
                desc,
                vec![EqBound::Values(vec![lit(5), lit(1), lit(5)])],
                None,
                &|a, _| a == Some(1) || a == Some(5),
            );
            check(desc, vec![EqBound::Null], None, &|a, _| a.is_none());
            check(
                desc,
                vec![],
                Some(RangeBound {
                    lower: Some((lit(0), true)),
                    upper: Some((lit(2), false)),
                }),
                &|a, _| a.is_some_and(|a| (0..2).contains(&a)),
            );
            check(
                desc,
                vec![],
                Some(RangeBound {
                    lower: Some((lit(0), false)),
                    upper: None,
                }),
                &|a, _| a.is_some_and(|a| a > 0),
            );
            check(
                desc,
                vec![],
                Some(RangeBound {
                    lower: None,
                    upper: Some((lit(1), true)),
                }),
                &|a, _| a.is_some_and(|a| a <= 1),
            );
            check(
                desc,
                vec![EqBound::Values(vec![lit(2), lit(9)])],
                Some(RangeBound {
                    lower: Some((lit(0), false)),
                    upper: Some((lit(5), true)),
                }),
                &|a, b| matches!(a, Some(2) | Some(9)) && b.is_some_and(|b| b > 0 && b <= 5),
            );
            check(
                desc,
                vec![],
                Some(RangeBound {
                    lower: Some((lit(5), true)),
                    upper: Some((lit(1), true)),
                }),
                &|_, _| false,
            );
        }
    }
}
