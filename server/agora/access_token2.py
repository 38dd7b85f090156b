"""Agora AccessToken2 (version prefix "007"), written from the published layout.

A token is ``"007" + base64(zlib(string(signature) + signing_info))`` where
``signing_info`` is the app id, issue time, token lifetime, salt and the
services with their privileges. Everything here is pure: the clock and the
random salt are parameters, defaulting to ``time.time()`` and ``secrets`` only
when the caller does not inject them, so known-answer vectors can be rebuilt.

All integers are little-endian. Times inside the token (``expire`` and every
privilege value) are seconds *relative to* ``issue_ts``; 0 means "no expiry of
its own" for a privilege.

Contract: :func:`build` raises :class:`ValueError` for any value that does not
fit the wire format; :func:`decode` raises only :class:`ValueError` for any
input that is not a well-formed 007 token.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import struct
import time
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import ClassVar

VERSION = "007"

UINT16_MAX = 0xFFFF
UINT32_MAX = 0xFFFF_FFFF
#: Salts are drawn from 1..SALT_MAX, the range Agora's own builders use.
SALT_MAX = 99_999_999

SERVICE_RTC = 1
SERVICE_RTM = 2
SERVICE_STREAMING = 3
SERVICE_FPA = 4
SERVICE_CHAT = 5
SERVICE_FCDN = 6
SERVICE_APAAS = 7
SERVICE_RTM2 = 8

RTC_JOIN_CHANNEL = 1
RTC_PUBLISH_AUDIO_STREAM = 2
RTC_PUBLISH_VIDEO_STREAM = 3
RTC_PUBLISH_DATA_STREAM = 4
RTM_LOGIN = 1
FPA_LOGIN = 1
CHAT_USER = 1
CHAT_APP = 2


# -- packing -------------------------------------------------------------------------------------


def _check(value: int, low: int, high: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{what} must be an integer in [{low}, {high}], got {value!r}")
    return value


def pack_uint16(value: int) -> bytes:
    """Two bytes, little-endian; ValueError outside 0..65535."""
    return struct.pack("<H", _check(value, 0, UINT16_MAX, "uint16"))


def pack_int16(value: int) -> bytes:
    """Two bytes, little-endian two's complement; ValueError outside -32768..32767."""
    return struct.pack("<h", _check(value, -0x8000, 0x7FFF, "int16"))


def pack_uint32(value: int) -> bytes:
    """Four bytes, little-endian; ValueError outside 0..2**32-1."""
    return struct.pack("<I", _check(value, 0, UINT32_MAX, "uint32"))


def pack_bytes(data: bytes) -> bytes:
    """A uint16 byte length followed by ``data``; ValueError past 65535 bytes."""
    if len(data) > UINT16_MAX:
        raise ValueError(f"field of {len(data)} bytes does not fit a uint16 length")
    return pack_uint16(len(data)) + data


def pack_string(text: str) -> bytes:
    """``text`` as UTF-8, length-prefixed like :func:`pack_bytes`."""
    return pack_bytes(text.encode("utf-8"))


def pack_privileges(privileges: Mapping[int, int]) -> bytes:
    """uint16 count, then (uint16 privilege, uint32 expire) pairs in ascending key order."""
    out = [pack_uint16(len(privileges))]
    for key in sorted(privileges):
        out.append(pack_uint16(key) + pack_uint32(privileges[key]))
    return b"".join(out)


def uid_string(uid: int) -> str:
    """The account string for a numeric RTC uid: ``""`` for 0 (anyone may join), else decimal."""
    return "" if _check(uid, 0, UINT32_MAX, "uid") == 0 else str(uid)


def random_salt() -> int:
    """A fresh salt in 1..SALT_MAX from the OS's CSPRNG."""
    return secrets.randbelow(SALT_MAX) + 1


# -- services ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RtcService:
    """Real-time audio/video in ``channel_name`` as ``uid`` (a decimal uid or an account)."""

    TYPE: ClassVar[int] = SERVICE_RTC
    channel_name: str
    uid: str
    privileges: Mapping[int, int] = field(default_factory=dict)

    def pack_fields(self) -> bytes:
        return pack_string(self.channel_name) + pack_string(self.uid)


@dataclass(frozen=True, slots=True)
class RtmService:
    """Real-time messaging for the user account ``user_id``."""

    TYPE: ClassVar[int] = SERVICE_RTM
    user_id: str
    privileges: Mapping[int, int] = field(default_factory=dict)

    def pack_fields(self) -> bytes:
        return pack_string(self.user_id)


@dataclass(frozen=True, slots=True)
class FpaService:
    """Flexible Private Access; carries no fields beyond its privileges."""

    TYPE: ClassVar[int] = SERVICE_FPA
    privileges: Mapping[int, int] = field(default_factory=dict)

    def pack_fields(self) -> bytes:
        return b""


@dataclass(frozen=True, slots=True)
class ChatService:
    """Agora Chat; ``user_id`` is empty for an app-level token."""

    TYPE: ClassVar[int] = SERVICE_CHAT
    user_id: str
    privileges: Mapping[int, int] = field(default_factory=dict)

    def pack_fields(self) -> bytes:
        return pack_string(self.user_id)


@dataclass(frozen=True, slots=True)
class ApaasService:
    """Agora Flexible Classroom (APaaS): room, user and a signed 16-bit role."""

    TYPE: ClassVar[int] = SERVICE_APAAS
    room_uuid: str
    user_uuid: str
    role: int
    privileges: Mapping[int, int] = field(default_factory=dict)

    def pack_fields(self) -> bytes:
        return pack_string(self.room_uuid) + pack_string(self.user_uuid) + pack_int16(self.role)


Service = RtcService | RtmService | FpaService | ChatService | ApaasService


def pack_service(service: Service) -> bytes:
    """uint16 type + privilege map + the service's own fields."""
    return pack_uint16(service.TYPE) + pack_privileges(service.privileges) + service.pack_fields()


# -- building ------------------------------------------------------------------------------------


def signing_key(app_certificate: str, issue_ts: int, salt: int) -> bytes:
    """HMAC-SHA256 chain: certificate keyed by the issue time, then by the salt."""
    k1 = hmac.new(pack_uint32(issue_ts), app_certificate.encode("utf-8"), hashlib.sha256).digest()
    return hmac.new(pack_uint32(salt), k1, hashlib.sha256).digest()


def signing_info(
    app_id: str, issue_ts: int, expire: int, salt: int, services: Iterable[Service]
) -> bytes:
    """The signed body; services are packed in ascending type order, one per type."""
    by_type: dict[int, Service] = {}
    for service in services:
        if service.TYPE in by_type:
            raise ValueError(f"service type {service.TYPE} given twice")
        by_type[service.TYPE] = service
    return b"".join(
        [
            pack_string(app_id),
            pack_uint32(issue_ts),
            pack_uint32(expire),
            pack_uint32(salt),
            pack_uint16(len(by_type)),
            *(pack_service(by_type[t]) for t in sorted(by_type)),
        ]
    )


def build(
    app_id: str,
    app_certificate: str,
    services: Iterable[Service],
    *,
    expire: int,
    issue_ts: int | None = None,
    salt: int | None = None,
) -> str:
    """Return a signed "007" token.

    ``expire`` is the token lifetime in seconds from ``issue_ts`` (default: now,
    truncated to a whole second); ``salt`` defaults to :func:`random_salt`.
    Raises ValueError when a value does not fit its field or a service type repeats.
    """
    if issue_ts is None:
        issue_ts = int(time.time())
    if salt is None:
        salt = random_salt()
    info = signing_info(app_id, issue_ts, expire, salt, services)
    signature = hmac.new(signing_key(app_certificate, issue_ts, salt), info, hashlib.sha256)
    body = zlib.compress(pack_bytes(signature.digest()) + info)
    return VERSION + base64.b64encode(body).decode("ascii")


# -- decoding ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DecodedToken:
    """The contents of a 007 token. ``signature_ok`` needs the certificate, so it is a method."""

    app_id: str
    issue_ts: int
    expire: int
    salt: int
    services: tuple[Service, ...]
    signature: bytes
    info: bytes

    def signature_ok(self, app_certificate: str) -> bool:
        """True when the token was signed with ``app_certificate`` (constant-time compare)."""
        key = signing_key(app_certificate, self.issue_ts, self.salt)
        expected = hmac.new(key, self.info, hashlib.sha256).digest()
        return hmac.compare_digest(expected, self.signature)


class _Reader:
    """Bounds-checked little-endian reader; every short read is a ValueError."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self._data):
            raise ValueError("token truncated")
        chunk = self._data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def uint16(self) -> int:
        value: int = struct.unpack("<H", self.take(2))[0]
        return value

    def int16(self) -> int:
        value: int = struct.unpack("<h", self.take(2))[0]
        return value

    def uint32(self) -> int:
        value: int = struct.unpack("<I", self.take(4))[0]
        return value

    def bytes_(self) -> bytes:
        return self.take(self.uint16())

    def string(self) -> str:
        try:
            return self.bytes_().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError("string field is not UTF-8") from exc

    def privileges(self) -> dict[int, int]:
        return {self.uint16(): self.uint32() for _ in range(self.uint16())}

    def at_end(self) -> bool:
        return self.pos == len(self._data)


def _read_service(reader: _Reader) -> Service:
    service_type = reader.uint16()
    privileges = reader.privileges()
    match service_type:
        case 1:
            channel_name = reader.string()
            return RtcService(channel_name, reader.string(), privileges)
        case 2:
            return RtmService(reader.string(), privileges)
        case 4:
            return FpaService(privileges)
        case 5:
            return ChatService(reader.string(), privileges)
        case 7:
            room_uuid = reader.string()
            user_uuid = reader.string()
            return ApaasService(room_uuid, user_uuid, reader.int16(), privileges)
        case _:
            raise ValueError(f"service type {service_type} is not supported")


def decode(token: str) -> DecodedToken:
    """Parse a 007 token without checking its signature (see :meth:`DecodedToken.signature_ok`).

    Raises ValueError for a wrong prefix, bad base64 or zlib data, truncated or
    trailing bytes, or a service type this module does not know.
    """
    if not token.startswith(VERSION):
        raise ValueError(f"not a {VERSION} token")
    try:
        raw = zlib.decompress(base64.b64decode(token[len(VERSION) :], validate=True))
    except (binascii.Error, zlib.error) as exc:
        raise ValueError(f"token body does not decode: {exc}") from exc
    reader = _Reader(raw)
    signature = reader.bytes_()
    info_start = reader.pos
    app_id = reader.string()
    issue_ts = reader.uint32()
    expire = reader.uint32()
    salt = reader.uint32()
    services = tuple(_read_service(reader) for _ in range(reader.uint16()))
    if not reader.at_end():
        raise ValueError("trailing bytes after the last service")
    return DecodedToken(app_id, issue_ts, expire, salt, services, signature, raw[info_start:])
