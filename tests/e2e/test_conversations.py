"""Replies in the browser: a customer answers with a picture, staff read it and answer
with a picture from the same number, a STOP stops every later send, START undoes it; at
a desk and on a phone, with the accessibility check and no sideways scrolling."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.e2e.actions import (
    SCREENS,
    STAFF_PASSWORD,
    WIDTHS,
    check_accessibility,
    check_nothing_scrolls_sideways,
    compose,
    log_in,
)
from tests.e2e.conftest import png
from tests.helpers import url

pytestmark = pytest.mark.e2e


def _open_thread(page, number_text: str) -> None:
    """From the menu (its link says how many threads are unread), then the thread."""
    phone_menu = page.locator("header details.phone-menu")
    if phone_menu.is_visible():
        phone_menu.locator("summary").click()
        phone_menu.get_by_role("link", name=re.compile(r"^Conversations")).click()
    else:
        page.locator("header .desk-menu").get_by_role(
            "link", name=re.compile(r"^Conversations")).click()
    expect(page.get_by_role("heading", name="Conversations")).to_be_visible()
    link = page.locator(".thread-item a", has_text=number_text)
    expect(link).to_be_visible(timeout=20_000)  # the list refreshes itself every 10 s
    link.click()


def _wait_for_unread(page, stack) -> None:
    """The menu's count shows on the next page (or the next 30-second poll)."""
    import time

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        page.goto(stack.url + url("overview.index"))
        if page.locator(".menu-count").count():
            return
        time.sleep(0.5)
    raise AssertionError("no unread conversation appeared in the menu")


def test_receive_read_and_answer_a_reply_with_a_picture(browser, stack, staff_account):
    for width_name in ("desktop", "phone"):
        width, height = WIDTHS[width_name]
        context = browser.new_context(viewport={"width": width, "height": height})
        page = context.new_page()
        log_in(page, stack, staff_account, STAFF_PASSWORD)
        compose(page, stack, "(415) 555-0555", [f"{stack.media}/red.png"],
                text=f"Your part is ready ({width_name})")
        expect(page.get_by_role("heading", name=re.compile("Sent|Sending"))).to_be_visible()
        # The customer answers about two seconds after delivery; the menu counts it.
        _wait_for_unread(page, stack)
        _open_thread(page, "(415) 555-0555")
        expect(page.locator(".bubble-in").last).to_contain_text("Thanks, see you at 5!")
        expect(page.locator(".bubble-in img").last).to_be_visible(timeout=20_000)
        box = page.locator(".bubble-in img").last.bounding_box()
        assert box and box["width"] > 40  # the thumbnail loaded, not a broken image
        check_accessibility(page)
        check_nothing_scrolls_sideways(page, f"thread-{width_name}")
        page.screenshot(path=str(SCREENS / f"thread-{width_name}.png"), full_page=True)
        # Answer with a picture from the phone or computer.
        page.get_by_label("Your reply").fill(f"See you then! ({width_name})")
        page.get_by_label("Attach pictures").set_input_files(
            [{"name": "map.png", "mimeType": "image/png", "buffer": png(30, 90, 200, 120)}])
        page.get_by_role("button", name="Send the reply").click()
        expect(page.get_by_text("Reply sent")).to_be_visible()
        mine = page.locator(".bubble-out", has_text=f"See you then! ({width_name})")
        expect(mine).to_be_visible()
        expect(mine.locator(".badge")).to_be_visible()  # its status, on a phone too
        expect(mine).to_contain_text("Delivered", timeout=20_000)
        page.goto(stack.url + url("conversations.inbox"))
        check_accessibility(page)
        check_nothing_scrolls_sideways(page, f"inbox-{width_name}")
        page.screenshot(path=str(SCREENS / f"conversations-{width_name}.png"), full_page=True)
        context.close()


def test_stop_stops_every_later_send_and_start_undoes_it(browser, stack, staff_account):
    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    log_in(page, stack, staff_account, STAFF_PASSWORD)
    compose(page, stack, "(415) 555-0556", [f"{stack.media}/red.png"], text="Sale today")
    expect(page.get_by_role("heading", name=re.compile("Sent|Sending"))).to_be_visible()
    _open_thread(page, "(415) 555-0556")
    expect(page.locator("#opted-out")).to_be_visible(timeout=20_000)
    expect(page.get_by_role("button", name="Send the reply")).to_be_disabled()
    expect(page.locator("#consent")).to_contain_text("opted out")
    check_accessibility(page)
    check_nothing_scrolls_sideways(page, "thread-stopped-phone")
    page.screenshot(path=str(SCREENS / "thread-stopped-phone.png"), full_page=True)
    # Compose refuses the number at once.
    compose(page, stack, "(415) 555-0556", [f"{stack.media}/red.png"], text="One more")
    expect(page.get_by_text(re.compile("replied STOP"))).to_be_visible()
    # START, sent by the customer through the sandbox's CLI.
    import subprocess
    import sys

    from tests.services import ROOT

    result = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "sandbox", "reply",
                             "--from", "+14155550556", "--text", "START"], cwd=ROOT,
                            env=stack.env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    _open_thread(page, "(415) 555-0556")
    expect(page.locator("#opted-out")).to_have_count(0)
    expect(page.locator("#consent")).to_contain_text("opted back in")
    context.close()
