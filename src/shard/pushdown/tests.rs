//! Pushdown on real shards against the unsplit computation: rows spread over random shards,
//! requests paged with tiny row and byte budgets (so partial answers and resumption happen
//! mid-range and between index ranges), answers merged as the coordinator merges them. The
//! merged aggregate must equal aggregating every row in one place; DISTINCT must keep the same
//! first occurrences; top-N must pick the same rows as sorting everything.

use super::*;
use crate::rpc::{IndexColumn, IndexSpec, RowWrite, ShardRequest};
use crate::sql::aggregate::{AggState, GroupTable};
use crate::sql::expr::CmpOp;
use crate::sql::plan::AggFunc;
use crate::storage::EngineOptions;
use crate::types::keycode::encode_key_value;
use crate::types::row::encode_row;
use proptest::prelude::*;

const TABLE: u32 = 7;
const INDEX: u32 = 70;
const READ_TS: u64 = 1_000;

/// (id, k, v, f, t): k groups, v and f aggregate (f in quarters, so float sums are exact).
type TestRow = (i64, Option<i32>, Option<i32>, Option<f64>, Option<String>);

fn to_row(r: &TestRow) -> Row {
    let opt = |v: Option<Value>| v.unwrap_or(Value::Null);
    vec![
        Value::Int(r.0),
        opt(r.1.map(|k| Value::Int(k as i64))),
        opt(r.2.map(|v| Value::Int(v as i64))),
        opt(r.3.map(Value::Float)),
        opt(r.4.clone().map(Value::Text)),
    ]
}

fn key_of(id: i64) -> Vec<u8> {
    let mut pk = Vec::new();
    encode_key_value(&Value::Int(id), DataType::Int8, &mut pk);
    crate::shard::keys::row_key(TABLE, &pk)
}

fn index_spec() -> IndexSpec {
    IndexSpec {
        index_id: INDEX,
        table_id: TABLE,
        name: "t_k".into(),
        columns: vec![IndexColumn {
            ordinal: 1,
            ty: DataType::Int4,
            desc: false,
        }],
        unique: false,
    }
}

/// Shards holding `rows`, row `i` on shard `placement[i] % shards`.
fn shards_with(
    dir: &std::path::Path,
    shards: usize,
    rows: &[TestRow],
    placement: &[usize],
) -> Vec<Shard> {
    (0..shards)
        .map(|s| {
            let shard =
                Shard::open(s, &dir.join(format!("s{s}")), EngineOptions::default()).unwrap();
            shard
                .handle_sync(ShardRequest::CreateIndex {
                    spec: index_spec(),
                    read_ts: 1,
                })
                .unwrap();
            let writes: Vec<RowWrite> = rows
                .iter()
                .zip(placement)
                .filter(|(_, p)| **p % shards == s)
                .map(|(r, _)| {
                    let mut value = Vec::new();
                    encode_row(&to_row(r), &mut value);
                    RowWrite {
                        key: key_of(r.0),
                        value: Some(value),
                    }
                })
                .collect();
            if !writes.is_empty() {
                shard
                    .handle_sync(ShardRequest::Apply {
                        commit_ts: 10,
                        writes,
                    })
                    .unwrap();
            }
            shard
        })
        .collect()
}

fn call(func: AggFunc, arg: Option<Expr>, distinct: bool, arg_type: DataType) -> AggCall {
    let result_type = match (func, arg_type) {
        (AggFunc::CountStar | AggFunc::Count, _) => DataType::Int8,
        (AggFunc::Sum, DataType::Int4) => DataType::Int8,
        (AggFunc::Avg, DataType::Int4) => DataType::Numeric(None),
        (AggFunc::BoolAnd | AggFunc::BoolOr, _) => DataType::Bool,
        (_, t) => t,
    };
    AggCall {
        func,
        args: arg.into_iter().collect(),
        distinct,
        arg_type,
        result_type,
    }
}

fn aggs() -> Vec<AggCall> {
    let col = Expr::Column;
    let positive = Expr::Cmp {
        op: CmpOp::Gt,
        left: Box::new(col(2)),
        right: Box::new(Expr::Literal(Value::Int(0))),
    };
    vec![
        call(AggFunc::CountStar, None, false, DataType::Unknown),
        call(AggFunc::Count, Some(col(2)), false, DataType::Int4),
        call(AggFunc::Sum, Some(col(2)), false, DataType::Int4),
        call(AggFunc::Avg, Some(col(2)), false, DataType::Int4),
        call(AggFunc::Min, Some(col(4)), false, DataType::Text),
        call(AggFunc::Max, Some(col(3)), false, DataType::Float8),
        call(AggFunc::Sum, Some(col(3)), false, DataType::Float8),
        call(AggFunc::Avg, Some(col(3)), false, DataType::Float8),
        call(
            AggFunc::BoolAnd,
            Some(positive.clone()),
            false,
            DataType::Bool,
        ),
        call(AggFunc::BoolOr, Some(positive), false, DataType::Bool),
        call(AggFunc::Count, Some(col(2)), true, DataType::Int4),
        call(AggFunc::Sum, Some(col(2)), true, DataType::Int4),
        call(AggFunc::Count, Some(col(4)), true, DataType::Text),
    ]
}

/// The two index ranges splitting the whole index at k = 2 (the second starts at 2).
fn index_source(reverse: bool) -> PushedSource {
    let mut two = Vec::new();
    encode_key_value(&Value::Int(2), DataType::Int4, &mut two);
    let mut ranges = vec![
        (Bound::Unbounded, Bound::Excluded(two.clone())),
        (Bound::Included(two), Bound::Unbounded),
    ];
    if reverse {
        ranges.reverse();
    }
    PushedSource::Index {
        index_id: INDEX,
        ranges,
        reverse,
    }
}

fn table_source() -> PushedSource {
    PushedSource::Table {
        start: Bound::Included(crate::shard::keys::table_prefix(TABLE)),
        end: Bound::Excluded(crate::shard::keys::table_end(TABLE)),
    }
}

/// Every answer of one shard for `req`, following its resume points.
fn run_paged(shard: &Shard, mut req: PushdownRequest) -> Vec<ShardResponse> {
    let mut answers = Vec::new();
    for _ in 0..100_000 {
        let answer = shard
            .handle_sync(ShardRequest::Pushdown(req.clone()))
            .unwrap();
        let resume = match &answer {
            ShardResponse::Partials { resume, .. } | ShardResponse::PushedRows { resume, .. } => {
                resume.clone()
            }
            other => panic!("unexpected answer {other:?}"),
        };
        answers.push(answer);
        match resume {
            Some(r) => req.resume_from(r),
            None => return answers,
        }
    }
    panic!("pushdown did not finish");
}

/// The rows plain `Scan` / `IndexScan` pages of `source` return, shard by shard in shard
/// order (what the coordinator gathers without pushdown).
fn gathered(shards: &[Shard], source: &PushedSource, filter: &Option<Expr>) -> Vec<Row> {
    let ranges = match source {
        PushedSource::Table { start, end } => vec![(start.clone(), end.clone())],
        PushedSource::Index { ranges, .. } => ranges.clone(),
    };
    let mut out = Vec::new();
    for shard in shards {
        for (start, end) in &ranges {
            let (mut start, mut end) = (start.clone(), end.clone());
            loop {
                let req = match source {
                    PushedSource::Table { .. } => ShardRequest::Scan(ScanRequest {
                        start: start.clone(),
                        end: end.clone(),
                        read_ts: READ_TS,
                        limit: 7,
                        filter: filter.clone(),
                        txn: None,
                    }),
                    PushedSource::Index { reverse, .. } => {
                        ShardRequest::IndexScan(IndexScanRequest {
                            index_id: INDEX,
                            start: start.clone(),
                            end: end.clone(),
                            reverse: *reverse,
                            read_ts: READ_TS,
                            limit: 7,
                            filter: filter.clone(),
                            txn: None,
                        })
                    }
                };
                let ShardResponse::Rows { rows, resume_after } = shard.handle_sync(req).unwrap()
                else {
                    panic!("unexpected answer to a scan");
                };
                out.extend(rows);
                match (resume_after, source) {
                    (None, _) => break,
                    (Some(k), PushedSource::Index { reverse: true, .. }) => {
                        end = Bound::Excluded(k)
                    }
                    (Some(k), _) => start = Bound::Excluded(k),
                }
            }
        }
    }
    out
}

fn request(
    source: PushedSource,
    filter: Option<Expr>,
    op: ShardOp,
    max_rows: usize,
    max_bytes: usize,
) -> PushdownRequest {
    PushdownRequest {
        source,
        read_ts: READ_TS,
        filter,
        txn: None,
        project: None,
        op,
        max_rows,
        max_bytes,
    }
}

fn sorted_rows(mut rows: Vec<Row>) -> Vec<String> {
    let mut out: Vec<String> = rows.drain(..).map(|r| format!("{r:?}")).collect();
    out.sort();
    out
}

fn test_row() -> impl Strategy<Value = (Option<i32>, Option<i32>, Option<f64>, Option<String>)> {
    (
        proptest::option::weighted(0.9, 0..5i32),
        proptest::option::weighted(0.8, -50..50i32),
        proptest::option::weighted(0.8, (-40..40i32).prop_map(|q| q as f64 * 0.25)),
        proptest::option::weighted(0.8, "[a-c]{0,2}"),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn pushdown_matches_gathering(
        values in proptest::collection::vec(test_row(), 0..120),
        placement in proptest::collection::vec(0..3usize, 120),
        shard_count in 1..4usize,
        max_rows in 1..40usize,
        max_bytes in 1..3000usize,
        grouped in any::<bool>(),
        use_index in 0..3u8,
        filtered in any::<bool>(),
        n in 0..15usize,
    ) {
        let rows: Vec<TestRow> = values
            .into_iter()
            .enumerate()
            .map(|(i, (k, v, f, t))| (i as i64, k, v, f, t))
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let shards = shards_with(dir.path(), shard_count, &rows, &placement);
        let source = match use_index {
            0 => table_source(),
            1 => index_source(false),
            _ => index_source(true),
        };
        // v IS NOT NULL OR k = 1
        let filter = filtered.then(|| Expr::Or(vec![
            Expr::IsNull { expr: Box::new(Expr::Column(2)), negated: true },
            Expr::Cmp {
                op: CmpOp::Eq,
                left: Box::new(Expr::Column(1)),
                right: Box::new(Expr::Literal(Value::Int(1))),
            },
        ]));
        let all = gathered(&shards, &source, &filter);
        let ctx = EvalContext::empty();

        // Aggregates: merged partials == one table over every row.
        let group_by = if grouped { vec![Expr::Column(1)] } else { vec![] };
        let group_types = if grouped { vec![DataType::Int4] } else { vec![] };
        let aggs = aggs();
        let mut whole = GroupTable::new(false);
        for r in &all {
            whole.add_row(r, &group_by, &group_types, &aggs, &ctx).unwrap();
        }
        let expected = whole.finish(grouped, &aggs).unwrap();
        let op = ShardOp::Aggregate {
            group_by: group_by.clone(),
            group_types: group_types.clone(),
            aggs: aggs.clone(),
        };
        let mut merged = GroupTable::new(false);
        for shard in &shards {
            let req = request(source.clone(), filter.clone(), op.clone(), max_rows, max_bytes);
            for answer in run_paged(shard, req) {
                let ShardResponse::Partials { groups, .. } = answer else { panic!() };
                for (key, states) in groups {
                    // Partial states survive the message boundary.
                    let text = serde_json::to_string(&states).unwrap();
                    let states: Vec<AggState> = serde_json::from_str(&text).unwrap();
                    merged.merge(key, states, &group_types, &aggs).unwrap();
                }
            }
        }
        let got = merged.finish(grouped, &aggs).unwrap();
        prop_assert_eq!(sorted_rows(got), sorted_rows(expected));

        // DISTINCT over (k, t): the same first occurrences, in the same order.
        let project = vec![Expr::Column(1), Expr::Column(4)];
        let types = vec![DataType::Int4, DataType::Text];
        let mut seen = HashSet::new();
        let expected: Vec<Row> = all
            .iter()
            .map(|r| vec![r[1].clone(), r[4].clone()])
            .filter(|r| seen.insert(encode_tuple(r, &types)))
            .collect();
        let mut got = Vec::new();
        for shard in &shards {
            let req = PushdownRequest {
                project: Some(project.clone()),
                ..request(source.clone(), filter.clone(), ShardOp::Distinct { types: types.clone() }, max_rows, max_bytes)
            };
            for answer in run_paged(shard, req) {
                let ShardResponse::PushedRows { rows, .. } = answer else { panic!() };
                got.extend(rows);
            }
        }
        let mut seen = HashSet::new();
        let got: Vec<Row> = got.into_iter().filter(|r| seen.insert(encode_tuple(r, &types))).collect();
        prop_assert_eq!(got, expected);

        // Top-N by k DESC NULLS FIRST (few values: many ties at the cut), then by f: a stable
        // sort of the union picks the same rows as a stable sort of everything (ties broken by
        // scan order).
        let keys = vec![
            SortKey { expr: Expr::Column(1), desc: true, nulls_first: true },
        ];
        let stable_top = |rows: Vec<Row>| -> Vec<Row> {
            let mut keyed: Vec<(Vec<Value>, Row)> = rows
                .into_iter()
                .map(|r| (vec![r[1].clone()], r))
                .collect();
            keyed.sort_by(|a, b| compare_sort_keys(&a.0, &b.0, &keys));
            keyed.into_iter().take(n).map(|(_, r)| r).collect()
        };
        let expected = stable_top(all.clone());
        let mut union = Vec::new();
        for shard in &shards {
            let op = ShardOp::TopN { keys: keys.clone(), n };
            let req = request(source.clone(), filter.clone(), op, max_rows, max_bytes);
            for answer in run_paged(shard, req) {
                let ShardResponse::PushedRows { rows, .. } = answer else { panic!() };
                prop_assert!(rows.len() <= n);
                union.extend(rows);
            }
        }
        prop_assert_eq!(stable_top(union), expected);
    }
}

/// A shard answers early when its state passes the byte budget, and the answers still add up.
#[test]
fn byte_budget_pages_groups() {
    let rows: Vec<TestRow> = (0..3000)
        .map(|i| (i, Some(i as i32), Some(1), None, None))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let shards = shards_with(dir.path(), 1, &rows, &vec![0; rows.len()]);
    let aggs = vec![call(AggFunc::CountStar, None, false, DataType::Unknown)];
    let op = ShardOp::Aggregate {
        group_by: vec![Expr::Column(1)],
        group_types: vec![DataType::Int4],
        aggs: aggs.clone(),
    };
    let answers = run_paged(
        &shards[0],
        request(table_source(), None, op, 1 << 20, 64 << 10),
    );
    assert!(answers.len() > 2, "3000 groups should not fit 64 KiB");
    let mut merged = GroupTable::new(false);
    for answer in answers {
        let ShardResponse::Partials { groups, .. } = answer else {
            panic!()
        };
        assert!(
            groups.len() <= 1024 + 1024,
            "one page past the budget at most"
        );
        for (key, states) in groups {
            merged.merge(key, states, &[DataType::Int4], &aggs).unwrap();
        }
    }
    let out = merged.finish(true, &aggs).unwrap();
    assert_eq!(out.len(), 3000);
    assert!(out.iter().all(|r| r[1] == Value::Int(1)));
}

/// An error evaluating an aggregate argument on the shard reaches the caller with its SQLSTATE.
#[test]
fn evaluation_errors_carry_sqlstate() {
    let rows: Vec<TestRow> = vec![(1, Some(0), Some(0), None, None)];
    let dir = tempfile::tempdir().unwrap();
    let shards = shards_with(dir.path(), 1, &rows, &[0]);
    let div = Expr::Arith {
        op: crate::types::arith::ArithOp::Div,
        left: Box::new(Expr::Literal(Value::Int(1))),
        right: Box::new(Expr::Column(2)),
        ty: DataType::Int4,
    };
    let aggs = vec![call(AggFunc::Sum, Some(div), false, DataType::Int4)];
    let op = ShardOp::Aggregate {
        group_by: vec![],
        group_types: vec![],
        aggs,
    };
    let err = shards[0]
        .handle_sync(ShardRequest::Pushdown(request(
            table_source(),
            None,
            op,
            100,
            1000,
        )))
        .unwrap_err();
    assert_eq!(err.code, crate::error::sqlstate::DIVISION_BY_ZERO);
}
