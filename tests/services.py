"""Real servers for the browser and stack suites and the benchmarks: PostgreSQL, Redis, and
the dashboard itself as processes (Dashboard).

Plain context managers (no pytest), so `bench/` uses the same code. PostgreSQL
and Redis come from Debian's packages (scripts/install-test-deps.sh) and run
under a temporary directory on free loopback ports.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import requests

from tests.helpers import clean_environment, url

INITDB = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
REDIS = shutil.which("redis-server")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_healthy(base_url: str, log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(base_url + url("healthz"), timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{base_url} did not become healthy; see {log}")


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


# ---- the dashboard as real processes ---------------------------------------------------------
ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Dashboard:
    """The dashboard running as it does in production: gunicorn (with gunicorn.conf.py),
    queue workers and the Plivo simulator, each its own process on loopback, sharing one
    environment. Used by the browser suite, the stack suite and the benchmarks."""

    env: dict[str, str]
    url: str
    sim_url: str
    tmp: Path
    processes: list[subprocess.Popen] = field(default_factory=list)
    web: subprocess.Popen | None = None
    workers: list[subprocess.Popen] = field(default_factory=list)

    def flask(self, *args: str, stdin: str | None = None,
              check: bool = False) -> subprocess.CompletedProcess:
        """`flask ARGS` in this environment; with check, a failure raises with its stderr."""
        result = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", *args],
                                cwd=ROOT, env=self.env, input=stdin, capture_output=True,
                                text=True, timeout=600)
        if check and result.returncode:
            raise RuntimeError(f"flask {' '.join(args)}: {result.stderr[-2000:]}")
        return result

    def spawn(self, *cmd: str) -> subprocess.Popen:
        with (self.tmp / "processes.log").open("a") as log:
            process = subprocess.Popen(list(cmd), cwd=ROOT, env=self.env, stdout=log,
                                       stderr=log)
        self.processes.append(process)
        return process

    def start_simulator(self, *options: str) -> None:
        self.spawn(sys.executable, "-m", "flask", "--app", "wsgi", "plivo-simulator", *options)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                requests.get(self.sim_url + "/__sim/requests", timeout=1)
                return
            except requests.RequestException:
                time.sleep(0.2)
        raise RuntimeError(f"the simulator did not start; see {self.tmp / 'processes.log'}")

    def start_web(self, *options: str) -> None:
        """gunicorn as in production (gunicorn.conf.py); `options` add to it."""
        self.web = self.spawn(sys.executable, "-m", "gunicorn", "--bind",
                              self.url.removeprefix("http://"), *options, "wsgi:app")
        wait_until_healthy(self.url, self.tmp / "processes.log")

    def start_worker(self, threads: int = 10) -> subprocess.Popen:
        worker = self.spawn(sys.executable, "-m", "flask", "--app", "wsgi", "worker",
                            "--threads", str(threads))
        self.workers.append(worker)
        return worker

    def web_worker_pids(self) -> list[int]:
        path = Path(f"/proc/{self.web.pid}/task/{self.web.pid}/children")
        return [int(pid) for pid in path.read_text().split()]

    def sim_requests(self) -> list[dict]:
        """Every send request the simulator received, in order."""
        return requests.get(self.sim_url + "/__sim/requests", timeout=30).json()["requests"]

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes.clear()
        self.workers.clear()
        self.web = None


FAST_NUMBER_LIMITS = "+14155550100=1000/s"


@contextmanager
def dashboard_processes(settings: dict[str, str], tmp: Path,
                        scrub: tuple[str, ...] = ()) -> Iterator[Dashboard]:
    """A Dashboard with `settings` over a clean environment (see clean_environment; `scrub`
    adds prefixes), on free loopback ports. Nothing is started yet: the caller prepares
    the database and starts what it needs; everything started is stopped on the way out.
    PUBLIC_BASE_URL defaults to the web address; with Plivo credentials in `settings`
    the SDK is pointed at the simulator."""
    web_port, sim_port = free_port(), free_port()
    web_url, sim_url = f"http://127.0.0.1:{web_port}", f"http://127.0.0.1:{sim_port}"
    # The test suite's fast Plivo: the simulator dispatches at once and the dashboard keeps
    # no pace of its own (a test of the real pace says so in `settings`).
    env = clean_environment(*scrub, INSTANCE_PATH=str(tmp), SIMULATOR_PORT=str(sim_port),
                            PUBLIC_BASE_URL=web_url, SIMULATOR_PACE="fast",
                            PLIVO_MMS_MPS="1000", PLIVO_NUMBER_LIMITS=FAST_NUMBER_LIMITS)
    if "PLIVO_AUTH_ID" in settings:
        env["PLIVO_API_URL"] = sim_url
    env.update(settings)
    dashboard = Dashboard(env=env, url=web_url, sim_url=sim_url, tmp=tmp)
    try:
        yield dashboard
    finally:
        dashboard.stop_all()
