from __future__ import annotations

from urllib.parse import quote

from flask import (
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

from .. import statuses
from ..auth.sessions import passive
from ..config import current_settings
from ..extensions import limiter
from ..models import utcnow
from ..security import body_limit, max_upload_bytes, send_limit, user_key
from . import bp, export, history, opt_outs, reconcile, rows, sending, uploads
from .forms import ComposeForm

for name, helper in rows.TEMPLATE_GLOBALS.items():
    bp.add_app_template_global(helper, name)
for name, helper in rows.TEMPLATE_FILTERS.items():
    bp.add_app_template_filter(helper, name)


@bp.route("/messages/new", methods=["GET", "POST"])
@body_limit(max_upload_bytes)
@login_required
@limiter.limit(send_limit, key_func=user_key, methods=["POST"])
def compose():
    settings = current_settings()
    form = ComposeForm(senders=settings.sender_numbers,
                       test_hosts=settings.media_probe_allow_hosts, opted_out=opt_outs.among)
    file_errors: list[str] = []
    if request.method == "GET":  # "Copy to a new message", "Use in a new message"
        draft = sending.copy_of(current_user, request.args.get("copy"),
                                request.args.get("copy_send"), request.args.get("media"))
        if draft is not None:  # a fresh idempotency key: this is a new send
            form.fill_from(draft, rows.format_phone)
    else:
        # CSRF was checked before the view (CSRFProtect): the files are this person's.
        stored, file_errors = uploads.attach(request.files.getlist(form.files.name),
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
            return redirect(url_for("messages.sent", key=form.idempotency_key.data), 303)
        rest = form.mark_media_rows(result.errors)  # a probed address's own problem
        form.media.errors = list(form.media.errors) + (rest or [
            "This item needs fixing: see it above." if len(result.errors) == 1 else
            f"{len(result.errors)} of the items need fixing: see each one above."])
    status = 400 if request.method == "POST" and repeat_of is None else 200
    attached = uploads.find_many(form.uploaded.data or [])
    return render_template("messages/compose.html", form=form, file_errors=file_errors,
                           attached=[attached[sha] for sha in form.uploaded.data or []
                                     if sha in attached],
                           accept=uploads.ACCEPT, repeat_of=repeat_of,
                           repeat_minutes=repeat_of and max(
                               1, round((utcnow() - repeat_of).total_seconds() / 60)),
                           max_upload_mb=settings.max_upload_mb), status


@bp.post("/media/upload", endpoint="upload_media")
@body_limit(max_upload_bytes)
@login_required
@limiter.limit("120 per minute", key_func=user_key)
def upload_media():
    """Compose's JavaScript sends each file here as soon as it is chosen, dropped or
    pasted (with a progress bar), and shows what came of it before Send: the card of
    each stored file (thumbnail, final size, "resized from", metadata removed), which
    carries the file into the form, or why it was refused. CSRF: X-CSRFToken."""
    stored, errors = uploads.attach(request.files.getlist("file"), current_user)
    if not stored and not errors:
        errors = ["No file arrived; choose it again."]
    return render_template("messages/_uploaded.html", stored=stored, errors=errors), (
        200 if stored else 400)


@bp.get("/media", endpoint="library")
@login_required
def media_library():
    """The team's pictures and files, newest first; search by file name."""
    name = request.args.get("q", "").strip()[:100]
    before = request.args.get("before", "")
    found, next_before = uploads.library(name, int(before) if before.isdigit()
                                         and len(before) < 10 else None)
    return render_template("messages/library.html", found=found, q=name,
                           next_before=next_before)


@bp.post("/media/<sha256>/delete", endpoint="delete_media")
@login_required
def delete_media(sha256: str):
    if not current_user.is_admin:
        abort(403)
    media = uploads.find(sha256)
    if media is None:
        abort(404)
    name = media.original_name
    waiting = uploads.waiting_uses(sha256)
    if waiting:
        flash(f"{name} is still used by {waiting} message{'s' if waiting != 1 else ''} "
              "waiting to be sent; it can be deleted once they have gone.", "error")
    elif uploads.delete(sha256):
        flash(f"{name} was deleted. Messages already sent with it keep their record.",
              "success")
    return redirect(url_for("messages.library"), 303)


@bp.get("/media/<sha256>")
@login_required
def media_file(sha256: str):
    """An uploaded file, to signed-in staff only, as the type it was stored as."""
    media = uploads.find(sha256)
    if media is None:
        abort(404)
    return _serve(media.data, media.content_type, uploads.download_name(media), sha256)


@bp.get("/media/<sha256>/thumbnail")
@login_required
def media_thumbnail(sha256: str):
    media = uploads.find(sha256)
    if media is None or not media.thumbnail:
        abort(404)
    return _serve(media.thumbnail, "image/jpeg", "thumbnail.jpg", sha256 + "-t")


def content_disposition(name: str) -> str:
    """inline, with the name in ASCII for old clients and in full (RFC 6266) for others."""
    fallback = "".join(c if c.isascii() and c.isprintable() and c not in '"\\;' else "_"
                       for c in name)
    return f"inline; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


def _serve(data: bytes, content_type: str, name: str, etag: str) -> Response:
    if request.if_none_match.contains(etag):
        response = Response(status=304)
    else:
        response = Response(data, content_type=content_type)
        response.headers["Content-Length"] = str(len(data))
    response.set_etag(etag)
    response.headers["X-Content-Type-Options"] = "nosniff"
    # Named by its content (sha256): what is at this address never changes.
    response.headers["Cache-Control"] = "private, max-age=31536000, immutable"
    response.headers["Content-Disposition"] = content_disposition(name)
    return response


@bp.get("/messages/sent/<key>")
@login_required
def sent(key: str):
    return render_template("messages/sent.html", **_send_live(key))


@bp.get("/messages/sent/<key>/live")
@passive
@login_required
def sent_live(key: str):
    """The summary and rows of one send: one poll refreshes both; 286 (htmx stops
    polling) once every message is final."""
    live = _send_live(key)
    status = 286 if live["summary"].settled else 200
    return render_template("messages/_send_live.html", **live), status


def _send_live(key: str) -> dict:
    table_rows = history.table_rows_for_send(current_user.id, key)
    if not table_rows:
        abort(404)
    shown = rows.present_rows(table_rows)
    return {"rows": shown, "summary": rows.summarize(shown, table_rows), "key": key,
            "bad_statuses": sorted(statuses.BAD_ENDINGS)}


@bp.get("/messages", endpoint="history")
@login_required
def history_page():
    zone = rows.display_zone()
    filters, errors = history.HistoryFilter.from_args(request.args, zone)
    messages, next_cursor = history.page(filters, request.args.get("before"))
    for error in errors:
        flash(error, "warning")
    query = request.args.to_dict(flat=False)
    query.pop("before", None)
    senders = history.senders(filters.sent_by)
    return render_template("messages/history.html", rows=rows.present_rows(messages),
                           filters=filters,
                           next_cursor=next_cursor, query=query, senders=senders,
                           sender_emails={row.id: row.email for row in senders},
                           all_statuses=statuses.ALL, labels=statuses.LABELS,
                           zone_name=getattr(filters.zone, "key", str(filters.zone)))


@bp.get("/messages/count", endpoint="count")
@login_required
def match_count():
    """How many messages the history filters match. htmx loads it into the history page
    after the table; without JavaScript the page links here and this is a page of its own."""
    filters, _errors = history.HistoryFilter.from_args(request.args, rows.display_zone())
    n, more = history.count(filters)
    query = request.args.to_dict(flat=False)
    query.pop("before", None)
    template = "messages/_count.html" if request.headers.get("HX-Request") else "messages/count.html"
    return render_template(template, n=n, more=more, filters=filters, query=query)


@bp.get("/messages/rows", endpoint="rows")
@passive
@login_required
def rows_poll():
    """The history rows named by `id` (one poll for a whole table), in that order.

    Answers 286 when every row is final: htmx stops polling on that status.
    """
    ids = [i for i in request.args.getlist("id")[:history.PAGE_SIZE] if len(i) <= 24]
    shown = rows.present_rows(history.table_rows_by_public_id(ids))
    status = 286 if all(row.is_final for row in shown) else 200
    return rows.history_rows(shown), status


@bp.get("/messages/<public_id>")
@login_required
def detail(public_id: str):
    message = history.message_by_public_id(public_id) or abort(404)
    return render_template("messages/detail.html", message=message,
                           events=history.timeline(message), gave_up=reconcile.gave_up(message))


@bp.post("/messages/<public_id>/send-again", endpoint="send_again")
@login_required
@limiter.limit(send_limit, key_func=user_key)
def send_again(public_id: str):
    message = history.message_by_public_id(public_id) or abort(404)
    if message.status != statuses.NOT_SENT:
        flash("Only a message Plivo never received can be sent again from its page.", "error")
        return redirect(url_for("messages.detail", public_id=public_id), 303)
    again = sending.send_again(current_user, message)
    flash("Sent again as this new message.", "success")
    return redirect(url_for("messages.detail", public_id=again.public_id), 303)


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
    return redirect(url_for("messages.detail", public_id=public_id), 303)


@bp.get("/messages/export.csv", endpoint="export")
@login_required
def export_csv():
    zone = rows.display_zone()
    filters, _errors = history.HistoryFilter.from_args(request.args, zone)
    stamp = utcnow().strftime("%Y%m%d-%H%M%S")
    asked = {key: value for key, value in request.args.items() if value} or "none"
    lines = export.recorded_export(filters, rows.no_receipt_after(), zone, asked)
    return Response(stream_with_context(lines), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="messages-{stamp}.csv"'})
