"""Plivo's Message URL: what customers send to our numbers arrives here.

The same guard as the status callback: the V3 signature checked against the exact
public URL, its nonce bound to the body (a replay with another body is refused), unsigned
traffic counted and throttled per source, a body cap, POST only. One short transaction
answers; pictures and automatic answers go to the queue (followup.py).
"""

from __future__ import annotations

import logging

from flask import Blueprint, jsonify, request

from webapp.callbacks import guard
from webapp.config import current_settings
from webapp.conversations import inbound
from webapp.extensions import csrf, limiter
from webapp.gateway import signatures
from webapp.gateway.signatures import SignatureScheme
from webapp.logs import event
from webapp.security import body_limit

bp = Blueprint("inbound", __name__, url_prefix="/webhooks")
log = logging.getLogger(__name__)

# Ten media URLs and a 1,600-character text fit in well under 32 KB.
MAX_INBOUND_BYTES = 32 * 1024


def _refused(reason: guard.RefusalReason, payload: dict[str, str], scheme: SignatureScheme,
             detail: str):
    return guard.refused_answer(reason, payload, scheme, detail,
                                request.remote_addr or "unknown")


@bp.post("/plivo/message")
@csrf.exempt
@limiter.exempt  # Plivo's bursts must not be throttled; refused traffic is, per source
@body_limit(MAX_INBOUND_BYTES)
def plivo_message():
    settings = current_settings()
    url = settings.message_url
    if request.query_string:
        url += "?" + request.query_string.decode("latin-1")
    verdict = signatures.verify(request.method, url, request.form.to_dict(flat=False),
                                request.headers, settings.plivo_auth_token,
                                settings.plivo_main_auth_token)
    if not verdict.valid:
        payload = {key[:64]: value[:2_000] for key, value in request.form.items()}
        event(log, "inbound message signature refused", logging.WARNING,
              address=request.remote_addr, reason=verdict.reason,
              message_uuid=payload.get("MessageUUID", "")[:64])
        if settings.signature_mode == "enforce":
            reason = (guard.RefusalReason.NO_SIGNATURE if verdict.scheme == SignatureScheme.MISSING
                      else guard.RefusalReason.BAD_SIGNATURE)
            return _refused(reason, payload, verdict.scheme, verdict.reason)
    try:
        message = inbound.parse_inbound(request.form)
    except ValueError as exc:
        return jsonify(error="malformed message", detail=str(exc)), 400
    digest = guard.body_digest(request.form)
    outcome = inbound.record(message, verdict.scheme,
                             nonce=verdict.nonce if verdict.valid else None, body_sha256=digest)
    if outcome == inbound.InboundOutcome.REPLAYED:
        payload = {key[:64]: value[:2_000] for key, value in request.form.items()}
        return _refused(guard.RefusalReason.REPLAYED_NONCE, payload, verdict.scheme,
                        "this signature's nonce came before with another body")
    return jsonify(result=outcome)
