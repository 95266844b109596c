"""The media probe: SSRF refusals with no connection made, and a real loopback media server."""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import select

from tests.conftest import csrf_token
from tests.helpers import url
from webapp.extensions import db
from webapp.models import Message
from webapp.sending.probe import MediaRefused, check_media, probe_media_url, system_resolver

KB = 1024


class CountingListener:
    """A TCP listener that only counts connections: the SSRF targets point here."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[CountingListener]:
    server = CountingListener()
    yield server
    server.close()


def fake_dns(host: str, port: int) -> list[str]:
    """Names that resolve to private addresses, as a hostile DNS would answer."""
    table = {
        "internal.corp.example": ["10.1.2.3"],
        "rebind.example": ["93.184.216.34", "127.0.0.1"],
        "metadata.example": ["169.254.169.254"],
        "v6-local.example": ["fd12:3456::1"],
        "nat64.example": ["64:ff9b::7f00:1"],
        "public.example": ["93.184.216.34"],
    }
    return table[host] if host in table else system_resolver(host, port)


SSRF_URLS = [
    "https://127.0.0.1:{port}/a.jpg", "https://2130706433:{port}/a.jpg",
    "https://0x7f000001:{port}/a.jpg", "https://017700000001:{port}/a.jpg",
    "https://127.1:{port}/a.jpg", "https://0177.0.0.1:{port}/a.jpg",
    "https://0.0.0.0:{port}/a.jpg", "https://[::1]:{port}/a.jpg",
    "https://[::ffff:127.0.0.1]:{port}/a.jpg", "https://[::ffff:7f00:1]:{port}/a.jpg",
    "https://[::]:{port}/a.jpg", "https://localhost:{port}/a.jpg",
    "https://LOCALHOST.:{port}/a.jpg", "https://169.254.169.254/latest/meta-data/",
    "https://10.0.0.1/a.jpg", "https://172.16.0.1/a.jpg", "https://192.168.1.1/a.jpg",
    "https://100.64.0.1/a.jpg", "https://198.18.0.1/a.jpg", "https://192.0.2.1/a.jpg",
    "https://224.0.0.1/a.jpg", "https://255.255.255.255/a.jpg", "https://[fc00::1]/a.jpg",
    "https://[fe80::1]/a.jpg", "https://[2002:7f00:1::]/a.jpg", "https://[ff02::1]/a.jpg",
    "https://internal.corp.example/a.jpg", "https://rebind.example/a.jpg",
    "https://metadata.example/a.jpg", "https://v6-local.example/a.jpg",
    "http://public.example/a.jpg", "https://user:pass@public.example/a.jpg",
    "ftp://public.example/a.jpg", "https://public.example:99999/a.jpg",
    # IPv4 hidden in IPv6, which a NAT64 or SIIT translator on the way would reach
    # (169.254.169.254 through NAT64 once reached a listener).
    "https://[64:ff9b::7f00:1]:{port}/a.jpg", "https://[64:ff9b::a9fe:a9fe]/a.jpg",
    "https://[64:ff9b:1::a00:1]/a.jpg", "https://[::7f00:1]:{port}/a.jpg",
    "https://[::ffff:0:7f00:1]:{port}/a.jpg", "https://[::ffff:0:a9fe:a9fe]/a.jpg",
    "https://[2002:a9fe:a9fe::1]/a.jpg", "https://[2001:0:4136:e378:8000:63bf:80ff:fffe]/a.jpg",
    "https://nat64.example:{port}/a.jpg",
]


@pytest.mark.parametrize("template", SSRF_URLS)
def test_ssrf_targets_are_refused_without_connecting(listener, template):
    url = template.format(port=listener.port)
    with pytest.raises(MediaRefused):
        probe_media_url(url, resolver=fake_dns, timeout=0.5)
    assert listener.connections == 0


@pytest.mark.parametrize(("address", "public"), [
    ("64:ff9b::808:808", True), ("64:ff9b::a9fe:a9fe", False), ("64:ff9b:1::808:808", False),
    ("2002:808:808::1", True), ("2002:c0a8:101::1", False), ("::ffff:8.8.8.8", False),
    ("::808:808", False), ("2001:0:4136:e378:8000:63bf:3fff:fdd2", False),
    ("2606:4700:4700::1111", True), ("8.8.8.8", True), ("192.0.0.9", False),
    ("192.31.196.1", False), ("100.100.100.100", False), ("fe80::1%eth0", False),
])
def test_which_addresses_count_as_the_public_internet(address, public):
    """Our own table of special ranges, not Python 3.11's is_global alone (CVE-2024-4032),
    and every IPv4 address an IPv6 one carries checked again."""
    from webapp.sending.public_addresses import is_public

    assert is_public(address) is public


def test_the_probe_has_one_deadline_for_a_server_that_answers_a_byte_at_a_time():
    """A read timeout alone let a server sending one header byte every 0.5 s hold a
    compose request for 20 s with a 1-second setting."""
    import time

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    host = f"127.0.0.1:{server.getsockname()[1]}"
    stop = threading.Event()

    def trickle() -> None:
        conn, _ = server.accept()
        with conn:
            for byte in b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\n" * 20:
                if stop.wait(0.5):
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return

    threading.Thread(target=trickle, daemon=True).start()
    started = time.monotonic()
    try:
        with pytest.raises(MediaRefused, match="took longer than 1 s"):
            probe_media_url(f"http://{host}/slow.jpg", allow_hosts=frozenset({host}),
                            timeout=1.0)
        assert time.monotonic() - started < 5  # the deadline, not 20 s of trickle
    finally:
        stop.set()
        server.close()


def test_a_slow_dns_answer_counts_against_the_deadline():
    import time

    def slow_dns(host: str, port: int) -> list[str]:
        time.sleep(3)
        return ["93.184.216.34"]

    with pytest.raises(MediaRefused, match="took longer"):
        probe_media_url("https://slow.example/a.jpg", resolver=slow_dns, timeout=0.5)


# ---- a real media server on loopback ---------------------------------------------------------
class MediaHandler(BaseHTTPRequestHandler):
    routes = {
        "/ok.jpg": (200, {"Content-Type": "image/jpeg", "Content-Length": str(40 * KB)}),
        "/warn.jpg": (200, {"Content-Type": "image/jpeg", "Content-Length": str(700 * KB)}),
        "/clip.mp4": (200, {"Content-Type": "video/mp4", "Content-Length": str(100 * KB)}),
        "/big.jpg": (200, {"Content-Type": "image/jpeg", "Content-Length": str(3 * 1024 * KB)}),
        "/page.html": (200, {"Content-Type": "text/html", "Content-Length": "100"}),
        "/notype": (200, {"Content-Length": "100"}),
        "/nolength.png": (200, {"Content-Type": "image/png"}),
        # A Unicode digit and a 5,000-digit length: "²".isdigit() is true and int() of
        # either raises; both once gave HTTP 500 on compose.
        "/superscript.png": (200, {"Content-Type": "image/png", "Content-Length": "\u00b2"}),
        "/huge-length.png": (200, {"Content-Type": "image/png", "Content-Length": "9" * 5000}),
        "/negative.png": (200, {"Content-Type": "image/png", "Content-Length": "-5"}),
        "/missing.jpg": (404, {"Content-Type": "text/plain", "Content-Length": "0"}),
        "/to-ok": (302, {"Location": "/ok.jpg", "Content-Length": "0"}),
        "/to-private": (302, {"Location": "https://10.0.0.1/a.jpg", "Content-Length": "0"}),
        "/loop": (302, {"Location": "/loop", "Content-Length": "0"}),
    }

    def log_message(self, *args) -> None:
        pass

    def _answer(self, with_body: bool) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/head405.png":
            if self.command == "HEAD":
                self.send_response(405)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Range", f"bytes 0-0/{50 * KB}")
            self.send_header("Content-Length", "1")
            self.end_headers()
            self.wfile.write(b"x")
            return
        status, headers = self.routes.get(path, (404, {"Content-Length": "0"}))
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()

    def do_HEAD(self) -> None:
        self._answer(False)

    def do_GET(self) -> None:
        self._answer(True)


@pytest.fixture
def media_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), MediaHandler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield f"127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def probe(host: str, path: str):
    return probe_media_url(f"http://{host}{path}", allow_hosts=frozenset({host}), timeout=2)


def test_probe_accepts_media_with_type_and_length(media_server):
    result = probe(media_server, "/ok.jpg")
    assert (result.content_type, result.size, result.warnings) == ("image/jpeg", 40 * KB, ())


def test_probe_falls_back_to_a_ranged_get(media_server):
    assert probe(media_server, "/head405.png").size == 50 * KB


def test_probe_follows_a_redirect(media_server):
    assert probe(media_server, "/to-ok").content_type == "image/jpeg"


def test_probe_warns_above_carrier_guidance_and_for_unformatted_types(media_server):
    assert "600 KB" in probe(media_server, "/warn.jpg").warnings[0]
    assert "only JPEG, PNG and GIF" in probe(media_server, "/clip.mp4").warnings[0]


@pytest.mark.parametrize(("path", "reason"), [
    ("/big.jpg", "2 MB per file"),
    ("/page.html", "text/html cannot be sent"),
    ("/notype", "no Content-Type"),
    ("/nolength.png", "no Content-Length"),
    ("/superscript.png", "not a number of bytes"),
    ("/huge-length.png", "not a number of bytes"),
    ("/negative.png", "not a number of bytes"),
    ("/missing.jpg", "error (404)"),
    ("/to-private", "not on the public internet"),
    ("/loop", "redirects more than 3 times"),
])
def test_probe_refuses_bad_media(media_server, path, reason):
    with pytest.raises(MediaRefused, match=re.escape(reason)):
        probe(media_server, path)


def test_total_size_over_five_megabytes_is_refused(media_server):
    items = [{"url": f"http://{media_server}/ok.jpg?{i}"} for i in range(2)]
    media, _, errors = check_media(items, enabled=True, allow_hosts=frozenset({media_server}),
                                   timeout=2)
    assert not errors and [m["size"] for m in media] == [40 * KB, 40 * KB]
    big = [{"url": f"http://{media_server}/warn.jpg?{i}"} for i in range(8)]
    _, warnings, errors = check_media(big, enabled=True, allow_hosts=frozenset({media_server}),
                                      timeout=2)
    assert any("under 5 MB" in e for e in errors) and warnings


def test_compose_with_probe_on_refuses_and_accepts(make_app, media_server):
    app = make_app(MEDIA_PROBE="on", MEDIA_PROBE_ALLOW_HOSTS=media_server)
    client = app.test_client()
    with app.app_context():
        from webapp.auth.service import create_user

        create_user("amy@example.com", "correct horse battery staple")
    from tests.conftest import login

    login(client, "amy@example.com")

    def send(media: list[str]):
        page = client.get(url("sending.compose")).get_data(as_text=True)
        key = re.search(r'name="idempotency_key" type="hidden" value="([^"]+)"', page).group(1)
        return client.post(url("sending.compose"), data={
            "csrf_token": csrf_token(client, url("sending.compose")), "idempotency_key": key,
            "sender": "+14155550100", "recipients": "(415) 555-0123", "media": media})

    refused = send([f"http://{media_server}/ok.jpg", f"http://{media_server}/nolength.png"])
    assert refused.status_code == 400
    page = refused.get_data(as_text=True)
    # the bad row alone is marked, with its own message next to it
    assert re.search(r'id="media-2-error" class="field-error row-error">The address does '
                     r'not say how large', page)
    assert 'id="media-2" value="http://' in page and page.count('aria-invalid="true"') == 1
    assert 'id="media-1-error"' not in page
    for odd in ("/superscript.png", "/huge-length.png"):
        answer = send([f"http://{media_server}{odd}"])
        assert answer.status_code == 400, odd
        assert "not a number of bytes" in answer.get_data(as_text=True)
    accepted = send([f"http://{media_server}/ok.jpg"])
    assert accepted.status_code == 303
    with app.app_context():
        row = db.session.scalars(select(Message)).one()
        assert row.media == [{"url": f"http://{media_server}/ok.jpg",
                              "content_type": "image/jpeg", "size": 40 * KB}]
