"""Two-factor sign-in: TOTP codes against a fixed clock (time-machine moves every clock the
app reads), recovery codes, and the admins' requirement and reset."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pyotp
import pytest
import time_machine
from sqlalchemy import func, select

from tests.accounts import CODES_RE, SECRET_RE, code_step, enrol, entries, password_step
from tests.conftest import PASSWORD, T0, csrf_token, login, post_form
from tests.helpers import url
from webapp.auth import throttle
from webapp.extensions import db
from webapp.models import RecoveryCode, SecondFactor


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
    # The person is told, on the page they land on, with what is left and where to renew.
    landing = client.get(answer.headers["Location"]).get_data(as_text=True)
    assert "You signed in with a recovery code; it cannot be used again." in landing
    assert "You have 9 codes left." in landing
    assert f'href="{url("auth.two_factor")}">Make new recovery codes' in landing
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


def test_the_code_that_turned_two_factor_on_is_refused_next_with_the_reason(app, client,
                                                                             make_user):
    """People sign out right after enrolment and type the code still on their app's
    screen: it was spent turning two-factor on. They are told so, and how long until the
    next code; a wrong code still reads as wrong."""
    user = make_user("amy@example.com")
    with time_machine.travel(T0 + timedelta(seconds=5), tick=False) as clock:
        password_step(client, user.email)
        secret, _ = enrol(client)
        assert client.get(url("history.history")).status_code == 200  # still signed in
        post_form(client, url("auth.logout"), {}, form_page=url("auth.account"))
        clock.shift(13)  # 18 s into the step: the next code comes in about 12 s
        password_step(client, user.email)
        answer = code_step(client, pyotp.TOTP(secret).now())
        page = answer.get_data(as_text=True)
        assert answer.status_code == 400
        assert "That code was just used" in page and "about 12 s" in page
        wrong = code_step(client, "000000" if pyotp.TOTP(secret).now() != "000000" else "111111")
        assert "That code is not right." in wrong.get_data(as_text=True)
        clock.shift(12)
        assert code_step(client, pyotp.TOTP(secret).now()).status_code == 303


def test_the_key_is_shown_in_fours_with_a_link_for_an_app_on_the_same_phone(client, login_as):
    login_as("staff")
    post_form(client, url("auth.two_factor_start"), {}, form_page=url("auth.two_factor"))
    page = client.get(url("auth.two_factor")).get_data(as_text=True)
    key = SECRET_RE.search(page).group(1)
    assert re.fullmatch(r"([A-Z2-7]{4} )+[A-Z2-7]{1,4}", key), key
    link = re.search(r'<a href="(otpauth://totp/[^"]+)" class="otpauth">Open in your '
                     r"authenticator app</a>", page)
    assert link and f"secret={key.replace(' ', '')}" in link.group(1).replace("&amp;", "&")
