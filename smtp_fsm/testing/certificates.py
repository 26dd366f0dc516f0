"""Throw-away TLS certificates for tests, with or without pytest: a CA and a certificate it signed.

``make_test_tls()`` returns ``TLSCertificates`` whose server and client
``SSLContext``s trust each other (made with trustme, in the ``[server]`` and
``[testing]`` extras); the ``tls_certificates`` fixture returns the same kind,
from one CA per test session.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any

from .._extras import require


@dataclass(frozen=True)
class TLSCertificates:
    """A throw-away CA and a certificate for the given names (127.0.0.1, ::1 and localhost by default),
    as ready SSL contexts: give ``server_context`` to the server and ``client_context`` to the client."""

    __test__ = False  # not a pytest test class

    server_context: ssl.SSLContext
    client_context: ssl.SSLContext
    #: The CA's certificate (PEM), for a client configured by file (``--cafile``).
    ca_pem: bytes
    #: The trustme CA itself, to issue more certificates (``ca.issue_cert("mx.example")``).
    ca: Any = None


def make_test_tls(*hostnames: str, ca: Any = None) -> TLSCertificates:
    """A certificate for ``hostnames`` (127.0.0.1, ::1 and localhost when none) from ``ca`` (a new trustme CA
    when None), with server and client contexts that trust each other."""
    if ca is None:
        ca = require("trustme", "server", "make_test_tls (test certificates)").CA()
    cert = ca.issue_cert(*(hostnames or ("127.0.0.1", "::1", "localhost")))
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    return TLSCertificates(server_context, client_context, ca.cert_pem.bytes(), ca)


#: The name it had before (``make_test_tls`` returned a ``TestTLS``).
TestTLS = TLSCertificates

__all__ = ["TLSCertificates", "TestTLS", "make_test_tls"]
