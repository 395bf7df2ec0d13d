#!/usr/bin/env bash
# The test command: unit, property, integration (pgwire + sqllogictest) and crash tests.
# Long runs are opt-in: SHARDDB_CRASH_ITERATIONS=50 ./tools/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo test --release "$@"
