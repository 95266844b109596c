"""The overview's rollups, kept off the write paths: recounted by the workers' sweep.

A status callback is the hottest write of the app (callbacks/sql.py), so nothing here
runs in it. Instead, every sweep (QUEUE_SWEEP_SECONDS) recounts from `messages`:

- the recent days (today and the RECENT_DAYS before it, in the rollups' time zone),
  where sends, dispatch, callbacks and the reconciler change almost everything;
- any older day holding a message that a ledger row written since the last sweep names
  (a late callback or lookup), or a message recorded since (an import, a seed);

and counts the ledger's new rows into callbacks per hour and signature scheme. A day is
recounted whole (deleted and inserted again in the same transaction), so the rollups
cannot drift from the messages by counting a change twice or missing one within those
days. What this misses: a status change with no ledger row to a message older than the
recent days (a send handed to Plivo days late, after a long pause) — `flask stats
rebuild` recounts everything, and a new DISPLAY_TIMEZONE does so by itself.
"""

from __future__ import annotations

import logging
from bisect import bisect_right
from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from decimal import Decimal

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from webapp import statuses
from webapp.config import current_settings
from webapp.extensions import db
from webapp.models import (
    CallbackHour,
    DailyLatency,
    DailyStat,
    Message,
    RollupState,
    StatusEvent,
    utcnow,
)

log = logging.getLogger(__name__)

RECENT_DAYS = 3  # days before today recounted at every sweep
CALLBACK_HOURS_KEPT = timedelta(days=30)
# Upper edges, in seconds, of the delivery-time histogram's buckets; a last bucket holds
# everything slower than a day. A percentile is reported as its bucket's upper edge.
LATENCY_EDGES = (1, 2, 3, 5, 7, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300, 450, 600, 900,
                 1200, 1800, 2700, 3600, 5400, 7200, 10800, 21600, 43200, 86400)
BUCKETS = len(LATENCY_EDGES) + 1
_m = Message.__table__


def zone_name(zone: tzinfo) -> str:
    return getattr(zone, "key", None) or str(zone)


def day_bounds(day: date, zone: tzinfo) -> tuple[datetime, datetime]:
    """A day in `zone` as a UTC range [start, end) (a day may last 23 or 25 hours)."""
    return (datetime.combine(day, time(), zone).astimezone(UTC),
            datetime.combine(day + timedelta(days=1), time(), zone).astimezone(UTC))


def latency_bucket(seconds: float) -> int:
    return bisect_right(LATENCY_EDGES, max(0.0, seconds))


def micros(amount) -> int:
    """Plivo's TotalAmount (a decimal string or Decimal, USD) in millionths."""
    return int((Decimal(str(amount)) * 1_000_000).to_integral_value())


def count_day(day: date, zone: tzinfo) -> tuple[list[dict], list[int]]:
    """One day's rollup rows and delivery-time histogram, counted from `messages`."""
    start, end = day_bounds(day, zone)
    rows = db.session.execute(
        select(_m.c.created_by_id, _m.c.status, _m.c.error_code, _m.c.total_amount,
               _m.c.created_at, _m.c.final_at)
        .where(_m.c.created_at >= start, _m.c.created_at < end)).all()
    counts: dict[tuple, list[int]] = defaultdict(lambda: [0, 0, 0])
    histogram = [0] * BUCKETS
    for user_id, status, error_code, amount, created_at, final_at in rows:
        figures = counts[(user_id, status, error_code or "")]
        figures[0] += 1
        if amount is not None:
            figures[1] += 1
            figures[2] += micros(amount)
        if status == statuses.DELIVERED and final_at is not None:
            histogram[latency_bucket((final_at - created_at).total_seconds())] += 1
    stats = [{"day": day, "created_by_id": user_id, "status": status, "error_code": code,
              "messages": n, "priced": priced, "cost_micros": cost}
             for (user_id, status, code), (n, priced, cost) in counts.items()]
    return stats, histogram


Counted = dict[date, tuple[list[dict], list[int]]]


def count_days(days: Iterable[date], zone: tzinfo) -> Counted:
    return {day: count_day(day, zone) for day in sorted(set(days))}


def write_days(counted: Counted) -> None:
    """Replace these days' rollups by their fresh count. The caller commits."""
    for day, (stats, histogram) in counted.items():
        db.session.execute(delete(DailyStat).where(DailyStat.day == day))
        db.session.execute(delete(DailyLatency).where(DailyLatency.day == day))
        if stats:
            db.session.execute(insert(DailyStat), stats)
        if any(histogram):
            db.session.execute(insert(DailyLatency), [{"day": day, "buckets": histogram}])


def _days_between(first: datetime, last: datetime, zone: tzinfo) -> list[date]:
    start, end = first.astimezone(zone).date(), last.astimezone(zone).date()
    return [start + timedelta(days=n) for n in range((end - start).days + 1)]


def _hours_of_callbacks(after_id: int, up_to_id: int) -> Counter:
    """The ledger rows (after_id, up_to_id] per hour and scheme."""
    hours: Counter = Counter()
    if up_to_id > after_id:
        for received_at, scheme in db.session.execute(
                select(StatusEvent.received_at, StatusEvent.signature_scheme)
                .where(StatusEvent.id > after_id, StatusEvent.id <= up_to_id)):
            hours[(received_at.replace(minute=0, second=0, microsecond=0), scheme)] += 1
    return hours


def _add_callbacks(hours: Counter) -> None:
    if not hours:
        return
    known = {(row.hour, row.scheme): row for row in db.session.scalars(
        select(CallbackHour).where(CallbackHour.hour >= min(h for h, _ in hours)))}
    for (hour, scheme), n in hours.items():
        if (hour, scheme) in known:
            known[(hour, scheme)].count += n
        else:
            db.session.add(CallbackHour(hour=hour, scheme=scheme, count=n))


def _last_ids() -> tuple[int, int]:
    return (db.session.scalar(select(func.max(_m.c.id))) or 0,
            db.session.scalar(select(func.max(StatusEvent.id))) or 0)


# Counting reads first and writes after, each in its own transaction: SQLite has one
# writer, and a status callback must not wait for a day's messages to be read.

def rebuild(now: datetime | None = None, zone: tzinfo | None = None) -> dict[str, int]:
    """Recount every day from scratch, and callbacks per hour from the whole ledger."""
    now = now or utcnow()
    zone = zone or current_settings().display_timezone
    last_message, last_event = _last_ids()
    first, last = db.session.execute(
        select(func.min(_m.c.created_at), func.max(_m.c.created_at))
        .where(_m.c.id <= last_message)).one()
    counted = {day: figures for day, figures in count_days(
        _days_between(first, last, zone) if first else [], zone).items() if figures[0]}
    hours = _hours_of_callbacks(0, last_event)
    db.session.rollback()
    for table in (DailyStat, DailyLatency, CallbackHour, RollupState):
        db.session.execute(delete(table))
    write_days(counted)
    _add_callbacks(hours)
    db.session.add(RollupState(id=1, message_id=last_message, event_id=last_event,
                               zone=zone_name(zone), refreshed_at=now))
    try:
        db.session.commit()
    except IntegrityError:  # another worker rebuilt at the same time: theirs stands
        db.session.rollback()
        return {}
    return {"overview rebuilt: days": len(counted), "callbacks counted": sum(hours.values())}


def refresh(now: datetime | None = None) -> dict[str, int]:
    """The sweep's step: recount the recent days and the days touched since last time.
    Returns counts only when it had to rebuild (the sweep logs what it returns)."""
    now = now or utcnow()
    zone = current_settings().display_timezone
    state = db.session.get(RollupState, 1)
    if state is None or state.zone != zone_name(zone):
        db.session.rollback()
        return rebuild(now, zone)
    seen_message, seen_event = state.message_id, state.event_id
    last_message, last_event = _last_ids()
    today = now.astimezone(zone).date()
    recent = [today - timedelta(days=n) for n in range(RECENT_DAYS + 1)]
    window_start = day_bounds(recent[-1], zone)[0]
    days = set(recent)
    first, last = db.session.execute(
        select(func.min(_m.c.created_at), func.max(_m.c.created_at))
        .where(_m.c.id > seen_message, _m.c.id <= last_message)).one()
    if first is not None and first < window_start:
        days.update(_days_between(first, min(last, window_start), zone))
    for (created_at,) in db.session.execute(
            select(_m.c.created_at).distinct()
            .select_from(StatusEvent.__table__.join(_m, StatusEvent.message_id == _m.c.id))
            .where(StatusEvent.id > seen_event, StatusEvent.id <= last_event,
                   _m.c.created_at < window_start)):
        days.add(created_at.astimezone(zone).date())
    counted = count_days(days, zone)
    hours = _hours_of_callbacks(seen_event, last_event)
    db.session.rollback()
    # The state row moves only from where this sweep found it: when two workers sweep at
    # once, one writes and the other's UPDATE matches nothing (and it writes nothing), so
    # no callback is counted twice.
    moved = db.session.execute(
        update(RollupState).where(RollupState.id == 1, RollupState.event_id == seen_event,
                                  RollupState.message_id == seen_message)
        .values(message_id=max(seen_message, last_message),
                event_id=max(seen_event, last_event), refreshed_at=now)).rowcount
    if moved != 1:
        db.session.rollback()
        return {}
    write_days(counted)
    _add_callbacks(hours)
    db.session.execute(delete(CallbackHour).where(CallbackHour.hour < now - CALLBACK_HOURS_KEPT))
    db.session.commit()
    return {}


def refreshed_at() -> datetime | None:
    return db.session.scalar(select(RollupState.refreshed_at).where(RollupState.id == 1))
