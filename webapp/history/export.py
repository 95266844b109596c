"""The CSV export of the history: the same filters, every matching message, streamed.

Two ways to the same bytes of CSV (tests/stack proves they agree row for row):
- SQLite: Core keyset batches of plain tuples, formatted here with as little per-row
  Python as the format allows (about 5 µs a row);
- PostgreSQL: one `COPY (SELECT …) TO STDOUT (FORMAT csv)` whose SELECT formats every
  cell itself, streamed block by block: the database's own pace, one snapshot.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, tzinfo

import psycopg
from psycopg import ClientCursor
from sqlalchemy import (
    DateTime,
    Integer,
    String,
    Text,
    TypeDecorator,
    and_,
    bindparam,
    case,
    cast,
    func,
    literal,
    literal_column,
    select,
    tuple_,
    type_coerce,
)
from sqlalchemy.engine import Dialect

from webapp import audit, statuses
from webapp.extensions import db
from webapp.history.filters import HistoryFilter
from webapp.history.pages import NEWEST_FIRST
from webapp.models import Message, User, utcnow
from webapp.spreadsheet import FORMULA_PREFIXES, neutralize
from webapp.spreadsheet import PHONE_NUMBER as _PHONE_NUMBER

# What people read first (the time as a spreadsheet reads a date, in the display zone;
# who to; how it went; what was sent), then what programs want: codes, ids, UTC times.
CSV_COLUMNS = ("created_at_local", "to", "status", "text", "media_count", "media", "from",
               "sent_by", "error_code", "error_reason", "total_amount", "units", "status_code",
               "message_id", "plivo_uuid", "created_at_utc", "sent_at_utc", "final_at_utc")
# Excel reads a CSV without a byte-order mark as the machine's legacy code page:
# "Émile Müller" would come out garbled. Every CSV this app writes starts with one.
BOM = "\ufeff"
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
# SQLite: every column as the text it stores (no datetime or JSON objects made per row).
_EXPORT_TEXT = select(
    type_coerce(_m.c.created_at, String()), _m.c.public_id, _u.c.email, _m.c.sender,
    _m.c.recipient, _m.c.status, _m.c.error_code, _m.c.error_reason, _m.c.text,
    type_coerce(_m.c.media, String()), _m.c.units, _m.c.total_amount, _m.c.plivo_uuid,
    type_coerce(_m.c.sent_at, String()), type_coerce(_m.c.final_at, String()),
    type_coerce(_m.c.created_at, _StoredOrder()).label("order_key"), _m.c.id,
).join(_u, _m.c.created_by_id == _u.c.id)
_AFTER = (tuple_(_m.c.created_at, _m.c.id)
          < tuple_(bindparam("order_key", type_=_StoredOrder()),
                   bindparam("ident", type_=Integer())))
def _media(items: list[dict] | None) -> str:
    """The media of a message, one per line: its address, "file NAME" for a file staff
    uploaded, or "media id ID"."""
    return "\n".join(item.get("url") or (f"file {item.get('name') or ''}" if "upload" in item
                                         else f"media id {item.get('media_id') or ''}")
                      for item in items or [])


class _Times:
    """UTC as ISO-8601 (for programs) and the display zone's wall clock as
    `YYYY-MM-DD HH:MM:SS` (what a spreadsheet reads as a date), to the second, the same
    shape in every row. From datetimes, or (SQLite) from the stored text
    `YYYY-MM-DD HH:MM:SS[.ffffff]` in UTC by slicing, with the zone's offset worked out
    once per minute of the clock: offsets and their changes fall on whole minutes."""

    def __init__(self, zone: tzinfo):
        self.zone = zone
        self._minutes: dict[str, str | None] = {}

    @staticmethod
    def _parse(stored: str | datetime) -> datetime:
        moment = stored if isinstance(stored, datetime) else datetime.fromisoformat(stored)
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment

    @staticmethod
    def _plain(stored: str) -> bool:
        size = len(stored)
        return (size == 19 or (size == 26 and stored[19] == ".")) and stored[10] in " T"

    def utc(self, stored: str | datetime | None) -> str:
        if not stored:
            return ""
        if type(stored) is str and self._plain(stored):
            return f"{stored[:10]}T{stored[11:19]}+00:00"
        return self._parse(stored).astimezone(UTC).isoformat(timespec="seconds")

    def local(self, stored: str | datetime | None) -> str:
        if not stored:
            return ""
        if type(stored) is str and self._plain(stored):
            minute = stored[:16]
            try:
                parts = self._minutes[minute]
            except KeyError:
                parts = self._minute(minute)
            if parts:
                return f"{parts}{stored[16:19]}"
        return f"{self._parse(stored).astimezone(self.zone):%Y-%m-%d %H:%M:%S}"

    def _minute(self, minute: str) -> str | None:
        if len(self._minutes) > 4096:
            self._minutes.clear()
        moment = datetime.fromisoformat(minute).replace(tzinfo=UTC).astimezone(self.zone)
        offset = moment.utcoffset()
        # An offset with seconds (local mean time before 1900) moves the seconds too.
        parts = f"{moment:%Y-%m-%d %H:%M}" if offset is None or not offset.seconds % 60 else None
        self._minutes[minute] = parts
        return parts


class Tally:
    """How many rows an export has written so far (for the audit log)."""

    rows = 0


def recorded_export(filters: HistoryFilter, no_receipt_after: timedelta, zone: tzinfo,
                    asked: dict | str) -> Iterator[bytes]:
    """export_rows(), then one audit entry with the filter `asked` and the rows that went,
    also when the download is cut off (then marked incomplete)."""
    tally = Tally()
    finished = False
    try:
        yield from export_rows(filters, no_receipt_after, zone, tally=tally)
        finished = True
    finally:
        audit.record_now("history_exported", "message history", filter=asked,
                         rows=tally.rows, complete=finished)


def export_rows(filters: HistoryFilter, no_receipt_after: timedelta, zone: tzinfo = UTC,
                batch: int = BATCH, tally: Tally | None = None) -> Iterator[bytes]:
    """CSV as UTF-8 bytes, newest first, the header first (bytes: the response writes
    them as they come, and COPY's need no decoding and encoding again). The status reads
    as on screen (its code in the next column)."""
    buffer = io.StringIO()
    buffer.write(BOM)
    csv.writer(buffer).writerow(CSV_COLUMNS)
    yield buffer.getvalue().encode()
    tally = tally or Tally()
    if db.session.connection().dialect.name == "postgresql":
        yield from copy_rows(filters, no_receipt_after, zone, tally=tally)
    else:
        yield from batched_rows(filters, no_receipt_after, zone, batch, tally)


def batched_rows(filters: HistoryFilter, no_receipt_after: timedelta, zone: tzinfo = UTC,
                 batch: int = BATCH, tally: Tally | None = None) -> Iterator[bytes]:
    """The rows (no header) in keyset batches of plain tuples, so memory stays flat."""
    sqlite = db.session.connection().dialect.name == "sqlite"
    columns = _EXPORT_TEXT if sqlite else _EXPORT
    first = filters.apply(columns).order_by(*NEWEST_FIRST).limit(batch)
    after = filters.apply(columns.where(_AFTER)).order_by(*NEWEST_FIRST).limit(batch)
    times = _Times(zone)
    utc, local, cell = times.utc, times.local, neutralize
    labels: dict[tuple[str, str | None], str] = {}
    buffer = io.StringIO()
    writer = csv.writer(buffer)
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
        lines = []
        for (created_at, public_id, sent_by, sender, recipient, status, error_code,
             error_reason, text, media, units, total_amount, plivo_uuid, sent_at,
             final_at, _key, _id) in rows:
            if status == statuses.SENT and sent_at:
                label = statuses.label(status, error_code, times._parse(sent_at), now,
                                       no_receipt_after)
            elif (label := labels.get((status, error_code))) is None:
                label = labels[status, error_code] = statuses.label(status, error_code)
            if sqlite:
                media = json.loads(media) if media and media != "[]" else None
            lines.append((
                local(created_at), cell(recipient), label, cell(text),
                len(media) if media else 0, cell(_media(media)) if media else "",
                cell(sender), cell(sent_by), cell(error_code), cell(error_reason),
                total_amount, units, status, public_id, cell(plivo_uuid), utc(created_at),
                utc(sent_at), utc(final_at)))
        writer.writerows(lines)
        if tally is not None:
            tally.rows += len(lines)
        yield buffer.getvalue().encode()
        position = {"order_key": rows[-1].order_key, "ident": rows[-1].id}


# PostgreSQL: each cell formatted by the SELECT itself, as batched_rows formats it.
_ISO_UTC = 'YYYY-MM-DD"T"HH24:MI:SS"+00:00"'
_LOCAL = "YYYY-MM-DD HH24:MI:SS"  # in the session's TimeZone, set to the display zone
# The media of each row: the JSON is parsed only where there is some (a json value is
# text, parsed again by every json function given it).
_MEDIA_COUNT = literal_column(
    "CASE WHEN messages.media::text = '[]' THEN 0 WHEN left(messages.media::text, 1) = '[' "
    "THEN json_array_length(messages.media) ELSE 0 END")
_MEDIA_LINES = literal_column(  # models.MEDIA_LINES_FUNCTION
    "CASE WHEN left(messages.media::text, 1) = '[' AND messages.media::text <> '[]' "
    "THEN messages_media_lines(messages.media) END")
# neutralize() for a value too dear to write twice: a quote before a formula's first
# character, unless the whole value is a phone number.
_NEUTRAL_PATTERN = f"^(?=[-=+@\t\r])(?!{_PHONE_NUMBER.pattern}$)"


def _pg_cell(value):
    """neutralize() in SQL; '' becomes NULL, which COPY writes as an empty cell (it writes
    an empty string as "")."""
    value = cast(value, Text)
    # The phone-number exception without a regular expression (every sender and recipient
    # starts with "+", and a regex per cell was half the export's SQL time): "+" then 1 to
    # 15 ASCII digits and nothing else.
    phone = and_(func.ascii(value) == ord("+"), func.length(value).between(2, 16),
                 func.btrim(func.substr(value, 2), "0123456789") == "")
    formula = and_(func.ascii(value).in_([ord(prefix) for prefix in FORMULA_PREFIXES]),
                   ~phone)
    return func.nullif(case((formula, literal("'", Text) + value), else_=value), "")


def _pg_times(column, pattern: str):
    moment = func.timezone("UTC", column) if pattern == _ISO_UTC else column
    return func.to_char(moment, pattern)


def _pg_label(no_receipt_after: timedelta):
    """statuses.label() in SQL."""
    status, code = _m.c.status, _m.c.error_code
    trimmed = func.coalesce(func.nullif(func.ltrim(code, "0"), ""), "0")
    explained = case(
        {number: literal(f"{reason} (", Text) + code + ")"
         for number, reason in statuses.ERROR_CODES.items()},
        value=trimmed, else_=literal("Unknown (code ", Text) + code + ")")
    plain = case(statuses.LABELS, value=status, else_=status)
    return case(
        (and_(status == statuses.SENT, _m.c.sent_at <= utcnow() - no_receipt_after),
         statuses.SENT_NO_RECEIPT_LABEL),
        (and_(status.in_((statuses.UNDELIVERED, statuses.FAILED, statuses.REJECTED)),
              code.is_not(None), code.not_in(("", "0", "000"))),
         plain + ": " + explained),
        else_=plain)


def _pg_select(no_receipt_after: timedelta):
    return select(
        _pg_times(_m.c.created_at, _LOCAL), _pg_cell(_m.c.recipient),
        _pg_label(no_receipt_after), _pg_cell(_m.c.text), _MEDIA_COUNT,
        func.regexp_replace(_MEDIA_LINES, _NEUTRAL_PATTERN, "'"), _pg_cell(_m.c.sender),
        _pg_cell(_u.c.email), _pg_cell(_m.c.error_code), _pg_cell(_m.c.error_reason),
        _m.c.total_amount, _m.c.units, _m.c.status, _m.c.public_id,
        _pg_cell(_m.c.plivo_uuid), _pg_times(_m.c.created_at, _ISO_UTC),
        _pg_times(_m.c.sent_at, _ISO_UTC), _pg_times(_m.c.final_at, _ISO_UTC),
    ).join(_u, _m.c.created_by_id == _u.c.id)


def copy_rows(filters: HistoryFilter, no_receipt_after: timedelta, zone: tzinfo = UTC,
              size: int = 1 << 16, tally: Tally | None = None) -> Iterator[bytes]:
    """The rows (no header) from one COPY, in pieces of about `size` characters (COPY
    sends a row at a time; a write to the socket per row would cost more than the row).
    Its own transaction (a GET request reads in autocommit), so the session's TimeZone
    can be the display zone's for it alone. A zone PostgreSQL does not know (its zone
    database may be older than Python's) or one without a name: batched_rows."""
    connection = db.session.connection()
    name = getattr(zone, "key", None) or ("UTC" if zone is UTC else None)
    statement = filters.apply(_pg_select(no_receipt_after)).order_by(*NEWEST_FIRST)
    compiled = statement.compile(dialect=connection.dialect,
                                 compile_kwargs={"render_postcompile": True})
    raw = connection.connection.driver_connection
    query = ClientCursor(raw).mogrify(compiled.string, compiled.params)
    if name:
        with raw.transaction(), raw.cursor() as cursor:
            try:
                with raw.transaction():
                    # Compiling a million-row plan to machine code costs ~0.4 s before
                    # the first row comes.
                    cursor.execute("SELECT set_config('TimeZone', %s, true), "
                                   "set_config('jit', 'off', true)", (name,))
            except psycopg.DataError:
                name = None
            else:
                # UTF-8 (as every database this app creates) passes through as it
                # comes; another client encoding is decoded and encoded again.
                decoder = codecs.getincrementaldecoder(raw.info.encoding)()
                utf8 = codecs.lookup(raw.info.encoding).name == "utf-8"
                pending = bytearray()
                with cursor.copy(f"COPY ({query}) TO STDOUT (FORMAT csv)") as copy:
                    for block in copy:
                        pending += block
                        if len(pending) >= size:
                            yield bytes(pending) if utf8 else decoder.decode(pending).encode()
                            pending.clear()
                yield bytes(pending) if utf8 else decoder.decode(pending, final=True).encode()
                if tally is not None:
                    tally.rows += max(cursor.rowcount, 0)  # COPY's own count
    if not name:
        yield from batched_rows(filters, no_receipt_after, zone, tally=tally)
