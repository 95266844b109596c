"""The overview: rollups that equal a recount, the page's figures and their links, the
period, the admins' health panel, the test message."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from html import unescape
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select

from tests.conftest import PASSWORD, login, post_form
from tests.helpers import make_message, save_message, url
from webapp.auth import service as accounts
from webapp.callbacks import ledger as callbacks
from webapp.extensions import db
from webapp.gateway.signatures import SignatureScheme
from webapp.models import (
    CallbackHour,
    DailyLatency,
    DailyStat,
    Message,
    RefusedCallbackCount,
    RollupState,
    StatusEvent,
    utcnow,
)
from webapp.overview import figures as overview
from webapp.overview import health, rollups

ZONE = "America/Toronto"
TORONTO = ZoneInfo(ZONE)


# ---- the rollups equal a full recount ----------------------------------------------------------
def recount_by_hand(zone) -> tuple[dict, dict]:
    """The rollups as they should be, counted the slow, obvious way from every message."""
    stats: dict = defaultdict(lambda: [0, 0, 0])
    latency: dict = defaultdict(lambda: [0] * rollups.BUCKETS)
    for m in db.session.scalars(select(Message)):
        day = m.created_at.astimezone(zone).date()
        figures = stats[(day, m.created_by_id, m.status, m.error_code or "")]
        figures[0] += 1
        if m.total_amount is not None:
            figures[1] += 1
            figures[2] += int(Decimal(str(m.total_amount)) * 1_000_000)
        if m.status == "delivered" and m.final_at:
            latency[day][rollups.latency_bucket((m.final_at - m.created_at).total_seconds())] += 1
    return ({key: tuple(value) for key, value in stats.items()},
            {day: buckets for day, buckets in latency.items()})


def rollups_as_stored() -> tuple[dict, dict]:
    stats = {(r.day, r.created_by_id, r.status, r.error_code): (r.messages, r.priced, r.cost_micros)
             for r in db.session.scalars(select(DailyStat))}
    latency = {r.day: list(r.buckets) for r in db.session.scalars(select(DailyLatency))}
    return stats, latency


_uuids = iter(range(10**9))
STEPS = st.lists(st.one_of(
    st.tuples(st.just("send"), st.integers(1, 3), st.integers(0, 12), st.integers(0, 23)),
    st.tuples(st.just("callback"), st.integers(0, 40),
              st.sampled_from(["queued", "sent", "delivered", "undelivered", "failed"]),
              st.sampled_from(["", "30", "200"]), st.sampled_from(["", "0.01000", "0.02450"])),
    st.tuples(st.just("refresh")),
), min_size=1, max_size=30)


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=STEPS)
def test_the_rollups_equal_a_recount_after_any_sends_and_callbacks(make_app, steps):
    """Sends on any of the last 12 days (some far outside the days recounted at every
    sweep), callbacks in any order with costs and error codes, sweeps in between: after a
    last sweep the rollups are exactly what counting every message gives."""
    check_rollups_equal_a_recount(_rollup_app(make_app), steps)


def check_rollups_equal_a_recount(app, steps) -> None:
    """(Also run on PostgreSQL by the stack suite.) Users 1 to 3 must exist."""
    with app.app_context():
        for table in (StatusEvent, Message, DailyStat, DailyLatency, CallbackHour, RollupState):
            db.session.execute(delete(table))
        db.session.commit()
        sent: list[tuple[int, str]] = []
        now = utcnow()
        for step in steps:
            if step[0] == "send":
                _, user, days_ago, hour = step
                uuid = f"uuid-{next(_uuids)}"
                created = (now - timedelta(days=days_ago)).replace(hour=hour)
                message = make_message(created_by_id=user, created_at=min(created, now),
                                       status="queued", plivo_uuid=uuid)
                db.session.add(message)
                db.session.commit()
                sent.append((message.id, uuid))
            elif step[0] == "callback" and sent:
                _, which, status, error, amount = step
                _id, uuid = sent[which % len(sent)]
                payload = {"MessageUUID": uuid, "Status": status, "Sequence": str(which),
                           "ErrorCode": error if status in ("undelivered", "failed") else "",
                           "TotalAmount": amount, "Units": "1"}
                callbacks.record_status_callback(callbacks.parse_callback(payload), payload,
                                                 SignatureScheme.V3)
            elif step[0] == "refresh":
                rollups.refresh()
        rollups.refresh()
        assert rollups_as_stored() == _nonzero(recount_by_hand(TORONTO))
        # Every ledger row is counted once in callbacks per hour.
        counted = sum(db.session.scalars(select(CallbackHour.count)))
        assert counted == len(db.session.scalars(select(StatusEvent.id)).all())


def _nonzero(expected):
    stats, latency = expected
    return stats, {day: buckets for day, buckets in latency.items() if any(buckets)}


_apps: dict = {}


def _rollup_app(make_app):
    # One app (and database) for all of Hypothesis's examples: each starts by emptying it.
    key = id(make_app)
    if key not in _apps:
        _apps.clear()
        app = _apps[key] = make_app(DISPLAY_TIMEZONE=ZONE)
        with app.app_context():
            for n in (1, 2, 3):
                accounts.create_user(f"user{n}@example.com", PASSWORD, "staff")
    return _apps[key]


def test_a_new_display_time_zone_recounts_every_day(make_app, make_user):
    app = make_app(DISPLAY_TIMEZONE="UTC")
    user = make_user()
    # 03:30 UTC is the evening before in Toronto.
    save_message(app, created_by_id=user.id, status="delivered",
                 created_at=datetime(2026, 11, 20, 3, 30, tzinfo=UTC))
    with app.app_context():
        rollups.refresh()
        assert [r.day.isoformat() for r in db.session.scalars(select(DailyStat))] == ["2026-11-20"]
    app = make_app(DISPLAY_TIMEZONE=ZONE)  # the same database, a new setting
    with app.app_context():
        rollups.refresh()
        assert [r.day.isoformat() for r in db.session.scalars(select(DailyStat))] == ["2026-11-19"]
        assert db.session.get(RollupState, 1).zone == ZONE


def test_flask_stats_rebuild_recounts_from_scratch(app, make_user):
    user = make_user()
    save_message(app, created_by_id=user.id, status="failed", error_code="30",
                 total_amount="0.0245")
    with app.app_context():
        db.session.add(DailyStat(day=datetime(2020, 1, 1).date(), created_by_id=user.id,
                                 status="delivered", error_code="", messages=99, priced=0,
                                 cost_micros=0))  # a figure no message backs
        db.session.commit()
    result = app.test_cli_runner().invoke(args=["stats", "rebuild"])
    assert result.exit_code == 0, result.output
    assert "days: 1" in result.output
    with app.app_context():
        rows = db.session.scalars(select(DailyStat)).all()
        assert [(r.status, r.error_code, r.messages, r.cost_micros) for r in rows] == [
            ("failed", "30", 1, 24_500)]


def test_percentiles_come_from_the_histogram():
    histogram = [0] * rollups.BUCKETS
    for seconds in [0.5] * 50 + [4] * 45 + [100] * 5:
        histogram[rollups.latency_bucket(seconds)] += 1
    assert overview.percentile(histogram, 0.5) == 1
    assert overview.percentile(histogram, 0.95) == 5
    assert overview.percentile(histogram, 0.99) == 120
    assert overview.percentile([0] * rollups.BUCKETS, 0.5) is None
    histogram[-1] += 1000  # slower than a day
    assert overview.percentile(histogram, 0.95) == -1
    assert overview.duration(-1) == "over a day"
    assert overview.duration(90) == "≤ 1.5 min"


# ---- the page ------------------------------------------------------------------------------
@pytest.fixture
def team(app, make_user):
    """Two staff and an admin, and a week of messages, counted."""
    amy, bob = make_user("amy@example.com"), make_user("bob@example.com")
    admin = make_user("boss@example.com", "admin")
    now = utcnow()
    for i in range(6):
        save_message(app, created_by_id=amy.id, status="delivered", total_amount="0.02",
                     created_at=now - timedelta(minutes=30 + i),
                     final_at=now - timedelta(minutes=30 + i, seconds=-50))
    for i in range(3):
        save_message(app, created_by_id=bob.id, status="undelivered", error_code="30",
                     total_amount="0.02", created_at=now - timedelta(hours=1 + i))
    save_message(app, created_by_id=bob.id, status="sent", created_at=now - timedelta(minutes=5))
    save_message(app, created_by_id=amy.id, status="unknown", created_at=now - timedelta(minutes=6))
    # Older than 30 days: in no period but a custom one.
    save_message(app, created_by_id=amy.id, status="delivered",
                 created_at=now - timedelta(days=45), final_at=now - timedelta(days=45))
    with app.app_context():
        rollups.refresh()
    return {"amy": amy, "bob": bob, "admin": admin}


def tile(html: str, label: str) -> str:
    match = re.search(r'<span class="tile-label">' + re.escape(label)
                      + r'</span><span class="tile-figure">(.*?)</span>', html, re.S)
    assert match, label
    return re.sub(r"<[^>]+>", "", match.group(1)).strip()


def test_the_overview_is_the_landing_page_after_login(client, team):
    response = login(client, "amy@example.com")
    assert response.headers["Location"] == url("overview.index")


def test_an_admin_sees_the_weeks_figures_at_a_glance(client, team):
    login(client, "boss@example.com")
    html = unescape(client.get(url("overview.index")).get_data(as_text=True))
    assert tile(html, "Messages sent") == "11"
    assert tile(html, "Delivered") == "6"
    assert tile(html, "Not delivered or failed") == "3"
    assert tile(html, "Awaiting a receipt · unknown") == "1 · 1"
    assert tile(html, "Delivery rate") == "66.7%"  # 6 of the 9 with an outcome
    assert tile(html, "Total cost") == "$0.1800"
    assert tile(html, "Average cost") == "$0.0200"
    assert tile(html, "Time to delivery") == "≤ 1 min"
    assert "spam detected" in html  # error 30, in plain words
    assert "amy@example.com" in html and "bob@example.com" in html
    assert "Callbacks and sending" in html  # the admins' health panel


def test_every_figure_opens_exactly_the_messages_behind_it(client, team, app):
    login(client, "boss@example.com")
    html = client.get(url("overview.index")).get_data(as_text=True)
    links = [unescape(href) for href in re.findall(r'href="(/messages\?[^"]+)"', html)]
    assert len(links) > 10
    for link in links:
        number = re.search(re.escape(link.replace("&", "&amp;")) + r'">([\d,]+)</a>', html)
        page = client.get(link)
        assert page.status_code == 200, link
        count = client.get(url("history.count") + "?" + urlsplit(link).query)
        shown = re.search(r"([\d,]+) (?:matching )?messages?", count.get_data(as_text=True))
        if number:  # a link on a figure: the history counts the same messages
            assert shown and shown.group(1) == number.group(1), (link, count.get_data(as_text=True))
    failed = next(link for link in links if "error=30" in link)
    query = parse_qs(urlsplit(failed).query)
    assert query["tz"] == ["UTC"] and "from" in query and "to" in query


def test_staff_see_the_team_and_their_own_line_only(client, team):
    login(client, "amy@example.com")
    html = client.get(url("overview.index")).get_data(as_text=True)
    assert "bob@example.com" not in html
    assert ">You<" in html and ">Whole team<" in html
    assert "Callbacks and sending" not in html
    assert client.get(url("overview.health")).status_code == 403


@pytest.mark.parametrize(("query", "message", "shown"), [
    ("period=today", None, "Today"),
    ("period=30d", None, "Last 30 days"),
    ("period=forever", "Unknown period", "Last 7 days"),
    ("period=custom&from=2026-13-01&to=x", "Give both dates", "Last 7 days"),
    ("period=custom&from=2020-01-01&to=2026-01-01", "at most 400 days apart", "Last 7 days"),
    ("period=custom&from=2025-01-01&to=2026-02-06", "at most 400 days apart", "Last 7 days"),
    ("period=custom&from=2025-01-01&to=2026-02-05", None, "1 Jan 2025 to 5 Feb 2026"),
    ("period=custom&from=1999-01-01&to=1999-01-02", "between 2000 and 2099", "Last 7 days"),
    ("period=custom&from=2026-02-10&to=2026-02-01", "wrong way round; they have been swapped",
     "1 Feb 2026 to 10 Feb 2026"),
])
def test_the_period_is_chosen_and_bad_ones_are_explained(client, team, query, message, shown):
    login(client, "amy@example.com")
    response = client.get(url("overview.index") + "?" + query)
    assert response.status_code == 200
    html = unescape(response.get_data(as_text=True))
    assert shown in html
    if message:
        assert message in html


@pytest.mark.parametrize(("seconds", "said"), [("30", "every 30 seconds"),
                                                ("300", "every 5 minutes")])
def test_the_page_says_how_often_the_figures_are_recounted(make_app, seconds, said):
    app = make_app(QUEUE_SWEEP_SECONDS=seconds)
    client = app.test_client()
    with app.app_context():
        from webapp.auth.service import create_user
        create_user("boss@example.com", PASSWORD, "admin")
    login(client, "boss@example.com")
    assert f"recounted by the workers {said}</p>" in client.get(url("overview.index")).text
    assert f"by the workers {said}." in client.get(url("overview.health")).text


def test_a_custom_period_reaches_back_further(client, team):
    login(client, "boss@example.com")
    today = utcnow().date()
    html = unescape(client.get(url("overview.index") + f"?period=custom&from="
                               f"{today - timedelta(days=60)}&to={today}").get_data(as_text=True))
    assert tile(html, "Messages sent") == "12"


def test_an_empty_dashboard_reads_well(client, make_user):
    make_user("boss@example.com", "admin")
    login(client, "boss@example.com")
    html = unescape(client.get(url("overview.index")).get_data(as_text=True))
    assert tile(html, "Messages sent") == "0"
    assert tile(html, "Delivery rate") == "—"
    assert "Nothing failed in this period." in html


# ---- history filters the overview links to -------------------------------------------------------
def test_history_filters_by_error_code_and_reads_dates_in_the_zone_given(client, app, make_user):
    user = make_user()
    # 02:00 UTC on the 20th is the 19th in Toronto.
    save_message(app, created_by_id=user.id, status="failed", error_code="30", text="late one",
                 created_at=datetime(2026, 11, 20, 2, 0, tzinfo=UTC))
    save_message(app, created_by_id=user.id, status="failed", error_code="50", text="other code",
                 created_at=datetime(2026, 11, 19, 15, 0, tzinfo=UTC))
    login(client, user.email)
    html = client.get(url("history.history") + f"?from=2026-11-19&to=2026-11-19&tz={ZONE}"
                      "&error=30").get_data(as_text=True)
    assert "late one" in html and "other code" not in html
    assert "Error 30 (spam detected)" in unescape(html)
    html = client.get(url("history.history") + "?from=2026-11-19&to=2026-11-19&error=30"
                      ).get_data(as_text=True)
    assert "late one" not in html  # in UTC it was the 20th
    html = unescape(client.get(url("history.history") + "?tz=Mars/Olympus&error=3x"
                               ).get_data(as_text=True))
    assert "Unknown time zone ignored" in html and "Unknown error code ignored." in html


# ---- health ---------------------------------------------------------------------------------
def test_log_only_mode_shows_a_red_banner_with_the_share_that_would_pass(make_app, make_user):
    app = make_app(PLIVO_SIGNATURE_MODE="log-only")
    user = make_user("boss@example.com", "admin")
    with app.app_context():
        for i, scheme in enumerate(["v3"] * 3 + ["invalid"]):
            db.session.add(StatusEvent(plivo_uuid=f"u{i}", status="sent", payload={},
                                       signature_scheme=scheme, accepted=True))
        db.session.commit()
    client = app.test_client()
    login(client, user.email)
    html = " ".join(unescape(client.get(url("overview.index")).get_data(as_text=True)).split())
    assert 'id="log-only-banner"' in html
    text = re.sub(r"<[^>]+>", "", html)
    assert "Of the last 4 callbacks, 75.0% carried a valid signature" in text
    assert "Check PLIVO_AUTH_TOKEN" in text


def test_the_health_page_counts_callbacks_refusals_and_waiting_messages(app, client, make_user):
    admin = make_user("boss@example.com", "admin")
    now = utcnow()
    with app.app_context():
        for n, scheme in enumerate(["v3", "v3", "ma-v3", "lookup"]):
            db.session.add(StatusEvent(plivo_uuid="u", status="sent", payload={}, sequence=n,
                                       signature_scheme=scheme, accepted=True,
                                       received_at=now - timedelta(minutes=3)))
        db.session.add(RefusedCallbackCount(source="203.0.113.9", reason="bad signature", count=7,
                                            hour=now.replace(minute=0, second=0, microsecond=0)))
        db.session.add(make_message(created_by_id=admin.id, status="sent",
                                    created_at=now - timedelta(minutes=40)))
        db.session.add(make_message(created_by_id=admin.id, status="pending",
                                    created_at=now - timedelta(minutes=10)))
        db.session.commit()
        rollups.refresh()
        figures = health.gather()
        assert figures.callbacks_24h == 3 and figures.lookups_24h == 1
        assert figures.refused_24h == Counter({"bad signature": 7})
        assert figures.awaiting == 1 and figures.queue_waiting == 1 and figures.queue_stale
        assert figures.recent_schemes == Counter({"v3": 2, "ma-v3": 1})
    login(client, admin.email)
    html = unescape(client.get(url("overview.health")).get_data(as_text=True))
    assert "203.0.113.9" in html and "bad signature 7" in html
    assert "V3 signed by the main account" in html
    assert "3 min ago" in html


def test_a_test_message_needs_a_valid_number(client, make_user):
    make_user("boss@example.com", "admin")
    login(client, "boss@example.com")
    response = post_form(client, url("overview.send_test"), {"number": "12"},
                         form_page=url("overview.health"))
    assert response.status_code == 400
    assert "“12” is too short" in unescape(response.get_data(as_text=True))
    assert "Line 1" not in response.get_data(as_text=True)
    with client.application.app_context():
        assert db.session.scalars(select(Message)).all() == []


@pytest.mark.integration
def test_a_test_message_shows_its_round_trip_through_plivo(live, make_user):
    import requests

    from tests.conftest import wait_for
    from tests.helpers import csrf_token_in

    make_user("boss@example.com", "admin")
    browser = requests.Session()
    token = csrf_token_in(browser.get(live.url + url("auth.login")).text)
    browser.post(live.url + url("auth.login"),
                 data={"csrf_token": token, "email": "boss@example.com", "password": PASSWORD})
    token = csrf_token_in(browser.get(live.url + url("overview.health")).text)
    answer = browser.post(live.url + url("overview.send_test"),
                          data={"csrf_token": token, "number": "(415) 555-0123"},
                          allow_redirects=False)
    assert answer.status_code == 303, answer.text[:500]
    page = live.url + answer.headers["Location"]
    wait_for(lambda: "Callback: delivered" in browser.get(page + "/live").text, timeout=15)
    html = browser.get(page).text
    assert "Accepted by Plivo" in html and "Callback: queued" in html
    # final: the page stops asking (the menu's unread count polls on every page)
    assert "hx-trigger" not in html.split('<main', 1)[1]
    with live.app.app_context():  # recorded once, as the admin's, to the number typed
        from webapp.models import AuditEvent
        sent = db.session.execute(select(AuditEvent.actor_email, AuditEvent.target).where(
            AuditEvent.action == "test_message_sent")).all()
    assert sent == [("boss@example.com", "+14155550123")]


def test_a_refused_callback_is_counted_once_as_refused_not_also_as_received(app, client,
                                                                              make_user):
    """Through the real webhook: a signed callback and an unsigned one (403). The
    unsigned one's ledger sample is not a callback received."""
    from tests.callbacks.test_webhooks import CALLBACK_PATH, form, post_signed

    admin = make_user("boss@example.com", "admin")
    assert post_signed(client, form("queued", 1, uuid="u-signed")).status_code == 200
    assert client.post(CALLBACK_PATH, data=form("queued", 1, uuid="u-forged")).status_code == 403
    with app.app_context():
        rollups.refresh()
        figures = health.gather()
        assert figures.callbacks_24h == 1 and figures.refused_total == 1
        assert "missing" not in figures.schemes_24h and "invalid" not in figures.schemes_24h
    login(client, admin.email)
    html = " ".join(unescape(client.get(url("overview.health")).get_data(as_text=True)).split())
    assert re.search(r"Callbacks, last 24 hours</dt> <dd>1</dd>", html), html[:3000]


def test_the_health_page_starts_with_one_line_all_good_or_what_needs_attention(
        app, client, make_user):
    admin = make_user("boss@example.com", "admin")
    login(client, admin.email)
    html = " ".join(unescape(client.get(url("overview.health")).get_data(as_text=True)).split())
    assert 'id="health-verdict"><strong>All good:</strong>' in html
    assert "Plivo dispatches this account's MMS at <strong>1000 a second</strong>" in html
    assert re.search(r'id="sender-numbers".*\(415\) 555-0100.*not yet looked up', html)
    with app.app_context():
        db.session.add(make_message(created_by_id=admin.id, status="sent",
                                    created_at=utcnow() - timedelta(minutes=40)))
        db.session.add(make_message(created_by_id=admin.id, status="unknown"))
        db.session.commit()
    html = " ".join(unescape(client.get(url("overview.health")).get_data(as_text=True)).split())
    assert ('<strong>Needs attention:</strong> 1 message without a final status for over 15 '
            "minutes; 1 message this week may or may not have reached Plivo.") in html


def test_every_tile_s_breakdown_adds_up_and_refused_is_not_sent(app, client, make_user):
    """A message Plivo refused (or that never reached it) was not sent: it is its own
    figure, not a failure without an explanation; the reasons add up to their tiles."""
    admin = make_user("boss@example.com", "admin")
    with app.app_context():
        for status, code in [("delivered", None), ("delivered", None), ("undelivered", "30"),
                             ("failed", "900"), ("failed", None), ("error", None),
                             ("not_sent", None)]:
            db.session.add(make_message(created_by_id=admin.id, status=status, error_code=code))
        db.session.commit()
        rollups.refresh()
    login(client, admin.email)
    html = unescape(client.get(url("overview.index")).get_data(as_text=True))
    assert tile(html, "Messages sent") == "5"
    assert "and 2 refused before sending" in re.sub(r"<[^>]+>", "", html)
    assert tile(html, "Not delivered or failed") == "3"
    why = html[html.index('id="why-failed"'):].split("</table>")[0]
    rows = re.findall(r'<td data-label="Meaning">([^<]*)</td><td data-label="Messages">'
                      r'<a href="([^"]+)">(\d+)</a>', why)
    by_meaning = {meaning: int(n) for meaning, _href, n in rows}
    assert by_meaning == {"spam detected": 1, "insufficient credit": 1,
                          "no error code from Plivo": 1,
                          "Plivo refused the request (the reason is on each message)": 1,
                          "never reached Plivo": 1}
    # Each line opens exactly its messages in the history.
    no_code = next(href for meaning, href, _n in rows if meaning == "no error code from Plivo")
    listed = client.get(no_code.replace("&amp;", "&")).get_data(as_text=True)
    assert len(re.findall(r'<tr id="msg-', listed)) == 1 and "No error code" in listed
