"""Response headers and safe redirects."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from flask import Flask, request

CSP = (
    "default-src 'self'; "
    "img-src 'self' https: data:; "
    "media-src 'self' https:; "
    "object-src 'none'; "
    "base-uri 'none'; "
    "form-action 'self'; "
    "frame-ancestors 'none'"
)


def init_app(app: Flask) -> None:
    production = app.extensions["settings"].production

    @app.after_request
    def set_security_headers(response):
        headers = response.headers
        headers.setdefault("Content-Security-Policy", CSP)
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("Referrer-Policy", "same-origin")
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        if request.endpoint != "static":
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
