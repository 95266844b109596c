"""Settings: read from the environment once, validated at start.

Every key is documented in `.env.example` and the README. A bad value raises
`ConfigError` whose message names the key; `wsgi.py` turns it into one line on
stderr and a non-zero exit, never a stack trace.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from flask import current_app

from webapp.number_limits import Limit, parse_overrides

APP_ENVS = ("development", "production", "testing")
SIGNATURE_MODES = ("enforce", "log-only")

# Credentials the bundled simulator accepts. They only ever reach a loopback
# simulator: sandbox mode refuses to point them at anything else.
SANDBOX_AUTH_ID = "MASANDBOX00000000000"
SANDBOX_AUTH_TOKEN = "sandbox-token-not-a-secret"  # noqa: S105
SANDBOX_SENDER = "+14155550100"
SANDBOX_SIMULATOR_PORT = 8025
DEFAULT_HELP_REPLY = ("You are texting our team's picture messages line. Reply STOP to stop "
                      "messages, START to get them again. Msg&data rates may apply.")

_AUTH_ID_RE = re.compile(r"^(MA|SA)[A-Z0-9]{18}$")


class ConfigError(ValueError):
    """A setting is missing or malformed. The message starts with the key."""


_UTC_ZONE = ZoneInfo("UTC")


@dataclass(frozen=True)
class Settings:
    app_env: str
    secret_key: str
    database_url: str
    instance_path: Path
    plivo_auth_id: str
    plivo_auth_token: str
    plivo_main_auth_token: str | None
    plivo_api_url: str
    sandbox: bool
    simulator_port: int
    sender_numbers: tuple[str, ...]
    public_base_url: str
    signature_mode: str
    ratelimit_storage_uri: str
    trusted_proxies: int
    task_queue_url: str
    queue_workers: int
    queue_sweep_seconds: int
    queue_lease_seconds: int
    send_rate_per_5s: int
    send_max_in_flight: int
    sends_per_minute_per_user: int
    media_probe: bool
    media_probe_allow_hosts: frozenset[str]
    probe_timeout_seconds: float
    max_upload_mb: int
    sent_no_receipt_after_minutes: int
    reconcile_after_minutes: int
    reconcile_max_share: int  # percent of SEND_RATE_PER_5S that lookups may use
    bcrypt_rounds: int
    log_level: str
    log_format: str
    display_timezone: ZoneInfo = _UTC_ZONE
    plivo_connect_timeout_seconds: float = 3.0
    plivo_read_timeout_seconds: float = 10.0
    session_idle_minutes: int = 30
    require_two_factor: bool = False
    max_batch_recipients: int = 10_000
    mms_price_estimate_usd: float = 0.02
    # Plivo's pace (issue 34): the account's MMS a second, each number's own limit where
    # set by hand, how long a message may wait in Plivo's queue, and how long a list send
    # may take before Confirm asks again.
    plivo_mms_mps: float = 0.25
    number_limits: Mapping[str, Limit] = field(default_factory=dict)
    message_expiry_seconds: int = 3600
    long_send_confirm_hours: int = 24
    powerpack_uuid: str | None = None
    # Replies (issue 35): the one answer to HELP, and the optional confirmation after STOP.
    help_reply_text: str = DEFAULT_HELP_REPLY
    opt_out_reply_text: str | None = None

    @property
    def production(self) -> bool:
        return self.app_env == "production"

    @property
    def testing(self) -> bool:
        return self.app_env == "testing"

    @property
    def status_callback_url(self) -> str:
        return self.public_base_url + "/webhooks/plivo/status"

    @property
    def message_url(self) -> str:
        """Where Plivo posts what customers send (the Plivo Application's Message URL)."""
        return self.public_base_url + "/webhooks/plivo/message"


def _int(env: Mapping[str, str], key: str, default: int, lo: int, hi: int) -> int:
    raw = env.get(key, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{key}: expected a whole number, got {raw!r}") from None
    if not lo <= value <= hi:
        raise ConfigError(f"{key}: must be between {lo} and {hi}, got {value}")
    return value


def _float(env: Mapping[str, str], key: str, default: float, lo: float, hi: float) -> float:
    raw = env.get(key, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{key}: expected a number, got {raw!r}") from None
    if not lo <= value <= hi:
        raise ConfigError(f"{key}: must be between {lo} and {hi}, got {value}")
    return value


def _text(env: Mapping[str, str], key: str, default: str | None, most: int) -> str | None:
    """A message text from the environment: at most `most` characters, no control
    characters; an empty value means `default`."""
    raw = env.get(key, "").strip()
    if not raw:
        return default
    if len(raw) > most:
        raise ConfigError(f"{key}: at most {most} characters, got {len(raw)}")
    if any(ord(ch) < 32 for ch in raw):
        raise ConfigError(f"{key}: must be one line of text with no control characters")
    return raw


def _choice(env: Mapping[str, str], key: str, default: str, choices: tuple[str, ...]) -> str:
    value = env.get(key, "").strip().lower() or default
    if value not in choices:
        raise ConfigError(f"{key}: must be one of {', '.join(choices)}, got {value!r}")
    return value


def _flag(env: Mapping[str, str], key: str, default: bool) -> bool:
    raw = env.get(key, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{key}: expected on or off, got {raw!r}")


def _http_url(key: str, value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{key}: expected an http(s) URL, got {value!r}")
    if parts.query or parts.fragment:
        raise ConfigError(f"{key}: must not carry a query or fragment")
    return value.rstrip("/")


def _e164_list(key: str, raw: str) -> tuple[str, ...]:
    numbers = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        try:
            parsed = phonenumbers.parse(item, "US")
        except phonenumbers.NumberParseException:
            raise ConfigError(f"{key}: {item!r} is not a phone number") from None
        if not phonenumbers.is_valid_number(parsed) or phonenumbers.region_code_for_number(
            parsed
        ) not in ("US", "CA"):
            raise ConfigError(f"{key}: {item!r} is not a valid US or Canadian number")
        e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
        if e164 not in numbers:
            numbers.append(e164)
    if not numbers:
        raise ConfigError(f"{key}: give at least one MMS-enabled number")
    return tuple(numbers)


def _timezone(env: Mapping[str, str], key: str) -> ZoneInfo:
    name = env.get(key, "").strip() or "UTC"
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"{key}: {name!r} is not an IANA time zone name, such as "
                          "America/New_York or UTC") from exc


def _secret_key(env: Mapping[str, str], app_env: str, instance_path: Path) -> str:
    value = env.get("SECRET_KEY", "").strip()
    if value:
        if len(value) < 32:
            raise ConfigError("SECRET_KEY: must be at least 32 characters")
        return value
    if app_env == "production":
        raise ConfigError("SECRET_KEY: required in production (python -c 'import secrets; "
                          "print(secrets.token_hex(32))')")
    if app_env == "testing":
        return secrets.token_hex(32)
    # Development: generate once and keep it, so sessions survive a restart.
    key_file = instance_path / "secret_key"
    if key_file.exists():
        return key_file.read_text().strip()
    instance_path.mkdir(parents=True, exist_ok=True)
    value = secrets.token_hex(32)
    key_file.write_text(value)
    key_file.chmod(0o600)
    return value


def load_settings(env: Mapping[str, str] | None = None, instance_path: Path | None = None) -> Settings:
    """Build Settings from `env` (default: the process environment)."""
    env = os.environ if env is None else env
    instance_path = Path(env.get("INSTANCE_PATH") or instance_path or Path.cwd() / "instance")
    app_env = _choice(env, "APP_ENV", "development", APP_ENVS)

    auth_id = env.get("PLIVO_AUTH_ID", "").strip()
    auth_token = env.get("PLIVO_AUTH_TOKEN", "").strip()
    if bool(auth_id) != bool(auth_token):
        missing = "PLIVO_AUTH_TOKEN" if auth_id else "PLIVO_AUTH_ID"
        raise ConfigError(f"{missing}: set both PLIVO_AUTH_ID and PLIVO_AUTH_TOKEN, or neither "
                          "for sandbox mode")
    sandbox = not auth_id
    simulator_port = _int(env, "SIMULATOR_PORT", SANDBOX_SIMULATOR_PORT, 1, 65535)
    if sandbox:
        if app_env == "production":
            raise ConfigError("PLIVO_AUTH_ID: production needs real Plivo credentials")
        auth_id, auth_token = SANDBOX_AUTH_ID, SANDBOX_AUTH_TOKEN
        api_url = _http_url("PLIVO_API_URL", env.get("PLIVO_API_URL", "").strip()
                            or f"http://127.0.0.1:{simulator_port}")
        if urlsplit(api_url).hostname not in ("127.0.0.1", "localhost", "::1"):
            raise ConfigError("PLIVO_API_URL: sandbox mode only talks to a simulator on "
                              "127.0.0.1; set PLIVO_AUTH_ID and PLIVO_AUTH_TOKEN for a real account")
    else:
        if not _AUTH_ID_RE.match(auth_id):
            raise ConfigError("PLIVO_AUTH_ID: expected MA or SA followed by 18 capital letters "
                              "or digits")
        api_url = _http_url("PLIVO_API_URL",
                            env.get("PLIVO_API_URL", "").strip() or "https://api.plivo.com")

    senders_raw = env.get("PLIVO_SENDER_NUMBERS", "").strip()
    if not senders_raw and not sandbox:
        raise ConfigError("PLIVO_SENDER_NUMBERS: required with real credentials "
                          "(your MMS-enabled Plivo numbers, comma-separated)")
    sender_numbers = _e164_list("PLIVO_SENDER_NUMBERS", senders_raw or SANDBOX_SENDER)

    public_base_url = _http_url(
        "PUBLIC_BASE_URL", env.get("PUBLIC_BASE_URL", "").strip() or "http://127.0.0.1:5000"
    )
    if app_env == "production" and not public_base_url.startswith("https://"):
        raise ConfigError("PUBLIC_BASE_URL: must be https:// in production")

    database_url = env.get("DATABASE_URL", "").strip() or f"sqlite:///{instance_path}/mms.sqlite3"
    if not re.match(r"^(sqlite|postgresql(\+psycopg)?)://", database_url):
        raise ConfigError("DATABASE_URL: expected sqlite:///PATH or postgresql+psycopg://...")

    task_queue_url = (env.get("TASK_QUEUE_URL", "").strip()
                      or f"sqlite:///{instance_path}/tasks.sqlite3")
    if not re.match(r"^(sqlite:///.+|redis://.+|rediss://.+|immediate|memory)$", task_queue_url):
        raise ConfigError("TASK_QUEUE_URL: expected sqlite:///PATH, redis://..., or for tests "
                          "immediate or memory")
    if task_queue_url in ("immediate", "memory") and app_env != "testing":
        raise ConfigError(f"TASK_QUEUE_URL: {task_queue_url} is for tests only")

    ratelimit_storage_uri = env.get("RATELIMIT_STORAGE_URI", "").strip() or "memory://"
    if not re.match(r"^(memory|redis|rediss)://", ratelimit_storage_uri):
        raise ConfigError("RATELIMIT_STORAGE_URI: expected memory:// or redis://...")

    bcrypt_rounds = _int(env, "BCRYPT_ROUNDS", 12, 4, 16)
    if bcrypt_rounds < 12 and app_env != "testing":
        raise ConfigError("BCRYPT_ROUNDS: must be at least 12 outside tests")

    allow_hosts = frozenset(
        h.strip().lower() for h in env.get("MEDIA_PROBE_ALLOW_HOSTS", "").split(",") if h.strip()
    )
    if allow_hosts and app_env == "production":
        raise ConfigError("MEDIA_PROBE_ALLOW_HOSTS: test-only, refused in production")

    powerpack = env.get("PLIVO_POWERPACK_UUID", "").strip() or None
    if powerpack and not re.fullmatch(r"[0-9a-fA-F-]{32,36}", powerpack):
        raise ConfigError("PLIVO_POWERPACK_UUID: expected the Powerpack's UUID, e.g. "
                          "d35f2e82-d387-427f-8d71-13a4a6de6e60")
    try:
        number_limits = parse_overrides(env.get("PLIVO_NUMBER_LIMITS", ""))
    except ValueError as exc:
        raise ConfigError(f"PLIVO_NUMBER_LIMITS: {exc}") from None

    return Settings(
        app_env=app_env,
        secret_key=_secret_key(env, app_env, instance_path),
        database_url=database_url,
        instance_path=instance_path,
        plivo_auth_id=auth_id,
        plivo_auth_token=auth_token,
        plivo_main_auth_token=env.get("PLIVO_MAIN_AUTH_TOKEN", "").strip() or None,
        plivo_api_url=api_url,
        sandbox=sandbox,
        simulator_port=simulator_port,
        sender_numbers=sender_numbers,
        public_base_url=public_base_url,
        signature_mode=_choice(env, "PLIVO_SIGNATURE_MODE", "enforce", SIGNATURE_MODES),
        ratelimit_storage_uri=ratelimit_storage_uri,
        trusted_proxies=_int(env, "TRUSTED_PROXIES", 0, 0, 5),
        task_queue_url=task_queue_url,
        queue_workers=_int(env, "QUEUE_WORKERS", 10, 1, 100),
        queue_sweep_seconds=_int(env, "QUEUE_SWEEP_SECONDS", 30, 1, 3600),
        # Longer than a send's whole retry budget (about 2 minutes).
        queue_lease_seconds=_int(env, "QUEUE_LEASE_SECONDS", 180, 1, 86_400),
        # 12 under Plivo's 300 (57.6 a second, 96 % of the cap): a request is counted
        # before it travels, and requests counted 5 s apart can arrive closer together.
        # The limiter also spreads the window over its seconds (a fifth plus 2 per second), so
        # no burst at a window's start meets the last requests of the one before (in
        # bursts, 290 let 301 arrive within 5 s; 288 too, with two worker processes).
        send_rate_per_5s=_int(env, "SEND_RATE_PER_5S", 288, 1, 300),
        send_max_in_flight=_int(env, "SEND_MAX_IN_FLIGHT", 10, 1, 100),
        sends_per_minute_per_user=_int(env, "SENDS_PER_MINUTE_PER_USER", 30, 1, 1_000_000),
        # The simulator fetches no media and sandbox machines may have no network.
        media_probe=_flag(env, "MEDIA_PROBE", not sandbox),
        media_probe_allow_hosts=allow_hosts,
        probe_timeout_seconds=_float(env, "PROBE_TIMEOUT_SECONDS", 3.0, 0.1, 3.0),
        max_upload_mb=_int(env, "MAX_UPLOAD_MB", 12, 1, 50),
        sent_no_receipt_after_minutes=_int(env, "SENT_NO_RECEIPT_AFTER_MINUTES", 60, 1, 10_080),
        reconcile_after_minutes=_int(env, "RECONCILE_AFTER_MINUTES", 15, 1, 1_440),
        reconcile_max_share=_int(env, "RECONCILE_MAX_SHARE", 10, 1, 50),
        bcrypt_rounds=bcrypt_rounds,
        log_level=_choice(env, "LOG_LEVEL", "info", ("debug", "info", "warning", "error")).upper(),
        log_format=_choice(env, "LOG_FORMAT", "json" if app_env == "production" else "text",
                           ("json", "text")),
        display_timezone=_timezone(env, "DISPLAY_TIMEZONE"),
        plivo_connect_timeout_seconds=_float(env, "PLIVO_CONNECT_TIMEOUT_SECONDS", 3.0, 0.1, 3.0),
        plivo_read_timeout_seconds=_float(env, "PLIVO_READ_TIMEOUT_SECONDS", 10.0, 0.1, 10.0),
        session_idle_minutes=_int(env, "SESSION_IDLE_MINUTES", 30, 2, 720),
        require_two_factor=_flag(env, "REQUIRE_TWO_FACTOR", False),
        max_batch_recipients=_int(env, "MAX_BATCH_RECIPIENTS", 10_000, 1, 100_000),
        mms_price_estimate_usd=_float(env, "MMS_PRICE_ESTIMATE_USD", 0.02, 0.0, 10.0),
        # Plivo's sign-up default; raised only by Plivo support (console: Messaging > Overview).
        plivo_mms_mps=_float(env, "PLIVO_MMS_MPS", 0.25, 0.01, 1000.0),
        number_limits=number_limits,
        # A guard, not the plan: messages are handed over at the pace Plivo dispatches them,
        # so one still queued after an hour means Plivo itself fell behind (PLIVO.md 7a.3).
        message_expiry_seconds=_int(env, "PLIVO_MESSAGE_EXPIRY_SECONDS", 3600, 5, 10_799),
        long_send_confirm_hours=_int(env, "LONG_SEND_CONFIRM_HOURS", 24, 1, 24 * 35),
        powerpack_uuid=powerpack,
        help_reply_text=_text(env, "HELP_REPLY_TEXT", DEFAULT_HELP_REPLY, 320),
        # Off by default: Plivo and the carriers may already confirm an opt-out themselves.
        opt_out_reply_text=_text(env, "OPT_OUT_REPLY_TEXT", None, 320),
    )


def current_settings() -> Settings:
    """The Settings of the app handling the current request or task."""
    return current_app.extensions["settings"]
