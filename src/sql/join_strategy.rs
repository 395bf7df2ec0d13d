//! Where a join runs: on the shards (co-located or broadcast) or at the coordinator (gather).
//!
//! - **Co-located**: both inputs are hash-placed scans joined on their whole shard keys
//!   ([`Plan::colocated_join`]); one ring places every matching pair on one shard, so each
//!   shard joins its own rows and only joined rows travel.
//! - **Broadcast**: one input is a scan of a sharded table (the *local* side, read where it
//!   lies) and the other (the *shipped* side, any plan) is estimated small. The coordinator
//!   computes the shipped rows once and sends them to each shard the local scan touches; each
//!   shard joins its part of the local side with all of them. Chosen when the shipped side is
//!   estimated at most [`BROADCAST_MAX_ROWS`] rows and sending it to `k` shards costs no more
//!   rows than gathering the local side would: `shipped × (k - 1) <= local`. If the computed
//!   shipped rows turn out larger than [`BROADCAST_MAX_BYTES`], the executor gathers instead.
//! - **Gather**: both inputs come to the coordinator, which joins them.
//!
//! Outer joins: a local side's rows are each on one shard, so a shard pads its own unmatched
//! rows. A shipped side's rows are on every shard, so a shard only reports which of them
//! matched, and the coordinator pads the rows that matched nowhere (once).
//!
//! Row estimates come from the shards' storage engines (SSTable footers and block indexes plus
//! a bounded memtable count, cached for a few seconds: [`TableStatistics`]); operators above
//! scans scale them with fixed selectivities, PostgreSQL's defaults where it has one. The
//! choice is made when the statement is planned (so EXPLAIN shows it) and only with
//! `sharddb.pushdown` on; with it off every join gathers.

use crate::error::SqlResult;
use crate::sql::expr::Expr;
use crate::sql::plan::{Access, JoinKind, Plan, PushedOp};
use crate::txn::coordinator::Coordinator;
use crate::types::{Row, Value};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Largest estimated shipped side (rows) a broadcast is planned for.
pub const BROADCAST_MAX_ROWS: u64 = 100_000;
/// Largest shipped side (bytes of rows, as computed) a broadcast goes ahead with.
pub const BROADCAST_MAX_BYTES: usize = 16 << 20;
/// Fraction of rows a filter (or index condition) is assumed to keep: PostgreSQL's default
/// selectivity for an inequality, the most common shape of an unknown predicate.
const FILTER_SELECTIVITY: f64 = 1.0 / 3.0;
/// Groups per input row assumed for a grouped aggregate.
const GROUP_SELECTIVITY: f64 = 0.1;
/// How long a shard's row estimate is reused.
const ESTIMATE_TTL: Duration = Duration::from_secs(2);
/// Most cached (table, shard) estimates; the cache is cleared when it grows past this.
const ESTIMATE_CACHE_ENTRIES: usize = 65_536;

/// Which input of a join.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Side {
    Left,
    Right,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum JoinStrategy {
    /// Not chosen (the plans of statements other than queries): co-located when the plan
    /// allows it, else gathered.
    #[default]
    Unplanned,
    /// Both inputs gathered at the coordinator.
    Gather,
    /// Each shard joins its own rows of both inputs.
    Colocated,
    /// `shipped` is computed at the coordinator and sent to the shards of the other input,
    /// a scan; the estimates are kept for EXPLAIN.
    Broadcast {
        shipped: Side,
        shipped_rows: u64,
        local_rows: u64,
    },
}

impl JoinStrategy {
    /// EXPLAIN's words for it.
    pub fn describe(&self, shards: Option<usize>) -> String {
        match self {
            JoinStrategy::Gather | JoinStrategy::Unplanned => String::new(),
            JoinStrategy::Colocated => " (co-located: each shard joins its own rows)".into(),
            JoinStrategy::Broadcast {
                shipped,
                shipped_rows,
                local_rows,
            } => {
                let (s, l) = match shipped {
                    Side::Left => ("left", "right"),
                    Side::Right => ("right", "left"),
                };
                let to = match shards {
                    Some(1) => "1 shard".to_string(),
                    Some(n) => format!("{n} shards"),
                    None => "its shards".to_string(),
                };
                format!(
                    " (broadcast: the {s} input, est. {shipped_rows} rows, is sent to {to} of \
                     the {l} input, est. {local_rows} rows)"
                )
            }
        }
    }

    /// How the shard computes a broadcast join of `kind` with `shipped` sent to it: the
    /// shipped side's unmatched rows are left to the coordinator (every shard has them).
    /// Returns the shard's join kind and whether the coordinator pads the shipped side.
    pub fn shard_kind(kind: JoinKind, shipped: Side) -> (JoinKind, bool) {
        use JoinKind::*;
        match (kind, shipped) {
            (Inner, _) => (Inner, false),
            (Left, Side::Left) => (Inner, true),
            (Left, Side::Right) => (Left, false),
            (Right, Side::Right) => (Inner, true),
            (Right, Side::Left) => (Right, false),
            (Full, Side::Left) => (Right, true),
            (Full, Side::Right) => (Left, true),
        }
    }
}

/// The shipped rows no shard matched (`matched[i]` false or missing), padded with NULLs for
/// the other side: what an outer join preserving the shipped side adds once at the end.
pub fn pad_unmatched(
    shipped_rows: &[Row],
    matched: &[bool],
    shipped: Side,
    left_width: usize,
    right_width: usize,
) -> Vec<Row> {
    shipped_rows
        .iter()
        .enumerate()
        .filter(|(i, _)| !matched.get(*i).copied().unwrap_or(false))
        .map(|(_, row)| crate::sql::join::pad_row(row, shipped, left_width, right_width))
        .collect()
}

/// Row estimates for a table on a set of shards.
pub trait RowEstimator {
    fn table_rows(&self, table_id: u32, shards: &[usize]) -> u64;
}

/// Per-(table, shard) row estimates from the shards' storage engines, reused for
/// [`ESTIMATE_TTL`] so planning a statement costs at most one round of requests.
#[derive(Default)]
pub struct TableStatistics {
    cache: parking_lot::Mutex<HashMap<(u32, usize), (Instant, u64)>>,
}

impl TableStatistics {
    /// The estimated rows of `table_id` on `shards`, asking the shards whose cached estimate
    /// is missing or old.
    pub fn table_rows(&self, coord: &Coordinator, table_id: u32, shards: &[usize]) -> u64 {
        let now = Instant::now();
        let mut total = 0u64;
        let mut missing = Vec::new();
        {
            let cache = self.cache.lock();
            for &s in shards {
                match cache.get(&(table_id, s)) {
                    Some((at, n)) if now.duration_since(*at) < ESTIMATE_TTL => total += n,
                    _ => missing.push(s),
                }
            }
        }
        if missing.is_empty() {
            return total;
        }
        let requests = missing
            .iter()
            .map(|&s| (s, crate::rpc::ShardRequest::EstimateRows { table_id }))
            .collect();
        let answers = coord.call_parallel(requests);
        let mut cache = self.cache.lock();
        if cache.len() > ESTIMATE_CACHE_ENTRIES {
            cache.clear();
        }
        for (s, answer) in missing.into_iter().zip(answers) {
            // A shard that cannot answer (being removed, say) counts as empty: an estimate.
            if let Ok(crate::rpc::ShardResponse::Estimate(n)) = answer {
                total += n;
                cache.insert((table_id, s), (now, n));
            }
        }
        total
    }
}

/// How [`choose_strategies`] decides.
#[derive(Clone, Copy)]
pub enum Choice<'a> {
    /// From the plan's shape and these estimates.
    Estimate(Option<&'a dyn RowEstimator>),
    /// Every join gathers (`sharddb.pushdown = off`).
    GatherAll,
}

/// Chooses every join's strategy in `plan`, including the plans of its subqueries.
pub fn choose_strategies(
    plan: Plan,
    choice: Choice<'_>,
    map: &crate::placement::ShardMap,
) -> SqlResult<Plan> {
    let mut plan = plan;
    annotate(&mut plan, choice, map);
    plan.map_subquery_plans(&mut |p| choose_strategies(p, choice, map))
}

fn annotate(plan: &mut Plan, choice: Choice<'_>, map: &crate::placement::ShardMap) {
    plan.for_each_input_mut(&mut |p| annotate(p, choice, map));
    let chosen = match choice {
        Choice::Estimate(est) => choose(plan, est, map),
        Choice::GatherAll => JoinStrategy::Gather,
    };
    if let Plan::Join { strategy, .. } = plan {
        *strategy = chosen;
    }
}

/// The shards a scan touches under `map`, when it is a scan a shard can read as a join
/// input (full or index access without a per-shard limit).
fn local_scan_shards(p: &Plan, map: &crate::placement::ShardMap) -> Option<usize> {
    match p {
        Plan::Scan {
            access: Access::Full,
            ..
        } => {}
        Plan::Scan {
            access: Access::Index(ix),
            ..
        } if ix.limit.is_none() => {}
        _ => return None,
    }
    p.scan_route(map).map(|r| r.shards.len())
}

/// Without estimates only co-located joins run on the shards.
fn choose(
    plan: &Plan,
    est: Option<&dyn RowEstimator>,
    map: &crate::placement::ShardMap,
) -> JoinStrategy {
    let Plan::Join {
        left, right, on, ..
    } = plan
    else {
        return JoinStrategy::Gather;
    };
    if plan.colocated_join().is_some() {
        return JoinStrategy::Colocated;
    }
    let Some(est) = est else {
        return JoinStrategy::Gather;
    };
    if on.as_ref().is_some_and(|e| !e.is_shippable()) {
        return JoinStrategy::Gather;
    }
    let mut best: Option<JoinStrategy> = None;
    let mut best_local = 0u64;
    for (local, shipped, side) in [(left, right, Side::Right), (right, left, Side::Left)] {
        let Some(k) = local_scan_shards(local, map) else {
            continue;
        };
        let local_rows = estimate(local, est, map);
        let shipped_rows = estimate(shipped, est, map);
        let cheaper = shipped_rows.saturating_mul(k.saturating_sub(1) as u64) <= local_rows;
        if shipped_rows <= BROADCAST_MAX_ROWS
            && cheaper
            && (best.is_none() || local_rows > best_local)
        {
            best_local = local_rows;
            best = Some(JoinStrategy::Broadcast {
                shipped: side,
                shipped_rows,
                local_rows,
            });
        }
    }
    best.unwrap_or(JoinStrategy::Gather)
}

fn scaled(n: u64, f: f64) -> u64 {
    ((n as f64) * f).ceil() as u64
}

fn literal_count(e: &Option<Expr>) -> Option<u64> {
    match e {
        Some(Expr::Literal(Value::Int(n))) if *n >= 0 => Some(*n as u64),
        _ => None,
    }
}

/// About how many rows `plan` produces.
pub fn estimate(plan: &Plan, est: &dyn RowEstimator, map: &crate::placement::ShardMap) -> u64 {
    let e = |p: &Plan| estimate(p, est, map);
    match plan {
        Plan::Scan {
            table_id,
            access,
            filter,
            ..
        } => {
            if matches!(access, Access::Point { .. }) {
                return 1;
            }
            let shards = plan
                .scan_route(map)
                .map(|r| r.shards)
                .unwrap_or_else(|| map.shards().to_vec());
            let rows = est.table_rows(*table_id, &shards);
            if filter.is_some() {
                scaled(rows, FILTER_SELECTIVITY)
            } else {
                rows
            }
        }
        Plan::SystemScan { .. } => 100,
        Plan::Values { rows, .. } => rows.len() as u64,
        Plan::Filter { input, .. } => scaled(e(input), FILTER_SELECTIVITY),
        Plan::Project { input, .. } | Plan::Sort { input, .. } | Plan::Distinct { input, .. } => {
            e(input)
        }
        Plan::Join { left, right, .. } => e(left).max(e(right)),
        Plan::Aggregate {
            input, group_by, ..
        } => {
            if group_by.is_empty() {
                1
            } else {
                scaled(e(input), GROUP_SELECTIVITY)
            }
        }
        Plan::Limit { input, limit, .. } => {
            let n = e(input);
            literal_count(limit).map_or(n, |l| l.min(n))
        }
        Plan::SetOp { left, right, .. } => e(left).saturating_add(e(right)),
        Plan::Pushdown { scan, op, .. } => {
            let n = e(scan);
            match op {
                PushedOp::Aggregate { group_by, .. } if group_by.is_empty() => 1,
                PushedOp::Aggregate { .. } => scaled(n, GROUP_SELECTIVITY),
                PushedOp::Distinct { .. } => n,
                PushedOp::TopN { limit, .. } => {
                    literal_count(&Some(limit.clone())).map_or(n, |l| l.min(n))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::expr::EvalContext;
    use crate::sql::join::{Build, JoinSpec, hash_join};
    use crate::types::DataType;
    use proptest::prelude::*;

    fn sorted(mut rows: Vec<Row>) -> Vec<String> {
        let mut v: Vec<String> = rows.drain(..).map(|r| format!("{r:?}")).collect();
        v.sort();
        v
    }

    /// Rows of (key, payload); keys from a small range so matches and misses both happen,
    /// sometimes NULL (never matches).
    fn rows() -> impl Strategy<Value = Vec<Row>> {
        prop::collection::vec(
            (prop::option::of(0i64..6), 0i64..1000)
                .prop_map(|(k, p)| vec![k.map_or(Value::Null, Value::Int), Value::Int(p)]),
            0..25,
        )
    }

    fn kind() -> impl Strategy<Value = JoinKind> {
        prop_oneof![
            Just(JoinKind::Inner),
            Just(JoinKind::Left),
            Just(JoinKind::Right),
            Just(JoinKind::Full),
        ]
    }

    proptest! {
        /// A broadcast join (the local side split over `shards` shards in any way, the shipped
        /// side whole on each, shard kinds and padding as the executor does them) returns the
        /// same rows as joining everything in one place.
        #[test]
        fn broadcast_equals_gathered(
            left in rows(),
            right in rows(),
            kind in kind(),
            shipped_left in any::<bool>(),
            shards in 1usize..5,
            seed in any::<u64>(),
            with_extra_condition in any::<bool>(),
            page in 1usize..8,
        ) {
            let equi = vec![(Expr::Column(0), Expr::Column(0), DataType::Int8)];
            // ON l.key = r.key [AND l.payload < r.payload + 500]
            let eq = Expr::Cmp {
                op: crate::sql::expr::CmpOp::Eq,
                left: Box::new(Expr::Column(0)),
                right: Box::new(Expr::Column(2)),
            };
            let on = if with_extra_condition {
                Expr::And(vec![
                    eq,
                    Expr::Cmp {
                        op: crate::sql::expr::CmpOp::Lt,
                        left: Box::new(Expr::Column(1)),
                        right: Box::new(Expr::Column(3)),
                    },
                ])
            } else {
                eq
            };
            let ctx = EvalContext::empty();
            let spec = |kind| JoinSpec { kind, on: Some(&on), left_width: 2, right_width: 2, equi: &equi };
            let want = hash_join(&left, &right, &spec(kind), &ctx, &mut |_| Ok(())).unwrap();

            let shipped = if shipped_left { Side::Left } else { Side::Right };
            let (shipped_rows, local_rows) = if shipped_left { (left, right) } else { (right, left) };
            let (shard_kind, pad) = JoinStrategy::shard_kind(kind, shipped);
            let mut parts: Vec<Vec<Row>> = vec![Vec::new(); shards];
            for (i, r) in local_rows.into_iter().enumerate() {
                let s = (seed.wrapping_mul(i as u64 + 1).rotate_left(17) % shards as u64) as usize;
                parts[s].push(r);
            }
            // Each shard holds the shipped rows (the build side) and streams its part of
            // the local input past them in pages of `page` rows, as `Shard::join` does.
            let mut got = Vec::new();
            let mut matched = vec![false; shipped_rows.len()];
            let shard_spec = spec(shard_kind);
            for part in parts {
                let mut build = Build::new(&shipped_rows, shipped, &shard_spec, &ctx).unwrap();
                for batch in part.chunks(page) {
                    build.probe(batch, &shard_spec, &ctx, &mut |_| Ok(()), &mut got).unwrap();
                }
                let flags = build.finish(&shard_spec, &mut |_| Ok(()), &mut got).unwrap();
                for (m, f) in matched.iter_mut().zip(flags) {
                    *m |= f;
                }
            }
            if pad {
                got.extend(pad_unmatched(&shipped_rows, &matched, shipped, 2, 2));
            }
            prop_assert_eq!(sorted(got), sorted(want));
        }
    }

    #[test]
    fn shard_kinds_leave_the_shipped_side_to_the_coordinator() {
        use JoinKind::*;
        assert_eq!(JoinStrategy::shard_kind(Inner, Side::Left), (Inner, false));
        assert_eq!(JoinStrategy::shard_kind(Left, Side::Right), (Left, false));
        assert_eq!(JoinStrategy::shard_kind(Left, Side::Left), (Inner, true));
        assert_eq!(JoinStrategy::shard_kind(Full, Side::Right), (Left, true));
        assert_eq!(JoinStrategy::shard_kind(Right, Side::Left), (Right, false));
    }
}
