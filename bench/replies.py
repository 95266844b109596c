"""Customers' replies (issue 35): the inbound webhook's throughput against the floor (the
same method as the status callbacks: pre-signed bodies, wrk, alternating slices), every
message kept once; and the conversations page over 100,000 threads beside a history of a
million messages, p95 against the history page's p95."""

from __future__ import annotations

import datetime as dt
import random
import uuid
from concurrent.futures import ThreadPoolExecutor

import requests
from sqlalchemy import bindparam, create_engine, text

from tests.helpers import url
from webapp.gateway.signatures import signed_headers
from webapp.models import UTCDateTime, reversed_digits

from .deployments import Deployment, seeded_recipient
from .load import WRK_CYCLE, alternate, wrk
from .measurements import Row, floor_rows


def measure_inbound(dep: Deployment, rows: list[Row], seconds: float, messages: int) -> None:
    """Signed replies from `messages // 4` customers, each a new MessageUUID, posted by wrk
    as fast as the dashboard takes them; then every one again (Plivo's retries)."""
    path = url("inbound.plivo_message")
    signed_url = dep.env["PUBLIC_BASE_URL"] + path
    rng = random.Random(35)
    signed = []
    for i in range(messages):
        params = {"From": f"1604555{i % max(1, messages // 4) % 10_000:04d}",
                  "To": "14155550100", "Type": "sms", "Text": f"bench reply {i}: still open?",
                  "MessageUUID": f"bench-in-{i}", "Units": "1", "TotalAmount": "0.00000",
                  "MediaCount": "0"}
        headers = signed_headers("POST", signed_url, params, dep.env["PLIVO_AUTH_TOKEN"],
                                 str(rng.randrange(10**19, 10**20)))
        signed.append(({k: v for k, v in headers.items() if "V3" in k}, params))
    data = dep.tmp / "inbound.tsv"
    data.write_text("".join(
        "|".join(f"{k}:{v}" for k, v in headers.items()) + "\t"
        + "&".join(f"{k}={requests.utils.quote(v, safe='')}" for k, v in params.items()) + "\n"
        for headers, params in signed))
    sent = 0

    def inbound_slice(slice_seconds: float) -> dict:
        nonlocal sent
        got = wrk(dep.url + path, slice_seconds, 16, WRK_CYCLE, str(data), str(sent))
        sent += got["requests"] + 200
        return got

    got = alternate({"floor": lambda s: wrk(dep.url + url("livez"), s, 16, ""),
                     "inbound": inbound_slice}, seconds)
    floor, report = got["floor"], got["inbound"]
    rows.extend(floor_rows(dep, floor, "inbound"))

    def again(item) -> int:
        headers, params = item
        return requests.post(dep.url + path, data=params, headers=headers,
                             timeout=30).status_code

    with ThreadPoolExecutor(8) as pool:  # every message once more: none lost, none twice
        retry_errors = sum(1 for code in pool.map(again, signed) if code != 200)
    engine = create_engine(dep.env["DATABASE_URL"])
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT count(*), count(DISTINCT plivo_uuid) FROM "
                                   "inbound_messages WHERE plivo_uuid LIKE 'bench-in-%'")).one()
    engine.dispose()
    ratio = report["rps"] / floor["rps"]
    rows.append(Row(dep.name, "inbound replies (V3-signed)", report["rps"], "req/s",
                    ">= 0.25 x floor", ratio, ratio >= 0.25))
    rows.append(Row(dep.name, "inbound replies p99", report["p99_ms"], "ms", "<= 100 ms", None,
                    report["p99_ms"] <= 100))
    errors = report["non2xx"] + report["socket_errors"] + retry_errors
    rows.append(Row(dep.name, "inbound replies errors", errors, "responses", "0", None,
                    errors == 0))
    wrong = (messages - stored[0]) + (stored[0] - stored[1])
    rows.append(Row(dep.name, "inbound replies lost or stored twice", wrong, "",
                    f"0 (of {messages:,})", None, wrong == 0))


def seed_conversations(database_url: str, threads: int, per_thread: int = 2) -> None:
    """`threads` conversations with `per_thread` replies each, their customers among the
    seeded history's recipients (so a thread also shows our messages to them)."""
    engine = create_engine(database_url)
    start = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    span = 90 * 86_400
    with engine.begin() as conn:
        conv = text(
            "INSERT INTO conversations (public_id, customer, customer_reversed, our_number, "
            "last_activity_at, last_text, last_direction, needs_reply, unread, created_at) "
            "VALUES (:public_id, :customer, :reversed, '+14155550100', :at, :last, 'in', "
            ":needs, :unread, :at)").bindparams(bindparam("at", type_=UTCDateTime()))
        batch = []
        for i in range(threads):
            customer = seeded_recipient(i)
            batch.append({"public_id": uuid.uuid4().hex[:16], "customer": customer,
                          "reversed": reversed_digits(customer),
                          "at": start + dt.timedelta(seconds=i * span // threads),
                          "last": f"seeded reply {i}", "needs": i % 3 == 0,
                          "unread": i % 50 == 0})
            if len(batch) == 20_000:
                conn.execute(conv, batch)
                batch.clear()
        if batch:
            conn.execute(conv, batch)
        ids = dict(conn.execute(text("SELECT customer, id FROM conversations")).all())
        reply = text(
            "INSERT INTO inbound_messages (public_id, plivo_uuid, conversation_id, sender, "
            "recipient, kind, text, media, signature_scheme, received_at) VALUES (:public_id, "
            ":uuid, :conversation, :sender, '+14155550100', 'sms', :text, '[]', 'v3', :at)"
        ).bindparams(bindparam("at", type_=UTCDateTime()))
        batch = []
        for i in range(threads):
            customer = seeded_recipient(i)
            for n in range(per_thread):
                batch.append({"public_id": uuid.uuid4().hex[:16], "uuid": f"seed-in-{i}-{n}",
                              "conversation": ids[customer], "sender": customer,
                              "text": f"seeded reply {i}.{n}: is it still available?",
                              "at": start + dt.timedelta(seconds=i * span // threads - n)})
                if len(batch) == 20_000:
                    conn.execute(reply, batch)
                    batch.clear()
        if batch:
            conn.execute(reply, batch)
    engine.dispose()


def measure_conversations(dep: Deployment, rows: list[Row], seconds: float, threads: int,
                          session) -> None:
    """The inbox (first page, needs-reply, a number search) and one busy thread, against
    the unfiltered history page, p95 against p95 in alternating slices. `session`: the
    history's signed-in session (measure_history seeded its messages)."""
    seed_conversations(dep.env["DATABASE_URL"], threads)
    engine = create_engine(dep.env["DATABASE_URL"])
    with engine.connect() as conn:
        busy = conn.execute(text("SELECT public_id FROM conversations ORDER BY id LIMIT 1")
                            ).scalar_one()
    engine.dispose()
    cookie = {"Cookie": session.cookie_header()}
    last4 = seeded_recipient(threads // 2)[-4:]
    got = alternate({
        "history": lambda s: wrk(dep.url + url("history.history"), s, 16, "", headers=cookie),
        "inbox": lambda s: wrk(dep.url + url("conversations.inbox"), s, 16, "", headers=cookie),
        "needs": lambda s: wrk(dep.url + url("conversations.inbox", show="needs-reply"), s, 16,
                               "", headers=cookie),
        "number": lambda s: wrk(dep.url + url("conversations.inbox", q=last4), s, 16, "",
                                headers=cookie),
        "thread": lambda s: wrk(dep.url + url("conversations.thread", public_id=busy), s, 16,
                                "", headers=cookie),
    }, seconds)
    base = got["history"]
    rows.append(Row(dep.name, "history first page p95 (alternating with conversations)",
                    base["p95_ms"], "ms"))
    for name, label in (("inbox", f"conversations, first page ({threads:,} threads)"),
                        ("needs", "conversations, needs a reply"),
                        ("number", "conversations, a number's last 4 digits"),
                        ("thread", "one thread (our messages and theirs)")):
        ratio = got[name]["p95_ms"] / base["p95_ms"]
        rows.append(Row(dep.name, f"{label}, p95", got[name]["p95_ms"], "ms",
                        "<= 2 x history p95", ratio, ratio <= 2))
    errors = sum(r["non2xx"] + r["socket_errors"] for r in got.values())
    rows.append(Row(dep.name, "conversations non-2xx", errors, "responses", "0", None,
                    errors == 0))
