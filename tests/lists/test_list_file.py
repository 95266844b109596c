"""Reading a customer list: encodings, separators, the number column, placeholders, and
files that are not lists."""

from __future__ import annotations

import io
import re

import pytest

from webapp.lists import list_file
from webapp.lists.list_file import ListError

MEDIA = "https://example.com/picture.jpg"
TOKEN_RE = re.compile(r"/batches/drafts/([A-Za-z0-9_-]+)")


def read(data: bytes, max_rows: int = 10_000) -> list_file.Table:
    return list_file.read_upload(io.BytesIO(data), max_rows)


def numbers(n: int, start: int = 101) -> list[str]:
    return [f"(415) 555-{start + i:04d}" for i in range(n)]


# ---- reading lists -------------------------------------------------------------------------
def test_a_header_names_the_number_column_and_keeps_the_others():
    table = read(b"Name,Mobile Number,Shop\nAna,(415) 555-0101,Oak Street\nBen,604 555 0199,\n")
    assert table.columns == ["Name", "Mobile Number", "Shop"]
    assert table.number_column == 1
    assert table.rows == [(2, ["Ana", "(415) 555-0101", "Oak Street"]),
                          (3, ["Ben", "604 555 0199"])]


@pytest.mark.parametrize("data", [
    "\ufeffname,phone\nAna,4155550101\n".encode(),  # Excel's "CSV UTF-8": a BOM
    b"name;phone\nAna;4155550101\n",  # a semicolon locale
    b"name\tphone\nAna\t4155550101\n",  # tabs
    "name,phone\nAna,4155550101\n".encode("utf-16"),
])
def test_boms_separators_and_encodings(data):
    table = read(data)
    assert table.columns == ["name", "phone"] and table.rows[0][1] == ["Ana", "4155550101"]


def test_windows_1252_is_read_as_such():
    table = read("name,phone\nZoë Müller,4155550101\n".encode("cp1252"))
    assert table.rows[0][1][0] == "Zoë Müller"


def test_quoted_newlines_stay_in_their_cell_and_rows_count_as_a_spreadsheet_shows():
    table = read(b'name,phone,note\n"Ana\nSmith",4155550101,"a, b"\nBen,4155550102,x\n')
    assert table.rows[0] == (2, ["Ana\nSmith", "4155550101", "a, b"])
    assert table.rows[1][0] == 3


def test_rows_without_a_header_name_and_phone():
    table = list_file.read_pasted("Ana\t(415) 555-0101\nBen\t(415) 555-0102", 100)
    assert table.header is None and table.columns == ["name", "phone"]
    assert len(table.rows) == 2


def test_a_header_with_unknown_names_finds_the_numbers_by_content():
    table = read(b"who,contact\nAna,4155550101\nBen,4155550102\n")
    assert table.number_column == 1 and table.columns == ["who", "contact"]


@pytest.mark.parametrize("data, words", [
    (b"", "empty"),
    (b"   \n\n", "empty"),
    (b"PK\x03\x04\x14\x00\x06\x00" + b"\x00" * 50, "Excel workbook"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "not a CSV file"),
    (b"\x7fELF\x02\x01\x01\x00\x00\x00", "not a CSV file"),
    (b'name,phone\n"Ana' + b"x" * 70_000 + b'",4155550101\n', "not valid CSV"),
    (b"a," * 40 + b"\n", "columns"),
])
def test_files_that_are_not_lists_are_refused_in_plain_words(data, words):
    with pytest.raises(ListError, match=words):
        read(data)


def test_too_many_rows_stops_reading_early():
    big = io.BytesIO(b"phone\n" + b"4155550101\n" * 50_000)
    with pytest.raises(ListError, match="more than 10,000 rows"):
        list_file.read_upload(big, 10_000)
    assert big.tell() < 300_000  # stopped near row 10,001, not at the end of the file


def test_placeholders_are_filled_and_missing_values_are_row_errors():
    table = list_file.read_pasted("First name,phone\nAna,4155550101\n,4155550102\n"
                                   "Cy,4155550101\nDee,123\n", 100)
    text = "Hi ((first name)), ((FirstName))! ((shop))"
    result = list_file.check(table, text, "+14155550100", 1600)
    assert [r.number for r in result.recipients] == ["+14155550101"]
    assert result.duplicates == 1
    # A row only missing a name is not "invalid": its number is fine.
    assert [(row, reason) for row, _v, reason in result.invalid] == [(5, "“123” is too short")]
    assert result.missing_values == [(3, "4155550102", ["first name", "FirstName"])]
    assert [(row, reason) for row, _v, reason in result.left_out] == [
        (3, "missing a value for ((first name)), ((FirstName))"), (5, "“123” is too short")]
    assert result.missing_columns == ["shop"]
    assert list_file.render(text, list_file.values_by_key(result.recipients[0].fields)) == \
        "Hi Ana, Ana! ((shop))"


def test_a_message_too_long_once_filled_is_a_row_error():
    table = list_file.read_pasted("name,phone\n" + "x" * 401 + ",4155550101\nAl,4155550102\n", 10)
    result = list_file.check(table, "((name))" * 4, "+14155550100", 1600)
    assert [r.row for r in result.recipients] == [3]
    assert "over 1,600 characters" in result.invalid[0][2]


def test_a_placeholder_typo_suggests_the_nearest_column():
    table = list_file.read_pasted("name,phone,shop\nAna,4155550101,Oak\n", 100)
    result = list_file.check(table, "Hi ((nmae)) from ((Shopp)) and ((zzz))", "+14155550100",
                             1600)
    assert result.missing_columns == ["nmae", "Shopp", "zzz"]
    assert result.suggestions == {"nmae": "name", "Shopp": "shop"}


@pytest.mark.parametrize(("typed", "says"), [
    ("+1555ABC", "“+1555ABC” contains letters; type the number in digits"),
    ("hello", "“hello” is not a phone number"),
    ("415555012", "“415555012” is too short"),
])
def test_a_bad_number_is_explained_by_what_is_wrong_with_it(typed, says):
    from webapp.phones import e164

    with pytest.raises(ValueError, match=re.escape(says)):
        e164(typed)
