"""The words a reply may consist of that change what we may send: opt out, opt back in,
ask for help. A reply counts when its whole text is one of them, trimmed, in any case,
with punctuation and symbols ignored ("Stop!", "opt-out", "STOP ALL"), or when Plivo
marked its intent (`MessageIntent`)."""

from __future__ import annotations

import re
import unicodedata
from enum import StrEnum


class Keyword(StrEnum):
    OPT_OUT = "optout"
    OPT_IN = "optin"
    HELP = "help"


# The FCC's list (24-24, in force 11 April 2025) and the words Plivo honours itself.
OPT_OUT_WORDS = frozenset({"stop", "stop all", "stopall", "unsubscribe", "unsub", "cancel",
                           "end", "quit", "revoke", "opt out", "optout"})
OPT_IN_WORDS = frozenset({"start", "unstop"})
HELP_WORDS = frozenset({"help"})
_WORDS = {**dict.fromkeys(OPT_OUT_WORDS, Keyword.OPT_OUT),
          **dict.fromkeys(OPT_IN_WORDS, Keyword.OPT_IN),
          **dict.fromkeys(HELP_WORDS, Keyword.HELP)}
_SPACES = re.compile(r"\s+")
LONGEST = 40  # characters: anything longer is a sentence, not a keyword


def normalise(text: str) -> str:
    """'  Opt-Out! ' -> 'optout'; 'STOP  ALL.' -> 'stop all'."""
    kept = "".join(ch for ch in unicodedata.normalize("NFKC", text)
                   if unicodedata.category(ch)[0] not in "PSC" or ch.isspace())
    return _SPACES.sub(" ", kept).strip().casefold()


def classify(text: str, intent: str | None = None) -> Keyword | None:
    """What the reply asks for, if it is a keyword; Plivo's intent counts first."""
    if intent:
        try:
            return Keyword(intent.strip().lower())
        except ValueError:
            pass
    if not text or len(text) > LONGEST:
        return None
    return _WORDS.get(normalise(text))
