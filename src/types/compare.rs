//! Ordering and hashing of values, as used by ORDER BY, comparisons, sorting, hash joins and
//! hash aggregation.
//!
//! [`compare`] is a total order matching PostgreSQL's btree operators:
//! - floats: `-0 = 0`, `NaN = NaN`, and NaN sorts after every other value (including Infinity);
//! - text compares bytewise on UTF-8, i.e. the "C" collation (sharddb has no other collation, and
//!   bytewise order is also what the key encoding in [`super::keycode`] preserves);
//! - bytea is unsigned lexicographic (`memcmp`, shorter prefix first), uuid compares its bytes;
//! - `false < true`; dates and timestamps compare as integers (their infinities are the extreme
//!   integers, so they order correctly);
//! - `Int`, `Float` and `Numeric` also compare with each other by numeric value, so a caller
//!   that forgot a coercion still gets a sensible answer;
//! - NULL sorts after everything (ascending NULLS LAST); values of unrelated variants order by
//!   a fixed variant rank, which only matters for defensive totality.
//!
//! [`hash_value`] agrees with [`compare`]: values that compare equal hash equal. Numeric-family
//! values hash through one canonical form (an `i64` when integral and in range, else the
//! normalized decimal, else the float bits), so `1`, `1.0::float8` and `1.00::numeric` collide.

use std::cmp::Ordering;
use std::hash::{Hash, Hasher};

use rust_decimal::Decimal;

use super::Value;
use super::cast::numeric_to_f64;
use super::numeric::{BigDec, f64_to_bigdec};

/// PostgreSQL's `float8_cmp_internal`.
pub fn cmp_f64(a: f64, b: f64) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        // Neither is NaN, so partial_cmp is total here (and treats -0 == 0).
        (false, false) => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
    }
}

/// Exact comparison of an integer with a float.
fn cmp_i64_f64(i: i64, f: f64) -> Ordering {
    if f.is_nan() {
        return Ordering::Less;
    }
    // 2^63 is exact in f64; beyond ±2^63 the float wins outright.
    if f >= 9_223_372_036_854_775_808.0 {
        return Ordering::Less;
    }
    if f < -9_223_372_036_854_775_808.0 {
        return Ordering::Greater;
    }
    let t = f.trunc();
    let ti = t as i64;
    i.cmp(&ti).then_with(|| {
        let frac = f - t;
        if frac > 0.0 {
            Ordering::Less
        } else if frac < 0.0 {
            Ordering::Greater
        } else {
            Ordering::Equal
        }
    })
}

/// Exact comparison of a decimal with a float.
pub fn cmp_decimal_f64(d: &Decimal, f: f64) -> Ordering {
    if f.is_nan() {
        return Ordering::Less;
    }
    if f.is_infinite() {
        return if f > 0.0 {
            Ordering::Less
        } else {
            Ordering::Greater
        };
    }
    // Correctly rounded conversion is monotonic, so a difference after rounding is conclusive;
    // only when the decimal rounds to exactly `f` do we need the exact expansion of `f`.
    let approx = numeric_to_f64(d);
    if approx != f {
        return approx.partial_cmp(&f).unwrap_or(Ordering::Equal);
    }
    BigDec::from_decimal(d).cmp_value(&f64_to_bigdec(f))
}

fn rank(v: &Value) -> u8 {
    match v {
        Value::Bool(_) => 0,
        Value::Int(_) | Value::Float(_) | Value::Numeric(_) => 1,
        Value::Text(_) => 2,
        Value::Bytea(_) => 3,
        Value::Date(_) => 4,
        Value::Timestamp(_) => 5,
        Value::Uuid(_) => 6,
        Value::Null => 7,
    }
}

/// Total order on values (see module docs).
pub fn compare(a: &Value, b: &Value) -> Ordering {
    use Value::*;
    match (a, b) {
        (Null, Null) => Ordering::Equal,
        (Null, _) => Ordering::Greater,
        (_, Null) => Ordering::Less,
        (Bool(x), Bool(y)) => x.cmp(y),
        (Int(x), Int(y)) => x.cmp(y),
        (Float(x), Float(y)) => cmp_f64(*x, *y),
        (Numeric(x), Numeric(y)) => x.cmp(y),
        (Int(x), Float(y)) => cmp_i64_f64(*x, *y),
        (Float(x), Int(y)) => cmp_i64_f64(*y, *x).reverse(),
        (Int(x), Numeric(y)) => Decimal::from(*x).cmp(y),
        (Numeric(x), Int(y)) => x.cmp(&Decimal::from(*y)),
        (Numeric(x), Float(y)) => cmp_decimal_f64(x, *y),
        (Float(x), Numeric(y)) => cmp_decimal_f64(y, *x).reverse(),
        (Text(x), Text(y)) => x.as_bytes().cmp(y.as_bytes()),
        (Bytea(x), Bytea(y)) => x.cmp(y),
        (Date(x), Date(y)) => x.cmp(y),
        (Timestamp(x), Timestamp(y)) => x.cmp(y),
        (Uuid(x), Uuid(y)) => x.as_bytes().cmp(y.as_bytes()),
        _ => rank(a).cmp(&rank(b)),
    }
}

/// `compare(a, b) == Equal`, for convenience.
pub fn values_equal(a: &Value, b: &Value) -> bool {
    compare(a, b) == Ordering::Equal
}

fn hash_decimal<H: Hasher>(d: &Decimal, h: &mut H) {
    let n = d.normalize();
    if n.scale() == 0
        && let Ok(i) = i64::try_from(n.mantissa())
    {
        1u8.hash(h);
        i.hash(h);
        return;
    }
    2u8.hash(h);
    n.mantissa().hash(h);
    n.scale().hash(h);
}

/// Hashes a value consistently with [`compare`] equality.
pub fn hash_value<H: Hasher>(v: &Value, h: &mut H) {
    match v {
        Value::Null => 0u8.hash(h),
        Value::Int(i) => {
            1u8.hash(h);
            i.hash(h);
        }
        Value::Numeric(d) => hash_decimal(d, h),
        Value::Float(f) => {
            let f = *f;
            if f.is_nan() {
                3u8.hash(h);
            } else if f.is_infinite() {
                4u8.hash(h);
                f.is_sign_positive().hash(h);
            } else if f == f.trunc() && f.abs() < 9.2e18 {
                // Integral and within i64: same form as Value::Int (also folds -0 into 0).
                1u8.hash(h);
                (f as i64).hash(h);
            } else {
                // A float equal to some numeric is exactly that decimal; hash it the same way.
                match f64_to_bigdec(f).to_decimal_exact() {
                    Some(d) => hash_decimal(&d, h),
                    None => {
                        5u8.hash(h);
                        f.to_bits().hash(h);
                    }
                }
            }
        }
        Value::Bool(b) => {
            6u8.hash(h);
            b.hash(h);
        }
        Value::Text(s) => {
            7u8.hash(h);
            s.hash(h);
        }
        Value::Bytea(b) => {
            8u8.hash(h);
            b.hash(h);
        }
        Value::Date(d) => {
            9u8.hash(h);
            d.hash(h);
        }
        Value::Timestamp(t) => {
            10u8.hash(h);
            t.hash(h);
        }
        Value::Uuid(u) => {
            11u8.hash(h);
            u.as_bytes().hash(h);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::hash_map::DefaultHasher;

    fn hv(v: &Value) -> u64 {
        let mut h = DefaultHasher::new();
        hash_value(v, &mut h);
        h.finish()
    }
    fn num(s: &str) -> Value {
        Value::Numeric(s.parse().unwrap())
    }

    #[test]
    fn float_order_like_postgres() {
        // select 'NaN'::float8 = 'NaN'::float8, 'NaN'::float8 > 'Infinity'::float8,
        //        '-0'::float8 = 0::float8  → t t t
        assert_eq!(
            compare(&Value::Float(f64::NAN), &Value::Float(f64::NAN)),
            Ordering::Equal
        );
        assert_eq!(
            compare(&Value::Float(f64::NAN), &Value::Float(f64::INFINITY)),
            Ordering::Greater
        );
        assert_eq!(
            compare(&Value::Float(-0.0), &Value::Float(0.0)),
            Ordering::Equal
        );
        assert_eq!(hv(&Value::Float(-0.0)), hv(&Value::Float(0.0)));
        assert_eq!(hv(&Value::Float(f64::NAN)), hv(&Value::Float(-f64::NAN)));
    }

    #[test]
    fn mixed_numeric() {
        assert_eq!(compare(&Value::Int(1), &Value::Float(1.0)), Ordering::Equal);
        assert_eq!(compare(&Value::Int(1), &num("1.00")), Ordering::Equal);
        assert_eq!(compare(&num("0.5"), &Value::Float(0.5)), Ordering::Equal);
        assert_eq!(
            compare(
                &Value::Int(i64::MAX),
                &Value::Float(9.223_372_036_854_776e18)
            ),
            Ordering::Less
        );
        assert_eq!(
            compare(&Value::Int(2), &Value::Float(1.5)),
            Ordering::Greater
        );
        assert_eq!(
            compare(&Value::Int(-2), &Value::Float(-1.5)),
            Ordering::Less
        );
        assert_eq!(
            compare(&Value::Float(f64::NAN), &num("1e20")),
            Ordering::Greater
        );
        assert_eq!(hv(&Value::Int(1)), hv(&Value::Float(1.0)));
        assert_eq!(hv(&Value::Int(1)), hv(&num("1.00")));
        assert_eq!(hv(&num("1.50")), hv(&num("1.5")));
        assert_eq!(hv(&num("0.5")), hv(&Value::Float(0.5)));
    }

    #[test]
    fn others() {
        // select 'a' < 'b', 'Z' < 'a' collate "C", 'é' > 'z' collate "C" → t t t
        assert_eq!(
            compare(&Value::Text("Z".into()), &Value::Text("a".into())),
            Ordering::Less
        );
        assert_eq!(
            compare(&Value::Text("é".into()), &Value::Text("z".into())),
            Ordering::Greater
        );
        assert_eq!(
            compare(&Value::Bytea(vec![1]), &Value::Bytea(vec![1, 0])),
            Ordering::Less
        );
        assert_eq!(
            compare(&Value::Bool(false), &Value::Bool(true)),
            Ordering::Less
        );
        assert_eq!(compare(&Value::Null, &Value::Int(1)), Ordering::Greater);
        assert_eq!(compare(&Value::Null, &Value::Null), Ordering::Equal);
    }

    fn numeric_value() -> impl Strategy<Value = Value> {
        prop_oneof![
            any::<i64>().prop_map(Value::Int),
            (-1000i64..1000).prop_map(Value::Int),
            any::<f64>().prop_map(Value::Float),
            (-1000i32..1000, 0u32..3)
                .prop_map(|(m, s)| Value::Float(m as f64 / 10f64.powi(s as i32))),
            (any::<i64>(), 0u32..10).prop_map(|(m, s)| Value::Numeric(Decimal::new(m, s))),
            (-1000i64..1000, 0u32..3).prop_map(|(m, s)| Value::Numeric(Decimal::new(m, s))),
        ]
    }

    proptest! {
        #[test]
        fn numeric_order_is_consistent(a in numeric_value(), b in numeric_value(), c in numeric_value()) {
            let ab = compare(&a, &b);
            prop_assert_eq!(ab, compare(&b, &a).reverse());
            if ab == Ordering::Equal {
                prop_assert_eq!(hv(&a), hv(&b));
            }
            if ab != Ordering::Greater && compare(&b, &c) != Ordering::Greater {
                prop_assert_ne!(compare(&a, &c), Ordering::Greater);
            }
        }
    }
}
