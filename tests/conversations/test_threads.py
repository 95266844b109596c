"""Conversations end to end against the simulator: magic customers answer (with a picture,
STOP, HELP), the picture is fetched and shown, staff answer from the number the customer
wrote to, and the inbox lists, filters, searches and counts."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from tests.conftest import login, post_form, wait_for
from tests.helpers import save_message, url
from webapp.extensions import db
from webapp.models import Conversation, InboundMessage, Media, Message, OptOut

pytestmark = pytest.mark.integration
KEY_RE = re.compile(r'name="idempotency_key" type="hidden" value="([^"]+)"')


@pytest.fixture
def staff(live, make_user):
    user = make_user("staff@example.com")
    client = live.app.test_client()
    assert login(client, user.email).status_code == 303
    return client, user


def send_from_compose(client, recipient: str) -> None:
    answer = post_form(client, url("sending.compose"), {
        "sender": "+14155550100", "recipients": recipient, "text": "Your part is ready",
        "media": "https://example.com/part.jpg"})
    assert answer.status_code == 303, answer.get_data(as_text=True)[:2000]


def _reply_from(customer: str, text: str) -> None:
    """A customer's message to our number, kept as the webhook keeps it."""
    from webapp.conversations import inbound

    inbound.record(inbound.parse_inbound({
        "From": customer, "To": "14155550100", "Text": text,
        "MessageUUID": f"from-{customer}-{text}"}), "v3")


def thread_of(app, customer: str) -> Conversation:
    with app.app_context():
        return db.session.scalar(select(Conversation).where(Conversation.customer == customer))


def test_a_customer_answers_with_a_picture_and_it_shows_in_the_thread(live, simulator, staff):
    sim, _ = simulator
    sim.reply_delay = 0.05
    client, _user = staff
    send_from_compose(client, "+14155550555")

    def picture_stored():
        with live.app.app_context():
            message = db.session.scalar(select(InboundMessage))
            return message is not None and message.media and message.media[0]["state"] != "waiting"

    wait_for(picture_stored, timeout=15)
    with live.app.app_context():
        message = db.session.scalar(select(InboundMessage))
        assert message.text == "Thanks, see you at 5!"
        assert message.media[0]["state"] == "stored", message.media
        stored = db.session.scalar(select(Media).where(Media.sha256 == message.media[0]["sha256"]))
        assert stored.content_type == "image/jpeg" and stored.thumbnail
        public_id = message.conversation.public_id if hasattr(message, "conversation") else None
    thread = thread_of(live.app, "+14155550555")
    assert thread.unread and thread.needs_reply
    inbox = client.get(url("conversations.inbox")).get_data(as_text=True)
    assert "Thanks, see you at 5!" in inbox and "Needs a reply" in inbox
    assert 'class="menu-count"' in inbox
    page = client.get(url("conversations.thread", public_id=thread.public_id))
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "Your part is ready" in html
    assert html.index("Your part is ready") < html.index("Thanks, see you at 5!")  # time order
    assert url("pictures.media_thumbnail", sha256=message.media[0]["sha256"]) in html
    assert not thread_of(live.app, "+14155550555").unread  # read once opened
    # Signed-in staff only: the picture is not served to a stranger.
    stranger = live.app.test_client()
    picture = stranger.get(url("pictures.media_file", sha256=message.media[0]["sha256"]))
    assert picture.status_code in (302, 401)
    assert public_id is None or public_id


def test_staff_answer_from_the_number_the_customer_wrote_to(live, simulator, staff):
    sim, _ = simulator
    client, _user = staff
    # The customer wrote to our second number.
    sim.post_inbound(customer="+14155550123", our_number="+14155550101", text="Still open?",
                     url=live.url + url("inbound.plivo_message"))
    thread = thread_of(live.app, "+14155550123")
    assert thread is not None
    page = client.get(url("conversations.thread", public_id=thread.public_id)).get_data(
        as_text=True)
    key = KEY_RE.search(page).group(1)
    answer = post_form(client, url("conversations.reply", public_id=thread.public_id),
                       {"text": "Yes, until 6pm.", "idempotency_key": key},
                       form_page=url("conversations.thread", public_id=thread.public_id))
    assert answer.status_code == 303, answer.get_data(as_text=True)[:3000]
    # The same key again (a double click) sends nothing twice.
    post_form(client, url("conversations.reply", public_id=thread.public_id),
              {"text": "Yes, until 6pm.", "idempotency_key": key},
              form_page=url("conversations.thread", public_id=thread.public_id))
    wait_for(lambda: any(r.get("text") == "Yes, until 6pm." for r in sim.requests))
    sent = [r for r in sim.requests if r.get("text") == "Yes, until 6pm."]
    assert len(sent) == 1
    assert sent[0]["src"] == "14155550101" and sent[0]["dst"] == "14155550123"
    assert sent[0]["type"] == "sms"  # text alone
    after = thread_of(live.app, "+14155550123")
    assert not after.needs_reply and after.last_direction == "out"
    with live.app.app_context():
        from webapp.models import AuditEvent

        entries = list(db.session.scalars(select(AuditEvent).where(
            AuditEvent.action == "reply_sent")))
        assert len(entries) == 1 and entries[0].actor_email == "staff@example.com"
    with live.app.app_context():
        assert db.session.scalar(select(Message.sender).where(
            Message.text == "Yes, until 6pm.")) == "+14155550101"


def test_a_reply_needs_text_or_a_picture(live, staff):
    client, _user = staff
    live.app.test_client()
    with live.app.app_context():
        _reply_from("+14155550123", "hello")
    thread = thread_of(live.app, "+14155550123")
    answer = post_form(client, url("conversations.reply", public_id=thread.public_id),
                       {"text": "   "},
                       form_page=url("conversations.thread", public_id=thread.public_id))
    assert answer.status_code == 400
    assert "Write a reply or attach a picture." in answer.get_data(as_text=True)


def test_stop_from_a_customer_stops_every_later_send_at_once(live, simulator, staff):
    sim, _ = simulator
    sim.reply_delay = 0.05
    client, _user = staff
    send_from_compose(client, "+14155550556")
    wait_for(lambda: thread_of(live.app, "+14155550556") is not None, timeout=15)
    with live.app.app_context():
        assert db.session.get(OptOut, "+14155550556") is not None
    again = post_form(client, url("sending.compose"), {
        "sender": "+14155550100", "recipients": "+14155550556", "text": "One more thing",
        "media": "https://example.com/part.jpg"})
    assert again.status_code == 400 and "replied STOP" in again.get_data(as_text=True)
    thread = thread_of(live.app, "+14155550556")
    page = client.get(url("conversations.thread", public_id=thread.public_id)).get_data(
        as_text=True)
    assert 'id="opted-out"' in page and "reply keyword" in page
    refused = post_form(client, url("conversations.reply", public_id=thread.public_id),
                        {"text": "Sorry to see you go"},
                        form_page=url("conversations.thread", public_id=thread.public_id))
    assert refused.status_code == 400 and "replied STOP" in refused.get_data(as_text=True)
    assert not any(r.get("text") == "Sorry to see you go" for r in sim.requests)
    # START: they can be sent to again.
    sim.post_inbound(customer="+14155550556", our_number="+14155550100", text="start",
                     url=live.url + url("inbound.plivo_message"))
    with live.app.app_context():
        assert db.session.get(OptOut, "+14155550556") is None


def test_help_gets_the_one_configured_answer(live, simulator, staff):
    sim, _ = simulator
    sim.reply_delay = 0.05
    client, _user = staff
    send_from_compose(client, "+14155550557")
    wait_for(lambda: any(r.get("dst") == "14155550557" and r.get("type") == "sms"
                         for r in sim.requests), timeout=15)
    (answer,) = [r for r in sim.requests if r.get("dst") == "14155550557" and r["type"] == "sms"]
    assert "Reply STOP" in answer["text"] and answer["src"] == "14155550100"
    # HELP again at once: no second answer within 10 minutes (a loop costs one message).
    sim.post_inbound(customer="+14155550557", our_number="+14155550100", text="help",
                     url=live.url + url("inbound.plivo_message"))
    assert len([r for r in sim.requests if r.get("dst") == "14155550557"
                and r["type"] == "sms"]) == 1
    thread = thread_of(live.app, "+14155550557")
    assert not thread.needs_reply
    page = client.get(url("conversations.thread", public_id=thread.public_id)).get_data(
        as_text=True)
    assert "automatic answer" in page and "asked for HELP" in page


def test_inbox_filters_searches_and_pages(live, staff, make_user):
    client, user = staff
    with live.app.app_context():
        from webapp.conversations import inbound

        for n in range(55):
            inbound.record(inbound.parse_inbound({
                "From": f"1415555{n:04d}", "To": "14155550100", "Text": f"message number {n}",
                "MessageUUID": f"in-{n}"}), "v3")
        # 27 marked done, 3 left unread.
        for conversation in db.session.scalars(select(Conversation)):
            number = int(conversation.customer[-4:])
            conversation.needs_reply = number % 2 == 0
            conversation.unread = number < 3
        db.session.commit()
    save_message(live.app, created_by_id=user.id, recipient="+14155550007",
                 text="Your invoice 4471 is attached")
    first = client.get(url("conversations.inbox")).get_data(as_text=True)
    assert first.count('class="thread-item') == 50 and 'id="older"' in first
    older = re.search(r'href="([^"]+)" id="older"', first).group(1).replace("&amp;", "&")
    second = client.get(older).get_data(as_text=True)
    assert second.count('class="thread-item') == 5
    needing = client.get(url("conversations.inbox", show="needs-reply")).get_data(as_text=True)
    assert needing.count('class="thread-item') == 28
    by_digits = client.get(url("conversations.inbox", q="0042")).get_data(as_text=True)
    assert by_digits.count('class="thread-item') == 1 and "message number 42" in by_digits
    by_their_words = client.get(url("conversations.inbox", q="number 13")).get_data(as_text=True)
    assert by_their_words.count('class="thread-item') == 1
    by_our_words = client.get(url("conversations.inbox", q="invoice 4471")).get_data(as_text=True)
    assert by_our_words.count('class="thread-item') == 1 and "message number 7" in by_our_words
    assert client.get(url("conversations.inbox", after="garbage!!", show="nonsense")
                      ).status_code == 200
    badge = client.get(url("conversations.unread")).get_data(as_text=True)
    assert ">3<" in badge


def test_mark_done_and_needing_a_reply_are_audited(live, staff):
    client, _user = staff
    with live.app.app_context():
        from webapp.models import AuditEvent

        _reply_from("+14155550123", "hello")
    thread = thread_of(live.app, "+14155550123")
    page = url("conversations.thread", public_id=thread.public_id)
    done = post_form(client, url("conversations.mark", public_id=thread.public_id),
                     {"state": "done"}, form_page=page)
    assert done.status_code == 303 and not thread_of(live.app, "+14155550123").needs_reply
    post_form(client, url("conversations.mark", public_id=thread.public_id),
              {"state": "needs-reply"}, form_page=page)
    assert thread_of(live.app, "+14155550123").needs_reply
    bad = post_form(client, url("conversations.mark", public_id=thread.public_id),
                    {"state": "whatever"}, form_page=page)
    assert bad.status_code == 400
    with live.app.app_context():
        assert db.session.scalar(select(AuditEvent).where(
            AuditEvent.action == "conversation_marked")) is not None
    assert client.get(url("conversations.thread", public_id="nope")).status_code == 404
