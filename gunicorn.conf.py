"""gunicorn settings for production: `gunicorn wsgi:app` reads this file from the working directory.

Sync workers, one request per process at a time. Measured on 2 cores with
`make bench` (SQLite, 100,000 messages): threaded workers (`--threads 4`) lost
a third of the status-callback throughput and raised its p99 from ~30 ms to
~190 ms, because the threads of one process queue on the GIL and on SQLite's
single writer. The dashboard's requests are short and CPU-bound; Plivo is
never called on the request path, so no request waits on the network.

Every value can be overridden on the command line or with GUNICORN_CMD_ARGS.
"""

import gc
import os

bind = "127.0.0.1:8000"  # behind a TLS-terminating proxy; override with --bind

# One process per core plus one to cover the moments a worker waits on the
# database. WEB_CONCURRENCY (the usual platform convention) wins.
workers = int(os.environ.get("WEB_CONCURRENCY") or (os.cpu_count() or 1) + 1)
worker_class = "sync"

# A request that takes this long is stuck: the worker is killed and replaced.
timeout = 30
graceful_timeout = 20
# Behind a proxy, connections are kept alive by the proxy, not by gunicorn.
keepalive = 2

# No max_requests recycling: worker RSS stays flat over a mixed run (see
# bench/RESULTS.md), and each restart would cost a request ~0.5 s of imports.

# Access logs go to the proxy; gunicorn reports only its own errors. The
# application logs (JSON in production) go to stderr as well.
accesslog = None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()


def on_starting(server):
    """Check the settings once in the master, and refuse per-process rate limits
    with several workers in production: each worker would count login attempts
    and sends on its own."""
    from webapp.config import ConfigError, load_settings

    try:
        settings = load_settings()
    except ConfigError as exc:
        raise SystemExit(f"Configuration error: {exc}") from None
    if (settings.production and server.cfg.workers > 1
            and settings.ratelimit_storage_uri.startswith("memory://")):
        raise SystemExit(
            f"Configuration error: RATELIMIT_STORAGE_URI: {server.cfg.workers} gunicorn workers "
            "cannot share memory:// rate limits; set redis://... or WEB_CONCURRENCY=1")


def post_worker_init(worker):
    """Freeze every object the app made at start (~150,000) out of the garbage
    collector's reach: a full collection then scans only what requests made. Before,
    one took 80-125 ms and stalled every request queued behind it; after, ~1 ms
    (compose POST max latency 86 -> 23 ms over 3,000 requests, in-process)."""
    gc.freeze()
