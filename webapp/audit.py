"""The audit log: who did what, when, from where.

`record()` adds one row to the current transaction, so an action and its entry are
written together or not at all (a refused change leaves no entry claiming it happened).
Written through Core: a GET that records (an export) writes no ORM object. The app has
no path that changes or deletes an entry; `prune()` (the `flask audit prune` command)
is the retention cut-off an admin runs.
"""

from __future__ import annotations

import csv
import io
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo

from flask import g, has_request_context, request
from flask_login import current_user
from sqlalchemy import delete, insert, select, tuple_

from webapp.extensions import db
from webapp.logs import event
from webapp.models import AuditEvent, User, utcnow
from webapp.spreadsheet import neutralize

log = logging.getLogger(__name__)

# Every action the log knows, with the words the admin page shows. A new action is added
# here first: record() refuses a name it does not know.
ACTIONS = {
    "sign_in": "Signed in",
    "sign_in_failed": "Sign-in failed",
    "sign_in_throttled": "Sign-in refused (too many attempts)",
    "code_failed": "Two-factor code wrong",
    "code_throttled": "Two-factor code refused (too many attempts)",
    "recovery_code_used": "Recovery code used",
    "sign_out": "Signed out",
    "session_timed_out": "Session timed out",
    "sessions_ended": "Sessions ended",
    "password_changed": "Password changed",
    "password_reset": "Password reset by an admin",
    "two_factor_enrolled": "Two-factor turned on",
    "two_factor_disabled": "Two-factor turned off",
    "two_factor_reset": "Two-factor reset by an admin",
    "recovery_codes_renewed": "New recovery codes",
    "account_created": "Account created",
    "role_changed": "Role changed",
    "account_deactivated": "Account deactivated",
    "account_reactivated": "Account reactivated",
    "account_unlocked": "Sign-in unlocked",
    "setting_changed": "Setting changed",
    "messages_sent": "Messages sent",
    "message_sent_again": "Message sent again",
    "message_matched": "Unknown message matched to Plivo's record",
    "test_message_sent": "Test message sent",
    "history_exported": "History exported",
    "audit_exported": "Audit log exported",
    "audit_pruned": "Old audit entries deleted",
    "media_deleted": "Picture or file deleted",
    "batch_sent": "Sent to a list",
    "batch_approved": "List send approved",
    "batch_paused": "List send paused",
    "batch_resumed": "List send resumed",
    "batch_cancelled": "List send cancelled",
    "batch_exported": "List send report exported",
    "batch_limits_changed": "List send approval limits changed",
    "opt_out_removed": "Number removed from the opt-out list",
    "opt_outs_exported": "Opt-out list exported",
    "opt_out_added": "Number added to the opt-out list",
    "consent_exported": "Consent history exported",
    "reply_sent": "Reply sent",
    "conversation_marked": "Conversation marked done or needing a reply",
}

_WHOLE_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_events = AuditEvent.__table__
_users = User.__table__
PAGE = 50


def _clip(value: str | None, size: int) -> str | None:
    return value[:size] if value else value


def record(action: str, target: str | None = None, *, actor=None, email: str | None = None,
           **detail) -> None:
    """One entry for `action`, in the current transaction (the caller commits).

    `actor`: who did it; default the signed-in person, else no one (then `email` is the
    address someone tried). Where from (address after TRUSTED_PROXIES, browser, request
    id) is read from the request; a CLI command has none."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    if actor is None and has_request_context() and current_user.is_authenticated:
        actor = current_user
    values = {
        "at": utcnow(), "action": action, "target": _clip(target, 300),
        "actor_id": actor.id if actor is not None else None,
        "actor_email": _clip(actor.email if actor is not None else email, 254),
        "detail": detail or None,
        "address": None, "user_agent": None, "request_id": None,
    }
    if not has_request_context() and values["actor_email"] is None:
        values["actor_email"] = "command line"
    if has_request_context():
        values.update(address=_clip(request.remote_addr, 45),
                      user_agent=_clip(request.user_agent.string, 300),
                      request_id=_clip(g.get("request_id"), 64))
    db.session.execute(insert(_events).values(values))
    event(log, "audit " + action, by=values["actor_email"] or "unknown", target=target or "-",
          address=values["address"] or "-")


def record_now(action: str, target: str | None = None, **kwargs) -> None:
    """`record()` in a transaction of its own, committed at once: for what is written
    nowhere else (a failed sign-in, an export)."""
    record(action, target, **kwargs)
    db.session.commit()


def prune(older_than: timedelta, run_by: str | None = None) -> int:
    """Delete entries older than `older_than`; how many went. The deletion is itself an
    entry, in the same transaction: how many, older than what, and who ran it (`run_by`,
    the command line's operating-system user)."""
    cutoff = utcnow() - older_than
    result = db.session.execute(delete(_events).where(_events.c.at < cutoff))
    record("audit_pruned", f"entries older than {older_than.days} days",
           email=f"command line ({run_by})" if run_by else None, deleted=result.rowcount,
           older_than_days=older_than.days, before=cutoff.isoformat(timespec="seconds"))
    db.session.commit()
    return result.rowcount


@dataclass(frozen=True)
class AuditFilter:
    actor: str = ""  # an email, or part of one
    action: str = ""
    since: datetime | None = None
    until: datetime | None = None

    @classmethod
    def from_args(cls, args, zone: tzinfo) -> tuple[AuditFilter, list[str]]:
        """The filter a query string asks for, and what in it could not be read (left
        out of the filter, said on the page)."""
        errors = []
        actor = (args.get("who") or "").strip()[:254]
        action = args.get("what") or ""
        if action and action not in ACTIONS:
            errors.append("Choose an action from the list.")
            action = ""
        days = {}
        for key, label in (("from", "From"), ("to", "To")):
            value = (args.get(key) or "").strip()
            if not value:
                continue
            try:
                days[key] = date.fromisoformat(value)
            except ValueError:
                errors.append(f"{label}: enter a date as YYYY-MM-DD.")
        since = until = None
        if "from" in days:
            since = datetime.combine(days["from"], time(), zone).astimezone(UTC)
        if "to" in days:
            until = datetime.combine(days["to"] + timedelta(days=1), time(),
                                     zone).astimezone(UTC)
        if since and until and since >= until:
            errors.append("From must be on or before To.")
            since = until = None
        return cls(actor, action, since, until), errors

    def apply(self, statement):
        if self.actor:
            term = self.actor.strip().casefold()
            if _WHOLE_EMAIL.fullmatch(term):
                statement = statement.where(_events.c.actor_email == term)
            else:
                statement = statement.where(_events.c.actor_email.contains(term, autoescape=True))
        if self.action:
            statement = statement.where(_events.c.action == self.action)
        if self.since:
            statement = statement.where(_events.c.at >= self.since)
        if self.until:
            statement = statement.where(_events.c.at < self.until)
        return statement


_NEWEST_FIRST = (_events.c.at.desc(), _events.c.id.desc())


def cursor_text(cursor: tuple[datetime, int] | None) -> str | None:
    return f"{cursor[0].isoformat()}_{cursor[1]}" if cursor else None


def parse_cursor(text: str | None) -> tuple[datetime, int] | None:
    """A `before` cursor from the query string; None for anything malformed."""
    if not text or len(text) > 60 or "_" not in text:
        return None
    moment, _, ident = text.rpartition("_")
    try:
        at = datetime.fromisoformat(moment)
        number = int(ident)
    except ValueError:
        return None
    if at.tzinfo is None or not 0 < number < 2**63:
        return None
    return at, number


def page(filters: AuditFilter, before: tuple[datetime, int] | None = None,
         size: int = PAGE) -> tuple[list, tuple[datetime, int] | None]:
    """A page of entries, newest first, and the cursor of the next page (None at the end)."""
    statement = filters.apply(select(_events)).order_by(*_NEWEST_FIRST).limit(size + 1)
    if before is not None:
        statement = statement.where(
            tuple_(_events.c.at, _events.c.id) < tuple_(before[0], before[1]))
    rows = db.session.execute(statement).all()
    more = len(rows) > size
    rows = rows[:size]
    return rows, ((rows[-1].at, rows[-1].id) if more else None)


CSV_COLUMNS = ("at_utc", "actor", "action", "target", "detail", "address", "user_agent",
               "request_id")


def export_rows(filters: AuditFilter, batch: int = 1000) -> Iterator[str]:
    """The matching entries as CSV, newest first, in keyset batches; cells neutralised
    against spreadsheet formulas."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    before = None
    while True:
        rows, before = page(filters, before, batch)
        for row in rows:
            writer.writerow((row.at.isoformat(timespec="seconds"), neutralize(row.actor_email),
                             row.action, neutralize(row.target),
                             neutralize(_detail_text(row.detail)), row.address or "",
                             neutralize(row.user_agent), row.request_id or ""))
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        if before is None:
            return


def _detail_text(detail: dict | None) -> str:
    return "; ".join(f"{key}: {value}" for key, value in (detail or {}).items())


def describe(row) -> str:
    """The details as the admin page shows them (the CSV keeps every field)."""
    return _detail_text({key: value for key, value in (row.detail or {}).items()
                         if key not in _NOT_SHOWN})


_NOT_SHOWN = frozenset({"key"})  # a send's idempotency key: for the CSV, not for reading


def actions() -> list[tuple[str, str]]:
    return sorted(ACTIONS.items(), key=lambda item: item[1])
