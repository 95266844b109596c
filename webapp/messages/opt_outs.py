"""The opt-out list and the consent record.

A number joins the list when its person replies STOP (or another opt-out word, or Plivo
marks the reply's intent `optout`: conversations/inbound.py), or when Plivo answers a
message to it with error 200 (PLIVO.md section 5: callbacks/ledger.py). List sends leave
it out and single sends and replies to it are refused, until the person texts START or an
admin removes it. Every change is a consent event, kept for good (CASL and TCPA: the
sender must be able to prove consent and its withdrawal)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from sqlalchemy import delete, func, select
from sqlalchemy.dialects import postgresql, sqlite

from webapp import audit
from webapp.extensions import db
from webapp.models import ConsentEvent, OptOut, User, utcnow
from webapp.spreadsheet import csv_line

OPTED_OUT_CODE = "200"
_opt_outs = OptOut.__table__
PAGE = 100

# Why a number's consent changed (consent_events.source).
ERROR_200 = "Plivo error 200"
KEYWORD = "reply keyword"
INTENT = "Plivo intent"
ADMIN = "admin"


def _consent(number: str, change: str, source: str, our_number: str | None,
             message_public_id: str | None, words: str | None, actor) -> None:
    db.session.add(ConsentEvent(
        number=number[:16], change=change, source=source, our_number=(our_number or "")[:16]
        or None, message_public_id=message_public_id, words=(words or "")[:160] or None,
        actor_id=actor.id if actor is not None else None, created_at=utcnow()))


def note(number: str, sender: str | None, message_public_id: str | None, *,
         source: str = ERROR_200, words: str | None = None, actor=None) -> bool:
    """Add `number` (E.164) in the caller's transaction, with its consent event; a number
    already listed stays as it was (the first STOP is the one that counts). True if it
    was not listed before."""
    dml = postgresql if db.session.get_bind().dialect.name == "postgresql" else sqlite
    # A row back means it was new (rowcount is -1 for this INSERT on PostgreSQL).
    added = db.session.execute(dml.insert(_opt_outs).values(
        number=number[:16], sender=(sender or "")[:16] or None, created_at=utcnow(),
        message_public_id=message_public_id).on_conflict_do_nothing(index_elements=["number"])
        .returning(_opt_outs.c.number)).first() is not None
    if added:
        _consent(number, "out", source, sender, message_public_id, words, actor)
    return added


def opt_in(number: str, *, source: str, our_number: str | None = None,
           message_public_id: str | None = None, words: str | None = None,
           actor=None) -> bool:
    """Take `number` off the list in the caller's transaction, with its consent event
    (the person texted START, or an admin removed it). False if it was not listed."""
    gone = db.session.execute(delete(_opt_outs).where(_opt_outs.c.number == number)
                              .returning(_opt_outs.c.number)).first() is not None
    if gone:
        _consent(number, "in", source, our_number, message_public_id, words, actor)
    return bool(gone)


def is_opted_out(number: str) -> bool:
    return db.session.get(OptOut, number) is not None


def consent_history(number: str, limit: int = 50) -> list[ConsentEvent]:
    """The number's consent changes, newest first."""
    return list(db.session.scalars(
        select(ConsentEvent).where(ConsentEvent.number == number)
        .order_by(ConsentEvent.created_at.desc(), ConsentEvent.id.desc()).limit(limit)))


def recent_consent(limit: int = PAGE) -> list[ConsentEvent]:
    return list(db.session.scalars(select(ConsentEvent).order_by(
        ConsentEvent.created_at.desc(), ConsentEvent.id.desc()).limit(limit)))


def among(numbers: Iterable[str]) -> set[str]:
    """Which of `numbers` are on the list (one query per 500)."""
    wanted = list(dict.fromkeys(numbers))
    found: set[str] = set()
    for start in range(0, len(wanted), 500):
        found.update(db.session.scalars(select(OptOut.number).where(
            OptOut.number.in_(wanted[start:start + 500]))))
    return found


def listing(search: str = "") -> tuple[list[OptOut], int]:
    """The newest PAGE numbers on the list (those containing `search`'s digits), and how
    many the list holds in all. The whole list is the CSV export."""
    query = select(OptOut).order_by(OptOut.created_at.desc(), OptOut.number)
    digits = "".join(ch for ch in search if ch.isdigit())[:15]
    if digits:
        query = query.where(OptOut.number.contains(digits, autoescape=True))
    total = db.session.scalar(select(func.count()).select_from(OptOut))
    return list(db.session.scalars(query.limit(PAGE))), total or 0


def remove(number: str, actor) -> bool:
    """An admin takes `number` off the list (the person asked in another way); audited.
    False if it was not on it."""
    gone = opt_in(number, source=ADMIN, actor=actor)
    if gone:
        audit.record("opt_out_removed", number, actor=actor)
    db.session.commit()
    return gone


def add(number: str, actor) -> bool:
    """An admin adds `number` (the person asked by phone or in person); audited."""
    added = note(number, None, None, source=ADMIN, actor=actor)
    if added:
        audit.record("opt_out_added", number, actor=actor)
    db.session.commit()
    return added


def recorded_export(actor) -> Iterator[bytes]:
    """The whole list as CSV (formula-safe), with its audit entry written first."""
    audit.record_now("opt_outs_exported", "opt-out list", actor=actor)
    yield ("\ufeff" + csv_line(["number", "opted_out_at_utc", "sending_number", "message"])
           ).encode()
    for row in db.session.execute(select(_opt_outs).order_by(_opt_outs.c.created_at)):
        yield csv_line([row.number, row.created_at.strftime("%Y-%m-%d %H:%M:%S"),
                        row.sender or "", row.message_public_id or ""]).encode()


def consent_export(actor) -> Iterator[bytes]:
    """Every consent event as CSV, oldest first, with its audit entry written first."""
    audit.record_now("consent_exported", "consent history", actor=actor)
    yield ("\ufeff" + csv_line(["number", "change", "at_utc", "source", "our_number",
                                "message", "words", "by"])).encode()
    emails = {user_id: email for user_id, email in db.session.execute(
        select(User.id, User.email))}
    # A page of 5,000 at a time by id (keyset): no server-side cursor, which PostgreSQL
    # refuses in a GET's autocommit connection, and no whole table in memory.
    after = 0
    while True:
        events = ConsentEvent.__table__  # rows, not objects: nothing piles up in the session
        page = db.session.execute(select(events).where(events.c.id > after)
                                  .order_by(events.c.id).limit(5_000)).all()
        if not page:
            return
        after = page[-1].id
        yield from _consent_lines(page, emails)


def _consent_lines(page, emails: dict[int, str]) -> Iterator[bytes]:
    for row in page:
        yield csv_line([row.number, "opted out" if row.change == "out" else "opted in",
                        row.created_at.strftime("%Y-%m-%d %H:%M:%S"), row.source,
                        row.our_number or "", row.message_public_id or "", row.words or "",
                        emails.get(row.actor_id, "") if row.actor_id else ""]).encode()
