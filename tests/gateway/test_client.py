"""The Plivo gateway: the real SDK over HTTP against the simulator, every outcome mapped."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import free_port
from webapp.config import SANDBOX_AUTH_ID, SANDBOX_AUTH_TOKEN
from webapp.gateway import client as gateway

ROOT = Path(__file__).resolve().parents[2]
MEDIA = "https://example.com/picture.jpg"
KEY_RE = re.compile(r'name="idempotency_key" type="hidden" value="([^"]+)"')

# ---- the gateway: real SDK over HTTP against the simulator -----------------------------------
@pytest.fixture
def gateway_config(simulator):
    _sim, url = simulator
    return gateway.GatewayConfig(SANDBOX_AUTH_ID, SANDBOX_AUTH_TOKEN, url, 1.0, 1.0)


def send(config, dst: str) -> str:
    return gateway.send_mms(config, src="+14155550100", dst=dst, text="hi", media_urls=[MEDIA],
                            media_ids=[], callback_url="http://127.0.0.1:9/webhooks/plivo/status")


@pytest.mark.integration
def test_gateway_sends_the_exact_request(simulator, gateway_config):
    sim, _ = simulator
    uuid = gateway.send_mms(gateway_config, src="+14155550100", dst="+14155550123", text="hello",
                            media_urls=[MEDIA], media_ids=["m-1"],
                            callback_url="https://dash.example.com/webhooks/plivo/status")
    assert uuid in sim.messages
    body = sim.requests[-1]
    assert body["src"] == "14155550100" and body["dst"] == "14155550123"
    assert body["type"] == "mms" and body["text"] == "hello"
    assert body["media_urls"] == [MEDIA] and body["media_ids"] == ["m-1"]
    assert body["url"] == "https://dash.example.com/webhooks/plivo/status"
    assert body["method"] == "POST"


@pytest.mark.integration
@pytest.mark.parametrize(("dst", "outcome", "status", "retry_after"), [
    ("+14155550400", gateway.PlivoRejected, 400, None),
    ("+14155550500", gateway.PlivoRetryable, 500, None),
    ("+14155550429", gateway.PlivoRetryable, 429, 1.0),
    ("+14155550408", gateway.PlivoAmbiguous, None, None),
])
def test_gateway_maps_every_failure(gateway_config, dst, outcome, status, retry_after):
    with pytest.raises(outcome) as caught:
        send(gateway_config, dst)
    assert caught.value.status == status
    assert getattr(caught.value, "retry_after", None) == retry_after
    if status == 400:
        assert "not a valid phone number" in caught.value.reason


@pytest.mark.integration
def test_gateway_connect_error_is_retryable():
    config = gateway.GatewayConfig(SANDBOX_AUTH_ID, SANDBOX_AUTH_TOKEN,
                                   f"http://127.0.0.1:{free_port()}", 0.5, 0.5)
    with pytest.raises(gateway.PlivoRetryable):
        send(config, "+14155550123")


@pytest.mark.integration
def test_gateway_wrong_credentials_are_rejected(simulator):
    _sim, url = simulator
    config = gateway.GatewayConfig(SANDBOX_AUTH_ID, "wrong-token", url, 1.0, 1.0)
    with pytest.raises(gateway.PlivoAccountRefused) as caught:
        send(config, "+14155550123")
    assert caught.value.status == 401
    assert caught.value.kind == "credentials"
