"""Compose and send: validation, idempotency, and the real SDK against the simulator."""

from __future__ import annotations

import random
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from webapp import plivo_gateway as gateway
from webapp.config import SANDBOX_AUTH_ID, SANDBOX_AUTH_TOKEN
from webapp.extensions import db
from webapp.messages import dispatch, sending
from webapp.messages.forms import parse_recipients
from webapp.models import Message

from .conftest import PASSWORD, base_env, csrf_token, free_port, login, wait_for
from .helpers import clean_environment, csrf_token_in, make_message, url

ROOT = Path(__file__).resolve().parent.parent
MEDIA = "https://example.com/picture.jpg"
KEY_RE = re.compile(r'name="idempotency_key" type="hidden" value="([^"]+)"')


def compose(client, recipients: str, media=(MEDIA,), text: str = "hello", key: str | None = None,
            **extra):
    page = client.get(url("messages.compose")).get_data(as_text=True)
    key = key or KEY_RE.search(page).group(1)
    data = {"csrf_token": csrf_token(client, url("messages.compose")), "idempotency_key": key,
            "sender": "+14155550100", "recipients": recipients, "text": text,
            "media": list(media), **extra}
    return client.post(url("messages.compose"), data=data), key


def count_messages(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(Message))


# ---- validation -----------------------------------------------------------------------------
def test_numbers_are_normalised_and_deduplicated():
    assert parse_recipients("(415) 555-0123, +1 415 555 0123\n604-555-0199;4155550124") == [
        "+14155550123", "+16045550199", "+14155550124"]


@pytest.mark.parametrize(("raw", "message"), [
    ("", "at least one"),
    ("12", "not a valid phone number"),
    ("hello", "not a phone number"),
    ("+44 20 7183 8750", "only be sent to US and Canadian numbers"),
    ("+61 2 9374 4000", "only be sent to US and Canadian numbers"),
    ("(415) 555-0100", "sending number"),
    (",".join(f"415555{n:04d}" for n in range(200, 226)), "at most 25"),
    ("1" * 60, "not a phone number"),
])
def test_bad_recipients_are_refused_in_plain_words(raw, message):
    with pytest.raises(ValueError, match=message):
        parse_recipients(raw, "+14155550100")


@pytest.mark.parametrize(("fields", "error"), [
    ({"recipients": "+44 20 7183 8750"}, "only be sent to US and Canadian numbers"),
    ({"text": "x" * 1601}, "at most 1600 characters"),
    ({"media": [f"https://example.com/{i}.jpg" for i in range(11)]}, "at most 10 items"),
    ({"media": ["http://example.com/a.jpg"]}, "must start with https://"),
    ({"media": ["not a url"]}, "https:// address or a Plivo media ID"),
    ({"media": []}, "at least one picture"),
    ({"media": [MEDIA, MEDIA]}, "attached twice"),
    ({"sender": "+19999999999"}, "Not a valid choice"),
])
def test_invalid_form_creates_nothing_and_keeps_input(app, client, login_as, fields, error):
    login_as()
    data = {"recipients": "(415) 555-0123", "text": "keep me", "media": [MEDIA], **fields}
    response, _ = compose(client, **data)
    body = response.get_data(as_text=True)
    assert response.status_code == 400
    assert error in body
    assert "keep me" in body or "x" * 100 in body
    assert count_messages(app) == 0


def test_media_ids_are_accepted(app, client, login_as):
    login_as()
    media_id = "0b7a1d2c-3e4f-4a5b-8c6d-7e8f9a0b1c2d"
    response, _ = compose(client, "(415) 555-0123", media=[media_id])
    assert response.status_code == 303
    with app.app_context():
        assert db.session.scalars(select(Message)).one().media == [{"media_id": media_id}]


def test_compose_requires_login(client):
    response = client.get(url("messages.compose"))
    assert response.status_code == 302 and url("auth.login") in response.headers["Location"]


def test_per_user_send_limit(make_app, make_user):
    app = make_app(SENDS_PER_MINUTE_PER_USER="2", PLIVO_API_URL="http://127.0.0.1:9",
                   PLIVO_CONNECT_TIMEOUT_SECONDS="0.1")
    client = app.test_client()
    with app.app_context():
        from webapp.auth.service import create_user

        create_user("amy@example.com", PASSWORD)
    login(client, "amy@example.com")
    codes = [compose(client, "(415) 555-0123", text="")[0].status_code for _ in range(3)]
    assert codes[:2] != [429, 429] and codes[2] == 429


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.dictionaries(
    st.sampled_from(["recipients", "text", "sender", "idempotency_key", "media", "junk"]),
    st.one_of(st.text(max_size=300), st.lists(st.text(max_size=80), max_size=12)),
))
def test_arbitrary_compose_input_never_gives_500(app, client, login_as, data):
    if client.get(url("messages.compose")).status_code == 302:  # the first example logs in
        login_as()
    response = client.post(url("messages.compose"), data={
        "csrf_token": csrf_token(client, url("messages.compose")), **data})
    assert response.status_code in (303, 400, 429)


# ---- the gateway: real SDK over HTTP against the simulator -----------------------------------
@pytest.fixture
def gateway_config(simulator):
    _sim, url = simulator
    return gateway.GatewayConfig(SANDBOX_AUTH_ID, SANDBOX_AUTH_TOKEN, url, 1.0, 1.0)


def send(config, dst: str) -> str:
    return gateway.send_mms(config, src="+14155550100", dst=dst, text="hi", media_urls=[MEDIA],
                            media_ids=[], callback_url="http://127.0.0.1:9/webhooks/plivo/status")


@pytest.mark.integration
def test_gateway_sends_the_exact_request(simulator, gateway_config):
    sim, _ = simulator
    uuid = gateway.send_mms(gateway_config, src="+14155550100", dst="+14155550123", text="hello",
                            media_urls=[MEDIA], media_ids=["m-1"],
                            callback_url="https://dash.example.com/webhooks/plivo/status")
    assert uuid in sim.messages
    body = sim.requests[-1]
    assert body["src"] == "14155550100" and body["dst"] == "14155550123"
    assert body["type"] == "mms" and body["text"] == "hello"
    assert body["media_urls"] == [MEDIA] and body["media_ids"] == ["m-1"]
    assert body["url"] == "https://dash.example.com/webhooks/plivo/status"
    assert body["method"] == "POST"


@pytest.mark.integration
@pytest.mark.parametrize(("dst", "outcome", "status", "retry_after"), [
    ("+14155550400", gateway.PlivoRejected, 400, None),
    ("+14155550500", gateway.PlivoRetryable, 500, None),
    ("+14155550429", gateway.PlivoRetryable, 429, 1.0),
    ("+14155550408", gateway.PlivoAmbiguous, None, None),
])
def test_gateway_maps_every_failure(gateway_config, dst, outcome, status, retry_after):
    with pytest.raises(outcome) as caught:
        send(gateway_config, dst)
    assert caught.value.status == status
    assert getattr(caught.value, "retry_after", None) == retry_after
    if status == 400:
        assert "not a valid phone number" in caught.value.reason


@pytest.mark.integration
def test_gateway_connect_error_is_retryable():
    config = gateway.GatewayConfig(SANDBOX_AUTH_ID, SANDBOX_AUTH_TOKEN,
                                   f"http://127.0.0.1:{free_port()}", 0.5, 0.5)
    with pytest.raises(gateway.PlivoRetryable):
        send(config, "+14155550123")


@pytest.mark.integration
def test_gateway_wrong_credentials_are_rejected(simulator):
    _sim, url = simulator
    config = gateway.GatewayConfig(SANDBOX_AUTH_ID, "wrong-token", url, 1.0, 1.0)
    with pytest.raises(gateway.PlivoRejected) as caught:
        send(config, "+14155550123")
    assert caught.value.status == 401


# ---- dispatch: retries with an injected clock and seed ---------------------------------------
def pending_message(app, user_id: int, recipient: str) -> int:
    with app.app_context():
        row = make_message(created_by_id=user_id, recipient=recipient, media=[{"url": MEDIA}])
        db.session.add(row)
        db.session.commit()
        return row.id


class FakeClock:
    def __init__(self) -> None:
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)


@pytest.mark.integration
@pytest.mark.parametrize(("recipient", "status", "attempts", "requests_made"), [
    ("+14155550123", "queued", 1, 1),
    ("+14155550500", "queued", 2, 2),
    ("+14155550429", "queued", 2, 2),
    ("+14155550400", "error", 1, 1),
    ("+14155550408", "unknown", 1, 1),
])
def test_dispatch_outcomes(live, simulator, make_user, recipient, status, attempts,
                           requests_made):
    sim, _ = simulator
    user = make_user()
    message_id = pending_message(live.app, user.id, recipient)
    clock = FakeClock()
    with live.app.app_context():
        dispatch.dispatch_message(message_id, dispatch.RetryPolicy(sleep=clock.sleep,
                                                                 rng=random.Random(7)))
        row = db.session.get(Message, message_id)
        assert (row.status, row.attempts) in {(status, attempts), ("sent", attempts),
                                              ("delivered", attempts)}
        if status == "error":
            assert "not a valid phone number" in row.error_reason
        if status == "unknown":
            assert "may have been sent" in row.error_reason
    assert len([r for r in sim.requests if r["dst"] == recipient.lstrip("+")]) == requests_made
    if recipient == "+14155550429":
        assert clock.sleeps and clock.sleeps[0] >= 1.0  # waited at least Retry-After


def test_retry_waits_are_full_jitter_and_reproducible():
    policy = dispatch.RetryPolicy(rng=random.Random(42))

    class State:
        def __init__(self, n):
            self.attempt_number = n
            self.outcome = None

    waits = [policy.wait(State(n)) for n in range(1, 5)]
    again = dispatch.RetryPolicy(rng=random.Random(42))
    assert waits == [again.wait(State(n)) for n in range(1, 5)]
    for n, wait in enumerate(waits, start=1):
        assert 0 <= wait <= min(60, 2 * 2 ** (n - 1))
    assert sum(min(60, 2 * 2 ** (n - 1)) for n in range(1, 5)) <= 120


@pytest.mark.integration
def test_retryable_failures_stop_after_five_attempts(make_app, make_user):
    app = make_app(PLIVO_API_URL=f"http://127.0.0.1:{free_port()}",
                   PLIVO_CONNECT_TIMEOUT_SECONDS="0.2")
    with app.app_context():
        from webapp.auth.service import create_user

        user_id = create_user("amy@example.com", PASSWORD).id
    message_id = pending_message(app, user_id, "+14155550123")
    clock = FakeClock()
    with app.app_context():
        dispatch.dispatch_message(message_id, dispatch.RetryPolicy(sleep=clock.sleep,
                                                                 rng=random.Random(1)))
        row = db.session.get(Message, message_id)
        assert row.status == "error" and row.attempts == 5
        assert "after 5 attempts" in row.error_reason
    assert len(clock.sleeps) == 4


def test_a_message_is_dispatched_only_once(app, make_user):
    user = make_user()
    message_id = pending_message(app, user.id, "+14155550123")
    with app.app_context():
        assert dispatch._claim(message_id)
        assert not dispatch._claim(message_id)


# ---- end to end through the live dashboard ---------------------------------------------------
@pytest.mark.integration
def test_compose_sends_to_two_numbers_and_they_end_delivered(live, simulator, make_user):
    import requests

    sim, _ = simulator
    make_user("amy@example.com")
    browser = requests.Session()
    page = browser.get(live.url + url("auth.login")).text
    token = csrf_token_in(page)
    browser.post(live.url + url("auth.login"), data={"csrf_token": token, "email": "amy@example.com",
                                            "password": PASSWORD})
    page = browser.get(live.url + url("messages.compose")).text
    token = csrf_token_in(page)
    key = KEY_RE.search(page).group(1)
    data = {"csrf_token": token, "idempotency_key": key, "sender": "+14155550100",
            "recipients": "(415) 555-0123\n(604) 555-0199", "text": "hello", "media": MEDIA}
    first = browser.post(live.url + url("messages.compose"), data=data, allow_redirects=False)
    again = browser.post(live.url + url("messages.compose"), data=data, allow_redirects=False)
    assert first.status_code == again.status_code == 303
    assert first.headers["Location"] == again.headers["Location"]
    sent_page = live.url + first.headers["Location"]

    def both_delivered() -> bool:
        return browser.get(sent_page).text.count('data-status="delivered"') == 2

    wait_for(both_delivered)
    assert len(sim.requests) == 2  # the repeated post sent nothing
    assert {r["dst"] for r in sim.requests} == {"14155550123", "16045550199"}
    assert all(r["url"] == live.url + url("webhooks.plivo_status") for r in sim.requests)
    with live.app.app_context():
        rows = db.session.scalars(select(Message)).all()
        assert len(rows) == 2 and all(len(r.events) == 3 for r in rows)
    detail = browser.get(live.url + url("messages.detail", public_id=rows[0].public_id)).text
    assert detail.count("Applied") == 3


@pytest.mark.integration
def test_callbacks_racing_the_send_answer_are_applied(live, simulator, make_user):
    user = make_user()
    message_id = pending_message(live.app, user.id, "+14155550001")
    with live.app.app_context():
        dispatch.dispatch_message(message_id)
        row = db.session.get(Message, message_id)
        assert row.status == "delivered"
        assert len(row.events) == 3


@pytest.mark.integration
def test_worker_process_sends_a_queued_message(tmp_path, simulator, make_user):
    """The queue on SQLite and a real `flask worker` in another process."""
    sim, sim_url = simulator
    env = clean_environment()
    env.update(base_env(tmp_path, TASK_QUEUE_URL=f"sqlite:///{tmp_path}/tasks.sqlite3",
                        PLIVO_API_URL=sim_url, DATABASE_URL=f"sqlite:///{tmp_path}/w.sqlite3",
                        PUBLIC_BASE_URL=f"http://127.0.0.1:{free_port()}"))
    from webapp import create_app

    app = create_app(env)
    with app.app_context():
        db.create_all()
        from webapp.auth.service import create_user

        user = create_user("amy@example.com", PASSWORD)
        rows, created = sending.create_messages(user, sending.Draft(
            sender="+14155550100", recipients=["+14155550123"], text="hi",
            media=[{"url": MEDIA}], idempotency_key="worker-test-key-1"))
        assert created and rows[0].status == "pending"
        message_id = rows[0].id
    log = (tmp_path / "worker.log").open("w")
    worker = subprocess.Popen([sys.executable, "-m", "flask", "--app", "wsgi", "worker",
                               "--threads", "2"], cwd=ROOT, env=env, stdout=log, stderr=log)
    try:
        def accepted() -> bool:
            with app.app_context():
                db.session.expire_all()
                return db.session.get(Message, message_id).plivo_uuid is not None

        wait_for(accepted, timeout=30)
    finally:
        worker.terminate()
        worker.wait(timeout=10)
        log.close()
    assert [r["dst"] for r in sim.requests] == ["14155550123"]


# ---- recovery after a lost task or a killed worker -------------------------------------------
def test_recovery_requeues_lost_tasks_and_resolves_open_sends(app, make_user):
    from datetime import timedelta

    from webapp.models import StatusEvent, utcnow

    user = make_user()
    lost = pending_message(app, user.id, "+14155550123")
    answered = pending_message(app, user.id, "+14155550124")
    silent = pending_message(app, user.id, "+14155550125")
    fresh = pending_message(app, user.id, "+14155550126")
    with app.app_context():
        old = utcnow() - timedelta(minutes=10)
        for message_id in (lost, answered, silent):
            db.session.get(Message, message_id).created_at = old
        for message_id in (answered, silent):  # claimed by a worker that then died
            row = db.session.get(Message, message_id)
            row.attempts, row.updated_at = 1, old
        db.session.add(StatusEvent(plivo_uuid="plivo-answered", status="queued", sequence=1,
                                   payload={"To": "14155550124", "From": "14155550100"},
                                   signature_scheme="v3"))
        db.session.commit()
        queue = app.extensions["task_queue"].huey
        before = queue.pending_count()
        counts = dispatch.recover_stalled(lease_seconds=60)
        assert counts == {"requeued": 1, "adopted": 1, "unknown": 1}
        assert queue.pending_count() == before + 1
        assert db.session.get(Message, answered).plivo_uuid == "plivo-answered"
        assert db.session.get(Message, answered).status == "queued"
        assert db.session.get(Message, silent).status == "unknown"
        assert db.session.get(Message, fresh).status == "pending"
        assert db.session.get(Message, lost).status == "pending"


@pytest.mark.integration
@pytest.mark.parametrize(("recipient", "final", "code", "label"), [
    ("+14155550030", "undelivered", "30", "Not delivered: spam detected (30)"),
    ("+14155550900", "failed", "900", "Failed: insufficient credit (900)"),
])
def test_magic_numbers_end_in_their_documented_state(live, make_user, recipient, final, code,
                                                      label):
    from webapp import statuses

    user = make_user()
    message_id = pending_message(live.app, user.id, recipient)
    with live.app.app_context():
        dispatch.dispatch_message(message_id)

        def finished() -> bool:
            db.session.expire_all()
            return db.session.get(Message, message_id).status == final

        wait_for(finished)
        row = db.session.get(Message, message_id)
        assert (row.error_code, row.attempts) == (code, 1)
        assert statuses.label(row.status, row.error_code) == label


@pytest.mark.integration
def test_simulator_delivers_through_a_proxy_address_signed_for_the_public_url(make_app,
                                                                             make_user):
    """A dashboard whose public address is https (a TLS proxy in front): the simulator
    posts to the loopback port and signs for the https URL, which the webhook checks."""
    from webapp.plivo_simulator import PlivoSimulator

    from .conftest import LiveServer

    port = free_port()
    sim = PlivoSimulator(SANDBOX_AUTH_ID, SANDBOX_AUTH_TOKEN, callback_delay=0.05,
                         deliver_to=f"http://127.0.0.1:{port}")
    sim_server = sim.serve_in_thread()
    app = make_app(PLIVO_API_URL=f"http://127.0.0.1:{sim_server.server_port}",
                   PUBLIC_BASE_URL="https://mms.example.com", TASK_QUEUE_URL="immediate")
    live = LiveServer(app, port)
    try:
        user = make_user()
        message_id = pending_message(app, user.id, "+14155550123")
        with app.app_context():
            dispatch.dispatch_message(message_id)
        assert sim.requests[0]["url"] == "https://mms.example.com/webhooks/plivo/status"
        wait_for(lambda: len(sim.callback_results) == 3)
        assert [code for _uuid, _status, code in sim.callback_results] == [200, 200, 200]
        with app.app_context():
            assert db.session.get(Message, message_id).status == "delivered"
    finally:
        sim.stop()
        sim_server.shutdown()
        live.stop()


@pytest.mark.parametrize("value", ["http://203.0.113.5:8000", "ftp://127.0.0.1:21",
                                   "http://127.0.0.1:8000/webhooks"])
def test_simulator_refuses_a_deliver_to_that_is_not_a_loopback_base(runner, value):
    result = runner.invoke(args=["plivo-simulator", "--deliver-to", value])
    assert result.exit_code == 2
    assert "expected a base URL on loopback" in result.output


def test_dispatch_limiter_counts_a_request_only_once_its_claim_succeeded():
    limiter = dispatch.DispatchLimiter("memory://", per_5s=2, max_in_flight=5)

    def claimed_elsewhere() -> None:
        raise dispatch._ClaimedElsewhere

    with pytest.raises(dispatch._ClaimedElsewhere), limiter.slot(prepare=claimed_elsewhere):
        pass
    sleeps: list[float] = []
    for _ in range(2):  # the refused claim took no room: two sends go at once
        with limiter.slot(sleep=sleeps.append):
            pass
    assert sleeps == []

    class WindowFull(Exception):
        pass

    def full(seconds: float) -> None:
        sleeps.append(seconds)
        raise WindowFull

    with pytest.raises(WindowFull), limiter.slot(sleep=full):
        pass
    assert 0 < sleeps[0] <= 5
