"""The code tables: complete, documented, ranges meaning what they say."""

from __future__ import annotations

from protocol.codes import CLOSES, ERRORS, CloseCode, ErrorCode, may_reconnect


def test_every_error_code_is_documented_with_an_http_status() -> None:
    assert set(ERRORS) == set(ErrorCode)
    for code, info in ERRORS.items():
        assert 400 <= info.http_status < 600, code
        assert len(info.description) > 20, code


def test_platform_codes_exist() -> None:
    for name in (
        "AUTH_REQUIRED",
        "INSUFFICIENT_TOKENS",
        "CREATOR_ONLY",
        "ADMIN_ONLY",
        "NOT_FOUND",
        "VALIDATION_ERROR",
        "RATE_LIMIT_EXCEEDED",
    ):
        assert ErrorCode(name).value == name


def test_every_close_code_is_documented() -> None:
    assert set(CLOSES) == set(CloseCode)


def test_close_code_ranges_decide_reconnecting() -> None:
    for code in CloseCode:
        value = int(code)
        if 4000 <= value <= 4499:
            assert may_reconnect(value), code
        elif 4500 <= value <= 4999:
            assert not may_reconnect(value), code
    assert may_reconnect(CloseCode.SERVICE_RESTART)
    assert may_reconnect(CloseCode.INTERNAL_ERROR)
    assert not may_reconnect(CloseCode.POLICY_VIOLATION)
    assert not may_reconnect(CloseCode.MESSAGE_TOO_BIG)
    assert CloseCode.AUTH_DEADLINE < 4500 and CloseCode.SLOW_CONSUMER < 4500
    assert CloseCode.ACCOUNT_DISABLED >= 4500 and CloseCode.UNSUPPORTED_PROTOCOL >= 4500
