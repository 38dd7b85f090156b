"""Python client SDK for the Digis socket protocol (websockets + protocol types)."""

from client.http import AuthClient
from client.sdk import Client, ClientError, ConnectionLost, RequestError

__all__ = ["AuthClient", "Client", "ClientError", "ConnectionLost", "RequestError"]
