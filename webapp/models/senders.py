"""Sender numbers: what Plivo's Number API says of each (its type and registration, which
set its limits), and which number of the pool each customer hears from (sticky sender)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from webapp.extensions import db
from webapp.models.base import UTCDateTime, utcnow


class SenderNumber(db.Model):
    """One of PLIVO_SENDER_NUMBERS as Plivo's Number API last described it (learnt at the
    worker's start and daily). `problem`: why it could not be described (a 404, no type),
    shown on the Health page; the number is then paced by the account's MPS alone."""

    __tablename__ = "sender_numbers"

    number: Mapped[str] = mapped_column(String(16), primary_key=True)
    number_type: Mapped[str | None] = mapped_column(String(32))
    country: Mapped[str | None] = mapped_column(String(64))
    registration: Mapped[str | None] = mapped_column(String(64))  # 10DLC, US long codes
    verification: Mapped[str | None] = mapped_column(String(64))  # toll-free numbers
    mms_enabled: Mapped[bool | None] = mapped_column()
    problem: Mapped[str | None] = mapped_column(Text)
    checked_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class StickySender(db.Model):
    """The pool number a customer hears from, kept so that their replies reach one thread."""

    __tablename__ = "sticky_senders"

    recipient: Mapped[str] = mapped_column(String(16), primary_key=True)
    sender: Mapped[str] = mapped_column(String(16))
    assigned_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
