"""A free loopback port, for a server started by another program that must be told its port first
(the toolkit's own servers bind port 0 themselves: no race between parallel workers)."""

from __future__ import annotations

import socket


def free_port(host: str = "127.0.0.1", family: socket.AddressFamily = socket.AF_INET) -> int:
    """A TCP port nothing listens on now (it may be taken before it is used: prefer binding port 0)."""
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port
