"""Password hashing and policy.

bcrypt reads at most 72 bytes of its input (bcrypt 5 raises on longer input
instead of truncating). We accept passwords of up to 128 characters, which may
be up to 512 bytes of UTF-8, so every password is pre-hashed: SHA-256 of the
UTF-8 bytes, base64-encoded (44 ASCII bytes, no NUL), then bcrypt. Nothing is
ever silently truncated, and every character counts.
"""

from __future__ import annotations

import base64
import hashlib
from functools import cache

import bcrypt

MIN_LENGTH = 12
MAX_LENGTH = 128

# A few long passwords from breach lists that meet the length rule; enough to
# stop the obvious ones without composition rules (NIST SP 800-63B).
COMMON_PASSWORDS = frozenset({
    "123456789012", "1234567890123", "12345678901234", "password1234", "password12345",
    "passwordpassword", "qwertyuiopasdfgh", "qwerty123456", "111111111111", "000000000000",
    "iloveyou1234", "letmein12345", "administrator", "adminadmin123", "welcome12345",
    "changeme1234", "abcdefghijkl", "abc123abc123", "qwertyqwerty", "aaaaaaaaaaaa",
})


class WeakPassword(ValueError):
    pass


def check_policy(password: str, email: str | None = None) -> None:
    """Raise WeakPassword with a sentence a person can act on."""
    if len(password) < MIN_LENGTH:
        raise WeakPassword(f"Use at least {MIN_LENGTH} characters.")
    if len(password) > MAX_LENGTH:
        raise WeakPassword(f"Use at most {MAX_LENGTH} characters.")
    if password.lower() in COMMON_PASSWORDS or len(set(password)) < 4:
        raise WeakPassword("This password is too common or too easy to guess.")
    if email and password.lower() == email.lower():
        raise WeakPassword("Do not use your email address as your password.")


def _prehash(password: str) -> bytes:
    return base64.b64encode(hashlib.sha256(password.encode("utf-8")).digest())


def hash_password(password: str, rounds: int) -> str:
    return bcrypt.hashpw(_prehash(password), bcrypt.gensalt(rounds)).decode("ascii")


def verify_password(password: str, password_hash: str) -> bool:
    try:
        return bcrypt.checkpw(_prehash(password), password_hash.encode("ascii"))
    except ValueError:
        return False


@cache
def _dummy_hash(rounds: int) -> str:
    return hash_password("dummy password for timing", rounds)


def burn_equal_time(rounds: int) -> None:
    """Spend what a real check costs, so an unknown email answers as slowly."""
    verify_password("not the password", _dummy_hash(rounds))
