"""The reconciler: ask Plivo about messages whose status callbacks never came.

Callbacks get lost (a deploy or an outage longer than Plivo's ~7 minutes of retries, a
proxy that drops them, a wrong PUBLIC_BASE_URL). A message that has a Plivo uuid but no
final status RECONCILE_AFTER_MINUTES after Plivo accepted it is looked up with Plivo's
Message API (GET /Message/{uuid}/); again 1 h, 6 h and 24 h later while it stays
unfinished; then no more ("Plivo has no final status"). What Plivo answers goes through
the same state machine and ledger as a callback, with the ledger's scheme "lookup": a
lookup never moves a final status back, and a later callback with a higher Sequence
still wins (the lookup carries Sequence 0).

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

from .. import plivo_gateway as gateway
from .. import statuses
from ..config import current_settings
from ..extensions import db
from ..logs import event
from ..models import Message, utcnow
from ..signatures import SignatureScheme
from .callbacks import Callback, CallbackOutcome, record_status_callback
from .dispatch import lookup_limiter

log = logging.getLogger(__name__)

# After the first lookup (RECONCILE_AFTER_MINUTES after Plivo accepted the message), the
# waits before the next ones; after the last, the reconciler gives up on the message.
LATER_LOOKUPS = (timedelta(hours=1), timedelta(hours=6), timedelta(hours=24))
MAX_LOOKUPS = 1 + len(LATER_LOOKUPS)
BATCH = 200
UNFINISHED = (statuses.QUEUED, statuses.SENT)


def first_lookup_at(accepted_at: datetime) -> datetime:
    """When a message Plivo accepted at `accepted_at` is first looked up if no final
    status has come by then."""
    return accepted_at + timedelta(minutes=current_settings().reconcile_after_minutes)


def gave_up(message: Message) -> bool:
    """Every lookup done and Plivo still has no final status for it."""
    return (message.lookups >= MAX_LOOKUPS and message.next_lookup_at is None
            and not statuses.is_final(message.status))


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
    "applied", "unchanged", "unknown to Plivo" or "Plivo unreachable" (tried again at
    the next sweep, not counted as a lookup)."""
    now = now or utcnow()
    with lookup_limiter().slot():
        try:
            answer = gateway.get_message(config, plivo_uuid)
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
                              Message.status.not_in(UNFINISHED))
        .values(next_lookup_at=None)).rowcount
    db.session.commit()
    counts = {"looked up": 0, "applied": 0, "unchanged": 0, "unknown to Plivo": 0,
              "Plivo unreachable": 0, "no longer waiting": forgotten}
    due = _due(now, limit)
    if not due:
        return counts
    config = gateway.GatewayConfig.from_settings(current_settings())
    for message_id, plivo_uuid, lookups in due:
        result = look_up(message_id, plivo_uuid, lookups, config, now)
        counts[result] += 1
        counts["looked up"] += 1
        if progress:
            progress(1)
        if result == "Plivo unreachable":
            break  # Plivo is down: the next sweep tries again
    return counts


def due_count(now: datetime | None = None) -> int:
    """How many messages are due for a lookup now (for the command's progress bar)."""
    return len(_due(now or utcnow(), 100_000))
