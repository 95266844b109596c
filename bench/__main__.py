"""python -m bench: run the benchmarks, print the table, write bench/RESULTS.md.

    python -m bench            # full run (make bench): SQLite and PostgreSQL, writes bench/RESULTS.md
    python -m bench --smoke    # seconds, tiny data: keeps the scripts working in CI
    python -m bench --scale 10m  # PostgreSQL, 10,000,000 messages: history and searches
                                 # only (not in the default run); writes bench/RESULTS-10m.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import runpy
import shutil
import subprocess
import sys
from contextlib import ExitStack
from importlib.metadata import version
from pathlib import Path

from tests.services import INITDB, REDIS

from .chaos import measure_chaos, prepare, simulator_options
from .deployments import deployment
from .measurements import (
    Row,
    measure_batches,
    measure_callbacks,
    measure_compose_with_slow_plivo,
    measure_dispatch,
    measure_export,
    measure_history,
    measure_memory,
    measure_overview,
    measure_search,
)
from .pace import POOL, measure_pace, measure_slow_pace, pace_settings
from .pace import simulator_options as pace_options
from .replies import measure_conversations, measure_inbound

ROOT = Path(__file__).resolve().parent.parent

PARTS = ("history", "callbacks", "memory", "compose", "dispatch", "batch", "chaos", "pace",
         "replies")
SECONDS = 20  # each side of a ratio, in all; compose's run


def run(smoke: bool, only: set[str], databases: list[str]) -> list[Row]:
    # 20 s a side: with 10 s the PostgreSQL history ratio swung 0.15-0.16 between runs.
    seconds = 2 if smoke else SECONDS
    history_rows = 20_000 if smoke else 1_000_000
    callback_messages = 500 if smoke else 10_000
    dispatch_count = 100 if smoke else 1_000
    batch_count = 300 if smoke else 10_000
    memory_seconds = 6 if smoke else 120
    threads = 2_000 if smoke else 100_000
    inbound_messages = 500 if smoke else 10_000
    rows: list[Row] = []
    for database in databases:
        if only & {"history", "callbacks", "memory", "replies"}:
            with ExitStack() as stack, deployment(database, stack, database) as dep:
                dep.start_simulator()
                dep.start_web()
                dep.start_worker()
                session = None
                if "history" in only:
                    session = measure_history(dep, rows, seconds, history_rows)
                    measure_search(dep, rows, seconds / 2, session)
                    measure_export(dep, rows, session, history_rows)
                    measure_overview(dep, rows, seconds / 2, history_rows)
                # Beside the history's million messages. The smoke runs it on SQLite only
                # (CI time; tests/stack posts 1,000 replies at once on PostgreSQL).
                if "replies" in only and not (smoke and database == "postgresql"):
                    session = session or measure_history(dep, rows, seconds, history_rows)
                    measure_conversations(dep, rows, seconds / 2, threads, session)
                    measure_inbound(dep, rows, seconds, inbound_messages)
                if "callbacks" in only:
                    measure_callbacks(dep, rows, seconds, callback_messages)
                if "memory" in only:
                    measure_memory(dep, rows, memory_seconds)
        if "compose" in only:
            with ExitStack() as stack, deployment(database, stack, database) as dep:
                dep.start_simulator("--latency", "2")
                dep.start_web()
                dep.start_worker()
                measure_compose_with_slow_plivo(dep, rows, seconds)
        if "dispatch" in only:
            with ExitStack() as stack, deployment(database, stack, database) as dep:
                dep.start_simulator("--rate-per-5s", "300")
                dep.start_web()
                # PostgreSQL + Redis: two worker processes share the Redis rate limit,
                # as they would on two machines. SQLite: one process (memory limits).
                for _ in range(2 if database == "postgresql" else 1):
                    dep.start_worker(threads=10)
                measure_dispatch(dep, rows, dispatch_count)
        if "batch" in only:
            with ExitStack() as stack, deployment(database, stack, database) as dep:
                dep.start_simulator("--rate-per-5s", "300")
                dep.start_web()
                for _ in range(2 if database == "postgresql" else 1):
                    dep.start_worker(threads=10)
                measure_batches(dep, rows, batch_count, seconds / 2)
        if "chaos" in only:
            with ExitStack() as stack, deployment(database, stack, database) as dep:
                prepare(dep)
                dep.start_simulator(*simulator_options())
                dep.start_web()
                for _ in range(2 if database == "postgresql" else 1):
                    dep.start_worker()
                # smoke: no kill (its unknown messages take minutes to settle)
                measure_chaos(dep, rows, 100 if smoke else 1_000, kill=not smoke)
        # Plivo's real pace (issue 34): the simulator's queue. The smoke runs it on SQLite
        # only (CI time; tests/stack covers the pace shared through Redis).
        if "pace" in only and not (smoke and database == "postgresql"):
            for mps, numbers, per_second, count, measure in (
                    (50, POOL, 10, 200 if smoke else 10_000, measure_pace),
                    (2, POOL[:1], 2, 30 if smoke else 600, measure_slow_pace)):
                with ExitStack() as stack, deployment(database, stack, database) as dep:
                    dep.env.update(pace_settings(mps, numbers, per_second, 60))
                    dep.start_simulator(*pace_options(mps, numbers, per_second, 60))
                    dep.start_web()
                    for _ in range(2 if database == "postgresql" else 1):
                        dep.start_worker(threads=10)
                    measure(dep, rows, count, mps)
    return rows


SCALES = {"10m": 10_000_000}


def run_at_scale(messages: int) -> list[Row]:
    """The history and every search over `messages` seeded rows on PostgreSQL: the
    searches must stay within 2 x the unfiltered page as the table grows tenfold."""
    rows: list[Row] = []
    with ExitStack() as stack, deployment("postgresql", stack, "postgresql") as dep:
        dep.name = f"postgresql, {messages:,} rows"
        dep.start_simulator()
        dep.start_web()
        dep.start_worker()
        session = measure_history(dep, rows, SECONDS, messages)
        measure_search(dep, rows, SECONDS / 2, session)
    return rows


def gunicorn_workers() -> int:
    return runpy.run_path(str(ROOT / "gunicorn.conf.py"))["workers"]


def machine() -> str:
    packages = ", ".join(f"{name} {version(name)}" for name in (
        "flask", "sqlalchemy", "gunicorn", "huey", "plivo", "psycopg"))
    wrk_version = subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout
    return (f"{os.cpu_count()} cores, {platform.machine()}, Linux {platform.release()}, "
            f"Python {platform.python_version()}; {packages}; "
            f"{wrk_version.split(' Copyright')[0].strip()}; "
            f"{dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}")


def table(rows: list[Row]) -> str:
    lines = ["| setup | metric | value | target | ratio | pass |", "|---|---|---|---|---|---|"]
    for r in rows:
        verdict = "" if r.passed is None else ("pass" if r.passed else "**FAIL**")
        ratio = "" if r.ratio is None else f"{r.ratio:.2f}"
        lines.append(f"| {r.setup} | {r.metric} | {r.value:,.1f} {r.unit} | {r.target} | "
                     f"{ratio} | {verdict} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny, quick run; no RESULTS.md")
    parser.add_argument("--only", action="append", choices=PARTS,
                        help="run only these parts (repeatable); no RESULTS.md")
    parser.add_argument("--database", action="append", choices=("sqlite", "postgresql"),
                        help="only this database (repeatable); no RESULTS.md")
    parser.add_argument("--scale", choices=tuple(SCALES),
                        help="PostgreSQL with this many messages: history and searches only; "
                             "writes bench/RESULTS-<scale>.md")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        print("wrk is not installed: run scripts/install-test-deps.sh", file=sys.stderr)
        return 2
    databases = args.database or (["sqlite"] + (["postgresql"] if INITDB and REDIS else []))
    if "postgresql" in databases and not (INITDB and REDIS):
        print("PostgreSQL and Redis are not installed: run scripts/install-test-deps.sh",
              file=sys.stderr)
        return 2
    if args.scale:
        if not (INITDB and REDIS):
            print("PostgreSQL and Redis are not installed: run scripts/install-test-deps.sh",
                  file=sys.stderr)
            return 2
        rows = run_at_scale(SCALES[args.scale])
        report = table(rows)
        print(report)
        (ROOT / "bench" / f"RESULTS-{args.scale}.md").write_text(
            f"# Benchmark results at {SCALES[args.scale]:,} messages\n\nMachine: {machine()}"
            f"\n\nProduced by `python -m bench --scale {args.scale}` (not part of `make "
            f"bench`): PostgreSQL with the production settings of bench/RESULTS.md, the history "
            f"page and every search of the default run over {SCALES[args.scale]:,} seeded "
            f"messages, each search's p95 against the unfiltered first page's p95 measured in "
            f"alternating slices.\n\n{report}\n")
        print(f"\nwritten to bench/RESULTS-{args.scale}.md")
        return 0
    rows = run(args.smoke, set(args.only or PARTS), databases)
    report = table(rows)
    print(report)
    if not args.smoke and not args.only and not args.database:
        (ROOT / "bench" / "RESULTS.md").write_text(
            f"# Benchmark results\n\nMachine: {machine()}\n\nProduced by `make bench` "
            f"(`python -m bench`). Each load run is wrk with 2 threads and 16 connections "
            f"on 127.0.0.1, bounded in time. The two sides of a ratio run in alternating "
            f"2-second slices ({SECONDS} s each in all), so both see the same machine; latency "
            f"percentiles are the slices' figures weighted by their requests.\n\n"
            f"The dashboard runs with its production settings: `APP_ENV=production`, "
            f"gunicorn with `gunicorn.conf.py` ({gunicorn_workers() if REDIS else 1} sync "
            f"workers here), rate limits in {'Redis' if REDIS else 'memory'}, "
            f"a made-up Plivo account whose API is the simulator, "
            f"an https `PUBLIC_BASE_URL` that signed callbacks are checked against, and "
            f"the media probe off (no internet).\n\n"
            f"{report}\n")
        print("\nwritten to bench/RESULTS.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
