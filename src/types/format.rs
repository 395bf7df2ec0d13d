//! PostgreSQL text output (`typoutput`) for every supported type.
//!
//! The text format is what clients see for simple queries and for text-format result columns, so
//! it must match PostgreSQL byte for byte:
//! - `double precision` / `real` print the shortest digit string that reads back to the same value
//!   (PostgreSQL 12+ with the default `extra_float_digits = 1`), in fixed notation when the decimal
//!   exponent is in `-4..15` (`-4..6` for `real`) and as `1.5e-05` otherwise. When two shortest
//!   strings are equally close to the binary value, PostgreSQL's Ryu picks the even one
//!   (`256034.625::real` → `256034.62`); Rust's shortest formatting picks the upper one, so the
//!   correctly rounded (ties-to-even) string of the same length is preferred when it round-trips;
//! - `numeric` prints exactly its scale (`1.50`), never a negative zero;
//! - `date` / `timestamp` use the ISO DateStyle, years before 1 AD as `0044-03-15 BC`, fractional
//!   seconds without trailing zeros, and `infinity` / `-infinity` for the sentinels;
//! - `char(n)` is blank-padded to n characters (values are normally stored padded already; the
//!   padding here only matters for values that reached the column some other way).
//!
//! Output works from the value, using the type only where the value alone is ambiguous (`real`
//! vs `double precision`, `char(n)` padding), so a mismatched pair still prints sensibly.

use rust_decimal::Decimal;

use super::datetime::{
    self, DATE_NEG_INFINITY, DATE_POS_INFINITY, TS_NEG_INFINITY, TS_POS_INFINITY, USECS_PER_DAY,
};
use super::{DataType, Value};

/// PostgreSQL text output of a value; `None` for NULL.
pub fn format_text(v: &Value, ty: DataType) -> Option<String> {
    Some(match v {
        Value::Null => return None,
        Value::Bool(b) => if *b { "t" } else { "f" }.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => match ty {
            DataType::Float4 => format_float4(*f as f32),
            _ => format_float8(*f),
        },
        Value::Numeric(d) => format_numeric(d),
        Value::Text(s) => match ty {
            DataType::Char(n) => pad_to_chars(s, n),
            _ => s.clone(),
        },
        Value::Bytea(b) => format_bytea(b),
        Value::Date(d) => format_date(*d),
        Value::Timestamp(t) => format_timestamp(*t),
        Value::Uuid(u) => u.hyphenated().to_string(),
    })
}

/// Blank-pads `s` to `n` characters (never truncates).
pub fn pad_to_chars(s: &str, n: u32) -> String {
    let len = s.chars().count();
    let n = n as usize;
    if len >= n {
        s.to_string()
    } else {
        let mut out = String::with_capacity(s.len() + n - len);
        out.push_str(s);
        out.extend(std::iter::repeat_n(' ', n - len));
        out
    }
}

pub fn format_float8(f: f64) -> String {
    if let Some(s) = special_float(f) {
        return s;
    }
    let shortest = format!("{f:e}");
    let alt = format!("{:.*e}", sig_digits(&shortest).saturating_sub(1), f);
    let pick = if alt.parse::<f64>() == Ok(f) {
        alt
    } else {
        shortest
    };
    shortest_to_pg(&pick, 15)
}

pub fn format_float4(f: f32) -> String {
    if let Some(s) = special_float(f as f64) {
        return s;
    }
    let shortest = format!("{f:e}");
    let alt = format!("{:.*e}", sig_digits(&shortest).saturating_sub(1), f);
    let pick = if alt.parse::<f32>() == Ok(f) {
        alt
    } else {
        shortest
    };
    shortest_to_pg(&pick, 6)
}

/// Number of mantissa digits in a `{:e}`-formatted float.
fn sig_digits(sci: &str) -> usize {
    sci.split('e')
        .next()
        .unwrap_or("")
        .bytes()
        .filter(u8::is_ascii_digit)
        .count()
}

fn special_float(f: f64) -> Option<String> {
    if f.is_nan() {
        Some("NaN".into())
    } else if f.is_infinite() {
        Some(if f > 0.0 { "Infinity" } else { "-Infinity" }.into())
    } else if f == 0.0 {
        Some(if f.is_sign_negative() { "-0" } else { "0" }.into())
    } else {
        None
    }
}

/// Rewrites Rust's shortest round-trip scientific form (`-1.5e-5`) the way PostgreSQL prints it.
fn shortest_to_pg(sci: &str, fixed_limit: i32) -> String {
    let (neg, rest) = match sci.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, sci),
    };
    let (mantissa, exp) = rest.split_once('e').unwrap_or((rest, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let mut digits: String = mantissa.chars().filter(|c| c.is_ascii_digit()).collect();
    while digits.len() > 1 && digits.ends_with('0') {
        digits.pop();
    }
    let mut out = String::with_capacity(digits.len() + 8);
    if neg {
        out.push('-');
    }
    if (-4..fixed_limit).contains(&exp) {
        if exp < 0 {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', (-exp - 1) as usize));
            out.push_str(&digits);
        } else {
            let int_len = exp as usize + 1;
            if digits.len() <= int_len {
                out.push_str(&digits);
                out.extend(std::iter::repeat_n('0', int_len - digits.len()));
            } else {
                out.push_str(&digits[..int_len]);
                out.push('.');
                out.push_str(&digits[int_len..]);
            }
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push('e');
        out.push(if exp < 0 { '-' } else { '+' });
        out.push_str(&format!("{:02}", exp.unsigned_abs()));
    }
    out
}

pub fn format_numeric(d: &Decimal) -> String {
    let mut d = *d;
    if d.is_zero() {
        d.set_sign_positive(true);
    }
    d.to_string()
}

pub fn format_bytea(b: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(2 + b.len() * 2);
    s.push_str("\\x");
    for &byte in b {
        s.push(HEX[(byte >> 4) as usize] as char);
        s.push(HEX[(byte & 15) as usize] as char);
    }
    s
}

fn push_ymd(out: &mut String, days: i64) -> bool {
    let (y, m, d) = datetime::civil_from_days(days);
    let bc = y <= 0;
    let year = if bc { 1 - y } else { y };
    out.push_str(&format!("{year:04}-{m:02}-{d:02}"));
    bc
}

pub fn format_date(d: i32) -> String {
    match d {
        DATE_POS_INFINITY => "infinity".into(),
        DATE_NEG_INFINITY => "-infinity".into(),
        _ => {
            let mut s = String::with_capacity(14);
            if push_ymd(&mut s, d as i64) {
                s.push_str(" BC");
            }
            s
        }
    }
}

pub fn format_timestamp(t: i64) -> String {
    match t {
        TS_POS_INFINITY => "infinity".into(),
        TS_NEG_INFINITY => "-infinity".into(),
        _ => {
            let days = t.div_euclid(USECS_PER_DAY);
            let (h, mi, s, us) = datetime::split_time_of_day(t.rem_euclid(USECS_PER_DAY));
            let mut out = String::with_capacity(32);
            let bc = push_ymd(&mut out, days);
            out.push_str(&format!(" {h:02}:{mi:02}:{s:02}"));
            if us != 0 {
                let frac = format!("{us:06}");
                out.push('.');
                out.push_str(frac.trim_end_matches('0'));
            }
            if bc {
                out.push_str(" BC");
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn f8(f: f64) -> String {
        format_text(&Value::Float(f), DataType::Float8).unwrap()
    }
    fn f4(f: f32) -> String {
        format_text(&Value::Float(f as f64), DataType::Float4).unwrap()
    }

    #[test]
    // Literals spell out exact binary values to test tie rounding, so more digits than f32 keeps.
    #[allow(clippy::excessive_precision)]
    fn floats_like_postgres() {
        // select 1e20::float8, 0.1::float8, 1.5e-5::float8, '-0'::float8, 1e15::float8,
        //        1e14::float8, 0.0001::float8, 0.00001::float8
        assert_eq!(f8(1e20), "1e+20");
        assert_eq!(f8(0.1), "0.1");
        assert_eq!(f8(1.5e-5), "1.5e-05");
        assert_eq!(f8(-0.0), "-0");
        assert_eq!(f8(1e15), "1e+15");
        assert_eq!(f8(1e14), "100000000000000");
        assert_eq!(f8(0.0001), "0.0001");
        assert_eq!(f8(0.00001), "1e-05");
        // select 'Infinity'::float8, '-inf'::float8, 'nan'::float8, 1e308::float8, 5e-324::float8
        assert_eq!(f8(f64::INFINITY), "Infinity");
        assert_eq!(f8(f64::NEG_INFINITY), "-Infinity");
        assert_eq!(f8(f64::NAN), "NaN");
        assert_eq!(f8(1e308), "1e+308");
        assert_eq!(f8(5e-324), "5e-324");
        // select 123456789012345678::float8::text → 1.2345678901234568e+17; 3.0000000000000004
        assert_eq!(f8(123456789012345678.0), "1.2345678901234568e+17");
        assert_eq!(f8(3.0000000000000004), "3.0000000000000004");
        assert_eq!(f8(-1.5), "-1.5");
        // select 123456::float4, 1234567::float4, 1.23456789::numeric::float4, 3.4e38::float4
        assert_eq!(f4(123456.0), "123456");
        assert_eq!(f4(1234567.0), "1.234567e+06");
        assert_eq!(f4(1.2345679), "1.2345679");
        assert_eq!(f4(3.4e38), "3.4e+38");
        assert_eq!(f4(0.1), "0.1");
        // select '256034.6281661729'::float4, '-4164767.35'::numeric::float4 → 256034.62, -4.1647672e+06
        assert_eq!(f4(256034.625), "256034.62");
        assert_eq!(f4(-4164767.25), "-4.1647672e+06");
    }

    #[test]
    fn other_types() {
        let n = Decimal::from_str("1.50").unwrap();
        assert_eq!(
            format_text(&Value::Numeric(n), DataType::Numeric(None)).unwrap(),
            "1.50"
        );
        let z = Decimal::from_str("-0.00").unwrap();
        assert_eq!(format_numeric(&z), "0.00");
        assert_eq!(
            format_text(&Value::Bool(true), DataType::Bool).unwrap(),
            "t"
        );
        assert_eq!(
            format_text(&Value::Bytea(vec![1, 2, 255]), DataType::Bytea).unwrap(),
            "\\x0102ff"
        );
        assert_eq!(
            format_text(&Value::Bytea(vec![]), DataType::Bytea).unwrap(),
            "\\x"
        );
        assert_eq!(
            format_text(&Value::Text("ab".into()), DataType::Char(5)).unwrap(),
            "ab   "
        );
        assert_eq!(format_text(&Value::Null, DataType::Int4), None);
        let u = uuid::Uuid::from_str("A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11").unwrap();
        assert_eq!(
            format_text(&Value::Uuid(u), DataType::Uuid).unwrap(),
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
        );
    }

    #[test]
    fn dates_and_timestamps() {
        // select '2024-01-31'::date, '4714-11-24 BC'::date, '5874897-12-31'::date,
        //        '0001-01-01 BC'::date
        assert_eq!(format_date(19_753), "2024-01-31");
        assert_eq!(format_date(datetime::DATE_MIN), "4714-11-24 BC");
        assert_eq!(format_date(datetime::DATE_MAX), "5874897-12-31");
        assert_eq!(
            format_date(datetime::days_from_civil(0, 1, 1) as i32),
            "0001-01-01 BC"
        );
        assert_eq!(format_date(DATE_POS_INFINITY), "infinity");
        // select '2024-01-31 10:00:00.5'::timestamp, '0001-01-01 00:00:00 BC'::timestamp
        let t = 19_753 * USECS_PER_DAY + 10 * 3_600_000_000;
        assert_eq!(format_timestamp(t), "2024-01-31 10:00:00");
        assert_eq!(format_timestamp(t + 500_000), "2024-01-31 10:00:00.5");
        assert_eq!(format_timestamp(t + 123_457), "2024-01-31 10:00:00.123457");
        assert_eq!(format_timestamp(-1), "1969-12-31 23:59:59.999999");
        let bc = datetime::days_from_civil(0, 1, 1) * USECS_PER_DAY;
        assert_eq!(format_timestamp(bc), "0001-01-01 00:00:00 BC");
        assert_eq!(format_timestamp(TS_NEG_INFINITY), "-infinity");
    }
}
