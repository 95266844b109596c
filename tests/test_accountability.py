"""Accountability: two-factor sign-in, the audit log, and signed-in sessions.

TOTP codes and session timeouts run against a fixed clock (time-machine moves every
clock the app reads: datetime.now, time.time)."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta

import pyotp
import pytest
import time_machine
from sqlalchemy import func, select

from webapp import audit
from webapp.auth import throttle
from webapp.extensions import db
from webapp.models import AuditEvent, RecoveryCode, SecondFactor, UserSession

from .conftest import PASSWORD, csrf_token, login, post_form
from .helpers import url

SECRET_RE = re.compile(r'id="totp-secret">([A-Z2-7]+)<')
CODES_RE = re.compile(r"<li><code>([a-z0-9]{5}-[a-z0-9]{5})</code></li>")
T0 = datetime(2026, 6, 1, 9, 0, 0, tzinfo=UTC)


def entries(app, action: str | None = None) -> list[AuditEvent]:
    with app.app_context():
        statement = select(AuditEvent).order_by(AuditEvent.id)
        if action:
            statement = statement.where(AuditEvent.action == action)
        rows = list(db.session.scalars(statement))
        db.session.expunge_all()
        return rows


def enrol(client) -> tuple[str, list[str]]:
    """Turn two-factor on for the signed-in person as they would: start, read the key off
    the page, type the app's code. The secret and the recovery codes."""
    assert post_form(client, url("auth.two_factor_start"), {},
                     form_page=url("auth.two_factor")).status_code == 303
    page = client.get(url("auth.two_factor")).get_data(as_text=True)
    secret = SECRET_RE.search(page).group(1)
    assert 'src="data:image/svg+xml' in page  # the QR code, made here
    answer = post_form(client, url("auth.two_factor_confirm"),
                       {"code": pyotp.TOTP(secret).now()}, form_page=url("auth.two_factor"))
    assert answer.status_code == 200, answer.get_data(as_text=True)[:400]
    codes = CODES_RE.findall(answer.get_data(as_text=True))
    assert len(codes) == 10 and len(set(codes)) == 10
    return secret, codes


def code_step(client, code: str):
    return post_form(client, url("auth.login_code"), {"code": code})


def password_step(client, email: str, password: str = PASSWORD):
    return login(client, email, password)


@pytest.fixture
def clock():
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


# ---- TOTP -----------------------------------------------------------------------------------
def test_enrol_then_sign_in_with_the_app_s_code(app, client, make_user, clock):
    user = make_user("amy@example.com")
    password_step(client, user.email)
    secret, _codes = enrol(client)
    assert entries(app, "two_factor_enrolled")[0].actor_email == "amy@example.com"
    post_form(client, url("auth.logout"), {}, form_page=url("auth.account"))
    clock.shift(60)
    answer = password_step(client, user.email)
    assert answer.status_code == 303 and answer.headers["Location"] == url("auth.login_code")
    assert client.get(url("history.history")).status_code == 302  # a password alone: no
    answer = code_step(client, pyotp.TOTP(secret).now())
    assert answer.status_code == 303 and answer.headers["Location"] == url("overview.index")
    assert client.get(url("history.history")).status_code == 200
    signed_in = entries(app, "sign_in")[-1]
    assert signed_in.detail == {"second_factor": "totp"} and signed_in.actor_id == user.id


def test_wrong_code_refused_and_a_confirm_with_a_wrong_code_turns_nothing_on(
        app, client, make_user, clock):
    user = make_user("amy@example.com")
    password_step(client, user.email)
    post_form(client, url("auth.two_factor_start"), {}, form_page=url("auth.two_factor"))
    wrong = post_form(client, url("auth.two_factor_confirm"), {"code": "000000"},
                      form_page=url("auth.two_factor"))
    assert wrong.status_code == 400 and "That code is not right" in wrong.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(select(SecondFactor.confirmed_at)) is None
    assert not entries(app, "two_factor_enrolled")


@pytest.mark.parametrize(("offset", "accepted"), [
    (-60, False), (-30, True), (0, True), (30, True), (60, False)])
def test_codes_of_the_previous_and_next_step_are_accepted_not_further(
        app, client, make_user, clock, offset, accepted):
    user = make_user("amy@example.com")
    password_step(client, user.email)
    secret, _ = enrol(client)
    post_form(client, url("auth.logout"), {}, form_page=url("auth.account"))
    clock.shift(300)  # well past the enrolment code's step
    password_step(client, user.email)
    code = pyotp.TOTP(secret).at(datetime.now(UTC) + timedelta(seconds=offset))
    answer = code_step(client, code)
    assert (answer.status_code == 303) is accepted
    if not accepted:
        assert entries(app, "code_failed")[-1].actor_email == user.email


def test_a_code_cannot_be_used_twice_nor_an_older_one_after_it(app):
    check_a_code_works_once(app)


def check_a_code_works_once(app):
    """Also run on PostgreSQL (tests/stack)."""
    with app.app_context():
        from webapp.auth import service as accounts
        accounts.create_user("amy@example.com", PASSWORD)
    with time_machine.travel(T0, tick=False) as clock:
        first = app.test_client()
        password_step(first, "amy@example.com")
        secret, codes = enrol(first)
        clock.shift(120)
        totp = pyotp.TOTP(secret)
        second, third = app.test_client(), app.test_client()
        password_step(second, "amy@example.com")
        password_step(third, "amy@example.com")
        code = totp.now()
        assert code_step(second, code).status_code == 303
        assert code_step(third, code).status_code == 400  # the same code, a moment later
        earlier = totp.at(datetime.now(UTC) - timedelta(seconds=30))
        assert code_step(third, earlier).status_code == 400  # an earlier step: also spent
        assert code_step(third, codes[0]).status_code == 303  # a recovery code, once
        fourth = app.test_client()
        password_step(fourth, "amy@example.com")
        assert code_step(fourth, codes[0]).status_code == 400
        clock.shift(30)
        assert code_step(fourth, totp.now()).status_code == 303  # the next step's code


def test_a_recovery_code_works_once_and_never_again(app, client, make_user, clock):
    user = make_user("amy@example.com")
    password_step(client, user.email)
    _secret, codes = enrol(client)
    post_form(client, url("auth.logout"), {}, form_page=url("auth.account"))
    password_step(client, user.email)
    answer = code_step(client, codes[3].upper().replace("-", " "))  # as people type it
    assert answer.status_code == 303
    used = entries(app, "recovery_code_used")
    assert len(used) == 1 and used[0].detail == {"left": 9}
    assert entries(app, "sign_in")[-1].detail == {"second_factor": "recovery"}
    post_form(client, url("auth.logout"), {}, form_page=url("auth.account"))
    password_step(client, user.email)
    assert code_step(client, codes[3]).status_code == 400
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(RecoveryCode).where(
            RecoveryCode.used_at.is_(None))) == 9
        # Kept as sha256 only: no code is in the database as typed.
        hashes = set(db.session.scalars(select(RecoveryCode.code_hash)))
    assert not any(code in hashes or code.replace("-", "") in hashes for code in codes)


def test_renewed_recovery_codes_replace_the_old_ones(app, client, make_user, clock):
    user = make_user("amy@example.com")
    password_step(client, user.email)
    _secret, old = enrol(client)
    answer = post_form(client, url("auth.renew_recovery_codes"), {},
                       form_page=url("auth.two_factor"))
    new = CODES_RE.findall(answer.get_data(as_text=True))
    assert len(new) == 10 and not set(new) & set(old)
    post_form(client, url("auth.logout"), {}, form_page=url("auth.account"))
    password_step(client, user.email)
    assert code_step(client, old[0]).status_code == 400
    assert code_step(client, new[0]).status_code == 303


def test_the_code_step_is_throttled_like_the_password(app, client, make_user, clock):
    user = make_user("amy@example.com")
    password_step(client, user.email)
    secret, _ = enrol(client)
    post_form(client, url("auth.logout"), {}, form_page=url("auth.account"))
    clock.shift(60)
    password_step(client, user.email)
    for _ in range(throttle.FROM_ONE_ADDRESS.amount):
        assert code_step(client, "123456").status_code == 400
    refused = code_step(client, pyotp.TOTP(secret).now())  # even the right code waits now
    assert refused.status_code == 429 and "Retry-After" in refused.headers
    assert "Too many failed codes" in refused.get_data(as_text=True)
    assert len(entries(app, "code_failed")) == 5 and len(entries(app, "code_throttled")) == 1
    assert client.get(url("history.history")).status_code == 302


def test_the_code_must_come_within_five_minutes_of_the_password(app, client, make_user, clock):
    user = make_user("amy@example.com")
    password_step(client, user.email)
    secret, _ = enrol(client)
    post_form(client, url("auth.logout"), {}, form_page=url("auth.account"))
    password_step(client, user.email)
    token = csrf_token(client, url("auth.login_code"))
    clock.shift(301)
    answer = client.post(url("auth.login_code"),
                         data={"csrf_token": token, "code": pyotp.TOTP(secret).now()})
    assert answer.status_code == 303 and answer.headers["Location"] == url("auth.login")
    assert client.get(url("history.history")).status_code == 302


def test_the_code_page_without_a_password_first_goes_back_to_sign_in(client):
    answer = client.get(url("auth.login_code"))
    assert answer.status_code == 303 and answer.headers["Location"] == url("auth.login")


@pytest.mark.parametrize("code", ["", "12345", "1234567", "abcdef", "x" * 33, "١٢٣٤٥٦"])
def test_malformed_codes_get_an_answer_not_an_error(app, client, make_user, clock, code):
    user = make_user("amy@example.com")
    password_step(client, user.email)
    enrol(client)
    post_form(client, url("auth.logout"), {}, form_page=url("auth.account"))
    password_step(client, user.email)
    answer = code_step(client, code)
    assert answer.status_code == 400
    assert client.get(url("history.history")).status_code == 302


def test_turning_two_factor_off_needs_the_password(app, client, make_user, clock):
    user = make_user("amy@example.com")
    password_step(client, user.email)
    enrol(client)
    post_form(client, url("auth.disable_two_factor"), {"password": "not my password!"},
              form_page=url("auth.two_factor"))
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(SecondFactor)) == 1
    post_form(client, url("auth.disable_two_factor"), {"password": PASSWORD},
              form_page=url("auth.two_factor"))
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(SecondFactor)) == 0
        assert db.session.scalar(select(func.count()).select_from(RecoveryCode)) == 0
    assert len(entries(app, "two_factor_disabled")) == 1
    post_form(client, url("auth.logout"), {}, form_page=url("auth.account"))
    assert password_step(client, user.email).headers["Location"] == url("overview.index")


# ---- two-factor required ----------------------------------------------------------------------
def _protected_get_routes(app):
    exempt = {"auth.two_factor", "auth.login", "auth.login_code", "static", "livez",
              "healthz", "favicon"}
    for rule in app.url_map.iter_rules():
        if "GET" in rule.methods and rule.endpoint not in exempt:
            yield rule


def _example_path(rule) -> str:
    values = {name: ("1" if name.endswith("id") and name != "public_id" else "x" * 8)
              for name in rule.arguments}
    path = rule.rule
    for name, value in values.items():
        path = re.sub(rf"<(?:[a-z]+:)?{name}>", value, path)
    return path


@pytest.mark.parametrize("how", ["toggle", "setting"])
def test_when_required_a_person_without_it_can_open_nothing_but_enrolment(
        make_app, make_user, how):
    app = make_app(**({"REQUIRE_TWO_FACTOR": "on"} if how == "setting" else {}))
    admin = app.test_client()
    make_user("boss@example.com", "admin")
    staff_user = make_user("amy@example.com")
    if how == "toggle":
        login(admin, "boss@example.com")
        answer = post_form(admin, url("auth.require_two_factor"), {"required": "on"},
                           form_page=url("auth.users"))
        assert answer.status_code == 303
        assert entries(app, "setting_changed")[-1].detail == {"value": "on"}
    staff = app.test_client()
    answer = password_step(staff, staff_user.email)
    assert answer.status_code == 303
    for rule in _protected_get_routes(app):
        path = _example_path(rule)
        answer = staff.get(path)
        assert answer.status_code == 303, path
        assert answer.headers["Location"] == url("auth.two_factor"), path
    for endpoint in ("sending.compose", "auth.users"):
        assert staff.post(url(endpoint), data={}).status_code in (303, 400)
    page = staff.get(url("auth.two_factor")).get_data(as_text=True)
    assert "required here" in page
    secret, _ = enrol(staff)
    assert staff.get(url("history.history")).status_code == 200
    # And it cannot be turned off while required.
    post_form(staff, url("auth.disable_two_factor"), {"password": PASSWORD},
              form_page=url("auth.two_factor"))
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(SecondFactor).where(
            SecondFactor.confirmed_at.is_not(None))) == 1
    assert secret


def test_admin_reset_of_a_second_factor_signs_the_person_out_and_is_recorded(
        app, make_user, clock):
    make_user("boss@example.com", "admin")
    amy = make_user("amy@example.com")
    staff = app.test_client()
    password_step(staff, amy.email)
    enrol(staff)
    admin = app.test_client()
    login(admin, "boss@example.com")
    answer = post_form(admin, url("auth.reset_two_factor", user_id=amy.id), {},
                       form_page=url("auth.user_detail", user_id=amy.id))
    assert answer.status_code == 303
    assert staff.get(url("history.history")).status_code == 302
    reset = entries(app, "two_factor_reset")
    assert len(reset) == 1 and reset[0].actor_email == "boss@example.com"
    assert reset[0].target == "amy@example.com" and reset[0].detail == {"sessions_ended": 1}
    # Their next sign-in needs the password only (and, if required, enrolment again).
    assert password_step(app.test_client(), amy.email).headers["Location"] == url(
        "overview.index")


def test_staff_cannot_reset_or_require(client, login_as, make_user):
    other = make_user("other@example.com")
    login_as("staff")
    for endpoint, values in (("auth.reset_two_factor", {"user_id": other.id}),
                             ("auth.end_user_sessions", {"user_id": other.id}),
                             ("auth.require_two_factor", {})):
        assert post_form(client, url(endpoint, **values), {},
                         form_page=url("auth.account")).status_code == 403
    assert client.get(url("audit_log.audit_log")).status_code == 403
    assert client.get(url("audit_log.audit_export")).status_code == 403


# ---- sessions -------------------------------------------------------------------------------
def test_idle_timeout_signs_out_and_says_why(make_app, make_user, clock):
    app = make_app(SESSION_IDLE_MINUTES="30")
    client = app.test_client()
    make_user("amy@example.com")
    login(client, "amy@example.com")
    clock.shift(timedelta(minutes=29))
    assert client.get(url("history.history")).status_code == 200  # counts as activity
    clock.shift(timedelta(minutes=29))
    assert client.get(url("history.history")).status_code == 200
    clock.shift(timedelta(minutes=30, seconds=1))
    answer = client.get(url("history.history"))
    assert answer.status_code == 302
    page = client.get(url("auth.login")).get_data(as_text=True)
    assert "signed out after 30 minutes without activity" in page
    with app.app_context():
        assert db.session.scalar(select(UserSession.ended_reason)) == "idle"
    assert entries(app, "session_timed_out")[0].detail == {"reason": "idle"}


def test_polls_do_not_keep_a_session_alive(make_app, make_user, clock):
    app = make_app(SESSION_IDLE_MINUTES="5")
    client = app.test_client()
    make_user("amy@example.com")
    login(client, "amy@example.com")
    for _ in range(6):  # a history tab left open polls every 3 s: not activity
        clock.shift(timedelta(minutes=1))
        answer = client.get(url("history.rows", id="x"), headers={"HX-Request": "true"})
    assert answer.status_code == 401 and answer.headers["HX-Redirect"].startswith(
        url("auth.login"))


def test_keep_alive_extends_the_session(make_app, make_user, clock):
    app = make_app(SESSION_IDLE_MINUTES="5")
    client = app.test_client()
    make_user("amy@example.com")
    login(client, "amy@example.com")
    token = csrf_token(client, url("auth.account"))
    for _ in range(4):
        clock.shift(timedelta(minutes=4))
        assert client.post(url("auth.keep_alive"), data={"csrf_token": token}).status_code == 204
    assert client.post(url("auth.keep_alive"), data={}).status_code == 400  # CSRF still holds
    assert client.get(url("history.history")).status_code == 200


def test_a_session_ends_twelve_hours_after_sign_in_however_active(make_app, make_user, clock):
    app = make_app()
    client = app.test_client()
    make_user("amy@example.com")
    login(client, "amy@example.com")
    for _ in range(35):  # active every 20 minutes for 11 h 40 min
        clock.shift(timedelta(minutes=20))
        assert client.get(url("history.history")).status_code == 200
    clock.shift(timedelta(minutes=20))
    assert client.get(url("history.history")).status_code == 302
    with app.app_context():
        assert db.session.scalar(select(UserSession.ended_reason)) == "expired"


def test_sign_out_everywhere_else_kills_a_copied_cookie(app):
    check_sign_out_everywhere_else(app)


def check_sign_out_everywhere_else(app):
    """Also run on PostgreSQL (tests/stack)."""
    with app.app_context():
        from webapp.auth import service as accounts
        accounts.create_user("amy@example.com", PASSWORD)
    laptop, phone = app.test_client(), app.test_client()
    login(laptop, "amy@example.com")
    login(phone, "amy@example.com")
    thief = app.test_client()
    thief.set_cookie("session", laptop.get_cookie("session").value)
    assert thief.get(url("history.history")).status_code == 200
    page = phone.get(url("auth.account_sessions")).get_data(as_text=True)
    assert page.count("<li>") >= 2 and "(this browser)" in page
    answer = post_form(phone, url("auth.end_other_sessions"), {},
                       form_page=url("auth.account_sessions"))
    assert answer.status_code == 303
    assert thief.get(url("history.history")).status_code == 302
    assert laptop.get(url("history.history")).status_code == 302
    assert phone.get(url("history.history")).status_code == 200
    ended = entries(app, "sessions_ended")
    assert len(ended) == 1 and ended[0].detail == {"count": 1, "kept_this_one": True}


def test_sign_out_ends_only_this_browser_and_its_copies(app, make_user):
    make_user("amy@example.com")
    laptop, phone = app.test_client(), app.test_client()
    login(laptop, "amy@example.com")
    login(phone, "amy@example.com")
    copy = app.test_client()
    copy.set_cookie("session", laptop.get_cookie("session").value)
    post_form(laptop, url("auth.logout"), {}, form_page=url("auth.account"))
    assert copy.get(url("history.history")).status_code == 302
    assert phone.get(url("history.history")).status_code == 200


def test_admin_ends_every_session_of_a_person(app, make_user):
    make_user("boss@example.com", "admin")
    amy = make_user("amy@example.com")
    one, two = app.test_client(), app.test_client()
    login(one, amy.email)
    login(two, amy.email)
    admin = app.test_client()
    login(admin, "boss@example.com")
    page = admin.get(url("auth.user_detail", user_id=amy.id)).get_data(as_text=True)
    assert "2 sessions" in page
    post_form(admin, url("auth.end_user_sessions", user_id=amy.id), {},
              form_page=url("auth.user_detail", user_id=amy.id))
    assert one.get(url("history.history")).status_code == 302
    assert two.get(url("history.history")).status_code == 302
    assert admin.get(url("history.history")).status_code == 200
    ended = entries(app, "sessions_ended")[-1]
    assert (ended.actor_email, ended.target, ended.detail["count"]) == (
        "boss@example.com", "amy@example.com", 2)


def test_the_sessions_page_names_the_browser_and_address(app, make_user):
    make_user("amy@example.com")
    client = app.test_client()
    chrome = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like "
              "Gecko) Chrome/131.0.0.0 Safari/537.36")
    token = csrf_token(client, url("auth.login"))
    client.post(url("auth.login"), data={"csrf_token": token, "email": "amy@example.com",
                                         "password": PASSWORD},
                headers={"User-Agent": chrome}, environ_base={"REMOTE_ADDR": "203.0.113.9"})
    page = client.get(url("auth.account_sessions"), headers={"User-Agent": chrome},
                      environ_base={"REMOTE_ADDR": "203.0.113.9"}).get_data(as_text=True)
    assert "Chrome 131 on Windows" in page and "203.0.113.9" in page


def test_the_token_is_kept_hashed(app, client, make_user):
    make_user("amy@example.com")
    login(client, "amy@example.com")
    with app.app_context():
        stored = db.session.scalar(select(UserSession.token_hash))
    with client.session_transaction() as session:
        token = session["_user_id"]
    assert len(token) >= 40 and token != stored and len(stored) == 64


# ---- the audit log ---------------------------------------------------------------------------
def test_the_audit_log_cannot_be_changed_through_the_models(app, client, make_user):
    make_user("amy@example.com")
    login(client, "amy@example.com")
    with app.test_request_context(method="POST"):
        entry = db.session.scalars(select(AuditEvent)).first()
        entry.action = "sign_out"
        with pytest.raises(RuntimeError, match="append-only"):
            db.session.flush()
        db.session.rollback()
        with pytest.raises(RuntimeError, match="append-only"):
            db.session.delete(db.session.scalars(select(AuditEvent)).first())
            db.session.flush()
        db.session.rollback()


def test_unknown_action_names_are_refused(app):
    with app.test_request_context(method="POST"), pytest.raises(ValueError):
        audit.record("deleted_everything")


def test_failed_sign_in_records_the_email_tried_and_where_from(app, client):
    token = csrf_token(client, url("auth.login"))
    client.post(url("auth.login"), data={"csrf_token": token, "email": "Nobody@Example.com",
                                         "password": "not a password at all"},
                headers={"User-Agent": "curl/8.0", "X-Request-ID": "req-1234567890"},
                environ_base={"REMOTE_ADDR": "198.51.100.7"})
    [failed] = entries(app, "sign_in_failed")
    assert failed.actor_id is None and failed.actor_email == "nobody@example.com"
    assert (failed.address, failed.user_agent, failed.request_id) == (
        "198.51.100.7", "curl/8.0", "req-1234567890")


def test_the_source_address_respects_trusted_proxies(make_app):
    app = make_app(TRUSTED_PROXIES="1")
    client = app.test_client()
    token = csrf_token(client, url("auth.login"))
    client.post(url("auth.login"), data={"csrf_token": token, "email": "x@example.com",
                                         "password": "not a password at all"},
                headers={"X-Forwarded-For": "192.0.2.44"},
                environ_base={"REMOTE_ADDR": "10.0.0.1"})
    assert entries(app, "sign_in_failed")[0].address == "192.0.2.44"


def test_the_admin_page_filters_pages_and_exports(app, make_user, clock):
    make_user("boss@example.com", "admin")
    for n in range(60):
        make_user(f"person{n:02d}@example.com")
        clock.shift(60)
    admin = app.test_client()
    login(admin, "boss@example.com")
    page = admin.get(url("audit_log.audit_log"))
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert html.count("Account created") >= 49 and "Older entries" in html
    older = re.search(r'href="([^"]*before=[^"]+)"', html).group(1).replace("&amp;", "&")
    second = admin.get(older).get_data(as_text=True)
    assert "person00@example.com" in second and "person59@example.com" not in second
    only = admin.get(url("audit_log.audit_log", what="sign_in")).get_data(as_text=True)
    assert "boss@example.com" in only and "Account created</strong>" not in only
    who = admin.get(url("audit_log.audit_log", who="person07")).get_data(as_text=True)
    assert "No entries match these filters" in who  # person07 did nothing (made by the CLI)
    made = admin.get(url("audit_log.audit_log", who="command line")).get_data(as_text=True)
    assert "person59@example.com" in made
    for part in ("boss", "boss@", "BOSS@example.com"):
        boss = admin.get(url("audit_log.audit_log", who=part)).get_data(as_text=True)
        assert "Signed in" in boss and "Account created</strong>" not in boss, part
    day = T0.date().isoformat()
    export = admin.get(url("audit_log.audit_export", what="account_created", **{"from": day}))
    assert export.status_code == 200 and export.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(export.get_data(as_text=True))))
    assert len(rows) == 61 and {row["action"] for row in rows} == {"account_created"}
    assert {row["actor"] for row in rows} == {"command line"}
    exported = entries(app, "audit_exported")
    assert len(exported) == 1 and exported[0].detail == {
        "filter": {"what": "account_created", "from": day}}


@pytest.mark.parametrize("args", [
    {"what": "nonsense"}, {"from": "yesterday"}, {"to": "2026-13-01"},
    {"from": "2026-06-02", "to": "2026-06-01"}, {"before": "garbage"},
    {"before": "2026-01-01T00:00:00_99999999999999999999999"}, {"who": "x" * 5000}])
def test_bad_audit_filters_get_a_clear_answer(app, make_user, args):
    make_user("boss@example.com", "admin")
    admin = app.test_client()
    login(admin, "boss@example.com")
    page = admin.get(url("audit_log.audit_log", **args))
    assert page.status_code in (200, 400)
    assert "Audit log" in page.get_data(as_text=True)


def test_formulas_in_audit_cells_are_neutralised(app, make_user):
    make_user("boss@example.com", "admin")
    client = app.test_client()
    token = csrf_token(client, url("auth.login"))
    client.post(url("auth.login"), data={"csrf_token": token, "email": "=cmd@example.com",
                                         "password": "not a password at all"})
    login(client, "boss@example.com")
    text = client.get(url("audit_log.audit_export")).get_data(as_text=True)
    assert "'=cmd@example.com" in text


def test_prune_deletes_only_older_entries(app, runner, make_user):
    with time_machine.travel(T0 - timedelta(days=500), tick=False):
        make_user("old@example.com")
    make_user("new@example.com")
    assert runner.invoke(args=["audit", "prune", "--older-than", "10d"]).exit_code != 0
    assert runner.invoke(args=["audit", "prune", "--older-than", "soon"]).exit_code != 0
    result = runner.invoke(args=["audit", "prune", "--older-than", "400d"])
    assert result.exit_code == 0, result.output
    assert "Deleted 1 audit entries" in result.output
    assert [e.target for e in entries(app)] == ["new@example.com"]


# ---- every action writes exactly one entry -----------------------------------------------------
# Every POST route (and every export) is here: with the action it records, or why it records
# none. A new route that is in neither fails test_every_route_is_accounted_for.
EXEMPT = {
    "auth.keep_alive": "only says the person is still there",
    "auth.account": "the person's own display time zone",
    "auth.two_factor_start": "nothing is on until the first code confirms it",
    "pictures.upload_media": "a file stored for a message; sending and deleting are recorded",
    "callbacks.plivo_status": "Plivo, not a person; every callback is in the status ledger",
    "lists.new_batch": "reads a list into a draft; nothing is sent before the confirm",
    "lists.batch_column": "a draft's number column; nothing is sent",
    "lists.retry_batch": "a new draft from a batch; its confirm is recorded",
    "lists.copy_batch": "a new draft from a batch; its confirm is recorded",
    "lists.batch_left_out": "the person's own list's rows, with why they were left out",
}
AUDITED = {
    "auth.login": "sign_in",
    "auth.login_code": "sign_in",
    "auth.logout": "sign_out",
    "auth.change_password": "password_changed",
    "auth.users": "account_created",
    "auth.require_two_factor": "setting_changed",
    "auth.reset_password": "password_reset",
    "auth.change_role": "role_changed",
    "auth.deactivate": "account_deactivated",
    "auth.activate": "account_reactivated",
    "auth.unlock": "account_unlocked",
    "auth.end_user_sessions": "sessions_ended",
    "auth.reset_two_factor": "two_factor_reset",
    "auth.two_factor_confirm": "two_factor_enrolled",
    "auth.renew_recovery_codes": "recovery_codes_renewed",
    "auth.disable_two_factor": "two_factor_disabled",
    "auth.end_other_sessions": "sessions_ended",
    "sending.compose": "messages_sent",
    "sending.send_again": "message_sent_again",
    "sending.adopt": "message_matched",  # driven in test_reconcile (needs the simulator)
    "pictures.delete_media": "media_deleted",
    "overview.send_test": "test_message_sent",  # driven in test_overview (the simulator)
    "history.export": "history_exported",
    "audit_log.audit_export": "audit_exported",
    # driven in test_batches
    "lists.confirm_batch": "batch_sent",
    "lists.pause_batch": "batch_paused",
    "lists.resume_batch": "batch_resumed",
    "lists.approve_batch": "batch_approved",
    "lists.cancel_batch": "batch_cancelled",
    "lists.batch_report": "batch_exported",
    "lists.remove_opt_out": "opt_out_removed",
    "lists.export_opt_outs": "opt_outs_exported",
    "lists.batch_limits": "batch_limits_changed",
}
EXPORTS = {"history.export", "audit_log.audit_export", "lists.batch_report",
           "lists.export_opt_outs", "lists.batch_left_out"}


def test_every_route_is_accounted_for(app):
    acting = {rule.endpoint for rule in app.url_map.iter_rules()
              if "POST" in rule.methods or rule.endpoint in EXPORTS}
    assert acting == set(AUDITED) | set(EXEMPT)
    assert not set(AUDITED) & set(EXEMPT)
    assert set(AUDITED.values()) <= set(audit.ACTIONS)


def _setup(app, make_user):
    admin = make_user("boss@example.com", "admin")
    amy = make_user("amy@example.com")
    return admin, amy


def _driver(endpoint):
    """How a person does `endpoint` (a client signed in as the admin, or as amy)."""
    def admin_form(path_values, data, page=None):
        def run(ctx):
            client = ctx["admin_client"]
            return post_form(client, url(endpoint, **path_values(ctx)), data(ctx),
                             form_page=page(ctx) if page else url("auth.account"))
        return run

    amy_id = lambda ctx: {"user_id": ctx["amy"].id}  # noqa: E731
    none = lambda ctx: {}  # noqa: E731
    empty = lambda ctx: {}  # noqa: E731
    drivers = {
        "auth.users": admin_form(none, lambda ctx: {
            "email": "new@example.com", "role": "staff", "password": PASSWORD}),
        "auth.require_two_factor": admin_form(none, lambda ctx: {"required": "on"}),
        "auth.reset_password": admin_form(amy_id, lambda ctx: {"password": "a new passphrase!"}),
        "auth.change_role": admin_form(amy_id, lambda ctx: {"role": "admin"}),
        "auth.deactivate": admin_form(amy_id, empty),
        "auth.unlock": admin_form(amy_id, empty),
        "auth.end_user_sessions": admin_form(amy_id, empty),
        "auth.reset_two_factor": admin_form(amy_id, empty),
        "auth.logout": admin_form(none, empty),
        "auth.end_other_sessions": admin_form(none, empty),
        "auth.change_password": admin_form(none, lambda ctx: {
            "current_password": PASSWORD, "new_password": "another passphrase",
            "confirm": "another passphrase"}),
    }
    return drivers.get(endpoint)


ADMIN_DRIVEN = ["auth.users", "auth.require_two_factor", "auth.reset_password",
                "auth.change_role", "auth.deactivate", "auth.unlock", "auth.end_user_sessions",
                "auth.reset_two_factor", "auth.logout", "auth.end_other_sessions",
                "auth.change_password"]
TARGETS = {"auth.users": "new@example.com", "auth.require_two_factor": "require two-factor",
           "auth.logout": "boss@example.com", "auth.end_other_sessions": "boss@example.com",
           "auth.change_password": "boss@example.com"}


@pytest.mark.parametrize("endpoint", ADMIN_DRIVEN)
def test_each_account_action_writes_exactly_one_entry(app, make_user, endpoint):
    admin, amy = _setup(app, make_user)
    if endpoint == "auth.reset_two_factor":
        amy_client = app.test_client()
        login(amy_client, amy.email)
        enrol(amy_client)
    admin_client = app.test_client()
    login(admin_client, admin.email)
    before = len(entries(app))
    answer = _driver(endpoint)({"admin_client": admin_client, "amy": amy})
    assert answer.status_code == 303, answer.get_data(as_text=True)[:300]
    new = entries(app)[before:]
    assert [e.action for e in new] == [AUDITED[endpoint]], [e.action for e in new]
    assert new[0].actor_id == admin.id and new[0].actor_email == admin.email
    assert new[0].target == TARGETS.get(endpoint, "amy@example.com")
    assert new[0].address == "127.0.0.1" and new[0].request_id


def test_reactivation_writes_one_entry(app, make_user):
    admin, amy = _setup(app, make_user)
    client = app.test_client()
    login(client, admin.email)
    page = url("auth.user_detail", user_id=amy.id)
    post_form(client, url("auth.deactivate", user_id=amy.id), {}, form_page=page)
    before = len(entries(app))
    post_form(client, url("auth.activate", user_id=amy.id), {}, form_page=page)
    assert [e.action for e in entries(app)[before:]] == ["account_reactivated"]


def test_a_refused_change_writes_no_entry(app, make_user):
    admin = make_user("boss@example.com", "admin")
    client = app.test_client()
    login(client, admin.email)
    before = len(entries(app))
    page = url("auth.user_detail", user_id=admin.id)
    answer = post_form(client, url("auth.change_role", user_id=admin.id), {"role": "staff"},
                       form_page=page)  # the last admin
    assert answer.status_code == 303
    assert entries(app)[before:] == []


def test_sign_in_and_failures_write_one_entry_each(app, client, make_user):
    make_user("amy@example.com")
    password_step(client, "amy@example.com", "wrong password!!")
    password_step(client, "amy@example.com")
    assert [e.action for e in entries(app)] == ["account_created", "sign_in_failed", "sign_in"]


def test_a_send_writes_one_entry_with_the_recipient_count(app, client, login_as):
    from .test_sending import compose

    user = login_as("staff")
    answer, key = compose(client, "+14155550123, +14155550124, +16045550199")
    assert answer.status_code == 303
    [sent] = entries(app, "messages_sent")
    assert sent.actor_id == user.id and sent.target == "3 recipients"
    assert sent.detail == {"recipients": 3, "media": 1, "key": key}
    compose(client, "+14155550123, +14155550124, +16045550199", key=key)  # a double click
    assert len(entries(app, "messages_sent")) == 1


def test_send_again_writes_one_entry(app, client, login_as):
    from .helpers import save_message

    user = login_as("staff")
    original = save_message(app, created_by_id=user.id, status="not_sent")
    with app.app_context():
        from webapp.models import Message
        public_id = db.session.get(Message, original).public_id
    detail = url("history.detail", public_id=public_id)
    post_form(client, url("sending.send_again", public_id=public_id), {}, form_page=detail)
    post_form(client, url("sending.send_again", public_id=public_id), {}, form_page=detail)
    [again] = entries(app, "message_sent_again")
    assert again.detail["original"] == public_id and again.detail["recipients"] == 1


def test_exports_write_one_entry_with_filter_and_rows(app):
    check_export_is_recorded(app)


def check_export_is_recorded(app):
    """Also run on PostgreSQL (tests/stack), where the rows come from one COPY."""
    from .helpers import save_message

    with app.app_context():
        from webapp.auth import service as accounts
        user_id = accounts.create_user("amy@example.com", PASSWORD).id
    client = app.test_client()
    login(client, "amy@example.com")
    for _ in range(3):
        save_message(app, created_by_id=user_id, status="delivered")
    save_message(app, created_by_id=user_id, status="failed")
    answer = client.get(url("history.export", status="delivered"))
    body = answer.get_data(as_text=True)
    assert len(list(csv.DictReader(io.StringIO(body)))) == 3
    [exported] = entries(app, "history_exported")
    assert exported.detail == {"filter": {"status": "delivered"}, "rows": 3, "complete": True}
    assert exported.actor_id == user_id


def test_deleting_a_picture_writes_one_entry(app, client, login_as):
    from webapp.models import Media

    from .test_uploads import png

    login_as("admin")
    token = csrf_token(client, url("sending.compose"))
    answer = client.post(url("pictures.upload_media"), headers={"X-CSRFToken": token},
                         content_type="multipart/form-data",
                         data={"file": (io.BytesIO(png()), "logo.png")})
    assert answer.status_code == 200
    with app.app_context():
        digest = db.session.scalar(select(Media.sha256))
    assert not entries(app, "media_deleted")  # uploading is not recorded
    post_form(client, url("pictures.delete_media", sha256=digest), {},
              form_page=url("pictures.library"))
    [deleted] = entries(app, "media_deleted")
    assert deleted.detail["sha256"] == digest and deleted.target == "logo.png"
