"""Compose, history, detail and export of picture messages."""

from flask import Blueprint

bp = Blueprint("messages", __name__)

from . import views  # noqa: E402, F401  (routes register on bp)
