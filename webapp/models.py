"""Database models, SQLAlchemy 2.0 style. Every timestamp is timezone-aware UTC."""

from __future__ import annotations

import secrets
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    Numeric,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    event,
    false,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from webapp import statuses
from webapp.extensions import db


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """Stores UTC, always hands back an aware datetime (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class User(db.Model):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(10), default="staff")
    is_active: Mapped[bool] = mapped_column(default=True)
    # A password someone else has seen (the first admin's, printed at bootstrap): the
    # person must choose their own before anything else.
    must_change_password: Mapped[bool] = mapped_column(default=False, server_default=false())
    # The IANA time zone this person reads times in; None: DISPLAY_TIMEZONE.
    time_zone: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    ROLES = ("admin", "staff")

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    # Flask-Login protocol
    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def is_anonymous(self) -> bool:
        return False

    def __repr__(self) -> str:
        return f"<User {self.id} {self.role}>"


def new_public_id() -> str:
    return secrets.token_urlsafe(12)


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


class WebhookNonce(db.Model):
    """Each signature nonce seen on a verified callback, bound to the body it came with.

    A signature proves the body only as far as its scheme covers it (V2 covers none of
    it), so a captured nonce must not authorise another body: the same nonce with the
    same body is a retry, with another body a replay. Kept 48 hours (callbacks.forget_expired).
    """

    __tablename__ = "webhook_nonces"

    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    body_sha256: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class RefusedCallbackCount(db.Model):
    """Refused status callbacks counted per source address, hour and reason. Only the
    first few of each hour are kept whole (as refused ledger rows); the rest only count,
    so unsigned traffic cannot grow the database faster than one row per source an hour."""

    __tablename__ = "refused_callback_counts"
    __table_args__ = (UniqueConstraint("source", "hour", "reason",
                                       name="uq_refused_callback_counts"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(45))
    hour: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    reason: Mapped[str] = mapped_column(String(32))
    count: Mapped[int] = mapped_column(Integer, default=0)


class PlivoCircuit(db.Model):
    """Whether Plivo refuses the account itself (401/403, no credit): then sending pauses
    for everyone instead of failing message after message. One row (id 1), shared by
    every process through the database; messages.circuit reads and moves it."""

    __tablename__ = "plivo_circuit"

    id: Mapped[int] = mapped_column(primary_key=True)
    state: Mapped[str] = mapped_column(String(10), default="closed")  # closed | open
    kind: Mapped[str | None] = mapped_column(String(20))  # credentials | credit
    reason: Mapped[str | None] = mapped_column(String(300))
    http_status: Mapped[int | None] = mapped_column(Integer)
    opened_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    next_probe_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    probes: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Media(db.Model):
    """A file a staff member uploaded, as prepared for sending (messages.uploads): checked
    by its content, pictures stripped of metadata and shrunk for carriers, with a small
    thumbnail. Kept in the database so every web worker and machine serves and sends the
    same bytes; one row per distinct file (sha256 of the prepared bytes). Plivo deletes
    media it has not sent within 6 hours, so the file is uploaded to Plivo when a message
    using it is sent, and again when the last upload is older than 5 hours."""

    __tablename__ = "media"

    id: Mapped[int] = mapped_column(primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    content_type: Mapped[str] = mapped_column(String(100))
    data: Mapped[bytes] = mapped_column(LargeBinary)
    size: Mapped[int] = mapped_column(Integer)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    thumbnail: Mapped[bytes | None] = mapped_column(LargeBinary)
    original_name: Mapped[str] = mapped_column(String(255))
    original_size: Mapped[int] = mapped_column(Integer)
    uploaded_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    plivo_media_id: Mapped[str | None] = mapped_column(String(64))
    plivo_uploaded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # How many messages were recorded with it (counted as they are, for the library).
    uses: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class DailyStat(db.Model):
    """The overview's counts: messages per day, sender, current status and error code,
    with what Plivo charged for them. The day is the day the message was recorded, in the
    time zone of `rollup_state.zone` (DISPLAY_TIMEZONE). Recounted from `messages` by
    messages.rollups, never edited by hand; `flask stats rebuild` recounts everything."""

    __tablename__ = "daily_stats"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    created_by_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    status: Mapped[str] = mapped_column(String(16), primary_key=True)
    error_code: Mapped[str] = mapped_column(String(16), primary_key=True)  # "" for none
    messages: Mapped[int] = mapped_column(Integer)
    priced: Mapped[int] = mapped_column(Integer)  # of them, with a cost from Plivo
    cost_micros: Mapped[int] = mapped_column(BigInteger)  # USD millionths: sums exactly


class DailyLatency(db.Model):
    """Time from recording to `delivered` of the messages of one day, as counts per
    bucket of messages.rollups.LATENCY_EDGES (a histogram: percentiles without the rows)."""

    __tablename__ = "daily_latency"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    buckets: Mapped[list[int]] = mapped_column(JSON)


class CallbackHour(db.Model):
    """Status callbacks received per hour and signature scheme (and the reconciler's
    lookups, scheme "lookup"), counted from the ledger by messages.rollups."""

    __tablename__ = "callback_hours"

    hour: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    scheme: Mapped[str] = mapped_column(String(16), primary_key=True)
    count: Mapped[int] = mapped_column(Integer)


class RollupState(db.Model):
    """How far messages.rollups has read (one row, id 1): the last message and ledger row
    it has seen, when, and the time zone its days are in (a new DISPLAY_TIMEZONE
    recounts everything)."""

    __tablename__ = "rollup_state"

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(Integer)
    event_id: Mapped[int] = mapped_column(Integer)
    zone: Mapped[str] = mapped_column(String(64))
    refreshed_at: Mapped[datetime] = mapped_column(UTCDateTime)


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


class UserSession(db.Model):
    """One signed-in browser. The cookie carries a random token; only its sha256 is kept,
    so a copy of the database signs no one in. Ended (never deleted by a request) on sign
    out, on "sign out everywhere else", when a password changes, when an admin ends it,
    or when it was idle for SESSION_IDLE_MINUTES or is 12 hours old."""

    __tablename__ = "user_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_reason: Mapped[str | None] = mapped_column(String(20))
    address: Mapped[str | None] = mapped_column(String(45))
    user_agent: Mapped[str | None] = mapped_column(String(300))


class SecondFactor(db.Model):
    """A second factor a person signs in with. Only TOTP today (`kind` "totp"; the secret
    is the base32 key their authenticator app holds); a security key would be another
    kind with its own columns. Unconfirmed while enrolment waits for the first code.
    `last_used_step`: the 30-second step of the last code accepted, so a code cannot be
    used twice."""

    __tablename__ = "second_factors"
    __table_args__ = (UniqueConstraint("user_id", "kind", name="uq_second_factors_user_kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    kind: Mapped[str] = mapped_column(String(16), default="totp")
    secret: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_step: Mapped[int] = mapped_column(BigInteger, default=0)


class RecoveryCode(db.Model):
    """A single-use code for signing in without the authenticator app; sha256 only (the
    codes are random, 50 bits each, so a slow hash adds nothing)."""

    __tablename__ = "recovery_codes"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class TeamSetting(db.Model):
    """A setting admins change from the dashboard (e.g. `require_two_factor`), one row
    each; the environment can only force a stricter value."""

    __tablename__ = "team_settings"

    name: Mapped[str] = mapped_column(String(50), primary_key=True)
    value: Mapped[str] = mapped_column(String(200))
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    changed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))


class AuditEvent(db.Model):
    """Who did what: one row per security- or money-relevant action, written in the same
    transaction as the action (webapp.audit). Append-only: the app has no path that
    changes or deletes a row, except `flask audit prune` for retention."""

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_at_id", "at", "id"),
        Index("ix_audit_events_actor_at_id", "actor_id", "at", "id"),
        Index("ix_audit_events_action_at_id", "action", "at", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    actor_email: Mapped[str | None] = mapped_column(String(254))  # or the email tried
    action: Mapped[str] = mapped_column(String(40))
    target: Mapped[str | None] = mapped_column(String(300))
    detail: Mapped[dict | None] = mapped_column(JSON)
    address: Mapped[str | None] = mapped_column(String(45))
    user_agent: Mapped[str | None] = mapped_column(String(300))
    request_id: Mapped[str | None] = mapped_column(String(64))


@event.listens_for(AuditEvent, "before_update")
@event.listens_for(AuditEvent, "before_delete")
def _audit_is_append_only(_mapper, _connection, target) -> None:
    raise RuntimeError("the audit log is append-only")


class Batch(db.Model):
    """A send to many (messages.batches): one text (with ((placeholders))) and media, to
    every valid row of an uploaded or pasted list. Its messages are ordinary messages
    with `batch_id` set, recorded together when the batch is confirmed.

    status: awaiting_approval (over the team's ceiling: an admin must approve) ->
    sending <-> paused -> finished (nothing left to hand to Plivo) | cancelled."""

    __tablename__ = "batches"
    __table_args__ = (Index("ix_batches_status_id", "status", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(24), unique=True, default=new_public_id)
    # The draft it was confirmed from: a second confirm finds this batch.
    draft_token: Mapped[str] = mapped_column(String(64), unique=True)
    created_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    name: Mapped[str] = mapped_column(String(255))  # the file's name, or "Pasted list"
    sender: Mapped[str] = mapped_column(String(16))
    text: Mapped[str] = mapped_column(Text, default="")  # with its ((placeholders))
    media: Mapped[list[dict]] = mapped_column(JSON, default=list)
    columns: Mapped[list[str]] = mapped_column(JSON, default=list)
    total: Mapped[int] = mapped_column(Integer)
    estimate_micros: Mapped[int] = mapped_column(BigInteger, default=0)  # USD millionths
    status: Mapped[str] = mapped_column(String(20))
    approved_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    approved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When a dispatch lane last took a message (the recovery sweep restarts lanes that
    # stopped: a killed worker).
    pumped_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    created_by: Mapped[User] = relationship(foreign_keys=[created_by_id])
    approved_by: Mapped[User | None] = relationship(foreign_keys=[approved_by_id])


class BatchDraft(db.Model):
    """A list read and checked but not confirmed (messages.batches): what the preview
    shows and the confirm records. Its rows are kept compressed; drafts older than a day
    are removed by the sweep. Nothing here is a send."""

    __tablename__ = "batch_drafts"

    token: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    name: Mapped[str] = mapped_column(String(255))
    sender: Mapped[str] = mapped_column(String(16))
    text: Mapped[str] = mapped_column(Text, default="")
    media: Mapped[list[dict]] = mapped_column(JSON, default=list)
    data: Mapped[bytes] = mapped_column(LargeBinary)  # zlib-compressed JSON


class OptOut(db.Model):
    """A number that replied STOP: Plivo answered error 200 for a message to it. Batches
    leave it out and single sends to it are refused, until an admin removes it (the
    person texted START)."""

    __tablename__ = "opt_outs"

    number: Mapped[str] = mapped_column(String(16), primary_key=True)
    sender: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    message_public_id: Mapped[str | None] = mapped_column(String(24))
