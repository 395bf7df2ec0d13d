//! Shard pruning: which shards a scan must visit, from its access path and filter.
//!
//! - every shard-key column fixed (`col = v`, `col IN (...)`, or a primary-key point lookup):
//!   only the owners of those keys;
//! - a range-placed table with bounds on its first shard-key column (`<`, `<=`, `>`, `>=`,
//!   `=`): only the owners of the ranges the bounds overlap;
//! - anything else: every shard holding the table (scatter-gather).
//!
//! Pruning only ever drops shards that cannot hold a matching row: the full filter still runs
//! on the shards it keeps, so a predicate it does not understand (an `OR`, a cast of the
//! column, a value of another type) simply prunes nothing. Values are evaluated at execution
//! (parameters, outer references), so one prepared statement routes per execution.

use super::{PlacementKind, ShardMap, TableRoute};
use crate::error::SqlResult;
use crate::sql::expr::{CmpOp, Expr};
use crate::sql::plan::Access;
use crate::types::{DataType, Value, keycode};
use std::ops::Bound;

/// More key combinations than this (`a IN (...) AND b IN (...)`) scatter instead.
const MAX_KEY_COMBINATIONS: usize = 4096;

/// Where a scan goes, and why (for EXPLAIN).
#[derive(Debug, Clone, PartialEq)]
pub struct ScanRoute {
    pub shards: Vec<usize>,
    pub reason: RouteReason,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteReason {
    /// Shard key fixed by the predicate.
    Keys,
    /// Range bounds on a range-placed table.
    Ranges,
    /// Nothing prunes: every shard of the table.
    All,
}

impl RouteReason {
    pub fn describe(self) -> &'static str {
        match self {
            RouteReason::Keys => "shard key",
            RouteReason::Ranges => "range bounds",
            RouteReason::All => "scatter-gather",
        }
    }
}

/// An expression whose value does not depend on the scanned row.
fn is_const(e: &Expr) -> bool {
    match e {
        Expr::Literal(_) | Expr::Param(_) | Expr::Outer { .. } => true,
        Expr::Cast { expr, .. } | Expr::Negate { expr, .. } => is_const(expr),
        Expr::Arith { left, right, .. } => is_const(left) && is_const(right),
        _ => false,
    }
}

/// Whether `v` is a value of `ty` as stored, so its key encoding is the stored row's.
pub fn fits(v: &Value, ty: DataType) -> bool {
    matches!(
        (v, ty),
        (Value::Bool(_), DataType::Bool)
            | (
                Value::Int(_),
                DataType::Int2 | DataType::Int4 | DataType::Int8
            )
            | (Value::Float(_), DataType::Float4 | DataType::Float8)
            | (Value::Numeric(_), DataType::Numeric(_))
            | (Value::Text(_), DataType::Text | DataType::Varchar(_))
            | (Value::Bytea(_), DataType::Bytea)
            | (Value::Date(_), DataType::Date)
            | (Value::Timestamp(_), DataType::Timestamp)
            | (Value::Uuid(_), DataType::Uuid)
    )
}

fn conjuncts<'e>(e: &'e Expr, out: &mut Vec<&'e Expr>) {
    match e {
        Expr::And(items) => items.iter().for_each(|i| conjuncts(i, out)),
        other => out.push(other),
    }
}

/// `col op const` with the column on either side (the operator flipped to read `col op v`).
fn column_cmp(e: &Expr) -> Option<(usize, CmpOp, &Expr)> {
    let Expr::Cmp { op, left, right } = e else {
        return None;
    };
    match (&**left, &**right) {
        (Expr::Column(c), v) if is_const(v) => Some((*c, *op, v)),
        (v, Expr::Column(c)) if is_const(v) => {
            let flipped = match op {
                CmpOp::Lt => CmpOp::Gt,
                CmpOp::LtEq => CmpOp::GtEq,
                CmpOp::Gt => CmpOp::Lt,
                CmpOp::GtEq => CmpOp::LtEq,
                other => *other,
            };
            Some((*c, flipped, v))
        }
        _ => None,
    }
}

/// The shards `access` + `filter` must visit under `map`. `eval` evaluates constant
/// expressions (parameters and outer references included); an evaluation error prunes nothing.
pub fn route_scan(
    map: &ShardMap,
    route: &TableRoute,
    access: &Access,
    filter: Option<&Expr>,
    eval: &dyn Fn(&Expr) -> SqlResult<Value>,
) -> ScanRoute {
    let all = || ScanRoute {
        shards: map.table_shards(route),
        reason: RouteReason::All,
    };
    // Candidate values per shard-key column (None: unconstrained).
    let mut fixed: Vec<Option<Vec<Value>>> = vec![None; route.key_columns.len()];
    if let Access::Point { key } = access {
        for (expr, col) in key.iter().zip(&route.pk) {
            if let Some(k) = route.key_columns.iter().position(|c| c == col) {
                match eval(expr) {
                    Ok(v) => fixed[k] = Some(vec![v]),
                    Err(_) => return all(),
                }
            }
        }
    }
    let mut lower: Option<(Value, bool)> = None;
    let mut upper: Option<(Value, bool)> = None;
    let mut parts = Vec::new();
    if let Some(f) = filter {
        conjuncts(f, &mut parts);
    }
    for part in parts {
        if let Some((col, op, v)) = column_cmp(part) {
            let Some(k) = route.key_columns.iter().position(|c| *c == col) else {
                continue;
            };
            let Ok(v) = eval(v) else { continue };
            if v.is_null() {
                // `col op NULL` holds for no row.
                return ScanRoute {
                    shards: Vec::new(),
                    reason: RouteReason::Keys,
                };
            }
            if !fits(&v, route.key_types[k]) {
                continue;
            }
            match op {
                CmpOp::Eq if fixed[k].is_none() => fixed[k] = Some(vec![v]),
                CmpOp::Gt | CmpOp::GtEq if k == 0 && lower.is_none() => {
                    lower = Some((v, op == CmpOp::GtEq))
                }
                CmpOp::Lt | CmpOp::LtEq if k == 0 && upper.is_none() => {
                    upper = Some((v, op == CmpOp::LtEq))
                }
                _ => {}
            }
        } else if let Expr::InList {
            expr,
            list,
            negated: false,
        } = part
            && let Expr::Column(col) = &**expr
            && let Some(k) = route.key_columns.iter().position(|c| c == col)
            && fixed[k].is_none()
            && list.iter().all(is_const)
        {
            let mut values = Vec::with_capacity(list.len());
            for e in list {
                match eval(e) {
                    // NULL in an IN list matches nothing.
                    Ok(Value::Null) => {}
                    Ok(v) if fits(&v, route.key_types[k]) => values.push(v),
                    _ => {
                        values.clear();
                        break;
                    }
                }
            }
            if values.len()
                == list
                    .iter()
                    .filter(|e| !matches!(e, Expr::Literal(Value::Null)))
                    .count()
            {
                fixed[k] = Some(values);
            }
        }
    }
    if fixed.iter().all(Option::is_some) {
        let combos = fixed
            .iter()
            .map(|v| v.as_ref().map_or(0, Vec::len))
            .try_fold(1usize, |acc, n| acc.checked_mul(n));
        if let Some(n) = combos
            && n <= MAX_KEY_COMBINATIONS
        {
            let mut keys: Vec<Vec<u8>> = vec![Vec::new()];
            for (k, values) in fixed.iter().enumerate() {
                let values = values.as_ref().expect("all fixed");
                let mut next = Vec::with_capacity(keys.len() * values.len());
                for prefix in &keys {
                    for v in values {
                        if v.is_null() {
                            continue;
                        }
                        let mut key = prefix.clone();
                        keycode::encode_key_value(v, route.key_types[k], &mut key);
                        next.push(key);
                    }
                }
                keys = next;
            }
            let mut shards: Vec<usize> = keys.iter().map(|k| map.owner_of_key(route, k)).collect();
            shards.sort_unstable();
            shards.dedup();
            return ScanRoute {
                shards,
                reason: RouteReason::Keys,
            };
        }
    }
    if route.kind == PlacementKind::Range {
        if let Some(Some(values)) = fixed.first()
            && values.len() == 1
        {
            lower = Some((values[0].clone(), true));
            upper = Some((values[0].clone(), true));
        }
        if lower.is_some() || upper.is_some() {
            let ty = route.key_types[0];
            let enc = |v: &Value| {
                let mut out = Vec::new();
                keycode::encode_key_value(v, ty, &mut out);
                out
            };
            // A bound on the first column bounds every key starting with it: `>= v` / `> v`
            // is at least enc(v); `<= v` is below the successor of enc(v)'s prefix, `< v`
            // below enc(v). (`> v` keeps enc(v)'s own range: a superset is fine.)
            let lo = lower.as_ref().map(|(v, _)| enc(v));
            let hi = upper.as_ref().map(|(v, inclusive)| {
                let mut k = enc(v);
                if *inclusive {
                    k.push(0xFF);
                    k.push(0xFF);
                }
                (k, *inclusive)
            });
            if let Some(rm) = map.range_map(route.table_id) {
                let shards = rm.owners_between(
                    lo.as_deref().map_or(Bound::Unbounded, Bound::Included),
                    match &hi {
                        None => Bound::Unbounded,
                        Some((k, true)) => Bound::Included(k.as_slice()),
                        Some((k, false)) => Bound::Excluded(k.as_slice()),
                    },
                );
                return ScanRoute {
                    shards,
                    reason: RouteReason::Ranges,
                };
            }
        }
    }
    all()
}
