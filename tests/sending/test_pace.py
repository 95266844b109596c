"""The dashboard keeps Plivo's pace (issue 34): messages go no faster than the account's MPS
and each number's limit, never past a number's daily cap, each with Plivo's expiry; the
numbers are learnt from Plivo's Number API; a pool spreads customers, each keeping theirs."""

from __future__ import annotations

import pytest

from tests.conftest import LiveServer, free_port, login, wait_for
from tests.helpers import save_message, url
from webapp.config import SANDBOX_AUTH_ID, SANDBOX_AUTH_TOKEN
from webapp.extensions import db
from webapp.gateway.simulator import PlivoSimulator
from webapp.gateway.simulator.pace import SimNumber
from webapp.models import Message, StickySender
from webapp.number_limits import US_LONG_CODE, Limit
from webapp.sending import dispatch, senders


@pytest.fixture
def sim():
    simulator = PlivoSimulator(SANDBOX_AUTH_ID, SANDBOX_AUTH_TOKEN, callback_delay=0.05,
                               numbers=[SimNumber("14155550100", "local")])
    server = simulator.serve_in_thread()
    yield simulator, f"http://127.0.0.1:{server.server_port}"
    simulator.stop()
    server.shutdown()


def paced_app(make_app, sim_url: str, **settings: str):
    # Callbacks go nowhere: these tests look at what reached Plivo, not at statuses.
    return make_app(PLIVO_API_URL=sim_url, PUBLIC_BASE_URL="http://127.0.0.1:9", **settings)


def pending(app, user, count: int, first: int) -> list[int]:
    """`count` pending messages of `user`'s, to distinct numbers from 415-555-`first`."""
    return [save_message(app, created_by_id=user.id, recipient=f"+1415555{first + i}")
            for i in range(count)]


@pytest.mark.integration
def test_messages_go_at_the_accounts_mps(make_app, make_user, sim):
    simulator, sim_url = sim
    app = paced_app(make_app, sim_url, PLIVO_MMS_MPS="4")
    user = make_user()
    ids = pending(app, user, 6, 1000)
    with app.app_context():
        for message_id in ids:
            dispatch.dispatch_message(message_id)
    times = simulator.accepted_at
    assert len(times) == 6
    # 4 a second, and never more than one turn ahead (two at once, then a beat of 0.25 s).
    assert times[-1] - times[0] >= 4 * 0.25 - 0.02
    assert all(b - a >= 0.25 - 0.02 for a, b in zip(times, times[2:], strict=False))
    assert {r["message_expiry"] for r in simulator.requests} == {3600}


@pytest.mark.integration
def test_a_numbers_daily_cap_holds_the_rest_for_tomorrow(make_app, make_user, sim):
    simulator, sim_url = sim
    app = paced_app(make_app, sim_url, PLIVO_NUMBER_LIMITS="+14155550100=1000/s;2/day",
                    PLIVO_MESSAGE_EXPIRY_SECONDS="600")
    user = make_user()
    # One was handed to Plivo earlier today, by another process: it counts.
    save_message(app, created_by_id=user.id, recipient="+14155550999", attempts=1,
                 status="delivered")
    ids = pending(app, user, 3, 2000)
    with app.app_context():
        for message_id in ids:
            dispatch.dispatch_message(message_id)
        rows = [db.session.get(Message, i) for i in ids]
        assert [r.attempts for r in rows] == [1, 0, 0]
        assert rows[1].not_before is not None and rows[1].not_before.hour == 0
        assert rows[1].status == "pending"
        # Still waiting: it is not tried again today.
        dispatch.dispatch_message(ids[1])
        assert db.session.get(Message, ids[1]).attempts == 0
        # The sweep leaves it too.
        assert dispatch.recover_stalled(0)["requeued"] == 0
    assert len(simulator.requests) == 1
    assert simulator.requests[0]["message_expiry"] == 600


@pytest.mark.integration
def test_a_paused_list_keeps_the_message_that_waited_for_its_turn(make_app, make_user, sim):
    simulator, sim_url = sim
    app = paced_app(make_app, sim_url, PLIVO_MMS_MPS="2")
    user = make_user()
    ids = pending(app, user, 3, 3000)
    asked = []

    def wanted() -> bool:
        asked.append(True)
        return False  # paused while it waited

    with app.app_context():
        for message_id in ids:
            dispatch.dispatch_message(message_id, background=True, wanted=wanted)
        attempts = [db.session.get(Message, i).attempts for i in ids]
    assert attempts == [1, 1, 0]  # two turns at once, the third waited and was withdrawn
    assert asked and len(simulator.requests) == 2


@pytest.mark.integration
def test_sender_numbers_are_learnt_from_plivos_number_api(make_app, sim):
    _simulator, sim_url = sim
    app = paced_app(make_app, sim_url, PLIVO_SENDER_NUMBERS="+14155550100,+14155550177",
                    PLIVO_NUMBER_LIMITS="+14155550177=3/s")
    with app.app_context():
        assert senders.limit_for("+14155550100") is None  # not yet looked up
        assert senders.refresh() == {"sender numbers looked up": 2}
        assert senders.refresh() == {}  # not again within the day
        known, unknown = senders.describe()
        assert (known.number_type, known.limit, known.source) == (
            "local", US_LONG_CODE, "published limit for its type")
        assert "10DLC" in known.warning
        assert "404" in unknown.warning and unknown.limit == Limit(3.0)  # the setting holds
        assert senders.limit_for("+14155550100") == US_LONG_CODE


def test_the_pool_keeps_each_customer_on_one_number(make_app):
    app = make_app(PLIVO_SENDER_NUMBERS="+14155550100,+14155550101,+16045550100",
                   PLIVO_NUMBER_LIMITS="+14155550100=2/s,+14155550101=1/s,+16045550100=1/s")
    us = [f"+1212555{1000 + i}" for i in range(30)]
    with app.app_context():
        first = senders.assign([*us, "+16135550100"])
        db.session.commit()
        assert first["+16135550100"] == "+16045550100"  # a Canadian number for a Canadian
        spread = [first[r] for r in us]
        # US numbers for US customers, in proportion to each number's pace.
        assert (spread.count("+14155550100"), spread.count("+14155550101")) == (20, 10)
        again = senders.assign(list(reversed(us)))
        assert all(again[r] == first[r] for r in us)  # sticky
        assert db.session.query(StickySender).count() == 31


@pytest.mark.integration
def test_a_powerpack_send_lets_plivo_pick_the_number_and_names_it_after(make_app, make_user,
                                                                       sim):
    simulator, sim_url = sim
    port = free_port()
    app = make_app(PLIVO_API_URL=sim_url, PUBLIC_BASE_URL=f"http://127.0.0.1:{port}",
                   PLIVO_POWERPACK_UUID="d35f2e82-d387-427f-8d71-13a4a6de6e60")
    server = LiveServer(app, port)
    try:
        client = app.test_client()
        user = make_user()
        login(client, user.email)
        page = client.get(url("sending.compose")).get_data(as_text=True)
        assert "Plivo&#39;s Powerpack (Plivo picks the number)" in page
        assert '<option value="+14155550100"' not in page
        message_id = save_message(app, created_by_id=user.id, sender="powerpack")
        with app.app_context():
            dispatch.dispatch_message(message_id)
        body = simulator.requests[-1]
        assert body["powerpack_uuid"] == "d35f2e82-d387-427f-8d71-13a4a6de6e60"
        assert "src" not in body
        wait_for(lambda: len(simulator.callback_results) >= 1)
        with app.app_context():
            assert senders.refresh()["Powerpack senders named"] == 1
            assert db.session.get(Message, message_id).sender == "+14155550100"
    finally:
        server.stop()


def test_a_powerpack_uuid_must_look_like_one(tmp_path):
    from tests.conftest import base_env
    from webapp.config import ConfigError, load_settings

    with pytest.raises(ConfigError, match="PLIVO_POWERPACK_UUID"):
        load_settings(base_env(tmp_path, PLIVO_POWERPACK_UUID="my powerpack"))
