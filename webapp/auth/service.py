"""Staff accounts: the rules, shared by the admin pages and the CLI."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import bindparam, func, select, update

from ..config import current_settings
from ..extensions import db
from ..logs import event
from ..models import User, utcnow
from .passwords import burn_equal_time, check_policy, hash_password, verify_password

log = logging.getLogger(__name__)


class AccountError(ValueError):
    """A user-management request breaks a rule; the message says which."""


@dataclass(frozen=True, slots=True)
class SignedInUser:
    """Who a request comes from: `current_user` on every logged-in request.

    Read by one small Core query per request rather than as an ORM `User` (half the
    cost, and every page pays it). A view that changes the account loads the row
    with `record()`.
    """

    id: int
    email: str
    role: str
    session_version: int
    must_change_password: bool = False
    time_zone: str | None = None

    is_authenticated = True
    is_active = True  # the loader refuses deactivated accounts
    is_anonymous = False

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def get_id(self) -> str:
        return f"{self.id}:{self.session_version}"

    def record(self) -> User:
        return db.session.get_one(User, self.id)


Actor = User | SignedInUser  # who an admin action is logged as
_SESSION_ID = re.compile(r"([0-9]{1,18}):([0-9]{1,18})")
_users = User.__table__
_SIGNED_IN = select(_users.c.id, _users.c.email, _users.c.role, _users.c.session_version,
                    _users.c.must_change_password, _users.c.time_zone).where(
    _users.c.id == bindparam("id"), _users.c.session_version == bindparam("version"),
    _users.c.is_active.is_(True))


def signed_in_user(session_id: str) -> SignedInUser | None:
    """The active user a session's "id:version" names, or None once that version is
    over (logout everywhere, password change, deactivation) or the value is malformed."""
    parsed = _SESSION_ID.fullmatch(session_id)
    if parsed is None:
        return None
    row = db.session.connection().execute(
        _SIGNED_IN, {"id": int(parsed[1]), "version": int(parsed[2])}).first()
    return SignedInUser(*row) if row else None


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
    user.last_login_at = utcnow()
    db.session.commit()
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
    db.session.commit()
    event(log, "user created", email=email, role=role, by=actor.email if actor else "cli")
    return user


def set_password(user: User, new_password: str, actor: Actor | None = None) -> None:
    """Set a password and end every session the user has."""
    check_policy(new_password, user.email)
    user.password_hash = hash_password(new_password, current_settings().bcrypt_rounds)
    user.session_version += 1
    user.must_change_password = False
    db.session.commit()
    event(log, "password set", email=user.email, by=actor.email if actor else "cli")


def change_own_password(user: User, current_password: str, new_password: str) -> None:
    if not verify_password(current_password, user.password_hash):
        raise AccountError("Your current password is not right.")
    set_password(user, new_password, actor=user)


def set_time_zone(user: User, name: str | None) -> None:
    """The time zone this person reads times in; None or "" for the dashboard's own."""
    if name:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise AccountError(f"{name} is not a time zone.") from exc
    user.time_zone = name or None
    db.session.commit()


def end_all_sessions(user: User) -> None:
    user.session_version += 1
    db.session.commit()


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
    db.session.commit()


def set_active(user: User, active: bool, actor: Actor | None = None) -> None:
    if user.is_active == active:
        return
    if not active and user.is_admin:
        _change_unless_last_admin(user, is_active=False,
                                  session_version=User.session_version + 1)
    else:
        user.is_active = active
        if not active:
            user.session_version += 1
        db.session.commit()
    event(log, "user activated" if active else "user deactivated", email=user.email,
          by=actor.email if actor else "cli")


def set_role(user: User, role: str, actor: Actor | None = None) -> None:
    if role not in User.ROLES:
        raise AccountError(f"Role must be one of: {', '.join(User.ROLES)}.")
    if user.role == role:
        return
    if user.is_admin and user.is_active:
        _change_unless_last_admin(user, role=role)
    else:
        user.role = role
        db.session.commit()
    event(log, "role changed", email=user.email, role=role, by=actor.email if actor else "cli")


def list_users() -> list[User]:
    return list(db.session.scalars(select(User).order_by(User.email)))


def has_users() -> bool:
    return db.session.scalar(select(func.count()).select_from(User)) > 0
