"""Nobody gets into what is not theirs, and learns nothing about it either."""

from __future__ import annotations

import pytest

from client import RequestError
from protocol import events as ev
from storage import users
from tests.conftest import RunningServer, quick_user, ring

HOSTILE = "Robert'); DROP TABLE users;-- <img src=x onerror=alert(1)> \u0007\u001b[31m\u202e end"


async def test_outsiders_cannot_touch_or_detect_a_private_call(server: RunningServer) -> None:
    fan = await quick_user(server, tokens=500)
    creator = await quick_user(server, "creator")
    intruder = await quick_user(server, tokens=500)
    async with (
        server.connect(creator.access_token) as c,
        server.connect(fan.access_token) as f,
        server.connect(intruder.access_token) as x,
    ):
        invite = await ring(f, c, creator.id)
        joined = await c.request("call.accept", invite=invite)
        for kind, fields in (
            ("session.resume", {"session": joined.session}),
            ("chat.send", {"session": joined.session, "text": "let me in"}),
            ("tip.send", {"session": joined.session, "amount": 1}),
            ("agora.token", {"session": joined.session, "kind": "rtc"}),
            ("call.end", {"session": joined.session}),
            ("typing", {"session": joined.session}),
            ("call.cancel", {"invite": invite}),
        ):
            with pytest.raises(RequestError) as refused:
                await x.request(kind, **fields)
            assert refused.value.code in ("NOT_FOUND", "INVALID_STATE"), kind
            # the answer for a real private session is the one for a made-up id
            if refused.value.code == "NOT_FOUND" and "session" in fields:
                with pytest.raises(RequestError) as made_up:
                    await x.request(kind, **{**fields, "session": "0" * 24})
                assert made_up.value.code == "NOT_FOUND"
        await f.request("chat.send", session=joined.session, text=HOSTILE)
        seen = await c.next_event(ev.SessionChat)
        assert isinstance(seen, ev.SessionChat) and seen.text == HOSTILE
        assert not [e for e in x.drain_events() if isinstance(e, ev.SessionEvent)]
        await f.request("call.end", session=joined.session)
    assert (await users.get_user(server.services.pool, intruder.id)) is not None


async def test_roles_cannot_be_assumed(server: RunningServer) -> None:
    fan = await quick_user(server)
    forged, _ = server.services.tokens.issue(fan.id, "creator")  # a token claiming a role
    async with server.connect(forged) as client:
        assert client.user.role == "fan"  # the role comes from the database, not the token
        for kind, fields, code in (
            ("stream.start", {"title": "mine now"}, "CREATOR_ONLY"),
            ("creator.rates.set", {"video": 1, "voice": 1}, "CREATOR_ONLY"),
            ("earnings.summary", {}, "CREATOR_ONLY"),
            ("payout.request", {"tokens": 5000}, "CREATOR_ONLY"),
        ):
            with pytest.raises(RequestError) as refused:
                await client.request(kind, **fields)
            assert refused.value.code == code


@pytest.mark.parametrize("status", ["disabled", "banned", "deleted"])
async def test_tokens_of_inactive_users_are_refused(server: RunningServer, status: str) -> None:
    user = await quick_user(server)
    await users.set_status(server.services.pool, user.id, status)
    async with server.connect(reconnect=False) as client:
        with pytest.raises(RequestError) as refused:
            await client.request("auth", token=user.access_token)
        assert refused.value.code == "AUTH_REQUIRED"


async def test_hostile_text_is_stored_and_returned_verbatim(server: RunningServer) -> None:
    creator = await quick_user(server, "creator")
    fan = await quick_user(server)
    async with server.connect(creator.access_token) as c, server.connect(fan.access_token) as f:
        started = await c.request("stream.start", title=HOSTILE[:140], category="x<y")
        assert started.stream.title == HOSTILE[:140]
        await f.request("stream.join", session=started.stream.session)
        await f.request("chat.send", session=started.stream.session, text=HOSTILE)
        line = await c.next_event(ev.SessionChat)
        assert isinstance(line, ev.SessionChat) and line.text == HOSTILE
        profile = await f.request("me.update", display_name=HOSTILE[:64], bio=HOSTILE)
        assert (profile.display_name, profile.bio) == (HOSTILE[:64], HOSTILE)
        with pytest.raises(RequestError) as nul:
            await f.request("chat.send", session=started.stream.session, text="nul\u0000here")
        assert nul.value.code == "VALIDATION_ERROR" and "NUL" in nul.value.message
        live = await f.request("streams.live")
        assert live.streams[0].title == HOSTILE[:140]
        await c.request("stream.end", session=started.stream.session)
    async with server.services.pool.acquire() as conn:
        stored = await conn.fetchval(
            "SELECT body FROM chat_messages WHERE stream_id = $1", started.stream.session
        )
        assert stored == HOSTILE
        assert await conn.fetchval("SELECT count(*) FROM users") >= 2
