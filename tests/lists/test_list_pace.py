"""A list send at Plivo's real pace (issue 34): the preview says how long before Confirm,
a send longer than a day is confirmed twice, the list page counts down at the real pace
and says who waits for tomorrow, and a message that expired in Plivo's queue is sent
again once."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from html import unescape

import time_machine
from sqlalchemy import select

from tests.conftest import login, post_form
from tests.helpers import make_message, url
from tests.lists.test_list_file import numbers
from tests.lists.test_list_sends import confirm, draft_token, upload
from webapp.extensions import db
from webapp.models import Batch, Message, utcnow
from webapp.sending import eta, expired


def text(response) -> str:
    """The page's words, without tags."""
    html = re.sub(r"<[^>]+>", "", response.get_data(as_text=True))
    return " ".join(unescape(html).split())


def rows(count: int) -> bytes:
    return "\n".join(["name,phone"] + [f"P{i},{n}" for i, n in enumerate(numbers(count))]).encode()


def test_duration_words():
    assert [eta.duration_words(s) for s in (40, 200, 40_000, 3 * 86_400 + 5)] == [
        "40 s", "3 min", "11 h 7 min", "4 days"]


def test_the_preview_says_how_long_at_a_default_accounts_pace(make_app, make_user):
    app = make_app(PLIVO_MMS_MPS="0.25", PLIVO_NUMBER_LIMITS="+14155550100=1/s")
    client = app.test_client()
    user = make_user()
    login(client, user.email)
    token = draft_token(upload(client, rows(300)))
    page = text(client.get(url("lists.batch_draft", token=token)))
    # 300 at one every 4 s: 20 minutes, and nothing asks twice.
    assert "About 20 min at your account's 0.25 MMS per second" in page
    assert "I understand" not in page
    assert confirm(client, token).status_code == 303


def test_a_send_longer_than_a_day_is_confirmed_twice(make_app, make_user):
    with time_machine.travel(datetime(2026, 6, 1, 9, 0, tzinfo=UTC), tick=True):
        _longer_than_a_day(make_app, make_user)


def _longer_than_a_day(make_app, make_user):
    app = make_app(PLIVO_MMS_MPS="0.25", LONG_SEND_CONFIRM_HOURS="1",
                   PLIVO_NUMBER_LIMITS="+14155550100=1/s;2000/day")
    client = app.test_client()
    user = make_user()
    login(client, user.email)
    token = draft_token(upload(client, rows(2500)))
    draft_page = url("lists.batch_draft", token=token)
    page = text(client.get(draft_page))
    # At 9:00 UTC: 2,000 today (8,000 s at one every 4 s), the other 500 from midnight.
    assert re.search(r"About 15 h 33 min at your account's 0.25 MMS per second; 2,000 a day "
                     r"from \(415\) 555-0100 .* means 2 days", page), page[page.find("How long"):][:400]
    assert "I understand this send takes about" in page
    answer = confirm(client, token)  # without the tick: nothing recorded
    assert answer.status_code == 303
    with app.app_context():
        assert db.session.scalar(select(Batch)) is None
    page = text(client.get(draft_page))
    assert "tick “I understand” to send it anyway" in page
    answer = post_form(client, url("lists.confirm_batch", token=token), {"long_send": "yes"},
                       form_page=draft_page)
    assert "/batches/" in answer.headers["Location"]
    with app.app_context():
        assert db.session.scalar(select(Batch)).total == 2500


def test_the_list_page_counts_down_at_the_real_pace_and_names_who_waits(make_app, make_user):
    app = make_app(PLIVO_MMS_MPS="2")
    client = app.test_client()
    user = make_user()
    login(client, user.email)
    token = draft_token(upload(client, rows(120)))
    batch_url = confirm(client, token).headers["Location"]
    with app.app_context():
        held = db.session.scalars(select(Message).limit(20)).all()
        for message in held:
            message.not_before = utcnow() + timedelta(hours=3)
        db.session.commit()
    page = text(client.get(batch_url))
    # 100 go today at 2 a second: 50 s; 20 wait for tomorrow.
    assert "about 50 s left at your account's 2 MMS per second" in page
    assert "20 wait for tomorrow" in page


def test_a_message_that_expired_in_plivos_queue_is_sent_again_once(app, make_user):
    user = make_user()
    with app.app_context():
        first = make_message(created_by_id=user.id, status="failed", error_code="420",
                             final_at=utcnow(), attempts=1, plivo_uuid="u-420")
        carrier = make_message(created_by_id=user.id, status="failed", error_code="30",
                               final_at=utcnow(), attempts=1, plivo_uuid="u-30")
        db.session.add_all([first, carrier])
        db.session.commit()
        assert expired.retry_expired() == {"sent again after error 420": 1}
        again = db.session.scalar(select(Message).where(Message.retry_of_id == first.id))
        assert (again.status, again.recipient, again.text, again.attempts) == (
            "pending", first.recipient, first.text, 0)
        assert expired.retry_expired() == {}  # once
        # The retry expiring too is not sent a third time.
        again.status, again.error_code, again.final_at = "failed", "420", utcnow()
        db.session.commit()
        assert expired.retry_expired() == {}
