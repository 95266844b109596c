from __future__ import annotations

import pytest

from tests.conftest import PASSWORD, login, post_form
from tests.helpers import url
from webapp.auth import service as accounts
from webapp.auth.passwords import MAX_LENGTH, hash_password, verify_password
from webapp.extensions import db
from webapp.models import User

ADMIN_ENDPOINTS = [
    ("GET", "auth.users", {}),
    ("POST", "auth.users", {}),
    ("GET", "auth.user_detail", {"user_id": 1}),
    ("POST", "auth.reset_password", {"user_id": 1}),
    ("POST", "auth.change_role", {"user_id": 1}),
    ("POST", "auth.deactivate", {"user_id": 1}),
    ("POST", "auth.activate", {"user_id": 1}),
]


def test_login_then_logout(client, make_user):
    make_user("amy@example.com")
    response = login(client, "AMY@example.com ")
    assert response.status_code == 303
    assert response.headers["Location"] == url("overview.index")
    assert client.get(url("history.history")).status_code == 200
    response = post_form(client, url("auth.logout"), {}, form_page=url("history.history"))
    assert response.status_code == 303
    assert client.get(url("history.history")).status_code == 302


def test_wrong_password_and_unknown_email_get_the_same_answer(client, make_user):
    make_user("amy@example.com")
    wrong = login(client, "amy@example.com", "not the right password")
    unknown = login(client, "nobody@example.com", "not the right password")
    assert wrong.status_code == unknown.status_code == 200
    text = "Email or password is not right"
    assert text in wrong.get_data(as_text=True)
    assert text in unknown.get_data(as_text=True)
    assert client.get(url("history.history")).status_code == 302


def test_inactive_user_is_refused(app, client, make_user):
    user = make_user("amy@example.com")
    with app.app_context():
        db.session.get(User, user.id).is_active = False
        db.session.commit()
    response = login(client, "amy@example.com")
    assert response.status_code == 200
    assert client.get(url("history.history")).status_code == 302


def test_login_throttled_per_account_after_five_failures(client, make_user):
    make_user("amy@example.com")
    for _ in range(5):
        assert login(client, "amy@example.com", "wrong password!!").status_code == 200
    response = login(client, "amy@example.com")  # even the right password now waits
    assert response.status_code == 429
    assert "Try again in" in response.get_data(as_text=True)
    assert int(response.headers["Retry-After"]) > 60
    # Another account from the same address is not locked out.
    make_user("bob@example.com")
    assert login(client, "bob@example.com").status_code == 303


def test_login_throttled_per_address(client):
    codes = [login(client, f"user{i}@example.com", "wrong password!!").status_code
             for i in range(21)]
    assert codes[:20] == [200] * 20
    assert codes[20] == 429


def test_successful_logins_do_not_count_towards_the_account_limit(client, make_user):
    make_user("amy@example.com")
    for _ in range(6):
        assert login(client, "amy@example.com").status_code == 303
        post_form(client, url("auth.logout"), {}, form_page=url("history.history"))


def test_cookie_saved_before_logout_no_longer_works(app, make_user):
    make_user("amy@example.com")
    browser = app.test_client()
    login(browser, "amy@example.com")
    stolen = browser.get_cookie("session").value
    post_form(browser, url("auth.logout"), {}, form_page=url("history.history"))
    thief = app.test_client()
    thief.set_cookie("session", stolen)
    assert thief.get(url("history.history")).status_code == 302


def test_cookie_saved_before_password_change_no_longer_works(app, make_user):
    make_user("amy@example.com")
    browser = app.test_client()
    login(browser, "amy@example.com")
    stolen = browser.get_cookie("session").value
    response = post_form(browser, url("auth.change_password"), {
        "current_password": PASSWORD, "new_password": "a brand new passphrase",
        "confirm": "a brand new passphrase"})
    assert response.status_code == 303
    assert browser.get(url("history.history")).status_code == 200  # this session continues
    thief = app.test_client()
    thief.set_cookie("session", stolen)
    assert thief.get(url("history.history")).status_code == 302
    assert login(app.test_client(), "amy@example.com", "a brand new passphrase").status_code == 303


@pytest.mark.parametrize("session_id", [
    "", "1", "1:", ":1", "abc:1", "1:1:1", "\u00b2:1", "x" * 43, "9" * 400])
def test_malformed_session_ids_name_nobody(app, make_user, session_id):
    make_user("amy@example.com")
    with app.test_request_context():
        assert accounts.signed_in_user(session_id) is None


def test_session_user_is_refused_once_deactivated_or_signed_out(app, make_user):
    amy = make_user("amy@example.com", "admin")
    with app.test_request_context(method="POST"):
        signed_in = accounts.sign_in(db.session.get(User, amy.id))
        assert accounts.signed_in_user(signed_in.get_id()) == signed_in
        assert (signed_in.id, signed_in.email, signed_in.is_admin) == (amy.id, amy.email, True)
        assert accounts.signed_in_user(signed_in.get_id()[:-1]) is None
        record = signed_in.record()
        record.is_active = False
        db.session.commit()
        assert accounts.signed_in_user(signed_in.get_id()) is None


def test_change_password_needs_the_current_one(client, login_as):
    login_as("staff")
    response = post_form(client, url("auth.change_password"), {
        "current_password": "not my password at all", "new_password": "a brand new passphrase",
        "confirm": "a brand new passphrase"})
    assert response.status_code == 200
    assert "current password is not right" in response.get_data(as_text=True)


OPEN_REDIRECTS = [
    "//evil.example", "/\\evil.example", "https:evil.example", "https://evil.example/",
    "javascript:alert(1)", "JaVaScRiPt:alert(1)", "%2F%2Fevil.example", "/%2F/evil.example",
    "/%5Cevil.example", " //evil.example", "\t//evil.example", "%20//evil.example",
    "%09/evil.example", "///evil.example", "http:/evil.example", "\\\\evil.example",
    "/%252F%252Fevil.example", "data:text/html,hi", "evil.example", "%0D%0A//evil.example",
]


@pytest.mark.parametrize("target", OPEN_REDIRECTS)
def test_next_never_leaves_the_site(client, make_user, target):
    make_user("amy@example.com")
    from urllib.parse import quote

    response = login(client, "amy@example.com", next_url=quote(target, safe=""))
    assert response.status_code == 303
    assert response.headers["Location"] == url("overview.index")


def test_next_to_a_local_page_is_followed(client, make_user):
    make_user("amy@example.com")
    response = login(client, "amy@example.com", next_url=url("sending.compose"))
    assert response.headers["Location"] == url("sending.compose")


def test_post_without_csrf_token_is_refused(client, make_user):
    make_user("amy@example.com")
    response = client.post(url("auth.login"), data={"email": "amy@example.com", "password": PASSWORD})
    assert response.status_code == 400
    assert "form expired" in response.get_data(as_text=True)


@pytest.mark.parametrize(("method", "endpoint", "args"), ADMIN_ENDPOINTS)
def test_staff_get_403_on_admin_pages(app, client, login_as, method, endpoint, args):
    login_as("staff")
    target = url(endpoint, **args)
    if method == "GET":
        assert client.get(target).status_code == 403
    else:
        assert post_form(client, target, {}, form_page=url("history.history")).status_code == 403


@pytest.mark.parametrize(("method", "endpoint", "args"), ADMIN_ENDPOINTS)
def test_anonymous_sent_to_login_from_admin_pages(app, client, method, endpoint, args):
    response = client.open(url(endpoint, **args), method=method)
    # A POST without a session has no CSRF token either; both refuse.
    assert response.status_code in (302, 400)
    if response.status_code == 302:
        assert url("auth.login") in response.headers["Location"]


def test_admin_creates_staff_who_choose_their_own_password_first(app, client, login_as):
    login_as("admin")
    response = post_form(client, url("auth.users"), {
        "email": "New.Person@Example.com", "role": "staff", "password": "twelve chars ok"})
    assert response.status_code == 303
    other = app.test_client()
    assert login(other, "new.person@example.com", "twelve chars ok").status_code == 303
    # The admin has seen the password: nothing opens until the person chooses their own.
    held = other.get(url("history.history"))
    assert held.status_code == 303 and held.headers["Location"].endswith(
        url("auth.change_password"))
    assert post_form(other, url("auth.change_password"), {
        "current_password": "twelve chars ok", "new_password": "my own long passphrase",
        "confirm": "my own long passphrase"}).status_code == 303
    assert other.get(url("history.history")).status_code == 200
    assert other.get(url("auth.users")).status_code == 403


def test_a_password_an_admin_reset_is_replaced_at_the_next_sign_in(app, client, login_as,
                                                                   make_user):
    staff = make_user("amy@example.com")
    login_as("admin")
    assert post_form(client, url("auth.reset_password", user_id=staff.id),
                     {"password": "an admin chose this"},
                     form_page=url("auth.user_detail", user_id=staff.id)).status_code == 303
    amy = app.test_client()
    assert login(amy, "amy@example.com", "an admin chose this").status_code == 303
    assert amy.get(url("history.history")).headers["Location"].endswith(
        url("auth.change_password"))


def test_admin_create_reports_duplicate_and_weak_password(client, login_as):
    login_as("admin")
    weak = post_form(client, url("auth.users"), {"email": "x@example.com", "role": "staff",
                                               "password": "short"})
    assert "at least 12 characters" in weak.get_data(as_text=True)
    dup = post_form(client, url("auth.users"), {"email": "admin@example.com", "role": "staff",
                                              "password": "twelve chars ok"})
    assert "already exists" in dup.get_data(as_text=True)


def test_last_active_admin_cannot_be_deactivated_or_demoted(app, client, login_as):
    admin = login_as("admin")
    post_form(client, url("auth.deactivate", user_id=admin.id), {"confirmed": "yes"},
              form_page=url("auth.users"))
    post_form(client, url("auth.change_role", user_id=admin.id), {"role": "staff"},
              form_page=url("auth.users"))
    with app.app_context():
        user = db.session.get(User, admin.id)
        assert user.is_active and user.role == "admin"
    page = client.get(url("auth.user_detail", user_id=admin.id)).get_data(as_text=True)
    assert "last active admin" in page


def test_admin_deactivates_resets_and_changes_role(app, client, login_as, make_user):
    login_as("admin")
    staff = make_user("amy@example.com")
    staff_browser = app.test_client()
    login(staff_browser, "amy@example.com")
    post_form(client, url("auth.deactivate", user_id=staff.id), {"confirmed": "yes"},
              form_page=url("auth.users"))
    assert staff_browser.get(url("history.history")).status_code == 302  # logged out at once
    assert login(app.test_client(), "amy@example.com").status_code == 200
    post_form(client, url("auth.activate", user_id=staff.id), {}, form_page=url("auth.users"))
    post_form(client, url("auth.reset_password", user_id=staff.id), {"password": "another fine phrase"},
              form_page=url("auth.users"))
    post_form(client, url("auth.change_role", user_id=staff.id), {"role": "admin"},
              form_page=url("auth.users"))
    other = app.test_client()
    assert login(other, "amy@example.com", "another fine phrase").status_code == 303
    assert post_form(other, url("auth.change_password"), {
        "current_password": "another fine phrase", "new_password": "amy's very own phrase",
        "confirm": "amy's very own phrase"}).status_code == 303
    assert other.get(url("auth.users")).status_code == 200


def test_passwords_beyond_72_bytes_are_not_truncated():
    long_a = "é" * 60 + "a"  # 121 bytes in UTF-8
    long_b = "é" * 60 + "b"
    stored = hash_password(long_a, 4)
    assert verify_password(long_a, stored)
    assert not verify_password(long_b, stored)
    assert len(long_a) <= MAX_LENGTH


def test_password_policy_limits(app):
    with app.app_context():
        with pytest.raises(ValueError, match="at most 128"):
            accounts.create_user("a@example.com", "x" * 129 + "abcd")
        with pytest.raises(ValueError, match="too common"):
            accounts.create_user("a@example.com", "password1234")


def test_session_cookie_flags(make_app, tmp_path):
    app = make_app(APP_ENV="production", SECRET_KEY="s" * 40, PLIVO_AUTH_ID="MA" + "A" * 18,
                   PLIVO_AUTH_TOKEN="token", PLIVO_SENDER_NUMBERS="+14155550100",
                   PUBLIC_BASE_URL="https://dash.example.com", BCRYPT_ROUNDS="12",
                   PLIVO_API_URL="https://api.plivo.com", TASK_QUEUE_URL="")
    assert app.config["SESSION_COOKIE_SECURE"] is True
    assert app.config["SESSION_COOKIE_HTTPONLY"] is True
    assert app.config["SESSION_COOKIE_SAMESITE"] == "Lax"
    response = app.test_client().get(url("auth.login"))
    assert "max-age" in response.headers["Strict-Transport-Security"]


def test_the_first_admin_must_replace_the_printed_password_before_anything_else(
        app, client, runner):
    import re

    printed = runner.invoke(args=["users", "bootstrap"]).output
    password = re.search(r"password:\s+(\S+)", printed).group(1)
    assert login(client, "admin@example.com", password).status_code == 303
    for endpoint in ("history.history", "sending.compose", "auth.users"):
        response = client.get(url(endpoint))
        assert response.status_code == 303, endpoint
        assert response.headers["Location"].endswith(url("auth.change_password"))
    page = client.get(url("auth.change_password")).get_data(as_text=True)
    assert "Choose your own password first" in page
    changed = post_form(client, url("auth.change_password"), {
        "current_password": password, "new_password": "a password of my very own",
        "confirm": "a password of my very own"})
    assert changed.status_code == 303
    assert client.get(url("history.history")).status_code == 200
