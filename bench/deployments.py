"""The dashboard as the benchmarks run it: production settings, real processes
(tests/services.py's Dashboard), a made-up Plivo account whose API is the simulator, and
a million messages seeded in the form the app itself writes them."""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests
from sqlalchemy import bindparam, create_engine, text

from tests.helpers import csrf_token_in, url
from tests.services import REDIS, Dashboard, dashboard_processes, postgres_server, redis_server
from webapp.history.pages import encode_cursor
from webapp.models import UTCDateTime, reversed_digits

SEARCH_COLUMN = "search_document"  # models.SEARCH_DDL

PASSWORD = "benchmark password"
BENCH_AUTH_ID = "MABENCH0000000000000"
BENCH_AUTH_TOKEN = "bench-auth-token-for-the-simulator"


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


@dataclass
class Deployment(Dashboard):
    name: str = ""

    def start_simulator(self, *options: str) -> None:
        # The dashboard's public address is https (PUBLIC_BASE_URL); callbacks
        # reach it on loopback, as they would through the TLS proxy.
        super().start_simulator("--callback-delay", "0.05", "--deliver-to", self.url, *options)

    def login(self, email: str, admin: bool = False) -> LoopbackSession:
        self.flask("users", "create", email, "--password-stdin", *(["--admin"] if admin else []),
                   stdin=PASSWORD + "\n", check=True)
        session = LoopbackSession()
        token = csrf_token_in(session.get(self.url + url("auth.login")).text)
        answer = session.post(self.url + url("auth.login"), allow_redirects=False,
                              data={"csrf_token": token, "email": email, "password": PASSWORD})
        if answer.status_code != 303:
            raise RuntimeError(f"login as {email} failed: {answer.status_code}")
        return session

    def composer(self, email: str) -> tuple[str, str]:
        """A new account's session cookie and compose CSRF token, for wrk's compose script."""
        session = self.login(email)
        token = csrf_token_in(session.get(self.url + url("sending.compose")).text)
        return session.cookie_header(), token  # the cookie now holds the CSRF secret


@contextmanager
def deployment(name: str, stack: ExitStack, database: str) -> Iterator[Deployment]:
    """The dashboard with its production settings (README, "Running in production"), a
    made-up Plivo account whose API is the simulator on loopback, and the media probe off
    (the machine has no internet to fetch https media from). Nothing started yet."""
    tmp = Path(tempfile.mkdtemp(prefix=f"mms-bench-{name}-"))
    settings = {
        "APP_ENV": "production", "SECRET_KEY": "bench-" + "k" * 40,
        "PLIVO_AUTH_ID": BENCH_AUTH_ID, "PLIVO_AUTH_TOKEN": BENCH_AUTH_TOKEN,
        "PLIVO_SENDER_NUMBERS": "+14155550100", "PUBLIC_BASE_URL": "https://mms.bench.example",
        "MEDIA_PROBE": "off", "LOG_LEVEL": "warning", "SENDS_PER_MINUTE_PER_USER": "1000000",
        "TASK_QUEUE_URL": f"sqlite:///{tmp}/tasks.db",
        "DATABASE_URL": f"sqlite:///{tmp}/bench.sqlite3",
    }
    if REDIS:  # several gunicorn workers share their rate limits through Redis
        redis_url = stack.enter_context(redis_server())
        settings["RATELIMIT_STORAGE_URI"] = redis_url + "/0"
    else:  # memory:// limits are only right for one worker (gunicorn.conf.py refuses more)
        settings["WEB_CONCURRENCY"] = "1"
    if database == "postgresql":
        settings["DATABASE_URL"] = stack.enter_context(postgres_server())
        settings["TASK_QUEUE_URL"] = redis_url + "/1"
    try:
        with dashboard_processes(settings, tmp, scrub=("WEB_CONCURRENCY", "GUNICORN_")) as base:
            dep = Deployment(**{f: getattr(base, f) for f in ("env", "url", "sim_url", "tmp")},
                             name=name)
            try:
                dep.flask("db", "upgrade", check=True)
                yield dep
            finally:
                dep.stop_all()
    finally:
        # The processes' log outlives the run, for a failed row to be looked into.
        log = tmp / "processes.log"
        if log.exists():
            shutil.copy(log, Path(tempfile.gettempdir()) / f"mms-bench-{name}-last.log")
        shutil.rmtree(tmp, ignore_errors=True)


# What a team's history reads like: a few hundred distinct texts once the names, invoice
# numbers and dates are filled in, so that a word can be common ("order"), rare (one
# invoice number) or absent, as in the searches the benchmark times.
TEMPLATES = (
    "Hi {name}, your order #{n} is ready for pickup at the {shop} shop.",
    "{name}, invoice {n} for ${amount} is due on {day}. Reply STOP to opt out.",
    "Thanks for visiting {shop}, {name}! Here is your receipt {n}.",
    "New arrivals at {shop} this week. Show this message for {pct}% off.",
    "{name}, your appointment on {day} is confirmed. Reference {n}.",
    "Reminder: invoice {n} ({day}) is still open. Questions? Call {shop}.",
    "Your repair {n} is done, {name}. Pick it up any time before 6 pm.",
    "Happy holidays from everyone at {shop}!",
)
NAMES = ("Anna", "Ben", "Chloé", "Dmitri", "Emeka", "Farah", "Gus", "Hana", "Ivan", "Jo")
SHOPS = ("Oak Street", "Harbour", "Main Street", "Westgate", "Riverside")
AREA_CODES = ("415", "604", "212", "416", "312", "206", "514", "617", "303", "778")
STATUS_MIX = ("delivered",) * 17 + ("sent", "undelivered", "failed")


def seeded_text(i: int) -> str:
    template = TEMPLATES[i % len(TEMPLATES)]
    return template.format(name=NAMES[(i // 8) % len(NAMES)], shop=SHOPS[(i // 80) % len(SHOPS)],
                           n=10_000 + (i * 7919) % 90_000, amount=f"{(i % 500) + 20}.00",
                           day=f"2025-{1 + i % 12:02d}-{1 + i % 28:02d}", pct=5 + i % 30)


def seeded_recipient(i: int) -> str:
    """Varied US/Canadian numbers, exchanges 200-999 (clear of the simulator's magic
    555-01xx numbers, which only a send would meet anyway)."""
    x = (i * 2_654_435_761) % 8_000_000
    return f"+1{AREA_CODES[i % len(AREA_CODES)]}{200 + x // 10_000}{x % 10_000:04d}"


def seed_messages(database_url: str, user_email: str, count: int, status: str = "delivered",
                  uuid_prefix: str | None = None, varied: bool = False) -> None:
    """Bulk insert `count` messages quickly (one statement per 20,000 rows). The times go
    through the app's own column type, so SQLite holds them as the app writes them (with
    microseconds): the history's and the export's cursors see what they see in use.
    `varied`: texts, numbers and statuses as a real history has (seeded_text, …)."""
    engine = create_engine(database_url)
    start = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    sqlite = database_url.startswith("sqlite")
    with engine.begin() as conn:
        user_id = conn.execute(text("SELECT id FROM users WHERE email = :e"),
                               {"e": user_email}).scalar_one()
        if not sqlite:  # as for any bulk load: the GIN index is made once, afterwards
            conn.execute(text("DROP INDEX IF EXISTS ix_messages_text_search"))
        batch = []
        statement = text(
            "INSERT INTO messages (public_id, created_by_id, idempotency_key, sender, recipient,"
            " recipient_reversed, text, media, status, status_sequence, attempts, plivo_uuid,"
            " created_at, updated_at)"
            " VALUES (:public_id, :uid, :key, '+14155550100', :recipient, :reversed, :text,"
            " '[]', :status, 0, 1, :plivo_uuid, :created_at, :created_at)"
        ).bindparams(bindparam("created_at", type_=UTCDateTime()))
        # `varied`: spread over 90 days (the overview's longest usual view), else a
        # second apart. Ten rows share each timestamp, as bursts of sends do.
        spacing = 90 * 86_400 / max(1, count // 10) if varied else 1
        for i in range(count):
            moment = start + dt.timedelta(seconds=(i // 10) * spacing)
            # 555-2000..555-9999: clear of the simulator's magic numbers.
            recipient = seeded_recipient(i) if varied else f"+1415555{2000 + i % 8000:04d}"
            batch.append({
                "public_id": uuid.uuid4().hex[:16], "uid": user_id, "key": f"seed-{i}",
                "recipient": recipient, "reversed": reversed_digits(recipient),
                "text": seeded_text(i) if varied else f"seeded message {i}",
                "status": STATUS_MIX[(i * 2_654_435_761 >> 8) % len(STATUS_MIX)] if varied else status,
                "plivo_uuid": f"{uuid_prefix}{i}" if uuid_prefix else None,
                "created_at": moment,
            })
            if len(batch) == 20_000:
                conn.execute(statement, batch)
                batch.clear()
        if batch:
            conn.execute(statement, batch)
        if not sqlite:
            conn.execute(text("SET maintenance_work_mem = '256MB'"))
            conn.execute(text(f"CREATE INDEX ix_messages_text_search ON messages "
                              f"USING gin ({SEARCH_COLUMN})"))
    if not sqlite:
        # As after any bulk load: otherwise autovacuum's pass over a million fresh rows,
        # and the writing out of their pages, start at some moment inside a measured run.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM (ANALYZE) messages"))
            conn.execute(text("CHECKPOINT"))
    engine.dispose()


def cursor_at(database_url: str, offset: int) -> str | None:
    engine = create_engine(database_url)
    with engine.connect() as conn:
        row = conn.execute(text("SELECT created_at, id FROM messages ORDER BY created_at DESC, id"
                                " DESC LIMIT 1 OFFSET :o"), {"o": offset}).first()
    engine.dispose()
    if row is None:
        return None
    moment = dt.datetime.fromisoformat(row[0]) if isinstance(row[0], str) else row[0]
    return encode_cursor(moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC), row[1])
