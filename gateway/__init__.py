"""gateway: a realtime Socket.IO gateway and signed webhook relay over Redis."""

__version__ = "0.1.0"
