"""Agora tokens over the socket: only members get them, and money bounds the fan's."""

from __future__ import annotations

import time

import pytest

from client import RequestError
from protocol import events as ev
from server.agora import access_token2
from tests.conftest import quick_user, ring

APP_ID = "970CA35de60c44645bbae8a215061b33"
CERTIFICATE = "5CFd2fd1755d40ecb72977518be15d3b"


async def test_call_tokens_members_only_and_fan_bounded_by_prepaid_time(make_server) -> None:
    server = await make_server(
        agora_app_id=APP_ID, agora_app_certificate=CERTIFICATE, call_hold_seconds=60
    )
    fan = await quick_user(server, tokens=90)
    creator = await quick_user(server, "creator")
    stranger = await quick_user(server, tokens=10)
    async with (
        server.connect(creator.access_token) as c,
        server.connect(fan.access_token) as f,
        server.connect(stranger.access_token) as s,
    ):
        await c.request("creator.rates.set", video=60, voice=60)
        joined = await c.request("call.accept", invite=await ring(f, c, creator.id))
        started = await f.next_event(ev.CallStarted)
        assert isinstance(started, ev.CallStarted)
        assert joined.media_error == "" and {m.kind for m in joined.media} == {"rtc", "rtm"}
        for media in (*joined.media, *started.call.media):
            assert media.token.startswith("007") and media.app_id == APP_ID
            assert media.channel == joined.session and media.role == "publisher"
        fan_rtc = next(m for m in started.call.media if m.kind == "rtc")
        creator_rtc = next(m for m in joined.media if m.kind == "rtc")
        now = time.time()
        # 60 s held at 1 token/s, plus the 30 s margin: never the default hour
        assert fan_rtc.expires_at - now <= 60 + 30 + 2
        assert creator_rtc.expires_at - now > 3000
        decoded = access_token2.decode(fan_rtc.token)
        assert decoded.signature_ok(CERTIFICATE)
        renewed = await f.request("agora.token", session=joined.session, kind="rtc")
        assert renewed.uid == fan.id and renewed.expires_at - time.time() <= 92
        with pytest.raises(RequestError) as outsider:
            await s.request("agora.token", session=joined.session, kind="rtc")
        assert outsider.value.code == "NOT_FOUND"
        with pytest.raises(RequestError) as unknown:
            await s.request("agora.token", session="no-such-session")
        assert unknown.value.code == "NOT_FOUND"
        await f.request("call.end", session=joined.session)


async def test_stream_roles_and_unconfigured_media(make_server) -> None:
    server = await make_server(agora_app_id=APP_ID, agora_app_certificate=CERTIFICATE)
    creator = await quick_user(server, "creator")
    viewer = await quick_user(server)
    async with server.connect(creator.access_token) as c, server.connect(viewer.access_token) as v:
        started = await c.request("stream.start", title="Media")
        assert {m.role for m in started.media} == {"publisher"}
        joined = await v.request("stream.join", session=started.stream.session)
        assert {m.role for m in joined.media} == {"subscriber"}
        await c.request("stream.end", session=started.stream.session)
    plain = await make_server()
    creator = await quick_user(plain, "creator")
    async with plain.connect(creator.access_token) as c:
        started = await c.request("stream.start", title="No media")
        assert started.media == [] and "AGORA_APP_ID" in started.media_error
        with pytest.raises(RequestError) as unavailable:
            await c.request("agora.token", session=started.stream.session)
        assert unavailable.value.code == "MEDIA_UNAVAILABLE"
        await c.request("stream.end", session=started.stream.session)
