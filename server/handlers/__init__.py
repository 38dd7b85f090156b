"""Socket request handlers, grouped by area; ``ROUTES`` is what connections use."""

from __future__ import annotations

from protocol.base import Request
from server.handlers import account, economy
from server.router import Route, Router

_root = Router()
for _module in (account, economy):
    _root.include(_module.router)

ROUTES: dict[type[Request], Route] = _root.routes
