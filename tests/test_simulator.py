"""The simulator's magic numbers: one table decides, describes and documents them."""

from __future__ import annotations

from pathlib import Path

from webapp.plivo_simulator import BEHAVIOURS, display_number, readme_table

from .helpers import url

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_readme_lists_the_magic_numbers_the_simulator_acts_on():
    assert readme_table() in README.read_text()


def test_the_compose_page_hints_come_from_the_same_table(client, login_as):
    login_as()
    page = client.get(url("messages.compose")).get_data(as_text=True)
    hinted = [b for b in BEHAVIOURS if b.hint]
    assert hinted
    for behaviour in hinted:
        assert f"<code>{display_number(behaviour.number)}</code> ({behaviour.hint})" in page
