"""Real servers for the stack suite and the benchmarks: PostgreSQL, Redis, and health waits.

Plain context managers (no pytest), so `bench/` uses the same code. PostgreSQL
and Redis come from Debian's packages (scripts/install-test-deps.sh) and run
under a temporary directory on free loopback ports.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

INITDB = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
REDIS = shutil.which("redis-server")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_healthy(url: str, log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url + "/healthz", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not become healthy; see {log}")


def require_suite(ready: bool, reason: str, items: list, folder: str) -> None:
    """Skip the tests under tests/FOLDER loudly when a part is missing; in CI, fail the run."""
    if ready:
        return
    import pytest

    if os.environ.get("CI") == "true":
        raise pytest.UsageError(reason)
    for item in items:
        if item.nodeid.startswith(f"tests/{folder}/"):
            item.add_marker(pytest.mark.skip(reason=reason))


def _as_postgres(cmd: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root.
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


_POSTGRES_DATA: dict[str, Path] = {}  # URL -> data directory, for restart_postgres


@contextmanager
def postgres_server() -> Iterator[str]:
    """A throwaway PostgreSQL; yields a SQLAlchemy URL to an empty database `mms`."""
    bindir = Path(INITDB[-1]).parent
    base = Path(tempfile.mkdtemp(prefix="mms-pg-"))
    data = base / "data"
    if os.geteuid() == 0:
        shutil.chown(base, "postgres")
    port = free_port()
    subprocess.run(_as_postgres([str(bindir / "initdb"), "-D", str(data), "-U", "postgres",
                                 "--auth=trust", "-E", "UTF8", "--no-sync"]),
                   check=True, capture_output=True, timeout=120)
    options = (f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -c fsync=off "
               "-c max_connections=200")
    subprocess.run(_as_postgres([str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-w",
                                 "-l", str(data / "server.log"), "start"]),
                   check=True, capture_output=True, timeout=120)
    try:
        subprocess.run(_as_postgres([str(bindir / "createdb"), "-h", "127.0.0.1", "-p",
                                     str(port), "-U", "postgres", "mms"]),
                       check=True, capture_output=True)
        url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/mms"
        _POSTGRES_DATA[url] = data
        yield url
    finally:
        _POSTGRES_DATA.pop(f"postgresql+psycopg://postgres@127.0.0.1:{port}/mms", None)
        subprocess.run(_as_postgres([str(bindir / "pg_ctl"), "-D", str(data), "-m",
                                     "immediate", "stop"]), capture_output=True, timeout=60)
        shutil.rmtree(base, ignore_errors=True)


def restart_postgres(url: str) -> None:
    """Restart a server from postgres_server(): every open connection to it breaks."""
    pg_ctl, data = Path(INITDB[-1]).parent / "pg_ctl", _POSTGRES_DATA[url]
    # -l as at start: else the server keeps this call's output pipe open.
    subprocess.run(_as_postgres([str(pg_ctl), "-D", str(data), "-m", "fast", "-w", "-l",
                                 str(data / "server.log"), "restart"]),
                   check=True, capture_output=True, timeout=120)


@contextmanager
def redis_server() -> Iterator[str]:
    """A throwaway Redis with no persistence; yields redis://127.0.0.1:PORT."""
    import redis

    port = free_port()
    workdir = tempfile.mkdtemp(prefix="mms-redis-")
    process = subprocess.Popen([REDIS, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                "--appendonly", "no", "--dir", workdir],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client = redis.Redis(host="127.0.0.1", port=port)
        deadline = time.monotonic() + 15
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        client.close()
        yield f"redis://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=15)
        shutil.rmtree(workdir, ignore_errors=True)
