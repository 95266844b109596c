"""Signed-in sessions, kept in the database: each browser a person signs in from is a row.

The cookie (Flask's signed session) carries a random token as the Flask-Login id; the
row keeps its sha256. Every request looks the token up with the person in one query,
so ending a row ends that browser at once wherever the cookie was copied to.

A session ends when its owner signs out, when it was idle for SESSION_IDLE_MINUTES, when
it is ABSOLUTE old, when its owner signs out everywhere else or changes their password,
and when an admin ends all of a person's sessions or deactivates them.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app, has_request_context, request
from sqlalchemy import and_, bindparam, exists, insert, select, update

from webapp import audit
from webapp.config import current_settings
from webapp.extensions import db
from webapp.models import SecondFactor, TeamSetting, User, UserSession, utcnow

ABSOLUTE = timedelta(hours=12)
# last_seen_at is written at most this often: a page and its polls do not write per request.
TOUCH_EVERY = timedelta(seconds=60)
REQUIRE_TWO_FACTOR = "require_two_factor"

_s, _u = UserSession.__table__, User.__table__
_f, _t = SecondFactor.__table__, TeamSetting.__table__


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class SignedInUser:
    """Who a request comes from: `current_user` on every signed-in request.

    Read by one small Core query per request rather than as an ORM `User` (half the
    cost, and every page pays it). A view that changes the account loads the row
    with `record()`.
    """

    id: int
    email: str
    role: str
    must_change_password: bool
    time_zone: str | None
    has_second_factor: bool
    team_requires_two_factor: bool
    session_id: int
    token: str

    is_authenticated = True
    is_active = True  # the loader refuses deactivated accounts
    is_anonymous = False

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def must_enrol(self) -> bool:
        """Two-factor is required and this person has none yet."""
        return not self.has_second_factor and (
            self.team_requires_two_factor or current_settings().require_two_factor)

    def get_id(self) -> str:
        return self.token

    def record(self) -> User:
        return db.session.get_one(User, self.id)


_LOOKUP = select(
    _u.c.id, _u.c.email, _u.c.role, _u.c.must_change_password, _u.c.time_zone,
    exists().where(_f.c.user_id == _u.c.id, _f.c.confirmed_at.is_not(None)).label("factor"),
    select(_t.c.value).where(_t.c.name == REQUIRE_TWO_FACTOR).scalar_subquery()
    .label("required"),
    _s.c.id.label("session_id"), _s.c.created_at, _s.c.last_seen_at,
).join(_u, _u.c.id == _s.c.user_id).where(
    _s.c.token_hash == bindparam("token_hash"), _s.c.ended_at.is_(None),
    _u.c.is_active.is_(True))


def _why_ended(token_hash: str) -> str | None:
    """Why the session behind this cookie is over, as recorded when it ended (another
    browser's "sign out everywhere else", an admin, a password change...); None when no
    session has this token or the account was deactivated while it was open."""
    row = db.session.connection().execute(
        select(_s.c.ended_reason, _u.c.is_active).join(_u, _u.c.id == _s.c.user_id)
        .where(_s.c.token_hash == token_hash)).first()
    if row is None:
        return None
    return row.ended_reason if row.is_active or row.ended_reason else "deactivated"


def start(user_id: int) -> str:
    """A new session for this person, from this request's browser; its token (the caller
    puts it in the cookie through login_user). The caller commits."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    values = {"token_hash": _hash(token), "user_id": user_id, "created_at": now,
              "last_seen_at": now}
    if has_request_context():
        values.update(address=(request.remote_addr or "")[:45] or None,
                      user_agent=request.user_agent.string[:300] or None)
    db.session.execute(insert(_s).values(values))
    return token


def signed_in(user_id: int, token: str) -> SignedInUser:
    """The SignedInUser for a session just started (before its row is committed)."""
    found = lookup(token, touch=False)
    if found is None or found.id != user_id:
        raise RuntimeError("a session just started was not found")
    return found


def lookup(token: str, touch: bool = True) -> SignedInUser | None:
    """The active person a session token belongs to, or None once the session is over
    (it is then marked ended, with the reason, for the sign-in page to say why)."""
    if not token or len(token) > 100:
        return None
    token_hash = _hash(token)
    row = db.session.connection().execute(_LOOKUP, {"token_hash": token_hash}).first()
    if row is None:
        if has_request_context():  # for the sign-in page to say why (only on this path)
            request.environ["webapp.session_ended"] = _why_ended(token_hash)
        return None
    now = utcnow()
    idle = timedelta(minutes=current_settings().session_idle_minutes)
    reason = ("expired" if now - row.created_at >= ABSOLUTE
              else "idle" if now - row.last_seen_at >= idle else None)
    if reason is not None:
        _end(_s.c.id == row.session_id, reason, now)
        audit.record("session_timed_out", row.email, actor=row, reason=reason)
        db.session.commit()
        if has_request_context():
            request.environ["webapp.session_ended"] = reason
        return None
    if touch and now - row.last_seen_at >= TOUCH_EVERY and not _passive_request() and (
            _first_to_touch(token_hash, now)):
        db.session.connection().execute(
            update(_s).where(_s.c.id == row.session_id).values(last_seen_at=now))
        db.session.commit()
    return SignedInUser(row.id, row.email, row.role, row.must_change_password, row.time_zone,
                        bool(row.factor), row.required == "on", row.session_id, token)


# When this process last wrote each session's last_seen_at: the requests of one page
# arriving together (or a load test's) write it once, not once each, which on SQLite
# would queue every one of them behind the database's single writer.
_touched: dict[str, datetime] = {}  # by token hash
_touched_lock = threading.Lock()


def _first_to_touch(token_hash: str, now: datetime) -> bool:
    with _touched_lock:
        last = _touched.get(token_hash)
        if last is not None and timedelta(0) <= now - last < TOUCH_EVERY:
            return False
        if len(_touched) >= 10_000:
            _touched.clear()
        _touched[token_hash] = now
        return True


def passive(view):
    """Mark a view a page polls by itself (a live status): its requests do not count as
    the person being active, so an open tab does not keep a session alive forever."""
    view.passive_request = True
    return view


def _passive_request() -> bool:
    if not has_request_context():
        return False
    view = current_app.view_functions.get(request.endpoint or "")
    return bool(getattr(view, "passive_request", False))


def keep_alive(session_id: int) -> None:
    """The person is here (the idle warning's button, or typing in a page)."""
    db.session.execute(update(_s).where(_s.c.id == session_id, _s.c.ended_at.is_(None))
                       .values(last_seen_at=utcnow()))


def _end(condition, reason: str, now: datetime | None = None) -> int:
    result = db.session.execute(
        update(_s).where(condition, _s.c.ended_at.is_(None))
        .values(ended_at=now or utcnow(), ended_reason=reason)
        .execution_options(synchronize_session=False))
    return result.rowcount


def end(session_id: int, reason: str = "signed out") -> None:
    _end(_s.c.id == session_id, reason)


def end_others(user_id: int, keep_session_id: int | None, reason: str) -> int:
    """End every session of this person but `keep_session_id`; how many ended. The
    caller commits."""
    condition = _s.c.user_id == user_id
    if keep_session_id is not None:
        condition = and_(condition, _s.c.id != keep_session_id)
    return _end(condition, reason)


@dataclass(frozen=True)
class SessionView:
    id: int
    browser: str
    address: str
    created_at: datetime
    last_seen_at: datetime
    current: bool


def browser_label(user_agent: str | None) -> str:
    if not user_agent:
        return "Unknown browser"
    from ua_parser import parse  # only the sessions pages need it (memory budget)

    parsed = parse(user_agent)
    agent = parsed.user_agent
    system = parsed.os
    name = agent.family if agent and agent.family != "Other" else "Unknown browser"
    if agent and agent.major:
        name += f" {agent.major}"
    if system and system.family != "Other":
        name += f" on {system.family}"
    return name


def active_for(user_id: int, current_session_id: int | None = None) -> list[SessionView]:
    """This person's sessions still open (not ended, not idle or too old), newest first."""
    now = utcnow()
    idle = timedelta(minutes=current_settings().session_idle_minutes)
    rows = db.session.execute(
        select(_s.c.id, _s.c.user_agent, _s.c.address, _s.c.created_at, _s.c.last_seen_at)
        .where(_s.c.user_id == user_id, _s.c.ended_at.is_(None),
               _s.c.created_at > now - ABSOLUTE, _s.c.last_seen_at > now - idle)
        .order_by(_s.c.last_seen_at.desc(), _s.c.id.desc())).all()
    return [SessionView(row.id, browser_label(row.user_agent), row.address or "unknown",
                        row.created_at, row.last_seen_at, row.id == current_session_id)
            for row in rows]


def forget_ended(older_than: timedelta = timedelta(days=30)) -> int:
    """Delete sessions that ended (or went stale) long ago: the audit log keeps the
    sign-ins and sign-outs. The caller commits."""
    cutoff = utcnow() - older_than
    result = db.session.execute(
        _s.delete().where(_s.c.last_seen_at < cutoff))
    return result.rowcount
