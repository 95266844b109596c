"""The browser suite: real processes on loopback, real headless Chromium.

The dashboard (gunicorn), a task-queue worker and the Plivo simulator run as
separate processes for the session, with a loopback media server the probe is
told to let through. Chromium is Debian's (/usr/bin/chromium): Playwright
cannot download its own browsers here.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import sys
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.services import dashboard_processes, require_suite

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts" / "e2e"
AXE = Path(__file__).parent / "vendor" / "axe.min.js"


def pytest_collection_modifyitems(config, items):
    require_suite(Path(CHROMIUM).exists(),
                  f"Chromium not found at {CHROMIUM}: the browser suite did not run. Install it "
                  "with scripts/install-test-deps.sh (Debian package chromium).", items, "e2e")


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run", "--disable-sync",
                  "--disable-quic"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh browser profile (context) per test."""
    context = browser.new_context(accept_downloads=True)
    context.set_default_timeout(10_000)
    new_page = context.new_page()
    yield new_page
    context.close()


def png(red: int, green: int, blue: int, size: int = 48) -> bytes:
    """A small solid-colour PNG, made here so the suite ships no binaries."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    row = b"\x00" + bytes((red, green, blue)) * size
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(row * size)) + chunk(b"IEND", b""))


IMAGES = {"/red.png": png(200, 30, 30), "/blue.png": png(30, 60, 200)}


class MediaHandler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass

    def _send(self, body: bool) -> None:
        data = IMAGES.get(self.path.split("?")[0])
        if data is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body:
            self.wfile.write(data)

    def do_HEAD(self) -> None:
        self._send(False)

    def do_GET(self) -> None:
        self._send(True)


@dataclass
class Stack:
    url: str
    admin_email: str
    admin_password: str
    media: str  # http://127.0.0.1:PORT
    settings: dict  # the dashboard's environment: a test may open its database too
    env: dict  # the whole environment its processes run with: a test may run `flask` too


@pytest.fixture(scope="session")
def stack(tmp_path_factory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("e2e-stack")
    media_server = ThreadingHTTPServer(("127.0.0.1", 0), MediaHandler)
    threading.Thread(target=media_server.serve_forever, args=(0.05,), daemon=True).start()
    media_host = f"127.0.0.1:{media_server.server_port}"
    settings = {
        "APP_ENV": "testing", "BCRYPT_ROUNDS": "4",
        "SECRET_KEY": "e2e-" + "k" * 40,  # shared by every gunicorn worker
        "DATABASE_URL": f"sqlite:///{tmp}/e2e.sqlite3",
        "TASK_QUEUE_URL": f"sqlite:///{tmp}/tasks.sqlite3",
        "MEDIA_PROBE": "on", "MEDIA_PROBE_ALLOW_HOSTS": media_host,
        "PLIVO_READ_TIMEOUT_SECONDS": "2", "LOG_LEVEL": "warning",
        "QUEUE_SWEEP_SECONDS": "3",  # the overview's figures within seconds
    }
    try:
        with dashboard_processes(settings, tmp) as dashboard:
            dashboard.flask("db", "upgrade", check=True)
            printed = dashboard.flask("users", "bootstrap", check=True).stdout
            email = re.search(r"email:\s+(\S+)", printed).group(1)
            password = re.search(r"password:\s+(\S+)", printed).group(1)
            dashboard.start_simulator("--callback-delay", "0.4")
            dashboard.start_worker(threads=4)
            dashboard.start_web("--workers", "2")
            yield Stack(url=dashboard.url, admin_email=email, admin_password=password,
                        media=f"http://{media_host}", settings={**settings, "INSTANCE_PATH": str(tmp)},
                        env=dict(dashboard.env))
    finally:
        media_server.shutdown()
        media_server.server_close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    page = item.funcargs.get("page")
    if page is None:
        return
    folder = ARTIFACTS / re.sub(r"[^A-Za-z0-9_.-]+", "_", item.name)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        page.screenshot(path=str(folder / "page.png"), full_page=True)
        (folder / "page.html").write_text(page.content())
    except Exception as exc:  # the page may be gone; say so instead of hiding the failure
        (folder / "error.txt").write_text(repr(exc))
    report.sections.append(("e2e artifacts", f"screenshot and HTML written to {folder}"))
    print(f"\nE2E ARTIFACTS: {folder}", file=sys.stderr)


@pytest.fixture(scope="session")
def staff_account(stack, browser):
    """The admin signs in with the printed credentials, is made to choose a password of
    their own before anything else, and creates a staff account; the staff member signs
    in with the password the admin gave and chooses their own."""
    from playwright.sync_api import expect

    from tests.e2e.actions import (
        ADMIN_PASSWORD,
        STAFF_EMAIL,
        STAFF_PASSWORD,
        first_sign_in,
        log_out,
        nav,
    )
    from tests.helpers import url

    context = browser.new_context()
    page = context.new_page()
    page.goto(stack.url + url("auth.login"))
    page.get_by_label("Email").fill(stack.admin_email)
    page.get_by_label("Password").fill(stack.admin_password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text("Choose your own password first")).to_be_visible()
    page.goto(stack.url + url("history.history"))  # nothing else opens until then
    expect(page.get_by_text("Choose your own password first")).to_be_visible()
    page.locator("#current_password").fill(stack.admin_password)
    page.locator("#new_password").fill(ADMIN_PASSWORD)
    page.locator("#confirm").fill(ADMIN_PASSWORD)
    page.get_by_role("button", name="Change password").click()
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    stack.admin_password = ADMIN_PASSWORD
    nav(page, "Staff accounts")
    page.get_by_label("Email").fill(STAFF_EMAIL)
    page.get_by_label("Role").select_option("staff")
    page.get_by_label("Initial password").fill("from the admin, seen by the admin")
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_text(f"Account created for {STAFF_EMAIL}")).to_be_visible()
    expect(page.get_by_role("cell", name=STAFF_EMAIL, exact=True)).to_be_visible()
    log_out(page)
    first_sign_in(page, stack, STAFF_EMAIL, "from the admin, seen by the admin", STAFF_PASSWORD)
    log_out(page)
    context.close()
    return STAFF_EMAIL
