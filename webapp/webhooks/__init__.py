"""Plivo status callbacks: verified, recorded in the ledger, applied to messages."""

from flask import Blueprint

bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")

from . import views  # noqa: E402, F401  (routes register on bp)
