"""The status webhook through the app: verification, ledger, state machine, malformed input."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from webapp.config import SANDBOX_AUTH_TOKEN
from webapp.extensions import db
from webapp.messages import callbacks
from webapp.models import Message, StatusEvent, User
from webapp.signatures import signed_headers

from .helpers import make_message, url

CALLBACK_PATH = url("webhooks.plivo_status")
PUBLIC_URL = "http://127.0.0.1:5000" + CALLBACK_PATH


@pytest.fixture
def message(app, make_user):
    user = make_user()
    with app.app_context():
        row = make_message(created_by_id=user.id)
        db.session.add(row)
        db.session.commit()
        callbacks.record_uuid(row, "uuid-1")
        return row.id


def form(status: str, sequence: int, uuid: str = "uuid-1", **extra) -> dict[str, str]:
    return {"MessageUUID": uuid, "Status": status, "Sequence": str(sequence), "ErrorCode": "",
            "To": "14155550123", "From": "14155550100", "Units": "1", "TotalAmount": "0.016",
            **extra}


def post_signed(client, data: dict, token: str = SANDBOX_AUTH_TOKEN, url: str = PUBLIC_URL,
                nonce: str = "12345678901234567890", query: str = ""):
    headers = signed_headers("POST", url + query, data, token, nonce)
    return client.post(CALLBACK_PATH + query, data=data, headers=headers)


def state(app, message_id: int) -> tuple[str, int]:
    with app.app_context():
        msg = db.session.get(Message, message_id)
        events = db.session.scalar(select(func.count()).select_from(StatusEvent))
        return msg.status, events


def test_signed_callbacks_move_the_message_to_delivered(app, client, message):
    for status, sequence in (("queued", 1), ("sent", 2), ("delivered", 3)):
        assert post_signed(client, form(status, sequence)).status_code == 200
    with app.app_context():
        msg = db.session.get(Message, message)
        assert msg.status == "delivered"
        assert msg.units == 1 and msg.total_amount == "0.016"
        assert msg.sent_at and msg.final_at and msg.queued_at
        assert [e.status for e in msg.events] == ["queued", "sent", "delivered"]
        assert all(e.signature_scheme == "v3" for e in msg.events)


def test_callback_with_query_string_verifies(app, client, message):
    assert post_signed(client, form("sent", 2), query="?tenant=7").status_code == 200
    assert state(app, message)[0] == "sent"


def test_duplicate_callback_is_stored_once(app, client, message):
    for _ in range(3):
        response = post_signed(client, form("sent", 2))
        assert response.status_code == 200
    assert response.json["result"] == "duplicate"
    assert state(app, message) == ("sent", 1)


def test_forged_callback_changes_nothing(app, client, message):
    response = post_signed(client, form("failed", 9, ErrorCode="30"), token="not-the-token")
    assert response.status_code == 403
    status, _ = state(app, message)
    assert status == "queued"
    with app.app_context():
        refused = db.session.scalars(select(StatusEvent)).all()
        assert [(e.accepted, e.signature_scheme) for e in refused] == [(False, "invalid")]
    # The genuine callback with the same key is still applied afterwards.
    assert post_signed(client, form("failed", 9, ErrorCode="30")).status_code == 200
    assert state(app, message)[0] == "failed"


def test_unsigned_callback_is_refused(app, client, message):
    response = client.post(CALLBACK_PATH, data=form("delivered", 3))
    assert response.status_code == 403
    assert state(app, message)[0] == "queued"


def test_log_only_mode_processes_and_records_the_verdict(make_app, make_user):
    app = make_app(PLIVO_SIGNATURE_MODE="log-only")
    client = app.test_client()
    with app.app_context():
        db.session.add(User(id=1, email="a@example.com", password_hash="x"))
        db.session.add(make_message(plivo_uuid="uuid-1", status="queued"))
        db.session.commit()
    assert client.post(CALLBACK_PATH, data=form("sent", 2)).status_code == 200
    with app.app_context():
        event = db.session.scalars(select(StatusEvent)).one()
        assert event.signature_scheme == "missing" and event.applied


@pytest.mark.parametrize(("data", "code"), [
    ({"Status": "sent"}, 400),
    ({"MessageUUID": "uuid-1"}, 400),
    ({"MessageUUID": "uuid-1", "Status": "sent", "Sequence": "two"}, 400),
    ({"MessageUUID": "u" * 65, "Status": "sent"}, 400),
    ({"MessageUUID": "uuid-1", "Status": "<script>"}, 400),
])
def test_malformed_callbacks_get_400(app, client, message, data, code):
    assert post_signed(client, data).status_code == code
    assert state(app, message) == ("queued", 0)


def test_oversized_callback_gets_413(client, message):
    response = post_signed(client, form("sent", 2, Padding="x" * 20_000))
    assert response.status_code == 413


def test_unknown_status_is_recorded_not_applied(app, client, message):
    assert post_signed(client, form("read", 4)).json["result"] == "recorded"
    assert state(app, message) == ("queued", 1)


def test_callback_before_the_uuid_is_kept_then_applied(app, client, make_user):
    user = make_user()
    with app.app_context():
        row = make_message(created_by_id=user.id)
        db.session.add(row)
        db.session.commit()
        message_id = row.id
    assert post_signed(client, form("queued", 1, uuid="early")).json["result"] == "recorded"
    assert post_signed(client, form("sent", 2, uuid="early")).json["result"] == "recorded"
    with app.app_context():
        row = db.session.get(Message, message_id)
        assert row.status == "pending"
        callbacks.record_uuid(row, "early")
        db.session.refresh(row)
        assert row.status == "sent"
        assert all(e.message_id == row.id for e in db.session.scalars(select(StatusEvent)))


def test_get_callbacks_are_verified_too(app, client, message):
    data = form("sent", 2)
    from urllib.parse import urlencode

    query = "?" + urlencode(data)
    headers = signed_headers("GET", PUBLIC_URL + query, {}, SANDBOX_AUTH_TOKEN, "1" * 20)
    assert client.get(CALLBACK_PATH + query, headers=headers).status_code == 200
    assert state(app, message)[0] == "sent"


def test_webhook_needs_no_login_or_csrf_and_is_not_throttled(app, client, message):
    codes = {post_signed(client, form("sent", 2), nonce=str(n).zfill(20)).status_code
             for n in range(40)}
    assert codes == {200}


def test_concurrent_callbacks_cannot_overwrite_each_other(app, message):
    """`delivered` commits on another connection just before `sent` is written: the
    write's own condition sees delivered (nothing is read first), so delivered stays."""
    from sqlalchemy import event, text

    fired = []

    def concurrent_writer(_conn, _cursor, statement, *_args):
        if fired or not statement.startswith("UPDATE messages"):
            return
        fired.append(True)
        with db.engine.begin() as other:
            other.execute(text("UPDATE messages SET status = 'delivered', status_sequence = 3, "
                               "version = version + 1 WHERE id = :id"), {"id": message})

    with app.app_context():
        event.listen(db.engine, "before_cursor_execute", concurrent_writer)
        try:
            outcome = callbacks.record_status_callback(
                callbacks.Callback("uuid-1", "sent", 2, None), {"Status": "sent"}, "v3")
        finally:
            event.remove(db.engine, "before_cursor_execute", concurrent_writer)
    assert fired and outcome == "recorded"
    assert state(app, message) == ("delivered", 1)
