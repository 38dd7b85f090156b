"""Register, log in, open /ws, authenticate, ping, read the balance."""

from __future__ import annotations

from tests.conftest import RunningServer, register_user


async def test_register_login_socket_ping_balance(server: RunningServer) -> None:
    user = await register_user(server)
    async with server.auth() as auth:
        pair = await auth.login(user.email, user.password)
    async with server.connect(pair.access_token) as client:
        assert client.user.id == user.id
        pong = await client.request("ping")
        assert pong.server_time > 0
        balance = await client.request("balance.get")
        assert (balance.balance, balance.held, balance.spendable) == (0, 0, 0)
