//! The anomaly lab against a real PostgreSQL: it must print PostgreSQL's known isolation matrix.
//! That is the evidence the scenarios and their judges are right, since PostgreSQL's behaviour
//! is the one thing here nobody disputes.
//!
//! The server: `SHARDDB_ANOMALIES_PG_URL` if set; otherwise a throwaway cluster started with
//! `initdb` + `pg_ctl` as the `postgres` user (which needs root, for `runuser`), with a short
//! `deadlock_timeout` so the lab's deadlock scenario stays cheap. Without either, the test prints
//! why and passes without checking anything.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use sharddb::anomalies::matrix::{Level, Target};
use sharddb::anomalies::{ExpectChoice, LabOptions, PolicyChoice, run_lab};

/// A PostgreSQL cluster in a temporary directory, stopped on drop.
struct ScratchPostgres {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for ScratchPostgres {
    fn drop(&mut self) {
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }
}

fn find_bin_dir() -> Option<PathBuf> {
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("initdb").exists() {
            return Some(dir);
        }
    }
    let mut candidates: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    candidates.sort();
    candidates.pop()
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Starts a scratch cluster, or says why it cannot.
fn start_postgres() -> Result<ScratchPostgres, String> {
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .map_err(|e| format!("cannot run `id`: {e}"))?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Err("not root (initdb must run as the postgres user, via runuser)".into());
    }
    let bin = find_bin_dir().ok_or("no PostgreSQL installation (initdb) found")?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    run(Command::new("chown").arg("postgres").arg(dir.path()))?;
    let data = dir.path().join("data");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let as_postgres = |tool: &str| {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin.join(tool));
        c
    };
    run(as_postgres("initdb").arg("-D").arg(&data).args([
        "-A",
        "trust",
        "-U",
        "postgres",
        "--no-sync",
    ]))?;
    let pg = ScratchPostgres {
        bin: bin.clone(),
        data: data.clone(),
        port,
        _dir: dir,
    };
    let socket_dir: &Path = pg._dir.path();
    run(as_postgres("pg_ctl")
        .arg("-D")
        .arg(&data)
        .arg("-o")
        .arg(format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c deadlock_timeout=200ms -c fsync=off",
            socket_dir.display()
        ))
        .arg("-l")
        .arg(socket_dir.join("log"))
        .args(["-w", "start"]))?;
    Ok(pg)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_prints_postgres_matrix() {
    let (url, _server) = match std::env::var("SHARDDB_ANOMALIES_PG_URL") {
        Ok(url) => (url, None),
        Err(_) => match start_postgres() {
            Ok(pg) => (
                format!("postgres://postgres@127.0.0.1:{}/postgres", pg.port),
                Some(pg),
            ),
            Err(why) => {
                println!("skipped: no PostgreSQL to test against: {why}");
                return;
            }
        },
    };
    let opts = LabOptions {
        url,
        policy: PolicyChoice::Both,
        step_timeout: Duration::from_millis(200),
        expect: ExpectChoice::Auto,
        show: None,
        only: Vec::new(),
    };
    let report = run_lab(&opts).await.expect("the lab runs");
    let rendered = report.render(true);
    println!("{rendered}");
    assert_eq!(report.detected, Target::Postgres);
    assert_eq!(report.matrices.len(), 1, "PostgreSQL runs once, policy n/a");
    assert!(report.all_match(), "{rendered}");
    assert_eq!(report.exit_code(), 0);
    // Compared with sharddb's target, PostgreSQL differs exactly where its READ UNCOMMITTED is
    // READ COMMITTED: no dirty reads.
    let diffs: Vec<(Level, &str)> = report.matrices[0]
        .differences(Target::Sharddb)
        .iter()
        .map(|d| (d.level, d.anomaly.name()))
        .collect();
    let ru = Level::ReadUncommitted;
    assert_eq!(
        diffs,
        [(ru, "G1a"), (ru, "G1b"), (ru, "G1c"), (ru, "OTV")],
        "{rendered}"
    );
}
