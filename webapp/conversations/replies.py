"""Staff's answer in a thread: the compose rules (pictures, the idempotency key, pacing:
it is an ordinary send), from the number the customer wrote to, refused when the
customer opted out. Text alone goes as an SMS; with pictures, as an MMS."""

from __future__ import annotations

from webapp.auth.service import Actor
from webapp.conversations.inbound import preview, touch
from webapp.extensions import db
from webapp.messages import opt_outs
from webapp.models import Conversation, utcnow
from webapp.sending import submission


class ReplyRefused(ValueError):
    """The answer cannot go; the message says why in plain words."""


def send(user: Actor, conversation: Conversation, text: str, media: list[dict],
         key: str) -> submission.Submission:
    """Record and queue the answer (once per key). Raises ReplyRefused."""
    if opt_outs.is_opted_out(conversation.customer):
        raise ReplyRefused("This customer replied STOP: nothing can be sent to them until "
                           "they text START.")
    # Read before the submission commits: the row would be reloaded after it.
    ident, customer, ours = conversation.id, conversation.customer, conversation.our_number
    result = submission.submit(user, submission.Draft(
        sender=ours, recipients=[customer], text=text, media=media, idempotency_key=key,
        audit_action="reply_sent"))
    if not result.errors:
        touch(ident, when=utcnow(), text=preview(text, len(media)), direction="out",
              needs_reply=False, unread=False)
        db.session.commit()
    return result
