"""The exception handlers raise to answer with an error envelope."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from billing.ledger import (
    IdempotencyConflict,
    InsufficientTokens,
    LedgerError,
    LedgerUnavailable,
    UnknownAccount,
)
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


@contextlib.contextmanager
def ledger_errors() -> Iterator[None]:
    """Translate the ledger's refusals into error envelopes (nothing moved)."""
    try:
        yield
    except InsufficientTokens as exc:
        detail = f" (spendable: {exc.spendable})" if exc.spendable is not None else ""
        raise ApiError(ErrorCode.INSUFFICIENT_TOKENS, f"not enough tokens{detail}") from None
    except IdempotencyConflict:
        raise ApiError(
            ErrorCode.VALIDATION_ERROR, "idempotency key already used with a different body"
        ) from None
    except UnknownAccount as exc:
        raise ApiError(ErrorCode.NOT_FOUND, str(exc)) from None
    except LedgerUnavailable:
        raise ApiError(
            ErrorCode.TEMPORARILY_UNAVAILABLE,
            "the ledger is unavailable; retry with the same key",
            retry_after_ms=1000,
        ) from None
    except LedgerError as exc:
        raise ApiError(ErrorCode.VALIDATION_ERROR, str(exc)) from None
