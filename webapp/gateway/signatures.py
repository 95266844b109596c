"""Plivo webhook signatures, V3 and V2 (PLIVO.md section 4).

The canonical strings follow the plivo-python 4.63.0 helpers exactly (checked
against them and against the worked examples in the tests), but every
comparison here is constant-time, which the SDK's are not.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import parse_qs, urlsplit

Params = Mapping[str, str | Iterable[str]]


def _values(value: str | Iterable[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _sorted_query(query: Mapping[str, list[str]]) -> str:
    return "&".join(f"{key}={value}" for key in sorted(query) for value in sorted(query[key]))


def v3_canonical(method: str, url: str, params: Params, nonce: str) -> str:
    """The string Plivo signs for a V3 signature."""
    parts = urlsplit(url)
    base = f"{parts.scheme}://{parts.netloc}{parts.path}"
    query = parse_qs(parts.query, keep_blank_values=True)
    if method.upper() == "GET":
        merged = {key: _values(value) for key, value in params.items()}
        merged.update(query)  # the URL's own query wins on duplicate keys
        signed = f"{base}?{_sorted_query(merged)}" if merged else base
    else:
        signed = base
        if query and params:
            signed += f"?{_sorted_query(query)}."
        elif params:
            signed += "?"
        elif query:
            signed += f"?{_sorted_query(query)}"
        signed += "".join(
            f"{key}{value}" for key in sorted(params) for value in sorted(_values(params[key]))
        )
    return f"{signed}.{nonce}"


def v2_canonical(url: str, nonce: str) -> str:
    """The string Plivo signs for a V2 signature: URL without query, then the nonce."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}{nonce}"


def sign(canonical: str, token: str) -> str:
    digest = hmac.new(token.encode(), canonical.encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def _matches(expected: str, header: str) -> bool:
    # The header may carry several comma-separated signatures (token rotation).
    found = False
    for candidate in header.split(","):
        found |= hmac.compare_digest(expected.encode(), candidate.strip().encode())
    return found


class SignatureScheme(StrEnum):
    """Which signature proved a callback, as kept in the ledger (signature_scheme)."""

    V3 = "v3"
    MA_V3 = "ma-v3"  # the main account's signature, sending from a subaccount
    V2 = "v2"
    V2_CONFIRMED = "v2-confirmed"  # V2-signed, applied once Plivo's Message API agreed
    LOOKUP = "lookup"  # no callback: the reconciler asked Plivo's Message API
    INVALID = "invalid"  # a signature was there and did not match
    MISSING = "missing"  # no signature headers at all


@dataclass(frozen=True)
class Verdict:
    valid: bool
    scheme: SignatureScheme
    reason: str
    nonce: str | None = None  # the nonce a valid signature was made with


MAX_NONCE = 64  # Plivo's are 20 digits; the nonce ledger (webhook_nonces) holds 64
_V3_HEADERS = ("X-Plivo-Signature-V3", "X-Plivo-Signature-Ma-V3", "X-Plivo-Signature-V3-Nonce")
_V2_HEADERS = ("X-Plivo-Signature-V2", "X-Plivo-Signature-Ma-V2", "X-Plivo-Signature-V2-Nonce")


def verify(method: str, url: str, params: Params, headers: Mapping[str, str], token: str,
           main_token: str | None = None) -> Verdict:
    """Check a callback's signature headers.

    V3 (and Ma-V3 when a main-account token is configured) when any V3 header
    is present; V2 only when no V3 header is present at all. A failed V3 is
    never retried as V2: that would let an attacker downgrade to the weaker
    scheme, which covers neither the body nor the query.
    """
    # A header that is present counts, even empty: "X-Plivo-Signature-V3:" with nothing
    # after it must not turn a V3 check into the weaker V2 one.
    if any(name in headers for name in _V3_HEADERS):
        v3 = headers.get("X-Plivo-Signature-V3") or ""
        ma_v3 = headers.get("X-Plivo-Signature-Ma-V3") or ""
        nonce = headers.get("X-Plivo-Signature-V3-Nonce") or ""
        if not nonce or len(nonce) > MAX_NONCE:
            return Verdict(False, SignatureScheme.INVALID, "V3 signature without a usable nonce")
        canonical = v3_canonical(method, url, params, nonce)
        if v3 and _matches(sign(canonical, token), v3):
            return Verdict(True, SignatureScheme.V3, "V3 signature matches", nonce)
        if ma_v3 and main_token and _matches(sign(canonical, main_token), ma_v3):
            return Verdict(True, SignatureScheme.MA_V3, "Ma-V3 signature matches", nonce)
        return Verdict(False, SignatureScheme.INVALID, "V3 signature does not match")
    if any(name in headers for name in _V2_HEADERS):
        v2 = headers.get("X-Plivo-Signature-V2") or ""
        ma_v2 = headers.get("X-Plivo-Signature-Ma-V2") or ""
        nonce = headers.get("X-Plivo-Signature-V2-Nonce") or ""
        if not nonce or len(nonce) > MAX_NONCE or not (v2 or ma_v2):
            return Verdict(False, SignatureScheme.INVALID, "V2 signature without a usable nonce")
        canonical = v2_canonical(url, nonce)
        if v2 and _matches(sign(canonical, token), v2):
            return Verdict(True, SignatureScheme.V2, "V2 signature matches", nonce)
        if ma_v2 and main_token and _matches(sign(canonical, main_token), ma_v2):
            return Verdict(True, SignatureScheme.V2, "Ma-V2 signature matches", nonce)
        return Verdict(False, SignatureScheme.INVALID, "V2 signature does not match")
    return Verdict(False, SignatureScheme.MISSING, "no Plivo signature headers")


def signed_headers(method: str, url: str, params: Params, token: str, nonce: str) -> dict[str, str]:
    """Headers as Plivo sends them; used by the simulator and the tests."""
    return {
        "X-Plivo-Signature-V3": sign(v3_canonical(method, url, params, nonce), token),
        "X-Plivo-Signature-V3-Nonce": nonce,
        "X-Plivo-Signature-V2": sign(v2_canonical(url, nonce), token),
        "X-Plivo-Signature-V2-Nonce": nonce,
    }
