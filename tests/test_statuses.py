"""The state machine, alone and through the callback ledger."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, func, select

from tests.conftest import base_env
from tests.helpers import make_message
from webapp import create_app, statuses
from webapp.callbacks import ledger as callbacks
from webapp.extensions import db
from webapp.models import Message, StatusEvent, User


def test_final_state_never_goes_back():
    assert not statuses.should_apply("delivered", 3, "sent", 9)
    assert not statuses.should_apply("failed", 2, "queued", 5)
    assert statuses.should_apply("sent", 2, "delivered", 3)


def test_within_the_final_rank_the_later_sequence_wins():
    assert statuses.should_apply("delivered", 3, "undelivered", 4)
    assert not statuses.should_apply("undelivered", 4, "delivered", 3)


def test_unknown_status_is_never_applied():
    assert not statuses.should_apply("queued", 1, "read", 9)


def test_labels_in_plain_words():
    now = datetime.now(UTC)
    assert statuses.label("delivered") == "Delivered"
    assert statuses.label("undelivered", "30") == "Not delivered: spam detected (30)"
    assert statuses.label("failed", "900") == "Failed: insufficient credit (900)"
    assert statuses.label("failed", "130") == "Failed: Unknown (code 130)"
    assert statuses.label("sent", None, now, now, timedelta(hours=1)) == "Sent — no receipt yet"
    assert (statuses.label("sent", None, now - timedelta(hours=2), now, timedelta(hours=1))
            == "Sent — carrier gives no receipts")


# ---- through the ledger: any order, with duplicates ------------------------------------------
PATHS = {
    "delivered": [("queued", 1), ("sent", 2), ("delivered", 3)],
    "undelivered": [("queued", 1), ("sent", 2), ("undelivered", 3)],
    "failed": [("queued", 1), ("failed", 2)],
    "late correction": [("queued", 1), ("sent", 2), ("delivered", 3), ("undelivered", 4)],
    "no receipt": [("queued", 1), ("sent", 2)],
}
EXPECTED = {"delivered": "delivered", "undelivered": "undelivered", "failed": "failed",
            "late correction": "undelivered", "no receipt": "sent"}


@pytest.fixture(scope="module")
def ledger_app(tmp_path_factory):
    app = create_app(base_env(tmp_path_factory.mktemp("ledger")))
    with app.app_context():
        db.create_all()
        db.session.add(User(email="x@example.com", password_hash="x", role="staff"))
        db.session.commit()
    return app


@st.composite
def callback_orders(draw):
    name = draw(st.sampled_from(sorted(PATHS)))
    events = PATHS[name]
    repeated = events + draw(st.lists(st.sampled_from(events), max_size=6))
    return name, draw(st.permutations(repeated))


@settings(max_examples=60, deadline=None)
@given(case=callback_orders(), uuid_first=st.booleans())
def test_any_order_of_callbacks_ends_in_the_right_state(ledger_app, case, uuid_first):
    check_callback_order(ledger_app, *case, uuid_first)


def check_callback_order(ledger_app, name: str, order: list, uuid_first: bool) -> None:
    """Apply `order` (the uuid known from the start, or only halfway) and check the end
    state and the ledger. Also run on PostgreSQL by tests/stack."""
    with ledger_app.app_context():
        db.session.execute(delete(StatusEvent))
        db.session.execute(delete(Message))
        message = make_message()
        db.session.add(message)
        db.session.commit()
        half = len(order) // 2
        if uuid_first:
            callbacks.record_uuid(message, "uuid-1")
        for i, (status, sequence) in enumerate(order):
            if not uuid_first and i == half:
                callbacks.record_uuid(message, "uuid-1")  # callbacks raced the send answer
            callback = callbacks.Callback("uuid-1", status, sequence, None)
            callbacks.record_status_callback(callback, {"Status": status}, "v3")
        if not uuid_first and half >= len(order):
            callbacks.record_uuid(message, "uuid-1")
        db.session.refresh(message)
        assert message.status == EXPECTED[name]
        rows = db.session.scalar(select(func.count()).select_from(StatusEvent))
        assert rows == len(set(order))
        assert db.session.scalar(select(func.count()).select_from(StatusEvent).where(
            StatusEvent.message_id.is_(None))) == 0


# ---- one rule, two paths: the callback's SQL agrees with statuses.callback_applies ----------
EARLIER = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
CURRENT_STATUSES = (*statuses.ALL, "bogus")  # a status we do not know ranks below all
NEW_STATUSES = (*statuses.ALL, "read", "bogus")  # ours, Plivo's, one Plivo may add later
SEQUENCES = (0, 1, 2)


def check_sql_and_python_agree(app) -> int:
    """Every (current status, sequence, queued_at set or not) x (new status, sequence)
    through callback_sql.APPLY_CALLBACK on a real row and through callbacks.status_change:
    the same decision and the same columns written. Returns the combinations checked.
    Also run on PostgreSQL by tests/stack."""
    from types import SimpleNamespace

    from webapp.callbacks import sql as callback_sql

    compared = ("status", "status_sequence", "error_code", "queued_at", "sent_at", "final_at")
    payload = {"QueuedTime": "2026-02-02 10:00:00", "SentTime": "2026-02-02 10:00:05",
               "DeliveryReportTime": "2026-02-02 10:00:09"}
    now = datetime(2026, 2, 2, 11, 0, tzinfo=UTC)
    checked = 0
    with app.app_context():
        db.session.execute(delete(StatusEvent))
        db.session.execute(delete(Message))
        message = make_message(plivo_uuid="agree-1")
        db.session.add(message)
        db.session.commit()
        table = Message.__table__
        with db.engine.connect() as connection:
            for current in CURRENT_STATUSES:
                for current_sequence in SEQUENCES:
                    for queued_at in (None, EARLIER):
                        before = SimpleNamespace(
                            status=current, status_sequence=current_sequence, error_code=None,
                            queued_at=queued_at, sent_at=None, final_at=None)
                        for new in NEW_STATUSES:
                            for new_sequence in SEQUENCES:
                                error = "30" if new == statuses.UNDELIVERED else None
                                changes = callbacks.status_change(
                                    before, new, new_sequence, error, payload, now)
                                expected = {**vars(before), **(changes or {})}
                                with connection.begin() as transaction:
                                    connection.execute(table.update().values(
                                        status=current, status_sequence=current_sequence,
                                        queued_at=queued_at, sent_at=None, final_at=None,
                                        error_code=None))
                                    params = callback_sql.apply_params(
                                        plivo_uuid="agree-1", status=new, sequence=new_sequence,
                                        values=callbacks.callback_values(new, error, payload, now),
                                        now=now)
                                    applied = connection.execute(
                                        callback_sql.APPLY_CALLBACK, params).rowcount == 1
                                    row = connection.execute(
                                        select(*(table.c[name] for name in compared))).one()
                                    transaction.rollback()
                                case = (current, current_sequence, queued_at, new, new_sequence)
                                assert applied == (changes is not None), case
                                assert applied == statuses.callback_applies(
                                    current, current_sequence, new, new_sequence), case
                                assert dict(zip(compared, row, strict=True)) == {
                                    name: expected[name] for name in compared}, case
                                checked += 1
    return checked


def test_the_callback_sql_and_the_state_machine_agree_on_every_combination(ledger_app):
    checked = check_sql_and_python_agree(ledger_app)
    assert checked == len(CURRENT_STATUSES) * len(SEQUENCES) * 2 * len(NEW_STATUSES) * len(SEQUENCES)


def test_a_status_the_state_machine_does_not_know_never_moves_a_message():
    assert statuses.rank("bogus") == statuses.UNRANKED
    assert statuses.should_apply("bogus", 5, statuses.PENDING, 0)
    assert not statuses.callback_applies("queued", 1, "read", 9)
    assert not statuses.callback_applies("pending", 0, statuses.UNKNOWN, 5)


def test_every_bad_ending_says_what_to_do_and_nothing_else_does():
    for status in statuses.ALL:
        said = statuses.advice(status)
        assert (said is not None) == (status in (statuses.UNKNOWN, statuses.ERROR,
                                                  statuses.UNDELIVERED, statuses.FAILED,
                                                  statuses.REJECTED, statuses.NOT_SENT)), status
    assert "STOP" in statuses.advice(statuses.FAILED, "200")
    assert "credit" in statuses.advice(statuses.FAILED, "900")
    assert "spam" in statuses.advice(statuses.UNDELIVERED, "030")
    assert statuses.advice(statuses.UNDELIVERED, "9999") == statuses.ADVICE_BY_STATUS[
        statuses.UNDELIVERED]
