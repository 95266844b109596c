"""Database models, SQLAlchemy 2.0 style, one module per table family. Every timestamp is
timezone-aware UTC. Everything is re-exported here, so `from webapp.models import Message`
and Alembic's view of the metadata stay as they were."""

from webapp.models.audit import AuditEvent
from webapp.models.base import UTCDateTime, new_public_id, utcnow
from webapp.models.conversations import ConsentEvent, Conversation, InboundMessage
from webapp.models.delivery import PlivoCircuit, RefusedCallbackCount, WebhookNonce
from webapp.models.lists import Batch, BatchDraft, OptOut
from webapp.models.media import Media
from webapp.models.messages import (
    ACCENTED,
    MEDIA_LINES_FUNCTION,
    PG_SEARCH_DOCUMENT,
    SEARCH_DDL,
    SEARCH_OBJECTS,
    UNACCENTED,
    Message,
    StatusEvent,
    reversed_digits,
)
from webapp.models.rollups import CallbackHour, DailyLatency, DailyStat, RollupState
from webapp.models.senders import SenderNumber, StickySender
from webapp.models.users import RecoveryCode, SecondFactor, TeamSetting, User, UserSession

__all__ = [
    "ACCENTED", "MEDIA_LINES_FUNCTION", "PG_SEARCH_DOCUMENT", "SEARCH_DDL", "SEARCH_OBJECTS",
    "UNACCENTED", "AuditEvent", "Batch", "BatchDraft", "CallbackHour", "ConsentEvent",
    "Conversation", "DailyLatency", "DailyStat", "InboundMessage", "Media", "Message",
    "OptOut", "PlivoCircuit", "RecoveryCode",
    "RefusedCallbackCount", "RollupState", "SecondFactor", "SenderNumber", "StatusEvent",
    "StickySender", "TeamSetting",
    "UTCDateTime", "User", "UserSession", "WebhookNonce", "new_public_id", "reversed_digits",
    "utcnow",
]
