"""A list send's progress, its failures, and its report as a CSV.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from sqlalchemy import func, select

from webapp import audit, statuses
from webapp.auth.service import Actor
from webapp.config import current_settings
from webapp.extensions import db
from webapp.lists.drafts import numbers_of, retryable_condition
from webapp.lists.states import AWAITING, BAD, SENDING
from webapp.models import (
    Batch,
    Message,
    utcnow,
)
from webapp.sending import eta
from webapp.spreadsheet import csv_line

log = logging.getLogger(__name__)

_messages = Message.__table__
OBSERVED = timedelta(seconds=30)  # the window the list page's countdown measures
_batches = Batch.__table__


# ---- progress and report -------------------------------------------------------------------
@dataclass
class Progress:
    total: int
    by_status: dict[str, int]
    rate_per_second: float
    cost: Decimal | None
    held_for_tomorrow: int = 0  # their number reached its daily cap
    pace: str = ""  # what sets the pace, in words

    def count(self, *names: str) -> int:
        return sum(self.by_status.get(n, 0) for n in names)

    @property
    def waiting(self) -> int:
        return self.count(statuses.PENDING)

    @property
    def delivered(self) -> int:
        return self.count(statuses.DELIVERED)

    @property
    def failed(self) -> int:
        return self.count(*BAD)

    @property
    def cancelled(self) -> int:
        return self.count(statuses.CANCELLED)

    @property
    def on_way(self) -> int:
        return self.count(statuses.QUEUED, statuses.SENT)

    @property
    def unknown(self) -> int:
        return self.count(statuses.UNKNOWN)

    @property
    def handed(self) -> int:
        """Handed to Plivo (or being handed): everything not waiting and not cancelled."""
        return self.total - self.waiting - self.cancelled

    @property
    def settled(self) -> bool:
        return self.waiting == 0 and self.on_way == 0 and self.unknown == 0

    def percent(self, part: int) -> float:
        return round(100 * part / self.total, 1) if self.total else 0.0

    @property
    def eta_seconds(self) -> int | None:
        if not self.waiting or not self.rate_per_second:
            return None
        return round((self.waiting - self.held_for_tomorrow) / self.rate_per_second)

    @property
    def eta_words(self) -> str:
        return eta.duration_words(self.eta_seconds or 0)


def progress(batch: Batch) -> Progress:
    """Counts by status (one index-only count of the batch), and the rate its waiting
    messages go at: Plivo's dispatch pace (the account's MPS, its numbers' limits) shared
    by the batches sending. A message sent again after error 420 counts once: its
    original's failure is left out."""
    by_status = dict(db.session.execute(
        select(_messages.c.status, func.count()).where(_messages.c.batch_id == batch.id)
        .group_by(_messages.c.status)).all())
    retried = db.session.scalar(select(func.count()).select_from(_messages).where(
        _messages.c.batch_id == batch.id, _messages.c.retry_of_id.is_not(None))) or 0
    if retried:
        by_status[statuses.FAILED] = max(0, by_status.get(statuses.FAILED, 0) - retried)
    held = 0
    if by_status.get(statuses.PENDING):  # waiting for tomorrow: a number's daily cap
        held = db.session.scalar(select(func.count()).select_from(_messages).where(
            _messages.c.batch_id == batch.id, _messages.c.status == statuses.PENDING,
            _messages.c.not_before > utcnow())) or 0
    cost = db.session.scalar(select(func.sum(_messages.c.total_amount))
                             .where(_messages.c.batch_id == batch.id))
    sending = db.session.scalar(select(func.count()).select_from(_batches)
                                .where(_batches.c.status == SENDING)) or 1
    rate, words = eta.pace(numbers_of(batch.sender), current_settings())
    rate = rate / sending if batch.status == SENDING else 0
    now = utcnow()
    if rate and now - batch.created_at > OBSERVED:
        # Slower than Plivo's pace allows (a busy machine, other lists): the countdown
        # uses what it really does, messages Plivo queued in the last half minute.
        seen = db.session.scalar(select(func.count()).select_from(_messages).where(
            _messages.c.batch_id == batch.id, _messages.c.queued_at >= now - OBSERVED)) or 0
        observed = seen / OBSERVED.total_seconds()
        if 0 < observed < 0.9 * rate:
            rate, words = observed, f"at the pace it goes now ({observed:.3g} a second)"
    pace = (rate, words)
    return Progress(batch.total, by_status, pace[0],
                    Decimal(str(cost)).quantize(Decimal("0.01")) if cost else None,
                    held_for_tomorrow=held, pace=pace[1])


def failures(batch: Batch, limit: int = 50) -> list:
    """The batch's final failures, with their reasons (the first `limit`)."""
    return db.session.execute(
        select(_messages.c.public_id, _messages.c.recipient, _messages.c.status,
               _messages.c.error_code, _messages.c.error_reason, _messages.c.fields)
        .where(_messages.c.batch_id == batch.id, _messages.c.status.in_(BAD))
        .order_by(_messages.c.id).limit(limit)).all()


def retryable(batch: Batch) -> int:
    return db.session.scalar(select(func.count()).select_from(_messages).where(
        _messages.c.batch_id == batch.id, retryable_condition())) or 0


def recent(limit: int = 30) -> list[Batch]:
    """The team's batches, those waiting for approval first, then newest first."""
    waiting = list(db.session.scalars(select(Batch).where(Batch.status == AWAITING)
                                      .order_by(Batch.id)))
    rest = list(db.session.scalars(select(Batch).where(Batch.status != AWAITING)
                                   .order_by(Batch.id.desc()).limit(limit)))
    return waiting + rest


def report_rows(batch: Batch) -> Iterator[bytes]:
    """The batch as CSV, one row per recipient with the list's own columns, streamed in
    keyset batches; every cell formula-safe."""
    head = ["phone", *batch.columns, "status", "error", "cost_usd", "sent_at_utc", "message"]
    yield ("\ufeff" + csv_line(head)).encode()
    after = 0
    while True:
        chunk = db.session.execute(
            select(_messages.c.id, _messages.c.recipient, _messages.c.fields,
                   _messages.c.status, _messages.c.error_reason, _messages.c.total_amount,
                   _messages.c.sent_at, _messages.c.public_id)
            .where(_messages.c.batch_id == batch.id, _messages.c.id > after)
            .order_by(_messages.c.id).limit(2000)).all()
        if not chunk:
            return
        lines = []
        for row in chunk:
            fields = row.fields or {}
            lines.append(csv_line([
                row.recipient, *(fields.get(c, "") for c in batch.columns),
                statuses.LABELS.get(row.status, row.status), row.error_reason or "",
                "" if row.total_amount is None else str(row.total_amount),
                row.sent_at.strftime("%Y-%m-%d %H:%M:%S") if row.sent_at else "",
                row.public_id]))
        yield "".join(lines).encode()
        after = chunk[-1].id


def recorded_report(batch: Batch, actor: Actor) -> Iterator[bytes]:
    """report_rows, with its audit entry written before the first byte."""
    audit.record_now("batch_exported", batch.name, actor=actor, batch=batch.public_id)
    yield from report_rows(batch)

