"""A customer list, read: an uploaded CSV or rows pasted from a spreadsheet, the column
that holds the numbers, ((placeholders)) filled per row, and every row checked.

Nothing here touches the database: messages.batches keeps what this reads as a draft.
The file is read as a stream (csv over a text wrapper of the upload's spooled file) and
reading stops one row past the limit, so a 50 MB file costs no more memory than the
rows the limit allows.
"""

from __future__ import annotations

import codecs
import csv
import difflib
import io
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from webapp.phones import e164

# The header names that mean "the phone number", compared without case, spaces or
# punctuation.
NUMBER_HEADERS = frozenset({
    "phone", "phonenumber", "phoneno", "mobile", "mobilenumber", "mobilephone", "cell",
    "cellphone", "cellnumber", "number", "tel", "telephone", "msisdn", "to", "recipient",
    "sms", "smsnumber", "contactnumber", "phonenumbers",
})
MAX_COLUMNS = 30
MAX_CELL = 500  # characters in a cell kept for personalisation
PLACEHOLDER = re.compile(r"\(\(([^()]{1,60})\)\)")
PREVIEW_ROWS = 3
SNIFF_BYTES = 64 * 1024
csv.field_size_limit(64 * 1024)  # a cell of 64 KiB is already no CSV a person made


class ListError(ValueError):
    """The list as a whole cannot be read: the message says why and what to do."""


def key(name: str) -> str:
    """A column or placeholder name as they are matched: no case, spaces or punctuation
    ("First name", "first_name" and ((FirstName)) are the same)."""
    return re.sub(r"[\W_]+", "", name.casefold())


@dataclass
class Table:
    """The rows of a list as read: `header` (None when the first row is already data)
    and each row with its row number as a spreadsheet shows it (the header is row 1)."""

    header: list[str] | None
    rows: list[tuple[int, list[str]]]
    columns: list[str] = field(default_factory=list)  # a name for every column
    number_column: int = 0


# ---- reading -------------------------------------------------------------------------------
def _refuse_binary(head: bytes) -> None:
    if not head.strip():
        raise ListError("The file is empty. Choose the CSV file with your list.")
    if head.startswith(b"PK\x03\x04"):
        raise ListError("This is an Excel workbook, not a CSV file. In Excel choose File > "
                        "Save As > “CSV UTF-8 (Comma delimited)”, then upload that file.")
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return
    if b"\x00" in head:
        raise ListError("This file is not a CSV file (it holds binary data). Save your "
                        "spreadsheet as CSV and upload that.")


def _encoding(head: bytes) -> str:
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    return "utf-8"


def _delimiter(sample: str) -> str:
    """The separator of the first line, outside quotes: a comma, a semicolon (Excel in
    many European locales) or a tab (pasted from a spreadsheet)."""
    first = next((line for line in sample.splitlines() if line.strip()), "")
    unquoted = re.sub(r'"[^"]*"', "", first)
    counts = {d: unquoted.count(d) for d in ("\t", ";", ",")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def _records(text: Iterable[str], delimiter: str, max_rows: int) -> Iterator[tuple[int, list[str]]]:
    reader = csv.reader(text, delimiter=delimiter)
    number = 0
    try:
        for cells in reader:
            number += 1
            cells = [c.strip() for c in cells]
            while cells and not cells[-1]:
                cells.pop()
            if not cells:
                continue  # a blank line
            if len(cells) > MAX_COLUMNS:
                raise ListError(f"Row {number} has {len(cells)} columns; a list may have at "
                                f"most {MAX_COLUMNS}. Remove the columns you do not need.")
            yield number, cells
            if number > max_rows + 1:  # the header and max_rows rows: one more is too many
                raise ListError(f"The list has more than {max_rows:,} rows. Send it in parts "
                                f"of at most {max_rows:,}.")
    except csv.Error as exc:
        raise ListError(f"Row {number + 1} is not valid CSV ({exc}). Save the file from your "
                        "spreadsheet again as CSV.") from None


def read_upload(stream: BinaryIO, max_rows: int) -> Table:
    """The rows of an uploaded CSV (UTF-8 with or without a BOM, UTF-16, or Windows-1252,
    as Excel saves them; comma, semicolon or tab separated; quoted newlines kept)."""
    head = stream.read(SNIFF_BYTES)
    _refuse_binary(head)
    encoding = _encoding(head)
    delimiter = _delimiter(head.decode(encoding, errors="replace"))
    for attempt in (encoding, "cp1252"):
        stream.seek(0)
        wrapper = io.TextIOWrapper(stream, encoding=attempt, newline="", errors="strict")
        try:
            rows = list(_records(wrapper, delimiter, max_rows))
        except UnicodeDecodeError:
            if attempt == "cp1252":
                raise ListError("The file's characters could not be read. Save it from your "
                                "spreadsheet as “CSV UTF-8”.") from None
            continue
        finally:
            wrapper.detach()  # the upload's stream stays open for its owner
        return _bounded(_table(rows), max_rows)
    raise AssertionError("unreachable")


def read_pasted(text: str, max_rows: int) -> Table:
    """The rows pasted into the box: from a spreadsheet (tab separated), or typed with
    commas or semicolons, or one number per line."""
    if not text.strip():
        raise ListError("Paste your list, or choose a CSV file.")
    if "\x00" in text:
        raise ListError("The pasted list holds characters that are not text.")
    return _bounded(_table(list(_records(io.StringIO(text, newline=""),
                                         _delimiter(text[:SNIFF_BYTES]), max_rows))), max_rows)


def _bounded(table: Table, max_rows: int) -> Table:
    if len(table.rows) > max_rows:
        raise ListError(f"The list has more than {max_rows:,} rows. Send it in parts of at "
                        f"most {max_rows:,}.")
    return table


def _number_like(cell: str) -> bool:
    try:
        e164(cell)
    except ValueError:
        return False
    return True


def _table(rows: list[tuple[int, list[str]]]) -> Table:
    if not rows:
        raise ListError("The list has no rows. Check that you chose the right file.")
    width = max(len(cells) for _n, cells in rows)
    first = rows[0][1]
    named = [i for i, cell in enumerate(first) if key(cell) in NUMBER_HEADERS]
    if named:  # a header with a number column
        return _named(rows, width, named[0])
    sample = rows[1:51] if len(rows) > 1 else rows
    if not any(_number_like(cell) for cell in first):
        # A header without a name we know (or no numbers at all): guess the column from
        # the rows below it; the person can choose another on the preview.
        return _named(rows, width, _likeliest(sample, width))
    # No header: the first row is already a recipient.
    column = _likeliest(rows[:50], width)
    names = [f"column {i + 1}" for i in range(width)]
    names[column] = "phone"
    if width == 2:  # "name, phone" rows without a header: the other column is the name
        names[1 - column] = "name"
    return Table(header=None, rows=rows, columns=names, number_column=column)


def _named(rows, width: int, column: int) -> Table:
    header = rows[0][1]
    names, seen = [], set()
    for i in range(width):
        name = header[i][:60] if i < len(header) and header[i] else f"column {i + 1}"
        while key(name) in seen:
            name += " (again)"
        seen.add(key(name))
        names.append(name)
    return Table(header=header, rows=rows[1:], columns=names, number_column=column)


def _likeliest(sample: list[tuple[int, list[str]]], width: int) -> int:
    scores = [sum(1 for _n, cells in sample if i < len(cells) and _number_like(cells[i]))
              for i in range(width)]
    return max(range(width), key=lambda i: (scores[i], -i))


# ---- checking ------------------------------------------------------------------------------
def placeholders(text: str) -> list[str]:
    """The ((placeholders)) of a text, once each, in order, as written."""
    return list(dict.fromkeys(m.group(1).strip() for m in PLACEHOLDER.finditer(text or "")))


def render(text: str, values: dict[str, str]) -> str:
    """The text with each ((placeholder)) replaced by the row's value (by key())."""
    return PLACEHOLDER.sub(lambda m: values.get(key(m.group(1)), m.group(0)), text or "")


@dataclass
class Recipient:
    row: int
    number: str
    fields: dict[str, str]  # column name -> value, as the list has them


@dataclass
class Check:
    """What would happen: the recipients, and every row left out with its reason."""

    recipients: list[Recipient] = field(default_factory=list)
    invalid: list[tuple[int, str, str]] = field(default_factory=list)  # row, value, reason
    duplicates: int = 0
    opted_out: list[tuple[int, str]] = field(default_factory=list)  # row, number
    missing_columns: list[str] = field(default_factory=list)  # placeholders with no column
    # Rows whose number is fine but a ((placeholder)) has no value: not "invalid", which
    # would send staff looking for a bad number. row, number as written, placeholders.
    missing_values: list[tuple[int, str, list[str]]] = field(default_factory=list)
    suggestions: dict[str, str] = field(default_factory=dict)  # ((typo)) -> nearest column

    @property
    def left_out(self) -> list[tuple[int, str, str]]:
        """Every row left out, in the list's own order: row, value, reason."""
        rows = [*self.invalid,
                *((row, raw, missing_value_reason(names))
                  for row, raw, names in self.missing_values),
                *((row, number, "replied STOP (opted out)") for row, number in self.opted_out)]
        return sorted(rows, key=lambda line: line[0])


def missing_value_reason(names: list[str]) -> str:
    return "missing a value for " + ", ".join(f"(({name}))" for name in names)


def nearest_columns(missing: list[str], columns: list[str]) -> dict[str, str]:
    """For each placeholder no column matches, the column it most likely meant
    (((nmae)) -> name), compared as placeholders are matched (key())."""
    by_key = {key(name): name for name in columns}
    found = {}
    for placeholder in missing:
        close = difflib.get_close_matches(key(placeholder), list(by_key), n=1, cutoff=0.6)
        if close:
            found[placeholder] = by_key[close[0]]
    return found


def check(table: Table, text: str, sender: str, max_text: int) -> Check:
    """Every row read: the number (E.164, US/Canada), duplicates removed (the first row
    stays), and each ((placeholder)) filled (a missing value is an error for that row;
    the caller leaves out opted-out numbers, which need the database). Placeholders that
    are no column at all are reported once, in `missing_columns`."""
    result = Check()
    by_key = {key(name): i for i, name in enumerate(table.columns)}
    wanted = placeholders(text)
    result.missing_columns = [p for p in wanted if key(p) not in by_key]
    result.suggestions = nearest_columns(result.missing_columns, table.columns)
    used = [(p, by_key[key(p)]) for p in wanted if key(p) in by_key]
    seen: set[str] = set()
    for row, cells in table.rows:
        raw = cells[table.number_column] if table.number_column < len(cells) else ""
        if not raw:
            result.invalid.append((row, "", "no phone number in this row"))
            continue
        try:
            number = e164(raw, sender)
        except ValueError as exc:
            result.invalid.append((row, raw, str(exc)))
            continue
        empty = [p for p, i in used if i >= len(cells) or not cells[i]]
        if empty:
            result.missing_values.append((row, raw, empty))
            continue
        if number in seen:
            result.duplicates += 1
            continue
        seen.add(number)
        fields = {name: cells[i][:MAX_CELL] for i, name in enumerate(table.columns)
                  if i < len(cells) and i != table.number_column and cells[i]}
        if used and len(render(text, {key(k): v for k, v in fields.items()})) > max_text:
            result.invalid.append((row, raw, f"the message for this row is over {max_text:,} "
                                             "characters once filled in"))
            continue
        result.recipients.append(Recipient(row, number, fields))
    return result


def values_by_key(fields: dict[str, str]) -> dict[str, str]:
    return {key(name): value for name, value in (fields or {}).items()}
