//! Pushdown: which work above a table scan runs on the shards instead of the coordinator.
//!
//! A scan that reaches every shard (full or secondary-index access) would otherwise ship every
//! matching row to the coordinator, which then aggregates, deduplicates or sorts them. This
//! pass, run on a bound plan (when the `sharddb.pushdown` setting is on), rewrites three shapes
//! into a [`Plan::Pushdown`] so each shard does that work over its own rows and ships only its
//! result:
//!
//! - `Aggregate` over a scan (through projections): each shard aggregates into partial states
//!   (`sql/aggregate.rs`) that the coordinator merges and finishes. Every aggregate but
//!   order-sensitive `string_agg` splits; DISTINCT aggregates ship their distinct values.
//! - `Distinct` over projections of a scan: each shard deduplicates, the coordinator's
//!   `Distinct` (kept above) deduplicates again across shards.
//! - `Limit` over `Sort` over projections of a scan: each shard keeps its first
//!   `limit + offset` rows by the sort keys (ties in scan order); the coordinator's `Sort` and
//!   `Limit` (kept above) merge. The index top-N (`sql/access.rs`) is the same idea for scans
//!   already in key order.
//!
//! Results are identical to the gather path: the shards evaluate the same expressions over the
//! same rows, and answers are merged in shard order, so DISTINCT keeps the same first
//! occurrences and the coordinator's stable sort breaks ties the same way. Two differences are
//! inherent to splitting and are also PostgreSQL's with parallel aggregation: groups without
//! ORDER BY may come out in another order, and a floating-point sum (or avg) adds in another
//! order, which can change its last bits.
//!
//! Everything shipped must be evaluable on a shard's row: no subqueries (parameters and outer
//! references are replaced by their values at execution, as for filters). Sort keys must also
//! be non-volatile, since the coordinator evaluates them again on the rows it merges.

use crate::error::SqlResult;
use crate::sql::aggregate::AggState;
use crate::sql::expr::Expr;
use crate::sql::functions;
use crate::sql::plan::{Access, AggCall, Plan, PushedOp, SortKey};

/// Rewrites every eligible part of `plan`, including the plans of its subqueries.
pub fn push_down(plan: Plan) -> SqlResult<Plan> {
    rewrite(plan).map_subquery_plans(&mut push_down)
}

/// Bottom-up over the operator tree (the shapes above do not overlap).
fn rewrite(plan: Plan) -> Plan {
    let b = |p: Box<Plan>| Box::new(rewrite(*p));
    let plan = match plan {
        Plan::Filter { input, predicate } => Plan::Filter {
            input: b(input),
            predicate,
        },
        Plan::Project { input, exprs } => Plan::Project {
            input: b(input),
            exprs,
        },
        Plan::Join {
            left,
            right,
            kind,
            on,
            left_width,
            right_width,
            equi,
            strategy,
        } => Plan::Join {
            left: b(left),
            right: b(right),
            kind,
            on,
            left_width,
            right_width,
            equi,
            strategy,
        },
        Plan::Aggregate {
            input,
            group_by,
            group_types,
            aggs,
        } => Plan::Aggregate {
            input: b(input),
            group_by,
            group_types,
            aggs,
        },
        Plan::Sort { input, keys } => Plan::Sort {
            input: b(input),
            keys,
        },
        Plan::Limit {
            input,
            limit,
            offset,
        } => Plan::Limit {
            input: b(input),
            limit,
            offset,
        },
        Plan::Distinct { input, types } => Plan::Distinct {
            input: b(input),
            types,
        },
        Plan::SetOp {
            op,
            all,
            left,
            right,
            types,
        } => Plan::SetOp {
            op,
            all,
            left: b(left),
            right: b(right),
            types,
        },
        leaf @ (Plan::Scan { .. }
        | Plan::SystemScan { .. }
        | Plan::Values { .. }
        | Plan::Pushdown { .. }) => leaf,
    };
    match plan {
        Plan::Aggregate {
            input,
            group_by,
            group_types,
            aggs,
        } => match pushed_aggregate(&input, &group_by, &aggs) {
            Some((scan, group_by, aggs)) => Plan::Pushdown {
                scan: Box::new(scan),
                project: None,
                op: PushedOp::Aggregate {
                    group_by,
                    group_types,
                    aggs,
                },
            },
            None => Plan::Aggregate {
                input,
                group_by,
                group_types,
                aggs,
            },
        },
        Plan::Distinct { input, types } => {
            let input = match scan_below(&input) {
                Some((scan, project))
                    if project.as_ref().is_some_and(|p| p.len() == types.len()) =>
                {
                    Box::new(Plan::Pushdown {
                        scan: Box::new(scan),
                        project,
                        op: PushedOp::Distinct {
                            types: types.clone(),
                        },
                    })
                }
                _ => input,
            };
            Plan::Distinct { input, types }
        }
        Plan::Limit {
            mut input,
            limit: Some(limit),
            offset,
        } => {
            push_top_n(&mut input, &limit, &offset);
            Plan::Limit {
                input,
                limit: Some(limit),
                offset,
            }
        }
        other => other,
    }
}

/// The scan under a chain of projections (possibly none), if it reaches every shard, with the
/// projections composed into one list over the stored row. Projections must be shippable.
fn scan_below(plan: &Plan) -> Option<(Plan, Option<Vec<Expr>>)> {
    match plan {
        Plan::Scan { access, .. } => match access {
            Access::Full => Some((plan.clone(), None)),
            Access::Index(ix) if ix.limit.is_none() => Some((plan.clone(), None)),
            _ => None,
        },
        Plan::Project { input, exprs } => {
            if !exprs.iter().all(Expr::is_shippable) {
                return None;
            }
            let (scan, inner) = scan_below(input)?;
            let exprs = exprs
                .iter()
                .map(|e| substitute(e, inner.as_deref()))
                .collect::<Option<Vec<_>>>()?;
            Some((scan, Some(exprs)))
        }
        _ => None,
    }
}

/// `e` (over a projection's output) as an expression over the projection's input.
fn substitute(e: &Expr, project: Option<&[Expr]>) -> Option<Expr> {
    let Some(project) = project else {
        return Some(e.clone());
    };
    let mut ok = true;
    let out = e.clone().transform(&mut |x| match x {
        Expr::Column(i) => Ok(match project.get(i) {
            Some(p) => p.clone(),
            None => {
                ok = false;
                Expr::Column(i)
            }
        }),
        other => Ok(other),
    });
    match out {
        Ok(e) if ok => Some(e),
        _ => None,
    }
}

/// Aggregate over (projections of) a scan, with every group key and argument over the stored
/// row, shippable, and every aggregate splittable.
fn pushed_aggregate(
    input: &Plan,
    group_by: &[Expr],
    aggs: &[AggCall],
) -> Option<(Plan, Vec<Expr>, Vec<AggCall>)> {
    if !aggs.iter().all(AggState::splittable) {
        return None;
    }
    let (scan, project) = scan_below(input)?;
    let over_row = |e: &Expr| substitute(e, project.as_deref()).filter(Expr::is_shippable);
    let group_by = group_by.iter().map(over_row).collect::<Option<Vec<_>>>()?;
    let aggs = aggs
        .iter()
        .map(|a| {
            Some(AggCall {
                args: a.args.iter().map(over_row).collect::<Option<Vec<_>>>()?,
                ..a.clone()
            })
        })
        .collect::<Option<Vec<_>>>()?;
    Some((scan, group_by, aggs))
}

fn volatile(e: &Expr) -> bool {
    let mut v = false;
    e.walk(&mut |x| {
        if let Expr::Func { func, .. } = x {
            v |= functions::is_volatile(*func);
        }
    });
    v
}

/// `Limit → [Project] → Sort → (projections of a scan)`: the projected scan becomes a
/// per-shard top-N below the Sort.
fn push_top_n(input: &mut Plan, limit: &Expr, offset: &Option<Expr>) {
    let node = match input {
        Plan::Project { input, .. } => input.as_mut(),
        other => other,
    };
    let Plan::Sort { input, keys } = node else {
        return;
    };
    if !keys
        .iter()
        .all(|k| k.expr.is_shippable() && !volatile(&k.expr))
    {
        return;
    }
    let Some((scan, project)) = scan_below(input) else {
        return;
    };
    let keys: Vec<SortKey> = keys.clone();
    **input = Plan::Pushdown {
        scan: Box::new(scan),
        project,
        op: PushedOp::TopN {
            keys,
            limit: limit.clone(),
            offset: offset.clone(),
        },
    };
}
