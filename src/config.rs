//! Server configuration: command line, environment, and an optional TOML file.
//!
//! Precedence: a command-line flag (or its `SHARDDB_*` environment variable) beats the config
//! file, which beats the built-in default. The defaults are the embedded mode: pgwire on
//! 127.0.0.1:5433, 4 in-process shards, data under `./sharddb-data`, fsync on commit.

use serde::Deserialize;
use std::path::{Path, PathBuf};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:5433";
pub const DEFAULT_DATA_DIR: &str = "./sharddb-data";
pub const DEFAULT_SHARDS: usize = 4;
pub const DEFAULT_MEMTABLE_MB: usize = 32;
pub const DEFAULT_STATEMENT_MEM_MB: usize = 1024;
pub const DEFAULT_BLOCK_CACHE_MB: usize = 64;
pub const DEFAULT_INDEX_POOL_MB: usize = 64;
pub const DEFAULT_RANGE_SPLIT_ROWS: u64 = 1_000_000;
pub const DEFAULT_NODE_ID: u16 = 0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SyncPolicy {
    /// fsync the WAL before acknowledging a commit (durable).
    Fsync,
    /// Never fsync. Unsafe: acknowledged commits can be lost on power failure or kill -9 of the
    /// machine. For benchmarks only.
    None,
}

/// Settings a config file may carry; every field optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub shards: Option<usize>,
    pub sync: Option<SyncPolicy>,
    pub memtable_mb: Option<usize>,
    pub block_cache_mb: Option<usize>,
    pub index_pool_mb: Option<usize>,
    pub statement_mem_mb: Option<usize>,
    /// `wait_die` or `wound_wait`.
    pub deadlock_policy: Option<String>,
    pub node_id: Option<u16>,
    pub vnodes: Option<u32>,
    pub range_split_rows: Option<u64>,
}

impl FileConfig {
    pub fn load(path: &Path) -> Result<FileConfig, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("invalid config file {}: {e}", path.display()))
    }
}

/// The resolved configuration the server runs with.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: String,
    pub data_dir: PathBuf,
    pub shards: usize,
    pub sync: SyncPolicy,
    pub memtable_mb: usize,
    /// Memory for cached SSTable blocks, shared out evenly over the shards' engines.
    pub block_cache_mb: usize,
    /// Memory for B+tree index pages, shared out evenly over the shards' buffer pools.
    pub index_pool_mb: usize,
    /// Most memory one statement may hold in materialized rows (see `sql::executor`).
    pub statement_mem_mb: usize,
    /// The `deadlock_policy` sessions start with (each may `SET deadlock_policy`).
    pub deadlock_policy: crate::txn::DeadlockPolicy,
    /// The node id in every Snowflake id this node makes (row ids, `snowflake_id()`, txids):
    /// 0..=1023, and different on every node of a cluster so their ids never collide.
    pub node_id: u16,
    /// Points per shard on the consistent-hash ring of a new data directory (fixed afterwards).
    pub vnodes: u32,
    /// A range of a range-placed table holding more rows than this splits itself at its
    /// median; 0 turns automatic splits off.
    pub range_split_rows: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: DEFAULT_LISTEN.to_string(),
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            shards: DEFAULT_SHARDS,
            sync: SyncPolicy::Fsync,
            memtable_mb: DEFAULT_MEMTABLE_MB,
            block_cache_mb: DEFAULT_BLOCK_CACHE_MB,
            index_pool_mb: DEFAULT_INDEX_POOL_MB,
            statement_mem_mb: DEFAULT_STATEMENT_MEM_MB,
            deadlock_policy: crate::txn::DeadlockPolicy::default(),
            node_id: DEFAULT_NODE_ID,
            vnodes: crate::placement::hash_ring::DEFAULT_VNODES,
            range_split_rows: DEFAULT_RANGE_SPLIT_ROWS,
        }
    }
}

impl ServerConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.shards == 0 || self.shards > 1024 {
            return Err(format!(
                "--shards must be between 1 and 1024, got {}",
                self.shards
            ));
        }
        if self.memtable_mb == 0 {
            return Err("memtable_mb must be at least 1".into());
        }
        if self.statement_mem_mb == 0 {
            return Err("statement_mem_mb must be at least 1".into());
        }
        if self.vnodes == 0 || self.vnodes > 4096 {
            return Err(format!(
                "--vnodes must be between 1 and 4096, got {}",
                self.vnodes
            ));
        }
        if self.node_id > crate::id::snowflake::MAX_NODE {
            return Err(format!(
                "--node-id must be between 0 and {} (10 bits of a Snowflake id), got {}",
                crate::id::snowflake::MAX_NODE,
                self.node_id
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_config_parses_and_rejects_unknown_keys() {
        let c: FileConfig = toml::from_str("shards = 8\nsync = \"none\"\n").unwrap();
        assert_eq!(c.shards, Some(8));
        assert_eq!(c.sync, Some(SyncPolicy::None));
        assert!(toml::from_str::<FileConfig>("shardz = 8").is_err());
        let c: FileConfig = toml::from_str("node_id = 1023").unwrap();
        assert_eq!(c.node_id, Some(1023));
    }

    #[test]
    fn node_id_range_is_validated() {
        let ok = ServerConfig {
            node_id: 1023,
            ..ServerConfig::default()
        };
        assert!(ok.validate().is_ok());
        let err = ServerConfig {
            node_id: 1024,
            ..ServerConfig::default()
        }
        .validate()
        .unwrap_err();
        assert!(
            err.contains("--node-id must be between 0 and 1023"),
            "{err}"
        );
    }
}
