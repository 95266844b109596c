"""The history query: filters and keyset pagination (never OFFSET), and the CSV export."""

from __future__ import annotations

import base64
import csv
import io
import re
import time as clock
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from html import escape as _e  # 0.4 us a value; markupsafe.escape is 0.8
from typing import NamedTuple

from flask import current_app, has_app_context
from markupsafe import Markup
from sqlalchemy import Integer, Select, bindparam, event, func, select, tuple_
from sqlalchemy.orm import joinedload

from .. import statuses
from ..extensions import db
from ..models import Message, StatusEvent, User, UTCDateTime

PAGE_SIZE = 50
_m, _u = Message.__table__, User.__table__


@dataclass
class HistoryFilter:
    statuses: list[str] = field(default_factory=list)
    date_from: date | None = None
    date_to: date | None = None
    recipient_digits: str = ""
    sent_by: int | None = None
    search: str = ""

    @classmethod
    def from_args(cls, args) -> tuple[HistoryFilter, list[str]]:
        """Parse query-string filters; bad values are dropped and reported."""
        errors: list[str] = []
        chosen = [s for s in args.getlist("status") if s in statuses.ALL]
        if len(chosen) != len(args.getlist("status")):
            errors.append("Unknown status ignored.")

        def parse_date(key: str, label: str) -> date | None:
            raw = (args.get(key) or "").strip()
            if not raw:
                return None
            try:
                return date.fromisoformat(raw)
            except ValueError:
                errors.append(f"The {label} date must look like 2026-01-31.")
                return None

        sent_by_raw = (args.get("sent_by") or "").strip()
        sent_by = int(sent_by_raw) if sent_by_raw.isdigit() and len(sent_by_raw) < 10 else None
        return cls(
            statuses=chosen,
            date_from=parse_date("from", "from"),
            date_to=parse_date("to", "to"),
            recipient_digits=re.sub(r"\D", "", args.get("recipient") or "")[:15],
            sent_by=sent_by,
            search=(args.get("q") or "").strip()[:200],
        ), errors

    def apply(self, query: Select) -> Select:
        if self.statuses:
            query = query.where(_m.c.status.in_(self.statuses))
        if self.date_from:
            query = query.where(_m.c.created_at >= datetime.combine(self.date_from, time(), UTC))
        if self.date_to:
            end = datetime.combine(self.date_to, time(), UTC) + timedelta(days=1)
            query = query.where(_m.c.created_at < end)
        if self.recipient_digits:
            query = query.where(_m.c.recipient.contains(self.recipient_digits))
        if self.sent_by:
            query = query.where(_m.c.created_by_id == self.sent_by)
        if self.search:
            query = query.where(_m.c.text.icontains(self.search, autoescape=True))
        return query

    def active(self) -> bool:
        return bool(self.statuses or self.date_from or self.date_to or self.recipient_digits
                    or self.sent_by or self.search)


def encode_cursor(created_at: datetime, ident: int) -> str:
    raw = f"{created_at.isoformat()}|{ident}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> tuple[datetime, int] | None:
    if not cursor or len(cursor) > 100:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, ident = raw.split("|", 1)
        moment = datetime.fromisoformat(stamp)
        if moment.tzinfo is None:
            return None
        return moment, int(ident)
    except (ValueError, UnicodeDecodeError):
        return None


# The table rows are read through Core on the session's connection, not the ORM: plain
# rows of just the columns a row shows. The unfiltered pages, which nearly every request
# asks for, are built once. Under load this took the page's query from 0.75 to 0.35 ms
# (0.97 to 0.37 for a page deep in the past), bench/RESULTS.md.
# Of `media` a row shows only how many and the first if it is an image: the database
# counts and picks them rather than the driver decoding the whole JSON of every row
# (on PostgreSQL half the CPU of fetching a page, even when the lists are empty).
_TABLE = select(
    _m.c.id, _m.c.public_id, _m.c.status, _m.c.error_code, _m.c.created_at, _m.c.sent_at,
    _m.c.recipient, _m.c.text, func.json_array_length(_m.c.media).label("media_count"),
    _m.c.media[(0, "url")].as_string().label("first_url"),
    _m.c.media[(0, "content_type")].as_string().label("first_type"),
    _m.c.total_amount, _u.c.email.label("sent_by"),
).join(_u, _m.c.created_by_id == _u.c.id)
_NEWEST_FIRST = (_m.c.created_at.desc(), _m.c.id.desc())
# Older than the cursor (parameters `moment`, `ident`): a row-value comparison, so both
# SQLite and PostgreSQL walk the (created_at, id) index from the cursor instead of
# filtering from the top.
_BEFORE_CURSOR = (tuple_(_m.c.created_at, _m.c.id)
                  < tuple_(bindparam("moment", type_=UTCDateTime()),
                           bindparam("ident", type_=Integer())))
_FIRST_PAGE = _TABLE.order_by(*_NEWEST_FIRST).limit(PAGE_SIZE + 1)
_PAGE_BEFORE = _TABLE.where(_BEFORE_CURSOR).order_by(*_NEWEST_FIRST).limit(PAGE_SIZE + 1)
_SENDERS = select(_u.c.id, _u.c.email).order_by(_u.c.email)


def _cursor_params(position: tuple[datetime, int] | None) -> dict | None:
    return {"moment": position[0], "ident": position[1]} if position else None


def _rows(query: Select, params: dict | None = None) -> list:
    return db.session.connection().execute(query, params).all()


def page(filters: HistoryFilter, cursor: str | None) -> tuple[list, str | None]:
    """One page of table rows, newest first, and the cursor of the next (older) page."""
    position = decode_cursor(cursor)
    if filters.active():
        query = filters.apply(_TABLE)
        if position:
            query = query.where(_BEFORE_CURSOR)
        query = query.order_by(*_NEWEST_FIRST).limit(PAGE_SIZE + 1)
    else:
        query = _PAGE_BEFORE if position else _FIRST_PAGE
    rows = _rows(query, _cursor_params(position))
    last = rows[PAGE_SIZE - 1] if len(rows) > PAGE_SIZE else None
    next_cursor = encode_cursor(last.created_at, last.id) if last else None
    return rows[:PAGE_SIZE], next_cursor


def table_rows_by_public_id(public_ids: list[str]) -> list:
    """Table rows for these messages, in the order given (unknown ids are skipped)."""
    found = {row.public_id: row for row in _rows(_TABLE.where(_m.c.public_id.in_(public_ids)))}
    return [found[i] for i in public_ids if i in found]


def table_rows_for_send(user_id: int, idempotency_key: str) -> list:
    """Table rows of one compose submission."""
    return _rows(_TABLE.where(_m.c.created_by_id == user_id,
                              _m.c.idempotency_key == idempotency_key).order_by(_m.c.id))


def message_by_public_id(public_id: str) -> Message | None:
    if len(public_id) > 24:
        return None
    return db.session.scalar(select(Message).where(Message.public_id == public_id))


def timeline(message: Message) -> list[StatusEvent]:
    """Every callback kept for this message, in arrival order."""
    return list(db.session.scalars(
        select(StatusEvent).where(StatusEvent.message_id == message.id)
        .order_by(StatusEvent.received_at, StatusEvent.id)))


# The "Sent by" list changes only when an account is made (emails are fixed, accounts are
# never deleted), yet reading it was one of the history page's three round trips to
# PostgreSQL. So each process keeps it for SENDERS_FOR seconds: an account made in this
# process is listed at once (below); one made in another process within SENDERS_FOR.
SENDERS_FOR = 30.0
_SENDERS_KEY = "messages.senders"


def senders(selected: int | None = None) -> list:
    """Everyone who can send, for the history filter: (id, email) rows. `selected` (the
    filter's sent_by) not among them reads the list again, so it cannot lag a link."""
    now = clock.monotonic()
    read_at, rows = current_app.extensions.get(_SENDERS_KEY, (None, []))
    if (read_at is None or now - read_at >= SENDERS_FOR
            or (selected and all(row.id != selected for row in rows))):
        rows = _rows(_SENDERS)
        current_app.extensions[_SENDERS_KEY] = (now, rows)
    return rows


@event.listens_for(User, "after_insert")
def _forget_senders(*_args) -> None:
    if has_app_context():
        current_app.extensions.pop(_SENDERS_KEY, None)


# ---- what one history row shows ---------------------------------------------------------
def format_phone(number: str | None) -> str:
    """(415) 555-0100 for North American E.164 numbers, anything else as it is."""
    if number and len(number) == 12 and number.startswith("+1") and number[1:].isdigit():
        return f"({number[2:5]}) {number[5:8]}-{number[8:]}"
    return number or ""


class Row(NamedTuple):
    """A message formatted for the history table."""

    public_id: str
    is_final: bool
    created_iso: str
    created_utc: str
    recipient: str
    excerpt: str
    media_count: int
    thumbnail: str | None
    status: str
    label: str
    sent_by: str
    cost: str


def present(message, now: datetime, no_receipt_after: timedelta) -> Row:
    """`message` is a row of _TABLE. Unpacked rather than read by name, and the time
    cut from isoformat() rather than strftime(): half the cost of a 50-row page."""
    (_id, public_id, status, error_code, created, sent_at, recipient, text, media_count,
     first_url, first_type, total_amount, sent_by) = message
    image = first_url if first_type and first_type.startswith("image/") else None
    text = text or ""
    iso = created.isoformat()  # UTC (UTCDateTime): 2026-01-31T09:15:00+00:00
    return Row(
        public_id,
        status in statuses.FINAL,
        iso,
        f"{iso[:10]} {iso[11:16]} UTC",
        format_phone(recipient),
        (text[:57] + "…") if len(text) > 60 else (text or "—"),
        media_count,
        image,
        status,
        statuses.label(status, error_code, sent_at, now, no_receipt_after),
        sent_by,
        f"${total_amount}" if total_amount else "—",
    )


@lru_cache(maxsize=512)  # a handful of (status, label) pairs cover every row there is
def badge(status: str, label: str) -> Markup:
    """The status badge, the same in the history rows and on the detail page."""
    tone = statuses.TONES.get(status, "neutral")
    html = f'<span class="badge badge-{tone}" data-status="{_e(status)}">{_e(label)}</span>'
    return Markup(html)  # noqa: S704 (both values escaped above; tone is ours)


_ROW = (
    '<tr id="msg-{id}" data-final="{final}">'
    '<td><time datetime="{iso}" title="{utc}">{utc}</time></td>'
    '<td><a href="{href}">{recipient}</a></td>'
    '<td class="excerpt">{excerpt}</td>'
    "<td>{thumbnail}{media_count}</td>"
    "<td>{badge}</td>"
    "<td>{sent_by}</td>"
    "<td>{cost}</td>"
    "</tr>\n"
)
_THUMBNAIL = '<img class="thumb" src="{}" alt="" loading="lazy" referrerpolicy="no-referrer"> '


def rows_html(rows: list[Row], detail_url: str) -> Markup:
    """The table rows, every stored value escaped (the times are cut from datetimes).
    Built here rather than in a Jinja loop: the same markup through the template cost a
    third of the history page under load (see bench/RESULTS.md). `detail_url` is
    url_for('messages.history')."""
    html = []
    for row in rows:
        public_id = _e(row.public_id)
        html.append(_ROW.format(
            id=public_id, final="yes" if row.is_final else "no", iso=row.created_iso,
            utc=row.created_utc, href=f"{detail_url}/{public_id}",
            recipient=_e(row.recipient), excerpt=_e(row.excerpt),
            thumbnail=_THUMBNAIL.format(_e(row.thumbnail)) if row.thumbnail else "",
            media_count=row.media_count, badge=badge(row.status, row.label),
            sent_by=_e(row.sent_by), cost=_e(row.cost)))
    return Markup("".join(html))  # noqa: S704 (every value escaped above)


# ---- CSV export ---------------------------------------------------------------------------
CSV_COLUMNS = ("created_at_utc", "message_id", "sent_by", "from", "to", "status", "error_code",
               "error_reason", "text", "media_count", "units", "total_amount", "plivo_uuid",
               "sent_at_utc", "final_at_utc")
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def neutralize(value: object) -> str:
    """A cell a spreadsheet will not run as a formula (OWASP CSV injection)."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


def _iso(moment: datetime | None) -> str:
    return moment.astimezone(UTC).isoformat() if moment else ""


def export_rows(filters: HistoryFilter, batch: int = 500) -> Iterator[str]:
    """CSV text, streamed in keyset batches so memory stays flat."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    yield buffer.getvalue()
    position = None
    while True:
        query = filters.apply(select(Message).options(joinedload(Message.created_by)))
        if position:
            query = query.where(_BEFORE_CURSOR)
        rows = list(db.session.scalars(query.order_by(*_NEWEST_FIRST).limit(batch),
                                       _cursor_params(position)))
        if not rows:
            return
        buffer.seek(0)
        buffer.truncate()
        for m in rows:
            writer.writerow([neutralize(v) for v in (
                _iso(m.created_at), m.public_id, m.created_by.email, m.sender, m.recipient,
                m.status, m.error_code, m.error_reason, m.text, len(m.media), m.units,
                m.total_amount, m.plivo_uuid, _iso(m.sent_at), _iso(m.final_at))])
        yield buffer.getvalue()
        position = (rows[-1].created_at, rows[-1].id)
        db.session.expunge_all()
