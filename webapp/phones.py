"""Phone numbers as staff type them, read as E.164: US and Canadian numbers only (MMS
goes to no other country), with a reason a person understands when one is not."""

from __future__ import annotations

import phonenumbers

_WHY_NOT_POSSIBLE = {
    phonenumbers.ValidationResult.TOO_SHORT: "is too short",
    phonenumbers.ValidationResult.TOO_LONG: "is too long",
    phonenumbers.ValidationResult.INVALID_LENGTH: "has the wrong number of digits",
    phonenumbers.ValidationResult.INVALID_COUNTRY_CODE: "has an unknown country code",
}


def e164(item: str, sender: str | None = None) -> str:
    """One entry as E.164, or ValueError saying why not (without the line)."""
    if len(item) > 40:
        raise ValueError(f"“{item[:40]}…” is not a phone number")
    if any(ch.isalpha() for ch in item) and any(ch.isdigit() for ch in item):
        # phonenumbers reads letters as a keypad's digits (ABC is 222), then finds the
        # number too short: the letters are what the person needs to hear about.
        raise ValueError(f"“{item}” contains letters; type the number in digits")
    try:
        parsed = phonenumbers.parse(item, "US")
    except phonenumbers.NumberParseException:
        raise ValueError(f"“{item}” is not a phone number") from None
    if not phonenumbers.is_valid_number(parsed):
        why = _WHY_NOT_POSSIBLE.get(phonenumbers.is_possible_number_with_reason(parsed))
        raise ValueError(f"“{item}” {why}" if why else f"“{item}” is not a valid phone number")
    if phonenumbers.region_code_for_number(parsed) not in ("US", "CA"):
        raise ValueError(f"“{item}” is not a US or Canadian number (MMS can only be sent to "
                         "US and Canadian numbers)")
    number = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    if number == sender:
        raise ValueError(f"“{item}” is the sending number; it cannot message itself")
    return number
