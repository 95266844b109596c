"""What a person types into the history's "Text contains" and "Recipient" fields, turned
into conditions an index answers: never `LIKE '%…%'`, which walks the whole table and took
2.7 s for a rare word over a million messages.

Text: every word must appear, as a whole word, regardless of case, accents and punctuation
("INVOICE #4471!" finds "invoice 4471"); `invo*` finds words beginning so; words in double
quotes match as a phrase, in that order. Whole words by default because an index seeks
straight to a word but must merge every word with a prefix (5 ms rather than 0.1 ms for
"invoice*" over a million messages). SQLite
answers from an FTS5 index (`messages_fts`, kept in step with `messages` by triggers);
PostgreSQL from a GIN index on a generated column of the same words (`search_document`). Both indexes
see a message as its letters and digits only, so the two databases agree.

Recipient: the last digits of the number (at least 4), or the whole number in any format,
matched as a prefix of the reversed digits (`messages.recipient_reversed`, indexed).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import ColumnElement, and_, bindparam, func, literal_column, select, text

from webapp.models import ACCENTED, UNACCENTED, Message, reversed_digits

_m = Message.__table__
_WORD = re.compile(r"\w+", re.UNICODE)
_PHRASE = re.compile(r'"([^"]*)"')
_PREFIX = re.compile(r"(\w+)\*", re.UNICODE)
MIN_RECIPIENT_DIGITS = 4
MAX_TERMS = 12

# PostgreSQL's generated column of the text's words (models.SEARCH_DDL).
PG_DOCUMENT = "messages.search_document"
_FOLD = str.maketrans(ACCENTED, UNACCENTED)


@dataclass(frozen=True)
class TextQuery:
    """Search words (whole words; `word*` for words beginning so) and phrases (runs of
    whole words, in order)."""

    words: tuple[str, ...]
    prefixes: frozenset[str]
    phrases: tuple[tuple[str, ...], ...]

    @classmethod
    def parse(cls, typed: str) -> TextQuery:
        phrases = []
        for quoted in _PHRASE.findall(typed):
            found = tuple(w.lower() for w in _WORD.findall(quoted))
            if len(found) > 1:
                phrases.append(found)
            elif found:  # a quoted single word is just a word
                typed += " " + found[0]
        loose = _PHRASE.sub(" ", typed)
        words = tuple(dict.fromkeys(w.lower() for w in _WORD.findall(loose)))[:MAX_TERMS]
        prefixes = frozenset(w.lower() for w in _PREFIX.findall(loose)) & set(words)
        return cls(words, prefixes, tuple(phrases[:MAX_TERMS]))

    def __bool__(self) -> bool:
        return bool(self.words or self.phrases)

    def fts5(self) -> str:
        """An FTS5 MATCH expression. Every term is a quoted string, so nothing typed can be
        read as FTS5 syntax (AND, NEAR, column filters, `^`)."""
        parts = [f'"{w}"' + ("*" if w in self.prefixes else "") for w in self.words]
        parts += ['"' + " ".join(p) + '"' for p in self.phrases]
        return " AND ".join(parts)

    def tsquery(self) -> str:
        """A PostgreSQL tsquery in to_tsquery syntax (`<->` joins a phrase's words). The
        words are letters and digits only, so quoting them is all the escaping needed."""
        def fold(word: str) -> str:  # as the index folds the text
            return word.translate(_FOLD)

        parts = [f"'{fold(w)}'" + (":*" if w in self.prefixes else "") for w in self.words]
        parts += ["(" + " <-> ".join(f"'{fold(w)}'" for w in p) + ")" for p in self.phrases]
        return " & ".join(parts)


def text_condition(typed: str, dialect: str) -> ColumnElement[bool] | None:
    """Rows whose text matches what was typed; None when nothing searchable was typed."""
    query = TextQuery.parse(typed)
    if not query:
        return None
    if dialect == "postgresql":
        return literal_column(PG_DOCUMENT).op("@@")(
            func.to_tsquery(literal_column("'simple'::regconfig"), query.tsquery()))
    return _m.c.id.in_(
        select(literal_column("rowid")).select_from(text("messages_fts"))
        .where(text("messages_fts MATCH :fts").bindparams(fts=query.fts5())))


# At most :limit ids of matching messages, from the FTS5 index alone.
FTS_MATCH_IDS = text("SELECT rowid FROM messages_fts WHERE messages_fts MATCH :fts "
                     "ORDER BY rowid DESC LIMIT :limit")


def recipient_bounds(digits: str) -> tuple[str, str] | None:
    """The range of reversed digits of the numbers ending in these digits."""
    if len(digits) < MIN_RECIPIENT_DIGITS:
        return None
    prefix = reversed_digits(digits)
    return prefix, prefix + ":"  # ':' follows '9'


def recipient_condition(digits: str) -> ColumnElement[bool] | None:
    """Numbers ending in these digits (a whole number ends in itself): a range on the
    reversed digits, which an index answers without a scan."""
    if (bounds := recipient_bounds(digits)) is None:
        return None
    return and_(_m.c.recipient_reversed >= bindparam("rcpt_lo", bounds[0]),
                _m.c.recipient_reversed < bindparam("rcpt_hi", bounds[1]))
