"""The committed AsyncAPI document is generated from the Structs and served."""

from __future__ import annotations

import json

from protocol.asyncapi import DOCUMENT_PATH, build_document, render
from protocol.base import type_tag
from protocol.codes import CLOSES, ERRORS
from protocol.events import SERVER_EVENTS
from protocol.requests import CLIENT_REQUESTS
from tests.conftest import RunningServer


def test_committed_document_matches_the_structs() -> None:
    assert DOCUMENT_PATH.read_bytes() == render(), (
        "protocol/asyncapi.json is stale: run `python -m protocol.asyncapi --write`"
    )


def test_document_covers_every_message_and_code() -> None:
    doc = build_document()
    assert doc["asyncapi"].startswith("3.")
    operations = doc["operations"]
    for cls in CLIENT_REQUESTS:
        op = operations[type_tag(cls)]
        assert op["action"] == "receive"
        assert op["reply"]["messages"]
    for cls in SERVER_EVENTS:
        assert operations[f"push.{type_tag(cls)}"]["action"] == "send"
    assert set(doc["info"]["x-error-codes"]) == {c.value for c in ERRORS}
    assert set(doc["info"]["x-close-codes"]) == {str(int(c)) for c in CLOSES}
    schemas = doc["components"]["schemas"]
    for message in doc["components"]["messages"].values():
        ref = message["payload"].get("$ref")
        if ref:
            assert ref.rsplit("/", 1)[1] in schemas


async def test_served_document_is_the_committed_one(server: RunningServer) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as http:
        async with http.get(server.http_url + "/asyncapi.json") as response:
            assert response.status == 200
            assert response.content_type == "application/json"
            served = await response.read()
    assert json.loads(served) == json.loads(DOCUMENT_PATH.read_bytes())
