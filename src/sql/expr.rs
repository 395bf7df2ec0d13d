//! Bound scalar expressions and their evaluation.
//!
//! The binder turns sqlparser's AST into [`Expr`]: names are resolved to column positions, every
//! implicit coercion is an explicit [`Expr::Cast`], and operators carry their result type, so
//! evaluation never looks at names or guesses types. Expressions without subqueries or parameters
//! serialize and are shipped to shards as scan filters.
//!
//! NULL follows SQL three-valued logic: `AND`/`OR` treat NULL as unknown, comparisons with NULL
//! yield NULL, and a filter keeps a row only when its predicate is exactly `true`.

use crate::error::{SqlError, SqlResult, sqlstate};
use crate::id::SnowflakeGenerator;
use crate::sql::functions::{self, ScalarFunc};
use crate::sql::plan::Plan;
use crate::types::arith::{self, ArithOp};
use crate::types::cast::{self, CastContext};
use crate::types::compare;
use crate::types::{DataType, Value};
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CmpOp {
    Eq,
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
}

impl CmpOp {
    fn holds(self, ord: Ordering) -> bool {
        match self {
            CmpOp::Eq => ord == Ordering::Equal,
            CmpOp::NotEq => ord != Ordering::Equal,
            CmpOp::Lt => ord == Ordering::Less,
            CmpOp::LtEq => ord != Ordering::Greater,
            CmpOp::Gt => ord == Ordering::Greater,
            CmpOp::GtEq => ord != Ordering::Less,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SubqueryKind {
    /// A scalar subquery: at most one row, one column.
    Scalar,
    /// `EXISTS (...)`.
    Exists,
    /// `lhs IN (...)` (negation is applied around it).
    In,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Expr {
    Literal(Value),
    /// A column of the current input row.
    Column(usize),
    /// A column of an enclosing query's row: `depth` 1 is the immediately enclosing query.
    Outer {
        depth: usize,
        index: usize,
    },
    /// `$n` (0-based here).
    Param(usize),
    Cast {
        expr: Box<Expr>,
        from: DataType,
        to: DataType,
        context: CastCtx,
    },
    Arith {
        op: ArithOp,
        left: Box<Expr>,
        right: Box<Expr>,
        ty: DataType,
    },
    Negate {
        expr: Box<Expr>,
        ty: DataType,
    },
    /// `text || text` or `bytea || bytea` (operands already cast to the same type).
    Concat(Box<Expr>, Box<Expr>),
    Cmp {
        op: CmpOp,
        left: Box<Expr>,
        right: Box<Expr>,
    },
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
    IsNull {
        expr: Box<Expr>,
        negated: bool,
    },
    /// `IS [NOT] TRUE/FALSE`: never NULL.
    IsBool {
        expr: Box<Expr>,
        value: bool,
        negated: bool,
    },
    IsDistinct {
        left: Box<Expr>,
        right: Box<Expr>,
        negated: bool,
    },
    Like {
        expr: Box<Expr>,
        pattern: Box<Expr>,
        escape: Option<Box<Expr>>,
        case_insensitive: bool,
        negated: bool,
    },
    InList {
        expr: Box<Expr>,
        list: Vec<Expr>,
        negated: bool,
    },
    Case {
        operand: Option<Box<Expr>>,
        whens: Vec<(Expr, Expr)>,
        else_expr: Option<Box<Expr>>,
    },
    Coalesce(Vec<Expr>),
    NullIf(Box<Expr>, Box<Expr>),
    Greatest(Vec<Expr>),
    Least(Vec<Expr>),
    Func {
        func: ScalarFunc,
        args: Vec<Expr>,
    },
    Subquery {
        /// Unique within a statement; keys the cache of uncorrelated results.
        id: usize,
        kind: SubqueryKind,
        plan: Box<Plan>,
        /// For `In`: the left-hand side, evaluated in the outer row.
        lhs: Option<Box<Expr>>,
        correlated: bool,
    },
    /// Placeholder for an aggregate's result during binding; never evaluated.
    AggRef(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CastCtx {
    Implicit,
    Assignment,
    Explicit,
}

impl From<CastCtx> for CastContext {
    fn from(c: CastCtx) -> CastContext {
        match c {
            CastCtx::Implicit => CastContext::Implicit,
            CastCtx::Assignment => CastContext::Assignment,
            CastCtx::Explicit => CastContext::Explicit,
        }
    }
}

/// Runs subqueries on behalf of expression evaluation (implemented by the executor).
pub trait SubqueryRunner {
    /// Rows of `plan` evaluated with `outer` as the enclosing rows (innermost first).
    fn run_subquery(
        &self,
        id: usize,
        plan: &Plan,
        correlated: bool,
        outer: &[&[Value]],
    ) -> SqlResult<std::rc::Rc<Vec<Vec<Value>>>>;
}

/// Everything evaluation needs besides the row.
pub struct EvalContext<'a> {
    pub params: &'a [Value],
    /// Enclosing queries' current rows, innermost first.
    pub outer: Vec<&'a [Value]>,
    pub subqueries: Option<&'a dyn SubqueryRunner>,
    /// The node's Snowflake generator, for `snowflake_id()`. Only the coordinator has one: on a
    /// shard (and in constant folding) it is `None`, and expressions calling it are never
    /// shipped there ([`Expr::is_shippable`]).
    pub ids: Option<&'a SnowflakeGenerator>,
}

impl EvalContext<'static> {
    pub fn empty() -> EvalContext<'static> {
        EvalContext {
            params: &[],
            outer: Vec::new(),
            subqueries: None,
            ids: None,
        }
    }
}

fn truth(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        _ => None,
    }
}

impl Expr {
    pub fn lit(v: Value) -> Expr {
        Expr::Literal(v)
    }

    /// Evaluates the expression over `row`.
    pub fn eval(&self, row: &[Value], ctx: &EvalContext<'_>) -> SqlResult<Value> {
        match self {
            Expr::Literal(v) => Ok(v.clone()),
            Expr::Column(i) => row
                .get(*i)
                .cloned()
                .ok_or_else(|| SqlError::internal(format!("column {i} out of row bounds"))),
            Expr::Outer { depth, index } => ctx
                .outer
                .get(depth - 1)
                .and_then(|r| r.get(*index))
                .cloned()
                .ok_or_else(|| SqlError::internal("outer reference out of bounds")),
            Expr::Param(i) => ctx.params.get(*i).cloned().ok_or_else(|| no_parameter(*i)),
            Expr::Cast {
                expr,
                from,
                to,
                context,
            } => {
                let v = expr.eval(row, ctx)?;
                if v.is_null() {
                    return Ok(Value::Null);
                }
                cast::cast(v, *from, *to, (*context).into())
            }
            Expr::Arith {
                op,
                left,
                right,
                ty,
            } => {
                let l = left.eval(row, ctx)?;
                let r = right.eval(row, ctx)?;
                arith::eval_arith(*op, &l, &r, *ty)
            }
            Expr::Negate { expr, ty } => arith::negate(&expr.eval(row, ctx)?, *ty),
            Expr::Concat(l, r) => {
                let l = l.eval(row, ctx)?;
                let r = r.eval(row, ctx)?;
                match (l, r) {
                    (Value::Text(a), Value::Text(b)) => Ok(Value::Text(a + &b)),
                    (Value::Bytea(mut a), Value::Bytea(b)) => {
                        a.extend_from_slice(&b);
                        Ok(Value::Bytea(a))
                    }
                    (Value::Null, _) | (_, Value::Null) => Ok(Value::Null),
                    _ => Err(SqlError::internal("|| on non-text operands")),
                }
            }
            Expr::Cmp { op, left, right } => {
                let l = left.eval(row, ctx)?;
                if l.is_null() {
                    return Ok(Value::Null);
                }
                let r = right.eval(row, ctx)?;
                if r.is_null() {
                    return Ok(Value::Null);
                }
                Ok(Value::Bool(op.holds(compare::compare(&l, &r))))
            }
            Expr::And(items) => {
                let mut unknown = false;
                for e in items {
                    match truth(&e.eval(row, ctx)?) {
                        Some(false) => return Ok(Value::Bool(false)),
                        Some(true) => {}
                        None => unknown = true,
                    }
                }
                Ok(if unknown {
                    Value::Null
                } else {
                    Value::Bool(true)
                })
            }
            Expr::Or(items) => {
                let mut unknown = false;
                for e in items {
                    match truth(&e.eval(row, ctx)?) {
                        Some(true) => return Ok(Value::Bool(true)),
                        Some(false) => {}
                        None => unknown = true,
                    }
                }
                Ok(if unknown {
                    Value::Null
                } else {
                    Value::Bool(false)
                })
            }
            Expr::Not(e) => Ok(match truth(&e.eval(row, ctx)?) {
                Some(b) => Value::Bool(!b),
                None => Value::Null,
            }),
            Expr::IsNull { expr, negated } => {
                Ok(Value::Bool(expr.eval(row, ctx)?.is_null() != *negated))
            }
            Expr::IsBool {
                expr,
                value,
                negated,
            } => {
                let v = truth(&expr.eval(row, ctx)?);
                Ok(Value::Bool((v == Some(*value)) != *negated))
            }
            Expr::IsDistinct {
                left,
                right,
                negated,
            } => {
                let l = left.eval(row, ctx)?;
                let r = right.eval(row, ctx)?;
                let distinct = match (l.is_null(), r.is_null()) {
                    (true, true) => false,
                    (true, false) | (false, true) => true,
                    (false, false) => compare::compare(&l, &r) != Ordering::Equal,
                };
                Ok(Value::Bool(distinct != *negated))
            }
            Expr::Like {
                expr,
                pattern,
                escape,
                case_insensitive,
                negated,
            } => {
                let s = expr.eval(row, ctx)?;
                let p = pattern.eval(row, ctx)?;
                let esc = match escape {
                    Some(e) => match e.eval(row, ctx)? {
                        Value::Null => return Ok(Value::Null),
                        Value::Text(t) => {
                            let mut chars = t.chars();
                            match (chars.next(), chars.next()) {
                                (None, _) => None,
                                (Some(c), None) => Some(c),
                                _ => {
                                    return Err(SqlError::new(
                                        sqlstate::INVALID_ESCAPE_SEQUENCE,
                                        "invalid escape string",
                                    )
                                    .with_hint("Escape string must be empty or one character."));
                                }
                            }
                        }
                        _ => return Err(SqlError::internal("non-text LIKE escape")),
                    },
                    None => Some('\\'),
                };
                match (s, p) {
                    (Value::Text(s), Value::Text(p)) => Ok(Value::Bool(
                        functions::like_match(&s, &p, esc, *case_insensitive)? != *negated,
                    )),
                    _ => Ok(Value::Null),
                }
            }
            Expr::InList {
                expr,
                list,
                negated,
            } => {
                let v = expr.eval(row, ctx)?;
                if v.is_null() {
                    return Ok(Value::Null);
                }
                let mut saw_null = false;
                for item in list {
                    let x = item.eval(row, ctx)?;
                    if x.is_null() {
                        saw_null = true;
                    } else if compare::compare(&v, &x) == Ordering::Equal {
                        return Ok(Value::Bool(!*negated));
                    }
                }
                Ok(if saw_null {
                    Value::Null
                } else {
                    Value::Bool(*negated)
                })
            }
            Expr::Case {
                operand,
                whens,
                else_expr,
            } => {
                let op = match operand {
                    Some(o) => Some(o.eval(row, ctx)?),
                    None => None,
                };
                for (cond, result) in whens {
                    let hit = match &op {
                        Some(v) => {
                            let c = cond.eval(row, ctx)?;
                            !v.is_null()
                                && !c.is_null()
                                && compare::compare(v, &c) == Ordering::Equal
                        }
                        None => truth(&cond.eval(row, ctx)?) == Some(true),
                    };
                    if hit {
                        return result.eval(row, ctx);
                    }
                }
                match else_expr {
                    Some(e) => e.eval(row, ctx),
                    None => Ok(Value::Null),
                }
            }
            Expr::Coalesce(items) => {
                for e in items {
                    let v = e.eval(row, ctx)?;
                    if !v.is_null() {
                        return Ok(v);
                    }
                }
                Ok(Value::Null)
            }
            Expr::NullIf(a, b) => {
                let a = a.eval(row, ctx)?;
                let b = b.eval(row, ctx)?;
                if !a.is_null() && !b.is_null() && compare::compare(&a, &b) == Ordering::Equal {
                    Ok(Value::Null)
                } else {
                    Ok(a)
                }
            }
            Expr::Greatest(items) | Expr::Least(items) => {
                let want = if matches!(self, Expr::Greatest(_)) {
                    Ordering::Greater
                } else {
                    Ordering::Less
                };
                let mut best = Value::Null;
                for e in items {
                    let v = e.eval(row, ctx)?;
                    if v.is_null() {
                        continue;
                    }
                    if best.is_null() || compare::compare(&v, &best) == want {
                        best = v;
                    }
                }
                Ok(best)
            }
            Expr::Func {
                func: ScalarFunc::SnowflakeId,
                ..
            } => match ctx.ids {
                Some(ids) => Ok(Value::Int(ids.next_id())),
                None => Err(SqlError::internal(
                    "snowflake_id() evaluated where there is no id generator",
                )),
            },
            Expr::Func { func, args } => {
                let mut vals = Vec::with_capacity(args.len());
                for a in args {
                    vals.push(a.eval(row, ctx)?);
                }
                functions::eval(*func, &vals)
            }
            Expr::Subquery {
                id,
                kind,
                plan,
                lhs,
                correlated,
            } => self.eval_subquery(*id, *kind, plan, lhs.as_deref(), *correlated, row, ctx),
            Expr::AggRef(_) => Err(SqlError::internal("aggregate evaluated outside GROUP BY")),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn eval_subquery(
        &self,
        id: usize,
        kind: SubqueryKind,
        plan: &Plan,
        lhs: Option<&Expr>,
        correlated: bool,
        row: &[Value],
        ctx: &EvalContext<'_>,
    ) -> SqlResult<Value> {
        let runner = ctx
            .subqueries
            .ok_or_else(|| SqlError::internal("subquery evaluated without an executor"))?;
        let mut outer: Vec<&[Value]> = Vec::with_capacity(ctx.outer.len() + 1);
        outer.push(row);
        outer.extend(ctx.outer.iter().copied());
        let rows = runner.run_subquery(id, plan, correlated, &outer)?;
        match kind {
            SubqueryKind::Exists => Ok(Value::Bool(!rows.is_empty())),
            SubqueryKind::Scalar => match rows.len() {
                0 => Ok(Value::Null),
                1 => Ok(rows[0].first().cloned().unwrap_or(Value::Null)),
                _ => Err(SqlError::new(
                    sqlstate::CARDINALITY_VIOLATION,
                    "more than one row returned by a subquery used as an expression",
                )),
            },
            SubqueryKind::In => {
                let v = lhs
                    .ok_or_else(|| SqlError::internal("IN subquery without operand"))?
                    .eval(row, ctx)?;
                if rows.is_empty() {
                    return Ok(Value::Bool(false));
                }
                if v.is_null() {
                    return Ok(Value::Null);
                }
                let mut saw_null = false;
                for r in rows.iter() {
                    let x = r.first().cloned().unwrap_or(Value::Null);
                    if x.is_null() {
                        saw_null = true;
                    } else if compare::compare(&v, &x) == Ordering::Equal {
                        return Ok(Value::Bool(true));
                    }
                }
                Ok(if saw_null {
                    Value::Null
                } else {
                    Value::Bool(false)
                })
            }
        }
    }

    /// True if the expression can run on a shard: it needs only the row, plus parameters and
    /// outer references, which the executor replaces by their values before shipping
    /// ([`Expr::bind_runtime`]). Subqueries, aggregates and functions that need the node's
    /// state (`snowflake_id()`) stay at the coordinator.
    pub fn is_shippable(&self) -> bool {
        let mut ok = true;
        self.walk(&mut |e| match e {
            Expr::Subquery { .. } | Expr::AggRef(_) => ok = false,
            Expr::Func { func, .. } if functions::runs_at_coordinator(*func) => ok = false,
            _ => {}
        });
        ok
    }

    /// Replaces `$n` parameters and outer references by their current values, so the
    /// expression depends on the row alone and can be sent to a shard.
    pub fn bind_runtime(&self, params: &[Value], outer: &[&[Value]]) -> SqlResult<Expr> {
        let mut needed = false;
        self.walk(&mut |e| needed |= matches!(e, Expr::Param(_) | Expr::Outer { .. }));
        if !needed {
            return Ok(self.clone());
        }
        self.clone().transform(&mut |e| match e {
            Expr::Param(i) => params
                .get(i)
                .cloned()
                .map(Expr::Literal)
                .ok_or_else(|| no_parameter(i)),
            Expr::Outer { depth, index } => outer
                .get(depth - 1)
                .and_then(|r| r.get(index))
                .cloned()
                .map(Expr::Literal)
                .ok_or_else(|| SqlError::internal("outer reference out of bounds")),
            other => Ok(other),
        })
    }

    /// Visits this expression and its children (not into subquery plans).
    pub fn walk(&self, f: &mut dyn FnMut(&Expr)) {
        f(self);
        match self {
            Expr::Literal(_)
            | Expr::Column(_)
            | Expr::Outer { .. }
            | Expr::Param(_)
            | Expr::AggRef(_) => {}
            Expr::Cast { expr, .. } | Expr::Negate { expr, .. } => expr.walk(f),
            Expr::Not(e) => e.walk(f),
            Expr::IsNull { expr, .. } | Expr::IsBool { expr, .. } => expr.walk(f),
            Expr::Arith { left, right, .. }
            | Expr::Cmp { left, right, .. }
            | Expr::IsDistinct { left, right, .. } => {
                left.walk(f);
                right.walk(f);
            }
            Expr::Concat(a, b) | Expr::NullIf(a, b) => {
                a.walk(f);
                b.walk(f);
            }
            Expr::And(v) | Expr::Or(v) | Expr::Coalesce(v) | Expr::Greatest(v) | Expr::Least(v) => {
                v.iter().for_each(|e| e.walk(f))
            }
            Expr::Func { args, .. } => args.iter().for_each(|e| e.walk(f)),
            Expr::Like {
                expr,
                pattern,
                escape,
                ..
            } => {
                expr.walk(f);
                pattern.walk(f);
                if let Some(e) = escape {
                    e.walk(f);
                }
            }
            Expr::InList { expr, list, .. } => {
                expr.walk(f);
                list.iter().for_each(|e| e.walk(f));
            }
            Expr::Case {
                operand,
                whens,
                else_expr,
            } => {
                if let Some(o) = operand {
                    o.walk(f);
                }
                for (c, r) in whens {
                    c.walk(f);
                    r.walk(f);
                }
                if let Some(e) = else_expr {
                    e.walk(f);
                }
            }
            Expr::Subquery { lhs, .. } => {
                if let Some(l) = lhs {
                    l.walk(f);
                }
            }
        }
    }

    /// Rewrites the expression bottom-up; `f` sees each node after its children were rewritten.
    pub fn transform(self, f: &mut dyn FnMut(Expr) -> SqlResult<Expr>) -> SqlResult<Expr> {
        let node = self.map_children(&mut |c| c.transform(f))?;
        f(node)
    }

    /// Applies `f` to each direct child expression (not into subquery plans).
    pub fn map_children(self, f: &mut dyn FnMut(Expr) -> SqlResult<Expr>) -> SqlResult<Expr> {
        let bx = |e: Box<Expr>,
                  f: &mut dyn FnMut(Expr) -> SqlResult<Expr>|
         -> SqlResult<Box<Expr>> { Ok(Box::new(f(*e)?)) };
        let node = match self {
            e @ (Expr::Literal(_)
            | Expr::Column(_)
            | Expr::Outer { .. }
            | Expr::Param(_)
            | Expr::AggRef(_)) => e,
            Expr::Cast {
                expr,
                from,
                to,
                context,
            } => Expr::Cast {
                expr: bx(expr, f)?,
                from,
                to,
                context,
            },
            Expr::Arith {
                op,
                left,
                right,
                ty,
            } => Expr::Arith {
                op,
                left: bx(left, f)?,
                right: bx(right, f)?,
                ty,
            },
            Expr::Negate { expr, ty } => Expr::Negate {
                expr: bx(expr, f)?,
                ty,
            },
            Expr::Concat(a, b) => Expr::Concat(bx(a, f)?, bx(b, f)?),
            Expr::Cmp { op, left, right } => Expr::Cmp {
                op,
                left: bx(left, f)?,
                right: bx(right, f)?,
            },
            Expr::And(v) => Expr::And(transform_all(v, f)?),
            Expr::Or(v) => Expr::Or(transform_all(v, f)?),
            Expr::Not(e) => Expr::Not(bx(e, f)?),
            Expr::IsNull { expr, negated } => Expr::IsNull {
                expr: bx(expr, f)?,
                negated,
            },
            Expr::IsBool {
                expr,
                value,
                negated,
            } => Expr::IsBool {
                expr: bx(expr, f)?,
                value,
                negated,
            },
            Expr::IsDistinct {
                left,
                right,
                negated,
            } => Expr::IsDistinct {
                left: bx(left, f)?,
                right: bx(right, f)?,
                negated,
            },
            Expr::Like {
                expr,
                pattern,
                escape,
                case_insensitive,
                negated,
            } => Expr::Like {
                expr: bx(expr, f)?,
                pattern: bx(pattern, f)?,
                escape: match escape {
                    Some(e) => Some(bx(e, f)?),
                    None => None,
                },
                case_insensitive,
                negated,
            },
            Expr::InList {
                expr,
                list,
                negated,
            } => Expr::InList {
                expr: bx(expr, f)?,
                list: transform_all(list, f)?,
                negated,
            },
            Expr::Case {
                operand,
                whens,
                else_expr,
            } => Expr::Case {
                operand: match operand {
                    Some(o) => Some(bx(o, f)?),
                    None => None,
                },
                whens: whens
                    .into_iter()
                    .map(|(c, r)| Ok((f(c)?, f(r)?)))
                    .collect::<SqlResult<_>>()?,
                else_expr: match else_expr {
                    Some(e) => Some(bx(e, f)?),
                    None => None,
                },
            },
            Expr::Coalesce(v) => Expr::Coalesce(transform_all(v, f)?),
            Expr::NullIf(a, b) => Expr::NullIf(bx(a, f)?, bx(b, f)?),
            Expr::Greatest(v) => Expr::Greatest(transform_all(v, f)?),
            Expr::Least(v) => Expr::Least(transform_all(v, f)?),
            Expr::Func { func, args } => Expr::Func {
                func,
                args: transform_all(args, f)?,
            },
            Expr::Subquery {
                id,
                kind,
                plan,
                lhs,
                correlated,
            } => Expr::Subquery {
                id,
                kind,
                plan,
                lhs: match lhs {
                    Some(l) => Some(bx(l, f)?),
                    None => None,
                },
                correlated,
            },
        };
        Ok(node)
    }
}

fn transform_all(v: Vec<Expr>, f: &mut dyn FnMut(Expr) -> SqlResult<Expr>) -> SqlResult<Vec<Expr>> {
    v.into_iter().map(f).collect()
}

/// `$n` with no value supplied (0-based `i`).
fn no_parameter(i: usize) -> SqlError {
    SqlError::new(
        sqlstate::UNDEFINED_PARAMETER,
        format!("there is no parameter ${}", i + 1),
    )
}
