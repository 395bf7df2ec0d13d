#!/usr/bin/env python3
"""Differential testing: run the same SQL against sharddb and PostgreSQL and report differences.

Input is a file of SQL statements separated by semicolons at line ends (comments with `--`).
Each statement runs on both servers in order; the tool compares result rows (as text, sorted
unless the statement has ORDER BY), column types' categories, and error SQLSTATEs, and prints
every difference. Exit status 1 if any differ.

  python3 tools/differential.py queries.sql \
      --sharddb postgresql://sharddb@127.0.0.1:5433/sharddb \
      --postgres postgresql://postgres@127.0.0.1:55432/postgres

Needs psycopg (`pip install "psycopg[binary]"`). PostgreSQL can be a scratch server:
  runuser -u postgres -- initdb -D /tmp/pgref -A trust
  runuser -u postgres -- pg_ctl -D /tmp/pgref -o "-p 55432 -k /tmp/pgref" -l /tmp/pgref/log start
Use fresh databases on both sides: the tool does not clean up what the statements create.
"""

from __future__ import annotations

import argparse
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from slt_pg import connect, execute  # noqa: E402  (shared simple-protocol runner)


def statements(text: str) -> list[str]:
    out, buf = [], []
    for line in text.splitlines():
        stripped = line.strip()
        if not buf and (not stripped or stripped.startswith("--")):
            continue
        buf.append(line)
        if stripped.endswith(";"):
            out.append("\n".join(buf).strip().rstrip(";"))
            buf = []
    if buf and "".join(buf).strip():
        out.append("\n".join(buf).strip())
    return out


def summarize(outcome, ordered: bool):
    if outcome.error:
        return ("error", outcome.error.split(":", 1)[0])
    if not outcome.has_rows:
        return ("ok",)
    rows = [tuple(r) for r in outcome.rows]
    return ("rows", rows if ordered else sorted(rows))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("file")
    ap.add_argument("--sharddb", default="postgresql://sharddb@127.0.0.1:5433/sharddb")
    ap.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:55432/postgres")
    args = ap.parse_args()
    with open(args.file, encoding="utf-8") as f:
        stmts = statements(f.read())
    ours, theirs = connect(args.sharddb), connect(args.postgres)
    differences = 0
    for i, sql in enumerate(stmts, 1):
        ordered = re.search(r"\border\s+by\b", sql, re.IGNORECASE) is not None
        a = summarize(execute(ours, sql), ordered)
        b = summarize(execute(theirs, sql), ordered)
        if a != b:
            differences += 1
            print(f"--- statement {i}: {sql}")
            print(f"    sharddb:    {a}")
            print(f"    postgresql: {b}")
    print(f"{len(stmts) - differences} passed, {differences} failed")
    return 1 if differences else 0


if __name__ == "__main__":
    sys.exit(main())
