from __future__ import annotations

import time

from flask import abort, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, login_url, login_user, logout_user

from .. import audit
from ..config import current_settings
from ..extensions import db, limiter, login_manager
from ..models import User
from ..security import admin_required, safe_next
from . import bp, service, sessions, throttle
from . import two_factor as two_factor_service
from .forms import (
    ActionForm,
    ChangePasswordForm,
    CodeForm,
    CreateUserForm,
    DisableTwoFactorForm,
    LoginForm,
    RequireTwoFactorForm,
    ResetPasswordForm,
    RoleForm,
    TimeZoneForm,
)
from .passwords import WeakPassword
from .sessions import SignedInUser

login_manager.login_view = "auth.login"
login_manager.login_message = "Please log in to see this page."
login_manager.login_message_category = "info"


@login_manager.user_loader
def load_user(token: str) -> SignedInUser | None:
    # The id is the session's token: a session that ended (sign-out here or elsewhere,
    # timeout, password change, deactivation) names no open session and is refused.
    return service.signed_in_user(token)


@login_manager.unauthorized_handler
def unauthorized():
    reason = request.environ.get("webapp.session_ended")
    if reason == "idle":
        minutes = current_settings().session_idle_minutes
        message = (f"You were signed out after {minutes} minutes without activity. "
                   "Sign in again to carry on.")
    elif reason == "expired":
        message = "You were signed out: a session lasts 12 hours at most. Sign in again."
    else:
        message = login_manager.login_message
    flash(message, "warning" if reason else "info")
    target = login_url(login_manager.login_view, request.url)
    if request.headers.get("HX-Request"):
        # A fragment that polls: the whole page goes to the sign-in form, not the fragment.
        return "", 401, {"HX-Redirect": target}
    return redirect(target)


# What a person may still open before choosing their own password or, where the team
# requires it, before turning two-factor sign-in on.
_ALWAYS_OPEN = frozenset({"auth.logout", "auth.login", "auth.login_code", "auth.keep_alive",
                          "static", "livez", "healthz", "favicon", "webhooks.plivo_status"})
_BEFORE_NEW_PASSWORD = _ALWAYS_OPEN | {"auth.change_password"}
_BEFORE_TWO_FACTOR = _ALWAYS_OPEN | {"auth.two_factor", "auth.two_factor_start",
                                     "auth.two_factor_confirm"}


@bp.before_app_request
def require_own_password_and_second_factor():
    """The first admin's printed password must be replaced before anything else; where
    two-factor is required, a person without one sets it up before anything else."""
    if request.endpoint in _ALWAYS_OPEN:
        return None  # decided without loading the user
    if not current_user.is_authenticated:
        return None
    if current_user.must_change_password and request.endpoint not in _BEFORE_NEW_PASSWORD:
        flash("Choose your own password first: the one you signed in with was printed "
              "when the dashboard was set up.", "warning")
        return redirect(url_for("auth.change_password"), 303)
    if current_user.must_enrol and request.endpoint not in _BEFORE_TWO_FACTOR:
        flash("Two-factor sign-in is required here. Set it up to carry on.", "warning")
        return redirect(url_for("auth.two_factor"), 303)
    return None


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


def _signed_in(user: User, second_factor: str | None, target: str | None):
    session.clear()  # a fresh session at sign-in: nothing from before carries over
    login_user(service.sign_in(user, second_factor))
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
        if factor is not None:
            throttle.give_back(user.email, source, step="code")
            if factor == "recovery":
                audit.record("recovery_code_used", user.email, actor=user,
                             left=two_factor_service.recovery_codes_left(user.id))
                flash("You signed in with a recovery code; it cannot be used again. "
                      "Renew your codes on your account page if few are left.", "warning")
            return _signed_in(user, factor, pending.get("next"))
        audit.record_now("code_failed", user.email, email=user.email)
        form.code.errors.append("That code is not right, or it was used already. Type "
                                "the 6 digits your app shows now, or a recovery code.")
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
        flash("You have logged out.", "info")
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


@bp.route("/account", methods=["GET", "POST"])
@login_required
def account():
    form = TimeZoneForm(time_zone=current_user.time_zone or "")
    if form.validate_on_submit():
        try:
            service.set_time_zone(current_user.record(), form.time_zone.data)
        except service.AccountError as exc:
            form.time_zone.errors.append(str(exc))
        else:
            flash("Saved: times now show in " + (form.time_zone.data
                                                 or "the dashboard's time zone") + ".",
                  "success")
            return redirect(url_for("auth.account"), 303)
    return render_template("auth/account.html", form=form,
                           dashboard_zone=current_settings().display_timezone.key), (
        400 if request.method == "POST" else 200)


@bp.get("/account/two-factor")
@login_required
def two_factor():
    person = current_user
    if two_factor_service.has_factor(person.id):
        return render_template("auth/two_factor.html", on=True,
                               left=two_factor_service.recovery_codes_left(person.id),
                               disable_form=DisableTwoFactorForm(), action_form=ActionForm(),
                               required=two_factor_service.required())
    return _enrolment_page(two_factor_service.factor_for(person.id, confirmed=False),
                           CodeForm())


def _enrolment_page(pending, code_form: CodeForm, status: int = 200):
    """Set up two-factor: the start button, or the QR code of `pending` and its code form."""
    person = current_user
    enrolment = two_factor_service.enrolment(person.email, pending.secret) if pending else None
    return render_template("auth/two_factor.html", on=False, enrolment=enrolment,
                           code_form=code_form, action_form=ActionForm(),
                           required=person.must_enrol), status


@bp.post("/account/two-factor/start")
@login_required
def two_factor_start():
    if ActionForm().validate_on_submit():
        try:
            two_factor_service.begin(current_user.record())
        except two_factor_service.TwoFactorError as exc:
            flash(str(exc), "info")
    return redirect(url_for("auth.two_factor"), 303)


@bp.post("/account/two-factor/confirm")
@login_required
def two_factor_confirm():
    form = CodeForm()
    person = current_user
    pending = two_factor_service.factor_for(person.id, confirmed=False)
    if pending is None:
        flash("Start again: the set-up was finished or cancelled elsewhere.", "info")
        return redirect(url_for("auth.two_factor"), 303)
    if form.validate_on_submit():
        try:
            codes = two_factor_service.confirm(person.record(), form.code.data)
        except two_factor_service.TwoFactorError as exc:
            form.code.errors.append(str(exc))
        else:
            return render_template("auth/recovery_codes.html", codes=codes, fresh=True)
    return _enrolment_page(pending, form, 400)


@bp.post("/account/two-factor/recovery-codes")
@login_required
def renew_recovery_codes():
    if not ActionForm().validate_on_submit():
        return redirect(url_for("auth.two_factor"), 303)
    try:
        codes = two_factor_service.renew_recovery_codes(current_user.record())
    except two_factor_service.TwoFactorError as exc:
        flash(str(exc), "error")
        return redirect(url_for("auth.two_factor"), 303)
    return render_template("auth/recovery_codes.html", codes=codes, fresh=False)


@bp.post("/account/two-factor/disable")
@login_required
def disable_two_factor():
    form = DisableTwoFactorForm()
    if form.validate_on_submit():
        try:
            two_factor_service.disable(current_user.record(), form.password.data,
                                       current_user.session_id)
        except two_factor_service.TwoFactorError as exc:
            flash(str(exc), "error")
        else:
            flash("Two-factor sign-in is off, and your other sessions are signed out.",
                  "success")
    return redirect(url_for("auth.two_factor"), 303)


@bp.get("/account/sessions")
@login_required
def account_sessions():
    return render_template("auth/sessions.html", action_form=ActionForm(),
                           open_sessions=sessions.active_for(current_user.id,
                                                             current_user.session_id),
                           idle_minutes=current_settings().session_idle_minutes)


@bp.post("/account/sessions/end-others")
@login_required
def end_other_sessions():
    if ActionForm().validate_on_submit():
        ended = service.end_sessions(current_user.record(), current_user,
                                     keep_session_id=current_user.session_id)
        flash(f"Signed out everywhere else ({ended} session{'' if ended == 1 else 's'} "
              "ended).", "success")
    return redirect(url_for("auth.account_sessions"), 303)


@bp.route("/account/password", methods=["GET", "POST"])
@login_required
def change_password():
    form = ChangePasswordForm()
    if form.validate_on_submit():
        try:
            renewed = service.change_own_password(current_user, form.current_password.data,
                                                  form.new_password.data)
        except service.AccountError as exc:
            form.current_password.errors.append(str(exc))
        except WeakPassword as exc:
            form.new_password.errors.append(str(exc))
        else:
            session.clear()
            login_user(renewed)
            flash("Your password has changed. Other sessions have been logged out.", "success")
            return redirect(url_for("overview.index"), 303)
    return render_template("auth/change_password.html", form=form)


@bp.route("/admin/users", methods=["GET", "POST"])
@admin_required
def users():
    form = CreateUserForm()
    if form.validate_on_submit():
        try:
            user = service.create_user(form.email.data, form.password.data, form.role.data,
                                       actor=current_user)
        except (service.AccountError, WeakPassword) as exc:
            form.email.errors.append(str(exc))
        else:
            flash(f"Account created for {user.email}.", "success")
            return redirect(url_for("auth.users"), 303)
    return render_template("admin/users.html", users=service.list_users(), form=form,
                           require_form=RequireTwoFactorForm(
                               required="on" if two_factor_service.required() else "off"),
                           forced_by_setting=current_settings().require_two_factor)


@bp.post("/admin/two-factor-requirement")
@admin_required
def require_two_factor():
    form = RequireTwoFactorForm()
    if form.validate_on_submit():
        two_factor_service.set_required(form.required.data == "on", current_user)
        flash("Two-factor sign-in is now required for everyone: people without it set it "
              "up at their next page." if form.required.data == "on" else
              "Each person now chooses whether to use two-factor sign-in.", "success")
    return redirect(url_for("auth.users"), 303)


@bp.post("/admin/users/<int:user_id>/sessions/end")
@admin_required
def end_user_sessions(user_id: int):
    user = _user_or_404(user_id)
    if ActionForm().validate_on_submit():
        ended = service.end_sessions(user, current_user)
        flash(f"{user.email} is signed out everywhere ({ended} session"
              f"{'' if ended == 1 else 's'} ended).", "success")
    return redirect(url_for("auth.user_detail", user_id=user.id), 303)


@bp.post("/admin/users/<int:user_id>/two-factor/reset")
@admin_required
def reset_two_factor(user_id: int):
    user = _user_or_404(user_id)
    if ActionForm().validate_on_submit():
        two_factor_service.reset(user)
        flash(f"Two-factor sign-in is reset for {user.email}, and they are signed out. "
              "They sign in with their password and set it up again.", "success")
    return redirect(url_for("auth.user_detail", user_id=user.id), 303)


@bp.get("/admin/users/<int:user_id>")
@admin_required
def user_detail(user_id: int):
    return _user_page(_user_or_404(user_id))


def _user_page(user: User, reset_form: ResetPasswordForm | None = None, status: int = 200):
    return render_template("admin/user.html", user=user,
                           reset_form=reset_form or ResetPasswordForm(),
                           role_form=RoleForm(role=user.role), action_form=ActionForm(),
                           has_factor=two_factor_service.has_factor(user.id),
                           open_sessions=sessions.active_for(user.id)), status


@bp.post("/admin/users/<int:user_id>/password")
@admin_required
def reset_password(user_id: int):
    user = _user_or_404(user_id)
    form = ResetPasswordForm()
    if form.validate_on_submit():
        try:
            service.set_password(user, form.password.data, actor=current_user)
        except WeakPassword as exc:
            form.password.errors.append(str(exc))
        else:
            flash(f"Password reset for {user.email}; their sessions have ended.", "success")
            return redirect(url_for("auth.user_detail", user_id=user.id), 303)
    return _user_page(user, form, 400)


@bp.post("/admin/users/<int:user_id>/role")
@admin_required
def change_role(user_id: int):
    user = _user_or_404(user_id)
    form = RoleForm()
    if form.validate_on_submit():
        _apply(lambda: service.set_role(user, form.role.data, actor=current_user),
               f"{user.email} is now {form.role.data}.")
    return redirect(url_for("auth.user_detail", user_id=user.id), 303)


@bp.post("/admin/users/<int:user_id>/deactivate")
@admin_required
def deactivate(user_id: int):
    user = _user_or_404(user_id)
    if ActionForm().validate_on_submit():
        _apply(lambda: service.set_active(user, False, actor=current_user),
               f"{user.email} is deactivated and logged out everywhere.")
    return redirect(url_for("auth.user_detail", user_id=user.id), 303)


@bp.post("/admin/users/<int:user_id>/unlock")
@admin_required
def unlock(user_id: int):
    user = _user_or_404(user_id)
    if ActionForm().validate_on_submit():
        throttle.unlock(user.email)
        audit.record_now("account_unlocked", user.email)
        flash(f"{user.email} can sign in again at once: failed attempts are forgotten.",
              "success")
    return redirect(url_for("auth.user_detail", user_id=user.id), 303)


@bp.post("/admin/users/<int:user_id>/activate")
@admin_required
def activate(user_id: int):
    user = _user_or_404(user_id)
    if ActionForm().validate_on_submit():
        _apply(lambda: service.set_active(user, True, actor=current_user),
               f"{user.email} can log in again.")
    return redirect(url_for("auth.user_detail", user_id=user.id), 303)


def _user_or_404(user_id: int) -> User:
    return db.session.get(User, user_id) or abort(404)


def _apply(change, success: str) -> None:
    try:
        change()
    except service.AccountError as exc:
        flash(str(exc), "error")
    else:
        flash(success, "success")
