"""Tools for testing code that sends mail, and for teaching SMTP by example."""

from __future__ import annotations

from .servers import (
    LocalSMTPServer,
    ReceivedMessage,
    RecordingHandler,
    TestTLS,
    free_port,
    local_smtp_server,
    make_test_tls,
)

__all__ = [
    "LocalSMTPServer",
    "ReceivedMessage",
    "RecordingHandler",
    "TestTLS",
    "free_port",
    "local_smtp_server",
    "make_test_tls",
]
