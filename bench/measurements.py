"""What the benchmarks measure, each against its floor in the same run: history pages,
status callbacks, compose while Plivo is slow, dispatch under Plivo's limit, memory."""

from __future__ import annotations

import datetime as dt
import random
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import requests
from sqlalchemy import bindparam, create_engine, text

from tests.helpers import url
from webapp.gateway.signatures import signed_headers
from webapp.models import UTCDateTime

from .deployments import (
    Deployment,
    cursor_at,
    seed_messages,
    seeded_recipient,
    seeded_text,
)
from .load import WRK_COMPOSE, WRK_CYCLE, alternate, rss_mb, wait_until_idle, wrk


@dataclass
class Row:
    setup: str
    metric: str
    value: float
    unit: str
    target: str = ""
    ratio: float | None = None
    passed: bool | None = None


def floor_rows(dep: Deployment, floor: dict, alongside: str) -> list[Row]:
    return [Row(dep.name, f"floor GET /livez (alternating with {alongside})", floor["rps"],
                "req/s"),
            Row(dep.name, "floor p99", floor["p99_ms"], "ms")]


def measure_history(dep: Deployment, rows: list[Row], seconds: float, messages: int):
    """Returns the signed-in session (for measure_search)."""
    session = dep.login("history@example.com")
    cookie = {"Cookie": session.cookie_header()}
    seed_messages(dep.env["DATABASE_URL"], "history@example.com", messages, varied=True)
    # The overview's rollups of the seeded 90 days, as after any import; timed.
    started = time.perf_counter()
    dep.flask("stats", "rebuild", check=True)
    rebuild_seconds = time.perf_counter() - started
    wait_until_idle([worker.pid for worker in dep.workers])  # a sweep may have begun too
    deep_cursor = cursor_at(dep.env["DATABASE_URL"], messages * 9 // 10) or ""  # 90% back
    got = alternate({
        "floor": lambda s: wrk(dep.url + url("livez"), s, 16, ""),
        "first": lambda s: wrk(dep.url + url("history.history"), s, 16, "", headers=cookie),
        "deep": lambda s: wrk(dep.url + url("history.history", before=deep_cursor), s, 16, "",
                              headers=cookie),
    }, seconds)
    floor, first, deep = got["floor"], got["first"], got["deep"]
    rows.extend(floor_rows(dep, floor, "history"))
    ratio = first["rps"] / floor["rps"]
    rows.append(Row(dep.name, f"history first page ({messages:,} rows)", first["rps"], "req/s",
                    ">= 0.15 x floor", ratio, ratio >= 0.15))
    rows.append(Row(dep.name, "history first page p50 / p99", first["p99_ms"], "ms",
                    f"p50 {first['p50_ms']:.1f} ms"))
    deep_ratio = deep["p99_ms"] / first["p99_ms"]
    rows.append(Row(dep.name, "history deep page (90% back) p99", deep["p99_ms"], "ms",
                    "<= 1.2 x first page p99", deep_ratio, deep_ratio <= 1.2))
    rows.append(Row(dep.name, "history deep page p50", deep["p50_ms"], "ms",
                    f"first page p50 {first['p50_ms']:.1f} ms", deep["p50_ms"] / first["p50_ms"]))
    errors = sum(r["non2xx"] + r["socket_errors"] for r in (first, deep))
    rows.append(Row(dep.name, "history non-2xx", errors, "responses", "0", None, errors == 0))
    rows.append(Row(dep.name, f"flask stats rebuild ({messages:,} messages over 90 days)",
                    rebuild_seconds, "s"))
    return session


def search_cases(sender_id: int) -> dict[str, dict]:
    """What staff look for, over the seeded history (deployments.seeded_text, …)."""
    rare = seeded_text(123_457).split("invoice ")[1].split()[0]  # in about ten messages
    return {
        f"text, a rare word (invoice {rare})": {"q": f"invoice {rare}"},
        "text, a word in no message": {"q": "zebra"},
        "text, a common word (order)": {"q": "order"},
        "text, a phrase in quotes": {"q": '"ready for pickup"'},
        "recipient, last 4 digits": {"recipient": "0199"},
        "recipient, whole number (matching)": {"recipient": seeded_recipient(4_242)},
        "recipient, whole number (none)": {"recipient": "(415) 555-0000"},
        "status failed": {"status": "failed"},
        "sent by one person": {"sent_by": str(sender_id)},
        "one day": {"from": "2025-01-01", "to": "2025-01-01"},
        "status + text + date": {"status": "failed", "q": "invoice", "from": "2025-01-01"},
    }


def measure_search(dep: Deployment, rows: list[Row], seconds: float, session) -> None:
    """Each filter's first page against the unfiltered first page, p95 against p95, in
    alternating slices (after measure_history has seeded the history)."""
    cookie = {"Cookie": session.cookie_header()}
    engine = create_engine(dep.env["DATABASE_URL"])
    with engine.connect() as conn:
        sender_id = conn.execute(text("SELECT id FROM users WHERE email = :e"),
                                 {"e": "history@example.com"}).scalar_one()
    engine.dispose()
    cases = search_cases(sender_id)
    runs = {"unfiltered": lambda s: wrk(dep.url + url("history.history"), s, 16, "",
                                        headers=cookie)}
    for name, args in cases.items():
        runs[name] = (lambda target: lambda s: wrk(target, s, 16, "", headers=cookie))(
            dep.url + url("history.history", **args))
    got = alternate(runs, seconds)
    base = got["unfiltered"]
    rows.append(Row(dep.name, "history unfiltered first page p95 (alternating with searches)",
                    base["p95_ms"], "ms"))
    for name in cases:
        ratio = got[name]["p95_ms"] / base["p95_ms"]
        rows.append(Row(dep.name, f"search: {name}, p95", got[name]["p95_ms"], "ms",
                        "<= 2 x unfiltered p95", ratio, ratio <= 2))
    errors = sum(r["non2xx"] + r["socket_errors"] for r in got.values())
    rows.append(Row(dep.name, "search non-2xx", errors, "responses", "0", None, errors == 0))


def measure_overview(dep: Deployment, rows: list[Row], seconds: float, messages: int) -> None:
    """The overview of the seeded history's 90 days, as an admin opens it (with the health
    panel), against the unfiltered history page, p95 against p95 in alternating slices.
    The rollups were rebuilt after seeding (measure_history)."""
    session = dep.login("overview-admin@example.com", admin=True)
    cookie = {"Cookie": session.cookie_header()}
    period = {"period": "custom", "from": "2025-01-01", "to": "2025-03-31"}
    got = alternate({
        "history": lambda s: wrk(dep.url + url("history.history"), s, 16, "", headers=cookie),
        "overview": lambda s: wrk(dep.url + url("overview.index", **period), s, 16, "",
                                  headers=cookie),
        "overview-7d": lambda s: wrk(dep.url + url("overview.index"), s, 16, "",
                                     headers=cookie),
    }, seconds)
    base = got["history"]
    rows.append(Row(dep.name, "history first page p95 (alternating with the overview)",
                    base["p95_ms"], "ms"))
    for name, label in (("overview", "overview, 90 days, admin with health panel"),
                        ("overview-7d", "overview, last 7 days (default), admin")):
        ratio = got[name]["p95_ms"] / base["p95_ms"]
        rows.append(Row(dep.name, f"{label}, p95", got[name]["p95_ms"], "ms",
                        "<= 2 x history p95", ratio, ratio <= 2))
    errors = sum(r["non2xx"] + r["socket_errors"] for r in got.values())
    rows.append(Row(dep.name, "overview non-2xx", errors, "responses", "0", None, errors == 0))


EXPORT_COLUMNS_SQL = (
    "SELECT m.created_at, m.public_id, u.email, m.sender, m.recipient, m.status, "
    "m.error_code, m.error_reason, m.text, m.media, m.units, m.total_amount, m.plivo_uuid, "
    "m.sent_at, m.final_at FROM messages m JOIN users u ON u.id = m.created_by_id "
    "ORDER BY m.created_at DESC, m.id DESC")


def measure_export(dep: Deployment, rows: list[Row], session, messages: int) -> None:
    """The CSV export of the whole seeded history, as a person downloads it: time to the
    first bytes, rows per second, and the serving worker's memory. On PostgreSQL the
    floor is psql's \\copy of the same columns in the same order."""
    pids = dep.web_worker_pids()
    before = {pid: rss_mb(pid) for pid in pids}
    start = time.perf_counter()
    answer = session.get(dep.url + url("history.export"), stream=True, timeout=600)
    chunks = answer.iter_content(chunk_size=1 << 16)
    first = next(chunks, b"")
    first_bytes_ms = (time.perf_counter() - start) * 1000
    lines = first.count(b"\n") + sum(chunk.count(b"\n") for chunk in chunks)
    seconds = time.perf_counter() - start
    growth = max(rss_mb(pid) - before[pid] for pid in pids)
    # Lines, not records: a text may hold a line break (the seeded ones do not).
    rate = (lines - 1) / seconds
    complete = lines - 1 == messages
    rows.append(Row(dep.name, f"CSV export of {messages:,} rows: first bytes", first_bytes_ms,
                    "ms", "<= 200 ms", None, first_bytes_ms <= 200))
    rows.append(Row(dep.name, "CSV export rows written", lines - 1, "rows",
                    f"{messages:,}", None, complete))
    rows.append(Row(dep.name, "CSV export worker memory growth", growth, "MB", "<= 50 MB",
                    None, growth <= 50))
    if dep.env["DATABASE_URL"].startswith("sqlite"):
        rows.append(Row(dep.name, "CSV export", rate, "rows/s", ">= 100,000 rows/s", None,
                        rate >= 100_000))
        return
    target = dep.env["DATABASE_URL"].replace("postgresql+psycopg://", "postgresql://")
    copy_seconds = []
    for _ in range(2):  # the faster of two: one slowed by a checkpoint would flatter us
        copy_start = time.perf_counter()
        subprocess.run(["psql", target, "-q", "-c",
                        f"\\copy ({EXPORT_COLUMNS_SQL}) TO '/dev/null' CSV HEADER"],
                       check=True, capture_output=True, timeout=600)
        copy_seconds.append(time.perf_counter() - copy_start)
    copy_rate = messages / min(copy_seconds)
    rows.append(Row(dep.name, "floor: psql \\copy of the same columns (faster of two)",
                    copy_rate, "rows/s"))
    rows.append(Row(dep.name, "CSV export", rate, "rows/s", ">= 0.25 x psql \\copy",
                    rate / copy_rate, rate / copy_rate >= 0.25))


def measure_callbacks(dep: Deployment, rows: list[Row], seconds: float, messages: int) -> None:
    dep.login("callbacks@example.com")
    seed_messages(dep.env["DATABASE_URL"], "callbacks@example.com", messages, status="queued",
                  uuid_prefix="bench-uuid-")
    callback_path = url("callbacks.plivo_status")
    signed_url = dep.env["PUBLIC_BASE_URL"] + callback_path
    rng = random.Random(5)
    callbacks = [(i, status, seq) for i in range(messages)
                 for status, seq in (("sent", 2), ("delivered", 3))]
    rng.shuffle(callbacks)  # out of order, as Plivo's retries make them
    signed = []
    for i, status, seq in callbacks:
        params = {"MessageUUID": f"bench-uuid-{i}", "Status": status, "Sequence": str(seq),
                  "ErrorCode": "", "To": f"1415555{2000 + i % 8000:04d}", "From": "14155550100",
                  "Units": "1", "TotalAmount": "0.016"}
        headers = signed_headers("POST", signed_url, params, dep.env["PLIVO_AUTH_TOKEN"],
                                 str(rng.randrange(10**19, 10**20)))
        signed.append(({k: v for k, v in headers.items() if "V3" in k}, params))
    data = dep.tmp / "callbacks.tsv"
    data.write_text("".join(
        "|".join(f"{k}:{v}" for k, v in headers.items()) + "\t"
        + "&".join(f"{k}={requests.utils.quote(v, safe='')}" for k, v in params.items()) + "\n"
        for headers, params in signed))
    sent = 0

    def callbacks_slice(slice_seconds: float) -> dict:
        nonlocal sent  # each slice goes on where the one before stopped (+ a margin)
        got = wrk(dep.url + callback_path, slice_seconds, 16, WRK_CYCLE, str(data),
                  str(sent))
        sent += got["requests"] + 200
        return got

    got = alternate({"floor": lambda s: wrk(dep.url + url("livez"), s, 16, ""),
                     "callbacks": callbacks_slice}, seconds)
    floor, report = got["floor"], got["callbacks"]
    rows.extend(floor_rows(dep, floor, "callbacks"))
    # Then every callback once more, as Plivo's retries would: afterwards each
    # message must be delivered and the ledger must hold each callback once.
    def replay(item) -> int:
        headers, params = item
        return requests.post(dep.url + callback_path, data=params, headers=headers,
                             timeout=30).status_code

    with ThreadPoolExecutor(8) as pool:
        replay_errors = sum(1 for code in pool.map(replay, signed) if code != 200)
    engine = create_engine(dep.env["DATABASE_URL"])
    with engine.connect() as conn:
        not_delivered = conn.execute(text(
            "SELECT count(*) FROM messages WHERE plivo_uuid LIKE 'bench-uuid-%' "
            "AND status <> 'delivered'")).scalar_one()
        ledger = conn.execute(text("SELECT count(*) FROM status_events WHERE plivo_uuid LIKE "
                                   "'bench-uuid-%'")).scalar_one()
    engine.dispose()
    ratio = report["rps"] / floor["rps"]
    rows.append(Row(dep.name, "status callbacks (V3-signed)", report["rps"], "req/s",
                    ">= 0.25 x floor", ratio, ratio >= 0.25))
    rows.append(Row(dep.name, "status callbacks p99", report["p99_ms"], "ms", "<= 100 ms", None,
                    report["p99_ms"] <= 100))
    errors = report["non2xx"] + report["socket_errors"]
    rows.append(Row(dep.name, "status callbacks errors", errors, "responses", "0", None,
                    errors == 0))
    wrong = not_delivered + abs(ledger - len(callbacks)) + replay_errors
    rows.append(Row(dep.name, "callbacks lost, doubled or misapplied", wrong, "",
                    f"0 (of {len(callbacks):,})", None, wrong == 0))


def measure_compose_with_slow_plivo(dep: Deployment, rows: list[Row], seconds: float) -> None:
    cookie, token = dep.composer("composer@example.com")

    def compose(run_seconds: float) -> dict:
        return wrk(dep.url + url("sending.compose"), run_seconds, 8, WRK_COMPOSE,
                   headers={"Cookie": cookie}, env={"BENCH_CSRF": token})

    compose(2)  # warm-up, not counted: each worker's first requests connect and compile
    report = compose(seconds)
    rows.append(Row(dep.name, "compose POST while Plivo answers in 2 s, p99", report["p99_ms"],
                    "ms", "<= 100 ms", None, report["p99_ms"] <= 100))
    rows.append(Row(dep.name, "compose POST p50", report["p50_ms"], "ms"))
    rows.append(Row(dep.name, "compose POSTs", report["rps"], "req/s",
                    f"non-2xx/3xx: {report['non2xx']}", None, report["non2xx"] == 0))


def measure_dispatch(dep: Deployment, rows: list[Row], count: int) -> None:
    dep.login("dispatch@example.com")
    seed_messages(dep.env["DATABASE_URL"], "dispatch@example.com", count, status="pending")
    engine = create_engine(dep.env["DATABASE_URL"])
    with engine.begin() as conn:
        conn.execute(text("UPDATE messages SET attempts = 0, plivo_uuid = NULL, "
                          "created_at = :old WHERE status = 'pending'").bindparams(
                              bindparam("old", type_=UTCDateTime())),
                     {"old": dt.datetime(2020, 1, 1, tzinfo=dt.UTC)})
    started = time.time()
    dep.flask("messages", "recover", "--older-than", "1")  # queues every pending message
    deadline = started + max(120, count / 10)
    while time.time() < deadline:
        with engine.connect() as conn:
            left = conn.execute(text("SELECT count(*) FROM messages WHERE status = 'pending'"
                                     )).scalar_one()
        if not left:
            break
        time.sleep(0.25)
    with engine.connect() as conn:
        outcome = dict(conn.execute(text("SELECT status, count(*) FROM messages m JOIN users u "
                                         "ON u.id = m.created_by_id WHERE u.email = "
                                         "'dispatch@example.com' GROUP BY status")).all())
    engine.dispose()
    sim = requests.get(dep.sim_url + "/__sim/requests", timeout=30).json()
    times = sorted(sim["accepted_at"])
    elapsed = (times[-1] - times[0]) if len(times) > 1 else 0.0
    rate = (len(times) - 1) / elapsed if elapsed else 0.0
    worst = max((sum(1 for t in times[i:] if t - start < 5.0) for i, start in enumerate(times)),
                default=0)
    failed = sum(v for k, v in outcome.items() if k not in ("queued", "sent", "delivered"))
    rows.append(Row(dep.name, f"dispatch of {count:,} (Plivo limit 300 per 5 s)", rate, "msg/s",
                    ">= 50 msg/s", None, rate >= 50))
    rows.append(Row(dep.name, "busiest 5-second window", worst, "requests", "<= 300", None,
                    worst <= 300))
    rows.append(Row(dep.name, "messages failed (429s answered)", failed, "",
                    f"0 ({sim['throttled']} throttled, retried)", None, failed == 0))


def measure_memory(dep: Deployment, rows: list[Row], seconds: float) -> None:
    """RSS of every web and queue worker during a mixed run, at the start and the end."""
    cookie, token = dep.composer("memory@example.com")
    pids = dep.web_worker_pids() + [w.pid for w in dep.workers]
    samples: dict[int, list[float]] = {pid: [] for pid in pids}
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        wrk(dep.url + url("history.history"), min(5, seconds), 4, "", headers={"Cookie": cookie})
        wrk(dep.url + url("sending.compose"), min(3, seconds), 2, WRK_COMPOSE,
            headers={"Cookie": cookie}, env={"BENCH_CSRF": token})
        for pid in pids:
            samples[pid].append(rss_mb(pid))
    peak = max(max(s) for s in samples.values())
    growth = max(s[-1] - s[len(s) // 2] for s in samples.values())
    rows.append(Row(dep.name, f"worker RSS after a {seconds:.0f} s mixed run (max of "
                    f"{len(pids)})", peak, "MB", "<= 120 MB", None, peak <= 120))
    rows.append(Row(dep.name, "RSS growth over the second half", growth, "MB",
                    "not growing (<= 5 MB)", None, growth <= 5))


def batch_csv(count: int) -> bytes:
    """`count` "name, phone" rows, every number distinct, none the sending number."""
    lines = ["name,phone"]
    areas = ("415", "604", "212", "416", "312", "206", "514", "617", "303", "778", "213", "647")
    for i in range(count):
        area, rest = areas[i // 9000], 1000 + i % 9000
        lines.append(f"Customer {i},({area}) 555-{rest:04d}")
    return ("\n".join(lines) + "\n").encode()


def measure_batches(dep: Deployment, rows: list[Row], count: int, seconds: float) -> None:
    """Sending to a list of `count`: the preview, the recording, the dispatch against the
    simulator's 300 / 5 s, a colleague's single sends meanwhile, and the history page
    while it runs (alternating with the floor)."""
    from tests.helpers import csrf_token_in

    session = dep.login("lists@example.com")
    colleague = dep.login("colleague@example.com")
    form = session.get(dep.url + url("lists.new_batch")).text
    started = time.perf_counter()
    answer = session.post(dep.url + url("lists.new_batch"), allow_redirects=False, data={
        "csrf_token": csrf_token_in(form), "sender": "+14155550100",
        "text": "Hi ((name)), your order is ready.", "media": "https://example.com/a.jpg"},
        files={"list_file": ("customers.csv", batch_csv(count), "text/csv")})
    if answer.status_code != 303:
        raise RuntimeError(f"list upload answered {answer.status_code}: {answer.text[:300]}")
    preview_url = dep.url + answer.headers["Location"]
    preview = session.get(preview_url)
    preview_seconds = time.perf_counter() - started
    if f"{count:,} numbers will be sent to" not in preview.text:
        raise RuntimeError("the preview did not count every row")
    rows.append(Row(dep.name, f"preview of a {count:,}-row CSV (upload, read, check, show)",
                    preview_seconds, "s", "<= 2 s", None, preview_seconds <= 2))
    before = len(requests.get(dep.sim_url + "/__sim/requests", timeout=30).json()["accepted_at"])
    started = time.perf_counter()
    confirmed = session.post(preview_url + "/confirm", allow_redirects=False,
                             data={"csrf_token": csrf_token_in(preview.text)})
    record_seconds = time.perf_counter() - started
    if confirmed.status_code != 303:
        raise RuntimeError(f"confirm answered {confirmed.status_code}")
    rows.append(Row(dep.name, f"recording a confirmed {count:,}-recipient batch",
                    record_seconds, "s", "<= 2 s", None, record_seconds <= 2))

    engine = create_engine(dep.env["DATABASE_URL"])
    compose_page = colleague.get(dep.url + url("sending.compose")).text
    token = csrf_token_in(compose_page)
    singles: dict[str, float] = {}  # idempotency key -> when it was posted
    post_ms: list[float] = []
    cookie = {"Cookie": session.cookie_header()}
    history = None

    def waiting() -> int:
        with engine.connect() as conn:
            return conn.execute(text("SELECT count(*) FROM messages WHERE batch_id IS NOT NULL "
                                     "AND status = 'pending' AND attempts = 0")).scalar_one()

    deadline = time.time() + max(120, count / 20)
    next_single = time.time() + 5
    while time.time() < deadline and waiting():
        if history is None and time.time() > next_single:  # once, early in the run
            history = alternate({
                "floor": lambda s: wrk(dep.url + url("livez"), s, 8, ""),
                "history": lambda s: wrk(dep.url + url("history.history"), s, 8, "",
                                         headers=cookie)}, seconds)
        if time.time() >= next_single:
            key = f"single{len(singles):04d}xxxxxxxxxx"
            posted = time.time()
            reply = colleague.post(dep.url + url("sending.compose"), allow_redirects=False, data={
                "csrf_token": token, "idempotency_key": key, "sender": "+14155550100",
                "recipients": "+16045550123", "text": f"single {len(singles)}",
                "media": "https://example.com/a.jpg"})
            post_ms.append((time.time() - posted) * 1000)
            if reply.status_code == 303:
                singles[key] = posted
            next_single = time.time() + 3
        time.sleep(0.25)
    time.sleep(3)  # the last callbacks
    sim = requests.get(dep.sim_url + "/__sim/requests", timeout=30).json()
    times = sorted(sim["accepted_at"][before:])
    elapsed = (times[-1] - times[0]) if len(times) > 1 else 0.0
    rate = (len(times) - 1) / elapsed if elapsed else 0.0
    worst = max((sum(1 for t in times[i:i + 400] if t - start < 5.0)
                 for i, start in enumerate(times)), default=0)
    with engine.connect() as conn:
        outcome = dict(conn.execute(text("SELECT status, count(*) FROM messages WHERE "
                                         "batch_id IS NOT NULL GROUP BY status")).all())
        handed = dict(conn.execute(text("SELECT idempotency_key, queued_at FROM messages "
                                        "WHERE idempotency_key LIKE 'single%'")).all())
    engine.dispose()
    failed = sum(v for k, v in outcome.items() if k not in ("queued", "sent", "delivered"))
    rows.append(Row(dep.name, f"dispatch of a {count:,}-recipient batch (+ singles; Plivo "
                    "limit 300 per 5 s)", rate, "msg/s", ">= 57 msg/s", None, rate >= 57))
    rows.append(Row(dep.name, "batch: busiest 5-second window", worst, "requests", "<= 300",
                    None, worst <= 300))
    rows.append(Row(dep.name, "batch: messages failed", failed, "",
                    f"0 ({sim['throttled']} throttled, retried)", None, failed == 0))
    waits = []
    for key, posted in singles.items():
        at = handed.get(key)
        if isinstance(at, str):
            at = dt.datetime.fromisoformat(at)
        if at is None:
            waits.append(float("inf"))
            continue
        at = at if at.tzinfo else at.replace(tzinfo=dt.UTC)
        waits.append(at.timestamp() - posted)
    waits.sort()
    p95 = waits[min(len(waits) - 1, int(len(waits) * 0.95))] if waits else float("inf")
    rows.append(Row(dep.name, f"single send during the batch: handed to Plivo, p95 of "
                    f"{len(waits)}", p95, "s", "<= 5 s", None, p95 <= 5))
    post_ms.sort()
    post_p95 = post_ms[int(len(post_ms) * 0.95)] if post_ms else float("inf")
    rows.append(Row(dep.name, "compose POST during the batch, p95", post_p95, "ms", "<= 100 ms",
                    None, post_p95 <= 100))
    if history:
        ratio = history["history"]["rps"] / history["floor"]["rps"]
        rows.append(Row(dep.name, "history first page during the batch", history["history"]["rps"],
                        "req/s", ">= 0.15 x floor", ratio, ratio >= 0.15))
