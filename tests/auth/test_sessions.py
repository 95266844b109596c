"""Signed-in sessions kept in the database: idle and absolute timeouts, sign-out here and
everywhere else, the sessions page."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from tests.accounts import entries
from tests.conftest import PASSWORD, csrf_token, login, post_form
from tests.helpers import url
from webapp.extensions import db
from webapp.models import User, UserSession


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
    answer = post_form(phone, url("auth.end_other_sessions"), {"confirmed": "yes"},
                       form_page=url("auth.account_sessions"))
    assert answer.status_code == 303
    assert thief.get(url("history.history")).status_code == 302
    sent_away = laptop.get(url("history.history"))
    assert sent_away.status_code == 302
    told = laptop.get(sent_away.headers["Location"]).get_data(as_text=True)
    assert "you chose &#34;Sign out everywhere else&#34; in another browser" in told
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
    post_form(admin, url("auth.end_user_sessions", user_id=amy.id), {"confirmed": "yes"},
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


@pytest.mark.parametrize(("how", "says"), [
    ("admin", "An admin ended your sessions."),
    ("password", "because your password was changed"),
    ("reset", "An admin reset your two-factor sign-in"),
    ("deactivate", "Your account was deactivated."),
])
def test_a_session_ended_elsewhere_says_why_on_the_sign_in_page(app, make_user, how, says):
    amy = make_user("amy@example.com")
    admin = make_user("boss@example.com", "admin")
    browser = app.test_client()
    login(browser, amy.email)
    with app.app_context():
        from webapp.auth import service as accounts
        from webapp.auth import sessions, two_factor
        boss = db.session.get(User, admin.id)
        person = db.session.get(User, amy.id)
        if how == "admin":
            accounts.end_sessions(person, boss)
        elif how == "password":
            sessions.end_others(person.id, None, "password changed")
            db.session.commit()
        elif how == "reset":
            two_factor.reset(person)
            db.session.commit()
        else:
            accounts.set_active(person, False, boss)
    sent_away = browser.get(url("history.history"))
    assert sent_away.status_code == 302
    page = browser.get(sent_away.headers["Location"]).get_data(as_text=True)
    assert says in page
    assert "Please sign in to see this page." not in page


def test_a_browser_that_was_never_signed_in_gets_the_usual_line(client):
    sent_away = client.get(url("history.history"))
    assert "Please sign in to see this page." in client.get(
        sent_away.headers["Location"]).get_data(as_text=True)
