"""How fast a sender number may send MMS: the limits Plivo and the carriers publish, by the
number's type and country (PLIVO.md 6.2 and 7a.3), and the PLIVO_NUMBER_LIMITS override.

Pure values, read by the settings (the override) and by the gateway's pace; nothing here
talks to Plivo.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import phonenumbers

# The compose forms' "From" choice for the whole pool of sender numbers: each customer
# hears from one number of it, always the same (sending.senders.assign).
POOL = "pool"
POOL_LABEL = "Any of our numbers (each customer keeps theirs)"
# With PLIVO_POWERPACK_UUID, Plivo picks the number of its Powerpack (and keeps it sticky):
# a message's sender is this until Plivo's callbacks name the number it used.
POWERPACK = "powerpack"
POWERPACK_LABEL = "Plivo's Powerpack (Plivo picks the number)"


@dataclass(frozen=True)
class Limit:
    """A number's own limit: messages a second (None: only the account's MPS holds it
    back) and a day (None: no daily cap)."""

    per_second: float | None = None
    per_day: int | None = None

    def describe(self) -> str:
        parts = []
        if self.per_second is not None:
            per_minute = self.per_second * 60
            if self.per_second >= 1:
                parts.append(f"{self.per_second:g} a second")
            elif abs(per_minute - round(per_minute)) < 1e-9:
                parts.append(f"{round(per_minute)} a minute")
            else:
                parts.append(f"one every {1 / self.per_second:.3g} s")
        if self.per_day is not None:
            parts.append(f"{self.per_day:,} a day")
        return ", ".join(parts) or "the account's pace only"


# Published MMS limits (PLIVO.md 6.2): (country, type) -> limit. A US long code that is
# not registered for 10DLC is held to 1 a second and 2,000 a day by the carriers; a
# registered one gets its campaign's throughput, which Plivo does not publish per number:
# 1 a second here until PLIVO_NUMBER_LIMITS says more.
US_LONG_CODE = Limit(per_second=1.0, per_day=2000)
US_LONG_CODE_REGISTERED = Limit(per_second=1.0)
TOLL_FREE = Limit(per_second=2.0)
CA_LONG_CODE = Limit(per_second=15 / 60)

_LONG_CODE_TYPES = frozenset({"local", "mobile", "fixed", "national", "longcode"})
_TOLL_FREE_TYPES = frozenset({"tollfree", "toll-free", "toll_free"})
_DONE = frozenset({"completed", "complete", "registered", "approved", "verified", "active"})


@dataclass(frozen=True)
class Published:
    """What the published table says of one number: its limit, and a warning for staff
    (carriers filter unregistered and unverified numbers), or None for a number the
    table does not know (the account's MPS alone paces it)."""

    limit: Limit | None
    warning: str | None = None


def country_of(number: str) -> str | None:
    try:
        return phonenumbers.region_code_for_number(phonenumbers.parse(number, None))
    except phonenumbers.NumberParseException:
        return None


def published(number: str, number_type: str, registration: str = "",
              verification: str = "") -> Published:
    """The published limit of `number` as Plivo's Number API describes it."""
    kind = (number_type or "").strip().lower()
    country = country_of(number)
    registered = (registration or "").strip().lower() in _DONE
    verified = (verification or "").strip().lower() in _DONE
    if kind in _TOLL_FREE_TYPES and country in ("US", "CA"):
        if verified:
            return Published(TOLL_FREE)
        return Published(TOLL_FREE, "Toll-free number not verified: carriers block or filter "
                                    "its messages until Plivo's toll-free verification is done.")
    if kind in _LONG_CODE_TYPES and country == "CA":
        return Published(CA_LONG_CODE)
    if kind in _LONG_CODE_TYPES and country == "US":
        if registered:
            return Published(US_LONG_CODE_REGISTERED)
        return Published(US_LONG_CODE, "Not registered for 10DLC: carriers hold it to 2,000 "
                                       "messages a day and may filter what it sends.")
    if not kind:
        return Published(None, "Plivo's Number API did not say what type of number this is: "
                               "only the account's pace limits it.")
    return Published(None, f"No published MMS limit for a {kind} number in {country or 'this country'}: "
                           "only the account's pace limits it.")


_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(s|sec|second|min|minute|day|d)\s*$", re.I)


def parse_overrides(raw: str) -> dict[str, Limit]:
    """PLIVO_NUMBER_LIMITS: `+14155550100=1/s;2000/day, +16045550100=15/min`. Raises
    ValueError naming the part that is wrong."""
    found: dict[str, Limit] = {}
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        number, sep, rates = item.partition("=")
        if not sep or not rates.strip():
            raise ValueError(f"{item!r}: expected NUMBER=RATE, e.g. +14155550100=1/s;2000/day")
        try:
            parsed = phonenumbers.parse(number.strip(), "US")
        except phonenumbers.NumberParseException:
            raise ValueError(f"{number.strip()!r} is not a phone number") from None
        e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
        per_second: float | None = None
        per_day: int | None = None
        for rate in rates.split(";"):
            match = _RATE.match(rate)
            if not match:
                raise ValueError(f"{rate.strip()!r}: expected N/s, N/min or N/day")
            amount, unit = float(match[1]), match[2].lower()
            if amount <= 0:
                raise ValueError(f"{rate.strip()!r}: must be more than 0")
            if unit in ("day", "d"):
                if amount != int(amount):
                    raise ValueError(f"{rate.strip()!r}: a daily cap is a whole number")
                per_day = int(amount)
            else:
                per_second = amount if unit in ("s", "sec", "second") else amount / 60
        found[e164] = Limit(per_second=per_second, per_day=per_day)
    return found
