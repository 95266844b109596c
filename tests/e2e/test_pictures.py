"""A photo from a phone, by the file picker and by drag and drop: shrunk, sent and shown."""

from __future__ import annotations

import io

import pytest
from playwright.sync_api import expect

from tests.e2e.actions import (
    SCREENS,
    STAFF_PASSWORD,
    WIDTHS,
    check_accessibility,
    log_in,
    nav,
)
from tests.helpers import url

pytestmark = pytest.mark.e2e


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
        if width_name == "desktop":  # a file over the limit is refused at once, with it
            page.get_by_label("Attach files").set_input_files(
                [{"name": "film.mp4", "mimeType": "video/mp4", "buffer": bytes(13 << 20)}])
            expect(page.locator("#file-previews .upload-error").last).to_contain_text(
                "film.mp4 is 13.0 MB, larger than the 12 MB limit for one upload")
            expect(cards).to_have_count(2)
        page.screenshot(path=str(SCREENS / f"compose-files-{width_name}.png"), full_page=True)
        scroll, inner = page.evaluate("[document.documentElement.scrollWidth, innerWidth]")
        assert scroll <= inner, (width_name, scroll, inner)
        check_accessibility(page)
        page.locator("input[name=media]").first.fill("")
        page.get_by_role("button", name="Send").click()
        expect(page.get_by_role("heading", name="Sending 1 message").or_(
            page.get_by_role("heading", name="Sent 1 message"))).to_be_visible()
        expect(page.locator("tbody .badge")).to_have_text("Delivered", timeout=20_000)
        expect(page.locator("tbody .media-cell")).to_contain_text("2")
        if width_name == "desktop":
            # Back after Send: the page says it was sent and has its pictures again, so
            # Send asks "send it again?" rather than "add at least one picture".
            sent_at = page.url
            page.go_back()
            expect(page.locator("#sent-already")).to_contain_text("This message was sent")
            expect(page.locator("#sent-already").get_by_role(
                "link", name="Copy to a new message")).to_be_visible()
            expect(page.locator("#attached li")).to_have_count(2)
            page.screenshot(path=str(SCREENS / f"compose-back-{width_name}.png"), full_page=True)
            page.get_by_role("button", name="Send").click()
            expect(page.get_by_text("Send it again?")).to_be_visible()
            expect(page.get_by_text("Add at least one picture")).to_have_count(0)
            page.goto(sent_at)
        page.locator("tbody tr a").first.click()
        picture = page.locator("ul.media-list img.preview")
        expect(picture).to_be_visible()
        # the picture itself, shrunk (naturalWidth of the served file), not a broken link
        natural = page.evaluate("document.querySelector('ul.media-list img.preview').naturalWidth")
        assert 640 <= natural < 4000, natural
        expect(page.locator("ul.media-list")).to_contain_text("menu.pdf")
        page.screenshot(path=str(SCREENS / f"detail-picture-{width_name}.png"), full_page=True)
        check_accessibility(page)
        nav(page, "Pictures")
        expect(page.locator("#library")).to_contain_text("menu.pdf")
        expect(page.locator("#library")).to_contain_text("cake.jpg")
        page.screenshot(path=str(SCREENS / f"library-{width_name}.png"), full_page=True)
        scroll, inner = page.evaluate("[document.documentElement.scrollWidth, innerWidth]")
        assert scroll <= inner, (width_name, scroll, inner)
        check_accessibility(page)
        context.close()
