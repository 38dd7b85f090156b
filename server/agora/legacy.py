"""Legacy Agora AccessToken ("006") through the ``agora-token-builder`` package.

The package's public builders (``RtcTokenBuilder``, ``RtmTokenBuilder``) draw
the salt and the timestamp themselves, so this module drives its
``AccessToken`` class directly: it adds the same privileges the builders add
and, when the caller injects them, overrides ``salt`` and ``ts`` before
signing. The role → privilege table below mirrors the package's builders
(a test checks that against the builders' own output).

Every value in a 006 token is an *absolute* Unix time: ``ts`` (the package sets
it to now + 24 h, the token's own validity) and each privilege's expiry.
The untyped library stays inside this module; callers see ``str`` and ``int``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, Literal

from agora_token_builder.AccessToken import AccessToken as _LibraryAccessToken

VERSION = "006"

JOIN_CHANNEL = 1
PUBLISH_AUDIO_STREAM = 2
PUBLISH_VIDEO_STREAM = 3
PUBLISH_DATA_STREAM = 4
RTM_LOGIN = 1000

#: How long the package makes a 006 token itself valid (its ``ts`` is now + this).
TOKEN_LIFETIME: Final = 24 * 3600

Role = Literal["publisher", "subscriber"]

#: Privileges per RTC role, as the package's RtcTokenBuilder grants them.
ROLE_PRIVILEGES: Final[Mapping[Role, tuple[int, ...]]] = {
    "publisher": (JOIN_CHANNEL, PUBLISH_AUDIO_STREAM, PUBLISH_VIDEO_STREAM, PUBLISH_DATA_STREAM),
    "subscriber": (JOIN_CHANNEL,),
}

_UINT32_MAX = 0xFFFF_FFFF


def _uint32(value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _UINT32_MAX:
        raise ValueError(f"{what} must be an integer in [0, {_UINT32_MAX}], got {value!r}")
    return value


def build(
    app_id: str,
    app_certificate: str,
    channel_name: str,
    uid: str,
    privileges: Mapping[int, int],
    *,
    ts: int | None = None,
    salt: int | None = None,
) -> str:
    """Return a signed "006" token granting ``privileges`` (privilege → absolute expiry).

    ``uid`` is the account string as signed (``""`` for uid 0). ``ts`` and
    ``salt`` default to the package's own choice (now + 24 h, a random salt).
    Raises ValueError when a time, salt or privilege does not fit a uint32/uint16.
    """
    token: Any = _LibraryAccessToken(app_id, app_certificate, channel_name, uid)
    if ts is not None:
        token.ts = _uint32(ts, "ts")
    if salt is not None:
        token.salt = _uint32(salt, "salt")
    for privilege, expire in privileges.items():
        if not 0 <= privilege <= 0xFFFF:
            raise ValueError(f"privilege {privilege!r} does not fit a uint16")
        token.addPrivilege(privilege, _uint32(expire, "privilege expiry"))
    result = token.build()
    if not isinstance(result, str):
        raise TypeError("agora_token_builder returned a non-string token")
    return result


def rtc_token(
    app_id: str,
    app_certificate: str,
    channel_name: str,
    uid: str,
    role: Role,
    privilege_expire_ts: int,
    *,
    ts: int | None = None,
    salt: int | None = None,
) -> str:
    """An RTC token as ``RtcTokenBuilder.buildTokenWithAccount`` makes it.

    A publisher may join and publish audio, video and data; a subscriber may
    only join. All privileges expire at the absolute ``privilege_expire_ts``.
    """
    if role not in ROLE_PRIVILEGES:
        raise ValueError(f"unknown RTC role {role!r}")
    privileges = dict.fromkeys(ROLE_PRIVILEGES[role], privilege_expire_ts)
    return build(app_id, app_certificate, channel_name, uid, privileges, ts=ts, salt=salt)


def rtm_token(
    app_id: str,
    app_certificate: str,
    user_account: str,
    privilege_expire_ts: int,
    *,
    ts: int | None = None,
    salt: int | None = None,
) -> str:
    """An RTM login token as ``RtmTokenBuilder.buildToken`` makes it.

    The account goes in the channel-name slot with an empty uid, as the
    package does; the login privilege expires at ``privilege_expire_ts``.
    """
    privileges = {RTM_LOGIN: privilege_expire_ts}
    return build(app_id, app_certificate, user_account, "", privileges, ts=ts, salt=salt)
