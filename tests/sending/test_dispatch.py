"""Dispatch: retries, claims, Plivo's rate limit, and recovery after a lost task or a killed worker."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from tests.conftest import PASSWORD, free_port
from tests.helpers import save_message
from webapp.extensions import db
from webapp.gateway import pace
from webapp.models import Message
from webapp.sending import dispatch

ROOT = Path(__file__).resolve().parents[2]
MEDIA = "https://example.com/picture.jpg"
KEY_RE = re.compile(r'name="idempotency_key" type="hidden" value="([^"]+)"')

# ---- dispatch: retries with an injected clock and seed ---------------------------------------
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
    message_id = save_message(live.app, created_by_id=user.id, recipient=recipient)
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
    message_id = save_message(app, created_by_id=user_id, recipient="+14155550123")
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
    message_id = save_message(app, created_by_id=user.id, recipient="+14155550123")
    with app.app_context():
        assert dispatch._claim(message_id)
        assert not dispatch._claim(message_id)


# ---- recovery after a lost task or a killed worker -------------------------------------------
def test_recovery_requeues_lost_tasks_and_resolves_open_sends(app, make_user):
    from datetime import timedelta

    from webapp.models import StatusEvent, utcnow

    user = make_user()
    lost = save_message(app, created_by_id=user.id, recipient="+14155550123")
    answered = save_message(app, created_by_id=user.id, recipient="+14155550124")
    silent = save_message(app, created_by_id=user.id, recipient="+14155550125")
    fresh = save_message(app, created_by_id=user.id, recipient="+14155550126")
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


def test_a_claimed_message_plivo_s_callbacks_name_is_adopted_without_the_lease_wait(
        app, make_user):
    """A worker killed mid-send, callbacks already here: no three-minute "Waiting to send".
    Its queued time is the one Plivo reported, not the time of the adoption. Two claimed
    messages to one number are left to the lease: the callbacks cannot say whose."""
    from datetime import UTC, datetime

    from webapp.models import StatusEvent

    user = make_user()
    named = save_message(app, created_by_id=user.id, recipient="+14155550131")
    twins = [save_message(app, created_by_id=user.id, recipient="+14155550132")
             for _ in range(2)]
    with app.app_context():
        for message_id in (named, *twins):  # claimed a moment ago
            db.session.get(Message, message_id).attempts = 1
        for uuid, to, queued in (("plivo-named", "14155550131", "2026-12-01 10:00:01.250000"),
                                 ("plivo-twin", "14155550132", "2026-12-01 10:00:02")):
            db.session.add(StatusEvent(
                plivo_uuid=uuid, status="queued", sequence=1, signature_scheme="v3",
                payload={"To": to, "From": "14155550100", "QueuedTime": queued}))
        db.session.commit()
        counts = dispatch.recover_stalled(lease_seconds=180)
        assert counts["adopted"] == 1 and counts["unknown"] == 0
        adopted = db.session.get(Message, named)
        assert (adopted.plivo_uuid, adopted.status) == ("plivo-named", "queued")
        assert adopted.queued_at == datetime(2026, 12, 1, 10, 0, 1, 250000, tzinfo=UTC)
        assert {db.session.get(Message, i).status for i in twins} == {"pending"}
        assert all(db.session.get(Message, i).plivo_uuid is None for i in twins)


def test_dispatch_limiter_counts_a_request_only_once_its_claim_succeeded():
    limiter = pace.DispatchLimiter("memory://", per_5s=2, max_in_flight=5)

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
