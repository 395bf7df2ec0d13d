//! PostgreSQL binary wire format (`typsend` / `typreceive`) for every supported type.
//!
//! Clients that ask for binary results or send binary bind parameters (JDBC, tokio-postgres,
//! asyncpg, ...) use these layouts, all big-endian:
//! - `bool` one byte; `int2/int4/int8` at their widths; `float4/float8` IEEE 754;
//! - `numeric`: int16 ndigits, int16 weight, uint16 sign (0x0000 / 0x4000; 0xC000 NaN and
//!   0xD000 / 0xF000 ±Infinity are rejected as unsupported), uint16 dscale, then ndigits base-10000
//!   digits, most significant first, with no leading or trailing zero digits on output;
//! - `date`: int32 days since 2000-01-01; `timestamp`: int64 microseconds since 2000-01-01
//!   00:00:00; the extreme integers are ±infinity in both encodings, as here;
//! - text types: the UTF-8 bytes; `bytea`: the raw bytes; `uuid`: its 16 bytes.
//!
//! Decoding validates everything — exact lengths (22P03 `incorrect binary data format`), UTF-8
//! and NUL (22021, like PostgreSQL), numeric digits and sign (22P03), date/timestamp range
//! (22008) — and bounds the work done on huge numeric inputs, so no message can panic or stall
//! the server.

use rust_decimal::Decimal;

use super::datetime::{
    self, DATE_NEG_INFINITY, DATE_POS_INFINITY, PG_EPOCH_DAYS, PG_EPOCH_USECS, TS_NEG_INFINITY,
    TS_POS_INFINITY,
};
use super::format::{format_text, pad_to_chars};
use super::numeric::{BigDec, BigUint, MAX_SCALE, overflow_error};
use super::{DataType, Value};
use crate::error::{SqlError, SqlResult, sqlstate};

const NUMERIC_POS: u16 = 0x0000;
const NUMERIC_NEG: u16 = 0x4000;
const NUMERIC_NAN: u16 = 0xC000;
const NUMERIC_PINF: u16 = 0xD000;
const NUMERIC_NINF: u16 = 0xF000;

/// Appends the binary representation of a non-null value. NULL is encoded by the protocol
/// (length -1), so a `Value::Null` appends nothing.
pub fn encode_binary(v: &Value, ty: DataType, out: &mut Vec<u8>) {
    match (ty, v) {
        (_, Value::Null) => {}
        (DataType::Bool, Value::Bool(b)) => out.push(*b as u8),
        (DataType::Int2, Value::Int(i)) => out.extend_from_slice(&(*i as i16).to_be_bytes()),
        (DataType::Int4, Value::Int(i)) => out.extend_from_slice(&(*i as i32).to_be_bytes()),
        (DataType::Int8, Value::Int(i)) => out.extend_from_slice(&i.to_be_bytes()),
        (DataType::Float4, Value::Float(f)) => out.extend_from_slice(&(*f as f32).to_be_bytes()),
        (DataType::Float8, Value::Float(f)) => out.extend_from_slice(&f.to_be_bytes()),
        (DataType::Float4, Value::Int(i)) => out.extend_from_slice(&(*i as f32).to_be_bytes()),
        (DataType::Float8, Value::Int(i)) => out.extend_from_slice(&(*i as f64).to_be_bytes()),
        (DataType::Numeric(_), Value::Numeric(d)) => encode_numeric(d, out),
        (DataType::Numeric(_), Value::Int(i)) => encode_numeric(&Decimal::from(*i), out),
        (DataType::Char(n), Value::Text(s)) => out.extend_from_slice(pad_to_chars(s, n).as_bytes()),
        (_, Value::Text(s)) => out.extend_from_slice(s.as_bytes()),
        (_, Value::Bytea(b)) => out.extend_from_slice(b),
        (_, Value::Date(d)) => {
            let pg = match *d {
                DATE_POS_INFINITY | DATE_NEG_INFINITY => *d,
                d => d.saturating_sub(PG_EPOCH_DAYS),
            };
            out.extend_from_slice(&pg.to_be_bytes());
        }
        (_, Value::Timestamp(t)) => {
            let pg = match *t {
                TS_POS_INFINITY | TS_NEG_INFINITY => *t,
                t => t.saturating_sub(PG_EPOCH_USECS),
            };
            out.extend_from_slice(&pg.to_be_bytes());
        }
        (_, Value::Uuid(u)) => out.extend_from_slice(u.as_bytes()),
        // A value whose variant does not match its type (a binder bug): send its text form
        // rather than panicking or sending nothing.
        (_, other) => out.extend_from_slice(format_text(other, ty).unwrap_or_default().as_bytes()),
    }
}

fn encode_numeric(d: &Decimal, out: &mut Vec<u8>) {
    let scale = d.scale() as usize;
    let mut digits = d.mantissa().unsigned_abs().to_string();
    if digits == "0" {
        digits.clear();
    }
    // Align the fraction to whole base-10000 digits on the right and the integer part on the
    // left, so every 4-character chunk is one NBASE digit.
    let frac_pad = (4 - scale % 4) % 4;
    digits.extend(std::iter::repeat_n('0', frac_pad));
    let frac_groups = (scale + frac_pad) / 4;
    let left_pad = (4 - digits.len() % 4) % 4;
    let padded: String = std::iter::repeat_n('0', left_pad)
        .chain(digits.chars())
        .collect();
    let mut groups: Vec<i16> = padded
        .as_bytes()
        .chunks(4)
        .map(|c| c.iter().fold(0i16, |acc, b| acc * 10 + (b - b'0') as i16))
        .collect();
    let mut weight = groups.len() as i32 - frac_groups as i32 - 1;
    // Drop leading zero groups (each lowers the weight) and trailing ones (weight unchanged).
    let lead = groups.iter().take_while(|g| **g == 0).count();
    groups.drain(..lead);
    weight -= lead as i32;
    while groups.last() == Some(&0) {
        groups.pop();
    }
    if groups.is_empty() {
        weight = 0;
    }
    let sign = if d.is_sign_negative() && !groups.is_empty() {
        NUMERIC_NEG
    } else {
        NUMERIC_POS
    };
    out.extend_from_slice(&(groups.len() as i16).to_be_bytes());
    out.extend_from_slice(&(weight as i16).to_be_bytes());
    out.extend_from_slice(&sign.to_be_bytes());
    out.extend_from_slice(&(scale as u16).to_be_bytes());
    for g in groups {
        out.extend_from_slice(&g.to_be_bytes());
    }
}

fn bad_format(ty: DataType) -> SqlError {
    SqlError::new(
        sqlstate::INVALID_BINARY_REPRESENTATION,
        format!("incorrect binary data format for type {}", ty.name()),
    )
}

fn fixed<const N: usize>(bytes: &[u8], ty: DataType) -> SqlResult<[u8; N]> {
    bytes.try_into().map_err(|_| bad_format(ty))
}

/// Validates UTF-8 (and the absence of NUL, which PostgreSQL text cannot hold).
pub fn decode_utf8(bytes: &[u8]) -> SqlResult<String> {
    let invalid = |at: usize| {
        let shown: Vec<String> = bytes[at..bytes.len().min(at + 2)]
            .iter()
            .map(|b| format!("0x{b:02x}"))
            .collect();
        SqlError::new(
            "22021",
            format!(
                "invalid byte sequence for encoding \"UTF8\": {}",
                shown.join(" ")
            ),
        )
    };
    let s = std::str::from_utf8(bytes).map_err(|e| invalid(e.valid_up_to()))?;
    if let Some(pos) = bytes.iter().position(|b| *b == 0) {
        return Err(invalid(pos));
    }
    Ok(s.to_string())
}

/// Decodes one binary-format value of type `ty` (the protocol handles NULL separately).
pub fn decode_binary(bytes: &[u8], ty: DataType) -> SqlResult<Value> {
    Ok(match ty {
        DataType::Bool => Value::Bool(fixed::<1>(bytes, ty)?[0] != 0),
        DataType::Int2 => Value::Int(i16::from_be_bytes(fixed(bytes, ty)?) as i64),
        DataType::Int4 => Value::Int(i32::from_be_bytes(fixed(bytes, ty)?) as i64),
        DataType::Int8 => Value::Int(i64::from_be_bytes(fixed(bytes, ty)?)),
        DataType::Float4 => Value::Float(f32::from_be_bytes(fixed(bytes, ty)?) as f64),
        DataType::Float8 => Value::Float(f64::from_be_bytes(fixed(bytes, ty)?)),
        DataType::Numeric(typmod) => {
            let d = decode_numeric(bytes)?;
            Value::Numeric(super::cast::apply_numeric_typmod(d, typmod)?)
        }
        DataType::Text | DataType::Unknown | DataType::Varchar(_) | DataType::Char(_) => {
            // Length modifiers are applied by the caller's cast, as for text input.
            Value::Text(decode_utf8(bytes)?)
        }
        DataType::Bytea => Value::Bytea(bytes.to_vec()),
        DataType::Date => {
            let pg = i32::from_be_bytes(fixed(bytes, ty)?);
            match pg {
                DATE_POS_INFINITY | DATE_NEG_INFINITY => Value::Date(pg),
                _ => {
                    let d = pg as i64 + PG_EPOCH_DAYS as i64;
                    match i32::try_from(d) {
                        Ok(d) if datetime::date_is_finite(d) && datetime::date_in_range(d) => {
                            Value::Date(d)
                        }
                        _ => {
                            return Err(SqlError::new(
                                sqlstate::DATETIME_FIELD_OVERFLOW,
                                "date out of range",
                            ));
                        }
                    }
                }
            }
        }
        DataType::Timestamp => {
            let pg = i64::from_be_bytes(fixed(bytes, ty)?);
            match pg {
                TS_POS_INFINITY | TS_NEG_INFINITY => Value::Timestamp(pg),
                _ => match pg.checked_add(PG_EPOCH_USECS) {
                    Some(t)
                        if datetime::timestamp_is_finite(t) && datetime::timestamp_in_range(t) =>
                    {
                        Value::Timestamp(t)
                    }
                    _ => {
                        return Err(SqlError::new(
                            sqlstate::DATETIME_FIELD_OVERFLOW,
                            "timestamp out of range",
                        ));
                    }
                },
            }
        }
        DataType::Uuid => Value::Uuid(uuid::Uuid::from_bytes(fixed(bytes, ty)?)),
    })
}

fn decode_numeric(bytes: &[u8]) -> SqlResult<Decimal> {
    let ty = DataType::Numeric(None);
    let header: [u8; 8] = bytes
        .get(..8)
        .and_then(|h| h.try_into().ok())
        .ok_or_else(|| bad_format(ty))?;
    let ndigits = i16::from_be_bytes([header[0], header[1]]);
    let weight = i16::from_be_bytes([header[2], header[3]]) as i64;
    let sign = u16::from_be_bytes([header[4], header[5]]);
    let dscale = u16::from_be_bytes([header[6], header[7]]);
    if ndigits < 0 || bytes.len() != 8 + 2 * ndigits as usize {
        return Err(SqlError::new(
            sqlstate::INVALID_BINARY_REPRESENTATION,
            "invalid length in external \"numeric\" value",
        ));
    }
    match sign {
        NUMERIC_POS | NUMERIC_NEG => {}
        NUMERIC_NAN | NUMERIC_PINF | NUMERIC_NINF => {
            return Err(SqlError::unsupported("numeric NaN and Infinity"));
        }
        _ => {
            return Err(SqlError::new(
                sqlstate::INVALID_BINARY_REPRESENTATION,
                "invalid sign in external \"numeric\" value",
            ));
        }
    }
    if dscale > 0x3FFF {
        return Err(SqlError::new(
            sqlstate::INVALID_BINARY_REPRESENTATION,
            "invalid scale in external \"numeric\" value",
        ));
    }
    // Digits below 10^-(min(dscale, 28) + 8) cannot affect the result: PostgreSQL truncates to
    // dscale, and rounding to our 28 fraction digits looks only at the next digit. Skipping
    // them bounds the work for absurd inputs.
    let keep_exp = -((dscale.min(MAX_SCALE as u16) as i64 + 8 + 3) / 4);
    let mut mag = BigUint::zero();
    let mut last_exp = weight + 1;
    for (i, chunk) in bytes[8..].chunks_exact(2).enumerate() {
        let d = i16::from_be_bytes([chunk[0], chunk[1]]);
        if !(0..10000).contains(&d) {
            return Err(SqlError::new(
                sqlstate::INVALID_BINARY_REPRESENTATION,
                "invalid digit in external \"numeric\" value",
            ));
        }
        let exp = weight - i as i64;
        if exp < keep_exp {
            continue;
        }
        // 10000^8 > 7.9e28: a nonzero digit that high cannot fit.
        if exp >= 8 && (d != 0 || !mag.is_zero()) {
            return Err(overflow_error());
        }
        mag.mul_small(10000);
        mag.add_small(d as u32);
        last_exp = exp;
    }
    // mag is Σ digits scaled so that its last digit sits at 10000^last_exp.
    let value = if last_exp >= 0 {
        let mut m = mag;
        for _ in 0..last_exp {
            m.mul_small(10000);
        }
        BigDec::new(sign == NUMERIC_NEG, m, 0)
    } else {
        BigDec::new(sign == NUMERIC_NEG, mag, (-last_exp * 4) as u32)
    };
    value
        .truncated(dscale as u32)
        .with_scale(dscale as u32)
        .to_decimal()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::str::FromStr;

    fn enc(v: &Value, ty: DataType) -> Vec<u8> {
        let mut out = Vec::new();
        encode_binary(v, ty, &mut out);
        out
    }

    #[test]
    fn numeric_layout_matches_postgres() {
        // numeric_send(12345.678): ndigits 3, weight 1, sign 0, dscale 3, digits 1 2345 6780
        // (select numeric_send(12345.678) → \x0003000100000003000109291a7c)
        let d = Decimal::from_str("12345.678").unwrap();
        assert_eq!(
            enc(&Value::Numeric(d), DataType::Numeric(None)),
            vec![0, 3, 0, 1, 0, 0, 0, 3, 0, 1, 0x09, 0x29, 0x1a, 0x7c]
        );
        // select numeric_send(-0.0001) → \x0001ffff400000040001
        let d = Decimal::from_str("-0.0001").unwrap();
        assert_eq!(
            enc(&Value::Numeric(d), DataType::Numeric(None)),
            vec![0, 1, 0xff, 0xff, 0x40, 0, 0, 4, 0, 1]
        );
        // select numeric_send(0.00) → \x0000000000000002
        let d = Decimal::from_str("0.00").unwrap();
        assert_eq!(
            enc(&Value::Numeric(d), DataType::Numeric(None)),
            vec![0, 0, 0, 0, 0, 0, 0, 2]
        );
        // select numeric_send(10000::numeric) → \x0001000100000000 0001
        let d = Decimal::from_str("10000").unwrap();
        assert_eq!(
            enc(&Value::Numeric(d), DataType::Numeric(None)),
            vec![0, 1, 0, 1, 0, 0, 0, 0, 0, 1]
        );
    }

    #[test]
    fn dates_and_errors() {
        // select date_send('2000-01-02') → \x00000001; timestamp_send('2000-01-01 00:00:01') → \x00000000000f4240
        assert_eq!(
            enc(&Value::Date(PG_EPOCH_DAYS + 1), DataType::Date),
            vec![0, 0, 0, 1]
        );
        assert_eq!(
            enc(
                &Value::Timestamp(PG_EPOCH_USECS + 1_000_000),
                DataType::Timestamp
            ),
            vec![0, 0, 0, 0, 0, 0x0f, 0x42, 0x40]
        );
        assert_eq!(
            decode_binary(&[0x7f, 0xff, 0xff, 0xff], DataType::Date).unwrap(),
            Value::Date(DATE_POS_INFINITY)
        );
        assert_eq!(
            decode_binary(&[0x7f, 0xff, 0xff, 0xfe], DataType::Date)
                .unwrap_err()
                .code,
            "22008"
        );
        assert_eq!(
            decode_binary(&[0; 3], DataType::Int4).unwrap_err().code,
            "22P03"
        );
        assert_eq!(
            decode_binary(&[0xff, 0xfe], DataType::Text)
                .unwrap_err()
                .code,
            "22021"
        );
        assert_eq!(
            decode_binary(b"a\0b", DataType::Text).unwrap_err().code,
            "22021"
        );
        assert_eq!(
            decode_binary(&[0, 0, 0, 0, 0x12, 0x34, 0, 0], DataType::Numeric(None))
                .unwrap_err()
                .code,
            "22P03"
        );
        assert_eq!(
            decode_binary(&[0, 0, 0, 0, 0xC0, 0, 0, 0], DataType::Numeric(None))
                .unwrap_err()
                .code,
            "0A000"
        );
        assert_eq!(
            decode_binary(
                &[0, 1, 0, 0, 0, 0, 0, 0, 0x27, 0x10],
                DataType::Numeric(None)
            )
            .unwrap_err()
            .code,
            "22P03"
        );
        assert_eq!(
            decode_binary(&[0, 1, 0, 0, 0, 0, 0, 0], DataType::Numeric(None))
                .unwrap_err()
                .code,
            "22P03"
        );
        // weight 10 → 1e40, too large for our numeric
        assert_eq!(
            decode_binary(&[0, 1, 0, 10, 0, 0, 0, 0, 0, 1], DataType::Numeric(None))
                .unwrap_err()
                .code,
            "22003"
        );
        // dscale truncates hidden digits: digits 1 . 5000 with dscale 0 → 1
        let v = decode_binary(
            &[0, 2, 0, 0, 0, 0, 0, 0, 0, 1, 0x13, 0x88],
            DataType::Numeric(None),
        )
        .unwrap();
        assert_eq!(format_text(&v, DataType::Numeric(None)).unwrap(), "1");
        // tiny weight with huge digit count is cheap and yields zero
        let mut b = vec![0x7f, 0xff, 0x80, 0x00, 0, 0, 0, 2];
        b.extend(std::iter::repeat_n([0x27u8, 0x0f], 32767).flatten());
        assert_eq!(
            format_text(
                &decode_binary(&b, DataType::Numeric(None)).unwrap(),
                DataType::Numeric(None)
            )
            .unwrap(),
            "0.00"
        );
    }

    fn value_for(ty: DataType) -> BoxedStrategy<Value> {
        match ty {
            DataType::Bool => any::<bool>().prop_map(Value::Bool).boxed(),
            DataType::Int2 => any::<i16>().prop_map(|i| Value::Int(i as i64)).boxed(),
            DataType::Int4 => any::<i32>().prop_map(|i| Value::Int(i as i64)).boxed(),
            DataType::Int8 => any::<i64>().prop_map(Value::Int).boxed(),
            DataType::Float4 => any::<f32>()
                .prop_filter("nan", |f| !f.is_nan())
                .prop_map(|f| Value::Float(f as f64))
                .boxed(),
            DataType::Float8 => any::<f64>()
                .prop_filter("nan", |f| !f.is_nan())
                .prop_map(Value::Float)
                .boxed(),
            DataType::Numeric(_) => (any::<i128>(), 0u32..=28)
                .prop_map(|(m, s)| {
                    Value::Numeric(Decimal::try_from_i128_with_scale(m % (1i128 << 96), s).unwrap())
                })
                .boxed(),
            DataType::Bytea => proptest::collection::vec(any::<u8>(), 0..20)
                .prop_map(Value::Bytea)
                .boxed(),
            DataType::Date => (datetime::DATE_MIN..=datetime::DATE_MAX)
                .prop_map(Value::Date)
                .boxed(),
            DataType::Timestamp => (datetime::TS_MIN..datetime::TS_END)
                .prop_map(Value::Timestamp)
                .boxed(),
            DataType::Uuid => any::<[u8; 16]>()
                .prop_map(|b| Value::Uuid(uuid::Uuid::from_bytes(b)))
                .boxed(),
            _ => "[^\\x00]{0,10}".prop_map(Value::Text).boxed(),
        }
    }

    fn typed_value() -> impl Strategy<Value = (DataType, Value)> {
        prop_oneof![
            Just(DataType::Bool),
            Just(DataType::Int2),
            Just(DataType::Int4),
            Just(DataType::Int8),
            Just(DataType::Float4),
            Just(DataType::Float8),
            Just(DataType::Numeric(None)),
            Just(DataType::Text),
            Just(DataType::Bytea),
            Just(DataType::Date),
            Just(DataType::Timestamp),
            Just(DataType::Uuid)
        ]
        .prop_flat_map(|ty| (Just(ty), value_for(ty)))
    }

    proptest! {
        #[test]
        fn round_trip((ty, v) in typed_value()) {
            let bytes = enc(&v, ty);
            let back = decode_binary(&bytes, ty).unwrap();
            prop_assert_eq!(&back, &v);
            if let (Value::Numeric(a), Value::Numeric(b)) = (&back, &v) {
                prop_assert_eq!(a.scale(), b.scale());
            }
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..40), t in 0usize..12) {
            let types = [DataType::Bool, DataType::Int2, DataType::Int4, DataType::Int8, DataType::Float4,
                DataType::Float8, DataType::Numeric(Some((5, 2))), DataType::Text, DataType::Date,
                DataType::Timestamp, DataType::Uuid, DataType::Numeric(None)];
            let _ = decode_binary(&bytes, types[t]);
        }
    }
}
