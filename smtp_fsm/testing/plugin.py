"""pytest plugin (entry point ``pytest11``): fixtures with real and scripted SMTP servers on 127.0.0.1."""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from ..transcript import Transcript
from .scripted import Behaviour, ScriptedSMTPServer
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


@pytest.fixture
def scripted_smtp_server() -> Iterator[Callable[..., ScriptedSMTPServer]]:
    """Make servers that play a transcript (``S:``/``C:`` text) and fail the test if the client deviates.

    ``scripted_smtp_server(transcript, *behaviours, check=True, timeout=10.0)``
    returns a started server (``.host``, ``.port``).  At teardown every server
    is stopped and, unless made with ``check=False``, ``assert_ok()`` is called.
    """
    started: list[tuple[ScriptedSMTPServer, bool]] = []

    def make(transcript: Transcript | str, *behaviours: Behaviour, check: bool = True,
             **options: Any) -> ScriptedSMTPServer:
        server = ScriptedSMTPServer(transcript, *behaviours, **options).start()
        started.append((server, check))
        return server

    yield make
    for server, _ in reversed(started):
        server.stop()
    for server, check in started:
        if check:
            server.assert_ok()


@dataclass(frozen=True)
class TLSCertificates:
    """A throw-away CA and a certificate for 127.0.0.1 and localhost, as ready SSL contexts."""

    ca: Any  # trustme.CA
    server_context: ssl.SSLContext
    client_context: ssl.SSLContext
    ca_pem: bytes


@pytest.fixture(scope="session")
def _smtp_fsm_ca() -> Any:
    import trustme  # only the test extras install it

    return trustme.CA()


@pytest.fixture
def tls_certificates(_smtp_fsm_ca: Any) -> TLSCertificates:
    """Server and client SSLContexts that trust each other (made with trustme; fresh contexts per test)."""
    cert = _smtp_fsm_ca.issue_cert("127.0.0.1", "localhost")
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_context)
    client_context = ssl.create_default_context()
    _smtp_fsm_ca.configure_trust(client_context)
    return TLSCertificates(_smtp_fsm_ca, server_context, client_context, _smtp_fsm_ca.cert_pem.bytes())
