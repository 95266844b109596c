"""Sending to many (a batch): a list read into a draft, checked and priced on a preview,
recorded at confirm in one transaction, sent in lanes that give way to single sends,
paused, resumed, cancelled, approved, and reported on.

Draft: the rows as read (batch_file.Table), kept compressed; nothing is a send yet.
Confirm: the batch and one pending message per recipient, in one transaction (Core
executemany: 10,000 rows well under 2 s), with its audit entry. Dispatch: LANES tasks
per batch, each taking the next waiting messages of its lane (id modulo LANES) for a
slice of SLICE_SECONDS and then queueing itself again behind whatever was queued
meanwhile, so a single send never waits behind a batch in the queue; in the rate window
a batch's message gives way to single sends (gateway.pace.DispatchLimiter.slot).
Cancel and the dispatch's claim are both conditional updates of a pending, untried
message: each message is either cancelled or handed to Plivo, never both, and the count
of what had gone is exact.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from webapp import audit, statuses
from webapp.auth.service import Actor
from webapp.config import current_settings
from webapp.extensions import db
from webapp.gateway import circuit
from webapp.lists import list_file as batch_file
from webapp.lists.list_file import Check, ListError, Table
from webapp.logs import event
from webapp.messages import opt_outs
from webapp.messages.limits import MAX_TEXT
from webapp.models import (
    Batch,
    BatchDraft,
    DailyStat,
    Message,
    TeamSetting,
    new_public_id,
    reversed_digits,
    utcnow,
)
from webapp.pictures import uploads
from webapp.sending import submission as sending
from webapp.sending.dispatch import dispatch_message
from webapp.spreadsheet import csv_line
from webapp.tasks import enqueue_batch_lane

log = logging.getLogger(__name__)

AWAITING = "awaiting_approval"
SENDING = "sending"
PAUSED = "paused"
CANCELLED = "cancelled"
FINISHED = "finished"
LABELS = {AWAITING: "Waiting for an admin's approval", SENDING: "Sending", PAUSED: "Paused",
          CANCELLED: "Cancelled", FINISHED: "All handed to Plivo"}
OPEN = (AWAITING, SENDING, PAUSED)

LANES = 3  # dispatch tasks per batch: with QUEUE_WORKERS 10, two batches leave 4 threads
SLICE_SECONDS = 2.0  # a lane sends this long, then queues itself again
LANE_STALE = timedelta(seconds=30)  # a lane silent this long is started again
DRAFTS_KEPT = timedelta(days=1)
PREVIEW = 3
LIMIT_RECIPIENTS = "batch_limit_recipients"
LIMIT_COST = "batch_limit_cost_usd"
# Final failures that a second try may fix (PLIVO.md section 5): the carrier's network
# or the phone was out of reach for a while, the message expired in Plivo's queue, the
# hourly country threshold, no credit. Never `unknown` (the reconciler has not decided
# whether it went) nor a refusal that needs the number or content fixed.
RETRY_MAY_HELP = frozenset({"20", "80", "420", "451", "900"})
BAD = (statuses.UNDELIVERED, statuses.FAILED, statuses.REJECTED, statuses.ERROR,
       statuses.NOT_SENT)

_messages = Message.__table__
_batches = Batch.__table__


# ---- drafts ------------------------------------------------------------------------------
def _pack(table: Table) -> bytes:
    return zlib.compress(json.dumps({
        "header": table.header, "rows": table.rows, "columns": table.columns,
        "number_column": table.number_column}, separators=(",", ":")).encode(), 6)


def _unpack(data: bytes) -> Table:
    raw = json.loads(zlib.decompress(data))
    return Table(header=raw["header"], rows=[(n, cells) for n, cells in raw["rows"]],
                 columns=raw["columns"], number_column=raw["number_column"])


def create_draft(user: Actor, *, name: str, table: Table, sender: str, text: str,
                 media: list[dict]) -> str:
    """Keep what was read until the person confirms; its token. Drafts older than a day
    go now (a draft is never a send: nothing else refers to it)."""
    token = secrets.token_urlsafe(24)
    db.session.execute(delete(BatchDraft).where(BatchDraft.created_at < utcnow() - DRAFTS_KEPT))
    db.session.add(BatchDraft(token=token, created_by_id=user.id, name=name[:255],
                              sender=sender, text=text, media=media, data=_pack(table)))
    db.session.commit()
    return token


def draft_for(user: Actor, token: str) -> tuple[BatchDraft, Table] | None:
    """This person's draft (another's is not found)."""
    draft = db.session.get(BatchDraft, token[:64])
    if draft is None or draft.created_by_id != user.id:
        return None
    return draft, _unpack(draft.data)


def choose_number_column(draft: BatchDraft, table: Table, column: int) -> None:
    if not 0 <= column < len(table.columns):
        raise ListError("Choose one of the list's columns.")
    table.number_column = column
    draft.data = _pack(table)
    db.session.commit()


def draft_from_batch(user: Actor, batch: Batch, only_retryable: bool) -> str | None:
    """A new draft with the batch's text, media and recipients (all, or the final
    failures a retry may fix); None when there is none to send to."""
    query = select(_messages.c.recipient, _messages.c.fields).where(
        _messages.c.batch_id == batch.id).order_by(_messages.c.id)
    if only_retryable:
        query = query.where(retryable_condition())
    found = db.session.execute(query).all()
    if not found:
        return None
    columns = ["phone", *batch.columns]
    rows = [(i + 2, [recipient, *((fields or {}).get(c, "") for c in batch.columns)])
            for i, (recipient, fields) in enumerate(found)]
    table = Table(header=columns, rows=rows, columns=columns, number_column=0)
    label = "Retry of" if only_retryable else "Copy of"
    return create_draft(user, name=f"{label} {batch.name}"[:255], table=table,
                        sender=batch.sender, text=batch.text, media=list(batch.media or []))


def retryable_condition():
    code = func.coalesce(_messages.c.error_code, "")
    return ((_messages.c.status == statuses.NOT_SENT)
            | (_messages.c.status.in_((statuses.FAILED, statuses.UNDELIVERED))
               & code.in_(sorted(RETRY_MAY_HELP))))


# ---- the preview ---------------------------------------------------------------------------
@dataclass
class Estimate:
    per_message_micros: int
    total_micros: int
    source: str  # where the price per message comes from, in words

    @property
    def total(self) -> str:
        return f"${self.total_micros / 1_000_000:,.2f}"

    @property
    def per_message(self) -> str:
        return f"${self.per_message_micros / 1_000_000:,.4f}"


@dataclass
class Preview:
    check: Check
    samples: list[tuple[str, str]]  # (number, text) of the first PREVIEW recipients
    estimate: Estimate
    approval_reasons: list[str] = field(default_factory=list)  # why an admin must approve
    errors: list[str] = field(default_factory=list)  # why it cannot be confirmed

    @property
    def count(self) -> int:
        return len(self.check.recipients)


def estimate(count: int, now=None) -> Estimate:
    """The team's own average cost per message over the last 30 days (what Plivo charged,
    from the status callbacks, counted in daily_stats), or MMS_PRICE_ESTIMATE_USD before
    any message was priced. An estimate: carriers and media sizes vary."""
    today = (now or utcnow()).date()
    cost, priced = db.session.execute(
        select(func.coalesce(func.sum(DailyStat.cost_micros), 0),
               func.coalesce(func.sum(DailyStat.priced), 0))
        .where(DailyStat.day >= today - timedelta(days=30))).one()
    if priced:
        per = round(int(cost) / int(priced))
        source = f"your average over the last 30 days ({int(priced):,} priced messages)"
    else:
        per = round(current_settings().mms_price_estimate_usd * 1_000_000)
        source = "the configured price; no messages were priced by Plivo in the last 30 days"
    return Estimate(per, per * count, source)


def limits() -> tuple[int | None, Decimal | None]:
    """The ceilings above which a staff member's batch waits for an admin: recipients
    and estimated cost (None: no ceiling)."""
    found = dict(db.session.execute(select(TeamSetting.name, TeamSetting.value).where(
        TeamSetting.name.in_((LIMIT_RECIPIENTS, LIMIT_COST)))).all())
    recipients = found.get(LIMIT_RECIPIENTS) or ""
    cost = found.get(LIMIT_COST) or ""
    return (int(recipients) if recipients.isdigit() else None,
            Decimal(cost) if cost else None)


def set_limits(recipients: int | None, cost: Decimal | None, actor: Actor) -> None:
    now = utcnow()
    for name, value in ((LIMIT_RECIPIENTS, "" if recipients is None else str(recipients)),
                        (LIMIT_COST, "" if cost is None else f"{cost:.2f}")):
        setting = db.session.get(TeamSetting, name)
        if setting is None:
            setting = TeamSetting(name=name)
            db.session.add(setting)
        setting.value, setting.changed_at, setting.changed_by_id = value, now, actor.id
    audit.record("batch_limits_changed", "approval limits", actor=actor,
                 recipients="none" if recipients is None else str(recipients),
                 cost_usd="none" if cost is None else f"{cost:.2f}")
    db.session.commit()


def preview(user: Actor, draft: BatchDraft, table: Table) -> Preview:
    """Everything the preview page shows, from the draft as it stands now (the opt-out
    list and the prices may have moved since it was read)."""
    result = batch_file.check(table, draft.text, draft.sender, MAX_TEXT)
    opted = opt_outs.among(r.number for r in result.recipients)
    if opted:
        result.opted_out = [(r.row, r.number) for r in result.recipients if r.number in opted]
        result.recipients = [r for r in result.recipients if r.number not in opted]
    samples = [(r.number, batch_file.render(draft.text, batch_file.values_by_key(r.fields)))
               for r in result.recipients[:PREVIEW]]
    found = Preview(result, samples, estimate(len(result.recipients)))
    if result.missing_columns:
        found.errors.append("The list has no column for " + ", ".join(
            f"(({p}))" for p in result.missing_columns) + ". Change the text or the list.")
    if not result.recipients:
        found.errors.append("No one on this list can be sent to: see the reasons below.")
    if not user.is_admin:
        most_recipients, most_cost = limits()
        if most_recipients is not None and found.count > most_recipients:
            found.approval_reasons.append(f"more than {most_recipients:,} recipients")
        if most_cost is not None and found.estimate.total_micros > most_cost * 1_000_000:
            found.approval_reasons.append(f"an estimated cost over ${most_cost:,.2f}")
    return found


def problems_csv(result: Check) -> Iterator[str]:
    """The rows left out, with their row number and reason, as CSV (formula-safe)."""
    left_out = [*result.invalid,
                *((row, number, "opted out (replied STOP)") for row, number in result.opted_out)]
    yield "\ufeff" + csv_line(["row", "value", "reason"])
    yield "".join(csv_line(line) for line in sorted(left_out))


# ---- confirm -------------------------------------------------------------------------------
def batch_by_public_id(public_id: str) -> Batch | None:
    return db.session.scalar(select(Batch).where(Batch.public_id == public_id[:24]))


def confirm(user: Actor, token: str) -> tuple[Batch | None, list[str]]:
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
        db.session.execute(insert(_messages), [{
            "public_id": new_public_id(), "created_by_id": user.id, "idempotency_key": key,
            "sender": draft.sender, "recipient": r.number,
            "recipient_reversed": reversed_digits(r.number),
            "text": batch_file.render(draft.text, batch_file.values_by_key(r.fields)),
            "media": media, "status": statuses.PENDING, "status_sequence": 0, "attempts": 0,
            "lookups": 0, "created_at": now, "updated_at": now, "batch_id": batch_id,
            "fields": r.fields or None, "version": 1,
        } for r in seen.check.recipients])
        uploaded = [m["upload"] for m in media if "upload" in m]
        if uploaded:
            uploads.count_uses(uploaded, seen.count)
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


# ---- dispatch ------------------------------------------------------------------------------
def start_lanes(batch_id: int) -> None:
    for lane in range(LANES):
        try:
            enqueue_batch_lane(batch_id, lane)
        except Exception:  # queue down: the sweep starts the lanes again
            log.exception("could not queue batch %s lane %s", batch_id, lane)


def _next_in_lane(batch_id: int, lane: int, limit: int = 10) -> list[int]:
    return list(db.session.scalars(
        select(_messages.c.id).where(
            _messages.c.batch_id == batch_id, _messages.c.status == statuses.PENDING,
            _messages.c.attempts == 0, _messages.c.id % LANES == lane)
        .order_by(_messages.c.id).limit(limit)))


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
        for message_id in waiting:
            if _status(batch_id) != SENDING:
                return
            dispatch_message(message_id, background=True)
        db.session.execute(update(_batches).where(_batches.c.id == batch_id)
                           .values(pumped_at=utcnow()))
        db.session.commit()
        if clock() >= deadline:
            enqueue_batch_lane(batch_id, lane)
            return


def _waiting_condition(batch_id: int):
    return ((_messages.c.batch_id == batch_id) & (_messages.c.status == statuses.PENDING)
            & (_messages.c.attempts == 0))


def _finish_if_done(batch_id: int) -> None:
    """Nothing of the batch is left to hand to Plivo: it is finished."""
    nothing_left = ~select(_messages.c.id).where(_waiting_condition(batch_id)).exists()
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
        if db.session.execute(select(_messages.c.id).where(_waiting_condition(batch_id))
                              .limit(1)).first() is None:
            _finish_if_done(batch_id)
            continue
        db.session.execute(update(_batches).where(_batches.c.id == batch_id)
                           .values(pumped_at=now))
        db.session.commit()
        start_lanes(batch_id)
        restarted += 1
    return {"batch lanes restarted": restarted} if restarted else {}


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
        update(_messages).where(_waiting_condition(batch.id))
        .values(status=statuses.CANCELLED, final_at=now, updated_at=now,
                error_reason="The send to the list was cancelled before this was sent.",
                version=_messages.c.version + 1)).rowcount
    audit.record("batch_cancelled", batch.name, actor=actor, batch=batch.public_id,
                 cancelled=cancelled)
    db.session.commit()
    return cancelled


# ---- progress and report -------------------------------------------------------------------
@dataclass
class Progress:
    total: int
    by_status: dict[str, int]
    rate_per_second: float
    cost: Decimal | None

    def count(self, *names: str) -> int:
        return sum(self.by_status.get(n, 0) for n in names)

    @property
    def waiting(self) -> int:
        return self.count(statuses.PENDING)

    @property
    def delivered(self) -> int:
        return self.count(statuses.DELIVERED)

    @property
    def failed(self) -> int:
        return self.count(*BAD)

    @property
    def cancelled(self) -> int:
        return self.count(statuses.CANCELLED)

    @property
    def on_way(self) -> int:
        return self.count(statuses.QUEUED, statuses.SENT)

    @property
    def unknown(self) -> int:
        return self.count(statuses.UNKNOWN)

    @property
    def handed(self) -> int:
        """Handed to Plivo (or being handed): everything not waiting and not cancelled."""
        return self.total - self.waiting - self.cancelled

    @property
    def settled(self) -> bool:
        return self.waiting == 0 and self.on_way == 0 and self.unknown == 0

    def percent(self, part: int) -> float:
        return round(100 * part / self.total, 1) if self.total else 0.0

    @property
    def eta_seconds(self) -> int | None:
        if not self.waiting or not self.rate_per_second:
            return None
        return round(self.waiting / self.rate_per_second)


def progress(batch: Batch) -> Progress:
    """Counts by status (one index-only count of the batch), and the rate its waiting
    messages go at: Plivo's window (SEND_RATE_PER_5S) shared by the batches sending."""
    by_status = dict(db.session.execute(
        select(_messages.c.status, func.count()).where(_messages.c.batch_id == batch.id)
        .group_by(_messages.c.status)).all())
    cost = db.session.scalar(select(func.sum(_messages.c.total_amount))
                             .where(_messages.c.batch_id == batch.id))
    sending = db.session.scalar(select(func.count()).select_from(_batches)
                                .where(_batches.c.status == SENDING)) or 1
    rate = current_settings().send_rate_per_5s / 5 / sending if batch.status == SENDING else 0
    return Progress(batch.total, by_status, rate,
                    Decimal(str(cost)).quantize(Decimal("0.01")) if cost else None)


def failures(batch: Batch, limit: int = 50) -> list:
    """The batch's final failures, with their reasons (the first `limit`)."""
    return db.session.execute(
        select(_messages.c.public_id, _messages.c.recipient, _messages.c.status,
               _messages.c.error_code, _messages.c.error_reason, _messages.c.fields)
        .where(_messages.c.batch_id == batch.id, _messages.c.status.in_(BAD))
        .order_by(_messages.c.id).limit(limit)).all()


def retryable(batch: Batch) -> int:
    return db.session.scalar(select(func.count()).select_from(_messages).where(
        _messages.c.batch_id == batch.id, retryable_condition())) or 0


def recent(limit: int = 30) -> list[Batch]:
    """The team's batches, those waiting for approval first, then newest first."""
    waiting = list(db.session.scalars(select(Batch).where(Batch.status == AWAITING)
                                      .order_by(Batch.id)))
    rest = list(db.session.scalars(select(Batch).where(Batch.status != AWAITING)
                                   .order_by(Batch.id.desc()).limit(limit)))
    return waiting + rest


def report_rows(batch: Batch) -> Iterator[bytes]:
    """The batch as CSV, one row per recipient with the list's own columns, streamed in
    keyset batches; every cell formula-safe."""
    head = ["phone", *batch.columns, "status", "error", "cost_usd", "sent_at_utc", "message"]
    yield ("\ufeff" + csv_line(head)).encode()
    after = 0
    while True:
        chunk = db.session.execute(
            select(_messages.c.id, _messages.c.recipient, _messages.c.fields,
                   _messages.c.status, _messages.c.error_reason, _messages.c.total_amount,
                   _messages.c.sent_at, _messages.c.public_id)
            .where(_messages.c.batch_id == batch.id, _messages.c.id > after)
            .order_by(_messages.c.id).limit(2000)).all()
        if not chunk:
            return
        lines = []
        for row in chunk:
            fields = row.fields or {}
            lines.append(csv_line([
                row.recipient, *(fields.get(c, "") for c in batch.columns),
                statuses.LABELS.get(row.status, row.status), row.error_reason or "",
                "" if row.total_amount is None else str(row.total_amount),
                row.sent_at.strftime("%Y-%m-%d %H:%M:%S") if row.sent_at else "",
                row.public_id]))
        yield "".join(lines).encode()
        after = chunk[-1].id


def recorded_report(batch: Batch, actor: Actor) -> Iterator[bytes]:
    """report_rows, with its audit entry written before the first byte."""
    audit.record_now("batch_exported", batch.name, actor=actor, batch=batch.public_id)
    yield from report_rows(batch)
