"""What many tests need: a form's CSRF token, a clean environment for a child process,
a message row, and URLs by endpoint name. Plain functions, no pytest: bench/ uses them too.
"""

from __future__ import annotations

import itertools
import os
import re
import tempfile
from functools import cache
from typing import Any

CSRF_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')

# Settings a developer's shell may carry that would change what a child process does.
_SETTINGS_PREFIXES = ("PLIVO_", "APP_ENV")


def csrf_token_in(html: str) -> str:
    """The CSRF token of the (first) form on a page."""
    match = CSRF_RE.search(html)
    assert match, "no CSRF token on the page"
    return match.group(1)


def clean_environment(*more_prefixes: str, **settings: str) -> dict[str, str]:
    """This process's environment without the app's own settings (and any variables
    starting with `more_prefixes`), then `settings`: what a child process should see."""
    prefixes = (*_SETTINGS_PREFIXES, *more_prefixes)
    env = {key: value for key, value in os.environ.items() if not key.startswith(prefixes)}
    env.update(settings)
    return env


_keys = itertools.count(1)


def make_message(**fields: Any):
    """A Message with sensible defaults (not added to any session): user 1's pending
    message with one picture. Pass any column to change it."""
    from webapp.models import Message

    values: dict[str, Any] = {
        "created_by_id": 1, "idempotency_key": f"test-key-{next(_keys):06d}",
        "sender": "+14155550100", "recipient": "+14155550123", "text": "hi",
        "media": [{"url": "https://media.example.com/cat.jpg", "content_type": "image/jpeg",
                   "size": 1024}],
    }
    values.update(fields)
    return Message(**values)


@cache
def _routes_app():
    from webapp import create_app

    folder = tempfile.mkdtemp(prefix="mms-routes-")
    return create_app({"APP_ENV": "testing", "INSTANCE_PATH": folder, "MEDIA_PROBE": "off",
                       "DATABASE_URL": f"sqlite:///{folder}/routes.sqlite3",
                       "TASK_QUEUE_URL": "memory", "LOG_LEVEL": "warning"})


def url(endpoint: str, **values: Any) -> str:
    """The path of an endpoint (`url("sending.compose")`), as the app's url_for builds it,
    so a test follows a route that moves."""
    from flask import url_for

    with _routes_app().test_request_context():
        return url_for(endpoint, **values)


def save_message(app, **fields: Any) -> int:
    """make_message(**fields), committed in `app`'s database; returns its id."""
    from webapp.extensions import db

    with app.app_context():
        message = make_message(**fields)
        db.session.add(message)
        db.session.commit()
        return message.id


def wrong_passwords_at_once(base_url: str, email: str, count: int) -> list[int]:
    """`count` browsers, each with its own session and CSRF token, post a wrong password
    for `email` at the same moment; the status codes they got, in no order."""
    import threading

    import requests

    login = base_url + url("auth.login")
    browsers = [requests.Session() for _ in range(count)]
    tokens = [csrf_token_in(browser.get(login, timeout=10).text) for browser in browsers]
    start = threading.Barrier(count)
    codes: list[int] = []

    def guess(browser, token) -> None:
        start.wait()
        codes.append(browser.post(login, timeout=30, data={
            "csrf_token": token, "email": email, "password": "wrong password!!"}).status_code)

    threads = [threading.Thread(target=guess, args=pair)
               for pair in zip(browsers, tokens, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return codes
