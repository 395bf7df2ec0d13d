//! The `sharddb` binary: `sharddb` (or `sharddb serve`) runs the embedded server.

use clap::{Args, Parser, Subcommand};
use sharddb::config::{FileConfig, ServerConfig, SyncPolicy};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "sharddb",
    version,
    about = "A sharded SQL database speaking the PostgreSQL wire protocol"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default when no command is given).
    Serve(ServeArgs),
}

#[derive(Args, Clone, Default)]
struct ServeArgs {
    /// Address to accept PostgreSQL connections on [default: 127.0.0.1:5433].
    #[arg(long, env = "SHARDDB_LISTEN")]
    listen: Option<String>,
    /// Directory holding all shards' data [default: ./sharddb-data].
    #[arg(long, env = "SHARDDB_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Number of in-process shards, fixed when the data directory is created [default: 4].
    #[arg(long, env = "SHARDDB_SHARDS")]
    shards: Option<usize>,
    /// WAL sync policy; `none` is unsafe and meant for benchmarks [default: fsync].
    #[arg(long, env = "SHARDDB_SYNC", value_enum)]
    sync: Option<SyncPolicy>,
    /// Memtable size limit per shard in MiB [default: 32].
    #[arg(long, env = "SHARDDB_MEMTABLE_MB")]
    memtable_mb: Option<usize>,
    /// SSTable block cache size in MiB, shared over all shards [default: 64].
    #[arg(long, env = "SHARDDB_BLOCK_CACHE_MB")]
    block_cache_mb: Option<usize>,
    /// B+tree index buffer pool size in MiB, shared over all shards [default: 64].
    #[arg(long, env = "SHARDDB_INDEX_POOL_MB")]
    index_pool_mb: Option<usize>,
    /// Most memory one statement may hold in materialized rows, in MiB; beyond it the statement
    /// fails with 53200 instead of exhausting the server [default: 1024].
    #[arg(long, env = "SHARDDB_STATEMENT_MEM_MB")]
    statement_mem_mb: Option<usize>,
    /// Deadlock prevention sessions start with: wait_die or wound_wait (each session may
    /// `SET deadlock_policy`) [default: wait_die].
    #[arg(long, env = "SHARDDB_DEADLOCK_POLICY")]
    deadlock_policy: Option<String>,
    /// Optional TOML file with the same settings (listen, data_dir, shards, sync, memtable_mb,
    /// block_cache_mb, index_pool_mb, statement_mem_mb, deadlock_policy).
    #[arg(long, env = "SHARDDB_CONFIG")]
    config: Option<PathBuf>,
}

fn resolve(args: ServeArgs) -> Result<ServerConfig, String> {
    let file = match &args.config {
        Some(p) => FileConfig::load(p)?,
        None => FileConfig::default(),
    };
    let d = ServerConfig::default();
    Ok(ServerConfig {
        listen: args.listen.or(file.listen).unwrap_or(d.listen),
        data_dir: args.data_dir.or(file.data_dir).unwrap_or(d.data_dir),
        shards: args.shards.or(file.shards).unwrap_or(d.shards),
        sync: args.sync.or(file.sync).unwrap_or(d.sync),
        memtable_mb: args
            .memtable_mb
            .or(file.memtable_mb)
            .unwrap_or(d.memtable_mb),
        block_cache_mb: args
            .block_cache_mb
            .or(file.block_cache_mb)
            .unwrap_or(d.block_cache_mb),
        index_pool_mb: args
            .index_pool_mb
            .or(file.index_pool_mb)
            .unwrap_or(d.index_pool_mb),
        statement_mem_mb: args
            .statement_mem_mb
            .or(file.statement_mem_mb)
            .unwrap_or(d.statement_mem_mb),
        deadlock_policy: match args.deadlock_policy.or(file.deadlock_policy) {
            Some(p) => p.parse()?,
            None => d.deadlock_policy,
        },
    })
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SHARDDB_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let args = match cli.command {
        Some(Command::Serve(a)) => a,
        None => cli.serve,
    };
    let config = match resolve(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sharddb: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sharddb: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let server = match sharddb::server::start(&config).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("sharddb: {e}");
                return ExitCode::FAILURE;
            }
        };
        tracing::info!(
            addr = %server.addr,
            shards = server.db.placement.shard_count(),
            data_dir = %config.data_dir.display(),
            "sharddb is ready"
        );
        // Tests and scripts read this line to find an ephemeral port.
        println!("sharddb listening on {}", server.addr);
        wait_for_signal().await;
        tracing::info!("shutting down");
        server.shutdown().await;
        ExitCode::SUCCESS
    })
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
