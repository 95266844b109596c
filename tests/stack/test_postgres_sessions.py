"""What is particular to PostgreSQL: reads of GET requests in autocommit, writes in a
transaction, idle pooled connections tested before use so a restart costs no request,
and status callbacks written in one statement (any order, duplicates, lost races)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from flask import Flask, request
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import event, select, text

import webapp
from tests.audit_log.test_every_action_recorded import check_export_is_recorded
from tests.auth.test_sessions import check_sign_out_everywhere_else
from tests.auth.test_two_factor import check_a_code_works_once
from tests.conftest import PASSWORD, base_env, login
from tests.helpers import make_message, url
from tests.history.test_export import check_export_cells_and_times, check_export_ends_with_every_row_once
from tests.history.test_pages import check_row_shows_time_number_text_media_and_cost_escaped
from tests.history.test_search import (
    check_filters_use_their_indexes,
    check_recipient_search,
    check_text_search,
)
from tests.lists.test_list_delivery import check_cancel_races_the_dispatch, check_opt_out_is_noted_once
from tests.overview.test_overview import STEPS, check_rollups_equal_a_recount
from tests.services import postgres_server, restart_postgres
from tests.test_statuses import callback_orders, check_callback_order, check_sql_and_python_agree
from webapp.auth import service as accounts
from webapp.callbacks import ledger as callbacks
from webapp.extensions import csrf, db
from webapp.models import Message, StatusEvent, User

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
    assert client.get(url("history.history")).status_code == 200
    with app.app_context():
        assert db.engine.pool.checkedin() == 1  # the connection the next request reuses

    restart_postgres(own_postgres)
    time.sleep(0.3)  # idle for longer than PING_AFTER_IDLE_SECONDS

    # The app runs with TESTING, so a broken connection would raise here, not answer 500.
    assert client.get(url("history.history")).status_code == 200
    assert client.get(url("history.history")).status_code == 200
    with app.app_context():
        db.engine.dispose()


def test_a_history_row_reads_the_same_on_postgresql(make_app, own_postgres):
    app = make_app(DATABASE_URL=own_postgres)
    with app.app_context():
        user = accounts.create_user("rows@example.com", PASSWORD)
        user_id = user.id
    client = app.test_client()
    assert login(client, "rows@example.com").status_code == 303
    check_row_shows_time_number_text_media_and_cost_escaped(app, client, user_id)
    with app.app_context():
        db.engine.dispose()


def test_the_export_ends_with_every_row_once_on_postgresql(make_app, own_postgres):
    app = make_app(DATABASE_URL=own_postgres)
    with app.app_context():
        user_id = accounts.create_user("export@example.com", PASSWORD).id
    check_export_ends_with_every_row_once(app, user_id)
    with app.app_context():
        db.engine.dispose()


def test_the_export_formats_every_cell_in_sql_as_python_does(make_app, own_postgres,
                                                             monkeypatch):
    """COPY formats the cells itself: the same values as the batched path (which SQLite
    uses), for every zone, filter and awkward cell; from a GET request (autocommit) too."""
    import csv
    import io
    from datetime import timedelta, timezone
    from zoneinfo import ZoneInfo

    from webapp.history import export
    from webapp.history.pages import HistoryFilter

    app = make_app(DATABASE_URL=own_postgres)
    with app.app_context():
        user_id = accounts.create_user("viewer@example.com", PASSWORD).id
    check_export_cells_and_times(app, user_id)
    for zone in (ZoneInfo("America/St_Johns"), ZoneInfo("Asia/Kathmandu"),
                 timezone(-timedelta(hours=2, minutes=30))):  # no name: batched_rows
        for args in ({}, {"status": "failed"}, {"q": "quoted"}, {"recipient": "0199"},
                     {"from": "2026-03-08", "to": "2026-03-08"}, {"sent_by": str(user_id)}):
            batched_rows = export.batched_rows
            with app.test_request_context("/messages/export.csv", query_string=args):
                filters, _ = HistoryFilter.from_args(request.args, zone)
                if isinstance(zone, ZoneInfo):  # COPY, not the fallback
                    monkeypatch.setattr(export, "batched_rows", None)
                by_copy = b"".join(export.copy_rows(filters, timedelta(hours=1), zone)).decode()
                monkeypatch.undo()
                batched = b"".join(batched_rows(filters, timedelta(hours=1), zone)).decode()
            assert list(csv.reader(io.StringIO(by_copy))) == list(
                csv.reader(io.StringIO(batched))), (zone, args)
            assert by_copy.count("\n") >= 1, (zone, args)
    with app.test_request_context("/messages/export.csv"):  # stopped half way, then reused
        rows = export.copy_rows(HistoryFilter(), timedelta(hours=1), ZoneInfo("UTC"), size=1)
        next(rows)
        rows.close()
        assert db.session.execute(text("SHOW TimeZone")).scalar() != "America/St_Johns"
        assert db.session.execute(text("SELECT 1")).scalar() == 1
    with app.app_context():
        db.engine.dispose()


# ---- status callbacks: one statement on PostgreSQL ---------------------------------------
@pytest.fixture(scope="module")
def ledger_app(own_postgres, tmp_path_factory) -> Iterator[Flask]:
    app = webapp.create_app(base_env(tmp_path_factory.mktemp("pg-ledger"),
                                     DATABASE_URL=own_postgres))
    with app.app_context():
        db.create_all()
        if db.session.get(User, 1) is None:  # check_callback_order's messages are user 1's
            db.session.add(User(email="ledger@example.com", password_hash="x"))
            db.session.commit()
        assert db.session.get(User, 1) is not None
    yield app
    with app.app_context():
        db.engine.dispose()


def test_the_callback_sql_and_the_state_machine_agree_on_postgresql(ledger_app):
    assert check_sql_and_python_agree(ledger_app) > 0


@settings(max_examples=40, deadline=None)
@given(case=callback_orders(), uuid_first=st.booleans())
def test_any_order_of_callbacks_ends_in_the_right_state_on_postgresql(ledger_app, case,
                                                                       uuid_first):
    check_callback_order(ledger_app, *case, uuid_first)


def _sent_message(app: Flask, plivo_uuid: str) -> int:
    with app.app_context():
        message = make_message()
        db.session.add(message)
        db.session.commit()
        callbacks.record_uuid(message, plivo_uuid)
        return message.id


@contextmanager
def interleaved(before_the_write) -> Iterator[list[bool]]:
    """Run `before_the_write` (on other connections) just before the callback's write."""
    fired: list[bool] = []

    def hook(_conn, _cursor, statement, *_args):
        if not fired and statement.startswith("WITH changed"):
            fired.append(True)
            before_the_write()

    event.listen(db.engine, "before_cursor_execute", hook)
    try:
        yield fired
    finally:
        event.remove(db.engine, "before_cursor_execute", hook)


def ledger_of(plivo_uuid: str) -> list[tuple[str, bool]]:
    return db.session.execute(select(StatusEvent.status, StatusEvent.applied).where(
        StatusEvent.plivo_uuid == plivo_uuid)).all()


def test_a_callback_waits_for_a_concurrent_writer_and_decides_on_its_result(ledger_app):
    """Another transaction holds the message's row, moved to delivered but not yet
    committed. The callback's statement waits for it, then checks its condition on
    the row as committed: `sent` is older, so it is recorded and changes nothing."""
    message_id = _sent_message(ledger_app, "race-1")
    outcome: list[str] = []

    def callback() -> None:
        with ledger_app.app_context():
            outcome.append(callbacks.record_status_callback(
                callbacks.Callback("race-1", "sent", 2, None), {"Status": "sent"}, "v3"))

    with ledger_app.app_context(), db.engine.connect() as other, db.engine.connect() as watch:
        with other.begin():
            other.execute(text("UPDATE messages SET status = 'delivered', status_sequence = 3,"
                               " version = version + 1 WHERE id = :id"), {"id": message_id})
            thread = threading.Thread(target=callback)
            thread.start()
            waiting = text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                           " AND query LIKE 'WITH changed%'")
            deadline = time.monotonic() + 10
            while watch.execute(waiting).scalar() == 0 and time.monotonic() < deadline:
                watch.rollback()
                time.sleep(0.02)
            assert watch.execute(waiting).scalar() == 1  # blocked on the row, as meant
            assert not outcome
        thread.join(10)
        assert outcome == ["recorded"]
        assert db.session.get(Message, message_id).status == "delivered"
        assert ledger_of("race-1") == [("sent", False)]


def test_the_same_callback_twice_at_once_is_applied_once_on_postgresql(ledger_app):
    message_id = _sent_message(ledger_app, "twice-1")
    sent = callbacks.Callback("twice-1", "sent", 2, None)
    with ledger_app.app_context():
        outcomes = []
        with interleaved(lambda: outcomes.append(
                callbacks.record_status_callback(sent, {"Status": "sent"}, "v3"))) as fired:
            outcomes.append(callbacks.record_status_callback(sent, {"Status": "sent"}, "v3"))
        assert fired and outcomes == ["applied", "duplicate"]
        assert db.session.get(Message, message_id).status == "sent"
        assert ledger_of("twice-1") == [("sent", True)]


# ---- hostile input on PostgreSQL (tests/test_security.py, tests/callbacks/test_webhooks.py) ----------
def test_hostile_input_gets_4xx_on_postgresql(make_app, own_postgres):
    from tests.test_security import (
        check_demotion_race_leaves_an_admin,
        check_no_nul_reaches_the_database,
        check_odd_query_values_are_explained,
    )

    app = make_app(DATABASE_URL=own_postgres)
    with app.app_context():
        accounts.create_user("hostile@example.com", PASSWORD, "admin")
    client = app.test_client()
    assert login(client, "hostile@example.com").status_code == 303
    assert check_no_nul_reaches_the_database(app, client) > 100
    check_odd_query_values_are_explained(client)
    check_demotion_race_leaves_an_admin(app)
    with app.app_context():
        db.engine.dispose()


def test_nonces_bind_bodies_and_refusals_are_sampled_on_postgresql(make_app, own_postgres):
    from tests.callbacks.test_webhooks import CALLBACK_PATH, form, post_signed
    from webapp.callbacks.guard import SAMPLES_PER_SOURCE_HOUR, refused_counts

    app = make_app(DATABASE_URL=own_postgres)
    with app.app_context():
        user_id = accounts.create_user("nonces@example.com", PASSWORD).id
        message = make_message(created_by_id=user_id, plivo_uuid="pg-nonce")
        db.session.add(message)
        db.session.commit()
        message_id = message.id
    client = app.test_client()
    sent = form("sent", 2, uuid="pg-nonce")
    assert post_signed(client, sent, nonce="5" * 20).json["result"] == "applied"
    assert post_signed(client, sent, nonce="5" * 20).json["result"] == "duplicate"
    forged = form("failed", 9, uuid="pg-nonce", ErrorCode="900")
    assert post_signed(client, forged, nonce="5" * 20).status_code == 403
    delivered = form("delivered", 3, uuid="pg-nonce")
    assert post_signed(client, delivered, only="V2").json["result"] == "unconfirmed"
    for _ in range(12):
        assert client.post(CALLBACK_PATH, data=forged,
                           environ_overrides={"REMOTE_ADDR": "192.0.2.77"}).status_code == 403
    with app.app_context():
        assert db.session.get(Message, message_id).status == "sent"
        [count] = refused_counts("192.0.2.77")
        assert count.count == 12
        samples = db.session.scalars(select(StatusEvent).where(
            StatusEvent.plivo_uuid == "pg-nonce", StatusEvent.accepted.is_(False),
            StatusEvent.signature_scheme == "missing")).all()
        assert len(samples) == SAMPLES_PER_SOURCE_HOUR
    with app.app_context():  # a context of its own: the one above still holds a connection
        db.engine.dispose()


@pytest.fixture(scope="module")
def fuzz_pg(own_postgres, tmp_path_factory):
    app = webapp.create_app(base_env(tmp_path_factory.mktemp("pg-fuzz"),
                                     DATABASE_URL=own_postgres,
                                     SENDS_PER_MINUTE_PER_USER="100000"))
    with app.app_context():
        db.create_all()
        first = accounts.create_user("fuzz-admin@example.com", PASSWORD, "admin")
        accounts.create_user("fuzz-other@example.com", PASSWORD, "admin")
        db.session.add(make_message(created_by_id=first.id, plivo_uuid="pg-fuzz"))
        db.session.commit()
    client = app.test_client()
    assert login(client, "fuzz-admin@example.com").status_code == 303
    yield app, client
    with app.app_context():
        db.engine.dispose()


@settings(max_examples=20, deadline=None)
@given(data=st.data())
def test_no_route_gives_a_500_whatever_its_parameters_on_postgresql(fuzz_pg, data):
    from tests.test_security import fuzz_every_route

    app, client = fuzz_pg
    fuzz_every_route(app, client, data)


def test_search_and_filters_on_postgresql(make_app, own_postgres):
    """The same search semantics as SQLite's FTS5, from the GIN index, and every filter
    answered from an index."""
    app = make_app(DATABASE_URL=own_postgres)
    with app.app_context():
        user_id = accounts.create_user("search@example.com", PASSWORD).id
    client = app.test_client()
    assert login(client, "search@example.com").status_code == 303
    check_text_search(app, client, user_id)
    check_recipient_search(app, client, user_id)
    check_filters_use_their_indexes(app, user_id)
    with app.app_context():
        db.engine.dispose()


def test_uploaded_files_are_stored_once_and_served_on_postgresql(make_app, own_postgres):
    """bytea columns, the unique sha256 and the serving path on PostgreSQL; a bad file
    leaves nothing behind."""
    import io as _io

    from PIL import Image

    from tests.helpers import csrf_token_in
    from tests.sending.test_submission import KEY_RE
    from webapp.models import Media
    app = make_app(DATABASE_URL=own_postgres)
    with app.app_context():
        db.drop_all()
        db.create_all()
        accounts.create_user("pics@example.com", PASSWORD, "staff")
    client = app.test_client()
    assert login(client, "pics@example.com").status_code == 303
    buffer = _io.BytesIO()
    Image.new("RGB", (320, 200), "teal").save(buffer, "PNG")
    for filename, data, expected in (("a.png", buffer.getvalue(), 302),
                                     ("b.png", buffer.getvalue(), 302),
                                     ("c.jpg", b"%PDF-1.4\n%%EOF\n", 400)):
        page = client.get(url("sending.compose")).get_data(as_text=True)
        answer = client.post(url("sending.compose"), content_type="multipart/form-data", data={
            "csrf_token": csrf_token_in(page), "idempotency_key": KEY_RE.search(page).group(1),
            "sender": "+14155550100", "recipients": "(415) 555-0123", "text": filename,
            "files": (_io.BytesIO(data), filename)})
        assert answer.status_code in (expected, 303), answer.get_data(as_text=True)[:500]
    with app.app_context():
        (media,) = db.session.scalars(select(Media)).all()
        assert bytes(media.data) == buffer.getvalue() and media.thumbnail
    served = client.get(f"/media/{media.sha256}")
    assert served.data == buffer.getvalue() and served.content_type == "image/png"
    assert client.get(f"/media/{media.sha256}/thumbnail").content_type == "image/jpeg"
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


# ---- the overview's rollups ---------------------------------------------------------------
@pytest.fixture(scope="module")
def rollup_app(own_postgres, tmp_path_factory) -> Iterator[Flask]:
    app = webapp.create_app(base_env(tmp_path_factory.mktemp("pg-rollups"),
                                     DATABASE_URL=own_postgres,
                                     DISPLAY_TIMEZONE="America/Toronto"))
    with app.app_context():
        db.create_all()
        for n in (1, 2, 3):
            if db.session.get(User, n) is None:
                db.session.add(User(id=n, email=f"rollups{n}@example.com", password_hash="x"))
        db.session.commit()
        db.session.execute(text("SELECT setval('users_id_seq', (SELECT max(id) FROM users))"))
        db.session.commit()
    yield app
    with app.app_context():
        db.engine.dispose()


@settings(max_examples=20, deadline=None)
@given(steps=STEPS)
def test_the_rollups_equal_a_recount_on_postgresql(rollup_app, steps):
    check_rollups_equal_a_recount(rollup_app, steps)


def test_two_workers_sweeping_at_once_count_each_callback_once(rollup_app):
    from webapp.models import CallbackHour
    from webapp.overview import rollups

    check_rollups_equal_a_recount(rollup_app, [("send", 1, 0, 1), ("refresh",)])
    with rollup_app.app_context():
        for n in range(40):
            db.session.add(StatusEvent(plivo_uuid=f"sweep-{n}", status="sent", payload={},
                                       signature_scheme="v3", accepted=True))
        db.session.commit()
        before = sum(db.session.scalars(select(CallbackHour.count)))
    barrier = threading.Barrier(4)

    def sweep():
        with rollup_app.app_context():
            barrier.wait()
            rollups.refresh()
            db.session.remove()

    threads = [threading.Thread(target=sweep) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with rollup_app.app_context():
        assert sum(db.session.scalars(select(CallbackHour.count))) == before + 40


@pytest.mark.parametrize("check", [check_a_code_works_once, check_sign_out_everywhere_else,
                                   check_export_is_recorded])
def test_accountability_on_postgresql(make_app, own_postgres, check):
    """Two-factor codes spent by a conditional UPDATE, sessions ended at once, and an
    export's row count from COPY, on PostgreSQL."""
    run_on_empty_postgres(make_app, own_postgres, check)


@pytest.mark.parametrize("check", [check_cancel_races_the_dispatch, check_opt_out_is_noted_once])
def test_batches_on_postgresql(make_app, own_postgres, check):
    """A list send's cancel against workers claiming its messages (row locks decide), and
    the opt-out list's insert-if-absent, on PostgreSQL."""
    run_on_empty_postgres(make_app, own_postgres, check)


def run_on_empty_postgres(make_app, own_postgres, check) -> None:
    """`check(app)` on an app whose PostgreSQL database was emptied and created anew."""
    app = make_app(DATABASE_URL=own_postgres)
    with app.app_context():
        db.drop_all()
        db.create_all()
    try:
        check(app)
    finally:
        with app.app_context():
            db.engine.dispose()
