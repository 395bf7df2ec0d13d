//! Aggregate accumulators and grouping, shared by the coordinator and the shards.
//!
//! One implementation serves both halves of a split aggregation (see `sql/pushdown.rs`): a
//! shard groups its rows into a [`GroupTable`] of *partial* states and ships them (states are
//! serializable: the shard boundary is a message boundary); the coordinator merges the shards'
//! states with [`AggState::merge`] and finishes them with the same [`AggState::finish`] the
//! unsplit aggregation uses, so result types and rounding cannot drift between the two paths.
//!
//! A DISTINCT aggregate cannot be combined from per-shard results (a value seen on two shards
//! must count once), so its partial state is the set of distinct argument values the shard saw
//! ([`AggState::Collect`]); the coordinator feeds those values into its own DISTINCT state,
//! which deduplicates across shards. `string_agg` depends on input order and is never split.

use crate::error::{SqlError, SqlResult, sqlstate};
use crate::sql::expr::{EvalContext, Expr};
use crate::sql::plan::{AggCall, AggFunc};
use crate::types::arith::{self, ArithOp};
use crate::types::cast::{self, CastContext};
use crate::types::{DataType, Row, Value, compare, keycode};
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};

/// Approximate heap footprint of a materialized row (what the memory limits count).
pub fn row_bytes(row: &[Value]) -> usize {
    let mut n = std::mem::size_of::<Row>() + std::mem::size_of_val(row);
    for v in row {
        n += value_heap_bytes(v);
    }
    n
}

fn value_heap_bytes(v: &Value) -> usize {
    match v {
        Value::Text(s) => s.len(),
        Value::Bytea(b) => b.len(),
        _ => 0,
    }
}

/// The memcomparable encoding of a tuple: equal encodings are equal values for grouping and
/// DISTINCT (NULLs group together, as in SQL grouping).
pub fn encode_tuple(values: &[Value], types: &[DataType]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16);
    for (v, t) in values.iter().zip(types) {
        keycode::encode_key_value(v, *t, &mut out);
    }
    out
}

/// Running state of one aggregate in one group.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum AggState {
    Count(i64),
    /// Running sum in [`AggState::sum_type`], plus the count of summed values (for AVG).
    Sum(Option<Value>, i64),
    MinMax(Option<Value>),
    Bool(Option<bool>),
    Str(Option<String>),
    /// A DISTINCT aggregate: the inner state sees each distinct non-NULL argument once.
    Distinct(Box<AggState>, HashSet<Vec<u8>>),
    /// Partial state of a DISTINCT aggregate on a shard: the distinct non-NULL argument values
    /// seen, in first-seen order (the set is the shard's bookkeeping and is not shipped).
    Collect {
        #[serde(skip)]
        seen: HashSet<Vec<u8>>,
        values: Vec<Value>,
    },
}

impl AggState {
    /// The state of an aggregate computed in one place (or finished at the coordinator).
    pub fn new(call: &AggCall) -> AggState {
        let base = match call.func {
            AggFunc::CountStar | AggFunc::Count => AggState::Count(0),
            AggFunc::Sum | AggFunc::Avg => AggState::Sum(None, 0),
            AggFunc::Min | AggFunc::Max => AggState::MinMax(None),
            AggFunc::BoolAnd | AggFunc::BoolOr => AggState::Bool(None),
            AggFunc::StringAgg => AggState::Str(None),
        };
        if call.distinct {
            AggState::Distinct(Box::new(base), HashSet::new())
        } else {
            base
        }
    }

    /// The state a shard accumulates for later [`AggState::merge`] at the coordinator.
    pub fn new_partial(call: &AggCall) -> AggState {
        if call.distinct {
            AggState::Collect {
                seen: HashSet::new(),
                values: Vec::new(),
            }
        } else {
            AggState::new(call)
        }
    }

    /// Whether the aggregate can be computed as partial states merged later: everything but
    /// order-sensitive `string_agg`.
    pub fn splittable(call: &AggCall) -> bool {
        call.func != AggFunc::StringAgg
    }

    /// The type sums accumulate in.
    fn sum_type(call: &AggCall) -> DataType {
        match (call.func, call.arg_type) {
            (AggFunc::Avg, t) if t.is_float() => DataType::Float8,
            (_, t) if t.is_integer() && call.func == AggFunc::Sum && t != DataType::Int8 => {
                DataType::Int8
            }
            (AggFunc::Sum, DataType::Float4) => DataType::Float4,
            (AggFunc::Sum, DataType::Float8) => DataType::Float8,
            _ => DataType::Numeric(None),
        }
    }

    fn add_sums(call: &AggCall, a: &Value, b: &Value) -> SqlResult<Value> {
        let t = Self::sum_type(call);
        arith::eval_arith(ArithOp::Add, a, b, t).map_err(|e| {
            if e.code == sqlstate::NUMERIC_VALUE_OUT_OF_RANGE && t == DataType::Int8 {
                SqlError::out_of_range("bigint")
            } else {
                e
            }
        })
    }

    /// Adds one input row's argument values; returns the bytes the state grew by (for the
    /// memory bounds; only sets and strings grow).
    pub fn add(&mut self, call: &AggCall, args: Vec<Value>) -> SqlResult<usize> {
        if let AggState::Distinct(inner, seen) = self {
            let v = args.first().cloned().unwrap_or(Value::Null);
            if v.is_null() {
                return Ok(0);
            }
            let mut k = Vec::new();
            keycode::encode_key_value(&v, call.arg_type, &mut k);
            let grown = k.len() + 32;
            if !seen.insert(k) {
                return Ok(0);
            }
            return Ok(grown + inner.add(call, args)?);
        }
        if let AggState::Collect { seen, values } = self {
            let v = args.into_iter().next().unwrap_or(Value::Null);
            if v.is_null() {
                return Ok(0);
            }
            let mut k = Vec::new();
            keycode::encode_key_value(&v, call.arg_type, &mut k);
            if !seen.insert(k) {
                return Ok(0);
            }
            let grown = 2 * (std::mem::size_of::<Value>() + value_heap_bytes(&v));
            values.push(v);
            return Ok(grown);
        }
        if call.func == AggFunc::CountStar {
            if let AggState::Count(n) = self {
                *n += 1;
            }
            return Ok(0);
        }
        let mut args = args.into_iter();
        let v = args.next().unwrap_or(Value::Null);
        if v.is_null() {
            return Ok(0);
        }
        let mut grown = 0;
        match self {
            AggState::Count(n) => *n += 1,
            AggState::Sum(acc, n) => {
                let t = Self::sum_type(call);
                let v = cast::cast(v, call.arg_type, t, CastContext::Implicit)?;
                *acc = Some(match acc.take() {
                    None => v,
                    Some(a) => Self::add_sums(call, &a, &v)?,
                });
                *n += 1;
            }
            AggState::MinMax(cur) => Self::min_max(call, cur, v),
            AggState::Bool(cur) => Self::and_or(call, cur, v == Value::Bool(true)),
            AggState::Str(cur) => {
                let Value::Text(s) = v else {
                    return Err(SqlError::internal("string_agg on non-text"));
                };
                let sep = match args.next() {
                    Some(Value::Text(sep)) => sep,
                    _ => String::new(),
                };
                match cur {
                    None => {
                        grown = s.len();
                        *cur = Some(s)
                    }
                    Some(c) => {
                        grown = sep.len() + s.len();
                        c.push_str(&sep);
                        c.push_str(&s);
                    }
                }
            }
            AggState::Distinct(..) | AggState::Collect { .. } => {
                return Err(SqlError::internal("distinct aggregate state reached twice"));
            }
        }
        Ok(grown)
    }

    fn min_max(call: &AggCall, cur: &mut Option<Value>, v: Value) {
        let replace = match cur {
            None => true,
            Some(c) => {
                let o = compare::compare(&v, c);
                if call.func == AggFunc::Min {
                    o == Ordering::Less
                } else {
                    o == Ordering::Greater
                }
            }
        };
        if replace {
            *cur = Some(v);
        }
    }

    fn and_or(call: &AggCall, cur: &mut Option<bool>, b: bool) {
        *cur = Some(match (*cur, call.func) {
            (None, _) => b,
            (Some(c), AggFunc::BoolAnd) => c && b,
            (Some(c), _) => c || b,
        });
    }

    /// Combines another partial state of the same aggregate (from a shard) into this one.
    /// Returns the bytes this state grew by.
    pub fn merge(&mut self, call: &AggCall, other: AggState) -> SqlResult<usize> {
        match (self, other) {
            (AggState::Count(a), AggState::Count(b)) => *a += b,
            (AggState::Sum(acc, n), AggState::Sum(other, m)) => {
                if let Some(b) = other {
                    *acc = Some(match acc.take() {
                        None => b,
                        Some(a) => Self::add_sums(call, &a, &b)?,
                    });
                }
                *n += m;
            }
            (AggState::MinMax(cur), AggState::MinMax(other)) => {
                if let Some(v) = other {
                    Self::min_max(call, cur, v);
                }
            }
            (AggState::Bool(cur), AggState::Bool(other)) => {
                if let Some(b) = other {
                    Self::and_or(call, cur, b);
                }
            }
            (me @ AggState::Distinct(..), AggState::Collect { values, .. }) => {
                let mut grown = 0;
                for v in values {
                    grown += me.add(call, vec![v])?;
                }
                return Ok(grown);
            }
            (AggState::Collect { seen, values: mine }, AggState::Collect { values, .. }) => {
                let mut grown = 0;
                for v in values {
                    let mut k = Vec::new();
                    keycode::encode_key_value(&v, call.arg_type, &mut k);
                    if seen.insert(k) {
                        grown += 2 * (std::mem::size_of::<Value>() + value_heap_bytes(&v));
                        mine.push(v);
                    }
                }
                return Ok(grown);
            }
            _ => {
                return Err(SqlError::internal(format!(
                    "cannot merge partial states of {:?}",
                    call.func
                )));
            }
        }
        Ok(0)
    }

    pub fn finish(self, call: &AggCall) -> SqlResult<Value> {
        Ok(match self {
            AggState::Distinct(inner, _) => return inner.finish(call),
            AggState::Collect { .. } => {
                return Err(SqlError::internal(
                    "a partial DISTINCT state was not merged",
                ));
            }
            AggState::Count(n) => Value::Int(n),
            AggState::Sum(None, _) => Value::Null,
            AggState::Sum(Some(sum), n) => match call.func {
                AggFunc::Avg => {
                    let t = Self::sum_type(call);
                    let count =
                        cast::cast(Value::Int(n), DataType::Int8, t, CastContext::Implicit)?;
                    arith::eval_arith(ArithOp::Div, &sum, &count, t)?
                }
                _ => cast::cast(
                    sum,
                    Self::sum_type(call),
                    call.result_type,
                    CastContext::Implicit,
                )?,
            },
            AggState::MinMax(v) => v.unwrap_or(Value::Null),
            AggState::Bool(b) => b.map(Value::Bool).unwrap_or(Value::Null),
            AggState::Str(s) => s.map(Value::Text).unwrap_or(Value::Null),
        })
    }
}

/// Per-group bookkeeping beyond the key and states (hash entry, vector slot).
const GROUP_OVERHEAD: usize = 64;

/// Hash aggregation: groups in first-seen order, each with one state per aggregate.
pub struct GroupTable {
    index: HashMap<Vec<u8>, usize>,
    groups: Vec<(Row, Vec<AggState>)>,
    /// Build partial states (on a shard) rather than final ones.
    partial: bool,
    bytes: usize,
}

impl GroupTable {
    pub fn new(partial: bool) -> GroupTable {
        GroupTable {
            index: HashMap::new(),
            groups: Vec::new(),
            partial,
            bytes: 0,
        }
    }

    /// Approximate bytes held (keys, states, distinct values).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The group of `key_vals`, created if new; returns its position and the bytes added.
    fn group(
        &mut self,
        key_vals: Row,
        group_types: &[DataType],
        aggs: &[AggCall],
    ) -> (usize, usize) {
        let key = encode_tuple(&key_vals, group_types);
        if let Some(i) = self.index.get(&key) {
            return (*i, 0);
        }
        let added = 2 * key.len()
            + row_bytes(&key_vals)
            + aggs.len() * std::mem::size_of::<AggState>()
            + GROUP_OVERHEAD;
        let states = aggs
            .iter()
            .map(|a| {
                if self.partial {
                    AggState::new_partial(a)
                } else {
                    AggState::new(a)
                }
            })
            .collect();
        self.groups.push((key_vals, states));
        self.index.insert(key, self.groups.len() - 1);
        self.bytes += added;
        (self.groups.len() - 1, added)
    }

    /// Adds one input row; returns the bytes the table grew by.
    pub fn add_row(
        &mut self,
        row: &[Value],
        group_by: &[Expr],
        group_types: &[DataType],
        aggs: &[AggCall],
        ctx: &EvalContext<'_>,
    ) -> SqlResult<usize> {
        let key_vals = group_by
            .iter()
            .map(|g| g.eval(row, ctx))
            .collect::<SqlResult<Row>>()?;
        let (gi, added) = self.group(key_vals, group_types, aggs);
        let states = &mut self.groups[gi].1;
        let mut grown = 0;
        for (state, call) in states.iter_mut().zip(aggs) {
            let args = call
                .args
                .iter()
                .map(|a| a.eval(row, ctx))
                .collect::<SqlResult<Vec<_>>>()?;
            grown += state.add(call, args)?;
        }
        self.bytes += grown;
        Ok(added + grown)
    }

    /// Merges one partial group (a shard's key values and states); returns the bytes the
    /// table grew by.
    pub fn merge(
        &mut self,
        key_vals: Row,
        partials: Vec<AggState>,
        group_types: &[DataType],
        aggs: &[AggCall],
    ) -> SqlResult<usize> {
        if partials.len() != aggs.len() {
            return Err(SqlError::internal("partial aggregate of the wrong width"));
        }
        let (gi, added) = self.group(key_vals, group_types, aggs);
        let states = &mut self.groups[gi].1;
        let mut grown = 0;
        for ((state, call), p) in states.iter_mut().zip(aggs).zip(partials) {
            grown += state.merge(call, p)?;
        }
        self.bytes += grown;
        Ok(added + grown)
    }

    /// The groups with their partial states (the shard's answer).
    pub fn into_partials(self) -> Vec<(Row, Vec<AggState>)> {
        self.groups
    }

    /// Final rows: group-by values, then each aggregate's result. Without GROUP BY, empty
    /// input still yields one row (`count(*)` = 0, the others NULL).
    pub fn finish(mut self, grouped: bool, aggs: &[AggCall]) -> SqlResult<Vec<Row>> {
        if self.groups.is_empty() && !grouped {
            self.groups
                .push((Vec::new(), aggs.iter().map(AggState::new).collect()));
        }
        self.groups
            .into_iter()
            .map(|(mut key, states)| {
                for (s, call) in states.into_iter().zip(aggs) {
                    key.push(s.finish(call)?);
                }
                Ok(key)
            })
            .collect()
    }
}
