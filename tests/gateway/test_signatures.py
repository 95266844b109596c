"""Signature algorithms: the worked examples of PLIVO.md section 4.4, and the SDK's own helpers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from plivo.utils import validate_signature
from plivo.utils.signature_v3 import validate_v3_signature

from webapp.gateway import signatures

TOKEN = "MY_TEST_AUTH_TOKEN_0123456789abcdef"
MAIN_TOKEN = "MAIN_ACCOUNT_TOKEN_zyx987"
URL = "https://dash.example.com/plivo/status/"
NONCE = "12345678901234567890"
FORM = {"MessageUUID": "db3ce55a-7f1d-11e1-8ea7-1231380bc196", "Status": "delivered",
        "ErrorCode": "", "To": "14155550101", "From": "14155550100"}


def v3_headers(signature: str, nonce: str = NONCE, header: str = "X-Plivo-Signature-V3"):
    return {header: signature, "X-Plivo-Signature-V3-Nonce": nonce}


def test_v3_post_worked_example():
    canonical = signatures.v3_canonical("POST", URL, FORM, NONCE)
    assert canonical == (
        "https://dash.example.com/plivo/status/?ErrorCodeFrom14155550100MessageUUIDdb3ce55a-"
        "7f1d-11e1-8ea7-1231380bc196StatusdeliveredTo14155550101.12345678901234567890")
    assert signatures.sign(canonical, TOKEN) == "IaWkcwmk04EpcYHpDRZN/oOdM24VrhEDpMRNKmF/aRs="
    assert signatures.sign(canonical, MAIN_TOKEN) == "79DkGQOamFg0pc1VmeSZnqrtG20hseu6RCeAc/ET5dw="


def test_v2_worked_example_ignores_query_and_fragment():
    canonical = signatures.v2_canonical(
        "https://dash.example.com/plivo/status/?tenant=7#frag", "05429567804466091622")
    assert canonical == "https://dash.example.com/plivo/status/05429567804466091622"
    assert signatures.sign(canonical, TOKEN) == "04zmW7kUK9KmqVaz5H4ig3Kp+NFVNtkfNoTbxxAqll4="


def test_v3_get_and_query_worked_examples():
    get = signatures.v3_canonical("GET", URL + "?Status=sent&MessageUUID=abc", {}, NONCE)
    assert signatures.sign(get, TOKEN) == "24j0KGymuIYhprJz1atMHdnWkQ8vLhxEMsG17aTUZkE="
    with_query = signatures.v3_canonical("POST", URL + "?tenant=7&a=b", FORM, NONCE)
    assert with_query.startswith("https://dash.example.com/plivo/status/?a=b&tenant=7.ErrorCode")
    assert signatures.v3_canonical("POST", URL, {}, NONCE) == URL + "." + NONCE


def test_valid_v3():
    sig = signatures.sign(signatures.v3_canonical("POST", URL, FORM, NONCE), TOKEN)
    verdict = signatures.verify("POST", URL, FORM, v3_headers(sig), TOKEN)
    assert verdict.valid and verdict.scheme == "v3"


def test_valid_ma_v3_needs_the_main_token():
    sig = signatures.sign(signatures.v3_canonical("POST", URL, FORM, NONCE), MAIN_TOKEN)
    headers = v3_headers(sig, header="X-Plivo-Signature-Ma-V3")
    assert signatures.verify("POST", URL, FORM, headers, TOKEN, MAIN_TOKEN).scheme == "ma-v3"
    assert not signatures.verify("POST", URL, FORM, headers, TOKEN, None).valid


def test_v3_header_with_several_signatures():
    sig = signatures.sign(signatures.v3_canonical("POST", URL, FORM, NONCE), TOKEN)
    assert signatures.verify("POST", URL, FORM, v3_headers(f"bm90IGl0,{sig}"), TOKEN).valid


@pytest.mark.parametrize(("name", "method", "url", "form", "token"), [
    ("wrong token", "POST", URL, FORM, "another-token"),
    ("one parameter altered", "POST", URL, {**FORM, "Status": "failed"}, TOKEN),
    ("parameter added", "POST", URL, {**FORM, "Extra": "1"}, TOKEN),
    ("http instead of https", "POST", URL.replace("https", "http"), FORM, TOKEN),
    ("explicit port", "POST", URL.replace(".com/", ".com:443/"), FORM, TOKEN),
    ("missing trailing slash", "POST", URL.rstrip("/"), FORM, TOKEN),
    ("query string added", "POST", URL + "?x=1", FORM, TOKEN),
    ("GET instead of POST", "GET", URL, FORM, TOKEN),
])
def test_v3_refuses_any_change(name, method, url, form, token):
    sig = signatures.sign(signatures.v3_canonical("POST", URL, FORM, NONCE), TOKEN)
    verdict = signatures.verify(method, url, form, v3_headers(sig), token)
    assert not verdict.valid, name


def test_v2_only_is_accepted_when_no_v3_header_is_present():
    sig = signatures.sign(signatures.v2_canonical(URL, NONCE), TOKEN)
    headers = {"X-Plivo-Signature-V2": sig, "X-Plivo-Signature-V2-Nonce": NONCE}
    verdict = signatures.verify("POST", URL, FORM, headers, TOKEN)
    assert verdict.valid and verdict.scheme == "v2"


def test_invalid_v3_is_never_retried_as_v2():
    v2 = signatures.sign(signatures.v2_canonical(URL, NONCE), TOKEN)
    headers = {"X-Plivo-Signature-V3": "Zm9yZ2Vk", "X-Plivo-Signature-V3-Nonce": NONCE,
               "X-Plivo-Signature-V2": v2, "X-Plivo-Signature-V2-Nonce": NONCE}
    verdict = signatures.verify("POST", URL, FORM, headers, TOKEN)
    assert not verdict.valid and verdict.scheme == "invalid"


def test_missing_headers_and_missing_nonce():
    assert signatures.verify("POST", URL, FORM, {}, TOKEN).scheme == "missing"
    sig = signatures.sign(signatures.v3_canonical("POST", URL, FORM, NONCE), TOKEN)
    assert not signatures.verify("POST", URL, FORM, {"X-Plivo-Signature-V3": sig}, TOKEN).valid


text = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=12)


@given(form=st.dictionaries(st.from_regex(r"[A-Za-z]{1,10}", fullmatch=True), text,
                            max_size=8),
       nonce=st.from_regex(r"[0-9]{20}", fullmatch=True),
       query=st.sampled_from(["", "?a=b", "?tenant=7&a=b"]))
def test_our_v3_agrees_with_the_sdk(form, nonce, query):
    url = URL + query
    ours = signatures.sign(signatures.v3_canonical("POST", url, form, nonce), TOKEN)
    assert validate_v3_signature("POST", url, nonce, TOKEN, ours, form)


def test_our_v2_agrees_with_the_sdk():
    sig = signatures.sign(signatures.v2_canonical(URL, NONCE), TOKEN)
    assert validate_signature(URL, NONCE, sig, TOKEN)
