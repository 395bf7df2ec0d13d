//! Executes plans: scans go to shards through the coordinator; everything above a scan runs at
//! the coordinator over materialized rows.
//!
//! This first executor materializes each operator's output. Scans page through shards
//! `SCAN_PAGE` rows at a time, so no single shard response is unbounded, but results are held in
//! memory until the statement finishes; a streaming (pull-based) executor with spill-to-disk sort
//! and aggregation replaces this when result streaming is bounded end to end.
//!
//! System views (`sharddb_storage`, ...) are leaves too: the executor asks every shard for its
//! statistics once per statement, through the same `ShardClient` path as scans, and every reference
//! to a system view in that statement reads that one snapshot, so joins between the views (or a
//! view and itself) agree with each other.
//!
//! Uncorrelated subqueries run once per statement (cached by subquery id); correlated ones run
//! per outer row with the outer rows passed down as evaluation context.

use crate::catalog::SystemView;
use crate::catalog::system::TxnRow;
use crate::error::{SqlError, SqlResult, sqlstate};
use crate::placement::router::route_scan;
use crate::placement::{PlacementManager, ShardMap, TableRoute};
use crate::rpc::{
    IndexScanRequest, JoinInput, JoinRequest, JoinSide, PushdownRequest, PushedResume,
    PushedSource, ScanRequest, ShardOp, ShardRequest, ShardResponse, ShardStats,
};
use crate::shard::keys;
use crate::sql::access;
use crate::sql::aggregate::{GroupTable, encode_tuple, row_bytes};
use crate::sql::expr::{EvalContext, Expr, SubqueryRunner};
use crate::sql::join_strategy::{BROADCAST_MAX_BYTES, JoinStrategy, Side, pad_unmatched};
use crate::sql::plan::{
    Access, AggCall, IndexAccess, JoinKind, Plan, PushedOp, SetOpKind, SortKey, compare_sort_keys,
};
use crate::txn::TxnCtx;
use crate::txn::coordinator::Coordinator;
use crate::types::{DataType, Row, Value, keycode};
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::ops::Bound;
use std::rc::Rc;
use std::sync::Arc;

/// What one scan of a statement got from one shard (EXPLAIN ANALYZE).
#[derive(Debug, Clone, PartialEq)]
pub struct ShardVisit {
    /// Which scan of the statement (scans of one table stay apart: a self-join, a subquery).
    pub scan: usize,
    /// The scanned table.
    pub table: String,
    pub shard: usize,
    /// Rows (or, for a pushed aggregate, groups) the shard returned.
    pub rows: u64,
    pub requests: u64,
    /// Wall time of its requests (requests of one parallel round overlap).
    pub micros: u64,
}

/// Rows examined per shard scan request.
pub const SCAN_PAGE: usize = 1024;
/// Stored rows one pushdown request examines on a shard before it answers (a shard's partial
/// result per request; see `shard/pushdown.rs`).
pub const PUSHDOWN_ROWS: usize = 64 * SCAN_PAGE;
/// Bytes of operator state (groups, distinct rows, top-N rows) a shard holds for one pushdown
/// request before it answers early.
pub const PUSHDOWN_BYTES: usize = 8 << 20;

pub struct Executor<'a> {
    pub coord: &'a Coordinator,
    /// The shard map this statement routes with (one snapshot for the whole statement).
    pub map: Arc<ShardMap>,
    /// EXPLAIN ANALYZE: what each scan asked of each shard.
    analyze: Option<RefCell<Vec<ShardVisit>>>,
    pub read_ts: u64,
    /// The transaction the statement runs in, sent with every read (own intents, READ
    /// UNCOMMITTED, SERIALIZABLE locks); `None` for a plain snapshot read.
    pub txn: Option<TxnCtx>,
    pub params: &'a [Value],
    cache: RefCell<HashMap<usize, Rc<Vec<Row>>>>,
    /// Every shard's statistics, fetched on the statement's first system-view scan.
    shard_stats: RefCell<Option<Rc<Vec<ShardStats>>>>,
    /// Bytes of rows this statement may materialize, and an estimate of what it holds now.
    mem_limit: usize,
    mem_used: Cell<usize>,
}

/// Encodes the primary key of a stored row.
pub fn encode_pk(row: &[Value], pk: &[usize], types: &[DataType]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16);
    for &i in pk {
        keycode::encode_key_value(&row[i], types[i], &mut out);
    }
    out
}

impl<'a> Executor<'a> {
    pub fn new(
        coord: &'a Coordinator,
        placement: &PlacementManager,
        read_ts: u64,
        params: &'a [Value],
    ) -> Executor<'a> {
        Executor {
            coord,
            map: placement.current(),
            analyze: None,
            read_ts,
            txn: None,
            params,
            cache: RefCell::new(HashMap::new()),
            shard_stats: RefCell::new(None),
            mem_limit: usize::MAX,
            mem_used: Cell::new(0),
        }
    }

    /// Bounds the memory the statement's materialized rows may take (the executor does not
    /// stream yet, so this is what keeps one large query from exhausting the server).
    pub fn with_txn(mut self, txn: Option<TxnCtx>) -> Self {
        self.txn = txn;
        self
    }

    pub fn with_mem_limit(mut self, bytes: usize) -> Self {
        self.mem_limit = bytes;
        self
    }

    /// Notes (EXPLAIN ANALYZE) that a pushed-down operator ran at the coordinator instead.
    fn note_fallback(&self, table: &str) {
        self.note_line(&format!(
            "{table}: pushdown not used (data move in progress, rows gathered)"
        ));
    }

    /// Adds a line of its own to EXPLAIN ANALYZE's output.
    fn note_line(&self, text: &str) {
        if let Some(a) = &self.analyze {
            a.borrow_mut().push(ShardVisit {
                scan: 0,
                table: text.to_string(),
                shard: usize::MAX,
                rows: 0,
                requests: 0,
                micros: 0,
            });
        }
    }

    /// Records what each shard answers (EXPLAIN ANALYZE).
    pub fn with_analyze(mut self) -> Self {
        self.analyze = Some(RefCell::new(Vec::new()));
        self
    }

    /// The shard visits recorded so far, one entry per (scan, shard) in first-visit order.
    pub fn visits(&self) -> Vec<ShardVisit> {
        self.analyze
            .as_ref()
            .map(|a| a.borrow().clone())
            .unwrap_or_default()
    }

    fn note(&self, scan: &Plan, table: &str, shard: usize, rows: usize, micros: u64) {
        let Some(a) = &self.analyze else { return };
        let scan = scan as *const Plan as usize;
        let mut a = a.borrow_mut();
        match a.iter_mut().find(|v| v.scan == scan && v.shard == shard) {
            Some(v) => {
                v.rows += rows as u64;
                v.requests += 1;
                v.micros += micros;
            }
            None => a.push(ShardVisit {
                scan,
                table: table.to_string(),
                shard,
                rows: rows as u64,
                requests: 1,
                micros,
            }),
        }
    }

    /// Accounts for `bytes` more of materialized rows; 53200 once past the limit.
    fn charge(&self, bytes: usize) -> SqlResult<()> {
        let used = self.mem_used.get().saturating_add(bytes);
        self.mem_used.set(used);
        if used > self.mem_limit {
            return Err(SqlError::new(sqlstate::OUT_OF_MEMORY, "out of memory")
                .with_detail(format!(
                    "The statement would hold more than {} MiB of rows in memory.",
                    self.mem_limit >> 20
                ))
                .with_hint(
                    "Add a WHERE clause or LIMIT, or raise --statement-mem-mb: sharddb does not \
                 spill or stream intermediate results yet.",
                ));
        }
        Ok(())
    }

    pub fn ctx<'c>(&'c self, outer: &[&'c [Value]]) -> EvalContext<'c> {
        EvalContext {
            params: self.params,
            outer: outer.to_vec(),
            subqueries: Some(self),
            ids: Some(self.coord.ids()),
        }
    }

    pub fn run(&self, plan: &Plan, outer: &[&[Value]]) -> SqlResult<Vec<Row>> {
        match plan {
            Plan::Scan {
                table_id,
                table_name,
                column_types,
                primary_key,
                placement,
                access,
                filter,
            } => {
                let route = TableRoute::new(*table_id, placement, primary_key, column_types);
                let node = (plan, table_name.as_str());
                self.scan(node, &route, column_types, access, filter, outer)
            }
            Plan::SystemScan { view } => self.system_scan(*view),
            Plan::Values { rows, .. } => {
                let ctx = self.ctx(outer);
                let rows = rows
                    .iter()
                    .map(|r| r.iter().map(|e| e.eval(&[], &ctx)).collect())
                    .collect::<SqlResult<Vec<Row>>>()?;
                self.charge(rows.iter().map(|r| row_bytes(r)).sum())?;
                Ok(rows)
            }
            Plan::Filter { input, predicate } => {
                let rows = self.run(input, outer)?;
                let ctx = self.ctx(outer);
                let mut out = Vec::with_capacity(rows.len());
                for r in rows {
                    if predicate.eval(&r, &ctx)? == Value::Bool(true) {
                        out.push(r);
                    }
                }
                Ok(out)
            }
            Plan::Project { input, exprs } => {
                let rows = self.run(input, outer)?;
                let ctx = self.ctx(outer);
                rows.iter()
                    .map(|r| exprs.iter().map(|e| e.eval(r, &ctx)).collect())
                    .collect()
            }
            Plan::Join {
                left,
                right,
                kind,
                on,
                left_width,
                right_width,
                equi,
                strategy,
            } => {
                // During a data move a shard may hold copies it does not own, which a join on
                // the shard cannot leave out: such joins gather (the scans filter them).
                let on_shards = !matches!(strategy, JoinStrategy::Gather)
                    && (plan.colocated_join().is_some()
                        || matches!(strategy, JoinStrategy::Broadcast { .. }));
                if on_shards && self.map.must_filter(self.read_ts) {
                    self.note_line(
                        "join gathered instead of run on the shards (data move in progress)",
                    );
                } else {
                    match strategy {
                        JoinStrategy::Colocated | JoinStrategy::Unplanned => {
                            if let Some((l, r)) = plan.colocated_join() {
                                return self.colocated_join(l, r, plan, outer);
                            }
                        }
                        JoinStrategy::Broadcast { shipped, .. } => {
                            return self.broadcast_join(plan, *shipped, outer);
                        }
                        JoinStrategy::Gather => {}
                    }
                }
                let l = self.run(left, outer)?;
                let r = self.run(right, outer)?;
                self.join(
                    l,
                    r,
                    *kind,
                    on.as_ref(),
                    *left_width,
                    *right_width,
                    equi,
                    outer,
                )
            }
            Plan::Aggregate {
                input,
                group_by,
                group_types,
                aggs,
            } => {
                let rows = self.run(input, outer)?;
                self.aggregate(rows, group_by, group_types, aggs, outer)
            }
            Plan::Sort { input, keys } => {
                let rows = self.run(input, outer)?;
                self.sort(rows, keys, outer)
            }
            Plan::Limit {
                input,
                limit,
                offset,
            } => {
                let ctx = self.ctx(outer);
                let count =
                    |e: &Option<Expr>, what: &str, code: &str| -> SqlResult<Option<usize>> {
                        match e {
                            None => Ok(None),
                            Some(e) => match e.eval(&[], &ctx)? {
                                Value::Null => Ok(None),
                                Value::Int(n) if n < 0 => {
                                    Err(SqlError::new(code, format!("{what} must not be negative")))
                                }
                                Value::Int(n) => Ok(Some(n as usize)),
                                _ => Err(SqlError::internal("non-integer LIMIT")),
                            },
                        }
                    };
                let limit = count(limit, "LIMIT", sqlstate::INVALID_ROW_COUNT_IN_LIMIT)?;
                let offset =
                    count(offset, "OFFSET", sqlstate::INVALID_ROW_COUNT_IN_OFFSET)?.unwrap_or(0);
                let rows = self.run(input, outer)?;
                Ok(rows
                    .into_iter()
                    .skip(offset)
                    .take(limit.unwrap_or(usize::MAX))
                    .collect())
            }
            Plan::Distinct { input, types } => {
                let rows = self.run(input, outer)?;
                let mut seen = HashSet::new();
                Ok(rows
                    .into_iter()
                    .filter(|r| {
                        let n = types.len().min(r.len());
                        seen.insert(encode_tuple(&r[..n], &types[..n]))
                    })
                    .collect())
            }
            Plan::SetOp {
                op,
                all,
                left,
                right,
                types,
            } => {
                let l = self.run(left, outer)?;
                let r = self.run(right, outer)?;
                Ok(set_op(*op, *all, l, r, types))
            }
            Plan::Pushdown { scan, project, op } => {
                self.pushdown(scan, project.as_deref(), op, outer)
            }
        }
    }

    /// Wraps a read request with this statement's map version (see `rpc::ShardRequest::Routed`).
    fn routed(&self, request: ShardRequest) -> ShardRequest {
        ShardRequest::routed(self.map.version, Some(self.read_ts), request)
    }

    /// Drops rows a shard returned that it does not own, while a map change may have left
    /// copies on two shards (`ShardMap::must_filter`).
    fn keep_owned(&self, route: &TableRoute, shard: usize, rows: &mut Vec<Row>) {
        if self.map.must_filter(self.read_ts) {
            rows.retain(|r| self.map.owner_of_row(route, r) == shard);
        }
    }

    fn scan(
        &self,
        (node, name): (&Plan, &str),
        route: &TableRoute,
        column_types: &[DataType],
        access: &Access,
        filter: &Option<Expr>,
        outer: &[&[Value]],
    ) -> SqlResult<Vec<Row>> {
        let table_id = route.table_id;
        let primary_key = &route.pk;
        match access {
            Access::Point { key } => {
                let ctx = self.ctx(outer);
                let mut encoded = Vec::new();
                for (expr, col) in key.iter().zip(primary_key) {
                    let v = expr.eval(&[], &ctx)?;
                    if v.is_null() {
                        return Ok(Vec::new()); // `pk = NULL` matches nothing
                    }
                    keycode::encode_key_value(&v, column_types[*col], &mut encoded);
                }
                let shard = self.map.owner_of_pk(route, &encoded)?;
                let started = std::time::Instant::now();
                let resp = self.coord.call(
                    shard,
                    self.routed(ShardRequest::Get {
                        key: keys::row_key(table_id, &encoded),
                        read_ts: self.read_ts,
                        txn: self.txn,
                    }),
                )?;
                let ShardResponse::Row(row) = resp else {
                    return Err(SqlError::internal("unexpected shard response to Get"));
                };
                let micros = started.elapsed().as_micros() as u64;
                let out = match row {
                    Some(r) => {
                        let keep = match filter {
                            Some(f) => f.eval(&r, &ctx)? == Value::Bool(true),
                            None => true,
                        };
                        if keep { vec![r] } else { vec![] }
                    }
                    None => Vec::new(),
                };
                self.note(node, name, shard, out.len(), micros);
                Ok(out)
            }
            Access::Index(ix) => {
                let shards = self.scan_shards(route, access, filter.as_ref(), outer);
                self.index_scan((node, name), route, &shards, ix, filter, outer)
            }
            Access::Full => {
                let shards = self.scan_shards(route, access, filter.as_ref(), outer);
                let filter = match filter {
                    Some(f) => Some(f.bind_runtime(self.params, outer)?),
                    None => None,
                };
                // Every shard's next page at once; the rows are kept per shard and returned in
                // shard order, as a sequential scan would return them.
                let mut per_shard: Vec<Vec<Row>> = vec![Vec::new(); shards.len()];
                let mut pending: Vec<(usize, Bound<Vec<u8>>)> = (0..shards.len())
                    .map(|i| (i, Bound::Included(keys::table_prefix(table_id))))
                    .collect();
                for round in 0.. {
                    if pending.is_empty() {
                        break;
                    }
                    let requests = pending
                        .iter()
                        .map(|(i, start)| {
                            let scan = ScanRequest {
                                start: start.clone(),
                                end: Bound::Excluded(keys::table_end(table_id)),
                                read_ts: self.read_ts,
                                limit: SCAN_PAGE,
                                filter: filter.clone(),
                                txn: self.txn,
                            };
                            (shards[*i], self.routed(ShardRequest::Scan(scan)))
                        })
                        .collect();
                    let answers = self.call_all(round, requests);
                    let mut next = Vec::new();
                    for ((i, _), (answer, micros)) in pending.into_iter().zip(answers) {
                        let ShardResponse::Rows {
                            mut rows,
                            resume_after,
                        } = answer?
                        else {
                            return Err(SqlError::internal("unexpected shard response to Scan"));
                        };
                        self.keep_owned(route, shards[i], &mut rows);
                        self.note(node, name, shards[i], rows.len(), micros);
                        self.charge(rows.iter().map(|r| row_bytes(r)).sum())?;
                        per_shard[i].extend(rows);
                        if let Some(k) = resume_after {
                            next.push((i, Bound::Excluded(k)));
                        }
                    }
                    pending = next;
                }
                Ok(per_shard.concat())
            }
        }
    }

    /// The shards a scan of `route`'s table must visit (`placement::router`).
    pub fn scan_shards(
        &self,
        route: &TableRoute,
        access: &Access,
        filter: Option<&Expr>,
        outer: &[&[Value]],
    ) -> Vec<usize> {
        let ctx = self.ctx(outer);
        route_scan(&self.map, route, access, filter, &|e| e.eval(&[], &ctx)).shards
    }

    /// Sends each request to its shard and returns the answers in request order: one after
    /// the other in a scatter's first round, all at once (a thread each) in later rounds.
    ///
    /// In-process shards answer a small request in tens of microseconds, less than starting
    /// the threads costs: on the 2-core benchmark machine, sending the first pages of a
    /// 100-row table to 4 shards at once took a `count(*)` from 0.06 ms to 0.86 ms. A shard
    /// that still has rows after its first answer has real work left, and from then on the
    /// shards overlap (about 2x on a 1M-row aggregate, docs/benchmarks.md). Remote shards
    /// would want the first round in parallel too.
    ///
    /// Each answer comes with the wall time of its request (of the whole round, when parallel).
    fn call_all(
        &self,
        round: usize,
        requests: Vec<(usize, ShardRequest)>,
    ) -> Vec<(SqlResult<ShardResponse>, u64)> {
        if round == 0 || requests.len() <= 1 {
            requests
                .into_iter()
                .map(|(shard, request)| {
                    let started = std::time::Instant::now();
                    let answer = self.coord.call(shard, request);
                    (answer, started.elapsed().as_micros() as u64)
                })
                .collect()
        } else {
            let started = std::time::Instant::now();
            let answers = self.coord.call_parallel(requests);
            let micros = started.elapsed().as_micros() as u64;
            answers.into_iter().map(|a| (a, micros)).collect()
        }
    }

    /// `limit + offset` rows per shard, from a top-N's expressions (NULL limit: no limit).
    fn per_shard_limit(
        &self,
        limit: &Expr,
        offset: &Option<Expr>,
        ctx: &EvalContext<'_>,
    ) -> SqlResult<Option<usize>> {
        let n = |e: &Expr| -> SqlResult<Option<usize>> {
            Ok(match e.eval(&[], ctx)? {
                Value::Int(n) => Some(n.max(0) as usize),
                _ => None,
            })
        };
        Ok(match n(limit)? {
            None => None,
            Some(l) => {
                let o = match offset {
                    Some(o) => n(o)?.unwrap_or(0),
                    None => 0,
                };
                Some(l.saturating_add(o))
            }
        })
    }

    /// Where a shard reads a scan's rows for work done on the shard.
    fn pushed_source(
        &self,
        table_id: u32,
        access: &Access,
        ctx: &EvalContext<'_>,
    ) -> SqlResult<PushedSource> {
        Ok(match access {
            Access::Full => PushedSource::Table {
                start: Bound::Included(keys::table_prefix(table_id)),
                end: Bound::Excluded(keys::table_end(table_id)),
            },
            Access::Index(ix) => {
                let eval = |e: &Expr| e.eval(&[], ctx);
                let mut ranges = access::key_ranges(ix, &eval)?;
                if ix.reverse {
                    ranges.reverse();
                }
                PushedSource::Index {
                    index_id: ix.index_id,
                    ranges,
                    reverse: ix.reverse,
                }
            }
            Access::Point { .. } => {
                return Err(SqlError::internal("work on the shards over a point lookup"));
            }
        })
    }

    /// Runs a [`Plan::Pushdown`]: the operator goes to every shard of the scan with the scan's
    /// source and filter; the answers are merged here (partial aggregates finished, rows kept
    /// per shard and returned in shard order for the coordinator operator above).
    fn pushdown(
        &self,
        scan: &Plan,
        project: Option<&[Expr]>,
        op: &PushedOp,
        outer: &[&[Value]],
    ) -> SqlResult<Vec<Row>> {
        let Plan::Scan {
            table_id,
            table_name,
            column_types,
            primary_key,
            placement,
            access,
            filter,
        } = scan
        else {
            return Err(SqlError::internal(
                "pushdown over something other than a scan",
            ));
        };
        let ctx = self.ctx(outer);
        let route = TableRoute::new(*table_id, placement, primary_key, column_types);
        if self.map.must_filter(self.read_ts) {
            // A data move may have left copies on shards that do not own them: a shard's
            // partial result cannot be filtered here, so gather the rows (filtered) instead.
            self.note_fallback(table_name);
            let rows = self.run(scan, outer)?;
            let rows: Vec<Row> = match project {
                None => rows,
                Some(exprs) => rows
                    .iter()
                    .map(|r| exprs.iter().map(|e| e.eval(r, &ctx)).collect())
                    .collect::<SqlResult<_>>()?,
            };
            return match op {
                PushedOp::Aggregate {
                    group_by,
                    group_types,
                    aggs,
                } => self.aggregate(rows, group_by, group_types, aggs, outer),
                // The coordinator's Distinct / Sort + Limit above finish these.
                PushedOp::Distinct { .. } | PushedOp::TopN { .. } => Ok(rows),
            };
        }
        let bind = |e: &Expr| e.bind_runtime(self.params, outer);
        let bind_all = |v: &[Expr]| v.iter().map(bind).collect::<SqlResult<Vec<_>>>();
        let source = self.pushed_source(*table_id, access, &ctx)?;
        let shard_op = match op {
            PushedOp::Aggregate {
                group_by,
                group_types,
                aggs,
            } => ShardOp::Aggregate {
                group_by: bind_all(group_by)?,
                group_types: group_types.clone(),
                aggs: aggs
                    .iter()
                    .map(|a| {
                        Ok(AggCall {
                            args: bind_all(&a.args)?,
                            ..a.clone()
                        })
                    })
                    .collect::<SqlResult<_>>()?,
            },
            PushedOp::Distinct { types } => ShardOp::Distinct {
                types: types.clone(),
            },
            PushedOp::TopN {
                keys,
                limit,
                offset,
            } => match self.per_shard_limit(limit, offset, &ctx)? {
                Some(n) => ShardOp::TopN {
                    keys: keys
                        .iter()
                        .map(|k| {
                            Ok(SortKey {
                                expr: bind(&k.expr)?,
                                ..k.clone()
                            })
                        })
                        .collect::<SqlResult<_>>()?,
                    n,
                },
                None => {
                    // LIMIT NULL: every row, as the plain scan and projection.
                    let rows = self.run(scan, outer)?;
                    return match project {
                        None => Ok(rows),
                        Some(exprs) => rows
                            .iter()
                            .map(|r| exprs.iter().map(|e| e.eval(r, &ctx)).collect())
                            .collect(),
                    };
                }
            },
        };
        let request = PushdownRequest {
            source,
            read_ts: self.read_ts,
            filter: filter.as_ref().map(bind).transpose()?,
            txn: self.txn,
            project: project.map(bind_all).transpose()?,
            op: shard_op,
            max_rows: PUSHDOWN_ROWS,
            max_bytes: PUSHDOWN_BYTES,
        };
        let shards = self.scan_shards(&route, access, filter.as_ref(), outer);
        match op {
            PushedOp::Aggregate {
                group_by,
                group_types,
                aggs,
            } => {
                let mut table = GroupTable::new(false);
                self.scatter((scan, table_name), &shards, request, &mut |_, answer| {
                    let ShardResponse::Partials { groups, resume } = answer else {
                        return Err(SqlError::internal(
                            "unexpected answer to an aggregate pushdown",
                        ));
                    };
                    for (key, states) in groups {
                        self.charge(table.merge(key, states, group_types, aggs)?)?;
                    }
                    Ok(resume)
                })?;
                table.finish(!group_by.is_empty(), aggs)
            }
            PushedOp::Distinct { .. } | PushedOp::TopN { .. } => {
                let mut per_shard: Vec<Vec<Row>> = vec![Vec::new(); shards.len()];
                self.scatter((scan, table_name), &shards, request, &mut |i, answer| {
                    let ShardResponse::PushedRows { rows, resume } = answer else {
                        return Err(SqlError::internal("unexpected answer to a pushdown"));
                    };
                    self.charge(rows.iter().map(|r| row_bytes(r)).sum())?;
                    per_shard[i].extend(rows);
                    Ok(resume)
                })?;
                Ok(per_shard.concat())
            }
        }
    }

    /// Sends `request` to every shard in `shards` (all at once) and, for each answer,
    /// `on_answer(position in shards, answer)`, which says where that shard resumes; shards
    /// that stopped early get their next request in the next round.
    fn scatter(
        &self,
        (node, name): (&Plan, &str),
        shards: &[usize],
        request: PushdownRequest,
        on_answer: &mut dyn FnMut(usize, ShardResponse) -> SqlResult<Option<PushedResume>>,
    ) -> SqlResult<()> {
        // A first request of one page: a small table is done after it, without threads (see
        // `call_all`); larger ones continue with the full budget, the shards in parallel.
        let first = PushdownRequest {
            max_rows: request.max_rows.min(SCAN_PAGE),
            ..request.clone()
        };
        let mut pending: Vec<(usize, PushdownRequest)> =
            (0..shards.len()).map(|i| (i, first.clone())).collect();
        for round in 0.. {
            if pending.is_empty() {
                break;
            }
            let calls = pending
                .iter()
                .map(|(i, r)| (shards[*i], self.routed(ShardRequest::Pushdown(r.clone()))))
                .collect();
            let answers = self.call_all(round, calls);
            let mut next = Vec::new();
            for ((i, mut req), (answer, micros)) in pending.into_iter().zip(answers) {
                let answer = answer?;
                let n = match &answer {
                    ShardResponse::Partials { groups, .. } => groups.len(),
                    ShardResponse::PushedRows { rows, .. } => rows.len(),
                    _ => 0,
                };
                self.note(node, name, shards[i], n, micros);
                if let Some(resume) = on_answer(i, answer)? {
                    req.resume_from(resume);
                    req.max_rows = request.max_rows;
                    next.push((i, req));
                }
            }
            pending = next;
        }
        Ok(())
    }

    /// An index range scan on every shard: each key range in order (reversed for a backward
    /// scan), paging with `resume_after`, stopping a shard after the top-N limit if any.
    fn index_scan(
        &self,
        (node, name): (&Plan, &str),
        route: &TableRoute,
        shards: &[usize],
        ix: &IndexAccess,
        filter: &Option<Expr>,
        outer: &[&[Value]],
    ) -> SqlResult<Vec<Row>> {
        let ctx = self.ctx(outer);
        let eval = |e: &Expr| e.eval(&[], &ctx);
        let mut ranges = access::key_ranges(ix, &eval)?;
        if ix.reverse {
            ranges.reverse();
        }
        let per_shard = match &ix.limit {
            None => usize::MAX,
            Some((limit, offset)) => self
                .per_shard_limit(limit, offset, &ctx)?
                .unwrap_or(usize::MAX),
        };
        let filter = match filter {
            Some(f) => Some(f.bind_runtime(self.params, outer)?),
            None => None,
        };
        let mut out = Vec::new();
        for &shard in shards {
            let mut taken = 0usize;
            'ranges: for (start, end) in &ranges {
                let (mut start, mut end) = (start.clone(), end.clone());
                loop {
                    if taken >= per_shard {
                        break 'ranges;
                    }
                    let started = std::time::Instant::now();
                    let resp = self.coord.call(
                        shard,
                        self.routed(ShardRequest::IndexScan(IndexScanRequest {
                            index_id: ix.index_id,
                            start: start.clone(),
                            end: end.clone(),
                            reverse: ix.reverse,
                            read_ts: self.read_ts,
                            limit: SCAN_PAGE,
                            filter: filter.clone(),
                            txn: self.txn,
                        })),
                    )?;
                    let ShardResponse::Rows {
                        mut rows,
                        resume_after,
                    } = resp
                    else {
                        return Err(SqlError::internal("unexpected shard response to IndexScan"));
                    };
                    self.keep_owned(route, shard, &mut rows);
                    let rows: Vec<Row> = rows.into_iter().take(per_shard - taken).collect();
                    let micros = started.elapsed().as_micros() as u64;
                    self.note(node, name, shard, rows.len(), micros);
                    taken += rows.len();
                    self.charge(rows.iter().map(|r| row_bytes(r)).sum())?;
                    out.extend(rows);
                    match resume_after {
                        Some(k) if ix.reverse => end = Bound::Excluded(k),
                        Some(k) => start = Bound::Excluded(k),
                        None => break,
                    }
                }
            }
        }
        Ok(out)
    }

    /// Rows of a system view from this statement's statistics snapshot.
    fn system_scan(&self, view: SystemView) -> SqlResult<Vec<Row>> {
        let rows = if view == SystemView::IndexCheck {
            let mut checks = Vec::with_capacity(self.coord.shard_count());
            for shard in 0..self.coord.shard_count() {
                match self.coord.call(shard, ShardRequest::CheckIndexes)? {
                    ShardResponse::IndexChecks(results) => checks.push((shard, results)),
                    _ => {
                        return Err(SqlError::internal(
                            "unexpected shard response to CheckIndexes",
                        ));
                    }
                }
            }
            SystemView::check_rows(&checks)
        } else if view == SystemView::Locks || view == SystemView::Transactions {
            // The coordinator's list first: a transaction that ends meanwhile then shows
            // without shard phases rather than not at all.
            let txns: Vec<TxnRow> = self
                .coord
                .registry()
                .list()
                .iter()
                .map(|t| {
                    let st = t.state();
                    TxnRow {
                        txid: t.txid,
                        isolation: t.isolation.name(),
                        policy: t.policy.to_string(),
                        state: st.phase,
                        protocol: st.protocol,
                        shards: st.shards,
                        written: st.written,
                        wounded_by: t.wounded_by(),
                        age_ms: t.started.elapsed().as_millis() as u64,
                    }
                })
                .collect();
            let mut locks = Vec::new();
            let mut shard_txns = Vec::new();
            for shard in 0..self.coord.shard_count() {
                match self.coord.call(shard, ShardRequest::Locks)? {
                    ShardResponse::Locks { locks: l, txns: t } => {
                        locks.push((shard, l));
                        shard_txns.push((shard, t));
                    }
                    _ => return Err(SqlError::internal("unexpected shard response to Locks")),
                }
            }
            if view == SystemView::Locks {
                SystemView::lock_rows(&locks)
            } else {
                SystemView::transaction_rows(&txns, &shard_txns)
            }
        } else {
            view.rows(&self.shard_stats()?)
        };
        self.charge(rows.iter().map(|r| row_bytes(r)).sum())?;
        Ok(rows)
    }

    /// Every shard's [`ShardStats`], requested once per statement.
    fn shard_stats(&self) -> SqlResult<Rc<Vec<ShardStats>>> {
        if let Some(stats) = self.shard_stats.borrow().as_ref() {
            return Ok(stats.clone());
        }
        let mut all = Vec::with_capacity(self.coord.shard_count());
        for shard in 0..self.coord.shard_count() {
            match self.coord.call(shard, ShardRequest::Stats)? {
                ShardResponse::Stats(stats) => all.push(*stats),
                _ => return Err(SqlError::internal("unexpected shard response to Stats")),
            }
        }
        let all = Rc::new(all);
        *self.shard_stats.borrow_mut() = Some(all.clone());
        Ok(all)
    }

    /// A scan as a join input read on its shards: what to read, on which shards, its name.
    fn join_input(
        &self,
        p: &Plan,
        outer: &[&[Value]],
    ) -> SqlResult<(JoinInput, Vec<usize>, String)> {
        let Plan::Scan {
            table_id,
            table_name,
            column_types,
            primary_key,
            placement,
            access,
            filter,
        } = p
        else {
            return Err(SqlError::internal("a shard-side join input is not a scan"));
        };
        let route = TableRoute::new(*table_id, placement, primary_key, column_types);
        let shards = self.scan_shards(&route, access, filter.as_ref(), outer);
        let ctx = self.ctx(outer);
        // An index walk with a per-shard limit (top-N) is not a whole input: read the table.
        let access = match access {
            Access::Index(ix) if ix.limit.is_some() => &Access::Full,
            a => a,
        };
        let source = self.pushed_source(*table_id, access, &ctx)?;
        let filter = filter
            .as_ref()
            .map(|f| f.bind_runtime(self.params, outer))
            .transpose()?;
        Ok((JoinInput { source, filter }, shards, table_name.clone()))
    }

    /// Sends `request` to each of `shards` at once and gathers the joined rows (in shard
    /// order) and the positions of shipped rows that matched on any shard.
    fn run_shard_join(
        &self,
        join: &Plan,
        name: &str,
        shards: &[usize],
        request: JoinRequest,
    ) -> SqlResult<(Vec<Row>, Vec<bool>)> {
        let requests = shards
            .iter()
            .map(|&s| (s, self.routed(ShardRequest::Join(request.clone()))))
            .collect();
        let answers = self.call_all(1, requests);
        let mut out = Vec::new();
        let mut matched = Vec::new();
        for (&shard, (answer, micros)) in shards.iter().zip(answers) {
            let ShardResponse::Joined {
                rows,
                shipped_matched,
            } = answer?
            else {
                return Err(SqlError::internal("unexpected answer to a shard join"));
            };
            self.note(join, name, shard, rows.len(), micros);
            self.charge(rows.iter().map(|r| row_bytes(r)).sum())?;
            out.extend(rows);
            for i in shipped_matched {
                let i = i as usize;
                if matched.len() <= i {
                    matched.resize(i + 1, false);
                }
                matched[i] = true;
            }
        }
        Ok((out, matched))
    }

    /// What a shard may hold for one join request: its share of what is left of the
    /// statement's budget (the shards run at once, and their answers all arrive here).
    fn shard_join_budget(&self, shards: usize) -> usize {
        self.mem_limit.saturating_sub(self.mem_used.get()) / shards.max(1)
    }

    /// The request for `join` run on `shards` shards: its condition and equality keys with `$n`
    /// and outer references replaced by their values (a shard has neither), computed by the
    /// shard as `kind`.
    fn join_request(
        &self,
        join: &Plan,
        (left, right): (JoinSide, JoinSide),
        kind: JoinKind,
        shards: usize,
        shipped_matches: bool,
        outer: &[&[Value]],
    ) -> SqlResult<JoinRequest> {
        let Plan::Join {
            on,
            left_width,
            right_width,
            equi,
            ..
        } = join
        else {
            return Err(SqlError::internal("a shard join of a non-join"));
        };
        let bind = |e: &Expr| e.bind_runtime(self.params, outer);
        Ok(JoinRequest {
            left,
            right,
            kind,
            on: on.as_ref().map(bind).transpose()?,
            equi: equi
                .iter()
                .map(|(l, r, t)| Ok((bind(l)?, bind(r)?, *t)))
                .collect::<SqlResult<_>>()?,
            left_width: *left_width,
            right_width: *right_width,
            read_ts: self.read_ts,
            txn: self.txn,
            max_bytes: self.shard_join_budget(shards),
            shipped_matches,
        })
    }

    /// A join of two hash-placed tables on their shard keys: each shard joins its own rows
    /// (`Plan::colocated_join`); only the joined rows cross the shard boundary.
    fn colocated_join(
        &self,
        left: &Plan,
        right: &Plan,
        join: &Plan,
        outer: &[&[Value]],
    ) -> SqlResult<Vec<Row>> {
        let Plan::Join { kind, .. } = join else {
            return Err(SqlError::internal("co-located join of a non-join"));
        };
        let (l, ls, lname) = self.join_input(left, outer)?;
        let (r, rs, rname) = self.join_input(right, outer)?;
        // A shard can produce rows only if the side(s) that must match have rows there.
        let shards: Vec<usize> = match kind {
            JoinKind::Inner => ls.iter().copied().filter(|s| rs.contains(s)).collect(),
            JoinKind::Left => ls,
            JoinKind::Right => rs,
            JoinKind::Full => {
                let mut all: Vec<usize> = ls.into_iter().chain(rs).collect();
                all.sort_unstable();
                all.dedup();
                all
            }
        };
        let request = self.join_request(
            join,
            (JoinSide::Local(l), JoinSide::Local(r)),
            *kind,
            shards.len(),
            false,
            outer,
        )?;
        let name = format!("{lname} ⋈ {rname} (co-located)");
        Ok(self.run_shard_join(join, &name, &shards, request)?.0)
    }

    /// A broadcast join (`sql/join_strategy.rs`): the `shipped` input is computed here and
    /// sent to every shard of the other input (a scan), which joins it with its own rows; the
    /// shipped rows no shard matched are padded here for outer joins. Gathers instead when the
    /// shipped rows are larger than planned.
    fn broadcast_join(
        &self,
        join: &Plan,
        shipped: Side,
        outer: &[&[Value]],
    ) -> SqlResult<Vec<Row>> {
        let Plan::Join {
            left,
            right,
            kind,
            on,
            left_width,
            right_width,
            equi,
            ..
        } = join
        else {
            return Err(SqlError::internal("broadcast join of a non-join"));
        };
        let (local_plan, shipped_plan) = match shipped {
            Side::Left => (&**right, &**left),
            Side::Right => (&**left, &**right),
        };
        let shipped_rows = self.run(shipped_plan, outer)?;
        let bytes: usize = shipped_rows.iter().map(|r| row_bytes(r)).sum();
        if bytes > BROADCAST_MAX_BYTES {
            self.note_line(&format!(
                "broadcast not used: the shipped input is {} rows ({bytes} bytes); both inputs gathered",
                shipped_rows.len()
            ));
            let local_rows = self.run(local_plan, outer)?;
            let (l, r) = match shipped {
                Side::Left => (shipped_rows, local_rows),
                Side::Right => (local_rows, shipped_rows),
            };
            return self.join(
                l,
                r,
                *kind,
                on.as_ref(),
                *left_width,
                *right_width,
                equi,
                outer,
            );
        }
        let (shard_kind, pad_shipped) = JoinStrategy::shard_kind(*kind, shipped);
        if shipped_rows.is_empty() && shard_kind == JoinKind::Inner {
            return Ok(Vec::new()); // nothing for any local row to match
        }
        let (input, shards, local_name) = self.join_input(local_plan, outer)?;
        let shipped_rows = Arc::new(shipped_rows);
        let sides = match shipped {
            Side::Left => (
                JoinSide::Shipped(shipped_rows.clone()),
                JoinSide::Local(input),
            ),
            Side::Right => (
                JoinSide::Local(input),
                JoinSide::Shipped(shipped_rows.clone()),
            ),
        };
        let request =
            self.join_request(join, sides, shard_kind, shards.len(), pad_shipped, outer)?;
        let name = format!(
            "{local_name} ⋈ {} shipped rows (broadcast)",
            shipped_rows.len()
        );
        let (mut out, matched) = self.run_shard_join(join, &name, &shards, request)?;
        if pad_shipped {
            let padded = pad_unmatched(&shipped_rows, &matched, shipped, *left_width, *right_width);
            self.charge(padded.iter().map(|r| row_bytes(r)).sum())?;
            out.extend(padded);
        }
        Ok(out)
    }

    #[allow(clippy::too_many_arguments)]
    fn join(
        &self,
        left: Vec<Row>,
        right: Vec<Row>,
        kind: JoinKind,
        on: Option<&Expr>,
        left_width: usize,
        right_width: usize,
        equi: &[(Expr, Expr, DataType)],
        outer: &[&[Value]],
    ) -> SqlResult<Vec<Row>> {
        let ctx = self.ctx(outer);
        let spec = crate::sql::join::JoinSpec {
            kind,
            on,
            left_width,
            right_width,
            equi,
        };
        crate::sql::join::hash_join(&left, &right, &spec, &ctx, &mut |b| self.charge(b))
    }

    fn aggregate(
        &self,
        rows: Vec<Row>,
        group_by: &[Expr],
        group_types: &[DataType],
        aggs: &[AggCall],
        outer: &[&[Value]],
    ) -> SqlResult<Vec<Row>> {
        let ctx = self.ctx(outer);
        let mut table = GroupTable::new(false);
        for r in &rows {
            table.add_row(r, group_by, group_types, aggs, &ctx)?;
        }
        table.finish(!group_by.is_empty(), aggs)
    }

    fn sort(&self, rows: Vec<Row>, keys: &[SortKey], outer: &[&[Value]]) -> SqlResult<Vec<Row>> {
        let ctx = self.ctx(outer);
        let mut keyed = rows
            .into_iter()
            .map(|r| {
                let k = keys
                    .iter()
                    .map(|k| k.expr.eval(&r, &ctx))
                    .collect::<SqlResult<Vec<_>>>()?;
                Ok((k, r))
            })
            .collect::<SqlResult<Vec<_>>>()?;
        keyed.sort_by(|(a, _), (b, _)| compare_sort_keys(a, b, keys));
        Ok(keyed.into_iter().map(|(_, r)| r).collect())
    }
}

impl SubqueryRunner for Executor<'_> {
    fn run_subquery(
        &self,
        id: usize,
        plan: &Plan,
        correlated: bool,
        outer: &[&[Value]],
    ) -> SqlResult<Rc<Vec<Vec<Value>>>> {
        if !correlated && let Some(rows) = self.cache.borrow().get(&id) {
            return Ok(rows.clone());
        }
        // A correlated subquery's rows live only while one outer row is evaluated, so its
        // materialization is returned to the budget afterwards; cached results stay charged.
        let before = self.mem_used.get();
        let rows = Rc::new(self.run(plan, outer)?);
        if correlated {
            self.mem_used.set(before);
        }
        if !correlated {
            self.cache.borrow_mut().insert(id, rows.clone());
        }
        Ok(rows)
    }
}

/// Hashable wrapper for set-operation bookkeeping: rows keyed by their key encoding.
#[derive(PartialEq, Eq, Hash)]
struct RowKey(Vec<u8>);

fn set_op(
    op: SetOpKind,
    all: bool,
    left: Vec<Row>,
    right: Vec<Row>,
    types: &[DataType],
) -> Vec<Row> {
    let key = |r: &Row| RowKey(encode_tuple(r, types));
    match (op, all) {
        (SetOpKind::Union, true) => {
            let mut l = left;
            l.extend(right);
            l
        }
        (SetOpKind::Union, false) => {
            let mut seen = HashSet::new();
            left.into_iter()
                .chain(right)
                .filter(|r| seen.insert(key(r)))
                .collect()
        }
        (SetOpKind::Intersect, _) | (SetOpKind::Except, _) => {
            let mut counts: HashMap<RowKey, usize> = HashMap::new();
            for r in &right {
                *counts.entry(key(r)).or_default() += 1;
            }
            let mut emitted: HashSet<RowKey> = HashSet::new();
            let mut out = Vec::new();
            for r in left {
                let k = key(&r);
                let c = counts.get(&k).copied().unwrap_or(0);
                let keep = match (op, all) {
                    (SetOpKind::Intersect, true) => {
                        if c > 0 {
                            counts.insert(RowKey(k.0.clone()), c - 1);
                            true
                        } else {
                            false
                        }
                    }
                    (SetOpKind::Intersect, false) => c > 0 && emitted.insert(k),
                    (SetOpKind::Except, true) => {
                        if c > 0 {
                            counts.insert(RowKey(k.0.clone()), c - 1);
                            false
                        } else {
                            true
                        }
                    }
                    _ => c == 0 && emitted.insert(k),
                };
                if keep {
                    out.push(r);
                }
            }
            out
        }
    }
}
