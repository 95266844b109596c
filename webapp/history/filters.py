"""What a person asks the history for: the filters (statuses, dates in their zone, sender,
error code, recipient digits, text) read from the query string with a sentence for each
value that cannot be used, turned into conditions; and the keyset cursor."""

from __future__ import annotations

import base64
import re
import time as clock
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import current_app
from sqlalchemy import Select, bindparam, or_

from webapp import statuses
from webapp.extensions import db
from webapp.history import search
from webapp.models import Message

FIRST_DAY, LAST_DAY = date(2000, 1, 1), date(2099, 12, 31)
_m = Message.__table__
NO_CODE = "none"
# A text search matching at most this many messages is answered from their ids; more, and
# the date index is walked with each row checked (see HistoryFilter.apply).
SPARSE = 2_000


DENSE_FOR = 300.0


_DENSE_KEY = "messages.dense_words"


MAX_ID = 2**31 - 1  # what an id column holds on PostgreSQL


_ID = re.compile(r"[0-9]{1,10}")


_ERROR_CODE = re.compile(r"[0-9]{1,16}")


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
        # "none": messages Plivo gave no error code (the overview's "no error code" line).
        error_code = error_raw if _ERROR_CODE.fullmatch(error_raw) or error_raw == NO_CODE else ""
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
        if self.error_code == NO_CODE:
            values["f_no_error_code"] = True
        elif self.error_code:
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
        if "f_no_error_code" in values:
            query = query.where(or_(_m.c.error_code.is_(None), _m.c.error_code == ""))
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
        if self.error_code == NO_CODE:
            parts.append("No error code")
        elif self.error_code:
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

