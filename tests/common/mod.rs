//! Shared test support: a real sharddb server on an ephemeral port, and a client for it.
#![allow(dead_code)]

use sharddb::config::{ServerConfig, SyncPolicy};
use sharddb::server::RunningServer;
use tokio_postgres::{Client, NoTls};

pub struct TestServer {
    pub server: Option<RunningServer>,
    pub dir: tempfile::TempDir,
}

impl TestServer {
    /// Starts a server with `shards` shards in a fresh temporary directory.
    pub async fn start(shards: usize) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = ServerConfig {
            shards,
            ..config(dir.path())
        };
        let server = sharddb::server::start(&config)
            .await
            .expect("server starts");
        TestServer {
            server: Some(server),
            dir,
        }
    }

    pub fn url(&self) -> String {
        let addr = self.server.as_ref().expect("running").addr;
        format!(
            "host={} port={} user=sharddb dbname=sharddb",
            addr.ip(),
            addr.port()
        )
    }

    pub async fn connect(&self) -> Client {
        connect(&self.url()).await
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await;
        }
    }
}

/// The test servers' configuration: an ephemeral port, durable sync, small memtables.
pub fn config(data_dir: &std::path::Path) -> ServerConfig {
    ServerConfig {
        listen: "127.0.0.1:0".into(),
        data_dir: data_dir.to_path_buf(),
        shards: 4,
        sync: SyncPolicy::Fsync,
        memtable_mb: 4,
        block_cache_mb: 16,
        // Small, so the test tables' indexes exercise eviction and checkpoints.
        index_pool_mb: 2,
        statement_mem_mb: 256,
        deadlock_policy: Default::default(),
        node_id: 0,
        ..ServerConfig::default()
    }
}

pub async fn connect(url: &str) -> Client {
    let (client, conn) = tokio_postgres::connect(url, NoTls)
        .await
        .expect("connect to sharddb");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// "SQLSTATE: message" of a database error, for assertions.
pub fn db_error(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => format!("{}: {}", d.code().code(), d.message()),
        None => e.to_string(),
    }
}

/// A `sharddb` server in a child process (so tests can `kill -9` it), on an ephemeral port.
pub struct ServerProcess {
    pub child: std::process::Child,
    pub port: u16,
}

/// Spawns `sharddb serve` on `dir` with 4 shards, 1 MiB memtables and `extra` arguments, and
/// waits for its "listening" line.
pub fn spawn_server(dir: &std::path::Path, extra: &[&str]) -> ServerProcess {
    spawn_server_with_env(dir, extra, &[])
}

/// [`spawn_server`] with extra environment variables for the child (e.g. a crash point).
pub fn spawn_server_with_env(
    dir: &std::path::Path,
    extra: &[&str],
    env: &[(&str, &str)],
) -> ServerProcess {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_sharddb"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--shards",
            "4",
            "--memtable-mb",
            "1",
        ])
        .args(extra)
        .arg("--data-dir")
        .arg(dir)
        .env("SHARDDB_LOG", "warn")
        // A crash point only when asked for, even if the test runner's environment has one.
        .env_remove("SHARDDB_TEST_CRASH_AT")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn sharddb");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read listen line");
    let port = line
        .trim()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"));
    ServerProcess { child, port }
}

impl Drop for ServerProcess {
    /// A test that fails midway must not leave its server running.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Inserts accounts `0..n`, each with `initial` (the bank and 2PC crash tests' table
/// `accounts (id int, balance bigint)`, created by the caller).
#[allow(dead_code)] // not every test binary uses it
pub async fn insert_accounts(client: &Client, n: i64, initial: i64) {
    let values: Vec<String> = (0..n).map(|i| format!("({i}, {initial})")).collect();
    client
        .batch_execute(&format!(
            "INSERT INTO accounts VALUES {}",
            values.join(", ")
        ))
        .await
        .unwrap();
}
