"""Compose and send in Chromium: two numbers watched to delivery, a failure's reason, form
errors beside their fields, the keyboard alone."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.actions import (
    STAFF_PASSWORD,
    compose,
    log_in,
)
from tests.helpers import url

pytestmark = pytest.mark.e2e


def test_staff_sends_to_two_numbers_and_watches_them_deliver(page: Page, stack, staff_account):
    log_in(page, stack, staff_account, STAFF_PASSWORD)
    compose(page, stack, "(415) 555-0123\n(604) 555-0199",
            [stack.media + "/red.png", stack.media + "/blue.png"], text="Spring sale!")
    expect(page.get_by_role("heading", name="Sending 2 messages").or_(
        page.get_by_role("heading", name="Sent 2 messages"))).to_be_visible()
    url_after_send = page.url
    badges = page.locator("tbody .badge")
    expect(badges).to_have_count(2)
    # No reload: htmx swaps each row until it is final.
    expect(badges.nth(0)).to_have_text("Delivered", timeout=20_000)
    expect(badges.nth(1)).to_have_text("Delivered", timeout=20_000)
    assert page.url == url_after_send
    # Every live part agrees: once all are final the heading no longer says "Sending".
    expect(page.get_by_role("heading", name="Sent 2 messages")).to_be_visible()
    expect(page.get_by_role("heading", name="Sending 2 messages")).to_have_count(0)
    page.get_by_role("link", name="(604) 555-0199").click()
    expect(page.get_by_role("heading", name="Message to (604) 555-0199")).to_be_visible()
    timeline = page.locator("table.timeline tbody tr")
    expect(timeline).to_have_count(3)
    expect(timeline.nth(2)).to_contain_text("delivered")


def test_magic_failure_number_shows_its_reason(page: Page, stack, staff_account):
    log_in(page, stack, staff_account, STAFF_PASSWORD)
    compose(page, stack, "(415) 555-0030, (415) 555-0400", [stack.media + "/red.png"])
    rows = page.locator("tbody")
    expect(rows.get_by_text("Not delivered: spam detected (30)")).to_be_visible(timeout=20_000)
    expect(rows.get_by_text("Refused by Plivo")).to_be_visible(timeout=20_000)
    # The summary above the rows follows the same poll, then stops polling.
    summary = page.locator(".send-summary")
    expect(summary).to_contain_text("2 messages")
    expect(summary).to_contain_text("1 Not delivered: spam detected (30)", timeout=20_000)
    expect(summary).to_contain_text("1 Refused by Plivo")
    expect(page.get_by_role("link", name="Show the 2 that did not go through")).to_be_visible()


def test_form_errors_sit_next_to_their_fields(page: Page, stack, staff_account):
    log_in(page, stack, staff_account, STAFF_PASSWORD)
    compose(page, stack, "+44 20 7183 8750", [stack.media + "/missing.png"], text="keep me")
    expect(page.locator("#recipients-error")).to_contain_text(
        "MMS can only be sent to US and Canadian numbers")
    expect(page.get_by_label("To")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("Message")).to_have_value("keep me")


def test_compose_with_the_keyboard_only(page: Page, stack, staff_account):
    log_in(page, stack, staff_account, STAFF_PASSWORD)
    page.goto(stack.url + url("sending.compose"))
    page.locator("body").focus()
    order = []
    for _ in range(15):
        page.keyboard.press("Tab")
        order.append(page.evaluate("document.activeElement.id || document.activeElement.name"))
        if order[-1] == "recipients":
            break
    assert order[-1] == "recipients"
    page.keyboard.type("(415) 555-0124")
    page.keyboard.press("Tab")
    page.keyboard.type("Typed with the keyboard")
    page.keyboard.press("Tab")  # Attach files: the file picker opens with Enter or Space
    assert page.evaluate("document.activeElement.id") == "files"
    page.keyboard.press("Tab")  # the first media row
    page.keyboard.type(stack.media + "/red.png")
    page.keyboard.press("Tab")  # its Remove button
    page.keyboard.press("Tab")  # Add another item
    page.keyboard.press("Enter")
    page.keyboard.type(stack.media + "/blue.png")
    focused = page.evaluate("document.activeElement.id")
    assert focused == "media-2"
    for _ in range(3):  # Remove, Add another item, Send
        page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.value") == "Send"
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Sending 1 message").or_(
        page.get_by_role("heading", name="Sent 1 message"))).to_be_visible()
    expect(page.locator("tbody .badge")).to_have_text("Delivered", timeout=20_000)
