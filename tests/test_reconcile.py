"""The reconciler: messages whose callbacks never came are looked up with Plivo's Message
API (the real SDK against the simulator), through the same state machine."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from webapp.extensions import db
from webapp.messages import dispatch, reconcile
from webapp.models import Message, StatusEvent, utcnow

from .conftest import login, wait_for
from .helpers import save_message, url
from .test_dispatch import FakeClock

LOST = "+14155550410"  # the simulator delivers it and posts no callback


def send(app, user_id: int, recipient: str) -> int:
    message_id = save_message(app, created_by_id=user_id, recipient=recipient)
    with app.app_context():
        dispatch.dispatch_message(message_id, dispatch.RetryPolicy(
            sleep=FakeClock().sleep, rng=random.Random(1)))
    return message_id


def message(app, message_id: int) -> Message:
    with app.app_context():
        row = db.session.get(Message, message_id)
        db.session.expunge(row)
        return row


@pytest.mark.integration
def test_a_message_whose_callbacks_were_lost_is_delivered_after_a_lookup(
        live, simulator, make_user, login_as):
    sim, _ = simulator
    user = make_user()
    message_id = send(live.app, user.id, LOST)
    row = message(live.app, message_id)
    assert row.status == "queued" and row.next_lookup_at is not None
    assert row.next_lookup_at - row.queued_at == timedelta(minutes=15)  # the default
    wait_for(lambda: sim.messages[row.plivo_uuid].state == "delivered")
    assert not sim.messages[row.plivo_uuid].callbacks  # none posted: only a lookup can tell
    with live.app.app_context():
        assert reconcile.reconcile()["looked up"] == 0  # not due yet
        counts = reconcile.reconcile(now=utcnow() + timedelta(minutes=16))
    assert counts["looked up"] == 1 and counts["applied"] == 1
    row = message(live.app, message_id)
    assert row.status == "delivered" and row.total_amount is not None
    assert row.lookups == 1 and row.looked_up_at is not None
    with live.app.app_context():
        [ledger] = db.session.scalars(db.select(StatusEvent).filter_by(message_id=message_id))
        assert (ledger.status, ledger.signature_scheme, ledger.applied) == (
            "delivered", "lookup", True)
        # Final now: the next sweep forgets it rather than asking again.
        later = reconcile.reconcile(now=utcnow() + timedelta(hours=2))
        assert later["looked up"] == 0 and later["no longer waiting"] == 1
    client = live.app.test_client()
    login(client, user.email)
    page = client.get(url("messages.detail", public_id=row.public_id)).get_data(as_text=True)
    assert 'id="checked-with-plivo"' in page and "(1 time)" in page
    assert "Checked with Plivo (no callback)" in page


@pytest.mark.integration
def test_lookups_back_off_then_stop_and_say_plivo_has_no_final_status(
        live, simulator, make_user):
    sim, _ = simulator
    user = make_user()
    message_id = send(live.app, user.id, LOST)
    uuid = message(live.app, message_id).plivo_uuid
    wait_for(lambda: sim.messages[uuid].state == "delivered")
    sim.messages[uuid].state = "sent"  # Plivo itself never learns more
    moment = utcnow() + timedelta(minutes=15)
    waits = []
    with live.app.app_context():
        for _ in range(reconcile.MAX_LOOKUPS):
            assert reconcile.reconcile(now=moment)["looked up"] == 1
            row = db.session.get(Message, message_id)
            db.session.refresh(row)
            if row.next_lookup_at:
                waits.append(row.next_lookup_at - moment)
                moment = row.next_lookup_at
        assert waits == list(reconcile.LATER_LOOKUPS)
        assert row.status == "sent" and row.lookups == reconcile.MAX_LOOKUPS
        assert row.next_lookup_at is None and reconcile.gave_up(row)
        assert reconcile.reconcile(now=moment + timedelta(days=30))["looked up"] == 0
        public_id = row.public_id
    client = live.app.test_client()
    login(client, user.email)
    page = client.get(url("messages.detail", public_id=public_id)).get_data(as_text=True)
    assert "Plivo has no final status for it" in page


@pytest.mark.integration
def test_a_lookup_never_moves_a_final_status_back_and_a_later_callback_still_wins(
        live, simulator, make_user):
    """Plivo's Message API may lag its callbacks: a lookup saying "sent" after a
    "delivered" callback changes nothing; a lookup's "delivered" (Sequence 0) gives way to
    a later final callback with a Sequence."""
    sim, _ = simulator
    user = make_user()
    message_id = send(live.app, user.id, LOST)
    uuid = message(live.app, message_id).plivo_uuid
    wait_for(lambda: sim.messages[uuid].state == "delivered")
    later = utcnow() + timedelta(minutes=16)
    with live.app.app_context():
        reconcile.reconcile(now=later)
        assert db.session.get(Message, message_id).status == "delivered"
        sim_message = sim.messages[uuid]
        sim_message.state, sim_message.error_code = "undelivered", "30"
        sim.post_callback(sim_message, "undelivered", 3, "30")  # Plivo's own last word
    row = message(live.app, message_id)
    assert (row.status, row.error_code) == ("undelivered", "30")
    with live.app.app_context():
        db.session.execute(db.update(Message).where(Message.id == message_id)
                           .values(next_lookup_at=later))
        db.session.commit()
        sim_message.state, sim_message.error_code = "sent", ""
        assert reconcile.reconcile(now=later)["applied"] == 0  # final: not even asked
    assert message(live.app, message_id).status == "undelivered"


@pytest.mark.integration
def test_the_command_asks_plivo_about_every_overdue_message(live, simulator, make_user):
    sim, _ = simulator
    user = make_user()
    ids = [send(live.app, user.id, LOST) for _ in range(3)]
    wait_for(lambda: all(m.state == "delivered" for m in sim.messages.values()))
    with live.app.app_context():
        db.session.execute(db.update(Message).where(Message.id.in_(ids))
                           .values(next_lookup_at=utcnow() - timedelta(minutes=1)))
        db.session.commit()
    result = live.app.test_cli_runner().invoke(args=["messages", "reconcile"])
    assert result.exit_code == 0, result.output
    assert "Asking Plivo about 3 messages" in result.output
    assert "looked up: 3" in result.output and "applied: 3" in result.output
    assert {message(live.app, i).status for i in ids} == {"delivered"}


def test_lookups_take_at_most_their_share_of_plivos_window():
    """At 280 requests per 5 s and a 10 % share, the 29th lookup in a window waits, and
    each lookup is counted in the window sends use too."""
    limiter = dispatch.DispatchLimiter("memory://", per_5s=280, max_in_flight=10,
                                       lookup_share=10)

    class Waited(Exception):
        pass

    def wait(_seconds: float) -> None:
        raise Waited

    for _ in range(28):
        with limiter.lookup_slot(sleep=wait):
            pass
    with pytest.raises(Waited), limiter.lookup_slot(sleep=wait):
        pass
    sent = 0
    try:
        while True:
            with limiter.slot(sleep=wait):
                sent += 1
    except Waited:
        pass
    assert sent == 280 - 28  # the lookups took their room in the sending window


def test_reconcile_settings_are_checked(tmp_path):
    from webapp.config import ConfigError, load_settings
    for key, bad in (("RECONCILE_AFTER_MINUTES", "0"), ("RECONCILE_AFTER_MINUTES", "1441"),
                     ("RECONCILE_MAX_SHARE", "90"), ("RECONCILE_MAX_SHARE", "ten")):
        with pytest.raises(ConfigError, match=key):
            load_settings({"APP_ENV": "testing", "INSTANCE_PATH": str(tmp_path), key: bad})
