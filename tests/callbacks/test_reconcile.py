"""The reconciler: messages whose callbacks never came are looked up with Plivo's Message
API (the real SDK against the simulator), through the same state machine."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from sqlalchemy import select

from tests.conftest import login, post_form, wait_for
from tests.helpers import save_message, url
from tests.sending.test_dispatch import FakeClock
from webapp.callbacks import reconcile
from webapp.extensions import db
from webapp.gateway import pace
from webapp.models import Message, StatusEvent, utcnow
from webapp.sending import dispatch

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
    page = client.get(url("history.detail", public_id=row.public_id)).get_data(as_text=True)
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
    page = client.get(url("history.detail", public_id=public_id)).get_data(as_text=True)
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
    each lookup is counted in the window sends use too (here its second's share: 58)."""
    limiter = pace.DispatchLimiter("memory://", per_5s=280, max_in_flight=10,
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
    assert sent == 280 // 5 + 2 - 28  # the lookups took their room in the sending window


def test_the_window_is_spread_over_its_five_seconds():
    """No burst of the whole window at once: about a fifth of it in any second."""
    limiter = pace.DispatchLimiter("memory://", per_5s=280, max_in_flight=10)

    class Waited(Exception):
        pass

    def wait(_seconds: float) -> None:
        raise Waited

    sent = 0
    with pytest.raises(Waited):
        while True:
            with limiter.slot(sleep=wait):
                sent += 1
    assert sent == 58


def test_reconcile_settings_are_checked(tmp_path):
    from webapp.config import ConfigError, load_settings
    for key, bad in (("RECONCILE_AFTER_MINUTES", "0"), ("RECONCILE_AFTER_MINUTES", "1441"),
                     ("RECONCILE_MAX_SHARE", "90"), ("RECONCILE_MAX_SHARE", "ten")):
        with pytest.raises(ConfigError, match=key):
            load_settings({"APP_ENV": "testing", "INSTANCE_PATH": str(tmp_path), key: bad})


def test_the_reconciler_takes_its_lookups_from_their_share(live, simulator, make_user):
    """Each lookup the reconciler makes is counted in the lookups' own window, so
    RECONCILE_MAX_SHARE bounds them (not only the limiter's own test above)."""
    sim, _ = simulator
    user = make_user()
    ids = [send(live.app, user.id, LOST) for _ in range(3)]
    wait_for(lambda: all(m.state == "delivered" for m in sim.messages.values()))
    with live.app.app_context():
        reconcile.reconcile(now=utcnow() + timedelta(minutes=16))
        limiter = pace.lookup_limiter()
        _reset, remaining = limiter._window.get_window_stats(limiter._lookup_item,
                                                             "plivo-lookup")
        assert remaining == limiter._lookup_item.amount - len(ids)


# ---- unknown messages: Plivo's message list ------------------------------------------------
ANSWER_LOST = "+14155550411"  # Plivo takes it; neither the answer nor a callback comes
NEVER_ANSWERS = "+14155550408"  # Plivo never gets it


def test_an_unknown_message_plivo_has_is_adopted_from_its_message_list(
        live, simulator, make_user):
    sim, _ = simulator
    user = make_user()
    message_id = send(live.app, user.id, ANSWER_LOST)
    row = message(live.app, message_id)
    assert (row.status, row.plivo_uuid) == ("unknown", None)
    assert row.next_lookup_at - row.updated_at < timedelta(minutes=2, seconds=1)
    [uuid] = sim.messages
    wait_for(lambda: sim.messages[uuid].state == "delivered")
    with live.app.app_context():
        assert reconcile.reconcile()["looked up"] == 0  # not for two minutes
        counts = reconcile.reconcile(now=utcnow() + timedelta(minutes=3))
    assert counts["adopted"] == 1
    row = message(live.app, message_id)
    assert (row.status, row.plivo_uuid) == ("delivered", uuid)
    with live.app.app_context():
        [ledger] = db.session.scalars(db.select(StatusEvent).filter_by(message_id=message_id))
        assert (ledger.signature_scheme, ledger.applied) == ("lookup", True)


def test_an_unknown_message_plivo_never_got_becomes_not_sent(live, simulator, make_user):
    sim, _ = simulator
    user = make_user()
    message_id = send(live.app, user.id, NEVER_ANSWERS)
    assert message(live.app, message_id).status == "unknown" and not sim.messages
    later = utcnow() + timedelta(minutes=3)
    with live.app.app_context():
        assert reconcile.reconcile(now=later)["not listed yet"] == 1  # the list may lag
        assert reconcile.reconcile(now=later)["looked up"] == 0
        # the second look comes RECONCILE_AFTER_MINUTES (15) after the first
        assert reconcile.reconcile(now=later + timedelta(minutes=14))["not sent"] == 0
        assert reconcile.reconcile(now=later + timedelta(minutes=15))["not sent"] == 1
    row = message(live.app, message_id)
    assert row.status == "not_sent" and row.final_at is not None
    assert "never reached Plivo" in row.error_reason
    client = live.app.test_client()
    login(client, user.email)
    page = client.get(url("history.detail", public_id=row.public_id)).get_data(as_text=True)
    assert "Not sent — Plivo never received it" in page and 'id="send-again"' in page


def test_send_again_sends_a_new_message_once(live, simulator, make_user):
    sim, _ = simulator
    author, colleague = make_user("author@example.com"), make_user("colleague@example.com")
    original = save_message(live.app, created_by_id=author.id, recipient="+14155552300",
                            status="not_sent", text="Your cake is ready")
    public_id = message(live.app, original).public_id
    client = live.app.test_client()
    login(client, colleague.email)
    detail = url("history.detail", public_id=public_id)
    answer = post_form(client, url("sending.send_again", public_id=public_id), {},
                       form_page=detail)
    assert answer.status_code == 303
    again_url = answer.headers["Location"]
    assert again_url != detail
    wait_for(lambda: len(sim.requests) == 1)
    assert sim.requests[0]["dst"] == "14155552300" and sim.requests[0]["text"] == (
        "Your cake is ready")
    second = post_form(client, url("sending.send_again", public_id=public_id), {},
                       form_page=detail)
    assert second.headers["Location"] == again_url  # a second click sends nothing more
    assert len(sim.requests) == 1
    with live.app.app_context():
        [again] = db.session.scalars(db.select(Message).filter_by(
            idempotency_key=f"again-{public_id}"))
        assert again.created_by_id == colleague.id  # who pressed the button
    pending = save_message(live.app, created_by_id=author.id, recipient="+14155552301")
    refused = post_form(client, url("sending.send_again",
                                    public_id=message(live.app, pending).public_id), {},
                        form_page=detail)
    assert refused.status_code == 303 and len(sim.requests) == 1  # only not_sent ones


def test_several_candidates_are_listed_for_a_person_to_choose(live, simulator, make_user):
    import uuid as uuids_

    from webapp.gateway.simulator import SimulatedMessage

    sim, _ = simulator
    user = make_user()
    unknown = save_message(live.app, created_by_id=user.id, recipient="+14155552400",
                           status="unknown", created_at=utcnow() - timedelta(minutes=5),
                           next_lookup_at=utcnow() - timedelta(seconds=1))
    uuids = [str(uuids_.uuid4()) for _ in "ab"]
    for plivo_uuid in uuids:  # two messages Plivo has that no row of ours claims
        sim.messages[plivo_uuid] = SimulatedMessage(
            uuid=plivo_uuid, src="14155550100", dst="14155552400", text="x", media_urls=[],
            media_ids=[], url=None, method="POST", state="delivered")
    with live.app.app_context():
        assert reconcile.reconcile()["several candidates"] == 1
    row = message(live.app, unknown)
    assert row.status == "unknown" and {c["uuid"] for c in row.lookup_candidates} == set(uuids)
    client = live.app.test_client()
    login(client, user.email)
    detail = url("history.detail", public_id=row.public_id)
    page = client.get(detail).get_data(as_text=True)
    assert 'id="candidates"' in page and all(u in page for u in uuids)
    wrong = post_form(client, url("sending.adopt", public_id=row.public_id),
                      {"plivo_uuid": "not-a-candidate"}, form_page=detail)
    assert wrong.status_code == 303 and message(live.app, unknown).plivo_uuid is None
    post_form(client, url("sending.adopt", public_id=row.public_id), {"plivo_uuid": uuids[1]},
              form_page=detail)
    row = message(live.app, unknown)
    assert row.plivo_uuid == uuids[1] and row.status != "unknown"
    assert not row.lookup_candidates
    with live.app.app_context():  # the person's choice is recorded, once, the refusal not
        from webapp.models import AuditEvent
        matched = db.session.execute(select(AuditEvent.actor_id, AuditEvent.target,
                                            AuditEvent.detail).where(
            AuditEvent.action == "message_matched")).all()
    assert [(m.actor_id, m.target, m.detail["plivo_uuid"]) for m in matched] == [
        (user.id, row.public_id, uuids[1])]


def test_the_message_list_s_refusal_is_read_from_the_response(live, simulator, make_user):
    """The SDK turns the list's 401 into a TypeError (PLIVO.md 1.8): still, the circuit
    opens as for any refused credentials."""
    from webapp.gateway import circuit

    sim, _ = simulator
    user = make_user()
    save_message(live.app, created_by_id=user.id, recipient="+14155552500", status="unknown",
                 next_lookup_at=utcnow() - timedelta(seconds=1))
    sim.auth_token = "rotated"
    with live.app.app_context():
        assert reconcile.reconcile()["Plivo refused the account"] == 1
        assert circuit.is_open()
        circuit.close_circuit()


def test_the_message_list_takes_at_most_20_requests_a_minute():
    limiter = pace.DispatchLimiter("memory://", per_5s=280, max_in_flight=10)

    class Waited(Exception):
        pass

    def wait(_seconds: float) -> None:
        raise Waited

    for _ in range(20):
        with limiter.list_slot(sleep=wait):
            pass
    with pytest.raises(Waited), limiter.list_slot(sleep=wait):
        pass


def test_an_unknown_message_says_the_dashboard_is_asking_and_names_the_console_only_after(
        app, client, login_as):
    """The dashboard asks Plivo by itself: while it does, the page says when it asks next;
    only once it has stopped does it send staff to Plivo's console."""
    from datetime import UTC, datetime

    user = login_as("staff")
    asking = save_message(app, created_by_id=user.id, status="unknown", lookups=1,
                          next_lookup_at=datetime(2026, 12, 7, 16, 59, tzinfo=UTC))
    stopped = save_message(app, created_by_id=user.id, status="unknown",
                           lookups=reconcile.MAX_LOOKUPS, next_lookup_at=None)
    with app.app_context():
        ids = {m.id: m.public_id for m in db.session.scalars(select(Message))}
    page = client.get(url("history.detail", public_id=ids[asking])).get_data(as_text=True)
    assert "We are asking Plivo whether it went; next check at 2026-12-07 16:59 UTC." in page
    assert "console" not in page
    page = client.get(url("history.detail", public_id=ids[stopped])).get_data(as_text=True)
    assert "the dashboard has stopped asking. Look the message up in Plivo&#39;s console" in page
