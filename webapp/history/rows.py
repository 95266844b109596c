"""A history table row: the columns a page reads, formatted once per row, as HTML in the
hot path (rows_html), and the summary of one send. General formatting is
messages.presentation."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from decimal import Decimal, InvalidOperation
from html import escape as _e  # 0.4 us a value; markupsafe.escape is 0.8
from operator import itemgetter
from typing import NamedTuple

from flask import url_for
from markupsafe import Markup

from webapp import statuses
from webapp.history.pages import TABLE_COLUMNS
from webapp.messages.presentation import (
    badge,
    display_zone,
    format_phone,
    local_time,
    money,
    no_receipt_after,
)
from webapp.models import utcnow


class Row(NamedTuple):
    """A message formatted for the history table."""

    public_id: str
    is_final: bool
    created_iso: str
    created_utc: str
    created_local: str
    recipient: str
    excerpt: str
    media_count: int
    thumbnail: str | None
    status: str
    label: str
    advice: str | None
    sent_by: str
    cost: str


# Where uploaded files are served (views.media_file, views.media_thumbnail).
MEDIA_PATH = "/media"

# The table row's columns present() reads, picked by name from history.TABLE_COLUMNS. An
# itemgetter rather than attribute access on each row: half the cost of a 50-row page.
_SHOWN = ("public_id", "status", "error_code", "created_at", "sent_at", "recipient", "text",
          "media_count", "first_url", "first_type", "first_upload", "total_amount", "sent_by")
_pick_shown = itemgetter(*(TABLE_COLUMNS.index(name) for name in _SHOWN))
_TOTAL_AMOUNT = TABLE_COLUMNS.index("total_amount")


def present(table_row, now: datetime, no_receipt_after: timedelta,
            zone: tzinfo = UTC) -> Row:
    """One row of history's table queries, as the table shows it, times in `zone`."""
    (public_id, status, error_code, created, sent_at, recipient, text, media_count,
     first_url, first_type, first_upload, total_amount, sent_by) = _pick_shown(table_row)
    if first_upload:  # a file staff uploaded: its thumbnail (every type has one or none)
        image = f"{MEDIA_PATH}/{first_upload}/thumbnail" if first_type.startswith("image/") else None
    else:
        image = first_url if first_type and first_type.startswith("image/") else None
    text = text or ""
    iso = created.isoformat()  # UTC (UTCDateTime): 2026-01-31T09:15:00+00:00
    return Row(
        public_id,
        status in statuses.FINAL,
        iso,
        f"{iso[:10]} {iso[11:16]} UTC",
        local_time(created, zone),
        format_phone(recipient),
        (text[:57] + "…") if len(text) > 60 else (text or "—"),
        media_count,
        image,
        status,
        statuses.label(status, error_code, sent_at, now, no_receipt_after),
        statuses.advice(status, error_code),
        sent_by,
        money(total_amount),
    )


def present_rows(table_rows: list) -> list[Row]:
    now, after, zone = utcnow(), no_receipt_after(), display_zone()
    return [present(row, now, after, zone) for row in table_rows]


# Status and recipient first: they are what staff look for. On a phone each row becomes a
# card (static/css/app.css) whose cells say what they are through data-label.
_ROW = (
    '<tr id="msg-{id}" data-final="{final}">'
    '<td class="status-cell" data-label="Status">{badge}{why}</td>'
    '<td class="to-cell" data-label="To"><a href="{href}">{recipient}</a></td>'
    '<td class="time-cell" data-label="Time"><time datetime="{iso}" title="{utc}">{local}</time></td>'
    '<td class="excerpt" data-label="Text"><span class="clamp">{excerpt}</span></td>'
    '<td class="media-cell" data-label="Media">{thumbnail}{media_count}</td>'
    '<td class="by-cell" data-label="Sent by">{sent_by}</td>'
    '<td class="cost-cell" data-label="Cost">{cost}</td>'
    "</tr>\n"
)
_THUMBNAIL = '<img class="thumb" src="{}" alt="" loading="lazy" referrerpolicy="no-referrer"> '
# What to do about a message that ended badly, under its badge: on a phone there is no
# hover, so a tooltip alone left staff opening each message to learn why.
_WHY = '<small class="why">{}</small>'


def rows_html(rows: list[Row], detail_url: str) -> Markup:
    """The table rows, every stored value escaped (the times are cut from datetimes).
    Built here rather than in a Jinja loop: the same markup through the template cost a
    third of the history page under load (commit a539781). `detail_url` is
    url_for('history.history')."""
    html = []
    for row in rows:
        public_id = _e(row.public_id)
        html.append(_ROW.format(
            id=public_id, final="yes" if row.is_final else "no", iso=row.created_iso,
            utc=row.created_utc, local=row.created_local, href=f"{detail_url}/{public_id}",
            recipient=_e(row.recipient), excerpt=_e(row.excerpt),
            thumbnail=_THUMBNAIL.format(_e(row.thumbnail)) if row.thumbnail else "",
            media_count=row.media_count, badge=badge(row.status, row.label, row.advice),
            why=_WHY.format(_e(row.advice)) if row.advice else "",
            sent_by=_e(row.sent_by), cost=_e(row.cost)))
    return Markup("".join(html))  # noqa: S704 (every value escaped above)


@dataclass(frozen=True)
class SendSummary:
    """One compose submission at a glance: how many, how each ended, what it cost."""

    total: int
    outcomes: list[tuple[str, int, str]]  # (label, count, tone), most common first
    cost: str | None  # "$0.03200" once Plivo has priced any of them
    failed: int  # ended badly: worth a look
    settled: bool  # every message is final


def summarize(rows: list[Row], table_rows: list) -> SendSummary:
    """Counts by the label each row shows; the cost from Plivo's TotalAmount."""
    counts: dict[tuple[str, str], int] = {}
    for row in rows:
        key = (row.label, statuses.TONES.get(row.status, "neutral"))
        counts[key] = counts.get(key, 0) + 1
    amounts = []
    for table_row in table_rows:
        amount = table_row[_TOTAL_AMOUNT]
        try:
            amounts.append(Decimal(str(amount)))
        except InvalidOperation:  # none yet ("None"), or a value Plivo's callback mangled
            continue
    return SendSummary(
        total=len(rows),
        outcomes=[(label, count, tone) for (label, tone), count
                  in sorted(counts.items(), key=lambda item: -item[1])],
        cost=money(sum(amounts)) if amounts else None,
        failed=sum(1 for row in rows if row.status in statuses.BAD_ENDINGS),
        settled=all(row.is_final for row in rows))


def history_rows(rows: list[Row]) -> Markup:
    return rows_html(rows, url_for("history.history"))


def rows_poll_url(rows: list[Row]) -> str | None:
    """Where a table with rows still in flight polls for their changes; None once all are final."""
    if all(row.is_final for row in rows):
        return None
    return url_for("history.rows", id=[row.public_id for row in rows])


TEMPLATE_GLOBALS = {"history_rows": history_rows, "rows_poll_url": rows_poll_url}
