from __future__ import annotations

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
from ..config import current_settings
from ..extensions import limiter
from ..models import utcnow
from . import bp, export, history, reconcile, rows, sending
from .forms import ComposeForm

for name, helper in rows.TEMPLATE_GLOBALS.items():
    bp.add_app_template_global(helper, name)
for name, helper in rows.TEMPLATE_FILTERS.items():
    bp.add_app_template_filter(helper, name)


def _user_send_limit() -> str:
    return f"{current_settings().sends_per_minute_per_user} per minute"


def _user_key() -> str:
    # The account id, not the login id: a new session must not reset the count.
    return f"user:{getattr(current_user, 'id', 'anonymous')}"


@bp.get("/")
@login_required
def index():
    return redirect(url_for("messages.history"))


@bp.route("/messages/new", methods=["GET", "POST"])
@login_required
@limiter.limit(_user_send_limit, key_func=_user_key, methods=["POST"])
def compose():
    settings = current_settings()
    form = ComposeForm(senders=settings.sender_numbers,
                       test_hosts=settings.media_probe_allow_hosts)
    if form.validate_on_submit():
        result = sending.submit(current_user, sending.Draft(
            sender=form.sender.data, recipients=form.parsed_recipients,
            text=form.text.data or "", media=form.parsed_media,
            idempotency_key=form.idempotency_key.data))
        if not result.errors:
            for warning in result.warnings:
                flash(warning, "warning")
            return redirect(url_for("messages.sent", key=form.idempotency_key.data), 303)
        form.media.errors = list(form.media.errors) + result.errors
    status = 400 if request.method == "POST" else 200
    return render_template("messages/compose.html", form=form), status


@bp.get("/messages/sent/<key>")
@login_required
def sent(key: str):
    return render_template("messages/sent.html", **_send_live(key))


@bp.get("/messages/sent/<key>/live")
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
                           zone_name=getattr(zone, "key", str(zone)))


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
@limiter.limit(_user_send_limit, key_func=_user_key)
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
    lines = export.export_rows(filters, rows.no_receipt_after(), zone)
    return Response(stream_with_context(lines), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="messages-{stamp}.csv"'})
