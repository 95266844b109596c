"""Every route is accounted for: each action writes exactly one audit entry, or is exempt
with its reason."""

from __future__ import annotations

import csv
import io

import pytest
from sqlalchemy import select

from tests.accounts import enrol, entries, password_step
from tests.conftest import PASSWORD, csrf_token, login, post_form
from tests.helpers import url
from webapp import audit
from webapp.extensions import db

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
    "lists.batch_text": "a draft's text corrected on the preview; nothing is sent",
    "lists.retry_batch": "a new draft from a batch; its confirm is recorded",
    "lists.copy_batch": "a new draft from a batch; its confirm is recorded",
    "lists.batch_left_out": "the person's own list's rows, with why they were left out",
    "inbound.plivo_message": "Plivo, not a person; every reply is kept, consent changes too",
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
    "lists.add_opt_out": "opt_out_added",
    "lists.export_consent": "consent_exported",
    "conversations.reply": "reply_sent",  # driven in tests/conversations (the simulator)
    "conversations.mark": "conversation_marked",
}
EXPORTS = {"history.export", "audit_log.audit_export", "lists.batch_report",
           "lists.export_opt_outs", "lists.batch_left_out", "lists.export_consent"}


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
    sure = lambda ctx: {"confirmed": "yes"}  # noqa: E731  (a destructive action asks first)
    drivers = {
        "auth.users": admin_form(none, lambda ctx: {
            "email": "new@example.com", "role": "staff", "password": PASSWORD}),
        "auth.require_two_factor": admin_form(none, lambda ctx: {"required": "on"}),
        "auth.reset_password": admin_form(amy_id, lambda ctx: {"password": "a new passphrase!"}),
        "auth.change_role": admin_form(amy_id, lambda ctx: {"role": "admin"}),
        "auth.deactivate": admin_form(amy_id, sure),
        "auth.unlock": admin_form(amy_id, empty),
        "auth.end_user_sessions": admin_form(amy_id, sure),
        "auth.reset_two_factor": admin_form(amy_id, empty),
        "auth.logout": admin_form(none, empty),
        "auth.end_other_sessions": admin_form(none, sure),
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
    post_form(client, url("auth.deactivate", user_id=amy.id), {"confirmed": "yes"},
              form_page=page)
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
    from tests.sending.test_submission import compose

    user = login_as("staff")
    answer, key = compose(client, "+14155550123, +14155550124, +16045550199")
    assert answer.status_code == 303
    [sent] = entries(app, "messages_sent")
    assert sent.actor_id == user.id and sent.target == "3 recipients"
    assert sent.detail == {"recipients": 3, "media": 1, "key": key}
    compose(client, "+14155550123, +14155550124, +16045550199", key=key)  # a double click
    assert len(entries(app, "messages_sent")) == 1


def test_send_again_writes_one_entry(app, client, login_as):
    from tests.helpers import save_message

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
    from tests.helpers import save_message

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
    from tests.pictures.test_uploads import png
    from webapp.models import Media

    login_as("admin")
    token = csrf_token(client, url("sending.compose"))
    answer = client.post(url("pictures.upload_media"), headers={"X-CSRFToken": token},
                         content_type="multipart/form-data",
                         data={"file": (io.BytesIO(png()), "logo.png")})
    assert answer.status_code == 200
    with app.app_context():
        digest = db.session.scalar(select(Media.sha256))
    assert not entries(app, "media_deleted")  # uploading is not recorded
    post_form(client, url("pictures.delete_media", sha256=digest), {"confirmed": "yes"},
              form_page=url("pictures.library"))
    [deleted] = entries(app, "media_deleted")
    assert deleted.detail["sha256"] == digest and deleted.target == "logo.png"
