"""Configuration, security headers, error pages, health, migrations, CLI, route list."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from flask import url_for
from sqlalchemy import create_engine, inspect

from tests.conftest import PASSWORD, base_env, login
from tests.helpers import clean_environment, url
from webapp import create_app
from webapp.config import ConfigError, load_settings
from webapp.extensions import db
from webapp.models import User

ROOT = Path(__file__).resolve().parent.parent


# ---- configuration ------------------------------------------------------------------------
@pytest.mark.parametrize(("overrides", "key"), [
    ({"APP_ENV": "staging"}, "APP_ENV"),
    ({"PLIVO_AUTH_ID": "MAABCDEFGHIJKLMNOPQR"}, "PLIVO_AUTH_TOKEN"),
    ({"PLIVO_AUTH_TOKEN": "x"}, "PLIVO_AUTH_ID"),
    ({"PLIVO_AUTH_ID": "ma-lowercase-id-0000", "PLIVO_AUTH_TOKEN": "x",
      "PLIVO_SENDER_NUMBERS": "+14155550100"}, "PLIVO_AUTH_ID"),
    ({"PLIVO_AUTH_ID": "MAABCDEFGHIJKLMNOPQR", "PLIVO_AUTH_TOKEN": "x"}, "PLIVO_SENDER_NUMBERS"),
    ({"PLIVO_SENDER_NUMBERS": "+442071838750"}, "PLIVO_SENDER_NUMBERS"),
    ({"PLIVO_SENDER_NUMBERS": "not a number"}, "PLIVO_SENDER_NUMBERS"),
    ({"PUBLIC_BASE_URL": "ftp://example.com"}, "PUBLIC_BASE_URL"),
    ({"PUBLIC_BASE_URL": "https://example.com/?a=b"}, "PUBLIC_BASE_URL"),
    ({"PLIVO_API_URL": "https://api.plivo.com"}, "PLIVO_API_URL"),  # sandbox must stay local
    ({"DATABASE_URL": "mysql://db"}, "DATABASE_URL"),
    ({"TASK_QUEUE_URL": "amqp://x"}, "TASK_QUEUE_URL"),
    ({"RATELIMIT_STORAGE_URI": "memcached://x"}, "RATELIMIT_STORAGE_URI"),
    ({"TRUSTED_PROXIES": "-1"}, "TRUSTED_PROXIES"),
    ({"TRUSTED_PROXIES": "two"}, "TRUSTED_PROXIES"),
    ({"PLIVO_SIGNATURE_MODE": "off"}, "PLIVO_SIGNATURE_MODE"),
    ({"SEND_RATE_PER_5S": "301"}, "SEND_RATE_PER_5S"),
    ({"SEND_MAX_IN_FLIGHT": "0"}, "SEND_MAX_IN_FLIGHT"),
    ({"MEDIA_PROBE": "maybe"}, "MEDIA_PROBE"),
    ({"PROBE_TIMEOUT_SECONDS": "30"}, "PROBE_TIMEOUT_SECONDS"),
    ({"SECRET_KEY": "short"}, "SECRET_KEY"),
    ({"APP_ENV": "development", "BCRYPT_ROUNDS": "10", "TASK_QUEUE_URL": "sqlite:///q.db"},
     "BCRYPT_ROUNDS"),
    ({"APP_ENV": "development", "TASK_QUEUE_URL": "memory"}, "TASK_QUEUE_URL"),
])
def test_bad_configuration_names_the_key(tmp_path, overrides, key):
    with pytest.raises(ConfigError) as caught:
        load_settings(base_env(tmp_path, **overrides))
    assert str(caught.value).startswith(f"{key}:")


def test_production_requires_a_secret_key_and_credentials(tmp_path):
    env = base_env(tmp_path, APP_ENV="production", BCRYPT_ROUNDS="12", TASK_QUEUE_URL="")
    with pytest.raises(ConfigError, match=r"^PLIVO_AUTH_ID"):
        load_settings(env)
    env.update(PLIVO_AUTH_ID="MA" + "B" * 18, PLIVO_AUTH_TOKEN="t",
               PLIVO_SENDER_NUMBERS="+14155550100", PLIVO_API_URL="",
               PUBLIC_BASE_URL="https://dash.example.com")
    with pytest.raises(ConfigError, match=r"^SECRET_KEY"):
        load_settings(env)
    env["SECRET_KEY"] = "k" * 64
    assert load_settings(env).production


def test_development_secret_key_is_generated_once(tmp_path):
    env = base_env(tmp_path, APP_ENV="development", BCRYPT_ROUNDS="12", TASK_QUEUE_URL="")
    first = load_settings(env).secret_key
    assert load_settings(env).secret_key == first
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0


def test_bad_configuration_stops_the_cli_with_one_line(tmp_path):
    env = clean_environment()
    env.update(base_env(tmp_path, TRUSTED_PROXIES="lots"))
    result = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "routes"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert result.stderr.strip() == ("Configuration error: TRUSTED_PROXIES: expected a whole "
                                     "number, got 'lots'")


# ---- headers, errors, health ----------------------------------------------------------------
def _get_routes(app) -> list[tuple[str, str]]:
    routes = []
    with app.test_request_context():
        for rule in app.url_map.iter_rules():
            if "GET" not in rule.methods:
                continue
            args = {name: "1" for name in rule.arguments}
            if rule.endpoint == "static":
                args = {"filename": "css/app.css"}
            routes.append((rule.endpoint, url_for(rule.endpoint, **args)))
    return routes


def test_security_headers_on_every_route(app, client, login_as):
    login_as("admin")
    for endpoint, path in _get_routes(app):
        response = client.get(path)
        response.get_data()  # drain streamed bodies (the CSV export)
        response.close()
        headers = response.headers
        csp = headers.get("Content-Security-Policy", "")
        for directive in ("default-src 'self'", "object-src 'none'", "base-uri 'none'",
                          "frame-ancestors 'none'", "img-src 'self' https:"):
            assert directive in csp, (endpoint, csp)
        assert headers["X-Content-Type-Options"] == "nosniff", endpoint
        assert headers["Referrer-Policy"], endpoint
        assert len(headers["X-Request-ID"]) >= 8, endpoint
        assert "'unsafe-inline'" not in csp
        if endpoint != "static":
            assert headers["Cache-Control"] == "no-store", endpoint
        assert "Strict-Transport-Security" not in headers  # only in production


def test_request_id_is_echoed_when_well_formed(client):
    assert client.get(url("auth.login"), headers={"X-Request-ID": "abcdef123456"}
                      ).headers["X-Request-ID"] == "abcdef123456"
    assert client.get(url("auth.login"), headers={"X-Request-ID": "bad id <script>"}
                      ).headers["X-Request-ID"] != "bad id <script>"


def test_friendly_error_pages(app, client, login_as):
    login_as("staff")
    not_found = client.get("/no/such/page")
    assert not_found.status_code == 404 and "Page not found" in not_found.get_data(as_text=True)
    assert client.put(url("auth.login")).status_code == 405
    big = client.post(url("auth.login"), data={"email": "x" * 300_000})
    assert big.status_code == 413


def test_unexpected_error_gives_500_page_without_trace(make_app):
    app = make_app()
    app.config["PROPAGATE_EXCEPTIONS"] = False  # behave as in production

    @app.get("/boom")
    def boom():
        raise RuntimeError("secret internals")

    response = app.test_client().get("/boom")
    assert response.status_code == 500
    body = response.get_data(as_text=True)
    assert "Something went wrong" in body and "secret internals" not in body


def test_livez_answers_without_the_database(client):
    response = client.get(url("livez"))
    assert response.status_code == 200 and response.get_data(as_text=True) == "ok\n"


def test_healthz(app, client, tmp_path):
    response = client.get(url("healthz"))
    assert response.status_code == 200 and response.json == {"status": "ok", "database": "ok"}
    broken = create_app(base_env(tmp_path, DATABASE_URL=f"sqlite:///{tmp_path}/no/such/dir/x.db"))
    response = broken.test_client().get(url("healthz"))
    assert response.status_code == 503 and response.json["status"] == "unavailable"


def test_logs_carry_request_id_and_no_password(make_app, client, make_user, capfd):
    app = make_app(LOG_FORMAT="json", LOG_LEVEL="info")
    browser = app.test_client()
    with app.app_context():
        from webapp.auth import service

        service.create_user("amy@example.com", PASSWORD)
    login(browser, "amy@example.com", "a wrong password here")
    login(browser, "amy@example.com")
    lines = [json.loads(line) for line in capfd.readouterr().err.splitlines()
             if line.startswith("{")]
    messages = {line["message"] for line in lines}
    assert {"audit sign_in_failed", "audit sign_in"} <= messages
    failed = next(line for line in lines if line["message"] == "audit sign_in_failed")
    assert failed["request_id"] != "-" and failed["by"] == "amy@example.com"
    raw = json.dumps(lines)
    assert PASSWORD not in raw and "a wrong password here" not in raw


# ---- migrations -----------------------------------------------------------------------------
def test_migrations_upgrade_an_empty_database_with_no_drift(tmp_path):
    env = clean_environment()
    env.update(base_env(tmp_path, DATABASE_URL=f"sqlite:///{tmp_path}/migrated.sqlite3"))
    for command in (["db", "upgrade"], ["db", "check"]):
        result = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", *command],
                                cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr[-2000:]
    assert "No new upgrade operations detected" in result.stdout + result.stderr
    tables = set(inspect(create_engine(f"sqlite:///{tmp_path}/migrated.sqlite3")).get_table_names())
    assert {"users", "messages", "status_events", "alembic_version"} <= tables


def test_the_search_migration_indexes_messages_already_there(tmp_path):
    """Messages written before the search indexes existed are found after the upgrade:
    their reversed digits are filled in and FTS5 is built from them."""
    env = clean_environment()
    database = f"sqlite:///{tmp_path}/old.sqlite3"
    env.update(base_env(tmp_path, DATABASE_URL=database))

    def flask(*args: str) -> None:
        result = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", *args],
                                cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr[-2000:]

    flask("db", "upgrade", "b0f5a8957ae2")
    engine = create_engine(database)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO users (email, password_hash, role, is_active, session_version, "
            "must_change_password, created_at) VALUES ('old@example.com', 'x', 'staff', 1, 1, 0, "
            "'2026-01-01 00:00:00.000000')")
        conn.exec_driver_sql(
            "INSERT INTO messages (public_id, created_by_id, idempotency_key, sender, recipient, "
            "text, media, status, status_sequence, attempts, created_at, updated_at, version) "
            "VALUES ('oldmessage', 1, 'k', '+14155550100', '+16045557319', 'Invoice 4471 is due',"
            " '[]', 'delivered', 0, 1, '2026-01-01 00:00:00.000000', "
            "'2026-01-01 00:00:00.000000', 1)")
    flask("db", "upgrade")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT recipient_reversed FROM messages").scalar_one() == (
            "91375554061")
        assert conn.exec_driver_sql("SELECT rowid FROM messages_fts WHERE messages_fts MATCH "
                                    "'invoice AND 4471'").scalar_one() == 1
    flask("db", "downgrade", "b0f5a8957ae2")  # and back, leaving the table as it was
    with engine.connect() as conn:
        assert "messages_fts" not in inspect(conn).get_table_names()
        assert "recipient_reversed" not in {c["name"] for c in inspect(conn).get_columns("messages")}
    engine.dispose()


# ---- CLI ------------------------------------------------------------------------------------
def test_cli_users_lifecycle(app, runner):
    result = runner.invoke(args=["users", "create", "Boss@Example.com", "--admin",
                                 "--password-stdin"], input="a long enough secret\n")
    assert result.exit_code == 0, result.output
    assert "Created admin account boss@example.com" in result.output
    dup = runner.invoke(args=["users", "create", "boss@example.com", "--password-stdin"],
                        input="a long enough secret\n")
    assert dup.exit_code == 1 and "already exists" in dup.output
    weak = runner.invoke(args=["users", "create", "w@example.com", "--password-stdin"],
                         input="short\n")
    assert weak.exit_code == 1 and "at least 12" in weak.output
    runner.invoke(args=["users", "create", "amy@example.com", "--password-stdin"],
                  input="another long secret\n")
    listing = runner.invoke(args=["users", "list"])
    assert "boss@example.com\tadmin\tactive" in listing.output
    assert "amy@example.com\tstaff\tactive" in listing.output
    changed = runner.invoke(args=["users", "set-password", "amy@example.com",
                                  "--password-stdin"], input="a third long secret\n")
    assert changed.exit_code == 0
    unknown = runner.invoke(args=["users", "set-password", "who@example.com",
                                  "--password-stdin"], input="a third long secret\n")
    assert unknown.exit_code == 1 and "no account" in unknown.output
    last_admin = runner.invoke(args=["users", "deactivate", "boss@example.com"])
    assert last_admin.exit_code == 1 and "last active admin" in last_admin.output
    assert runner.invoke(args=["users", "deactivate", "amy@example.com"]).exit_code == 0
    with app.app_context():
        assert not db.session.scalar(db.select(User).filter_by(email="amy@example.com")).is_active


def test_cli_prompts_for_password_twice(runner):
    result = runner.invoke(args=["users", "create", "p@example.com"],
                           input="a long enough secret\na long enough secret\n")
    assert result.exit_code == 0, result.output
    mismatch = runner.invoke(args=["users", "create", "q@example.com"],
                             input="a long enough secret\ndifferent secret!!\n")
    assert mismatch.exit_code != 0


def test_cli_bootstrap_creates_one_admin_once(app, runner):
    first = runner.invoke(args=["users", "bootstrap"])
    assert "email:    admin@example.com" in first.output
    password = first.output.split("password: ")[1].split()[0]
    assert login(app.test_client(), "admin@example.com", password).status_code == 303
    assert runner.invoke(args=["users", "bootstrap"]).output == ""


# ---- the route list -------------------------------------------------------------------------
def test_route_list_matches_the_snapshot(app):
    """A route that disappears (or appears) unnoticed fails here; update routes.json on purpose."""
    routes = sorted(f"{','.join(sorted(r.methods - {'HEAD', 'OPTIONS'}))} {r.rule} {r.endpoint}"
                    for r in app.url_map.iter_rules())
    expected = json.loads((Path(__file__).parent / "routes.json").read_text())
    assert routes == expected


def test_a_get_request_that_writes_is_refused(app):
    @app.get("/writes")
    def writes():
        db.session.add(User(email="x@example.com", password_hash="x"))
        db.session.commit()
        return "wrote"

    with pytest.raises(RuntimeError, match="GET request tried to write"):
        app.test_client().get("/writes")
    with app.app_context():
        assert db.session.scalar(db.select(User).filter_by(email="x@example.com")) is None


def test_the_favicon_is_there_for_browsers_that_ask_for_it(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 301
    icon = client.get(response.headers["Location"])
    assert icon.status_code == 200 and icon.mimetype == "image/svg+xml"
    icon.close()
