"""The Opt-outs page: an admin adds a number, the consent history is shown and exported
whole, each audited once."""

from __future__ import annotations

import csv
import io

from sqlalchemy import select

from tests.conftest import post_form
from tests.helpers import url
from webapp.extensions import db
from webapp.messages import opt_outs
from webapp.models import AuditEvent, OptOut


def test_an_admin_adds_a_number_and_the_history_says_so(app, client, login_as):
    admin = login_as("admin")
    page = url("lists.opt_outs")
    added = post_form(client, url("lists.add_opt_out"), {"number": "(415) 555-0177"},
                      form_page=page)
    assert added.status_code == 303
    again = post_form(client, url("lists.add_opt_out"), {"number": "+14155550177"},
                      form_page=page)
    assert again.status_code == 303
    bad = post_form(client, url("lists.add_opt_out"), {"number": "call me maybe"},
                    form_page=page, follow_redirects=True)
    assert "Not added" in bad.get_data(as_text=True)
    with app.app_context():
        assert db.session.get(OptOut, "+14155550177") is not None
        (event,) = opt_outs.consent_history("+14155550177")
        assert (event.change, event.source, event.actor_id) == ("out", "admin", admin.id)
        assert [e.action for e in db.session.scalars(select(AuditEvent).where(
            AuditEvent.action == "opt_out_added"))] == ["opt_out_added"]
    html = client.get(page).get_data(as_text=True)
    assert 'id="consent-recent"' in html and "(415) 555-0177" in html


def test_the_consent_history_exports_whole_and_safe(app, client, login_as):
    login_as("admin")
    with app.app_context():
        opt_outs.note("+14155550188", "+14155550100", "pub-1", source=opt_outs.KEYWORD,
                      words="=HYPERLINK(\"http://evil\")")
        opt_outs.opt_in("+14155550188", source=opt_outs.KEYWORD, words="start")
        db.session.commit()
    answer = client.get(url("lists.export_consent"))
    assert answer.status_code == 200
    rows = list(csv.reader(io.StringIO(answer.get_data(as_text=True).lstrip("\ufeff"))))
    assert rows[0][:3] == ["number", "change", "at_utc"]
    assert [r[1] for r in rows[1:]] == ["opted out", "opted in"]
    assert rows[1][6].startswith("'=")  # a formula is not run by a spreadsheet
    with app.app_context():
        assert db.session.scalar(select(AuditEvent.action).where(
            AuditEvent.action == "consent_exported")) == "consent_exported"


def test_staff_cannot_reach_the_admin_consent_pages(client, login_as):
    login_as("staff")
    assert client.get(url("lists.export_consent")).status_code == 403
