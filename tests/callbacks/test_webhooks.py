"""The status webhook through the app: verification, ledger, state machine, malformed input."""

from __future__ import annotations

import itertools

import pytest
from sqlalchemy import func, select

from tests.helpers import make_message, url
from webapp.callbacks import ledger as callbacks
from webapp.config import SANDBOX_AUTH_TOKEN
from webapp.extensions import db
from webapp.gateway.signatures import signed_headers
from webapp.models import Message, StatusEvent, User

CALLBACK_PATH = url("callbacks.plivo_status")
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


_nonces = itertools.count(10**19)


def post_signed(client, data: dict, token: str = SANDBOX_AUTH_TOKEN, url: str = PUBLIC_URL,
                nonce: str | None = None, query: str = "", only: str | None = None,
                **headers_too: str):
    """POST a callback signed as Plivo signs it, with a fresh nonce unless given.
    `only="V2"` or `only="V3"` keeps just that scheme's headers."""
    headers = signed_headers("POST", url + query, data, token, nonce or str(next(_nonces)))
    if only:
        headers = {k: v for k, v in headers.items() if f"-{only}" in k}
    return client.post(CALLBACK_PATH + query, data=data, headers={**headers, **headers_too})


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


def test_get_and_head_are_not_callbacks(app, client, message):
    """The dashboard always asks Plivo for POST callbacks; anything else is a 405 that
    reaches no table (it used to be a 500: a HEAD tried to write)."""
    from urllib.parse import urlencode

    query = "?" + urlencode(form("sent", 2))
    headers = signed_headers("GET", PUBLIC_URL + query, {}, SANDBOX_AUTH_TOKEN, "1" * 20)
    for method in ("GET", "HEAD", "PUT", "DELETE"):
        response = client.open(CALLBACK_PATH + query, method=method, headers=headers)
        assert response.status_code == 405, method
    assert state(app, message) == ("queued", 0)


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


# ---- nonces: each bound to the body it first came with -------------------------------------
def test_a_captured_v2_signature_cannot_carry_another_body(app, client, message):
    """A V2 signature covers the URL and the nonce, not the body: replayed with another
    body it once turned a delivered message into failed/900."""
    assert post_signed(client, form("delivered", 3), nonce="1" * 20).status_code == 200
    delivered = form("delivered", 3)
    v2 = {k: v for k, v in signed_headers("POST", PUBLIC_URL, delivered, SANDBOX_AUTH_TOKEN,
                                          "2" * 20).items() if "V2" in k}
    first = client.post(CALLBACK_PATH, data=delivered, headers=v2)
    assert first.status_code == 200 and first.json["result"] == "unconfirmed"
    again = client.post(CALLBACK_PATH, data=delivered, headers=v2)  # the same: a retry
    assert again.status_code == 200 and again.json["result"] == "duplicate"
    forged = client.post(CALLBACK_PATH, data=form("failed", 9, ErrorCode="900"), headers=v2)
    assert forged.status_code == 403
    assert state(app, message)[0] == "delivered"
    with app.app_context():
        v2_rows = db.session.scalars(select(StatusEvent).where(
            StatusEvent.signature_scheme == "v2")).all()
        held = [(e.status, e.accepted, e.applied) for e in v2_rows if "_refused" not in e.payload]
        refused = [e.payload["_refused"] for e in v2_rows if "_refused" in e.payload]
        assert held == [("delivered", False, False)]  # kept, awaiting Plivo's word
        assert refused == ["replayed nonce from 127.0.0.1"]


def test_a_v3_nonce_with_another_body_is_refused_and_the_same_body_is_a_duplicate(
        app, client, message):
    assert post_signed(client, form("sent", 2), nonce="3" * 20).status_code == 200
    same = post_signed(client, form("sent", 2), nonce="3" * 20)
    assert same.status_code == 200 and same.json["result"] == "duplicate"
    other = post_signed(client, form("failed", 9, ErrorCode="900"), nonce="3" * 20)
    assert other.status_code == 403
    assert state(app, message)[0] == "sent"
    with app.app_context():
        accepted = db.session.scalars(select(StatusEvent).where(StatusEvent.accepted)).all()
        assert [e.status for e in accepted] == ["sent"]


@pytest.mark.parametrize("v3_value", ["", "  ", "bm90IGl0"])
def test_a_v3_header_that_is_present_is_checked_even_empty(app, client, message, v3_value):
    """An empty X-Plivo-Signature-V3 used to count as "no V3" and fall back to V2."""
    response = post_signed(client, form("failed", 9), only="V2",
                           **{"X-Plivo-Signature-V3": v3_value})
    assert response.status_code == 403
    assert state(app, message)[0] == "queued"
    with app.app_context():
        assert not db.session.scalars(select(StatusEvent).where(StatusEvent.accepted)).all()


def test_old_nonces_are_forgotten_after_48_hours(app, client, message):
    from datetime import timedelta

    from webapp.callbacks.guard import forget_expired
    from webapp.models import WebhookNonce, utcnow

    assert post_signed(client, form("sent", 2)).status_code == 200
    with app.app_context():
        assert forget_expired()["nonces forgotten"] == 0
        assert forget_expired(utcnow() + timedelta(hours=49))["nonces forgotten"] == 1
        assert db.session.scalar(select(func.count()).select_from(WebhookNonce)) == 0


# ---- refused callbacks cannot fill the database ----------------------------------------------
def test_refused_callbacks_are_counted_and_only_a_few_kept(app, client, message):
    from webapp.callbacks.guard import SAMPLES_PER_SOURCE_HOUR, refused_counts

    big = form("delivered", 3, Padding="x" * 10_000)
    for _ in range(20):
        assert client.post(CALLBACK_PATH, data=big).status_code == 403
    with app.app_context():
        kept = db.session.scalars(select(StatusEvent)).all()
        assert len(kept) == SAMPLES_PER_SOURCE_HOUR
        assert all(len(str(e.payload)) < 3000 and not e.accepted for e in kept)
        [count] = refused_counts("127.0.0.1")
        assert (count.reason, count.count) == ("no signature", 20)
    assert state(app, message)[0] == "queued"


def test_unsigned_traffic_is_throttled_per_source_address(app, client, message):
    from webapp.callbacks.guard import REFUSED_PER_MINUTE

    codes = [client.post(CALLBACK_PATH, data=form("sent", 2)).status_code
             for _ in range(REFUSED_PER_MINUTE.amount + 5)]
    assert codes.count(403) == REFUSED_PER_MINUTE.amount and codes[-1] == 429
    other = client.post(CALLBACK_PATH, data=form("sent", 2),
                        environ_overrides={"REMOTE_ADDR": "192.0.2.9"})
    assert other.status_code == 403  # another address has its own share
    assert post_signed(client, form("sent", 2)).status_code == 200  # Plivo is never throttled


def test_a_chunked_body_over_the_limit_is_cut_off_and_nothing_is_stored(app, client, message):
    """Without Content-Length the limit applies to the bytes read (a 200 KB chunked body
    was once stored whole)."""
    import io

    body = ("MessageUUID=uuid-1&Status=sent&Padding=" + "x" * 200_000).encode()
    response = client.post(CALLBACK_PATH, input_stream=io.BytesIO(body),
                           content_type="application/x-www-form-urlencoded",
                           environ_overrides={"wsgi.input_terminated": True})
    assert response.status_code == 413
    assert state(app, message) == ("queued", 0)


@pytest.mark.parametrize("odd", [
    {"Units": "²"}, {"Units": "9" * 400}, {"TotalAmount": "abc"},
    {"TotalAmount": "1" * 30}, {"TotalAmount": "-0.5"}, {"QueuedTime": "9999-99-99 99:99:99"},
    {"SentTime": "x" * 400}, {"ErrorCode": "\u0663\u0660"},
])
def test_signed_callbacks_with_odd_numbers_keep_them_in_the_ledger_only(app, client, message,
                                                                       odd):
    response = post_signed(client, form("sent", 2, **odd))
    assert response.status_code == 200
    with app.app_context():
        row = db.session.get(Message, message)
        assert row.status == "sent"
        event = db.session.scalars(select(StatusEvent)).one()
        assert all(event.payload[key] == value[:500] for key, value in odd.items())
        if "Units" in odd:
            assert row.units is None
        if "TotalAmount" in odd:
            assert row.total_amount is None


@pytest.mark.parametrize("sequence", ["²", "\u0661", "9" * 400, "-1", "1e3"])
def test_a_sequence_that_is_not_ascii_digits_is_a_400(app, client, message, sequence):
    assert post_signed(client, form("sent", sequence)).status_code == 400
    assert state(app, message) == ("queued", 0)


@pytest.mark.integration
@pytest.mark.parametrize(("plivo_says", "ends"), [
    ("delivered", "delivered"),  # confirmed: applied
    ("failed", "queued"),  # contradicted: kept, never applied
])
def test_a_v2_only_callback_waits_for_plivo_to_confirm_it(live, simulator, make_user,
                                                         plivo_says, ends):
    """V2 proves nothing about the body, so Plivo's Message API (the real SDK against the
    simulator) is asked before a V2-only callback changes a message."""
    import requests

    from tests.helpers import save_message
    from webapp.gateway.simulator import SimulatedMessage

    sim, _ = simulator
    user = make_user()
    message_id = save_message(live.app, created_by_id=user.id, plivo_uuid="v2-uuid",
                              status="queued", status_sequence=1)
    sim.messages["v2-uuid"] = SimulatedMessage(
        uuid="v2-uuid", src="14155550100", dst="14155550123", text="", media_urls=[],
        media_ids=[], url=None, method="POST", state=plivo_says)
    data = form("delivered", 3, uuid="v2-uuid")
    headers = {k: v for k, v in signed_headers("POST", live.url + CALLBACK_PATH, data,
                                                  SANDBOX_AUTH_TOKEN, "4" * 20).items()
               if "V2" in k}
    answer = requests.post(live.url + CALLBACK_PATH, data=data, headers=headers, timeout=10)
    assert answer.status_code == 200 and answer.json()["result"] == "unconfirmed"
    with live.app.app_context():  # the queue runs inline in this suite
        row = db.session.get(Message, message_id)
        assert row.status == ends
        schemes = sorted(e.signature_scheme for e in db.session.scalars(select(StatusEvent)))
    assert schemes == (["v2", "v2-confirmed"] if ends == "delivered" else ["v2"])
