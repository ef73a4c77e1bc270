"""A reference server for the public Engine.IO / Socket.IO protocol test suites.

``python -m gateway.conformance [--port 3000]`` serves what the black-box suites of
socketio/engine.io-protocol (branches ``v3`` and ``main``) and socketio/socket.io-protocol
(``main``) expect, on top of our own ``gateway.protocol`` and ``gateway.realtime`` transports:

- ``/engine.io/``: plain Engine.IO (``EIO=3`` and ``EIO=4``) echoing every message;
- ``/socket.io/``: Socket.IO with the ``/`` and ``/custom`` namespaces, ``auth`` sent back on
  connect, ``message`` → ``message-back``, ``message-with-ack`` acknowledged with its arguments.

pingInterval 300 ms, pingTimeout 200 ms, maxPayload 1e6, no authentication. See
docs/conformance.md for running the suites.

- ``connections``: the echo and Socket.IO behaviours (``Carrier`` implementations)
- ``registry``: sessions by sid and the one timer that drives their heartbeats
- ``endpoint``: the handshake checks, then hand-off to ``gateway.realtime`` transports
- ``app``: ``create_app(settings)``; ``__main__``: the command line
"""
