"""Hostile input from anyone, logged in or not: never a 500, never a half-written row.

The route list comes from the app's url_map and the field names from its forms, so a new
route or field is covered without touching this file. The checks that need a database
run here on SQLite and, through tests/stack, on PostgreSQL (which refuses NUL in text and
numbers past int4 where SQLite would not).
"""

from __future__ import annotations

import threading

import pytest
from flask import Flask, url_for
from flask_wtf import FlaskForm
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wtforms.fields.core import UnboundField

from tests.conftest import PASSWORD, csrf_token, login, post_form
from tests.helpers import url, wrong_passwords_at_once
from webapp import check_python
from webapp.auth import service as accounts
from webapp.config import ConfigError
from webapp.extensions import db
from webapp.models import Message, User
from webapp.sending.forms import parse_recipients

# Query parameters the pages read (the history filter, its cursor, the rows poll, login).
QUERY_PARAMETERS = ("status", "from", "to", "recipient", "sent_by", "q", "before", "id", "next")


def _subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def form_field_names() -> list[str]:
    """Every field of every form the app defines, and the CSRF token's."""
    import webapp.auth.forms
    import webapp.sending.forms  # noqa: F401

    names = {"csrf_token"}
    for form in _subclasses(FlaskForm):
        if form.__module__.startswith("webapp."):
            names |= {n for n, v in vars(form).items() if isinstance(v, UnboundField)}
    return sorted(names)


def routes(app: Flask, user_id: int = 1) -> list[tuple[str, str, str]]:
    """(endpoint, method, path) for every route but static files; ids are `user_id`."""
    found = []
    with app.test_request_context():
        for rule in app.url_map.iter_rules():
            if rule.endpoint == "static":
                continue
            args = {name: user_id if "int" in type(rule._converters[name]).__name__.lower()
                    else "x" for name in rule.arguments}
            path = url_for(rule.endpoint, **args)
            found.extend((rule.endpoint, method, path)
                         for method in sorted(rule.methods - {"HEAD", "OPTIONS"}))
    return found


def check_no_nul_reaches_the_database(app: Flask, client) -> int:
    """NUL in every query parameter and every form field of every route, and in a path:
    a 400 each time (PostgreSQL answered DataError, a 500, before). Returns the count."""
    checked = 0
    fields = form_field_names()
    for endpoint, method, path in routes(app):
        for name in (*QUERY_PARAMETERS, *fields):
            if method == "GET":
                response = client.get(path, query_string={name: "a\x00b"})
            else:
                response = client.open(path, method=method, data={name: "a\x00b"})
            response.close()
            assert response.status_code == 400, (endpoint, method, name, response.status_code)
            checked += 1
        response = client.open(path, method=method, query_string={"a\x00b": "1"})
        assert response.status_code == 400, (endpoint, method, "NUL in a key")
    for path in ("/messages/a%00b", "/messages/sent/a%00b", "/admin/users/1%00"):
        assert client.get(path).status_code in (400, 404), path
    return checked


def test_nul_in_any_parameter_of_any_route_is_a_400(app, client, login_as):
    login_as("admin")
    assert check_no_nul_reaches_the_database(app, client) > 100


def test_nul_is_refused_without_a_login_too(app, client):
    assert client.post(url("auth.login"), data={"email": "a\x00b@example.com",
                                                "password": "x"}).status_code == 400
    assert client.post(url("callbacks.plivo_status"),
                       data={"MessageUUID": "a\x00b", "Status": "sent"}).status_code == 400


@pytest.mark.parametrize("path", ["/admin/users/2147483648", "/admin/users/99999999999999999999999",
                                  "/admin/users/-1"])
def test_ids_past_what_a_column_holds_are_404(client, login_as, path):
    login_as("admin")
    assert client.get(path).status_code == 404
    assert client.post(path + "/deactivate").status_code in (400, 404)


def check_odd_query_values_are_explained(client) -> None:
    """Values that pass isdigit() but are not ASCII digits, dates at the end of the
    calendar, cursors with huge ids: the page answers and says what it ignored."""
    import base64

    huge = base64.urlsafe_b64encode(b"2026-01-01T00:00:00+00:00|99999999999999999999").decode()
    far = base64.urlsafe_b64encode(b"9999-12-31T00:00:00+00:00|1").decode()
    cases = {"sent_by": "²", "to": "9999-12-31", "from": "0001-01-01", "before": huge}
    for name, value in cases.items():
        response = client.get(url("history.history"), query_string={name: value})
        assert response.status_code == 200, (name, value)
    assert client.get(url("history.history"), query_string={"before": far}).status_code == 200
    page = client.get(url("history.history"), query_string={"to": "9999-12-31"})
    assert "between 2000-01-01 and 2099-12-31" in page.get_data(as_text=True)
    export = client.get(url("history.export"), query_string={"to": "9999-12-31",
                                                              "sent_by": "99999999999"})
    assert export.status_code == 200
    assert export.get_data(as_text=True).startswith("\ufeffcreated_at_local,")  # whole, not cut
    export.close()  # the stream holds a database connection until closed
    rows = client.get(url("history.rows"), query_string={"id": ["x" * 30, "\u00b2"]})
    assert rows.status_code in (200, 286)


def test_odd_query_values_never_give_a_500(client, login_as):
    login_as()
    check_odd_query_values_are_explained(client)


# ---- accounts ---------------------------------------------------------------------------------
def test_a_password_equal_to_the_email_is_refused_in_words(app, client, login_as, make_user):
    admin = login_as("admin", "Boss@Example.com")
    response = post_form(client, url("auth.change_password"), {
        "current_password": PASSWORD, "new_password": "BOSS@EXAMPLE.COM",
        "confirm": "BOSS@EXAMPLE.COM"})
    assert response.status_code == 200
    assert "email" in response.get_data(as_text=True).lower()
    staff = make_user("amy@example.com")
    target = url("auth.reset_password", user_id=staff.id)
    response = post_form(client, target, {"password": "Amy@Example.com"},
                         form_page=url("auth.user_detail", user_id=staff.id))
    assert response.status_code == 400
    with app.app_context():  # nothing changed
        assert accounts.authenticate("amy@example.com", PASSWORD) is not None
        assert accounts.authenticate(admin.email, PASSWORD) is not None


def test_failures_from_one_address_do_not_lock_out_another(client, make_user, app):
    make_user("amy@example.com")
    attacker = {"REMOTE_ADDR": "198.51.100.7"}
    for _ in range(5):
        token = csrf_token(client, url("auth.login"))
        client.post(url("auth.login"), data={"csrf_token": token, "email": "amy@example.com",
                                             "password": "wrong password!!"},
                    environ_overrides=attacker)
    token = csrf_token(client, url("auth.login"))
    blocked = client.post(url("auth.login"), environ_overrides=attacker, data={
        "csrf_token": token, "email": "amy@example.com", "password": PASSWORD})
    assert blocked.status_code == 429
    assert "from your address" in blocked.get_data(as_text=True)
    staff = app.test_client()  # amy, at her desk
    assert login(staff, "amy@example.com").status_code == 303


def test_guessing_from_many_addresses_locks_the_account_until_an_admin_unlocks_it(
        app, make_user):
    from webapp.auth.throttle import FROM_ANYWHERE

    make_user("amy@example.com")
    make_user("boss@example.com", role="admin")
    guesser = app.test_client()
    for i in range(FROM_ANYWHERE.amount):
        token = csrf_token(guesser, url("auth.login"))
        guesser.post(url("auth.login"), environ_overrides={"REMOTE_ADDR": f"203.0.113.{i}"},
                     data={"csrf_token": token, "email": "amy@example.com",
                           "password": "wrong password!!"})
    amy = app.test_client()
    locked = login(amy, "amy@example.com")
    assert locked.status_code == 429
    assert "ask an admin to unlock it" in locked.get_data(as_text=True)
    admin = app.test_client()
    assert login(admin, "boss@example.com").status_code == 303
    with app.app_context():
        amy_id = accounts.find_user("amy@example.com").id
    page = url("auth.user_detail", user_id=amy_id)
    assert post_form(admin, url("auth.unlock", user_id=amy_id), {}, form_page=page
                     ).status_code == 303
    assert login(amy, "amy@example.com").status_code == 303


def test_concurrent_wrong_passwords_are_counted_before_they_are_checked(live, make_user):
    """20 guesses at the same moment: the limit is counted first, so at most 5 are checked
    (before, all 20 were: each was checked before any was counted)."""
    make_user("amy@example.com")
    codes = wrong_passwords_at_once(live.url, "amy@example.com", 20)
    assert sorted(codes) == [200] * 5 + [429] * 15, codes


def check_demotion_race_leaves_an_admin(app: Flask, rounds: int = 5) -> None:
    """Two admins demote each other at the same moment: one must stay. Also run on
    PostgreSQL by tests/stack."""
    for n in range(rounds):
        with app.app_context():
            pair = [accounts.create_user(f"a{n}{i}@example.com", PASSWORD, "admin").id
                    for i in range(2)]
            # Only this pair is admin: everyone else steps down first.
            for user in db.session.scalars(db.select(User).where(User.id.not_in(pair))):
                user.role = "staff"
            db.session.commit()
        start = threading.Barrier(2)
        outcomes: list[str] = []

        def demote(target_id: int, start=start, outcomes=outcomes) -> None:
            with app.app_context():
                target = db.session.get(User, target_id)
                start.wait()
                try:
                    accounts.set_role(target, "staff")
                    outcomes.append("demoted")
                except accounts.AccountError:
                    outcomes.append("refused")

        threads = [threading.Thread(target=demote, args=(pair[1 - i],)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        with app.app_context():
            admins = db.session.scalar(db.select(db.func.count()).select_from(User).where(
                User.role == "admin", User.is_active))
        assert admins == 1 and sorted(outcomes) == ["demoted", "refused"], (n, outcomes)


def test_two_admins_demoting_each_other_at_once_leave_one(app):
    check_demotion_race_leaves_an_admin(app)


def test_a_newline_in_a_logged_value_cannot_forge_a_log_line(make_app, capfd):
    app = make_app(LOG_LEVEL="info", LOG_FORMAT="text")
    client = app.test_client()
    forged = "x@example.com\n2026-12-01 00:00:00 INFO    [-] webapp.auth.views: login succeeded"
    token = csrf_token(client, url("auth.login"))
    client.post(url("auth.login"), data={"csrf_token": token, "email": forged,
                                         "password": "wrong password!!"})
    logged = capfd.readouterr().err
    assert "audit sign_in_failed" in logged
    assert "\\n2026-12-01" in logged
    assert not any(line.lstrip().startswith("2026-12-01 00:00:00 INFO")
                   for line in logged.splitlines())


# ---- compose -----------------------------------------------------------------------------------
def test_a_huge_recipient_list_is_refused_before_any_number_is_parsed(monkeypatch):
    import phonenumbers

    calls = []
    real = phonenumbers.parse
    monkeypatch.setattr(phonenumbers, "parse", lambda *a: calls.append(a) or real(*a))
    numbers = "\n".join(f"+1415555{i:04d}" for i in range(22_200))
    with pytest.raises(ValueError, match="at most 25"):
        parse_recipients(numbers)
    assert calls == []
    fifty_one = ",".join(f"+1415555{i:04d}" for i in range(2000, 2051))
    with pytest.raises(ValueError, match="at most 25"):
        parse_recipients(fifty_one)
    assert calls == []
    # Duplicates do not count against the cap, and are removed.
    assert parse_recipients(",".join(["(415) 555-2000"] * 60)) == ["+14155552000"]


def test_the_supported_python_is_checked_at_start():
    check_python((3, 11, 7))
    with pytest.raises(ConfigError, match=r"Python 3\.11 or newer"):
        check_python((3, 10, 14))


# ---- fuzz: every route, every parameter ---------------------------------------------------------
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)


def fuzz_every_route(app: Flask, client, data) -> None:
    """Random values for the known parameters (and a random one) on every route, with a
    valid CSRF token half the time so that forms reach their handlers: never a 5xx."""
    names = [*QUERY_PARAMETERS, *form_field_names()]
    token = csrf_token(client, url("sending.compose"))
    for endpoint, method, path in routes(app, user_id=2):  # the other admin, not oneself
        if endpoint == "auth.logout":
            continue  # would end the session the other requests need
        values = data.draw(st.dictionaries(st.sampled_from([*names, "zz"]), TEXT,
                                           max_size=6), label=f"{method} {endpoint}")
        if method == "GET":
            response = client.get(path, query_string=values)
        else:
            if data.draw(st.booleans()):
                values["csrf_token"] = token
            response = client.open(path, method=method, data=values)
        response.get_data()
        response.close()
        assert response.status_code < 500, (endpoint, method, values, response.status_code)


@pytest.fixture(scope="module")
def fuzz_app(tmp_path_factory):
    from tests.conftest import base_env
    from tests.helpers import make_message

    app = __import__("webapp").create_app(base_env(tmp_path_factory.mktemp("fuzz"),
                                                   SENDS_PER_MINUTE_PER_USER="100000"))
    with app.app_context():
        db.create_all()
        accounts.create_user("admin@example.com", PASSWORD, "admin")
        accounts.create_user("other@example.com", PASSWORD, "admin")
        db.session.add(make_message(plivo_uuid="fuzz-1"))
        db.session.commit()
    return app


@pytest.fixture(scope="module")
def fuzz_client(fuzz_app):
    client = fuzz_app.test_client()
    assert login(client, "admin@example.com").status_code == 303
    return client


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_no_route_gives_a_500_whatever_its_parameters(fuzz_app, fuzz_client, data):
    fuzz_every_route(fuzz_app, fuzz_client, data)
    with fuzz_app.app_context():
        assert db.session.scalar(db.select(db.func.count()).select_from(Message)) >= 1

