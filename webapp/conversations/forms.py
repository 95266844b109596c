"""The answer box under a thread: the compose form's text and pictures (files from this
computer or phone, library pictures, addresses), no sender (the thread's number) and
no recipients (the thread's customer). Text alone is enough."""

from __future__ import annotations

import secrets

from wtforms import HiddenField, SubmitField
from wtforms.validators import DataRequired, Regexp, ValidationError

from webapp.sending.forms import MessageForm


class ReplyForm(MessageForm):
    sender = None  # the number the customer wrote to
    idempotency_key = HiddenField(validators=[DataRequired(), Regexp(r"^[A-Za-z0-9_-]{16,64}$")])
    submit = SubmitField("Send the reply")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.text.label.text = "Your reply"
        self.text.description = "Text alone goes as an SMS; add a picture to send an MMS."
        if not self.idempotency_key.data:
            self.idempotency_key.data = secrets.token_urlsafe(24)

    def validate_media(self, field):
        rows = [item for item in (field.data or []) if item]
        uploads = [item for item in (self.uploaded.data or []) if item]
        if not rows and not uploads:
            if not (self.text.data or "").strip():
                raise ValidationError("Write a reply or attach a picture.")
            self.parsed_media = []
            return
        super().validate_media(field)
