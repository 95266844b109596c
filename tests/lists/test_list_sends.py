"""Sending to a list through the pages: preview, confirm, approval, pause, resume, cancel,
opt-outs, the report, retry, fair sharing, and a list sent through the simulator."""

from __future__ import annotations

import csv
import io
import re

import pytest
from sqlalchemy import func, select

from tests.accounts import entries
from tests.conftest import csrf_token, login, post_form
from tests.helpers import url
from tests.lists.test_list_file import numbers
from webapp import statuses
from webapp.extensions import db
from webapp.lists import lanes, states
from webapp.messages import opt_outs
from webapp.models import Batch, BatchDraft, Message
from webapp.sending import dispatch

MEDIA = "https://example.com/picture.jpg"
TOKEN_RE = re.compile(r"/batches/drafts/([A-Za-z0-9_-]+)")


# ---- through the pages ---------------------------------------------------------------------
def upload(client, data: bytes | None = None, pasted: str = "", text: str = "Hi ((name))",
           filename: str = "customers.csv"):
    token = csrf_token(client, url("lists.new_batch"))
    form = {"csrf_token": token, "sender": "+14155550100", "text": text, "media": MEDIA,
            "pasted": pasted}
    if data is not None:
        form["list_file"] = (io.BytesIO(data), filename)
    return client.post(url("lists.new_batch"), data=form,
                       content_type="multipart/form-data")


def draft_token(answer) -> str:
    assert answer.status_code == 303, answer.get_data(as_text=True)[:2000]
    return TOKEN_RE.search(answer.headers["Location"]).group(1)


def confirm(client, token: str):
    page = url("lists.batch_draft", token=token)
    return post_form(client, url("lists.confirm_batch", token=token), {}, form_page=page)


def counts(app) -> tuple[int, int]:
    with app.app_context():
        return (db.session.scalar(select(func.count()).select_from(Message)),
                db.session.scalar(select(func.count()).select_from(Batch)))


def test_preview_says_what_will_happen_before_anything_is_recorded(app, client, login_as):
    login_as("staff")
    rows = ["name,phone"] + [f"Person {i},{n}" for i, n in enumerate(numbers(20))]
    rows += ["Dup,(415) 555-0101", "Bad,12345", "=HYPERLINK(\"x\"),(415) 555-0150"]
    token = draft_token(upload(client, "\n".join(rows).encode()))
    assert counts(app) == (0, 0)  # a draft is not a send
    page = client.get(url("lists.batch_draft", token=token)).get_data(as_text=True)
    assert "21 numbers will be sent to" in page
    assert "1 duplicate removed" in page and "1 invalid" in page
    assert "Hi Person 0" in page and "Hi Person 2" in page and "Hi Person 3" not in page
    assert "About $0.42" in page and "configured price" in page
    left_out = client.get(url("lists.batch_left_out", token=token))
    assert left_out.status_code == 200
    assert list(csv.reader(io.StringIO(left_out.get_data(as_text=True).lstrip("\ufeff")))) == [
        ["row", "value", "reason"], ["23", "12345", "“12345” is too short"]]


def test_confirm_records_the_batch_once_with_its_audit_entry(app, client, login_as):
    user = login_as("staff")
    rows = ["name,phone"] + [f"P{i},{n}" for i, n in enumerate(numbers(30))]
    token = draft_token(upload(client, "\n".join(rows).encode()))
    first = confirm(client, token)
    assert first.status_code == 303 and "/batches/" in first.headers["Location"]
    again = client.post(url("lists.confirm_batch", token=token),
                        data={"csrf_token": csrf_token(client, url("lists.batches"))})
    assert again.status_code == 303 and again.headers["Location"] == first.headers["Location"]
    assert counts(app) == (30, 1)
    with app.app_context():
        batch = db.session.scalar(select(Batch))
        texts = set(db.session.scalars(select(Message.text)))
        fields = db.session.scalar(select(Message.fields).where(Message.recipient == "+14155550101"))
        assert batch.status == states.SENDING and batch.total == 30
        assert db.session.get(BatchDraft, token) is None
    assert "Hi P0" in texts and "Hi P29" in texts and fields == {"name": "P0"}
    [sent] = entries(app, "batch_sent")
    assert sent.actor_id == user.id and sent.detail["recipients"] == 30
    page = client.get(first.headers["Location"]).get_data(as_text=True)
    assert "Waiting to send" in page and "30" in page


def test_a_draft_belongs_to_its_person(app, client, login_as, make_user):
    login_as("staff")
    token = draft_token(upload(client, pasted="4155550101", text="Hello"))
    make_user("other@example.com")
    other = app.test_client()
    login(other, "other@example.com")
    assert other.get(url("lists.batch_draft", token=token)).status_code == 404
    assert confirm(other, token).status_code == 303
    assert counts(app) == (0, 0)


def test_changing_the_number_column(app, client, login_as):
    login_as("staff")
    token = draft_token(upload(client, b"a,b\n4155550101,4155550102\n4155550103,hello\n",
                               text="x"))
    page = url("lists.batch_draft", token=token)
    assert "2 numbers will be sent to" in client.get(page).get_data(as_text=True)
    post_form(client, url("lists.batch_column", token=token), {"column": "1"}, form_page=page)
    assert "1 number will be sent to" in client.get(page).get_data(as_text=True)
    for bad in ("7", "-1", "x" * 50, ""):
        answer = post_form(client, url("lists.batch_column", token=token), {"column": bad},
                           form_page=page)
        assert answer.status_code == 303


@pytest.mark.parametrize("data, pasted, words", [
    (None, "", "Choose a CSV file with your list, or paste its rows."),
    (b"", "", "The file is empty"),
    (b"\x00\x01\x02binary", "", "not a CSV file"),
    # 50,000 rows, kept under the test client's 500 KB spool (a bigger body becomes a temp
    # file the test client never closes)
    (b"phone\n" + b"1\n" * 50_000, "", "more than 10,000 rows"),
])
def test_bad_lists_get_a_clear_answer_and_record_nothing(app, client, login_as, data, pasted,
                                                         words):
    login_as("staff")
    answer = upload(client, data, pasted)
    assert answer.status_code == 400
    assert words in answer.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(BatchDraft)) == 0
    assert counts(app) == (0, 0)


def test_a_list_with_no_one_to_send_to_cannot_be_confirmed(app, client, login_as):
    login_as("staff")
    token = draft_token(upload(client, pasted="name,phone\nAna,123\n"))
    page = client.get(url("lists.batch_draft", token=token)).get_data(as_text=True)
    assert "No one on this list can be sent to" in page and 'id="confirm"' not in page
    confirm(client, token)
    assert counts(app) == (0, 0)


def test_a_placeholder_with_no_column_is_refused(app, client, login_as):
    login_as("staff")
    token = draft_token(upload(client, pasted="name,phone\nAna,4155550101\n",
                               text="Hi ((nickname))"))
    page = client.get(url("lists.batch_draft", token=token)).get_data(as_text=True)
    assert "The list has no column for ((nickname)): did you mean ((name))?" in page
    assert "Nothing can be sent yet" in page and "will be sent to" not in page
    confirm(client, token)
    assert counts(app) == (0, 0)


def test_a_placeholder_typo_is_named_with_its_column_and_fixed_on_the_preview(app, client,
                                                                            login_as):
    login_as("staff")
    rows = "name,phone\nAna,4155550101\n,4155550102\nBo,+1555ABC\nCy,4155550103\n"
    token = draft_token(upload(client, pasted=rows, text="Hi ((nmae))"))
    page = client.get(url("lists.batch_draft", token=token)).get_data(as_text=True)
    assert "The list has no column for ((nmae)): did you mean ((name))?" in page
    assert 'id="draft-text" name="text"' in page  # the text can be changed right here
    fixed = post_form(client, url("lists.batch_text", token=token), {"text": "Hi ((name))"},
                      form_page=url("lists.batch_draft", token=token))
    assert fixed.status_code == 303
    page = client.get(url("lists.batch_draft", token=token)).get_data(as_text=True)
    assert "did you mean" not in page and "Nothing can be sent yet" not in page
    summary = re.sub(r"\s+", " ", page[page.index('id="batch-summary"'):].split("</p>")[0])
    assert "2 numbers will be sent to" in summary
    assert "1 invalid" in summary  # +1555ABC; not the row only missing a name
    assert "1 missing a value for ((name))" in summary
    left_out = re.findall(r"<li>Row (\d+): ([^<]*)</li>", page)
    assert left_out == [("3", "4155550102: missing a value for ((name))"),
                        ("4", "+1555ABC: “+1555ABC” contains letters; type the number in digits")]
    assert "The first 2 messages" in page
    assert "the team&#39;s average" in page or "the configured price" in page
    assert "your average" not in page
    assert counts(app) == (0, 0)


# ---- approval, pause, resume, cancel ---------------------------------------------------------
def test_over_the_ceiling_a_batch_waits_for_an_admin(app, client, login_as, make_user):
    make_user("boss@example.com", "admin")
    boss = app.test_client()
    login(boss, "boss@example.com")
    limits = url("lists.opt_outs")
    for bad in ({"recipients": "-3"}, {"cost": "abc"}, {"cost": "NaN"}):
        post_form(boss, url("lists.batch_limits"), bad, form_page=limits)
    assert entries(app, "batch_limits_changed") == []
    post_form(boss, url("lists.batch_limits"), {"recipients": "5", "cost": ""},
              form_page=limits)
    assert len(entries(app, "batch_limits_changed")) == 1
    login_as("staff")
    token = draft_token(upload(client, pasted="\n".join(numbers(6)), text="Hello"))
    assert "wait for an admin" in client.get(
        url("lists.batch_draft", token=token)).get_data(as_text=True)
    where = confirm(client, token).headers["Location"]
    public_id = where.rsplit("/", 1)[-1]
    with app.app_context():
        assert db.session.scalar(select(Batch.status)) == states.AWAITING
    # staff cannot approve; the admin can, once
    assert post_form(client, url("lists.approve_batch", public_id=public_id), {},
                     form_page=url("lists.batches")).status_code == 403
    post_form(boss, url("lists.approve_batch", public_id=public_id), {}, form_page=limits)
    post_form(boss, url("lists.approve_batch", public_id=public_id), {}, form_page=limits)
    with app.app_context():
        batch = db.session.scalar(select(Batch))
        assert batch.status == states.SENDING and batch.approved_by.email == "boss@example.com"
    assert len(entries(app, "batch_approved")) == 1


def test_pause_resume_and_cancel_are_recorded_and_cancel_counts_exactly(app, client, login_as):
    login_as("staff")
    token = draft_token(upload(client, pasted="\n".join(numbers(10)), text="Hello"))
    public_id = confirm(client, token).headers["Location"].rsplit("/", 1)[-1]
    page = url("lists.batch", public_id=public_id)
    with app.app_context():  # three were handed to Plivo already
        ids = list(db.session.scalars(select(Message.id).order_by(Message.id).limit(3)))
        for message_id in ids:
            assert dispatch._claim(message_id)
    post_form(client, url("lists.pause_batch", public_id=public_id), {}, form_page=page)
    post_form(client, url("lists.resume_batch", public_id=public_id), {}, form_page=page)
    answer = post_form(client, url("lists.cancel_batch", public_id=public_id), {"confirmed": "yes"},
                       form_page=page, follow_redirects=True)
    assert "Cancelled: 7 not sent; 3 had already been handed to Plivo." in \
        answer.get_data(as_text=True)
    with app.app_context():
        by_status = dict(db.session.execute(select(Message.status, func.count())
                                            .group_by(Message.status)).all())
        assert by_status == {statuses.CANCELLED: 7, statuses.PENDING: 3}
    assert [e.action for e in entries(app) if e.action.startswith("batch_")] == [
        "batch_sent", "batch_paused", "batch_resumed", "batch_cancelled"]
    assert entries(app, "batch_cancelled")[0].detail["cancelled"] == 7


def test_another_staff_member_cannot_stop_a_batch(app, client, login_as, make_user):
    login_as("staff")
    public_id = confirm(client, draft_token(upload(client, pasted="4155550101", text="Hello"))
                        ).headers["Location"].rsplit("/", 1)[-1]
    make_user("other@example.com")
    other = app.test_client()
    login(other, "other@example.com")
    for endpoint in ("lists.pause_batch", "lists.cancel_batch"):
        answer = post_form(other, url(endpoint, public_id=public_id), {},
                           form_page=url("lists.batches"))
        assert answer.status_code == 403


def test_a_paused_batch_sends_nothing_and_a_lane_stops(app, client, login_as):
    login_as("staff")
    public_id = confirm(client, draft_token(upload(client, pasted="\n".join(numbers(4)), text="Hello"))
                        ).headers["Location"].rsplit("/", 1)[-1]
    page = url("lists.batch", public_id=public_id)
    post_form(client, url("lists.pause_batch", public_id=public_id), {}, form_page=page)
    with app.app_context():
        batch_id = db.session.scalar(select(Batch.id))
        lanes.dispatch_lane(batch_id, 0)  # returns at once: nothing is claimed
        assert db.session.scalar(select(func.sum(Message.attempts))) == 0


# ---- opt-outs ------------------------------------------------------------------------------
def test_opted_out_numbers_are_left_out_refused_and_removable(app, client, login_as, make_user):
    from tests.sending.test_submission import compose

    with app.app_context():
        opt_outs.note("+14155550101", "+14155550100", None)
        db.session.commit()
    login_as("staff")
    token = draft_token(upload(client, pasted="\n".join(numbers(3)), text="Hello"))
    page = client.get(url("lists.batch_draft", token=token)).get_data(as_text=True)
    assert "2 numbers will be sent to" in page and "1 opted out" in page
    answer, _key = compose(client, "+14155550101")
    assert answer.status_code == 400
    assert "replied STOP" in answer.get_data(as_text=True)
    assert staff_forbidden(client)
    make_user("boss@example.com", "admin")
    boss = app.test_client()
    login(boss, "boss@example.com")
    listing = boss.get(url("lists.opt_outs")).get_data(as_text=True)
    assert "(415) 555-0101" in listing
    export = boss.get(url("lists.export_opt_outs"))
    assert "+14155550101" in export.get_data(as_text=True)
    post_form(boss, url("lists.remove_opt_out"), {"number": "+14155550101", "confirmed": "yes"},
              form_page=url("lists.opt_outs"))
    post_form(boss, url("lists.remove_opt_out"), {"number": "+14155550101", "confirmed": "yes"},
              form_page=url("lists.opt_outs"))
    assert len(entries(app, "opt_out_removed")) == 1
    assert len(entries(app, "opt_outs_exported")) == 1
    assert compose(client, "+14155550101")[0].status_code == 303


def staff_forbidden(client) -> bool:
    return client.get(url("lists.opt_outs")).status_code == 403


# ---- report, retry, copy -------------------------------------------------------------------
def _finished_batch(app, client):
    rows = "name,phone\n=cmd|' /C calc'!A0,4155550101\nBo,4155550102\nCy,4155550103\n" \
           "Di,4155550104\n"
    public_id = confirm(client, draft_token(upload(client, pasted=rows))
                        ).headers["Location"].rsplit("/", 1)[-1]
    outcomes = {"+14155550101": (statuses.FAILED, "80"), "+14155550102": (statuses.FAILED, "200"),
                "+14155550103": (statuses.UNKNOWN, None), "+14155550104": (statuses.DELIVERED, None)}
    with app.app_context():
        for message in db.session.scalars(select(Message)):
            message.status, message.error_code = outcomes[message.recipient]
            message.error_reason = statuses.explain_error_code(message.error_code)
            message.total_amount = "0.02000"
        db.session.commit()
    return public_id


def test_report_keeps_the_list_columns_and_neutralises_formulas(app, client, login_as):
    login_as("staff")
    public_id = _finished_batch(app, client)
    answer = client.get(url("lists.batch_report", public_id=public_id))
    assert answer.mimetype == "text/csv"
    rows = list(csv.reader(io.StringIO(answer.get_data(as_text=True).lstrip("\ufeff"))))
    assert rows[0][:4] == ["phone", "name", "status", "error"]
    assert rows[1][:2] == ["+14155550101", "'=cmd|' /C calc'!A0"]
    assert len(rows) == 5 and len(entries(app, "batch_exported")) == 1
    page = client.get(url("lists.batch", public_id=public_id)).get_data(as_text=True)
    assert "Retry the 1 that may succeed now" in page and "$0.08" in page


def test_retry_takes_only_failures_a_retry_may_fix(app, client, login_as):
    login_as("staff")
    public_id = _finished_batch(app, client)
    page = url("lists.batch", public_id=public_id)
    retry = post_form(client, url("lists.retry_batch", public_id=public_id), {},
                      form_page=page)
    token = draft_token(retry)
    preview = client.get(url("lists.batch_draft", token=token)).get_data(as_text=True)
    assert "1 number will be sent to" in preview and "(415) 555-0101" in preview
    copy = post_form(client, url("lists.copy_batch", public_id=public_id), {},
                     form_page=page)
    preview = client.get(url("lists.batch_draft", token=draft_token(copy))).get_data(as_text=True)
    assert "4 numbers will be sent to" in preview
