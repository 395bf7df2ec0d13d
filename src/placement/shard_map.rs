//! The shard map: which shards exist and which shard owns each row, versioned and durable.
//!
//! One map covers the cluster: the live shards, one consistent-hash ring shared by every
//! hash-placed table (so equal shard keys of different tables land on the same shard — what
//! makes co-located joins possible), and the split points of every range-placed table. A
//! table's placement kind and shard-key columns are part of its definition
//! ([`PlacementSpec`] in the catalog); the map holds only what changes online.
//!
//! Every change makes a new map with `version + 1`, written to the metadata engine before it is
//! used, and installed on every shard. A statement routes with one map snapshot and stamps its
//! shard requests with that version; a shard holding another version rejects the request (see
//! `shard::Shard::check_map`) and the statement is routed again.
//!
//! Invariants: `shards` is sorted and non-empty; the ring holds exactly the live shards; every
//! range owner is a live shard.

use super::hash_ring::HashRing;
use super::range_map::RangeMap;
use super::{PlacementKind, PlacementSpec, stable_hash};
use crate::error::{SqlError, SqlResult, sqlstate};
use crate::shard::storage_error;
use crate::storage::{Engine, WriteBatch, WriteOp};
use crate::types::{DataType, Value, keycode};
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

const MAP_KEY: &[u8] = b"p/shard_map";
const READ_LATEST: u64 = u64::MAX;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardMap {
    pub version: u64,
    shards: Vec<usize>,
    vnodes: u32,
    /// Rebuilt from `shards` and `vnodes` when loaded (its points are not stored).
    #[serde(skip, default = "empty_ring")]
    ring: HashRing,
    /// Range-placed tables by table id.
    ranges: BTreeMap<u32, RangeMap>,
    /// The commit timestamp from which this version holds: reads at older timestamps would see
    /// rows where an older version put them, so a shard refuses them under this version.
    pub effective_ts: u64,
    /// Set while rows may sit on shards that do not own them (copies made by a move that has
    /// not switched yet, or originals a switched move has not deleted yet): scans then drop
    /// rows their shard does not own.
    #[serde(skip)]
    pub filter_unowned: bool,
    /// Reads older than this may still see originals a finished move deleted (at timestamps
    /// below it): they drop unowned rows too. In memory only (no such reader survives a restart).
    #[serde(skip)]
    pub unowned_visible_below: u64,
}

/// What routing needs to know about one table.
#[derive(Debug, Clone, PartialEq)]
pub struct TableRoute {
    pub table_id: u32,
    pub kind: PlacementKind,
    /// Shard-key columns, as positions in the row.
    pub key_columns: Vec<usize>,
    pub key_types: Vec<DataType>,
    /// The primary key's columns and types (the engine key encodes them).
    pub pk: Vec<usize>,
    pub pk_types: Vec<DataType>,
    /// The shard key is the primary key: the encoded primary key is the encoded shard key.
    key_is_pk: bool,
}

impl TableRoute {
    pub fn new(
        table_id: u32,
        spec: &PlacementSpec,
        primary_key: &[usize],
        column_types: &[DataType],
    ) -> TableRoute {
        let key_columns = if spec.columns.is_empty() {
            primary_key.to_vec()
        } else {
            spec.columns.clone()
        };
        TableRoute {
            table_id,
            kind: spec.kind,
            key_types: key_columns.iter().map(|c| column_types[*c]).collect(),
            key_is_pk: key_columns == primary_key,
            key_columns,
            pk: primary_key.to_vec(),
            pk_types: primary_key.iter().map(|c| column_types[*c]).collect(),
        }
    }

    pub fn for_table(table: &crate::catalog::TableDef) -> TableRoute {
        let types: Vec<DataType> = table.columns.iter().map(|c| c.ty).collect();
        TableRoute::new(table.id, &table.placement, &table.primary_key, &types)
    }

    /// The encoded shard key of a stored row.
    pub fn key_of_row(&self, row: &[Value]) -> Vec<u8> {
        let mut out = Vec::with_capacity(16);
        for (c, ty) in self.key_columns.iter().zip(&self.key_types) {
            keycode::encode_key_value(&row[*c], *ty, &mut out);
        }
        out
    }

    /// The encoded shard key from an encoded primary key (decoding it unless they coincide).
    pub fn key_of_pk(&self, pk: &[u8]) -> SqlResult<Vec<u8>> {
        if self.key_is_pk {
            return Ok(pk.to_vec());
        }
        let mut input = pk;
        let mut values = Vec::with_capacity(self.pk.len());
        for ty in &self.pk_types {
            values.push(keycode::decode_key_value(&mut input, *ty)?);
        }
        let mut out = Vec::with_capacity(16);
        for (c, ty) in self.key_columns.iter().zip(&self.key_types) {
            let i =
                self.pk.iter().position(|p| p == c).ok_or_else(|| {
                    SqlError::internal("shard key column outside the primary key")
                })?;
            keycode::encode_key_value(&values[i], *ty, &mut out);
        }
        Ok(out)
    }

    /// The encoded shard key from its values, in shard-key order.
    pub fn key_of_values(&self, values: &[Value]) -> Vec<u8> {
        let mut out = Vec::with_capacity(16);
        for (v, ty) in values.iter().zip(&self.key_types) {
            keycode::encode_key_value(v, *ty, &mut out);
        }
        out
    }
}

fn empty_ring() -> HashRing {
    HashRing::new(&[], 1)
}

impl ShardMap {
    pub fn initial(shards: usize, vnodes: u32) -> ShardMap {
        let ids: Vec<usize> = (0..shards.max(1)).collect();
        ShardMap {
            version: 1,
            ring: HashRing::new(&ids, vnodes),
            shards: ids,
            vnodes,
            ranges: BTreeMap::new(),
            effective_ts: 0,
            filter_unowned: false,
            unowned_visible_below: 0,
        }
    }

    /// Live shards, sorted.
    pub fn shards(&self) -> &[usize] {
        &self.shards
    }

    pub fn ring(&self) -> &HashRing {
        &self.ring
    }

    pub fn range_map(&self, table_id: u32) -> Option<&RangeMap> {
        self.ranges.get(&table_id)
    }

    pub fn range_tables(&self) -> impl Iterator<Item = (&u32, &RangeMap)> {
        self.ranges.iter()
    }

    /// The shard owning encoded shard key `key` of `route`'s table.
    pub fn owner_of_key(&self, route: &TableRoute, key: &[u8]) -> usize {
        match route.kind {
            PlacementKind::Hash => self.ring.owner(stable_hash(key)).unwrap_or(self.shards[0]),
            // A range table missing from the map (its creation crashed between the map and
            // the catalog write) has one range on the first shard.
            PlacementKind::Range => self
                .ranges
                .get(&route.table_id)
                .map(|m| m.owner(key))
                .unwrap_or(self.shards[0]),
        }
    }

    pub fn owner_of_row(&self, route: &TableRoute, row: &[Value]) -> usize {
        self.owner_of_key(route, &route.key_of_row(row))
    }

    pub fn owner_of_pk(&self, route: &TableRoute, pk: &[u8]) -> SqlResult<usize> {
        Ok(self.owner_of_key(route, &route.key_of_pk(pk)?))
    }

    /// Whether a read at `read_ts` must drop rows their shard does not own.
    pub fn must_filter(&self, read_ts: u64) -> bool {
        self.filter_unowned || read_ts < self.unowned_visible_below
    }

    /// The range map of a range table, or the single range on the first shard that a table
    /// missing from the map has (see `owner_of_key`).
    pub fn effective_range_map(&self, table_id: u32) -> RangeMap {
        self.ranges
            .get(&table_id)
            .cloned()
            .unwrap_or_else(|| RangeMap::single(self.shards[0]))
    }

    /// Every shard that may hold rows of the table.
    pub fn table_shards(&self, route: &TableRoute) -> Vec<usize> {
        match route.kind {
            PlacementKind::Hash => self.shards.clone(),
            PlacementKind::Range => self
                .ranges
                .get(&route.table_id)
                .map(RangeMap::all_owners)
                .unwrap_or_else(|| vec![self.shards[0]]),
        }
    }

    /// The next version with `f` applied.
    pub fn next(&self, f: impl FnOnce(&mut ShardMap)) -> ShardMap {
        let mut m = self.clone();
        m.version += 1;
        f(&mut m);
        m
    }

    pub fn add_shard(&mut self, shard: usize) {
        if !self.shards.contains(&shard) {
            self.shards.push(shard);
            self.shards.sort_unstable();
        }
        self.ring = self.ring.with_shard(shard);
    }

    pub fn remove_shard(&mut self, shard: usize) {
        self.shards.retain(|s| *s != shard);
        self.ring = self.ring.without_shard(shard);
    }

    pub fn set_range_map(&mut self, table_id: u32, map: RangeMap) {
        self.ranges.insert(table_id, map);
    }

    pub fn drop_table(&mut self, table_id: u32) {
        self.ranges.remove(&table_id);
    }

    /// The live shard owning the fewest ranges (ties: lowest id), for a new range.
    pub fn least_loaded(&self, exclude: Option<usize>) -> usize {
        let mut counts: BTreeMap<usize, usize> = self.shards.iter().map(|s| (*s, 0)).collect();
        for m in self.ranges.values() {
            for o in m.owners() {
                if let Some(c) = counts.get_mut(o) {
                    *c += 1;
                }
            }
        }
        counts
            .into_iter()
            .filter(|(s, _)| Some(*s) != exclude)
            .min_by_key(|(s, c)| (*c, *s))
            .map(|(s, _)| s)
            .unwrap_or(self.shards[0])
    }
}

/// The current map, its durable copy, and the lock that serializes changes.
pub struct PlacementManager {
    meta: Arc<Engine>,
    current: RwLock<Arc<ShardMap>>,
    /// Held for the whole of a change (a data move can take long); readers never take it.
    pub change: Mutex<()>,
}

impl PlacementManager {
    /// Loads the stored map, or creates the first one with `shards` shards.
    /// Whether the metadata engine holds a shard map (data directories written before
    /// placement had none: their rows were placed by `hash mod shard count`).
    pub fn stored(meta: &Engine) -> SqlResult<bool> {
        Ok(meta
            .get(MAP_KEY, READ_LATEST)
            .map_err(storage_error)?
            .is_some())
    }

    pub fn load(meta: Arc<Engine>, shards: usize, vnodes: u32) -> SqlResult<PlacementManager> {
        let map = match meta.get(MAP_KEY, READ_LATEST).map_err(storage_error)? {
            Some(bytes) => {
                let mut map = serde_json::from_slice::<ShardMap>(&bytes).map_err(|e| {
                    SqlError::new(
                        sqlstate::DATA_CORRUPTED,
                        format!("the stored shard map is unreadable: {e}"),
                    )
                })?;
                map.ring = HashRing::new(&map.shards, map.vnodes);
                map
            }
            // Stored by the caller's first `publish` (after it checked the directory).
            None => ShardMap::initial(shards, vnodes),
        };
        Ok(PlacementManager {
            meta,
            current: RwLock::new(Arc::new(map)),
            change: Mutex::new(()),
        })
    }

    /// The map statements route with now.
    pub fn current(&self) -> Arc<ShardMap> {
        self.current.read().clone()
    }

    /// Makes `map` durable, then current. Call with `change` held.
    pub fn publish(&self, map: ShardMap) -> SqlResult<()> {
        persist(&self.meta, &map)?;
        *self.current.write() = Arc::new(map);
        Ok(())
    }

    /// Replaces the in-memory map without a durable write (for the `filter_unowned` flag,
    /// which is not stored).
    pub fn set_current(&self, map: ShardMap) {
        *self.current.write() = Arc::new(map);
    }

    pub fn meta(&self) -> &Arc<Engine> {
        &self.meta
    }
}

fn persist(meta: &Engine, map: &ShardMap) -> SqlResult<()> {
    let value = serde_json::to_vec(map).map_err(|e| SqlError::internal(e.to_string()))?;
    let commit_ts = meta.max_committed_ts() + 1;
    meta.apply(&WriteBatch {
        commit_ts,
        ops: vec![WriteOp::put(MAP_KEY.to_vec(), value)],
    })
    .map_err(storage_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(kind: PlacementKind, key: Vec<usize>) -> TableRoute {
        TableRoute::new(
            7,
            &PlacementSpec { kind, columns: key },
            &[0, 1],
            &[DataType::Int8, DataType::Text],
        )
    }

    #[test]
    fn shard_key_from_pk_matches_key_from_row() {
        let row = vec![Value::Int(42), Value::Text("x".into())];
        for r in [
            route(PlacementKind::Hash, vec![]),
            route(PlacementKind::Hash, vec![1]),
            route(PlacementKind::Range, vec![0]),
        ] {
            let mut pk = Vec::new();
            keycode::encode_key_value(&row[0], DataType::Int8, &mut pk);
            keycode::encode_key_value(&row[1], DataType::Text, &mut pk);
            assert_eq!(r.key_of_pk(&pk).unwrap(), r.key_of_row(&row));
        }
    }

    #[test]
    fn versions_and_ranges() {
        let m = ShardMap::initial(4, 64);
        let r = route(PlacementKind::Range, vec![0]);
        assert_eq!(m.table_shards(&r), vec![0]);
        let m2 = m.next(|m| {
            let mut rm = RangeMap::single(0);
            rm.split(r.key_of_values(&[Value::Int(100)]), 3);
            m.set_range_map(7, rm);
        });
        assert_eq!(m2.version, 2);
        assert_eq!(m2.owner_of_row(&r, &[Value::Int(5), Value::Null]), 0);
        assert_eq!(m2.owner_of_row(&r, &[Value::Int(100), Value::Null]), 3);
        assert_eq!(m2.table_shards(&r), vec![0, 3]);
        assert_eq!(m2.least_loaded(None), 1);
    }
}
