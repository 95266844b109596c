"""Staff accounts: the rules, shared by the admin pages and the CLI."""

from __future__ import annotations

import secrets
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from webapp import audit
from webapp.auth import sessions
from webapp.auth.passwords import burn_equal_time, check_policy, hash_password, verify_password
from webapp.auth.sessions import SignedInUser
from webapp.config import current_settings
from webapp.extensions import db
from webapp.models import User, utcnow


class AccountError(ValueError):
    """A user-management request breaks a rule; the message says which."""


Actor = User | SignedInUser  # who an admin action is recorded as


def signed_in_user(token: str) -> SignedInUser | None:
    """The active person whose session this cookie's token names, or None once that
    session is over (signed out, timed out, ended elsewhere, account deactivated)."""
    return sessions.lookup(token)


def sign_in(user: User, second_factor: str | None = None) -> SignedInUser:
    """Start a session for someone who proved who they are; recorded in the audit log
    with the second factor they used, if any. The caller passes the result to login_user."""
    token = sessions.start(user.id)
    user.last_login_at = utcnow()
    audit.record("sign_in", user.email, actor=user,
                 **({"second_factor": second_factor} if second_factor else {}))
    signed_in = sessions.signed_in(user.id, token)
    db.session.commit()
    return signed_in


def sign_out(person: SignedInUser) -> None:
    sessions.end(person.session_id)
    audit.record("sign_out", person.email, actor=person)
    db.session.commit()


def normalize_email(email: str) -> str:
    return email.strip().casefold()


def find_user(email: str) -> User | None:
    return db.session.scalar(select(User).where(User.email == normalize_email(email)))


def authenticate(email: str, password: str) -> User | None:
    """The active user with these credentials, or None. Same cost either way."""
    rounds = current_settings().bcrypt_rounds
    user = find_user(email)
    if user is None:
        burn_equal_time(rounds)
        return None
    if not verify_password(password, user.password_hash) or not user.is_active:
        return None
    return user


def create_user(email: str, password: str, role: str = "staff", actor: Actor | None = None,
                must_change_password: bool = False) -> User:
    email = normalize_email(email)
    if "@" not in email or len(email) > 254:
        raise AccountError("Enter a valid email address.")
    if role not in User.ROLES:
        raise AccountError(f"Role must be one of: {', '.join(User.ROLES)}.")
    if find_user(email) is not None:
        raise AccountError(f"An account for {email} already exists.")
    check_policy(password, email)
    user = User(email=email, role=role, must_change_password=must_change_password,
                password_hash=hash_password(password, current_settings().bcrypt_rounds))
    db.session.add(user)
    audit.record("account_created", email, actor=actor, role=role)
    db.session.commit()
    return user


def set_password(user: User, new_password: str, actor: Actor | None = None,
                 keep_session_id: int | None = None) -> int:
    """Set a password and end every session the user has but `keep_session_id` (the one
    they changed it from); how many ended."""
    check_policy(new_password, user.email)
    user.password_hash = hash_password(new_password, current_settings().bcrypt_rounds)
    own = actor is not None and actor.id == user.id
    # A password an admin typed has been seen by the admin: the person replaces it first.
    user.must_change_password = actor is not None and not own
    ended = sessions.end_others(user.id, keep_session_id, "password changed")
    audit.record("password_changed" if own else "password_reset", user.email, actor=actor,
                 sessions_ended=ended)
    db.session.commit()
    return ended


def change_own_password(person: SignedInUser, current_password: str,
                        new_password: str) -> SignedInUser:
    """Change one's own password: every session ends, this browser's too, and this
    browser continues in a new one (the caller logs it in): a copy of the old cookie,
    wherever it went, opens nothing."""
    user = person.record()
    if not verify_password(current_password, user.password_hash):
        raise AccountError("Your current password is not right.")
    set_password(user, new_password, actor=person)
    token = sessions.start(user.id)
    renewed = sessions.signed_in(user.id, token)
    db.session.commit()
    return renewed


def set_time_zone(user: User, name: str | None) -> None:
    """The time zone this person reads times in; None or "" for the dashboard's own."""
    if name:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise AccountError(f"{name} is not a time zone.") from exc
    user.time_zone = name or None
    db.session.commit()


def end_sessions(user: User, actor: Actor | None, keep_session_id: int | None = None) -> int:
    """End this person's sessions (all of them, or all but the one they are using: "sign
    out everywhere else"); how many ended."""
    ended = sessions.end_others(user.id, keep_session_id, "ended by admin" if (
        actor is not None and actor.id != user.id) else "signed out elsewhere")
    audit.record("sessions_ended", user.email, actor=actor, count=ended,
                 kept_this_one=keep_session_id is not None)
    db.session.commit()
    return ended


_LAST_ADMIN = "This is the last active admin; make someone else an admin first."


def _active_admin(*conditions):
    return (User.role == "admin", User.is_active, *conditions)


def _change_unless_last_admin(user: User, **values) -> None:
    """Change an active admin's row only if another active admin remains, decided and
    written at once: two admins demoting each other at the same moment leave one.

    On PostgreSQL the active admins' rows are locked first (FOR UPDATE), so a concurrent
    change waits and then counts again; on SQLite the single UPDATE runs under the
    database's write lock, counting as it writes."""
    if db.engine.dialect.name == "postgresql":
        db.session.execute(select(User.id).where(*_active_admin()).with_for_update())
    others = (select(func.count()).select_from(User)
              .where(*_active_admin(User.id != user.id)).scalar_subquery())
    result = db.session.execute(
        update(User).where(User.id == user.id, others > 0).values(**values)
        .execution_options(synchronize_session=False))
    if result.rowcount != 1:
        db.session.rollback()
        raise AccountError(_LAST_ADMIN)


def set_active(user: User, active: bool, actor: Actor | None = None) -> None:
    if user.is_active == active:
        return
    if not active and user.is_admin:
        _change_unless_last_admin(user, is_active=False)
    else:
        user.is_active = active
    ended = 0 if active else sessions.end_others(user.id, None, "deactivated")
    audit.record("account_reactivated" if active else "account_deactivated", user.email,
                 actor=actor, **({} if active else {"sessions_ended": ended}))
    db.session.commit()


def set_role(user: User, role: str, actor: Actor | None = None) -> None:
    if role not in User.ROLES:
        raise AccountError(f"Role must be one of: {', '.join(User.ROLES)}.")
    if user.role == role:
        return
    before = user.role
    if user.is_admin and user.is_active:
        _change_unless_last_admin(user, role=role)
    else:
        user.role = role
    audit.record("role_changed", user.email, actor=actor, role=role, was=before)
    db.session.commit()


def list_users() -> list[User]:
    return list(db.session.scalars(select(User).where(User.role != SYSTEM_ROLE)
                                   .order_by(User.email)))


def has_users() -> bool:
    return db.session.scalar(select(func.count()).select_from(User)
                             .where(User.role != SYSTEM_ROLE)) > 0


# Who the dashboard's own sends and stored files are recorded as: the answer to HELP,
# the confirmation after STOP, a customer's pictures. Not a person: it cannot sign in
# (inactive, no e-mail address a form accepts, a random password nobody knows) and no
# staff list shows it.
SYSTEM_ROLE = "system"
SYSTEM_NAME = "automatic replies"


def system_user() -> User:
    user = db.session.scalar(select(User).where(User.email == SYSTEM_NAME))
    if user is not None:
        return user
    db.session.add(User(email=SYSTEM_NAME, role=SYSTEM_ROLE, is_active=False,
                        password_hash=hash_password(secrets.token_urlsafe(32), 4)))
    try:
        db.session.commit()
    except IntegrityError:  # made at the same moment by another worker
        db.session.rollback()
    return db.session.scalar(select(User).where(User.email == SYSTEM_NAME))
