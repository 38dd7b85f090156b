"""The media-token interface the rest of the server uses.

:class:`MediaTokens` turns "this user may join/publish in this channel for N
seconds" into an Agora token in the configured format: AccessToken2 ("007",
the default and Agora's recommendation) or the legacy AccessToken ("006").
Without both an app id and an app certificate it is disabled and every request
raises :class:`MediaUnavailable`, so a deployment without Agora still runs.

The clock and the salt source are injectable so that tests can rebuild Agora's
known-answer tokens exactly.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Final, Literal

from server.agora import access_token2, legacy

Role = Literal["publisher", "subscriber"]

VERSIONS: Final = ("006", "007")

#: RTC privileges per role in a 007 token (the same grants as Agora's RtcTokenBuilder2).
RTC_ROLE_PRIVILEGES: Final[Mapping[Role, tuple[int, ...]]] = {
    "publisher": (
        access_token2.RTC_JOIN_CHANNEL,
        access_token2.RTC_PUBLISH_AUDIO_STREAM,
        access_token2.RTC_PUBLISH_VIDEO_STREAM,
        access_token2.RTC_PUBLISH_DATA_STREAM,
    ),
    "subscriber": (access_token2.RTC_JOIN_CHANNEL,),
}


class MediaUnavailable(Exception):
    """Agora is not configured (no app id or no certificate): no media token can be issued."""


class MediaTokens:
    """Issues Agora tokens; disabled (enabled == False) without app id + certificate.

    ``version`` is "007" (AccessToken2) or "006" (legacy); anything else is a
    ValueError. ``clock`` returns Unix seconds and is truncated to a whole
    second per token; ``salt`` returns a salt in 1..2**32-1 and defaults to a
    fresh random one per token.
    """

    def __init__(
        self,
        app_id: str | None,
        certificate: str | None,
        *,
        version: str = "007",
        clock: Callable[[], float] = time.time,
        salt: Callable[[], int] | None = None,
    ) -> None:
        if version not in VERSIONS:
            raise ValueError(f"Agora token version must be one of {VERSIONS}, got {version!r}")
        self._enabled = bool(app_id) and bool(certificate)
        self._app_id = (app_id or "") if self._enabled else ""
        self._certificate = (certificate or "") if self._enabled else ""
        self._version = version
        self._clock = clock
        self._salt = salt

    @property
    def enabled(self) -> bool:
        """True when both the app id and the certificate were given."""
        return self._enabled

    @property
    def app_id(self) -> str:
        """The Agora app id clients need alongside a token; "" when disabled."""
        return self._app_id

    @property
    def version(self) -> str:
        """The token format issued: "007" or "006"."""
        return self._version

    def rtc(self, channel: str, uid: int, role: Role, expires_in: int) -> tuple[str, float]:
        """RTC token for `channel`/`uid`; publisher may join+publish audio/video/data; subscriber may only join.

        Privileges and the token itself expire `expires_in` seconds from now. Returns
        (token, expires_at_unix). uid 0 lets any uid join. A 006 token itself lasts at most
        24 hours (Agora's legacy rule), so with 006 ``expires_at`` is capped at now + 24 h.
        Raises MediaUnavailable when disabled; ValueError for an empty channel, a uid outside
        0..2**32-1, an unknown role or a non-positive or oversized ``expires_in``.
        """
        self._require()
        if role not in RTC_ROLE_PRIVILEGES:
            raise ValueError(f"unknown RTC role {role!r}")
        if not channel:
            raise ValueError("channel must not be empty")
        account = access_token2.uid_string(uid)
        _check_expires_in(expires_in)
        now, salt = int(self._clock()), self._next_salt()
        if self._version == "007":
            privileges = dict.fromkeys(RTC_ROLE_PRIVILEGES[role], expires_in)
            return self._build_007(
                access_token2.RtcService(channel, account, privileges), expires_in, now, salt
            )
        token = legacy.rtc_token(
            self._app_id,
            self._certificate,
            channel,
            account,
            role,
            now + expires_in,
            ts=now + legacy.TOKEN_LIFETIME,
            salt=salt,
        )
        return token, float(now + min(expires_in, legacy.TOKEN_LIFETIME))

    def rtm(self, user_id: str, expires_in: int) -> tuple[str, float]:
        """RTM login token for user account `user_id`. Returns (token, expires_at_unix).

        Raises MediaUnavailable when disabled; ValueError for an empty ``user_id`` or a
        non-positive or oversized ``expires_in``. With 006, ``expires_at`` is capped at
        now + 24 h as for :meth:`rtc`.
        """
        self._require()
        if not user_id:
            raise ValueError("user_id must not be empty")
        _check_expires_in(expires_in)
        now, salt = int(self._clock()), self._next_salt()
        if self._version == "007":
            service = access_token2.RtmService(user_id, {access_token2.RTM_LOGIN: expires_in})
            return self._build_007(service, expires_in, now, salt)
        token = legacy.rtm_token(
            self._app_id,
            self._certificate,
            user_id,
            now + expires_in,
            ts=now + legacy.TOKEN_LIFETIME,
            salt=salt,
        )
        return token, float(now + min(expires_in, legacy.TOKEN_LIFETIME))

    def _build_007(
        self, service: access_token2.Service, expires_in: int, now: int, salt: int | None
    ) -> tuple[str, float]:
        token = access_token2.build(
            self._app_id,
            self._certificate,
            [service],
            expire=expires_in,
            issue_ts=now,
            salt=salt,
        )
        return token, float(now + expires_in)

    def _require(self) -> None:
        if not self._enabled:
            raise MediaUnavailable("Agora app id and certificate are not configured")

    def _next_salt(self) -> int | None:
        return None if self._salt is None else self._salt()


def _check_expires_in(expires_in: int) -> None:
    if (
        isinstance(expires_in, bool)
        or not isinstance(expires_in, int)
        or not 0 < expires_in <= access_token2.UINT32_MAX
    ):
        raise ValueError(f"expires_in must be a positive number of seconds, got {expires_in!r}")
