"""Signing in (password, then the second factor when the person has one) and out."""

from __future__ import annotations

import time

from flask import abort, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, login_user, logout_user
from markupsafe import Markup

from webapp import audit
from webapp.auth import service, sessions, throttle
from webapp.auth import two_factor as two_factor_service
from webapp.auth.forms import (
    ActionForm,
    CodeForm,
    LoginForm,
)
from webapp.auth.views import bp
from webapp.extensions import db, limiter
from webapp.models import User
from webapp.security import safe_next

PENDING = "pending_sign_in"  # password accepted, waiting for the second factor
PENDING_SECONDS = 300


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit("20 per minute", methods=["POST"])
def login():
    if current_user.is_authenticated:
        return redirect(url_for("overview.index"))
    form = LoginForm()
    if form.validate_on_submit():
        account = service.normalize_email(form.email.data)[:254]
        source = request.remote_addr or "unknown"
        refusal = throttle.reserve(account, source)
        if refusal is not None:
            audit.record_now("sign_in_throttled", account, email=account, step="password")
            form.password.errors.append(refusal.message)
            return (render_template("auth/login.html", form=form), 429,
                    {"Retry-After": str(refusal.retry_after)})
        user = service.authenticate(form.email.data, form.password.data)
        if user is not None:
            throttle.give_back(account, source)
            target = safe_next(request.args.get("next"))
            if two_factor_service.has_factor(user.id):
                session.clear()
                session[PENDING] = {"user": user.id, "at": int(time.time()), "next": target}
                return redirect(url_for("auth.login_code"), 303)
            return _signed_in(user, None, target)
        audit.record_now("sign_in_failed", account, email=account, step="password")
        form.password.errors.append("Email or password is not right, or the account is "
                                    "deactivated.")
    return render_template("auth/login.html", form=form)


def _signed_in(user: User, second_factor: str | None, target: str | None,
               notes: list[str] | None = None):
    session.clear()  # a fresh session at sign-in: nothing from before carries over
    login_user(service.sign_in(user, second_factor))
    for note in notes or ():  # after the clear, or it would go with the old session
        flash(note, "warning")
    return redirect(target or url_for("overview.index"), 303)


def _pending_user() -> tuple[User | None, dict]:
    pending = session.get(PENDING)
    if not isinstance(pending, dict) or not isinstance(pending.get("user"), int) or (
            time.time() - pending.get("at", 0) > PENDING_SECONDS):
        return None, {}
    user = db.session.get(User, pending["user"])
    return (user if user is not None and user.is_active else None), pending


@bp.route("/login/code", methods=["GET", "POST"])
@limiter.limit("20 per minute", methods=["POST"])
def login_code():
    """The second step of signing in: the code from the authenticator app, or a
    recovery code. Throttled like the password."""
    if current_user.is_authenticated:
        return redirect(url_for("overview.index"))
    user, pending = _pending_user()
    if user is None:
        session.pop(PENDING, None)
        flash("Sign in again: the code was not entered within 5 minutes.", "info")
        return redirect(url_for("auth.login"), 303)
    form = CodeForm()
    if form.validate_on_submit():
        source = request.remote_addr or "unknown"
        refusal = throttle.reserve(user.email, source, step="code")
        if refusal is not None:
            audit.record_now("code_throttled", user.email, email=user.email)
            form.code.errors.append(refusal.message)
            return (render_template("auth/login_code.html", form=form), 429,
                    {"Retry-After": str(refusal.retry_after)})
        factor = two_factor_service.verify(user.id, form.code.data)
        if factor in (two_factor_service.TOTP, "recovery"):
            throttle.give_back(user.email, source, step="code")
            notes = []
            if factor == "recovery":
                left = two_factor_service.recovery_codes_left(user.id)
                audit.record("recovery_code_used", user.email, actor=user, left=left)
                notes.append(Markup(
                    "You signed in with a recovery code; it cannot be used again. "
                    "You have {left} left. <a href=\"{href}\">Make new recovery codes</a>.")
                    .format(left="no codes" if left == 0 else f"{left} code"
                            + ("s" if left != 1 else ""),
                            href=url_for("auth.two_factor")))
            return _signed_in(user, factor, pending.get("next"), notes)
        audit.record_now("code_failed", user.email, email=user.email)
        if factor == two_factor_service.SPENT:
            wait = two_factor_service.seconds_to_next_code()
            form.code.errors.append(f"That code was just used (a code works once, and "
                                    f"this one turned two-factor on or signed you in). "
                                    f"Wait for the next one, about {wait} s.")
        else:
            form.code.errors.append("That code is not right. Type the 6 digits your app "
                                    "shows now, or a recovery code.")
    return render_template("auth/login_code.html", form=form), (
        400 if form.errors else 200)


@bp.post("/logout")
@login_required
def logout():
    form = ActionForm()
    if form.validate_on_submit():
        service.sign_out(current_user)
        logout_user()
        session.clear()
        flash("You have signed out.", "info")
    return redirect(url_for("auth.login"), 303)


@bp.post("/account/keep-alive")
@login_required
def keep_alive():
    """The idle warning's "Stay signed in" (and typing in a page): the person is here."""
    if not ActionForm().validate_on_submit():
        abort(400)
    sessions.keep_alive(current_user.session_id)
    db.session.commit()
    return "", 204
