"""Coverage-guided fuzzing of the protocol decoder with atheris.

    python tests/fuzz/fuzz_decoder.py -runs=1000000      # run (Ctrl-C to stop)

The property: whatever the bytes, ``decode_request`` returns a request or a
documented :class:`DecodeFailure`; no exception ever escapes. Atheris is an
optional dependency (``pip install -e '.[fuzz]'``).
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from protocol.base import Request
    from protocol.codec import JSON, MSGPACK, DecodeFailure
    from protocol.codes import ErrorCode

CODES = frozenset(ErrorCode)


def test_one_input(data: bytes) -> None:
    for codec in (JSON, MSGPACK):
        result = codec.decode_request(data)
        if isinstance(result, DecodeFailure):
            if result.code not in CODES:
                raise AssertionError(f"undocumented code {result.code!r}")
        elif not isinstance(result, Request):
            raise AssertionError(f"decoder returned {type(result)!r}")
    if data[:1] == b"{":
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return
        result = JSON.decode_request(text)
        if isinstance(result, DecodeFailure) and result.code not in CODES:
            raise AssertionError(f"undocumented code {result.code!r}")


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
