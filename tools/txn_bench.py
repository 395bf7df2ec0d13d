#!/usr/bin/env python3
"""Transaction benchmarks: contended transfers and 1PC vs 2PC latency.

Starts a sharddb server (release build, fsync on) and, for reference, a scratch PostgreSQL 15 in
the same run, then measures:

1. Transfers between accounts (`UPDATE ... balance - x WHERE id = a; UPDATE ... + x WHERE id = b`
   in one READ COMMITTED transaction) with several concurrent clients, for 1000 uniformly chosen
   accounts and for 8 hot accounts: committed transfers per second and aborts per committed
   transfer (40P01 / 40001, each retried until it commits), under wait-die and wound-wait.
   PostgreSQL runs the same workload (it detects deadlocks instead of preventing them).
2. Latency of one transfer whose two rows live on the same shard (one-phase commit) and on two
   shards (two-phase commit), one client, sequential.

Usage: tools/txn_bench.py [--seconds 8] [--clients 8]   (run as root: it starts PostgreSQL as
the postgres user). Needs psycopg 3 (pip install "psycopg[binary]"). Prints a Markdown table.
"""

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time

try:
    import psycopg
except ImportError:
    sys.exit('psycopg 3 is needed: pip install "psycopg[binary]"')

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RETRY = {"40P01", "40001"}


def start_sharddb(tmp):
    binary = os.path.join(ROOT, "target", "release", "sharddb")
    if not os.path.exists(binary):
        subprocess.run(["cargo", "build", "--release"], cwd=ROOT, check=True)
    data = os.path.join(tmp, "sharddb")
    proc = subprocess.Popen(
        [binary, "--data-dir", data, "--listen", "127.0.0.1:55499"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = "host=127.0.0.1 port=55499 user=bench dbname=bench"
    wait_ready(url)
    return proc, url


def start_postgres(tmp):
    bindir = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True)
    if bindir.returncode != 0 or os.geteuid() != 0:
        print("# PostgreSQL reference skipped (needs pg_config and root)", file=sys.stderr)
        return None, None
    bindir = bindir.stdout.strip()
    data = os.path.join(tmp, "pg")
    os.makedirs(data)
    shutil.chown(tmp, "postgres")
    shutil.chown(data, "postgres")
    run_pg = lambda *a: subprocess.run(["runuser", "-u", "postgres", "--", *a], check=True,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run_pg(os.path.join(bindir, "initdb"), "-D", data, "-A", "trust")
    run_pg(os.path.join(bindir, "pg_ctl"), "-D", data, "-o", f"-p 55498 -k {data}",
           "-l", os.path.join(data, "log"), "-w", "start")
    url = "host=127.0.0.1 port=55498 user=postgres dbname=postgres"
    wait_ready(url)
    return (bindir, data), url


def stop_postgres(pg):
    if pg:
        bindir, data = pg
        subprocess.run(["runuser", "-u", "postgres", "--", os.path.join(bindir, "pg_ctl"),
                        "-D", data, "-m", "fast", "-w", "stop"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_ready(url):
    for _ in range(100):
        try:
            psycopg.connect(url, autocommit=True).close()
            return
        except psycopg.OperationalError:
            time.sleep(0.1)
    sys.exit(f"server at {url} did not start")


def setup(url, accounts):
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("DROP TABLE IF EXISTS accounts")
        c.execute("CREATE TABLE accounts (id int PRIMARY KEY, balance bigint NOT NULL)")
        values = ", ".join(f"({i}, 1000)" for i in range(accounts))
        c.execute(f"INSERT INTO accounts VALUES {values}")


def transfer(conn, a, b, amount):
    """One transfer, retried until it commits; returns the number of aborted attempts."""
    aborts = 0
    while True:
        try:
            with conn.transaction():
                conn.execute("UPDATE accounts SET balance = balance - %s WHERE id = %s",
                             (amount, a))
                conn.execute("UPDATE accounts SET balance = balance + %s WHERE id = %s",
                             (amount, b))
            return aborts
        except psycopg.Error as e:
            if e.sqlstate in RETRY:
                aborts += 1
                continue
            raise


def contended(url, policy, accounts, hot, clients, seconds):
    setup(url, accounts)
    stop = time.monotonic() + seconds
    totals = {"commits": 0, "aborts": 0}
    lock = threading.Lock()
    errors = []

    def worker(seed):
        rng = random.Random(seed)
        try:
            with psycopg.connect(url, autocommit=True) as conn:
                if policy:
                    conn.execute(f"SET deadlock_policy = '{policy}'")
                commits = aborts = 0
                while time.monotonic() < stop:
                    pool = hot if hot else accounts
                    a, b = rng.sample(range(pool), 2)
                    aborts += transfer(conn, a, b, rng.randint(1, 10))
                    commits += 1
                with lock:
                    totals["commits"] += commits
                    totals["aborts"] += aborts
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    if errors:
        sys.exit(f"transfer workers failed: {errors[:3]}")
    with psycopg.connect(url, autocommit=True) as c:
        total = c.execute("SELECT sum(balance) FROM accounts").fetchone()[0]
    assert total == 1000 * accounts, f"money was created or lost: {total}"
    return totals["commits"] / elapsed, totals["aborts"] / max(1, totals["commits"])


def shard_pairs(url):
    """Two account pairs: both rows on one shard, and on two shards (from sharddb_transactions)."""
    same = cross = None
    with psycopg.connect(url, autocommit=True) as c:
        for b in range(1, 64):
            with c.transaction():
                c.execute("UPDATE accounts SET balance = balance WHERE id = 0")
                c.execute("UPDATE accounts SET balance = balance WHERE id = %s", (b,))
                written = c.execute("SELECT written_shards FROM sharddb_transactions").fetchone()[0]
            if written.count(",") == 0 and same is None:
                same = (0, b)
            if written.count(",") == 1 and cross is None:
                cross = (0, b)
            if same and cross:
                return same, cross
    sys.exit("could not find account pairs on one and on two shards")


def latency(url, pair, n):
    samples = []
    with psycopg.connect(url, autocommit=True) as conn:
        for _ in range(n):
            t = time.perf_counter()
            transfer(conn, pair[0], pair[1], 1)
            samples.append((time.perf_counter() - t) * 1000)
    samples.sort()
    return sum(samples) / n, samples[n // 2], samples[int(n * 0.99)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=8)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--latency-samples", type=int, default=1000)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="txn-bench-")
    sdb, sdb_url = start_sharddb(tmp)
    pg, pg_url = start_postgres(tmp)
    try:
        print(f"contended transfers, {args.clients} clients, {args.seconds:.0f} s each, "
              "READ COMMITTED, retries until commit\n")
        print("| server | policy | accounts | transfers/s | aborts per transfer |")
        print("|---|---|---|---:|---:|")
        for accounts, hot in [(1000, 0), (1000, 8)]:
            label = "uniform over 1000" if not hot else f"{hot} hot"
            for policy in ["wait_die", "wound_wait"]:
                tps, apt = contended(sdb_url, policy, accounts, hot, args.clients, args.seconds)
                print(f"| sharddb | {policy} | {label} | {tps:.0f} | {apt:.3f} |")
            if pg_url:
                tps, apt = contended(pg_url, None, accounts, hot, args.clients, args.seconds)
                print(f"| PostgreSQL 15 | deadlock detection | {label} | {tps:.0f} | {apt:.3f} |")
        setup(sdb_url, 1000)
        same, cross = shard_pairs(sdb_url)
        print(f"\none transfer at a time, {args.latency_samples} samples\n")
        print("| server | rows | commit | mean ms | p50 ms | p99 ms |")
        print("|---|---|---|---:|---:|---:|")
        for name, pair, proto in [("one shard", same, "1PC"), ("two shards", cross, "2PC")]:
            mean, p50, p99 = latency(sdb_url, pair, args.latency_samples)
            print(f"| sharddb | {name} | {proto} | {mean:.3f} | {p50:.3f} | {p99:.3f} |")
        if pg_url:
            setup(pg_url, 1000)
            mean, p50, p99 = latency(pg_url, (0, 1), args.latency_samples)
            print(f"| PostgreSQL 15 | one server | local | {mean:.3f} | {p50:.3f} | {p99:.3f} |")
    finally:
        sdb.terminate()
        sdb.wait()
        stop_postgres(pg)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
