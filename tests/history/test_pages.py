"""The history pages: keyset pagination, filters, live rows, a message's page, the count."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, text

from tests.conftest import PASSWORD, login, post_form
from tests.helpers import make_message, url
from tests.history.conftest import STAMP, next_link, page_ids
from webapp.auth import service as accounts
from webapp.extensions import db
from webapp.models import Message, StatusEvent, User


def test_sent_by_list_is_kept_per_process_and_follows_new_accounts(app, client, login_as,
                                                                   make_user, monkeypatch):
    from webapp.history import pages as history

    viewer = login_as("staff", "viewer@example.com")
    user_lists = []
    with app.app_context():
        event.listen(db.engine, "before_cursor_execute", lambda *a: user_lists.append(a[2])
                     if "ORDER BY users.email" in a[2] else None)

    def options(query: str = "") -> dict[str, str]:
        html = client.get(url("history.history") + query).get_data(as_text=True)
        return {email: attrs for attrs, email in
                re.findall(r'<option value="\d+"([^>]*)>([^<]+)</option>', html)}

    assert list(options()) == ["viewer@example.com"] and len(user_lists) == 1
    assert list(options()) == ["viewer@example.com"] and len(user_lists) == 1  # kept
    make_user("amy@example.com")  # made in this process: listed at once
    assert list(options()) == ["amy@example.com", "viewer@example.com"]
    # An account another process made (no ORM event here) waits for SENDERS_FOR...
    with app.app_context():
        db.session.execute(text(
            "INSERT INTO users (email, password_hash, role, is_active, created_at)"
            " VALUES ('zed@example.com', 'x', 'staff', true, CURRENT_TIMESTAMP)"))
        db.session.commit()
        zed = db.session.scalar(text("SELECT id FROM users WHERE email = 'zed@example.com'"))
    assert "zed@example.com" not in options()
    # ...unless a link filters by it: then it is listed, and selected.
    assert "selected" in options(f"?sent_by={zed}")["zed@example.com"]
    assert "selected" in options(f"?sent_by={viewer.id}")["viewer@example.com"]
    monkeypatch.setattr(history, "SENDERS_FOR", 0.0)
    before = len(user_lists)
    options()
    options()
    assert len(user_lists) == before + 2


def test_pagination_never_skips_or_repeats_when_timestamps_tie(client, login_as, seed):
    add, _, _ = seed
    created = add(120)  # all at the same instant
    created += add(15, created_at=STAMP + timedelta(seconds=1))
    login_as("staff", "viewer@example.com")
    seen, link, pages = [], url("history.history"), 0
    while link:
        html = client.get(link).get_data(as_text=True)
        seen += page_ids(html)
        link = next_link(html)
        pages += 1
    assert pages == 3
    assert len(seen) == len(set(seen)) == 135
    assert set(seen) == set(created)
    assert seen[:15] == list(reversed(created[-15:]))  # newest first


def test_filters_combine_and_stay_in_links(client, login_as, seed):
    add, _amy, bob = seed
    add(3, status="delivered", text="spring sale")
    failed = add(2, status="failed", text="spring sale", user=bob)
    add(2, status="failed", text="other", user=bob)
    add(1, status="queued", recipient="+16045550199", created_at=STAMP - timedelta(days=3))
    login_as("staff", "viewer@example.com")

    def ids(query: str) -> set[str]:
        return set(page_ids(client.get(url("history.history") + "?" + query).get_data(as_text=True)))

    assert ids(f"status=failed&q=SPRING&sent_by={bob.id}") == set(failed)
    assert len(ids("status=failed&status=queued")) == 5
    assert len(ids("recipient=555-0199")) == 1
    assert len(ids("recipient=%2B1 (604) 555-0199")) == 1
    assert len(ids("to=2026-11-18")) == 1
    assert len(ids("from=2026-11-19&to=2026-11-20")) == 7
    assert len(ids("q=100%25")) == 0  # a literal % is searched for, not a wildcard
    html = client.get(url("history.history") + "?status=bogus&from=yesterday").get_data(as_text=True)
    assert "Unknown status ignored" in html and "must look like 2026-01-31" in html


def test_one_poll_refreshes_the_table_until_every_row_is_final(app, client, login_as, seed):
    add, _, _ = seed
    [queued] = add(1, status="queued")
    [done] = add(1, status="delivered")
    login_as("staff", "viewer@example.com")
    html = client.get(url("history.history")).get_data(as_text=True)
    poll = re.search(r'<tbody hx-get="([^"]+)" hx-trigger="every 3s"', html)
    assert poll and "hx-get" not in html.split("<tbody", 1)[1].split(">", 1)[1]
    poll_url = poll.group(1).replace("&amp;", "&")
    assert f"id={queued}" in poll_url and f"id={done}" in poll_url
    refreshed = client.get(poll_url)
    assert refreshed.status_code == 200
    assert page_ids(refreshed.get_data(as_text=True)) == page_ids(html)  # page order kept
    with app.app_context():
        message = db.session.scalar(db.select(Message).filter_by(public_id=queued))
        message.status = "delivered"
        db.session.commit()
    final = client.get(poll_url)
    assert final.status_code == 286  # htmx stops polling
    assert 'data-status="delivered"' in final.get_data(as_text=True)
    settled = client.get(url("history.history")).get_data(as_text=True)
    assert 'hx-trigger="every' not in settled.split("<main", 1)[1]  # the menu's count aside


def test_a_row_shows_time_number_text_media_and_cost_escaped(app, client, login_as, seed):
    _add, amy, _ = seed
    login_as("staff", "viewer@example.com")
    check_row_shows_time_number_text_media_and_cost_escaped(app, client, amy.id)


def check_row_shows_time_number_text_media_and_cost_escaped(app, client, user_id: int) -> None:
    """Also run on PostgreSQL (tests/stack): the media count and thumbnail come from SQL."""
    with app.app_context():
        message = make_message(
            created_by_id=user_id, text="<b>Sale</b> & more " + "x" * 60,
            media=[{"url": "https://cdn.example.com/a.png?x=1&y=<2>", "content_type": "image/png"},
                   {"media_id": "m-1"}],
            status="delivered", total_amount="0.01600",  # as Plivo writes it
            created_at=datetime(2026, 11, 20, 9, 5, 7, 123456, tzinfo=UTC))
        plain = make_message(created_by_id=user_id, recipient="+14155550124", text="no picture",
                             media=[{"media_id": "m-2"}],
                        status="delivered", created_at=datetime(2026, 11, 20, 9, 5, 8, tzinfo=UTC))
        db.session.add_all([message, plain])
        db.session.commit()
        public_id, plain_id = message.public_id, plain.public_id
        email = db.session.get(User, user_id).email
    html = client.get(url("history.history") + "?to=2026-11-20&from=2026-11-20").get_data(as_text=True)

    def row_of(ident: str) -> str:
        return re.search(rf'<tr id="msg-{ident}" data-final="yes">.*?</tr>', html, re.S).group(0)

    row = row_of(public_id)
    assert ('<time datetime="2026-11-20T09:05:07.123456+00:00" title="2026-11-20 09:05 UTC">'
            "2026-11-20 09:05 UTC</time>") in row
    assert ">(415) 555-0123</a>" in row
    assert "&lt;b&gt;Sale&lt;/b&gt; &amp; more " + "x" * 38 + "…" in row and "<b>" not in row
    assert 'src="https://cdn.example.com/a.png?x=1&amp;y=&lt;2&gt;"' in row
    assert "> 2</td>" in row  # two media
    assert '<span class="badge badge-good" data-status="delivered">Delivered</span>' in row
    assert (f'<td class="by-cell" data-label="Sent by">{email}</td>'
            '<td class="cost-cell" data-label="Cost">$0.016</td>') in row
    plain_row = row_of(plain_id)  # a first item that is no image: a count, no thumbnail
    assert '<td class="media-cell" data-label="Media">1</td>' in plain_row
    assert "<img" not in plain_row and 'data-label="Cost">—</td>' in plain_row


def test_detail_shows_timeline_with_explained_error_codes(app, client, login_as, seed):
    add, _, _ = seed
    [public_id] = add(1, status="undelivered")
    with app.app_context():
        message = db.session.scalar(db.select(Message).filter_by(public_id=public_id))
        message.error_code = "30"
        for seq, status, code in ((1, "queued", None), (3, "undelivered", "30"),
                                  (4, "undelivered", "130")):
            db.session.add(StatusEvent(plivo_uuid="u-1", message_id=message.id, status=status,
                                       sequence=seq, error_code=code, payload={"Status": status},
                                       signature_scheme="v3", applied=True))
        db.session.commit()
    login_as("staff", "someone.else@example.com")  # any staff member sees any message
    html = client.get(url("history.detail", public_id=public_id)).get_data(as_text=True)
    assert "Not delivered: spam detected (30)" in html
    assert "spam detected (30)" in html and "Unknown (code 130)" in html
    assert html.count("<td data-label=\"Signature\">v3</td>") == 3


def test_unknown_message_is_404_and_anonymous_goes_to_login(client, login_as):
    assert url("auth.login") in client.get(url("history.history")).headers["Location"]
    login_as("staff", "viewer@example.com")
    assert client.get(url("history.detail", public_id="nope")).status_code == 404


def test_a_failure_says_what_to_do_on_its_page_and_in_its_row(app, client, login_as):
    user = login_as("staff", "viewer@example.com")
    with app.app_context():
        failed = make_message(created_by_id=user.id, status="failed", error_code="900")
        refused = make_message(created_by_id=user.id, status="error",
                               error_reason="Plivo refused the message: invalid number")
        db.session.add_all([failed, refused])
        db.session.commit()
        failed_id, refused_id = failed.public_id, refused.public_id
    page = client.get(url("history.detail", public_id=failed_id)).get_data(as_text=True)
    assert "What you can do:</strong> The Plivo account has run out of credit" in page
    refused_page = client.get(url("history.detail", public_id=refused_id)).get_data(
        as_text=True)
    assert "Plivo sent no status reports for this message." in refused_page
    assert "No status reports from Plivo yet" not in refused_page
    history = client.get(url("history.history")).get_data(as_text=True)
    assert 'title="The Plivo account has run out of credit' in history
    # and under the badge, for a phone, where nothing hovers
    assert '<small class="why">The Plivo account has run out of credit' in history


def test_dates_are_the_days_the_table_shows_in_the_display_time_zone(make_app, make_user):
    """In Los Angeles, 07:30 UTC on Nov 30 is still Nov 29: filtering "Nov 30" returns
    exactly the rows the table labels Nov 30 (the table once showed the browser's time
    while the filter took UTC days)."""
    app = make_app(DISPLAY_TIMEZONE="America/Los_Angeles")
    client = app.test_client()
    with app.app_context():
        user = accounts.create_user("la@example.com", PASSWORD)
        late = make_message(created_by_id=user.id, text="late on the 29th",
                            created_at=datetime(2026, 11, 30, 7, 30, tzinfo=UTC))
        early = make_message(created_by_id=user.id, text="early on the 30th",
                             created_at=datetime(2026, 11, 30, 8, 30, tzinfo=UTC))
        db.session.add_all([late, early])
        db.session.commit()
        late_id, early_id = late.public_id, early.public_id
    assert login(client, "la@example.com").status_code == 303
    html = client.get(url("history.history", **{"from": "2026-11-30", "to": "2026-11-30"})
                      ).get_data(as_text=True)
    assert page_ids(html) == [early_id]
    assert "2026-11-30 00:30 PST</time>" in html
    assert "From date (America/Los_Angeles)" in html
    before = client.get(url("history.history", to="2026-11-29")).get_data(as_text=True)
    assert page_ids(before) == [late_id] and "2026-11-29 23:30 PST</time>" in before
    swapped = client.get(url("history.history", **{"from": "2026-11-30", "to": "2026-11-29"})
                         ).get_data(as_text=True)
    assert set(page_ids(swapped)) == {late_id, early_id}
    assert "wrong way round; they have been swapped" in swapped
    export = client.get(url("history.export"))
    rows = {r["message_id"]: r
            for r in csv.DictReader(io.StringIO(export.get_data().decode("utf-8-sig")))}
    export.close()
    assert rows[late_id]["created_at_local"] == "2026-11-29 23:30:00"
    assert rows[late_id]["created_at_utc"] == "2026-11-30T07:30:00+00:00"


def test_a_display_time_zone_that_does_not_exist_stops_the_app_with_its_name(tmp_path):
    from tests.conftest import base_env
    from webapp.config import ConfigError, load_settings

    with pytest.raises(ConfigError, match="DISPLAY_TIMEZONE: 'Mars/Olympus' is not an IANA"):
        load_settings(base_env(tmp_path, DISPLAY_TIMEZONE="Mars/Olympus"))


def test_the_page_after_a_send_sums_it_up_and_one_poll_keeps_it_current(app, client,
                                                                        login_as):
    user = login_as("staff", "viewer@example.com")
    with app.app_context():
        for recipient, status, code, amount in (
                ("+14155550101", "delivered", None, "0.01600"),
                ("+14155550102", "delivered", None, "0.01600"),
                ("+14155550103", "undelivered", "30", "0.01600"),
                ("+14155550104", "queued", None, None)):
            db.session.add(make_message(created_by_id=user.id, idempotency_key="k" * 24,
                                        recipient=recipient, status=status, error_code=code,
                                        total_amount=amount))
        db.session.commit()
    page = client.get(url("sending.sent", key="k" * 24)).get_data(as_text=True)
    summary = re.search(r'<p class="send-summary".*?</p>', page, re.S).group(0)
    assert "<strong>4 messages</strong>" in summary
    assert ">2 Delivered</span>" in summary and ">1 Queued at Plivo</span>" in summary
    assert ">1 Not delivered: spam detected (30)</span>" in summary
    assert "cost $0.048" in summary
    assert "Show the 1 that did not go through" in page
    live = client.get(url("sending.sent_live", key="k" * 24))
    assert live.status_code == 200 and 'hx-trigger="every 3s"' in live.get_data(as_text=True)
    assert page.count('hx-trigger="every 3s"') == 1  # one poll for summary and rows
    assert "<h1>Sending 4 messages</h1>" in page  # the heading is in the live part too
    with app.app_context():
        db.session.execute(text("UPDATE messages SET status = 'delivered'"))
        db.session.commit()
    settled = client.get(url("sending.sent_live", key="k" * 24))
    assert settled.status_code == 286 and "hx-get" not in settled.get_data(as_text=True)
    assert "<h1>Sent 4 messages</h1>" in settled.get_data(as_text=True)  # not "Sending"
    failed_link = client.get(url("history.history", send="k" * 24, status="undelivered"))
    assert failed_link.status_code == 200


def test_the_filter_panel_stays_folded_and_says_what_is_active(client, login_as, seed):
    add, _, _ = seed
    add(1, status="failed", text="invoice 4471")
    login_as("staff", "viewer@example.com")
    html = client.get(url("history.history", status=["failed", "undelivered"], q="4471",
                          **{"from": "2026-11-01"})).get_data(as_text=True)
    summary = re.search(r'<details class="filters">\s*<summary>(.*?)</summary>', html,
                        re.S).group(1)
    assert summary == ("Filter: Status: Failed, Not delivered · 2026-11-01 to … · "
                       "Text: “4471”")
    assert '<details class="filters">' in html  # folded: the rows come first
    assert "✕ Clear filters" in html
    plain = client.get(url("history.history")).get_data(as_text=True)
    assert "<summary>Filter</summary>" in plain and "Clear filters" not in plain


def test_a_person_can_read_times_in_their_own_time_zone(app, client, login_as, seed):
    add, _, _ = seed
    [late] = add(1, created_at=datetime(2026, 11, 30, 7, 30, tzinfo=UTC))
    login_as("staff", "viewer@example.com")
    assert "2026-11-30 07:30 UTC</time>" in client.get(url("history.history")).get_data(
        as_text=True)
    refused = post_form(client, url("auth.account"), {"time_zone": "Mars/Olympus"})
    assert refused.status_code == 400
    saved = post_form(client, url("auth.account"), {"time_zone": "America/Vancouver"})
    assert saved.status_code == 303
    html = client.get(url("history.history", to="2026-11-29")).get_data(as_text=True)
    assert page_ids(html) == [late] and "2026-11-29 23:30 PST</time>" in html
    assert "From date (America/Vancouver)" in html
    post_form(client, url("auth.account"), {"time_zone": ""})  # back to the dashboard's
    assert "07:30 UTC</time>" in client.get(url("history.history")).get_data(as_text=True)


def test_count_is_exact_below_the_cap_and_says_more_than_above(app, client, seed, monkeypatch):
    add, amy, _bob = seed
    add(3, status="failed")
    add(4)
    login(client, amy.email)
    answer = client.get(url("history.count", status="failed"), headers={"HX-Request": "true"})
    assert answer.status_code == 200
    assert "3 messages match these filters." in answer.text
    assert "<html" not in answer.text  # a fragment for htmx
    assert "7 messages." in client.get(url("history.count"), headers={"HX-Request": "true"}).text
    one = client.get(url("history.count", q="message 1", status="failed")).text
    assert "1 message matches these filters." in one and "<html" in one  # a page without JS
    from webapp.history import pages as history
    monkeypatch.setattr(history, "COUNT_CAP", 5)
    monkeypatch.setattr(history.count, "__defaults__", (5,))
    assert "More than 5 messages." in client.get(url("history.count")).text


def test_history_page_links_the_count_with_its_filters(app, client, seed):
    add, amy, _bob = seed
    add(2)
    login(client, amy.email)
    html = client.get(url("history.history", status="failed", before="x")).text
    found = re.search(r'id="match-count" hx-get="([^"]+)"', html)
    assert found and "status=failed" in found.group(1) and "before" not in found.group(1)
    assert client.get(url("history.count"), headers={"HX-Request": "1"}).status_code == 200


def test_count_needs_a_login(client):
    answer = client.get(url("history.count"))
    assert answer.status_code == 302 and "/login" in answer.headers["Location"]


@pytest.mark.parametrize(("amount", "shown"), [
    ("0.02000", "$0.02"), ("0.01650", "$0.0165"), ("0", "$0.00"), ("12.5", "$12.50"),
    (None, "—"), ("", "—"), ("NaN", "—"), ("junk", "—"), ("0.00001", "$0.00001"),
])
def test_costs_read_as_dollars_without_padding(amount, shown):
    from webapp.history.rows import money
    assert money(amount) == shown
