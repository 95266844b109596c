"""The only module that imports the Plivo SDK.

It turns every outcome of a send into one of our own: a uuid (accepted), or
`PlivoRejected` (4xx: Plivo refused, never retry), `PlivoRetryable` (Plivo
cannot have acted: connect error, 429, 500/502/503/504), `PlivoAmbiguous`
(the request may have been acted on: read timeout, empty answer).
See PLIVO.md sections 1.5, 1.6 and 7 for the SDK quirks handled here.
"""

from __future__ import annotations

import io
import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import plivo
import plivo.exceptions
import plivo.rest.client
import requests
import urllib3.exceptions

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})


class GatewayError(Exception):
    """Base of the send outcomes other than success."""

    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class PlivoRejected(GatewayError):
    """Plivo refused the request (4xx). Resending the same request cannot help."""


class PlivoRetryable(GatewayError):
    """Plivo cannot have acted on the request; it is safe to send again."""

    def __init__(self, reason: str, status: int | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(reason, status)
        self.retry_after = retry_after


class PlivoAccountRefused(GatewayError):
    """Plivo refuses the account itself, not this message: credentials (401, or 403 for
    anything but geo permissions) or no credit. No message can go until someone fixes
    it; sending another changes nothing (messages.circuit pauses them all)."""

    def __init__(self, reason: str, status: int | None = None,
                 kind: str = "credentials") -> None:
        super().__init__(reason, status)
        self.kind = kind


class PlivoAmbiguous(GatewayError):
    """The request may have reached Plivo; resending could send twice."""


@dataclass(frozen=True)
class GatewayConfig:
    auth_id: str
    auth_token: str
    api_url: str
    connect_timeout: float = 3.0
    read_timeout: float = 10.0

    @classmethod
    def from_settings(cls, settings) -> GatewayConfig:
        """From the app's Settings (its plivo_* fields)."""
        return cls(auth_id=settings.plivo_auth_id, auth_token=settings.plivo_auth_token,
                   api_url=settings.plivo_api_url,
                   connect_timeout=settings.plivo_connect_timeout_seconds,
                   read_timeout=settings.plivo_read_timeout_seconds)


@dataclass(frozen=True)
class PlivoMessage:
    """What Plivo's Message API says of a message now."""

    uuid: str
    state: str  # queued, sent, delivered, undelivered, failed, rejected, read, ...
    error_code: str | None
    units: str = ""
    total_amount: str = ""
    message_time: str = ""  # when Plivo received it, "2026-12-01 10:42:07+00:00"
    direction: str = "outbound"
    from_number: str = ""
    to_number: str = ""


_local = threading.local()


def _client(config: GatewayConfig) -> tuple[plivo.RestClient, threading.local]:
    """One SDK client per thread (requests sessions are not thread-safe)."""
    if getattr(_local, "config", None) != config:
        # The SDK resets client.base_uri from this module global on every JSON
        # request, so the global is the only switch that holds (PLIVO.md section 7).
        plivo.rest.client.PLIVO_API_BASE_URI = config.api_url.rstrip("/") + "/v1/Account"
        client = plivo.RestClient(config.auth_id, config.auth_token,
                                  timeout=(config.connect_timeout, config.read_timeout))
        # The SDK discards the HTTP status and headers of 429/5xx answers; this
        # hook keeps the last response so we can tell them apart.
        client.session.hooks["response"].append(_remember_response)
        client.multipart_session.hooks["response"].append(_remember_response)
        _local.client, _local.config = client, config
    _local.last_response = None
    return _local.client, _local


def warm_up(config: GatewayConfig) -> None:
    """Build this thread's SDK client now (building it takes a while)."""
    _client(config)


def _remember_response(response: requests.Response, *args, **kwargs) -> None:
    _local.last_response = response


def _retry_after(response: requests.Response | None) -> float | None:
    value = response.headers.get("Retry-After") if response is not None else None
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
        except (TypeError, ValueError):
            return None


def _connection_never_made(exc: requests.ConnectionError) -> bool:
    if isinstance(exc, requests.ConnectTimeout):
        return True
    cause = exc.args[0] if exc.args else None
    reason = getattr(cause, "reason", cause)
    return isinstance(reason, urllib3.exceptions.NewConnectionError | ConnectionRefusedError)


def send_mms(config: GatewayConfig, *, src: str | None, dst: str, text: str,
             media_urls: list[str], media_ids: list[str], callback_url: str,
             expiry_seconds: int | None = None, powerpack_uuid: str | None = None) -> str:
    """Send one MMS to one destination; return Plivo's message uuid. With no media at all
    (a typed answer in a conversation, the answer to HELP) it goes as an SMS.

    `powerpack_uuid` in place of `src`: Plivo picks the number of the Powerpack (the SDK
    refuses both). `expiry_seconds`: how long it may wait in Plivo's queue before failing with error 420
    (Plivo's `message_expiry`, 5-10,799; its default is 3 hours).

    `src` and `dst` are E.164. `dst` is always a single number: the SDK turns a
    list into the literal string "['a', 'b']" (PLIVO.md section 1.5).
    """
    client, state = _client(config)
    try:
        response = client.messages.create(
            src=None if powerpack_uuid else src.lstrip("+"),
            powerpack_uuid=powerpack_uuid,
            dst=dst.lstrip("+"),
            text=text or None,
            type_="mms" if media_urls or media_ids else "sms",
            media_urls=list(media_urls) or None,
            media_ids=list(media_ids) or None,
            url=callback_url,
            method="POST",
            message_expiry=expiry_seconds,
        )
    except requests.ReadTimeout as exc:
        raise PlivoAmbiguous("Plivo did not answer in time; the message may have been sent."
                             ) from exc
    except requests.ConnectionError as exc:
        if _connection_never_made(exc):
            raise PlivoRetryable("Could not connect to Plivo.") from exc
        raise PlivoAmbiguous("The connection to Plivo broke after the request was sent."
                             ) from exc
    except plivo.exceptions.PlivoRestError as exc:
        raise _classify(exc, state.last_response) from exc
    if response is None:
        # A 2xx with an empty body: Plivo took the request but we have no uuid.
        raise PlivoAmbiguous("Plivo accepted the request but sent no message id.")
    uuids = list(getattr(response, "message_uuid", None) or [])
    invalid = list(getattr(response, "invalid_number", None) or [])
    if not uuids:
        reason = f"Plivo refused the number {invalid[0]}." if invalid else "Plivo sent no id."
        raise PlivoRejected(reason, status=state.last_response and state.last_response.status_code)
    return str(uuids[0])


def upload_media(config: GatewayConfig, *, name: str, content_type: str, data: bytes) -> str:
    """Upload one file to Plivo's Media API (POST /Media/, multipart field `file`); return
    its media id, for send_mms's media_ids.

    Through the SDK's own multipart request, not `client.media.upload`: that one only takes
    local paths, prints each to stdout and never closes the files (PLIVO.md section 2).
    An upload that may or may not have arrived is simply made again (Plivo deletes unsent
    media after 6 hours), so a broken connection is PlivoRetryable here."""
    client, state = _client(config)
    # The multipart request uses the client's base_uri as it stands (PLIVO.md section 7).
    client.base_uri = plivo.rest.client.PLIVO_API_BASE_URI
    try:
        response = client.request("POST", ("Media",), {},
                                  files=[("file", (name, io.BytesIO(data), content_type))])
    except requests.RequestException as exc:
        raise PlivoRetryable("Could not upload the file to Plivo.") from exc
    except plivo.exceptions.PlivoRestError as exc:
        raise _classify(exc, state.last_response) from exc
    objects = list(getattr(response, "objects", None) or [])
    if not objects:
        raise PlivoRetryable("Plivo's Media API answered without the uploaded file.")
    item = objects[0]
    get = item.get if isinstance(item, dict) else (lambda key, default=None:
                                                   getattr(item, key, default))
    media_id = str(get("media_id", "") or "")
    code = int(get("status_code", 201) or 201)
    if not media_id or code >= 400:
        reason = str(get("status", "") or "refused")
        raise PlivoRejected(f"Plivo refused the file {name}: {reason}", code)
    return media_id


def get_message(config: GatewayConfig, plivo_uuid: str) -> PlivoMessage:
    """Plivo's current record of one message (GET /Message/{uuid}/). Raises
    PlivoRetryable when Plivo could not answer, PlivoRejected for a 4xx (404 included)."""
    client, state = _client(config)
    try:
        message = client.messages.get(plivo_uuid)
    except requests.RequestException as exc:  # a lookup changes nothing: always safe to repeat
        raise PlivoRetryable("Could not reach Plivo's Message API.") from exc
    except plivo.exceptions.PlivoRestError as exc:
        raise _classify(exc, state.last_response) from exc
    return _plivo_message(message, plivo_uuid)


def _plivo_message(message, plivo_uuid: str = "") -> PlivoMessage:
    code = str(getattr(message, "error_code", "") or "")
    return PlivoMessage(uuid=str(getattr(message, "message_uuid", plivo_uuid)),
                        state=str(getattr(message, "message_state", "") or "").lower(),
                        error_code=code if code not in ("", "000", "0") else None,
                        units=str(getattr(message, "units", "") or ""),
                        total_amount=str(getattr(message, "total_amount", "") or ""),
                        message_time=str(getattr(message, "message_time", "") or ""),
                        direction=str(getattr(message, "message_direction", "") or ""),
                        from_number=str(getattr(message, "from_number", "") or ""),
                        to_number=str(getattr(message, "to_number", "") or ""))


def list_messages(config: GatewayConfig, *, src: str | None, dst: str, after: datetime,
                  before: datetime) -> list[PlivoMessage]:
    """Plivo's outbound messages from `src` to `dst` received between two instants
    (GET /Message/, at most 20: the list API allows 20 requests a minute). For a send
    whose answer never came: did Plivo get it?

    The SDK turns every error answer of this endpoint into a TypeError (PLIVO.md 1.8):
    the HTTP status is read from the response itself."""
    client, state = _client(config)
    state.last_response = None
    stamp = "%Y-%m-%d %H:%M:%S"
    numbers = {"to_number": dst.lstrip("+")}
    if src:  # None: sent through a Powerpack, from a number Plivo chose
        numbers["from_number"] = src.lstrip("+")
    try:
        found = client.messages.list(
            message_direction="outbound", **numbers,
            message_time__gte=after.astimezone(UTC).strftime(stamp),
            message_time__lte=before.astimezone(UTC).strftime(stamp), limit=20)
    except requests.RequestException as exc:  # a lookup changes nothing: safe to repeat
        raise PlivoRetryable("Could not reach Plivo's Message API.") from exc
    except plivo.exceptions.PlivoRestError as exc:
        raise _classify(exc, state.last_response) from exc
    except TypeError as exc:
        response = state.last_response
        if response is None or response.status_code < 400:
            raise
        try:
            text = str(response.json().get("error") or response.text[:200])
        except (ValueError, AttributeError):
            text = response.text[:200]
        raise _classify(plivo.exceptions.PlivoRestError(text), response) from exc
    return [_plivo_message(item) for item in found or []]


@dataclass(frozen=True)
class PlivoNumber:
    """What Plivo's Number API says of one of the account's numbers (PLIVO.md 7a.2)."""

    number: str
    number_type: str  # local, tollfree, mobile, ...; "" when Plivo does not say
    country: str
    registration: str  # 10DLC registration status (US long codes)
    verification: str  # toll-free verification status
    mms_enabled: bool | None


def get_number(config: GatewayConfig, number: str) -> PlivoNumber:
    """GET /Number/{number}/: the number's type and registration. PlivoRejected for a 4xx
    (404: not a number of this account), PlivoRetryable when Plivo could not answer."""
    client, state = _client(config)
    try:
        found = client.numbers.get(number.lstrip("+"))
    except requests.RequestException as exc:
        raise PlivoRetryable("Could not reach Plivo's Number API.") from exc
    except plivo.exceptions.PlivoRestError as exc:
        raise _classify(exc, state.last_response) from exc

    def field(name: str) -> str:
        return str(getattr(found, name, "") or "")

    mms = getattr(found, "mms_enabled", None)
    return PlivoNumber(number=number, number_type=field("number_type").lower(),
                       country=field("country"),
                       registration=field("tendlc_registration_status"),
                       verification=field("toll_free_sms_verification"),
                       mms_enabled=None if mms is None else bool(mms))


def _classify(exc: plivo.exceptions.PlivoRestError, response: requests.Response | None
              ) -> GatewayError:
    reason = exc.args[0] if exc.args else str(exc)
    if isinstance(reason, list):  # client-side validation: a list of strings
        return PlivoRejected("; ".join(map(str, reason)))
    status = response.status_code if response is not None else None
    if status is None:
        # The SDK raised before sending anything (argument validation, credentials).
        return PlivoRejected(str(reason))
    if status in RETRYABLE_STATUSES:
        return PlivoRetryable(f"Plivo answered {status}.", status, _retry_after(response))
    # The SDK calls every 403 on POST /Message/ a GeoPermissionError (PLIVO.md 1.4): only
    # the text tells a country this account may not reach from an account refused.
    if status in (401, 403) and not _GEO_PERMISSIONS.search(str(reason)):
        return PlivoAccountRefused(f"Plivo refused our credentials ({status}: {reason})",
                                   status, "credentials")
    if 400 <= status < 500 and _NO_CREDIT.search(str(reason)):
        return PlivoAccountRefused(f"Plivo says the account has no credit ({reason})", status,
                                   "credit")
    return PlivoRejected(str(reason), status)


_GEO_PERMISSIONS = re.compile(r"geo", re.IGNORECASE)
_NO_CREDIT = re.compile(r"insufficient (credit|balance|fund)", re.IGNORECASE)
