"""The production stack: PostgreSQL and Redis on loopback, gunicorn, several queue workers.

PostgreSQL and Redis come from Debian's packages (scripts/install-test-deps.sh)
and are started here under a temporary directory on free loopback ports, then
stopped. Outside CI a missing server skips the suite with its reason; with
CI=true it fails the run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from ..services import (
    INITDB,
    REDIS,
    free_port,
    postgres_server,
    redis_server,
    require_suite,
    wait_until_healthy,
)

ROOT = Path(__file__).resolve().parents[2]


def pytest_collection_modifyitems(config, items):
    missing = [name for name, found in (("PostgreSQL", INITDB), ("Redis", REDIS)) if not found]
    require_suite(not missing, f"{' and '.join(missing)} not installed: the production-stack "
                  "suite did not run. Install with scripts/install-test-deps.sh (Debian: "
                  "postgresql, redis-server).", items, "stack")


@pytest.fixture(scope="session")
def postgres() -> Iterator[str]:
    with postgres_server() as url:
        yield url


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    with redis_server() as url:
        yield url


@dataclass
class ProductionStack:
    url: str
    sim_url: str
    env: dict[str, str]
    gunicorn: subprocess.Popen
    workers: list[subprocess.Popen]
    logs: object
    others: list[subprocess.Popen] = field(default_factory=list)

    def flask(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", *args], cwd=ROOT,
                              env=self.env, input=stdin, capture_output=True, text=True,
                              timeout=120)

    def start_worker(self) -> subprocess.Popen:
        worker = subprocess.Popen([sys.executable, "-m", "flask", "--app", "wsgi", "worker",
                                   "--threads", "8"], cwd=ROOT, env=self.env,
                                  stdout=self.logs, stderr=self.logs)
        self.workers.append(worker)
        return worker

    def web_worker_pids(self) -> list[int]:
        children = Path(f"/proc/{self.gunicorn.pid}/task/{self.gunicorn.pid}/children")
        return [int(pid) for pid in children.read_text().split()]

    def sim_requests(self) -> list[dict]:
        return requests.get(self.sim_url + "/__sim/requests", timeout=10).json()["requests"]


@pytest.fixture(scope="session")
def production(postgres, redis_url, tmp_path_factory) -> Iterator[ProductionStack]:
    tmp = tmp_path_factory.mktemp("stack")
    web_port, sim_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PLIVO_", "APP_ENV"))}
    env.update({
        "APP_ENV": "testing", "BCRYPT_ROUNDS": "4", "INSTANCE_PATH": str(tmp),
        "SECRET_KEY": "stack-" + "k" * 40, "DATABASE_URL": postgres,
        "RATELIMIT_STORAGE_URI": redis_url + "/0", "TASK_QUEUE_URL": redis_url + "/1",
        "TRUSTED_PROXIES": "0", "SIMULATOR_PORT": str(sim_port),
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{web_port}", "SENDS_PER_MINUTE_PER_USER": "10",
        "QUEUE_SWEEP_SECONDS": "1", "QUEUE_LEASE_SECONDS": "5", "LOG_LEVEL": "warning",
    })
    logs = (tmp / "processes.log").open("w")
    stack = ProductionStack(url=f"http://127.0.0.1:{web_port}",
                            sim_url=f"http://127.0.0.1:{sim_port}", env=env, gunicorn=None,
                            workers=[], logs=logs)
    upgrade = stack.flask("db", "upgrade")
    assert upgrade.returncode == 0, upgrade.stderr
    stack.others.append(subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "wsgi", "plivo-simulator",
         "--callback-delay", "0.05"], cwd=ROOT, env=env, stdout=logs, stderr=logs))
    stack.gunicorn = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--workers", "3", "--bind",
         f"127.0.0.1:{web_port}", "wsgi:app"], cwd=ROOT, env=env, stdout=logs, stderr=logs)
    stack.start_worker()
    stack.start_worker()
    try:
        wait_until_healthy(stack.url, tmp / "processes.log")
        yield stack
    finally:
        for process in [stack.gunicorn, *stack.workers, *stack.others]:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in [stack.gunicorn, *stack.workers, *stack.others]:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        logs.close()
