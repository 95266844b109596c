"""The team's picture library and the files staff upload, served to signed-in staff only."""

from __future__ import annotations

from urllib.parse import quote

from flask import (
    Blueprint,
    Response,
    abort,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user, login_required

from webapp import confirm
from webapp.extensions import limiter
from webapp.pictures import library
from webapp.security import body_limit, max_upload_bytes, user_key

bp = Blueprint("pictures", __name__)


@bp.post("/media/upload", endpoint="upload_media")
@body_limit(max_upload_bytes)
@login_required
@limiter.limit("120 per minute", key_func=user_key)
def upload_media():
    """Compose's JavaScript sends each file here as soon as it is chosen, dropped or
    pasted (with a progress bar), and shows what came of it before Send: the card of
    each stored file (thumbnail, final size, "resized from", metadata removed), which
    carries the file into the form, or why it was refused. CSRF: X-CSRFToken."""
    stored, errors = library.attach(request.files.getlist("file"), current_user)
    if not stored and not errors:
        errors = ["No file arrived; choose it again."]
    return render_template("pictures/_uploaded.html", stored=stored, errors=errors), (
        200 if stored else 400)


@bp.get("/media", endpoint="library")
@login_required
def media_library():
    """The team's pictures and files, newest first; search by file name."""
    name = request.args.get("q", "").strip()[:100]
    before = request.args.get("before", "")
    found, next_before = library.library(name, int(before) if before.isdigit()
                                         and len(before) < 10 else None)
    return render_template("pictures/library.html", found=found, q=name,
                           next_before=next_before)


@bp.post("/media/<sha256:sha256>/delete", endpoint="delete_media")
@login_required
def delete_media(sha256: str):
    if not current_user.is_admin:
        abort(403)
    media = library.find(sha256)
    if media is None:
        abort(404)
    name = media.original_name
    waiting = library.waiting_uses(sha256)
    if waiting:
        flash(f"{name} is still used by {waiting} message{'s' if waiting != 1 else ''} "
              "waiting to be sent; it can be deleted once they have gone.", "error")
    elif not confirm.confirmed():
        used = media.uses
        return confirm.ask(
            title=f"Delete “{name}”?",
            consequence=(f"{used:,} sent message{'s' if used != 1 else ''} "
                         f"show{'s' if used == 1 else ''} it; their pages will say "
                         "“picture deleted” instead. " if used else "No message uses it. ")
                        + "It leaves the library for the whole team and cannot be restored.",
            label="Delete", back=url_for("pictures.library"))
    elif library.delete(sha256):
        flash(f"{name} was deleted. Messages already sent with it keep their record.",
              "success")
    return redirect(url_for("pictures.library"), 303)


@bp.get("/media/<sha256:sha256>")
@login_required
def media_file(sha256: str):
    """An uploaded file, to signed-in staff only, as the type it was stored as."""
    media = library.find(sha256)
    if media is None:
        abort(404)
    return _serve(media.data, media.content_type, library.download_name(media), sha256)


@bp.get("/media/<sha256:sha256>/thumbnail")
@login_required
def media_thumbnail(sha256: str):
    media = library.find(sha256)
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

