"""People and how they sign in: accounts, their sessions (one row per browser), second
factors, recovery codes, and the team-wide settings admins change."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    String,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column

from webapp.extensions import db
from webapp.models.base import UTCDateTime, utcnow


class User(db.Model):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(10), default="staff")
    is_active: Mapped[bool] = mapped_column(default=True)
    # A password someone else has seen (the first admin's, printed at bootstrap): the
    # person must choose their own before anything else.
    must_change_password: Mapped[bool] = mapped_column(default=False, server_default=false())
    # The IANA time zone this person reads times in; None: DISPLAY_TIMEZONE.
    time_zone: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    ROLES = ("admin", "staff")

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    # Flask-Login protocol
    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def is_anonymous(self) -> bool:
        return False

    def __repr__(self) -> str:
        return f"<User {self.id} {self.role}>"


class UserSession(db.Model):
    """One signed-in browser. The cookie carries a random token; only its sha256 is kept,
    so a copy of the database signs no one in. Ended (never deleted by a request) on sign
    out, on "sign out everywhere else", when a password changes, when an admin ends it,
    or when it was idle for SESSION_IDLE_MINUTES or is 12 hours old."""

    __tablename__ = "user_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_reason: Mapped[str | None] = mapped_column(String(20))
    address: Mapped[str | None] = mapped_column(String(45))
    user_agent: Mapped[str | None] = mapped_column(String(300))


class SecondFactor(db.Model):
    """A second factor a person signs in with. Only TOTP today (`kind` "totp"; the secret
    is the base32 key their authenticator app holds); a security key would be another
    kind with its own columns. Unconfirmed while enrolment waits for the first code.
    `last_used_step`: the 30-second step of the last code accepted, so a code cannot be
    used twice."""

    __tablename__ = "second_factors"
    __table_args__ = (UniqueConstraint("user_id", "kind", name="uq_second_factors_user_kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    kind: Mapped[str] = mapped_column(String(16), default="totp")
    secret: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_step: Mapped[int] = mapped_column(BigInteger, default=0)


class RecoveryCode(db.Model):
    """A single-use code for signing in without the authenticator app; sha256 only (the
    codes are random, 50 bits each, so a slow hash adds nothing)."""

    __tablename__ = "recovery_codes"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class TeamSetting(db.Model):
    """A setting admins change from the dashboard (e.g. `require_two_factor`), one row
    each; the environment can only force a stricter value."""

    __tablename__ = "team_settings"

    name: Mapped[str] = mapped_column(String(50), primary_key=True)
    value: Mapped[str] = mapped_column(String(200))
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    changed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))

