#!/usr/bin/env python3
"""Run sqllogictest (.slt) files against a PostgreSQL-protocol server.

Modes:
  check     run every record and compare with the expected results;
            prints "<file>: N passed, N failed" per file plus each mismatch.
  complete  run every record and rewrite the results of `query` records with
            what the server returned (use against real PostgreSQL to generate
            expectations, then read them).

The file format follows the Rust `sqllogictest` crate (0.29) parser:
records are separated by blank lines, `#` starts a comment line, and the
supported records are

  statement ok
  statement error <regex>
  query <types> [nosort|rowsort|valuesort] [label]
  query error <regex>
  hash-threshold <n>        (ignored)
  halt

Value formatting (shared with the sharddb Rust runner):
  * a row is its column values joined by a single space;
  * SQL NULL -> `NULL`, empty string -> `(empty)`, anything else is the
    server's text output verbatim;
  * an error is rendered as `<SQLSTATE>: <primary message>` and
    `... error <regex>` records match it with an unanchored regex search.

Every SQL string is sent with the simple query protocol (libpq PQexec), so all
values arrive in PostgreSQL's text format.  Each file runs in a fresh database
(`slt_<pid>_<n>`, dropped afterwards) unless --no-fresh-db is given.

Usage:
  slt_pg.py check    [--url URL] [--no-fresh-db] FILE...
  slt_pg.py complete [--url URL] [--no-fresh-db] FILE...
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from dataclasses import dataclass, field

from psycopg import conninfo as pg_conninfo
from psycopg import pq

DEFAULT_URL = "postgresql://postgres@127.0.0.1:55432/postgres"
SORT_MODES = ("nosort", "rowsort", "valuesort")
INT_OIDS = {20, 21, 23}  # int8, int2, int4
REAL_OIDS = {700, 701, 1700}  # float4, float8, numeric


# --------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------


class SltParseError(Exception):
    pass


@dataclass
class Record:
    kind: str  # "statement" | "query" | "halt"
    line: int  # 1-based line number of the header
    header: str = ""
    sql: str = ""
    expect_error: bool = False
    error_regex: str | None = None  # None: any error; str: regex to search
    types: str = ""
    sort_mode: str = "nosort"
    label: str | None = None
    results: list[str] = field(default_factory=list)
    # 0-based line indexes used by `complete` to rewrite the file
    header_idx: int = 0
    sql_end_idx: int = 0  # index one past the last SQL line
    results_span: tuple[int, int] | None = None  # [start, end) of result lines


def split_lines(text: str) -> list[str]:
    """Split like Rust's str::lines(): on \\n, dropping a trailing \\r."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [ln[:-1] if ln.endswith("\r") else ln for ln in lines]


def parse(lines: list[str]) -> list[Record]:
    records: list[Record] = []
    i = 0
    n = len(lines)
    while i < n:
        line = lines[i]
        if line.startswith("#") or line == "":
            i += 1
            continue
        tokens = line.split()
        if not tokens:
            i += 1
            continue
        head = tokens[0]
        if head == "hash-threshold" and len(tokens) == 2:
            i += 1
            continue
        if tokens == ["halt"]:
            records.append(Record("halt", i + 1, header=line, header_idx=i))
            i += 1
            continue
        if head not in ("statement", "query"):
            raise SltParseError(f"line {i + 1}: unsupported record: {line!r}")

        rec = Record(head, i + 1, header=line, header_idx=i)
        rest = tokens[1:]
        if head == "statement":
            if rest == ["ok"]:
                pass
            elif rest and rest[0] == "error":
                rec.expect_error = True
                rec.error_regex = " ".join(rest[1:]) or None
            else:
                raise SltParseError(f"line {i + 1}: bad statement header: {line!r}")
        else:
            if rest and rest[0] == "error":
                rec.expect_error = True
                rec.error_regex = " ".join(rest[1:]) or None
            elif rest:
                rec.types = rest[0]
                more = rest[1:]
                if more and more[0] in SORT_MODES:
                    rec.sort_mode = more.pop(0)
                if more:
                    rec.label = more.pop(0)
                if more:
                    raise SltParseError(f"line {i + 1}: bad query header: {line!r}")
            else:
                raise SltParseError(f"line {i + 1}: query without types: {line!r}")

        if rec.error_regex is not None:
            try:
                re.compile(rec.error_regex)
            except re.error as e:
                raise SltParseError(f"line {i + 1}: bad error regex: {e}") from None

        # SQL: following lines up to a blank line or the "----" delimiter.
        i += 1
        if i >= n:
            raise SltParseError(f"line {i}: unexpected end of file")
        sql_lines = [lines[i]]
        i += 1
        has_results = False
        while i < n and lines[i] != "":
            if lines[i] == "----":
                has_results = True
                break
            sql_lines.append(lines[i])
            i += 1
        rec.sql = "\n".join(sql_lines)
        rec.sql_end_idx = i
        if has_results:
            i += 1  # skip "----"
            start = i
            while i < n and lines[i] != "":
                i += 1
            if rec.expect_error:
                if rec.error_regex is not None:
                    raise SltParseError(
                        f"line {rec.line}: error record has both an inline "
                        "message and a result block"
                    )
                # multi-line error: the whole message must match exactly
                rec.error_regex = "^" + re.escape("\n".join(lines[start:i]).strip()) + "$"
            elif rec.kind == "statement":
                raise SltParseError(f"line {rec.line}: statement with results")
            rec.results = lines[start:i]
            rec.results_span = (start, i)
        records.append(rec)
    return records


# --------------------------------------------------------------------------
# Executing
# --------------------------------------------------------------------------


@dataclass
class Outcome:
    error: str | None = None
    has_rows: bool = False
    oids: list[int] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)


def format_value(raw: bytes | None) -> str:
    if raw is None:
        return "NULL"
    if raw == b"":
        return "(empty)"
    return raw.decode("utf-8")


def error_string(res: pq.PGresult | None, conn: pq.PGconn) -> str:
    if res is not None:
        state = res.error_field(pq.DiagnosticField.SQLSTATE)
        msg = res.error_field(pq.DiagnosticField.MESSAGE_PRIMARY)
        if state and msg:
            return f"{state.decode()}: {msg.decode()}"
        if res.error_message:
            return res.error_message.decode().strip()
    return conn.error_message.decode().strip() or "unknown error"


def execute(conn: pq.PGconn, sql: str) -> Outcome:
    """Send one record's SQL with the simple query protocol."""
    res = conn.exec_(sql.encode("utf-8"))
    status = res.status
    if status == pq.ExecStatus.TUPLES_OK:
        rows = [
            [format_value(res.get_value(r, c)) for c in range(res.nfields)]
            for r in range(res.ntuples)
        ]
        oids = [res.ftype(c) for c in range(res.nfields)]
        return Outcome(has_rows=True, oids=oids, rows=rows)
    if status in (pq.ExecStatus.COMMAND_OK, pq.ExecStatus.EMPTY_QUERY):
        return Outcome()
    return Outcome(error=error_string(res, conn))


def connect(conninfo: str) -> pq.PGconn:
    conn = pq.PGconn.connect(conninfo.encode())
    if conn.status != pq.ConnStatus.OK:
        raise RuntimeError(f"cannot connect: {conn.error_message.decode().strip()}")
    return conn


def admin_exec(conn: pq.PGconn, sql: str) -> None:
    out = execute(conn, sql)
    if out.error:
        raise RuntimeError(f"{sql}: {out.error}")


# --------------------------------------------------------------------------
# Comparing
# --------------------------------------------------------------------------


def types_for(oids: list[int]) -> str:
    return "".join("I" if o in INT_OIDS else "R" if o in REAL_OIDS else "T" for o in oids)


def result_lines(rec: Record, rows: list[list[str]]) -> list[str]:
    """Rows rendered the way the Rust crate renders them after sorting."""
    if rec.sort_mode == "rowsort":
        rows = sorted(rows)  # element-wise, as Vec<Vec<String>>::sort
    elif rec.sort_mode == "valuesort":
        rows = sorted([v] for row in rows for v in row)
    return [" ".join(row) for row in rows]


def lint(rec: Record, rows: list[list[str]]) -> list[str]:
    """Warnings about results that other runners (or editors) would mangle."""
    warnings = []
    for row in rows:
        for v in row:
            if v.isspace():
                warnings.append(
                    f"value {v!r} is all whitespace (the Rust crate's normalizer turns it into "
                    "an empty column)"
                )
            elif any(ch in v for ch in "\n\r\t"):
                warnings.append(f"value {v!r} contains a newline, carriage return or tab")
        line = " ".join(row)
        if line != line.strip():
            warnings.append(f"result line {line!r} has leading or trailing whitespace")
    if rec.sort_mode == "rowsort":
        by_vec = [" ".join(r) for r in sorted(rows)]
        if by_vec != sorted(by_vec):
            warnings.append(
                "rowsort order differs between element-wise and whole-line sorting; "
                "avoid spaces in non-final columns"
            )
    return warnings


@dataclass
class Failure:
    line: int
    sql: str
    message: str
    warning: bool = False  # warnings are reported but do not fail the file


def check_record(rec: Record, out: Outcome) -> str | None:
    """Return None if `out` satisfies `rec`, else a description."""
    if rec.expect_error:
        if out.error is None:
            return "expected an error, but it succeeded"
        if rec.error_regex is not None and not re.search(rec.error_regex, out.error):
            return f"error mismatch\n  expected /{rec.error_regex}/\n  actual   {out.error}"
        return None
    if out.error is not None:
        return f"unexpected error: {out.error}"
    if rec.kind == "statement":
        return None
    if not out.has_rows:
        return "query returned no result set"
    problems = []
    if len(rec.types) != len(out.oids):
        problems.append(f"column count: expected {len(rec.types)}, got {len(out.oids)}")
    actual = result_lines(rec, out.rows)
    if actual != rec.results:
        problems.append(
            "result mismatch\n  expected:\n"
            + "".join(f"    {ln}\n" for ln in rec.results)
            + "  actual:\n"
            + "".join(f"    {ln}\n" for ln in actual).rstrip("\n")
        )
    return "\n".join(problems) or None


# --------------------------------------------------------------------------
# Driving
# --------------------------------------------------------------------------


class FreshDatabase:
    """Context manager: a connection to a newly created database."""

    counter = 0

    def __init__(self, url: str, fresh: bool):
        self.url = url
        self.fresh = fresh
        self.dbname = None
        self.conn = None

    def __enter__(self) -> pq.PGconn:
        if self.fresh:
            FreshDatabase.counter += 1
            self.dbname = f"slt_{os.getpid()}_{FreshDatabase.counter}"
            admin = connect(self.url)
            try:
                admin_exec(admin, f'DROP DATABASE IF EXISTS "{self.dbname}"')
                admin_exec(admin, f'CREATE DATABASE "{self.dbname}"')
            finally:
                admin.finish()
            self.conn = connect(pg_conninfo.make_conninfo(self.url, dbname=self.dbname))
        else:
            self.conn = connect(self.url)
        return self.conn

    def __exit__(self, *exc) -> None:
        if self.conn is not None:
            self.conn.finish()
        if self.fresh and self.dbname:
            admin = connect(self.url)
            try:
                admin_exec(admin, f'DROP DATABASE IF EXISTS "{self.dbname}" WITH (FORCE)')
            finally:
                admin.finish()


def run_file(path: str, mode: str, url: str, fresh: bool) -> tuple[int, list[Failure]]:
    with open(path, encoding="utf-8") as f:
        text = f.read()
    lines = split_lines(text)
    records = parse(lines)

    passed = 0
    failures: list[Failure] = []
    # complete mode: header_idx -> (record, type letters, result lines)
    edits: dict[int, tuple[Record, str, list[str]]] = {}

    with FreshDatabase(url, fresh) as conn:
        for rec in records:
            if rec.kind == "halt":
                break
            out = execute(conn, rec.sql)
            if rec.kind == "query" and out.has_rows:
                for w in lint(rec, out.rows):
                    failures.append(Failure(rec.line, rec.sql, f"warning: {w}", warning=True))
                if mode == "complete" and not rec.expect_error:
                    types = rec.types
                    if len(types) != len(out.oids):
                        types = types_for(out.oids)
                    edits[rec.header_idx] = (rec, types, result_lines(rec, out.rows))
                    passed += 1
                    continue
            problem = check_record(rec, out)
            if problem is None:
                passed += 1
            else:
                failures.append(Failure(rec.line, rec.sql, problem))

    if mode == "complete" and edits:
        rewrite(path, lines, edits, text.endswith("\n"))
    return passed, failures


def rewrite(
    path: str,
    lines: list[str],
    edits: dict[int, tuple[Record, str, list[str]]],
    trailing_newline: bool,
) -> None:
    """Rewrite `path` with new headers/results for the edited query records."""
    out: list[str] = []
    i = 0
    n = len(lines)
    while i < n:
        if i not in edits:
            out.append(lines[i])
            i += 1
            continue
        rec, types, results = edits[i]
        header = ["query", types]
        if rec.sort_mode != "nosort" or "nosort" in rec.header.split():
            header.append(rec.sort_mode)
        if rec.label:
            header.append(rec.label)
        out.append(" ".join(header))
        out.extend(lines[i + 1 : rec.sql_end_idx])
        out.append("----")
        out.extend(results)
        i = rec.results_span[1] if rec.results_span else rec.sql_end_idx
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(out) + ("\n" if trailing_newline else ""))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("mode", choices=("check", "complete"))
    ap.add_argument("files", nargs="+", metavar="FILE")
    ap.add_argument("--url", default=DEFAULT_URL, help=f"server URL (default {DEFAULT_URL})")
    ap.add_argument(
        "--no-fresh-db",
        dest="fresh",
        action="store_false",
        help="run in the database named by --url instead of a fresh slt_<n> database",
    )
    args = ap.parse_args(argv)

    total_pass = total_fail = 0
    for path in args.files:
        try:
            passed, failures = run_file(path, args.mode, args.url, args.fresh)
        except (OSError, SltParseError, RuntimeError) as e:
            print(f"{path}: ERROR: {e}")
            total_fail += 1
            continue
        real = [f for f in failures if not f.warning]
        for f in failures:
            sql = f.sql if len(f.sql) < 400 else f.sql[:400] + "..."
            print(f"{path}:{f.line}: {f.message}\n  sql: {sql}")
        print(f"{path}: {passed} passed, {len(real)} failed")
        total_pass += passed
        total_fail += len(real)
    if len(args.files) > 1:
        print(f"total: {total_pass} passed, {total_fail} failed")
    return 1 if total_fail else 0


if __name__ == "__main__":
    sys.exit(main())
