#!/usr/bin/env bash
# Pushdown benchmark (sql/pushdown.rs): scatter-gather queries over a ROWS-row table with the
# work pushed to the shards (`sharddb.pushdown = on`, the default) and gathered to the
# coordinator first (`off`), plus a point query for comparison. Prints mean latency per query
# (pgbench, one client, REPEAT runs each after one warm-up run) as a Markdown table.
#
#   ./tools/pushdown_bench.sh                    # 1,000,000 rows, 4 shards, 5 runs per query
#   ROWS=100000 SHARDS=8 REPEAT=10 ./tools/pushdown_bench.sh
#
# Needs pgbench and psql. Builds the release binary first (set SHARDDB_BIN to skip that).
set -euo pipefail

ROWS=${ROWS:-1000000}
SHARDS=${SHARDS:-4}
REPEAT=${REPEAT:-5}
PORT=${PORT:-5441}

for tool in pgbench psql; do
  command -v "$tool" >/dev/null || { echo "skipping: $tool not installed" >&2; exit 0; }
done
cd "$(dirname "$0")/.."
if [ -z "${SHARDDB_BIN:-}" ]; then
  cargo build --release --quiet
  SHARDDB_BIN=${CARGO_TARGET_DIR:-target}/release/sharddb
fi

work=$(mktemp -d /tmp/sharddb-pushdown.XXXXXX)
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

"$SHARDDB_BIN" --listen "127.0.0.1:$PORT" --data-dir "$work/data" --shards "$SHARDS" \
  --sync none --statement-mem-mb 4096 >"$work/log" 2>&1 &
pid=$!
psql_() { psql -h 127.0.0.1 -p "$PORT" -U bench -d sharddb -q -v ON_ERROR_STOP=1 "$@"; }
for _ in $(seq 50); do psql_ -c 'SELECT 1' >/dev/null 2>&1 && break; sleep 0.1; done

# big(id, g, v, s): g has 100 groups, v is a pseudo-random int, s a short text
psql_ -c "CREATE TABLE big (id int PRIMARY KEY, g int, v int, s text)"
psql_ -c "CREATE TABLE digits (d int PRIMARY KEY)"
psql_ -c "INSERT INTO digits VALUES (0),(1),(2),(3),(4),(5),(6),(7),(8),(9)"
batch=10000
for ((lo = 0; lo < ROWS; lo += batch)); do
  psql_ -c "INSERT INTO big SELECT n, n % 100, (n::bigint * 7919) % 100003, 's' || (n % 1000)
            FROM (SELECT $lo + a.d * 1000 + b.d * 100 + c.d * 10 + e.d AS n
                  FROM digits a, digits b, digits c, digits e) x WHERE n < $ROWS"
done
echo "loaded $(psql_ -At -c 'SELECT count(*) FROM big') rows on $SHARDS shards" >&2

run() { # mode sql -> mean latency in ms
  printf 'SET sharddb.pushdown = %s;\n%s;\n' "$1" "$2" >"$work/q.sql"
  pgbench -h 127.0.0.1 -p "$PORT" -U bench -n -c 1 -t 1 -f "$work/q.sql" sharddb >/dev/null 2>&1
  pgbench -h 127.0.0.1 -p "$PORT" -U bench -n -c 1 -t "$REPEAT" -f "$work/q.sql" sharddb 2>/dev/null |
    awk '/latency average/ {print $4}'
}

echo "| query | pushdown on (ms) | pushdown off (ms) | speedup |"
echo "|---|---:|---:|---:|"
while IFS= read -r q; do
  on=$(run on "$q")
  off=$(run off "$q")
  printf '| `%s` | %s | %s | %.1fx |\n' "$q" "$on" "$off" "$(echo "$off / $on" | bc -l)"
done <<'EOF'
SELECT count(*), sum(v), avg(v), min(s), max(s) FROM big
SELECT g, count(*), sum(v), avg(v) FROM big GROUP BY g
SELECT count(DISTINCT s) FROM big
SELECT g, count(*) FROM big WHERE v < 10000 GROUP BY g
SELECT DISTINCT g FROM big
SELECT id, v FROM big ORDER BY v DESC, id LIMIT 10
SELECT id, v FROM big ORDER BY v, id LIMIT 10 OFFSET 1000
SELECT * FROM big WHERE id = 12345
EOF
