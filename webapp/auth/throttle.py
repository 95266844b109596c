"""Sign-in throttling: counted before the password is checked, so that attempts made at
the same moment cannot all slip past a limit that only counted them afterwards.

Two limits, both in the rate-limit storage (Redis when several processes serve):
- one account from one address: 5 failures in 15 minutes. Someone guessing from one
  place is stopped there, and staff signing in from elsewhere are not locked out;
- one account from everywhere: 50 failures in 15 minutes, against guessing spread over
  many addresses. An admin can lift both (unlock) from the account's page.
An attempt reserves its place first; a successful sign-in gives it back, so only
failures count.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from flask import current_app
from limits import RateLimitItem, RateLimitItemPerMinute
from limits.strategies import FixedWindowRateLimiter

from webapp.extensions import limiter

FROM_ONE_ADDRESS = RateLimitItemPerMinute(5, 15)
FROM_ANYWHERE = RateLimitItemPerMinute(50, 15)
_EPOCH_KEEP_SECONDS = 30 * 24 * 3600


@dataclass(frozen=True)
class Refusal:
    message: str
    retry_after: int  # seconds


def _strategy() -> FixedWindowRateLimiter:
    strategy = current_app.extensions.get("login_throttle")
    if strategy is None:
        strategy = current_app.extensions["login_throttle"] = FixedWindowRateLimiter(
            limiter.storage)
    return strategy


def _epoch(account: str) -> str:
    # Unlocking moves an account to a new epoch: every counter of the old one is forgotten
    # at once, whatever addresses it was counted for.
    return str(limiter.storage.get(f"login-epoch/{account}"))


def _limits(account: str, source: str, step: str) -> list[tuple[RateLimitItem, tuple[str, ...]]]:
    # The password and the two-factor code are counted apart ("login", "code"), each
    # with both limits: a guessed password does not let the code be guessed freely.
    epoch = _epoch(account)
    prefix = "login" if step == "password" else f"login-{step}"
    return [(FROM_ONE_ADDRESS, (prefix, account, epoch, source)),
            (FROM_ANYWHERE, (f"{prefix}-account", account, epoch))]


def _wait(item: RateLimitItem, identifiers: tuple[str, ...]) -> int:
    reset_at, _left = _strategy().get_window_stats(item, *identifiers)
    return max(1, math.ceil(reset_at - time.time()))


def reserve(account: str, source: str, step: str = "password") -> Refusal | None:
    """Count this attempt for `account` (a normalised email) from `source` at `step`
    ("password" or "code"); a Refusal when it is over a limit (the attempt then stays
    counted)."""
    strategy = _strategy()
    what = "sign-ins" if step == "password" else "codes"
    for item, identifiers in _limits(account, source, step):
        if not strategy.hit(item, *identifiers):
            wait = _wait(item, identifiers)
            minutes = math.ceil(wait / 60)
            if item is FROM_ONE_ADDRESS:
                text = (f"Too many failed {what} for this account from your address. "
                        f"Try again in {minutes} minutes.")
            else:
                text = (f"This account is locked after too many failed {what} from several "
                        f"places. Try again in {minutes} minutes, or ask an admin to unlock it.")
            return Refusal(text, wait)
    return None


def give_back(account: str, source: str, step: str = "password") -> None:
    """The attempt succeeded: it does not count."""
    for item, identifiers in _limits(account, source, step):
        key = item.key_for(*identifiers)
        if limiter.storage.get(key) > 0:
            limiter.storage.incr(key, item.get_expiry(), amount=-1)


def unlock(account: str) -> None:
    """Forget every failed sign-in counted for `account`."""
    limiter.storage.incr(f"login-epoch/{account}", _EPOCH_KEEP_SECONDS)
