"""Whether Plivo's callbacks reach us and sending keeps up: the admins' health panel.

Every figure is read from something small or indexed: callbacks per hour from the
rollups (rollups.CallbackHour, counted from the ledger by the sweep), refusals from their
hourly counts (callbacks.guard), the last callbacks by the ledger's primary key, the
queue and the waiting messages by the (status, created_at) index.
"""

from __future__ import annotations

import io
import secrets
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, select

from webapp import statuses
from webapp.config import current_settings
from webapp.extensions import db
from webapp.gateway.signatures import SignatureScheme
from webapp.models import (
    CallbackHour,
    InboundMessage,
    Message,
    PlivoCircuit,
    RefusedCallbackCount,
    StatusEvent,
    utcnow,
)
from webapp.pictures import library, preparation
from webapp.sending import senders
from webapp.sending import submission as sending

_m = Message.__table__
AWAITING_AFTER = timedelta(minutes=15)
AWAITING_WITHIN = timedelta(days=7)
LAST_CALLBACKS = 1_000
PLIVO_PER_5S = 300  # Plivo's own ceiling for MMS (PLIVO.md 1.8)
# What each ledger scheme means, in the order the panel lists them.
SCHEME_LABELS = {
    SignatureScheme.V3: "V3 signature (X-Plivo-Signature-V3)",
    SignatureScheme.MA_V3: "V3 signed by the main account (X-Plivo-Signature-Ma-V3)",
    SignatureScheme.V2: "V2 signature only, held for confirmation",
    SignatureScheme.V2_CONFIRMED: "V2 signature, confirmed with Plivo's Message API",
    SignatureScheme.INVALID: "Signature did not match (let through: log-only mode)",
    SignatureScheme.MISSING: "No signature (let through: log-only mode)",
}
PASSING = frozenset({SignatureScheme.V3, SignatureScheme.MA_V3, SignatureScheme.V2,
                     SignatureScheme.V2_CONFIRMED})
WAITING = (statuses.QUEUED, statuses.SENT)
REFUSED_WHEN_ENFORCING = (SignatureScheme.INVALID, SignatureScheme.MISSING)


@dataclass
class Health:
    now: datetime
    last_callback_at: datetime | None
    hours: list[datetime]  # the last 24, oldest first
    callbacks_by_hour: dict[datetime, Counter]
    lookups_24h: int
    schemes_24h: Counter
    refused_by_hour: dict[datetime, Counter]
    refused_24h: Counter
    refused_sources: list[tuple[str, str, datetime]]  # source, reason, hour
    log_only: bool
    recent_callbacks: int  # of the last LAST_CALLBACKS
    recent_would_pass: int
    recent_schemes: Counter
    awaiting: int  # queued or sent, no final callback for 15 minutes (last 7 days)
    lookups_due: int
    unknown: int
    queue_waiting: int
    oldest_waiting_at: datetime | None
    handed_last_minute: int
    send_rate_per_5s: int
    circuit: PlivoCircuit | None
    sender_numbers: list = field(default_factory=list)  # sending.senders.Described
    mms_mps: float = 0.25
    # Replies (issue 35): where Plivo must post them, and whether any came.
    message_url: str = ""
    last_reply_at: datetime | None = None
    replies_24h: int = 0
    scheme_labels: dict = field(default_factory=lambda: SCHEME_LABELS)

    @property
    def callbacks_24h(self) -> int:
        return sum(n for counts in self.callbacks_by_hour.values()
                   for scheme, n in counts.items() if scheme != SignatureScheme.LOOKUP)

    def ago(self, moment: datetime | None) -> str:
        """"40 s ago", "12 min ago", "3 h ago", "2 days ago"."""
        if moment is None:
            return "never"
        seconds = max(0, int((self.now - moment).total_seconds()))
        if seconds < 90:
            return f"{seconds} s ago"
        if seconds < 90 * 60:
            return f"{round(seconds / 60)} min ago"
        if seconds < 36 * 3600:
            return f"{round(seconds / 3600)} h ago"
        return f"{round(seconds / 86400)} days ago"

    @property
    def queue_stale(self) -> bool:
        """Something has waited to be sent for over two minutes."""
        return bool(self.oldest_waiting_at and self.now - self.oldest_waiting_at > timedelta(minutes=2))

    @property
    def refused_total(self) -> int:
        return sum(self.refused_24h.values())

    @property
    def attention(self) -> list[str]:
        """What needs someone's attention, in words, worst first; [] when all is well.
        The page's first line ("All good" or "Needs attention: ...")."""
        found = []
        if self.circuit is not None and self.circuit.state == "open":
            found.append("Plivo is refusing our requests, so sending is paused")
        if self.log_only:
            found.append("callback signatures are only logged, not enforced")
        if self.awaiting:
            found.append(f"{self.awaiting:,} message{'s' if self.awaiting != 1 else ''} "
                         "without a final status for over 15 minutes")
        if self.queue_stale:
            found.append("messages have waited over 2 minutes to be sent")
        if self.unknown:
            found.append(f"{self.unknown:,} message{'s' if self.unknown != 1 else ''} "
                         "this week may or may not have reached Plivo")
        warned = [n for n in self.sender_numbers if n.warning]
        if warned:
            found.append(f"{len(warned)} sender number{'s need' if len(warned) != 1 else ' needs'}"
                         " a look (see Sender numbers)")
        if self.refused_total:
            found.append(f"{self.refused_total:,} callback{'s' if self.refused_total != 1 else ''}"
                         " refused in the last 24 hours")
        return found

    @property
    def would_pass_share(self) -> float | None:
        return self.recent_would_pass / self.recent_callbacks if self.recent_callbacks else None


def gather(now: datetime | None = None) -> Health:
    now = now or utcnow()
    settings = current_settings()
    this_hour = now.replace(minute=0, second=0, microsecond=0)
    hours = [this_hour - timedelta(hours=n) for n in range(23, -1, -1)]
    by_hour: dict[datetime, Counter] = {hour: Counter() for hour in hours}
    schemes: Counter = Counter()
    for hour, scheme, count in db.session.execute(
            select(CallbackHour.hour, CallbackHour.scheme, CallbackHour.count)
            .where(CallbackHour.hour >= hours[0])):
        if hour in by_hour:
            by_hour[hour][scheme] += count
            schemes[scheme] += count
    lookups = schemes.pop(SignatureScheme.LOOKUP, 0)
    if settings.signature_mode == "enforce":
        # Refused callbacks are kept in the ledger too (a sample, for the record) and so
        # counted by the rollup; they are the "Refused" figures, not callbacks received.
        for counts in (schemes, *by_hour.values()):
            for scheme in REFUSED_WHEN_ENFORCING:
                counts.pop(scheme, None)

    refused_by_hour: dict[datetime, Counter] = {hour: Counter() for hour in hours}
    refused: Counter = Counter()
    sources: dict[str, tuple[str, datetime]] = {}
    for source, hour, reason, count in db.session.execute(
            select(RefusedCallbackCount.source, RefusedCallbackCount.hour,
                   RefusedCallbackCount.reason, RefusedCallbackCount.count)
            .where(RefusedCallbackCount.hour >= hours[0])
            .order_by(RefusedCallbackCount.hour.desc())):
        if hour in refused_by_hour:
            refused_by_hour[hour][reason] += count
        refused[reason] += count
        sources.setdefault(source, (reason, hour))

    # The last callbacks, newest first, by the ledger's primary key (the reconciler's
    # lookups and refused samples are not callbacks that passed or failed a check).
    recent = list(db.session.execute(
        select(StatusEvent.signature_scheme, StatusEvent.received_at)
        .where(StatusEvent.signature_scheme != SignatureScheme.LOOKUP, StatusEvent.accepted
               | StatusEvent.signature_scheme.in_((SignatureScheme.V2,)))
        .order_by(StatusEvent.id.desc()).limit(LAST_CALLBACKS)))
    recent_schemes = Counter(scheme for scheme, _ in recent)

    waiting = select(func.count()).select_from(_m).where(
        _m.c.status.in_(WAITING), _m.c.created_at >= now - AWAITING_WITHIN,
        _m.c.created_at < now - AWAITING_AFTER)
    # What a person sent and is still waiting: a list send's messages wait by design (they
    # go at Plivo's pace), as do those held for tomorrow by a daily cap.
    queue, oldest = db.session.execute(
        select(func.count(), func.min(_m.c.created_at)).where(
            _m.c.status == statuses.PENDING, _m.c.batch_id.is_(None),
            _m.c.not_before.is_(None))).one()
    return Health(
        now=now,
        last_callback_at=recent[0][1] if recent else None,
        hours=hours, callbacks_by_hour=by_hour, lookups_24h=lookups, schemes_24h=schemes,
        refused_by_hour=refused_by_hour, refused_24h=refused,
        refused_sources=[(source, reason, hour) for source, (reason, hour)
                         in list(sources.items())[:5]],
        log_only=settings.signature_mode != "enforce",
        recent_callbacks=len(recent),
        recent_would_pass=sum(n for scheme, n in recent_schemes.items() if scheme in PASSING),
        recent_schemes=recent_schemes,
        awaiting=db.session.scalar(waiting) or 0,
        lookups_due=db.session.scalar(select(func.count()).select_from(_m).where(
            _m.c.next_lookup_at <= now)) or 0,
        unknown=db.session.scalar(select(func.count()).select_from(_m).where(
            _m.c.status == statuses.UNKNOWN, _m.c.created_at >= now - AWAITING_WITHIN)) or 0,
        queue_waiting=queue or 0, oldest_waiting_at=oldest,
        handed_last_minute=db.session.scalar(select(func.count()).select_from(_m).where(
            _m.c.created_at >= now - timedelta(minutes=10),
            _m.c.queued_at >= now - timedelta(minutes=1))) or 0,
        send_rate_per_5s=settings.send_rate_per_5s,
        circuit=db.session.get(PlivoCircuit, 1),
        sender_numbers=senders.describe(settings), mms_mps=settings.plivo_mms_mps,
        message_url=settings.message_url,
        last_reply_at=db.session.scalar(select(func.max(InboundMessage.received_at))),
        replies_24h=db.session.scalar(select(func.count()).select_from(InboundMessage).where(
            InboundMessage.received_at >= now - timedelta(hours=24))) or 0,
    )


# ---- the test message ----------------------------------------------------------------------
TEST_PICTURE_NAME = "dashboard-test-picture.png"


def _test_picture() -> bytes:
    """The same small picture every time (so it is stored once): the dashboard's colours."""
    from PIL import Image, ImageDraw  # lazy: as pictures/preparation.py, Pillow only when needed

    image = Image.new("RGB", (320, 200), (16, 82, 140))
    draw = ImageDraw.Draw(image)
    draw.rectangle((24, 24, 296, 176), outline=(255, 255, 255), width=6)
    draw.ellipse((120, 60, 200, 140), fill=(250, 200, 40))
    buffer = io.BytesIO()
    image.save(buffer, "PNG", optimize=True)
    return buffer.getvalue()


@dataclass
class TestSend:
    error: str | None = None
    key: str | None = None
    public_id: str | None = None


def send_test(user, number: str) -> TestSend:
    """Send the test picture to one number (E.164) through the ordinary path (recorded,
    queued, handed to Plivo by a worker, its callbacks applied): its round trip is real."""
    settings = current_settings()
    media = library.store(preparation.prepare(_test_picture(), TEST_PICTURE_NAME), user)
    key = "test-" + secrets.token_hex(12)
    result = sending.submit(user, sending.Draft(
        sender=settings.sender_numbers[0], recipients=[number],
        text=f"Test message from the MMS dashboard, sent by {user.email}.",
        media=[{"upload": media.sha256}], idempotency_key=key,
        audit_action="test_message_sent"))
    if result.errors:
        return TestSend(error=result.errors[0])
    message = sending.messages_for_key(user, key)[0]
    return TestSend(key=key, public_id=message.public_id)


@dataclass
class Step:
    label: str
    at: datetime | None
    after_seconds: float | None


def round_trip(message: Message, events: list[StatusEvent]) -> list[Step]:
    """The test message's way: recorded, handed to Plivo, then each callback, with the
    seconds since it was recorded."""
    start = message.created_at
    steps = [Step("Recorded by the dashboard", start, 0.0)]
    if message.plivo_uuid:
        steps.append(Step("Accepted by Plivo", message.queued_at, None))
    for ev in events:
        if ev.accepted:
            steps.append(Step(f"Callback: {ev.status}" + (
                f" (error {ev.error_code})" if ev.error_code else ""), ev.received_at, None))
    for step in steps:
        if step.at is not None:
            step.after_seconds = max(0.0, (step.at - start).total_seconds())
    return steps
