"""The Plivo circuit: Plivo refusing the account pauses sending for everyone, marks nothing
failed, shows a banner, tries one message a minute, and resumes by itself (the real SDK
against the simulator)."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from tests.conftest import login, wait_for
from tests.helpers import save_message, url
from tests.sending.test_dispatch import FakeClock
from webapp.callbacks import reconcile
from webapp.extensions import db
from webapp.gateway import circuit
from webapp.gateway import client as gateway
from webapp.models import Message, PlivoCircuit, utcnow
from webapp.sending import dispatch

pytestmark = pytest.mark.integration


def send(app, message_id: int, probe: bool = False) -> None:
    with app.app_context():
        dispatch.dispatch_message(message_id, dispatch.RetryPolicy(
            sleep=FakeClock().sleep, rng=random.Random(1)), probe=probe)


def row(app, message_id: int) -> Message:
    with app.app_context():
        message = db.session.get(Message, message_id)
        db.session.expunge(message)
        return message


def circuit_row(app) -> PlivoCircuit | None:
    with app.app_context():
        found = db.session.get(PlivoCircuit, circuit.ROW)
        if found is not None:
            db.session.expunge(found)
        return found


@pytest.fixture(autouse=True)
def fresh_banner():
    circuit._forget_banner()
    yield
    circuit._forget_banner()


def test_a_wrong_token_pauses_sending_marks_nothing_failed_and_resumes_by_itself(
        live, simulator, make_user):
    sim, _ = simulator
    make_user("admin@example.com", "admin")
    staff = make_user("staff@example.com")
    sim.auth_token = "rotated-in-plivo-console"  # our PLIVO_AUTH_TOKEN is now wrong
    ids = [save_message(live.app, created_by_id=staff.id,
                        recipient=f"+1415555{2100 + i:04d}") for i in range(3)]
    for message_id in ids:
        send(live.app, message_id)
    assert sim.refused_for_auth == 1  # the first met the wall; the others never tried
    for message_id in ids:
        message = row(live.app, message_id)
        assert (message.status, message.attempts, message.plivo_uuid) == ("pending", 0, None)
    assert "Plivo refused our credentials (401" in row(live.app, ids[0]).last_attempt_error
    state = circuit_row(live.app)
    assert (state.state, state.kind, state.http_status) == ("open", "credentials", 401)

    # Every page says so: admins learn what to check, staff that an admin must act.
    admin_client = live.app.test_client()
    login(admin_client, "admin@example.com")
    page = admin_client.get(url("history.history")).get_data(as_text=True)
    assert 'id="sending-paused"' in page and "Plivo refused our credentials" in page
    assert "3 messages" in page and "PLIVO_AUTH_TOKEN" in page
    staff_client = live.app.test_client()
    login(staff_client, "staff@example.com")
    staff_page = staff_client.get(url("sending.compose")).get_data(as_text=True)
    assert "Sending is paused" in staff_page and "An admin needs to fix" in staff_page
    assert "PLIVO_AUTH_TOKEN" not in staff_page
    anonymous = live.app.test_client().get(url("auth.login")).get_data(as_text=True)
    assert "sending-paused" not in anonymous

    with live.app.app_context():
        # The sweep neither queues the waiting messages again nor looks anything up.
        assert dispatch.recover_stalled(0)["requeued"] == 0
        assert circuit.probe(dispatch.probe_circuit) == {}  # not due for a minute
        # Due, still refused: the oldest message is tried and waits again.
        later = utcnow() + timedelta(minutes=2)
        assert circuit.probe(lambda i: send(live.app, i, probe=True), later) == {
            "circuit probes": 1}
    assert sim.refused_for_auth == 2 and circuit_row(live.app).state == "open"
    assert row(live.app, ids[0]).status == "pending"

    sim.auth_token = live.app.extensions["settings"].plivo_auth_token  # fixed
    with live.app.app_context():
        assert circuit.probe(lambda i: send(live.app, i, probe=True),
                             later + timedelta(minutes=2)) == {"circuit probes": 1}
    state = circuit_row(live.app)
    assert state.state == "closed" and state.probes == 2
    # Closing queued the rest (this test's queue runs tasks at once): all go out.
    wait_for(lambda: all(row(live.app, i).status in ("queued", "sent", "delivered")
                         for i in ids))
    assert len(sim.requests) == 3  # each sent once
    circuit._forget_banner()
    assert 'id="sending-paused"' not in admin_client.get(url("history.history")).get_data(
        as_text=True)


def test_no_credit_at_request_time_pauses_too_and_says_so(live, simulator, make_user):
    sim, _ = simulator
    make_user("admin@example.com", "admin")
    sim.account_refusal = (400, "Insufficient Credit")
    message_id = save_message(live.app, recipient="+14155552200")
    send(live.app, message_id)
    assert row(live.app, message_id).status == "pending"
    state = circuit_row(live.app)
    assert (state.state, state.kind) == ("open", "credit")
    client = live.app.test_client()
    login(client, "admin@example.com")
    page = client.get(url("history.history")).get_data(as_text=True)
    assert "Plivo says the account has no credit" in page and "Top up" in page


def test_a_geo_permission_403_is_the_message_s_refusal_not_the_account_s(live, simulator,
                                                                          make_user):
    sim, _ = simulator
    make_user()
    sim.account_refusal = (403, "This account is not allowed to send to this country "
                                "(geo permissions)")
    message_id = save_message(live.app, recipient="+14155552201")
    send(live.app, message_id)
    assert row(live.app, message_id).status == "error"
    assert circuit_row(live.app) is None or circuit_row(live.app).state == "closed"


def test_a_probe_refused_for_its_own_reason_still_closes_the_circuit(live, simulator,
                                                                      make_user):
    """A 400 about the message means Plivo took our credentials: the others may go."""
    make_user()
    with live.app.app_context():
        circuit.open_circuit("test", 401, "credentials")
    bad = save_message(live.app, recipient="+14155550400")  # 400: not a valid number
    waiting = save_message(live.app, recipient="+14155552203")
    with live.app.app_context():
        assert circuit.next_waiting() == bad
    send(live.app, bad, probe=True)
    assert row(live.app, bad).status == "error"
    assert circuit_row(live.app).state == "closed"
    wait_for(lambda: row(live.app, waiting).status in ("queued", "sent", "delivered"))


def test_with_nothing_waiting_the_probe_closes_the_circuit(app):
    with app.app_context():
        assert circuit.open_circuit("Plivo refused our credentials (401)", 401, "credentials")
        assert not circuit.open_circuit("again", 401, "credentials")  # already open
        assert circuit.paused().reason == "again"
        assert circuit.probe(lambda i: pytest.fail("nothing to send"),
                             utcnow() + timedelta(minutes=2)) == {"circuit probes": 1}
        assert not circuit.is_open() and circuit.paused() is None


def test_lookups_pause_while_open_and_a_refused_lookup_opens_it(live, simulator, make_user):
    sim, _ = simulator
    user = make_user()
    message_id = save_message(live.app, created_by_id=user.id, recipient="+14155550410")
    send(live.app, message_id)
    uuid = row(live.app, message_id).plivo_uuid
    wait_for(lambda: sim.messages[uuid].state == "delivered")
    due = utcnow() + timedelta(minutes=16)
    sim.auth_token = "rotated"
    with live.app.app_context():
        counts = reconcile.reconcile(now=due)
        assert counts["Plivo refused the account"] == 1 and circuit.is_open()
        assert reconcile.reconcile(now=due)["looked up"] == 0  # paused: not even asked
    assert sim.refused_for_auth == 1
    message = row(live.app, message_id)
    assert message.status == "queued" and message.lookups == 0  # asked again later


def test_the_gateway_tells_the_account_refused_from_the_message_refused():
    refused = gateway.PlivoAccountRefused("x", 401)
    assert refused.kind == "credentials" and not isinstance(refused, gateway.PlivoRejected)
