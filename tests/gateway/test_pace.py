"""Plivo's pace on both sides: the dashboard's turns (cadence) and the simulator's queue,
which dispatches at the account's MPS and each number's limit and expires what waits."""

from __future__ import annotations

import itertools
import threading

import pytest
import requests
from werkzeug.serving import make_server

from tests.conftest import wait_for
from webapp.config import SANDBOX_AUTH_ID, SANDBOX_AUTH_TOKEN
from webapp.gateway import client as gateway
from webapp.gateway.cadence import Cadence, Turn, account_turn, number_turn
from webapp.gateway.simulator import PlivoSimulator
from webapp.gateway.simulator.pace import SimNumber, default_number, parse_number
from webapp.number_limits import CA_LONG_CODE, US_LONG_CODE, Limit, parse_overrides, published


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_turns_are_spaced_and_taken_together_or_not_at_all():
    clock = Clock()
    cadence = Cadence("memory://", clock=clock)
    account, number = Turn("a", 0.25), Turn("n", 1.0)
    assert cadence.take([account, number]) == 0.0
    assert cadence.take([account]) == pytest.approx(0.25)
    clock.now += 0.25
    assert cadence.take([account]) == 0.0  # the account alone: its next turn
    clock.now += 0.25
    # The number is not free for another 0.5 s: neither turn is taken.
    assert cadence.take([account, number]) == pytest.approx(0.5)
    assert cadence.take([account]) == 0.0  # the account's turn was left for others


def test_a_number_never_gets_more_than_its_limit_in_any_second_as_plivo_receives_them():
    clock = Clock()
    cadence = Cadence("memory://", clock=clock)
    turn = number_turn("+14155550100", 10)
    taken = []
    for _ in range(400):  # a busy caller, asking every 7 ms, sometimes late
        clock.now += 0.007
        if cadence.take([turn]) == 0.0:
            taken.append(clock.now)
    # With 15 ms of jitter on the way to Plivo, any 1-s window still holds at most 10.
    for i in range(len(taken) - 10):
        assert taken[i + 10] - taken[i] - 0.015 >= 1.0
    assert len(taken) >= 0.95 * (taken[-1] - taken[0]) * 10 / 1.03


def test_the_account_turn_catches_up_one_late_turn():
    clock = Clock()
    cadence = Cadence("memory://", clock=clock)
    turn = account_turn(4)
    assert cadence.take([turn]) == 0.0
    assert cadence.take([turn]) == 0.0  # one turn early: Plivo queues it a moment
    assert cadence.take([turn]) == pytest.approx(0.25)  # never more than one ahead
    clock.now += 0.4  # 0.15 s later than that turn
    assert cadence.take([turn]) == 0.0
    assert cadence.take([turn]) == pytest.approx(0.1)  # the lost 0.15 s partly caught up


def test_daily_cap_counts_from_what_was_sent_before():
    cadence = Cadence("memory://")
    assert cadence.claim_day("day", cap=3, already=1)
    assert cadence.claim_day("day", cap=3)
    assert not cadence.claim_day("day", cap=3)
    assert cadence.day_count("day") == 3


@pytest.mark.parametrize(("number", "kind", "registration", "verification", "limit", "warns"), [
    ("+14155550100", "local", "", "", US_LONG_CODE, True),
    ("+14155550100", "local", "COMPLETED", "", Limit(1.0), False),
    ("+18005550100", "tollfree", "", "verified", Limit(2.0), False),
    ("+18005550100", "tollfree", "", "unverified", Limit(2.0), True),
    ("+16045550100", "local", "", "", CA_LONG_CODE, False),
    ("+14155550100", "", "", "", None, True),
    ("+14155550100", "shortcode", "", "", None, True),
])
def test_published_limits_by_type(number, kind, registration, verification, limit, warns):
    answer = published(number, kind, registration, verification)
    assert answer.limit == limit
    assert bool(answer.warning) == warns


def test_limit_descriptions():
    assert US_LONG_CODE.describe() == "1 a second, 2,000 a day"
    assert CA_LONG_CODE.describe() == "15 a minute"
    assert Limit().describe() == "the account's pace only"


def test_number_limit_overrides():
    assert parse_overrides("+14155550100=1/s;2000/day, (604) 555-0100 = 15/min") == {
        "+14155550100": Limit(1.0, 2000), "+16045550100": Limit(0.25)}
    for bad, says in [("+14155550100", "expected NUMBER=RATE"), ("x=1/s", "not a phone"),
                      ("+14155550100=fast", "expected N/s"), ("+14155550100=0/s", "more than 0"),
                      ("+14155550100=1.5/day", "whole number")]:
        with pytest.raises(ValueError, match=says):
            parse_overrides(bad)


def test_simulator_number_specs():
    assert parse_number("14155550101=local:registered:10/s") == SimNumber(
        "14155550101", "local", registration="COMPLETED", per_second=10.0)
    assert parse_number("+16045550100=local:15/min:500/day").limit() == Limit(0.25, 500)
    assert default_number("+18005550100").number_type == "tollfree"
    assert default_number("+14155550100").limit() == US_LONG_CODE
    with pytest.raises(ValueError):
        parse_number("14155550100=local:quickly")


# ---- the simulator's queue ---------------------------------------------------------------------
def _ok(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


@pytest.fixture
def sink():
    """Somewhere for the simulator's callbacks to land."""
    server = make_server("127.0.0.1", 0, _ok, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/webhooks/plivo/status"
    server.shutdown()


@pytest.fixture
def paced(sink):
    sim = PlivoSimulator(SANDBOX_AUTH_ID, SANDBOX_AUTH_TOKEN, callback_delay=0.05,
                         mms_mps=8, expiry_seconds=1.2,
                         numbers=[SimNumber("14155550100", "local", per_second=2.0),
                                  SimNumber("14155550101", "local", per_second=8.0,
                                            per_day=2)])
    server = sim.serve_in_thread()
    config = gateway.GatewayConfig(SANDBOX_AUTH_ID, SANDBOX_AUTH_TOKEN,
                                   f"http://127.0.0.1:{server.server_port}")
    yield sim, config, sink
    sim.stop()
    server.shutdown()


def send(config, sink: str, src: str, dst: str, expiry_seconds: int | None = 3600) -> str:
    return gateway.send_mms(config, src=src, dst=dst, text="hi", media_urls=[], media_ids=[],
                            callback_url=sink, expiry_seconds=expiry_seconds)


@pytest.mark.integration
def test_simulator_dispatches_at_each_numbers_pace_and_expires_what_waits(paced):
    sim, config, sink = paced
    uuids = [send(config, sink, "+14155550100", f"+1415555{1000 + i}") for i in range(6)]
    wait_for(lambda: all(sim.messages[u].state != "queued" for u in uuids), timeout=5)
    dispatched = [t for src, t in sim.queue.dispatched if src == "14155550100"]
    # 2 a second from this number, whatever the account allows; 1.2 s of expiry lets 3 go.
    assert len(dispatched) == 3
    assert all(b - a >= 0.49 for a, b in itertools.pairwise(dispatched))
    expired = [u for u in uuids if sim.messages[u].state == "failed"]
    assert len(expired) == 3 and {sim.messages[u].error_code for u in expired} == {"420"}
    assert sim.queue.expired == 3


@pytest.mark.integration
def test_simulator_honours_message_expiry_and_daily_caps(paced):
    sim, config, sink = paced
    sends = [send(config, sink, "+14155550101", f"+1415555{2000 + i}") for i in range(3)]
    wait_for(lambda: all(sim.messages[u].state in ("delivered", "undelivered") for u in sends),
             timeout=5)
    # A cap of 2 a day: the third is filtered by the carriers (error 30).
    assert [(sim.messages[u].state, sim.messages[u].error_code) for u in sends] == [
        ("delivered", ""), ("delivered", ""), ("undelivered", "30")]
    with pytest.raises(gateway.PlivoRejected, match="message_expiry"):
        send(config, sink, "+14155550101", "+14155553000", expiry_seconds=4)


@pytest.mark.integration
def test_simulator_number_api(paced):
    _sim, config, _ = paced
    number = gateway.get_number(config, "+14155550100")
    assert (number.number_type, number.country, number.mms_enabled) == (
        "local", "United States", True)
    with pytest.raises(gateway.PlivoRejected) as missing:
        gateway.get_number(config, "+14155559999")
    assert missing.value.status == 404


@pytest.mark.integration
def test_simulator_reports_what_it_dispatched(paced):
    sim, config, sink = paced
    send(config, sink, "+14155550101", "+14155554000", expiry_seconds=None)
    wait_for(lambda: sim.queue.dispatched, timeout=3)
    port = config.api_url.rsplit(":", 1)[1]
    seen = requests.get(f"http://127.0.0.1:{port}/__sim/requests", timeout=5).json()
    assert seen["dispatched"][0][0] == "14155550101" and seen["expired"] == 0
