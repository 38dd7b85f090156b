"""Socket requests about the connection and the caller's account."""

from __future__ import annotations

import time

from protocol import requests as rq
from protocol import results as rs
from protocol.codes import CloseCode, ErrorCode
from server.balances import balance_payload
from server.errors import ApiError
from server.identity import principal_from_token
from server.router import Ctx, Router
from storage import ledger, users
from storage.users import UserRow

router = Router()


def profile(user: UserRow) -> rs.Profile:
    return rs.Profile(
        id=user.id,
        email=user.email,
        username=user.username,
        display_name=user.display_name,
        bio=user.bio,
        avatar_url=user.avatar_url,
        role=user.role,  # type: ignore[arg-type]
        created_at=user.created_at.timestamp(),
    )


@router.handles(rq.Auth, public=True)
async def auth(ctx: Ctx, req: rq.Auth) -> rs.AuthResult:
    if ctx.conn.user is not None:
        raise ApiError(ErrorCode.INVALID_STATE, "already authenticated; use auth.refresh")
    principal = await principal_from_token(ctx.services, req.token)
    if ctx.conn.closed:
        raise ApiError(ErrorCode.AUTH_REQUIRED, "socket closed before authentication completed")
    if not ctx.conn.authenticate(principal):
        raise ApiError(
            ErrorCode.RATE_LIMIT_EXCEEDED,
            "too many sockets for this user",
            close_code=CloseCode.CONNECTION_LIMIT,
        )
    return rs.AuthResult(user=principal.ref(), expires_at=principal.expires_at)


@router.handles(rq.AuthRefresh)
async def auth_refresh(ctx: Ctx, req: rq.AuthRefresh) -> rs.AuthResult:
    principal = await principal_from_token(ctx.services, req.token)
    if principal.id != ctx.user.id:
        raise ApiError(ErrorCode.FORBIDDEN, "token belongs to another user")
    ctx.conn.refresh(principal)
    return rs.AuthResult(user=principal.ref(), expires_at=principal.expires_at)


@router.handles(rq.Ping, public=True)
async def ping(ctx: Ctx, req: rq.Ping) -> rs.Pong:
    return rs.Pong(server_time=time.time())


@router.handles(rq.MeGet)
async def me_get(ctx: Ctx, req: rq.MeGet) -> rs.Profile:
    user = await users.get_user(ctx.services.pool, ctx.user.id)
    if user is None:
        raise ApiError(ErrorCode.AUTH_REQUIRED, "user no longer exists")
    return profile(user)


@router.handles(rq.MeUpdate)
async def me_update(ctx: Ctx, req: rq.MeUpdate) -> rs.Profile:
    user = await users.update_profile(
        ctx.services.pool,
        ctx.user.id,
        display_name=req.display_name,
        bio=req.bio,
        avatar_url=req.avatar_url,
    )
    if user is None:
        raise ApiError(ErrorCode.AUTH_REQUIRED, "user no longer exists")
    return profile(user)


@router.handles(rq.BalanceGet)
async def balance_get(ctx: Ctx, req: rq.BalanceGet) -> rs.Balance:
    return balance_payload(await ledger.balances(ctx.services.pool, ctx.user.id))


@router.handles(rq.PresenceGet)
async def presence_get(ctx: Ctx, req: rq.PresenceGet) -> rs.PresenceList:
    """Creators' presence is public; a fan's is visible to creators and to the fan.

    Answers across nodes from Redis; from this node only while Redis is down.
    """
    wanted = list(dict.fromkeys(req.users))
    rows = {u.id: u for u in await users.get_users(ctx.services.pool, wanted)}
    visible = [
        user_id
        for user_id in wanted
        if (row := rows.get(user_id)) is not None
        and row.active
        and (
            row.role == "creator" or ctx.user.role in ("creator", "admin") or row.id == ctx.user.id
        )
    ]
    online = await ctx.services.presence.online(visible)
    creators = [u for u in online if rows[u].role == "creator"]
    availability = await users.availability_of(ctx.services.pool, creators)
    out = [
        rs.UserPresence(
            user=user_id,
            online=user_id in online,
            availability=availability.get(user_id, "online") if user_id in online else "offline",  # type: ignore[arg-type]
        )
        for user_id in wanted
    ]
    return rs.PresenceList(users=out)
