"""The CSV export of the history: the same filters, every matching message, streamed."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, tzinfo

from sqlalchemy import (
    DateTime,
    Integer,
    String,
    TypeDecorator,
    bindparam,
    select,
    tuple_,
    type_coerce,
)
from sqlalchemy.engine import Dialect

from .. import statuses
from ..extensions import db
from ..models import Message, User, utcnow
from .history import NEWEST_FIRST, HistoryFilter

CSV_COLUMNS = ("created_at_utc", "created_at_local", "message_id", "sent_by", "from", "to", "status",
               "status_code", "error_code", "error_reason", "text", "media_count", "media",
               "units", "total_amount", "plivo_uuid", "sent_at_utc", "final_at_utc")
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
# A phone number in E.164 cannot run as a formula: it stays as it is, so a spreadsheet
# shows +14155550100 rather than '+14155550100. Anything else starting "+" is neutralised.
_PHONE_NUMBER = re.compile(r"\+[0-9]{1,15}")
BATCH = 500

_m, _u = Message.__table__, User.__table__


class _StoredOrder(TypeDecorator):
    """created_at exactly as the database orders it: on SQLite the stored text, on
    PostgreSQL the timestamp. SQLite compares datetimes as text, and a row written without
    microseconds by another tool (`2025-01-01 00:00:00`) sorts before the same instant
    written as the app writes it (`… 00:00:00.000000`); a cursor built from the parsed
    datetime would fetch that row again, forever. Compared with its own stored value, the
    cursor always moves past the row it came from."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect):
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String())
        return dialect.type_descriptor(DateTime(timezone=True))


_EXPORT = select(
    _m.c.created_at, _m.c.public_id, _u.c.email, _m.c.sender, _m.c.recipient, _m.c.status,
    _m.c.error_code, _m.c.error_reason, _m.c.text, _m.c.media, _m.c.units,
    _m.c.total_amount, _m.c.plivo_uuid, _m.c.sent_at, _m.c.final_at,
    type_coerce(_m.c.created_at, _StoredOrder()).label("order_key"), _m.c.id,
).join(_u, _m.c.created_by_id == _u.c.id)
_AFTER = (tuple_(_m.c.created_at, _m.c.id)
          < tuple_(bindparam("order_key", type_=_StoredOrder()),
                   bindparam("ident", type_=Integer())))


def neutralize(value: object) -> str:
    """A cell a spreadsheet will not run as a formula (OWASP CSV injection)."""
    text = "" if value is None else str(value)
    if text.startswith(FORMULA_PREFIXES) and not _PHONE_NUMBER.fullmatch(text):
        return "'" + text
    return text


def _iso(moment: datetime | None) -> str:
    """UTC ISO-8601 to the second, the same shape in every row."""
    return moment.astimezone(UTC).isoformat(timespec="seconds") if moment else ""


def _media(items: list[dict] | None) -> str:
    """The media of a message, one address (or Plivo media id) per line."""
    return "\n".join(item.get("url") or f"media id {item.get('media_id', '')}"
                     for item in items or [])


def _local(moment: datetime | None, zone: tzinfo) -> str:
    """The same instant in the display time zone, with its offset."""
    return moment.astimezone(zone).isoformat(timespec="seconds") if moment else ""


def export_rows(filters: HistoryFilter, no_receipt_after: timedelta, zone: tzinfo = UTC,
                batch: int = BATCH) -> Iterator[str]:
    """CSV text, newest first, streamed in keyset batches so memory stays flat. The status
    reads as on screen (its code in the next column)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    yield buffer.getvalue()
    first = filters.apply(_EXPORT).order_by(*NEWEST_FIRST).limit(batch)
    after = filters.apply(_EXPORT.where(_AFTER)).order_by(*NEWEST_FIRST).limit(batch)
    position = None
    while True:
        connection = db.session.connection()
        rows = connection.execute(after, position).all() if position else (
            connection.execute(first).all())
        if not rows:
            return
        buffer.seek(0)
        buffer.truncate()
        now = utcnow()
        for (created_at, public_id, sent_by, sender, recipient, status, error_code,
             error_reason, text, media, units, total_amount, plivo_uuid, sent_at,
             final_at, _key, _id) in rows:
            label = statuses.label(status, error_code, sent_at, now, no_receipt_after)
            writer.writerow([neutralize(value) for value in (
                _iso(created_at), _local(created_at, zone), public_id, sent_by, sender,
                recipient, label, status, error_code, error_reason, text, len(media or []),
                _media(media), units, total_amount, plivo_uuid, _iso(sent_at), _iso(final_at))])
        yield buffer.getvalue()
        position = {"order_key": rows[-1].order_key, "ident": rows[-1].id}
