//! Arithmetic operators `+ - * / %` and unary minus: operator resolution and evaluation.
//!
//! Resolution ([`arith_types`]) reproduces what PostgreSQL's operator lookup picks for the
//! supported types: `int2 op int2 → int2`, mixed integers widen to the wider one, integer with
//! numeric → numeric, anything with `double precision` → `double precision`, `real op real →
//! real` but `real` with any other numeric type → `double precision` (there are no
//! `real`/integer cross-type operators and `float8` is the preferred type), `%` exists only for
//! integers and numeric, `date ± integer → date`, `integer + date → date`, `date - date →
//! integer`. An untyped literal takes the other side's type (`'1' + 2` is integer addition);
//! two untyped literals are ambiguous (42725). Anything else is 42883 `operator does not exist`
//! with PostgreSQL's hint; timestamp arithmetic needs `interval`, which is not supported yet (0A000).
//!
//! Evaluation ([`eval_arith`]) never panics: integer results are range-checked against the
//! result type (22003 `smallint/integer/bigint out of range`), integer division truncates toward
//! zero, `%` takes the dividend's sign, `x % -1` is 0 even for the minimum value, and division by
//! zero is 22012 for every type (except `NaN / 0`, which is NaN as in PostgreSQL). Float results
//! that overflow to infinity from finite inputs, or underflow to zero from nonzero inputs in `*`
//! and `/`, raise 22003 like PostgreSQL's `float_overflow_error` / `float_underflow_error`.
//! `real` results are rounded to `f32`. Numeric `+ - *` are exact and `/` uses PostgreSQL's
//! `select_div_scale`; see [`super::numeric`].

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::cast::{base_type, check_int, f64_to_f32_checked, float_overflow, float_underflow};
use super::datetime;
use super::numeric::{BigDec, f64_to_bigdec, select_div_scale};
use super::{DataType, Value};
use crate::error::{SqlError, SqlResult, sqlstate};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
}

impl ArithOp {
    pub fn symbol(self) -> &'static str {
        match self {
            ArithOp::Add => "+",
            ArithOp::Sub => "-",
            ArithOp::Mul => "*",
            ArithOp::Div => "/",
            ArithOp::Mod => "%",
        }
    }
}

const OPERATOR_HINT: &str = "No operator matches the given name and argument types. You might need to add explicit type casts.";
const AMBIGUOUS_HINT: &str =
    "Could not choose a best candidate operator. You might need to add explicit type casts.";

fn no_operator(op: &str, l: DataType, r: DataType) -> SqlError {
    SqlError::new(
        sqlstate::UNDEFINED_FUNCTION,
        format!("operator does not exist: {} {op} {}", l.name(), r.name()),
    )
    .with_hint(OPERATOR_HINT)
}

fn ambiguous_operator(op: &str, l: DataType, r: DataType) -> SqlError {
    SqlError::new(
        "42725",
        format!("operator is not unique: {} {op} {}", l.name(), r.name()),
    )
    .with_hint(AMBIGUOUS_HINT)
}

fn interval_unsupported() -> SqlError {
    SqlError::unsupported("the interval type (needed for timestamp arithmetic)")
}

/// Result type of a binary operator on two numeric-family types.
fn numeric_result(l: DataType, r: DataType) -> DataType {
    use DataType as T;
    let has = |t: DataType| base_type(l) == t || base_type(r) == t;
    if has(T::Float8) {
        T::Float8
    } else if has(T::Float4) {
        if l == T::Float4 && r == T::Float4 {
            T::Float4
        } else {
            T::Float8
        }
    } else if has(T::Numeric(None)) {
        T::Numeric(None)
    } else if has(T::Int8) {
        T::Int8
    } else if has(T::Int4) {
        T::Int4
    } else {
        T::Int2
    }
}

/// Resolves a binary arithmetic operator: (type to coerce the left operand to, type to coerce
/// the right operand to, result type).
pub fn arith_types(
    op: ArithOp,
    l: DataType,
    r: DataType,
) -> SqlResult<(DataType, DataType, DataType)> {
    use DataType as T;
    let sym = op.symbol();
    let is_small_int = |t: DataType| matches!(t, T::Int2 | T::Int4);
    match (l, r) {
        (T::Unknown, T::Unknown) => Err(ambiguous_operator(sym, l, r)),
        (T::Unknown, other) | (other, T::Unknown) if other.is_numeric_family() => {
            arith_types(op, other, other)
        }
        (T::Date, T::Unknown) | (T::Unknown, T::Date) => match op {
            // Only `date - date` has a date on both sides; for `+` the literal could be an
            // integer, an interval or a time, so PostgreSQL calls it ambiguous.
            ArithOp::Sub => Ok((T::Date, T::Date, T::Int4)),
            ArithOp::Add => Err(ambiguous_operator(sym, l, r)),
            _ => Err(no_operator(sym, l, r)),
        },
        (T::Timestamp, T::Unknown | T::Timestamp | T::Date)
        | (T::Unknown | T::Date, T::Timestamp)
            if matches!(op, ArithOp::Add | ArithOp::Sub) =>
        {
            Err(interval_unsupported())
        }
        _ if l.is_numeric_family() && r.is_numeric_family() => {
            let res = numeric_result(l, r);
            if op == ArithOp::Mod && res.is_float() {
                return Err(no_operator(sym, l, r));
            }
            Ok((res, res, res))
        }
        (T::Date, x) if is_small_int(x) && matches!(op, ArithOp::Add | ArithOp::Sub) => {
            Ok((T::Date, T::Int4, T::Date))
        }
        (x, T::Date) if is_small_int(x) && op == ArithOp::Add => Ok((T::Int4, T::Date, T::Date)),
        (T::Date, T::Date) if op == ArithOp::Sub => Ok((T::Date, T::Date, T::Int4)),
        _ => Err(no_operator(sym, l, r)),
    }
}

/// Result type of unary minus.
pub fn negate_type(ty: DataType) -> SqlResult<DataType> {
    match ty {
        DataType::Unknown => {
            Err(SqlError::new("42725", "operator is not unique: - unknown")
                .with_hint(AMBIGUOUS_HINT))
        }
        DataType::Numeric(_) => Ok(DataType::Numeric(None)),
        t if t.is_numeric_family() => Ok(t),
        t => Err(SqlError::new(
            sqlstate::UNDEFINED_FUNCTION,
            format!("operator does not exist: - {}", t.name()),
        )
        .with_hint(OPERATOR_HINT)),
    }
}

fn type_mismatch(op: ArithOp, a: &Value, b: &Value) -> SqlError {
    SqlError::internal(format!(
        "operator {} applied to mismatched values {a:?} and {b:?}",
        op.symbol()
    ))
}

/// Any numeric-family value as an exact decimal.
fn as_bigdec(v: &Value) -> Option<BigDec> {
    match v {
        Value::Int(i) => Some(BigDec::from_i64(*i)),
        Value::Numeric(d) => Some(BigDec::from_decimal(d)),
        Value::Float(f) if f.is_finite() => Some(f64_to_bigdec(*f)),
        _ => None,
    }
}

fn as_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Int(i) => Some(*i as f64),
        Value::Float(f) => Some(*f),
        Value::Numeric(d) => Some(super::cast::numeric_to_f64(d)),
        _ => None,
    }
}

fn date_out_of_range() -> SqlError {
    SqlError::new(sqlstate::DATETIME_FIELD_OVERFLOW, "date out of range")
}

fn date_plus_days(d: i32, days: i64) -> SqlResult<Value> {
    if !datetime::date_is_finite(d) {
        return Ok(Value::Date(d));
    }
    match (d as i64).checked_add(days).map(i32::try_from) {
        Some(Ok(r)) if datetime::date_is_finite(r) && datetime::date_in_range(r) => {
            Ok(Value::Date(r))
        }
        _ => Err(date_out_of_range()),
    }
}

fn eval_int(op: ArithOp, a: i64, b: i64, result: DataType) -> SqlResult<i64> {
    let overflow = || super::cast::int_out_of_range(result);
    let r = match op {
        ArithOp::Add => a.checked_add(b),
        ArithOp::Sub => a.checked_sub(b),
        ArithOp::Mul => a.checked_mul(b),
        ArithOp::Div => {
            if b == 0 {
                return Err(SqlError::division_by_zero());
            }
            a.checked_div(b)
        }
        ArithOp::Mod => {
            if b == 0 {
                return Err(SqlError::division_by_zero());
            }
            // PostgreSQL special-cases -1 so that MIN % -1 is 0 instead of overflowing.
            if b == -1 { Some(0) } else { a.checked_rem(b) }
        }
    };
    check_int(r.ok_or_else(overflow)?, result)
}

fn eval_float(op: ArithOp, a: f64, b: f64, single: bool) -> SqlResult<f64> {
    let finite_in = a.is_finite() && b.is_finite();
    let r = match op {
        ArithOp::Add => a + b,
        ArithOp::Sub => a - b,
        ArithOp::Mul => a * b,
        ArithOp::Div => {
            if b == 0.0 && !a.is_nan() {
                return Err(SqlError::division_by_zero());
            }
            a / b
        }
        ArithOp::Mod => {
            return Err(no_operator(
                "%",
                if single {
                    DataType::Float4
                } else {
                    DataType::Float8
                },
                if single {
                    DataType::Float4
                } else {
                    DataType::Float8
                },
            ));
        }
    };
    let r = if single {
        // Both inputs are f32 values, so rounding the f64 result once is the correctly
        // rounded f32 operation; only its overflow/underflow needs checking here.
        let r32 = r as f32;
        if r32.is_infinite() && !r.is_infinite() && finite_in {
            return Err(float_overflow());
        }
        r32 as f64
    } else {
        r
    };
    if r.is_infinite() {
        let overflow = match op {
            ArithOp::Div => !a.is_infinite(),
            _ => finite_in,
        };
        if overflow {
            return Err(float_overflow());
        }
    }
    if r == 0.0 {
        let underflow = match op {
            ArithOp::Mul => a != 0.0 && b != 0.0,
            ArithOp::Div => a != 0.0 && !b.is_infinite(),
            _ => false,
        };
        if underflow {
            return Err(float_underflow());
        }
    }
    Ok(r)
}

fn eval_numeric(op: ArithOp, a: &BigDec, b: &BigDec) -> SqlResult<Decimal> {
    let r = match op {
        ArithOp::Add => a.add(b),
        ArithOp::Sub => a.sub(b),
        ArithOp::Mul => a.mul(b),
        ArithOp::Div => {
            if b.is_zero() {
                return Err(SqlError::division_by_zero());
            }
            a.div_round(b, select_div_scale(a, b).min(2 * super::numeric::MAX_SCALE))
        }
        ArithOp::Mod => {
            if b.is_zero() {
                return Err(SqlError::division_by_zero());
            }
            a.rem(b)
        }
    };
    r.to_decimal()
}

/// Evaluates `a op b` producing a value of type `result` (as resolved by [`arith_types`]).
/// NULL in, NULL out.
pub fn eval_arith(op: ArithOp, a: &Value, b: &Value, result: DataType) -> SqlResult<Value> {
    if a.is_null() || b.is_null() {
        return Ok(Value::Null);
    }
    match result {
        DataType::Int2 | DataType::Int4 | DataType::Int8 => match (a, b) {
            (Value::Int(x), Value::Int(y)) => eval_int(op, *x, *y, result).map(Value::Int),
            (Value::Date(x), Value::Date(y)) if op == ArithOp::Sub => {
                if !datetime::date_is_finite(*x) || !datetime::date_is_finite(*y) {
                    return Err(SqlError::new(
                        sqlstate::DATETIME_FIELD_OVERFLOW,
                        "cannot subtract infinite dates",
                    ));
                }
                check_int(*x as i64 - *y as i64, result).map(Value::Int)
            }
            _ => Err(type_mismatch(op, a, b)),
        },
        DataType::Float4 | DataType::Float8 => {
            let (x, y) = as_f64(a)
                .zip(as_f64(b))
                .ok_or_else(|| type_mismatch(op, a, b))?;
            eval_float(op, x, y, result == DataType::Float4).map(Value::Float)
        }
        DataType::Numeric(_) => {
            let (x, y) = as_bigdec(a)
                .zip(as_bigdec(b))
                .ok_or_else(|| type_mismatch(op, a, b))?;
            eval_numeric(op, &x, &y).map(Value::Numeric)
        }
        DataType::Date => match (op, a, b) {
            (ArithOp::Add, Value::Date(d), Value::Int(n))
            | (ArithOp::Add, Value::Int(n), Value::Date(d)) => date_plus_days(*d, *n),
            (ArithOp::Sub, Value::Date(d), Value::Int(n)) => match n.checked_neg() {
                Some(neg) => date_plus_days(*d, neg),
                None => Err(date_out_of_range()),
            },
            _ => Err(type_mismatch(op, a, b)),
        },
        _ => Err(type_mismatch(op, a, b)),
    }
}

/// Unary minus on a value of type `ty`.
pub fn negate(v: &Value, ty: DataType) -> SqlResult<Value> {
    match v {
        Value::Null => Ok(Value::Null),
        Value::Int(i) => {
            let ty = if ty.is_integer() { ty } else { DataType::Int8 };
            i.checked_neg()
                .ok_or_else(|| super::cast::int_out_of_range(ty))
                .and_then(|n| check_int(n, ty))
                .map(Value::Int)
        }
        Value::Float(f) => Ok(Value::Float(-f)),
        Value::Numeric(d) => {
            let mut n = -*d;
            if n.is_zero() {
                n.set_sign_positive(true);
            }
            Ok(Value::Numeric(n))
        }
        _ => negate_type(ty)
            .map(|_| v.clone())
            .and_then(|_| Err(SqlError::internal(format!("cannot negate {v:?}")))),
    }
}

/// Rounds an `f64` to `real` with overflow checks; re-exported for the function library.
pub fn to_float4(f: f64) -> SqlResult<f64> {
    f64_to_f32_checked(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::format::format_text;
    use ArithOp::*;
    use DataType as T;
    use proptest::prelude::*;

    fn num(s: &str) -> Value {
        Value::Numeric(s.parse().unwrap())
    }
    fn ev(op: ArithOp, a: Value, b: Value, t: T) -> SqlResult<Value> {
        eval_arith(op, &a, &b, t)
    }
    fn show(op: ArithOp, a: Value, b: Value, t: T) -> String {
        format_text(&ev(op, a, b, t).unwrap(), t).unwrap()
    }

    #[test]
    fn resolution_matches_postgres() {
        // select pg_typeof(1::int2 + 1::int2), pg_typeof(1::int2 + 1), pg_typeof(1::int4 + 1::int8),
        //  pg_typeof(1 + 1.5), pg_typeof(1::float4 + 1::float4), pg_typeof(1::float4 + 1),
        //  pg_typeof(1::float4 + 1.5), pg_typeof(1.5 + 1::float8), pg_typeof(1::int2 + 1::float4)
        //  → smallint integer bigint numeric real double double double double
        let r = |l, r| arith_types(Add, l, r).unwrap().2;
        assert_eq!(r(T::Int2, T::Int2), T::Int2);
        assert_eq!(r(T::Int2, T::Int4), T::Int4);
        assert_eq!(r(T::Int4, T::Int8), T::Int8);
        assert_eq!(r(T::Int4, T::Numeric(None)), T::Numeric(None));
        assert_eq!(r(T::Float4, T::Float4), T::Float4);
        assert_eq!(r(T::Float4, T::Int4), T::Float8);
        assert_eq!(r(T::Float4, T::Numeric(None)), T::Float8);
        assert_eq!(r(T::Numeric(None), T::Float8), T::Float8);
        assert_eq!(r(T::Int2, T::Float4), T::Float8);
        assert_eq!(
            r(T::Numeric(Some((5, 2))), T::Numeric(Some((5, 2)))),
            T::Numeric(None)
        );
        // select pg_typeof(1 + '1'), pg_typeof('1' + 1.5), pg_typeof(1::float4 + '1'),
        //        pg_typeof(1::int2 + '1') → integer numeric real smallint
        assert_eq!(r(T::Int4, T::Unknown), T::Int4);
        assert_eq!(r(T::Unknown, T::Numeric(None)), T::Numeric(None));
        assert_eq!(r(T::Float4, T::Unknown), T::Float4);
        assert_eq!(
            arith_types(Add, T::Int2, T::Unknown).unwrap(),
            (T::Int2, T::Int2, T::Int2)
        );
        // select '1' + '1' → operator is not unique: unknown + unknown (42725)
        let e = arith_types(Add, T::Unknown, T::Unknown).unwrap_err();
        assert_eq!(
            (e.code.as_str(), e.message.as_str()),
            ("42725", "operator is not unique: unknown + unknown")
        );
        // select pg_typeof(current_date + 1), pg_typeof(1 + current_date),
        //        pg_typeof(current_date - 1), pg_typeof(current_date - current_date),
        //        pg_typeof(1::int2 + current_date) → date date date integer date
        assert_eq!(
            arith_types(Add, T::Date, T::Int4).unwrap(),
            (T::Date, T::Int4, T::Date)
        );
        assert_eq!(
            arith_types(Add, T::Int4, T::Date).unwrap(),
            (T::Int4, T::Date, T::Date)
        );
        assert_eq!(arith_types(Sub, T::Date, T::Int4).unwrap().2, T::Date);
        assert_eq!(arith_types(Sub, T::Date, T::Date).unwrap().2, T::Int4);
        assert_eq!(arith_types(Add, T::Int2, T::Date).unwrap().2, T::Date);
        // select current_date + 1::int8 → operator does not exist: date + bigint
        let e = arith_types(Add, T::Date, T::Int8).unwrap_err();
        assert_eq!(
            (e.code.as_str(), e.message.as_str()),
            ("42883", "operator does not exist: date + bigint")
        );
        assert_eq!(e.hint.as_deref(), Some(OPERATOR_HINT));
        assert_eq!(
            arith_types(Mul, T::Date, T::Int4).unwrap_err().code,
            "42883"
        );
        // select current_date - '2024-01-01' → integer; current_date + '1' → not unique
        assert_eq!(
            arith_types(Sub, T::Date, T::Unknown).unwrap(),
            (T::Date, T::Date, T::Int4)
        );
        assert_eq!(arith_types(Sub, T::Unknown, T::Date).unwrap().2, T::Int4);
        assert_eq!(
            arith_types(Add, T::Date, T::Unknown).unwrap_err().message,
            "operator is not unique: date + unknown"
        );
        // select 'a'::text + 1 → operator does not exist: text + integer; true + 1
        assert_eq!(
            arith_types(Add, T::Text, T::Int4).unwrap_err().message,
            "operator does not exist: text + integer"
        );
        assert_eq!(
            arith_types(Add, T::Bool, T::Int4).unwrap_err().message,
            "operator does not exist: boolean + integer"
        );
        assert_eq!(
            arith_types(Add, T::Varchar(Some(3)), T::Int4)
                .unwrap_err()
                .message,
            "operator does not exist: character varying + integer"
        );
        // select 5::float8 % 2 → operator does not exist: double precision % integer
        assert_eq!(
            arith_types(Mod, T::Float8, T::Int4).unwrap_err().message,
            "operator does not exist: double precision % integer"
        );
        assert_eq!(
            arith_types(Mod, T::Numeric(None), T::Float4)
                .unwrap_err()
                .code,
            "42883"
        );
        // select pg_typeof(5::int2 % 2::int2), pg_typeof(5::int8 % 2), pg_typeof(5.0 % 2)
        assert_eq!(arith_types(Mod, T::Int2, T::Int2).unwrap().2, T::Int2);
        assert_eq!(arith_types(Mod, T::Int8, T::Int4).unwrap().2, T::Int8);
        assert_eq!(
            arith_types(Mod, T::Numeric(None), T::Int4).unwrap().2,
            T::Numeric(None)
        );
        // select now()::timestamp - now()::timestamp → interval (unsupported here)
        assert_eq!(
            arith_types(Sub, T::Timestamp, T::Timestamp)
                .unwrap_err()
                .code,
            "0A000"
        );
        // select now()::timestamp + 1 → operator does not exist
        assert_eq!(
            arith_types(Add, T::Timestamp, T::Int4).unwrap_err().code,
            "42883"
        );
        assert_eq!(negate_type(T::Int2).unwrap(), T::Int2);
        assert_eq!(negate_type(T::Unknown).unwrap_err().code, "42725");
        assert_eq!(
            negate_type(T::Text).unwrap_err().message,
            "operator does not exist: - text"
        );
    }

    #[test]
    fn integer_semantics() {
        // select 2147483647 + 1 → integer out of range; 32767::int2 + 1::int2 → smallint out of range
        let e = ev(Add, Value::Int(2147483647), Value::Int(1), T::Int4).unwrap_err();
        assert_eq!(
            (e.code.as_str(), e.message.as_str()),
            ("22003", "integer out of range")
        );
        assert_eq!(
            ev(Add, Value::Int(32767), Value::Int(1), T::Int2)
                .unwrap_err()
                .message,
            "smallint out of range"
        );
        assert_eq!(
            ev(Mul, Value::Int(i64::MAX), Value::Int(2), T::Int8)
                .unwrap_err()
                .message,
            "bigint out of range"
        );
        assert_eq!(
            ev(Div, Value::Int(i64::MIN), Value::Int(-1), T::Int8)
                .unwrap_err()
                .code,
            "22003"
        );
        assert_eq!(
            ev(Div, Value::Int(-2147483648), Value::Int(-1), T::Int4)
                .unwrap_err()
                .message,
            "integer out of range"
        );
        // select (-2147483648)::int4 % -1 → 0
        assert_eq!(
            ev(Mod, Value::Int(i64::MIN), Value::Int(-1), T::Int8).unwrap(),
            Value::Int(0)
        );
        // select -7 % 3, 7 % -3, -7 / 2 → -1 1 -3
        assert_eq!(
            ev(Mod, Value::Int(-7), Value::Int(3), T::Int4).unwrap(),
            Value::Int(-1)
        );
        assert_eq!(
            ev(Mod, Value::Int(7), Value::Int(-3), T::Int4).unwrap(),
            Value::Int(1)
        );
        assert_eq!(
            ev(Div, Value::Int(-7), Value::Int(2), T::Int4).unwrap(),
            Value::Int(-3)
        );
        // select 5 % 0, 5 / 0 → division by zero
        let e = ev(Mod, Value::Int(5), Value::Int(0), T::Int4).unwrap_err();
        assert_eq!(
            (e.code.as_str(), e.message.as_str()),
            ("22012", "division by zero")
        );
        assert_eq!(
            ev(Div, Value::Int(5), Value::Int(0), T::Int4)
                .unwrap_err()
                .code,
            "22012"
        );
        assert_eq!(
            ev(Add, Value::Null, Value::Int(0), T::Int4).unwrap(),
            Value::Null
        );
        assert_eq!(
            negate(&Value::Int(i64::MIN), T::Int8).unwrap_err().code,
            "22003"
        );
        assert_eq!(
            negate(&Value::Int(-32768), T::Int2).unwrap_err().message,
            "smallint out of range"
        );
        assert_eq!(negate(&Value::Int(5), T::Int4).unwrap(), Value::Int(-5));
    }

    #[test]
    fn float_semantics() {
        // select 1e308::float8 * 10 → value out of range: overflow
        let e = ev(Mul, Value::Float(1e308), Value::Float(10.0), T::Float8).unwrap_err();
        assert_eq!(
            (e.code.as_str(), e.message.as_str()),
            ("22003", "value out of range: overflow")
        );
        // select 1e-308::float8 * 1e-308 → underflow
        assert_eq!(
            ev(Mul, Value::Float(1e-308), Value::Float(1e-308), T::Float8)
                .unwrap_err()
                .message,
            "value out of range: underflow"
        );
        // select 1::float8 / 0, 0::float8 / 0 → division by zero; 'NaN'::float8 / 0 → NaN
        assert_eq!(
            ev(Div, Value::Float(1.0), Value::Float(0.0), T::Float8)
                .unwrap_err()
                .code,
            "22012"
        );
        assert_eq!(
            ev(Div, Value::Float(0.0), Value::Float(0.0), T::Float8)
                .unwrap_err()
                .code,
            "22012"
        );
        assert_eq!(
            show(Div, Value::Float(f64::NAN), Value::Float(0.0), T::Float8),
            "NaN"
        );
        // select 1e38::float4 * 100::float4 → overflow
        assert_eq!(
            ev(
                Mul,
                Value::Float(1e38f32 as f64),
                Value::Float(100.0),
                T::Float4
            )
            .unwrap_err()
            .message,
            "value out of range: overflow"
        );
        // select 'Infinity'::float8 + 1 → Infinity; 0.1::float4 + 0.2::float4 → 0.3 (real)
        assert_eq!(
            show(
                Add,
                Value::Float(f64::INFINITY),
                Value::Float(1.0),
                T::Float8
            ),
            "Infinity"
        );
        assert_eq!(
            show(
                Add,
                Value::Float(0.1f32 as f64),
                Value::Float(0.2f32 as f64),
                T::Float4
            ),
            "0.3"
        );
        // select 0.1::float8 + 0.2::float8 → 0.30000000000000004
        assert_eq!(
            show(Add, Value::Float(0.1), Value::Float(0.2), T::Float8),
            "0.30000000000000004"
        );
        // select 1::float4 + 1 → 2 (double precision, the integer is converted)
        assert_eq!(show(Add, Value::Float(1.0), Value::Int(1), T::Float8), "2");
    }

    #[test]
    fn numeric_semantics() {
        let n = T::Numeric(None);
        // select 1::numeric / 3, 10::numeric/4, 2::numeric/3*3 → 0.33333333333333333333,
        //        2.5000000000000000, 2.00000000000000000001
        assert_eq!(show(Div, num("1"), num("3"), n), "0.33333333333333333333");
        assert_eq!(show(Div, num("10"), num("4"), n), "2.5000000000000000");
        let two_thirds = ev(Div, num("2"), num("3"), n).unwrap();
        assert_eq!(show(Mul, two_thirds, num("3"), n), "2.00000000000000000001");
        // select 1.5 * 1.25, 0.1 + 0.20, 1.10 - 0.1 → 1.875 0.30 1.00
        assert_eq!(show(Mul, num("1.5"), num("1.25"), n), "1.875");
        assert_eq!(show(Add, num("0.1"), num("0.20"), n), "0.30");
        assert_eq!(show(Sub, num("1.10"), num("0.1"), n), "1.00");
        // select 7::numeric % -3, -7.5 % 2 → 1, -1.5
        assert_eq!(show(Mod, num("7"), num("-3"), n), "1");
        assert_eq!(show(Mod, num("-7.5"), num("2"), n), "-1.5");
        // select 5.0 / 0, 5.0 % 0 → division by zero
        assert_eq!(ev(Div, num("5.0"), num("0"), n).unwrap_err().code, "22012");
        assert_eq!(ev(Mod, num("5.0"), num("0"), n).unwrap_err().code, "22012");
        // integer operands are accepted (the binder coerces, but be lenient)
        assert_eq!(show(Add, Value::Int(1), num("0.5"), n), "1.5");
        let big = num("79228162514264337593543950335");
        let e = ev(Add, big.clone(), num("1"), n).unwrap_err();
        assert_eq!(
            (e.code.as_str(), e.message.as_str()),
            ("22003", "value overflows numeric format")
        );
        // product scale beyond 28 digits is rounded
        assert_eq!(
            show(Mul, num("0.000000000000000000000000001"), num("0.15"), n),
            "0.0000000000000000000000000002"
        );
        assert_eq!(show(Sub, num("0.5"), num("0.5"), n), "0.0");
    }

    #[test]
    fn date_semantics() {
        // select '2024-01-31'::date + 1, '2024-03-01'::date - 1, '2024-03-01'::date - '2024-02-01'::date
        assert_eq!(
            ev(Add, Value::Date(19_753), Value::Int(1), T::Date).unwrap(),
            Value::Date(19_754)
        );
        assert_eq!(
            ev(Add, Value::Int(1), Value::Date(19_753), T::Date).unwrap(),
            Value::Date(19_754)
        );
        assert_eq!(
            ev(Sub, Value::Date(19_753), Value::Int(1), T::Date).unwrap(),
            Value::Date(19_752)
        );
        assert_eq!(
            ev(Sub, Value::Date(19_783), Value::Date(19_754), T::Int4).unwrap(),
            Value::Int(29)
        );
        // select '5874897-12-31'::date + 1 → date out of range
        let e = ev(Add, Value::Date(datetime::DATE_MAX), Value::Int(1), T::Date).unwrap_err();
        assert_eq!(
            (e.code.as_str(), e.message.as_str()),
            ("22008", "date out of range")
        );
        // select 'infinity'::date + 1 → infinity; 'infinity'::date - current_date → error
        assert_eq!(
            ev(
                Add,
                Value::Date(datetime::DATE_POS_INFINITY),
                Value::Int(1),
                T::Date
            )
            .unwrap(),
            Value::Date(datetime::DATE_POS_INFINITY)
        );
        assert_eq!(
            ev(
                Sub,
                Value::Date(datetime::DATE_POS_INFINITY),
                Value::Date(0),
                T::Int4
            )
            .unwrap_err()
            .message,
            "cannot subtract infinite dates"
        );
        assert_eq!(
            ev(
                Sub,
                Value::Date(datetime::DATE_MAX),
                Value::Date(datetime::DATE_MIN),
                T::Int4
            )
            .unwrap(),
            Value::Int(2_147_483_493)
        );
    }

    fn any_num_value() -> impl Strategy<Value = Value> {
        prop_oneof![
            prop_oneof![
                Just(i64::MIN),
                Just(i64::MAX),
                Just(-1i64),
                Just(0i64),
                any::<i64>()
            ]
            .prop_map(Value::Int),
            any::<f64>().prop_map(Value::Float),
            (any::<i128>(), 0u32..=28).prop_map(|(m, s)| {
                Value::Numeric(
                    Decimal::try_from_i128_with_scale(m % (1i128 << 96), s).unwrap_or_default(),
                )
            }),
            Just(Value::Null),
            any::<i32>().prop_map(Value::Date),
        ]
    }

    fn any_op() -> impl Strategy<Value = ArithOp> {
        prop_oneof![Just(Add), Just(Sub), Just(Mul), Just(Div), Just(Mod)]
    }

    fn any_type() -> impl Strategy<Value = T> {
        prop_oneof![
            Just(T::Int2),
            Just(T::Int4),
            Just(T::Int8),
            Just(T::Float4),
            Just(T::Float8),
            Just(T::Numeric(None)),
            Just(T::Date),
            Just(T::Text)
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn arithmetic_never_panics(op in any_op(), a in any_num_value(), b in any_num_value(), t in any_type()) {
            let _ = eval_arith(op, &a, &b, t);
            let _ = negate(&a, t);
        }

        #[test]
        fn int8_matches_i128(op in any_op(), a in any::<i64>(), b in any::<i64>()) {
            let wide = match op {
                Add => Some(a as i128 + b as i128),
                Sub => Some(a as i128 - b as i128),
                Mul => Some(a as i128 * b as i128),
                Div => (b != 0).then(|| a as i128 / b as i128),
                Mod => (b != 0).then(|| a as i128 % b as i128),
            };
            let got = eval_arith(op, &Value::Int(a), &Value::Int(b), T::Int8);
            match wide {
                None => prop_assert_eq!(got.unwrap_err().code, "22012"),
                Some(w) if w >= i64::MIN as i128 && w <= i64::MAX as i128 => {
                    prop_assert_eq!(got.unwrap(), Value::Int(w as i64))
                }
                Some(_) => prop_assert_eq!(got.unwrap_err().code, "22003"),
            }
        }

        #[test]
        fn numeric_add_sub_exact(a in -1_000_000_000i64..1_000_000_000, sa in 0u32..10, b in -1_000_000_000i64..1_000_000_000, sb in 0u32..10) {
            let x = Decimal::new(a, sa);
            let y = Decimal::new(b, sb);
            let n = T::Numeric(None);
            prop_assert_eq!(eval_arith(Add, &Value::Numeric(x), &Value::Numeric(y), n).unwrap(), Value::Numeric(x + y));
            prop_assert_eq!(eval_arith(Mul, &Value::Numeric(x), &Value::Numeric(y), n).unwrap(), Value::Numeric(x * y));
        }
    }
}
