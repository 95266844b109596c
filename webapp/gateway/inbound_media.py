"""A customer's picture, fetched from Plivo (an inbound MMS carries media URLs, not bytes).

Only Plivo's own hosts are fetched (https, plivo.com and its subdomains), or the host of
PLIVO_API_URL itself when that points at a simulator: a reply's body cannot send the
worker anywhere else, so it cannot be pointed at our own network. The account's
credentials go to the API's host only (Plivo's media API asks for them); redirects are
followed to allowed hosts only; bytes are counted as they arrive and the download stops
at the cap (Plivo: an inbound MMS is under 7 MB in all).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import requests

from webapp.gateway.client import GatewayConfig

MAX_REDIRECTS = 3
CHUNK = 64 * 1024


class MediaUnavailable(Exception):
    """The picture could not be fetched; the message says why in plain words."""


@dataclass(frozen=True)
class Fetched:
    data: bytes
    content_type: str


def _host(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    try:
        return parts.scheme, (parts.hostname or "").lower(), parts.port
    except ValueError as exc:
        raise MediaUnavailable("The address has an invalid port.") from exc


def allowed(url: str, config: GatewayConfig) -> bool:
    """Plivo's own hosts over https, or exactly the API's own host and port."""
    scheme, host, port = _host(url)
    if (scheme, host, port) == _host(config.api_url)[:3] and host:
        return True
    return scheme == "https" and (host == "plivo.com" or host.endswith(".plivo.com"))


def fetch(url: str, config: GatewayConfig, max_bytes: int) -> Fetched:
    """The bytes at `url`, at most `max_bytes` of them. Raises MediaUnavailable."""
    api_host = _host(config.api_url)[1:]
    for _ in range(MAX_REDIRECTS + 1):
        if not allowed(url, config):
            raise MediaUnavailable("The address is not one of Plivo's; it was not fetched.")
        auth = ((config.auth_id, config.auth_token) if _host(url)[1:] == api_host
                or _host(url)[1] == "api.plivo.com" else None)
        try:
            response = requests.get(url, auth=auth, stream=True, allow_redirects=False,
                                    timeout=(config.connect_timeout, config.read_timeout),
                                    headers={"User-Agent": "mms-dashboard-inbound-media"})
        except requests.RequestException as exc:
            raise MediaUnavailable("Plivo could not be reached for the picture.") from exc
        with response:
            if response.is_redirect:
                url = urljoin(url, response.headers.get("Location") or "")
                continue
            if response.status_code != 200:
                raise MediaUnavailable(f"Plivo answered {response.status_code} for the picture.")
            declared = response.headers.get("Content-Length", "")
            if declared.isascii() and declared.isdigit() and len(declared) < 12 and (
                    int(declared) > max_bytes):
                raise MediaUnavailable(f"The picture is over the {max_bytes // 1024:,} KB "
                                       "an inbound MMS may carry.")
            data = bytearray()
            try:
                for chunk in response.iter_content(CHUNK):
                    data += chunk
                    if len(data) > max_bytes:
                        raise MediaUnavailable(f"The picture is over the {max_bytes // 1024:,}"
                                               " KB an inbound MMS may carry.")
            except requests.RequestException as exc:
                raise MediaUnavailable("The picture's download broke off.") from exc
            content_type = (response.headers.get("Content-Type") or "").split(";")[0].strip()
            return Fetched(bytes(data), content_type.lower()[:100])
    raise MediaUnavailable(f"The address redirects more than {MAX_REDIRECTS} times.")
