"""Request and response hygiene: input no database can store refused at the door,
bounded ids in URLs, response headers, and safe redirects."""

from __future__ import annotations

from functools import wraps
from urllib.parse import unquote, urlsplit

from flask import Flask, abort, current_app, request
from flask_login import current_user, login_required
from werkzeug.routing import BaseConverter, IntegerConverter

from webapp.config import current_settings

# PostgreSQL's integer columns hold at most this; a larger id in a URL is a 404, not an
# overflow in the database driver.
MAX_ID = 2**31 - 1


class BoundedIntConverter(IntegerConverter):
    """`<int:...>` in every route, capped at what an id column can hold."""

    def __init__(self, url_map, fixed_digits: int = 0, min: int | None = 0,
                 max: int | None = MAX_ID, signed: bool = False) -> None:
        super().__init__(url_map, fixed_digits=fixed_digits, min=min, max=max, signed=signed)


class Sha256Converter(BaseConverter):
    """`<sha256:...>`: a stored file's name, its digest as hashlib writes it. A path that
    is not one (`/media/upload` read with GET) matches no GET route, so Werkzeug answers
    405 with `Allow` rather than looking the word up as a file."""

    regex = "[0-9a-f]{64}"


def body_limit(max_bytes):
    """A view's own cap on the bytes of its request body instead of MAX_CONTENT_LENGTH
    (bytes, or a function of no arguments giving them, read per request: a setting).
    Applied before anything reads the body (CSRF protection included), and enforced on
    the bytes actually read, so a chunked body without Content-Length is cut off too
    (413)."""

    def mark(view):
        view.max_body_bytes = max_bytes
        return view

    return mark


def apply_body_limit() -> None:
    view = current_app.view_functions.get(request.endpoint or "")
    limit = getattr(view, "max_body_bytes", None)
    if callable(limit):
        limit = limit()
    if limit is not None:
        request.max_content_length = limit


def _has_nul(values) -> bool:
    return any("\x00" in key or any("\x00" in value for value in values.getlist(key))
               for key in values)


def refuse_nul_bytes() -> None:
    """NUL in the path, a query or a form value: 400 for the whole app at once. PostgreSQL
    cannot store NUL in text, so such a value would fail deep inside a query (a 500) after
    the request had half run; no person types one."""
    if "\x00" in request.path or _has_nul(request.args):
        abort(400, "The request contains a NUL character.")
    if request.method in ("POST", "PUT", "PATCH") and (
            _has_nul(request.form)
            or any("\x00" in (f.filename or "") for f in request.files.values())):
        abort(400, "The request contains a NUL character.")

CSP = (
    "default-src 'self'; "
    "img-src 'self' https: data: blob:; "
    "media-src 'self' https:; "
    "object-src 'none'; "
    "base-uri 'none'; "
    "form-action 'self'; "
    "frame-ancestors 'none'"
)


# Endpoints whose responses may be cached: static files, and uploaded media, which are
# named by their content's sha256 (the view sets private, immutable caching; its 404s
# are no-store like every other page).
CACHEABLE = frozenset({"static", "pictures.media_file", "pictures.media_thumbnail"})


def init_app(app: Flask) -> None:
    """Call before any blueprint is registered: the int converter applies to routes as
    they are added."""
    production = app.extensions["settings"].production
    app.url_map.converters["int"] = BoundedIntConverter
    app.url_map.converters["sha256"] = Sha256Converter
    app.before_request(apply_body_limit)
    app.before_request(refuse_nul_bytes)

    @app.after_request
    def set_security_headers(response):
        headers = response.headers
        headers.setdefault("Content-Security-Policy", CSP)
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("Referrer-Policy", "same-origin")
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        if request.endpoint not in CACHEABLE or "Cache-Control" not in headers:
            # Private pages must not come back from the cache after logout.
            headers["Cache-Control"] = "no-store"
        if production:
            headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
        return response


def _looks_local(target: str) -> bool:
    if not target.startswith("/") or target.startswith("//"):
        return False
    # Backslashes and control or space characters are read as "/" or dropped by
    # some browsers, turning "/\evil.example" into a host.
    if any(ch == "\\" or ord(ch) < 33 or ord(ch) == 127 for ch in target):
        return False
    parts = urlsplit(target)
    return not parts.scheme and not parts.netloc


def safe_next(target: str | None) -> str | None:
    """`target` if it is a same-site relative path, else None."""
    if not target or len(target) > 2000:
        return None
    # Check the raw value and its decodings: a browser or a proxy may decode once more.
    candidate = target
    for _ in range(4):
        if not _looks_local(candidate):
            return None
        decoded = unquote(candidate)
        if decoded == candidate:
            return target
        candidate = decoded
    return None


def admin_required(view):
    """Signed in, and an admin (403 otherwise)."""
    @wraps(view)
    @login_required
    def wrapped(*args, **kwargs):
        if not current_user.is_admin:
            abort(403)
        return view(*args, **kwargs)

    return wrapped


def send_limit() -> str:
    """A person's sends a minute (SENDS_PER_MINUTE_PER_USER), for @limiter.limit."""
    return f"{current_settings().sends_per_minute_per_user} per minute"


def max_upload_bytes() -> int:
    """What a form with files may weigh (MAX_UPLOAD_MB), for @body_limit."""
    return current_settings().max_upload_mb * 1024 * 1024


def user_key() -> str:
    """A rate limit's key: the account id, not the login id, so that a new session does
    not reset the count."""
    return f"user:{getattr(current_user, 'id', 'anonymous')}"
