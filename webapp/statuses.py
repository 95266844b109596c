"""The message state machine: ranks, final states, plain-language labels.

pending (ours) -> queued -> sent -> one final state. `cancelled` (ours): a batch's
message that was cancelled before it was handed to Plivo. `unknown` (ours) means the
request may have reached Plivo but no answer came back; `error` (ours) means
Plivo refused the request; `not_sent` (ours) means an unknown message Plivo's message
list shows it never received. See DESIGN.md and PLIVO.md section 3.3.
"""

from __future__ import annotations

from datetime import datetime, timedelta

PENDING = "pending"
UNKNOWN = "unknown"
QUEUED = "queued"
SENT = "sent"
DELIVERED = "delivered"
UNDELIVERED = "undelivered"
FAILED = "failed"
REJECTED = "rejected"
ERROR = "error"
NOT_SENT = "not_sent"  # ours: was unknown; Plivo's message list shows it never arrived
CANCELLED = "cancelled"  # ours: its batch was cancelled before it was handed to Plivo

RANKS: dict[str, int] = {
    PENDING: 0,
    UNKNOWN: 1,
    QUEUED: 2,
    SENT: 3,
    DELIVERED: 4,
    UNDELIVERED: 4,
    FAILED: 4,
    REJECTED: 4,
    ERROR: 4,
    NOT_SENT: 4,
    CANCELLED: 4,
}
FINAL_RANK = 4
FINAL = frozenset(s for s, rank in RANKS.items() if rank == FINAL_RANK)
ALL = tuple(RANKS)
# What Plivo may post to the status callback for an outbound MMS.
CALLBACK_STATUSES = frozenset({QUEUED, SENT, DELIVERED, UNDELIVERED, FAILED, REJECTED})
# Of the times a status callback writes, these keep the value they have once set: the
# first time Plivo reported queuing or sending stays, whatever arrives later.
FIRST_VALUE_STAYS = ("queued_at", "sent_at")

LABELS = {
    PENDING: "Waiting to send",
    UNKNOWN: "Unknown — no answer from Plivo",
    QUEUED: "Queued at Plivo",
    SENT: "Sent — no receipt yet",
    DELIVERED: "Delivered",
    UNDELIVERED: "Not delivered",
    FAILED: "Failed",
    REJECTED: "Rejected by carrier",
    ERROR: "Refused by Plivo",
    NOT_SENT: "Not sent — Plivo never received it",
    CANCELLED: "Cancelled — never sent",
}
SENT_NO_RECEIPT_LABEL = "Sent — carrier gives no receipts"

# Badge colour family for each status, used by CSS classes.
TONES = {
    PENDING: "neutral", UNKNOWN: "warn", QUEUED: "neutral", SENT: "info",
    DELIVERED: "good", UNDELIVERED: "bad", FAILED: "bad", REJECTED: "bad", ERROR: "bad",
    NOT_SENT: "bad", CANCELLED: "neutral",
}

# PLIVO.md section 5. Codes not listed are shown as "Unknown (code N)".
ERROR_CODES = {
    "10": "invalid message",
    "20": "carrier network error (temporary)",
    "30": "spam detected",
    "40": "invalid sender number",
    "50": "invalid destination number",
    "60": "loop detected",
    "70": "destination permanently unavailable",
    "80": "destination temporarily unavailable",
    "90": "no route available",
    "100": "prohibited by carrier",
    "110": "message too long",
    "120": "MMS too large (over 5 MB)",
    "200": "recipient opted out (sent STOP)",
    "201": "US toll-free to Canada is blocked",
    "420": "expired in Plivo's queue (waited too long to be sent)",
    "450": "country barred by geo permissions",
    "451": "geo permissions hourly threshold reached",
    "900": "insufficient credit",
    "1000": "unknown error at Plivo",
}


UNRANKED = -1  # a status we do not know ranks below all: a callback never sets it


def rank(status: str) -> int:
    return RANKS.get(status, UNRANKED)


def is_final(status: str) -> bool:
    return status in FINAL


def should_apply(current: str, current_sequence: int | None, new: str, new_sequence: int) -> bool:
    """Whether a status moves a message from `current` to `new`.

    A higher rank wins; an equal rank wins only with a higher Sequence. Since
    final states share the top rank, a final state never goes back, and among
    final states the one Plivo generated last wins. This is a total order on
    (rank, sequence), so any arrival order of the same callbacks ends the same.
    The status callback's SQL (callbacks/sql.py) is built from RANKS and
    this order; tests/test_statuses.py proves both agree on every combination.
    """
    if new not in RANKS:
        return False
    return (RANKS[new], new_sequence) > (rank(current), current_sequence or 0)


def callback_applies(current: str, current_sequence: int | None, new: str,
                     new_sequence: int) -> bool:
    """should_apply for a status callback: only CALLBACK_STATUSES may come from Plivo."""
    return new in CALLBACK_STATUSES and should_apply(current, current_sequence, new, new_sequence)


def explain_error_code(code: str | None) -> str | None:
    if not code or code in ("000", "0"):
        return None
    reason = ERROR_CODES.get(code.lstrip("0") or "0")
    return f"{reason} ({code})" if reason else f"Unknown (code {code})"


def label(status: str, error_code: str | None = None, sent_at: datetime | None = None,
          now: datetime | None = None, no_receipt_after: timedelta | None = None) -> str:
    """The plain-language label shown in the history badge."""
    if status == SENT and sent_at and now and no_receipt_after and now - sent_at >= no_receipt_after:
        return SENT_NO_RECEIPT_LABEL
    text = LABELS.get(status, status)
    explained = explain_error_code(error_code)
    if explained and status in (UNDELIVERED, FAILED, REJECTED):
        return f"{text}: {explained}"
    return text


# What a final failure means and what a person can do about it, in one or two sentences:
# on the detail page and in the history badge's tooltip. By error code first, then status.
ADVICE_BY_CODE = {
    "20": "A temporary problem on the carrier's network. Sending again later usually works.",
    "30": "Carriers filtered it as spam. Reword the text (no link shorteners, no capitals "
          "throughout) before sending again: repeated spam can get the number blocked.",
    "40": "The sending number cannot send this message. Ask an admin to check the number "
          "in Plivo.",
    "50": "The number cannot receive messages. Check it with the customer.",
    "70": "The phone is permanently out of reach (number disconnected or changed). Check "
          "the number with the customer.",
    "80": "The phone was out of reach for a while (switched off, no signal). Sending again "
          "later usually works.",
    "100": "The carrier refuses this content or this sender. Ask an admin before sending "
           "again.",
    "120": "The pictures are too large together. Send smaller ones (under 5 MB in all).",
    "200": "The customer replied STOP. Do not send again unless they reply START.",
    "420": ("It waited in Plivo's queue longer than its expiry and was never sent (not "
            "charged). The dashboard sends it again once by itself; if that one expires too, "
            "Plivo sends slower than PLIVO_MMS_MPS says."),
    "900": "The Plivo account has run out of credit. Ask an admin to top it up, then send "
           "again.",
}
ADVICE_BY_STATUS = {
    UNKNOWN: "The request may or may not have reached Plivo. The dashboard is asking "
             "Plivo and the status will change by itself; do not send it again meanwhile, "
             "or the customer may get it twice.",
    ERROR: "Plivo refused the request, so nothing was sent. Correct what the reason names "
           "(the number, the media or the account) and send again.",
    NOT_SENT: "Nothing reached the customer and nothing was charged. Send again sends "
              "it now, once.",
    UNDELIVERED: "The carrier did not deliver it. Check the number; sending again may not "
                 "help.",
    FAILED: "Plivo could not send it. Sending again may not help until the cause is fixed.",
    REJECTED: "The carrier rejected it. Check the number and the content before sending "
              "again.",
}


# The ways a message can end badly: each has advice, and the page after a send links to them.
BAD_ENDINGS = frozenset(ADVICE_BY_STATUS)


def advice(status: str, error_code: str | None = None) -> str | None:
    """What to do about a message that ended badly; None for anything else."""
    if status not in BAD_ENDINGS:
        return None
    code = (error_code or "").lstrip("0")
    return ADVICE_BY_CODE.get(code) or ADVICE_BY_STATUS[status]
