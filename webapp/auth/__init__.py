"""Login, logout, own password, and the admin pages for staff accounts."""

from flask import Blueprint

bp = Blueprint("auth", __name__)

from . import views  # noqa: E402, F401  (routes register on bp)
