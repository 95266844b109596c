"""The inbox (/conversations), a thread with its answer box, "done" / "needs a reply", and
the menu's count of unread threads (a passive poll: it keeps no session alive)."""

from __future__ import annotations

from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from webapp.auth.sessions import passive
from webapp.config import current_settings
from webapp.conversations import replies, threads
from webapp.conversations.forms import ReplyForm
from webapp.extensions import limiter
from webapp.messages import opt_outs
from webapp.pictures import library, preparation
from webapp.security import body_limit, max_upload_bytes, send_limit, user_key

bp = Blueprint("conversations", __name__)

SHOWS = ("all", "needs-reply")


@bp.app_template_global()
def unread_threads() -> int:
    """The menu's count, once per request (the menu shows it twice: desk and phone)."""
    if "unread_threads" not in g:
        asks = current_user.is_authenticated and not g.get("error_page")
        g.unread_threads = threads.unread_count() if asks else 0
    return g.unread_threads


def _inbox_page(template: str):
    show = request.args.get("show", "all")
    if show not in SHOWS:
        show = "all"
    typed = request.args.get("q", "").strip()[:100]
    found, after = threads.inbox(needs_reply=show == "needs-reply", typed=typed,
                                 cursor=request.args.get("after"))
    return render_template(template, threads=found, after=after, show=show, q=typed,
                           first_page=not request.args.get("after"))


@bp.get("/conversations")
@login_required
def inbox():
    return _inbox_page("conversations/inbox.html")


@bp.get("/conversations/live")
@login_required
@passive
def inbox_live():
    """The first page's threads, polled by htmx while the inbox is open."""
    return _inbox_page("conversations/_threads.html")


@bp.get("/conversations/unread")
@login_required
@passive
def unread():
    """The menu's count, polled by htmx: the three places it shows, swapped out of band."""
    return render_template("conversations/_unread_oob.html", unread=threads.unread_count())


def _thread_or_404(public_id: str):
    conversation = threads.find(public_id)
    if conversation is None:
        abort(404)
    return conversation


def _render_thread(conversation, form: ReplyForm, status: int = 200, file_errors=()):
    attached = library.find_many(form.uploaded.data or [])
    return render_template(
        "conversations/thread.html", conversation=conversation,
        entries=threads.entries(conversation), form=form, file_errors=list(file_errors),
        opted_out=opt_outs.is_opted_out(conversation.customer),
        consent=opt_outs.consent_history(conversation.customer, limit=10),
        attached=[attached[sha] for sha in form.uploaded.data or [] if sha in attached],
        accept=preparation.ACCEPT, max_upload_mb=current_settings().max_upload_mb), status


@bp.get("/conversations/<public_id>")
@login_required
def thread(public_id: str):
    conversation = _thread_or_404(public_id)
    threads.mark_read(conversation)
    return _render_thread(conversation, ReplyForm(
        test_hosts=current_settings().media_probe_allow_hosts))


@bp.get("/conversations/<public_id>/live")
@login_required
@passive
def thread_live(public_id: str):
    """The thread's messages, polled by htmx while the page is open."""
    conversation = _thread_or_404(public_id)
    threads.mark_read(conversation)
    return render_template("conversations/_entries.html", conversation=conversation,
                           entries=threads.entries(conversation))


@bp.post("/conversations/<public_id>/reply")
@body_limit(max_upload_bytes)
@login_required
@limiter.limit(send_limit, key_func=user_key)
def reply(public_id: str):
    conversation = _thread_or_404(public_id)
    form = ReplyForm(test_hosts=current_settings().media_probe_allow_hosts)
    stored, file_errors = library.attach(request.files.getlist(form.files.name), current_user)
    form.attach([media.sha256 for media, _notes in stored],
                removed=request.form.getlist("remove_upload"))
    if not form.validate_on_submit() or file_errors:
        return _render_thread(conversation, form, 400, file_errors)
    media = form.parsed_media + [{"upload": sha} for sha in form.parsed_uploads]
    try:
        result = replies.send(current_user, conversation, form.text.data or "", media,
                              form.idempotency_key.data)
    except replies.ReplyRefused as exc:
        form.text.errors = [*form.text.errors, str(exc)]
        return _render_thread(conversation, form, 400)
    if result.errors:
        form.media.errors = [*form.mark_media_rows(result.errors)] or [
            "An item needs fixing: see it above."]
        return _render_thread(conversation, form, 400)
    for warning in result.warnings:
        flash(warning, "warning")
    flash("Reply sent: its status shows in the thread.", "success")
    return redirect(url_for("conversations.thread", public_id=public_id) + "#latest", 303)


@bp.post("/conversations/<public_id>/mark")
@login_required
def mark(public_id: str):
    conversation = _thread_or_404(public_id)
    wanted = request.form.get("state")
    if wanted not in ("done", "needs-reply"):
        abort(400, description="state must be done or needs-reply")
    threads.mark(conversation, needs_reply=wanted == "needs-reply", actor=current_user)
    flash("Marked as done." if wanted == "done" else "Marked as needing a reply.", "success")
    back = request.form.get("back")
    if back == "inbox":
        return redirect(url_for("conversations.inbox"), 303)
    return redirect(url_for("conversations.thread", public_id=public_id), 303)
