"""The dashboard as operators run it: PostgreSQL, Redis, gunicorn with 3 workers, 2 queue workers."""

from __future__ import annotations

import os
import random
import re
import signal
import time
from collections import Counter

import pytest
import requests
from sqlalchemy import create_engine, text

from tests.helpers import csrf_token_in, url, wrong_passwords_at_once

pytestmark = pytest.mark.stack

PASSWORD = "a long stack password"
KEY_RE = re.compile(r'name="idempotency_key" type="hidden" value="([^"]+)"')


def session_for(stack, email: str) -> requests.Session:
    created = stack.flask("users", "create", email, "--password-stdin", stdin=PASSWORD + "\n")
    assert created.returncode == 0, created.stderr
    browser = requests.Session()
    token = csrf_token_in(browser.get(stack.url + url("auth.login")).text)
    response = browser.post(stack.url + url("auth.login"), allow_redirects=False,
                            data={"csrf_token": token, "email": email, "password": PASSWORD})
    assert response.status_code == 303
    return browser


def with_retry(request, *args, **kwargs) -> requests.Response:
    """Like a person reloading, or pressing Send again, after a dropped connection (a killed
    web worker): safe for the compose POST because it repeats the same idempotency key."""
    for _ in range(5):
        try:
            return request(*args, allow_redirects=False, timeout=30, **kwargs)
        except requests.RequestException:
            time.sleep(0.5)
    raise AssertionError("the dashboard never answered")


def test_migrations_leave_no_drift_on_postgresql(production):
    result = production.flask("db", "check")
    assert result.returncode == 0, result.stderr
    assert "No new upgrade operations detected" in result.stdout + result.stderr


def test_two_hundred_messages_survive_killed_workers(production):
    browser = session_for(production, "bulk@example.com")
    numbers = [f"+1415555{n:04d}" for n in range(200, 400)]
    for batch in range(8):
        page = with_retry(browser.get, production.url + url("sending.compose")).text
        data = {"csrf_token": csrf_token_in(page),
                "idempotency_key": KEY_RE.search(page).group(1), "sender": "+14155550100",
                "recipients": "\n".join(numbers[batch * 25:(batch + 1) * 25]),
                "text": f"batch {batch}", "media": "https://example.com/a.jpg"}
        response = with_retry(browser.post, production.url + url("sending.compose"), data=data)
        assert response.status_code == 303, response.text[:300]
        if batch == 3:
            # Mid-run: SIGKILL one web worker (gunicorn replaces it) and one queue
            # worker (its tasks in flight die with it; start another, as a supervisor would).
            os.kill(production.web_worker_pids()[0], signal.SIGKILL)
            victim = production.workers[0]
            victim.send_signal(signal.SIGKILL)
            victim.wait()
            production.start_worker(threads=8)

    engine = create_engine(production.env["DATABASE_URL"])
    deadline = time.monotonic() + 90
    while True:
        with engine.connect() as conn:
            counts = dict(conn.execute(text(
                "SELECT status, count(*) FROM messages m JOIN users u ON u.id = m.created_by_id "
                "WHERE u.email = 'bulk@example.com' GROUP BY status")).all())
        if not {"pending", "queued", "sent"} & set(counts) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT recipient, status FROM messages m JOIN users u ON u.id = m.created_by_id "
            "WHERE u.email = 'bulk@example.com'")).all()
    engine.dispose()
    assert len(rows) == 200, "no message lost, none created twice"
    statuses = Counter(status for _, status in rows)
    assert set(statuses) <= {"delivered", "unknown"}, statuses
    plivo_saw = Counter(r["dst"] for r in production.sim_requests())
    assert all(count == 1 for count in plivo_saw.values()), "a message was sent twice"
    for recipient, status in rows:
        if status == "delivered":
            assert plivo_saw[recipient.lstrip("+")] == 1
        else:
            # Left open by the killed worker before Plivo heard of it: shown as Unknown,
            # never resent blindly.
            assert plivo_saw[recipient.lstrip("+")] == 0
    print(f"statuses after the kills: {dict(statuses)}")
    assert statuses["delivered"] >= 190


def test_send_limit_is_shared_by_every_web_worker(production):
    browser = session_for(production, "limited@example.com")
    token = csrf_token_in(browser.get(production.url + url("sending.compose")).text)
    codes = Counter()
    for _ in range(100):
        forged = f"{random.randint(1, 223)}.{random.randint(0, 255)}.0.{random.randint(1, 254)}"
        response = browser.post(production.url + url("sending.compose"), allow_redirects=False,
                                data={"csrf_token": token, "recipients": ""},
                                headers={"X-Forwarded-For": forged})
        codes[response.status_code] += 1
    assert codes[429] == 90 and codes[400] == 10, codes


def test_concurrent_wrong_passwords_for_one_account_are_counted_across_workers(production):
    """12 guesses at once, spread over three gunicorn workers sharing Redis: the account's
    limit is counted before each check, so at most 5 are checked (6 of 20 slipped through
    when the count came after). Runs before the next test, which spends this address's
    per-minute login budget."""
    session_for(production, "target@example.com")
    codes = wrong_passwords_at_once(production.url, "target@example.com", 12)
    assert codes.count(200) == 5 and codes.count(429) == 7, codes


def test_login_limit_ignores_forged_forwarded_for(production):
    browser = requests.Session()
    token = csrf_token_in(browser.get(production.url + url("auth.login")).text)
    codes = Counter()
    for i in range(30):
        forged = f"203.0.113.{i + 1}"
        response = browser.post(production.url + url("auth.login"), allow_redirects=False, data={
            "csrf_token": token, "email": f"nobody{i}@example.com", "password": "wrong" * 3},
            headers={"X-Forwarded-For": forged})
        codes[response.status_code] += 1
    # 20 per minute per address, counted across the three gunicorn workers, from
    # 127.0.0.1 whatever the forged header says. (The first test's login spent one.)
    assert codes[429] >= 10 and codes[200] <= 20, codes
