"""Generate the AsyncAPI 3 document of the socket protocol from the Structs.

The committed ``protocol/asyncapi.json`` must equal ``render()``; a test fails
when they drift. Regenerate with ``python -m protocol.asyncapi --write``.
"""

from __future__ import annotations

import inspect
import json
import sys
from pathlib import Path
from typing import Any

import msgspec

from protocol.base import PROTOCOL_VERSION, SUBPROTOCOLS, type_tag
from protocol.codes import CLOSES, ERRORS, may_reconnect
from protocol.events import SERVER_EVENTS, Error, Result
from protocol.requests import CLIENT_REQUESTS
from protocol.results import RESULTS

DOCUMENT_PATH = Path(__file__).with_name("asyncapi.json")
_REF = "#/components/schemas/{name}"


def _summary(cls: type) -> str:
    doc = inspect.getdoc(cls) or ""
    return doc.split("\n\n")[0].replace("\n", " ")


def _msg_name(tag: str) -> str:
    return tag


def build_document() -> dict[str, Any]:
    """The AsyncAPI 3.0 document as plain data (deterministic order)."""
    result_types = sorted(set(RESULTS.values()), key=lambda c: c.__name__)
    _, schemas = msgspec.json.schema_components(
        [*CLIENT_REQUESTS, *SERVER_EVENTS, Error, *result_types], ref_template=_REF
    )
    messages: dict[str, Any] = {}
    channel_messages: dict[str, Any] = {}
    operations: dict[str, Any] = {}

    def add_message(name: str, title: str, summary: str, payload: dict[str, Any]) -> None:
        messages[name] = {"name": name, "title": title, "summary": summary, "payload": payload}
        channel_messages[name] = {"$ref": f"#/components/messages/{name}"}

    error_name = "error"
    add_message(
        error_name,
        "Error",
        _summary(Error),
        {"$ref": _REF.format(name="Error")},
    )
    for cls in CLIENT_REQUESTS:
        tag = type_tag(cls)
        add_message(tag, cls.__name__, _summary(cls), {"$ref": _REF.format(name=cls.__name__)})
        result_cls = RESULTS[cls]
        reply_name = f"{tag}#result"
        add_message(
            reply_name,
            f"{cls.__name__}Result",
            f"Successful answer to `{tag}`.",
            {
                "type": "object",
                "properties": {
                    "type": {"enum": [type_tag(Result)]},
                    "re": {"type": "string"},
                    "result": {"$ref": _REF.format(name=result_cls.__name__)},
                },
                "required": ["type", "re", "result"],
            },
        )
        operations[tag] = {
            "action": "receive",
            "channel": {"$ref": "#/channels/socket"},
            "summary": _summary(cls),
            "messages": [{"$ref": f"#/channels/socket/messages/{tag}"}],
            "reply": {
                "channel": {"$ref": "#/channels/socket"},
                "messages": [
                    {"$ref": f"#/channels/socket/messages/{reply_name}"},
                    {"$ref": f"#/channels/socket/messages/{error_name}"},
                ],
            },
        }
    for event_cls in SERVER_EVENTS:
        tag = type_tag(event_cls)
        add_message(
            tag,
            event_cls.__name__,
            _summary(event_cls),
            {"$ref": _REF.format(name=event_cls.__name__)},
        )
        operations[f"push.{tag}"] = {
            "action": "send",
            "channel": {"$ref": "#/channels/socket"},
            "summary": _summary(event_cls),
            "messages": [{"$ref": f"#/channels/socket/messages/{tag}"}],
        }

    error_codes = {
        code.value: {"httpStatus": info.http_status, "description": info.description}
        for code, info in ERRORS.items()
    }
    close_codes = {
        str(int(code)): {
            "reason": reason,
            "description": description,
            "mayReconnect": may_reconnect(int(code)),
        }
        for code, (reason, description) in CLOSES.items()
    }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Digis realtime protocol",
            "version": f"{PROTOCOL_VERSION}.0.0",
            "description": (
                "One WebSocket per client at `/ws`. Subprotocols: "
                + ", ".join(f"`{p}`" for p in SUBPROTOCOLS)
                + " (JSON text frames by default, MessagePack binary frames when negotiated). "
                "Every request carries `id`; the server answers with `result` (`re` = id) or "
                "`error`. Authenticate first with `auth` (or an `Authorization: Bearer` "
                "header) within 5 s. Close codes 4000-4499 may reconnect, 4500-4999 must not."
            ),
            "x-error-codes": error_codes,
            "x-close-codes": close_codes,
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": {
                "host": "127.0.0.1:8080",
                "protocol": "ws",
                "description": "`digis serve` with its defaults.",
            }
        },
        "channels": {
            "socket": {
                "address": "/ws",
                "title": "The client's one persistent socket",
                "messages": channel_messages,
            }
        },
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }


def render() -> bytes:
    """The document as committed: indented, sorted, newline-terminated JSON."""
    text = json.dumps(build_document(), indent=2, sort_keys=True, ensure_ascii=False)
    return (text + "\n").encode("utf-8")


def main(argv: list[str] | None = None) -> int:
    """``python -m protocol.asyncapi [--write]``: print or rewrite the document."""
    args = sys.argv[1:] if argv is None else argv
    data = render()
    if "--write" in args:
        DOCUMENT_PATH.write_bytes(data)
        print(f"wrote {DOCUMENT_PATH} ({len(data)} bytes)")
    else:
        sys.stdout.write(data.decode("utf-8"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
