"""What a customer's message asks of us after Plivo has had its "200", run by a worker:
its pictures fetched from Plivo and kept like uploads (checked by content, with a
thumbnail, shown to signed-in staff only), and the automatic answer to HELP (and, when
OPT_OUT_REPLY_TEXT is set, the one confirmation after STOP). Each step is done once
however often the task runs: a stored picture is not fetched again, and an answer's
idempotency key is the reply's own id."""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import select

from webapp.auth.service import system_user
from webapp.config import current_settings
from webapp.conversations.inbound import touch
from webapp.conversations.keywords import Keyword
from webapp.extensions import db
from webapp.gateway import inbound_media
from webapp.gateway.client import GatewayConfig
from webapp.logs import event
from webapp.models import ConsentEvent, InboundMessage, Message, utcnow
from webapp.pictures import library
from webapp.pictures.preparation import UploadRefused, prepare
from webapp.sending import submission
from webapp.tasks import enqueue_inbound

log = logging.getLogger(__name__)

MAX_TOTAL_BYTES = 7 * 1024 * 1024  # Plivo: an inbound MMS is under 7 MB in all
CONFIRM_WITHIN = timedelta(minutes=5)  # Plivo and the FCC: one confirmation, within 5 minutes
WAITING_AFTER = timedelta(minutes=2)  # a picture still waiting this long lost its task
WAITING_FOR_AT_MOST = timedelta(days=1)


def after_inbound(public_id: str) -> None:
    message = db.session.scalar(select(InboundMessage).where(
        InboundMessage.public_id == public_id))
    if message is None:
        return
    if any(item.get("state") == "waiting" for item in message.media):
        fetch_pictures(message)
    if message.keyword == Keyword.HELP and not _helped_lately(message):
        _answer(message, current_settings().help_reply_text, "help")
    elif (message.keyword == Keyword.OPT_OUT and current_settings().opt_out_reply_text
          and utcnow() - message.received_at <= CONFIRM_WITHIN and _opted_out_by(message)):
        _answer(message, current_settings().opt_out_reply_text, "stop", opted_out=True)


HELP_AT_MOST_EVERY = timedelta(minutes=10)


def _helped_lately(message: InboundMessage) -> bool:
    """One answer to HELP per number per 10 minutes: a customer (or anyone who can text
    our number) sending HELP in a loop costs one message, not one each."""
    return db.session.scalar(select(Message.id).where(
        Message.recipient == message.sender, Message.sender == message.recipient,
        Message.idempotency_key.like("auto-help-%"),
        Message.created_at >= utcnow() - HELP_AT_MOST_EVERY).limit(1)) is not None


def _opted_out_by(message: InboundMessage) -> bool:
    """Whether this very message took the number off our list (a STOP from a number
    already opted out changes nothing, and gets no second confirmation)."""
    return db.session.scalar(select(ConsentEvent.id).where(
        ConsentEvent.message_public_id == message.public_id, ConsentEvent.change == "out")
    ) is not None


def fetch_pictures(message: InboundMessage) -> None:
    config = GatewayConfig.from_settings(current_settings())
    owner = system_user()
    budget = MAX_TOTAL_BYTES - sum(item.get("size", 0) for item in message.media
                                   if item.get("state") == "stored")
    items = []
    for item in message.media:
        item = dict(item)
        if item.get("state") == "waiting":
            try:
                fetched = inbound_media.fetch(item["url"], config, max(budget, 0))
                prepared = prepare(fetched.data, f"reply-{message.public_id}-{item['index'] + 1}"
                                   + _extension(fetched.content_type))
                stored = library.store(prepared, owner)
                item.update(state="stored", sha256=stored.sha256, size=len(fetched.data),
                            content_type=stored.content_type)
                budget -= len(fetched.data)
            except (inbound_media.MediaUnavailable, UploadRefused) as exc:
                item.update(state="failed", reason=str(exc)[:300])
                event(log, "reply picture not fetched", logging.WARNING,
                      message=message.public_id, reason=str(exc))
        items.append(item)
    message.media = items  # a new list: the JSON column is written
    db.session.commit()


def _extension(content_type: str) -> str:
    return {"image/jpeg": ".jpg", "image/png": ".png", "image/gif": ".gif",
            "video/mp4": ".mp4", "video/3gpp": ".3gp", "audio/mpeg": ".mp3",
            "application/pdf": ".pdf", "text/vcard": ".vcf"}.get(content_type, "")


def _answer(message: InboundMessage, text: str, why: str, opted_out: bool = False) -> None:
    """The automatic answer, from the number the customer wrote to, once."""
    owner = system_user()
    result = submission.submit(owner, submission.Draft(
        sender=message.recipient, recipients=[message.sender], text=text, media=[],
        idempotency_key=f"auto-{why}-{message.public_id}", audit_action="reply_sent",
        audit_detail=(("automatic", why),)))
    if result.errors:
        event(log, "automatic answer not sent", logging.WARNING, message=message.public_id,
              errors="; ".join(result.errors))
        return
    touch(message.conversation_id, when=utcnow(), text=text, direction="out", needs_reply=None)
    db.session.commit()
    event(log, "automatic answer sent", message=message.public_id, why=why,
          after_opt_out=opted_out)


def inbound_waiting() -> dict[str, int]:
    """The sweep: replies whose pictures still wait minutes later (their task was lost)
    are queued again."""
    now = utcnow()
    rows = db.session.execute(select(InboundMessage.public_id, InboundMessage.media).where(
        InboundMessage.kind != "sms", InboundMessage.received_at < now - WAITING_AFTER,
        InboundMessage.received_at > now - WAITING_FOR_AT_MOST).limit(500)).all()
    again = 0
    for public_id, media in rows:
        if any(item.get("state") == "waiting" for item in media or []):
            enqueue_inbound(public_id)
            again += 1
    return {"reply pictures queued again": again}
