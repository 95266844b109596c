"""The CSV export: formula-safe cells, every row once, times in the display zone."""

from __future__ import annotations

import codecs
import csv
import io
import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from tests.helpers import make_message, url
from webapp.extensions import db
from webapp.history.export import neutralize


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
    rows = list(csv.DictReader(io.StringIO(response.get_data().decode("utf-8-sig"))))
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
                         {"America/Los_Angeles": "2026-03-08 01:59:59"}),
    "la-after-spring": (datetime(2026, 3, 8, 10, 0, 0, tzinfo=UTC),
                        {"America/Los_Angeles": "2026-03-08 03:00:00"}),
    "nl-before-spring": (datetime(2026, 3, 8, 5, 29, 59, tzinfo=UTC),
                         {"America/St_Johns": "2026-03-08 01:59:59"}),
    "nl-after-spring": (datetime(2026, 3, 8, 5, 30, 0, tzinfo=UTC),
                        {"America/St_Johns": "2026-03-08 03:00:00"}),
    "la-first-0130": (datetime(2026, 11, 1, 8, 30, 0, 999999, tzinfo=UTC),
                      {"America/Los_Angeles": "2026-11-01 01:30:00"}),
    "la-second-0130": (datetime(2026, 11, 1, 9, 30, 0, tzinfo=UTC),
                       {"America/Los_Angeles": "2026-11-01 01:30:00",
                        "Asia/Kathmandu": "2026-11-01 15:15:00",
                        "UTC": "2026-11-01 09:30:00"}),
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
        text_ = b"".join(export_rows(filters, timedelta(hours=1), ZoneInfo(zone))).decode(
            "utf-8-sig")
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
        client.get(url("history.export")).get_data().decode("utf-8-sig"))))
    assert row["media_count"] == "2"
    assert row["media"].splitlines() == ["https://cdn.example.com/a.png",
                                         "media id 0b0e6a4c-0000-4000-8000-000000000001"]
    assert row["status"] == "Not delivered: spam detected (30)"
    assert (row["from"], row["to"]) == ("+14155550100", "+14155550123")  # no apostrophe


def test_the_csv_opens_in_a_spreadsheet_with_names_and_dates_intact(app, client, login_as):
    """Excel reads a CSV without a byte-order mark in the machine's legacy code page
    ("Émile Müller" garbled) and an ISO string with an offset as text, not a date."""
    user = login_as("staff", "viewer@example.com")
    with app.app_context():
        db.session.add(make_message(created_by_id=user.id, text="Émile Müller, García",
                                    created_at=datetime(2026, 7, 1, 16, 5, 9, tzinfo=UTC)))
        db.session.commit()
    body = client.get(url("history.export")).get_data()
    assert body.startswith(codecs.BOM_UTF8)
    header, row = list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))
    assert header[:4] == ["created_at_local", "to", "status", "text"]  # people's columns first
    values = dict(zip(header, row, strict=True))
    assert values["text"] == "Émile Müller, García"
    assert values["created_at_local"] == "2026-07-01 16:05:09"  # the display zone (UTC here)
    assert values["created_at_utc"] == "2026-07-01T16:05:09+00:00"  # kept for programs
