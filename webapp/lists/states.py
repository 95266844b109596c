"""A list send's states and the failures worth a second try.
"""

from __future__ import annotations

from webapp import statuses

AWAITING = "awaiting_approval"


SENDING = "sending"


PAUSED = "paused"


CANCELLED = "cancelled"


FINISHED = "finished"


LABELS = {AWAITING: "Waiting for an admin's approval", SENDING: "Sending", PAUSED: "Paused",
          CANCELLED: "Cancelled", FINISHED: "All handed to Plivo"}


OPEN = (AWAITING, SENDING, PAUSED)


# Final failures that a second try may fix (PLIVO.md section 5): the carrier's network
# or the phone was out of reach for a while, the message expired in Plivo's queue, the
# hourly country threshold, no credit. Never `unknown` (the reconciler has not decided
# whether it went) nor a refusal that needs the number or content fixed.
RETRY_MAY_HELP = frozenset({"20", "80", "420", "451", "900"})


BAD = (statuses.UNDELIVERED, statuses.FAILED, statuses.REJECTED, statuses.ERROR,
       statuses.NOT_SENT)

