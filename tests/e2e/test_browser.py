"""What a person does in the browser, start to finish, in real headless Chromium."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from pathlib import Path

import pyotp
import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import AXE, IMAGES, Stack
from tests.helpers import make_message, url

STAFF_EMAIL = "casey@example.com"
STAFF_PASSWORD = "casey's long passphrase"
ADMIN_PASSWORD = "the first admin's own passphrase"

pytestmark = pytest.mark.e2e


def log_in(page: Page, stack: Stack, email: str, password: str) -> None:
    page.goto(stack.url + url("auth.login"))
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()


def log_out(page: Page) -> None:
    page.locator("details.dropdown summary").click()
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()


def check_accessibility(page: Page) -> None:
    page.evaluate(AXE.read_text())
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    serious = [f"{v['id']}: {v['help']} {[n['target'] for n in v['nodes']]}"
               for v in result["violations"] if v["impact"] in ("serious", "critical")]
    assert not serious, f"{page.url}: {serious}"


def compose(page: Page, stack: Stack, recipients: str, media: list[str], text: str = "") -> None:
    page.goto(stack.url + url("sending.compose"))
    page.get_by_label("To").fill(recipients)
    page.get_by_label("Message").fill(text)
    for i, address in enumerate(media):
        if i:
            page.get_by_role("button", name="Add another item").click()
        page.locator("input[name=media]").nth(i).fill(address)
    page.get_by_role("button", name="Send").click()


@pytest.fixture(scope="module")
def staff_account(stack, browser):
    """The admin logs in with the printed credentials, is made to choose a password of
    their own before anything else, and creates a staff account."""
    context = browser.new_context()
    page = context.new_page()
    page.goto(stack.url + url("auth.login"))
    page.get_by_label("Email").fill(stack.admin_email)
    page.get_by_label("Password").fill(stack.admin_password)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_text("Choose your own password first")).to_be_visible()
    page.goto(stack.url + url("history.history"))  # nothing else opens until then
    expect(page.get_by_text("Choose your own password first")).to_be_visible()
    page.locator("#current_password").fill(stack.admin_password)
    page.locator("#new_password").fill(ADMIN_PASSWORD)
    page.locator("#confirm").fill(ADMIN_PASSWORD)
    page.get_by_role("button", name="Change password").click()
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    stack.admin_password = ADMIN_PASSWORD
    page.get_by_role("link", name="Staff accounts").click()
    page.get_by_label("Email").fill(STAFF_EMAIL)
    page.get_by_label("Role").select_option("staff")
    page.get_by_label("Initial password").fill(STAFF_PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_text(f"Account created for {STAFF_EMAIL}")).to_be_visible()
    expect(page.get_by_role("cell", name=STAFF_EMAIL, exact=True)).to_be_visible()
    log_out(page)
    context.close()
    return STAFF_EMAIL


def test_staff_sends_to_two_numbers_and_watches_them_deliver(page: Page, stack, staff_account):
    log_in(page, stack, staff_account, STAFF_PASSWORD)
    compose(page, stack, "(415) 555-0123\n(604) 555-0199",
            [stack.media + "/red.png", stack.media + "/blue.png"], text="Spring sale!")
    expect(page.get_by_role("heading", name="Sending 2 messages")).to_be_visible()
    url_after_send = page.url
    badges = page.locator("tbody .badge")
    expect(badges).to_have_count(2)
    # No reload: htmx swaps each row until it is final.
    expect(badges.nth(0)).to_have_text("Delivered", timeout=20_000)
    expect(badges.nth(1)).to_have_text("Delivered", timeout=20_000)
    assert page.url == url_after_send
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


def test_history_filters_detail_and_export(page: Page, stack, staff_account):
    log_in(page, stack, staff_account, STAFF_PASSWORD)
    compose(page, stack, "(415) 555-0900", [stack.media + "/blue.png"], text="=1+2 credit")
    expect(page.locator("tbody").get_by_text("Failed: insufficient credit (900)")
           ).to_be_visible(timeout=20_000)
    page.get_by_role("link", name="History", exact=True).click()
    page.locator("details.filters summary").click()
    page.get_by_label("Failed", exact=True).check()
    page.get_by_label("Text contains").fill("credit")
    page.get_by_role("button", name="Apply filters").click()
    rows = page.locator("tbody tr")
    expect(rows).to_have_count(1)
    assert "status=failed" in page.url and "q=credit" in page.url
    with page.expect_download() as download_info:
        page.get_by_role("link", name="Export these messages as CSV").click()
    content = Path(download_info.value.path()).read_text(encoding="utf-8")
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
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    page.goto(stack.url + url("history.history"))
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()


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
    expect(page.get_by_role("heading", name="Sending 1 message")).to_be_visible()
    expect(page.locator("tbody .badge")).to_have_text("Delivered", timeout=20_000)


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
    menu = page.locator("details.dropdown")
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


SCREENS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screens"
WIDTHS = {"desktop": (1280, 800), "tablet": (768, 1024), "phone": (390, 844)}


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
                 "two-factor": url("auth.two_factor"), "audit": url("audit_log.audit_log")}
        for name, path in pages.items():
            page.goto(stack.url + path)
            page.screenshot(path=str(SCREENS / f"{name}-{width_name}.png"), full_page=True)
            scroll, inner = page.evaluate("[document.documentElement.scrollWidth, innerWidth]")
            assert scroll <= inner, (name, width_name, scroll, inner)
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
        context.close()


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


def _phone_photo() -> bytes:
    """A 4000 x 3000 camera JPEG with GPS in its EXIF, about 4 MB."""
    import random

    from PIL import Image
    rng = random.Random(11)
    small = Image.frombytes("RGB", (500, 375), bytes(rng.getrandbits(8) for _ in range(500 * 375 * 3)))
    exif = Image.Exif()
    exif[0x8825] = {1: "N", 2: (37.0, 46.0, 30.0)}
    buffer = io.BytesIO()
    small.resize((4000, 3000), Image.Resampling.BICUBIC).save(buffer, "JPEG", quality=95,
                                                              exif=exif.tobytes())
    return buffer.getvalue()


def test_a_photo_attached_by_picker_and_by_drop_is_shrunk_sent_and_shown(browser, stack,
                                                                        staff_account):
    """The issue's 'done when': a phone photo dropped on compose, shrunk and stripped, sent,
    and the picture shown on the detail page and in history; at desktop and phone widths."""
    photo = _phone_photo()
    for width_name in ("desktop", "phone"):
        width, height = WIDTHS[width_name]
        context = browser.new_context(viewport={"width": width, "height": height})
        page = context.new_page()
        log_in(page, stack, staff_account, STAFF_PASSWORD)
        page.goto(stack.url + url("sending.compose"))
        page.get_by_label("To").fill("(415) 555-0123")
        page.get_by_label("Message").fill(f"Your cake is ready! ({width_name})")
        # by the file picker (keyboard users reach it by Tab like any input) ...
        page.get_by_label("Attach files").set_input_files(
            [{"name": "cake.jpg", "mimeType": "image/jpeg", "buffer": photo}])
        # ... and by dropping a second file on the media area
        page.evaluate("""(bytes) => {
            const data = new DataTransfer();
            data.items.add(new File([new Uint8Array(bytes)], "menu.pdf", {type: "application/pdf"}));
            const zone = document.getElementById("drop-zone");
            zone.dispatchEvent(new DragEvent("dragover", {dataTransfer: data, bubbles: true}));
            zone.dispatchEvent(new DragEvent("drop", {dataTransfer: data, bubbles: true}));
        }""", list(b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"))
        # each is uploaded at once and shows what came of it before Send
        cards = page.locator("#attached li")
        expect(cards).to_have_count(2)
        cake = cards.filter(has_text="cake.jpg")
        expect(cake).to_contain_text("resized from 5.")
        expect(cake).to_contain_text("location and camera data removed")
        expect(cake.locator("img")).to_have_js_property("naturalWidth", 240)
        expect(cards.filter(has_text="menu.pdf")).to_contain_text("application/pdf")
        assert page.locator("#files").evaluate("input => input.files.length") == 0
        # a file the server refuses says why, and is not attached
        page.get_by_label("Attach files").set_input_files(
            [{"name": "logo.svg", "mimeType": "image/svg+xml",
              "buffer": b'<svg xmlns="http://www.w3.org/2000/svg"><script>1</script></svg>'}])
        expect(page.locator("#file-previews .upload-error")).to_contain_text("SVG drawing")
        expect(cards).to_have_count(2)
        page.screenshot(path=str(SCREENS / f"compose-files-{width_name}.png"), full_page=True)
        scroll, inner = page.evaluate("[document.documentElement.scrollWidth, innerWidth]")
        assert scroll <= inner, (width_name, scroll, inner)
        check_accessibility(page)
        page.locator("input[name=media]").first.fill("")
        page.get_by_role("button", name="Send").click()
        expect(page.get_by_role("heading", name="Sending 1 message")).to_be_visible()
        expect(page.locator("tbody .badge")).to_have_text("Delivered", timeout=20_000)
        expect(page.locator("tbody .media-cell")).to_contain_text("2")
        page.locator("tbody tr a").first.click()
        picture = page.locator("ul.media-list img.preview")
        expect(picture).to_be_visible()
        # the picture itself, shrunk (naturalWidth of the served file), not a broken link
        natural = page.evaluate("document.querySelector('ul.media-list img.preview').naturalWidth")
        assert 640 <= natural < 4000, natural
        expect(page.locator("ul.media-list")).to_contain_text("menu.pdf")
        page.screenshot(path=str(SCREENS / f"detail-picture-{width_name}.png"), full_page=True)
        check_accessibility(page)
        page.get_by_role("link", name="Pictures").click()
        expect(page.locator("#library")).to_contain_text("menu.pdf")
        expect(page.locator("#library")).to_contain_text("cake.jpg")
        page.screenshot(path=str(SCREENS / f"library-{width_name}.png"), full_page=True)
        scroll, inner = page.evaluate("[document.documentElement.scrollWidth, innerWidth]")
        assert scroll <= inner, (width_name, scroll, inner)
        check_accessibility(page)
        context.close()


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
            if int(sent_tile.inner_text().replace(",", "")) > 50:
                break
            page.wait_for_timeout(500)
        expect(page.locator("#chart-outcomes")).to_be_visible()
        expect(page.locator("#chart-latency")).to_be_visible()
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
    page.get_by_role("link", name="Health", exact=True).click()
    page.get_by_label("Phone number (US or Canada)").fill("(415) 555-0123")
    page.get_by_role("button", name="Send the test message").click()
    expect(page.locator("#round-trip")).to_contain_text("Callback: delivered", timeout=20_000)
    expect(page.locator("#round-trip")).to_contain_text("Accepted by Plivo")
    page.screenshot(path=str(SCREENS / "test-message-desktop.png"), full_page=True)
    check_accessibility(page)
    context.close()


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
    page.get_by_label("Initial password").fill(password)
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_text(f"Account created for {email}")).to_be_visible()
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
            secret = page.locator("#totp-secret").inner_text().strip()
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
        page.get_by_role("button", name="Log in").click()
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
        page.get_by_role("link", name="Lists").click()
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
        page.get_by_role("link", name="Lists").click()
        page.screenshot(path=str(SCREENS / f"batches-{width_name}.png"), full_page=True)
        check_accessibility(page)
        context.close()
    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    log_in(page, stack, stack.admin_email, stack.admin_password)
    page.get_by_role("link", name="Opt-outs").click()
    page.screenshot(path=str(SCREENS / "opt-outs-phone.png"), full_page=True)
    scroll, inner = page.evaluate("[document.documentElement.scrollWidth, innerWidth]")
    assert scroll <= inner
    check_accessibility(page)
    context.close()
