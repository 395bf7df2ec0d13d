#!/usr/bin/env bash
# Join benchmark (sql/join_strategy.rs): joins of a ROWS-row fact table with a 1,000-row
# dimension table, neither placed on the join key, run as broadcast joins (the dimension rows
# shipped to the fact table's shards: `sharddb.pushdown = on`, the default) and gathered to
# the coordinator (`off`), in the same run. With PG_PORT set, the same tables and queries also
# run on that local PostgreSQL (host PG_HOST, default /tmp) for a reference. Prints mean
# latency per query (pgbench, one client, REPEAT runs each after one warm-up run).
#
#   ./tools/join_bench.sh                         # 1,000,000 rows, 4 shards, 5 runs per query
#   ROWS=100000 PG_PORT=55432 PG_HOST=/tmp/pg ./tools/join_bench.sh
#
# Needs pgbench and psql. Builds the release binary first (set SHARDDB_BIN to skip that).
set -euo pipefail

ROWS=${ROWS:-1000000}
SHARDS=${SHARDS:-4}
REPEAT=${REPEAT:-5}
PORT=${PORT:-5442}

for tool in pgbench psql; do
  command -v "$tool" >/dev/null || { echo "skipping: $tool not installed" >&2; exit 0; }
done
cd "$(dirname "$0")/.."
if [ -z "${SHARDDB_BIN:-}" ]; then
  cargo build --release --quiet
  SHARDDB_BIN=${CARGO_TARGET_DIR:-target}/release/sharddb
fi

work=$(mktemp -d /tmp/sharddb-join.XXXXXX)
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

"$SHARDDB_BIN" --listen "127.0.0.1:$PORT" --data-dir "$work/data" --shards "$SHARDS" \
  --sync none --statement-mem-mb 4096 >"$work/log" 2>&1 &
pid=$!
sd() { psql -h 127.0.0.1 -p "$PORT" -U bench -d sharddb -q -v ON_ERROR_STOP=1 "$@"; }
pg() { psql -h "${PG_HOST:-/tmp}" -p "$PG_PORT" -U postgres -d postgres -q -v ON_ERROR_STOP=1 "$@"; }
for _ in $(seq 50); do sd -c 'SELECT 1' >/dev/null 2>&1 && break; sleep 0.1; done

load() { # client
  "$1" -c "DROP TABLE IF EXISTS fact, dim, digits" 2>/dev/null
  "$1" -c "CREATE TABLE digits (d int PRIMARY KEY)"
  "$1" -c "INSERT INTO digits VALUES (0),(1),(2),(3),(4),(5),(6),(7),(8),(9)"
  "$1" -c "CREATE TABLE dim (id int PRIMARY KEY, grp int, name text)"
  "$1" -c "INSERT INTO dim SELECT n, n % 30, 'dim' || n
           FROM (SELECT a.d * 100 + b.d * 10 + c.d AS n FROM digits a, digits b, digits c) x"
  "$1" -c "CREATE TABLE fact (id int PRIMARY KEY, dim_id int, v int)"
  local batch=10000 lo
  for ((lo = 0; lo < ROWS; lo += batch)); do
    "$1" -c "INSERT INTO fact SELECT n, (n::bigint * 7919) % 1000, n % 100003
             FROM (SELECT $lo + a.d * 1000 + b.d * 100 + c.d * 10 + e.d AS n
                   FROM digits a, digits b, digits c, digits e) x WHERE n < $ROWS"
  done
}
load sd
echo "loaded $(sd -At -c 'SELECT count(*) FROM fact') fact rows on $SHARDS shards" >&2
if [ -n "${PG_PORT:-}" ]; then
  load pg
  pg -c "ANALYZE"
fi

run() { # host port user db setting sql -> mean latency in ms
  printf '%s\n%s;\n' "$5" "$6" >"$work/q.sql"
  pgbench -h "$1" -p "$2" -U "$3" -n -c 1 -t 1 -f "$work/q.sql" "$4" >/dev/null 2>&1
  pgbench -h "$1" -p "$2" -U "$3" -n -c 1 -t "$REPEAT" -f "$work/q.sql" "$4" 2>/dev/null |
    awk '/latency average/ {print $4}'
}

if [ -n "${PG_PORT:-}" ]; then
  echo "| query | broadcast (ms) | gathered (ms) | gathered / broadcast | PostgreSQL (ms) | broadcast / PostgreSQL |"
  echo "|---|---:|---:|---:|---:|---:|"
else
  echo "| query | broadcast (ms) | gathered (ms) | gathered / broadcast |"
  echo "|---|---:|---:|---:|"
fi
while IFS= read -r q; do
  on=$(run 127.0.0.1 "$PORT" bench sharddb "SET sharddb.pushdown = on;" "$q")
  off=$(run 127.0.0.1 "$PORT" bench sharddb "SET sharddb.pushdown = off;" "$q")
  line=$(printf '| `%s` | %s | %s | %.1fx |' "$q" "$on" "$off" "$(echo "$off / $on" | bc -l)")
  if [ -n "${PG_PORT:-}" ]; then
    p=$(run "${PG_HOST:-/tmp}" "$PG_PORT" postgres postgres "" "$q")
    line+=$(printf ' %s | %.2f |' "$p" "$(echo "$on / $p" | bc -l)")
  fi
  echo "$line"
done <<'EOF2'
SELECT count(*), sum(f.v) FROM fact f JOIN dim d ON f.dim_id = d.id WHERE d.grp = 3
SELECT count(*) FROM fact f JOIN dim d ON f.dim_id = d.id WHERE d.grp = 3 AND f.v < 1000
SELECT d.grp, count(*), sum(f.v) FROM fact f JOIN dim d ON f.dim_id = d.id GROUP BY d.grp
SELECT count(*) FROM dim d LEFT JOIN fact f ON f.dim_id = d.id AND f.v = 7 WHERE d.id < 500
EOF2
