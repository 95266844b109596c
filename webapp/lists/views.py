"""Sending to a list (batches), and the opt-out list admins keep. Thin: drafts, controls
and reports do the work, list_file reads the lists."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from flask import (
    Blueprint,
    Response,
    abort,
    flash,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)
from flask_login import current_user, login_required

from webapp import confirm, statuses
from webapp.auth.sessions import passive
from webapp.config import current_settings
from webapp.extensions import limiter
from webapp.lists import controls, drafts, list_file, reports, states
from webapp.lists.list_file import ListError
from webapp.messages import opt_outs, presentation
from webapp.models import utcnow
from webapp.phones import e164
from webapp.pictures import library, preparation
from webapp.security import admin_required, body_limit, max_upload_bytes, send_limit, user_key
from webapp.sending import senders
from webapp.sending.forms import BatchForm

# Its own blueprint: the history's and compose's views stay independent of these.
bp = Blueprint("lists", __name__)


def _csv(lines, name: str) -> Response:
    return Response(stream_with_context(lines), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


@bp.route("/batches/new", methods=["GET", "POST"], endpoint="new_batch")
@body_limit(max_upload_bytes)
@login_required
@limiter.limit(send_limit, key_func=user_key, methods=["POST"])
def new_batch():
    """The list (a CSV file or pasted rows), the text with ((placeholders)), the
    pictures: read and checked into a draft, then the preview. Nothing is sent here."""
    settings = current_settings()
    form = BatchForm(senders=senders.choices(settings), test_hosts=settings.media_probe_allow_hosts)
    file_errors: list[str] = []
    list_error = None
    if request.method == "GET" and request.args.get("media"):  # "Use in a list send"
        stored = library.find(request.args["media"][:64])
        if stored is not None:
            form.uploaded.data = [stored.sha256]
    if request.method == "POST":
        stored, file_errors = library.attach(request.files.getlist(form.files.name),
                                             current_user)
        form.attach([media.sha256 for media, _notes in stored],
                    removed=request.form.getlist("remove_upload"))
    if request.method == "POST" and request.form.get("from_compose"):  # CSRF checked already
        # Compose had more numbers than a single send takes ("Send it as a list"): the
        # same numbers, text and pictures, as a list to check. Nothing is recorded yet.
        form.pasted.data = (request.form.get("recipients") or "")[:MAX_CARRIED_CHARS]
        flash("Your numbers, message and pictures are here. Check them, then press "
              "“Check the list”: nothing is sent before you confirm.", "info")
        return _new_batch_page(form, None, file_errors, settings), 200
    if form.validate_on_submit() and not file_errors:
        chosen = form.list_file.data
        try:
            if chosen is not None and (chosen.filename or "").strip():
                table = list_file.read_upload(chosen.stream, settings.max_batch_recipients)
                name = chosen.filename.strip()
            elif (form.pasted.data or "").strip():
                table = list_file.read_pasted(form.pasted.data, settings.max_batch_recipients)
                name = "Pasted list"
            else:
                raise ListError("Choose a CSV file with your list, or paste its rows.")
        except ListError as exc:
            list_error = str(exc)
        else:
            token = drafts.create_draft(current_user, name=name, table=table,
                                         sender=form.sender.data, text=form.text.data or "",
                                         media=form.all_media)
            return redirect(url_for("lists.batch_draft", token=token), 303)
    return _new_batch_page(form, list_error, file_errors, settings), (
        400 if request.method == "POST" else 200)


# What compose may carry over into a list send's pasted rows (its body is capped anyway).
MAX_CARRIED_CHARS = 200_000


def _new_batch_page(form, list_error, file_errors, settings) -> str:
    attached = library.find_many(form.uploaded.data or [])
    return render_template(
        "lists/batch_new.html", form=form, list_error=list_error, file_errors=file_errors,
        attached=[attached[sha] for sha in form.uploaded.data or [] if sha in attached],
        accept=preparation.ACCEPT, max_rows=settings.max_batch_recipients,
        max_upload_mb=settings.max_upload_mb)


def _draft_or_404(token: str):
    return drafts.draft_for(current_user, token) or abort(404)


@bp.get("/batches/drafts/<token>", endpoint="batch_draft")
@login_required
def batch_draft(token: str):
    draft, table = _draft_or_404(token)
    seen = drafts.preview(current_user, draft, table)
    return render_template("lists/batch_preview.html", draft=draft, table=table, seen=seen,
                           media=draft.media,
                           config_long_hours=current_settings().long_send_confirm_hours)


@bp.post("/batches/drafts/<token>/column", endpoint="batch_column")
@login_required
def batch_column(token: str):
    """The person chose which column holds the numbers."""
    draft, table = _draft_or_404(token)
    raw = request.form.get("column", "")
    try:
        drafts.choose_number_column(draft, table, int(raw) if raw.isdigit() else -1)
    except ListError as exc:
        flash(str(exc), "error")
    return redirect(url_for("lists.batch_draft", token=token), 303)


@bp.post("/batches/drafts/<token>/text", endpoint="batch_text")
@login_required
def batch_text(token: str):
    """The person corrected the message on the preview."""
    draft, _table = _draft_or_404(token)
    try:
        drafts.change_text(draft, request.form.get("text", ""))
    except ListError as exc:
        flash(str(exc), "error")
    else:
        flash("The message is changed; check the preview again.", "success")
    return redirect(url_for("lists.batch_draft", token=token), 303)


@bp.get("/batches/drafts/<token>/left-out.csv", endpoint="batch_left_out")
@login_required
def batch_left_out(token: str):
    """The rows that will not be sent to, with their row number and why (the person's own
    list: nothing anyone else sent)."""
    draft, table = _draft_or_404(token)
    seen = drafts.preview(current_user, draft, table)
    return _csv(drafts.problems_csv(seen.check), "left-out.csv")


@bp.post("/batches/drafts/<token>/confirm", endpoint="confirm_batch")
@login_required
@limiter.limit(send_limit, key_func=user_key)
def confirm_batch(token: str):
    batch, errors = controls.confirm(current_user, token,
                                     long_send_ok=request.form.get("long_send") == "yes")
    if batch is None:
        for error in errors:
            flash(error, "error")
        if drafts.draft_for(current_user, token) is None:
            return redirect(url_for("lists.new_batch"), 303)
        return redirect(url_for("lists.batch_draft", token=token), 303)
    return redirect(url_for("lists.batch", public_id=batch.public_id), 303)


@bp.get("/batches", endpoint="batches")
@login_required
def batch_list():
    found = reports.recent()
    return render_template("lists/batches.html", found=found,
                           progress={b.id: reports.progress(b) for b in found},
                           labels=states.LABELS)


def _batch_or_404(public_id: str):
    return controls.batch_by_public_id(public_id) or abort(404)


def _batch_page(batch) -> dict:
    """What the page and its live part show, read together on each refresh so that the
    counts and the list of failures always agree."""
    return {"batch": batch, "progress": reports.progress(batch), "labels": states.LABELS,
            "may_manage": controls.may_manage(current_user, batch), "states": states,
            "retryable": reports.retryable(batch), "failures": reports.failures(batch),
            "status_labels": statuses.LABELS}


@bp.get("/batches/<public_id>", endpoint="batch")
@login_required
def batch_page(public_id: str):
    batch = _batch_or_404(public_id)
    return render_template("lists/batch.html", **_batch_page(batch))


@bp.get("/batches/<public_id>/progress", endpoint="batch_progress")
@passive
@login_required
def batch_progress(public_id: str):
    """The progress part alone, for the page's one poll; 286 (htmx stops) once nothing
    of the batch can move any more."""
    batch = _batch_or_404(public_id)
    page = _batch_page(batch)
    done = page["progress"].settled and batch.status not in states.OPEN
    return render_template("lists/_batch_progress.html", **page), 286 if done else 200


def _change(public_id: str, change, done: str, refused: str):
    batch = _batch_or_404(public_id)
    if not controls.may_manage(current_user, batch):
        abort(403)
    changed = change(batch, current_user)
    flash(done if changed else refused, "success" if changed else "error")
    return redirect(url_for("lists.batch", public_id=public_id), 303)


@bp.post("/batches/<public_id>/pause", endpoint="pause_batch")
@login_required
def pause_batch(public_id: str):
    return _change(public_id, controls.pause,
                   "Paused: nothing more is handed to Plivo until you resume.",
                   "It was not sending.")


@bp.post("/batches/<public_id>/resume", endpoint="resume_batch")
@login_required
def resume_batch(public_id: str):
    return _change(public_id, controls.resume, "Resumed: the rest is being sent.", "It was not paused.")


@bp.post("/batches/<public_id>/approve", endpoint="approve_batch")
@admin_required
def approve_batch(public_id: str):
    return _change(public_id, controls.approve, "Approved: sending has started.",
                   "It was not waiting for approval.")


@bp.post("/batches/<public_id>/cancel", endpoint="cancel_batch")
@login_required
def cancel_batch(public_id: str):
    batch = _batch_or_404(public_id)
    if not controls.may_manage(current_user, batch):
        abort(403)
    if not confirm.confirmed():
        seen = reports.progress(batch)
        gone = batch.total - seen.waiting
        return confirm.ask(
            title=f"Cancel the send to “{batch.name}”?",
            consequence=f"The {seen.waiting:,} message{'s' if seen.waiting != 1 else ''} not "
                        f"yet handed to Plivo will not be sent. The {gone:,} already handed "
                        "to Plivo cannot be called back. This cannot be undone: to send "
                        "again, copy it to a new list send.",
            label="Cancel what has not gone", back=url_for("lists.batch", public_id=public_id))
    cancelled = controls.cancel(batch, current_user)
    if cancelled is None:
        flash("It had already ended.", "error")
    else:
        gone = batch.total - cancelled
        flash(f"Cancelled: {cancelled:,} not sent; {gone:,} had already been handed to "
              "Plivo.", "success")
    return redirect(url_for("lists.batch", public_id=public_id), 303)


def _again(public_id: str, only_retryable: bool):
    batch = _batch_or_404(public_id)
    token = drafts.draft_from_batch(current_user, batch, only_retryable=only_retryable)
    if token is None:
        flash("None of its messages failed in a way that sending again may fix.", "error")
        return redirect(url_for("lists.batch", public_id=public_id), 303)
    return redirect(url_for("lists.batch_draft", token=token), 303)


@bp.post("/batches/<public_id>/retry", endpoint="retry_batch")
@login_required
@limiter.limit(send_limit, key_func=user_key)
def retry_batch(public_id: str):
    """"Retry the failed ones": a new draft of the final failures a retry may fix."""
    return _again(public_id, only_retryable=True)


@bp.post("/batches/<public_id>/copy", endpoint="copy_batch")
@login_required
@limiter.limit(send_limit, key_func=user_key)
def copy_batch(public_id: str):
    """"Copy to a new list send": a new draft of every recipient, to check and confirm."""
    return _again(public_id, only_retryable=False)


@bp.get("/batches/<public_id>/report.csv", endpoint="batch_report")
@login_required
def batch_report(public_id: str):
    batch = _batch_or_404(public_id)
    stamp = utcnow().strftime("%Y%m%d-%H%M%S")
    return _csv(reports.recorded_report(batch, current_user), f"list-send-{stamp}.csv")


# ---- admins: the opt-out list and the approval limits ---------------------------------------
@bp.get("/admin/opt-outs", endpoint="opt_outs")
@admin_required
def opt_out_list():
    search = request.args.get("q", "").strip()[:40]
    found, total = opt_outs.listing(search)
    most_recipients, most_cost = drafts.limits()
    return render_template("lists/opt_outs.html", found=found, total=total, q=search,
                           most_recipients=most_recipients, most_cost=most_cost,
                           consent=opt_outs.recent_consent(20))


@bp.get("/admin/consent.csv", endpoint="export_consent")
@admin_required
def export_consent():
    """Every opt-out and opt-in ever recorded (CASL and TCPA: proof of consent)."""
    return _csv(opt_outs.consent_export(current_user), "consent-history.csv")


@bp.post("/admin/opt-outs/add", endpoint="add_opt_out")
@admin_required
def add_opt_out():
    """A person asked to stop by phone, e-mail or in person."""
    try:
        number = e164((request.form.get("number") or "").strip()[:40])
    except ValueError as exc:
        flash(f"Not added: {exc}.", "error")
        return redirect(url_for("lists.opt_outs"), 303)
    if opt_outs.add(number, current_user):
        flash(f"{presentation.format_phone(number)} is on the opt-out list.", "success")
    else:
        flash(f"{presentation.format_phone(number)} was already on the list.", "warning")
    return redirect(url_for("lists.opt_outs"), 303)


@bp.get("/admin/opt-outs.csv", endpoint="export_opt_outs")
@admin_required
def export_opt_outs():
    return _csv(opt_outs.recorded_export(current_user), "opt-outs.csv")


@bp.post("/admin/opt-outs/remove", endpoint="remove_opt_out")
@admin_required
def remove_opt_out():
    number = (request.form.get("number") or "")[:16]
    if not confirm.confirmed():
        return confirm.ask(
            title=f"Take {presentation.format_phone(number)} off the opt-out list?",
            consequence="This person replied STOP. Messages can be sent to them again once "
                        "they are off the list: do it only if they texted START or asked "
                        "again in writing. The change is recorded in the audit log.",
            label="Take off the list", back=url_for("lists.opt_outs"))
    if opt_outs.remove(number, current_user):
        flash(f"{presentation.format_phone(number)} can be sent to again.", "success")
    else:
        flash("That number is not on the opt-out list.", "error")
    return redirect(url_for("lists.opt_outs"), 303)


@bp.post("/admin/batch-limits", endpoint="batch_limits")
@admin_required
def batch_limits():
    """The ceilings above which a staff member's send to a list waits for an admin."""
    raw_recipients = (request.form.get("recipients") or "").strip()
    raw_cost = (request.form.get("cost") or "").strip().lstrip("$")
    errors = []
    recipients = cost = None
    if raw_recipients:
        if not raw_recipients.isdigit() or not 1 <= int(raw_recipients) <= 1_000_000:
            errors.append("Recipients: enter a whole number from 1 to 1,000,000, or leave it "
                          "empty for no limit.")
        else:
            recipients = int(raw_recipients)
    if raw_cost:
        try:
            cost = Decimal(raw_cost)
            if not cost.is_finite() or not Decimal("0.01") <= cost <= Decimal("1000000"):
                raise InvalidOperation
        except InvalidOperation:
            errors.append("Cost: enter an amount in dollars from 0.01 to 1,000,000, or leave "
                          "it empty for no limit.")
            cost = None
    if errors:
        for error in errors:
            flash(error, "error")
    else:
        drafts.set_limits(recipients, cost, current_user)
        flash("Approval limits saved.", "success")
    return redirect(url_for("lists.opt_outs"), 303)
