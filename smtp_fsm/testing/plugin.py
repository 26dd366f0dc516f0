"""pytest plugin (entry point ``pytest11``): fixtures with real SMTP servers on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from .servers import LocalSMTPServer


@pytest.fixture
def smtp_server() -> Iterator[LocalSMTPServer]:
    """A real aiosmtpd server on 127.0.0.1 (free port) that keeps every message with its envelope."""
    with LocalSMTPServer() as server:
        yield server


@pytest.fixture
def smtp_server_factory() -> Iterator[Callable[..., LocalSMTPServer]]:
    """Make servers with options (TLS, AUTH, SMTPUTF8, LMTP, PIPELINING...); all stopped at teardown."""
    started: list[LocalSMTPServer] = []

    def make(**options: Any) -> LocalSMTPServer:
        server = LocalSMTPServer(**options).start()
        started.append(server)
        return server

    yield make
    for server in reversed(started):
        server.stop()
