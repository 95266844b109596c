"""A list read into a draft (the rows as read, compressed; nothing is a send yet), checked
and priced on a preview, and the admins' approval limits.
"""

from __future__ import annotations

import json
import logging
import secrets
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

from sqlalchemy import delete, func, select

from webapp import audit, statuses
from webapp.auth.service import Actor
from webapp.config import current_settings
from webapp.extensions import db
from webapp.lists import list_file
from webapp.lists.list_file import Check, ListError, Table
from webapp.lists.states import RETRY_MAY_HELP
from webapp.messages import opt_outs
from webapp.messages.limits import MAX_TEXT
from webapp.models import (
    Batch,
    BatchDraft,
    DailyStat,
    Message,
    TeamSetting,
    utcnow,
)
from webapp.number_limits import POOL
from webapp.sending import eta
from webapp.spreadsheet import csv_line

log = logging.getLogger(__name__)

_messages = Message.__table__
_batches = Batch.__table__


DRAFTS_KEPT = timedelta(days=1)


PREVIEW = 3


LIMIT_RECIPIENTS = "batch_limit_recipients"


LIMIT_COST = "batch_limit_cost_usd"


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


def change_text(draft: BatchDraft, text: str) -> None:
    """The person corrected the message on the preview (a ((placeholder)) typo, most
    often); the preview is made again from it."""
    text = (text or "").replace("\r\n", "\n")
    if len(text) > MAX_TEXT:
        raise ListError(f"The message is {len(text):,} characters; an MMS carries at most "
                        f"{MAX_TEXT:,}.")
    draft.text = text
    db.session.commit()


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
    duration: eta.Estimate | None = None  # how long it takes at Plivo's pace

    @property
    def long(self) -> bool:
        """Longer than LONG_SEND_CONFIRM_HOURS: Confirm asks again."""
        limit = current_settings().long_send_confirm_hours * 3600
        return self.duration is not None and self.duration.seconds > limit

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
        source = (f"the team's average over the last 30 days ({int(priced):,} priced "
                  "messages)")
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
    result = list_file.check(table, draft.text, draft.sender, MAX_TEXT)
    opted = opt_outs.among(r.number for r in result.recipients)
    if opted:
        result.opted_out = [(r.row, r.number) for r in result.recipients if r.number in opted]
        result.recipients = [r for r in result.recipients if r.number not in opted]
    samples = [(r.number, list_file.render(draft.text, list_file.values_by_key(r.fields)))
               for r in result.recipients[:PREVIEW]]
    found = Preview(result, samples, estimate(len(result.recipients)))
    found.duration = eta.estimate(found.count, numbers_of(draft.sender), ahead=eta.waiting_ahead())
    for placeholder in result.missing_columns:
        nearest = result.suggestions.get(placeholder)
        found.errors.append(f"The list has no column for (({placeholder}))" + (
            f": did you mean (({nearest}))?" if nearest else
            f". Its columns are: {', '.join(table.columns)}.") + " Change the text below.")
    if not result.recipients:
        found.errors.append("No one on this list can be sent to: see the reasons below.")
    if not user.is_admin:
        most_recipients, most_cost = limits()
        if most_recipients is not None and found.count > most_recipients:
            found.approval_reasons.append(f"more than {most_recipients:,} recipients")
        if most_cost is not None and found.estimate.total_micros > most_cost * 1_000_000:
            found.approval_reasons.append(f"an estimated cost over ${most_cost:,.2f}")
    return found


def numbers_of(sender: str) -> list[str]:
    """The numbers a send from `sender` uses: the whole pool, or the one chosen."""
    return list(current_settings().sender_numbers) if sender == POOL else [sender]


def problems_csv(result: Check) -> Iterator[str]:
    """The rows left out, with their row number and reason, as CSV (formula-safe)."""
    yield "\ufeff" + csv_line(["row", "value", "reason"])
    yield "".join(csv_line(line) for line in result.left_out)

