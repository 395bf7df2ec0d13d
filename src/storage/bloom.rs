//! Bloom filters over user keys, one per SSTable, so a point read can skip a table without
//! touching its data blocks.
//!
//! A table holds several versions per user key, but a point read asks "does this table hold
//! *any* version of `key`?", so the filter is built over distinct user keys, never over
//! `(key, ts)` pairs. With `b` bits per key and `k = round(b · ln 2)` probes the false-positive
//! rate is about `0.6185^b` (≈ 0.8 % at 10 bits); there are never false negatives.
//!
//! Each key is hashed once to 64 bits; the `k` probe positions are derived by double hashing
//! (`h1 + i·h2`, Kirsch–Mitzenmacher), which costs one hash per lookup instead of `k` and is
//! as good as independent hashes for this purpose.
//!
//! Serialized form (as stored in the table's bloom block, which adds its own CRC):
//!
//! ```text
//!   bit array (m bits, m a multiple of 8, at least 64; bit i = byte i/8, bit i%8)
//!   k u8      (number of probes, 1..=30)
//! ```
//!
//! The reader treats anything it cannot interpret (no bytes, `k` out of range) as "may contain":
//! a filter may only ever cost a block read, never hide data.

/// Bounds for the number of probes: one probe is the least that filters at all, and beyond 30
/// the extra memory traffic buys nothing at any sensible bits-per-key.
const MAX_PROBES: u32 = 30;
/// Smallest bit array, so that tiny tables do not get a degenerate, always-positive filter.
const MIN_BITS: usize = 64;

// wyhash's mixing constants.
const P0: u64 = 0xa076_1d64_78bd_642f;
const P1: u64 = 0xe703_7ed1_a0b4_28db;
const P2: u64 = 0x8ebc_6af0_9c88_c6e3;
const P3: u64 = 0x5899_65cc_7537_4cc3;

/// Multiplies to 128 bits and returns (low, high).
#[inline]
fn mul128(a: u64, b: u64) -> (u64, u64) {
    let r = u128::from(a) * u128::from(b);
    (r as u64, (r >> 64) as u64)
}

/// Folds a 128-bit product: the core mixing step of wyhash.
#[inline]
pub(crate) fn mix64(a: u64, b: u64) -> u64 {
    let (lo, hi) = mul128(a, b);
    lo ^ hi
}

#[inline]
fn r64(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

#[inline]
fn r32(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u64::from(u32::from_le_bytes(w))
}

/// A fast 64-bit hash of `data` in the style of wyhash (final version): all bits of the input
/// influence all bits of the output, which double hashing needs. Not cryptographic, and stable
/// across runs and platforms (it is persisted through the filters).
pub(crate) fn hash64(data: &[u8]) -> u64 {
    let len = data.len();
    let mut seed = P0;
    let (a, b);
    if len <= 16 {
        if len >= 4 {
            let q = (len >> 3) << 2;
            a = (r32(data, 0) << 32) | r32(data, q);
            b = (r32(data, len - 4) << 32) | r32(data, len - 4 - q);
        } else if len > 0 {
            a = (u64::from(data[0]) << 16)
                | (u64::from(data[len >> 1]) << 8)
                | u64::from(data[len - 1]);
            b = 0;
        } else {
            a = 0;
            b = 0;
        }
    } else {
        let mut p = 0usize;
        let mut rest = len;
        if rest > 48 {
            let (mut s1, mut s2) = (seed, seed);
            while rest > 48 {
                seed = mix64(r64(data, p) ^ P1, r64(data, p + 8) ^ seed);
                s1 = mix64(r64(data, p + 16) ^ P2, r64(data, p + 24) ^ s1);
                s2 = mix64(r64(data, p + 32) ^ P3, r64(data, p + 40) ^ s2);
                p += 48;
                rest -= 48;
            }
            seed ^= s1 ^ s2;
        }
        while rest > 16 {
            seed = mix64(r64(data, p) ^ P1, r64(data, p + 8) ^ seed);
            p += 16;
            rest -= 16;
        }
        // The last 16 bytes of the input (overlapping already-mixed bytes when rest < 16).
        a = r64(data, p + rest - 16);
        b = r64(data, p + rest - 8);
    }
    let (lo, hi) = mul128(a ^ P1, b ^ seed);
    mix64(lo ^ P0 ^ len as u64, hi ^ P1)
}

/// Number of probes for `bits_per_key`: `round(bits_per_key · ln 2)`, clamped to 1..=30.
fn probes_for(bits_per_key: usize) -> u32 {
    let k = (bits_per_key as f64 * std::f64::consts::LN_2).round();
    (k as u32).clamp(1, MAX_PROBES)
}

/// The probe sequence for one key hash: `h1 + i·h2 (mod m)` for `i in 0..k`.
#[inline]
fn probes(hash: u64, k: u32, m: u64) -> impl Iterator<Item = u64> {
    let h1 = hash;
    // Odd, so consecutive probes never collapse onto one bit when m is a power of two.
    let h2 = hash.rotate_left(32) | 1;
    (0..u64::from(k)).map(move |i| h1.wrapping_add(i.wrapping_mul(h2)) % m)
}

/// Collects the keys of one table, in table order, and serializes their filter.
#[derive(Debug)]
pub(crate) struct BloomBuilder {
    bits_per_key: usize,
    hashes: Vec<u64>,
    /// The previous key added, to skip the further versions of a key, which arrive adjacent.
    last: Option<Vec<u8>>,
}

impl BloomBuilder {
    pub(crate) fn new(bits_per_key: usize) -> BloomBuilder {
        BloomBuilder {
            bits_per_key,
            hashes: Vec::new(),
            last: None,
        }
    }

    /// Adds a user key. Repeats of the immediately preceding key are ignored, so feeding every
    /// version of a sorted table counts each key once.
    pub(crate) fn add_key(&mut self, key: &[u8]) {
        match &mut self.last {
            Some(last) if last.as_slice() == key => return,
            Some(last) => {
                last.clear();
                last.extend_from_slice(key);
            }
            None => self.last = Some(key.to_vec()),
        }
        self.hashes.push(hash64(key));
    }

    /// Distinct keys added so far (counting a key again if it was not adjacent to its repeat).
    #[cfg(test)]
    pub(crate) fn key_count(&self) -> usize {
        self.hashes.len()
    }

    /// Approximate size of the serialized filter.
    pub(crate) fn approx_bytes(&self) -> usize {
        (self.hashes.len() * self.bits_per_key).max(MIN_BITS) / 8 + 1
    }

    /// Serializes the filter: the bit array followed by the probe count.
    pub(crate) fn build(&self) -> Vec<u8> {
        let k = probes_for(self.bits_per_key);
        let bits = self
            .hashes
            .len()
            .saturating_mul(self.bits_per_key)
            .max(MIN_BITS);
        let bytes = bits.div_ceil(8);
        let m = (bytes * 8) as u64;
        let mut out = vec![0u8; bytes + 1];
        for &h in &self.hashes {
            for bit in probes(h, k, m) {
                out[(bit / 8) as usize] |= 1 << (bit % 8);
            }
        }
        out[bytes] = k as u8;
        out
    }
}

/// A read-only view of a serialized filter.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BloomReader<'a> {
    bits: &'a [u8],
    k: u32,
}

impl<'a> BloomReader<'a> {
    /// Interprets `data` as a filter produced by [`BloomBuilder::build`]; `None` if it cannot be
    /// one (empty bit array or an out-of-range probe count).
    pub(crate) fn new(data: &'a [u8]) -> Option<BloomReader<'a>> {
        let (&k, bits) = data.split_last()?;
        let k = u32::from(k);
        if bits.is_empty() || !(1..=MAX_PROBES).contains(&k) {
            return None;
        }
        Some(BloomReader { bits, k })
    }

    /// False only if `key` was certainly never added.
    pub(crate) fn may_contain(&self, key: &[u8]) -> bool {
        self.may_contain_hash(hash64(key))
    }

    fn may_contain_hash(&self, hash: u64) -> bool {
        let m = (self.bits.len() * 8) as u64;
        probes(hash, self.k, m).all(|bit| self.bits[(bit / 8) as usize] & (1 << (bit % 8)) != 0)
    }
}

/// Convenience over [`BloomReader`]: a malformed filter answers "maybe".
#[cfg(test)]
pub(crate) fn may_contain(filter: &[u8], key: &[u8]) -> bool {
    BloomReader::new(filter).is_none_or(|r| r.may_contain(key))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn filter_of<'a>(keys: impl IntoIterator<Item = &'a [u8]>, bits_per_key: usize) -> Vec<u8> {
        let mut b = BloomBuilder::new(bits_per_key);
        for k in keys {
            b.add_key(k);
        }
        b.build()
    }

    #[test]
    fn probe_count_follows_bits_per_key() {
        assert_eq!(probes_for(0), 1);
        assert_eq!(probes_for(1), 1);
        assert_eq!(probes_for(10), 7);
        assert_eq!(probes_for(20), 14);
        assert_eq!(probes_for(1000), 30);
        assert_eq!(*filter_of([&b"a"[..]], 10).last().unwrap(), 7);
    }

    #[test]
    fn hash_is_stable_and_sensitive_to_every_byte() {
        // Filters are persisted: the hash must never change. Pin a few values.
        let pinned: Vec<u64> = [&b""[..], b"a", b"abcd", b"0123456789abcdef0", &[7u8; 100]]
            .iter()
            .map(|k| hash64(k))
            .collect();
        assert_eq!(
            pinned,
            [
                0x60c0_6e5a_a671_6029,
                0x7790_bddc_deb4_d182,
                0x42b4_4e6f_9a2a_59d4,
                0x4029_f53e_14b6_d594,
                0x0785_2d68_9326_92de,
            ],
            "{pinned:#x?}"
        );
        for len in [1usize, 3, 4, 8, 15, 16, 17, 47, 48, 49, 100] {
            let base = vec![0x5au8; len];
            let h = hash64(&base);
            for i in 0..len {
                let mut v = base.clone();
                v[i] ^= 1;
                assert_ne!(hash64(&v), h, "len {len}, byte {i}");
            }
            assert_ne!(hash64(&base[..len - 1]), h, "prefix of len {len}");
        }
    }

    #[test]
    fn consecutive_duplicates_count_once() {
        let mut b = BloomBuilder::new(10);
        for k in [&b"a"[..], b"a", b"a", b"b", b"b", b"c"] {
            b.add_key(k);
        }
        assert_eq!(b.key_count(), 3);
    }

    #[test]
    fn empty_filter_rejects_everything_and_malformed_accepts() {
        let f = filter_of(std::iter::empty(), 10);
        assert!(!may_contain(&f, b"x"));
        assert!(may_contain(&[], b"x"));
        assert!(may_contain(&[0xff, 0], b"x"), "k = 0 is malformed");
        assert!(may_contain(&[0, 31], b"x"), "k = 31 is malformed");
        assert!(may_contain(&[5], b"x"), "no bit array");
    }

    #[test]
    fn false_positive_rate_at_ten_bits_per_key() {
        let n = 100_000u32;
        let keys: Vec<Vec<u8>> = (0..n).map(|i| format!("user{i:08}").into_bytes()).collect();
        let f = filter_of(keys.iter().map(Vec::as_slice), 10);
        let r = BloomReader::new(&f).unwrap();
        assert!(keys.iter().all(|k| r.may_contain(k)));
        let probes = 100_000u32;
        let fp = (0..probes)
            .filter(|i| r.may_contain(format!("absent{i:08}").as_bytes()))
            .count();
        let rate = fp as f64 / f64::from(probes);
        assert!(rate < 0.02, "false-positive rate {rate}");
        // And the size is what was asked for.
        assert_eq!(f.len(), (n as usize * 10).div_ceil(8) + 1);
    }

    proptest! {
        #[test]
        fn no_false_negatives(
            keys in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 0..300),
            bits_per_key in 1usize..24,
        ) {
            let mut sorted = keys.clone();
            sorted.sort();
            let f = filter_of(sorted.iter().map(Vec::as_slice), bits_per_key);
            for k in &keys {
                prop_assert!(may_contain(&f, k));
            }
        }
    }
}
