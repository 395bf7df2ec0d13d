#!/usr/bin/env python3
"""Placement benchmarks: pruned vs scatter-gather query latency, and adding a shard at N rows.

Starts a sharddb server (release build, --sync none: this measures routing and data movement,
not fsync) with 4 shards, loads N rows (default 1M) into a hash-placed table with a secondary
index, then measures, one client, sequential:

1. Latency of a query answered by one shard (`WHERE id = $1`, primary-key point lookup on the
   owning shard) against the same-size answer from a scatter-gather (`WHERE email = $1` through
   the secondary index, which must ask every shard). PostgreSQL 15 runs the same two queries on
   the same data for reference when it can be started (root + pg_config).
2. ALTER CLUSTER ADD SHARD: wall time, rows and bytes moved, moved fraction (expected about
   1/5 for the fifth shard), and the row count checked afterwards.

Usage: tools/placement_bench.py [--rows 1000000] [--queries 2000]. Needs psycopg 3.
Prints a Markdown table.
"""

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time

try:
    import psycopg
except ImportError:
    sys.exit('psycopg 3 is needed: pip install "psycopg[binary]"')

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from txn_bench import start_postgres, stop_postgres, wait_ready  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def start_sharddb(tmp):
    binary = os.path.join(ROOT, "target", "release", "sharddb")
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    proc = subprocess.Popen(
        [binary, "--data-dir", os.path.join(tmp, "sharddb"), "--listen", "127.0.0.1:55497",
         "--shards", "4", "--sync", "none", "--statement-mem-mb", "4096"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = "host=127.0.0.1 port=55497 user=bench dbname=bench"
    wait_ready(url)
    return proc, url


def load(url, rows, batch=2000):
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("CREATE TABLE users (id bigint PRIMARY KEY, email text, city text)")
        c.execute("CREATE INDEX users_email ON users (email)")
        started = time.time()
        for lo in range(0, rows, batch):
            hi = min(rows, lo + batch)
            values = ",".join(f"({i},'u{i}@x','c{i % 97}')" for i in range(lo, hi))
            c.execute(f"INSERT INTO users VALUES {values}")
        return time.time() - started


def latency(url, sql, keys, param):
    with psycopg.connect(url, autocommit=True) as c:
        cur = c.cursor()
        for k in keys[:50]:  # warm up
            cur.execute(sql, (param(k),))
            cur.fetchall()
        started = time.perf_counter()
        for k in keys:
            cur.execute(sql, (param(k),))
            assert len(cur.fetchall()) == 1
        return (time.perf_counter() - started) / len(keys) * 1e3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=2000)
    args = ap.parse_args()
    rng = random.Random(7)
    keys = [rng.randrange(args.rows) for _ in range(args.queries)]
    point = "SELECT * FROM users WHERE id = %s"
    scatter = "SELECT * FROM users WHERE email = %s"
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_sharddb(tmp)
        try:
            load_s = load(url, args.rows)
            p = latency(url, point, keys, lambda k: k)
            s = latency(url, scatter, keys, lambda k: f"u{k}@x")
            with psycopg.connect(url, autocommit=True) as c:
                started = time.time()
                r = c.execute("ALTER CLUSTER ADD SHARD").fetchone()
                add_s = time.time() - started
                n = c.execute("SELECT count(*) FROM users").fetchone()[0]
                assert n == args.rows, n
            out.append(("sharddb", load_s, p, s, r, add_s))
        finally:
            proc.terminate()
            proc.wait()
        pg, pg_url = start_postgres(tmp)
        if pg_url:
            try:
                load(pg_url, args.rows)
                with psycopg.connect(pg_url, autocommit=True) as c:
                    c.execute("ANALYZE users")
                p = latency(pg_url, point, keys, lambda k: k)
                s = latency(pg_url, scatter, keys, lambda k: f"u{k}@x")
                out.append(("PostgreSQL 15", None, p, s, None, None))
            finally:
                stop_postgres(pg)
    print(f"\n{args.rows} rows, {args.queries} queries per kind, one client\n")
    print("| system | point query (1 shard) ms | same via secondary index (all shards) ms | ratio |")
    print("|---|---|---|---|")
    for name, _, p, s, _, _ in out:
        print(f"| {name} | {p:.3f} | {s:.3f} | {s / p:.2f}x |")
    name, load_s, _, _, r, add_s = out[0]
    print(f"\nload: {args.rows / load_s:,.0f} rows/s\n")
    print("| ADD SHARD (4 → 5) | value |")
    print("|---|---|")
    print(f"| wall time | {add_s:.2f} s |")
    print(f"| rows scanned / moved | {r[2]:,} / {r[3]:,} ({r[4]}%) |")
    print(f"| bytes moved | {r[5]:,} |")
    print(f"| rows caught up | {r[6]:,} |")


if __name__ == "__main__":
    main()
