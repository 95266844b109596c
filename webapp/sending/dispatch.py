"""Dispatch: send one recorded message through Plivo, off the request path.

Plivo's limits (gateway.pace), retries only where Plivo cannot have acted
(RetryPolicy), the send itself (dispatch_message), and the repair of what a dead
queue or a killed worker left behind (recover_stalled). The task queue runs these.
"""

from __future__ import annotations

import logging
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm.exc import StaleDataError
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt
from tenacity import stop_after_delay as tenacity_stop_after_delay

from webapp import statuses
from webapp.callbacks.ledger import message_by_uuid, record_uuid, retry_on_conflict
from webapp.config import current_settings
from webapp.extensions import db
from webapp.gateway import circuit
from webapp.gateway import client as gateway
from webapp.gateway.cadence import account_turn, number_turn
from webapp.gateway.pace import DispatchLimiter, Withdrawn, dispatch_limiter
from webapp.logs import event
from webapp.models import Message, StatusEvent, utcnow
from webapp.number_limits import POWERPACK
from webapp.pictures import library
from webapp.sending import senders
from webapp.tasks import enqueue_dispatch

log = logging.getLogger(__name__)


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


class _ClaimedElsewhere(Exception):
    """Another worker took this message first."""


class _DayCapReached(Exception):
    """The message's number has sent its daily cap: it waits for tomorrow."""


def _claim(message_id: int) -> bool:
    """Take a pending message for sending; False if another worker has it."""
    result = db.session.execute(
        update(Message)
        .where(Message.id == message_id, Message.status == statuses.PENDING,
               Message.attempts == 0)
        .values(attempts=1, updated_at=utcnow()))
    db.session.commit()
    return result.rowcount == 1


def dispatch_message(message_id: int, policy: RetryPolicy | None = None,
                     probe: bool = False, background: bool = False,
                     wanted: Callable[[], bool] | None = None) -> None:
    """Send one pending message through Plivo and record the outcome.

    Retries only where Plivo cannot have acted (connect errors, 429, 5xx).
    A 4xx makes the message `error`; a timeout after sending makes it
    `unknown`, never resent automatically. But when Plivo refuses the account itself
    (circuit.py) the claim is given back and the message waits with every other one
    while the circuit is open. `probe`: the circuit's one message a minute, sent while
    it is open; any answer but the account refused again closes it.

    Pace (issue 34): it is handed to Plivo only in its turn of the account's MPS and of
    its number's own limit, and not past the number's daily cap (it then waits for
    tomorrow, unclaimed). `wanted`: asked while it waits for its turn (a list send
    paused or cancelled meanwhile keeps it, unclaimed).
    """
    policy = policy or RetryPolicy()
    message = db.session.get(Message, message_id)
    if message is None or message.status != statuses.PENDING or message.attempts:
        return
    if message.not_before is not None and message.not_before > utcnow():
        return  # its number's daily cap: the sweep queues it again tomorrow
    if not probe and circuit.is_open():
        return  # it waits; closing the circuit (or a probe) queues it again
    settings = current_settings()
    config = gateway.GatewayConfig.from_settings(settings)
    limiter = dispatch_limiter(settings)
    # Everything the request needs is read before the claim, so nothing but
    # the request itself stands between the claim and Plivo.
    powerpack = settings.powerpack_uuid if message.sender == POWERPACK else None
    request = {"src": message.sender, "dst": message.recipient, "text": message.text,
               "powerpack_uuid": powerpack,
               "media_urls": [m["url"] for m in message.media if "url" in m],
               "media_ids": [m["media_id"] for m in message.media if "media_id" in m],
               "callback_url": settings.status_callback_url,
               "expiry_seconds": settings.message_expiry_seconds}
    # A Powerpack's number is Plivo's choice: the account's MPS alone paces it.
    limit = None if powerpack else senders.limit_for(message.sender, settings)
    turns = [account_turn(settings.plivo_mms_mps)]
    if limit is not None and limit.per_second:
        turns.append(number_turn(message.sender, limit.per_second))
    gateway.warm_up(config)
    if any("upload" in m for m in message.media):
        # Files staff uploaded go to Plivo's Media API now, not at compose time (Plivo
        # deletes media it has not sent within 6 hours), before the claim: an upload
        # that fails leaves nothing ambiguous about the message.
        try:
            request["media_ids"] += _upload_media(message, config, limiter, policy)
        except gateway.PlivoAccountRefused as exc:
            circuit.open_circuit(exc.reason, exc.status, exc.kind)
            return  # the message waits with the rest, unclaimed
        except gateway.GatewayError as exc:
            reason = f"Plivo did not take the picture: {exc.reason}; nothing was sent."
            retry_on_conflict(lambda: _finish_without_uuid(message, statuses.ERROR, reason))
            return
    tries = 0
    refused_for_itself = False

    def claim_or_count() -> None:
        # Claim (or count) right before the request, after any wait: a worker
        # killed before this leaves a message the recovery sweep may safely
        # queue again; after it, the send is ambiguous.
        if tries == 1:
            if limit is not None and limit.per_day:
                _count_in_day(message.sender, limit.per_day, limiter)
            if not _claim(message_id):
                raise _ClaimedElsewhere
        else:
            message.attempts = tries
            db.session.commit()

    def attempt() -> str:
        nonlocal tries
        tries += 1
        with limiter.slot(policy.sleep, prepare=claim_or_count, background=background,
                          turns=turns if tries == 1 else [], wanted=wanted):
            return gateway.send_mms(config, **request)

    def note_retry(state: RetryCallState) -> None:
        exc = state.outcome.exception()
        message.last_attempt_error = str(exc)
        db.session.commit()
        event(log, "send will be retried", logging.WARNING, message=message.public_id,
              attempt=state.attempt_number, error=str(exc))

    try:
        plivo_uuid = _retrying(policy, (gateway.PlivoRetryable,), note_retry)(attempt)
    except (_ClaimedElsewhere, Withdrawn):
        return
    except _DayCapReached:
        message.not_before = senders.next_day()
        db.session.commit()
        event(log, "daily cap reached: the message waits for tomorrow", message=message.public_id,
              sender=message.sender)
        return
    except gateway.PlivoAccountRefused as exc:
        # Not this message's fault and nothing was sent: it waits with the rest.
        circuit.give_back(message_id, exc.reason)
        circuit.open_circuit(exc.reason, exc.status, exc.kind)
        return
    except gateway.PlivoRejected as exc:
        outcome = (statuses.ERROR, f"Plivo refused the message: {exc.reason}")
        refused_for_itself = True
    except gateway.PlivoRetryable as exc:
        outcome = (statuses.ERROR, f"Plivo was unavailable after {tries} attempts "
                                   f"({exc.reason}); nothing was sent.")
    except gateway.PlivoAmbiguous as exc:
        outcome = (statuses.UNKNOWN, exc.reason)
    else:
        record_uuid(message, plivo_uuid)
        if probe:
            circuit.close_circuit()
        return
    # The dispatch knows best: it wins over a recovery sweep that raced it.
    retry_on_conflict(lambda: _finish_without_uuid(message, *outcome))
    if probe and refused_for_itself:
        # Refused for itself: the account got past Plivo's door.
        circuit.close_circuit()


def _count_in_day(number: str, cap: int, limiter: DispatchLimiter) -> None:
    """Count one of the number's messages today, or raise _DayCapReached."""
    key = senders.day_key(number)
    cadence = limiter.cadence
    already = senders.sent_today(number) if cadence.day_count(key) is None else 0
    if not cadence.claim_day(key, cap, already):
        raise _DayCapReached


def _retrying(policy: RetryPolicy, retry_on: tuple[type[Exception], ...],
              before_sleep=None) -> Retrying:
    """The retry loop of a request to Plivo: `retry_on` only, within the policy's
    attempts and time, waiting as it says."""
    return Retrying(
        retry=retry_if_exception_type(retry_on),
        stop=stop_after_attempt(policy.attempts) | tenacity_stop_after_delay(policy.within_seconds),
        wait=policy.wait, sleep=policy.sleep, before_sleep=before_sleep, reraise=True)


def _upload_media(message: Message, config: gateway.GatewayConfig,
                  limiter: DispatchLimiter, policy: RetryPolicy) -> list[str]:
    """Plivo media ids for the message's uploaded files (library.plivo_media_ids). Each
    upload takes a place in Plivo's window like a send, and is retried like one; an
    upload that may have arrived is made again too (an extra copy costs nothing)."""

    def upload(media) -> str:
        def attempt() -> str:
            with limiter.slot(policy.sleep):
                return gateway.upload_media(config, name=library.upload_name(media),
                                            content_type=media.content_type, data=media.data)

        return _retrying(policy, (gateway.PlivoRetryable, gateway.PlivoAmbiguous))(attempt)

    return library.plivo_media_ids(message.media, config, upload)


def probe_circuit() -> dict[str, int]:
    """The circuit's half-open step, for the worker's sweep (circuit.probe)."""
    return circuit.probe(lambda message_id: dispatch_message(message_id, probe=True))


# An unknown message is first looked for in Plivo's message list this long after (the
# reconciler, reconcile.find_unknown).
UNKNOWN_LOOKUP_AFTER = timedelta(minutes=2)


def _finish_without_uuid(message: Message, status: str, reason: str) -> None:
    if message.plivo_uuid:  # the sweep adopted it from Plivo's callbacks meanwhile
        return
    message.status = status
    message.error_reason = reason
    message.last_attempt_error = reason
    if statuses.is_final(status):
        message.final_at = utcnow()
    if status == statuses.UNKNOWN:
        message.next_lookup_at, message.lookups = utcnow() + UNKNOWN_LOOKUP_AFTER, 0
    db.session.commit()
    event(log, "send ended without a message id", logging.WARNING, message=message.public_id,
          status=status, reason=reason)


def recover_stalled(lease_seconds: int) -> dict[str, int]:
    """Repair what a dead queue or a killed worker left behind. Safe to run anywhere, often.

    - pending and never tried, older than the lease: queue again (the queue lost
      the task, or was down when the message was recorded);
    - claimed by a worker but never answered, older than the lease: the worker
      died mid-send. If Plivo's callbacks for this recipient arrived meanwhile,
      they name the uuid: adopt it. Otherwise the message becomes `unknown`,
      never resent blindly;
    - claimed, within the lease, and Plivo's callbacks name it beyond doubt: adopted
      at once (a killed worker's message need not wait out the lease).
    """
    cutoff = utcnow() - timedelta(seconds=lease_seconds)
    counts = {"requeued": 0, "adopted": 0, "unknown": 0}
    # While Plivo refuses the account they wait: closing the circuit queues them.
    # A batch's messages are its lanes' to send (batches.restart_lanes), in their order.
    never_tried = [] if circuit.is_open() else list(db.session.scalars(select(Message.id).where(
        Message.status == statuses.PENDING, Message.attempts == 0, Message.created_at < cutoff,
        Message.batch_id.is_(None) | Message.retry_of_id.is_not(None),
        Message.not_before.is_(None) | (Message.not_before <= utcnow()))))
    for message_id in never_tried:
        enqueue_dispatch(message_id)
    counts["requeued"] = len(never_tried)
    claimed = list(db.session.scalars(select(Message).where(
        Message.status == statuses.PENDING, Message.attempts > 0,
        Message.plivo_uuid.is_(None))))
    if not claimed:
        return counts
    orphans = list(db.session.scalars(select(StatusEvent).where(
        StatusEvent.message_id.is_(None), StatusEvent.accepted,
        StatusEvent.received_at >= min(m.created_at for m in claimed))))
    pairs = Counter((m.sender, m.recipient) for m in claimed)
    for message in claimed:
        named = list(dict.fromkeys(
            e.plivo_uuid for e in orphans
            if e.payload.get("To") == message.recipient.lstrip("+")
            and e.payload.get("From") == message.sender.lstrip("+")
            and e.received_at >= message.created_at
            and message_by_uuid(e.plivo_uuid) is None))
        stalled = message.updated_at < cutoff
        # Plivo's callbacks name the message beyond doubt (one uuid, one claimed message
        # to that number): adopt it now, lease or not; the worker, if alive, records
        # the same uuid. Past the lease, the first callback's uuid, as it always was.
        if named and (stalled or (len(named) == 1 and pairs[message.sender, message.recipient] == 1)):
            record_uuid(message, named[0])
            counts["adopted"] += 1
        elif stalled:
            try:
                _finish_without_uuid(message, statuses.UNKNOWN,
                                     "The sending worker stopped mid-request; Plivo may or may "
                                     "not have the message. Check before sending again.")
            except StaleDataError:  # the worker was only slow, and has just finished
                db.session.rollback()
                continue
            counts["unknown"] += 1
    return counts
