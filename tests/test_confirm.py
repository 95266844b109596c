"""Destructive actions ask first (webapp/confirm.py): without `confirmed=yes` each answers
with a page that says what will happen, and nothing changes until the person agrees."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from tests.conftest import login, post_form
from tests.helpers import make_message, url
from webapp.extensions import db
from webapp.models import Message, OptOut, User, UserSession


def test_deactivating_an_account_asks_first_and_says_what_will_happen(app, client, login_as,
                                                                      make_user):
    amy = make_user("amy@example.com")
    login_as("admin")
    asked = post_form(client, url("auth.deactivate", user_id=amy.id), {},
                      form_page=url("auth.user_detail", user_id=amy.id))
    page = asked.get_data(as_text=True)
    assert asked.status_code == 200 and "Deactivate amy@example.com?" in page
    assert "cannot sign in until an admin reactivates the account" in page
    assert f'href="{url("auth.user_detail", user_id=amy.id)}"' in page  # the way back
    with app.app_context():
        assert db.session.get(User, amy.id).is_active


@pytest.mark.parametrize("who", ["admin", "self"])
def test_ending_sessions_asks_first_with_how_many(app, make_user, who):
    amy = make_user("amy@example.com")
    make_user("boss@example.com", "admin")
    browsers = [app.test_client() for _ in range(3)]
    for browser in browsers:
        login(browser, amy.email)
    if who == "admin":
        admin = app.test_client()
        login(admin, "boss@example.com")
        asked = post_form(admin, url("auth.end_user_sessions", user_id=amy.id), {},
                          form_page=url("auth.user_detail", user_id=amy.id))
        assert "(3 open sessions)" in asked.get_data(as_text=True)
    else:
        asked = post_form(browsers[0], url("auth.end_other_sessions"), {},
                          form_page=url("auth.account_sessions"))
        assert "Every other browser you are signed in on (2)" in asked.get_data(as_text=True)
    assert asked.status_code == 200
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(UserSession).where(
            UserSession.user_id == amy.id, UserSession.ended_at.is_(None))) == 3


def test_removing_an_opt_out_asks_first_and_carries_the_number(app, client, login_as):
    with app.app_context():
        from webapp.messages import opt_outs
        opt_outs.note("+14155550101", "+14155550100", None)
        db.session.commit()
    login_as("admin")
    asked = post_form(client, url("lists.remove_opt_out"), {"number": "+14155550101"},
                      form_page=url("lists.opt_outs"))
    page = asked.get_data(as_text=True)
    assert "Take (415) 555-0101 off the opt-out list?" in page
    assert "only if they texted START" in page
    assert '<input type="hidden" name="number" value="+14155550101">' in page
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(OptOut)) == 1


def test_a_deleted_picture_reads_as_such_on_the_messages_that_showed_it(app, client,
                                                                        login_as):
    user = login_as("staff")
    with app.app_context():
        message = make_message(created_by_id=user.id, media=[
            {"upload": "ab" * 32, "name": "storefront.jpg", "content_type": "image/jpeg",
             "size": 1000}])
        db.session.add(message)
        db.session.commit()
        public_id = message.public_id
        assert db.session.scalar(select(func.count()).select_from(Message)) == 1
    page = client.get(url("history.detail", public_id=public_id)).get_data(as_text=True)
    assert "picture deleted" in page and "storefront.jpg" in page
    assert url("pictures.media_file", sha256="ab" * 32) not in page  # no broken picture
