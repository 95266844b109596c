"""Media URL checks: the probe that cannot be pointed at our own network.

Plivo fetches each media URL itself and rejects one whose answer lacks
Content-Type or Content-Length, or is too large (PLIVO.md section 6.1). We
check first, so the person composing sees the problem at once. The probe
resolves every address of the host, refuses any that is not globally
routable, connects to the checked address itself (so DNS cannot change its
answer in between), and re-checks every redirect.
"""

from __future__ import annotations

import contextlib
import http.client
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FuturesTimeout
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from webapp.messages.limits import MAX_ATTACHMENT_BYTES
from webapp.sending.public_addresses import is_public

MAX_TOTAL_BYTES = 5 * 1024 * 1024  # Plivo: text + media under 5 MB
CARRIER_GUIDANCE_BYTES = 600 * 1024  # the strictest US carrier guidance
MAX_REDIRECTS = 3

# Types Plivo formats for the handset, and the other types its media API lists.
DEVICE_FORMATTED_TYPES = frozenset({"image/jpeg", "image/png", "image/gif"})
ALLOWED_TYPES = DEVICE_FORMATTED_TYPES | {
    "video/mp4", "video/mpeg", "video/3gpp", "video/3gpp2", "audio/mpeg", "audio/mp3",
    "audio/wav", "audio/x-wav", "audio/ogg", "text/vcard", "text/x-vcard", "text/csv",
    "text/plain", "application/pdf",
}

Resolver = Callable[[str, int], Iterable[str]]


class MediaRefused(ValueError):
    """The URL cannot be sent as media; the message says why in plain words."""


@dataclass(frozen=True)
class ProbedMedia:
    url: str
    content_type: str
    size: int
    warnings: tuple[str, ...] = ()


def system_resolver(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise MediaRefused(f"The host {host} could not be found.") from exc
    return [str(info[4][0]) for info in infos]


def _check_url(url: str, allow_hosts: frozenset[str]) -> tuple[str, str, int, bool]:
    parts = urlsplit(url)
    try:
        host, port = parts.hostname, parts.port
    except ValueError as exc:
        raise MediaRefused("The address has an invalid port.") from exc
    if not host:
        raise MediaRefused("The address has no host name.")
    allowed = f"{host}:{port}" in allow_hosts or host in allow_hosts
    if parts.scheme != "https" and not (allowed and parts.scheme == "http"):
        raise MediaRefused("Media addresses must start with https://.")
    if parts.username or parts.password:
        raise MediaRefused("Media addresses must not contain a user name or password.")
    return host, parts.scheme, port or (443 if parts.scheme == "https" else 80), allowed


class _Deadline:
    """The probe of one address, redirects and all, must end by this moment: a read
    timeout alone lets a server that sends one byte every half second hold it forever."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        remaining = self.end - time.monotonic()
        if remaining <= 0:
            raise MediaRefused(f"The address took longer than {self.seconds:g} s to answer.")
        return remaining


# Lookups run here so that a slow DNS answer cannot outlast the deadline.
_lookups = ThreadPoolExecutor(max_workers=8, thread_name_prefix="probe-dns")


def _resolve(resolver: Resolver, host: str, port: int, deadline: _Deadline) -> list[str]:
    future = _lookups.submit(lambda: list(resolver(host, port)))
    try:
        return future.result(timeout=deadline.left())
    except FuturesTimeout:
        deadline.left()  # says how long it took
        raise


def _connect(host: str, port: int, scheme: str, allowed: bool, resolver: Resolver,
             timeout: float, deadline: _Deadline) -> http.client.HTTPConnection:
    addresses = _resolve(resolver, host, port, deadline)
    if not addresses:
        raise MediaRefused(f"The host {host} could not be found.")
    if not allowed:
        for address in addresses:
            if not is_public(address):
                raise MediaRefused(f"The host {host} is not on the public internet.")
    sock = socket.create_connection((addresses[0], port), timeout=min(timeout, deadline.left()))
    if scheme == "https":
        context = ssl.create_default_context()
        sock = context.wrap_socket(sock, server_hostname=host)
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(host, port,
                                                                       timeout=timeout)
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    conn.sock = sock  # the checked address, not a second DNS answer
    return conn


def _cut_off(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)  # a blocked read returns at once


def _request(url: str, method: str, allow_hosts: frozenset[str], resolver: Resolver,
             timeout: float, deadline: _Deadline) -> tuple[str, http.client.HTTPResponse]:
    for _ in range(MAX_REDIRECTS + 1):
        host, scheme, port, allowed = _check_url(url, allow_hosts)
        conn = _connect(host, port, scheme, allowed, resolver, timeout, deadline)
        parts = urlsplit(url)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        headers = {"User-Agent": "mms-dashboard-media-probe", "Accept": "*/*"}
        if method == "GET":
            headers["Range"] = "bytes=0-0"
        watchdog = threading.Timer(deadline.left(), _cut_off, args=(conn.sock,))
        watchdog.start()
        try:
            conn.request(method, path, headers=headers)
            response = conn.getresponse()
            response.read(1024)
        except (OSError, http.client.HTTPException):
            deadline.left()  # cut off by the watchdog: say so
            raise
        finally:
            watchdog.cancel()
            conn.close()
        if response.status in (301, 302, 303, 307, 308):
            location = response.getheader("Location")
            if not location:
                raise MediaRefused("The address redirects nowhere.")
            url = urljoin(url, location)
            continue
        return url, response
    raise MediaRefused(f"The address redirects more than {MAX_REDIRECTS} times.")


# A byte count as HTTP writes one: ASCII digits only (str.isdigit() also takes "²" and
# other Unicode digits, which int() then refuses), and no more than 19 of them (int() of
# thousands of digits is slow, and past 4,300 it raises).
_BYTE_COUNT = re.compile(r"[0-9]{1,19}")


def _byte_count(text: str | None) -> int | None:
    text = (text or "").strip()
    return int(text) if _BYTE_COUNT.fullmatch(text) else None


def _size_of(response: http.client.HTTPResponse) -> int | None:
    content_range = response.getheader("Content-Range", "")
    if response.status == 206 and "/" in content_range:
        return _byte_count(content_range.rsplit("/", 1)[1])
    return _byte_count(response.getheader("Content-Length"))


def probe_media_url(url: str, *, allow_hosts: frozenset[str] = frozenset(),
                    resolver: Resolver = system_resolver, timeout: float = 3.0) -> ProbedMedia:
    """Check that Plivo will be able to fetch `url` as MMS media. `timeout` bounds the
    whole probe: DNS, connections, redirects and headers, HEAD and GET together."""
    deadline = _Deadline(timeout)
    try:
        final_url, response = _request(url, "HEAD", allow_hosts, resolver, timeout, deadline)
        if response.status in (405, 501) or (response.status < 300
                                             and not response.getheader("Content-Length")):
            final_url, response = _request(url, "GET", allow_hosts, resolver, timeout,
                                           deadline)
    except MediaRefused:
        raise
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise MediaRefused("The address could not be reached (it timed out or refused the "
                           "connection).") from exc
    if response.status >= 400:
        raise MediaRefused(f"The address answered with an error ({response.status}).")
    content_type = (response.getheader("Content-Type") or "").split(";")[0].strip().lower()
    size = _size_of(response)
    if not content_type:
        raise MediaRefused("The address does not say what type of file it is (no Content-Type);"
                           " Plivo refuses such media.")
    if size is None:
        if response.getheader("Content-Length"):
            raise MediaRefused("The address gives a size that is not a number of bytes (its "
                               "Content-Length); Plivo refuses such media.")
        raise MediaRefused("The address does not say how large the file is (no Content-Length);"
                           " Plivo refuses such media.")
    if content_type not in ALLOWED_TYPES:
        raise MediaRefused(f"Files of type {content_type} cannot be sent by MMS.")
    if size > MAX_ATTACHMENT_BYTES:
        raise MediaRefused(f"The file is {size / 1024 / 1024:.1f} MB; MMS allows 2 MB per file.")
    warnings = []
    if size > CARRIER_GUIDANCE_BYTES:
        warnings.append(f"{final_url} is {size // 1024} KB: some carriers shrink or drop "
                        "attachments over 600 KB.")
    if content_type not in DEVICE_FORMATTED_TYPES:
        warnings.append(f"{final_url} is {content_type}: only JPEG, PNG and GIF are adapted to "
                        "each phone.")
    return ProbedMedia(url=url, content_type=content_type, size=size, warnings=tuple(warnings))


def check_media(items: list[dict[str, str]], *, enabled: bool, allow_hosts: frozenset[str],
                timeout: float, resolver: Resolver = system_resolver
                ) -> tuple[list[dict], list[str], list[str]]:
    """Probe every URL item at once. Returns (media records, warnings, errors).

    Media ids were uploaded to Plivo already and cannot be probed.
    """
    urls = [item["url"] for item in items if "url" in item]
    results: dict[str, ProbedMedia | MediaRefused] = {}
    if enabled and urls:
        def run(url: str) -> ProbedMedia | MediaRefused:
            try:
                return probe_media_url(url, allow_hosts=allow_hosts, resolver=resolver,
                                       timeout=timeout)
            except MediaRefused as exc:
                return exc

        with ThreadPoolExecutor(max_workers=min(10, len(urls))) as pool:
            results = dict(zip(urls, pool.map(run, urls), strict=True))
    media, warnings, errors = [], [], []
    total = 0
    for number, item in enumerate(items, start=1):
        if "media_id" in item:
            media.append({"media_id": item["media_id"]})
            continue
        if "upload" in item:  # a file staff uploaded, prepared and stored already
            total += int(item.get("size") or 0)
            media.append(item)
            continue
        value = item["url"]
        result = results.get(value)
        if isinstance(result, MediaRefused):
            errors.append(f"Item {number}: {result}")
        elif isinstance(result, ProbedMedia):
            total += result.size
            warnings.extend(result.warnings)
            media.append({"url": value, "content_type": result.content_type,
                          "size": result.size})
        else:
            media.append({"url": value})
    if total > MAX_TOTAL_BYTES:
        errors.append(f"Together the files are {total / 1024 / 1024:.1f} MB; an MMS must stay "
                      "under 5 MB.")
    return media, warnings, errors
