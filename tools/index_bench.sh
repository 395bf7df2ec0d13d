#!/usr/bin/env bash
# Secondary-index benchmark, sharddb against PostgreSQL's btree in the same run.
#
# Loads ROWS rows `(id bigint PRIMARY KEY, v bigint, pad text)` (v a permutation of the ids,
# so point lookups on v hit exactly one row and `v BETWEEN a AND a+99` 100 rows) into both
# servers, times `CREATE INDEX ON t (v)` on each, then uses pgbench to measure:
#   - point lookups through the index (`WHERE v = :x`), sharddb vs PostgreSQL;
#   - 100-row range scans through the index, sharddb vs PostgreSQL;
#   - the same point lookup as a full scan on sharddb (`enable_indexscan = off`), to show what
#     the index buys;
# and reports sharddb's index buffer-pool hit rate, with the pool set to a quarter of the
# index's size (--index-pool-mb), from the `sharddb_indexes` view.
#
#   ./tools/index_bench.sh                   # 1,000,000 rows, 10 s per workload, 2 clients
#   ROWS=100000 SECONDS_PER=5 ./tools/index_bench.sh
#
# Needs pgbench, psql, initdb, pg_ctl (PostgreSQL 15 here); run as root or a user that may
# run initdb. Builds the release binary first. Both servers are durable (fsync on).
set -euo pipefail

ROWS=${ROWS:-1000000}
SECONDS_PER=${SECONDS_PER:-10}
CLIENTS=${CLIENTS:-2}
SDB_PORT=${SDB_PORT:-5441}
PG_PORT=${PG_PORT:-55441}
# A quarter of the index: 1M entries of 20 bytes take about 21 MiB of pages over 4 shards.
POOL_MB=${POOL_MB:-$(( ROWS * 21 / 4 / 1000000 > 0 ? ROWS * 21 / 4 / 1000000 : 1 ))}

for tool in pgbench psql python3; do
  command -v "$tool" >/dev/null || { echo "skipping: $tool not installed" >&2; exit 0; }
done
PG_BIN=$(dirname "$(command -v pg_ctl 2>/dev/null || ls /usr/lib/postgresql/*/bin/pg_ctl | tail -n1)")

cd "$(dirname "$0")/.."
cargo build --release --quiet

work=$(mktemp -d /tmp/sharddb-index-bench.XXXXXX)
chmod 777 "$work"
sdb_pid=
cleanup() {
  [ -n "$sdb_pid" ] && kill "$sdb_pid" 2>/dev/null || true
  if [ -d "$work/pg" ]; then as_pg "$PG_BIN/pg_ctl" -D "$work/pg" -m immediate stop >/dev/null 2>&1 || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

./target/release/sharddb --data-dir "$work/sdb" --listen "127.0.0.1:$SDB_PORT" \
  --index-pool-mb "$POOL_MB" >"$work/sdb.out" 2>"$work/sdb.log" &
sdb_pid=$!
for _ in $(seq 50); do grep -q listening "$work/sdb.out" 2>/dev/null && break; sleep 0.1; done

as_pg "$PG_BIN/initdb" -D "$work/pg" -A trust >/dev/null
as_pg "$PG_BIN/pg_ctl" -D "$work/pg" -o "-p $PG_PORT -k $work -c listen_addresses=127.0.0.1" \
  -l "$work/pg.log" -w start >/dev/null

SDB=(-h 127.0.0.1 -p "$SDB_PORT" -U sharddb sharddb)
PG=(-h 127.0.0.1 -p "$PG_PORT" -U postgres postgres)

python3 - "$ROWS" >"$work/load.sql" <<'PY'
import sys
n = int(sys.argv[1])
# v = a fixed permutation of 1..n (multiplication by a unit modulo a prime above n).
p = 1000003 if n < 1000003 else 2147483647
vals = [(k * 7919) % p for k in range(1, n + 1)]
order = sorted(range(n), key=lambda i: vals[i])
rank = [0] * n
for r, i in enumerate(order):
    rank[i] = r + 1
for start in range(0, n, 1000):
    rows = ",".join(f"({k + 1}, {rank[k]}, 'pad-{k + 1}')" for k in range(start, min(start + 1000, n)))
    print(f"INSERT INTO t VALUES {rows};")
PY

now_ms() { python3 -c 'import time; print(int(time.time() * 1000))'; }
load_and_index() {
  psql -q -v ON_ERROR_STOP=1 "$@" -c "CREATE TABLE t (id bigint PRIMARY KEY, v bigint, pad text)"
  local t0 t1 t2
  t0=$(now_ms)
  psql -q -v ON_ERROR_STOP=1 "$@" -f "$work/load.sql"
  t1=$(now_ms)
  psql -q -v ON_ERROR_STOP=1 "$@" -c "CREATE INDEX t_v ON t (v)"
  t2=$(now_ms)
  echo "$((t1 - t0)) $((t2 - t1))"
}
read -r sdb_load sdb_build < <(load_and_index "${SDB[@]}")
read -r pg_load pg_build < <(load_and_index "${PG[@]}")
psql -q "${PG[@]}" -c "VACUUM ANALYZE t" >/dev/null

cat >"$work/point.sql" <<EOF
\set x random(1, $ROWS)
SELECT id, pad FROM t WHERE v = :x;
EOF
cat >"$work/range.sql" <<EOF
\set x random(1, $ROWS - 100)
SELECT id, pad FROM t WHERE v BETWEEN :x AND :x + 99;
EOF
cat >"$work/scan.sql" <<EOF
\set x random(1, $ROWS)
SET enable_indexscan = off;
SELECT id, pad FROM t WHERE v = :x;
EOF

# tps and mean latency (ms) of one pgbench run.
bench() {
  pgbench -n -f "$1" -T "$SECONDS_PER" -c "$CLIENTS" -j "$CLIENTS" "${@:2}" 2>&1 |
    awk '/^latency average/ {lat=$4} /^tps/ {tps=$3} END {print tps, lat}'
}
ratio() { python3 -c "print(f'{float(\"$1\") / float(\"$2\"):.2f}')"; }

read -r s_point s_point_lat < <(bench "$work/point.sql" "${SDB[@]}")
read -r p_point p_point_lat < <(bench "$work/point.sql" "${PG[@]}")
read -r s_range s_range_lat < <(bench "$work/range.sql" "${SDB[@]}")
read -r p_range p_range_lat < <(bench "$work/range.sql" "${PG[@]}")
read -r s_scan s_scan_lat < <(SECONDS_PER=$(( SECONDS_PER < 5 ? SECONDS_PER : 5 )) bench "$work/scan.sql" "${SDB[@]}")

# The pool columns repeat on each of a shard's index rows: one row per shard for those.
pool=$(psql -At "${SDB[@]}" -c "SELECT (SELECT sum(pool_hits) FROM (SELECT DISTINCT shard, pool_hits FROM sharddb_indexes) a), (SELECT sum(pool_misses) FROM (SELECT DISTINCT shard, pool_misses FROM sharddb_indexes) b), (SELECT sum(pool_capacity_pages) * 8 / 1024 FROM (SELECT DISTINCT shard, pool_capacity_pages FROM sharddb_indexes) c), (SELECT sum(pages) * 8 / 1024 FROM sharddb_indexes)" || echo "? ? ? ?")

echo "rows: $ROWS, clients: $CLIENTS, $SECONDS_PER s per run (full scans: at most 5 s)"
echo
echo "| measure | sharddb | PostgreSQL | sharddb / PostgreSQL |"
echo "|---|---|---|---|"
printf '| load (ms) | %s | %s | %s |\n' "$sdb_load" "$pg_load" "$(ratio "$sdb_load" "$pg_load")"
printf '| CREATE INDEX (ms) | %s | %s | %s |\n' "$sdb_build" "$pg_build" "$(ratio "$sdb_build" "$pg_build")"
printf '| point lookup via index, latency (ms) | %s | %s | %s |\n' "$s_point_lat" "$p_point_lat" "$(ratio "$s_point_lat" "$p_point_lat")"
printf '| point lookup via index (tps) | %.0f | %.0f | %s |\n' "$s_point" "$p_point" "$(ratio "$s_point" "$p_point")"
printf '| 100-row range via index (tps) | %.0f | %.0f | %s |\n' "$s_range" "$p_range" "$(ratio "$s_range" "$p_range")"
echo
printf '| sharddb point lookup | tps | latency (ms) |\n|---|---|---|\n'
printf '| through the index | %.0f | %s |\n' "$s_point" "$s_point_lat"
printf '| full scan (enable_indexscan = off) | %.0f | %s |\n' "$s_scan" "$s_scan_lat"
printf '| index / full scan speedup | %s | |\n' "$(ratio "$s_point" "$s_scan")"
echo
read -r hits misses pool_mb index_mb <<<"$(echo "$pool" | tr '|' ' ')"
echo "buffer pool: $pool_mb MiB for an index of $index_mb MiB; hits $hits, misses $misses, hit rate $(python3 -c "print(f'{$hits / max(1, $hits + $misses):.3f}')" 2>/dev/null || echo '?')"
