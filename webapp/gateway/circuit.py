"""The Plivo circuit: when Plivo refuses the account itself, sending pauses for everyone.

A 401 (or a 403 that is not about geo permissions), or "insufficient credit" at request
time, is not the fault of the message that met it: every other message would meet it
too. So the first one opens the circuit (one database row, seen by every process):
- dispatch stops handing messages to Plivo; each stays "Waiting to send", its claim
  given back, nothing marked failed;
- every page shows a banner (admins: what to check);
- once a minute one worker lets one message through (half-open). Plivo accepts it:
  the circuit closes and every waiting message is queued again. Plivo refuses it
  again: it waits with the rest.
The reconciler's lookups pause while the circuit is open too.
"""

from __future__ import annotations

import logging
import time as clock
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from webapp import statuses
from webapp.extensions import db
from webapp.logs import event
from webapp.models import Message, PlivoCircuit, utcnow
from webapp.tasks import enqueue_dispatch

log = logging.getLogger(__name__)

PROBE_EVERY = timedelta(minutes=1)
BANNER_FOR_SECONDS = 5.0  # how long a process may show a banner state it read
ROW = 1


@dataclass(frozen=True)
class Paused:
    """What the banner says while the circuit is open."""

    kind: str
    reason: str
    since: datetime
    next_probe_at: datetime | None
    waiting: int


def _row() -> PlivoCircuit:
    row = db.session.get(PlivoCircuit, ROW)
    if row is None:
        try:
            with db.session.begin_nested():
                db.session.add(PlivoCircuit(id=ROW, state="closed", probes=0))
        except IntegrityError:  # another process made it first
            pass
        row = db.session.get(PlivoCircuit, ROW)
    return row


def is_open() -> bool:
    """Read fresh from the database: dispatch asks before every send."""
    return db.session.scalar(select(PlivoCircuit.state).where(PlivoCircuit.id == ROW)) == "open"


def open_circuit(reason: str, http_status: int | None, kind: str,
                 now: datetime | None = None) -> bool:
    """Open it (or keep it open). True when this call opened it."""
    now = now or utcnow()
    _row()
    db.session.commit()
    opened = db.session.execute(
        update(PlivoCircuit).where(PlivoCircuit.id == ROW, PlivoCircuit.state == "closed")
        .values(state="open", kind=kind, reason=reason[:300], http_status=http_status,
                opened_at=now, next_probe_at=now + PROBE_EVERY, probes=0)).rowcount == 1
    if not opened:  # already open: keep its time, say what the latest refusal was
        db.session.execute(update(PlivoCircuit).where(PlivoCircuit.id == ROW)
                           .values(kind=kind, reason=reason[:300], http_status=http_status))
    db.session.commit()
    _forget_banner()
    if opened:
        event(log, "Plivo refused the account: sending paused", logging.ERROR,
              kind=kind, status=http_status, reason=reason)
    return opened


def close_circuit(now: datetime | None = None) -> int:
    """Close it, if open, and queue every waiting message again. The number queued."""
    now = now or utcnow()
    closed = db.session.execute(
        update(PlivoCircuit).where(PlivoCircuit.id == ROW, PlivoCircuit.state == "open")
        .values(state="closed", closed_at=now, next_probe_at=None)).rowcount == 1
    db.session.commit()
    _forget_banner()
    if not closed:
        return 0
    # A batch's lanes find its messages again (batches.restart_lanes, on the next sweep).
    waiting = list(db.session.scalars(select(Message.id).where(
        Message.status == statuses.PENDING, Message.attempts == 0,
        Message.batch_id.is_(None)).order_by(Message.id)))
    for message_id in waiting:
        enqueue_dispatch(message_id)
    event(log, "Plivo accepts the account again: sending resumed", logging.WARNING,
          queued=len(waiting))
    return len(waiting)


def claim_probe(now: datetime | None = None) -> bool:
    """Whether this process may try one request now (at most one a PROBE_EVERY, across
    every process: the row's next_probe_at moves on in the same statement)."""
    now = now or utcnow()
    claimed = db.session.execute(
        update(PlivoCircuit).where(PlivoCircuit.id == ROW, PlivoCircuit.state == "open",
                                   PlivoCircuit.next_probe_at <= now)
        .values(next_probe_at=now + PROBE_EVERY, probes=PlivoCircuit.probes + 1)).rowcount
    db.session.commit()
    return claimed == 1


def next_waiting() -> int | None:
    """The message a probe sends: the oldest single send waiting (a batch's may be paused
    or awaiting approval)."""
    return db.session.scalar(select(Message.id).where(
        Message.status == statuses.PENDING, Message.attempts == 0, Message.batch_id.is_(None))
        .order_by(Message.id).limit(1))


def probe(send, now: datetime | None = None) -> dict[str, int]:
    """Half-open: when due, let the oldest waiting message through (`send(message_id)`,
    which closes the circuit if Plivo takes it). With nothing waiting there is nothing to
    protect: the circuit closes, and the next send opens it again if Plivo still refuses."""
    if not claim_probe(now):
        return {}
    message_id = next_waiting()
    if message_id is None:
        close_circuit(now)
        return {"circuit probes": 1}
    send(message_id)
    return {"circuit probes": 1}


def give_back(message_id: int, reason: str) -> None:
    """Undo a claim: Plivo refused the account, so it cannot have sent the message."""
    db.session.execute(
        update(Message).where(Message.id == message_id, Message.status == statuses.PENDING,
                              Message.plivo_uuid.is_(None))
        .values(attempts=0, last_attempt_error=reason, updated_at=utcnow()))
    db.session.commit()


_banner: dict[str, object] = {"read_at": -1e9, "paused": None}


def _forget_banner() -> None:
    _banner["read_at"] = -1e9


def paused() -> Paused | None:
    """For the banner on every page: read at most every BANNER_FOR_SECONDS per process
    (every page asking the database would cost the history page a query)."""
    if clock.monotonic() - _banner["read_at"] < BANNER_FOR_SECONDS:
        return _banner["paused"]
    row = db.session.get(PlivoCircuit, ROW)
    found = None
    if row is not None and row.state == "open":
        waiting = db.session.scalar(select(func.count()).select_from(Message).where(
            Message.status == statuses.PENDING, Message.attempts == 0))
        found = Paused(kind=row.kind or "credentials", reason=row.reason or "",
                       since=row.opened_at or utcnow(), next_probe_at=row.next_probe_at,
                       waiting=waiting or 0)
    _banner.update(read_at=clock.monotonic(), paused=found)
    return found
