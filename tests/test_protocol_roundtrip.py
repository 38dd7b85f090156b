"""Every message type survives encode/decode unchanged, in JSON and MessagePack."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import events as ev
from protocol.base import ServerMessage, type_tag
from protocol.codec import JSON, MSGPACK, Codec, DecodeFailure
from protocol.requests import CLIENT_REQUESTS
from protocol.results import RESULTS
from tests.strategies import for_type

CODECS = [JSON, MSGPACK]
EVENT_TYPES = [t for t in ev.SERVER_EVENTS]
RESULT_TYPES = sorted(set(RESULTS.values()), key=lambda c: c.__name__)
FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name)
@pytest.mark.parametrize("cls", CLIENT_REQUESTS, ids=type_tag)
@FAST
@given(data=st.data())
def test_requests_round_trip(codec: Codec, cls: type, data: st.DataObject) -> None:
    message = data.draw(for_type(cls))
    decoded = codec.decode_request(codec.encode(message), max_bytes=10**7)
    assert not isinstance(decoded, DecodeFailure), decoded
    assert decoded == message


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name)
@pytest.mark.parametrize("cls", EVENT_TYPES, ids=type_tag)
@FAST
@given(data=st.data())
def test_events_round_trip(codec: Codec, cls: type[ServerMessage], data: st.DataObject) -> None:
    message = data.draw(for_type(cls))
    assert codec.decode_server(codec.encode(message)) == message


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name)
@pytest.mark.parametrize("cls", RESULT_TYPES, ids=lambda c: c.__name__)
@FAST
@given(data=st.data(), re=st.text(min_size=1, max_size=64))
def test_results_round_trip(codec: Codec, cls: type, data: st.DataObject, re: str) -> None:
    payload = data.draw(for_type(cls))
    decoded = codec.decode_server(codec.encode(ev.Result(re=re, result=payload)))
    assert isinstance(decoded, ev.Result)
    assert decoded.re == re
    assert msgspec.convert(decoded.result, cls) == payload


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name)
@FAST
@given(envelope=for_type(ev.Error))
def test_error_envelope_round_trip(codec: Codec, envelope: ev.Error) -> None:
    assert codec.decode_server(codec.encode(envelope)) == envelope


def test_error_envelope_wire_shape() -> None:
    body = ev.ErrorBody(code="NOT_FOUND", message="stream not found", request_id="abc-1")
    encoded = JSON.encode(ev.Error(re="7", error=body))
    assert msgspec.json.decode(encoded) == {
        "type": "error",
        "re": "7",
        "error": {"code": "NOT_FOUND", "message": "stream not found", "requestId": "abc-1"},
    }


def test_every_request_has_a_typed_result() -> None:
    assert set(RESULTS) == set(CLIENT_REQUESTS)


def test_type_tags_are_unique() -> None:
    tags = [type_tag(c) for c in CLIENT_REQUESTS]
    assert len(tags) == len(set(tags))
    server_tags = [type_tag(c) for c in ev.SERVER_MESSAGES]
    assert len(server_tags) == len(set(server_tags))
