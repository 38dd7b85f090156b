"""Bounded load tests of a Digis server over loopback: ``digis loadtest SCENARIO``.

Layout (the README next to this file has usage and how each figure is measured):

* :mod:`loadtest.cli` -- argument parsing, ``main(argv) -> int``;
* :mod:`loadtest.harness` / :mod:`loadtest.spawn` -- spawn and seed a server, or attach;
* :mod:`loadtest.runner` / :mod:`loadtest.workers` -- one run: worker processes,
  go/stop, progress, summary; :mod:`loadtest.report` -- table, JSON, plot;
* :mod:`loadtest.wsclient` / :mod:`loadtest.lean` -- the lean WebSocket and
  protocol client used for high-rate roles (the SDK is used for calls);
* :mod:`loadtest.fanout` / :mod:`loadtest.fanout_plan` -- viewers, senders and
  the delivery sink shared by ``stream``, ``tips``, ``mixed`` and ``compare``;
* :mod:`loadtest.scenarios` -- ``connect``, ``stream``, ``calls``, ``tips``, ``mixed``;
* :mod:`loadtest.compare` and :mod:`loadtest.peers` -- the comparison with a
  bare aiohttp broadcast loop and python-socketio.

Only ``client`` and ``protocol`` of our packages are imported here; the
server is reached over its sockets, ``/metrics`` and the ``digis`` CLI.
"""
