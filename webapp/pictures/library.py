"""Prepared files stored once (by sha256) and found again: attached to a message, the
team's library, deletion, and each file's upload to Plivo's Media API when a message
using it is sent (Plivo keeps an unsent upload a few hours, so a fresh one is made when
the kept one is too old)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from webapp import audit
from webapp.auth.service import SYSTEM_ROLE, Actor
from webapp.extensions import db
from webapp.gateway import client as gateway
from webapp.logs import event
from webapp.models import Media, utcnow
from webapp.pictures.preparation import EXTENSIONS, Prepared, UploadRefused, clean_name, prepare

log = logging.getLogger(__name__)


# Plivo deletes media not sent within 6 hours: an upload older than this is made again.
PLIVO_KEEPS_UNSENT = timedelta(hours=5)


def store(prepared: Prepared, user: Actor) -> Media:
    """The stored file for these bytes: the existing one if the same file was stored
    before (by anyone), else a new row."""
    digest = prepared.sha256
    existing = find(digest)
    if existing is not None:
        return existing
    media = Media(sha256=digest, content_type=prepared.content_type, data=prepared.data,
                  size=len(prepared.data), width=prepared.width, height=prepared.height,
                  thumbnail=prepared.thumbnail, original_name=prepared.original_name,
                  original_size=prepared.original_size, uploaded_by_id=user.id)
    db.session.add(media)
    try:
        db.session.commit()
    except IntegrityError:  # the same file, stored at the same moment by another request
        db.session.rollback()
        return find(digest)
    event(log, "media stored", sha256=digest[:12], size=media.size, type=media.content_type)
    return media


def attach(files, user: Actor) -> tuple[list[tuple[Media, list[str]]], list[str]]:
    """Prepare and store uploaded files (werkzeug FileStorage objects). Returns each stored
    file with what preparing it did ("resized from 4.2 MB", "location and camera data
    removed"), and, for each refused one, why."""
    stored, errors = [], []
    for upload in files:
        if upload is None or not (upload.filename or "").strip():
            continue  # the empty file input of a form sent without a file
        try:
            prepared = prepare(upload.read(), upload.filename)
        except UploadRefused as exc:
            errors.append(str(exc))
            continue
        finally:
            upload.close()
        stored.append((store(prepared, user), prepared.notes))
    return stored, errors


def count_uses(digests: list[str], messages: int) -> None:
    """`messages` more messages use each of these files (the caller commits)."""
    db.session.execute(update(Media).where(Media.sha256.in_(digests))
                       .values(uses=Media.uses + messages))


LIBRARY_PAGE = 48


def library(name: str = "", before: int | None = None) -> tuple[list[tuple[Media, str]], int | None]:
    """The team's files, newest first, LIBRARY_PAGE at a time (keyset on id), with who
    uploaded each; `name` narrows to file names containing it. Returns (page, the id to
    continue before, or None)."""
    from webapp.models import User

    # Customers' pictures (stored as the system's) belong to their threads, not here.
    query = (select(Media, User.email).join(User, User.id == Media.uploaded_by_id)
             .where(User.role != SYSTEM_ROLE)
             .order_by(Media.id.desc()).limit(LIBRARY_PAGE + 1))
    if name:
        escaped = name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(Media.original_name.ilike(f"%{escaped}%", escape="\\"))
    if before:
        query = query.where(Media.id < before)
    found = [(media, email) for media, email in db.session.execute(query).all()]
    more = len(found) > LIBRARY_PAGE
    found = found[:LIBRARY_PAGE]
    return found, (found[-1][0].id if more else None)


def waiting_uses(digest: str) -> int:
    """How many messages still waiting to be sent (pending) use this file: it cannot be
    deleted while any does."""
    from webapp import statuses
    from webapp.models import Message

    waiting = db.session.scalars(select(Message.media).where(
        Message.status == statuses.PENDING)).all()
    return sum(1 for media in waiting if any(m.get("upload") == digest for m in media or []))


def delete(digest: str) -> bool:
    """Delete a stored file no waiting message uses. False if one does (or none such)."""
    media = find(digest)
    if media is None or waiting_uses(digest):
        return False
    audit.record("media_deleted", media.original_name or digest[:12], sha256=digest,
                 size=media.size, content_type=media.content_type)
    db.session.delete(media)
    db.session.commit()
    return True


def find_many(digests: list[str]) -> dict[str, Media]:
    digests = [d for d in digests if isinstance(d, str) and len(d) == 64]
    if not digests:
        return {}
    return {m.sha256: m for m in db.session.scalars(
        select(Media).where(Media.sha256.in_(digests)))}


def find(digest: str) -> Media | None:
    """The stored file with this sha256, or None (for anything that is not a digest too)."""
    if not isinstance(digest, str) or len(digest) != 64:
        return None
    return db.session.scalar(select(Media).where(Media.sha256 == digest))


def item_for(media: Media) -> dict:
    """How a message records an uploaded file (Message.media)."""
    return {"upload": media.sha256, "content_type": media.content_type, "size": media.size,
            "name": media.original_name}


# ---- sending: Plivo's Media API ----------------------------------------------------------
def plivo_media_ids(items: list[dict], config: gateway.GatewayConfig, upload) -> list[str]:
    """Plivo media ids for a message's uploaded files, uploading those Plivo may have
    deleted (never uploaded, or more than PLIVO_KEEPS_UNSENT ago). `upload(media)` makes
    one upload (the dispatcher wraps it in its limiter and retries)."""
    ids = []
    for item in items:
        if "upload" not in item:
            continue
        media = find(item["upload"])
        if media is None:
            raise gateway.PlivoRejected(f"the file {item.get('name', '')} is no longer stored")
        fresh = utcnow() - PLIVO_KEEPS_UNSENT
        if media.plivo_media_id and media.plivo_uploaded_at and media.plivo_uploaded_at > fresh:
            ids.append(media.plivo_media_id)
            continue
        media_id = upload(media)
        ids.append(_remember_upload(media, media_id, fresh))
    return ids


def _remember_upload(media: Media, media_id: str, fresh: datetime) -> str:
    """Keep the id unless another worker uploaded the same file meanwhile: then theirs
    (ours is left for Plivo to delete after 6 hours)."""
    now = utcnow()
    changed = db.session.execute(
        update(Media).where(Media.id == media.id)
        .where((Media.plivo_uploaded_at.is_(None)) | (Media.plivo_uploaded_at <= fresh))
        .values(plivo_media_id=media_id, plivo_uploaded_at=now)).rowcount
    db.session.commit()
    if changed:
        event(log, "media uploaded to Plivo", sha256=media.sha256[:12], media_id=media_id)
        return media_id
    db.session.refresh(media)
    return media.plivo_media_id or media_id


def download_name(media: Media) -> str:
    """The name a downloaded file gets: the person's own, with its content's extension."""
    stem = clean_name(media.original_name).rsplit(".", 1)[0][:80] or "file"
    return f"{stem}.{EXTENSIONS.get(media.content_type, 'bin')}"


def upload_name(media: Media) -> str:
    """The file name Plivo gets: download_name() in letters, digits, - and _ only (the
    SDK and Plivo type a file by its extension)."""
    stem, extension = download_name(media).rsplit(".", 1)
    stem = "".join(c if c.isalnum() or c in "-_" else "-" for c in stem) or "file"
    return f"{stem}.{extension}"

