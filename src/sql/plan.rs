//! Logical plans: what a statement computes, with every name resolved and every type known.
//!
//! A [`Plan`] is a tree of relational operators whose leaves are table scans (run on shards),
//! system-view scans (rows computed from every shard's statistics) or constant rows. Each
//! operator's output is a row of values by position; the binder keeps the names and types
//! alongside. Scans carry the part of the work a shard can do itself (a filter, and a point
//! lookup when the primary key is fixed by the predicate), so only matching rows cross the shard
//! boundary.

use crate::catalog::SystemView;
use crate::error::SqlResult;
use crate::sql::expr::Expr;
use crate::types::{DataType, Value};
use serde::{Deserialize, Serialize};

/// `5`, `5 + 10` or `$1` as EXPLAIN shows a per-shard limit.
fn limit_text(limit: &Expr, offset: &Option<Expr>) -> String {
    fn one(e: &Expr) -> String {
        match e {
            Expr::Literal(crate::types::Value::Int(n)) => n.to_string(),
            Expr::Param(i) => format!("${}", i + 1),
            Expr::Cast { expr, .. } => one(expr),
            _ => "(expression)".to_string(),
        }
    }
    match offset {
        None => one(limit),
        Some(o) => format!("{} + {}", one(limit), one(o)),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum JoinKind {
    Inner,
    Left,
    Right,
    Full,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SetOpKind {
    Union,
    Intersect,
    Except,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AggFunc {
    CountStar,
    Count,
    Sum,
    Avg,
    Min,
    Max,
    BoolAnd,
    BoolOr,
    StringAgg,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AggCall {
    pub func: AggFunc,
    /// Arguments (none for `count(*)`; the separator second for `string_agg`).
    pub args: Vec<Expr>,
    pub distinct: bool,
    pub arg_type: DataType,
    pub result_type: DataType,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SortKey {
    pub expr: Expr,
    pub desc: bool,
    pub nulls_first: bool,
}

/// Orders two rows' sort-key values (`a[i]` and `b[i]` are key `i`'s values) as ORDER BY does:
/// each key ascending or descending, NULLs first or last as the key says.
pub fn compare_sort_keys(a: &[Value], b: &[Value], keys: &[SortKey]) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    for ((x, y), k) in a.iter().zip(b).zip(keys) {
        let ord = match (x.is_null(), y.is_null()) {
            (true, true) => Ordering::Equal,
            (true, false) => {
                if k.nulls_first {
                    Ordering::Less
                } else {
                    Ordering::Greater
                }
            }
            (false, true) => {
                if k.nulls_first {
                    Ordering::Greater
                } else {
                    Ordering::Less
                }
            }
            (false, false) => {
                let o = crate::types::compare::compare(x, y);
                if k.desc { o.reverse() } else { o }
            }
        };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    Ordering::Equal
}

/// What a [`Plan::Pushdown`] runs on each shard it scans (see `sql/pushdown.rs`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PushedOp {
    /// Each shard groups its rows into partial aggregate states; the coordinator merges and
    /// finishes them, so the node's output is exactly `Plan::Aggregate`'s. Expressions are
    /// over the stored row.
    Aggregate {
        group_by: Vec<Expr>,
        group_types: Vec<DataType>,
        aggs: Vec<AggCall>,
    },
    /// Each shard drops duplicate (projected) rows; the coordinator `Distinct` above
    /// deduplicates again across shards.
    Distinct { types: Vec<DataType> },
    /// Each shard returns only its first `limit + offset` (projected) rows by `keys` (over the
    /// projected row; evaluated at execution, NULL limit: every row); the coordinator `Sort`
    /// and `Limit` above finish the job.
    TopN {
        keys: Vec<SortKey>,
        limit: Expr,
        offset: Option<Expr>,
    },
}

/// How a scan finds its rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Access {
    /// Every shard, every row of the table (filtered on the shard).
    Full,
    /// The predicate fixes the whole primary key: one shard, one key. The expressions give the
    /// key values in key order, already of the key columns' types.
    Point { key: Vec<Expr> },
    /// Every shard, through one secondary index (see `sql/access.rs`).
    Index(Box<IndexAccess>),
}

/// A leading index column fixed by the predicate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum EqBound {
    /// `col = v` (one value) or `col IN (v1, ...)` (several ranges, sorted and deduplicated at
    /// execution). Values are of the column's type; NULL values match nothing.
    Values(Vec<Expr>),
    /// `col IS NULL`.
    Null,
}

/// Bounds on the index column after the fixed ones: `(value, inclusive)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RangeBound {
    pub lower: Option<(Expr, bool)>,
    pub upper: Option<(Expr, bool)>,
}

/// An index range scan. The bounds are a superset of the rows the scan's filter accepts (the
/// whole filter still runs on the shards), so they never change results, only how many index
/// entries are examined.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexAccess {
    pub index_id: u32,
    pub index_name: String,
    pub columns: Vec<crate::rpc::IndexColumn>,
    pub eq: Vec<EqBound>,
    /// On column `eq.len()`.
    pub range: Option<RangeBound>,
    /// Walk the index backwards (ORDER BY the index columns reversed).
    pub reverse: bool,
    /// Top-N: each shard stops after `limit + offset` matching rows (both evaluated at
    /// execution; NULL means no limit). Set only below a coordinator Sort that restores the
    /// global order.
    pub limit: Option<(Expr, Option<Expr>)>,
    /// The bounds as text, for EXPLAIN.
    pub cond: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Plan {
    Scan {
        table_id: u32,
        table_name: String,
        /// Types of the stored columns (the row the shard returns), for key encoding.
        column_types: Vec<DataType>,
        /// Primary-key column positions in key order.
        primary_key: Vec<usize>,
        /// How the table is placed (routes the scan to the shards that can hold its rows).
        placement: crate::placement::PlacementSpec,
        access: Access,
        /// Runs on the shard; always shippable.
        filter: Option<Expr>,
    },
    /// The rows of a system view, computed at execution time from a statistics request to every
    /// shard. Filters above it run at the coordinator (there is nothing stored to push them into).
    SystemScan {
        view: SystemView,
    },
    /// Constant rows (`VALUES`, or one empty row for `SELECT` without `FROM` when empty).
    Values {
        rows: Vec<Vec<Expr>>,
        width: usize,
    },
    Filter {
        input: Box<Plan>,
        predicate: Expr,
    },
    Project {
        input: Box<Plan>,
        exprs: Vec<Expr>,
    },
    Join {
        left: Box<Plan>,
        right: Box<Plan>,
        kind: JoinKind,
        /// Evaluated over `left ++ right`.
        on: Option<Expr>,
        left_width: usize,
        right_width: usize,
        /// Equality keys (left expr over the left row, right expr over the right row) usable for
        /// a hash join; `on` still holds the full condition.
        equi: Vec<(Expr, Expr, DataType)>,
        /// Where it runs (`sql/join_strategy.rs`), chosen after binding.
        strategy: crate::sql::join_strategy::JoinStrategy,
    },
    /// Output: group-by values, then aggregate results.
    Aggregate {
        input: Box<Plan>,
        group_by: Vec<Expr>,
        group_types: Vec<DataType>,
        aggs: Vec<AggCall>,
    },
    Sort {
        input: Box<Plan>,
        keys: Vec<SortKey>,
    },
    Limit {
        input: Box<Plan>,
        limit: Option<Expr>,
        offset: Option<Expr>,
    },
    Distinct {
        input: Box<Plan>,
        types: Vec<DataType>,
    },
    SetOp {
        op: SetOpKind,
        all: bool,
        left: Box<Plan>,
        right: Box<Plan>,
        types: Vec<DataType>,
    },
    /// Work done on the shards of a scan-gather (`sql/pushdown.rs`): `scan` (a `Plan::Scan`
    /// with full or index access) is read on every shard, each row that passes its filter is
    /// projected by `project` (if any, over the stored row) and handed to `op`; only `op`'s
    /// results cross the shard boundary.
    Pushdown {
        scan: Box<Plan>,
        project: Option<Vec<Expr>>,
        op: PushedOp,
    },
}

impl Plan {
    /// Applies `f` to every expression held directly by this plan's nodes (not into subquery
    /// plans inside those expressions; `f` decides whether to descend).
    pub fn map_exprs(self, f: &mut dyn FnMut(Expr) -> SqlResult<Expr>) -> SqlResult<Plan> {
        let all = |v: Vec<Expr>, f: &mut dyn FnMut(Expr) -> SqlResult<Expr>| {
            v.into_iter().map(&mut *f).collect::<SqlResult<Vec<_>>>()
        };
        let sub =
            |p: Box<Plan>, f: &mut dyn FnMut(Expr) -> SqlResult<Expr>| p.map_exprs(f).map(Box::new);
        Ok(match self {
            Plan::Scan {
                table_id,
                table_name,
                column_types,
                primary_key,
                placement,
                access,
                filter,
            } => Plan::Scan {
                table_id,
                table_name,
                column_types,
                primary_key,
                placement,
                access: match access {
                    Access::Full => Access::Full,
                    Access::Point { key } => Access::Point { key: all(key, f)? },
                    Access::Index(ix) => {
                        let IndexAccess {
                            eq, range, limit, ..
                        } = *ix.clone();
                        let eq = eq
                            .into_iter()
                            .map(|b| {
                                Ok(match b {
                                    EqBound::Values(v) => EqBound::Values(all(v, f)?),
                                    EqBound::Null => EqBound::Null,
                                })
                            })
                            .collect::<SqlResult<_>>()?;
                        let range = match range {
                            None => None,
                            Some(r) => Some(RangeBound {
                                lower: r.lower.map(|(e, i)| Ok((f(e)?, i))).transpose()?,
                                upper: r.upper.map(|(e, i)| Ok((f(e)?, i))).transpose()?,
                            }),
                        };
                        let limit = match limit {
                            None => None,
                            Some((l, o)) => Some((f(l)?, o.map(&mut *f).transpose()?)),
                        };
                        Access::Index(Box::new(IndexAccess {
                            eq,
                            range,
                            limit,
                            ..*ix
                        }))
                    }
                },
                filter: filter.map(&mut *f).transpose()?,
            },
            Plan::SystemScan { view } => Plan::SystemScan { view },
            Plan::Values { rows, width } => Plan::Values {
                rows: rows
                    .into_iter()
                    .map(|r| all(r, f))
                    .collect::<SqlResult<_>>()?,
                width,
            },
            Plan::Filter { input, predicate } => Plan::Filter {
                input: sub(input, f)?,
                predicate: f(predicate)?,
            },
            Plan::Project { input, exprs } => Plan::Project {
                input: sub(input, f)?,
                exprs: all(exprs, f)?,
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
                strategy,
                left: sub(left, f)?,
                right: sub(right, f)?,
                kind,
                on: on.map(&mut *f).transpose()?,
                left_width,
                right_width,
                equi: equi
                    .into_iter()
                    .map(|(l, r, t)| Ok((f(l)?, f(r)?, t)))
                    .collect::<SqlResult<_>>()?,
            },
            Plan::Aggregate {
                input,
                group_by,
                group_types,
                aggs,
            } => Plan::Aggregate {
                input: sub(input, f)?,
                group_by: all(group_by, f)?,
                group_types,
                aggs: aggs
                    .into_iter()
                    .map(|a| {
                        Ok(AggCall {
                            args: all(a.args, f)?,
                            ..a
                        })
                    })
                    .collect::<SqlResult<_>>()?,
            },
            Plan::Sort { input, keys } => Plan::Sort {
                input: sub(input, f)?,
                keys: keys
                    .into_iter()
                    .map(|k| {
                        Ok(SortKey {
                            expr: f(k.expr)?,
                            ..k
                        })
                    })
                    .collect::<SqlResult<_>>()?,
            },
            Plan::Limit {
                input,
                limit,
                offset,
            } => Plan::Limit {
                input: sub(input, f)?,
                limit: limit.map(&mut *f).transpose()?,
                offset: offset.map(&mut *f).transpose()?,
            },
            Plan::Distinct { input, types } => Plan::Distinct {
                input: sub(input, f)?,
                types,
            },
            Plan::SetOp {
                op,
                all: is_all,
                left,
                right,
                types,
            } => Plan::SetOp {
                op,
                all: is_all,
                left: sub(left, f)?,
                right: sub(right, f)?,
                types,
            },
            Plan::Pushdown { scan, project, op } => Plan::Pushdown {
                scan: sub(scan, f)?,
                project: project.map(|p| all(p, f)).transpose()?,
                op: match op {
                    PushedOp::Aggregate {
                        group_by,
                        group_types,
                        aggs,
                    } => PushedOp::Aggregate {
                        group_by: all(group_by, f)?,
                        group_types,
                        aggs: aggs
                            .into_iter()
                            .map(|a| {
                                Ok(AggCall {
                                    args: all(a.args, f)?,
                                    ..a
                                })
                            })
                            .collect::<SqlResult<_>>()?,
                    },
                    PushedOp::Distinct { types } => PushedOp::Distinct { types },
                    PushedOp::TopN {
                        keys,
                        limit,
                        offset,
                    } => PushedOp::TopN {
                        keys: keys
                            .into_iter()
                            .map(|k| {
                                Ok(SortKey {
                                    expr: f(k.expr)?,
                                    ..k
                                })
                            })
                            .collect::<SqlResult<_>>()?,
                        limit: f(limit)?,
                        offset: offset.map(&mut *f).transpose()?,
                    },
                },
            },
        })
    }

    /// Replaces the plan of every subquery in this plan's expressions (the top level of each:
    /// `f` decides whether to descend further) by `f` of it.
    pub fn map_subquery_plans(self, f: &mut dyn FnMut(Plan) -> SqlResult<Plan>) -> SqlResult<Plan> {
        self.map_exprs(&mut |e| {
            e.transform(&mut |x| match x {
                Expr::Subquery {
                    id,
                    kind,
                    plan,
                    lhs,
                    correlated,
                } => Ok(Expr::Subquery {
                    id,
                    kind,
                    plan: Box::new(f(*plan)?),
                    lhs,
                    correlated,
                }),
                other => Ok(other),
            })
        })
    }

    /// Calls `f` on each input plan of this node (not into subquery plans).
    pub fn for_each_input_mut(&mut self, f: &mut dyn FnMut(&mut Plan)) {
        match self {
            Plan::Scan { .. } | Plan::SystemScan { .. } | Plan::Values { .. } => {}
            Plan::Filter { input, .. }
            | Plan::Project { input, .. }
            | Plan::Aggregate { input, .. }
            | Plan::Sort { input, .. }
            | Plan::Limit { input, .. }
            | Plan::Distinct { input, .. } => f(input),
            Plan::Join { left, right, .. } | Plan::SetOp { left, right, .. } => {
                f(left);
                f(right);
            }
            Plan::Pushdown { scan, .. } => f(scan),
        }
    }

    /// Whether this is (a projection of) an index scan with a per-shard limit.
    fn ordered_index_scan(&self) -> bool {
        match self {
            Plan::Project { input, .. } => input.ordered_index_scan(),
            Plan::Scan {
                access: Access::Index(ix),
                ..
            } => ix.limit.is_some(),
            _ => false,
        }
    }

    /// Whether this is a per-shard top-N.
    fn shard_top_n(&self) -> bool {
        matches!(
            self,
            Plan::Pushdown {
                op: PushedOp::TopN { .. },
                ..
            }
        )
    }

    /// An indented, human-readable rendering for EXPLAIN.
    pub fn explain(&self) -> Vec<String> {
        let mut out = Vec::new();
        self.explain_into(0, &mut out, None);
        out
    }

    /// EXPLAIN with each scan's shards under `map` (values known at planning: literals;
    /// parameters route at execution and show as a scatter here).
    pub fn explain_routed(&self, map: &crate::placement::ShardMap) -> Vec<String> {
        let mut out = Vec::new();
        self.explain_into(0, &mut out, Some(map));
        out
    }

    /// For a join of two hash-placed tables on their shard keys (every shard-key column of
    /// one equal to the same-position shard-key column of the other, of the same key
    /// encoding): the two scans. Such a join has every matching pair on one shard (one ring
    /// for all hash tables), so each shard can join its own rows (a co-located join).
    pub fn colocated_join(&self) -> Option<(&Plan, &Plan)> {
        let Plan::Join {
            left,
            right,
            on,
            equi,
            ..
        } = self
        else {
            return None;
        };
        let key = |p: &Plan| -> Option<Vec<(usize, DataType)>> {
            match p {
                Plan::Scan {
                    column_types,
                    primary_key,
                    placement,
                    access: Access::Full | Access::Index(_),
                    ..
                } if placement.kind == crate::placement::PlacementKind::Hash => {
                    let cols = if placement.columns.is_empty() {
                        primary_key
                    } else {
                        &placement.columns
                    };
                    Some(cols.iter().map(|c| (*c, column_types[*c])).collect())
                }
                _ => None,
            }
        };
        let (lk, rk) = (key(left)?, key(right)?);
        if lk.len() != rk.len() || on.as_ref().is_some_and(|e| !e.is_shippable()) {
            return None;
        }
        let same_encoding = |a: DataType, b: DataType| a == b || (a.is_integer() && b.is_integer());
        let covered = lk.iter().zip(&rk).all(|((lc, lt), (rc, rt))| {
            same_encoding(*lt, *rt)
                && equi.iter().any(|(le, re, _)| {
                    matches!((le, re), (Expr::Column(a), Expr::Column(b)) if a == lc && b == rc)
                })
        });
        covered.then_some((&**left, &**right))
    }

    /// The shards a scan touches under `map`, as EXPLAIN shows them.
    pub fn scan_route(
        &self,
        map: &crate::placement::ShardMap,
    ) -> Option<crate::placement::router::ScanRoute> {
        let Plan::Scan {
            table_id,
            column_types,
            primary_key,
            placement,
            access,
            filter,
            ..
        } = self
        else {
            return None;
        };
        let route =
            crate::placement::TableRoute::new(*table_id, placement, primary_key, column_types);
        let ctx = crate::sql::expr::EvalContext::empty();
        Some(crate::placement::router::route_scan(
            map,
            &route,
            access,
            filter.as_ref(),
            &|e| e.eval(&[], &ctx),
        ))
    }

    fn explain_into(
        &self,
        depth: usize,
        out: &mut Vec<String>,
        map: Option<&crate::placement::ShardMap>,
    ) {
        let pad_at = |depth: usize| {
            if depth == 0 {
                String::new()
            } else {
                format!("{}->  ", "  ".repeat(depth * 2 - 1))
            }
        };
        let pad = pad_at(depth);
        let line = match self {
            Plan::Scan {
                table_name,
                access,
                filter,
                ..
            } => {
                let route = map.and_then(|m| self.scan_route(m));
                let shards_text = |r: &crate::placement::router::ScanRoute| match r.shards.len() {
                    0 => "no shards".to_string(),
                    1 => format!("shard {}", r.shards[0]),
                    _ => format!(
                        "shards {}",
                        r.shards
                            .iter()
                            .map(|s| s.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                };
                let pruned = route
                    .as_ref()
                    .filter(|r| r.reason != crate::placement::router::RouteReason::All);
                let how = match access {
                    Access::Full => match pruned {
                        Some(r) => format!("Scan on {} ({})", shards_text(r), r.reason.describe()),
                        None => "Scan on all shards".to_string(),
                    },
                    Access::Point { .. } => match pruned {
                        Some(r) => {
                            format!("Point lookup using {table_name}_pkey on {}", shards_text(r))
                        }
                        None => format!("Point lookup using {table_name}_pkey on one shard"),
                    },
                    Access::Index(ix) => {
                        let where_ = match pruned {
                            Some(r) => format!("{}, {}", shards_text(r), r.reason.describe()),
                            None => "all shards".to_string(),
                        };
                        let mut line = format!(
                            "{}using {} on {table_name} ({where_}",
                            if ix.reverse {
                                "Index Scan Backward "
                            } else {
                                "Index Scan "
                            },
                            ix.index_name
                        );
                        if let Some((l, o)) = &ix.limit {
                            line.push_str(&format!(", per-shard limit {}", limit_text(l, o)));
                        }
                        line.push(')');
                        out.push(format!("{pad}{line}"));
                        let sub = format!("{}    ", " ".repeat(pad.len()));
                        if !ix.cond.is_empty() {
                            out.push(format!("{sub}Index Cond: {}", ix.cond));
                        }
                        if filter.is_some() {
                            out.push(format!("{sub}Filter: pushed to shards"));
                        }
                        return;
                    }
                };
                match filter {
                    Some(_) => format!("{how}: {table_name} (filter pushed to shards)"),
                    None => format!("{how}: {table_name}"),
                }
            }
            Plan::SystemScan { view } => {
                format!("System view {} (statistics from all shards)", view.name())
            }
            Plan::Values { rows, .. } => format!("Values ({} rows)", rows.len()),
            Plan::Filter { .. } => "Filter".to_string(),
            Plan::Project { exprs, .. } => format!("Project ({} columns)", exprs.len()),
            Plan::Join {
                kind,
                equi,
                strategy,
                left,
                right,
                ..
            } => {
                // Statements whose joins were not planned still run co-located joins.
                let strategy = match strategy {
                    crate::sql::join_strategy::JoinStrategy::Unplanned
                        if self.colocated_join().is_some() =>
                    {
                        &crate::sql::join_strategy::JoinStrategy::Colocated
                    }
                    s => s,
                };
                let local = match strategy {
                    crate::sql::join_strategy::JoinStrategy::Broadcast {
                        shipped: crate::sql::join_strategy::Side::Left,
                        ..
                    } => right,
                    _ => left,
                };
                let shards = map
                    .and_then(|m| local.scan_route(m))
                    .map(|r| r.shards.len());
                format!(
                    "{} {:?} Join{}",
                    if equi.is_empty() {
                        "Nested Loop"
                    } else {
                        "Hash"
                    },
                    kind,
                    strategy.describe(shards)
                )
            }
            Plan::Aggregate { group_by, aggs, .. } => format!(
                "Aggregate ({} group keys, {} aggregates)",
                group_by.len(),
                aggs.len()
            ),
            Plan::Sort { keys, input } => {
                if input.ordered_index_scan() {
                    format!(
                        "Sort ({} keys; merges the shards' ordered index scans)",
                        keys.len()
                    )
                } else if input.shard_top_n() {
                    format!("Sort ({} keys; merges the shards' top-N rows)", keys.len())
                } else {
                    format!("Sort ({} keys)", keys.len())
                }
            }
            Plan::Limit { .. } => "Limit".to_string(),
            Plan::Distinct { .. } => "Distinct".to_string(),
            Plan::SetOp { op, all, .. } => {
                format!("{:?}{}", op, if *all { " All" } else { "" })
            }
            Plan::Pushdown { scan, project, op } => {
                // The coordinator's part (for aggregates), then each shard's steps top down.
                let mut steps = Vec::new();
                match op {
                    PushedOp::Aggregate { group_by, aggs, .. } => {
                        out.push(format!(
                            "{pad}Aggregate ({} group keys, {} aggregates; merges the shards' \
                             partial aggregates)",
                            group_by.len(),
                            aggs.len()
                        ));
                        steps.push("Partial Aggregate on each shard".to_string());
                    }
                    PushedOp::Distinct { types } => {
                        steps.push(format!("Distinct on each shard ({} columns)", types.len()))
                    }
                    PushedOp::TopN {
                        keys,
                        limit,
                        offset,
                    } => steps.push(format!(
                        "Top-N {} on each shard ({} keys)",
                        limit_text(limit, offset),
                        keys.len()
                    )),
                }
                if let Some(p) = project {
                    steps.push(format!("Project ({} columns) on each shard", p.len()));
                }
                let first = if matches!(op, PushedOp::Aggregate { .. }) {
                    depth + 1
                } else {
                    depth
                };
                for (i, step) in steps.iter().enumerate() {
                    out.push(format!("{}{step}", pad_at(first + i)));
                }
                scan.explain_into(first + steps.len(), out, map);
                return;
            }
        };
        out.push(format!("{pad}{line}"));
        match self {
            Plan::Scan { .. } | Plan::SystemScan { .. } | Plan::Values { .. } => {}
            Plan::Filter { input, .. }
            | Plan::Project { input, .. }
            | Plan::Aggregate { input, .. }
            | Plan::Sort { input, .. }
            | Plan::Limit { input, .. }
            | Plan::Distinct { input, .. } => input.explain_into(depth + 1, out, map),
            Plan::Join { left, right, .. } | Plan::SetOp { left, right, .. } => {
                left.explain_into(depth + 1, out, map);
                right.explain_into(depth + 1, out, map);
            }
            Plan::Pushdown { .. } => {}
        }
    }
}
