"""Passwords (argon2id), access tokens (HS256 JWT) and refresh tokens.

Access tokens are short-lived and stateless; whoever verifies one must still
check that the user exists and is active (``server.accounts``). Refresh
tokens are opaque random strings whose SHA-256 is stored (``storage.refresh_tokens``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import secrets
import time
from dataclasses import dataclass
from functools import partial

import argon2
import jwt

ALGORITHM = "HS256"
ACCESS_TYPE = "access"


class TokenInvalid(Exception):
    """The access token cannot be accepted; ``reason`` is safe to show."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Claims:
    user_id: int
    role: str
    expires_at: float
    issued_at: float


class Passwords:
    """argon2id hashing, run in a thread so the event loop never stalls."""

    def __init__(self, memory_kib: int = 65536) -> None:
        self._hasher = argon2.PasswordHasher(
            time_cost=2 if memory_kib >= 65536 else 1,
            memory_cost=memory_kib,
            parallelism=1,
        )
        # A real hash to verify against when the user is unknown, so that a
        # login for an unknown email costs the same time as a wrong password.
        self._dummy = self._hasher.hash(secrets.token_urlsafe(16))

    async def hash(self, password: str) -> str:
        loop = asyncio.get_running_loop()
        digest: str = await loop.run_in_executor(None, self._hasher.hash, password)
        return digest

    def hash_sync(self, password: str) -> str:
        digest: str = self._hasher.hash(password)
        return digest

    async def verify(self, stored: str | None, password: str) -> bool:
        loop = asyncio.get_running_loop()
        check = partial(self._verify, stored or self._dummy, password)
        ok: bool = await loop.run_in_executor(None, check)
        return ok and stored is not None

    def _verify(self, stored: str, password: str) -> bool:
        try:
            return bool(self._hasher.verify(stored, password))
        except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
            return False


class AccessTokens:
    """Issue and verify HS256 access tokens."""

    def __init__(self, secret: str, ttl_seconds: int) -> None:
        self._secret = secret
        self.ttl = ttl_seconds

    def issue(self, user_id: int, role: str, now: float | None = None) -> tuple[str, float]:
        """A token for the user and its expiry (Unix seconds)."""
        issued = int(time.time() if now is None else now)
        expires = issued + self.ttl
        payload = {
            "sub": str(user_id),
            "role": role,
            "typ": ACCESS_TYPE,
            "iat": issued,
            "nbf": issued,
            "exp": expires,
            "jti": secrets.token_hex(8),
        }
        return jwt.encode(payload, self._secret, algorithm=ALGORITHM), float(expires)

    def verify(self, token: str) -> Claims:
        """Decode and check a token; raises :class:`TokenInvalid` with a safe reason."""
        try:
            payload = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                options={"require": ["exp", "iat", "nbf", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise TokenInvalid("access token expired") from None
        except jwt.ImmatureSignatureError:
            raise TokenInvalid("access token not yet valid") from None
        except jwt.InvalidTokenError:
            raise TokenInvalid("access token invalid") from None
        if payload.get("typ") != ACCESS_TYPE:
            raise TokenInvalid("not an access token")
        try:
            user_id = int(payload["sub"])
        except (TypeError, ValueError):
            raise TokenInvalid("access token invalid") from None
        return Claims(
            user_id=user_id,
            role=str(payload.get("role", "fan")),
            expires_at=float(payload["exp"]),
            issued_at=float(payload["iat"]),
        )


def new_refresh_token(ttl_seconds: int) -> tuple[str, bytes, dt.datetime]:
    """A fresh opaque refresh token, its stored hash and its expiry."""
    token = secrets.token_urlsafe(32)
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=ttl_seconds)
    return token, hash_refresh_token(token), expires


def hash_refresh_token(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()
