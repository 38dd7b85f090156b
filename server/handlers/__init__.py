"""Socket request handlers, grouped by area; ``ROUTES`` is what connections use."""

from __future__ import annotations

from protocol.base import Request
from server.handlers import account, calls, economy, payments, sessions, streams
from server.router import Route, Router

_root = Router()
for _module in (account, economy, calls, streams, sessions, payments):
    _root.include(_module.router)

ROUTES: dict[type[Request], Route] = _root.routes
