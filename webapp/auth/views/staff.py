"""Staff accounts, for admins: create, reset, change role, deactivate, unlock, end sessions."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, url_for
from flask_login import current_user

from webapp import audit, confirm
from webapp.auth import service, sessions, throttle
from webapp.auth import two_factor as two_factor_service
from webapp.auth.forms import (
    ActionForm,
    CreateUserForm,
    RequireTwoFactorForm,
    ResetPasswordForm,
    RoleForm,
)
from webapp.auth.passwords import WeakPassword
from webapp.auth.views import bp
from webapp.config import current_settings
from webapp.extensions import db
from webapp.models import User
from webapp.security import admin_required


@bp.route("/admin/users", methods=["GET", "POST"])
@admin_required
def users():
    form = CreateUserForm()
    if form.validate_on_submit():
        try:
            # The admin has seen this password: the person chooses their own first.
            user = service.create_user(form.email.data, form.password.data, form.role.data,
                                       actor=current_user, must_change_password=True)
        except (service.AccountError, WeakPassword) as exc:
            form.email.errors.append(str(exc))
        else:
            flash(f"Account created for {user.email}. Pass the password on to them: they "
                  "choose their own when they first sign in.", "success")
            return redirect(url_for("auth.users"), 303)
    return render_template("auth/users.html", users=service.list_users(), form=form,
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
    if not confirm.confirmed():
        open_now = len(sessions.active_for(user.id))
        return confirm.ask(
            title=f"End every session of {user.email}?",
            consequence=f"{user.email} is signed out of every browser at once ({open_now} "
                        f"open session{'' if open_now == 1 else 's'}) and must sign in again. "
                        "Their account and messages stay as they are.",
            label="End all sessions", back=url_for("auth.user_detail", user_id=user.id))
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
    return render_template("auth/user.html", user=user,
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
            flash(f"Password reset for {user.email}; their sessions have ended. They choose "
                  "their own password when they next sign in.", "success")
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
    if not confirm.confirmed():
        return confirm.ask(
            title=f"Deactivate {user.email}?",
            consequence=f"{user.email} is signed out everywhere at once and cannot sign in "
                        "until an admin reactivates the account. Their messages, lists and "
                        "history stay; nothing they sent is called back.",
            label="Deactivate account", back=url_for("auth.user_detail", user_id=user.id))
    if ActionForm().validate_on_submit():
        _apply(lambda: service.set_active(user, False, actor=current_user),
               f"{user.email} is deactivated and signed out everywhere.")
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
               f"{user.email} can sign in again.")
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
