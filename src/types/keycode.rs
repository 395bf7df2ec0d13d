//! Memcomparable key encoding: byte strings whose `memcmp` order is the SQL order.
//!
//! Storage sorts keys as raw bytes, so index and primary keys are stored in this encoding. The
//! invariants, all covered by property tests:
//! - for two values of the same type, `encode(a) cmp encode(b)` == [`compare`]`(a, b)`; in
//!   particular values that compare equal (`-0.0` and `0.0`, `1.0` and `1.00`) encode to the
//!   same bytes, so uniqueness checks on keys agree with SQL equality;
//! - every encoding is self-delimiting and no encoding is a proper prefix of another of the same
//!   type, so a tuple is encoded by concatenation and tuple order is lexicographic order;
//! - every value starts with a tag byte: 0x01 for a value, 0x02 for NULL, so NULL sorts after all
//!   values (PostgreSQL's ascending default, NULLS LAST);
//! - [`encode_key_value_desc`] is the bitwise complement of the ascending encoding. Complementing
//!   a prefix-free code reverses its order, so DESC columns (with NULLS FIRST, PostgreSQL's DESC
//!   default) mix freely with ASC columns in one tuple.
//!
//! Per-type payloads (ascending):
//! - bool: 0x00 / 0x01;
//! - integers (all widths): 8 bytes big-endian with the sign bit flipped;
//! - floats: 8 bytes, IEEE bits with the sign bit flipped for positives and all bits flipped for
//!   negatives, after folding -0 into 0 and every NaN into one NaN (which then sorts last);
//! - numeric: a sign byte (0x01 negative, 0x02 zero, 0x03 positive) and, for nonzero values, a
//!   biased decimal exponent byte and the significant digits two per byte (`10·d1 + d2 + 1`)
//!   ending in 0x00, all complemented for negatives. Trailing zeros are dropped, so the scale is
//!   not part of the key: decoding yields the normalized value, or the column's declared scale
//!   for `numeric(p,s)`;
//! - text/bytea: the bytes with 0x00 escaped as 0x00 0xFF, terminated by 0x00 0x01;
//! - date: 4 bytes, timestamp: 8 bytes, sign-flipped big-endian; uuid: its 16 bytes.
//!
//! Decoding validates lengths, escapes, UTF-8 and digit ranges and reports XX001 on corrupt
//! input instead of panicking.

use rust_decimal::Decimal;

use super::numeric::{BigDec, BigUint};
use super::{DataType, Value};
use crate::error::{SqlError, SqlResult, sqlstate};

const TAG_VALUE: u8 = 0x01;
const TAG_NULL: u8 = 0x02;

const NUM_NEG: u8 = 0x01;
const NUM_ZERO: u8 = 0x02;
const NUM_POS: u8 = 0x03;
/// Bias for the decimal exponent byte; exponents of representable values are within ±30.
const EXP_BIAS: i64 = 128;

fn corrupt(what: &str) -> SqlError {
    SqlError::new(
        sqlstate::DATA_CORRUPTED,
        format!("corrupt key encoding: {what}"),
    )
}

/// Appends the ascending key encoding of `v` (of type `ty`).
pub fn encode_key_value(v: &Value, ty: DataType, out: &mut Vec<u8>) {
    if v.is_null() {
        out.push(TAG_NULL);
        return;
    }
    out.push(TAG_VALUE);
    match ty {
        DataType::Bool => out.push(matches!(v, Value::Bool(true)) as u8),
        DataType::Int2 | DataType::Int4 | DataType::Int8 => {
            let i = match v {
                Value::Int(i) => *i,
                Value::Float(f) => *f as i64,
                Value::Numeric(d) => i64::try_from(d.trunc().mantissa()).unwrap_or(0),
                _ => 0,
            };
            out.extend_from_slice(&((i as u64) ^ (1 << 63)).to_be_bytes());
        }
        DataType::Float4 | DataType::Float8 => {
            let f = match v {
                Value::Float(f) => *f,
                Value::Int(i) => *i as f64,
                Value::Numeric(d) => super::cast::numeric_to_f64(d),
                _ => 0.0,
            };
            out.extend_from_slice(&float_key(f).to_be_bytes());
        }
        DataType::Numeric(_) => {
            let d = match v {
                Value::Numeric(d) => *d,
                Value::Int(i) => Decimal::from(*i),
                _ => Decimal::ZERO,
            };
            encode_numeric(&d, out);
        }
        DataType::Date => {
            let d = if let Value::Date(d) = v { *d } else { 0 };
            out.extend_from_slice(&((d as u32) ^ (1 << 31)).to_be_bytes());
        }
        DataType::Timestamp => {
            let t = if let Value::Timestamp(t) = v { *t } else { 0 };
            out.extend_from_slice(&((t as u64) ^ (1 << 63)).to_be_bytes());
        }
        DataType::Uuid => {
            let u = if let Value::Uuid(u) = v {
                *u.as_bytes()
            } else {
                [0; 16]
            };
            out.extend_from_slice(&u);
        }
        DataType::Bytea => encode_bytes(
            match v {
                Value::Bytea(b) => b,
                _ => &[],
            },
            out,
        ),
        DataType::Text | DataType::Varchar(_) | DataType::Char(_) | DataType::Unknown => {
            encode_bytes(
                match v {
                    Value::Text(s) => s.as_bytes(),
                    _ => &[],
                },
                out,
            )
        }
    }
}

/// Appends the descending key encoding: the complement of the ascending one.
pub fn encode_key_value_desc(v: &Value, ty: DataType, out: &mut Vec<u8>) {
    let start = out.len();
    encode_key_value(v, ty, out);
    for b in &mut out[start..] {
        *b = !*b;
    }
}

/// Encodes a tuple; `desc[i]` selects descending order for column i (missing = ascending).
pub fn encode_key_tuple(values: &[Value], types: &[DataType], desc: &[bool], out: &mut Vec<u8>) {
    for (i, (v, ty)) in values.iter().zip(types).enumerate() {
        if desc.get(i).copied().unwrap_or(false) {
            encode_key_value_desc(v, *ty, out);
        } else {
            encode_key_value(v, *ty, out);
        }
    }
}

fn float_key(f: f64) -> u64 {
    let f = if f == 0.0 {
        0.0
    } else if f.is_nan() {
        f64::NAN
    } else {
        f
    };
    let bits = f.to_bits();
    if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    }
}

fn float_from_key(k: u64) -> f64 {
    let bits = if k >> 63 == 1 { k & !(1 << 63) } else { !k };
    f64::from_bits(bits)
}

fn encode_bytes(b: &[u8], out: &mut Vec<u8>) {
    for &byte in b {
        if byte == 0 {
            out.extend_from_slice(&[0x00, 0xFF]);
        } else {
            out.push(byte);
        }
    }
    out.extend_from_slice(&[0x00, 0x01]);
}

fn encode_numeric(d: &Decimal, out: &mut Vec<u8>) {
    let n = d.normalize();
    if n.is_zero() {
        out.push(NUM_ZERO);
        return;
    }
    let neg = n.is_sign_negative();
    let digits = n.mantissa().unsigned_abs().to_string();
    // value = 0.d1d2d3... × 10^exp
    let exp = digits.len() as i64 - n.scale() as i64;
    let mut body = Vec::with_capacity(2 + digits.len() / 2);
    body.push((exp + EXP_BIAS) as u8);
    for pair in digits.as_bytes().chunks(2) {
        let hi = pair[0] - b'0';
        let lo = pair.get(1).map_or(0, |b| b - b'0');
        body.push(hi * 10 + lo + 1);
    }
    body.push(0x00);
    if neg {
        out.push(NUM_NEG);
        out.extend(body.iter().map(|b| !b));
    } else {
        out.push(NUM_POS);
        out.extend_from_slice(&body);
    }
}

/// Reads bytes, complementing them for descending encodings.
struct Reader<'a, 'b> {
    input: &'a mut &'b [u8],
    invert: bool,
}

impl Reader<'_, '_> {
    fn byte(&mut self) -> SqlResult<u8> {
        let (&b, rest) = self
            .input
            .split_first()
            .ok_or_else(|| corrupt("unexpected end of key"))?;
        *self.input = rest;
        Ok(if self.invert { !b } else { b })
    }

    fn array<const N: usize>(&mut self) -> SqlResult<[u8; N]> {
        let mut a = [0u8; N];
        for b in a.iter_mut() {
            *b = self.byte()?;
        }
        Ok(a)
    }

    fn escaped_bytes(&mut self) -> SqlResult<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            match self.byte()? {
                0x00 => match self.byte()? {
                    0x01 => return Ok(out),
                    0xFF => out.push(0),
                    _ => return Err(corrupt("bad escape in string")),
                },
                b => out.push(b),
            }
        }
    }
}

fn decode_with(r: &mut Reader, ty: DataType) -> SqlResult<Value> {
    match r.byte()? {
        TAG_NULL => return Ok(Value::Null),
        TAG_VALUE => {}
        _ => return Err(corrupt("bad tag")),
    }
    Ok(match ty {
        DataType::Bool => match r.byte()? {
            0 => Value::Bool(false),
            1 => Value::Bool(true),
            _ => return Err(corrupt("bad boolean")),
        },
        DataType::Int2 | DataType::Int4 | DataType::Int8 => {
            Value::Int((u64::from_be_bytes(r.array()?) ^ (1 << 63)) as i64)
        }
        DataType::Float4 | DataType::Float8 => {
            Value::Float(float_from_key(u64::from_be_bytes(r.array()?)))
        }
        DataType::Numeric(typmod) => {
            let d = decode_numeric(r)?;
            match typmod {
                Some((_, scale)) => Value::Numeric(
                    BigDec::from_decimal(&d)
                        .with_scale(scale)
                        .to_decimal()
                        .map_err(|_| corrupt("numeric out of range"))?,
                ),
                None => Value::Numeric(d),
            }
        }
        DataType::Date => Value::Date((u32::from_be_bytes(r.array()?) ^ (1 << 31)) as i32),
        DataType::Timestamp => {
            Value::Timestamp((u64::from_be_bytes(r.array()?) ^ (1 << 63)) as i64)
        }
        DataType::Uuid => Value::Uuid(uuid::Uuid::from_bytes(r.array()?)),
        DataType::Bytea => Value::Bytea(r.escaped_bytes()?),
        DataType::Text | DataType::Varchar(_) | DataType::Char(_) | DataType::Unknown => {
            Value::Text(
                String::from_utf8(r.escaped_bytes()?).map_err(|_| corrupt("invalid UTF-8"))?,
            )
        }
    })
}

fn decode_numeric(r: &mut Reader) -> SqlResult<Decimal> {
    let sign = r.byte()?;
    if sign == NUM_ZERO {
        return Ok(Decimal::ZERO);
    }
    let neg = match sign {
        NUM_NEG => true,
        NUM_POS => false,
        _ => return Err(corrupt("bad numeric sign")),
    };
    let fix = |b: u8| if neg { !b } else { b };
    let exp = fix(r.byte()?) as i64 - EXP_BIAS;
    let mut digits = String::new();
    loop {
        let b = fix(r.byte()?);
        if b == 0 {
            break;
        }
        if b > 100 || digits.len() > 40 {
            return Err(corrupt("bad numeric digits"));
        }
        let pair = b - 1;
        digits.push((b'0' + pair / 10) as char);
        digits.push((b'0' + pair % 10) as char);
    }
    let digits = digits.trim_end_matches('0');
    if digits.is_empty() {
        return Err(corrupt("bad numeric digits"));
    }
    let scale = digits.len() as i64 - exp;
    let mut mag = BigUint::zero();
    for b in digits.bytes() {
        mag.mul_small(10);
        mag.add_small((b - b'0') as u32);
    }
    let value = if scale >= 0 {
        BigDec::new(neg, mag, scale as u32)
    } else {
        BigDec::new(neg, mag.mul(&BigUint::pow10((-scale).min(40) as u32)), 0)
    };
    value
        .to_decimal_exact()
        .ok_or_else(|| corrupt("numeric out of range"))
}

/// Decodes one ascending-encoded value and advances `input` past it.
pub fn decode_key_value(input: &mut &[u8], ty: DataType) -> SqlResult<Value> {
    decode_with(
        &mut Reader {
            input,
            invert: false,
        },
        ty,
    )
}

/// Decodes one descending-encoded value and advances `input` past it.
pub fn decode_key_value_desc(input: &mut &[u8], ty: DataType) -> SqlResult<Value> {
    decode_with(
        &mut Reader {
            input,
            invert: true,
        },
        ty,
    )
}

/// Decodes a tuple written by [`encode_key_tuple`]; the whole input must be consumed.
pub fn decode_key_tuple(
    mut input: &[u8],
    types: &[DataType],
    desc: &[bool],
) -> SqlResult<Vec<Value>> {
    let mut out = Vec::with_capacity(types.len());
    for (i, ty) in types.iter().enumerate() {
        out.push(if desc.get(i).copied().unwrap_or(false) {
            decode_key_value_desc(&mut input, *ty)?
        } else {
            decode_key_value(&mut input, *ty)?
        });
    }
    if !input.is_empty() {
        return Err(corrupt("trailing bytes"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::compare::compare;
    use crate::types::datetime;
    use proptest::prelude::*;
    use std::cmp::Ordering;

    fn key(v: &Value, ty: DataType) -> Vec<u8> {
        let mut out = Vec::new();
        encode_key_value(v, ty, &mut out);
        out
    }

    #[test]
    fn examples() {
        let n = DataType::Numeric(None);
        let num = |s: &str| Value::Numeric(s.parse().unwrap());
        assert_eq!(key(&num("1.0"), n), key(&num("1.00"), n));
        assert_eq!(
            key(&Value::Float(-0.0), DataType::Float8),
            key(&Value::Float(0.0), DataType::Float8)
        );
        assert!(
            key(&Value::Float(f64::NAN), DataType::Float8)
                > key(&Value::Float(f64::INFINITY), DataType::Float8)
        );
        assert!(key(&Value::Null, DataType::Int4) > key(&Value::Int(i64::MAX), DataType::Int4));
        assert!(
            key(&Value::Text("a".into()), DataType::Text)
                < key(&Value::Text("a\0".into()), DataType::Text)
        );
        let mut d = Vec::new();
        encode_key_value_desc(&Value::Null, DataType::Int4, &mut d);
        let mut e = Vec::new();
        encode_key_value_desc(&Value::Int(1), DataType::Int4, &mut e);
        assert!(d < e, "NULLS FIRST in descending order");
        // decoding a numeric(p,s) key restores the declared scale
        let mut k = key(&num("1.50"), DataType::Numeric(Some((5, 2))));
        k.extend_from_slice(b"rest");
        let mut input = &k[..];
        let v = decode_key_value(&mut input, DataType::Numeric(Some((5, 2)))).unwrap();
        assert_eq!(format!("{v:?}"), format!("{:?}", num("1.50")));
        assert_eq!(input, b"rest");
        assert_eq!(
            decode_key_value(&mut &[0x01u8, 0x00, 0x05][..], DataType::Text)
                .unwrap_err()
                .code,
            "XX001"
        );
        assert_eq!(
            decode_key_value(&mut &[0x07u8][..], DataType::Text)
                .unwrap_err()
                .code,
            "XX001"
        );
        assert_eq!(
            decode_key_value(&mut &[][..], DataType::Int4)
                .unwrap_err()
                .code,
            "XX001"
        );
    }

    fn value_for(ty: DataType) -> BoxedStrategy<Value> {
        let v = match ty {
            DataType::Bool => any::<bool>().prop_map(Value::Bool).boxed(),
            DataType::Int8 => prop_oneof![any::<i64>(), -3i64..3]
                .prop_map(Value::Int)
                .boxed(),
            DataType::Float8 => prop_oneof![
                any::<f64>(),
                Just(0.0),
                Just(-0.0),
                Just(f64::NAN),
                Just(-f64::NAN),
                Just(f64::INFINITY),
                Just(f64::NEG_INFINITY),
                -3.0f64..3.0
            ]
            .prop_map(Value::Float)
            .boxed(),
            DataType::Numeric(_) => prop_oneof![
                (any::<i128>(), 0u32..=28).prop_map(|(m, s)| (m % (1i128 << 96), s)),
                (-1000i128..1000, 0u32..4),
            ]
            .prop_map(|(m, s)| Value::Numeric(Decimal::try_from_i128_with_scale(m, s).unwrap()))
            .boxed(),
            DataType::Text => "\\PC{0,6}|[a\\x00b]{0,4}".prop_map(Value::Text).boxed(),
            DataType::Bytea => proptest::collection::vec(
                prop_oneof![Just(0u8), Just(1), Just(255), any::<u8>()],
                0..6,
            )
            .prop_map(Value::Bytea)
            .boxed(),
            DataType::Date => prop_oneof![
                datetime::DATE_MIN..=datetime::DATE_MAX,
                Just(datetime::DATE_POS_INFINITY),
                Just(datetime::DATE_NEG_INFINITY)
            ]
            .prop_map(Value::Date)
            .boxed(),
            DataType::Timestamp => prop_oneof![
                datetime::TS_MIN..datetime::TS_END,
                Just(i64::MAX),
                Just(i64::MIN)
            ]
            .prop_map(Value::Timestamp)
            .boxed(),
            _ => any::<[u8; 16]>()
                .prop_map(|b| Value::Uuid(uuid::Uuid::from_bytes(b)))
                .boxed(),
        };
        prop_oneof![1 => Just(Value::Null), 10 => v].boxed()
    }

    const TYPES: [DataType; 9] = [
        DataType::Bool,
        DataType::Int8,
        DataType::Float8,
        DataType::Numeric(None),
        DataType::Text,
        DataType::Bytea,
        DataType::Date,
        DataType::Timestamp,
        DataType::Uuid,
    ];

    fn pair() -> impl Strategy<Value = (DataType, Value, Value)> {
        (0..TYPES.len()).prop_flat_map(|i| {
            let ty = TYPES[i];
            (Just(ty), value_for(ty), value_for(ty))
        })
    }

    fn same(a: &Value, b: &Value) -> bool {
        compare(a, b) == Ordering::Equal
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1500))]
        #[test]
        fn order_and_round_trip((ty, a, b) in pair()) {
            let (ka, kb) = (key(&a, ty), key(&b, ty));
            prop_assert_eq!(ka.cmp(&kb), compare(&a, &b));
            let mut da = Vec::new();
            encode_key_value_desc(&a, ty, &mut da);
            let mut db = Vec::new();
            encode_key_value_desc(&b, ty, &mut db);
            prop_assert_eq!(da.cmp(&db), compare(&a, &b).reverse());
            let mut input = &ka[..];
            let back = decode_key_value(&mut input, ty).unwrap();
            prop_assert!(input.is_empty());
            prop_assert!(same(&back, &a), "{:?} vs {:?}", back, a);
            let mut input = &da[..];
            prop_assert!(same(&decode_key_value_desc(&mut input, ty).unwrap(), &a));
            prop_assert!(input.is_empty());
        }

        #[test]
        fn tuple_order((t1, a1, b1) in pair(), (t2, a2, b2) in pair(), d1 in any::<bool>(), d2 in any::<bool>()) {
            let types = [t1, t2];
            let desc = [d1, d2];
            let (mut ka, mut kb) = (Vec::new(), Vec::new());
            encode_key_tuple(&[a1.clone(), a2.clone()], &types, &desc, &mut ka);
            encode_key_tuple(&[b1.clone(), b2.clone()], &types, &desc, &mut kb);
            let dir = |o: Ordering, d: bool| if d { o.reverse() } else { o };
            let want = dir(compare(&a1, &b1), d1).then(dir(compare(&a2, &b2), d2));
            prop_assert_eq!(ka.cmp(&kb), want);
            let back = decode_key_tuple(&ka, &types, &desc).unwrap();
            prop_assert!(same(&back[0], &a1) && same(&back[1], &a2));
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..24), i in 0..TYPES.len(), desc in any::<bool>()) {
            let mut input = &bytes[..];
            let _ = if desc { decode_key_value_desc(&mut input, TYPES[i]) } else { decode_key_value(&mut input, TYPES[i]) };
        }
    }
}
