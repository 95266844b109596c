"""Status callbacks: parse, keep in the ledger once, apply by the state machine.

Also where a message learns its Plivo uuid (record_uuid), since that is when callbacks
that arrived before it (early events) are adopted. The write of a callback itself is
prebuilt SQL in callbacks/sql.py; this module decides what it writes.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm.exc import StaleDataError

from webapp import statuses
from webapp.callbacks import sql as callback_sql
from webapp.config import current_settings
from webapp.extensions import db
from webapp.logs import event
from webapp.messages import opt_outs
from webapp.models import Message, StatusEvent, WebhookNonce, utcnow

log = logging.getLogger(__name__)
T = TypeVar("T")


class CallbackOutcome(StrEnum):
    APPLIED = "applied"  # the message's status changed
    RECORDED = "recorded"  # kept; status unchanged (older, unknown status, uuid not known yet)
    DUPLICATE = "duplicate"  # Plivo retried a callback the ledger already holds
    REPLAYED = "replayed"  # a nonce seen before with another body: refused, nothing written
    UNCONFIRMED = "unconfirmed"  # V2-signed: kept, applied only once Plivo's API agrees


@dataclass(frozen=True)
class Callback:
    plivo_uuid: str
    status: str
    sequence: int
    error_code: str | None


def parse_callback(payload: Mapping[str, str]) -> Callback:
    """The fields we act on, checked. Raises ValueError naming what is wrong."""
    plivo_uuid = (payload.get("MessageUUID") or "").strip()
    status = (payload.get("Status") or "").strip().lower()
    if not plivo_uuid or len(plivo_uuid) > 64:
        raise ValueError("MessageUUID is missing or too long")
    if not status or len(status) > 32 or not status.replace("_", "").isalpha():
        raise ValueError("Status is missing or malformed")
    raw_sequence = (payload.get("Sequence") or "0").strip()
    if not _DIGITS.fullmatch(raw_sequence):
        raise ValueError("Sequence must be a whole number")
    error_code = (payload.get("ErrorCode") or "").strip()[:16] or None
    return Callback(plivo_uuid, status, int(raw_sequence), error_code)


# Numbers as Plivo writes them: ASCII digits only ("²".isdigit() is True), bounded so the
# columns hold them. What does not parse stays in the ledger's raw payload only.
_DIGITS = re.compile(r"[0-9]{1,9}")
_AMOUNT = re.compile(r"[0-9]{1,7}(\.[0-9]{1,5})?")


def _parse_plivo_time(value: str | None) -> datetime | None:
    if not value:
        return None
    for fmt in ("%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S"):
        try:
            return datetime.strptime(value[:40], fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    return None


def callback_values(status: str, error_code: str | None, payload: Mapping[str, str],
                    now: datetime) -> dict[str, Any]:
    """The columns of callback_sql.WRITTEN a callback writes when it applies, read from
    the callback alone. None keeps the column as it is; of statuses.FIRST_VALUE_STAYS a
    value already set stays. The same values serve the ORM (status_change) and the SQL."""
    error = error_code if error_code and error_code not in ("000", "0") else None
    units = (payload.get("Units") or "").strip()
    amount = (payload.get("TotalAmount") or "").strip()
    sends = statuses.rank(status) >= statuses.rank(statuses.SENT) and status != statuses.FAILED
    return {
        "error_code": error, "error_reason": statuses.explain_error_code(error),
        "units": int(units) if _DIGITS.fullmatch(units) else None,
        "total_amount": amount if _AMOUNT.fullmatch(amount) else None,
        "queued_at": _parse_plivo_time(payload.get("QueuedTime")) or now,
        "sent_at": (_parse_plivo_time(payload.get("SentTime")) or now) if sends else None,
        "final_at": ((_parse_plivo_time(payload.get("DeliveryReportTime")) or now)
                     if statuses.is_final(status) else None),
    }


def status_change(message, status: str, sequence: int, error_code: str | None,
                  payload: Mapping[str, str], now: datetime) -> dict[str, Any] | None:
    """What a callback sets on its message when applied through the ORM (early events),
    or None when the state machine keeps the message as it is. The same decision as
    callback_sql.APPLY_CALLBACK's. `message` is a Message or a row with status,
    status_sequence and the statuses.FIRST_VALUE_STAYS columns."""
    if not statuses.callback_applies(message.status, message.status_sequence, status, sequence):
        return None
    changes: dict[str, Any] = {"status": status, "status_sequence": sequence}
    for name, value in callback_values(status, error_code, payload, now).items():
        if name in statuses.FIRST_VALUE_STAYS:
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


def message_by_uuid(plivo_uuid: str) -> Message | None:
    return db.session.scalar(select(Message).where(Message.plivo_uuid == plivo_uuid))


def record_status_callback(callback: Callback, payload: dict[str, str],
                           signature_scheme: str, nonce: str | None = None,
                           body_sha256: str | None = None) -> CallbackOutcome:
    """Store a callback in the ledger once and apply it (one statement, callback_sql).

    With `nonce` (from a verified signature) and the body's digest, the nonce is bound to
    the body: seen before with the same body it is a duplicate, with another a replay."""
    now = utcnow()
    params = callback_sql.apply_params(
        plivo_uuid=callback.plivo_uuid, status=callback.status, sequence=callback.sequence,
        values=callback_values(callback.status, callback.error_code, payload, now), now=now)
    ledger = {"plivo_uuid": callback.plivo_uuid, "status": callback.status,
              "sequence": callback.sequence, "error_code": callback.error_code,
              "payload": payload, "signature_scheme": signature_scheme, "accepted": True,
              "received_at": now}
    bound = ({"nonce": nonce, "body_sha256": body_sha256, "received_at": now}
             if nonce else None)
    written = callback_sql.write_callback(params, ledger, bound)
    if not written.nonce_new:
        return nonce_outcome(nonce, body_sha256)
    if written.inserted and (callback.error_code or "").lstrip("0") == opt_outs.OPTED_OUT_CODE:
        _note_opt_out(callback.plivo_uuid, payload)
    if not written.inserted:
        if written.updated:  # an identical callback, posted twice at once, was recorded early
            event(log, "status applied; its ledger row came from a concurrent duplicate",
                  plivo_uuid=callback.plivo_uuid, status=callback.status)
            return CallbackOutcome.APPLIED
        return CallbackOutcome.DUPLICATE
    if written.updated:
        return CallbackOutcome.APPLIED
    if written.message_id is not None:
        return CallbackOutcome.RECORDED
    # The dispatch may have stored the uuid between our statement and its commit;
    # whichever of the two commits last adopts the event.
    message = message_by_uuid(callback.plivo_uuid)
    if message is None:
        return CallbackOutcome.RECORDED
    retry_on_conflict(lambda: adopt_early_events(message))
    return CallbackOutcome.APPLIED


def _note_opt_out(plivo_uuid: str, payload: Mapping[str, str]) -> None:
    """Plivo says the person replied STOP: their number joins the opt-out list."""
    message = db.session.execute(select(Message.recipient, Message.sender, Message.public_id)
                                 .where(Message.plivo_uuid == plivo_uuid)).first()
    digits = "".join(ch for ch in payload.get("To") or "" if ch.isdigit())[:15]
    number = message.recipient if message else (f"+{digits}" if digits else None)
    if number is None:
        return
    opt_outs.note(number, message.sender if message else payload.get("From"),
                  message.public_id if message else None)
    db.session.commit()
    event(log, "number opted out (Plivo error 200)", logging.WARNING, number=number)


def nonce_outcome(nonce: str, body_sha256: str | None) -> CallbackOutcome:
    """A nonce already bound: the same body again is Plivo retrying, another is a replay."""
    bound = db.session.scalar(select(WebhookNonce.body_sha256)
                              .where(WebhookNonce.nonce == nonce))
    if bound == body_sha256:
        return CallbackOutcome.DUPLICATE
    event(log, "status callback refused: nonce replayed with another body", logging.WARNING,
          nonce=nonce)
    return CallbackOutcome.REPLAYED


def record_refused_callback(payload: dict[str, str], signature_scheme: str) -> None:
    """Keep a refused callback in the ledger for inspection; it changes nothing."""
    plivo_uuid = (payload.get("MessageUUID") or "")[:64]
    if not plivo_uuid:
        return
    db.session.add(StatusEvent(
        plivo_uuid=plivo_uuid, message_id=None, status=(payload.get("Status") or "")[:32],
        sequence=0, error_code=None, payload=payload, signature_scheme=signature_scheme,
        accepted=False))
    db.session.commit()


# ---- the uuid, and callbacks that came before it -------------------------------------------
def retry_on_conflict(change: Callable[[], T], attempts: int = 5) -> T:
    """Run an ORM read-modify-write of a message again when another writer got there first.

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
    now = utcnow()
    if statuses.should_apply(message.status, message.status_sequence, statuses.QUEUED, 0):
        message.status = statuses.QUEUED
        message.queued_at = message.queued_at or _queued_time_reported(plivo_uuid) or now
    # If no final status has come by then, the reconciler asks Plivo (reconcile.py).
    message.next_lookup_at = now + timedelta(minutes=current_settings().reconcile_after_minutes)
    db.session.commit()


def _queued_time_reported(plivo_uuid: str) -> datetime | None:
    """When Plivo says it queued the message, from callbacks that came before its uuid
    was known (a recovery adopting it minutes later must not give it its own time)."""
    times = [_parse_plivo_time(payload.get("QueuedTime")) for payload in db.session.scalars(
        select(StatusEvent.payload).where(StatusEvent.plivo_uuid == plivo_uuid,
                                          StatusEvent.message_id.is_(None),
                                          StatusEvent.accepted))
             if isinstance(payload, dict)]
    return min((t for t in times if t), default=None)


def adopt_early_events(message: Message) -> None:
    """Apply, in Sequence order, the accepted callbacks kept before the uuid was known."""
    early = list(db.session.scalars(
        select(StatusEvent).where(StatusEvent.plivo_uuid == message.plivo_uuid,
                                  StatusEvent.message_id.is_(None), StatusEvent.accepted)
        .order_by(StatusEvent.sequence)))
    for status_event in early:
        status_event.message_id = message.id
        status_event.applied = apply_status_event(message, status_event)
    if early:
        db.session.commit()
