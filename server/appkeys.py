"""Typed keys for what the app factory stores on the aiohttp Application."""

from __future__ import annotations

from aiohttp import web

from server.services import Services

SERVICES = web.AppKey("services", Services)
