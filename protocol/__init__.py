"""The Digis wire protocol: pure types and codecs, no I/O and no asyncio.

Layer rule: this package imports nothing else of ours, and none of asyncio,
aiohttp, asyncpg or redis (a test checks it).
"""
