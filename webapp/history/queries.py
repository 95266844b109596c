"""The history queries: filters, keyset pagination (never OFFSET), the rows of one send,
one message and its timeline, and the "Sent by" list. What a row shows is rows.py;
the CSV export is export.py."""

from __future__ import annotations

import base64
import re
import time as clock
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import current_app, has_app_context
from sqlalchemy import (
    Integer,
    Select,
    bindparam,
    event,
    func,
    literal_column,
    select,
    text,
    tuple_,
)

from webapp import statuses
from webapp.extensions import db
from webapp.history import search
from webapp.models import Message, StatusEvent, User, UTCDateTime

PAGE_SIZE = 50
# A text search matching at most this many messages is answered from their ids; more, and
# the date index is walked with each row checked (see HistoryFilter.apply).
SPARSE = 2_000
DENSE_FOR = 300.0
_DENSE_KEY = "messages.dense_words"
# For each common word and other filters: the share of the first window's rows that
# matched, so that the next such page reads a window that share fills (a quarter more).
_YIELD_KEY = "messages.window_yields"
# The dates a filter may name. Messages cannot predate the dashboard, and a date near
# datetime's end of range would overflow when the day after it is computed.
FIRST_DAY, LAST_DAY = date(2000, 1, 1), date(2099, 12, 31)
MAX_ID = 2**31 - 1  # what an id column holds on PostgreSQL
_ID = re.compile(r"[0-9]{1,10}")
_ERROR_CODE = re.compile(r"[0-9]{1,16}")
_m, _u = Message.__table__, User.__table__


@dataclass
class HistoryFilter:
    statuses: list[str] = field(default_factory=list)
    date_from: date | None = None
    date_to: date | None = None
    recipient_digits: str = ""
    sent_by: int | None = None
    search: str = ""
    send: str = ""  # one compose submission, by its idempotency key
    error_code: str = ""  # Plivo's error code, as the overview links to it
    zone: tzinfo = UTC  # the days of date_from and date_to are this zone's
    _memo: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_args(cls, args, zone: tzinfo = UTC) -> tuple[HistoryFilter, list[str]]:
        """Parse query-string filters; bad values are dropped and reported. Dates are days
        in `zone`, the display time zone, as the table shows them, or in the zone named
        by `tz` (the overview's links: its days are the dashboard's, DISPLAY_TIMEZONE)."""
        errors: list[str] = []
        tz_raw = (args.get("tz") or "").strip()
        if tz_raw:
            try:
                zone = ZoneInfo(tz_raw[:64])
            except (ZoneInfoNotFoundError, ValueError):
                errors.append("Unknown time zone ignored: dates are in your own.")
        error_raw = (args.get("error") or "").strip()
        error_code = error_raw if _ERROR_CODE.fullmatch(error_raw) else ""
        if error_raw and not error_code:
            errors.append("Unknown error code ignored.")
        chosen = [s for s in args.getlist("status") if s in statuses.ALL]
        if len(chosen) != len(args.getlist("status")):
            errors.append("Unknown status ignored.")

        def parse_date(key: str, label: str) -> date | None:
            raw = (args.get(key) or "").strip()
            if not raw:
                return None
            try:
                day = date.fromisoformat(raw)
            except ValueError:
                errors.append(f"The {label} date must look like 2026-01-31.")
                return None
            if not FIRST_DAY <= day <= LAST_DAY:
                errors.append(f"The {label} date must be between {FIRST_DAY} and {LAST_DAY}.")
                return None
            return day

        sent_by_raw = (args.get("sent_by") or "").strip()
        sent_by = int(sent_by_raw) if _ID.fullmatch(sent_by_raw) else None
        if sent_by_raw and (sent_by is None or sent_by > MAX_ID):
            errors.append("Unknown sender ignored.")
            sent_by = None
        date_from, date_to = parse_date("from", "from"), parse_date("to", "to")
        if date_from and date_to and date_from > date_to:
            date_from, date_to = date_to, date_from
            errors.append("The dates were the wrong way round; they have been swapped.")
        recipient_digits = re.sub(r"\D", "", args.get("recipient") or "")[:15]
        if 0 < len(recipient_digits) < search.MIN_RECIPIENT_DIGITS:
            errors.append(f"Type at least the last {search.MIN_RECIPIENT_DIGITS} digits of "
                          "the number to find it.")
            recipient_digits = ""
        search_text = (args.get("q") or "").strip()[:200]
        if search_text and not search.TextQuery.parse(search_text):
            errors.append("Search for words or numbers: punctuation alone matches nothing.")
            search_text = ""
        return cls(
            statuses=chosen,
            date_from=date_from,
            date_to=date_to,
            zone=zone,
            recipient_digits=recipient_digits,
            sent_by=sent_by,
            search=search_text,
            send=(args.get("send") or "").strip()[:64],
            error_code=error_code,
        ), errors

    def values(self) -> dict:
        """The filters' values by the names of their bind parameters in apply(): a
        statement built once for filters of one shape runs with another's values."""
        values: dict = {}
        if self.statuses:
            values["f_statuses"] = list(self.statuses)
        if self.date_from:
            values["f_from"] = datetime.combine(self.date_from, time(), self.zone)
        if self.date_to:
            # The next day's midnight in the zone (a day may last 23 or 25 hours).
            values["f_to"] = datetime.combine(self.date_to + timedelta(days=1), time(),
                                              self.zone)
        if (bounds := search.recipient_bounds(self.recipient_digits)) is not None:
            values["rcpt_lo"], values["rcpt_hi"] = bounds
        if self.sent_by:
            values["f_sent_by"] = self.sent_by
        if self.send:
            values["f_send"] = self.send
        if self.error_code:
            values["f_error_code"] = self.error_code
        return values

    def apply(self, query: Select, with_text: bool = True) -> Select:
        """The query narrowed to the matching messages, every condition one an index
        answers (search.py). A common word on SQLite is the exception: see dense_text()."""
        values = self.values()

        def value(name: str, column):
            return bindparam(name, values[name], type_=column.type)

        if "f_statuses" in values:
            query = query.where(_m.c.status.in_(
                bindparam("f_statuses", values["f_statuses"], expanding=True)))
        if "f_from" in values:
            query = query.where(_m.c.created_at >= value("f_from", _m.c.created_at))
        if "f_to" in values:
            query = query.where(_m.c.created_at < value("f_to", _m.c.created_at))
        if "rcpt_lo" in values:
            query = query.where(search.recipient_condition(self.recipient_digits))
        if "f_sent_by" in values:
            query = query.where(_m.c.created_by_id == value("f_sent_by", _m.c.created_by_id))
        if self.search and with_text:
            query = query.where(self._text_condition())
        if "f_send" in values:
            query = query.where(_m.c.idempotency_key == value("f_send", _m.c.idempotency_key))
        if "f_error_code" in values:
            query = query.where(_m.c.error_code == value("f_error_code", _m.c.error_code))
        return query

    def _text_condition(self):
        """PostgreSQL: the GIN index. SQLite: a rare word's matching ids, read from FTS5
        (up to SPARSE of them: the page then sorts a few rows); a common word as a
        subquery (what the export uses; pages and counts take windows, dense_text())."""
        connection = db.session.connection()
        if connection.dialect.name == "postgresql":
            return search.text_condition(self.search, "postgresql")
        ids = self._sparse_ids()
        if ids is not None:
            return _m.c.id.in_(ids)
        return search.text_condition(self.search, "sqlite")

    def _sparse_ids(self) -> list[int] | None:
        """The ids matching a rare word, or None for a common one. That a word is common
        is remembered by the process for DENSE_FOR seconds (reading 2,001 ids to learn it
        again was a third of a common word's page): words only ever become commoner, and
        the windows find the right rows for a rare word too, just less directly."""
        if "sparse_ids" not in self._memo:
            fts = search.TextQuery.parse(self.search).fts5()
            dense = current_app.extensions.setdefault(_DENSE_KEY, {})
            if clock.monotonic() - dense.get(fts, -DENSE_FOR) < DENSE_FOR:
                self._memo["sparse_ids"] = None
                return None
            ids = db.session.connection().execute(
                search.FTS_MATCH_IDS, {"fts": fts, "limit": SPARSE + 1}).scalars().all()
            if len(ids) > SPARSE:
                if len(dense) >= 1_000:
                    dense.clear()
                dense[fts] = clock.monotonic()
            self._memo["sparse_ids"] = ids if len(ids) <= SPARSE else None
        return self._memo["sparse_ids"]

    def dense_text(self) -> str | None:
        """The FTS5 query of a word too common to list its matches (SQLite only): pages
        and counts then read the newest rows in growing windows and ask FTS5 only about
        each window's range of ids (matching_rows)."""
        if (not self.search or db.session.connection().dialect.name != "sqlite"
                or self._sparse_ids() is not None):
            return None
        return search.TextQuery.parse(self.search).fts5()

    def describe(self, sender_emails: dict[int, str]) -> list[str]:
        """The active filters in a few words each, for the panel's one-line summary."""
        parts = []
        if self.statuses:
            parts.append("Status: " + ", ".join(statuses.LABELS[s] for s in self.statuses))
        if self.date_from or self.date_to:
            parts.append(f"{self.date_from or '…'} to {self.date_to or '…'}")
        if self.recipient_digits:
            parts.append(f"To: …{self.recipient_digits}…")
        if self.sent_by:
            parts.append(f"Sent by {sender_emails.get(self.sent_by, 'an unknown account')}")
        if self.search:
            parts.append(f"Text: “{self.search}”")
        if self.send:
            parts.append("One send")
        if self.error_code:
            meaning = statuses.ERROR_CODES.get(self.error_code)
            parts.append(f"Error {self.error_code}" + (f" ({meaning})" if meaning else ""))
        return parts

    def active(self) -> bool:
        return bool(self.statuses or self.date_from or self.date_to or self.recipient_digits
                    or self.sent_by or self.search or self.send or self.error_code)


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
        if (moment.tzinfo is None or not _ID.fullmatch(ident) or int(ident) > MAX_ID
                or not FIRST_DAY.year <= moment.year <= LAST_DAY.year):
            return None
        return moment, int(ident)
    except (ValueError, UnicodeDecodeError):
        return None


# The table rows are read through Core on the session's connection, not the ORM: plain
# rows of just the columns a row shows. The unfiltered pages, which nearly every request
# asks for, are built once. Under load this took the page's query from 0.75 to 0.35 ms
# (0.97 to 0.37 for a page deep in the past), measured in-process for commit dd72ad0.
# Of `media` a row shows only how many and the first if it is an image: the database
# counts and picks them rather than the driver decoding the whole JSON of every row
# (on PostgreSQL half the CPU of fetching a page, even when the lists are empty).
_TABLE_COLUMNS = {
    "id": _m.c.id, "public_id": _m.c.public_id, "status": _m.c.status,
    "error_code": _m.c.error_code, "created_at": _m.c.created_at, "sent_at": _m.c.sent_at,
    "recipient": _m.c.recipient, "text": _m.c.text,
    "media_count": func.json_array_length(_m.c.media),
    "first_url": _m.c.media[(0, "url")].as_string(),
    "first_type": _m.c.media[(0, "content_type")].as_string(),
    "first_upload": _m.c.media[(0, "upload")].as_string(),
    "total_amount": _m.c.total_amount, "sent_by": _u.c.email,
}
# The names of a table row's columns, in order: rows.py reads them by these names.
TABLE_COLUMNS = tuple(_TABLE_COLUMNS)
_TABLE = select(*(column.label(name) for name, column in _TABLE_COLUMNS.items())).join(
    _u, _m.c.created_by_id == _u.c.id)
NEWEST_FIRST = (_m.c.created_at.desc(), _m.c.id.desc())
# Older than the cursor (parameters `moment`, `ident`): a row-value comparison, so both
# SQLite and PostgreSQL walk the (created_at, id) index from the cursor instead of
# filtering from the top.
BEFORE_CURSOR = (tuple_(_m.c.created_at, _m.c.id)
                 < tuple_(bindparam("moment", type_=UTCDateTime()),
                          bindparam("ident", type_=Integer())))
_FIRST_PAGE = _TABLE.order_by(*NEWEST_FIRST).limit(PAGE_SIZE + 1)
_PAGE_BEFORE = _TABLE.where(BEFORE_CURSOR).order_by(*NEWEST_FIRST).limit(PAGE_SIZE + 1)
_SENDERS = select(_u.c.id, _u.c.email).order_by(_u.c.email)
_IDS = select(_m.c.id)


def _cursor_params(position: tuple[datetime, int] | None) -> dict | None:
    return {"moment": position[0], "ident": position[1]} if position else None


def _rows(query: Select, params: dict | None = None) -> list:
    return db.session.connection().execute(query, params).all()


def page(filters: HistoryFilter, cursor: str | None) -> tuple[list, str | None]:
    """One page of table rows, newest first, and the cursor of the next (older) page."""
    position = decode_cursor(cursor)
    if filters.active():
        rows = matching_rows(filters, _TABLE, position, PAGE_SIZE + 1)
    else:
        rows = _rows(_PAGE_BEFORE if position else _FIRST_PAGE, _cursor_params(position))
    last = rows[PAGE_SIZE - 1] if len(rows) > PAGE_SIZE else None
    next_cursor = encode_cursor(last.created_at, last.id) if last else None
    return rows[:PAGE_SIZE], next_cursor


# A common word's windows: the newest WINDOW rows (of the other filters) first, or as
# many as the share of a window that matched last time says a page needs (a quarter
# more for luck); then as many as the matches seen so far say the rest needs (eight
# times the last if none matched, at most sixteen times), until enough match. Measured
# in-process over the benchmark's million rows, one page: a word in 1 row of 4 with a
# status in 1 of 20 and a date, 0.8 ms (2.0 ms before the statements were kept and the
# window sized by the share); a word in 1 of 4 alone, 0.6 ms; a phrase in 1 of 80,
# 1.0 ms; no filter, 0.26 ms.
WINDOW = 500
_FTS_IDS = select(literal_column("rowid")).select_from(text("messages_fts")).where(
    text("messages_fts MATCH :fts"))
_WINDOW_STATEMENTS: dict = {}


def _window_statements(filters: HistoryFilter, names: tuple[str, ...], query: Select,
                       after_cursor: bool):
    """A common word's three statements, built once for each query and shape of filters
    (building them cost more than running them): the window's matching rows, newest
    first (its id range asked of FTS5, its oldest row the edge); the window's id range,
    size and edge; how many of its rows match. `names`: those of the filters' values(),
    the statements' parameters with the cursor's, `fts`, `window` and `wanted`."""
    key = (query, names, after_cursor)
    if (statements := _WINDOW_STATEMENTS.get(key)) is not None:
        return statements
    keys = filters.apply(select(_m.c.created_at, _m.c.id), with_text=False)
    if after_cursor:
        keys = keys.where(BEFORE_CURSOR)
    keys = keys.order_by(*NEWEST_FIRST).limit(bindparam("window", type_=Integer())).cte()
    oldest = select(keys.c.created_at, keys.c.id).order_by(
        keys.c.created_at, keys.c.id).limit(1).subquery()
    matching_ids = _FTS_IDS.where(literal_column("rowid").between(
        select(func.min(keys.c.id)).scalar_subquery(),
        select(func.max(keys.c.id)).scalar_subquery()))
    at_or_after_edge = tuple_(_m.c.created_at, _m.c.id) >= select(
        oldest.c.created_at, oldest.c.id).scalar_subquery()
    rows = filters.apply(query, with_text=False).where(_m.c.id.in_(matching_ids),
                                                       at_or_after_edge)
    if after_cursor:
        rows = rows.where(BEFORE_CURSOR)
    rows = rows.order_by(*NEWEST_FIRST).limit(bindparam("wanted", type_=Integer()))
    span = select(func.min(keys.c.id), func.max(keys.c.id), func.count(),
                  select(oldest.c.created_at).scalar_subquery(),
                  select(oldest.c.id).scalar_subquery())
    matches = select(func.count()).select_from(keys).where(keys.c.id.in_(matching_ids))
    if len(_WINDOW_STATEMENTS) >= 256:
        _WINDOW_STATEMENTS.clear()
    statements = _WINDOW_STATEMENTS[key] = (rows, span, matches)
    return statements


def matching_rows(filters: HistoryFilter, query: Select, position: tuple[datetime, int] | None,
                  limit: int) -> list:
    """Up to `limit` rows of `query` matching the filters, newest first, older than
    `position`. A word too common to list its matches (SQLite) is looked for window by
    window: each window's rows are found from the other filters' index, their id range
    is asked of FTS5 (which seeks to that range), and a window whose rows all lie inside
    it is complete, so the order is exact however ids and times interleave."""
    fts = filters.dense_text()
    if fts is None:
        narrowed = filters.apply(query)
        if position:
            narrowed = narrowed.where(BEFORE_CURSOR)
        return _rows(narrowed.order_by(*NEWEST_FIRST).limit(limit), _cursor_params(position))
    found: list = []
    values = filters.values()
    yields = current_app.extensions.setdefault(_YIELD_KEY, {})
    shape = (fts, *((name, tuple(v) if isinstance(v, list) else v)
                    for name, v in sorted(values.items())))
    window = WINDOW
    if (share := yields.get(shape)) is not None:
        window = max(limit, min(int(limit * 1.25 / share), WINDOW * 16))
    names = tuple(sorted(values))
    while len(found) < limit:
        before = len(found)
        rows_in_window, span_of_window, matches_in_window = _window_statements(
            filters, names, query, position is not None)
        params = {**values, **(_cursor_params(position) or {}), "fts": fts,
                  "window": window, "wanted": limit - len(found)}
        found += _rows(rows_in_window, params)
        learn = shape not in yields  # the first window only: it is learnt there
        if len(found) >= limit and not learn:
            break
        # How many rows the window held (fewer than asked: the last), and its edge.
        span = _rows(span_of_window, params)[0]
        if not span[2]:
            break
        if learn:
            # How many of this window's rows match (the page read only as many as it
            # needed): the next such page starts with a window that share fills.
            matches = _rows(matches_in_window, params)[0][0]
            if len(yields) >= 1_000:
                yields.clear()
            yields[shape] = max(matches, 1) / span[2]
        if span[2] < window:  # the last window: nothing older is left
            break
        position = (span[3], span[4])
        if matched := len(found) - before:
            wanted = (limit - len(found)) * window * 5 // (matched * 4)
            window = max(WINDOW // 2, min(wanted, window * 16))
        else:
            window *= 8
    return found


COUNT_CAP = 10_000


def count(filters: HistoryFilter, cap: int = COUNT_CAP) -> tuple[int, bool]:
    """How many messages match, counting no further than `cap`: (n, True) means "more
    than cap". Reading at most cap + 1 index entries keeps it a few milliseconds on any
    table; the page asks for it separately, so the table never waits for it."""
    if filters.dense_text() is not None:
        n = len(matching_rows(filters, _IDS, None, cap + 1))
    else:
        matching = filters.apply(select(_m.c.id)).limit(cap + 1).subquery()
        n = db.session.connection().execute(
            select(func.count()).select_from(matching)).scalar_one()
    return min(n, cap), n > cap


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


