from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import phonenumbers
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, MultipleFileField
from wtforms import Field, HiddenField, SelectChoice, SelectField, SubmitField, TextAreaField
from wtforms.validators import DataRequired, Regexp, ValidationError
from wtforms.widgets import TextInput

from webapp.messages.limits import MAX_MEDIA, MAX_TEXT
from webapp.number_limits import POOL, POOL_LABEL, POWERPACK, POWERPACK_LABEL
from webapp.phones import e164

MAX_RECIPIENTS = 25
# Checked before any number is parsed (parsing is the costly part): a field of 22,200
# numbers once cost 5-7 s of CPU. Twice the cap leaves room for duplicates and spacing.
MAX_RECIPIENTS_FIELD_CHARS = 40 * MAX_RECIPIENTS * 2
MAX_RECIPIENT_ITEMS = MAX_RECIPIENTS * 2

# Plivo media ids as its Media API returns them (a UUID).
MEDIA_ID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                         r"[0-9a-fA-F]{12}$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
ITEM_ERROR_RE = re.compile(r"^Item (\d+): (.*)$", re.DOTALL)


@dataclass
class RecipientList:
    """What a person typed or pasted into To, read: the numbers (E.164, in order), how
    many repeats were dropped, and each entry that is not a number, with its line."""

    numbers: list[str] = field(default_factory=list)
    duplicates: int = 0
    problems: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """12 numbers · 2 duplicates removed · 1 invalid"""
        n = len(self.numbers)
        parts = [f"{n} number{'' if n == 1 else 's'}"]
        if self.duplicates:
            parts.append(f"{self.duplicates} duplicate{'' if self.duplicates == 1 else 's'} "
                         "removed")
        if self.problems:
            parts.append(f"{len(self.problems)} invalid")
        return " · ".join(parts)


def _entries(raw: str) -> list[tuple[int, list[str], bool]]:
    """(line number, entries, is a spreadsheet row) for each line with something on it.
    A line with tabs is a row pasted from a spreadsheet: its cells hold names and notes
    as well as the number. Otherwise commas and semicolons separate numbers."""
    lines = []
    for number, line in enumerate(raw.splitlines(), start=1):
        row = "\t" in line
        cells = [c.strip() for c in (line.split("\t") if row else re.split(r"[,;]", line))]
        cells = [c for c in cells if c]
        if cells:
            lines.append((number, cells, row))
    return lines


def read_recipients(raw: str, sender: str | None = None) -> RecipientList:
    """Every number in what was typed or pasted, and every entry that is not one (with
    its line number), so a person can fix them all at once. Raises ValueError only for
    input too large to read (checked before any number is parsed: parsing is the
    costly part; a field of 22,200 numbers once cost 5-7 s of CPU)."""
    raw = raw or ""
    if len(raw) > MAX_RECIPIENTS_FIELD_CHARS:
        raise ValueError(f"Send to at most {MAX_RECIPIENTS} numbers at once (the list is "
                         f"{len(raw):,} characters long).")
    lines = _entries(raw)
    # What could be numbers (a spreadsheet row's cells with 7 digits or more), once each.
    distinct = {cell for _n, cells, row in lines for cell in cells
                if not row or sum(c.isdigit() for c in cell) >= 7}
    if len(distinct) > MAX_RECIPIENT_ITEMS:
        raise ValueError(f"Send to at most {MAX_RECIPIENTS} numbers at once "
                         f"({len(distinct)} given).")
    result = RecipientList()
    seen: set[str] = set()
    for line_number, cells, row in lines:
        found: list[str] = []
        if row:  # a spreadsheet row: the cell(s) that are numbers; the rest are notes
            reasons = []
            for cell in cells:
                if sum(c.isdigit() for c in cell) < 7:
                    continue  # "Customer 0", "Oak Street": not meant as a number
                try:
                    found.append(e164(cell, sender))
                except ValueError as exc:
                    reasons.append(str(exc))
            if not found:
                result.problems.append(f"Line {line_number}: " + (
                    reasons[0] if reasons else f"no phone number in “{' '.join(cells)[:40]}”"))
        else:
            for cell in cells:
                try:
                    found.append(e164(cell, sender))
                except ValueError as exc:
                    result.problems.append(f"Line {line_number}: {exc}")
        for number in found:
            if number in seen:
                result.duplicates += 1
            else:
                seen.add(number)
                result.numbers.append(number)
    return result


def parse_recipients(raw: str, sender: str | None = None) -> list[str]:
    """E.164 numbers from free text, duplicates removed. Raises ValueError naming every
    entry that is not a number (read_recipients for the details)."""
    result = read_recipients(raw, sender)
    if result.problems:
        raise ValueError(". ".join(result.problems) + ".")
    if not result.numbers:
        raise ValueError("Enter at least one phone number.")
    if len(result.numbers) > MAX_RECIPIENTS:
        raise ValueError(f"Send to at most {MAX_RECIPIENTS} numbers at once "
                         f"({len(result.numbers)} given).")
    return result.numbers


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


class MessageForm(FlaskForm):
    """What every send has: the sending number, the text, and the pictures or clips (by
    address, by Plivo media id, or files uploaded from this computer)."""

    sender = SelectField("From", validators=[DataRequired()])
    text = TextAreaField("Message", description=f"Optional, up to {MAX_TEXT} characters.")
    media = MultiStringField("Pictures or clips", default=list)
    # Files chosen on this submission (the view prepares and stores them first), and
    # the sha256 of files stored on an earlier one, carried in hidden fields.
    files = MultipleFileField("Attach files from this computer or phone")
    uploaded = MultiStringField(default=list)

    def __init__(self, *args, senders: tuple[str, ...] = (),
                 test_hosts: frozenset[str] = frozenset(), **kwargs):
        super().__init__(*args, **kwargs)
        self.test_hosts = test_hosts
        if self.sender is not None:  # a form whose sender is given (a reply) has none
            self._sender_choices(senders)
        self.parsed_media: list[dict[str, str]] = []
        self.parsed_uploads: list[str] = []
        self.media_row_errors: dict[int, str] = {}  # row place: its own error

    def _sender_choices(self, senders: tuple[str, ...]) -> None:
        if POWERPACK in senders:  # Plivo picks the number
            self.sender.choices = [SelectChoice(POWERPACK, POWERPACK_LABEL)]
            senders = ()
        else:
            self.sender.choices = [SelectChoice(n, phonenumbers.format_number(
                phonenumbers.parse(n), phonenumbers.PhoneNumberFormat.NATIONAL))
                for n in senders]
        if len(senders) > 1:  # a pool: by default each customer hears from their own number
            self.sender.choices.insert(0, SelectChoice(POOL, POOL_LABEL))
            if not self.sender.data:
                self.sender.data = POOL

    @property
    def all_media(self) -> list[dict]:
        return self.parsed_media + [{"upload": sha} for sha in self.parsed_uploads]

    def attach(self, shas: list[str], removed: list[str]) -> None:
        """Files stored on this submission join those carried from earlier ones, less
        those ticked Remove."""
        gone = set(removed)
        self.uploaded.data = [sha for sha in dict.fromkeys([*(self.uploaded.data or []), *shas])
                              if sha not in gone]

    def validate_text(self, field_):
        # Characters as Plivo counts them: an emoji is one (Python counts code points;
        # the browser's counter does too). Never cut: the person decides what goes.
        length = len(field_.data or "")
        if length > MAX_TEXT:
            over = length - MAX_TEXT
            raise ValidationError(f"The text is {length:,} characters, {over:,} over the "
                                  f"{MAX_TEXT:,} an MMS can carry. Shorten it by {over:,}.")

    def mark_media_rows(self, errors: list[str]) -> list[str]:
        """Put each "Item N: why" error next to its own row (media_row_errors, by the
        row's place among all rows, blank ones included); returns the others."""
        places = [i for i, item in enumerate(self.media.data or []) if item]
        rest = []
        for error in errors:
            match = ITEM_ERROR_RE.match(error)
            number = int(match.group(1)) if match else 0
            if 1 <= number <= len(places):
                self.media_row_errors[places[number - 1]] = match.group(2)
            else:
                rest.append(error)
        return rest

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
        if not errors:
            seen = set()
            for number, item in enumerate(parsed, start=1):
                if tuple(item.items()) in seen:
                    errors.append(f"Item {number}: the same item is attached twice.")
                seen.add(tuple(item.items()))
        if errors:
            self.mark_media_rows(errors)
            raise ValidationError(f"{len(errors)} of the items need fixing: see each one "
                                  "above." if len(errors) > 1 else
                                  "This item needs fixing: see it above.")
        self.parsed_media = parsed


class ComposeForm(MessageForm):
    recipients = TextAreaField(
        "To", validators=[DataRequired(message="Enter at least one phone number.")],
        description=f"Up to {MAX_RECIPIENTS} US or Canadian numbers, separated by commas or "
                    "new lines, or rows pasted from a spreadsheet.")
    idempotency_key = HiddenField(validators=[DataRequired(), Regexp(r"^[A-Za-z0-9_-]{16,64}$")])
    submit = SubmitField("Send")

    # Set when more numbers were given than a single send takes: the page then offers to
    # carry them, the text and the pictures over to a list send.
    too_many = False

    def __init__(self, *args, opted_out=None, **kwargs):
        super().__init__(*args, **kwargs)
        if not self.idempotency_key.data:
            self.idempotency_key.data = secrets.token_urlsafe(24)
        self.parsed_recipients: list[str] = []
        self.recipient_summary = ""
        # Which of some numbers replied STOP (opt_outs.among, given by the view).
        self.opted_out = opted_out or (lambda numbers: set())

    def validate_recipients(self, field_):
        try:
            found = read_recipients(field_.data, self.sender.data)
        except ValueError as exc:
            self.too_many = True
            raise ValidationError(f"{exc} For more, send it as a list: it takes thousands, "
                                  "and the numbers go with you.") from exc
        self.recipient_summary = found.summary() if (found.problems or found.duplicates) else ""
        problems = [f"{p}." for p in found.problems]
        if not problems and not found.numbers:
            problems = ["Enter at least one phone number."]
        if len(found.numbers) > MAX_RECIPIENTS:
            self.too_many = True
            problems.append(f"Send to at most {MAX_RECIPIENTS} numbers at once "
                            f"({len(found.numbers)} given). For more, send it as a list: it "
                            "takes thousands, and the numbers go with you.")
        for number in sorted(self.opted_out(found.numbers)):
            problems.append(f"{number} replied STOP to our messages: nothing can be sent to "
                            "it until they text START (or an admin takes it off the opt-out "
                            "list).")
        if problems:
            field_.errors.extend(problems[:-1])  # every one at once, each on its own
            raise ValidationError(problems[-1])
        self.parsed_recipients = found.numbers

    def fill_from(self, draft, show_number) -> None:
        """Start from `draft` (sending.copy_of): its recipients as people write them
        (`show_number`), text, sender if still ours, and media rows and files."""
        if draft.recipients:
            self.recipients.data = "\n".join(show_number(r) for r in draft.recipients)
        self.text.data = draft.text
        if draft.sender in {choice.value for choice in self.sender.choices}:
            self.sender.data = draft.sender
        self.media.data = [m.get("url") or m.get("media_id") for m in draft.media
                           if m.get("url") or m.get("media_id")]
        self.uploaded.data = [m["upload"] for m in draft.media if "upload" in m]


class BatchForm(MessageForm):
    """A send to many: the list comes as a CSV file or pasted rows (read by the view with
    lists.list_file, which says what is wrong with a list as a whole)."""

    list_file = FileField("Upload a CSV file")
    pasted = TextAreaField("Or paste rows from a spreadsheet")
    submit = SubmitField("Check the list")
