"""Minimal peers of the ``stream`` fan-out, for ``digis loadtest compare``.

Each peer is a tiny server run as its own process (``python -m
loadtest.peers.bare`` / ``python -m loadtest.peers.sio``) that prints
``peer: listening on http://HOST:PORT`` on stderr when ready, exactly like
``digis serve``, and stops on SIGTERM. Both do what a Digis stream does with
a chat line and nothing more: take a message from one client and deliver it
to every connected client with a server timestamp.

* :mod:`loadtest.peers.bare` -- aiohttp, frames each message once and writes
  the same bytes to every transport: the ceiling of our stack.
* :mod:`loadtest.peers.sio` -- python-socketio on aiohttp (the optional
  ``bench`` extra), one room, ``emit`` per message: the popular default.
"""
