"""Confirm: the batch and one pending message per recipient in one transaction (Core
executemany: 10,000 rows well under 2 s), with its audit entry. Then pause, resume,
approve and cancel. Cancel and the dispatch's claim are both conditional updates of a
pending, untried message: each message is either cancelled or handed to Plivo, never
both, and the count of what had gone is exact.
"""

from __future__ import annotations

import logging

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from webapp import audit, statuses
from webapp.auth.service import Actor
from webapp.extensions import db
from webapp.lists import list_file
from webapp.lists.drafts import draft_for, preview
from webapp.lists.lanes import start_lanes, waiting_condition
from webapp.lists.states import AWAITING, CANCELLED, OPEN, PAUSED, SENDING
from webapp.logs import event
from webapp.models import (
    Batch,
    Message,
    new_public_id,
    reversed_digits,
    utcnow,
)
from webapp.number_limits import POOL
from webapp.pictures import library
from webapp.sending import senders
from webapp.sending import submission as sending

log = logging.getLogger(__name__)

_messages = Message.__table__
_batches = Batch.__table__


# ---- confirm -------------------------------------------------------------------------------
def batch_by_public_id(public_id: str) -> Batch | None:
    return db.session.scalar(select(Batch).where(Batch.public_id == public_id[:24]))


def confirm(user: Actor, token: str, long_send_ok: bool = False
            ) -> tuple[Batch | None, list[str]]:
    """Record the batch and its messages in one transaction, then start sending (or wait
    for an admin). The same draft confirmed twice (a double click, two tabs) opens the
    batch of the first; nothing is recorded when anything is wrong."""
    earlier = db.session.scalar(select(Batch).where(Batch.draft_token == token[:64]))
    if earlier is not None:
        return earlier, []
    found = draft_for(user, token)
    if found is None:
        return None, ["This list is no longer kept (lists are kept a day). Upload it again."]
    draft, table = found
    seen = preview(user, draft, table)
    if seen.errors:
        return None, seen.errors
    if seen.long and not long_send_ok:
        return None, [f"This send takes about {seen.duration.words} at Plivo's pace: tick "
                      "“I understand” to send it anyway."]
    media, _warnings, errors = sending.prepare_media(draft.media)
    if errors:
        return None, errors
    now = utcnow()
    status = AWAITING if seen.approval_reasons else SENDING
    number_name = table.columns[table.number_column]
    batch = Batch(draft_token=draft.token, created_by_id=user.id, created_at=now,
                  name=draft.name, sender=draft.sender, text=draft.text, media=media,
                  columns=[c for c in table.columns if c != number_name],
                  total=seen.count, estimate_micros=seen.estimate.total_micros, status=status,
                  pumped_at=now)
    db.session.add(batch)
    try:
        db.session.flush()
        batch_public_id, batch_id = batch.public_id, batch.id
        key = f"batch-{batch_public_id}"
        numbers = [r.number for r in seen.check.recipients]
        chosen = (senders.assign(numbers) if draft.sender == POOL
                  else dict.fromkeys(numbers, draft.sender))
        db.session.execute(insert(_messages), [{
            "public_id": new_public_id(), "created_by_id": user.id, "idempotency_key": key,
            "sender": chosen[r.number], "recipient": r.number,
            "recipient_reversed": reversed_digits(r.number),
            "text": list_file.render(draft.text, list_file.values_by_key(r.fields)),
            "media": media, "status": statuses.PENDING, "status_sequence": 0, "attempts": 0,
            "lookups": 0, "created_at": now, "updated_at": now, "batch_id": batch_id,
            "fields": r.fields or None, "version": 1,
        } for r in seen.check.recipients])
        uploaded = [m["upload"] for m in media if "upload" in m]
        if uploaded:
            library.count_uses(uploaded, seen.count)
        audit.record("batch_sent", f"{draft.name}: {seen.count:,} recipients", actor=user,
                     batch=batch_public_id, recipients=seen.count,
                     estimate_usd=f"{seen.estimate.total_micros / 1_000_000:.2f}",
                     waits_for_approval="yes" if status == AWAITING else "no")
        db.session.delete(draft)
        db.session.commit()
    except IntegrityError:  # the same draft confirmed at the same moment elsewhere
        db.session.rollback()
        return db.session.scalar(select(Batch).where(Batch.draft_token == token[:64])), []
    event(log, "batch recorded", batch=batch_public_id, recipients=seen.count, status=status)
    if status == SENDING:
        start_lanes(batch_id)
    return batch, []


# ---- pause, resume, cancel, approve --------------------------------------------------------
def may_manage(user: Actor, batch: Batch) -> bool:
    return user.is_admin or batch.created_by_id == user.id


def _move(batch: Batch, from_: tuple[str, ...], to: str, **values) -> bool:
    moved = db.session.execute(
        update(_batches).where(_batches.c.id == batch.id, _batches.c.status.in_(from_))
        .values(status=to, **values)).rowcount
    return moved == 1


def pause(batch: Batch, actor: Actor) -> bool:
    if not _move(batch, (SENDING,), PAUSED):
        db.session.rollback()
        return False
    audit.record("batch_paused", batch.name, actor=actor, batch=batch.public_id)
    db.session.commit()
    return True


def resume(batch: Batch, actor: Actor) -> bool:
    if not _move(batch, (PAUSED,), SENDING, pumped_at=utcnow()):
        db.session.rollback()
        return False
    audit.record("batch_resumed", batch.name, actor=actor, batch=batch.public_id)
    db.session.commit()
    start_lanes(batch.id)
    return True


def approve(batch: Batch, admin: Actor) -> bool:
    now = utcnow()
    if not _move(batch, (AWAITING,), SENDING, approved_by_id=admin.id, approved_at=now,
                 pumped_at=now):
        db.session.rollback()
        return False
    audit.record("batch_approved", batch.name, actor=admin, batch=batch.public_id,
                 recipients=batch.total,
                 estimate_usd=f"{batch.estimate_micros / 1_000_000:.2f}")
    db.session.commit()
    start_lanes(batch.id)
    return True


def cancel(batch: Batch, actor: Actor) -> int | None:
    """Stop what has not been handed to Plivo: every waiting message becomes cancelled
    (the dispatch's claim and this are both conditional on it waiting, so each message
    is one or the other). The number cancelled; None if the batch was not open."""
    now = utcnow()
    if not _move(batch, OPEN, CANCELLED, cancelled_at=now):
        db.session.rollback()
        return None
    cancelled = db.session.execute(
        update(_messages).where(waiting_condition(batch.id))
        .values(status=statuses.CANCELLED, final_at=now, updated_at=now,
                error_reason="The send to the list was cancelled before this was sent.",
                version=_messages.c.version + 1)).rowcount
    audit.record("batch_cancelled", batch.name, actor=actor, batch=batch.public_id,
                 cancelled=cancelled)
    db.session.commit()
    return cancelled

