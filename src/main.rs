//! The `sharddb` binary: `sharddb` (or `sharddb serve`) runs the embedded server;
//! `sharddb anomalies` runs the isolation anomaly lab against a server.

use clap::{Args, Parser, Subcommand, ValueEnum};
use sharddb::anomalies::{ExpectChoice, LabOptions, PolicyChoice, matrix::Anomaly};
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
    /// Play the isolation anomalies (G0 .. G2, Hermitage's names) at every isolation level
    /// against a server and print which ones occurred. Exit code: 0 if every cell matches the
    /// expected matrix, 1 if not, 2 if the lab could not connect or set up.
    Anomalies(AnomaliesArgs),
}

#[derive(Args)]
struct AnomaliesArgs {
    /// Server to test (URL or key=value connection string).
    #[arg(long, default_value = "postgres://127.0.0.1:5433/sharddb")]
    url: String,
    /// Also print the SQL transcript of this scenario at every level (and policy), e.g. G2-item.
    #[arg(long, value_parser = parse_anomaly)]
    show: Option<Anomaly>,
    /// Deadlock policy to run under (sharddb only; PostgreSQL runs once, as "n/a").
    #[arg(long, value_enum, default_value = "both")]
    policy: PolicyArg,
    /// A step that has not answered within this many milliseconds counts as blocked.
    #[arg(long, default_value_t = 300)]
    timeout_ms: u64,
    /// Expected matrix: auto picks by the server's `server_version`.
    #[arg(long, value_enum, default_value = "auto")]
    expect: ExpectArg,
    /// Print, for every cell, what was observed and how the anomaly was prevented.
    #[arg(long)]
    details: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum PolicyArg {
    #[value(name = "wait_die")]
    WaitDie,
    #[value(name = "wound_wait")]
    WoundWait,
    Both,
}

#[derive(Clone, Copy, ValueEnum)]
enum ExpectArg {
    Auto,
    Sharddb,
    Postgres,
}

fn parse_anomaly(s: &str) -> Result<Anomaly, String> {
    Anomaly::from_name(s).ok_or_else(|| {
        let names: Vec<&str> = Anomaly::ALL.iter().map(|a| a.name()).collect();
        format!("unknown scenario {s:?}; one of {}", names.join(", "))
    })
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
    /// This node's id in Snowflake ids (row ids, snowflake_id(), BIGSERIAL, transaction ids),
    /// 0..=1023; give every node of a cluster a different one [default: 0].
    #[arg(long, env = "SHARDDB_NODE_ID", value_parser = clap::value_parser!(u16).range(0..=1023))]
    node_id: Option<u16>,
    /// Points per shard on the consistent-hash ring; fixed when the data directory is created
    /// [default: 512].
    #[arg(long, env = "SHARDDB_VNODES")]
    vnodes: Option<u32>,
    /// A range of a range-placed table with more rows than this splits itself at its median
    /// (the upper half moving to the least loaded shard); 0 = never [default: 1000000].
    #[arg(long, env = "SHARDDB_RANGE_SPLIT_ROWS")]
    range_split_rows: Option<u64>,
    /// Optional TOML file with the same settings (listen, data_dir, shards, sync, memtable_mb,
    /// block_cache_mb, index_pool_mb, statement_mem_mb, deadlock_policy, node_id, vnodes, range_split_rows).
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
        node_id: args.node_id.or(file.node_id).unwrap_or(d.node_id),
        vnodes: args.vnodes.or(file.vnodes).unwrap_or(d.vnodes),
        range_split_rows: args
            .range_split_rows
            .or(file.range_split_rows)
            .unwrap_or(d.range_split_rows),
    })
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SHARDDB_LOG")
                // The anomaly lab's client echoes server notices at info level; they are noise.
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,tokio_postgres=warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let args = match cli.command {
        Some(Command::Serve(a)) => a,
        Some(Command::Anomalies(a)) => return anomalies(a),
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
            shards = server.db.placement.current().shards().len(),
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

fn anomalies(args: AnomaliesArgs) -> ExitCode {
    let opts = LabOptions {
        url: args.url,
        policy: match args.policy {
            PolicyArg::WaitDie => PolicyChoice::WaitDie,
            PolicyArg::WoundWait => PolicyChoice::WoundWait,
            PolicyArg::Both => PolicyChoice::Both,
        },
        step_timeout: std::time::Duration::from_millis(args.timeout_ms),
        expect: match args.expect {
            ExpectArg::Auto => ExpectChoice::Auto,
            ExpectArg::Sharddb => ExpectChoice::Sharddb,
            ExpectArg::Postgres => ExpectChoice::Postgres,
        },
        show: args.show,
        only: Vec::new(),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sharddb anomalies: cannot start runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(sharddb::anomalies::run_lab(&opts)) {
        Ok(report) => {
            print!("{}", report.render(args.details));
            ExitCode::from(report.exit_code())
        }
        Err(e) => {
            // Sources carry the useful part ("connection refused"), so print the whole chain.
            let mut msg = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                msg.push_str(&format!(": {s}"));
                source = s.source();
            }
            eprintln!("sharddb anomalies: {msg}");
            ExitCode::from(2)
        }
    }
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
