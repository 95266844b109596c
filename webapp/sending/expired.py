"""Error 420: a message that waited in Plivo's queue longer than its expiry. The dashboard
hands messages over at Plivo's pace, so one expiring means Plivo itself fell behind (other
traffic on the account, a lower MPS than PLIVO_MMS_MPS says): it is sent again once,
automatically, as a new message that records which one it repeats, within the pace and
the daily caps like any other. Never a second time, never to a number that opted out
since, never for a list send that was cancelled."""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased

from webapp import statuses
from webapp.extensions import db
from webapp.logs import event
from webapp.messages import opt_outs
from webapp.models import Batch, Message, utcnow
from webapp.tasks import enqueue_dispatch

log = logging.getLogger(__name__)

EXPIRED = "420"
RETRY_WITHIN = timedelta(hours=24)  # an older expiry is news, not worth a late message
BATCH = 200


def retry_expired() -> dict[str, int]:
    """The sweep: send again, once, each message that expired in Plivo's queue."""
    retry = aliased(Message)
    expired = list(db.session.scalars(
        select(Message).where(
            Message.status == statuses.FAILED, Message.error_code == EXPIRED,
            Message.retry_of_id.is_(None), Message.final_at >= utcnow() - RETRY_WITHIN,
            ~select(retry.id).where(retry.retry_of_id == Message.id).exists())
        .order_by(Message.id).limit(BATCH)))
    if not expired:
        return {}
    opted = opt_outs.among(m.recipient for m in expired)
    cancelled = set(db.session.scalars(select(Batch.id).where(
        Batch.id.in_({m.batch_id for m in expired if m.batch_id}), Batch.status == "cancelled")))
    made = []
    for message in expired:
        if message.recipient in opted or message.batch_id in cancelled:
            continue
        again = Message(created_by_id=message.created_by_id,
                        idempotency_key=f"expired-{message.public_id}",
                        sender=message.sender, recipient=message.recipient, text=message.text,
                        media=message.media, batch_id=message.batch_id, fields=message.fields,
                        retry_of_id=message.id)
        db.session.add(again)
        made.append(again)
    try:
        db.session.flush()
        ids = [m.id for m in made]
        db.session.commit()
    except IntegrityError:  # another worker's sweep made them first
        db.session.rollback()
        return {}
    for message_id in ids:
        enqueue_dispatch(message_id)
    if ids:
        event(log, "messages that expired in Plivo's queue sent again", count=len(ids))
    return {"sent again after error 420": len(ids)} if ids else {}
