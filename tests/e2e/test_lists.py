"""A list checked, priced, confirmed and watched to the end, at desk and phone widths."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.e2e.actions import SCREENS, STAFF_PASSWORD, WIDTHS, check_accessibility, log_in, nav

pytestmark = pytest.mark.e2e


def test_a_list_is_checked_priced_confirmed_and_watched_to_the_end(browser, stack,
                                                                   staff_account):
    """A staff member uploads a CSV of 60 "name, phone" rows (one duplicate, one bad
    number), sees the counts, the first three messages and the estimate, confirms, and
    watches the progress bar reach the end; the report downloads with the name column.
    Every page of it at a desk and a phone: no sideways scrolling, axe clean, screenshots."""
    rows = ["name,phone"] + [f"Customer {i},(415) 555-{1000 + i:04d}" for i in range(60)]
    rows += ["Again,(415) 555-1000", "Broken,555-12"]
    listing = "\n".join(rows).encode()
    for width_name in ("desktop", "phone"):
        width, height = WIDTHS[width_name]
        context = browser.new_context(viewport={"width": width, "height": height},
                                      accept_downloads=True)
        page = context.new_page()
        log_in(page, stack, staff_account, STAFF_PASSWORD)
        nav(page, "Lists")
        page.get_by_role("button", name="Send to a list").click()
        page.locator("#list_file").set_input_files(
            files=[{"name": "customers.csv", "mimeType": "text/csv", "buffer": listing}])
        page.get_by_label("Message").fill("Hi ((name)), your order is ready at Oak Street.")
        page.locator("input[name=media]").first.fill(stack.media + "/red.png")
        page.screenshot(path=str(SCREENS / f"batch-new-{width_name}.png"), full_page=True)
        check_accessibility(page)
        page.get_by_role("button", name="Check the list").click()
        summary = page.locator("#batch-summary")
        expect(summary).to_contain_text("60 numbers will be sent to")
        expect(summary).to_contain_text("1 duplicate removed")
        expect(summary).to_contain_text("1 invalid")
        expect(page.locator(".samples li")).to_have_count(3)
        expect(page.locator(".samples")).to_contain_text("Hi Customer 0, your order")
        expect(page.locator("#estimate")).to_contain_text("About $")
        # How long at Plivo's pace (the suite's fast Plivo: 1,000 a second).
        expect(page.locator("#duration")).to_contain_text("at your account's 1000 MMS per second")
        page.screenshot(path=str(SCREENS / f"batch-preview-{width_name}.png"), full_page=True)
        scroll, inner = page.evaluate("[document.documentElement.scrollWidth, innerWidth]")
        assert scroll <= inner, ("preview", width_name, scroll, inner)
        check_accessibility(page)
        page.get_by_role("button", name="Send to 60 numbers").click()
        expect(page.locator("#count-total")).to_have_text("60")
        page.screenshot(path=str(SCREENS / f"batch-sending-{width_name}.png"), full_page=True)
        expect(page.locator("#count-delivered")).to_have_text("60", timeout=60_000)
        expect(page.locator("#batch-status")).to_have_text("All handed to Plivo")
        page.screenshot(path=str(SCREENS / f"batch-done-{width_name}.png"), full_page=True)
        scroll, inner = page.evaluate("[document.documentElement.scrollWidth, innerWidth]")
        assert scroll <= inner, ("batch", width_name, scroll, inner)
        box = page.locator("#batch-status").bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= width, box
        check_accessibility(page)
        with page.expect_download() as download:
            page.get_by_role("link", name="Download the report (CSV)").click()
        report = list(csv.reader(io.StringIO(
            Path(download.value.path()).read_text(encoding="utf-8-sig"))))
        assert report[0][:3] == ["phone", "name", "status"] and len(report) == 61
        nav(page, "Lists")
        page.screenshot(path=str(SCREENS / f"batches-{width_name}.png"), full_page=True)
        check_accessibility(page)
        context.close()
    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    log_in(page, stack, stack.admin_email, stack.admin_password)
    nav(page, "Opt-outs")
    page.screenshot(path=str(SCREENS / "opt-outs-phone.png"), full_page=True)
    scroll, inner = page.evaluate("[document.documentElement.scrollWidth, innerWidth]")
    assert scroll <= inner
    check_accessibility(page)
    context.close()
