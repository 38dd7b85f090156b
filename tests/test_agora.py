"""Agora media tokens: Agora's known-answer vectors, the issuer contract, the 007 parser.

The vectors (``tests/fixtures/agora/vectors.json``) come from AgoraIO/Tools'
own tests; each records every input, including the salt and clock values the
reference builders normally randomise, so the strings must match byte for byte.
"""

from __future__ import annotations

import base64
import json
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from agora_token_builder.AccessToken import AccessToken as LibraryAccessToken
from agora_token_builder.RtcTokenBuilder import RtcTokenBuilder
from agora_token_builder.RtmTokenBuilder import RtmTokenBuilder

from server.agora import access_token2 as a2
from server.agora import legacy
from server.agora.issuer import MediaTokens, MediaUnavailable

FIXTURE = Path(__file__).parent / "fixtures" / "agora" / "vectors.json"
DATA: dict[str, Any] = json.loads(FIXTURE.read_text("utf-8"))
VECTORS: dict[str, dict[str, Any]] = {v["id"]: v for v in DATA["vectors"]}

APP_ID = "970CA35de60c44645bbae8a215061b33"
CERT = "5CFd2fd1755d40ecb72977518be15d3b"
CHANNEL = "7d72365eb983485397e3e3f9d460bdda"
UID = 2882341273
#: 006 vectors were built with ts = 1111111; the issuer sets ts = now + 24 h.
NOW_006 = 1111111 - legacy.TOKEN_LIFETIME
#: ... and every 006 privilege expires at 1446455471, i.e. this many seconds after NOW_006.
EXPIRES_IN_006 = 1446455471 - NOW_006
NOW_007 = 1111111


def _privileges(raw: dict[str, int]) -> dict[int, int]:
    return {int(key): value for key, value in raw.items()}


def _service(spec: dict[str, Any]) -> a2.Service:
    privileges = _privileges(spec["privileges"])
    match spec["service"]:
        case "rtc":
            return a2.RtcService(spec["channel_name"], spec["uid"], privileges)
        case "rtm":
            return a2.RtmService(spec["user_id"], privileges)
        case "fpa":
            return a2.FpaService(privileges)
        case "chat":
            return a2.ChatService(spec["user_id"], privileges)
        case "apaas":
            return a2.ApaasService(spec["room_uuid"], spec["user_uuid"], spec["role"], privileges)
    raise AssertionError(f"vector uses unknown service {spec['service']!r}")


def _build_vector(vector: dict[str, Any]) -> str:
    inputs = vector["inputs"]
    if vector["version"] == "006":
        return legacy.build(
            inputs["app_id"],
            inputs["app_certificate"],
            inputs["channel_name"],
            inputs["uid"],
            _privileges(inputs["privileges"]),
            ts=inputs["ts"],
            salt=inputs["salt"],
        )
    return a2.build(
        inputs["app_id"],
        inputs["app_certificate"],
        [_service(spec) for spec in inputs["services"]],
        expire=inputs["expire"],
        issue_ts=inputs["issue_ts"],
        salt=inputs["salt"],
    )


def _tokens(version: str, *, now: int = NOW_007, salt: int = 1) -> MediaTokens:
    return MediaTokens(APP_ID, CERT, version=version, clock=lambda: float(now), salt=lambda: salt)


def _legacy_privileges(token: str) -> tuple[int, int, dict[int, int]]:
    """(salt, ts, privileges) of a 006 token, read back by the library's own parser."""
    parsed: Any = LibraryAccessToken()
    assert parsed.fromString(token)
    return int(parsed.salt), int(parsed.ts), dict(parsed.messages)


# -- known-answer vectors ------------------------------------------------------------------------


def test_fixture_holds_twelve_vectors() -> None:
    assert len(VECTORS) == 12
    assert sum(v["version"] == "006" for v in VECTORS.values()) == 5
    assert sum(v["version"] == "007" for v in VECTORS.values()) == 7


@pytest.mark.parametrize("name", sorted(VECTORS))
def test_vector_reproduced_by_low_level_builder(name: str) -> None:
    vector = VECTORS[name]
    assert _build_vector(vector) == vector["expected"]


#: (vector, version, how MediaTokens is called, expected expires_at)
ISSUER_CASES: list[tuple[str, str, Callable[[MediaTokens], tuple[str, float]], int]] = [
    ("007_rtc_publisher_uid", "007", lambda m: m.rtc(CHANNEL, UID, "publisher", 600), 1111711),
    ("007_rtc_join_uid", "007", lambda m: m.rtc(CHANNEL, UID, "subscriber", 600), 1111711),
    ("007_rtc_join_uid0", "007", lambda m: m.rtc(CHANNEL, 0, "subscriber", 600), 1111711),
    ("007_rtm_login", "007", lambda m: m.rtm("test_user", 600), 1111711),
    (
        "006_rtc_publisher_uid",
        "006",
        lambda m: m.rtc(CHANNEL, UID, "publisher", EXPIRES_IN_006),
        1111111,
    ),
    (
        "006_rtc_subscriber_uid_builder",
        "006",
        lambda m: m.rtc(CHANNEL, UID, "subscriber", EXPIRES_IN_006),
        1111111,
    ),
    (
        "006_rtc_join_uid",
        "006",
        lambda m: m.rtc(CHANNEL, UID, "subscriber", EXPIRES_IN_006),
        1111111,
    ),
    (
        "006_rtc_join_uid0",
        "006",
        lambda m: m.rtc(CHANNEL, 0, "subscriber", EXPIRES_IN_006),
        1111111,
    ),
    ("006_rtm_login", "006", lambda m: m.rtm("test_user", EXPIRES_IN_006), 1111111),
]


@pytest.mark.parametrize(
    ("name", "version", "call", "expires_at"), ISSUER_CASES, ids=[c[0] for c in ISSUER_CASES]
)
def test_vector_reproduced_by_media_tokens(
    name: str, version: str, call: Callable[[MediaTokens], tuple[str, float]], expires_at: int
) -> None:
    now = NOW_007 if version == "007" else NOW_006
    token, at = call(_tokens(version, now=now))
    assert token == VECTORS[name]["expected"]
    # 006 tokens themselves last 24 h at most, so the huge vector lifetime is capped there.
    assert at == expires_at


def test_006_expires_at_is_now_plus_expires_in_within_a_day() -> None:
    _, at = _tokens("006", now=1_700_000_000).rtc(CHANNEL, UID, "publisher", 3600)
    assert at == 1_700_003_600.0


@pytest.mark.parametrize("name", [n for n in sorted(VECTORS) if n.startswith("007")])
def test_007_vector_decodes_to_its_inputs(name: str) -> None:
    inputs = VECTORS[name]["inputs"]
    decoded = a2.decode(VECTORS[name]["expected"])
    assert (decoded.app_id, decoded.issue_ts, decoded.expire, decoded.salt) == (
        inputs["app_id"],
        inputs["issue_ts"],
        inputs["expire"],
        inputs["salt"],
    )
    assert list(decoded.services) == [_service(spec) for spec in inputs["services"]]
    assert decoded.signature_ok(CERT)
    assert not decoded.signature_ok("0" * 32)


# -- the library's builders agree with our 006 role table --------------------------------------


@pytest.mark.parametrize(("role", "library_role"), [("publisher", 1), ("subscriber", 2)])
def test_006_rtc_matches_library_builder(role: legacy.Role, library_role: int) -> None:
    expected = RtcTokenBuilder.buildTokenWithUid(APP_ID, CERT, CHANNEL, UID, library_role, 2 << 30)
    salt, ts, _ = _legacy_privileges(expected)
    ours = legacy.rtc_token(APP_ID, CERT, CHANNEL, str(UID), role, 2 << 30, ts=ts, salt=salt)
    assert ours == expected


def test_006_rtm_matches_library_builder() -> None:
    expected = RtmTokenBuilder.buildToken(APP_ID, CERT, "someone", 1, 2 << 30)
    salt, ts, _ = _legacy_privileges(expected)
    assert legacy.rtm_token(APP_ID, CERT, "someone", 2 << 30, ts=ts, salt=salt) == expected


# -- the issuer contract -------------------------------------------------------------------------


@pytest.mark.parametrize(("app_id", "cert"), [(None, None), (APP_ID, None), (None, CERT), ("", "")])
@pytest.mark.parametrize("version", ["006", "007"])
def test_disabled_issuer_raises(app_id: str | None, cert: str | None, version: str) -> None:
    tokens = MediaTokens(app_id, cert, version=version)
    assert tokens.enabled is False
    assert tokens.app_id == ""
    with pytest.raises(MediaUnavailable):
        tokens.rtc(CHANNEL, UID, "publisher", 600)
    with pytest.raises(MediaUnavailable):
        tokens.rtm("someone", 600)


def test_enabled_issuer_exposes_app_id() -> None:
    tokens = MediaTokens(APP_ID, CERT)
    assert tokens.enabled is True
    assert tokens.app_id == APP_ID
    assert tokens.version == "007"


def test_unknown_version_is_rejected() -> None:
    with pytest.raises(ValueError, match="version"):
        MediaTokens(APP_ID, CERT, version="005")


@pytest.mark.parametrize("version", ["006", "007"])
def test_tokens_carry_their_version_prefix(version: str) -> None:
    tokens = MediaTokens(APP_ID, CERT, version=version)
    assert tokens.rtc(CHANNEL, UID, "publisher", 600)[0].startswith(version)
    assert tokens.rtm("someone", 600)[0].startswith(version)


@pytest.mark.parametrize(
    "bad",
    [
        lambda m: m.rtc("", UID, "publisher", 600),
        lambda m: m.rtc(CHANNEL, -1, "publisher", 600),
        lambda m: m.rtc(CHANNEL, 2**32, "publisher", 600),
        lambda m: m.rtc(CHANNEL, UID, "admin", 600),
        lambda m: m.rtc(CHANNEL, UID, "publisher", 0),
        lambda m: m.rtc(CHANNEL, UID, "publisher", 2**32),
        lambda m: m.rtm("", 600),
        lambda m: m.rtm("someone", -5),
    ],
)
@pytest.mark.parametrize("version", ["006", "007"])
def test_invalid_requests_are_value_errors(
    bad: Callable[[MediaTokens], object], version: str
) -> None:
    with pytest.raises(ValueError):
        bad(_tokens(version))


@pytest.mark.parametrize(("role", "granted"), [("publisher", {1, 2, 3, 4}), ("subscriber", {1})])
def test_007_rtc_token_decodes_to_what_was_asked(role: legacy.Role, granted: set[int]) -> None:
    token, expires_at = _tokens("007", now=1_700_000_000, salt=42).rtc(CHANNEL, 7, role, 900)
    raw = zlib.decompress(base64.b64decode(token[3:]))
    assert raw.startswith(a2.pack_uint16(32))  # the signature: a 32-byte HMAC-SHA256
    decoded = a2.decode(token)
    assert decoded.signature_ok(CERT)
    assert (decoded.app_id, decoded.issue_ts, decoded.expire, decoded.salt) == (
        APP_ID,
        1_700_000_000,
        900,
        42,
    )
    assert expires_at == 1_700_000_900.0
    assert decoded.services == (a2.RtcService(CHANNEL, "7", dict.fromkeys(granted, 900)),)


def test_007_rtm_token_decodes_to_a_login_privilege() -> None:
    token, expires_at = _tokens("007", now=1_700_000_000).rtm("user-1", 120)
    decoded = a2.decode(token)
    assert decoded.expire == 120
    assert decoded.services == (a2.RtmService("user-1", {a2.RTM_LOGIN: 120}),)
    assert expires_at == 1_700_000_120.0


def test_006_privilege_sets_follow_the_role() -> None:
    tokens = _tokens("006", now=1_700_000_000, salt=9)
    publisher, _ = tokens.rtc(CHANNEL, UID, "publisher", 600)
    subscriber, _ = tokens.rtc(CHANNEL, UID, "subscriber", 600)
    rtm, _ = tokens.rtm("someone", 600)
    expiry = 1_700_000_600
    assert _legacy_privileges(publisher) == (9, 1_700_086_400, dict.fromkeys([1, 2, 3, 4], expiry))
    assert _legacy_privileges(subscriber) == (9, 1_700_086_400, {1: expiry})
    assert _legacy_privileges(rtm) == (9, 1_700_086_400, {legacy.RTM_LOGIN: expiry})


@pytest.mark.parametrize("version", ["006", "007"])
def test_different_inputs_give_different_tokens(version: str) -> None:
    tokens = _tokens(version)
    made = {
        tokens.rtc(CHANNEL, UID, "publisher", 600)[0],
        tokens.rtc(CHANNEL, UID, "subscriber", 600)[0],
        tokens.rtc("other-channel", UID, "publisher", 600)[0],
        tokens.rtc(CHANNEL, UID + 1, "publisher", 600)[0],
        tokens.rtc(CHANNEL, 0, "publisher", 600)[0],
        tokens.rtm("someone", 600)[0],
        tokens.rtm("someone-else", 600)[0],
    }
    assert len(made) == 7


def test_publisher_and_subscriber_privileges_differ() -> None:
    tokens = _tokens("007")
    publisher = a2.decode(tokens.rtc(CHANNEL, UID, "publisher", 600)[0]).services[0]
    subscriber = a2.decode(tokens.rtc(CHANNEL, UID, "subscriber", 600)[0]).services[0]
    assert set(subscriber.privileges) < set(publisher.privileges)
    assert a2.RTC_PUBLISH_AUDIO_STREAM not in subscriber.privileges


@pytest.mark.parametrize("version", ["006", "007"])
def test_default_salt_is_random(version: str) -> None:
    tokens = MediaTokens(APP_ID, CERT, version=version, clock=lambda: 1_700_000_000.0)
    assert (
        tokens.rtc(CHANNEL, UID, "publisher", 600)[0]
        != tokens.rtc(CHANNEL, UID, "publisher", 600)[0]
    )


def test_default_issue_time_is_now_and_salt_in_range() -> None:
    import time

    before = int(time.time())
    decoded = a2.decode(a2.build(APP_ID, CERT, [a2.FpaService({a2.FPA_LOGIN: 0})], expire=60))
    assert before <= decoded.issue_ts <= int(time.time())
    assert 1 <= decoded.salt <= a2.SALT_MAX


# -- low-level edge cases ------------------------------------------------------------------------


def test_packing_is_little_endian_and_length_prefixed() -> None:
    assert a2.pack_uint16(0x0102) == b"\x02\x01"
    assert a2.pack_uint32(0x01020304) == b"\x04\x03\x02\x01"
    assert a2.pack_int16(-1) == b"\xff\xff"
    assert a2.pack_string("hé") == b"\x03\x00h\xc3\xa9"
    assert (
        a2.pack_privileges({4: 1, 1: 2})
        == b"\x02\x00\x01\x00\x02\x00\x00\x00\x04\x00\x01\x00\x00\x00"
    )
    assert a2.uid_string(0) == ""
    assert a2.uid_string(UID) == str(UID)


@pytest.mark.parametrize(
    "bad",
    [
        lambda: a2.pack_uint16(-1),
        lambda: a2.pack_uint16(0x10000),
        lambda: a2.pack_uint32(2**32),
        lambda: a2.pack_int16(0x8000),
        lambda: a2.pack_bytes(b"x" * 0x10000),
        lambda: a2.uid_string(-1),
        lambda: a2.build(APP_ID, CERT, [a2.FpaService(), a2.FpaService()], expire=1),
        lambda: a2.build(APP_ID, CERT, [a2.FpaService({1: -1})], expire=1),
        lambda: legacy.build(APP_ID, CERT, CHANNEL, "", {1: 2**32}),
        lambda: legacy.build(APP_ID, CERT, CHANNEL, "", {0x10000: 1}),
        lambda: legacy.build(APP_ID, CERT, CHANNEL, "", {1: 1}, salt=-1),
    ],
)
def test_out_of_range_values_are_value_errors(bad: Callable[[], object]) -> None:
    with pytest.raises(ValueError):
        bad()


@pytest.mark.parametrize(
    "token",
    [
        "",
        "006abc",
        "007!!!",
        "007" + base64.b64encode(b"not zlib").decode(),
        "007" + base64.b64encode(zlib.compress(b"\x20\x00short")).decode(),
        VECTORS["007_rtm_login"]["expected"][:-8],
        "007"
        + base64.b64encode(
            zlib.compress(b"\x00\x00" + b"\x00\x00" + b"\x00" * 12 + b"\x01\x00\x03\x00\x00\x00")
        ).decode(),
    ],
)
def test_malformed_007_tokens_are_value_errors(token: str) -> None:
    with pytest.raises(ValueError):
        a2.decode(token)


def test_trailing_bytes_are_rejected() -> None:
    raw = zlib.decompress(base64.b64decode(VECTORS["007_rtm_login"]["expected"][3:]))
    with pytest.raises(ValueError, match="trailing"):
        a2.decode("007" + base64.b64encode(zlib.compress(raw + b"\x00")).decode())
