"""The exception handlers raise to answer with an error envelope."""

from __future__ import annotations

from protocol.codes import CloseCode, ErrorCode


class ApiError(Exception):
    """A request failed for a documented reason; nothing was changed.

    With ``close_code`` the socket is closed with that code right after the
    error envelope is sent (HTTP ignores it).
    """

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        *,
        retry_after_ms: int | None = None,
        close_code: CloseCode | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after_ms = retry_after_ms
        self.close_code = close_code


def not_found(what: str) -> ApiError:
    return ApiError(ErrorCode.NOT_FOUND, f"{what} not found")


def invalid(message: str) -> ApiError:
    return ApiError(ErrorCode.VALIDATION_ERROR, message)
