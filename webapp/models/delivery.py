"""Delivery bookkeeping: webhook nonces already seen, refused callbacks counted per source
and hour, and the Plivo circuit."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import (
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from webapp.extensions import db
from webapp.models.base import UTCDateTime, utcnow

if TYPE_CHECKING:
    pass


class WebhookNonce(db.Model):
    """Each signature nonce seen on a verified callback, bound to the body it came with.

    A signature proves the body only as far as its scheme covers it (V2 covers none of
    it), so a captured nonce must not authorise another body: the same nonce with the
    same body is a retry, with another body a replay. Kept 48 hours (callbacks.forget_expired).
    """

    __tablename__ = "webhook_nonces"

    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    body_sha256: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class RefusedCallbackCount(db.Model):
    """Refused status callbacks counted per source address, hour and reason. Only the
    first few of each hour are kept whole (as refused ledger rows); the rest only count,
    so unsigned traffic cannot grow the database faster than one row per source an hour."""

    __tablename__ = "refused_callback_counts"
    __table_args__ = (UniqueConstraint("source", "hour", "reason",
                                       name="uq_refused_callback_counts"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(45))
    hour: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    reason: Mapped[str] = mapped_column(String(32))
    count: Mapped[int] = mapped_column(Integer, default=0)


class PlivoCircuit(db.Model):
    """Whether Plivo refuses the account itself (401/403, no credit): then sending pauses
    for everyone instead of failing message after message. One row (id 1), shared by
    every process through the database; messages.circuit reads and moves it."""

    __tablename__ = "plivo_circuit"

    id: Mapped[int] = mapped_column(primary_key=True)
    state: Mapped[str] = mapped_column(String(10), default="closed")  # closed | open
    kind: Mapped[str | None] = mapped_column(String(20))  # credentials | credit
    reason: Mapped[str | None] = mapped_column(String(300))
    http_status: Mapped[int | None] = mapped_column(Integer)
    opened_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    next_probe_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    probes: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

