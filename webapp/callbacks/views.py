"""The Plivo status callback: verify, then hand over to the callback services.

POST only: the dashboard always asks Plivo for POST callbacks (method=POST at send), so
GET and HEAD answer 405 and never reach the ledger.
"""

from __future__ import annotations

import logging

from flask import Blueprint, jsonify, request

from webapp.callbacks import guard as callback_guard
from webapp.callbacks import ledger as callbacks
from webapp.callbacks.ledger import CallbackOutcome
from webapp.config import current_settings
from webapp.extensions import csrf, limiter
from webapp.gateway import signatures
from webapp.gateway.signatures import SignatureScheme
from webapp.logs import event
from webapp.security import body_limit

bp = Blueprint("callbacks", __name__, url_prefix="/webhooks")


log = logging.getLogger(__name__)

MAX_CALLBACK_BYTES = 16 * 1024  # a real callback is under 1 KB


def _refused(reason: callback_guard.RefusalReason, payload: dict[str, str],
             scheme: SignatureScheme, detail: str):
    return callback_guard.refused_answer(reason, payload, scheme, detail,
                                         request.remote_addr or "unknown")


@bp.post("/plivo/status")
@csrf.exempt
@limiter.exempt  # Plivo's bursts must not be throttled; refused traffic is, per source
@body_limit(MAX_CALLBACK_BYTES)
def plivo_status():
    settings = current_settings()
    # Plivo signed the URL it called: our public address, not whatever host
    # and scheme a proxy in front handed us.
    url = settings.public_base_url + request.path
    if request.query_string:
        url += "?" + request.query_string.decode("latin-1")
    verdict = signatures.verify(request.method, url, request.form.to_dict(flat=False),
                                request.headers, settings.plivo_auth_token,
                                settings.plivo_main_auth_token)
    payload = {key[:64]: value[:500] for key, value in request.form.items()}
    if not verdict.valid:
        event(log, "status callback signature refused", logging.WARNING,
              address=request.remote_addr, reason=verdict.reason, mode=settings.signature_mode,
              message_uuid=payload.get("MessageUUID", "")[:64])
        if settings.signature_mode == "enforce":
            reason = (callback_guard.RefusalReason.NO_SIGNATURE
                      if verdict.scheme == SignatureScheme.MISSING
                      else callback_guard.RefusalReason.BAD_SIGNATURE)
            return _refused(reason, payload, verdict.scheme, verdict.reason)
    try:
        callback = callbacks.parse_callback(payload)
    except ValueError as exc:
        return jsonify(error="malformed callback", detail=str(exc)), 400
    digest = callback_guard.body_digest(request.form)
    if verdict.scheme == SignatureScheme.V2:
        outcome = callback_guard.hold_v2_callback(callback, payload, verdict.nonce, digest)
    else:
        outcome = callbacks.record_status_callback(callback, payload, verdict.scheme,
                                                   nonce=verdict.nonce, body_sha256=digest)
    if outcome == CallbackOutcome.REPLAYED:
        return _refused(callback_guard.RefusalReason.REPLAYED_NONCE, payload, verdict.scheme,
                        "this signature's nonce came before with another body")
    return jsonify(result=outcome)
