"""Bad frames become documented errors; the decoder itself never raises."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import requests as rq
from protocol.base import Request
from protocol.codec import JSON, MSGPACK, DecodeFailure
from protocol.codes import ErrorCode


def failure(data: bytes | str, codec=JSON, max_bytes: int = 65536) -> DecodeFailure:
    result = codec.decode_request(data, max_bytes)
    assert isinstance(result, DecodeFailure), result
    return result


@pytest.mark.parametrize(
    ("frame", "code", "re"),
    [
        (b"\x00\xffgarbage", ErrorCode.MALFORMED_FRAME, None),
        (b'{"type": "ping", "id": "1"', ErrorCode.MALFORMED_FRAME, None),
        (b"[1, 2, 3]", ErrorCode.MALFORMED_FRAME, None),
        (b'"just a string"', ErrorCode.MALFORMED_FRAME, None),
        (b'{"type": "no.such.thing", "id": "9"}', ErrorCode.UNKNOWN_TYPE, "9"),
        (b'{"id": "3"}', ErrorCode.VALIDATION_ERROR, "3"),
        (b'{"type": 5, "id": "4"}', ErrorCode.VALIDATION_ERROR, "4"),
        (b'{"type": "ping"}', ErrorCode.VALIDATION_ERROR, None),
        (b'{"type": "ping", "id": ""}', ErrorCode.VALIDATION_ERROR, None),
        (b'{"type": "tip.send", "id": "5", "session": "s1"}', ErrorCode.VALIDATION_ERROR, "5"),
        (
            b'{"type": "tip.send", "id": "6", "session": "s1", "amount": "ten"}',
            ErrorCode.VALIDATION_ERROR,
            "6",
        ),
        (
            b'{"type": "tip.send", "id": "7", "session": "s1", "amount": -3}',
            ErrorCode.VALIDATION_ERROR,
            "7",
        ),
        (
            b'{"type": "tip.send", "id": "8", "session": "s1", "amount": 1e999}',
            ErrorCode.VALIDATION_ERROR,
            "8",
        ),
        (
            b'{"type": "chat.send", "id": "x", "session": "s", "text": "' + b"a" * 501 + b'"}',
            ErrorCode.VALIDATION_ERROR,
            "x",
        ),
    ],
)
def test_bad_json_frames(frame: bytes, code: ErrorCode, re: str | None) -> None:
    result = failure(frame)
    assert result.code is code
    assert result.re == re
    assert result.message


def test_validation_message_names_the_field() -> None:
    result = failure(b'{"type": "tip.send", "id": "7", "session": "s1", "amount": -3}')
    assert "amount" in result.message


def test_oversized_message_is_refused_before_parsing() -> None:
    big = b'{"type": "ping", "id": "1", "pad": "' + b"x" * 70_000 + b'"}'
    assert failure(big).code is ErrorCode.FRAME_TOO_LARGE
    assert failure(big.decode()).code is ErrorCode.FRAME_TOO_LARGE


def test_deep_nesting_is_malformed_not_a_crash() -> None:
    deep = "[" * 50_000 + "]" * 50_000
    assert failure(deep, max_bytes=10**6).code is ErrorCode.MALFORMED_FRAME
    nested = '{"type":"ping","id":"1","x":' + '{"a":' * 5000 + "1" + "}" * 5000 + "}"
    result = JSON.decode_request(nested, 10**6)
    assert isinstance(result, (rq.Ping, DecodeFailure))


def test_huge_integers_are_validation_errors() -> None:
    frame = (
        b'{"type": "tip.send", "id": "9", "session": "s", "amount": 123456789012345678901234567890}'
    )
    result = failure(frame)
    assert result.code is ErrorCode.VALIDATION_ERROR and result.re == "9"


def test_unknown_fields_are_ignored_for_forward_compatibility() -> None:
    result = JSON.decode_request(b'{"type": "ping", "id": "1", "future": {"x": [1]}}')
    assert result == rq.Ping(id="1")


def test_msgpack_socket_rejects_text_frames_and_garbage() -> None:
    assert failure('{"type":"ping","id":"1"}', MSGPACK).code is ErrorCode.MALFORMED_FRAME
    assert failure(b"\xc1\xc1", MSGPACK).code is ErrorCode.MALFORMED_FRAME
    unknown = msgspec.msgpack.encode({"type": "nope", "id": "2"})
    assert failure(unknown, MSGPACK).code is ErrorCode.UNKNOWN_TYPE


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    for codec in (JSON, MSGPACK):
        result = codec.decode_request(data)
        if isinstance(result, DecodeFailure):
            assert result.code in set(ErrorCode)
        else:
            assert isinstance(result, Request)


@settings(max_examples=300, deadline=None)
@given(
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers(min_value=-(2**63), max_value=2**64 - 1)
        | st.floats()
        | st.text(max_size=10),
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(st.text(max_size=8), children, max_size=4)
        ),
        max_leaves=30,
    ),
    st.sampled_from(["ping", "tip.send", "chat.send", "call.invite", "x"]),
)
def test_structurally_hostile_objects_never_raise(value: object, kind: str) -> None:
    frame = {"type": kind, "id": "h", "session": value, "amount": value, "text": value}
    for codec in (JSON, MSGPACK):
        data = msgspec.json.encode(frame) if codec is JSON else msgspec.msgpack.encode(frame)
        result = codec.decode_request(data)
        if isinstance(result, DecodeFailure):
            assert result.code in set(ErrorCode)
