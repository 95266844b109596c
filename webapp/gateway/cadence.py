"""The pace at which Plivo dispatches MMS, kept on our side (issue 34): the account's MPS
and each sender number's own limit as evenly spaced turns (a generic cell rate algorithm:
each key keeps the next instant it is free), and each number's daily cap as a counter.

Shared by every process through Redis when RATELIMIT_STORAGE_URI is redis://, else kept
in this process (one worker process: the SQLite default).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Turn:
    """One key's spacing: `spacing` seconds between messages, and `slack`: how much
    earlier than its turn a message may go (GCRA's tolerance: a late message lets the next
    catch up by that much; 0: never closer than `spacing`)."""

    key: str
    spacing: float
    slack: float = 0.0


# Each number's turns are kept this much wider than its limit: a turn is counted before
# its request travels, and two requests counted `spacing` apart can arrive closer.
NUMBER_MARGIN = 0.04


def number_turn(number: str, per_second: float) -> Turn:
    """A number's turn: never more than `per_second` in any second as Plivo receives them,
    with no slack (a late turn is not caught up): under load, requests counted 1.03 s
    apart for 11 turns arrived within one second (bench/RESULTS.md, 2026-12-07)."""
    return Turn(f"pace:number:{number}", (1 + NUMBER_MARGIN) / per_second)


def account_turn(mps: float) -> Turn:
    """The account's turn: Plivo queues a short burst and dispatches it at the MPS, so one
    late turn may be caught up."""
    spacing = 1.0 / mps
    return Turn("pace:account", spacing, spacing)


_TAKE = """
local now = tonumber(ARGV[1])
local n = #KEYS
local wait = 0
for i = 1, n do
  local free = tonumber(redis.call('GET', KEYS[i]) or '0')
  local slack = tonumber(ARGV[1 + 2 * i])
  if free - slack > now and free - slack - now > wait then wait = free - slack - now end
end
if wait > 0 then return tostring(wait) end
for i = 1, n do
  local spacing = tonumber(ARGV[2 * i])
  local slack = tonumber(ARGV[1 + 2 * i])
  local free = tonumber(redis.call('GET', KEYS[i]) or '0')
  local base = math.max(free, now)
  redis.call('SET', KEYS[i], tostring(base + spacing), 'EX', 86400)
end
return '0'
"""

_CLAIM_DAY = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then
  redis.call('SET', KEYS[1], tonumber(ARGV[2]) + 1, 'EX', 172800)
  count = tonumber(ARGV[2]) + 1
end
if count > tonumber(ARGV[1]) then
  redis.call('DECR', KEYS[1])
  return 0
end
return 1
"""


class Cadence:
    """Turns and daily counts, in this process or in Redis."""

    def __init__(self, storage_uri: str, clock=time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._free: dict[str, float] = {}
        self._days: dict[str, int] = {}
        self._redis = None
        if storage_uri.startswith(("redis://", "rediss://")):
            import redis

            self._redis = redis.Redis.from_url(storage_uri)
            self._take_script = self._redis.register_script(_TAKE)
            self._day_script = self._redis.register_script(_CLAIM_DAY)

    def take(self, turns: list[Turn]) -> float:
        """Take a turn of every key at once, or none: 0.0 when taken, else the seconds
        until the last of them is free."""
        if not turns:
            return 0.0
        now = self._clock()
        if self._redis is not None:
            args: list[float] = [now]
            for turn in turns:
                args += [turn.spacing, turn.slack]
            return float(self._take_script(keys=[t.key for t in turns], args=args))
        with self._lock:
            wait = max(self._free.get(t.key, 0.0) - t.slack - now for t in turns)
            if wait > 0:
                return wait
            for turn in turns:
                base = max(self._free.get(turn.key, 0.0), now)
                self._free[turn.key] = base + turn.spacing
            return 0.0

    def next_free(self, key: str) -> float:
        """When `key` is next free (epoch seconds; 0 if it never was taken)."""
        if self._redis is not None:
            return float(self._redis.get(key) or 0.0)
        with self._lock:
            return self._free.get(key, 0.0)

    def claim_day(self, key: str, cap: int, already: int = 0) -> bool:
        """One of the day's `cap` for `key` (count it), or False when the day's are all
        used. `already`: what was sent before this process counted (read from the
        database), used the first time the key is seen."""
        if self._redis is not None:
            return bool(self._day_script(keys=[key], args=[cap, already]))
        with self._lock:
            count = self._days.get(key, already)
            if count >= cap:
                self._days[key] = count
                return False
            self._days[key] = count + 1
            return True

    def day_count(self, key: str) -> int | None:
        if self._redis is not None:
            value = self._redis.get(key)
            return None if value is None else int(value)
        with self._lock:
            return self._days.get(key)
