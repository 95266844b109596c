"""The opt-out list: numbers whose person replied STOP. Plivo answers a message to such a
number with error 200 (PLIVO.md section 5); the status callback that says so adds the
number here (callbacks/ledger.py), list sends leave it out and single sends to it are refused,
until an admin removes it (the person texted START)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from sqlalchemy import delete, func, select
from sqlalchemy.dialects import postgresql, sqlite

from webapp import audit
from webapp.extensions import db
from webapp.models import OptOut, utcnow
from webapp.spreadsheet import csv_line

OPTED_OUT_CODE = "200"
_opt_outs = OptOut.__table__
PAGE = 100


def note(number: str, sender: str | None, message_public_id: str | None) -> None:
    """Add `number` (E.164) in the caller's transaction; a number already listed stays as
    it was (the first STOP is the one that counts)."""
    dml = postgresql if db.session.get_bind().dialect.name == "postgresql" else sqlite
    db.session.execute(dml.insert(_opt_outs).values(
        number=number[:16], sender=(sender or "")[:16] or None, created_at=utcnow(),
        message_public_id=message_public_id).on_conflict_do_nothing(index_elements=["number"]))


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
    """Take `number` off the list (the person texted START); audited. False if it was not
    on it."""
    gone = db.session.execute(delete(_opt_outs).where(_opt_outs.c.number == number)).rowcount
    if gone:
        audit.record("opt_out_removed", number, actor=actor)
    db.session.commit()
    return bool(gone)


def recorded_export(actor) -> Iterator[bytes]:
    """The whole list as CSV (formula-safe), with its audit entry written first."""
    audit.record_now("opt_outs_exported", "opt-out list", actor=actor)
    yield ("\ufeff" + csv_line(["number", "opted_out_at_utc", "sending_number", "message"])
           ).encode()
    for row in db.session.execute(select(_opt_outs).order_by(_opt_outs.c.created_at)):
        yield csv_line([row.number, row.created_at.strftime("%Y-%m-%d %H:%M:%S"),
                        row.sender or "", row.message_public_id or ""]).encode()
