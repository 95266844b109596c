"""The overview at a glance, on a desk and on a phone."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from playwright.sync_api import expect

from tests.e2e.actions import (
    SCREENS,
    WIDTHS,
    check_accessibility,
    check_nothing_scrolls_sideways,
    log_in,
    nav,
)
from tests.e2e.conftest import Stack
from tests.helpers import make_message, url

pytestmark = pytest.mark.e2e


def seed_a_month(stack: Stack) -> None:
    """A month of a team's messages, written straight to the database: delivered most
    days, some failures with Plivo's error codes, costs; the workers' sweep counts them."""
    import random
    from datetime import timedelta

    from webapp import create_app
    from webapp.extensions import db

    rng = random.Random(7)
    app = create_app(stack.settings)
    now = datetime.now(UTC)
    with app.app_context():
        for day in range(1, 29):
            for _ in range(rng.randint(3, 12)):
                created = now - timedelta(days=day, minutes=rng.randint(0, 600))
                outcome = rng.choices(["delivered", "undelivered", "failed", "sent"],
                                      [85, 6, 4, 5])[0]
                db.session.add(make_message(
                    created_by_id=1, created_at=created, status=outcome,
                    error_code=rng.choice(["30", "50", "200"]) if outcome in (
                        "undelivered", "failed") else None,
                    total_amount="0.02000" if outcome != "sent" else None,
                    final_at=created + timedelta(seconds=rng.choice([3, 8, 12, 40, 200]))
                    if outcome == "delivered" else None))
        db.session.commit()
        db.engine.dispose()


def test_the_overview_at_a_glance_on_a_desk_and_a_phone(browser, stack, staff_account):
    """The admin opens the dashboard: tiles, the chart drawn by Chart.js (its figures one
    click away as a table), failures with their meaning, the health panel; every figure a
    link to the messages behind it; at desktop and phone widths, no sideways scrolling,
    axe clean. Then a test message's round trip, live, from the health page."""
    seed_a_month(stack)
    for width_name in ("desktop", "phone"):
        width, height = WIDTHS[width_name]
        context = browser.new_context(viewport={"width": width, "height": height})
        page = context.new_page()
        log_in(page, stack, stack.admin_email, stack.admin_password)
        sent_tile = page.locator(".tile", has_text="Messages sent").locator(".tile-figure")
        for _ in range(60):  # the workers' sweep counts the seeded month (every 3 s here)
            page.goto(stack.url + url("overview.index", period="30d"))
            # The month's own failures, not a count other tests' sends may pass first.
            if (int(sent_tile.inner_text().replace(",", "")) > 50
                    and page.get_by_text("spam detected").count()):
                break
            page.wait_for_timeout(500)
        expect(page.locator("#chart-outcomes")).to_be_visible()
        expect(page.locator("#chart-latency")).to_be_visible()
        # Days without messages are gaps in the lines, not a line drawn across them.
        gaps = page.evaluate("""() => ['outcomes', 'latency'].map(name => Chart.getChart(
            document.querySelector('[data-chart="' + name + '"] canvas')).data.datasets
            .filter(d => d.type === 'line' || !d.type).map(d => d.spanGaps))""")
        assert gaps == [[False], [False, False]], gaps
        assert page.evaluate("document.getElementById('per-day-table').open") is False
        expect(page.locator("#errors-heading")).to_be_visible()
        expect(page.get_by_text("spam detected")).to_be_visible()
        expect(page.locator("#health-heading")).to_be_visible()
        page.screenshot(path=str(SCREENS / f"overview-30d-{width_name}.png"), full_page=True)
        scroll, inner = page.evaluate("[document.documentElement.scrollWidth, innerWidth]")
        assert scroll <= inner, (width_name, scroll, inner)
        check_accessibility(page)
        page.locator("#per-day-table summary").click()  # the table alternative
        expect(page.locator("#per-day-table tbody tr").first).to_be_visible()
        check_accessibility(page)
        # A figure opens the history filtered to exactly those messages.
        failed = page.locator(".tile", has_text="Not delivered or failed").locator("a")
        expected = int(failed.inner_text().replace(",", ""))
        failed.click()
        expect(page.get_by_role("heading", name="History")).to_be_visible()
        expect(page.locator("#match-count")).to_contain_text(f"{expected:,} message")
        context.close()

    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    log_in(page, stack, stack.admin_email, stack.admin_password)
    nav(page, "Health")
    page.get_by_label("Phone number (US or Canada)").fill("(415) 555-0123")
    page.get_by_role("button", name="Send the test message").click()
    expect(page.locator("#round-trip")).to_contain_text("Callback: delivered", timeout=20_000)
    expect(page.locator("#round-trip")).to_contain_text("Accepted by Plivo")
    page.screenshot(path=str(SCREENS / "test-message-desktop.png"), full_page=True)
    check_accessibility(page)
    context.close()


def test_the_health_page_shows_the_pace_and_each_sender_number(browser, stack):
    """Plivo's pace and the sender numbers as Plivo's Number API describes them (the
    worker looks them up when it starts), as cards on a phone."""
    for width_name in ("desktop", "phone"):
        width, height = WIDTHS[width_name]
        context = browser.new_context(viewport={"width": width, "height": height})
        page = context.new_page()
        log_in(page, stack, stack.admin_email, stack.admin_password)
        nav(page, "Health")
        expect(page.locator("#rate-heading")).to_have_text("Sending pace")
        numbers = page.locator("#sender-numbers")
        expect(numbers).to_contain_text("(415) 555-0100")
        # Looked up by the worker in the simulator's Number API: an unregistered long code.
        expect(numbers).to_contain_text("local")
        expect(numbers).to_contain_text("Not registered for 10DLC")
        expect(numbers).to_contain_text("your setting (PLIVO_NUMBER_LIMITS)")
        page.locator("#sender-numbers").scroll_into_view_if_needed()
        page.screenshot(path=str(SCREENS / f"health-numbers-{width_name}.png"), full_page=True)
        check_nothing_scrolls_sideways(page, f"health {width_name}")
        check_accessibility(page)
        context.close()
