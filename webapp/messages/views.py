from __future__ import annotations

from datetime import timedelta

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
from sqlalchemy import select

from .. import statuses
from ..config import current_settings
from ..extensions import db, limiter
from ..models import Message, StatusEvent, utcnow
from . import bp, history, service
from .forms import ComposeForm
from .media import check_media


def _no_receipt_after() -> timedelta:
    return timedelta(minutes=current_settings().sent_no_receipt_after_minutes)


def present_rows(table_rows: list) -> list[history.Row]:
    now, after = utcnow(), _no_receipt_after()
    return [history.present(row, now, after) for row in table_rows]


@bp.app_template_global()
def status_label(message: Message) -> str:
    return statuses.label(message.status, message.error_code, message.sent_at, utcnow(),
                          _no_receipt_after())


bp.add_app_template_filter(history.format_phone, "phone")


@bp.app_template_global()
def status_tone(status: str) -> str:
    return statuses.TONES.get(status, "neutral")


@bp.app_template_global()
def explain_error_code(code: str | None) -> str | None:
    return statuses.explain_error_code(code)


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
        # Probing takes network time: only for a key not sent yet.
        existing = service.messages_for_key(current_user, form.idempotency_key.data)
        if existing:
            return redirect(url_for("messages.sent", key=form.idempotency_key.data), 303)
        media, warnings, errors = check_media(
            form.parsed_media, enabled=settings.media_probe,
            allow_hosts=settings.media_probe_allow_hosts,
            timeout=settings.probe_timeout_seconds)
        if not errors:
            service.create_messages(current_user, service.SendRequest(
                sender=form.sender.data, recipients=form.parsed_recipients,
                text=form.text.data or "", media=media,
                idempotency_key=form.idempotency_key.data))
            for warning in warnings:
                flash(warning, "warning")
            return redirect(url_for("messages.sent", key=form.idempotency_key.data), 303)
        form.media.errors = list(form.media.errors) + errors
        form.media_errors = errors
    status = 400 if request.method == "POST" else 200
    return render_template("messages/compose.html", form=form), status


@bp.get("/messages/sent/<key>")
@login_required
def sent(key: str):
    table_rows = history.table_rows_for_send(current_user.id, key)
    if not table_rows:
        abort(404)
    return render_template("messages/sent.html", rows=present_rows(table_rows))


@bp.get("/messages", endpoint="history")
@login_required
def history_page():
    filters, errors = history.HistoryFilter.from_args(request.args)
    messages, next_cursor = history.page(filters, request.args.get("before"))
    for error in errors:
        flash(error, "warning")
    query = request.args.to_dict(flat=False)
    query.pop("before", None)
    return render_template("messages/history.html", rows=present_rows(messages), filters=filters,
                           next_cursor=next_cursor, query=query, senders=history.senders(),
                           all_statuses=statuses.ALL, labels=statuses.LABELS)


@bp.get("/messages/rows")
@login_required
def rows():
    """The history rows named by `id` (one poll for a whole table), in that order.

    Answers 286 when every row is final: htmx stops polling on that status.
    """
    ids = [i for i in request.args.getlist("id")[:history.PAGE_SIZE] if len(i) <= 24]
    shown = present_rows(history.table_rows_by_public_id(ids))
    status = 286 if all(row.is_final for row in shown) else 200
    return render_template("messages/_rows.html", rows=shown), status


@bp.get("/messages/<public_id>")
@login_required
def detail(public_id: str):
    message = _message_or_404(public_id)
    events = list(db.session.scalars(
        select(StatusEvent).where(StatusEvent.message_id == message.id)
        .order_by(StatusEvent.received_at, StatusEvent.id)))
    return render_template("messages/detail.html", message=message, events=events)


@bp.get("/messages/export.csv")
@login_required
def export():
    filters, _errors = history.HistoryFilter.from_args(request.args)
    stamp = utcnow().strftime("%Y%m%d-%H%M%S")
    return Response(stream_with_context(history.export_rows(filters)), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="messages-{stamp}.csv"'})


def _message_or_404(public_id: str) -> Message:
    if len(public_id) > 24:
        abort(404)
    message = db.session.scalar(select(Message).where(Message.public_id == public_id))
    return message or abort(404)
