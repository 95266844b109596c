"""The history's tests share messages seeded for two staff, some at one timestamp."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from tests.helpers import make_message
from webapp.extensions import db

STAMP = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


@pytest.fixture
def seed(app, make_user):
    """Messages for two staff; many share one timestamp to test tie-breaking."""
    amy = make_user("amy@example.com")
    bob = make_user("bob@example.com")

    def add(count: int, **fields) -> list[str]:
        ids = []
        with app.app_context():
            for i in range(count):
                row = make_message(
                    created_by_id=fields.get("user", amy).id, media=[],
                    recipient=fields.get("recipient", f"+1415555{i % 10000:04d}"),
                    text=fields.get("text", f"message {i}"),
                    status=fields.get("status", "delivered"),
                    created_at=fields.get("created_at", STAMP))
                db.session.add(row)
                db.session.flush()
                ids.append(row.public_id)
            db.session.commit()
        return ids

    return add, amy, bob


def page_ids(html: str) -> list[str]:
    return re.findall(r'<tr id="msg-([^"]+)"', html)


def next_link(html: str) -> str | None:
    match = re.search(r'href="([^"]+)" rel="next"', html)
    return match.group(1).replace("&amp;", "&") if match else None
