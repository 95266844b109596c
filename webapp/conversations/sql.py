"""The reply webhook's writes as prebuilt SQL, built once per dialect (constructing a
statement costs more than running it here; as for status callbacks, callbacks/sql.py).

SQLite runs three statements in one short transaction: the nonce, the thread's upsert,
the reply. PostgreSQL runs them as one statement of data-modifying CTEs, one round trip
instead of three: the thread is only touched when the nonce is new, the reply only
stored with its thread, and what happened comes back as counts. The caller still rolls
back when the reply was a retry, so a retried message touches nothing.

Every insert returns what it stored: a row back means new (through the session,
INSERT ... ON CONFLICT DO NOTHING reports rowcount -1 on PostgreSQL whatever happened).
"""

from __future__ import annotations

import functools

from sqlalchemy import Boolean, bindparam, case, cast, exists, func, or_, select, true
from sqlalchemy.dialects import postgresql, sqlite

from webapp.models import Conversation, InboundMessage, WebhookNonce

_nonces, _threads, _replies = (WebhookNonce.__table__, Conversation.__table__,
                               InboundMessage.__table__)
NONCE_COLUMNS = ("nonce", "body_sha256", "received_at")
THREAD_COLUMNS = ("public_id", "customer", "customer_reversed", "our_number",
                  "last_activity_at", "last_text", "last_direction", "needs_reply", "unread",
                  "created_at")
INBOUND_COLUMNS = ("public_id", "plivo_uuid", "conversation_id", "sender", "recipient", "kind",
                   "text", "media", "intent", "keyword", "units", "total_amount",
                   "powerpack_uuid", "signature_scheme", "received_at")
# What a newer message changes on its thread (an older one arriving late changes nothing).
LATEST = ("last_activity_at", "last_text", "last_direction", "needs_reply")


def _typed(table, name: str, prefix: str = ""):
    return bindparam(prefix + name, type_=table.c[name].type)


def _upsert_thread(insert):
    newer = insert.excluded.last_activity_at >= _threads.c.last_activity_at
    return insert.on_conflict_do_update(
        index_elements=["customer", "our_number"],
        set_={name: case((newer, insert.excluded[name]), else_=_threads.c[name])
              for name in LATEST} | {"unread": true()},
    ).returning(_threads.c.id, _threads.c.created_at)


@functools.cache
def statements(dialect: str) -> dict:
    """nonce, thread and reply, each on its own; on PostgreSQL also `all_in_one`."""
    dml = postgresql if dialect == "postgresql" else sqlite
    built = {
        "nonce": dml.insert(_nonces).values({n: _typed(_nonces, n) for n in NONCE_COLUMNS})
        .on_conflict_do_nothing(index_elements=["nonce"]).returning(_nonces.c.nonce),
        "thread": _upsert_thread(dml.insert(_threads).values(
            {n: _typed(_threads, n) for n in THREAD_COLUMNS})),
        "reply": dml.insert(_replies).values({n: _typed(_replies, n) for n in INBOUND_COLUMNS})
        .on_conflict_do_nothing(index_elements=["plivo_uuid"]).returning(_replies.c.id),
    }
    if dialect == "postgresql":
        built["all_in_one"] = _all_in_one()
    return built


def _values(table, names, prefix: str):
    """A SELECT of typed parameters (INSERT ... SELECT, so that it can depend on a CTE)."""
    return [cast(_typed(table, name, prefix), table.c[name].type) for name in names]


def _all_in_one():
    """Parameters: n_* (n_nonce NULL: no nonce to bind), t_*, r_* (r_conversation_id is
    taken from the thread). Returns nonce_new, stored, thread_id, created_at."""
    pg = postgresql
    new_nonce = (pg.insert(_nonces).from_select(
        list(NONCE_COLUMNS), select(*_values(_nonces, NONCE_COLUMNS, "n_"))
        .where(bindparam("n_nonce", type_=_nonces.c.nonce.type).isnot(None)))
        .on_conflict_do_nothing(index_elements=["nonce"]).returning(_nonces.c.nonce)
        .cte("new_nonce"))
    unbound = bindparam("no_nonce", type_=Boolean)
    thread = _upsert_thread(pg.insert(_threads).from_select(
        list(THREAD_COLUMNS), select(*_values(_threads, THREAD_COLUMNS, "t_"))
        .where(or_(unbound, exists().select_from(new_nonce))))).cte("thread")
    reply_columns = [n for n in INBOUND_COLUMNS if n != "conversation_id"]
    reply = (pg.insert(_replies).from_select(
        [*reply_columns, "conversation_id"],
        select(*_values(_replies, reply_columns, "r_"), thread.c.id).select_from(thread))
        .on_conflict_do_nothing(index_elements=["plivo_uuid"]).returning(_replies.c.id)
        .cte("reply"))
    return select(
        select(func.count()).select_from(new_nonce).scalar_subquery().label("nonce_new"),
        select(func.count()).select_from(reply).scalar_subquery().label("stored"),
        select(thread.c.id).scalar_subquery().label("thread_id"),
        select(thread.c.created_at).scalar_subquery().label("created_at"))
