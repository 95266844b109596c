"""The history in Chromium: filters, a message's page, the export, Back after signing out,
and the day a date picker names."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.actions import (
    STAFF_PASSWORD,
    compose,
    log_in,
    log_out,
    nav,
)
from tests.helpers import make_message, url

pytestmark = pytest.mark.e2e


def test_history_filters_detail_and_export(page: Page, stack, staff_account):
    log_in(page, stack, staff_account, STAFF_PASSWORD)
    compose(page, stack, "(415) 555-0900", [stack.media + "/blue.png"], text="=1+2 credit")
    expect(page.locator("tbody").get_by_text("Failed: insufficient credit (900)")
           ).to_be_visible(timeout=20_000)
    nav(page, "History")
    page.locator("details.filters summary").click()
    page.get_by_label("Failed", exact=True).check()
    page.get_by_label("Text contains").fill("credit")
    page.get_by_role("button", name="Apply filters").click()
    rows = page.locator("tbody tr")
    expect(rows).to_have_count(1)
    assert "status=failed" in page.url and "q=credit" in page.url
    with page.expect_download() as download_info:
        page.get_by_role("link", name="Export these messages as CSV").click()
    content = Path(download_info.value.path()).read_text(encoding="utf-8-sig")  # BOM first
    table = list(csv.reader(io.StringIO(content)))
    header, row = table[0], dict(zip(table[0], table[1], strict=True))
    assert len(table) == 2 and {"status", "status_code", "created_at_local"} <= set(header)
    assert row["status"] == "Failed: insufficient credit (900)" and row["status_code"] == "failed"
    assert row["text"] == "'=1+2 credit" and row["to"].startswith("+1")
    rows.first.get_by_role("link").click()
    expect(page.locator("table.timeline")).to_contain_text("insufficient credit (900)")


def test_logout_then_back_shows_no_private_page(page: Page, stack, staff_account):
    log_in(page, stack, staff_account, STAFF_PASSWORD)
    page.goto(stack.url + url("history.history"))
    log_out(page)
    page.go_back()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.goto(stack.url + url("history.history"))
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()


def test_a_day_picked_in_the_browser_is_the_day_the_table_shows(page: Page, stack):
    """A person in Los Angeles picks Nov 30 in the date filter and gets exactly the rows
    the table labels Nov 30: one sent at 00:30 PST, not the one at 23:30 the day before
    (07:30 and 08:30 UTC, both Nov 30 in UTC)."""
    from webapp import create_app
    from webapp.auth import service as accounts
    from webapp.extensions import db

    app = create_app(stack.settings)
    with app.app_context():
        user = accounts.create_user("pacific@example.com", STAFF_PASSWORD)
        for hour, text in ((7, "late on the 29th"), (8, "early on the 30th")):
            db.session.add(make_message(created_by_id=user.id, text=text,
                                        created_at=datetime(2026, 11, 30, hour, 30, tzinfo=UTC)))
        db.session.commit()
        db.engine.dispose()
    log_in(page, stack, "pacific@example.com", STAFF_PASSWORD)
    page.goto(stack.url + url("auth.account"))
    page.get_by_label("Show times in").select_option("America/Los_Angeles")
    page.get_by_role("button", name="Save").click()
    page.goto(stack.url + url("history.history"))
    page.locator("details.filters summary").click()
    page.get_by_label("From date (America/Los_Angeles)").fill("2026-11-30")
    page.get_by_label("To date (America/Los_Angeles)").fill("2026-11-30")
    page.get_by_role("button", name="Apply filters").click()
    rows = page.locator("tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("early on the 30th")
    expect(rows.first.locator("time")).to_contain_text("2026-11-30 00:30")
    expect(page.locator("#match-count")).to_have_text("1 message matches these filters.")
    page.locator("details.filters summary").click()
    page.get_by_label("From date (America/Los_Angeles)").fill("")
    page.get_by_label("To date (America/Los_Angeles)").fill("2026-11-29")
    page.get_by_role("button", name="Apply filters").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("late on the 29th")
    expect(rows.first.locator("time")).to_contain_text("2026-11-29 23:30")
