"""Files staff attach from their own computer: checked by content, prepared for carriers,
stored once, served to signed-in staff only, and sent through Plivo's Media API (the real
SDK against the simulator)."""

from __future__ import annotations

import io
import os
import random
import struct
import zlib
from datetime import timedelta

import pytest
import requests
from PIL import Image
from sqlalchemy import func, select

from tests.conftest import PASSWORD, wait_for
from tests.helpers import csrf_token_in, url
from tests.sending.test_submission import KEY_RE
from webapp.extensions import db
from webapp.models import Media, Message
from webapp.pictures import library, preparation

KB = 1024


# ---- files made here, as a camera, an editor or an attacker would make them ---------------
def photo(width=4000, height=3000, quality=97, orientation=None, gps=True) -> bytes:
    """A camera's JPEG: detail at every scale (noise, blown up), EXIF orientation and GPS."""
    rng = random.Random(7)
    small = Image.frombytes("RGB", (width // 6, height // 6),
                            bytes(rng.getrandbits(8) for _ in range(width // 6 * height // 6 * 3)))
    image = small.resize((width, height), Image.Resampling.BICUBIC)
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"
    if orientation:
        exif[0x0112] = orientation
    if gps:
        exif[0x8825] = {1: "N", 2: (37.0, 46.0, 30.0), 3: "W", 4: (122.0, 25.0, 10.0)}
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality, exif=exif.tobytes())
    return buffer.getvalue()


def png(width=200, height=100, mode="RGB", colour=(200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (width, height), colour).save(buffer, "PNG")
    return buffer.getvalue()


def png_bomb(side=20_000) -> bytes:
    """A PNG that unpacks to side x side pixels from a few hundred KB."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    packer = zlib.compressobj(9)
    row = bytes(side + 1)
    body = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", body) + chunk(b"IEND", b""))


def animated_gif(frames=3, side=64) -> bytes:
    images = [Image.new("P", (side, side), i * 40) for i in range(frames)]
    buffer = io.BytesIO()
    images[0].save(buffer, "GIF", save_all=True, append_images=images[1:], duration=100, loop=0)
    return buffer.getvalue()


PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
MP4 = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + bytes(64)
SVG = b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'


# ---- prepare: by content, carrier-friendly -------------------------------------------------
def test_a_big_phone_photo_comes_out_small_upright_and_without_location():
    original = photo(orientation=6)  # taken holding the phone upright: stored sideways
    assert len(original) > 5 * 1024 * KB
    prepared = preparation.prepare(original, "IMG_0042.JPG")
    assert prepared.content_type == "image/jpeg"
    assert len(prepared.data) <= preparation.CARRIER_BYTES
    out = Image.open(io.BytesIO(prepared.data))
    assert dict(out.getexif()) == {}  # no GPS, no camera, no orientation left
    assert out.height > out.width  # turned the way the EXIF said
    assert max(out.size) >= preparation.MIN_LONGEST_SIDE
    assert (prepared.width, prepared.height) == out.size
    assert f"resized from {len(original) / 1024 / 1024:.1f} MB" in prepared.notes
    assert "location and camera data removed" in prepared.notes
    thumb = Image.open(io.BytesIO(prepared.thumbnail))
    assert max(thumb.size) <= preparation.THUMBNAIL_SIDE and thumb.height > thumb.width


def test_a_small_clean_picture_is_sent_as_it_came():
    data = png()
    prepared = preparation.prepare(data, "logo.png")
    assert prepared.data == data and prepared.content_type == "image/png"
    assert prepared.notes == [] and prepared.thumbnail


def test_a_small_photo_with_location_is_re_encoded_without_it():
    data = photo(width=600, height=400, quality=80)
    assert len(data) < preparation.CARRIER_BYTES
    prepared = preparation.prepare(data, "small.jpg")
    assert dict(Image.open(io.BytesIO(prepared.data)).getexif()) == {}
    assert prepared.notes == ["location and camera data removed"]


def test_a_big_transparent_png_stays_a_png_under_600_kb():
    rng = random.Random(3)
    noise = Image.frombytes("RGBA", (1200, 1200), bytes(rng.getrandbits(8) for _ in range(1200 * 1200 * 4)))
    buffer = io.BytesIO()
    noise.save(buffer, "PNG")
    assert len(buffer.getvalue()) > preparation.CARRIER_BYTES
    prepared = preparation.prepare(buffer.getvalue(), "sticker.png")
    assert prepared.content_type == "image/png" and len(prepared.data) <= preparation.CARRIER_BYTES
    assert max(Image.open(io.BytesIO(prepared.data)).size) >= preparation.MIN_LONGEST_SIDE


def test_webp_is_sent_as_jpeg_and_animated_gif_as_it_is():
    buffer = io.BytesIO()
    Image.new("RGB", (300, 200), "navy").save(buffer, "WEBP")
    assert preparation.prepare(buffer.getvalue(), "pic.webp").content_type == "image/jpeg"
    gif = animated_gif()
    prepared = preparation.prepare(gif, "wave.gif")
    assert prepared.data == gif and prepared.content_type == "image/gif"


def test_clips_and_documents_are_recognised_by_their_bytes_and_kept():
    assert preparation.prepare(PDF, "menu.pdf").content_type == "application/pdf"
    assert preparation.prepare(MP4, "clip.mp4").content_type == "video/mp4"
    card = b"BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Oak Street Shop\r\nEND:VCARD\r\n"
    assert preparation.prepare(card, "shop.vcf").content_type == "text/vcard"


@pytest.mark.parametrize(("data", "name", "reason"), [
    (b"", "empty.jpg", "empty.jpg is empty"),
    (PDF, "cake.jpg", "named like a picture but holds a PDF document"),
    (photo(800, 600)[:5000], "cut.jpg", "damaged or cut short"),
    (SVG, "logo.svg", "SVG drawing"),
    (b"MZ\x90\x00" + bytes(100), "setup.exe", "which MMS cannot carry"),
    (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64), "IMG_1.HEIC",
     "HEIC photo"),
    (b"<html><script>alert(1)</script></html>", "page.jpg", "not a picture"),
])
def test_bad_files_are_refused_with_the_reason(data, name, reason):
    with pytest.raises(preparation.UploadRefused, match=reason):
        preparation.prepare(data, name)


def test_a_decompression_bomb_is_refused_before_it_is_unpacked():
    import resource
    bomb = png_bomb()
    assert len(bomb) < 2 * 1024 * KB
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(preparation.UploadRefused, match=r"more than 50 megapixels.*decompression bomb"):
        preparation.prepare(bomb, "bomb.png")
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 50  # 400 MB if it had been unpacked


def test_an_animated_gif_over_2_mb_is_refused_with_the_reason():
    rng = random.Random(5)
    frames = [Image.frombytes("L", (400, 400), bytes(rng.getrandbits(8) for _ in range(160_000)))
              for _ in range(16)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=80)
    assert len(buffer.getvalue()) > 2 * 1024 * KB
    with pytest.raises(preparation.UploadRefused, match=r"animated GIF .* frames cannot be shrunk"):
        preparation.prepare(buffer.getvalue(), "big.gif")


# ---- compose, storage and serving ------------------------------------------------------------
def signed_in(live, make_user, email="amy@example.com") -> requests.Session:
    make_user(email)
    browser = requests.Session()
    token = csrf_token_in(browser.get(live.url + url("auth.login")).text)
    browser.post(live.url + url("auth.login"),
                 data={"csrf_token": token, "email": email, "password": PASSWORD})
    return browser


def post_compose(browser, live, files, recipients="(415) 555-0123", media=(), **extra):
    page = browser.get(live.url + url("sending.compose")).text
    data = {"csrf_token": csrf_token_in(page), "idempotency_key": KEY_RE.search(page).group(1),
            "sender": "+14155550100", "recipients": recipients, "text": "Your cake is ready",
            "media": list(media), **extra}
    return browser.post(live.url + url("sending.compose"), data=data, files=files,
                        allow_redirects=False)


@pytest.mark.integration
def test_a_photo_from_the_desktop_goes_through_plivos_media_api(live, simulator, make_user):
    sim, _ = simulator
    browser = signed_in(live, make_user)
    original = photo(orientation=6)
    answer = post_compose(browser, live, [("files", ("cake.jpg", original, "image/jpeg"))],
                          recipients="(415) 555-0123\n(604) 555-0199")
    assert answer.status_code == 303, answer.text[:2000]
    wait_for(lambda: len(sim.requests) == 2)
    with live.app.app_context():
        (media,) = db.session.scalars(select(Media)).all()
        assert media.size <= preparation.CARRIER_BYTES and media.original_name == "cake.jpg"
        assert media.original_size == len(original)
        messages = db.session.scalars(select(Message)).all()
        assert all(m.media == [library.item_for(media)] for m in messages)
        assert media.plivo_media_id and media.plivo_uploaded_at
    # one upload for the two recipients (the second found the first's id), the MMS carries it
    assert [m["sha256"] for m in sim.media.values()].count(media.sha256) in (1, 2)
    assert all(r["media_ids"] == [media.plivo_media_id] or r["media_ids"][0] in sim.media
               for r in sim.requests)
    assert all(not r.get("media_urls") for r in sim.requests)
    uploaded = sim.media[sim.requests[0]["media_ids"][0]]
    assert uploaded["content_type"] == "image/jpeg" and uploaded["file_name"] == "cake.jpg"
    # history shows the thumbnail; the detail page the picture itself
    history = browser.get(live.url + url("history.history")).text
    assert f'src="/media/{media.sha256}/thumbnail"' in history
    detail = browser.get(live.url + url("history.detail", public_id=messages[0].public_id)).text
    assert f'<img src="/media/{media.sha256}"' in detail
    wait_for(lambda: all(m.status == "delivered" for m in _messages(live.app)))


def _messages(app) -> list[Message]:
    with app.app_context():
        return db.session.scalars(select(Message)).all()


@pytest.mark.integration
def test_an_upload_older_than_five_hours_is_made_again(live, simulator, make_user):
    sim, _ = simulator
    browser = signed_in(live, make_user)
    files = [("files", ("logo.png", png(), "image/png"))]
    assert post_compose(browser, live, files).status_code == 303
    wait_for(lambda: len(sim.requests) == 1)
    with live.app.app_context():
        media = db.session.scalar(select(Media))
        first_id = media.plivo_media_id
        assert post_compose(browser, live, files, recipients="(415) 555-0124").status_code == 303
        wait_for(lambda: len(sim.requests) == 2)
        assert sim.requests[1]["media_ids"] == [first_id]  # fresh: used again
        media.plivo_uploaded_at -= timedelta(hours=5, minutes=1)
        db.session.commit()
    assert post_compose(browser, live, files, recipients="(415) 555-0125").status_code == 303
    wait_for(lambda: len(sim.requests) == 3)
    assert sim.requests[2]["media_ids"] != [first_id] and len(sim.media) == 2


@pytest.mark.integration
def test_a_bad_file_is_reported_and_nothing_is_sent(live, simulator, make_user):
    sim, _ = simulator
    browser = signed_in(live, make_user)
    answer = post_compose(browser, live, [("files", ("cake.jpg", PDF, "image/jpeg")),
                                          ("files", ("logo.png", png(), "image/png"))])
    assert answer.status_code == 400
    assert "named like a picture but holds a PDF document" in answer.text
    assert 'name="uploaded"' in answer.text  # the good file stays attached for the retry
    assert not _messages(live.app) and not sim.requests


@pytest.mark.integration
def test_a_body_over_the_upload_limit_gets_a_page_saying_so(live, simulator, make_user):
    browser = signed_in(live, make_user)
    big = os.urandom(13 * 1024 * KB)
    answer = post_compose(browser, live, [("files", ("huge.jpg", big, "image/jpeg"))])
    assert answer.status_code == 413
    assert "more than 12 MB together" in answer.text and "Nothing was sent" in answer.text
    assert not _messages(live.app)
    with live.app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Media)) == 0


@pytest.mark.integration
def test_one_file_over_the_limit_says_the_limit(live, simulator, make_user):
    """The upload the compose page's JavaScript makes as a file is chosen: its refusal
    names the limit (the page without JavaScript already did)."""
    browser = signed_in(live, make_user)
    page = browser.get(live.url + url("sending.compose")).text
    assert 'data-max-upload-mb="12"' in page  # the script says it before uploading
    answer = browser.post(live.url + url("pictures.upload_media"),
                          files=[("file", ("huge.jpg", os.urandom(13 * 1024 * KB), "image/jpeg"))],
                          headers={"X-CSRFToken": csrf_token_in(page)})
    assert answer.status_code == 413
    assert "larger than the 12 MB limit for one upload" in answer.text
    with live.app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Media)) == 0


@pytest.mark.integration
def test_media_are_served_to_signed_in_staff_only_as_their_stored_type(live, simulator,
                                                                      make_user):
    browser = signed_in(live, make_user)
    assert post_compose(browser, live, [("files", ("menu.pdf", PDF, "text/html"))]).status_code == 303
    with live.app.app_context():
        media = db.session.scalar(select(Media))
    address = live.url + f"/media/{media.sha256}"
    stranger = requests.get(address, allow_redirects=False, timeout=10)
    assert stranger.status_code == 302 and "/login" in stranger.headers["Location"]
    assert requests.get(address + "/thumbnail", allow_redirects=False, timeout=10).status_code == 302
    served = browser.get(address)
    assert served.status_code == 200 and served.content == PDF
    assert served.headers["Content-Type"] == "application/pdf"  # not what the browser claimed
    assert served.headers["Content-Length"] == str(len(PDF))
    assert served.headers["X-Content-Type-Options"] == "nosniff"
    assert served.headers["Content-Disposition"].startswith('inline; filename="menu.pdf"')
    assert "private" in served.headers["Cache-Control"]
    again = browser.get(address, headers={"If-None-Match": served.headers["ETag"]})
    assert again.status_code == 304
    assert browser.get(live.url + "/media/" + "0" * 64).status_code == 404
    assert browser.get(live.url + "/media/not-a-digest").status_code == 404


@pytest.mark.integration
def test_the_same_file_twice_is_stored_once(live, simulator, make_user):
    browser = signed_in(live, make_user)
    data = png()
    for recipient in ("(415) 555-0123", "(415) 555-0124"):
        answer = post_compose(browser, live, [("files", ("a.png", data, "image/png"))],
                              recipients=recipient)
        assert answer.status_code == 303
    with live.app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Media)) == 1


@pytest.mark.integration
def test_plivo_refusing_our_credentials_on_upload_pauses_sending(live, simulator, make_user):
    sim, _ = simulator
    browser = signed_in(live, make_user)
    sim.auth_token = "rotated"
    assert post_compose(browser, live, [("files", ("a.png", png(), "image/png"))]).status_code == 303
    (message,) = _messages(live.app)
    assert message.status == "pending" and message.attempts == 0  # waits, not failed
    from webapp.gateway import circuit
    with live.app.app_context():
        assert circuit.is_open()


# ---- the library -----------------------------------------------------------------------------
def test_the_library_lists_searches_counts_uses_and_lets_admins_delete(app, client, login_as,
                                                                      make_user):
    from tests.conftest import login
    from tests.sending.test_submission import compose

    staff = login_as("staff", "sam@example.com")
    with app.app_context():
        cake = library.store(preparation.prepare(png(colour=(250, 200, 0)), "cake.png"), staff)
        menu = library.store(preparation.prepare(PDF, "menu_50%.pdf"), staff)
        cake_sha, menu_sha = cake.sha256, menu.sha256
    page = client.get(url("pictures.library")).get_data(as_text=True)
    assert page.index("menu_50%.pdf") < page.index("cake.png")  # newest first
    assert "sam@example.com" in page and "used in 0 messages" in page
    assert 'action="/media/' not in page  # staff cannot delete
    found = client.get(url("pictures.library", q="CAKE")).get_data(as_text=True)
    assert "cake.png" in found and "menu_50%.pdf" not in found
    assert "menu_50%.pdf" in client.get(url("pictures.library", q="50%")).get_data(as_text=True)
    assert "cake.png" not in client.get(url("pictures.library", q="_")).get_data(as_text=True)
    assert client.get(url("pictures.library", before="x" * 50)).status_code == 200
    # "Use in a new message" attaches it; sending counts the use
    compose_page = client.get(url("sending.compose", media=cake_sha)).get_data(as_text=True)
    assert f'name="uploaded" value="{cake_sha}"' in compose_page
    response, _ = compose(client, "(415) 555-0123, (415) 555-0124", media=[], uploaded=[cake_sha])
    assert response.status_code == 303
    assert "used in 2 messages" in client.get(url("pictures.library")).get_data(as_text=True)
    from tests.conftest import csrf_token
    staff_token = csrf_token(client, url("pictures.library"))
    assert client.post(f"/media/{menu_sha}/delete",
                       data={"csrf_token": staff_token}).status_code == 403
    # an admin may delete a file no waiting message uses, not one that is waiting
    make_user("boss@example.com", "admin")
    admin = app.test_client()
    login(admin, "boss@example.com")
    token = csrf_token(admin, url("pictures.library"))
    refused = admin.post(f"/media/{cake_sha}/delete", data={"csrf_token": token},
                         follow_redirects=True).get_data(as_text=True)
    assert "still used by 2 messages waiting to be sent" in refused
    # It asks first, saying what will happen; nothing is deleted until the person agrees.
    asked = admin.post(f"/media/{menu_sha}/delete", data={"csrf_token": token})
    assert asked.status_code == 200
    question = asked.get_data(as_text=True)
    assert "Delete “menu_50%.pdf”?" in question and "cannot be restored" in question
    assert 'name="confirmed" value="yes"' in question
    with app.app_context():
        assert library.find(menu_sha) is not None
    deleted = admin.post(f"/media/{menu_sha}/delete",
                         data={"csrf_token": token, "confirmed": "yes"},
                         follow_redirects=True).get_data(as_text=True)
    assert "menu_50%.pdf was deleted" in deleted
    with app.app_context():
        assert library.find(menu_sha) is None and library.find(cake_sha) is not None


def test_a_file_uploaded_as_it_is_chosen_shows_what_came_of_it(app, client, login_as):
    """Compose's JavaScript sends each file to /media/upload at once (with a progress bar)
    and shows the card that comes back, before Send."""
    from tests.conftest import csrf_token
    anonymous = app.test_client()
    assert anonymous.post(url("pictures.upload_media")).status_code in (302, 400)
    login_as()
    token = csrf_token(client, url("sending.compose"))
    answer = client.post(url("pictures.upload_media"), headers={"X-CSRFToken": token},
                         content_type="multipart/form-data",
                         data={"file": (io.BytesIO(photo(800, 600, quality=85, orientation=6)), "me.jpg")})
    card = answer.get_data(as_text=True)
    assert answer.status_code == 200
    with app.app_context():
        media = db.session.scalar(select(Media))
    assert f'<input type="hidden" name="uploaded" value="{media.sha256}">' in card
    assert "location and camera data removed" in card and "me.jpg" in card
    refused = client.post(url("pictures.upload_media"), headers={"X-CSRFToken": token},
                          content_type="multipart/form-data",
                          data={"file": (io.BytesIO(SVG), "x.svg")})
    assert refused.status_code == 400 and "SVG drawing" in refused.get_data(as_text=True)
    forged = client.post(url("pictures.upload_media"), content_type="multipart/form-data",
                         data={"file": (io.BytesIO(png()), "y.png")})
    assert forged.status_code == 400  # no CSRF token: nothing stored
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Media)) == 1


def test_a_post_only_address_read_with_get_says_405_and_what_it_allows(client, login_as):
    """`/media/upload` once matched the file route as a digest named "upload" (404)."""
    login_as("staff")
    answer = client.get(url("pictures.upload_media"))
    assert answer.status_code == 405
    assert "POST" in answer.headers["Allow"]
    assert client.get("/media/" + "A" * 64).status_code == 404  # not a digest hashlib writes
    assert client.get("/media/" + "0" * 64).status_code == 404  # a digest nobody uploaded
