"""How long a send takes at the pace Plivo really dispatches (issue 34): the account's MPS,
each sender number's own limit, and its daily cap, shared with whatever else is waiting.
The list preview says it before Confirm, the list page counts it down, and a single send
behind a long list says when it will go."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from webapp import statuses
from webapp.config import Settings, current_settings
from webapp.extensions import db
from webapp.gateway.cadence import account_turn
from webapp.gateway.pace import dispatch_limiter
from webapp.messages.presentation import format_phone
from webapp.models import Message
from webapp.sending import senders


def duration_words(seconds: float) -> str:
    """'40 s', '3 min', '11 h 7 min', '5 days'."""
    if seconds < 1:
        return "under a second"
    seconds = round(seconds)
    if seconds < 90:
        return f"{seconds} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    if seconds < 2 * 86_400:
        hours, minutes = divmod(minutes, 60)
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{math.ceil(seconds / 86_400)} days"


@dataclass(frozen=True)
class Estimate:
    seconds: float
    rate: float  # messages a second this send gets
    pace: str  # what sets the pace, in words
    days_note: str | None  # a daily cap that spreads it over days

    @property
    def words(self) -> str:
        return duration_words(self.seconds)


def pace(numbers: list[str], settings: Settings) -> tuple[float, str]:
    """Messages a second from `numbers` together, and what sets it, in words."""
    mps = settings.plivo_mms_mps
    rates = []
    for number in numbers:
        limit = senders.limit_for(number, settings)
        rates.append(limit.per_second if limit and limit.per_second else mps)
    total = sum(rates) if rates else mps
    if total >= mps:
        return mps, f"at your account's {mps:g} MMS per second"
    if len(numbers) == 1:
        limit = senders.limit_for(numbers[0], settings)
        return total, f"at {format_phone(numbers[0])}'s limit of {limit.describe()}"
    return total, f"at your {len(numbers)} numbers' combined {total:g} MMS per second"


def estimate(count: int, numbers: list[str], settings: Settings | None = None,
             ahead: int = 0) -> Estimate:
    """`count` messages from `numbers`, behind `ahead` others waiting to go first."""
    settings = settings or current_settings()
    numbers = list(dict.fromkeys(numbers)) or list(settings.sender_numbers)
    rate, pace_words = pace(numbers, settings)
    seconds = (ahead + count) / rate
    limits = [senders.limit_for(n, settings) for n in numbers]
    if count and limits and all(limit and limit.per_day for limit in limits):
        per_day = sum(limit.per_day for limit in limits)
        left_today = max(0, per_day - sum(senders.sent_today(n) for n in numbers))
        now = datetime.now(UTC)
        midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
        # Day by day: what the pace gets through before midnight, within what the cap leaves.
        remaining, elapsed, days = count + ahead, 0.0, 1
        room, day_seconds = left_today, (midnight - now).total_seconds()
        while remaining > min(room, rate * day_seconds):
            remaining -= min(room, rate * day_seconds)
            elapsed += day_seconds
            room, day_seconds, days = per_day, 86_400.0, days + 1
        if days > 1:
            whose = (format_phone(numbers[0]) if len(numbers) == 1
                     else f"your {len(numbers)} numbers")
            note = f"{per_day:,} a day from {whose} (its daily cap) means {days} days"
            return Estimate(elapsed + remaining / rate, rate, pace_words, note)
    return Estimate(seconds, rate, pace_words, None)


def waiting_ahead() -> int:
    """Messages recorded and not yet handed to Plivo, every send together."""
    return db.session.scalar(select(func.count()).select_from(Message).where(
        Message.status == statuses.PENDING, Message.attempts == 0,
        Message.not_before.is_(None))) or 0


def next_in_line_seconds(settings: Settings | None = None) -> float:
    """When a single send recorded now goes: single sends go before a list's messages, so
    it waits for the account's next turn and the single sends before it."""
    settings = settings or current_settings()
    singles = db.session.scalar(select(func.count()).select_from(Message).where(
        Message.status == statuses.PENDING, Message.attempts == 0,
        Message.batch_id.is_(None), Message.not_before.is_(None))) or 0
    turn = account_turn(settings.plivo_mms_mps)
    free = dispatch_limiter(settings).cadence.next_free(turn.key)
    now = datetime.now(UTC).timestamp()
    return max(0.0, free - turn.slack - now) + max(0, singles - 1) * turn.spacing
