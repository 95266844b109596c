"""Compose: validation, idempotency, limits, and sends end to end through the live dashboard."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from tests.conftest import PASSWORD, base_env, csrf_token, free_port, login, wait_for
from tests.helpers import clean_environment, csrf_token_in, save_message, url
from webapp.extensions import db
from webapp.models import Message
from webapp.sending import dispatch
from webapp.sending import submission as sending
from webapp.sending.forms import parse_recipients, read_recipients

ROOT = Path(__file__).resolve().parents[2]
MEDIA = "https://example.com/picture.jpg"
KEY_RE = re.compile(r'name="idempotency_key" type="hidden" value="([^"]+)"')

def compose(client, recipients: str, media=(MEDIA,), text: str = "hello", key: str | None = None,
            **extra):
    page = client.get(url("sending.compose")).get_data(as_text=True)
    key = key or KEY_RE.search(page).group(1)
    data = {"csrf_token": csrf_token(client, url("sending.compose")), "idempotency_key": key,
            "sender": "+14155550100", "recipients": recipients, "text": text,
            "media": list(media), **extra}
    return client.post(url("sending.compose"), data=data), key


def count_messages(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(Message))


# ---- validation -----------------------------------------------------------------------------
def test_numbers_are_normalised_and_deduplicated():
    assert parse_recipients("(415) 555-0123, +1 415 555 0123\n604-555-0199;4155550124") == [
        "+14155550123", "+16045550199", "+14155550124"]


@pytest.mark.parametrize(("raw", "message"), [
    ("", "at least one"),
    ("12", "“12” is too short"),
    ("(123) 456-7890", "not a valid phone number"),
    ("+1 415 555 01234", "is too long"),
    ("hello", "not a phone number"),
    ("+44 20 7183 8750", "only be sent to US and Canadian numbers"),
    ("+61 2 9374 4000", "only be sent to US and Canadian numbers"),
    ("(415) 555-0100", "sending number"),
    (",".join(f"415555{n:04d}" for n in range(200, 226)), "at most 25"),
    ("1" * 60, "not a phone number"),
])
def test_bad_recipients_are_refused_in_plain_words(raw, message):
    with pytest.raises(ValueError, match=message):
        parse_recipients(raw, "+14155550100")


@pytest.mark.parametrize(("fields", "error"), [
    ({"recipients": "+44 20 7183 8750"}, "only be sent to US and Canadian numbers"),
    ({"text": "x" * 1650}, "The text is 1,650 characters, 50 over the 1,600 an MMS can carry"),
    ({"media": [f"https://example.com/{i}.jpg" for i in range(11)]}, "at most 10 items"),
    ({"media": ["http://example.com/a.jpg"]}, "must start with https://"),
    ({"media": ["not a url"]}, "https:// address or a Plivo media ID"),
    ({"media": []}, "at least one picture"),
    ({"media": [MEDIA, MEDIA]}, "attached twice"),
    ({"sender": "+19999999999"}, "Not a valid choice"),
])
def test_invalid_form_creates_nothing_and_keeps_input(app, client, login_as, fields, error):
    login_as()
    data = {"recipients": "(415) 555-0123", "text": "keep me", "media": [MEDIA], **fields}
    response, _ = compose(client, **data)
    body = response.get_data(as_text=True)
    assert response.status_code == 400
    assert error in body
    assert "keep me" in body or "x" * 100 in body
    assert count_messages(app) == 0


def test_every_bad_number_is_reported_at_once_with_its_line(app, client, login_as):
    login_as()
    typed = ("(415) 555-0123\n(415) 555-01\n+44 20 7183 8750, (415) 555-0124\n"
             "(415) 555-0123\nhello")
    response, _ = compose(client, typed)
    body = response.get_data(as_text=True)
    assert response.status_code == 400 and count_messages(app) == 0
    assert "Line 2: “(415) 555-01” is too short." in body
    assert "Line 3: “+44 20 7183 8750” is not a US or Canadian number" in body
    assert "Line 5: “hello” is not a phone number." in body
    assert "2 numbers · 1 duplicate removed · 3 invalid" in body
    assert "(415) 555-0124" in body  # what was typed stays, to fix in place


def test_numbers_are_found_in_rows_pasted_from_a_spreadsheet():
    pasted = ("Customer 0\t(415) 555-2000\tOak Street\n"
              "Customer 1\t415.555.2001\n"
              "Customer 2\t(415) 555-2000\n"
              "Customer 3\tno number yet")
    found = read_recipients(pasted, "+14155550100")
    assert found.numbers == ["+14155552000", "+14155552001"]
    assert found.duplicates == 1
    assert found.problems == ["Line 4: no phone number in “Customer 3 no number yet”"]


def test_an_emoji_counts_as_one_character_and_long_text_is_never_cut(app, client, login_as):
    login_as()
    text = "🎂" * 1600  # 1,600 characters as Plivo counts them (3,200 in UTF-16)
    response, _ = compose(client, "(415) 555-0123", text=text)
    assert response.status_code == 303
    with app.app_context():
        assert db.session.scalars(select(Message)).one().text == text
    page = client.get(url("sending.compose")).get_data(as_text=True)
    assert "maxlength" not in page.split('id="text"')[1].split(">")[0]  # the field cuts nothing


def test_media_ids_are_accepted(app, client, login_as):
    login_as()
    media_id = "0b7a1d2c-3e4f-4a5b-8c6d-7e8f9a0b1c2d"
    response, _ = compose(client, "(415) 555-0123", media=[media_id])
    assert response.status_code == 303
    with app.app_context():
        assert db.session.scalars(select(Message)).one().media == [{"media_id": media_id}]


def test_compose_requires_login(client):
    response = client.get(url("sending.compose"))
    assert response.status_code == 302 and url("auth.login") in response.headers["Location"]


def test_per_user_send_limit(make_app, make_user):
    app = make_app(SENDS_PER_MINUTE_PER_USER="2", PLIVO_API_URL="http://127.0.0.1:9",
                   PLIVO_CONNECT_TIMEOUT_SECONDS="0.1")
    client = app.test_client()
    with app.app_context():
        from webapp.auth.service import create_user

        create_user("amy@example.com", PASSWORD)
    login(client, "amy@example.com")
    codes = [compose(client, "(415) 555-0123", text="")[0].status_code for _ in range(3)]
    assert codes[:2] != [429, 429] and codes[2] == 429


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.dictionaries(
    st.sampled_from(["recipients", "text", "sender", "idempotency_key", "media", "junk"]),
    st.one_of(st.text(max_size=300), st.lists(st.text(max_size=80), max_size=12)),
))
def test_arbitrary_compose_input_never_gives_500(app, client, login_as, data):
    if client.get(url("sending.compose")).status_code == 302:  # the first example logs in
        login_as()
    response = client.post(url("sending.compose"), data={
        "csrf_token": csrf_token(client, url("sending.compose")), **data})
    assert response.status_code in (303, 400, 429)


# ---- end to end through the live dashboard ---------------------------------------------------
@pytest.mark.integration
def test_compose_sends_to_two_numbers_and_they_end_delivered(live, simulator, make_user):
    import requests

    sim, _ = simulator
    make_user("amy@example.com")
    browser = requests.Session()
    page = browser.get(live.url + url("auth.login")).text
    token = csrf_token_in(page)
    browser.post(live.url + url("auth.login"), data={"csrf_token": token, "email": "amy@example.com",
                                            "password": PASSWORD})
    page = browser.get(live.url + url("sending.compose")).text
    token = csrf_token_in(page)
    key = KEY_RE.search(page).group(1)
    data = {"csrf_token": token, "idempotency_key": key, "sender": "+14155550100",
            "recipients": "(415) 555-0123\n(604) 555-0199", "text": "hello", "media": MEDIA}
    first = browser.post(live.url + url("sending.compose"), data=data, allow_redirects=False)
    again = browser.post(live.url + url("sending.compose"), data=data, allow_redirects=False)
    assert first.status_code == again.status_code == 303
    assert first.headers["Location"] == again.headers["Location"]
    sent_page = live.url + first.headers["Location"]

    def both_delivered() -> bool:
        return browser.get(sent_page).text.count('data-status="delivered"') == 2

    wait_for(both_delivered)
    assert len(sim.requests) == 2  # the repeated post sent nothing
    assert {r["dst"] for r in sim.requests} == {"14155550123", "16045550199"}
    assert all(r["url"] == live.url + url("callbacks.plivo_status") for r in sim.requests)
    with live.app.app_context():
        rows = db.session.scalars(select(Message)).all()
        assert len(rows) == 2 and all(len(r.events) == 3 for r in rows)
    detail = browser.get(live.url + url("history.detail", public_id=rows[0].public_id)).text
    assert detail.count("Applied") == 3


@pytest.mark.integration
def test_callbacks_racing_the_send_answer_are_applied(live, simulator, make_user):
    user = make_user()
    message_id = save_message(live.app, created_by_id=user.id, recipient="+14155550001")
    with live.app.app_context():
        dispatch.dispatch_message(message_id)
        row = db.session.get(Message, message_id)
        assert row.status == "delivered"
        assert len(row.events) == 3


@pytest.mark.integration
def test_worker_process_sends_a_queued_message(tmp_path, simulator, make_user):
    """The queue on SQLite and a real `flask worker` in another process."""
    sim, sim_url = simulator
    env = clean_environment()
    env.update(base_env(tmp_path, TASK_QUEUE_URL=f"sqlite:///{tmp_path}/tasks.sqlite3",
                        PLIVO_API_URL=sim_url, DATABASE_URL=f"sqlite:///{tmp_path}/w.sqlite3",
                        PUBLIC_BASE_URL=f"http://127.0.0.1:{free_port()}"))
    from webapp import create_app

    app = create_app(env)
    with app.app_context():
        db.create_all()
        from webapp.auth.service import create_user

        user = create_user("amy@example.com", PASSWORD)
        rows, created = sending.create_messages(user, sending.Draft(
            sender="+14155550100", recipients=["+14155550123"], text="hi",
            media=[{"url": MEDIA}], idempotency_key="worker-test-key-1"))
        assert created and rows[0].status == "pending"
        message_id = rows[0].id
    log = (tmp_path / "worker.log").open("w")
    worker = subprocess.Popen([sys.executable, "-m", "flask", "--app", "wsgi", "worker",
                               "--threads", "2"], cwd=ROOT, env=env, stdout=log, stderr=log)
    try:
        def accepted() -> bool:
            with app.app_context():
                db.session.expire_all()
                return db.session.get(Message, message_id).plivo_uuid is not None

        wait_for(accepted, timeout=30)
    finally:
        worker.terminate()
        worker.wait(timeout=10)
        log.close()
    assert [r["dst"] for r in sim.requests] == ["14155550123"]


def test_copy_to_a_new_message_prefills_compose(app, client, login_as):
    login_as()
    media_id = "0b7a1d2c-3e4f-4a5b-8c6d-7e8f9a0b1c2d"
    response, key = compose(client, "(415) 555-0123, (604) 555-0199",
                            media=[MEDIA, media_id], text="Spring sale!")
    assert response.status_code == 303
    with app.app_context():
        first = db.session.scalars(select(Message).order_by(Message.id)).first()
    sent_page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert url("sending.compose", copy_send=key) in sent_page.replace("&amp;", "&")
    one = client.get(url("sending.compose", copy=first.public_id)).get_data(as_text=True)
    def recipients_in(page: str) -> str:
        return page.split('id="recipients"')[1].split("</textarea>")[0].split(">", 1)[1]

    assert recipients_in(one).split() == ["(415)", "555-0123"]
    assert "Spring sale!" in one and f'value="{MEDIA}"' in one and f'value="{media_id}"' in one
    assert key not in one  # a new send, a new idempotency key
    both = client.get(url("sending.compose", copy_send=key)).get_data(as_text=True)
    assert recipients_in(both).split("\n")[-2:] == ["(415) 555-0123", "(604) 555-0199"]
    assert client.get(url("sending.compose", copy="nope")).status_code == 200  # just empty
    detail = client.get(url("history.detail", public_id=first.public_id)).get_data(as_text=True)
    assert 'id="copy-message"' in detail


def test_the_same_text_to_the_same_people_again_soon_asks_first(app, client, login_as):
    login_as()
    first, _ = compose(client, "(415) 555-0123, (604) 555-0199", text="Your order is ready")
    assert first.status_code == 303 and count_messages(app) == 2
    # a new form (Back, then Send on a fresh compose): same text, same people
    again, key = compose(client, "(604) 555-0199\n(415) 555-0123", text="Your order is ready")
    page = again.get_data(as_text=True)
    assert again.status_code == 200 and count_messages(app) == 2
    assert "You sent this to these 2 numbers 1 minute ago." in page
    assert 'name="confirm_repeat" value="yes"' in page
    # different text, or different people: no question
    other, _ = compose(client, "(415) 555-0123, (604) 555-0199", text="Something else")
    assert other.status_code == 303
    fewer, _ = compose(client, "(415) 555-0123", text="Your order is ready")
    assert fewer.status_code == 303 and count_messages(app) == 5
    pictured, _ = compose(client, "(415) 555-0123, (604) 555-0199", text="Your order is ready",
                          media=["https://example.com/another.jpg"])
    assert pictured.status_code == 303 and count_messages(app) == 7  # another picture
    # confirmed: sent
    confirmed, _ = compose(client, "(415) 555-0123, (604) 555-0199", text="Your order is ready",
                           key=key, confirm_repeat="yes")
    assert confirmed.status_code == 303 and count_messages(app) == 9
