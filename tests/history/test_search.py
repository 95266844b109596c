"""Search: text through the FTS5 / tsvector index, recipients by their last digits, and
every filter answered from an index."""

from __future__ import annotations

from datetime import timedelta

from tests.helpers import make_message, url
from tests.history.conftest import STAMP, next_link, page_ids
from webapp.extensions import db
from webapp.models import Message


# ---- search ---------------------------------------------------------------------------------
def seed_texts(app, user_id: int, texts: list[str], recipient: str = "+16045557300") -> list[str]:
    with app.app_context():
        rows = [make_message(created_by_id=user_id, text=t, recipient=recipient, media=[])
                for t in texts]
        db.session.add_all(rows)
        db.session.commit()
        return [row.public_id for row in rows]


def check_text_search(app, client, user_id: int) -> None:
    """Whole words match regardless of case, accents and punctuation (`word*` for word
    beginnings); a phrase in quotes keeps its order; nothing typed is search syntax."""
    invoice, other, accents, phrase, scrambled = seed_texts(app, user_id, [
        "Your INVOICE #4471 is ready, Anna!",
        "invoice 4472 for Ben: the pick-up is at Oak Street",
        "Crème brûlée day at the café",
        "ready for pickup at the shop",
        "pickup ready? for the shop"])

    def ids(typed: str) -> set[str]:
        answer = client.get(url("history.history", q=typed))
        assert answer.status_code == 200, typed
        return set(page_ids(answer.get_data(as_text=True)))

    assert ids("invoice 4471") == {invoice}
    assert ids("4471 invoice") == {invoice}  # every word, in any order
    assert ids("Invoice") == {invoice, other}
    assert ids("#4471!") == {invoice}  # punctuation is not searched for
    assert ids("invo") == set()  # whole words...
    assert ids("invo* 447*") == {invoice, other}  # ...unless asked for their beginnings
    assert ids("pick up") == {other}
    assert ids("creme brulee") == {accents} == ids("CAFÉ")
    assert ids('"ready for pickup"') == {phrase}  # a phrase keeps its order
    assert ids("ready for pickup") == {phrase, scrambled}
    assert ids("nothing-like-this") == set()
    # What FTS5 or to_tsquery would read as their own syntax is searched for as words.
    for typed in ('NEAR(ready pickup)', 'text:ready', '"unclosed', "ready*", "^ready",
                  "-ready", "(((", "a AND", 'x" OR "y', "ready & !shop", "ready <-> shop",
                  "'ready'", "ready:*", "\\"):
        ids(typed)
    assert ids("ready OR nothing") == set()  # three words, all required
    html = client.get(url("history.history", q="!!! ...")).get_data(as_text=True)
    assert "punctuation alone matches nothing" in html and invoice in page_ids(html)


def check_recipient_search(app, client, user_id: int) -> None:
    """The last digits (at least 4) or the whole number in any format."""
    [vancouver] = seed_texts(app, user_id, ["a"], recipient="+16045557319")
    [sf] = seed_texts(app, user_id, ["b"], recipient="+14155557319")
    [other] = seed_texts(app, user_id, ["c"], recipient="+14155557320")

    def ids(typed: str) -> set[str]:
        return set(page_ids(client.get(url("history.history", recipient=typed)).get_data(
            as_text=True)))

    assert ids("7319") == {vancouver, sf}
    assert ids("555-7319") == {vancouver, sf}
    assert ids("(604) 555-7319") == {vancouver}
    assert ids("+1 604 555 7319") == {vancouver} == ids("16045557319")
    assert ids("5557320") == {other}
    assert ids("8888") == set() and ids("26045557319") == set()
    html = client.get(url("history.history", recipient="19")).get_data(as_text=True)
    assert "at least the last 4 digits" in html and vancouver in page_ids(html)


def test_text_search_matches_words_regardless_of_case_and_punctuation(app, client, login_as):
    user = login_as("staff", "viewer@example.com")
    check_text_search(app, client, user.id)


def test_recipient_search_takes_the_last_digits_or_the_whole_number(app, client, login_as):
    user = login_as("staff", "viewer@example.com")
    check_recipient_search(app, client, user.id)


def test_text_search_over_many_matches_walks_the_dates_and_pages_through_all(
        app, client, login_as, seed, monkeypatch):
    """A word in more messages than SPARSE takes the other path (each row checked while
    the date index is walked): the same rows, newest first, every one once."""
    from webapp.history import filters as history_filters
    from webapp.history import pages as history
    add, _amy, _bob = seed
    common = add(12, text="weekly newsletter")
    add(3, text="something else")
    login_as("staff", "viewer@example.com")
    monkeypatch.setattr(history_filters, "SPARSE", 5)
    monkeypatch.setattr(history, "PAGE_SIZE", 5)
    monkeypatch.setattr(history, "WINDOW", 2)  # windows of 2, 8, 32 rows
    seen, link = [], url("history.history", q="newsletter")
    while link:
        html = client.get(link).get_data(as_text=True)
        seen += page_ids(html)
        link = next_link(html)
    assert seen == list(reversed(common))  # one timestamp: newest id first


def test_a_common_word_with_other_filters_pages_exactly_whatever_came_before(
        app, client, login_as, seed, monkeypatch):
    """The common-word path keeps its statements per shape of filters and remembers how
    much of a window matched: the next search of the same shape with other values (a
    status, a person, a day, a number) must still find exactly its own rows, newest
    first, each once, however ids and times interleave; and the count agrees."""
    import random

    from webapp.history import filters as history_filters
    from webapp.history import pages as history
    add, amy, bob = seed
    chooser = random.Random(18)
    expected: list[tuple] = []  # (created_at, order, public_id, status, user, recipient, text)
    for order in range(90):
        moment = STAMP - timedelta(minutes=chooser.randrange(0, 4 * 24 * 60))
        fields = {"status": chooser.choice(["delivered", "failed", "undelivered"]),
                  "user": chooser.choice([amy, bob]),
                  "recipient": chooser.choice(["+16045550199", "+14155550142"]),
                  "text": chooser.choice(["weekly newsletter", "newsletter again", "other"])}
        [public_id] = add(1, created_at=moment, **fields)
        expected.append((moment, order, public_id, fields))
    expected.sort(key=lambda row: (row[0], row[1]), reverse=True)
    login_as("staff", "viewer@example.com")
    monkeypatch.setattr(history_filters, "SPARSE", 3)
    monkeypatch.setattr(history, "PAGE_SIZE", 4)
    monkeypatch.setattr(history, "WINDOW", 2)
    day = (STAMP - timedelta(days=1)).date()
    for args, wanted in [
        ({"status": "failed"}, lambda f, _m: f["status"] == "failed"),
        ({"status": "delivered"}, lambda f, _m: f["status"] == "delivered"),
        ({"status": "failed", "sent_by": str(amy.id)},
         lambda f, _m: f["status"] == "failed" and f["user"] is amy),
        ({"status": "undelivered", "sent_by": str(bob.id)},
         lambda f, _m: f["status"] == "undelivered" and f["user"] is bob),
        ({"recipient": "0199", "from": day.isoformat()},
         lambda f, m: f["recipient"].endswith("0199") and m.date() >= day),
        ({"recipient": "0142", "from": day.isoformat()},
         lambda f, m: f["recipient"].endswith("0142") and m.date() >= day),
        ({"status": "failed"}, lambda f, _m: f["status"] == "failed"),  # remembered share
    ]:
        want = [public_id for moment, _order, public_id, fields in expected
                if "newsletter" in fields["text"] and wanted(fields, moment)]
        seen, link = [], url("history.history", q="newsletter", **args)
        while link:
            html = client.get(link).get_data(as_text=True)
            seen += page_ids(html)
            link = next_link(html)
        assert seen == want, args
        counted = client.get(url("history.count", q="newsletter", **args)).text
        assert f"{len(want)} message" in counted, (args, counted)


def test_search_index_follows_inserts_updates_and_deletes(app, client, login_as, seed):
    add, _amy, _bob = seed
    [changed] = add(1, text="original words")
    [gone] = add(1, text="doomed words")
    with app.app_context():
        message = db.session.scalar(db.select(Message).filter_by(public_id=changed))
        message.text = "replacement words"
        db.session.delete(db.session.scalar(db.select(Message).filter_by(public_id=gone)))
        db.session.commit()
    login_as("staff", "viewer@example.com")
    assert page_ids(client.get(url("history.history", q="replacement")).text) == [changed]
    assert page_ids(client.get(url("history.history", q="original")).text) == []
    assert page_ids(client.get(url("history.history", q="doomed")).text) == []


PLAN_CASES = {
    "status": {"status": ["failed"]}, "recipient": {"recipient": ["0199"]},
    "text": {"q": ["invoice 4471"]}, "phrase": {"q": ['"ready for pickup"']},
    "day": {"from": ["2026-11-20"], "to": ["2026-11-20"]},
    "three": {"status": ["failed"], "q": ["invoice"], "from": ["2026-11-01"]},
}


def query_plans(app, sender_id: int) -> dict[str, str]:
    """The plan of each filter's first-page query, as the database would run it."""
    from werkzeug.datastructures import MultiDict

    from webapp.history import pages as history
    plans = {}
    cases = {**PLAN_CASES, "sender": {"sent_by": [str(sender_id)]}}
    with app.test_request_context():
        connection = db.session.connection()
        postgres = connection.dialect.name == "postgresql"
        if postgres:  # a few test rows: a scan would be cheapest, but can an index answer?
            connection.exec_driver_sql("SET enable_seqscan = off")
        for name, args in cases.items():
            filters, errors = history.HistoryFilter.from_args(
                MultiDict([(k, v) for k, vs in args.items() for v in vs]))
            assert not errors, errors
            query = filters.apply(history._TABLE).order_by(*history.NEWEST_FIRST).limit(51)
            compiled = query.compile(connection, compile_kwargs={"literal_binds": True})
            explain = "EXPLAIN " if postgres else "EXPLAIN QUERY PLAN "
            rows = connection.exec_driver_sql(explain + str(compiled)).all()
            plans[name] = "\n".join(str(row[-1]) for row in rows)
        if postgres:
            connection.exec_driver_sql("RESET enable_seqscan")
        db.session.rollback()
    return plans


def check_filters_use_their_indexes(app, sender_id: int) -> None:
    """Each filter is answered from an index, never by reading all of `messages`."""
    plans = query_plans(app, sender_id)
    for name, plan in plans.items():
        assert "SCAN messages" not in plan and "Seq Scan on messages" not in plan, (name, plan)
    assert "ix_messages_status_created_at_id" in plans["status"]
    assert "ix_messages_created_by_created_at_id" in plans["sender"]
    assert "ix_messages_recipient_reversed" in plans["recipient"]
    assert "ix_messages_created_at_id" in plans["day"]
    with app.app_context():
        postgres = db.engine.dialect.name == "postgresql"
    if postgres:  # SQLite's FTS5 is a table of its own: its rowids are looked up by key
        assert "ix_messages_text_search" in plans["text"], plans["text"]
        assert "ix_messages_text_search" in plans["phrase"], plans["phrase"]


def test_every_filter_is_answered_from_an_index_on_sqlite(app, make_user):
    user = make_user("planner@example.com")
    seed_texts(app, user.id, ["invoice 4471"] * 3)
    check_filters_use_their_indexes(app, user.id)
