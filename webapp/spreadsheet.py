"""CSV cells a spreadsheet opens as text: the one rule every export follows."""

from __future__ import annotations

import csv
import io
import re

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
# A phone number in E.164 cannot run as a formula: it stays as it is, so a spreadsheet
# shows +14155550100 rather than '+14155550100. Anything else starting "+" is neutralised.
PHONE_NUMBER = re.compile(r"\+[0-9]{1,15}")
_FORMULA_FIRST = frozenset(FORMULA_PREFIXES)


def neutralize(value: object) -> str:
    """A cell a spreadsheet will not run as a formula (OWASP CSV injection)."""
    if value is None:
        return ""
    text = value if type(value) is str else str(value)
    if text[:1] in _FORMULA_FIRST and not PHONE_NUMBER.fullmatch(text):
        return "'" + text
    return text


def csv_line(cells) -> str:
    """One CSV row of `cells`, each neutralized."""
    out = io.StringIO()
    csv.writer(out).writerow([neutralize(cell) for cell in cells])
    return out.getvalue()
