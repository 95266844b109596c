"""What stands between the open internet and the callback ledger.

- Refused callbacks (no signature, a bad one, a replayed nonce) are counted per source
  address, hour and reason; only the first few of each hour are kept, truncated, as
  refused ledger rows. Unsigned traffic is throttled per source address.
- A callback signed with V2 only proves nothing about its body, so it is kept but not
  applied until Plivo's Message API confirms its status (a task, off the request path).
- Nonces and counts expire (forget_expired, run by the workers' sweep).
"""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime, timedelta
from enum import StrEnum
from urllib.parse import urlencode

from limits import RateLimitItemPerMinute
from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from webapp import statuses
from webapp.callbacks.ledger import (
    Callback,
    CallbackOutcome,
    nonce_outcome,
    parse_callback,
    record_status_callback,
)
from webapp.config import current_settings
from webapp.extensions import db, limiter
from webapp.gateway import client as gateway
from webapp.gateway.signatures import SignatureScheme
from webapp.logs import event
from webapp.models import RefusedCallbackCount, StatusEvent, WebhookNonce, utcnow
from webapp.tasks import enqueue_confirmation

log = logging.getLogger(__name__)

SAMPLES_PER_SOURCE_HOUR = 5  # refused callbacks kept whole, per source, reason and hour
SAMPLE_VALUE_CHARS = 200
SAMPLE_FIELDS = 30
REFUSED_PER_MINUTE = RateLimitItemPerMinute(30)  # unsigned traffic, per source address
NONCES_KEPT = timedelta(hours=48)
COUNTS_KEPT = timedelta(days=30)


class RefusalReason(StrEnum):
    NO_SIGNATURE = "no signature"
    BAD_SIGNATURE = "bad signature"
    REPLAYED_NONCE = "replayed nonce"


def throttled(source: str) -> bool:
    """Count one refused request from `source`; True once it is over its minute's share.
    Counted first, then tested, in the limiter's storage (Redis across workers): two
    requests at once cannot both take the last place."""
    return not limiter.limiter.hit(REFUSED_PER_MINUTE, "refused-callbacks", source)


def refused_answer(reason: RefusalReason, payload: dict[str, str], scheme: SignatureScheme,
                   detail: str, source: str):
    """What a refused webhook request is answered (the status callback's and the reply
    webhook's alike): counted, sampled, and 429 once its address is over its share."""
    from flask import jsonify

    if throttled(source):
        return jsonify(error="too many refused requests from this address"), 429
    refuse_callback(payload, reason, source, scheme)
    return jsonify(error="signature refused", detail=detail), 403


def body_digest(form) -> str:
    """The sha256 a signature's nonce is bound to: the parsed fields, sorted (the raw
    stream is gone once the form has been read)."""
    return hashlib.sha256(urlencode(sorted(form.items(multi=True))).encode()).hexdigest()


def _dml():
    return postgresql if db.engine.dialect.name == "postgresql" else sqlite


def refuse_callback(payload: dict[str, str], reason: RefusalReason, source: str,
                    scheme: SignatureScheme) -> None:
    """Count a refused callback; keep it whole (truncated) if it is among the first few of
    this source's hour."""
    now = utcnow()
    hour = now.replace(minute=0, second=0, microsecond=0)
    table = RefusedCallbackCount.__table__
    upsert = _dml().insert(table).values(source=source[:45], hour=hour, reason=reason, count=1)
    upsert = upsert.on_conflict_do_update(
        index_elements=["source", "hour", "reason"], set_={"count": table.c.count + 1},
    ).returning(table.c.count)
    count = db.session.execute(upsert).scalar_one()
    if count <= SAMPLES_PER_SOURCE_HOUR:
        sample = {key[:40]: value[:SAMPLE_VALUE_CHARS]
                  for key, value in list(payload.items())[:SAMPLE_FIELDS]}
        sample["_refused"] = f"{reason} from {source}"
        db.session.add(StatusEvent(
            plivo_uuid=(payload.get("MessageUUID") or "")[:64], message_id=None,
            status=(payload.get("Status") or "")[:32], sequence=0, error_code=None,
            payload=sample, signature_scheme=scheme, accepted=False, received_at=now))
    db.session.commit()


def hold_v2_callback(callback: Callback, payload: dict[str, str], nonce: str,
                     body_sha256: str) -> CallbackOutcome:
    """Keep a V2-signed callback unapplied, bind its nonce, and ask for confirmation."""
    db.session.add(WebhookNonce(nonce=nonce, body_sha256=body_sha256, received_at=utcnow()))
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        return nonce_outcome(nonce, body_sha256)
    db.session.add(StatusEvent(
        plivo_uuid=callback.plivo_uuid, message_id=None, status=callback.status,
        sequence=callback.sequence, error_code=callback.error_code, payload=payload,
        signature_scheme=SignatureScheme.V2, accepted=False))
    db.session.commit()
    try:
        enqueue_confirmation(payload)
    except Exception:  # queue down: the callback stays kept, unapplied
        log.exception("could not queue the confirmation of a V2 callback")
    return CallbackOutcome.UNCONFIRMED


def confirm_v2_callback(payload: dict[str, str]) -> CallbackOutcome | None:
    """Apply a held V2 callback if Plivo's Message API agrees: the message is in that
    status now, or in a later one. Otherwise it stays kept and unapplied (None)."""
    callback = parse_callback(payload)
    config = gateway.GatewayConfig.from_settings(current_settings())
    try:
        now_at_plivo = gateway.get_message(config, callback.plivo_uuid)
    except gateway.GatewayError as exc:
        event(log, "V2 callback not confirmed: Plivo's Message API failed", logging.WARNING,
              plivo_uuid=callback.plivo_uuid, error=str(exc))
        return None
    agrees = now_at_plivo.state == callback.status or (
        statuses.rank(now_at_plivo.state) > statuses.rank(callback.status)
        and statuses.rank(callback.status) < statuses.FINAL_RANK)
    if not agrees:
        event(log, "V2 callback contradicted by Plivo's Message API", logging.WARNING,
              plivo_uuid=callback.plivo_uuid, claimed=callback.status,
              plivo_says=now_at_plivo.state)
        return None
    return record_status_callback(callback, payload, SignatureScheme.V2_CONFIRMED)


def forget_expired(now: datetime | None = None) -> dict[str, int]:
    """Drop nonces older than 48 hours (Plivo retries within minutes) and refusal counts
    older than 30 days."""
    now = now or utcnow()
    nonces = db.session.execute(
        delete(WebhookNonce).where(WebhookNonce.received_at < now - NONCES_KEPT)).rowcount
    counts = db.session.execute(delete(RefusedCallbackCount).where(
        RefusedCallbackCount.hour < now - COUNTS_KEPT)).rowcount
    db.session.commit()
    return {"nonces forgotten": nonces, "refusal counts forgotten": counts}


def refused_counts(source: str | None = None) -> list[RefusedCallbackCount]:
    """Refusal counts, newest hour first (for inspection and tests)."""
    query = select(RefusedCallbackCount).order_by(RefusedCallbackCount.hour.desc())
    if source:
        query = query.where(RefusedCallbackCount.source == source)
    return list(db.session.scalars(query))
