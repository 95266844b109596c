"""The reconciler: ask Plivo about messages whose status callbacks never came.

Callbacks get lost (a deploy or an outage longer than Plivo's ~7 minutes of retries, a
proxy that drops them, a wrong PUBLIC_BASE_URL). A message that has a Plivo uuid but no
final status RECONCILE_AFTER_MINUTES after Plivo accepted it is looked up with Plivo's
Message API (GET /Message/{uuid}/); again 1 h, 6 h and 24 h later while it stays
unfinished; then no more ("Plivo has no final status"). What Plivo answers goes through
the same state machine and ledger as a callback, with the ledger's scheme "lookup": a
lookup never moves a final status back, and a later callback with a higher Sequence
still wins (the lookup carries Sequence 0).

A message whose send was never answered (`unknown`: Plivo may or may not have it) has
no uuid to look up: Plivo's message list is asked instead, for outbound messages from
our number to its recipient since just before it was recorded, 2 minutes after it
became unknown and again RECONCILE_AFTER_MINUTES later (the list may lag). One message
there that no other row of ours claims: that is it, its uuid and status are adopted.
None at the last look: "Not sent — Plivo never received it", and staff get a Send again
button (never an automatic resend). Several: it stays unknown and the detail page lists
them for a person to choose.

Lookups share the dispatch limiter's window (Plivo counts them against the same
account limit) and take at most RECONCILE_MAX_SHARE percent of it, so sending never
waits for them. The worker's sweep runs `reconcile` every QUEUE_SWEEP_SECONDS;
`flask messages reconcile` runs it once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update

from webapp import audit, statuses
from webapp.callbacks.ledger import (
    Callback,
    CallbackOutcome,
    message_by_uuid,
    record_status_callback,
    record_uuid,
)
from webapp.config import current_settings
from webapp.extensions import db
from webapp.gateway import circuit
from webapp.gateway import client as gateway
from webapp.gateway.pace import lookup_limiter
from webapp.gateway.signatures import SignatureScheme
from webapp.logs import event
from webapp.models import Message, utcnow
from webapp.number_limits import POWERPACK

log = logging.getLogger(__name__)

# After the first lookup (RECONCILE_AFTER_MINUTES after Plivo accepted the message), the
# waits before the next ones; after the last, the reconciler gives up on the message.
LATER_LOOKUPS = (timedelta(hours=1), timedelta(hours=6), timedelta(hours=24))
MAX_LOOKUPS = 1 + len(LATER_LOOKUPS)
BATCH = 200
UNFINISHED = (statuses.QUEUED, statuses.SENT)
# An unknown message is looked for in Plivo's list this many times: dispatch's
# UNKNOWN_LOOKUP_AFTER after it became unknown, then RECONCILE_AFTER_MINUTES apart (the
# list may lag, as callbacks may). Not there at the last look: it never reached Plivo.
UNKNOWN_LOOKS = 2
# How long before the message was recorded a match may have reached Plivo (clocks).
LISTED_SINCE = timedelta(minutes=1)


def first_lookup_at(accepted_at: datetime) -> datetime:
    """When a message Plivo accepted at `accepted_at` is first looked up if no final
    status has come by then."""
    return accepted_at + timedelta(minutes=current_settings().reconcile_after_minutes)


def gave_up(message: Message) -> bool:
    """Every lookup done and Plivo still has no final status for it."""
    return (message.lookups >= MAX_LOOKUPS and message.next_lookup_at is None
            and not statuses.is_final(message.status))


def unknown_advice(message: Message, when) -> str:
    """What staff should do about an unknown message, by where the asking stands: the
    dashboard checks by itself, so Plivo's console is only worth opening once it has
    stopped. `when` formats a time for the reader (presentation.local_time)."""
    if gave_up(message):
        return ("Plivo has no final status for it and the dashboard has stopped asking. "
                "Look the message up in Plivo's console before sending again, or the "
                "customer may get it twice.")
    if message.next_lookup_at is not None:
        return (f"We are asking Plivo whether it went; next check at "
                f"{when(message.next_lookup_at)}. The status changes by itself; do not send "
                "it again meanwhile, or the customer may get it twice.")
    return statuses.advice(message.status, message.error_code) or ""


def _plivo_time(value: str) -> str:
    """Plivo's message_time ("2026-12-01 10:42:07+00:00") as a callback's UTC time."""
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        return ""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def lookup_payload(answer: gateway.PlivoMessage) -> dict[str, str]:
    """Plivo's answer in a callback's words, for the ledger and the state machine."""
    return {"MessageUUID": answer.uuid, "Status": answer.state,
            "ErrorCode": answer.error_code or "", "Sequence": "0", "Units": answer.units,
            "TotalAmount": answer.total_amount, "QueuedTime": _plivo_time(answer.message_time),
            "Source": "lookup"}


def _due(now: datetime, limit: int) -> list[tuple[int, str, int]]:
    return list(db.session.execute(
        select(Message.id, Message.plivo_uuid, Message.lookups)
        .where(Message.next_lookup_at <= now, Message.status.in_(UNFINISHED),
               Message.plivo_uuid.is_not(None))
        .order_by(Message.next_lookup_at).limit(limit)).all())


def _schedule(message_id: int, lookups: int, now: datetime) -> None:
    later = LATER_LOOKUPS[lookups - 1] if lookups <= len(LATER_LOOKUPS) else None
    db.session.execute(update(Message).where(Message.id == message_id).values(
        lookups=lookups, looked_up_at=now, next_lookup_at=now + later if later else None))
    db.session.commit()


def look_up(message_id: int, plivo_uuid: str, lookups: int,
            config: gateway.GatewayConfig, now: datetime | None = None) -> str:
    """Ask Plivo about one message and apply the answer. Returns what happened:
    "applied", "unchanged", "unknown to Plivo", or "Plivo unreachable" or "Plivo refused
    the account" (tried again at the next sweep, not counted as a lookup)."""
    now = now or utcnow()
    with lookup_limiter().lookup_slot():
        try:
            answer = gateway.get_message(config, plivo_uuid)
        except gateway.PlivoAccountRefused as exc:
            circuit.open_circuit(exc.reason, exc.status, exc.kind)
            return "Plivo refused the account"
        except gateway.PlivoRetryable as exc:
            event(log, "reconcile: Plivo did not answer", logging.WARNING,
                  plivo_uuid=plivo_uuid, error=str(exc))
            return "Plivo unreachable"
        except gateway.PlivoRejected as exc:
            event(log, "reconcile: Plivo refused the lookup", logging.WARNING,
                  plivo_uuid=plivo_uuid, error=str(exc))
            _schedule(message_id, lookups + 1, now)
            return "unknown to Plivo"
    outcome = None
    if answer.state in statuses.CALLBACK_STATUSES:
        outcome = record_status_callback(
            Callback(plivo_uuid, answer.state, 0, answer.error_code), lookup_payload(answer),
            SignatureScheme.LOOKUP)
    _schedule(message_id, lookups + 1, now)
    event(log, "reconcile: looked up", plivo_uuid=plivo_uuid, plivo_says=answer.state,
          outcome=str(outcome))
    return "applied" if outcome == CallbackOutcome.APPLIED else "unchanged"


def reconcile(now: datetime | None = None, limit: int = BATCH,
              progress: Callable[[int], None] | None = None) -> dict[str, int]:
    """Look up every message that is due (at most `limit` this time). Returns counts."""
    now = now or utcnow()
    # Messages that became final since they were scheduled need no lookup: forget them
    # (keeps the index of due lookups short).
    forgotten = db.session.execute(
        update(Message).where(Message.next_lookup_at <= now,
                              Message.status.not_in((*UNFINISHED, statuses.UNKNOWN)))
        .values(next_lookup_at=None)).rowcount
    db.session.commit()
    counts = {"looked up": 0, "applied": 0, "unchanged": 0, "unknown to Plivo": 0,
              "Plivo unreachable": 0, "Plivo refused the account": 0,
              "no longer waiting": forgotten, "adopted": 0, "not sent": 0,
              "several candidates": 0, "not listed yet": 0}
    if circuit.is_open():  # Plivo refuses our credentials: asking again changes nothing
        return counts
    due, unknown = _due(now, limit), _due_unknown(now, limit)
    if not due and not unknown:
        return counts
    config = gateway.GatewayConfig.from_settings(current_settings())
    work = [(look_up, (message_id, plivo_uuid, lookups)) for message_id, plivo_uuid, lookups
            in due] + [(find_unknown, (message_id,)) for message_id in unknown]
    for step, args in work:
        result = step(*args, config, now)
        counts[result] += 1
        counts["looked up"] += 1
        if progress:
            progress(1)
        if result in ("Plivo unreachable", "Plivo refused the account"):
            break  # the next sweep tries again
    return counts


def due_count(now: datetime | None = None) -> int:
    """How many messages are due for a lookup now (for the command's progress bar)."""
    now = now or utcnow()
    return len(_due(now, 100_000)) + len(_due_unknown(now, 100_000))


def _due_unknown(now: datetime, limit: int) -> list[int]:
    return list(db.session.scalars(
        select(Message.id).where(Message.next_lookup_at <= now,
                                 Message.status == statuses.UNKNOWN,
                                 Message.plivo_uuid.is_(None))
        .order_by(Message.next_lookup_at).limit(limit)))


def find_unknown(message_id: int, config: gateway.GatewayConfig,
                 now: datetime | None = None) -> str:
    """Look for an unknown message in Plivo's list. Returns "adopted", "not sent",
    "several candidates", "not listed yet" (looked for again later), or "Plivo
    unreachable" / "Plivo refused the account" (the next sweep tries again)."""
    now = now or utcnow()
    message = db.session.get(Message, message_id)
    if message is None or message.status != statuses.UNKNOWN or message.plivo_uuid:
        return "unchanged"
    since = message.created_at - LISTED_SINCE
    with lookup_limiter().list_slot():
        try:
            listed = gateway.list_messages(config, src=_source(message), dst=message.recipient,
                                           after=since, before=now)
        except gateway.PlivoAccountRefused as exc:
            circuit.open_circuit(exc.reason, exc.status, exc.kind)
            return "Plivo refused the account"
        except (gateway.PlivoRetryable, gateway.PlivoRejected) as exc:
            event(log, "reconcile: Plivo's message list did not answer", logging.WARNING,
                  message=message.public_id, error=str(exc))
            return "Plivo unreachable"
    candidates = [m for m in listed if m.direction in ("outbound", "")
                  and message_by_uuid(m.uuid) is None]
    if len(candidates) == 1:
        adopt(message, candidates[0])
        return "adopted"
    if candidates:
        message.lookup_candidates = [
            {"uuid": m.uuid, "time": _plivo_time(m.message_time), "state": m.state}
            for m in candidates]
        message.next_lookup_at, message.looked_up_at = None, now
        db.session.commit()
        event(log, "reconcile: several Plivo messages could be this one", logging.WARNING,
              message=message.public_id, candidates=len(candidates))
        return "several candidates"
    lookups = message.lookups + 1
    message.lookups, message.looked_up_at = lookups, now
    if lookups < UNKNOWN_LOOKS:
        message.next_lookup_at = now + timedelta(
            minutes=current_settings().reconcile_after_minutes)
        db.session.commit()
        return "not listed yet"
    message.status, message.final_at, message.next_lookup_at = statuses.NOT_SENT, now, None
    message.error_reason = (
        f"Plivo's message list has no message to {message.recipient} from {message.sender} "
        f"since {since:%Y-%m-%d %H:%M} UTC (looked {lookups} times): the request never "
        "reached Plivo, so nothing was sent.")
    db.session.commit()
    event(log, "reconcile: never reached Plivo", logging.WARNING, message=message.public_id)
    return "not sent"


def adopt(message: Message, answer: gateway.PlivoMessage) -> None:
    """Plivo's message `answer` is this one: take its uuid (with any callbacks that came
    for it) and the status Plivo gives it now."""
    message.lookup_candidates = None
    record_uuid(message, answer.uuid)
    if answer.state in statuses.CALLBACK_STATUSES:
        record_status_callback(Callback(answer.uuid, answer.state, 0, answer.error_code),
                               lookup_payload(answer), SignatureScheme.LOOKUP)
    event(log, "reconcile: adopted from Plivo's message list", message=message.public_id,
          plivo_uuid=answer.uuid, plivo_says=answer.state)


def adopt_candidate(message: Message, plivo_uuid: str) -> bool:
    """A person chose which of the listed candidates is this message. False when it is
    not one of them (or no longer unknown, or another row has that uuid by now)."""
    if (message.status != statuses.UNKNOWN or message.plivo_uuid
            or plivo_uuid not in {c.get("uuid") for c in message.lookup_candidates or []}
            or message_by_uuid(plivo_uuid) is not None):
        return False
    config = gateway.GatewayConfig.from_settings(current_settings())
    try:
        with lookup_limiter().lookup_slot():
            answer = gateway.get_message(config, plivo_uuid)
    except gateway.GatewayError:
        chosen = next(c for c in message.lookup_candidates if c.get("uuid") == plivo_uuid)
        answer = gateway.PlivoMessage(uuid=plivo_uuid, state=chosen.get("state") or "",
                                      error_code=None)
    audit.record("message_matched", message.public_id, plivo_uuid=plivo_uuid,
                 plivo_says=answer.state)
    adopt(message, answer)
    db.session.commit()
    return True


def _source(message: Message) -> str | None:
    """The number to look for in Plivo's message list: none for a Powerpack's message
    whose number Plivo has not named yet."""
    return None if message.sender == POWERPACK else message.sender
