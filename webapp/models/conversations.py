"""Replies (issue 35): what customers send to our numbers, the thread each customer has with
one of our numbers, and the consent record (every opt-out and opt-in, kept for good)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, Integer, Numeric, String, Text, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column

from webapp.extensions import db
from webapp.models.base import UTCDateTime, new_public_id, utcnow


class Conversation(db.Model):
    """One customer number and one of our numbers: the thread staff read and answer.
    Created by the first reply the customer sends (or the first answer staff write);
    `last_*` are kept as messages come and go, so the inbox is one indexed walk."""

    __tablename__ = "conversations"
    __table_args__ = (
        UniqueConstraint("customer", "our_number", name="uq_conversations_pair"),
        Index("ix_conversations_activity_id", "last_activity_at", "id"),
        Index("ix_conversations_needs_reply_activity_id", "needs_reply", "last_activity_at", "id"),
        Index("ix_conversations_unread", "unread"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(24), unique=True, default=new_public_id)
    customer: Mapped[str] = mapped_column(String(16))
    # The customer's digits, last first: a search for a number's last digits is a prefix.
    customer_reversed: Mapped[str] = mapped_column(String(16), index=True)
    our_number: Mapped[str] = mapped_column(String(16))
    name: Mapped[str | None] = mapped_column(String(120))
    last_activity_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_text: Mapped[str] = mapped_column(String(160), default="")
    last_direction: Mapped[str] = mapped_column(String(3), default="in")  # "in" / "out"
    needs_reply: Mapped[bool] = mapped_column(default=False, server_default=false())
    unread: Mapped[bool] = mapped_column(default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class InboundMessage(db.Model):
    """A message a customer sent to one of our numbers, as Plivo posted it (kept once by
    its MessageUUID: Plivo retries). `media`: one entry per picture, [{"index", "url",
    "state": "waiting" | "stored" | "failed", "media_id", "reason"}], filled by a worker."""

    __tablename__ = "inbound_messages"
    __table_args__ = (
        Index("ix_inbound_conversation_received_id", "conversation_id", "received_at", "id"),
        Index("ix_inbound_received_at", "received_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(24), unique=True, default=new_public_id)
    plivo_uuid: Mapped[str] = mapped_column(String(64), unique=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id"))
    sender: Mapped[str] = mapped_column(String(16))  # the customer
    recipient: Mapped[str] = mapped_column(String(16))  # our number
    kind: Mapped[str] = mapped_column(String(8), default="sms")
    text: Mapped[str] = mapped_column(Text, default="")
    media: Mapped[list[dict]] = mapped_column(JSON, default=list)
    intent: Mapped[str | None] = mapped_column(String(16))  # Plivo's MessageIntent
    keyword: Mapped[str | None] = mapped_column(String(8))  # what we read: optout/optin/help
    units: Mapped[int | None] = mapped_column(Integer)
    total_amount: Mapped[str | None] = mapped_column(
        Numeric(12, 5).with_variant(String(20), "sqlite"))
    powerpack_uuid: Mapped[str | None] = mapped_column(String(64))
    signature_scheme: Mapped[str] = mapped_column(String(16))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ConsentEvent(db.Model):
    """Every change of a number's consent, kept for good (CASL and TCPA: the sender must
    be able to prove consent and its withdrawal): out or in, why, from which message, when
    and by whom."""

    __tablename__ = "consent_events"
    __table_args__ = (Index("ix_consent_events_number_created", "number", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(String(16))
    change: Mapped[str] = mapped_column(String(3))  # "out" / "in"
    # "reply keyword", "Plivo intent", "Plivo error 200", "admin"
    source: Mapped[str] = mapped_column(String(20))
    our_number: Mapped[str | None] = mapped_column(String(16))
    message_public_id: Mapped[str | None] = mapped_column(String(24))
    words: Mapped[str | None] = mapped_column(String(160))  # what the customer wrote
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
