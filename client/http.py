"""HTTP calls of the SDK: register, log in, refresh (aiohttp client)."""

from __future__ import annotations

from typing import Any

import aiohttp
import msgspec

from client.sdk import RequestError
from protocol.events import Error
from protocol.http import TokenPair


class AuthClient:
    """Talks to ``/auth/*`` on one server; reuse it for many calls."""

    def __init__(self, base_url: str, session: aiohttp.ClientSession | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._session = session
        self._own = session is None

    async def __aenter__(self) -> AuthClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._own and self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    async def post(self, path: str, body: dict[str, Any]) -> tuple[int, bytes]:
        async with self._http().post(self.base_url + path, json=body) as response:
            return response.status, await response.read()

    async def _pair(self, path: str, body: dict[str, Any]) -> TokenPair:
        status, raw = await self.post(path, body)
        if status >= 400:
            error = msgspec.json.decode(raw, type=Error)
            raise RequestError(error.error.code, error.error.message, error.error.request_id, None)
        return msgspec.json.decode(raw, type=TokenPair)

    async def register(
        self, email: str, username: str, password: str, role: str = "fan", display_name: str = ""
    ) -> TokenPair:
        return await self._pair(
            "/auth/register",
            {
                "email": email,
                "username": username,
                "password": password,
                "role": role,
                "displayName": display_name,
            },
        )

    async def login(self, email: str, password: str) -> TokenPair:
        return await self._pair("/auth/login", {"email": email, "password": password})

    async def refresh(self, refresh_token: str) -> TokenPair:
        return await self._pair("/auth/refresh", {"refreshToken": refresh_token})
