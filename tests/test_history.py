"""History: keyset pagination, filters, live rows, detail, CSV export."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, text

from webapp.auth import service as accounts
from webapp.extensions import db
from webapp.history.export import neutralize
from webapp.models import Message, StatusEvent, User

from .conftest import PASSWORD, login, post_form
from .helpers import make_message, url

STAMP = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


@pytest.fixture
def seed(app, make_user):
    """Messages for two staff; many share one timestamp to test tie-breaking."""
    amy = make_user("amy@example.com")
    bob = make_user("bob@example.com")

    def add(count: int, **fields) -> list[str]:
        ids = []
        with app.app_context():
            for i in range(count):
                row = make_message(
                    created_by_id=fields.get("user", amy).id, media=[],
                    recipient=fields.get("recipient", f"+1415555{i % 10000:04d}"),
                    text=fields.get("text", f"message {i}"),
                    status=fields.get("status", "delivered"),
                    created_at=fields.get("created_at", STAMP))
                db.session.add(row)
                db.session.flush()
                ids.append(row.public_id)
            db.session.commit()
        return ids

    return add, amy, bob


def page_ids(html: str) -> list[str]:
    return re.findall(r'<tr id="msg-([^"]+)"', html)


def next_link(html: str) -> str | None:
    match = re.search(r'href="([^"]+)" rel="next"', html)
    return match.group(1).replace("&amp;", "&") if match else None


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
    assert 'hx-trigger="every' not in settled


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
    assert html.count("<td>v3</td>") == 3


def test_unknown_message_is_404_and_anonymous_goes_to_login(client, login_as):
    assert url("auth.login") in client.get(url("history.history")).headers["Location"]
    login_as("staff", "viewer@example.com")
    assert client.get(url("history.detail", public_id="nope")).status_code == 404


@pytest.mark.parametrize(("value", "expected"), [
    ("=1+1", "'=1+1"), ("+14155550100", "+14155550100"), ("-2", "'-2"), ("@SUM(A1)", "'@SUM(A1)"),
    ("\tx", "'\tx"), ("\rx", "'\rx"), ("plain", "plain"), (None, ""), (3, "3"),
    ("-2+3", "'-2+3"), ("=cmd|' /C calc'!A0", "'=cmd|' /C calc'!A0"), ("+1+1", "'+1+1"),
    ("+14155550100 ", "'+14155550100 "), ("+1415555010012345", "'+1415555010012345"),
])
def test_csv_cells_are_neutralised(value, expected):
    assert neutralize(value) == expected


def test_csv_export_follows_the_filter_and_escapes(client, login_as, seed):
    add, _, _ = seed
    add(2, text='=HYPERLINK("http://evil.example","x")', status="failed")
    add(600, status="delivered")
    login_as("staff", "viewer@example.com")
    response = client.get(url("history.export") + "?status=failed")
    assert response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert len(rows) == 2
    for row in rows:
        assert row["text"].startswith("'=HYPERLINK")  # still cannot run
        assert (row["status"], row["status_code"]) == ("Failed", "failed")  # as on screen
        assert row["to"].startswith("+1415555") and row["from"] == "+14155550100"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", row["created_at_utc"])
    everything = client.get(url("history.export")).get_data(as_text=True)
    assert len(list(csv.reader(io.StringIO(everything)))) == 603  # across export batches


def test_export_ends_with_every_row_once_whatever_text_form_sqlite_holds(app, make_user):
    """SQLite compares datetimes as text: a row written by another tool without microseconds
    (`2025-01-01 00:00:00`) sorts before the same instant as the app writes it. Before
    the cursor compared stored values, such rows came back in every batch, forever."""
    check_export_ends_with_every_row_once(app, make_user().id)


def check_export_ends_with_every_row_once(app, user_id: int) -> None:
    """Also run on PostgreSQL by tests/stack."""
    from webapp.history.export import export_rows
    from webapp.history.pages import HistoryFilter

    with app.app_context():
        statement = text(
            "INSERT INTO messages (public_id, created_by_id, idempotency_key, sender, recipient,"
            " text, media, status, status_sequence, attempts, created_at, updated_at, version)"
            " VALUES (:public_id, :uid, 'k', '+14155550100', :recipient, 'seeded', '[]',"
            " 'delivered', 0, 1, :created_at, :created_at, 1)")
        rows = []
        for i in range(23):
            second = i // 4  # ties, as bursts of sends make
            stamp = f"2025-01-01 00:00:{second:02d}" + (".000000" if i % 2 else "")
            rows.append({"public_id": f"seed{i:03d}", "uid": user_id,
                         "recipient": f"+1415555{2000 + i:04d}", "created_at": stamp})
        db.session.execute(statement, rows)
        db.session.commit()
        chunks = []
        for chunk in export_rows(HistoryFilter(sent_by=user_id), timedelta(hours=1), batch=3):
            chunks.append(chunk)
            assert len(chunks) < 50, "the export does not end"
    exported = list(csv.DictReader(io.StringIO(b"".join(chunks).decode())))
    assert sorted(row["message_id"] for row in exported) == [f"seed{i:03d}" for i in range(23)]
    times = [row["created_at_utc"] for row in exported]
    assert times == sorted(times, reverse=True)  # still newest first


# Instants either side of clock changes: Los Angeles (whole hours), St John's (whole
# hours at a half-hour offset), the repeated hour in November, and Kathmandu (+05:45).
EXPORT_TIMES = {
    "la-before-spring": (datetime(2026, 3, 8, 9, 59, 59, tzinfo=UTC),
                         {"America/Los_Angeles": "2026-03-08T01:59:59-08:00"}),
    "la-after-spring": (datetime(2026, 3, 8, 10, 0, 0, tzinfo=UTC),
                        {"America/Los_Angeles": "2026-03-08T03:00:00-07:00"}),
    "nl-before-spring": (datetime(2026, 3, 8, 5, 29, 59, tzinfo=UTC),
                         {"America/St_Johns": "2026-03-08T01:59:59-03:30"}),
    "nl-after-spring": (datetime(2026, 3, 8, 5, 30, 0, tzinfo=UTC),
                        {"America/St_Johns": "2026-03-08T03:00:00-02:30"}),
    "la-first-0130": (datetime(2026, 11, 1, 8, 30, 0, 999999, tzinfo=UTC),
                      {"America/Los_Angeles": "2026-11-01T01:30:00-07:00"}),
    "la-second-0130": (datetime(2026, 11, 1, 9, 30, 0, tzinfo=UTC),
                       {"America/Los_Angeles": "2026-11-01T01:30:00-08:00",
                        "Asia/Kathmandu": "2026-11-01T15:15:00+05:45",
                        "UTC": "2026-11-01T09:30:00+00:00"}),
}
# Cells as a spreadsheet must get them: (message fields, expected cells).
EXPORT_CELLS = {
    "formula": ({"text": "=SUM(A1:A9)"}, {"text": "'=SUM(A1:A9)"}),
    "plus-words": ({"text": "+1 415 call me"}, {"text": "'+1 415 call me"}),
    "tab": ({"text": "\tindented"}, {"text": "'\tindented"}),
    "quoted": ({"text": 'a "quoted", comma\nand a second line — café ☕'},
               {"text": 'a "quoted", comma\nand a second line — café ☕'}),
    "phone": ({"recipient": "+16045550199"}, {"to": "+16045550199"}),
    "plus-alone": ({"text": "+"}, {"text": "'+"}),
    "sixteen-digits": ({"text": "+1234567890123456"}, {"text": "'+1234567890123456"}),
    "fifteen-digits": ({"text": "+123456789012345"}, {"text": "+123456789012345"}),
    "wide-digits": ({"text": "+\uff11\uff12\uff13\uff14\uff15\uff16\uff17"},
                    {"text": "'+\uff11\uff12\uff13\uff14\uff15\uff16\uff17"}),
    "digits-then-space": ({"text": "+1415555 "}, {"text": "'+1415555 "}),
    "spam": ({"status": "undelivered", "error_code": "30"},
             {"status": "Not delivered: spam detected (30)", "status_code": "undelivered"}),
    "odd-code": ({"status": "failed", "error_code": "00"},
                 {"status": "Failed: Unknown (code 00)", "error_code": "00"}),
    "no-code": ({"status": "failed", "error_code": "000"}, {"status": "Failed"}),
    "unknown-code": ({"status": "rejected", "error_code": "9999"},
                     {"status": "Rejected by carrier: Unknown (code 9999)"}),
    "delivered-code": ({"status": "delivered", "error_code": "30"}, {"status": "Delivered"}),
    "no-receipt": ({"status": "sent", "sent_at": datetime(2025, 1, 1, tzinfo=UTC)},
                   {"status": "Sent — carrier gives no receipts",
                    "sent_at_utc": "2025-01-01T00:00:00+00:00"}),
    "recent-sent": ({"status": "sent", "sent_at": datetime(2099, 1, 1, tzinfo=UTC)},
                    {"status": "Sent — no receipt yet"}),
    "refused": ({"status": "error", "error_reason": "-invalid number"},
                {"status": "Refused by Plivo", "error_reason": "'-invalid number"}),
    "no-media": ({"media": []}, {"media_count": "0", "media": ""}),
    "null-media": ({"media": None}, {"media_count": "0", "media": ""}),
    "two-media": ({"media": [{"url": "https://cdn.example.com/a.png"},
                             {"media_id": "0b0e6a4c-0000-4000-8000-000000000001"}]},
                  {"media_count": "2", "media": "https://cdn.example.com/a.png\n"
                   "media id 0b0e6a4c-0000-4000-8000-000000000001"}),
    "uploaded": ({"media": [{"upload": "ab" * 32, "content_type": "image/jpeg", "size": 1000,
                             "name": "cake.jpg"}, {"url": "https://cdn.example.com/b.png"}]},
                 {"media_count": "2", "media": "file cake.jpg\nhttps://cdn.example.com/b.png"}),
    "costed": ({"status": "delivered", "units": 2, "total_amount": "0.03200",
                "plivo_uuid": "4e3c0c9a-0000-4000-8000-000000000001",
                "final_at": datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)},
               {"units": "2", "total_amount": "0.03200",
                "plivo_uuid": "4e3c0c9a-0000-4000-8000-000000000001",
                "final_at_utc": "2026-01-02T03:04:05+00:00"}),
}


def seed_export_cases(app, user_id: int) -> None:
    with app.app_context():
        for name, (moment, _) in EXPORT_TIMES.items():
            db.session.add(make_message(created_by_id=user_id, public_id=name,
                                        created_at=moment, text=name))
        for number, (name, (fields, _)) in enumerate(EXPORT_CELLS.items()):
            db.session.add(make_message(
                created_by_id=user_id, public_id=name,
                created_at=datetime(2026, 6, 1, 12, 0, number, tzinfo=UTC), **fields))
        db.session.commit()


def exported(app, zone: str, **args: str) -> dict[str, dict[str, str]]:
    from zoneinfo import ZoneInfo

    from webapp.history.export import export_rows
    from webapp.history.pages import HistoryFilter

    with app.test_request_context("/messages/export.csv", query_string=args):
        filters, errors = HistoryFilter.from_args(request_args(), ZoneInfo(zone))
        assert not errors
        text_ = b"".join(export_rows(filters, timedelta(hours=1), ZoneInfo(zone))).decode()
    return {row["message_id"]: row for row in csv.DictReader(io.StringIO(text_))}


def request_args():
    from flask import request

    return request.args


def check_export_cells_and_times(app, user_id: int) -> None:
    """Also run on PostgreSQL by tests/stack, where COPY formats the cells in SQL."""
    seed_export_cases(app, user_id)
    for zone in ("America/Los_Angeles", "America/St_Johns", "Asia/Kathmandu", "UTC"):
        rows = exported(app, zone, sent_by=str(user_id))  # tests/stack shares a database
        assert len(rows) == len(EXPORT_TIMES) + len(EXPORT_CELLS)
        for name, (moment, local) in EXPORT_TIMES.items():
            assert rows[name]["created_at_utc"] == moment.isoformat(timespec="seconds")
            if zone in local:
                assert rows[name]["created_at_local"] == local[zone], (name, zone)
        for name, (_, cells) in EXPORT_CELLS.items():
            for column, value in cells.items():
                assert rows[name][column] == value, (name, column, zone)
        assert all(row["sent_by"] == "viewer@example.com" for row in rows.values())
    failed = exported(app, "UTC", status="failed", sent_by=str(user_id))
    assert set(failed) == {"odd-code", "no-code"}


def test_export_cells_and_times_across_clock_changes(app, make_user):
    check_export_cells_and_times(app, make_user(email="viewer@example.com").id)


def test_csv_lists_each_message_media_and_readable_numbers(app, client, login_as):
    user = login_as("staff", "viewer@example.com")
    with app.app_context():
        db.session.add(make_message(
            created_by_id=user.id, status="undelivered", error_code="30",
            media=[{"url": "https://cdn.example.com/a.png", "content_type": "image/png"},
                   {"media_id": "0b0e6a4c-0000-4000-8000-000000000001"}]))
        db.session.commit()
    [row] = list(csv.DictReader(io.StringIO(
        client.get(url("history.export")).get_data(as_text=True))))
    assert row["media_count"] == "2"
    assert row["media"].splitlines() == ["https://cdn.example.com/a.png",
                                         "media id 0b0e6a4c-0000-4000-8000-000000000001"]
    assert row["status"] == "Not delivered: spam detected (30)"
    assert (row["from"], row["to"]) == ("+14155550100", "+14155550123")  # no apostrophe


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
    rows = {r["message_id"]: r for r in csv.DictReader(io.StringIO(export.get_data(as_text=True)))}
    export.close()
    assert rows[late_id]["created_at_local"] == "2026-11-29T23:30:00-08:00"
    assert rows[late_id]["created_at_utc"] == "2026-11-30T07:30:00+00:00"


def test_a_display_time_zone_that_does_not_exist_stops_the_app_with_its_name(tmp_path):
    from webapp.config import ConfigError, load_settings

    from .conftest import base_env

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
    with app.app_context():
        db.session.execute(text("UPDATE messages SET status = 'delivered'"))
        db.session.commit()
    settled = client.get(url("sending.sent_live", key="k" * 24))
    assert settled.status_code == 286 and "hx-get" not in settled.get_data(as_text=True)
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


# ---- search ---------------------------------------------------------------------------------
def seed_texts(app, user_id: int, texts: list[str], recipient: str = "+16045557300") -> list[str]:
    with app.app_context():
        rows = [make_message(created_by_id=user_id, text=t, recipient=recipient, media=[])
                for t in texts]
        db.session.add_all(rows)
        db.session.commit()
        return [row.public_id for row in rows]


def check_text_search(app, client, user_id: int) -> None:
    """Whole words match regardless of case, accents and punctuation (`word*` for word
    beginnings); a phrase in quotes keeps its order; nothing typed is search syntax."""
    invoice, other, accents, phrase, scrambled = seed_texts(app, user_id, [
        "Your INVOICE #4471 is ready, Anna!",
        "invoice 4472 for Ben: the pick-up is at Oak Street",
        "Crème brûlée day at the café",
        "ready for pickup at the shop",
        "pickup ready? for the shop"])

    def ids(typed: str) -> set[str]:
        answer = client.get(url("history.history", q=typed))
        assert answer.status_code == 200, typed
        return set(page_ids(answer.get_data(as_text=True)))

    assert ids("invoice 4471") == {invoice}
    assert ids("4471 invoice") == {invoice}  # every word, in any order
    assert ids("Invoice") == {invoice, other}
    assert ids("#4471!") == {invoice}  # punctuation is not searched for
    assert ids("invo") == set()  # whole words...
    assert ids("invo* 447*") == {invoice, other}  # ...unless asked for their beginnings
    assert ids("pick up") == {other}
    assert ids("creme brulee") == {accents} == ids("CAFÉ")
    assert ids('"ready for pickup"') == {phrase}  # a phrase keeps its order
    assert ids("ready for pickup") == {phrase, scrambled}
    assert ids("nothing-like-this") == set()
    # What FTS5 or to_tsquery would read as their own syntax is searched for as words.
    for typed in ('NEAR(ready pickup)', 'text:ready', '"unclosed', "ready*", "^ready",
                  "-ready", "(((", "a AND", 'x" OR "y', "ready & !shop", "ready <-> shop",
                  "'ready'", "ready:*", "\\"):
        ids(typed)
    assert ids("ready OR nothing") == set()  # three words, all required
    html = client.get(url("history.history", q="!!! ...")).get_data(as_text=True)
    assert "punctuation alone matches nothing" in html and invoice in page_ids(html)


def check_recipient_search(app, client, user_id: int) -> None:
    """The last digits (at least 4) or the whole number in any format."""
    [vancouver] = seed_texts(app, user_id, ["a"], recipient="+16045557319")
    [sf] = seed_texts(app, user_id, ["b"], recipient="+14155557319")
    [other] = seed_texts(app, user_id, ["c"], recipient="+14155557320")

    def ids(typed: str) -> set[str]:
        return set(page_ids(client.get(url("history.history", recipient=typed)).get_data(
            as_text=True)))

    assert ids("7319") == {vancouver, sf}
    assert ids("555-7319") == {vancouver, sf}
    assert ids("(604) 555-7319") == {vancouver}
    assert ids("+1 604 555 7319") == {vancouver} == ids("16045557319")
    assert ids("5557320") == {other}
    assert ids("8888") == set() and ids("26045557319") == set()
    html = client.get(url("history.history", recipient="19")).get_data(as_text=True)
    assert "at least the last 4 digits" in html and vancouver in page_ids(html)


def test_text_search_matches_words_regardless_of_case_and_punctuation(app, client, login_as):
    user = login_as("staff", "viewer@example.com")
    check_text_search(app, client, user.id)


def test_recipient_search_takes_the_last_digits_or_the_whole_number(app, client, login_as):
    user = login_as("staff", "viewer@example.com")
    check_recipient_search(app, client, user.id)


def test_text_search_over_many_matches_walks_the_dates_and_pages_through_all(
        app, client, login_as, seed, monkeypatch):
    """A word in more messages than SPARSE takes the other path (each row checked while
    the date index is walked): the same rows, newest first, every one once."""
    from webapp.history import filters as history_filters
    from webapp.history import pages as history
    add, _amy, _bob = seed
    common = add(12, text="weekly newsletter")
    add(3, text="something else")
    login_as("staff", "viewer@example.com")
    monkeypatch.setattr(history_filters, "SPARSE", 5)
    monkeypatch.setattr(history, "PAGE_SIZE", 5)
    monkeypatch.setattr(history, "WINDOW", 2)  # windows of 2, 8, 32 rows
    seen, link = [], url("history.history", q="newsletter")
    while link:
        html = client.get(link).get_data(as_text=True)
        seen += page_ids(html)
        link = next_link(html)
    assert seen == list(reversed(common))  # one timestamp: newest id first


def test_a_common_word_with_other_filters_pages_exactly_whatever_came_before(
        app, client, login_as, seed, monkeypatch):
    """The common-word path keeps its statements per shape of filters and remembers how
    much of a window matched: the next search of the same shape with other values (a
    status, a person, a day, a number) must still find exactly its own rows, newest
    first, each once, however ids and times interleave; and the count agrees."""
    import random
    from datetime import timedelta

    from webapp.history import filters as history_filters
    from webapp.history import pages as history
    add, amy, bob = seed
    chooser = random.Random(18)
    expected: list[tuple] = []  # (created_at, order, public_id, status, user, recipient, text)
    for order in range(90):
        moment = STAMP - timedelta(minutes=chooser.randrange(0, 4 * 24 * 60))
        fields = {"status": chooser.choice(["delivered", "failed", "undelivered"]),
                  "user": chooser.choice([amy, bob]),
                  "recipient": chooser.choice(["+16045550199", "+14155550142"]),
                  "text": chooser.choice(["weekly newsletter", "newsletter again", "other"])}
        [public_id] = add(1, created_at=moment, **fields)
        expected.append((moment, order, public_id, fields))
    expected.sort(key=lambda row: (row[0], row[1]), reverse=True)
    login_as("staff", "viewer@example.com")
    monkeypatch.setattr(history_filters, "SPARSE", 3)
    monkeypatch.setattr(history, "PAGE_SIZE", 4)
    monkeypatch.setattr(history, "WINDOW", 2)
    day = (STAMP - timedelta(days=1)).date()
    for args, wanted in [
        ({"status": "failed"}, lambda f, _m: f["status"] == "failed"),
        ({"status": "delivered"}, lambda f, _m: f["status"] == "delivered"),
        ({"status": "failed", "sent_by": str(amy.id)},
         lambda f, _m: f["status"] == "failed" and f["user"] is amy),
        ({"status": "undelivered", "sent_by": str(bob.id)},
         lambda f, _m: f["status"] == "undelivered" and f["user"] is bob),
        ({"recipient": "0199", "from": day.isoformat()},
         lambda f, m: f["recipient"].endswith("0199") and m.date() >= day),
        ({"recipient": "0142", "from": day.isoformat()},
         lambda f, m: f["recipient"].endswith("0142") and m.date() >= day),
        ({"status": "failed"}, lambda f, _m: f["status"] == "failed"),  # remembered share
    ]:
        want = [public_id for moment, _order, public_id, fields in expected
                if "newsletter" in fields["text"] and wanted(fields, moment)]
        seen, link = [], url("history.history", q="newsletter", **args)
        while link:
            html = client.get(link).get_data(as_text=True)
            seen += page_ids(html)
            link = next_link(html)
        assert seen == want, args
        counted = client.get(url("history.count", q="newsletter", **args)).text
        assert f"{len(want)} message" in counted, (args, counted)


def test_search_index_follows_inserts_updates_and_deletes(app, client, login_as, seed):
    add, _amy, _bob = seed
    [changed] = add(1, text="original words")
    [gone] = add(1, text="doomed words")
    with app.app_context():
        message = db.session.scalar(db.select(Message).filter_by(public_id=changed))
        message.text = "replacement words"
        db.session.delete(db.session.scalar(db.select(Message).filter_by(public_id=gone)))
        db.session.commit()
    login_as("staff", "viewer@example.com")
    assert page_ids(client.get(url("history.history", q="replacement")).text) == [changed]
    assert page_ids(client.get(url("history.history", q="original")).text) == []
    assert page_ids(client.get(url("history.history", q="doomed")).text) == []


PLAN_CASES = {
    "status": {"status": ["failed"]}, "recipient": {"recipient": ["0199"]},
    "text": {"q": ["invoice 4471"]}, "phrase": {"q": ['"ready for pickup"']},
    "day": {"from": ["2026-11-20"], "to": ["2026-11-20"]},
    "three": {"status": ["failed"], "q": ["invoice"], "from": ["2026-11-01"]},
}


def query_plans(app, sender_id: int) -> dict[str, str]:
    """The plan of each filter's first-page query, as the database would run it."""
    from werkzeug.datastructures import MultiDict

    from webapp.history import pages as history
    plans = {}
    cases = {**PLAN_CASES, "sender": {"sent_by": [str(sender_id)]}}
    with app.test_request_context():
        connection = db.session.connection()
        postgres = connection.dialect.name == "postgresql"
        if postgres:  # a few test rows: a scan would be cheapest, but can an index answer?
            connection.exec_driver_sql("SET enable_seqscan = off")
        for name, args in cases.items():
            filters, errors = history.HistoryFilter.from_args(
                MultiDict([(k, v) for k, vs in args.items() for v in vs]))
            assert not errors, errors
            query = filters.apply(history._TABLE).order_by(*history.NEWEST_FIRST).limit(51)
            compiled = query.compile(connection, compile_kwargs={"literal_binds": True})
            explain = "EXPLAIN " if postgres else "EXPLAIN QUERY PLAN "
            rows = connection.exec_driver_sql(explain + str(compiled)).all()
            plans[name] = "\n".join(str(row[-1]) for row in rows)
        if postgres:
            connection.exec_driver_sql("RESET enable_seqscan")
        db.session.rollback()
    return plans


def check_filters_use_their_indexes(app, sender_id: int) -> None:
    """Each filter is answered from an index, never by reading all of `messages`."""
    plans = query_plans(app, sender_id)
    for name, plan in plans.items():
        assert "SCAN messages" not in plan and "Seq Scan on messages" not in plan, (name, plan)
    assert "ix_messages_status_created_at_id" in plans["status"]
    assert "ix_messages_created_by_created_at_id" in plans["sender"]
    assert "ix_messages_recipient_reversed" in plans["recipient"]
    assert "ix_messages_created_at_id" in plans["day"]
    with app.app_context():
        postgres = db.engine.dialect.name == "postgresql"
    if postgres:  # SQLite's FTS5 is a table of its own: its rowids are looked up by key
        assert "ix_messages_text_search" in plans["text"], plans["text"]
        assert "ix_messages_text_search" in plans["phrase"], plans["phrase"]


def test_every_filter_is_answered_from_an_index_on_sqlite(app, make_user):
    user = make_user("planner@example.com")
    seed_texts(app, user.id, ["invoice 4471"] * 3)
    check_filters_use_their_indexes(app, user.id)
