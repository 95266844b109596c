"""Customers' replies on the production stack (PostgreSQL, gunicorn with 3 workers): 1,000
signed messages posted at once, with Plivo's retries among them, each stored once and none
lost; forged and replayed ones refused and nothing written."""

from __future__ import annotations

import itertools
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from sqlalchemy import create_engine, text

from tests.helpers import url
from webapp.config import SANDBOX_AUTH_TOKEN
from webapp.gateway.signatures import signed_headers

pytestmark = pytest.mark.stack
_nonces = itertools.count(10**19)


def _post(base: str, data: dict, nonce: str | None = None, token: str = SANDBOX_AUTH_TOKEN,
          session: requests.Session | None = None) -> int:
    target = base + url("inbound.plivo_message")
    headers = signed_headers("POST", target, data, token, nonce or str(next(_nonces)))
    for _ in range(3):
        try:
            return (session or requests).post(target, data=data, headers=headers,
                                              timeout=30).status_code
        except requests.ConnectionError:
            continue
    return 0


def _message(n: int) -> dict[str, str]:
    return {"From": f"1604555{n % 300:04d}", "To": "14155550100" if n % 2 else "14155550101",
            "Type": "sms", "Text": f"reply number {n}", "MessageUUID": f"stack-in-{n}",
            "Units": "1", "TotalAmount": "0.00000", "MediaCount": "0"}


def test_a_thousand_replies_at_once_are_each_stored_once(production):
    messages = [_message(n) for n in range(1000)]
    retries = [messages[n] for n in range(0, 1000, 10)]  # Plivo posting again, new nonce

    local = threading.local()

    def post(data):
        if not hasattr(local, "session"):
            local.session = requests.Session()
        return _post(production.url, data, session=local.session)

    with ThreadPoolExecutor(32) as pool:
        codes = list(pool.map(post, messages + retries))
    assert codes.count(200) == len(codes), sorted(set(codes))
    engine = create_engine(production.env["DATABASE_URL"])
    with engine.connect() as db:
        stored = db.execute(text("SELECT count(*), count(DISTINCT plivo_uuid) FROM "
                                 "inbound_messages WHERE plivo_uuid LIKE 'stack-in-%'")).one()
        assert tuple(stored) == (1000, 1000)
        pairs = {(f"+1604555{n % 300:04d}", "+14155550100" if n % 2 else "+14155550101")
                 for n in range(1000)}
        threads = db.execute(text("SELECT customer, our_number FROM conversations "
                                  "WHERE customer LIKE '+1604555%'")).all()
        assert sorted(map(tuple, threads)) == sorted(pairs)  # one thread per pair, no twins
        unfiled = db.execute(text("SELECT count(*) FROM inbound_messages m LEFT JOIN "
                                  "conversations c ON c.id = m.conversation_id "
                                  "WHERE c.id IS NULL")).scalar()
        assert unfiled == 0
    engine.dispose()


def test_forged_replayed_and_repeated_on_postgresql(production):
    engine = create_engine(production.env["DATABASE_URL"])
    first = _message(5000) | {"Text": "STOP"}
    assert _post(production.url, first, nonce="5550001") == 200
    assert _post(production.url, first, nonce="5550001") == 200  # a retry: same nonce, body
    other = _message(5001)
    assert _post(production.url, other, nonce="5550001") == 403  # replayed nonce
    assert _post(production.url, other, token="not-the-token") == 403  # forged
    assert requests.post(production.url + url("inbound.plivo_message"), data=other,
                         timeout=10).status_code == 403  # unsigned
    with engine.connect() as db:
        assert db.execute(text("SELECT count(*) FROM inbound_messages WHERE plivo_uuid IN "
                               "('stack-in-5000', 'stack-in-5001')")).scalar() == 1
        number = "+1604555" + f"{5000 % 300:04d}"
        assert db.execute(text("SELECT count(*) FROM opt_outs WHERE number = :n"),
                          {"n": number}).scalar() == 1
        assert db.execute(text("SELECT count(*) FROM consent_events WHERE number = :n AND "
                               "change = 'out'"), {"n": number}).scalar() == 1
    engine.dispose()
