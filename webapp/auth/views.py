from __future__ import annotations

import logging

from flask import abort, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, login_user, logout_user

from ..config import current_settings
from ..extensions import db, limiter, login_manager
from ..logs import event
from ..models import User
from ..security import admin_required, safe_next
from . import bp, service, throttle
from .forms import (
    ActionForm,
    ChangePasswordForm,
    CreateUserForm,
    LoginForm,
    ResetPasswordForm,
    RoleForm,
    TimeZoneForm,
)
from .passwords import WeakPassword

log = logging.getLogger(__name__)

login_manager.login_view = "auth.login"
login_manager.login_message = "Please log in to see this page."
login_manager.login_message_category = "info"


@login_manager.user_loader
def load_user(session_id: str) -> service.SignedInUser | None:
    # The id carries the session version: a cookie issued before a logout,
    # password change or deactivation names an old version and is refused.
    return service.signed_in_user(session_id)


# What a person who must choose a new password may still open.
_BEFORE_NEW_PASSWORD = frozenset({"auth.change_password", "auth.logout", "auth.login",
                                  "static", "livez", "healthz", "favicon",
                                  "webhooks.plivo_status"})


@bp.before_app_request
def require_own_password():
    """The first admin's printed password must be replaced before anything else."""
    if request.endpoint in _BEFORE_NEW_PASSWORD:
        return None  # decided without loading the user
    if getattr(current_user, "must_change_password", False):
        flash("Choose your own password first: the one you signed in with was printed "
              "when the dashboard was set up.", "warning")
        return redirect(url_for("auth.change_password"), 303)
    return None


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
            event(log, "login throttled", logging.WARNING, email=account, address=source)
            form.password.errors.append(refusal.message)
            return (render_template("auth/login.html", form=form), 429,
                    {"Retry-After": str(refusal.retry_after)})
        user = service.authenticate(form.email.data, form.password.data)
        if user is not None:
            throttle.give_back(account, source)
            session.clear()  # a fresh session at login: nothing from before carries over
            login_user(user)
            event(log, "login succeeded", email=user.email, address=request.remote_addr)
            target = safe_next(request.args.get("next")) or url_for("overview.index")
            return redirect(target, 303)
        event(log, "login failed", logging.WARNING,
              email=service.normalize_email(form.email.data), address=request.remote_addr)
        form.password.errors.append("Email or password is not right, or the account is "
                                    "deactivated.")
    return render_template("auth/login.html", form=form)


@bp.post("/logout")
@login_required
def logout():
    form = ActionForm()
    if form.validate_on_submit():
        service.end_all_sessions(current_user.record())
        event(log, "logout", email=current_user.email)
        logout_user()
        session.clear()
        flash("You have logged out.", "info")
    return redirect(url_for("auth.login"), 303)


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


@bp.route("/account/password", methods=["GET", "POST"])
@login_required
def change_password():
    form = ChangePasswordForm()
    if form.validate_on_submit():
        user = current_user.record()
        try:
            service.change_own_password(user, form.current_password.data,
                                        form.new_password.data)
        except service.AccountError as exc:
            form.current_password.errors.append(str(exc))
        except WeakPassword as exc:
            form.new_password.errors.append(str(exc))
        else:
            # Every other session ends; this one continues under the new version.
            login_user(user)
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
    return render_template("admin/users.html", users=service.list_users(), form=form)


@bp.get("/admin/users/<int:user_id>")
@admin_required
def user_detail(user_id: int):
    user = _user_or_404(user_id)
    return render_template("admin/user.html", user=user, reset_form=ResetPasswordForm(),
                           role_form=RoleForm(role=user.role), action_form=ActionForm())


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
    return render_template("admin/user.html", user=user, reset_form=form,
                           role_form=RoleForm(role=user.role), action_form=ActionForm()), 400


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
        event(log, "sign-in unlocked", email=user.email, by=current_user.email)
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
