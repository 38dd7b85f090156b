"""Registration, login, token refresh, and turning a bearer token into a user.

Shared by the HTTP routes and the socket's ``auth`` requests so that both
apply exactly the same checks: signature, expiry, and that the user still
exists and is active.
"""

from __future__ import annotations

import logging

from protocol.base import UserRef
from protocol.codes import CloseCode, ErrorCode
from protocol.http import LoginBody, RefreshBody, RegisterBody, TokenPair
from server.auth import TokenInvalid, hash_refresh_token, new_refresh_token
from server.errors import ApiError
from server.router import Principal
from server.services import Services
from storage import refresh_tokens, users
from storage.users import UserRow

log = logging.getLogger("digis.identity")


class AccountDisabled(ApiError):
    """The token is valid but its account is disabled, banned or deleted."""

    def __init__(self) -> None:
        super().__init__(
            ErrorCode.AUTH_REQUIRED, "account disabled", close_code=CloseCode.ACCOUNT_DISABLED
        )


def user_ref(user: UserRow) -> UserRef:
    return UserRef(
        id=user.id,
        username=user.username,
        display_name=user.display_name,
        role=user.role,  # type: ignore[arg-type]
    )


async def principal_from_token(services: Services, token: str) -> Principal:
    """Verify ``token`` and load its user; raises ApiError(AUTH_REQUIRED)."""
    try:
        claims = services.tokens.verify(token)
    except TokenInvalid as exc:
        raise ApiError(ErrorCode.AUTH_REQUIRED, exc.reason) from None
    user = await users.get_user(services.pool, claims.user_id)
    if user is None:
        raise ApiError(ErrorCode.AUTH_REQUIRED, "access token invalid")
    if not user.active:
        raise AccountDisabled()
    return Principal(
        id=user.id,
        role=user.role,
        username=user.username,
        display_name=user.display_name,
        expires_at=claims.expires_at,
    )


async def principal_from_authorization(services: Services, header: str) -> Principal:
    """The user of an ``Authorization: Bearer <access token>`` header; raises
    ApiError(AUTH_REQUIRED) for any other form, or an invalid token."""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(ErrorCode.AUTH_REQUIRED, "send `Authorization: Bearer <access token>`")
    return await principal_from_token(services, token.strip())


async def _issue_pair(services: Services, user: UserRow) -> TokenPair:
    access, expires = services.tokens.issue(user.id, user.role)
    refresh, digest, refresh_expires = new_refresh_token(services.settings.refresh_token_ttl)
    await refresh_tokens.store(
        services.pool, token_hash=digest, user_id=user.id, family=None, expires_at=refresh_expires
    )
    return TokenPair(
        user=user_ref(user), access_token=access, expires_at=expires, refresh_token=refresh
    )


async def register(services: Services, body: RegisterBody) -> TokenPair:
    password_hash = await services.passwords.hash(body.password)
    async with services.pool.acquire() as conn:
        try:
            user = await users.create_user(
                conn,
                email=body.email,
                username=body.username,
                password_hash=password_hash,
                role=body.role,
                display_name=body.display_name,
            )
        except users.DuplicateUser as exc:
            raise ApiError(ErrorCode.CONFLICT, f"{exc.field} already registered") from None
    log.info("user registered", extra={"user": user.id, "role": user.role})
    return await _issue_pair(services, user)


async def login(services: Services, body: LoginBody) -> TokenPair:
    user = await users.get_user_by_email(services.pool, body.email)
    ok = await services.passwords.verify(user.password_hash if user else None, body.password)
    if not ok or user is None:
        raise ApiError(ErrorCode.INVALID_CREDENTIALS, "wrong email or password")
    if not user.active:
        raise AccountDisabled()
    return await _issue_pair(services, user)


async def refresh(services: Services, body: RefreshBody) -> TokenPair:
    """Rotate a refresh token: one use only; reuse revokes the whole family."""
    new_token, new_hash, expires = new_refresh_token(services.settings.refresh_token_ttl)
    async with services.pool.acquire() as conn:
        rotation = await refresh_tokens.rotate(
            conn,
            old_hash=hash_refresh_token(body.refresh_token),
            new_hash=new_hash,
            expires_at=expires,
        )
        if rotation.outcome is refresh_tokens.RotateOutcome.REUSED:
            log.warning("refresh token reused; family revoked", extra={"user": rotation.user_id})
        if rotation.outcome is not refresh_tokens.RotateOutcome.ROTATED:
            raise ApiError(ErrorCode.INVALID_CREDENTIALS, f"refresh token {rotation.outcome.value}")
        assert rotation.user_id is not None
        user = await users.get_user(conn, rotation.user_id)
    if user is None or not user.active:
        raise AccountDisabled()
    access, access_expires = services.tokens.issue(user.id, user.role)
    return TokenPair(
        user=user_ref(user), access_token=access, expires_at=access_expires, refresh_token=new_token
    )
