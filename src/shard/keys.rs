//! Engine key layout of a shard.
//!
//! ```text
//!  row key:   'r' | table_id (u32 big-endian) | memcomparable primary key
//! ```
//! Big-endian table ids and memcomparable primary keys make one table's rows a contiguous key
//! range in primary-key order, so a table scan is a range scan and a point lookup is a get.

pub const ROW_PREFIX: u8 = b'r';

/// The first byte sequence of every key of `table_id`.
pub fn table_prefix(table_id: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(5);
    k.push(ROW_PREFIX);
    k.extend_from_slice(&table_id.to_be_bytes());
    k
}

/// The exclusive upper bound of `table_id`'s key range.
pub fn table_end(table_id: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(5);
    k.push(ROW_PREFIX);
    match table_id.checked_add(1) {
        Some(next) => k.extend_from_slice(&next.to_be_bytes()),
        None => k[0] = ROW_PREFIX + 1,
    }
    k
}

/// The table id and encoded primary key of a row key; `None` for any other key.
pub fn split_row_key(key: &[u8]) -> Option<(u32, &[u8])> {
    if key.len() < 5 || key[0] != ROW_PREFIX {
        return None;
    }
    let id = u32::from_be_bytes(key[1..5].try_into().ok()?);
    Some((id, &key[5..]))
}

/// Full engine key of a row from its encoded primary key.
pub fn row_key(table_id: u32, encoded_pk: &[u8]) -> Vec<u8> {
    let mut k = table_prefix(table_id);
    k.extend_from_slice(encoded_pk);
    k
}
