"""Tools for testing code that sends mail, and for teaching SMTP by example.

Every name loads on first use (PEP 562): the pytest plugin lives in this package and
pytest loads it in every run, so importing the package must cost nothing.  The local
aiosmtpd servers (``LocalSMTPServer`` and company, ``make_test_tls``) need
``pip install 'smtp_fsm[server]'``; the error says so when they are used without it.

The toolkit's failures -- ``ReplayMismatch``, ``SessionStepper.expect``, a scripted
server's deviations, ``Stepped.error`` -- are ``AssertionError``s, pytest's convention:
the one exception to "everything smtp_fsm raises is an ``SMTPError``".
"""

from __future__ import annotations

TYPE_CHECKING = False  # (typing.TYPE_CHECKING without importing typing: about 10 ms)
if TYPE_CHECKING:
    from typing import Any

    from ..console import annotated_text
    from ..trace import MASK, TranscriptError, dump_jsonl, load_jsonl
    from ..transcript import (
        Exchange,
        ServerChunk,
        Transcript,
        TranscriptLine,
        load_transcript,
        parse_transcript,
        to_text,
    )
    from . import hostile
    from .certificates import TestTLS, TLSCertificates, make_test_tls
    from .checking import Ignore
    from .fixture_types import ScriptedServerFactory, SMTPServerFactory
    from .ports import free_port
    from .replaying import ReplayMismatch, ReplayResult, replay
    from .scripted import Deviation, ScriptedSMTPServer
    from .servers import LocalSMTPServer, ReceivedMessage, RecordingHandler, local_smtp_server
    from .stepping import SessionStepper, Stepped

#: Each public name and the module that defines it (relative to this package).
_WHERE = {
    "MASK": "..trace",
    "Deviation": ".scripted",
    "Exchange": "..transcript",
    "Ignore": ".checking",
    "LocalSMTPServer": ".servers",
    "ReceivedMessage": ".servers",
    "RecordingHandler": ".servers",
    "ReplayMismatch": ".checking",
    "ReplayResult": ".replaying",
    "SMTPServerFactory": ".fixture_types",
    "ScriptedSMTPServer": ".scripted",
    "ScriptedServerFactory": ".fixture_types",
    "ServerChunk": "..transcript",
    "SessionStepper": ".stepping",
    "Stepped": ".stepping",
    "TLSCertificates": ".certificates",
    "TestTLS": ".certificates",
    "Transcript": "..transcript",
    "TranscriptError": "..trace",
    "TranscriptLine": "..transcript",
    "annotated_text": "..console",
    "dump_jsonl": "..trace",
    "free_port": ".ports",
    "load_jsonl": "..trace",
    "load_transcript": "..transcript",
    "local_smtp_server": ".servers",
    "make_test_tls": ".certificates",
    "parse_transcript": "..transcript",
    "replay": ".replaying",
    "to_text": "..transcript",
}


def __getattr__(name: str) -> Any:
    from .. import _lazy

    return _lazy(__name__, _WHERE, globals(), name)  # hostile, servers, ... as submodules


def __dir__() -> list[str]:
    return sorted({*globals(), *_WHERE})


__all__ = [
    "MASK",
    "Deviation",
    "Exchange",
    "Ignore",
    "LocalSMTPServer",
    "ReceivedMessage",
    "RecordingHandler",
    "ReplayMismatch",
    "ReplayResult",
    "SMTPServerFactory",
    "ScriptedSMTPServer",
    "ScriptedServerFactory",
    "ServerChunk",
    "SessionStepper",
    "Stepped",
    "TLSCertificates",
    "TestTLS",
    "Transcript",
    "TranscriptError",
    "TranscriptLine",
    "annotated_text",
    "dump_jsonl",
    "free_port",
    "hostile",
    "load_jsonl",
    "load_transcript",
    "local_smtp_server",
    "make_test_tls",
    "parse_transcript",
    "replay",
    "to_text",
]
