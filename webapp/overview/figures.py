"""The overview page's figures, read from the rollups (rollups.py), never from the
million rows behind them: a period's counts are a few hundred rollup rows whatever the
size of `messages`.

Every figure carries the history filter of exactly the messages behind it (`link`):
statuses, the period's days (in the rollups' time zone, passed as `tz`), the sender,
the error code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, timedelta, tzinfo
from functools import lru_cache
from urllib.parse import urlencode

from sqlalchemy import case, func, select

from webapp import statuses
from webapp.extensions import db
from webapp.models import ConsentEvent, DailyLatency, DailyStat, InboundMessage, User
from webapp.overview import rollups

# What the overview calls each status: five outcomes, in the chart's order. "refused":
# Plivo refused the request, or it never reached Plivo: nothing was sent or charged, so
# it is neither "sent" nor "not delivered" (and not in the delivery rate).
OUTCOMES: dict[str, tuple[str, ...]] = {
    "delivered": (statuses.DELIVERED,),
    "failed": (statuses.UNDELIVERED, statuses.FAILED, statuses.REJECTED),
    "awaiting": (statuses.PENDING, statuses.QUEUED, statuses.SENT),
    "unknown": (statuses.UNKNOWN,),
    "refused": (statuses.ERROR, statuses.NOT_SENT),
}
OUTCOME_LABELS = {"delivered": "Delivered", "failed": "Not delivered or failed",
                  "awaiting": "Awaiting a receipt", "unknown": "Unknown",
                  "refused": "Refused before sending"}
SENT_OUTCOMES = ("delivered", "failed", "awaiting", "unknown")
# The refused rows of "why", by status: there is no carrier error code to explain them.
REFUSED_MEANING = {statuses.ERROR: "Plivo refused the request (the reason is on each message)",
                   statuses.NOT_SENT: "never reached Plivo"}
_OUTCOME_OF = {status: outcome for outcome, group in OUTCOMES.items() for status in group}
PERIODS = {"today": "Today", "7d": "Last 7 days", "30d": "Last 30 days", "custom": "Custom"}
MAX_CUSTOM_DAYS = 400  # how far apart a custom period's two dates may be


def every(seconds: int) -> str:
    """How often the workers recount, as a person says it ("every 30 seconds")."""
    if seconds < 90:
        return "every second" if seconds == 1 else f"every {seconds} seconds"
    minutes = round(seconds / 60)
    return "every minute" if minutes == 1 else f"every {minutes} minutes"
TOP_ERRORS = 8


@dataclass(frozen=True)
class Period:
    key: str
    first: date
    last: date

    @property
    def days(self) -> list[date]:
        return [self.first + timedelta(days=n) for n in range((self.last - self.first).days + 1)]

    @property
    def label(self) -> str:
        if self.key != "custom":
            return PERIODS[self.key]
        return f"{self.first:%-d %b %Y} to {self.last:%-d %b %Y}"

    @classmethod
    def from_args(cls, args, today: date) -> tuple[Period, list[str]]:
        """The period a person chose; anything unusable falls back to the last 7 days,
        with a message saying why."""
        key = args.get("period") or "7d"
        if key == "today":
            return cls(key, today, today), []
        if key == "30d":
            return cls(key, today - timedelta(days=29), today), []
        if key != "custom":
            return cls("7d", today - timedelta(days=6), today), (
                ["Unknown period: showing the last 7 days."] if key != "7d" else [])
        try:
            first = date.fromisoformat((args.get("from") or "").strip())
            last = date.fromisoformat((args.get("to") or "").strip())
        except ValueError:
            return cls("7d", today - timedelta(days=6), today), [
                "Give both dates of a custom period, like 2026-01-31: showing the last 7 days."]
        notes = []
        if first > last:  # as the history does: swapped, and said
            first, last = last, first
            notes.append("The From and To dates were the wrong way round; they have been "
                         "swapped.")
        if (last - first).days > MAX_CUSTOM_DAYS:
            return cls("7d", today - timedelta(days=6), today), [
                f"The dates of a custom period may be at most {MAX_CUSTOM_DAYS} days apart: "
                "showing the last 7 days."]
        if first.year < 2000 or last.year > 2099:
            return cls("7d", today - timedelta(days=6), today), [
                "Dates must be between 2000 and 2099: showing the last 7 days."]
        return cls(key, first, last), notes


@dataclass
class Figures:
    """Counts and cost of some messages, by outcome, with the history filter of them."""

    link: dict
    by_outcome: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    priced: int = 0
    cost_micros: int = 0

    def add(self, status: str, messages: int, priced: int, cost: int) -> None:
        if status == statuses.CANCELLED:  # never sent: not an outcome of sending
            return
        self.by_outcome[_OUTCOME_OF.get(status, "awaiting")] += messages
        self.priced += priced
        self.cost_micros += cost

    @property
    def total(self) -> int:
        return sum(self.by_outcome.values())

    @property
    def sent(self) -> int:
        """What reached Plivo: everything but what was refused before sending."""
        return sum(self.by_outcome[outcome] for outcome in SENT_OUTCOMES)

    @property
    def delivery_rate(self) -> float | None:
        """Delivered of those with an outcome (delivered or not); None before any."""
        ended = self.by_outcome["delivered"] + self.by_outcome["failed"]
        return self.by_outcome["delivered"] / ended if ended else None

    @property
    def cost(self) -> float:
        return self.cost_micros / 1_000_000

    @property
    def average_cost(self) -> float | None:
        return self.cost_micros / self.priced / 1_000_000 if self.priced else None

    def link_to(self, outcome: str | None = None) -> dict:
        """The history filter of these messages, or of one outcome of them ("ended":
        delivered or not, the messages a delivery rate is of)."""
        if outcome is None:
            return self.link
        if outcome == "ended":
            return {**self.link, "status": [*OUTCOMES["delivered"], *OUTCOMES["failed"]]}
        if outcome == "sent":
            return {**self.link, "status": [s for o in SENT_OUTCOMES for s in OUTCOMES[o]]}
        return {**self.link, "status": list(OUTCOMES[outcome])}


@dataclass
class Day:
    day: date
    figures: Figures
    p50: int | None = None  # seconds (a bucket's upper edge); None: no delivery that day
    p95: int | None = None
    slower: bool = False  # p95 beyond the last edge (over a day)
    replies: int = 0  # messages customers sent us that day
    opt_outs: int = 0  # numbers that opted out that day


@dataclass
class ErrorLine:
    code: str  # Plivo's error code; "" for none, "other" for the codes past TOP_ERRORS
    meaning: str
    messages: int
    link: dict


@dataclass
class StaffLine:
    user_id: int | None
    label: str
    figures: Figures


@dataclass
class Overview:
    period: Period
    zone: str
    totals: Figures
    days: list[Day]
    errors: list[ErrorLine]  # the "not delivered or failed" messages, summing to their tile
    refused: list[ErrorLine]  # the "refused before sending" ones, summing to theirs
    staff: list[StaffLine]
    p50: int | None
    p95: int | None


def percentile(histogram: list[int], q: float) -> int | None:
    """The upper edge (seconds) of the bucket holding the q-th delivery; None without any,
    -1 when it is slower than the last edge."""
    total = sum(histogram)
    if not total:
        return None
    wanted, seen = max(1, math.ceil(q * total)), 0
    for index, count in enumerate(histogram):
        seen += count
        if seen >= wanted:
            return rollups.LATENCY_EDGES[index] if index < len(rollups.LATENCY_EDGES) else -1
    return -1


def history_href(path: str, link: dict) -> str:
    """`url_for('history.history', **link)` for a page of hundreds of links: `path` is the
    history's own (from url_for once per page), each key=value part is encoded once and
    remembered (a period's dates and an outcome's statuses recur across its links).
    url_for was over half of a fresh 90-day overview (about 8,000 calls, 0.8 s in 10
    renders under the profiler)."""
    return path + "?" + "&".join(
        _query_part(key, tuple(value) if isinstance(value, list) else value)
        for key, value in link.items())


@lru_cache(maxsize=8192)
def _query_part(key: str, value) -> str:
    return urlencode({key: value}, doseq=isinstance(value, tuple))


def _link(period: Period, zone: str, **more) -> dict:
    link = {"from": period.first.isoformat(), "to": period.last.isoformat(), "tz": zone}
    link.update({key: value for key, value in more.items() if value is not None})
    return link


def build(period: Period, zone: tzinfo, viewer_id: int, everyone: bool) -> Overview:
    """The overview of `period`. `everyone`: a line per staff member (admins); otherwise
    the viewer's own line and the team's."""
    zone_name = rollups.zone_name(zone)
    in_period = (DailyStat.day >= period.first, DailyStat.day <= period.last)
    sums = (func.sum(DailyStat.messages), func.sum(DailyStat.priced),
            func.sum(DailyStat.cost_micros))
    totals = Figures(_link(period, zone_name))
    days = {day: Day(day, Figures(_link(Period("custom", day, day), zone_name)))
            for day in period.days}
    for day, status, messages, priced, cost in db.session.execute(
            select(DailyStat.day, DailyStat.status, *sums).where(*in_period)
            .group_by(DailyStat.day, DailyStat.status)):
        totals.add(status, messages, priced, cost)
        if day in days:
            days[day].figures.add(status, messages, priced, cost)

    histogram = [0] * rollups.BUCKETS
    for day, buckets in db.session.execute(
            select(DailyLatency.day, DailyLatency.buckets)
            .where(DailyLatency.day >= period.first, DailyLatency.day <= period.last)):
        buckets = (list(buckets) + [0] * rollups.BUCKETS)[:rollups.BUCKETS]
        histogram = [a + b for a, b in zip(histogram, buckets, strict=True)]
        if day in days:
            days[day].p50, days[day].p95 = percentile(buckets, 0.5), percentile(buckets, 0.95)

    _count_replies(days, zone)
    errors = _why_failed(period, zone_name, in_period)
    refused = [ErrorLine("", REFUSED_MEANING.get(status, status), messages,
                         _link(period, zone_name, status=status))
               for status, messages in db.session.execute(
                   select(DailyStat.status, func.sum(DailyStat.messages))
                   .where(*in_period, DailyStat.status.in_(OUTCOMES["refused"]))
                   .group_by(DailyStat.status).order_by(DailyStat.status)) if messages]

    staff_query = (select(DailyStat.created_by_id, DailyStat.status, *sums).where(*in_period)
                   .group_by(DailyStat.created_by_id, DailyStat.status))
    if not everyone:
        staff_query = staff_query.where(DailyStat.created_by_id == viewer_id)
    lines: dict[int, Figures] = {}
    for user_id, status, messages, priced, cost in db.session.execute(staff_query):
        lines.setdefault(user_id, Figures(_link(period, zone_name, sent_by=user_id))).add(
            status, messages, priced, cost)
    emails = dict(db.session.execute(select(User.id, User.email).where(User.id.in_(lines))).all())
    staff = sorted((StaffLine(user_id, "You" if user_id == viewer_id and not everyone
                              else emails.get(user_id, f"account {user_id}"), figures)
                    for user_id, figures in lines.items()),
                   key=lambda line: (-line.figures.total, line.label))
    if not everyone:
        staff = (staff or [StaffLine(viewer_id, "You", Figures(
            _link(period, zone_name, sent_by=viewer_id)))]) + [
            StaffLine(None, "Whole team", totals)]
    return Overview(period=period, zone=zone_name, totals=totals,
                    days=[days[day] for day in period.days], errors=errors, refused=refused,
                    staff=staff,
                    p50=percentile(histogram, 0.5), p95=percentile(histogram, 0.95))


def _per_day(column, days: dict[date, Day], zone: tzinfo, *where) -> dict[date, int]:
    """How many rows fall on each day (in `zone`): one range scan of `column`'s index,
    bucketed by a CASE on the days' bounds (the same SQL on SQLite and PostgreSQL)."""
    ordered = sorted(days)
    if not ordered:
        return {}
    bounds = [rollups.day_bounds(day, zone) for day in ordered]
    bucket = case(*((column < end, index) for index, (_start, end) in enumerate(bounds)))
    found = db.session.execute(
        select(bucket, func.count()).where(column >= bounds[0][0], column < bounds[-1][1], *where)
        .group_by(bucket)).all()
    return {ordered[index]: n for index, n in found if index is not None}


def _count_replies(days: dict[date, Day], zone: tzinfo) -> None:
    for day, n in _per_day(InboundMessage.received_at, days, zone).items():
        days[day].replies = n
    for day, n in _per_day(ConsentEvent.created_at, days, zone,
                           ConsentEvent.change == "out").items():
        days[day].opt_outs = n


def _why_failed(period: Period, zone_name: str, in_period) -> list[ErrorLine]:
    """The not-delivered-or-failed messages by Plivo's error code, most first, adding up
    to that tile: a line for those without a code, and one for the codes past TOP_ERRORS."""
    failed = list(OUTCOMES["failed"])
    by_code = db.session.execute(
        select(DailyStat.error_code, func.sum(DailyStat.messages))
        .where(*in_period, DailyStat.status.in_(failed))
        .group_by(DailyStat.error_code)
        .order_by(func.sum(DailyStat.messages).desc(), DailyStat.error_code)).all()
    coded = [(code, n) for code, n in by_code if code and n]
    lines = [ErrorLine(code, statuses.ERROR_CODES.get(code, f"Unknown (code {code})"), n,
                       _link(period, zone_name, error=code, status=failed))
             for code, n in coded[:TOP_ERRORS]]
    rest = sum(n for _code, n in coded[TOP_ERRORS:])
    if rest:
        lines.append(ErrorLine("other", f"{len(coded) - TOP_ERRORS} other codes", rest,
                               _link(period, zone_name, status=failed)))
    uncoded = sum(n for code, n in by_code if not code)
    if uncoded:
        lines.append(ErrorLine("", "no error code from Plivo", uncoded,
                               _link(period, zone_name, status=failed, error="none")))
    return lines


def duration(seconds: int | None) -> str:
    """A percentile as the page shows it: "≤ 10 s", "≤ 5 min", "over a day", "—"."""
    if seconds is None:
        return "—"
    if seconds < 0:
        return "over a day"
    if seconds < 60:
        return f"≤ {seconds} s"
    if seconds < 3600:
        return f"≤ {seconds // 60} min" if seconds % 60 == 0 else f"≤ {seconds / 60:.1f} min"
    return f"≤ {seconds / 3600:g} h"
