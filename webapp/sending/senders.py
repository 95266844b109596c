"""The sender numbers (issue 34): what Plivo's Number API says of each, and so how fast it
may send; and which number of the pool each customer hears from (sticky sender).

Limits, first match wins: PLIVO_NUMBER_LIMITS for the number; the published limit for
its type and registration as the Number API last described it (learnt at the worker's
start and daily); else none of its own (the account's MPS alone paces it).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from flask import current_app
from sqlalchemy import func, select, update

from webapp.config import Settings, current_settings
from webapp.extensions import db
from webapp.gateway import client as gateway
from webapp.gateway.pace import lookup_limiter
from webapp.logs import event
from webapp.models import Message, SenderNumber, StatusEvent, StickySender, utcnow
from webapp.number_limits import POWERPACK, Limit, country_of, published

log = logging.getLogger(__name__)

RECHECK_AFTER = timedelta(days=1)
_CACHE_SECONDS = 60.0


@dataclass(frozen=True)
class Described:
    """A sender number as the Health page shows it."""

    number: str
    number_type: str
    status: str  # registration / verification, as Plivo says it
    limit: Limit | None
    source: str  # "your setting", "Plivo's Number API", "not described"
    warning: str | None
    checked_at: datetime | None


def describe(settings: Settings | None = None) -> list[Described]:
    settings = settings or current_settings()
    rows = {r.number: r for r in db.session.scalars(
        select(SenderNumber).where(SenderNumber.number.in_(settings.sender_numbers)))}
    found = []
    for number in settings.sender_numbers:
        row = rows.get(number)
        kind = (row.number_type or "") if row else ""
        status = ((row.registration or row.verification or "") if row else "")
        override = settings.number_limits.get(number)
        if row is None:  # the worker looks it up when it starts: nothing to worry about yet
            table, warning, kind = None, None, "not yet looked up"
        elif row.problem:
            table, warning = None, row.problem
        else:
            answer = published(number, kind, row.registration or "", row.verification or "")
            table, warning = answer.limit, answer.warning
        if row is not None and row.mms_enabled is False:
            warning = "Plivo says this number cannot send MMS."
        limit = override or table
        source = ("your setting (PLIVO_NUMBER_LIMITS)" if override else
                  "published limit for its type" if table else "none: the account's pace only")
        found.append(Described(number, kind or "unknown", status or "—", limit, source, warning,
                               row.checked_at if row else None))
    return found


def choices(settings: Settings) -> tuple[str, ...]:
    """What the compose forms offer as "From": the Powerpack alone when there is one."""
    return (POWERPACK,) if settings.powerpack_uuid else settings.sender_numbers


def fill_powerpack_senders() -> dict[str, int]:
    """The sweep: a message sent through the Powerpack gets the number Plivo chose, from
    the `From` of its first status callback."""
    rows = db.session.execute(
        select(Message.id, StatusEvent.payload).join(
            StatusEvent, StatusEvent.plivo_uuid == Message.plivo_uuid)
        .where(Message.sender == POWERPACK, StatusEvent.accepted)
        .order_by(Message.id).limit(500)).all()
    named = {}
    for message_id, payload in rows:
        source = str((payload or {}).get("From") or "")
        if source.isdigit() and 8 <= len(source) <= 15:
            named.setdefault(message_id, "+" + source)
    for message_id, number in named.items():
        db.session.execute(update(Message.__table__).where(
            Message.__table__.c.id == message_id, Message.__table__.c.sender == POWERPACK)
            .values(sender=number))
    db.session.commit()
    return {"Powerpack senders named": len(named)} if named else {}


def limit_for(number: str, settings: Settings | None = None) -> Limit | None:
    """The number's own limit (cached a minute per process), or None."""
    settings = settings or current_settings()
    cached = current_app.extensions.get("sender_limits")
    if cached is None or cached[0] < time.monotonic():
        limits = {d.number: d.limit for d in describe(settings)}
        db.session.commit()  # end the read
        cached = (time.monotonic() + _CACHE_SECONDS, limits)
        current_app.extensions["sender_limits"] = cached
    return cached[1].get(number, settings.number_limits.get(number))


def forget_cached_limits() -> None:
    current_app.extensions.pop("sender_limits", None)


def refresh(force: bool = False) -> dict[str, int]:
    """Ask Plivo's Number API about each sender number not asked for a day (all with
    `force`); for the worker's start and its sweep. With a Powerpack, also name the
    number Plivo chose for each message sent through it."""
    settings = current_settings()
    named = fill_powerpack_senders() if settings.powerpack_uuid else {}
    config = gateway.GatewayConfig.from_settings(settings)
    due_before = utcnow() - RECHECK_AFTER
    rows = {r.number: r for r in db.session.scalars(select(SenderNumber))}
    asked = 0
    for number in settings.sender_numbers:
        row = rows.get(number)
        if row is not None and row.checked_at > due_before and not force:
            continue
        try:
            with lookup_limiter().lookup_slot():
                answer = gateway.get_number(config, number)
        except gateway.PlivoRejected as exc:
            answer, problem = None, (f"Plivo's Number API does not describe this number "
                                     f"({exc.status or 'refused'}: {exc.reason}); only the "
                                     "account's pace limits it.")
        except gateway.GatewayError as exc:
            event(log, "could not look up a sender number", logging.WARNING, number=number,
                  error=str(exc))
            continue  # asked again at the next sweep
        else:
            problem = None if answer.number_type else (
                "Plivo's Number API did not say what type of number this is; only the "
                "account's pace limits it.")
        row = row or db.session.merge(SenderNumber(number=number))
        row.number_type = answer.number_type if answer else None
        row.country = answer.country if answer else None
        row.registration = answer.registration if answer else None
        row.verification = answer.verification if answer else None
        row.mms_enabled = answer.mms_enabled if answer else None
        row.problem, row.checked_at = problem, utcnow()
        db.session.commit()
        asked += 1
    if asked:
        forget_cached_limits()
    return named | ({"sender numbers looked up": asked} if asked else {})


def day_key(number: str, now: datetime | None = None) -> str:
    return f"pace:day:{number}:{(now or datetime.now(UTC)).date().isoformat()}"


def sent_today(number: str) -> int:
    """Messages handed to Plivo from `number` since midnight UTC (the daily cap's count
    when this process has none yet)."""
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return db.session.scalar(select(func.count()).select_from(Message).where(
        Message.sender == number, Message.attempts > 0, Message.updated_at >= midnight,
        Message.created_at >= midnight - timedelta(days=1))) or 0


def next_day() -> datetime:
    return (datetime.now(UTC) + timedelta(days=1)).replace(hour=0, minute=0, second=5,
                                                           microsecond=0)


# ---- the pool and sticky senders -------------------------------------------------------------
def assign(recipients: list[str], settings: Settings | None = None) -> dict[str, str]:
    """A pool number for each recipient: the one they heard from before (sticky), else
    one of the pool's numbers of the recipient's own country when there is one (a
    Canadian number for a Canadian), the one with the most room for its pace (spread in
    proportion to each number's limit). New assignments are recorded (not committed: the
    caller's transaction)."""
    settings = settings or current_settings()
    pool = list(settings.sender_numbers)
    if len(pool) == 1:
        return dict.fromkeys(recipients, pool[0])
    known: dict[str, str] = {}
    for start in range(0, len(recipients), 500):
        chunk = recipients[start:start + 500]
        known.update((row.recipient, row.sender) for row in db.session.execute(
            select(StickySender.recipient, StickySender.sender)
            .where(StickySender.recipient.in_(chunk))))
    weights = {n: _weight(n, settings) for n in pool}
    load = dict.fromkeys(pool, 0.0)
    by_country: dict[str | None, list[str]] = {}
    for number in pool:
        by_country.setdefault(country_of(number), []).append(number)
    chosen: dict[str, str] = {}
    new = []
    for recipient in recipients:
        sender = known.get(recipient)
        if sender not in weights:
            choices = by_country.get(country_of(recipient)) or pool
            sender = min(choices, key=lambda n: (load[n] + 1) / weights[n])
            new.append(StickySender(recipient=recipient, sender=sender))
        load[sender] += 1
        chosen[recipient] = sender
    if new:
        stale = [s.recipient for s in new if s.recipient in known]
        if stale:  # their number left the pool: they get a new one
            db.session.execute(StickySender.__table__.delete().where(
                StickySender.recipient.in_(stale)))
        db.session.add_all(new)
    return chosen


def _weight(number: str, settings: Settings) -> float:
    limit = limit_for(number, settings)
    rate = limit.per_second if limit and limit.per_second else settings.plivo_mms_mps
    return max(rate, 1e-6)
