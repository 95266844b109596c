"""The overview's per-day rollups, recounted by the workers' sweep."""

from __future__ import annotations

from datetime import date, datetime
from typing import TYPE_CHECKING

from sqlalchemy import (
    JSON,
    BigInteger,
    Date,
    Integer,
    String,
)
from sqlalchemy.orm import Mapped, mapped_column

from webapp.extensions import db
from webapp.models.base import UTCDateTime

if TYPE_CHECKING:
    pass


class DailyStat(db.Model):
    """The overview's counts: messages per day, sender, current status and error code,
    with what Plivo charged for them. The day is the day the message was recorded, in the
    time zone of `rollup_state.zone` (DISPLAY_TIMEZONE). Recounted from `messages` by
    messages.rollups, never edited by hand; `flask stats rebuild` recounts everything."""

    __tablename__ = "daily_stats"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    created_by_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    status: Mapped[str] = mapped_column(String(16), primary_key=True)
    error_code: Mapped[str] = mapped_column(String(16), primary_key=True)  # "" for none
    messages: Mapped[int] = mapped_column(Integer)
    priced: Mapped[int] = mapped_column(Integer)  # of them, with a cost from Plivo
    cost_micros: Mapped[int] = mapped_column(BigInteger)  # USD millionths: sums exactly


class DailyLatency(db.Model):
    """Time from recording to `delivered` of the messages of one day, as counts per
    bucket of messages.rollups.LATENCY_EDGES (a histogram: percentiles without the rows)."""

    __tablename__ = "daily_latency"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    buckets: Mapped[list[int]] = mapped_column(JSON)


class CallbackHour(db.Model):
    """Status callbacks received per hour and signature scheme (and the reconciler's
    lookups, scheme "lookup"), counted from the ledger by messages.rollups."""

    __tablename__ = "callback_hours"

    hour: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    scheme: Mapped[str] = mapped_column(String(16), primary_key=True)
    count: Mapped[int] = mapped_column(Integer)


class RollupState(db.Model):
    """How far messages.rollups has read (one row, id 1): the last message and ledger row
    it has seen, when, and the time zone its days are in (a new DISPLAY_TIMEZONE
    recounts everything)."""

    __tablename__ = "rollup_state"

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(Integer)
    event_id: Mapped[int] = mapped_column(Integer)
    zone: Mapped[str] = mapped_column(String(64))
    refreshed_at: Mapped[datetime] = mapped_column(UTCDateTime)

