"""Load benchmarks on loopback: figures and ratios measured side by side in one run.

    python -m bench            # full run (make bench): SQLite and PostgreSQL, writes bench/RESULTS.md
    python -m bench --smoke    # seconds, tiny data: keeps the scripts working in CI

Everything runs on 127.0.0.1: gunicorn with the dashboard, queue workers, the
Plivo simulator, PostgreSQL and Redis (for the PostgreSQL setup), and wrk as
the load generator. Each wrk run is bounded in time. A ratio's two sides run in
alternating 2-second slices, so both see the same machine.
"""
