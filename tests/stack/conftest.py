"""The production stack: PostgreSQL and Redis on loopback, gunicorn, several queue workers.

PostgreSQL and Redis come from Debian's packages (scripts/install-test-deps.sh)
and are started here under a temporary directory on free loopback ports, then
stopped. Outside CI a missing server skips the suite with its reason; with
CI=true it fails the run.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.services import (
    INITDB,
    REDIS,
    Dashboard,
    dashboard_processes,
    postgres_server,
    redis_server,
    require_suite,
)


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


@pytest.fixture(scope="session")
def production(postgres, redis_url, tmp_path_factory) -> Iterator[Dashboard]:
    """gunicorn (3 workers), 2 queue workers and the simulator on PostgreSQL and Redis."""
    tmp = tmp_path_factory.mktemp("stack")
    settings = {
        "APP_ENV": "testing", "BCRYPT_ROUNDS": "4", "SECRET_KEY": "stack-" + "k" * 40,
        "DATABASE_URL": postgres, "RATELIMIT_STORAGE_URI": redis_url + "/0",
        "TASK_QUEUE_URL": redis_url + "/1", "TRUSTED_PROXIES": "0",
        "SENDS_PER_MINUTE_PER_USER": "10", "QUEUE_SWEEP_SECONDS": "1",
        "QUEUE_LEASE_SECONDS": "5", "LOG_LEVEL": "warning",
    }
    with dashboard_processes(settings, tmp) as dashboard:
        dashboard.flask("db", "upgrade", check=True)
        dashboard.start_simulator("--callback-delay", "0.05")
        dashboard.start_web("--workers", "3")
        dashboard.start_worker(threads=8)
        dashboard.start_worker(threads=8)
        yield dashboard
