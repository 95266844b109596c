"""The overview's pages: thin views over messages.overview and messages.health."""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user, login_required
from markupsafe import Markup

from webapp import statuses
from webapp.auth.sessions import passive
from webapp.config import current_settings
from webapp.extensions import limiter
from webapp.history import pages as history
from webapp.models import utcnow
from webapp.overview import figures as overview
from webapp.overview import health, rollups
from webapp.security import admin_required, user_key
from webapp.sending.forms import read_recipients

bp = Blueprint("overview", __name__)


def _chart(data: overview.Overview, path: str) -> dict:
    """What static/js/overview.js draws: per day, the outcomes (stacked) and the delivery
    rate, each bar with the history link of its messages (`path`: the history's)."""
    return {
        "labels": [f"{day.day:%-d %b}" for day in data.days],
        "outcomes": [{"key": key, "label": label,
                      "values": [day.figures.by_outcome[key] for day in data.days],
                      "links": [overview.history_href(path, day.figures.link_to(key))
                                for day in data.days]}
                     for key, label in overview.OUTCOME_LABELS.items()],
        "rate": [None if day.figures.delivery_rate is None
                 else round(100 * day.figures.delivery_rate, 1) for day in data.days],
        "p50": [day.p50 if day.p50 and day.p50 > 0 else None for day in data.days],
        "p95": [day.p95 if day.p95 and day.p95 > 0 else None for day in data.days],
    }


# The figures change only when the workers' sweep recounts the rollups: each process
# renders a period's figures once per sweep (keyed by rollup_state.refreshed_at) and
# serves that until the next. The health panel is read at most every HEALTH_SECONDS.
FIGURES_KEPT = 64
HEALTH_SECONDS = 5.0
_lock = threading.Lock()


def _figures(period: overview.Period, zone, everyone: bool) -> tuple[Markup, object]:
    refreshed_at = rollups.refreshed_at()
    key = (period, rollups.zone_name(zone), everyone, None if everyone else current_user.id,
           refreshed_at)
    cache = current_app.extensions.setdefault("overview.figures", OrderedDict())
    with _lock:
        if key in cache:
            cache.move_to_end(key)
            return cache[key], refreshed_at
    data = overview.build(period, zone, current_user.id, everyone=everyone)
    # A rendered (autoescaped) template: already HTML.
    path = url_for("history.history")
    html = Markup(render_template(  # noqa: S704
        "overview/_figures.html", o=data, chart=_chart(data, path), everyone=everyone,
        duration=overview.duration, history_href=overview.history_href, history_path=path))
    with _lock:
        cache[key] = html
        while len(cache) > FIGURES_KEPT:
            cache.popitem(last=False)
    return html, refreshed_at


def _health_panel() -> health.Health:
    with _lock:
        kept = current_app.extensions.get("overview.health")
        if kept and time.monotonic() - kept[0] < HEALTH_SECONDS:
            return kept[1]
    figures = health.gather()
    with _lock:
        current_app.extensions["overview.health"] = (time.monotonic(), figures)
    return figures


@bp.get("/", endpoint="index")
@login_required
def overview_page():
    zone = current_settings().display_timezone
    period, errors = overview.Period.from_args(request.args, utcnow().astimezone(zone).date())
    for error in errors:
        flash(error, "warning")
    figures, refreshed_at = _figures(period, zone, everyone=current_user.is_admin)
    return render_template(
        "overview/index.html", figures=figures, period=period, zone=rollups.zone_name(zone),
        refreshed_at=refreshed_at, periods=overview.PERIODS,
        recounted=overview.every(current_settings().queue_sweep_seconds),
        health=_health_panel() if current_user.is_admin else None)


@bp.get("/admin/health", endpoint="health")
@admin_required
def health_page():
    return render_template("overview/health.html", health=health.gather(),
                           statuses_labels=statuses.LABELS,
                           recounted=overview.every(current_settings().queue_sweep_seconds))


@bp.post("/admin/health/test", endpoint="send_test")
@admin_required
@limiter.limit("10 per minute", key_func=user_key)
def send_test():
    typed = request.form.get("number", "")[:40]
    numbers = read_recipients(typed.strip())
    if numbers.problems or len(numbers.numbers) != 1:
        problem = (numbers.problems or ["Enter one US or Canadian number."])[0]
        result = health.TestSend(error=re.sub(r"^Line \d+: ", "", problem))
    else:
        result = health.send_test(current_user, numbers.numbers[0])
    if result.error:
        return render_template("overview/health.html", health=health.gather(),
                               statuses_labels=statuses.LABELS, test_error=result.error,
                               recounted=overview.every(current_settings().queue_sweep_seconds),
                               test_number=request.form.get("number", "")[:40]), 400
    return redirect(url_for("overview.test_round_trip", public_id=result.public_id), 303)


def _round_trip(public_id: str) -> dict:
    message = history.message_by_public_id(public_id) or abort(404)
    if message.created_by_id != current_user.id:
        abort(404)
    return {"message": message, "final": statuses.is_final(message.status),
            "steps": health.round_trip(message, history.timeline(message))}


@bp.get("/admin/health/test/<public_id>", endpoint="test_round_trip")
@admin_required
def test_round_trip(public_id: str):
    return render_template("overview/test_message.html", **_round_trip(public_id))


@bp.get("/admin/health/test/<public_id>/live", endpoint="test_round_trip_live")
@passive
@admin_required
def test_round_trip_live(public_id: str):
    return render_template("overview/_round_trip.html", **_round_trip(public_id))


