#!/usr/bin/env bash
# End-to-end comparison with PostgreSQL in the same run: pgbench drives point selects, point
# inserts and point updates over the wire against sharddb and against a scratch local PostgreSQL,
# both durable (sharddb --sync fsync; PostgreSQL fsync=on, synchronous_commit=on), and prints
# transactions per second and the sharddb/PostgreSQL ratio as a Markdown table.
#
#   ./tools/bench_vs_pg.sh                 # 10 s per workload, 2 clients, 10,000 rows
#   SECONDS_PER=30 CLIENTS=4 ROWS=100000 ./tools/bench_vs_pg.sh
#
# Needs pgbench, psql, initdb and pg_ctl (PostgreSQL 15 on this machine); run as root or as a
# user that may run initdb. Builds the release binary first.
set -euo pipefail

SECONDS_PER=${SECONDS_PER:-10}
CLIENTS=${CLIENTS:-2}
ROWS=${ROWS:-10000}
SDB_PORT=${SDB_PORT:-5439}
PG_PORT=${PG_PORT:-55439}

for tool in pgbench psql; do
  command -v "$tool" >/dev/null || { echo "skipping: $tool not installed" >&2; exit 0; }
done
PG_BIN=$(dirname "$(command -v pg_ctl 2>/dev/null || ls /usr/lib/postgresql/*/bin/pg_ctl | tail -n1)")

cd "$(dirname "$0")/.."
cargo build --release --quiet

work=$(mktemp -d /tmp/sharddb-bench.XXXXXX)
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

# sharddb, durable defaults.
./target/release/sharddb --data-dir "$work/sdb" --listen "127.0.0.1:$SDB_PORT" >"$work/sdb.out" 2>"$work/sdb.log" &
sdb_pid=$!
for _ in $(seq 50); do grep -q listening "$work/sdb.out" 2>/dev/null && break; sleep 0.1; done

# A scratch PostgreSQL with its durable defaults.
as_pg "$PG_BIN/initdb" -D "$work/pg" -A trust >/dev/null
as_pg "$PG_BIN/pg_ctl" -D "$work/pg" -o "-p $PG_PORT -k $work -c listen_addresses=127.0.0.1" -l "$work/pg.log" -w start >/dev/null

SDB=(-h 127.0.0.1 -p "$SDB_PORT" -U sharddb sharddb)
PG=(-h 127.0.0.1 -p "$PG_PORT" -U postgres postgres)

load() {
  psql -q -v ON_ERROR_STOP=1 "$@" -c "CREATE TABLE kv (k bigint PRIMARY KEY, v text)"
  python3 - "$ROWS" >"$work/load.sql" <<'PY'
import sys
n = int(sys.argv[1])
for start in range(1, n + 1, 1000):
    rows = ",".join(f"({k}, 'value-{k}')" for k in range(start, min(start + 1000, n + 1)))
    print(f"INSERT INTO kv VALUES {rows};")
PY
  psql -q -v ON_ERROR_STOP=1 "$@" -f "$work/load.sql"
}
load "${SDB[@]}"
load "${PG[@]}"

cat >"$work/select.sql" <<EOF
\set k random(1, $ROWS)
SELECT v FROM kv WHERE k = :k;
EOF
cat >"$work/update.sql" <<EOF
\set k random(1, $ROWS)
UPDATE kv SET v = 'updated' WHERE k = :k;
EOF
# Keys far above the loaded range; a collision among 2^62 random keys is negligible.
cat >"$work/insert.sql" <<'EOF'
\set k random(1000000000, 4611686018427387903)
INSERT INTO kv VALUES (:k, 'inserted');
EOF

tps() {
  pgbench -n -f "$1" -T "$SECONDS_PER" -c "$CLIENTS" -j "$CLIENTS" "${@:2}" 2>&1 |
    awk '/^tps/ {print $3}'
}

echo "| workload | clients | sharddb tps | PostgreSQL tps | sharddb / PostgreSQL |"
echo "|---|---|---|---|---|"
for w in select insert update; do
  s=$(tps "$work/$w.sql" "${SDB[@]}")
  p=$(tps "$work/$w.sql" "${PG[@]}")
  ratio=$(python3 -c "print(f'{float(\"$s\") / float(\"$p\"):.2f}')")
  printf '| point %s | %s | %.0f | %.0f | %s |\n' "$w" "$CLIENTS" "$s" "$p" "$ratio"
done
