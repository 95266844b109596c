"""Helpers for tests of accounts: two-factor enrolment as a person does it, the two sign-in
steps, and the audit entries written."""

from __future__ import annotations

import re

import pyotp
from sqlalchemy import select

from tests.conftest import (
    PASSWORD,
    T0,  # noqa: F401
    login,
    post_form,
)
from tests.helpers import url
from webapp.extensions import db
from webapp.models import AuditEvent

SECRET_RE = re.compile(r'id="totp-secret">([A-Z2-7 ]+)<')


CODES_RE = re.compile(r"<li><code>([a-z0-9]{5}-[a-z0-9]{5})</code></li>")


def entries(app, action: str | None = None) -> list[AuditEvent]:
    with app.app_context():
        statement = select(AuditEvent).order_by(AuditEvent.id)
        if action:
            statement = statement.where(AuditEvent.action == action)
        rows = list(db.session.scalars(statement))
        db.session.expunge_all()
        return rows


def enrol(client) -> tuple[str, list[str]]:
    """Turn two-factor on for the signed-in person as they would: start, read the key off
    the page, type the app's code. The secret and the recovery codes."""
    assert post_form(client, url("auth.two_factor_start"), {},
                     form_page=url("auth.two_factor")).status_code == 303
    page = client.get(url("auth.two_factor")).get_data(as_text=True)
    secret = SECRET_RE.search(page).group(1).replace(" ", "")
    assert 'src="data:image/svg+xml' in page  # the QR code, made here
    answer = post_form(client, url("auth.two_factor_confirm"),
                       {"code": pyotp.TOTP(secret).now()}, form_page=url("auth.two_factor"))
    assert answer.status_code == 200, answer.get_data(as_text=True)[:400]
    codes = CODES_RE.findall(answer.get_data(as_text=True))
    assert len(codes) == 10 and len(set(codes)) == 10
    return secret, codes


def code_step(client, code: str):
    return post_form(client, url("auth.login_code"), {"code": code})


def password_step(client, email: str, password: str = PASSWORD):
    return login(client, email, password)

