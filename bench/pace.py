"""Plivo's real pace (issue 34): a list send against the simulator's queue, which dispatches
at the account's MPS and each number's limit and expires what waits. Measured from what the
simulator received: nothing expired, nothing sent twice, Plivo's request window and each
number's limit kept, the pace achieved, the preview's ETA against the real duration, a
colleague's single sends meanwhile; at a slow pace, Pause and Cancel."""

from __future__ import annotations

import re
import time
from bisect import bisect_left
from collections import defaultdict

import requests
from sqlalchemy import create_engine, text

from tests.helpers import csrf_token_in, url

from .deployments import Deployment
from .measurements import Row, batch_csv

POOL = [f"+1415555{n:04d}" for n in range(200, 205)]
DURATION_RE = re.compile(r'id="duration" data-seconds="(\d+)"')


def pace_settings(mps: float, numbers: list[str], per_second: float, expiry: int) -> dict:
    """What the dashboard is told: the account's MPS and each number's limit (a registered
    number's throughput is not in the Number API: it is set by hand, as in production)."""
    return {"SIMULATOR_PACE": "real", "PLIVO_MMS_MPS": f"{mps:g}",
            "PLIVO_SENDER_NUMBERS": ",".join(numbers),
            "PLIVO_NUMBER_LIMITS": ",".join(f"{n}={per_second:g}/s" for n in numbers),
            "PLIVO_MESSAGE_EXPIRY_SECONDS": str(expiry)}


def simulator_options(mps: float, numbers: list[str], per_second: float, expiry: int) -> list:
    options = ["--rate-per-5s", "300", "--mms-mps", f"{mps:g}", "--expiry-seconds", str(expiry)]
    for number in numbers:
        options += ["--number", f"{number.lstrip('+')}=local:registered:{per_second:g}/s"]
    return options


def most_within(times: list[float], window: float) -> int:
    """The most of `times` (sorted) in any half-open window of `window` seconds."""
    return max((bisect_left(times, t + window) - i for i, t in enumerate(times)), default=0)


def _upload(dep: Deployment, session, count: int, sender: str) -> tuple[str, str, int]:
    form = session.get(dep.url + url("lists.new_batch")).text
    answer = session.post(dep.url + url("lists.new_batch"), allow_redirects=False, data={
        "csrf_token": csrf_token_in(form), "sender": sender,
        "text": "Hi ((name)), your order is ready.", "media": "https://example.com/a.jpg"},
        files={"list_file": ("customers.csv", batch_csv(count), "text/csv")})
    if answer.status_code != 303:
        raise RuntimeError(f"list upload answered {answer.status_code}: {answer.text[:300]}")
    preview_url = dep.url + answer.headers["Location"]
    preview = session.get(preview_url).text
    eta = DURATION_RE.search(preview)
    if not eta:
        raise RuntimeError("the preview says nothing of how long the send takes")
    return preview_url, csrf_token_in(preview), int(eta.group(1))


def _sim(dep: Deployment) -> dict:
    return requests.get(dep.sim_url + "/__sim/requests", timeout=60).json()


def measure_pace(dep: Deployment, rows: list[Row], count: int, mps: float) -> None:
    """A list of `count` to the pool (POOL, 10 a second each) at `mps`, expiry 60 s."""
    setup = f"{dep.name}, {mps:g} MMS/s, 5 numbers at 10/s, expiry 60 s"
    session = dep.login("pace@example.com")
    colleague = dep.login("pace-colleague@example.com")
    preview_url, token, eta_seconds = _upload(dep, session, count, "pool")
    engine = create_engine(dep.env["DATABASE_URL"])
    started = time.time()
    confirmed = session.post(preview_url + "/confirm", allow_redirects=False,
                             data={"csrf_token": token, "long_send": "yes"})
    if confirmed.status_code != 303:
        raise RuntimeError(f"confirm answered {confirmed.status_code}")
    compose_token = csrf_token_in(colleague.get(dep.url + url("sending.compose")).text)
    singles: dict[str, float] = {}  # text -> when posted

    def waiting() -> int:
        with engine.connect() as conn:
            return conn.execute(text("SELECT count(*) FROM messages WHERE status = 'pending'"
                                     )).scalar_one()

    deadline = started + count / mps * 2 + 60
    next_single = started + 5
    while time.time() < deadline and waiting():
        if time.time() >= next_single:
            body = f"single {len(singles)}"
            reply = colleague.post(dep.url + url("sending.compose"), allow_redirects=False, data={
                "csrf_token": compose_token, "idempotency_key": f"pace{len(singles):04d}xxxxxxxxxx",
                "sender": POOL[0], "recipients": "+16045550123", "text": body,
                "media": "https://example.com/a.jpg"})
            if reply.status_code == 303:
                singles[body] = time.time()
            next_single = time.time() + 3
        time.sleep(0.2)
    time.sleep(3)
    seen = _sim(dep)
    sends = [(r, t) for r, t in zip(seen["requests"], seen["accepted_at"], strict=False)]
    batch = [(r, t) for r, t in sends if not str(r.get("text", "")).startswith("single")]
    times = sorted(t for _r, t in sends)
    by_number: dict[str, list[float]] = defaultdict(list)
    for r, t in sends:
        by_number[r["src"]].append(t)
    dsts = [r["dst"] for r, _t in batch]
    duration = max(t for _r, t in batch) - started
    achieved = len(batch) / (max(t for _r, t in batch) - min(t for _r, t in batch))
    handed = [t - singles[r["text"]] for r, t in sends if r.get("text") in singles]
    handed.sort()
    p95 = handed[int(0.95 * (len(handed) - 1))] if handed else float("nan")
    busiest = most_within(times, 5.0)
    per_number = max(most_within(sorted(ts), 1.0) for ts in by_number.values())
    eta_error = abs(eta_seconds - duration) / duration
    rows += [
        Row(setup, f"{count:,}-recipient list: handed to Plivo", len(batch), "messages",
            f"= {count:,}", None, len(batch) == count),
        Row(setup, "expired in Plivo's queue (error 420)", seen["expired"], "messages", "= 0",
            None, seen["expired"] == 0),
        Row(setup, "sent twice", len(dsts) - len(set(dsts)), "messages", "= 0", None,
            len(dsts) == len(set(dsts))),
        Row(setup, "busiest 5-s window of API requests", busiest, "requests", "<= 300", None,
            busiest <= 300),
        Row(setup, "most from one number in any 1-s window", per_number, "messages", "<= 10",
            None, per_number <= 10),
        Row(setup, "achieved pace", achieved, "msg/s", f">= 95 % of {mps:g}", achieved / mps,
            achieved >= 0.95 * mps),
        Row(setup, f"preview's ETA ({eta_seconds} s) against the real duration "
                   f"({duration:.0f} s)", eta_error * 100, "% off", "<= 10 %", None,
            eta_error <= 0.10),
        Row(setup, f"single send during the list: queued to handed to Plivo, p95 of "
                   f"{len(handed)}", p95, "s", "<= 5 s", None, bool(handed) and p95 <= 5),
    ]


def measure_slow_pace(dep: Deployment, rows: list[Row], count: int, mps: float) -> None:
    """A list of `count` from one number at `mps`: the ETA, nothing expired, Pause stops
    hand-overs within a second, Cancel says exactly how many were not sent."""
    setup = f"{dep.name}, {mps:g} MMS/s, one number"
    session = dep.login("slow@example.com")
    preview_url, token, eta_seconds = _upload(dep, session, count, POOL[0])
    started = time.time()
    confirmed = session.post(preview_url + "/confirm", allow_redirects=False,
                             data={"csrf_token": token, "long_send": "yes"})
    batch_url = dep.url + confirmed.headers["Location"]
    page_token = csrf_token_in(session.get(batch_url).text)
    time.sleep(min(30, count / mps / 4))
    paused_at = time.time()
    # No redirects followed: the session cookie is Secure (https in production) and only
    # LoopbackSession's own requests carry it.
    session.post(batch_url + "/pause", data={"csrf_token": page_token}, allow_redirects=False)
    time.sleep(5)
    after_pause = [t for t in _sim(dep)["accepted_at"] if t > paused_at + 1.0]
    session.post(batch_url + "/resume", data={"csrf_token": page_token}, allow_redirects=False)
    engine = create_engine(dep.env["DATABASE_URL"])

    def waiting() -> int:
        with engine.connect() as conn:
            return conn.execute(text("SELECT count(*) FROM messages WHERE status = 'pending'"
                                     )).scalar_one()

    deadline = time.time() + count / mps * 2 + 60
    while time.time() < deadline and waiting():
        time.sleep(0.5)
    time.sleep(2)
    seen = _sim(dep)
    # The real duration, without the pause: from confirm to the last hand-over, less 5 s.
    duration = max(seen["accepted_at"]) - started - 5
    eta_error = abs(eta_seconds - duration) / duration
    rows += [
        Row(setup, f"preview's ETA ({eta_seconds} s) against the real duration "
                   f"({duration:.0f} s, the pause left out)", eta_error * 100, "% off",
            "<= 10 %", None, eta_error <= 0.10),
        Row(setup, "expired in Plivo's queue (error 420)", seen["expired"], "messages", "= 0",
            None, seen["expired"] == 0),
        Row(setup, "handed to Plivo more than 1 s after Pause", len(after_pause), "messages",
            "= 0", None, not after_pause),
    ]
    # Cancel: a second list, cancelled part-way; the page's count against the database.
    preview_url, token, _eta = _upload(dep, session, count, POOL[0])
    confirmed = session.post(preview_url + "/confirm", allow_redirects=False,
                             data={"csrf_token": token, "long_send": "yes"})
    batch_url = dep.url + confirmed.headers["Location"]
    time.sleep(min(10, count / mps / 3))
    page_token = csrf_token_in(session.get(batch_url).text)
    session.post(batch_url + "/cancel", data={"csrf_token": page_token, "confirmed": "yes"},
                 allow_redirects=False)
    said = re.search(r"Cancelled: ([\d,]+) not sent", session.get(batch_url).text)
    time.sleep(3)
    public_id = batch_url.rstrip("/").rsplit("/", 1)[1]
    with engine.connect() as conn:
        cancelled = conn.execute(text(
            "SELECT count(*) FROM messages m JOIN batches b ON b.id = m.batch_id "
            "WHERE b.public_id = :p AND m.status = 'cancelled'"), {"p": public_id}).scalar_one()
        handed = conn.execute(text(
            "SELECT count(*) FROM messages m JOIN batches b ON b.id = m.batch_id "
            "WHERE b.public_id = :p AND m.attempts > 0"), {"p": public_id}).scalar_one()
    told = int(said.group(1).replace(",", "")) if said else -1
    sim_count = sum(1 for r in _sim(dep)["requests"] if r.get("text", "").startswith("Hi "))
    exact = told == cancelled and cancelled + handed == count
    rows.append(Row(setup, f"Cancel part-way: 'N not sent' said {told:,}, cancelled "
                           f"{cancelled:,}, handed {handed:,} (simulator: {sim_count:,} list "
                           "messages in all)", told, "messages", "exact", None, exact))
