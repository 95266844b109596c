"""Plivo's pace shared by every process through Redis (gateway/cadence.py): two Cadences on
one Redis act as two worker processes would."""

from __future__ import annotations

import pytest

from webapp.gateway.cadence import Cadence, Turn

pytestmark = pytest.mark.stack


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_two_processes_share_the_accounts_and_each_numbers_turns(redis_url):
    clock = Clock()
    first, second = Cadence(redis_url + "/5", clock=clock), Cadence(redis_url + "/5", clock=clock)
    account, number = Turn("t:account", 0.5), Turn("t:number", 1.0)
    assert first.take([account, number]) == 0.0
    # The other process sees the turns taken: neither key is taken without the other.
    assert second.take([account, number]) == pytest.approx(1.0)
    assert second.take([account]) == pytest.approx(0.5)
    clock.now += 0.5
    assert second.take([account]) == 0.0
    assert first.next_free("t:account") == pytest.approx(1_001.0)


def test_a_daily_cap_is_counted_once_across_processes(redis_url):
    first, second = Cadence(redis_url + "/5"), Cadence(redis_url + "/5")
    assert first.claim_day("t:day", cap=3, already=2)  # 2 sent before: this is the third
    assert not second.claim_day("t:day", cap=3, already=0)  # `already` only seeds a new key
    assert second.day_count("t:day") == 3
