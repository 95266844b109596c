"""Compose and send: the compose page, the page after Send, and a message sent again."""

from __future__ import annotations

from flask import (
    Blueprint,
    abort,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user, login_required

from webapp import statuses
from webapp.auth.sessions import passive
from webapp.callbacks import reconcile
from webapp.config import current_settings
from webapp.extensions import limiter
from webapp.history import pages as history
from webapp.history import rows
from webapp.messages import opt_outs, presentation
from webapp.models import utcnow
from webapp.pictures import library, preparation
from webapp.security import body_limit, max_upload_bytes, send_limit, user_key
from webapp.sending import eta, senders
from webapp.sending import submission as sending
from webapp.sending.forms import ComposeForm

bp = Blueprint("sending", __name__)


@bp.route("/messages/new", methods=["GET", "POST"])
@body_limit(max_upload_bytes)
@login_required
@limiter.limit(send_limit, key_func=user_key, methods=["POST"])
def compose():
    settings = current_settings()
    form = ComposeForm(senders=senders.choices(settings),
                       test_hosts=settings.media_probe_allow_hosts, opted_out=opt_outs.among)
    file_errors: list[str] = []
    if request.method == "GET":  # "Copy to a new message", "Use in a new message"
        draft = sending.copy_of(current_user, request.args.get("copy"),
                                request.args.get("copy_send"), request.args.get("media"))
        if draft is not None:  # a fresh idempotency key: this is a new send
            form.fill_from(draft, presentation.format_phone)
    else:
        # CSRF was checked before the view (CSRFProtect): the files are this person's.
        stored, file_errors = library.attach(request.files.getlist(form.files.name),
                                             current_user)
        form.attach([media.sha256 for media, _notes in stored],
                    removed=request.form.getlist("remove_upload"))
    valid = form.validate_on_submit() and not file_errors
    media = form.parsed_media + [{"upload": sha} for sha in form.parsed_uploads]
    repeat_of = None
    if valid and request.form.get("confirm_repeat") != "yes" and not sending.key_used(
            current_user, form.idempotency_key.data):
        # The same message to the same people minutes ago (Back, then Send): ask first.
        repeat_of = sending.sent_recently(current_user, form.parsed_recipients,
                                          form.text.data or "", media)
    if valid and repeat_of is None:
        result = sending.submit(current_user, sending.Draft(
            sender=form.sender.data, recipients=form.parsed_recipients,
            text=form.text.data or "", media=media,
            idempotency_key=form.idempotency_key.data))
        if not result.errors:
            for warning in result.warnings:
                flash(warning, "warning")
            return redirect(url_for("sending.sent", key=form.idempotency_key.data), 303)
        rest = form.mark_media_rows(result.errors)  # a probed address's own problem
        form.media.errors = list(form.media.errors) + (rest or [
            "This item needs fixing: see it above." if len(result.errors) == 1 else
            f"{len(result.errors)} of the items need fixing: see each one above."])
    status = 400 if request.method == "POST" and repeat_of is None else 200
    attached = library.find_many(form.uploaded.data or [])
    return render_template("sending/compose.html", form=form, file_errors=file_errors,
                           attached=[attached[sha] for sha in form.uploaded.data or []
                                     if sha in attached],
                           accept=preparation.ACCEPT, repeat_of=repeat_of,
                           repeat_minutes=repeat_of and max(
                               1, round((utcnow() - repeat_of).total_seconds() / 60)),
                           max_upload_mb=settings.max_upload_mb), status


@bp.get("/messages/sent/<key>")
@login_required
def sent(key: str):
    return render_template("sending/sent.html", **_send_live(key))


@bp.get("/messages/sent/<key>/live")
@passive
@login_required
def sent_live(key: str):
    """The summary and rows of one send: one poll refreshes both; 286 (htmx stops
    polling) once every message is final."""
    live = _send_live(key)
    status = 286 if live["summary"].settled else 200
    return render_template("sending/_send_live.html", **live), status


def _send_live(key: str) -> dict:
    table_rows = history.table_rows_for_send(current_user.id, key)
    if not table_rows:
        abort(404)
    shown = rows.present_rows(table_rows)
    waiting = sum(1 for row in shown if row.status == statuses.PENDING)
    return {"rows": shown, "summary": rows.summarize(shown, table_rows), "key": key,
            "bad_statuses": sorted(statuses.BAD_ENDINGS),
            "next_in_line": eta.duration_words(eta.next_in_line_seconds()) if waiting else None}


@bp.post("/messages/<public_id>/send-again", endpoint="send_again")
@login_required
@limiter.limit(send_limit, key_func=user_key)
def send_again(public_id: str):
    message = history.message_by_public_id(public_id) or abort(404)
    if message.status != statuses.NOT_SENT:
        flash("Only a message Plivo never received can be sent again from its page.", "error")
        return redirect(url_for("history.detail", public_id=public_id), 303)
    again = sending.send_again(current_user, message)
    flash("Sent again as this new message.", "success")
    return redirect(url_for("history.detail", public_id=again.public_id), 303)


@bp.post("/messages/<public_id>/adopt", endpoint="adopt")
@login_required
def adopt(public_id: str):
    """A person chose which message in Plivo's list is this unknown one."""
    message = history.message_by_public_id(public_id) or abort(404)
    if reconcile.adopt_candidate(message, (request.form.get("plivo_uuid") or "")[:64]):
        flash("Done: the message now follows Plivo's record of it.", "success")
    else:
        flash("That Plivo message is not one of this message's candidates, or the message "
              "was resolved meanwhile.", "error")
    return redirect(url_for("history.detail", public_id=public_id), 303)


