"""Friendly error pages; never a stack trace to a user."""

from __future__ import annotations

import math
import time

from flask import Flask, g, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, InternalServerError

from webapp.extensions import db, limiter

MESSAGES = {
    400: ("Bad request", "The request could not be understood."),
    403: ("Not allowed", "Your account does not have access to this page."),
    404: ("Page not found", "There is nothing at this address."),
    405: ("Method not allowed", "This address does not accept that kind of request."),
    413: ("Too large", "What you sent is larger than this dashboard accepts."),
    429: ("Too many attempts", "Please wait before trying again."),
    500: ("Something went wrong", "The error has been logged. Please try again in a moment."),
}


def _wants_json() -> bool:
    return request.path.startswith("/webhooks/") or request.path == "/healthz"


def retry_after_seconds() -> int | None:
    """Seconds until the rate limit that refused this request resets."""
    current = limiter.current_limit
    if current is None:
        return None
    return max(1, math.ceil(current.reset_at - time.time()))


def render_error(code: int, detail: str | None = None):
    title, message = MESSAGES.get(code, (str(code), ""))
    if _wants_json():
        return jsonify(error=title, detail=detail or message), code
    # An error page asks the database nothing (the menu's unread count included): it must
    # render when the request's transaction failed, or the database is away.
    g.error_page = True
    return render_template("errors/error.html", code=code, title=title,
                           message=detail or message), code


# A body over the limit is read to its end (up to this much, within this long) before
# the 413 is answered: a browser still sending when the server hangs up shows "connection
# reset" instead of the page saying why.
DRAIN_BYTES = 64 * 1024 * 1024
DRAIN_SECONDS = 10.0


def _drain() -> None:
    length = request.content_length
    stream = request.environ.get("wsgi.input")
    if not length or length > DRAIN_BYTES or stream is None:
        return
    deadline = time.monotonic() + DRAIN_SECONDS
    left = length
    try:
        while left > 0 and time.monotonic() < deadline:
            chunk = stream.read(min(left, 64 * 1024))
            if not chunk:
                break
            left -= len(chunk)
    except (OSError, ValueError):
        pass


def init_app(app: Flask) -> None:
    @app.errorhandler(CSRFError)
    def csrf_error(_exc):
        return render_error(400, "The form expired or was sent from another site. "
                                 "Go back, reload the page and try again.")

    @app.errorhandler(429)
    def too_many(_exc):
        wait = retry_after_seconds()
        if wait is None:
            return render_error(429)
        minutes = math.ceil(wait / 60)
        when = f"{wait} seconds" if wait < 90 else f"{minutes} minutes"
        response, code = render_error(429, f"Too many attempts. Try again in {when}.")
        return response, code, {"Retry-After": str(wait)}

    @app.errorhandler(413)
    def too_large(exc):
        limit = request.max_content_length
        _drain()
        if request.endpoint == "sending.compose" and limit:
            return render_error(413, f"The files you attached come to more than "
                                     f"{limit // (1024 * 1024)} MB together, the most this "
                                     "dashboard takes at once. Attach fewer or smaller "
                                     "files (each picture is shrunk for phones anyway). "
                                     "Nothing was sent.")
        if request.endpoint == "pictures.upload_media" and limit:
            return render_error(413, f"The file is larger than the {limit // (1024 * 1024)} "
                                     "MB limit for one upload. Choose a smaller file.")
        own = exc.description if exc.description != type(exc).description else None
        return render_error(413, own)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        if exc.code is None or exc.code >= 500:
            db.session.rollback()
            return render_error(exc.code or 500)
        # Our own abort(code, "why") says why; Werkzeug's stock wording does not.
        own = exc.description if exc.description != type(exc).description else None
        body, code = render_error(exc.code, own)
        # What the exception says besides its page: Allow on a 405, above all.
        kept = {key: value for key, value in exc.get_headers() if key.lower() != "content-type"}
        return body, code, kept

    @app.errorhandler(InternalServerError)
    def server_error(_exc):
        db.session.rollback()
        return render_error(500)
