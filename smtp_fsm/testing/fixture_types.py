"""The types of the plugin's fixtures, for annotating a test's parameters.

>>> def test_welcome(scripted_smtp_server: ScriptedServerFactory) -> None: ...

``smtp_server`` is a ``LocalSMTPServer`` and ``tls_certificates`` a
``TLSCertificates``; the two factories are described here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ..transcript import Transcript
    from .scripted import Behaviour, ScriptedSMTPServer
    from .servers import LocalSMTPServer


class SMTPServerFactory(Protocol):
    """``smtp_server_factory``: ``make(**options)`` starts a ``LocalSMTPServer`` (stopped at teardown)."""

    def __call__(self, **options: Any) -> LocalSMTPServer: ...


class ScriptedServerFactory(Protocol):
    """``scripted_smtp_server``: ``make(transcript, *behaviours, check=True, timeout=10.0,
    connections=1)`` starts a ``ScriptedSMTPServer``; with ``check`` a deviation fails the test."""

    def __call__(self, transcript: Transcript | str, *behaviours: Behaviour, check: bool = True,
                 timeout: float = 10.0, connections: int = 1) -> ScriptedSMTPServer: ...


__all__ = ["SMTPServerFactory", "ScriptedServerFactory"]
