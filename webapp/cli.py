"""Command-line interface: `flask users ...`, `flask plivo-simulator`, `flask worker`, ..."""

from __future__ import annotations

import getpass
import os
import re
import secrets
import sys
from datetime import timedelta
from urllib.parse import urlsplit

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from webapp import audit
from webapp.auth import service as accounts
from webapp.auth.passwords import WeakPassword
from webapp.auth.sessions import forget_ended as forget_ended_sessions
from webapp.callbacks.reconcile import due_count, reconcile
from webapp.config import current_settings
from webapp.extensions import db
from webapp.overview.rollups import rebuild as rebuild_rollups
from webapp.sending.dispatch import recover_stalled

users = AppGroup("users", help="Manage staff accounts.")
messages = AppGroup("messages", help="Maintenance of the message table.")
stats = AppGroup("stats", help="The overview's figures (per-day rollups).")
audit_group = AppGroup("audit", help="The audit log of staff actions.")


def _fail(message: str) -> None:
    click.echo(f"Error: {message}", err=True)
    sys.exit(1)


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


@users.command("create")
@click.argument("email")
@click.option("--admin", is_flag=True, help="Give the account the admin role.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def create_user(email: str, admin: bool, password_stdin: bool) -> None:
    """Create an account (the password is asked for twice)."""
    password = _read_password(password_stdin)
    try:
        user = accounts.create_user(email, password, "admin" if admin else "staff")
    except (accounts.AccountError, WeakPassword) as exc:
        _fail(str(exc))
    click.echo(f"Created {user.role} account {user.email}.")


@users.command("list")
def list_users() -> None:
    """List every account."""
    for user in accounts.list_users():
        state = "active" if user.is_active else "deactivated"
        last = user.last_login_at.isoformat(timespec="seconds") if user.last_login_at else "never"
        click.echo(f"{user.email}\t{user.role}\t{state}\tlast login: {last}")


@users.command("set-password")
@click.argument("email")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def set_password(email: str, password_stdin: bool) -> None:
    """Set an account's password and end all its sessions."""
    user = accounts.find_user(email) or _fail(f"no account for {email}")
    password = _read_password(password_stdin)
    try:
        accounts.set_password(user, password)
    except WeakPassword as exc:
        _fail(str(exc))
    click.echo(f"Password changed for {user.email}; their sessions have ended.")


@users.command("deactivate")
@click.argument("email")
def deactivate(email: str) -> None:
    """Deactivate an account and end all its sessions."""
    user = accounts.find_user(email) or _fail(f"no account for {email}")
    try:
        accounts.set_active(user, False)
    except accounts.AccountError as exc:
        _fail(str(exc))
    click.echo(f"Deactivated {user.email}.")


@users.command("bootstrap")
def bootstrap() -> None:
    """On an empty database, create an admin and print its password once."""
    if accounts.has_users():
        return
    email = "admin@example.com"
    password = secrets.token_urlsafe(15)
    accounts.create_user(email, password, "admin", must_change_password=True)
    line = "=" * 64
    click.echo(f"{line}\nFirst run: an admin account was created.\n"
               f"  email:    {email}\n  password: {password}\n"
               f"Sign in at {current_settings().public_base_url}/login: you will be asked to "
               f"choose your own password first.\n{line}")


def _loopback_base(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    parts = urlsplit(value)
    if (parts.scheme not in ("http", "https") or parts.hostname not in ("127.0.0.1", "localhost")
            or parts.path.strip("/") or parts.query):
        raise click.BadParameter("expected a base URL on loopback, e.g. http://127.0.0.1:8000")
    return value


@click.command("plivo-simulator")
@click.option("--port", type=int, default=None, help="Port (default: SIMULATOR_PORT, 8025).")
@click.option("--callback-delay", type=float, default=1.0, show_default=True,
              help="Seconds between status callbacks.")
@click.option("--latency", type=float, default=0.0, help="Seconds to wait before answering.")
@click.option("--rate-per-5s", type=int, default=None, help="Answer 429 above this rate.")
@click.option("--deliver-to", default=None, metavar="URL", callback=_loopback_base,
              help="Post status callbacks to this http://127.0.0.1:PORT base instead of the "
                   "callback URL's host, as a TLS proxy would; they stay signed for the "
                   "original URL.")
@click.option("--drop-callbacks", type=click.FloatRange(0, 1), default=0.0,
              help="Share of status callbacks never posted (chaos).")
@click.option("--duplicate-callbacks", type=click.FloatRange(0, 1), default=0.0,
              help="Share of status callbacks posted twice (chaos).")
@click.option("--reorder-callbacks", type=click.FloatRange(0, 1), default=0.0,
              help="Share of messages whose callbacks arrive in reverse order (chaos).")
@click.option("--failing", type=click.FloatRange(0, 1), default=0.0,
              help="Share of ordinary messages that end undelivered or failed.")
@click.option("--pace", type=click.Choice(["real", "fast"]), default="real", show_default=True,
              envvar="SIMULATOR_PACE",
              help="real: Plivo's queue, dispatching at the account's MPS and each number's "
                   "limit, with expiry (error 420) and daily caps; fast: every message at "
                   "once (the test suite).")
@click.option("--mms-mps", type=click.FloatRange(0.01, 1000), default=None,
              help="The account's MMS a second (default: PLIVO_MMS_MPS).")
@click.option("--expiry-seconds", type=click.FloatRange(1, 10_800), default=10_800.0,
              show_default=True, help="Longest wait in Plivo's queue before error 420.")
@click.option("--message-url", default=None, metavar="URL",
              help="The Message URL customers' answers are posted to (default: next to each "
                   "message's status callback URL, i.e. PUBLIC_BASE_URL/webhooks/plivo/message).")
@click.option("--reply-delay", type=click.FloatRange(0, 3600), default=2.0, show_default=True,
              help="Seconds a magic customer (0555, 0556, 0557) takes to answer.")
@click.option("--number", "numbers", multiple=True, metavar="SPEC",
              help="One of the account's numbers, e.g. 14155550100=local, "
                   "14155550101=local:registered:10/s, 18005550100=tollfree:verified "
                   "(default: PLIVO_SENDER_NUMBERS, unregistered long codes).")
def plivo_simulator(port: int | None, callback_delay: float, latency: float,
                    rate_per_5s: int | None, deliver_to: str | None, drop_callbacks: float,
                    duplicate_callbacks: float, reorder_callbacks: float,
                    failing: float, pace: str, mms_mps: float | None, expiry_seconds: float,
                    message_url: str | None, reply_delay: float,
                    numbers: tuple[str, ...]) -> None:
    """Serve the Plivo simulator on 127.0.0.1 (sandbox mode)."""
    from werkzeug.serving import run_simple

    from webapp.gateway.simulator import BEHAVIOURS, Chaos, PlivoSimulator
    from webapp.gateway.simulator.pace import default_number, parse_number

    settings = current_settings()
    chaos = Chaos(drop=drop_callbacks, duplicate=duplicate_callbacks,
                  reorder=reorder_callbacks, failing=failing)
    try:
        described = ([parse_number(spec) for spec in numbers] if numbers
                     else [default_number(n) for n in settings.sender_numbers])
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--number") from None
    mps = (mms_mps or settings.plivo_mms_mps) if pace == "real" else None
    simulator = PlivoSimulator(settings.plivo_auth_id, settings.plivo_auth_token,
                               callback_delay=callback_delay, latency=latency,
                               rate_per_5s=rate_per_5s, deliver_to=deliver_to, chaos=chaos,
                               mms_mps=mps, numbers=described, expiry_seconds=expiry_seconds,
                               message_url=message_url, reply_delay=reply_delay)
    port = port or settings.simulator_port
    simulator.base_url = f"http://127.0.0.1:{port}"
    click.echo(f"Plivo simulator on http://127.0.0.1:{port} (account {settings.plivo_auth_id})")
    click.echo(f"  pace: {f'{mps:g} MMS a second, expiry {expiry_seconds:g} s' if mps else 'fast'}")
    for number in described:
        click.echo(f"  number +{number.number}: {number.number_type}, {number.limit().describe()}")
    for behaviour in BEHAVIOURS:
        click.echo(f"  +{behaviour.number}: {behaviour.happens}")
    run_simple("127.0.0.1", port, simulator.app, threaded=True)


@click.group("sandbox", invoke_without_command=True)
@click.option("--check", is_flag=True, help="Exit 0 in sandbox mode, 1 with real credentials.")
@click.pass_context
def sandbox(ctx: click.Context, check: bool) -> None:
    """Tell whether the app runs against the bundled simulator (and talk to it)."""
    if ctx.invoked_subcommand is not None:
        return
    on = current_settings().sandbox
    if not check:
        click.echo("sandbox" if on else "live")
    sys.exit(0 if on else 1)


@sandbox.command("reply")
@click.option("--from", "customer", required=True, help="The customer's number, e.g. +14155550123.")
@click.option("--to", "ours", default=None, help="Our number they write to (default: the first "
                                                 "of PLIVO_SENDER_NUMBERS).")
@click.option("--text", default="", help="What they write.")
@click.option("--picture", type=click.File("rb"), default=None,
              help="A picture they send with it (JPEG, PNG or GIF).")
def sandbox_reply(customer: str, ours: str | None, text: str, picture) -> None:
    """Make a sandbox customer send a message to one of our numbers: the simulator posts
    it, signed like Plivo, to the dashboard's Message URL."""
    import base64

    import requests

    from webapp.phones import e164

    settings = current_settings()
    if not settings.sandbox:
        _fail("Not in sandbox mode: real customers answer by themselves.")
    try:
        number = e164(customer)
    except ValueError as exc:
        _fail(f"--from: {exc}")
    body = {"from": number, "to": ours or settings.sender_numbers[0], "text": text,
            "url": settings.message_url}
    if picture is not None:
        data = picture.read(8 * 1024 * 1024)
        import filetype

        kind = filetype.guess(data)
        if kind is None or not kind.mime.startswith("image/"):
            _fail("--picture: not a picture (JPEG, PNG or GIF).")
        body |= {"picture_b64": base64.b64encode(data).decode(), "content_type": kind.mime}
    try:
        answer = requests.post(f"{settings.plivo_api_url}/__sim/reply", json=body, timeout=60)
    except requests.RequestException as exc:
        _fail(f"The simulator could not be reached at {settings.plivo_api_url}: {exc}")
    if answer.status_code != 200:
        _fail(f"The simulator refused: {answer.text[:200]}")
    status = answer.json().get("status")
    if not status or status >= 300:
        _fail(f"Posted, but the dashboard answered {status or 'nothing'} (is it running?).")
    click.echo(f"Sent: {number} -> {body['to']} ({status}).")


@click.command("worker")
@click.option("--threads", type=int, default=None, help="Worker threads (default QUEUE_WORKERS).")
def worker(threads: int | None) -> None:
    """Run a task-queue worker that sends queued messages."""
    from webapp.tasks import run_worker

    run_worker(current_app._get_current_object(), threads or current_settings().queue_workers)


@messages.command("recover")
@click.option("--older-than", type=int, default=None, help="Seconds (default QUEUE_LEASE_SECONDS).")
def recover(older_than: int | None) -> None:
    """Queue again messages the queue lost; resolve sends a killed worker left open.

    Workers run this every QUEUE_SWEEP_SECONDS by themselves.
    """
    counts = recover_stalled(older_than or current_settings().queue_lease_seconds)
    click.echo(", ".join(f"{name}: {count}" for name, count in counts.items()))


@messages.command("reconcile")
def reconcile_command() -> None:
    """Ask Plivo now about every message whose status callbacks are overdue.

    Workers do this every QUEUE_SWEEP_SECONDS by themselves; this runs it once, with a
    progress bar, for after an outage.
    """
    due = due_count()
    totals: dict[str, int] = {}
    with click.progressbar(length=due, label=f"Asking Plivo about {due} messages") as bar:
        while True:
            counts = reconcile(progress=bar.update)
            for name, count in counts.items():
                totals[name] = totals.get(name, 0) + count
            if not counts["looked up"] or counts["Plivo unreachable"]:
                break
    click.echo(", ".join(f"{name}: {count}" for name, count in totals.items()))


@stats.command("rebuild")
def stats_rebuild() -> None:
    """Recount the overview's figures from every message and callback.

    Workers keep them current by themselves (every QUEUE_SWEEP_SECONDS); run this after
    importing messages or editing the database by hand.
    """
    counts = rebuild_rollups()
    click.echo(", ".join(f"{name}: {count:,}" for name, count in counts.items())
               or "another worker was rebuilding at the same moment; its count stands")


_AGE = re.compile(r"([0-9]{1,5})d")


@audit_group.command("prune")
@click.option("--older-than", "older_than", required=True, metavar="DAYSd",
              help="Delete entries older than this many days, e.g. 400d (at least 30d).")
def audit_prune(older_than: str) -> None:
    """Delete audit entries older than a retention period (the log's only delete).

    Also forgets signed-in sessions that ended more than 30 days ago (their sign-ins and
    sign-outs stay in the audit log until pruned here)."""
    parsed = _AGE.fullmatch(older_than.strip())
    if parsed is None:
        _fail("--older-than takes a number of days, e.g. 400d.")
    days = int(parsed[1])
    if days < 30:
        _fail("--older-than must be at least 30d: recent entries are what an admin looks "
              "into first.")
    removed = audit.prune(timedelta(days=days), run_by=_os_user())
    forgotten = forget_ended_sessions()
    db.session.commit()
    click.echo(f"Deleted {removed:,} audit entries older than {days} days and "
               f"{forgotten:,} sessions that ended long ago.")


def _os_user() -> str:
    """Who ran a command, as the operating system knows them (for the audit log)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a bare container)
        return f"uid {os.getuid()}"


def init_app(app: Flask) -> None:
    for command in (users, messages, stats, audit_group, plivo_simulator, sandbox, worker):
        app.cli.add_command(command)
