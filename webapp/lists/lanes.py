"""Dispatch of a list send: LANES tasks per batch, each taking the next waiting messages
of its lane (id modulo LANES) for a slice of SLICE_SECONDS and then queueing itself
again behind whatever was queued meanwhile, so a single send never waits behind a batch
in the queue; in the rate window a batch's message gives way to single sends
(gateway.pace.DispatchLimiter.slot). The sweep restarts lanes gone silent.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from sqlalchemy import select, update

from webapp import statuses
from webapp.config import current_settings
from webapp.extensions import db
from webapp.gateway import circuit
from webapp.gateway.cadence import number_turn
from webapp.gateway.pace import dispatch_limiter
from webapp.lists.states import FINISHED, SENDING
from webapp.logs import event
from webapp.models import (
    Batch,
    Message,
    utcnow,
)
from webapp.sending.dispatch import dispatch_message
from webapp.tasks import enqueue_batch_lane

log = logging.getLogger(__name__)

_messages = Message.__table__
_batches = Batch.__table__


LANES = 4  # dispatch tasks per batch: with QUEUE_WORKERS 10, one batch leaves 6 threads


SLICE_SECONDS = 2.0  # a lane sends this long, then queues itself again


LANE_STALE = timedelta(seconds=30)  # a lane silent this long is started again


STATUS_EVERY = 0.25  # seconds between a lane's looks at its batch's status


# ---- dispatch ------------------------------------------------------------------------------
def start_lanes(batch_id: int) -> None:
    for lane in range(LANES):
        try:
            enqueue_batch_lane(batch_id, lane)
        except Exception:  # queue down: the sweep starts the lanes again
            log.exception("could not queue batch %s lane %s", batch_id, lane)


def _next_in_lane(batch_id: int, lane: int, limit: int = 10) -> list[int]:
    """The lane's next waiting messages, those whose number's turn comes first first: a
    lane never waits for a busy number while another of the pool is free (each number
    has its own limit at Plivo, the account's MPS their sum)."""
    found = db.session.execute(
        select(_messages.c.id, _messages.c.sender).where(
            _messages.c.batch_id == batch_id, _messages.c.status == statuses.PENDING,
            _messages.c.attempts == 0, _messages.c.id % LANES == lane,
            _messages.c.not_before.is_(None) | (_messages.c.not_before <= utcnow()))
        .order_by(_messages.c.id).limit(limit)).all()
    senders = {sender for _id, sender in found}
    if len(senders) < 2:
        return [message_id for message_id, _sender in found]
    cadence = dispatch_limiter(current_settings()).cadence
    free = {sender: cadence.next_free(number_turn(sender, 1).key) for sender in senders}
    return [message_id for message_id, sender in sorted(found, key=lambda m: free[m[1]])]


def _status(batch_id: int) -> str | None:
    status = db.session.scalar(select(_batches.c.status).where(_batches.c.id == batch_id))
    db.session.commit()  # end the read: the next one sees a pause at once
    return status


def dispatch_lane(batch_id: int, lane: int, clock=time.monotonic) -> None:
    """The queue task: send this lane's next messages for a slice, then queue the lane
    again (behind what was queued meanwhile). Stops when the batch is paused, cancelled
    or awaiting approval, while Plivo refuses the account, and when the lane is empty."""
    deadline = clock() + SLICE_SECONDS
    while True:
        if _status(batch_id) != SENDING or circuit.is_open():
            return
        waiting = _next_in_lane(batch_id, lane)
        if not waiting:
            _finish_if_done(batch_id)
            return
        looked = clock()
        for message_id in waiting:
            # A pause reaches the lane within STATUS_EVERY (a read and a commit per
            # message cost a sixth of the lane's pace at 50 a second).
            if clock() - looked >= STATUS_EVERY:
                if _status(batch_id) != SENDING:
                    return
                looked = clock()
            dispatch_message(message_id, background=True,
                             wanted=lambda: _status(batch_id) == SENDING)
        db.session.execute(update(_batches).where(_batches.c.id == batch_id)
                           .values(pumped_at=utcnow()))
        db.session.commit()
        if clock() >= deadline:
            enqueue_batch_lane(batch_id, lane)
            return


def waiting_condition(batch_id: int):
    return ((_messages.c.batch_id == batch_id) & (_messages.c.status == statuses.PENDING)
            & (_messages.c.attempts == 0))


def _finish_if_done(batch_id: int) -> None:
    """Nothing of the batch is left to hand to Plivo: it is finished."""
    nothing_left = ~select(_messages.c.id).where(waiting_condition(batch_id)).exists()
    done = db.session.execute(
        update(_batches).where(_batches.c.id == batch_id, _batches.c.status == SENDING,
                               nothing_left)
        .values(status=FINISHED, finished_at=utcnow())).rowcount
    db.session.commit()
    if done:
        event(log, "batch handed to Plivo in full", batch=batch_id)


def restart_lanes() -> dict[str, int]:
    """The sweep: start again the lanes of a sending batch none of whose lanes took a
    message for LANE_STALE (a killed worker, a lost task, the circuit closed again), and
    finish batches with nothing left."""
    if circuit.is_open():
        return {}
    now = utcnow()
    stale = list(db.session.scalars(select(_batches.c.id).where(
        _batches.c.status == SENDING, _batches.c.pumped_at < now - LANE_STALE)))
    restarted = 0
    for batch_id in stale:
        if db.session.execute(select(_messages.c.id).where(waiting_condition(batch_id))
                              .limit(1)).first() is None:
            _finish_if_done(batch_id)
            continue
        db.session.execute(update(_batches).where(_batches.c.id == batch_id)
                           .values(pumped_at=now))
        db.session.commit()
        start_lanes(batch_id)
        restarted += 1
    return {"batch lanes restarted": restarted} if restarted else {}

