#!/usr/bin/env python3
"""Markdown table of the storage benchmark (benches/storage.rs): sharddb against fjall.

Reads criterion's results for the `storage` group, i.e. for every benchmark id
`storage/<workload>/<engine>` the files `target/criterion/storage/<workload>/<engine>/new/`
`benchmark.json` (id and throughput) and `estimates.json` (time per iteration, ns), and prints

    | workload | sharddb ops/s | fjall ops/s | sharddb/fjall |

ops/s = elements per iteration / time per iteration (criterion's mean estimate by default).

Usage:
    python3 tools/storage_bench_report.py [--criterion-dir DIR] [--stat mean|median]

DIR defaults to $CARGO_TARGET_DIR/criterion, else target/criterion in the repository root.
Standard library only.
"""

import argparse
import json
import os
import sys
from pathlib import Path

GROUP = "storage"
ENGINES = ("sharddb", "fjall")
# Display order; workloads not listed here follow in alphabetical order.
ORDER = (
    "fillseq",
    "fillrandom",
    "fillrandom_2threads",
    "overwrite",
    "readrandom_hit",
    "readrandom_miss",
    "readseq",
    "fsync_write_1thread",
    "fsync_write_2threads",
)


def default_criterion_dir() -> Path:
    target = os.environ.get("CARGO_TARGET_DIR")
    if target:
        return Path(target) / "criterion"
    return Path(__file__).resolve().parent.parent / "target" / "criterion"


def load(criterion_dir: Path, stat: str):
    """{workload: {engine: ops_per_sec}} from every `new/` result of the storage group."""
    results = {}
    group_dir = criterion_dir / GROUP
    for bench_json in sorted(group_dir.glob("**/new/benchmark.json")):
        new_dir = bench_json.parent
        try:
            bench = json.loads(bench_json.read_text())
            estimates = json.loads((new_dir / "estimates.json").read_text())
        except (OSError, json.JSONDecodeError) as e:
            print(f"warning: skipping {new_dir}: {e}", file=sys.stderr)
            continue
        if bench.get("group_id") != GROUP:
            continue
        workload = bench.get("function_id")
        engine = bench.get("value_str")
        throughput = bench.get("throughput") or {}
        elements = throughput.get("Elements")
        if workload is None or engine is None or elements is None:
            print(
                f"warning: skipping {new_dir}: no workload/engine/element throughput "
                f"in benchmark.json",
                file=sys.stderr,
            )
            continue
        ns = (estimates.get(stat) or {}).get("point_estimate")
        if not ns:
            print(f"warning: skipping {new_dir}: no {stat} estimate", file=sys.stderr)
            continue
        results.setdefault(workload, {})[engine] = elements / (ns / 1e9)
    return results


def fmt_ops(v):
    return "–" if v is None else f"{v:,.0f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--criterion-dir", type=Path, default=default_criterion_dir())
    ap.add_argument("--stat", choices=("mean", "median"), default="mean")
    args = ap.parse_args()

    results = load(args.criterion_dir, args.stat)
    if not results:
        print(
            f"no results for group '{GROUP}' under {args.criterion_dir}; "
            "run `cargo bench --bench storage` first",
            file=sys.stderr,
        )
        return 1

    known = [w for w in ORDER if w in results]
    extra = sorted(w for w in results if w not in ORDER)
    print(f"| workload | {ENGINES[0]} ops/s | {ENGINES[1]} ops/s | {ENGINES[0]}/{ENGINES[1]} |")
    print("|---|---:|---:|---:|")
    for workload in known + extra:
        ours = results[workload].get(ENGINES[0])
        theirs = results[workload].get(ENGINES[1])
        ratio = f"{ours / theirs:.2f}" if ours and theirs else "–"
        print(f"| {workload} | {fmt_ops(ours)} | {fmt_ops(theirs)} | {ratio} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
