//! Compact binary encoding of stored rows.
//!
//! Layout: a format version byte ([`ROW_FORMAT_VERSION`]), the column count as a varint, then
//! per column a tag byte and its payload:
//!
//! | tag | value       | payload                                                     |
//! |-----|-------------|-------------------------------------------------------------|
//! | 0   | NULL        | —                                                           |
//! | 1/2 | false/true  | —                                                           |
//! | 3   | integer     | zigzag LEB128 varint                                        |
//! | 4   | float       | 8 bytes, IEEE bits little-endian (NaN payloads and -0 kept) |
//! | 5   | numeric     | scale byte (0..=28), zigzag LEB128 of the 96-bit mantissa   |
//! | 6   | text        | varint byte length, UTF-8 bytes                             |
//! | 7   | bytea       | varint byte length, bytes                                   |
//! | 8   | date        | zigzag varint                                               |
//! | 9   | timestamp   | zigzag varint                                               |
//! | 10  | uuid        | 16 bytes                                                    |
//!
//! Values carry their own tags so the format is self-describing and needs no schema to decode;
//! the type system (binder, catalog) is what guarantees a column's values have the right
//! variant. Numeric keeps its scale, so `1.50` reads back as `1.50`.
//!
//! Schema evolution: a row stores how many columns it was written with. After
//! `ALTER TABLE ... ADD COLUMN`, older rows simply have fewer values; [`decode_row_padded`]
//! reads them with NULL for every column past the stored count (PostgreSQL's behaviour for a
//! column added without a default). Columns are only ever appended, never reordered.
//!
//! Decoding is strict — unknown version or tag, truncated payload, overlong varint, invalid
//! UTF-8, out-of-range numeric, trailing bytes — and reports XX001 instead of panicking, so a
//! corrupted page cannot crash the server.

use rust_decimal::Decimal;

use super::Value;
use crate::error::{SqlError, SqlResult, sqlstate};

pub const ROW_FORMAT_VERSION: u8 = 1;

const TAG_NULL: u8 = 0;
const TAG_FALSE: u8 = 1;
const TAG_TRUE: u8 = 2;
const TAG_INT: u8 = 3;
const TAG_FLOAT: u8 = 4;
const TAG_NUMERIC: u8 = 5;
const TAG_TEXT: u8 = 6;
const TAG_BYTEA: u8 = 7;
const TAG_DATE: u8 = 8;
const TAG_TIMESTAMP: u8 = 9;
const TAG_UUID: u8 = 10;

fn corrupt(what: &str) -> SqlError {
    SqlError::new(
        sqlstate::DATA_CORRUPTED,
        format!("corrupt row encoding: {what}"),
    )
}

fn put_varint(mut v: u128, out: &mut Vec<u8>) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn zigzag(v: i128) -> u128 {
    ((v << 1) ^ (v >> 127)) as u128
}

fn unzigzag(v: u128) -> i128 {
    ((v >> 1) as i128) ^ -((v & 1) as i128)
}

/// Appends the encoding of a row.
pub fn encode_row(values: &[Value], out: &mut Vec<u8>) {
    out.push(ROW_FORMAT_VERSION);
    put_varint(values.len() as u128, out);
    for v in values {
        match v {
            Value::Null => out.push(TAG_NULL),
            Value::Bool(false) => out.push(TAG_FALSE),
            Value::Bool(true) => out.push(TAG_TRUE),
            Value::Int(i) => {
                out.push(TAG_INT);
                put_varint(zigzag(*i as i128), out);
            }
            Value::Float(f) => {
                out.push(TAG_FLOAT);
                out.extend_from_slice(&f.to_bits().to_le_bytes());
            }
            Value::Numeric(d) => {
                out.push(TAG_NUMERIC);
                out.push(d.scale() as u8);
                put_varint(zigzag(d.mantissa()), out);
            }
            Value::Text(s) => {
                out.push(TAG_TEXT);
                put_varint(s.len() as u128, out);
                out.extend_from_slice(s.as_bytes());
            }
            Value::Bytea(b) => {
                out.push(TAG_BYTEA);
                put_varint(b.len() as u128, out);
                out.extend_from_slice(b);
            }
            Value::Date(d) => {
                out.push(TAG_DATE);
                put_varint(zigzag(*d as i128), out);
            }
            Value::Timestamp(t) => {
                out.push(TAG_TIMESTAMP);
                put_varint(zigzag(*t as i128), out);
            }
            Value::Uuid(u) => {
                out.push(TAG_UUID);
                out.extend_from_slice(u.as_bytes());
            }
        }
    }
}

struct Cursor<'a> {
    bytes: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn byte(&mut self) -> SqlResult<u8> {
        let (&b, rest) = self
            .bytes
            .split_first()
            .ok_or_else(|| corrupt("truncated"))?;
        self.bytes = rest;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> SqlResult<&'a [u8]> {
        if n > self.bytes.len() {
            return Err(corrupt("truncated"));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn varint(&mut self) -> SqlResult<u128> {
        let mut v: u128 = 0;
        for shift in (0..128).step_by(7) {
            let b = self.byte()?;
            let bits = (b & 0x7f) as u128;
            if shift == 126 && bits > 0b11 {
                return Err(corrupt("varint overflow"));
            }
            v |= bits << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(corrupt("varint too long"))
    }

    fn signed(&mut self) -> SqlResult<i128> {
        self.varint().map(unzigzag)
    }

    fn length(&mut self) -> SqlResult<usize> {
        usize::try_from(self.varint()?).map_err(|_| corrupt("bad length"))
    }
}

/// Decodes a row written by [`encode_row`], with exactly the stored number of columns.
pub fn decode_row(bytes: &[u8]) -> SqlResult<Vec<Value>> {
    let mut c = Cursor { bytes };
    if c.byte()? != ROW_FORMAT_VERSION {
        return Err(corrupt("unknown format version"));
    }
    let count = c.length()?;
    // Every value takes at least one byte: reject absurd counts before allocating.
    if count > c.bytes.len() {
        return Err(corrupt("column count exceeds data"));
    }
    let mut values = Vec::with_capacity(count);
    for _ in 0..count {
        values.push(match c.byte()? {
            TAG_NULL => Value::Null,
            TAG_FALSE => Value::Bool(false),
            TAG_TRUE => Value::Bool(true),
            TAG_INT => {
                Value::Int(i64::try_from(c.signed()?).map_err(|_| corrupt("integer out of range"))?)
            }
            TAG_FLOAT => {
                let b: [u8; 8] = c.take(8)?.try_into().map_err(|_| corrupt("float"))?;
                Value::Float(f64::from_bits(u64::from_le_bytes(b)))
            }
            TAG_NUMERIC => {
                let scale = c.byte()? as u32;
                let m = c.signed()?;
                Value::Numeric(
                    Decimal::try_from_i128_with_scale(m, scale)
                        .map_err(|_| corrupt("numeric out of range"))?,
                )
            }
            TAG_TEXT => {
                let n = c.length()?;
                let s = std::str::from_utf8(c.take(n)?).map_err(|_| corrupt("invalid UTF-8"))?;
                Value::Text(s.to_string())
            }
            TAG_BYTEA => {
                let n = c.length()?;
                Value::Bytea(c.take(n)?.to_vec())
            }
            TAG_DATE => {
                Value::Date(i32::try_from(c.signed()?).map_err(|_| corrupt("date out of range"))?)
            }
            TAG_TIMESTAMP => Value::Timestamp(
                i64::try_from(c.signed()?).map_err(|_| corrupt("timestamp out of range"))?,
            ),
            TAG_UUID => {
                let b: [u8; 16] = c.take(16)?.try_into().map_err(|_| corrupt("uuid"))?;
                Value::Uuid(uuid::Uuid::from_bytes(b))
            }
            _ => return Err(corrupt("unknown value tag")),
        });
    }
    if !c.bytes.is_empty() {
        return Err(corrupt("trailing bytes"));
    }
    Ok(values)
}

/// Decodes a row for a table that now has `width` columns: columns added after the row was
/// written read as NULL. Rows never store more columns than their table has, so extra stored
/// columns are reported as corruption.
pub fn decode_row_padded(bytes: &[u8], width: usize) -> SqlResult<Vec<Value>> {
    let mut values = decode_row(bytes)?;
    if values.len() > width {
        return Err(corrupt("row has more columns than its table"));
    }
    values.resize(width, Value::Null);
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn any_value() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::Int),
            any::<f64>().prop_map(Value::Float),
            (any::<i128>(), 0u32..=28).prop_map(|(m, s)| Value::Numeric(
                Decimal::try_from_i128_with_scale(m % (1i128 << 96), s).unwrap()
            )),
            "\\PC{0,8}".prop_map(Value::Text),
            proptest::collection::vec(any::<u8>(), 0..8).prop_map(Value::Bytea),
            any::<i32>().prop_map(Value::Date),
            any::<i64>().prop_map(Value::Timestamp),
            any::<[u8; 16]>().prop_map(|b| Value::Uuid(uuid::Uuid::from_bytes(b))),
        ]
    }

    /// Bitwise equality (NaN payloads, -0, numeric scale), stricter than `PartialEq`.
    fn identical(a: &Value, b: &Value) -> bool {
        match (a, b) {
            (Value::Float(x), Value::Float(y)) => x.to_bits() == y.to_bits(),
            (Value::Numeric(x), Value::Numeric(y)) => x.serialize() == y.serialize(),
            _ => a == b,
        }
    }

    #[test]
    fn examples() {
        let row = vec![
            Value::Int(-1),
            Value::Null,
            Value::Numeric("1.50".parse().unwrap()),
            Value::Text("héllo".into()),
        ];
        let mut out = Vec::new();
        encode_row(&row, &mut out);
        assert_eq!(out[..5], [ROW_FORMAT_VERSION, 4, TAG_INT, 1, TAG_NULL]);
        let back = decode_row(&out).unwrap();
        assert!(row.iter().zip(&back).all(|(a, b)| identical(a, b)));
        // ADD COLUMN: old rows read the new columns as NULL
        let padded = decode_row_padded(&out, 6).unwrap();
        assert_eq!(padded.len(), 6);
        assert_eq!(padded[5], Value::Null);
        assert_eq!(decode_row_padded(&out, 3).unwrap_err().code, "XX001");
        // corruption
        assert_eq!(decode_row(&[]).unwrap_err().code, "XX001");
        assert_eq!(decode_row(&[2, 0]).unwrap_err().code, "XX001");
        assert_eq!(decode_row(&[1, 1, 99]).unwrap_err().code, "XX001");
        assert_eq!(
            decode_row(&[1, 1, TAG_TEXT, 5, b'a']).unwrap_err().code,
            "XX001"
        );
        assert_eq!(
            decode_row(&[1, 1, TAG_TEXT, 1, 0xff]).unwrap_err().code,
            "XX001"
        );
        assert_eq!(decode_row(&[1, 0, 0]).unwrap_err().code, "XX001");
        assert_eq!(
            decode_row(&[1, 0xff, 0xff, 0xff, 0xff, 0x0f])
                .unwrap_err()
                .code,
            "XX001"
        );
        let mut overlong = vec![1, 1, TAG_INT];
        overlong.extend([0xff; 20]);
        assert_eq!(decode_row(&overlong).unwrap_err().code, "XX001");
        assert_eq!(
            decode_row(&[1, 1, TAG_NUMERIC, 29, 0]).unwrap_err().code,
            "XX001"
        );
    }

    proptest! {
        #[test]
        fn round_trip(row in proptest::collection::vec(any_value(), 0..12)) {
            let mut out = Vec::new();
            encode_row(&row, &mut out);
            let back = decode_row(&out).unwrap();
            prop_assert_eq!(back.len(), row.len());
            for (a, b) in row.iter().zip(&back) {
                prop_assert!(identical(a, b), "{:?} vs {:?}", a, b);
            }
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = decode_row(&bytes);
            let mut with_header = vec![ROW_FORMAT_VERSION];
            with_header.extend(&bytes);
            let _ = decode_row(&with_header);
        }
    }
}
