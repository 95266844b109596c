"""The simulator: its magic numbers (one table decides, describes and documents them),
and callbacks through a TLS proxy's loopback address."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import free_port, wait_for
from tests.helpers import save_message, url
from webapp import statuses
from webapp.config import SANDBOX_AUTH_ID, SANDBOX_AUTH_TOKEN
from webapp.extensions import db
from webapp.gateway.simulator import BEHAVIOURS, display_number, readme_table
from webapp.models import Message
from webapp.sending import dispatch

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_lists_the_magic_numbers_the_simulator_acts_on():
    assert readme_table() in README.read_text()


def test_the_compose_page_hints_come_from_the_same_table(client, login_as):
    login_as()
    page = client.get(url("sending.compose")).get_data(as_text=True)
    hinted = [b for b in BEHAVIOURS if b.hint]
    assert hinted
    for behaviour in hinted:
        assert f"<code>{display_number(behaviour.number)}</code> ({behaviour.hint})" in page


@pytest.mark.integration
@pytest.mark.parametrize(("recipient", "final", "code", "label"), [
    ("+14155550030", "undelivered", "30", "Not delivered: spam detected (30)"),
    ("+14155550900", "failed", "900", "Failed: insufficient credit (900)"),
])
def test_magic_numbers_end_in_their_documented_state(live, make_user, recipient, final, code,
                                                      label):

    user = make_user()
    message_id = save_message(live.app, created_by_id=user.id, recipient=recipient)
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
    from tests.conftest import LiveServer
    from webapp.gateway.simulator import PlivoSimulator

    port = free_port()
    sim = PlivoSimulator(SANDBOX_AUTH_ID, SANDBOX_AUTH_TOKEN, callback_delay=0.05,
                         deliver_to=f"http://127.0.0.1:{port}")
    sim_server = sim.serve_in_thread()
    app = make_app(PLIVO_API_URL=f"http://127.0.0.1:{sim_server.server_port}",
                   PUBLIC_BASE_URL="https://mms.example.com", TASK_QUEUE_URL="immediate")
    live = LiveServer(app, port)
    try:
        user = make_user()
        message_id = save_message(app, created_by_id=user.id, recipient="+14155550123")
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


def _chaotic(make_app, chaos):
    from tests.conftest import LiveServer
    from webapp.gateway.simulator import PlivoSimulator

    port = free_port()
    sim = PlivoSimulator(SANDBOX_AUTH_ID, SANDBOX_AUTH_TOKEN, callback_delay=0.05,
                         deliver_to=f"http://127.0.0.1:{port}", chaos=chaos)
    sim_server = sim.serve_in_thread()
    app = make_app(PLIVO_API_URL=f"http://127.0.0.1:{sim_server.server_port}",
                   PUBLIC_BASE_URL="https://mms.example.com", TASK_QUEUE_URL="immediate")
    return sim, sim_server, app, LiveServer(app, port)


@pytest.mark.integration
def test_chaos_doubles_and_reverses_callbacks_and_the_dashboard_keeps_plivos_truth(
        make_app, make_user):
    """The chaos benchmark's switches: every callback posted twice, in reverse order. The
    state machine keeps the final status; each status keeps the time Plivo reached it."""
    from webapp.gateway.simulator import Chaos
    from webapp.models import StatusEvent

    sim, sim_server, app, live = _chaotic(make_app, Chaos(duplicate=1.0, reorder=1.0))
    try:
        user = make_user()
        message_id = save_message(app, created_by_id=user.id, recipient="+14155550123")
        with app.app_context():
            dispatch.dispatch_message(message_id)
        wait_for(lambda: len(sim.callback_results) == 6)
        assert [status for _uuid, status, _code in sim.callback_results] == [
            "delivered", "delivered", "sent", "sent", "queued", "queued"]
        assert sim.chaos_counts == {"duplicated": 3, "reordered": 1}
        (plivo,) = sim.messages.values()
        with app.app_context():
            row = db.session.get(Message, message_id)
            assert row.status == "delivered"
            # the times Plivo reported (the state's own moment), not when they arrived
            assert row.queued_at.timestamp() == pytest.approx(plivo.times["queued"], abs=1)
            applied = db.session.query(StatusEvent).filter_by(message_id=message_id,
                                                              applied=True).count()
            assert applied == 1  # the final one; the late queued/sent ones change nothing
    finally:
        sim.stop()
        sim_server.shutdown()
        live.stop()


@pytest.mark.integration
def test_chaos_drops_callbacks_and_plivos_api_still_tells_the_truth(make_app, make_user):
    import requests

    from webapp.gateway.simulator import Chaos

    sim, sim_server, app, live = _chaotic(make_app, Chaos(drop=1.0, failing=1.0))
    try:
        user = make_user()
        message_id = save_message(app, created_by_id=user.id, recipient="+14155550123")
        with app.app_context():
            dispatch.dispatch_message(message_id)
        wait_for(lambda: sim.chaos_counts["dropped"] >= 2)
        truth = requests.get(f"http://127.0.0.1:{sim_server.server_port}/__sim/truth",
                             timeout=5).json()
        (plivo,) = truth["messages"]
        wait_for(lambda: next(iter(sim.messages.values())).state in ("undelivered", "failed"))
        assert sim.callback_results == []  # nothing posted
        with app.app_context():
            assert db.session.get(Message, message_id).status == "queued"  # as it knows
        assert plivo["dst"] == "14155550123" and "queued" in plivo["times"]
    finally:
        sim.stop()
        sim_server.shutdown()
        live.stop()
