"""Load benchmarks on loopback: figures and ratios measured side by side in one run.

    python -m bench            # full run (make bench): SQLite and PostgreSQL, writes bench/RESULTS.md
    python -m bench --smoke    # seconds, tiny data: keeps the scripts working in CI

Everything runs on 127.0.0.1: gunicorn with the dashboard, queue workers, the
Plivo simulator, PostgreSQL and Redis (for the PostgreSQL setup), and wrk as
the load generator. Each wrk run is bounded in time. A ratio's two sides run in
alternating 2-second slices, so both see the same machine.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import re
import runpy
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

import requests
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from webapp.webhooks.signatures import signed_headers  # noqa: E402

from tests.services import (  # noqa: E402
    INITDB,
    REDIS,
    free_port,
    postgres_server,
    redis_server,
    wait_until_healthy,
)
from webapp.messages.history import encode_cursor  # noqa: E402

PASSWORD = "benchmark password"
BENCH_AUTH_ID = "MABENCH0000000000000"
BENCH_AUTH_TOKEN = "bench-auth-token-for-the-simulator"
TOKEN_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')

WRK_REPORT = """
done = function(summary, latency, requests)
  local non2xx = summary.errors.status
  io.write(string.format('{"requests": %d, "seconds": %f, "non2xx": %d, "socket_errors": %d, '
    .. '"p50_ms": %f, "p99_ms": %f}\\n', summary.requests, summary.duration / 1e6, non2xx,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
"""

# wrk.format() drops the -H headers (the session cookie) when given its own
# table, so every script builds its headers from wrk.headers.
WRK_HEADERS = """
local function with_headers(extra)
  local headers = {}
  for k, v in pairs(wrk.headers) do headers[k] = v end
  for k, v in pairs(extra) do headers[k] = v end
  return headers
end
"""

# Each wrk thread takes every other pre-signed callback (thread ids 0 and 1),
# so the two threads never send the same one until the list wraps around. The
# second argument is where in the list this run starts (a later slice goes on
# from where the one before stopped).
WRK_CYCLE = WRK_HEADERS + """
local bodies, heads, i, step = {}, {}, 0, 2
local counter = 0
setup = function(thread)
  thread:set("offset", counter)
  counter = counter + 1
end
init = function(args)
  i = (offset or 0) + (tonumber(args[2]) or 0)
  for line in io.lines(args[1]) do
    local sep = line:find("\\t")
    heads[#heads + 1] = line:sub(1, sep - 1)
    bodies[#bodies + 1] = line:sub(sep + 1)
  end
end
request = function()
  local n = i % #bodies + 1
  i = i + step
  local headers = with_headers({["Content-Type"] = "application/x-www-form-urlencoded"})
  for k, v in heads[n]:gmatch("([^|:]+):([^|]*)") do headers[k] = v end
  return wrk.format("POST", wrk.path, headers, bodies[n])
end
"""

WRK_COMPOSE = WRK_HEADERS + """
math.randomseed(os.time() + math.floor(os.clock() * 1e6))
request = function()
  local key = string.format("bench%08x%08x", math.random(0, 0x7fffffff), math.random(0, 0x7fffffff))
  local body = "csrf_token=" .. os.getenv("BENCH_CSRF") .. "&idempotency_key=" .. key
    .. "&sender=%2B14155550100&recipients=%2B14155550123&text=bench"
    .. "&media=https%3A%2F%2Fexample.com%2Fa.jpg"
  local headers = with_headers({["Content-Type"] = "application/x-www-form-urlencoded"})
  return wrk.format("POST", wrk.path, headers, body)
end
"""


@dataclass
class Row:
    setup: str
    metric: str
    value: float
    unit: str
    target: str = ""
    ratio: float | None = None
    passed: bool | None = None


@dataclass
class Deployment:
    name: str
    env: dict[str, str]
    url: str
    sim_url: str
    tmp: Path
    processes: list[subprocess.Popen] = field(default_factory=list)
    web: subprocess.Popen | None = None
    workers: list[subprocess.Popen] = field(default_factory=list)

    def flask(self, *args: str, stdin: str | None = None) -> str:
        result = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", *args], cwd=ROOT,
                                env=self.env, input=stdin, capture_output=True, text=True,
                                timeout=600)
        if result.returncode:
            raise RuntimeError(f"flask {' '.join(args)}: {result.stderr[-2000:]}")
        return result.stdout

    def spawn(self, *cmd: str) -> subprocess.Popen:
        log = (self.tmp / "processes.log").open("a")
        process = subprocess.Popen(list(cmd), cwd=ROOT, env=self.env, stdout=log, stderr=log)
        self.processes.append(process)
        return process

    def start_simulator(self, *options: str) -> None:
        # The dashboard's public address is https (PUBLIC_BASE_URL); callbacks
        # reach it on loopback, as they would through the TLS proxy.
        self.spawn(sys.executable, "-m", "flask", "--app", "wsgi", "plivo-simulator",
                   "--callback-delay", "0.05", "--deliver-to", self.url, *options)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                requests.get(self.sim_url + "/__sim/requests", timeout=1)
                return
            except requests.RequestException:
                time.sleep(0.2)
        raise RuntimeError("simulator did not start")

    def start_web(self) -> None:
        """gunicorn exactly as in production: gunicorn.conf.py, only the port differs."""
        self.web = self.spawn(sys.executable, "-m", "gunicorn", "--bind",
                              self.url.removeprefix("http://"), "wsgi:app")
        wait_until_healthy(self.url, self.tmp / "processes.log")

    def start_worker(self, threads: int = 10) -> subprocess.Popen:
        worker = self.spawn(sys.executable, "-m", "flask", "--app", "wsgi", "worker",
                            "--threads", str(threads))
        self.workers.append(worker)
        return worker

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        self.processes.clear()
        self.workers.clear()
        self.web = None

    def login(self, email: str) -> LoopbackSession:
        self.flask("users", "create", email, "--password-stdin", stdin=PASSWORD + "\n")
        session = LoopbackSession()
        token = TOKEN_RE.search(session.get(self.url + "/login").text).group(1)
        answer = session.post(self.url + "/login", data={"csrf_token": token, "email": email,
                                                         "password": PASSWORD},
                              allow_redirects=False)
        if answer.status_code != 303:
            raise RuntimeError(f"login as {email} failed: {answer.status_code}")
        return session

    def web_worker_pids(self) -> list[int]:
        path = Path(f"/proc/{self.web.pid}/task/{self.web.pid}/children")
        return [int(pid) for pid in path.read_text().split()]


class LoopbackSession(requests.Session):
    """Production cookies are Secure (__Host-session); the TLS proxy is left out
    on loopback, so the client keeps sending them over plain http."""

    def send(self, request, **kwargs):
        response = super().send(request, **kwargs)
        for cookie in self.cookies:
            cookie.secure = False
        return response

    def cookie_header(self) -> str:
        """The session cookie as it stands now, for wrk's -H."""
        return "; ".join(f"{c.name}={c.value}" for c in self.cookies)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def wrk(url: str, seconds: float, connections: int, script: str, *args: str,
        headers: dict[str, str] | None = None, env: dict | None = None) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script + WRK_REPORT)
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{max(1, int(seconds))}s", "--timeout", "10s",
           "-s", handle.name]
    for key, value in (headers or {}).items():
        cmd += ["-H", f"{key}: {value}"]
    cmd += [url, *(["--", *args] if args else [])]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60,
                            env={**os.environ, **(env or {})})
    os.unlink(handle.name)
    line = next((ln for ln in result.stdout.splitlines() if ln.startswith("{")), None)
    if line is None:
        raise RuntimeError(f"wrk gave no report: {result.stdout}\n{result.stderr}")
    report = json.loads(line)
    report["rps"] = report["requests"] / report["seconds"]
    return report


def alternate(runs: dict, seconds: float) -> dict[str, dict]:
    """Run each of `runs` (name -> fn(slice_seconds) -> wrk report) for `seconds` in all,
    as alternating slices of 2 s: figures compared as a ratio see the same machine,
    whose noisy neighbours come and go within seconds. Each first runs a second
    uncounted. Requests and errors are summed; each latency percentile is the slices'
    figures weighted by their requests."""
    slices = max(1, int(seconds) // 2)
    for run in runs.values():
        run(1)  # warm-up, not counted: each worker's first requests connect and compile
    parts: dict[str, list[dict]] = {name: [] for name in runs}
    for _ in range(slices):
        for name, run in runs.items():
            parts[name].append(run(max(1.0, seconds / slices)))
    merged = {}
    for name, reports in parts.items():
        count = sum(r["requests"] for r in reports) or 1
        merged[name] = {
            "requests": sum(r["requests"] for r in reports),
            "seconds": sum(r["seconds"] for r in reports),
            "non2xx": sum(r["non2xx"] for r in reports),
            "socket_errors": sum(r["socket_errors"] for r in reports),
            **{key: sum(r[key] * r["requests"] for r in reports) / count
               for key in ("p50_ms", "p99_ms")},
        }
        merged[name]["rps"] = merged[name]["requests"] / merged[name]["seconds"]
    return merged


# ---- seeding ---------------------------------------------------------------------------------
def seed_messages(database_url: str, user_email: str, count: int, status: str = "delivered",
                  uuid_prefix: str | None = None) -> None:
    """Bulk insert `count` messages quickly (one statement per 20,000 rows)."""
    engine = create_engine(database_url)
    start = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    sqlite = database_url.startswith("sqlite")
    with engine.begin() as conn:
        user_id = conn.execute(text("SELECT id FROM users WHERE email = :e"),
                               {"e": user_email}).scalar_one()
        batch = []
        statement = text(
            "INSERT INTO messages (public_id, created_by_id, idempotency_key, sender, recipient,"
            " text, media, status, status_sequence, attempts, plivo_uuid, created_at, updated_at)"
            " VALUES (:public_id, :uid, :key, '+14155550100', :recipient, :text, '[]', :status,"
            " 0, 1, :plivo_uuid, :created_at, :created_at)")
        for i in range(count):
            # Ten rows share each timestamp, as bursts of sends do.
            moment = start + dt.timedelta(seconds=i // 10)
            batch.append({
                "public_id": uuid.uuid4().hex[:16], "uid": user_id, "key": f"seed-{i}",
                # 555-2000..555-9999: clear of the simulator's magic numbers.
                "recipient": f"+1415555{2000 + i % 8000:04d}", "text": f"seeded message {i}",
                "status": status, "plivo_uuid": f"{uuid_prefix}{i}" if uuid_prefix else None,
                "created_at": moment.replace(tzinfo=None) if sqlite else moment,
            })
            if len(batch) == 20_000:
                conn.execute(statement, batch)
                batch.clear()
        if batch:
            conn.execute(statement, batch)
    if not sqlite:
        # As after any bulk load: otherwise autovacuum's pass over a million fresh rows,
        # and the writing out of their pages, start at some moment inside a measured run.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM (ANALYZE) messages"))
            conn.execute(text("CHECKPOINT"))
    engine.dispose()


# ---- the measurements ------------------------------------------------------------------------
def floor_rows(dep: Deployment, floor: dict, alongside: str) -> list[Row]:
    return [Row(dep.name, f"floor GET /livez (alternating with {alongside})", floor["rps"],
                "req/s"),
            Row(dep.name, "floor p99", floor["p99_ms"], "ms")]


def measure_history(dep: Deployment, rows: list[Row], seconds: float, messages: int) -> None:
    session = dep.login("history@example.com")
    cookie = {"Cookie": session.cookie_header()}
    seed_messages(dep.env["DATABASE_URL"], "history@example.com", messages)
    deep_cursor = _cursor_at(dep.env["DATABASE_URL"], messages * 9 // 10) or ""  # 90% back
    got = alternate({
        "floor": lambda s: wrk(dep.url + "/livez", s, 16, ""),
        "first": lambda s: wrk(dep.url + "/messages", s, 16, "", headers=cookie),
        "deep": lambda s: wrk(dep.url + f"/messages?before={deep_cursor}", s, 16, "",
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


def _cursor_at(database_url: str, offset: int) -> str | None:
    engine = create_engine(database_url)
    with engine.connect() as conn:
        row = conn.execute(text("SELECT created_at, id FROM messages ORDER BY created_at DESC, id"
                                " DESC LIMIT 1 OFFSET :o"), {"o": offset}).first()
    engine.dispose()
    if row is None:
        return None
    moment = dt.datetime.fromisoformat(row[0]) if isinstance(row[0], str) else row[0]
    return encode_cursor(moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC), row[1])


def measure_callbacks(dep: Deployment, rows: list[Row], seconds: float, messages: int) -> None:
    dep.login("callbacks@example.com")
    seed_messages(dep.env["DATABASE_URL"], "callbacks@example.com", messages, status="queued",
                  uuid_prefix="bench-uuid-")
    url = dep.env["PUBLIC_BASE_URL"] + "/webhooks/plivo/status"
    rng = random.Random(5)
    callbacks = [(i, status, seq) for i in range(messages)
                 for status, seq in (("sent", 2), ("delivered", 3))]
    rng.shuffle(callbacks)  # out of order, as Plivo's retries make them
    signed = []
    for i, status, seq in callbacks:
        params = {"MessageUUID": f"bench-uuid-{i}", "Status": status, "Sequence": str(seq),
                  "ErrorCode": "", "To": f"1415555{2000 + i % 8000:04d}", "From": "14155550100",
                  "Units": "1", "TotalAmount": "0.016"}
        headers = signed_headers("POST", url, params, dep.env["PLIVO_AUTH_TOKEN"],
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
        got = wrk(dep.url + "/webhooks/plivo/status", slice_seconds, 16, WRK_CYCLE, str(data),
                  str(sent))
        sent += got["requests"] + 200
        return got

    got = alternate({"floor": lambda s: wrk(dep.url + "/livez", s, 16, ""),
                     "callbacks": callbacks_slice}, seconds)
    floor, report = got["floor"], got["callbacks"]
    rows.extend(floor_rows(dep, floor, "callbacks"))
    # Then every callback once more, as Plivo's retries would: afterwards each
    # message must be delivered and the ledger must hold each callback once.
    from concurrent.futures import ThreadPoolExecutor

    def replay(item) -> int:
        headers, params = item
        return requests.post(dep.url + "/webhooks/plivo/status", data=params, headers=headers,
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
    session = dep.login("composer@example.com")
    token = TOKEN_RE.search(session.get(dep.url + "/messages/new").text).group(1)
    cookie = session.cookie_header()  # now holding the CSRF secret
    def compose(run_seconds: float) -> dict:
        return wrk(dep.url + "/messages/new", run_seconds, 8, WRK_COMPOSE,
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
                          "created_at = :old WHERE status = 'pending'"),
                     {"old": dt.datetime(2020, 1, 1)})
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
    session = dep.login("memory@example.com")
    token = TOKEN_RE.search(session.get(dep.url + "/messages/new").text).group(1)
    cookie = session.cookie_header()  # now holding the CSRF secret
    pids = dep.web_worker_pids() + [w.pid for w in dep.workers]
    samples: dict[int, list[float]] = {pid: [] for pid in pids}
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        wrk(dep.url + "/messages", min(5, seconds), 4, "", headers={"Cookie": cookie})
        wrk(dep.url + "/messages/new", min(3, seconds), 2, WRK_COMPOSE,
            headers={"Cookie": cookie}, env={"BENCH_CSRF": token})
        for pid in pids:
            samples[pid].append(rss_mb(pid))
    peak = max(max(s) for s in samples.values())
    growth = max(s[-1] - s[len(s) // 2] for s in samples.values())
    rows.append(Row(dep.name, f"worker RSS after a {seconds:.0f} s mixed run (max of "
                    f"{len(pids)})", peak, "MB", "<= 120 MB", None, peak <= 120))
    rows.append(Row(dep.name, "RSS growth over the second half", growth, "MB",
                    "not growing (<= 5 MB)", None, growth <= 5))


# ---- deployments -----------------------------------------------------------------------------
@contextmanager
def deployment(name: str, stack: ExitStack, database: str, **extra: str):
    tmp = Path(tempfile.mkdtemp(prefix=f"mms-bench-{name}-"))
    web_port, sim_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PLIVO_", "APP_ENV", "WEB_CONCURRENCY", "GUNICORN_"))}
    # The production settings (README, "Running in production"), with a made-up
    # Plivo account whose API is the simulator on loopback. The media probe is
    # off because the machine has no internet to fetch https media from.
    env.update({
        "APP_ENV": "production", "SECRET_KEY": "bench-" + "k" * 40, "INSTANCE_PATH": str(tmp),
        "PLIVO_AUTH_ID": BENCH_AUTH_ID, "PLIVO_AUTH_TOKEN": BENCH_AUTH_TOKEN,
        "PLIVO_API_URL": f"http://127.0.0.1:{sim_port}", "SIMULATOR_PORT": str(sim_port),
        "PLIVO_SENDER_NUMBERS": "+14155550100", "PUBLIC_BASE_URL": "https://mms.bench.example",
        "MEDIA_PROBE": "off", "LOG_LEVEL": "warning", "SENDS_PER_MINUTE_PER_USER": "10000",
        "TASK_QUEUE_URL": f"sqlite:///{tmp}/tasks.db",
        "DATABASE_URL": f"sqlite:///{tmp}/bench.sqlite3",
    })
    if REDIS:  # several gunicorn workers share their rate limits through Redis
        redis_url = stack.enter_context(redis_server())
        env["RATELIMIT_STORAGE_URI"] = redis_url + "/0"
    else:  # memory:// limits are only right for one worker (gunicorn.conf.py refuses more)
        env["WEB_CONCURRENCY"] = "1"
    if database == "postgresql":
        env["DATABASE_URL"] = stack.enter_context(postgres_server())
        env["TASK_QUEUE_URL"] = redis_url + "/1"
    env.update(extra)
    dep = Deployment(name, env, f"http://127.0.0.1:{web_port}", f"http://127.0.0.1:{sim_port}",
                     tmp)
    dep.flask("db", "upgrade")
    try:
        yield dep
    finally:
        dep.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)


PARTS = ("history", "callbacks", "memory", "compose", "dispatch")
SECONDS = 20  # each side of a ratio, in all; compose's run


def run(smoke: bool, only: set[str], databases: list[str]) -> list[Row]:
    # 20 s a side: with 10 s the PostgreSQL history ratio swung 0.15-0.16 between runs.
    seconds = 2 if smoke else SECONDS
    history_rows = 20_000 if smoke else 1_000_000
    callback_messages = 500 if smoke else 10_000
    dispatch_count = 100 if smoke else 1_000
    memory_seconds = 6 if smoke else 120
    rows: list[Row] = []
    for database in databases:
        if only & {"history", "callbacks", "memory"}:
            with ExitStack() as stack, deployment(database, stack, database) as dep:
                dep.start_simulator()
                dep.start_web()
                dep.start_worker()
                if "history" in only:
                    measure_history(dep, rows, seconds, history_rows)
                if "callbacks" in only:
                    measure_callbacks(dep, rows, seconds, callback_messages)
                if "memory" in only:
                    measure_memory(dep, rows, memory_seconds)
        if "compose" in only:
            with ExitStack() as stack, deployment(database, stack, database) as dep:
                dep.start_simulator("--latency", "2")
                dep.start_web()
                dep.start_worker()
                measure_compose_with_slow_plivo(dep, rows, seconds)
        if "dispatch" in only:
            with ExitStack() as stack, deployment(database, stack, database) as dep:
                dep.start_simulator("--rate-per-5s", "300")
                dep.start_web()
                # PostgreSQL + Redis: two worker processes share the Redis rate limit,
                # as they would on two machines. SQLite: one process (memory limits).
                for _ in range(2 if database == "postgresql" else 1):
                    dep.start_worker(threads=10)
                measure_dispatch(dep, rows, dispatch_count)
    return rows


def gunicorn_workers() -> int:
    return runpy.run_path(str(ROOT / "gunicorn.conf.py"))["workers"]


def machine() -> str:
    packages = ", ".join(f"{name} {version(name)}" for name in (
        "flask", "sqlalchemy", "gunicorn", "huey", "plivo", "psycopg"))
    wrk_version = subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout
    return (f"{os.cpu_count()} cores, {platform.machine()}, Linux {platform.release()}, "
            f"Python {platform.python_version()}; {packages}; "
            f"{wrk_version.split(' Copyright')[0].strip()}; "
            f"{dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}")


def table(rows: list[Row]) -> str:
    lines = ["| setup | metric | value | target | ratio | pass |", "|---|---|---|---|---|---|"]
    for r in rows:
        verdict = "" if r.passed is None else ("pass" if r.passed else "**FAIL**")
        ratio = "" if r.ratio is None else f"{r.ratio:.2f}"
        lines.append(f"| {r.setup} | {r.metric} | {r.value:,.1f} {r.unit} | {r.target} | "
                     f"{ratio} | {verdict} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny, quick run; no RESULTS.md")
    parser.add_argument("--only", action="append", choices=PARTS,
                        help="run only these parts (repeatable); no RESULTS.md")
    parser.add_argument("--database", action="append", choices=("sqlite", "postgresql"),
                        help="only this database (repeatable); no RESULTS.md")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        print("wrk is not installed: run scripts/install-test-deps.sh", file=sys.stderr)
        return 2
    databases = args.database or (["sqlite"] + (["postgresql"] if INITDB and REDIS else []))
    if "postgresql" in databases and not (INITDB and REDIS):
        print("PostgreSQL and Redis are not installed: run scripts/install-test-deps.sh",
              file=sys.stderr)
        return 2
    rows = run(args.smoke, set(args.only or PARTS), databases)
    report = table(rows)
    print(report)
    if not args.smoke and not args.only and not args.database:
        (ROOT / "bench" / "RESULTS.md").write_text(
            f"# Benchmark results\n\nMachine: {machine()}\n\nProduced by `make bench` "
            f"(`python -m bench`). Each load run is wrk with 2 threads and 16 connections "
            f"on 127.0.0.1, bounded in time. The two sides of a ratio run in alternating "
            f"2-second slices ({SECONDS} s each in all), so both see the same machine; latency "
            f"percentiles are the slices' figures weighted by their requests.\n\n"
            f"The dashboard runs with its production settings: `APP_ENV=production`, "
            f"gunicorn with `gunicorn.conf.py` ({gunicorn_workers() if REDIS else 1} sync "
            f"workers here), rate limits in {'Redis' if REDIS else 'memory'}, "
            f"a made-up Plivo account whose API is the simulator, "
            f"an https `PUBLIC_BASE_URL` that signed callbacks are checked against, and "
            f"the media probe off (no internet).\n\n"
            f"{report}\n")
        print("\nwritten to bench/RESULTS.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
