//! Starting and stopping a sharddb server: open the database, bind the listener, serve until told
//! to stop. Used by the binary and by the integration tests (which bind port 0).

use crate::config::{ServerConfig, SyncPolicy};
use crate::sql::session::{Database, DbOptions};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub struct RunningServer {
    pub addr: SocketAddr,
    pub db: Arc<Database>,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<std::io::Result<()>>,
}

impl RunningServer {
    /// Stops accepting connections and waits for the listener task.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}

/// Opens the database and starts serving on `config.listen`.
pub async fn start(config: &ServerConfig) -> Result<RunningServer, String> {
    config.validate()?;
    let opts = DbOptions {
        data_dir: config.data_dir.clone(),
        shards: config.shards,
        sync: config.sync == SyncPolicy::Fsync,
        memtable_limit_bytes: config.memtable_mb * 1024 * 1024,
        block_cache_bytes: config.block_cache_mb * 1024 * 1024,
        index_pool_bytes: config.index_pool_mb * 1024 * 1024,
        statement_mem_bytes: config.statement_mem_mb * 1024 * 1024,
        deadlock_policy: config.deadlock_policy,
        vnodes: config.vnodes,
        range_split_rows: config.range_split_rows,
        node_id: config.node_id,
    };
    let db = tokio::task::spawn_blocking(move || Database::open(&opts))
        .await
        .map_err(|e| format!("startup task failed: {e}"))?
        .map_err(|e| format!("cannot open database: {e}"))?;
    let listener = TcpListener::bind(&config.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("cannot read listen address: {e}"))?;
    let (tx, rx) = watch::channel(false);
    let task = tokio::spawn(crate::wire::server::serve(listener, db.clone(), rx));
    Ok(RunningServer {
        addr,
        db,
        shutdown: tx,
        task,
    })
}
