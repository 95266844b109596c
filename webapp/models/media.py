"""Files staff uploaded, stored once by content."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import (
    ForeignKey,
    Integer,
    LargeBinary,
    String,
)
from sqlalchemy.orm import Mapped, mapped_column

from webapp.extensions import db
from webapp.models.base import UTCDateTime, utcnow

if TYPE_CHECKING:
    pass


class Media(db.Model):
    """A file a staff member uploaded, as prepared for sending (messages.uploads): checked
    by its content, pictures stripped of metadata and shrunk for carriers, with a small
    thumbnail. Kept in the database so every web worker and machine serves and sends the
    same bytes; one row per distinct file (sha256 of the prepared bytes). Plivo deletes
    media it has not sent within 6 hours, so the file is uploaded to Plivo when a message
    using it is sent, and again when the last upload is older than 5 hours."""

    __tablename__ = "media"

    id: Mapped[int] = mapped_column(primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    content_type: Mapped[str] = mapped_column(String(100))
    data: Mapped[bytes] = mapped_column(LargeBinary)
    size: Mapped[int] = mapped_column(Integer)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    thumbnail: Mapped[bytes | None] = mapped_column(LargeBinary)
    original_name: Mapped[str] = mapped_column(String(255))
    original_size: Mapped[int] = mapped_column(Integer)
    uploaded_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    plivo_media_id: Mapped[str | None] = mapped_column(String(64))
    plivo_uploaded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # How many messages were recorded with it (counted as they are, for the library).
    uses: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

