//! PostgreSQL text input (`typinput`) for every supported type.
//!
//! These are the functions behind `'...'::type`, text-format bind parameters and COPY: they accept
//! what PostgreSQL's input functions accept and fail with the same SQLSTATE and wording —
//! 22P02 `invalid input syntax for type integer: "abc"`, 22003 `value "99999" is out of range
//! for type smallint`, 22007 / 22008 for dates, 22001 for over-long `varchar(n)` / `char(n)`.
//!
//! Notes on scope:
//! - whitespace means C `isspace` (space, tab, newline, CR, VT, FF), as in PostgreSQL;
//! - `numeric` is limited by `rust_decimal`: more than 28 fraction digits are rounded half away
//!   from zero, integer parts beyond ~7.9e28 fail with 22003, and NaN / Infinity fail with 0A000;
//! - date/time input covers ISO 8601 (`2024-01-31`, `T` separator, fractional seconds, trailing
//!   time zones which `timestamp without time zone` ignores, like PostgreSQL), `YYYYMMDD`,
//!   `MM/DD/YYYY` (DateStyle MDY, the default), month names, `BC`/`AD`, `AM`/`PM` and the special
//!   words `epoch`, `infinity`, `-infinity`, `now`, `today`, `tomorrow`, `yesterday` (in UTC);
//! - hexadecimal float input (`0x1p3`), accepted by C `strtod`, is not supported.
//!
//! Every parser works on `char`s or ASCII bytes only, so no input can make it slice inside a
//! multibyte character, and numbers are accumulated with overflow checks.

use std::str::FromStr;

use rust_decimal::Decimal;

use super::cast::apply_numeric_typmod;
use super::datetime::{self, USECS_PER_DAY, USECS_PER_SEC};
use super::numeric::{BigDec, BigUint, MAX_SCALE, overflow_error};
use super::{DataType, Value};
use crate::error::{SqlError, SqlResult, sqlstate};

/// C `isspace` in the "C" locale.
pub fn is_pg_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\u{0b}' | '\u{0c}')
}

fn trim_pg(s: &str) -> &str {
    s.trim_matches(is_pg_space)
}

/// Parses `s` as a value of type `ty` with PostgreSQL's input function semantics.
pub fn parse_text(s: &str, ty: DataType) -> SqlResult<Value> {
    match ty {
        DataType::Bool => parse_bool(s).map(Value::Bool),
        DataType::Int2 => parse_int(s, i16::MIN as i64, i16::MAX as i64, ty).map(Value::Int),
        DataType::Int4 => parse_int(s, i32::MIN as i64, i32::MAX as i64, ty).map(Value::Int),
        DataType::Int8 => parse_int(s, i64::MIN, i64::MAX, ty).map(Value::Int),
        DataType::Float4 => parse_float4(s).map(|f| Value::Float(f as f64)),
        DataType::Float8 => parse_float8(s).map(Value::Float),
        DataType::Numeric(typmod) => {
            let d = parse_numeric(s)?;
            apply_numeric_typmod(d, typmod).map(Value::Numeric)
        }
        // Length modifiers are not applied here: like PostgreSQL (which calls input functions
        // with typmod -1 for casts), `varchar(n)` / `char(n)` limits are a separate length
        // coercion done by `cast`, where the context decides between truncation and 22001.
        DataType::Text | DataType::Unknown | DataType::Varchar(_) | DataType::Char(_) => {
            Ok(Value::Text(s.to_string()))
        }
        DataType::Bytea => parse_bytea(s).map(Value::Bytea),
        DataType::Date => parse_date(s).map(Value::Date),
        DataType::Timestamp => parse_timestamp(s).map(Value::Timestamp),
        DataType::Uuid => parse_uuid(s).map(Value::Uuid),
    }
}

/// `boolin`: t/true/y/yes/on/1 and f/false/n/no/off/0, any unambiguous prefix, any case.
pub fn parse_bool(s: &str) -> SqlResult<bool> {
    let t = trim_pg(s).to_ascii_lowercase();
    let is_prefix = |word: &str, min: usize| t.len() >= min && word.starts_with(t.as_str());
    let r = if is_prefix("true", 1) || is_prefix("yes", 1) || t == "on" || t == "1" {
        Some(true)
    } else if is_prefix("false", 1) || is_prefix("no", 1) || is_prefix("off", 2) || t == "0" {
        Some(false)
    } else {
        None
    };
    r.ok_or_else(|| SqlError::invalid_text("boolean", s))
}

/// `int2in` / `int4in` / `int8in`.
pub fn parse_int(s: &str, min: i64, max: i64, ty: DataType) -> SqlResult<i64> {
    let t = trim_pg(s);
    let (neg, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SqlError::invalid_text(ty.name(), s));
    }
    let out_of_range = || {
        SqlError::new(
            sqlstate::NUMERIC_VALUE_OUT_OF_RANGE,
            format!("value \"{s}\" is out of range for type {}", ty.name()),
        )
    };
    // Accumulate negatively so that i64::MIN parses without overflow.
    let mut acc: i64 = 0;
    for b in digits.bytes() {
        acc = acc
            .checked_mul(10)
            .and_then(|a| a.checked_sub((b - b'0') as i64))
            .ok_or_else(out_of_range)?;
    }
    let v = if neg {
        acc
    } else {
        acc.checked_neg().ok_or_else(out_of_range)?
    };
    if v < min || v > max {
        return Err(out_of_range());
    }
    Ok(v)
}

/// Checks strtod-style decimal syntax; returns whether any mantissa digit is nonzero.
fn float_syntax(t: &str) -> Option<bool> {
    let b = t.as_bytes();
    let mut i = 0;
    if matches!(b.first(), Some(b'+' | b'-')) {
        i = 1;
    }
    let mut digits = 0;
    let mut nonzero = false;
    while i < b.len() && b[i].is_ascii_digit() {
        nonzero |= b[i] != b'0';
        digits += 1;
        i += 1;
    }
    if i < b.len() && b[i] == b'.' {
        i += 1;
        while i < b.len() && b[i].is_ascii_digit() {
            nonzero |= b[i] != b'0';
            digits += 1;
            i += 1;
        }
    }
    if digits == 0 {
        return None;
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return None;
        }
    }
    (i == b.len()).then_some(nonzero)
}

fn special_float(t: &str) -> Option<f64> {
    match t.to_ascii_lowercase().as_str() {
        "nan" | "+nan" | "-nan" => Some(f64::NAN),
        "infinity" | "+infinity" | "inf" | "+inf" => Some(f64::INFINITY),
        "-infinity" | "-inf" => Some(f64::NEG_INFINITY),
        _ => None,
    }
}

fn float_out_of_range(t: &str, type_name: &str) -> SqlError {
    SqlError::new(
        sqlstate::NUMERIC_VALUE_OUT_OF_RANGE,
        format!("\"{t}\" is out of range for type {type_name}"),
    )
}

/// `float8in`.
pub fn parse_float8(s: &str) -> SqlResult<f64> {
    let t = trim_pg(s);
    if let Some(f) = special_float(t) {
        return Ok(f);
    }
    let nonzero = float_syntax(t).ok_or_else(|| SqlError::invalid_text("double precision", s))?;
    let f: f64 = t
        .parse()
        .map_err(|_| SqlError::invalid_text("double precision", s))?;
    // Like strtod's ERANGE: overflow to infinity or underflow to exactly zero is an error, a
    // denormal result is not.
    if f.is_infinite() || (f == 0.0 && nonzero) {
        return Err(float_out_of_range(t, "double precision"));
    }
    Ok(f)
}

/// `float4in`: parsed directly as `f32` (correctly rounded, no double rounding via `f64`).
pub fn parse_float4(s: &str) -> SqlResult<f32> {
    let t = trim_pg(s);
    if let Some(f) = special_float(t) {
        return Ok(f as f32);
    }
    let nonzero = float_syntax(t).ok_or_else(|| SqlError::invalid_text("real", s))?;
    let f: f32 = t.parse().map_err(|_| SqlError::invalid_text("real", s))?;
    if f.is_infinite() || (f == 0.0 && nonzero) {
        return Err(float_out_of_range(t, "real"));
    }
    Ok(f)
}

/// `numeric_in` (see the module notes for the limits of the representation).
pub fn parse_numeric(s: &str) -> SqlResult<Decimal> {
    let t = trim_pg(s);
    let invalid = || SqlError::invalid_text("numeric", s);
    let lower = t.to_ascii_lowercase();
    if matches!(
        lower.as_str(),
        "nan" | "infinity" | "+infinity" | "-infinity" | "inf" | "+inf" | "-inf"
    ) {
        return Err(SqlError::unsupported(format!("numeric value \"{t}\"")));
    }
    let b = t.as_bytes();
    let mut i = 0;
    let neg = match b.first() {
        Some(b'-') => {
            i = 1;
            true
        }
        Some(b'+') => {
            i = 1;
            false
        }
        _ => false,
    };
    let mut digits = String::new();
    let mut frac_digits: i64 = 0;
    let mut seen_point = false;
    while i < b.len() {
        match b[i] {
            d @ b'0'..=b'9' => {
                digits.push(d as char);
                if seen_point {
                    frac_digits += 1;
                }
            }
            b'.' if !seen_point => seen_point = true,
            _ => break,
        }
        i += 1;
    }
    if digits.is_empty() {
        return Err(invalid());
    }
    let mut exponent: i64 = 0;
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        let exp_neg = match b.get(i) {
            Some(b'-') => {
                i += 1;
                true
            }
            Some(b'+') => {
                i += 1;
                false
            }
            _ => false,
        };
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            // Saturate: anything this large is out of range either way.
            exponent = (exponent * 10 + (b[i] - b'0') as i64).min(1 << 40);
            i += 1;
        }
        if i == start {
            return Err(invalid());
        }
        if exp_neg {
            exponent = -exponent;
        }
    }
    if i != b.len() {
        return Err(invalid());
    }
    decimal_from_digits(neg, &digits, frac_digits - exponent)
}

/// Builds `±digits × 10^-scale` (scale may be negative), rounding to at most 28 fraction digits
/// before any big arithmetic so absurd exponents cannot allocate huge numbers.
pub(crate) fn decimal_from_digits(neg: bool, digits: &str, scale: i64) -> SqlResult<Decimal> {
    let trimmed = digits.trim_start_matches('0');
    let sig = trimmed.len() as i64;
    if sig == 0 {
        let scale = scale.clamp(0, MAX_SCALE as i64) as u32;
        return Ok(Decimal::new(0, scale));
    }
    // Digits before the decimal point.
    if sig - scale > 29 {
        return Err(overflow_error());
    }
    let (kept, scale) = if scale > MAX_SCALE as i64 {
        let drop = scale - MAX_SCALE as i64;
        if drop > sig {
            return Ok(Decimal::new(0, MAX_SCALE));
        }
        let keep = (sig - drop) as usize;
        let round_up = trimmed.as_bytes()[keep] >= b'5';
        let mut mag = parse_digits(&trimmed[..keep]);
        if round_up {
            mag.add_small(1);
        }
        (mag, MAX_SCALE)
    } else if scale < 0 {
        let mut mag = parse_digits(trimmed);
        mag = mag.mul(&BigUint::pow10((-scale) as u32));
        (mag, 0)
    } else {
        (parse_digits(trimmed), scale as u32)
    };
    BigDec::new(neg, kept, scale).to_decimal()
}

fn parse_digits(ascii_digits: &str) -> BigUint {
    let mut mag = BigUint::zero();
    for b in ascii_digits.bytes() {
        mag.mul_small(10);
        mag.add_small((b - b'0') as u32);
    }
    mag
}

/// `byteain`: `\x` hex format or the traditional escape format.
pub fn parse_bytea(s: &str) -> SqlResult<Vec<u8>> {
    if let Some(hex) = s.strip_prefix("\\x") {
        let mut out = Vec::with_capacity(hex.len() / 2);
        let mut chars = hex.chars();
        loop {
            let c1 = match chars.next() {
                None => break,
                Some(c) if is_pg_space(c) => continue,
                Some(c) => c,
            };
            let hi = hex_value(c1)?;
            let lo = match chars.next() {
                None => {
                    return Err(SqlError::new(
                        sqlstate::INVALID_PARAMETER_VALUE,
                        "invalid hexadecimal data: odd number of digits",
                    ));
                }
                Some(c) => hex_value(c)?,
            };
            out.push((hi << 4) | lo);
        }
        return Ok(out);
    }
    let invalid = || {
        SqlError::new(
            sqlstate::INVALID_TEXT_REPRESENTATION,
            "invalid input syntax for type bytea",
        )
    };
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            out.push(b[i]);
            i += 1;
        } else if b.get(i + 1) == Some(&b'\\') {
            out.push(b'\\');
            i += 2;
        } else {
            let oct = b.get(i + 1..i + 4).ok_or_else(invalid)?;
            if !(b'0'..=b'3').contains(&oct[0])
                || !(b'0'..=b'7').contains(&oct[1])
                || !(b'0'..=b'7').contains(&oct[2])
            {
                return Err(invalid());
            }
            out.push(((oct[0] - b'0') << 6) | ((oct[1] - b'0') << 3) | (oct[2] - b'0'));
            i += 4;
        }
    }
    Ok(out)
}

fn hex_value(c: char) -> SqlResult<u8> {
    c.to_digit(16).map(|d| d as u8).ok_or_else(|| {
        SqlError::new(
            sqlstate::INVALID_PARAMETER_VALUE,
            format!("invalid hexadecimal digit: \"{c}\""),
        )
    })
}

/// `uuid_in`: 32 hex digits, optionally in braces, with a hyphen allowed after any group of
/// four digits (exactly PostgreSQL's rule).
pub fn parse_uuid(s: &str) -> SqlResult<uuid::Uuid> {
    let invalid = || SqlError::invalid_text("uuid", s);
    let b = s.as_bytes();
    let mut i = 0;
    let braces = b.first() == Some(&b'{');
    if braces {
        i = 1;
    }
    let mut bytes = [0u8; 16];
    for (n, byte) in bytes.iter_mut().enumerate() {
        let pair = b.get(i..i + 2).ok_or_else(invalid)?;
        let hi = (pair[0] as char).to_digit(16).ok_or_else(invalid)?;
        let lo = (pair[1] as char).to_digit(16).ok_or_else(invalid)?;
        *byte = (hi * 16 + lo) as u8;
        i += 2;
        if b.get(i) == Some(&b'-') && n % 2 == 1 && n < 15 {
            i += 1;
        }
    }
    if braces {
        if b.get(i) != Some(&b'}') {
            return Err(invalid());
        }
        i += 1;
    }
    if i != b.len() {
        return Err(invalid());
    }
    Ok(uuid::Uuid::from_bytes(bytes))
}

// ---------------------------------------------------------------------------------------------
// Dates and timestamps
// ---------------------------------------------------------------------------------------------

enum DtError {
    Syntax,
    FieldOverflow,
}

enum Special {
    Epoch,
    PosInfinity,
    NegInfinity,
    Now,
    Today,
    Tomorrow,
    Yesterday,
}

/// A parsed date/time string before conversion to days or microseconds.
struct DtFields {
    special: Option<Special>,
    /// Astronomical year, month, day.
    date: Option<(i64, u32, u32)>,
    /// Microseconds since midnight; may be exactly one day for `24:00:00` or carry from `:60`.
    time: Option<i64>,
}

enum Token {
    Number(String),
    /// Digits separated by `-`, `/` or `.`.
    DateParts(Vec<String>, char),
    Time(String),
    Word(String),
    /// A `+hh[:mm]` / `-hh[:mm]` zone offset.
    Offset,
}

fn tokenize(s: &str) -> Result<Vec<Token>, DtError> {
    let chars: Vec<char> = s.chars().flat_map(char::to_lowercase).collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if is_pg_space(c) || c == ',' {
            i += 1;
        } else if c.is_ascii_digit() {
            let start = i;
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            match chars.get(i) {
                Some(':') => {
                    while i < chars.len()
                        && (chars[i].is_ascii_digit() || chars[i] == ':' || chars[i] == '.')
                    {
                        i += 1;
                    }
                    tokens.push(Token::Time(chars[start..i].iter().collect()));
                }
                Some(&sep @ ('-' | '/' | '.')) => {
                    let mut parts = vec![chars[start..i].iter().collect::<String>()];
                    while chars.get(i) == Some(&sep) {
                        i += 1;
                        let p = i;
                        while i < chars.len() && chars[i].is_ascii_digit() {
                            i += 1;
                        }
                        if p == i {
                            return Err(DtError::Syntax);
                        }
                        parts.push(chars[p..i].iter().collect());
                    }
                    tokens.push(Token::DateParts(parts, sep));
                }
                _ => tokens.push(Token::Number(chars[start..i].iter().collect())),
            }
        } else if c.is_alphabetic() {
            let start = i;
            while i < chars.len() && chars[i].is_alphabetic() {
                i += 1;
            }
            tokens.push(Token::Word(chars[start..i].iter().collect()));
        } else if c == '+' || c == '-' {
            if chars.get(i + 1).is_some_and(|c| c.is_ascii_digit()) {
                i += 1;
                while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == ':') {
                    i += 1;
                }
                tokens.push(Token::Offset);
            } else if chars.get(i + 1).is_some_and(|c| c.is_alphabetic()) {
                let start = i;
                i += 1;
                while i < chars.len() && chars[i].is_alphabetic() {
                    i += 1;
                }
                tokens.push(Token::Word(chars[start..i].iter().collect()));
            } else {
                return Err(DtError::Syntax);
            }
        } else {
            return Err(DtError::Syntax);
        }
    }
    Ok(tokens)
}

fn month_from_name(w: &str) -> Option<u32> {
    const MONTHS: [&str; 12] = [
        "january",
        "february",
        "march",
        "april",
        "may",
        "june",
        "july",
        "august",
        "september",
        "october",
        "november",
        "december",
    ];
    MONTHS
        .iter()
        .position(|m| {
            *m == w || (w.len() == 3 && m.starts_with(w)) || (w == "sept" && *m == "september")
        })
        .map(|i| i as u32 + 1)
}

fn is_weekday_name(w: &str) -> bool {
    const DAYS: [&str; 7] = [
        "sunday",
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
    ];
    DAYS.iter()
        .any(|d| *d == w || (w.len() == 3 && d.starts_with(w)))
}

fn number(s: &str) -> Result<i64, DtError> {
    // Fields longer than this are nonsense and would overflow; PostgreSQL also rejects them.
    if s.is_empty() {
        return Err(DtError::Syntax);
    }
    if s.len() > 9 {
        return Err(DtError::FieldOverflow);
    }
    s.parse().map_err(|_| DtError::Syntax)
}

/// Two-digit years mean 1970..2069, as in PostgreSQL.
fn adjust_year(year: i64, digits: usize) -> i64 {
    if digits <= 2 {
        if year < 70 { year + 2000 } else { year + 1900 }
    } else {
        year
    }
}

fn parse_time(s: &str) -> Result<i64, DtError> {
    let mut parts = s.split(':');
    let h = number(parts.next().unwrap_or(""))?;
    let m = number(parts.next().ok_or(DtError::Syntax)?)?;
    let sec_part = parts.next();
    if parts.next().is_some() {
        return Err(DtError::Syntax);
    }
    let (sec, usec) = match sec_part {
        None => (0, 0),
        Some(sp) => {
            let (whole, frac) = match sp.split_once('.') {
                Some((w, f)) => (w, Some(f)),
                None => (sp, None),
            };
            let sec = number(whole)?;
            let usec = match frac {
                None => 0,
                Some(f) => {
                    if !f.bytes().all(|b| b.is_ascii_digit()) {
                        return Err(DtError::Syntax);
                    }
                    // PostgreSQL rounds the fraction with rint(frac * 1e6).
                    let x: f64 = format!("0.{f}").parse().map_err(|_| DtError::Syntax)?;
                    (x * 1e6).round_ties_even() as i64
                }
            };
            (sec, usec)
        }
    };
    if m > 59 || sec > 60 || h > 24 || (h == 24 && (m > 0 || sec > 0 || usec > 0)) {
        return Err(DtError::FieldOverflow);
    }
    Ok(((h * 60 + m) * 60 + sec) * USECS_PER_SEC + usec)
}

fn decode_datetime(s: &str) -> Result<DtFields, DtError> {
    let tokens = tokenize(s)?;
    let mut fields = DtFields {
        special: None,
        date: None,
        time: None,
    };
    let mut month_name: Option<u32> = None;
    let mut loose: Vec<String> = Vec::new();
    let mut bc = false;
    let mut ampm: Option<bool> = None;
    let mut date_parts: Option<(String, String, String)> = None;
    for (idx, tok) in tokens.iter().enumerate() {
        match tok {
            Token::Word(w) => match w.as_str() {
                "epoch" => fields.special = Some(Special::Epoch),
                "infinity" | "+infinity" => fields.special = Some(Special::PosInfinity),
                "-infinity" => fields.special = Some(Special::NegInfinity),
                "now" => fields.special = Some(Special::Now),
                "today" => fields.special = Some(Special::Today),
                "tomorrow" => fields.special = Some(Special::Tomorrow),
                "yesterday" => fields.special = Some(Special::Yesterday),
                "bc" => bc = true,
                "ad" => {}
                "am" => ampm = Some(false),
                "pm" => ampm = Some(true),
                // ISO 8601 date/time separator, only meaningful right before a time.
                "t" if matches!(tokens.get(idx + 1), Some(Token::Time(_) | Token::Number(_))) => {}
                "z" | "utc" | "gmt" | "zulu" => {}
                w if is_weekday_name(w) => {}
                w => match month_from_name(w) {
                    Some(m) if month_name.is_none() => month_name = Some(m),
                    _ => return Err(DtError::Syntax),
                },
            },
            Token::Time(t) => {
                if fields.time.is_some() {
                    return Err(DtError::Syntax);
                }
                fields.time = Some(parse_time(t)?);
            }
            Token::Offset => {
                if fields.time.is_none() && date_parts.is_none() {
                    return Err(DtError::Syntax);
                }
            }
            Token::DateParts(parts, sep) => {
                if date_parts.is_some() || parts.len() != 3 {
                    return Err(DtError::Syntax);
                }
                // DateStyle MDY: a first field of three or more digits is a year (Y-M-D),
                // otherwise the order is M-D-Y.
                let (y, m, d) = if parts[0].len() >= 3 {
                    (parts[0].clone(), parts[1].clone(), parts[2].clone())
                } else if *sep == '.' && parts[0].len() < 3 {
                    return Err(DtError::Syntax);
                } else {
                    (parts[2].clone(), parts[0].clone(), parts[1].clone())
                };
                date_parts = Some((y, m, d));
            }
            Token::Number(n) => {
                if n.len() == 8 && date_parts.is_none() && month_name.is_none() {
                    date_parts =
                        Some((n[..4].to_string(), n[4..6].to_string(), n[6..].to_string()));
                } else {
                    loose.push(n.clone());
                }
            }
        }
    }
    if fields.special.is_some() {
        if tokens.len() != 1 {
            return Err(DtError::Syntax);
        }
        return Ok(fields);
    }
    let (year, year_digits, month, day) = match (date_parts, month_name) {
        (Some((y, m, d)), None) if loose.is_empty() => {
            let year = number(&y)?;
            (year, y.len(), number(&m)?, number(&d)?)
        }
        (None, Some(m)) if loose.len() == 2 => {
            // "Jan 5 2024", "5 Jan 2024", "2024 Jan 5": a field longer than two digits is the
            // year, otherwise day comes first.
            let (d, y) = if loose[0].len() > 2 {
                (&loose[1], &loose[0])
            } else {
                (&loose[0], &loose[1])
            };
            (number(y)?, y.len(), m as i64, number(d)?)
        }
        _ => return Err(DtError::Syntax),
    };
    let mut year = adjust_year(year, year_digits);
    if year == 0 && year_digits > 2 {
        return Err(DtError::FieldOverflow);
    }
    if bc {
        year = 1 - year;
    }
    if !(1..=12).contains(&month) {
        return Err(DtError::FieldOverflow);
    }
    let month = month as u32;
    if day < 1 || day > datetime::days_in_month(year, month) as i64 {
        return Err(DtError::FieldOverflow);
    }
    if let (Some(pm), Some(t)) = (ampm, fields.time) {
        let hour = t / (3600 * USECS_PER_SEC);
        if !(0..=12).contains(&hour) {
            return Err(DtError::FieldOverflow);
        }
        let base = t - hour * 3600 * USECS_PER_SEC;
        let hour = match (pm, hour) {
            (true, h) if h < 12 => h + 12,
            (false, 12) => 0,
            (_, h) => h,
        };
        fields.time = Some(base + hour * 3600 * USECS_PER_SEC);
    }
    fields.date = Some((year, month, day as u32));
    Ok(fields)
}

fn dt_error(e: DtError, type_name: &str, s: &str) -> SqlError {
    match e {
        DtError::Syntax => SqlError::new(
            sqlstate::INVALID_DATETIME_FORMAT,
            format!("invalid input syntax for type {type_name}: \"{s}\""),
        ),
        DtError::FieldOverflow => SqlError::new(
            sqlstate::DATETIME_FIELD_OVERFLOW,
            format!("date/time field value out of range: \"{s}\""),
        ),
    }
}

/// `date_in`.
pub fn parse_date(s: &str) -> SqlResult<i32> {
    let f = decode_datetime(s).map_err(|e| dt_error(e, "date", s))?;
    let today = || datetime::today();
    let days: i64 = match f.special {
        Some(Special::Epoch) => 0,
        Some(Special::PosInfinity) => return Ok(datetime::DATE_POS_INFINITY),
        Some(Special::NegInfinity) => return Ok(datetime::DATE_NEG_INFINITY),
        Some(Special::Now | Special::Today) => today() as i64,
        Some(Special::Tomorrow) => today() as i64 + 1,
        Some(Special::Yesterday) => today() as i64 - 1,
        None => {
            let (y, m, d) = f.date.unwrap_or((1970, 1, 1));
            datetime::days_from_civil(y, m, d)
        }
    };
    match i32::try_from(days) {
        Ok(d) if datetime::date_is_finite(d) && datetime::date_in_range(d) => Ok(d),
        _ => Err(SqlError::new(
            sqlstate::DATETIME_FIELD_OVERFLOW,
            format!("date out of range: \"{s}\""),
        )),
    }
}

/// `timestamp_in` (time zones in the input are accepted and ignored, as PostgreSQL does for
/// `timestamp without time zone`).
pub fn parse_timestamp(s: &str) -> SqlResult<i64> {
    let f = decode_datetime(s).map_err(|e| dt_error(e, "timestamp", s))?;
    let today = || datetime::today() as i128 * USECS_PER_DAY as i128;
    let t: i128 = match f.special {
        Some(Special::Epoch) => 0,
        Some(Special::PosInfinity) => return Ok(datetime::TS_POS_INFINITY),
        Some(Special::NegInfinity) => return Ok(datetime::TS_NEG_INFINITY),
        Some(Special::Now) => datetime::now_micros() as i128,
        Some(Special::Today) => today(),
        Some(Special::Tomorrow) => today() + USECS_PER_DAY as i128,
        Some(Special::Yesterday) => today() - USECS_PER_DAY as i128,
        None => {
            let (y, m, d) = f.date.unwrap_or((1970, 1, 1));
            datetime::days_from_civil(y, m, d) as i128 * USECS_PER_DAY as i128
                + f.time.unwrap_or(0) as i128
        }
    };
    match i64::try_from(t) {
        Ok(t) if datetime::timestamp_is_finite(t) && datetime::timestamp_in_range(t) => Ok(t),
        _ => Err(SqlError::new(
            sqlstate::DATETIME_FIELD_OVERFLOW,
            format!("timestamp out of range: \"{s}\""),
        )),
    }
}

/// `Decimal::from_str` for trusted, already-validated text (tests and constants).
pub fn decimal_literal(s: &str) -> Option<Decimal> {
    Decimal::from_str(s).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::format::format_text;

    fn p(s: &str, ty: DataType) -> SqlResult<Value> {
        parse_text(s, ty)
    }
    fn show(s: &str, ty: DataType) -> String {
        format_text(&p(s, ty).unwrap(), ty).unwrap()
    }
    fn code(s: &str, ty: DataType) -> String {
        p(s, ty).unwrap_err().code
    }

    #[test]
    fn integers() {
        // select ' 12 '::int4, '+12'::int2, '-9223372036854775808'::int8
        assert_eq!(p(" 12 ", DataType::Int4).unwrap(), Value::Int(12));
        assert_eq!(p("+12", DataType::Int2).unwrap(), Value::Int(12));
        assert_eq!(
            p("-9223372036854775808", DataType::Int8).unwrap(),
            Value::Int(i64::MIN)
        );
        // select '99999'::int2 → value "99999" is out of range for type smallint
        let e = p("99999", DataType::Int2).unwrap_err();
        assert_eq!(e.code, "22003");
        assert_eq!(
            e.message,
            "value \"99999\" is out of range for type smallint"
        );
        assert_eq!(code("9223372036854775808", DataType::Int8), "22003");
        assert_eq!(code("99999999999999999999999", DataType::Int4), "22003");
        // select 'abc'::int4, ''::int4, '1.5'::int4, '0x10'::int4, '1_000'::int4 → 22P02
        let e = p("abc", DataType::Int4).unwrap_err();
        assert_eq!(e.message, "invalid input syntax for type integer: \"abc\"");
        for bad in ["", "1.5", "0x10", "1_000", "-", " + 1", "１"] {
            assert_eq!(code(bad, DataType::Int4), "22P02", "{bad}");
        }
    }

    #[test]
    fn booleans() {
        // select 'ye'::bool, 'of'::bool, 'tr'::bool, ' t '::bool, 'n'::bool → t f t t f
        for (s, v) in [
            ("ye", true),
            ("of", false),
            ("tr", true),
            (" t ", true),
            ("n", false),
        ] {
            assert_eq!(parse_bool(s).unwrap(), v, "{s}");
        }
        for (s, v) in [
            ("TRUE", true),
            ("on", true),
            ("1", true),
            ("off", false),
            ("0", false),
        ] {
            assert_eq!(parse_bool(s).unwrap(), v, "{s}");
        }
        // select 'o'::bool, '2'::bool, 'abc'::bool → invalid input syntax for type boolean
        for bad in ["o", "2", "abc", "", "truee", "yess"] {
            assert_eq!(code(bad, DataType::Bool), "22P02", "{bad}");
        }
    }

    #[test]
    fn numerics() {
        let n = DataType::Numeric(None);
        // select ' 1.5e3 '::numeric, '.5'::numeric, '5.'::numeric, '-0.00'::numeric,
        //        '1e-3'::numeric, '1.50e1'::numeric → 1500 0.5 5 0.00 0.001 15.0
        assert_eq!(show(" 1.5e3 ", n), "1500");
        assert_eq!(show(".5", n), "0.5");
        assert_eq!(show("5.", n), "5");
        assert_eq!(show("-0.00", n), "0.00");
        assert_eq!(show("1e-3", n), "0.001");
        assert_eq!(show("1.50e1", n), "15.0");
        assert_eq!(show("0001.10", n), "1.10");
        // select 'abc'::numeric, ' 1_0'::numeric → 22P02
        for bad in ["abc", " 1_0", "1e", ".", "1..2", "--1", "1e+"] {
            assert_eq!(code(bad, n), "22P02", "{bad}");
        }
        assert_eq!(code("NaN", n), "0A000");
        assert_eq!(code("1e100000", n), "22003");
        assert_eq!(show("1e-100000", n), "0.0000000000000000000000000000");
        // select 12.345::numeric(4,2), '1.5'::numeric(3,0) → 12.35, 2
        assert_eq!(show("12.345", DataType::Numeric(Some((4, 2)))), "12.35");
        assert_eq!(show("1.5", DataType::Numeric(Some((3, 0)))), "2");
        assert_eq!(code("999.995", DataType::Numeric(Some((5, 2)))), "22003");
    }

    #[test]
    fn floats() {
        let f = DataType::Float8;
        // select 'Infinity'::float8, '-inf'::float8, ' nan '::float8, '+inf'::float8
        assert_eq!(show("Infinity", f), "Infinity");
        assert_eq!(show("-inf", f), "-Infinity");
        assert_eq!(show(" nan ", f), "NaN");
        assert_eq!(show("+inf", f), "Infinity");
        // select '4.9e-324'::float8, '2.5e-324'::float8, '1.4e-45'::float4 → 5e-324 5e-324 1e-45
        assert_eq!(show("4.9e-324", f), "5e-324");
        assert_eq!(show("2.5e-324", f), "5e-324");
        assert_eq!(show("1.4e-45", DataType::Float4), "1e-45");
        assert_eq!(show("1.", f), "1");
        assert_eq!(show(".5", f), "0.5");
        // select '1e400'::float8 → "1e400" is out of range for type double precision
        let e = p(" 1e400 ", f).unwrap_err();
        assert_eq!(
            (e.code.as_str(), e.message.as_str()),
            (
                "22003",
                "\"1e400\" is out of range for type double precision"
            )
        );
        assert_eq!(code("1e-400", f), "22003");
        assert_eq!(code("1e39", DataType::Float4), "22003");
        assert_eq!(code("1e-50", DataType::Float4), "22003");
        assert_eq!(code("5e", f), "22P02");
        assert_eq!(code("abc", f), "22P02");
        assert_eq!(code("", f), "22P02");
        assert_eq!(show("0", f), "0");
        assert_eq!(show("-0", f), "-0");
    }

    #[test]
    fn strings_and_bytea() {
        // Length limits belong to the cast step (see cast.rs tests).
        assert_eq!(
            p("abcd", DataType::Varchar(Some(3))).unwrap(),
            Value::Text("abcd".into())
        );
        assert_eq!(show("ab", DataType::Char(4)), "ab  ");
        assert_eq!(show("héllo", DataType::Char(5)), "héllo");
        // select '\x0102'::bytea, 'a\001\\b'::bytea, 'a\0012'::bytea, '\x01 02'::bytea, 'é'::bytea
        assert_eq!(parse_bytea("\\x0102").unwrap(), vec![1, 2]);
        assert_eq!(
            parse_bytea("a\\001\\\\b").unwrap(),
            vec![0x61, 1, 0x5c, 0x62]
        );
        assert_eq!(parse_bytea("a\\0012").unwrap(), vec![0x61, 1, 0x32]);
        assert_eq!(parse_bytea("\\x01 02").unwrap(), vec![1, 2]);
        assert_eq!(parse_bytea("é").unwrap(), vec![0xc3, 0xa9]);
        assert_eq!(parse_bytea("\\x").unwrap(), Vec::<u8>::new());
        // select '\x0g'::bytea → invalid hexadecimal digit: "g"; '\x012'::bytea → odd number
        let e = parse_bytea("\\x0g").unwrap_err();
        assert_eq!(
            (e.code.as_str(), e.message.as_str()),
            ("22023", "invalid hexadecimal digit: \"g\"")
        );
        assert_eq!(parse_bytea("\\x012").unwrap_err().code, "22023");
        assert_eq!(parse_bytea("\\x0 1").unwrap_err().code, "22023");
        assert_eq!(
            parse_bytea("\\xé").unwrap_err().message,
            "invalid hexadecimal digit: \"é\""
        );
        // select 'a\9'::bytea, 'a\'::bytea, 'a\400'::bytea, 'a\01'::bytea → 22P02
        for bad in ["a\\9", "a\\", "a\\400", "a\\01", "a\\x01", "\\X01"] {
            assert_eq!(parse_bytea(bad).unwrap_err().code, "22P02", "{bad}");
        }
    }

    #[test]
    fn uuids() {
        // select '{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}'::uuid,
        //        'A0EEBC999C0B4EF8BB6D6BB9BD380A11'::uuid,
        //        'a0ee-bc99-9c0b-4ef8-bb6d-6bb9-bd38-0a11'::uuid,
        //        'a0eebc99-9c0b4ef8-bb6d6bb9-bd380a11'::uuid   → all the same uuid
        let want = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11";
        for s in [
            "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}",
            "A0EEBC999C0B4EF8BB6D6BB9BD380A11",
            "a0ee-bc99-9c0b-4ef8-bb6d-6bb9-bd38-0a11",
            "a0eebc99-9c0b4ef8-bb6d6bb9-bd380a11",
        ] {
            assert_eq!(show(s, DataType::Uuid), want, "{s}");
        }
        // leading/trailing blanks, short, odd hyphens → 22P02
        for bad in [
            " a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11 ",
            "abc",
            "a0e-ebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11-",
            "a0eebc999c0b4ef8bb6d6bb9bd380a1é",
        ] {
            assert_eq!(code(bad, DataType::Uuid), "22P02", "{bad}");
        }
    }

    #[test]
    fn dates() {
        let d = DataType::Date;
        // select '2024-1-5'::date, '20240105'::date, '2024/01/05'::date, 'Jan 5 2024'::date,
        //        '01/05/2024'::date, 'January 5, 2024'::date, ' 2024-01-31 '::date
        for s in [
            "2024-1-5",
            "20240105",
            "2024/01/05",
            "Jan 5 2024",
            "01/05/2024",
            "January 5, 2024",
            "5 Jan 2024",
        ] {
            assert_eq!(show(s, d), "2024-01-05", "{s}");
        }
        assert_eq!(show(" 2024-01-31 ", d), "2024-01-31");
        // select '2024-01-31 10:00'::date, '0001-01-01 BC'::date, '4714-11-24 BC'::date,
        //        '5874897-12-31'::date, '10000-01-01'::date, 'epoch'::date, 'infinity'::date
        assert_eq!(show("2024-01-31 10:00", d), "2024-01-31");
        assert_eq!(show("0001-01-01 BC", d), "0001-01-01 BC");
        assert_eq!(show("4714-11-24 BC", d), "4714-11-24 BC");
        assert_eq!(show("5874897-12-31", d), "5874897-12-31");
        assert_eq!(show("10000-01-01", d), "10000-01-01");
        assert_eq!(show("epoch", d), "1970-01-01");
        assert_eq!(show("infinity", d), "infinity");
        assert_eq!(show("-infinity", d), "-infinity");
        assert_eq!(show("2024-02-29", d), "2024-02-29");
        // select 'abc'::date → invalid input syntax for type date: "abc" (22007)
        let e = p("abc", d).unwrap_err();
        assert_eq!(
            (e.code.as_str(), e.message.as_str()),
            ("22007", "invalid input syntax for type date: \"abc\"")
        );
        // select '2024-02-30'::date, '0000-01-01'::date, '2024-13-01'::date, '24-01-05'::date
        //   → date/time field value out of range (22008)
        for bad in [
            "2024-02-30",
            "0000-01-01",
            "2024-13-01",
            "24-01-05",
            "2023-02-29",
        ] {
            assert_eq!(code(bad, d), "22008", "{bad}");
        }
        // select '5874898-01-01'::date, '4714-11-23 BC'::date → date out of range (22008)
        let e = p("5874898-01-01", d).unwrap_err();
        assert_eq!(e.message, "date out of range: \"5874898-01-01\"");
        assert_eq!(code("4714-11-23 BC", d), "22008");
        assert_eq!(code("99999999999-01-01", d), "22008");
        for bad in [
            "",
            "2024-01",
            "2024-01-01-01",
            "10:00",
            "2024-01-01 junk",
            "2024--01-01",
            "１９７０-01-01",
        ] {
            assert_eq!(code(bad, d), "22007", "{bad}");
        }
    }

    #[test]
    fn timestamps() {
        let t = DataType::Timestamp;
        // select '2024-01-31 10:00:00.5'::timestamp, '2024-01-31T10:00'::timestamp,
        //   '2024-01-31'::timestamp, '2024-01-31 10:00:00.1234567'::timestamp,
        //   '2024-01-31 24:00:00'::timestamp
        assert_eq!(show("2024-01-31 10:00:00.5", t), "2024-01-31 10:00:00.5");
        assert_eq!(show("2024-01-31T10:00", t), "2024-01-31 10:00:00");
        assert_eq!(show("2024-01-31", t), "2024-01-31 00:00:00");
        assert_eq!(
            show("2024-01-31 10:00:00.1234567", t),
            "2024-01-31 10:00:00.123457"
        );
        assert_eq!(show("2024-01-31 24:00:00", t), "2024-02-01 00:00:00");
        // select '2024-01-31 10:00:60'::timestamp, '2024-01-31 10:00:59.9999999'::timestamp
        assert_eq!(show("2024-01-31 10:00:60", t), "2024-01-31 10:01:00");
        assert_eq!(
            show("2024-01-31 10:00:59.9999999", t),
            "2024-01-31 10:01:00"
        );
        // select '2024-01-31 10:00:00+02'::timestamp, '2024-01-31 10:00:00Z'::timestamp,
        //        '2024-01-31 1:2:3'::timestamp
        assert_eq!(show("2024-01-31 10:00:00+02", t), "2024-01-31 10:00:00");
        assert_eq!(show("2024-01-31 10:00:00Z", t), "2024-01-31 10:00:00");
        assert_eq!(show("2024-01-31 10:00:00 -05:30", t), "2024-01-31 10:00:00");
        assert_eq!(show("2024-01-31 1:2:3", t), "2024-01-31 01:02:03");
        assert_eq!(show("2024-01-31 1:02 pm", t), "2024-01-31 13:02:00");
        assert_eq!(show("2024-01-31 12:02 am", t), "2024-01-31 00:02:00");
        // select '0001-01-01 00:00:00 BC'::timestamp, 'epoch'::timestamp, '-infinity'::timestamp
        assert_eq!(show("0001-01-01 00:00:00 BC", t), "0001-01-01 00:00:00 BC");
        assert_eq!(show("epoch", t), "1970-01-01 00:00:00");
        assert_eq!(show("-infinity", t), "-infinity");
        // select '2024-01-31 25:00:00'::timestamp, '2024-01-31 10:60:00'::timestamp → 22008
        assert_eq!(code("2024-01-31 25:00:00", t), "22008");
        assert_eq!(code("2024-01-31 10:60:00", t), "22008");
        assert_eq!(code("2024-01-31 24:00:01", t), "22008");
        // select 'abc'::timestamp → invalid input syntax for type timestamp: "abc"
        assert_eq!(
            p("abc", t).unwrap_err().message,
            "invalid input syntax for type timestamp: \"abc\""
        );
        // beyond this implementation's upper bound (PostgreSQL's is 294276-12-31)
        assert_eq!(code("294247-01-01 00:00:00", t), "22008");
        assert_eq!(
            show("294246-12-31 23:59:59.999999", t),
            "294246-12-31 23:59:59.999999"
        );
        assert_eq!(code("4714-11-23 23:59:59 BC", t), "22008");
        assert_eq!(code("2024-01-31 10:00:00:00", t), "22007");
    }
}
