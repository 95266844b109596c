"""A worker's part of a reply: its pictures fetched only from Plivo (or the simulator the
API points at), capped as they arrive, checked by content; what cannot be fetched is shown
as such; the simulator keeps Plivo's own opt-out."""

from __future__ import annotations

import pytest
import requests
from sqlalchemy import select

from tests.conftest import login
from tests.helpers import url
from webapp.config import SANDBOX_AUTH_ID, SANDBOX_AUTH_TOKEN
from webapp.conversations import followup, inbound
from webapp.extensions import db
from webapp.gateway import inbound_media
from webapp.gateway.client import GatewayConfig
from webapp.gateway.simulator.replies import sample_picture
from webapp.models import InboundMessage, Media

API = GatewayConfig(SANDBOX_AUTH_ID, SANDBOX_AUTH_TOKEN, "http://127.0.0.1:8025")


@pytest.mark.parametrize(("address", "fetched"), [
    ("https://media.plivo.com/Account/x/Media/y", True),
    ("https://api.plivo.com/v1/Account/x/Message/y/Media/z/", True),
    ("https://plivo.com/a.jpg", True),
    ("http://media.plivo.com/a.jpg", False),  # not https
    ("https://plivo.com.evil.example/a.jpg", False),
    ("https://evilplivo.com/a.jpg", False),
    ("https://169.254.169.254/latest/meta-data", False),
    ("http://127.0.0.1:8025/v1/Account/x/Message/y/Media/z/", True),  # the simulator itself
    ("http://127.0.0.1:8026/", False),  # another port on the same machine
    ("http://localhost:8025/", False),
])
def test_only_plivos_hosts_are_fetched(address, fetched):
    assert inbound_media.allowed(address, API) is fetched


def test_a_refused_host_is_never_contacted():
    with pytest.raises(inbound_media.MediaUnavailable, match="not one of Plivo's"):
        inbound_media.fetch("https://evil.example/a.jpg", API, 1024)


@pytest.mark.integration
def test_pictures_come_from_the_simulator_behind_credentials_and_are_capped(simulator):
    sim, base = simulator
    sim.base_url = base
    config = GatewayConfig(SANDBOX_AUTH_ID, SANDBOX_AUTH_TOKEN, base)
    picture = sample_picture()
    sim.inbound_media["m1/p1"] = (picture, "image/jpeg")
    address = f"{base}/v1/Account/{SANDBOX_AUTH_ID}/Message/m1/Media/p1/"
    assert requests.get(address, timeout=5).status_code == 401  # credentials asked for
    got = inbound_media.fetch(address, config, 7 * 1024 * 1024)
    assert got.data == picture and got.content_type == "image/jpeg"
    with pytest.raises(inbound_media.MediaUnavailable, match="over the"):
        inbound_media.fetch(address, config, len(picture) - 1)
    with pytest.raises(inbound_media.MediaUnavailable, match="404"):
        inbound_media.fetch(address.replace("p1", "p2"), config, 10**6)


@pytest.mark.integration
def test_a_picture_that_cannot_be_fetched_says_so_and_admins_see_why(live, simulator,
                                                                      make_user):
    sim, base = simulator
    sim.base_url = base
    sim.inbound_media["m2/good"] = (sample_picture(), "image/jpeg")
    sim.inbound_media["m2/text"] = (b"not a picture at all", "image/jpeg")
    with live.app.app_context():
        inbound.record(inbound.parse_inbound({
            "From": "14155550123", "To": "14155550100", "Type": "mms", "Text": "",
            "MessageUUID": "with-pictures",
            "Media0": f"{base}/v1/Account/{SANDBOX_AUTH_ID}/Message/m2/Media/good/",
            "Media1": f"{base}/v1/Account/{SANDBOX_AUTH_ID}/Message/m2/Media/text/",
            "Media2": "https://evil.example/tracker.gif"}), "v3")
        message = db.session.scalar(select(InboundMessage))
        followup.after_inbound(message.public_id)  # what the queue runs (immediate here)
        db.session.expire_all()
        message = db.session.scalar(select(InboundMessage))
        states = [item["state"] for item in message.media]
        assert states == ["stored", "failed", "failed"]
        assert "not one of Plivo's" in message.media[2]["reason"]
        stored = db.session.scalar(select(Media).where(Media.sha256 == message.media[0]["sha256"]))
        assert stored.thumbnail and stored.uploaded_by_id  # kept as the system's
        thread = message.conversation_id
        from webapp.models import Conversation

        public_id = db.session.get(Conversation, thread).public_id
        followup.after_inbound(message.public_id)  # again: nothing fetched twice
        assert db.session.scalar(select(db.func.count()).select_from(Media)) == 1
    staff, admin = make_user("s@example.com"), make_user("a@example.com", "admin")
    for person, sees_why in ((staff, False), (admin, True)):
        client = live.app.test_client()
        login(client, person.email)
        html = client.get(url("conversations.thread", public_id=public_id)).get_data(as_text=True)
        assert html.count("picture not available") == 2
        assert ("https://evil.example/tracker.gif" in html) is sees_why
        library = client.get(url("pictures.library")).get_data(as_text=True)
        assert message.media[0]["sha256"][:12] not in library  # not the team's library


@pytest.mark.integration
def test_the_simulator_refuses_later_sends_after_stop_as_plivo_does(live, simulator):
    sim, _ = simulator
    sim.post_inbound(customer="+14155550199", our_number="+14155550100", text="STOP",
                     url=live.url + url("inbound.plivo_message"))
    auth = (SANDBOX_AUTH_ID, SANDBOX_AUTH_TOKEN)
    body = {"src": "14155550100", "dst": "14155550199", "type": "sms", "text": "hi",
            "url": live.url + url("callbacks.plivo_status")}
    send = f"{sim.base_url}/v1/Account/{SANDBOX_AUTH_ID}/Message/"
    first = requests.post(send, json=body, auth=auth, timeout=5).json()["message_uuid"][0]
    second = requests.post(send, json={**body, "text": "again"}, auth=auth,
                           timeout=5).json()["message_uuid"][0]
    import time

    time.sleep(0.5)
    assert sim.messages[first].state == "delivered"  # the one confirmation Plivo allows
    assert (sim.messages[second].state, sim.messages[second].error_code) == ("failed", "200")


@pytest.mark.integration
def test_the_optional_confirmation_after_stop_goes_once(make_app, simulator):
    from tests.conftest import LiveServer, free_port

    sim, sim_url = simulator
    port = free_port()
    app = make_app(PLIVO_API_URL=sim_url, PUBLIC_BASE_URL=f"http://127.0.0.1:{port}",
                   TASK_QUEUE_URL="immediate", OPT_OUT_REPLY_TEXT="You will get no more "
                   "messages from us. Reply START to come back.")
    server = LiveServer(app, port)
    try:
        for _ in range(2):  # STOP, then STOP again
            sim.post_inbound(customer="+14155550177", our_number="+14155550100", text="STOP",
                             url=server.url + url("inbound.plivo_message"))
        confirmations = [r for r in sim.requests if r.get("dst") == "14155550177"]
        assert len(confirmations) == 1 and confirmations[0]["type"] == "sms"
        assert confirmations[0]["text"].startswith("You will get no more")
    finally:
        server.stop()
