"""A free loopback port, for servers that cannot bind port 0 themselves."""

from __future__ import annotations

import socket


def free_port(host: str = "127.0.0.1", family: socket.AddressFamily = socket.AF_INET) -> int:
    """A TCP port nothing listens on now (aiosmtpd's Controller cannot bind port 0)."""
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port
