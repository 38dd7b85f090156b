"""Server-side WebSocket framing (RFC 6455, section 5.2).

A server frame is never masked, so a complete frame is just a header and the
payload. Building it once lets the same bytes be written to every
subscriber's transport without going through a per-socket writer.
"""

from __future__ import annotations

import struct

_TEXT = 0x81  # FIN + opcode 1
_BINARY = 0x82  # FIN + opcode 2
_LEN2 = struct.Struct("!BBH")
_LEN8 = struct.Struct("!BBQ")


def ws_frame(payload: bytes, *, binary: bool) -> bytes:
    """One unfragmented, unmasked data frame carrying ``payload``."""
    first = _BINARY if binary else _TEXT
    size = len(payload)
    if size < 126:
        return bytes((first, size)) + payload
    if size < 65536:
        return _LEN2.pack(first, 126, size) + payload
    return _LEN8.pack(first, 127, size) + payload
