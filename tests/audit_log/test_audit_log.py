"""The audit log: append-only, what a failed sign-in records, the admins' page, the CSV,
pruning."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta

import pytest
import time_machine
from sqlalchemy import select

from tests.accounts import entries
from tests.conftest import T0, csrf_token, login
from tests.helpers import url
from webapp import audit
from webapp.extensions import db
from webapp.models import AuditEvent


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
    kept = entries(app)
    assert [e.target for e in kept] == ["new@example.com", "entries older than 400 days"]
    pruned = kept[-1]
    assert pruned.action == "audit_pruned" and pruned.actor_email.startswith("command line (")
    assert pruned.detail["deleted"] == 1 and pruned.detail["older_than_days"] == 400
    # The prune's own entry is not deleted by the next prune of the same age.
    assert "Deleted 0 audit entries" in runner.invoke(
        args=["audit", "prune", "--older-than", "400d"]).output
    assert [e.action for e in entries(app, "audit_pruned")] == ["audit_pruned"] * 2
