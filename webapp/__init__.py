"""The staff MMS dashboard: application factory."""

from __future__ import annotations

import os
import sqlite3
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from flask import Flask, jsonify, redirect, url_for
from sqlalchemy import event, exc, text
from sqlalchemy.engine import Engine
from werkzeug.middleware.proxy_fix import ProxyFix

from webapp.config import ConfigError, Settings, load_settings
from webapp.extensions import csrf, db, limiter, login_manager, migrate

__all__ = ["ConfigError", "create_app"]

ROOT = Path(__file__).resolve().parent.parent
# The interpreter the project supports (.python-version, requires-python). The media
# probe's address checks carry their own table of special ranges, so no patch release of
# ipaddress (whose is_global was wrong before 3.11.10, CVE-2024-4032) is relied on.
MIN_PYTHON = (3, 11)


def check_python(version: tuple[int, ...] = tuple(sys.version_info[:3])) -> None:
    if version[:2] < MIN_PYTHON:
        raise ConfigError(f"Python {'.'.join(map(str, MIN_PYTHON))} or newer is needed "
                          f"(this is {'.'.join(map(str, version))}).")


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection, _record):
    # WAL lets the web server read while the worker writes; foreign keys are
    # off by default in SQLite. The busy timeout is set through connect_args.
    if isinstance(dbapi_connection, sqlite3.Connection):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()


# A pooled connection unused for longer than this is tested before a request gets it.
PING_AFTER_IDLE_SECONDS = 1.0


def _ping_connections_after_idle(engine: Engine) -> None:
    """Test a pooled connection with a round trip only when it has sat idle, so a
    PostgreSQL restart or an idle-timeout costs no request, while a busy worker does not
    pay a round trip per request for it (pool_pre_ping does: 0.46 ms of 7 ms per history
    page, and ~0.4 ms of PostgreSQL's own CPU). A restart under traffic can still fail
    the requests in flight, as it would anyway; the pool then replaces every connection.
    """

    @event.listens_for(engine, "checkin")
    def remember_checkin(_dbapi_connection, record):
        record.info["checked_in_at"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def ping_if_idle(dbapi_connection, record, _proxy):
        checked_in_at = record.info.get("checked_in_at")
        if checked_in_at is None or time.monotonic() - checked_in_at < PING_AFTER_IDLE_SECONDS:
            return  # a brand-new connection, or one just used
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as error:
            # The pool throws this connection away and hands out a fresh one.
            raise exc.DisconnectionError(str(error)) from error


def create_app(config: Mapping[str, str] | None = None) -> Flask:
    """Build the app. `config` replaces the process environment (tests pass their own)."""
    check_python()
    app = Flask(
        __name__,
        template_folder=str(ROOT / "templates"),
        static_folder=str(ROOT / "static"),
        instance_path=str(ROOT / "instance"),
    )
    if config is None:
        from dotenv import load_dotenv

        load_dotenv(ROOT / ".env")
        config = os.environ
    settings = load_settings(config, instance_path=Path(app.instance_path))
    _configure(app, settings)

    from webapp import logs, security

    logs.init_app(app)
    security.init_app(app)

    db.init_app(app)
    if not settings.database_url.startswith("sqlite"):
        with app.app_context():
            _ping_connections_after_idle(db.engine)
    migrate.init_app(app, db, directory=str(ROOT / "migrations"), render_as_batch=True,
                     compare_type=True)
    csrf.init_app(app)
    limiter.init_app(app)
    login_manager.init_app(app)

    from webapp import tasks
    from webapp.callbacks.guard import confirm_v2_callback, forget_expired
    from webapp.callbacks.reconcile import reconcile
    from webapp.conversations.followup import after_inbound, inbound_waiting
    from webapp.lists.lanes import dispatch_lane, restart_lanes
    from webapp.overview.rollups import refresh as refresh_rollups
    from webapp.sending import senders
    from webapp.sending.dispatch import dispatch_message, probe_circuit, recover_stalled
    from webapp.sending.expired import retry_expired

    tasks.init_app(app, tasks.Handlers(
        dispatch_message=dispatch_message, recover_stalled=recover_stalled,
        confirm_callback=confirm_v2_callback, forget_expired=forget_expired,
        reconcile=reconcile, probe_circuit=probe_circuit, refresh_rollups=refresh_rollups,
        dispatch_batch=dispatch_lane, restart_batches=restart_lanes,
        refresh_numbers=senders.refresh, retry_expired=retry_expired,
        after_inbound=after_inbound, inbound_waiting=inbound_waiting))

    from webapp.messages import presentation

    presentation.init_app(app)
    # One blueprint per capability; each package's views module holds its `bp`.
    from webapp.audit_log.views import bp as audit_log_bp
    from webapp.auth.views import bp as auth_bp
    from webapp.callbacks.views import bp as callbacks_bp
    from webapp.conversations.views import bp as conversations_bp
    from webapp.conversations.webhook import bp as inbound_bp
    from webapp.history.views import bp as history_bp
    from webapp.lists.views import bp as lists_bp
    from webapp.overview.views import bp as overview_bp
    from webapp.pictures.views import bp as pictures_bp
    from webapp.sending.views import bp as sending_bp

    for blueprint in (auth_bp, overview_bp, sending_bp, history_bp, pictures_bp, lists_bp,
                      callbacks_bp, audit_log_bp, conversations_bp, inbound_bp):
        app.register_blueprint(blueprint)

    from webapp import cli, errors

    errors.init_app(app)
    cli.init_app(app)

    @app.get("/livez")
    @limiter.exempt
    def livez():
        """The process answers: no database, no session. The benchmarks' floor."""
        return "ok\n", 200, {"Content-Type": "text/plain"}

    @app.get("/favicon.ico")
    @limiter.exempt
    def favicon():
        """Browsers ask here whatever the page says; the icon is an SVG in static/."""
        return redirect(url_for("static", filename="favicon.svg"), 301)

    @app.get("/healthz")
    @limiter.exempt
    def healthz():
        try:
            db.session.execute(text("SELECT 1"))
        except Exception:  # any database failure means "not healthy"
            app.logger.exception("health check: database unreachable")
            db.session.rollback()
            return jsonify(status="unavailable", database="unreachable"), 503
        return jsonify(status="ok", database="ok")

    from webapp.gateway.simulator import BEHAVIOURS, display_number

    # The compose page's sandbox hint, from the simulator's own table.
    sandbox_numbers = [(display_number(b.number), b.hint) for b in BEHAVIOURS if b.hint]

    from flask_login import current_user

    from webapp.gateway import circuit

    @app.context_processor
    def inject_globals():
        return {"sandbox": settings.sandbox, "sandbox_numbers": sandbox_numbers,
                "plivo_paused": _plivo_paused, "idle_seconds": settings.session_idle_minutes * 60}

    def _plivo_paused():
        """The banner's facts while Plivo refuses the account (templates call it, so a
        page without the banner's place asks nothing)."""
        if not current_user.is_authenticated:
            return None
        try:
            return circuit.paused()
        except Exception:  # an error page must still render when the database is down
            app.logger.exception("reading the Plivo circuit failed")
            db.session.rollback()
            return None

    return app


def _configure(app: Flask, settings: Settings) -> None:
    from webapp.auth import sessions

    app.extensions["settings"] = settings
    engine_options: dict = {}
    if settings.database_url.startswith("sqlite"):
        Path(settings.instance_path).mkdir(parents=True, exist_ok=True)
        engine_options["connect_args"] = {"timeout": 15}
    app.config.update(
        SECRET_KEY=settings.secret_key,
        TESTING=settings.testing,
        SQLALCHEMY_DATABASE_URI=settings.database_url,
        SQLALCHEMY_ENGINE_OPTIONS=engine_options,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.production,
        SESSION_COOKIE_NAME="__Host-session" if settings.production else "session",
        REMEMBER_COOKIE_HTTPONLY=True,
        REMEMBER_COOKIE_SAMESITE="Lax",
        REMEMBER_COOKIE_SECURE=settings.production,
        PERMANENT_SESSION_LIFETIME=sessions.ABSOLUTE,  # the cookie lives as long as its row
        MAX_CONTENT_LENGTH=256 * 1024,
        WTF_CSRF_TIME_LIMIT=60 * 60 * 8,
        RATELIMIT_STORAGE_URI=settings.ratelimit_storage_uri,
        RATELIMIT_HEADERS_ENABLED=True,
        RATELIMIT_SWALLOW_ERRORS=False,
    )
    if settings.trusted_proxies:
        n = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n)  # type: ignore[method-assign]

