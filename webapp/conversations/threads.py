"""The inbox and the threads: conversations newest activity first (one indexed walk, keyset
on activity and id), a thread's messages both ways in time order, what is unread, and
"done" / "needs a reply"."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, literal, or_, select, tuple_, update

from webapp import audit
from webapp.extensions import db
from webapp.history import search
from webapp.models import Conversation, InboundMessage, Message, reversed_digits
from webapp.models.base import UTCDateTime

PAGE = 50
THREAD_MESSAGES = 200  # of each direction: the newest; older ones are in the history
SEARCH_MATCHES = 500
_conversations = Conversation.__table__


@dataclass(frozen=True)
class Entry:
    """One message in a thread, either way."""

    direction: str  # "in" / "out"
    at: datetime
    message: Message | InboundMessage


def encode_cursor(conversation: Conversation) -> str:
    raw = f"{conversation.last_activity_at.isoformat()}|{conversation.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> tuple[datetime, int] | None:
    """The position a "next page" link carries; None for one that does not read."""
    if not cursor or len(cursor) > 80:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        moment, _, ident = raw.partition("|")
        at = datetime.fromisoformat(moment)
        if at.tzinfo is None or not ident.isascii() or not ident.isdigit() or len(ident) > 18:
            return None
        return at, int(ident)
    except (ValueError, UnicodeDecodeError):
        return None


def _matching(typed: str):
    """A condition on conversations for what was typed: a number's digits, or words of
    a message either way (the history's index for ours, the replies' text for theirs)."""
    typed = typed.strip()[:200]
    digits = "".join(ch for ch in typed if ch.isdigit())
    if digits and not any(ch.isalpha() for ch in typed):
        bounds = search.recipient_bounds(digits)
        if bounds is None:
            return None
        low, high = bounds
        return (_conversations.c.customer_reversed >= low) & (
            _conversations.c.customer_reversed < high)
    dialect = db.engine.dialect.name
    words = search.text_condition(typed, dialect)
    pairs = []
    if words is not None:
        pairs = db.session.execute(select(Message.recipient, Message.sender).where(words)
                                   .distinct().limit(SEARCH_MATCHES)).all()
    escaped = typed.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    theirs = select(InboundMessage.conversation_id).where(
        InboundMessage.text.ilike(f"%{escaped}%", escape="\\")).limit(SEARCH_MATCHES)
    ids = list(db.session.scalars(theirs))
    conditions = [_conversations.c.id.in_(ids)] if ids else []
    if pairs:
        conditions.append(tuple_(_conversations.c.customer, _conversations.c.our_number)
                          .in_([tuple(p) for p in pairs]))
    return or_(*conditions) if conditions else _conversations.c.id < 0


def inbox(*, needs_reply: bool = False, typed: str = "", cursor: str | None = None
          ) -> tuple[list[Conversation], str | None]:
    """A page of threads, newest activity first, and the cursor of the next page."""
    query = select(Conversation).order_by(Conversation.last_activity_at.desc(),
                                          Conversation.id.desc()).limit(PAGE + 1)
    if needs_reply:
        query = query.where(Conversation.needs_reply.is_(True))
    if typed.strip():
        condition = _matching(typed)
        query = query.where(condition if condition is not None else Conversation.id < 0)
    position = decode_cursor(cursor)
    if position:
        query = query.where(tuple_(Conversation.last_activity_at, Conversation.id) < tuple_(
            literal(position[0], UTCDateTime()), literal(position[1])))
    found = list(db.session.scalars(query))
    more = len(found) > PAGE
    found = found[:PAGE]
    return found, (encode_cursor(found[-1]) if more else None)


def find(public_id: str) -> Conversation | None:
    if not public_id or len(public_id) > 24:
        return None
    return db.session.scalar(select(Conversation).where(Conversation.public_id == public_id))


def for_number(customer: str) -> list[Conversation]:
    return list(db.session.scalars(select(Conversation).where(
        Conversation.customer_reversed == reversed_digits(customer))))


def entries(conversation: Conversation) -> list[Entry]:
    """The thread: our messages to the customer from this number, and theirs to it, in
    the order they happened (the newest THREAD_MESSAGES of each)."""
    ours = db.session.scalars(
        select(Message).where(Message.recipient == conversation.customer,
                              Message.sender == conversation.our_number)
        .order_by(Message.created_at.desc(), Message.id.desc()).limit(THREAD_MESSAGES))
    theirs = db.session.scalars(
        select(InboundMessage).where(InboundMessage.conversation_id == conversation.id)
        .order_by(InboundMessage.received_at.desc(), InboundMessage.id.desc())
        .limit(THREAD_MESSAGES))
    items = [Entry("out", m.created_at, m) for m in ours]
    items += [Entry("in", m.received_at, m) for m in theirs]
    items.sort(key=lambda e: (e.at, e.direction == "out", e.message.id))
    return items


def unread_count() -> int:
    return db.session.scalar(select(func.count()).select_from(Conversation)
                             .where(Conversation.unread.is_(True))) or 0


def mark_read(conversation: Conversation) -> None:
    """Opening a thread reads it. The one write a GET makes here (like a session's last
    seen time): a marker, on a connection of its own, outside the request's session."""
    if conversation.unread:
        with db.engine.begin() as connection:
            connection.execute(update(_conversations).where(
                _conversations.c.id == conversation.id).values(unread=False))


def mark(conversation: Conversation, needs_reply: bool, actor) -> None:
    """"Mark as done" (False) or "Needs a reply" (True); audited."""
    db.session.execute(update(_conversations).where(
        _conversations.c.id == conversation.id).values(needs_reply=needs_reply))
    audit.record("conversation_marked", conversation.customer, actor=actor,
                 marked="needs a reply" if needs_reply else "done")
    db.session.commit()
