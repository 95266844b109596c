"""The overview (the landing page) and the admins' webhook and sending health page."""

from flask import Blueprint

bp = Blueprint("overview", __name__)

from . import views  # noqa: E402, F401  (routes register on bp)
