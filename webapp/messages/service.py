"""Messages: create, dispatch, apply statuses. Views and tasks call this; it owns the rules."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from flask import current_app
from limits import RateLimitItemPerSecond
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter
from sqlalchemy import Boolean, bindparam, case, exists, func, select, tuple_, update
from sqlalchemy.dialects import postgresql as postgresql_dml
from sqlalchemy.dialects import sqlite as sqlite_dml
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.exc import StaleDataError
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt
from tenacity import stop_after_delay as tenacity_stop_after_delay

from .. import plivo_gateway as gateway
from .. import statuses
from ..auth.service import Actor
from ..config import Settings, current_settings
from ..extensions import db
from ..logs import event
from ..models import Message, StatusEvent, utcnow
from ..tasks import enqueue_dispatch
from .media import check_media

log = logging.getLogger(__name__)
T = TypeVar("T")


# ---- create -------------------------------------------------------------------------------
@dataclass(frozen=True)
class SendRequest:
    sender: str
    recipients: list[str]
    text: str
    media: list[dict]  # {"url", "content_type", "size"} or {"media_id"}
    idempotency_key: str


def messages_for_key(user: Actor, key: str) -> list[Message]:
    return list(db.session.scalars(
        select(Message).where(Message.created_by_id == user.id, Message.idempotency_key == key)
        .order_by(Message.id)))


_messages = Message.__table__
_KEY_USED = select(_messages.c.id).where(
    _messages.c.created_by_id == bindparam("user_id"),
    _messages.c.idempotency_key == bindparam("key")).limit(1)


def key_used(user: Actor, key: str) -> bool:
    """Whether this person already sent with this idempotency key (one indexed lookup)."""
    return db.session.connection().execute(
        _KEY_USED, {"user_id": user.id, "key": key}).first() is not None


@dataclass(frozen=True)
class Draft:
    """A compose form that passed its own checks; media not probed yet."""

    sender: str
    recipients: list[str]
    text: str
    media: list[tuple[str, str]]  # ("url", url) or ("media_id", id)
    idempotency_key: str


@dataclass(frozen=True)
class Submission:
    errors: list[str]  # media problems: nothing was recorded
    warnings: list[str]  # recorded and queued, but worth a look


def submit(user: Actor, draft: Draft) -> Submission:
    """Probe the media, then record and queue one message per recipient.

    A key already sent records nothing and probes nothing (a double click or a
    refresh); media a person must fix records nothing either.
    """
    if key_used(user, draft.idempotency_key):
        return Submission(errors=[], warnings=[])
    settings = current_settings()
    media, warnings, errors = check_media(
        draft.media, enabled=settings.media_probe, allow_hosts=settings.media_probe_allow_hosts,
        timeout=settings.probe_timeout_seconds)
    if errors:
        return Submission(errors=errors, warnings=[])
    create_messages(user, SendRequest(sender=draft.sender, recipients=draft.recipients,
                                      text=draft.text, media=media,
                                      idempotency_key=draft.idempotency_key))
    return Submission(errors=[], warnings=warnings)


def create_messages(user: Actor, send: SendRequest) -> tuple[list[Message], bool]:
    """Record one pending message per recipient, then queue each for sending.

    Returns (messages, created). The same idempotency key again returns the
    messages of the first request and creates nothing (the unique key on
    creator, key and recipient decides, so concurrent posts are safe too).
    """
    rows = [
        Message(created_by_id=user.id, idempotency_key=send.idempotency_key, sender=send.sender,
                recipient=recipient, text=send.text, media=send.media)
        for recipient in send.recipients
    ]
    by = user.email
    db.session.add_all(rows)
    try:
        db.session.flush()
        # Read before the commit expires them: no reload SELECT per message.
        created = [(message.id, message.public_id) for message in rows]
        db.session.commit()
    except IntegrityError:
        # This key was sent before, or another request with it won the race.
        db.session.rollback()
        return messages_for_key(user, send.idempotency_key), False
    event(log, "messages created", count=len(rows), by=by, key=send.idempotency_key)
    for message_id, public_id in created:
        try:
            enqueue_dispatch(message_id)
        except Exception:  # queue down: the row stays pending; the recovery sweep queues it later
            log.exception("could not queue message %s", public_id)
    return rows, True


# ---- dispatch -----------------------------------------------------------------------------
class DispatchLimiter:
    """Plivo's limits, shared by every dispatch in this process (and across
    processes when the storage is Redis): a moving window of requests per 5 s,
    and a cap on requests in flight."""

    def __init__(self, storage_uri: str, per_5s: int, max_in_flight: int) -> None:
        self._window = MovingWindowRateLimiter(storage_from_string(storage_uri))
        self._item = RateLimitItemPerSecond(per_5s, 5)
        self._in_flight = threading.BoundedSemaphore(max_in_flight)

    @contextmanager
    def slot(self, sleep: Callable[[float], None] = time.sleep,
             prepare: Callable[[], None] | None = None):
        """Wait until the window has room, run `prepare`, take the room, send.

        The room is counted only after `prepare` (the database claim), so the
        time between counting a request and Plivo receiving it is the HTTP
        request alone. Counted before a claim that took 200 ms under load, 301
        requests reached the simulator within 5 s at a budget of 290.
        """
        with self._in_flight:
            while not self._window.test(self._item, "plivo-send"):
                self._sleep_until_room(sleep)
            if prepare is not None:
                prepare()
            while not self._window.hit(self._item, "plivo-send"):  # another worker took it
                self._sleep_until_room(sleep)
            yield

    def _sleep_until_room(self, sleep: Callable[[float], None]) -> None:
        reset_at, _ = self._window.get_window_stats(self._item, "plivo-send")
        sleep(min(max(0.01, reset_at - time.time()), 5.0))


_limiter_lock = threading.Lock()


def _dispatch_limiter(settings: Settings) -> DispatchLimiter:
    """The one limiter of this app, made on first use (worker threads race for it)."""
    with _limiter_lock:
        limiter = current_app.extensions.get("dispatch_limiter")
        if limiter is None:
            limiter = DispatchLimiter(settings.ratelimit_storage_uri, settings.send_rate_per_5s,
                                      settings.send_max_in_flight)
            current_app.extensions["dispatch_limiter"] = limiter
        return limiter


@dataclass
class RetryPolicy:
    """Full-jitter exponential backoff; injectable clock and randomness for tests."""

    attempts: int = 5
    base_seconds: float = 2.0
    cap_seconds: float = 60.0
    within_seconds: float = 120.0
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random = field(default_factory=random.Random)

    def wait(self, state: RetryCallState) -> float:
        ceiling = min(self.cap_seconds, self.base_seconds * 2 ** (state.attempt_number - 1))
        delay = self.rng.uniform(0, ceiling)
        exc = state.outcome.exception() if state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        return max(delay, retry_after or 0.0)


def gateway_config(settings: Settings) -> gateway.GatewayConfig:
    return gateway.GatewayConfig(
        auth_id=settings.plivo_auth_id, auth_token=settings.plivo_auth_token,
        api_url=settings.plivo_api_url, connect_timeout=settings.plivo_connect_timeout_seconds,
        read_timeout=settings.plivo_read_timeout_seconds)


class _ClaimedElsewhere(Exception):
    """Another worker took this message first."""


def _claim(message_id: int) -> bool:
    """Take a pending message for sending; False if another worker has it."""
    result = db.session.execute(
        update(Message)
        .where(Message.id == message_id, Message.status == statuses.PENDING,
               Message.attempts == 0)
        .values(attempts=1, updated_at=utcnow()))
    db.session.commit()
    return result.rowcount == 1


def dispatch_message(message_id: int, policy: RetryPolicy | None = None) -> None:
    """Send one pending message through Plivo and record the outcome.

    Retries only where Plivo cannot have acted (connect errors, 429, 5xx).
    A 4xx makes the message `error`; a timeout after sending makes it
    `unknown`, never resent automatically.
    """
    policy = policy or RetryPolicy()
    message = db.session.get(Message, message_id)
    if message is None or message.status != statuses.PENDING or message.attempts:
        return
    settings = current_settings()
    config = gateway_config(settings)
    limiter = _dispatch_limiter(settings)
    # Everything the request needs is read before the claim, so nothing but
    # the request itself stands between the claim and Plivo.
    request = {"src": message.sender, "dst": message.recipient, "text": message.text,
               "media_urls": [m["url"] for m in message.media if "url" in m],
               "media_ids": [m["media_id"] for m in message.media if "media_id" in m],
               "callback_url": settings.status_callback_url}
    gateway.warm_up(config)
    tries = 0

    def claim_or_count() -> None:
        # Claim (or count) right before the request, after any wait: a worker
        # killed before this leaves a message the recovery sweep may safely
        # queue again; after it, the send is ambiguous.
        if tries == 1:
            if not _claim(message_id):
                raise _ClaimedElsewhere
        else:
            message.attempts = tries
            db.session.commit()

    def attempt() -> str:
        nonlocal tries
        tries += 1
        with limiter.slot(policy.sleep, prepare=claim_or_count):
            return gateway.send_mms(config, **request)

    def note_retry(state: RetryCallState) -> None:
        exc = state.outcome.exception()
        message.last_attempt_error = str(exc)
        db.session.commit()
        event(log, "send will be retried", logging.WARNING, message=message.public_id,
              attempt=state.attempt_number, error=str(exc))

    retrying = Retrying(
        retry=retry_if_exception_type(gateway.PlivoRetryable),
        stop=stop_after_attempt(policy.attempts)
        | tenacity_stop_after_delay(policy.within_seconds),
        wait=policy.wait, sleep=policy.sleep, before_sleep=note_retry, reraise=True)
    try:
        plivo_uuid = retrying(attempt)
    except _ClaimedElsewhere:
        return
    except gateway.PlivoRejected as exc:
        outcome = (statuses.ERROR, f"Plivo refused the message: {exc.reason}")
    except gateway.PlivoRetryable as exc:
        outcome = (statuses.ERROR, f"Plivo was unavailable after {tries} attempts "
                                   f"({exc.reason}); nothing was sent.")
    except gateway.PlivoAmbiguous as exc:
        outcome = (statuses.UNKNOWN, exc.reason)
    else:
        record_uuid(message, plivo_uuid)
        return
    # The dispatch knows best: it wins over a recovery sweep that raced it.
    retry_on_conflict(lambda: _finish_without_uuid(message, *outcome))


def _finish_without_uuid(message: Message, status: str, reason: str) -> None:
    message.status = status
    message.error_reason = reason
    message.last_attempt_error = reason
    if statuses.is_final(status):
        message.final_at = utcnow()
    db.session.commit()
    event(log, "send ended without a message id", logging.WARNING, message=message.public_id,
          status=status, reason=reason)


def retry_on_conflict(change: Callable[[], T], attempts: int = 5) -> T:
    """Run a read-modify-write of messages again when another writer got there first.

    Message carries a version column; a stale ORM update raises StaleDataError:
    roll back, read again, decide again.
    """
    for attempt in range(attempts):
        try:
            return change()
        except StaleDataError:
            db.session.rollback()
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def record_uuid(message: Message, plivo_uuid: str) -> None:
    """Plivo accepted the message: store its uuid, then apply any callbacks
    that arrived before we knew it."""
    retry_on_conflict(lambda: _record_uuid(message, plivo_uuid))
    event(log, "message accepted by Plivo", message=message.public_id, plivo_uuid=plivo_uuid)
    retry_on_conflict(lambda: adopt_early_events(message))


def _record_uuid(message: Message, plivo_uuid: str) -> None:
    message.plivo_uuid = plivo_uuid
    message.last_attempt_error = None
    if statuses.should_apply(message.status, message.status_sequence, statuses.QUEUED, 0):
        message.status = statuses.QUEUED
        message.queued_at = message.queued_at or utcnow()
    db.session.commit()


def adopt_early_events(message: Message) -> None:
    early = list(db.session.scalars(
        select(StatusEvent).where(StatusEvent.plivo_uuid == message.plivo_uuid,
                                  StatusEvent.message_id.is_(None), StatusEvent.accepted)
        .order_by(StatusEvent.sequence)))
    for status_event in early:
        status_event.message_id = message.id
        status_event.applied = apply_status_event(message, status_event)
    if early:
        db.session.commit()


# ---- statuses -----------------------------------------------------------------------------
def _parse_plivo_time(value: str | None) -> datetime | None:
    if not value:
        return None
    for fmt in ("%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S"):
        try:
            return datetime.strptime(value, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    return None


# Of what a callback writes, these keep the value they have once set.
_FIRST_VALUE_STAYS = ("queued_at", "sent_at")


def _callback_values(status: str, sequence: int, error_code: str | None,
                     payload: Mapping[str, str], now: datetime) -> dict[str, Any]:
    """The columns a callback writes when it applies. None keeps the column as it is;
    for _FIRST_VALUE_STAYS a value already set stays. Read from the callback alone, so
    the same values serve the ORM (status_change) and the one-statement write (SQL)."""
    error = error_code if error_code and error_code not in ("000", "0") else None
    units = payload.get("Units") or ""
    sends = statuses.rank(status) >= statuses.rank(statuses.SENT) and status != statuses.FAILED
    return {
        "status": status, "status_sequence": sequence,
        "error_code": error, "error_reason": statuses.explain_error_code(error),
        "units": int(units) if units.isdigit() else None,
        "total_amount": (payload.get("TotalAmount") or "")[:20] or None,
        "queued_at": _parse_plivo_time(payload.get("QueuedTime")) or now,
        "sent_at": (_parse_plivo_time(payload.get("SentTime")) or now) if sends else None,
        "final_at": ((_parse_plivo_time(payload.get("DeliveryReportTime")) or now)
                     if statuses.is_final(status) else None),
    }


def status_change(message, status: str, sequence: int, error_code: str | None,
                  payload: Mapping[str, str], now: datetime) -> dict[str, Any] | None:
    """The column values a callback sets on its message, or None when the state
    machine keeps the message as it is. `message` is a Message or a row with
    status, status_sequence, queued_at and sent_at."""
    if status not in statuses.CALLBACK_STATUSES or not statuses.should_apply(
            message.status, message.status_sequence, status, sequence):
        return None
    changes = {}
    for name, value in _callback_values(status, sequence, error_code, payload, now).items():
        if name in _FIRST_VALUE_STAYS:
            changes[name] = getattr(message, name) or value
        elif value is not None:
            changes[name] = value
    return changes


def apply_status_event(message: Message, status_event: StatusEvent) -> bool:
    """Apply one ledger row to its (ORM) message; True if it changed it."""
    changes = status_change(message, status_event.status, status_event.sequence,
                            status_event.error_code, status_event.payload, utcnow())
    for column, value in (changes or {}).items():
        setattr(message, column, value)
    return changes is not None


def recover_stalled(lease_seconds: int) -> dict[str, int]:
    """Repair what a dead queue or a killed worker left behind. Safe to run anywhere, often.

    - pending and never tried, older than the lease: queue again (the queue lost
      the task, or was down when the message was recorded);
    - claimed by a worker but never answered, older than the lease: the worker
      died mid-send. If Plivo's callbacks for this recipient arrived meanwhile,
      they name the uuid: adopt it. Otherwise the message becomes `unknown`,
      never resent blindly.
    """
    cutoff = utcnow() - timedelta(seconds=lease_seconds)
    counts = {"requeued": 0, "adopted": 0, "unknown": 0}
    never_tried = list(db.session.scalars(select(Message.id).where(
        Message.status == statuses.PENDING, Message.attempts == 0, Message.created_at < cutoff)))
    for message_id in never_tried:
        enqueue_dispatch(message_id)
    counts["requeued"] = len(never_tried)
    stalled = list(db.session.scalars(select(Message).where(
        Message.status == statuses.PENDING, Message.attempts > 0,
        Message.plivo_uuid.is_(None), Message.updated_at < cutoff)))
    if not stalled:
        return counts
    orphans = list(db.session.scalars(select(StatusEvent).where(
        StatusEvent.message_id.is_(None), StatusEvent.accepted,
        StatusEvent.received_at >= min(m.created_at for m in stalled))))
    for message in stalled:
        match = next((e for e in orphans
                      if e.payload.get("To") == message.recipient.lstrip("+")
                      and e.payload.get("From") == message.sender.lstrip("+")
                      and e.received_at >= message.created_at
                      and _message_by_uuid(e.plivo_uuid) is None), None)
        if match is not None:
            record_uuid(message, match.plivo_uuid)
            counts["adopted"] += 1
        else:
            try:
                _finish_without_uuid(message, statuses.UNKNOWN,
                                     "The sending worker stopped mid-request; Plivo may or may "
                                     "not have the message. Check before sending again.")
            except StaleDataError:  # the worker was only slow, and has just finished
                db.session.rollback()
                continue
            counts["unknown"] += 1
    return counts


# ---- status callbacks ---------------------------------------------------------------------
@dataclass(frozen=True)
class Callback:
    plivo_uuid: str
    status: str
    sequence: int
    error_code: str | None


def parse_callback(payload: dict[str, str]) -> Callback:
    """The fields we act on, checked. Raises ValueError naming what is wrong."""
    plivo_uuid = (payload.get("MessageUUID") or "").strip()
    status = (payload.get("Status") or "").strip().lower()
    if not plivo_uuid or len(plivo_uuid) > 64:
        raise ValueError("MessageUUID is missing or too long")
    if not status or len(status) > 32 or not status.replace("_", "").isalpha():
        raise ValueError("Status is missing or malformed")
    raw_sequence = (payload.get("Sequence") or "0").strip()
    if not raw_sequence.isdigit() or len(raw_sequence) > 9:
        raise ValueError("Sequence must be a whole number")
    error_code = (payload.get("ErrorCode") or "").strip()[:16] or None
    return Callback(plivo_uuid, status, int(raw_sequence), error_code)


def _message_by_uuid(plivo_uuid: str) -> Message | None:
    return db.session.scalar(select(Message).where(Message.plivo_uuid == plivo_uuid))


def record_status_callback(callback: Callback, payload: dict[str, str], signature: str) -> str:
    """Store a callback in the ledger once and apply it.

    Returns "applied", "recorded" (kept, status unchanged: older, unknown
    status, or the message does not know its uuid yet) or "duplicate".

    The hottest write path of the app, so one prebuilt Core statement rather than
    the ORM: the state machine's order is a condition of the UPDATE itself
    (_APPLY_CALLBACK), so the database decides on the message's latest state, under
    its row lock, and nothing is read first. PostgreSQL runs the update and the ledger
    insert as one statement (_RECORD_IN_ONE), SQLite in one short transaction.
    """
    now = utcnow()
    values = _callback_values(callback.status, callback.sequence, callback.error_code,
                              payload, now)
    params = {f"cb_{name}": value for name, value in values.items()}
    params.update(cb_plivo_uuid=callback.plivo_uuid, cb_new_rank=statuses.rank(callback.status),
                  cb_applies=callback.status in statuses.CALLBACK_STATUSES, cb_now=now)
    ledger = {"plivo_uuid": callback.plivo_uuid, "status": callback.status,
              "sequence": callback.sequence, "error_code": callback.error_code,
              "payload": payload, "signature": signature, "accepted": True, "received_at": now}
    if db.engine.dialect.name == "postgresql":
        updated, inserted, message_id = _record_in_one(params, ledger)
    else:
        updated, inserted, message_id = _record_in_a_transaction(params, ledger)
    if not inserted:
        if updated:  # an identical callback, posted twice at once, was recorded early
            event(log, "status applied; its ledger row came from a concurrent duplicate",
                  plivo_uuid=callback.plivo_uuid, status=callback.status)
            return "applied"
        return "duplicate"  # Plivo retried a callback we already hold
    if updated:
        return "applied"
    if message_id is not None:
        return "recorded"
    # The dispatch may have stored the uuid between our statement and its commit;
    # whichever of the two commits last adopts the event.
    message = _message_by_uuid(callback.plivo_uuid)
    if message is None:
        return "recorded"
    retry_on_conflict(lambda: adopt_early_events(message))
    return "applied"


# Built once: constructing statements costs more than running them on this path.
_ledger = StatusEvent.__table__


def _typed(table, name: str, prefix: str = ""):
    return bindparam(prefix + name, type_=table.c[name].type)


# statuses.should_apply as SQL: (rank, sequence) must rise. `applies` is False for
# statuses a callback may not set; a callback the ledger already holds changes nothing
# (a Plivo retry of one recorded before its message knew its uuid is adopted, not
# applied twice).
_HELD = exists().where(_ledger.c.plivo_uuid == bindparam("cb_plivo_uuid"),
                       _ledger.c.status == bindparam("cb_status"),
                       _ledger.c.sequence == bindparam("cb_status_sequence"), _ledger.c.accepted)
_RANK = case(statuses.RANKS, value=_messages.c.status, else_=statuses.UNRANKED)
_APPLY_CALLBACK = (
    update(_messages)
    .where(_messages.c.plivo_uuid == bindparam("cb_plivo_uuid"),
           bindparam("cb_applies", type_=Boolean), ~_HELD,
           tuple_(_RANK, func.coalesce(_messages.c.status_sequence, 0))
           < tuple_(bindparam("cb_new_rank"), bindparam("cb_status_sequence")))
    .values(version=_messages.c.version + 1, **{
        name: (func.coalesce(_messages.c[name], _typed(_messages, name, "cb_"))
               if name in _FIRST_VALUE_STAYS
               else func.coalesce(_typed(_messages, name, "cb_"), _messages.c[name]))
        for name in ("error_code", "error_reason", "units", "total_amount", "queued_at",
                     "sent_at", "final_at")},
        status=bindparam("cb_status"), status_sequence=bindparam("cb_status_sequence"),
        updated_at=bindparam("cb_now", type_=_messages.c.updated_at.type)))
_MESSAGE_ID = select(_messages.c.id).where(_messages.c.plivo_uuid == bindparam("cb_plivo_uuid"))
_LEDGER_COLUMNS = ("plivo_uuid", "message_id", "status", "sequence", "error_code", "payload",
                   "signature", "accepted", "applied", "received_at")


def _insert_ledger(dml, values=None):
    return (dml.insert(_ledger).values(values or {name: _typed(_ledger, name, "ledger_")
                                                  for name in _LEDGER_COLUMNS})
            .on_conflict_do_nothing(index_elements=["plivo_uuid", "status", "sequence"],
                                    index_where=_ledger.c.accepted))


# PostgreSQL: one autocommit statement. The UPDATE waits for a concurrent writer's row
# lock and then checks its condition again on the row as that writer left it; the
# ledger row is written with what the UPDATE did.
_CHANGED = _APPLY_CALLBACK.returning(_messages.c.id).cte("changed")
_RECORDED = _insert_ledger(postgresql_dml, {
    **{name: _typed(_ledger, name, "ledger_")
       for name in _LEDGER_COLUMNS if name not in ("message_id", "applied")},
    "message_id": _MESSAGE_ID.scalar_subquery(),
    "applied": exists().select_from(_CHANGED),
}).returning(_ledger.c.id).cte("recorded")
_RECORD_IN_ONE = select(
    select(func.count()).select_from(_CHANGED).scalar_subquery().label("updated"),
    select(func.count()).select_from(_RECORDED).scalar_subquery().label("inserted"),
    _MESSAGE_ID.scalar_subquery().label("message_id"))
_INSERT_LEDGER_SQLITE = _insert_ledger(sqlite_dml)


def _ledger_params(ledger: dict[str, Any]) -> dict[str, Any]:
    return {f"ledger_{name}": value for name, value in ledger.items()}


def _record_in_one(params: dict, ledger: dict) -> tuple[bool, bool, int | None]:
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        updated, inserted, message_id = connection.execute(
            _RECORD_IN_ONE, {**params, **_ledger_params(ledger)}).one()
    return bool(updated), bool(inserted), message_id


def _record_in_a_transaction(params: dict, ledger: dict) -> tuple[bool, bool, int | None]:
    # A pooled connection of its own, not the ORM session: one short transaction
    # needs none of the session's bookkeeping. Leaving the block uncommitted rolls back.
    with db.engine.connect() as connection:
        updated = connection.execute(_APPLY_CALLBACK, params).rowcount == 1
        message_id = connection.execute(_MESSAGE_ID, params).scalar()
        inserted = connection.execute(_INSERT_LEDGER_SQLITE, _ledger_params(
            {**ledger, "message_id": message_id, "applied": updated})).rowcount == 1
        if not inserted:
            return False, False, message_id  # nothing changes: the update goes too
        connection.commit()
    return updated, True, message_id


def record_refused_callback(payload: dict[str, str], signature: str) -> None:
    """Keep a refused callback in the ledger for inspection; it changes nothing."""
    plivo_uuid = (payload.get("MessageUUID") or "")[:64]
    if not plivo_uuid:
        return
    db.session.add(StatusEvent(
        plivo_uuid=plivo_uuid, message_id=None, status=(payload.get("Status") or "")[:32],
        sequence=0, error_code=None, payload=payload, signature=signature, accepted=False))
    db.session.commit()
