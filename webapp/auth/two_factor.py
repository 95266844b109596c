"""Two-factor sign-in: TOTP (RFC 6238, an authenticator app) and recovery codes.

Enrolment keeps an unconfirmed factor until the person types its first code; then ten
recovery codes are made, shown once and kept as sha256. A code is accepted within one
30-second step either side of the server's clock, and only if its step is later than
the last accepted one, decided by one conditional UPDATE: a code (or an earlier one)
cannot be used twice, even by two requests at the same moment.
"""

from __future__ import annotations

import hashlib
import secrets
import unicodedata
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select, update

from webapp import audit
from webapp.auth import sessions
from webapp.auth.passwords import verify_password
from webapp.config import current_settings
from webapp.extensions import db
from webapp.models import RecoveryCode, SecondFactor, TeamSetting, User, utcnow

ISSUER = "MMS dashboard"
TOTP = "totp"
RECOVERY_CODES = 10
_RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i to misread


class TwoFactorError(ValueError):
    """A code or request the second factor refuses; the message says why."""


def factor_for(user_id: int, confirmed: bool | None = True) -> SecondFactor | None:
    statement = select(SecondFactor).where(SecondFactor.user_id == user_id,
                                           SecondFactor.kind == TOTP)
    if confirmed is True:
        statement = statement.where(SecondFactor.confirmed_at.is_not(None))
    elif confirmed is False:
        statement = statement.where(SecondFactor.confirmed_at.is_(None))
    return db.session.scalar(statement)


def has_factor(user_id: int) -> bool:
    return factor_for(user_id) is not None


@dataclass(frozen=True)
class Enrolment:
    secret: str
    uri: str  # otpauth://
    qr_svg: str  # a data: URI, made here: no external service sees the secret


def begin(user: User) -> Enrolment:
    """A new secret waiting for its first code (an earlier unconfirmed one is replaced).
    Refused while a confirmed factor exists: turn it off first."""
    if factor_for(user.id) is not None:
        raise TwoFactorError("Two-factor sign-in is already on.")
    pending = factor_for(user.id, confirmed=False)
    if pending is None:
        from pyotp import random_base32

        pending = SecondFactor(user_id=user.id, kind=TOTP, secret=random_base32())
        db.session.add(pending)
        db.session.commit()
    return enrolment(user.email, pending.secret)


def enrolment(email: str, secret: str) -> Enrolment:
    import segno  # only here: each process is held to a memory budget (bench/RESULTS.md)

    uri = _totp(secret).provisioning_uri(name=email, issuer_name=ISSUER)
    qr = segno.make(uri, error="m")
    return Enrolment(secret, uri, qr.svg_data_uri(scale=5, border=2, title="QR code"))


def _totp(secret: str):
    from pyotp import TOTP  # imported on first use, with the pages that need it

    return TOTP(secret)


def _matching_step(secret: str, code: str, at: datetime) -> int | None:
    """The 30-second step (within ±1 of `at`) whose code `code` is, or None."""
    # Spaces and dashes as people type them go; digits of any script count as theirs.
    code = "".join(str(unicodedata.decimal(ch)) for ch in code if ch.isdecimal())
    if len(code) != 6:
        return None
    totp = _totp(secret)
    step = totp.timecode(at)
    for candidate in (step, step - 1, step + 1):
        if secrets.compare_digest(totp.generate_otp(candidate), code):
            return candidate
    return None


SPENT = "spent"
STEP_SECONDS = 30  # RFC 6238's time step, as every authenticator app uses


def seconds_to_next_code(now: datetime | None = None) -> int:
    """How long until the app shows its next code."""
    return STEP_SECONDS - int((now or utcnow()).timestamp()) % STEP_SECONDS


def grouped(secret: str) -> str:
    """The key as people copy it into an app: in fours ("ABCD EFGH ...")."""
    return " ".join(secret[i:i + 4] for i in range(0, len(secret), 4))


def confirm(user: User, code: str) -> list[str]:
    """Turn two-factor on with the first code from the app; the recovery codes (shown
    once). Recorded in the audit log."""
    pending = factor_for(user.id, confirmed=False)
    if pending is None:
        raise TwoFactorError("Start again: scan the QR code first.")
    step = _matching_step(pending.secret, code, utcnow())
    if step is None:
        raise TwoFactorError("That code is not right. Type the 6 digits your app shows now.")
    pending.confirmed_at = utcnow()
    pending.last_used_step = step
    codes = _new_recovery_codes(user.id)
    audit.record("two_factor_enrolled", user.email, kind=TOTP)
    db.session.commit()
    return codes


def _hash(code: str) -> str:
    return hashlib.sha256(_normal(code).encode()).hexdigest()


def _normal(code: str) -> str:
    return "".join(ch for ch in code.casefold() if ch.isalnum())


def _new_recovery_codes(user_id: int) -> list[str]:
    db.session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))
    codes = []
    for _ in range(RECOVERY_CODES):
        raw = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(10))
        codes.append(f"{raw[:5]}-{raw[5:]}")
    db.session.add_all(RecoveryCode(user_id=user_id, code_hash=_hash(code)) for code in codes)
    return codes


def renew_recovery_codes(user: User) -> list[str]:
    if factor_for(user.id) is None:
        raise TwoFactorError("Turn two-factor sign-in on first.")
    codes = _new_recovery_codes(user.id)
    audit.record("recovery_codes_renewed", user.email)
    db.session.commit()
    return codes


def recovery_codes_left(user_id: int) -> int:
    return len(db.session.scalars(select(RecoveryCode.id).where(
        RecoveryCode.user_id == user_id, RecoveryCode.used_at.is_(None))).all())


def verify(user_id: int, code: str) -> str | None:
    """Check a sign-in code: "totp" or "recovery" when accepted (and spent), SPENT when it
    is the app's right code but one of its step (or a later one) was accepted already
    (most often: the code just typed to turn two-factor on), else None. The caller
    commits."""
    factor = factor_for(user_id)
    if factor is None:
        return None
    step = _matching_step(factor.secret, code, utcnow())
    if step is not None:
        # Accepted only if no code of this step or a later one was accepted before.
        spent = db.session.execute(
            update(SecondFactor).where(SecondFactor.id == factor.id,
                                       SecondFactor.last_used_step < step)
            .values(last_used_step=step).execution_options(synchronize_session=False))
        return TOTP if spent.rowcount == 1 else SPENT
    normal = _normal(code)
    if len(normal) != 10:
        return None
    used = db.session.execute(
        update(RecoveryCode).where(RecoveryCode.user_id == user_id,
                                   RecoveryCode.code_hash == _hash(normal),
                                   RecoveryCode.used_at.is_(None))
        .values(used_at=utcnow()).execution_options(synchronize_session=False))
    return "recovery" if used.rowcount == 1 else None


def _remove(user_id: int) -> None:
    db.session.execute(delete(SecondFactor).where(SecondFactor.user_id == user_id))
    db.session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))


def disable(user: User, password: str, keep_session_id: int | None) -> None:
    """The person turns their own second factor off, their password confirming it; their
    other sessions end. Not allowed while the team requires it."""
    if not verify_password(password, user.password_hash):
        raise TwoFactorError("Your password is not right: two-factor sign-in stays on.")
    if required():
        raise TwoFactorError("Two-factor sign-in is required for everyone here; it cannot "
                             "be turned off. You can renew your recovery codes instead.")
    _remove(user.id)
    sessions.end_others(user.id, keep_session_id, "two-factor off")
    audit.record("two_factor_disabled", user.email)
    db.session.commit()


def reset(user: User) -> None:
    """An admin removes a person's second factor (a lost phone): their sessions end, and
    they enrol again at their next sign-in if the team requires it."""
    _remove(user.id)
    ended = sessions.end_others(user.id, None, "two-factor reset")
    audit.record("two_factor_reset", user.email, sessions_ended=ended)
    db.session.commit()


def required() -> bool:
    """Whether everyone must sign in with a second factor (the setting or the toggle)."""
    if current_settings().require_two_factor:
        return True
    setting = db.session.get(TeamSetting, sessions.REQUIRE_TWO_FACTOR)
    return setting is not None and setting.value == "on"


def set_required(on: bool, actor) -> None:
    setting = db.session.get(TeamSetting, sessions.REQUIRE_TWO_FACTOR)
    value = "on" if on else "off"
    if setting is not None and setting.value == value:
        return
    if setting is None:
        setting = TeamSetting(name=sessions.REQUIRE_TWO_FACTOR)
        db.session.add(setting)
    setting.value = value
    setting.changed_at = utcnow()
    setting.changed_by_id = actor.id
    audit.record("setting_changed", "require two-factor", value=value)
    db.session.commit()
