"""How the app uses its PostgreSQL connections: reads of GET requests in autocommit,
writes in a transaction, and idle pooled connections tested before use so a restart
costs no request."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from flask import request

import webapp
from webapp.auth import service as accounts
from webapp.extensions import csrf, db

from ..conftest import PASSWORD, login
from ..services import postgres_server, restart_postgres

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def own_postgres() -> Iterator[str]:
    """A server of this module's own: one test here restarts it."""
    with postgres_server() as url:
        yield url


def test_get_requests_read_in_autocommit_and_posts_write_in_a_transaction(make_app,
                                                                          own_postgres):
    app = make_app(DATABASE_URL=own_postgres)
    seen = []

    @app.route("/probe", methods=["GET", "POST"])
    @csrf.exempt
    def probe():
        connection = db.session.connection().connection.dbapi_connection
        seen.append((request.method, connection.autocommit))
        return "ok"

    client = app.test_client()
    for method in ("GET", "POST", "GET", "POST"):  # one pooled connection, lent both ways
        assert client.open("/probe", method=method).status_code == 200
    assert seen == [("GET", True), ("POST", False), ("GET", True), ("POST", False)]
    with app.app_context():
        db.engine.dispose()


def test_the_first_request_after_a_restart_gets_a_working_connection(make_app, own_postgres,
                                                                     monkeypatch):
    monkeypatch.setattr(webapp, "PING_AFTER_IDLE_SECONDS", 0.2)
    app = make_app(DATABASE_URL=own_postgres)
    with app.app_context():
        accounts.create_user("amy@example.com", PASSWORD)
    client = app.test_client()
    assert login(client, "amy@example.com").status_code == 303
    assert client.get("/messages").status_code == 200
    with app.app_context():
        assert db.engine.pool.checkedin() == 1  # the connection the next request reuses

    restart_postgres(own_postgres)
    time.sleep(0.3)  # idle for longer than PING_AFTER_IDLE_SECONDS

    # The app runs with TESTING, so a broken connection would raise here, not answer 500.
    assert client.get("/messages").status_code == 200
    assert client.get("/messages").status_code == 200
    with app.app_context():
        db.engine.dispose()
