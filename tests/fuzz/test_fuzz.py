"""Fuzzing in CI: a bounded atheris run, and hostile frames over real sockets."""

from __future__ import annotations

import json
import logging
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loadtest.wsclient import client_frame, upgrade_request
from protocol import events as ev
from protocol.base import type_tag
from protocol.codes import CloseCode, ErrorCode
from protocol.requests import CLIENT_REQUESTS
from tests.conftest import RunningServer, quick_user

HERE = Path(__file__).parent
FUZZ_RUNS = int(os.environ.get("DIGIS_FUZZ_RUNS", "20000"))


def test_atheris_finds_no_escaping_exception(tmp_path: Path) -> None:
    pytest.importorskip("atheris", reason="atheris is optional (pip install -e '.[fuzz]')")
    result = subprocess.run(
        [sys.executable, str(HERE / "fuzz_decoder.py"), f"-runs={FUZZ_RUNS}", "-max_len=2048"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=HERE.parent.parent,
        env={**os.environ, "PYTHONPATH": str(HERE.parent.parent)},
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"Done {FUZZ_RUNS} runs" in result.stderr


JUNK = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=300)
    | st.just("x" * 5000)
    | st.just("<script>alert(1)</script>'; DROP TABLE users; --\x00\x07"),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=20,
)
FIELDS = [
    "session",
    "amount",
    "text",
    "to",
    "key",
    "creator",
    "invite",
    "token",
    "users",
    "limit",
    "before",
    "kind",
    "gift",
    "emoji",
    "title",
    "package",
    "tokens",
    "lastSeq",
]


@st.composite
def hostile_frame(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from([type_tag(c) for c in CLIENT_REQUESTS] + ["nope", ""]))
    body: dict[str, object] = {"type": kind, "id": draw(st.text(min_size=1, max_size=8))}
    for field in draw(st.lists(st.sampled_from(FIELDS), max_size=4, unique=True)):
        body[field] = draw(JUNK)
    text = json.dumps(body, allow_nan=True)
    if draw(st.booleans()):
        text = text[: draw(st.integers(min_value=0, max_value=len(text)))]  # truncated
    return text


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(frames=st.lists(hostile_frame(), min_size=1, max_size=12))
async def test_hostile_frames_get_documented_errors_and_the_socket_survives(
    server: RunningServer, frames: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    user = await quick_user(server, tokens=5)
    caplog.set_level(logging.ERROR)
    async with server.connect(user.access_token, reconnect=False) as client:
        for frame in frames:
            await client.send_raw(frame)
        assert (await client.request("ping")).server_time > 0
        assert client.connected
        for event in client.drain_events():
            if isinstance(event, ev.Error):
                assert event.error.code in {c.value for c in ErrorCode}
                assert event.error.code != "INTERNAL_ERROR", event
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


async def test_invalid_utf8_in_a_text_frame_closes_1007_others_unaffected(
    server: RunningServer,
) -> None:
    import asyncio

    user = await quick_user(server)
    async with server.connect(user.access_token) as bystander:
        host, port, request, _accept = upgrade_request(server.ws_url)
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(request)
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        assert b"101" in head.split(b"\r\n", 1)[0]
        writer.write(client_frame(b'{"type":"ping","id":"\xff\xfe"}'))
        await writer.drain()
        data = await asyncio.wait_for(reader.read(4096), 5)
        while len(data) < 4 or data.find(b"\x88") < 0:
            more = await asyncio.wait_for(reader.read(4096), 5)
            if not more:
                break
            data += more
        close = data[data.find(b"\x88") :]
        code = struct.unpack("!H", close[2:4])[0]
        assert code == CloseCode.INVALID_DATA
        writer.close()
        assert (await bystander.request("ping")).server_time > 0
