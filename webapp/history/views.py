"""The history: its pages, the live rows, the match count, one message, the CSV."""

from __future__ import annotations

from flask import (
    Blueprint,
    Response,
    abort,
    flash,
    render_template,
    request,
    stream_with_context,
)
from flask_login import login_required

from webapp import statuses
from webapp.auth.sessions import passive
from webapp.callbacks import reconcile
from webapp.history import export, rows
from webapp.history import pages as history
from webapp.history.filters import HistoryFilter
from webapp.messages import presentation
from webapp.models import utcnow
from webapp.pictures import library

bp = Blueprint("history", __name__)
for name, helper in rows.TEMPLATE_GLOBALS.items():
    bp.add_app_template_global(helper, name)


@bp.get("/messages", endpoint="history")
@login_required
def history_page():
    zone = presentation.display_zone()
    filters, errors = HistoryFilter.from_args(request.args, zone)
    messages, next_cursor = history.page(filters, request.args.get("before"))
    for error in errors:
        flash(error, "warning")
    query = request.args.to_dict(flat=False)
    query.pop("before", None)
    senders = history.senders(filters.sent_by)
    return render_template("history/history.html", rows=rows.present_rows(messages),
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
    filters, _errors = HistoryFilter.from_args(request.args, presentation.display_zone())
    n, more = history.count(filters)
    query = request.args.to_dict(flat=False)
    query.pop("before", None)
    template = "history/_count.html" if request.headers.get("HX-Request") else "history/count.html"
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
    what_to_do = (reconcile.unknown_advice(message, presentation.local_time)
                  if message.status == statuses.UNKNOWN
                  else statuses.advice(message.status, message.error_code))
    uploads = [item["upload"] for item in message.media or [] if item.get("upload")]
    stored = set(library.find_many(uploads)) if uploads else set()
    return render_template("history/detail.html", message=message, what_to_do=what_to_do,
                           stored=stored, conversation=history.conversation_of(message),
                           events=history.timeline(message), gave_up=reconcile.gave_up(message))


@bp.get("/messages/export.csv", endpoint="export")
@login_required
def export_csv():
    zone = presentation.display_zone()
    filters, _errors = HistoryFilter.from_args(request.args, zone)
    stamp = utcnow().strftime("%Y%m%d-%H%M%S")
    asked = {key: value for key, value in request.args.items() if value} or "none"
    lines = export.recorded_export(filters, presentation.no_receipt_after(), zone, asked)
    return Response(stream_with_context(lines), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="messages-{stamp}.csv"'})

