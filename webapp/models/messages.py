"""A message and its status events (the callback ledger), with the text search index kept
beside them: FTS5 on SQLite, a tsvector column on PostgreSQL."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import (
    JSON,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    event,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from webapp import statuses
from webapp.extensions import db
from webapp.models.base import UTCDateTime, new_public_id, utcnow

if TYPE_CHECKING:
    from webapp.models.users import User


def reversed_digits(number: str) -> str:
    """The digits of a number, last first: '+14155550123' -> '32105551414'. A search for a
    number's last digits is then a prefix range on an index."""
    return "".join(ch for ch in number if ch.isdigit())[::-1]


def _recipient_reversed(context) -> str | None:
    recipient = context.get_current_parameters().get("recipient")
    return reversed_digits(recipient) if recipient else None


class Message(db.Model):
    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("created_by_id", "idempotency_key", "recipient",
                         name="uq_messages_idempotency"),
        # Newest first, whole table or one status or one sender: each walks its index in
        # date order and stops after a page (the id breaks ties and carries the cursor).
        Index("ix_messages_created_at_id", "created_at", "id"),
        Index("ix_messages_status_created_at_id", "status", "created_at", "id"),
        Index("ix_messages_created_by_created_at_id", "created_by_id", "created_at", "id"),
        # A batch's progress (counts by status) and its dispatch (the next waiting one).
        Index("ix_messages_batch_status_id", "batch_id", "status", "id"),
        # A message is sent again at most once (error 420), and its retry is found by it.
        Index("uq_messages_retry_of_id", "retry_of_id", unique=True),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(24), unique=True, default=new_public_id)
    created_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    idempotency_key: Mapped[str] = mapped_column(String(64))
    sender: Mapped[str] = mapped_column(String(16))
    recipient: Mapped[str] = mapped_column(String(16), index=True)
    # Set from `recipient` on every insert through SQLAlchemy; another writer may leave it
    # NULL, and such a row is only missed by the recipient search.
    recipient_reversed: Mapped[str | None] = mapped_column(
        String(16), default=_recipient_reversed, index=True)
    text: Mapped[str] = mapped_column(Text, default="")
    # [{"url": ..., "content_type": ..., "size": ...} | {"media_id": ...}]
    media: Mapped[list[dict]] = mapped_column(JSON, default=list)
    status: Mapped[str] = mapped_column(String(16), default=statuses.PENDING)
    status_sequence: Mapped[int] = mapped_column(Integer, default=0)
    error_code: Mapped[str | None] = mapped_column(String(16))
    error_reason: Mapped[str | None] = mapped_column(Text)
    plivo_uuid: Mapped[str | None] = mapped_column(String(64), unique=True)
    units: Mapped[int | None] = mapped_column(Integer)
    total_amount: Mapped[str | None] = mapped_column(Numeric(12, 5).with_variant(String(20), "sqlite"))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # The reconciler (messages/reconcile.py): when it next asks Plivo about a message
    # that has a uuid but no final status, how often it has, and when it last did.
    next_lookup_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    lookups: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    looked_up_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # An unknown message Plivo's message list shows several candidates for: what it
    # listed ({uuid, time, state}), for a person to choose from on the detail page.
    lookup_candidates: Mapped[list[dict] | None] = mapped_column(JSON)
    last_attempt_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    queued_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    final_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # A send to many (messages.batches): the batch it belongs to, and the values of the
    # recipient's row in the uploaded list ({"name": "Ana", ...}), for the report.
    batch_id: Mapped[int | None] = mapped_column(ForeignKey("batches.id"))
    fields: Mapped[dict | None] = mapped_column(JSON)
    # Plivo's pace (issue 34): not handed to Plivo before this instant (a number's daily
    # cap was reached), and the message this one sends again (error 420, expired in
    # Plivo's queue: sent again once, automatically).
    not_before: Mapped[datetime | None] = mapped_column(UTCDateTime)
    retry_of_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id"))
    # Optimistic locking: every ORM update checks and bumps it, so two callbacks
    # applied at once cannot overwrite each other (the loser retries).
    version: Mapped[int] = mapped_column(Integer, server_default="1")

    __mapper_args__ = {"version_id_col": version}

    created_by: Mapped[User] = relationship()
    events: Mapped[list[StatusEvent]] = relationship(
        back_populates="message", order_by="StatusEvent.received_at"
    )

    def __repr__(self) -> str:
        return f"<Message {self.public_id} {self.status}>"


class StatusEvent(db.Model):
    """The ledger: every accepted (or refused) status callback, stored once."""

    __tablename__ = "status_events"
    # A retried callback is stored once. Refused (forged) callbacks stay out of
    # the unique key, so a forgery cannot take the place of the genuine event.
    __table_args__ = (
        Index("uq_status_events_callback", "plivo_uuid", "status", "sequence", unique=True,
              sqlite_where=text("accepted"), postgresql_where=text("accepted")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    plivo_uuid: Mapped[str] = mapped_column(String(64), index=True)
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id"), index=True)
    status: Mapped[str] = mapped_column(String(32))
    error_code: Mapped[str | None] = mapped_column(String(16))
    sequence: Mapped[int] = mapped_column(Integer, default=0)
    payload: Mapped[dict] = mapped_column(JSON)
    # Which signature proved it: v3, ma-v3, v2; or invalid / missing (kept when refused,
    # or in log-only mode)
    signature_scheme: Mapped[str] = mapped_column(String(16))
    accepted: Mapped[bool] = mapped_column(default=True)
    applied: Mapped[bool] = mapped_column(default=False)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    message: Mapped[Message | None] = relationship(back_populates="events")


# ---- the text search index ---------------------------------------------------------------
# Not columns of the model: SQLite keeps an FTS5 table beside `messages`, kept in step by
# triggers; PostgreSQL a generated tsvector column of the text's words, GIN-indexed. Both
# see the text as its letters and digits only (punctuation splits words, accents are
# folded), so the two databases match the same messages.
# Made here for `create_all` (tests) and by migration 4c8f1d2e7a90 (every real database);
# migrations/env.py keeps them out of the drift check, which cannot compare them.
SEARCH_OBJECTS = ("messages_fts", "ix_messages_text_search", "search_document")


# PostgreSQL: accented Latin letters folded to their base letter (as FTS5's
# remove_diacritics does), then everything but letters and digits made a space.
ACCENTED = (
    "ÀÁÂÃÄÅÇÈÉÊËÌÍÎÏÑÒÓÔÕÖÙÚÛÜÝàáâãäåçèéêëìíîïñòóôõöùúûüýÿĀāĂăĄąĆ"
    "ćĈĉĊċČčĎďĒēĔĕĖėĘęĚěĜĝĞğĠġĢģĤĥĨĩĪīĬĭĮįİĴĵĶķĹĺĻļĽľŃńŅņŇňŌōŎŏŐő"
    "ŔŕŖŗŘřŚśŜŝŞşŠšŢţŤťŨũŪūŬŭŮůŰűŲųŴŵŶŷŸŹźŻżŽžƠơƯưǍǎǏǐǑǒǓǔǕǖǗǘǙǚǛ"
    "ǜǞǟǠǡǦǧǨǩǪǫǬǭǰǴǵǸǹǺǻȀȁȂȃȄȅȆȇȈȉȊȋȌȍȎȏȐȑȒȓȔȕȖȗȘșȚțȞȟȦȧȨȩȪȫȬȭȮȯ"
    "ȰȱȲȳ"
)


UNACCENTED = (
    "AAAAAACEEEEIIIINOOOOOUUUUYaaaaaaceeeeiiiinooooouuuuyyAaAaAaC"
    "cCcCcCcDdEeEeEeEeEeGgGgGgGgHhIiIiIiIiIJjKkLlLlLlNnNnNnOoOoOo"
    "RrRrRrSsSsSsSsTtTtUuUuUuUuUuUuWwYyYZzZzZzOoUuAaIiOoUuUuUuUuU"
    "uAaAaGgKkOoOojGgNnAaAaAaEeEeIiIiOoOoRrRrUuUuSsTtHhAaEeOoOoOo"
    "OoYy"
)


PG_SEARCH_DOCUMENT = ("to_tsvector('simple'::regconfig, regexp_replace(translate({column}, "
                      f"'{ACCENTED}', '{UNACCENTED}'), '[^[:alnum:]]+', ' ', 'g'))")


SEARCH_DDL = {
    "sqlite": [
        "CREATE VIRTUAL TABLE messages_fts USING fts5(text, content='messages', "
        "content_rowid='id', tokenize='unicode61 remove_diacritics 2')",
        "CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN "
        "INSERT INTO messages_fts(rowid, text) VALUES (new.id, new.text); END",
        "CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN "
        "INSERT INTO messages_fts(messages_fts, rowid, text) VALUES ('delete', old.id, old.text); END",
        "CREATE TRIGGER messages_fts_update AFTER UPDATE OF text ON messages BEGIN "
        "INSERT INTO messages_fts(messages_fts, rowid, text) VALUES ('delete', old.id, old.text); "
        "INSERT INTO messages_fts(rowid, text) VALUES (new.id, new.text); END",
    ],
    # A stored column rather than an index on the expression: a search that walks the
    # date index (a common word) or rechecks a phrase reads it instead of computing it
    # again per row (990 ms rather than 20 for a phrase in a measured run).
    "postgresql": [
        "ALTER TABLE messages ADD COLUMN search_document tsvector GENERATED ALWAYS AS "
        f"({PG_SEARCH_DOCUMENT.format(column='text')}) STORED",
        "CREATE INDEX ix_messages_text_search ON messages USING gin (search_document)",
    ],
}


# PostgreSQL: a message's media, one per line, as export._media() writes them, for the
# export's COPY. A function rather than the same subquery inline: a correlated subquery
# in the select list cost the export a second per million rows even where it never ran
# (no row of the million had media).
MEDIA_LINES_FUNCTION = (
    "CREATE FUNCTION messages_media_lines(media json) RETURNS text LANGUAGE sql IMMUTABLE "
    "STRICT PARALLEL SAFE AS $$ SELECT string_agg(COALESCE(NULLIF(item.value ->> 'url', ''), "
    "CASE WHEN item.value ->> 'upload' IS NOT NULL THEN 'file ' || COALESCE(item.value ->> "
    "'name', '') ELSE 'media id ' || COALESCE(item.value ->> 'media_id', '') END), E'\\n' "
    "ORDER BY item.ordinality) FROM json_array_elements(media) WITH ORDINALITY AS item $$")


@event.listens_for(Message.__table__, "after_create")
def _create_search_index(table, connection, **_kw) -> None:
    for statement in SEARCH_DDL.get(connection.dialect.name, []):
        connection.exec_driver_sql(statement)
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(MEDIA_LINES_FUNCTION)


@event.listens_for(Message.__table__, "before_drop")
def _drop_search_index(table, connection, **_kw) -> None:
    if connection.dialect.name == "sqlite":
        connection.exec_driver_sql("DROP TABLE IF EXISTS messages_fts")
    else:
        connection.exec_driver_sql("DROP FUNCTION IF EXISTS messages_media_lines(json)")

