"""The auth blueprint: who is signed in (the session loader), what a signed-out person is
told, and the gate that sends a person to choose a password or a second factor first.
The pages are in sign_in, account and staff."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, request, url_for
from flask_login import current_user, login_url

from webapp.auth import service
from webapp.auth.sessions import SignedInUser
from webapp.config import current_settings
from webapp.extensions import login_manager

bp = Blueprint("auth", __name__)

login_manager.login_view = "auth.login"
login_manager.login_message = "Please sign in to see this page."
login_manager.login_message_category = "info"

# What the sign-in page says to a browser whose session ended while it was away, by the
# reason recorded when it ended (sessions.end_others, sessions.lookup). A plain "signed
# out" (this browser's own Sign out) says nothing more than the usual line.
ENDED_BECAUSE = {
    "expired": "You were signed out: a session lasts 12 hours at most. Sign in again.",
    "signed out elsewhere": "You were signed out because you chose \"Sign out everywhere "
                            "else\" in another browser. Sign in again to carry on.",
    "ended by admin": "An admin ended your sessions. Sign in again to carry on.",
    "password changed": "You were signed out because your password was changed. Sign in "
                        "with the new one.",
    "two-factor off": "You were signed out because two-factor sign-in was turned off for "
                      "your account. Sign in again.",
    "two-factor reset": "An admin reset your two-factor sign-in, which signed you out. Sign "
                        "in again and set it up anew.",
    "deactivated": "Your account was deactivated. Ask an admin if you need it again.",
}


@login_manager.user_loader
def load_user(token: str) -> SignedInUser | None:
    # The id is the session's token: a session that ended (sign-out here or elsewhere,
    # timeout, password change, deactivation) names no open session and is refused.
    return service.signed_in_user(token)


@login_manager.unauthorized_handler
def unauthorized():
    reason = request.environ.get("webapp.session_ended")
    if reason == "idle":
        minutes = current_settings().session_idle_minutes
        message = (f"You were signed out after {minutes} minutes without activity. "
                   "Sign in again to carry on.")
    else:
        message = ENDED_BECAUSE.get(reason or "", login_manager.login_message)
    flash(message, "warning" if reason in ENDED_BECAUSE or reason == "idle" else "info")
    target = login_url(login_manager.login_view, request.url)
    if request.headers.get("HX-Request"):
        # A fragment that polls: the whole page goes to the sign-in form, not the fragment.
        return "", 401, {"HX-Redirect": target}
    return redirect(target)


# What a person may still open before choosing their own password or, where the team
# requires it, before turning two-factor sign-in on.
_ALWAYS_OPEN = frozenset({"auth.logout", "auth.login", "auth.login_code", "auth.keep_alive",
                          "static", "livez", "healthz", "favicon", "callbacks.plivo_status"})
_BEFORE_NEW_PASSWORD = _ALWAYS_OPEN | {"auth.change_password"}
_BEFORE_TWO_FACTOR = _ALWAYS_OPEN | {"auth.two_factor", "auth.two_factor_start",
                                     "auth.two_factor_confirm"}


@bp.before_app_request
def require_own_password_and_second_factor():
    """The first admin's printed password must be replaced before anything else; where
    two-factor is required, a person without one sets it up before anything else."""
    if request.endpoint in _ALWAYS_OPEN:
        return None  # decided without loading the user
    if not current_user.is_authenticated:
        return None
    if current_user.must_change_password and request.endpoint not in _BEFORE_NEW_PASSWORD:
        flash("Choose your own password first: the one you signed in with was printed "
              "when the dashboard was set up.", "warning")
        return redirect(url_for("auth.change_password"), 303)
    if current_user.must_enrol and request.endpoint not in _BEFORE_TWO_FACTOR:
        flash("Two-factor sign-in is required here. Set it up to carry on.", "warning")
        return redirect(url_for("auth.two_factor"), 303)
    return None


from webapp.auth.views import account, sign_in, staff  # noqa: E402, F401  (routes register on bp)
