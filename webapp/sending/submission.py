"""Sending: a compose submission becomes recorded, queued messages.

The idempotency key (a double click or a refresh sends nothing twice), the media
probe, one pending message per recipient, then a dispatch task for each. The send
itself runs later, in dispatch.py.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, select
from sqlalchemy.exc import IntegrityError

from webapp import audit
from webapp.auth.service import Actor
from webapp.config import current_settings
from webapp.extensions import db
from webapp.logs import event
from webapp.models import Message, utcnow
from webapp.number_limits import POOL
from webapp.pictures import library
from webapp.sending import senders
from webapp.sending.probe import check_media
from webapp.tasks import enqueue_dispatch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Draft:
    """What a person asked to send. `media` is a list of items as a message stores them:
    {"url"} or {"media_id"} from the form; the probe adds "content_type" and "size"."""

    sender: str
    recipients: list[str]
    text: str
    media: list[dict]
    idempotency_key: str
    # What the audit log calls this send (audit.ACTIONS) and what it adds to the entry.
    audit_action: str = "messages_sent"
    audit_detail: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Submission:
    errors: list[str]  # media problems: nothing was recorded
    warnings: list[str]  # recorded and queued, but worth a look


def messages_for_key(user: Actor, key: str) -> list[Message]:
    return list(db.session.scalars(
        select(Message).where(Message.created_by_id == user.id, Message.idempotency_key == key)
        .order_by(Message.id)))


_messages = Message.__table__
_KEY_USED = select(_messages.c.id).where(
    _messages.c.created_by_id == bindparam("user_id"),
    _messages.c.idempotency_key == bindparam("key")).limit(1)


def key_used(user: Actor, key: str) -> bool:
    """Whether this person already sent with this idempotency key (one indexed lookup)."""
    return db.session.connection().execute(
        _KEY_USED, {"user_id": user.id, "key": key}).first() is not None


def submit(user: Actor, draft: Draft) -> Submission:
    """Probe the media, then record and queue one message per recipient.

    A key already sent records nothing and probes nothing (a double click or a
    refresh); media a person must fix records nothing either.
    """
    if key_used(user, draft.idempotency_key):
        return Submission(errors=[], warnings=[])
    media, warnings, errors = prepare_media(draft.media)
    if errors:
        return Submission(errors=errors, warnings=[])
    create_messages(user, dataclasses.replace(draft, media=media))
    return Submission(errors=[], warnings=warnings)


def prepare_media(items: list[dict]) -> tuple[list[dict], list[str], list[str]]:
    """The media of a send as its messages record them: stored files by what they are,
    addresses probed (check_media). (media, warnings, errors); errors: record nothing."""
    stored = library.find_many([m["upload"] for m in items if "upload" in m])
    if any("upload" in m and m["upload"] not in stored for m in items):
        return [], [], ["An attached file is no longer stored; attach it again."]
    settings = current_settings()
    return check_media(
        [library.item_for(stored[m["upload"]]) if "upload" in m else m for m in items],
        enabled=settings.media_probe, allow_hosts=settings.media_probe_allow_hosts,
        timeout=settings.probe_timeout_seconds)


def create_messages(user: Actor, draft: Draft) -> tuple[list[Message], bool]:
    """Record one pending message per recipient, then queue each for sending.

    Returns (messages, created). The same idempotency key again returns the
    messages of the first request and creates nothing (the unique key on
    creator, key and recipient decides, so concurrent posts are safe too).
    """
    chosen = (senders.assign(draft.recipients) if draft.sender == POOL
              else dict.fromkeys(draft.recipients, draft.sender))
    rows = [
        Message(created_by_id=user.id, idempotency_key=draft.idempotency_key,
                sender=chosen[recipient], recipient=recipient, text=draft.text,
                media=draft.media)
        for recipient in draft.recipients
    ]
    by = user.email  # read before the commit: an ORM user would be reloaded after it
    db.session.add_all(rows)
    uploaded = [m["upload"] for m in draft.media if "upload" in m]
    try:
        db.session.flush()
        if uploaded:  # in the same transaction: counted once, with the messages
            library.count_uses(uploaded, len(rows))
        # Read before the commit expires them: no reload SELECT per message.
        created = [(message.id, message.public_id) for message in rows]
        # In the same transaction: no send without its entry, no entry without the send.
        audit.record(draft.audit_action, _audience(draft.recipients), actor=user,
                     recipients=len(rows), media=len(draft.media), key=draft.idempotency_key,
                     **dict(draft.audit_detail))
        db.session.commit()
    except IntegrityError:
        # This key was sent before, or another request with it won the race.
        db.session.rollback()
        return messages_for_key(user, draft.idempotency_key), False
    event(log, "messages created", count=len(rows), by=by, key=draft.idempotency_key)
    for message_id, public_id in created:
        try:
            enqueue_dispatch(message_id)
        except Exception:  # queue down: the row stays pending; the recovery sweep queues it later
            log.exception("could not queue message %s", public_id)
    return rows, True


def _audience(recipients: list[str]) -> str:
    if len(recipients) == 1:
        return recipients[0]
    return f"{len(recipients):,} recipients"


REPEAT_WINDOW = timedelta(minutes=10)


def _media_identity(media: list[dict] | None) -> tuple[str, ...]:
    return tuple(m.get("upload") or m.get("url") or m.get("media_id") or "" for m in media or [])


def sent_recently(user: Actor, recipients: list[str], text: str, media: list[dict],
                  now: datetime | None = None) -> datetime | None:
    """When this person sent this same message (text and media) to these same recipients
    (one earlier send, all of them and no others) within REPEAT_WINDOW, if they did:
    compose asks before sending a second copy. Reads this person's last ten minutes (an
    index range)."""
    now = now or utcnow()
    earlier = db.session.execute(
        select(Message.idempotency_key, Message.recipient, Message.created_at, Message.media)
        .where(Message.created_by_id == user.id, Message.created_at >= now - REPEAT_WINDOW,
               Message.text == text)).all()
    wanted_media = _media_identity(media)
    sends: dict[str, tuple[set[str], datetime]] = {}
    for key, recipient, created_at, sent_media in earlier:
        if _media_identity(sent_media) != wanted_media:
            continue
        numbers, first = sends.get(key, (set(), created_at))
        numbers.add(recipient)
        sends[key] = (numbers, min(first, created_at))
    wanted = set(recipients)
    matches = [first for numbers, first in sends.values() if numbers == wanted]
    return max(matches) if matches else None


def copy_of(user: Actor, public_id: str | None = None, key: str | None = None,
            media: str | None = None) -> Draft | None:
    """What compose starts from: "Copy to a new message" of one message of the team
    (`public_id`) or of every recipient of one of this person's sends (`key`), or "Use
    in a new message" of a stored file (`media`, its sha256). None when there is none."""
    from webapp.history.pages import message_by_public_id  # a flow may call another

    if media:
        stored = library.find(media)
        return stored and Draft(sender="", recipients=[], text="",
                                media=[library.item_for(stored)], idempotency_key="")
    if public_id:
        message = message_by_public_id(public_id[:32])
        found = [message] if message is not None else []
    elif key:
        found = messages_for_key(user, key[:128])
    else:
        found = []
    if not found:
        return None
    first = found[0]
    return Draft(sender=first.sender, recipients=[m.recipient for m in found],
                 text=first.text or "", media=list(first.media or []), idempotency_key="")


def send_again(user: Actor, original: Message) -> Message:
    """A new message with the original's sender, recipient, text and media, recorded as
    `user`'s and queued: for a message Plivo never received (statuses.NOT_SENT). Once per
    original, whoever asks: a second click, or a colleague's, opens the first resend."""
    key = f"again-{original.public_id}"
    earlier = db.session.scalar(select(Message).where(Message.idempotency_key == key)
                                .order_by(Message.id).limit(1))
    if earlier is not None:
        return earlier
    rows, _created = create_messages(user, Draft(
        sender=original.sender, recipients=[original.recipient], text=original.text,
        media=list(original.media or []), idempotency_key=key,
        audit_action="message_sent_again", audit_detail=(("original", original.public_id),)))
    return rows[0]
