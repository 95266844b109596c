"""Sending to a list, continued: opt-outs noted from Plivo's callbacks, fair sharing with
single sends, a list through the simulator end to end, compose handing over to a list,
and the live parts of the list page."""

from __future__ import annotations

import re
import threading
import time

import pytest
from sqlalchemy import func, select

from tests.conftest import PASSWORD, csrf_token, login, wait_for
from tests.helpers import url
from tests.lists.test_list_file import numbers
from tests.lists.test_list_sends import (
    MEDIA,
    _finished_batch,
    confirm,
    counts,
    draft_token,
    upload,
)
from webapp import statuses
from webapp.extensions import db
from webapp.gateway import pace
from webapp.lists import controls, states
from webapp.messages import opt_outs
from webapp.models import Batch, Message, OptOut, User
from webapp.sending import dispatch


# ---- the opt-out list fills itself from Plivo's callbacks ------------------------------------
def test_error_200_in_a_callback_adds_the_number(app, make_user):
    from tests.helpers import save_message
    from webapp.callbacks.ledger import parse_callback, record_status_callback

    user = make_user()
    save_message(app, status="sent", plivo_uuid="u-200", recipient="+16045550199",
                 created_by_id=user.id)
    payload = {"MessageUUID": "u-200", "Status": "failed", "ErrorCode": "200", "Sequence": "3",
               "To": "16045550199", "From": "14155550100"}
    with app.app_context():
        record_status_callback(parse_callback(payload), payload, "v3")
        assert db.session.scalar(select(OptOut.number)) == "+16045550199"


# ---- fair sharing ----------------------------------------------------------------------------
def test_a_single_send_takes_the_window_before_waiting_batch_messages():
    limiter = pace.DispatchLimiter("memory://", per_5s=2, max_in_flight=10)
    order: list[str] = []
    with limiter.slot(), limiter.slot():  # the window is full for 5 s
        pass

    def take(name: str, background: bool) -> None:
        with limiter.slot(background=background):
            order.append(name)

    batch = [threading.Thread(target=take, args=(f"batch{i}", True), daemon=True)
             for i in range(2)]
    for thread in batch:
        thread.start()
    time.sleep(0.2)  # both batch messages wait for the window first
    single = threading.Thread(target=take, args=("single", False))
    single.start()
    single.join(15)
    assert order[0] == "single", order


# ---- end to end: the live dashboard and the simulator ----------------------------------------
@pytest.mark.integration
def test_a_list_is_sent_through_plivo_and_a_single_send_goes_meanwhile(live, simulator,
                                                                      make_user):
    import requests

    sim, _url = simulator
    make_user("amy@example.com")
    browser = requests.Session()
    base = live.url
    token = csrf_token_from(browser.get(base + url("auth.login")).text)
    browser.post(base + url("auth.login"), data={"csrf_token": token, "email": "amy@example.com",
                                                 "password": PASSWORD})
    form_page = browser.get(base + url("lists.new_batch")).text
    rows = "name,phone\n" + "\n".join(f"P{i},{n}" for i, n in enumerate(numbers(40)))
    answer = browser.post(base + url("lists.new_batch"), allow_redirects=False, data={
        "csrf_token": csrf_token_from(form_page), "sender": "+14155550100",
        "text": "Hello ((name))", "media": MEDIA, "pasted": rows})
    preview = base + answer.headers["Location"]
    page = browser.get(preview).text
    done = browser.post(preview + "/confirm", data={"csrf_token": csrf_token_from(page)},
                        allow_redirects=False)
    batch_page = base + done.headers["Location"]
    with live.app.app_context():
        wait_for(lambda: db.session.scalar(select(func.count()).select_from(Message).where(
            Message.status == statuses.DELIVERED)) == 40 or db.session.rollback(), timeout=30)
        assert db.session.scalar(select(Batch.status)) == states.FINISHED
    texts = {r["text"] for r in sim.requests if "text" in r}
    assert "Hello P0" in texts and "Hello P39" in texts
    shown = browser.get(batch_page).text
    assert 'id="count-delivered">40<' in shown


def csrf_token_from(html: str) -> str:
    from tests.helpers import csrf_token_in

    return csrf_token_in(html)


# ---- shared with the PostgreSQL suite (tests/stack) -----------------------------------------
def check_cancel_races_the_dispatch(app) -> None:
    """Workers claim a batch's messages while its owner cancels: each message ends either
    claimed or cancelled, never both, and the cancel's count is exact."""
    from webapp.auth import service as accounts

    client = app.test_client()
    with app.app_context():
        accounts.create_user("racer@example.com", PASSWORD, "staff")
    login(client, "racer@example.com")
    rows = "\n".join(f"(415) 555-{2000 + i:04d}" for i in range(300))
    public_id = confirm(client, draft_token(upload(client, pasted=rows, text="Hello"))
                        ).headers["Location"].rsplit("/", 1)[-1]
    with app.app_context():
        ids = list(db.session.scalars(select(Message.id).order_by(Message.id)))
    claimed: list[int] = []
    start = threading.Barrier(5)

    def claim(part: list[int]) -> None:
        with app.app_context():
            start.wait()
            claimed.extend(i for i in part if dispatch._claim(i))

    threads = [threading.Thread(target=claim, args=(ids[k::4],)) for k in range(4)]
    for thread in threads:
        thread.start()
    start.wait()
    time.sleep(0.01)
    with app.app_context():
        batch = controls.batch_by_public_id(public_id)
        owner = db.session.get(User, batch.created_by_id)
        cancelled = controls.cancel(batch, owner)
    for thread in threads:
        thread.join()
    with app.app_context():
        by_status = dict(db.session.execute(select(Message.status, func.count())
                                            .group_by(Message.status)).all())
        attempted = db.session.scalar(select(func.count()).select_from(Message).where(
            Message.attempts > 0))
        both = db.session.scalar(select(func.count()).select_from(Message).where(
            Message.attempts > 0, Message.status == statuses.CANCELLED))
    assert both == 0
    assert attempted == len(claimed) and cancelled == by_status.get(statuses.CANCELLED, 0)
    assert cancelled + len(claimed) == 300


def check_opt_out_is_noted_once(app) -> None:
    with app.app_context():
        for _ in range(2):
            opt_outs.note("+14155550199", "+14155550100", None)
            db.session.commit()
        assert opt_outs.among(["+14155550199", "+14155550198"]) == {"+14155550199"}


def test_cancel_races_the_dispatch(app):
    check_cancel_races_the_dispatch(app)


def test_an_opt_out_is_noted_once(app):
    check_opt_out_is_noted_once(app)


@pytest.mark.parametrize("count", [30, 200])  # over the limit, and past what To reads at all
def test_too_many_numbers_for_compose_go_to_a_list_send_with_the_message(app, client,
                                                                         login_as, count):
    from tests.sending.test_submission import KEY_RE

    login_as("staff")
    typed = "\n".join(numbers(count))
    page = client.get(url("sending.compose")).get_data(as_text=True)
    form = {"csrf_token": csrf_token(client, url("sending.compose")),
            "idempotency_key": KEY_RE.search(page).group(1), "sender": "+14155550100",
            "recipients": typed, "text": "Spring sale this weekend", "media": MEDIA}
    refused = client.post(url("sending.compose"), data=form)
    assert refused.status_code == 400
    html = refused.get_data(as_text=True)
    assert "For more, send it as a list" in html
    assert f'formaction="{url("lists.new_batch")}" name="from_compose"' in html
    # The button posts the same form to the list send: everything is carried over.
    carried = client.post(url("lists.new_batch"), data={**form, "from_compose": "1"})
    assert carried.status_code == 200
    page = carried.get_data(as_text=True)
    assert "Your numbers, message and pictures are here" in page
    assert numbers(count)[-1] in page and "Spring sale this weekend" in page
    assert MEDIA in page
    assert counts(app) == (0, 0)  # nothing recorded before the person checks it
    token = draft_token(upload(client, pasted=typed, text="Spring sale this weekend"))
    assert f"{count} numbers will be sent to" in client.get(
        url("lists.batch_draft", token=token)).get_data(as_text=True).replace("\n", " ")


def test_each_refresh_of_the_list_page_agrees_with_its_counts(app, client, login_as):
    """The page said "Failed 2" but listed one failure until reloaded: the failures are
    now part of the live part, read with the counts on every refresh."""
    login_as("staff")
    public_id = _finished_batch(app, client)
    live = client.get(url("lists.batch_progress", public_id=public_id)).get_data(as_text=True)
    failed = int(re.search(r'id="count-failed">([\d,]+)<', live).group(1))
    listed = re.findall(r'<ul class="failures">(.*?)</ul>', live, re.S)
    assert failed == 2 and len(re.findall(r"<li>", listed[0])) == failed
    with app.app_context():  # one more fails after the page was opened
        late = db.session.scalars(select(Message).where(
            Message.recipient == "+14155550104")).one()
        late.status, late.error_code = statuses.UNDELIVERED, "30"
        db.session.commit()
    live = client.get(url("lists.batch_progress", public_id=public_id)).get_data(as_text=True)
    assert re.search(r'id="count-failed">3<', live)
    assert len(re.findall(r"<li>", re.search(r'<ul class="failures">(.*?)</ul>', live,
                                             re.S).group(1))) == 3
