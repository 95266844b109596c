"""Plivo's request budget, shared by every process that talks to Plivo: sends, lookups of
a message's status, and reads of Plivo's message list all draw on one limiter."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import contextmanager

from flask import current_app
from limits import RateLimitItemPerMinute, RateLimitItemPerSecond
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from webapp.config import Settings, current_settings
from webapp.gateway.cadence import Cadence, Turn

LIST_PER_MINUTE = 20  # Plivo's message list: its default limit (PLIVO.md 1.8)


class Withdrawn(Exception):
    """The message is no longer wanted while it waited for its turn (its list send was
    paused or cancelled): nothing was claimed, nothing sent."""


class DispatchLimiter:
    """Plivo's limits, shared by every dispatch in this process (and across
    processes when the storage is Redis): a moving window of requests per 5 s (and about a
    fifth of it per second), and a cap on requests in flight."""

    def __init__(self, storage_uri: str, per_5s: int, max_in_flight: int,
                 lookup_share: int = 10) -> None:
        self._window = MovingWindowRateLimiter(storage_from_string(storage_uri))
        # Plivo's dispatch pace: the account's MPS and each number's limit (cadence.py).
        self.cadence = Cadence(storage_uri)
        self._item = RateLimitItemPerSecond(per_5s, 5)
        # And about a fifth of it in any second (two more, so that this cap only cuts
        # bursts and the 5 s window sets the pace): the window's room is spread over its
        # 5 s instead of taken at once, so a burst at a window's start cannot arrive
        # together with the last requests counted in the one before (at 288, bursts let
        # 301 arrive within 5 s with two worker processes).
        self._second = RateLimitItemPerSecond(per_5s // 5 + 2, 1)
        # The reconciler's lookups: counted in the same window as sends (one account
        # limit at Plivo) and, in a window of their own, at most lookup_share percent.
        self._lookup_item = RateLimitItemPerSecond(max(1, per_5s * lookup_share // 100), 5)
        self._list_item = RateLimitItemPerMinute(LIST_PER_MINUTE)
        self._in_flight = threading.BoundedSemaphore(max_in_flight)
        self._count_lock = threading.Lock()
        self._singles_waiting = 0

    def lookup_slot(self, sleep: Callable[[float], None] = time.sleep):
        """Room for one Message API lookup: within its share, and within the window
        sends use."""
        return self._shared_slot(self._lookup_item, "plivo-lookup", sleep)

    def list_slot(self, sleep: Callable[[float], None] = time.sleep):
        """Room for one request to Plivo's message list: 20 a minute (PLIVO.md 1.8), and
        within the window sends use."""
        return self._shared_slot(self._list_item, "plivo-list", sleep)

    @contextmanager
    def _shared_slot(self, item, key: str, sleep: Callable[[float], None]):
        while True:
            while not self._window.test(item, key):
                self._sleep_until_room(sleep, item, key)
            while not self._send_room():
                self._sleep_until_room(sleep)
            if self._window.hit(item, key) and self._take_send_room():
                break
        yield

    def _single_done(self) -> None:
        with self._count_lock:
            self._singles_waiting -= 1

    @contextmanager
    def slot(self, sleep: Callable[[float], None] = time.sleep,
             prepare: Callable[[], None] | None = None, background: bool = False,
             turns: list[Turn] | None = None, wanted: Callable[[], bool] | None = None):
        """Wait until the window has room, run `prepare`, take the room, send.

        The room is counted only after `prepare` (the database claim), so the
        time between counting a request and Plivo receiving it is the HTTP
        request alone. Counted before a claim that took 200 ms under load, 301
        requests reached the simulator within 5 s at a budget of 290 (commit 503fa32).

        `background`: a batch's message, which lets every single send waiting in this
        process take the room first (fair sharing: a 10,000 batch never delays one
        message a person sends by more than the window's own wait). Across processes
        (Redis) the lanes' re-queueing still lets singles in within a slice.

        `turns`: the message's turns in Plivo's dispatch pace (the account's MPS, its
        number's limit), taken together once the window has room. `wanted`: asked after
        every wait for a turn; False raises Withdrawn before anything is claimed.
        """
        waiting = not background  # a single send, counted until it has its room
        if waiting:
            with self._count_lock:
                self._singles_waiting += 1
        try:
            with self._in_flight:
                while True:
                    # A batch's message lets every single send of this process that waits
                    # for room go first (checked again after every wait: both wake when
                    # room frees, and the single is counted while it waits).
                    while background and self._singles_waiting:
                        sleep(0.005)
                    if not self._send_room():
                        self._sleep_until_room(sleep)
                        continue
                    wait = self.cadence.take(turns or [])
                    if not wait:
                        break
                    # A batch's message looks again often: a single send may come first,
                    # and a pause must stop it within a second.
                    sleep(min(wait, 0.25) if background else wait)
                    if wanted is not None and not wanted():
                        raise Withdrawn
                if prepare is not None:
                    prepare()
                while not self._take_send_room():  # another worker took it
                    self._sleep_until_room(sleep)
                if waiting:
                    waiting = False
                    self._single_done()
                yield
        finally:
            if waiting:
                self._single_done()

    def _send_room(self) -> bool:
        return (self._window.test(self._item, "plivo-send")
                and self._window.test(self._second, "plivo-send-1s"))

    def _take_send_room(self) -> bool:
        # The second's share first: a failed hit there wastes nothing of the 5 s window.
        return (self._window.hit(self._second, "plivo-send-1s")
                and self._window.hit(self._item, "plivo-send"))

    def _sleep_until_room(self, sleep: Callable[[float], None], item=None,
                          key: str = "plivo-send") -> None:
        if item is None and self._window.test(self._item, "plivo-send"):
            item, key = self._second, "plivo-send-1s"  # the 5 s window has room: the second not
        reset_at, _ = self._window.get_window_stats(item or self._item, key)
        sleep(min(max(0.01, reset_at - time.time()), 5.0))


_limiter_lock = threading.Lock()


def dispatch_limiter(settings: Settings) -> DispatchLimiter:
    """The one limiter of this app, made on first use (worker threads race for it)."""
    with _limiter_lock:
        limiter = current_app.extensions.get("dispatch_limiter")
        if limiter is None:
            limiter = DispatchLimiter(settings.ratelimit_storage_uri, settings.send_rate_per_5s,
                                      settings.send_max_in_flight, settings.reconcile_max_share)
            current_app.extensions["dispatch_limiter"] = limiter
        return limiter


def lookup_limiter() -> DispatchLimiter:
    """The limiter the reconciler's lookups share with sending."""
    return dispatch_limiter(current_settings())

