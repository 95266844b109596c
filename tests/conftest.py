"""Fixtures: a fresh app and database per test, users, login, the simulator, a live server."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest
import time_machine
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.serving import make_server

from tests.helpers import csrf_token_in, url
from tests.services import free_port
from webapp import create_app
from webapp.auth import service as accounts
from webapp.config import SANDBOX_AUTH_ID, SANDBOX_AUTH_TOKEN
from webapp.extensions import db
from webapp.gateway.simulator import PlivoSimulator
from webapp.models import User

PASSWORD = "correct horse battery staple"


def base_env(tmp_path, **overrides: str) -> dict[str, str]:
    env = {
        "APP_ENV": "testing",
        "INSTANCE_PATH": str(tmp_path),
        "DATABASE_URL": f"sqlite:///{tmp_path}/test.sqlite3",
        "TASK_QUEUE_URL": "memory",  # queued, never run: unit tests send nothing
        "BCRYPT_ROUNDS": "4",
        "MEDIA_PROBE": "off",
        "LOG_LEVEL": "warning",
        "PLIVO_API_URL": "http://127.0.0.1:9",  # nothing listens: unit tests never reach Plivo
        # A fast Plivo: no pace of the dashboard's own (tests of the pace set it).
        "PLIVO_MMS_MPS": "1000",
    }
    env.update(overrides)
    return env


@pytest.fixture
def make_app(tmp_path) -> Callable[..., Flask]:
    def make(**overrides: str) -> Flask:
        app = create_app(base_env(tmp_path, **overrides))
        with app.app_context():
            db.create_all()
        return app

    return make


@pytest.fixture
def app(make_app) -> Flask:
    return make_app()


@pytest.fixture
def client(app) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def make_user(app) -> Callable[..., User]:
    def make(email: str = "staff@example.com", role: str = "staff",
             password: str = PASSWORD) -> User:
        with app.app_context():
            user = accounts.create_user(email, password, role)
            db.session.refresh(user)
            db.session.expunge(user)
            return user

    return make


def csrf_token(client: FlaskClient, url: str) -> str:
    page = client.get(url)
    return csrf_token_in(page.get_data(as_text=True))


def post_form(client: FlaskClient, url: str, data: dict, form_page: str | None = None, **kwargs):
    """POST like a browser: fetch the form page for its CSRF token first."""
    token = csrf_token(client, form_page or url)
    return client.post(url, data={"csrf_token": token, **data}, **kwargs)


def login(client: FlaskClient, email: str, password: str = PASSWORD, next_url: str | None = None):
    # next_url goes in as given: the open-redirect tests send it already quoted.
    login_url = url("auth.login") + (f"?next={next_url}" if next_url else "")
    return post_form(client, login_url, {"email": email, "password": password},
                     form_page=url("auth.login"))


@pytest.fixture
def login_as(client, make_user) -> Callable[..., User]:
    def do(role: str = "staff", email: str | None = None) -> User:
        user = make_user(email or f"{role}@example.com", role)
        response = login(client, user.email)
        assert response.status_code == 303, response.get_data(as_text=True)[:500]
        return user

    return do


# ---- real HTTP: the simulator and a live dashboard ------------------------------------------
@pytest.fixture
def simulator() -> Iterator[tuple[PlivoSimulator, str]]:
    sim = PlivoSimulator(SANDBOX_AUTH_ID, SANDBOX_AUTH_TOKEN, callback_delay=0.05,
                         hang_seconds=2.0)
    server = sim.serve_in_thread()
    yield sim, f"http://127.0.0.1:{server.server_port}"
    sim.stop()
    server.shutdown()


class LiveServer:
    def __init__(self, app: Flask, port: int) -> None:
        self.app = app
        self.url = f"http://127.0.0.1:{port}"
        self._server = make_server("127.0.0.1", port, app, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()


@pytest.fixture
def live(make_app, simulator) -> Iterator[LiveServer]:
    """The dashboard on a loopback port, pointed at the simulator, callbacks back to it."""
    _sim, sim_url = simulator
    port = free_port()
    app = make_app(PLIVO_API_URL=sim_url, PUBLIC_BASE_URL=f"http://127.0.0.1:{port}",
                   TASK_QUEUE_URL="immediate",
                   PLIVO_READ_TIMEOUT_SECONDS="1")
    server = LiveServer(app, port)
    yield server
    server.stop()


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError("condition not met in time")


T0 = datetime(2026, 6, 1, 9, 0, 0, tzinfo=UTC)


@pytest.fixture
def clock():
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller

