"""The status callback's write as prebuilt SQL: the hottest write path of the app.

One conditional UPDATE decides whether a callback applies: the state machine's order
(statuses.RANKS, statuses.should_apply) is its WHERE clause and the "first value stays"
columns (statuses.FIRST_VALUE_STAYS) are COALESCEs, so the database decides on the
message's latest state under its row lock and nothing is read first. PostgreSQL runs
the update and the ledger insert as one statement, SQLite as one short transaction.
Built once at import: constructing statements costs more than running them here.
tests/test_statuses.py runs every (current, new, sequence) combination through this
SQL and through statuses.callback_applies and asserts they agree.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from sqlalchemy import Boolean, bindparam, case, cast, exists, func, select, tuple_, update
from sqlalchemy.dialects import postgresql as postgresql_dml
from sqlalchemy.dialects import sqlite as sqlite_dml

from webapp import statuses
from webapp.extensions import db
from webapp.models import Message, StatusEvent, WebhookNonce

_messages = Message.__table__
_ledger = StatusEvent.__table__
_nonces = WebhookNonce.__table__

# The columns a callback writes besides status and sequence (see callbacks.callback_values).
WRITTEN = ("error_code", "error_reason", "units", "total_amount", "queued_at", "sent_at",
           "final_at")


def _typed(table, name: str, prefix: str = ""):
    return bindparam(prefix + name, type_=table.c[name].type)


def _written(name: str):
    """A value the callback carries (None keeps the column), or, for the first-value-stays
    columns, the column's own value once it has one."""
    given = _typed(_messages, name, "cb_")
    if name in statuses.FIRST_VALUE_STAYS:
        return func.coalesce(_messages.c[name], given)
    return func.coalesce(given, _messages.c[name])


# statuses.callback_applies as SQL: `cb_applies` carries "is a callback status", the
# row-value comparison the (rank, sequence) order. A callback the ledger already holds
# changes nothing (a Plivo retry of one recorded before its message knew its uuid is
# adopted, not applied twice).
_HELD = exists().where(_ledger.c.plivo_uuid == bindparam("cb_plivo_uuid"),
                       _ledger.c.status == bindparam("cb_status"),
                       _ledger.c.sequence == bindparam("cb_status_sequence"), _ledger.c.accepted)
RANK = case(statuses.RANKS, value=_messages.c.status, else_=statuses.UNRANKED)
APPLY_CALLBACK = (
    update(_messages)
    .where(_messages.c.plivo_uuid == bindparam("cb_plivo_uuid"),
           bindparam("cb_applies", type_=Boolean), ~_HELD,
           tuple_(RANK, func.coalesce(_messages.c.status_sequence, 0))
           < tuple_(bindparam("cb_new_rank"), bindparam("cb_status_sequence")))
    .values(version=_messages.c.version + 1,
            **{name: _written(name) for name in WRITTEN},
            status=bindparam("cb_status"), status_sequence=bindparam("cb_status_sequence"),
            updated_at=bindparam("cb_now", type_=_messages.c.updated_at.type)))
_MESSAGE_ID = select(_messages.c.id).where(_messages.c.plivo_uuid == bindparam("cb_plivo_uuid"))
_LEDGER_COLUMNS = ("plivo_uuid", "message_id", "status", "sequence", "error_code", "payload",
                   "signature_scheme", "accepted", "applied", "received_at")


def _insert_ledger(dml, values=None):
    return (dml.insert(_ledger).values(values or {name: _typed(_ledger, name, "ledger_")
                                                  for name in _LEDGER_COLUMNS})
            .on_conflict_do_nothing(index_elements=["plivo_uuid", "status", "sequence"],
                                    index_where=_ledger.c.accepted))


def _insert_nonce(dml):
    return (dml.insert(_nonces).values({name: _typed(_nonces, name, "nonce_")
                                        for name in ("nonce", "body_sha256", "received_at")})
            .on_conflict_do_nothing(index_elements=["nonce"]))


def _record_in_one(bind_nonce: bool):
    """PostgreSQL: one autocommit statement. The UPDATE waits for a concurrent writer's row
    lock and then checks its condition again on the row as that writer left it; the ledger
    row is written with what the UPDATE did. With `bind_nonce`, the signature's nonce is
    recorded in the same statement, and nothing else is written unless it was new."""
    new_nonce = (_insert_nonce(postgresql_dml).returning(_nonces.c.nonce).cte("new_nonce")
                 if bind_nonce else None)
    apply = APPLY_CALLBACK.where(exists().select_from(new_nonce)) if bind_nonce else APPLY_CALLBACK
    changed = apply.returning(_messages.c.id).cte("changed")
    values = {name: _typed(_ledger, name, "ledger_") for name in _LEDGER_COLUMNS}
    values.update(message_id=_MESSAGE_ID.scalar_subquery(),
                  applied=exists().select_from(changed))
    # INSERT ... SELECT (so that it can depend on the nonce); the casts tell PostgreSQL
    # each parameter's type, which VALUES would have taken from the columns.
    rows = select(*(value if name in ("message_id", "applied")
                    else cast(value, _ledger.c[name].type)
                    for name, value in values.items()))
    if bind_nonce:
        rows = rows.where(exists().select_from(new_nonce))
    recorded = (postgresql_dml.insert(_ledger).from_select(list(values), rows)
                .on_conflict_do_nothing(index_elements=["plivo_uuid", "status", "sequence"],
                                        index_where=_ledger.c.accepted)
                .returning(_ledger.c.id).cte("recorded"))
    counts = [select(func.count()).select_from(changed).scalar_subquery().label("updated"),
              select(func.count()).select_from(recorded).scalar_subquery().label("inserted"),
              _MESSAGE_ID.scalar_subquery().label("message_id")]
    if bind_nonce:
        counts.append(select(func.count()).select_from(new_nonce).scalar_subquery()
                      .label("nonce_new"))
    return select(*counts)


_RECORD_IN_ONE = _record_in_one(bind_nonce=False)
_RECORD_IN_ONE_BINDING_NONCE = _record_in_one(bind_nonce=True)
_INSERT_LEDGER_SQLITE = _insert_ledger(sqlite_dml)
_INSERT_NONCE_SQLITE = _insert_nonce(sqlite_dml)


class Written(NamedTuple):
    updated: bool  # the message changed
    inserted: bool  # the ledger row was stored
    message_id: int | None  # the message with this uuid, if known
    nonce_new: bool  # the signature's nonce had not been seen (True when none was bound)


def apply_params(*, plivo_uuid: str, status: str, sequence: int, values: dict[str, Any],
                 now) -> dict[str, Any]:
    """APPLY_CALLBACK's parameters for a callback whose written values are `values`."""
    params = {f"cb_{name}": values[name] for name in WRITTEN}
    params.update(cb_plivo_uuid=plivo_uuid, cb_status=status, cb_status_sequence=sequence,
                  cb_new_rank=statuses.rank(status),
                  cb_applies=status in statuses.CALLBACK_STATUSES, cb_now=now)
    return params


def write_callback(params: dict[str, Any], ledger: dict[str, Any],
                   nonce: dict[str, Any] | None = None) -> Written:
    """Apply a callback (params from apply_params) and store its ledger row at once.

    A ledger row already held inserts nothing and changes nothing. With `nonce`
    ({"nonce", "body_sha256", "received_at"}), the nonce is recorded too, and a nonce seen
    before writes nothing at all (the caller decides between a retry and a replay).
    """
    ledger_params = {f"ledger_{name}": value for name, value in ledger.items()}
    nonce_params = {f"nonce_{name}": value for name, value in (nonce or {}).items()}
    if db.engine.dialect.name == "postgresql":
        statement = _RECORD_IN_ONE_BINDING_NONCE if nonce else _RECORD_IN_ONE
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            row = connection.execute(statement, {**params, **ledger_params,
                                                 **nonce_params}).one()
        return Written(bool(row.updated), bool(row.inserted), row.message_id,
                       bool(row.nonce_new) if nonce else True)
    # A pooled connection of its own, not the ORM session: one short transaction needs
    # none of the session's bookkeeping. Leaving the block uncommitted rolls back.
    with db.engine.connect() as connection:
        if nonce and connection.execute(_INSERT_NONCE_SQLITE, nonce_params).rowcount != 1:
            return Written(False, False, None, False)
        updated = connection.execute(APPLY_CALLBACK, params).rowcount == 1
        message_id = connection.execute(_MESSAGE_ID, params).scalar()
        ledger_params.update(ledger_message_id=message_id, ledger_applied=updated)
        inserted = connection.execute(_INSERT_LEDGER_SQLITE, ledger_params).rowcount == 1
        if not inserted and not nonce:
            return Written(False, False, message_id, True)  # nothing changes: the update goes
        connection.commit()  # with a new nonce, the nonce is kept even for a held callback
    return Written(updated, inserted, message_id, True)
