from __future__ import annotations

import re
import secrets
from urllib.parse import urlsplit

import phonenumbers
from flask_wtf import FlaskForm
from flask_wtf.file import MultipleFileField
from wtforms import Field, HiddenField, SelectChoice, SelectField, SubmitField, TextAreaField
from wtforms.validators import DataRequired, Length, Regexp, ValidationError
from wtforms.widgets import TextInput

MAX_RECIPIENTS = 25
# Checked before any number is parsed (parsing is the costly part): a field of 22,200
# numbers once cost 5-7 s of CPU. Twice the cap leaves room for duplicates and spacing.
MAX_RECIPIENTS_FIELD_CHARS = 40 * MAX_RECIPIENTS * 2
MAX_RECIPIENT_ITEMS = MAX_RECIPIENTS * 2
MAX_TEXT = 1600
MAX_MEDIA = 10
# Plivo media ids as its Media API returns them (a UUID).
MEDIA_ID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                         r"[0-9a-fA-F]{12}$")
NUMBER_SPLIT_RE = re.compile(r"[,;\n\r]+")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


def parse_recipients(raw: str, sender: str | None = None) -> list[str]:
    """E.164 numbers from free text, duplicates removed. Raises ValueError."""
    raw = raw or ""
    if len(raw) > MAX_RECIPIENTS_FIELD_CHARS:
        raise ValueError(f"Send to at most {MAX_RECIPIENTS} numbers at once (the list is "
                         f"{len(raw):,} characters long).")
    items = list(dict.fromkeys(item.strip() for item in NUMBER_SPLIT_RE.split(raw)
                               if item.strip()))
    if not items:
        raise ValueError("Enter at least one phone number.")
    if len(items) > MAX_RECIPIENT_ITEMS:
        raise ValueError(f"Send to at most {MAX_RECIPIENTS} numbers at once "
                         f"({len(items)} given).")
    numbers: dict[str, None] = {}  # a dict keeps the order; a set-like lookup for duplicates
    for item in items:
        if len(item) > 40:
            raise ValueError(f"“{item[:40]}…” is not a phone number.")
        try:
            parsed = phonenumbers.parse(item, "US")
        except phonenumbers.NumberParseException:
            raise ValueError(f"“{item}” is not a phone number.") from None
        if not phonenumbers.is_valid_number(parsed):
            raise ValueError(f"“{item}” is not a valid phone number.")
        if phonenumbers.region_code_for_number(parsed) not in ("US", "CA"):
            raise ValueError(f"“{item}”: MMS can only be sent to US and Canadian numbers.")
        e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
        if e164 == sender:
            raise ValueError(f"“{item}” is the sending number; it cannot message itself.")
        numbers[e164] = None
    if len(numbers) > MAX_RECIPIENTS:
        raise ValueError(f"Send to at most {MAX_RECIPIENTS} numbers at once "
                         f"({len(numbers)} given).")
    return list(numbers)


def classify_media(item: str, test_hosts: frozenset[str] = frozenset()) -> dict[str, str]:
    """{"url": url} or {"media_id": id} for one media row, as a message stores it before
    the probe adds type and size. Raises ValueError.

    `test_hosts` (MEDIA_PROBE_ALLOW_HOSTS, refused in production) may serve over http.
    """
    lowered = item.lower()
    if len(item) > 2000:
        raise ValueError("The address is too long.")
    if lowered.startswith("https://"):
        return {"url": item}
    if lowered.startswith("http://"):
        if urlsplit(item).netloc.lower() in test_hosts:
            return {"url": item}
        raise ValueError("Media addresses must start with https://.")
    if MEDIA_ID_RE.match(item):
        return {"media_id": item.lower()}
    raise ValueError("Enter an https:// address or a Plivo media ID.")


class MultiStringField(Field):
    """Every value posted under one name (the media rows), in order."""

    widget = TextInput()

    def process_formdata(self, valuelist):
        self.data = [value.strip() for value in valuelist]

    def _value(self):
        return ""


class ComposeForm(FlaskForm):
    sender = SelectField("From", validators=[DataRequired()])
    recipients = TextAreaField(
        "To", validators=[DataRequired(message="Enter at least one phone number.")],
        description=f"Up to {MAX_RECIPIENTS} US or Canadian numbers, separated by commas or "
                    "new lines.")
    text = TextAreaField("Message", validators=[Length(max=MAX_TEXT, message=(
        f"The text can be at most {MAX_TEXT} characters."))],
        description=f"Optional, up to {MAX_TEXT} characters.")
    media = MultiStringField("Pictures or clips", default=list)
    # Files chosen on this submission (the view prepares and stores them first), and
    # the sha256 of files stored on an earlier one, carried in hidden fields.
    files = MultipleFileField("Attach files from this computer or phone")
    uploaded = MultiStringField(default=list)
    idempotency_key = HiddenField(validators=[DataRequired(), Regexp(r"^[A-Za-z0-9_-]{16,64}$")])
    submit = SubmitField("Send")

    def __init__(self, *args, senders: tuple[str, ...] = (),
                 test_hosts: frozenset[str] = frozenset(), **kwargs):
        super().__init__(*args, **kwargs)
        self.test_hosts = test_hosts
        self.sender.choices = [SelectChoice(n, phonenumbers.format_number(
            phonenumbers.parse(n), phonenumbers.PhoneNumberFormat.NATIONAL)) for n in senders]
        if not self.idempotency_key.data:
            self.idempotency_key.data = secrets.token_urlsafe(24)
        self.parsed_recipients: list[str] = []
        self.parsed_media: list[dict[str, str]] = []
        self.parsed_uploads: list[str] = []

    def validate_recipients(self, field):
        try:
            self.parsed_recipients = parse_recipients(field.data, self.sender.data)
        except ValueError as exc:
            raise ValidationError(str(exc)) from exc

    def validate_uploaded(self, field):
        shas = list(dict.fromkeys(item for item in (field.data or []) if item))
        if any(not SHA256_RE.match(sha) for sha in shas):
            raise ValidationError("An attached file was not recognised; attach it again.")
        self.parsed_uploads = shas

    def validate_media(self, field):
        rows = [item for item in (field.data or []) if item]
        uploads = len({item for item in (self.uploaded.data or []) if item})
        if not rows and not uploads:
            raise ValidationError("Add at least one picture or clip.")
        if len(rows) + uploads > MAX_MEDIA:
            raise ValidationError(f"Attach at most {MAX_MEDIA} items ({len(rows) + uploads} "
                                  "given, files included).")
        parsed, errors = [], []
        for number, item in enumerate(rows, start=1):
            try:
                parsed.append(classify_media(item, self.test_hosts))
            except ValueError as exc:
                errors.append(f"Item {number}: {exc}")
        if errors:
            raise ValidationError(" ".join(errors))
        if len({tuple(item.items()) for item in parsed}) != len(parsed):
            raise ValidationError("The same item is attached twice.")
        self.parsed_media = parsed
