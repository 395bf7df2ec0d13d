//! The shard's half of pushdown (`sql/pushdown.rs` decides what is pushed): a scan whose rows
//! are aggregated, deduplicated or cut to a top-N here, so only the results cross the shard
//! boundary instead of every row.
//!
//! Rows are read exactly as plain scans read them: the request is run as a series of ordinary
//! `Scan` / `IndexScan` pages through [`Shard::scan`] and [`Shard::index_scan`] (same
//! visibility, intents, SERIALIZABLE locks, filter), and each page's rows are fed to the
//! operator. Memory is bounded by answering early rather than failing: once the request has
//! examined `max_rows` stored rows or the operator holds `max_bytes`, the shard returns its
//! partial result with where to resume, and the coordinator (which merges partial results
//! anyway) sends the next request from there. That also bounds how long one request holds
//! the shard's thread.

use super::Shard;
use crate::error::{SqlError, SqlResult};
use crate::rpc::{
    IndexScanRequest, KeyBounds, PushdownRequest, PushedResume, PushedSource, ScanRequest, ShardOp,
    ShardResponse,
};
use crate::sql::aggregate::{GroupTable, encode_tuple, row_bytes};
use crate::sql::expr::{EvalContext, Expr};
use crate::sql::plan::{AggCall, SortKey, compare_sort_keys};
use crate::types::{DataType, Row, Value};
use std::collections::HashSet;
use std::ops::Bound;

/// Stored rows read per internal page (the coordinator's plain scans use the same size).
const PAGE: usize = 1024;
/// Most stored rows one request examines, whatever the caller asks.
const MAX_ROWS_CAP: usize = 1 << 20;
/// Most bytes of operator state one request holds, whatever the caller asks.
const MAX_BYTES_CAP: usize = 64 << 20;

/// The operator's state over the rows seen so far.
enum Sink<'a> {
    Aggregate {
        table: GroupTable,
        group_by: &'a [Expr],
        group_types: &'a [DataType],
        aggs: &'a [AggCall],
    },
    Distinct {
        types: &'a [DataType],
        seen: HashSet<Vec<u8>>,
        rows: Vec<Row>,
        bytes: usize,
    },
    TopN {
        keys: &'a [SortKey],
        n: usize,
        /// (sort key values, arrival number, row); at most `2n` before compaction.
        rows: Vec<(Vec<Value>, u64, Row)>,
        seq: u64,
        bytes: usize,
    },
}

impl<'a> Sink<'a> {
    fn new(op: &'a ShardOp) -> Sink<'a> {
        match op {
            ShardOp::Aggregate {
                group_by,
                group_types,
                aggs,
            } => Sink::Aggregate {
                table: GroupTable::new(true),
                group_by,
                group_types,
                aggs,
            },
            ShardOp::Distinct { types } => Sink::Distinct {
                types,
                seen: HashSet::new(),
                rows: Vec::new(),
                bytes: 0,
            },
            ShardOp::TopN { keys, n } => Sink::TopN {
                keys,
                n: *n,
                rows: Vec::new(),
                seq: 0,
                bytes: 0,
            },
        }
    }

    fn bytes(&self) -> usize {
        match self {
            Sink::Aggregate { table, .. } => table.bytes(),
            Sink::Distinct { bytes, .. } | Sink::TopN { bytes, .. } => *bytes,
        }
    }

    fn add(&mut self, row: Row, ctx: &EvalContext<'_>) -> SqlResult<()> {
        match self {
            Sink::Aggregate {
                table,
                group_by,
                group_types,
                aggs,
            } => {
                table.add_row(&row, group_by, group_types, aggs, ctx)?;
            }
            Sink::Distinct {
                types,
                seen,
                rows,
                bytes,
            } => {
                let n = types.len().min(row.len());
                let key = encode_tuple(&row[..n], &types[..n]);
                let grown = key.len() + 32 + row_bytes(&row);
                if seen.insert(key) {
                    *bytes += grown;
                    rows.push(row);
                }
            }
            Sink::TopN {
                keys,
                n,
                rows,
                seq,
                bytes,
            } => {
                let k = keys
                    .iter()
                    .map(|k| k.expr.eval(&row, ctx))
                    .collect::<SqlResult<Vec<_>>>()?;
                *seq += 1;
                if *n == 0 {
                    return Ok(());
                }
                *bytes += row_bytes(&k) + row_bytes(&row);
                rows.push((k, *seq, row));
                if rows.len() >= n.saturating_mul(2) {
                    Self::compact(keys, *n, rows, bytes);
                }
            }
        }
        Ok(())
    }

    /// Keeps the first `n` of `rows` by (keys, arrival).
    fn compact(
        keys: &[SortKey],
        n: usize,
        rows: &mut Vec<(Vec<Value>, u64, Row)>,
        bytes: &mut usize,
    ) {
        if rows.len() > n {
            rows.sort_by(|a, b| compare_sort_keys(&a.0, &b.0, keys).then(a.1.cmp(&b.1)));
            rows.truncate(n);
            *bytes = rows
                .iter()
                .map(|(k, _, r)| row_bytes(k) + row_bytes(r))
                .sum();
        }
    }

    fn finish(self, resume: Option<PushedResume>) -> ShardResponse {
        match self {
            Sink::Aggregate { table, .. } => ShardResponse::Partials {
                groups: table.into_partials(),
                resume,
            },
            Sink::Distinct { rows, .. } => ShardResponse::PushedRows { rows, resume },
            Sink::TopN {
                keys,
                n,
                mut rows,
                mut bytes,
                ..
            } => {
                Self::compact(keys, n, &mut rows, &mut bytes);
                rows.sort_by_key(|(_, seq, _)| *seq);
                ShardResponse::PushedRows {
                    rows: rows.into_iter().map(|(_, _, r)| r).collect(),
                    resume,
                }
            }
        }
    }
}

/// Where a pushed source reads: `None` for the table's rows in key order, else an index and
/// whether it is walked backwards.
pub(crate) type SourceIndex = Option<(u32, bool)>;

/// The key ranges of a source and the index it walks.
pub(crate) fn source_ranges(source: &PushedSource) -> (Vec<KeyBounds>, SourceIndex) {
    match source {
        PushedSource::Table { start, end } => (vec![(start.clone(), end.clone())], None),
        PushedSource::Index {
            index_id,
            ranges,
            reverse,
        } => (ranges.clone(), Some((*index_id, *reverse))),
    }
}

impl Shard {
    /// One page of a source's range, read as a plain `Scan` / `IndexScan` reads it (same
    /// visibility, intents, SERIALIZABLE locks, filter): the rows and where to resume.
    pub(crate) async fn source_page(
        &self,
        index: SourceIndex,
        (start, end): (&Bound<Vec<u8>>, &Bound<Vec<u8>>),
        limit: usize,
        filter: &Option<Expr>,
        read_ts: u64,
        txn: Option<crate::txn::TxnCtx>,
    ) -> SqlResult<(Vec<crate::types::Row>, Option<Vec<u8>>)> {
        let answer = match index {
            None => {
                self.scan(ScanRequest {
                    start: start.clone(),
                    end: end.clone(),
                    read_ts,
                    limit,
                    filter: filter.clone(),
                    txn,
                })
                .await?
            }
            Some((index_id, reverse)) => {
                self.index_scan(IndexScanRequest {
                    index_id,
                    start: start.clone(),
                    end: end.clone(),
                    reverse,
                    read_ts,
                    limit,
                    filter: filter.clone(),
                    txn,
                })
                .await?
            }
        };
        match answer {
            ShardResponse::Rows { rows, resume_after } => Ok((rows, resume_after)),
            _ => Err(SqlError::internal("unexpected answer to a source page")),
        }
    }

    /// Every row of a source in its order, handed to `page` a page at a time (an error from
    /// it stops the read).
    pub(crate) async fn for_each_source_page(
        &self,
        source: &PushedSource,
        filter: &Option<Expr>,
        read_ts: u64,
        txn: Option<crate::txn::TxnCtx>,
        page: &mut (dyn FnMut(Vec<crate::types::Row>) -> SqlResult<()> + Send),
    ) -> SqlResult<()> {
        let (ranges, index) = source_ranges(source);
        for (mut start, mut end) in ranges {
            loop {
                let (rows, resume_after) = self
                    .source_page(index, (&start, &end), PAGE, filter, read_ts, txn)
                    .await?;
                page(rows)?;
                let Some(after) = resume_after else { break };
                match index {
                    Some((_, true)) => end = Bound::Excluded(after),
                    _ => start = Bound::Excluded(after),
                }
            }
        }
        Ok(())
    }

    pub(crate) async fn pushdown(&self, req: PushdownRequest) -> SqlResult<ShardResponse> {
        let max_rows = req.max_rows.clamp(1, MAX_ROWS_CAP);
        let max_bytes = req.max_bytes.clamp(1, MAX_BYTES_CAP);
        let mut sink = Sink::new(&req.op);
        let (ranges, index) = source_ranges(&req.source);
        let mut examined = 0usize;
        for (range, (mut start, mut end)) in ranges.into_iter().enumerate() {
            if range > 0 && (examined >= max_rows || sink.bytes() >= max_bytes) {
                return Ok(sink.finish(Some(PushedResume { range, after: None })));
            }
            loop {
                let limit = PAGE.min(max_rows.saturating_sub(examined)).max(1);
                let (rows, resume_after) = self
                    .source_page(
                        index,
                        (&start, &end),
                        limit,
                        &req.filter,
                        req.read_ts,
                        req.txn,
                    )
                    .await?;
                // Not held across the page requests' awaits (it is not `Send`).
                let ctx = EvalContext::empty();
                for row in rows {
                    let row = match &req.project {
                        None => row,
                        Some(exprs) => exprs
                            .iter()
                            .map(|e| e.eval(&row, &ctx))
                            .collect::<SqlResult<Row>>()?,
                    };
                    sink.add(row, &ctx)?;
                }
                examined += limit;
                let Some(after) = resume_after else { break };
                if examined >= max_rows || sink.bytes() >= max_bytes {
                    return Ok(sink.finish(Some(PushedResume {
                        range,
                        after: Some(after),
                    })));
                }
                match index {
                    Some((_, true)) => end = Bound::Excluded(after),
                    _ => start = Bound::Excluded(after),
                }
            }
        }
        Ok(sink.finish(None))
    }
}

#[cfg(test)]
mod tests;
