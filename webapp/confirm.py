"""Destructive actions ask first: a POST without `confirmed=yes` answers with a page that
says what will happen and asks again (no JavaScript needed); with JavaScript the same
question comes as a <dialog> before the form is sent (static/js/app.js, data-confirm)."""

from __future__ import annotations

from flask import render_template, request

FIELD = "confirmed"


def confirmed() -> bool:
    """Whether the person has seen what will happen and said yes."""
    return request.form.get(FIELD) == "yes"


def ask(*, title: str, consequence: str, label: str, back: str):
    """The page that asks: what will happen, the same form again with `confirmed=yes`
    (its other fields carried), and a way back that does nothing."""
    fields = [(name, value) for name, value in request.form.items(multi=True)
              if name not in ("csrf_token", FIELD)]
    return render_template("confirm.html", title=title, consequence=consequence,
                           label=label, action=request.path, fields=fields, back=back)
