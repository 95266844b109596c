"""The Message URL: customers' messages kept once, signed or refused, keywords applied at
once, consent recorded for good (SQLite here; PostgreSQL in tests/stack)."""

from __future__ import annotations

import itertools

import pytest
from sqlalchemy import func, select

from tests.helpers import url
from webapp.config import SANDBOX_AUTH_TOKEN
from webapp.conversations import keywords
from webapp.extensions import db
from webapp.gateway.signatures import signed_headers
from webapp.messages import opt_outs
from webapp.models import ConsentEvent, Conversation, InboundMessage, OptOut, StatusEvent

PATH = url("inbound.plivo_message")
PUBLIC_URL = "http://127.0.0.1:5000" + PATH
_nonces = itertools.count(10**19)
_uuids = itertools.count(1)


def reply(text: str = "Is it still available?", customer: str = "14155550123",
          ours: str = "14155550100", uuid: str | None = None, **extra) -> dict[str, str]:
    return {"From": customer, "To": ours, "Type": "sms", "Text": text,
            "MessageUUID": uuid or f"in-{next(_uuids)}", "Units": "1", "TotalRate": "0",
            "TotalAmount": "0", "MediaCount": "0", **extra}


def post_signed(client, data: dict, token: str = SANDBOX_AUTH_TOKEN, nonce: str | None = None,
                url: str = PUBLIC_URL):
    headers = signed_headers("POST", url, data, token, nonce or str(next(_nonces)))
    return client.post(PATH, data=data, headers=headers)


def count(app, model) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(model))


def test_a_signed_reply_is_kept_in_its_thread_and_marks_it(app, client):
    answer = post_signed(client, reply())
    assert answer.status_code == 200 and answer.json["result"] == "stored"
    with app.app_context():
        message = db.session.scalar(select(InboundMessage))
        thread = db.session.get(Conversation, message.conversation_id)
        assert (message.sender, message.recipient) == ("+14155550123", "+14155550100")
        assert message.text == "Is it still available?" and message.signature_scheme == "v3"
        assert thread.customer == "+14155550123" and thread.our_number == "+14155550100"
        assert thread.unread and thread.needs_reply
        assert thread.last_text == "Is it still available?" and thread.last_direction == "in"


def test_plivo_retrying_stores_it_once(app, client):
    data = reply(uuid="same-uuid")
    assert post_signed(client, data).json["result"] == "stored"
    # A retry comes with a fresh nonce; the same nonce again is a retry too.
    assert post_signed(client, data).json["result"] == "duplicate"
    assert count(app, InboundMessage) == 1


def test_the_same_nonce_with_the_same_body_is_a_duplicate(app, client):
    data = reply()
    assert post_signed(client, data, nonce="4242").json["result"] == "stored"
    assert post_signed(client, data, nonce="4242").json["result"] == "duplicate"
    assert count(app, InboundMessage) == 1


def test_a_replayed_nonce_with_another_body_is_refused(app, client):
    assert post_signed(client, reply("first"), nonce="999").status_code == 200
    forged_body = reply("second, sent by someone else")
    headers = signed_headers("POST", PUBLIC_URL, reply("first"), SANDBOX_AUTH_TOKEN, "999")
    # The attacker kept the headers of the first and changed the body: V3 covers the
    # body, so this fails the signature; a V3 valid for the new body needs the token.
    assert client.post(PATH, data=forged_body, headers=headers).status_code == 403
    # The same nonce, validly signed over another body (as a replay of captured
    # signature material cannot be, but a nonce must never be reused): refused.
    replay = post_signed(client, forged_body, nonce="999")
    assert replay.status_code == 403 and "nonce" in replay.json["detail"]
    assert count(app, InboundMessage) == 1


def test_forged_and_unsigned_messages_are_refused_and_counted(app, client):
    assert post_signed(client, reply(), token="not-the-token").status_code == 403
    assert client.post(PATH, data=reply()).status_code == 403
    assert count(app, InboundMessage) == 0 and count(app, Conversation) == 0
    with app.app_context():  # kept as refused samples, applied to nothing
        assert db.session.scalar(select(func.count()).select_from(StatusEvent)
                                 .where(StatusEvent.accepted.is_(False))) == 2


def test_unsigned_traffic_is_throttled_per_address(app, client):
    codes = [client.post(PATH, data=reply()).status_code for _ in range(35)]
    assert codes[:30] == [403] * 30 and set(codes[30:]) == {429}


def test_signed_for_another_url_is_refused(client):
    assert post_signed(client, reply(), url="http://evil.example" + PATH).status_code == 403


@pytest.mark.parametrize("method", ["get", "put", "delete"])
def test_post_only(client, method):
    answer = getattr(client, method)(PATH)
    assert answer.status_code == 405 and "POST" in answer.headers["Allow"]


@pytest.mark.parametrize(("change", "problem"), [
    ({"MessageUUID": ""}, "MessageUUID"),
    ({"From": "not a number"}, "From"),
    ({"To": "12"}, "To"),
    ({"Type": "fax"}, "Type"),
    ({"Text": "x" * 5001}, "Text"),
    ({"MediaCount": "²"}, "MediaCount"),
    ({"Media0": "javascript:alert(1)"}, "media"),
    ({f"Media{i}": f"https://media.plivo.com/{i}" for i in range(11)}, "at most 10"),
])
def test_malformed_messages_get_a_clear_400_and_write_nothing(app, client, change, problem):
    answer = post_signed(client, reply(**change) if "Text" not in change else
                         {**reply(), **change})
    assert answer.status_code in (400, 413), answer.get_data(as_text=True)
    if answer.status_code == 400:
        assert problem.lower() in answer.json["detail"].lower()
    assert count(app, InboundMessage) == 0 and count(app, Conversation) == 0


def test_an_oversized_body_is_refused(client):
    answer = client.post(PATH, data={"Text": "x" * 40_000})
    assert answer.status_code == 413


@pytest.mark.parametrize("first", [0, 1])
def test_media_numbered_from_0_or_1_are_both_read_in_order(app, client, first):
    data = reply("", Type="mms", MediaCount="2",
                 **{f"Media{first}": "https://media.plivo.com/a",
                    f"Media{first + 1}": "https://media.plivo.com/b"})
    assert post_signed(client, data).status_code == 200
    with app.app_context():
        message = db.session.scalar(select(InboundMessage))
        assert [m["url"] for m in message.media] == ["https://media.plivo.com/a",
                                                      "https://media.plivo.com/b"]
        assert all(m["state"] == "waiting" for m in message.media)
        assert db.session.scalar(select(Conversation.last_text)) == "📷 2 pictures"


@pytest.mark.parametrize(("text", "expected"), [
    ("STOP", "optout"), ("stop", "optout"), (" Stop! ", "optout"), ("STOP ALL", "optout"),
    ("stopall", "optout"), ("Unsubscribe.", "optout"), ("UNSUB", "optout"),
    ("cancel", "optout"), ("End", "optout"), ("QUIT", "optout"), ("revoke", "optout"),
    ("opt out", "optout"), ("Opt-Out", "optout"), ("OPTOUT", "optout"),
    ("START", "optin"), ("unstop", "optin"), ("Help?", "help"), ("HELP", "help"),
    ("please stop texting me at night", None), ("stopping by at 5", None), ("", None),
])
def test_keywords(text, expected):
    assert keywords.classify(text) == expected


@pytest.mark.parametrize(("intent", "expected"), [
    ("optout", "optout"), ("OPTIN", "optin"), ("help", "help"), ("unknown", None)])
def test_plivo_intent_counts_whatever_the_words(intent, expected):
    assert keywords.classify("Whatever they wrote", intent) == expected


def test_stop_opts_out_at_once_and_start_opts_back_in_with_consent_kept(app, client):
    assert post_signed(client, reply("Stop.")).status_code == 200
    with app.app_context():
        assert db.session.get(OptOut, "+14155550123") is not None
        thread = db.session.scalar(select(Conversation))
        assert thread.unread and not thread.needs_reply  # the system answered it
    assert post_signed(client, reply("STOP")).status_code == 200  # again: no new change
    assert post_signed(client, reply("Start")).status_code == 200
    with app.app_context():
        assert db.session.get(OptOut, "+14155550123") is None
        history = opt_outs.consent_history("+14155550123")
        assert [(e.change, e.source, e.words) for e in history] == [
            ("in", "reply keyword", "Start"), ("out", "reply keyword", "Stop.")]
        assert all(e.our_number == "+14155550100" and e.message_public_id for e in history)


def test_intent_optout_is_recorded_as_plivos(app, client):
    post_signed(client, reply("Please remove me", MessageIntent="optout"))
    with app.app_context():
        (only,) = opt_outs.consent_history("+14155550123")
        assert (only.change, only.source) == ("out", "Plivo intent")


def test_error_200_and_admin_changes_are_consent_events_too(app, make_user):
    admin = make_user("admin@example.com", "admin")
    with app.app_context():
        opt_outs.note("+14155550199", "+14155550100", "pub-1")
        db.session.commit()
        assert opt_outs.remove("+14155550199", admin)
        assert opt_outs.add("+14155550199", admin)
        history = opt_outs.consent_history("+14155550199")
        assert [(e.change, e.source) for e in history] == [
            ("out", "admin"), ("in", "admin"), ("out", "Plivo error 200")]
        assert history[0].actor_id == admin.id
    assert count(app, ConsentEvent) == 3


def test_help_queues_a_follow_up(app, client):
    post_signed(client, reply("help"))
    queue = app.extensions["task_queue"].huey
    assert queue.pending_count() == 1


def test_a_thread_takes_the_name_a_list_send_gave_the_number(app, client, make_user):
    from tests.helpers import save_message
    from webapp.models import Batch

    user = make_user()
    with app.app_context():
        batch = Batch(draft_token="t" * 20, created_by_id=user.id, name="list.csv",
                      sender="+14155550100", text="hi", media=[], total=1, status="finished")
        db.session.add(batch)
        db.session.commit()
        batch_id = batch.id
    save_message(app, created_by_id=user.id, recipient="+14155550123", batch_id=batch_id,
                 fields={"Name": "Ana Lima", "order": "4471"})
    post_signed(client, reply())
    with app.app_context():
        assert db.session.scalar(select(Conversation.name)) == "Ana Lima"
