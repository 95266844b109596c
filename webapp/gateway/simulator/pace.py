"""The simulator's Plivo queue (issue 34): what Plivo accepts waits in its queue and is
dispatched at the account's MMS MPS and, within it, at each sender number's own limit;
a message still waiting after its `message_expiry` fails with error 420; a number past
its daily cap has what it sends filtered by the carriers (undelivered, error 30).
Plivo's own numbers answer the Number API with their type and registration.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from webapp.number_limits import Limit, country_of, published

log = logging.getLogger(__name__)

PLIVO_DEFAULT_EXPIRY = 10_800  # seconds: 3 hours (PLIVO.md 7a.3)
_TOLL_FREE_AREA_CODES = frozenset({"800", "833", "844", "855", "866", "877", "888"})


@dataclass(frozen=True)
class SimNumber:
    """One of the simulated account's numbers, as its Number API describes it. Its limit
    is the published one for its type unless `per_second` / `per_day` say otherwise
    (the benchmarks' 10 a second)."""

    number: str  # digits, no "+"
    number_type: str = "local"
    registration: str = ""  # 10DLC: "COMPLETED" when registered
    verification: str = ""  # toll-free: "verified"
    per_second: float | None = None
    per_day: int | None = None

    def limit(self) -> Limit:
        table = published("+" + self.number, self.number_type, self.registration,
                          self.verification).limit or Limit()
        return Limit(per_second=self.per_second or table.per_second,
                     per_day=self.per_day or table.per_day)

    def api_record(self) -> dict:
        country = {"US": "United States", "CA": "Canada"}.get(country_of("+" + self.number) or "",
                                                              "")
        return {"number": self.number, "number_type": self.number_type, "country": country,
                "sms_enabled": True, "mms_enabled": True, "voice_enabled": True,
                "tendlc_registration_status": self.registration or None,
                "toll_free_sms_verification": self.verification or None,
                "resource_uri": f"/Number/{self.number}/"}


_SPEC = re.compile(r"^\+?(\d{8,15})=([a-z_-]+)((?::[^:]+)*)$", re.I)


def parse_number(spec: str) -> SimNumber:
    """`14155550100=local`, `14155550101=local:registered:10/s`, `18005550100=tollfree:verified`,
    `16045550100=local:15/min:500/day`. Raises ValueError."""
    match = _SPEC.match(spec.strip())
    if not match:
        raise ValueError(f"{spec!r}: expected NUMBER=TYPE[:registered|verified][:N/s][:N/day]")
    number, kind, rest = match[1], match[2].lower(), match[3]
    fields: dict = {}
    for part in filter(None, rest.split(":")):
        part = part.strip().lower()
        if part == "registered":
            fields["registration"] = "COMPLETED"
        elif part == "verified":
            fields["verification"] = "verified"
        elif part.endswith("/s"):
            fields["per_second"] = float(part[:-2])
        elif part.endswith("/min"):
            fields["per_second"] = float(part[:-4]) / 60
        elif part.endswith("/day"):
            fields["per_day"] = int(part[:-4])
        else:
            raise ValueError(f"{spec!r}: what is {part!r}?")
    return SimNumber(number, kind, **fields)


def default_number(e164: str) -> SimNumber:
    """How the sandbox describes a number it was not told about: a toll-free area code is
    a verified toll-free number, anything else an unregistered long code (Plivo's state
    for a number just bought)."""
    digits = e164.lstrip("+")
    if digits.startswith("1") and digits[1:4] in _TOLL_FREE_AREA_CODES:
        return SimNumber(digits, "tollfree", verification="verified")
    return SimNumber(digits, "local")


@dataclass(order=True)
class _Waiting:
    received: float
    expires: float = field(compare=False)
    message: object = field(compare=False)


class PlivoQueue:
    """Plivo's outbound queue for one account, dispatching in a thread of its own.

    `on_dispatch(message, capped)` when a message leaves the queue for the carriers
    (`capped`: its number was past its daily cap), `on_expire(message)` when it waited
    longer than its expiry. Both are called outside the queue's lock."""

    def __init__(self, mps: float, numbers: dict[str, SimNumber],
                 on_dispatch: Callable[[object, bool], None], on_expire: Callable[[object], None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.spacing = 1.0 / mps
        self.numbers = numbers
        self._on_dispatch, self._on_expire, self._clock = on_dispatch, on_expire, clock
        self._queues: dict[str, deque[_Waiting]] = {}
        self._next_account = 0.0
        self._next_number: dict[str, float] = {}
        self._days: dict[tuple[str, str], int] = {}
        self.dispatched: list[tuple[str, float]] = []  # (number, wall-clock time)
        self.expired = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopped = threading.Event()
        threading.Thread(target=self._run, daemon=True, name="plivo-queue").start()

    def put(self, src: str, message: object, expiry_seconds: float) -> None:
        now = self._clock()
        with self._lock:
            self._queues.setdefault(src, deque()).append(_Waiting(now, now + expiry_seconds,
                                                                  message))
        self._wake.set()

    def stop(self) -> None:
        self._stopped.set()
        self._wake.set()

    def _run(self) -> None:
        while not self._stopped.is_set():
            wait = self._step()
            self._wake.wait(min(wait, 0.25))
            self._wake.clear()

    def _step(self) -> float:
        expired, dispatched = [], []
        with self._lock:
            now = self._clock()
            for queue in self._queues.values():
                # Each message has its own expiry: look at all of them, not only the head.
                keep = deque(w for w in queue if w.expires > now)
                expired += [w.message for w in queue if w.expires <= now]
                queue.clear()
                queue.extend(keep)
            wait = self._dispatch(now, dispatched)
        self.expired += len(expired)
        for message in expired:
            self._on_expire(message)
        for message, capped in dispatched:
            self._on_dispatch(message, capped)
        return wait

    def _dispatch(self, now: float, out: list) -> float:
        """Dispatch every message whose turn has come; return the seconds to the next turn."""
        while True:
            if self._next_account > now:
                return self._next_account - now
            ready = [(q[0].received, src) for src, q in self._queues.items()
                     if q and self._next_number.get(src, 0.0) <= now]
            if not ready:
                waiting = [self._next_number.get(src, 0.0) - now
                           for src, q in self._queues.items() if q]
                return min(waiting) if waiting else 0.25
            _, src = min(ready)
            waiting = self._queues[src].popleft()
            self._next_account = max(self._next_account, now - self.spacing) + self.spacing
            limit = self.numbers[src].limit() if src in self.numbers else Limit()
            if limit.per_second:
                self._next_number[src] = max(self._next_number.get(src, 0.0), now) + (
                    1.0 / limit.per_second)
            day = (src, datetime.now(UTC).date().isoformat())
            self._days[day] = self._days.get(day, 0) + 1
            capped = bool(limit.per_day and self._days[day] > limit.per_day)
            self.dispatched.append((src, time.time()))
            out.append((waiting.message, capped))


class CallbackClock:
    """Callbacks due later (a message's delivery report some time after it was sent),
    posted by a few threads in the order they fall due."""

    def __init__(self, post: Callable[..., None], threads: int = 8) -> None:
        self._post = post
        self._heap: list = []
        self._order = itertools.count()
        self._cond = threading.Condition()
        for n in range(threads):
            threading.Thread(target=self._run, daemon=True, name=f"callbacks-{n}").start()

    def at(self, due: float, *args) -> None:
        with self._cond:
            heapq.heappush(self._heap, (due, next(self._order), args))
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._heap or self._heap[0][0] > time.monotonic():
                    timeout = self._heap[0][0] - time.monotonic() if self._heap else None
                    self._cond.wait(timeout)
                _, _, args = heapq.heappop(self._heap)
            try:
                self._post(*args)
            except Exception:  # a callback thread must outlive one failure
                log.exception("simulator: a callback failed")
