"""What a person does in the browser again and again: sign in and out, compose, and the
accessibility check every page gets; the people the browser suite signs in as."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Page, expect

from tests.e2e.conftest import AXE, Stack
from tests.helpers import url

STAFF_EMAIL = "casey@example.com"
STAFF_PASSWORD = "casey's long passphrase"
ADMIN_PASSWORD = "the first admin's own passphrase"


def log_in(page: Page, stack: Stack, email: str, password: str) -> None:
    page.goto(stack.url + url("auth.login"))
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()


def _phone_menu(page: Page):
    """The "Menu" disclosure when the page is as narrow as a phone (opened), else None."""
    menu = page.locator("header details.phone-menu")
    if not menu.is_visible():
        return None
    if menu.get_attribute("open") is None:
        menu.locator("summary").click()
    return menu


def nav(page: Page, name: str) -> None:
    """Open a page from the menu as a person would: the phone's "Menu" first, or at a
    desk the "Admin" group for an admin page."""
    menu = _phone_menu(page)
    if menu is not None:
        menu.get_by_role("link", name=name, exact=True).click()
        return
    desk = page.locator("header .desk-menu")
    link = desk.get_by_role("link", name=name, exact=True)
    if not link.is_visible():
        desk.locator("details.admin-menu > summary").click()
    link.click()


def log_out(page: Page) -> None:
    menu = _phone_menu(page)
    if menu is None:
        page.locator("details.account-menu summary").click()
        menu = page.locator("details.account-menu")
    menu.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()


def check_accessibility(page: Page) -> None:
    page.evaluate(AXE.read_text())
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    serious = [f"{v['id']}: {v['help']} {[n['target'] for n in v['nodes']]}"
               for v in result["violations"] if v["impact"] in ("serious", "critical")]
    assert not serious, f"{page.url}: {serious}"


def compose(page: Page, stack: Stack, recipients: str, media: list[str], text: str = "") -> None:
    page.goto(stack.url + url("sending.compose"))
    page.get_by_label("To").fill(recipients)
    page.get_by_label("Message").fill(text)
    for i, address in enumerate(media):
        if i:
            page.get_by_role("button", name="Add another item").click()
        page.locator("input[name=media]").nth(i).fill(address)
    page.get_by_role("button", name="Send").click()


# Where every screenshot goes (README: the browser suite's screenshots), and the widths.
SCREENS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screens"
WIDTHS = {"desktop": (1280, 800), "tablet": (768, 1024), "phone": (390, 844)}


def first_sign_in(page: Page, stack: Stack, email: str, given: str, own: str) -> None:
    """A person signs in with the password an admin gave them and, before anything else,
    chooses their own (the admin has seen the first one)."""
    page.goto(stack.url + url("auth.login"))
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(given)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text("Choose your own password first")).to_be_visible()
    page.locator("#current_password").fill(given)
    page.locator("#new_password").fill(own)
    page.locator("#confirm").fill(own)
    page.get_by_role("button", name="Change password").click()
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()


# Elements that scroll sideways inside themselves: what is off to their right is hidden
# from a person on a phone even though the page itself does not scroll.
INNER_SCROLLERS = """() => [...document.querySelectorAll('body *')].filter(el => {
  const overflow = getComputedStyle(el).overflowX;
  return (overflow === 'auto' || overflow === 'scroll') && el.scrollWidth > el.clientWidth + 1;
}).map(el => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') +
             (typeof el.className === 'string' && el.className
              ? '.' + el.className.trim().replace(/ +/g, '.') : ''))"""


def check_nothing_scrolls_sideways(page: Page, name: str) -> None:
    """Neither the page nor any element in it scrolls sideways."""
    scroll, inner = page.evaluate("[document.documentElement.scrollWidth, innerWidth]")
    assert scroll <= inner, (name, scroll, inner)
    assert page.evaluate(INNER_SCROLLERS) == [], name
