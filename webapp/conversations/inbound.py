"""A customer's message, as Plivo posts it to the Message URL: read, kept once by its
MessageUUID (Plivo retries), filed in its thread, and acted on at once when it is STOP,
START or HELP. Only what must happen before Plivo hears "200" happens here (one short
transaction); the pictures and any automatic answer go to the queue (followup.py)."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlsplit

from sqlalchemy import select, update

from webapp.callbacks.ledger import CallbackOutcome, nonce_outcome
from webapp.conversations import sql
from webapp.conversations.keywords import Keyword, classify
from webapp.extensions import db
from webapp.logs import event
from webapp.messages import opt_outs
from webapp.models import (
    Conversation,
    Message,
    new_public_id,
    reversed_digits,
    utcnow,
)
from webapp.tasks import enqueue_inbound

log = logging.getLogger(__name__)

MAX_MEDIA = 10  # Plivo: an inbound MMS carries at most 10 items, under 7 MB in all
MAX_TEXT = 5_000
PREVIEW = 160
_DIGITS = re.compile(r"[0-9]{1,9}")
_AMOUNT = re.compile(r"[0-9]{1,7}(\.[0-9]{1,5})?")
_NUMBER = re.compile(r"\+?([0-9]{7,15})")
_MEDIA_FIELD = re.compile(r"Media([0-9]{1,2})")
KINDS = ("sms", "mms", "whatsapp")


class InboundOutcome(StrEnum):
    STORED = "stored"
    DUPLICATE = "duplicate"  # Plivo retried a message we hold
    REPLAYED = "replayed"  # a nonce seen before with another body: refused, nothing written


@dataclass(frozen=True)
class Inbound:
    plivo_uuid: str
    customer: str  # E.164
    our_number: str  # E.164
    kind: str
    text: str
    media_urls: tuple[str, ...]
    intent: str | None
    units: int | None
    total_amount: str | None
    powerpack_uuid: str | None


def _number(payload: Mapping[str, str], key: str) -> str:
    match = _NUMBER.fullmatch((payload.get(key) or "").strip())
    if not match:
        raise ValueError(f"{key} must be a phone number (7 to 15 digits)")
    return "+" + match.group(1)


def _media_urls(payload: Mapping[str, str]) -> tuple[str, ...]:
    """Media0, Media1, ... in index order: Plivo's pages disagree on whether the first is
    0 or 1, so both are read, and whatever numbering came is kept in order."""
    found = []
    for key, value in payload.items():
        match = _MEDIA_FIELD.fullmatch(key)
        if match and (value or "").strip():
            found.append((int(match.group(1)), value.strip()))
    if len(found) > MAX_MEDIA:
        raise ValueError(f"at most {MAX_MEDIA} media items (Plivo's limit), got {len(found)}")
    urls = []
    for _index, url in sorted(found):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname or len(url) > 2_000:
            raise ValueError("a media item is not an http(s) address")
        urls.append(url)
    count = (payload.get("MediaCount") or "").strip()
    if count and (not _DIGITS.fullmatch(count) or int(count) > MAX_MEDIA):
        raise ValueError("MediaCount must be a whole number from 0 to 10")
    return tuple(urls)


def parse_inbound(payload: Mapping[str, str]) -> Inbound:
    """The fields we keep, checked. Raises ValueError naming what is wrong."""
    plivo_uuid = (payload.get("MessageUUID") or "").strip()
    if not plivo_uuid or len(plivo_uuid) > 64:
        raise ValueError("MessageUUID is missing or too long")
    kind = (payload.get("Type") or "sms").strip().lower()
    if kind not in KINDS:
        raise ValueError("Type must be sms or mms")
    text = payload.get("Text") or payload.get("Body") or ""
    if len(text) > MAX_TEXT:
        raise ValueError(f"Text is over {MAX_TEXT:,} characters")
    intent = (payload.get("MessageIntent") or "").strip().lower()[:16] or None
    units = (payload.get("Units") or "").strip()
    amount = (payload.get("TotalAmount") or "").strip()
    return Inbound(
        plivo_uuid=plivo_uuid, customer=_number(payload, "From"), our_number=_number(payload, "To"),
        kind=kind, text=text.replace("\x00", ""), media_urls=_media_urls(payload), intent=intent,
        units=int(units) if _DIGITS.fullmatch(units) else None,
        total_amount=amount if _AMOUNT.fullmatch(amount) else None,
        powerpack_uuid=(payload.get("PowerpackUUID") or "").strip()[:64] or None)


def preview(text: str, pictures: int) -> str:
    """The line the inbox shows for a message."""
    line = " ".join(text.split())
    if len(line) > PREVIEW:
        line = line[:PREVIEW - 1] + "…"
    if pictures and not line:
        return "📷 Picture" if pictures == 1 else f"📷 {pictures} pictures"
    return line


NAME_COLUMNS = ("name", "full name", "first name", "customer", "contact")


def _name_from_a_list(customer: str) -> str | None:
    """The name the latest list send to this number gave it (its row's name column)."""
    for fields in db.session.scalars(
            select(Message.fields).where(Message.recipient == customer,
                                         Message.batch_id.isnot(None))
            .order_by(Message.created_at.desc()).limit(3)):
        for key, value in (fields or {}).items():
            if str(key).strip().lower().replace("_", " ") in NAME_COLUMNS and str(value).strip():
                return str(value).strip()[:120]
    return None


def touch(conversation: int, *, when, text: str, direction: str, needs_reply: bool | None,
          unread: bool | None = None) -> None:
    """The thread's latest activity, if `when` is not older than what it shows."""
    table = Conversation.__table__
    values = {"last_activity_at": when, "last_text": text[:PREVIEW], "last_direction": direction}
    if needs_reply is not None:
        values["needs_reply"] = needs_reply
    db.session.execute(update(table).where(table.c.id == conversation,
                                           table.c.last_activity_at <= when).values(**values))
    if unread is not None:
        db.session.execute(update(table).where(table.c.id == conversation).values(unread=unread))


def _file(inbound: Inbound, keyword: Keyword | None, now) -> int:
    """The reply's thread, made or brought up to date in one statement (an upsert that
    returns it): its latest activity unless a later one is already there, unread, and
    waiting for a person unless a keyword was all it said (the system answers those)."""
    ident, created_at = db.session.execute(sql.statements(_dialect())["thread"],
                                           _thread_values(inbound, keyword, now)).one()
    _name_if_new(ident, created_at, now, inbound.customer)
    return ident


def _thread_values(inbound: Inbound, keyword: Keyword | None, now) -> dict:
    return {"public_id": new_public_id(), "customer": inbound.customer,
            "customer_reversed": reversed_digits(inbound.customer),
            "our_number": inbound.our_number, "last_activity_at": now,
            "last_text": preview(inbound.text, len(inbound.media_urls)),
            "last_direction": "in", "needs_reply": keyword is None, "unread": True,
            "created_at": now}


def _name_if_new(ident: int, created_at, now, customer: str) -> None:
    if created_at == now:  # new: a list send may have given the customer a name
        found = _name_from_a_list(customer)
        if found:
            table = Conversation.__table__
            db.session.execute(update(table).where(table.c.id == ident).values(name=found))


def _dialect() -> str:
    return db.session.get_bind().dialect.name


def record(inbound: Inbound, scheme: str, nonce: str | None = None,
           body_sha256: str | None = None) -> InboundOutcome:
    """Keep the message once, file it in its thread and apply a keyword, in one
    transaction; then queue what can wait (pictures, an automatic answer)."""
    keyword = classify(inbound.text, inbound.intent)
    now = utcnow()
    row = {"public_id": new_public_id(), "plivo_uuid": inbound.plivo_uuid,
           "sender": inbound.customer, "recipient": inbound.our_number, "kind": inbound.kind,
           "text": inbound.text, "media": [{"index": i, "url": url, "state": "waiting"}
                                           for i, url in enumerate(inbound.media_urls)],
           "intent": inbound.intent, "keyword": keyword, "units": inbound.units,
           "total_amount": inbound.total_amount, "powerpack_uuid": inbound.powerpack_uuid,
           "signature_scheme": scheme, "received_at": now}
    nonce_row = {"nonce": nonce, "body_sha256": body_sha256, "received_at": now}
    if _dialect() == "postgresql":
        outcome = _write_in_one(inbound, keyword, now, row, nonce_row)
    else:
        outcome = _write_in_three(inbound, keyword, now, row, nonce_row)
    if outcome == InboundOutcome.REPLAYED and nonce:
        db.session.rollback()
        seen = nonce_outcome(nonce, body_sha256)
        outcome = (InboundOutcome.DUPLICATE if seen == CallbackOutcome.DUPLICATE
                   else InboundOutcome.REPLAYED)
    if outcome != InboundOutcome.STORED:
        db.session.rollback()  # a retry (or a replay) touches nothing
        return outcome
    _apply_keyword(keyword, inbound, row["public_id"])
    db.session.commit()
    # Each reply at DEBUG (status callbacks are not logged one by one either); a keyword's
    # effect is logged at INFO or WARNING by _apply_keyword.
    event(log, "reply received", logging.DEBUG, message=row["public_id"],
          keyword=keyword or "", pictures=len(inbound.media_urls))
    if inbound.media_urls or keyword in (Keyword.HELP, Keyword.OPT_OUT):
        try:
            enqueue_inbound(row["public_id"])
        except Exception:  # queue down: the sweep finds what still waits
            log.exception("could not queue the follow-up of reply %s", row["public_id"])
    return InboundOutcome.STORED


def _write_in_three(inbound, keyword, now, row, nonce_row) -> InboundOutcome:
    """SQLite: the nonce, the thread, the reply (REPLAYED here: the nonce was seen)."""
    statements = sql.statements("sqlite")
    if nonce_row["nonce"] and db.session.execute(statements["nonce"], nonce_row).first() is None:
        return InboundOutcome.REPLAYED
    row = {**row, "conversation_id": _file(inbound, keyword, now)}
    if db.session.execute(statements["reply"], row).first() is None:
        return InboundOutcome.DUPLICATE  # Plivo retried (with a fresh nonce)
    return InboundOutcome.STORED


def _write_in_one(inbound, keyword, now, row, nonce_row) -> InboundOutcome:
    """PostgreSQL: one statement (sql.all_in_one)."""
    params = {f"n_{k}": v for k, v in nonce_row.items()}
    params |= {f"t_{k}": v for k, v in _thread_values(inbound, keyword, now).items()}
    params |= {f"r_{k}": v for k, v in row.items()}
    params["no_nonce"] = not nonce_row["nonce"]
    done = db.session.execute(sql.statements("postgresql")["all_in_one"], params).one()
    if nonce_row["nonce"] and not done.nonce_new:
        return InboundOutcome.REPLAYED
    if not done.stored:
        return InboundOutcome.DUPLICATE
    _name_if_new(done.thread_id, done.created_at, now, inbound.customer)
    return InboundOutcome.STORED


def _apply_keyword(keyword: Keyword | None, inbound: Inbound, public_id: str) -> None:
    # Their own words when those say it; Plivo's reading when only Plivo's intent does.
    source = opt_outs.KEYWORD if classify(inbound.text) == keyword else opt_outs.INTENT
    words = inbound.text.strip()[:160]
    if keyword == Keyword.OPT_OUT:
        if opt_outs.note(inbound.customer, inbound.our_number, public_id, source=source,
                         words=words):
            event(log, "number opted out (reply)", logging.WARNING, number=inbound.customer)
    elif keyword == Keyword.OPT_IN and opt_outs.opt_in(
            inbound.customer, source=source, our_number=inbound.our_number,
            message_public_id=public_id, words=words):
        event(log, "number opted back in (reply)", number=inbound.customer)
