"""Tools for testing code that sends mail, and for teaching SMTP by example.

Every name loads on first use (PEP 562): the pytest plugin lives in this package and
pytest loads it in every run, so importing the package must cost nothing.  The local
aiosmtpd servers (``LocalSMTPServer`` and company, ``make_test_tls``) need
``pip install 'smtp_fsm[server]'``; the error says so when they are used without it.
"""

from __future__ import annotations

TYPE_CHECKING = False  # (typing.TYPE_CHECKING without importing typing: about 10 ms)
if TYPE_CHECKING:
    from typing import Any

    from ..console import annotated_text
    from ..trace import MASK, TranscriptError, dump_jsonl, load_jsonl
    from ..transcript import Transcript, load_transcript, parse_transcript, to_text
    from . import hostile
    from .ports import free_port
    from .replaying import ReplayMismatch, ReplayResult, SessionStepper, Stepped, replay
    from .scripted import ScriptedSMTPServer
    from .servers import LocalSMTPServer, ReceivedMessage, RecordingHandler, TestTLS, local_smtp_server, make_test_tls

#: Each public name and the module that defines it (relative to this package).
_WHERE = {
    "MASK": "..trace",
    "LocalSMTPServer": ".servers",
    "ReceivedMessage": ".servers",
    "RecordingHandler": ".servers",
    "ReplayMismatch": ".replaying",
    "ReplayResult": ".replaying",
    "ScriptedSMTPServer": ".scripted",
    "SessionStepper": ".replaying",
    "Stepped": ".replaying",
    "TestTLS": ".servers",
    "Transcript": "..transcript",
    "TranscriptError": "..trace",
    "annotated_text": "..console",
    "dump_jsonl": "..trace",
    "free_port": ".ports",
    "load_jsonl": "..trace",
    "load_transcript": "..transcript",
    "local_smtp_server": ".servers",
    "make_test_tls": ".servers",
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
    "LocalSMTPServer",
    "ReceivedMessage",
    "RecordingHandler",
    "ReplayMismatch",
    "ReplayResult",
    "ScriptedSMTPServer",
    "SessionStepper",
    "Stepped",
    "TestTLS",
    "Transcript",
    "TranscriptError",
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
