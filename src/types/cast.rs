//! Type conversions and type resolution: `CAST`, assignment coercion, UNION/CASE type unification.
//!
//! The rules are PostgreSQL's, transcribed from `pg_cast` for the supported types plus the
//! automatic I/O-conversion casts (anything → string type in assignment context, string type →
//! anything explicitly). Each cast is allowed in a minimum [`CastContext`]; a cast requested in a
//! weaker context fails with 42846 `cannot cast type X to Y`, exactly like `CAST` does for a pair
//! with no pathway at all (callers that want PostgreSQL's 42804 "column is of type ..." wording
//! check [`can_coerce`] first).
//!
//! Value semantics worth knowing:
//! - `float → integer` rounds half to even (C `rint`), `numeric → integer` half away from zero;
//! - `float → numeric` goes through 15 (`real`: 6) significant digits like PostgreSQL, so
//!   `0.1::float8::numeric` is `0.1`;
//! - `numeric(p,s)` rounds to s digits half away from zero, then checks the precision (22003
//!   `numeric field overflow`);
//! - `varchar(n)` / `char(n)`: explicit casts truncate; implicit and assignment casts fail with
//!   22001 unless the excess characters are all blanks (which are dropped); `char(n)` values are
//!   stored blank-padded, and converting one to `text`/`varchar` strips trailing blanks.

use rust_decimal::Decimal;

use super::datetime;
use super::format::format_text;
use super::numeric::{BigDec, overflow_error};
use super::parse::{decimal_from_digits, parse_text};
use super::{DataType, Value};
use crate::error::{SqlError, SqlResult, sqlstate};

/// How a conversion was requested; later variants allow more conversions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CastContext {
    /// Inserted silently inside expressions (e.g. `int4 + int8`).
    Implicit,
    /// Storing into a column (`INSERT`, `UPDATE ... SET`).
    Assignment,
    /// `CAST(x AS t)` / `x::t`.
    Explicit,
}

/// PostgreSQL type category (`pg_type.typcategory`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Category {
    Boolean,
    Numeric,
    String,
    DateTime,
    User,
    Unknown,
}

fn category(t: DataType) -> Category {
    match t {
        DataType::Bool => Category::Boolean,
        DataType::Int2
        | DataType::Int4
        | DataType::Int8
        | DataType::Float4
        | DataType::Float8
        | DataType::Numeric(_) => Category::Numeric,
        DataType::Text | DataType::Varchar(_) | DataType::Char(_) => Category::String,
        DataType::Date | DataType::Timestamp => Category::DateTime,
        DataType::Bytea | DataType::Uuid => Category::User,
        DataType::Unknown => Category::Unknown,
    }
}

/// `pg_type.typispreferred`.
fn is_preferred(t: DataType) -> bool {
    matches!(t, DataType::Float8 | DataType::Text | DataType::Bool)
}

/// The type without its modifier, for "same type" tests.
pub fn base_type(t: DataType) -> DataType {
    match t {
        DataType::Numeric(_) => DataType::Numeric(None),
        DataType::Varchar(_) => DataType::Varchar(None),
        DataType::Char(_) => DataType::Char(0),
        other => other,
    }
}

/// The weakest context in which `from` converts to `to`, or `None` if it never does.
fn cast_context(from: DataType, to: DataType) -> Option<CastContext> {
    use CastContext::*;
    use DataType as T;
    let (from, to) = (base_type(from), base_type(to));
    if from == to || from == T::Unknown {
        return Some(Implicit);
    }
    if to == T::Unknown {
        return None;
    }
    let numeric = T::Numeric(None);
    let ctx = match (from, to) {
        (T::Bool, T::Int4) | (T::Int4, T::Bool) => Explicit,
        (T::Int2, T::Int4 | T::Int8 | T::Float4 | T::Float8)
        | (T::Int4, T::Int8 | T::Float4 | T::Float8)
        | (T::Int8, T::Float4 | T::Float8)
        | (T::Float4, T::Float8)
        | (T::Numeric(_), T::Float4 | T::Float8)
        | (T::Date, T::Timestamp) => Implicit,
        (T::Int2 | T::Int4 | T::Int8, _) if to == numeric => Implicit,
        (T::Int4 | T::Int8, T::Int2) | (T::Int8, T::Int4) => Assignment,
        (T::Float4 | T::Float8, T::Int2 | T::Int4 | T::Int8) => Assignment,
        (T::Float8, T::Float4) | (T::Numeric(_), T::Int2 | T::Int4 | T::Int8) => Assignment,
        (T::Float4 | T::Float8, _) if to == numeric => Assignment,
        (T::Timestamp, T::Date) => Assignment,
        // Among the string types every conversion is implicit.
        _ if from.is_string() && to.is_string() => Implicit,
        // Automatic I/O conversion casts.
        _ if to.is_string() => Assignment,
        _ if from.is_string() => Explicit,
        _ => return None,
    };
    Some(ctx)
}

/// Whether a value of type `from` may be converted to `to` in context `ctx`.
pub fn can_coerce(from: DataType, to: DataType, ctx: CastContext) -> bool {
    cast_context(from, to).is_some_and(|min| min <= ctx)
}

fn cannot_cast(from: DataType, to: DataType) -> SqlError {
    SqlError::new(
        "42846",
        format!("cannot cast type {} to {}", from.name(), to.name()),
    )
}

/// Converts `v` from `from` to `to` with PostgreSQL semantics (see module docs).
pub fn cast(v: Value, from: DataType, to: DataType, ctx: CastContext) -> SqlResult<Value> {
    if !can_coerce(from, to, ctx) {
        return Err(cannot_cast(from, to));
    }
    if v.is_null() {
        return Ok(Value::Null);
    }
    if from == to {
        return Ok(v);
    }
    let explicit = ctx == CastContext::Explicit;
    if to.is_string() || to == DataType::Unknown {
        let s = match v {
            Value::Text(s) => match (from, to) {
                // bpchar → text/varchar drops the padding (PostgreSQL's rtrim1).
                (DataType::Char(_), DataType::Text | DataType::Varchar(_)) => {
                    s.trim_end_matches(' ').to_string()
                }
                _ => s,
            },
            // bool → text is `booltext`, which spells the words out.
            Value::Bool(b) => if b { "true" } else { "false" }.to_string(),
            other => format_text(&other, from).unwrap_or_default(),
        };
        return check_string_length(s, to, explicit).map(Value::Text);
    }
    if let Value::Text(s) = &v {
        return parse_text(s, to);
    }
    match to {
        DataType::Bool => match v {
            Value::Bool(b) => Ok(Value::Bool(b)),
            Value::Int(i) => Ok(Value::Bool(i != 0)),
            _ => Err(cannot_cast(from, to)),
        },
        DataType::Int2 | DataType::Int4 | DataType::Int8 => to_integer(&v, to).map(Value::Int),
        DataType::Float4 | DataType::Float8 => to_float(&v, from, to).map(Value::Float),
        DataType::Numeric(typmod) => {
            let d = to_numeric(&v, from)?;
            apply_numeric_typmod(d, typmod).map(Value::Numeric)
        }
        DataType::Date => match v {
            Value::Date(d) => Ok(Value::Date(d)),
            Value::Timestamp(t) => Ok(Value::Date(datetime::timestamp_to_date(t))),
            _ => Err(cannot_cast(from, to)),
        },
        DataType::Timestamp => match v {
            Value::Timestamp(t) => Ok(Value::Timestamp(t)),
            Value::Date(d) => datetime::date_to_timestamp(d).map(Value::Timestamp),
            _ => Err(cannot_cast(from, to)),
        },
        DataType::Bytea | DataType::Uuid => match (&v, to) {
            (Value::Bytea(_), DataType::Bytea) | (Value::Uuid(_), DataType::Uuid) => Ok(v),
            _ => Err(cannot_cast(from, to)),
        },
        // String targets returned above.
        DataType::Text | DataType::Varchar(_) | DataType::Char(_) | DataType::Unknown => Err(
            SqlError::internal(format!("unexpected string cast from {from} to {to}")),
        ),
    }
}

/// Enforces `varchar(n)` / `char(n)` lengths (in characters) and pads `char(n)`.
///
/// `explicit` truncates silently; otherwise only trailing blanks may be cut off, anything else is
/// 22001 `value too long for type character varying(n)`.
pub fn check_string_length(mut s: String, ty: DataType, explicit: bool) -> SqlResult<String> {
    let n = match ty {
        DataType::Varchar(Some(n)) | DataType::Char(n) => n as usize,
        _ => return Ok(s),
    };
    if let Some((idx, _)) = s.char_indices().nth(n) {
        if !explicit && !s[idx..].chars().all(|c| c == ' ') {
            return Err(SqlError::new(
                sqlstate::STRING_DATA_RIGHT_TRUNCATION,
                format!("value too long for type {ty}"),
            ));
        }
        s.truncate(idx);
    }
    if let DataType::Char(_) = ty {
        let len = s.chars().count();
        if len < n {
            s.extend(std::iter::repeat_n(' ', n - len));
        }
    }
    Ok(s)
}

fn int_range(ty: DataType) -> (i64, i64) {
    match ty {
        DataType::Int2 => (i16::MIN as i64, i16::MAX as i64),
        DataType::Int4 => (i32::MIN as i64, i32::MAX as i64),
        _ => (i64::MIN, i64::MAX),
    }
}

/// The error PostgreSQL raises when a value does not fit the integer type `ty`.
pub fn int_out_of_range(ty: DataType) -> SqlError {
    SqlError::out_of_range(match ty {
        DataType::Int2 => "smallint",
        DataType::Int4 => "integer",
        _ => "bigint",
    })
}

/// Range-checks an integer result for `ty`.
pub fn check_int(v: i64, ty: DataType) -> SqlResult<i64> {
    let (lo, hi) = int_range(ty);
    if v < lo || v > hi {
        Err(int_out_of_range(ty))
    } else {
        Ok(v)
    }
}

fn to_integer(v: &Value, to: DataType) -> SqlResult<i64> {
    match v {
        Value::Int(i) => check_int(*i, to),
        Value::Bool(b) => Ok(*b as i64),
        Value::Float(f) => {
            let r = f.round_ties_even();
            // 2^63 is exactly representable; anything at or beyond it does not fit.
            if r.is_nan()
                || !(-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&r)
            {
                return Err(int_out_of_range(to));
            }
            check_int(r as i64, to)
        }
        Value::Numeric(d) => {
            let r = BigDec::from_decimal(d).with_scale(0);
            let m = r
                .to_decimal()
                .ok()
                .and_then(|d| i64::try_from(d.mantissa()).ok())
                .ok_or_else(|| int_out_of_range(to))?;
            check_int(m, to)
        }
        _ => Err(int_out_of_range(to)),
    }
}

/// Overflow/underflow errors of float arithmetic and conversions.
pub fn float_overflow() -> SqlError {
    SqlError::new(
        sqlstate::NUMERIC_VALUE_OUT_OF_RANGE,
        "value out of range: overflow",
    )
}

pub fn float_underflow() -> SqlError {
    SqlError::new(
        sqlstate::NUMERIC_VALUE_OUT_OF_RANGE,
        "value out of range: underflow",
    )
}

/// Rounds an `f64` to `real`, failing like PostgreSQL's `float8_to_float4`.
pub fn f64_to_f32_checked(f: f64) -> SqlResult<f64> {
    let r = f as f32;
    if r.is_infinite() && !f.is_infinite() {
        return Err(float_overflow());
    }
    if r == 0.0 && f != 0.0 {
        return Err(float_underflow());
    }
    Ok(r as f64)
}

/// Exactly rounded conversion of a decimal to `f64` (via its decimal string, like PostgreSQL).
pub fn numeric_to_f64(d: &Decimal) -> f64 {
    d.to_string().parse().unwrap_or(0.0)
}

fn to_float(v: &Value, from: DataType, to: DataType) -> SqlResult<f64> {
    let single = to == DataType::Float4;
    match v {
        Value::Int(i) => Ok(if single { *i as f32 as f64 } else { *i as f64 }),
        Value::Bool(b) => Ok(*b as i64 as f64),
        Value::Float(f) => {
            if single && from != DataType::Float4 {
                f64_to_f32_checked(*f)
            } else {
                Ok(*f)
            }
        }
        // Parsed straight from the decimal string so `real` is rounded once, not twice.
        Value::Numeric(d) => Ok(if single {
            d.to_string().parse::<f32>().unwrap_or(0.0) as f64
        } else {
            numeric_to_f64(d)
        }),
        _ => Err(cannot_cast(from, to)),
    }
}

/// `float8_numeric` / `float4_numeric`: the value printed with DBL_DIG (FLT_DIG) significant
/// digits, then read as a numeric.
pub fn float_to_numeric(f: f64, single: bool) -> SqlResult<Decimal> {
    if f.is_nan() {
        return Err(SqlError::unsupported("numeric NaN"));
    }
    if f.is_infinite() {
        return Err(SqlError::unsupported("numeric Infinity"));
    }
    let digits = if single { 6 } else { 15 };
    let sci = format!("{:.*e}", digits - 1, f);
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i64 = exp.parse().unwrap_or(0);
    let neg = mantissa.starts_with('-');
    let ds: String = mantissa.chars().filter(|c| c.is_ascii_digit()).collect();
    // %g drops trailing zeros, so the resulting numeric has no spurious scale.
    let ds = ds.trim_end_matches('0');
    if ds.is_empty() {
        return Ok(Decimal::ZERO);
    }
    decimal_from_digits(neg, ds, ds.len() as i64 - 1 - exp)
}

fn to_numeric(v: &Value, from: DataType) -> SqlResult<Decimal> {
    match v {
        Value::Int(i) => Ok(Decimal::from(*i)),
        Value::Numeric(d) => Ok(*d),
        Value::Float(f) => float_to_numeric(*f, from == DataType::Float4),
        Value::Bool(b) => Ok(Decimal::from(*b as i64)),
        _ => Err(cannot_cast(from, DataType::Numeric(None))),
    }
}

/// Applies a `numeric(p,s)` modifier: round to s digits (half away from zero), then fail with
/// 22003 `numeric field overflow` if the integer part needs more than p - s digits.
pub fn apply_numeric_typmod(d: Decimal, typmod: Option<(u32, u32)>) -> SqlResult<Decimal> {
    let Some((precision, scale)) = typmod else {
        return Ok(d);
    };
    let rounded = BigDec::from_decimal(&d).with_scale(scale);
    let max_digits = precision as i64 - scale as i64;
    if let Some(e) = rounded.leading_exponent()
        && e >= max_digits
    {
        let limit = if max_digits != 0 {
            format!("10^{max_digits}")
        } else {
            "1".to_string()
        };
        return Err(SqlError::new(
            sqlstate::NUMERIC_VALUE_OUT_OF_RANGE,
            "numeric field overflow",
        )
        .with_detail(format!(
            "A field with precision {precision}, scale {scale} must round to an absolute value less than {limit}."
        )));
    }
    rounded.to_decimal()
}

/// PostgreSQL's `select_common_type` (+ `select_common_typmod`) for UNION, CASE, COALESCE, ...
///
/// `context` names the construct in errors: `UNION types integer and text cannot be matched`.
/// Unknown inputs (untyped literals, NULL) are ignored; if all are unknown the result is `text`.
/// Within a category the first type wins unless a later one is reached from it implicitly but
/// not vice versa (and the current one is not the category's preferred type), so
/// `int4, int8 → int8`, `float4, numeric → float4`, `varchar, text → varchar`,
/// `text, varchar → text`. Every input must then convert implicitly to the winner.
///
/// Type modifiers survive only if every input has the winning type with the same modifier.
/// PostgreSQL then falls back to an unconstrained type; for `char` that would be `bpchar`, which
/// has no `DataType`, so mixed `char(n)` lengths resolve to `char(max n)`.
pub fn common_type(types: &[DataType], context: &str) -> SqlResult<DataType> {
    let mut known = types.iter().copied().filter(|t| *t != DataType::Unknown);
    let Some(mut ptype) = known.next() else {
        return Ok(DataType::Text);
    };
    for ntype in known {
        if base_type(ntype) == base_type(ptype) {
            continue;
        }
        if category(ntype) != category(ptype) {
            return Err(SqlError::new(
                sqlstate::DATATYPE_MISMATCH,
                format!(
                    "{context} types {} and {} cannot be matched",
                    ptype.name(),
                    ntype.name()
                ),
            ));
        }
        if !is_preferred(ptype)
            && can_coerce(ptype, ntype, CastContext::Implicit)
            && !can_coerce(ntype, ptype, CastContext::Implicit)
        {
            ptype = ntype;
        }
    }
    for &t in types {
        if !can_coerce(t, ptype, CastContext::Implicit) {
            return Err(SqlError::new(
                "42846",
                format!(
                    "{context} could not convert type {} to {}",
                    t.name(),
                    ptype.name()
                ),
            ));
        }
    }
    let base = base_type(ptype);
    if types.iter().all(|t| *t == ptype) {
        return Ok(ptype);
    }
    Ok(match base {
        DataType::Char(_) => {
            let n = types
                .iter()
                .filter_map(|t| match t {
                    DataType::Char(n) => Some(*n),
                    _ => None,
                })
                .max()
                .unwrap_or(1);
            DataType::Char(n)
        }
        other => other,
    })
}

/// Numeric overflow error, re-exported for callers that build decimals.
pub fn numeric_overflow() -> SqlError {
    overflow_error()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::format::format_text;
    use CastContext::*;
    use DataType as T;

    fn c(v: Value, from: T, to: T, ctx: CastContext) -> SqlResult<Value> {
        cast(v, from, to, ctx)
    }
    fn show(v: Value, from: T, to: T) -> String {
        format_text(&c(v, from, to, Explicit).unwrap(), to).unwrap()
    }
    fn txt(s: &str) -> Value {
        Value::Text(s.into())
    }
    fn num(s: &str) -> Value {
        Value::Numeric(s.parse().unwrap())
    }

    #[test]
    fn numeric_casts() {
        // select 2.5::float8::int4, 3.5::float8::int4, -2.5::float8::int4, 2.5::numeric::int4,
        //        -2.5::numeric::int4, 2.5::float4::int2 → 2 4 -2 3 -3 2
        assert_eq!(
            c(Value::Float(2.5), T::Float8, T::Int4, Explicit).unwrap(),
            Value::Int(2)
        );
        assert_eq!(
            c(Value::Float(3.5), T::Float8, T::Int4, Explicit).unwrap(),
            Value::Int(4)
        );
        assert_eq!(
            c(Value::Float(-2.5), T::Float8, T::Int4, Explicit).unwrap(),
            Value::Int(-2)
        );
        assert_eq!(
            c(num("2.5"), T::Numeric(None), T::Int4, Explicit).unwrap(),
            Value::Int(3)
        );
        assert_eq!(
            c(num("-2.5"), T::Numeric(None), T::Int4, Explicit).unwrap(),
            Value::Int(-3)
        );
        assert_eq!(
            c(Value::Float(2.5), T::Float4, T::Int2, Explicit).unwrap(),
            Value::Int(2)
        );
        // select 1e10::float8::int4, 'NaN'::float8::int4 → integer out of range
        let e = c(Value::Float(1e10), T::Float8, T::Int4, Explicit).unwrap_err();
        assert_eq!(
            (e.code.as_str(), e.message.as_str()),
            ("22003", "integer out of range")
        );
        assert_eq!(
            c(Value::Float(f64::NAN), T::Float8, T::Int4, Explicit)
                .unwrap_err()
                .code,
            "22003"
        );
        assert_eq!(
            c(Value::Float(9.3e18), T::Float8, T::Int8, Explicit)
                .unwrap_err()
                .message,
            "bigint out of range"
        );
        // select 70000::int4::int2 → smallint out of range
        assert_eq!(
            c(Value::Int(70000), T::Int4, T::Int2, Assignment)
                .unwrap_err()
                .message,
            "smallint out of range"
        );
        // select 1.5::numeric(3,0), 12.345::numeric(4,2), 999.995::numeric(5,2)
        assert_eq!(
            show(num("1.5"), T::Numeric(None), T::Numeric(Some((3, 0)))),
            "2"
        );
        assert_eq!(
            show(num("12.345"), T::Numeric(None), T::Numeric(Some((4, 2)))),
            "12.35"
        );
        let e = c(
            num("999.995"),
            T::Numeric(None),
            T::Numeric(Some((5, 2))),
            Explicit,
        )
        .unwrap_err();
        assert_eq!(e.message, "numeric field overflow");
        assert_eq!(
            e.detail.as_deref(),
            Some(
                "A field with precision 5, scale 2 must round to an absolute value less than 10^3."
            )
        );
        // select 1::numeric(1,1) → ... less than 1.  12345::numeric(3,5) → ... less than 10^-2.
        let e = c(Value::Int(1), T::Int4, T::Numeric(Some((1, 1))), Explicit).unwrap_err();
        assert!(e.detail.unwrap().ends_with("less than 1."));
        let e = c(
            Value::Int(12345),
            T::Int4,
            T::Numeric(Some((3, 5))),
            Explicit,
        )
        .unwrap_err();
        assert!(e.detail.unwrap().ends_with("less than 10^-2."));
        assert_eq!(
            show(num("0.5"), T::Numeric(None), T::Numeric(Some((1, 1)))),
            "0.5"
        );
        assert_eq!(
            show(Value::Int(7), T::Int4, T::Numeric(Some((5, 2)))),
            "7.00"
        );
        // select 0.1::float8::numeric, 1e20::float8::numeric, 1.0e-10::float8::numeric,
        //   '1.2345679'::float4::numeric, (1/3::float8)::numeric, 123456789012345678::float8::numeric
        assert_eq!(show(Value::Float(0.1), T::Float8, T::Numeric(None)), "0.1");
        assert_eq!(
            show(Value::Float(1e20), T::Float8, T::Numeric(None)),
            "100000000000000000000"
        );
        assert_eq!(
            show(Value::Float(1e-10), T::Float8, T::Numeric(None)),
            "0.0000000001"
        );
        assert_eq!(
            show(
                Value::Float(1.2345679f32 as f64),
                T::Float4,
                T::Numeric(None)
            ),
            "1.23457"
        );
        assert_eq!(
            show(Value::Float(1.0 / 3.0), T::Float8, T::Numeric(None)),
            "0.333333333333333"
        );
        assert_eq!(
            show(
                Value::Float(123456789012345678.0),
                T::Float8,
                T::Numeric(None)
            ),
            "123456789012346000"
        );
        assert_eq!(
            show(Value::Float(-2.5), T::Float8, T::Numeric(None)),
            "-2.5"
        );
        assert_eq!(show(Value::Float(0.0), T::Float8, T::Numeric(None)), "0");
        assert_eq!(
            c(
                Value::Float(f64::NAN),
                T::Float8,
                T::Numeric(None),
                Explicit
            )
            .unwrap_err()
            .code,
            "0A000"
        );
        // select 1::numeric::float4, 1.23456789::numeric::float4,
        //        123456789012345678901234567890::numeric::float8 (ours: 28 digits max)
        assert_eq!(
            show(num("1.23456789"), T::Numeric(None), T::Float4),
            "1.2345679"
        );
        assert_eq!(
            show(
                num("12345678901234567890123456789"),
                T::Numeric(None),
                T::Float8
            ),
            "1.2345678901234568e+28"
        );
        // select 1e39::float8::float4 → overflow, 1e-50::float8::float4 → underflow
        assert_eq!(
            c(Value::Float(1e39), T::Float8, T::Float4, Assignment)
                .unwrap_err()
                .message,
            "value out of range: overflow"
        );
        assert_eq!(
            c(Value::Float(1e-50), T::Float8, T::Float4, Assignment)
                .unwrap_err()
                .message,
            "value out of range: underflow"
        );
    }

    #[test]
    fn other_casts() {
        // select 1::bool, 0::int4::bool, true::int4, 5::int4::bool → t f 1 t
        assert_eq!(
            c(Value::Int(5), T::Int4, T::Bool, Explicit).unwrap(),
            Value::Bool(true)
        );
        assert_eq!(
            c(Value::Bool(true), T::Bool, T::Int4, Explicit).unwrap(),
            Value::Int(1)
        );
        // select 1::int8::bool, true::int8, 1::int2::bool → cannot cast type ...
        let e = c(Value::Int(1), T::Int8, T::Bool, Explicit).unwrap_err();
        assert_eq!(
            (e.code.as_str(), e.message.as_str()),
            ("42846", "cannot cast type bigint to boolean")
        );
        assert_eq!(
            c(Value::Bool(true), T::Bool, T::Int8, Explicit)
                .unwrap_err()
                .message,
            "cannot cast type boolean to bigint"
        );
        assert!(c(Value::Int(1), T::Int4, T::Bool, Assignment).is_err());
        // select 1::date, 1::int4::bytea → cannot cast
        assert_eq!(
            c(Value::Int(1), T::Int4, T::Date, Explicit)
                .unwrap_err()
                .message,
            "cannot cast type integer to date"
        );
        assert_eq!(
            c(Value::Null, T::Int4, T::Bytea, Explicit)
                .unwrap_err()
                .code,
            "42846"
        );
        // select 'true'::text::bool, true::text, 1.5::numeric::text
        assert_eq!(
            c(txt("true"), T::Text, T::Bool, Explicit).unwrap(),
            Value::Bool(true)
        );
        assert_eq!(
            c(Value::Bool(true), T::Bool, T::Text, Assignment).unwrap(),
            txt("true")
        );
        assert_eq!(
            c(num("1.50"), T::Numeric(None), T::Text, Assignment).unwrap(),
            txt("1.50")
        );
        assert!(c(txt("1"), T::Text, T::Int4, Assignment).is_err());
        // select 1::int4::text::date → invalid input syntax for type date: "1"
        assert_eq!(
            c(txt("1"), T::Text, T::Date, Explicit).unwrap_err().code,
            "22007"
        );
        // select '2024-01-31 10:00:00'::timestamp::date, '2024-01-31'::date::timestamp
        let ts = 19_753 * datetime::USECS_PER_DAY + 36_000_000_000;
        assert_eq!(
            c(Value::Timestamp(ts), T::Timestamp, T::Date, Assignment).unwrap(),
            Value::Date(19_753)
        );
        assert_eq!(
            c(Value::Timestamp(-1), T::Timestamp, T::Date, Assignment).unwrap(),
            Value::Date(-1)
        );
        assert_eq!(
            c(Value::Date(19_753), T::Date, T::Timestamp, Implicit).unwrap(),
            Value::Timestamp(19_753 * datetime::USECS_PER_DAY)
        );
        assert!(c(Value::Timestamp(0), T::Timestamp, T::Date, Implicit).is_err());
        assert_eq!(
            c(
                Value::Date(datetime::DATE_MAX),
                T::Date,
                T::Timestamp,
                Implicit
            )
            .unwrap_err()
            .code,
            "22008"
        );
        // select 'a0eebc99-...'::uuid::text, 'ab'::bytea::text → \x6162, 'abc'::text::bytea
        assert_eq!(
            c(Value::Bytea(b"ab".to_vec()), T::Bytea, T::Text, Assignment).unwrap(),
            txt("\\x6162")
        );
        assert_eq!(
            c(txt("abc"), T::Text, T::Bytea, Explicit).unwrap(),
            Value::Bytea(b"abc".to_vec())
        );
        assert_eq!(
            c(txt("x"), T::Unknown, T::Int4, Implicit).unwrap_err().code,
            "22P02"
        );
        assert_eq!(
            c(txt("42"), T::Unknown, T::Int4, Implicit).unwrap(),
            Value::Int(42)
        );
        assert_eq!(
            c(Value::Float(1.5), T::Float8, T::Text, Assignment).unwrap(),
            txt("1.5")
        );
        assert_eq!(
            c(Value::Float(0.1f32 as f64), T::Float4, T::Text, Assignment).unwrap(),
            txt("0.1")
        );
    }

    #[test]
    fn string_lengths() {
        // select 'abc'::text::varchar(2), 'abc'::varchar(5)::char(2), 12345678::int4::varchar(3)
        assert_eq!(
            c(txt("abc"), T::Text, T::Varchar(Some(2)), Explicit).unwrap(),
            txt("ab")
        );
        assert_eq!(
            c(txt("abc"), T::Varchar(Some(5)), T::Char(2), Explicit).unwrap(),
            txt("ab")
        );
        assert_eq!(
            c(Value::Int(12345678), T::Int4, T::Varchar(Some(3)), Explicit).unwrap(),
            txt("123")
        );
        // select 1::int4::char(3) → '1  '
        assert_eq!(
            c(Value::Int(1), T::Int4, T::Char(3), Explicit).unwrap(),
            txt("1  ")
        );
        // insert 'abcd' into varchar(3) → value too long for type character varying(3)
        let e = c(txt("abcd"), T::Text, T::Varchar(Some(3)), Assignment).unwrap_err();
        assert_eq!(
            (e.code.as_str(), e.message.as_str()),
            ("22001", "value too long for type character varying(3)")
        );
        assert_eq!(
            c(txt("abcd"), T::Text, T::Char(3), Assignment)
                .unwrap_err()
                .message,
            "value too long for type character(3)"
        );
        assert_eq!(
            c(txt("abc   "), T::Text, T::Varchar(Some(3)), Assignment).unwrap(),
            txt("abc")
        );
        assert_eq!(
            c(txt("héllo"), T::Text, T::Varchar(Some(2)), Explicit).unwrap(),
            txt("hé")
        );
        // select ('ab'::char(5))::varchar || '|', 'ab  '::varchar(5)::char(3) || '|'  → ab| ab|
        assert_eq!(
            c(txt("ab   "), T::Char(5), T::Varchar(None), Implicit).unwrap(),
            txt("ab")
        );
        assert_eq!(
            c(txt("ab   "), T::Char(5), T::Text, Implicit).unwrap(),
            txt("ab")
        );
        assert_eq!(
            c(txt("ab  "), T::Varchar(Some(5)), T::Char(3), Implicit).unwrap(),
            txt("ab ")
        );
        assert_eq!(
            c(txt("ab   "), T::Char(5), T::Char(3), Assignment).unwrap(),
            txt("ab ")
        );
        assert_eq!(
            c(txt("abcd"), T::Char(4), T::Char(2), Explicit).unwrap(),
            txt("ab")
        );
    }

    #[test]
    fn coercion_table() {
        assert!(can_coerce(T::Int4, T::Int8, Implicit));
        assert!(!can_coerce(T::Int8, T::Int4, Implicit));
        assert!(can_coerce(T::Int8, T::Int4, Assignment));
        assert!(can_coerce(T::Numeric(None), T::Float4, Implicit));
        assert!(!can_coerce(T::Float4, T::Numeric(None), Implicit));
        assert!(can_coerce(T::Unknown, T::Uuid, Implicit));
        assert!(can_coerce(T::Int4, T::Text, Assignment));
        assert!(!can_coerce(T::Int4, T::Text, Implicit));
        assert!(!can_coerce(T::Text, T::Int4, Assignment));
        assert!(can_coerce(T::Text, T::Int4, Explicit));
        assert!(can_coerce(T::Varchar(Some(3)), T::Char(9), Implicit));
        assert!(can_coerce(
            T::Numeric(Some((5, 2))),
            T::Numeric(None),
            Implicit
        ));
        assert!(!can_coerce(T::Date, T::Int4, Explicit));
        assert!(!can_coerce(T::Uuid, T::Bytea, Explicit));
    }

    #[test]
    fn common_types_match_postgres() {
        let ct = |ts: &[T]| common_type(ts, "UNION");
        // select 1::float4 union select 1::numeric → real; numeric union float4 → real;
        // int8 union float4 → real; int4 union int2 → integer; float8 union int2 → double
        assert_eq!(ct(&[T::Float4, T::Numeric(None)]).unwrap(), T::Float4);
        assert_eq!(ct(&[T::Numeric(None), T::Float4]).unwrap(), T::Float4);
        assert_eq!(ct(&[T::Int8, T::Float4]).unwrap(), T::Float4);
        assert_eq!(ct(&[T::Int4, T::Int2]).unwrap(), T::Int4);
        assert_eq!(ct(&[T::Float8, T::Int2]).unwrap(), T::Float8);
        assert_eq!(
            ct(&[T::Int2, T::Numeric(Some((5, 2)))]).unwrap(),
            T::Numeric(None)
        );
        assert_eq!(
            ct(&[T::Numeric(Some((5, 2))), T::Numeric(Some((5, 2)))]).unwrap(),
            T::Numeric(Some((5, 2)))
        );
        // varchar(3) union varchar(5) → varchar; varchar union text → varchar;
        // text union varchar → text; char(3) union varchar(5) → character; varchar union char → varchar
        assert_eq!(
            ct(&[T::Varchar(Some(3)), T::Varchar(Some(5))]).unwrap(),
            T::Varchar(None)
        );
        assert_eq!(
            ct(&[T::Varchar(Some(3)), T::Text]).unwrap(),
            T::Varchar(None)
        );
        assert_eq!(ct(&[T::Text, T::Varchar(None)]).unwrap(), T::Text);
        assert_eq!(ct(&[T::Char(3), T::Varchar(Some(5))]).unwrap(), T::Char(3));
        assert_eq!(ct(&[T::Char(3), T::Char(5)]).unwrap(), T::Char(5));
        assert_eq!(
            ct(&[T::Varchar(Some(3)), T::Char(5)]).unwrap(),
            T::Varchar(None)
        );
        // select pg_typeof(coalesce(null, null)) → text; 'a' union 'b' → text
        assert_eq!(ct(&[T::Unknown, T::Unknown]).unwrap(), T::Text);
        assert_eq!(ct(&[]).unwrap(), T::Text);
        assert_eq!(ct(&[T::Unknown, T::Int4]).unwrap(), T::Int4);
        // date union timestamp → timestamp
        assert_eq!(ct(&[T::Date, T::Timestamp]).unwrap(), T::Timestamp);
        // select 1 union select 'a'::text → UNION types integer and text cannot be matched
        let e = ct(&[T::Int4, T::Text]).unwrap_err();
        assert_eq!(
            (e.code.as_str(), e.message.as_str()),
            ("42804", "UNION types integer and text cannot be matched")
        );
        // select case when true then 1 else 'a'::text end → CASE types text and integer ...
        assert_eq!(
            common_type(&[T::Text, T::Int4], "CASE")
                .unwrap_err()
                .message,
            "CASE types text and integer cannot be matched"
        );
        // select '\x01'::bytea union select gen_random_uuid() → UNION could not convert type uuid to bytea
        let e = ct(&[T::Bytea, T::Uuid]).unwrap_err();
        assert_eq!(
            (e.code.as_str(), e.message.as_str()),
            ("42846", "UNION could not convert type uuid to bytea")
        );
        assert_eq!(ct(&[T::Int4, T::Bool]).unwrap_err().code, "42804");
    }
}
