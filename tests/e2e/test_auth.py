"""Two-factor enrolment and sign-in with the app's code; the idle warning."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pyotp
import pytest
from playwright.sync_api import expect

from tests.e2e.actions import (
    SCREENS,
    STAFF_PASSWORD,
    WIDTHS,
    check_accessibility,
    first_sign_in,
    log_in,
    log_out,
)
from tests.helpers import url

pytestmark = pytest.mark.e2e


def test_two_factor_enrolment_and_sign_in_with_the_app_s_code(browser, stack, staff_account):
    """A person turns two-factor on by reading the key off the page (as an authenticator
    app would from the QR code), signs out, and signs in with a code; the admin sees it
    in the audit log. At a desk and on a phone."""
    email, password = "dana@example.com", "dana's long passphrase"
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    log_in(page, stack, stack.admin_email, stack.admin_password)
    page.goto(stack.url + url("auth.users"))
    page.get_by_label("Email").fill(email)
    page.get_by_label("Role").select_option("staff")
    page.get_by_label("Initial password").fill("dana's first, from the admin")
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_text(f"Account created for {email}")).to_be_visible()
    log_out(page)
    first_sign_in(page, stack, email, "dana's first, from the admin", password)
    log_out(page)
    context.close()

    for width_name, (width, height) in (("desktop", WIDTHS["desktop"]), ("phone", WIDTHS["phone"])):
        context = browser.new_context(viewport={"width": width, "height": height})
        page = context.new_page()
        if width_name == "desktop":
            log_in(page, stack, email, password)
            page.goto(stack.url + url("auth.two_factor"))
            page.get_by_role("button", name="Set up two-factor sign-in").click()
            expect(page.get_by_alt_text("QR code for setting up two-factor sign-in")).to_be_visible()
            page.screenshot(path=str(SCREENS / f"two-factor-enrol-{width_name}.png"), full_page=True)
            check_accessibility(page)
            key = page.locator("#totp-secret").inner_text().strip()
            assert re.fullmatch(r"([A-Z2-7]{4} )+[A-Z2-7]{1,4}", key), key  # grouped in fours
            secret = key.replace(" ", "")
            link = page.get_by_role("link", name="Open in your authenticator app")
            assert link.get_attribute("href").startswith("otpauth://totp/")
            totp = pyotp.TOTP(secret)
            page.get_by_label("Code").fill(totp.now())
            page.get_by_role("button", name="Turn on two-factor sign-in").click()
            expect(page.get_by_role("heading", name="Two-factor sign-in is on")).to_be_visible()
            expect(page.locator("#recovery-codes li")).to_have_count(10)
            page.screenshot(path=str(SCREENS / f"recovery-codes-{width_name}.png"), full_page=True)
            check_accessibility(page)
            log_out(page)
        # Sign in again: the password, then the code (a fresh step: the enrolment's is spent).
        page.goto(stack.url + url("auth.login"))
        page.get_by_label("Email").fill(email)
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("heading", name="Enter your code")).to_be_visible()
        page.screenshot(path=str(SCREENS / f"sign-in-code-{width_name}.png"), full_page=True)
        scroll, inner = page.evaluate("[document.documentElement.scrollWidth, innerWidth]")
        assert scroll <= inner, (width_name, scroll, inner)
        check_accessibility(page)
        page.get_by_label("Code").fill("000000")
        page.get_by_role("button", name="Continue").click()
        expect(page.get_by_text("That code is not right")).to_be_visible()
        step = int(datetime.now(UTC).timestamp()) // 30
        while int(datetime.now(UTC).timestamp()) // 30 == step:  # a code not used yet
            page.wait_for_timeout(500)
        page.get_by_label("Code").fill(totp.now())
        page.get_by_role("button", name="Continue").click()
        expect(page.get_by_role("heading", name="Overview")).to_be_visible()
        page.goto(stack.url + url("auth.account_sessions"))
        expect(page.get_by_text("(this browser)")).to_be_visible()
        page.screenshot(path=str(SCREENS / f"sessions-2fa-{width_name}.png"), full_page=True)
        log_out(page)
        context.close()

    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    log_in(page, stack, stack.admin_email, stack.admin_password)
    page.goto(stack.url + url("audit_log.audit_log", who=email))
    expect(page.locator("td", has_text="Two-factor turned on")).to_be_visible()
    expect(page.locator("td", has_text="second_factor: totp").first).to_be_visible()
    expect(page.locator("td", has_text="Two-factor code wrong").first).to_be_visible()
    page.screenshot(path=str(SCREENS / "audit-dana-desktop.png"), full_page=True)
    check_accessibility(page)
    context.close()


def test_the_idle_warning_offers_to_stay_signed_in(browser, stack, staff_account):
    """Playwright's clock runs the page's timers ahead: two minutes before the idle
    limit (30 minutes here) the banner shows, and 'Stay signed in' tells the server."""
    width, height = WIDTHS["phone"]
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    page.clock.install()
    log_in(page, stack, staff_account, STAFF_PASSWORD)
    page.goto(stack.url + url("sending.compose"))
    banner = page.locator("#idle-warning")
    expect(banner).to_be_hidden()
    page.clock.fast_forward("26:00")
    expect(banner).to_be_hidden()
    page.clock.fast_forward("01:30")
    expect(banner).to_be_visible()
    expect(banner).to_contain_text("You will be signed out in")
    page.screenshot(path=str(SCREENS / "idle-warning-phone.png"), full_page=False)
    check_accessibility(page)
    with page.expect_response(lambda r: r.url.endswith(url("auth.keep_alive"))) as answer:
        banner.get_by_role("button", name="Stay signed in").click()
    assert answer.value.status == 204
    expect(banner).to_be_hidden()
    context.close()
