from __future__ import annotations

import logging

from flask import abort, jsonify, request

from .. import signatures
from ..config import current_settings
from ..extensions import csrf, limiter
from ..logs import event
from ..messages import callbacks
from . import bp

log = logging.getLogger(__name__)

MAX_CALLBACK_BYTES = 16 * 1024


@bp.route("/plivo/status", methods=["GET", "POST"])
@csrf.exempt
@limiter.exempt
def plivo_status():
    if (request.content_length or 0) > MAX_CALLBACK_BYTES:
        abort(413)
    settings = current_settings()
    params = request.form if request.method == "POST" else request.args
    # Plivo signed the URL it called: our public address, not whatever host
    # and scheme a proxy in front handed us.
    url = settings.public_base_url + request.path
    if request.query_string:
        url += "?" + request.query_string.decode("latin-1")
    verdict = signatures.verify(request.method, url, params.to_dict(flat=False), request.headers,
                                settings.plivo_auth_token, settings.plivo_main_auth_token)
    payload = {key: value[:500] for key, value in params.items()}
    if not verdict.valid:
        event(log, "status callback signature refused", logging.WARNING,
              address=request.remote_addr, reason=verdict.reason, mode=settings.signature_mode,
              message_uuid=payload.get("MessageUUID", "")[:64])
        if settings.signature_mode == "enforce":
            callbacks.record_refused_callback(payload, verdict.scheme)
            return jsonify(error="signature refused", detail=verdict.reason), 403
    try:
        callback = callbacks.parse_callback(payload)
    except ValueError as exc:
        return jsonify(error="malformed callback", detail=str(exc)), 400
    outcome = callbacks.record_status_callback(callback, payload, verdict.scheme)
    return jsonify(result=outcome)
