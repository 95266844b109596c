"""List sends (batches), their drafts, and the opt-out list."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import (
    JSON,
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from webapp.extensions import db
from webapp.models.base import UTCDateTime, new_public_id, utcnow

if TYPE_CHECKING:
    from webapp.models.users import User


class Batch(db.Model):
    """A send to many (messages.batches): one text (with ((placeholders))) and media, to
    every valid row of an uploaded or pasted list. Its messages are ordinary messages
    with `batch_id` set, recorded together when the batch is confirmed.

    status: awaiting_approval (over the team's ceiling: an admin must approve) ->
    sending <-> paused -> finished (nothing left to hand to Plivo) | cancelled."""

    __tablename__ = "batches"
    __table_args__ = (Index("ix_batches_status_id", "status", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(24), unique=True, default=new_public_id)
    # The draft it was confirmed from: a second confirm finds this batch.
    draft_token: Mapped[str] = mapped_column(String(64), unique=True)
    created_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    name: Mapped[str] = mapped_column(String(255))  # the file's name, or "Pasted list"
    sender: Mapped[str] = mapped_column(String(16))
    text: Mapped[str] = mapped_column(Text, default="")  # with its ((placeholders))
    media: Mapped[list[dict]] = mapped_column(JSON, default=list)
    columns: Mapped[list[str]] = mapped_column(JSON, default=list)
    total: Mapped[int] = mapped_column(Integer)
    estimate_micros: Mapped[int] = mapped_column(BigInteger, default=0)  # USD millionths
    status: Mapped[str] = mapped_column(String(20))
    approved_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    approved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When a dispatch lane last took a message (the recovery sweep restarts lanes that
    # stopped: a killed worker).
    pumped_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    created_by: Mapped[User] = relationship(foreign_keys=[created_by_id])
    approved_by: Mapped[User | None] = relationship(foreign_keys=[approved_by_id])


class BatchDraft(db.Model):
    """A list read and checked but not confirmed (messages.batches): what the preview
    shows and the confirm records. Its rows are kept compressed; drafts older than a day
    are removed by the sweep. Nothing here is a send."""

    __tablename__ = "batch_drafts"

    token: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    name: Mapped[str] = mapped_column(String(255))
    sender: Mapped[str] = mapped_column(String(16))
    text: Mapped[str] = mapped_column(Text, default="")
    media: Mapped[list[dict]] = mapped_column(JSON, default=list)
    data: Mapped[bytes] = mapped_column(LargeBinary)  # zlib-compressed JSON


class OptOut(db.Model):
    """A number that replied STOP: Plivo answered error 200 for a message to it. Batches
    leave it out and single sends to it are refused, until an admin removes it (the
    person texted START)."""

    __tablename__ = "opt_outs"

    number: Mapped[str] = mapped_column(String(16), primary_key=True)
    sender: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    message_public_id: Mapped[str | None] = mapped_column(String(24))

