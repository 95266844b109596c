"""How every page shows a message's facts: phone numbers, times in the reader's zone, money,
file sizes and the status badge; registered as template helpers by `init_app`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from html import escape as _e  # 0.4 us a value; markupsafe.escape is 0.8
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import Flask
from flask_login import current_user
from markupsafe import Markup

from webapp import statuses
from webapp.config import current_settings
from webapp.models import Message, utcnow
from webapp.number_limits import POOL, POOL_LABEL, POWERPACK


def format_phone(number: str | None) -> str:
    """(415) 555-0100 for North American E.164 numbers, anything else as it is."""
    if number and len(number) == 12 and number.startswith("+1") and number[1:].isdigit():
        return f"({number[2:5]}) {number[5:8]}-{number[8:]}"
    if number == POOL:
        return POOL_LABEL.lower()
    if number == POWERPACK:
        return "Plivo's Powerpack"
    return number or ""


@lru_cache(maxsize=64)
def _zone(name: str) -> tzinfo:
    return ZoneInfo(name)


def display_zone() -> tzinfo:
    """The time zone the signed-in person reads times in: their own choice (Your account)
    or DISPLAY_TIMEZONE."""
    name = getattr(current_user, "time_zone", None)
    if name:
        try:
            return _zone(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass  # a zone the system no longer knows: the dashboard's own
    return current_settings().display_timezone


def local_time(moment: datetime | None, zone: tzinfo | None = None) -> str:
    """A time as every page shows it: in the display time zone (DISPLAY_TIMEZONE), with
    the zone's abbreviation. UTC is cut from isoformat(), the fast path of a table."""
    if moment is None:
        return "—"
    zone = zone or display_zone()
    if zone is UTC or getattr(zone, "key", None) == "UTC":
        iso = moment.isoformat()
        return f"{iso[:10]} {iso[11:16]} UTC"
    local = moment.astimezone(zone)
    return f"{local:%Y-%m-%d %H:%M} {local.tzname()}"


def money(amount) -> str:
    """Plivo's TotalAmount as people write dollars: "0.02000" → "$0.02", "0.01650" →
    "$0.0165" (no rounding: the exact price, just without the padding); "—" when none."""
    if amount is None or amount == "":
        return "—"
    try:
        value = Decimal(str(amount))
    except InvalidOperation:
        return "—"
    if not value.is_finite():
        return "—"
    text = f"{value:.5f}".rstrip("0")
    whole, _, cents = text.partition(".")
    return f"${whole}.{cents.ljust(2, '0')}"


def no_receipt_after() -> timedelta:
    """How long a sent message waits for a receipt before it reads \"carrier gives none\"."""
    return timedelta(minutes=current_settings().sent_no_receipt_after_minutes)


@lru_cache(maxsize=512)  # a handful of (status, label, advice) cover every row there is
def badge(status: str, label: str, advice: str | None = None) -> Markup:
    """The status badge, the same in the history rows and on the detail page; what to do
    about a failure as its tooltip."""
    tone = statuses.TONES.get(status, "neutral")
    title = f' title="{_e(advice)}"' if advice else ""
    html = (f'<span class="badge badge-{tone}" data-status="{_e(status)}"{title}>'
            f"{_e(label)}</span>")
    return Markup(html)  # noqa: S704 (every value escaped above; tone is ours)


# ---- template helpers -------------------------------------------------------------------
def status_label(message: Message) -> str:
    return statuses.label(message.status, message.error_code, message.sent_at, utcnow(),
                          no_receipt_after())


def filesize(n: int | None) -> str:
    """640 KB, 3.2 MB: a file's size as people read it (messages and pages alike)."""
    n = int(n or 0)
    if n >= 1024 * 1024:
        return f"{n / 1024 / 1024:.1f} MB"
    return f"{max(1, round(n / 1024))} KB" if n else "0 KB"


def init_app(app: Flask) -> None:
    """Every template may show a phone number, a time, a badge or a sum of money."""
    app.jinja_env.globals.update(
        badge=badge, status_label=status_label, explain_error_code=statuses.explain_error_code,
        advice=statuses.advice, money=money, is_final=statuses.is_final, local_time=local_time)
    app.jinja_env.filters.update(phone=format_phone, filesize=filesize)
