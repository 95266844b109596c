"""Every page in Chromium: accessibility (axe), focus, the favicon, no sideways scrolling at
1280, 768 and 390 px with the status visible on a phone, and the paused banner."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.actions import (
    SCREENS,
    STAFF_PASSWORD,
    WIDTHS,
    check_accessibility,
    check_nothing_scrolls_sideways,
    compose,
    log_in,
    log_out,
    nav,
)
from tests.e2e.conftest import IMAGES, Stack
from tests.helpers import make_message, url

pytestmark = pytest.mark.e2e


def test_pages_have_no_serious_accessibility_violations(page: Page, stack, staff_account):
    log_in(page, stack, stack.admin_email, stack.admin_password)
    page.goto(stack.url + url("history.history"))
    first = page.locator("tbody tr a").first
    detail = first.get_attribute("href") if first.count() else None
    urls = [url("history.history"), url("sending.compose"), url("auth.change_password"),
            url("auth.account"),
            url("auth.users"), url("auth.user_detail", user_id=1),
            url("history.history", status="failed"), url("overview.index"),
            url("overview.health"), url("auth.account_sessions"), url("auth.two_factor"),
            url("audit_log.audit_log"), "/no/such/page"]
    if detail:
        urls.append(detail)
    for path in urls:
        page.goto(stack.url + path)
        check_accessibility(page)
    log_out(page)
    check_accessibility(page)  # the login page


def test_escape_closes_the_account_menu_and_focus_is_always_visible(page: Page, stack,
                                                                   staff_account):
    log_in(page, stack, staff_account, STAFF_PASSWORD)
    menu = page.locator("details.account-menu")
    menu.locator("summary").click()
    expect(menu).to_have_attribute("open", "")
    page.keyboard.press("Escape")
    expect(menu).not_to_have_attribute("open", "")
    assert page.evaluate("document.activeElement.tagName") == "SUMMARY"
    # A keyboard user sees where focus is: a 3 px ring, whatever the control's style.
    page.goto(stack.url + url("sending.compose"))
    page.locator("#add-media").focus()
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Tab")
    ring = page.evaluate("getComputedStyle(document.activeElement).outlineWidth")
    assert ring == "3px", ring


def test_the_favicon_is_served(page: Page, stack):
    response = page.goto(stack.url + "/favicon.ico")
    assert response.ok and "svg" in response.headers["content-type"]


PICTURES = "https://pictures.example/"


def seed_pictured_messages(stack: Stack) -> str:
    """A few earlier messages with pictures at https addresses, as a real team's history
    has, written straight to the dashboard's database; and one Plivo never received
    (its public id is returned, for its page with Send again)."""
    from webapp import create_app
    from webapp.extensions import db

    app = create_app(stack.settings)
    with app.app_context():
        lost = make_message(
            recipient="+16045550188", status="not_sent", text="Your table for four is booked "
            "for Friday at 7 pm.", media=[{"url": PICTURES + "red.png",
                                          "content_type": "image/png", "size": 300}],
            error_reason="Plivo's message list has no message to +16045550188 from "
                         "+14155550100 since 2026-12-01 10:41 UTC (looked 2 times): the "
                         "request never reached Plivo, so nothing was sent.")
        db.session.add(lost)
        db.session.flush()
        lost_id = lost.public_id
        for recipient, status, amount, text, picture in (
                ("+16045550199", "delivered", "0.02000", "Your cake is ready! Pick it up "
                 "any time before 6 pm.", "red.png"),
                ("+14155550142", "sent", None, "New arrivals this week: come and see the "
                 "spring collection.", "blue.png")):
            db.session.add(make_message(
                recipient=recipient, status=status, total_amount=amount, text=text,
                media=[{"url": PICTURES + picture, "content_type": "image/png", "size": 300}]))
        db.session.commit()
        db.engine.dispose()
    return lost_id


def test_every_page_fits_every_width_and_the_status_shows_on_a_phone(browser, stack,
                                                                    staff_account):
    """No sideways scrolling and no serious axe-core finding at 1280, 768 and 390 px on any
    page a logged-in person opens;
    on a phone every history row's status is inside the screen. Screenshots of each page
    at each width go to test-artifacts/screens/ on every run, for a reviewer to look at."""
    SCREENS.mkdir(parents=True, exist_ok=True)
    not_sent = seed_pictured_messages(stack)
    for width_name, (width, height) in WIDTHS.items():
        context = browser.new_context(viewport={"width": width, "height": height})
        # The page may only show https pictures (its CSP); the loopback media server is
        # http, so rows with https addresses are answered here, for the screenshots.
        context.route(PICTURES + "**", lambda route: route.fulfill(
            body=IMAGES["/" + route.request.url.rsplit("/", 1)[1]], content_type="image/png"))
        page = context.new_page()
        log_in(page, stack, stack.admin_email, stack.admin_password)
        if width_name == "desktop":  # a send of its own, so that the pages have rows
            compose(page, stack, "(415) 555-0123, (415) 555-0030, (415) 555-0900",
                    [stack.media + "/red.png"], text="Your order #4471 is ready for pickup "
                    "at the Oak Street shop. Reply STOP to opt out.")
            expect(page.locator("tbody .badge").first).to_be_visible()
            page.screenshot(path=str(SCREENS / "sending-desktop.png"), full_page=True)
            expect(page.locator("tbody .badge", has_text="Waiting")).to_have_count(
                0, timeout=20_000)  # so that the screenshots show how the sends ended
            page.screenshot(path=str(SCREENS / "sent-desktop.png"), full_page=True)
            page.goto(stack.url + url("history.history"))
        detail = page.locator("tbody tr a").first.get_attribute("href")
        pages = {"history": url("history.history"), "compose": url("sending.compose"),
                 "detail": detail, "password": url("auth.change_password"),
                 "your-account": url("auth.account"),
                 "accounts": url("auth.users"), "account": url("auth.user_detail", user_id=1),
                 "history-filtered": url("history.history", status="failed"),
                 "not-sent": url("history.detail", public_id=not_sent),
                 "library": url("pictures.library"), "overview": url("overview.index"),
                 "health": url("overview.health"), "sessions": url("auth.account_sessions"),
                 "two-factor": url("auth.two_factor"), "audit": url("audit_log.audit_log"),
                 "conversations": url("conversations.inbox"), "opt-outs": url("lists.opt_outs")}
        for name, path in pages.items():
            page.goto(stack.url + path)
            page.screenshot(path=str(SCREENS / f"{name}-{width_name}.png"), full_page=True)
            scroll, inner = page.evaluate("[document.documentElement.scrollWidth, innerWidth]")
            assert scroll <= inner, (name, width_name, scroll, inner)
            if width_name == "phone":  # no box on the page scrolls sideways either
                check_nothing_scrolls_sideways(page, name)
            check_accessibility(page)
        if width_name == "phone":
            page.goto(stack.url + url("history.history"))
            page.locator("details.filters summary").click()
            page.locator("#f-from").fill("2026-11-30")
            page.screenshot(path=str(SCREENS / "history-filters-phone.png"), full_page=True)
            for field in ("#f-from", "#f-to"):  # wide enough to show a whole date
                assert page.locator(field).bounding_box()["width"] >= 140, field
            badges = page.locator("tbody tr .badge")
            assert badges.count() > 0
            for i in range(badges.count()):
                box = badges.nth(i).bounding_box()
                assert box and box["x"] >= 0 and box["x"] + box["width"] <= width, box
            # Why a message failed reads under its badge: nothing hovers on a phone.
            reasons = page.locator("tbody tr .why")
            assert reasons.count() >= 2  # the spam failure and the no-credit one sent above
            for i in range(reasons.count()):
                expect(reasons.nth(i)).to_be_visible()
                box = reasons.nth(i).bounding_box()
                assert box["x"] >= 0 and box["x"] + box["width"] <= width, box
        context.close()


def test_the_paused_banner_reads_on_a_desk_and_a_phone(browser, stack):
    """While Plivo refuses the account every page says so, first thing, at any width."""
    from webapp import create_app
    from webapp.extensions import db
    from webapp.gateway import circuit

    app = create_app(stack.settings)
    with app.app_context():
        circuit.open_circuit("Plivo refused our credentials (401: Authentication failed)",
                             401, "credentials")
    try:
        for width_name in ("desktop", "phone"):
            width, height = WIDTHS[width_name]
            context = browser.new_context(viewport={"width": width, "height": height})
            page = context.new_page()
            log_in(page, stack, stack.admin_email, stack.admin_password)
            banner = page.locator("#sending-paused")
            for _ in range(30):  # each web worker reads the state at most every 5 s
                page.goto(stack.url + url("sending.compose"))
                if banner.count():
                    break
                page.wait_for_timeout(250)
            expect(banner).to_contain_text("Plivo refused our credentials")
            expect(banner).to_contain_text("PLIVO_AUTH_TOKEN")
            page.screenshot(path=str(SCREENS / f"paused-{width_name}.png"), full_page=True)
            scroll, inner = page.evaluate("[document.documentElement.scrollWidth, innerWidth]")
            assert scroll <= inner, (width_name, scroll, inner)
            box = banner.bounding_box()
            assert box["x"] >= 0 and box["x"] + box["width"] <= width and box["y"] < height
            check_accessibility(page)
            context.close()
    finally:
        with app.app_context():
            circuit.close_circuit()
            db.engine.dispose()
        # each web worker may show the banner for up to 5 s more (its cached read):
        # let that pass, so the next tests' screenshots show the state as it is
        import time
        time.sleep(5.5)


def test_the_menu_takes_one_row_on_a_phone_and_at_a_desk(browser, stack, staff_account):
    """The links took two or three rows of every phone page and wrapped at 1280 px for
    admins: a "Menu" disclosure on a phone (no JavaScript needed), and the admin pages
    grouped under "Admin" at a desk."""
    for width_name in ("desktop", "phone"):
        width, height = WIDTHS[width_name]
        context = browser.new_context(viewport={"width": width, "height": height})
        page = context.new_page()
        log_in(page, stack, stack.admin_email, stack.admin_password)
        nav_box = page.locator("header nav").bounding_box()
        assert nav_box["height"] < 100, (width_name, nav_box)  # one row (two were 130+)
        if width_name == "phone":
            links = page.locator("header .phone-links")
            expect(links).to_be_hidden()
            page.locator("header .phone-menu > summary").click()
            expect(links.get_by_role("link", name="History")).to_be_visible()
            expect(links.get_by_role("link", name="Audit log")).to_be_visible()
            page.screenshot(path=str(SCREENS / "menu-open-phone.png"), full_page=False)
            check_nothing_scrolls_sideways(page, "menu")
            check_accessibility(page)
            page.keyboard.press("Escape")
            expect(links).to_be_hidden()
        else:
            admin = page.locator("header details.admin-menu")
            expect(admin.get_by_role("link", name="Staff accounts")).to_be_hidden()
            admin.locator("summary").click()
            expect(admin.get_by_role("link", name="Staff accounts")).to_be_visible()
            page.screenshot(path=str(SCREENS / "menu-admin-desktop.png"), full_page=False)
        nav(page, "Health")
        expect(page.get_by_role("heading", name="Webhook and sending health")).to_be_visible()
        context.close()


def test_a_destructive_action_asks_first_in_a_dialog_or_on_a_page(browser, stack,
                                                                  staff_account):
    """'Sign out everywhere else' asks in a <dialog> saying what will happen, and goes
    back on 'No'; without JavaScript the server asks on a page of its own."""
    for width_name, javascript in (("phone", True), ("desktop", False)):
        elsewhere = browser.new_context()  # another browser signed in, to sign out
        log_in(elsewhere.new_page(), stack, staff_account, STAFF_PASSWORD)
        width, height = WIDTHS[width_name]
        context = browser.new_context(viewport={"width": width, "height": height},
                                      java_script_enabled=javascript)
        page = context.new_page()
        log_in(page, stack, staff_account, STAFF_PASSWORD)
        page.goto(stack.url + url("auth.account_sessions"))
        button = page.get_by_role("button", name="Sign out everywhere else")
        button.click()
        if javascript:
            dialog = page.locator("dialog.confirm-dialog")
            expect(dialog).to_be_visible()
            expect(dialog).to_contain_text("this one stays signed in")
            page.screenshot(path=str(SCREENS / f"confirm-dialog-{width_name}.png"))
            check_accessibility(page)
            dialog.get_by_role("button", name="No, go back").click()
            expect(dialog).to_have_count(0)
            assert page.url.endswith(url("auth.account_sessions"))  # nothing was sent
            button.click()
            page.locator("dialog.confirm-dialog").get_by_role(
                "button", name="Sign out everywhere else").click()
        else:
            expect(page.get_by_role("heading", name="Sign out everywhere else?")).to_be_visible()
            page.screenshot(path=str(SCREENS / f"confirm-page-{width_name}.png"))
            page.locator("#confirm-page").get_by_role(
                "button", name="Sign out everywhere else").click()
        expect(page.get_by_text("Signed out everywhere else")).to_be_visible()
        context.close()
        elsewhere.close()
