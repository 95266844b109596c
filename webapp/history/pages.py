"""The history queries: keyset pagination (never OFFSET), the rows of one send,
one message and its timeline, and the "Sent by" list. What a row shows is rows.py;
the CSV export is export.py."""

from __future__ import annotations

import time as clock
from datetime import datetime

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

from webapp.extensions import db
from webapp.history.filters import HistoryFilter, decode_cursor, encode_cursor
from webapp.models import Conversation, Message, StatusEvent, User, UTCDateTime

PAGE_SIZE = 50
# The dates a filter may name. Messages cannot predate the dashboard, and a date near
# datetime's end of range would overflow when the day after it is computed.
_m, _u = Message.__table__, User.__table__
# For each common word and other filters: the share of the first window's rows that
# matched, so that the next such page reads a window that share fills (a quarter more).
_YIELD_KEY = "messages.window_yields"


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


def conversation_of(message: Message) -> str | None:
    """The public id of the thread with this message's customer on its number, if any."""
    return db.session.scalar(select(Conversation.public_id).where(
        Conversation.customer == message.recipient, Conversation.our_number == message.sender))


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


