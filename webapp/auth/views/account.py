"""Your account: time zone, password, two-factor sign-in and the browsers signed in."""

from __future__ import annotations

from flask import flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, login_user

from webapp import confirm
from webapp.auth import service, sessions
from webapp.auth import two_factor as two_factor_service
from webapp.auth.forms import (
    ActionForm,
    ChangePasswordForm,
    CodeForm,
    DisableTwoFactorForm,
    TimeZoneForm,
)
from webapp.auth.passwords import WeakPassword
from webapp.auth.views import bp
from webapp.config import current_settings


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
                           required=person.must_enrol, grouped=two_factor_service.grouped), status


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
    if not confirm.confirmed():
        others = len(sessions.active_for(current_user.id)) - 1
        return confirm.ask(
            title="Sign out everywhere else?",
            consequence=f"Every other browser you are signed in on ({max(others, 0)}) is "
                        "signed out at once; this one stays signed in.",
            label="Sign out everywhere else", back=url_for("auth.account_sessions"))
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
            flash("Your password has changed. Your other sessions have been signed out.", "success")
            return redirect(url_for("overview.index"), 303)
    return render_template("auth/change_password.html", form=form)
